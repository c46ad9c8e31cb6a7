/*
 * SMP queue addresses as the agent passes them around, matching
 * simplexmq 6.5.5.0 (Simplex.Messaging.Agent.Protocol):
 *
 *   SMPQueueUri  = client version range + queue address
 *                  text: smp://<hash>@<hosts>[:port]/<sender id>#/?v=..&dh=..
 *                  binary: version range, server, sender id, DH key, mode
 *   SMPQueueInfo = one client version + queue address (binary only); its
 *                  encoding depends on that version.
 *
 * The queue mode says what the queue is for (messaging: the sender secures
 * the queue itself; contact: a contact address). "Sender can secure" (the
 * k=s parameter, the 'T' flag of older binary forms) is not stored: it is
 * true exactly when the mode is messaging.
 */
#ifndef SX_QUEUE_URI_H
#define SX_QUEUE_URI_H

#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"
#include "common/server_addr.h"
#include "common/text.h"

/* SMP client versions (SMPClientVersion) */
#define SX_SMPC_VERSION_INITIAL 1       /* first version */
#define SX_SMPC_VERSION_SRV_HOSTNAMES 2 /* all hosts in the authority */
#define SX_SMPC_VERSION_SND_AUTH_KEY 3  /* sender can secure the queue */
#define SX_SMPC_VERSION_SHORT_LINKS 4   /* queue mode in the binary form */
#define SX_SMPC_VERSION_CURRENT 4

#define SX_QUEUE_ID_MAX 255 /* a ByteString */
#define SX_QUEUE_DH_BYTES 32

typedef enum sx_queue_mode {
    SX_QUEUE_MODE_NONE = 0,
    SX_QUEUE_MODE_MESSAGING = 1,
    SX_QUEUE_MODE_CONTACT = 2
} sx_queue_mode;

typedef struct sx_queue_address {
    sx_server_addr server;                 /* never has basic auth */
    uint8_t sender_id[SX_QUEUE_ID_MAX];
    size_t sender_id_len;
    uint8_t dh_public[SX_QUEUE_DH_BYTES];  /* X25519, raw */
    sx_queue_mode mode;
} sx_queue_address;

typedef struct sx_queue_uri {
    sx_vrange vrange; /* client versions, min <= max */
    sx_queue_address addr;
} sx_queue_uri;

typedef struct sx_queue_info {
    uint16_t version; /* client version */
    sx_queue_address addr;
} sx_queue_info;

/* 1 when the sender secures the queue (mode messaging), else 0. */
int sx_queue_mode_sender_can_secure(sx_queue_mode mode);

/* Text (strDecode / strEncode). Parses exactly n characters. */
int sx_queue_uri_parse(sx_queue_uri *out, const char *s, size_t n);
void sx_queue_uri_print(sx_wr *w, const sx_queue_uri *q);

/* Binary SMPQueueUri. Decoding reads the optional trailing mode byte when
 * one follows, as the reference does; check sx_rd_end() afterwards when
 * the value must be the whole input. */
void sx_queue_uri_encode(sx_wr *w, const sx_queue_uri *q);
int sx_queue_uri_decode(sx_rd *r, sx_queue_uri *out);

/* Binary SMPQueueInfo, encoded according to qi->version. */
void sx_queue_info_encode(sx_wr *w, const sx_queue_info *qi);
int sx_queue_info_decode(sx_rd *r, sx_queue_info *out);

/* Conversions that keep the address and change the version (range). */
void sx_queue_uri_to_info(sx_queue_info *out, const sx_queue_uri *q,
                          uint16_t version);
void sx_queue_info_to_uri(sx_queue_uri *out, const sx_queue_info *qi,
                          sx_vrange vrange);

/* Adds the known .onion host of a single-host simplex.im preset server, as
 * the reference does for addresses from clients older than version 2. */
void sx_queue_update_server_hosts(sx_server_addr *srv);

int sx_queue_address_equal(const sx_queue_address *a,
                           const sx_queue_address *b);
int sx_queue_uri_equal(const sx_queue_uri *a, const sx_queue_uri *b);
int sx_queue_info_equal(const sx_queue_info *a, const sx_queue_info *b);

#endif /* SX_QUEUE_URI_H */
