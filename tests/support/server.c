/*
 * Starting and stopping the loopback SMP server for tests (see server.h).
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/prctl.h>

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

int tsrv_bin_path(char *out, size_t n, const char *name)
{
    const char *env = getenv("SMP_TEST_SERVER");
    char self[PATH_MAX];
    ssize_t len;
    char *slash;
    int w;

    if (!out || n == 0 || !name)
        return -1;
    if (env && *env && strcmp(name, "smp-test-server") == 0) {
        w = snprintf(out, n, "%s", env);
        return w >= 0 && (size_t)w < n ? 0 : -1;
    }
    len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return -1;
    self[len] = 0;
    slash = strrchr(self, '/');
    if (!slash)
        return -1;
    *slash = 0;
    w = snprintf(out, n, "%s/../bin/%s", self, name);
    return w >= 0 && (size_t)w < n ? 0 : -1;
}

int tsrv_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Kills and reaps a child that failed to start properly. */
static int start_failed(tsrv *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    s->pid = -1;
    return -1;
}

int tsrv_start(tsrv *s, int port, const char *dir, const char *log,
               const char *const *extra)
{
    char path[PATH_MAX], portstr[16];
    const char *argv[32];
    size_t argc = 0, got = 0;
    int fds[2];
    const char *colon;
    char *end;
    long p;

    if (!s)
        return -1;
    s->pid = -1;
    s->port = -1;
    s->addr[0] = 0;
    if (port < 0 || port > 65535 ||
        tsrv_bin_path(path, sizeof path, "smp-test-server") != 0 ||
        access(path, X_OK) != 0)
        return -1;
    snprintf(portstr, sizeof portstr, "%d", port);
    argv[argc++] = path;
    argv[argc++] = "--port";
    argv[argc++] = portstr;
    if (dir) {
        argv[argc++] = "--dir";
        argv[argc++] = dir;
    }
    if (log) {
        argv[argc++] = "--store-log";
        argv[argc++] = log;
    }
    for (; extra && *extra; extra++) {
        if (argc + 1 >= sizeof argv / sizeof argv[0])
            return -1;
        argv[argc++] = *extra;
    }
    argv[argc] = NULL;

    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    s->pid = fork();
    if (s->pid < 0) {
        close(fds[0]);
        close(fds[1]);
        s->pid = -1;
        return -1;
    }
    if (s->pid == 0) {
        /* never outlive the test that started it, even when it crashes */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        /* execv's argv is not const-qualified, but it does not write */
        execv(path, (char *const *)(void *)argv);
        _exit(127);
    }
    close(fds[1]);
    /* the first line is the address */
    for (;;) {
        char ch;
        ssize_t n = read(fds[0], &ch, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != 1 || got >= sizeof s->addr - 1) {
            close(fds[0]);
            return start_failed(s);
        }
        if (ch == '\n')
            break;
        s->addr[got++] = ch;
    }
    s->addr[got] = 0;
    close(fds[0]);
    /* smp://<key hash>@127.0.0.1:<port> */
    colon = strrchr(s->addr, ':');
    if (strncmp(s->addr, "smp://", 6) != 0 || !strchr(s->addr, '@') ||
        !colon || colon < strchr(s->addr, '@'))
        return start_failed(s);
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p <= 0 || p > 65535 ||
        (port != 0 && p != port))
        return start_failed(s);
    s->port = (int)p;
    return 0;
}

int tsrv_stop(tsrv *s)
{
    int st = 0;
    pid_t r;

    if (!s || s->pid <= 0)
        return -1;
    if (kill(s->pid, SIGTERM) != 0) {
        s->pid = -1;
        return -1;
    }
    kill(s->pid, SIGCONT); /* a stopped server would never see the TERM */
    do
        r = waitpid(s->pid, &st, 0);
    while (r < 0 && errno == EINTR);
    s->pid = -1;
    if (r < 0)
        return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int tsrv_signal(tsrv *s, int sig)
{
    if (!s || s->pid <= 0)
        return -1;
    return kill(s->pid, sig) == 0 ? 0 : -1;
}
