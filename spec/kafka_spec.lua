-- spec/kafka_spec.lua: eddy in Kafka mode, end to end, started the way a user would:
-- `eddy broker` (the embedded development broker) with pre-created topics, input
-- produced by python3 + confluent_kafka, `eddy run` in the background, output read
-- back with `kcat -C -J -e`, expectations computed here (h.partition_for is an
-- independent murmur2). One broker serves every test; each test has its own topics
-- and app id. Every process is killed in teardown, even when a test fails.
local cjson = require "cjson"
local h = require "helper"
local k = require "kafka_helper"

local TS0 = 1700000000000

-- topics pre-created on the shared broker: name, partitions
local TOPICS = {
    { "st-in", 3 }, { "st-out", 5 },
    { "ms-in", 2 }, { "ms-short", 2 }, { "ms-long", 3 }, { "ms-words", 4 }, { "ms-len", 1 },
    { "dl-in", 3 }, { "dl-out", 3 }, { "dl-app-dlq", 2 },
    { "rs-in", 2 }, { "rs-out", 3 },
    { "idle-in", 2 }, { "idle-out", 2 },
    { "ms-in2", 1 }, { "fl-in", 4 }, { "fl-out", 4 }, { "so-in", 4 }, { "so-out", 4 },
}
local NPART = {}
for _, t in ipairs(TOPICS) do NPART[t[1]] = t[2] end

local function decode(s) return s and cjson.decode(s) end

-- a job script file in dir
local function script(dir, text) return h.script(dir, "job.lua", text) end

-- the job's summary line: "N record(s) in, M out, E error(s), D dead-lettered"
local function summary(stderr)
    local i, o, e, d = stderr:match("(%d+) record%(s%) in, (%d+) out, (%d+) error%(s%), (%d+) dead%-lettered")
    if not i then return nil end
    return { inn = tonumber(i), out = tonumber(o), errors = tonumber(e), dlq = tonumber(d) }
end

-- assert an output record sits where Kafka's default partitioner puts its key
local function assert_partition(rec, topic)
    local n = NPART[topic]
    if rec.key ~= nil then
        assert.are.equal(h.partition_for(rec.key, n), rec.partition,
            ("%s: key %q must be in partition murmur2(key) %% %d"):format(topic, rec.key, n))
    else
        assert.is_true(rec.partition >= 0 and rec.partition < n)
    end
end

-- the records of each output partition, in offset order, must keep the input order
-- of each key (seq_of(record) gives its position in the input)
local function assert_key_order(recs, seq_of)
    local last = {}
    for _, r in ipairs(k.sort_by_offset(recs)) do
        if r.key ~= nil then
            local s = seq_of(r)
            if last[r.key] then
                assert.is_true(s > last[r.key], ("key %q: output out of input order"):format(r.key))
            end
            last[r.key] = s
        end
    end
end

describe("eddy run against a Kafka broker", function()
    local dir, broker, B
    local procs = {}

    local function start(name, script_path, extra)
        local p = k.start_eddy(dir, name, script_path, B, extra)
        procs[#procs + 1] = p
        return p
    end

    lazy_setup(function()
        dir = h.tmpdir()
        broker, B = k.start_broker(dir, TOPICS)
    end)

    lazy_teardown(function()
        for _, p in ipairs(procs) do p:kill() end
        if broker then broker:kill() end
        if dir then os.execute("rm -rf " .. h.q(dir)) end
    end)

    after_each(function()
        for _, p in ipairs(procs) do p:kill() end
        assert.is_true(broker ~= nil and broker:running(), "the broker died:\n" .. (broker and broker:stderr() or ""))
    end)

    it("runs a stateless job end to end: values, keys, timestamps, headers, partitions", function()
        local d = h.tmpdir()
        finally(function() os.execute("rm -rf " .. h.q(d)) end)
        local job = script(d, [[
local eddy = require "eddy"
local job = eddy.job { name = "st-app" }
job:source("st-in", { value = "json" })
   :filter(function(k, v) return v.n % 2 == 0 end)
   :map_values(function(v, k, rec)
      return { n = v.n, sq = v.n * v.n, key = k or "(nil)",
               src = rec.topic .. "/" .. rec.partition .. "/" .. rec.offset,
               trace = rec.headers.trace }
   end)
   :to("st-out", { value = "json" })
return job
]])
        -- input: keyed records stay in one input partition per key (so their order is
        -- defined), null keys spread; an empty key; headers with duplicates and nulls
        local input = {}
        for i = 1, 40 do
            local key
            if i % 7 == 0 then key = nil
            elseif i == 10 then key = ""
            else key = "user-" .. (i % 6) end
            local headers
            if i % 2 == 1 then headers = { { "trace", "t" .. i } }
            elseif i % 4 == 0 then headers = { { "trace", "t" .. i }, { "dup", "a" }, { "dup", "b" }, { "nullh", nil } }
            end
            input[i] = {
                topic = "st-in", key = key, value = cjson.encode({ n = i }),
                ts = TS0 + i * 1000 + (i % 3) * 7, headers = headers,
                partition = key and #key > 0 and (i % 6) % 3 or i % 3,
            }
        end
        local dr = k.produce(B, input, d)

        local expected, nexp = {}, 0
        for i, r in ipairs(input) do
            if i % 2 == 0 then
                local trace
                for _, hv in ipairs(r.headers or {}) do if hv[1] == "trace" then trace = hv[2] end end
                expected[i] = {
                    seq = i, key = r.key, ts = r.ts, headers = k.flat_headers(r.headers),
                    value = { n = i, sq = i * i, key = r.key or "(nil)", trace = trace,
                              src = "st-in/" .. dr[i].partition .. "/" .. dr[i].offset },
                }
                nexp = nexp + 1
            end
        end

        local p = start("st", job, { "--commit-interval", "200" })
        k.wait_records(B, "st-out", nexp, 20, p)
        -- offsets are committed while the job runs, not only when it stops
        k.wait_for("committed offsets to reach the end of st-in while running", 5, function()
            local offs = k.offsets(B, "st-app", { { "st-in", 3 } })["st-in"]
            local seen = {}
            for part = 0, 2 do
                seen[#seen + 1] = offs[part].committed .. "/" .. offs[part].high
                if offs[part].committed ~= offs[part].high then return nil, table.concat(seen, " ") end
            end
            return true
        end, 0.2)
        assert.is_true(p:running())
        local rc, took = p:stop("TERM", 10)
        assert.are.equal(0, rc, p:stderr())
        assert.is_true(took < 5, ("SIGTERM took %.1fs"):format(took))

        local out = k.consume(B, "st-out")
        assert.are.equal(nexp, #out)
        local seen = {}
        for _, r in ipairs(out) do
            local v = decode(r.payload)
            local e = expected[v.n]
            assert.is_truthy(e, "unexpected output " .. r.payload)
            assert.is_nil(seen[v.n], "output twice: " .. r.payload)
            seen[v.n] = true
            assert.are.same(e.value, v)
            assert.are.equal(e.key, r.key)
            assert.are.equal(e.ts, r.ts)
            assert.are.same(e.headers, r.headers or {})
            assert_partition(r, "st-out")
        end
        assert_key_order(out, function(r) return decode(r.payload).n end)
        local s = summary(p:stderr())
        assert.are.same({ inn = 40, out = nexp, errors = 0, dlq = 0 }, s)
        -- nothing was dead-lettered
        assert.are.equal(0, #k.consume(B, "st-app-dlq"))
    end)

    it("writes to several sink topics (branch, merge, flat_map with timestamps, tombstones)", function()
        local d = h.tmpdir()
        finally(function() os.execute("rm -rf " .. h.q(d)) end)
        local job = script(d, [[
local eddy = require "eddy"
local job = eddy.job { name = "ms-app" }
local s = job:source("ms-in"):merge(job:source("ms-in2"))
local short, long = s:branch(function(k, v) return #v <= 5 end, function(k, v) return #v > 5 end)
short:select_key(function(k, v) return v end):to("ms-short")
long:map_values(string.upper):to("ms-long")
s:flat_map(function(k, v, emit, rec)
   local i = 0
   for w in v:gmatch("%a+") do i = i + 1; emit(w:lower(), k, rec.ts + i) end
end):to("ms-words")
short:merge(long):map_values(function(v) return #v end):to("ms-len", { value = "number" })
return job
]])
        local values = { "hi", "hello", "a quick fox", "Lua is fun", "", "jumps over", "x y",
                         "the lazy dog", "ok", "streams", "a b c", "kafka" }
        local input = {}
        for i, v in ipairs(values) do
            local key = (i % 4 ~= 0) and ("m" .. (i % 3)) or nil
            input[i] = { topic = "ms-in", key = key, value = v, ts = TS0 + i * 100,
                         headers = { { "i", tostring(i) } },
                         partition = key and (i % 3) % 2 or i % 2 }
        end
        -- a second source topic, merged into the first
        for j, v in ipairs({ "second source", "tiny", "zz top" }) do
            input[#input + 1] = { topic = "ms-in2", key = j == 2 and nil or ("n" .. j), value = v,
                                  ts = TS0 + 5000 + j, headers = { { "src", "2" }, { "i", tostring(j) } },
                                  partition = 0 }
        end
        k.produce(B, input, d)

        local exp = { ["ms-short"] = {}, ["ms-long"] = {}, ["ms-words"] = {}, ["ms-len"] = {} }
        local function add(topic, key, value, ts, r)
            table.insert(exp[topic], { key = key, payload = value, ts = ts,
                                      headers = k.flat_headers(r.headers) })
        end
        for _, r in ipairs(input) do
            local v = r.value
            if #v <= 5 then add("ms-short", v, v, r.ts, r) else add("ms-long", r.key, v:upper(), r.ts, r) end
            local i = 0
            for w in v:gmatch("%a+") do i = i + 1; add("ms-words", w:lower(), r.key, r.ts + i, r) end
            add("ms-len", r.key, tostring(#v), r.ts, r)
        end

        local p = start("ms", job)
        for topic, list in pairs(exp) do k.wait_records(B, topic, #list, 20, p) end
        local rc, took = p:stop("TERM", 10)
        assert.are.equal(0, rc, p:stderr())
        assert.is_true(took < 5, ("SIGTERM took %.1fs"):format(took))

        -- compare as multisets: (key, payload, ts, headers) per topic
        local function ident(r)
            return cjson.encode({ r.key == nil and cjson.null or r.key,
                                  r.payload == nil and cjson.null or r.payload, r.ts, r.headers or {} })
        end
        for topic, list in pairs(exp) do
            local out = k.consume(B, topic)
            assert.are.equal(#list, #out, topic .. ": record count")
            local want = {}
            for _, e in ipairs(list) do
                local id = ident(e)
                want[id] = (want[id] or 0) + 1
            end
            for _, r in ipairs(out) do
                local id = ident(r)
                assert.is_truthy(want[id] and want[id] > 0, topic .. ": unexpected " .. id)
                want[id] = want[id] - 1
                assert_partition(r, topic)
            end
        end
        -- a null value (a nil key emitted as value) is a tombstone, not an empty string
        local tomb = 0
        for _, r in ipairs(k.consume(B, "ms-words")) do if r.payload == nil then tomb = tomb + 1 end end
        local want_tomb = 0
        for _, e in ipairs(exp["ms-words"]) do if e.payload == nil then want_tomb = want_tomb + 1 end end
        assert.is_true(want_tomb > 0)
        assert.are.equal(want_tomb, tomb)
    end)

    it("dead-letters bad records to <app>-dlq with eddy.* headers while good records all arrive", function()
        local d = h.tmpdir()
        finally(function() os.execute("rm -rf " .. h.q(d)) end)
        local job = script(d, [[
local eddy = require "eddy"
local job = eddy.job { name = "dl-app" }
job:source("dl-in", { value = "json" })
   :map_values(function(v)
      if v.n == 13 then error("unlucky " .. v.n) end
      return { n = v.n, double = v.n * 2 }
   end)
   :flat_map(function(k, v, emit)
      emit(k, v)
      if v.n == 21 then error("failed after one emit") end
      emit(k, { n = v.n, copy = true })
   end)
   :map_values(function(v)
      if v.n == 34 then v.bad = function() end end
      return v
   end)
   :to("dl-out", { value = "json" })
return job
]])
        local input, bad = {}, {}
        for i = 1, 40 do
            local key = (i % 5 ~= 0) and ("d" .. (i % 4)) or nil
            local r = { topic = "dl-in", key = key, value = cjson.encode({ n = i }), ts = TS0 + i,
                        headers = { { "orig", "h" .. i } }, partition = key and (i % 4) % 3 or i % 3 }
            if i == 7 then r.value = "{not json" ; bad[i] = { stage = "deserialize", err = "invalid JSON" } end
            if i == 8 then r.value = "[1, 2" ; r.headers = nil; bad[i] = { stage = "deserialize", err = "invalid JSON" } end
            if i == 9 then r.value = nil ; bad[i] = { stage = "process", err = "job.lua:5:" } end
            if i == 13 then bad[i] = { stage = "process", err = "job.lua:5: unlucky 13" } end
            if i == 21 then bad[i] = { stage = "process", err = "job.lua:10: failed after one emit" } end
            if i == 34 then bad[i] = { stage = "serialize", err = { "JSON", "job.lua:" } } end
            input[i] = r
        end
        local dr = k.produce(B, input, d)
        local ngood, nbad = 0, 0
        for i = 1, 40 do if bad[i] then nbad = nbad + 1 else ngood = ngood + 1 end end

        local p = start("dl", job)
        k.wait_records(B, "dl-out", 2 * ngood, 20, p)
        k.wait_records(B, "dl-app-dlq", nbad, 20, p)
        local rc = p:stop("TERM", 10)
        assert.are.equal(0, rc, p:stderr())

        -- good records: each exactly twice (original, then copy), nothing from bad ones
        local out = k.consume(B, "dl-out")
        assert.are.equal(2 * ngood, #out)
        local count = {}
        for _, r in ipairs(out) do
            local v = decode(r.payload)
            assert.is_nil(bad[v.n], "output from a dead-lettered record: " .. r.payload)
            local src = input[v.n]
            assert.are.equal(src.key, r.key)
            assert.are.equal(src.ts, r.ts)
            assert.are.same(k.flat_headers(src.headers), r.headers or {})
            if v.copy then
                assert.are.same({ n = v.n, copy = true }, v)
            else
                assert.are.same({ n = v.n, double = 2 * v.n }, v)
            end
            count[v.n] = (count[v.n] or 0) + 1
            assert_partition(r, "dl-out")
        end
        for i = 1, 40 do
            if not bad[i] then assert.are.equal(2, count[i], "outputs of record " .. i) end
        end
        -- per key: the original before its copy, records in input order
        local order = {}
        for _, r in ipairs(k.sort_by_offset(out)) do
            local v = decode(r.payload)
            order[#order + 1] = { key = r.key, seq = v.n * 2 + (v.copy and 1 or 0) }
        end
        local last = {}
        for _, o in ipairs(order) do
            if o.key then
                assert.is_true(o.seq > (last[o.key] or -1), "key " .. o.key .. " out of order")
                last[o.key] = o.seq
            end
        end

        -- the DLQ: exactly the bad records, original key/payload/ts/headers + eddy.*
        local dlq = k.consume(B, "dl-app-dlq")
        assert.are.equal(nbad, #dlq)
        local seen = {}
        for _, r in ipairs(dlq) do
            local off = tonumber(h.header(r, "eddy.offset"))
            local part = tonumber(h.header(r, "eddy.partition"))
            local i
            for j, x in ipairs(dr) do if x.partition == part and x.offset == off then i = j end end
            assert.is_truthy(i, "DLQ record points at no input record: " .. cjson.encode(r.headers))
            local b = bad[i]
            assert.is_truthy(b, "record " .. i .. " dead-lettered but is good: " .. tostring(h.header(r, "eddy.error")))
            assert.is_nil(seen[i], "record " .. i .. " dead-lettered twice")
            seen[i] = true
            local src = input[i]
            assert.are.equal("dl-in", h.header(r, "eddy.topic"))
            assert.are.equal(b.stage, h.header(r, "eddy.stage"), "stage of record " .. i)
            local msg = h.header(r, "eddy.error")
            for _, want in ipairs(type(b.err) == "table" and b.err or { b.err }) do
                assert.is_truthy(msg and msg:find(want, 1, true),
                    ("record %d: eddy.error %q should contain %q"):format(i, tostring(msg), want))
            end
            assert.are.equal(src.key, r.key)
            assert.are.equal(src.value, r.payload)
            assert.are.equal(src.ts, r.ts)
            -- original headers first, then the five eddy.* headers
            local orig = k.flat_headers(src.headers)
            local hs = r.headers or {}
            assert.are.equal(#orig + 10, #hs, "headers of DLQ record " .. i)
            for j = 1, #orig do assert.are.equal(orig[j], hs[j]) end
            local names = {}
            for j = #orig + 1, #hs, 2 do names[#names + 1] = hs[j] end
            table.sort(names)
            assert.are.same({ "eddy.error", "eddy.offset", "eddy.partition", "eddy.stage", "eddy.topic" }, names)
            assert_partition(r, "dl-app-dlq")
        end
        assert.are.same({ inn = 40, out = 2 * ngood, errors = nbad, dlq = nbad }, summary(p:stderr()))
    end)

    it("after SIGTERM, a restart with the same app id processes only newer records", function()
        local d = h.tmpdir()
        finally(function() os.execute("rm -rf " .. h.q(d)) end)
        local job = script(d, [[
local eddy = require "eddy"
local job = eddy.job { name = "rs-job" }
job:source("rs-in"):map_values(function(v) return "seen:" .. v end):to("rs-out")
return job
]])
        local function batch(prefix, n)
            local list = {}
            for i = 1, n do
                local key = (i % 6 ~= 0) and ("r" .. (i % 5)) or nil
                list[i] = { topic = "rs-in", key = key, value = prefix .. i, ts = TS0 + i,
                            partition = i % 2 }
            end
            return list
        end
        local function check_committed(what)
            local offs = k.offsets(B, "rs-app", { { "rs-in", 2 } })["rs-in"]
            for p = 0, 1 do
                assert.is_true(offs[p].high > 0)
                assert.are.equal(offs[p].high, offs[p].committed,
                    ("%s: rs-in[%d] committed offset vs end of partition"):format(what, p))
            end
        end
        local args = { "--app-id", "rs-app" }

        -- first run: 24 records
        k.produce(B, batch("a", 24), d)
        local p1 = start("rs1", job, args)
        k.wait_records(B, "rs-out", 24, 20, p1)
        local rc, took = p1:stop("TERM", 10)
        assert.are.equal(0, rc, p1:stderr())
        assert.is_true(took < 5, ("SIGTERM took %.1fs"):format(took))
        assert.are.equal(24, summary(p1:stderr()).inn)
        check_committed("after the first run")

        -- while stopped: 18 more; nothing is processed
        k.produce(B, batch("b", 18), d)
        assert.are.equal(24, #k.consume(B, "rs-out"))

        -- second run, same app id: only the 18 new records; stopped with SIGINT
        local p2 = start("rs2", job, args)
        k.wait_records(B, "rs-out", 42, 20, p2)
        rc, took = p2:stop("INT", 10)
        assert.are.equal(0, rc, p2:stderr())
        assert.is_true(took < 5, ("SIGINT took %.1fs"):format(took))
        assert.are.same({ inn = 18, out = 18, errors = 0, dlq = 0 }, summary(p2:stderr()))
        check_committed("after the second run")

        local out = k.consume(B, "rs-out")
        assert.are.equal(42, #out)
        local seen = {}
        for _, r in ipairs(out) do
            assert.is_nil(seen[r.payload], "processed twice: " .. tostring(r.payload))
            seen[r.payload] = true
            assert_partition(r, "rs-out")
        end
        for i = 1, 24 do assert.is_true(seen["seen:a" .. i], "lost a" .. i) end
        for i = 1, 18 do assert.is_true(seen["seen:b" .. i], "lost b" .. i) end
    end)

    it("a SIGTERM while input is flowing loses nothing and repeats nothing across a restart", function()
        local d = h.tmpdir()
        finally(function() os.execute("rm -rf " .. h.q(d)) end)
        local job = script(d, [[
local eddy = require "eddy"
local job = eddy.job { name = "fl-app" }
job:source("fl-in"):map_values(function(v) return "out:" .. v end):to("fl-out")
return job
]])
        local N = 5000
        local input = {}
        for i = 1, N do
            input[i] = { topic = "fl-in", key = "f" .. (i % 40), value = tostring(i), ts = TS0 + i,
                         partition = (i % 40) % 4 }
        end
        local p1 = start("fl1", job, { "--commit-interval", "300" })
        local producer = k.produce_async(B, input, d, "fl-producer", 800)   -- about 6 s
        procs[#procs + 1] = producer
        k.wait_records(B, "fl-out", 200, 20, p1)
        local rc, took = p1:stop("TERM", 10)
        assert.are.equal(0, rc, p1:stderr())
        assert.is_true(took < 5, ("SIGTERM took %.1fs"):format(took))
        assert.is_true(producer:running(), "the input should still be flowing at the stop")

        -- a clean stop commits exactly what was output: committed offsets == outputs
        local n1 = #k.consume(B, "fl-out")
        assert.is_true(n1 < N)
        local offs = k.offsets(B, "fl-app", { { "fl-in", 4 } })["fl-in"]
        local committed = 0
        for part = 0, 3 do committed = committed + math.max(0, offs[part].committed) end
        assert.are.equal(n1, committed, "sum of committed offsets vs records output by the first run")
        assert.are.equal(n1, summary(p1:stderr()).out)

        local p2 = start("fl2", job)
        k.produced(producer, 20)
        k.wait_records(B, "fl-out", N, 20, p2)
        rc = p2:stop("TERM", 10)
        assert.are.equal(0, rc, p2:stderr())
        assert.are.equal(N - n1, summary(p2:stderr()).inn)

        local out = k.consume(B, "fl-out")
        assert.are.equal(N, #out)
        local seen = {}
        for _, r in ipairs(out) do
            local i = tonumber(r.payload:match("^out:(%d+)$"))
            assert.is_truthy(i, r.payload)
            assert.is_nil(seen[i], "processed twice: " .. i)
            seen[i] = true
            assert.are.equal(input[i].key, r.key)
            assert.are.equal(input[i].ts, r.ts)
            assert_partition(r, "fl-out")
        end
        assert_key_order(out, function(r) return tonumber(r.payload:match("%d+")) end)
        offs = k.offsets(B, "fl-app", { { "fl-in", 4 } })["fl-in"]
        for part = 0, 3 do assert.are.equal(offs[part].high, offs[part].committed) end
    end)

    it("shares the input with a second instance of the same app id; both stop with offsets committed", function()
        local d = h.tmpdir()
        finally(function() os.execute("rm -rf " .. h.q(d)) end)
        local job = script(d, [[
local eddy = require "eddy"
local job = eddy.job { name = "so-app" }
job:source("so-in"):map_values(function(v) return "out:" .. v end):to("so-out")
return job
]])
        local N = 3000
        local input = {}
        for i = 1, N do
            input[i] = { topic = "so-in", key = "s" .. (i % 40), value = tostring(i), ts = TS0 + i,
                         partition = (i % 40) % 4 }
        end
        local p1 = start("so1", job)
        local producer = k.produce_async(B, input, d, "so-producer", 1000)
        procs[#procs + 1] = producer
        k.wait_records(B, "so-out", 100, 20, p1)
        local p2 = start("so2", job)
        k.produced(producer, 20)
        -- the rebalance gives the second instance partitions of its own
        k.wait_for("the second instance to be assigned partitions", 20, function()
            if not p2:running() then error("so2 exited:\n" .. p2:stderr(), 0) end
            return p2:stderr():find("assigned", 1, true)
        end, 0.1)
        -- every input record arrives (duplicates allowed: at least once)
        k.wait_for("every record in so-out", 20, function()
            local seen, n = {}, 0
            for _, r in ipairs(k.consume(B, "so-out")) do
                if not seen[r.payload] then seen[r.payload] = true; n = n + 1 end
            end
            return n == N, n .. " distinct"
        end, 0.3)
        -- The development broker refuses offset commits while a group rebalances, so
        -- the partitions that moved may be processed again by their new owner (at
        -- least once): wait until that catching-up is over, i.e. so-out stops growing.
        local last, stable_since = -1, k.now()
        k.wait_for("so-out to stop growing", 30, function()
            local n = #k.consume(B, "so-out")
            if n ~= last then last, stable_since = n, k.now() end
            return k.now() - stable_since >= 2.5, n
        end, 0.5)
        -- Stop one, let the group settle (the second instance takes all four
        -- partitions), then stop the other. (Stopping both within a rebalance
        -- races the development broker, which refuses commits while a group
        -- rebalances; eddy then retries for up to 10 s.)
        local function assigned(p)
            local n = 0
            for _ in p:stderr():gmatch("task so%-in%[%d%] assigned") do n = n + 1 end
            return n
        end
        local before = assigned(p2)
        local rc1 = p1:stop("TERM", 10)
        k.wait_for("the second instance to take over all partitions", 20, function()
            return assigned(p2) >= before + 4, assigned(p2)
        end, 0.2)
        local rc2 = p2:stop("TERM", 10)
        assert.are.equal(0, rc1, p1:stderr())
        assert.are.equal(0, rc2, p2:stderr())
        local s1, s2 = summary(p1:stderr()), summary(p2:stderr())
        -- the group shared the partitions (the second instance was assigned its
        -- own), and between them every record was read at least once
        assert.is_true(before > 0, "the second instance was assigned partitions")
        assert.is_true(s1.inn + s2.inn >= N, "every record read")
        local out = k.consume(B, "so-out")
        assert.are.equal(s1.out + s2.out, #out)
        for _, r in ipairs(out) do
            local i = tonumber(r.payload:match("^out:(%d+)$"))
            assert.is_truthy(i and input[i], r.payload)
            assert.are.equal(input[i].key, r.key)
            assert_partition(r, "so-out")
        end
        -- both stopped cleanly (SIGTERM: finish the batch, commit, exit 0), one right
        -- after the other: everything processed is committed
        local offs = k.offsets(B, "so-app", { { "so-in", 4 } })["so-in"]
        for part = 0, 3 do
            assert.are.equal(offs[part].high, offs[part].committed,
                ("so-in[%d]: committed offset after both instances stopped cleanly\n-- so1:\n%s-- so2:\n%s")
                    :format(part, p1:stderr(), p2:stderr()))
        end
    end)

    it("exits 0 promptly on SIGTERM while still joining its group", function()
        local d = h.tmpdir()
        finally(function() os.execute("rm -rf " .. h.q(d)) end)
        local job = script(d, [[
local eddy = require "eddy"
local job = eddy.job { name = "idle-app" }
job:source("idle-in"):to("idle-out")
return job
]])
        local p = start("idle", job)
        k.wait_for("the job to subscribe", 10, function()
            if not p:running() then error("eddy exited " .. tostring(p:rc()) .. ":\n" .. p:stderr(), 0) end
            return p:stderr():find("consuming idle-in", 1, true)
        end, 0.02)
        local rc, took = p:stop("TERM", 10)
        assert.are.equal(0, rc, p:stderr())
        assert.is_true(took < 3, ("SIGTERM took %.1fs"):format(took))
    end)

    it("logs, does not crash, and exits 0 on SIGTERM when the broker is unreachable", function()
        local d = h.tmpdir()
        finally(function() os.execute("rm -rf " .. h.q(d)) end)
        local job = script(d, [[
local eddy = require "eddy"
local job = eddy.job { name = "nobroker-app" }
job:source("nb-in"):to("nb-out")
return job
]])
        -- port 1 on loopback: nothing listens, connections are refused at once
        local p = k.start_eddy(d, "nobroker", job, "127.0.0.1:1")
        procs[#procs + 1] = p
        k.wait_for("a log line about the unreachable broker", 10, function()
            if not p:running() then error("eddy exited " .. tostring(p:rc()) .. ":\n" .. p:stderr(), 0) end
            return p:stderr():find("127.0.0.1:1", 1, true)
        end, 0.05)
        k.sleep(0.5)
        assert.is_true(p:running(), "eddy gave up:\n" .. p:stderr())
        local rc, took = p:stop("TERM", 15)
        local err = p:stderr()
        assert.are.equal(0, rc, err)
        assert.is_true(took < 8, ("SIGTERM took %.1fs"):format(took))
        assert.is_nil(err:find("Segmentation", 1, true))
        assert.is_nil(err:find("Assertion", 1, true))
        -- every client's librdkafka lines come through eddy's log (the control-topic
        -- follower's too), none raw ("%3|1700000000.123|FAIL|rdkafka#consumer-2| ...")
        assert.is_nil(err:find("\n%%%d|") or err:find("^%%%d|"), err)
        assert.are.equal("", p:stdout())
    end)
end)
