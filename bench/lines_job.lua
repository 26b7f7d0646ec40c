-- bench/lines_job.lua: bench scenario l. File mode over `--input-format lines`
-- (each line a value, no key): upper-case every line, keep those longer than
-- 40 bytes. The engine alone: no JSON, no state, output to /dev/null. Also the
-- job of the start-up scenario s (one line of input).
local eddy = require "eddy"

local job = eddy.job { name = "bench-lines" }

job:source("lines")
   :map_values(string.upper)
   :filter(function(k, v) return #v > 40 end)
   :to("bench-out-lines")

return job
