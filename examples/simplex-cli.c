/*
 * simplex-cli: command-line tool over libsimplex.
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
 *
 *   simplex-cli --db FILE [options] create | join | allow | accept |
 *               reject | address | link | connections | send | listen |
 *               delete | suspend ...
 *
 * The agent mode: duplex connections kept in the SQLite database FILE (see
 * include/simplex/agent.h and usage_agent() below for the commands, their
 * output and the exit status). Every run opens the agent on the database,
 * does one thing and frees it; only one process should use a database at
 * a time. One-shot commands open the agent without subscribing the stored
 * connections, so they do not take messages or receipts away from the
 * next listen; listen subscribes them and prints what arrives.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "simplex/simplex.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* exit status */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_TIMEOUT = 3 };

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void usage_server_test(FILE *f)
{
    fprintf(f,
            "usage: simplex-cli server-test smp://<keyhash>@host[:port] "
            "[--timeout SECONDS] [--socks5 host:port] "
            "[--proxy smp://<keyhash>@host[:port]]\n");
}

static void usage_agent(FILE *f)
{
    fprintf(
        f,
        "usage: simplex-cli --db FILE [--server smp://...]... "
        "[--socks5 host:port]\n"
        "                   [--json] [--no-sender-secure] [--retry-ms MS]\n"
        "                   [--message-timeout SECONDS] "
        "[--flush-timeout SECONDS] [--verbose] COMMAND ...\n"
        "commands:\n"
        "  create                       new connection: prints its id and "
        "the invitation link\n"
        "  join LINK [--info TEXT]      joins an invitation link, or sends a "
        "contact request\n"
        "                               to a contact address link\n"
        "  allow CONN CONF_ID [--info TEXT]\n"
        "                               accepts a confirmation (CONF) seen by "
        "listen\n"
        "                               (also `accept CONN CONF_ID`)\n"
        "  address create               new contact address: prints its id "
        "and link\n"
        "  address show [ADDR_ID]       the link of a contact address "
        "(without ADDR_ID: the only one)\n"
        "  address delete [ADDR_ID]     deletes a contact address "
        "(connections made through it stay)\n"
        "  accept REQ_ID [--info TEXT]  accepts a contact request (REQ) seen "
        "by listen: prints\n"
        "                               the new connection's id\n"
        "  reject REQ_ID                rejects a contact request (the "
        "requester is not told)\n"
        "  link CONN                    the link of an invitation nobody "
        "joined yet, or of an address\n"
        "  connections                  one line per connection: id and "
        "status\n"
        "  send CONN TEXT [--wait-sent] [--timeout SECONDS]\n"
        "                               stores a message (TEXT \"-\": read "
        "stdin); --wait-sent: until SENT\n"
        "  listen [--accept] [--info TEXT] [--count N] [--until EVENT] "
        "[--timeout SECONDS] [--no-ack]\n"
        "                               prints every event; acknowledges "
        "each MSG with a receipt\n"
        "                               (--no-ack: not, so the next listen "
        "gets it again);\n"
        "                               --accept allows each CONF and "
        "accepts each contact\n"
        "                               request (REQ), with --info TEXT; "
        "exits after N MSG, at EVENT,\n"
        "                               after SECONDS, or on SIGINT/SIGTERM\n"
        "  delete CONN                  deletes a connection\n"
        "  suspend CONN                 suspends a connection's receiving "
        "queue\n"
        "join, allow, accept and send store what they send, then wait up "
        "to --flush-timeout\n"
        "(default 3 s; 0: no wait) for the server to take it; what is left "
        "is sent by the next\n"
        "command on the same database (run listen afterwards anyway, until "
        "CON).\n"
        "Global options come before the command. Without --server: "
        "$SIMPLEX_SERVER,\n"
        "else the server of a running `make demo` (build/demo-server.addr).\n"
        "Exit status: 0 success, 1 the operation failed (library error; "
        "MERR for send --wait-sent),\n"
        "2 usage error, 3 timeout (listen --count/--until, send "
        "--wait-sent).\n");
}

static void usage(void)
{
    usage_server_test(stderr);
    usage_agent(stderr);
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

/* ======================================================================
 * Agent mode
 * ====================================================================== */

typedef struct gopts {
    const char *db;
    const char *servers[32];
    size_t n_servers;
    const char *socks5;
    int json;
    unsigned flags;
    unsigned retry_ms;
    unsigned message_timeout_s;
    unsigned flush_ms;  /* how long one-shot commands wait for sending */
    int verbose;
    char default_server[1024];
} gopts;

/* ---- output ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (b->len + n + 1 > cap)
            cap *= 2;
        p = realloc(b->p, cap);
        if (!p) {
            fputs("simplex-cli: out of memory\n", stderr);
            exit(EXIT_FAILED);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_printf(sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
    } else {
        char *big = malloc((size_t)n + 1);
        if (!big) {
            fputs("simplex-cli: out of memory\n", stderr);
            exit(EXIT_FAILED);
        }
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        sb_put(b, big, (size_t)n);
        free(big);
    }
}

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 when the
 * bytes there are not one (overlong, surrogate, above U+10FFFF, cut). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80
                   ? 3
                   : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return n >= 4 && s[1] >= lo && s[1] <= hi &&
                       (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

/* A JSON string: control characters escaped, each byte that does not
 * start a well-formed UTF-8 sequence replaced by U+FFFD. */
static void sb_json_bytes(sbuf *b, const uint8_t *s, size_t n)
{
    size_t i = 0;
    sb_put(b, "\"", 1);
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            switch (c) {
            case '\n': sb_puts(b, "\\n"); break;
            case '\r': sb_puts(b, "\\r"); break;
            case '\t': sb_puts(b, "\\t"); break;
            case '\b': sb_puts(b, "\\b"); break;
            case '\f': sb_puts(b, "\\f"); break;
            default: sb_printf(b, "\\u%04x", c); break;
            }
            i++;
        } else if ((k = utf8_seq(s + i, n - i)) > 0) {
            sb_put(b, (const char *)s + i, k);
            i += k;
        } else {
            sb_puts(b, "\\ufffd");
            i++;
        }
    }
    sb_put(b, "\"", 1);
}

static void sb_json_str(sbuf *b, const char *s)
{
    s = s ? s : "";
    sb_json_bytes(b, (const uint8_t *)s, strlen(s));
}

/* Readable text on one line: printable UTF-8 as is, the rest escaped. */
static void sb_text_bytes(sbuf *b, const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        if (c == '\\') {
            sb_puts(b, "\\\\");
            i++;
        } else if (c == '\n') {
            sb_puts(b, "\\n");
            i++;
        } else if (c == '\t') {
            sb_puts(b, "\\t");
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            sb_printf(b, "\\x%02x", c);
            i++;
        } else if ((k = utf8_seq(s + i, n - i)) > 0) {
            sb_put(b, (const char *)s + i, k);
            i += k;
        } else {
            sb_printf(b, "\\x%02x", c);
            i++;
        }
    }
}

/* JSON object under construction: {"k":v,...} */
static void jkey(sbuf *b, const char *key)
{
    sb_puts(b, b->len > 1 ? ",\"" : "\"");
    sb_puts(b, key);
    sb_puts(b, "\":");
}

static void jstr(sbuf *b, const char *key, const char *val)
{
    jkey(b, key);
    sb_json_str(b, val);
}

static void jbytes(sbuf *b, const char *key, const uint8_t *p, size_t n)
{
    jkey(b, key);
    sb_json_bytes(b, p, n);
}

static void jint(sbuf *b, const char *key, long long v)
{
    jkey(b, key);
    sb_printf(b, "%lld", v);
}

static void jbool(sbuf *b, const char *key, int v)
{
    jkey(b, key);
    sb_puts(b, v ? "true" : "false");
}

static int g_out_failed;

/* Writes the line (closing the JSON object when json) and flushes. */
static void emit(sbuf *b, int json)
{
    if (json)
        sb_puts(b, "}");
    sb_puts(b, "\n");
    if (fwrite(b->p, 1, b->len, stdout) != b->len || fflush(stdout) != 0)
        g_out_failed = 1;
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static void jopen(sbuf *b)
{
    sb_puts(b, "{");
}

/* Prints {"event":name,"conn":conn} or "name conn" plus nothing else. */
static void emit_simple(const gopts *g, const char *event, const char *conn)
{
    sbuf b = {NULL, 0, 0};
    if (g->json) {
        jopen(&b);
        jstr(&b, "event", event);
        jstr(&b, "conn", conn);
    } else {
        sb_printf(&b, "%s %s", event, conn);
    }
    emit(&b, g->json);
}

/* The error of a failed call: the JSON object on stdout with --json, a
 * line on stderr always. Returns EXIT_FAILED. */
static int report_error(const gopts *g, simplex_agent *a, const char *op,
                        int rc)
{
    simplex_buf m = {NULL, 0};
    const char *msg;
    if (simplex_agent_last_error(a, &m) != 0) {
        m.data = NULL;
        m.len = 0;
    }
    msg = m.data && m.len ? (const char *)m.data : "";
    if (g->json) {
        sbuf b = {NULL, 0, 0};
        jopen(&b);
        jstr(&b, "error", simplex_strerror(rc));
        jint(&b, "code", rc);
        jstr(&b, "message", msg);
        jstr(&b, "op", op);
        emit(&b, 1);
    }
    fprintf(stderr, "simplex-cli: %s: %s (%d)%s%s\n", op, simplex_strerror(rc),
            rc, *msg ? ": " : "", msg);
    simplex_buf_dispose(&m);
    return EXIT_FAILED;
}

/* A usage error (exit 2) or a timeout (exit 3) with its message. */
static int report_other(const gopts *g, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int report_other(const gopts *g, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g && g->json) {
        sbuf b = {NULL, 0, 0};
        jopen(&b);
        if (status == EXIT_TIMEOUT) {
            jstr(&b, "error", simplex_strerror(SIMPLEX_ERR_TIMEOUT));
            jint(&b, "code", SIMPLEX_ERR_TIMEOUT);
        } else {
            jstr(&b, "error", "usage");
            jint(&b, "code", 0);
        }
        jstr(&b, "message", msg);
        emit(&b, 1);
    }
    fprintf(stderr, "simplex-cli: %s\n", msg);
    if (status == EXIT_USAGE)
        fprintf(stderr, "run simplex-cli --help for the usage\n");
    return status;
}

static const char *integrity_name(simplex_agent_integrity i)
{
    switch (i) {
    case SIMPLEX_AGENT_INTEGRITY_OK: return "ok";
    case SIMPLEX_AGENT_INTEGRITY_BAD_ID: return "bad_id";
    case SIMPLEX_AGENT_INTEGRITY_DUPLICATE: return "duplicate";
    case SIMPLEX_AGENT_INTEGRITY_SKIPPED: return "skipped";
    case SIMPLEX_AGENT_INTEGRITY_BAD_HASH: return "bad_hash";
    }
    return "unknown";
}

/* Prints one event as a line. */
static void print_event(const gopts *g, const simplex_agent_event *ev)
{
    simplex_agent_event_type t = simplex_agent_event_get_type(ev);
    const char *name = simplex_agent_event_name(ev);
    const char *conn = simplex_agent_event_conn_id(ev);
    const uint8_t *body;
    size_t blen = 0;
    sbuf b = {NULL, 0, 0};

    name = name && *name ? name : "UNKNOWN";
    conn = conn ? conn : "";
    body = simplex_agent_event_body(ev, &blen);
    if (!body)
        blen = 0;
    if (g->json) {
        jopen(&b);
        jstr(&b, "event", name);
        jstr(&b, "conn", conn);
    } else {
        sb_puts(&b, name);
        if (*conn) {
            sb_puts(&b, " ");
            sb_puts(&b, conn);
        }
    }
    switch (t) {
    case SIMPLEX_AGENT_EVENT_CONF:
        if (g->json) {
            jstr(&b, "conf_id", simplex_agent_event_conf_id(ev));
            jbytes(&b, "info", body, blen);
        } else {
            sb_printf(&b, " %s ", simplex_agent_event_conf_id(ev));
            sb_text_bytes(&b, body, blen);
        }
        break;
    case SIMPLEX_AGENT_EVENT_REQ:
        if (g->json) {
            jstr(&b, "req_id", simplex_agent_event_conf_id(ev));
            jbytes(&b, "info", body, blen);
            if (simplex_agent_event_flags(ev) & SIMPLEX_AGENT_MSG_REDELIVERED)
                jbool(&b, "redelivered", 1);
        } else {
            sb_printf(&b, " %s ", simplex_agent_event_conf_id(ev));
            sb_text_bytes(&b, body, blen);
        }
        break;
    case SIMPLEX_AGENT_EVENT_INFO:
        if (g->json) {
            jbytes(&b, "info", body, blen);
        } else {
            sb_puts(&b, " ");
            sb_text_bytes(&b, body, blen);
        }
        break;
    case SIMPLEX_AGENT_EVENT_MSG: {
        unsigned flags = simplex_agent_event_flags(ev);
        int64_t from = 0, to = 0;
        simplex_agent_integrity in =
            simplex_agent_event_integrity(ev, &from, &to);
        if (g->json) {
            jint(&b, "msg_id", (long long)simplex_agent_event_msg_id(ev));
            jbytes(&b, "text", body, blen);
            jint(&b, "flags", (long long)flags);
            jbool(&b, "redelivered",
                  (flags & SIMPLEX_AGENT_MSG_REDELIVERED) != 0);
            jint(&b, "snd_msg_id",
                 (long long)simplex_agent_event_snd_msg_id(ev));
            jint(&b, "ts", (long long)simplex_agent_event_timestamp(ev));
            jstr(&b, "integrity", integrity_name(in));
            if (in == SIMPLEX_AGENT_INTEGRITY_SKIPPED) {
                jint(&b, "skipped_from", (long long)from);
                jint(&b, "skipped_to", (long long)to);
            } else if (in == SIMPLEX_AGENT_INTEGRITY_BAD_ID) {
                jint(&b, "received_id", (long long)from);
            }
        } else {
            sb_printf(&b, " %lld ", (long long)simplex_agent_event_msg_id(ev));
            if (flags & SIMPLEX_AGENT_MSG_REDELIVERED)
                sb_puts(&b, "[redelivered] ");
            if (in == SIMPLEX_AGENT_INTEGRITY_SKIPPED)
                sb_printf(&b, "[skipped %lld-%lld] ", (long long)from,
                          (long long)to);
            else if (in != SIMPLEX_AGENT_INTEGRITY_OK)
                sb_printf(&b, "[integrity: %s] ", integrity_name(in));
            sb_text_bytes(&b, body, blen);
        }
        break;
    }
    case SIMPLEX_AGENT_EVENT_SENT:
        if (g->json)
            jint(&b, "msg_id", (long long)simplex_agent_event_msg_id(ev));
        else
            sb_printf(&b, " %lld", (long long)simplex_agent_event_msg_id(ev));
        break;
    case SIMPLEX_AGENT_EVENT_RCVD: {
        unsigned flags = simplex_agent_event_flags(ev);
        const char *r = flags & SIMPLEX_AGENT_RCPT_OK         ? "ok"
                        : flags & SIMPLEX_AGENT_RCPT_BAD_HASH ? "bad_hash"
                                                              : "unknown";
        if (g->json) {
            jint(&b, "msg_id", (long long)simplex_agent_event_msg_id(ev));
            jint(&b, "flags", (long long)flags);
            jstr(&b, "receipt", r);
            jbytes(&b, "info", body, blen);
        } else {
            sb_printf(&b, " %lld %s", (long long)simplex_agent_event_msg_id(ev),
                      r);
            if (blen) {
                sb_puts(&b, " ");
                sb_text_bytes(&b, body, blen);
            }
        }
        break;
    }
    case SIMPLEX_AGENT_EVENT_MERR:
    case SIMPLEX_AGENT_EVENT_MWARN:
    case SIMPLEX_AGENT_EVENT_ERR: {
        int code = simplex_agent_event_error(ev);
        const char *msg = simplex_agent_event_message(ev);
        const char *srv = simplex_agent_event_server(ev);
        msg = msg ? msg : "";
        if (g->json) {
            if (t != SIMPLEX_AGENT_EVENT_ERR)
                jint(&b, "msg_id", (long long)simplex_agent_event_msg_id(ev));
            jstr(&b, "error", simplex_strerror(code));
            jint(&b, "code", code);
            jstr(&b, "message", msg);
            if (srv && *srv)
                jstr(&b, "server", srv);
        } else {
            if (t != SIMPLEX_AGENT_EVENT_ERR)
                sb_printf(&b, " %lld",
                          (long long)simplex_agent_event_msg_id(ev));
            sb_printf(&b, " %s (%d)", simplex_strerror(code), code);
            if (*msg) {
                sb_puts(&b, ": ");
                sb_text_bytes(&b, (const uint8_t *)msg, strlen(msg));
            }
            if (srv && *srv)
                sb_printf(&b, " [%s]", srv);
        }
        break;
    }
    case SIMPLEX_AGENT_EVENT_DOWN:
    case SIMPLEX_AGENT_EVENT_UP: {
        const char *srv = simplex_agent_event_server(ev);
        if (g->json)
            jstr(&b, "server", srv);
        else
            sb_printf(&b, " %s", srv ? srv : "");
        break;
    }
    default:
        break;
    }
    emit(&b, g->json);
}

/* ---- the agent ---- */

static void log_to_stderr(int level, const char *message, void *user_data)
{
    static const char *const names[] = {"?", "error", "warn", "info",
                                        "debug"};
    (void)user_data;
    fprintf(stderr, "simplex-cli[%ld] %s: %s\n", (long)getpid(),
            names[level >= 1 && level <= 4 ? level : 0], message);
}

/* Reads the first line of path into out; 0 when it holds an address. */
static int read_addr_file(const char *path, char *out, size_t n)
{
    FILE *f = fopen(path, "r");
    size_t len;
    if (!f)
        return -1;
    if (!fgets(out, (int)n, f)) {
        fclose(f);
        return -1;
    }
    fclose(f);
    len = strcspn(out, "\r\n");
    out[len] = 0;
    return strncmp(out, "smp://", 6) == 0 ? 0 : -1;
}

/* The server when none was given: $SIMPLEX_SERVER, else the address a
 * running `make demo` wrote to <build dir>/demo-server.addr (looked for
 * next to this program's bin directory, then in ./build). */
static const char *default_server(gopts *g)
{
    const char *env = getenv("SIMPLEX_SERVER");
    char self[PATH_MAX], path[PATH_MAX + 64];
    ssize_t len;
    if (env && *env)
        return env;
    len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        char *slash;
        self[len] = 0;
        slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            snprintf(path, sizeof path, "%s/../demo-server.addr", self);
            if (read_addr_file(path, g->default_server,
                               sizeof g->default_server) == 0)
                return g->default_server;
        }
    }
    if (read_addr_file("build/demo-server.addr", g->default_server,
                       sizeof g->default_server) == 0)
        return g->default_server;
    return NULL;
}

static int open_agent(const gopts *g, simplex_agent **a, int subscribe)
{
    simplex_agent_options o;
    int rc = simplex_agent_options_init(&o, SIMPLEX_AGENT_OPTIONS_VERSION);
    if (rc)
        return report_error(g, NULL, "options", rc);
    o.db_path = g->db;
    o.servers = g->n_servers ? g->servers : NULL;
    o.n_servers = g->n_servers;
    o.flags = g->flags | (subscribe ? 0u : SIMPLEX_AGENT_NO_SUBSCRIBE);
    o.socks5_proxy = g->socks5;
    o.retry_initial_ms = g->retry_ms;
    o.message_timeout_s = g->message_timeout_s;
    o.event_cb = NULL;
    o.user_data = NULL;
    rc = simplex_agent_new(a, &o);
    if (rc) {
        *a = NULL;
        return report_error(g, NULL, "open", rc);
    }
    return EXIT_OK;
}

/* SIGINT and SIGTERM are blocked in every thread while an agent waits
 * for events, and polled between waits, so that a signal never
 * interrupts the library and the agent is always freed cleanly. */
static sigset_t g_stop_set;

static void block_stop_signals(void)
{
    sigemptyset(&g_stop_set);
    sigaddset(&g_stop_set, SIGINT);
    sigaddset(&g_stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &g_stop_set, NULL);
}

static int stop_requested(void)
{
    struct timespec zero = {0, 0};
    return sigtimedwait(&g_stop_set, NULL, &zero) > 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;
    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Reads all of stdin (send CONN -). */
static int read_stdin(sbuf *b)
{
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, stdin)) > 0)
        sb_put(b, tmp, n);
    return ferror(stdin) ? -1 : 0;
}

/* ---- commands ---- */

static int cmd_create(const gopts *g, int argc, char **argv)
{
    simplex_agent *a = NULL;
    char conn[SIMPLEX_AGENT_ID_MAX];
    simplex_buf link = {NULL, 0};
    sbuf b = {NULL, 0, 0};
    int rc;
    (void)argv;
    if (argc != 0)
        return report_other(g, EXIT_USAGE, "create takes no arguments");
    if ((rc = open_agent(g, &a, 0)) != 0)
        return rc;
    rc = simplex_agent_create_connection(a, conn, &link);
    if (rc) {
        rc = report_error(g, a, "create", rc);
    } else {
        const char *l = link.data ? (const char *)link.data : "";
        if (g->json) {
            jopen(&b);
            jstr(&b, "event", "created");
            jstr(&b, "conn", conn);
            jstr(&b, "link", l);
        } else {
            sb_printf(&b, "%s\n%s", conn, l);
        }
        emit(&b, g->json);
    }
    simplex_buf_dispose(&link);
    simplex_agent_free(a);
    return rc;
}

/* Parses [--info TEXT] from the remaining arguments. */
static int parse_info(const gopts *g, int argc, char **argv,
                      const char **info)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--info") == 0 && i + 1 < argc)
            *info = argv[++i];
        else
            return report_other(g, EXIT_USAGE, "unexpected argument %s",
                                argv[i]);
    }
    return EXIT_OK;
}

/* Before a one-shot command exits: give the delivery threads up to
 * --flush-timeout to hand what was stored to the server. What remains
 * stays stored (the next command on this database sends it). */
static void flush_before_exit(const gopts *g, simplex_agent *a)
{
    if (!g->flush_ms)
        return;
    if (simplex_agent_flush(a, (int)g->flush_ms) == SIMPLEX_ERR_TIMEOUT &&
        !g->json)
        fprintf(stderr, "simplex-cli: not sent yet (stored; the next "
                        "command on this database sends it)\n");
}

static int cmd_join(const gopts *g, int argc, char **argv)
{
    simplex_agent *a = NULL;
    char conn[SIMPLEX_AGENT_ID_MAX];
    const char *info = "simplex-cli";
    int rc;
    if (argc < 1)
        return report_other(g, EXIT_USAGE, "join LINK [--info TEXT]");
    if ((rc = parse_info(g, argc - 1, argv + 1, &info)) != 0)
        return rc;
    if ((rc = open_agent(g, &a, 0)) != 0)
        return rc;
    rc = simplex_agent_join_connection(a, conn, argv[0],
                                       (const uint8_t *)info, strlen(info));
    if (rc)
        rc = report_error(g, a, "join", rc);
    else {
        emit_simple(g, "joined", conn);
        flush_before_exit(g, a);
    }
    simplex_agent_free(a);
    return rc;
}

static int cmd_allow(const gopts *g, int argc, char **argv)
{
    simplex_agent *a = NULL;
    const char *info = "simplex-cli";
    int rc;
    if (argc < 2)
        return report_other(g, EXIT_USAGE, "allow CONN CONF_ID [--info TEXT]");
    if ((rc = parse_info(g, argc - 2, argv + 2, &info)) != 0)
        return rc;
    if ((rc = open_agent(g, &a, 0)) != 0)
        return rc;
    rc = simplex_agent_allow_connection(a, argv[0], argv[1],
                                        (const uint8_t *)info, strlen(info));
    if (rc)
        rc = report_error(g, a, "allow", rc);
    else {
        emit_simple(g, "allowed", argv[0]);
        flush_before_exit(g, a);
    }
    simplex_agent_free(a);
    return rc;
}

/* Prints {"event":"accepted","conn":NEW,"req_id":R} or
 * "accepted NEW R". */
static void emit_accepted(const gopts *g, const char *conn, const char *req)
{
    sbuf b = {NULL, 0, 0};
    if (g->json) {
        jopen(&b);
        jstr(&b, "event", "accepted");
        jstr(&b, "conn", conn);
        jstr(&b, "req_id", req);
    } else {
        sb_printf(&b, "accepted %s %s", conn, req);
    }
    emit(&b, g->json);
}

/* accept REQ_ID [--info TEXT]: a contact request (REQ). */
static int cmd_accept_contact(const gopts *g, int argc, char **argv)
{
    simplex_agent *a = NULL;
    char conn[SIMPLEX_AGENT_ID_MAX];
    const char *info = "simplex-cli";
    int rc;
    if (argc < 1)
        return report_other(g, EXIT_USAGE, "accept REQ_ID [--info TEXT]");
    if ((rc = parse_info(g, argc - 1, argv + 1, &info)) != 0)
        return rc;
    if ((rc = open_agent(g, &a, 0)) != 0)
        return rc;
    rc = simplex_agent_accept_contact(a, conn, argv[0], (const uint8_t *)info,
                                      strlen(info));
    if (rc)
        rc = report_error(g, a, "accept", rc);
    else {
        emit_accepted(g, conn, argv[0]);
        flush_before_exit(g, a);
    }
    simplex_agent_free(a);
    return rc;
}

/* accept takes a contact request (REQ_ID) or, as before, a confirmation
 * (CONN CONF_ID, the same as allow): told apart by the number of
 * arguments before the options. */
static int cmd_accept(const gopts *g, int argc, char **argv)
{
    int npos = 0;
    while (npos < argc && strcmp(argv[npos], "--info") != 0)
        npos++;
    if (npos == 1)
        return cmd_accept_contact(g, argc, argv);
    if (npos == 2)
        return cmd_allow(g, argc, argv);
    return report_other(g, EXIT_USAGE,
                        "accept REQ_ID [--info TEXT] (a contact request) or "
                        "accept CONN CONF_ID [--info TEXT] (a confirmation)");
}

static int cmd_reject(const gopts *g, int argc, char **argv)
{
    simplex_agent *a = NULL;
    sbuf b = {NULL, 0, 0};
    int rc;
    if (argc != 1)
        return report_other(g, EXIT_USAGE, "reject REQ_ID");
    if ((rc = open_agent(g, &a, 0)) != 0)
        return rc;
    rc = simplex_agent_reject_contact(a, argv[0]);
    if (rc) {
        rc = report_error(g, a, "reject", rc);
    } else {
        if (g->json) {
            jopen(&b);
            jstr(&b, "event", "rejected");
            jstr(&b, "req_id", argv[0]);
        } else {
            sb_printf(&b, "rejected %s", argv[0]);
        }
        emit(&b, g->json);
    }
    simplex_agent_free(a);
    return rc;
}

/* Prints {"event":event,"conn":conn,"link":link}; in text: the id line
 * (when with_id) and the link line. */
static void emit_link(const gopts *g, const char *event, const char *conn,
                      const simplex_buf *link, int with_id)
{
    const char *l = link->data ? (const char *)link->data : "";
    sbuf b = {NULL, 0, 0};
    if (g->json) {
        jopen(&b);
        jstr(&b, "event", event);
        jstr(&b, "conn", conn);
        jstr(&b, "link", l);
    } else if (with_id) {
        sb_printf(&b, "%s\n%s", conn, l);
    } else {
        sb_puts(&b, l);
    }
    emit(&b, g->json);
}

/* link CONN: the link of an invitation not yet joined (or an address). */
static int cmd_link(const gopts *g, int argc, char **argv)
{
    simplex_agent *a = NULL;
    simplex_buf link = {NULL, 0};
    int rc;
    if (argc != 1)
        return report_other(g, EXIT_USAGE, "link CONN");
    if ((rc = open_agent(g, &a, 0)) != 0)
        return rc;
    rc = simplex_agent_get_link(a, argv[0], &link);
    if (rc)
        rc = report_error(g, a, "link", rc);
    else
        emit_link(g, "link", argv[0], &link, 0);
    simplex_buf_dispose(&link);
    simplex_agent_free(a);
    return rc;
}

/* The contact address to use: given (it must be one), else the only one
 * stored. Its id into out; EXIT_OK or the exit status (reported). */
static int pick_address(const gopts *g, simplex_agent *a, const char *given,
                        char out[SIMPLEX_AGENT_ID_MAX])
{
    simplex_buf list = {NULL, 0};
    simplex_agent_conn_status st;
    size_t found = 0;
    char *p;
    int rc;
    if (given) {
        rc = simplex_agent_connection_status(a, given, &st);
        if (rc)
            return report_error(g, a, "address", rc);
        if (st != SIMPLEX_AGENT_CONN_CONTACT)
            return report_other(g, EXIT_USAGE,
                                "%s is not a contact address (status %s)",
                                given, simplex_agent_conn_status_name(st));
        if (strlen(given) >= SIMPLEX_AGENT_ID_MAX)
            return report_other(g, EXIT_USAGE, "id too long");
        strcpy(out, given);
        return EXIT_OK;
    }
    rc = simplex_agent_list_connections(a, &list, NULL);
    if (rc)
        return report_error(g, a, "connections", rc);
    p = list.data ? (char *)list.data : NULL;
    while (p && *p) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = 0;
        if (*p) {
            rc = simplex_agent_connection_status(a, p, &st);
            if (rc) {
                simplex_buf_dispose(&list);
                return report_error(g, a, "status", rc);
            }
            if (st == SIMPLEX_AGENT_CONN_CONTACT &&
                strlen(p) < SIMPLEX_AGENT_ID_MAX && found++ == 0)
                strcpy(out, p);
        }
        p = nl ? nl + 1 : NULL;
    }
    simplex_buf_dispose(&list);
    if (found == 0)
        return report_other(g, EXIT_USAGE,
                            "no contact address (address create makes one)");
    if (found > 1)
        return report_other(g, EXIT_USAGE,
                            "%zu contact addresses: give ADDR_ID (see "
                            "connections)",
                            found);
    return EXIT_OK;
}

/* address create | show [ADDR] | delete [ADDR] */
static int cmd_address(const gopts *g, int argc, char **argv)
{
    simplex_agent *a = NULL;
    char conn[SIMPLEX_AGENT_ID_MAX];
    simplex_buf link = {NULL, 0};
    const char *sub = argc > 0 ? argv[0] : "";
    int rc;
    if (strcmp(sub, "create") == 0) {
        if (argc != 1)
            return report_other(g, EXIT_USAGE,
                                "address create takes no arguments");
    } else if (strcmp(sub, "show") == 0 || strcmp(sub, "delete") == 0) {
        if (argc > 2)
            return report_other(g, EXIT_USAGE, "address %s [ADDR_ID]", sub);
    } else {
        return report_other(g, EXIT_USAGE,
                            "address create | show [ADDR_ID] | delete "
                            "[ADDR_ID]");
    }
    if ((rc = open_agent(g, &a, 0)) != 0)
        return rc;
    if (strcmp(sub, "create") == 0) {
        rc = simplex_agent_create_address(a, conn, &link);
        if (rc)
            rc = report_error(g, a, "address create", rc);
        else
            emit_link(g, "address", conn, &link, 1);
    } else if ((rc = pick_address(g, a, argc > 1 ? argv[1] : NULL, conn)) !=
               EXIT_OK) {
        /* reported */
    } else if (strcmp(sub, "show") == 0) {
        rc = simplex_agent_get_link(a, conn, &link);
        if (rc)
            rc = report_error(g, a, "address show", rc);
        else
            emit_link(g, "address", conn, &link, 0);
    } else {
        rc = simplex_agent_delete_connection(a, conn);
        if (rc)
            rc = report_error(g, a, "address delete", rc);
        else
            emit_simple(g, "deleted", conn);
    }
    simplex_buf_dispose(&link);
    simplex_agent_free(a);
    return rc;
}

static int cmd_connections(const gopts *g, int argc, char **argv)
{
    simplex_agent *a = NULL;
    simplex_buf list = {NULL, 0};
    int rc;
    (void)argv;
    if (argc != 0)
        return report_other(g, EXIT_USAGE, "connections takes no arguments");
    if ((rc = open_agent(g, &a, 0)) != 0)
        return rc;
    rc = simplex_agent_list_connections(a, &list, NULL);
    if (rc) {
        rc = report_error(g, a, "connections", rc);
    } else {
        char *p = list.data ? (char *)list.data : NULL;
        while (p && *p) {
            char *nl = strchr(p, '\n');
            simplex_agent_conn_status st;
            sbuf b = {NULL, 0, 0};
            int r;
            if (nl)
                *nl = 0;
            if (*p) {
                r = simplex_agent_connection_status(a, p, &st);
                if (r) {
                    rc = report_error(g, a, "status", r);
                    break;
                }
                if (g->json) {
                    jopen(&b);
                    jstr(&b, "event", "connection");
                    jstr(&b, "conn", p);
                    jstr(&b, "status", simplex_agent_conn_status_name(st));
                } else {
                    sb_printf(&b, "%s %s", p,
                              simplex_agent_conn_status_name(st));
                }
                emit(&b, g->json);
            }
            p = nl ? nl + 1 : NULL;
        }
    }
    simplex_buf_dispose(&list);
    simplex_agent_free(a);
    return rc;
}

static int cmd_send(const gopts *g, int argc, char **argv)
{
    simplex_agent *a = NULL;
    sbuf text = {NULL, 0, 0};
    int wait_sent = 0, rc, i;
    unsigned long timeout_s = 0;
    int64_t msg_id = 0;
    const char *conn;
    sbuf b = {NULL, 0, 0};
    double deadline = 0;

    if (argc < 2)
        return report_other(g, EXIT_USAGE,
                            "send CONN TEXT [--wait-sent] [--timeout S]");
    conn = argv[0];
    for (i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--wait-sent") == 0)
            wait_sent = 1;
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc &&
                 parse_uint(argv[i + 1], 86400, &timeout_s) == 0)
            i++;
        else
            return report_other(g, EXIT_USAGE, "unexpected argument %s",
                                argv[i]);
    }
    if (strcmp(argv[1], "-") == 0) {
        if (read_stdin(&text) != 0)
            return report_other(g, EXIT_USAGE, "cannot read stdin");
    } else {
        sb_puts(&text, argv[1]);
    }
    if (wait_sent)
        block_stop_signals();
    if ((rc = open_agent(g, &a, 0)) != 0) {
        free(text.p);
        return rc;
    }
    rc = simplex_agent_send(a, conn, (const uint8_t *)(text.p ? text.p : ""),
                            text.len, &msg_id);
    free(text.p);
    if (rc) {
        rc = report_error(g, a, "send", rc);
        simplex_agent_free(a);
        return rc;
    }
    if (g->json) {
        jopen(&b);
        jstr(&b, "event", "stored");
        jstr(&b, "conn", conn);
        jint(&b, "msg_id", (long long)msg_id);
    } else {
        sb_printf(&b, "stored %s %lld", conn, (long long)msg_id);
    }
    emit(&b, g->json);
    if (timeout_s)
        deadline = now_ms() + (double)timeout_s * 1000.0;
    while (wait_sent) {
        simplex_agent_event *ev = NULL;
        simplex_agent_event_type t;
        int wait_ms = 250;
        if (stop_requested()) {
            rc = report_other(g, EXIT_TIMEOUT,
                              "interrupted before message %lld was sent "
                              "(it stays stored)",
                              (long long)msg_id);
            break;
        }
        if (deadline) {
            double left = deadline - now_ms();
            if (left <= 0) {
                rc = report_other(g, EXIT_TIMEOUT,
                                  "message %lld not sent in %lu s",
                                  (long long)msg_id, timeout_s);
                break;
            }
            if (left < wait_ms)
                wait_ms = (int)left + 1;
        }
        rc = simplex_agent_next_event(a, wait_ms, &ev);
        if (rc == SIMPLEX_ERR_TIMEOUT)
            continue;
        if (rc) {
            rc = report_error(g, a, "next_event", rc);
            break;
        }
        t = simplex_agent_event_get_type(ev);
        if ((t == SIMPLEX_AGENT_EVENT_SENT || t == SIMPLEX_AGENT_EVENT_MERR ||
             t == SIMPLEX_AGENT_EVENT_MWARN) &&
            simplex_agent_event_msg_id(ev) == msg_id &&
            strcmp(simplex_agent_event_conn_id(ev), conn) == 0) {
            print_event(g, ev);
            if (t == SIMPLEX_AGENT_EVENT_MERR)
                fprintf(stderr, "simplex-cli: message %lld not sent: %s\n",
                        (long long)msg_id, simplex_agent_event_message(ev));
            simplex_agent_event_free(ev);
            if (t == SIMPLEX_AGENT_EVENT_SENT) {
                rc = EXIT_OK;
                break;
            }
            if (t == SIMPLEX_AGENT_EVENT_MERR) {
                rc = EXIT_FAILED;
                break;
            }
            continue;
        }
        if (t == SIMPLEX_AGENT_EVENT_ERR &&
            strcmp(simplex_agent_event_conn_id(ev), conn) == 0)
            print_event(g, ev);
        simplex_agent_event_free(ev);
    }
    if (!wait_sent)
        flush_before_exit(g, a);
    simplex_agent_free(a);
    return g_out_failed && rc == EXIT_OK ? EXIT_FAILED : rc;
}

static int cmd_listen(const gopts *g, int argc, char **argv)
{
    simplex_agent *a = NULL;
    int accept = 0, no_ack = 0, rc = EXIT_OK, i;
    unsigned long count = 0, timeout_s = 0, msgs = 0;
    const char *info = "simplex-cli", *until = NULL;
    double deadline = 0;

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--accept") == 0)
            accept = 1;
        else if (strcmp(argv[i], "--no-ack") == 0)
            no_ack = 1;
        else if (strcmp(argv[i], "--info") == 0 && i + 1 < argc)
            info = argv[++i];
        else if (strcmp(argv[i], "--until") == 0 && i + 1 < argc)
            until = argv[++i];
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc &&
                 parse_uint(argv[i + 1], 100000000ul, &count) == 0)
            i++;
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc &&
                 parse_uint(argv[i + 1], 86400ul * 365, &timeout_s) == 0 &&
                 timeout_s > 0)
            i++;
        else
            return report_other(g, EXIT_USAGE, "unexpected argument %s",
                                argv[i]);
    }
    block_stop_signals();
    if ((rc = open_agent(g, &a, 1)) != 0)
        return rc;
    if (timeout_s)
        deadline = now_ms() + (double)timeout_s * 1000.0;
    for (;;) {
        simplex_agent_event *ev = NULL;
        simplex_agent_event_type t;
        const char *name;
        int wait_ms = 250, r;

        if (g_out_failed) { /* the reader went away */
            rc = EXIT_FAILED;
            break;
        }
        if (stop_requested()) {
            rc = EXIT_OK;
            break;
        }
        if (count && msgs >= count) {
            rc = EXIT_OK;
            break;
        }
        if (deadline) {
            double left = deadline - now_ms();
            if (left <= 0) {
                if (count)
                    rc = report_other(g, EXIT_TIMEOUT,
                                      "%lu of %lu messages in %lu s", msgs,
                                      count, timeout_s);
                else if (until)
                    rc = report_other(g, EXIT_TIMEOUT, "no %s in %lu s",
                                      until, timeout_s);
                else
                    rc = EXIT_OK;
                break;
            }
            if (left < wait_ms)
                wait_ms = (int)left + 1;
        }
        r = simplex_agent_next_event(a, wait_ms, &ev);
        if (r == SIMPLEX_ERR_TIMEOUT)
            continue;
        if (r) {
            rc = report_error(g, a, "next_event", r);
            break;
        }
        print_event(g, ev);
        t = simplex_agent_event_get_type(ev);
        name = simplex_agent_event_name(ev);
        if (t == SIMPLEX_AGENT_EVENT_MSG && no_ack) {
            msgs++;
        } else if (t == SIMPLEX_AGENT_EVENT_MSG) {
            /* acknowledged after it was printed, with a delivery receipt */
            static const uint8_t empty[1] = {0};
            r = simplex_agent_ack(a, simplex_agent_event_conn_id(ev),
                                  simplex_agent_event_msg_id(ev), empty, 0);
            if (r) {
                rc = report_error(g, a, "ack", r);
                simplex_agent_event_free(ev);
                break;
            }
            msgs++;
        } else if (t == SIMPLEX_AGENT_EVENT_CONF && accept) {
            const char *conn = simplex_agent_event_conn_id(ev);
            r = simplex_agent_allow_connection(a, conn,
                                               simplex_agent_event_conf_id(ev),
                                               (const uint8_t *)info,
                                               strlen(info));
            if (r) {
                rc = report_error(g, a, "allow", r);
                simplex_agent_event_free(ev);
                break;
            }
            emit_simple(g, "allowed", conn);
        } else if (t == SIMPLEX_AGENT_EVENT_REQ && accept) {
            char conn[SIMPLEX_AGENT_ID_MAX];
            const char *req = simplex_agent_event_conf_id(ev);
            r = simplex_agent_accept_contact(a, conn, req,
                                             (const uint8_t *)info,
                                             strlen(info));
            if (r) {
                rc = report_error(g, a, "accept", r);
                simplex_agent_event_free(ev);
                break;
            }
            emit_accepted(g, conn, req);
        }
        if (until && name && strcmp(until, name) == 0) {
            simplex_agent_event_free(ev);
            rc = EXIT_OK;
            break;
        }
        simplex_agent_event_free(ev);
    }
    simplex_agent_free(a);
    return rc;
}

static int cmd_delete_suspend(const gopts *g, int argc, char **argv,
                              int del)
{
    simplex_agent *a = NULL;
    int rc;
    if (argc != 1)
        return report_other(g, EXIT_USAGE, "%s CONN",
                            del ? "delete" : "suspend");
    if ((rc = open_agent(g, &a, 0)) != 0)
        return rc;
    rc = del ? simplex_agent_delete_connection(a, argv[0])
             : simplex_agent_suspend_connection(a, argv[0]);
    if (rc)
        rc = report_error(g, a, del ? "delete" : "suspend", rc);
    else
        emit_simple(g, del ? "deleted" : "suspended", argv[0]);
    simplex_agent_free(a);
    return rc;
}

static int agent_main(int argc, char **argv)
{
    static gopts g = {.flush_ms = 3000};
    char **rest;
    int nrest, i, rc;
    unsigned long v;
    const char *cmd;
    simplex_global_options go;

    memset(&g, 0, sizeof g);
    /* global options come before the command; the rest is the command's */
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--") == 0) {
            i++;
            break;
        } else if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            usage_server_test(stdout);
            usage_agent(stdout);
            return EXIT_OK;
        } else if (strcmp(s, "--json") == 0) {
            g.json = 1;
        } else if (strcmp(s, "--no-sender-secure") == 0) {
            g.flags |= SIMPLEX_AGENT_NO_SENDER_SECURE;
        } else if (strcmp(s, "--verbose") == 0 || strcmp(s, "-v") == 0) {
            g.verbose++;
        } else if (strcmp(s, "--db") == 0 && i + 1 < argc) {
            g.db = argv[++i];
        } else if (strcmp(s, "--server") == 0 && i + 1 < argc) {
            if (g.n_servers >= sizeof g.servers / sizeof g.servers[0])
                return report_other(&g, EXIT_USAGE, "too many servers");
            g.servers[g.n_servers++] = argv[++i];
        } else if (strcmp(s, "--socks5") == 0 && i + 1 < argc) {
            g.socks5 = argv[++i];
        } else if (strcmp(s, "--retry-ms") == 0 && i + 1 < argc &&
                   parse_uint(argv[i + 1], 3600000ul, &v) == 0 && v > 0) {
            g.retry_ms = (unsigned)v;
            i++;
        } else if (strcmp(s, "--flush-timeout") == 0 && i + 1 < argc &&
                   parse_uint(argv[i + 1], 86400ul, &v) == 0) {
            g.flush_ms = (unsigned)v * 1000u;
            i++;
        } else if (strcmp(s, "--message-timeout") == 0 && i + 1 < argc &&
                   parse_uint(argv[i + 1], 86400ul * 365, &v) == 0 &&
                   v > 0) {
            g.message_timeout_s = (unsigned)v;
            i++;
        } else {
            return report_other(&g, EXIT_USAGE, "unknown option %s", s);
        }
    }
    rest = argv + i;
    nrest = argc - i;
    if (nrest == 0)
        return report_other(&g, EXIT_USAGE, "no command given");
    cmd = rest[0];
    if (strcmp(cmd, "create") != 0 && strcmp(cmd, "join") != 0 &&
        strcmp(cmd, "allow") != 0 && strcmp(cmd, "accept") != 0 &&
        strcmp(cmd, "reject") != 0 && strcmp(cmd, "address") != 0 &&
        strcmp(cmd, "link") != 0 &&
        strcmp(cmd, "connections") != 0 && strcmp(cmd, "send") != 0 &&
        strcmp(cmd, "listen") != 0 && strcmp(cmd, "delete") != 0 &&
        strcmp(cmd, "suspend") != 0)
        return report_other(&g, EXIT_USAGE, "unknown command %s", cmd);
    if (!g.db)
        return report_other(&g, EXIT_USAGE,
                            "%s needs the database: --db FILE", cmd);
    if (g.n_servers == 0) {
        const char *d = default_server(&g);
        if (d)
            g.servers[g.n_servers++] = d;
        else if (strcmp(cmd, "create") == 0 || strcmp(cmd, "join") == 0 ||
                 (strcmp(cmd, "address") == 0 && nrest > 1 &&
                  strcmp(rest[1], "create") == 0))
            return report_other(&g, EXIT_USAGE,
                                "no SMP server: pass --server smp://... "
                                "(or set SIMPLEX_SERVER, or start `make "
                                "demo`)");
    }
    signal(SIGPIPE, SIG_IGN);
    if (simplex_global_options_init(&go, SIMPLEX_GLOBAL_OPTIONS_VERSION) != 0)
        return EXIT_FAILED;
    if (g.verbose) {
        go.log_cb = log_to_stderr;
        go.log_level = g.verbose > 1 ? SIMPLEX_LOG_DEBUG : SIMPLEX_LOG_INFO;
    }
    if ((rc = simplex_global_init(&go)) != 0)
        return report_error(&g, NULL, "init", rc);

    if (strcmp(cmd, "create") == 0)
        rc = cmd_create(&g, nrest - 1, rest + 1);
    else if (strcmp(cmd, "join") == 0)
        rc = cmd_join(&g, nrest - 1, rest + 1);
    else if (strcmp(cmd, "allow") == 0)
        rc = cmd_allow(&g, nrest - 1, rest + 1);
    else if (strcmp(cmd, "accept") == 0)
        rc = cmd_accept(&g, nrest - 1, rest + 1);
    else if (strcmp(cmd, "reject") == 0)
        rc = cmd_reject(&g, nrest - 1, rest + 1);
    else if (strcmp(cmd, "address") == 0)
        rc = cmd_address(&g, nrest - 1, rest + 1);
    else if (strcmp(cmd, "link") == 0)
        rc = cmd_link(&g, nrest - 1, rest + 1);
    else if (strcmp(cmd, "connections") == 0)
        rc = cmd_connections(&g, nrest - 1, rest + 1);
    else if (strcmp(cmd, "send") == 0)
        rc = cmd_send(&g, nrest - 1, rest + 1);
    else if (strcmp(cmd, "listen") == 0)
        rc = cmd_listen(&g, nrest - 1, rest + 1);
    else
        rc = cmd_delete_suspend(&g, nrest - 1, rest + 1,
                                strcmp(cmd, "delete") == 0);
    simplex_global_cleanup();
    if (rc == EXIT_OK && g_out_failed)
        rc = EXIT_FAILED;
    return rc;
}

static int server_test_main(int argc, char **argv)
{
    const char *server = NULL, *socks5 = NULL, *proxy = NULL;
    unsigned timeout_s = 10;
    int i, rc;

    for (i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end || t <= 0 || t > 3600) {
                usage_server_test(stderr);
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
            usage_server_test(stderr);
            return 2;
        }
    }
    if (!server) {
        usage_server_test(stderr);
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

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "server-test") == 0)
        return server_test_main(argc, argv);
    return agent_main(argc, argv);
}
