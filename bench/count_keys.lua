-- bench/count_keys.lua: bench scenario g. A count per key in file mode; the
-- bench input holds 1M distinct keys, so the store ends with 1M entries. The
-- bench then runs it again on one record against the same --state-dir to time
-- reopening the state.
local eddy = require "eddy"

local job = eddy.job { name = "bench-count-keys" }

job:source("bench-in")
   :group_by_key()
   :count { store = "counts" }
   :to_stream()
   :map_values(tostring)
   :to("bench-out-g")

return job
