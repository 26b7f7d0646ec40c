#!/usr/bin/python3
"""bench/jitp_top.py FILE [N]: the top N (10) source lines of a LuaJIT profile
written by EDDY_JIT_P=Fl...,FILE (jit.p: functions, each with its lines
below it, "  -- "), as shares of all samples: a line's share of its
function times the function's share. Raw counts (mode "r", e.g.
EDDY_JIT_P=Fli1m0r,FILE: 1 ms samples, every line, counts) are summed
exactly; percentages (the default) are rounded by jit.p and lines under
its 3 % minimum are missing.
"""
import collections
import re
import sys


def main():
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    fn = None
    fn_v = {}
    lines = collections.Counter()
    raw = False
    for line in open(path):
        m = re.match(r"^(\s*--\s+)?\s*(\d+)(%?)\s+(.*?)\s*$", line)
        if not m:
            continue
        v, name = float(m.group(2)), m.group(4)
        raw = raw or not m.group(3)
        if m.group(1):
            if fn is not None:
                lines[(name, fn)] += v if raw else fn_v[fn] * v / 100.0
        else:
            fn = name
            fn_v[fn] = fn_v.get(fn, 0) + v
    total = sum(fn_v.values()) or 1.0
    print("%s: %s samples" % (path, "%d" % total if raw else "percentages,"))
    print("functions:")
    for f, v in sorted(fn_v.items(), key=lambda x: -x[1])[:n]:
        print("  %5.1f%%  %s" % (100.0 * v / total, f))
    print("top %d lines (share of all samples):" % n)
    for (ln, f), v in lines.most_common(n):
        print("  %5.1f%%  %-28s (in %s)" % (100.0 * v / total, ln, f))


if __name__ == "__main__":
    main()
