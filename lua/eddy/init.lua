-- eddy: the Lua API of eddy jobs. A script `return`s a job built with eddy.job.
local dsl = require "eddy.dsl"
local serde = require "eddy.serde"
local window = require "eddy.window"
local join = require "eddy.join"

local _M = {
    _VERSION = "0.1.0",
    job = dsl.job,
    null = serde.null,       -- JSON null (cjson.null)
    tumbling = window.tumbling,
    hopping = window.hopping,
    sliding = window.sliding,
    session = window.session,
    join_window = join.join_window,
}

return _M
