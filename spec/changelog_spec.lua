-- spec/changelog_spec.lua: changelogs, restore and the delivery guarantees, end to end
-- (README "Kafka mode and delivery"). Real processes only: one `eddy broker` for the
-- file (with a --control FIFO for fault injection), `eddy run` instances started,
-- stopped (SIGTERM), killed (SIGKILL), paused (SIGSTOP/SIGCONT) and restarted with
-- fresh state dirs; input produced with python3 + confluent_kafka (spec/tools) or
-- kcat; topics read back with kcat; stores dumped with `eddy stores`.
--
-- Every test has its own app id and topics. The job is a count per key with no
-- repartition (the source is keyed; group_by_key straight after the source), so task
-- 0_P owns the keys of input partition P, and so do partition P of its changelogs:
--   <app>-counts-changelog    the store's changes (key: the store key, value: the
--                             aggregate, as eddy stores it: a tag byte then LuaJIT's
--                             string.buffer encoding of {count, ts})
--   <app>-__task-0-changelog  stream time and the commit markers (key "eddy.commit",
--                             header eddy.commit, value "seq=N offsets=... families=...")
-- Expectations are computed here: the reference count per key is the number of input
-- records with that key (every record has a key and a value); the partition of a key is
-- Kafka's murmur2 (spec/helper.lua, independent of eddy's C code).
--
-- The development broker writes no transaction markers and drops offsets sent in a
-- transaction, so under exactly_once duplicates in the outputs cannot be excluded after
-- an abort: those tests assert the last value per key.
--
-- Tests:
--   1. changelog topics and their contents: names, keys on the task's partition, last
--      values, commit markers (format, seq increasing, offsets at the input's end)
--   2. restore to an empty state dir gives the same store (eddy stores, before/after)
--   3. records after the last marker (a crash mid-commit) are not applied, and are
--      overwritten with the true values at the next commit (a later replay is right)
--   4. SIGKILL mid-stream, restart with an empty state dir (at_least_once): exact
--   5. exactly_once: the transactional id, exact results, file mode refuses it, an
--      injected Produce failure aborts the transaction and rewinds, the id is stable
--      across restarts with the same state dir and differs with another
--   6. --threads 2: two workers, disjoint partitions, exact results, SIGTERM to the
--      parent stops both; bad --threads values; exactly_once ids -w1/-w2 per worker
--
-- CHANGELOG_KEEP=1 keeps the temporary directory (logs, state dirs) and prints its path.
local cjson = require "cjson"
local h = require "helper"
local k = require "kafka_helper"

local q = h.q
local P = 4                        -- partitions of every topic
local TS0 = 1700000000000
local COMMIT_MS = "200"

-- The keys: plain ones and a few awkward ones; every partition gets several.
local KEYS = {}
for i = 1, 20 do KEYS[i] = ("k%02d"):format(i) end
for _, odd in ipairs({ "a b", 'quo"te', "ключ", "x:y/z" }) do KEYS[#KEYS + 1] = odd end
do
    local per = {}
    for _, key in ipairs(KEYS) do
        local p = h.partition_for(key, P)
        per[p] = (per[p] or 0) + 1
    end
    for p = 0, P - 1 do assert((per[p] or 0) >= 2, "key pool: partition " .. p .. " has too few keys") end
end

local APPS = { "cl-names", "cl-restore", "cl-orphans", "cl-kill", "cl-eos", "cl-eos-abort",
    "cl-eos-id", "cl-thr", "cl-thr-eos", "cl-thr-eos-id" }

local function count_of(t) local n = 0; for _ in pairs(t) do n = n + 1 end; return n end

local function sorted_keys(t)
    local l = {}
    for key in pairs(t) do l[#l + 1] = key end
    table.sort(l)
    return l
end

-- ---------------------------------------------------------------- processes

local function alive(pid)
    return k.sh("kill -0 " .. pid .. " 2>/dev/null") == 0
end

local function tail(s, n)
    n = n or 2500
    return #s > n and ("..." .. s:sub(-n)) or s
end

local function check_alive(p)
    if not p:running() then
        error(("%s exited %s on its own:\n%s"):format(p.name, tostring(p:rc()), tail(p:stderr())), 0)
    end
end

-- ---------------------------------------------------------------- decoding

-- The store key of a changelog record's key: eddy tags store keys with one byte "="
-- (so that "" is a key); a bare key is accepted too.
local function store_key(raw)
    if raw and raw:sub(1, 1) == "=" then return raw:sub(2) end
    return raw
end

-- The count in a changelog value: a tag byte ("v" plain, "t" + 8 bytes of expiry),
-- then string.buffer's encoding of the aggregate {count, ts}. nil when it does not
-- decode (or for a tombstone).
local function decode_count(payload)
    if payload == nil then return nil end
    local ok, buffer = pcall(require, "string.buffer")
    assert(ok, "these specs run under LuaJIT (luajit /usr/bin/busted): string.buffer is needed")
    local tag = payload:sub(1, 1)
    local body = tag == "t" and payload:sub(10) or payload:sub(2)
    local dok, v = pcall(buffer.decode, body)
    if not dok then return nil end
    if type(v) == "table" then return v[1] end
    return v
end

-- "a@1,b@2" -> { a = 1, b = 2 }
local function at_list(s)
    local t = {}
    for item in (s or ""):gmatch("[^,]+") do
        local name, n = item:match("^(.*)@(%d+)$")
        assert(name, "bad list item " .. item .. " in " .. s)
        t[name] = tonumber(n)
    end
    return t
end

local function parse_marker(v)
    local seq, offsets, families = v:match("^seq=(%d+) offsets=(.-) families=(.*)$")
    return { seq = tonumber(seq), offsets = at_list(offsets), families = at_list(families), raw = v }
end

---------------------------------------------------------------------------------------------
describe("changelogs, restore and delivery guarantees", function()
    local dir, broker, B, ctl
    local procs = {}

    lazy_setup(function()
        dir = h.tmpdir()
        ctl = dir .. "/control"
        local list = {}
        for _, app in ipairs(APPS) do
            list[#list + 1] = app .. "-in"
            list[#list + 1] = app .. "-out"
            if app ~= "cl-names" then   -- test 1 checks that eddy creates them itself
                list[#list + 1] = app .. "-counts-changelog"
                list[#list + 1] = app .. "-__task-0-changelog"
            end
        end
        local topics = {}
        for i, t in ipairs(list) do topics[i] = { t, P } end
        -- the broker serves the whole file: a longer cap than kafka_helper's default
        broker, B = k.start_broker(dir, topics, { args = { "--control", ctl }, cap = 600, timeout = 20 })
    end)

    lazy_teardown(function()
        for _, p in ipairs(procs) do p:reap() end
        if broker then broker:reap() end
        if dir then
            if os.getenv("CHANGELOG_KEEP") == "1" then io.stderr:write("changelog_spec: kept " .. dir .. "\n")
            else os.execute("rm -rf " .. q(dir)) end
        end
    end)

    after_each(function()
        for _, p in ipairs(procs) do p:reap() end
        procs = {}
        assert.is_true(broker ~= nil and broker:running(),
            "the broker died:\n" .. (broker and broker:stderr() or ""))
    end)

    -- ------------------------------------------------------------ helpers

    local function job_script(app)
        return h.script(dir, app .. ".lua", ([[
local eddy = require "eddy"
local job = eddy.job { name = %q }
job:source(%q)
   :group_by_key()
   :count { store = "counts" }
   :to_stream()
   :to(%q, { value = "number" })
return job
]]):format(app, app .. "-in", app .. "-out"))
    end

    -- n input records for app (counted into ref), keys cycling through KEYS
    local function gen(app, n, ref, from)
        local recs = {}
        for i = 1, n do
            local j = (from or 0) + i
            local key = KEYS[(j * 7) % #KEYS + 1]
            recs[i] = { topic = app .. "-in", key = key, value = "v" .. j, ts = TS0 + j,
                partition = h.partition_for(key, P) }
            ref[key] = (ref[key] or 0) + 1
        end
        return recs
    end

    local function start(name, app, script, sd, extra)
        local argv = { h.EDDY, "run", script, "--brokers", B, "--app-id", app, "--state-dir", sd,
            "--commit-interval", COMMIT_MS, "--no-watch" }
        for _, a in ipairs(k.FAST_GROUP) do argv[#argv + 1] = a end
        for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
        local p = k.spawn(dir, name, argv)
        procs[#procs + 1] = p
        return p
    end

    local function stop_ok(p, timeout)
        local rc = p:stop("TERM", timeout or 15)
        assert.are.equal(0, rc, ("%s: SIGTERM: exit %s\n%s"):format(p.name, tostring(rc), tail(p:stderr())))
    end

    -- `eddy ARGS` bounded by `timeout`: rc, stdout, stderr
    local function run_eddy(args, secs)
        local out, err = dir .. "/cmd.out", dir .. "/cmd.err"
        local parts = { "timeout -k 2", tostring(secs or 20), q(h.EDDY) }
        for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
        local rc = k.sh(table.concat(parts, " ") .. " < /dev/null > " .. q(out) .. " 2> " .. q(err))
        return rc, h.read(out) or "", h.read(err) or ""
    end

    -- every topic of the cluster (a listing that names no topic creates none)
    local function topic_names()
        local s = k.capture(("timeout 10 %s -L -J -b %s 2>/dev/null"):format(k.KCAT, q(B)))
        local ok, md = pcall(cjson.decode, s)
        assert(ok and type(md) == "table", "kcat -L -J: " .. s)
        local names = {}
        for _, t in ipairs(md.topics or {}) do names[t.topic] = #t.partitions end
        return names
    end

    -- the last output value per key (a key lives in one partition; offset order)
    local function last_values(topic)
        local last = {}
        for _, r in ipairs(k.sort_by_offset(k.consume(B, topic))) do last[r.key] = tonumber(r.payload) end
        return last
    end

    -- differences between a key -> number table and the reference (nil when equal)
    local function diff(ref, got, what)
        local problems = {}
        for _, key in ipairs(sorted_keys(ref)) do
            if got[key] ~= ref[key] then
                problems[#problems + 1] = ("%q: %s, expected %d"):format(key, tostring(got[key]), ref[key])
            end
        end
        for _, key in ipairs(sorted_keys(got)) do
            if ref[key] == nil then problems[#problems + 1] = ("%q: %s, expected no such key"):format(key, tostring(got[key])) end
        end
        if #problems == 0 then return nil end
        return (what or "") .. table.concat(problems, "; ")
    end

    local function wait_exact(topic, ref, live, timeout)
        local ok, res = pcall(k.wait_for, "the last output per key in " .. topic .. " to equal the reference",
            timeout or 25, function()
                for _, p in ipairs(live or {}) do check_alive(p) end
                local last = last_values(topic)
                local d = diff(ref, last)
                if not d then return last end
                return nil, d
            end, 0.3)
        if ok then return res end
        local logs = {}
        for _, p in ipairs(live or {}) do       -- (an exit already quotes its log)
            if p:running() then logs[#logs + 1] = ("--- %s (running):\n%s"):format(p.name, tail(p:stderr(), 3000)) end
        end
        error(tostring(res) .. "\n" .. table.concat(logs, "\n"), 2)
    end

    -- wait for a log line matching `pattern` (Lua pattern) in p's stderr; returns the capture
    local function wait_log(p, what, pattern, timeout, live)
        return k.wait_for(what .. " in the log of " .. p.name, timeout or 20, function()
            for _, x in ipairs(live or { p }) do check_alive(x) end
            local m = p:stderr():match(pattern)
            if m then return m end
            return nil, "log tail: " .. tail(p:stderr(), 600)
        end, 0.05)
    end

    -- wait until every partition's task logged "task 0_P: restored"
    local function wait_restored(p, timeout)
        return k.wait_for("every task to log \"restored\"", timeout or 25, function()
            check_alive(p)
            local seen = {}
            for part in p:stderr():gmatch("task 0_(%d+): restored") do seen[tonumber(part)] = true end
            if count_of(seen) == P then return seen end
            return nil, ("tasks restored: %d of %d; log tail: %s"):format(count_of(seen), P, tail(p:stderr(), 600))
        end, 0.1)
    end

    -- the store as `eddy stores` prints it: sorted lines, and key -> { task, value }
    local function dump(script, app, sd)
        local rc, out, err = run_eddy({ "stores", script, "counts", "--state-dir", sd, "--app-id", app }, 20)
        assert.are.equal(0, rc, "eddy stores " .. sd .. ": " .. err)
        local lines, map = {}, {}
        for line in out:gmatch("[^\n]+") do
            lines[#lines + 1] = line
            local e = cjson.decode(line)
            assert(map[e.key] == nil, "key printed twice by eddy stores: " .. line)
            map[e.key] = { task = e.task, value = e.value }
        end
        table.sort(lines)
        return lines, map
    end

    -- a dump equals the reference: every key, its count, in task 0_<partition of key>
    local function assert_store(map, ref, what)
        local values, tasks = {}, {}
        for key, e in pairs(map) do
            values[key] = e.value
            local want = "0_" .. h.partition_for(key, P)
            if e.task ~= want then tasks[#tasks + 1] = ("%q in task %s, expected %s"):format(key, e.task, want) end
        end
        local d = diff(ref, values)
        assert(d == nil, what .. ": store differs from the reference: " .. tostring(d))
        assert(#tasks == 0, what .. ": " .. table.concat(tasks, "; "))
    end

    -- the store's changelog: records per store key, in offset order
    local function changelog_by_key(app)
        local recs = k.sort_by_offset(k.consume(B, app .. "-counts-changelog"))
        local per = {}
        for _, r in ipairs(recs) do
            local sk = store_key(r.key)
            per[sk] = per[sk] or {}
            table.insert(per[sk], r)
        end
        return per, recs
    end

    -- commit markers per partition, in offset order
    local function markers(app)
        local per = {}
        for part = 0, P - 1 do per[part] = {} end
        for _, r in ipairs(k.sort_by_offset(k.consume(B, app .. "-__task-0-changelog"))) do
            if r.key == "eddy.commit" or h.header(r, "eddy.commit") ~= nil then
                table.insert(per[r.partition], r)
            end
        end
        return per
    end

    -- high watermarks of a topic: { [partition] = end offset }
    local function ends(app, topic)
        local o = k.offsets(B, app, { { topic, P } })
        local t = {}
        for part = 0, P - 1 do t[part] = o[topic][part].high end
        return t, o
    end

    -- write a command to the broker's control FIFO and wait for its "ok"
    local function control(cmd)
        assert(broker:running(), "the broker died:\n" .. broker:stderr())
        local before = #broker:stderr()
        local rc = k.sh(("timeout 5 sh -c %s"):format(q("echo " .. q(cmd) .. " > " .. q(ctl))))
        assert.are.equal(0, rc, "cannot write to the control FIFO " .. ctl)
        local prefix = "broker: control: " .. cmd .. ": "
        local line = k.wait_for("the acknowledgement of " .. cmd, 5, function()
            local new = broker:stderr():sub(before + 1)
            for l in new:gmatch("[^\n]+") do
                if l:find(prefix, 1, true) then return l end
            end
            return nil, new
        end, 0.02)
        assert.are.equal(prefix .. "ok", line:match("eddy: (.*)$"))
    end

    -- a worker's current partitions from its log lines ("eddy[wN]: task T[p] assigned/revoked")
    local function worker_assignments(stderr, topic)
        local per = {}
        for line in stderr:gmatch("[^\n]+") do
            local w, t, part, what = line:match("eddy%[w(%d+)%]: task (%S+)%[(%d+)%] (%a+)")
            if w and t == topic then
                w = tonumber(w)
                per[w] = per[w] or {}
                if what == "assigned" then per[w][tonumber(part)] = true
                elseif what == "revoked" then per[w][tonumber(part)] = nil end
            end
        end
        return per
    end

    local function read_instance_id(sd, app)
        local s = h.read(sd .. "/" .. app .. "/instance.id")
        return s and s:match("^%s*(.-)%s*$")
    end

    -------------------------------------------------------------------------------------------
    it("1. writes <app>-counts-changelog and <app>-__task-0-changelog: every key on its task's partition, commit markers with increasing seq ending at the input's end", function()
        local app = "cl-names"
        local script = job_script(app)
        local ref = {}
        k.produce(B, gen(app, 96, ref, 0), dir)
        local p = start("names", app, script, dir .. "/state-names")
        wait_exact(app .. "-out", ref, { p }, 30)
        -- the first batch is committed on every partition before the second one comes, so
        -- each partition gets at least two markers
        local first_end = ends(app, app .. "-in")
        k.wait_for("commit markers covering the first batch", 15, function()
            check_alive(p)
            local m = markers(app)
            for part = 0, P - 1 do
                local last = m[part][#m[part]]
                local got = last and parse_marker(last.payload or "").offsets[app .. "-in"]
                if got ~= first_end[part] then
                    return nil, ("partition %d: last marker %s, input end %d"):format(part,
                        last and last.payload or "none", first_end[part])
                end
            end
            return true
        end, 0.2)
        k.produce(B, gen(app, 64, ref, 96), dir)
        wait_exact(app .. "-out", ref, { p }, 20)
        stop_ok(p)

        -- the topics exist, named per contract
        local names = topic_names()
        local CL, TASK = app .. "-counts-changelog", app .. "-__task-0-changelog"
        assert.is_truthy(names[CL], CL .. " does not exist")
        assert.is_truthy(names[TASK], TASK .. " does not exist")

        -- every key of the store is in the store's changelog, only on its task's partition
        -- (the partition of the input records' key), and its last value is its count
        local per, recs = changelog_by_key(app)
        assert.is_true(#recs > 0, CL .. " is empty")
        local problems = {}
        for _, key in ipairs(sorted_keys(ref)) do
            local list = per[key]
            if not list then
                problems[#problems + 1] = ("%q: not in %s"):format(key, CL)
            else
                local want = h.partition_for(key, P)
                for _, r in ipairs(list) do
                    if r.partition ~= want then
                        problems[#problems + 1] = ("%q: a record in partition %d, expected %d"):format(key, r.partition, want)
                    end
                end
                local n = decode_count(list[#list].payload)
                if n ~= ref[key] then
                    problems[#problems + 1] = ("%q: last changelog value %s, expected %d"):format(key, tostring(n), ref[key])
                end
            end
        end
        for key in pairs(per) do
            if ref[key] == nil then problems[#problems + 1] = ("%q: in %s but not a key of the store"):format(tostring(key), CL) end
        end
        assert(#problems == 0, table.concat(problems, "\n"))

        -- the commit markers
        local in_end = ends(app, app .. "-in")
        local cl_end = ends(app, CL)
        local m = markers(app)
        for part = 0, P - 1 do
            local list = m[part]
            assert(#list >= 2, ("partition %d: %d commit marker(s), expected at least 2 (two committed batches)")
                :format(part, #list))
            local prev = -1
            for _, r in ipairs(list) do
                assert.are.equal("eddy.commit", r.key, "a record with the eddy.commit header has key " .. tostring(r.key))
                assert(h.header(r, "eddy.commit") ~= nil, ("partition %d offset %d: marker without the eddy.commit header")
                    :format(part, r.offset))
                assert(type(r.payload) == "string" and r.payload:match("^seq=%d+ offsets=.* families=.*$"),
                    ("partition %d offset %d: marker value %q"):format(part, r.offset, tostring(r.payload)))
                local mk = parse_marker(r.payload)
                assert(mk.seq > prev, ("partition %d: seq %d after %d (not increasing)"):format(part, mk.seq, prev))
                prev = mk.seq
            end
            local last = parse_marker(list[#list].payload)
            assert.are.same({ [app .. "-in"] = in_end[part] }, last.offsets,
                ("partition %d: the offsets of the last marker (%s) vs the input's end offset"):format(part, last.raw))
            assert.are.equal(cl_end[part], last.families.counts,
                ("partition %d: families=counts@ of the last marker (%s) vs the end of %s"):format(part, last.raw, CL))
        end
        -- and the group committed the input's end (a clean stop commits everything)
        local o = k.offsets(B, app, { { app .. "-in", P } })
        for part = 0, P - 1 do
            assert.are.equal(in_end[part], o[app .. "-in"][part].committed, "committed offset of partition " .. part)
        end
    end)

    -------------------------------------------------------------------------------------------
    it("2. a restart with an empty --state-dir restores the same store from the changelog", function()
        local app = "cl-restore"
        local script = job_script(app)
        local ref = {}
        k.produce(B, gen(app, 150, ref, 0), dir)
        local sd1, sd2 = dir .. "/state-restore-1", dir .. "/state-restore-2"
        local p1 = start("restore-1", app, script, sd1)
        wait_exact(app .. "-out", ref, { p1 }, 30)
        stop_ok(p1)
        local lines1, map1 = dump(script, app, sd1)

        local p2 = start("restore-2", app, script, sd2)
        wait_restored(p2)
        stop_ok(p2)
        local lines2, map2 = dump(script, app, sd2)

        assert_store(map1, ref, "the first run's store")
        assert.are.same(lines1, lines2, "eddy stores before and after the restore")
        assert_store(map2, ref, "the restored store")
    end)

    -------------------------------------------------------------------------------------------
    it("3. changelog records after the last commit marker are not applied, and the next commit writes the true values after them", function()
        local app = "cl-orphans"
        local script = job_script(app)
        local CL = app .. "-counts-changelog"
        local ref = {}
        k.produce(B, gen(app, 120, ref, 0), dir)
        local p1 = start("orphans-1", app, script, dir .. "/state-orphans-1")
        wait_exact(app .. "-out", ref, { p1 }, 30)
        stop_ok(p1)

        -- the true last record of each key
        local per = changelog_by_key(app)
        local victims, used = {}, {}
        for _, key in ipairs(KEYS) do
            local part = h.partition_for(key, P)
            if not used[part] and #victims < 3 and per[key] then
                used[part] = true
                victims[#victims + 1] = { key = key, part = part, raw = per[key][#per[key]].key,
                    true_payload = per[key][#per[key]].payload }
            end
        end
        assert.are.equal(3, #victims, "three keys in three partitions to spoil")

        -- append, as a crash mid-commit leaves them: a wrong but decodable count, bytes
        -- that decode to nothing, and a tombstone; no marker after them
        local buffer = require "string.buffer"
        local function kcat_ok(cmd)
            local rc = k.sh("timeout 15 " .. cmd .. " > " .. q(dir .. "/kcat.out") .. " 2>&1")
            assert.are.equal(0, rc, cmd .. ": " .. (h.read(dir .. "/kcat.out") or ""))
        end
        local wrong = "v" .. buffer.encode({ ref[victims[1].key] + 1000, TS0 })
        h.write(dir .. "/garbage-1", wrong)
        h.write(dir .. "/garbage-2", "garbage\0\255 not a value")
        kcat_ok(("%s -P -b %s -t %s -p %d -k %s %s"):format(k.KCAT, q(B), q(CL), victims[1].part,
            q(victims[1].raw), q(dir .. "/garbage-1")))
        kcat_ok(("%s -P -b %s -t %s -p %d -k %s %s"):format(k.KCAT, q(B), q(CL), victims[2].part,
            q(victims[2].raw), q(dir .. "/garbage-2")))
        h.write(dir .. "/garbage-3", victims[3].raw .. "\t\n")
        kcat_ok(("%s -P -b %s -t %s -p %d -K '\\t' -Z < %s"):format(k.KCAT, q(B), q(CL), victims[3].part,
            q(dir .. "/garbage-3")))
        local spoiled = changelog_by_key(app)
        for i, v in ipairs(victims) do
            local last = spoiled[v.key][#spoiled[v.key]]
            assert.are_not.equal(v.true_payload, last.payload, "garbage record " .. i .. " is not last for " .. v.key)
            v.garbage_offset = last.offset
        end

        -- a restart from an empty state dir: the garbage is not applied ...
        local p2 = start("orphans-2", app, script, dir .. "/state-orphans-2")
        wait_restored(p2)
        -- ... and the job's next commit writes each spoiled key again with its true value,
        -- followed by a marker that covers it
        k.wait_for("the true values written again after the garbage", 20, function()
            check_alive(p2)
            local now, m = changelog_by_key(app), markers(app)
            for _, v in ipairs(victims) do
                local last = now[v.key][#now[v.key]]
                if last.offset <= v.garbage_offset then
                    return nil, ("%q: still garbage last (offset %d)"):format(v.key, last.offset)
                end
                if last.payload ~= v.true_payload or decode_count(last.payload) ~= ref[v.key] then
                    return nil, ("%q: last changelog value at offset %d decodes to %s, expected %d"):format(v.key,
                        last.offset, tostring(decode_count(last.payload)), ref[v.key])
                end
                local lm = m[v.part][#m[v.part]]
                local covered = lm and parse_marker(lm.payload).families.counts
                if not covered or covered <= last.offset then
                    return nil, ("%q: no marker covers offset %d yet (last %s)"):format(v.key, last.offset,
                        lm and lm.payload or "none")
                end
            end
            return true
        end, 0.2)
        stop_ok(p2)
        local _, map2 = dump(script, app, dir .. "/state-orphans-2")
        assert_store(map2, ref, "restored with garbage after the last marker")

        -- a replay from the beginning (garbage included, then the true values) is right
        local p3 = start("orphans-3", app, script, dir .. "/state-orphans-3")
        wait_restored(p3)
        stop_ok(p3)
        local _, map3 = dump(script, app, dir .. "/state-orphans-3")
        assert_store(map3, ref, "a third restore from an empty state dir")
    end)

    -------------------------------------------------------------------------------------------
    it("4. SIGKILL mid-stream, restart with an empty --state-dir (at_least_once): final counts exact", function()
        local app = "cl-kill"
        local script = job_script(app)
        local ref = {}
        k.produce(B, gen(app, 200, ref, 0), dir)
        local p1 = start("kill-1", app, script, dir .. "/state-kill-1")
        wait_exact(app .. "-out", ref, { p1 }, 30)
        local n_before = #k.consume(B, app .. "-out")

        -- about 3 s of input; the kill comes while it flows
        local prod = k.produce_async(B, gen(app, 2400, ref, 200), dir, "kill-producer", 800)
        procs[#procs + 1] = prod
        -- mid-stream: the job is writing the updates of the second batch
        k.wait_for("the job to process part of the second batch", 15, function()
            check_alive(p1)
            local n = #k.consume(B, app .. "-out")
            if n >= n_before + 100 then return true end
            return nil, (n - n_before) .. " new output records"
        end, 0.1)
        local pid = p1:child()
        k.sh("kill -9 " .. pid)
        assert(p1:wait(5) ~= nil, "eddy survived SIGKILL")
        assert.is_true(prod:running(), "the input had ended at the kill: not mid-stream (the machine is too slow?)")
        local killed_at = #k.consume(B, app .. "-out")

        local p2 = start("kill-2", app, script, dir .. "/state-kill-2")
        -- the restart restores every task from the changelogs (its state dir is empty)
        wait_restored(p2, 40)
        k.produced(prod, 30)
        wait_exact(app .. "-out", ref, { p2 }, 40)
        -- and it caught up: the group's committed offsets reach the input's end
        k.wait_for("the committed offsets to reach the input's end", 15, function()
            check_alive(p2)
            local o = k.offsets(B, app, { { app .. "-in", P } })[app .. "-in"]
            for part = 0, P - 1 do
                if o[part].committed ~= o[part].high then
                    return nil, ("partition %d committed %d of %d"):format(part, o[part].committed, o[part].high)
                end
            end
            return true
        end, 0.3)
        k.sleep(0.5)                      -- anything applied twice would show now
        local d = diff(ref, last_values(app .. "-out"))
        assert(d == nil, ("after SIGKILL (%d output records at the kill): %s"):format(killed_at, tostring(d)))
        stop_ok(p2)
        local n_in = tonumber(p2:stderr():match("(%d+) record%(s%) in,"))
        assert.is_true((n_in or 0) > 0, "the restarted job processed no input:\n" .. tail(p2:stderr()))
    end)

    -------------------------------------------------------------------------------------------
    it("5a. --guarantee exactly_once: logs its transactional id <app>-<instance.id>; results exact, each update once", function()
        local app = "cl-eos"
        local script = job_script(app)
        local sd = dir .. "/state-eos"
        local ref = {}
        k.produce(B, gen(app, 150, ref, 0), dir)
        local p = start("eos", app, script, sd, { "--guarantee", "exactly_once" })
        local id = wait_log(p, "the transactional id", "exactly_once: transactional id (%S+)")
        assert.is_truthy(id:match("^" .. app:gsub("%-", "%%-") .. "%-"), "transactional id " .. id)
        local file_id = read_instance_id(sd, app)
        assert.is_truthy(file_id and #file_id > 0, "no " .. sd .. "/" .. app .. "/instance.id")
        assert.are.equal(app .. "-" .. file_id, id)
        wait_exact(app .. "-out", ref, { p }, 30)
        k.sleep(0.5)
        -- no fault: per key the updates are 1, 2, ..., n, each once
        local seq = {}
        for _, r in ipairs(k.sort_by_offset(k.consume(B, app .. "-out"))) do
            local n = tonumber(r.payload)
            assert.are.equal((seq[r.key] or 0) + 1, n, ("key %q: update %s after %s"):format(r.key, r.payload,
                tostring(seq[r.key])))
            seq[r.key] = n
        end
        assert.are.same(ref, seq)
        stop_ok(p)
    end)

    it("5b. --guarantee exactly_once with --input (file mode) is a usage error naming --brokers", function()
        local app = "cl-eos"
        local script = job_script(app)
        local input = h.write(dir .. "/eos-file.jsonl", h.envelope({ key = "a", payload = "x", ts = TS0 }) .. "\n")
        local rc, _, err = run_eddy({ "run", script, "--input", input, "--guarantee", "exactly_once",
            "--state-dir", dir .. "/state-eos-file" }, 20)
        assert.are.equal(2, rc, err)
        assert.is_truthy(err:find("--brokers", 1, true), err)
    end)

    it("5c. exactly_once: an injected Produce failure aborts the transaction, the tasks go back to their last commit, the counts stay exact", function()
        local app = "cl-eos-abort"
        local script = job_script(app)
        local ref = {}
        k.produce(B, gen(app, 120, ref, 0), dir)
        local p = start("eos-abort", app, script, dir .. "/state-eos-abort", { "--guarantee", "exactly_once" })
        wait_exact(app .. "-out", ref, { p }, 30)
        local pid = p:child()
        local before = #p:stderr()

        -- pause the job, give it more input (kcat, murmur2 like the Java clients) and make
        -- the next two Produce requests fail, then let it go on
        k.sh("kill -STOP " .. pid)
        local ok, err = pcall(function()
            local lines = {}
            for _, r in ipairs(gen(app, 60, ref, 120)) do lines[#lines + 1] = r.key .. "\t" .. r.value end
            h.write(dir .. "/eos-more.txt", table.concat(lines, "\n") .. "\n")
            local rc = k.sh(("timeout 15 %s -P -b %s -t %s -K '\\t' -X partitioner=murmur2_random < %s > %s 2>&1")
                :format(k.KCAT, q(B), q(app .. "-in"), q(dir .. "/eos-more.txt"), q(dir .. "/kcat.out")))
            assert.are.equal(0, rc, "kcat -P: " .. (h.read(dir .. "/kcat.out") or ""))
            control("errors Produce 2 TOPIC_AUTHORIZATION_FAILED")
        end)
        k.sh("kill -CONT " .. pid)
        assert(ok, err)
        -- the input went where the reference says
        for _, r in ipairs(k.consume(B, app .. "-in")) do
            assert.are.equal(h.partition_for(r.key, P), r.partition, "input partition of " .. r.key)
        end

        local function new_log() return p:stderr():sub(before + 1) end
        k.wait_for("\"transaction failed\" and \"back at their last commit\" in the log", 20, function()
            check_alive(p)
            local s = new_log()
            if s:find("transaction failed", 1, true) and s:find("back at their last commit", 1, true) then
                return true
            end
            return nil, tail(s, 800)
        end, 0.1)
        wait_exact(app .. "-out", ref, { p }, 25)
        k.sleep(1)
        check_alive(p)
        local d = diff(ref, last_values(app .. "-out"))
        assert(d == nil, "after the abort: " .. tostring(d))
        stop_ok(p)
    end)

    it("5d. exactly_once: the transactional id is stable across restarts with the same state dir, and differs with another", function()
        local app = "cl-eos-id"
        local script = job_script(app)
        local sd1, sd2 = dir .. "/state-eos-id-1", dir .. "/state-eos-id-2"
        local function id_of(name, sd)
            local p = start(name, app, script, sd, { "--guarantee", "exactly_once" })
            local id = wait_log(p, "the transactional id", "exactly_once: transactional id (%S+)")
            stop_ok(p)
            return id
        end
        local a = id_of("eos-id-1", sd1)
        local file_id = read_instance_id(sd1, app)
        assert.are.equal(app .. "-" .. tostring(file_id), a)
        local b = id_of("eos-id-2", sd1)
        assert.are.equal(a, b, "the same state dir, another transactional id")
        assert.are.equal(file_id, read_instance_id(sd1, app), "instance.id changed")
        local c = id_of("eos-id-3", sd2)
        assert.are_not.equal(a, c, "another state dir, the same transactional id")
        assert.is_truthy(c:match("^" .. app:gsub("%-", "%%-") .. "%-%S+$"), c)
        assert.are.equal(app .. "-" .. tostring(read_instance_id(sd2, app)), c)
    end)

    -------------------------------------------------------------------------------------------
    it("6a. --threads 2: two workers with disjoint partitions, exact results; SIGTERM to the parent stops both, exit 0", function()
        local app = "cl-thr"
        local script = job_script(app)
        local ref = {}
        k.produce(B, gen(app, 160, ref, 0), dir)
        local p = start("thr", app, script, dir .. "/state-thr", { "--threads", "2" })
        local topic = app .. "-in"
        local per = k.wait_for("both workers holding partitions, every partition held once", 30, function()
            check_alive(p)
            local a = worker_assignments(p:stderr(), topic)
            local seen, held, both = {}, 0, {}
            for w = 1, 2 do
                for part in pairs(a[w] or {}) do
                    if seen[part] then both[#both + 1] = part end
                    seen[part] = true
                end
            end
            held = count_of(seen)
            if count_of(a[1] or {}) > 0 and count_of(a[2] or {}) > 0 and held == P and #both == 0 then return a end
            return nil, ("w1 {%s} w2 {%s}"):format(table.concat(sorted_keys(a[1] or {}), ","),
                table.concat(sorted_keys(a[2] or {}), ","))
        end, 0.1)
        wait_exact(app .. "-out", ref, { p }, 30)
        local err = p:stderr()
        assert.is_truthy(err:find("eddy%[w1%]: "), "no line from worker 1:\n" .. tail(err))
        assert.is_truthy(err:find("eddy%[w2%]: "), "no line from worker 2:\n" .. tail(err))
        for part = 0, P - 1 do
            assert.is_true((per[1][part] or false) ~= (per[2][part] or false), "partition " .. part .. " held by both or none")
        end

        -- SIGTERM to the parent eddy process (not the wrapper, which would signal the
        -- whole process group): it stops both workers and exits 0
        local parent = p:child()
        local workers = k.children(parent)
        assert.are.equal(2, #workers, "worker processes under " .. parent)
        k.sh("kill -TERM " .. parent)
        local rc = p:wait(20)
        assert.are.equal(0, rc, ("parent exit %s\n%s"):format(tostring(rc), tail(p:stderr())))
        for _, w in ipairs(workers) do
            assert.is_false(alive(w), "worker " .. w .. " still runs after the parent exited")
        end
        local stops = 0
        for _ in p:stderr():gmatch("eddy%[w%d%]: job [^\n]*stopping") do stops = stops + 1 end
        assert.are.equal(2, stops, "both workers log their stop:\n" .. tail(p:stderr()))
    end)

    it("6b. --threads 0 and --threads abc are usage errors (exit 2)", function()
        local script = job_script("cl-thr")
        for _, v in ipairs({ "0", "abc" }) do
            local rc, _, err = run_eddy({ "run", script, "--brokers", B, "--threads", v,
                "--state-dir", dir .. "/state-thr-bad" }, 20)
            assert.are.equal(2, rc, "--threads " .. v .. ": " .. err)
            assert.is_truthy(err:find("--threads", 1, true), err)
        end
    end)

    it("6c. --guarantee exactly_once --threads 2: each worker has its own transactional id (-w1, -w2)", function()
        local app = "cl-thr-eos"
        local script = job_script(app)
        local p = start("thr-eos", app, script, dir .. "/state-thr-eos", { "--guarantee", "exactly_once", "--threads", "2" })
        local ids = k.wait_for("both workers' transactional ids", 20, function()
            check_alive(p)
            local t = {}
            for w, id in p:stderr():gmatch("eddy%[w(%d)%]: kafka: exactly_once: transactional id (%S+)") do
                t[tonumber(w)] = id
            end
            if t[1] and t[2] then return t end
            return nil, tail(p:stderr(), 600)
        end, 0.05)
        assert.is_truthy(ids[1]:match("^" .. app:gsub("%-", "%%-") .. "%-.+%-w1$"), ids[1])
        assert.is_truthy(ids[2]:match("^" .. app:gsub("%-", "%%-") .. "%-.+%-w2$"), ids[2])
        assert.are_not.equal(ids[1], ids[2])
        stop_ok(p, 20)
    end)

    it("6d. --guarantee exactly_once --threads 2: each worker's id is <app>-<instance.id>-wN, the same after a restart", function()
        -- (the README: transactional.id = <app>-<instance id>, the id kept in
        -- <state-dir>/<app>/instance.id so a restart fences its own unfinished transaction;
        -- both workers start at once on an empty state dir, so a race between them to
        -- create the file shows in some runs only)
        local app = "cl-thr-eos-id"
        local script = job_script(app)
        local sd = dir .. "/state-thr-eos-id"
        local function ids_of(name)
            local p = start(name, app, script, sd, { "--guarantee", "exactly_once", "--threads", "2" })
            local ids = k.wait_for("both workers' transactional ids", 20, function()
                check_alive(p)
                local t = {}
                for w, id in p:stderr():gmatch("eddy%[w(%d)%]: kafka: exactly_once: transactional id (%S+)") do
                    t[tonumber(w)] = id
                end
                if t[1] and t[2] then return t end
                return nil, tail(p:stderr(), 600)
            end, 0.05)
            stop_ok(p, 20)
            return ids
        end
        local first = ids_of("thr-eos-id-1")
        local file_id = read_instance_id(sd, app)
        local want = { app .. "-" .. tostring(file_id) .. "-w1", app .. "-" .. tostring(file_id) .. "-w2" }
        local second = ids_of("thr-eos-id-2")
        assert.are.same(want, first, "first run: the workers' ids vs instance.id " .. tostring(file_id))
        assert.are.same(first, second, "the workers' ids changed across a restart with the same state dir")
    end)
end)
