/*
 * Host name resolution off the calling thread, non-blocking TCP connect
 * over every resolved address, and SIGPIPE-free send/recv wrappers.
 */
/* TCP_KEEPIDLE and friends where present; pipe2() on Linux */
#define _GNU_SOURCE 1

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "client/net.h"
#include "common/sx.h"

/*
 * One resolution on a helper thread. Shared by the connector and the
 * thread, each holding one reference; whoever drops the last one frees
 * the result, closes both pipe ends and frees the job. The thread writes
 * one byte to the pipe when done, while it still holds its reference: the
 * read end is then still open, so the write can neither fail with EPIPE
 * (nor raise SIGPIPE) nor land in a descriptor number reused meanwhile.
 *
 * Allocated with the C library's calloc/free, not the library allocator:
 * the thread may drop the last reference after simplex_global_cleanup()
 * has switched allocators.
 */
typedef struct resolve_job {
    pthread_mutex_t mu;
    int refs;              /* under mu */
    int done;              /* under mu: rc and list are set */
    int rc;                /* under mu: the resolver's result */
    struct addrinfo *list; /* under mu: its list, until taken */
    int rfd, wfd;          /* the pipe; fixed from creation to free */
    sx_net_resolver_fn fn; /* fixed */
    char host[256];
    char port[8];
} resolve_job;

struct sx_net_connector {
    struct addrinfo *list; /* from getaddrinfo */
    struct addrinfo *next; /* the next address to try */
    resolve_job *job;      /* non-NULL while resolving */
    int fd;                /* the attempt in progress, -1 when none */
    int last_errno;
    int connected;
    int error; /* a resolution failure (SX_NET_E_*), kept; 0 when none */
};

/* ---- the resolver (replaceable by tests) ---- */

static pthread_mutex_t g_resolver_mu = PTHREAD_MUTEX_INITIALIZER;
static sx_net_resolver_fn g_resolver; /* NULL: getaddrinfo */

void sx_net_set_resolver(sx_net_resolver_fn fn)
{
    pthread_mutex_lock(&g_resolver_mu);
    g_resolver = fn;
    pthread_mutex_unlock(&g_resolver_mu);
}

static sx_net_resolver_fn current_resolver(void)
{
    sx_net_resolver_fn fn;
    pthread_mutex_lock(&g_resolver_mu);
    fn = g_resolver;
    pthread_mutex_unlock(&g_resolver_mu);
    return fn;
}

/* The hints every resolution uses (flags added by the caller). */
static void stream_hints(struct addrinfo *hints, int flags)
{
    memset(hints, 0, sizeof *hints);
    hints->ai_family = AF_UNSPEC;
    hints->ai_socktype = SOCK_STREAM;
    hints->ai_protocol = IPPROTO_TCP;
    /* no AI_ADDRCONFIG: it hides loopback-only set-ups; an unreachable
     * family just fails over to the next address */
    hints->ai_flags = AI_NUMERICSERV | flags;
}

static int resolve_with(sx_net_resolver_fn fn, const char *host,
                        const char *port, struct addrinfo **res)
{
    struct addrinfo hints;
    stream_hints(&hints, 0);
    *res = NULL;
    return fn ? fn(host, port, &hints, res)
              : getaddrinfo(host, port, &hints, res);
}

/* Maps a resolver result onto SX_NET_OK / _E_NOMEM / _E_RESOLVE; frees a
 * list that comes with a failure. */
static int resolve_result(int rc, struct addrinfo **list)
{
    if (rc == 0 && *list)
        return SX_NET_OK;
    if (*list)
        freeaddrinfo(*list);
    *list = NULL;
    return rc == EAI_MEMORY ? SX_NET_E_NOMEM : SX_NET_E_RESOLVE;
}

static void job_unref(resolve_job *j)
{
    int last;
    pthread_mutex_lock(&j->mu);
    last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last)
        return;
    if (j->list)
        freeaddrinfo(j->list);
    sx_net_close(j->rfd);
    sx_net_close(j->wfd);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static void *resolve_main(void *arg)
{
    resolve_job *j = arg;
    struct addrinfo *list = NULL;
    int rc = resolve_with(j->fn, j->host, j->port, &list);
    static const char one = 1;

    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    j->list = list;
    j->done = 1;
    pthread_mutex_unlock(&j->mu);
    /* the pipe is empty and non-blocking: one byte always fits; EINTR is
     * all there is to retry */
    while (write(j->wfd, &one, 1) < 0 && errno == EINTR)
        ;
    job_unref(j);
    return NULL;
}

/*
 * Starts resolving host:port on a detached helper thread. 0 with *out set
 * (two references), SX_NET_E_NOMEM, or 1 when no thread could be started
 * (the caller then resolves on its own).
 */
static int job_start(resolve_job **out, const char *host, const char *port)
{
    resolve_job *j;
    pthread_attr_t attr;
    pthread_t th;
    sigset_t all, old;
    int p[2], rc;

    *out = NULL;
    j = calloc(1, sizeof *j);
    if (!j)
        return SX_NET_E_NOMEM;
    if (pthread_mutex_init(&j->mu, NULL) != 0) {
        free(j);
        return 1;
    }
    if (sx_net_pipe(p) != 0) {
        pthread_mutex_destroy(&j->mu);
        free(j);
        return 1;
    }
    j->rfd = p[0];
    j->wfd = p[1];
    j->fn = current_resolver();
    snprintf(j->host, sizeof j->host, "%s", host);
    snprintf(j->port, sizeof j->port, "%s", port);
    j->refs = 2;

    rc = pthread_attr_init(&attr);
    if (rc == 0) {
        rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (rc == 0) {
            /* the helper takes no signal meant for the application */
            sigfillset(&all);
            pthread_sigmask(SIG_SETMASK, &all, &old);
            rc = pthread_create(&th, &attr, resolve_main, j);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
        }
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        j->refs = 1;
        job_unref(j);
        return 1;
    }
    *out = j;
    return 0;
}

int64_t sx_net_now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sx_net_close(int fd)
{
    if (fd >= 0)
        (void)close(fd);
}

int sx_net_pipe(int p[2])
{
#ifdef __linux__
    /* atomically: no fork+exec on another thread can inherit it */
    return pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0 ? 0 : -1;
#else
    if (pipe(p) != 0)
        return -1;
    if (sx_net_set_nonblocking(p[0]) != 0 ||
        sx_net_set_nonblocking(p[1]) != 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    return 0;
#endif
}

int sx_net_set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl < 0)
        return -1;
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -1;
    return 0;
}

/* Socket options as the reference client sets them: keep-alive probes after
 * 30 s idle, every 15 s, 4 of them. Failures are not fatal. */
static void set_socket_options(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
#if defined(TCP_KEEPIDLE) && defined(TCP_KEEPINTVL) && defined(TCP_KEEPCNT)
    {
        int idle = 30, intvl = 15, cnt = 4;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
                         sizeof intvl);
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }
#endif
}

/* Starts connecting to addresses from c->next on; stops at the first one in
 * progress or connected. */
static int try_next(sx_net_connector *c)
{
    while (c->next) {
        struct addrinfo *ai = c->next;
        int fd;
        c->next = ai->ai_next;
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            c->last_errno = errno;
            continue;
        }
        if (sx_net_set_nonblocking(fd) != 0) {
            c->last_errno = errno;
            sx_net_close(fd);
            continue;
        }
        set_socket_options(fd);
        for (;;) {
            if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
                c->fd = fd;
                c->connected = 1;
                return SX_NET_OK;
            }
            if (errno != EINTR)
                break;
        }
        if (errno == EINPROGRESS || errno == EINTR) {
            c->fd = fd;
            return SX_NET_AGAIN;
        }
        c->last_errno = errno;
        sx_net_close(fd);
    }
    return SX_NET_E_CONNECT;
}

/* Resolution is over (list set, or c->error): starts connecting. */
static int resolved(sx_net_connector *c, int rc, struct addrinfo *list)
{
    rc = resolve_result(rc, &list);
    if (rc != SX_NET_OK) {
        c->error = rc;
        return rc;
    }
    c->list = list;
    c->next = list;
    return try_next(c);
}

int sx_net_connector_start(sx_net_connector **out, const char *host,
                           uint16_t port)
{
    struct addrinfo hints;
    struct addrinfo *list = NULL;
    sx_net_connector *c;
    char portstr[8];
    char hostbuf[256];
    size_t hl;
    int rc;

    if (!out || !host)
        return SX_NET_E_ARG;
    *out = NULL;
    hl = strlen(host);
    /* "[::1]" -> "::1" */
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof hostbuf)
        return SX_NET_E_ARG;
    memcpy(hostbuf, host, hl);
    hostbuf[hl] = '\0';
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);

    c = sx_calloc(1, sizeof *c);
    if (!c)
        return SX_NET_E_NOMEM;
    c->fd = -1;

    /* an address literal: parsed at once, never a DNS query */
    stream_hints(&hints, AI_NUMERICHOST);
    rc = getaddrinfo(hostbuf, portstr, &hints, &list);
    if (rc == EAI_NONAME && !list) {
        /* a name: on a helper thread, so the caller's thread never waits
         * for DNS; without a thread, here as before */
        rc = job_start(&c->job, hostbuf, portstr);
        if (rc == 0) {
            *out = c;
            return SX_NET_OK;
        }
        if (rc < 0) {
            sx_free(c);
            return rc;
        }
        rc = resolve_with(current_resolver(), hostbuf, portstr, &list);
    }
    rc = resolved(c, rc, list);
    if (rc == SX_NET_E_RESOLVE || rc == SX_NET_E_NOMEM) {
        sx_free(c);
        return rc;
    }
    /* an immediate connect failure on every address: keep the connector,
     * the caller may ask for last_errno */
    *out = c;
    return rc < 0 ? rc : SX_NET_OK;
}

int sx_net_connector_step(sx_net_connector *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (!c)
        return SX_NET_E_ARG;
    if (c->error)
        return c->error;
    if (c->job) {
        resolve_job *j = c->job;
        struct addrinfo *list;
        int done, rc;
        pthread_mutex_lock(&j->mu);
        done = j->done;
        rc = j->rc;
        list = j->list;
        if (done)
            j->list = NULL; /* ours now */
        pthread_mutex_unlock(&j->mu);
        if (!done)
            return SX_NET_AGAIN;
        c->job = NULL;
        job_unref(j);
        return resolved(c, rc, list);
    }
    if (c->connected)
        return SX_NET_OK;
    if (c->fd < 0)
        return try_next(c);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0) {
        /* writable with no error means connected, unless the poll was
         * spurious: getpeername tells */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0) {
            c->connected = 1;
            return SX_NET_OK;
        }
        if (errno == ENOTCONN)
            return SX_NET_AGAIN;
        err = errno;
    }
    if (err == EINPROGRESS || err == EALREADY || err == EINTR)
        return SX_NET_AGAIN;
    c->last_errno = err;
    sx_net_close(c->fd);
    c->fd = -1;
    return try_next(c);
}

int sx_net_connector_fd(const sx_net_connector *c)
{
    if (!c)
        return -1;
    return c->job ? c->job->rfd : c->fd;
}

short sx_net_connector_events(const sx_net_connector *c)
{
    if (!c)
        return 0;
    if (c->job)
        return POLLIN;
    return c->fd >= 0 ? POLLOUT : 0;
}

int sx_net_connector_last_errno(const sx_net_connector *c)
{
    return c ? c->last_errno : 0;
}

int sx_net_connector_take_fd(sx_net_connector *c)
{
    int fd;
    if (!c || !c->connected)
        return -1;
    fd = c->fd;
    c->fd = -1;
    c->connected = 0;
    return fd;
}

void sx_net_connector_free(sx_net_connector *c)
{
    if (!c)
        return;
    if (c->job)
        job_unref(c->job); /* the thread may still run: it frees the job */
    sx_net_close(c->fd);
    if (c->list)
        freeaddrinfo(c->list);
    sx_free(c);
}

long sx_net_recv(int fd, void *buf, size_t len, int *status)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n > 0) {
            *status = SX_NET_OK;
            return (long)n;
        }
        if (n == 0) {
            *status = len ? SX_NET_EOF : SX_NET_OK;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *status = SX_NET_AGAIN;
            return 0;
        }
        *status = SX_NET_E_IO;
        return -1;
    }
}

long sx_net_send(int fd, const void *buf, size_t len, int *status)
{
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            *status = SX_NET_OK;
            if (n == 0 && len) {
                *status = SX_NET_AGAIN;
            }
            return (long)n;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *status = SX_NET_AGAIN;
            return 0;
        }
        *status = SX_NET_E_IO;
        return -1;
    }
}
