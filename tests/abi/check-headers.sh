#!/bin/sh
# Each public header must compile on its own, as C11 and as C++.
set -eu
cc=${1:-cc}
case "$($cc --version 2>/dev/null | head -n 1)" in
*clang*) cxx=clang++ ;;
*) cxx=g++ ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
for h in include/simplex/*.h; do
    name=$(basename "$h")
    printf '#include <simplex/%s>\n#include <simplex/%s>\nint main(void) { return 0; }\n' \
        "$name" "$name" > "$tmp/t.c"
    $cc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude -c "$tmp/t.c" -o "$tmp/t.o"
    cp "$tmp/t.c" "$tmp/t.cpp"
    $cxx -std=c++11 -Wall -Wextra -Werror -pedantic -Iinclude -c "$tmp/t.cpp" -o "$tmp/t.o"
    n=$((n + 1))
done
echo "$n headers compile alone as C11 and C++11"
