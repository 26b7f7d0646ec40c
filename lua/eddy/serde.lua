-- eddy.serde: turning record bytes into Lua values and back.
-- "string" and "bytes" keep the bytes; "json" uses lua-cjson; "number" is the
-- value's decimal text; a table {encode=fn, decode=fn} is a custom serde.
local _M = {}

local type, tostring, tonumber, error, pcall = type, tostring, tonumber, error, pcall
local find = string.find
-- eddy.json (host/lib_json.c) writes integers exactly and keeps [] an array;
-- lua-cjson is the fallback outside the host (plain luajit).
local ok_json, ejson = pcall(require, "eddy.json")
local cjson = require "cjson"
local json_decode, json_encode, json_null
if ok_json then
    json_decode, json_encode, json_null = ejson.decode, ejson.encode, ejson.null
else
    local safe = require "cjson.safe"
    json_decode, json_encode, json_null = safe.decode, safe.encode, cjson.null
end

local function identity_decode(s) return s end
local function string_encode(v)
    local t = type(v)
    if t == "string" then return v end
    if t == "number" or t == "boolean" then return tostring(v) end
    error("string serde cannot encode a " .. t .. " (use value = \"json\")", 0)
end

local builtin = {
    string = { decode = identity_decode, encode = string_encode, name = "string" },
    bytes = { decode = identity_decode, encode = string_encode, name = "bytes" },
    number = {
        name = "number",
        decode = function(s)
            local n = not find(s, "[xXnNiI%s]") and tonumber(s)   -- decimal text only
            if not n then error("not a number: " .. (#s > 40 and s:sub(1, 40) .. "..." or s), 0) end
            if n - n ~= 0 then                        -- 1e999: beyond a double
                error("number out of range: " .. (#s > 40 and s:sub(1, 40) .. "..." or s), 0)
            end
            return n
        end,
        encode = function(v)
            if type(v) ~= "number" then error("number serde cannot encode a " .. type(v), 0) end
            if v - v ~= 0 then error("number serde cannot encode " .. tostring(v) .. " (not a finite number)", 0) end
            if v == math.floor(v) and v > -2^53 and v < 2^53 then return ("%d"):format(v) end
            for prec = 14, 16 do                      -- the shortest text that reads back the same
                local s = ("%." .. prec .. "g"):format(v)
                if tonumber(s) == v then return s end
            end
            return ("%.17g"):format(v)
        end,
    },
    json = {
        name = "json",
        decode = function(s)
            local v, err = json_decode(s)
            if v == nil and err then error("invalid JSON: " .. err, 0) end
            return v
        end,
        encode = function(v)
            local s, err = json_encode(v)
            if s == nil then error(err, 0) end
            return s
        end,
    },
}
_M.builtin = builtin
_M.null = json_null

--- Resolve a serde spec (nil, a name, or {encode=, decode=}); `what` names it in errors.
function _M.resolve(spec, what)
    if spec == nil then return builtin.string end
    if type(spec) == "string" then
        local s = builtin[spec]
        if not s then
            error(("%s: unknown serde %q (string, json, bytes, number, or {encode=, decode=})"):format(what, spec), 3)
        end
        return s
    end
    if type(spec) == "table" then
        if spec.decode ~= nil and type(spec.decode) ~= "function"
            or spec.encode ~= nil and type(spec.encode) ~= "function" then
            error(what .. ": a custom serde needs encode and decode functions", 3)
        end
        return { name = "custom", decode = spec.decode or identity_decode, encode = spec.encode or string_encode }
    end
    error(what .. ": a serde is a name or a table {encode=, decode=}", 3)
end

return _M
