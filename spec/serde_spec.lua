-- spec/serde_spec.lua: serdes through the real binary, both ways: string, bytes, json,
-- number, custom {encode, decode}; null keys and values (tombstones); binary keys with
-- NUL bytes and \u escapes. Expectations are computed here from the inputs.
local h = require "helper"
local cjson = require "cjson"

local PRE = 'local eddy = require "eddy"\n'

local function input_text(records)
    local out = {}
    for i, r in ipairs(records) do
        out[i] = type(r) == "string" and r or h.envelope(r)
    end
    return table.concat(out, "\n") .. "\n"
end

local function run(script, records, args)
    local dir = h.tmpdir()
    local sp = h.script(dir, "job.lua", script)
    local inp = h.write(dir .. "/in.jsonl", input_text(records or {}))
    local argv = { "run", sp, "--input", inp, "--output", dir .. "/out.jsonl",
        "--dlq", dir .. "/dlq.jsonl", "--quiet" }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    local code, stdout, stderr = h.eddy(argv)
    local r = { code = code, stdout = stdout, stderr = stderr,
        out_text = h.read(dir .. "/out.jsonl") or "",
        dlq_text = h.read(dir .. "/dlq.jsonl") or "" }
    r.out, r.dlq = h.envelopes(r.out_text), h.envelopes(r.dlq_text)
    os.execute("rm -rf " .. h.q(dir))
    return r
end

local function payloads(list)
    local t = {}
    for i, e in ipairs(list) do t[i] = e.payload end
    return t
end

local function keys(list)
    local t = {}
    for i, e in ipairs(list) do t[i] = e.key end
    return t
end

local function stages(list)
    local t = {}
    for i, e in ipairs(list) do t[i] = h.header(e, "eddy.stage") end
    return t
end

local function hex(s)
    return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

--- A job: source "in" with SOPTS, through BODY (a chain of steps, as text), to "out" with TOPTS.
local function job(sopts, body, topts)
    return PRE .. 'local job = eddy.job { name = "serde" }\n'
        .. "job:source(\"in\", " .. sopts .. ")\n" .. body .. "\n"
        .. "   :to(\"out\", " .. topts .. ")\nreturn job\n"
end

-- string and bytes -------------------------------------------------------------

describe("string serde (the default)", function()
    it("decodes to the record's bytes and encodes them back unchanged", function()
        local vals = { "plain", "", "with \"quotes\" and \\", "tab\tnl\ncr\r", "caf\195\169 \226\130\172" }
        local recs = {}
        for i, v in ipairs(vals) do recs[i] = { key = "k" .. i, payload = v } end
        local r = run(job("{}", ':map_values(function(v) return "<" .. #v .. ">" .. v end)', "{}"), recs)
        assert.equal(0, r.code)
        local want = {}
        for i, v in ipairs(vals) do want[i] = "<" .. #v .. ">" .. v end
        assert.same(want, payloads(r.out))
        assert.same({ "k1", "k2", "k3", "k4", "k5" }, keys(r.out))
    end)

    it("encodes numbers and booleans as their text", function()
        local r = run(job("{}", [[
   :flat_map_values(function(v, emit) emit(42); emit(-1.5); emit(true); emit(false) end)]], "{}"),
            { { key = "k", payload = "" } })
        assert.equal(0, r.code)
        assert.same({ "42", "-1.5", "true", "false" }, payloads(r.out))
    end)

    it("cannot encode a table: a serialize error", function()
        local r = run(job("{}", ":map_values(function(v) return { v } end)", "{}"),
            { { key = "k", payload = "x" } })
        assert.equal(0, r.code)
        assert.same({}, r.out)
        assert.same({ "serialize" }, stages(r.dlq))
    end)
end)

describe("bytes serde", function()
    it("passes every byte value 0..255 through unchanged, keys and values", function()
        local all = {}
        for i = 0, 255 do all[#all + 1] = string.char(i) end
        all = table.concat(all)
        local r = run(job('{ key = "bytes", value = "bytes" }',
            ':map(function(k, v) return v, k end)', '{ key = "bytes", value = "bytes" }'),
            { { key = all, payload = all:reverse() } })
        assert.equal(0, r.code)
        assert.equal(1, #r.out)
        assert.equal(hex(all:reverse()), hex(r.out[1].key))
        assert.equal(hex(all), hex(r.out[1].payload))
    end)
end)

-- json ---------------------------------------------------------------------------

describe("json serde", function()
    it("decodes nested objects and arrays, and encodes them back", function()
        local doc = { user = { id = 7, name = "Zoë", tags = { "a", "b" } },
            items = { { sku = "x1", qty = 2, price = 9.5 }, { sku = "y2", qty = 1, price = 0.25 } },
            ok = true, note = "line\nbreak \"quoted\"" }
        local r = run(job('{ value = "json" }', [[
   :map_values(function(v)
      local total = 0
      for _, it in ipairs(v.items) do total = total + it.qty * it.price end
      return { who = v.user.name, id = v.user.id, second_tag = v.user.tags[2],
               total = total, ok = not v.ok, note = v.note, n = #v.items,
               nested = { deeper = { v.items[2].sku } } }
   end)]], '{ value = "json" }'), { { key = "k", payload = cjson.encode(doc) } })
        assert.equal(0, r.code)
        assert.equal(1, #r.out)
        assert.same({ who = "Zoë", id = 7, second_tag = "b", total = 2 * 9.5 + 0.25, ok = false,
            note = "line\nbreak \"quoted\"", n = 2, nested = { deeper = { "y2" } } },
            cjson.decode(r.out[1].payload))
    end)

    it("JSON null inside a document is eddy.null, and is written back as null", function()
        local r = run(job('{ value = "json" }', [[
   :map_values(function(v)
      return { same = (v.a == eddy.null), isnil = (v.a == nil), a = v.a, list = v.list }
   end)]], '{ value = "json" }'), { { key = "k", payload = '{"a":null,"list":[1,null,3]}' } })
        assert.equal(0, r.code)
        local got = cjson.decode(r.out[1].payload)
        assert.is_true(got.same)
        assert.is_false(got.isnil)
        assert.equal(cjson.null, got.a)
        assert.same({ 1, cjson.null, 3 }, got.list)
    end)

    it("top-level scalars decode to Lua values", function()
        local r = run(job('{ value = "json" }', [[
   :map_values(function(v) return type(v) .. ":" .. tostring(v == eddy.null and "null" or v) end)]],
            "{}"), {
            { key = "1", payload = "42" }, { key = "2", payload = '"str"' }, { key = "3", payload = "true" },
            { key = "4", payload = "null" }, { key = "5", payload = "-0.5" },
        })
        assert.equal(0, r.code)
        assert.same({ "number:42", "string:str", "boolean:true", "userdata:null", "number:-0.5" },
            payloads(r.out))
    end)

    it("keys can be json too", function()
        local r = run(job('{ key = "json", value = "json" }',
            ':map(function(k, v) return { id = k.id + 1 }, { was = k.id, v = v } end)',
            '{ key = "json", value = "json" }'), { { key = '{"id":41}', payload = '"x"' } })
        assert.equal(0, r.code)
        assert.same({ id = 42 }, cjson.decode(r.out[1].key))
        assert.same({ was = 41, v = "x" }, cjson.decode(r.out[1].payload))
    end)

    it("a value that is not JSON is a deserialize error", function()
        local r = run(job('{ value = "json" }', "", '{ value = "json" }'), {
            { key = "a", payload = "{nope" }, { key = "b", payload = "" }, { key = "c", payload = "[1,]" },
            { key = "d", payload = '{"fine":1}' },
        })
        assert.equal(0, r.code)
        assert.same({ "d" }, keys(r.out))
        assert.same({ "a", "b", "c" }, keys(r.dlq))
        assert.same({ "deserialize", "deserialize", "deserialize" }, stages(r.dlq))
    end)

    it("a value JSON cannot hold (a function, NaN) is a serialize error", function()
        local r = run(job('{ value = "json" }', [[
   :map_values(function(v) if v.f then return { f = print } end return { n = 0/0 } end)]],
            '{ value = "json" }'), { { key = "a", payload = '{"f":1}' }, { key = "b", payload = "{}" } })
        assert.equal(0, r.code)
        assert.same({}, r.out)
        assert.same({ "serialize", "serialize" }, stages(r.dlq))
    end)

    -- A json -> json pass-through must not change the numbers a document holds.
    it("an integer of 16 digits round-trips exactly", function()
        local r = run(job('{ value = "json" }', ":map_values(function(v) return v end)", '{ value = "json" }'),
            { { key = "k", payload = '{"id":1234567890123456,"ts":1700000000123}' } })
        assert.equal(0, r.code)
        assert.truthy(r.out[1].payload:find("1234567890123456", 1, true), r.out[1].payload)
        assert.same({ id = 1234567890123456, ts = 1700000000123 }, cjson.decode(r.out[1].payload))
    end)

    it("an empty array stays an array", function()
        local r = run(job('{ value = "json" }', ":map_values(function(v) return v end)", '{ value = "json" }'),
            { { key = "k", payload = '{"tags":[],"n":1}' } })
        assert.equal(0, r.code)
        assert.truthy(r.out[1].payload:find('"tags":[]', 1, true), r.out[1].payload)
    end)
end)

describe("json serde details", function()
    local PASS = job('{ value = "json" }', ":map_values(function(v) return v end)", '{ value = "json" }')

    it("\\u escapes inside a JSON value are characters (UTF-8), unlike the envelope's", function()
        local r = run(job('{ value = "json" }', [[
   :map_values(function(v) return (v.s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end)]], "{}"),
            { { key = "1", payload = '{"s":"caf\\u00e9"}' }, { key = "2", payload = '{"s":"\\ud83d\\ude00"}' },
              { key = "3", payload = '{"s":"\\u0000\\u001f"}' }, { key = "4", payload = '{"s":"caf\195\169"}' } })
        assert.equal(0, r.code)
        assert.same({ "636166c3a9", "f09f9880", "001f", "636166c3a9" }, payloads(r.out))
    end)

    it("strings with quotes, backslashes and control characters survive a pass-through", function()
        local str = "q\"b\\s/\b\f\n\r\t\0\1\127 caf\195\169"
        local r = run(PASS, { { key = "k", payload = cjson.encode({ s = str }) } })
        assert.equal(0, r.code)
        assert.equal(str, cjson.decode(r.out[1].payload).s)
    end)

    it("numbers survive a pass-through: integers to 2^53 exactly, fractions as the same double", function()
        local text = '[0,-1,9007199254740992,-9007199254740992,1234567890123456,0.1,-0.5,1e-7,3.14,1.5e300,'
            .. '123456789012345678,2.5e-300,100]'
        local r = run(PASS, { { key = "k", payload = text } })
        assert.equal(0, r.code)
        local got = r.out[1].payload
        local want = { 0, -1, 9007199254740992, -9007199254740992, 1234567890123456, 0.1, -0.5, 1e-7, 3.14,
            1.5e300, 123456789012345678, 2.5e-300, 100 }
        local i = 0
        for num in got:gmatch("[^%[%],]+") do
            i = i + 1
            assert.equal(want[i], tonumber(num), "element " .. i .. " of " .. got)
        end
        assert.equal(#want, i)
        for _, exact in ipairs({ "9007199254740992", "1234567890123456", "0.1", "-0.5", "3.14", "100" }) do
            assert.truthy(got:find(exact, 1, true), exact .. " in " .. got)
        end
    end)

    it("[] stays [], {} stays {}, nested and after changes", function()
        local r = run(job('{ value = "json" }', [[
   :map_values(function(v) table.insert(v.grow, 1); return v end)]], '{ value = "json" }'),
            { { key = "k", payload = '{"a":[],"o":{},"n":[[],{}],"grow":[]}' } })
        assert.equal(0, r.code)
        local out = r.out[1].payload
        assert.truthy(out:find('"a":[]', 1, true), out)
        assert.truthy(out:find('"o":{}', 1, true), out)
        assert.truthy(out:find('"n":[[],{}]', 1, true), out)
        assert.truthy(out:find('"grow":[1]', 1, true), out)
    end)

    it("an object with numeric string keys stays an object", function()
        local r = run(PASS, { { key = "k", payload = '{"1":"a","2":"b"}' } })
        assert.equal(0, r.code)
        assert.equal("{", r.out[1].payload:sub(1, 1))
        assert.same({ ["1"] = "a", ["2"] = "b" }, cjson.decode(r.out[1].payload))
    end)

    it("a Lua sequence is an array; a hole is null", function()
        local r = run(job("{}", [[
   :map_values(function(v) return { list = { "a", "b" }, holes = { 1, nil, 3 } } end)]], '{ value = "json" }'),
            { { key = "k", payload = "" } })
        assert.equal(0, r.code)
        assert.same({ list = { "a", "b" }, holes = { 1, cjson.null, 3 } }, cjson.decode(r.out[1].payload))
    end)

    it("eddy.null as the whole value is the JSON text null, not a tombstone", function()
        local r = run(job("{}", ":map_values(function(v) return eddy.null end)", '{ value = "json" }'),
            { { key = "k", payload = "x" } })
        assert.equal(0, r.code)
        assert.equal("null", r.out[1].payload)
    end)

    it("whitespace around a document is fine", function()
        local r = run(PASS, { { key = "k", payload = ' \t\r\n {"a" : [ 1 , 2 ] } \n ' } })
        assert.equal(0, r.code)
        assert.same({ a = { 1, 2 } }, cjson.decode(r.out[1].payload))
    end)

    it("text that is not strict JSON is a deserialize error", function()
        local bad = { "01", "1.", ".5", "+1", "-", "[1,]", '{"a":1,}', "{'a':1}", "NaN", "Infinity", "tru",
            "nul", '"raw\ncontrol"', '"\\x"', '"\\u12"', "{} {}", "[1] x", "1e400", '{"a"}', "[", '"open' }
        local recs = {}
        for i, b in ipairs(bad) do recs[i] = { key = tostring(i), payload = b } end
        recs[#recs + 1] = { key = "good", payload = "[1]" }
        local r = run(PASS, recs)
        assert.equal(0, r.code)
        assert.same({ "good" }, keys(r.out))
        assert.equal(#bad, #r.dlq)
        for i, d in ipairs(r.dlq) do
            assert.equal(bad[i], d.payload)
            assert.equal("deserialize", h.header(d, "eddy.stage"), bad[i])
        end
    end)

    it("deep documents decode and encode; a table that contains itself is a serialize error", function()
        local deep = string.rep("[", 500) .. string.rep("]", 500)
        local r = run(job('{ value = "json" }', [[
   :map_values(function(v, k) if k == "loop" then local t = {}; t.self = t; return t end return v end)]],
            '{ value = "json" }'), { { key = "deep", payload = deep }, { key = "loop", payload = "{}" } })
        assert.equal(0, r.code)
        assert.same({ "deep" }, keys(r.out))
        assert.equal(deep, r.out[1].payload)
        assert.same({ "serialize" }, stages(r.dlq))
    end)

    it("a table key that is not a string or a number is a serialize error", function()
        local r = run(job("{}", ":map_values(function(v) return { [true] = 1 } end)", '{ value = "json" }'),
            { { key = "k", payload = "" } })
        assert.equal(0, r.code)
        assert.same({}, r.out)
        assert.same({ "serialize" }, stages(r.dlq))
    end)
end)

-- number -------------------------------------------------------------------------

describe("number serde", function()
    it("decodes decimal text to a Lua number and encodes a number as decimal text", function()
        local r = run(job('{ key = "number", value = "number" }', [[
   :map(function(k, v)
      if type(k) ~= "number" or type(v) ~= "number" then error("not numbers") end
      return k * 2, v + 1
   end)]], '{ key = "number", value = "number" }'), {
            { key = "1", payload = "41" }, { key = "-3", payload = "-7" }, { key = "10", payload = "2.5" },
            { key = "0", payload = "0" },
        })
        assert.equal(0, r.code)
        assert.same({ "2", "-6", "20", "0" }, keys(r.out))
        assert.same({ "42", "-6", "3.5", "1" }, payloads(r.out))
    end)

    it("writes integral results without a fraction or an exponent", function()
        local r = run(job("{}", [[
   :flat_map_values(function(v, emit) emit(10 / 2); emit(2^40); emit(-2^52); emit(1e15) end)]],
            '{ value = "number" }'), { { key = "k", payload = "" } })
        assert.equal(0, r.code)
        assert.same({ "5", "1099511627776", "-4503599627370496", "1000000000000000" }, payloads(r.out))
    end)

    it("text that is not a number is a deserialize error", function()
        local r = run(job('{ value = "number" }', "", '{ value = "number" }'),
            { { key = "a", payload = "abc" }, { key = "b", payload = "" }, { key = "c", payload = "12" } })
        assert.equal(0, r.code)
        assert.same({ "c" }, keys(r.out))
        assert.same({ "a", "b" }, keys(r.dlq))
        assert.same({ "deserialize", "deserialize" }, stages(r.dlq))
    end)

    it("encoding something that is not a number is a serialize error", function()
        local r = run(job("{}", "", '{ value = "number" }'), { { key = "a", payload = "twelve" } })
        assert.equal(0, r.code)
        assert.same({}, r.out)
        assert.same({ "serialize" }, stages(r.dlq))
    end)

    -- "the decimal text of a number, as kcat and the console tools show it":
    -- a value read as 0.1 is written as 0.1 (the shortest text that reads back the same).
    it("round-trips decimal fractions as the same text", function()
        local vals = { "0.1", "0.2", "1.1", "3.14", "-2.75", "1e-05" }
        local recs = {}
        for i, v in ipairs(vals) do recs[i] = { key = "k", payload = v } end
        local r = run(job('{ value = "number" }', ":map_values(function(v) return v end)",
            '{ value = "number" }'), recs)
        assert.equal(0, r.code)
        local got = payloads(r.out)
        for i, v in ipairs(vals) do
            assert.equal(tonumber(v), tonumber(got[i]))   -- the same number...
        end
        assert.same({ "0.1", "0.2", "1.1", "3.14", "-2.75" },      -- ...and the same text
            { got[1], got[2], got[3], got[4], got[5] })
    end)
end)

-- custom -------------------------------------------------------------------------

describe("custom serde {encode=, decode=}", function()
    local script = PRE .. [[
local job = eddy.job { name = "serde" }
local rev = { decode = function(s) return { text = s:reverse() } end,
              encode = function(t) return "[" .. t.text .. "]" end }
local csv = { decode = function(s)
                 local t = {}
                 for f in (s .. ","):gmatch("([^,]*),") do t[#t + 1] = f end
                 return t
              end,
              encode = function(t) return table.concat(t, ";") end }
job:source("in", { key = rev, value = csv })
   :map(function(k, v)
      if type(k) ~= "table" or type(v) ~= "table" then error("not decoded") end
      table.insert(v, k.text)
      return { text = k.text:upper() }, v
   end)
   :to("out", { key = rev, value = csv })
return job
]]

    it("decodes with decode and encodes with encode, keys and values", function()
        local r = run(script, { { key = "cba", payload = "x,y" }, { key = "", payload = "" } })
        assert.equal(0, r.code)
        assert.same({ "[ABC]", "[]" }, keys(r.out))
        assert.same({ "x;y;abc", ";" }, payloads(r.out))
    end)

    it("a decode that raises is a deserialize error naming the script line", function()
        local s = PRE .. [[
local job = eddy.job { name = "serde" }
local strict = { decode = function(s)
                    if s:sub(1, 1) ~= "#" then error("no hash") end -- <decode>
                    return s:sub(2)
                 end,
                 encode = function(v) return "#" .. v end }
job:source("in", { value = strict }):to("out", { value = strict })
return job
]]
        local n = 0
        for l in s:gmatch("([^\n]*)\n") do
            n = n + 1
            if l:find("<decode>", 1, true) then break end
        end
        local r = run(s, { { key = "a", payload = "#1" }, { key = "b", payload = "2" } })
        assert.equal(0, r.code)
        assert.same({ "#1" }, payloads(r.out))
        assert.same({ "deserialize" }, stages(r.dlq))
        local msg = h.header(r.dlq[1], "eddy.error")
        assert.truthy(msg:find("no hash", 1, true), msg)
        assert.truthy(msg:find("job.lua:" .. n, 1, true), msg)
    end)

    it("an encode that raises is a serialize error", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "serde" }
job:source("in")
   :to("out", { value = { encode = function(v) error("cannot " .. v) end, decode = tostring } })
return job
]], { { key = "a", payload = "x" } })
        assert.equal(0, r.code)
        assert.same({}, r.out)
        assert.same({ "serialize" }, stages(r.dlq))
        assert.truthy(h.header(r.dlq[1], "eddy.error"):find("cannot x", 1, true))
    end)

    it("a serde with only decode encodes like the string serde", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "serde" }
job:source("in", { value = { decode = function(s) return #s end } }):to("out", { value = { decode = tostring } })
return job
]], { { key = "a", payload = "four" } })
        assert.equal(0, r.code)
        assert.same({ "4" }, payloads(r.out))
    end)
end)

-- null keys and values -----------------------------------------------------------

describe("null keys and values (tombstones)", function()
    it("stay nil in Lua and are written back as null, whatever the serde", function()
        for _, serde in ipairs({ '"string"', '"bytes"', '"json"', '"number"',
            '{ decode = function() error("decode called on null") end, encode = function() error("encode called on nil") end }' }) do
            local r = run(job("{ key = " .. serde .. ", value = " .. serde .. " }", [[
   :peek(function(k, v) if k ~= nil or v ~= nil then error("not nil") end end)]],
                "{ key = " .. serde .. ", value = " .. serde .. " }"),
                { '{"key":null,"payload":null}', '{"payload":null}' })
            assert.equal(0, r.code, serde)
            assert.same({}, r.dlq, serde)
            assert.equal(2, #r.out, serde)
            for _, e in ipairs(r.out) do
                assert.is_nil(e.key, serde)
                assert.is_nil(e.payload, serde)
            end
        end
    end)

    it("the output line has \"key\":null and \"payload\":null", function()
        local r = run(job("{}", "", "{}"), { '{"key":null,"payload":null}' })
        assert.truthy(r.out_text:find('"key":null', 1, true))
        assert.truthy(r.out_text:find('"payload":null', 1, true))
    end)

    it("a step returning nil makes a tombstone; a tombstone can be turned back into a value", function()
        local r = run(job('{ value = "json" }', [[
   :map_values(function(v) if v == nil then return { revived = true } end return nil end)]],
            '{ value = "json" }'), { { key = "a", payload = '{"x":1}' }, '{"key":"b","payload":null}' })
        assert.equal(0, r.code)
        assert.same({ "a", "b" }, keys(r.out))
        assert.is_nil(r.out[1].payload)
        assert.same({ revived = true }, cjson.decode(r.out[2].payload))
    end)

    it("an empty key or value is not null", function()
        local r = run(job("{}", [[
   :map_values(function(v, k) return type(k) .. #k .. type(v) .. #v end)]], "{}"),
            { { key = "", payload = "" } })
        assert.equal(0, r.code)
        assert.equal("", r.out[1].key)
        assert.equal("string0string0", r.out[1].payload)
    end)
end)

-- binary keys ----------------------------------------------------------------------

describe("binary keys", function()
    local script = job('{ key = "bytes" }', [[
   :map_values(function(v, k) return (k:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end)]],
        '{ key = "bytes" }')

    it("\\u0000 and the other control escapes are single bytes, NUL included", function()
        local r = run(script, {
            '{"key":"a\\u0000b","payload":""}',
            '{"key":"\\u0000","payload":""}',
            '{"key":"\\u0001\\u001f\\u007f","payload":""}',
            '{"key":"\\u0000\\u0000\\u0000\\u0000\\u0000","payload":""}',
        })
        assert.equal(0, r.code)
        assert.same({ "610062", "00", "011f7f", "0000000000" }, payloads(r.out))
        assert.same({ "a\0b", "\0", "\1\31\127", "\0\0\0\0\0" }, keys(r.out))
    end)

    it("escapes above \\u00ff are UTF-8, surrogate pairs included", function()
        local r = run(script, {
            '{"key":"\\u20ac","payload":""}',
            '{"key":"\\ud83d\\ude00","payload":""}',
            '{"key":"\\u0100","payload":""}',
        })
        assert.equal(0, r.code)
        assert.same({ "e282ac", "f09f9880", "c480" }, payloads(r.out))
    end)

    it("the JSON short escapes are their bytes", function()
        local r = run(script, { '{"key":"\\"\\\\\\/\\b\\f\\n\\r\\t","payload":""}' })
        assert.equal(0, r.code)
        assert.same({ hex("\"\\/\b\f\n\r\t") }, payloads(r.out))
    end)

    it("a key with NUL bytes is partitioned by all its bytes", function()
        local ks = { "a\0b", "a\0c", "\0", "\0\0", "x\0\0\0\0y" }
        local recs = {}
        for i, k in ipairs(ks) do recs[i] = { key = k, payload = "" } end
        local r = run(job('{ key = "bytes" }', ":map_values(function(v, k, rec) return tostring(rec.partition) end)",
            '{ key = "bytes" }'), recs, { "--partitions", "13" })
        assert.equal(0, r.code)
        for i, k in ipairs(ks) do
            assert.equal(k, r.out[i].key)
            assert.equal(tostring(h.partition_for(k, 13)), r.out[i].payload, hex(k))
            assert.equal(h.partition_for(k, 13), r.out[i].partition, hex(k))
        end
    end)

    it("eddy's output read back as input gives the same keys and payloads (round trip)", function()
        local all = {}
        for i = 0, 255 do all[#all + 1] = string.char(i) end
        all = table.concat(all)
        local pass = job('{ key = "bytes", value = "bytes" }', "", '{ key = "bytes", value = "bytes" }')
        local first = run(pass, { { key = all, payload = all }, '{"key":"k\\u0000","payload":"\\u00ff\\u0000"}' })
        assert.equal(0, first.code)
        assert.equal(2, #first.out)
        assert.equal(hex(all), hex(first.out[1].key))
        assert.equal(hex(all), hex(first.out[1].payload))
        -- feed the output lines back (their topic is "out": drop it, so "in" is used)
        local again = {}
        for l in first.out_text:gmatch("[^\n]+") do
            again[#again + 1] = (l:gsub('^{"topic":"out",', "{"))
        end
        local second = run(pass, again)
        assert.equal(0, second.code)
        assert.equal(2, #second.out)
        assert.equal(hex(all), hex(second.out[1].key))
        assert.equal(hex(all), hex(second.out[1].payload))
        assert.equal(hex("k\0"), hex(second.out[2].key))
        assert.equal(first.out_text, second.out_text)
    end)

    it("output lines have no raw control characters", function()
        local all = {}
        for i = 0, 31 do all[#all + 1] = string.char(i) end
        all = table.concat(all)
        local r = run(job('{ key = "bytes", value = "bytes" }', "", '{ key = "bytes", value = "bytes" }'),
            { { key = all, payload = all } })
        assert.equal(0, r.code)
        local body = r.out_text:sub(1, -2)
        assert.equal("\n", r.out_text:sub(-1))
        assert.falsy(body:find("%c"), "a raw control character in " .. body)
    end)
end)
