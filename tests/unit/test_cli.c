/*
 * simplex-cli's agent mode as separate processes: every step runs
 * simplex-cli --json against smp-test-server processes started on free
 * ports in a temporary directory, and the tests read the JSON lines the
 * CLI prints through a pipe.
 *
 * The binaries are <directory of this test binary>/../bin/simplex-cli and
 * .../smp-test-server ($SMP_TEST_SERVER when set). Every wait is bounded;
 * when a test fails, the teardown kills what it started and prints the
 * tail of each agent's stderr (the CLI runs with --verbose).
 */
#define _DEFAULT_SOURCE 1

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "server.h"
#include "simplex/agent.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* bounds on every wait (milliseconds) */
#define T_STEP 20000  /* one CLI command or one expected event */
#define T_QUIET 2500  /* "nothing more arrives" checks */
#define LISTEN_MAX "90" /* --timeout of background listens (seconds) */

/* ---- a minimal JSON reader for the CLI's flat objects ---- */

typedef struct jfield {
    char *key;
    char *val; /* strings decoded to UTF-8; numbers and literals as text */
    size_t val_len;
    int is_str;
} jfield;

typedef struct jobj {
    jfield f[40];
    int n;
    char *raw;
} jobj;

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void put_utf8(char *out, size_t *o, unsigned cp)
{
    if (cp < 0x80) {
        out[(*o)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*o)++] = (char)(0xC0 | (cp >> 6));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xE0 | (cp >> 12));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*o)++] = (char)(0xF0 | (cp >> 18));
        out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static int read_hex4(const char **p, unsigned *cp)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval((unsigned char)(*p)[i]);
        if (h < 0)
            return -1;
        v = v * 16 + (unsigned)h;
    }
    *p += 4;
    *cp = v;
    return 0;
}

/* A JSON string at *p (after the quote); a raw control character or a bad
 * escape is an error, as the CLI must never print one. */
static char *parse_jstr(const char **p, size_t *len)
{
    const char *s = *p;
    char *out = malloc(strlen(s) * 4 + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (;;) {
        unsigned char c = (unsigned char)*s;
        if (c == 0 || c < 0x20)
            goto bad;
        if (c == '"') {
            s++;
            break;
        }
        if (c != '\\') {
            out[o++] = (char)c;
            s++;
            continue;
        }
        s++;
        switch (*s++) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '/': out[o++] = '/'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (read_hex4(&s, &cp) != 0)
                goto bad;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (s[0] != '\\' || s[1] != 'u')
                    goto bad;
                s += 2;
                if (read_hex4(&s, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                    goto bad;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                goto bad;
            }
            put_utf8(out, &o, cp);
            break;
        }
        default:
            goto bad;
        }
    }
    out[o] = 0;
    *len = o;
    *p = s;
    return out;
bad:
    free(out);
    return NULL;
}

static void jobj_free(jobj *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n; i++) {
        free(o->f[i].key);
        free(o->f[i].val);
    }
    free(o->raw);
    free(o);
}

/* Parses one line: a flat object of strings, numbers, true/false/null. */
static jobj *jparse(const char *line)
{
    jobj *o = calloc(1, sizeof *o);
    const char *p = line;
    size_t klen;
    if (!o)
        return NULL;
    o->raw = strdup(line);
    while (*p == ' ')
        p++;
    if (*p++ != '{')
        goto bad;
    while (*p == ' ')
        p++;
    if (*p == '}')
        goto end;
    for (;;) {
        jfield *f;
        if (o->n >= (int)(sizeof o->f / sizeof o->f[0]))
            goto bad;
        f = &o->f[o->n];
        while (*p == ' ')
            p++;
        if (*p++ != '"' || !(f->key = parse_jstr(&p, &klen)))
            goto bad;
        o->n++;
        while (*p == ' ')
            p++;
        if (*p++ != ':')
            goto bad;
        while (*p == ' ')
            p++;
        if (*p == '"') {
            p++;
            if (!(f->val = parse_jstr(&p, &f->val_len)))
                goto bad;
            f->is_str = 1;
        } else {
            const char *st = p;
            while (*p && *p != ',' && *p != '}' && *p != ' ')
                p++;
            if (p == st)
                goto bad;
            f->val = strndup(st, (size_t)(p - st));
            f->val_len = (size_t)(p - st);
            if (strcmp(f->val, "true") && strcmp(f->val, "false") &&
                strcmp(f->val, "null")) {
                char *e;
                (void)strtod(f->val, &e);
                if (*e)
                    goto bad;
            }
        }
        while (*p == ' ')
            p++;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '}')
            break;
        goto bad;
    }
end:
    p++;
    if (*p)
        goto bad;
    return o;
bad:
    jobj_free(o);
    return NULL;
}

static const jfield *jfind(const jobj *o, const char *key)
{
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->f[i].key, key) == 0)
            return &o->f[i];
    return NULL;
}

/* A string field (NULL when missing or not a string). */
static const char *jget(const jobj *o, const char *key)
{
    const jfield *f = jfind(o, key);
    return f && f->is_str ? f->val : NULL;
}

static const char *jstr_req(const jobj *o, const char *key)
{
    const char *v = jget(o, key);
    if (!v)
        fail_msg("no string \"%s\" in %s", key, o->raw);
    return v;
}

static long long jnum(const jobj *o, const char *key)
{
    const jfield *f = jfind(o, key);
    char *e;
    long long v;
    if (!f || f->is_str)
        fail_msg("no number \"%s\" in %s", key, o->raw);
    v = strtoll(f->val, &e, 10);
    if (*e)
        fail_msg("\"%s\" is not an integer in %s", key, o->raw);
    return v;
}

static int jtrue(const jobj *o, const char *key)
{
    const jfield *f = jfind(o, key);
    return f && !f->is_str && strcmp(f->val, "true") == 0;
}

static int is_event(const jobj *o, const char *ev, const char *conn)
{
    const char *e = jget(o, "event"), *c = jget(o, "conn");
    return e && strcmp(e, ev) == 0 && (!conn || (c && strcmp(c, conn) == 0));
}

/* ---- child processes ---- */

#define MAX_LINES 2048

typedef struct proc {
    pid_t pid;
    int fd;
    int eof;
    int raw; /* lines are not JSON (--help) */
    int status; /* exit status, 128 + signal, -1 while running */
    char what[600];
    char buf[1 << 18];
    size_t len;
    jobj *lines[MAX_LINES];
    int nlines, cursor;
} proc;

#define MAX_PROCS 128
static proc *g_procs[MAX_PROCS];
static int g_nprocs;
static char g_tmp[256];        /* this test's directory */
static tsrv g_srv[2];          /* this test's servers */
static int g_ok;               /* set when the test body finished */
static char g_cli[PATH_MAX];

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Starts argv (argv[0] is the program) with stdout into a pipe and stderr
 * appended to <test dir>/<errname>.err; SIMPLEX_SERVER is env_server or
 * unset. */
static const char *g_stdin; /* stdin of the next spawn (a file), or none */

static proc *spawn(const char *const *argv, const char *env_server,
                   const char *errname)
{
    proc *p = calloc(1, sizeof *p);
    char errpath[PATH_MAX + 64];
    int fds[2], efd;
    size_t off = 0;

    assert_non_null(p);
    assert_true(g_nprocs < MAX_PROCS);
    for (int i = 1; argv[i] && off + 2 < sizeof p->what; i++) {
        int w = snprintf(p->what + off, sizeof p->what - off, "%s%s",
                         i > 1 ? " " : "", argv[i]);
        if (w < 0)
            break;
        off += (size_t)w;
        if (off >= sizeof p->what)
            off = sizeof p->what - 1;
    }
    snprintf(errpath, sizeof errpath, "%s/%s.err", g_tmp, errname);
    efd = open(errpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    assert_true(efd >= 0);
    assert_int_equal(pipe(fds), 0);
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    fflush(stdout);
    fflush(stderr);
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        dup2(fds[1], 1);
        dup2(efd, 2);
        if (g_stdin) {
            int in = open(g_stdin, O_RDONLY);
            if (in < 0)
                _exit(126);
            dup2(in, 0);
        }
        if (env_server)
            setenv("SIMPLEX_SERVER", env_server, 1);
        else
            unsetenv("SIMPLEX_SERVER");
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], (char *const *)(void *)argv);
        _exit(127);
    }
    g_stdin = NULL;
    close(fds[1]);
    close(efd);
    p->fd = fds[0];
    p->status = -1;
    g_procs[g_nprocs++] = p;
    return p;
}

/* Dumps what p printed (for failure messages). */
static void proc_dump(const proc *p)
{
    int from = p->nlines > 40 ? p->nlines - 40 : 0;
    fprintf(stderr, "--- output of simplex-cli %s (%d lines):\n", p->what,
            p->nlines);
    for (int i = from; i < p->nlines; i++)
        fprintf(stderr, "  %s\n", p->lines[i]->raw);
}

/* Reads what is available (waiting up to wait_ms); parses complete lines. */
static void proc_pump(proc *p, int wait_ms)
{
    struct pollfd pf;
    ssize_t n;
    char *nl;

    if (p->eof)
        return;
    pf.fd = p->fd;
    pf.events = POLLIN;
    pf.revents = 0;
    if (poll(&pf, 1, wait_ms < 0 ? 0 : wait_ms) <= 0)
        return;
    if (p->len >= sizeof p->buf - 1) {
        proc_dump(p);
        fail_msg("line too long from %s", p->what);
    }
    n = read(p->fd, p->buf + p->len, sizeof p->buf - 1 - p->len);
    if (n < 0 && errno == EINTR)
        return;
    if (n <= 0) {
        p->eof = 1;
        close(p->fd);
        p->fd = -1;
        return;
    }
    p->len += (size_t)n;
    p->buf[p->len] = 0;
    while ((nl = memchr(p->buf, '\n', p->len)) != NULL) {
        jobj *o;
        *nl = 0;
        if (p->raw) {
            o = calloc(1, sizeof *o);
            assert_non_null(o);
            o->raw = strdup(p->buf);
        } else {
            o = jparse(p->buf);
        }
        if (!o) {
            proc_dump(p);
            fail_msg("simplex-cli %s printed a line that is not a JSON "
                     "object: %s",
                     p->what, p->buf);
        }
        if (p->nlines >= MAX_LINES)
            fail_msg("too many lines from %s", p->what);
        p->lines[p->nlines++] = o;
        p->len -= (size_t)(nl + 1 - p->buf);
        memmove(p->buf, nl + 1, p->len);
    }
}

/* The next line not yet returned, waiting up to timeout_ms; NULL at the
 * end of the output or on timeout. */
static jobj *proc_next(proc *p, int timeout_ms)
{
    double deadline = now_ms() + timeout_ms;
    for (;;) {
        double left;
        if (p->cursor < p->nlines)
            return p->lines[p->cursor++];
        if (p->eof)
            return NULL;
        left = deadline - now_ms();
        if (left <= 0)
            return NULL;
        proc_pump(p, (int)left + 1);
    }
}

/* Reads lines until the event ev (on conn when conn is non-NULL). */
static jobj *proc_expect(proc *p, const char *ev, const char *conn,
                         int timeout_ms)
{
    double deadline = now_ms() + timeout_ms;
    for (;;) {
        double left = deadline - now_ms();
        jobj *o = proc_next(p, left > 0 ? (int)left : 0);
        if (!o) {
            proc_dump(p);
            fail_msg("simplex-cli %s: no %s%s%s within %d ms (%s)", p->what,
                     ev, conn ? " on " : "", conn ? conn : "", timeout_ms,
                     p->eof ? "it exited" : "still running");
        }
        if (is_event(o, ev, conn))
            return o;
    }
}

/* Waits for p to exit (reading all it prints); its exit status (128 +
 * signal when killed). Kills it and fails after timeout_ms. */
static int proc_wait(proc *p, int timeout_ms)
{
    double deadline = now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r;
        if (p->status >= 0)
            return p->status;
        proc_pump(p, p->eof ? 0 : 20);
        r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            while (!p->eof) /* the rest of its output */
                proc_pump(p, 1000);
            p->status = WIFEXITED(st) ? WEXITSTATUS(st)
                                      : 128 + WTERMSIG(st);
            p->pid = -1;
            return p->status;
        }
        if (now_ms() > deadline) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
            p->pid = -1;
            p->status = 137;
            proc_dump(p);
            fail_msg("simplex-cli %s did not exit within %d ms", p->what,
                     timeout_ms);
        }
        if (p->eof)
            sleep_ms(10);
    }
}

/* Sends sig and waits for the exit; its status. */
static int proc_signal(proc *p, int sig)
{
    if (p->pid > 0)
        kill(p->pid, sig);
    return proc_wait(p, T_STEP);
}

/* Stops a background listen with SIGTERM: it must exit 0. */
static void proc_stop(proc *p)
{
    int st = proc_signal(p, SIGTERM);
    if (st != 0) {
        proc_dump(p);
        fail_msg("simplex-cli %s exited with %d on SIGTERM", p->what, st);
    }
}

static int proc_count(const proc *p, const char *ev, const char *conn)
{
    int n = 0;
    for (int i = 0; i < p->nlines; i++)
        n += is_event(p->lines[i], ev, conn);
    return n;
}

/* The first line with "error" (an error report), or NULL. */
static const jobj *proc_error(const proc *p)
{
    for (int i = 0; i < p->nlines; i++)
        if (jget(p->lines[i], "error") && !jget(p->lines[i], "event"))
            return p->lines[i];
    return NULL;
}

/* The code of p's error report (which must be there). */
static long long err_code(const proc *p)
{
    const jobj *e = proc_error(p);
    if (!e) {
        proc_dump(p);
        fail_msg("simplex-cli %s: no error report", p->what);
    }
    return jnum(e, "code");
}

/* ---- agents ---- */

typedef struct agent {
    const char *name;
    char db[PATH_MAX];
    const char *srv[2];
    int nsrv;
    int no_sender_secure;
} agent;

static void agent_init(agent *a, const char *name, const tsrv *s)
{
    memset(a, 0, sizeof *a);
    a->name = name;
    snprintf(a->db, sizeof a->db, "%s/%s.db", g_tmp, name);
    a->srv[0] = s->addr;
    a->nsrv = 1;
}

/* simplex-cli --json --verbose --retry-ms 200 [--no-sender-secure]
 * --db DB --server S... ARGS (NULL-terminated) */
static proc *cli_startv(const agent *a, va_list ap)
{
    const char *argv[64];
    int n = 0;
    const char *s;
    argv[n++] = g_cli;
    argv[n++] = "--json";
    argv[n++] = "--verbose";
    argv[n++] = "--retry-ms";
    argv[n++] = "200";
    if (a->no_sender_secure)
        argv[n++] = "--no-sender-secure";
    argv[n++] = "--db";
    argv[n++] = a->db;
    for (int i = 0; i < a->nsrv; i++) {
        argv[n++] = "--server";
        argv[n++] = a->srv[i];
    }
    while ((s = va_arg(ap, const char *)) != NULL && n < 62)
        argv[n++] = s;
    argv[n] = NULL;
    return spawn(argv, NULL, a->name);
}

static proc *cli_start(const agent *a, ...)
{
    va_list ap;
    proc *p;
    va_start(ap, a);
    p = cli_startv(a, ap);
    va_end(ap);
    return p;
}

/* Runs a command to completion; its process (status in ->status). */
static proc *cli_run(const agent *a, ...)
{
    va_list ap;
    proc *p;
    va_start(ap, a);
    p = cli_startv(a, ap);
    va_end(ap);
    proc_wait(p, T_STEP);
    return p;
}

/* Runs a command that must succeed (exit 0). */
static proc *cli_ok(const agent *a, ...)
{
    va_list ap;
    proc *p;
    va_start(ap, a);
    p = cli_startv(a, ap);
    va_end(ap);
    if (proc_wait(p, T_STEP) != 0) {
        proc_dump(p);
        fail_msg("%s: simplex-cli %s exited with %d", a->name, p->what,
                 p->status);
    }
    return p;
}

/* create: the connection id into conn, the link into link. */
static void cli_create(const agent *a, char *conn, size_t conn_cap,
                       char *link, size_t link_cap)
{
    proc *p = cli_ok(a, "create", NULL);
    jobj *o = proc_expect(p, "created", NULL, 0);
    const char *c = jstr_req(o, "conn"), *l = jstr_req(o, "link");
    assert_true(strlen(c) > 0 && strlen(c) < 32);
    assert_true(strncmp(l, "simplex:/invitation#/?", 22) == 0 ||
                strncmp(l, "https://", 8) == 0);
    assert_true(strlen(l) < link_cap && strlen(c) < conn_cap);
    strcpy(conn, c);
    strcpy(link, l);
}

static void cli_join(const agent *a, const char *link, const char *info,
                     char *conn, size_t cap)
{
    proc *p = cli_ok(a, "join", link, "--info", info, NULL);
    jobj *o = proc_expect(p, "joined", NULL, 0);
    const char *c = jstr_req(o, "conn");
    assert_true(strlen(c) > 0 && strlen(c) < cap);
    strcpy(conn, c);
}

/* send --wait-sent: stored, then SENT for the same id; the id. */
static long long cli_send(const agent *a, const char *conn, const char *text)
{
    proc *p = cli_ok(a, "send", conn, text, "--wait-sent", "--timeout", "20",
                     NULL);
    jobj *st = proc_expect(p, "stored", conn, 0);
    long long id = jnum(st, "msg_id");
    jobj *sent = proc_expect(p, "SENT", conn, 0);
    assert_int_equal(jnum(sent, "msg_id"), id);
    assert_true(id > 0);
    return id;
}

static const char *conn_status(const agent *a, const char *conn)
{
    proc *p = cli_ok(a, "connections", NULL);
    for (int i = 0; i < p->nlines; i++)
        if (is_event(p->lines[i], "connection", conn))
            return jstr_req(p->lines[i], "status");
    return NULL;
}

/* Background listen with a safety --timeout. */
static proc *listen_bg(const agent *a, int accept, const char *info)
{
    if (accept)
        return cli_start(a, "listen", "--accept", "--info", info,
                         "--timeout", LISTEN_MAX, NULL);
    return cli_start(a, "listen", "--timeout", LISTEN_MAX, NULL);
}

/* The handshake: a creates, b joins, both listen until CON. */
static void connect_pair(const agent *a, const agent *b, char *ca, char *cb)
{
    char link[4096];
    char ainfo[64], binfo[64];
    proc *la, *lb;
    jobj *o;

    snprintf(ainfo, sizeof ainfo, "I am %s", a->name);
    snprintf(binfo, sizeof binfo, "I am %s", b->name);
    cli_create(a, ca, 32, link, sizeof link);
    assert_string_equal(conn_status(a, ca), "new");
    cli_join(b, link, binfo, cb, 32);
    assert_string_equal(conn_status(b, cb), "joined");

    lb = listen_bg(b, 0, NULL);
    la = listen_bg(a, 1, ainfo);
    o = proc_expect(la, "CONF", ca, T_STEP);
    assert_string_equal(jstr_req(o, "info"), binfo);
    assert_true(strlen(jstr_req(o, "conf_id")) > 0);
    proc_expect(la, "allowed", ca, T_STEP);
    o = proc_expect(lb, "INFO", cb, T_STEP);
    assert_string_equal(jstr_req(o, "info"), ainfo);
    proc_expect(lb, "CON", cb, T_STEP);
    proc_expect(la, "CON", ca, T_STEP);
    proc_stop(la);
    proc_stop(lb);
    assert_int_equal(proc_count(la, "CONF", NULL), 1);
    assert_int_equal(proc_count(lb, "INFO", NULL), 1);
    assert_string_equal(conn_status(a, ca), "ready");
    assert_string_equal(conn_status(b, cb), "ready");
}

/* The handshake with the confirmation allowed by a separate command:
 * a's listen (without --accept) shows CONF and stops, then
 * `accept CONN CONF_ID --info ...`, then both listen until CON. */
static void connect_pair_manual(const agent *a, const agent *b, char *ca,
                                char *cb)
{
    char link[4096], conf[64];
    proc *la, *lb, *p;
    jobj *o;

    cli_create(a, ca, 32, link, sizeof link);
    cli_join(b, link, "joiner", cb, 32);
    lb = listen_bg(b, 0, NULL);
    la = listen_bg(a, 0, NULL);
    o = proc_expect(la, "CONF", ca, T_STEP);
    assert_string_equal(jstr_req(o, "info"), "joiner");
    assert_true(strlen(jstr_req(o, "conf_id")) < sizeof conf);
    strcpy(conf, jstr_req(o, "conf_id"));
    proc_stop(la);
    assert_int_equal(proc_count(la, "allowed", NULL), 0);
    assert_int_equal(proc_count(la, "CON", NULL), 0);
    assert_string_equal(conn_status(a, ca), "confirmed");
    assert_int_equal(proc_count(lb, "INFO", NULL), 0);

    p = cli_ok(a, "accept", ca, conf, "--info", "creator", NULL);
    proc_expect(p, "allowed", ca, 0);
    assert_string_equal(conn_status(a, ca), "allowed");
    /* a second allow of the same confirmation fails */
    p = cli_run(a, "allow", ca, conf, NULL);
    assert_int_equal(p->status, 1);
    assert_non_null(proc_error(p));

    la = listen_bg(a, 0, NULL);
    o = proc_expect(lb, "INFO", cb, T_STEP);
    assert_string_equal(jstr_req(o, "info"), "creator");
    proc_expect(lb, "CON", cb, T_STEP);
    proc_expect(la, "CON", ca, T_STEP);
    proc_stop(la);
    proc_stop(lb);
    assert_int_equal(proc_count(la, "CONF", NULL), 0);
    assert_string_equal(conn_status(a, ca), "ready");
    assert_string_equal(conn_status(b, cb), "ready");
}

/* listen --count n: exactly n MSG on conn with the texts in order, none
 * redelivered, integrity ok; returns the process. */
static proc *receive_exactly(const agent *a, const char *conn,
                             const char *const *texts, int n)
{
    char count[16];
    proc *p;
    int seen = 0;
    long long last = 0;
    snprintf(count, sizeof count, "%d", n);
    p = cli_run(a, "listen", "--count", count, "--timeout", "30", NULL);
    if (p->status != 0) {
        proc_dump(p);
        fail_msg("%s: listen --count %d exited with %d", a->name, n,
                 p->status);
    }
    for (int i = 0; i < p->nlines; i++) {
        const jobj *o = p->lines[i];
        if (!is_event(o, "MSG", NULL))
            continue;
        assert_string_equal(jstr_req(o, "conn"), conn);
        assert_true(seen < n);
        assert_string_equal(jstr_req(o, "text"), texts[seen]);
        assert_false(jtrue(o, "redelivered"));
        assert_int_equal(jnum(o, "flags") & 1, 0);
        assert_string_equal(jstr_req(o, "integrity"), "ok");
        assert_true(jnum(o, "msg_id") > last);
        last = jnum(o, "msg_id");
        seen++;
    }
    assert_int_equal(seen, n);
    return p;
}

/* A listen of T_QUIET ms receives no message. */
static void receive_nothing(const agent *a)
{
    proc *p = cli_run(a, "listen", "--timeout", "3", NULL);
    assert_int_equal(p->status, 0);
    if (proc_count(p, "MSG", NULL) != 0) {
        proc_dump(p);
        fail_msg("%s received a message it should not have", a->name);
    }
}

/* Waits in a background listen for RCVD (receipt ok) for each id, looking
 * at everything it printed so far: each exactly once. */
static void expect_receipts(proc *l, const char *conn, const long long *ids,
                            int n)
{
    double deadline = now_ms() + T_STEP;
    assert_true(n <= 64);
    for (;;) {
        int got[64] = {0}, have = 0;
        for (int j = 0; j < l->nlines; j++) {
            const jobj *o = l->lines[j];
            if (!is_event(o, "RCVD", conn))
                continue;
            for (int i = 0; i < n; i++) {
                if (ids[i] != jnum(o, "msg_id"))
                    continue;
                if (got[i]) {
                    proc_dump(l);
                    fail_msg("receipt for %lld twice", ids[i]);
                }
                got[i] = 1;
                have++;
                assert_string_equal(jstr_req(o, "receipt"), "ok");
                assert_true((jnum(o, "flags") & 4) != 0);
            }
        }
        if (have == n)
            return;
        if (now_ms() > deadline || l->eof) {
            proc_dump(l);
            fail_msg("only %d of %d receipts (RCVD) on %s", have, n, conn);
        }
        proc_pump(l, 100);
    }
}

/* ---- fixtures ---- */

static void tmp_rm(void)
{
    char cmd[PATH_MAX + 32];
    if (!g_tmp[0])
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_tmp);
    g_tmp[0] = 0;
}

static int setup(void **state)
{
    (void)state;
    g_ok = 0;
    g_nprocs = 0;
    g_srv[0].pid = g_srv[1].pid = -1;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/simplex-cli-test-XXXXXX");
    if (!mkdtemp(g_tmp))
        return -1;
    if (tsrv_bin_path(g_cli, sizeof g_cli, "simplex-cli") != 0 ||
        access(g_cli, X_OK) != 0)
        return -1;
    return 0;
}

/* Prints the tail of each agent's stderr (after a failure). */
static void dump_stderr(void)
{
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof cmd,
             "for f in '%s'/*.err; do [ -f \"$f\" ] || continue; "
             "echo \"--- tail of $f\" >&2; tail -n 30 \"$f\" >&2; done",
             g_tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "(no stderr files)\n");
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < g_nprocs; i++) {
        proc *p = g_procs[i];
        if (p->pid > 0) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
        }
        if (p->fd >= 0 && !p->eof)
            close(p->fd);
        for (int j = 0; j < p->nlines; j++)
            jobj_free(p->lines[j]);
        free(p);
    }
    g_nprocs = 0;
    for (int i = 0; i < 2; i++) {
        if (g_srv[i].pid > 0) {
            tsrv_signal(&g_srv[i], SIGKILL);
            waitpid(g_srv[i].pid, NULL, 0);
            g_srv[i].pid = -1;
        }
    }
    if (!g_ok)
        dump_stderr();
    tmp_rm();
    return 0;
}

/* Starts server i with its own directory (and store log when keep). */
static void server_up(int i, int port, int keep)
{
    char dir[PATH_MAX + 16], log[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/srv%d", g_tmp, i);
    mkdir(dir, 0700);
    snprintf(log, sizeof log, "%s/store.log", dir);
    if (tsrv_start(&g_srv[i], port, dir, keep ? log : NULL, NULL) != 0)
        fail_msg("smp-test-server did not start");
}

/* ---- tests ---- */

/* Usage errors and the not-implemented commands: exit 2, a JSON error. */
static void test_usage(void **state)
{
    char db[PATH_MAX + 16], demo[PATH_MAX + 32];
    (void)state;
    snprintf(db, sizeof db, "%s/u.db", g_tmp);
    {
        const char *argv[] = {g_cli, NULL};
        proc *p = spawn(argv, NULL, "usage");
        assert_int_equal(proc_wait(p, T_STEP), 2);
    }
    {
        const char *argv[] = {g_cli, "--help", NULL};
        proc *p = spawn(argv, NULL, "usage");
        int found = 0;
        p->raw = 1;
        assert_int_equal(proc_wait(p, T_STEP), 0);
        for (int i = 0; i < p->nlines; i++)
            found |= strstr(p->lines[i]->raw, "Exit status") != NULL;
        assert_true(found);
    }
    {   /* agent commands need the database */
        const char *argv[] = {g_cli, "--json", "listen", NULL};
        proc *p = spawn(argv, NULL, "usage");
        const jobj *e;
        assert_int_equal(proc_wait(p, T_STEP), 2);
        e = proc_error(p);
        assert_non_null(e);
        assert_non_null(strstr(jstr_req(e, "message"), "--db"));
    }
    {   /* address needs a subcommand; accept and reject an id */
        static const char *const bad[][4] = {
            {"address", NULL, NULL, NULL},    {"address", "frob", NULL, NULL},
            {"address", "create", "x", NULL}, {"address", "show", "a", "b"},
            {"accept", NULL, NULL, NULL},     {"accept", "a", "b", "c"},
            {"accept", "--info", "x", NULL},  {"reject", NULL, NULL, NULL},
            {"reject", "a", "b", NULL},       {"link", NULL, NULL, NULL}};
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            const char *argv[] = {g_cli,     "--json",  "--db",    db,
                                  bad[k][0], bad[k][1], bad[k][2], bad[k][3],
                                  NULL};
            proc *p = spawn(argv, NULL, "usage");
            if (proc_wait(p, T_STEP) != 2) {
                proc_dump(p);
                fail_msg("simplex-cli %s: exit %d, expected 2", p->what,
                         p->status);
            }
            assert_non_null(proc_error(p));
        }
    }
    {
        const char *argv[] = {g_cli, "--json", "--db", db, "frobnicate",
                              NULL};
        proc *p = spawn(argv, NULL, "usage");
        assert_int_equal(proc_wait(p, T_STEP), 2);
        assert_non_null(proc_error(p));
    }
    {
        const char *argv[] = {g_cli, "--json", "--db", db, "send", "x",
                              NULL};
        proc *p = spawn(argv, NULL, "usage");
        assert_int_equal(proc_wait(p, T_STEP), 2);
    }
    {
        const char *argv[] = {g_cli,    "--json",  "--db", db,
                              "listen", "--count", "x",    NULL};
        proc *p = spawn(argv, NULL, "usage");
        assert_int_equal(proc_wait(p, T_STEP), 2);
    }
    {
        const char *argv[] = {g_cli, "--bogus", NULL};
        proc *p = spawn(argv, NULL, "usage");
        assert_int_equal(proc_wait(p, T_STEP), 2);
    }
    /* no server anywhere: create is a usage error (unless a `make demo`
     * runs next to this build) */
    snprintf(demo, sizeof demo, "%s", g_cli);
    *strrchr(demo, '/') = 0;
    strncat(demo, "/../demo-server.addr", sizeof demo - strlen(demo) - 1);
    if (access(demo, F_OK) != 0 &&
        access("build/demo-server.addr", F_OK) != 0) {
        const char *argv[] = {g_cli, "--json", "--db", db, "create", NULL};
        proc *p = spawn(argv, NULL, "usage");
        const jobj *e;
        assert_int_equal(proc_wait(p, T_STEP), 2);
        e = proc_error(p);
        assert_non_null(e);
        assert_non_null(strstr(jstr_req(e, "message"), "--server"));
    }
    g_ok = 1;
}

/* Handshake, messages both ways with SENT and RCVD, the server from
 * $SIMPLEX_SERVER, and the JSON escaping of odd texts. */
static void test_basic(void **state)
{
    agent a, b;
    char ca[32], cb[32];
    static const char *const a_texts[] = {"hello bob", "second",
                                          "third: \xc3\xa9t\xc3\xa9 \xe2\x82\xac"};
    /* control characters, quotes, and bytes that are not UTF-8 */
    static const char *const b_raw[] = {"hi alice",
                                        "tab\there \"q\" back\\slash\x01\x1f",
                                        "bad \xff\xfe utf8 \xc3 end"};
    static const char *const b_texts[] = {
        "hi alice", "tab\there \"q\" back\\slash\x01\x1f",
        "bad \xef\xbf\xbd\xef\xbf\xbd utf8 \xef\xbf\xbd end"};
    long long aid[3], bid[3];
    proc *la, *lb;
    (void)state;

    server_up(0, 0, 0);
    agent_init(&a, "alice", &g_srv[0]);
    agent_init(&b, "bob", &g_srv[0]);
    connect_pair(&a, &b, ca, cb);

    /* Alice -> Bob */
    for (int i = 0; i < 3; i++) {
        aid[i] = cli_send(&a, ca, a_texts[i]);
        assert_true(i == 0 || aid[i] > aid[i - 1]);
    }
    receive_exactly(&b, cb, a_texts, 3);
    lb = listen_bg(&b, 0, NULL); /* sends any receipt still pending */
    la = listen_bg(&a, 0, NULL);
    expect_receipts(la, ca, aid, 3);
    proc_stop(la);
    proc_stop(lb);
    assert_int_equal(proc_count(la, "MSG", NULL), 0);
    assert_int_equal(proc_count(lb, "MSG", NULL), 0);

    /* Bob -> Alice */
    for (int i = 0; i < 3; i++)
        bid[i] = cli_send(&b, cb, b_raw[i]);
    receive_exactly(&a, ca, b_texts, 3);
    la = listen_bg(&a, 0, NULL);
    lb = listen_bg(&b, 0, NULL);
    expect_receipts(lb, cb, bid, 3);
    proc_stop(la);
    proc_stop(lb);
    assert_int_equal(proc_count(la, "RCVD", NULL), 0); /* not twice */

    /* plain send (no --wait-sent): stored, delivered by the next listen */
    {
        static const char *const t[] = {"no wait"};
        proc *p = cli_ok(&a, "send", ca, "no wait", NULL);
        assert_true(jnum(proc_expect(p, "stored", ca, 0), "msg_id") > aid[2]);
        la = listen_bg(&a, 0, NULL);
        receive_exactly(&b, cb, t, 1);
        proc_stop(la);
    }

    /* the largest message, read from stdin, and one byte more */
    {
        char path[PATH_MAX + 16];
        size_t max = SIMPLEX_AGENT_MAX_MSG_BYTES;
        char *big = malloc(max + 2);
        const char *const t[] = {big};
        FILE *f;
        proc *p;
        const jobj *e;
        assert_non_null(big);
        for (size_t i = 0; i < max + 1; i++)
            big[i] = (char)('a' + i % 26);
        snprintf(path, sizeof path, "%s/big", g_tmp);
        f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(big, 1, max + 1, f), max + 1);
        fclose(f);
        g_stdin = path;
        p = cli_run(&a, "send", ca, "-", NULL);
        assert_int_equal(p->status, 1);
        e = proc_error(p);
        assert_non_null(e);
        assert_true(jnum(e, "code") < 0);
        assert_int_equal(truncate(path, (off_t)max), 0);
        g_stdin = path;
        p = cli_run(&a, "send", ca, "-", "--wait-sent", "--timeout", "20",
                    NULL);
        assert_int_equal(p->status, 0);
        proc_expect(p, "SENT", ca, 0);
        big[max] = 0;
        receive_exactly(&b, cb, t, 1);
        free(big);
    }
    /* readable output without --json */
    {
        const char *argv[] = {g_cli, "--db", a.db, "connections", NULL};
        char want[64];
        proc *p = spawn(argv, NULL, "alice");
        p->raw = 1;
        assert_int_equal(proc_wait(p, T_STEP), 0);
        assert_int_equal(p->nlines, 1);
        snprintf(want, sizeof want, "%s ready", ca);
        assert_string_equal(p->lines[0]->raw, want);
    }
    /* the default server from $SIMPLEX_SERVER */
    {
        char db[PATH_MAX + 16];
        const char *argv[] = {g_cli, "--json", "--db", db, "create", NULL};
        proc *p;
        snprintf(db, sizeof db, "%s/carol.db", g_tmp);
        p = spawn(argv, g_srv[0].addr, "carol");
        assert_int_equal(proc_wait(p, T_STEP), 0);
        assert_non_null(strstr(jstr_req(proc_expect(p, "created", NULL, 0),
                                        "link"),
                               "invitation"));
    }
    /* errors: an unknown connection */
    {
        proc *p = cli_run(&a, "send", "nosuchconn", "x", NULL);
        const jobj *e;
        assert_int_equal(p->status, 1);
        e = proc_error(p);
        assert_non_null(e);
        assert_true(jnum(e, "code") < 0);
    }
    g_ok = 1;
}

/* Bob's listen stops between messages; the next one gets exactly the
 * messages sent meanwhile. */
static void test_restart_agent(void **state)
{
    agent a, b;
    char ca[32], cb[32];
    static const char *const t1[] = {"m1", "m2"};
    static const char *const t2[] = {"m3", "m4", "m5"};
    proc *lb;
    (void)state;

    server_up(0, 0, 0);
    agent_init(&a, "alice", &g_srv[0]);
    agent_init(&b, "bob", &g_srv[0]);
    connect_pair(&a, &b, ca, cb);

    lb = listen_bg(&b, 0, NULL);
    for (int i = 0; i < 2; i++) {
        jobj *o;
        cli_send(&a, ca, t1[i]);
        o = proc_expect(lb, "MSG", cb, T_STEP);
        assert_string_equal(jstr_req(o, "text"), t1[i]);
        assert_false(jtrue(o, "redelivered"));
    }
    proc_stop(lb);
    assert_int_equal(proc_count(lb, "MSG", NULL), 2);
    for (int i = 0; i < 3; i++)
        cli_send(&a, ca, t2[i]);
    receive_exactly(&b, cb, t2, 3);
    receive_nothing(&b);
    /* a message stored by a send that exits at once, then one sent with
     * --wait-sent by the next process: both arrive, in order */
    {
        static const char *const t3[] = {"m6", "m7"};
        proc *p;
        long long id6, id7;
        p = cli_ok(&a, "send", ca, t3[0], NULL);
        id6 = jnum(proc_expect(p, "stored", ca, 0), "msg_id");
        id7 = cli_send(&a, ca, t3[1]);
        assert_true(id7 > id6);
        receive_exactly(&b, cb, t3, 2);
    }
    g_ok = 1;
}

/* The server restarts (keeping its queues and messages): listens see DOWN
 * and UP, and messages stored while it was down are delivered after. */
static void test_restart_server(void **state)
{
    agent a, b;
    char ca[32], cb[32], addr[512];
    static const char *const texts[] = {"while down 1", "while down 2"};
    long long ids[3]; /* the two sent while down, then "before" */
    int port;
    proc *la, *lb;
    jobj *o;
    (void)state;

    port = tsrv_free_port();
    assert_true(port > 0);
    server_up(0, port, 1);
    snprintf(addr, sizeof addr, "%s", g_srv[0].addr);
    agent_init(&a, "alice", &g_srv[0]);
    agent_init(&b, "bob", &g_srv[0]);
    a.srv[0] = b.srv[0] = addr;
    connect_pair(&a, &b, ca, cb);

    lb = listen_bg(&b, 0, NULL);
    ids[2] = cli_send(&a, ca, "before");
    o = proc_expect(lb, "MSG", cb, T_STEP);
    assert_string_equal(jstr_req(o, "text"), "before");

    assert_int_equal(tsrv_stop(&g_srv[0]), 0);
    o = proc_expect(lb, "DOWN", NULL, T_STEP);
    assert_string_equal(jstr_req(o, "server"), addr);
    for (int i = 0; i < 2; i++) {
        proc *p = cli_ok(&a, "send", ca, texts[i], NULL);
        ids[i] = jnum(proc_expect(p, "stored", ca, 0), "msg_id");
        assert_int_equal(proc_count(p, "SENT", NULL), 0);
    }
    server_up(0, port, 1);
    assert_string_equal(g_srv[0].addr, addr);
    o = proc_expect(lb, "UP", NULL, T_STEP);
    assert_string_equal(jstr_req(o, "server"), addr);

    la = listen_bg(&a, 0, NULL); /* resumes the pending deliveries */
    for (int i = 0; i < 2; i++) {
        o = proc_expect(lb, "MSG", cb, T_STEP);
        assert_string_equal(jstr_req(o, "text"), texts[i]);
        assert_false(jtrue(o, "redelivered"));
    }
    for (int i = 0; i < 2; i++) {
        o = proc_expect(la, "SENT", ca, T_STEP);
        assert_int_equal(jnum(o, "msg_id"), ids[i]);
    }
    /* receipts for all three, including the one for "before" that was
     * queued (or still being sent) when the server went down */
    expect_receipts(la, ca, ids, 3);
    proc_stop(lb);
    proc_stop(la);
    assert_int_equal(proc_count(lb, "MSG", NULL), 3);
    g_ok = 1;
}

/* Stored while the server is down, then a --wait-sent send by a one-shot
 * process (no subscriptions) after it is back: both delivered, in order. */
static void test_pending_then_send(void **state)
{
    agent a, b;
    char ca[32], cb[32], addr[512];
    static const char *const texts[] = {"stored while down", "sent after"};
    int port;
    proc *p;
    (void)state;

    port = tsrv_free_port();
    assert_true(port > 0);
    server_up(0, port, 1);
    snprintf(addr, sizeof addr, "%s", g_srv[0].addr);
    agent_init(&a, "alice", &g_srv[0]);
    agent_init(&b, "bob", &g_srv[0]);
    a.srv[0] = b.srv[0] = addr;
    connect_pair(&a, &b, ca, cb);
    assert_int_equal(tsrv_stop(&g_srv[0]), 0);
    p = cli_ok(&a, "send", ca, texts[0], NULL);
    proc_expect(p, "stored", ca, 0);
    server_up(0, port, 1);
    cli_send(&a, ca, texts[1]);
    receive_exactly(&b, cb, texts, 2);
    g_ok = 1;
}

/* The MSG lines of p on conn. */
static int msg_lines(const proc *p, const char *conn, const jobj **out,
                     int max)
{
    int n = 0;
    for (int i = 0; i < p->nlines && n < max; i++)
        if (is_event(p->lines[i], "MSG", conn))
            out[n++] = p->lines[i];
    return n;
}

/* SIGKILL of a listen right after it printed a message (not acknowledged,
 * then acknowledged or not), and of a send right after it stored one:
 * nothing lost, a message seen again only once after each kill and then
 * flagged redelivered. */
static void test_sigkill(void **state)
{
    agent a, b;
    char ca[32], cb[32];
    static const char *const texts[] = {"k1", "k2", "k3", "k4", "k5", "k6",
                                        "s7", "s8"};
    const jobj *m[64];
    int n, n2, i, k;
    proc *lb, *la;
    jobj *o;
    (void)state;

    server_up(0, 0, 0);
    agent_init(&a, "alice", &g_srv[0]);
    agent_init(&b, "bob", &g_srv[0]);
    connect_pair(&a, &b, ca, cb);
    for (i = 0; i < 6; i++)
        cli_send(&a, ca, texts[i]);

    /* 1: k1 printed and not acknowledged (--no-ack), then SIGKILL */
    lb = cli_start(&b, "listen", "--no-ack", "--timeout", LISTEN_MAX, NULL);
    o = proc_expect(lb, "MSG", cb, T_STEP);
    kill(lb->pid, SIGKILL);
    assert_string_equal(jstr_req(o, "text"), "k1");
    assert_false(jtrue(o, "redelivered"));
    assert_int_equal(proc_wait(lb, T_STEP), 128 + SIGKILL);
    assert_int_equal(msg_lines(lb, cb, m, 64), 1); /* no ACK: no k2 */

    /* 2: k1 again, flagged; SIGKILL right after it is printed (before or
     * after the acknowledgement) */
    lb = listen_bg(&b, 0, NULL);
    o = proc_expect(lb, "MSG", cb, T_STEP);
    kill(lb->pid, SIGKILL);
    assert_string_equal(jstr_req(o, "text"), "k1");
    assert_true(jtrue(o, "redelivered"));
    assert_true((jnum(o, "flags") & 1) != 0);
    assert_int_equal(proc_wait(lb, T_STEP), 128 + SIGKILL);
    n2 = msg_lines(lb, cb, m, 64);
    assert_true(n2 >= 1 && n2 <= 2); /* k2 may have been printed too */
    if (n2 == 2)
        assert_string_equal(jstr_req(m[1], "text"), "k2");

    /* 3: what is left, each at most once more, in order */
    lb = listen_bg(&b, 0, NULL);
    {
        double deadline = now_ms() + T_STEP;
        while (msg_lines(lb, cb, m, 64) == 0 ||
               strcmp(jstr_req(m[msg_lines(lb, cb, m, 64) - 1], "text"),
                      "k6") != 0) {
            if (now_ms() > deadline || lb->eof) {
                proc_dump(lb);
                fail_msg("not every message arrived after the SIGKILLs");
            }
            proc_pump(lb, 100);
        }
    }
    proc_stop(lb);
    n = msg_lines(lb, cb, m, 64);
    i = 0;
    if (strcmp(jstr_req(m[0], "text"), "k1") == 0) {
        /* run 2 died before acknowledging k1 (so it never printed k2) */
        assert_int_equal(n2, 1);
        assert_true(jtrue(m[0], "redelivered"));
        i++;
    }
    if (n2 == 2 && i < n && strcmp(jstr_req(m[i], "text"), "k2") == 0) {
        /* run 2 printed k2 and died before acknowledging it */
        assert_true(jtrue(m[i], "redelivered"));
        i++;
    }
    for (k = n2 == 2 ? 2 : 1; k < 6; k++, i++) {
        if (i >= n || strcmp(jstr_req(m[i], "text"), texts[k]) != 0) {
            proc_dump(lb);
            fail_msg("after the SIGKILLs: expected \"%s\" as message %d",
                     texts[k], i + 1);
        }
    }
    assert_int_equal(i, n);
    receive_nothing(&b);

    /* sending: killed right after "stored" */
    {
        proc *p = cli_start(&a, "send", ca, "s7", NULL);
        proc_expect(p, "stored", ca, T_STEP);
        kill(p->pid, SIGKILL);
        proc_wait(p, T_STEP);
        p = cli_start(&a, "send", ca, "s8", "--wait-sent", NULL);
        proc_expect(p, "stored", ca, T_STEP);
        kill(p->pid, SIGKILL);
        proc_wait(p, T_STEP);
    }
    la = listen_bg(&a, 0, NULL); /* the next process on Alice's db */
    receive_exactly(&b, cb, texts + 6, 2);
    receive_nothing(&b);
    proc_stop(la);
    g_ok = 1;
}

/* The standard handshake (queues secured by their recipients: KEY), with
 * the confirmation allowed by the accept command. */
static void test_no_sender_secure(void **state)
{
    agent a, b;
    char ca[32], cb[32];
    static const char *const ta[] = {"std 1", "std 2"};
    static const char *const tb[] = {"std reply"};
    (void)state;

    server_up(0, 0, 0);
    agent_init(&a, "alice", &g_srv[0]);
    agent_init(&b, "bob", &g_srv[0]);
    a.no_sender_secure = b.no_sender_secure = 1;
    connect_pair_manual(&a, &b, ca, cb);
    cli_send(&a, ca, ta[0]);
    cli_send(&a, ca, ta[1]);
    receive_exactly(&b, cb, ta, 2);
    cli_send(&b, cb, tb[0]);
    receive_exactly(&a, ca, tb, 1);
    g_ok = 1;
}

/* Alice (server 1) connected to Bob and Carol (server 2). */
static void test_three_agents(void **state)
{
    agent a, b, c;
    char ab[32], ac[32], ba[32], ca[32], l1[4096], l2[4096];
    static const char *const to_b[] = {"to bob"}, *const to_c[] = {"to carol"};
    static const char *const from_b[] = {"from bob"};
    static const char *const from_c[] = {"from carol"};
    proc *la, *lb, *lc, *p;
    jobj *o;
    (void)state;

    server_up(0, 0, 0);
    server_up(1, 0, 0);
    assert_string_not_equal(g_srv[0].addr, g_srv[1].addr);
    agent_init(&a, "alice", &g_srv[0]);
    agent_init(&b, "bob", &g_srv[1]);
    agent_init(&c, "carol", &g_srv[1]);

    cli_create(&a, ab, sizeof ab, l1, sizeof l1);
    cli_create(&a, ac, sizeof ac, l2, sizeof l2);
    assert_string_not_equal(ab, ac);
    cli_join(&b, l1, "bob", ba, sizeof ba);
    cli_join(&c, l2, "carol", ca, sizeof ca);
    lb = listen_bg(&b, 0, NULL);
    lc = listen_bg(&c, 0, NULL);
    la = listen_bg(&a, 1, "alice");
    o = proc_expect(lb, "INFO", ba, T_STEP);
    assert_string_equal(jstr_req(o, "info"), "alice");
    proc_expect(lb, "CON", ba, T_STEP);
    o = proc_expect(lc, "INFO", ca, T_STEP);
    assert_string_equal(jstr_req(o, "info"), "alice");
    proc_expect(lc, "CON", ca, T_STEP);
    {
        double deadline = now_ms() + T_STEP;
        while (proc_count(la, "CON", ab) + proc_count(la, "CON", ac) < 2) {
            if (now_ms() > deadline || la->eof) {
                proc_dump(la);
                fail_msg("alice: no CON on both connections");
            }
            proc_pump(la, 100);
        }
    }
    proc_stop(la);
    proc_stop(lb);
    proc_stop(lc);
    for (int i = 0; i < la->nlines; i++) {
        o = la->lines[i];
        if (is_event(o, "CONF", ab))
            assert_string_equal(jstr_req(o, "info"), "bob");
        if (is_event(o, "CONF", ac))
            assert_string_equal(jstr_req(o, "info"), "carol");
    }
    assert_int_equal(proc_count(la, "CONF", ab), 1);
    assert_int_equal(proc_count(la, "CONF", ac), 1);

    cli_send(&a, ab, to_b[0]);
    cli_send(&a, ac, to_c[0]);
    cli_send(&b, ba, from_b[0]);
    cli_send(&c, ca, from_c[0]);
    receive_exactly(&b, ba, to_b, 1);
    receive_exactly(&c, ca, to_c, 1);
    p = cli_run(&a, "listen", "--count", "2", "--timeout", "30", NULL);
    assert_int_equal(p->status, 0);
    assert_int_equal(proc_count(p, "MSG", NULL), 2);
    assert_string_equal(jstr_req(proc_expect(p, "MSG", ab, 0), "text"),
                        from_b[0]);
    p->cursor = 0;
    assert_string_equal(jstr_req(proc_expect(p, "MSG", ac, 0), "text"),
                        from_c[0]);
    p = cli_ok(&a, "connections", NULL);
    assert_int_equal(proc_count(p, "connection", NULL), 2);
    assert_string_equal(conn_status(&a, ab), "ready");
    assert_string_equal(conn_status(&a, ac), "ready");
    g_ok = 1;
}

/* suspend: queued messages still arrive, new ones are refused (MERR). */
static void test_suspend(void **state)
{
    agent a, b;
    char ca[32], cb[32];
    static const char *const before[] = {"before suspend"};
    proc *p;
    const jobj *o;
    long long id;
    (void)state;

    server_up(0, 0, 0);
    agent_init(&a, "alice", &g_srv[0]);
    agent_init(&b, "bob", &g_srv[0]);
    connect_pair(&a, &b, ca, cb);
    cli_send(&b, cb, before[0]);
    p = cli_ok(&a, "suspend", ca, NULL);
    proc_expect(p, "suspended", ca, 0);
    assert_string_equal(conn_status(&a, ca), "suspended");
    receive_exactly(&a, ca, before, 1);

    p = cli_run(&b, "send", cb, "after suspend", "--wait-sent", "--timeout",
                "15", NULL);
    id = jnum(proc_expect(p, "stored", cb, 0), "msg_id");
    if (p->status != 1) {
        proc_dump(p);
        fail_msg("send to a suspended queue: exit %d, expected 1 (MERR)",
                 p->status);
    }
    o = proc_expect(p, "MERR", cb, 0);
    assert_int_equal(jnum(o, "msg_id"), id);
    assert_true(jnum(o, "code") < 0);
    assert_true(strlen(jstr_req(o, "error")) > 0);
    g_ok = 1;
}

/* delete: gone from connections; the peer's messages fail (MERR). */
static void test_delete(void **state)
{
    agent a, b;
    char ca[32], cb[32];
    proc *p;
    const jobj *o;
    long long id;
    (void)state;

    server_up(0, 0, 0);
    agent_init(&a, "alice", &g_srv[0]);
    agent_init(&b, "bob", &g_srv[0]);
    connect_pair(&a, &b, ca, cb);
    p = cli_ok(&a, "delete", ca, NULL);
    proc_expect(p, "deleted", ca, 0);
    p = cli_ok(&a, "connections", NULL);
    assert_int_equal(proc_count(p, "connection", NULL), 0);
    assert_null(conn_status(&a, ca));

    p = cli_run(&b, "send", cb, "after delete", "--wait-sent", "--timeout",
                "15", NULL);
    id = jnum(proc_expect(p, "stored", cb, 0), "msg_id");
    if (p->status != 1) {
        proc_dump(p);
        fail_msg("send to a deleted queue: exit %d, expected 1 (MERR)",
                 p->status);
    }
    o = proc_expect(p, "MERR", cb, 0);
    assert_int_equal(jnum(o, "msg_id"), id);
    assert_true(jnum(o, "code") < 0);

    /* deleting it again, or sending on it, fails: exit 1, NOT_FOUND */
    p = cli_run(&a, "delete", ca, NULL);
    assert_int_equal(p->status, 1);
    o = proc_error(p);
    assert_non_null(o);
    assert_int_equal(jnum(o, "code"), -29); /* SIMPLEX_ERR_NOT_FOUND */
    p = cli_run(&a, "send", ca, "x", NULL);
    assert_int_equal(p->status, 1);
    o = proc_error(p);
    assert_non_null(o);
    assert_int_equal(jnum(o, "code"), -29);
    g_ok = 1;
}

/* listen --timeout: 0 without --count, 3 when fewer messages came; --until */
static void test_listen_exit(void **state)
{
    agent a, b;
    char ca[32], cb[32];
    proc *p;
    const jobj *e;
    double t0;
    (void)state;

    server_up(0, 0, 0);
    agent_init(&a, "alice", &g_srv[0]);
    agent_init(&b, "bob", &g_srv[0]);
    connect_pair(&a, &b, ca, cb);
    t0 = now_ms();
    p = cli_run(&a, "listen", "--timeout", "1", NULL);
    assert_int_equal(p->status, 0);
    assert_true(now_ms() - t0 >= 900);
    p = cli_run(&a, "listen", "--count", "1", "--timeout", "1", NULL);
    assert_int_equal(p->status, 3);
    e = proc_error(p);
    assert_non_null(e);
    assert_int_equal(jnum(e, "code"), -18); /* SIMPLEX_ERR_TIMEOUT */
    p = cli_run(&a, "listen", "--until", "CON", "--timeout", "1", NULL);
    assert_int_equal(p->status, 3);
    cli_send(&b, cb, "until");
    p = cli_run(&a, "listen", "--until", "MSG", "--timeout", "30", NULL);
    assert_int_equal(p->status, 0);
    assert_string_equal(jstr_req(proc_expect(p, "MSG", ca, 0), "text"),
                        "until");
    /* SIGINT stops a listen cleanly too */
    p = listen_bg(&a, 0, NULL);
    sleep_ms(300);
    assert_int_equal(proc_signal(p, SIGINT), 0);
    receive_nothing(&a);
    g_ok = 1;
}

/* address create: the contact link, shown again by address show. */
static void cli_address(const agent *a, char *addr, char *link,
                        size_t link_cap)
{
    proc *p = cli_ok(a, "address", "create", NULL);
    jobj *o = proc_expect(p, "address", NULL, 0);
    const char *c = jstr_req(o, "conn"), *l = jstr_req(o, "link");
    assert_true(strlen(c) > 0 && strlen(c) < 32);
    assert_true(strncmp(l, "simplex:/contact#/?", 19) == 0);
    assert_true(strlen(l) < link_cap);
    strcpy(addr, c);
    strcpy(link, l);
    assert_string_equal(conn_status(a, addr), "contact");
    /* without an id: the only address; with its id: the same */
    p = cli_ok(a, "address", "show", NULL);
    o = proc_expect(p, "address", addr, 0);
    assert_string_equal(jstr_req(o, "link"), link);
    p = cli_ok(a, "address", "show", addr, NULL);
    o = proc_expect(p, "address", addr, 0);
    assert_string_equal(jstr_req(o, "link"), link);
}

/* Waits in l for CON on conn, looking at everything printed so far. */
static void expect_con(proc *l, const char *conn)
{
    double deadline = now_ms() + T_STEP;
    while (proc_count(l, "CON", conn) == 0) {
        if (now_ms() > deadline || l->eof) {
            proc_dump(l);
            fail_msg("no CON on %s", conn);
        }
        proc_pump(l, 100);
    }
}

/* A contact address: Bob's request accepted by Alice's listen --accept,
 * Carol's rejected, Dave's accepted by the accept command; the address
 * deleted while the connections made through it keep working. */
static void test_address(void **state)
{
    agent a, b, c, d;
    char addr[32], link[4096], ab[32], ba[32], ca[32], ad[32], da[32];
    char req[64];
    static const char *const to_b[] = {"hello via address", "second"};
    static const char *const to_a[] = {"hi alice"};
    static const char *const to_d[] = {"to dave"};
    static const char *const after_a[] = {"after delete, to alice"};
    static const char *const after_b[] = {"after delete, to bob"};
    proc *la, *lb, *lc, *p;
    jobj *o;
    (void)state;

    server_up(0, 0, 0);
    agent_init(&a, "alice", &g_srv[0]);
    agent_init(&b, "bob", &g_srv[0]);
    agent_init(&c, "carol", &g_srv[0]);
    agent_init(&d, "dave", &g_srv[0]);
    cli_address(&a, addr, link, sizeof link);

    /* Bob: a contact request; Alice's listen --accept accepts it */
    cli_join(&b, link, "bob", ba, sizeof ba);
    /* the requester's connection waits for the accepter to join its
     * invitation (status new) */
    assert_string_equal(conn_status(&b, ba), "new");
    /* join stores the request and returns, maybe before it was sent: the
     * requester's listen sends it (and allows Alice's confirmation) */
    lb = listen_bg(&b, 1, "bob again");
    la = listen_bg(&a, 1, "alice");
    o = proc_expect(la, "REQ", addr, T_STEP);
    assert_string_equal(jstr_req(o, "info"), "bob");
    assert_true(strlen(jstr_req(o, "req_id")) > 0 &&
                strlen(jstr_req(o, "req_id")) < sizeof req);
    strcpy(req, jstr_req(o, "req_id"));
    o = proc_expect(la, "accepted", NULL, T_STEP);
    assert_string_equal(jstr_req(o, "req_id"), req);
    assert_true(strlen(jstr_req(o, "conn")) < sizeof ab);
    strcpy(ab, jstr_req(o, "conn"));
    assert_string_not_equal(ab, addr);
    /* Bob's listen --accept allows Alice's confirmation */
    o = proc_expect(lb, "CONF", ba, T_STEP);
    assert_string_equal(jstr_req(o, "info"), "alice");
    proc_expect(lb, "allowed", ba, T_STEP);
    proc_expect(lb, "CON", ba, T_STEP);
    expect_con(la, ab);
    proc_stop(la);
    proc_stop(lb);
    assert_int_equal(proc_count(la, "REQ", NULL), 1);
    assert_int_equal(proc_count(la, "accepted", NULL), 1);
    assert_int_equal(proc_count(lb, "CONF", NULL), 1);
    assert_string_equal(conn_status(&a, ab), "ready");
    assert_string_equal(conn_status(&b, ba), "ready");
    assert_string_equal(conn_status(&a, addr), "contact");
    /* the address keeps its link */
    p = cli_ok(&a, "address", "show", NULL);
    assert_string_equal(jstr_req(proc_expect(p, "address", addr, 0), "link"),
                        link);
    /* messages both ways */
    cli_send(&a, ab, to_b[0]);
    cli_send(&a, ab, to_b[1]);
    receive_exactly(&b, ba, to_b, 2);
    cli_send(&b, ba, to_a[0]);
    receive_exactly(&a, ab, to_a, 1);

    /* Carol: rejected */
    cli_join(&c, link, "carol", ca, sizeof ca);
    lc = listen_bg(&c, 1, "carol");
    p = cli_run(&a, "listen", "--until", "REQ", "--timeout", "15", NULL);
    assert_int_equal(p->status, 0);
    o = proc_expect(p, "REQ", addr, 0);
    assert_string_equal(jstr_req(o, "info"), "carol");
    assert_true(strlen(jstr_req(o, "req_id")) < sizeof req);
    strcpy(req, jstr_req(o, "req_id"));
    p = cli_ok(&a, "reject", req, NULL);
    o = proc_expect(p, "rejected", NULL, 0);
    assert_string_equal(jstr_req(o, "req_id"), req);
    p = cli_run(&a, "reject", req, NULL); /* gone */
    assert_int_equal(p->status, 1);
    assert_int_equal(err_code(p), -29);
    p = cli_run(&a, "accept", req, NULL);
    assert_int_equal(p->status, 1);
    assert_int_equal(err_code(p), -29);
    p = cli_run(&a, "listen", "--accept", "--timeout", "3", NULL);
    assert_int_equal(p->status, 0);
    proc_stop(lc);
    if (proc_count(p, "REQ", NULL) != 0 ||
        proc_count(p, "accepted", NULL) != 0 ||
        proc_count(p, "CON", NULL) != 0) {
        proc_dump(p);
        fail_msg("alice: the rejected request came back");
    }
    if (proc_count(lc, "CONF", NULL) != 0 || proc_count(lc, "CON", NULL)) {
        proc_dump(lc);
        fail_msg("carol was connected after the rejection");
    }
    assert_string_equal(conn_status(&c, ca), "new");

    /* errors: an unknown request id */
    p = cli_run(&a, "accept", "nosuchrequest", "--info", "x", NULL);
    assert_int_equal(p->status, 1);
    assert_int_equal(err_code(p), -29); /* SIMPLEX_ERR_NOT_FOUND */
    assert_string_equal(jstr_req(proc_error(p), "op"), "accept");

    /* Dave: REQ seen by a listen without --accept, then `accept REQ_ID` */
    cli_join(&d, link, "dave", da, sizeof da);
    lb = listen_bg(&d, 1, "dave");
    p = cli_run(&a, "listen", "--until", "REQ", "--timeout", "15", NULL);
    assert_int_equal(p->status, 0);
    o = proc_expect(p, "REQ", addr, 0);
    assert_string_equal(jstr_req(o, "info"), "dave");
    strcpy(req, jstr_req(o, "req_id"));
    assert_int_equal(proc_count(p, "accepted", NULL), 0);
    p = cli_ok(&a, "accept", req, "--info", "alice for dave", NULL);
    o = proc_expect(p, "accepted", NULL, 0);
    assert_string_equal(jstr_req(o, "req_id"), req);
    strcpy(ad, jstr_req(o, "conn"));
    assert_string_not_equal(ad, ab);
    la = listen_bg(&a, 0, NULL);
    o = proc_expect(lb, "CONF", da, T_STEP);
    assert_string_equal(jstr_req(o, "info"), "alice for dave");
    proc_expect(lb, "CON", da, T_STEP);
    expect_con(la, ad);
    proc_stop(la);
    proc_stop(lb);
    cli_send(&a, ad, to_d[0]);
    receive_exactly(&d, da, to_d, 1);

    /* address delete: gone, the connections stay */
    p = cli_ok(&a, "address", "delete", NULL);
    proc_expect(p, "deleted", addr, 0);
    assert_null(conn_status(&a, addr));
    p = cli_run(&a, "address", "show", NULL);
    assert_int_equal(p->status, 2);
    p = cli_run(&a, "address", "delete", addr, NULL);
    assert_int_equal(p->status, 1);
    assert_int_equal(err_code(p), -29);
    assert_string_equal(conn_status(&a, ab), "ready");
    cli_send(&b, ba, after_a[0]);
    receive_exactly(&a, ab, after_a, 1);
    cli_send(&a, ab, after_b[0]);
    receive_exactly(&b, ba, after_b, 1);
    /* a new join of the deleted address's link fails or is never
     * answered: nothing reaches Alice */
    {
        agent e;
        agent_init(&e, "eve", &g_srv[0]);
        proc *le = NULL;
        p = cli_run(&e, "join", link, "--info", "eve", NULL);
        if (p->status == 0)
            le = listen_bg(&e, 1, "eve");
        p = cli_run(&a, "listen", "--timeout", "3", NULL);
        assert_int_equal(p->status, 0);
        assert_int_equal(proc_count(p, "REQ", NULL), 0);
        if (le)
            proc_stop(le);
    }
    g_ok = 1;
}

/* link CONN: an invitation's link until it is joined; address show and
 * delete with two addresses need the id. */
static void test_link(void **state)
{
    agent a, b;
    char conn[32], link[4096], addr1[32], addr2[32], l1[4096], l2[4096];
    proc *p;
    jobj *o;
    (void)state;

    server_up(0, 0, 0);
    agent_init(&a, "alice", &g_srv[0]);
    agent_init(&b, "bob", &g_srv[0]);
    cli_create(&a, conn, sizeof conn, link, sizeof link);
    p = cli_ok(&a, "link", conn, NULL);
    o = proc_expect(p, "link", conn, 0);
    assert_string_equal(jstr_req(o, "link"), link);
    {   /* text mode: the link alone */
        const char *argv[] = {g_cli, "--db", a.db, "link", conn, NULL};
        p = spawn(argv, NULL, "alice");
        p->raw = 1;
        assert_int_equal(proc_wait(p, T_STEP), 0);
        assert_int_equal(p->nlines, 1);
        assert_string_equal(p->lines[0]->raw, link);
    }
    p = cli_run(&a, "link", "nosuchconn", NULL);
    assert_int_equal(p->status, 1);
    assert_int_equal(err_code(p), -29);

    /* two addresses: show and delete need the id */
    cli_address(&a, addr1, l1, sizeof l1);
    p = cli_ok(&a, "address", "create", NULL);
    o = proc_expect(p, "address", NULL, 0);
    strcpy(addr2, jstr_req(o, "conn"));
    strcpy(l2, jstr_req(o, "link"));
    assert_string_not_equal(l1, l2);
    p = cli_run(&a, "address", "show", NULL);
    assert_int_equal(p->status, 2);
    p = cli_run(&a, "address", "delete", NULL);
    assert_int_equal(p->status, 2);
    p = cli_ok(&a, "address", "show", addr2, NULL);
    assert_string_equal(jstr_req(proc_expect(p, "address", addr2, 0), "link"),
                        l2);
    p = cli_ok(&a, "link", addr1, NULL);
    assert_string_equal(jstr_req(proc_expect(p, "link", addr1, 0), "link"),
                        l1);
    /* not an address */
    p = cli_run(&a, "address", "delete", conn, NULL);
    assert_int_equal(p->status, 2);
    p = cli_ok(&a, "address", "delete", addr1, NULL);
    proc_expect(p, "deleted", addr1, 0);
    p = cli_ok(&a, "address", "show", NULL); /* the only one left */
    assert_string_equal(jstr_req(proc_expect(p, "address", addr2, 0), "link"),
                        l2);

    /* once joined, the invitation has no link to share */
    {
        char cb[32];
        proc *la;
        proc *lb;
        cli_join(&b, link, "bob", cb, sizeof cb);
        lb = listen_bg(&b, 0, NULL); /* sends the confirmation if join
                                         did not yet */
        la = listen_bg(&a, 0, NULL);
        proc_expect(la, "CONF", conn, T_STEP);
        proc_stop(la);
        proc_stop(lb);
        p = cli_run(&a, "link", conn, NULL);
        assert_int_equal(p->status, 1);
        assert_int_equal(err_code(p), -30); /* STATE */
    }
    g_ok = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_agent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_server, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pending_then_send, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_sender_secure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_three_agents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suspend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
