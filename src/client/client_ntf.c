/*
 * SMP client: queue notifications. The recipient enables them (NKEY,
 * answered with NID) and disables them (NDEL); the notifier subscribes
 * (NSUB) and receives NMSG events with encrypted message metadata.
 * The public calls post requests like client.c's; the rest runs on the
 * I/O thread (client_conn.c calls in).
 */
#include <stdio.h>
#include <string.h>

#include "client/client_int.h"
#include "client/smp_proto.h"
#include "common/bytes.h"
#include "crypto/crypto.h"

#define NOTIFIER_EXPORT_VERSION 1

/* ---- requests ---- */

static int queue_req(simplex_client *c, cl_req *r, cl_op op,
                     const simplex_queue *q)
{
    int rc = cl_api_enter(c);
    if (rc)
        return rc;
    if (!q)
        return SIMPLEX_ERR_INVALID_ARG;
    cl_api_req_init(r, op);
    r->one.q = q;
    return cl_api_req_server(c, r, q->server);
}

int simplex_client_enable_notifications(simplex_client *c,
                                        simplex_notifier **out,
                                        const simplex_queue *q)
{
    cl_req r;
    simplex_notifier *n;
    int rc;
    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    if ((rc = queue_req(c, &r, CL_OP_NKEY, q)) != 0)
        return rc;
    n = sx_calloc(1, sizeof *n);
    if (!n || !(n->server = cl_strdup(q->server))) {
        simplex_notifier_free(n);
        return SIMPLEX_ERR_NOMEM;
    }
    if ((rc = sx_ed25519_keypair(n->ntf_auth_pk, n->ntf_auth_sk)) != 0 ||
        (rc = sx_x25519_keypair(n->ntf_dh_pk, n->ntf_dh_sk)) != 0) {
        simplex_notifier_free(n);
        return cl_api_fail(c, rc, "key generation failed");
    }
    r.new_n = n;
    rc = cl_api_run(c, &r);
    if (rc) {
        simplex_notifier_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

int simplex_client_disable_notifications(simplex_client *c,
                                         const simplex_queue *q)
{
    cl_req r;
    int rc;
    if ((rc = queue_req(c, &r, CL_OP_NDEL, q)) != 0)
        return rc;
    return cl_api_run(c, &r);
}

int simplex_client_subscribe_notifications(simplex_client *c,
                                           const simplex_notifier *n)
{
    cl_req r;
    simplex_queue tmp;
    int rc;
    if (!n) {
        rc = cl_api_enter(c);
        return rc ? rc : SIMPLEX_ERR_INVALID_ARG;
    }
    /* the subscription table keys entries by entity id and keeps the
     * entity's auth key and DH secret: a queue shaped view of n */
    memset(&tmp, 0, sizeof tmp);
    tmp.server = n->server;
    memcpy(tmp.rcv_id, n->ntf_id, n->ntf_id_len);
    tmp.rcv_id_len = n->ntf_id_len;
    memcpy(tmp.rcv_auth_sk, n->ntf_auth_sk, CL_KEY);
    memcpy(tmp.dh_secret, n->dh_secret, CL_KEY);
    rc = queue_req(c, &r, CL_OP_NSUB, &tmp);
    if (rc == 0)
        rc = cl_api_run(c, &r);
    sx_memzero(&tmp, sizeof tmp);
    return rc;
}

/* ---- I/O thread ---- */

void cl_ntf_nkey_cmd(const cl_req *r, sx_smp_cmd *cmd)
{
    sx_smp_cmd_init(cmd, SX_SMP_CMD_NKEY);
    sx_smp_key_set(&cmd->key, SX_KEY_ED25519, r->new_n->ntf_auth_pk);
    sx_smp_key_set(&cmd->dh_key, SX_KEY_X25519, r->new_n->ntf_dh_pk);
}

int cl_ntf_on_nid(cl_req *r, const sx_smp_msg *m)
{
    simplex_notifier *n = r->new_n;
    if (m->tag != SX_SMP_MSG_NID || m->id.n == 0 || m->id.n > CL_ID_MAX ||
        m->dh_key.alg != SX_KEY_X25519)
        return SIMPLEX_ERR_PARSE;
    memcpy(n->ntf_id, m->id.p, m->id.n);
    n->ntf_id_len = m->id.n;
    memcpy(n->srv_dh_pk, m->dh_key.raw, CL_KEY);
    return sx_x25519_dh(n->dh_secret, n->srv_dh_pk, n->ntf_dh_sk);
}

void cl_ntf_deliver(cl_conn *k, const cl_sub *s, const sx_smp_msg *m)
{
    simplex_client_event *ev = cl_event_new(SIMPLEX_CLIENT_EVENT_NMSG,
                                            k->server);
    if (!ev)
        return;
    memcpy(ev->queue_id, s->rcv_id, s->rcv_id_len);
    ev->queue_id_len = s->rcv_id_len;
    memcpy(ev->nonce, m->nonce, sizeof ev->nonce);
    if (m->body.n) {
        ev->body = sx_malloc(m->body.n);
        if (!ev->body) {
            simplex_client_event_free(ev);
            return;
        }
        memcpy(ev->body, m->body.p, m->body.n);
        ev->body_len = m->body.n;
    }
    cl_emit(k->client, ev);
}

/* ---- notifier credentials and events ---- */

const uint8_t *simplex_client_event_nonce(const simplex_client_event *ev)
{
    return ev && ev->type == SIMPLEX_CLIENT_EVENT_NMSG ? ev->nonce : NULL;
}

int simplex_notifier_decrypt(simplex_buf *msg_id, int64_t *timestamp,
                             const simplex_notifier *n,
                             const simplex_client_event *ev)
{
    uint8_t buf[2 * SX_SMP_NMSG_META_PADDED];
    const uint8_t *plain, *id;
    size_t plain_len, id_len;
    sx_rd r;
    int64_t ts;
    int rc;
    if (!msg_id || !timestamp)
        return SIMPLEX_ERR_INVALID_ARG;
    msg_id->data = NULL;
    msg_id->len = 0;
    *timestamp = 0;
    if (!n || !ev || ev->type != SIMPLEX_CLIENT_EVENT_NMSG ||
        ev->queue_id_len != n->ntf_id_len ||
        memcmp(ev->queue_id, n->ntf_id, n->ntf_id_len) != 0 ||
        ev->body_len > sizeof buf)
        return SIMPLEX_ERR_INVALID_ARG;
    rc = sx_smp_cb_decrypt(buf, &plain, &plain_len, n->dh_secret, ev->nonce,
                           ev->body, ev->body_len);
    if (rc == 0) {
        sx_rd_init(&r, plain, plain_len);
        rc = sx_rd_short(&r, &id, &id_len);
        if (rc == 0)
            rc = sx_rd_time(&r, &ts);
    }
    if (rc == 0) {
        msg_id->data = sx_malloc(id_len ? id_len : 1);
        if (!msg_id->data) {
            rc = SIMPLEX_ERR_NOMEM;
        } else {
            memcpy(msg_id->data, id, id_len);
            msg_id->len = id_len;
            *timestamp = ts;
        }
    }
    sx_memzero(buf, sizeof buf);
    return rc;
}

const char *simplex_notifier_server(const simplex_notifier *n)
{
    return n ? n->server : NULL;
}

const uint8_t *simplex_notifier_id(const simplex_notifier *n, size_t *len)
{
    if (len)
        *len = n ? n->ntf_id_len : 0;
    return n && n->ntf_id_len ? n->ntf_id : NULL;
}

void simplex_notifier_free(simplex_notifier *n)
{
    if (!n)
        return;
    sx_free(n->server);
    sx_free_secret(n, sizeof *n);
}

/* Layout: u8 version, short server, short notifier id, 32 notifier auth
 * sk, 32 notifier dh sk, 32 server notifier dh pk. Public keys and the DH
 * secret are derived again on import. */
int simplex_notifier_export(const simplex_notifier *n, simplex_buf *out)
{
    sx_wr w;
    uint8_t *p;
    size_t len;
    if (!n || !out)
        return SIMPLEX_ERR_INVALID_ARG;
    out->data = NULL;
    out->len = 0;
    sx_wr_init(&w);
    sx_wr_u8(&w, NOTIFIER_EXPORT_VERSION);
    sx_wr_short(&w, n->server, strlen(n->server));
    sx_wr_short(&w, n->ntf_id, n->ntf_id_len);
    sx_wr_raw(&w, n->ntf_auth_sk, CL_KEY);
    sx_wr_raw(&w, n->ntf_dh_sk, CL_KEY);
    sx_wr_raw(&w, n->srv_dh_pk, CL_KEY);
    if (sx_wr_error(&w) || sx_wr_take(&w, &p, &len) != 0) {
        int rc = sx_wr_error(&w);
        sx_wr_free(&w);
        return rc ? rc : SIMPLEX_ERR_NOMEM;
    }
    out->data = p;
    out->len = len;
    return 0;
}

int simplex_notifier_import(simplex_notifier **out, const uint8_t *data,
                            size_t len)
{
    sx_rd r;
    uint8_t ver;
    const uint8_t *s, *id;
    size_t sn, idn;
    simplex_notifier *n;
    sx_server_addr a;
    int rc;

    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    if (!data)
        return SIMPLEX_ERR_INVALID_ARG;
    n = sx_calloc(1, sizeof *n);
    if (!n)
        return SIMPLEX_ERR_NOMEM;
    sx_rd_init(&r, data, len);
    if ((rc = sx_rd_u8(&r, &ver)) != 0)
        goto fail;
    if (ver != NOTIFIER_EXPORT_VERSION) {
        rc = SIMPLEX_ERR_UNSUPPORTED;
        goto fail;
    }
    if ((rc = sx_rd_short(&r, &s, &sn)) != 0 ||
        (rc = sx_rd_short(&r, &id, &idn)) != 0)
        goto fail;
    if (idn == 0 || idn > CL_ID_MAX || sn == 0) {
        rc = SIMPLEX_ERR_PARSE;
        goto fail;
    }
    memcpy(n->ntf_id, id, idn);
    n->ntf_id_len = idn;
    if ((rc = sx_rd_copy(&r, n->ntf_auth_sk, CL_KEY)) != 0 ||
        (rc = sx_rd_copy(&r, n->ntf_dh_sk, CL_KEY)) != 0 ||
        (rc = sx_rd_copy(&r, n->srv_dh_pk, CL_KEY)) != 0 ||
        (rc = sx_rd_end(&r)) != 0)
        goto fail;
    n->server = sx_malloc(sn + 1);
    if (!n->server) {
        rc = SIMPLEX_ERR_NOMEM;
        goto fail;
    }
    memcpy(n->server, s, sn);
    n->server[sn] = 0;
    if (strlen(n->server) != sn ||
        sx_server_addr_parse(&a, n->server, sn) != 0) {
        rc = SIMPLEX_ERR_PARSE;
        goto fail;
    }
    if ((rc = sx_ed25519_public(n->ntf_auth_pk, n->ntf_auth_sk)) != 0 ||
        (rc = sx_x25519_public(n->ntf_dh_pk, n->ntf_dh_sk)) != 0 ||
        (rc = sx_x25519_dh(n->dh_secret, n->srv_dh_pk, n->ntf_dh_sk)) != 0)
        goto fail;
    *out = n;
    return 0;
fail:
    simplex_notifier_free(n);
    return rc;
}
