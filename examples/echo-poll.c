/*
 * echo-poll: examples/echo-bot.c for a program that has its own poll()
 * loop. Instead of a callback, the agent queues its events; the loop
 * waits on simplex_agent_event_fd() (readable while events are queued)
 * next to its other descriptors, here the read end of a self-pipe that
 * the signal handler writes to, and takes the events with
 * simplex_agent_next_event() on its own thread.
 *
 *   echo-poll --db FILE --server smp://KEYHASH@HOST[:PORT] [--link-file PATH]
 *
 * Prints "link: simplex:/invitation#/?v=..." as the first line on stdout,
 * accepts whoever joins, answers every message with "echo: <text>" and
 * stops on SIGINT or SIGTERM.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <simplex/simplex.h>

static void report(simplex_agent *a, const char *what, int rc)
{
    simplex_buf m = {NULL, 0};
    if (simplex_agent_last_error(a, &m) == 0 && m.data)
        fprintf(stderr, "echo-poll: %s: %s (%s)\n", what, simplex_strerror(rc),
                (const char *)m.data);
    else
        fprintf(stderr, "echo-poll: %s: %s\n", what, simplex_strerror(rc));
    simplex_buf_dispose(&m);
}

/* The self-pipe: a signal becomes a readable descriptor for poll(). */
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    unsigned char c = (unsigned char)sig;
    int saved = errno;
    ssize_t w = write(sig_pipe[1], &c, 1); /* async-signal-safe */
    (void)w;
    errno = saved;
}

/* One event, on the loop's thread (as echo-bot's callback, but the agent
 * is simply an argument here). */
static void handle(simplex_agent *a, const simplex_agent_event *ev)
{
    const char *conn = simplex_agent_event_conn_id(ev);
    int rc;

    fprintf(stderr, "echo-poll: %s %s\n", simplex_agent_event_name(ev), conn);

    switch (simplex_agent_event_get_type(ev)) {
    case SIMPLEX_AGENT_EVENT_CONF: /* someone joined our link: accept */
        rc = simplex_agent_allow_connection(a, conn,
                                            simplex_agent_event_conf_id(ev),
                                            (const uint8_t *)"echo-poll", 9);
        if (rc != 0)
            report(a, "allow", rc);
        break;
    case SIMPLEX_AGENT_EVENT_MSG: { /* answer, then ack with a receipt */
        uint8_t reply[SIMPLEX_AGENT_MAX_MSG_BYTES];
        size_t len, n = 6;
        const uint8_t *text = simplex_agent_event_body(ev, &len);

        memcpy(reply, "echo: ", n);
        if (len > sizeof reply - n)
            len = sizeof reply - n;
        if (len)
            memcpy(reply + n, text, len);
        rc = simplex_agent_send(a, conn, reply, n + len, NULL);
        if (rc != 0)
            report(a, "send", rc);
        rc = simplex_agent_ack(a, conn, simplex_agent_event_msg_id(ev),
                               (const uint8_t *)"", 0);
        if (rc != 0)
            report(a, "ack", rc);
        break;
    }
    default:
        if (*simplex_agent_event_message(ev)) /* ERR, MERR, MWARN */
            fprintf(stderr, "echo-poll:   %s\n",
                    simplex_agent_event_message(ev));
        break;
    }
}

int main(int argc, char **argv)
{
    const char *db = NULL, *server = NULL, *link_file = NULL;
    simplex_agent *agent = NULL;
    simplex_agent_options opts;
    char conn[SIMPLEX_AGENT_ID_MAX];
    simplex_buf link = {NULL, 0};
    struct sigaction sa;
    struct pollfd fds[2];
    int i, rc, status = 0;

    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--db") == 0)
            db = argv[i + 1];
        else if (strcmp(argv[i], "--server") == 0)
            server = argv[i + 1];
        else if (strcmp(argv[i], "--link-file") == 0)
            link_file = argv[i + 1];
        else
            break;
    }
    if (i != argc || !db || !server) {
        fprintf(stderr, "usage: echo-poll --db FILE --server smp://... "
                        "[--link-file PATH]\n");
        return 2;
    }

    /* SIGINT/SIGTERM write to the pipe (whichever thread takes them) */
    if (pipe(sig_pipe) != 0) {
        perror("pipe");
        return 1;
    }
    fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    rc = simplex_global_init(NULL);
    if (rc != 0) {
        fprintf(stderr, "echo-poll: init: %s\n", simplex_strerror(rc));
        return 1;
    }
    /* No event_cb: events are queued for simplex_agent_next_event(). */
    rc = simplex_agent_options_init(&opts, SIMPLEX_AGENT_OPTIONS_VERSION);
    opts.db_path = db;
    opts.servers = &server;
    opts.n_servers = 1;
    if (rc == 0)
        rc = simplex_agent_new(&agent, &opts);
    if (rc != 0) {
        report(NULL, "open", rc);
        simplex_global_cleanup();
        return 1;
    }

    rc = simplex_agent_create_connection(agent, conn, &link);
    if (rc != 0) {
        report(agent, "create", rc);
        status = 1;
        goto out;
    }
    /* the file first: once the line is out, the file is complete */
    if (link_file) {
        FILE *f = fopen(link_file, "w");
        if (f)
            fprintf(f, "%s\n", (const char *)link.data);
        if (!f || fclose(f) != 0)
            perror(link_file);
    }
    printf("link: %s\n", (const char *)link.data);
    fflush(stdout);
    simplex_buf_dispose(&link);

    /* The event loop. An application adds its own descriptors here. */
    fds[0].fd = simplex_agent_event_fd(agent);
    fds[0].events = POLLIN;
    fds[1].fd = sig_pipe[0];
    fds[1].events = POLLIN;
    for (;;) {
        simplex_agent_event *ev;

        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue; /* the signal handler ran on this thread */
            perror("poll");
            status = 1;
            break;
        }
        if (fds[1].revents) {
            fprintf(stderr, "echo-poll: signal, stopping\n");
            break;
        }
        if (fds[0].revents == 0)
            continue;
        /* Take every queued event without blocking; the descriptor stays
         * readable until the queue is empty. */
        while ((rc = simplex_agent_next_event(agent, 0, &ev)) == 0) {
            handle(agent, ev);
            simplex_agent_event_free(ev);
        }
        if (rc != SIMPLEX_ERR_TIMEOUT) {
            report(agent, "next_event", rc);
            status = 1;
            break;
        }
    }

out:
    simplex_agent_free(agent);
    simplex_global_cleanup();
    close(sig_pipe[0]);
    close(sig_pipe[1]);
    return status;
}
