/* Test support: see slow_resolver.h. */
#define _DEFAULT_SOURCE 1

#include "slow_resolver.h"

#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "client/net.h"

static atomic_int g_delay_ms, g_entered, g_finished;

static void sleep_for(int ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int slow_resolver(const char *host, const char *port,
                         const struct addrinfo *hints, struct addrinfo **res)
{
    struct addrinfo h = *hints;
    int rc;
    atomic_fetch_add(&g_entered, 1);
    sleep_for(atomic_load(&g_delay_ms));
    if (strcmp(host, "slow.test") == 0) {
        h.ai_flags |= AI_NUMERICHOST;
        rc = getaddrinfo("127.0.0.1", port, &h, res);
    } else {
        rc = EAI_NONAME;
    }
    atomic_fetch_add(&g_finished, 1);
    return rc;
}

void tsr_install(int delay_ms)
{
    atomic_store(&g_delay_ms, delay_ms);
    atomic_store(&g_entered, 0);
    atomic_store(&g_finished, 0);
    sx_net_set_resolver(slow_resolver);
}

void tsr_set_delay(int delay_ms)
{
    atomic_store(&g_delay_ms, delay_ms);
}

void tsr_uninstall(void)
{
    sx_net_set_resolver(NULL);
}

int tsr_entered(void)
{
    return atomic_load(&g_entered);
}

int tsr_finished(void)
{
    return atomic_load(&g_finished);
}
