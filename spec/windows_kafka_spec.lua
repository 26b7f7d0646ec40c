-- spec/windows_kafka_spec.lua: windowed aggregations in Kafka mode, end to end: one
-- `eddy broker` for the file with pre-created topics, input produced with python3 +
-- confluent_kafka (explicit keys, timestamps and partitions), `eddy run` in the
-- background with its own --app-id and --state-dir, topics read back with kcat.
-- Every expectation comes from a small reference model written here, from the rules in
-- README "Windows" / CONTRACT "Grouped and windowed aggregation" (nothing shared with
-- lua/eddy):
--   1. tumbling count, emit = "final", grace 0, a 3-partition source: stream time per
--      input partition task (a flush of one partition closes only its windows),
--      out-of-order and late records, one final per window; then their order in each
--      output partition (window end, then key bytes);
--   2. session windows (gap, grace), emit = "update", after a group_by through
--      <app>-<store>-repartition: the model replays the repartition topic as read back
--      (its partition tasks own the stream time), last update per session, tombstones
--      for merged-away sessions, the whole update sequence as Kafka Streams forwards it;
--   3. hopping count, emit = "final", SIGTERM while input flows, restart with the same
--      --state-dir and app id: the finals of an uninterrupted run, none twice.
local h = require "helper"
local k = require "kafka_helper"
local R = require "tools.agg_ref"

local TS0 = 1700000000000          -- a multiple of every window size used here
local FAR = TS0 + 100000000        -- the flush records' time: closes every window

local TOPICS = {
    { "wk-t-in", 3 }, { "wk-t-out", 3 },
    { "wk-s-in", 3 }, { "wk-s-out", 1 }, { "wk-sess-sess-repartition", 3 },
    { "wk-r-in", 2 }, { "wk-r-out", 2 },
    { "wk-e-in", 2 }, { "wk-e-out", 2 },
}

-- the job's summary line: "N record(s) in, M out, E error(s), D dead-lettered"
local function summary(stderr)
    local i, o, e, d = stderr:match("(%d+) record%(s%) in, (%d+) out, (%d+) error%(s%), (%d+) dead%-lettered")
    if not i then return nil end
    return { inn = tonumber(i), out = tonumber(o), errors = tonumber(e), dlq = tonumber(d) }
end

-- poll a topic until it holds at least n records or `timeout` passes; returns what it
-- holds either way (the comparison then names what is missing, not just "timed out")
local function settle(B, topic, n, timeout, proc)
    local deadline = k.now() + timeout
    local recs
    while true do
        if proc and not proc:running() then
            error(("%s exited %s:\n%s"):format(proc.name, tostring(proc:rc()), proc:stderr()), 0)
        end
        recs = k.consume(B, topic)
        if #recs >= n or k.now() >= deadline then break end
        k.sleep(0.2)
    end
    k.sleep(0.8)                       -- anything extra (a duplicate) shows up now
    return k.sort_by_offset(k.consume(B, topic))
end

-- a key that murmur2 puts in partition p of n
local function key_for_partition(prefix, p, n)
    for i = 0, 10000 do
        local key = prefix .. i
        if h.partition_for(key, n) == p then return key end
    end
    error("no key for partition " .. p)
end

-- A seeded generator on tools.agg_ref's LCG, drawing from its high bits: agg_ref's own
-- int()/pick() take `next() % n`, the low bits, whose period is tiny (R.rng(77) picking
-- 1 of 12 keys 600 times gives only keys 1, 5 and 9).
local function rng(seed)
    local base = R.rng(seed)
    local g = {}
    function g.int(lo, hi) return lo + math.floor(base.next() / 2147483648 * (hi - lo + 1)) end
    function g.pick(list) return list[g.int(1, #list)] end
    function g.chance(p) return base.next() / 2147483648 < p end
    return g
end

local function first_lines(list, n)
    local t = {}
    for i = 1, math.min(#list, n) do t[i] = list[i] end
    if #list > n then t[#t + 1] = ("... %d more"):format(#list - n) end
    return table.concat(t, "\n  ")
end

---------------------------------------------------------------------------------------------
-- Reference model for time windows (tumbling, hopping): per task, stream time is the
-- largest timestamp seen, the current record included; a record updates every window
-- [s, s + size) holding it (s a multiple of advance, s >= 0) that is still open
-- (stop + grace > stream time), and is late for the others. Returns the windows by
-- "key|start|stop" ({ key, s, e, task, n, ts = largest on-time timestamp }), the final
-- stream time per task and the number of (record, window) pairs dropped as late.
local function model_time(records, size, advance, grace)
    local st, wins, late = {}, {}, 0
    for _, r in ipairs(records) do
        local t = r.partition
        st[t] = math.max(st[t] or -math.huge, r.ts)
        local s = r.ts - r.ts % advance
        local starts = {}
        while s >= 0 and s > r.ts - size do table.insert(starts, 1, s); s = s - advance end
        for _, ws in ipairs(starts) do
            local we = ws + size
            if we + grace <= st[t] then
                late = late + 1
            else
                local id = r.key .. "|" .. ws .. "|" .. we
                local w = wins[id]
                if not w then w = { key = r.key, s = ws, e = we, task = t, n = 0, ts = -1 }; wins[id] = w end
                w.n = w.n + 1
                w.ts = math.max(w.ts, r.ts)
            end
        end
    end
    return wins, st, late
end

-- the finals an emit = "final" job must have written: every window whose task's stream
-- time has reached stop + grace
local function closed_windows(wins, st, grace)
    local t = {}
    for id, w in pairs(wins) do
        if st[w.task] and w.e + grace <= st[w.task] then t[id] = w end
    end
    return t
end

local function count_of(t) local n = 0; for _ in pairs(t) do n = n + 1 end; return n end

-- Compare finals written as "n|start|stop" with the expected windows: each exactly once,
-- same count, timestamp = the window's largest on-time timestamp. Returns a list of
-- problems (empty when equal).
local function diff_finals(out, want)
    local problems, seen = {}, {}
    for _, r in ipairs(out) do
        local n, s, e = (r.payload or ""):match("^(%d+)|(%-?%d+)|(%-?%d+)$")
        local id = tostring(r.key) .. "|" .. tostring(s) .. "|" .. tostring(e)
        if not n then
            problems[#problems + 1] = ("unexpected payload %q for key %q"):format(tostring(r.payload), tostring(r.key))
        elseif seen[id] then
            problems[#problems + 1] = ("window %s: final twice (%s then %s)"):format(id, seen[id], n)
        else
            seen[id] = n
            local w = want[id]
            if not w then
                problems[#problems + 1] = ("window %s: final %s, expected none (late records counted, or not closed yet)"):format(id, n)
            else
                if tonumber(n) ~= w.n then
                    problems[#problems + 1] = ("window %s: count %s, expected %d"):format(id, n, w.n)
                end
                if r.ts ~= w.ts then
                    problems[#problems + 1] = ("window %s: ts %s, expected %d"):format(id, tostring(r.ts), w.ts)
                end
            end
        end
    end
    local missing = {}
    for id, w in pairs(want) do
        if not seen[id] then missing[#missing + 1] = ("window %s: no final, expected count %d"):format(id, w.n) end
    end
    table.sort(missing)
    for _, m in ipairs(missing) do problems[#problems + 1] = m end
    return problems
end

---------------------------------------------------------------------------------------------
-- Reference model for session windows, over the records of each repartition partition in
-- offset order (each such partition is a task with its own stream time). A record merges
-- every session of its key within gap of it that is not closed (closed: end < stream
-- time − gap − grace); the merged session is late when it ends before stream time − gap −
-- grace. Forwarding as KStreamSessionWindowAggregate does (emit = "update"): when the
-- merged session differs from [ts, ts], a tombstone for each merged session, in session
-- store order (end, then start), with its own end as timestamp; then the merged
-- session's value with its end as timestamp.
-- recs: { key, ts, partition, id }. Returns the expected outputs in order
-- ({ key, s, e, ids = "1,5,9" or nil, ts }), the last value per "key|s|e" (false: a
-- tombstone), and how many records were late / sessions merged.
local function model_sessions(recs, gap, grace)
    local st, live, out, last = {}, {}, {}, {}
    local stats = { late = 0, merged = 0, extended = 0 }
    for _, r in ipairs(recs) do
        local p, u, ts = r.partition, r.key, r.ts
        st[p] = math.max(st[p] or -math.huge, ts)
        local close = st[p] - gap - grace
        local found, keep = {}, {}
        for _, x in ipairs(live[u] or {}) do
            if x.e >= close and x.e >= ts - gap and x.s <= ts + gap then found[#found + 1] = x
            elseif x.e >= close then keep[#keep + 1] = x end
        end
        local s, e = ts, ts
        for _, x in ipairs(found) do s = math.min(s, x.s); e = math.max(e, x.e) end
        if e < close then
            stats.late = stats.late + 1
        else
            table.sort(found, function(a, b) if a.e ~= b.e then return a.e < b.e end return a.s < b.s end)
            local ids = { r.id }
            for _, x in ipairs(found) do
                if not (s == ts and e == ts) then
                    out[#out + 1] = { key = u, s = x.s, e = x.e, ids = nil, ts = x.e }
                    last[u .. "|" .. x.s .. "|" .. x.e] = false
                end
                if #found > 1 then stats.merged = stats.merged + 1 end
                if s < x.s or e > x.e then stats.extended = stats.extended + 1 end
                for _, id in ipairs(x.ids) do ids[#ids + 1] = id end
            end
            table.sort(ids)
            keep[#keep + 1] = { s = s, e = e, ids = ids }
            local text = table.concat(ids, ",")
            out[#out + 1] = { key = u, s = s, e = e, ids = text, ts = e }
            last[u .. "|" .. s .. "|" .. e] = text
        end
        live[u] = keep
    end
    return out, last, stats
end

---------------------------------------------------------------------------------------------
describe("windowed aggregation in Kafka mode", function()
    local dir, broker, B
    local procs = {}

    local function start(name, script_path, app_id)
        local p = k.start_eddy(dir, name, script_path, B, { "--app-id", app_id, "--commit-interval", "300" })
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

    -----------------------------------------------------------------------------------------
    local tumbling = {}

    it("tumbling count, emit final, grace 0, 3 partitions: one final per window, stream time per partition task", function()
        local job = h.script(dir, "tumbling.lua", [[
local eddy = require "eddy"
local job = eddy.job { name = "wk-tumbling" }
job:source("wk-t-in")
   :group_by_key()
   :window(eddy.tumbling { size = "2s" })
   :count { store = "tc", emit = "final" }
   :to_stream()
   :map_values(function(v, k, rec) return tostring(v) .. "|" .. rec.window.start .. "|" .. rec.window.stop end)
   :to("wk-t-out")
return job
]])
        local SIZE, P = 2000, 3
        local g = rng(77)
        local keys = R.key_pool(12)
        local cursor, stp, input = TS0, {}, {}
        local disorder = 0
        for i = 1, 600 do
            cursor = cursor + g.int(0, 60)
            local key = g.pick(keys)
            local p = h.partition_for(key, P)
            local ts = cursor
            local roll = g.int(1, 100)
            if stp[p] and roll <= 12 then ts = stp[p] - g.int(1, 500); disorder = disorder + 1      -- out of order
            elseif stp[p] and roll <= 18 then ts = stp[p] - g.int(2000, 6000); disorder = disorder + 1   -- late
            end
            stp[p] = math.max(stp[p] or 0, ts)
            input[#input + 1] = { topic = "wk-t-in", key = key, value = "v" .. i, ts = ts, partition = p }
        end
        local flush = {}
        for p = 0, P - 1 do      -- one far-future record per partition closes its windows
            flush[p] = { topic = "wk-t-in", key = key_for_partition("flush-", p, P), value = "flush",
                ts = FAR, partition = p }
        end
        local wins, st, late = model_time(input, SIZE, SIZE, 0)
        -- the input exercises what it should: late records, and out-of-order ones on time
        assert.is_true(late > 10, "late records in the input: " .. late)
        assert.is_true(disorder - late > 20, "out-of-order records on time: " .. (disorder - late))

        -- three steps: the input, then the flush of partition 0 alone (the other tasks'
        -- windows stay open: their stream time has not moved), then the other two
        local p = start("tumbling", job, "wk-tumbling")
        local steps = { { what = "the input", recs = input }, { what = "partition 0's flush", recs = { flush[0] } },
            { what = "the flush of partitions 1 and 2", recs = { flush[1], flush[2] } } }
        local all, out, want, nwant = {}, nil, nil, nil
        for _, step in ipairs(steps) do
            for _, r in ipairs(step.recs) do all[#all + 1] = r end
            wins, st = model_time(all, SIZE, SIZE, 0)
            want = closed_windows(wins, st, 0)
            nwant = count_of(want)
            k.produce(B, step.recs, dir)
            out = settle(B, "wk-t-out", nwant, 20, p)
            local problems = diff_finals(out, want)
            assert(#problems == 0, ("after %s: %d final(s) out, %d expected; %d problem(s):\n  %s"):format(step.what,
                #out, nwant, #problems, first_lines(problems, 15)))
        end
        input = all
        tumbling.out = out

        local rc = p:stop("TERM", 10)
        assert.are.equal(0, rc, p:stderr())
        assert.are.same({ inn = #input, out = nwant, errors = 0, dlq = 0 }, summary(p:stderr()))
    end)

    it("tumbling finals: in window-end then key order (key bytes, as Kafka Streams' suppress buffer), in murmur2(key)'s partition", function()
        local out = assert(tumbling.out, "the previous test did not get as far as the outputs")
        -- each output partition holds the finals of one task (same key, same murmur2): in
        -- window-end then key order, and where murmur2 puts the key
        local order = {}
        local prev = {}
        for _, r in ipairs(out) do
            assert.are.equal(h.partition_for(r.key, 3), r.partition, "output partition of " .. r.key)
            local e = tonumber(r.payload:match("|(%-?%d+)$"))
            local q = prev[r.partition]
            if q and (e < q.e or (e == q.e and r.key < q.key)) then
                order[#order + 1] = ("partition %d: %q@%d after %q@%d"):format(r.partition, r.key:sub(1, 24), e,
                    q.key:sub(1, 24), q.e)
            end
            prev[r.partition] = { e = e, key = r.key }
        end
        assert(#order == 0, ("%d final(s) out of (window end, key bytes) order:\n  %s"):format(#order,
            first_lines(order, 10)))
    end)

    -----------------------------------------------------------------------------------------
    -- case 2 runs once, then its two checks are separate tests (so each shows on its own)
    local sess = {}

    it("session windows after a group_by (repartition), emit update: last update per session, tombstones for merged-away sessions", function()
        local job = h.script(dir, "sessions.lua", [[
local eddy = require "eddy"
local job = eddy.job { name = "wk-sess" }
job:source("wk-s-in")
   :group_by(function(k, v) return (v:match("^(.-):")) end)
   :window(eddy.session { gap = 300, grace = "8s" })
   :reduce(function(a, b) return a .. "," .. b end, { store = "sess" })
   :to_stream()
   :map(function(k, v, rec)
       local key = k .. "|" .. rec.window.start .. "|" .. rec.window.stop
       if v == nil then return key, nil end
       local ids = {}
       for id in v:gmatch(":(%d+)") do ids[#ids + 1] = tonumber(id) end
       table.sort(ids)
       return key, table.concat(ids, ",")
   end)
   :to("wk-s-out")
return job
]])
        -- grace covers most of the disorder the repartition brings (records of the three
        -- source tasks reach a repartition partition up to ~1 s of wall time, ~12 s of
        -- event time, apart), so sessions merge; a few records are far behind (late)
        local GAP, GRACE = 300, 8000
        local RP = "wk-sess-sess-repartition"
        local g = rng(4242)
        local users = { "u1", "u2", "u3", "u4", "a b", "ключ" }
        local cursor, input, used, lastu = TS0, {}, {}, {}
        for i = 1, 500 do
            cursor = cursor + (g.chance(0.1) and g.int(200, 500) or g.int(0, 30))
            local u = g.pick(users)
            local ts = cursor
            -- a quarter behind the user's latest record: they fill gaps (sessions merge),
            -- land in closed sessions (late) or extend sessions backwards
            if lastu[u] and g.chance(0.25) then ts = lastu[u] - g.int(1, 600)
            elseif lastu[u] and g.chance(0.03) then ts = lastu[u] - g.int(30000, 40000)
            else lastu[u] = ts end
            -- (user, ts) unique, so a repartition record names its input record
            while used[u .. "|" .. ts] do ts = ts + 1 end
            used[u .. "|" .. ts] = i
            local src = "src-" .. g.int(1, 40)
            input[i] = { topic = "wk-s-in", key = src, value = u .. ":" .. i, ts = ts,
                partition = h.partition_for(src, 3) }
        end
        -- the job runs while the input flows (as it would in production): a record of
        -- its own first, whose update shows the job has joined, then the rest at about
        -- 250 records/s. How the three source tasks' records interleave in the
        -- repartition topic varies from run to run; the model replays it as read back.
        local warm = { topic = "wk-s-in", key = "src-0", value = "warm:501", ts = TS0, partition = h.partition_for("src-0", 3) }
        used["warm|" .. TS0] = 501
        local p = start("sessions", job, "wk-sess")
        sess.proc = p
        k.produce(B, { warm }, dir)
        k.wait_records(B, "wk-s-out", 1, 20, p)
        local producer = k.produce_async(B, input, dir, "sessions-producer", 250)
        procs[#procs + 1] = producer
        k.produced(producer, 20)
        input[#input + 1] = warm

        -- the repartition topic as read back: every input record once, re-keyed, with its
        -- timestamp, in partition murmur2(user) % 3
        local rp = k.sort_by_offset(k.wait_records(B, RP, #input, 25, p))
        assert.are.equal(#input, #rp, "records in " .. RP)
        local reps, seen = {}, {}
        for _, r in ipairs(rp) do
            local id = used[tostring(r.key) .. "|" .. tostring(r.ts)]
            assert(id, ("%s: record key %q ts %s matches no input record"):format(RP, tostring(r.key), tostring(r.ts)))
            assert(not seen[id], RP .. ": input record " .. id .. " twice")
            seen[id] = true
            assert.are.equal(h.partition_for(r.key, 3), r.partition, RP .. ": partition of " .. r.key)
            reps[#reps + 1] = { key = r.key, ts = r.ts, partition = r.partition, id = id }
        end

        local want, last, stats = model_sessions(reps, GAP, GRACE)
        sess.want = want
        -- the input exercises what it should (the order in the repartition topic varies
        -- from run to run, so these are loose)
        assert.is_true(stats.late > 3, "late records: " .. stats.late)
        assert.is_true(stats.merged > 3, "sessions merged: " .. stats.merged)

        local out = settle(B, "wk-s-out", #want, 20, p)
        sess.out = out
        local got = {}
        for _, r in ipairs(out) do
            if r.payload == nil then got[r.key] = false else got[r.key] = r.payload end
        end
        local problems = {}
        for id, v in pairs(last) do
            if got[id] == nil then
                problems[#problems + 1] = ("session %s: no output, expected last %s"):format(id, v or "tombstone")
            elseif got[id] ~= v then
                problems[#problems + 1] = ("session %s: last %s, expected %s"):format(id,
                    got[id] or "tombstone", v or "tombstone")
            end
        end
        for id, v in pairs(got) do
            if last[id] == nil then
                problems[#problems + 1] = ("session %s: output %s, expected no such session"):format(id, v or "tombstone")
            end
        end
        table.sort(problems)
        assert(#problems == 0, ("%d problem(s) (outputs %d, expected %d):\n  %s"):format(#problems, #out, #want,
            first_lines(problems, 15)))
    end)

    it("session windows after a repartition: the whole update sequence per key as Kafka Streams forwards it", function()
        assert(sess.want and sess.out, "the previous test did not get as far as the outputs")
        local function split(r)
            local u, s, e = r.key:match("^(.*)|(%-?%d+)|(%-?%d+)$")
            return u, s, e
        end
        local gotk, wantk = {}, {}
        for _, r in ipairs(sess.out) do
            local u, s, e = split(r)
            gotk[u] = gotk[u] or {}
            table.insert(gotk[u], ("[%s,%s] %s @%d"):format(s, e, r.payload or "tombstone", r.ts))
        end
        for _, w in ipairs(sess.want) do
            wantk[w.key] = wantk[w.key] or {}
            table.insert(wantk[w.key], ("[%d,%d] %s @%d"):format(w.s, w.e, w.ids or "tombstone", w.ts))
        end
        local problems = {}
        for u, wl in pairs(wantk) do
            local gl = gotk[u] or {}
            for i = 1, math.max(#wl, #gl) do
                if wl[i] ~= gl[i] then
                    local ctx = {}
                    for j = math.max(1, i - 3), math.min(math.max(#wl, #gl), i + 3) do
                        ctx[#ctx + 1] = ("   #%d got %-40s expected %s"):format(j, gl[j] or "-", wl[j] or "-")
                    end
                    problems[#problems + 1] = ("key %q: first difference at update #%d of %d (expected %d):\n%s")
                        :format(u, i, #gl, #wl, table.concat(ctx, "\n"))
                    break
                end
            end
        end
        table.sort(problems)
        assert(#problems == 0, table.concat(problems, "\n"))
        local p = sess.proc
        local rc = p:stop("TERM", 10)
        assert.are.equal(0, rc, p:stderr())
        local sm = summary(p:stderr())
        assert.are.same({ inn = 1002, out = 501 + #sess.want, errors = 0, dlq = 0 }, sm,
            "501 inputs and their repartition records in; repartition records and updates out")
    end)

    -----------------------------------------------------------------------------------------
    it("hopping count, emit final: SIGTERM while input flows, restart with the same --state-dir and app id", function()
        local job = h.script(dir, "restart.lua", [[
local eddy = require "eddy"
local job = eddy.job { name = "wk-restart" }
job:source("wk-r-in")
   :group_by_key()
   :window(eddy.hopping { size = "2s", advance = "1s", grace = "500ms" })
   :count { store = "hc", emit = "final" }
   :to_stream()
   :map_values(function(v, k, rec) return tostring(v) .. "|" .. rec.window.start .. "|" .. rec.window.stop end)
   :to("wk-r-out")
return job
]])
        local SIZE, ADV, GRACE, P = 2000, 1000, 500, 2
        local g = rng(9001)
        local keys = R.key_pool(8)
        local cursor, stp, all = TS0, {}, {}
        local function batch(n, late_first)
            local list = {}
            if late_first then   -- late against the stream time reached before (it must survive)
                for p = 0, P - 1 do
                    for _, key in ipairs(keys) do
                        if h.partition_for(key, P) == p then
                            list[#list + 1] = { topic = "wk-r-in", key = key, value = "late", partition = p,
                                ts = stp[p] - 4000 }
                        end
                    end
                end
            end
            for _ = 1, n do
                cursor = cursor + g.int(0, 40)
                local key = g.pick(keys)
                local p = h.partition_for(key, P)
                local ts = cursor
                if stp[p] and g.chance(0.15) then ts = stp[p] - g.int(1, 3500) end
                stp[p] = math.max(stp[p] or 0, ts)
                list[#list + 1] = { topic = "wk-r-in", key = key, value = "x", ts = ts, partition = p }
            end
            for _, r in ipairs(list) do all[#all + 1] = r end
            return list
        end

        -- A: before the first start; the first run must write exactly the finals A closes
        local A = batch(250)
        k.produce(B, A, dir)
        local wa, sta = model_time(all, SIZE, ADV, GRACE)
        local want_a = closed_windows(wa, sta, GRACE)
        local p1 = start("restart1", job, "wk-restart")
        local out = settle(B, "wk-r-out", count_of(want_a), 20, p1)
        local problems = diff_finals(out, want_a)
        assert(#problems == 0, ("after A: %d final(s), %d expected:\n  %s"):format(#out, count_of(want_a),
            first_lines(problems, 15)))

        -- B flows while the job is stopped with SIGTERM and started again
        local Bl = batch(300)
        local producer = k.produce_async(B, Bl, dir, "restart-producer", 300)   -- about 1 s
        procs[#procs + 1] = producer
        k.sleep(0.4)
        local rc = p1:stop("TERM", 10)
        assert.are.equal(0, rc, p1:stderr())
        assert.is_true(producer:running(), "the input should still be flowing at the stop")
        local p2 = start("restart2", job, "wk-restart")
        k.produced(producer, 20)

        -- C: first records late against the stream time before the stop, then more, then a
        -- far-future record per partition that closes every window
        local C = batch(150, true)
        for p = 0, P - 1 do
            local fl = { topic = "wk-r-in", key = key_for_partition("flush-", p, P), value = "flush", ts = FAR, partition = p }
            C[#C + 1] = fl
            all[#all + 1] = fl
        end
        k.produce(B, C, dir)
        local wins, st, late = model_time(all, SIZE, ADV, GRACE)
        assert.is_true(late > 20, "late (record, window) pairs: " .. late)
        local want = closed_windows(wins, st, GRACE)
        out = settle(B, "wk-r-out", count_of(want), 25, p2)
        problems = diff_finals(out, want)
        assert(#problems == 0, ("%d final(s) out, %d expected; %d problem(s):\n  %s"):format(#out, count_of(want),
            #problems, first_lines(problems, 15)))

        rc = p2:stop("TERM", 10)
        assert.are.equal(0, rc, p2:stderr())
        local s1, s2 = summary(p1:stderr()), summary(p2:stderr())
        assert.are.equal(#all, s1.inn + s2.inn, ("records in: %d before the stop + %d after, %d produced")
            :format(s1.inn, s2.inn, #all))
        assert.are.equal(count_of(want), s1.out + s2.out, "finals written by both runs")
    end)

    it("tumbling count, emit final: a restart on an EMPTY --state-dir restores the open windows and still closes them (the index is rebuilt, not logged)", function()
        local job = h.script(dir, "empty.lua", [[
local eddy = require "eddy"
local job = eddy.job { name = "wk-empty" }
job:source("wk-e-in")
   :group_by_key()
   :window(eddy.tumbling { size = "2s" })
   :count { store = "tc", emit = "final" }
   :to_stream()
   :map_values(function(v, k, rec) return tostring(v) .. "|" .. rec.window.start .. "|" .. rec.window.stop end)
   :to("wk-e-out")
return job
]])
        local SIZE, P = 2000, 2
        local g = rng(4242)
        local keys = R.key_pool(6)
        local all, cursor = {}, TS0
        for _ = 1, 300 do
            cursor = cursor + g.int(0, 25)
            local key = g.pick(keys)
            all[#all + 1] = { topic = "wk-e-in", key = key, value = "x", ts = cursor, partition = h.partition_for(key, P) }
        end
        k.produce(B, all, dir)
        local wa, sta = model_time(all, SIZE, SIZE, 0)
        local want_a = closed_windows(wa, sta, 0)
        local p1 = start("empty1", job, "wk-empty")
        local out = settle(B, "wk-e-out", count_of(want_a), 20, p1)
        assert.are.same({}, diff_finals(out, want_a))
        k.sleep(1)                                      -- a commit interval (300 ms) or more
        assert.are.equal(0, p1:stop("TERM", 10), p1:stderr())
        -- the second run starts from nothing but the changelogs
        local p2 = k.start_eddy(dir, "empty2", job, B, { "--app-id", "wk-empty", "--commit-interval", "300",
            "--state-dir", dir .. "/state-empty" })
        procs[#procs + 1] = p2
        local flush = {}
        for p = 0, P - 1 do
            flush[#flush + 1] = { topic = "wk-e-in", key = key_for_partition("flush-", p, P), value = "flush",
                ts = FAR, partition = p }
            all[#all + 1] = flush[#flush]
        end
        k.produce(B, flush, dir)
        local wins, st = model_time(all, SIZE, SIZE, 0)
        local want = closed_windows(wins, st, 0)
        assert.is_true(count_of(want) > count_of(want_a) + 3, "windows left open for the second run")
        out = settle(B, "wk-e-out", count_of(want), 25, p2)
        local problems = diff_finals(out, want)
        assert(#problems == 0, ("%d final(s) out, %d expected; %d problem(s):\n  %s"):format(#out, count_of(want),
            #problems, first_lines(problems, 15)))
        assert.is_truthy(p2:stderr():find("restored", 1, true), p2:stderr())
    end)
end)
