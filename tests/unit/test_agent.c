/*
 * Agent tests in one process: two (or three) agents with their own
 * databases talk through real loopback SMP server processes. The
 * multi-process tests (separate agent processes, SIGKILL) are in
 * test_cli.c.
 */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <time.h>
#include <pthread.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "simplex/simplex.h"
#include "agent/links.h"
#include "common/bytes.h"
#include "server.h"

static tsrv g_srv, g_srv2;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int mkdir_p(const char *d)
{
    return mkdir(d, 0700) == 0 ? 0 : -1;
}
static char g_dir[] = "/tmp/sx-agent-XXXXXX";

/* peer_open flag: SQLite synchronous=NORMAL (survives process crashes) */
#define TEST_RELAXED 0x10000u
/* peer_open flag: retries capped at 60 s (a stalled sender shows) */
#define TEST_SLOW_RETRY 0x20000u

typedef struct peer {
    simplex_agent *a;
    char db[300];
    char conn[SIMPLEX_AGENT_ID_MAX];
} peer;

static void peer_open(peer *p, const char *name, const char *server,
                      unsigned flags)
{
    simplex_agent_options o;
    const char *servers[1];
    assert_int_equal(simplex_agent_options_init(&o,
                                                SIMPLEX_AGENT_OPTIONS_VERSION),
                     0);
    snprintf(p->db, sizeof p->db, "%s/%s.db", g_dir, name);
    servers[0] = server;
    o.db_path = p->db;
    o.servers = servers;
    o.n_servers = 1;
    o.flags = flags & ~TEST_RELAXED;
    o.relaxed_durability = (flags & TEST_RELAXED) != 0;
    o.retry_initial_ms = 200;
    o.retry_max_ms = (flags & TEST_SLOW_RETRY) ? 60000 : 1000;
    o.flags &= ~TEST_SLOW_RETRY;
    o.connect_timeout_ms = 3000;
    o.response_timeout_ms = 5000;
    if (simplex_agent_new(&p->a, &o) != 0) {
        simplex_buf m = {NULL, 0};
        assert_int_equal(simplex_agent_last_error(NULL, &m), 0);
        fail_msg("agent: %s", (const char *)m.data);
    }
}

static void peer_close(peer *p)
{
    simplex_agent_free(p->a);
    p->a = NULL;
}

/* Waits for an event of type t (others are collected into skipped, when
 * given, or dropped). */
static simplex_agent_event *wait_ev(peer *p, simplex_agent_event_type t,
                                    int timeout_ms)
{
    int waited = 0;
    while (waited < timeout_ms) {
        simplex_agent_event *e = NULL;
        int rc = simplex_agent_next_event(p->a, 100, &e);
        if (rc == SIMPLEX_ERR_TIMEOUT) {
            waited += 100;
            continue;
        }
        assert_int_equal(rc, 0);
        if (simplex_agent_event_get_type(e) == t)
            return e;
        if (simplex_agent_event_get_type(e) == SIMPLEX_AGENT_EVENT_ERR ||
            simplex_agent_event_get_type(e) == SIMPLEX_AGENT_EVENT_MERR)
            print_message("%s: %s %s\n", p->db, simplex_agent_event_name(e),
                          simplex_agent_event_message(e));
        simplex_agent_event_free(e);
    }
    fail_msg("%s: no event %d within %d ms", p->db, (int)t, timeout_ms);
    return NULL;
}

static void expect_msg(peer *p, const char *text, int ack, int receipt)
{
    simplex_agent_event *e = wait_ev(p, SIMPLEX_AGENT_EVENT_MSG, 10000);
    size_t n;
    const uint8_t *b = simplex_agent_event_body(e, &n);
    assert_int_equal(n, strlen(text));
    assert_memory_equal(b, text, n);
    assert_string_equal(simplex_agent_event_conn_id(e), p->conn);
    assert_int_equal(simplex_agent_event_integrity(e, NULL, NULL),
                     SIMPLEX_AGENT_INTEGRITY_OK);
    if (ack)
        assert_int_equal(simplex_agent_ack(p->a, p->conn,
                                           simplex_agent_event_msg_id(e),
                                           receipt ? (const uint8_t *)"r" :
                                                     NULL,
                                           receipt ? 1 : 0),
                         0);
    simplex_agent_event_free(e);
}

/* create, join, allow; both sides see CON */
static void connect_peers(peer *alice, peer *bob)
{
    simplex_buf link = {NULL, 0};
    simplex_agent_event *e;
    simplex_agent_conn_status st;
    size_t n;
    const uint8_t *b;

    assert_int_equal(simplex_agent_create_connection(alice->a, alice->conn,
                                                     &link),
                     0);
    assert_memory_equal(link.data, "simplex:/invitation#/?v=2-7", 27);
    {
        simplex_buf again = {NULL, 0};
        assert_int_equal(simplex_agent_get_link(alice->a, alice->conn,
                                                &again),
                         0);
        assert_int_equal(again.len, link.len);
        assert_memory_equal(again.data, link.data, link.len);
        simplex_buf_dispose(&again);
    }
    assert_int_equal(simplex_agent_join_connection(
                         bob->a, bob->conn, (const char *)link.data,
                         (const uint8_t *)"bob info", 8),
                     0);
    simplex_buf_dispose(&link);
    e = wait_ev(alice, SIMPLEX_AGENT_EVENT_CONF, 10000);
    b = simplex_agent_event_body(e, &n);
    assert_int_equal(n, 8);
    assert_memory_equal(b, "bob info", 8);
    assert_string_equal(simplex_agent_event_conn_id(e), alice->conn);
    assert_int_equal(simplex_agent_connection_status(alice->a, alice->conn,
                                                     &st),
                     0);
    assert_int_equal(st, SIMPLEX_AGENT_CONN_CONFIRMED);
    assert_int_equal(simplex_agent_allow_connection(
                         alice->a, alice->conn,
                         simplex_agent_event_conf_id(e),
                         (const uint8_t *)"alice info", 10),
                     0);
    simplex_agent_event_free(e);
    e = wait_ev(bob, SIMPLEX_AGENT_EVENT_INFO, 10000);
    b = simplex_agent_event_body(e, &n);
    assert_int_equal(n, 10);
    assert_memory_equal(b, "alice info", 10);
    simplex_agent_event_free(e);
    simplex_agent_event_free(wait_ev(bob, SIMPLEX_AGENT_EVENT_CON, 10000));
    simplex_agent_event_free(wait_ev(alice, SIMPLEX_AGENT_EVENT_CON, 10000));
    assert_int_equal(simplex_agent_connection_status(alice->a, alice->conn,
                                                     &st),
                     0);
    assert_int_equal(st, SIMPLEX_AGENT_CONN_READY);
    assert_int_equal(simplex_agent_connection_status(bob->a, bob->conn, &st),
                     0);
    assert_int_equal(st, SIMPLEX_AGENT_CONN_READY);
    {
        simplex_buf none = {NULL, 0};
        assert_int_equal(simplex_agent_get_link(alice->a, alice->conn, &none),
                         SIMPLEX_ERR_STATE);
        assert_null(none.data);
    }
}

static void send_text(peer *p, const char *text, int64_t *id)
{
    int64_t mid = 0;
    assert_int_equal(simplex_agent_send(p->a, p->conn, (const uint8_t *)text,
                                        strlen(text), &mid),
                     0);
    assert_true(mid > 0);
    if (id)
        *id = mid;
}

static void expect_sent_and_rcvd(peer *p, int64_t id)
{
    simplex_agent_event *e = wait_ev(p, SIMPLEX_AGENT_EVENT_SENT, 10000);
    assert_int_equal(simplex_agent_event_msg_id(e), id);
    simplex_agent_event_free(e);
    e = wait_ev(p, SIMPLEX_AGENT_EVENT_RCVD, 10000);
    assert_int_equal(simplex_agent_event_msg_id(e), id);
    assert_true(simplex_agent_event_flags(e) & SIMPLEX_AGENT_RCPT_OK);
    simplex_agent_event_free(e);
}

static void conversation(unsigned flags)
{
    peer alice, bob;
    int64_t id;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    peer_open(&alice, flags ? "alice-std" : "alice", g_srv.addr, flags);
    peer_open(&bob, flags ? "bob-std" : "bob", g_srv.addr, flags);
    connect_peers(&alice, &bob);

    send_text(&alice, "hello bob", &id);
    expect_msg(&bob, "hello bob", 1, 1);
    expect_sent_and_rcvd(&alice, id);
    send_text(&bob, "hi alice", &id);
    expect_msg(&alice, "hi alice", 1, 1);
    expect_sent_and_rcvd(&bob, id);

    /* several in a row, in order */
    send_text(&alice, "one", NULL);
    send_text(&alice, "two", NULL);
    send_text(&alice, "three", NULL);
    expect_msg(&bob, "one", 1, 0);
    expect_msg(&bob, "two", 1, 0);
    expect_msg(&bob, "three", 1, 0);

    {
        uint64_t used = 0;
        assert_int_equal(simplex_agent_storage_bytes(alice.a, &used), 0);
        assert_true(used > 0);
    }
    /* restart Bob: the conversation goes on from the store */
    peer_close(&bob);
    send_text(&alice, "while you were away", NULL);
    peer_open(&bob, flags ? "bob-std" : "bob", g_srv.addr, flags);
    expect_msg(&bob, "while you were away", 1, 1);
    send_text(&bob, "back", NULL);
    expect_msg(&alice, "back", 1, 0);

    peer_close(&alice);
    peer_close(&bob);
}

static void test_fast(void **state)
{
    (void)state;
    conversation(0);
}

/* The pull API in a poll() loop: the fd is readable exactly while events
 * are queued. */
static void test_event_fd(void **state)
{
    peer alice, bob;
    struct pollfd pfd;
    simplex_agent_event *e;
    int fd, got = 0;
    (void)state;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    peer_open(&alice, "alice-fd", g_srv.addr, 0);
    peer_open(&bob, "bob-fd", g_srv.addr, 0);
    connect_peers(&alice, &bob);
    fd = simplex_agent_event_fd(bob.a);
    assert_true(fd >= 0);
    while (simplex_agent_next_event(bob.a, 0, &e) == 0)
        simplex_agent_event_free(e);
    pfd.fd = fd;
    pfd.events = POLLIN;
    assert_int_equal(poll(&pfd, 1, 0), 0);
    send_text(&alice, "poll me", NULL);
    while (!got) {
        assert_int_equal(poll(&pfd, 1, 10000), 1);
        while (simplex_agent_next_event(bob.a, 0, &e) == 0) {
            if (simplex_agent_event_get_type(e) == SIMPLEX_AGENT_EVENT_MSG) {
                assert_int_equal(simplex_agent_ack(
                                     bob.a, bob.conn,
                                     simplex_agent_event_msg_id(e), NULL, 0),
                                 0);
                got = 1;
            }
            simplex_agent_event_free(e);
        }
    }
    assert_int_equal(poll(&pfd, 1, 0), 0);
    peer_close(&alice);
    peer_close(&bob);
}

static void test_standard(void **state)
{
    (void)state;
    conversation(SIMPLEX_AGENT_NO_SENDER_SECURE);
}


/* Alice talks to Bob and Carol, who use a second server. */
static void test_three_agents_two_servers(void **state)
{
    peer alice, bob, carol, alice2;
    (void)state;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    memset(&carol, 0, sizeof carol);
    if (g_srv2.pid <= 0)
        assert_int_equal(tsrv_start(&g_srv2, 0, NULL, NULL, NULL), 0);
    peer_open(&alice, "alice3", g_srv.addr, 0);
    peer_open(&bob, "bob3", g_srv2.addr, 0);
    peer_open(&carol, "carol3", g_srv2.addr, 0);
    connect_peers(&alice, &bob);
    /* the same agent, a second connection */
    alice2 = alice;
    connect_peers(&alice2, &carol);
    assert_string_not_equal(alice.conn, alice2.conn);
    send_text(&alice, "to bob", NULL);
    send_text(&alice2, "to carol", NULL);
    expect_msg(&bob, "to bob", 1, 1);
    expect_msg(&carol, "to carol", 1, 1);
    send_text(&carol, "from carol", NULL);
    expect_msg(&alice2, "from carol", 1, 0);
    send_text(&bob, "from bob", NULL);
    expect_msg(&alice, "from bob", 1, 0);
    {
        simplex_buf ids = {NULL, 0};
        size_t n = 0;
        assert_int_equal(simplex_agent_list_connections(alice.a, &ids, &n),
                         0);
        assert_int_equal(n, 2);
        assert_non_null(strstr((const char *)ids.data, alice.conn));
        assert_non_null(strstr((const char *)ids.data, alice2.conn));
        simplex_buf_dispose(&ids);
    }
    peer_close(&alice);
    peer_close(&bob);
    peer_close(&carol);
}

/* A message received but not acknowledged is delivered again after a
 * restart, flagged; once acknowledged it is not. */
static void test_redelivery(void **state)
{
    peer alice, bob;
    simplex_agent_event *e;
    int64_t first;
    (void)state;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    peer_open(&alice, "alice-rd", g_srv.addr, 0);
    peer_open(&bob, "bob-rd", g_srv.addr, 0);
    connect_peers(&alice, &bob);
    send_text(&alice, "keep me", NULL);
    e = wait_ev(&bob, SIMPLEX_AGENT_EVENT_MSG, 10000);
    first = simplex_agent_event_msg_id(e);
    assert_int_equal(simplex_agent_event_flags(e) &
                         SIMPLEX_AGENT_MSG_REDELIVERED,
                     0);
    simplex_agent_event_free(e);
    peer_close(&bob); /* without ack */
    peer_open(&bob, "bob-rd", g_srv.addr, 0);
    e = wait_ev(&bob, SIMPLEX_AGENT_EVENT_MSG, 10000);
    assert_int_equal(simplex_agent_event_msg_id(e), first);
    assert_true(simplex_agent_event_flags(e) &
                SIMPLEX_AGENT_MSG_REDELIVERED);
    {
        size_t n;
        const uint8_t *b = simplex_agent_event_body(e, &n);
        assert_int_equal(n, 7);
        assert_memory_equal(b, "keep me", 7);
    }
    assert_int_equal(simplex_agent_ack(bob.a, bob.conn, first, NULL, 0), 0);
    simplex_agent_event_free(e);
    /* acknowledging twice: the message is gone */
    assert_int_equal(simplex_agent_ack(bob.a, bob.conn, first, NULL, 0),
                     SIMPLEX_ERR_NOT_FOUND);
    send_text(&alice, "next", NULL);
    expect_msg(&bob, "next", 1, 0);
    peer_close(&bob);
    peer_open(&bob, "bob-rd", g_srv.addr, 0);
    send_text(&alice, "after restart", NULL);
    expect_msg(&bob, "after restart", 1, 0); /* not "keep me" or "next" */
    peer_close(&alice);
    peer_close(&bob);
}

/* The server restarts (keeping its queues): messages sent while it is
 * down are delivered once it is back. */
static void test_server_restart(void **state)
{
    char dir[400], log[400];
    tsrv srv;
    peer alice, bob;
    int port;
    (void)state;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    snprintf(dir, sizeof dir, "%s/srv-restart", g_dir);
    snprintf(log, sizeof log, "%s/srv-restart.log", g_dir);
    assert_int_equal(mkdir_p(dir), 0);
    assert_int_equal(tsrv_start(&srv, 0, dir, log, NULL), 0);
    port = srv.port;
    peer_open(&alice, "alice-sr", srv.addr, 0);
    peer_open(&bob, "bob-sr", srv.addr, 0);
    connect_peers(&alice, &bob);
    send_text(&alice, "before", NULL);
    expect_msg(&bob, "before", 1, 1);
    assert_int_equal(tsrv_stop(&srv), 0);
    send_text(&alice, "during", NULL);
    send_text(&bob, "reply during", NULL);
    /* Bob restarts while the server is down: his subscriptions and his
     * pending message wait for it */
    peer_close(&bob);
    peer_open(&bob, "bob-sr", srv.addr, 0);
    simplex_agent_event_free(wait_ev(&alice, SIMPLEX_AGENT_EVENT_MWARN,
                                     10000));
    assert_int_equal(simplex_agent_flush(alice.a, 200), SIMPLEX_ERR_TIMEOUT);
    sleep_ms(300);
    assert_int_equal(tsrv_start(&srv, port, dir, log, NULL), 0);
    expect_msg(&bob, "during", 1, 0);
    expect_msg(&alice, "reply during", 1, 0);
    assert_int_equal(simplex_agent_flush(alice.a, 10000), 0);
    assert_int_equal(simplex_agent_flush(bob.a, 10000), 0);
    peer_close(&alice);
    peer_close(&bob);
    assert_int_equal(tsrv_stop(&srv), 0);
}

static void test_delete_suspend(void **state)
{
    peer alice, bob;
    simplex_agent_event *e;
    simplex_agent_conn_status st;
    (void)state;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    peer_open(&alice, "alice-del", g_srv.addr, 0);
    peer_open(&bob, "bob-del", g_srv.addr, 0);
    connect_peers(&alice, &bob);
    /* suspended: Alice can no longer send to Bob */
    assert_int_equal(simplex_agent_suspend_connection(bob.a, bob.conn), 0);
    assert_int_equal(simplex_agent_connection_status(bob.a, bob.conn, &st),
                     0);
    assert_int_equal(st, SIMPLEX_AGENT_CONN_SUSPENDED);
    send_text(&alice, "refused", NULL);
    e = wait_ev(&alice, SIMPLEX_AGENT_EVENT_MERR, 10000);
    assert_int_equal(simplex_agent_event_error(e), SIMPLEX_ERR_SERVER);
    simplex_agent_event_free(e);
    /* delete */
    assert_int_equal(simplex_agent_delete_connection(bob.a, bob.conn), 0);
    e = wait_ev(&bob, SIMPLEX_AGENT_EVENT_DEL, 5000);
    assert_string_equal(simplex_agent_event_conn_id(e), bob.conn);
    simplex_agent_event_free(e);
    assert_int_equal(simplex_agent_connection_status(bob.a, bob.conn, &st),
                     SIMPLEX_ERR_NOT_FOUND);
    assert_int_equal(simplex_agent_delete_connection(bob.a, bob.conn),
                     SIMPLEX_ERR_NOT_FOUND);
    send_text(&alice, "gone", NULL);
    e = wait_ev(&alice, SIMPLEX_AGENT_EVENT_MERR, 10000);
    simplex_agent_event_free(e);
    peer_close(&alice);
    peer_close(&bob);
}

static void test_bad_input(void **state)
{
    peer alice, bob;
    char id[SIMPLEX_AGENT_ID_MAX];
    simplex_buf m = {NULL, 0};
    uint8_t *big;
    int64_t mid;
    simplex_agent_event *e;
    (void)state;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    peer_open(&alice, "alice-bad", g_srv.addr, 0);
    peer_open(&bob, "bob-bad", g_srv.addr, 0);
    assert_int_equal(simplex_agent_join_connection(bob.a, id, "garbage",
                                                   NULL, 0),
                     SIMPLEX_ERR_PARSE);
    assert_int_equal(simplex_agent_last_error(bob.a, &m), 0);
    assert_non_null(strstr((const char *)m.data, "link"));
    simplex_buf_dispose(&m);
    assert_int_equal(
        simplex_agent_join_connection(
            bob.a, id, "simplex:/contact#/?v=2-7&smp=x", NULL, 0),
        SIMPLEX_ERR_PARSE);
    assert_int_equal(simplex_agent_send(alice.a, "nosuchconn",
                                        (const uint8_t *)"x", 1, &mid),
                     SIMPLEX_ERR_NOT_FOUND);
    assert_int_equal(simplex_agent_ack(alice.a, "nosuchconn", 1, NULL, 0),
                     SIMPLEX_ERR_NOT_FOUND);
    /* before CON */
    {
        simplex_buf link = {NULL, 0};
        assert_int_equal(simplex_agent_create_connection(alice.a, alice.conn,
                                                         &link),
                         0);
        assert_int_equal(simplex_agent_send(alice.a, alice.conn,
                                            (const uint8_t *)"x", 1, &mid),
                         SIMPLEX_ERR_STATE);
        assert_int_equal(simplex_agent_allow_connection(
                             alice.a, alice.conn, "nosuchconf", NULL, 0),
                         SIMPLEX_ERR_STATE);
        assert_int_equal(simplex_agent_join_connection(
                             bob.a, bob.conn, (const char *)link.data,
                             (const uint8_t *)"b", 1),
                         0);
        simplex_buf_dispose(&link);
    }
    e = wait_ev(&alice, SIMPLEX_AGENT_EVENT_CONF, 10000);
    assert_int_equal(simplex_agent_allow_connection(alice.a, alice.conn,
                                                    "wrongconf", NULL, 0),
                     SIMPLEX_ERR_NOT_FOUND);
    assert_int_equal(simplex_agent_allow_connection(
                         alice.a, alice.conn, simplex_agent_event_conf_id(e),
                         NULL, 0),
                     0);
    /* allowed once only */
    assert_int_equal(simplex_agent_allow_connection(
                         alice.a, alice.conn, simplex_agent_event_conf_id(e),
                         NULL, 0),
                     SIMPLEX_ERR_STATE);
    simplex_agent_event_free(e);
    simplex_agent_event_free(wait_ev(&alice, SIMPLEX_AGENT_EVENT_CON, 10000));
    simplex_agent_event_free(wait_ev(&bob, SIMPLEX_AGENT_EVENT_CON, 10000));
    big = calloc(1, SIMPLEX_AGENT_MAX_MSG_BYTES + 1);
    assert_non_null(big);
    assert_int_equal(simplex_agent_send(alice.a, alice.conn, big,
                                        SIMPLEX_AGENT_MAX_MSG_BYTES + 1,
                                        &mid),
                     SIMPLEX_ERR_TOO_LARGE);
    /* the largest message goes through intact */
    memset(big, 'z', SIMPLEX_AGENT_MAX_MSG_BYTES);
    assert_int_equal(simplex_agent_send(alice.a, alice.conn, big,
                                        SIMPLEX_AGENT_MAX_MSG_BYTES, &mid),
                     0);
    e = wait_ev(&bob, SIMPLEX_AGENT_EVENT_MSG, 10000);
    {
        size_t n;
        const uint8_t *b = simplex_agent_event_body(e, &n);
        assert_int_equal(n, SIMPLEX_AGENT_MAX_MSG_BYTES);
        assert_memory_equal(b, big, n);
    }
    assert_int_equal(simplex_agent_ack(bob.a, bob.conn,
                                       simplex_agent_event_msg_id(e) + 100,
                                       NULL, 0),
                     SIMPLEX_ERR_NOT_FOUND);
    simplex_agent_event_free(e);
    free(big);
    peer_close(&alice);
    peer_close(&bob);
}

static void test_bad_database(void **state)
{
    simplex_agent_options o;
    simplex_agent *a = NULL;
    char path[400];
    sqlite3 *db;
    (void)state;
    assert_int_equal(simplex_agent_options_init(&o, 1), 0);
    o.db_path = "/nonexistent-dir/x.db";
    assert_int_equal(simplex_agent_new(&a, &o), SIMPLEX_ERR_STORE);
    assert_null(a);
    /* a database written by a newer library */
    snprintf(path, sizeof path, "%s/newer.db", g_dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=99", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    o.db_path = path;
    assert_int_equal(simplex_agent_new(&a, &o), SIMPLEX_ERR_UNSUPPORTED);
    /* not a database at all */
    snprintf(path, sizeof path, "%s/garbage.db", g_dir);
    {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("this is not an SQLite database, not at all, no.........", f);
        fclose(f);
    }
    o.db_path = path;
    assert_int_equal(simplex_agent_new(&a, &o), SIMPLEX_ERR_STORE);
    assert_int_equal(simplex_agent_new(&a, NULL), SIMPLEX_ERR_INVALID_ARG);
    /* one agent per database: a second one is refused */
    {
        simplex_agent *first = NULL, *second = NULL;
        simplex_buf m = {NULL, 0};
        snprintf(path, sizeof path, "%s/owned.db", g_dir);
        o.db_path = path;
        assert_int_equal(simplex_agent_new(&first, &o), 0);
        assert_int_equal(simplex_agent_new(&second, &o), SIMPLEX_ERR_STORE);
        assert_null(second);
        assert_int_equal(simplex_agent_last_error(NULL, &m), 0);
        assert_non_null(strstr((const char *)m.data, "locked"));
        simplex_buf_dispose(&m);
        simplex_agent_free(first);
        assert_int_equal(simplex_agent_new(&second, &o), 0);
        simplex_agent_free(second);
    }
}

/* Events through the callback, on the agent's thread, which may call the
 * agent back (here: ack from the callback). */
typedef struct cb_state {
    simplex_agent *a;
    pthread_mutex_t mu;
    int got_msg, acked;
    char conn[SIMPLEX_AGENT_ID_MAX];
} cb_state;

static void on_event(const simplex_agent_event *e, void *ud)
{
    cb_state *s = ud;
    if (simplex_agent_event_get_type(e) != SIMPLEX_AGENT_EVENT_MSG)
        return;
    pthread_mutex_lock(&s->mu);
    s->got_msg++;
    if (simplex_agent_ack(s->a, simplex_agent_event_conn_id(e),
                          simplex_agent_event_msg_id(e),
                          (const uint8_t *)"cb", 2) == 0)
        s->acked++;
    pthread_mutex_unlock(&s->mu);
}

static void test_callback(void **state)
{
    peer alice, bob;
    simplex_agent_options o;
    const char *servers[1];
    cb_state cs;
    simplex_agent_event *e;
    int64_t id;
    int i;
    (void)state;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    memset(&cs, 0, sizeof cs);
    pthread_mutex_init(&cs.mu, NULL);
    peer_open(&alice, "alice-cb", g_srv.addr, 0);
    peer_open(&bob, "bob-cb", g_srv.addr, 0);
    connect_peers(&alice, &bob);
    peer_close(&bob);
    /* Bob again, with a callback */
    assert_int_equal(simplex_agent_options_init(&o, 1), 0);
    servers[0] = g_srv.addr;
    o.db_path = bob.db;
    o.servers = servers;
    o.n_servers = 1;
    o.event_cb = on_event;
    o.user_data = &cs;
    o.flags = SIMPLEX_AGENT_NO_SUBSCRIBE;
    assert_int_equal(simplex_agent_new(&bob.a, &o), 0);
    cs.a = bob.a;
    assert_int_equal(simplex_agent_next_event(bob.a, 0, &e),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_agent_subscribe_all(bob.a), 0);
    send_text(&alice, "via callback", &id);
    e = wait_ev(&alice, SIMPLEX_AGENT_EVENT_RCVD, 10000);
    assert_int_equal(simplex_agent_event_msg_id(e), id);
    {
        size_t n;
        const uint8_t *b = simplex_agent_event_body(e, &n);
        assert_int_equal(n, 2);
        assert_memory_equal(b, "cb", 2);
    }
    simplex_agent_event_free(e);
    for (i = 0; i < 50; i++) {
        int done;
        pthread_mutex_lock(&cs.mu);
        done = cs.acked;
        pthread_mutex_unlock(&cs.mu);
        if (done)
            break;
        sleep_ms(20);
    }
    assert_int_equal(cs.got_msg, 1);
    assert_int_equal(cs.acked, 1);
    peer_close(&bob);
    peer_close(&alice);
    pthread_mutex_destroy(&cs.mu);
}


/* ---- crashes: an agent process killed with SIGKILL ---- */

/* Reads one line from fd into buf; 0 at EOF or on a timeout. */
static int read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t n = 0;
    while (n + 1 < cap) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        fd_set rd;
        char ch;
        FD_ZERO(&rd);
        FD_SET(fd, &rd);
        if (select(fd + 1, &rd, NULL, NULL, &tv) <= 0)
            return 0;
        if (read(fd, &ch, 1) != 1)
            return 0;
        if (ch == '\n')
            break;
        buf[n++] = ch;
    }
    buf[n] = 0;
    return 1;
}

static void child_send_loop(peer *p, int fd)
{
    int i;
    for (i = 0; i < 1000; i++) {
        char t[32], line[32];
        int64_t id;
        snprintf(t, sizeof t, "m%d", i);
        if (simplex_agent_send(p->a, p->conn, (const uint8_t *)t, strlen(t),
                               &id) != 0)
            _exit(3);
        snprintf(line, sizeof line, "%d\n", i);
        if (write(fd, line, strlen(line)) < 0)
            _exit(4);
    }
    _exit(0);
}

static void test_kill_sending(void **state)
{
    peer alice, bob;
    int fds[2], i, stored = 0, got = 0, status;
    pid_t pid;
    char line[64];
    (void)state;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    peer_open(&alice, "alice-ks", g_srv.addr, 0);
    peer_open(&bob, "bob-ks", g_srv.addr, 0);
    connect_peers(&alice, &bob);
    peer_close(&alice);
    peer_close(&bob);
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        peer_open(&alice, "alice-ks", g_srv.addr, 0);
        child_send_loop(&alice, fds[1]);
    }
    close(fds[1]);
    while (stored < 40 && read_line(fds[0], line, sizeof line, 10000))
        stored = atoi(line) + 1;
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /* what it stored before the signal landed: the rest of the pipe */
    while (read_line(fds[0], line, sizeof line, 1000))
        stored = atoi(line) + 1;
    close(fds[0]);
    assert_true(stored >= 40);
    /* everything stored is delivered exactly once, in order */
    peer_open(&alice, "alice-ks", g_srv.addr, 0);
    peer_open(&bob, "bob-ks", g_srv.addr, 0);
    for (;;) {
        simplex_agent_event *e = NULL;
        int rc = simplex_agent_next_event(bob.a, got < stored ? 10000 : 1500,
                                          &e);
        char want[32];
        size_t n;
        const uint8_t *b;
        if (rc == SIMPLEX_ERR_TIMEOUT)
            break;
        assert_int_equal(rc, 0);
        if (simplex_agent_event_get_type(e) != SIMPLEX_AGENT_EVENT_MSG) {
            simplex_agent_event_free(e);
            continue;
        }
        b = simplex_agent_event_body(e, &n);
        snprintf(want, sizeof want, "m%d", got);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(b, want, n);
        assert_int_equal(simplex_agent_event_integrity(e, NULL, NULL),
                         SIMPLEX_AGENT_INTEGRITY_OK);
        assert_int_equal(simplex_agent_event_flags(e), 0);
        assert_int_equal(simplex_agent_ack(bob.a, bob.conn,
                                           simplex_agent_event_msg_id(e),
                                           NULL, 0),
                         0);
        simplex_agent_event_free(e);
        got++;
    }
    /* the message being stored when the process died may or may not have
     * been committed */
    assert_true(got == stored || got == stored + 1);
    for (i = 0; i < 3; i++) {
        char t[32];
        snprintf(t, sizeof t, "after%d", i);
        send_text(&alice, t, NULL);
        expect_msg(&bob, t, 1, 0);
    }
    peer_close(&alice);
    peer_close(&bob);
}

static void test_kill_receiving(void **state)
{
    peer alice, bob;
    int fds[2], i, status, total = 60, seen_child = 0, next = 0;
    int seen[60];
    pid_t pid;
    char line[64];
    (void)state;
    memset(seen, 0, sizeof seen);
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    peer_open(&alice, "alice-kr", g_srv.addr, 0);
    peer_open(&bob, "bob-kr", g_srv.addr, TEST_RELAXED);
    connect_peers(&alice, &bob);
    peer_close(&bob);
    for (i = 0; i < total; i++) {
        char t[32];
        snprintf(t, sizeof t, "m%d", i);
        send_text(&alice, t, NULL);
    }
    for (i = 0; i < total; i++)
        simplex_agent_event_free(wait_ev(&alice, SIMPLEX_AGENT_EVENT_SENT,
                                         10000));
    peer_close(&alice);
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        peer_open(&bob, "bob-kr", g_srv.addr, TEST_RELAXED);
        for (;;) {
            simplex_agent_event *e = NULL;
            size_t n;
            const uint8_t *b;
            char out[64];
            if (simplex_agent_next_event(bob.a, 10000, &e) != 0)
                _exit(3);
            if (simplex_agent_event_get_type(e) != SIMPLEX_AGENT_EVENT_MSG) {
                simplex_agent_event_free(e);
                continue;
            }
            b = simplex_agent_event_body(e, &n);
            snprintf(out, sizeof out, "%.*s\n", (int)n, (const char *)b);
            if (write(fds[1], out, strlen(out)) < 0)
                _exit(4);
            if (simplex_agent_ack(bob.a, bob.conn,
                                  simplex_agent_event_msg_id(e), NULL,
                                  0) != 0)
                _exit(5);
            simplex_agent_event_free(e);
        }
    }
    close(fds[1]);
    while (seen_child < 25 && read_line(fds[0], line, sizeof line, 10000)) {
        int k = atoi(line + 1);
        assert_int_equal(k, seen_child); /* in order */
        seen[k]++;
        seen_child++;
    }
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /* what it received (and may have acknowledged) before the signal
     * landed: the rest of the pipe */
    while (read_line(fds[0], line, sizeof line, 1000)) {
        int k = atoi(line + 1);
        assert_int_equal(k, seen_child);
        seen[k]++;
        seen_child++;
    }
    close(fds[0]);
    assert_true(seen_child >= 25 && seen_child <= total);
    /* the rest arrives; a message seen before arrives again only when it
     * was not acknowledged, and then it says so */
    peer_open(&bob, "bob-kr", g_srv.addr, TEST_RELAXED);
    next = -1;
    for (;;) {
        simplex_agent_event *e = NULL;
        int rc = simplex_agent_next_event(bob.a, 5000, &e);
        size_t n;
        const uint8_t *b;
        int k;
        if (rc == SIMPLEX_ERR_TIMEOUT)
            break;
        assert_int_equal(rc, 0);
        if (simplex_agent_event_get_type(e) != SIMPLEX_AGENT_EVENT_MSG) {
            simplex_agent_event_free(e);
            continue;
        }
        b = simplex_agent_event_body(e, &n);
        assert_true(n > 1 && n < 16 && b[0] == 'm');
        {
            char num[16];
            memcpy(num, b + 1, n - 1);
            num[n - 1] = 0;
            k = atoi(num);
        }
        assert_true(k >= 0 && k < total);
        if (seen[k]) {
            assert_true(simplex_agent_event_flags(e) &
                        SIMPLEX_AGENT_MSG_REDELIVERED);
            assert_true(k >= seen_child - 2);
        } else if (simplex_agent_event_flags(e) &
                   SIMPLEX_AGENT_MSG_REDELIVERED) {
            /* stored and announced by the agent, but the process died
             * before the application read it: only the one after the
             * last acknowledged (the server hands out the next message
             * after an ACK) */
            assert_true(k <= seen_child + 1);
        }
        assert_true(k > next); /* in order */
        next = k;
        seen[k]++;
        assert_int_equal(simplex_agent_ack(bob.a, bob.conn,
                                           simplex_agent_event_msg_id(e),
                                           NULL, 0),
                         0);
        simplex_agent_event_free(e);
        if (k == total - 1)
            break;
    }
    for (i = 0; i < total; i++)
        assert_true(seen[i] >= 1 && seen[i] <= 2);
    peer_close(&bob);
}


/* Contact addresses: REQ, accept, reject, delete the address. */
static void test_contact_address(void **state)
{
    peer alice, bob, carol, alice_b;
    char addr_id[SIMPLEX_AGENT_ID_MAX], req[SIMPLEX_AGENT_ID_MAX];
    simplex_buf link = {NULL, 0};
    simplex_agent_event *e;
    simplex_agent_conn_status st;
    size_t n;
    const uint8_t *b;
    (void)state;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    memset(&carol, 0, sizeof carol);
    peer_open(&alice, "alice-ct", g_srv.addr, 0);
    peer_open(&bob, "bob-ct", g_srv.addr, 0);
    peer_open(&carol, "carol-ct", g_srv.addr, 0);
    assert_int_equal(simplex_agent_create_address(alice.a, addr_id, &link),
                     0);
    assert_memory_equal(link.data, "simplex:/contact#/?v=2-7&smp=", 29);
    {
        simplex_buf again = {NULL, 0};
        assert_int_equal(simplex_agent_get_link(alice.a, addr_id, &again), 0);
        assert_int_equal(again.len, link.len);
        assert_memory_equal(again.data, link.data, link.len);
        simplex_buf_dispose(&again);
    }
    assert_int_equal(simplex_agent_connection_status(alice.a, addr_id, &st),
                     0);
    assert_int_equal(st, SIMPLEX_AGENT_CONN_CONTACT);
    assert_int_equal(simplex_agent_join_connection(
                         bob.a, bob.conn, (const char *)link.data,
                         (const uint8_t *)"it's bob", 8),
                     0);
    e = wait_ev(&alice, SIMPLEX_AGENT_EVENT_REQ, 10000);
    assert_string_equal(simplex_agent_event_conn_id(e), addr_id);
    b = simplex_agent_event_body(e, &n);
    assert_int_equal(n, 8);
    assert_memory_equal(b, "it's bob", 8);
    snprintf(req, sizeof req, "%s", simplex_agent_event_conf_id(e));
    simplex_agent_event_free(e);
    alice_b = alice;
    assert_int_equal(simplex_agent_accept_contact(alice.a, alice_b.conn, req,
                                                  (const uint8_t *)"alice",
                                                  5),
                     0);
    assert_string_not_equal(alice_b.conn, addr_id);
    {
        char again[SIMPLEX_AGENT_ID_MAX];
        assert_int_equal(simplex_agent_accept_contact(alice.a, again, req,
                                                      NULL, 0),
                         SIMPLEX_ERR_NOT_FOUND);
        assert_string_equal(again, "");
    }
    e = wait_ev(&bob, SIMPLEX_AGENT_EVENT_CONF, 10000);
    b = simplex_agent_event_body(e, &n);
    assert_int_equal(n, 5);
    assert_memory_equal(b, "alice", 5);
    assert_int_equal(simplex_agent_allow_connection(
                         bob.a, bob.conn, simplex_agent_event_conf_id(e),
                         (const uint8_t *)"bob again", 9),
                     0);
    simplex_agent_event_free(e);
    simplex_agent_event_free(wait_ev(&alice_b, SIMPLEX_AGENT_EVENT_CON,
                                     10000));
    simplex_agent_event_free(wait_ev(&bob, SIMPLEX_AGENT_EVENT_CON, 10000));
    send_text(&bob, "via the address", NULL);
    expect_msg(&alice_b, "via the address", 1, 1);
    send_text(&alice_b, "welcome", NULL);
    expect_msg(&bob, "welcome", 1, 1);

    /* Carol's request is rejected */
    assert_int_equal(simplex_agent_join_connection(
                         carol.a, carol.conn, (const char *)link.data,
                         (const uint8_t *)"carol", 5),
                     0);
    e = wait_ev(&alice, SIMPLEX_AGENT_EVENT_REQ, 10000);
    assert_int_equal(simplex_agent_reject_contact(
                         alice.a, simplex_agent_event_conf_id(e)),
                     0);
    assert_int_equal(simplex_agent_reject_contact(
                         alice.a, simplex_agent_event_conf_id(e)),
                     SIMPLEX_ERR_NOT_FOUND);
    simplex_agent_event_free(e);

    /* deleting the address leaves the connection made through it */
    assert_int_equal(simplex_agent_delete_connection(alice.a, addr_id), 0);
    send_text(&bob, "still here", NULL);
    expect_msg(&alice_b, "still here", 1, 0);
    assert_int_equal(simplex_agent_join_connection(
                         carol.a, carol.conn, (const char *)link.data,
                         (const uint8_t *)"carol", 5),
                     0);
    /* the request cannot be delivered: its queue is gone */
    e = wait_ev(&carol, SIMPLEX_AGENT_EVENT_ERR, 10000);
    assert_string_equal(simplex_agent_event_conn_id(e), carol.conn);
    simplex_agent_event_free(e);
    simplex_buf_dispose(&link);
    peer_close(&alice);
    peer_close(&bob);
    peer_close(&carol);
}

/* The reference puts a post-quantum KEM key into its invitations and
 * offers e2e versions 2-3: such a link is joined without PQ. */
static void test_join_pq_link(void **state)
{
    peer alice, bob;
    simplex_buf link = {NULL, 0};
    sx_conn_link *l;
    sx_wr w;
    simplex_agent_event *e;
    (void)state;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    peer_open(&alice, "alice-pq", g_srv.addr, 0);
    peer_open(&bob, "bob-pq", g_srv.addr, 0);
    assert_int_equal(simplex_agent_create_connection(alice.a, alice.conn,
                                                     &link),
                     0);
    l = calloc(1, sizeof *l);
    assert_non_null(l);
    assert_int_equal(sx_link_parse(l, (const char *)link.data, link.len), 0);
    l->e2e.vrange.max = 3;
    l->e2e.kem = SX_KEM_PROPOSED;
    memset(l->e2e.kem_pk, 0x5a, sizeof l->e2e.kem_pk);
    sx_wr_init(&w);
    assert_int_equal(sx_link_print(&w, l), 0);
    sx_wr_u8(&w, 0);
    assert_non_null(strstr((const char *)w.p, "kem_key"));
    assert_int_equal(simplex_agent_join_connection(bob.a, bob.conn,
                                                   (const char *)w.p,
                                                   (const uint8_t *)"b", 1),
                     0);
    sx_wr_free(&w);
    sx_link_clear(l);
    free(l);
    simplex_buf_dispose(&link);
    e = wait_ev(&alice, SIMPLEX_AGENT_EVENT_CONF, 10000);
    assert_int_equal(simplex_agent_allow_connection(
                         alice.a, alice.conn, simplex_agent_event_conf_id(e),
                         (const uint8_t *)"a", 1),
                     0);
    simplex_agent_event_free(e);
    simplex_agent_event_free(wait_ev(&alice, SIMPLEX_AGENT_EVENT_CON, 10000));
    simplex_agent_event_free(wait_ev(&bob, SIMPLEX_AGENT_EVENT_CON, 10000));
    send_text(&bob, "no pq", NULL);
    expect_msg(&alice, "no pq", 1, 0);
    peer_close(&alice);
    peer_close(&bob);
}


/* Another client subscribing to the same queue takes it over: END. */
static void test_end(void **state)
{
    peer alice, bob, bob2;
    char cmd[800];
    simplex_agent_event *e;
    (void)state;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    memset(&bob2, 0, sizeof bob2);
    peer_open(&alice, "alice-end", g_srv.addr, 0);
    peer_open(&bob, "bob-end", g_srv.addr, 0);
    connect_peers(&alice, &bob);
    peer_close(&bob);
    snprintf(cmd, sizeof cmd, "cp %s/bob-end.db %s/bob-end2.db", g_dir,
             g_dir);
    assert_int_equal(system(cmd), 0);
    peer_open(&bob, "bob-end", g_srv.addr, 0);
    send_text(&alice, "first", NULL);
    expect_msg(&bob, "first", 1, 0);
    peer_open(&bob2, "bob-end2", g_srv.addr, 0);
    e = wait_ev(&bob, SIMPLEX_AGENT_EVENT_END, 10000);
    assert_string_equal(simplex_agent_event_conn_id(e), bob.conn);
    simplex_agent_event_free(e);
    peer_close(&bob2);
    peer_close(&bob);
    peer_close(&alice);
}


/* A confirmation or contact request not answered before a restart is
 * announced again. */
static void test_pending_after_restart(void **state)
{
    peer alice, bob, carol;
    simplex_buf link = {NULL, 0}, addr = {NULL, 0};
    char conf[SIMPLEX_AGENT_ID_MAX], req[SIMPLEX_AGENT_ID_MAX];
    char addr_id[SIMPLEX_AGENT_ID_MAX];
    simplex_agent_event *e;
    (void)state;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    memset(&carol, 0, sizeof carol);
    peer_open(&alice, "alice-pend", g_srv.addr, 0);
    peer_open(&bob, "bob-pend", g_srv.addr, 0);
    peer_open(&carol, "carol-pend", g_srv.addr, 0);
    assert_int_equal(simplex_agent_create_connection(alice.a, alice.conn,
                                                     &link),
                     0);
    assert_int_equal(simplex_agent_create_address(alice.a, addr_id, &addr),
                     0);
    assert_int_equal(simplex_agent_join_connection(
                         bob.a, bob.conn, (const char *)link.data,
                         (const uint8_t *)"bob", 3),
                     0);
    assert_int_equal(simplex_agent_join_connection(
                         carol.a, carol.conn, (const char *)addr.data,
                         (const uint8_t *)"carol", 5),
                     0);
    /* CONF (Bob) and REQ (Carol) come in either order */
    conf[0] = req[0] = 0;
    for (int waited = 0; (!conf[0] || !req[0]) && waited < 20000;) {
        simplex_agent_event_type t;
        e = NULL;
        if (simplex_agent_next_event(alice.a, 100, &e) == SIMPLEX_ERR_TIMEOUT) {
            waited += 100;
            continue;
        }
        assert_non_null(e);
        t = simplex_agent_event_get_type(e);
        if (t == SIMPLEX_AGENT_EVENT_CONF) {
            assert_int_equal(conf[0], 0);
            snprintf(conf, sizeof conf, "%s", simplex_agent_event_conf_id(e));
            assert_int_equal(simplex_agent_event_flags(e), 0);
        } else if (t == SIMPLEX_AGENT_EVENT_REQ) {
            assert_int_equal(req[0], 0);
            snprintf(req, sizeof req, "%s", simplex_agent_event_conf_id(e));
        }
        simplex_agent_event_free(e);
    }
    assert_true(conf[0] && req[0]);
    peer_close(&alice);
    peer_open(&alice, "alice-pend", g_srv.addr, 0);
    e = wait_ev(&alice, SIMPLEX_AGENT_EVENT_CONF, 5000);
    assert_string_equal(simplex_agent_event_conf_id(e), conf);
    assert_string_equal(simplex_agent_event_conn_id(e), alice.conn);
    assert_true(simplex_agent_event_flags(e) & SIMPLEX_AGENT_MSG_REDELIVERED);
    simplex_agent_event_free(e);
    e = wait_ev(&alice, SIMPLEX_AGENT_EVENT_REQ, 5000);
    assert_string_equal(simplex_agent_event_conf_id(e), req);
    assert_string_equal(simplex_agent_event_conn_id(e), addr_id);
    simplex_agent_event_free(e);
    assert_int_equal(simplex_agent_allow_connection(alice.a, alice.conn,
                                                    conf, NULL, 0),
                     0);
    simplex_agent_event_free(wait_ev(&alice, SIMPLEX_AGENT_EVENT_CON, 10000));
    simplex_agent_event_free(wait_ev(&bob, SIMPLEX_AGENT_EVENT_CON, 10000));
    simplex_buf_dispose(&link);
    simplex_buf_dispose(&addr);
    peer_close(&alice);
    peer_close(&bob);
    peer_close(&carol);
}


/* The server's queue quota (128 messages): the sender waits, and the
 * recipient's A_QCONT after it has read the queue resumes it at once. */
static void test_quota(void **state)
{
    peer alice, bob;
    int i, total = 140, warned = 0;
    simplex_agent_event *e;
    (void)state;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    peer_open(&alice, "alice-q", g_srv.addr, TEST_SLOW_RETRY);
    peer_open(&bob, "bob-q", g_srv.addr, 0);
    connect_peers(&alice, &bob);
    peer_close(&bob);
    for (i = 0; i < total; i++) {
        char t[32];
        snprintf(t, sizeof t, "q%d", i);
        send_text(&alice, t, NULL);
    }
    /* the queue fills up: MWARN for the first message refused */
    while (!warned) {
        e = wait_ev(&alice, SIMPLEX_AGENT_EVENT_MWARN, 20000);
        assert_int_equal(simplex_agent_event_error(e), SIMPLEX_ERR_SERVER);
        assert_non_null(strstr(simplex_agent_event_message(e), "QUOTA"));
        warned = 1;
        simplex_agent_event_free(e);
    }
    peer_open(&bob, "bob-q", g_srv.addr, 0);
    for (i = 0; i < total; i++) {
        char t[32];
        snprintf(t, sizeof t, "q%d", i);
        expect_msg(&bob, t, 1, 0);
    }
    peer_close(&alice);
    peer_close(&bob);
}

static int setup(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(g_dir));
    if (tsrv_start(&g_srv, 0, NULL, NULL, NULL) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char cmd[400];
    (void)state;
    tsrv_stop(&g_srv);
    if (g_srv2.pid > 0)
        tsrv_stop(&g_srv2);
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        return -1;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast),
        cmocka_unit_test(test_standard),
        cmocka_unit_test(test_event_fd),
        cmocka_unit_test(test_three_agents_two_servers),
        cmocka_unit_test(test_redelivery),
        cmocka_unit_test(test_server_restart),
        cmocka_unit_test(test_delete_suspend),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_bad_database),
        cmocka_unit_test(test_callback),
        cmocka_unit_test(test_contact_address),
        cmocka_unit_test(test_join_pq_link),
        cmocka_unit_test(test_end),
        cmocka_unit_test(test_pending_after_restart),
        cmocka_unit_test(test_quota),
        cmocka_unit_test(test_kill_sending),
        cmocka_unit_test(test_kill_receiving),
    };
    if (simplex_global_init(NULL) != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, setup, teardown);
}
