/*
 * simplex-cli: command-line tool over the libsimplex SMP client.
 *
 *   simplex-cli server-test smp://<keyhash>@host[:port] [--timeout SECONDS]
 *                           [--socks5 host:port] [--proxy smp://...]
 *
 * server-test connects, creates a queue, secures it (SKEY by the sender
 * where the server supports it, as the reference agent's server test, else
 * KEY by the recipient), sends a message to it,
 * receives and acknowledges it, deletes the queue, and prints each step
 * with its latency. Exit status 0 when every step succeeded. With --proxy
 * the message is sent through that SMP proxy server (private message
 * routing: PRXY, then PFWD), so the tested server does not see the
 * sender's address.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "simplex/simplex.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: simplex-cli server-test smp://<keyhash>@host[:port] "
            "[--timeout SECONDS] [--socks5 host:port] "
            "[--proxy smp://<keyhash>@host[:port]]\n");
}

/* Prints the step and its outcome; returns rc. */
static int step(simplex_client *c, const char *name, double t0, int rc)
{
    double dt = now_ms() - t0;
    if (rc == 0) {
        printf("%-24s ok     %8.1f ms\n", name, dt);
    } else {
        simplex_buf msg = {NULL, 0};
        if (simplex_client_last_error(c, &msg) != 0)
            msg.data = NULL;
        printf("%-24s FAILED %8.1f ms: %s (%d): %s\n", name, dt,
               simplex_strerror(rc), rc,
               msg.data ? (const char *)msg.data : "");
        simplex_buf_dispose(&msg);
    }
    fflush(stdout);
    return rc;
}

static int server_test(const char *server, unsigned timeout_s,
                       const char *socks5, const char *proxy)
{
    simplex_client_options opts;
    simplex_client *c = NULL;
    simplex_queue *q = NULL;
    simplex_client_event *ev = NULL;
    uint8_t spk[32], ssk[32];
    const uint8_t *sid, *mid, *body;
    size_t sid_len, mid_len, body_len;
    uint16_t version = 0;
    static const char text[] = "simplex-cli server test";
    double t0;
    int rc;

    if (simplex_client_options_init(&opts, SIMPLEX_CLIENT_OPTIONS_VERSION))
        return 2;
    opts.connect_timeout_ms = timeout_s * 1000u;
    opts.response_timeout_ms = timeout_s * 1000u;
    opts.socks5_proxy = socks5;
    rc = simplex_client_new(&c, &opts);
    if (rc) {
        fprintf(stderr, "simplex_client_new: %s\n", simplex_strerror(rc));
        return 1;
    }
    t0 = now_ms();
    if ((rc = step(c, "connect", t0, simplex_client_connect(c, server,
                                                            &version))))
        goto done;
    printf("  negotiated SMP version %u\n", (unsigned)version);
    t0 = now_ms();
    if ((rc = step(c, "create queue (NEW)", t0,
                   simplex_client_create_queue(
                       c, &q, server,
                       SIMPLEX_QUEUE_SUBSCRIBE | SIMPLEX_QUEUE_SENDER_SECURE))))
        goto done;
    if ((rc = simplex_client_generate_auth_key(spk, ssk)) != 0)
        goto done;
    sid = simplex_queue_sender_id(q, &sid_len);
    /* as the reference agent's test: the sender secures the queue when the
     * server supports it (SKEY), else the recipient does (KEY) */
    t0 = now_ms();
    if (simplex_queue_sender_can_secure(q))
        rc = step(c, "secure queue (SKEY)", t0,
                  simplex_client_secure_sender(c, server, sid, sid_len, ssk));
    else
        rc = step(c, "secure queue (KEY)", t0,
                  simplex_client_secure_queue(c, q, spk));
    if (rc)
        goto done;
    t0 = now_ms();
    if (proxy)
        rc = step(c, "send via proxy (PFWD)", t0,
                  simplex_client_send_via(c, proxy, server, sid, sid_len, ssk,
                                          0, (const uint8_t *)text,
                                          sizeof text - 1));
    else
        rc = step(c, "send message (SEND)", t0,
                  simplex_client_send(c, server, sid, sid_len, ssk, 0,
                                      (const uint8_t *)text,
                                      sizeof text - 1));
    if (rc)
        goto done;
    t0 = now_ms();
    for (;;) {
        rc = simplex_client_next_event(c, (int)(timeout_s * 1000u), &ev);
        if (rc || simplex_client_event_get_type(ev) == SIMPLEX_CLIENT_EVENT_MSG)
            break;
        simplex_client_event_free(ev);
        ev = NULL;
    }
    if (rc == 0) {
        body = simplex_client_event_body(ev, &body_len);
        if (body_len != sizeof text - 1 || memcmp(body, text, body_len) != 0)
            rc = SIMPLEX_ERR_PARSE;
    }
    if ((rc = step(c, "receive message (MSG)", t0, rc)))
        goto done;
    mid = simplex_client_event_msg_id(ev, &mid_len);
    t0 = now_ms();
    if ((rc = step(c, "acknowledge (ACK)", t0,
                   simplex_client_ack(c, q, mid, mid_len))))
        goto done;
    t0 = now_ms();
    rc = step(c, "delete queue (DEL)", t0, simplex_client_delete(c, q));
done:
    simplex_client_event_free(ev);
    simplex_queue_free(q);
    simplex_client_free(c);
    memset(ssk, 0, sizeof ssk);
    printf("%s\n", rc ? "server test FAILED" : "server test passed");
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *server = NULL, *socks5 = NULL, *proxy = NULL;
    unsigned timeout_s = 10;
    int i, rc;

    if (argc < 3 || strcmp(argv[1], "server-test") != 0) {
        usage();
        return 2;
    }
    for (i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end || t <= 0 || t > 3600) {
                usage();
                return 2;
            }
            timeout_s = (unsigned)t;
        } else if (strcmp(argv[i], "--socks5") == 0 && i + 1 < argc) {
            socks5 = argv[++i];
        } else if (strcmp(argv[i], "--proxy") == 0 && i + 1 < argc) {
            proxy = argv[++i];
        } else if (!server && argv[i][0] != '-') {
            server = argv[i];
        } else {
            usage();
            return 2;
        }
    }
    if (!server) {
        usage();
        return 2;
    }
    if (simplex_global_init(NULL) != 0) {
        fprintf(stderr, "simplex_global_init failed\n");
        return 1;
    }
    rc = server_test(server, timeout_s, socks5, proxy);
    simplex_global_cleanup();
    return rc;
}
