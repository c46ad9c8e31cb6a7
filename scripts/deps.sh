#!/bin/sh
# Installs the Debian packages libsimplex needs to build and test, when they
# are missing. As root it runs apt-get; otherwise it prints the exact
# command to run and fails.
set -eu

PKGS="make gcc g++ clang libclang-rt-14-dev pkg-config libsodium-dev \
libssl-dev libsqlite3-dev libcmocka-dev microsocks"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "libsimplex: missing Debian packages:$missing" >&2
    echo "Install them as root with:" >&2
    echo "  apt-get update && $cmd" >&2
    exit 1
fi
echo "libsimplex: installing missing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
