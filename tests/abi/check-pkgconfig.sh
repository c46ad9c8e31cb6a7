#!/bin/sh
# Installs into a temporary DESTDIR, then builds examples/hello.c using
# only `pkg-config --cflags --libs simplex` against that tree, dynamically
# and statically, and runs both programs.
set -eu
make=${MAKE:-make}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=/usr/local
$make --no-print-directory install DESTDIR="$tmp/root" PREFIX="$prefix" >/dev/null
export PKG_CONFIG_SYSROOT_DIR="$tmp/root"
export PKG_CONFIG_LIBDIR="$tmp/root$prefix/lib/pkgconfig:$(pkg-config --variable pc_path pkg-config)"
cflags=$(pkg-config --cflags simplex)
libs=$(pkg-config --libs simplex)
slibs=$(pkg-config --static --libs simplex)
echo "cflags: $cflags"
echo "libs:   $libs"
${CC:-cc} -std=c11 -Wall -Wextra -Werror $cflags examples/hello.c -o "$tmp/hello" $libs
LD_LIBRARY_PATH="$tmp/root$prefix/lib" "$tmp/hello"
# the dynamic program must really use the installed shared library
LD_LIBRARY_PATH="$tmp/root$prefix/lib" ldd "$tmp/hello" | grep -q "$tmp/root$prefix/lib/libsimplex.so.1"
${CC:-cc} -std=c11 -Wall -Wextra -Werror $cflags examples/hello.c -o "$tmp/hello-static" \
    "$tmp/root$prefix/lib/libsimplex.a" $(echo "$slibs" | sed 's/-lsimplex//')
"$tmp/hello-static"
$make --no-print-directory uninstall DESTDIR="$tmp/root" PREFIX="$prefix" >/dev/null
[ ! -e "$tmp/root$prefix/lib/libsimplex.so.1" ] || { echo "uninstall left files"; exit 1; }
echo "pkg-config build, dynamic and static, ok"
