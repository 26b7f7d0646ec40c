-- spec/limits_spec.lua: resource limits (issue 10). A Lua state's memory is capped
-- by lua_memory_limit (MiB, eddy.job{}): a handler that goes past it fails like any
-- failing handler (DLQ, or a stop under on_error = "fail"), the host never runs out
-- of memory, and the job goes on with the records after it.
local h = require "spec.helper"
local cjson = require "cjson"

local function job(opts, body)
    return ([[
local eddy = require "eddy"
local job = eddy.job { name = "limits"%s }
local keep = {}
job:source("in")
   :map_values(function(v)
%s
       return v:upper()
   end)
   :to("out")
return job
]]):format(opts, body)
end

-- a handler that builds ~250 MB of strings when it sees "big"
local HOG = [[
       if v == "big" then
           local t = {}
           for i = 1, 3e6 do t[i] = ("x"):rep(40) .. i end
           return "never"
       end]]

-- a job that keeps 1 MB per "keep" record in its own table (never freed)
local LEAK = [[
       if v:sub(1, 4) == "keep" then keep[#keep + 1] = ("y"):rep(1e6) .. v end]]

local function run(script, lines, extra)
    local dir = h.tmpdir()
    h.write(dir .. "/job.lua", script)
    local input = {}
    for i, l in ipairs(lines) do input[i] = cjson.encode({ key = "k", payload = l, ts = 1000 + i }) end
    h.write(dir .. "/in.jsonl", table.concat(input, "\n") .. "\n")
    local args = { "run", dir .. "/job.lua", "--input", dir .. "/in.jsonl", "--output", dir .. "/out",
        "--dlq", dir .. "/dlq", "--no-watch", "--quiet" }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    local code, _, err = h.eddy(args)
    local r = { code = code, err = err, out = {}, dlq = h.envelopes(h.read(dir .. "/dlq")) }
    for _, e in ipairs(h.envelopes(h.read(dir .. "/out"))) do r.out[#r.out + 1] = e.payload end
    os.execute("rm -rf " .. h.q(dir))
    return r
end

describe("lua_memory_limit", function()
    it("a record whose handler goes past the limit is dead-lettered with the reason; the rest go on", function()
        local r = run(job(", lua_memory_limit = 64", HOG), { "a", "big", "b", "big", "c" })
        assert.are.equal(0, r.code, r.err)
        assert.are.same({ "A", "B", "C" }, r.out)
        assert.are.equal(2, #r.dlq)
        for _, d in ipairs(r.dlq) do
            assert.are.equal("big", d.payload)
            assert.is_truthy(h.header(d, "eddy.error"):find("lua_memory_limit = 64 MiB", 1, true),
                h.header(d, "eddy.error"))
            assert.are.equal("process", h.header(d, "eddy.stage"))
        end
    end)

    it("the process stays near the limit: the host does not grow with the handler (peak RSS)", function()
        local dir = h.tmpdir()
        h.write(dir .. "/job.lua", job(", lua_memory_limit = 64", HOG))
        h.write(dir .. "/in.jsonl", cjson.encode({ key = "k", payload = "big" }) .. "\n")
        local ok = os.execute(("/usr/bin/time -f %%M -o %s %s run %s --input %s --output /dev/null " ..
            "--dlq /dev/null --no-watch --quiet"):format(h.q(dir .. "/rss"), h.q(h.EDDY), h.q(dir .. "/job.lua"),
            h.q(dir .. "/in.jsonl")))
        assert.is_truthy(ok == 0 or ok == true, "eddy failed")
        local kb = tonumber((h.read(dir .. "/rss") or ""):match("(%d+)%s*$"))
        os.execute("rm -rf " .. h.q(dir))
        assert.is_truthy(kb, "no peak RSS")
        -- 64 MiB of Lua heap plus the host, LuaJIT's code and the libraries; without the
        -- limit this handler takes ~250 MB
        assert.is_truthy(kb < 120 * 1024, ("peak RSS %d KB"):format(kb))
    end)

    it("a job that keeps what it allocates: once full, its records fail; on_error = \"fail\" stops it, exit 1", function()
        local lines = {}
        for i = 1, 100 do lines[i] = "keep" .. i end
        local r = run(job(", lua_memory_limit = 32", LEAK), lines)
        -- ~1 MB per record into 32 MiB: the first records pass, then each one fails
        assert.are.equal(0, r.code, r.err)
        assert.are.equal(100, #r.out + #r.dlq)
        assert.is_truthy(#r.out >= 10 and #r.out <= 32, "passed: " .. #r.out)
        for i, v in ipairs(r.out) do assert.are.equal(("keep" .. i):upper(), v) end
        local failing = run(job(', lua_memory_limit = 32, on_error = "fail"', LEAK), lines)
        assert.are.equal(1, failing.code)
        assert.is_truthy(failing.err:find("lua_memory_limit", 1, true), failing.err)
    end)

    it("0 turns the limit off; a negative limit is refused at load, naming the option", function()
        local r = run(job(", lua_memory_limit = 0", HOG), { "a", "big", "b" })
        assert.are.equal(0, r.code, r.err)
        assert.are.same({ "A", "never", "B" }, r.out)
        local bad = run(job(", lua_memory_limit = -1", HOG), { "a" })
        assert.are.equal(1, bad.code)
        assert.is_truthy(bad.err:find("lua_memory_limit must be MiB >= 0", 1, true), bad.err)
    end)
end)

describe("the LMDB map", function()
    it("grows before it fills: 50 MB of state into state_map_size = 16 (MiB), all kept, nothing failed", function()
        local dir = h.tmpdir()
        h.write(dir .. "/job.lua", [[
local eddy = require "eddy"
local job = eddy.job { name = "mapgrow", state_map_size = 16 }
job:source("in")
   :group_by_key()
   :reduce(function(a, b) return a .. b end, { store = "blobs" })
   :to_stream()
   :map_values(function(v) return #v end)
   :to("out")
return job
]])
        local f = assert(io.open(dir .. "/in.jsonl", "w"))
        local value = ("x"):rep(500)
        for i = 1, 100000 do
            -- every 10th key comes back: its value doubles
            local k = i % 10 == 0 and "k" .. (i - 5) or "k" .. i
            f:write(cjson.encode({ key = k, payload = value, ts = 1000 + i }), "\n")
        end
        f:close()
        local code, _, err = h.eddy({ "run", dir .. "/job.lua", "--input", dir .. "/in.jsonl", "--output",
            dir .. "/out", "--state-dir", dir .. "/state", "--no-watch" })
        assert.are.equal(0, code, err)
        assert.is_truthy(err:find("map grown to 32 MiB", 1, true), err)
        local out = h.envelopes(h.read(dir .. "/out"))
        assert.are.equal(100000, #out)
        local doubled = 0
        for _, e in ipairs(out) do
            if e.payload == "1000" then doubled = doubled + 1 else assert.are.equal("500", e.payload) end
        end
        assert.are.equal(10000, doubled)
        -- the state holds them all: count the stored values through eddy stores
        local c2, dump = h.eddy({ "stores", dir .. "/job.lua", "blobs", "--state-dir", dir .. "/state" })
        assert.are.equal(0, c2)
        local n = 0
        for _ in dump:gmatch("[^\n]+") do n = n + 1 end
        assert.are.equal(90000, n)
        os.execute("rm -rf " .. h.q(dir))
    end)
end)
