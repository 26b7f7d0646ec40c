-- bench/passthrough.lua — scenario (b) of `make bench`: an eddy job that
-- copies every record of bench-in to its output topic unchanged (bytes in,
-- bytes out: no decoding).
local eddy = require "eddy"
local out = os.getenv("BENCH_OUT") or "bench-out-eddy"   -- bench.py: one output topic per round
local job = eddy.job { name = "bench-passthrough" }
job:source("bench-in"):to(out)
return job
