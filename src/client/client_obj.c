/*
 * SMP client: queue credentials (export/import) and event objects.
 */
#include <string.h>

#include "client/client_int.h"
#include "client/smp_proto.h"
#include "common/bytes.h"
#include "crypto/crypto.h"

#define QUEUE_EXPORT_VERSION 1

char *cl_strdup(const char *s)
{
    size_t n = strlen(s);
    char *p = sx_malloc(n + 1);
    if (p)
        memcpy(p, s, n + 1);
    return p;
}

size_t simplex_client_key_bytes(void)
{
    return SIMPLEX_CLIENT_KEY_BYTES;
}

/* ---- events ---- */

simplex_client_event *cl_event_new(simplex_client_event_type type,
                                   const char *server)
{
    simplex_client_event *ev = sx_calloc(1, sizeof *ev);
    if (!ev)
        return NULL;
    ev->type = type;
    ev->server = cl_strdup(server ? server : "");
    if (!ev->server) {
        sx_free(ev);
        return NULL;
    }
    return ev;
}

int cl_event_from_msg(simplex_client_event **out, const char *server,
                      const uint8_t *rcv_id, size_t rcv_id_len,
                      const uint8_t dh_secret[CL_KEY], const sx_smp_msg *m)
{
    simplex_client_event *ev;
    uint8_t *plain_buf;
    const uint8_t *plain;
    size_t plain_len;
    sx_smp_rcv_body b;
    int rc;

    *out = NULL;
    if (m->tag != SX_SMP_MSG_MSG || m->id.n > CL_ID_MAX ||
        rcv_id_len > CL_ID_MAX || m->body.n < SX_BOX_TAG_BYTES)
        return SIMPLEX_ERR_PARSE;
    plain_buf = sx_malloc(m->body.n);
    if (!plain_buf)
        return SIMPLEX_ERR_NOMEM;
    rc = sx_smp_msg_body_decrypt(plain_buf, &plain, &plain_len, dh_secret,
                                 m->id, m->body.p, m->body.n);
    if (rc == 0)
        rc = sx_smp_rcv_body_decode(&b, plain, plain_len);
    if (rc != 0) {
        sx_free_secret(plain_buf, m->body.n);
        return rc;
    }
    ev = cl_event_new(SIMPLEX_CLIENT_EVENT_MSG, server);
    if (!ev) {
        sx_free_secret(plain_buf, m->body.n);
        return SIMPLEX_ERR_NOMEM;
    }
    memcpy(ev->queue_id, rcv_id, rcv_id_len);
    ev->queue_id_len = rcv_id_len;
    memcpy(ev->msg_id, m->id.p, m->id.n);
    ev->msg_id_len = m->id.n;
    if (b.quota) {
        ev->flags = SIMPLEX_CLIENT_MSG_QUOTA;
        ev->ts = b.ts;
    } else {
        ev->ts = b.ts;
        ev->flags = b.notification ? SIMPLEX_CLIENT_MSG_NOTIFICATION : 0;
        if (b.body.n) {
            /* the body stays where it was decrypted */
            ev->body = (uint8_t *)(uintptr_t)b.body.p;
            ev->body_len = b.body.n;
            ev->body_buf = plain_buf;
            ev->body_buf_len = m->body.n;
            plain_buf = NULL;
        }
    }
    sx_free_secret(plain_buf, m->body.n);
    *out = ev;
    return 0;
}

simplex_client_event_type
simplex_client_event_get_type(const simplex_client_event *ev)
{
    return ev ? ev->type : (simplex_client_event_type)0;
}

const char *simplex_client_event_server(const simplex_client_event *ev)
{
    return ev && ev->server ? ev->server : "";
}

const uint8_t *simplex_client_event_queue_id(const simplex_client_event *ev,
                                             size_t *len)
{
    if (len)
        *len = ev ? ev->queue_id_len : 0;
    return ev && ev->queue_id_len ? ev->queue_id : NULL;
}

const uint8_t *simplex_client_event_msg_id(const simplex_client_event *ev,
                                           size_t *len)
{
    if (len)
        *len = ev ? ev->msg_id_len : 0;
    return ev && ev->msg_id_len ? ev->msg_id : NULL;
}

int64_t simplex_client_event_timestamp(const simplex_client_event *ev)
{
    return ev ? ev->ts : 0;
}

unsigned simplex_client_event_flags(const simplex_client_event *ev)
{
    return ev ? ev->flags : 0;
}

const uint8_t *simplex_client_event_body(const simplex_client_event *ev,
                                         size_t *len)
{
    static const uint8_t empty[1] = {0};
    if (len)
        *len = ev ? ev->body_len : 0;
    if (!ev)
        return NULL;
    return ev->body ? ev->body : empty;
}

int simplex_client_event_copy_body(const simplex_client_event *ev,
                                   simplex_buf *out)
{
    if (!ev || !out)
        return SIMPLEX_ERR_INVALID_ARG;
    out->data = sx_malloc(ev->body_len ? ev->body_len : 1);
    if (!out->data) {
        out->len = 0;
        return SIMPLEX_ERR_NOMEM;
    }
    if (ev->body_len)
        memcpy(out->data, ev->body, ev->body_len);
    out->len = ev->body_len;
    return 0;
}

int simplex_client_event_error(const simplex_client_event *ev)
{
    return ev ? ev->error : 0;
}

const char *simplex_client_event_message(const simplex_client_event *ev)
{
    return ev && ev->message ? ev->message : "";
}

int simplex_client_event_copy(simplex_client_event **out,
                              const simplex_client_event *ev)
{
    simplex_client_event *e;
    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    if (!ev)
        return SIMPLEX_ERR_INVALID_ARG;
    e = cl_event_new(ev->type, ev->server);
    if (!e)
        return SIMPLEX_ERR_NOMEM;
    memcpy(e->queue_id, ev->queue_id, sizeof e->queue_id);
    e->queue_id_len = ev->queue_id_len;
    memcpy(e->msg_id, ev->msg_id, sizeof e->msg_id);
    e->msg_id_len = ev->msg_id_len;
    e->ts = ev->ts;
    e->flags = ev->flags;
    e->error = ev->error;
    memcpy(e->nonce, ev->nonce, sizeof e->nonce);
    if (ev->body_len) {
        e->body = sx_malloc(ev->body_len);
        if (!e->body)
            goto nomem;
        memcpy(e->body, ev->body, ev->body_len);
        e->body_len = ev->body_len;
    }
    if (ev->message && !(e->message = cl_strdup(ev->message)))
        goto nomem;
    *out = e;
    return 0;
nomem:
    simplex_client_event_free(e);
    return SIMPLEX_ERR_NOMEM;
}

void simplex_client_event_free(simplex_client_event *ev)
{
    if (!ev)
        return;
    sx_free(ev->server);
    if (ev->body_buf)
        sx_free_secret(ev->body_buf, ev->body_buf_len);
    else
        sx_free_secret(ev->body, ev->body_len);
    sx_free(ev->message);
    sx_free_secret(ev, sizeof *ev);
}

/* ---- queues ---- */

const char *simplex_queue_server(const simplex_queue *q)
{
    return q ? q->server : NULL;
}

const uint8_t *simplex_queue_recipient_id(const simplex_queue *q, size_t *len)
{
    if (len)
        *len = q ? q->rcv_id_len : 0;
    return q ? q->rcv_id : NULL;
}

const uint8_t *simplex_queue_sender_id(const simplex_queue *q, size_t *len)
{
    if (len)
        *len = q ? q->snd_id_len : 0;
    return q ? q->snd_id : NULL;
}

int simplex_queue_sender_can_secure(const simplex_queue *q)
{
    return q ? q->sender_can_secure : 0;
}

void simplex_queue_free(simplex_queue *q)
{
    if (!q)
        return;
    sx_free(q->server);
    sx_free_secret(q, sizeof *q);
}

/* Layout: u8 version, short server, short rcv id, short snd id,
 * 32 rcv auth sk, 32 rcv dh sk, 32 server dh pk, bool sender-can-secure.
 * Public keys and the DH secret are derived again on import. */
int simplex_queue_export(const simplex_queue *q, simplex_buf *out)
{
    sx_wr w;
    uint8_t *p;
    size_t n;
    if (!q || !out)
        return SIMPLEX_ERR_INVALID_ARG;
    out->data = NULL;
    out->len = 0;
    sx_wr_init(&w);
    sx_wr_u8(&w, QUEUE_EXPORT_VERSION);
    sx_wr_short(&w, q->server, strlen(q->server));
    sx_wr_short(&w, q->rcv_id, q->rcv_id_len);
    sx_wr_short(&w, q->snd_id, q->snd_id_len);
    sx_wr_raw(&w, q->rcv_auth_sk, CL_KEY);
    sx_wr_raw(&w, q->rcv_dh_sk, CL_KEY);
    sx_wr_raw(&w, q->srv_dh_pk, CL_KEY);
    sx_wr_bool(&w, q->sender_can_secure);
    if (sx_wr_error(&w) || sx_wr_take(&w, &p, &n) != 0) {
        int rc = sx_wr_error(&w);
        sx_wr_free(&w);
        return rc ? rc : SIMPLEX_ERR_NOMEM;
    }
    out->data = p;
    out->len = n;
    return 0;
}

int simplex_queue_import(simplex_queue **out, const uint8_t *data, size_t len)
{
    sx_rd r;
    uint8_t ver;
    const uint8_t *s, *rid, *sid;
    size_t sn, rn, nn;
    simplex_queue *q;
    int rc;

    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    if (!data)
        return SIMPLEX_ERR_INVALID_ARG;
    q = sx_calloc(1, sizeof *q);
    if (!q)
        return SIMPLEX_ERR_NOMEM;
    sx_rd_init(&r, data, len);
    if ((rc = sx_rd_u8(&r, &ver)) != 0)
        goto fail;
    if (ver != QUEUE_EXPORT_VERSION) {
        rc = SIMPLEX_ERR_UNSUPPORTED;
        goto fail;
    }
    if ((rc = sx_rd_short(&r, &s, &sn)) != 0 ||
        (rc = sx_rd_short(&r, &rid, &rn)) != 0 ||
        (rc = sx_rd_short(&r, &sid, &nn)) != 0)
        goto fail;
    if (rn == 0 || rn > CL_ID_MAX || nn > CL_ID_MAX || sn == 0) {
        rc = SIMPLEX_ERR_PARSE;
        goto fail;
    }
    memcpy(q->rcv_id, rid, rn);
    q->rcv_id_len = rn;
    memcpy(q->snd_id, sid, nn);
    q->snd_id_len = nn;
    if ((rc = sx_rd_copy(&r, q->rcv_auth_sk, CL_KEY)) != 0 ||
        (rc = sx_rd_copy(&r, q->rcv_dh_sk, CL_KEY)) != 0 ||
        (rc = sx_rd_copy(&r, q->srv_dh_pk, CL_KEY)) != 0 ||
        (rc = sx_rd_bool(&r, &q->sender_can_secure)) != 0)
        goto fail;
    if ((rc = sx_rd_end(&r)) != 0)
        goto fail;
    q->server = sx_malloc(sn + 1);
    if (!q->server) {
        rc = SIMPLEX_ERR_NOMEM;
        goto fail;
    }
    memcpy(q->server, s, sn);
    q->server[sn] = 0;
    {
        sx_server_addr a;
        if (strlen(q->server) != sn ||
            sx_server_addr_parse(&a, q->server, sn) != 0) {
            rc = SIMPLEX_ERR_PARSE;
            goto fail;
        }
    }
    if ((rc = sx_ed25519_expand(q->rcv_auth_x, q->rcv_auth_sk)) != 0 ||
        (rc = sx_x25519_public(q->rcv_dh_pk, q->rcv_dh_sk)) != 0 ||
        (rc = sx_x25519_dh(q->dh_secret, q->srv_dh_pk, q->rcv_dh_sk)) != 0)
        goto fail;
    /* the expanded key is seed || public key */
    memcpy(q->rcv_auth_pk, q->rcv_auth_x + CL_KEY, CL_KEY);
    q->has_rcv_auth_x = 1;
    *out = q;
    return 0;
fail:
    simplex_queue_free(q);
    return rc;
}

int simplex_client_generate_auth_key(uint8_t public_key[32],
                                     uint8_t private_key[32])
{
    if (!public_key || !private_key)
        return SIMPLEX_ERR_INVALID_ARG;
    if (!sx_initialized())
        return SIMPLEX_ERR_NOT_INITIALIZED;
    return sx_ed25519_keypair(public_key, private_key);
}
