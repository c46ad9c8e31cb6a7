#!/bin/sh
# `make check`: builds libsimplex with the chosen compiler and the other one
# (gcc and clang), runs every unit-test suite with each and again under
# AddressSanitizer + UndefinedBehaviorSanitizer, replays the fuzz corpora,
# and checks the exported symbols, the public headers and the pkg-config
# file. Ends with one line "N passed, N failed" totalling everything.
set -u

MAKE=${MAKE:-make}
CC=${CC:-cc}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
LOGDIR=build/check-logs
mkdir -p "$LOGDIR"

passed=0
failed=0
failures=""

note_fail() {
    failed=$((failed + $2))
    failures="$failures
  $1"
}

# run a single check command: counts as one test
check_one() {
    label=$1
    shift
    log="$LOGDIR/$(echo "$label" | tr -c 'A-Za-z0-9_.-' '_').log"
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "  ok    $label"
    else
        note_fail "$label (see $log)" 1
        echo "  FAIL  $label (see $log)"
        sed 's/^/        /' "$log" | tail -n 20
    fi
}

# run a cmocka test binary; count its tests
run_cmocka() {
    label=$1
    bin=$2
    log="$LOGDIR/$(echo "$label" | tr -c 'A-Za-z0-9_.-' '_').log"
    "$bin" >"$log" 2>&1
    rc=$?
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    p=${p:-0}
    f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # crashed or failed outside a test
    fi
    if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
        f=1 # ran no test: that is a failure too
    fi
    passed=$((passed + p))
    if [ "$f" -gt 0 ]; then
        note_fail "$label: $f failed (see $log)" "$f"
        echo "  FAIL  $label: $p passed, $f failed (see $log)"
        grep -E '^\[  (FAILED|ERROR) |ERROR|Sanitizer|runtime error' "$log" \
            | head -n 20 | sed 's/^/        /'
    else
        echo "  ok    $label: $p passed"
    fi
}

run_units() {
    tag=$1
    dir=$2
    for t in "$dir"/tests/test_*; do
        [ -x "$t" ] || continue
        run_cmocka "$tag $(basename "$t")" "$t"
    done
}

run_replays() {
    tag=$1
    dir=$2
    for r in "$dir"/fuzz/replay_*; do
        [ -x "$r" ] || continue
        name=${r##*/replay_}
        check_one "$tag fuzz-corpus $name" "$r" "tests/fuzz/corpus/$name"
    done
}

build() {
    label=$1
    shift
    check_one "build $label" $MAKE --no-print-directory -j"$JOBS" "$@"
}

case "$($CC --version 2>/dev/null | head -n 1)" in
*clang*) primary=clang other=gcc ;;
*) primary=gcc other=clang ;;
esac

echo "== build and unit tests with $CC ($primary)"
before=$failed
build "$primary" CC="$CC" all tests replay
if [ "$failed" -eq "$before" ]; then
    run_units "$primary" build
fi

echo "== build and unit tests with $other"
before=$failed
build "$other" CC="$other" O="build/$other" LIBOUT="build/$other/lib" \
    libs tests
if [ "$failed" -eq "$before" ]; then
    run_units "$other" "build/$other"
fi

echo "== unit tests and fuzz corpora under ASan + UBSan ($CC)"
before=$failed
build "asan+ubsan" CC="$CC" O=build/san LIBOUT=build/san/lib SAN=1 \
    tests replay
if [ "$failed" -eq "$before" ]; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    export ASAN_OPTIONS UBSAN_OPTIONS
    run_units "asan+ubsan" build/san
    run_replays "asan+ubsan" build/san
    unset ASAN_OPTIONS UBSAN_OPTIONS
fi

echo "== library surface"
check_one "exported symbols are simplex_* tagged SIMPLEX_1" \
    sh tests/abi/check-exports.sh lib/libsimplex.so
check_one "public headers compile alone (C and C++)" \
    sh tests/abi/check-headers.sh "$CC"
check_one "install + pkg-config build of examples/hello.c" \
    sh tests/abi/check-pkgconfig.sh

if [ "$failed" -gt 0 ]; then
    echo "failures:$failures"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
