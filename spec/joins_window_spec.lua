-- spec/joins_window_spec.lua: stream-stream joins within a window (stream:join, left_join,
-- outer_join with eddy.join_window), Kafka Streams 3.x's KStreamKStreamJoin with the
-- spurious-result fix, through the real binary in file mode.
--   1. Kafka Streams' own unit tests, transcribed: KStreamKStreamJoinTest,
--      KStreamKStreamLeftJoinTest and KStreamKStreamOuterJoinTest (apache/kafka,
--      streams/src/test/java/org/apache/kafka/streams/kstream/internals/): the same inputs
--      (integer keys 0..3 as the strings "0".."3", values A0/a0..., explicit timestamps,
--      topic1 the left stream, topic2 the right one, all on partition 0, in the order the
--      test pipes them) and the same expected outputs (KeyValueTimestamp lists, joiner
--      MockValueJoiner.TOSTRING_JOINER: left + "+" + right, "null" for a missing side).
--      Each case runs twice: phase by phase with eddy.testing's driver (one `eddy run` per
--      checkAndClearProcessResult, on one state dir, so held records and stream time cross
--      runs), and as one file-mode run whose output must be all the phases in order.
--      Where eddy differs on purpose (README, "Stream-stream joins within a window",
--      "Differences from Kafka Streams"), the phase keeps Kafka Streams' list (`ks = ...`)
--      next to eddy's and says why. Versions read: KStreamKStreamJoinTest of the JUnit 5
--      era; KStreamKStreamLeftJoinTest and KStreamKStreamOuterJoinTest of the JUnit 4 era
--      (3.x, ofTimeDifference* API, spurious-result fix on) -- the newest stored. The
--      outer one predates the per-side look-back of held records; one of its cases says so.
--   2. Randomized inputs against tools/join_ref.lua, a direct simulation of the rules:
--      join, left_join, outer_join; symmetric and asymmetric windows, with and without
--      grace; out-of-order timestamps, duplicates, nil keys and values; 1 and 4 partitions
--      (stream time per partition); every output partition's sequence is compared,
--      timestamps included. The seed is in the failure message.
--   3. A reload in the middle (eddy.testing's Driver:reload) with another joiner: records
--      held by the first version join, and are emitted, by the second.
--   4. Re-keyed inputs (map / select_key before the join): both sides are repartitioned by
--      the join key (in memory in file mode); expected from the simulation on the re-keyed
--      records.
--   5. Load errors naming the script line.
local h = require "helper"
local testing = require "eddy.testing"
local ref = require "tools.join_ref"
local rng = require("tools.agg_ref").rng
local fj = require "tools.file_job"

local PRE = fj.PRE

-- ===========================================================================================
-- helpers
-- ===========================================================================================

local METHOD = { inner = "join", left = "left_join", outer = "outer_join" }

-- The job: topic1 (left) joined with topic2 (right). window: the Lua text of the
-- eddy.join_window table; tag: a prefix of every result (the joiner's version);
-- left_step / right_step: Lua text appended to each source (e.g. ":map(...)").
local function job_script(o)
    return ([[
local job = eddy.job { name = %q }
local right = job:source("topic2")%s
job:source("topic1")%s
   :%s(right, eddy.join_window %s, function(l, r, k)
      return %q .. (l == nil and "null" or l) .. "+" .. (r == nil and "null" or r)
   end)
   :to("out")
return job
]]):format(o.name or "jw", o.right_step or "", o.left_step or "", METHOD[o.mode], o.window, o.tag or "")
end

--- Run a job over records in file mode, --quiet; returns { code, stderr, out (envelopes), dlq }.
local function run(script, records, args)
    return fj.run(script, records, args, { quiet = true })
end

local check, assert_clean, strip = fj.check, fj.assert_clean, fj.strip

local function show(list, from, to)
    local parts = {}
    for i = math.max(1, from), math.min(#list, to) do
        local o = list[i]
        parts[#parts + 1] = ("  #%d %s %s @%s"):format(i, tostring(o.key), tostring(o.value), tostring(o.ts))
    end
    return table.concat(parts, "\n")
end

--- Compare two output sequences; on a difference, fail with the first one and its context.
local function same_sequence(expected, got, what)
    local n = math.max(#expected, #got)
    for i = 1, n do
        local e, g = expected[i], got[i]
        if not (e and g and e.key == g.key and e.value == g.value and e.ts == g.ts) then
            error(("%s: first difference at output #%d (expected %d outputs, got %d)\nexpected:\n%s\ngot:\n%s")
                :format(what, i, #expected, #got, show(expected, i - 3, i + 3), show(got, i - 3, i + 3)), 2)
        end
    end
end

-- ===========================================================================================
-- 1. Kafka Streams' tests, transcribed
-- ===========================================================================================

local KEYS = { 0, 1, 2, 3 }   -- expectedKeys

-- inputTopic1.pipeInput(k, v, ts) / inputTopic2.pipeInput(k, v, ts) (no ts: 0, the
-- TestInputTopic start time with Duration.ZERO)
local function L(k, v, ts) return { topic = "topic1", key = tostring(k), value = v, ts = ts or 0, partition = 0 } end
local function R(k, v, ts) return { topic = "topic2", key = tostring(k), value = v, ts = ts or 0, partition = 0 } end
-- for (i < n) pipeInput(expectedKeys[i], prefix + expectedKeys[i], ts [+ i])
local function each(side, n, prefix, ts, inc)
    local list = {}
    for i = 1, n do
        local k = KEYS[i]
        list[i] = side(k, prefix .. k, inc and ts + i - 1 or ts)
    end
    return list
end
local function kvt(k, v, ts) return { key = tostring(k), value = v, ts = ts } end   -- KeyValueTimestamp
-- processor.checkAndClearProcessResult(...)
local function E(...) return { expect = { ... } } end
-- a phase where eddy's answer differs from Kafka Streams' on purpose: ks is what the test
-- states, eddy what eddy gives, why the README's reason
local function D(ks, eddy_list, why) return { expect = eddy_list, ks = ks, why = why } end

local function flatten(steps)
    local out = {}
    local function add(s)
        if s.expect or s.topic then out[#out + 1] = s
        else for _, x in ipairs(s) do add(x) end end
    end
    add(steps)
    return out
end

-- Run a transcribed case: mode "inner" | "left" | "outer", window (Lua text): phase by
-- phase, one `eddy run` per phase on one state, then the same input as one run.
local function ks_case(mode, window, steps)
    local list, phase = {}, 0
    for _, s in ipairs(flatten(steps)) do
        if s.expect then
            phase = phase + 1
            list[#list + 1] = { expect = s.expect, what = ("checkAndClearProcessResult #%d%s"):format(phase,
                s.why and (" (eddy differs from Kafka Streams here: " .. s.why .. ")") or "") }
        else
            list[#list + 1] = s
        end
    end
    fj.phases(job_script { name = "ks-" .. mode, mode = mode, window = window }, "out", list,
        "the whole input as one run", { quiet = true })
end

-- Kafka Streams keeps each side's records in a window store that ages by the timestamps
-- put into that store (and in segments of at least a minute); eddy drops both sides'
-- records exactly before + after + grace behind the task's stream time (README).
local RETENTION = "records are dropped before + after + grace behind the task's stream time; "
    .. "Kafka Streams' store of the right side (written up to ts 1003) still holds b0..b3"

describe("KStreamKStreamJoinTest, transcribed (stream:join)", function()
    local function abc_steps()
        return {
            -- push two items to the primary stream; the other window is empty
            each(L, 2, "A", 0), E(),
            -- push two items to the other stream; this should produce two items
            each(R, 2, "a", 0), E(kvt(0, "A0+a0", 0), kvt(1, "A1+a1", 0)),
            -- push all four items to the primary stream; this should produce two items
            each(L, 4, "B", 0), E(kvt(0, "B0+a0", 0), kvt(1, "B1+a1", 0)),
            -- push all items to the other stream; this should produce six items
            each(R, 4, "b", 0),
            E(kvt(0, "A0+b0", 0), kvt(0, "B0+b0", 0), kvt(1, "A1+b1", 0), kvt(1, "B1+b1", 0),
              kvt(2, "B2+b2", 0), kvt(3, "B3+b3", 0)),
            -- push all four items to the primary stream; this should produce six items
            each(L, 4, "C", 0),
            E(kvt(0, "C0+a0", 0), kvt(0, "C0+b0", 0), kvt(1, "C1+a1", 0), kvt(1, "C1+b1", 0),
              kvt(2, "C2+b2", 0), kvt(3, "C3+b3", 0)),
            -- push two items to the other stream; this should produce six items
            each(R, 2, "c", 0),
            E(kvt(0, "A0+c0", 0), kvt(0, "B0+c0", 0), kvt(0, "C0+c0", 0), kvt(1, "A1+c1", 0),
              kvt(1, "B1+c1", 0), kvt(1, "C1+c1", 0)),
        }
    end

    it("testJoin (ofTimeDifferenceWithNoGrace(100))", function()
        ks_case("inner", "{ diff = 100 }", abc_steps())
    end)

    it("testOuterJoin (outerJoin, ofTimeDifferenceAndGrace(100, 24h): nothing is unmatched long enough)", function()
        ks_case("outer", "{ diff = 100, grace = \"24h\" }", abc_steps())
    end)

    it("testWindowing (ofTimeDifferenceWithNoGrace(100))", function()
        ks_case("inner", "{ diff = 100 }", {
            each(L, 2, "A", 0), E(),
            each(R, 2, "a", 0), E(kvt(0, "A0+a0", 0), kvt(1, "A1+a1", 0)),
            -- push four items to the primary stream with larger and increasing timestamp
            each(L, 4, "B", 1000, true), E(),
            -- push four items to the other stream with fixed larger timestamp
            each(R, 4, "b", 1100),
            E(kvt(0, "B0+b0", 1100), kvt(1, "B1+b1", 1100), kvt(2, "B2+b2", 1100), kvt(3, "B3+b3", 1100)),
            each(R, 4, "c", 1101), E(kvt(1, "B1+c1", 1101), kvt(2, "B2+c2", 1101), kvt(3, "B3+c3", 1101)),
            each(R, 4, "d", 1102), E(kvt(2, "B2+d2", 1102), kvt(3, "B3+d3", 1102)),
            each(R, 4, "e", 1103), E(kvt(3, "B3+e3", 1103)),
            each(R, 4, "f", 1104), E(),
            -- push four items to the other stream with timestamp before the window bound
            each(R, 4, "g", 899), E(),
            each(R, 4, "h", 900), E(kvt(0, "B0+h0", 1000)),
            each(R, 4, "i", 901), E(kvt(0, "B0+i0", 1000), kvt(1, "B1+i1", 1001)),
            each(R, 4, "j", 902), E(kvt(0, "B0+j0", 1000), kvt(1, "B1+j1", 1001), kvt(2, "B2+j2", 1002)),
            each(R, 4, "k", 903),
            E(kvt(0, "B0+k0", 1000), kvt(1, "B1+k1", 1001), kvt(2, "B2+k2", 1002), kvt(3, "B3+k3", 1003)),
            -- advance time to not join with existing data
            each(R, 4, "l", 2000, true), E(),
            each(L, 4, "C", 2100),
            E(kvt(0, "C0+l0", 2100), kvt(1, "C1+l1", 2100), kvt(2, "C2+l2", 2100), kvt(3, "C3+l3", 2100)),
            each(L, 4, "D", 2101), E(kvt(1, "D1+l1", 2101), kvt(2, "D2+l2", 2101), kvt(3, "D3+l3", 2101)),
            each(L, 4, "E", 2102), E(kvt(2, "E2+l2", 2102), kvt(3, "E3+l3", 2102)),
            each(L, 4, "F", 2103), E(kvt(3, "F3+l3", 2103)),
            each(L, 4, "G", 2104), E(),
            -- push four items with smaller timestamps (before window) to the primary stream
            each(L, 4, "H", 1899), E(),
            each(L, 4, "I", 1900), E(kvt(0, "I0+l0", 2000)),
            each(L, 4, "J", 1901), E(kvt(0, "J0+l0", 2000), kvt(1, "J1+l1", 2001)),
            each(L, 4, "K", 1902), E(kvt(0, "K0+l0", 2000), kvt(1, "K1+l1", 2001), kvt(2, "K2+l2", 2002)),
            each(L, 4, "L", 1903),
            E(kvt(0, "L0+l0", 2000), kvt(1, "L1+l1", 2001), kvt(2, "L2+l2", 2002), kvt(3, "L3+l3", 2003)),
        })
    end)

    it("testAsymmetricWindowingAfter (ofTimeDifferenceWithNoGrace(0).after(100))", function()
        ks_case("inner", "{ before = 0, after = 100 }", {
            each(L, 4, "A", 1000, true), E(),
            -- push four items smaller timestamps (out of window) to the secondary stream
            each(R, 4, "a", 999), E(),
            each(R, 4, "b", 1000), E(kvt(0, "A0+b0", 1000)),
            each(R, 4, "c", 1001), E(kvt(0, "A0+c0", 1001), kvt(1, "A1+c1", 1001)),
            each(R, 4, "d", 1002), E(kvt(0, "A0+d0", 1002), kvt(1, "A1+d1", 1002), kvt(2, "A2+d2", 1002)),
            each(R, 4, "e", 1003),
            E(kvt(0, "A0+e0", 1003), kvt(1, "A1+e1", 1003), kvt(2, "A2+e2", 1003), kvt(3, "A3+e3", 1003)),
            -- push four items with larger timestamps to the secondary stream
            each(R, 4, "f", 1100),
            E(kvt(0, "A0+f0", 1100), kvt(1, "A1+f1", 1100), kvt(2, "A2+f2", 1100), kvt(3, "A3+f3", 1100)),
            each(R, 4, "g", 1101), E(kvt(1, "A1+g1", 1101), kvt(2, "A2+g2", 1101), kvt(3, "A3+g3", 1101)),
            each(R, 4, "h", 1102), E(kvt(2, "A2+h2", 1102), kvt(3, "A3+h3", 1102)),
            each(R, 4, "i", 1103), E(kvt(3, "A3+i3", 1103)),
            each(R, 4, "j", 1104), E(),
        })
    end)

    it("testAsymmetricWindowingBefore (ofTimeDifferenceWithNoGrace(0).before(100))", function()
        ks_case("inner", "{ before = 100, after = 0 }", {
            each(L, 4, "A", 1000, true), E(),
            -- push four items with smaller timestamps (before the window) to the other stream
            each(R, 4, "a", 899), E(),
            each(R, 4, "b", 900), E(kvt(0, "A0+b0", 1000)),
            each(R, 4, "c", 901), E(kvt(0, "A0+c0", 1000), kvt(1, "A1+c1", 1001)),
            each(R, 4, "d", 902), E(kvt(0, "A0+d0", 1000), kvt(1, "A1+d1", 1001), kvt(2, "A2+d2", 1002)),
            each(R, 4, "e", 903),
            E(kvt(0, "A0+e0", 1000), kvt(1, "A1+e1", 1001), kvt(2, "A2+e2", 1002), kvt(3, "A3+e3", 1003)),
            each(R, 4, "f", 1000),
            E(kvt(0, "A0+f0", 1000), kvt(1, "A1+f1", 1001), kvt(2, "A2+f2", 1002), kvt(3, "A3+f3", 1003)),
            each(R, 4, "g", 1001), E(kvt(1, "A1+g1", 1001), kvt(2, "A2+g2", 1002), kvt(3, "A3+g3", 1003)),
            each(R, 4, "h", 1002), E(kvt(2, "A2+h2", 1002), kvt(3, "A3+h3", 1003)),
            each(R, 4, "i", 1003), E(kvt(3, "A3+i3", 1003)),
            each(R, 4, "j", 1004), E(),
        })
    end)
end)

-- testUpperWindowBound, as KStreamKStreamLeftJoinTest and KStreamKStreamOuterJoinTest
-- share it (after A0, A1 at 0 and a0..a3 at 0); `first` is what the b's give (an outer
-- join's unmatched a2, a3).
local function upper_window_bound(first)
    return {
        -- push four items with larger and increasing timestamp (out of window) to the other stream
        each(R, 4, "b", 1000, true), first,
        -- push four items with larger timestamp to the primary stream; this should produce four full-join items
        each(L, 4, "B", 1100),
        E(kvt(0, "B0+b0", 1100), kvt(1, "B1+b1", 1100), kvt(2, "B2+b2", 1100), kvt(3, "B3+b3", 1100)),
        -- (non-joined items are not produced yet)
        each(L, 4, "C", 1101), E(kvt(1, "C1+b1", 1101), kvt(2, "C2+b2", 1101), kvt(3, "C3+b3", 1101)),
        each(L, 4, "D", 1102), E(kvt(2, "D2+b2", 1102), kvt(3, "D3+b3", 1102)),
        each(L, 4, "E", 1103), E(kvt(3, "E3+b3", 1103)),
        each(L, 4, "F", 1104), E(),
        -- push a dummy record to produce all left-join non-joined items
        L(0, "dummy", 1104 + 301),
        E(kvt(0, "C0+null", 1101), kvt(0, "D0+null", 1102), kvt(1, "D1+null", 1102),
          kvt(0, "E0+null", 1103), kvt(1, "E1+null", 1103), kvt(2, "E2+null", 1103),
          kvt(0, "F0+null", 1104), kvt(1, "F1+null", 1104), kvt(2, "F2+null", 1104), kvt(3, "F3+null", 1104)),
    }
end

-- testLowerWindowBound (after testUpperWindowBound: stream time 1405); dummy_ts: the last
-- dummy's timestamp (1203 in the left join's test, 1103 in the outer join's).
local function lower_window_bound(dummy_ts)
    local function nulls(p, ts) return { kvt(0, p .. "0+null", ts), kvt(1, p .. "1+null", ts), kvt(2, p .. "2+null", ts), kvt(3, p .. "3+null", ts) } end
    return {
        -- push four items with smaller timestamp (before the window) to the primary stream;
        -- this should produce four left-join and no full-join items
        each(L, 4, "G", 899), { expect = nulls("G", 899) },
        each(L, 4, "H", 900),
        D({ kvt(0, "H0+b0", 1000), kvt(1, "H1+null", 900), kvt(2, "H2+null", 900), kvt(3, "H3+null", 900) },
          nulls("H", 900), RETENTION),
        each(L, 4, "I", 901),
        D({ kvt(0, "I0+b0", 1000), kvt(1, "I1+b1", 1001), kvt(2, "I2+null", 901), kvt(3, "I3+null", 901) },
          nulls("I", 901), RETENTION),
        each(L, 4, "J", 902),
        D({ kvt(0, "J0+b0", 1000), kvt(1, "J1+b1", 1001), kvt(2, "J2+b2", 1002), kvt(3, "J3+null", 902) },
          nulls("J", 902), RETENTION),
        each(L, 4, "K", 903),
        D({ kvt(0, "K0+b0", 1000), kvt(1, "K1+b1", 1001), kvt(2, "K2+b2", 1002), kvt(3, "K3+b3", 1003) },
          nulls("K", 903), RETENTION),
        -- push a dummy record (behind stream time): only dummy+null, at once
        L(0, "dummy", dummy_ts), E(kvt(0, "dummy+null", dummy_ts)),
    }
end

-- Four cases both test classes have, for left_join and outer_join
local function expired_nonjoined_cases(mode)
    it("testLeftExpiredNonJoinedRecordsAreEmittedByTheLeftProcessor", function()
        ks_case(mode, "{ diff = 100, grace = 0 }", {
            L(0, "A0", 1), L(1, "A1", 2), L(0, "A0-0", 3), E(),          -- No joins detected; No null-joins emitted
            R(1, "a1", 3), E(kvt(1, "A1+a1", 3)),                         -- Join detected; No null-joins emitted
            -- Dummy record in left topic will emit expired non-joined records from the left topic
            L(2, "dummy", 401), E(kvt(0, "A0+null", 1), kvt(0, "A0-0+null", 3)),
            -- Flush internal non-joined state store by joining the dummy record
            R(2, "dummy", 401), E(kvt(2, "dummy+dummy", 401)),
        })
    end)

    it("testLeftExpiredNonJoinedRecordsAreEmittedByTheRightProcessor", function()
        ks_case(mode, "{ diff = 100, grace = 0 }", {
            L(0, "A0", 1), L(1, "A1", 2), L(0, "A0-0", 3), E(),
            R(1, "a1", 3), E(kvt(1, "A1+a1", 3)),
            -- Dummy record in right topic will emit expired non-joined records from the left topic
            R(2, "dummy", 401), E(kvt(0, "A0+null", 1), kvt(0, "A0-0+null", 3)),
            L(2, "dummy", 402), E(kvt(2, "dummy+dummy", 402)),
        })
    end)
end

describe("KStreamKStreamLeftJoinTest, transcribed (stream:left_join)", function()
    it("testLeftJoinDuplicates (ofTimeDifferenceAndGrace(100, 10))", function()
        ks_case("left", "{ diff = 100, grace = 10 }", {
            -- verifies non-joined duplicates are emitted when window has closed
            L(0, "A0", 0), L(0, "A0-0", 0), R(1, "a0", 111),
            R(2, "dummy", 500),                                   -- bump stream-time to trigger left-join results
            E(kvt(0, "A0+null", 0), kvt(0, "A0-0+null", 0)),
            -- verifies joined duplicates are emitted
            L(2, "A2", 1000), L(2, "A2-0", 1000), R(2, "a2", 1001),
            E(kvt(2, "A2+a2", 1001), kvt(2, "A2-0+a2", 1001)),
            -- this record should expired non-joined records, but because A2 and A2-0 are joined and
            -- emitted already, then they won't be emitted again
            R(3, "a3", 315), E(),
        })
    end)

    expired_nonjoined_cases("left")

    it("testRightNonJoinedRecordsAreNeverEmittedByTheLeftProcessor", function()
        ks_case("left", "{ diff = 100, grace = 0 }", {
            R(0, "A0", 1), R(1, "A1", 2), R(0, "A0-0", 3), E(),
            L(1, "a1", 3), E(kvt(1, "a1+A1", 3)),
            L(2, "dummy", 401), E(),                              -- Dummy record in left topic will not emit records
            R(2, "dummy", 402), E(kvt(2, "dummy+dummy", 402)),
        })
    end)

    it("testRightNonJoinedRecordsAreNeverEmittedByTheRightProcessor", function()
        ks_case("left", "{ diff = 100 }", {
            R(0, "A0", 1), R(1, "A1", 2), R(0, "A0-0", 3), E(),
            L(1, "a1", 3), E(kvt(1, "a1+A1", 3)),
            R(2, "dummy", 401), E(),                              -- Dummy record in right topic will not emit records
            L(2, "dummy", 402), E(kvt(2, "dummy+dummy", 402)),
        })
    end)

    it("testLeftJoinedRecordsWithZeroAfterAreEmitted (ofTimeDifferenceWithNoGrace(100).after(ZERO))", function()
        ks_case("left", "{ before = 100, after = 0 }", {
            -- push four items with increasing timestamps to the primary stream; the other window is empty;
            -- this should emit the first three left-joined items; A3 is not triggered yet
            each(L, 4, "A", 1000, true),
            E(kvt(0, "A0+null", 1000), kvt(1, "A1+null", 1001), kvt(2, "A2+null", 1002)),
            -- push four items smaller timestamps (out of window) to the secondary stream; this should produce four joined items
            each(R, 4, "a", 999),
            E(kvt(0, "A0+a0", 1000), kvt(1, "A1+a1", 1001), kvt(2, "A2+a2", 1002), kvt(3, "A3+a3", 1003)),
            each(R, 4, "b", 1000),
            E(kvt(0, "A0+b0", 1000), kvt(1, "A1+b1", 1001), kvt(2, "A2+b2", 1002), kvt(3, "A3+b3", 1003)),
            -- c0 arrives too late to be joined with A0
            each(R, 4, "c", 1001), E(kvt(1, "A1+c1", 1001), kvt(2, "A2+c2", 1002), kvt(3, "A3+c3", 1003)),
            each(R, 4, "d", 1002), E(kvt(2, "A2+d2", 1002), kvt(3, "A3+d3", 1003)),
            each(R, 4, "e", 1003), E(kvt(3, "A3+e3", 1003)),
            -- push four items with larger timestamps to the secondary stream; no (non-)joined items can be produced
            each(R, 4, "f", 1100), E(),
        })
    end)

    it("testLeftJoinWithDefaultSuppliers (runLeftJoin, ofTimeDifferenceWithNoGrace(100))", function()
        ks_case("left", "{ diff = 100 }", {
            each(L, 2, "A", 0), E(),
            each(R, 2, "a", 0), E(kvt(0, "A0+a0", 0), kvt(1, "A1+a1", 0)),
            each(L, 3, "B", 0), E(kvt(0, "B0+a0", 0), kvt(1, "B1+a1", 0)),
            each(R, 4, "b", 0),
            E(kvt(0, "A0+b0", 0), kvt(0, "B0+b0", 0), kvt(1, "A1+b1", 0), kvt(1, "B1+b1", 0), kvt(2, "B2+b2", 0)),
            each(L, 4, "C", 0),
            E(kvt(0, "C0+a0", 0), kvt(0, "C0+b0", 0), kvt(1, "C1+a1", 0), kvt(1, "C1+b1", 0),
              kvt(2, "C2+b2", 0), kvt(3, "C3+b3", 0)),
            -- push a dummy record that should expire non-joined items; it should not produce any
            -- items because all of them are joined
            L(0, "dummy", 1000), E(),
        })
    end)

    it("testOrdering", function()
        ks_case("left", "{ diff = 100 }", {
            L(0, "A0", 0), L(1, "A1", 100), E(),
            -- this should produce the joined record first; then non-joined record with a closed window
            -- (the list as the test states it: the non-joined one comes first)
            R(1, "a1", 110), E(kvt(0, "A0+null", 0), kvt(1, "A1+a1", 110)),
        })
    end)

    it("testGracePeriod (ofTimeDifferenceAndGrace(100, 10))", function()
        ks_case("left", "{ diff = 100, grace = 10 }", {
            each(L, 2, "A", 0), E(),
            -- push two items to the other stream with a window time after the previous window ended (not closed)
            each(R, 4, "a", 101), E(),
            -- push a dummy item to the other stream after the window is closed
            R(0, "dummy", 101 + 1100), E(kvt(0, "A0+null", 0), kvt(1, "A1+null", 0)),
        })
    end)

    it("testWindowing (with testUpperWindowBound and testLowerWindowBound)", function()
        ks_case("left", "{ diff = 100 }", {
            each(L, 2, "A", 0), E(),
            each(R, 4, "a", 0), E(kvt(0, "A0+a0", 0), kvt(1, "A1+a1", 0)),
            upper_window_bound(E()),
            lower_window_bound(1203),
        })
    end)

    it("shouldNotEmitLeftJoinResultForAsymmetricWindow (ofTimeDifferenceWithNoGrace(100).before(ZERO))", function()
        ks_case("left", "{ before = 0, after = 100 }", {
            L(0, "A0", 0), L(1, "A1", 1), E(),
            R(0, "a0", 100), E(kvt(0, "A0+a0", 100)),
            R(1, "a1", 102), E(kvt(1, "A1+null", 1)),
        })
    end)
end)

describe("KStreamKStreamOuterJoinTest, transcribed (stream:outer_join)", function()
    it("testOuterJoinDuplicates (ofTimeDifferenceAndGrace(100, 10))", function()
        ks_case("outer", "{ diff = 100, grace = 10 }", {
            -- verifies non-joined duplicates are emitted when window has closed
            L(0, "A0", 0), L(0, "A0-0", 0), R(1, "a1", 0), R(1, "a1-0", 0), R(1, "a0", 111),
            R(3, "dummy", 211),                                   -- bump stream-time to trigger outer-join results
            E(kvt(1, "null+a1", 0), kvt(1, "null+a1-0", 0), kvt(0, "A0+null", 0), kvt(0, "A0-0+null", 0)),
            -- verifies joined duplicates are emitted
            L(2, "A2", 200), L(2, "A2-0", 200), R(2, "a2", 201), R(2, "a2-0", 201),
            E(kvt(2, "A2+a2", 201), kvt(2, "A2-0+a2", 201), kvt(2, "A2+a2-0", 201), kvt(2, "A2-0+a2-0", 201)),
            -- this record should expired non-joined records; only null+a0 will be emitted because
            -- it did not have a join
            R(3, "dummy", 1500), E(kvt(1, "null+a0", 111), kvt(3, "null+dummy", 211)),
        })
    end)

    expired_nonjoined_cases("outer")

    it("testRightExpiredNonJoinedRecordsAreEmittedByTheLeftProcessor", function()
        ks_case("outer", "{ diff = 100 }", {
            R(0, "A0", 1), R(1, "A1", 2), R(0, "A0-0", 3), E(),
            L(1, "a1", 3), E(kvt(1, "a1+A1", 3)),
            -- Dummy record in left topic will emit expired non-joined records from the right topic
            L(2, "dummy", 401), E(kvt(0, "null+A0", 1), kvt(0, "null+A0-0", 3)),
            R(2, "dummy", 402), E(kvt(2, "dummy+dummy", 402)),
        })
    end)

    it("testRightExpiredNonJoinedRecordsAreEmittedByTheRightProcessor", function()
        ks_case("outer", "{ diff = 100, grace = 0 }", {
            R(0, "A0", 1), R(1, "A1", 2), R(0, "A0-0", 3), E(),
            L(1, "a1", 3), E(kvt(1, "a1+A1", 3)),
            -- Dummy record in right topic will emit expired non-joined records from the right topic
            R(2, "dummy", 401), E(kvt(0, "null+A0", 1), kvt(0, "null+A0-0", 3)),
            L(2, "dummy", 402), E(kvt(2, "dummy+dummy", 402)),
        })
    end)

    it("testOrdering", function()
        ks_case("outer", "{ diff = 100 }", {
            L(0, "A0", 0), L(1, "A1", 100), E(),
            -- this should produce non-joined records with a closed window first, then the joined records
            R(1, "a1", 110), E(kvt(0, "A0+null", 0), kvt(1, "A1+a1", 110)),
        })
    end)

    it("testGracePeriod (ofTimeDifferenceAndGrace(100, 10))", function()
        ks_case("outer", "{ diff = 100, grace = 10 }", {
            L(0, "A0", 0), R(1, "a1", 0), E(),
            -- a window time after the previous window ended (not closed)
            R(0, "a0", 101), L(1, "A1", 101), E(),
            -- push a dummy item to the any stream after the window is closed
            R(0, "dummy", 211), E(kvt(1, "null+a1", 0), kvt(0, "A0+null", 0)),
        })
    end)

    it("testOuterJoinWithDefaultSuppliers (runOuterJoin, ofTimeDifferenceWithNoGrace(100))", function()
        ks_case("outer", "{ diff = 100 }", {
            each(L, 2, "A", 0), E(),
            each(R, 2, "a", 0), E(kvt(0, "A0+a0", 0), kvt(1, "A1+a1", 0)),
            each(L, 3, "B", 0), E(kvt(0, "B0+a0", 0), kvt(1, "B1+a1", 0)),
            each(R, 4, "b", 0),
            E(kvt(0, "A0+b0", 0), kvt(0, "B0+b0", 0), kvt(1, "A1+b1", 0), kvt(1, "B1+b1", 0), kvt(2, "B2+b2", 0)),
            each(L, 4, "C", 0),
            E(kvt(0, "C0+a0", 0), kvt(0, "C0+b0", 0), kvt(1, "C1+a1", 0), kvt(1, "C1+b1", 0),
              kvt(2, "C2+b2", 0), kvt(3, "C3+b3", 0)),
            L(0, "dummy", 400), E(),
        })
    end)

    it("testWindowing (with testUpperWindowBound and testLowerWindowBound)", function()
        ks_case("outer", "{ diff = 100 }", {
            each(L, 2, "A", 0), E(),
            each(R, 4, "a", 0), E(kvt(0, "A0+a0", 0), kvt(1, "A1+a1", 0)),
            -- this should produce 2 expired non-joined records
            upper_window_bound(E(kvt(2, "null+a2", 0), kvt(3, "null+a3", 0))),
            -- dummy window is behind the max. stream time seen (1405 in testUpperWindowBound)
            lower_window_bound(1103),
        })
    end)

    it("shouldNotEmitLeftJoinResultForAsymmetricBeforeWindow (ofTimeDifferenceWithNoGrace(100).before(ZERO))", function()
        ks_case("outer", "{ before = 0, after = 100 }", {
            L(0, "A0", 0), L(1, "A1", 1), E(),
            R(0, "a0", 100), E(kvt(0, "A0+a0", 100)),
            R(1, "a1", 102), E(kvt(1, "A1+null", 1)),
            R(2, "a2", 103), E(kvt(1, "null+a1", 102)),
            L(2, "A2", 103), E(kvt(2, "A2+a2", 103)),
        })
    end)

    it("shouldNotEmitLeftJoinResultForAsymmetricAfterWindow (ofTimeDifferenceWithNoGrace(100).after(ZERO))", function()
        -- The stored version of this test predates Kafka Streams' per-side look-back
        -- (KStreamKStreamJoin#getOuterJoinLookBackTimeMs: a left record closes at ts + after
        -- + grace, a right one at ts + before + grace). It was written when every held
        -- record was checked with the processing side's after and the shortcut with its
        -- before: A1 at 1 skipped the pass, A0 came out at a2. Under the current
        -- KStreamKStreamJoin#process, and eddy's rule, A1 at 1 has stream time 1 > 0 + 0 +
        -- 0, so A0+null comes out there.
        local NEWER = "Kafka Streams' current per-side look-back (and eddy's): A0 closes at stream time 1"
        ks_case("outer", "{ before = 100, after = 0 }", {
            L(0, "A0", 0), L(1, "A1", 1), D({}, { kvt(0, "A0+null", 0) }, NEWER),
            R(1, "a1", 1), E(kvt(1, "A1+a1", 1)),
            R(2, "a2", 101), D({ kvt(0, "A0+null", 0) }, {}, NEWER),
            R(3, "a3", 101), E(),
            L(2, "A2", 201), E(kvt(2, "A2+a2", 201)),
        })
    end)
end)

-- Not in those test classes' stored versions: null keys and values (Kafka Streams >= 3.7,
-- KStreamKStreamJoin#process: stream time first, then a null-key record of a left/outer
-- side is forwarded with a null partner, then null keys and values are skipped).
describe("null keys and values", function()
    local function nk(topic, v, ts) return { topic = topic, key = nil, value = v, ts = ts, partition = 0 } end
    local function nv(topic, k, ts) return { topic = topic, key = k, value = nil, ts = ts, partition = 0 } end

    for _, mode in ipairs({ "inner", "left", "outer" }) do
        it(("%s: a nil key is %s; a nil value is dropped but moves stream time on"):format(METHOD[mode],
            mode == "inner" and "dropped" or "emitted at once with a nil partner"), function()
            local records = {
                L(0, "A0", 0),
                nk("topic1", "Lnull", 5), nk("topic2", "Rnull", 6),
                R(0, "a0", 50),                          -- A0 finds its partner
                L(1, "B", 60),                           -- B finds none: held (left/outer)
                nv("topic1", "1", 500),                  -- stream time 500, nothing emitted
                L(2, "late", 300),                       -- its window ended before it came: at once
                nv("topic2", "0", 600),                  -- stream time 600, still nothing emitted
                L(3, "x", 600),                          -- a record at stream time: B's window has closed
            }
            local r = run(job_script { name = "nulls", mode = mode, window = "{ diff = 100 }" }, records)
            assert_clean(r)
            local want = {
                inner = { kvt(0, "A0+a0", 50) },
                left = { { key = nil, value = "Lnull+null", ts = 5 }, kvt(0, "A0+a0", 50), kvt(2, "late+null", 300),
                         kvt(1, "B+null", 60) },
                outer = { { key = nil, value = "Lnull+null", ts = 5 }, { key = nil, value = "null+Rnull", ts = 6 },
                          kvt(0, "A0+a0", 50), kvt(2, "late+null", 300), kvt(1, "B+null", 60) },
            }
            assert.are.same(want[mode], strip(r.out))
            -- and the reference agrees
            local recs = {}
            for i, x in ipairs(records) do
                recs[i] = { side = x.topic == "topic1" and "left" or "right", key = x.key, value = x.value, ts = x.ts, partition = 0 }
            end
            local exp = ref.run(recs, { mode = mode, before = 100, after = 100, grace = 0,
                joiner = function(l, rr) return (l or "null") .. "+" .. (rr or "null") end })
            assert.are.same(want[mode], strip(exp))
        end)
    end
end)

-- ===========================================================================================
-- 2. Randomized, against the reference simulation
-- ===========================================================================================

local KEY_POOL = { "a", "b", "k1", "k2", "k10", "key-7", "zz", "0", "1", "x y", "long-key-42", "ü" }

-- n records over the two sides: timestamps mostly increasing in small steps, some behind
-- by up to `late` ms, a few jumps ahead; duplicates (the same record twice), nil values,
-- nil keys; partitions: by key (murmur2, as co-partitioned topics would be), nil keys on
-- any partition. o: partitions, late (ms), step (ms), keys (how many of KEY_POOL).
local function random_records(seed, n, o)
    local g = rng(seed)
    local parts = o.partitions or 1
    local list, base = {}, 1000
    for i = 1, n do
        local prev = list[i - 1]
        if prev and g.chance(0.05) then
            list[i] = { side = prev.side, key = prev.key, value = prev.value, ts = prev.ts, partition = prev.partition }
        else
            base = base + g.int(0, o.step or 6)
            if g.chance(0.01) then base = base + g.int(100, 600) end
            local ts = base
            if g.chance(0.25) then ts = math.max(0, base - g.int(1, o.late or 150)) end
            local side = g.chance(0.5) and "left" or "right"
            local key = KEY_POOL[g.int(1, o.keys or #KEY_POOL)]
            if g.chance(0.03) then key = nil end
            local value = (side == "left" and "L" or "R") .. i
            if g.chance(0.04) then value = nil end
            local p = key and h.partition_for(key, parts) or g.int(0, parts - 1)
            list[i] = { side = side, key = key, value = value, ts = ts, partition = p }
        end
    end
    return list
end

local function as_input(recs)
    local out = {}
    for i, r in ipairs(recs) do
        out[i] = { topic = r.side == "left" and "topic1" or "topic2", key = r.key, value = r.value, ts = r.ts,
            partition = r.partition }
    end
    return out
end

local function joiner(tag)
    return function(l, r) return tag .. (l or "null") .. "+" .. (r or "null") end
end

local function window_text(w)
    if w.diff then return ("{ diff = %d, grace = %d }"):format(w.diff, w.grace or 0) end
    return ("{ before = %d, after = %d, grace = %d }"):format(w.before, w.after, w.grace or 0)
end

local function compare_partitions(expected, got_envelopes, parts, what)
    local exp = ref.by_partition(expected)
    local got = {}
    for _, e in ipairs(got_envelopes) do
        got[e.partition] = got[e.partition] or {}
        local l = got[e.partition]
        l[#l + 1] = { key = e.key, value = e.payload, ts = e.ts }
    end
    for p = 0, parts - 1 do
        same_sequence(exp[p] or {}, got[p] or {}, ("%s, partition %d"):format(what, p))
    end
    for p in pairs(got) do
        assert.is_true(p >= 0 and p < parts, what .. ": output on partition " .. tostring(p))
    end
end

local CASES = {
    { mode = "inner", w = { diff = 50 }, parts = 1, n = 900, seed = 101 },
    { mode = "left", w = { diff = 40, grace = 25 }, parts = 1, n = 1200, seed = 202 },
    { mode = "outer", w = { diff = 60, grace = 10 }, parts = 1, n = 1200, seed = 303 },
    { mode = "left", w = { before = 30, after = 80, grace = 20 }, parts = 1, n = 1000, seed = 404 },
    { mode = "outer", w = { before = 0, after = 60, grace = 10 }, parts = 4, n = 1500, seed = 505 },
    { mode = "outer", w = { before = 70, after = 0, grace = 0 }, parts = 4, n = 1500, seed = 606 },
    { mode = "inner", w = { before = 20, after = 90, grace = 15 }, parts = 4, n = 1500, seed = 707 },
    { mode = "left", w = { diff = 100, grace = 300 }, parts = 4, n = 2000, seed = 808, late = 400 },
    { mode = "outer", w = { diff = 0, grace = 0 }, parts = 1, n = 800, seed = 909, step = 1, keys = 3, late = 20 },
    { mode = "left", w = { before = 90, after = 5, grace = 30 }, parts = 4, n = 1500, seed = 1010 },
    { mode = "outer", w = { before = 15, after = 120, grace = 40 }, parts = 4, n = 2000, seed = 1111, late = 250 },
}

describe("randomized, against a reference simulation", function()
    for _, c in ipairs(CASES) do
        local w = c.w
        local before, after = w.before or w.diff, w.after or w.diff
        local name = ("%s %s, %d partition(s), %d records, seed %d"):format(METHOD[c.mode], window_text(w),
            c.parts, c.n, c.seed)
        it(name, function()
            local recs = random_records(c.seed, c.n, { partitions = c.parts, late = c.late, step = c.step, keys = c.keys })
            local expected = ref.run(recs, { mode = c.mode, before = before, after = after, grace = w.grace or 0,
                partitions = c.parts, joiner = joiner("") })
            local r = run(job_script { name = "rnd", mode = c.mode, window = window_text(w) }, as_input(recs),
                { "--partitions", tostring(c.parts) })
            assert_clean(r)
            compare_partitions(expected, r.out, c.parts, name)
            -- the case is not trivial: joined pairs, and (left/outer) unmatched results
            local pairs_n, unmatched = 0, 0
            for _, o in ipairs(expected) do
                if o.value:find("null", 1, true) then unmatched = unmatched + 1 else pairs_n = pairs_n + 1 end
            end
            assert.is_true(pairs_n > 50, name .. ": only " .. pairs_n .. " joined pairs")
            if c.mode ~= "inner" then assert.is_true(unmatched > 20, name .. ": only " .. unmatched .. " unmatched") end
        end)
    end
end)

-- ===========================================================================================
-- 3. A reload in the middle
-- ===========================================================================================

describe("a reload in the middle", function()
    for _, c in ipairs({
        { mode = "outer", w = { diff = 50, grace = 30 }, parts = 4, n = 1200, seed = 4242 },
        { mode = "left", w = { before = 10, after = 120, grace = 60 }, parts = 1, n = 1000, seed = 4343 },
    }) do
        local w = c.w
        local before, after = w.before or w.diff, w.after or w.diff
        it(("%s %s, %d partition(s): records held by v1 join and are emitted by v2, with v2's joiner")
            :format(METHOD[c.mode], window_text(w), c.parts), function()
            local recs = random_records(c.seed, c.n, { partitions = c.parts })
            local half = math.floor(c.n / 2)
            local function script(tag)
                return PRE .. job_script { name = "jw-reload", mode = c.mode, window = window_text(w), tag = tag }
            end
            local d = testing.driver(script("v1:"), { partitions = c.parts })
            local got
            local ok, err = pcall(function()
                local input = as_input(recs)
                for i = 1, half do d:pipe(input[i].topic, { input[i] }) end
                got = d:read_all("out")
                d:reload(script("v2:"))
                for i = half + 1, c.n do d:pipe(input[i].topic, { input[i] }) end
                for _, x in ipairs(d:read_all("out")) do got[#got + 1] = x end
                assert.are.same({}, d:dlq())
            end)
            d:close()
            if not ok then error(err, 0) end
            local v1, v2 = joiner("v1:"), joiner("v2:")
            local expected = ref.run(recs, { mode = c.mode, before = before, after = after, grace = w.grace or 0,
                partitions = c.parts, joiner_at = function(i) return i <= half and v1 or v2 end })
            local envs = {}
            for i, x in ipairs(got) do envs[i] = { key = x.key, payload = x.value, ts = x.ts, partition = x.partition } end
            compare_partitions(expected, envs, c.parts, "reload seed " .. c.seed)
            -- v2 emitted results of records v1 had kept or held: pairs with a partner from
            -- before the reload, and unmatched records from before the reload
            local index_of = {}
            for i, r in ipairs(recs) do if r.value then index_of[r.value] = index_of[r.value] or i end end
            local joined_old, held_old = 0, 0
            for _, o in ipairs(expected) do
                if o.at > half and o.value:sub(1, 3) == "v2:" then
                    local l, r = o.value:sub(4):match("^(.-)%+(.*)$")
                    local li, ri = index_of[l], index_of[r]
                    if l ~= "null" and r ~= "null" and ((li and li <= half) or (ri and ri <= half)) then
                        joined_old = joined_old + 1
                    elseif (l == "null" and ri and ri <= half) or (r == "null" and li and li <= half) then
                        held_old = held_old + 1
                    end
                end
            end
            assert.is_true(joined_old > 0, "no v2 result joins a record from before the reload")
            assert.is_true(held_old > 0, "no record held before the reload was emitted by v2")
        end)
    end
end)

-- ===========================================================================================
-- 4. Re-keyed inputs
-- ===========================================================================================

describe("re-keyed inputs are repartitioned by the join key", function()
    -- left: key "id<n>", value "<user>:<payload>" re-keyed to the user by map (an empty user
    -- gives a nil key, dropped by the repartition); right: key "K:<user>", re-keyed by
    -- select_key (a nil key stays nil and is dropped). Sources spread over 4 partitions
    -- without regard to the join key.
    local LEFT_STEP = [[

   :map(function(k, v)
      if v == nil then return k, nil end
      local user, rest = v:match("^([^:]*):(.*)$")
      if user == "" then user = nil end
      return user, rest
   end)]]
    local RIGHT_STEP = [[

   :select_key(function(k, v) return k and (k:match("^K:(.*)$") or k) end)]]

    for _, c in ipairs({
        { mode = "left", w = { diff = 40, grace = 20 }, seed = 77 },
        { mode = "outer", w = { before = 10, after = 70, grace = 5 }, seed = 78 },
        { mode = "inner", w = { diff = 30 }, seed = 79 },
    }) do
        local w = c.w
        it(("%s %s over 4 partitions"):format(METHOD[c.mode], window_text(w)), function()
            local parts, n = 4, 1200
            local g = rng(c.seed)
            local recs = random_records(c.seed, n, { partitions = parts })
            local input, rekeyed = {}, {}
            for i, r in ipairs(recs) do
                local p = g.int(0, parts - 1)
                local user = r.key
                if r.side == "left" then
                    local k = "id" .. i
                    local v = r.value and ((g.chance(0.03) and "" or (user or "")) .. ":" .. r.value) or nil
                    input[i] = { topic = "topic1", key = k, value = v, ts = r.ts, partition = p }
                    -- what reaches the join: the map's key and value
                    local nk, nv = k, nil
                    if v ~= nil then
                        nk, nv = v:match("^([^:]*):(.*)$")
                        if nk == "" then nk = nil end
                    end
                    if nk ~= nil then
                        rekeyed[#rekeyed + 1] = { side = "left", key = nk, value = nv, ts = r.ts,
                            partition = h.partition_for(nk, parts) }
                    end
                else
                    local k = user and ("K:" .. user) or nil
                    input[i] = { topic = "topic2", key = k, value = r.value, ts = r.ts, partition = p }
                    if user ~= nil then
                        rekeyed[#rekeyed + 1] = { side = "right", key = user, value = r.value, ts = r.ts,
                            partition = h.partition_for(user, parts) }
                    end
                end
            end
            local before, after = w.before or w.diff, w.after or w.diff
            local expected = ref.run(rekeyed, { mode = c.mode, before = before, after = after, grace = w.grace or 0,
                partitions = parts, joiner = joiner("") })
            local r = run(job_script { name = "rekey", mode = c.mode, window = window_text(w),
                left_step = LEFT_STEP, right_step = RIGHT_STEP }, input, { "--partitions", tostring(parts) })
            assert_clean(r)
            compare_partitions(expected, r.out, parts, "re-keyed seed " .. c.seed)
            assert.is_true(#expected > 100, "too few results: " .. #expected)
        end)
    end
end)

-- ===========================================================================================
-- 5. Load errors
-- ===========================================================================================

describe("load errors name the script line", function()
    local function refused(script, message, line)
        local code, _, err = check(script)
        assert.are.equal(1, code, "eddy check should refuse:\n" .. script)
        assert.is_truthy(err:find(message, 1, true), ("expected %q in:\n%s"):format(message, err))
        assert.is_truthy(err:find("job.lua:" .. line, 1, true), ("expected job.lua:%d in:\n%s"):format(line, err))
    end

    it("no window", function()
        refused([[
local job = eddy.job { name = "bad" }
local clicks = job:source("clicks")
job:source("views")
   :join(clicks, function(v, c) return v end)
   :to("out")
return job
]], "the window must be eddy.join_window{", 5)
    end)

    it("a window that is not a join window (eddy.tumbling)", function()
        refused([[
local job = eddy.job { name = "bad" }
local clicks = job:source("clicks")
job:source("views")
   :left_join(clicks, eddy.tumbling { size = 100 }, function(v, c) return v end)
   :to("out")
return job
]], "stream:left_join(other_stream, window, fn): the window must be eddy.join_window{", 5)
    end)

    it("an unknown join_window option", function()
        refused([[
local job = eddy.job { name = "bad" }
local clicks = job:source("clicks")
job:source("views")
   :join(clicks, eddy.join_window { diff = 100, size = 5 }, function(v, c) return v end)
   :to("out")
return job
]], 'eddy.join_window: unknown option "size"', 5)
    end)

    it("before without after (and after without before)", function()
        for _, opt in ipairs({ "before = 10", "after = 10", "grace = 10" }) do
            refused(([[
local job = eddy.job { name = "bad" }
local clicks = job:source("clicks")
job:source("views")
   :outer_join(clicks, eddy.join_window { %s }, function(v, c) return v end)
   :to("out")
return job
]]):format(opt), "eddy.join_window: give diff (both directions), or before and after", 5)
        end
    end)

    it("a join name used twice", function()
        refused([[
local job = eddy.job { name = "bad" }
local clicks = job:source("clicks")
local views = job:source("views")
views:join(clicks, eddy.join_window { diff = 10 }, function(v, c) return v end, { name = "j" }):to("out1")
views:left_join(clicks, eddy.join_window { diff = 10 }, function(v, c) return v end, { name = "j" })
   :to("out2")
return job
]], 'name "j" is already used at', 6)
    end)

    it("outer_join with a table", function()
        refused([[
local job = eddy.job { name = "bad" }
local customers = job:table("customers")
job:source("orders")
   :outer_join(customers, function(o, c) return o end)
   :to("out")
return job
]], "stream:outer_join: a stream joins another stream within a window", 5)
    end)
end)
