# eddy — Kafka Streams as one small C program with Lua jobs.
# make deps | make | make run | make test | make bench | make install PREFIX=...

PREFIX   ?= /usr/local
CC       ?= cc
PKGS      = rdkafka luajit lmdb libcrypto libmicrohttpd
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE
CFLAGS   += $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
LDFLAGS  += -Wl,-E          # export eddy_* symbols to LuaJIT's ffi.C

DEB_PKGS  = librdkafka-dev libluajit-5.1-dev luajit liblmdb-dev lua-busted lua-cjson \
            kcat python3-confluent-kafka pkg-config libssl-dev libmicrohttpd-dev \
            curl chromium clang-14 libclang-rt-14-dev

SRCS := $(wildcard host/eddy_*.c host/lib_*.c)
OBJS := $(SRCS:host/%.c=build/%.o)
TESTS := $(patsubst host/test/%.c,build/test/%,$(wildcard host/test/t_*.c))

.PHONY: all deps run test check spec bench install clean asan asan-test

# make asan: the same program and C tests built with AddressSanitizer and UBSan
# (build/asan/); tools/asan.sh runs the C tests and the file-mode specs on them.
ASAN_CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=undefined
ASAN_OBJS  := $(SRCS:host/%.c=build/asan/%.o)
ASAN_TESTS := $(patsubst host/test/%.c,build/asan/test/%,$(wildcard host/test/t_*.c))

all: deps build/eddy

deps:
	@sh tools/deps.sh $(DEB_PKGS)

build/%.o: host/%.c host/*.h | build
	$(CC) $(CFLAGS) -c -o $@ $<

build/eddy: build/main.o $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

build:
	@mkdir -p build/test

build/test/%: host/test/%.c $(OBJS) host/test/*.h | build
	$(CC) $(CFLAGS) -Ihost $(LDFLAGS) -o $@ $< $(OBJS) $(LDLIBS)

build/asan/%.o: host/%.c host/*.h
	@mkdir -p build/asan/test
	$(CC) $(CFLAGS) $(ASAN_CFLAGS) -c -o $@ $<

build/asan/eddy: build/asan/main.o $(ASAN_OBJS)
	$(CC) $(ASAN_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

build/asan/test/%: host/test/%.c $(ASAN_OBJS) host/test/*.h
	@mkdir -p build/asan/test
	$(CC) $(CFLAGS) $(ASAN_CFLAGS) -Ihost $(LDFLAGS) -o $@ $< $(ASAN_OBJS) $(LDLIBS)

asan: deps build/asan/eddy $(ASAN_TESTS)

asan-test: asan
	@sh tools/asan.sh $(ASAN_TESTS)

-include fuzz/fuzz.mk
-include soak/soak.mk

run: all
	@sh scripts/demo.sh

check: all $(TESTS)
	@for t in $(TESTS); do echo "== $$t"; $$t > build/check.tap || { grep -v '^ok' build/check.tap; exit 1; }; grep -v '^ok' build/check.tap; done

test: all asan $(TESTS)
	@sh tools/test.sh $(TESTS)

bench: all
	@sh bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/eddy/lua/eddy
	install -m 755 build/eddy $(DESTDIR)$(PREFIX)/bin/eddy
	install -m 644 lua/eddy/*.lua $(DESTDIR)$(PREFIX)/share/eddy/lua/eddy/

clean:
	rm -rf build
