/*
 * echo-bot: a complete libsimplex agent program using the callback API.
 * It creates a one-time invitation link, accepts whoever joins it and
 * answers every message with "echo: <text>".
 *
 *   echo-bot --db FILE --server smp://KEYHASH@HOST[:PORT] [--link-file PATH]
 *
 * The first line on stdout is "link: simplex:/invitation#/?v=..."; give
 * the link to the other party (a SimpleX app, or a program calling
 * simplex_agent_join_connection()). Events are logged on stderr. SIGINT or
 * SIGTERM stops it; the database keeps the connections, so a restart with
 * the same --db goes on answering them.
 *
 * Build against an installed library with
 *   cc echo-bot.c $(pkg-config --cflags --libs simplex)
 * examples/echo-poll.c is the same bot for a program with its own poll()
 * loop.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <simplex/simplex.h>

/* Prints what failed, with the agent's detailed message. */
static void report(simplex_agent *a, const char *what, int rc)
{
    simplex_buf m = {NULL, 0};
    if (simplex_agent_last_error(a, &m) == 0 && m.data)
        fprintf(stderr, "echo-bot: %s: %s (%s)\n", what, simplex_strerror(rc),
                (const char *)m.data);
    else
        fprintf(stderr, "echo-bot: %s: %s\n", what, simplex_strerror(rc));
    simplex_buf_dispose(&m);
}

/*
 * Called on the agent's thread for every event. ev is only valid during
 * the call. Calling the agent from here is allowed (but not
 * simplex_agent_free()); it should return quickly.
 */
static void on_event(const simplex_agent_event *ev, void *user_data)
{
    /* the agent (see main(): it is set before any CONF or MSG can come) */
    simplex_agent *a = NULL;
    const char *conn = simplex_agent_event_conn_id(ev);
    int rc;

    fprintf(stderr, "echo-bot: %s %s\n", simplex_agent_event_name(ev), conn);

    switch (simplex_agent_event_get_type(ev)) {
    case SIMPLEX_AGENT_EVENT_CONF: /* someone joined our link: accept */
        a = *(simplex_agent **)user_data;
        rc = simplex_agent_allow_connection(a, conn,
                                            simplex_agent_event_conf_id(ev),
                                            (const uint8_t *)"echo-bot", 8);
        if (rc != 0)
            report(a, "allow", rc);
        break;
    case SIMPLEX_AGENT_EVENT_MSG: { /* a message: answer, then acknowledge */
        uint8_t reply[SIMPLEX_AGENT_MAX_MSG_BYTES];
        size_t len, n = 6;
        const uint8_t *text = simplex_agent_event_body(ev, &len);

        a = *(simplex_agent **)user_data;
        memcpy(reply, "echo: ", n);
        if (len > sizeof reply - n)
            len = sizeof reply - n; /* the longest message we may send */
        if (len)
            memcpy(reply + n, text, len);
        rc = simplex_agent_send(a, conn, reply, n + len, NULL);
        if (rc != 0)
            report(a, "send", rc);
        /* Lets the server deliver the next message. A non-NULL receipt
         * info (here empty) also sends the peer a delivery receipt. */
        rc = simplex_agent_ack(a, conn, simplex_agent_event_msg_id(ev),
                               (const uint8_t *)"", 0);
        if (rc != 0)
            report(a, "ack", rc);
        break;
    }
    default: /* CON, SENT, RCVD, DOWN, UP, ...: just logged */
        if (*simplex_agent_event_message(ev)) /* ERR, MERR, MWARN */
            fprintf(stderr, "echo-bot:   %s\n",
                    simplex_agent_event_message(ev));
        break;
    }
}

int main(int argc, char **argv)
{
    const char *db = NULL, *server = NULL, *link_file = NULL;
    simplex_agent *agent = NULL; /* the callback's user_data points here */
    simplex_agent_options opts;
    char conn[SIMPLEX_AGENT_ID_MAX];
    simplex_buf link = {NULL, 0};
    sigset_t stop;
    int i, sig, rc;

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
        fprintf(stderr, "usage: echo-bot --db FILE --server smp://... "
                        "[--link-file PATH]\n");
        return 2;
    }

    /* Block SIGINT/SIGTERM before any thread starts: the agent's threads
     * inherit the mask, and main() takes the signal with sigwait(). */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    rc = simplex_global_init(NULL);
    if (rc != 0) {
        fprintf(stderr, "echo-bot: init: %s\n", simplex_strerror(rc));
        return 1;
    }

    rc = simplex_agent_options_init(&opts, SIMPLEX_AGENT_OPTIONS_VERSION);
    opts.db_path = db;
    opts.servers = &server;
    opts.n_servers = 1;
    opts.event_cb = on_event;
    /* the callback reads the agent through this pointer: the first
     * callback runs after simplex_agent_new() has set it */
    opts.user_data = &agent;
    if (rc == 0)
        rc = simplex_agent_new(&agent, &opts);
    if (rc != 0) {
        report(NULL, "open", rc);
        simplex_global_cleanup();
        return 1;
    }

    /* A new invitation: whoever joins it arrives as a CONF event. */
    rc = simplex_agent_create_connection(agent, conn, &link);
    if (rc != 0) {
        report(agent, "create", rc);
    } else {
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
        /* everything else happens in on_event() */
        sigwait(&stop, &sig);
        fprintf(stderr, "echo-bot: %s, stopping\n",
                sig == SIGINT ? "SIGINT" : "SIGTERM");
    }

    simplex_agent_free(agent);
    simplex_global_cleanup();
    return rc == 0 ? 0 : 1;
}
