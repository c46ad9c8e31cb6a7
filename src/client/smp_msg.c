/*
 * SMP codecs, part 2: the error grammar and server (broker) messages.
 */
#include <string.h>

#include "client/smp_internal.h"

/* ---- name tables ---- */

typedef struct name_map {
    int v;
    const char *s;
} name_map;

static int lookup(const name_map *m, size_t n, sx_smp_bytes w)
{
    for (size_t i = 0; i < n; i++)
        if (smp_word_is(w, m[i].s))
            return m[i].v;
    return 0;
}

static const char *name_of(const name_map *m, size_t n, int v)
{
    for (size_t i = 0; i < n; i++)
        if (m[i].v == v)
            return m[i].s;
    return NULL;
}

static const name_map err_names[] = {
    {SX_SMP_ERR_BLOCK, "BLOCK"},         {SX_SMP_ERR_SESSION, "SESSION"},
    {SX_SMP_ERR_CMD, "CMD"},             {SX_SMP_ERR_PROXY, "PROXY"},
    {SX_SMP_ERR_AUTH, "AUTH"},           {SX_SMP_ERR_BLOCKED, "BLOCKED"},
    {SX_SMP_ERR_SERVICE, "SERVICE"},     {SX_SMP_ERR_CRYPTO, "CRYPTO"},
    {SX_SMP_ERR_QUOTA, "QUOTA"},         {SX_SMP_ERR_STORE, "STORE"},
    {SX_SMP_ERR_EXPIRED, "EXPIRED"},     {SX_SMP_ERR_NO_MSG, "NO_MSG"},
    {SX_SMP_ERR_LARGE_MSG, "LARGE_MSG"}, {SX_SMP_ERR_INTERNAL, "INTERNAL"},
    {SX_SMP_ERR_DUPLICATE, "DUPLICATE_"},
};

static const name_map cmd_err_names[] = {
    {SX_SMP_CMDERR_UNKNOWN, "UNKNOWN"},
    {SX_SMP_CMDERR_SYNTAX, "SYNTAX"},
    {SX_SMP_CMDERR_PROHIBITED, "PROHIBITED"},
    {SX_SMP_CMDERR_NO_AUTH, "NO_AUTH"},
    {SX_SMP_CMDERR_HAS_AUTH, "HAS_AUTH"},
    {SX_SMP_CMDERR_NO_ENTITY, "NO_ENTITY"},
    {SX_SMP_CMDERR_NO_ENTITY, "NO_QUEUE"}, /* decoded only (legacy) */
};

static const name_map proxy_err_names[] = {
    {SX_SMP_PROXYERR_PROTOCOL, "PROTOCOL"},
    {SX_SMP_PROXYERR_BROKER, "BROKER"},
    {SX_SMP_PROXYERR_BASIC_AUTH, "BASIC_AUTH"},
    {SX_SMP_PROXYERR_NO_SESSION, "NO_SESSION"},
};

static const name_map broker_err_names[] = {
    {SX_SMP_BROKER_RESPONSE, "RESPONSE"},
    {SX_SMP_BROKER_UNEXPECTED, "UNEXPECTED"},
    {SX_SMP_BROKER_TRANSPORT, "TRANSPORT"},
    {SX_SMP_BROKER_NETWORK, "NETWORK"},
    {SX_SMP_BROKER_TIMEOUT, "TIMEOUT"},
    {SX_SMP_BROKER_HOST, "HOST"},
    {SX_SMP_BROKER_NO_SERVICE, "NO_SERVICE"},
};

static const name_map transport_err_names[] = {
    {SX_SMP_TE_BLOCK, "BLOCK"},         {SX_SMP_TE_VERSION, "VERSION"},
    {SX_SMP_TE_LARGE_MSG, "LARGE_MSG"}, {SX_SMP_TE_SESSION, "SESSION"},
    {SX_SMP_TE_NO_AUTH, "NO_AUTH"},     {SX_SMP_TE_HANDSHAKE, "HANDSHAKE"},
};

static const name_map handshake_err_names[] = {
    {SX_SMP_HS_PARSE, "PARSE"},
    {SX_SMP_HS_IDENTITY, "IDENTITY"},
    {SX_SMP_HS_BAD_AUTH, "BAD_AUTH"},
    {SX_SMP_HS_BAD_SERVICE, "BAD_SERVICE"},
};

static const name_map network_err_names[] = {
    {SX_SMP_NE_CONNECT, "CONNECT"},     {SX_SMP_NE_TLS, "TLS"},
    {SX_SMP_NE_UNKNOWNCA, "UNKNOWNCA"}, {SX_SMP_NE_FAILED, "FAILED"},
    {SX_SMP_NE_TIMEOUT, "TIMEOUT"},     {SX_SMP_NE_SUBSCRIBE, "SUBSCRIBE"},
};

#define LOOKUP(m, w) lookup(m, SX_ARRAY_LEN(m), w)
#define NAME(m, v) name_of(m, SX_ARRAY_LEN(m), (int)(v))

/* ---- error decoding ---- */

static int decode_err(sx_rd *r, sx_smp_err *e, int depth);

static int decode_transport(sx_rd *r, sx_smp_err *e)
{
    sx_smp_bytes w;
    smp_rd_word(r, &w);
    e->transport = LOOKUP(transport_err_names, w);
    if (!e->transport)
        return SIMPLEX_ERR_PARSE;
    if (e->transport == SX_SMP_TE_HANDSHAKE) {
        SMP_TRY(smp_rd_space(r));
        smp_rd_word(r, &w);
        e->handshake = LOOKUP(handshake_err_names, w);
        if (!e->handshake)
            return SIMPLEX_ERR_PARSE;
    }
    return 0;
}

static int decode_broker(sx_rd *r, sx_smp_err *e)
{
    sx_smp_bytes w;
    smp_rd_word(r, &w);
    e->broker = LOOKUP(broker_err_names, w);
    switch ((int)e->broker) {
    case SX_SMP_BROKER_RESPONSE:
    case SX_SMP_BROKER_UNEXPECTED:
        SMP_TRY(smp_rd_space(r));
        return smp_rd_short(r, &e->text);
    case SX_SMP_BROKER_TRANSPORT:
        SMP_TRY(smp_rd_space(r));
        return decode_transport(r, e);
    case SX_SMP_BROKER_NETWORK: {
        /* optional " <NetworkError>", FAILED when absent */
        size_t save = r->pos;
        e->network = SX_SMP_NE_FAILED;
        if (smp_rd_space(r) < 0)
            return 0;
        smp_rd_word(r, &w);
        e->network = LOOKUP(network_err_names, w);
        switch ((int)e->network) {
        case SX_SMP_NE_CONNECT:
        case SX_SMP_NE_TLS:
        case SX_SMP_NE_SUBSCRIBE:
            if (smp_rd_space(r) == 0 && smp_rd_short(r, &e->text) == 0)
                return 0;
            break;
        case 0:
            break;
        default:
            return 0;
        }
        /* the alternative: NETWORK alone, leaving the rest unparsed */
        r->pos = save;
        e->network = SX_SMP_NE_FAILED;
        memset(&e->text, 0, sizeof e->text);
        return 0;
    }
    case 0:
        return SIMPLEX_ERR_PARSE;
    default:
        return 0;
    }
}

static int decode_blocked(sx_rd *r, sx_smp_err *e)
{
    static const char reason[] = "reason=";
    static const char notice[] = ",notice=";
    const uint8_t *q;
    SMP_TRY(sx_rd_raw(r, sizeof reason - 1, &q));
    if (memcmp(q, reason, sizeof reason - 1) != 0)
        return SIMPLEX_ERR_PARSE;
    if (sx_rd_left(r) >= 4 && memcmp(r->p + r->pos, "spam", 4) == 0) {
        e->blocked_reason = 's';
        r->pos += 4;
    } else if (sx_rd_left(r) >= 7 &&
               memcmp(r->p + r->pos, "content", 7) == 0) {
        e->blocked_reason = 'c';
        r->pos += 7;
    } else {
        return SIMPLEX_ERR_PARSE;
    }
    if (sx_rd_left(r) >= sizeof notice - 1 &&
        memcmp(r->p + r->pos, notice, sizeof notice - 1) == 0) {
        r->pos += sizeof notice - 1;
        e->has_notice = 1;
        /* the JSON ClientNotice is kept raw (not validated here) */
        smp_rd_tail(r, &e->notice);
    }
    return 0;
}

static int decode_err(sx_rd *r, sx_smp_err *e, int depth)
{
    sx_smp_bytes w;
    if (depth > SX_SMP_ERR_MAX_DEPTH)
        return SIMPLEX_ERR_TOO_LARGE;
    smp_rd_word(r, &w);
    e->type = LOOKUP(err_names, w);
    switch ((int)e->type) {
    case SX_SMP_ERR_CMD:
        SMP_TRY(smp_rd_space(r));
        smp_rd_word(r, &w);
        e->cmd = LOOKUP(cmd_err_names, w);
        return e->cmd ? 0 : SIMPLEX_ERR_PARSE;
    case SX_SMP_ERR_PROXY:
        SMP_TRY(smp_rd_space(r));
        smp_rd_word(r, &w);
        e->proxy = LOOKUP(proxy_err_names, w);
        switch ((int)e->proxy) {
        case SX_SMP_PROXYERR_PROTOCOL: {
            sx_smp_err inner;
            sx_rd sub;
            SMP_TRY(smp_rd_space(r));
            /* the nested error runs to the end of its context */
            sx_rd_init(&sub, r->p + r->pos, r->len - r->pos);
            memset(&inner, 0, sizeof inner);
            SMP_TRY(decode_err(&sub, &inner, depth + 1));
            e->inner.p = r->p + r->pos;
            e->inner.n = sub.pos;
            r->pos += sub.pos;
            return 0;
        }
        case SX_SMP_PROXYERR_BROKER:
            SMP_TRY(smp_rd_space(r));
            return decode_broker(r, e);
        case 0:
            return SIMPLEX_ERR_PARSE;
        default:
            return 0;
        }
    case SX_SMP_ERR_BLOCKED:
        SMP_TRY(smp_rd_space(r));
        return decode_blocked(r, e);
    case SX_SMP_ERR_STORE:
        SMP_TRY(smp_rd_space(r));
        smp_rd_tail(r, &e->text);
        return 0;
    case 0:
        return SIMPLEX_ERR_PARSE;
    default:
        return 0;
    }
}

int sx_smp_err_decode(sx_smp_err *out, const uint8_t *p, size_t n)
{
    sx_rd r;
    memset(out, 0, sizeof *out);
    sx_rd_init(&r, p, n);
    SMP_TRY(decode_err(&r, out, 0));
    return sx_rd_end(&r);
}

/* ---- error encoding ---- */

static void wr_name(sx_wr *w, const char *s)
{
    if (!s) {
        if (!w->err)
            w->err = SIMPLEX_ERR_INVALID_ARG;
        return;
    }
    sx_wr_str(w, s);
}

static void encode_transport(sx_wr *w, const sx_smp_err *e)
{
    wr_name(w, NAME(transport_err_names, e->transport));
    if (e->transport == SX_SMP_TE_HANDSHAKE) {
        sx_wr_u8(w, ' ');
        wr_name(w, NAME(handshake_err_names, e->handshake));
    }
}

static void encode_broker(sx_wr *w, const sx_smp_err *e)
{
    wr_name(w, NAME(broker_err_names, e->broker));
    switch ((int)e->broker) {
    case SX_SMP_BROKER_RESPONSE:
    case SX_SMP_BROKER_UNEXPECTED:
        sx_wr_u8(w, ' ');
        smp_wr_short(w, e->text);
        break;
    case SX_SMP_BROKER_TRANSPORT:
        sx_wr_u8(w, ' ');
        encode_transport(w, e);
        break;
    default: /* NETWORK is sent without its detail (as the reference) */
        break;
    }
}

static void encode_err(sx_wr *w, uint16_t v, const sx_smp_err *e, int depth)
{
    if (depth > SX_SMP_ERR_MAX_DEPTH) {
        if (!w->err)
            w->err = SIMPLEX_ERR_TOO_LARGE;
        return;
    }
    if (e->type == SX_SMP_ERR_BLOCKED && v < SX_SMP_V_BLOCKED_ENTITY) {
        sx_wr_str(w, "AUTH");
        return;
    }
    wr_name(w, NAME(err_names, e->type));
    switch ((int)e->type) {
    case SX_SMP_ERR_CMD:
        sx_wr_u8(w, ' ');
        wr_name(w, NAME(cmd_err_names, e->cmd));
        break;
    case SX_SMP_ERR_PROXY:
        sx_wr_u8(w, ' ');
        wr_name(w, NAME(proxy_err_names, e->proxy));
        if (e->proxy == SX_SMP_PROXYERR_PROTOCOL) {
            /* the nested error is given encoded; check it parses */
            sx_smp_err inner;
            if (sx_smp_err_decode(&inner, e->inner.p, e->inner.n) < 0 &&
                !w->err)
                w->err = SIMPLEX_ERR_INVALID_ARG;
            sx_wr_u8(w, ' ');
            sx_wr_raw(w, e->inner.p, e->inner.n);
        } else if (e->proxy == SX_SMP_PROXYERR_BROKER) {
            sx_wr_u8(w, ' ');
            encode_broker(w, e);
        }
        break;
    case SX_SMP_ERR_BLOCKED:
        sx_wr_str(w, " reason=");
        if (e->blocked_reason == 's')
            sx_wr_str(w, "spam");
        else if (e->blocked_reason == 'c')
            sx_wr_str(w, "content");
        else if (!w->err)
            w->err = SIMPLEX_ERR_INVALID_ARG;
        if (e->has_notice && v >= SX_SMP_V_CLIENT_NOTICES) {
            sx_wr_str(w, ",notice=");
            sx_wr_raw(w, e->notice.p, e->notice.n);
        }
        break;
    case SX_SMP_ERR_STORE:
        sx_wr_u8(w, ' ');
        sx_wr_raw(w, e->text.p, e->text.n);
        break;
    default:
        break;
    }
}

int sx_smp_err_encode(sx_wr *w, uint16_t v, const sx_smp_err *e)
{
    encode_err(w, v, e, 0);
    return sx_wr_error(w);
}

/* ---- server messages ---- */

static const name_map msg_names[] = {
    {SX_SMP_MSG_IDS, "IDS"},   {SX_SMP_MSG_LNK, "LNK"},
    {SX_SMP_MSG_SOK, "SOK"},   {SX_SMP_MSG_SOKS, "SOKS"},
    {SX_SMP_MSG_MSG, "MSG"},   {SX_SMP_MSG_NID, "NID"},
    {SX_SMP_MSG_NMSG, "NMSG"}, {SX_SMP_MSG_PKEY, "PKEY"},
    {SX_SMP_MSG_RRES, "RRES"}, {SX_SMP_MSG_PRES, "PRES"},
    {SX_SMP_MSG_END, "END"},   {SX_SMP_MSG_ENDS, "ENDS"},
    {SX_SMP_MSG_DELD, "DELD"}, {SX_SMP_MSG_INFO, "INFO"},
    {SX_SMP_MSG_OK, "OK"},     {SX_SMP_MSG_ERR, "ERR"},
    {SX_SMP_MSG_PONG, "PONG"},
};

const char *sx_smp_msg_name(sx_smp_msg_tag tag)
{
    return NAME(msg_names, tag);
}

void sx_smp_msg_init(sx_smp_msg *m, sx_smp_msg_tag tag)
{
    memset(m, 0, sizeof *m);
    m->tag = tag;
}

static void encode_ids(sx_wr *w, uint16_t v, const sx_smp_ids *ids)
{
    smp_wr_short(w, ids->rcv_id);
    smp_wr_short(w, ids->snd_id);
    sx_smp_key_encode(w, &ids->srv_dh_key);
    if (v >= SX_SMP_V_SHORT_LINKS) {
        sx_wr_maybe(w, ids->queue_mode != SX_SMP_QM_NONE);
        if (ids->queue_mode != SX_SMP_QM_NONE)
            sx_wr_u8(w, (uint8_t)ids->queue_mode);
        sx_wr_maybe(w, ids->has_link_id);
        if (ids->has_link_id)
            smp_wr_short(w, ids->link_id);
        if (v >= SX_SMP_V_SERVICE_CERTS) {
            sx_wr_maybe(w, ids->has_service_id);
            if (ids->has_service_id)
                smp_wr_short(w, ids->service_id);
        }
        if (v >= SX_SMP_V_NEW_NTF_CREDS) {
            sx_wr_maybe(w, ids->has_ntf);
            if (ids->has_ntf) {
                smp_wr_short(w, ids->ntf_id);
                sx_smp_key_encode(w, &ids->ntf_dh_key);
            }
        }
    } else if (v >= SX_SMP_V_SND_AUTH_KEY) {
        sx_wr_bool(w, ids->queue_mode == SX_SMP_QM_MESSAGING);
    }
}

static int decode_ids(sx_rd *r, uint16_t v, sx_smp_ids *ids)
{
    SMP_TRY(smp_rd_short(r, &ids->rcv_id));
    SMP_TRY(smp_rd_short(r, &ids->snd_id));
    SMP_TRY(sx_smp_key_decode(r, &ids->srv_dh_key, SX_KEY_X25519));
    if (v >= SX_SMP_V_SHORT_LINKS) {
        int present;
        SMP_TRY(sx_rd_maybe(r, &present));
        if (present) {
            uint8_t m;
            SMP_TRY(sx_rd_u8(r, &m));
            if (m != 'M' && m != 'C')
                return SIMPLEX_ERR_PARSE;
            ids->queue_mode = (sx_smp_queue_mode)m;
        }
        SMP_TRY(sx_rd_maybe(r, &ids->has_link_id));
        if (ids->has_link_id)
            SMP_TRY(smp_rd_short(r, &ids->link_id));
        if (v >= SX_SMP_V_SERVICE_CERTS) {
            SMP_TRY(sx_rd_maybe(r, &ids->has_service_id));
            if (ids->has_service_id)
                SMP_TRY(smp_rd_short(r, &ids->service_id));
        }
        if (v >= SX_SMP_V_NEW_NTF_CREDS) {
            SMP_TRY(sx_rd_maybe(r, &ids->has_ntf));
            if (ids->has_ntf) {
                SMP_TRY(smp_rd_short(r, &ids->ntf_id));
                SMP_TRY(sx_smp_key_decode(r, &ids->ntf_dh_key,
                                          SX_KEY_X25519));
            }
        }
    } else if (v >= SX_SMP_V_SND_AUTH_KEY) {
        int snd_secure;
        SMP_TRY(sx_rd_bool(r, &snd_secure));
        ids->queue_mode =
            snd_secure ? SX_SMP_QM_MESSAGING : SX_SMP_QM_CONTACT;
    }
    return 0;
}

int sx_smp_msg_encode(sx_wr *w, uint16_t v, const sx_smp_msg *m)
{
    const char *name = sx_smp_msg_name(m->tag);
    if (!name)
        return SIMPLEX_ERR_INVALID_ARG;
    switch (m->tag) {
    case SX_SMP_MSG_IDS:
        sx_wr_str(w, "IDS ");
        encode_ids(w, v, &m->ids);
        break;
    case SX_SMP_MSG_LNK:
        sx_wr_str(w, "LNK ");
        smp_wr_short(w, m->id);
        smp_link_data_encode(w, &m->link_data);
        break;
    case SX_SMP_MSG_SOK:
        if (v < SX_SMP_V_SERVICE_CERTS) {
            sx_wr_str(w, "OK");
            break;
        }
        sx_wr_str(w, "SOK ");
        sx_wr_maybe(w, m->has_id);
        if (m->has_id)
            smp_wr_short(w, m->id);
        break;
    case SX_SMP_MSG_SOKS:
    case SX_SMP_MSG_ENDS:
        sx_wr_str(w, name);
        sx_wr_u8(w, ' ');
        sx_wr_i64(w, m->count);
        break;
    case SX_SMP_MSG_MSG:
        sx_wr_str(w, "MSG ");
        smp_wr_short(w, m->id);
        sx_wr_raw(w, m->body.p, m->body.n);
        break;
    case SX_SMP_MSG_NID:
        sx_wr_str(w, "NID ");
        smp_wr_short(w, m->id);
        sx_smp_key_encode(w, &m->dh_key);
        break;
    case SX_SMP_MSG_NMSG:
        sx_wr_str(w, "NMSG ");
        sx_wr_raw(w, m->nonce, sizeof m->nonce);
        smp_wr_short(w, m->body);
        break;
    case SX_SMP_MSG_PKEY:
        if (m->vmin > m->vmax && !w->err)
            w->err = SIMPLEX_ERR_INVALID_ARG;
        sx_wr_str(w, "PKEY ");
        smp_wr_short(w, m->id);
        sx_wr_u16(w, m->vmin);
        sx_wr_u16(w, m->vmax);
        sx_smp_cert_key_encode(w, m->n_certs, m->certs, m->signed_key);
        break;
    case SX_SMP_MSG_RRES:
    case SX_SMP_MSG_PRES:
    case SX_SMP_MSG_INFO:
        sx_wr_str(w, name);
        sx_wr_u8(w, ' ');
        sx_wr_raw(w, m->body.p, m->body.n);
        break;
    case SX_SMP_MSG_DELD:
        sx_wr_str(w, v >= SX_SMP_V_DELETED_EVENT ? "DELD" : "END");
        break;
    case SX_SMP_MSG_ERR:
        sx_wr_str(w, "ERR ");
        encode_err(w, v, &m->err, 0);
        break;
    default: /* END, OK, PONG */
        sx_wr_str(w, name);
        break;
    }
    return sx_wr_error(w);
}

int sx_smp_msg_decode(sx_smp_msg *out, uint16_t v, const uint8_t *p, size_t n)
{
    sx_rd r;
    sx_smp_bytes word;

    memset(out, 0, sizeof *out);
    sx_rd_init(&r, p, n);
    smp_rd_word(&r, &word);
    out->tag = LOOKUP(msg_names, word);
    switch ((int)out->tag) {
    case 0:
        return SIMPLEX_ERR_PARSE;
    case SX_SMP_MSG_END:
    case SX_SMP_MSG_DELD:
    case SX_SMP_MSG_OK:
    case SX_SMP_MSG_PONG:
        return sx_rd_end(&r);
    default:
        break;
    }
    SMP_TRY(smp_rd_space(&r));
    switch ((int)out->tag) {
    case SX_SMP_MSG_IDS:
        SMP_TRY(decode_ids(&r, v, &out->ids));
        break;
    case SX_SMP_MSG_LNK:
        SMP_TRY(smp_rd_short(&r, &out->id));
        SMP_TRY(smp_link_data_decode(&r, &out->link_data));
        break;
    case SX_SMP_MSG_SOK:
        SMP_TRY(sx_rd_maybe(&r, &out->has_id));
        if (out->has_id)
            SMP_TRY(smp_rd_short(&r, &out->id));
        break;
    case SX_SMP_MSG_SOKS:
    case SX_SMP_MSG_ENDS:
        SMP_TRY(sx_rd_i64(&r, &out->count));
        break;
    case SX_SMP_MSG_MSG:
        SMP_TRY(smp_rd_short(&r, &out->id));
        smp_rd_tail(&r, &out->body);
        break;
    case SX_SMP_MSG_NID:
        SMP_TRY(smp_rd_short(&r, &out->id));
        SMP_TRY(sx_smp_key_decode(&r, &out->dh_key, SX_KEY_X25519));
        break;
    case SX_SMP_MSG_NMSG:
        SMP_TRY(sx_rd_copy(&r, out->nonce, sizeof out->nonce));
        SMP_TRY(smp_rd_short(&r, &out->body));
        break;
    case SX_SMP_MSG_PKEY:
        SMP_TRY(smp_rd_short(&r, &out->id));
        SMP_TRY(sx_rd_u16(&r, &out->vmin));
        SMP_TRY(sx_rd_u16(&r, &out->vmax));
        if (out->vmin > out->vmax)
            return SIMPLEX_ERR_PARSE;
        SMP_TRY(sx_smp_cert_key_decode(&r, &out->n_certs, out->certs,
                                       &out->signed_key));
        break;
    case SX_SMP_MSG_RRES:
    case SX_SMP_MSG_PRES:
    case SX_SMP_MSG_INFO:
        /* INFO: QueueInfo JSON, kept raw (not validated here) */
        smp_rd_tail(&r, &out->body);
        break;
    case SX_SMP_MSG_ERR:
        SMP_TRY(decode_err(&r, &out->err, 0));
        break;
    default:
        return SIMPLEX_ERR_PARSE;
    }
    return sx_rd_end(&r);
}

/* ---- credential checks ---- */

sx_smp_cmd_err sx_smp_cmd_check(sx_smp_cmd_tag tag, int has_auth,
                                size_t entity_len)
{
    switch (tag) {
    case SX_SMP_CMD_NEW:
        if (!has_auth)
            return SX_SMP_CMDERR_NO_AUTH;
        return entity_len ? SX_SMP_CMDERR_HAS_AUTH : 0;
    case SX_SMP_CMD_SEND:
        return entity_len ? 0 : SX_SMP_CMDERR_NO_ENTITY;
    case SX_SMP_CMD_LGET:
    case SX_SMP_CMD_PFWD:
        if (!entity_len)
            return SX_SMP_CMDERR_NO_ENTITY;
        return has_auth ? SX_SMP_CMDERR_HAS_AUTH : 0;
    case SX_SMP_CMD_PING:
    case SX_SMP_CMD_PRXY:
    case SX_SMP_CMD_RFWD:
        return (has_auth || entity_len) ? SX_SMP_CMDERR_HAS_AUTH : 0;
    default:
        return (!has_auth || !entity_len) ? SX_SMP_CMDERR_NO_AUTH : 0;
    }
}

sx_smp_cmd_err sx_smp_msg_check(sx_smp_msg_tag tag, size_t entity_len)
{
    switch (tag) {
    case SX_SMP_MSG_IDS:
    case SX_SMP_MSG_ERR:
        return 0;
    case SX_SMP_MSG_PONG:
    case SX_SMP_MSG_PKEY:
    case SX_SMP_MSG_RRES:
        return entity_len ? SX_SMP_CMDERR_HAS_AUTH : 0;
    default:
        return entity_len ? 0 : SX_SMP_CMDERR_NO_ENTITY;
    }
}

/* ---- the server's handshake response to service clients ---- */

int sx_smp_hs_response_decode(sx_smp_hs_response *out, const uint8_t *p,
                              size_t n)
{
    sx_rd r;
    uint8_t c;
    memset(out, 0, sizeof *out);
    sx_rd_init(&r, p, n);
    SMP_TRY(sx_rd_u8(&r, &c));
    if (c == 'R')
        return smp_rd_short(&r, &out->service_id);
    if (c == 'E') {
        sx_smp_err e;
        memset(&e, 0, sizeof e);
        SMP_TRY(decode_transport(&r, &e));
        out->is_error = 1;
        out->transport = (int)e.transport;
        out->handshake = (int)e.handshake;
        return 0;
    }
    return SIMPLEX_ERR_PARSE;
}

int sx_smp_hs_response_encode(sx_wr *w, const sx_smp_hs_response *r)
{
    if (r->is_error) {
        sx_smp_err e;
        memset(&e, 0, sizeof e);
        e.transport = (sx_smp_transport_err)r->transport;
        e.handshake = (sx_smp_handshake_err)r->handshake;
        sx_wr_u8(w, 'E');
        encode_transport(w, &e);
    } else {
        sx_wr_u8(w, 'R');
        smp_wr_short(w, r->service_id);
    }
    return sx_wr_error(w);
}
