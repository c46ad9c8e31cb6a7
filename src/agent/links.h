/*
 * SimpleX connection links, matching simplexmq 6.5.5.0
 * (Simplex.Messaging.Agent.Protocol ConnectionRequestUri / ConnShortLink,
 * Simplex.Messaging.Crypto.Ratchet E2ERatchetParamsUri):
 *
 *   simplex:/invitation#/?v=2-7&smp=<queue uris>&e2e=<ratchet params>
 *   simplex:/contact#/?v=2-7&smp=<queue uris>[&data=<client data>]
 *
 * The parser also takes the https://<host>/... service scheme and, as
 * the reference does, forgets it: links are always printed with
 * "simplex:". Queue URIs are separated by ';'. The e2e value is
 * "v=2-3&x3dh=<k1>,<k2>[&kem_key=<pk>]" (two X448 keys, SPKI base64url;
 * the sntrup761 key as base64url of its raw bytes), rendered without
 * escaping inside and escaped as a whole.
 * Contact links' agent version range is raised to start at version 2 on
 * parsing, as the reference does for old published links.
 *
 * Short links: simplex:/i#<link id>/<key>?h=..&p=..&c=.. (invitation) and
 * simplex:/<a|c|g|r>#<key>?... (contact types), or https://<host>/...
 * with the first host in the authority. Only servers with a 32-byte key
 * hash (c=) are supported (SIMPLEX_ERR_UNSUPPORTED otherwise).
 *
 * Every function returns 0 or a negative simplex_error.
 */
#ifndef SX_LINKS_H
#define SX_LINKS_H

#include <stddef.h>
#include <stdint.h>

#include "agent/queue_uri.h"
#include "agent/ratchet.h"
#include "common/bytes.h"
#include "common/server_addr.h"
#include "common/text.h"

#define SX_LINK_MAX_QUEUES 8

typedef enum sx_link_mode {
    SX_LINK_INVITATION = 'I',
    SX_LINK_CONTACT = 'C'
} sx_link_mode;

/* RcvE2ERatchetParamsUri X448: a version range, two keys, optional KEM
 * (only "proposed" is valid in a link). */
typedef struct sx_e2e_params_uri {
    sx_vrange vrange;
    uint8_t k1[SX_X448_BYTES];
    uint8_t k2[SX_X448_BYTES];
    int kem; /* SX_KEM_NONE or SX_KEM_PROPOSED */
    uint8_t kem_pk[SX_KEM_PK_BYTES];
} sx_e2e_params_uri;

typedef struct sx_conn_link {
    sx_link_mode mode;
    sx_vrange agent_vrange;
    size_t n_queues; /* 1..SX_LINK_MAX_QUEUES */
    sx_queue_uri queues[SX_LINK_MAX_QUEUES];
    sx_e2e_params_uri e2e; /* invitation only */
    /* client data (UTF-8 text in the reference); sx_malloc'ed, freed by
     * sx_link_clear; NULL when absent */
    int has_client_data;
    uint8_t *client_data;
    size_t client_data_len;
} sx_conn_link;

/* Parses exactly n characters (strDecode). out is overwritten (clear it
 * first if it holds client data); free with sx_link_clear. On failure
 * out holds nothing to free. */
int sx_link_parse(sx_conn_link *out, const char *s, size_t n);
/* strEncode (always the simplex: scheme). */
int sx_link_print(sx_wr *w, const sx_conn_link *l);
/* smpEncode: 'I' data e2e | 'C' data. */
int sx_link_encode(sx_wr *w, const sx_conn_link *l);
/* smpDecode of the whole input. Free with sx_link_clear. */
int sx_link_decode(sx_conn_link *out, const uint8_t *p, size_t n);
/* Releases client data; the struct may be reused. */
void sx_link_clear(sx_conn_link *l);

/* E2E params in the link form, for the tests and other codecs. */
void sx_e2e_params_uri_print(sx_wr *w, const sx_e2e_params_uri *e);
int sx_e2e_params_uri_parse(sx_e2e_params_uri *out, const char *s, size_t n);
void sx_e2e_params_uri_encode(sx_wr *w, const sx_e2e_params_uri *e);
int sx_e2e_params_uri_read(sx_rd *r, sx_e2e_params_uri *out);

/* ---- short links ---- */
typedef enum sx_short_scheme {
    SX_SHORT_SIMPLEX = 0, /* simplex: */
    SX_SHORT_SERVER = 1   /* https://<first host> */
} sx_short_scheme;

#define SX_SHORT_ID_MAX 255

typedef struct sx_short_link {
    sx_link_mode mode;
    sx_short_scheme scheme;  /* text only; binary decoding gives SERVER */
    char contact_type;       /* 'A', 'C', 'G', 'R' (contact mode) */
    sx_server_addr server;
    uint8_t link_id[SX_SHORT_ID_MAX]; /* invitation */
    size_t link_id_len;
    uint8_t key[SX_SHORT_ID_MAX];
    size_t key_len;
} sx_short_link;

int sx_short_link_parse(sx_short_link *out, const char *s, size_t n);
int sx_short_link_print(sx_wr *w, const sx_short_link *l);
int sx_short_link_encode(sx_wr *w, const sx_short_link *l);
int sx_short_link_decode(sx_short_link *out, const uint8_t *p, size_t n);

#endif /* SX_LINKS_H */
