/*
 * Agent lifecycle, the agent thread, events and errors.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent_int.h"
#include "client/net.h"
#include "common/sx.h"
#include "common/text.h"
#include "crypto/crypto.h"

/* ---- errors ---- */

static _Thread_local char tl_err[AG_ERR_MAX];

int ag_fail(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_err, sizeof tl_err, fmt, ap);
    va_end(ap);
    return rc;
}

static int ok(void)
{
    tl_err[0] = 0;
    return 0;
}

int simplex_agent_last_error(simplex_agent *a, simplex_buf *out)
{
    size_t n;
    (void)a;
    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    n = strlen(tl_err);
    out->data = sx_malloc(n + 1);
    out->len = 0;
    if (!out->data)
        return SIMPLEX_ERR_NOMEM;
    memcpy(out->data, tl_err, n + 1);
    out->len = n;
    return 0;
}

int ag_temporary(int rc)
{
    switch (rc) {
    case SIMPLEX_ERR_TIMEOUT:
    case SIMPLEX_ERR_RESOLVE:
    case SIMPLEX_ERR_CONNECT:
    case SIMPLEX_ERR_CLOSED:
    case SIMPLEX_ERR_TLS:
    case SIMPLEX_ERR_IO:
    case SIMPLEX_ERR_PROXY:
        return 1;
    default:
        return 0;
    }
}

void ag_client_error(simplex_agent *a, char *buf, size_t n)
{
    simplex_buf b = {NULL, 0};
    buf[0] = 0;
    if (simplex_client_last_error(a->client, &b) == 0 && b.data) {
        snprintf(buf, n, "%s", (const char *)b.data);
        simplex_buf_dispose(&b);
    }
}

/* ---- time and ids ---- */

int64_t ag_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ag_wall_s(void)
{
    return (int64_t)time(NULL);
}

void ag_random_id(char out[SIMPLEX_AGENT_ID_MAX])
{
    uint8_t raw[12];
    sx_wr w;
    sx_random(raw, sizeof raw);
    sx_wr_init_fixed(&w, out, SIMPLEX_AGENT_ID_MAX - 1);
    sx_b64url_encode(&w, raw, sizeof raw);
    out[w.len] = 0;
}

const char *ag_next_server(simplex_agent *a, const char *avoid)
{
    size_t i;
    if (!a->n_servers)
        return NULL;
    for (i = 0; i < a->n_servers; i++) {
        const char *s = a->servers[(a->next_server + i) % a->n_servers];
        if (!avoid || a->n_servers == 1 || strcmp(s, avoid) != 0) {
            a->next_server = (a->next_server + i + 1) % a->n_servers;
            return s;
        }
    }
    return a->servers[0];
}

/* ---- events ---- */

static const char *const event_names[] = {
    "",    "CONF", "INFO", "CON", "MSG", "SENT", "RCVD", "MERR",
    "MWARN", "DOWN", "UP",  "END", "DEL", "ERR", "REQ"};

struct simplex_agent_event *ag_event_new(simplex_agent_event_type t,
                                         const char *conn_id)
{
    struct simplex_agent_event *e = sx_calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->type = t;
    if (conn_id)
        snprintf(e->conn_id, sizeof e->conn_id, "%s", conn_id);
    return e;
}

int ag_event_set_body(struct simplex_agent_event *e, const uint8_t *p,
                      size_t n)
{
    e->body = sx_malloc(n ? n : 1);
    if (!e->body)
        return SIMPLEX_ERR_NOMEM;
    if (n)
        memcpy(e->body, p, n);
    e->body_len = n;
    return 0;
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s);
    char *d = sx_malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

void ag_event_set_error(struct simplex_agent_event *e, int code,
                        const char *msg)
{
    e->error = code;
    sx_free(e->message);
    e->message = dupstr(msg ? msg : simplex_strerror(code));
}

void simplex_agent_event_free(simplex_agent_event *e)
{
    if (!e)
        return;
    sx_free(e->message);
    sx_free(e->server);
    if (e->body)
        sx_free_secret(e->body, e->body_len);
    sx_free(e);
}

/* Makes the event pipe readable (under qmu, events queued). */
static void evfd_fill(simplex_agent *a)
{
    if (a->evfd_on && !a->evfd_full && a->evfd[1] >= 0) {
        ssize_t w = write(a->evfd[1], "e", 1);
        (void)w; /* a full pipe is readable already */
        a->evfd_full = 1;
    }
}

/* Events emitted by this thread while it holds a->mu, queued when it lets
 * go (ag_defer_begin/ag_defer_flush): the thread that takes an event
 * usually calls back into the agent at once and would only block on
 * a->mu. */
static _Thread_local simplex_agent *tl_defer_a;
static _Thread_local struct simplex_agent_event *tl_defer_head,
    *tl_defer_tail;

void ag_defer_begin(simplex_agent *a)
{
    tl_defer_a = a;
}

/* Appends the list head..tail to the event queue and wakes its taker. */
static void queue_events(simplex_agent *a, struct simplex_agent_event *head,
                         struct simplex_agent_event *tail)
{
    pthread_mutex_lock(&a->qmu);
    if (a->evs_tail) {
        a->evs_tail->next = head;
    } else {
        a->evs = head;
        evfd_fill(a);
    }
    a->evs_tail = tail;
    /* only the thread that takes events is woken: the agent thread in
     * callback mode, simplex_agent_next_event() callers otherwise */
    if (a->cb)
        pthread_cond_signal(&a->qcv);
    else
        pthread_cond_signal(&a->evcv);
    pthread_mutex_unlock(&a->qmu);
}

void ag_defer_flush(simplex_agent *a)
{
    struct simplex_agent_event *head = tl_defer_head, *tail = tl_defer_tail;
    tl_defer_a = NULL;
    tl_defer_head = tl_defer_tail = NULL;
    if (head)
        queue_events(a, head, tail);
}

void ag_emit(simplex_agent *a, struct simplex_agent_event *e)
{
    if (!e)
        return;
    e->next = NULL;
    if (tl_defer_a == a) {
        if (tl_defer_tail)
            tl_defer_tail->next = e;
        else
            tl_defer_head = e;
        tl_defer_tail = e;
        return;
    }
    queue_events(a, e, e);
}

void ag_emit_err(simplex_agent *a, const char *conn_id, int code,
                 const char *fmt, ...)
{
    char msg[AG_ERR_MAX];
    va_list ap;
    struct simplex_agent_event *e = ag_event_new(SIMPLEX_AGENT_EVENT_ERR,
                                                 conn_id);
    if (!e)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ag_event_set_error(e, code, msg);
    ag_emit(a, e);
}

simplex_agent_event_type
simplex_agent_event_get_type(const simplex_agent_event *ev)
{
    return ev ? ev->type : (simplex_agent_event_type)0;
}

const char *simplex_agent_event_name(const simplex_agent_event *ev)
{
    if (!ev || (size_t)ev->type >= SX_ARRAY_LEN(event_names))
        return "";
    return event_names[ev->type];
}

const char *simplex_agent_event_conn_id(const simplex_agent_event *ev)
{
    return ev ? ev->conn_id : "";
}

const char *simplex_agent_event_conf_id(const simplex_agent_event *ev)
{
    return ev ? ev->conf_id : "";
}

int64_t simplex_agent_event_msg_id(const simplex_agent_event *ev)
{
    return ev ? ev->msg_id : 0;
}

const uint8_t *simplex_agent_event_body(const simplex_agent_event *ev,
                                        size_t *len)
{
    if (len)
        *len = ev && ev->body ? ev->body_len : 0;
    return ev && ev->body ? ev->body : NULL;
}

unsigned simplex_agent_event_flags(const simplex_agent_event *ev)
{
    return ev ? ev->flags : 0;
}

int64_t simplex_agent_event_timestamp(const simplex_agent_event *ev)
{
    return ev ? ev->ts : 0;
}

int64_t simplex_agent_event_snd_msg_id(const simplex_agent_event *ev)
{
    return ev ? ev->snd_msg_id : 0;
}

simplex_agent_integrity
simplex_agent_event_integrity(const simplex_agent_event *ev, int64_t *from,
                              int64_t *to)
{
    if (from)
        *from = ev ? ev->integ_a : 0;
    if (to)
        *to = ev ? ev->integ_b : 0;
    return ev ? (simplex_agent_integrity)ev->integrity
              : SIMPLEX_AGENT_INTEGRITY_OK;
}

const char *simplex_agent_event_server(const simplex_agent_event *ev)
{
    return ev && ev->server ? ev->server : "";
}

int simplex_agent_event_error(const simplex_agent_event *ev)
{
    return ev ? ev->error : 0;
}

const char *simplex_agent_event_message(const simplex_agent_event *ev)
{
    return ev && ev->message ? ev->message : "";
}

int simplex_agent_event_copy(simplex_agent_event **out,
                             const simplex_agent_event *ev)
{
    struct simplex_agent_event *e;
    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    if (!ev)
        return SIMPLEX_ERR_INVALID_ARG;
    e = sx_malloc(sizeof *e);
    if (!e)
        return SIMPLEX_ERR_NOMEM;
    *e = *ev;
    e->next = NULL;
    e->message = NULL;
    e->server = NULL;
    e->body = NULL;
    if ((ev->message && !(e->message = dupstr(ev->message))) ||
        (ev->server && !(e->server = dupstr(ev->server))) ||
        (ev->body && ag_event_set_body(e, ev->body, ev->body_len) != 0)) {
        simplex_agent_event_free(e);
        return SIMPLEX_ERR_NOMEM;
    }
    *out = e;
    return 0;
}

size_t simplex_agent_max_msg_bytes(void)
{
    return SIMPLEX_AGENT_MAX_MSG_BYTES;
}

static const char *const status_names[] = {
    "unknown", "new", "joined", "confirmed", "allowed", "ready", "suspended",
    "contact"};

const char *simplex_agent_conn_status_name(simplex_agent_conn_status s)
{
    if ((size_t)s >= SX_ARRAY_LEN(status_names))
        return "unknown";
    return status_names[s];
}

/* ---- the agent thread ---- */

static void client_cb(const simplex_client_event *ev, void *ud)
{
    simplex_agent *a = ud;
    ag_job *j = sx_calloc(1, sizeof *j);
    if (!j)
        return;
    if (simplex_client_event_copy(&j->cev, ev) != 0) {
        sx_free(j);
        return;
    }
    pthread_mutex_lock(&a->qmu);
    if (a->jobs_tail)
        a->jobs_tail->next = j;
    else
        a->jobs = j;
    a->jobs_tail = j;
    pthread_cond_signal(&a->qcv);
    pthread_mutex_unlock(&a->qmu);
}

static void push_subscribe_job(simplex_agent *a)
{
    ag_job *j = sx_calloc(1, sizeof *j);
    if (!j)
        return;
    pthread_mutex_lock(&a->qmu);
    if (a->jobs_tail)
        a->jobs_tail->next = j;
    else
        a->jobs = j;
    a->jobs_tail = j;
    pthread_cond_signal(&a->qcv);
    pthread_mutex_unlock(&a->qmu);
}

/* Calls the application's callback for every queued event. */
static void dispatch(simplex_agent *a)
{
    for (;;) {
        struct simplex_agent_event *e;
        pthread_mutex_lock(&a->qmu);
        e = a->evs;
        if (e) {
            a->evs = e->next;
            if (!a->evs)
                a->evs_tail = NULL;
        }
        pthread_mutex_unlock(&a->qmu);
        if (!e)
            return;
        a->cb(e, a->user_data);
        simplex_agent_event_free(e);
    }
}

static void *agent_main(void *arg)
{
    simplex_agent *a = arg;
    for (;;) {
        ag_job *j = NULL;
        int64_t *resub = NULL;
        size_t n_resub = 0;
        pthread_mutex_lock(&a->qmu);
        while (!a->stop && !a->jobs && !(a->cb && a->evs && a->open_done)) {
            if (a->n_resub) {
                int64_t now = ag_now_ms();
                struct timespec dl;
                int64_t wait;
                if (a->resub_at_ms <= now)
                    break;
                wait = a->resub_at_ms - now;
                clock_gettime(CLOCK_REALTIME, &dl);
                dl.tv_sec += wait / 1000;
                dl.tv_nsec += (long)(wait % 1000) * 1000000L;
                if (dl.tv_nsec >= 1000000000L) {
                    dl.tv_sec++;
                    dl.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&a->qcv, &a->qmu, &dl);
            } else {
                pthread_cond_wait(&a->qcv, &a->qmu);
            }
        }
        if (a->stop) {
            pthread_mutex_unlock(&a->qmu);
            break;
        }
        j = a->jobs;
        if (j) {
            a->jobs = j->next;
            if (!a->jobs)
                a->jobs_tail = NULL;
        } else if (a->n_resub && a->resub_at_ms <= ag_now_ms()) {
            resub = a->resub;
            n_resub = a->n_resub;
            a->resub = NULL;
            a->n_resub = 0;
        }
        pthread_mutex_unlock(&a->qmu);
        if (j) {
            if (j->cev)
                ag_process_client_event(a, j->cev);
            else
                (void)ag_subscribe(a, NULL, 0);
            simplex_client_event_free(j->cev);
            sx_free(j);
        }
        if (resub) {
            (void)ag_subscribe(a, resub, n_resub);
            sx_free(resub);
        }
        if (a->cb) {
            int go;
            pthread_mutex_lock(&a->qmu);
            go = a->open_done;
            pthread_mutex_unlock(&a->qmu);
            if (go)
                dispatch(a);
        }
    }
    return NULL;
}

/* ---- options and lifecycle ---- */

int simplex_agent_options_init(simplex_agent_options *opts, unsigned version)
{
    if (!opts || version == 0 || version > SIMPLEX_AGENT_OPTIONS_VERSION)
        return SIMPLEX_ERR_INVALID_ARG;
    memset(opts, 0, sizeof *opts);
    opts->version = version;
    return 0;
}

static void agent_destroy(simplex_agent *a)
{
    size_t i;
    if (!a)
        return;
    pthread_mutex_lock(&a->qmu);
    a->stop = 1;
    pthread_cond_broadcast(&a->qcv);
    pthread_cond_broadcast(&a->evcv);
    pthread_mutex_unlock(&a->qmu);
    if (a->thread_started)
        pthread_join(a->thread, NULL);
    ag_workers_stop(a);
    simplex_client_free(a->client);
    while (a->jobs) {
        ag_job *j = a->jobs;
        a->jobs = j->next;
        simplex_client_event_free(j->cev);
        sx_free(j);
    }
    while (a->evs) {
        struct simplex_agent_event *e = a->evs;
        a->evs = e->next;
        simplex_agent_event_free(e);
    }
    sx_free(a->resub);
    if (a->evfd[0] >= 0)
        close(a->evfd[0]);
    if (a->evfd[1] >= 0)
        close(a->evfd[1]);
    sx_store_close(&a->st);
    for (i = 0; i < a->n_servers; i++)
        sx_free(a->servers[i]);
    sx_free(a->servers);
    pthread_cond_destroy(&a->qcv);
    pthread_cond_destroy(&a->evcv);
    pthread_mutex_destroy(&a->qmu);
    pthread_mutex_destroy(&a->mu);
    sx_free(a);
}

/* Forgets what is only kept for a while, after AG_KEEP_S: hashes of
 * received messages (to recognise a message sent twice), received
 * messages never acknowledged (the server has dropped them by then) and
 * sent messages still waiting for a receipt. */
#define AG_KEEP_S (30 * 86400)
static int housekeeping(simplex_agent *a)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(&a->st, &st,
                              "DELETE FROM rcv_hashes WHERE created_at < ?");
    if (rc == 0) {
        sx_bind_i64(st, 1, ag_wall_s() - AG_KEEP_S);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : SIMPLEX_ERR_STORE;
        sx_store_done(&a->st, st);
    }
    if (rc == 0)
        rc = sx_store_prepare(&a->st, &st,
                              "DELETE FROM rcv_messages WHERE broker_ts < ?");
    if (rc == 0) {
        sx_bind_i64(st, 1, ag_wall_s() - AG_KEEP_S);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : SIMPLEX_ERR_STORE;
        sx_store_done(&a->st, st);
    }
    if (rc == 0)
        rc = sx_store_prepare(&a->st, &st,
                              "DELETE FROM snd_messages WHERE body IS NULL "
                              "AND created_at < ?");
    if (rc == 0) {
        sx_bind_i64(st, 1, ag_wall_s() - AG_KEEP_S);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : SIMPLEX_ERR_STORE;
        sx_store_done(&a->st, st);
    }
    return rc;
}

int simplex_agent_new(simplex_agent **out, const simplex_agent_options *opts)
{
    simplex_agent *a;
    simplex_client_options co;
    size_t i;
    int rc;

    if (!out)
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!sx_initialized())
        return ag_fail(SIMPLEX_ERR_NOT_INITIALIZED,
                       "call simplex_global_init() first");
    if (!opts || opts->version == 0 ||
        opts->version > SIMPLEX_AGENT_OPTIONS_VERSION || !opts->db_path ||
        (opts->n_servers && !opts->servers))
        return ag_fail(SIMPLEX_ERR_INVALID_ARG,
                       "options: version, db_path and servers required");
    a = sx_calloc(1, sizeof *a);
    if (!a)
        return ag_fail(SIMPLEX_ERR_NOMEM, "out of memory");
    a->evfd[0] = a->evfd[1] = -1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->qmu, NULL);
    pthread_cond_init(&a->qcv, NULL);
    pthread_cond_init(&a->evcv, NULL);
    a->flags = opts->flags;
    a->retry_initial_ms = opts->retry_initial_ms ? opts->retry_initial_ms
                                                 : 2000;
    a->retry_max_ms = opts->retry_max_ms ? opts->retry_max_ms : 120000;
    a->message_timeout_s = opts->message_timeout_s ? opts->message_timeout_s
                                                   : 2 * 86400;
    a->cb = opts->event_cb;
    a->user_data = opts->user_data;
    if (!a->cb) {
        if (sx_net_pipe(a->evfd) != 0) {
            agent_destroy(a);
            return ag_fail(SIMPLEX_ERR_IO, "cannot create the event pipe");
        }
    }
    if (opts->n_servers) {
        a->servers = sx_calloc(opts->n_servers, sizeof *a->servers);
        if (!a->servers) {
            agent_destroy(a);
            return ag_fail(SIMPLEX_ERR_NOMEM, "out of memory");
        }
        a->n_servers = opts->n_servers;
        for (i = 0; i < opts->n_servers; i++) {
            size_t n = opts->servers[i] ? strlen(opts->servers[i]) : 0;
            if (!n) {
                agent_destroy(a);
                return ag_fail(SIMPLEX_ERR_INVALID_ARG, "empty server");
            }
            a->servers[i] = sx_malloc(n + 1);
            if (!a->servers[i]) {
                agent_destroy(a);
                return ag_fail(SIMPLEX_ERR_NOMEM, "out of memory");
            }
            memcpy(a->servers[i], opts->servers[i], n + 1);
        }
    }
    rc = sx_store_open(&a->st, opts->db_path);
    if (rc) {
        char msg[sizeof a->st.err];
        memcpy(msg, a->st.err, sizeof msg);
        agent_destroy(a);
        return ag_fail(rc, "database %s: %s", opts->db_path, msg);
    }
    if (opts->relaxed_durability &&
        (rc = sx_store_set_sync(&a->st, 0)) != 0) {
        agent_destroy(a);
        return ag_fail(rc, "database: %s", "cannot set synchronous mode");
    }
    if ((rc = simplex_client_options_init(&co,
                                          SIMPLEX_CLIENT_OPTIONS_VERSION)) !=
        0) {
        agent_destroy(a);
        return ag_fail(rc, "client options");
    }
    co.connect_timeout_ms = opts->connect_timeout_ms;
    co.response_timeout_ms = opts->response_timeout_ms;
    co.socks5_proxy = opts->socks5_proxy;
    co.socks5_username = opts->socks5_username;
    co.socks5_password = opts->socks5_password;
    co.socks5_isolate = opts->socks5_isolate;
    co.event_cb = client_cb;
    co.user_data = a;
    rc = simplex_client_new(&a->client, &co);
    if (rc) {
        agent_destroy(a);
        return ag_fail(rc, "starting the SMP client failed");
    }
    if (pthread_create(&a->thread, NULL, agent_main, a) != 0) {
        agent_destroy(a);
        return ag_fail(SIMPLEX_ERR_IO, "cannot start the agent thread");
    }
    a->thread_started = 1;
    if ((rc = ag_workers_start(a)) != 0) {
        agent_destroy(a);
        return ag_fail(rc, "cannot start the delivery threads");
    }
    pthread_mutex_lock(&a->mu);
    rc = ag_kick_all(a);
    if (rc == 0)
        rc = housekeeping(a);
    if (rc == 0)
        rc = ag_announce_pending(a);
    pthread_mutex_unlock(&a->mu);
    if (rc) {
        agent_destroy(a);
        return ag_fail(rc, "reading the database failed");
    }
    if (!(a->flags & SIMPLEX_AGENT_NO_SUBSCRIBE))
        push_subscribe_job(a);
    /* the caller's pointer is set before the first callback runs */
    *out = a;
    pthread_mutex_lock(&a->qmu);
    a->open_done = 1;
    pthread_cond_signal(&a->qcv);
    pthread_mutex_unlock(&a->qmu);
    return ok();
}

void simplex_agent_free(simplex_agent *a)
{
    agent_destroy(a);
}

static void drain_evfd(simplex_agent *a)
{
    char buf[64];
    if (a->evfd[0] < 0 || !a->evfd_full)
        return;
    while (read(a->evfd[0], buf, sizeof buf) > 0) {
    }
    a->evfd_full = 0;
}

int simplex_agent_event_fd(simplex_agent *a)
{
    if (!a || a->evfd[0] < 0)
        return -1;
    /* from now on the pipe follows the event list */
    pthread_mutex_lock(&a->qmu);
    if (!a->evfd_on) {
        a->evfd_on = 1;
        if (a->evs)
            evfd_fill(a);
    }
    pthread_mutex_unlock(&a->qmu);
    return a->evfd[0];
}

int simplex_agent_next_event(simplex_agent *a, int timeout_ms,
                             simplex_agent_event **out)
{
    struct timespec dl;
    struct simplex_agent_event *e;
    if (!a || !out)
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "NULL argument");
    *out = NULL;
    if (a->cb)
        return ag_fail(SIMPLEX_ERR_INVALID_ARG,
                       "events are delivered to the callback");
    if (timeout_ms > 0) {
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&a->qmu);
    while (!a->evs && !a->stop && timeout_ms != 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&a->evcv, &a->qmu);
        else if (pthread_cond_timedwait(&a->evcv, &a->qmu, &dl) != 0)
            break;
    }
    e = a->evs;
    if (e) {
        a->evs = e->next;
        if (!a->evs) {
            a->evs_tail = NULL;
            drain_evfd(a);
        }
        e->next = NULL;
    }
    pthread_mutex_unlock(&a->qmu);
    if (!e)
        return ag_fail(SIMPLEX_ERR_TIMEOUT, "no event");
    *out = e;
    return ok();
}

int simplex_agent_subscribe_all(simplex_agent *a)
{
    if (!a)
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "NULL agent");
    return ag_subscribe(a, NULL, 0);
}
