-- spec/windows_spec.lua: windowed aggregations (tumbling, hopping, sliding, session;
-- emit update and final; grace and lateness; restart), through the real binary in
-- file mode.
--
-- (a) Scenarios transcribed from Kafka Streams' own tests (KStreamWindowAggregateTest,
--     KStreamSlidingWindowAggregateTest, KStreamSessionWindowAggregateProcessorTest,
--     SuppressScenarioTest): the inputs and the expected outputs as those tests state
--     them. MockInitializer.STRING_INIT is "0", MockAggregator.TOSTRING_ADDER is
--     agg .. "+" .. v, MockReducer.STRING_ADDER is a .. "+" .. b.
-- (b) A randomized comparison with a small reference model written here (brute force
--     over the records of each window, nothing shared with lua/eddy/window.lua).
-- (c) Restart: half the input, stop, the rest with the same --state-dir.
local h = require "helper"
local cjson = require "cjson"

-- A job: source "in" -> group_by_key -> window(W) -> AGG -> to_stream -> "out", the
-- value written as "value|start|stop" ("nil" for a tombstone).
local function job_script(window_expr, agg, emit, extra)
    local aggs = {
        count = 'count{ store = "w", emit = %q }',
        aggregate = 'aggregate(function() return "0" end, function(acc, v) return acc .. "+" .. v end, '
            .. '{ store = "w", emit = %q })',
        aggregate_empty = 'aggregate(function() return "" end, function(acc, v) return acc .. "+" .. v end, '
            .. '{ store = "w", emit = %q })',
        reduce = 'reduce(function(a, b) return a .. "+" .. b end, { store = "w", emit = %q })',
    }
    return ([[
local eddy = require "eddy"
local job = eddy.job { name = "win"%s }
job:source("in")
   :group_by_key()
   :window(%s)
   :%s
   :to_stream()
   :map_values(function(v, k, rec)
       return tostring(v) .. "|" .. rec.window.start .. "|" .. rec.window.stop
   end)
   :to("out")
return job
]]):format(extra or "", window_expr, aggs[agg]:format(emit or "update"))
end

local function input_text(records)
    local lines = {}
    for i, r in ipairs(records) do
        local e = { key = r[1] == nil and cjson.null or r[1], payload = r[2] == nil and cjson.null or r[2],
            ts = r[3] }
        if r[4] then e.partition = r[4] end
        lines[i] = cjson.encode(e)
    end
    return table.concat(lines, "\n") .. "\n"
end

--- Run SCRIPT over RECORDS ({key, value, ts[, partition]}); returns the outputs as
--- strings "key [start,stop] value @ts" and the raw result.
local function run(script, records, args, state_dir)
    local dir = h.tmpdir()
    local sp = h.script(dir, "job.lua", script)
    local argv = { "run", sp, "--input", h.write(dir .. "/in.jsonl", input_text(records)),
        "--output", dir .. "/out.jsonl", "--dlq", dir .. "/dlq.jsonl", "--quiet",
        "--state-dir", state_dir or (dir .. "/state") }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    local code, _, stderr = h.eddy(argv)
    local out = h.envelopes(h.read(dir .. "/out.jsonl") or "")
    local dlq = h.read(dir .. "/dlq.jsonl") or ""
    os.execute("rm -rf " .. h.q(dir))
    assert(code == 0, "eddy exited " .. tostring(code) .. ": " .. tostring(stderr))
    assert(dlq == "", "dead letters: " .. dlq)
    local list = {}
    for i, e in ipairs(out) do
        local v, s, st = e.payload:match("^(.*)|(%-?%d+)|(%-?%d+)$")
        list[i] = ("%s [%s,%s] %s @%d"):format(e.key, s, st, v, e.ts)
    end
    return list, out
end

local function kvt(k, s, e, v, ts) return ("%s [%d,%d] %s @%d"):format(k, s, e, tostring(v), ts) end

---------------------------------------------------------------------------------------------
describe("tumbling and hopping windows (KStreamWindowAggregateTest)", function()
    it("testAggBasic: hopping size 10, advance 5, grace 100, every update in order", function()
        local W = 'eddy.hopping{ size = 10, advance = 5, grace = 100 }'
        local recs = {
            { "A", "1", 0 }, { "B", "2", 1 }, { "C", "3", 2 }, { "D", "4", 3 }, { "A", "1", 4 },
            { "A", "1", 5 }, { "B", "2", 6 }, { "D", "4", 7 }, { "B", "2", 8 }, { "C", "3", 9 },
            { "A", "1", 10 }, { "B", "2", 11 }, { "D", "4", 12 }, { "B", "2", 13 }, { "C", "3", 14 },
            { "B", "1", 3 }, { "B", "2", 2 }, { "B", "3", 9 },
        }
        local got = run(job_script(W, "aggregate"), recs)
        assert.same({
            kvt("A", 0, 10, "0+1", 0),
            kvt("B", 0, 10, "0+2", 1),
            kvt("C", 0, 10, "0+3", 2),
            kvt("D", 0, 10, "0+4", 3),
            kvt("A", 0, 10, "0+1+1", 4),
            kvt("A", 0, 10, "0+1+1+1", 5),
            kvt("A", 5, 15, "0+1", 5),
            kvt("B", 0, 10, "0+2+2", 6),
            kvt("B", 5, 15, "0+2", 6),
            kvt("D", 0, 10, "0+4+4", 7),
            kvt("D", 5, 15, "0+4", 7),
            kvt("B", 0, 10, "0+2+2+2", 8),
            kvt("B", 5, 15, "0+2+2", 8),
            kvt("C", 0, 10, "0+3+3", 9),
            kvt("C", 5, 15, "0+3", 9),
            kvt("A", 5, 15, "0+1+1", 10),
            kvt("A", 10, 20, "0+1", 10),
            kvt("B", 5, 15, "0+2+2+2", 11),
            kvt("B", 10, 20, "0+2", 11),
            kvt("D", 5, 15, "0+4+4", 12),
            kvt("D", 10, 20, "0+4", 12),
            kvt("B", 5, 15, "0+2+2+2+2", 13),
            kvt("B", 10, 20, "0+2+2", 13),
            kvt("C", 5, 15, "0+3+3", 14),
            kvt("C", 10, 20, "0+3", 14),
            kvt("B", 0, 10, "0+2+2+2+1", 8),
            kvt("B", 0, 10, "0+2+2+2+1+2", 8),
            kvt("B", 0, 10, "0+2+2+2+1+2+3", 9),
            kvt("B", 5, 15, "0+2+2+2+2+3", 13),
        }, got)
    end)

    it("shouldLogAndMeterWhenSkippingExpiredWindow: hopping 10/5, grace 90", function()
        local W = 'eddy.hopping{ size = 10, advance = 5, grace = 90 }'
        local recs = { { "k", "100", 100 } }
        for i = 0, 6 do recs[#recs + 1] = { "k", tostring(i), i } end
        local got = run(job_script(W, "aggregate_empty"), recs)
        assert.same({
            kvt("k", 95, 105, "+100", 100),
            kvt("k", 100, 110, "+100", 100),
            kvt("k", 5, 15, "+5", 5),
            kvt("k", 5, 15, "+5+6", 6),
        }, got)
    end)

    it("shouldLogAndMeterWhenSkippingExpiredWindowByGrace: tumbling 10, grace 90", function()
        local W = 'eddy.tumbling{ size = 10, grace = 90 }'
        local recs = { { "k", "100", 200 } }
        for i = 0, 5 do recs[#recs + 1] = { "k", tostring(i), 100 + i } end
        recs[#recs + 1] = { "k", "6", 6 }
        local got = run(job_script(W, "aggregate_empty"), recs)
        assert.same({ kvt("k", 200, 210, "+100", 200) }, got)
    end)

    it("a record with a nil key is skipped; nil values are counted by count", function()
        local W = 'eddy.tumbling{ size = 10 }'
        local got = run(job_script(W, "count"), { { nil, "x", 1 }, { "a", nil, 2 }, { "a", "y", 3 } })
        assert.same({ kvt("a", 0, 10, 1, 2), kvt("a", 0, 10, 2, 3) }, got)
        local got2 = run(job_script(W, "reduce"), { { nil, "x", 1 }, { "a", nil, 2 }, { "a", "y", 3 } })
        assert.same({ kvt("a", 0, 10, "y", 3) }, got2)
    end)

    it("durations as strings; the result timestamp is the largest record timestamp", function()
        local W = 'eddy.tumbling{ size = "1s", grace = "1s" }'
        local got = run(job_script(W, "count"), { { "a", "x", 1500 }, { "a", "x", 1200 }, { "a", "x", 2100 } })
        assert.same({ kvt("a", 1000, 2000, 1, 1500), kvt("a", 1000, 2000, 2, 1500),
            kvt("a", 2000, 3000, 1, 2100) }, got)
    end)
end)

---------------------------------------------------------------------------------------------
describe("emit = final (SuppressScenarioTest, untilWindowCloses)", function()
    it("shouldSupportFinalResultsForTimeWindows: tumbling 2, grace 1", function()
        local recs = { { "k1", "v1", 0 }, { "k1", "v1", 1 }, { "k1", "v1", 2 }, { "k1", "v1", 1 },
            { "k1", "v1", 0 }, { "k1", "v1", 5 }, { "k1", "v1", 0 } }
        local W = 'eddy.tumbling{ size = 2, grace = 1 }'
        local raw = run(job_script(W, "count", "update"), recs)
        assert.same({ kvt("k1", 0, 2, 1, 0), kvt("k1", 0, 2, 2, 1), kvt("k1", 2, 4, 1, 2),
            kvt("k1", 0, 2, 3, 1), kvt("k1", 0, 2, 4, 1), kvt("k1", 4, 6, 1, 5) }, raw)
        local fin = run(job_script(W, "count", "final"), recs)
        assert.same({ kvt("k1", 0, 2, 4, 1), kvt("k1", 2, 4, 1, 2) }, fin)
    end)

    it("shouldSupportFinalResultsForSessionWindows: gap 5, no grace", function()
        local recs = { { "k1", "v1", 0 }, { "k1", "v1", 5 }, { "k1", "v1", 1 }, { "k2", "v1", 11 },
            { "k1", "v1", 5 }, { "k1", "v1", 30 } }
        local W = 'eddy.session{ gap = 5 }'
        local raw = run(job_script(W, "count", "update"), recs)
        assert.same({
            kvt("k1", 0, 0, 1, 0),
            kvt("k1", 0, 0, nil, 0),
            kvt("k1", 0, 5, 2, 5),
            kvt("k1", 0, 5, nil, 5),
            kvt("k1", 0, 5, 3, 5),
            kvt("k2", 11, 11, 1, 11),
            kvt("k1", 30, 30, 1, 30),
        }, raw)
        local fin = run(job_script(W, "count", "final"), recs)
        assert.same({ kvt("k1", 0, 5, 3, 5), kvt("k2", 11, 11, 1, 11) }, fin)
    end)

    it("hopping windows close one by one, in window-end order, across keys", function()
        local W = 'eddy.hopping{ size = 10, advance = 5 }'
        local recs = { { "a", "x", 1 }, { "b", "x", 7 }, { "a", "x", 9 }, { "b", "x", 12 }, { "c", "x", 21 } }
        local fin = run(job_script(W, "count", "final"), recs)
        -- windows: a [0,10)=2; b [0,10)=1, [5,15)=2, [10,20)=1; a [5,15)=1; c ...
        -- at st 12: [0,10) closes (end 10 <= 12): a=2 @9, b=1 @7 (key order within an end)
        -- at st 21: [5,15) (a=1 @9, b=2 @12) and [10,20) (b=1 @12) close
        assert.same({ kvt("a", 0, 10, 2, 9), kvt("b", 0, 10, 1, 7),
            kvt("a", 5, 15, 1, 9), kvt("b", 5, 15, 2, 12), kvt("b", 10, 20, 1, 12) }, fin)
    end)
end)

---------------------------------------------------------------------------------------------
describe("sliding windows (KStreamSlidingWindowAggregateTest)", function()
    local W = 'eddy.sliding{ diff = 10, grace = 50 }'

    -- The last value per window start, as the KS test collects them.
    local function last_per_start(list)
        local m = {}
        for _, s in ipairs(list) do
            local start, v, ts = s:match("^%S+ %[(%d+),%d+%] (%S+) @(%d+)$")
            m[tonumber(start)] = v .. "@" .. ts
        end
        return m
    end

    it("testAggregateSmallInput", function()
        local got = run(job_script(W, "aggregate"),
            { { "A", "1", 10 }, { "A", "2", 15 }, { "A", "3", 20 }, { "A", "4", 22 }, { "A", "5", 30 } })
        assert.same({ [0] = "0+1@10", [5] = "0+1+2@15", [10] = "0+1+2+3@20", [11] = "0+2+3@20",
            [12] = "0+2+3+4@22", [16] = "0+3+4@22", [20] = "0+3+4+5@30", [21] = "0+4+5@30",
            [23] = "0+5@30" }, last_per_start(got))
    end)

    it("testReduceSmallInput", function()
        local got = run(job_script(W, "reduce"), { { "A", "1", 10 }, { "A", "2", 14 }, { "A", "3", 15 },
            { "A", "4", 22 }, { "A", "5", 26 }, { "A", "6", 30 } })
        assert.same({ [0] = "1@10", [4] = "1+2@14", [5] = "1+2+3@15", [11] = "2+3@15", [12] = "2+3+4@22",
            [15] = "3+4@22", [16] = "4+5@26", [20] = "4+5+6@30", [23] = "5+6@30", [27] = "6@30" },
            last_per_start(got))
    end)

    it("testAggregateLargeInput: every update, sorted by key and window start (stable)", function()
        local recs = {
            { "A", "1", 10 }, { "A", "2", 20 }, { "A", "3", 22 }, { "A", "4", 15 },
            { "B", "1", 12 }, { "B", "2", 13 }, { "B", "3", 18 }, { "B", "4", 19 }, { "B", "5", 25 }, { "B", "6", 14 },
            { "C", "1", 11 }, { "C", "2", 15 }, { "C", "3", 16 }, { "C", "4", 21 }, { "C", "5", 23 },
            { "D", "4", 11 }, { "D", "2", 12 }, { "D", "3", 29 }, { "D", "5", 16 },
        }
        local got = run(job_script(W, "aggregate"), recs)
        -- stable sort by (key, start)
        local keyed = {}
        for i, s in ipairs(got) do
            local k, start = s:match("^(%S+) %[(%d+),")
            keyed[i] = { k, tonumber(start), i, s }
        end
        table.sort(keyed, function(x, y)
            if x[1] ~= y[1] then return x[1] < y[1] end
            if x[2] ~= y[2] then return x[2] < y[2] end
            return x[3] < y[3]
        end)
        local sorted = {}
        for i, x in ipairs(keyed) do sorted[i] = x[4] end
        assert.same({
            kvt("A", 0, 10, "0+1", 10),
            kvt("A", 5, 15, "0+1+4", 15),
            kvt("A", 10, 20, "0+1+2", 20),
            kvt("A", 10, 20, "0+1+2+4", 20),
            kvt("A", 11, 21, "0+2", 20),
            kvt("A", 11, 21, "0+2+4", 20),
            kvt("A", 12, 22, "0+2+3", 22),
            kvt("A", 12, 22, "0+2+3+4", 22),
            kvt("A", 16, 26, "0+2+3", 22),
            kvt("A", 21, 31, "0+3", 22),
            kvt("B", 2, 12, "0+1", 12),
            kvt("B", 3, 13, "0+1+2", 13),
            kvt("B", 4, 14, "0+1+2+6", 14),
            kvt("B", 8, 18, "0+1+2+3", 18),
            kvt("B", 8, 18, "0+1+2+3+6", 18),
            kvt("B", 9, 19, "0+1+2+3+4", 19),
            kvt("B", 9, 19, "0+1+2+3+4+6", 19),
            kvt("B", 13, 23, "0+2", 13),
            kvt("B", 13, 23, "0+2+3", 18),
            kvt("B", 13, 23, "0+2+3+4", 19),
            kvt("B", 13, 23, "0+2+3+4+6", 19),
            kvt("B", 14, 24, "0+3", 18),
            kvt("B", 14, 24, "0+3+4", 19),
            kvt("B", 14, 24, "0+3+4+6", 19),
            kvt("B", 15, 25, "0+3+4+5", 25),
            kvt("B", 19, 29, "0+4", 19),
            kvt("B", 19, 29, "0+4+5", 25),
            kvt("B", 20, 30, "0+5", 25),
            kvt("C", 1, 11, "0+1", 11),
            kvt("C", 5, 15, "0+1+2", 15),
            kvt("C", 6, 16, "0+1+2+3", 16),
            kvt("C", 11, 21, "0+1+2+3+4", 21),
            kvt("C", 12, 22, "0+2", 15),
            kvt("C", 12, 22, "0+2+3", 16),
            kvt("C", 12, 22, "0+2+3+4", 21),
            kvt("C", 13, 23, "0+2+3+4+5", 23),
            kvt("C", 16, 26, "0+3", 16),
            kvt("C", 16, 26, "0+3+4", 21),
            kvt("C", 16, 26, "0+3+4+5", 23),
            kvt("C", 17, 27, "0+4", 21),
            kvt("C", 17, 27, "0+4+5", 23),
            kvt("C", 22, 32, "0+5", 23),
            kvt("D", 1, 11, "0+4", 11),
            kvt("D", 2, 12, "0+4+2", 12),
            kvt("D", 6, 16, "0+4+2+5", 16),
            kvt("D", 12, 22, "0+2", 12),
            kvt("D", 12, 22, "0+2+5", 16),
            kvt("D", 13, 23, "0+5", 16),
            kvt("D", 19, 29, "0+3", 29),
        }, sorted)
    end)

    it("a record older than diff + grace behind stream time is dropped whole", function()
        -- diff 10, grace 0: at stream time 30 a record at 19 (19 + 1 + 10 <= 30) is late;
        -- one at 20 updates [20, 30] and creates its right window [21, 31] (contents: the
        -- record at 30); its own left window [10, 20] is closed (20 < 30 - 0): dropped.
        local got = run(job_script('eddy.sliding{ diff = 10 }', "count"),
            { { "a", "x", 30 }, { "a", "x", 19 }, { "a", "x", 20 } })
        assert.same({ kvt("a", 20, 30, 1, 30), kvt("a", 20, 30, 2, 30), kvt("a", 21, 31, 1, 30) }, got)
    end)
end)

---------------------------------------------------------------------------------------------
describe("session windows (KStreamSessionWindowAggregateProcessorTest)", function()
    it("merges sessions within the gap, with a tombstone for each session merged away", function()
        local got = run(job_script('eddy.session{ gap = 10, grace = 100 }', "count"),
            { { "a", "x", 0 }, { "a", "x", 5 }, { "a", "x", 20 }, { "a", "x", 12 }, { "b", "x", 13 } })
        assert.same({
            kvt("a", 0, 0, 1, 0),
            kvt("a", 0, 0, nil, 0), kvt("a", 0, 5, 2, 5),
            kvt("a", 20, 20, 1, 20),
            kvt("a", 0, 5, nil, 5), kvt("a", 20, 20, nil, 20), kvt("a", 0, 20, 4, 20),
            kvt("b", 13, 13, 1, 13),
        }, got)
    end)

    it("shouldLogAndMeterWhenSkippingLateRecordWithZeroGrace", function()
        local got = run(job_script('eddy.session{ gap = 10 }', "count"),
            { { "dummy", "dummy", 0 }, { "OnTime1", "1", 0 }, { "dummy", "dummy", 11 }, { "Late1", "1", 0 } })
        assert.same({ kvt("dummy", 0, 0, 1, 0), kvt("OnTime1", 0, 0, 1, 0), kvt("dummy", 11, 11, 1, 11) }, got)
    end)

    it("shouldLogAndMeterWhenSkippingLateRecordWithNonzeroGrace", function()
        local got = run(job_script('eddy.session{ gap = 10, grace = 1 }', "count"),
            { { "dummy", "dummy", 0 }, { "OnTime1", "1", 0 }, { "dummy", "dummy", 11 }, { "OnTime2", "1", 0 },
              { "dummy", "dummy", 12 }, { "Late1", "1", 0 } })
        assert.same({ kvt("dummy", 0, 0, 1, 0), kvt("OnTime1", 0, 0, 1, 0), kvt("dummy", 11, 11, 1, 11),
            kvt("OnTime2", 0, 0, 1, 0), kvt("dummy", 11, 11, nil, 11), kvt("dummy", 11, 12, 2, 12) }, got)
    end)

    it("reduce merges with the reducer; aggregate needs merge on the window", function()
        local got = run(job_script('eddy.session{ gap = 10 }', "reduce"),
            { { "a", "1", 0 }, { "a", "2", 30 }, { "a", "3", 15 } })
        assert.same({ kvt("a", 0, 0, "1", 0), kvt("a", 30, 30, "2", 30) }, got)   -- 15: late (30-10-0 > 15)
        local got2 = run(job_script('eddy.session{ gap = 10, grace = 20 }', "reduce"),
            { { "a", "1", 0 }, { "a", "2", 20 }, { "a", "3", 10 } })
        assert.same({ kvt("a", 0, 0, "1", 0), kvt("a", 20, 20, "2", 20),
            kvt("a", 0, 0, nil, 0), kvt("a", 20, 20, nil, 20), kvt("a", 0, 20, "1+2+3", 20) }, got2)
        local got3 = run(job_script('eddy.session{ gap = 10, grace = 20, merge = function(a, b) '
            .. 'return a .. "&" .. b end }', "aggregate"),
            { { "a", "1", 0 }, { "a", "2", 20 }, { "a", "3", 10 } })
        assert.same({ kvt("a", 0, 0, "0+1", 0), kvt("a", 20, 20, "0+2", 20),
            kvt("a", 0, 0, nil, 0), kvt("a", 20, 20, nil, 20), kvt("a", 0, 20, "0&0+1&0+2+3", 20) }, got3)
    end)
end)

---------------------------------------------------------------------------------------------
-- (b) A reference model, brute force, per task (partition): stream time = the largest
-- timestamp seen by the task so far. The model processes a record, then closes windows.
local model = {}

local function key_of(k, s, e) return k .. "|" .. s .. "|" .. e end

local function task_of(k, P) return P == 1 and 0 or h.partition_for(k, P) end

-- Time windows: a record joins every window [s, s+size) containing it (s a multiple of
-- advance, s >= 0) that is still open (s + size > st - grace); value = the records it
-- joined, in arrival order.
function model.time(recs, P, size, advance, grace, agg)
    local st, wins = {}, {}
    for _, r in ipairs(recs) do
        local k, v, ts = r[1], r[2], r[3]
        local t = task_of(k, P)
        st[t] = math.max(st[t] or -math.huge, ts)
        for s = math.max(0, ts - ts % advance - math.ceil(size / advance) * advance), ts, advance do
            if s <= ts and ts < s + size and s + size > st[t] - grace then
                local id = key_of(k, s, s + size)
                local w = wins[id]
                if not w then w = { k = k, s = s, e = s + size, task = t, vals = {}, ts = ts }; wins[id] = w end
                w.vals[#w.vals + 1] = v
                w.ts = math.max(w.ts, ts)
            end
        end
    end
    return wins, st, function(w, stt) return w.e <= stt - grace end
end

-- Sliding windows, no record late (grace covers the disorder): the windows are each
-- record's [t - diff, t] (or [0, diff] for t < diff) and, when it holds a record,
-- [t + 1, t + 1 + diff]; a window's value is every record in [start, end].
function model.sliding(recs, P, diff, grace)
    local st, bykey = {}, {}
    for _, r in ipairs(recs) do
        local t = task_of(r[1], P)
        st[t] = math.max(st[t] or -math.huge, r[3])
        bykey[r[1]] = bykey[r[1]] or {}
        table.insert(bykey[r[1]], r)
    end
    local wins = {}
    for k, list in pairs(bykey) do
        local function add(s)
            local e = s + diff
            local w = { k = k, s = s, e = e, task = task_of(k, P), vals = {}, ts = -1 }
            for _, r in ipairs(list) do
                if r[3] >= s and r[3] <= e then w.vals[#w.vals + 1] = r[2]; w.ts = math.max(w.ts, r[3]) end
            end
            if #w.vals > 0 then wins[key_of(k, s, e)] = w end
        end
        for _, r in ipairs(list) do
            add(math.max(0, r[3] - diff))
            add(r[3] + 1)
        end
    end
    return wins, st, function(w, stt) return w.e < stt - grace end
end

-- Sessions: a record merges every live session of its key within gap of it; the merged
-- session is late when it ends before st - gap - grace. After each record, sessions
-- that ended before st - gap - grace are closed (and no longer merge).
function model.session(recs, P, gap, grace)
    local st, live, closed, all = {}, {}, {}, {}
    for _, r in ipairs(recs) do
        local k, v, ts = r[1], r[2], r[3]
        local t = task_of(k, P)
        st[t] = math.max(st[t] or -math.huge, ts)
        live[k] = live[k] or {}
        local s, e, vals, keep = ts, ts, {}, {}
        local found = {}
        for _, x in ipairs(live[k]) do
            if x.e >= ts - gap and x.s <= ts + gap then found[#found + 1] = x else keep[#keep + 1] = x end
        end
        for _, x in ipairs(found) do s = math.min(s, x.s); e = math.max(e, x.e) end
        if e >= st[t] - gap - grace then
            table.sort(found, function(a, b) return a.e < b.e end)
            for _, x in ipairs(found) do
                for _, xv in ipairs(x.vals) do vals[#vals + 1] = xv end
                all[key_of(k, x.s, x.e)] = nil
            end
            vals[#vals + 1] = v
            local w = { k = k, s = s, e = e, task = t, vals = vals, ts = e }
            keep[#keep + 1] = w
            live[k] = keep
            all[key_of(k, s, e)] = w
        end
        -- close
        for kk, list in pairs(live) do
            local still = {}
            for _, x in ipairs(list) do
                if x.task == t and x.e < st[t] - gap - grace then closed[#closed + 1] = x
                else still[#still + 1] = x end
            end
            live[kk] = still
        end
    end
    return all, st, function(w, stt) return w.e < stt - gap - grace end
end

local function fmt_value(agg, vals)
    if agg == "count" then return tostring(#vals) end
    return table.concat(vals, "+")
end

describe("randomized, against a reference model", function()
    local seed = tonumber(os.getenv("WINDOWS_SEED") or "") or os.time()
    math.randomseed(seed)
    local cases = {
        { kind = "tumbling", expr = "eddy.tumbling{ size = 10, grace = %d }", size = 10, advance = 10 },
        { kind = "hopping", expr = "eddy.hopping{ size = 10, advance = 4, grace = %d }", size = 10, advance = 4 },
        { kind = "sliding", expr = "eddy.sliding{ diff = 7, grace = %d }", diff = 7 },
        { kind = "session", expr = "eddy.session{ gap = 6, grace = %d }", gap = 6 },
    }
    for _, c in ipairs(cases) do
        for _, P in ipairs({ 1, 3 }) do
            for _, emit in ipairs({ "update", "final" }) do
                local agg = (P == 1) and "reduce" or "count"
                it(("%s, %d partition(s), emit %s, %s (seed %d)"):format(c.kind, P, emit, agg, seed), function()
                    local grace = ({ 0, 3, 12 })[math.random(3)]
                    if c.kind == "sliding" then grace = 1000 end      -- the model knows no lateness there
                    -- 1 partition: from 0 (sliding's records before diff); 3: real epoch ms
                    local base = P == 1 and 0 or 1710230400000
                    local recs, t = {}, base
                    local keys = { "a", "b", "c", "d", "e", "f" }
                    for i = 1, 150 do
                        t = t + math.random(0, 3)
                        local ts = math.max(0, t - (math.random() < 0.3 and math.random(0, 25) or 0))
                        recs[i] = { keys[math.random(#keys)], "v" .. i, ts }
                    end
                    -- a last record per partition far ahead, so that final results come out
                    local flush_ts = t + 2000
                    local seen = {}
                    for i = 1, 200 do
                        local k = "z" .. i
                        local p = task_of(k, P)
                        if not seen[p] then seen[p] = true; recs[#recs + 1] = { k, "end", flush_ts } end
                    end
                    local wins, st, closed
                    if c.kind == "sliding" then
                        wins, st, closed = model.sliding(recs, P, c.diff, grace)
                    elseif c.kind == "session" then
                        wins, st, closed = model.session(recs, P, c.gap, grace)
                    else
                        wins, st, closed = model.time(recs, P, c.size, c.advance, grace)
                    end
                    local got, env = run(job_script(c.expr:format(grace), agg, emit), recs,
                        { "--partitions", tostring(P) })
                    if emit == "update" then
                        local last = {}
                        for i, e in ipairs(env) do
                            local v, s, stop = e.payload:match("^(.*)|(%-?%d+)|(%-?%d+)$")
                            last[key_of(e.key, s, stop)] = (v == "nil") and nil or (v .. " @" .. e.ts)
                            if v == "nil" then last[key_of(e.key, s, stop)] = nil end
                            assert.is_not_nil(v, got[i])
                        end
                        local want = {}
                        for id, w in pairs(wins) do want[id] = fmt_value(agg, w.vals) .. " @" .. w.ts end
                        assert.same(want, last)
                    else
                        local want = {}
                        for _, w in pairs(wins) do
                            if closed(w, st[w.task]) then
                                want[#want + 1] = kvt(w.k, w.s, w.e, fmt_value(agg, w.vals), w.ts)
                            end
                        end
                        table.sort(want)
                        local sorted = {}
                        for i, s in ipairs(got) do sorted[i] = s end
                        table.sort(sorted)
                        assert.same(want, sorted)
                        assert.is_true(#want > 0)
                    end
                end)
            end
        end
    end
end)

---------------------------------------------------------------------------------------------
describe("restart", function()
    local exprs = {
        tumbling = "eddy.tumbling{ size = 10, grace = 3 }",
        hopping = "eddy.hopping{ size = 10, advance = 4, grace = 3 }",
        sliding = "eddy.sliding{ diff = 7, grace = 3 }",
        session = "eddy.session{ gap = 6, grace = 3 }",
    }
    for _, kind in ipairs({ "tumbling", "hopping", "sliding", "session" }) do
        for _, emit in ipairs({ "update", "final" }) do
            it(("%s, emit %s: half the input, stop, the rest with the same --state-dir"):format(kind, emit), function()
                math.randomseed(42)
                local recs, t = {}, 1710230400000
                for i = 1, 120 do
                    t = t + math.random(0, 3)
                    local ts = math.max(0, t - (math.random() < 0.3 and math.random(0, 15) or 0))
                    recs[i] = { ({ "a", "b", "c", "d" })[math.random(4)], "v" .. i, ts }
                end
                recs[#recs + 1] = { "a", "end", t + 100 }
                local script = job_script(exprs[kind], "reduce", emit)
                local whole = run(script, recs, { "--partitions", "3" })
                local dir = h.tmpdir()
                local first, second = {}, {}
                for i, r in ipairs(recs) do
                    if i <= 60 then first[#first + 1] = r else second[#second + 1] = r end
                end
                local out1 = run(script, first, { "--partitions", "3" }, dir)
                local out2 = run(script, second, { "--partitions", "3" }, dir)
                os.execute("rm -rf " .. h.q(dir))
                for _, s in ipairs(out2) do out1[#out1 + 1] = s end
                assert.is_true(#whole > 0)
                assert.same(whole, out1)
            end)
        end
    end
end)

---------------------------------------------------------------------------------------------
describe("idle_advance", function()
    -- stdin stays open 1.2 s after the last record: the tick at its end sees the
    -- partition idle and moves stream time on by the wall clock.
    local function run_slow(script)
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", script)
        h.write(dir .. "/in.jsonl", input_text({ { "a", "x", 100 }, { "a", "y", 400 } }))
        local cmd = ("(cat %s; sleep 1.2) | %s run %s --input - --output %s --state-dir %s --quiet 2>%s"):format(
            h.q(dir .. "/in.jsonl"), h.q(h.EDDY), h.q(sp), h.q(dir .. "/out.jsonl"), h.q(dir .. "/state"),
            h.q(dir .. "/err"))
        os.execute(cmd)
        local out = h.envelopes(h.read(dir .. "/out.jsonl") or "")
        local err = h.read(dir .. "/err")
        os.execute("rm -rf " .. h.q(dir))
        local list = {}
        for i, e in ipairs(out) do list[i] = e.key .. " " .. e.payload .. " @" .. e.ts end
        return list, err
    end

    it("off by default: a quiet partition keeps its windows open", function()
        local got = run_slow(job_script('eddy.tumbling{ size = 1000 }', "count", "final"))
        assert.same({}, got)
    end)

    it("on the window: windows close on a quiet partition", function()
        local got, err = run_slow(job_script('eddy.tumbling{ size = 1000, idle_advance = "500ms" }', "count", "final"))
        assert.same({ "a 2|0|1000 @400" }, got, err)
    end)

    it("in eddy.job{}: the same for every windowed aggregation", function()
        local got, err = run_slow(job_script('eddy.session{ gap = 200 }', "count", "final", ', idle_advance = "500ms"'))
        assert.same({ "a 1|100|100 @100", "a 1|400|400 @400" }, got, err)
    end)
end)

---------------------------------------------------------------------------------------------
-- Late and nil-key counters (eddy_late_records_total counts B.late): window.build driven
-- in-process with an in-memory stand-in for the host's stores.
describe("late-record counting (KS dropped-records)", function()
    package.path = h.ROOT .. "/lua/?.lua;" .. package.path
    require "eddy.runtime"                      -- the FFI types eddy.state refers to
    local window = require "eddy.window"
    local serde = require "eddy.serde"

    local function mem_store()
        local kv = {}
        local s = {}
        function s:raw_get(k) return kv[k] end
        function s:raw_put(k, v) kv[k] = v end
        function s:raw_delete(k) kv[k] = nil end
        local function keys(from, to)
            local list = {}
            for k in pairs(kv) do
                if (from == nil or k >= from) and (to == nil or k < to) then list[#list + 1] = k end
            end
            table.sort(list)
            return list
        end
        function s:raw_iter(from, to)
            local list, i = keys(from, to), 0
            return function()
                i = i + 1
                if list[i] then return list[i], kv[list[i]] end
            end
        end
        function s:delete_range(from, to)
            for _, k in ipairs(keys(from, to)) do kv[k] = nil end
        end
        function s:raw_first(from, to) return keys(from, to)[1] end
        function s:raw_collect(from, to, max)
            local ks, vs, n = {}, {}, 0
            for _, k in ipairs(keys(from, to)) do
                if n == max then break end
                n = n + 1
                ks[n], vs[n] = k, kv[k]
            end
            return ks, vs, n
        end
        return s
    end

    local function drive(w, agg, recs)
        local stores = {}
        local st = -math.huge
        local S = { task = 0, tickers = {}, forgetters = {}, tasks_seen = { [0] = true } }
        function S:store(name) stores[name] = stores[name] or mem_store(); return stores[name] end
        function S.get_stream_time() return st end
        local B = { late = 0, nil_keys = 0, wall_ms = 0 }
        local out = {}
        local node = { agg = agg, store = "w", emit = "update", window = w, key_serde = serde.resolve("string"),
            fn = function(a, b) return a .. "+" .. b end, init = function() return "" end, subtopology = 0 }
        local f = window.build(node, { S = S, B = B, store = S:store("w"), nxt = function(k, v, rec, ts)
            out[#out + 1] = ("%s [%d,%d] %s @%d"):format(k, rec.window.start, rec.window.stop, tostring(v), ts)
        end })
        for _, r in ipairs(recs) do
            st = math.max(st, r[3])
            f(r[1], r[2], { ts = r[3] }, r[3])
        end
        return B, out
    end

    it("hopping 10/5, grace 90 (KStreamWindowAggregateTest): 7 dropped", function()
        local recs = { { "k", "100", 100 } }
        for i = 0, 6 do recs[#recs + 1] = { "k", tostring(i), i } end
        local B, out = drive(window.hopping{ size = 10, advance = 5, grace = 90 }, "aggregate", recs)
        assert.equal(7, B.late)
        assert.same({ "k [95,105] +100 @100", "k [100,110] +100 @100", "k [5,15] +5 @5", "k [5,15] +5+6 @6" }, out)
    end)

    it("tumbling 10, grace 90 (...ByGrace): 7 dropped", function()
        local recs = { { "k", "100", 200 } }
        for i = 0, 5 do recs[#recs + 1] = { "k", tostring(i), 100 + i } end
        recs[#recs + 1] = { "k", "6", 6 }
        local B = drive(window.tumbling{ size = 10, grace = 90 }, "aggregate", recs)
        assert.equal(7, B.late)
    end)

    it("sessions: one per late record (KStreamSessionWindowAggregateProcessorTest)", function()
        local B = drive(window.session{ gap = 10, grace = 1 }, "count",
            { { "dummy", "d", 0 }, { "OnTime1", "1", 0 }, { "dummy", "d", 11 }, { "OnTime2", "1", 0 },
              { "dummy", "d", 12 }, { "Late1", "1", 0 } })
        assert.equal(1, B.late)
    end)

    it("sliding: a whole record, and each closed window a record would update", function()
        local B = drive(window.sliding{ diff = 10 }, "count", { { "a", "x", 30 }, { "a", "x", 19 }, { "a", "x", 20 } })
        assert.equal(2, B.late)           -- 19: the whole record; 20: its left window [10, 20]
    end)

    it("nil keys are counted apart", function()
        local B, out = drive(window.tumbling{ size = 10 }, "count", { { nil, "x", 1 }, { "a", "x", 2 } })
        assert.equal(1, B.nil_keys)
        assert.equal(0, B.late)
        assert.same({ "a [0,10] 1 @2" }, out)
    end)
end)
