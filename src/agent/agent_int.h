/*
 * Agent internals shared by agent.c (lifecycle, threads, events),
 * agent_conn.c (connection procedures, sending, receiving) and
 * agent_dlv.c (delivery workers).
 *
 * Locking: a->mu guards the store and every decision taken from it; it is
 * never held during network calls or while calling the application.
 * a->qmu guards the agent thread's job list and the event list.
 */
#ifndef SX_AGENT_INT_H
#define SX_AGENT_INT_H

#include <pthread.h>
#include <stdint.h>

#include "agent/queue_uri.h"
#include "agent/store.h"
#include "simplex/agent.h"
#include "simplex/client.h"

/* supported versions */
#define AG_AGENT_V_MIN 2
#define AG_AGENT_V_MAX 7
#define AG_E2E_V_MIN 2
#define AG_E2E_V_MAX 2 /* post-quantum ratchet (3) not yet */
#define AG_SMPC_V_MIN 1
#define AG_SMPC_V_MAX 4

/* padded sizes without post-quantum support (Agent/Protocol.hs) */
#define AG_CONN_INFO_PAD 14832
#define AG_AGENT_MSG_PAD 15840

/* receive queue status */
#define RQ_NEW 0
#define RQ_CONFIRMED 1
#define RQ_SECURED 2
#define RQ_ACTIVE 3

/* send queue status */
#define SQ_NEW 0
#define SQ_SECURED 1
#define SQ_CONFIRMED 2
#define SQ_ACTIVE 3

/* stored message types */
#define MT_CONN_INFO 1       /* creator's confirmation (AgentConnInfo) */
#define MT_CONN_INFO_REPLY 2 /* joiner's confirmation */
#define MT_HELLO 3
#define MT_A_MSG 4
#define MT_A_RCVD 5
#define MT_A_QCONT 6
#define MT_EREADY 7
#define MT_OTHER 8
#define MT_INVITATION 9 /* a contact request (AgentInvitation) */

#define AG_WORKERS 2
#define AG_ERR_MAX 256

struct simplex_agent_event {
    simplex_agent_event_type type;
    char conn_id[SIMPLEX_AGENT_ID_MAX];
    char conf_id[SIMPLEX_AGENT_ID_MAX];
    int64_t msg_id, snd_msg_id, ts;
    unsigned flags;
    int integrity;
    int64_t integ_a, integ_b;
    int error;
    char *message;
    char *server;
    uint8_t *body;
    size_t body_len;
    struct simplex_agent_event *next;
};

/* a client event waiting for the agent thread */
typedef struct ag_job {
    simplex_client_event *cev; /* NULL: the "subscribe all" job */
    struct ag_job *next;
} ag_job;

/* a send queue with pending deliveries, owned by one worker */
typedef struct ag_dq {
    int64_t sq_id;
    int64_t next_ms;     /* monotonic time of the next attempt */
    unsigned delay_ms;   /* current back-off, 0 after a success */
    int warned;          /* MWARN sent for the current message */
    struct ag_dq *next;
} ag_dq;

typedef struct ag_worker {
    struct simplex_agent *a;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ag_dq *list;
} ag_worker;

struct simplex_agent {
    pthread_mutex_t mu; /* store and decisions */
    sx_store st;
    simplex_client *client;

    char **servers;
    size_t n_servers, next_server;
    unsigned flags;
    unsigned retry_initial_ms, retry_max_ms, message_timeout_s;
    simplex_agent_event_cb cb;
    void *user_data;

    pthread_mutex_t qmu;
    pthread_cond_t qcv;  /* agent thread: jobs or events to dispatch */
    pthread_cond_t evcv; /* pull waiters */
    ag_job *jobs, *jobs_tail;
    int evfd[2]; /* pull mode: readable while evs is not empty */
    /* the pipe is only kept in step once simplex_agent_event_fd() has
     * been called (evfd_on); evfd_full: it holds a byte */
    int evfd_on, evfd_full;
    struct simplex_agent_event *evs, *evs_tail;
    int stop;
    int open_done; /* simplex_agent_new has set *out: callbacks may run */

    /* receive queues whose subscription failed for a network reason,
     * subscribed again by the agent thread (under qmu) */
    int64_t *resub;
    size_t n_resub;
    int64_t resub_at_ms;
    unsigned resub_delay_ms;

    pthread_t thread;
    int thread_started;
    ag_worker workers[AG_WORKERS];
};

/* a send queue as stored */
typedef struct ag_sq {
    int64_t id, conn_id;
    char server[512];
    uint8_t snd_id[SX_QUEUE_ID_MAX];
    size_t snd_id_len;
    uint8_t snd_priv[32], e2e_pub[32], e2e_secret[32];
    int mode, client_version, status;
} ag_sq;

/* ---- agent.c ---- */
/* Records the calling thread's error message and returns rc. */
int ag_fail(int rc, const char *fmt, ...) SX_PRINTF(2, 3);
int64_t ag_now_ms(void);      /* monotonic */
int64_t ag_wall_s(void);      /* Unix time */
void ag_random_id(char out[SIMPLEX_AGENT_ID_MAX]);
/* New event (type, connection id); NULL on allocation failure. */
struct simplex_agent_event *ag_event_new(simplex_agent_event_type t,
                                         const char *conn_id);
int ag_event_set_body(struct simplex_agent_event *e, const uint8_t *p,
                      size_t n);
void ag_event_set_error(struct simplex_agent_event *e, int code,
                        const char *msg);
/* Queues an event (takes it); NULL is ignored. */
void ag_emit(simplex_agent *a, struct simplex_agent_event *e);
/* Between these, this thread's ag_emit() calls only collect the events;
 * the flush queues them in order (call it once a->mu is released). */
void ag_defer_begin(simplex_agent *a);
void ag_defer_flush(simplex_agent *a);
void ag_emit_err(simplex_agent *a, const char *conn_id, int code,
                 const char *fmt, ...) SX_PRINTF(4, 5);
/* Network failures worth retrying. */
int ag_temporary(int rc);
/* The client's last error message for this thread into buf. */
void ag_client_error(simplex_agent *a, char *buf, size_t n);
const char *ag_next_server(simplex_agent *a, const char *avoid);

/* ---- agent_conn.c ---- */
/* Processes one client event on the agent thread. */
void ag_process_client_event(simplex_agent *a, const simplex_client_event *ev);
/* Subscribes the stored receive queues (no lock held on entry): all of
 * them, or only those in ids (sorted rq ids) when ids is not NULL. Queues
 * that fail for a network reason are queued for a retry. */
int ag_subscribe(simplex_agent *a, const int64_t *ids, size_t n_ids);
/* CONF and REQ events again for what still waits (under a->mu). */
int ag_announce_pending(simplex_agent *a);
/* Store helpers (under a->mu): a send queue by id (> 0) or the
 * connection's primary one; status updates. */
int ag_load_sq(simplex_agent *a, ag_sq *out, int64_t sq_id, int64_t conn_id);
int ag_set_sq_status(simplex_agent *a, int64_t sq_id, int status);
int ag_set_conn_status(simplex_agent *a, int64_t conn_id, int status);

/* ---- agent_dlv.c ---- */
int ag_workers_start(simplex_agent *a);
void ag_workers_stop(simplex_agent *a);
/* Makes the worker of sq_id look at it now. */
void ag_kick(simplex_agent *a, int64_t sq_id);
/* Kicks every send queue that has pending deliveries (under a->mu). */
int ag_kick_all(simplex_agent *a);

#endif /* SX_AGENT_INT_H */
