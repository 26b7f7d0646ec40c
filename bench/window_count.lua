-- bench/window_count.lua: bench scenario f. A tumbling-window count per key
-- (1 min windows, Kafka Streams' TimeWindows.ofSizeWithNoGrace), every update
-- forwarded (emit = "update"), over the 100k-key input topic bench-in-100k.
-- The output topic comes from BENCH_OUT (bench.py gives each run its own).
local eddy = require "eddy"

local job = eddy.job { name = "bench-window-count" }

job:source("bench-in-100k")
   :group_by_key()
   :window(eddy.tumbling { size = "1m" })
   :count { store = "window-counts" }
   :to_stream()
   :map_values(tostring)
   :to(os.getenv("BENCH_OUT") or "bench-out-f")

return job
