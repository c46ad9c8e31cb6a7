/*
 * demo: two agents, Alice and Bob, each with its own database, connect
 * through an SMP server, talk with delivery receipts, and Bob restarts in
 * the middle to show that the conversation continues from his database.
 * Prints a transcript with the time of each step.
 *
 *   demo smp://<keyhash>@host[:port] [--dir DIR]
 *
 * make demo runs it against the loopback server (or SERVER=smp://...).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "simplex/simplex.h"

#define TIMEOUT_MS 15000

typedef struct party {
    const char *name;
    char db[512];
    simplex_agent *a;
    char conn[SIMPLEX_AGENT_ID_MAX];
} party;

static const char *g_server;
static double g_t0;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void say(const char *who, const char *fmt, const char *arg)
{
    printf("%8.1f ms  %-6s ", now_ms() - g_t0, who);
    printf(fmt, arg);
    printf("\n");
    fflush(stdout);
}

static int fail(const char *what, int rc)
{
    simplex_buf m = {NULL, 0};
    if (simplex_agent_last_error(NULL, &m) != 0)
        m.data = NULL;
    fprintf(stderr, "demo: %s failed: %s (%d)%s%s\n", what,
            simplex_strerror(rc), rc, m.data ? ": " : "",
            m.data ? (const char *)m.data : "");
    simplex_buf_dispose(&m);
    return 1;
}

static int open_party(party *p)
{
    simplex_agent_options o;
    int rc = simplex_agent_options_init(&o, SIMPLEX_AGENT_OPTIONS_VERSION);
    if (rc)
        return fail("options", rc);
    o.db_path = p->db;
    o.servers = &g_server;
    o.n_servers = 1;
    rc = simplex_agent_new(&p->a, &o);
    return rc ? fail("opening the agent", rc) : 0;
}

/* Waits for an event of type t on p; returns it (the caller frees). */
static simplex_agent_event *wait_for(party *p, simplex_agent_event_type t)
{
    double deadline = now_ms() + TIMEOUT_MS;
    while (now_ms() < deadline) {
        simplex_agent_event *e = NULL;
        if (simplex_agent_next_event(p->a, 200, &e) != 0)
            continue;
        if (simplex_agent_event_get_type(e) == t)
            return e;
        if (simplex_agent_event_get_type(e) == SIMPLEX_AGENT_EVENT_ERR ||
            simplex_agent_event_get_type(e) == SIMPLEX_AGENT_EVENT_MERR)
            fprintf(stderr, "demo: %s: %s %s\n", p->name,
                    simplex_agent_event_name(e),
                    simplex_agent_event_message(e));
        simplex_agent_event_free(e);
    }
    fprintf(stderr, "demo: %s did not get the expected event in %d s\n",
            p->name, TIMEOUT_MS / 1000);
    return NULL;
}

static int send_and_receive(party *from, party *to, const char *text)
{
    simplex_agent_event *e;
    int64_t id = 0;
    size_t n;
    const uint8_t *b;
    char shown[256];
    int rc = simplex_agent_send(from->a, from->conn, (const uint8_t *)text,
                                strlen(text), &id);
    if (rc)
        return fail("send", rc);
    say(from->name, "sends \"%s\" (stored)", text);
    if (!(e = wait_for(to, SIMPLEX_AGENT_EVENT_MSG)))
        return 1;
    b = simplex_agent_event_body(e, &n);
    snprintf(shown, sizeof shown, "%.*s", (int)n, (const char *)b);
    say(to->name, "receives \"%s\"", shown);
    rc = simplex_agent_ack(to->a, to->conn, simplex_agent_event_msg_id(e),
                           (const uint8_t *)"", 0);
    simplex_agent_event_free(e);
    if (rc)
        return fail("ack", rc);
    if (!(e = wait_for(from, SIMPLEX_AGENT_EVENT_RCVD)))
        return 1;
    say(from->name, "gets the delivery receipt%s",
        (simplex_agent_event_flags(e) & SIMPLEX_AGENT_RCPT_OK) ? "" :
                                                                 " (BAD)");
    simplex_agent_event_free(e);
    return 0;
}

int main(int argc, char **argv)
{
    party alice = {"Alice", "", NULL, ""}, bob = {"Bob", "", NULL, ""};
    char dir[] = "/tmp/simplex-demo-XXXXXX";
    const char *base = NULL;
    simplex_agent_event *e;
    simplex_buf link = {NULL, 0};
    int rc, i, status = 1, made_dir = 0;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else if (!g_server && !strncmp(argv[i], "smp://", 6))
            g_server = argv[i];
        else {
            fprintf(stderr, "usage: demo smp://<keyhash>@host[:port] "
                            "[--dir DIR]\n");
            return 2;
        }
    }
    if (!g_server) {
        fprintf(stderr, "usage: demo smp://<keyhash>@host[:port] "
                        "[--dir DIR]\n");
        return 2;
    }
    if (!base) {
        if (!mkdtemp(dir)) {
            perror("demo: mkdtemp");
            return 1;
        }
        base = dir;
        made_dir = 1;
    }
    snprintf(alice.db, sizeof alice.db, "%s/alice.db", base);
    snprintf(bob.db, sizeof bob.db, "%s/bob.db", base);
    if ((rc = simplex_global_init(NULL)) != 0)
        return fail("init", rc);

    printf("SimpleX agents through %s\n", g_server);
    printf("databases: %s and %s\n\n", alice.db, bob.db);
    g_t0 = now_ms();
    if (open_party(&alice) || open_party(&bob))
        goto out;
    say("", "%s", "both agents are open");

    rc = simplex_agent_create_connection(alice.a, alice.conn, &link);
    if (rc) {
        fail("create", rc);
        goto out;
    }
    say("Alice", "creates an invitation: %.60s...", (const char *)link.data);
    rc = simplex_agent_join_connection(bob.a, bob.conn,
                                       (const char *)link.data,
                                       (const uint8_t *)"Bob", 3);
    simplex_buf_dispose(&link);
    if (rc) {
        fail("join", rc);
        goto out;
    }
    say("Bob", "%s", "joins it with his name");
    if (!(e = wait_for(&alice, SIMPLEX_AGENT_EVENT_CONF)))
        goto out;
    say("Alice", "%s", "gets Bob's confirmation and allows it");
    rc = simplex_agent_allow_connection(alice.a, alice.conn,
                                        simplex_agent_event_conf_id(e),
                                        (const uint8_t *)"Alice", 5);
    simplex_agent_event_free(e);
    if (rc) {
        fail("allow", rc);
        goto out;
    }
    if (!(e = wait_for(&bob, SIMPLEX_AGENT_EVENT_CON)))
        goto out;
    simplex_agent_event_free(e);
    say("Bob", "%s", "is connected");
    if (!(e = wait_for(&alice, SIMPLEX_AGENT_EVENT_CON)))
        goto out;
    simplex_agent_event_free(e);
    say("Alice", "%s", "is connected");

    if (send_and_receive(&alice, &bob, "Hello Bob!") ||
        send_and_receive(&bob, &alice, "Hi Alice, all end-to-end encrypted.") ||
        send_and_receive(&alice, &bob, "Double ratchet, X448 keys."))
        goto out;

    simplex_agent_free(bob.a);
    bob.a = NULL;
    say("Bob", "%s", "closes his agent");
    rc = simplex_agent_send(alice.a, alice.conn,
                            (const uint8_t *)"Are you there?", 14, NULL);
    if (rc) {
        fail("send", rc);
        goto out;
    }
    say("Alice", "sends \"%s\" while Bob is away", "Are you there?");
    if (open_party(&bob))
        goto out;
    say("Bob", "%s", "restarts from his database");
    if (!(e = wait_for(&bob, SIMPLEX_AGENT_EVENT_MSG)))
        goto out;
    {
        size_t n;
        const uint8_t *b = simplex_agent_event_body(e, &n);
        char shown[256];
        snprintf(shown, sizeof shown, "%.*s", (int)n, (const char *)b);
        say("Bob", "receives \"%s\"", shown);
        rc = simplex_agent_ack(bob.a, bob.conn, simplex_agent_event_msg_id(e),
                               (const uint8_t *)"", 0);
        simplex_agent_event_free(e);
        if (rc) {
            fail("ack", rc);
            goto out;
        }
    }
    if (send_and_receive(&bob, &alice, "Back, and the ratchet goes on."))
        goto out;
    printf("\ndemo: done in %.0f ms\n", now_ms() - g_t0);
    status = 0;
out:
    simplex_agent_free(alice.a);
    simplex_agent_free(bob.a);
    if (made_dir) {
        char path[600];
        const char *names[] = {"alice.db", "alice.db-wal", "alice.db-shm",
                               "bob.db", "bob.db-wal", "bob.db-shm"};
        size_t k;
        for (k = 0; k < sizeof names / sizeof names[0]; k++) {
            snprintf(path, sizeof path, "%s/%s", dir, names[k]);
            unlink(path);
        }
        rmdir(dir);
    }
    simplex_global_cleanup();
    return status;
}
