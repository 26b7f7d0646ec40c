-- A LuaJIT JIT miscompile found while fuzzing the json serde (fuzz/fuzz_json.c):
-- a recursive walk (pairs + table.sort inside) over a nest of tables 100 or more
-- deep gives a different result once it is compiled. Seen with Debian 12's
-- luajit 2.1.0-beta3 (libluajit-5.1-2 2.1.0~beta3+git20220320); with -joff it
-- is always the same. Run: luajit fuzz/luajit_jit_recursion_repro.lua [depth]
-- Prints "same" when the bug is absent, exits 1 when it shows.
local AMT = {}
local function build(d)
    local root = setmetatable({}, AMT)
    local cur = root
    for i = 1, d - 1 do
        local nxt = i % 3 == 2 and {} or setmetatable({}, AMT)
        if getmetatable(cur) == AMT then cur[1] = nxt else cur.a = nxt end
        cur = nxt
    end
    return root
end

local function canon(v, out)
    if type(v) == "table" then
        if getmetatable(v) == AMT then
            out[#out + 1] = "["
            for i = 1, #v do canon(v[i], out); out[#out + 1] = "," end
            out[#out + 1] = "]"
        else
            local keys = {}
            for k in pairs(v) do keys[#keys + 1] = k end
            table.sort(keys)
            out[#out + 1] = "{"
            for _, k in ipairs(keys) do
                out[#out + 1] = k; out[#out + 1] = ":"; canon(v[k], out); out[#out + 1] = ","
            end
            out[#out + 1] = "}"
        end
    else
        out[#out + 1] = tostring(v)
    end
    return out
end

local v = build(tonumber(arg and arg[1]) or 224)
local ref = #table.concat(canon(v, {}))
for i = 1, 200 do
    local n = #table.concat(canon(v, {}))
    if n ~= ref then
        print(("iteration %d: %d bytes, the first walk gave %d"):format(i, n, ref))
        os.exit(1)
    end
end
print("same")
