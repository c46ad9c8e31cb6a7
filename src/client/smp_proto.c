/*
 * SMP codecs, part 1: keys, handshakes and client commands.
 */
#include <string.h>

#include "client/smp_internal.h"

/* ---- keys ---- */

void sx_smp_key_set(sx_smp_key *k, sx_key_alg alg, const uint8_t *raw)
{
    memset(k, 0, sizeof *k);
    k->alg = alg;
    k->len = sx_key_public_len(alg);
    if (raw && k->len)
        memcpy(k->raw, raw, k->len);
}

void sx_smp_key_encode(sx_wr *w, const sx_smp_key *k)
{
    uint8_t der[SX_KEY_DER_MAX];
    size_t n = 0;
    int rc = sx_key_public_encode(der, sizeof der, &n, k->alg, k->raw);
    if (rc < 0) {
        if (!w->err)
            w->err = rc;
        return;
    }
    sx_wr_short(w, der, n);
}

int sx_smp_key_decode(sx_rd *r, sx_smp_key *out, sx_key_alg want)
{
    sx_smp_bytes der;
    size_t save = r->pos;
    int rc;

    memset(out, 0, sizeof *out);
    SMP_TRY(smp_rd_short(r, &der));
    rc = sx_key_public_decode(&out->alg, out->raw, &out->len, want, der.p,
                              der.n);
    if (rc == 0 && want == SX_KEY_NONE && out->alg == SX_KEY_X448)
        rc = SIMPLEX_ERR_KEY; /* not an authorization key algorithm */
    if (rc < 0) {
        r->pos = save;
        memset(out, 0, sizeof *out);
        return rc;
    }
    return 0;
}

/* ---- shared small pieces ---- */

int smp_link_data_decode(sx_rd *r, sx_smp_link_data *d)
{
    SMP_TRY(smp_rd_large(r, &d->fixed_data));
    return smp_rd_large(r, &d->user_data);
}

void smp_link_data_encode(sx_wr *w, const sx_smp_link_data *d)
{
    smp_wr_large(w, d->fixed_data);
    smp_wr_large(w, d->user_data);
}

int sx_smp_cert_key_decode(sx_rd *r, size_t *n_certs, sx_smp_bytes *certs,
                           sx_smp_bytes *signed_key)
{
    size_t n;
    SMP_TRY(sx_rd_count_nonempty(r, &n));
    if (n > SX_SMP_MAX_CERTS)
        return SIMPLEX_ERR_TOO_LARGE;
    for (size_t i = 0; i < n; i++)
        SMP_TRY(smp_rd_large(r, &certs[i]));
    *n_certs = n;
    return smp_rd_large(r, signed_key);
}

void sx_smp_cert_key_encode(sx_wr *w, size_t n_certs,
                            const sx_smp_bytes *certs, sx_smp_bytes signed_key)
{
    if (n_certs == 0 || n_certs > SX_SMP_MAX_CERTS) {
        if (!w->err)
            w->err = SIMPLEX_ERR_INVALID_ARG;
        return;
    }
    sx_wr_count(w, n_certs);
    for (size_t i = 0; i < n_certs; i++)
        smp_wr_large(w, certs[i]);
    smp_wr_large(w, signed_key);
}

/* ---- handshakes ---- */

int sx_smp_server_hello_decode(sx_smp_server_hello *out, const uint8_t *p,
                               size_t n)
{
    sx_rd r;
    sx_rd_init(&r, p, n);
    memset(out, 0, sizeof *out);
    SMP_TRY(sx_rd_u16(&r, &out->vmin));
    SMP_TRY(sx_rd_u16(&r, &out->vmax));
    if (out->vmin > out->vmax)
        return SIMPLEX_ERR_PARSE;
    SMP_TRY(smp_rd_short(&r, &out->session_id));
    if (out->vmax >= SX_SMP_V_AUTH_CMDS) {
        /* optional: a failed parse means "absent" (reference: optional) */
        size_t save = r.pos;
        if (sx_smp_cert_key_decode(&r, &out->n_certs, out->certs,
                                   &out->signed_key) == 0) {
            out->has_cert = 1;
        } else {
            r.pos = save;
            out->n_certs = 0;
            memset(out->certs, 0, sizeof out->certs);
            memset(&out->signed_key, 0, sizeof out->signed_key);
        }
    }
    /* the rest is ignored for forward compatibility */
    return 0;
}

int sx_smp_server_hello_encode(sx_wr *w, const sx_smp_server_hello *h)
{
    sx_wr_u16(w, h->vmin);
    sx_wr_u16(w, h->vmax);
    smp_wr_short(w, h->session_id);
    if (h->vmax >= SX_SMP_V_AUTH_CMDS && h->has_cert)
        sx_smp_cert_key_encode(w, h->n_certs, h->certs, h->signed_key);
    return sx_wr_error(w);
}

int sx_smp_client_hello_decode(sx_smp_client_hello *out, const uint8_t *p,
                               size_t n)
{
    sx_rd r;
    sx_rd_init(&r, p, n);
    memset(out, 0, sizeof *out);
    SMP_TRY(sx_rd_u16(&r, &out->version));
    SMP_TRY(smp_rd_short(&r, &out->key_hash));
    if (out->version >= SX_SMP_V_AUTH_CMDS) {
        size_t save = r.pos;
        if (sx_smp_key_decode(&r, &out->dh_key, SX_KEY_X25519) < 0) {
            r.pos = save; /* optional */
            memset(&out->dh_key, 0, sizeof out->dh_key);
        }
    }
    if (out->version >= SX_SMP_V_PROXY_HANDSHAKE)
        SMP_TRY(sx_rd_bool(&r, &out->proxy_server));
    if (out->version >= SX_SMP_V_SERVICE_CERTS) {
        SMP_TRY(sx_rd_maybe(&r, &out->has_service));
        if (out->has_service) {
            uint8_t role;
            SMP_TRY(sx_rd_u8(&r, &role));
            if (role != 'M' && role != 'N' && role != 'P')
                return SIMPLEX_ERR_PARSE;
            out->service_role = (sx_smp_service_role)role;
            SMP_TRY(sx_smp_cert_key_decode(&r, &out->n_certs, out->certs,
                                           &out->service_signed_key));
        }
    }
    return 0;
}

int sx_smp_client_hello_encode(sx_wr *w, const sx_smp_client_hello *h)
{
    sx_wr_u16(w, h->version);
    smp_wr_short(w, h->key_hash);
    if (h->version >= SX_SMP_V_AUTH_CMDS && h->dh_key.alg != SX_KEY_NONE)
        sx_smp_key_encode(w, &h->dh_key);
    if (h->version >= SX_SMP_V_PROXY_HANDSHAKE)
        sx_wr_bool(w, h->proxy_server);
    if (h->version >= SX_SMP_V_SERVICE_CERTS) {
        sx_wr_maybe(w, h->has_service);
        if (h->has_service) {
            sx_wr_u8(w, (uint8_t)h->service_role);
            sx_smp_cert_key_encode(w, h->n_certs, h->certs,
                                   h->service_signed_key);
        }
    }
    return sx_wr_error(w);
}

/* ---- commands ---- */

static const struct {
    sx_smp_cmd_tag tag;
    const char *name;
} cmd_names[] = {
    {SX_SMP_CMD_NEW, "NEW"},   {SX_SMP_CMD_SUB, "SUB"},
    {SX_SMP_CMD_SUBS, "SUBS"}, {SX_SMP_CMD_KEY, "KEY"},
    {SX_SMP_CMD_RKEY, "RKEY"}, {SX_SMP_CMD_LSET, "LSET"},
    {SX_SMP_CMD_LDEL, "LDEL"}, {SX_SMP_CMD_NKEY, "NKEY"},
    {SX_SMP_CMD_NDEL, "NDEL"}, {SX_SMP_CMD_GET, "GET"},
    {SX_SMP_CMD_ACK, "ACK"},   {SX_SMP_CMD_OFF, "OFF"},
    {SX_SMP_CMD_DEL, "DEL"},   {SX_SMP_CMD_QUE, "QUE"},
    {SX_SMP_CMD_SKEY, "SKEY"}, {SX_SMP_CMD_SEND, "SEND"},
    {SX_SMP_CMD_PING, "PING"}, {SX_SMP_CMD_LKEY, "LKEY"},
    {SX_SMP_CMD_LGET, "LGET"}, {SX_SMP_CMD_NSUB, "NSUB"},
    {SX_SMP_CMD_NSUBS, "NSUBS"}, {SX_SMP_CMD_PRXY, "PRXY"},
    {SX_SMP_CMD_PFWD, "PFWD"}, {SX_SMP_CMD_RFWD, "RFWD"},
};

const char *sx_smp_cmd_name(sx_smp_cmd_tag tag)
{
    for (size_t i = 0; i < SX_ARRAY_LEN(cmd_names); i++)
        if (cmd_names[i].tag == tag)
            return cmd_names[i].name;
    return NULL;
}

void sx_smp_cmd_init(sx_smp_cmd *c, sx_smp_cmd_tag tag)
{
    memset(c, 0, sizeof *c);
    c->tag = tag;
}

/* BasicAuth characters: printable (Latin-1 as the reference's Char8),
 * not white space, not '@', ':' or '/'. */
static int basic_auth_valid(sx_smp_bytes b)
{
    for (size_t i = 0; i < b.n; i++) {
        uint8_t c = b.p[i];
        int printable = (c > 0x20 && c < 0x7f) || (c > 0xa0 && c != 0xad);
        if (!printable || c == '@' || c == ':' || c == '/')
            return 0;
    }
    return 1;
}

static int rd_basic_auth(sx_rd *r, sx_smp_bytes *b)
{
    size_t save = r->pos;
    SMP_TRY(smp_rd_short(r, b));
    if (!basic_auth_valid(*b)) {
        r->pos = save;
        return SIMPLEX_ERR_PARSE;
    }
    return 0;
}

static void wr_basic_auth(sx_wr *w, sx_smp_bytes b)
{
    if (!basic_auth_valid(b) && !w->err)
        w->err = SIMPLEX_ERR_INVALID_ARG;
    smp_wr_short(w, b);
}

static void wr_tag(sx_wr *w, const char *tag, int space)
{
    sx_wr_str(w, tag);
    if (space)
        sx_wr_u8(w, ' ');
}

static void wr_maybe_basic_auth(sx_wr *w, int has, sx_smp_bytes b)
{
    sx_wr_maybe(w, has);
    if (has)
        wr_basic_auth(w, b);
}

static void encode_queue_req(sx_wr *w, const sx_smp_new *q)
{
    sx_wr_maybe(w, q->qr_mode != SX_SMP_QM_NONE);
    if (q->qr_mode == SX_SMP_QM_NONE)
        return;
    sx_wr_u8(w, (uint8_t)q->qr_mode);
    sx_wr_maybe(w, q->qr_has_data);
    if (!q->qr_has_data)
        return;
    if (q->qr_mode == SX_SMP_QM_CONTACT)
        smp_wr_short(w, q->link_id);
    smp_wr_short(w, q->sender_id);
    smp_link_data_encode(w, &q->link_data);
}

static int decode_queue_req(sx_rd *r, sx_smp_new *q)
{
    int present;
    uint8_t m;
    SMP_TRY(sx_rd_maybe(r, &present));
    if (!present)
        return 0;
    SMP_TRY(sx_rd_u8(r, &m));
    if (m != 'M' && m != 'C')
        return SIMPLEX_ERR_PARSE;
    q->qr_mode = (sx_smp_queue_mode)m;
    SMP_TRY(sx_rd_maybe(r, &q->qr_has_data));
    if (!q->qr_has_data)
        return 0;
    if (m == 'C')
        SMP_TRY(smp_rd_short(r, &q->link_id));
    SMP_TRY(smp_rd_short(r, &q->sender_id));
    return smp_link_data_decode(r, &q->link_data);
}

static void encode_new(sx_wr *w, uint16_t v, const sx_smp_new *q)
{
    if (q->sub_mode != 'S' && q->sub_mode != 'C' && !w->err)
        w->err = SIMPLEX_ERR_INVALID_ARG;
    sx_smp_key_encode(w, &q->rcv_auth_key);
    sx_smp_key_encode(w, &q->rcv_dh_key);
    if (v >= SX_SMP_V_SND_AUTH_KEY) {
        wr_maybe_basic_auth(w, q->has_basic_auth, q->basic_auth);
        sx_wr_u8(w, (uint8_t)q->sub_mode);
        if (v >= SX_SMP_V_SHORT_LINKS)
            encode_queue_req(w, q);
        else
            sx_wr_bool(w, q->qr_mode == SX_SMP_QM_MESSAGING);
        if (v >= SX_SMP_V_NEW_NTF_CREDS) {
            sx_wr_maybe(w, q->has_ntf);
            if (q->has_ntf) {
                sx_smp_key_encode(w, &q->ntf_auth_key);
                sx_smp_key_encode(w, &q->ntf_dh_key);
            }
        }
    } else {
        if (q->has_basic_auth) {
            sx_wr_u8(w, 'A');
            wr_basic_auth(w, q->basic_auth);
        }
        sx_wr_u8(w, (uint8_t)q->sub_mode);
    }
}

static int decode_new(sx_rd *r, uint16_t v, sx_smp_new *q)
{
    uint8_t m;
    SMP_TRY(sx_smp_key_decode(r, &q->rcv_auth_key, SX_KEY_NONE));
    SMP_TRY(sx_smp_key_decode(r, &q->rcv_dh_key, SX_KEY_X25519));
    if (v >= SX_SMP_V_SND_AUTH_KEY) {
        SMP_TRY(sx_rd_maybe(r, &q->has_basic_auth));
        if (q->has_basic_auth)
            SMP_TRY(rd_basic_auth(r, &q->basic_auth));
    } else if (sx_rd_left(r) > 0 && r->p[r->pos] == 'A') {
        /* 'A' is not a subscription mode, so no backtracking is needed */
        r->pos++;
        SMP_TRY(rd_basic_auth(r, &q->basic_auth));
        q->has_basic_auth = 1;
    }
    SMP_TRY(sx_rd_u8(r, &m));
    if (m != 'S' && m != 'C')
        return SIMPLEX_ERR_PARSE;
    q->sub_mode = (char)m;
    if (v >= SX_SMP_V_SHORT_LINKS) {
        SMP_TRY(decode_queue_req(r, q));
    } else if (v >= SX_SMP_V_SND_AUTH_KEY) {
        int snd_secure;
        SMP_TRY(sx_rd_bool(r, &snd_secure));
        q->qr_mode = snd_secure ? SX_SMP_QM_MESSAGING : SX_SMP_QM_CONTACT;
    }
    if (v >= SX_SMP_V_NEW_NTF_CREDS) {
        SMP_TRY(sx_rd_maybe(r, &q->has_ntf));
        if (q->has_ntf) {
            SMP_TRY(sx_smp_key_decode(r, &q->ntf_auth_key, SX_KEY_NONE));
            SMP_TRY(sx_smp_key_decode(r, &q->ntf_dh_key, SX_KEY_X25519));
        }
    }
    return 0;
}

static void encode_server(sx_wr *w, const sx_smp_server *s)
{
    if ((s->n_hosts == 0 || s->n_hosts > SX_SMP_MAX_HOSTS) && !w->err)
        w->err = SIMPLEX_ERR_INVALID_ARG;
    sx_wr_count(w, s->n_hosts);
    for (size_t i = 0; i < s->n_hosts && i < SX_SMP_MAX_HOSTS; i++)
        smp_wr_short(w, s->hosts[i]);
    smp_wr_short(w, s->port);
    smp_wr_short(w, s->key_hash);
}

static int decode_server(sx_rd *r, sx_smp_server *s)
{
    size_t n;
    SMP_TRY(sx_rd_count_nonempty(r, &n));
    if (n > SX_SMP_MAX_HOSTS)
        return SIMPLEX_ERR_TOO_LARGE;
    for (size_t i = 0; i < n; i++) {
        SMP_TRY(smp_rd_short(r, &s->hosts[i]));
        if (s->hosts[i].n == 0)
            return SIMPLEX_ERR_PARSE;
    }
    s->n_hosts = n;
    SMP_TRY(smp_rd_short(r, &s->port));
    return smp_rd_short(r, &s->key_hash);
}

int sx_smp_cmd_encode(sx_wr *w, uint16_t v, const sx_smp_cmd *c)
{
    const char *name = sx_smp_cmd_name(c->tag);
    if (!name)
        return SIMPLEX_ERR_INVALID_ARG;
    switch (c->tag) {
    case SX_SMP_CMD_NEW:
        wr_tag(w, name, 1);
        encode_new(w, v, &c->new_q);
        break;
    case SX_SMP_CMD_KEY:
    case SX_SMP_CMD_SKEY:
    case SX_SMP_CMD_LKEY:
        wr_tag(w, name, 1);
        sx_smp_key_encode(w, &c->key);
        break;
    case SX_SMP_CMD_RKEY:
        if ((c->n_keys == 0 || c->n_keys > SX_SMP_MAX_RCV_KEYS) && !w->err)
            w->err = SIMPLEX_ERR_INVALID_ARG;
        wr_tag(w, name, 1);
        sx_wr_count(w, c->n_keys);
        for (size_t i = 0; i < c->n_keys && i < SX_SMP_MAX_RCV_KEYS; i++)
            sx_smp_key_encode(w, &c->keys[i]);
        break;
    case SX_SMP_CMD_LSET:
        wr_tag(w, name, 1);
        smp_wr_short(w, c->id);
        smp_link_data_encode(w, &c->link_data);
        break;
    case SX_SMP_CMD_NKEY:
        wr_tag(w, name, 1);
        sx_smp_key_encode(w, &c->key);
        sx_smp_key_encode(w, &c->dh_key);
        break;
    case SX_SMP_CMD_ACK:
        wr_tag(w, name, 1);
        smp_wr_short(w, c->id);
        break;
    case SX_SMP_CMD_SEND:
        wr_tag(w, name, 1);
        sx_wr_bool(w, c->notification);
        sx_wr_u8(w, ' ');
        sx_wr_raw(w, c->body.p, c->body.n);
        break;
    case SX_SMP_CMD_PRXY:
        wr_tag(w, name, 1);
        encode_server(w, &c->server);
        wr_maybe_basic_auth(w, c->has_basic_auth, c->basic_auth);
        break;
    case SX_SMP_CMD_PFWD:
        wr_tag(w, name, 1);
        sx_wr_u16(w, c->fwd_version);
        sx_smp_key_encode(w, &c->dh_key);
        sx_wr_raw(w, c->body.p, c->body.n);
        break;
    case SX_SMP_CMD_RFWD:
        wr_tag(w, name, 1);
        sx_wr_raw(w, c->body.p, c->body.n);
        break;
    default: /* commands without parameters */
        wr_tag(w, name, 0);
        break;
    }
    return sx_wr_error(w);
}

int sx_smp_cmd_decode(sx_smp_cmd *out, uint16_t v, const uint8_t *p, size_t n)
{
    sx_rd r;
    sx_smp_bytes word;
    sx_smp_cmd_tag tag = 0;

    memset(out, 0, sizeof *out);
    sx_rd_init(&r, p, n);
    smp_rd_word(&r, &word);
    for (size_t i = 0; i < SX_ARRAY_LEN(cmd_names); i++)
        if (smp_word_is(word, cmd_names[i].name))
            tag = cmd_names[i].tag;
    if (!tag)
        return SIMPLEX_ERR_PARSE;
    out->tag = tag;

    switch (tag) {
    case SX_SMP_CMD_NEW:
        SMP_TRY(smp_rd_space(&r));
        SMP_TRY(decode_new(&r, v, &out->new_q));
        break;
    case SX_SMP_CMD_KEY:
    case SX_SMP_CMD_SKEY:
    case SX_SMP_CMD_LKEY:
        SMP_TRY(smp_rd_space(&r));
        SMP_TRY(sx_smp_key_decode(&r, &out->key, SX_KEY_NONE));
        break;
    case SX_SMP_CMD_RKEY: {
        size_t k;
        SMP_TRY(smp_rd_space(&r));
        SMP_TRY(sx_rd_count_nonempty(&r, &k));
        if (k > SX_SMP_MAX_RCV_KEYS)
            return SIMPLEX_ERR_TOO_LARGE;
        for (size_t i = 0; i < k; i++)
            SMP_TRY(sx_smp_key_decode(&r, &out->keys[i], SX_KEY_NONE));
        out->n_keys = k;
        break;
    }
    case SX_SMP_CMD_LSET:
        SMP_TRY(smp_rd_space(&r));
        SMP_TRY(smp_rd_short(&r, &out->id));
        SMP_TRY(smp_link_data_decode(&r, &out->link_data));
        break;
    case SX_SMP_CMD_NKEY:
        SMP_TRY(smp_rd_space(&r));
        SMP_TRY(sx_smp_key_decode(&r, &out->key, SX_KEY_NONE));
        SMP_TRY(sx_smp_key_decode(&r, &out->dh_key, SX_KEY_X25519));
        break;
    case SX_SMP_CMD_ACK:
        SMP_TRY(smp_rd_space(&r));
        SMP_TRY(smp_rd_short(&r, &out->id));
        break;
    case SX_SMP_CMD_SEND: {
        sx_smp_bytes extra;
        SMP_TRY(smp_rd_space(&r));
        SMP_TRY(sx_rd_bool(&r, &out->notification));
        /* further flag characters up to the space are skipped, as the
         * reference does (reserved for future flags) */
        smp_rd_word(&r, &extra);
        SMP_TRY(smp_rd_space(&r));
        smp_rd_tail(&r, &out->body);
        break;
    }
    case SX_SMP_CMD_PRXY:
        SMP_TRY(smp_rd_space(&r));
        SMP_TRY(decode_server(&r, &out->server));
        SMP_TRY(sx_rd_maybe(&r, &out->has_basic_auth));
        if (out->has_basic_auth)
            SMP_TRY(rd_basic_auth(&r, &out->basic_auth));
        break;
    case SX_SMP_CMD_PFWD:
        SMP_TRY(smp_rd_space(&r));
        SMP_TRY(sx_rd_u16(&r, &out->fwd_version));
        SMP_TRY(sx_smp_key_decode(&r, &out->dh_key, SX_KEY_X25519));
        smp_rd_tail(&r, &out->body);
        break;
    case SX_SMP_CMD_RFWD:
        SMP_TRY(smp_rd_space(&r));
        smp_rd_tail(&r, &out->body);
        break;
    default:
        break;
    }
    return sx_rd_end(&r);
}
