/*
 * SMP client: the I/O thread. One poll() over the wake-up pipe and every
 * connection's socket; the timeout is the earliest connection deadline
 * (connect, session timers, reconnection).
 */
#define _DEFAULT_SOURCE 1

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "client/client_int.h"

int64_t cl_now(void)
{
    return sx_net_now_ms();
}

void cl_wake(struct simplex_client *c)
{
    uint8_t b = 1;
    ssize_t n;
    do {
        n = write(c->wake_fd[1], &b, 1);
    } while (n < 0 && errno == EINTR);
    /* EAGAIN: the pipe is full, the loop will wake anyway */
}

void cl_req_finish(struct simplex_client *c, cl_req *r, int rc,
                   const char *fmt, ...)
{
    va_list ap;
    char msg[sizeof r->err];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->async) {
        cl_async_finish(c, r, rc, msg);
        return;
    }
    pthread_mutex_lock(&c->mu);
    r->rc = rc;
    if (rc)
        memcpy(r->err, msg, sizeof msg);
    r->done = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void cl_emit(struct simplex_client *c, simplex_client_event *ev)
{
    if (!ev)
        return;
    if (c->opts.event_cb) {
        c->opts.event_cb(ev, c->opts.user_data);
        simplex_client_event_free(ev);
        return;
    }
    pthread_mutex_lock(&c->mu);
    ev->next = NULL;
    if (c->ev_tail)
        c->ev_tail->next = ev;
    else
        c->ev_head = ev;
    c->ev_tail = ev;
    pthread_cond_broadcast(&c->ev_cv);
    pthread_mutex_unlock(&c->mu);
}

static void route(struct simplex_client *c, cl_req *r, int64_t now)
{
    cl_conn *k = cl_conn_find(c, &r->addr, 1);
    if (!k) {
        cl_req_finish(c, r, SIMPLEX_ERR_NOMEM, "out of memory");
        return;
    }
    cl_conn_add_req(k, r, now);
}

static void reap(struct simplex_client *c)
{
    cl_conn **pp = &c->conns;
    while (*pp) {
        cl_conn *k = *pp;
        if (k->state == CL_C_DEAD) {
            *pp = k->next;
            cl_conn_free(k);
        } else {
            pp = &k->next;
        }
    }
}

void *cl_loop_main(void *arg)
{
    struct simplex_client *c = arg;
    struct pollfd *pfd = NULL;
    size_t cap = 0;

    for (;;) {
        cl_req *in, *r;
        cl_conn *k;
        int64_t now, next = -1;
        size_t n = 1;
        int stop, timeout;

        pthread_mutex_lock(&c->mu);
        in = c->inbox;
        c->inbox = c->inbox_tail = NULL;
        stop = c->stopping;
        pthread_mutex_unlock(&c->mu);
        now = cl_now();
        while (in) {
            r = in;
            in = r->next;
            r->next = NULL;
            if (stop)
                cl_req_finish(c, r, SIMPLEX_ERR_CLOSED,
                              "the client is closing");
            else
                route(c, r, now);
        }
        if (stop)
            break;
        for (k = c->conns; k; k = k->next)
            cl_conn_step(k, 0, now);
        reap(c);

        {
            size_t want = 1;
            for (k = c->conns; k; k = k->next)
                want++;
            if (want > cap) {
                struct pollfd *np = sx_realloc(pfd, want * sizeof *pfd);
                if (np) {
                    pfd = np;
                    cap = want;
                } else if (!pfd) {
                    /* no memory even for the wake-up: retry shortly */
                    struct pollfd one;
                    one.fd = c->wake_fd[0];
                    one.events = POLLIN;
                    (void)poll(&one, 1, 100);
                    continue;
                }
            }
        }
        pfd[0].fd = c->wake_fd[0];
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        for (k = c->conns; k; k = k->next) {
            short ev;
            int64_t dl;
            int fd = cl_conn_poll(k, &ev, &dl);
            if (dl >= 0 && (next < 0 || dl < next))
                next = dl;
            if (fd >= 0 && ev && n < cap) {
                pfd[n].fd = fd;
                pfd[n].events = ev;
                pfd[n].revents = 0;
                n++;
            }
        }
        /* requests posted from callbacks during this turn (no wake-up
         * was written for them): straight to the next turn, which steps
         * every connection anyway */
        {
            int again;
            pthread_mutex_lock(&c->mu);
            again = c->inbox != NULL && !c->stopping;
            pthread_mutex_unlock(&c->mu);
            if (again)
                continue;
        }
        now = cl_now();
        if (next < 0)
            timeout = -1;
        else if (next <= now)
            timeout = 0;
        else
            timeout = next - now > 60000 ? 60000 : (int)(next - now);
        if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR)
            sx_log(sx_default_logger(), SIMPLEX_LOG_ERROR,
                   "smp client: poll failed (%d)", errno);
        if (pfd[0].revents & POLLIN) {
            /* a short read emptied the pipe: stopping there saves the
             * read that would only fail with EAGAIN, once per wake-up */
            uint8_t buf[64];
            ssize_t got;
            do {
                got = read(c->wake_fd[0], buf, sizeof buf);
            } while (got == (ssize_t)sizeof buf ||
                     (got < 0 && errno == EINTR));
        }
    }
    sx_free(pfd);
    while (c->conns) {
        cl_conn *k = c->conns;
        c->conns = k->next;
        cl_conn_free(k);
    }
    return NULL;
}
