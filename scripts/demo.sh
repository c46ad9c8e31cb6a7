#!/bin/sh
# `make demo`: starts the loopback SMP server on a free port (or uses
# SERVER=smp://... when given), prints the library version and crypto
# self-test, runs the Alice-and-Bob agent demo (build/bin/demo) through
# the server, then `simplex-cli server-test` against it.
# While the loopback server runs its address is in "$O/demo-server.addr",
# where simplex-cli looks for a server when given no --server.
set -eu
O=${O:-build}
bin="$O/bin"
"$bin/hello"

tmp=$(mktemp -d)
pid=""
addr_file=""
cleanup() {
    [ -n "$addr_file" ] && rm -f "$addr_file"
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

server=${SERVER:-}
if [ -z "$server" ]; then
    port=0
    "$bin/smp-test-server" --port "$port" --dir "$tmp" > "$tmp/server.out" 2>&1 &
    pid=$!
    i=0
    while [ ! -s "$tmp/server.out" ] && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    server=$(head -n 1 "$tmp/server.out")
    case "$server" in
    smp://*) ;;
    *) echo "demo: the loopback server did not start:" >&2
       cat "$tmp/server.out" >&2
       exit 1 ;;
    esac
    echo "loopback SMP server: $server"
    addr_file="$O/demo-server.addr"
    printf '%s\n' "$server" > "$addr_file"
fi
echo
"$bin/demo" "$server"
echo
echo "simplex-cli server-test $server"
"$bin/simplex-cli" server-test "$server"
