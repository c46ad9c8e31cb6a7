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

static srv_queue *q_alloc(void);

int64_t srv_now(void)
{
    return (int64_t)time(NULL);
}

srv_queue *srv_q_first(void)
{
    return g_queues;
}

static srv_queue *find(const uint8_t *id, size_t n, size_t off)
{
    if (n != SRV_ID_BYTES)
        return NULL;
    for (srv_queue *q = g_queues; q; q = q->next) {
        const uint8_t *qid = (const uint8_t *)q + off;
        if (off == offsetof(srv_queue, nid) && !q->has_ntf)
            continue;
        if (memcmp(qid, id, n) == 0)
            return q;
    }
    return NULL;
}

srv_queue *srv_q_by_rid(const uint8_t *id, size_t n)
{
    return find(id, n, offsetof(srv_queue, rid));
}
srv_queue *srv_q_by_sid(const uint8_t *id, size_t n)
{
    return find(id, n, offsetof(srv_queue, sid));
}
srv_queue *srv_q_by_nid(const uint8_t *id, size_t n)
{
    return find(id, n, offsetof(srv_queue, nid));
}

srv_queue *srv_q_by_link(const uint8_t *id, size_t n)
{
    for (srv_queue *q = g_queues; q; q = q->next)
        if (q->has_link && q->link_len == n && memcmp(q->link_id, id, n) == 0)
            return q;
    return NULL;
}

static int id_used(const uint8_t *id)
{
    return srv_q_by_rid(id, SRV_ID_BYTES) || srv_q_by_sid(id, SRV_ID_BYTES) ||
           srv_q_by_nid(id, SRV_ID_BYTES);
}

srv_queue *srv_q_new_with(const uint8_t *sid)
{
    uint8_t rid[SRV_ID_BYTES];
    srv_queue *q;
    if (!sid)
        return srv_q_new();
    sx_random(rid, sizeof rid);
    if (id_used(rid) || id_used(sid) || !memcmp(rid, sid, sizeof rid))
        return NULL;
    q = q_alloc();
    memcpy(q->rid, rid, sizeof rid);
    memcpy(q->sid, sid, SRV_ID_BYTES);
    return q;
}

static void link_free(srv_queue *q)
{
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
}

static srv_queue *q_alloc(void)
{
    srv_queue *q = calloc(1, sizeof *q);
    if (!q)
        abort();
    q->can_write = 1;
    q->next = g_queues;
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
        srv_queue *q = q_alloc();
        memcpy(q->rid, rid, sizeof rid);
        memcpy(q->sid, sid, sizeof sid);
        return q;
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
    for (srv_queue **pp = &g_queues; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            break;
        }
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
        if (n != 6 || id_used(rid))
            return -1;
        q = q_alloc();
        memcpy(q->rid, rid, sizeof rid);
        if (field_fixed(q->sid, SRV_ID_BYTES, f[2]) < 0 ||
            field_key(&q->rcv_keys[0], f[3]) < 0 ||
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
        q->has_ntf = 1;
        if (field_fixed(q->nid, SRV_ID_BYTES, f[2]) < 0 ||
            field_key(&q->ntf_key, f[3]) < 0 ||
            field_fixed(q->ntf_dh_secret, 32, f[4]) < 0)
            return -1;
    } else if (strcmp(f[0], "NDEL") == 0) {
        q->has_ntf = 0;
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
    if (g_log)
        fclose(g_log);
    g_log = NULL;
}
