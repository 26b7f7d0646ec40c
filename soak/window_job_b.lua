-- soak/window_job_b.lua: the job of `make soak`, version B: the same results as
-- soak/window_job.lua (version A) written another way, so that a reload from
-- one to the other is a real change of code (another version hash) that must
-- not change a single output.
local eddy = require "eddy"

local SIZE, GRACE = 10000, 5000

local function checked(value)
   local n = type(value) == "table" and value.v or nil
   assert(type(n) == "number", "soak (B): the value has no numeric field v")
   return n
end

local job = eddy.job { name = "soak" }

local counts = job:source("soak-in", { value = "json" })
   :map_values(checked)
   :group_by_key()
   :window(eddy.tumbling { size = SIZE, grace = GRACE })
   :count { emit = "final", store = "counts" }

counts:to_stream()
   :map(function(key, n, rec)
      return ("%s@%d"):format(key, rec.window.start), tostring(math.floor(n))
   end)
   :to("soak-out")

job:example {
   input = { { "a", '{"v":1}', 1000 }, { "a", '{"v":2}', 9999 }, { "b", '{"v":3}', 12000 },
             { "a", '{"v":4}', 14999 }, { "a", '{"v":5}', 1000 }, { "c", '{"v":6}', 15000 },
             { "a", '{"v":7}', 2000 } },
   output = { ["soak-out"] = { { "a@0", "3" } } },
}

return job
