-- soak/window_job.lua: the job of `make soak` (soak/soak.py), version A.
--
-- Clicks per key per 10 s tumbling window, grace 5 s, one final result per
-- window (emit = "final", Kafka Streams' suppress(untilWindowCloses)).
-- Input: soak-in, key = a key name, value = JSON {"v": N}. A value that is not
-- JSON fails in the serde (DLQ stage "deserialize"); JSON without a numeric
-- "v" fails in map_values below (DLQ stage "process"). Output: soak-out,
-- key "<key>@<window start ms>", value the count as decimal text.
--
-- soak/window_job_b.lua is an equivalent version B (other code, the same
-- results): the soak alternates the two through hot reloads.
local eddy = require "eddy"

local job = eddy.job { name = "soak" }

job:source("soak-in", { value = "json" })
   :map_values(function(v)
      if type(v) ~= "table" or type(v.v) ~= "number" then
         error("soak: the value has no numeric field v")
      end
      return v.v
   end)
   :group_by_key()
   :window(eddy.tumbling { size = "10s", grace = "5s" })
   :count { store = "counts", emit = "final" }
   :to_stream()
   :map(function(k, n, rec)
      return k .. "@" .. string.format("%d", rec.window.start), string.format("%d", n)
   end)
   :to("soak-out")

-- The gate every load runs (eddy run, each reload): a window closes at stop + grace.
job:example {
   input = { { "a", '{"v":1}', 1000 }, { "a", '{"v":2}', 9999 }, { "b", '{"v":3}', 12000 },
             { "a", '{"v":4}', 14999 }, { "a", '{"v":5}', 1000 }, { "c", '{"v":6}', 15000 },
             { "a", '{"v":7}', 2000 } },
   output = { ["soak-out"] = { { "a@0", "3" } } },
}

return job
