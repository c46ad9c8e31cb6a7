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
    _Atomic int failed;
} run;

/* Messages in flight at most when measuring throughput: the server's
 * queue quota is 128, and a sender that outruns its recipient gets
 * ERR QUOTA. Latency is measured one message at a time. */
#define WINDOW 64

/* the crypto floor per message, measured at start */
static double g_floor_us;

static pthread_mutex_t win_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t win_cv = PTHREAD_COND_INITIALIZER;

static void window_signal(void)
{
    pthread_mutex_lock(&win_mu);
    pthread_cond_signal(&win_cv);
    pthread_mutex_unlock(&win_mu);
}

static void *receiver(void *arg)
{
    run *r = arg;
    while (r->received < r->messages && !r->failed) {
        simplex_client_event *ev = NULL;
        size_t qlen, idlen, blen, q;
        const uint8_t *qid, *mid, *body;
        uint64_t seq;
        int rc = simplex_client_next_event(r->rcv, 10000, &ev);
        if (rc != 0) {
            fprintf(stderr, "receiver: %s\n", simplex_strerror(rc));
            r->failed = 1;
            window_signal();
            break;
        }
        if (simplex_client_event_get_type(ev) != SIMPLEX_CLIENT_EVENT_MSG) {
            simplex_client_event_free(ev);
            continue;
        }
        body = simplex_client_event_body(ev, &blen);
        qid = simplex_client_event_queue_id(ev, &qlen);
        mid = simplex_client_event_msg_id(ev, &idlen);
        if (blen < 16) {
            r->failed = 1;
            simplex_client_event_free(ev);
            break;
        }
        memcpy(&seq, body, sizeof seq);
        if (seq < r->messages)
            r->latency[seq] = mono() - r->sent_at[seq];
        /* the sender wrote the queue's index after the sequence number;
         * check it against the queue the message arrived on */
        {
            uint64_t qi;
            size_t l = 0;
            const uint8_t *id = NULL;
            memcpy(&qi, body + 8, sizeof qi);
            q = (size_t)qi;
            if (q < r->n_queues)
                id = simplex_queue_recipient_id(r->queues[q], &l);
            if (!id || l != qlen || memcmp(id, qid, l) != 0)
                q = r->n_queues;
        }
        if (q == r->n_queues ||
            simplex_client_ack(r->rcv, r->queues[q], mid, idlen) != 0) {
            r->failed = 1;
            simplex_client_event_free(ev);
            break;
        }
        r->received++;
        window_signal();
        simplex_client_event_free(ev);
    }
    window_signal();
    return NULL;
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
    pthread_t th;
    double t0, c0, secs, cpus;

    setup_queues(r, n_queues);
    r->sent_at = calloc(r->messages, sizeof *r->sent_at);
    r->latency = calloc(r->messages, sizeof *r->latency);
    if (!r->sent_at || !r->latency)
        die("memory", SIMPLEX_ERR_NOMEM);
    r->received = 0;
    r->failed = 0;
    r->window = latency_only ? 1 : WINDOW;
    sx_random(body, sizeof body);
    pthread_create(&th, NULL, receiver, r);
    t0 = mono();
    c0 = cpu();
    for (size_t i = 0; i < r->messages && !r->failed; i++) {
        size_t q = i % n_queues, sl;
        const uint8_t *sid = simplex_queue_sender_id(r->queues[q], &sl);
        uint64_t seq = i, qi = q;
        int rc;
        memcpy(body, &seq, sizeof seq);
        memcpy(body + 8, &qi, sizeof qi);
        pthread_mutex_lock(&win_mu);
        while (i - r->received >= r->window && !r->failed)
            pthread_cond_wait(&win_cv, &win_mu);
        pthread_mutex_unlock(&win_mu);
        r->sent_at[i] = mono();
        rc = simplex_client_send(r->snd, r->server, sid, sl, r->snd_keys[q],
                                 0, body, sizeof body);
        if (rc) {
            simplex_buf e = {NULL, 0};
            if (simplex_client_last_error(r->snd, &e) == 0)
                fprintf(stderr, "send: %.*s\n", (int)e.len, (char *)e.data);
            simplex_buf_dispose(&e);
            die("send", rc);
        }
    }
    pthread_join(th, NULL);
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
               "1,000 messages (%.0f us each, %.1fx the floor)\n",
               n_queues, (double)r->messages / secs, us / 1000.0, us,
               us / g_floor_us);
    }
    free(r->sent_at);
    free(r->latency);
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
    if ((rc = simplex_client_new(&r.rcv, &o)) != 0 ||
        (rc = simplex_client_new(&r.snd, &o)) != 0)
        die("client", rc);

    printf("SMP client throughput, %zu messages of %d bytes, server %s\n",
           r.messages, BODY_BYTES, addr);
    printf("  crypto floor per message (crypto_box + TLS record, each way): "
           "%.1f us\n", g_floor_us = floor_us());
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
