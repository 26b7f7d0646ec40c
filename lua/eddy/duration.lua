-- eddy.duration: durations in ms, from numbers or strings such as "250ms", "30s", "5m", "1h".
local _M = {}

local tonumber, type, error = tonumber, type, error
local units = { ms = 1, s = 1000, m = 60000, h = 3600000, d = 86400000 }

function _M.parse(d, what)
    if type(d) == "number" then
        if d < 0 then error((what or "duration") .. " must not be negative", 3) end
        return d
    end
    if type(d) == "string" then
        local n, u = d:match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
        if n then
            local mul = units[u == "" and "ms" or u]
            if mul then return tonumber(n) * mul end
        end
    end
    error(("%s: bad duration %q (use ms or a string like \"30s\", \"5m\")"):format(what or "duration", tostring(d)), 3)
end

return _M
