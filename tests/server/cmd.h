/*
 * smp-test-server: declarations shared by the command-processing files
 * (auth.c, cmd.c, deliver.c, fwd.c). Test code.
 */
#ifndef SX_TEST_SRV_CMD_H
#define SX_TEST_SRV_CMD_H

#include "srv.h"

extern srv_conn *g_conns;

static const sx_smp_bytes SC_NO_BYTES = {NULL, 0};

/* encrypted MSG body: the padded RcvMsgBody and the Poly1305 tag */
#define ENC_MSG_LEN (SX_SMP_RCV_MSG_PADDED + SX_BOX_TAG_BYTES)

/* the reference's parties (who may send which command) */
typedef enum party {
    P_CREATOR, P_RECIPIENT, P_SENDER, P_IDLE, P_SENDER_LINK, P_NOTIFIER,
    P_PROXIED, P_PROXY_SERVICE, P_SERVICE
} party;

/* what the authorization of one transmission covers */
typedef struct vctx {
    const srv_conn *c;
    const sx_smp_trans *t;
    const uint8_t *authorized;
    size_t authorized_len;
} vctx;

/* a parsed and verified transmission */
typedef struct item {
    sx_smp_trans t;
    sx_smp_cmd cmd;
} item;

/* responses of a batch and the messages sent after them */
typedef struct out {
    srv_resps resps;
    srv_resps msgs;
    srv_resps ntfs;     /* NMSGs (NSUB), one batch after the rest */
    uint8_t *enc;       /* MSG body buffer */
} out;

/* deliver.c */
sx_smp_bytes sc_bytes(const uint8_t *p, size_t n);
void sc_resps_push(srv_resps *r, uint8_t *p, size_t n);
void sc_resp_err(srv_resps *r, const srv_conn *c, sx_smp_bytes corr,
                 sx_smp_bytes ent, sx_smp_err_type type, int sub);
void sc_resp_simple(srv_resps *r, const srv_conn *c, sx_smp_bytes corr,
                    sx_smp_bytes ent, sx_smp_msg_tag tag);
void sc_send_one(srv_conn *c, sx_smp_bytes ent, const sx_smp_msg *m);
srv_sub *sc_sub_find(srv_conn *c, const srv_queue *q);
srv_sub *sc_sub_add(srv_conn *c, srv_queue *q, int prohibit);
void sc_sub_remove(srv_conn *c, const srv_queue *q);
/* NSUB bookkeeping (the connection's ntfSubscriptions) */
void sc_ntf_sub_add(srv_conn *c, srv_queue *q);
void sc_ntf_sub_remove(srv_conn *c, const srv_queue *q);
/* drops every connection's subscriptions (both kinds) to q (DEL) */
void sc_q_unsubscribe_all(srv_queue *q);
void sc_set_subscriber(srv_queue *q, srv_conn *c);
int sc_make_msg(sx_smp_msg *m, uint8_t *enc, const srv_queue *q,
                const srv_msg *msg);
void sc_set_delivered(srv_sub *s, const srv_msg *msg);
void sc_try_deliver(srv_queue *q, const srv_msg *msg);
/* NMSG: stored, sent at once when the notifier is subscribed */
void sc_notify(srv_queue *q, const srv_msg *msg);
/* the stored notifications of q as NMSGs for its notifier subscriber */
void sc_ntfs_flush(srv_queue *q, srv_resps *r);

/* auth.c */
party sc_cmd_party(sx_smp_cmd_tag t);
srv_queue *sc_lookup(party p, sx_smp_bytes id);
int sc_is_contact(const srv_queue *q);
int sc_is_secured_msg(const srv_queue *q);
int sc_key_eq(const sx_smp_key *a, const sx_smp_key *b);
int sc_allowed_key(const srv_queue *q, const sx_smp_key *k);
int sc_verify_key(const vctx *v, const sx_smp_key *k);
int sc_dummy_verify(const vctx *v);
sx_smp_err_type sc_verify(const vctx *v, const sx_smp_cmd *cmd);
int sc_known_tag(sx_smp_bytes cmd);
int sc_decode_verify(const srv_conn *c, sx_smp_bytes tb, item *it,
                     srv_resps *errs, int forwarded);

/* cmd.c */
int sc_max_msg_len(uint16_t v);
void sc_process(srv_conn *c, const item *it, out *o);

/* fwd.c */
void sc_do_rfwd(srv_conn *c, const item *it, srv_resps *r);

/* proxy.c */
void sc_do_prxy(srv_conn *c, const item *it, srv_resps *r);
void sc_do_pfwd(srv_conn *c, const item *it, srv_resps *r);

#endif
