/*
 * Test support: a resolver for sx_net_set_resolver() that sleeps, then
 * resolves "slow.test" to 127.0.0.1 and fails every other name. It runs
 * on the library's resolution threads; the counters say how many calls
 * began and returned.
 */
#ifndef TESTS_SLOW_RESOLVER_H
#define TESTS_SLOW_RESOLVER_H

/* Installs it with this delay (and zeroes the counters). */
void tsr_install(int delay_ms);
/* Changes the delay of the calls that begin from now on. */
void tsr_set_delay(int delay_ms);
/* Restores getaddrinfo. */
void tsr_uninstall(void);
int tsr_entered(void);
int tsr_finished(void);

#endif
