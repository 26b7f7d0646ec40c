#!/bin/sh
# make bench: build the C passthrough, then run every scenario on one
# `eddy broker` (bench/bench.py, which also runs bench/reload.sh as scenario
# v) and print the summary table, also saved to build/bench/summary.txt. A
# missed target prints FAIL but never fails make: only a broken run (nothing
# measured) does. See bench/README.md.
set -e
cd "$(dirname "$0")/.."
mkdir -p build/bench
cc -O2 -g -Wall -Wextra -o build/bench/passthrough bench/passthrough.c \
    $(pkg-config --cflags --libs rdkafka)
# confluent_kafka is installed for Debian's python only
/usr/bin/python3 bench/bench.py
