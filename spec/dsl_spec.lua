-- spec/dsl_spec.lua: the Lua DSL through the real binary. Every stream method and
-- the order of its arguments, branch/merge, fan-out, several sinks, rec fields and
-- headers, emit with a timestamp, and the validation errors of `eddy check`.
-- Expectations are computed here from the inputs, never copied from eddy's output.
local h = require "helper"
local cjson = require "cjson"

-- Helpers -------------------------------------------------------------------

local PRE = 'local eddy = require "eddy"\n'

local function input_text(records)
    local out = {}
    for i, r in ipairs(records) do
        out[i] = type(r) == "string" and r or h.envelope(r)
    end
    return table.concat(out, "\n") .. "\n"
end

--- Run SCRIPT over RECORDS in file mode; outputs and dead letters parsed.
local function run(script, records, args)
    local dir = h.tmpdir()
    local sp = h.script(dir, "job.lua", script)
    local inp = h.write(dir .. "/in.jsonl", input_text(records or {}))
    local argv = { "run", sp, "--input", inp, "--output", dir .. "/out.jsonl",
        "--dlq", dir .. "/dlq.jsonl", "--quiet" }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    local code, stdout, stderr = h.eddy(argv)
    local r = { code = code, stdout = stdout, stderr = stderr,
        out = h.envelopes(h.read(dir .. "/out.jsonl")),
        dlq = h.envelopes(h.read(dir .. "/dlq.jsonl")) }
    os.execute("rm -rf " .. h.q(dir))
    return r
end

--- `eddy check` on SCRIPT (written as job.lua).
local function check(script)
    local dir = h.tmpdir()
    local sp = h.script(dir, "job.lua", script)
    local code, stdout, stderr = h.eddy({ "check", sp })
    os.execute("rm -rf " .. h.q(dir))
    return code, stdout, stderr
end

--- 1-based number of the first line of TEXT containing MARKER.
local function line_of(text, marker)
    local n = 0
    for l in (text .. "\n"):gmatch("([^\n]*)\n") do
        n = n + 1
        if l:find(marker, 1, true) then return n end
    end
    error("marker not found: " .. marker)
end

--- Keep only some fields of each envelope.
local function project(list, fields)
    local out = {}
    for i, e in ipairs(list) do
        local p = {}
        for _, f in ipairs(fields) do p[f] = e[f] end
        out[i] = p
    end
    return out
end

local function kv(list)
    return project(list, { "topic", "key", "payload" })
end

local function nonempty_lines(s)
    local t = {}
    for l in (s or ""):gmatch("[^\n]+") do t[#t + 1] = l end
    return t
end

-- Stream methods --------------------------------------------------------------

describe("stream methods", function()
    it("map gets (key, value, rec) and returns a new key and value", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :map(function(k, v, rec) return v, k .. "|" .. rec.topic .. "|" .. rec.offset end)
   :to("out")
return job
]], { { key = "k1", payload = "v1", offset = 5 }, { key = "k2", payload = "v2", offset = 6 } })
        assert.equal(0, r.code)
        assert.same({
            { topic = "out", key = "v1", payload = "k1|in|5" },
            { topic = "out", key = "v2", payload = "k2|in|6" },
        }, kv(r.out))
    end)

    it("map returning nothing gives a null key and a null value", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in"):map(function(k, v) end):to("out")
return job
]], { { key = "k", payload = "v" } })
        assert.equal(0, r.code)
        assert.equal(1, #r.out)
        assert.is_nil(r.out[1].key)
        assert.is_nil(r.out[1].payload)
    end)

    it("map_values gets (value, key, rec) and keeps the key", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :map_values(function(v, k, rec) return v .. "/" .. k .. "/" .. rec.offset end)
   :to("out")
return job
]], { { key = "a", payload = "x", offset = 0 }, { key = "b", payload = "y", offset = 1 } })
        assert.equal(0, r.code)
        assert.same({
            { topic = "out", key = "a", payload = "x/a/0" },
            { topic = "out", key = "b", payload = "y/b/1" },
        }, kv(r.out))
    end)

    it("filter gets (key, value, rec) and keeps the records it is true for", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :filter(function(k, v, rec) return k == "keep" and v ~= "no" and rec.offset ~= 3 end)
   :to("out")
return job
]], {
            { key = "keep", payload = "1", offset = 0 },
            { key = "drop", payload = "2", offset = 1 },
            { key = "keep", payload = "no", offset = 2 },
            { key = "keep", payload = "4", offset = 3 },
            { key = "keep", payload = "5", offset = 4 },
        })
        assert.equal(0, r.code)
        assert.same({
            { topic = "out", key = "keep", payload = "1" },
            { topic = "out", key = "keep", payload = "5" },
        }, kv(r.out))
    end)

    it("filter drops on nil and false, keeps any other value", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
local answers = { a = nil, b = false, c = "yes", d = 0, e = true }
job:source("in"):filter(function(k) return answers[k] end):to("out")
return job
]], { { key = "a", payload = "" }, { key = "b", payload = "" }, { key = "c", payload = "" },
            { key = "d", payload = "" }, { key = "e", payload = "" } })
        assert.equal(0, r.code)
        assert.same({ "c", "d", "e" }, { r.out[1].key, r.out[2].key, r.out[3].key })
        assert.equal(3, #r.out)
    end)

    it("filter_not gets (key, value, rec) and drops the records it is true for", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :filter_not(function(k, v, rec) return k == "drop" or v == "no" or rec.offset == 3 end)
   :to("out")
return job
]], {
            { key = "keep", payload = "1", offset = 0 },
            { key = "drop", payload = "2", offset = 1 },
            { key = "keep", payload = "no", offset = 2 },
            { key = "keep", payload = "4", offset = 3 },
            { key = "keep", payload = "5", offset = 4 },
        })
        assert.equal(0, r.code)
        assert.same({
            { topic = "out", key = "keep", payload = "1" },
            { topic = "out", key = "keep", payload = "5" },
        }, kv(r.out))
    end)

    it("flat_map gets (key, value, emit, rec) and emits zero or more records", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :flat_map(function(k, v, emit, rec)
      for w in v:gmatch("%S+") do emit(w, k .. "@" .. rec.offset) end
   end)
   :to("out")
return job
]], {
            { key = "s1", payload = "the quick fox", offset = 10 },
            { key = "s2", payload = "", offset = 11 },
            { key = "s3", payload = "jumps", offset = 12 },
        })
        assert.equal(0, r.code)
        assert.same({
            { topic = "out", key = "the", payload = "s1@10" },
            { topic = "out", key = "quick", payload = "s1@10" },
            { topic = "out", key = "fox", payload = "s1@10" },
            { topic = "out", key = "jumps", payload = "s3@12" },
        }, kv(r.out))
    end)

    it("flat_map's emit(k, v, ts) sets the output timestamp and rec.ts downstream", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :flat_map(function(k, v, emit)
      emit("early", v, 5000)
      emit("same", v)
      emit("late", v, 1700000009999)
   end)
   :map_values(function(v, k, rec) return v .. "@" .. rec.ts end)
   :to("out")
return job
]], { { key = "k", payload = "x", ts = 1700000000000, headers = { "h1", "v1" } } })
        assert.equal(0, r.code)
        assert.same({
            { key = "early", payload = "x@5000", ts = 5000, headers = { "h1", "v1" } },
            { key = "same", payload = "x@1700000000000", ts = 1700000000000, headers = { "h1", "v1" } },
            { key = "late", payload = "x@1700000009999", ts = 1700000009999, headers = { "h1", "v1" } },
        }, project(r.out, { "key", "payload", "ts", "headers" }))
    end)

    it("flat_map can emit many records for one input (200 000)", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :flat_map(function(k, v, emit) for i = 1, tonumber(v) do emit(nil, i) end end)
   :to("out")
return job
]], { { payload = "200000" }, { payload = "2" } })
        assert.equal(0, r.code)
        assert.equal(200002, #r.out)
        assert.equal("200000", r.out[200000].payload)
        assert.equal(199999, r.out[200000].offset)
        assert.equal("2", r.out[200002].payload)
    end)

    it("flat_map's emit with a timestamp that is not a number is a process error", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :flat_map(function(k, v, emit) emit(k, v, "yesterday") end)
   :to("out")
return job
]], { { key = "k", payload = "x", ts = 1 } })
        assert.equal(0, r.code)
        assert.equal(0, #r.out)
        assert.equal(1, #r.dlq)
        assert.equal("process", h.header(r.dlq[1], "eddy.stage"))
    end)

    it("flat_map_values gets (value, emit, key, rec) and keeps the key", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :flat_map_values(function(v, emit, k, rec)
      for c in v:gmatch(".") do emit(c .. k .. rec.offset) end
   end)
   :to("out")
return job
]], { { key = "K", payload = "ab", offset = 3 }, { key = "L", payload = "", offset = 4 },
            { key = "M", payload = "c", offset = 5 } })
        assert.equal(0, r.code)
        assert.same({
            { topic = "out", key = "K", payload = "aK3" },
            { topic = "out", key = "K", payload = "bK3" },
            { topic = "out", key = "M", payload = "cM5" },
        }, kv(r.out))
    end)

    it("select_key gets (key, value, rec), sets the key and keeps the value", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :select_key(function(k, v, rec) return v .. ":" .. k .. ":" .. rec.offset end)
   :to("out")
return job
]], { { key = "a", payload = "x", offset = 7 } })
        assert.equal(0, r.code)
        assert.same({ { topic = "out", key = "x:a:7", payload = "x" } }, kv(r.out))
    end)

    it("peek gets (key, value, rec); its result is ignored; its side effects are seen", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
local seen = {}
job:source("in")
   :peek(function(k, v, rec)
      seen[#seen + 1] = k .. "=" .. v .. "@" .. rec.offset
      return "ignored", "ignored"
   end)
   :map_values(function(v) return table.concat(seen, ",") end)
   :to("out")
return job
]], { { key = "a", payload = "1", offset = 0 }, { key = "b", payload = "2", offset = 1 } })
        assert.equal(0, r.code)
        assert.same({
            { topic = "out", key = "a", payload = "a=1@0" },
            { topic = "out", key = "b", payload = "a=1@0,b=2@1" },
        }, kv(r.out))
    end)

    it("every user function receives rec in its documented position", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :filter(function(k, v, rec) return rec.offset == 7 end)
   :filter_not(function(k, v, rec) return rec.topic ~= "in" end)
   :map(function(k, v, rec) return k, v .. "|map" .. rec.offset end)
   :map_values(function(v, k, rec) return v .. "|mv" .. rec.offset end)
   :select_key(function(k, v, rec) return k .. rec.offset end)
   :peek(function(k, v, rec) if rec.offset ~= 7 then error("peek saw " .. tostring(rec.offset)) end end)
   :flat_map(function(k, v, emit, rec) emit(k, v .. "|fm" .. rec.offset) end)
   :flat_map_values(function(v, emit, k, rec) emit(v .. "|fmv" .. rec.offset) end)
   :branch(function(k, v, rec) return rec.offset == 7 end)
   :to("out")
return job
]], { { key = "k", payload = "x", offset = 6 }, { key = "k", payload = "x", offset = 7 } })
        assert.equal(0, r.code)
        assert.same({}, r.dlq)
        assert.same({ { topic = "out", key = "k7", payload = "x|map7|mv7|fm7|fmv7" } }, kv(r.out))
    end)
end)

describe("branch", function()
    local script = PRE .. [[
local job = eddy.job { name = "dsl" }
local s = job:source("in")
local outs = { s:branch(
   function(k, v, rec) return v:find("a") ~= nil end,
   function(k, v, rec) return v:find("b") ~= nil end,
   function(k, v, rec) return rec.offset >= 100 end) }
if #outs ~= 3 then error("branch returned " .. #outs .. " streams") end
outs[1]:to("has-a")
outs[2]:to("has-b")
outs[3]:to("big-offset")
return job
]]

    it("returns one stream per predicate; the first match wins; no match is dropped", function()
        local r = run(script, {
            { key = "1", payload = "ab", offset = 0 },     -- a wins over b
            { key = "2", payload = "b", offset = 1 },
            { key = "3", payload = "c", offset = 2 },      -- none: dropped
            { key = "4", payload = "cab", offset = 3 },    -- a
            { key = "5", payload = "zzz", offset = 100 },  -- third
            { key = "6", payload = "b", offset = 101 },    -- b before the third
        })
        assert.equal(0, r.code)
        assert.same({
            { topic = "has-a", key = "1", payload = "ab" },
            { topic = "has-b", key = "2", payload = "b" },
            { topic = "has-a", key = "4", payload = "cab" },
            { topic = "big-offset", key = "5", payload = "zzz" },
            { topic = "has-b", key = "6", payload = "b" },
        }, kv(r.out))
        assert.same({}, r.dlq)
    end)

    it("evaluates predicates in order and stops at the first match", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
local calls = {}
local a, b = job:source("in"):branch(
   function(k) calls[#calls + 1] = "p1"; return k == "one" end,
   function(k) calls[#calls + 1] = "p2"; return true end)
a:map_values(function() return table.concat(calls, ",") end):to("a")
b:map_values(function() return table.concat(calls, ",") end):to("b")
return job
]], { { key = "one", payload = "" }, { key = "two", payload = "" } })
        assert.equal(0, r.code)
        assert.same({
            { topic = "a", key = "one", payload = "p1" },
            { topic = "b", key = "two", payload = "p1,p1,p2" },
        }, kv(r.out))
    end)
end)

describe("merge", function()
    it("is the union of two sources' streams, each record keeping its rec.topic", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
local a = job:source("left")
local b = job:source("right")
a:merge(b):map_values(function(v, k, rec) return rec.topic .. ":" .. v end):to("both")
return job
]], {
            { topic = "left", key = "1", payload = "x" },
            { topic = "right", key = "2", payload = "y" },
            { topic = "left", key = "3", payload = "z" },
        })
        assert.equal(0, r.code)
        assert.same({
            { topic = "both", key = "1", payload = "left:x" },
            { topic = "both", key = "2", payload = "right:y" },
            { topic = "both", key = "3", payload = "left:z" },
        }, kv(r.out))
    end)

    it("of two branches of one stream (a diamond) gives a record once per path", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
local s = job:source("in")
local xs = s:filter(function(k, v) return v:find("x") end):map_values(function(v) return "X" .. v end)
local ys = s:filter(function(k, v) return v:find("y") end):map_values(function(v) return "Y" .. v end)
xs:merge(ys):to("out")
return job
]], { { key = "1", payload = "x" }, { key = "2", payload = "xy" }, { key = "3", payload = "q" } })
        assert.equal(0, r.code)
        assert.same({
            { topic = "out", key = "1", payload = "Xx" },
            { topic = "out", key = "2", payload = "Xxy" },
            { topic = "out", key = "2", payload = "Yxy" },
        }, kv(r.out))
    end)
end)

describe("sinks and fan-out", function()
    it("a stream feeds several steps; each gets every record, in definition order", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
local s = job:source("in")
s:map_values(function(v) return v:upper() end):to("upper")
s:map_values(function(v) return v:lower() end):to("lower")
s:to("same")
return job
]], { { key = "1", payload = "Ab" }, { key = "2", payload = "cD" } })
        assert.equal(0, r.code)
        assert.same({
            { topic = "upper", key = "1", payload = "AB" },
            { topic = "lower", key = "1", payload = "ab" },
            { topic = "same", key = "1", payload = "Ab" },
            { topic = "upper", key = "2", payload = "CD" },
            { topic = "lower", key = "2", payload = "cd" },
            { topic = "same", key = "2", payload = "cD" },
        }, kv(r.out))
    end)

    it("to returns the stream, so one stream can go to several topics", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in"):to("first"):to("second"):map_values(function(v) return v .. "!" end):to("third")
return job
]], { { key = "k", payload = "v" } })
        assert.equal(0, r.code)
        assert.same({
            { topic = "first", key = "k", payload = "v" },
            { topic = "second", key = "k", payload = "v" },
            { topic = "third", key = "k", payload = "v!" },
        }, kv(r.out))
    end)

    it("two steps writing to the same topic share its offsets", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
local s = job:source("in")
s:filter(function(k) return k == "a" end):to("out")
s:filter(function(k) return k ~= "a" end):map_values(function(v) return v .. "2" end):to("out")
return job
]], { { key = "a", payload = "1" }, { key = "a", payload = "2" }, { key = "b", payload = "3" },
            { key = "a", payload = "4" } })
        assert.equal(0, r.code)
        -- --partitions 1: every output is in partition 0 of "out", offsets 0, 1, 2, 3
        assert.same({
            { topic = "out", partition = 0, offset = 0, key = "a", payload = "1" },
            { topic = "out", partition = 0, offset = 1, key = "a", payload = "2" },
            { topic = "out", partition = 0, offset = 2, key = "b", payload = "32" },
            { topic = "out", partition = 0, offset = 3, key = "a", payload = "4" },
        }, project(r.out, { "topic", "partition", "offset", "key", "payload" }))
    end)

    it("a job with several sources and sinks routes each record", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source({ "t1", "t2" }):map_values(function(v, k, rec) return rec.topic end):to("from-12")
job:source("t3"):to("from-3")
return job
]], { { topic = "t2", payload = "a" }, { topic = "t3", payload = "b" }, { topic = "t1", payload = "c" },
            { payload = "d" } })   -- no topic: the first source, t1
        assert.equal(0, r.code)
        assert.same({
            { topic = "from-12", payload = "t2" },
            { topic = "from-3", payload = "b" },
            { topic = "from-12", payload = "t1" },
            { topic = "from-12", payload = "t1" },
        }, project(r.out, { "topic", "payload" }))
    end)
end)

describe("rec", function()
    it("has topic, partition, offset, ts and headers (last wins, null is false)", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :map_values(function(v, k, rec)
      return { topic = rec.topic, partition = rec.partition, offset = rec.offset,
               ts = rec.ts, headers = rec.headers }
   end)
   :to("out", { value = "json" })
return job
]], { '{"topic":"in","partition":2,"offset":41,"ts":1700000000123,"key":"k","payload":"v",'
            .. '"headers":["a","1","b","2","a","3","n",null]}' }, { "--partitions", "4" })
        assert.equal(0, r.code)
        assert.equal(1, #r.out)
        assert.same({ topic = "in", partition = 2, offset = 41, ts = 1700000000123,
            headers = { a = "3", b = "2", n = false } }, cjson.decode(r.out[1].payload))
    end)

    -- CONTRACT: "rec is read-only metadata". Writing it may raise (a bad record) or be
    -- ignored, but must not change what is written.
    it("is read-only: assigning rec.ts in a step does not change the output's ts", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in"):peek(function(k, v, rec) rec.ts = 5 end):to("out")
return job
]], { { key = "k", payload = "x", ts = 1000 } })
        assert.equal(0, r.code)
        for _, e in ipairs(r.out) do assert.equal(1000, e.ts) end
        assert.equal(1, #r.out + #r.dlq)
    end)

    it("rec.headers is an empty table when the record has no headers", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :map_values(function(v, k, rec)
      return type(rec.headers) .. ":" .. tostring(next(rec.headers))
   end)
   :to("out")
return job
]], { { payload = "x" }, '{"payload":"y","headers":[]}' })
        assert.equal(0, r.code)
        assert.same({ "table:nil", "table:nil" }, { r.out[1].payload, r.out[2].payload })
    end)

    it("header values are the header's bytes (NUL and escapes kept)", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in")
   :map_values(function(v, k, rec)
      local h = rec.headers["bin"]
      return #h .. ":" .. h:byte(2) .. ":" .. h:sub(3)
   end)
   :to("out")
return job
]], { '{"payload":"x","headers":["bin","a\\u0000\\n\\"q"]}' })
        assert.equal(0, r.code)
        assert.equal('5:0:\n"q', r.out[1].payload)
    end)

    it("the source's timestamp extractor (k, v, rec) sets rec.ts and the output ts", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in", { value = "json",
                   timestamp = function(k, v, rec) return v.at + rec.ts end })
   :map_values(function(v, k, rec) return k .. "@" .. rec.ts end)
   :to("out")
return job
]], { { key = "a", payload = '{"at":1000}', ts = 5 }, { key = "b", payload = '{"at":2000}', ts = 7 } })
        assert.equal(0, r.code)
        assert.same({
            { key = "a", payload = "a@1005", ts = 1005 },
            { key = "b", payload = "b@2007", ts = 2007 },
        }, project(r.out, { "key", "payload", "ts" }))
    end)

    -- A timestamp extractor that does not declare rec must still be called.
    it("a timestamp extractor fn(k, v) is applied even when no function takes rec", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "dsl" }
job:source("in", { timestamp = function(k, v) return tonumber(v) end }):to("out")
return job
]], { { key = "a", payload = "1234", ts = 1 }, { key = "b", payload = "5678", ts = 2 } })
        assert.equal(0, r.code)
        assert.same({ { key = "a", ts = 1234 }, { key = "b", ts = 5678 } },
            project(r.out, { "key", "ts" }))
    end)
end)

describe("jobs", function()
    it("eddy.job \"name\" is short for eddy.job{ name = \"name\" }", function()
        local code, out = check(PRE .. [[
local job = eddy.job "short-form"
job:source("in"):to("out")
return job
]])
        assert.equal(0, code)
        assert.truthy(out:find("short-form", 1, true))
    end)

    it("the job's name names the DLQ topic; app_id overrides it; --app-id wins", function()
        local body = [[
job:source("in", { value = "json" }):to("out")
return job
]]
        local bad = { { key = "k", payload = "{nope" } }
        local r = run(PRE .. 'local job = eddy.job { name = "orders" }\n' .. body, bad)
        assert.equal("orders-dlq", r.dlq[1] and r.dlq[1].topic)
        r = run(PRE .. 'local job = eddy.job { name = "orders", app_id = "orders-v2" }\n' .. body, bad)
        assert.equal("orders-v2-dlq", r.dlq[1] and r.dlq[1].topic)
        r = run(PRE .. 'local job = eddy.job { name = "orders", app_id = "orders-v2" }\n' .. body, bad,
            { "--app-id", "cli" })
        assert.equal("cli-dlq", r.dlq[1] and r.dlq[1].topic)
    end)

    it("a run option set in eddy.job{} applies; the command line wins", function()
        local script = PRE .. [[
local job = eddy.job { name = "dsl", partitions = 5 }
job:source("in"):map_values(function(v, k, rec) return tostring(rec.partition) end):to("out")
return job
]]
        local keys = {}
        for i = 1, 30 do keys[i] = { key = "key-" .. i, payload = "" } end
        local r = run(script, keys)
        assert.equal(0, r.code)
        for i, e in ipairs(r.out) do
            assert.equal(tostring(h.partition_for("key-" .. i, 5)), e.payload)
        end
        r = run(script, keys, { "--partitions", "3" })
        for i, e in ipairs(r.out) do
            assert.equal(tostring(h.partition_for("key-" .. i, 3)), e.payload)
        end
    end)
end)

-- Validation errors --------------------------------------------------------------

describe("eddy check refuses a bad script with exit 1 and one line naming file:line", function()
    -- { description, script body (after `local eddy = require "eddy"`), a phrase of the message }
    -- The line that must be named carries the comment "-- <here>".
    local cases = {
        { "on_error is not dlq, skip or fail",
          'local job = eddy.job { name = "v", on_error = "explode" } -- <here>', "on_error" },
        { "on_error is not a string",
          'local job = eddy.job { name = "v", on_error = 1 } -- <here>', "on_error" },
        { "an unknown job option",
          'local job = eddy.job { name = "v", colour = "red" } -- <here>', "colour" },
        { "a job option of the wrong type",
          'local job = eddy.job { name = "v", partitions = "three" } -- <here>', "partitions" },
        { "a missing job name",
          'local job = eddy.job { on_error = "skip" } -- <here>', "name" },
        { "an empty options table",
          'local job = eddy.job {} -- <here>', "name" },
        { "a job name with a space",
          'local job = eddy.job "my job" -- <here>', "name" },
        { "a job name that is neither a string nor a table",
          'local job = eddy.job(42) -- <here>', "eddy.job" },
        { "map given a number",
          'local job = eddy.job "v"\njob:source("in"):map(42) -- <here>', "map" },
        { "map_values given a string",
          'local job = eddy.job "v"\njob:source("in"):map_values("upper") -- <here>', "map_values" },
        { "filter given nil",
          'local job = eddy.job "v"\njob:source("in"):filter(nil) -- <here>', "filter" },
        { "filter_not given a table",
          'local job = eddy.job "v"\njob:source("in"):filter_not({}) -- <here>', "filter_not" },
        { "flat_map given a number",
          'local job = eddy.job "v"\njob:source("in"):flat_map(1) -- <here>', "flat_map" },
        { "flat_map_values given a boolean",
          'local job = eddy.job "v"\njob:source("in"):flat_map_values(true) -- <here>', "flat_map_values" },
        { "select_key given nothing",
          'local job = eddy.job "v"\njob:source("in"):select_key() -- <here>', "select_key" },
        { "peek given a string",
          'local job = eddy.job "v"\njob:source("in"):peek("print") -- <here>', "peek" },
        { "branch without predicates",
          'local job = eddy.job "v"\njob:source("in"):branch() -- <here>', "branch" },
        { "branch with a predicate that is not a function",
          'local job = eddy.job "v"\njob:source("in"):branch(function() return true end, 5) -- <here>',
          "predicate 2" },
        { "merge with something that is not a stream",
          'local job = eddy.job "v"\njob:source("in"):merge(5) -- <here>', "merge" },
        { "merge with a stream of another job",
          'local job = eddy.job "v"\nlocal other = eddy.job "w"\n'
          .. 'job:source("in"):merge(other:source("x")) -- <here>', "merge" },
        { "a source topic with a space and a bang",
          'local job = eddy.job "v"\njob:source("bad topic!") -- <here>', "bad topic!" },
        { "an empty source topic",
          'local job = eddy.job "v"\njob:source("") -- <here>', "topic" },
        { "an empty list of source topics",
          'local job = eddy.job "v"\njob:source({}) -- <here>', "topic" },
        { "no source topic at all",
          'local job = eddy.job "v"\njob:source() -- <here>', "topic" },
        { "a bad topic in a list of source topics",
          'local job = eddy.job "v"\njob:source({ "fine", "not/fine" }) -- <here>', "not/fine" },
        { "the same source topic twice",
          'local job = eddy.job "v"\njob:source("in")\njob:source("in") -- <here>', "in" },
        { "a sink topic with a slash",
          'local job = eddy.job "v"\njob:source("in"):to("a/b") -- <here>', "a/b" },
        { "a sink topic of 250 characters",
          'local job = eddy.job "v"\njob:source("in"):to(string.rep("t", 250)) -- <here>', "249" },
        { "a sink without a topic",
          'local job = eddy.job "v"\njob:source("in"):to() -- <here>', "topic" },
        { "a sink topic that is a number",
          'local job = eddy.job "v"\njob:source("in"):to(42) -- <here>', "topic" },
        { "the source topic \"..\" (illegal in Kafka)",
          'local job = eddy.job "v"\njob:source(".."):to("out") -- <here>', ".." },
        { "the sink topic \".\" (illegal in Kafka)",
          'local job = eddy.job "v"\njob:source("in"):to(".") -- <here>', "." },
        { "an unknown source serde",
          'local job = eddy.job "v"\njob:source("in", { value = "yaml" }) -- <here>', "yaml" },
        { "an unknown sink serde",
          'local job = eddy.job "v"\njob:source("in"):to("out", { key = "xml" }) -- <here>', "xml" },
        { "a custom serde whose encode is not a function",
          'local job = eddy.job "v"\njob:source("in"):to("out", { value = { encode = 5, decode = tostring } }) -- <here>',
          "encode" },
        { "a serde that is a number",
          'local job = eddy.job "v"\njob:source("in", { key = 7 }) -- <here>', "serde" },
        { "a timestamp extractor that is not a function",
          'local job = eddy.job "v"\njob:source("in", { timestamp = 5 }) -- <here>', "timestamp" },
        { "source options that are not a table",
          'local job = eddy.job "v"\njob:source("in", "json") -- <here>', "options" },
    }

    for _, c in ipairs(cases) do
        it(c[1], function()
            local script = PRE .. c[2] .. "\nreturn job\n"
            local want_line = line_of(script, "-- <here>")
            local code, stdout, stderr = check(script)
            assert.equal(1, code)
            local lines = nonempty_lines(stderr)
            assert.equal(1, #lines, "stderr: " .. tostring(stderr))
            assert.truthy(lines[1]:find("job.lua:" .. want_line, 1, true),
                "expected job.lua:" .. want_line .. " in: " .. lines[1])
            assert.truthy(lines[1]:find(c[3], 1, true), "expected '" .. c[3] .. "' in: " .. lines[1])
        end)
    end

    it("eddy run refuses the same scripts with exit 1 and does not read its input", function()
        local r = run(PRE .. 'local job = eddy.job { name = "v", on_error = "explode" }\nreturn job\n',
            { { payload = "x" } })
        assert.equal(1, r.code)
        assert.same({}, r.out)
        assert.truthy(r.stderr:find("job.lua:2", 1, true))
    end)

    -- A bad topic name in a helper function: the message names the line of the
    -- to() call, not (also) the line that called the helper.
    it("names the to() line, not its caller's, when to() is called in a helper", function()
        local script = PRE .. [[
local job = eddy.job "v"
local function sink(s, topic)
   local out = s:to(topic) -- <here>
   return out
end
sink(job:source("in"), "no good") -- <caller>
return job
]]
        local want, caller = line_of(script, "-- <here>"), line_of(script, "-- <caller>")
        local code, _, stderr = check(script)
        assert.equal(1, code)
        local msg = nonempty_lines(stderr)[1] or ""
        assert.truthy(msg:find("job.lua:" .. want, 1, true), msg)
        assert.falsy(msg:find("job.lua:" .. caller, 1, true), msg)
    end)

    it("accepts every legal topic name, up to 249 characters", function()
        local code, out, err = check(PRE .. [[
local job = eddy.job "v"
job:source({ "a.b_c-D9", "..a", "_", string.rep("x", 249) }):to("Out.2_x-y"):to("...")
return job
]])
        assert.equal(0, code, err)
        assert.truthy(out:find("a.b_c-D9", 1, true))
    end)
end)
