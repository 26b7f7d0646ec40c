-- eddy: the Lua API of eddy jobs. A script `return`s a job built with eddy.job.
local dsl = require "eddy.dsl"
local serde = require "eddy.serde"

local _M = {
    _VERSION = "0.1.0",
    job = dsl.job,
    null = serde.null,       -- JSON null (cjson.null)
}

return _M
