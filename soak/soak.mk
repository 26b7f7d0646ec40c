# soak/soak.mk: `make soak` (not in CI). A windowed job under steady load and
# faults (kill -9, empty state dirs, broker down/up, reloads, malformed input)
# for SOAK_MINUTES (30) minutes, checked against a reference at the end;
# samples, events, logs and the plot in build/soak/. See soak/README.md.
SOAK_MINUTES ?= 30

.PHONY: soak
soak: all
	@sh tools/deps.sh gnuplot-nox
	SOAK_MINUTES=$(SOAK_MINUTES) /usr/bin/python3 soak/soak.py
