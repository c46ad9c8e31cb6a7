#!/bin/sh
# Fails when the shared library exports a symbol outside the simplex_
# namespace or without the SIMPLEX_1 version tag, or exports nothing.
set -eu
so=${1:-lib/libsimplex.so}
[ -f "$so" ] || { echo "no $so"; exit 1; }
syms=$(nm -D --defined-only "$so" | awk '{print $3}')
[ -n "$syms" ] || { echo "no exported symbols"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^simplex_' | grep -v '^SIMPLEX_1$' || true)
if [ -n "$bad" ]; then
    echo "symbols outside the simplex_ namespace:"
    printf '  %s\n' $bad
    exit 1
fi
# every simplex_ symbol carries the version tag
untagged=$(objdump -T "$so" | awk '/ simplex_/ && $0 !~ /SIMPLEX_1/ {print $NF}')
if [ -n "$untagged" ]; then
    echo "symbols without the SIMPLEX_1 version tag:"
    printf '  %s\n' $untagged
    exit 1
fi
soname=$(objdump -p "$so" | awk '/SONAME/ {print $2}')
[ "$soname" = "libsimplex.so.1" ] || { echo "SONAME is '$soname'"; exit 1; }
echo "$(printf '%s\n' "$syms" | grep -c '^simplex_') symbols exported, all simplex_* @SIMPLEX_1"
