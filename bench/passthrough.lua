-- bench/passthrough.lua — scenario (b) of `make bench`: an eddy job that
-- copies every record of bench-in to bench-out-eddy unchanged (bytes in,
-- bytes out: no decoding).
local eddy = require "eddy"
local job = eddy.job { name = "bench-passthrough" }
job:source("bench-in"):to("bench-out-eddy")
return job
