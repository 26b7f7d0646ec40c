-- spec/scripts_stateful_spec.lua: the stateful example jobs (wordcount.lua,
-- sessions.lua, sensor_alerts.lua) run through the real binary in file mode on
-- their sample data in scripts/data/.
--
-- Every expectation is computed here from the sample data with plain Lua and
-- cjson, following CONTRACT.md's rules (stream time per task, grace, session
-- merging, emit = "final", event-time timers), independently of the jobs' code
-- and of lua/eddy. The windowed and processor parts stay pending until
-- windows and process{} are available in the binary (probed below).
local h = require "helper"
local cjson = require "cjson"
local cjson_safe = require "cjson.safe"

local ROOT = h.ROOT
local function path(p) return ROOT .. "/" .. p end

local function lines_of(file)
    local list = {}
    for line in assert(h.read(path(file)), "missing " .. file):gmatch("[^\n]*\n") do
        list[#list + 1] = line:sub(1, -2)
    end
    return list
end

-- Run a job in file mode; returns outputs, dead letters, exit code, stderr.
local function run(script, input, extra)
    local dir = h.tmpdir()
    local args = { "run", path(script), "--input", path(input),
        "--output", dir .. "/out.jsonl", "--dlq", dir .. "/dlq.jsonl", "--no-watch" }
    local has_state = false
    for _, a in ipairs(extra or {}) do
        args[#args + 1] = a
        has_state = has_state or a == "--state-dir"
    end
    if not has_state then
        args[#args + 1] = "--state-dir"
        args[#args + 1] = dir .. "/state"
    end
    local code, _, err = h.eddy(args)
    local outs = h.envelopes(h.read(dir .. "/out.jsonl"))
    local dlq = h.envelopes(h.read(dir .. "/dlq.jsonl"))
    os.execute("rm -rf " .. h.q(dir))
    return outs, dlq, code, err
end

local function by_topic(outs)
    local t = {}
    for _, e in ipairs(outs) do
        t[e.topic] = t[e.topic] or {}
        table.insert(t[e.topic], e)
    end
    return t
end

-- Compare decoded JSON values; numbers within `eps` (default 1e-9).
local function same(a, b, eps)
    if type(a) == "number" and type(b) == "number" then return math.abs(a - b) <= (eps or 1e-9) end
    if type(a) ~= "table" or type(b) ~= "table" then return a == b end
    for k, v in pairs(a) do if not same(v, b[k], eps) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
end

local function assert_same_lists(expected, actual, what, eps)
    local ok = #expected == #actual
    for i = 1, math.max(#expected, #actual) do
        ok = ok and same(expected[i], actual[i], eps)
    end
    if not ok then
        local lines = { ("%s: expected %d, got %d"):format(what, #expected, #actual) }
        for i = 1, math.max(#expected, #actual) do
            local e, a = expected[i], actual[i]
            if not same(e, a, eps) then
                lines[#lines + 1] = ("  #%d expected %s"):format(i, e and cjson.encode(e) or "-")
                lines[#lines + 1] = ("  #%d actual   %s"):format(i, a and cjson.encode(a) or "-")
                if #lines > 12 then break end
            end
        end
        error(table.concat(lines, "\n"), 2)
    end
end

local function sorted(list, cmp)
    table.sort(list, cmp)
    return list
end

-- Offsets in each output topic-partition are 0, 1, 2, ...
local function assert_dense_offsets(outs)
    local next_off = {}
    for _, e in ipairs(outs) do
        local tp = e.topic .. "/" .. e.partition
        assert.are.equal(next_off[tp] or 0, e.offset, "offset in " .. tp)
        next_off[tp] = e.offset + 1
    end
end

-- The envelopes of a sample file, decoded (payload parsed as JSON when it is).
local function sample(file)
    local recs = {}
    for i, line in ipairs(lines_of(file)) do
        local e = cjson.decode(line)
        if e.key == cjson.null then e.key = nil end
        e.value = cjson_safe.decode(e.payload)
        e.line = i
        recs[#recs + 1] = e
    end
    return recs
end

local function partition_of(key, n) return n > 1 and h.partition_for(key, n) or 0 end

-- Is a feature in the binary yet? Runs a tiny job; pending only while the
-- error says the feature is missing (any other failure shows in the tests).
local function probe(missing_msg, text)
    local dir = h.tmpdir()
    h.script(dir, "probe.lua", text)
    h.write(dir .. "/in.jsonl", '{"key":"a","payload":"1","ts":1000}\n{"key":"a","payload":"1","ts":90000}\n')
    local code, _, err = h.eddy({ "run", dir .. "/probe.lua", "--input", dir .. "/in.jsonl",
        "--output", "/dev/null", "--state-dir", dir .. "/state", "--no-watch" })
    os.execute("rm -rf " .. h.q(dir))
    return not (code ~= 0 and err:find(missing_msg, 1, true)), err
end

local WINDOWS = probe("are not available yet", [[
local eddy = require "eddy"
local job = eddy.job "probe"
job:source("t"):group_by_key():window(eddy.tumbling { size = "1m" }):count { emit = "final" }
   :to_stream():map_values(tostring):to("o")
return job
]])
local PROCESS = probe("attempt to call method 'process'", [[
local eddy = require "eddy"
local job = eddy.job "probe"
job:source("t"):process { stores = { "s" }, process = function(ctx, k, v, rec)
   ctx:store("s"):put(k, v); ctx:timer(k, rec.ts + 1); ctx:forward(k, v) end,
   on_timer = function(ctx, k, ts) end }:to("o")
return job
]])

---------------------------------------------------------------------------
-- wordcount.lua
---------------------------------------------------------------------------

describe("wordcount.lua", function()
    local lines = lines_of("scripts/data/poems.txt")
    -- words in input order, split independently: runs of ASCII letters, lower-cased
    local words, total = {}, {}
    for _, line in ipairs(lines) do
        for w in line:lower():gmatch("[a-z]+") do
            words[#words + 1] = w
            total[w] = (total[w] or 0) + 1
        end
    end

    -- outputs per word, in output order: each must be 1, 2, ..., n
    local function check_counts(outs, base, nparts)
        assert.are.equal(#words, #outs, "one update per word occurrence")
        local seen = {}
        for _, e in ipairs(outs) do
            assert.are.equal("word-counts", e.topic)
            local w = e.key
            assert.truthy(total[w], "unexpected word " .. tostring(w))
            seen[w] = (seen[w] or 0) + 1
            assert.are.equal(tostring(base[w] + seen[w]), e.payload, "count of " .. w)
            assert.are.equal(partition_of(w, nparts), e.partition, "partition of " .. w)
        end
        for w, n in pairs(total) do assert.are.equal(n, seen[w], "updates for " .. w) end
        assert_dense_offsets(outs)
    end

    it("the sample is a few poems (50-500 lines, 300+ words)", function()
        assert.is_true(#lines >= 50 and #lines <= 500, #lines .. " lines")
        assert.is_true(#words >= 300, #words .. " words")
    end)

    for _, nparts in ipairs { 1, 4 } do
        it(("counts every word, one update per occurrence (%d partition(s))"):format(nparts), function()
            local outs, dlq, code, err = run("scripts/wordcount.lua", "scripts/data/poems.txt",
                { "--input-format", "lines", "--partitions", tostring(nparts) })
            assert.are.equal(0, code, err)
            assert.are.equal(0, #dlq)
            local zero = setmetatable({}, { __index = function() return 0 end })
            check_counts(outs, zero, nparts)
            assert.truthy(err:find(("%d record%%(s%%) in, %d out, 0 error"):format(#lines, #words)), err)
        end)
    end

    it("the counts survive a restart (LMDB under --state-dir) and go on", function()
        local dir = h.tmpdir()
        local extra = { "--input-format", "lines", "--partitions", "2", "--state-dir", dir }
        local outs1, _, code1, err1 = run("scripts/wordcount.lua", "scripts/data/poems.txt", extra)
        assert.are.equal(0, code1, err1)
        local outs2, _, code2, err2 = run("scripts/wordcount.lua", "scripts/data/poems.txt", extra)
        assert.are.equal(0, code2, err2)
        os.execute("rm -rf " .. h.q(dir))
        local zero = setmetatable({}, { __index = function() return 0 end })
        check_counts(outs1, zero, 2)
        check_counts(outs2, total, 2)
    end)

    it("the top words are what scripts/demo.sh shows", function()
        local list = {}
        for w, n in pairs(total) do list[#list + 1] = { w, n } end
        table.sort(list, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
        assert.are.same({ "the", 40 }, list[1])
        assert.are.same({ "and", 25 }, list[2])
    end)
end)

---------------------------------------------------------------------------
-- sessions.lua: session windows, gap 30 min, grace 5 min, emit final
---------------------------------------------------------------------------

local GAP, SGRACE = 30 * 60000, 5 * 60000

-- What sessions.lua should emit, simulated from the contract's rules.
local function expected_sessions(recs, nparts)
    local st = {}                 -- stream time per partition
    local open = {}               -- key -> list of sessions
    local out, stats = {}, { late = 0, nil_keys = 0, bad = 0 }
    local function close(p)
        for key, list in pairs(open) do
            if partition_of(key, nparts) == p then
                for _, s in ipairs(list) do
                    if not s.emitted and st[p] > s.stop + GAP + SGRACE then
                        s.emitted = true
                        local npages = 0
                        for _ in pairs(s.pages) do npages = npages + 1 end
                        out[#out + 1] = { user = key, start = s.start, stop = s.stop,
                            minutes = math.floor((s.stop - s.start) / 6000 + 0.5) / 10,
                            clicks = s.clicks, pages = npages, entry = s.entry, exit = s.exit }
                    end
                end
            end
        end
    end
    for _, r in ipairs(recs) do
        if type(r.value) ~= "table" then
            stats.bad = stats.bad + 1
        elseif r.key == nil then
            stats.nil_keys = stats.nil_keys + 1
        else
            local p = partition_of(r.key, nparts)
            st[p] = math.max(st[p] or r.ts, r.ts)
            local list = open[r.key] or {}
            open[r.key] = list
            local m = { start = r.ts, stop = r.ts, clicks = 1, pages = { [r.value.page] = true },
                entry = r.value.page, exit = r.value.page }
            local keep, merged_any = {}, {}
            for _, s in ipairs(list) do
                if s.start - GAP <= r.ts and r.ts <= s.stop + GAP then
                    merged_any[#merged_any + 1] = s
                else
                    keep[#keep + 1] = s
                end
            end
            for _, s in ipairs(merged_any) do
                if s.start < m.start then m.start, m.entry = s.start, s.entry end
                if s.stop > m.stop then m.stop, m.exit = s.stop, s.exit end
                m.clicks = m.clicks + s.clicks
                for pg in pairs(s.pages) do m.pages[pg] = true end
            end
            -- late: the merged session would already be closed (ends before
            -- st - gap - grace; Kafka Streams 3.x's windowCloseTime)
            if m.stop < st[p] - SGRACE - GAP then
                stats.late = stats.late + 1
            else
                for _, s in ipairs(merged_any) do
                    assert(not s.emitted, "sample data: a click extends an emitted session (" .. r.key .. ")")
                end
                keep[#keep + 1] = m
                open[r.key] = keep
            end
            close(p)
        end
    end
    return out, stats
end

local function session_order(a, b)
    return a.user < b.user or (a.user == b.user and a.start < b.start)
end

describe("sessions.lua", function()
    local recs = sample("scripts/data/clicks_sessions.jsonl")

    it("passes eddy check", function()
        local code, out, err = h.eddy({ "check", path("scripts/sessions.lua") })
        assert.are.equal(0, code, err)
        assert.truthy(out:find("clicks", 1, true) and out:find("user-sessions", 1, true), out)
    end)

    if not WINDOWS then
        pending("sessionizes the sample clicks (waits for windowed aggregations in lua/eddy/window.lua)")
        return
    end

    for _, nparts in ipairs { 1, 3 } do
        it(("emits one summary per finished session (%d partition(s))"):format(nparts), function()
            local want, stats = expected_sessions(recs, nparts)
            local outs, dlq, code, err = run("scripts/sessions.lua", "scripts/data/clicks_sessions.jsonl",
                { "--partitions", tostring(nparts) })
            assert.are.equal(0, code, err)
            assert.are.equal(stats.bad, #dlq, "dead letters")
            local got = {}
            for _, e in ipairs(outs) do
                assert.are.equal("user-sessions", e.topic)
                local v = cjson.decode(e.payload)
                assert.are.equal(v.user, e.key)
                assert.are.equal(partition_of(e.key, nparts), e.partition)
                got[#got + 1] = v
            end
            assert_dense_offsets(outs)
            assert_same_lists(sorted(want, session_order), sorted(got, session_order),
                "sessions (" .. nparts .. " partitions)")
            assert.is_true(#want >= 15, "the sample closes enough sessions: " .. #want)
            assert.are.equal(1, stats.nil_keys)
            if nparts == 1 then assert.are.equal(1, stats.late) end   -- u-late; alone in its partition at 3
        end)
    end

    it("merges across an exact 30 min gap and bridged sessions, splits at 30 min + 1 ms", function()
        local outs, _, code, err = run("scripts/sessions.lua", "scripts/data/clicks_sessions.jsonl")
        assert.are.equal(0, code, err)
        local per = {}
        for _, e in ipairs(outs) do
            local v = cjson.decode(e.payload)
            per[v.user] = per[v.user] or {}
            table.insert(per[v.user], v)
        end
        assert.are.equal(1, #per["u-gap-30m"])
        assert.are.equal(3, per["u-gap-30m"][1].clicks)
        assert.are.equal(32, per["u-gap-30m"][1].minutes)
        assert.are.equal(2, #per["u-gap-30m1ms"])
        assert.are.equal(1, #per["u-bridge"])              -- two sessions joined by a late click
        assert.are.same({ 5, 5, "/", "/checkout", 36 }, { per["u-bridge"][1].clicks,
            per["u-bridge"][1].pages, per["u-bridge"][1].entry, per["u-bridge"][1].exit,
            per["u-bridge"][1].minutes })
        assert.is_nil(per["u-late"])                        -- its only click was too late
    end)
end)

---------------------------------------------------------------------------
-- sensor_alerts.lua: tumbling 1 min averages (grace 10 s, final) and silence
-- alerts from per-key event-time timers (5 min)
---------------------------------------------------------------------------

local MINUTE, TGRACE, SILENCE = 60000, 10000, 5 * 60000

local function round2(x) return math.floor(x * 100 + 0.5) / 100 end

local function expected_averages(recs, nparts)
    local st, wins, out = {}, {}, {}
    local late = 0
    for _, r in ipairs(recs) do
        if type(r.value) == "table" then
            local p = partition_of(r.key, nparts)
            st[p] = math.max(st[p] or r.ts, r.ts)
            local start = r.ts - r.ts % MINUTE
            local id = r.key .. "@" .. start
            if st[p] >= start + MINUTE + TGRACE then
                late = late + 1
            else
                local w = wins[id]
                if not w then
                    w = { key = r.key, p = p, start = start, sum = 0, count = 0 }
                    wins[id] = w
                end
                assert(not w.emitted, "sample data: a reading lands in an emitted window")
                w.sum, w.count = w.sum + r.value.temp_c, w.count + 1
            end
            for _, w in pairs(wins) do
                if w.p == p and not w.emitted and st[p] >= w.start + MINUTE + TGRACE then
                    w.emitted = true
                    out[#out + 1] = { sensor = w.key, minute = w.start,
                        avg_c = round2(w.sum / w.count), readings = w.count }
                end
            end
        end
    end
    return out, late
end

local function expected_alerts(recs, nparts)
    local st, seen, timers, out = {}, {}, {}, {}
    for _, r in ipairs(recs) do
        if type(r.value) == "table" then
            local p = partition_of(r.key, nparts)
            st[p] = math.max(st[p] or r.ts, r.ts)
            -- timers due in this partition, in time order
            table.sort(timers, function(a, b) return a.ts < b.ts end)
            local left = {}
            for _, t in ipairs(timers) do
                if t.p == p and t.ts <= st[p] then
                    local s = seen[t.key]
                    if not s.alerted and s.last + SILENCE <= t.ts then
                        s.alerted = true
                        out[#out + 1] = { sensor = t.key, site = s.site, status = "silent",
                            last_seen = s.last, at = t.ts }
                    end
                else
                    left[#left + 1] = t
                end
            end
            timers = left
            local s = seen[r.key]
            if not (s and r.ts <= s.last) then
                if s and s.alerted then
                    out[#out + 1] = { sensor = r.key, site = r.value.site, status = "back",
                        last_seen = s.last, at = r.ts, silent_s = math.floor((r.ts - s.last) / 1000) }
                end
                seen[r.key] = { last = r.ts, site = r.value.site, alerted = false }
                timers[#timers + 1] = { key = r.key, p = p, ts = r.ts + SILENCE }
            end
        end
    end
    return out
end

describe("sensor_alerts.lua", function()
    local recs = sample("scripts/data/sensor_readings.jsonl")

    if not PROCESS then
        pending("per-minute averages and silence alerts (wait for process{} in lua/eddy/processor.lua)")
        return
    end

    it("passes eddy check", function()
        local code, out, err = h.eddy({ "check", path("scripts/sensor_alerts.lua") })
        assert.are.equal(0, code, err)
        for _, t in ipairs { "sensor-readings", "sensor-averages", "sensor-alerts" } do
            assert.truthy(out:find(t, 1, true), out)
        end
    end)

    if not WINDOWS then
        pending("per-minute averages and silence alerts (wait for windowed aggregations)")
        return
    end

    for _, nparts in ipairs { 1, 2 } do
        local outs, dlq, code, err = run("scripts/sensor_alerts.lua", "scripts/data/sensor_readings.jsonl",
            { "--partitions", tostring(nparts) })
        local topics = by_topic(outs)
        local label = (" (%d partition(s))"):format(nparts)

        it("runs to the end, the garbled reading in the DLQ" .. label, function()
            assert.are.equal(0, code, err)
            assert.are.equal(1, #dlq)
            assert.are.equal("th-02", dlq[1].key)
            assert_dense_offsets(outs)
        end)

        it("emits one average per sensor and closed minute" .. label, function()
            local want, late = expected_averages(recs, nparts)
            if nparts == 1 then assert.are.equal(1, late) end
            local got = {}
            for _, e in ipairs(topics["sensor-averages"] or {}) do
                local v = cjson.decode(e.payload)
                assert.are.equal(v.sensor, e.key)
                assert.are.equal(partition_of(e.key, nparts), e.partition)
                got[#got + 1] = v
            end
            local function order(a, b)
                return a.sensor < b.sensor or (a.sensor == b.sensor and a.minute < b.minute)
            end
            assert.is_true(#want >= 90, #want .. " averages")
            assert_same_lists(sorted(want, order), sorted(got, order), "averages", 0.0051)
        end)

        it("alerts when a sensor is silent for 5 minutes of stream time, and when it is back" .. label, function()
            local want = expected_alerts(recs, nparts)
            local got = {}
            for _, e in ipairs(topics["sensor-alerts"] or {}) do
                local v = cjson.decode(e.payload)
                assert.are.equal(v.sensor, e.key)
                if v.status == "silent" then
                    assert.are.equal(v.at, e.ts, "a silent alert is timestamped by its timer")
                end
                got[#got + 1] = v
            end
            local function order(a, b) return a.sensor < b.sensor or (a.sensor == b.sensor and a.at < b.at) end
            assert_same_lists(sorted(want, order), sorted(got, order), "alerts")
            -- th-04 (7 min gap): silent then back; th-03 (4 min): nothing; th-06 stops: silent
            local what = {}
            for _, a in ipairs(want) do what[#what + 1] = a.sensor .. ":" .. a.status end
            assert.are.same({ "th-04:silent", "th-04:back", "th-06:silent" }, what)
        end)
    end
end)
