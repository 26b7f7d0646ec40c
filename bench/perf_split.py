#!/usr/bin/python3
"""bench/perf_split.py PERF.DATA [TOP]: a perf profile (perf record -g) of an
eddy process, split by where the time went (self time: the sampled
instruction), as in bench/README.md's "Profiles":

  liblmdb                 LMDB (B-tree search, page allocation, copies)
  libluajit: interpreter  the bytecode interpreter (lj_vm_*, lj_BC_*, lj_ff_*
                          fast functions)
  libluajit: ...          the runtime, by symbol: GC and allocator,
                          strings (interning, buffers), tables, compilers
                          (trace compiler, parser), C API and libraries
                          (lua_*, luaL_*), other
  [JIT]                   machine code compiled by LuaJIT's trace compiler
                          (perf's "[JIT] tid N" or anonymous executable maps)
  libc, librdkafka, eddy  (eddy: the C host, build/eddy)
  kernel                  [kernel.kallsyms]
  vdso                    [vdso]: clock_gettime/gettimeofday without a syscall
  other                   the rest (libcrypto, ld.so, ...)

then by thread (comm: eddy's main thread vs librdkafka's rdk:* threads) and
the TOP (25) symbols. Symbol names inside the stripped Debian libraries need
the unstripped builds of bench/symlibs.sh on LD_LIBRARY_PATH when recording;
without them the split by library still holds, and LuaJIT's addresses
count as "libluajit: ?".
"""
import collections
import re
import subprocess
import sys


def group(dso, sym):
    if dso.startswith("[JIT]") or dso in ("//anon", "[anon]") or dso.startswith("perf-"):
        return "[JIT]"
    if dso in ("[unknown]",) and sym.startswith("0x"):
        return "[JIT]"
    if "luajit" in dso:
        if sym.startswith("0x"):
            return "libluajit: ?"
        if sym.startswith(("lj_vm_", "lj_BC_", "lj_ff_", "lj_fff_", "lj_cont_")):
            return "libluajit: interpreter"
        if sym.startswith(("gc_", "lj_gc_", "lj_alloc_", "lj_mem_", "propagatemark",
                           "atomic", "mark")):
            return "libluajit: GC, allocator"
        if sym.startswith(("lj_str_", "lj_buf_", "lj_strfmt", "lj_strscan", "hash_", "str_")):
            return "libluajit: strings"
        if sym.startswith(("lj_tab_", "lj_meta_", "tab_")):
            return "libluajit: tables"
        if sym.startswith(("lj_record", "rec_", "lj_asm", "asm_", "lj_opt", "lj_trace",
                           "trace_", "lj_snap", "lj_ir_", "lj_crecord", "crec_", "lj_mcode",
                           "lj_bcread", "lj_parse", "lj_lex", "parse_", "expr_", "lex_",
                           "bcemit", "lj_fold", "fold_", "split_", "loop_")):
            return "libluajit: compilers (trace, parser)"
        if sym.startswith(("lua_", "luaL_", "luaJIT_", "lj_lib_", "lib_")):
            return "libluajit: C API, libraries"
        return "libluajit: other"
    if "lmdb" in dso:
        return "liblmdb"
    if "rdkafka" in dso:
        return "librdkafka"
    if dso.startswith("libc.so") or dso.startswith("libc-"):
        return "libc"
    if dso == "[vdso]":
        return "vdso (clock reads)"
    if dso == "[kernel.kallsyms]" or dso.startswith("[kernel"):
        return "kernel"
    if dso == "eddy":
        return "eddy"
    return "other (%s)" % dso


def main():
    data = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                          "--sort", "comm,dso,sym", "-g", "none", "--percent-limit", "0",
                          "--field-separator", "\t"],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    samples = "?"
    for line in out.splitlines():
        m = re.match(r"# Samples: (\S+)\s+of event '([^']*)'", line)
        if m:
            samples = "%s samples of %s" % (m.group(1), m.group(2))
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 4:
            continue
        pct = float(parts[0].strip().rstrip("%"))
        comm, dso, sym = parts[1].strip(), parts[2].strip(), parts[3].strip()
        sym = re.sub(r"^\[[.k]\]\s+", "", sym)
        rows.append((pct, comm, dso, sym))
    total = sum(r[0] for r in rows) or 1.0
    groups = collections.Counter()
    comms = collections.Counter()
    for pct, comm, dso, sym in rows:
        groups[group(dso, sym)] += pct
        comms[re.sub(r"\d+$", "N", comm) if comm.startswith("rdk:") else comm] += pct
    print("split by shared object (%% of samples), %s (%s):" % (data, samples))
    lj = sum(p for g, p in groups.items() if g.startswith("libluajit"))
    for g, pct in groups.most_common():
        print("  %6.1f%%  %s" % (100.0 * pct / total, g))
    print("  (libluajit in all: %.1f%%)" % (100.0 * lj / total))
    print("by thread:")
    for c, pct in comms.most_common(8):
        print("  %6.1f%%  %s" % (100.0 * pct / total, c))
    if len(comms) > 1:
        main_comm = comms.most_common(1)[0][0]
        mg = collections.Counter()
        for pct, comm, dso, sym in rows:
            if comm == main_comm:
                mg[group(dso, sym)] += pct
        mt = sum(mg.values()) or 1.0
        print("the %s thread alone (%% of its samples):" % main_comm)
        for g, pct in mg.most_common():
            if pct / mt >= 0.005:
                print("  %6.1f%%  %s" % (100.0 * pct / mt, g))
    print("top symbols:")
    syms = collections.Counter()
    for pct, comm, dso, sym in rows:
        g = group(dso, sym)
        syms[(g, "(JIT-compiled code)" if g == "[JIT]" else sym)] += pct
    for (g, sym), pct in syms.most_common(top):
        print("  %6.1f%%  %-24s %s" % (100.0 * pct / total, g, sym))


if __name__ == "__main__":
    main()
