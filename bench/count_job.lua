-- bench/count_job.lua: bench scenario r (recovery). A count per key in Kafka
-- mode, as light as a stateful job gets: string keys, values not decoded, the
-- count written as a number. The bench fills its store with 1M distinct keys,
-- kills it (kill -9) and times restarts: on the same --state-dir, then on an
-- empty one (the store restored from <app>-counts-changelog).
-- Topics come from BENCH_IN / BENCH_OUT (bench.py sets both).
local eddy = require "eddy"

local job = eddy.job { name = "bench-count" }

job:source(os.getenv("BENCH_IN") or "bench-in-r", { key = "string", value = "bytes" })
   :group_by_key()
   :count { store = "counts" }
   :to_stream()
   :to(os.getenv("BENCH_OUT") or "bench-out-r", { key = "string", value = "number" })

return job
