-- spec/aggregate_kafka_spec.lua: non-windowed aggregation in Kafka mode, end to end:
-- `eddy broker`, input produced with python3 + confluent_kafka, `eddy run` in the
-- background, topics read back with kcat. A word count through the internal topic
-- <app>-counts-repartition with a 3-partition source, compared with a count computed
-- here; SIGTERM and restarts with the same --state-dir and app id (counts continue,
-- nothing counted twice, also when the stop comes while input is flowing); and the
-- per-record undo of store writes across batches.
local cjson = require "cjson"
local h = require "helper"
local k = require "kafka_helper"
local R = require "tools.agg_ref"

local TS0 = 1700000000000
local TOPICS = { { "agk-lines", 3 }, { "agk-counts", 3 }, { "agk-u-in", 1 }, { "agk-u-out", 1 },
    { "agk-t-in", 2 }, { "agk-t-out", 2 } }

-- partition count of an existing topic, from the full metadata listing (a metadata
-- request naming the topic could auto-create it on the development broker)
local function topic_partitions(B, topic)
    local p = io.popen(("%s -L -J -b %s 2>/dev/null"):format(k.KCAT, h.q(B)))
    local s = p:read("*a")
    p:close()
    local ok, md = pcall(cjson.decode, s)
    assert(ok and type(md) == "table", "kcat -L -J: " .. s)
    for _, t in ipairs(md.topics or {}) do
        if t.topic == topic then return #t.partitions end
    end
    return nil
end

local function summary(stderr)
    local i, o, e, d = stderr:match("(%d+) record%(s%) in, (%d+) out, (%d+) error%(s%), (%d+) dead%-lettered")
    if not i then return nil end
    return { inn = tonumber(i), out = tonumber(o), errors = tonumber(e), dlq = tonumber(d) }
end

describe("aggregation in Kafka mode", function()
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

    it("word count through <app>-counts-repartition: final counts, the internal topic, SIGTERM and restarts", function()
        local job = h.script(dir, "wc.lua", [[
local eddy = require "eddy"
local job = eddy.job { name = "agk-wc" }
job:source("agk-lines")
   :flat_map(function(k, v, emit) for w in v:lower():gmatch("%a+") do emit(w, 1) end end)
   :group_by_key()
   :count { store = "counts" }
   :to_stream()
   :map_values(tostring)
   :to("agk-counts")
return job
]])
        local g = R.rng(2024)
        local vocab = {}
        for i = 1, 40 do vocab[i] = ("w%s"):format(string.char(96 + (i - 1) % 26 + 1)):rep(1 + math.floor((i - 1) / 26)) end
        local want, nwords, seqno = {}, 0, 0
        local function lines(n)
            local list = {}
            for i = 1, n do
                seqno = seqno + 1
                local ws = {}
                for j = 1, g.int(0, 7) do ws[j] = g.pick(vocab) end
                for _, w in ipairs(ws) do want[w] = (want[w] or 0) + 1; nwords = nwords + 1 end
                list[i] = { topic = "agk-lines", key = g.chance(0.2) and nil or ("line-" .. g.int(1, 30)),
                    value = table.concat(ws, " "), ts = TS0 + seqno, partition = seqno % 3 }
            end
            return list
        end
        -- per key, the updates in offset order must be exactly 1, 2, ..., n: none twice,
        -- none missing, in order; the last one equals the reference count
        local function check_counts(what)
            local out = k.sort_by_offset(k.consume(B, "agk-counts"))
            local seq = {}
            for _, r in ipairs(out) do
                local n = tonumber(r.payload)
                assert.are.equal((seq[r.key] or 0) + 1, n,
                    ("%s: word %q: update %s after %s (counted twice or lost?)"):format(what, r.key, r.payload, tostring(seq[r.key])))
                seq[r.key] = n
                assert.are.equal(h.partition_for(r.key, 3), r.partition, "output partition of " .. r.key)
            end
            assert.are.same(want, seq, what .. ": final count per word")
            return out
        end

        -- 1. first run: 300 lines in 3 partitions
        k.produce(B, lines(300), dir)
        local n1 = nwords
        local p1 = start("wc1", job)
        k.wait_records(B, "agk-counts", n1, 25, p1)
        check_counts("first run")

        -- the internal topic exists and holds the re-keyed records: one per word, the
        -- word as key, in partition murmur2(word) % its partition count
        local RP = "agk-wc-counts-repartition"
        local np = topic_partitions(B, RP)
        assert.is_truthy(np, RP .. " must exist")
        local rp = k.consume(B, RP)
        assert.are.equal(n1, #rp, "records in " .. RP)
        local per = {}
        for _, r in ipairs(rp) do
            per[r.key] = (per[r.key] or 0) + 1
            assert.are.equal(h.partition_for(r.key, np), r.partition, RP .. ": partition of " .. r.key)
        end
        assert.are.same(want, per, RP .. ": records per word")

        local rc = p1:stop("TERM", 10)
        assert.are.equal(0, rc, p1:stderr())
        assert.are.same({ inn = 300 + n1, out = 2 * n1, errors = 0, dlq = 0 }, summary(p1:stderr()),
            "first run: 300 lines and the re-keyed words in; updates and re-keyed words out")

        -- 2. while stopped, 200 more lines; a restart with the same state dir and app id
        -- continues the counts
        k.produce(B, lines(200), dir)
        local p2 = start("wc2", job)
        k.wait_records(B, "agk-counts", nwords, 25, p2)
        check_counts("after a restart")

        -- 3. a SIGTERM while lines are flowing, then a restart: still nothing twice
        local producer = k.produce_async(B, lines(600), dir, "wc-producer", 250)   -- about 2.4 s
        procs[#procs + 1] = producer
        k.sleep(1.0)
        rc = p2:stop("TERM", 10)
        assert.are.equal(0, rc, p2:stderr())
        assert.is_true(producer:running(), "the input should still be flowing at the stop")
        local p3 = start("wc3", job)
        k.produced(producer, 20)
        k.wait_records(B, "agk-counts", nwords, 25, p3)
        k.sleep(0.5)                       -- anything extra (a duplicate) would show now
        check_counts("after a stop while input was flowing")
        rc = p3:stop("TERM", 10)
        assert.are.equal(0, rc, p3:stderr())
        assert.are.equal(0, summary(p3:stderr()).errors)
    end)

    it("after a repartition the key is what the grouping's key serde reads back (file mode must agree)", function()
        local job = h.script(dir, "keytype.lua", [[
local eddy = require "eddy"
local job = eddy.job { name = "agk-keytype" }
local s = job:source("agk-t-in")
s:group_by(function(k, v) return tonumber(v) % 3 end):count { store = "c" }
   :to_stream():map_values(function(v, k) return "default-serde " .. type(k) .. ":" .. v end):to("agk-t-out")
s:group_by(function(k, v) return tonumber(v) % 3 end, { key = "number" }):count { store = "c2" }
   :to_stream():map_values(function(v, k) return "number-serde " .. type(k) .. ":" .. v end):to("agk-t-out")
return job
]])
        k.produce(B, { { topic = "agk-t-in", key = "a", value = "4", ts = TS0 + 1, partition = 0 },
            { topic = "agk-t-in", key = "b", value = "7", ts = TS0 + 2, partition = 1 } }, dir)
        local p = start("keytype", job)
        local out = k.wait_records(B, "agk-t-out", 4, 20, p)
        local got = {}
        for _, r in ipairs(out) do got[r.payload] = (got[r.payload] or 0) + 1 end
        assert.are.same({ ["default-serde string:1"] = 1, ["default-serde string:2"] = 1,
            ["number-serde number:1"] = 1, ["number-serde number:2"] = 1 }, got)
    end)

    it("a failing record does not undo the store writes of records in earlier batches", function()
        -- one record per batch (each produced after the previous one's output): a record
        -- that fails downstream of the count must undo its own write only
        local job = h.script(dir, "undo.lua", [[
local eddy = require "eddy"
local job = eddy.job { name = "agk-undo" }
job:source("agk-u-in"):group_by_key():count { store = "c" }:to_stream()
   :map_values(function(v, k, rec) if rec.headers.fail then error("downstream failure") end return tostring(v) end)
   :to("agk-u-out")
return job
]])
        local p = start("undo", job, { "--commit-interval", "60000" })   -- no commit in between
        local function send(value, fail)
            k.produce(B, { { topic = "agk-u-in", key = "p", value = value, partition = 0,
                headers = fail and { { "fail", "1" } } or nil } }, dir)
        end
        send("a")
        k.wait_records(B, "agk-u-out", 1, 20, p)
        send("b", true)
        k.wait_for("the dead letter", 15, function()
            return #k.consume(B, "agk-undo-dlq") >= 1
        end, 0.2)
        send("c")
        local out = k.wait_records(B, "agk-u-out", 2, 20, p)
        local got = {}
        for i, r in ipairs(out) do got[i] = r.payload end
        assert.are.same({ "1", "2" }, got)
    end)
end)
