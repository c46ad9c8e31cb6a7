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

#include <cmocka.h>
#include <sqlite3.h>

#include "simplex/simplex.h"
#include "server.h"

static tsrv g_srv, g_srv2;
static char g_dir[] = "/tmp/sx-agent-XXXXXX";

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
    o.flags = flags;
    o.retry_initial_ms = 200;
    o.retry_max_ms = 1000;
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

static void test_standard(void **state)
{
    (void)state;
    conversation(SIMPLEX_AGENT_NO_SENDER_SECURE);
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
    };
    if (simplex_global_init(NULL) != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, setup, teardown);
}
