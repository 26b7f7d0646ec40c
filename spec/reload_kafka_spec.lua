-- spec/reload_kafka_spec.lua: hot reload in Kafka mode under live traffic (CONTRACT.md
-- "Hot reload", issue 4): `eddy broker`, a background producer at a few thousand
-- records/s (spec/tools/produce.py --rate), `eddy run` with --watch, and the spec saving
-- a new version of the script every half second or so: 16 reloads that alternate two
-- compatible shapes (with and without a map step) and give every version its own output
-- marker. The job is a tumbling-window aggregation (emit = "update") whose value
-- carries the count and the id of the record that produced it, so that every output
-- names its input and the version that handled it. Checked against a reference
-- computed here from the produced records:
--   * the last value per (key, window) is the reference count;
--   * every input has exactly one output (nothing lost, nothing doubled across swaps),
--     and per (key, window) the counts go 1, 2, ..., n in output order;
--   * versions are in order: per input partition (by input offset) and per output
--     partition (by output offset) the version number never goes back, so no record is
--     handled by two versions and every record after a swap is handled by the new one;
--   * the log shows each reload loaded and swapped once, chained "(was <previous>)".
-- Then: an error streak under traffic and at a low rate (a streak across batches) rolls
-- back with no record lost; a reload that renames a store after a key change (so its
-- <app>-<store>-repartition topic) loses no record; 10 reloads of a windowed count after
-- a key change while records flow give the reference counts.
local cjson = require "cjson"
local h = require "helper"
local k = require "kafka_helper"
local bit = require "bit"

local TS0 = 1700000000000
local SIZE = 1000                  -- window size (ms of event time)
local NKEYS, NPART = 40, 3
local TOPICS = { { "rlk-in", NPART }, { "rlk-out", NPART },
    { "rlb-in", NPART }, { "rlb-out", NPART }, { "rlb-dlq", 1 },
    { "rlr-in", NPART }, { "rlr-out", NPART }, { "rlr-w-repartition", NPART },
    { "rls-in", 1 }, { "rls-out", 1 }, { "rls-dlq", 1 },
    { "rlu-in", 1 }, { "rlu-out", 1 } }

local function fnv(s)
    local x = 1469598103934665603ULL
    for i = 1, #s do
        x = bit.bxor(x, s:byte(i))
        x = x * 1099511628211ULL
    end
    return bit.tohex(x, 16)
end

local function count_matches(text, pat)
    local n = 0
    for _ in text:gmatch(pat) do n = n + 1 end
    return n
end

-- Version `gen` of the job: output value "v<gen>|<count>|<id of the last record>";
-- odd versions have an extra map step (the same value), even ones do not.
local function version(gen)
    local step = gen % 2 == 1 and '\n   :map_values(function(v) return (v:gsub("^%s+", "")) end)' or ""
    return ([[
local eddy = require "eddy"
local job = eddy.job { name = "rlk", commit_interval = 200 }
job:source("rlk-in")%s
   :group_by_key()
   :window(eddy.tumbling { size = %d, grace = "1h" })
   :aggregate(function() return { n = 0 } end,
              function(acc, v) acc.n = acc.n + 1; acc.last = v; return acc end,
              { store = "w", emit = "update" })
   :to_stream()
   :map_values(function(acc, k, rec) return "v%d|" .. acc.n .. "|" .. acc.last .. "|" .. rec.window.start end)
   :to("rlk-out")
return job
]]):format(step, SIZE, gen)
end

-- editors' save patterns, in turn
local function save(path, text, how)
    if how == 0 then
        h.write(path, text)
    elseif how == 1 then
        local f = assert(io.open(path, "w")); f:close()
        f = assert(io.open(path, "a")); f:write(text); f:close()
    else
        h.write(path .. ".tmp~", text)
        assert(os.rename(path .. ".tmp~", path))
    end
end

describe("hot reload in Kafka mode", function()
    local dir, broker, B
    local procs = {}

    lazy_setup(function()
        dir = h.tmpdir()
        broker, B = k.start_broker(dir, TOPICS)
    end)

    lazy_teardown(function()
        for _, p in ipairs(procs) do p:kill() end
        if broker then broker:kill() end
        if dir then os.execute("rm -rf " .. h.q(dir)) end
    end)

    it("16 reloads of a windowed aggregation while records flow: reference counts, each record once, versions in order", function()
        os.execute("mkdir -p " .. h.q(dir .. "/job"))
        local script = dir .. "/job/rlk.lua"
        h.write(script, version(0))
        local hashes = { [0] = fnv(version(0)) }

        -- the input: ids 1..N, keys k1..k40 (partition by Kafka's murmur2), event time
        -- increasing (3 ms apart: ~333 records per 1 s window, ~8 per key and window)
        local N, RATE = 39000, 3000
        local recs, want, key_of, win_of = {}, {}, {}, {}
        local seed = 12345
        for i = 1, N do
            seed = (seed * 1103515245 + 12345) % 2147483648
            local key = "k" .. (seed % NKEYS + 1)
            local ts = TS0 + i * 3
            local w = ts - ts % SIZE
            recs[i] = { topic = "rlk-in", key = key, value = tostring(i), ts = ts,
                partition = h.partition_for(key, NPART) }
            key_of[i], win_of[i] = key, w
            local kw = key .. "@" .. w
            want[kw] = (want[kw] or 0) + 1
        end

        local eddy = k.start_eddy(dir, "rlk", script, B, { "--app-id", "rlk" })
        procs[#procs + 1] = eddy
        k.wait_for("eddy to consume", 15, function()
            if not eddy:running() then error("eddy exited: " .. eddy:stderr(), 0) end
            return eddy:stderr():find("consuming")
        end)
        local prod = k.produce_async(B, recs, dir, "producer", RATE)
        procs[#procs + 1] = prod
        k.wait_records(B, "rlk-out", 200, 20, eddy)     -- the group is up, records flow

        -- 16 reloads, one every ~0.4 s while the producer runs (each waits for its swap)
        local RELOADS = 16
        local swapped_at = {}
        for gen = 1, RELOADS do
            k.sleep(0.25)
            local text = version(gen)
            hashes[gen] = fnv(text)
            save(script, text, gen % 3)
            k.wait_for(("reload %d swapped in"):format(gen), 5, function()
                if not eddy:running() then error("eddy exited: " .. eddy:stderr(), 0) end
                return count_matches(eddy:stderr(), "reload %x+ swapped in") >= gen
            end, 0.02)
            swapped_at[gen] = k.now()
        end
        assert.is_true(prod:running(), "the producer ended before the last reload: the reloads must happen under traffic")
        local reports = k.produced(prod, 40)
        -- every input has one update: wait for N outputs (and a moment for any extra)
        local deadline = k.now() + 25
        local out
        repeat
            out = k.consume(B, "rlk-out")
            if #out >= N then break end
            k.sleep(0.3)
        until k.now() > deadline
        k.sleep(0.8)
        out = k.sort_by_offset(k.consume(B, "rlk-out"))
        local rc = eddy:stop("TERM", 15)
        local log = eddy:stderr()
        assert.are.equal(0, rc, "eddy's exit status; log:\n" .. log)

        -- the log: each version loaded and swapped in once, in order, none refused or rolled back
        assert.are.equal(0, count_matches(log, "refused"), log)
        assert.are.equal(0, count_matches(log, "rolled back"), log)
        assert.are.equal(RELOADS, count_matches(log, "reload %x+ swapped in"), log)
        for gen = 1, RELOADS do
            assert.is_truthy(log:find(("reload %s swapped in %%(was %s%%)"):format(hashes[gen], hashes[gen - 1])),
                ("reload %d (%s, was %s) in the log:\n%s"):format(gen, hashes[gen], hashes[gen - 1], log))
        end

        -- outputs: parse, one per input id
        local seen, problems = {}, {}
        local function problem(msg)
            if #problems < 25 then problems[#problems + 1] = msg end
        end
        local parsed = {}
        for _, e in ipairs(out) do
            local gen, n, id, ws = (e.payload or ""):match("^v(%d+)|(%d+)|(%d+)|(%-?%d+)$")
            assert(gen, "output value: " .. tostring(e.payload))
            gen, n, id, ws = tonumber(gen), tonumber(n), tonumber(id), tonumber(ws)
            parsed[#parsed + 1] = { gen = gen, n = n, id = id, ws = ws, key = e.key, partition = e.partition, offset = e.offset }
            if seen[id] then
                problem(("input %d has two outputs: %s and %s"):format(id, seen[id], e.payload))
            end
            seen[id] = e.payload
            if key_of[id] ~= e.key or win_of[id] ~= ws then
                problem(("output %s for input %d: key %s window %d, expected %s %d"):format(e.payload, id,
                    tostring(e.key), ws, key_of[id], win_of[id]))
            end
        end
        local missing = {}
        for i = 1, N do if not seen[i] then missing[#missing + 1] = i end end
        if #missing > 0 then
            problem(("%d input(s) without an output, e.g. %s"):format(#missing,
                table.concat(missing, ",", 1, math.min(10, #missing))))
        end

        -- per (key, window), in output order: counts 1, 2, ..., n; the last = the reference
        local last, part_of_key = {}, {}
        for _, o in ipairs(parsed) do
            part_of_key[o.key] = part_of_key[o.key] or o.partition
            if part_of_key[o.key] ~= o.partition then
                problem(("key %s in output partitions %d and %d"):format(o.key, part_of_key[o.key], o.partition))
            end
            local kw = o.key .. "@" .. o.ws
            if o.n ~= (last[kw] or 0) + 1 then
                problem(("%s: count %d after %d (input %d, v%d)"):format(kw, o.n, last[kw] or 0, o.id, o.gen))
            end
            last[kw] = o.n
        end
        for kw, n in pairs(want) do
            if last[kw] ~= n then problem(("%s: last count %s, reference %d"):format(kw, tostring(last[kw]), n)) end
        end

        -- versions in order per output partition (output offset order) ...
        local gen_out = {}
        for _, o in ipairs(parsed) do
            local g = gen_out[o.partition] or 0
            if o.gen < g then
                problem(("output partition %d offset %d: v%d after v%d"):format(o.partition, o.offset, o.gen, g))
            end
            gen_out[o.partition] = math.max(g, o.gen)
        end
        -- ... and per input partition (input offset order)
        local by_input = {}
        for _, o in ipairs(parsed) do
            local r = reports[o.id]
            by_input[#by_input + 1] = { p = r.partition, off = r.offset, gen = o.gen, id = o.id }
        end
        table.sort(by_input, function(a, b) if a.p ~= b.p then return a.p < b.p end return a.off < b.off end)
        local gen_in, gens_seen = {}, {}
        for _, x in ipairs(by_input) do
            local g = gen_in[x.p] or 0
            if x.gen < g then
                problem(("input partition %d offset %d (id %d): v%d after v%d"):format(x.p, x.off, x.id, x.gen, g))
            end
            gen_in[x.p] = math.max(g, x.gen)
            gens_seen[x.gen] = (gens_seen[x.gen] or 0) + 1
        end
        local nseen = 0
        for _ in pairs(gens_seen) do nseen = nseen + 1 end
        assert(#problems == 0, ("%d outputs for %d inputs; problems:\n%s"):format(#out, N, table.concat(problems, "\n")))
        -- the reloads happened under traffic: most versions handled some records
        local per = {}
        for g = 0, RELOADS do per[#per + 1] = ("v%d=%d"):format(g, gens_seen[g] or 0) end
        assert(nseen >= RELOADS / 2, ("only %d versions handled records: %s"):format(nseen, table.concat(per, " ")))
        assert.are.equal(N, #out)
        local i_in = log:match("(%d+) record%(s%) in")
        assert.are.equal(N, tonumber(i_in), "records in, from the summary line:\n" .. log)
    end)
    -- the input for the tests below: ids 1..n, keys k1..k<nkeys>, ts 3 ms apart
    local function input(topic, n, nkeys, seed)
        local recs, key_of = {}, {}
        for i = 1, n do
            seed = (seed * 1103515245 + 12345) % 2147483648
            local key = "k" .. (seed % nkeys + 1)
            recs[i] = { topic = topic, key = key, value = tostring(i), ts = TS0 + i * 3,
                partition = h.partition_for(key, NPART) }
            key_of[i] = key
        end
        return recs, key_of
    end

    -- wait until `topic` holds n records (or `timeout`), then a moment more; sorted
    local function settle(topic, n, timeout)
        local deadline = k.now() + timeout
        repeat
            if #k.consume(B, topic) >= n then break end
            k.sleep(0.3)
        until k.now() > deadline
        k.sleep(0.8)
        return k.sort_by_offset(k.consume(B, topic))
    end

    it("an error streak under traffic rolls back; the old version processes every record the new one failed on", function()
        os.execute("mkdir -p " .. h.q(dir .. "/jobb"))
        local script = dir .. "/jobb/rlb.lua"
        local function ver(tag, fail)
            return ([[
local eddy = require "eddy"
local job = eddy.job { name = "rlb", commit_interval = 200 }
job:source("rlb-in")%s
   :group_by_key()
   :count { store = "c" }
   :to_stream()
   :map_values(function(n) return %q .. "|" .. n end)
   :to("rlb-out")
return job
]]):format(fail and '\n   :map_values(function(v) error("broken on " .. v) end)' or "", tag)
        end
        h.write(script, ver("A"))
        local N = 10000
        local recs, key_of = input("rlb-in", N, 20, 777)
        local want = {}
        for i = 1, N do want[key_of[i]] = (want[key_of[i]] or 0) + 1 end
        local eddy = k.start_eddy(dir, "rlb", script, B, { "--app-id", "rlb" })
        procs[#procs + 1] = eddy
        k.wait_for("eddy to consume", 15, function()
            if not eddy:running() then error("eddy exited: " .. eddy:stderr(), 0) end
            return eddy:stderr():find("consuming")
        end)
        local prod = k.produce_async(B, recs, dir, "producer-b", 2000)
        procs[#procs + 1] = prod
        k.wait_records(B, "rlb-out", 200, 20, eddy)
        local vb = fnv(ver("B", true))
        h.write(script, ver("B", true))
        k.wait_for("the rollback", 10, function()
            if not eddy:running() then error("eddy exited: " .. eddy:stderr(), 0) end
            return eddy:stderr():find("rolled back")
        end, 0.05)
        assert.is_true(prod:running(), "the rollback must happen under traffic")
        k.produced(prod, 30)
        local out = settle("rlb-out", N, 20)
        local dlq = k.consume(B, "rlb-dlq")
        local rc = eddy:stop("TERM", 15)
        local log = eddy:stderr()
        assert.are.equal(0, rc, log)
        assert.is_truthy(log:find(("reload %s rolled back to %s: 10 records in a row failed"):format(vb,
            fnv(ver("A")))), log)
        -- per key, the updates 1, 2, ..., n, all from A; the last one the reference count
        local last, problems = {}, {}
        for _, e in ipairs(out) do
            local tag, n = e.payload:match("^(%u)|(%d+)$")
            n = tonumber(n)
            if tag ~= "A" then problems[#problems + 1] = "an output of " .. tag .. ": " .. e.payload end
            if n ~= (last[e.key] or 0) + 1 and #problems < 20 then
                problems[#problems + 1] = ("key %s: %d after %s"):format(e.key, n, tostring(last[e.key]))
            end
            last[e.key] = n
        end
        local lost = 0
        for key, n in pairs(want) do lost = lost + (n - (last[key] or 0)) end
        assert(#problems == 0 and lost == 0,
            ("%d of %d inputs missing from the counts (the DLQ holds %d record(s): the failures of %s " ..
             "before the streak reached 10, dead-lettered in earlier batches and not processed again " ..
             "by the old version); %s\nlog:\n%s"):format(lost, N, #dlq, vb, table.concat(problems, "; "), log))
    end)

    it("an error streak at a low rate (a few records per batch) rolls back; no record the new version failed on is lost", function()
        os.execute("mkdir -p " .. h.q(dir .. "/jobs"))
        local script = dir .. "/jobs/rls.lua"
        local function ver(tag, fail)
            return ([[
local eddy = require "eddy"
local job = eddy.job { name = "rls", commit_interval = 200 }
job:source("rls-in")%s
   :group_by_key()
   :count { store = "c" }
   :to_stream()
   :map_values(function(n) return %q .. "|" .. n end)
   :to("rls-out")
return job
]]):format(fail and '\n   :map_values(function(v) error("broken on " .. v) end)' or "", tag)
        end
        h.write(script, ver("A"))
        -- fetch.wait.max.ms: records reach eddy as they come (a batch every ~100 ms)
        local eddy = k.start_eddy(dir, "rls", script, B, { "--app-id", "rls", "-X", "fetch.wait.max.ms=10" })
        procs[#procs + 1] = eddy
        k.produce(B, { { topic = "rls-in", key = "k", value = "0", ts = TS0 } }, dir)
        k.wait_records(B, "rls-out", 1, 20, eddy)                 -- the group is up
        local N = 100
        local recs = {}
        for i = 1, N do recs[i] = { topic = "rls-in", key = "k", value = tostring(i), ts = TS0 + i } end
        local prod = k.produce_async(B, recs, dir, "producer-s", 40)
        procs[#procs + 1] = prod
        k.sleep(0.5)
        local vb = fnv(ver("B", true))
        h.write(script, ver("B", true))
        k.wait_for("the rollback", 10, function()
            if not eddy:running() then error("eddy exited: " .. eddy:stderr(), 0) end
            return eddy:stderr():find("rolled back")
        end, 0.05)
        k.produced(prod, 15)
        local out = settle("rls-out", N + 1, 3)
        local dlq = k.consume(B, "rls-dlq")
        local rc = eddy:stop("TERM", 15)
        local log = eddy:stderr()
        assert.are.equal(0, rc, log)
        local vals = {}
        for i, e in ipairs(out) do vals[i] = e.payload end
        local lastn = tonumber((vals[#vals] or ""):match("|(%d+)$"))
        assert(lastn == N + 1 and #dlq == 0,
            ("the count of key k is %s, reference %d; %d record(s) in the DLQ (failures of %s in " ..
             "batches before the one where the streak reached 10: committed, never processed by the " ..
             "old version)\noutputs: %s\nlog:\n%s"):format(tostring(lastn), N + 1, #dlq, vb,
             table.concat(vals, " "), log))
    end)

    it("a reload that renames the store after a key change (so its <app>-<store>-repartition topic) is refused; no record is lost", function()
        os.execute("mkdir -p " .. h.q(dir .. "/jobu"))
        local script = dir .. "/jobu/rlu.lua"
        local function ver(tag, store)
            return ([[
local eddy = require "eddy"
local job = eddy.job { name = "rlu", commit_interval = 200 }
job:source("rlu-in"):group_by(function(k, v) return v end):count { store = %q }:to_stream()
   :map_values(function(n) return %q .. ":" .. n end):to("rlu-out")
return job
]]):format(store, tag)
        end
        h.write(script, ver("A", "c1"))
        local eddy = k.start_eddy(dir, "rlu", script, B, { "--app-id", "rlu", "-X", "fetch.wait.max.ms=10" })
        procs[#procs + 1] = eddy
        k.produce(B, { { topic = "rlu-in", key = "x", value = "w" } }, dir)
        k.wait_records(B, "rlu-out", 1, 20, eddy)
        -- the new name means a new repartition topic, which the running consumer's
        -- subscription (fixed at start) would never read: the reload is refused, with
        -- the reason, and the old version goes on, so no record is lost
        h.write(script, ver("B", "c2"))
        k.wait_for("the refusal", 5, function() return eddy:stderr():find("refused") end, 0.05)
        k.produce(B, { { topic = "rlu-in", key = "x", value = "w" }, { topic = "rlu-in", key = "y", value = "v" } }, dir)
        local out = settle("rlu-out", 3, 3)
        local rc = eddy:stop("TERM", 15)
        local log = eddy:stderr()
        assert.are.equal(0, rc, log)
        assert.truthy(log:find("repartition", 1, true) and log:find("cannot", 1, true) or
            log:find("is gone", 1, true), log)
        assert.is_nil(log:find("swapped in", 1, true), log)
        local vals = {}
        for i, e in ipairs(out) do vals[i] = e.key .. "=" .. e.payload end
        table.sort(vals)
        assert.are.same({ "v=A:1", "w=A:1", "w=A:2" }, vals)
    end)

    it("10 reloads of a windowed count after a key change (through <app>-w-repartition) while records flow: reference counts", function()
        os.execute("mkdir -p " .. h.q(dir .. "/jobr"))
        local script = dir .. "/jobr/rlr.lua"
        local function ver(gen)
            return ([[
local eddy = require "eddy"
local job = eddy.job { name = "rlr", commit_interval = 200 }
job:source("rlr-in")%s
   :group_by(function(k, v) return "g" .. (tonumber(k:sub(2)) %% 7) end)
   :window(eddy.tumbling { size = %d, grace = "1h" })
   :count { store = "w", emit = "update" }
   :to_stream()
   :map_values(function(n, k, rec) return "v%d|" .. n .. "|" .. rec.window.start end)
   :to("rlr-out")
return job
]]):format(gen % 2 == 1 and "\n   :filter(function(k, v) return v ~= nil end)" or "", SIZE, gen)
        end
        h.write(script, ver(0))
        local N = 27000
        local recs, key_of = input("rlr-in", N, 40, 4242)
        local want = {}
        for i = 1, N do
            local g = "g" .. (tonumber(key_of[i]:sub(2)) % 7)
            local ts = recs[i].ts
            local kw = g .. "@" .. (ts - ts % SIZE)
            want[kw] = (want[kw] or 0) + 1
        end
        local eddy = k.start_eddy(dir, "rlr", script, B, { "--app-id", "rlr" })
        procs[#procs + 1] = eddy
        k.wait_for("eddy to consume", 15, function()
            if not eddy:running() then error("eddy exited: " .. eddy:stderr(), 0) end
            return eddy:stderr():find("consuming")
        end)
        -- 2000/s: ~13 s of traffic, so the group join (~3 s) and 10 reloads fit well inside it
        local prod = k.produce_async(B, recs, dir, "producer-r", 2000)
        procs[#procs + 1] = prod
        k.wait_records(B, "rlr-out", 200, 20, eddy)
        for gen = 1, 10 do
            k.sleep(0.2)
            save(script, ver(gen), gen % 3)
            k.wait_for(("reload %d swapped in"):format(gen), 5, function()
                if not eddy:running() then error("eddy exited: " .. eddy:stderr(), 0) end
                return count_matches(eddy:stderr(), "reload %x+ swapped in") >= gen
            end, 0.02)
        end
        assert.is_true(prod:running(), "the reloads must happen under traffic")
        k.produced(prod, 30)
        local out = settle("rlr-out", N, 25)
        local rc = eddy:stop("TERM", 15)
        local log = eddy:stderr()
        assert.are.equal(0, rc, log)
        assert.are.equal(0, count_matches(log, "refused") + count_matches(log, "rolled back"), log)
        local last, gen_out, problems = {}, {}, {}
        for _, e in ipairs(out) do
            local gen, n, ws = e.payload:match("^v(%d+)|(%d+)|(%-?%d+)$")
            gen, n = tonumber(gen), tonumber(n)
            local kw = e.key .. "@" .. ws
            if n ~= (last[kw] or 0) + 1 and #problems < 20 then
                problems[#problems + 1] = ("%s: count %d after %s (v%d)"):format(kw, n, tostring(last[kw]), gen)
            end
            last[kw] = n
            if gen < (gen_out[e.partition] or 0) and #problems < 20 then
                problems[#problems + 1] = ("output partition %d offset %d: v%d after v%d"):format(e.partition,
                    e.offset, gen, gen_out[e.partition])
            end
            gen_out[e.partition] = math.max(gen_out[e.partition] or 0, gen)
        end
        for kw, n in pairs(want) do
            if last[kw] ~= n and #problems < 40 then
                problems[#problems + 1] = ("%s: last count %s, reference %d"):format(kw, tostring(last[kw]), n)
            end
        end
        assert(#problems == 0, ("%d outputs for %d inputs; problems:\n%s"):format(#out, N, table.concat(problems, "\n")))
        assert.are.equal(N, #out)
    end)
end)
