/*
 * libsimplex: the umbrella header. Include this one; it pulls in the
 * per-layer headers.
 */
#ifndef SIMPLEX_SIMPLEX_H
#define SIMPLEX_SIMPLEX_H

#include "simplex/common.h"
#include "simplex/client.h"
#include "simplex/agent.h"

#endif /* SIMPLEX_SIMPLEX_H */
