-- spec/aggregate_spec.lua: non-windowed aggregations in file mode — group_by_key /
-- group_by, count / reduce / aggregate, table:to_stream() — against a reference
-- computed here in plain Lua (spec/tools/agg_ref.lua), with seeded random inputs, 1
-- and 3 partitions, with and without a key change (repartition) before the grouping.
-- Also: nil keys, null values, the error policy with per-record undo of store writes,
-- state surviving restarts (--state-dir, --app-id), and `eddy check`.
-- Kafka Streams is the reference where eddy's contract is silent.
local h = require "helper"
local cjson = require "cjson"
local R = require "tools.agg_ref"
local fj = require "tools.file_job"

local PRE = fj.PRE
local TS0 = 1700000000000

local run, check, assert_clean = fj.run, fj.check, fj.assert_clean

local function assert_same_updates(out, expected, decode, expect_value)
    local d = R.diff_updates(out, expected, decode, expect_value)
    assert(d == nil, d)
end

-- every output record sits in partition murmur2(key) % n (a keyed sink, Kafka's partitioner)
local function assert_partitions(out, n)
    for _, e in ipairs(out) do
        assert.are.equal(h.partition_for(e.key, n), e.partition,
            ("output key %q: partition"):format(e.key))
    end
end

-- Random input: n records, source keys from a pool, values "word:number" with the word
-- from another pool; timestamps increase (a few equal). Keys spread by murmur2.
local WORDS = {}
for _, k in ipairs(R.key_pool(60)) do
    if not k:find(":", 1, true) then WORDS[#WORDS + 1] = k end
end
local function random_input(seed, n, nkeys)
    local g = R.rng(seed)
    local keys = R.key_pool(nkeys or 150)
    local recs, ts = {}, TS0
    for i = 1, n do
        ts = ts + g.int(0, 3)
        recs[i] = { key = g.pick(keys), value = g.pick(WORDS) .. ":" .. g.int(-50, 100), ts = ts }
    end
    return recs
end
local function word_of(v) return v:match("^(.*):") end
local function num_of(v) return tonumber(v:match(":(%-?%d+)$")) end

-- ---------------------------------------------------------------------------

describe("aggregations match a reference computed in the test (file mode)", function()
    for _, P in ipairs({ 1, 3 }) do
        local args = { "--partitions", tostring(P) }

        it(("count by the source key, no repartition (%d partition(s))"):format(P), function()
            local input = random_input(11 + P, 3000)
            local r = run([[
local job = eddy.job { name = "cnt" }
job:source("in"):group_by_key():count { store = "counts" }
   :to_stream():map_values(tostring):to("out")
return job
]], input, args)
            assert_clean(r)
            local want = R.aggregate(input, { step = R.count_step })
            assert.are.equal(#want, #r.out, "one update per record")
            assert_same_updates(r.out, want, tonumber)
            assert_partitions(r.out, P)
        end)

        for _, how in ipairs({ "map", "select_key", "flat_map" }) do
            it(("count after %s changes the key: group_by_key repartitions (%d partition(s))"):format(how, P), function()
                local input = random_input(20 + P, 3000)
                local step = ({
                    map = [[:map(function(k, v) return v:match("^(.*):"), v end)]],
                    select_key = [[:select_key(function(k, v) return v:match("^(.*):") end)]],
                    flat_map = [[:flat_map(function(k, v, emit) emit(v:match("^(.*):"), v) end)]],
                })[how]
                local r = run([[
local job = eddy.job { name = "rekey" }
job:source("in")]] .. step .. [[
   :group_by_key():count { store = "counts" }
   :to_stream():map_values(tostring):to("out")
return job
]], input, args)
                assert_clean(r)
                local want = R.aggregate(input, { regroup = function(rec) return word_of(rec.value) end,
                    step = R.count_step })
                assert.are.equal(#want, #r.out, "one update per record")
                assert_same_updates(r.out, want, tonumber)
                assert_partitions(r.out, P)
            end)
        end

        it(("group_by(fn) count, after a key-preserving map_values (%d partition(s))"):format(P), function()
            local input = random_input(30 + P, 3000)
            local r = run([[
local job = eddy.job { name = "gb" }
job:source("in"):map_values(function(v) return v end)
   :group_by(function(k, v, rec) return v:match("^(.*):") end)
   :count { store = "counts" }
   :to_stream():map_values(tostring):to("out")
return job
]], input, args)
            assert_clean(r)
            local want = R.aggregate(input, { regroup = function(rec) return word_of(rec.value) end,
                step = R.count_step })
            assert_same_updates(r.out, want, tonumber)
            assert_partitions(r.out, P)
        end)

        it(("reduce: a sum by source key and an order-sensitive fold by a new key (%d partition(s))"):format(P), function()
            local input = random_input(40 + P, 3000)
            local r = run([[
local job = eddy.job { name = "red" }
local nums = job:source("in"):map_values(function(v) return tonumber(v:match(":(%-?%d+)$")) end)
nums:group_by_key():reduce(function(acc, v, k) return acc + v end, { store = "sums" })
   :to_stream():map_values(function(v) return "sum=" .. v end):to("sums-out")
nums:group_by(function(k, v) return "m" .. (v % 7) end)
   :reduce(function(acc, v, k) return (acc * 31 + v + #k) % 1000003 end, { store = "folds" })
   :to_stream():map_values(function(v) return "fold=" .. v end):to("folds-out")
return job
]], input, args)
            assert_clean(r)
            local sums, folds = {}, {}
            for _, e in ipairs(r.out) do
                if e.topic == "sums-out" then sums[#sums + 1] = e else folds[#folds + 1] = e end
            end
            local want_sums = R.aggregate(input, { value = function(rec) return num_of(rec.value) end,
                step = function(acc, v) if acc == nil then return v end return acc + v end })
            assert_same_updates(sums, want_sums, function(p) return tonumber(p:match("^sum=(.*)$")) end)
            local want_folds = R.aggregate(input, {
                value = function(rec) return num_of(rec.value) end,
                regroup = function(rec) return "m" .. (num_of(rec.value) % 7) end,
                step = function(acc, v, k) if acc == nil then return v end return (acc * 31 + v + #k) % 1000003 end })
            assert_same_updates(folds, want_folds, function(p) return tonumber(p:match("^fold=(.*)$")) end)
            assert_partitions(r.out, P)
        end)

        it(("aggregate: a table accumulator, order-sensitive, with rec.ts, json out (%d partition(s))"):format(P), function()
            local input = random_input(50 + P, 3000)
            local r = run([[
local job = eddy.job { name = "agg" }
job:source("in")
   :select_key(function(k, v) return v:match("^(.*):") end)
   :group_by_key()
   :aggregate(function() return { n = 0, sum = 0, h = 7, last = -1 } end,
      function(acc, v, k, rec)
         local x = tonumber(v:match(":(%-?%d+)$"))
         acc.n = acc.n + 1
         acc.sum = acc.sum + x
         acc.h = (acc.h * 31 + x + 50) % 1000003
         acc.first = acc.first or rec.ts
         acc.last = rec.ts
         acc.key = k
         return acc
      end, { store = "stats" })
   :to_stream():to("out", { value = "json" })
return job
]], input, args)
            assert_clean(r)
            local want = R.aggregate(input, {
                regroup = function(rec) return word_of(rec.value) end,
                step = function(acc, v, k, rec)
                    acc = acc and { n = acc.n, sum = acc.sum, h = acc.h, first = acc.first, last = acc.last, key = acc.key }
                        or { n = 0, sum = 0, h = 7, last = -1 }
                    local x = num_of(v)
                    acc.n, acc.sum, acc.h = acc.n + 1, acc.sum + x, (acc.h * 31 + x + 50) % 1000003
                    acc.first = acc.first or rec.ts
                    acc.last, acc.key = rec.ts, k
                    return acc
                end })
            assert.are.equal(#want, #r.out, "one update per record")
            assert_same_updates(r.out, want, cjson.decode)
        end)
    end

    it("the same answer with 1 and 3 partitions (final aggregates after a repartition)", function()
        local input = random_input(61, 2000)
        local script = [[
local job = eddy.job { name = "same" }
job:source("in"):group_by(function(k, v) return v:match("^(.*):") end)
   :reduce(function(acc, v) return acc .. "|" .. v:match(":(.*)$") end, { store = "r" })
   :to_stream():to("out")
return job
]]
        local one = run(script, input, { "--partitions", "1" })
        local three = run(script, input, { "--partitions", "3" })
        assert_clean(one)
        assert_clean(three)
        assert.are.same(R.last_per_key(one.out), R.last_per_key(three.out))
    end)

    it("without a key change there is no repartition: a key seen in two input partitions is aggregated per partition (Kafka Streams)", function()
        -- records placed explicitly: the same keys in partitions 0, 1 and 2
        local g = R.rng(7)
        local input = {}
        for i = 1, 600 do
            input[i] = { key = "k" .. g.int(1, 10), value = tostring(g.int(1, 9)), ts = TS0 + i, partition = g.int(0, 2) }
        end
        local r = run([[
local job = eddy.job { name = "perpart" }
job:source("in"):group_by_key():count { store = "c" }
   :to_stream():map_values(function(v, k, rec) return v end):to("out", { value = "number" })
return job
]], input, { "--partitions", "3" })
        assert_clean(r)
        local want = R.aggregate(input, { step = R.count_step,
            group = function(rec, key) return rec.partition .. "/" .. key end })
        -- compare per key in input order: updates of one key interleave across partitions
        assert_same_updates(r.out, want, tonumber)
    end)

    it("a large input spanning many batches and commits: 30 000 records, 2 000 keys, through a repartition", function()
        local g = R.rng(99)
        local input, words = {}, {}
        for i = 1, 2000 do words[i] = "w" .. i end
        for i = 1, 30000 do input[i] = { key = "s" .. g.int(1, 50), value = g.pick(words) .. ":1", ts = TS0 + i } end
        local r = run([[
local job = eddy.job { name = "big" }
job:source("in"):map(function(k, v) return v:match("^(.*):"), v end)
   :group_by_key():count { store = "counts" }
   :to_stream():map_values(tostring):to("out")
return job
]], input, { "--partitions", "3" })
        assert_clean(r)
        local want = R.aggregate(input, { regroup = function(rec) return word_of(rec.value) end, step = R.count_step })
        assert.are.equal(30000, #r.out)
        assert_same_updates(r.out, want, tonumber)
    end)

    it("wordcount over --input-format lines (the README example), 3 partitions", function()
        local g = R.rng(5)
        local vocab = { "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Eddy", "KAFKA" }
        local lines, want = {}, {}
        for i = 1, 400 do
            local ws = {}
            for j = 1, g.int(0, 8) do ws[j] = g.pick(vocab) end
            lines[i] = table.concat(ws, g.chance(0.5) and " " or ", ")
            for _, w in ipairs(ws) do w = w:lower(); want[w] = (want[w] or 0) + 1 end
        end
        local dir = h.tmpdir()
        finally(function() os.execute("rm -rf " .. h.q(dir)) end)
        local sp = h.script(dir, "wc.lua", PRE .. [[
local job = eddy.job { name = "wordcount" }
job:source("text-lines")
   :flat_map(function(k, v, emit) for w in v:lower():gmatch("%a+") do emit(w, 1) end end)
   :group_by_key()
   :count { store = "counts" }
   :to_stream()
   :map_values(tostring)
   :to("word-counts")
return job
]])
        local code, out, err = h.eddy({ "run", sp, "--input", h.write(dir .. "/in.txt", table.concat(lines, "\n") .. "\n"),
            "--input-format", "lines", "--partitions", "3", "--state-dir", dir .. "/state", "--no-watch" })
        assert.are.equal(0, code, err)
        local got, seq = {}, {}
        for _, e in ipairs(h.envelopes(out)) do
            local n = tonumber(e.payload)
            assert.are.equal((seq[e.key] or 0) + 1, n, "counts of " .. e.key .. " go up by one")
            seq[e.key] = n
            got[e.key] = n
        end
        assert.are.same(want, got)
    end)
end)

-- ---------------------------------------------------------------------------

describe("nil keys and null values", function()
    local COUNT_REDUCE_AGG = [[
local job = eddy.job { name = "nulls" }
local s = job:source("in")
s:group_by_key():count { store = "c" }:to_stream():map_values(tostring):to("count-out")
s:group_by_key():reduce(function(acc, v) return acc .. v end, { store = "r" }):to_stream():to("reduce-out")
s:group_by_key():aggregate(function() return "" end, function(acc, v) return acc .. v end, { store = "a" })
   :to_stream():to("agg-out")
return job
]]
    local function split(out)
        local t = { ["count-out"] = {}, ["reduce-out"] = {}, ["agg-out"] = {} }
        for _, e in ipairs(out) do table.insert(t[e.topic], e) end
        return t
    end

    it("records with a nil key are skipped by count, reduce and aggregate: no update, no error, no DLQ", function()
        local input = {
            { key = "a", value = "1", ts = TS0 + 1 },
            { key = nil, value = "2", ts = TS0 + 2 },
            { key = "a", value = "3", ts = TS0 + 3 },
            { key = nil, value = "4", ts = TS0 + 4 },
            { key = "b", value = "5", ts = TS0 + 5 },
        }
        for _, P in ipairs({ 1, 3 }) do
            local r = run(COUNT_REDUCE_AGG, input, { "--partitions", tostring(P) })
            assert_clean(r)
            assert.are.equal(0, r.summary.errors)
            local t = split(r.out)
            local function kv(list)
                local l = {}
                for i, e in ipairs(list) do l[i] = e.key .. "=" .. e.payload end
                return l
            end
            assert.are.same({ "a=1", "a=2", "b=1" }, kv(t["count-out"]))
            assert.are.same({ "a=1", "a=13", "b=5" }, kv(t["reduce-out"]))
            assert.are.same({ "a=1", "a=13", "b=5" }, kv(t["agg-out"]))
        end
    end)

    it("a group_by or select_key that returns nil skips the record (before and after the repartition)", function()
        local input = {}
        for i = 1, 60 do input[i] = { key = "k" .. (i % 4), value = tostring(i), ts = TS0 + i } end
        for _, P in ipairs({ 1, 3 }) do
            local r = run([[
local job = eddy.job { name = "nilkey" }
local s = job:source("in")
s:group_by(function(k, v) if tonumber(v) % 3 ~= 0 then return "g" .. (tonumber(v) % 2) end end)
   :count { store = "c1" }:to_stream():map_values(tostring):to("o1")
s:select_key(function(k, v) if tonumber(v) % 5 ~= 0 then return k end end)
   :group_by_key():count { store = "c2" }:to_stream():map_values(tostring):to("o2")
return job
]], input, { "--partitions", tostring(P) })
            assert_clean(r)
            local o1, o2 = {}, {}
            for _, e in ipairs(r.out) do table.insert(e.topic == "o1" and o1 or o2, e) end
            assert_same_updates(o1, R.aggregate(input, { step = R.count_step, regroup = function(rec)
                local n = tonumber(rec.value)
                if n % 3 ~= 0 then return "g" .. (n % 2) end
            end }), tonumber)
            assert_same_updates(o2, R.aggregate(input, { step = R.count_step, regroup = function(rec)
                if tonumber(rec.value) % 5 ~= 0 then return rec.key end
            end }), tonumber)
        end
    end)

    it("reduce and aggregate ignore null values: no update forwarded, the aggregate unchanged", function()
        local input = {
            { key = "a", value = "x", ts = TS0 + 1 },
            { key = "a", value = nil, ts = TS0 + 2 },
            { key = "a", value = "y", ts = TS0 + 3 },
            { key = "b", value = nil, ts = TS0 + 4 },      -- a null first: nothing starts
            { key = "b", value = "z", ts = TS0 + 5 },
        }
        local r = run(COUNT_REDUCE_AGG, input)
        assert_clean(r)
        local t = split(r.out)
        local function kvt(list)
            local l = {}
            for i, e in ipairs(list) do l[i] = e.key .. "=" .. tostring(e.payload) .. "@" .. (e.ts - TS0) end
            return l
        end
        assert.are.same({ "a=x@1", "a=xy@3", "b=z@5" }, kvt(t["reduce-out"]))
        assert.are.same({ "a=x@1", "a=xy@3", "b=z@5" }, kvt(t["agg-out"]))
    end)

    it("count ignores null values too (Kafka Streams: 'Records with null key or value are ignored')", function()
        local input = {
            { key = "a", value = "x", ts = TS0 + 1 },
            { key = "a", value = nil, ts = TS0 + 2 },
            { key = "a", value = "y", ts = TS0 + 3 },
            { key = "b", value = nil, ts = TS0 + 4 },
        }
        local r = run(COUNT_REDUCE_AGG, input)
        assert_clean(r)
        local got = {}
        for _, e in ipairs(split(r.out)["count-out"]) do got[#got + 1] = e.key .. "=" .. e.payload end
        assert.are.same({ "a=1", "a=2" }, got)
    end)

    it("a value made nil by a map before the grouping is ignored as a null value (through a repartition too)", function()
        local input = {}
        for i = 1, 30 do input[i] = { key = "k", value = tostring(i), ts = TS0 + i } end
        for _, P in ipairs({ 1, 3 }) do
            local r = run([[
local job = eddy.job { name = "nilval" }
job:source("in"):map(function(k, v) local n = tonumber(v); return "g" .. (n % 2), (n % 3 ~= 0) and n or nil end)
   :group_by_key():reduce(function(acc, v) return acc + v end, { store = "s" })
   :to_stream():to("out", { value = "number" })
return job
]], input, { "--partitions", tostring(P) })
            assert_clean(r)
            assert_same_updates(r.out, R.aggregate(input, {
                regroup = function(rec) return "g" .. (tonumber(rec.value) % 2) end,
                value = function(rec) local n = tonumber(rec.value); return n % 3 ~= 0 and n or nil end,
                step = function(acc, v) return acc and acc + v or v end }), tonumber)
        end
    end)

    it("an empty key is a key like any other: only null keys are skipped (Kafka Streams)", function()
        local input = {
            { key = "", value = "x", ts = TS0 + 1 },
            { key = "", value = "y", ts = TS0 + 2 },
            { key = "a", value = "z", ts = TS0 + 3 },
        }
        local r = run(COUNT_REDUCE_AGG, input)
        assert.are.equal(0, r.code, r.stderr)
        assert.are.equal(0, #r.dlq, "dead-lettered: " .. (r.dlq[1] and h.header(r.dlq[1], "eddy.error") or ""))
        local got = {}
        for _, e in ipairs(split(r.out)["count-out"]) do got[#got + 1] = e.key .. "=" .. e.payload end
        assert.are.same({ "=1", "=2", "a=1" }, got)
    end)
end)

-- ---------------------------------------------------------------------------

describe("errors: the DLQ and per-record undo of store writes", function()
    -- updates of one key as "key=payload" strings, in output order
    local function kv(out, topic)
        local l = {}
        for _, e in ipairs(out) do
            if not topic or e.topic == topic then l[#l + 1] = e.key .. "=" .. tostring(e.payload) end
        end
        return l
    end

    it("an aggregator error dead-letters the record; the aggregate is unchanged and the next good record continues from it", function()
        local input = {
            { key = "x", value = "1", ts = TS0 + 1 },
            { key = "x", value = "2", ts = TS0 + 2 },
            { key = "x", value = "bad", ts = TS0 + 3 },
            { key = "x", value = "3", ts = TS0 + 4 },
        }
        for _, P in ipairs({ 1, 3 }) do
            local r = run([[
local job = eddy.job { name = "aggerr" }
job:source("in"):group_by_key()
   :aggregate(function() return 0 end, function(acc, v, k)
      if v == "bad" then error("bad value for " .. k) end
      return acc + tonumber(v)
   end, { store = "s" })
   :to_stream():map_values(tostring):to("out")
return job
]], input, { "--partitions", tostring(P) })
            assert.are.equal(0, r.code, r.stderr)
            assert.are.same({ "x=1", "x=3", "x=6" }, kv(r.out))
            assert.are.equal(1, #r.dlq)
            local d = r.dlq[1]
            assert.are.equal("x", d.key)
            assert.are.equal("bad", d.payload)
            assert.are.equal(TS0 + 3, d.ts)
            assert.matches("job.lua:5: bad value for x", h.header(d, "eddy.error"), 1, true)
            assert.are.equal("process", h.header(d, "eddy.stage"))
            assert.are.equal("in", h.header(d, "eddy.topic"))
            assert.are.equal(tostring(h.partition_for("x", P)), h.header(d, "eddy.partition"))
            assert.are.equal("2", h.header(d, "eddy.offset"))
        end
    end)

    it("a failing record does not undo the store writes of the record before it (another key)", function()
        -- x is counted twice; then a record of y fails in its aggregator before writing
        -- anything; x's second update must stay
        local r = run([[
local job = eddy.job { name = "undoprev" }
job:source("in"):group_by_key()
   :aggregate(function() return 0 end, function(acc, v) if v == "bad" then error("bad") end return acc + 1 end, { store = "c" })
   :to_stream():map_values(tostring):to("out")
return job
]], { { key = "x", value = "ok", ts = TS0 + 1 }, { key = "x", value = "ok", ts = TS0 + 2 },
      { key = "y", value = "bad", ts = TS0 + 3 }, { key = "x", value = "ok", ts = TS0 + 4 } })
        assert.are.equal(0, r.code, r.stderr)
        assert.are.equal(1, #r.dlq)
        assert.are.same({ "x=1", "x=2", "x=3" }, kv(r.out))
    end)

    it("a failing record does not undo the writes of a record of an earlier batch (a bad input line ends a batch)", function()
        -- file mode hands a batch over at a line that is not JSON: p is counted in the
        -- first batch, and its second record, the first of the next batch, fails after
        -- the count; only that record's write is undone, so the third record makes 2
        local r = run([[
local job = eddy.job { name = "undobatch" }
job:source("in"):group_by_key():count { store = "c" }:to_stream()
   :map_values(function(v, k, rec) if rec.ts == ]] .. (TS0 + 2) .. [[ then error("downstream") end return tostring(v) end)
   :to("out")
return job
]], { { key = "p", value = "a", ts = TS0 + 1 }, "this line is not JSON",
      { key = "p", value = "b", ts = TS0 + 2 }, { key = "p", value = "c", ts = TS0 + 3 } })
        assert.are.equal(0, r.code, r.stderr)
        assert.are.equal(2, #r.dlq)
        assert.are.same({ "p=1", "p=2" }, kv(r.out))
    end)

    it("a record failing before the aggregation (in a map) does not undo the previous record's count", function()
        local r = run([[
local job = eddy.job { name = "undomap" }
job:source("in"):map_values(function(v) if v == "bad" then error("bad") end return v end)
   :group_by_key():count { store = "c" }
   :to_stream():map_values(tostring):to("out")
return job
]], { { key = "x", value = "ok", ts = TS0 + 1 }, { key = "z", value = "bad", ts = TS0 + 2 },
      { key = "x", value = "ok", ts = TS0 + 3 } })
        assert.are.equal(0, r.code, r.stderr)
        assert.are.equal(1, #r.dlq)
        assert.are.same({ "x=1", "x=2" }, kv(r.out))
    end)

    it("a reducer error and an initializer error leave the aggregate unchanged", function()
        local input = {
            { key = "r", value = "5", ts = TS0 + 1 },
            { key = "r", value = "boom", ts = TS0 + 2 },
            { key = "r", value = "6", ts = TS0 + 3 },
            { key = "i", value = "first", ts = TS0 + 4 },   -- the initializer fails once
            { key = "i", value = "7", ts = TS0 + 5 },
        }
        local r = run([[
local job = eddy.job { name = "rederr" }
local s = job:source("in")
s:filter(function(k) return k == "r" end):group_by_key()
   :reduce(function(acc, v) return acc + tonumber(v) end, { store = "r" })   -- "boom": arithmetic error
   :to_stream():map_values(tostring):to("out")
local calls = 0
s:filter(function(k) return k == "i" end):group_by_key()
   :aggregate(function() calls = calls + 1; if calls == 1 then error("init failed") end return 100 end,
      function(acc, v) return acc + tonumber(v) end, { store = "i" })
   :to_stream():map_values(tostring):to("out")
return job
]], input)
        assert.are.equal(0, r.code, r.stderr)
        assert.are.same({ "r=5", "r=11", "i=107" }, kv(r.out))
        assert.are.equal(2, #r.dlq)
        assert.matches("job.lua:5:", h.header(r.dlq[1], "eddy.error"), 1, true)   -- the reducer line
        assert.matches("init failed", h.header(r.dlq[2], "eddy.error"), 1, true)
    end)

    it("an aggregator that changes its accumulator in place and then fails leaves the stored aggregate unchanged", function()
        local r = run([[
local job = eddy.job { name = "inplace" }
job:source("in"):group_by_key()
   :aggregate(function() return { n = 0, items = {} } end, function(acc, v)
      acc.n = acc.n + 1
      acc.items[#acc.items + 1] = v
      if v == "bad" then error("after the change") end
      return acc
   end, { store = "s" })
   :to_stream():map_values(function(acc) return acc.n .. ":" .. table.concat(acc.items, ",") end):to("out")
return job
]], { { key = "k", value = "a", ts = TS0 + 1 }, { key = "k", value = "bad", ts = TS0 + 2 },
      { key = "k", value = "b", ts = TS0 + 3 } })
        assert.are.equal(0, r.code, r.stderr)
        assert.are.same({ "k=1:a", "k=2:a,b" }, kv(r.out))
    end)

    it("a record failing downstream of the aggregate (map after to_stream) leaves the store as if it never happened", function()
        local input = {}
        for i = 1, 12 do input[i] = { key = (i % 2 == 0) and "boom" or "fine", value = tostring(i), ts = TS0 + i } end
        for _, P in ipairs({ 1, 3 }) do
            local r = run([[
local job = eddy.job { name = "downstream" }
job:source("in"):group_by_key():count { store = "c" }
   :to_stream()
   :map_values(function(v, k) if k == "boom" and v == 3 then error("no threes for boom") end return tostring(v) end)
   :to("out")
return job
]], input, { "--partitions", tostring(P) })
            assert.are.equal(0, r.code, r.stderr)
            -- boom counts 1, 2, then every later record would make it 3 and fail: all dead-lettered
            local boom = {}
            for _, e in ipairs(r.out) do if e.key == "boom" then boom[#boom + 1] = tonumber(e.payload) end end
            assert.are.same({ 1, 2 }, boom)
            assert.are.equal(4, #r.dlq)
            local fine = {}
            for _, e in ipairs(r.out) do if e.key == "fine" then fine[#fine + 1] = tonumber(e.payload) end end
            assert.are.same({ 1, 2, 3, 4, 5, 6 }, fine)
        end
    end)

    it("a downstream failure after a repartition undoes the write in the repartitioned task and drops the record's outputs", function()
        -- lines of words; a line with "boom" fails after its words were counted: none of
        -- that line's words count, none of its updates are written
        local lines = { "a b", "a boom c", "b c", "a", "boom", "c a" }
        local input = {}
        for i, l in ipairs(lines) do input[i] = { key = nil, value = l, ts = TS0 + i } end
        for _, P in ipairs({ 1, 3 }) do
            local r = run([[
local job = eddy.job { name = "undo-rp" }
local counted = job:source("in")
   :flat_map(function(k, v, emit) for w in v:gmatch("%a+") do emit(w, 1) end end)
   :group_by_key():count { store = "counts" }:to_stream()
counted:map_values(tostring):to("out")
counted:filter(function(k) return k == "boom" end):map_values(function() error("boom") end):to("never")
return job
]], input, { "--partitions", tostring(P) })
            assert.are.equal(0, r.code, r.stderr)
            assert.are.same({ "a=1", "b=1", "b=2", "c=1", "a=2", "c=2", "a=3" }, kv(r.out))
            assert.are.equal(2, #r.dlq)
            assert.are.equal("a boom c", r.dlq[1].payload)
            assert.are.equal("boom", r.dlq[2].payload)
        end
    end)

    it("a failure after two chained aggregations (two stores, two repartitions) undoes both", function()
        -- count words, then count how many words reached each count; a failure at the end
        -- for one record must undo both stores' writes of that record
        local words = { "a", "b", "a", "c", "a", "b", "x", "c", "c" }
        local input = {}
        for i, w in ipairs(words) do input[i] = { key = "s" .. i, value = w, ts = TS0 + i } end
        for _, P in ipairs({ 1, 3 }) do
            local r = run([[
local job = eddy.job { name = "chain" }
job:source("in"):group_by(function(k, v) return v end):count { store = "words" }
   :to_stream()
   :group_by(function(k, v) return "n" .. v end):count { store = "levels" }
   :to_stream()
   :map_values(function(v, k, rec) if rec.ts == ]] .. (TS0 + 7) .. [[ then error("x fails") end return tostring(v) end)
   :to("out")
return job
]], input, { "--partitions", tostring(P) })
            assert.are.equal(0, r.code, r.stderr)
            assert.are.equal(1, #r.dlq)
            -- without "x": words a b a c a b c c
            -- word counts a1 b1 a2 c1 a3 b2 c2 c3 -> levels n1 n1 n2 n1 n3 n2 n2 n3
            assert.are.same({ "n1=1", "n1=2", "n2=1", "n1=3", "n3=1", "n2=2", "n2=3", "n3=2" }, kv(r.out))
        end
    end)

    it("an aggregator result the store cannot keep (a function) dead-letters the record; the aggregate is unchanged", function()
        local r = run([[
local job = eddy.job { name = "badval" }
job:source("in"):group_by_key()
   :aggregate(function() return 0 end, function(acc, v) if v == "f" then return print end return acc + 1 end, { store = "s" })
   :to_stream():map_values(tostring):to("out")
return job
]], { { key = "k", value = "a", ts = TS0 + 1 }, { key = "k", value = "f", ts = TS0 + 2 },
      { key = "k", value = "b", ts = TS0 + 3 } })
        assert.are.equal(0, r.code, r.stderr)
        assert.are.equal(1, #r.dlq)
        assert.are.same({ "k=1", "k=2" }, kv(r.out))
    end)

    it("on_error = \"skip\" undoes the failed record's writes as well", function()
        local r = run([[
local job = eddy.job { name = "skipper", on_error = "skip" }
job:source("in"):group_by_key():count { store = "c" }:to_stream()
   :map_values(function(v, k, rec) if rec.ts == ]] .. (TS0 + 2) .. [[ then error("skip me") end return tostring(v) end)
   :to("out")
return job
]], { { key = "k", value = "a", ts = TS0 + 1 }, { key = "k", value = "b", ts = TS0 + 2 },
      { key = "k", value = "c", ts = TS0 + 3 } })
        assert.are.equal(0, r.code, r.stderr)
        assert.are.equal(0, #r.dlq)
        assert.are.same({ "k=1", "k=2" }, kv(r.out))
        assert.are.equal(1, r.summary.errors)
    end)

    it("an aggregator returning nil deletes the key and forwards nil; the next record starts from the initializer", function()
        local r = run([[
local job = eddy.job { name = "tomb" }
local s = job:source("in")
s:group_by_key()
   :aggregate(function() return 100 end, function(acc, v) if v == "reset" then return nil end return acc + 1 end, { store = "a" })
   :to_stream():map_values(function(v) return v and tostring(v) end):to("agg-out")
s:group_by_key()
   :reduce(function(acc, v) if v == "reset" then return nil end return acc .. v end, { store = "r" })
   :to_stream():to("red-out")
return job
]], { { key = "k", value = "a", ts = TS0 + 1 }, { key = "k", value = "b", ts = TS0 + 2 },
      { key = "k", value = "reset", ts = TS0 + 3 }, { key = "k", value = "c", ts = TS0 + 4 },
      { key = "k", value = "d", ts = TS0 + 5 } })
        assert_clean(r)
        assert.are.same({ "k=101", "k=102", "k=nil", "k=101", "k=102" }, kv(r.out, "agg-out"))
        assert.are.same({ "k=a", "k=ab", "k=nil", "k=c", "k=cd" }, kv(r.out, "red-out"))
    end)
end)

-- ---------------------------------------------------------------------------

describe("state across runs (--state-dir, --app-id)", function()
    local REKEY = [[
local job = eddy.job { name = "resume" }
job:source("in"):map(function(k, v) return v:match("^(.*):"), v end)
   :group_by_key()
   :aggregate(function() return { n = 0, h = 1 } end, function(acc, v)
      acc.n = acc.n + 1
      acc.h = (acc.h * 31 + tonumber(v:match(":(%-?%d+)$")) + 50) % 1000003
      return acc
   end, { store = "stats" })
   :to_stream():to("out", { value = "json" })
return job
]]
    local function step(acc, v)
        acc = acc and { n = acc.n, h = acc.h } or { n = 0, h = 1 }
        acc.n = acc.n + 1
        acc.h = (acc.h * 31 + num_of(v) + 50) % 1000003
        return acc
    end

    for _, P in ipairs({ 1, 3 }) do
        it(("three runs with the same --state-dir equal one run over all the input (%d partition(s))"):format(P), function()
            local input = random_input(70 + P, 2400, 80)
            local parts = { {}, {}, {} }
            for i, rec in ipairs(input) do table.insert(parts[math.floor((i - 1) / 800) + 1], rec) end
            local state = h.tmpdir()
            finally(function() os.execute("rm -rf " .. h.q(state)) end)
            local all = {}
            for i = 1, 3 do
                local r = run(REKEY, parts[i], { "--partitions", tostring(P) }, { state = state })
                assert_clean(r)
                for _, e in ipairs(r.out) do all[#all + 1] = e end
            end
            local want = R.aggregate(input, { regroup = function(rec) return word_of(rec.value) end, step = step })
            assert_same_updates(all, want, cjson.decode)
            -- the state sits under DIR/<app-id>/
            assert.is_truthy(h.read(state .. "/resume/0_0/data.mdb"), "DIR/<app-id>/<task>/data.mdb")
        end)
    end

    it("a different --app-id starts fresh, in its own directory; the first app's state is kept", function()
        local input = random_input(80, 600, 30)
        local state = h.tmpdir()
        finally(function() os.execute("rm -rf " .. h.q(state)) end)
        local r1 = run(REKEY, input, { "--partitions", "3" }, { state = state })
        assert_clean(r1)
        local r2 = run(REKEY, input, { "--partitions", "3", "--app-id", "other-app" }, { state = state })
        assert_clean(r2)
        local want = R.aggregate(input, { regroup = function(rec) return word_of(rec.value) end, step = step })
        assert_same_updates(r2.out, want, cjson.decode)         -- as if it were the first run
        assert.is_truthy(h.read(state .. "/other-app/0_0/data.mdb"))
        assert.is_truthy(h.read(state .. "/resume/0_0/data.mdb"))
        -- and the first app continues where it was
        local r3 = run(REKEY, input, { "--partitions", "3" }, { state = state })
        assert_clean(r3)
        local twice = {}
        for i, rec in ipairs(input) do twice[i] = rec; twice[#input + i] = rec end
        local want2 = R.aggregate(twice, { regroup = function(rec) return word_of(rec.value) end, step = step })
        local second_half = {}
        for i = #input + 1, #want2 do second_half[#second_half + 1] = want2[i] end
        assert_same_updates(r3.out, second_half, cjson.decode)
    end)

    it("the state_dir and app_id options of eddy.job{} are used; the command line wins", function()
        local base = h.tmpdir()
        finally(function() os.execute("rm -rf " .. h.q(base)) end)
        local script = [[
local job = eddy.job { name = "opts", state_dir = "]] .. base .. [[/from-script" }
job:source("in"):group_by_key():count { store = "c" }:to_stream():map_values(tostring):to("out")
return job
]]
        local dir = h.tmpdir()
        finally(function() os.execute("rm -rf " .. h.q(dir)) end)
        local sp = h.script(dir, "job.lua", PRE .. script)
        local input = h.write(dir .. "/in.jsonl", h.envelope({ key = "k", payload = "v", ts = TS0 }) .. "\n")
        local code, out, err = h.eddy({ "run", sp, "--input", input, "--no-watch" })
        assert.are.equal(0, code, err)
        code, out, err = h.eddy({ "run", sp, "--input", input, "--no-watch" })
        assert.are.equal(0, code, err)
        assert.are.equal("2", h.envelopes(out)[1].payload)
        assert.is_truthy(h.read(base .. "/from-script/opts/0_0/data.mdb"))
        code, out, err = h.eddy({ "run", sp, "--input", input, "--no-watch", "--state-dir", base .. "/from-cli" })
        assert.are.equal(0, code, err)
        assert.are.equal("1", h.envelopes(out)[1].payload)
    end)
end)

-- ---------------------------------------------------------------------------

describe("eddy check shows the repartition and the store", function()
    it("group_by_key after a map: a repartition named after the store, then the store", function()
        local code, out, err = check([[
local job = eddy.job { name = "wordcount" }
job:source("text-lines")
   :flat_map(function(k, v, emit) for w in v:gmatch("%a+") do emit(w, 1) end end)
   :group_by_key()
   :count { store = "counts" }
   :to_stream()
   :map_values(tostring)
   :to("word-counts")
return job
]])
        assert.are.equal(0, code, err)
        local rp = out:match("\n%s*%d+%s+(repartition counts)%s+%S*job%.lua:5")
        assert.is_truthy(rp, "a repartition step at job.lua:5 (group_by_key):\n" .. out)
        assert.matches("count %[counts%]%s+%S*job%.lua:6", out)
        assert.matches("to_stream%s+%S*job%.lua:7", out)
        -- the repartition comes before the count
        assert.is_true(out:find("repartition counts", 1, true) < out:find("count [counts]", 1, true))
    end)

    it("no repartition after the source or key-preserving steps (map_values, filter, peek, flat_map_values)", function()
        local code, out, err = check([[
local job = eddy.job { name = "noshuffle" }
job:source("in"):map_values(function(v) return v end):filter(function() return true end)
   :peek(function() end):flat_map_values(function(v, emit) emit(v) end)
   :group_by_key():reduce(function(a, v) return v end, { store = "latest" })
   :to_stream():to("out")
return job
]])
        assert.are.equal(0, code, err)
        assert.not_matches("repartition", out)
        assert.matches("reduce %[latest%]", out)
    end)

    it("group_by always repartitions; aggregate and reduce show their stores; a name option names the repartition", function()
        local code, out, err = check([[
local job = eddy.job { name = "gb" }
local s = job:source("in")
s:group_by(function(k, v) return v end):aggregate(function() return 0 end, function(a) return a + 1 end, { store = "agg-store" })
   :to_stream():map_values(tostring):to("o1")
s:select_key(function(k, v) return v end):group_by_key { name = "by-value" }:count { store = "c2" }
   :to_stream():map_values(tostring):to("o2")
return job
]])
        assert.are.equal(0, code, err)
        assert.matches("repartition agg%-store", out)
        assert.matches("aggregate %[agg%-store%]", out)
        assert.matches("repartition by%-value", out)
        assert.matches("count %[c2%]", out)
    end)

    it("a grouping after a merge or a branch of a re-keyed stream repartitions", function()
        local code, out, err = check([[
local job = eddy.job { name = "mb" }
local a = job:source("a"):select_key(function(k, v) return v end)
local b = job:source("b")
a:merge(b):group_by_key():count { store = "merged" }:to_stream():map_values(tostring):to("o1")
local x, y = a:branch(function(k) return k == "x" end, function() return true end)
y:group_by_key():count { store = "branched" }:to_stream():map_values(tostring):to("o2")
b:group_by_key():count { store = "plain" }:to_stream():map_values(tostring):to("o3")
return job
]])
        assert.are.equal(0, code, err)
        assert.matches("repartition merged", out)
        assert.matches("repartition branched", out)
        assert.not_matches("repartition plain", out)
    end)

    it("a store cannot share eddy's internal \"__meta\" store: refused, or kept apart from the stream time", function()
        local script = [[
local job = eddy.job { name = "meta" }
job:source("in"):group_by_key():count { store = "__meta" }:to_stream():map_values(tostring):to("out")
return job
]]
        local code = check(script)
        if code ~= 0 then return end                      -- refused: fine
        local state = h.tmpdir()
        finally(function() os.execute("rm -rf " .. h.q(state)) end)
        local input = { { key = "stream_time", value = "a", ts = TS0 + 1 }, { key = "stream_time", value = "b", ts = TS0 + 2 } }
        local r1 = run(script, input, {}, { state = state })
        local r2 = run(script, input, {}, { state = state })
        assert_clean(r1)
        assert_clean(r2)
        local got = {}
        for _, e in ipairs(r1.out) do got[#got + 1] = e.payload end
        for _, e in ipairs(r2.out) do got[#got + 1] = e.payload end
        assert.are.same({ "1", "2", "3", "4" }, got)
    end)

    it("the same store name twice is refused with the line of the second", function()
        local code, out, err = check([[
local job = eddy.job { name = "dup" }
local s = job:source("in")
s:group_by_key():count { store = "c" }:to_stream():map_values(tostring):to("o1")
s:group_by_key():count { store = "c" }:to_stream():map_values(tostring):to("o2")
return job
]])
        assert.are.equal(1, code)
        assert.matches("job.lua:4", err, 1, true)
        assert.matches('"c"', err, 1, true)
    end)
end)

-- ---------------------------------------------------------------------------

describe("Kafka Streams fidelity of the update stream", function()
    it("each update carries its input record's timestamp when the input is in time order", function()
        local input = random_input(90, 500, 20)
        local r = run([[
local job = eddy.job { name = "ts" }
job:source("in"):group_by(function(k, v) return v:match("^(.*):") end):count { store = "c" }
   :to_stream():map_values(tostring):to("out")
return job
]], input, { "--partitions", "3" })
        assert_clean(r)
        assert_same_updates(r.out, R.aggregate(input, { regroup = function(rec) return word_of(rec.value) end,
            step = R.count_step }), tonumber)
    end)

    it("after a repartition the key is what the grouping's key serde reads back, as through the Kafka topic", function()
        -- Kafka mode writes the new key with the key serde and reads it back; file mode
        -- must give the same key (spec/aggregate_kafka_spec.lua checks the Kafka side)
        local r = run([[
local job = eddy.job { name = "keytype" }
local s = job:source("in")
s:group_by(function(k, v) return tonumber(v) % 3 end):count { store = "c" }
   :to_stream():map_values(function(v, k) return type(k) .. ":" .. v end):to("default-serde")
s:group_by(function(k, v) return tonumber(v) % 3 end, { key = "number" }):count { store = "c2" }
   :to_stream():map_values(function(v, k) return type(k) .. ":" .. v end):to("number-serde")
return job
]], { { key = "a", value = "4", ts = TS0 + 1 }, { key = "b", value = "7", ts = TS0 + 2 } }, { "--partitions", "3" })
        assert_clean(r)
        local got = {}
        for _, e in ipairs(r.out) do got[#got + 1] = e.topic .. " " .. e.key .. "=" .. e.payload end
        assert.are.same({ "default-serde 1=string:1", "number-serde 1=number:1",
            "default-serde 1=string:2", "number-serde 1=number:2" }, got)
    end)

    it("out-of-order input: an update's timestamp is max(record ts, the aggregate's previous ts), as KStreamAggregate/KStreamReduce do", function()
        local input = {
            { key = "k", value = "a", ts = TS0 + 100 },
            { key = "k", value = "b", ts = TS0 + 50 },     -- older than the aggregate
            { key = "k", value = "c", ts = TS0 + 120 },
        }
        local r = run([[
local job = eddy.job { name = "tsmax" }
local s = job:source("in")
s:group_by_key():count { store = "c" }:to_stream():map_values(tostring):to("count-out")
s:group_by_key():reduce(function(a, v) return a .. v end, { store = "r" }):to_stream():to("reduce-out")
return job
]], input)
        assert_clean(r)
        local got = {}
        for _, e in ipairs(r.out) do got[#got + 1] = e.topic .. ":" .. e.payload .. "@" .. (e.ts - TS0) end
        assert.are.same({ "count-out:1@100", "reduce-out:a@100", "count-out:2@100", "reduce-out:ab@100",
            "count-out:3@120", "reduce-out:abc@120" }, got)
    end)
end)
