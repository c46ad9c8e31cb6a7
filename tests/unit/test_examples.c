/*
 * The embedding examples examples/echo-bot.c (callback API) and
 * examples/echo-poll.c (pull API in a poll() loop), run as child
 * processes against the loopback server. This process is the other party:
 * it joins the bot's link with its own agent, sends messages and expects
 * them echoed in order, with SENT and delivery receipts (RCVD) for its
 * own; then it restarts the bot on the same database, talks again, and
 * checks that SIGTERM / SIGINT make the bot exit with status 0.
 * Every wait is bounded; a failing test kills its bot (teardown).
 */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "simplex/simplex.h"
#include "server.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

#define LINK_WAIT_MS 15000 /* bot start: open the database, create a queue */
#define EVENT_WAIT_MS 10000
#define EXIT_WAIT_MS 5000

static tsrv g_srv;
static char g_dir[] = "/tmp/sx-examples-XXXXXX";

/* The running bot and this side's agent; teardown cleans up after a
 * failed test. */
static pid_t g_pid = -1;
static int g_out = -1; /* the bot's stdout */
static simplex_agent *g_agent;
static char g_conn[SIMPLEX_AGENT_ID_MAX];

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* One line from fd within timeout_ms, without the '\n'. 0 or -1. */
static int read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    size_t n = 0;

    while (n + 1 < cap) {
        struct pollfd p = {fd, POLLIN, 0};
        long left = deadline - now_ms();
        ssize_t r;
        char ch;

        if (left <= 0)
            return -1;
        r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != 1)
            return -1;
        if (ch == '\n') {
            buf[n] = 0;
            return 0;
        }
        buf[n++] = ch;
    }
    return -1;
}

/* Kills and reaps the bot, if one runs. */
static void bot_kill(void)
{
    if (g_pid > 0) {
        kill(g_pid, SIGKILL);
        while (waitpid(g_pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    g_pid = -1;
    if (g_out >= 0)
        close(g_out);
    g_out = -1;
}

/* Starts examples/<name> with the arguments args (NULL-terminated), its
 * stdout on a pipe (g_out); stderr is kept unless quiet. */
static void bot_spawn(const char *name, const char *const *args, int quiet)
{
    char path[PATH_MAX];
    const char *argv[16];
    size_t n = 0;
    int fds[2];

    assert_int_equal(tsrv_bin_path(path, sizeof path, name), 0);
    if (access(path, X_OK) != 0)
        fail_msg("%s is not built (make examples)", path);
    argv[n++] = path;
    for (; *args; args++) {
        assert_true(n + 1 < sizeof argv / sizeof argv[0]);
        argv[n++] = *args;
    }
    argv[n] = NULL;

    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    fflush(stderr);
    g_pid = fork();
    assert_true(g_pid >= 0);
    if (g_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (quiet) {
            int null = open("/dev/null", O_WRONLY);
            if (null >= 0)
                dup2(null, 2);
        }
        signal(SIGPIPE, SIG_DFL);
        /* execv's argv is not const-qualified, but it does not write */
        execv(path, (char *const *)(void *)argv);
        _exit(127);
    }
    close(fds[1]);
    g_out = fds[0];
}

/* Starts examples/<name> on db and link_file and reads its first line
 * into link (without "link: "). */
static void bot_start(const char *name, const char *db, const char *link_file,
                      char *link, size_t cap)
{
    const char *args[] = {"--db", db, "--server", g_srv.addr,
                          "--link-file", link_file, NULL};
    char line[4096];

    bot_spawn(name, args, 0);
    if (read_line(g_out, line, sizeof line, LINK_WAIT_MS) != 0)
        fail_msg("%s printed no line within %d ms", name, LINK_WAIT_MS);
    if (strncmp(line, "link: simplex:/invitation#/?v=", 30) != 0)
        fail_msg("%s: unexpected first line \"%s\"", name, line);
    assert_true(strlen(line + 6) < cap);
    strcpy(link, line + 6);
}

/* Waits for the bot to exit: its exit status; fails (the teardown kills
 * it) when it is not gone within EXIT_WAIT_MS or died of a signal. */
static int bot_wait(void)
{
    long deadline = now_ms() + EXIT_WAIT_MS;
    int st = 0;
    pid_t r;

    assert_true(g_pid > 0);
    for (;;) {
        r = waitpid(g_pid, &st, WNOHANG);
        if (r == g_pid)
            break;
        if (r < 0 && errno != EINTR)
            fail_msg("waitpid: %s", strerror(errno));
        if (now_ms() > deadline)
            fail_msg("the bot did not exit within %d ms", EXIT_WAIT_MS);
        sleep_ms(20);
    }
    g_pid = -1;
    close(g_out);
    g_out = -1;
    if (!WIFEXITED(st))
        fail_msg("the bot died of signal %d", WTERMSIG(st));
    return WEXITSTATUS(st);
}

/* Sends sig to the bot; its exit status (see bot_wait). */
static int bot_stop(int sig)
{
    assert_true(g_pid > 0);
    assert_int_equal(kill(g_pid, sig), 0);
    return bot_wait();
}

static void agent_open(const char *db)
{
    simplex_agent_options o;
    const char *servers[1] = {g_srv.addr};

    assert_int_equal(simplex_agent_options_init(&o,
                                                SIMPLEX_AGENT_OPTIONS_VERSION),
                     0);
    o.db_path = db;
    o.servers = servers;
    o.n_servers = 1;
    o.retry_initial_ms = 200;
    o.retry_max_ms = 1000;
    o.connect_timeout_ms = 3000;
    o.response_timeout_ms = 5000;
    if (simplex_agent_new(&g_agent, &o) != 0) {
        simplex_buf m = {NULL, 0};
        assert_int_equal(simplex_agent_last_error(NULL, &m), 0);
        fail_msg("agent: %s", (const char *)m.data);
    }
}

/* The next event of type t within EVENT_WAIT_MS; other events are
 * dropped, except that ERR and MERR fail. */
static simplex_agent_event *wait_ev(simplex_agent_event_type t)
{
    long deadline = now_ms() + EVENT_WAIT_MS;

    while (now_ms() < deadline) {
        simplex_agent_event *e = NULL;
        int rc = simplex_agent_next_event(g_agent, 100, &e);
        simplex_agent_event_type got;

        if (rc == SIMPLEX_ERR_TIMEOUT)
            continue;
        assert_int_equal(rc, 0);
        got = simplex_agent_event_get_type(e);
        if (got == t)
            return e;
        if (got == SIMPLEX_AGENT_EVENT_ERR || got == SIMPLEX_AGENT_EVENT_MERR)
            fail_msg("waiting for %d: %s %s", (int)t,
                     simplex_agent_event_name(e),
                     simplex_agent_event_message(e));
        simplex_agent_event_free(e);
    }
    fail_msg("no event %d within %d ms", (int)t, EVENT_WAIT_MS);
    return NULL;
}

/* Sends the n texts, then expects "echo: <text>" for each in order
 * (acknowledging them) and SENT and RCVD (receipt OK) for each sent
 * message, in any interleaving, within EVENT_WAIT_MS of the last event. */
static void echo_round(const char *const *texts, size_t n)
{
    int64_t ids[8];
    int sent[8] = {0}, rcvd[8] = {0};
    size_t i, replies = 0, n_sent = 0, n_rcvd = 0;
    long deadline;

    assert_true(n <= 8);
    for (i = 0; i < n; i++) {
        assert_int_equal(simplex_agent_send(g_agent, g_conn,
                                            (const uint8_t *)texts[i],
                                            strlen(texts[i]), &ids[i]),
                         0);
        assert_true(ids[i] > 0);
    }
    deadline = now_ms() + EVENT_WAIT_MS;
    while (replies < n || n_sent < n || n_rcvd < n) {
        simplex_agent_event *e = NULL;
        int rc;

        if (now_ms() > deadline)
            fail_msg("after %d ms: %zu of %zu replies, %zu SENT, %zu RCVD",
                     EVENT_WAIT_MS, replies, n, n_sent, n_rcvd);
        rc = simplex_agent_next_event(g_agent, 100, &e);
        if (rc == SIMPLEX_ERR_TIMEOUT)
            continue;
        assert_int_equal(rc, 0);
        deadline = now_ms() + EVENT_WAIT_MS;
        switch (simplex_agent_event_get_type(e)) {
        case SIMPLEX_AGENT_EVENT_MSG: {
            char want[256];
            size_t len;
            const uint8_t *b = simplex_agent_event_body(e, &len);

            assert_true(replies < n);
            snprintf(want, sizeof want, "echo: %s", texts[replies]);
            if (len != strlen(want) || memcmp(b, want, len) != 0)
                fail_msg("reply %zu: got \"%.*s\", want \"%s\"", replies,
                         (int)len, (const char *)b, want);
            assert_string_equal(simplex_agent_event_conn_id(e), g_conn);
            assert_int_equal(simplex_agent_event_integrity(e, NULL, NULL),
                             SIMPLEX_AGENT_INTEGRITY_OK);
            assert_int_equal(simplex_agent_ack(g_agent, g_conn,
                                               simplex_agent_event_msg_id(e),
                                               NULL, 0),
                             0);
            replies++;
            break;
        }
        case SIMPLEX_AGENT_EVENT_SENT:
        case SIMPLEX_AGENT_EVENT_RCVD: {
            int64_t id = simplex_agent_event_msg_id(e);
            int is_sent = simplex_agent_event_get_type(e) ==
                          SIMPLEX_AGENT_EVENT_SENT;

            for (i = 0; i < n && ids[i] != id; i++)
                ;
            if (i == n)
                fail_msg("%s for unknown message %lld",
                         simplex_agent_event_name(e), (long long)id);
            if (is_sent) {
                assert_int_equal(sent[i], 0);
                sent[i] = 1;
                n_sent++;
            } else {
                assert_true(simplex_agent_event_flags(e) &
                            SIMPLEX_AGENT_RCPT_OK);
                assert_int_equal(rcvd[i], 0);
                rcvd[i] = 1;
                n_rcvd++;
            }
            break;
        }
        case SIMPLEX_AGENT_EVENT_ERR:
        case SIMPLEX_AGENT_EVENT_MERR:
            fail_msg("%s %s", simplex_agent_event_name(e),
                     simplex_agent_event_message(e));
            break;
        default:
            break;
        }
        simplex_agent_event_free(e);
    }
}

/* The whole exchange with examples/<name>. */
static void run_bot(const char *name)
{
    static const char *const first[] = {"one", "two", "three"};
    static const char *const second[] = {"again"};
    char bot_db[300], peer_db[300], link_file[300], link[4096];
    char from_file[4096];
    simplex_agent_event *e;
    size_t len;
    const uint8_t *b;
    FILE *f;

    snprintf(bot_db, sizeof bot_db, "%s/%s.db", g_dir, name);
    snprintf(peer_db, sizeof peer_db, "%s/%s-peer.db", g_dir, name);
    snprintf(link_file, sizeof link_file, "%s/%s.link", g_dir, name);

    bot_start(name, bot_db, link_file, link, sizeof link);
    /* --link-file holds the same link */
    f = fopen(link_file, "r");
    if (!f)
        fail_msg("%s: %s", link_file, strerror(errno));
    assert_non_null(fgets(from_file, sizeof from_file, f));
    fclose(f);
    from_file[strcspn(from_file, "\n")] = 0;
    assert_string_equal(from_file, link);

    agent_open(peer_db);
    if (simplex_agent_join_connection(g_agent, g_conn, link,
                                      (const uint8_t *)"tester", 6) != 0) {
        simplex_buf m = {NULL, 0};
        assert_int_equal(simplex_agent_last_error(g_agent, &m), 0);
        fail_msg("join %s: %s", link, (const char *)m.data);
    }
    e = wait_ev(SIMPLEX_AGENT_EVENT_INFO); /* the bot allowed us */
    b = simplex_agent_event_body(e, &len);
    assert_int_equal(len, strlen(name));
    assert_memory_equal(b, name, len);
    assert_string_equal(simplex_agent_event_conn_id(e), g_conn);
    simplex_agent_event_free(e);
    e = wait_ev(SIMPLEX_AGENT_EVENT_CON);
    assert_string_equal(simplex_agent_event_conn_id(e), g_conn);
    simplex_agent_event_free(e);

    echo_round(first, 3);
    assert_int_equal(bot_stop(SIGTERM), 0);

    /* restarted on the same database, it answers the same connection */
    bot_start(name, bot_db, link_file, link, sizeof link);
    echo_round(second, 1);
    assert_int_equal(bot_stop(SIGTERM), 0);

    simplex_agent_free(g_agent);
    g_agent = NULL;
}

static void test_echo_bot(void **state)
{
    (void)state;
    run_bot("echo-bot");
}

static void test_echo_poll(void **state)
{
    (void)state;
    run_bot("echo-poll");
}

/* SIGINT right after start-up: a clean exit too. */
static void test_sigint(void **state)
{
    static const char *const names[] = {"echo-bot", "echo-poll"};
    char db[300], link_file[300], link[4096];
    size_t i;
    (void)state;

    for (i = 0; i < 2; i++) {
        snprintf(db, sizeof db, "%s/%s-int.db", g_dir, names[i]);
        snprintf(link_file, sizeof link_file, "%s/%s-int.link", g_dir,
                 names[i]);
        bot_start(names[i], db, link_file, link, sizeof link);
        assert_int_equal(bot_stop(SIGINT), 0);
    }
}

/* bad arguments: usage, status 2 */
static void test_usage(void **state)
{
    static const char *const names[] = {"echo-bot", "echo-poll"};
    static const char *const args[] = {"--db", "x", NULL};
    size_t i;
    (void)state;

    for (i = 0; i < 2; i++) {
        bot_spawn(names[i], args, 1);
        assert_int_equal(bot_wait(), 2);
    }
}

static int test_teardown(void **state)
{
    (void)state;
    bot_kill();
    simplex_agent_free(g_agent);
    g_agent = NULL;
    return 0;
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(g_dir))
        return -1;
    if (tsrv_start(&g_srv, 0, NULL, NULL, NULL) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char cmd[400];
    (void)state;
    tsrv_stop(&g_srv);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_usage, test_teardown),
        cmocka_unit_test_teardown(test_echo_bot, test_teardown),
        cmocka_unit_test_teardown(test_echo_poll, test_teardown),
        cmocka_unit_test_teardown(test_sigint, test_teardown),
    };
    if (simplex_global_init(NULL) != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, setup, teardown);
}
