-- spec/stores_spec.lua: the store API (eddy.state) as a processor sees it, through
-- the real host in file mode: get/put/delete/count, range (inclusive bounds, open
-- ends) and prefix in key order, values of every type string.buffer encodes, TTL
-- (per put and per store: invisible at once, swept in bulk), state kept across a
-- restart with the same --state-dir. Expected results come from a model kept here.
local h = require "helper"

local PRE = 'local eddy = require "eddy"\n'

local function input_text(records)
    local out = {}
    for i, r in ipairs(records) do out[i] = h.envelope(r) end
    return table.concat(out, "\n") .. "\n"
end

local function run(script, records, opts)
    opts = opts or {}
    local dir = h.tmpdir()
    local sp = h.script(dir, "job.lua", script)
    local inp = h.write(dir .. "/in.jsonl", input_text(records))
    local code, _, stderr = h.eddy({ "run", sp, "--input", inp, "--output", dir .. "/out.jsonl",
        "--dlq", dir .. "/dlq.jsonl", "--state-dir", opts.state or (dir .. "/state"), "--quiet" })
    local r = { code = code, stderr = stderr, out = h.envelopes(h.read(dir .. "/out.jsonl")),
        dlq = h.envelopes(h.read(dir .. "/dlq.jsonl")) }
    os.execute("rm -rf " .. h.q(dir))
    assert.are.equal(0, code, stderr)
    return r
end

-- A job that runs store commands given as record values ("op arg..."), forwarding
-- one line of results per command.
local COMMANDS = PRE .. [[
local job = eddy.job "cmds"
local function arg(a) if a == "-" then return nil end return a end
job:source("in"):process {
  stores = { "s", t = { ttl = "300ms" } },
  process = function(ctx, k, v)
    local op, a, b = v:match("^(%S+)%s*(%S*)%s*(%S*)$")
    local s = ctx:store(k)
    local res
    if op == "put" then s:put(a, b); res = "ok"
    elseif op == "putttl" then s:put(a, b, { ttl = "300ms" }); res = "ok"
    elseif op == "get" then res = tostring(s:get(a))
    elseif op == "del" then res = tostring(s:delete(a))
    elseif op == "count" then res = tostring(s:count())
    elseif op == "range" or op == "prefix" then
      local parts = {}
      local it
      if op == "range" then it = s:range(arg(a), arg(b)) else it = s:prefix(a) end
      for key, val in it do parts[#parts + 1] = key .. "=" .. val end
      res = table.concat(parts, ",")
    end
    ctx:forward(v, res)
  end,
}:to("out")
return job
]]

local function cmds(store, list)
    local recs = {}
    for i, c in ipairs(list) do recs[i] = { key = store, payload = c, ts = i } end
    return recs
end

local function results(r)
    local t = {}
    for i, e in ipairs(r.out) do t[i] = e.payload end
    return t
end

--- The model: a table of key -> value; range/prefix by sorting keys (byte order).
local function model(list)
    local m, out = {}, {}
    local function sorted()
        local ks = {}
        for k in pairs(m) do ks[#ks + 1] = k end
        table.sort(ks)
        return ks
    end
    for _, v in ipairs(list) do
        local op, a, b = v:match("^(%S+)%s*(%S*)%s*(%S*)$")
        if op == "put" then m[a] = b; out[#out + 1] = "ok"
        elseif op == "get" then out[#out + 1] = tostring(m[a])
        elseif op == "del" then out[#out + 1] = tostring(m[a] ~= nil); m[a] = nil
        elseif op == "count" then local n = 0; for _ in pairs(m) do n = n + 1 end; out[#out + 1] = tostring(n)
        elseif op == "range" then
            local parts = {}
            for _, k in ipairs(sorted()) do
                if (a == "-" or k >= a) and (b == "-" or k <= b) then parts[#parts + 1] = k .. "=" .. m[k] end
            end
            out[#out + 1] = table.concat(parts, ",")
        elseif op == "prefix" then
            local parts = {}
            for _, k in ipairs(sorted()) do
                if k:sub(1, #a) == a then parts[#parts + 1] = k .. "=" .. m[k] end
            end
            out[#out + 1] = table.concat(parts, ",")
        end
    end
    return out
end

describe("stores", function()
    it("get, put, delete and count", function()
        local list = { "get a", "put a 1", "get a", "put b 2", "put a 3", "get a", "count",
            "del a", "del a", "get a", "count", "put c 4", "count" }
        assert.are.same(model(list), results(run(COMMANDS, cmds("s", list))))
    end)

    it("range has inclusive bounds and open ends; prefix; both in byte order", function()
        local list = {}
        for _, k in ipairs { "b", "a", "ab", "abc", "b1", "c", "ba", "a\255", "B", "0", "bb" } do
            list[#list + 1] = "put " .. k .. " v" .. k:byte(1)
        end
        for _, q in ipairs { "range a b", "range ab ba", "range - b", "range b -", "range - -",
            "range bz c", "range c a", "range a a", "range abd abz",
            "prefix a", "prefix b", "prefix ab", "prefix z", "prefix a\255" } do
            list[#list + 1] = q
        end
        assert.are.same(model(list), results(run(COMMANDS, cmds("s", list))))
    end)

    it("keeps every value string.buffer encodes", function()
        local SHOW = [[
local function show(v, seen)
  local t = type(v)
  if t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) .. type(a) < tostring(b) .. type(b) end)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = "[" .. show(k) .. "]=" .. show(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "string" then return ("%q"):format(v)
  elseif t == "number" then
    if v ~= v then return "nan" end
    if v == 0 and 1 / v < 0 then return "-0" end
    return ("%.17g"):format(v)
  elseif t == "cdata" then return tostring(v) .. ":" .. tostring(require("ffi").typeof(v))
  end
  return tostring(v)
end
]]
        local VALUES = [[
local VALUES = { true, false, 0, -0.0, 1, -1, 42.5, 2^53, -2^63, 1/0, -1/0, 0/0, 1e-300,
  "", "text", "with\0zero\255bytes\n", string.rep("x", 5000),
  {}, { 1, 2, 3 }, { a = 1, b = { c = { "deep", false } } }, { 1, "two", x = true, [10] = 10 },
  { [1.5] = "float key", [true] = "bool key" },
  1LL, -9007199254740993LL, 18446744073709551615ULL, require("ffi").new("complex", 3, 4) }
]]
        local script = PRE .. SHOW .. VALUES .. [[
local job = eddy.job "values"
job:source("in"):process {
  stores = { "v" },
  process = function(ctx, k, v)
    local i = tonumber(k)
    if v == "put" then ctx:store("v"):put(k, VALUES[i])
    else ctx:forward(k, show(ctx:store("v"):get(k))) end
  end,
}:to("out")
return job
]]
        local values = assert(loadstring(VALUES .. " return VALUES"))()
        local show = assert(loadstring(SHOW .. " return show"))()
        local state = h.tmpdir()
        local puts, gets = {}, {}
        for i = 1, #values do
            puts[i] = { key = tostring(i), payload = "put", ts = i }
            gets[i] = { key = tostring(i), payload = "get", ts = i }
        end
        run(script, puts, { state = state })
        local r = run(script, gets, { state = state })     -- read back by another process
        os.execute("rm -rf " .. h.q(state))
        assert.are.equal(#values, #r.out)
        for i, e in ipairs(r.out) do
            assert.are.equal(show(values[i]), e.payload)
        end
    end)

    it("takes the empty string as a key (as Kafka does); refuses keys that are not strings or numbers (DLQ)", function()
        local r = run(PRE .. [[
local job = eddy.job "keys"
job:source("in"):process {
  stores = { "s" },
  process = function(ctx, k, v)
    local s = ctx:store("s")
    if v == "empty" then s:put("", "e"); ctx:forward(k, s:get("")) elseif v == "table" then s:put({}, 1)
    else s:put(42, "n"); ctx:forward(k, s:get("42") .. s:get(42)) end
  end,
}:to("out")
return job
]], { { key = "a", payload = "empty", ts = 1 }, { key = "b", payload = "table", ts = 2 },
      { key = "c", payload = "num", ts = 3 } })
        assert.are.equal(1, #r.dlq)
        assert.truthy(h.header(r.dlq[1], "eddy.error"):find("keys are strings or numbers", 1, true))
        assert.are.same({ "e", "nn" }, results(r))
    end)

    it("keeps state across a restart with the same state dir", function()
        local state = h.tmpdir()
        local first = { "put a 1", "put b 2", "put c 3", "del b" }
        local second = { "get a", "get b", "count", "range - -", "put d 4" }
        local third = { "range - -" }
        run(COMMANDS, cmds("s", first), { state = state })
        local r2 = run(COMMANDS, cmds("s", second), { state = state })
        local r3 = run(COMMANDS, cmds("s", third), { state = state })
        os.execute("rm -rf " .. h.q(state))
        local all = model({ unpack(first) })
        local m2 = model({ "put a 1", "put b 2", "put c 3", "del b", unpack(second) })
        assert.are.same({ unpack(m2, #first + 1) }, results(r2))
        assert.are.same({ "a=1,c=3,d=4" }, results(r3))
        assert.are.equal(#first, #all)
    end)

    it("hides expired TTL entries at once (per put and per store default)", function()
        local state = h.tmpdir()
        -- "s" has no default ttl: putttl gives one per put; "t" has a default of 300ms
        local r0 = run(COMMANDS, cmds("s", { "putttl x 1", "put y 2", "putttl z 3", "get x" }), { state = state })
        assert.are.same({ "ok", "ok", "ok", "1" }, results(r0))
        run(COMMANDS, cmds("t", { "put x 1", "put y 2" }), { state = state })
        local fresh = run(COMMANDS, cmds("t", { "get x", "get y" }), { state = state })
        assert.are.same({ "1", "2" }, results(fresh))             -- not expired yet
        os.execute("sleep 0.5")
        local r = run(COMMANDS, cmds("s", { "get x", "get y", "get z", "range - -", "prefix x" }),
            { state = state })
        assert.are.same({ "nil", "2", "nil", "y=2", "" }, results(r))
        local rt = run(COMMANDS, cmds("t", { "get x", "range - -" }), { state = state })
        assert.are.same({ "nil", "" }, results(rt))
        -- a value put again after expiry lives again
        local again = run(COMMANDS, cmds("s", { "putttl x 9", "get x" }), { state = state })
        assert.are.same({ "ok", "9" }, results(again))
        os.execute("rm -rf " .. h.q(state))
    end)

    it("sweeps expired TTL entries in bulk (count() then sees only live ones)", function()
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", COMMANDS)
        local function line(store, cmd) return h.q(h.envelope({ key = store, payload = cmd, ts = 1 })) end
        -- one process, a batch per line: put, wait past the ttl, read (the batch ends with a sweep), count
        local cmd = ("(echo %s; echo %s; echo %s; sleep 0.5; echo %s; sleep 0.2; echo %s; echo %s) | %s run %s --input - --state-dir %s --quiet > %s 2>&1")
            :format(line("s", "putttl x 1"), line("s", "put y 2"), line("t", "put x 1"), line("s", "get x"),
                line("s", "count"), line("t", "count"), h.q(h.EDDY), h.q(sp), h.q(dir .. "/state"), h.q(dir .. "/out"))
        os.execute(cmd)
        local out = h.envelopes(h.read(dir .. "/out"))
        assert.are.same({ "ok", "ok", "ok", "nil", "1", "0" }, results({ out = out }))
        -- after a restart too: entries written by an earlier process are swept
        local state = dir .. "/state2"
        run(COMMANDS, cmds("s", { "putttl x 1", "put y 2" }), { state = state })
        os.execute("sleep 0.5")
        run(COMMANDS, cmds("s", { "get x" }), { state = state })
        local c = run(COMMANDS, cmds("s", { "count" }), { state = state })
        os.execute("rm -rf " .. h.q(dir))
        assert.are.same({ "1" }, results(c))
    end)
end)
