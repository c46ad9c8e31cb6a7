/*
 * SMP server addresses: smp://<keyhash>[:<basic auth>]@host1,host2[:port]
 * in text (strEncode / strP of the reference's ProtocolServer) and in the
 * binary encoding (hosts as NonEmpty ByteString, port as ByteString,
 * key hash as ByteString).
 */
#ifndef SX_SERVER_ADDR_H
#define SX_SERVER_ADDR_H

#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"

#define SX_SERVER_MAX_HOSTS 8
#define SX_HOST_MAX 255       /* fits a ByteString */
#define SX_PORT_MAX 5         /* "65535" */
#define SX_AUTH_MAX 255

typedef enum sx_host_kind {
    SX_HOST_DOMAIN = 0,
    SX_HOST_IPV4 = 1,
    SX_HOST_IPV6 = 2,
    SX_HOST_ONION = 3
} sx_host_kind;

typedef struct sx_host {
    sx_host_kind kind;
    char name[SX_HOST_MAX + 1]; /* NUL-terminated; IPv6 without brackets */
} sx_host;

typedef struct sx_server_addr {
    size_t n_hosts;                       /* 1..SX_SERVER_MAX_HOSTS */
    sx_host hosts[SX_SERVER_MAX_HOSTS];
    char port[SX_PORT_MAX + 1];           /* "" when absent (default 5223) */
    uint8_t key_hash[32];
    char auth[SX_AUTH_MAX + 1];           /* basic auth, "" when absent */
    int has_auth;
} sx_server_addr;

/* Parses exactly n characters. */
int sx_server_addr_parse(sx_server_addr *out, const char *s, size_t n);
/* Appends the text form (with basic auth when present) to w. */
void sx_server_addr_print(sx_wr *w, const sx_server_addr *a);
/* Binary encoding (no auth). */
void sx_server_addr_encode(sx_wr *w, const sx_server_addr *a);
int sx_server_addr_decode(sx_rd *r, sx_server_addr *out);
/* The port as a number, 5223 when absent. */
uint16_t sx_server_addr_port(const sx_server_addr *a);

/* ---- additions used by the queue URI codecs and the tests ---- */

/* Parses a server address at the start of s[0..n) as far as the reference's
 * parser reads it (basic auth allowed) and sets *consumed; what follows is
 * left to the caller. */
int sx_server_addr_parse_prefix(sx_server_addr *out, const char *s, size_t n,
                                size_t *consumed);
/* Parses one host (IPv4, IPv6, .onion or domain name) at the start of
 * s[0..n) and sets *consumed. */
int sx_host_parse_prefix(sx_host *out, const char *s, size_t n,
                         size_t *consumed);
/* Text form; with_auth: include basic auth when present; first_host_only:
 * the legacy form that names only the first host. */
void sx_server_addr_print_ex(sx_wr *w, const sx_server_addr *a, int with_auth,
                             int first_host_only);
/* Legacy binary encoding: the first host only (host, port, key hash). */
void sx_server_addr_encode_legacy(sx_wr *w, const sx_server_addr *a);
int sx_server_addr_decode_legacy(sx_rd *r, sx_server_addr *out);
/* 1 when hosts, port, key hash and basic auth are all the same. */
int sx_server_addr_equal(const sx_server_addr *a, const sx_server_addr *b);

#endif /* SX_SERVER_ADDR_H */
