/*
 * smp-test-server queue and message store (in memory) with an optional
 * append-only store log. The log is this server's own line format (not
 * the reference's), one record a line, binary fields in base64url, an
 * empty field written as "-":
 *
 *   NEW rid sid rcv_auth_key_spki rcv_dh_secret mode   (mode: M, C or -)
 *   KEY rid snd_auth_key_spki
 *   RKEY rid rcv_auth_key_spki...
 *   LINK rid link_id fixed_data user_data
 *   LDEL rid
 *   OFF rid
 *   DEL rid
 *   NKEY rid nid ntf_auth_key_spki ntf_dh_secret
 *   NDEL rid
 *   MSG rid msg_id ts flag body                        (flag: T, F; Q quota)
 *   ACK rid msg_id                                     (head removed)
 *
 * Replaying the log at start restores the queues and undelivered messages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/text.h"
#include "srv.h"

static srv_queue *g_queues;
static FILE *g_log;

static srv_queue *q_alloc(const uint8_t *rid, const uint8_t *sid);

int64_t srv_now(void)
{
    return (int64_t)time(NULL);
}

srv_queue *srv_q_first(void)
{
    return g_queues;
}

/* ---- hash indexes: one chained table per id kind ----
 * A queue is in the rid and sid tables from creation, in the nid table
 * while has_ntf and in the link table while has_link. Each queue keeps its
 * chain link and hash per table. When ids repeat, the newest queue (highest
 * seq) wins, as the list walk this replaces did. */

enum { K_RID, K_SID, K_NID, K_LINK, K_N };

typedef struct {
    srv_queue **b;
    size_t cap, n; /* cap: 0 or a power of two */
} qtab;

static qtab g_tab[K_N];
static uint64_t g_seq;

static uint64_t id_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211u;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    return h;
}

static const uint8_t *q_key(const srv_queue *q, int k, size_t *n)
{
    *n = k == K_LINK ? q->link_len : SRV_ID_BYTES;
    return k == K_RID ? q->rid : k == K_SID ? q->sid
         : k == K_NID ? q->nid : q->link_id;
}

static void tab_grow(qtab *t, int k)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    srv_queue **b = calloc(cap, sizeof *b);
    if (!b)
        abort();
    for (size_t i = 0; i < t->cap; i++)
        while (t->b[i]) {
            srv_queue *q = t->b[i];
            t->b[i] = q->h_next[k];
            q->h_next[k] = b[q->h_hash[k] & (cap - 1)];
            b[q->h_hash[k] & (cap - 1)] = q;
        }
    free(t->b);
    t->b = b;
    t->cap = cap;
}

static void idx_del(srv_queue *q, int k)
{
    qtab *t = &g_tab[k];
    if (!(q->h_in & (1u << k)))
        return;
    for (srv_queue **pp = &t->b[q->h_hash[k] & (t->cap - 1)]; *pp;
         pp = &(*pp)->h_next[k])
        if (*pp == q) {
            *pp = q->h_next[k];
            break;
        }
    q->h_in &= ~(1u << k);
    t->n--;
}

/* (Re)indexes q under its current id of kind k. */
static void idx_add(srv_queue *q, int k)
{
    qtab *t = &g_tab[k];
    size_t n, i;
    const uint8_t *id = q_key(q, k, &n);
    idx_del(q, k);
    if (t->n >= t->cap / 2)
        tab_grow(t, k);
    q->h_hash[k] = id_hash(id, n);
    i = q->h_hash[k] & (t->cap - 1);
    q->h_next[k] = t->b[i];
    t->b[i] = q;
    q->h_in |= 1u << k;
    t->n++;
}

static srv_queue *find(int k, const uint8_t *id, size_t n)
{
    qtab *t = &g_tab[k];
    srv_queue *best = NULL;
    uint64_t h;
    if ((k != K_LINK && n != SRV_ID_BYTES) || t->n == 0)
        return NULL;
    h = id_hash(id, n);
    for (srv_queue *q = t->b[h & (t->cap - 1)]; q; q = q->h_next[k]) {
        size_t qn;
        const uint8_t *qid = q_key(q, k, &qn);
        if (q->h_hash[k] == h && qn == n && memcmp(qid, id, n) == 0 &&
            (!best || q->seq > best->seq))
            best = q;
    }
    return best;
}

srv_queue *srv_q_by_rid(const uint8_t *id, size_t n)
{
    return find(K_RID, id, n);
}
srv_queue *srv_q_by_sid(const uint8_t *id, size_t n)
{
    return find(K_SID, id, n);
}
srv_queue *srv_q_by_nid(const uint8_t *id, size_t n)
{
    return find(K_NID, id, n);
}
srv_queue *srv_q_by_link(const uint8_t *id, size_t n)
{
    return find(K_LINK, id, n);
}

static int id_used(const uint8_t *id)
{
    return srv_q_by_rid(id, SRV_ID_BYTES) || srv_q_by_sid(id, SRV_ID_BYTES) ||
           srv_q_by_nid(id, SRV_ID_BYTES);
}

srv_queue *srv_q_new_with(const uint8_t *sid)
{
    uint8_t rid[SRV_ID_BYTES];
    if (!sid)
        return srv_q_new();
    sx_random(rid, sizeof rid);
    if (id_used(rid) || id_used(sid) || !memcmp(rid, sid, sizeof rid))
        return NULL;
    return q_alloc(rid, sid);
}

static void link_free(srv_queue *q)
{
    idx_del(q, K_LINK);
    free(q->fixed_data);
    free(q->user_data);
    q->fixed_data = q->user_data = NULL;
    q->fixed_len = q->user_len = 0;
    q->has_link = 0;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    if (!d)
        abort();
    if (n)
        memcpy(d, p, n);
    return d;
}

static void link_set(srv_queue *q, const uint8_t *lid, size_t lid_len,
                     const uint8_t *fixed, size_t fixed_len,
                     const uint8_t *user, size_t user_len)
{
    link_free(q);
    q->has_link = 1;
    q->link_len = lid_len < sizeof q->link_id ? lid_len : sizeof q->link_id;
    memcpy(q->link_id, lid, q->link_len);
    q->fixed_data = dup_bytes(fixed, fixed_len);
    q->fixed_len = fixed_len;
    q->user_data = dup_bytes(user, user_len);
    q->user_len = user_len;
    idx_add(q, K_LINK);
}

static srv_queue *q_alloc(const uint8_t *rid, const uint8_t *sid)
{
    srv_queue *q = calloc(1, sizeof *q);
    if (!q)
        abort();
    q->can_write = 1;
    q->seq = ++g_seq;
    memcpy(q->rid, rid, SRV_ID_BYTES);
    memcpy(q->sid, sid, SRV_ID_BYTES);
    idx_add(q, K_RID);
    idx_add(q, K_SID);
    q->next = g_queues;
    if (g_queues)
        g_queues->prev = q;
    g_queues = q;
    return q;
}

srv_queue *srv_q_new(void)
{
    for (int tries = 0; tries < 3; tries++) {
        uint8_t rid[SRV_ID_BYTES], sid[SRV_ID_BYTES];
        sx_random(rid, sizeof rid);
        sx_random(sid, sizeof sid);
        if (id_used(rid) || id_used(sid) || !memcmp(rid, sid, sizeof rid))
            continue;
        return q_alloc(rid, sid);
    }
    return NULL;
}

/* ---- log writing ---- */

static void wr_b64(sx_wr *w, const uint8_t *p, size_t n)
{
    sx_wr_u8(w, ' ');
    if (n == 0)
        sx_wr_u8(w, '-');
    else
        sx_b64url_encode(w, p, n);
}

static void wr_key(sx_wr *w, const sx_smp_key *k)
{
    uint8_t der[SX_KEY_DER_MAX];
    size_t n = 0;
    if (sx_key_public_encode(der, sizeof der, &n, k->alg, k->raw) < 0)
        n = 0;
    wr_b64(w, der, n);
}

static void log_put(sx_wr *w)
{
    if (g_log && sx_wr_error(w) == 0) {
        sx_wr_u8(w, '\n');
        fwrite(w->p, 1, w->len, g_log);
        fflush(g_log);
    }
    sx_wr_free(w);
}

static void log_start(sx_wr *w, const char *tag, const srv_queue *q)
{
    sx_wr_init(w);
    sx_wr_str(w, tag);
    wr_b64(w, q->rid, SRV_ID_BYTES);
}

void srv_q_log_new(const srv_queue *q)
{
    sx_wr w;
    char mode[2] = {q->mode ? q->mode : '-', 0};
    if (!g_log)
        return;
    log_start(&w, "NEW", q);
    wr_b64(&w, q->sid, SRV_ID_BYTES);
    wr_key(&w, &q->rcv_keys[0]);
    wr_b64(&w, q->rcv_dh_secret, 32);
    sx_wr_u8(&w, ' ');
    sx_wr_str(&w, mode);
    log_put(&w);
}

void srv_q_secure(srv_queue *q, const sx_smp_key *k)
{
    sx_wr w;
    q->has_snd_key = 1;
    q->snd_key = *k;
    if (!g_log)
        return;
    log_start(&w, "KEY", q);
    wr_key(&w, k);
    log_put(&w);
}

void srv_q_rkey(srv_queue *q, const sx_smp_key *ks, size_t n)
{
    sx_wr w;
    if (n == 0 || n > SX_SMP_MAX_RCV_KEYS)
        return;
    memcpy(q->rcv_keys, ks, n * sizeof *ks);
    q->n_rcv_keys = n;
    if (!g_log)
        return;
    log_start(&w, "RKEY", q);
    for (size_t i = 0; i < n; i++)
        wr_key(&w, &ks[i]);
    log_put(&w);
}

void srv_q_set_link(srv_queue *q, const uint8_t *lid, size_t lid_len,
                    const uint8_t *fixed, size_t fixed_len,
                    const uint8_t *user, size_t user_len)
{
    sx_wr w;
    link_set(q, lid, lid_len, fixed, fixed_len, user, user_len);
    if (!g_log)
        return;
    log_start(&w, "LINK", q);
    wr_b64(&w, q->link_id, q->link_len);
    wr_b64(&w, fixed, fixed_len);
    wr_b64(&w, user, user_len);
    log_put(&w);
}

void srv_q_del_link(srv_queue *q)
{
    sx_wr w;
    link_free(q);
    if (!g_log)
        return;
    log_start(&w, "LDEL", q);
    log_put(&w);
}

void srv_q_suspend(srv_queue *q)
{
    sx_wr w;
    q->off = 1;
    if (!g_log)
        return;
    log_start(&w, "OFF", q);
    log_put(&w);
}

void srv_q_ntfs_clear(srv_queue *q)
{
    while (q->ntfs_head) {
        srv_ntf *n = q->ntfs_head;
        q->ntfs_head = n->next;
        free(n);
    }
    q->ntfs_tail = NULL;
}

void srv_q_set_ntf(srv_queue *q, const uint8_t nid[SRV_ID_BYTES],
                   const sx_smp_key *k, const uint8_t secret[32])
{
    sx_wr w;
    srv_q_ntfs_clear(q);
    q->has_ntf = 1;
    memcpy(q->nid, nid, SRV_ID_BYTES);
    idx_add(q, K_NID);
    q->ntf_key = *k;
    memcpy(q->ntf_dh_secret, secret, 32);
    if (!g_log)
        return;
    log_start(&w, "NKEY", q);
    wr_b64(&w, nid, SRV_ID_BYTES);
    wr_key(&w, k);
    wr_b64(&w, secret, 32);
    log_put(&w);
}

void srv_q_del_ntf(srv_queue *q)
{
    sx_wr w;
    q->has_ntf = 0;
    idx_del(q, K_NID);
    q->ntf_subscriber = NULL;
    srv_q_ntfs_clear(q);
    if (!g_log)
        return;
    log_start(&w, "NDEL", q);
    log_put(&w);
}

static void msgs_free(srv_queue *q)
{
    srv_msg *m = q->head;
    while (m) {
        srv_msg *n = m->next;
        free(m->body);
        free(m);
        m = n;
    }
    q->head = q->tail = NULL;
    q->size = 0;
}

void srv_q_delete(srv_queue *q)
{
    sx_wr w;
    if (g_log) {
        log_start(&w, "DEL", q);
        log_put(&w);
    }
    if (q->prev)
        q->prev->next = q->next;
    else
        g_queues = q->next;
    if (q->next)
        q->next->prev = q->prev;
    for (int k = 0; k < K_N; k++)
        idx_del(q, k);
    msgs_free(q);
    link_free(q);
    srv_q_ntfs_clear(q);
    free(q);
}

static srv_msg *append(srv_queue *q, const uint8_t *id, int64_t ts,
                       int quota, int ntf, const uint8_t *body, size_t n)
{
    srv_msg *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    memcpy(m->id, id, SRV_ID_BYTES);
    m->ts = ts;
    m->quota = quota;
    m->notification = ntf;
    if (!quota && n) {
        m->body = malloc(n);
        if (!m->body)
            abort();
        memcpy(m->body, body, n);
        m->len = n;
    }
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    q->size++;
    return m;
}

static void log_msg(const srv_queue *q, const srv_msg *m)
{
    sx_wr w;
    char num[32];
    if (!g_log)
        return;
    log_start(&w, "MSG", q);
    wr_b64(&w, m->id, SRV_ID_BYTES);
    snprintf(num, sizeof num, " %lld %c", (long long)m->ts,
             m->quota ? 'Q' : m->notification ? 'T' : 'F');
    sx_wr_str(&w, num);
    wr_b64(&w, m->body, m->len);
    log_put(&w);
}

/* The reference's STM writeMsg: writing is allowed while canWrite or when
 * the queue is empty; the quota marker takes the place of the message
 * that reaches the quota, and further writes fail until it is emptied. */
int srv_q_write(srv_queue *q, const uint8_t *body, size_t n, int ntf,
                int *was_empty, srv_msg **out)
{
    uint8_t id[SRV_ID_BYTES];
    int64_t ts = srv_now();
    int empty = q->head == NULL;
    srv_msg *m;

    *out = NULL;
    *was_empty = empty;
    if (!q->can_write && !empty)
        return 0;
    q->can_write = q->size < SRV_QUOTA;
    sx_random(id, sizeof id);
    m = append(q, id, ts, !q->can_write, ntf, body, n);
    log_msg(q, m);
    if (!q->can_write)
        return 0;
    *out = m;
    return 1;
}

static void del_head(srv_queue *q)
{
    srv_msg *m = q->head;
    sx_wr w;
    if (!m)
        return;
    if (g_log) {
        log_start(&w, "ACK", q);
        wr_b64(&w, m->id, SRV_ID_BYTES);
        log_put(&w);
    }
    q->head = m->next;
    if (!q->head)
        q->tail = NULL;
    q->size--;
    free(m->body);
    free(m);
}

int srv_q_del_head(srv_queue *q, const uint8_t *id, size_t n)
{
    if (!q->head || n != SRV_ID_BYTES || memcmp(q->head->id, id, n) != 0)
        return 0;
    del_head(q);
    return 1;
}

void srv_q_expire(srv_queue *q, int64_t before)
{
    while (q->head && q->head->ts < before)
        del_head(q);
}

/* ---- log replay ---- */

#define MAX_FIELDS (2 + SX_SMP_MAX_RCV_KEYS)

static int split(char *line, char **f)
{
    int n = 0;
    char *s = line;
    while (n < MAX_FIELDS) {
        f[n++] = s;
        s = strchr(s, ' ');
        if (!s)
            break;
        *s++ = 0;
    }
    return n;
}

/* Decodes a base64url field into a growable writer (caller frees). */
static int field(sx_wr *w, const char *s)
{
    sx_wr_init(w);
    if (strcmp(s, "-") == 0)
        return 0;
    return sx_b64url_decode(w, s, strlen(s));
}

static int field_fixed(uint8_t *out, size_t n, const char *s)
{
    sx_wr w;
    int rc = field(&w, s);
    if (rc == 0 && w.len == n)
        memcpy(out, w.p, n);
    else
        rc = -1;
    sx_wr_free(&w);
    return rc;
}

static int field_key(sx_smp_key *k, const char *s)
{
    sx_wr w;
    int rc = field(&w, s);
    memset(k, 0, sizeof *k);
    if (rc == 0)
        rc = sx_key_public_decode(&k->alg, k->raw, &k->len, SX_KEY_NONE,
                                  w.p, w.len);
    sx_wr_free(&w);
    return rc < 0 ? -1 : 0;
}

static int replay(char *line)
{
    char *f[MAX_FIELDS];
    int n = split(line, f);
    uint8_t rid[SRV_ID_BYTES];
    srv_queue *q;

    if (n < 2 || field_fixed(rid, sizeof rid, f[1]) < 0)
        return -1;
    if (strcmp(f[0], "NEW") == 0) {
        uint8_t sid[SRV_ID_BYTES] = {0};
        int bad;
        if (n != 6 || id_used(rid))
            return -1;
        bad = field_fixed(sid, sizeof sid, f[2]) < 0; /* sid stays 0 */
        q = q_alloc(rid, sid);
        if (bad || field_key(&q->rcv_keys[0], f[3]) < 0 ||
            field_fixed(q->rcv_dh_secret, 32, f[4]) < 0)
            return -1;
        q->mode = f[5][0] == '-' ? 0 : f[5][0];
        q->n_rcv_keys = 1;
        return 0;
    }
    q = srv_q_by_rid(rid, sizeof rid);
    if (!q)
        return -1;
    if (strcmp(f[0], "KEY") == 0 && n == 3) {
        q->has_snd_key = 1;
        return field_key(&q->snd_key, f[2]);
    } else if (strcmp(f[0], "RKEY") == 0 && n > 2) {
        q->n_rcv_keys = (size_t)(n - 2);
        for (int i = 2; i < n; i++)
            if (field_key(&q->rcv_keys[i - 2], f[i]) < 0)
                return -1;
    } else if (strcmp(f[0], "LINK") == 0 && n == 5) {
        sx_wr l, fx, u;
        int rc = field(&l, f[2]);
        rc |= field(&fx, f[3]);
        rc |= field(&u, f[4]);
        if (rc == 0 && l.len > 0 && l.len <= sizeof q->link_id)
            link_set(q, l.p, l.len, fx.p, fx.len, u.p, u.len);
        sx_wr_free(&l);
        sx_wr_free(&fx);
        sx_wr_free(&u);
        if (rc)
            return -1;
    } else if (strcmp(f[0], "LDEL") == 0) {
        link_free(q);
    } else if (strcmp(f[0], "OFF") == 0) {
        q->off = 1;
    } else if (strcmp(f[0], "DEL") == 0) {
        FILE *keep = g_log;
        g_log = NULL;
        srv_q_delete(q);
        g_log = keep;
    } else if (strcmp(f[0], "NKEY") == 0 && n == 5) {
        int bad = field_fixed(q->nid, SRV_ID_BYTES, f[2]) < 0;
        q->has_ntf = 1;
        idx_add(q, K_NID);
        if (bad || field_key(&q->ntf_key, f[3]) < 0 ||
            field_fixed(q->ntf_dh_secret, 32, f[4]) < 0)
            return -1;
    } else if (strcmp(f[0], "NDEL") == 0) {
        q->has_ntf = 0;
        idx_del(q, K_NID);
    } else if (strcmp(f[0], "MSG") == 0 && n == 6) {
        uint8_t id[SRV_ID_BYTES];
        sx_wr body;
        int quota = f[4][0] == 'Q';
        if (field_fixed(id, sizeof id, f[2]) < 0 || field(&body, f[5]) < 0) {
            sx_wr_free(&body);
            return -1;
        }
        q->can_write = !quota;
        append(q, id, strtoll(f[3], NULL, 10), quota, f[4][0] == 'T', body.p,
               body.len);
        sx_wr_free(&body);
    } else if (strcmp(f[0], "ACK") == 0 && n == 3) {
        uint8_t id[SRV_ID_BYTES];
        FILE *keep = g_log;
        if (field_fixed(id, sizeof id, f[2]) < 0)
            return -1;
        g_log = NULL;
        srv_q_del_head(q, id, sizeof id);
        g_log = keep;
    } else {
        return -1;
    }
    return 0;
}

int srv_store_open_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        unsigned long lineno = 0;
        while ((len = getline(&line, &cap, f)) > 0) {
            lineno++;
            if (line[len - 1] == '\n')
                line[len - 1] = 0;
            if (line[0] && replay(line) < 0)
                fprintf(stderr, "store log %s:%lu: bad record ignored\n",
                        path, lineno);
        }
        free(line);
        fclose(f);
        /* expireMessagesOnStart (default on) */
        for (srv_queue *q = g_queues; q; q = q->next)
            srv_q_expire(q, srv_now() - SRV_MSG_TTL);
    } else if (errno != ENOENT) {
        return -1;
    }
    g_log = fopen(path, "a");
    return g_log ? 0 : -1;
}

void srv_store_close(void)
{
    while (g_queues) {
        srv_queue *q = g_queues;
        g_queues = q->next;
        msgs_free(q);
        link_free(q);
        free(q);
    }
    for (int k = 0; k < K_N; k++) {
        free(g_tab[k].b);
        g_tab[k] = (qtab){0};
    }
    if (g_log)
        fclose(g_log);
    g_log = NULL;
}
