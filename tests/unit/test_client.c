/*
 * The SMP client (include/simplex/client.h) against the loopback SMP
 * server run as a separate process, through the public API only.
 *
 * The server binary is $SMP_TEST_SERVER when set, otherwise
 * <directory of this test binary>/../bin/smp-test-server; simplex-cli is
 * looked for in the same directory.
 */
#define _DEFAULT_SOURCE 1

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "slow_resolver.h"
#include "simplex/simplex.h"
#include "server.h"

/* ---- helper processes ---- */

typedef tsrv server;

static pid_t g_running = -1;
static server g_srv; /* shared by the tests that do not restart it */

static void bin_path(char *out, size_t cap, const char *name)
{
    assert_int_equal(tsrv_bin_path(out, cap, name), 0);
}

static int free_port(void)
{
    int port = tsrv_free_port();
    assert_true(port > 0);
    return port;
}

/* Starts smp-test-server with extra arguments (NULL-terminated, or NULL);
 * it is killed by kill_leftover() when a test fails. */
static void server_start_ex(server *s, int port, const char *dir,
                            const char *log, const char *const *extra)
{
    if (tsrv_start(s, port, dir, log, extra) != 0)
        fail_msg("smp-test-server did not start");
    g_running = s->pid;
}

static void server_start(server *s, int port, const char *dir, const char *log)
{
    server_start_ex(s, port, dir, log, NULL);
}

/* Stops it (SIGTERM); the shared server becomes the running one again. */
static void server_stop(server *s)
{
    int rc;
    if (s->pid <= 0)
        return;
    rc = tsrv_stop(s);
    g_running = s != &g_srv && g_srv.pid > 0 ? g_srv.pid : -1;
    assert_int_equal(rc, 0);
}

/* Runs simplex-cli with args; returns its exit status (-1: signal). */
static int run_cli(const char *a1, const char *a2, const char *a3,
                   const char *a4)
{
    char path[PATH_MAX];
    char *argv[8];
    int st = 0;
    pid_t pid;
    bin_path(path, sizeof path, "simplex-cli");
    assert_int_equal(access(path, X_OK), 0);
    argv[0] = path;
    argv[1] = (char *)a1;
    argv[2] = (char *)a2;
    argv[3] = (char *)a3;
    argv[4] = (char *)a4;
    argv[5] = NULL;
    fflush(stdout);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            close(devnull);
        }
        execv(path, argv);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- helpers over the API ---- */

/* A client with a 5 s connect timeout and the given response timeout and
 * reconnection back-off (first delay, cap). */
static simplex_client *new_client_timed(simplex_client_event_cb cb, void *ud,
                                        unsigned response_ms,
                                        unsigned reconnect_ms,
                                        unsigned reconnect_max_ms)
{
    simplex_client_options o;
    simplex_client *c = NULL;
    assert_int_equal(simplex_client_options_init(&o,
                                                 SIMPLEX_CLIENT_OPTIONS_VERSION),
                     0);
    o.connect_timeout_ms = 5000;
    o.response_timeout_ms = response_ms;
    o.reconnect_initial_ms = reconnect_ms;
    o.reconnect_max_ms = reconnect_max_ms;
    o.event_cb = cb;
    o.user_data = ud;
    assert_int_equal(simplex_client_new(&c, &o), 0);
    assert_non_null(c);
    return c;
}

static simplex_client *new_client(simplex_client_event_cb cb, void *ud)
{
    return new_client_timed(cb, ud, 5000, 100, 400);
}

/* Removes a test's temporary directory and everything in it. */
static void remove_dir(const char *dir)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* The next event of a type, skipping others (pull mode). */
static simplex_client_event *wait_event(simplex_client *c,
                                        simplex_client_event_type type,
                                        int timeout_ms)
{
    for (;;) {
        simplex_client_event *ev = NULL;
        int rc = simplex_client_next_event(c, timeout_ms, &ev);
        if (rc != 0)
            fail_msg("no event of type %d came (%d)", (int)type, rc);
        if (simplex_client_event_get_type(ev) == type)
            return ev;
        simplex_client_event_free(ev);
    }
}

static void check_body(const simplex_client_event *ev, const char *text)
{
    size_t n;
    const uint8_t *b = simplex_client_event_body(ev, &n);
    assert_int_equal(n, strlen(text));
    assert_memory_equal(b, text, n);
}

static void send_text(simplex_client *c, const simplex_queue *q,
                      const uint8_t *ssk, const char *text)
{
    size_t sl;
    const uint8_t *sid = simplex_queue_sender_id(q, &sl);
    assert_int_equal(simplex_client_send(c, simplex_queue_server(q), sid, sl,
                                         ssk, 0, (const uint8_t *)text,
                                         strlen(text)),
                     0);
}

/* ---- fixtures ---- */

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (simplex_global_init(NULL) != SIMPLEX_OK)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_srv.pid > 0)
        server_stop(&g_srv);
    simplex_global_cleanup();
    return 0;
}

static int ensure_server(void **state)
{
    (void)state;
    if (g_srv.pid <= 0)
        server_start(&g_srv, free_port(), NULL, NULL);
    return 0;
}

static int kill_leftover(void **state)
{
    (void)state;
    if (g_running > 0 && g_running != g_srv.pid) {
        kill(g_running, SIGKILL);
        waitpid(g_running, NULL, 0);
        g_running = g_srv.pid > 0 ? g_srv.pid : -1;
    }
    return 0;
}

/* ---- tests ---- */

static void test_options_and_args(void **state)
{
    simplex_client_options o;
    simplex_client *c = NULL;
    simplex_client_event *ev = NULL;
    simplex_queue *q = NULL;
    (void)state;
    assert_int_equal(simplex_client_options_init(&o, 99),
                     SIMPLEX_ERR_UNSUPPORTED);
    assert_int_equal(simplex_client_options_init(NULL, 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_new(NULL, NULL), SIMPLEX_ERR_INVALID_ARG);
    simplex_client_free(NULL);
    simplex_queue_free(NULL);
    simplex_client_event_free(NULL);
    assert_int_equal(simplex_client_key_bytes(), 32);
    assert_int_equal(simplex_client_new(&c, NULL), 0);
    assert_int_equal(simplex_client_next_event(c, 0, &ev), SIMPLEX_ERR_TIMEOUT);
    assert_null(ev);
    assert_int_equal(simplex_client_next_event(c, 20, &ev),
                     SIMPLEX_ERR_TIMEOUT);
    assert_int_equal(simplex_client_create_queue(c, &q, "not an address", 0),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_null(q);
    {
        simplex_buf m = {NULL, 0};
        assert_int_equal(simplex_client_last_error(c, &m), 0);
        assert_non_null(strstr((const char *)m.data, "not an SMP server"));
        simplex_buf_dispose(&m);
    }
    assert_int_equal(simplex_queue_import(&q, (const uint8_t *)"x", 1),
                     SIMPLEX_ERR_UNSUPPORTED);
    simplex_client_free(c);
}

/* Pull mode: create, secure, send from another client, MSG, ACK, QUE,
 * export/import, DEL; sending afterwards is refused by the server. */
static void test_queue_pull(void **state)
{
    simplex_client *a = new_client(NULL, NULL), *b = new_client(NULL, NULL);
    simplex_queue *q = NULL, *q2 = NULL;
    simplex_client_event *ev;
    uint8_t spk[32], ssk[32];
    const uint8_t *mid, *rid;
    size_t mid_len, rid_len, n;
    simplex_buf info = {NULL, 0}, ex = {NULL, 0};
    uint16_t v = 0;
    (void)state;

    assert_int_equal(simplex_client_connect(a, g_srv.addr, &v), 0);
    assert_true(v >= 6 && v <= 18);
    assert_int_equal(simplex_client_ping(a, g_srv.addr), 0);
    assert_int_equal(simplex_client_create_queue(a, &q, g_srv.addr,
                                                 SIMPLEX_QUEUE_SUBSCRIBE),
                     0);
    rid = simplex_queue_recipient_id(q, &rid_len);
    assert_int_equal(rid_len, 24);
    simplex_queue_sender_id(q, &n);
    assert_int_equal(n, 24);
    assert_string_equal(simplex_queue_server(q), g_srv.addr);
    assert_false(simplex_queue_sender_can_secure(q));
    assert_int_equal(simplex_client_generate_auth_key(spk, ssk), 0);
    assert_int_equal(simplex_client_secure_queue(a, q, spk), 0);

    /* secured: an unsigned SEND is refused */
    {
        const uint8_t *sid = simplex_queue_sender_id(q, &n);
        assert_int_equal(simplex_client_send(b, g_srv.addr, sid, n, NULL, 0,
                                             (const uint8_t *)"x", 1),
                         SIMPLEX_ERR_SERVER);
        simplex_buf m = {NULL, 0};
        assert_int_equal(simplex_client_last_error(b, &m), 0);
        assert_string_equal((const char *)m.data, "ERR AUTH");
        simplex_buf_dispose(&m);
    }
    {
        const uint8_t *sid = simplex_queue_sender_id(q, &n);
        assert_int_equal(simplex_client_send(b, g_srv.addr, sid, n, ssk,
                                             SIMPLEX_SEND_NOTIFICATION,
                                             (const uint8_t *)"hello", 5),
                         0);
    }
    ev = wait_event(a, SIMPLEX_CLIENT_EVENT_MSG, 5000);
    check_body(ev, "hello");
    assert_int_equal(simplex_client_event_flags(ev),
                     SIMPLEX_CLIENT_MSG_NOTIFICATION);
    assert_true(simplex_client_event_timestamp(ev) >
                (int64_t)time(NULL) - 3600);
    assert_string_equal(simplex_client_event_server(ev), g_srv.addr);
    {
        size_t ql;
        const uint8_t *qid = simplex_client_event_queue_id(ev, &ql);
        assert_int_equal(ql, rid_len);
        assert_memory_equal(qid, rid, ql);
    }
    {
        simplex_buf body = {NULL, 0};
        simplex_client_event *cp = NULL;
        assert_int_equal(simplex_client_event_copy_body(ev, &body), 0);
        assert_int_equal(body.len, 5);
        simplex_buf_dispose(&body);
        assert_int_equal(simplex_client_event_copy(&cp, ev), 0);
        check_body(cp, "hello");
        simplex_client_event_free(cp);
    }
    mid = simplex_client_event_msg_id(ev, &mid_len);
    assert_int_equal(simplex_client_ack(a, q, mid, mid_len), 0);
    /* a second ACK of the same message: the server says NO_MSG */
    assert_int_equal(simplex_client_ack(a, q, mid, mid_len),
                     SIMPLEX_ERR_SERVER);
    simplex_client_event_free(ev);

    /* two more messages: the second follows the ACK of the first */
    send_text(b, q, ssk, "one");
    send_text(b, q, ssk, "two");
    ev = wait_event(a, SIMPLEX_CLIENT_EVENT_MSG, 5000);
    check_body(ev, "one");
    mid = simplex_client_event_msg_id(ev, &mid_len);
    assert_int_equal(simplex_client_ack(a, q, mid, mid_len), 0);
    simplex_client_event_free(ev);
    ev = wait_event(a, SIMPLEX_CLIENT_EVENT_MSG, 5000);
    check_body(ev, "two");
    mid = simplex_client_event_msg_id(ev, &mid_len);
    assert_int_equal(simplex_client_ack(a, q, mid, mid_len), 0);
    simplex_client_event_free(ev);

    assert_int_equal(simplex_client_queue_info(a, q, &info), 0);
    assert_true(info.len > 0);
    assert_int_equal(info.data[0], '{');
    simplex_buf_dispose(&info);

    /* export / import round trip, then the copy works as the original */
    assert_int_equal(simplex_queue_export(q, &ex), 0);
    assert_int_equal(simplex_queue_import(&q2, ex.data, ex.len), 0);
    {
        size_t l1, l2;
        const uint8_t *i1 = simplex_queue_recipient_id(q, &l1);
        const uint8_t *i2 = simplex_queue_recipient_id(q2, &l2);
        assert_int_equal(l1, l2);
        assert_memory_equal(i1, i2, l1);
        assert_string_equal(simplex_queue_server(q2), g_srv.addr);
    }
    simplex_queue_free(q2);
    assert_int_equal(simplex_queue_import(&q2, ex.data, ex.len - 1) < 0, 1);
    assert_null(q2);
    assert_int_equal(simplex_queue_import(&q2, ex.data, ex.len), 0);
    simplex_buf_dispose(&ex);
    assert_int_equal(simplex_client_delete(a, q2), 0);
    assert_int_equal(simplex_client_delete(a, q), SIMPLEX_ERR_SERVER);
    {
        const uint8_t *sid = simplex_queue_sender_id(q, &n);
        assert_int_equal(simplex_client_send(b, g_srv.addr, sid, n, ssk, 0,
                                             (const uint8_t *)"x", 1),
                         SIMPLEX_ERR_SERVER);
    }
    simplex_queue_free(q);
    simplex_queue_free(q2);
    simplex_client_free(a);
    simplex_client_free(b);
}

/* The e2e envelope helpers, and an envelope through a real queue. */
static void test_e2e(void **state)
{
    simplex_client *a = new_client(NULL, NULL);
    simplex_queue *q = NULL;
    simplex_client_event *ev;
    uint8_t s_pub[32], s_priv[32], r_pub[32], r_priv[32], k1[32], k2[32];
    uint8_t spk[32], ssk[32], got_key[32], e2e_pub[32];
    simplex_buf env = {NULL, 0}, plain = {NULL, 0};
    uint16_t cv = 0;
    int has = 0;
    const uint8_t *body;
    size_t body_len;
    (void)state;

    assert_int_equal(simplex_client_e2e_keypair(s_pub, s_priv), 0);
    assert_int_equal(simplex_client_e2e_keypair(r_pub, r_priv), 0);
    assert_int_equal(simplex_client_e2e_secret(k1, r_pub, s_priv), 0);
    assert_int_equal(simplex_client_e2e_secret(k2, s_pub, r_priv), 0);
    assert_memory_equal(k1, k2, 32);
    assert_int_equal(simplex_client_generate_auth_key(spk, ssk), 0);

    /* a confirmation: e2e key in the public header, auth key inside */
    assert_int_equal(simplex_client_e2e_seal(&env, k1, 4, s_pub, spk,
                                             (const uint8_t *)"conf", 4),
                     0);
    assert_int_equal(simplex_client_e2e_peek(env.data, env.len, &cv, e2e_pub,
                                             &has),
                     0);
    assert_int_equal(cv, 4);
    assert_true(has);
    assert_memory_equal(e2e_pub, s_pub, 32);

    /* through the server */
    assert_int_equal(simplex_client_create_queue(a, &q, g_srv.addr,
                                                 SIMPLEX_QUEUE_SUBSCRIBE),
                     0);
    {
        size_t sl;
        const uint8_t *sid = simplex_queue_sender_id(q, &sl);
        assert_int_equal(simplex_client_send(a, g_srv.addr, sid, sl, NULL, 0,
                                             env.data, env.len),
                         0);
    }
    ev = wait_event(a, SIMPLEX_CLIENT_EVENT_MSG, 5000);
    body = simplex_client_event_body(ev, &body_len);
    assert_int_equal(body_len, env.len);
    has = 0;
    assert_int_equal(simplex_client_e2e_open(&plain, k2, body, body_len,
                                             got_key, &has),
                     0);
    assert_int_equal(plain.len, 4);
    assert_memory_equal(plain.data, "conf", 4);
    assert_true(has);
    assert_memory_equal(got_key, spk, 32);
    simplex_buf_dispose(&plain);
    /* the wrong secret does not open it */
    k2[0] ^= 1;
    assert_int_equal(simplex_client_e2e_open(&plain, k2, body, body_len, NULL,
                                             NULL),
                     SIMPLEX_ERR_DECRYPT);
    assert_null(plain.data);
    simplex_client_event_free(ev);
    simplex_buf_dispose(&env);

    /* a plain message: no key in either header */
    assert_int_equal(simplex_client_e2e_seal(&env, k1, 4, NULL, NULL,
                                             (const uint8_t *)"m", 1),
                     0);
    has = 1;
    assert_int_equal(simplex_client_e2e_peek(env.data, env.len, NULL, NULL,
                                             &has),
                     0);
    assert_false(has);
    k2[0] ^= 1;
    has = 1;
    assert_int_equal(simplex_client_e2e_open(&plain, k2, env.data, env.len,
                                             NULL, &has),
                     0);
    assert_false(has);
    assert_int_equal(plain.len, 1);
    simplex_buf_dispose(&plain);
    simplex_buf_dispose(&env);
    assert_int_equal(simplex_client_delete(a, q), 0);
    simplex_queue_free(q);
    simplex_client_free(a);
}

/* Sender-secured queue (SKEY), GET / ACK without a subscription, OFF. */
static void test_get_skey_off(void **state)
{
    simplex_client *a = new_client(NULL, NULL);
    simplex_queue *q = NULL;
    simplex_client_event *ev = NULL;
    uint8_t spk[32], ssk[32];
    const uint8_t *sid, *mid;
    size_t sl, ml;
    (void)state;

    assert_int_equal(simplex_client_create_queue(a, &q, g_srv.addr,
                                                 SIMPLEX_QUEUE_SENDER_SECURE),
                     0);
    assert_true(simplex_queue_sender_can_secure(q));
    assert_int_equal(simplex_client_generate_auth_key(spk, ssk), 0);
    sid = simplex_queue_sender_id(q, &sl);
    assert_int_equal(simplex_client_secure_sender(a, g_srv.addr, sid, sl, ssk),
                     0);
    assert_int_equal(simplex_client_get(a, q, &ev), 0);
    assert_null(ev);
    send_text(a, q, ssk, "by get");
    assert_int_equal(simplex_client_get(a, q, &ev), 0);
    assert_non_null(ev);
    assert_int_equal(simplex_client_event_get_type(ev),
                     SIMPLEX_CLIENT_EVENT_MSG);
    check_body(ev, "by get");
    mid = simplex_client_event_msg_id(ev, &ml);
    assert_int_equal(simplex_client_ack(a, q, mid, ml), 0);
    simplex_client_event_free(ev);
    ev = NULL;
    assert_int_equal(simplex_client_get(a, q, &ev), 0);
    assert_null(ev);
    /* a body that cannot fit a block is refused locally; the connection
     * stays usable */
    {
        static uint8_t big[20000];
        assert_true(simplex_client_send(a, g_srv.addr, sid, sl, ssk, 0, big,
                                        sizeof big) < 0);
        assert_int_equal(simplex_client_ping(a, g_srv.addr), 0);
    }
    /* suspended: senders are refused */
    assert_int_equal(simplex_client_suspend(a, q), 0);
    assert_int_equal(simplex_client_send(a, g_srv.addr, sid, sl, ssk, 0,
                                         (const uint8_t *)"no", 2),
                     SIMPLEX_ERR_SERVER);
    assert_int_equal(simplex_client_delete(a, q), 0);
    simplex_queue_free(q);
    simplex_client_free(a);
}

/* Callback delivery; a synchronous call from the callback is refused. */
typedef struct cb_state {
    pthread_mutex_t mu;
    int msgs;
    int recursive_rc;
    int next_event_rc;
    simplex_client *client;
    const simplex_queue *q;
    simplex_client_event *last;
} cb_state;

static void on_event(const simplex_client_event *ev, void *ud)
{
    cb_state *st = ud;
    if (simplex_client_event_get_type(ev) != SIMPLEX_CLIENT_EVENT_MSG)
        return;
    size_t ml;
    const uint8_t *mid = simplex_client_event_msg_id(ev, &ml);
    simplex_client_event *cp = NULL;
    int rc = simplex_client_ack(st->client, st->q, mid, ml);
    simplex_client_event *dummy = NULL;
    int rc2 = simplex_client_next_event(st->client, 0, &dummy);
    if (simplex_client_event_copy(&cp, ev) != 0)
        cp = NULL;
    pthread_mutex_lock(&st->mu);
    st->recursive_rc = rc;
    st->next_event_rc = rc2;
    simplex_client_event_free(st->last);
    st->last = cp;
    st->msgs++;
    pthread_mutex_unlock(&st->mu);
}

static int wait_msgs(cb_state *st, int n, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 10; i++) {
        int got;
        pthread_mutex_lock(&st->mu);
        got = st->msgs;
        pthread_mutex_unlock(&st->mu);
        if (got >= n)
            return 1;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static void test_callback_recursive(void **state)
{
    cb_state st;
    simplex_client *a, *b = new_client(NULL, NULL);
    simplex_queue *q = NULL;
    uint8_t spk[32], ssk[32];
    const uint8_t *mid;
    size_t ml;
    (void)state;

    memset(&st, 0, sizeof st);
    pthread_mutex_init(&st.mu, NULL);
    a = new_client(on_event, &st);
    st.client = a;
    assert_int_equal(simplex_client_create_queue(a, &q, g_srv.addr,
                                                 SIMPLEX_QUEUE_SUBSCRIBE),
                     0);
    st.q = q;
    assert_int_equal(simplex_client_generate_auth_key(spk, ssk), 0);
    assert_int_equal(simplex_client_secure_queue(a, q, spk), 0);
    send_text(b, q, ssk, "via callback");
    assert_true(wait_msgs(&st, 1, 5000));
    pthread_mutex_lock(&st.mu);
    assert_int_equal(st.recursive_rc, SIMPLEX_ERR_RECURSIVE_CALL);
    assert_int_equal(st.next_event_rc, SIMPLEX_ERR_RECURSIVE_CALL);
    check_body(st.last, "via callback");
    mid = simplex_client_event_msg_id(st.last, &ml);
    pthread_mutex_unlock(&st.mu);
    /* pulling is for clients without a callback */
    {
        simplex_client_event *ev = NULL;
        assert_int_equal(simplex_client_next_event(a, 0, &ev),
                         SIMPLEX_ERR_INVALID_ARG);
    }
    /* the ACK from this thread works and lets the next message through */
    assert_int_equal(simplex_client_ack(a, q, mid, ml), 0);
    send_text(b, q, ssk, "second");
    assert_true(wait_msgs(&st, 2, 5000));
    pthread_mutex_lock(&st.mu);
    check_body(st.last, "second");
    pthread_mutex_unlock(&st.mu);
    assert_int_equal(simplex_client_delete(a, q), 0);
    simplex_client_free(a);
    simplex_client_free(b);
    simplex_client_event_free(st.last);
    simplex_queue_free(q);
    pthread_mutex_destroy(&st.mu);
}

/* The address with another key hash: the server's identity is refused. */
static void wrong_key_addr(char *out, size_t cap, const char *addr)
{
    snprintf(out, cap, "%s", addr);
    /* flip the first character of the key hash (base64url) */
    out[6] = out[6] == 'A' ? 'B' : 'A';
}

static void test_wrong_fingerprint(void **state)
{
    simplex_client *a = new_client(NULL, NULL);
    simplex_queue *q = NULL;
    char bad[600];
    simplex_buf m = {NULL, 0};
    (void)state;
    wrong_key_addr(bad, sizeof bad, g_srv.addr);
    assert_int_equal(simplex_client_create_queue(a, &q, bad, 0),
                     SIMPLEX_ERR_SERVER_IDENTITY);
    assert_null(q);
    assert_int_equal(simplex_client_last_error(a, &m), 0);
    assert_true(m.len > 0);
    simplex_buf_dispose(&m);
    assert_int_equal(simplex_client_connect(a, bad, NULL),
                     SIMPLEX_ERR_SERVER_IDENTITY);
    /* the good address still works on the same client */
    assert_int_equal(simplex_client_connect(a, g_srv.addr, NULL), 0);
    simplex_client_free(a);
}

/* A dead first host is skipped; an address whose every host is dead fails
 * with a connection error. */
static void test_dead_host_first(void **state)
{
    simplex_client *a = new_client(NULL, NULL);
    simplex_queue *q = NULL;
    char addr[400], dead[400];
    const char *at = strchr(g_srv.addr, '@');
    int rc;
    (void)state;
    assert_non_null(at);
    /* 127.0.0.2 is loopback too, but nothing listens there */
    snprintf(addr, sizeof addr, "%.*s@127.0.0.2,127.0.0.1:%d",
             (int)(at - g_srv.addr), g_srv.addr, g_srv.port);
    assert_int_equal(simplex_client_create_queue(a, &q, addr, 0), 0);
    assert_int_equal(simplex_client_delete(a, q), 0);
    simplex_queue_free(q);
    snprintf(dead, sizeof dead, "%.*s@127.0.0.2:%d", (int)(at - g_srv.addr),
             g_srv.addr, g_srv.port);
    rc = simplex_client_connect(a, dead, NULL);
    assert_int_equal(rc, SIMPLEX_ERR_CONNECT);
    simplex_client_free(a);
}

/* A host that accepts TCP but never answers TLS: the connect timeout. */
static void test_connect_timeout(void **state)
{
    simplex_client_options o;
    simplex_client *a = NULL;
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    char addr[400];
    const char *at = strchr(g_srv.addr, '@');
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct timespec t0, t1;
    long ms;
    (void)state;
    assert_true(lfd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    snprintf(addr, sizeof addr, "%.*s@127.0.0.1:%d", (int)(at - g_srv.addr),
             g_srv.addr, ntohs(sa.sin_port));
    assert_int_equal(simplex_client_options_init(&o,
                                                 SIMPLEX_CLIENT_OPTIONS_VERSION),
                     0);
    o.connect_timeout_ms = 300;
    assert_int_equal(simplex_client_new(&a, &o), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(simplex_client_connect(a, addr, NULL),
                     SIMPLEX_ERR_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 250 && ms < 3000);
    simplex_client_free(a);
    close(lfd);
}

/* Keep-alive: a server that stops answering (SIGSTOP) is detected by the
 * missed pings (DOWN); once it runs again the client reconnects (UP). */
static void test_keepalive(void **state)
{
    server s;
    simplex_client_options o;
    simplex_client *a = NULL;
    simplex_queue *q = NULL;
    simplex_client_event *ev;
    (void)state;

    server_start(&s, free_port(), NULL, NULL);
    assert_int_equal(simplex_client_options_init(&o,
                                                 SIMPLEX_CLIENT_OPTIONS_VERSION),
                     0);
    o.connect_timeout_ms = 300;
    o.response_timeout_ms = 200;
    o.ping_interval_ms = 200;
    o.max_missed_pings = 2;
    o.reconnect_initial_ms = 100;
    o.reconnect_max_ms = 300;
    assert_int_equal(simplex_client_new(&a, &o), 0);
    assert_int_equal(simplex_client_create_queue(a, &q, s.addr,
                                                 SIMPLEX_QUEUE_SUBSCRIBE),
                     0);
    /* answered pings keep it up */
    assert_int_equal(simplex_client_next_event(a, 1000, &ev),
                     SIMPLEX_ERR_TIMEOUT);
    /* a second client without keep-alive: its command times out */
    {
        simplex_client_options o2;
        simplex_client *c2 = NULL;
        assert_int_equal(simplex_client_options_init(
                             &o2, SIMPLEX_CLIENT_OPTIONS_VERSION),
                         0);
        o2.response_timeout_ms = 300;
        assert_int_equal(simplex_client_new(&c2, &o2), 0);
        assert_int_equal(simplex_client_ping(c2, s.addr), 0);
        assert_int_equal(tsrv_signal(&s, SIGSTOP), 0);
        assert_int_equal(simplex_client_ping(c2, s.addr), SIMPLEX_ERR_TIMEOUT);
        simplex_client_free(c2);
    }
    ev = wait_event(a, SIMPLEX_CLIENT_EVENT_DOWN, 5000);
    simplex_client_event_free(ev);
    assert_int_equal(tsrv_signal(&s, SIGCONT), 0);
    ev = wait_event(a, SIMPLEX_CLIENT_EVENT_UP, 10000);
    simplex_client_event_free(ev);
    assert_int_equal(simplex_client_delete(a, q), 0);
    simplex_queue_free(q);
    simplex_client_free(a);
    server_stop(&s);
}

/* Several threads sending through one client at once. */
#define SENDERS 4
#define PER_SENDER 25

typedef struct sender_arg {
    simplex_client *c;
    const simplex_queue *q;
    const uint8_t *ssk;
    int id;
    int failures;
} sender_arg;

static void *sender_main(void *p)
{
    sender_arg *a = p;
    size_t sl;
    const uint8_t *sid = simplex_queue_sender_id(a->q, &sl);
    for (int i = 0; i < PER_SENDER; i++) {
        char text[32];
        snprintf(text, sizeof text, "%d:%d", a->id, i);
        if (simplex_client_send(a->c, simplex_queue_server(a->q), sid, sl,
                                a->ssk, 0, (const uint8_t *)text,
                                strlen(text)) != 0)
            a->failures++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    simplex_client *a = new_client(NULL, NULL), *b = new_client(NULL, NULL);
    simplex_queue *q = NULL;
    uint8_t spk[32], ssk[32];
    pthread_t th[SENDERS];
    sender_arg args[SENDERS];
    int next[SENDERS] = {0};
    (void)state;

    assert_int_equal(simplex_client_create_queue(a, &q, g_srv.addr,
                                                 SIMPLEX_QUEUE_SUBSCRIBE),
                     0);
    assert_int_equal(simplex_client_generate_auth_key(spk, ssk), 0);
    assert_int_equal(simplex_client_secure_queue(a, q, spk), 0);
    for (int i = 0; i < SENDERS; i++) {
        args[i].c = b;
        args[i].q = q;
        args[i].ssk = ssk;
        args[i].id = i;
        args[i].failures = 0;
        assert_int_equal(pthread_create(&th[i], NULL, sender_main, &args[i]),
                         0);
    }
    /* receive and ack everything, in order per sender */
    for (int n = 0; n < SENDERS * PER_SENDER; n++) {
        simplex_client_event *ev = wait_event(a, SIMPLEX_CLIENT_EVENT_MSG,
                                              5000);
        size_t bl, ml;
        const uint8_t *body = simplex_client_event_body(ev, &bl);
        const uint8_t *mid = simplex_client_event_msg_id(ev, &ml);
        int who = -1, seq = -1;
        char text[32];
        assert_true(bl < sizeof text);
        memcpy(text, body, bl);
        text[bl] = 0;
        assert_int_equal(sscanf(text, "%d:%d", &who, &seq), 2);
        assert_true(who >= 0 && who < SENDERS);
        assert_int_equal(seq, next[who]);
        next[who]++;
        assert_int_equal(simplex_client_ack(a, q, mid, ml), 0);
        simplex_client_event_free(ev);
    }
    for (int i = 0; i < SENDERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    assert_int_equal(simplex_client_delete(a, q), 0);
    simplex_queue_free(q);
    simplex_client_free(a);
    simplex_client_free(b);
}

/* Kill and restart the server: DOWN, UP, and the resubscribed queue gets
 * a message sent after the restart. */
static void test_reconnect(void **state)
{
    server s;
    simplex_client *a = new_client(NULL, NULL), *b = new_client(NULL, NULL);
    simplex_queue *q = NULL;
    simplex_client_event *ev;
    char dir[] = "/tmp/simplex-client-test-XXXXXX";
    char log[PATH_MAX], addr[512];
    uint8_t spk[32], ssk[32];
    const uint8_t *mid;
    size_t ml;
    int port = free_port();
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(log, sizeof log, "%s/store.log", dir);
    server_start(&s, port, dir, log);
    snprintf(addr, sizeof addr, "%s", s.addr);
    assert_int_equal(simplex_client_create_queue(a, &q, addr,
                                                 SIMPLEX_QUEUE_SUBSCRIBE),
                     0);
    assert_int_equal(simplex_client_generate_auth_key(spk, ssk), 0);
    assert_int_equal(simplex_client_secure_queue(a, q, spk), 0);
    send_text(b, q, ssk, "before");
    ev = wait_event(a, SIMPLEX_CLIENT_EVENT_MSG, 5000);
    check_body(ev, "before");
    mid = simplex_client_event_msg_id(ev, &ml);
    assert_int_equal(simplex_client_ack(a, q, mid, ml), 0);
    simplex_client_event_free(ev);

    server_stop(&s);
    ev = wait_event(a, SIMPLEX_CLIENT_EVENT_DOWN, 5000);
    assert_string_equal(simplex_client_event_server(ev), addr);
    simplex_client_event_free(ev);
    /* while it is down, commands fail instead of hanging */
    assert_true(simplex_client_ping(b, addr) < 0);

    server_start(&s, port, dir, log);
    assert_string_equal(s.addr, addr);
    ev = wait_event(a, SIMPLEX_CLIENT_EVENT_UP, 10000);
    simplex_client_event_free(ev);
    send_text(b, q, ssk, "after");
    ev = wait_event(a, SIMPLEX_CLIENT_EVENT_MSG, 5000);
    check_body(ev, "after");
    mid = simplex_client_event_msg_id(ev, &ml);
    assert_int_equal(simplex_client_ack(a, q, mid, ml), 0);
    simplex_client_event_free(ev);
    assert_int_equal(simplex_client_delete(a, q), 0);
    simplex_client_free(a);
    simplex_client_free(b);
    simplex_queue_free(q);
    server_stop(&s);
    unlink(log);
    remove_dir(dir);
}

/* UP comes once the queues were resubscribed: a queue deleted while the
 * client was away fails its resubscription, and that ERROR event comes
 * before UP (the client reconnects only after 1.5 s, long after the
 * deletion); the other queue is subscribed again by then and gets a
 * message sent after UP. */
static void test_up_after_resubscribe(void **state)
{
    server s;
    simplex_client *a = NULL, *b = new_client(NULL, NULL);
    simplex_queue *q = NULL, *q2 = NULL;
    simplex_client_event *ev;
    char dir[] = "/tmp/simplex-client-test-XXXXXX";
    char log[PATH_MAX], addr[512];
    uint8_t spk[32], ssk[32];
    const uint8_t *mid;
    size_t ml;
    int port = free_port();
    (void)state;

    a = new_client_timed(NULL, NULL, 5000, 1500, 1500);
    assert_non_null(mkdtemp(dir));
    snprintf(log, sizeof log, "%s/store.log", dir);
    server_start(&s, port, dir, log);
    snprintf(addr, sizeof addr, "%s", s.addr);
    assert_int_equal(simplex_client_create_queue(a, &q, addr,
                                                 SIMPLEX_QUEUE_SUBSCRIBE),
                     0);
    assert_int_equal(simplex_client_generate_auth_key(spk, ssk), 0);
    assert_int_equal(simplex_client_secure_queue(a, q, spk), 0);

    assert_int_equal(simplex_client_create_queue(a, &q2, addr,
                                                 SIMPLEX_QUEUE_SUBSCRIBE),
                     0);
    assert_int_equal(simplex_client_secure_queue(a, q2, spk), 0);

    server_stop(&s);
    ev = wait_event(a, SIMPLEX_CLIENT_EVENT_DOWN, 5000);
    simplex_client_event_free(ev);
    server_start(&s, port, dir, log);
    /* the recipient's keys are in q: b deletes the queue meanwhile */
    assert_int_equal(simplex_client_delete(b, q), 0);
    assert_int_equal(simplex_client_next_event(a, 10000, &ev), 0);
    assert_int_equal(simplex_client_event_get_type(ev),
                     SIMPLEX_CLIENT_EVENT_ERROR);
    {
        size_t l, rl;
        const uint8_t *id = simplex_client_event_queue_id(ev, &l);
        const uint8_t *rid = simplex_queue_recipient_id(q, &rl);
        assert_int_equal(l, rl);
        assert_memory_equal(id, rid, rl);
    }
    simplex_client_event_free(ev);
    assert_int_equal(simplex_client_next_event(a, 5000, &ev), 0);
    assert_int_equal(simplex_client_event_get_type(ev),
                     SIMPLEX_CLIENT_EVENT_UP);
    assert_string_equal(simplex_client_event_server(ev), addr);
    simplex_client_event_free(ev);
    /* q2 is subscribed again */
    send_text(b, q2, ssk, "after");
    assert_int_equal(simplex_client_next_event(a, 5000, &ev), 0);
    assert_int_equal(simplex_client_event_get_type(ev),
                     SIMPLEX_CLIENT_EVENT_MSG);
    check_body(ev, "after");
    mid = simplex_client_event_msg_id(ev, &ml);
    assert_int_equal(simplex_client_ack(a, q2, mid, ml), 0);
    simplex_client_event_free(ev);
    /* and nothing else followed (no second DOWN/UP) */
    assert_int_equal(simplex_client_next_event(a, 300, &ev),
                     SIMPLEX_ERR_TIMEOUT);

    assert_int_equal(simplex_client_delete(a, q2), 0);
    simplex_queue_free(q2);
    simplex_client_free(a);
    simplex_client_free(b);
    simplex_queue_free(q);
    server_stop(&s);
    unlink(log);
    remove_dir(dir);
}

/* A server that never answers the resubscription: UP still comes, once
 * the SUB timed out (the response timeout is 1 s here), and only once. */
static void test_up_after_resub_timeout(void **state)
{
    server s;
    simplex_client *a = NULL;
    simplex_queue *q = NULL;
    simplex_client_event *ev;
    char dir[] = "/tmp/simplex-client-test-XXXXXX";
    char log[PATH_MAX], addr[512];
    const char *const mute[] = {"--ignore-sub", NULL};
    struct timespec t0;
    long ms;
    int port = free_port();
    (void)state;

    a = new_client_timed(NULL, NULL, 1000, 100, 400);
    assert_non_null(mkdtemp(dir));
    snprintf(log, sizeof log, "%s/store.log", dir);
    server_start(&s, port, dir, log);
    snprintf(addr, sizeof addr, "%s", s.addr);
    assert_int_equal(simplex_client_create_queue(a, &q, addr,
                                                 SIMPLEX_QUEUE_SUBSCRIBE),
                     0);
    server_stop(&s);
    ev = wait_event(a, SIMPLEX_CLIENT_EVENT_DOWN, 5000);
    simplex_client_event_free(ev);
    /* the same server (same keys and queues), mute on SUB */
    server_start_ex(&s, port, dir, log, mute);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(simplex_client_next_event(a, 10000, &ev), 0);
    {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms = (long)(t1.tv_sec - t0.tv_sec) * 1000 +
             (t1.tv_nsec - t0.tv_nsec) / 1000000;
    }
    assert_int_equal(simplex_client_event_get_type(ev),
                     SIMPLEX_CLIENT_EVENT_UP);
    simplex_client_event_free(ev);
    /* not before the SUB could time out */
    assert_true(ms >= 900);
    assert_int_equal(simplex_client_next_event(a, 1500, &ev),
                     SIMPLEX_ERR_TIMEOUT);

    simplex_client_free(a);
    simplex_queue_free(q);
    server_stop(&s);
    unlink(log);
    remove_dir(dir);
}

/* Subscribing several queues at once, one of them unknown to the server. */
static void test_subscribe_batch(void **state)
{
    simplex_client *a = new_client(NULL, NULL), *b = new_client(NULL, NULL);
    simplex_queue *q[3] = {NULL, NULL, NULL}, *bad = NULL;
    const simplex_queue *list[4];
    int results[4];
    uint8_t spk[32], ssk[32];
    simplex_buf ex = {NULL, 0};
    (void)state;

    assert_int_equal(simplex_client_generate_auth_key(spk, ssk), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(simplex_client_create_queue(b, &q[i], g_srv.addr, 0),
                         0);
        list[i] = q[i];
    }
    /* a queue the server no longer has */
    assert_int_equal(simplex_client_create_queue(b, &bad, g_srv.addr, 0), 0);
    assert_int_equal(simplex_queue_export(bad, &ex), 0);
    assert_int_equal(simplex_client_delete(b, bad), 0);
    list[3] = bad;
    send_text(b, q[1], NULL, "waiting");
    assert_int_equal(simplex_client_subscribe(a, list, 4, results),
                     SIMPLEX_ERR_SERVER);
    assert_int_equal(results[0], 0);
    assert_int_equal(results[1], 0);
    assert_int_equal(results[2], 0);
    assert_int_equal(results[3], SIMPLEX_ERR_SERVER);
    {
        simplex_client_event *ev = wait_event(a, SIMPLEX_CLIENT_EVENT_MSG,
                                              5000);
        size_t l1, l2;
        const uint8_t *id1 = simplex_client_event_queue_id(ev, &l1);
        const uint8_t *id2 = simplex_queue_recipient_id(q[1], &l2);
        check_body(ev, "waiting");
        assert_int_equal(l1, l2);
        assert_memory_equal(id1, id2, l1);
        simplex_client_event_free(ev);
    }
    /* b subscribing q[0] takes it over: a gets END */
    assert_int_equal(simplex_client_subscribe(b, list, 1, NULL), 0);
    simplex_client_event_free(wait_event(a, SIMPLEX_CLIENT_EVENT_END, 5000));
    /* b deletes q[2], subscribed on a: a gets DELD */
    assert_int_equal(simplex_client_delete(b, q[2]), 0);
    {
        simplex_client_event *ev = wait_event(a, SIMPLEX_CLIENT_EVENT_DELD,
                                              5000);
        size_t l1, l2;
        const uint8_t *id1 = simplex_client_event_queue_id(ev, &l1);
        const uint8_t *id2 = simplex_queue_recipient_id(q[2], &l2);
        assert_int_equal(l1, l2);
        assert_memory_equal(id1, id2, l1);
        simplex_client_event_free(ev);
    }
    simplex_queue_free(q[2]);
    q[2] = NULL;
    simplex_buf_dispose(&ex);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(simplex_client_delete(b, q[i]), 0);
        simplex_queue_free(q[i]);
    }
    simplex_queue_free(bad);
    simplex_client_free(a);
    simplex_client_free(b);
}

/* ---- SOCKS5 (Debian's microsocks) ---- */

static pid_t start_microsocks(int *port, const char *user, const char *pass)
{
    const char *bin = getenv("MICROSOCKS");
    char portstr[16];
    pid_t pid;
    if (!bin || !*bin)
        bin = "/usr/bin/microsocks";
    if (access(bin, X_OK) != 0)
        fail_msg("microsocks is not installed (%s): the SOCKS5 tests need it",
                 bin);
    *port = free_port();
    snprintf(portstr, sizeof portstr, "%d", *port);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int dn = open("/dev/null", O_RDWR);
        if (dn >= 0) {
            dup2(dn, 1);
            dup2(dn, 2);
        }
        if (user)
            execl(bin, "microsocks", "-i", "127.0.0.1", "-p", portstr, "-u",
                  user, "-P", pass, (char *)NULL);
        else
            execl(bin, "microsocks", "-i", "127.0.0.1", "-p", portstr,
                  (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        struct sockaddr_in a;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)*port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            close(fd);
            return pid;
        }
        close(fd);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail_msg("microsocks did not start");
    return -1;
}

static simplex_client *socks_client(int port, const char *user,
                                    const char *pass, int isolate)
{
    simplex_client_options o;
    simplex_client *c = NULL;
    char proxy[64];
    snprintf(proxy, sizeof proxy, "127.0.0.1:%d", port);
    assert_int_equal(simplex_client_options_init(&o,
                                                 SIMPLEX_CLIENT_OPTIONS_VERSION),
                     0);
    o.connect_timeout_ms = 5000;
    o.response_timeout_ms = 5000;
    o.socks5_proxy = proxy;
    o.socks5_username = user;
    o.socks5_password = pass;
    o.socks5_isolate = isolate;
    assert_int_equal(simplex_client_new(&c, &o), 0);
    return c;
}

static void test_socks5(void **state)
{
    int port, port_auth;
    pid_t p1 = start_microsocks(&port, NULL, NULL);
    pid_t p2 = start_microsocks(&port_auth, "alice", "secret");
    simplex_client *a;
    simplex_queue *q = NULL;
    char bad[600], proxy[64];
    (void)state;

    /* no authentication */
    a = socks_client(port, NULL, NULL, 0);
    assert_int_equal(simplex_client_create_queue(a, &q, g_srv.addr, 0), 0);
    assert_int_equal(simplex_client_delete(a, q), 0);
    simplex_queue_free(q);
    q = NULL;
    /* the identity check still applies through the proxy */
    wrong_key_addr(bad, sizeof bad, g_srv.addr);
    assert_int_equal(simplex_client_connect(a, bad, NULL),
                     SIMPLEX_ERR_SERVER_IDENTITY);
    simplex_client_free(a);
    /* user / password */
    a = socks_client(port_auth, "alice", "secret", 0);
    assert_int_equal(simplex_client_ping(a, g_srv.addr), 0);
    simplex_client_free(a);
    a = socks_client(port_auth, "alice", "wrong", 0);
    assert_int_equal(simplex_client_ping(a, g_srv.addr),
                     SIMPLEX_ERR_PROXY_AUTH);
    simplex_client_free(a);
    /* isolation credentials: microsocks without auth refuses user/pass */
    a = socks_client(port, NULL, NULL, 1);
    assert_int_equal(simplex_client_ping(a, g_srv.addr),
                     SIMPLEX_ERR_PROXY_AUTH);
    simplex_client_free(a);
    /* simplex-cli --socks5 */
    snprintf(proxy, sizeof proxy, "127.0.0.1:%d", port);
    {
        char path[PATH_MAX];
        int st = 0;
        pid_t pid;
        bin_path(path, sizeof path, "simplex-cli");
        fflush(stdout);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int dn = open("/dev/null", O_WRONLY);
            if (dn >= 0)
                dup2(dn, 1);
            execl(path, "simplex-cli", "server-test", g_srv.addr, "--socks5",
                  proxy, "--timeout", "5", (char *)NULL);
            _exit(127);
        }
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    kill(p1, SIGTERM);
    kill(p2, SIGTERM);
    waitpid(p1, NULL, 0);
    waitpid(p2, NULL, 0);
}

static void test_cli(void **state)
{
    char bad[600];
    (void)state;
    assert_int_equal(run_cli("server-test", g_srv.addr, "--timeout", "5"), 0);
    wrong_key_addr(bad, sizeof bad, g_srv.addr);
    assert_int_not_equal(run_cli("server-test", bad, "--timeout", "5"), 0);
    assert_int_not_equal(run_cli("server-test", "smp://nonsense", NULL, NULL),
                         0);
}

/* ---- proxied sending (private message routing) ---- */

/* Starts a loopback server with --proxy on port (0: any), keeping its
 * credentials in dir when given. */
static void proxy_server_start(server *s, int port, const char *dir)
{
    static const char *const extra[] = {"--proxy", NULL};
    server_start_ex(s, port, dir, NULL, extra);
}

static void proxy_server_stop(server *s)
{
    server_stop(s);
}

static void expect_last_error(simplex_client *c, const char *text)
{
    simplex_buf m = {NULL, 0};
    assert_int_equal(simplex_client_last_error(c, &m), 0);
    assert_non_null(m.data);
    if (strcmp((const char *)m.data, text) != 0)
        fail_msg("last error \"%s\", expected \"%s\"", (const char *)m.data,
                 text);
    simplex_buf_dispose(&m);
}

/* The sender sends through a proxy server to a queue on the destination:
 * the recipient gets the MSG; the session is reused; errors of the
 * destination come back as they are; a proxy that restarted and forgot
 * the session (NO_SESSION) is asked again. */
static void test_proxy_send(void **state)
{
    server px;
    simplex_client *rcv = new_client(NULL, NULL), *snd = new_client(NULL, NULL);
    simplex_queue *q = NULL;
    simplex_client_event *ev;
    uint8_t spk[32], ssk[32], osk[32], opk[32];
    const uint8_t *sid;
    size_t sid_len;
    int port = free_port();
    static const char *const texts[] = {"via proxy 1", "via proxy 2",
                                        "via proxy 3"};
    (void)state;

    char dir[] = "/tmp/sx-proxy-XXXXXX", old[512];
    assert_non_null(mkdtemp(dir));
    proxy_server_start(&px, port, dir);
    assert_int_equal(simplex_client_create_queue(rcv, &q, g_srv.addr,
                                                 SIMPLEX_QUEUE_SUBSCRIBE),
                     0);
    assert_int_equal(simplex_client_generate_auth_key(spk, ssk), 0);
    assert_int_equal(simplex_client_secure_queue(rcv, q, spk), 0);
    sid = simplex_queue_sender_id(q, &sid_len);

    for (int i = 0; i < 2; i++) {
        assert_int_equal(simplex_client_send_via(
                             snd, px.addr, g_srv.addr, sid, sid_len, ssk, 0,
                             (const uint8_t *)texts[i], strlen(texts[i])),
                         0);
        ev = wait_event(rcv, SIMPLEX_CLIENT_EVENT_MSG, 5000);
        check_body(ev, texts[i]);
        {
            size_t ml;
            const uint8_t *mid = simplex_client_event_msg_id(ev, &ml);
            assert_int_equal(simplex_client_ack(rcv, q, mid, ml), 0);
        }
        simplex_client_event_free(ev);
    }

    /* the destination refuses: a wrong sender key, an unknown queue */
    assert_int_equal(simplex_client_generate_auth_key(opk, osk), 0);
    assert_int_equal(simplex_client_send_via(snd, px.addr, g_srv.addr, sid,
                                             sid_len, osk, 0,
                                             (const uint8_t *)"x", 1),
                     SIMPLEX_ERR_SERVER);
    expect_last_error(snd, "ERR AUTH");
    {
        uint8_t nosuch[24];
        memset(nosuch, 7, sizeof nosuch);
        assert_int_equal(simplex_client_send_via(snd, px.addr, g_srv.addr,
                                                 nosuch, sizeof nosuch, ssk, 0,
                                                 (const uint8_t *)"x", 1),
                         SIMPLEX_ERR_SERVER);
        expect_last_error(snd, "ERR AUTH");
    }

    /* the proxy restarts on the same port: the cached session is gone
     * there (NO_SESSION) and is set up again */
    snprintf(old, sizeof old, "%s", px.addr);
    proxy_server_stop(&px);
    proxy_server_start(&px, port, dir);
    assert_string_equal(px.addr, old);
    assert_int_equal(simplex_client_send_via(
                         snd, px.addr, g_srv.addr, sid, sid_len, ssk,
                         SIMPLEX_SEND_NOTIFICATION,
                         (const uint8_t *)texts[2], strlen(texts[2])),
                     0);
    ev = wait_event(rcv, SIMPLEX_CLIENT_EVENT_MSG, 5000);
    check_body(ev, texts[2]);
    simplex_client_event_free(ev);

    /* bad arguments */
    assert_int_equal(simplex_client_send_via(snd, NULL, g_srv.addr, sid,
                                             sid_len, ssk, 0,
                                             (const uint8_t *)"x", 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_send_via(snd, "smp://nonsense",
                                             g_srv.addr, sid, sid_len, ssk, 0,
                                             (const uint8_t *)"x", 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_send_via(snd, px.addr, g_srv.addr, sid,
                                             0, ssk, 0,
                                             (const uint8_t *)"x", 1),
                     SIMPLEX_ERR_INVALID_ARG);

    simplex_client_free(snd);
    simplex_client_free(rcv);
    simplex_queue_free(q);
    proxy_server_stop(&px);
    {
        static const char *const files[] = {"ca.crt", "ca.key", "server.crt",
                                            "server.key"};
        char f[PATH_MAX];
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            snprintf(f, sizeof f, "%s/%s", dir, files[i]);
            unlink(f);
        }
        rmdir(dir);
    }
}

/* A destination address with a wrong key hash: the proxy cannot
 * connect to it (unknown CA), PROXY BROKER NETWORK; a server that is not
 * a proxy: PROXY BASIC_AUTH. */
static void test_proxy_errors(void **state)
{
    server px;
    simplex_client *snd = new_client(NULL, NULL);
    char bad[600];
    uint8_t sid[24], pk[32], sk[32];
    (void)state;

    memset(sid, 1, sizeof sid);
    assert_int_equal(simplex_client_generate_auth_key(pk, sk), 0);
    proxy_server_start(&px, 0, NULL);
    wrong_key_addr(bad, sizeof bad, g_srv.addr);
    assert_int_equal(simplex_client_send_via(snd, px.addr, bad, sid,
                                             sizeof sid, sk, 0,
                                             (const uint8_t *)"x", 1),
                     SIMPLEX_ERR_SERVER);
    expect_last_error(snd, "ERR PROXY BROKER NETWORK");
    /* a port nobody listens on: the same */
    {
        char dead[600];
        const char *at = strchr(g_srv.addr, '@');
        assert_non_null(at);
        snprintf(dead, sizeof dead, "%.*s@127.0.0.1:%d",
                 (int)(at - g_srv.addr), g_srv.addr, free_port());
        assert_int_equal(simplex_client_send_via(snd, px.addr, dead, sid,
                                                 sizeof sid, sk, 0,
                                                 (const uint8_t *)"x", 1),
                         SIMPLEX_ERR_SERVER);
        expect_last_error(snd, "ERR PROXY BROKER NETWORK");
    }
    /* the good address still works through the same proxy */
    assert_int_equal(simplex_client_send_via(snd, px.addr, g_srv.addr, sid,
                                             sizeof sid, sk, 0,
                                             (const uint8_t *)"x", 1),
                     SIMPLEX_ERR_SERVER);
    expect_last_error(snd, "ERR AUTH");
    /* the destination server itself is no proxy */
    assert_int_equal(simplex_client_send_via(snd, g_srv.addr, px.addr, sid,
                                             sizeof sid, sk, 0,
                                             (const uint8_t *)"x", 1),
                     SIMPLEX_ERR_SERVER);
    expect_last_error(snd, "ERR PROXY BASIC_AUTH");
    simplex_client_free(snd);
    proxy_server_stop(&px);
}

/* simplex-cli server-test <destination> --proxy <proxy> */
static void test_proxy_cli(void **state)
{
    server px;
    (void)state;
    proxy_server_start(&px, 0, NULL);
    assert_int_equal(run_cli("server-test", g_srv.addr, "--proxy", px.addr),
                     0);
    /* through a server that is not a proxy: the send step fails */
    assert_int_not_equal(run_cli("server-test", px.addr, "--proxy",
                                 g_srv.addr),
                         0);
    proxy_server_stop(&px);
}

/* ---- notifications (NKEY / NSUB / NMSG / NDEL) ---- */

static void send_ntf(simplex_client *c, const simplex_queue *q,
                     const char *text)
{
    size_t sl;
    const uint8_t *sid = simplex_queue_sender_id(q, &sl);
    assert_int_equal(simplex_client_send(c, simplex_queue_server(q), sid, sl,
                                         NULL, SIMPLEX_SEND_NOTIFICATION,
                                         (const uint8_t *)text, strlen(text)),
                     0);
}

/* NKEY -> NID; a second client NSUBs with the (exported and imported)
 * notifier credentials; a SEND with the notification flag gives it an NMSG
 * whose metadata names the message; NDEL ends its subscription (DELD). */
static void test_notifications(void **state)
{
    simplex_client *a = new_client(NULL, NULL);
    simplex_client *b = new_client(NULL, NULL);
    simplex_queue *q = NULL;
    simplex_notifier *nt = NULL, *nt2 = NULL;
    simplex_client_event *ev = NULL, *msg = NULL, *cp = NULL;
    simplex_buf ex = {NULL, 0}, mid = {NULL, 0};
    const uint8_t *nid, *qid, *gid;
    size_t nl, ql, gl;
    int64_t ts = 0;
    (void)state;

    assert_int_equal(simplex_client_create_queue(a, &q, g_srv.addr, 0), 0);
    assert_int_equal(simplex_client_enable_notifications(a, &nt, q), 0);
    assert_non_null(nt);
    nid = simplex_notifier_id(nt, &nl);
    assert_non_null(nid);
    assert_true(nl > 0);
    assert_string_equal(simplex_notifier_server(nt), g_srv.addr);
    assert_int_equal(simplex_notifier_export(nt, &ex), 0);
    assert_int_equal(simplex_notifier_import(&nt2, ex.data, ex.len), 0);
    simplex_buf_dispose(&ex);
    {
        size_t l2;
        const uint8_t *id2 = simplex_notifier_id(nt2, &l2);
        assert_int_equal(l2, nl);
        assert_memory_equal(id2, nid, nl);
    }
    assert_int_equal(simplex_client_subscribe_notifications(b, nt2), 0);

    send_ntf(a, q, "notified");
    ev = wait_event(b, SIMPLEX_CLIENT_EVENT_NMSG, 5000);
    qid = simplex_client_event_queue_id(ev, &ql);
    assert_int_equal(ql, nl);
    assert_memory_equal(qid, nid, nl);
    assert_non_null(simplex_client_event_nonce(ev));
    /* a copy keeps the nonce */
    assert_int_equal(simplex_client_event_copy(&cp, ev), 0);
    assert_memory_equal(simplex_client_event_nonce(cp),
                        simplex_client_event_nonce(ev), 24);
    assert_int_equal(simplex_notifier_decrypt(&mid, &ts, nt, cp), 0);
    simplex_client_event_free(cp);
    assert_true(mid.len > 0);
    assert_int_equal(simplex_client_get(a, q, &msg), 0);
    assert_non_null(msg);
    check_body(msg, "notified");
    gid = simplex_client_event_msg_id(msg, &gl);
    assert_int_equal(gl, mid.len);
    assert_memory_equal(gid, mid.data, gl);
    assert_true(ts == simplex_client_event_timestamp(msg));
    assert_int_equal(simplex_client_ack(a, q, gid, gl), 0);
    simplex_client_event_free(msg);
    simplex_buf_dispose(&mid);
    /* not an NMSG: refused */
    assert_null(simplex_client_event_nonce(NULL));
    assert_int_equal(simplex_notifier_decrypt(&mid, &ts, nt, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    simplex_client_event_free(ev);

    /* a message without the flag notifies nobody; the next one does */
    send_text(a, q, NULL, "quiet");
    send_ntf(a, q, "again");
    ev = wait_event(b, SIMPLEX_CLIENT_EVENT_NMSG, 5000);
    assert_int_equal(simplex_notifier_decrypt(&mid, &ts, nt2, ev), 0);
    simplex_buf_dispose(&mid);
    simplex_client_event_free(ev);

    /* NDEL: the notifier's subscription is deleted */
    assert_int_equal(simplex_client_disable_notifications(a, q), 0);
    ev = wait_event(b, SIMPLEX_CLIENT_EVENT_DELD, 5000);
    qid = simplex_client_event_queue_id(ev, &ql);
    assert_int_equal(ql, nl);
    assert_memory_equal(qid, nid, nl);
    simplex_client_event_free(ev);
    /* and NSUB now fails */
    assert_int_equal(simplex_client_subscribe_notifications(b, nt2),
                     SIMPLEX_ERR_SERVER);

    assert_int_equal(simplex_client_delete(a, q), 0);
    simplex_notifier_free(nt);
    simplex_notifier_free(nt2);
    simplex_queue_free(q);
    simplex_client_free(b);
    simplex_client_free(a);
}

/* NSUB with a wrong key: the server refuses (AUTH); bad arguments and
 * bad exports are refused locally. */
static void test_notification_errors(void **state)
{
    simplex_client *a = new_client(NULL, NULL);
    simplex_client *b = new_client(NULL, NULL);
    simplex_queue *q = NULL;
    simplex_notifier *nt = NULL, *bad = NULL;
    simplex_buf ex = {NULL, 0}, m = {NULL, 0};
    size_t nl, off;
    (void)state;

    assert_int_equal(simplex_client_create_queue(a, &q, g_srv.addr, 0), 0);
    assert_int_equal(simplex_client_enable_notifications(NULL, &nt, q),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_enable_notifications(a, NULL, q),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_enable_notifications(a, &nt, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_null(nt);
    assert_int_equal(simplex_client_disable_notifications(a, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_subscribe_notifications(b, NULL),
                     SIMPLEX_ERR_INVALID_ARG);

    assert_int_equal(simplex_client_enable_notifications(a, &nt, q), 0);
    (void)simplex_notifier_id(nt, &nl);
    assert_int_equal(simplex_notifier_export(nt, &ex), 0);
    /* version, server, notifier id, then the auth key */
    off = 1 + 1 + strlen(g_srv.addr) + 1 + nl;
    assert_true(ex.len > off + 32);
    ex.data[off] ^= 0x5a;
    assert_int_equal(simplex_notifier_import(&bad, ex.data, ex.len), 0);
    assert_int_equal(simplex_client_subscribe_notifications(b, bad),
                     SIMPLEX_ERR_SERVER);
    assert_int_equal(simplex_client_last_error(b, &m), 0);
    assert_non_null(m.data);
    assert_true(strncmp((const char *)m.data, "ERR", 3) == 0);
    simplex_buf_dispose(&m);
    simplex_notifier_free(bad);
    bad = NULL;
    /* the right key still works afterwards */
    assert_int_equal(simplex_client_subscribe_notifications(b, nt), 0);

    /* unsupported version, truncated data */
    ex.data[0] = 99;
    assert_int_equal(simplex_notifier_import(&bad, ex.data, ex.len),
                     SIMPLEX_ERR_UNSUPPORTED);
    assert_null(bad);
    ex.data[0] = 1;
    assert_true(simplex_notifier_import(&bad, ex.data, ex.len - 1) < 0);
    assert_null(bad);
    simplex_buf_dispose(&ex);
    assert_int_equal(simplex_notifier_export(NULL, &ex),
                     SIMPLEX_ERR_INVALID_ARG);

    /* NDEL without notifications is fine (OK) */
    assert_int_equal(simplex_client_disable_notifications(a, q), 0);
    assert_int_equal(simplex_client_disable_notifications(a, q), 0);
    assert_int_equal(simplex_client_delete(a, q), 0);
    simplex_notifier_free(nt);
    simplex_notifier_free(NULL);
    simplex_queue_free(q);
    simplex_client_free(b);
    simplex_client_free(a);
}

/* ---- asynchronous commands (SEND / ACK without waiting) ---- */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (long)(t1.tv_sec - t0->tv_sec) * 1000 +
           (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Waits until *counter (read under mu) is at least n: 1 when it is. */
static int wait_count(pthread_mutex_t *mu, const int *counter, int n,
                      int timeout_ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int v;
        pthread_mutex_lock(mu);
        v = *counter;
        pthread_mutex_unlock(mu);
        if (v >= n)
            return 1;
        if (elapsed_ms(&t0) > timeout_ms)
            return 0;
        sleep_ms(2);
    }
}

static int read_count(pthread_mutex_t *mu, const int *counter)
{
    int v;
    pthread_mutex_lock(mu);
    v = *counter;
    pthread_mutex_unlock(mu);
    return v;
}

static void random_bytes(uint8_t *out, size_t n)
{
    int fd = open("/dev/urandom", O_RDONLY);
    size_t got = 0;
    assert_true(fd >= 0);
    while (got < n) {
        ssize_t r = read(fd, out + got, n - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    close(fd);
}

/* "smp://<key hash>@127.0.0.1:<port>" with the shared server's key hash. */
static void addr_with_port(char *out, size_t cap, int port)
{
    const char *at = strchr(g_srv.addr, '@');
    assert_non_null(at);
    snprintf(out, cap, "%.*s@127.0.0.1:%d", (int)(at - g_srv.addr),
             g_srv.addr, port);
}

/* One completion: how often done ran, with what. */
typedef struct done_rec {
    pthread_mutex_t mu;
    int calls;
    int rc;
    int error_null;
    char error[256];
} done_rec;

static void done_rec_init(done_rec *d)
{
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
}

static void rec_done(int rc, const char *error, void *ud)
{
    done_rec *d = ud;
    pthread_mutex_lock(&d->mu);
    d->calls++;
    d->rc = rc;
    d->error_null = error == NULL;
    snprintf(d->error, sizeof d->error, "%s", error ? error : "");
    pthread_mutex_unlock(&d->mu);
}

/* 1. A pipeline: 100 SENDs posted in a loop (at most 50 unacknowledged
 * by the recipient, under the server's quota of 128), received in order
 * by a callback-mode recipient that acknowledges each with ack_async from
 * the event callback. Every completion runs once with rc 0; SEND
 * completions come in the order of the calls. */
#define PIPE_N 100
#define PIPE_WINDOW 50

typedef struct pipe_state pipe_state;

typedef struct pipe_slot {
    pipe_state *st;
    int seq;
} pipe_slot;

struct pipe_state {
    pthread_mutex_t mu;
    simplex_client *rcv;
    const simplex_queue *q;
    /* SEND completions */
    pipe_slot send_slot[PIPE_N];
    int send_calls_per[PIPE_N];
    int send_calls, send_ok, send_next, send_order_errors, send_bad_text;
    int send_fail_rc;
    char send_fail_err[200];
    /* the recipient */
    int received, next_seq, order_errors, bad_flags, other_events;
    int first_bad_seq;
    int got_seq[PIPE_N + 16];
    int ack_post_fail, ack_post_rc;
    /* ACK completions */
    pipe_slot ack_slot[PIPE_N];
    int ack_calls_per[PIPE_N];
    int ack_calls, ack_ok, ack_bad_text, ack_fail_rc;
    char ack_fail_err[200];
};

static void pipe_send_done(int rc, const char *error, void *ud)
{
    pipe_slot *s = ud;
    pipe_state *st = s->st;
    pthread_mutex_lock(&st->mu);
    st->send_calls++;
    st->send_calls_per[s->seq]++;
    if (s->seq != st->send_next)
        st->send_order_errors++;
    st->send_next = s->seq + 1;
    if (!error || (rc == 0 && *error))
        st->send_bad_text++;
    if (rc == 0) {
        st->send_ok++;
    } else if (!st->send_fail_rc) {
        st->send_fail_rc = rc;
        snprintf(st->send_fail_err, sizeof st->send_fail_err, "%s",
                 error ? error : "(null)");
    }
    pthread_mutex_unlock(&st->mu);
}

static void pipe_ack_done(int rc, const char *error, void *ud)
{
    pipe_slot *s = ud;
    pipe_state *st = s->st;
    pthread_mutex_lock(&st->mu);
    st->ack_calls++;
    st->ack_calls_per[s->seq]++;
    if (!error || (rc == 0 && *error))
        st->ack_bad_text++;
    if (rc == 0) {
        st->ack_ok++;
    } else if (!st->ack_fail_rc) {
        st->ack_fail_rc = rc;
        snprintf(st->ack_fail_err, sizeof st->ack_fail_err, "%s",
                 error ? error : "(null)");
    }
    pthread_mutex_unlock(&st->mu);
}

static void pipe_on_event(const simplex_client_event *ev, void *ud)
{
    pipe_state *st = ud;
    const uint8_t *body, *mid;
    size_t bl, ml;
    char text[32];
    int seq = -1, idx, rc;
    if (simplex_client_event_get_type(ev) != SIMPLEX_CLIENT_EVENT_MSG) {
        pthread_mutex_lock(&st->mu);
        st->other_events++;
        pthread_mutex_unlock(&st->mu);
        return;
    }
    body = simplex_client_event_body(ev, &bl);
    mid = simplex_client_event_msg_id(ev, &ml);
    if (bl < sizeof text) {
        memcpy(text, body, bl);
        text[bl] = 0;
        if (sscanf(text, "async %d", &seq) != 1)
            seq = -1;
    }
    pthread_mutex_lock(&st->mu);
    idx = st->received++;
    if (idx < PIPE_N + 16)
        st->got_seq[idx] = seq;
    if (seq != st->next_seq) {
        if (!st->order_errors)
            st->first_bad_seq = seq;
        st->order_errors++;
    }
    st->next_seq = seq + 1;
    if (simplex_client_event_flags(ev) != 0)
        st->bad_flags++;
    pthread_mutex_unlock(&st->mu);
    if (idx >= PIPE_N)
        return; /* counted as an error by the test */
    rc = simplex_client_ack_async(st->rcv, st->q, mid, ml, pipe_ack_done,
                                  &st->ack_slot[idx]);
    if (rc != 0) {
        pthread_mutex_lock(&st->mu);
        st->ack_post_fail++;
        st->ack_post_rc = rc;
        pthread_mutex_unlock(&st->mu);
    }
}

static void test_async_pipeline(void **state)
{
    pipe_state *st = calloc(1, sizeof *st);
    simplex_client *rcv, *snd = new_client(NULL, NULL);
    simplex_queue *q = NULL;
    uint8_t spk[32], ssk[32];
    const uint8_t *sid;
    size_t sl;
    struct timespec t0;
    (void)state;

    assert_non_null(st);
    pthread_mutex_init(&st->mu, NULL);
    for (int i = 0; i < PIPE_N; i++) {
        st->send_slot[i].st = st;
        st->send_slot[i].seq = i;
        st->ack_slot[i].st = st;
        st->ack_slot[i].seq = i;
    }
    rcv = new_client(pipe_on_event, st);
    st->rcv = rcv;
    assert_int_equal(simplex_client_create_queue(
                         rcv, &q, g_srv.addr,
                         SIMPLEX_QUEUE_SUBSCRIBE | SIMPLEX_QUEUE_SENDER_SECURE),
                     0);
    st->q = q;
    assert_int_equal(simplex_client_generate_auth_key(spk, ssk), 0);
    sid = simplex_queue_sender_id(q, &sl);
    assert_int_equal(simplex_client_secure_sender(snd, g_srv.addr, sid, sl,
                                                  ssk),
                     0);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < PIPE_N; i++) {
        char body[32];
        uint8_t key[32];
        int n;
        /* the window: at most PIPE_WINDOW messages not yet acknowledged */
        if (!wait_count(&st->mu, &st->ack_ok, i - PIPE_WINDOW + 1, 5000))
            fail_msg("window stuck at message %d: %d acknowledged, %d sent "
                     "(%d ok), %d received",
                     i, read_count(&st->mu, &st->ack_ok),
                     read_count(&st->mu, &st->send_calls),
                     read_count(&st->mu, &st->send_ok),
                     read_count(&st->mu, &st->received));
        n = snprintf(body, sizeof body, "async %d", i);
        memcpy(key, ssk, sizeof key);
        assert_int_equal(simplex_client_send_async(
                             snd, g_srv.addr, sid, sl, key, 0,
                             (const uint8_t *)body, (size_t)n, pipe_send_done,
                             &st->send_slot[i]),
                         0);
        /* the call copied what it needs */
        memset(body, 'X', sizeof body);
        memset(key, 0, sizeof key);
    }
    if (!wait_count(&st->mu, &st->send_calls, PIPE_N, 5000) ||
        !wait_count(&st->mu, &st->received, PIPE_N, 5000) ||
        !wait_count(&st->mu, &st->ack_calls, PIPE_N, 5000))
        fail_msg("incomplete: %d SEND completions, %d received, %d ACK "
                 "completions",
                 read_count(&st->mu, &st->send_calls),
                 read_count(&st->mu, &st->received),
                 read_count(&st->mu, &st->ack_calls));
    assert_true(elapsed_ms(&t0) < 10000);
    /* nothing more arrives or completes twice, also when freeing; after
     * free no callback can run, st is read without the lock */
    sleep_ms(100);
    assert_int_equal(simplex_client_delete(rcv, q), 0);
    simplex_client_free(snd);
    simplex_client_free(rcv);
    if (st->send_fail_rc)
        fail_msg("a SEND failed: %d \"%s\"", st->send_fail_rc,
                 st->send_fail_err);
    if (st->ack_fail_rc)
        fail_msg("an ACK failed: %d \"%s\"", st->ack_fail_rc,
                 st->ack_fail_err);
    assert_int_equal(st->send_calls, PIPE_N);
    assert_int_equal(st->send_ok, PIPE_N);
    assert_int_equal(st->send_order_errors, 0);
    assert_int_equal(st->send_bad_text, 0);
    assert_int_equal(st->received, PIPE_N);
    assert_int_equal(st->bad_flags, 0);
    assert_int_equal(st->other_events, 0);
    assert_int_equal(st->ack_post_fail, 0);
    assert_int_equal(st->ack_calls, PIPE_N);
    assert_int_equal(st->ack_ok, PIPE_N);
    assert_int_equal(st->ack_bad_text, 0);
    for (int i = 0; i < PIPE_N; i++) {
        assert_int_equal(st->send_calls_per[i], 1);
        assert_int_equal(st->ack_calls_per[i], 1);
    }
    /* the recipient got them in the order they were posted */
    {
        int order_errors = st->order_errors, first_bad = st->first_bad_seq;
        int next_seq = st->next_seq;
        if (order_errors) {
            print_message("received:");
            for (int i = 0; i < st->received && i < PIPE_N + 16; i++)
                print_message(" %d", st->got_seq[i]);
            print_message("\n");
        }
        simplex_queue_free(q);
        pthread_mutex_destroy(&st->mu);
        free(st);
        if (order_errors)
            fail_msg("%d messages out of order (first: %d)", order_errors,
                     first_bad);
        assert_int_equal(next_seq, PIPE_N);
    }
}

/* 2. Failures: the server's (AUTH, NO_MSG) come to done; bad arguments are
 * refused at once without done; with done NULL a failure is an ERROR
 * event (with the queue id for ACK). */
static void test_async_errors(void **state)
{
    simplex_client *snd = new_client(NULL, NULL), *rcv = new_client(NULL, NULL);
    simplex_queue *q = NULL;
    simplex_client_event *ev = NULL;
    done_rec d, never;
    uint8_t nosuch[24], bogus[24], spk[32], ssk[32], big_id[25];
    const uint8_t *sid, *rid, *mid;
    size_t sl, rl, ml;
    (void)state;

    done_rec_init(&never);
    random_bytes(nosuch, sizeof nosuch);
    random_bytes(bogus, sizeof bogus);
    memset(big_id, 1, sizeof big_id);
    assert_int_equal(simplex_client_generate_auth_key(spk, ssk), 0);

    /* SEND to a queue the server does not know: ERR AUTH */
    done_rec_init(&d);
    assert_int_equal(simplex_client_send_async(snd, g_srv.addr, nosuch,
                                               sizeof nosuch, ssk, 0,
                                               (const uint8_t *)"x", 1,
                                               rec_done, &d),
                     0);
    assert_true(wait_count(&d.mu, &d.calls, 1, 5000));
    sleep_ms(50);
    pthread_mutex_lock(&d.mu);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.rc, SIMPLEX_ERR_SERVER);
    assert_false(d.error_null);
    if (!strstr(d.error, "AUTH"))
        fail_msg("SEND error text \"%s\" has no AUTH", d.error);
    pthread_mutex_unlock(&d.mu);
    pthread_mutex_destroy(&d.mu);
    /* the same without a key */
    done_rec_init(&d);
    assert_int_equal(simplex_client_send_async(snd, g_srv.addr, nosuch,
                                               sizeof nosuch, NULL, 0,
                                               (const uint8_t *)"x", 1,
                                               rec_done, &d),
                     0);
    assert_true(wait_count(&d.mu, &d.calls, 1, 5000));
    assert_int_equal(d.rc, SIMPLEX_ERR_SERVER);
    assert_non_null(strstr(d.error, "AUTH"));
    pthread_mutex_destroy(&d.mu);

    /* ACK of a message id that was never delivered: ERR NO_MSG */
    assert_int_equal(simplex_client_create_queue(rcv, &q, g_srv.addr,
                                                 SIMPLEX_QUEUE_SUBSCRIBE),
                     0);
    rid = simplex_queue_recipient_id(q, &rl);
    sid = simplex_queue_sender_id(q, &sl);
    done_rec_init(&d);
    assert_int_equal(simplex_client_ack_async(rcv, q, bogus, sizeof bogus,
                                              rec_done, &d),
                     0);
    assert_true(wait_count(&d.mu, &d.calls, 1, 5000));
    pthread_mutex_lock(&d.mu);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.rc, SIMPLEX_ERR_SERVER);
    if (!strstr(d.error, "NO_MSG"))
        fail_msg("ACK error text \"%s\" has no NO_MSG", d.error);
    pthread_mutex_unlock(&d.mu);
    pthread_mutex_destroy(&d.mu);

    /* a delivered message: a wrong id is refused, the right one accepted */
    send_text(snd, q, NULL, "to ack");
    ev = wait_event(rcv, SIMPLEX_CLIENT_EVENT_MSG, 5000);
    check_body(ev, "to ack");
    mid = simplex_client_event_msg_id(ev, &ml);
    done_rec_init(&d);
    assert_int_equal(simplex_client_ack_async(rcv, q, bogus, ml, rec_done, &d),
                     0);
    assert_true(wait_count(&d.mu, &d.calls, 1, 5000));
    assert_int_equal(d.rc, SIMPLEX_ERR_SERVER);
    pthread_mutex_destroy(&d.mu);
    done_rec_init(&d);
    assert_int_equal(simplex_client_ack_async(rcv, q, mid, ml, rec_done, &d),
                     0);
    assert_true(wait_count(&d.mu, &d.calls, 1, 5000));
    assert_int_equal(d.rc, 0);
    assert_false(d.error_null);
    assert_string_equal(d.error, "");
    pthread_mutex_destroy(&d.mu);
    /* now it is gone: the same ACK again is NO_MSG */
    done_rec_init(&d);
    assert_int_equal(simplex_client_ack_async(rcv, q, mid, ml, rec_done, &d),
                     0);
    assert_true(wait_count(&d.mu, &d.calls, 1, 5000));
    assert_int_equal(d.rc, SIMPLEX_ERR_SERVER);
    pthread_mutex_destroy(&d.mu);
    simplex_client_event_free(ev);
    ev = NULL;

    /* bad arguments: refused at once, done never called */
    assert_int_equal(simplex_client_send_async(NULL, g_srv.addr, sid, sl, NULL,
                                               0, (const uint8_t *)"x", 1,
                                               rec_done, &never),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_send_async(snd, NULL, sid, sl, NULL, 0,
                                               (const uint8_t *)"x", 1,
                                               rec_done, &never),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_send_async(snd, "not an address", sid, sl,
                                               NULL, 0, (const uint8_t *)"x",
                                               1, rec_done, &never),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_send_async(snd, g_srv.addr, sid, sl, NULL,
                                               0, NULL, 5, rec_done, &never),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_send_async(snd, g_srv.addr, NULL, sl, NULL,
                                               0, (const uint8_t *)"x", 1,
                                               rec_done, &never),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_send_async(snd, g_srv.addr, sid, 0, NULL,
                                               0, (const uint8_t *)"x", 1,
                                               rec_done, &never),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_ack_async(NULL, q, bogus, sizeof bogus,
                                              rec_done, &never),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_ack_async(rcv, NULL, bogus, sizeof bogus,
                                              rec_done, &never),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_ack_async(rcv, q, NULL, sizeof bogus,
                                              rec_done, &never),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_ack_async(rcv, q, bogus, 0, rec_done,
                                              &never),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_client_ack_async(rcv, q, big_id, sizeof big_id,
                                              rec_done, &never),
                     SIMPLEX_ERR_INVALID_ARG);

    /* a body no block can hold fails alone: over 16 KB at once, just
     * under it (no room left for the transmission around it) through
     * done, after the request was handed over (the I/O thread must not
     * touch the freed request afterwards: ASan runs this); the messages
     * posted around it still arrive */
    {
        static uint8_t big[16384], huge[20000];
        assert_int_equal(simplex_client_send_async(snd, g_srv.addr, sid, sl,
                                                   NULL, 0, huge, sizeof huge,
                                                   rec_done, &never),
                         SIMPLEX_ERR_INVALID_ARG);
        done_rec d1, d2, d3;
        int rc;
        done_rec_init(&d1);
        done_rec_init(&d2);
        done_rec_init(&d3);
        assert_int_equal(simplex_client_send_async(snd, g_srv.addr, sid, sl,
                                                   NULL, 0,
                                                   (const uint8_t *)"before",
                                                   6, rec_done, &d1),
                         0);
        rc = simplex_client_send_async(snd, g_srv.addr, sid, sl, NULL, 0, big,
                                       sizeof big, rec_done, &d2);
        assert_int_equal(simplex_client_send_async(snd, g_srv.addr, sid, sl,
                                                   NULL, 0,
                                                   (const uint8_t *)"after",
                                                   5, rec_done, &d3),
                         0);
        assert_true(wait_count(&d1.mu, &d1.calls, 1, 5000));
        assert_true(wait_count(&d3.mu, &d3.calls, 1, 5000));
        assert_int_equal(d1.rc, 0);
        assert_int_equal(d3.rc, 0);
        assert_int_equal(rc, 0);
        assert_true(wait_count(&d2.mu, &d2.calls, 1, 5000));
        assert_int_equal(d2.rc, SIMPLEX_ERR_TOO_LARGE);
        /* both arrive, in the order they were posted */
        for (int i = 0; i < 2; i++) {
            const char *want = i == 0 ? "before" : "after";
            ev = wait_event(rcv, SIMPLEX_CLIENT_EVENT_MSG, 5000);
            check_body(ev, want);
            mid = simplex_client_event_msg_id(ev, &ml);
            assert_int_equal(simplex_client_ack(rcv, q, mid, ml), 0);
            simplex_client_event_free(ev);
        }
        ev = NULL;
        sleep_ms(50);
        assert_int_equal(read_count(&d1.mu, &d1.calls), 1);
        assert_int_equal(read_count(&d2.mu, &d2.calls), 1);
        assert_int_equal(read_count(&d3.mu, &d3.calls), 1);
        pthread_mutex_destroy(&d1.mu);
        pthread_mutex_destroy(&d2.mu);
        pthread_mutex_destroy(&d3.mu);
    }

    /* done NULL: a failing ACK is an ERROR event about the queue */
    assert_int_equal(simplex_client_ack_async(rcv, q, bogus, sizeof bogus,
                                              NULL, NULL),
                     0);
    ev = wait_event(rcv, SIMPLEX_CLIENT_EVENT_ERROR, 5000);
    assert_int_not_equal(simplex_client_event_error(ev), 0);
    assert_int_equal(simplex_client_event_error(ev), SIMPLEX_ERR_SERVER);
    assert_string_equal(simplex_client_event_server(ev), g_srv.addr);
    {
        size_t ql;
        const uint8_t *qid = simplex_client_event_queue_id(ev, &ql);
        assert_int_equal(ql, rl);
        assert_memory_equal(qid, rid, rl);
    }
    simplex_client_event_free(ev);
    /* done NULL: a failing SEND is an ERROR event too */
    assert_int_equal(simplex_client_send_async(snd, g_srv.addr, nosuch,
                                               sizeof nosuch, ssk, 0,
                                               (const uint8_t *)"x", 1, NULL,
                                               NULL),
                     0);
    ev = wait_event(snd, SIMPLEX_CLIENT_EVENT_ERROR, 5000);
    assert_int_equal(simplex_client_event_error(ev), SIMPLEX_ERR_SERVER);
    simplex_client_event_free(ev);
    /* done NULL and success: no event at all */
    assert_int_equal(simplex_client_send_async(snd, g_srv.addr, sid, sl, NULL,
                                               0, (const uint8_t *)"quiet", 5,
                                               NULL, NULL),
                     0);
    ev = wait_event(rcv, SIMPLEX_CLIENT_EVENT_MSG, 5000);
    check_body(ev, "quiet");
    mid = simplex_client_event_msg_id(ev, &ml);
    assert_int_equal(simplex_client_ack_async(rcv, q, mid, ml, NULL, NULL), 0);
    simplex_client_event_free(ev);
    /* commands are answered in order: after these round trips the async
     * ones above are finished */
    assert_int_equal(simplex_client_ping(snd, g_srv.addr), 0);
    {
        simplex_buf info = {NULL, 0};
        assert_int_equal(simplex_client_queue_info(rcv, q, &info), 0);
        simplex_buf_dispose(&info);
    }
    ev = NULL;
    assert_int_equal(simplex_client_next_event(snd, 0, &ev),
                     SIMPLEX_ERR_TIMEOUT);
    assert_int_equal(simplex_client_next_event(rcv, 100, &ev),
                     SIMPLEX_ERR_TIMEOUT);

    assert_int_equal(read_count(&never.mu, &never.calls), 0);
    assert_int_equal(simplex_client_delete(rcv, q), 0);
    simplex_queue_free(q);
    simplex_client_free(snd);
    simplex_client_free(rcv);
    assert_int_equal(never.calls, 0);
    pthread_mutex_destroy(&never.mu);
}

/* 3. From a completion: synchronous calls are refused
 * (SIMPLEX_ERR_RECURSIVE_CALL) and do nothing; posting the next SEND
 * works: a chain of 20 messages, each posted by the previous one's done. */
#define CHAIN_N 20

typedef struct chain_state {
    pthread_mutex_t mu;
    simplex_client *c;
    const char *server;
    const uint8_t *sid;
    size_t sl;
    const uint8_t *ssk;
    int posted;
    int done_calls, done_ok, fail_rc;
    char fail_err[200];
    int ping_bad, ping_rc;
    int send_bad, send_rc;
    int next_event_bad, next_event_rc;
    int post_fail, post_rc;
} chain_state;

static void chain_done(int rc, const char *error, void *ud)
{
    chain_state *st = ud;
    simplex_client_event *ev = NULL;
    int prc = simplex_client_ping(st->c, st->server);
    int src = simplex_client_send(st->c, st->server, st->sid, st->sl, st->ssk,
                                  0, (const uint8_t *)"recursive", 9);
    int nrc = simplex_client_next_event(st->c, 0, &ev);
    int n;
    simplex_client_event_free(ev);
    pthread_mutex_lock(&st->mu);
    st->done_calls++;
    if (rc == 0) {
        st->done_ok++;
    } else if (!st->fail_rc) {
        st->fail_rc = rc;
        snprintf(st->fail_err, sizeof st->fail_err, "%s",
                 error ? error : "(null)");
    }
    if (prc != SIMPLEX_ERR_RECURSIVE_CALL) {
        st->ping_bad++;
        st->ping_rc = prc;
    }
    if (src != SIMPLEX_ERR_RECURSIVE_CALL) {
        st->send_bad++;
        st->send_rc = src;
    }
    if (nrc != SIMPLEX_ERR_RECURSIVE_CALL) {
        st->next_event_bad++;
        st->next_event_rc = nrc;
    }
    n = st->posted;
    if (rc == 0 && n < CHAIN_N)
        st->posted++;
    pthread_mutex_unlock(&st->mu);
    if (rc == 0 && n < CHAIN_N) {
        char body[32];
        int len = snprintf(body, sizeof body, "chain %d", n);
        int r = simplex_client_send_async(st->c, st->server, st->sid, st->sl,
                                          st->ssk, 0, (const uint8_t *)body,
                                          (size_t)len, chain_done, st);
        if (r != 0) {
            pthread_mutex_lock(&st->mu);
            st->post_fail++;
            st->post_rc = r;
            pthread_mutex_unlock(&st->mu);
        }
    }
}

static void test_async_from_callbacks(void **state)
{
    chain_state st;
    simplex_client *rcv = new_client(NULL, NULL), *snd = new_client(NULL, NULL);
    simplex_queue *q = NULL;
    simplex_client_event *ev = NULL;
    uint8_t spk[32], ssk[32];
    (void)state;

    memset(&st, 0, sizeof st);
    pthread_mutex_init(&st.mu, NULL);
    assert_int_equal(simplex_client_create_queue(rcv, &q, g_srv.addr,
                                                 SIMPLEX_QUEUE_SUBSCRIBE),
                     0);
    assert_int_equal(simplex_client_generate_auth_key(spk, ssk), 0);
    assert_int_equal(simplex_client_secure_queue(rcv, q, spk), 0);
    st.c = snd;
    st.server = g_srv.addr;
    st.sid = simplex_queue_sender_id(q, &st.sl);
    st.ssk = ssk;
    st.posted = 1;
    assert_int_equal(simplex_client_send_async(snd, g_srv.addr, st.sid, st.sl,
                                               ssk, 0,
                                               (const uint8_t *)"chain 0", 7,
                                               chain_done, &st),
                     0);
    for (int i = 0; i < CHAIN_N; i++) {
        char text[32];
        const uint8_t *mid;
        size_t ml;
        ev = wait_event(rcv, SIMPLEX_CLIENT_EVENT_MSG, 5000);
        snprintf(text, sizeof text, "chain %d", i);
        check_body(ev, text);
        mid = simplex_client_event_msg_id(ev, &ml);
        assert_int_equal(simplex_client_ack(rcv, q, mid, ml), 0);
        simplex_client_event_free(ev);
    }
    if (!wait_count(&st.mu, &st.done_calls, CHAIN_N, 5000))
        fail_msg("%d completions of %d", read_count(&st.mu, &st.done_calls),
                 CHAIN_N);
    /* the refused synchronous SENDs did not send anything */
    assert_int_equal(simplex_client_next_event(rcv, 200, &ev),
                     SIMPLEX_ERR_TIMEOUT);
    pthread_mutex_lock(&st.mu);
    if (st.fail_rc)
        fail_msg("a SEND failed: %d \"%s\"", st.fail_rc, st.fail_err);
    if (st.ping_bad)
        fail_msg("ping from done: %d (%d times)", st.ping_rc, st.ping_bad);
    if (st.send_bad)
        fail_msg("send from done: %d (%d times)", st.send_rc, st.send_bad);
    if (st.next_event_bad)
        fail_msg("next_event from done: %d (%d times)", st.next_event_rc,
                 st.next_event_bad);
    assert_int_equal(st.post_fail, 0);
    assert_int_equal(st.done_calls, CHAIN_N);
    assert_int_equal(st.done_ok, CHAIN_N);
    assert_int_equal(st.posted, CHAIN_N);
    pthread_mutex_unlock(&st.mu);
    /* the client still works from this thread */
    assert_int_equal(simplex_client_ping(snd, g_srv.addr), 0);
    assert_int_equal(simplex_client_delete(rcv, q), 0);
    simplex_client_free(snd);
    simplex_client_free(rcv);
    assert_int_equal(st.done_calls, CHAIN_N);
    simplex_queue_free(q);
    pthread_mutex_destroy(&st.mu);
}

/* 4. simplex_client_free with commands outstanding: each completion runs
 * exactly once, with an error; posting from such a completion is refused
 * (SIMPLEX_ERR_CLOSED); nothing runs after free returned. */
#define CLOSE_N 8

typedef struct close_state close_state;

typedef struct close_slot {
    close_state *st;
    int i;
} close_slot;

struct close_state {
    pthread_mutex_t mu;
    simplex_client *c;
    const char *server;
    uint8_t sid[24];
    close_slot slot[CLOSE_N];
    int calls_per[CLOSE_N];
    int rc_of[CLOSE_N];
    int calls;
    int reposts, repost_bad, repost_rc;
    int repost_done_calls;
};

static void close_repost_done(int rc, const char *error, void *ud)
{
    close_state *st = ud;
    (void)rc;
    (void)error;
    pthread_mutex_lock(&st->mu);
    st->repost_done_calls++;
    pthread_mutex_unlock(&st->mu);
}

static void close_done(int rc, const char *error, void *ud)
{
    close_slot *s = ud;
    close_state *st = s->st;
    (void)error;
    pthread_mutex_lock(&st->mu);
    st->calls++;
    st->calls_per[s->i]++;
    st->rc_of[s->i] = rc;
    pthread_mutex_unlock(&st->mu);
    if (rc == SIMPLEX_ERR_CLOSED) {
        /* the client is being freed: nothing more is taken */
        int r = simplex_client_send_async(st->c, st->server, st->sid,
                                          sizeof st->sid, NULL, 0,
                                          (const uint8_t *)"late", 4,
                                          close_repost_done, st);
        pthread_mutex_lock(&st->mu);
        st->reposts++;
        if (r != SIMPLEX_ERR_CLOSED) {
            st->repost_bad++;
            st->repost_rc = r;
        }
        pthread_mutex_unlock(&st->mu);
    }
}

/* What the completions of close_run() must report. */
enum { CLOSE_ANY_ERROR = 1, CLOSE_OK_OR_CLOSED = 2, CLOSE_ONLY_CLOSED = 3 };

static int close_rc_ok(int expect, int rc)
{
    switch (expect) {
    case CLOSE_ANY_ERROR:
        return rc < 0;
    case CLOSE_OK_OR_CLOSED:
        return rc == 0 || rc == SIMPLEX_ERR_CLOSED;
    default:
        return rc == SIMPLEX_ERR_CLOSED;
    }
}

/* Posts CLOSE_N SENDs to server on a new client and frees it (after
 * settle_ms); checks the completions. Returns the time free took. */
static long close_run(const char *server, const uint8_t *sid, int settle_ms,
                      int expect, unsigned connect_timeout_ms)
{
    close_state *st = calloc(1, sizeof *st);
    simplex_client_options o;
    struct timespec t0;
    long ms;
    assert_non_null(st);
    pthread_mutex_init(&st->mu, NULL);
    assert_int_equal(simplex_client_options_init(&o,
                                                 SIMPLEX_CLIENT_OPTIONS_VERSION),
                     0);
    o.connect_timeout_ms = connect_timeout_ms;
    o.response_timeout_ms = 5000;
    assert_int_equal(simplex_client_new(&st->c, &o), 0);
    st->server = server;
    if (sid)
        memcpy(st->sid, sid, sizeof st->sid);
    else
        random_bytes(st->sid, sizeof st->sid);
    for (int i = 0; i < CLOSE_N; i++) {
        char body[16];
        int n = snprintf(body, sizeof body, "close %d", i);
        st->slot[i].st = st;
        st->slot[i].i = i;
        st->rc_of[i] = 12345;
        assert_int_equal(simplex_client_send_async(st->c, server, st->sid,
                                                   sizeof st->sid, NULL, 0,
                                                   (const uint8_t *)body,
                                                   (size_t)n, close_done,
                                                   &st->slot[i]),
                         0);
    }
    if (settle_ms)
        sleep_ms(settle_ms);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    simplex_client_free(st->c);
    ms = elapsed_ms(&t0);
    /* every completion ran by now, exactly once */
    pthread_mutex_lock(&st->mu);
    for (int i = 0; i < CLOSE_N; i++) {
        if (st->calls_per[i] != 1)
            fail_msg("completion %d ran %d times", i, st->calls_per[i]);
        if (!close_rc_ok(expect, st->rc_of[i]))
            fail_msg("completion %d: rc %d (%s)", i, st->rc_of[i],
                     expect == CLOSE_ANY_ERROR      ? "expected an error"
                     : expect == CLOSE_OK_OR_CLOSED ? "expected 0 or CLOSED"
                                                    : "expected CLOSED");
    }
    if (st->repost_bad)
        fail_msg("send_async from a CLOSED completion returned %d",
                 st->repost_rc);
    if (expect == CLOSE_ONLY_CLOSED)
        assert_int_equal(st->reposts, CLOSE_N);
    pthread_mutex_unlock(&st->mu);
    /* and nothing runs afterwards */
    sleep_ms(100);
    pthread_mutex_lock(&st->mu);
    assert_int_equal(st->calls, CLOSE_N);
    assert_int_equal(st->repost_done_calls, 0);
    pthread_mutex_unlock(&st->mu);
    pthread_mutex_destroy(&st->mu);
    free(st);
    return ms;
}

static void test_async_close(void **state)
{
    char addr[600];
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int lfd;
    long ms;
    (void)state;

    /* a port nobody listens on: refused (or closed first) */
    addr_with_port(addr, sizeof addr, free_port());
    close_run(addr, NULL, 0, CLOSE_ANY_ERROR, 5000);
    close_run(addr, NULL, 20, CLOSE_ANY_ERROR, 5000);

    /* a host that accepts TCP but never answers TLS: the commands wait
     * for the connection when the client is freed */
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    addr_with_port(addr, sizeof addr, ntohs(sa.sin_port));
    ms = close_run(addr, NULL, 0, CLOSE_ONLY_CLOSED, 5000);
    assert_true(ms < 2000);
    ms = close_run(addr, NULL, 50, CLOSE_ONLY_CLOSED, 5000);
    assert_true(ms < 2000); /* not the connect timeout */
    close(lfd);

    /* the live server, a real queue: each one either went through or was
     * closed, once */
    {
        simplex_client *rcv = new_client(NULL, NULL);
        simplex_queue *q = NULL;
        const uint8_t *sid;
        size_t sl;
        assert_int_equal(simplex_client_create_queue(rcv, &q, g_srv.addr, 0),
                         0);
        sid = simplex_queue_sender_id(q, &sl);
        assert_int_equal(sl, 24);
        close_run(g_srv.addr, sid, 0, CLOSE_OK_OR_CLOSED, 5000);
        close_run(g_srv.addr, sid, 5, CLOSE_OK_OR_CLOSED, 5000);
        assert_int_equal(simplex_client_delete(rcv, q), 0);
        simplex_queue_free(q);
        simplex_client_free(rcv);
    }
}

/* ---- host names resolved off the I/O thread ---- */


typedef struct slow_ping {
    simplex_client *c;
    const char *server;
    int rc;
    long ms;
} slow_ping;

static void *slow_ping_main(void *arg)
{
    slow_ping *sp = arg;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sp->rc = simplex_client_ping(sp->c, sp->server);
    sp->ms = elapsed_ms(&t0);
    return NULL;
}

/* While one server's host name takes 2 s to resolve, another server of
 * the same client connects and answers at once (the I/O thread does not
 * wait for DNS); the slow one works too once resolved. A SOCKS5 proxy
 * whose name does not resolve says so. */
static void test_slow_resolution(void **state)
{
    simplex_client_options o;
    simplex_client *a = NULL;
    simplex_queue *q = NULL;
    simplex_buf m = {NULL, 0};
    char slow[600];
    const char *at = strchr(g_srv.addr, '@');
    slow_ping sp;
    pthread_t th;
    struct timespec t0;
    long ms;
    int i;
    (void)state;
    assert_non_null(at);
    /* same key hash and port: it would work, once resolved */
    snprintf(slow, sizeof slow, "%.*s@slow.test:%d", (int)(at - g_srv.addr),
             g_srv.addr, g_srv.port);
    tsr_install(2000);

    assert_int_equal(simplex_client_options_init(&o,
                                                 SIMPLEX_CLIENT_OPTIONS_VERSION),
                     0);
    o.connect_timeout_ms = 15000;
    o.response_timeout_ms = 15000;
    assert_int_equal(simplex_client_new(&a, &o), 0);
    sp.c = a;
    sp.server = slow;
    sp.rc = 12345;
    sp.ms = -1;
    assert_int_equal(pthread_create(&th, NULL, slow_ping_main, &sp), 0);
    for (i = 0; i < 500 && tsr_entered() == 0; i++)
        sleep_ms(10);
    assert_int_equal(tsr_entered(), 1);

    /* a fresh connection to the numeric server, while the name resolves */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(simplex_client_ping(a, g_srv.addr), 0);
    ms = elapsed_ms(&t0);
    assert_true(ms < 500);
    assert_int_equal(tsr_finished(), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(simplex_client_create_queue(a, &q, g_srv.addr, 0), 0);
    assert_true(elapsed_ms(&t0) < 500);
    assert_int_equal(simplex_client_delete(a, q), 0);
    simplex_queue_free(q);
    q = NULL;
    assert_int_equal(tsr_finished(), 0);

    /* the slow one, after its delay */
    pthread_join(th, NULL);
    assert_int_equal(sp.rc, 0);
    assert_true(sp.ms >= 1500);
    assert_int_equal(tsr_finished(), 1);
    simplex_client_free(a);
    a = NULL;

    /* a proxy host that does not resolve */
    tsr_set_delay(50);
    o.socks5_proxy = "nx.test:1080";
    o.connect_timeout_ms = 5000;
    assert_int_equal(simplex_client_new(&a, &o), 0);
    assert_int_equal(simplex_client_ping(a, g_srv.addr), SIMPLEX_ERR_PROXY);
    assert_int_equal(simplex_client_last_error(a, &m), 0);
    assert_non_null(m.data);
    if (!strstr((const char *)m.data, "SOCKS5 proxy host did not resolve"))
        fail_msg("last error \"%s\"", (const char *)m.data);
    simplex_buf_dispose(&m);
    simplex_client_free(a);
    tsr_uninstall();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_and_args),
        cmocka_unit_test_setup_teardown(test_queue_pull, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_e2e, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_get_skey_off, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_callback_recursive,
                                        ensure_server, kill_leftover),
        cmocka_unit_test_setup_teardown(test_wrong_fingerprint, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_dead_host_first, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_connect_timeout, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_subscribe_batch, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_threads, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_keepalive, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_reconnect, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_up_after_resubscribe, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_up_after_resub_timeout,
                                        ensure_server, kill_leftover),
        cmocka_unit_test_setup_teardown(test_socks5, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_cli, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_proxy_send, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_proxy_errors, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_proxy_cli, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_notifications, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_notification_errors,
                                        ensure_server, kill_leftover),
        cmocka_unit_test_setup_teardown(test_async_pipeline, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_async_errors, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_async_from_callbacks,
                                        ensure_server, kill_leftover),
        cmocka_unit_test_setup_teardown(test_async_close, ensure_server,
                                        kill_leftover),
        cmocka_unit_test_setup_teardown(test_slow_resolution, ensure_server,
                                        kill_leftover),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
