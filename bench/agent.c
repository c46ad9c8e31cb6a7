/*
 * Agent benchmark: two agents (Alice and Bob) in this process, each with
 * its own database in a temporary directory, talking through one loopback
 * SMP server process. Only the public API (simplex/simplex.h) is used.
 * Prints, next to the targets:
 *
 *   1. connection setup time (create -> join -> CONF -> allow -> both CON)
 *   2. one-way and two-way throughput with maximum-size messages and
 *      durable storage, and the process CPU time per 1,000 messages
 *   3. latency at a fixed rate (500 messages/s; also 50/s, for comparison)
 *   4. memory and database bytes per idle connection
 *   5. time to subscribe every stored connection after a restart
 *   6. the stripped size of the shared library
 *
 *   agent [--server smp://...] [--messages N] [--connections M]
 *         [--rate R] [--seconds S] [--setup K] [--window W] [--relaxed]
 *         [--lib PATH]
 *
 * --relaxed: the agents' relaxed_durability option (SQLite
 * synchronous=NORMAL: survives a crash of the process, not of the
 * machine); by default every commit is durable (synchronous=FULL).
 *
 * --window W (default 100): a sender waits while W of its messages have not
 * reached the other agent, staying below the server's queue quota of 128
 * messages. --window 0 sends without waiting: the queue fills up, the
 * sender gets ERR QUOTA and waits until the recipient's A_QCONT.
 *
 * Without --server it starts <dir of this program>/../bin/smp-test-server
 * on a free port. Timing figures are never checked; the program exits
 * non-zero only when something fails functionally (an agent call errors,
 * an error event arrives, messages go missing or arrive corrupted).
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "simplex/simplex.h"

#define MSG_BYTES SIMPLEX_AGENT_MAX_MSG_BYTES
#define MAGIC 0x53584247u /* first 4 bytes of every benchmark message */
#define HDR_BYTES 24      /* magic, phase, sequence number, send time */

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* ---- time, CPU, memory ---- */

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

static void sleep_s(double s)
{
    struct timespec ts;
    if (s <= 0)
        return;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* resident set of this process in bytes (VmRSS), 0 when unknown */
static long long rss_bytes(void)
{
    char line[256];
    long long kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtoll(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb * 1024;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the loopback server and clean-up ---- */

static pid_t server_pid;
static char g_dir[] = "/tmp/simplex-bench-agent-XXXXXX";
static int g_dir_made;

static void stop_server(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
        server_pid = 0;
    }
}

/* CPU seconds the server process has used, -1 when unknown */
static double server_cpu(void)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    if (server_pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)server_pid);
    if (!(f = fopen(path, "r")))
        return -1;
    p = fgets(buf, sizeof buf, f);
    fclose(f);
    if (!p || !(p = strrchr(buf, ')')))
        return -1;
    /* fields after the command: state is field 3, utime 14, stime 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void remove_dir(void)
{
    static const char *const names[] = {"alice.db", "alice.db-wal",
                                        "alice.db-shm", "bob.db",
                                        "bob.db-wal", "bob.db-shm",
                                        "libsimplex.so.stripped"};
    char p[512];
    if (!g_dir_made)
        return;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, names[i]);
        unlink(p);
    }
    rmdir(g_dir);
    g_dir_made = 0;
}

/* A functional failure: print it, clean up, exit 1. The agents' threads
 * may still run, so leave without the atexit handlers. */
static void die(const char *fmt, ...) PRINTF_LIKE(1, 2);
static void die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "agent bench: FAILED: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    stop_server();
    remove_dir();
    _exit(1);
}

static void on_signal(int sig)
{
    (void)sig;
    if (server_pid > 0)
        kill(server_pid, SIGTERM);
    _exit(130);
}

/* the directory of this program, for the server and the library */
static void exe_dir(const char *argv0, char *out, size_t cap)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    const char *src = argv0, *slash;
    if (n > 0) {
        buf[n] = '\0';
        src = buf;
    }
    slash = strrchr(src, '/');
    if (slash)
        snprintf(out, cap, "%.*s", (int)(slash - src), src);
    else
        snprintf(out, cap, ".");
}

static void start_server(const char *dir, char *addr, size_t cap)
{
    char bin[PATH_MAX + 32];
    int fds[2];
    FILE *fp;

    snprintf(bin, sizeof bin, "%s/../bin/smp-test-server", dir);
    if (pipe(fds) != 0)
        die("pipe: %s", strerror(errno));
    server_pid = fork();
    if (server_pid < 0)
        die("fork: %s", strerror(errno));
    if (server_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(bin, bin, "--port", "0", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    /* kept open (never read again) so that the server never gets EPIPE */
    fp = fdopen(fds[0], "r");
    if (!fp || !fgets(addr, (int)cap, fp) || strncmp(addr, "smp://", 6) != 0)
        die("%s did not start (build it with make, or pass --server)", bin);
    addr[strcspn(addr, "\r\n")] = '\0';
}

/* ---- the two agents ---- */

typedef struct side {
    const char *name;
    char db[600];
    simplex_agent *a;
    pthread_t thread;
    int thread_started;
    atomic_int stop;
    /* guarded by g_mu */
    size_t n_conf, n_info, n_con, n_sent, n_mwarn, n_down;
    double t_conf, t_con;
    /* receiving in the current phase (guarded by g_mu) */
    uint32_t rx_phase;
    size_t rx_n, rx_got;
    unsigned char *rx_seen;
    double *rx_lat; /* send call -> MSG event, seconds, by sequence no. */
    double rx_last;
} side;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static char g_fail[1024]; /* guarded by g_mu; set once */
static const char *g_server;
static int g_relaxed; /* --relaxed: synchronous=NORMAL */
static side g_alice = {.name = "Alice"}, g_bob = {.name = "Bob"};

static void fail_async(const char *fmt, ...) PRINTF_LIKE(1, 2);
static void fail_async(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&g_mu);
    if (!g_fail[0]) {
        va_start(ap, fmt);
        vsnprintf(g_fail, sizeof g_fail, fmt, ap);
        va_end(ap);
        if (!g_fail[0])
            snprintf(g_fail, sizeof g_fail, "failure");
    }
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void check_failed(void)
{
    char msg[sizeof g_fail];
    pthread_mutex_lock(&g_mu);
    memcpy(msg, g_fail, sizeof msg);
    pthread_mutex_unlock(&g_mu);
    if (msg[0])
        die("%s", msg);
}

static const char *agent_error(simplex_agent *a, char *buf, size_t cap)
{
    simplex_buf e = {NULL, 0};
    buf[0] = '\0';
    if (simplex_agent_last_error(a, &e) == 0 && e.data)
        snprintf(buf, cap, "%s", (const char *)e.data);
    simplex_buf_dispose(&e);
    return buf;
}

/* dies when an agent call failed, with the agent's message */
static void check_call(int rc, simplex_agent *a, const char *who,
                       const char *what)
{
    char m[512];
    if (rc != 0)
        die("%s: %s: %s (%s)", who, what, simplex_strerror(rc),
            agent_error(a, m, sizeof m));
}

static void on_msg(side *s, const simplex_agent_event *e)
{
    size_t len = 0;
    const uint8_t *b = simplex_agent_event_body(e, &len);
    const char *cid = simplex_agent_event_conn_id(e);
    int64_t id = simplex_agent_event_msg_id(e);
    unsigned flags = simplex_agent_event_flags(e);
    uint32_t magic = 0, phase = 0;
    uint64_t seq = 0;
    double sent = 0, now = mono();
    char m[512];
    int rc;

    if (flags & SIMPLEX_AGENT_MSG_INTEGRITY_ERR) {
        int64_t from = 0, to = 0;
        int integ = (int)simplex_agent_event_integrity(e, &from, &to);
        fail_async("%s: MSG %lld with integrity error %d (%lld..%lld)",
                   s->name, (long long)id, integ, (long long)from,
                   (long long)to);
        return;
    }
    if (len >= HDR_BYTES) {
        memcpy(&magic, b, 4);
        memcpy(&phase, b + 4, 4);
        memcpy(&seq, b + 8, 8);
        memcpy(&sent, b + 16, 8);
    }
    pthread_mutex_lock(&g_mu);
    if (len != MSG_BYTES || magic != MAGIC || phase != s->rx_phase ||
        seq >= s->rx_n || s->rx_seen[seq]) {
        pthread_mutex_unlock(&g_mu);
        fail_async("%s: unexpected MSG (%zu bytes, phase %u, seq %llu%s)",
                   s->name, len, phase, (unsigned long long)seq,
                   (flags & SIMPLEX_AGENT_MSG_REDELIVERED) ? ", redelivered"
                                                           : "");
        return;
    }
    s->rx_seen[seq] = 1;
    pthread_mutex_unlock(&g_mu);
    /* acknowledge without a receipt, then count it */
    rc = simplex_agent_ack(s->a, cid, id, NULL, 0);
    if (rc != 0) {
        fail_async("%s: simplex_agent_ack: %s (%s)", s->name,
                   simplex_strerror(rc), agent_error(s->a, m, sizeof m));
        return;
    }
    pthread_mutex_lock(&g_mu);
    if (s->rx_lat)
        s->rx_lat[seq] = now - sent;
    s->rx_got++;
    s->rx_last = now;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void on_event(side *s, const simplex_agent_event *e)
{
    const char *cid = simplex_agent_event_conn_id(e);
    char m[512];
    int rc;

    switch (simplex_agent_event_get_type(e)) {
    case SIMPLEX_AGENT_EVENT_CONF: {
        double t = mono();
        /* an application would show the info; the benchmark allows */
        rc = simplex_agent_allow_connection(s->a, cid,
                                            simplex_agent_event_conf_id(e),
                                            (const uint8_t *)s->name,
                                            strlen(s->name));
        if (rc != 0) {
            fail_async("%s: simplex_agent_allow_connection: %s (%s)",
                       s->name, simplex_strerror(rc),
                       agent_error(s->a, m, sizeof m));
            return;
        }
        pthread_mutex_lock(&g_mu);
        s->n_conf++;
        s->t_conf = t;
        pthread_cond_broadcast(&g_cv);
        pthread_mutex_unlock(&g_mu);
        break;
    }
    case SIMPLEX_AGENT_EVENT_INFO:
        pthread_mutex_lock(&g_mu);
        s->n_info++;
        pthread_mutex_unlock(&g_mu);
        break;
    case SIMPLEX_AGENT_EVENT_CON:
        pthread_mutex_lock(&g_mu);
        s->n_con++;
        s->t_con = mono();
        pthread_cond_broadcast(&g_cv);
        pthread_mutex_unlock(&g_mu);
        break;
    case SIMPLEX_AGENT_EVENT_MSG:
        on_msg(s, e);
        break;
    case SIMPLEX_AGENT_EVENT_SENT:
        pthread_mutex_lock(&g_mu);
        s->n_sent++;
        pthread_cond_broadcast(&g_cv);
        pthread_mutex_unlock(&g_mu);
        break;
    case SIMPLEX_AGENT_EVENT_MWARN: {
        size_t n;
        pthread_mutex_lock(&g_mu);
        n = ++s->n_mwarn;
        pthread_mutex_unlock(&g_mu);
        if (n <= 3)
            fprintf(stderr, "  (%s: MWARN for message %lld: %s)\n", s->name,
                    (long long)simplex_agent_event_msg_id(e),
                    simplex_agent_event_message(e));
        break;
    }
    case SIMPLEX_AGENT_EVENT_DOWN:
    case SIMPLEX_AGENT_EVENT_UP:
        pthread_mutex_lock(&g_mu);
        if (simplex_agent_event_get_type(e) == SIMPLEX_AGENT_EVENT_DOWN)
            s->n_down++;
        pthread_mutex_unlock(&g_mu);
        fprintf(stderr, "  (%s: %s %s)\n", s->name,
                simplex_agent_event_name(e), simplex_agent_event_server(e));
        break;
    case SIMPLEX_AGENT_EVENT_RCVD:
    case SIMPLEX_AGENT_EVENT_DEL:
        break;
    default: /* MERR, ERR, END, anything unexpected */
        fail_async("%s: event %s on connection '%s': %s (%s)", s->name,
                   simplex_agent_event_name(e), cid,
                   simplex_agent_event_message(e),
                   simplex_strerror(simplex_agent_event_error(e)));
        break;
    }
}

static void *event_main(void *arg)
{
    side *s = arg;
    char m[512];
    while (!atomic_load(&s->stop)) {
        simplex_agent_event *e = NULL;
        int rc = simplex_agent_next_event(s->a, 100, &e);
        if (rc == SIMPLEX_ERR_TIMEOUT)
            continue;
        if (rc != 0) {
            fail_async("%s: simplex_agent_next_event: %s (%s)", s->name,
                       simplex_strerror(rc), agent_error(s->a, m, sizeof m));
            break;
        }
        on_event(s, e);
        simplex_agent_event_free(e);
    }
    return NULL;
}

static void side_open(side *s, unsigned flags)
{
    simplex_agent_options o;
    const char *servers[1];
    char m[512];
    int rc = simplex_agent_options_init(&o, SIMPLEX_AGENT_OPTIONS_VERSION);
    check_call(rc, NULL, s->name, "simplex_agent_options_init");
    servers[0] = g_server;
    o.db_path = s->db;
    o.servers = servers;
    o.n_servers = 1;
    o.flags = flags;
    o.relaxed_durability = g_relaxed;
    rc = simplex_agent_new(&s->a, &o);
    if (rc != 0)
        die("%s: simplex_agent_new: %s (%s)", s->name, simplex_strerror(rc),
            agent_error(NULL, m, sizeof m));
    atomic_store(&s->stop, 0);
    if (pthread_create(&s->thread, NULL, event_main, s) != 0)
        die("pthread_create failed");
    s->thread_started = 1;
}

static void side_close(side *s)
{
    if (s->thread_started) {
        atomic_store(&s->stop, 1);
        pthread_join(s->thread, NULL);
        s->thread_started = 0;
    }
    simplex_agent_free(s->a);
    s->a = NULL;
}

/*
 * Waits until *c1 >= t1 and *c2 >= t2 (counters guarded by g_mu). Dies
 * when a failure is reported or when neither counter moved for stall_s
 * seconds.
 */
static void wait_counts(const size_t *c1, size_t t1, const size_t *c2,
                        size_t t2, double stall_s, const char *what)
{
    size_t last1, last2;
    double moved = mono();
    pthread_mutex_lock(&g_mu);
    last1 = *c1;
    last2 = *c2;
    while ((*c1 < t1 || *c2 < t2) && !g_fail[0]) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g_cv, &g_mu, &ts);
        if (*c1 != last1 || *c2 != last2) {
            last1 = *c1;
            last2 = *c2;
            moved = mono();
        } else if (mono() - moved > stall_s) {
            size_t a = *c1, b = *c2;
            pthread_mutex_unlock(&g_mu);
            die("%s: nothing happened for %.0f s (%zu of %zu, %zu of %zu)",
                what, stall_s, a, t1, b, t2);
        }
    }
    pthread_mutex_unlock(&g_mu);
    check_failed();
}

/* ---- connections ---- */

typedef struct conn_pair {
    char a[SIMPLEX_AGENT_ID_MAX]; /* Alice's connection id */
    char b[SIMPLEX_AGENT_ID_MAX]; /* Bob's */
} conn_pair;

/* Alice creates, Bob joins; CONF/allow and CON follow on the event
 * threads. Times of the two calls in *t_create / *t_join (may be NULL). */
static void start_connection(conn_pair *p, double *t_create, double *t_join)
{
    simplex_buf link = {NULL, 0};
    double t0 = mono(), t1;
    int rc = simplex_agent_create_connection(g_alice.a, p->a, &link);
    check_call(rc, g_alice.a, "Alice", "simplex_agent_create_connection");
    t1 = mono();
    rc = simplex_agent_join_connection(g_bob.a, p->b,
                                       (const char *)link.data,
                                       (const uint8_t *)"Bob", 3);
    simplex_buf_dispose(&link);
    check_call(rc, g_bob.a, "Bob", "simplex_agent_join_connection");
    if (t_create)
        *t_create = t1 - t0;
    if (t_join)
        *t_join = mono() - t1;
}

/* the connections made so far: how many CONs both sides have seen */
static void con_counts(size_t *a, size_t *b)
{
    pthread_mutex_lock(&g_mu);
    *a = g_alice.n_con;
    *b = g_bob.n_con;
    pthread_mutex_unlock(&g_mu);
}

/* ---- messages ---- */

static void rx_begin(side *s, uint32_t phase, size_t n, int latency)
{
    pthread_mutex_lock(&g_mu);
    free(s->rx_seen);
    free(s->rx_lat);
    s->rx_phase = phase;
    s->rx_n = n;
    s->rx_got = 0;
    s->rx_last = 0;
    s->rx_seen = calloc(n ? n : 1, 1);
    s->rx_lat = latency ? calloc(n ? n : 1, sizeof *s->rx_lat) : NULL;
    pthread_mutex_unlock(&g_mu);
    if (!s->rx_seen || (latency && !s->rx_lat))
        die("out of memory");
}

typedef struct sender {
    side *s;
    side *peer;      /* the recipient, for the window */
    const char *conn;
    uint32_t phase;
    size_t n;
    double rate;     /* messages per second, 0: as fast as send allows */
    size_t window;   /* at most this many sent and not yet received */
    double t_first;  /* first send call */
    double t_done;   /* last send call returned */
    double send_max; /* the slowest send call, seconds */
    pthread_t th;
} sender;

static void *send_main(void *arg)
{
    sender *x = arg;
    uint8_t *body = malloc(MSG_BYTES);
    uint32_t magic = MAGIC;
    char m[512];
    if (!body) {
        fail_async("out of memory");
        return NULL;
    }
    for (size_t i = 0; i < MSG_BYTES; i++)
        body[i] = (uint8_t)(i * 131 + 7);
    memcpy(body, &magic, 4);
    memcpy(body + 4, &x->phase, 4);
    x->t_first = mono();
    x->send_max = 0;
    for (size_t i = 0; i < x->n; i++) {
        uint64_t seq = i;
        double now;
        int rc;
        double due = 0;
        if (x->rate > 0) {
            due = x->t_first + (double)i / x->rate;
            sleep_s(due - mono());
        }
        if (x->window) {
            pthread_mutex_lock(&g_mu);
            while (x->peer->rx_got + x->window <= i && !g_fail[0])
                pthread_cond_wait(&g_cv, &g_mu);
            pthread_mutex_unlock(&g_mu);
        }
        now = mono();
        /* at a fixed rate, latency counts from the scheduled time, so that
         * a sender that falls behind does not hide the delay */
        memcpy(body + 8, &seq, 8);
        {
            double ts = x->rate > 0 && due < now ? due : now;
            memcpy(body + 16, &ts, 8);
        }
        rc = simplex_agent_send(x->s->a, x->conn, body, MSG_BYTES, NULL);
        if (rc != 0) {
            fail_async("%s: simplex_agent_send (message %zu): %s (%s)",
                       x->s->name, i, simplex_strerror(rc),
                       agent_error(x->s->a, m, sizeof m));
            break;
        }
        if (mono() - now > x->send_max)
            x->send_max = mono() - now;
        if (i % 64 == 0) {
            pthread_mutex_lock(&g_mu);
            int f = g_fail[0] != 0;
            pthread_mutex_unlock(&g_mu);
            if (f)
                break;
        }
    }
    x->t_done = mono();
    free(body);
    return NULL;
}

/* the time anything may take without progress */
#define STALL_S 60.0
#define STALL_NO_WINDOW_S 200.0

/* messages sent and not yet received at most, below the server's queue
 * quota of 128 (--window; 0: unlimited) */
static size_t g_window = 100;

static double msg_stall(void)
{
    return g_window ? STALL_S : STALL_NO_WINDOW_S;
}

static void phase_one_way(const conn_pair *p, size_t n)
{
    sender x = {.s = &g_alice, .conn = p->a, .phase = 1, .n = n,
                .peer = &g_bob, .window = g_window};
    double c0, secs, cpus, srv0 = server_cpu(), srv;
    size_t zero = 0, mwarn;

    rx_begin(&g_bob, 1, n, 0);
    c0 = cpu();
    if (pthread_create(&x.th, NULL, send_main, &x) != 0)
        die("pthread_create failed");
    pthread_join(x.th, NULL);
    check_failed();
    wait_counts(&g_bob.rx_got, n, &zero, 0, msg_stall(),
                "one-way: Bob receiving");
    cpus = cpu() - c0;
    srv = server_cpu() - srv0;
    pthread_mutex_lock(&g_mu);
    secs = g_bob.rx_last - x.t_first;
    mwarn = g_alice.n_mwarn;
    pthread_mutex_unlock(&g_mu);
    printf("  one way, Alice -> Bob:  %8.0f messages/s  (%zu messages in "
           "%.2f s, first send to last MSG; target >= 5,000)\n",
           (double)n / secs, n, secs);
    printf("    simplex_agent_send: %.0f calls/s%s, slowest call %.1f ms\n",
           (double)n / (x.t_done - x.t_first),
           g_window ? " (paced by the window)" : "", x.send_max * 1e3);
    printf("    process CPU (both agents): %.2f s per 1,000 messages "
           "(%.0f us per message; reference agent 20.4 s PQ / 9.8 s no PQ; "
           "aim <= 0.25 s; crypto floor ~0.075 s)\n",
           cpus * 1000.0 / (double)n, cpus * 1e6 / (double)n);
    if (srv >= 0)
        printf("    server process CPU: %.2f s per 1,000 messages (not "
               "counted above)\n",
               srv * 1000.0 / (double)n);
    printf("    vs. the reference agent's 57 messages/s: %.1fx\n",
           (double)n / secs / 57.0);
    if (mwarn)
        printf("    note: %zu MWARN events so far (delivery delayed, e.g. "
               "queue quota)\n",
               mwarn);
}

static void phase_two_way(const conn_pair *p, size_t n)
{
    sender xa = {.s = &g_alice, .conn = p->a, .phase = 2, .n = n,
                 .peer = &g_bob, .window = g_window};
    sender xb = {.s = &g_bob, .conn = p->b, .phase = 2, .n = n,
                 .peer = &g_alice, .window = g_window};
    double c0, secs, cpus, first, last;

    rx_begin(&g_bob, 2, n, 0);
    rx_begin(&g_alice, 2, n, 0);
    c0 = cpu();
    if (pthread_create(&xa.th, NULL, send_main, &xa) != 0 ||
        pthread_create(&xb.th, NULL, send_main, &xb) != 0)
        die("pthread_create failed");
    pthread_join(xa.th, NULL);
    pthread_join(xb.th, NULL);
    check_failed();
    wait_counts(&g_bob.rx_got, n, &g_alice.rx_got, n, msg_stall(),
                "two-way: receiving");
    cpus = cpu() - c0;
    first = xa.t_first < xb.t_first ? xa.t_first : xb.t_first;
    pthread_mutex_lock(&g_mu);
    last = g_bob.rx_last > g_alice.rx_last ? g_bob.rx_last : g_alice.rx_last;
    pthread_mutex_unlock(&g_mu);
    secs = last - first;
    printf("  both ways at once:      %8.0f messages/s in total  (%zu each "
           "way in %.2f s)\n",
           (double)(2 * n) / secs, n, secs);
    printf("    process CPU: %.2f s per 1,000 messages\n",
           cpus * 1000.0 / (double)(2 * n));
}

static void phase_latency(const conn_pair *p, double rate, double seconds,
                          const char *note)
{
    static uint32_t phase = 10;
    size_t n = (size_t)(rate * seconds + 0.5), zero = 0, got;
    sender x = {.s = &g_alice, .conn = p->a, .phase = phase++, .n = n,
                .rate = rate, .peer = &g_bob, .window = g_window};
    double *lat, achieved;

    if (n < 1)
        n = x.n = 1;
    rx_begin(&g_bob, x.phase, n, 1);
    if (pthread_create(&x.th, NULL, send_main, &x) != 0)
        die("pthread_create failed");
    pthread_join(x.th, NULL);
    check_failed();
    wait_counts(&g_bob.rx_got, n, &zero, 0, msg_stall(),
                "latency: Bob receiving");
    achieved = (double)n / (x.t_done - x.t_first);
    lat = malloc(n * sizeof *lat);
    if (!lat)
        die("out of memory");
    pthread_mutex_lock(&g_mu);
    memcpy(lat, g_bob.rx_lat, n * sizeof *lat);
    got = g_bob.rx_got;
    pthread_mutex_unlock(&g_mu);
    qsort(lat, n, sizeof *lat, cmp_double);
    printf("  at %.0f messages/s for %.0f s (%zu messages of %d bytes, "
           "%zu received; send calls kept %.0f/s):\n",
           rate, seconds, n, MSG_BYTES, got, achieved);
    printf("    send -> MSG at Bob: p50 %.2f ms, p99 %.2f ms, max %.2f ms  "
           "(%s)\n",
           lat[n / 2] * 1e3, lat[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] *
                                 1e3,
           lat[n - 1] * 1e3, note);
    if (achieved < rate * 0.95 || lat[n - 1] > 1.0)
        printf("    (the agent did not keep up with %.0f messages/s: these "
               "latencies are mostly queueing; they count from the "
               "scheduled send time)\n",
               rate);
    free(lat);
}

/* ---- database size ---- */

typedef struct db_size {
    long long used;  /* (page_count - freelist_count) * page_size */
    long long file;  /* db file */
    long long wal;   /* -wal file */
} db_size;

static long long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : 0;
}

/* used pages from the agent itself (its database is opened exclusively);
 * file sizes from the file system */
static db_size measure_db(const side *s)
{
    db_size r = {-1, 0, 0};
    char wal[640];
    uint64_t used = 0;
    if (simplex_agent_storage_bytes(s->a, &used) == 0)
        r.used = (long long)used;
    snprintf(wal, sizeof wal, "%s-wal", s->db);
    r.file = file_size(s->db);
    r.wal = file_size(wal);
    return r;
}

/* ---- the phases of connections ---- */

static void phase_setup(conn_pair *pairs, size_t k)
{
    double *total = malloc(k * sizeof *total), *tc = malloc(k * sizeof *tc),
           *tj = malloc(k * sizeof *tj), *tconf = malloc(k * sizeof *tconf);
    if (!total || !tc || !tj || !tconf)
        die("out of memory");
    for (size_t i = 0; i < k; i++) {
        size_t a0, b0;
        double t0 = mono();
        con_counts(&a0, &b0);
        start_connection(&pairs[i], &tc[i], &tj[i]);
        wait_counts(&g_alice.n_con, a0 + 1, &g_bob.n_con, b0 + 1, STALL_S,
                    "connection setup");
        pthread_mutex_lock(&g_mu);
        total[i] = (g_alice.t_con > g_bob.t_con ? g_alice.t_con
                                                : g_bob.t_con) -
                   t0;
        tconf[i] = g_alice.t_conf - t0;
        pthread_mutex_unlock(&g_mu);
    }
    printf("  connection setup, create -> both CON (median of %zu): %.1f ms  "
           "(reference 71 ms without PQ; aim <= 15 ms)\n",
           k, median(total, k) * 1e3);
    printf("    of which create_connection %.1f ms, join_connection %.1f ms,"
           " CONF at Alice after %.1f ms (medians)\n",
           median(tc, k) * 1e3, median(tj, k) * 1e3, median(tconf, k) * 1e3);
    free(total);
    free(tc);
    free(tj);
    free(tconf);
}

#define SETUP_WINDOW 32 /* connections being set up at once */

static void phase_idle_connections(size_t m)
{
    long long rss0, rss1;
    db_size a0, b0, a1, b1;
    size_t ca0, cb0, done = 0;
    double t0, secs, last_report;
    conn_pair p;

    sleep_s(0.3);
    rss0 = rss_bytes();
    a0 = measure_db(&g_alice);
    b0 = measure_db(&g_bob);
    con_counts(&ca0, &cb0);
    t0 = last_report = mono();
    for (size_t i = 0; i < m; i++) {
        start_connection(&p, NULL, NULL);
        for (;;) {
            size_t ca, cb;
            con_counts(&ca, &cb);
            done = (ca - ca0) < (cb - cb0) ? ca - ca0 : cb - cb0;
            if (i + 1 - done < SETUP_WINDOW)
                break;
            /* until both sides have one more connection */
            wait_counts(&g_alice.n_con, ca0 + done + 1, &g_bob.n_con,
                        cb0 + done + 1, STALL_S, "creating connections");
        }
        if (mono() - last_report >= 2.0 || i + 1 == m) {
            fprintf(stderr, "  ... %zu of %zu connections created, %zu "
                            "connected (%.0f/s)\n",
                    i + 1, m, done, (double)done / (mono() - t0));
            last_report = mono();
        }
    }
    wait_counts(&g_alice.n_con, ca0 + m, &g_bob.n_con, cb0 + m, STALL_S,
                "creating connections");
    secs = mono() - t0;
    sleep_s(0.5); /* let the last handshake messages settle */
    check_failed();
    rss1 = rss_bytes();
    a1 = measure_db(&g_alice);
    b1 = measure_db(&g_bob);
    printf("  %zu connections created and connected in %.1f s (%.0f/s, "
           "%d at a time)\n",
           m, secs, (double)m / secs, SETUP_WINDOW);
    printf("  memory (process VmRSS, both agents): %.1f MB -> %.1f MB: "
           "%.1f KB per connection = %.1f KB per side  (target <= 16 KB; "
           "reference 339 KB just created)\n",
           (double)rss0 / 1048576.0, (double)rss1 / 1048576.0,
           (double)(rss1 - rss0) / 1024.0 / (double)m,
           (double)(rss1 - rss0) / 2048.0 / (double)m);
    printf("    (includes the growth of each database's SQLite page cache, "
           "up to about 2 MB each by default: with 1,000 connections that "
           "dominates; --connections 10000 shows the per-connection part)\n");
    if (a0.used >= 0 && a1.used >= 0 && b0.used >= 0 && b1.used >= 0)
        printf("  database per connection (used pages): Alice %.1f KB, Bob "
               "%.1f KB  (aim <= 8 KB; reference 10.5-14.6 KB)\n",
               (double)(a1.used - a0.used) / 1024.0 / (double)m,
               (double)(b1.used - b0.used) / 1024.0 / (double)m);
    printf("    files now: Alice %.1f MB + %.1f MB WAL, Bob %.1f MB + %.1f "
           "MB WAL\n",
           (double)a1.file / 1048576.0, (double)a1.wal / 1048576.0,
           (double)b1.file / 1048576.0, (double)b1.wal / 1048576.0);
}

static void phase_restart(const conn_pair *p0)
{
    simplex_buf list = {NULL, 0};
    size_t count = 0, zero = 0;
    double t0, t_close, t_open, t_sub;
    long long db_file, wal_file;
    char wal[640];
    int rc;

    t0 = mono();
    side_close(&g_bob);
    t_close = mono() - t0;
    snprintf(wal, sizeof wal, "%s-wal", g_bob.db);
    db_file = file_size(g_bob.db);
    wal_file = file_size(wal);
    t0 = mono();
    side_open(&g_bob, SIMPLEX_AGENT_NO_SUBSCRIBE);
    t_open = mono() - t0;
    rc = simplex_agent_list_connections(g_bob.a, &list, &count);
    simplex_buf_dispose(&list);
    check_call(rc, g_bob.a, "Bob", "simplex_agent_list_connections");
    t0 = mono();
    rc = simplex_agent_subscribe_all(g_bob.a);
    t_sub = mono() - t0;
    check_call(rc, g_bob.a, "Bob", "simplex_agent_subscribe_all");
    printf("  Bob closed in %.0f ms (database %.1f MB, WAL %.1f MB after "
           "close), reopened in %.0f ms\n",
           t_close * 1e3, (double)db_file / 1048576.0,
           (double)wal_file / 1048576.0, t_open * 1e3);
    printf("  subscribe_all, %zu stored connections: %.0f ms  (%.0f per "
           "second; target 10,000 in <= 3 s, aim <= 1 s; reference 1,000 "
           "in 232 ms)\n",
           count, t_sub * 1e3, (double)count / t_sub);
    /* one message each way proves the subscriptions work */
    {
        sender x = {.s = &g_alice, .conn = p0->a, .phase = 4, .n = 1,
                    .peer = &g_bob};
        rx_begin(&g_bob, 4, 1, 0);
        if (pthread_create(&x.th, NULL, send_main, &x) != 0)
            die("pthread_create failed");
        pthread_join(x.th, NULL);
        wait_counts(&g_bob.rx_got, 1, &zero, 0, STALL_S,
                    "after the restart: Bob receiving");
        pthread_mutex_lock(&g_mu);
        t0 = g_bob.rx_last - x.t_first;
        pthread_mutex_unlock(&g_mu);
        printf("    a message after the restart arrived in %.1f ms\n",
               t0 * 1e3);
    }
}

/* ---- library size ---- */

static int run_strip(const char *path)
{
    int status = 0;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2);
        execlp("strip", "strip", path, (char *)NULL);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int copy_file(const char *from, const char *to)
{
    char buf[65536];
    size_t n;
    int ok = 1;
    FILE *in = fopen(from, "rb"), *out;
    if (!in)
        return -1;
    out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return -1;
    }
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            ok = 0;
    if (ferror(in))
        ok = 0;
    fclose(in);
    if (fclose(out) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

static void phase_lib_size(const char *lib_opt, const char *dir)
{
    char cand[3][PATH_MAX + 64], real[PATH_MAX], copy[600];
    const char *found = NULL;
    size_t nc = 0;

    if (lib_opt)
        snprintf(cand[nc++], sizeof cand[0], "%s", lib_opt);
    else {
        /* make O=... LIBOUT=$(O)/lib, then the default O=build LIBOUT=lib */
        snprintf(cand[nc++], sizeof cand[0], "%s/../lib/libsimplex.so", dir);
        snprintf(cand[nc++], sizeof cand[0], "%s/../../lib/libsimplex.so",
                 dir);
    }
    for (size_t i = 0; i < nc && !found; i++)
        if (realpath(cand[i], real) && file_size(real) > 0)
            found = real;
    if (!found) {
        printf("  shared library: not found (tried %s%s%s); skipped, pass "
               "--lib PATH\n",
               cand[0], nc > 1 ? " and " : "", nc > 1 ? cand[1] : "");
        return;
    }
    snprintf(copy, sizeof copy, "%s/libsimplex.so.stripped", g_dir);
    if (copy_file(found, copy) != 0 || run_strip(copy) != 0) {
        printf("  shared library %s: %lld bytes unstripped; strip failed or "
               "is missing, stripped size skipped\n",
               found, file_size(found));
        return;
    }
    printf("  shared library %s: %lld bytes stripped (%.0f KB; %lld "
           "unstripped; target <= 1 MB; libsodium, OpenSSL and SQLite are "
           "shared libraries outside it)\n",
           found, file_size(copy), (double)file_size(copy) / 1024.0,
           file_size(found));
    unlink(copy);
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr,
            "usage: agent [--server smp://...] [--messages N] "
            "[--connections M] [--rate R] [--seconds S] [--setup K] "
            "[--window W] [--relaxed] [--lib PATH]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    char addr[512], dir[PATH_MAX];
    const char *lib = NULL;
    size_t n_msgs = 2000, n_conns = 1000, n_setup = 11;
    double rate = 500, seconds = 5;
    conn_pair *setup;
    struct sigaction sa;
    int rc;

    addr[0] = '\0';
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
            snprintf(addr, sizeof addr, "%s", argv[++i]);
        else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
            n_msgs = (size_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--connections") == 0 && i + 1 < argc)
            n_conns = (size_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc)
            rate = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "--setup") == 0 && i + 1 < argc)
            n_setup = (size_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--relaxed") == 0)
            g_relaxed = 1;
        else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc)
            g_window = (size_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--lib") == 0 && i + 1 < argc)
            lib = argv[++i];
        else
            usage();
    }
    if (n_msgs < 10)
        n_msgs = 10;
    if (n_setup < 1)
        n_setup = 1;
    if (n_conns < 1)
        n_conns = 1;
    if (rate < 1)
        rate = 1;
    if (seconds < 0.1)
        seconds = 0.1;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = simplex_global_init(NULL);
    if (rc != SIMPLEX_OK)
        die("simplex_global_init: %s", simplex_strerror(rc));
    exe_dir(argv[0], dir, sizeof dir);
    if (!mkdtemp(g_dir))
        die("mkdtemp: %s", strerror(errno));
    g_dir_made = 1;
    snprintf(g_alice.db, sizeof g_alice.db, "%s/alice.db", g_dir);
    snprintf(g_bob.db, sizeof g_bob.db, "%s/bob.db", g_dir);
    if (!addr[0])
        start_server(dir, addr, sizeof addr);
    g_server = addr;

    printf("libsimplex %s agent benchmark: Alice and Bob in one process, "
           "server %s%s\n",
           simplex_version(), addr,
           server_pid > 0 ? " (loopback smp-test-server)" : "");
    printf("  %ld CPUs online; durability: SQLite %s, WAL + "
           "synchronous=%s, one database per agent in %s\n",
           sysconf(_SC_NPROCESSORS_ONLN), sqlite3_libversion(),
           g_relaxed ? "NORMAL (--relaxed: NOT durable against power loss)"
                     : "FULL",
           g_dir);
    {
        double la[3] = {0, 0, 0};
        FILE *f = fopen("/proc/loadavg", "r");
        if (f) {
            if (fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3)
                la[0] = la[1] = la[2] = 0;
            fclose(f);
        }
        printf("  load average at start: %.2f %.2f %.2f (other work on "
               "the machine skews every figure)\n",
               la[0], la[1], la[2]);
    }
    printf("  crypto floor (PERFORMANCE.md, standard machine): sender ~30 "
           "us + recipient ~45 us per 16 KB message\n");

    side_open(&g_alice, 0);
    side_open(&g_bob, 0);

    /* 1. setup: the first connection also warms the server sessions */
    setup = calloc(n_setup + 1, sizeof *setup);
    if (!setup)
        die("out of memory");
    printf("1. connection setup\n");
    phase_setup(setup, 1);
    phase_setup(setup + 1, n_setup);
    fflush(stdout);

    /* 4. before the message phases, so that freed message buffers do not
     * hide the memory the connections take */
    printf("4. idle connections (%zu%s)\n", n_conns,
           n_conns < 10000 ? "; --connections 10000 for the 10,000 figure"
                           : "");
    phase_idle_connections(n_conns);
    fflush(stdout);

    printf("2. throughput, %zu messages of %d bytes (largest body; the "
           "reference's largest with PQ is 13,573), %s\n",
           n_msgs, MSG_BYTES, g_relaxed ? "relaxed durability" : "durable");
    if (g_window)
        printf("  (senders keep at most %zu messages in flight, below the "
               "server's queue quota of 128; --window 0 to fill it)\n",
               g_window);
    phase_one_way(&setup[0], n_msgs);
    phase_two_way(&setup[0], n_msgs);
    fflush(stdout);

    printf("3. latency\n");
    phase_latency(&setup[0], rate, seconds,
                  "target p99 <= 20 ms; reference: cannot sustain 500/s");
    if (rate != 50)
        phase_latency(&setup[0], 50, seconds,
                      "for comparison: reference p50 34 ms, p99 55 ms; aim "
                      "p99 <= 5 ms");
    fflush(stdout);

    printf("5. restart (Bob, %zu + %zu connections, opened with "
           "SIMPLEX_AGENT_NO_SUBSCRIBE)\n",
           n_conns, n_setup + 1);
    phase_restart(&setup[0]);
    fflush(stdout);

    printf("6. library size\n");
    phase_lib_size(lib, dir);

    side_close(&g_alice);
    side_close(&g_bob);
    free(setup);
    free(g_alice.rx_seen);
    free(g_alice.rx_lat);
    free(g_bob.rx_seen);
    free(g_bob.rx_lat);
    stop_server();
    remove_dir();
    simplex_global_cleanup();
    return 0;
}
