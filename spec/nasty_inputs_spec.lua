-- spec/nasty_inputs_spec.lua: what real topics carry, through the real binary the way a
-- user runs it. Records of 0 bytes and of 10 MB (4 MiB through the development broker,
-- whose partitions hold ~5 MiB), null and empty keys and values with the string, json and
-- number serdes through map, filter, count, a window and a join, binary keys with NUL
-- bytes (file envelope and Kafka) also as store keys, invalid UTF-8, JSON nested 10,000
-- deep, numbers out of range, negative / zero / far-future / INT64 timestamps, 1M
-- distinct keys into one window, duplicate header names. For each: the record is
-- processed or dead-lettered with a reason, nothing crashes or stalls, and the good
-- records around it (same input, before and after) all come out as computed here.
local h = require "helper"
local cjson = require "cjson"

local PRE = 'local eddy = require "eddy"\n'
local q = h.q

-- an envelope line with exact timestamps (cjson writes 14 significant digits)
local function line(t)
    local e = {}
    for k, v in pairs(t) do if k ~= "ts" then e[k] = v end end
    if e.payload == nil then e.payload = cjson.null end
    local s = cjson.encode(e)
    if t.ts then s = s:sub(1, -2) .. ',"ts":' .. t.ts .. "}" end
    return s
end

local function input_text(records)
    local out = {}
    for i, r in ipairs(records) do out[i] = type(r) == "string" and r or line(r) end
    return table.concat(out, "\n") .. "\n"
end

--- Run SCRIPT in file mode over RECORDS (tables or raw lines, or a path with opts.path),
--- under `timeout` (a stall fails the spec instead of hanging it). opts.time: measure the
--- peak RSS with /usr/bin/time. Returns code, out, dlq, by_topic, stderr, secs, rss_kb.
local function run(script, records, args, opts)
    opts = opts or {}
    local dir = h.tmpdir()
    local sp = h.script(dir, "job.lua", script)
    local inp = opts.path or h.write(dir .. "/in.jsonl", input_text(records))
    local argv = { h.EDDY, "run", sp, "--input", inp, "--output", dir .. "/out.jsonl",
        "--dlq", dir .. "/dlq.jsonl", "--state-dir", dir .. "/state", "--quiet", "--no-watch" }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    for i, a in ipairs(argv) do argv[i] = q(a) end
    local cmd = ("timeout -k 5 %d %s%s < /dev/null > %s 2> %s"):format(opts.timeout or 60,
        opts.time and ("/usr/bin/time -o %s -f %%M "):format(q(dir .. "/rss")) or "",
        table.concat(argv, " "), q(dir .. "/stdout"), q(dir .. "/stderr"))
    local p = io.popen("date +%s.%N"); local s0 = tonumber(p:read("*l")); p:close()
    local ok, _, code = os.execute(cmd)
    if type(ok) == "number" then code = ok / 256 end
    p = io.popen("date +%s.%N"); local s1 = tonumber(p:read("*l")); p:close()
    local r = { code = code, stderr = h.read(dir .. "/stderr") or "", secs = s1 - s0,
        out_text = h.read(dir .. "/out.jsonl") or "", dlq_text = h.read(dir .. "/dlq.jsonl") or "" }
    if opts.time then r.rss_kb = tonumber((h.read(dir .. "/rss") or ""):match("(%d+)%s*$")) end
    if not opts.keep_text then
        r.out, r.dlq = h.envelopes(r.out_text), h.envelopes(r.dlq_text)
        r.by = {}
        for _, e in ipairs(r.out) do
            r.by[e.topic] = r.by[e.topic] or {}
            table.insert(r.by[e.topic], e)
        end
    end
    os.execute("rm -rf " .. q(dir))
    return r
end

local function payloads(list)
    local t = {}
    for i, e in ipairs(list or {}) do t[i] = e.payload end
    return t
end

local function keys(list)
    local t = {}
    for i, e in ipairs(list or {}) do t[i] = e.key == nil and "<nil>" or e.key end
    return t
end

-- the DLQ as { {payload, stage, error}, ... } in order
local function dead(r)
    local t = {}
    for i, e in ipairs(r.dlq) do
        t[i] = { payload = e.payload, stage = h.header(e, "eddy.stage"), error = h.header(e, "eddy.error") }
    end
    return t
end

local function assert_dead(r, expected)
    local got = dead(r)
    assert.equal(#expected, #got, "dead letters: " .. r.dlq_text:sub(1, 2000))
    for i, x in ipairs(expected) do
        assert.equal(x[1], got[i].payload, "dead letter " .. i)
        assert.equal(x[2], got[i].stage, "dead letter " .. i .. " stage")
        assert.truthy(got[i].error and got[i].error:find(x[3], 1, true),
            ("dead letter %d: %q does not say %q"):format(i, tostring(got[i].error), x[3]))
    end
end

local function ok_run(r)
    assert.equal(0, r.code, "exit " .. tostring(r.code) .. ": " .. r.stderr:sub(1, 2000))
end

---------------------------------------------------------------- sizes
describe("records of 0 bytes and of 10 MB (file mode)", function()
    local BIG = 10 * 1024 * 1024
    local big = ("x"):rep(BIG)

    it("string serde: empty and 10 MB values and keys go through a map and a copy in C", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "sizes" }
job:source("in"):map(function(k, v) return #k .. "/" .. k:sub(1, 4), #v .. ":" .. v:sub(1, 8) end):to("mapped")
job:source("raw"):to("copied")                 -- read straight into a sink: copied in C
return job
]], {
            { topic = "in", key = "g1", payload = "hello" },
            { topic = "in", key = "", payload = "" },
            { topic = "in", key = "big", payload = big },
            { topic = "in", key = big, payload = "v" },
            { topic = "in", key = "g2", payload = "bye" },
            { topic = "raw", key = "g1", payload = "hello" },
            { topic = "raw", key = "", payload = "" },
            { topic = "raw", key = "big", payload = big },
            { topic = "raw", key = "g2", payload = "bye" },
        })
        ok_run(r)
        assert.same({ "2/g1", "0/", "3/big", BIG .. "/xxxx", "2/g2" }, keys(r.by.mapped))
        assert.same({ "5:hello", "0:", BIG .. ":xxxxxxxx", "1:v", "3:bye" }, payloads(r.by.mapped))
        assert.same({ "g1", "", "big", "g2" }, keys(r.by.copied))
        assert.equal(4, #r.by.copied)
        assert.equal("hello", r.by.copied[1].payload)
        assert.equal("", r.by.copied[2].payload)
        assert.equal(big, r.by.copied[3].payload)
        assert.equal("bye", r.by.copied[4].payload)
        assert.same({}, r.dlq)
    end)

    it("--input-format lines: an empty line, a 10 MB line, NUL bytes, no newline at the end", function()
        local dir = h.tmpdir()
        local path = h.write(dir .. "/in.txt", "first\n\n" .. big .. "\n\0bin\255\nlast")
        local r = run(PRE .. [[
local job = eddy.job { name = "lines" }
job:source("in"):map_values(function(v) return #v .. ":" .. v:sub(1, 4) end):to("out")
return job
]], nil, { "--input-format", "lines" }, { path = path })
        os.execute("rm -rf " .. q(dir))
        ok_run(r)
        assert.same({ "5:firs", "0:", BIG .. ":xxxx", "5:\0bin", "4:last" }, payloads(r.out))
        assert.same({}, r.dlq)
    end)

    it("json serde: a 10 MB JSON value is decoded and encoded; an empty one is dead-lettered", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "sizesj" }
job:source("in", { value = "json" })
   :map_values(function(v) return { n = #v.s, head = v.s:sub(1, 3) } end)
   :to("out", { value = "json" })
return job
]], {
            { key = "g1", payload = '{"s":"hello"}' },
            { key = "empty", payload = "" },
            { key = "big", payload = cjson.encode({ s = big }) },
            { key = "g2", payload = '{"s":"bye"}' },
        })
        ok_run(r)
        local got = {}
        for i, e in ipairs(r.out) do got[i] = cjson.decode(e.payload) end
        assert.same({ { n = 5, head = "hel" }, { n = BIG, head = "xxx" }, { n = 3, head = "bye" } }, got)
        assert_dead(r, { { "", "deserialize", "invalid JSON: unexpected end of input" } })
    end)
end)

---------------------------------------------------------------- null and empty
describe("null and empty keys and values", function()
    -- three sources (string, json, number values) through a filter + map, a count, a
    -- windowed count and a left join with a table; the expectations are computed here
    -- from the rules in README (count skips nil keys and nil values; the windowed count
    -- skips nil keys and counts nil values; the join drops nil keys and nil values).
    local SCRIPT = PRE .. [[
local job = eddy.job { name = "nulls" }
local function d(x)
   if x == nil then return "nil" end
   return type(x) .. ":" .. tostring(x)
end
local t = job:table("t")
for _, spec in ipairs { { "s", "string" }, { "j", "json" }, { "n", "number" } } do
   local topic, serde = spec[1], spec[2]
   local s = job:source(topic, { value = serde })
   s:filter(function(k, v) return v ~= "drop" end)
    :map(function(k, v) return k, topic .. " " .. d(k) .. " " .. d(v) end):to("mapped")
   s:group_by_key():count { store = topic .. "-count" }:to_stream()
    :map(function(k, n) return k, topic .. " " .. d(k) .. " " .. n end):to("counted")
   s:group_by_key():window(eddy.tumbling { size = 1000 }):count { store = topic .. "-win" }:to_stream()
    :map(function(k, n, rec) return k, topic .. " " .. d(k) .. " " .. rec.window.start .. " " .. n end)
    :to("windowed")
   s:left_join(t, function(v, tv, k) return topic .. " " .. d(k) .. " " .. d(v) .. " " .. d(tv) end)
    :to("joined")
end
return job
]]
    local GOOD = { s = { "v", "string:v" }, j = { '"str"', "string:str" }, n = { "7", "number:7" } }
    local BAD_EMPTY = { j = "invalid JSON: unexpected end of input", n = "not a number: " }
    local TABLE = { [""] = "T-empty", a = "T-a" }
    -- key, value ("GOOD" for the topic's good value)
    local SHAPES = { { "a", "GOOD" }, { "", "GOOD" }, { nil, "GOOD" }, { "a", "" }, { "a", nil },
        { "", nil }, { nil, nil }, { "b", "GOOD" }, { "a", "GOOD" } }

    it("are processed or dead-lettered, and every good record comes out", function()
        local recs = { { topic = "t", key = "", payload = TABLE[""], ts = 1 },
            { topic = "t", key = "a", payload = TABLE.a, ts = 1 } }
        local want = { mapped = {}, counted = {}, windowed = {}, joined = {} }
        local want_dead = {}
        local function d(x) return x == nil and "nil" or x end
        for _, topic in ipairs({ "s", "j", "n" }) do
            local count, wcount = {}, {}
            for _, sh in ipairs(SHAPES) do
                local k, raw = sh[1], sh[2]
                if raw == "GOOD" then raw = GOOD[topic][1] end
                recs[#recs + 1] = { topic = topic, key = k, payload = raw, ts = 100 }
                local dv                              -- the decoded value as d() shows it
                if raw == nil then dv = nil
                elseif raw == GOOD[topic][1] then dv = GOOD[topic][2]
                elseif topic == "s" then dv = "string:" .. raw
                else dv = false end                   -- does not decode
                if dv == false then
                    want_dead[#want_dead + 1] = { raw, "deserialize", BAD_EMPTY[topic] }
                else
                    local dk = k == nil and "nil" or "string:" .. k
                    table.insert(want.mapped, topic .. " " .. dk .. " " .. d(dv))
                    if k ~= nil and dv ~= nil then
                        count[k] = (count[k] or 0) + 1
                        table.insert(want.counted, topic .. " " .. dk .. " " .. count[k])
                    end
                    if k ~= nil then
                        wcount[k] = (wcount[k] or 0) + 1
                        table.insert(want.windowed, topic .. " " .. dk .. " 0 " .. wcount[k])
                    end
                    if k ~= nil and dv ~= nil then
                        local tv = TABLE[k] and "string:" .. TABLE[k] or "nil"
                        table.insert(want.joined, topic .. " " .. dk .. " " .. dv .. " " .. tv)
                    end
                end
            end
        end
        local r = run(SCRIPT, recs)
        ok_run(r)
        for _, topic in ipairs({ "mapped", "counted", "windowed", "joined" }) do
            assert.same(want[topic], payloads(r.by[topic]), topic)
        end
        assert_dead(r, want_dead)
        -- a null key stays null, an empty key stays empty
        local ks = keys(r.by.mapped)
        assert.same({ "a", "", "<nil>" }, { ks[1], ks[2], ks[3] })
    end)
end)

---------------------------------------------------------------- binary keys
describe("binary keys with NUL bytes (file mode)", function()
    local KEYS = { "a", "a\0", "a\0b", "\0", "\0\0", "", "\255\0\254", "a\0", "\0", "a", "a\0b\0" }

    it("round-trip through the envelope and stay distinct as store keys", function()
        local recs, want_echo, want_count, n = {}, {}, {}, {}
        recs[1] = { key = "first", payload = "g" }
        want_echo[1] = { "first", "g" }
        n.first = 1
        want_count[1] = { "first", "1" }
        for i, k in ipairs(KEYS) do
            local v = "\0v" .. i .. "\255"
            recs[#recs + 1] = { key = k, payload = v }
            want_echo[#want_echo + 1] = { k, v }
            n[k] = (n[k] or 0) + 1
            want_count[#want_count + 1] = { k, tostring(n[k]) }
        end
        -- LMDB keys are at most 511 bytes: 510 of the job's (one is eddy's tag)
        recs[#recs + 1] = { key = ("k"):rep(510), payload = "max" }
        want_echo[#want_echo + 1] = { ("k"):rep(510), "max" }
        want_count[#want_count + 1] = { ("k"):rep(510), "1" }
        recs[#recs + 1] = { key = ("k"):rep(511), payload = "too long" }
        want_echo[#want_echo + 1] = false            -- dead-lettered: its echo is withdrawn
        recs[#recs + 1] = { key = "last", payload = "g" }
        want_echo[#want_echo + 1] = { "last", "g" }
        want_count[#want_count + 1] = { "last", "1" }
        local r = run(PRE .. [[
local job = eddy.job { name = "binkeys" }
local s = job:source("in")
s:map_values(function(v) return v end):to("echo")
s:group_by_key():count { store = "counts" }:to_stream():map_values(tostring):to("counts")
return job
]], recs, nil, { keep_text = true })
        ok_run(r)
        assert.is_nil(r.out_text:find("\0", 1, true), "a raw NUL in the output")
        local out = h.envelopes(r.out_text)
        local echo, counts = {}, {}
        for _, e in ipairs(out) do
            table.insert(e.topic == "echo" and echo or counts, { e.key, e.payload })
        end
        local we = {}
        for _, x in ipairs(want_echo) do if x then we[#we + 1] = x end end
        assert.same(we, echo)
        assert.same(want_count, counts)
        local dl = h.envelopes(r.dlq_text)
        assert.equal(1, #dl)
        assert.equal(("k"):rep(511), dl[1].key)
        assert.equal("process", h.header(dl[1], "eddy.stage"))
        assert.truthy(h.header(dl[1], "eddy.error"):find("store counts: a key is at most 510 bytes, got one of 511", 1, true),
            h.header(dl[1], "eddy.error"))
    end)
end)

---------------------------------------------------------------- UTF-8
describe("invalid UTF-8", function()
    it("in a json value is dead-lettered; re-encoded as JSON it is dead-lettered at serialize", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "utf8" }
job:source("j", { value = "json" }):map_values(function(v) return { got = v } end):to("jout", { value = "json" })
job:source("s"):map_values(function(v) return { got = v } end):to("sout", { value = "json" })
return job
]], {
            { topic = "j", key = "1", payload = '"ok"' },
            { topic = "j", key = "2", payload = '"\255\254"' },                -- not UTF-8
            { topic = "j", key = "3", payload = '{"x":"a\\n\255"}' },           -- after an escape
            { topic = "j", key = "4", payload = '"\195\169"' },                 -- é
            { topic = "j", key = "5", payload = '"\240\159\152\128"' },         -- U+1F600
            { topic = "j", key = "6", payload = '"\\u00ff"' },                  -- ÿ, escaped
            { topic = "j", key = "7", payload = '"\237\160\128"' },             -- a UTF-16 surrogate
            { topic = "j", key = "8", payload = '"\192\175"' },                 -- overlong "/"
            { topic = "j", key = "9", payload = '"\244\144\128\128"' },         -- above U+10FFFF
            { topic = "j", key = "9a", payload = '"\\ud800"' },                -- a lone surrogate escape
            { topic = "j", key = "9b", payload = '"\\ud83d\\ude00"' },        -- a pair: U+1F600
            { topic = "s", key = "10", payload = "x\255y" },
            { topic = "s", key = "11", payload = "\195\169t\195\169" },
            { topic = "j", key = "12", payload = '"ok2"' },
        })
        ok_run(r)
        local function got(list)
            local t = {}
            for i, e in ipairs(list or {}) do t[i] = cjson.decode(e.payload).got end
            return t
        end
        assert.same({ "ok", "\195\169", "\240\159\152\128", "\195\191", "\240\159\152\128", "ok2" }, got(r.by.jout))
        assert.same({ "1", "4", "5", "6", "9b", "12" }, keys(r.by.jout))
        assert.same({ "\195\169t\195\169" }, got(r.by.sout))
        assert_dead(r, {
            { '"\255\254"', "deserialize", "invalid JSON: invalid UTF-8 in string at character 2" },
            { '{"x":"a\\n\255"}', "deserialize", "invalid UTF-8 in string at character 10" },
            { '"\237\160\128"', "deserialize", "invalid UTF-8" },
            { '"\192\175"', "deserialize", "invalid UTF-8" },
            { '"\244\144\128\128"', "deserialize", "invalid UTF-8" },
            { '"\\ud800"', "deserialize", "invalid JSON: lone surrogate in \\u escape at character 2" },
            { "x\255y", "serialize", "cannot encode a string that is not UTF-8 as JSON (byte 0xff at offset 1)" },
        })
    end)
end)

---------------------------------------------------------------- nesting
describe("JSON nested 10,000 deep", function()
    it("is dead-lettered with a reason when decoded or encoded, no C stack overflow", function()
        local D = 10000
        local r = run(PRE .. [[
local job = eddy.job { name = "deep" }
job:source("j", { value = "json" }):map_values(function(v) return v end):to("jout", { value = "json" })
job:source("s"):map_values(function(v)
   local n = tonumber(v)
   local t = {}
   for _ = 1, n do t = { t } end                  -- a table nested n deep
   return t
end):to("sout", { value = "json" })
return job
]], {
            { topic = "j", key = "1", payload = "[1]" },
            { topic = "j", key = "2", payload = ("["):rep(D) .. ("]"):rep(D) },
            { topic = "j", key = "3", payload = ('{"a":'):rep(D) .. "1" .. ("}"):rep(D) },
            { topic = "j", key = "4", payload = ("["):rep(100) .. ("]"):rep(100) },
            { topic = "s", key = "5", payload = tostring(D) },
            { topic = "s", key = "6", payload = "2" },
            { topic = "j", key = "7", payload = '{"b":2}' },
        })
        ok_run(r)
        assert.same({ "[1]", ("["):rep(100) .. ("]"):rep(100), '{"b":2}' }, payloads(r.by.jout))
        assert.same({ "[[{}]]" }, payloads(r.by.sout))     -- (an empty table is {})
        assert_dead(r, {
            { ("["):rep(D) .. ("]"):rep(D), "deserialize", "invalid JSON: nested too deep" },
            { ('{"a":'):rep(D) .. "1" .. ("}"):rep(D), "deserialize", "invalid JSON: nested too deep" },
            { tostring(D), "serialize", "nested too deep" },
        })
    end)
end)

---------------------------------------------------------------- numbers
describe("numbers out of range", function()
    it("json serde: beyond a double is dead-lettered; NaN/Infinity are not JSON; big integers round", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "jnum" }
job:source("in", { value = "json" }):map_values(function(v) return { n = v } end):to("out", { value = "json" })
return job
]], {
            { key = "g1", payload = "1" },
            { key = "a", payload = "1e400" },
            { key = "b", payload = "-1e400" },
            { key = "c", payload = "18446744073709551616" },       -- 2^64
            { key = "d", payload = "9007199254740993" },           -- 2^53 + 1: a double holds 2^53
            { key = "e", payload = "NaN" },
            { key = "f", payload = "Infinity" },
            { key = "g", payload = "-Infinity" },
            { key = "h", payload = "1e-400" },                     -- underflows to 0
            { key = "i", payload = ("9"):rep(400) },               -- 400 digits
            { key = "j", payload = "-0" },
            { key = "g2", payload = "2" },
        })
        ok_run(r)
        assert.same({ "g1", "c", "d", "h", "j", "g2" }, keys(r.out))
        assert.same({ '{"n":1}', '{"n":1.8446744073709552e+19}', '{"n":9007199254740992}', '{"n":0}',
            '{"n":0}', '{"n":2}' }, payloads(r.out))
        assert_dead(r, {
            { "1e400", "deserialize", "invalid JSON: number out of range" },
            { "-1e400", "deserialize", "invalid JSON: number out of range" },
            { "NaN", "deserialize", "invalid JSON: expected a value" },
            { "Infinity", "deserialize", "invalid JSON: expected a value" },
            { "-Infinity", "deserialize", "invalid JSON: expected a value" },
            { ("9"):rep(400), "deserialize", "invalid JSON: number out of range" },
        })
    end)

    it("number serde: decimal text only, finite; a result that overflows is not written as inf", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "nnum" }
job:source("in", { value = "number" }):map_values(function(v) return v * 2 end):to("out", { value = "number" })
return job
]], {
            { key = "g1", payload = "1" },
            { key = "a", payload = "1e999" },
            { key = "b", payload = "-1e999" },
            { key = "c", payload = "0x10" },
            { key = "d", payload = " 5" },
            { key = "e", payload = "5\n" },
            { key = "f", payload = "nan" },
            { key = "g", payload = "inf" },
            { key = "h", payload = "1e308" },                       -- doubled: beyond a double
            { key = "i", payload = "9007199254740993" },
            { key = "j", payload = "2.5" },
            { key = "g2", payload = "2" },
        })
        ok_run(r)
        assert.same({ "g1", "i", "j", "g2" }, keys(r.out))
        assert.same({ "2", "18014398509481984", "5", "4" }, payloads(r.out))
        assert_dead(r, {
            { "1e999", "deserialize", "number out of range: 1e999" },
            { "-1e999", "deserialize", "number out of range: -1e999" },
            { "0x10", "deserialize", "not a number: 0x10" },
            { " 5", "deserialize", "not a number:  5" },
            { "5\n", "deserialize", "not a number: 5" },
            { "nan", "deserialize", "not a number: nan" },
            { "inf", "deserialize", "not a number: inf" },
            { "1e308", "serialize", "number serde cannot encode inf (not a finite number)" },
        })
    end)
end)

---------------------------------------------------------------- timestamps
describe("negative, zero, far-future and INT64 timestamps", function()
    local SCRIPT = PRE .. [[
local job = eddy.job { name = "times" }
local s = job:source("in")
s:map_values(function(v, k, rec) return v .. "@" .. ("%d"):format(rec.ts) end):to("plain")
s:group_by_key():window(eddy.tumbling { size = 1000 }):count { store = "w" }:to_stream()
 :map(function(k, n, rec) return k, ("%d:%d"):format(rec.window.start, n) end):to("win")
return job
]]

    it("are processed or dead-lettered with a reason; a far-future one moves stream time (as in Kafka Streams)", function()
        local r = run(SCRIPT, {
            { key = "a", payload = "1", ts = 1000 },
            { key = "a", payload = "neg", ts = -5 },
            { key = "a", payload = "zero", ts = 0 },
            { key = "a", payload = "2", ts = 1500 },
            { key = "a", payload = "far", ts = 9999999999999 },
            { key = "a", payload = "3", ts = 2500 },
            { key = "a", payload = "max", ts = "9223372036854775807" },
            { key = "a", payload = "min", ts = "-9223372036854775808" },
            { key = "a", payload = "4", ts = 3500 },
        }, nil, { timeout = 30 })
        ok_run(r)
        assert.truthy(r.secs < 20, "took " .. r.secs .. " s")
        -- the plain map: every record but the dead-lettered ones, with its timestamp
        assert.same({ "1@1000", "zero@0", "2@1500", "far@9999999999999", "3@2500", "4@3500" },
            payloads(r.by.plain))
        assert.same({ 1000, 0, 1500, 9999999999999, 2500, 3500 },
            (function() local t = {} for i, e in ipairs(r.by.plain) do t[i] = e.ts end return t end)())
        -- the window: ts 0 is late at stream time 1000 (its window [0, 1000) closed); after
        -- "far", stream time is 9999999999999 and every later record is late for the window
        assert.same({ "1000:1", "1000:2", "9999999999000:1" }, payloads(r.by.win))
        assert_dead(r, {
            { "neg", "process", "window w: a record's timestamp must not be negative, got -5" },
            { "max", "process", "the record's timestamp 9223372036854775807 is out of range" },
            { "min", "process", "the record's timestamp -9223372036854775808 is out of range" },
        })
    end)

    it("from a timestamp extractor or emit are checked the same way", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "times2" }
job:source("in", { timestamp = function(k, v) return tonumber(v) end })
   :flat_map(function(k, v, emit, rec) emit(k, v, rec.ts * (k == "x" and 2 ^ 40 or 1)) end)
   :to("out")
job:source("p"):process { process = function(ctx, k, v) ctx:forward(k, v, tonumber(v)) end }:to("out")
return job
]], {
            { topic = "in", key = "a", payload = "1000" },
            { topic = "in", key = "b", payload = "1e300" },
            { topic = "in", key = "x", payload = "100000" },
            { topic = "p", key = "p1", payload = "3000" },
            { topic = "p", key = "p2", payload = "9223372036854775807" },
            { topic = "in", key = "c", payload = "2000" },
        })
        ok_run(r)
        assert.same({ "1000", "3000", "2000" }, payloads(r.out))
        assert.same({ 1000, 3000, 2000 }, { r.out[1].ts, r.out[2].ts, r.out[3].ts })
        assert_dead(r, {
            { "1e300", "process", "the source's timestamp extractor: the timestamp 1" },
            { "100000", "process", "emit's timestamp: the timestamp 109951162777600000 is out of range" },
            { "9223372036854775807", "process", "ctx:forward: a timestamp must be a number of milliseconds within -2^53..2^53" },
        })
    end)
end)

describe("negative timestamps into a stream-stream join", function()
    it("are dead-lettered with a reason; the records around them join", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "tjoin" }
local l, rt = job:source("l"), job:source("r")
l:join(rt, eddy.join_window { diff = 1000 }, function(a, b) return a .. "+" .. b end, { name = "j" }):to("out")
return job
]], {
            { topic = "l", key = "a", payload = "x", ts = 100 },
            { topic = "r", key = "a", payload = "y", ts = 200 },
            { topic = "l", key = "a", payload = "neg", ts = -5 },
            { topic = "r", key = "a", payload = "z", ts = 300 },
        })
        ok_run(r)
        assert.same({ "x+y", "x+z" }, payloads(r.out))
        assert_dead(r, { { "neg", "process", "join j: a record's timestamp must not be negative, got -5" } })
    end)
end)

---------------------------------------------------------------- 1M keys
describe("a burst of 1M distinct keys into one window (file mode)", function()
    it("gives one final result per key, in bounded memory", function()
        local N = 1000000
        local dir = h.tmpdir()
        local path = dir .. "/burst.jsonl"
        local f = assert(io.open(path, "wb"))
        local buf = {}
        for i = 1, N do
            buf[#buf + 1] = ('{"key":"k%d","payload":"v","ts":%d}\n'):format(i, 60000 + i % 60000)
            if #buf == 10000 then f:write(table.concat(buf)); buf = {} end
        end
        f:write(table.concat(buf))
        f:write('{"key":"close","payload":"v","ts":200000}\n')   -- closes the window
        f:close()
        local r = run(PRE .. [[
local job = eddy.job { name = "burst" }
job:source("in"):group_by_key():window(eddy.tumbling { size = "1m" })
   :count { store = "w", emit = "final" }:to_stream()
   :map_values(function(n, k, rec) return ("%d@%d"):format(n, rec.window.start) end):to("out")
return job
]], nil, nil, { path = path, time = true, timeout = 120, keep_text = true })
        os.execute("rm -rf " .. q(dir))
        ok_run(r)
        local n, sample = 0, {}
        for l in r.out_text:gmatch("[^\n]+") do
            n = n + 1
            if n % 99991 == 1 then sample[#sample + 1] = cjson.decode(l) end
        end
        assert.equal(N, n)
        for _, e in ipairs(sample) do
            assert.equal("1@60000", e.payload)
            local i = tonumber(e.key:match("^k(%d+)$"))
            assert.truthy(i and i >= 1 and i <= N, e.key)
            assert.equal(60000 + i % 60000, e.ts)
        end
        io.stderr:write(("\n# 1M-key burst: %.1f s, peak RSS %d MB\n"):format(r.secs, math.floor(r.rss_kb / 1024)))
        -- the peak is the window's close: 1M values and index entries deleted in one LMDB
        -- transaction, 1M results in one batch (~390 MB here; ~590 MB when the close pass
        -- read the whole index into Lua at once)
        assert.truthy(r.rss_kb < 1024 * 1024, "peak RSS " .. r.rss_kb .. " KB")
    end)
end)

---------------------------------------------------------------- headers
describe("headers with duplicate names (file mode)", function()
    it("rec.headers shows the last of a name; outputs and dead letters carry them all", function()
        local HS = { "h", "1", "h", "2", "n", cjson.null, "h", "3" }
        local r = run(PRE .. [[
local job = eddy.job { name = "hdrs" }
local s = job:source("in")
s:map_values(function(v, k, rec)
   if v == "boom" then error("boom") end
   local t = {}
   for name, x in pairs(rec.headers) do t[#t + 1] = name .. "=" .. tostring(x) end
   table.sort(t)
   return table.concat(t, ",")
end):to("seen")
s:flat_map(function(k, v, emit) emit(k, v .. "1"); emit(k, v .. "2") end):to("fm")
s:map(function(k, v) return k .. "!", v end):group_by_key():count { store = "c" }:to_stream()
 :map_values(tostring):to("counted")
return job
]], {
            { key = "g", payload = "x" },
            { key = "a", payload = "p", headers = HS },
            { key = "b", payload = "boom", headers = { "h", "1", "h", "2" } },
            { key = "c", payload = "q", headers = { "h", "1" } },
        })
        ok_run(r)
        assert.same({ "", "h=3,n=false", "h=1" }, payloads(r.by.seen))
        assert.same({ "x1", "x2", "p1", "p2", "q1", "q2" }, payloads(r.by.fm))
        assert.same({ "1", "1", "1" }, payloads(r.by.counted))
        assert.same({ "g!", "a!", "c!" }, keys(r.by.counted))
        local function hs(e) return e.headers or {} end
        assert.same({}, hs(r.by.seen[1]))
        assert.same(HS, hs(r.by.seen[2]))
        assert.same(HS, hs(r.by.fm[3]))
        assert.same(HS, hs(r.by.fm[4]))
        assert.same(HS, hs(r.by.counted[2]))        -- through the repartition too
        assert.same({ "h", "1" }, hs(r.by.seen[3]))
        assert.equal(1, #r.dlq)
        local dh = r.dlq[1].headers
        assert.same({ "h", "1", "h", "2", "eddy.error" }, { dh[1], dh[2], dh[3], dh[4], dh[5] })
    end)
end)

---------------------------------------------------------------- Kafka
describe("through Kafka (the development broker)", function()
    local K = require "kafka_helper"
    local c = K.cluster({ { "kin", 1 }, { "kout", 1 }, { "kcount", 1 }, { "kcopy", 1 },
        { "nasty-dlq", 1 }, { "tin", 1 }, { "tout", 1 } })
    local dir, brokers, procs
    lazy_setup(function() dir, brokers, procs = c:start() end)
    lazy_teardown(function() c:stop() end)

    local CLIENT = h.ROOT .. "/spec/tools/bytes_client.py"
    local function hex(s) return s and (s:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end)) end
    local function unhex(s) return s and (s:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

    local function produce(records, name)
        local lines = {}
        for i, r in ipairs(records) do
            local hs = {}
            for j, hv in ipairs(r.headers or {}) do hs[j] = { hv[1], hv[2] and hex(hv[2]) or cjson.null } end
            lines[i] = cjson.encode({ topic = r.topic, partition = 0, key = r.key and hex(r.key) or cjson.null,
                value = r.value and hex(r.value) or cjson.null, ts = r.ts, headers = hs })
        end
        local f = h.write(dir .. "/" .. name .. ".jsonl", table.concat(lines, "\n") .. "\n")
        local out = K.capture(("%s %s produce %s %s -X message.max.bytes=20000000 2>&1"):format(K.PYTHON, q(CLIENT),
            q(brokers), q(f)))
        local res = {}
        for l in out:gmatch("[^\n]+") do res[#res + 1] = cjson.decode(l) end
        assert.equal(#records, #res, out)
        for i, x in ipairs(res) do assert.equal(cjson.null, x.error, "record " .. i .. ": " .. tostring(x.error)) end
        return res
    end

    local function consume(topic)
        local out = K.capture(("%s %s consume %s %s 2>&1"):format(K.PYTHON, q(CLIENT), q(brokers), q(topic)))
        local list = {}
        for l in out:gmatch("[^\n]+") do
            local e = cjson.decode(l)
            local hs = {}
            for j, hv in ipairs(e.headers) do hs[j] = { hv[1], hv[2] ~= cjson.null and unhex(hv[2]) or nil } end
            list[#list + 1] = { key = e.key ~= cjson.null and unhex(e.key) or nil,
                value = e.value ~= cjson.null and unhex(e.value) or nil, ts = e.ts, headers = hs }
        end
        return list
    end

    local function wait_consume(topic, n, proc)
        local ok, res = pcall(K.wait_for, ("%d records in %s"):format(n, topic), 30, function()
            if proc and not proc:running() then error(proc.name .. " exited: " .. proc:stderr(), 0) end
            local l = consume(topic)
            if #l >= n then return l end
            return nil, #l
        end, 0.3)
        if not ok then error(tostring(res) .. (proc and ("\n" .. proc.name .. ": " .. proc:stderr()) or ""), 2) end
        return res
    end

    -- 4 MiB: the development broker drops a partition's oldest records beyond ~5 MiB
    -- (a 5 MiB record, acknowledged, is gone at once with everything before it)
    local BIG = 4 * 1024 * 1024
    local DUP = { { "h", "1" }, { "h", "2" }, { "n", nil }, { "h", "3" } }
    local NIL = {}
    local KEYS = { "g1", "a\0", "a", "a\0b", "\0", "\255\0\254", "", NIL, "big", "dup", "a\0", "ev", "nv", "g2" }
    local function records()
        local t = {}
        for i, k in ipairs(KEYS) do
            if k == NIL then k = nil end
            local v = "v" .. i
            if k == "big" then v = ("x"):rep(BIG) elseif k == "ev" then v = "" elseif k == "nv" then v = nil end
            t[i] = { topic = "kin", key = k, value = v, ts = 1700000000000 + i,
                headers = k == "dup" and DUP or nil }
        end
        return t
    end

    local SCRIPT = PRE .. [[
local job = eddy.job { name = "nasty" }
local function hex(s) return s and (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) or "nil" end
local s = job:source("kin")
s:map_values(function(v, k, rec)
   local hs = {}
   for name, x in pairs(rec.headers) do hs[#hs + 1] = name .. "=" .. tostring(x) end
   table.sort(hs)
   return hex(k) .. "|" .. (v and #v or "nil") .. "|" .. table.concat(hs, ",")
end):to("kout")
s:group_by_key():count { store = "counts" }:to_stream():map_values(tostring):to("kcount")
s:filter(function(k) return k == "big" end):to("kcopy")
return job
]]

    it("binary keys, empty and null keys and values, duplicate headers, a 4 MiB record", function()
        local recs = records()
        produce(recs, "kin")
        local sp = h.script(dir, "nasty.lua", SCRIPT)
        local p = K.start_eddy(dir, "eddy1", sp, brokers, { "-X", "message.max.bytes=8000000",
            "--commit-interval", "200" })
        procs[#procs + 1] = p
        -- kout: every record, in order, key bytes exact, headers as Lua saw them
        local want, n, wc = {}, {}, {}
        for i, r in ipairs(recs) do
            local hs = r.key == "dup" and "h=3,n=false" or ""
            want[i] = (r.key and hex(r.key) or "nil") .. "|" .. (r.value and #r.value or "nil") .. "|" .. hs
            if r.key ~= nil and r.value ~= nil then
                n[r.key] = (n[r.key] or 0) + 1
                wc[#wc + 1] = { r.key, tostring(n[r.key]) }
            end
        end
        local out = wait_consume("kout", #recs, p)
        local counts = wait_consume("kcount", #wc, p)
        local copy = wait_consume("kcopy", 1, p)
        assert.equal(0, (p:stop()))
        local got = {}
        for i, e in ipairs(out) do got[i] = e.value end
        assert.same(want, got)
        for i, e in ipairs(out) do assert.equal(recs[i].key, e.key, "key of record " .. i) end
        -- both h headers (and the null one) reach the output, in order
        local dup = out[10]
        assert.same({ { "h", "1" }, { "h", "2" }, { "n" }, { "h", "3" } }, dup.headers)
        -- counts: NUL keys distinct from their prefixes; null keys and values skipped
        local gc = {}
        for i, e in ipairs(counts) do gc[i] = { e.key, e.value } end
        assert.same(wc, gc)
        assert.equal(1, #copy)
        assert.equal(BIG, #copy[1].value)
        assert.equal(("x"):rep(BIG), copy[1].value)
        assert.same({}, consume("nasty-dlq"))
    end)

    it("an output larger than the producer's message.max.bytes stops the job with a clear line, nothing committed past it", function()
        local sp = h.script(dir, "nasty.lua", SCRIPT)
        for _, g in ipairs({ "at_least_once", "exactly_once" }) do
            local p = K.start_eddy(dir, "eddy-" .. g, sp, brokers, { "--app-id", "nasty-" .. g,
                "--guarantee", g, "--commit-interval", "200" })
            procs[#procs + 1] = p
            local rc = p:wait(30)
            assert.equal(1, rc, g .. ": " .. p:stderr())
            local last = p:stderr():match("([^\n]+)\n?$")
            assert.truthy(last:find("cannot write outputs: cannot produce to kcopy: a record of " .. (BIG + 3)
                .. " bytes", 1, true), last)
            assert.truthy(last:find("message.max.bytes", 1, true), last)
            -- (under exactly_once a produce() refusal used to let the transaction commit
            -- without the record and with its input offset: on a real cluster, a loss; the
            -- development broker drops offsets sent in a transaction, so this checks the
            -- offsets eddy commits itself)
            local offs = K.offsets(brokers, "nasty-" .. g, { { "kin", 1 } })
            local committed = offs.kin[0].committed
            assert.truthy(committed <= 8, g .. ": committed " .. committed .. " past the big record (offset 8)")
        end
    end)

    it("negative and far-future timestamps from a producer; an output timestamp of 0", function()
        produce({
            { topic = "tin", key = "a", value = "1", ts = 1000 },
            { topic = "tin", key = "a", value = "neg", ts = -5 },
            { topic = "tin", key = "a", value = "far", ts = 9999999999999 },
            { topic = "tin", key = "a", value = "2", ts = 2000 },
        }, "tin")
        local sp = h.script(dir, "times.lua", PRE .. [[
local job = eddy.job { name = "ktimes" }
local s = job:source("tin")
s:flat_map(function(k, v, emit, rec)
   emit(k, v .. "@" .. ("%d"):format(rec.ts))
   if v == "1" then emit(k, "zero", 0) end
end):to("tout")
s:group_by_key():window(eddy.tumbling { size = 1000 }):count { store = "w" }:to_stream()
 :map_values(function(n, k, rec) return ("%d:%d"):format(rec.window.start, n) end):to("tout")
return job
]])
        local t0 = os.time() * 1000
        local p = K.start_eddy(dir, "eddy-times", sp, brokers, { "--commit-interval", "200" })
        procs[#procs + 1] = p
        local out = wait_consume("tout", 6, p)
        local dlq = wait_consume("ktimes-dlq", 1, p)
        assert.equal(0, (p:stop()))
        local t1 = os.time() * 1000 + 1000
        local got = {}
        for i, e in ipairs(out) do got[i] = { e.value, e.ts } end
        -- librdkafka writes a timestamp of 0 as the time of production (0 means "now" to it)
        assert.truthy(got[2][2] >= t0 and got[2][2] <= t1, "zero written at " .. got[2][2])
        got[2][2] = "now"
        assert.same({ { "1@1000", 1000 }, { "zero", "now" }, { "1000:1", 1000 },
            { "far@9999999999999", 9999999999999 }, { "9999999999000:1", 9999999999999 },
            { "2@2000", 2000 } }, got)
        assert.equal(1, #dlq)
        assert.equal("neg", dlq[1].value)
        assert.equal(-5, dlq[1].ts)
        local reason
        for _, hv in ipairs(dlq[1].headers) do if hv[1] == "eddy.error" then reason = hv[2] end end
        assert.equal("window w: a record's timestamp must not be negative, got -5", reason)
    end)
end)
