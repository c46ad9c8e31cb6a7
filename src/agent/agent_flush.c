/*
 * Waiting for pending deliveries (simplex_agent_flush).
 */
#include <time.h>

#include "agent/agent_int.h"

static int64_t pending(simplex_agent *a)
{
    sqlite3_stmt *st;
    int64_t n = -1;
    pthread_mutex_lock(&a->mu);
    if (sx_store_prepare(&a->st, &st, "SELECT COUNT(*) FROM deliveries") ==
        0) {
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sx_store_done(&a->st, st);
    }
    pthread_mutex_unlock(&a->mu);
    return n;
}

int simplex_agent_flush(simplex_agent *a, int timeout_ms)
{
    int64_t deadline, n;
    if (!a)
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "NULL agent");
    deadline = ag_now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        struct timespec ts = {0, 10 * 1000000L};
        n = pending(a);
        if (n < 0)
            return ag_fail(SIMPLEX_ERR_STORE, "database: %s", a->st.err);
        if (n == 0)
            return ag_fail(0, "%s", "");
        if (timeout_ms >= 0 && ag_now_ms() >= deadline)
            return ag_fail(SIMPLEX_ERR_TIMEOUT,
                           "%lld message(s) still waiting to be sent",
                           (long long)n);
        nanosleep(&ts, NULL);
    }
}
