-- scripts/lib/timeutil.lua: turn the timestamps found in logs and events into
-- epoch milliseconds (UTC). A job script loads it with `require "lib.timeutil"`:
-- eddy puts the script's own directory on package.path, so any module next to
-- a script (or in a folder next to it) can be required.
local floor, tonumber = math.floor, tonumber
local _M = {}

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
                 Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
local function days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = floor(y / 400)
    local yoe = y - era * 400
    local mp = (m + 9) % 12                       -- March = 0
    local doy = floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
end

--- Epoch ms for a UTC wall-clock time.
function _M.utc_ms(y, mo, d, h, mi, s)
    return ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + floor(s * 1000 + 0.5)
end

--- "12/Mar/2024:09:15:02 +0100" (Apache/nginx %t) -> epoch ms, or nil.
function _M.clf(s)
    local d, mon, y, h, mi, sec, sign, oh, om =
        s:match("^(%d%d)/(%a%a%a)/(%d%d%d%d):(%d%d):(%d%d):(%d%d) ([+-])(%d%d)(%d%d)$")
    if not d or not MONTHS[mon] then return nil end
    local offset = (tonumber(oh) * 60 + tonumber(om)) * 60000
    if sign == "-" then offset = -offset end
    return _M.utc_ms(tonumber(y), MONTHS[mon], tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)) - offset
end

--- "2024-03-12T09:15:02.123Z" or "...+01:00" (ISO 8601 / RFC 3339) -> epoch ms, or nil.
function _M.iso8601(s)
    if type(s) ~= "string" then return nil end
    local y, mo, d, h, mi, sec, zone =
        s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d%.?%d*)(.*)$")
    if not y then return nil end
    local offset = 0
    if zone ~= "Z" then
        local sign, oh, om = zone:match("^([+-])(%d%d):?(%d%d)$")
        if not sign then return nil end
        offset = (tonumber(oh) * 60 + tonumber(om)) * 60000
        if sign == "-" then offset = -offset end
    end
    return _M.utc_ms(tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)) - offset
end

return _M
