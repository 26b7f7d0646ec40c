-- eddy.window: window definitions (eddy.tumbling, eddy.hopping, eddy.sliding,
-- eddy.session) and the windowed aggregation they drive. Semantics follow
-- Kafka Streams; see CONTRACT.md "Grouped and windowed aggregation".
local _M = {}

local duration = require "eddy.duration"
local setmetatable, getmetatable, type, error = setmetatable, getmetatable, type, error

local Window = {}
Window.__index = Window
Window.__tostring = function(w) return "eddy." .. w.kind .. "{...}" end

function _M.is_window(w) return getmetatable(w) == Window end

local function opts_of(o, what)
    if type(o) ~= "table" then error(what .. ": expected a table of options", 3) end
    return o
end

local function dur(o, field, what, required)
    local v = o[field]
    if v == nil then
        if required then error(("%s: %s is required"):format(what, field), 4) end
        return nil
    end
    return duration.parse(v, what .. " " .. field)
end

local function common(o, what, w)
    w.grace = dur(o, "grace", what) or 0
    w.idle_advance = dur(o, "idle_advance", what)
    return setmetatable(w, Window)
end

--- TimeWindows.ofSizeAndGrace(size, grace)
function _M.tumbling(o)
    o = opts_of(o, "eddy.tumbling")
    local size = dur(o, "size", "eddy.tumbling", true)
    if size <= 0 then error("eddy.tumbling: size must be positive", 2) end
    return common(o, "eddy.tumbling", { kind = "tumbling", size = size, advance = size })
end

--- TimeWindows.ofSizeAndGrace(size, grace).advanceBy(advance)
function _M.hopping(o)
    o = opts_of(o, "eddy.hopping")
    local size = dur(o, "size", "eddy.hopping", true)
    local advance = dur(o, "advance", "eddy.hopping", true)
    if size <= 0 or advance <= 0 or advance > size then
        error("eddy.hopping: need 0 < advance <= size", 2)
    end
    return common(o, "eddy.hopping", { kind = "hopping", size = size, advance = advance })
end

--- SlidingWindows.ofTimeDifferenceAndGrace(diff, grace)
function _M.sliding(o)
    o = opts_of(o, "eddy.sliding")
    local diff = dur(o, "diff", "eddy.sliding", true)
    if diff <= 0 then error("eddy.sliding: diff must be positive", 2) end
    return common(o, "eddy.sliding", { kind = "sliding", diff = diff })
end

--- SessionWindows.ofInactivityGapAndGrace(gap, grace)
function _M.session(o)
    o = opts_of(o, "eddy.session")
    local gap = dur(o, "gap", "eddy.session", true)
    if gap <= 0 then error("eddy.session: gap must be positive", 2) end
    return common(o, "eddy.session", { kind = "session", gap = gap })
end

--- Build the function of a windowed aggregate node (see runtime.lua's build.aggregate).
--- ctx: { S = state, B = batch view, store = the node's store, nxt = downstream }.
function _M.build(node, ctx)
    error("windowed aggregations are not available yet (" .. node.window.kind .. ")", 0)
end

return _M
