/*
 * SMP client: the public API. Each call builds a request, posts it to the
 * I/O thread (client_loop.c) through the inbox and a wake-up pipe, and
 * waits on the client's condition variable until the loop marks it done.
 * The loop always finishes a request (answer, response timeout, connect
 * failure, or client shutdown), so the wait has no deadline of its own.
 */
#define _DEFAULT_SOURCE 1

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/client_int.h"
#include "crypto/crypto.h"

int simplex_client_options_init(simplex_client_options *opts, unsigned version)
{
    if (!opts)
        return SIMPLEX_ERR_INVALID_ARG;
    if (version != SIMPLEX_CLIENT_OPTIONS_VERSION)
        return SIMPLEX_ERR_UNSUPPORTED;
    memset(opts, 0, sizeof *opts);
    opts->version = version;
    return 0;
}

/* The last failure is kept per thread (so that threads sharing a client
 * each read their own) and per client (for a reader on another thread). */
static _Thread_local struct {
    const simplex_client *owner;
    char msg[sizeof ((simplex_client *)0)->last_err];
} tl_err;

static void set_error(simplex_client *c, const char *msg)
{
    size_t n = strlen(msg);
    if (n >= sizeof c->last_err)
        n = sizeof c->last_err - 1;
    memcpy(tl_err.msg, msg, n);
    tl_err.msg[n] = 0;
    tl_err.owner = c;
    pthread_mutex_lock(&c->mu);
    memcpy(c->last_err, msg, n);
    c->last_err[n] = 0;
    pthread_mutex_unlock(&c->mu);
}

static int fail(simplex_client *c, int rc, const char *msg)
{
    set_error(c, msg && *msg ? msg : simplex_strerror(rc));
    return rc;
}

static int on_io_thread(const simplex_client *c)
{
    return c->thread_started && pthread_equal(pthread_self(), c->thread);
}

int simplex_client_last_error(simplex_client *c, simplex_buf *out)
{
    size_t n;
    if (!c || !out)
        return SIMPLEX_ERR_INVALID_ARG;
    if (tl_err.owner == c) {
        n = strlen(tl_err.msg);
        out->data = sx_malloc(n + 1);
        if (out->data)
            memcpy(out->data, tl_err.msg, n + 1);
    } else {
        pthread_mutex_lock(&c->mu);
        n = strlen(c->last_err);
        out->data = sx_malloc(n + 1);
        if (out->data)
            memcpy(out->data, c->last_err, n + 1);
        pthread_mutex_unlock(&c->mu);
    }
    out->len = out->data ? n : 0;
    return out->data ? 0 : SIMPLEX_ERR_NOMEM;
}

/* "host:port", "[v6]:port" */
static int parse_proxy(simplex_client *c, const char *s)
{
    const char *colon, *h = s, *he;
    char *end;
    unsigned long port;
    size_t hl;
    if (*s == '[') {
        he = strchr(s, ']');
        if (!he || he[1] != ':')
            return SIMPLEX_ERR_INVALID_ARG;
        h = s + 1;
        colon = he + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return SIMPLEX_ERR_INVALID_ARG;
        he = colon;
    }
    hl = (size_t)(he - h);
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (hl == 0 || hl > 255 || *end || errno || port == 0 || port > 65535)
        return SIMPLEX_ERR_INVALID_ARG;
    c->proxy_host = sx_malloc(hl + 1);
    if (!c->proxy_host)
        return SIMPLEX_ERR_NOMEM;
    memcpy(c->proxy_host, h, hl);
    c->proxy_host[hl] = 0;
    c->proxy_port = (uint16_t)port;
    return 0;
}

static void client_release(simplex_client *c)
{
    while (c->ev_head) {
        simplex_client_event *ev = c->ev_head;
        c->ev_head = ev->next;
        simplex_client_event_free(ev);
    }
    if (c->wake_fd[0] >= 0)
        close(c->wake_fd[0]);
    if (c->wake_fd[1] >= 0)
        close(c->wake_fd[1]);
    sx_tls_ctx_free(c->tls_ctx);
    cl_relays_free(c);
    while (c->async_cache) {
        cl_req *r = c->async_cache;
        c->async_cache = r->next;
        sx_free(r);
    }
    sx_free(c->proxy_host);
    if (c->proxy_user)
        sx_free_secret(c->proxy_user, strlen(c->proxy_user));
    if (c->proxy_pass)
        sx_free_secret(c->proxy_pass, strlen(c->proxy_pass));
    pthread_cond_destroy(&c->cv);
    pthread_cond_destroy(&c->ev_cv);
    pthread_mutex_destroy(&c->mu);
    sx_free(c);
}

int simplex_client_new(simplex_client **out, const simplex_client_options *opts)
{
    simplex_client *c;
    int rc;
    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    if (opts && opts->version != SIMPLEX_CLIENT_OPTIONS_VERSION)
        return SIMPLEX_ERR_UNSUPPORTED;
    if (!sx_initialized())
        return SIMPLEX_ERR_NOT_INITIALIZED;
    c = sx_calloc(1, sizeof *c);
    if (!c)
        return SIMPLEX_ERR_NOMEM;
    c->wake_fd[0] = c->wake_fd[1] = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    pthread_cond_init(&c->ev_cv, NULL);
    if (opts)
        c->opts = *opts;
    else
        simplex_client_options_init(&c->opts, SIMPLEX_CLIENT_OPTIONS_VERSION);
    if (!c->opts.connect_timeout_ms)
        c->opts.connect_timeout_ms = SX_TLS_DEFAULT_CONNECT_TIMEOUT_MS;
    if (!c->opts.response_timeout_ms)
        c->opts.response_timeout_ms = SX_SMP_SESSION_RESPONSE_TIMEOUT_MS;
    if (!c->opts.ping_interval_ms)
        c->opts.ping_interval_ms = SX_SMP_SESSION_PING_INTERVAL_MS;
    if (!c->opts.max_missed_pings)
        c->opts.max_missed_pings = SX_SMP_SESSION_MAX_MISSED_PINGS;
    if (!c->opts.reconnect_initial_ms)
        c->opts.reconnect_initial_ms = 2000;
    if (!c->opts.reconnect_max_ms)
        c->opts.reconnect_max_ms = 180000;
    if (c->opts.reconnect_max_ms < c->opts.reconnect_initial_ms)
        c->opts.reconnect_max_ms = c->opts.reconnect_initial_ms;
    c->opts.socks5_proxy = NULL;
    c->opts.socks5_username = NULL;
    c->opts.socks5_password = NULL;
    rc = 0;
    if (opts && opts->socks5_proxy)
        rc = parse_proxy(c, opts->socks5_proxy);
    if (rc == 0 && opts && opts->socks5_username &&
        !(c->proxy_user = cl_strdup(opts->socks5_username)))
        rc = SIMPLEX_ERR_NOMEM;
    if (rc == 0 && opts && opts->socks5_password &&
        !(c->proxy_pass = cl_strdup(opts->socks5_password)))
        rc = SIMPLEX_ERR_NOMEM;
    if (rc == 0 && sx_socks5_format_utctime(c->proxy_session_ts,
                                            sizeof c->proxy_session_ts,
                                            (int64_t)time(NULL), 0) < 0)
        rc = SIMPLEX_ERR_INTERNAL;
    if (rc == 0)
        rc = sx_tls_ctx_new(&c->tls_ctx);
    if (rc == 0 && sx_net_pipe(c->wake_fd) != 0)
        rc = SIMPLEX_ERR_IO;
    if (rc == 0 && pthread_create(&c->thread, NULL, cl_loop_main, c) != 0)
        rc = SIMPLEX_ERR_IO;
    if (rc != 0) {
        client_release(c);
        return rc;
    }
    c->thread_started = 1;
    *out = c;
    return 0;
}

void simplex_client_free(simplex_client *c)
{
    if (!c)
        return;
    if (tl_err.owner == c)
        tl_err.owner = NULL; /* the address may be reused */
    if (on_io_thread(c)) {
        sx_log(sx_default_logger(), SIMPLEX_LOG_ERROR,
               "simplex_client_free called from the event callback: ignored");
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->stopping = 1;
    pthread_mutex_unlock(&c->mu);
    cl_wake(c);
    pthread_join(c->thread, NULL);
    c->thread_started = 0;
    client_release(c);
}

int simplex_client_next_event(simplex_client *c, int timeout_ms,
                              simplex_client_event **out)
{
    struct timespec dl;
    int rc = 0;
    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    if (!c)
        return SIMPLEX_ERR_INVALID_ARG;
    if (on_io_thread(c))
        return SIMPLEX_ERR_RECURSIVE_CALL;
    if (c->opts.event_cb)
        return SIMPLEX_ERR_INVALID_ARG;
    if (timeout_ms > 0) {
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&c->mu);
    while (!c->ev_head && timeout_ms != 0 && rc == 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&c->ev_cv, &c->mu);
        else if (pthread_cond_timedwait(&c->ev_cv, &c->mu, &dl) == ETIMEDOUT)
            rc = 1;
    }
    if (c->ev_head) {
        *out = c->ev_head;
        c->ev_head = (*out)->next;
        if (!c->ev_head)
            c->ev_tail = NULL;
        (*out)->next = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    return *out ? 0 : SIMPLEX_ERR_TIMEOUT;
}

/* ---- posting requests ---- */

static void req_init(cl_req *r, cl_op op)
{
    memset(r, 0, sizeof *r);
    r->op = op;
    r->items = &r->one;
    r->n_items = 1;
}

static int req_server(simplex_client *c, cl_req *r, const char *server)
{
    if (!server)
        return SIMPLEX_ERR_INVALID_ARG;
    r->server = server;
    if (sx_server_addr_parse(&r->addr, server, strlen(server)) != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "not an SMP server address: %.250s",
                 server);
        return fail(c, SIMPLEX_ERR_INVALID_ARG, msg);
    }
    return 0;
}

/* Appends r to the inbox; SIMPLEX_ERR_CLOSED (r not taken) once the
 * client is being freed. The I/O thread is woken only when the inbox was
 * empty: a non-empty one already has a wake-up on its way, or was filled
 * from the I/O thread itself, which looks at the inbox again before it
 * sleeps (client_loop.c). */
static int post(simplex_client *c, cl_req *r)
{
    int wake;
    r->next = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->stopping) {
        pthread_mutex_unlock(&c->mu);
        return SIMPLEX_ERR_CLOSED;
    }
    wake = !c->inbox && !on_io_thread(c);
    if (c->inbox_tail)
        c->inbox_tail->next = r;
    else
        c->inbox = r;
    c->inbox_tail = r;
    pthread_mutex_unlock(&c->mu);
    if (wake)
        cl_wake(c);
    return 0;
}

static int wait_done(simplex_client *c, cl_req *r)
{
    pthread_mutex_lock(&c->mu);
    while (!r->done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    if (r->rc)
        set_error(c, r->err[0] ? r->err : simplex_strerror(r->rc));
    return r->rc;
}

static int run(simplex_client *c, cl_req *r)
{
    int rc = post(c, r);
    if (rc)
        return fail(c, rc, "the client is closing");
    return wait_done(c, r);
}

/* Common checks of every synchronous call. */
static int enter(simplex_client *c)
{
    if (!c)
        return SIMPLEX_ERR_INVALID_ARG;
    if (on_io_thread(c))
        return fail(c, SIMPLEX_ERR_RECURSIVE_CALL,
                    "synchronous call from the event callback");
    return 0;
}

static int queue_req(simplex_client *c, cl_req *r, cl_op op,
                     const simplex_queue *q)
{
    int rc = enter(c);
    if (rc)
        return rc;
    if (!q)
        return SIMPLEX_ERR_INVALID_ARG;
    req_init(r, op);
    r->one.q = q;
    return req_server(c, r, q->server);
}

/* for client_proxy.c */
int cl_api_enter(simplex_client *c)
{
    return enter(c);
}

void cl_api_req_init(cl_req *r, cl_op op)
{
    req_init(r, op);
}

int cl_api_req_server(simplex_client *c, cl_req *r, const char *server)
{
    return req_server(c, r, server);
}

int cl_api_run(simplex_client *c, cl_req *r)
{
    return run(c, r);
}

int cl_api_fail(simplex_client *c, int rc, const char *msg)
{
    return fail(c, rc, msg);
}

int simplex_client_connect(simplex_client *c, const char *server,
                           uint16_t *out)
{
    cl_req r;
    int rc = enter(c);
    if (rc)
        return rc;
    req_init(&r, CL_OP_CONNECT);
    if ((rc = req_server(c, &r, server)) != 0)
        return rc;
    rc = run(c, &r);
    if (rc == 0 && out)
        *out = r.version;
    return rc;
}

int simplex_client_ping(simplex_client *c, const char *server)
{
    cl_req r;
    int rc = enter(c);
    if (rc)
        return rc;
    req_init(&r, CL_OP_PING);
    if ((rc = req_server(c, &r, server)) != 0)
        return rc;
    return run(c, &r);
}

int simplex_client_create_queue(simplex_client *c, simplex_queue **out,
                                const char *server, unsigned flags)
{
    cl_req r;
    simplex_queue *q;
    int rc;
    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    if ((rc = enter(c)) != 0)
        return rc;
    req_init(&r, CL_OP_NEW);
    if ((rc = req_server(c, &r, server)) != 0)
        return rc;
    q = sx_calloc(1, sizeof *q);
    if (!q || !(q->server = cl_strdup(server))) {
        simplex_queue_free(q);
        return SIMPLEX_ERR_NOMEM;
    }
    /* the expanded key is seed || public key */
    sx_random(q->rcv_auth_sk, sizeof q->rcv_auth_sk);
    if ((rc = sx_ed25519_expand(q->rcv_auth_x, q->rcv_auth_sk)) != 0 ||
        (rc = sx_x25519_keypair(q->rcv_dh_pk, q->rcv_dh_sk)) != 0) {
        simplex_queue_free(q);
        return fail(c, rc, "key generation failed");
    }
    memcpy(q->rcv_auth_pk, q->rcv_auth_x + CL_KEY, CL_KEY);
    q->has_rcv_auth_x = 1;
    r.new_q = q;
    r.flags = flags;
    rc = run(c, &r);
    if (rc) {
        simplex_queue_free(q);
        return rc;
    }
    *out = q;
    return 0;
}

int simplex_client_secure_queue(simplex_client *c, const simplex_queue *q,
                                const uint8_t sender_public_key[32])
{
    cl_req r;
    int rc;
    if (!sender_public_key)
        return SIMPLEX_ERR_INVALID_ARG;
    if ((rc = queue_req(c, &r, CL_OP_KEY, q)) != 0)
        return rc;
    r.key = sender_public_key;
    return run(c, &r);
}

int simplex_client_subscribe(simplex_client *c,
                             const simplex_queue *const *queues, size_t n,
                             int *results)
{
    cl_req *reqs;
    cl_item *items;
    size_t i, j, nreq = 0;
    int rc = enter(c), first = 0;
    if (rc)
        return rc;
    if (!queues || n == 0)
        return SIMPLEX_ERR_INVALID_ARG;
    for (i = 0; i < n; i++)
        if (!queues[i])
            return SIMPLEX_ERR_INVALID_ARG;
    reqs = sx_calloc(n, sizeof *reqs);
    items = sx_calloc(n, sizeof *items);
    if (!reqs || !items) {
        sx_free(reqs);
        sx_free(items);
        return SIMPLEX_ERR_NOMEM;
    }
    /* one request per server, its items contiguous in queue order */
    for (i = 0; i < n; i++) {
        sx_server_addr a;
        cl_req *r = NULL;
        if (sx_server_addr_parse(&a, queues[i]->server,
                                 strlen(queues[i]->server)) != 0) {
            rc = SIMPLEX_ERR_INVALID_ARG;
            goto out;
        }
        for (j = 0; j < nreq; j++)
            if (sx_server_addr_equal(&reqs[j].addr, &a))
                r = &reqs[j];
        if (!r) {
            r = &reqs[nreq++];
            req_init(r, CL_OP_SUB);
            r->addr = a;
            r->server = queues[i]->server;
            r->n_items = 0;
        }
        r->n_items++;
    }
    {
        size_t off = 0;
        for (j = 0; j < nreq; j++) {
            reqs[j].items = items + off;
            off += reqs[j].n_items;
            reqs[j].n_items = 0;
        }
        for (i = 0; i < n; i++) {
            sx_server_addr a;
            (void)sx_server_addr_parse(&a, queues[i]->server,
                                       strlen(queues[i]->server));
            for (j = 0; j < nreq; j++)
                if (sx_server_addr_equal(&reqs[j].addr, &a)) {
                    cl_item *it = &reqs[j].items[reqs[j].n_items++];
                    it->q = queues[i];
                    it->idx = i;
                    break;
                }
        }
    }
    for (j = 0; j < nreq; j++)
        post(c, &reqs[j]);
    for (j = 0; j < nreq; j++) {
        int r = wait_done(c, &reqs[j]);
        if (r && !first)
            first = r;
        for (i = 0; i < reqs[j].n_items; i++) {
            cl_item *it = &reqs[j].items[i];
            /* items never submitted failed with the whole request */
            int ir = it->done ? it->rc : r;
            if (results)
                results[it->idx] = ir;
        }
    }
    rc = first;
out:
    sx_free(reqs);
    sx_free(items);
    return rc;
}

int simplex_client_get(simplex_client *c, const simplex_queue *q,
                       simplex_client_event **out)
{
    cl_req r;
    int rc;
    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    if ((rc = queue_req(c, &r, CL_OP_GET, q)) != 0)
        return rc;
    rc = run(c, &r);
    if (rc) {
        simplex_client_event_free(r.ev);
        return rc;
    }
    *out = r.ev;
    return 0;
}

int simplex_client_ack(simplex_client *c, const simplex_queue *q,
                       const uint8_t *msg_id, size_t msg_id_len)
{
    cl_req r;
    int rc;
    if (!msg_id || msg_id_len == 0 || msg_id_len > CL_ID_MAX)
        return SIMPLEX_ERR_INVALID_ARG;
    if ((rc = queue_req(c, &r, CL_OP_ACK, q)) != 0)
        return rc;
    r.msg_id = msg_id;
    r.msg_id_len = msg_id_len;
    return run(c, &r);
}

int simplex_client_suspend(simplex_client *c, const simplex_queue *q)
{
    cl_req r;
    int rc;
    if ((rc = queue_req(c, &r, CL_OP_OFF, q)) != 0)
        return rc;
    return run(c, &r);
}

int simplex_client_delete(simplex_client *c, const simplex_queue *q)
{
    cl_req r;
    int rc;
    if ((rc = queue_req(c, &r, CL_OP_DEL, q)) != 0)
        return rc;
    return run(c, &r);
}

int simplex_client_queue_info(simplex_client *c, const simplex_queue *q,
                              simplex_buf *out)
{
    cl_req r;
    int rc;
    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    out->data = NULL;
    out->len = 0;
    if ((rc = queue_req(c, &r, CL_OP_QUE, q)) != 0)
        return rc;
    rc = run(c, &r);
    if (rc) {
        simplex_buf_dispose(&r.info);
        return rc;
    }
    *out = r.info;
    return 0;
}

static int sender_req(simplex_client *c, cl_req *r, cl_op op,
                      const char *server, const uint8_t *sender_id,
                      size_t sender_id_len)
{
    int rc = enter(c);
    if (rc)
        return rc;
    if (!sender_id || sender_id_len == 0 || sender_id_len > CL_ID_MAX)
        return SIMPLEX_ERR_INVALID_ARG;
    req_init(r, op);
    r->entity = sender_id;
    r->entity_len = sender_id_len;
    return req_server(c, r, server);
}

int simplex_client_secure_sender(simplex_client *c, const char *server,
                                 const uint8_t *sender_id,
                                 size_t sender_id_len,
                                 const uint8_t sender_private_key[32])
{
    cl_req r;
    int rc;
    if (!sender_private_key)
        return SIMPLEX_ERR_INVALID_ARG;
    if ((rc = sender_req(c, &r, CL_OP_SKEY, server, sender_id,
                         sender_id_len)) != 0)
        return rc;
    r.key = sender_private_key;
    return run(c, &r);
}

int simplex_client_send(simplex_client *c, const char *server,
                        const uint8_t *sender_id, size_t sender_id_len,
                        const uint8_t *sender_private_key, unsigned flags,
                        const uint8_t *body, size_t body_len)
{
    cl_req r;
    int rc;
    if (!body && body_len)
        return SIMPLEX_ERR_INVALID_ARG;
    if ((rc = sender_req(c, &r, CL_OP_SEND, server, sender_id,
                         sender_id_len)) != 0)
        return rc;
    r.key = sender_private_key;
    r.flags = flags;
    r.body = body;
    r.body_len = body_len;
    return run(c, &r);
}

/* ---- asynchronous commands ---- */

/* One allocation: the request and copies of everything it points to. */
typedef struct cl_async {
    cl_req r;
    simplex_queue q;            /* ACK: the caller's queue, copied */
    uint8_t key[CL_KEY];
    uint8_t id[CL_ID_MAX];      /* SEND: sender id; ACK: message id */
    /* then the server text and the body */
} cl_async;

/* Allocations for a server text and a body up to these sizes are kept
 * for reuse, at most ASYNC_CACHE_MAX of them (about 1 MB) per client. */
#define ASYNC_BIG_TEXT 512
#define ASYNC_BIG_BODY SX_SMP_BLOCK_SIZE
#define ASYNC_BIG (sizeof(cl_async) + ASYNC_BIG_TEXT + ASYNC_BIG_BODY)
#define ASYNC_CACHE_MAX 64

static cl_async *async_new(simplex_client *c, cl_op op, const char *server,
                           size_t body_len, simplex_client_done_cb done,
                           void *ud, int *rc)
{
    size_t sl = strlen(server) + 1, n = sizeof(cl_async) + sl + body_len;
    cl_async *a = NULL;
    char *text;
    if (body_len >= 4096 && sl <= ASYNC_BIG_TEXT &&
        body_len <= ASYNC_BIG_BODY) {
        n = ASYNC_BIG;
        pthread_mutex_lock(&c->mu);
        if (c->async_cache) {
            a = (cl_async *)c->async_cache;
            c->async_cache = a->r.next;
            c->async_cached--;
        }
        pthread_mutex_unlock(&c->mu);
    }
    if (!a)
        a = sx_malloc(n);
    if (!a) {
        *rc = SIMPLEX_ERR_NOMEM;
        return NULL;
    }
    memset(a, 0, sizeof *a);
    text = (char *)(a + 1);
    memcpy(text, server, sl);
    req_init(&a->r, op);
    if ((*rc = req_server(c, &a->r, text)) != 0) {
        sx_free(a);
        return NULL;
    }
    a->r.async = 1;
    a->r.done_cb = done;
    a->r.done_ud = ud;
    a->r.alloc_len = n;
    return a;
}

/* Wipes a (it held keys and a message) and frees or caches it. */
static void async_free(simplex_client *c, cl_async *a)
{
    size_t n = a->r.alloc_len;
    /* what was written of it: the request, the server text, the body */
    sx_memzero(a, sizeof *a + strlen((const char *)(a + 1)) + 1 +
                      a->r.body_len);
    if (n == ASYNC_BIG) {
        pthread_mutex_lock(&c->mu);
        if (c->async_cached < ASYNC_CACHE_MAX && !c->stopping) {
            a->r.next = c->async_cache;
            c->async_cache = &a->r;
            c->async_cached++;
            a = NULL;
        }
        pthread_mutex_unlock(&c->mu);
    }
    sx_free(a);
}

static int async_post(simplex_client *c, cl_async *a)
{
    int rc = post(c, &a->r);
    if (rc) {
        async_free(c, a);
        return fail(c, rc, "the client is closing");
    }
    return 0;
}

void cl_async_finish(simplex_client *c, cl_req *r, int rc, const char *err)
{
    cl_async *a = (cl_async *)r; /* r is the first member */
    const char *text = rc ? (err && *err ? err : simplex_strerror(rc)) : "";
    if (r->done_cb) {
        r->done_cb(rc, text, r->done_ud);
    } else if (rc) {
        simplex_client_event *ev = cl_event_new(SIMPLEX_CLIENT_EVENT_ERROR,
                                                r->server);
        if (ev) {
            ev->error = rc;
            ev->message = cl_strdup(text);
            if (r->op == CL_OP_ACK) {
                memcpy(ev->queue_id, a->q.rcv_id, a->q.rcv_id_len);
                ev->queue_id_len = a->q.rcv_id_len;
            }
            cl_emit(c, ev);
        }
    }
    async_free(c, a);
}

int simplex_client_send_async(simplex_client *c, const char *server,
                              const uint8_t *sender_id, size_t sender_id_len,
                              const uint8_t *sender_private_key,
                              unsigned flags, const uint8_t *body,
                              size_t body_len, simplex_client_done_cb done,
                              void *user_data)
{
    cl_async *a;
    uint8_t *copy;
    int rc;
    if (!c || !server || !sender_id || sender_id_len == 0 ||
        sender_id_len > CL_ID_MAX || (!body && body_len) ||
        body_len > SX_SMP_BLOCK_SIZE)
        return SIMPLEX_ERR_INVALID_ARG;
    if (!(a = async_new(c, CL_OP_SEND, server, body_len, done, user_data,
                        &rc)))
        return rc;
    memcpy(a->id, sender_id, sender_id_len);
    a->r.entity = a->id;
    a->r.entity_len = sender_id_len;
    if (sender_private_key) {
        memcpy(a->key, sender_private_key, CL_KEY);
        a->r.key = a->key;
    }
    copy = (uint8_t *)(a + 1) + strlen(server) + 1;
    if (body_len)
        memcpy(copy, body, body_len);
    a->r.body = copy;
    a->r.body_len = body_len;
    a->r.flags = flags;
    return async_post(c, a);
}

int simplex_client_ack_async(simplex_client *c, const simplex_queue *q,
                             const uint8_t *msg_id, size_t msg_id_len,
                             simplex_client_done_cb done, void *user_data)
{
    cl_async *a;
    int rc;
    if (!c || !q || !q->server || !msg_id || msg_id_len == 0 ||
        msg_id_len > CL_ID_MAX)
        return SIMPLEX_ERR_INVALID_ARG;
    if (!(a = async_new(c, CL_OP_ACK, q->server, 0, done, user_data, &rc)))
        return rc;
    a->q = *q;
    a->q.server = (char *)(a + 1);
    a->r.one.q = &a->q;
    memcpy(a->id, msg_id, msg_id_len);
    a->r.msg_id = a->id;
    a->r.msg_id_len = msg_id_len;
    return async_post(c, a);
}
