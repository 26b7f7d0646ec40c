# fuzz/fuzz.mk — libFuzzer harnesses (clang, ASan + UBSan); included by the Makefile.
#   make fuzz-build    build/fuzz/<harness> for every fuzz/fuzz_*.c
#   make fuzz-smoke    each harness briefly on its checked-in corpus (TAP; fails on a crash)
#   make fuzz          a long run: FUZZ_SECONDS (600) per harness, new inputs kept in
#                      build/fuzz/corpus-<harness>/ (the checked-in corpus is read only)
# The host objects are compiled again with clang into build/fuzz/obj/ (build/*.o are gcc's).

# clang-14 and libclang-rt-14-dev (libFuzzer) are Debian packages
FUZZ_CC      ?= clang-14
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS   = -O1 -g -fno-omit-frame-pointer -std=gnu11 -D_GNU_SOURCE -Wall -Wextra \
                -Wno-unused-parameter $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
                $(shell pkg-config --cflags rdkafka luajit lmdb libcrypto libmicrohttpd 2>/dev/null)
FUZZ_LDLIBS   = $(shell pkg-config --libs rdkafka luajit lmdb libcrypto libmicrohttpd 2>/dev/null) \
                -lpthread -lm
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 15

FUZZ_HOST_SRCS := $(wildcard host/eddy_*.c host/lib_*.c)
FUZZ_OBJS      := $(FUZZ_HOST_SRCS:host/%.c=build/fuzz/obj/%.o)
FUZZ_NAMES     := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_BINS      := $(FUZZ_NAMES:%=build/fuzz/%)

# Harnesses that #include a host .c file (to reach its static parsers) link
# every host object but that one.
FUZZ_INCLUDED_changelog = build/fuzz/obj/eddy_changelog.o
FUZZ_INCLUDED_deploy    = build/fuzz/obj/eddy_deploy.o

.PHONY: fuzz-build fuzz-smoke fuzz
.SECONDARY: $(FUZZ_OBJS)

build/fuzz/obj/%.o: host/%.c host/*.h
	@mkdir -p build/fuzz/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

build/fuzz/%: fuzz/fuzz_%.c $(FUZZ_OBJS) host/*.h host/test/*.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Ihost -DEDDY_FUZZ_ROOT=\"$(CURDIR)\" -fsanitize=fuzzer -Wl,-E -o $@ $< \
	    $(filter-out $(FUZZ_INCLUDED_$*),$(FUZZ_OBJS)) $(FUZZ_LDLIBS)

fuzz-build: $(FUZZ_BINS)

fuzz-smoke: fuzz-build
	@sh fuzz/smoke.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_NAMES)

fuzz: fuzz-build
	@sh fuzz/smoke.sh --long $(FUZZ_SECONDS) $(FUZZ_NAMES)
