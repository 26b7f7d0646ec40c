-- spec/file_mode_spec.lua: file mode. The envelope in and out (a kcat -J dump replays
-- unchanged), --input-format lines, --input - (stdin), partitions by murmur2 with
-- --partitions N, offsets, timestamps, missing fields, and a large input.
-- Expectations are computed here (h.partition_for is an independent murmur2).
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

--- Run SCRIPT in file mode. RECORDS: a list (tables or raw lines) or raw text.
--- opts.stdin: feed the input on stdin with --input -; opts.no_output: no --output.
local function run(script, records, args, opts)
    opts = opts or {}
    local dir = h.tmpdir()
    local sp = h.script(dir, "job.lua", script)
    local text = type(records) == "string" and records or input_text(records or {})
    local argv = { "run", sp }
    local stdin
    if opts.stdin then
        argv[#argv + 1], argv[#argv + 2] = "--input", "-"
        stdin = text
    else
        argv[#argv + 1], argv[#argv + 2] = "--input", h.write(dir .. "/in.jsonl", text)
    end
    if not opts.no_output then
        argv[#argv + 1], argv[#argv + 2] = "--output", dir .. "/out.jsonl"
    end
    argv[#argv + 1], argv[#argv + 2], argv[#argv + 3] = "--dlq", dir .. "/dlq.jsonl", "--quiet"
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    local t0 = os.time() * 1000
    local code, stdout, stderr = h.eddy(argv, { stdin = stdin })
    local t1 = os.time() * 1000 + 1000
    local r = { code = code, stdout = stdout, stderr = stderr, t0 = t0, t1 = t1,
        out_text = h.read(dir .. "/out.jsonl") or "",
        dlq_text = h.read(dir .. "/dlq.jsonl") or "" }
    r.out, r.dlq = h.envelopes(r.out_text), h.envelopes(r.dlq_text)
    os.execute("rm -rf " .. h.q(dir))
    return r
end

local function project(list, fields)
    local out = {}
    for i, e in ipairs(list) do
        local p = {}
        for _, f in ipairs(fields) do p[f] = e[f] end
        out[i] = p
    end
    return out
end

local function field(list, name)
    local t = {}
    for i, e in ipairs(list) do t[i] = e[name] end
    return t
end

-- A job that copies "in" to "out" and says what it saw in rec: "partition/offset/ts".
local SEEN = PRE .. [[
local job = eddy.job { name = "fm" }
job:source("in")
   :map_values(function(v, k, rec) return rec.partition .. "/" .. rec.offset .. "/" .. rec.ts end)
   :to("out")
return job
]]

local COPY = PRE .. [[
local job = eddy.job { name = "fm" }
job:source("clicks"):to("clicks-copy")
return job
]]

describe("the envelope", function()
    it("a kcat -J dump (tstype, broker, headers) replays with its keys, payloads, ts, headers", function()
        local lines, recs = {}, {}
        local next_off = { [0] = 100, 120, 140, 160 }       -- a dump starts anywhere
        for i = 1, 40 do
            local key = "user-" .. (i % 9)
            local p = h.partition_for(key, 4)               -- as the producer placed it
            local rec = { topic = "clicks", partition = p, offset = next_off[p], tstype = "create",
                ts = 1700000000000 + i, broker = 1, key = key,
                payload = cjson.encode({ page = "/p/" .. i, n = i }),
                headers = { "trace", "t" .. i, "src", "web" } }
            next_off[p] = next_off[p] + 1
            recs[i] = rec
            lines[i] = string.format(
                '{"topic":"clicks","partition":%d,"offset":%d,"tstype":"create","ts":%d,"broker":1,'
                .. '"headers":["trace","t%d","src","web"],"key":%s,"payload":%s}',
                p, rec.offset, rec.ts, i, cjson.encode(key), cjson.encode(rec.payload))
        end
        local r = run(COPY, table.concat(lines, "\n") .. "\n", { "--partitions", "4" })
        assert.equal(0, r.code, r.stderr)
        assert.same({}, r.dlq)
        assert.equal(40, #r.out)
        local count = { [0] = 0, 0, 0, 0 }
        for i, e in ipairs(r.out) do
            local want = recs[i]
            assert.equal("clicks-copy", e.topic)
            assert.equal(want.key, e.key)
            assert.equal(want.payload, e.payload)
            assert.equal(want.ts, e.ts)
            assert.same(want.headers, e.headers)
            assert.equal(want.partition, e.partition)
            assert.equal(count[e.partition], e.offset)      -- output offsets count from 0
            count[e.partition] = count[e.partition] + 1
        end
    end)

    it("output lines have the kcat -J fields in kcat's order", function()
        local r = run(COPY, { '{"topic":"clicks","partition":0,"offset":5,"ts":17,"key":"k","payload":"v",'
            .. '"headers":["a","b"]}', '{"topic":"clicks","ts":18,"key":null,"payload":null}' })
        assert.equal(0, r.code)
        local l1, l2 = r.out_text:match("([^\n]+)\n([^\n]+)\n$")
        assert.equal('{"topic":"clicks-copy","partition":0,"offset":0,"tstype":"create","ts":17,'
            .. '"headers":["a","b"],"key":"k","payload":"v"}', l1)
        assert.equal('{"topic":"clicks-copy","partition":0,"offset":1,"tstype":"create","ts":18,'
            .. '"key":null,"payload":null}', l2)
    end)

    it("eddy's output, fed back in, gives the same output (a fixed point)", function()
        local recs = {}
        for i = 1, 30 do
            recs[i] = { topic = "clicks", key = (i % 3 == 0) and cjson.null or ("k" .. i), payload = "p" .. i,
                ts = 1700000000000 + i, headers = (i % 2 == 0) and { "h", "v" .. i } or nil }
        end
        local first = run(COPY, recs, { "--partitions", "3" })
        assert.equal(0, first.code)
        local again = first.out_text:gsub('"topic":"clicks%-copy"', '"topic":"clicks"')
        local second = run(COPY, again, { "--partitions", "3" })
        assert.equal(0, second.code)
        assert.equal(first.out_text, second.out_text)
    end)

    it("headers are carried to the output: order, duplicates and null values kept", function()
        local r = run(COPY, { '{"payload":"x","headers":["b","2","a","1","b","3","n",null,"e",""]}' })
        assert.equal(0, r.code)
        assert.same({ "b", "2", "a", "1", "b", "3", "n", cjson.null, "e", "" }, r.out[1].headers)
    end)

    it("unknown fields of any JSON type are ignored", function()
        local r = run(COPY, { '{"payload":"x","broker":3,"tstype":"logappend","extra":{"a":[1,{"b":null}],'
            .. '"c":true},"list":[],"f":-1.5e3,"key_error":"none"}' })
        assert.equal(0, r.code)
        assert.same({}, r.dlq)
        assert.equal("x", r.out[1].payload)
    end)

    it("blank and whitespace-only lines are skipped; CRLF endings and a last line without newline are fine",
        function()
            local r = run(COPY, '{"payload":"a"}\r\n\n   \n\t\n{"payload":"b"}\r\n{"payload":"c"}')
            assert.equal(0, r.code)
            assert.same({}, r.dlq)
            assert.same({ "a", "b", "c" }, field(r.out, "payload"))
        end)

    it("an empty input is a clean run with no output", function()
        local r = run(COPY, "")
        assert.equal(0, r.code)
        assert.same({}, r.out)
        assert.same({}, r.dlq)
    end)

    it("the output goes to stdout by default", function()
        local r = run(COPY, { { payload = "x" } }, {}, { no_output = true })
        assert.equal(0, r.code)
        assert.same({ "x" }, field(h.envelopes(r.stdout), "payload"))
    end)

    it("--output - is stdout", function()
        local r = run(COPY, { { payload = "x" } }, { "--output", "-" })
        assert.equal(0, r.code)
        assert.same({ "x" }, field(h.envelopes(r.stdout), "payload"))
    end)
end)

describe("missing fields", function()
    it("a missing topic is the job's first source", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "fm" }
job:source({ "first", "second" }):map_values(function(v, k, rec) return rec.topic end):to("out")
job:source("third"):map_values(function(v, k, rec) return rec.topic end):to("out")
return job
]], { { payload = "" }, { topic = "second", payload = "" }, { topic = "third", payload = "" },
            { topic = "first", payload = "" } })
        assert.equal(0, r.code)
        assert.same({ "first", "second", "third", "first" }, field(r.out, "payload"))
    end)

    it("a topic that is not a source is an envelope error", function()
        local r = run(COPY, { { topic = "elsewhere", payload = "x" }, { topic = "clicks", payload = "y" } })
        assert.equal(0, r.code)
        assert.same({ "y" }, field(r.out, "payload"))
        assert.equal(1, #r.dlq)
        assert.equal("envelope", h.header(r.dlq[1], "eddy.stage"))
    end)

    it("a missing ts is now; a given ts is kept (also written 1.7e12)", function()
        local r = run(SEEN, { '{"key":"k","payload":"x"}', '{"key":"k","payload":"x","ts":1234}',
            '{"key":"k","payload":"x","ts":1.7e12}', '{"key":"k","payload":"x","ts":0}' })
        assert.equal(0, r.code)
        local now_ts = r.out[1].ts
        assert.is_true(now_ts >= r.t0 and now_ts <= r.t1, ("%d not in [%d, %d]"):format(now_ts, r.t0, r.t1))
        assert.equal("0/0/" .. now_ts, r.out[1].payload)
        assert.same({ 1234, 1700000000000, 0 }, { r.out[2].ts, r.out[3].ts, r.out[4].ts })
        assert.same({ "0/1/1234", "0/2/1700000000000", "0/3/0" },
            { r.out[2].payload, r.out[3].payload, r.out[4].payload })
    end)

    it("a missing offset is the next of that partition; given offsets are kept", function()
        local r = run(SEEN, {
            { partition = 0, payload = "" }, { partition = 1, payload = "" }, { partition = 0, payload = "" },
            { partition = 1, offset = 50, payload = "" }, { partition = 1, payload = "" },
            { partition = 0, payload = "" }, { partition = 2, offset = 7, payload = "" },
        }, { "--partitions", "3" })
        assert.equal(0, r.code)
        local seen = {}
        for i, e in ipairs(r.out) do seen[i] = e.payload:match("^(%d+/%d+)/") end
        assert.same({ "0/0", "1/0", "0/1", "1/50", "1/51", "0/2", "2/7" }, seen)
    end)

    it("output offsets count per topic for many sink topics (70)", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "fm" }
local s = job:source("in")
for i = 1, 70 do s:to("t" .. i) end
return job
]], { { payload = "a" }, { payload = "b" } })
        assert.equal(0, r.code)
        assert.equal(140, #r.out)
        local seen = {}
        for _, e in ipairs(r.out) do
            local want = e.payload == "a" and 0 or 1
            assert.equal(want, e.offset, e.topic .. " " .. e.payload)
            seen[e.topic] = (seen[e.topic] or 0) + 1
        end
        for i = 1, 70 do assert.equal(2, seen["t" .. i]) end
    end)

    it("missing offsets count per source topic and partition", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "fm" }
job:source({ "a", "b" })
   :map_values(function(v, k, rec) return rec.topic .. "/" .. rec.partition .. "/" .. rec.offset end)
   :to("out")
return job
]], { { topic = "a", partition = 0, payload = "" }, { topic = "b", partition = 0, payload = "" },
            { topic = "b", partition = 0, payload = "" }, { topic = "a", partition = 0, payload = "" },
            { topic = "b", partition = 1, payload = "" }, { topic = "a", partition = 1, offset = 9, payload = "" },
            { topic = "b", partition = 1, payload = "" }, { topic = "a", partition = 1, payload = "" } },
            { "--partitions", "2" })
        assert.equal(0, r.code)
        assert.same({ "a/0/0", "b/0/0", "b/0/1", "a/0/1", "b/1/0", "a/1/9", "b/1/1", "a/1/10" },
            field(r.out, "payload"))
    end)

    it("output offsets count per topic and partition from 0, whatever the input offsets", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "fm" }
local s = job:source("in")
s:to("a")
s:filter(function(k) return k == "x" end):to("b")
return job
]], {
            { key = cjson.null, partition = 1, offset = 900, payload = "1" },
            { key = "x", partition = 0, offset = 5, payload = "2" },
            { key = cjson.null, partition = 1, offset = 901, payload = "3" },
            { key = "x", partition = 0, offset = 6, payload = "4" },
        }, { "--partitions", "2" })
        assert.equal(0, r.code)
        local px = h.partition_for("x", 2)
        assert.same({
            { topic = "a", partition = 1, offset = 0, payload = "1" },
            { topic = "a", partition = px, offset = px == 1 and 1 or 0, payload = "2" },
            { topic = "b", partition = px, offset = 0, payload = "2" },
            { topic = "a", partition = 1, offset = px == 1 and 2 or 1, payload = "3" },
            { topic = "a", partition = px, offset = px == 1 and 3 or 1, payload = "4" },
            { topic = "b", partition = px, offset = 1, payload = "4" },
        }, project(r.out, { "topic", "partition", "offset", "payload" }))
    end)
end)

describe("partitions", function()
    it("without a partition field, a keyed record goes to murmur2(key) % N", function()
        local recs, ks = {}, {}
        for i = 1, 300 do
            ks[i] = "key:" .. i * 7919
            recs[i] = { key = ks[i], payload = "" }
        end
        for _, n in ipairs({ 1, 7, 12 }) do
            local r = run(SEEN, recs, { "--partitions", tostring(n) })
            assert.equal(0, r.code)
            assert.equal(300, #r.out)
            for i, e in ipairs(r.out) do
                local want = h.partition_for(ks[i], n)
                assert.equal(tostring(want), e.payload:match("^(%d+)/"), ks[i])
                assert.equal(want, e.partition, ks[i])
            end
        end
    end)

    it("matches librdkafka's partitions for known keys (7 partitions)", function()
        local known = { { "a", 5 }, { "hello", 4 }, { "k1", 0 }, { "some longer key 123", 1 },
            { "abc", 4 }, { "abcd", 5 }, { "abcde", 4 } }
        local recs = {}
        for i, kp in ipairs(known) do recs[i] = { key = kp[1], payload = "" } end
        local r = run(SEEN, recs, { "--partitions", "7" })
        assert.equal(0, r.code)
        for i, kp in ipairs(known) do
            assert.equal(kp[2], h.partition_for(kp[1], 7))    -- the helper agrees
            assert.equal(kp[2], r.out[i].partition, kp[1])
            assert.equal(tostring(kp[2]), r.out[i].payload:match("^(%d+)/"))
        end
    end)

    it("the empty key is a key: murmur2 of zero bytes", function()
        local r = run(SEEN, { { key = "", payload = "" }, { key = "", payload = "" } }, { "--partitions", "7" })
        assert.equal(0, r.code)
        assert.equal(2, h.partition_for("", 7))
        assert.same({ 2, 2 }, field(r.out, "partition"))
        assert.same({ "2/0", "2/1" }, { r.out[1].payload:match("^(%d+/%d+)"), r.out[2].payload:match("^(%d+/%d+)") })
    end)

    it("a given partition is the record's partition, even if its key hashes elsewhere", function()
        local p = h.partition_for("a", 4)
        local other = (p + 1) % 4
        local r = run(SEEN, { { key = "a", partition = other, payload = "" } }, { "--partitions", "4" })
        assert.equal(0, r.code)
        assert.equal(tostring(other), r.out[1].payload:match("^(%d+)/"))
        assert.equal(p, r.out[1].partition)          -- the output follows the output key
    end)

    it("the output partition is murmur2 of the output key", function()
        local recs = {}
        for i = 1, 50 do recs[i] = { key = "in" .. i, payload = "out" .. i } end
        local r = run(PRE .. [[
local job = eddy.job { name = "fm" }
job:source("in"):select_key(function(k, v) return v end):to("out")
return job
]], recs, { "--partitions", "9" })
        assert.equal(0, r.code)
        for i, e in ipairs(r.out) do
            assert.equal("out" .. i, e.key)
            assert.equal(h.partition_for("out" .. i, 9), e.partition)
        end
    end)

    it("a null output key keeps the input record's partition", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "fm" }
job:source("in"):select_key(function() return nil end):to("out")
return job
]], { { key = "x", partition = 3, payload = "a" }, { key = "y", partition = 1, payload = "b" },
            { key = cjson.null, partition = 2, payload = "c" } }, { "--partitions", "4" })
        assert.equal(0, r.code)
        assert.same({ 3, 1, 2 }, field(r.out, "partition"))
        assert.same({ 0, 0, 0 }, field(r.out, "offset"))
    end)

    it("null keys without a partition go round robin", function()
        local recs = {}
        for i = 1, 12 do recs[i] = { payload = tostring(i) } end
        local r = run(SEEN, recs, { "--partitions", "4" })
        assert.equal(0, r.code)
        local parts, count = {}, { [0] = 0, 0, 0, 0 }
        for i, e in ipairs(r.out) do
            parts[i] = tonumber(e.payload:match("^(%d+)/"))
            count[parts[i]] = count[parts[i]] + 1
            assert.equal(parts[i], e.partition)
        end
        assert.same({ [0] = 3, 3, 3, 3 }, count)
        for i = 2, #parts do assert.equal((parts[i - 1] + 1) % 4, parts[i]) end
    end)

    it("--partitions must be a positive number (exit 2)", function()
        for _, bad in ipairs({ "0", "-1", "x", "" }) do
            local r = run(SEEN, { { payload = "" } }, { "--partitions", bad })
            assert.equal(2, r.code, "--partitions " .. bad)
        end
    end)
end)

describe("--input-format lines", function()
    local UP = PRE .. [[
local job = eddy.job { name = "fm" }
job:source("in")
   :map_values(function(v, k, rec) return tostring(k) .. "|" .. v .. "|" .. rec.partition .. "/" .. rec.offset end)
   :to("out")
return job
]]

    it("makes each line a value with a null key, round robin over the partitions", function()
        local r = run(UP, "a\nb\nc\nd\ne\nf\n", { "--input-format", "lines", "--partitions", "3" })
        assert.equal(0, r.code)
        assert.same({ "nil|a|0/0", "nil|b|1/0", "nil|c|2/0", "nil|d|0/1", "nil|e|1/1", "nil|f|2/1" },
            field(r.out, "payload"))
        for _, e in ipairs(r.out) do assert.is_nil(e.key) end
        assert.same({ 0, 1, 2, 0, 1, 2 }, field(r.out, "partition"))
        assert.same({ 0, 0, 0, 1, 1, 1 }, field(r.out, "offset"))
    end)

    it("takes lines as they are: JSON is not parsed, CR is dropped, an empty line is an empty value", function()
        local r = run(UP, '{"payload":"x"}\r\n\n  spaced  \nlast', { "--input-format", "lines" })
        assert.equal(0, r.code)
        assert.same({ 'nil|{"payload":"x"}|0/0', "nil||0/1", "nil|  spaced  |0/2", "nil|last|0/3" },
            field(r.out, "payload"))
    end)

    it("stamps records with the time they are read", function()
        local r = run(UP, "x\n", { "--input-format", "lines" })
        assert.equal(0, r.code)
        assert.is_true(r.out[1].ts >= r.t0 and r.out[1].ts <= r.t1)
    end)

    it("a bad --input-format is a usage error (exit 2)", function()
        local r = run(UP, "x\n", { "--input-format", "csv" })
        assert.equal(2, r.code)
        assert.same({}, r.out)
    end)

    it("input can be set in the script", function()
        local dir = h.tmpdir()
        local inp = h.write(dir .. "/data.jsonl", '{"payload":"one"}\n{"payload":"two"}\n')
        local sp = h.script(dir, "job.lua", PRE .. ([[
local job = eddy.job { name = "fm", input = %q }
job:source("in"):to("out")
return job
]]):format(inp))
        local code, out = h.eddy({ "run", sp, "--quiet" })
        os.execute("rm -rf " .. h.q(dir))
        assert.equal(0, code)
        assert.same({ "one", "two" }, field(h.envelopes(out), "payload"))
    end)

    it("output, dlq, partitions and app_id can all be set in the script", function()
        local dir = h.tmpdir()
        local inp = h.write(dir .. "/data.jsonl", '{"key":"k","payload":"{}"}\n{"key":"k","payload":"{"}\n')
        local sp = h.script(dir, "job.lua", PRE .. ([[
local job = eddy.job { name = "fm", input = %q, output = %q, dlq = %q, partitions = 5, app_id = "fm-app" }
job:source("in", { value = "json" }):to("out", { value = "json" })
return job
]]):format(inp, dir .. "/o.jsonl", dir .. "/d.jsonl"))
        local code, stdout = h.eddy({ "run", sp, "--quiet" })
        local out, dlq = h.envelopes(h.read(dir .. "/o.jsonl")), h.envelopes(h.read(dir .. "/d.jsonl"))
        os.execute("rm -rf " .. h.q(dir))
        assert.equal(0, code)
        assert.equal("", stdout)
        assert.same({ "{}" }, field(out, "payload"))
        assert.same({ h.partition_for("k", 5) }, field(out, "partition"))
        assert.same({ "fm-app-dlq" }, field(dlq, "topic"))
        assert.same({ "{" }, field(dlq, "payload"))
    end)

    -- Both options from eddy.job{}: reading one must not overwrite the other.
    it("input and input_format can both be set in the script", function()
        local dir = h.tmpdir()
        local inp = h.write(dir .. "/data.txt", "one\ntwo\n")
        local sp = h.script(dir, "job.lua", PRE .. ([[
local job = eddy.job { name = "fm", input = %q, input_format = "lines" }
job:source("in"):to("out")
return job
]]):format(inp))
        local code, out = h.eddy({ "run", sp, "--quiet" })
        os.execute("rm -rf " .. h.q(dir))
        assert.equal(0, code)
        assert.same({ "one", "two" }, field(h.envelopes(out), "payload"))
    end)
end)

describe("--input -", function()
    it("reads envelopes from stdin", function()
        local r = run(SEEN, { { key = "a", payload = "1", ts = 10 }, { key = "b", payload = "2", ts = 20 } },
            {}, { stdin = true })
        assert.equal(0, r.code)
        assert.same({ "a", "b" }, field(r.out, "key"))
        assert.same({ 10, 20 }, field(r.out, "ts"))
    end)

    it("reads lines from stdin", function()
        local r = run(SEEN, "x\ny\nz\n", { "--input-format", "lines" }, { stdin = true })
        assert.equal(0, r.code)
        assert.equal(3, #r.out)
    end)
end)

describe("a running file-mode job", function()
    local UPPER = PRE .. [[
local job = eddy.job { name = "fm" }
job:source("in"):map_values(function(v) return v:upper() end):to("out")
return job
]]

    local function sh(script)
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", UPPER)
        local cmd = script:gsub("%$EDDY", h.q(h.EDDY)):gsub("%$JOB", h.q(sp)):gsub("%$D", h.q(dir))
        os.execute(cmd)
        return dir
    end

    it("--input - processes what has arrived as it arrives (a streaming stdin)", function()
        local dir = sh([[( printf 'a\n'; sleep 1; printf 'b\n' ) | $EDDY run $JOB --input - --input-format lines --quiet ]]
            .. [[| while IFS= read -r l; do echo "$(date +%s%3N) $l"; done > $D/stamped]])
        local text = h.read(dir .. "/stamped") or ""
        os.execute("rm -rf " .. h.q(dir))
        local t, p = {}, {}
        for ms, l in text:gmatch("(%d+) ([^\n]+)") do
            t[#t + 1] = tonumber(ms)
            p[#p + 1] = cjson.decode(l).payload
        end
        assert.same({ "A", "B" }, p)
        assert.is_true(t[2] - t[1] >= 700, "A came " .. tostring(t[2] - t[1]) .. " ms before B")
    end)

    it("SIGTERM finishes what it has, flushes and exits 0", function()
        local dir = sh([[mkfifo $D/fifo
$EDDY run $JOB --input $D/fifo --input-format lines --quiet --output $D/out &
pid=$!
exec 3>$D/fifo
printf 'x\ny\n' >&3
sleep 0.5
kill -TERM $pid
wait $pid
echo $? > $D/rc
exec 3>&-]])
        local rc, out = h.read(dir .. "/rc"), h.read(dir .. "/out")
        os.execute("rm -rf " .. h.q(dir))
        assert.equal("0", (rc or ""):match("%d+"))
        assert.same({ "X", "Y" }, field(h.envelopes(out), "payload"))
    end)
end)

describe("large inputs", function()
    it("50 000 records: every one processed, counted and summed", function()
        local N, P = 50000, 8
        local parts = {}
        for i = 1, N do
            parts[i] = '{"key":"k' .. (i % 97) .. '","payload":"' .. i .. '","ts":' .. (1700000000000 + i) .. "}"
        end
        local r = run(PRE .. [[
local job = eddy.job { name = "fm" }
job:source("in", { value = "number" })
   :filter(function(k, v) return v % 2 == 0 end)
   :map_values(function(v) return v * 3 end)
   :to("out", { value = "number" })
return job
]], table.concat(parts, "\n") .. "\n", { "--partitions", tostring(P) })
        assert.equal(0, r.code)
        assert.same({}, r.dlq)
        assert.equal(N / 2, #r.out)
        local sum, want = 0, 0
        for i = 2, N, 2 do want = want + 3 * i end
        local next_off, last_ts = {}, {}
        local part_of = {}
        for i = 0, 96 do part_of["k" .. i] = h.partition_for("k" .. i, P) end
        for _, e in ipairs(r.out) do
            local v = tonumber(e.payload)
            sum = sum + v
            local i = v / 3
            assert.equal("k" .. (i % 97), e.key)
            assert.equal(1700000000000 + i, e.ts)
            assert.equal(part_of[e.key], e.partition)
            assert.equal(next_off[e.partition] or 0, e.offset)
            next_off[e.partition] = e.offset + 1
            assert.is_true((last_ts[e.partition] or 0) < e.ts)   -- order kept in a partition
            last_ts[e.partition] = e.ts
        end
        assert.equal(want, sum)
    end)

    it("a 3 MiB payload (longer than a read) passes whole, with the lines around it", function()
        local big = string.rep("0123456789abcdef", 3 * 65536)
        local r = run(COPY, { { payload = "before" }, { key = "big", payload = big }, { payload = "after" } })
        assert.equal(0, r.code)
        assert.equal(3, #r.out)
        assert.equal("before", r.out[1].payload)
        assert.equal(#big, #r.out[2].payload)
        assert.equal(big, r.out[2].payload)
        assert.equal("after", r.out[3].payload)
    end)
end)
