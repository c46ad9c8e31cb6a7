/*
 * SMP client throughput: one sender and one recipient client (the public
 * simplex_client API) against the loopback SMP server, maximum-size
 * messages. Prints messages/s, p50/p99 latency and the client CPU time per
 * 1,000 messages, next to the unavoidable crypto for one message, and the
 * throughput with 1, 1,000 and 10,000 subscribed queues. The CPU time is
 * the whole process's (both clients and this program's own threads); the
 * server runs in its own process and is not counted.
 *
 *   smp-throughput [--server smp://...] [--messages N] [--queues-max Q]
 *
 * Without --server it starts <dir of this program>/../bin/smp-test-server.
 */
#define _DEFAULT_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "crypto/crypto.h"
#include "simplex/client.h"
#include "simplex/simplex.h"

#define BODY_BYTES 16048 /* the largest SEND body from SMP v11 */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* ---- the loopback server ---- */

static pid_t server_pid;

static void stop_server(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
        server_pid = 0;
    }
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "smp-throughput: %s: %s\n", what, simplex_strerror(rc));
    stop_server();
    exit(1);
}

static void start_server(const char *argv0, char *addr, size_t cap)
{
    char bin[4200], dir[4096];
    int fds[2];
    const char *slash = strrchr(argv0, '/');
    FILE *fp;

    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - argv0) : 1,
             slash ? argv0 : ".");
    snprintf(bin, sizeof bin, "%s/../bin/smp-test-server", dir);
    if (pipe(fds) != 0)
        die("pipe", SIMPLEX_ERR_IO);
    server_pid = fork();
    if (server_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execl(bin, bin, "--port", "0", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    fp = fdopen(fds[0], "r");
    if (!fp || !fgets(addr, (int)cap, fp) || strncmp(addr, "smp://", 6) != 0) {
        fprintf(stderr, "smp-throughput: %s did not start\n", bin);
        stop_server();
        exit(1);
    }
    addr[strcspn(addr, "\r\n")] = '\0';
}


/* ---- one run ---- */

typedef struct run {
    const char *server;
    simplex_client *rcv, *snd;
    simplex_queue **queues;
    size_t n_queues;
    uint8_t (*snd_keys)[32];
    size_t messages;
    double *sent_at;     /* per message: send start */
    double *latency;     /* per message: send start -> MSG received */
    size_t window;       /* messages in flight at most */
    _Atomic size_t received;
    _Atomic size_t sent_ok;
    _Atomic size_t acked;
    _Atomic int failed;
    _Atomic int sender_waits;
    _Atomic size_t wake_at;  /* the sender sleeps until received reaches it */
} run;

/* Messages in flight at most when measuring throughput: the server's
 * queue quota is 128, and a sender that outruns its recipient gets
 * ERR QUOTA. Latency is measured one message at a time. */
#define WINDOW 64

/* the crypto floor per message, measured at start */
static double g_floor_us;
/* and the crypto SMP v11+ requires of both clients per message */
static double g_proto_us;

static pthread_mutex_t win_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t win_cv = PTHREAD_COND_INITIALIZER;

static void window_signal(void)
{
    pthread_mutex_lock(&win_mu);
    pthread_cond_signal(&win_cv);
    pthread_mutex_unlock(&win_mu);
}

static void fail_run(run *r, const char *what, int rc, const char *err)
{
    if (!r->failed)
        fprintf(stderr, "smp-throughput: %s: %s (%s)\n", what,
                simplex_strerror(rc), err ? err : "");
    r->failed = 1;
    window_signal();
}

static void on_acked(int rc, const char *err, void *ud)
{
    run *r = ud;
    if (rc)
        fail_run(r, "ack", rc, err);
    else
        r->acked++;
}

/* The recipient runs on its client's I/O thread: every MSG is checked and
 * acknowledged from the event callback without waiting (ACK's answer may
 * be the queue's next MSG, which comes back here). */
static void on_event(const simplex_client_event *ev, void *ud)
{
    run *r = ud;
    size_t qlen, idlen, blen, q, l = 0;
    const uint8_t *qid, *mid, *body, *id = NULL;
    uint64_t seq, qi;
    int rc;

    if (simplex_client_event_get_type(ev) == SIMPLEX_CLIENT_EVENT_ERROR) {
        fail_run(r, "recipient", simplex_client_event_error(ev),
                 simplex_client_event_message(ev));
        return;
    }
    if (simplex_client_event_get_type(ev) != SIMPLEX_CLIENT_EVENT_MSG ||
        !r->sent_at)
        return;
    body = simplex_client_event_body(ev, &blen);
    qid = simplex_client_event_queue_id(ev, &qlen);
    mid = simplex_client_event_msg_id(ev, &idlen);
    if (blen < 16) {
        fail_run(r, "recipient", SIMPLEX_ERR_PARSE, "short body");
        return;
    }
    memcpy(&seq, body, sizeof seq);
    memcpy(&qi, body + 8, sizeof qi);
    if (seq < r->messages)
        r->latency[seq] = mono() - r->sent_at[seq];
    /* the sender wrote the queue's index after the sequence number;
     * check it against the queue the message arrived on */
    q = (size_t)qi;
    if (q < r->n_queues)
        id = simplex_queue_recipient_id(r->queues[q], &l);
    if (!id || l != qlen || memcmp(id, qid, l) != 0) {
        fail_run(r, "recipient", SIMPLEX_ERR_PARSE, "message on the wrong queue");
        return;
    }
    rc = simplex_client_ack_async(r->rcv, r->queues[q], mid, idlen, on_acked,
                                  r);
    if (rc) {
        fail_run(r, "ack", rc, NULL);
        return;
    }
    /* the sender sleeps until half the window is free (or, measuring
     * latency, until this message arrived) */
    if (++r->received >= r->wake_at && r->sender_waits)
        window_signal();
}

static void on_sent(int rc, const char *err, void *ud)
{
    run *r = ud;
    if (rc)
        fail_run(r, "send", rc, err);
    else
        r->sent_ok++;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void setup_queues(run *r, size_t n)
{
    size_t have = r->n_queues;
    if (n <= have)
        return;
    r->queues = realloc(r->queues, n * sizeof *r->queues);
    r->snd_keys = realloc(r->snd_keys, n * sizeof *r->snd_keys);
    if (!r->queues || !r->snd_keys)
        die("memory", SIMPLEX_ERR_NOMEM);
    for (size_t i = have; i < n; i++) {
        uint8_t pub[32];
        size_t sl;
        const uint8_t *sid;
        int rc = simplex_client_create_queue(
            r->rcv, &r->queues[i], r->server,
            SIMPLEX_QUEUE_SUBSCRIBE | SIMPLEX_QUEUE_SENDER_SECURE);
        if (rc)
            die("create queue", rc);
        rc = simplex_client_generate_auth_key(pub, r->snd_keys[i]);
        if (rc)
            die("key", rc);
        sid = simplex_queue_sender_id(r->queues[i], &sl);
        rc = simplex_client_secure_sender(r->snd, r->server, sid, sl,
                                          r->snd_keys[i]);
        if (rc)
            die("secure queue", rc);
    }
    r->n_queues = n;
}

static void measure(run *r, size_t n_queues, int latency_only)
{
    static uint8_t body[BODY_BYTES];
    double t0, c0, secs, cpus;
    size_t resume;

    setup_queues(r, n_queues);
    r->latency = calloc(r->messages, sizeof *r->latency);
    r->received = 0;
    r->sent_ok = 0;
    r->acked = 0;
    r->failed = 0;
    r->window = latency_only ? 1 : WINDOW;
    resume = latency_only ? 0 : WINDOW / 2;
    sx_random(body, sizeof body);
    r->sent_at = calloc(r->messages, sizeof *r->sent_at);
    if (!r->sent_at || !r->latency)
        die("memory", SIMPLEX_ERR_NOMEM);
    t0 = mono();
    c0 = cpu();
    for (size_t i = 0; i < r->messages && !r->failed; i++) {
        size_t q = i % n_queues, sl;
        const uint8_t *sid = simplex_queue_sender_id(r->queues[q], &sl);
        uint64_t seq = i, qi = q;
        int rc;
        memcpy(body, &seq, sizeof seq);
        memcpy(body + 8, &qi, sizeof qi);
        if (i - r->received >= r->window) {
            pthread_mutex_lock(&win_mu);
            r->wake_at = i - resume;
            r->sender_waits = 1;
            while (i - r->received > resume && !r->failed)
                pthread_cond_wait(&win_cv, &win_mu);
            r->sender_waits = 0;
            pthread_mutex_unlock(&win_mu);
        }
        r->sent_at[i] = mono();
        rc = simplex_client_send_async(r->snd, r->server, sid, sl,
                                       r->snd_keys[q], 0, body, sizeof body,
                                       on_sent, r);
        if (rc)
            die("send", rc);
    }
    /* everything received (and every SEND and ACK answered) */
    pthread_mutex_lock(&win_mu);
    r->wake_at = r->messages;
    r->sender_waits = 1;
    while ((r->received < r->messages || r->sent_ok < r->messages ||
            r->acked < r->messages) &&
           !r->failed) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += 10 * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&win_cv, &win_mu, &dl);
    }
    r->sender_waits = 0;
    pthread_mutex_unlock(&win_mu);
    secs = mono() - t0;
    cpus = cpu() - c0;
    if (r->failed)
        die("receive", SIMPLEX_ERR_INTERNAL);
    if (latency_only) {
        qsort(r->latency, r->messages, sizeof *r->latency, cmp_double);
        printf("  latency send -> MSG, one message at a time: p50 %.2f ms, "
               "p99 %.2f ms\n",
               r->latency[r->messages / 2] * 1e3,
               r->latency[r->messages * 99 / 100] * 1e3);
    } else {
        double us = cpus * 1e6 / (double)r->messages;
        printf("  %6zu queue(s): %7.0f messages/s, client CPU %.3f s per "
               "1,000 messages (%.0f us each, %.1fx the floor, %.1fx SMP's "
               "required crypto)\n",
               n_queues, (double)r->messages / secs, us / 1000.0, us,
               us / g_floor_us, us / g_proto_us);
    }
    /* every message arrived: no callback reads these any more */
    free(r->sent_at);
    free(r->latency);
    r->sent_at = r->latency = NULL;
}

/* ---- the unavoidable crypto for one message, both clients ---- */

static double floor_us(void)
{
    static uint8_t msg[16384], out[16384 + 64];
    uint8_t key[32], nonce[24], tag[16];
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    const int n = 2000;
    double c0;
    int len;

    sx_random(key, sizeof key);
    sx_random(nonce, sizeof nonce);
    EVP_EncryptInit_ex(cx, EVP_chacha20_poly1305(), NULL, NULL, NULL);
    c0 = cpu();
    for (int i = 0; i < n; i++) {
        /* one crypto_box each way */
        if (sx_box_seal(out, msg, sizeof msg, nonce, key) ||
            sx_box_open(msg, out, sizeof msg + 16, nonce, key))
            die("floor", SIMPLEX_ERR_CRYPTO);
        /* one TLS record of 16 KB each way (sender out, recipient in) */
        for (int k = 0; k < 2; k++) {
            EVP_EncryptInit_ex(cx, NULL, NULL, key, nonce);
            EVP_EncryptUpdate(cx, out, &len, msg, (int)sizeof msg);
            EVP_EncryptFinal_ex(cx, out + len, &len);
            EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_AEAD_GET_TAG, 16, tag);
        }
    }
    EVP_CIPHER_CTX_free(cx);
    return (cpu() - c0) * 1e6 / n;
}

/* ---- the crypto SMP itself requires for one message, both clients ----
 * Sender: sign the SEND (Ed25519 over the whole transmission), encrypt
 * its block (v11+: a chain key step and a 16 KB secret box), one TLS
 * record; then its OK: one TLS record, a key step, a short box open.
 * Recipient: the MSG block (TLS, key step, whole box open), the server's
 * body layer (crypto_box open of 16 KB), then the ACK (a small
 * signature, key step, 16 KB box, TLS) and its answer (TLS, key step,
 * short open). The floor above leaves out the signatures and the
 * block encryption; this one is what any SMP v11+ client must spend. */
static double protocol_floor_us(void)
{
    static uint8_t msg[16384], block[16384], out[16384 + 64];
    uint8_t key[32], nonce[24], tag[16], ck[32], bk[32], bn[24], sig[64];
    uint8_t pk[32], sk[64], x[64];
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    const int n = 500;
    const uint8_t *m;
    size_t ml;
    double c0;
    int len;

    sx_random(key, sizeof key);
    sx_random(nonce, sizeof nonce);
    sx_random(ck, sizeof ck);
    if (sx_ed25519_keypair(pk, sk) || sx_ed25519_expand(x, sk))
        die("floor", SIMPLEX_ERR_CRYPTO);
    EVP_EncryptInit_ex(cx, EVP_chacha20_poly1305(), NULL, NULL, NULL);
    c0 = cpu();
    for (int i = 0; i < n; i++) {
        int bad = 0;
        /* two signatures: the SEND's transmission, the ACK's */
        bad |= sx_ed25519_sign_expanded(sig, msg, BODY_BYTES + 200, x);
        bad |= sx_ed25519_sign_expanded(sig, msg, 200, x);
        /* five blocks: SEND and ACK out (full boxes); MSG in (full open),
         * OK and the ACK's answer in (short opens) */
        for (int b = 0; b < 5; b++) {
            bad |= sx_sbchain_next(ck, bk, bn);
            if (b < 2) {
                bad |= sx_box_seal_padded(block, sizeof block - 16, msg,
                                          b == 0 ? BODY_BYTES + 200 : 200, bn,
                                          bk);
            } else {
                bad |= sx_box_seal_padded(block, sizeof block - 16, msg,
                                          b == 2 ? BODY_BYTES + 200 : 30, bn,
                                          bk) ||
                       sx_box_open_padded(out, &m, &ml, block, sizeof block,
                                          bn, bk);
            }
            /* its TLS record */
            EVP_EncryptInit_ex(cx, NULL, NULL, key, nonce);
            EVP_EncryptUpdate(cx, out, &len, msg, (int)sizeof msg);
            EVP_EncryptFinal_ex(cx, out + len, &len);
            EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_AEAD_GET_TAG, 16, tag);
        }
        /* the MSG body: server -> recipient crypto_box */
        bad |= sx_box_open(out, block, BODY_BYTES + 16, nonce, key) !=
               SIMPLEX_ERR_DECRYPT;
        if (bad)
            die("floor", SIMPLEX_ERR_CRYPTO);
    }
    EVP_CIPHER_CTX_free(cx);
    /* the seals of the three incoming blocks are the server's work */
    {
        double c1 = cpu();
        for (int i = 0; i < n; i++)
            for (int b = 0; b < 3; b++)
                if (sx_box_seal_padded(block, sizeof block - 16, msg,
                                       b == 0 ? BODY_BYTES + 200 : 30, bn,
                                       bk))
                    die("floor", SIMPLEX_ERR_CRYPTO);
        return ((c1 - c0) - (cpu() - c1)) * 1e6 / n;
    }
}

int main(int argc, char **argv)
{
    char addr[512];
    run r;
    size_t queues_max = 10000;
    simplex_client_options o;
    int rc;

    memset(&r, 0, sizeof r);
    r.messages = 3000;
    addr[0] = '\0';
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
            snprintf(addr, sizeof addr, "%s", argv[++i]);
        else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
            r.messages = (size_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--queues-max") == 0 && i + 1 < argc)
            queues_max = (size_t)strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: smp-throughput [--server smp://...] "
                            "[--messages N] [--queues-max Q]\n");
            return 2;
        }
    }
    if (r.messages < 100)
        r.messages = 100;
    if (simplex_global_init(NULL) != SIMPLEX_OK)
        return 1;
    if (!addr[0])
        start_server(argv[0], addr, sizeof addr);
    r.server = addr;
    simplex_client_options_init(&o, SIMPLEX_CLIENT_OPTIONS_VERSION);
    if ((rc = simplex_client_new(&r.snd, &o)) != 0)
        die("client", rc);
    o.event_cb = on_event;
    o.user_data = &r;
    if ((rc = simplex_client_new(&r.rcv, &o)) != 0)
        die("client", rc);

    printf("SMP client throughput, %zu messages of %d bytes, server %s\n",
           r.messages, BODY_BYTES, addr);
    printf("  crypto floor per message (crypto_box + TLS record, each way): "
           "%.1f us\n", g_floor_us = floor_us());
    g_proto_us = protocol_floor_us();
    printf("  SMP's required crypto per message (+ signatures, block "
           "encryption, chain keys): %.1f us (%.1fx the floor)\n",
           g_proto_us, g_proto_us / g_floor_us);
    measure(&r, 1, 1);
    measure(&r, 1, 0);
    if (queues_max >= 1000)
        measure(&r, 1000, 0);
    if (queues_max >= 10000)
        measure(&r, 10000, 0);

    for (size_t i = 0; i < r.n_queues; i++)
        simplex_queue_free(r.queues[i]);
    free(r.queues);
    free(r.snd_keys);
    simplex_client_free(r.snd);
    simplex_client_free(r.rcv);
    stop_server();
    simplex_global_cleanup();
    return 0;
}
