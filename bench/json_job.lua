-- bench/json_job.lua — scenarios (c) and (e) of `make bench`: decode each
-- JSON value, keep the records whose n is even, emit a new JSON value.
-- bench/json_job.py is the same job written on confluent_kafka (scenario d).
local eddy = require "eddy"
local out = os.getenv("BENCH_OUT") or "bench-out-json"   -- bench.py: one output topic per round
local job = eddy.job { name = "bench-json" }
job:source("bench-in", { value = "json" })
   :filter(function(k, v) return v.n % 2 == 0 end)
   :map_values(function(v) return { id = v.id, n = v.n, ok = true } end)
   :to(out, { value = "json" })
return job
