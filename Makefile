# libsimplex - GNU make build. No generated build system.
#
#   make            build lib/libsimplex.a and lib/libsimplex.so.1.0.0
#   make check      install missing Debian packages, build with gcc and
#                   clang, run every test suite (also under ASan/UBSan)
#   make demo       build, then run the demo
#   make install    PREFIX=/usr/local DESTDIR= (headers, libraries, .pc)
#   make fuzz       build the libFuzzer harnesses with clang and run each
#   make bench      build and run the benchmarks
#
# Variables: CC, PREFIX, DESTDIR, O (object directory, default build),
# LIBOUT (where libraries go, default lib), SAN=1 (ASan+UBSan build).

VERSION_MAJOR := 0
VERSION_MINOR := 1
VERSION_PATCH := 0
VERSION       := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)
SONAME        := libsimplex.so.1

PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
O       ?= build
LIBOUT  ?= lib
PKG_CONFIG ?= pkg-config

DEPS_PC := libsodium libssl libcrypto sqlite3

# Package flags are looked up lazily so that `make check` can install the
# packages before anything needs them.
DEP_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(DEPS_PC) 2>/dev/null)
DEP_LIBS   = $(shell $(PKG_CONFIG) --libs $(DEPS_PC) 2>/dev/null) -lpthread
TEST_LIBS  = $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null || echo -lcmocka)

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wpointer-arith -Wvla -Wformat=2
OPT     ?= -O2 -g
ifeq ($(SAN),1)
OPT     := -O1 -g -fno-omit-frame-pointer
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all
endif
BASE_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L $(OPT) $(SANFLAGS) \
              -Iinclude -Isrc $(DEP_CFLAGS)
LIB_CFLAGS  = $(BASE_CFLAGS) $(WARN) -fPIC -fvisibility=hidden \
              -DSIMPLEX_BUILDING_LIBRARY $(CFLAGS)
TEST_CFLAGS = $(BASE_CFLAGS) -Wall -Wextra -Werror -Itests/support \
              -DVECTOR_DIR='"$(CURDIR)/tests/vectors"' $(CFLAGS)

LIB_SRCS  := $(sort $(wildcard src/common/*.c src/crypto/*.c \
                               src/client/*.c src/agent/*.c))
LIB_OBJS  := $(LIB_SRCS:%.c=$(O)/%.o)
STATIC    := $(LIBOUT)/libsimplex.a
SHARED    := $(LIBOUT)/libsimplex.so.$(VERSION)

TEST_SUPPORT_SRCS := $(sort $(wildcard tests/support/*.c))
TEST_SUPPORT_OBJS := $(TEST_SUPPORT_SRCS:%.c=$(O)/%.o)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(O)/tests/%)
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
REPLAY_BINS := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=$(O)/fuzz/replay_%)
EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
EXAMPLE_BINS := $(EXAMPLE_SRCS:examples/%.c=$(O)/bin/%)
SERVER_SRCS := $(sort $(wildcard tests/server/*.c))
SERVER_BIN := $(if $(SERVER_SRCS),$(O)/bin/smp-test-server)
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(O)/bench/%)

.PHONY: all libs tests replay examples benches check demo tsan install \
        uninstall clean fuzz bench deps
.DEFAULT_GOAL := all
.SECONDARY:

all: libs examples $(SERVER_BIN)

libs: $(STATIC) $(SHARED)

tests: $(UNIT_BINS) $(SERVER_BIN) $(EXAMPLE_BINS)
replay: $(REPLAY_BINS)
examples: $(EXAMPLE_BINS)
benches: $(BENCH_BINS)

$(O)/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(LIB_CFLAGS) -MMD -MP -c $< -o $@

$(O)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -MMD -MP -c $< -o $@

$(STATIC): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

$(SHARED): $(LIB_OBJS) simplex.map
	@mkdir -p $(dir $@)
	$(CC) $(SANFLAGS) -shared -Wl,-soname,$(SONAME) \
	    -Wl,--version-script=simplex.map -Wl,--no-undefined \
	    -o $@ $(LIB_OBJS) $(DEP_LIBS)
	ln -sf libsimplex.so.$(VERSION) $(LIBOUT)/$(SONAME)
	ln -sf $(SONAME) $(LIBOUT)/libsimplex.so

$(O)/tests/test_%: $(O)/tests/unit/test_%.o $(TEST_SUPPORT_OBJS) $(STATIC)
	$(CC) $(SANFLAGS) -o $@ $< $(TEST_SUPPORT_OBJS) $(STATIC) \
	    $(TEST_LIBS) $(DEP_LIBS)

$(O)/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< tests/fuzz/replay_main.c $(STATIC) \
	    $(DEP_LIBS)

$(O)/bin/%: examples/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< $(STATIC) $(DEP_LIBS)

# the loopback SMP server used by the tests and the demo
$(O)/bin/smp-test-server: $(SERVER_SRCS) $(wildcard tests/server/*.h) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $(SERVER_SRCS) $(STATIC) $(DEP_LIBS)

$(O)/bench/%: bench/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< $(STATIC) $(DEP_LIBS)

# ---- set-up and the two commands of the README ----

deps:
	@sh scripts/deps.sh

check: deps
	@sh scripts/check.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@O=$(O) SERVER=$(SERVER) sh scripts/demo.sh

bench: deps
	@$(MAKE) --no-print-directory benches
	@for b in $(BENCH_BINS); do echo "== $$b"; $$b || exit 1; done

# ThreadSanitizer over the suites that run threads (not part of check:
# the instrumented timing is too slow for a few time-bounded assertions
# on a loaded 2-core machine).
TSAN_SUITES ?= client tls agent cli examples session server socks5
tsan: deps
	@$(MAKE) --no-print-directory O=build/tsan LIBOUT=build/tsan/lib \
	    SANFLAGS=-fsanitize=thread OPT="-O1 -g" tests
	@fail=0; for t in $(TSAN_SUITES); do \
	    TSAN_OPTIONS="halt_on_error=1" build/tsan/tests/test_$$t \
	        >build/tsan/test_$$t.log 2>&1 && echo "  ok    tsan test_$$t" || \
	        { echo "  FAIL  tsan test_$$t (build/tsan/test_$$t.log)"; fail=1; }; \
	done; exit $$fail

# ---- fuzzing (clang + libFuzzer) ----

FUZZ_TIME ?= 30
FUZZ_CC   ?= clang
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=build/fuzz/fuzz_%)

# The instrumented library is built by a sub-make whose own $(STATIC) rule
# makes it; only the outer make may carry this recursive rule.
ifneq ($(O),build/fuzz)
.PHONY: build/fuzz/lib/libsimplex.a
build/fuzz/lib/libsimplex.a:
	$(MAKE) --no-print-directory -j2 O=build/fuzz LIBOUT=build/fuzz/lib \
	    CC=$(FUZZ_CC) \
	    CFLAGS="-fsanitize=fuzzer-no-link,address,undefined" \
	    build/fuzz/lib/libsimplex.a
endif

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/lib/libsimplex.a
	$(FUZZ_CC) $(BASE_CFLAGS) -g -O1 -Wall -Wextra -Werror \
	    -fsanitize=fuzzer,address,undefined -o $@ $< \
	    build/fuzz/lib/libsimplex.a $(DEP_LIBS)

fuzz: deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do \
	    n=$${f##*/fuzz_}; mkdir -p build/fuzz/corpus/$$n; \
	    echo "== $$n ($(FUZZ_TIME) s)"; \
	    $$f -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	        build/fuzz/corpus/$$n tests/fuzz/corpus/$$n || exit 1; \
	done

# ---- installation ----

install: libs
	install -d $(DESTDIR)$(INCDIR)/simplex $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 include/simplex/*.h $(DESTDIR)$(INCDIR)/simplex/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf libsimplex.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libsimplex.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' pkgconfig/simplex.pc.in \
	    > $(DESTDIR)$(LIBDIR)/pkgconfig/simplex.pc

uninstall:
	rm -rf $(DESTDIR)$(INCDIR)/simplex
	rm -f $(DESTDIR)$(LIBDIR)/libsimplex.a \
	      $(DESTDIR)$(LIBDIR)/libsimplex.so.$(VERSION) \
	      $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libsimplex.so \
	      $(DESTDIR)$(LIBDIR)/pkgconfig/simplex.pc

clean:
	rm -rf build lib

-include $(LIB_OBJS:.o=.d) $(TEST_SUPPORT_OBJS:.o=.d) \
         $(UNIT_SRCS:tests/%.c=$(O)/tests/%.d)
