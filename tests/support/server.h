/*
 * The loopback SMP server (smp-test-server) as a child process, for the
 * unit tests and test tools. Nothing here calls cmocka: every function
 * reports failure by its return value.
 */
#ifndef TESTS_SERVER_H
#define TESTS_SERVER_H

#include <stddef.h>
#include <sys/types.h>

typedef struct tsrv {
    pid_t pid;      /* > 0 while running */
    int port;       /* the port it listens on */
    char addr[512]; /* smp://<key hash>@127.0.0.1:<port> */
} tsrv;

/* Path of a program built next to the tests:
 * "<dir of /proc/self/exe>/../bin/<name>" (or $SMP_TEST_SERVER for
 * "smp-test-server"). 0 or -1. */
int tsrv_bin_path(char *out, size_t n, const char *name);

/* A free TCP port on 127.0.0.1, or -1. */
int tsrv_free_port(void);

/* Starts smp-test-server --port port (0: the server picks one) with
 * optional --dir dir, --store-log log and the extra arguments (a
 * NULL-terminated list, may be NULL), and reads the first line it prints
 * (its address) into s->addr; s->port is taken from that address.
 * 0 or -1 (then no child is left running). */
int tsrv_start(tsrv *s, int port, const char *dir, const char *log,
               const char *const *extra);

/* SIGTERM, then waits for it. 0 when it exited with status 0, else -1. */
int tsrv_stop(tsrv *s);

/* Sends sig (SIGKILL, SIGSTOP, SIGCONT, ...) without waiting. 0 or -1. */
int tsrv_signal(tsrv *s, int sig);

#endif
