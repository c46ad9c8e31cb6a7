#!/bin/sh
# `make demo`: starts the loopback SMP server on a free port (or uses
# SERVER=smp://... when given), prints the library version and crypto
# self-test, then runs `simplex-cli server-test` against the server.
set -eu
O=${O:-build}
bin="$O/bin"
"$bin/hello"

tmp=$(mktemp -d)
pid=""
cleanup() {
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
fi
"$bin/simplex-cli" server-test "$server"
