/*
 * Sans-I/O SMP client session: see session.h.
 *
 * Data structures (all reused across messages):
 *   - requests: a slab of request records (stable indices, free list),
 *     an open-addressing hash table from correlation id to slab index
 *     (linear probing, backward-shift deletion) and a binary min-heap of
 *     deadlines with lazy deletion (entries carry the record's generation);
 *   - send queue: encoded transmissions appended to one growable buffer,
 *     with an array of (offset, length); compacted when drained;
 *   - events: a growable ring of event structs; each event owns one heap
 *     copy of its transmission.
 */
#include "client/session.h"

#include <string.h>

#define SESS_ENTITY_MAX 255
#define SESS_SID_MAX SX_SMP_SESSION_ID_MAX

enum { REQ_FREE = 0, REQ_PENDING, REQ_LATE };

typedef struct sess_req {
    uint8_t corr[SX_SMP_SESSION_CORR_ID_BYTES];
    uint64_t id;
    uint32_t gen;
    uint32_t next_free;
    uint8_t state;
    uint8_t is_ping;
    uint8_t ent_len;
    uint8_t ent[SESS_ENTITY_MAX];
} sess_req;

typedef struct sess_heap_ent {
    uint64_t deadline;
    uint32_t slot;
    uint32_t gen;
} sess_heap_ent;

typedef struct sess_sq_ent {
    size_t off;
    size_t len;
    uint64_t ent_hash;          /* of the entity id; 0: none (NEW, PING) */
} sess_sq_ent;

/* The server runs the commands of one block from the last to the first
 * (the reference folds them from the right), so two commands on one
 * entity, e.g. two SENDs to a queue, must not share a block: they would
 * take effect in the opposite order. Queued transmissions carry a hash of
 * their entity id; a collision only ends a block early. */
static uint64_t ent_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3u;
    }
    return h ? h : 1;
}

#define NO_SLOT UINT32_MAX
/* Timed-out requests are kept so that a late response is still matched
 * (the reference keeps them until the response comes); the oldest are
 * forgotten beyond this many. */
#define SESS_LATE_MAX 1024

typedef struct sess_late {
    uint32_t slot;
    uint32_t gen;
} sess_late;

struct sx_smp_session {
    sx_smp_session_config cfg;
    const sx_logger *log;
    sx_smp_session_state state;
    int fail_code;

    /* connection */
    uint8_t sid[SESS_SID_MAX];
    size_t sid_len;
    uint8_t *leaf;              /* until the hello is verified */
    size_t leaf_len;
    int alpn;
    uint16_t version;
    sx_smp_params prm;          /* session_id points to sid */
    int has_srv_dh;
    uint8_t srv_dh[SX_X25519_BYTES];
    uint8_t dh_priv[SX_X25519_BYTES];
    int has_dh_secret;          /* dh_secret = DH(srv_dh, dh_priv) */
    uint8_t dh_secret[SX_X25519_BYTES];
    int enc;
    sx_smp_chain chain;

    /* outgoing */
    int hs_pending;
    uint8_t hs_block[SX_SMP_BLOCK_SIZE];
    sx_wr sq;
    sess_sq_ent *sqe;
    size_t sqe_cap, sqe_head, sqe_count;
    sx_wr scratch;
    uint8_t content[SX_SMP_BLOCK_SIZE];
    sx_smp_bytes views[SX_SMP_MAX_BATCH];

    /* incoming */
    uint8_t plain[SX_SMP_BLOCK_SIZE - SX_SMP_BLOCK_TAG];
    sx_smp_batch batch;

    /* requests */
    sess_req *reqs;
    uint32_t reqs_cap, reqs_used, free_head;
    uint32_t *ht;               /* slot + 1, 0 = empty */
    uint32_t ht_mask;
    sess_heap_ent *heap;
    size_t heap_len, heap_cap;
    uint64_t next_req_id;
    size_t n_pending;
    sess_late *late;            /* ring of SESS_LATE_MAX */
    size_t late_head, late_count;

    /* correlation ids are drawn from a pool filled 64 at a time: one
     * call into the system's generator per 64 commands instead of one per
     * command (only without a cfg.rng hook: tests keep their sequence) */
    uint8_t corr_pool[SX_SMP_SESSION_CORR_ID_BYTES * 64];
    size_t corr_left;

    /* keep-alive */
    uint64_t last_rx, ping_done;
    int ping_outstanding;
    unsigned missed_pings;

    /* events */
    sx_smp_session_event *evs;
    size_t ev_cap, ev_head, ev_count;
};

/* ---- small helpers ---- */

static void sess_rng(sx_smp_session *s, uint8_t *out, size_t n)
{
    if (s->cfg.rng)
        s->cfg.rng(s->cfg.rng_ctx, out, n);
    else
        sx_random(out, n);
}

void sx_smp_session_config_init(sx_smp_session_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->vmin = SX_SMP_VERSION_MIN;
    cfg->vmax = SX_SMP_VERSION_MAX;
    cfg->response_timeout_ms = SX_SMP_SESSION_RESPONSE_TIMEOUT_MS;
    cfg->ping_interval_ms = SX_SMP_SESSION_PING_INTERVAL_MS;
    cfg->max_missed_pings = SX_SMP_SESSION_MAX_MISSED_PINGS;
}

void sx_smp_session_event_dispose(sx_smp_session_event *ev)
{
    if (!ev)
        return;
    if (ev->data)
        sx_free_secret(ev->data, ev->data_len);
    memset(ev, 0, sizeof *ev);
}

/* ---- events ---- */

static sx_smp_session_event *ev_push(sx_smp_session *s)
{
    sx_smp_session_event *e;
    if (s->ev_count == s->ev_cap) {
        size_t ncap = s->ev_cap ? s->ev_cap * 2 : 16;
        sx_smp_session_event *n;
        if (ncap > SIZE_MAX / sizeof *n)
            return NULL;
        n = sx_malloc(ncap * sizeof *n);
        if (!n)
            return NULL;
        for (size_t i = 0; i < s->ev_count; i++)
            n[i] = s->evs[(s->ev_head + i) % s->ev_cap];
        sx_free(s->evs);
        s->evs = n;
        s->ev_cap = ncap;
        s->ev_head = 0;
    }
    e = &s->evs[(s->ev_head + s->ev_count) % s->ev_cap];
    s->ev_count++;
    memset(e, 0, sizeof *e);
    return e;
}

int sx_smp_session_next_event(sx_smp_session *s, sx_smp_session_event *ev)
{
    if (!s || !ev)
        return SIMPLEX_ERR_INVALID_ARG;
    if (s->ev_count == 0) {
        memset(ev, 0, sizeof *ev);
        return 0;
    }
    *ev = s->evs[s->ev_head];
    memset(&s->evs[s->ev_head], 0, sizeof s->evs[s->ev_head]);
    s->ev_head = (s->ev_head + 1) % s->ev_cap;
    s->ev_count--;
    return 1;
}

/* ---- failure ---- */

static void sq_clear(sx_smp_session *s)
{
    if (s->sq.p)
        sx_memzero(s->sq.p, s->sq.len);
    sx_wr_reset(&s->sq);
    s->sqe_head = s->sqe_count = 0;
}

static int sess_fail(sx_smp_session *s, sx_smp_transport_err te,
                     sx_smp_handshake_err he, int code, int timed_out)
{
    sx_smp_session_event *e;
    if (code >= 0)
        code = SIMPLEX_ERR_PARSE;
    s->state = SX_SMP_SESSION_FAILED;
    s->fail_code = code;
    s->hs_pending = 0;
    sq_clear(s);
    sx_memzero(s->dh_priv, sizeof s->dh_priv);
    sx_memzero(s->dh_secret, sizeof s->dh_secret);
    s->has_dh_secret = 0;
    sx_smp_chain_wipe(&s->chain);
    s->enc = 0;
    sx_log(s->log, SIMPLEX_LOG_WARN,
           "smp session failed: transport %d handshake %d code %d%s", (int)te,
           (int)he, code, timed_out ? " (timeout)" : "");
    e = ev_push(s);
    if (e) {
        e->type = SX_SMP_SESSION_EV_FATAL;
        e->code = code;
        e->transport = te;
        e->handshake = he;
        e->timed_out = timed_out;
    }
    return code;
}

/* ---- request table ---- */

static uint32_t corr_hash(const uint8_t *c)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = (x << 8) | c[i];
    x ^= (uint64_t)c[8] << 3 ^ (uint64_t)c[16] << 11;
    x *= 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> 32);
}

static void ht_insert(sx_smp_session *s, uint32_t slot)
{
    uint32_t i = corr_hash(s->reqs[slot].corr) & s->ht_mask;
    while (s->ht[i])
        i = (i + 1) & s->ht_mask;
    s->ht[i] = slot + 1;
}

static uint32_t ht_find(const sx_smp_session *s, const uint8_t *corr,
                        uint32_t *pos)
{
    uint32_t i;
    if (!s->ht)
        return NO_SLOT;
    i = corr_hash(corr) & s->ht_mask;
    while (s->ht[i]) {
        uint32_t slot = s->ht[i] - 1;
        if (memcmp(s->reqs[slot].corr, corr, SX_SMP_SESSION_CORR_ID_BYTES) ==
            0) {
            if (pos)
                *pos = i;
            return slot;
        }
        i = (i + 1) & s->ht_mask;
    }
    return NO_SLOT;
}

static void ht_remove_at(sx_smp_session *s, uint32_t i)
{
    uint32_t j = i;
    s->ht[i] = 0;
    for (;;) {
        uint32_t k;
        j = (j + 1) & s->ht_mask;
        if (!s->ht[j])
            return;
        k = corr_hash(s->reqs[s->ht[j] - 1].corr) & s->ht_mask;
        /* move j back to i unless its home k lies cyclically in (i, j] */
        if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
            s->ht[i] = s->ht[j];
            s->ht[j] = 0;
            i = j;
        }
    }
}

static int reqs_grow(sx_smp_session *s)
{
    uint32_t ncap = s->reqs_cap ? s->reqs_cap * 2 : 64;
    sess_req *nr;
    uint32_t *nh;
    if (ncap > (1u << 28))
        return SIMPLEX_ERR_NOMEM;
    nr = sx_realloc(s->reqs, (size_t)ncap * sizeof *nr);
    if (!nr)
        return SIMPLEX_ERR_NOMEM;
    s->reqs = nr;
    nh = sx_calloc((size_t)ncap * 2, sizeof *nh);
    if (!nh)
        return SIMPLEX_ERR_NOMEM; /* reqs grew but cap unchanged: fine */
    for (uint32_t i = s->reqs_cap; i < ncap; i++) {
        memset(&nr[i], 0, sizeof nr[i]);
        nr[i].next_free = (i + 1 < ncap) ? i + 1 : s->free_head;
    }
    s->free_head = s->reqs_cap;
    sx_free(s->ht);
    s->ht = nh;
    s->ht_mask = ncap * 2 - 1;
    s->reqs_cap = ncap;
    for (uint32_t i = 0; i < s->reqs_cap; i++)
        if (s->reqs[i].state != REQ_FREE)
            ht_insert(s, i);
    return 0;
}

static void req_release(sx_smp_session *s, uint32_t slot, uint32_t ht_pos)
{
    sess_req *r = &s->reqs[slot];
    ht_remove_at(s, ht_pos);
    if (r->state == REQ_PENDING)
        s->n_pending--;
    sx_memzero(r->ent, r->ent_len);
    r->state = REQ_FREE;
    r->gen++;
    r->next_free = s->free_head;
    s->free_head = slot;
    s->reqs_used--;
}

/* ---- deadline heap ---- */

static int heap_push(sx_smp_session *s, uint64_t deadline, uint32_t slot,
                     uint32_t gen)
{
    size_t i;
    if (s->heap_len == s->heap_cap) {
        size_t ncap = s->heap_cap ? s->heap_cap * 2 : 64;
        sess_heap_ent *n = sx_realloc(s->heap, ncap * sizeof *n);
        if (!n)
            return SIMPLEX_ERR_NOMEM;
        s->heap = n;
        s->heap_cap = ncap;
    }
    i = s->heap_len++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (s->heap[p].deadline <= deadline)
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i].deadline = deadline;
    s->heap[i].slot = slot;
    s->heap[i].gen = gen;
    return 0;
}

static void heap_pop(sx_smp_session *s)
{
    sess_heap_ent last;
    size_t i = 0;
    if (s->heap_len == 0)
        return;
    last = s->heap[--s->heap_len];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->heap_len)
            break;
        if (c + 1 < s->heap_len && s->heap[c + 1].deadline < s->heap[c].deadline)
            c++;
        if (s->heap[c].deadline >= last.deadline)
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->heap_len > 0)
        s->heap[i] = last;
}

static int heap_top_live(const sx_smp_session *s, const sess_heap_ent *h)
{
    const sess_req *r = &s->reqs[h->slot];
    return r->gen == h->gen && r->state == REQ_PENDING;
}

static void heap_clean(sx_smp_session *s)
{
    while (s->heap_len > 0 && !heap_top_live(s, &s->heap[0]))
        heap_pop(s);
}

/* Marks a timed-out request as late, forgetting the oldest late one
 * when there are too many. */
static int late_push(sx_smp_session *s, uint32_t slot)
{
    sess_req *r = &s->reqs[slot];
    if (!s->late) {
        s->late = sx_malloc(SESS_LATE_MAX * sizeof *s->late);
        if (!s->late)
            return SIMPLEX_ERR_NOMEM;
    }
    if (s->late_count == SESS_LATE_MAX) {
        sess_late old = s->late[s->late_head];
        sess_req *o = &s->reqs[old.slot];
        s->late_head = (s->late_head + 1) % SESS_LATE_MAX;
        s->late_count--;
        if (o->gen == old.gen && o->state == REQ_LATE) {
            uint32_t pos = 0;
            if (ht_find(s, o->corr, &pos) == old.slot)
                req_release(s, old.slot, pos);
        }
    }
    s->late[(s->late_head + s->late_count) % SESS_LATE_MAX].slot = slot;
    s->late[(s->late_head + s->late_count) % SESS_LATE_MAX].gen = r->gen;
    s->late_count++;
    r->state = REQ_LATE;
    s->n_pending--;
    return 0;
}

/* ---- life cycle ---- */

int sx_smp_session_new(sx_smp_session **out, const sx_smp_session_config *cfg)
{
    sx_smp_session *s;
    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    if (!cfg || cfg->vmin < SX_SMP_VERSION_MIN ||
        cfg->vmax > SX_SMP_VERSION_MAX || cfg->vmin > cfg->vmax)
        return SIMPLEX_ERR_INVALID_ARG;
    s = sx_calloc(1, sizeof *s);
    if (!s)
        return SIMPLEX_ERR_NOMEM;
    s->cfg = *cfg;
    if (s->cfg.response_timeout_ms == 0)
        s->cfg.response_timeout_ms = SX_SMP_SESSION_RESPONSE_TIMEOUT_MS;
    s->log = cfg->logger ? cfg->logger : sx_default_logger();
    s->state = SX_SMP_SESSION_NEW;
    s->free_head = NO_SLOT;
    s->next_req_id = 1;
    sx_wr_init(&s->sq);
    sx_wr_init(&s->scratch);
    *out = s;
    return 0;
}

void sx_smp_session_free(sx_smp_session *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ev_count; i++)
        sx_smp_session_event_dispose(&s->evs[(s->ev_head + i) % s->ev_cap]);
    sx_free(s->evs);
    if (s->leaf)
        sx_free_secret(s->leaf, s->leaf_len);
    sx_wr_free(&s->sq);
    sx_wr_free(&s->scratch);
    sx_free(s->sqe);
    if (s->reqs)
        sx_free_secret(s->reqs, (size_t)s->reqs_cap * sizeof *s->reqs);
    sx_free(s->ht);
    sx_free(s->heap);
    sx_free(s->late);
    sx_smp_chain_wipe(&s->chain);
    sx_memzero(s, sizeof *s);
    sx_free(s);
}

int sx_smp_session_start(sx_smp_session *s, const uint8_t *tls_unique,
                         size_t tls_unique_len, const uint8_t *leaf_cert_der,
                         size_t leaf_cert_len, int alpn_negotiated)
{
    if (!s || s->state != SX_SMP_SESSION_NEW || !tls_unique ||
        tls_unique_len == 0 || tls_unique_len > SESS_SID_MAX ||
        !leaf_cert_der || leaf_cert_len == 0)
        return SIMPLEX_ERR_INVALID_ARG;
    s->leaf = sx_malloc(leaf_cert_len);
    if (!s->leaf)
        return SIMPLEX_ERR_NOMEM;
    memcpy(s->leaf, leaf_cert_der, leaf_cert_len);
    s->leaf_len = leaf_cert_len;
    memcpy(s->sid, tls_unique, tls_unique_len);
    s->sid_len = tls_unique_len;
    s->alpn = alpn_negotiated != 0;
    s->state = SX_SMP_SESSION_HANDSHAKE;
    if (!s->alpn)
        sx_log(s->log, SIMPLEX_LOG_INFO,
               "smp session: no ALPN, the server offers v6 only");
    return 0;
}

/* ---- handshake ---- */

static int handle_hello(sx_smp_session *s, const uint8_t *block, uint64_t now)
{
    sx_smp_server_hello h;
    sx_smp_client_hello ch;
    sx_smp_key srv_key;
    sx_wr w;
    const uint8_t *content;
    size_t n;
    uint16_t my_max, lo, hi;
    int rc;
    sx_smp_session_event *e;

    rc = sx_smp_block_unpad(block, &content, &n);
    if (rc < 0) /* reference: unPad failure is TELargeMsg */
        return sess_fail(s, SX_SMP_TE_LARGE_MSG, 0, rc, 0);
    rc = sx_smp_server_hello_decode(&h, content, n);
    if (rc < 0)
        return sess_fail(s, SX_SMP_TE_HANDSHAKE, SX_SMP_HS_PARSE, rc, 0);
    if (h.session_id.n != s->sid_len ||
        sx_memeq_ct(h.session_id.p, s->sid, s->sid_len) != 0)
        return sess_fail(s, SX_SMP_TE_SESSION, 0, SIMPLEX_ERR_PARSE, 0);

    /* a proxy talking to a relay older than v14 caps its range at
     * max(min, 10) so that transport encryption stays off */
    my_max = s->cfg.vmax;
    if (s->cfg.proxy && h.vmax < SX_SMP_V_PROXY_HANDSHAKE) {
        uint16_t cap = s->cfg.vmin > SX_SMP_V_DELETED_EVENT
                           ? s->cfg.vmin
                           : SX_SMP_V_DELETED_EVENT;
        if (cap < my_max)
            my_max = cap;
    }
    lo = h.vmin > s->cfg.vmin ? h.vmin : s->cfg.vmin;
    hi = h.vmax < my_max ? h.vmax : my_max;
    if (lo > hi || h.vmin > h.vmax)
        return sess_fail(s, SX_SMP_TE_VERSION, 0, SIMPLEX_ERR_UNSUPPORTED, 0);

    memset(&srv_key, 0, sizeof srv_key);
    if (h.has_cert) {
        uint8_t fp[SX_SHA256_BYTES];
        sx_smp_bytes leaf = {s->leaf, s->leaf_len};
        if (h.n_certs < 2 || h.n_certs > 4)
            return sess_fail(s, SX_SMP_TE_HANDSHAKE, SX_SMP_HS_BAD_AUTH,
                             SIMPLEX_ERR_KEY, 0);
        rc = sx_sha256(fp, h.certs[1].p, h.certs[1].n);
        if (rc < 0)
            return sess_fail(s, SX_SMP_TE_HANDSHAKE, SX_SMP_HS_BAD_AUTH, rc, 0);
        if (sx_memeq_ct(fp, s->cfg.key_hash, SX_SHA256_BYTES) != 0)
            return sess_fail(s, SX_SMP_TE_HANDSHAKE, SX_SMP_HS_IDENTITY,
                             SIMPLEX_ERR_KEY, 0);
        rc = sx_smp_server_hello_verify(&srv_key, &h, s->cfg.key_hash, leaf);
        if (rc < 0 || srv_key.alg != SX_KEY_X25519)
            return sess_fail(s, SX_SMP_TE_HANDSHAKE, SX_SMP_HS_BAD_AUTH,
                             rc < 0 ? rc : SIMPLEX_ERR_KEY, 0);
        memcpy(s->srv_dh, srv_key.raw, SX_X25519_BYTES);
        s->has_srv_dh = 1;
    } else if (hi >= SX_SMP_V_AUTH_CMDS) {
        /* stricter than the reference: from v7 the server always sends
         * its certificate and session key */
        return sess_fail(s, SX_SMP_TE_HANDSHAKE, SX_SMP_HS_BAD_AUTH,
                         SIMPLEX_ERR_KEY, 0);
    }
    s->version = hi;
    s->prm.version = hi;
    s->prm.session_id.p = s->sid;
    s->prm.session_id.n = s->sid_len;

    /* our session key */
    memset(&ch, 0, sizeof ch);
    sess_rng(s, s->dh_priv, sizeof s->dh_priv);
    ch.dh_key.alg = SX_KEY_X25519;
    ch.dh_key.len = SX_X25519_BYTES;
    rc = sx_x25519_public(ch.dh_key.raw, s->dh_priv);
    if (rc < 0)
        return sess_fail(s, 0, 0, rc, 0);
    ch.version = hi;
    ch.key_hash.p = s->cfg.key_hash;
    ch.key_hash.n = SX_SHA256_BYTES;
    ch.proxy_server = s->cfg.proxy != 0;
    sx_wr_init_fixed(&w, s->content, sizeof s->content);
    rc = sx_smp_client_hello_encode(&w, &ch);
    if (rc >= 0)
        rc = sx_smp_block_pad(s->hs_block, w.p, w.len);
    if (rc < 0)
        return sess_fail(s, 0, 0, rc, 0);
    s->hs_pending = 1;

    if (s->has_srv_dh) {
        /* kept: the block chains start from it, and a proxy needs it for
         * the commands it forwards (sx_smp_session_dh_secret) */
        rc = sx_x25519_dh(s->dh_secret, s->srv_dh, s->dh_priv);
        if (rc < 0)
            return sess_fail(s, SX_SMP_TE_HANDSHAKE, SX_SMP_HS_BAD_AUTH, rc, 0);
        s->has_dh_secret = 1;
    }
    if (s->has_dh_secret && hi >= SX_SMP_V_ENCRYPTED_BLOCK && !s->cfg.proxy) {
        rc = sx_smp_chain_init(&s->chain, 0, s->sid, s->sid_len, s->dh_secret);
        if (rc < 0)
            return sess_fail(s, SX_SMP_TE_HANDSHAKE, SX_SMP_HS_BAD_AUTH, rc, 0);
        s->enc = 1;
    }
    /* the private key has no further use */
    sx_memzero(s->dh_priv, sizeof s->dh_priv);
    sx_free_secret(s->leaf, s->leaf_len);
    s->leaf = NULL;
    s->leaf_len = 0;

    s->state = SX_SMP_SESSION_READY;
    s->last_rx = now;
    s->ping_done = now;
    sx_log(s->log, SIMPLEX_LOG_INFO, "smp session: version %u%s",
           (unsigned)hi, s->enc ? ", encrypted blocks" : "");
    e = ev_push(s);
    if (!e)
        return sess_fail(s, 0, 0, SIMPLEX_ERR_NOMEM, 0);
    e->type = SX_SMP_SESSION_EV_HANDSHAKE;
    e->version = hi;
    return 0;
}

/* ---- receiving ---- */

static int push_error(sx_smp_session *s, sx_smp_session_problem p, int code)
{
    sx_smp_session_event *e = ev_push(s);
    if (!e)
        return SIMPLEX_ERR_NOMEM;
    e->type = SX_SMP_SESSION_EV_ERROR;
    e->problem = p;
    e->code = code;
    sx_log(s->log, SIMPLEX_LOG_WARN, "smp session: received data error %d (%d)",
           (int)p, code);
    return 0;
}

static int process_trans(sx_smp_session *s, const uint8_t *p, size_t n,
                         uint64_t now)
{
    sx_smp_session_event ev;
    sx_smp_trans t;
    sx_smp_session_event *e;
    int rc;

    memset(&ev, 0, sizeof ev);
    ev.data = sx_malloc(n ? n : 1);
    if (!ev.data)
        return SIMPLEX_ERR_NOMEM;
    memcpy(ev.data, p, n);
    ev.data_len = n;
    rc = sx_smp_trans_decode(&t, &s->prm, ev.data, n);
    if (rc < 0) {
        sx_smp_session_event_dispose(&ev);
        return push_error(s, SX_SMP_SESSION_BAD_TRANSMISSION, rc);
    }
    ev.corr_id = t.corr_id;
    ev.entity_id = t.entity_id;
    if (!sx_smp_implied_session(s->version) &&
        (t.session_id.n != s->sid_len ||
         memcmp(t.session_id.p, s->sid, s->sid_len) != 0)) {
        ev.problem = SX_SMP_SESSION_BAD_SESSION_ID;
        ev.code = SIMPLEX_ERR_PARSE;
    } else {
        rc = sx_smp_msg_decode(&ev.msg, s->version, t.command.p, t.command.n);
        if (rc < 0) {
            ev.problem = SX_SMP_SESSION_BAD_MESSAGE;
            ev.code = rc;
        } else {
            sx_smp_cmd_err ce = sx_smp_msg_check(ev.msg.tag, t.entity_id.n);
            if (ce) {
                ev.problem = SX_SMP_SESSION_BAD_MESSAGE;
                ev.cmd_err = ce;
                ev.code = SIMPLEX_ERR_PARSE;
            } else {
                ev.has_msg = 1;
            }
        }
    }

    if (t.corr_id.n == 0) {
        ev.type = SX_SMP_SESSION_EV_SERVER_EVENT;
    } else {
        uint32_t pos = 0, slot = NO_SLOT;
        if (t.corr_id.n == SX_SMP_SESSION_CORR_ID_BYTES)
            slot = ht_find(s, t.corr_id.p, &pos);
        if (slot == NO_SLOT) {
            ev.type = SX_SMP_SESSION_EV_ERROR;
            ev.problem = SX_SMP_SESSION_UNKNOWN_CORR_ID;
            ev.code = SIMPLEX_ERR_PARSE;
            sx_log(s->log, SIMPLEX_LOG_WARN,
                   "smp session: response with an unknown correlation id");
        } else {
            sess_req *r = &s->reqs[slot];
            int is_ping = r->is_ping, late = r->state == REQ_LATE;
            if (ev.problem == SX_SMP_SESSION_OK &&
                (r->ent_len != t.entity_id.n ||
                 memcmp(r->ent, t.entity_id.p, r->ent_len) != 0)) {
                ev.problem = SX_SMP_SESSION_ENTITY_MISMATCH;
                ev.code = SIMPLEX_ERR_PARSE;
                ev.has_msg = 0;
            }
            ev.type = SX_SMP_SESSION_EV_RESPONSE;
            ev.request_id = r->id;
            ev.late = late;
            req_release(s, slot, pos);
            if (is_ping) {
                if (!late) {
                    s->ping_outstanding = 0;
                    s->ping_done = now;
                }
                sx_smp_session_event_dispose(&ev);
                return 0;
            }
        }
    }
    e = ev_push(s);
    if (!e) {
        sx_smp_session_event_dispose(&ev);
        return SIMPLEX_ERR_NOMEM;
    }
    *e = ev;
    return 0;
}

int sx_smp_session_recv_block(sx_smp_session *s,
                              const uint8_t block[SX_SMP_BLOCK_SIZE],
                              uint64_t now)
{
    const uint8_t *content;
    size_t n;
    int rc;

    if (!s || !block)
        return SIMPLEX_ERR_INVALID_ARG;
    if (s->state == SX_SMP_SESSION_HANDSHAKE)
        return handle_hello(s, block, now);
    if (s->state != SX_SMP_SESSION_READY)
        return SIMPLEX_ERR_INVALID_ARG;
    /* any block shows the connection is alive (reference: lastReceived
     * and the timeout counter are updated for every block) */
    s->last_rx = now;
    s->missed_pings = 0;
    if (s->enc)
        rc = sx_smp_block_decrypt(&s->chain, s->plain, block, &content, &n);
    else
        rc = sx_smp_block_unpad(block, &content, &n);
    if (rc >= 0)
        rc = sx_smp_batch_decode(&s->batch, content, n);
    if (rc < 0) {
        rc = push_error(s, SX_SMP_SESSION_BAD_BLOCK, rc);
    } else {
        for (size_t i = 0; i < s->batch.n && rc >= 0; i++)
            rc = process_trans(s, s->batch.t[i].p, s->batch.t[i].n, now);
    }
    if (s->enc)
        sx_memzero(s->plain, sizeof s->plain);
    if (rc < 0)
        return sess_fail(s, 0, 0, rc, 0);
    return 0;
}

/* ---- sending ---- */

/* corr_in: the caller's correlation id, NULL for a random one */
static int submit_internal(sx_smp_session *s, const uint8_t *corr_in,
                           const uint8_t *entity_id, size_t entity_len,
                           const sx_smp_cmd *cmd,
                           const sx_smp_session_auth *auth, uint64_t now,
                           uint64_t timeout_ms, int is_ping,
                           uint64_t *request_id)
{
    uint8_t corr[SX_SMP_SESSION_CORR_ID_BYTES];
    sx_smp_bytes corr_b = {corr, sizeof corr};
    sx_smp_auth a;
    const sx_smp_auth *ap = NULL;
    const uint8_t *authorized, *body;
    size_t authorized_len, body_len, off, tlen;
    uint32_t slot;
    sess_req *r;
    int rc;

    if (s->state != SX_SMP_SESSION_READY || !cmd ||
        entity_len > SESS_ENTITY_MAX || (entity_len && !entity_id))
        return SIMPLEX_ERR_INVALID_ARG;
    if (corr_in) {
        if (ht_find(s, corr_in, NULL) != NO_SLOT)
            return SIMPLEX_ERR_INVALID_ARG;
        memcpy(corr, corr_in, sizeof corr);
    }
    /* 24 random bytes never collide; a broken generator might */
    for (int tries = 0; !corr_in; tries++) {
        if (tries == 4)
            return SIMPLEX_ERR_INTERNAL;
        if (s->cfg.rng) {
            sess_rng(s, corr, sizeof corr);
        } else {
            if (s->corr_left == 0) {
                sx_random(s->corr_pool, sizeof s->corr_pool);
                s->corr_left = sizeof s->corr_pool;
            }
            s->corr_left -= sizeof corr;
            memcpy(corr, s->corr_pool + s->corr_left, sizeof corr);
            sx_memzero(s->corr_pool + s->corr_left, sizeof corr);
        }
        if (ht_find(s, corr, NULL) == NO_SLOT)
            break;
    }

    /* authorized = short(session id) corrId entityId command; the body
     * sent is the same without the session id from v7 */
    sx_wr_reset(&s->scratch);
    sx_wr_short(&s->scratch, s->sid, s->sid_len);
    sx_wr_short(&s->scratch, corr, sizeof corr);
    sx_wr_short(&s->scratch, entity_id, entity_len);
    rc = sx_smp_cmd_encode(&s->scratch, s->version, cmd);
    if (rc >= 0)
        rc = sx_wr_error(&s->scratch);
    if (rc < 0)
        return rc;
    authorized = s->scratch.p;
    authorized_len = s->scratch.len;
    body = authorized;
    body_len = authorized_len;
    if (sx_smp_implied_session(s->version)) {
        body += 1 + s->sid_len;
        body_len -= 1 + s->sid_len;
    }
    if (auth && auth->alg == SX_KEY_ED25519 && auth->ed25519_expanded) {
        rc = sx_smp_authorize_ed25519_expanded(&a, auth->ed25519_expanded,
                                               authorized, authorized_len);
        if (rc < 0)
            return rc;
        ap = &a;
    } else if (auth && auth->alg != SX_KEY_NONE) {
        rc = sx_smp_authorize(&a, auth->alg, auth->priv,
                              s->has_srv_dh ? s->srv_dh : NULL, corr_b,
                              authorized, authorized_len);
        if (rc < 0)
            return rc;
        ap = &a;
    }

    /* room for the entry and the request before queuing anything */
    if (s->sqe_head + s->sqe_count == s->sqe_cap) {
        if (s->sqe_head > 0) {
            memmove(s->sqe, s->sqe + s->sqe_head, s->sqe_count * sizeof *s->sqe);
            s->sqe_head = 0;
        } else {
            size_t ncap = s->sqe_cap ? s->sqe_cap * 2 : 64;
            sess_sq_ent *ne = sx_realloc(s->sqe, ncap * sizeof *ne);
            if (!ne)
                return SIMPLEX_ERR_NOMEM;
            s->sqe = ne;
            s->sqe_cap = ncap;
        }
    }
    if (s->free_head == NO_SLOT) {
        rc = reqs_grow(s);
        if (rc < 0)
            return rc;
    }

    off = s->sq.len;
    rc = sx_smp_trans_encode(&s->sq, s->version, ap, NULL, body, body_len);
    sx_memzero(&a, sizeof a);
    tlen = s->sq.len - off;
    if (rc >= 0 && tlen + 2 > SX_SMP_BATCH_ROOM)
        rc = SIMPLEX_ERR_TOO_LARGE;
    if (rc < 0) {
        s->sq.len = off;
        s->sq.err = 0;
        return rc;
    }
    if (timeout_ms == SX_SMP_SESSION_TIMEOUT_DEFAULT)
        timeout_ms = s->cfg.response_timeout_ms;
    slot = s->free_head;
    r = &s->reqs[slot];
    if (timeout_ms != SX_SMP_SESSION_NO_TIMEOUT) {
        uint64_t deadline =
            now > UINT64_MAX - timeout_ms ? UINT64_MAX - 1 : now + timeout_ms;
        rc = heap_push(s, deadline, slot, r->gen);
        if (rc < 0) {
            s->sq.len = off;
            return rc;
        }
    }
    s->free_head = r->next_free;
    memcpy(r->corr, corr, sizeof corr);
    r->id = s->next_req_id++;
    r->state = REQ_PENDING;
    r->is_ping = (uint8_t)(is_ping != 0);
    r->ent_len = (uint8_t)entity_len;
    if (entity_len)
        memcpy(r->ent, entity_id, entity_len);
    ht_insert(s, slot);
    s->reqs_used++;
    s->n_pending++;

    s->sqe[s->sqe_head + s->sqe_count].off = off;
    s->sqe[s->sqe_head + s->sqe_count].len = tlen;
    s->sqe[s->sqe_head + s->sqe_count].ent_hash =
        ent_hash(entity_id, entity_len);
    s->sqe_count++;
    if (request_id)
        *request_id = r->id;
    return 0;
}

int sx_smp_session_submit(sx_smp_session *s, const uint8_t *entity_id,
                          size_t entity_len, const sx_smp_cmd *cmd,
                          const sx_smp_session_auth *auth, uint64_t now,
                          uint64_t timeout_ms, uint64_t *request_id)
{
    if (!s)
        return SIMPLEX_ERR_INVALID_ARG;
    return submit_internal(s, NULL, entity_id, entity_len, cmd, auth, now,
                           timeout_ms, 0, request_id);
}

int sx_smp_session_submit_corr(sx_smp_session *s,
                               const uint8_t corr_id[SX_SMP_SESSION_CORR_ID_BYTES],
                               const uint8_t *entity_id, size_t entity_len,
                               const sx_smp_cmd *cmd,
                               const sx_smp_session_auth *auth, uint64_t now,
                               uint64_t timeout_ms, uint64_t *request_id)
{
    if (!s || !corr_id)
        return SIMPLEX_ERR_INVALID_ARG;
    return submit_internal(s, corr_id, entity_id, entity_len, cmd, auth, now,
                           timeout_ms, 0, request_id);
}

int sx_smp_session_want_write(const sx_smp_session *s)
{
    if (!s || s->state == SX_SMP_SESSION_FAILED)
        return 0;
    return s->hs_pending ||
           (s->state == SX_SMP_SESSION_READY && s->sqe_count > 0);
}

int sx_smp_session_next_block(sx_smp_session *s,
                              uint8_t out[SX_SMP_BLOCK_SIZE], uint64_t now)
{
    size_t k = 0, total = 0;
    sx_wr w;
    int rc;

    (void)now;
    if (!s || !out)
        return SIMPLEX_ERR_INVALID_ARG;
    if (s->state == SX_SMP_SESSION_FAILED)
        return 0;
    if (s->hs_pending) {
        memcpy(out, s->hs_block, SX_SMP_BLOCK_SIZE);
        sx_memzero(s->hs_block, sizeof s->hs_block);
        s->hs_pending = 0;
        return 1;
    }
    if (s->state != SX_SMP_SESSION_READY || s->sqe_count == 0)
        return 0;
    /* as many queued transmissions as fit, in order, each entity once */
    while (k < s->sqe_count && k < SX_SMP_MAX_BATCH) {
        const sess_sq_ent *q = &s->sqe[s->sqe_head + k];
        size_t j;
        if (total + q->len + 2 > SX_SMP_BATCH_ROOM)
            break;
        for (j = 0; q->ent_hash && j < k; j++)
            if (s->sqe[s->sqe_head + j].ent_hash == q->ent_hash)
                break;
        if (q->ent_hash && j < k)
            break;
        total += q->len + 2;
        s->views[k].p = s->sq.p + q->off;
        s->views[k].n = q->len;
        k++;
    }
    /* the reference's packing rule agrees: everything here fits one block */
    k = sx_smp_batch_fit(s->views, k);
    if (k == 0)
        return sess_fail(s, 0, 0, SIMPLEX_ERR_INTERNAL, 0);
    sx_wr_init_fixed(&w, s->content, sizeof s->content);
    rc = sx_smp_batch_encode(&w, s->views, k);
    if (rc >= 0) {
        if (s->enc)
            rc = sx_smp_block_encrypt(&s->chain, out, w.p, w.len);
        else
            rc = sx_smp_block_pad(out, w.p, w.len);
    }
    sx_memzero(s->content, w.len);
    if (rc < 0)
        return sess_fail(s, 0, 0, rc, 0);
    s->sqe_head += k;
    s->sqe_count -= k;
    if (s->sqe_count == 0) {
        sq_clear(s);
    } else if (s->sqe[s->sqe_head].off > s->sq.len / 2) {
        /* compact: drop the sent prefix of the buffer */
        size_t base = s->sqe[s->sqe_head].off;
        memmove(s->sq.p, s->sq.p + base, s->sq.len - base);
        sx_memzero(s->sq.p + s->sq.len - base, base);
        s->sq.len -= base;
        for (size_t i = 0; i < s->sqe_count; i++)
            s->sqe[s->sqe_head + i].off -= base;
    }
    return 1;
}

/* ---- timers ---- */

static uint64_t ping_due(const sx_smp_session *s)
{
    uint64_t base;
    if (s->state != SX_SMP_SESSION_READY || s->cfg.ping_interval_ms == 0 ||
        s->ping_outstanding)
        return SX_SMP_SESSION_NEVER;
    base = s->last_rx > s->ping_done ? s->last_rx : s->ping_done;
    if (base > UINT64_MAX - s->cfg.ping_interval_ms)
        return SX_SMP_SESSION_NEVER;
    return base + s->cfg.ping_interval_ms;
}

uint64_t sx_smp_session_next_timeout(sx_smp_session *s)
{
    uint64_t t = SX_SMP_SESSION_NEVER, p;
    if (!s || s->state != SX_SMP_SESSION_READY)
        return SX_SMP_SESSION_NEVER;
    heap_clean(s);
    if (s->heap_len > 0)
        t = s->heap[0].deadline;
    p = ping_due(s);
    return p < t ? p : t;
}

int sx_smp_session_handle_timeout(sx_smp_session *s, uint64_t now)
{
    if (!s)
        return SIMPLEX_ERR_INVALID_ARG;
    if (s->state == SX_SMP_SESSION_FAILED)
        return s->fail_code;
    if (s->state != SX_SMP_SESSION_READY)
        return 0;
    for (;;) {
        sess_req *r;
        uint32_t slot;
        heap_clean(s);
        if (s->heap_len == 0 || s->heap[0].deadline > now)
            break;
        slot = s->heap[0].slot;
        r = &s->reqs[slot];
        heap_pop(s);
        /* kept: a late response is still matched */
        if (late_push(s, slot) < 0)
            return sess_fail(s, 0, 0, SIMPLEX_ERR_NOMEM, 0);
        if (r->is_ping) {
            s->ping_outstanding = 0;
            s->ping_done = now;
            s->missed_pings++;
            sx_log(s->log, SIMPLEX_LOG_INFO, "smp session: ping %u missed",
                   s->missed_pings);
            if (s->cfg.max_missed_pings &&
                s->missed_pings >= s->cfg.max_missed_pings)
                return sess_fail(s, 0, 0, SIMPLEX_ERR_IO, 1);
        } else {
            sx_smp_session_event *e = ev_push(s);
            if (!e)
                return sess_fail(s, 0, 0, SIMPLEX_ERR_NOMEM, 0);
            e->type = SX_SMP_SESSION_EV_TIMEOUT;
            e->request_id = r->id;
        }
    }
    if (now >= ping_due(s)) {
        sx_smp_cmd ping;
        int rc;
        sx_smp_cmd_init(&ping, SX_SMP_CMD_PING);
        rc = submit_internal(s, NULL, NULL, 0, &ping, NULL, now,
                             s->cfg.response_timeout_ms, 1, NULL);
        if (rc < 0)
            return sess_fail(s, 0, 0, rc, 0);
        s->ping_outstanding = 1;
    }
    return 0;
}

/* ---- queries ---- */

sx_smp_session_state sx_smp_session_get_state(const sx_smp_session *s)
{
    return s ? s->state : SX_SMP_SESSION_FAILED;
}

uint16_t sx_smp_session_version(const sx_smp_session *s)
{
    return s ? s->version : 0;
}

int sx_smp_session_encrypted(const sx_smp_session *s)
{
    return s ? s->enc : 0;
}

size_t sx_smp_session_pending(const sx_smp_session *s)
{
    return s ? s->n_pending : 0;
}

int sx_smp_session_server_key(const sx_smp_session *s,
                              uint8_t out[SX_X25519_BYTES])
{
    if (!s || !out || s->state != SX_SMP_SESSION_READY || !s->has_srv_dh)
        return SIMPLEX_ERR_INVALID_ARG;
    memcpy(out, s->srv_dh, SX_X25519_BYTES);
    return 0;
}

int sx_smp_session_dh_secret(const sx_smp_session *s,
                             uint8_t out[SX_X25519_BYTES])
{
    if (!s || !out || s->state != SX_SMP_SESSION_READY || !s->has_dh_secret)
        return SIMPLEX_ERR_INVALID_ARG;
    memcpy(out, s->dh_secret, SX_X25519_BYTES);
    return 0;
}
