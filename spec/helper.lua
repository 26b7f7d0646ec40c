-- spec/helper.lua: run the real eddy binary the way a user would, and read its envelopes.
local cjson = require "cjson"
local _M = {}

_M.ROOT = os.getenv("EDDY_ROOT") or "."
_M.EDDY = os.getenv("EDDY_BIN") or _M.ROOT .. "/build/eddy"   -- EDDY_BIN: e.g. the sanitized build (tools/asan.sh)

--- Why valgrind cannot check the binary under test (not installed; the sanitized
--- build, tools/asan.sh), or nil when it can.
function _M.no_valgrind()
    if os.execute("command -v valgrind > /dev/null 2>&1") ~= 0 then return "valgrind is not installed" end
    if os.getenv("EDDY_BIN") then return "EDDY_BIN (the sanitized build, tools/asan.sh) does not run under valgrind" end
    return nil
end

local function shell_quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
_M.q = shell_quote

function _M.tmpdir()
    local p = io.popen("mktemp -d /tmp/eddy-spec.XXXXXX")
    local d = p:read("*l")
    p:close()
    return d
end

function _M.write(path, text)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
    return path
end

function _M.read(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

--- Run `eddy ARGS...`; returns exit code, stdout, stderr.
--- opts.stdin: text fed on stdin.
function _M.eddy(args, opts)
    opts = opts or {}
    local dir = _M.tmpdir()
    local parts = { shell_quote(_M.EDDY) }
    for _, a in ipairs(args) do parts[#parts + 1] = shell_quote(a) end
    local cmd = table.concat(parts, " ")
    if opts.stdin then
        _M.write(dir .. "/stdin", opts.stdin)
        cmd = cmd .. " < " .. shell_quote(dir .. "/stdin")
    else
        cmd = cmd .. " < /dev/null"
    end
    cmd = cmd .. " > " .. shell_quote(dir .. "/stdout") .. " 2> " .. shell_quote(dir .. "/stderr")
    local ok, how, code = os.execute(cmd)
    if type(ok) == "number" then code = ok / 256 end   -- Lua 5.1 / LuaJIT without 5.2 compat
    local out, err = _M.read(dir .. "/stdout"), _M.read(dir .. "/stderr")
    os.execute("rm -rf " .. shell_quote(dir))
    return code, out, err
end

--- Parse envelope lines into a list of tables (cjson.null becomes nil).
function _M.envelopes(text)
    local list = {}
    for line in (text or ""):gmatch("[^\n]+") do
        if line:sub(1, 1) == "{" then
            local e = cjson.decode(line)
            if e.key == cjson.null then e.key = nil end
            if e.payload == cjson.null then e.payload = nil end
            list[#list + 1] = e
        end
    end
    return list
end

--- An envelope line for a record.
function _M.envelope(t)
    local e = {}
    for k, v in pairs(t) do e[k] = v end
    if e.payload == nil then e.payload = cjson.null end
    return cjson.encode(e)
end

--- Header value by name from a kcat-style flat list.
function _M.header(env, name)
    local h = env.headers or {}
    for i = 1, #h, 2 do if h[i] == name then return h[i + 1] end end
    return nil
end

--- Write a job script into dir and return its path.
function _M.script(dir, name, text)
    return _M.write(dir .. "/" .. name, text)
end

--- Kafka's murmur2 partitioner, computed independently of the C code.
function _M.murmur2(key)
    local bit = require "bit"
    local band, bxor, rshift, tobit = bit.band, bit.bxor, bit.rshift, bit.tobit
    local function mul(a, b)  -- 32-bit multiply
        local ah, al = rshift(a, 16), band(a, 0xffff)
        return tobit(al * b + tobit(ah * b) * 65536)
    end
    local m, r = 0x5bd1e995, 24
    local len = #key
    local h = bxor(tobit(0x9747b28c), len)
    local i = 1
    while len - i + 1 >= 4 do
        local b1, b2, b3, b4 = key:byte(i, i + 3)
        local k = tobit(b1 + b2 * 256 + b3 * 65536 + b4 * 16777216)
        k = mul(k, m)
        k = bxor(k, rshift(k, r))
        k = mul(k, m)
        h = mul(h, m)
        h = bxor(h, k)
        i = i + 4
    end
    local rem = len - i + 1
    if rem == 3 then h = bxor(h, key:byte(i + 2) * 65536) end
    if rem >= 2 then h = bxor(h, key:byte(i + 1) * 256) end
    if rem >= 1 then h = bxor(h, key:byte(i)); h = mul(h, m) end
    h = bxor(h, rshift(h, 13))
    h = mul(h, m)
    h = bxor(h, rshift(h, 15))
    return h
end

function _M.partition_for(key, n)
    return require("bit").band(_M.murmur2(key), 0x7fffffff) % n
end

return _M
