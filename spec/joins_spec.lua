-- spec/joins_spec.lua: tables (job:table) and stream-table joins (stream:join /
-- stream:left_join), Kafka Streams' KStream-KTable join, through the real binary.
--   1. Kafka Streams' own unit tests KStreamKTableJoinTest and KStreamKTableLeftJoinTest
--      (apache/kafka, streams/src/test/java/org/apache/kafka/streams/kstream/internals/),
--      transcribed: the same inputs (keys 0..3, values X<i>/Y<i>, stream timestamps i),
--      the same expected outputs with their timestamps, phase by phase, in file mode
--      (the envelope with explicit timestamps, through eddy.testing's driver, which runs
--      `eddy run` per phase on one state), and once more as a single file-mode run.
--   2. Randomized: table updates, deletes and stream records interleaved over 50 keys,
--      1 and 4 partitions, join and left_join side by side; the expected outputs come
--      from a direct simulation here; every (topic, partition) sequence is compared.
--   3. The table survives a reload: eddy.testing's driver reload, and SIGHUP to a running
--      `eddy run --input -`; a new version with another join function joins against
--      the table the old one filled. The join function's contract (a copy of the table
--      value; nil forwards a null value; an error dead-letters the record).
--   4. A join after a key change repartitions the stream (file mode); load errors: a join with
--      something that is not a table; stream-stream joins.
--   5. Kafka mode (eddy broker): orders left-joined with customers; a restart on an empty
--      --state-dir restores the table from its changelog; a table topic whose partition
--      count differs from the stream's stops `eddy run` with exit 1 naming both.
--   6. Global tables (job:global_table, Kafka Streams' GlobalKTable): file mode (orders of
--      every partition join products of other partitions through key_fn; a missing product,
--      a tombstone, nil keys and values; key changes and a repartition before the join; the
--      store in the pseudo-task 32767_0); load errors (key_fn with a job:table); Kafka mode
--      (eddy broker, products 2 partitions, orders 4): the whole topic read before the
--      orders, an update seen by a later order, a restart on the same state dir reads only
--      what is new, an empty state dir reads the topic again, --threads 2 workers each read
--      every partition.
local h = require "helper"
local cjson = require "cjson"
local testing = require "eddy.testing"
local R = require "tools.agg_ref"
local fj = require "tools.file_job"

local PRE = fj.PRE
local run, check, assert_clean, strip, summary = fj.run, fj.check, fj.assert_clean, fj.strip, fj.summary

-- ===========================================================================================
-- 1. Kafka Streams' tests, transcribed
-- ===========================================================================================

-- The topology of both test classes: builder.stream(streamTopic) joined with
-- builder.table(tableTopic), Integer keys, String values, the joiner
-- MockValueJoiner.TOSTRING_JOINER (value1 + "+" + value2, "null" for a missing value).
local function ks_script(method)
    return ([[
local job = eddy.job { name = "ks-%s" }
local t = job:table("tableTopic", { key = "number" })
job:source("streamTopic", { key = "number" })
   :%s(t, function(v1, v2) return v1 .. "+" .. (v2 == nil and "null" or v2) end)
   :to("out", { key = "number" })
return job
]]):format(method, method)
end

local EXPECTED_KEYS = { 0, 1, 2, 3 }     -- expectedKeys

-- pushToTable's timestamps are r.nextInt(Integer.MAX_VALUE) with a clock seed there;
-- here the same kind of numbers from a fixed seed (a table's timestamps do not matter
-- to a stream-table join, which is what those random values show).
local table_ts = R.rng(962)

-- Steps: pushToStream(n, prefix) (key i, value prefix..i, ts i); pushToTable(n, prefix)
-- (key i, value prefix..i, ts random); pushNullValueToTable(n) (key i, null, ts 0 —
-- TestInputTopic's start time with Duration.ZERO); checkAndClearProcessResult(...).
local function stream(n, prefix) return { what = "stream", n = n, prefix = prefix } end
local function tbl(n, prefix) return { what = "table", n = n, prefix = prefix } end
local function deletes(n) return { what = "delete", n = n } end
local function expect(...) return { what = "expect", list = { ... } } end
local function kvt(k, v, ts) return { key = tostring(k), value = v, ts = ts } end    -- KeyValueTimestamp
local EMPTY = {}

local function records_of(step)
    local recs = {}
    for i = 1, step.n do
        local k = EXPECTED_KEYS[i]
        if step.what == "stream" then
            recs[i] = { topic = "streamTopic", key = tostring(k), value = step.prefix .. k, ts = i - 1 }
        elseif step.what == "table" then
            recs[i] = { topic = "tableTopic", key = tostring(k), value = step.prefix .. k,
                ts = table_ts.int(0, 2147483646) }
        else
            recs[i] = { topic = "tableTopic", key = tostring(k), value = nil, ts = 0 }
        end
    end
    return recs
end

-- Phase by phase with the driver (each read is one `eddy run` on the same state),
-- then the whole input as one file-mode run: the same outputs in the same order.
local function ks_scenario(method, steps)
    local list = {}
    for n, step in ipairs(steps) do
        local items = step.what == "expect"
            and { { expect = step.list, what = ("checkAndClearProcessResult #%d"):format(n) } }
            or records_of(step)
        for _, x in ipairs(items) do list[#list + 1] = x end
    end
    fj.phases(ks_script(method), "out", list, "the same input as one run")
end

describe("KStreamKTableJoinTest, transcribed (stream:join)", function()
    it("shouldNotJoinWithEmptyTableOnStreamUpdates", function()
        ks_scenario("join", {
            stream(2, "X"), expect(),       -- push two items to the primary stream. the table is empty
        })
    end)

    it("shouldNotJoinOnTableUpdates", function()
        ks_scenario("join", {
            stream(2, "X"), expect(),
            tbl(2, "Y"), expect(),          -- push two items to the table. this should not produce any item.
            stream(4, "X"),                 -- push all four items to the primary stream. this should produce two items.
            expect(kvt(0, "X0+Y0", 0), kvt(1, "X1+Y1", 1)),
            tbl(4, "YY"), expect(),         -- push all items to the table. this should not produce any item
            stream(4, "X"),                 -- push all four items to the primary stream. this should produce four items.
            expect(kvt(0, "X0+YY0", 0), kvt(1, "X1+YY1", 1), kvt(2, "X2+YY2", 2), kvt(3, "X3+YY3", 3)),
            tbl(4, "YYY"), expect(),        -- push all items to the table. this should not produce any item
        })
    end)

    it("shouldJoinOnlyIfMatchFoundOnStreamUpdates", function()
        ks_scenario("join", {
            tbl(2, "Y"), expect(),
            stream(4, "X"),
            expect(kvt(0, "X0+Y0", 0), kvt(1, "X1+Y1", 1)),
        })
    end)

    it("shouldClearTableEntryOnNullValueUpdates", function()
        ks_scenario("join", {
            tbl(4, "Y"), expect(),
            stream(4, "X"),
            expect(kvt(0, "X0+Y0", 0), kvt(1, "X1+Y1", 1), kvt(2, "X2+Y2", 2), kvt(3, "X3+Y3", 3)),
            deletes(2), expect(),           -- push two items with null to the table as deletes.
            stream(4, "XX"),                -- this should produce two items.
            expect(kvt(2, "XX2+Y2", 2), kvt(3, "XX3+Y3", 3)),
        })
    end)

    -- shouldLogAndMeterWhenSkippingNullLeftKey / ...NullLeftValue: inputTopic.pipeInput(null, "A")
    -- and pipeInput(1, null) are skipped (Kafka Streams logs and meters them; here: no
    -- output, no dead letter, no error).
    for _, case in ipairs({ { "shouldLogAndMeterWhenSkippingNullLeftKey", nil, "A" },
                            { "shouldLogAndMeterWhenSkippingNullLeftValue", "1", nil } }) do
        it(case[1], function()
            local r = run(ks_script("join"), {
                { topic = "tableTopic", key = "1", value = "Y1", ts = 0 },
                { topic = "streamTopic", key = case[2], value = case[3], ts = 0 } })
            assert_clean(r)
            assert.are.same({}, r.out)
            assert.are.same({ inn = 2, out = 0, errors = 0, dlq = 0 }, r.summary)
        end)
    end
end)

describe("KStreamKTableLeftJoinTest, transcribed (stream:left_join)", function()
    it("shouldJoinWithEmptyTableOnStreamUpdates", function()
        ks_scenario("left_join", {
            stream(2, "X"), expect(kvt(0, "X0+null", 0), kvt(1, "X1+null", 1)),
        })
    end)

    it("shouldNotJoinOnTableUpdates", function()
        ks_scenario("left_join", {
            stream(2, "X"), expect(kvt(0, "X0+null", 0), kvt(1, "X1+null", 1)),
            tbl(2, "Y"), expect(),
            stream(4, "X"),
            expect(kvt(0, "X0+Y0", 0), kvt(1, "X1+Y1", 1), kvt(2, "X2+null", 2), kvt(3, "X3+null", 3)),
            tbl(4, "YY"), expect(),
            stream(4, "X"),
            expect(kvt(0, "X0+YY0", 0), kvt(1, "X1+YY1", 1), kvt(2, "X2+YY2", 2), kvt(3, "X3+YY3", 3)),
            tbl(4, "YYY"), expect(),
        })
    end)

    it("shouldJoinRegardlessIfMatchFoundOnStreamUpdates", function()
        ks_scenario("left_join", {
            tbl(2, "Y"), expect(),
            stream(4, "X"),
            expect(kvt(0, "X0+Y0", 0), kvt(1, "X1+Y1", 1), kvt(2, "X2+null", 2), kvt(3, "X3+null", 3)),
        })
    end)

    it("shouldClearTableEntryOnNullValueUpdates", function()
        ks_scenario("left_join", {
            tbl(4, "Y"), expect(),
            stream(4, "X"),
            expect(kvt(0, "X0+Y0", 0), kvt(1, "X1+Y1", 1), kvt(2, "X2+Y2", 2), kvt(3, "X3+Y3", 3)),
            deletes(2), expect(),
            stream(4, "XX"),
            expect(kvt(0, "XX0+null", 0), kvt(1, "XX1+null", 1), kvt(2, "XX2+Y2", 2), kvt(3, "XX3+Y3", 3)),
        })
    end)

    -- Not in that test class: a null key or a null value on the stream side of a left
    -- join. eddy drops both, as Kafka Streams did before 3.7; since 3.7 (KIP-962) a left
    -- join forwards a null-key record with a null table value. (README: Tables and joins.)
    it("drops stream records with a null key or a null value (as Kafka Streams before 3.7)", function()
        local r = run(ks_script("left_join"), {
            { topic = "tableTopic", key = "1", value = "Y1", ts = 0 },
            { topic = "streamTopic", key = nil, value = "A", ts = 0 },
            { topic = "streamTopic", key = "1", value = nil, ts = 0 },
            { topic = "streamTopic", key = "1", value = "B", ts = 5 } })
        assert_clean(r)
        assert.are.same({ kvt(1, "B+Y1", 5) }, strip(r.out))
    end)
end)

-- ===========================================================================================
-- 2. Randomized, against a simulation
-- ===========================================================================================

local RANDOM_JOB = [[
local job = eddy.job { name = "rnd-join" }
local t = job:table("profiles", { value = "json" })
local s = job:source("events")
s:join(t, function(v, p, k) return v .. "|" .. p.name .. "#" .. p.rev .. "|" .. k end)
 :to("inner")
s:left_join(t, function(v, p, k) return v .. "|" .. (p and (p.name .. "#" .. p.rev) or "-") .. "|" .. k end)
 :to("left")
t:to_stream():to("changes", { value = "json" })
return job
]]

-- n events over nkeys keys: table updates (JSON), table deletes, stream records, and
-- stream/table records with a null key or value; timestamps mostly increasing, some
-- out of order.
local function random_events(seed, n, nkeys)
    local g = R.rng(seed)
    local keys = R.key_pool(nkeys)
    local names = { "ana", "bo", "chen", "dara", "eli", "fay" }
    local ev, ts = {}, 1700000000000
    for i = 1, n do
        ts = ts + g.int(0, 5)
        local t = g.chance(0.05) and ts - g.int(1, 1000) or ts
        local x = g.int(1, 100)
        local k = g.pick(keys)
        if x <= 33 then
            ev[i] = { topic = "profiles", key = k, value = cjson.encode({ name = g.pick(names), rev = i }), ts = t }
        elseif x <= 41 then
            ev[i] = { topic = "profiles", key = k, value = nil, ts = t }
        elseif x <= 42 then
            ev[i] = { topic = "profiles", key = nil, value = '{"name":"nobody","rev":0}', ts = t }
        elseif x <= 45 then
            ev[i] = { topic = "events", key = nil, value = "e" .. i, ts = t }
        elseif x <= 48 then
            ev[i] = { topic = "events", key = k, value = nil, ts = t }
        else
            ev[i] = { topic = "events", key = k, value = "e" .. i, ts = t }
        end
    end
    return ev
end

-- Kafka Streams' semantics, directly: the table is the latest value per key; each
-- stream record with a key and a value joins the table's value at that moment.
-- Returns the expected outputs grouped by topic and partition, and the final table.
local function simulate(events, partitions)
    local profiles, want = {}, {}
    local function out(topic, key, value, ts)
        local p = h.partition_for(key, partitions)
        local id = topic .. "/" .. p
        want[id] = want[id] or {}
        table.insert(want[id], { key = key, value = value, ts = ts })
    end
    for _, e in ipairs(events) do
        if e.topic == "profiles" then
            if e.key ~= nil then
                profiles[e.key] = e.value and cjson.decode(e.value) or nil
                out("changes", e.key, e.value, e.ts)
            end
        elseif e.key ~= nil and e.value ~= nil then
            local p = profiles[e.key]
            if p then out("inner", e.key, e.value .. "|" .. p.name .. "#" .. p.rev .. "|" .. e.key, e.ts) end
            out("left", e.key, e.value .. "|" .. (p and (p.name .. "#" .. p.rev) or "-") .. "|" .. e.key, e.ts)
        end
    end
    return want, profiles
end

describe("stream-table joins against a simulation (file mode, random interleavings)", function()
    for _, P in ipairs({ 1, 4 }) do
        it(("join and left_join, 50 keys, table updates and deletes interleaved (%d partition(s))"):format(P), function()
            local events = random_events(4000 + P, 4000, 50)
            local r = run(RANDOM_JOB, events, { "--partitions", tostring(P) }, { keep_state = true })
            local ok, err = pcall(function()
                assert_clean(r)
                local want, final = simulate(events, P)
                local got, n = {}, 0
                for _, e in ipairs(r.out) do
                    local id = e.topic .. "/" .. e.partition
                    got[id] = got[id] or {}
                    local list = got[id]
                    assert.are.equal(#list, e.offset, id .. ": offsets count from 0 without gaps")
                    local value = e.payload
                    if e.topic == "changes" and value ~= nil then value = cjson.decode(value) end
                    list[#list + 1] = { key = e.key, value = value, ts = e.ts }
                    n = n + 1
                end
                -- table changes compared as decoded JSON: the same object, whatever the field order
                for id, list in pairs(want) do
                    if id:match("^changes/") then
                        for _, x in ipairs(list) do
                            if x.value then x.value = cjson.decode(x.value) end
                        end
                    end
                end
                local nwant = 0
                for id, list in pairs(want) do
                    nwant = nwant + #list
                    assert.are.same(list, got[id] or {}, "outputs of " .. id)
                end
                assert.are.equal(nwant, n, "no other outputs")
                assert.is_truthy(#(want["inner/0"] or {}) > 50 and #(want["left/0"] or {}) > #(want["inner/0"] or {}))
                -- the table's store holds exactly the simulation's final table
                local code, dump, derr = h.eddy({ "stores", r.script, "table-profiles", "--state-dir", r.dir .. "/state" })
                assert.are.equal(0, code, derr)
                local stored, nstored, nfinal = {}, 0, 0
                for line in dump:gmatch("[^\n]+") do
                    local e = cjson.decode(line)
                    stored[e.key] = e.value
                    nstored = nstored + 1
                end
                for k, v in pairs(final) do
                    nfinal = nfinal + 1
                    assert.are.same(v, stored[k], "table entry " .. k)
                end
                assert.are.equal(nfinal, nstored, "table entries")
            end)
            os.execute("rm -rf " .. h.q(r.dir))
            if not ok then error(err, 0) end
        end)
    end
end)

-- ===========================================================================================
-- 3. Reloads keep the table
-- ===========================================================================================

local function reload_job(version, method)
    return ([[
local eddy = require "eddy"
local job = eddy.job { name = "reload-join" }
local t = job:table("prices", { value = "number" })
job:source("orders", { value = "number" })
   :%s(t, function(qty, price, sku) return "%s:" .. sku .. ":" .. qty .. "x" .. tostring(price) end)
   :to("priced")
return job
]]):format(method, version)
end

describe("the table survives a reload", function()
    it("eddy.testing's driver: a new version with another join function joins the existing table", function()
        local d = testing.driver(reload_job("v1", "join"))
        d:pipe("prices", { { "tp-58", 34, 1 }, { "cb-1l", 24, 2 }, { "eg-01", 189, 3 } })
        d:pipe("orders", { { "tp-58", 2, 10 }, { "zz-99", 1, 11 } })
        assert.are.same({ "v1:tp-58:2x34" }, d:read_values("priced"))
        d:reload(reload_job("v2", "left_join"))
        -- no table records since the reload: v2 sees what v1 stored
        d:pipe("orders", { { "cb-1l", 1, 20 }, { "eg-01", 3, 21 }, { "zz-99", 1, 22 } })
        assert.are.same({ "v2:cb-1l:1x24", "v2:eg-01:3x189", "v2:zz-99:1xnil" }, d:read_values("priced"))
        d:pipe("prices", "cb-1l", nil, 30)
        d:pipe("prices", "tp-58", 36, 31)
        d:pipe("orders", { { "cb-1l", 1, 32 }, { "tp-58", 1, 33 } })
        assert.are.same({ "v2:cb-1l:1xnil", "v2:tp-58:1x36" }, d:read_values("priced"))
        assert.are.same({ ["tp-58"] = 36, ["eg-01"] = 189 }, d:store("table-prices"))
        d:close()
    end)

    it("SIGHUP to a running job: the next records use the new join function and the same table", function()
        local ffi = require "ffi"
        pcall(ffi.cdef, "typedef void (*eddy_joins_sighandler)(int); eddy_joins_sighandler signal(int, eddy_joins_sighandler);")
        ffi.C.signal(13, ffi.cast("eddy_joins_sighandler", 1))       -- SIGPIPE: ignored
        local system = require "system"
        local dir = h.tmpdir()
        local path, fifo = dir .. "/job.lua", dir .. "/in.fifo"
        local out, err, pidf, rcf = dir .. "/out.jsonl", dir .. "/err", dir .. "/pid", dir .. "/rc"
        h.write(path, reload_job("v1", "join"))
        os.execute("mkfifo " .. h.q(fifo))
        local cmd = ("%s run %s --input - --output %s --state-dir %s --no-watch 2> %s < %s & echo $! > %s; wait $!; echo $? > %s")
            :format(h.q(h.EDDY), h.q(path), h.q(out), h.q(dir .. "/state"), h.q(err), h.q(fifo), h.q(pidf), h.q(rcf))
        os.execute("timeout 60 sh -c " .. h.q(cmd) .. " > /dev/null 2>&1 &")
        local w = assert(io.open(fifo, "w"))
        w:setvbuf("no")
        local function wait(what, fn)
            local deadline = system.monotime() + 5
            while not fn() do
                if system.monotime() > deadline then
                    error(("timed out waiting for %s; log:\n%s"):format(what, h.read(err) or ""), 2)
                end
                system.sleep(0.02)
            end
        end
        local function send(recs)
            local lines = {}
            for i, r in ipairs(recs) do
                lines[i] = cjson.encode({ topic = r[1], key = r[2], payload = r[3] == nil and cjson.null or r[3], ts = r[4] })
            end
            assert(w:write(table.concat(lines, "\n") .. "\n"))
        end
        local function values()
            local v = {}
            for i, e in ipairs(h.envelopes(h.read(out) or "")) do v[i] = e.payload end
            return v
        end
        local ok, e = pcall(function()
            wait("eddy's pid", function() return (h.read(pidf) or ""):match("%d+") end)
            send({ { "prices", "tp-58", "34", 1 }, { "prices", "cb-1l", "24", 2 }, { "orders", "tp-58", "2", 3 } })
            wait("the first output", function() return #values() >= 1 end)
            h.write(path, reload_job("v2", "left_join"))
            os.execute("kill -HUP " .. (h.read(pidf)):match("%d+"))
            wait("the swap", function() return (h.read(err) or ""):find("swapped in") end)
            send({ { "orders", "cb-1l", "3", 4 }, { "orders", "zz-99", "1", 5 } })
            wait("two more outputs", function() return #values() >= 3 end)
            w:close()
            w = nil
            wait("eddy's exit", function() return h.read(rcf) end)
            assert.are.equal("0", (h.read(rcf)):match("%d+"))
            assert.are.same({ "v1:tp-58:2x34", "v2:cb-1l:3x24", "v2:zz-99:1xnil" }, values())
        end)
        if w then w:close() end
        os.execute("rm -rf " .. h.q(dir))
        if not ok then error(e, 0) end
    end)
end)

describe("the join function", function()
    it("the join function: a copy of the table value, nil forwards a null value, an error dead-letters", function()
        local r = run([[
local job = eddy.job { name = "fn" }
local t = job:table("c", { value = "json" })
job:source("o")
   :join(t, function(v, c, k)
      if v == "boom" then error("bad order") end
      if v == "nil" then return nil end
      local before = c.name
      c.name = "changed in the join function"
      return v .. ":" .. before
   end)
   :to("out")
return job
]], { { topic = "c", key = "a", value = '{"name":"Ana"}', ts = 1 },
      { topic = "o", key = "a", value = "x", ts = 2 },
      { topic = "o", key = "a", value = "y", ts = 3 },
      { topic = "o", key = "a", value = "nil", ts = 4 },
      { topic = "o", key = "a", value = "boom", ts = 5 } })
        assert.are.equal(0, r.code, r.stderr)
        assert.are.same({ { key = "a", value = "x:Ana", ts = 2 }, { key = "a", value = "y:Ana", ts = 3 },
                          { key = "a", ts = 4 } }, strip(r.out))
        assert.are.equal(1, #r.dlq)
        assert.are.equal("boom", r.dlq[1].payload)
        assert.is_truthy(tostring(h.header(r.dlq[1], "eddy.error")):find("job.lua:6: bad order", 1, true))
    end)
end)

-- ===========================================================================================
-- 4. Load errors
-- ===========================================================================================

describe("join errors at load time", function()
    for _, step in ipairs({
        { "map", ':map(function(k, v) return v, k end)' },
        { "select_key", ':select_key(function(k, v) return v end)' },
        { "flat_map", ':flat_map(function(k, v, emit) emit(v, k) end)' },
    }) do
        it(("a join after %s (a key change) repartitions the stream by the table's key"):format(step[1]), function()
            local script = [[
local job = eddy.job { name = "rekey" }
local t = job:table("customers")
job:source("orders")
   ]] .. step[2] .. [[

   :join(t, function(o, c) return o .. "/" .. c end)
   :to("out")
return job
]]
            local code, out, err = check(script)
            assert.are.equal(0, code, err)
            assert.is_truthy(out:find("repartition table-customers-join-1", 1, true), out)
            -- orders keyed by order id, value = the customer id; 4 partitions, so the
            -- re-keyed records reach the table's partition through the repartition
            local r = run(script, {
                { topic = "customers", key = "c1", value = "Ana", ts = 1 },
                { topic = "customers", key = "c2", value = "Bob", ts = 2 },
                { topic = "orders", key = "o1", value = "c1", ts = 3 },
                { topic = "orders", key = "o2", value = "c9", ts = 4 },
                { topic = "orders", key = "o3", value = "c2", ts = 5 },
            }, { "--partitions", "4" })
            assert_clean(r)
            local want = step[1] == "select_key"
                and { { key = "c1", value = "c1/Ana", ts = 3 }, { key = "c2", value = "c2/Bob", ts = 5 } }
                or { { key = "c1", value = "o1/Ana", ts = 3 }, { key = "c2", value = "o3/Bob", ts = 5 } }
            local got = strip(r.out)
            table.sort(got, function(a, b) return a.ts < b.ts end)
            assert.are.same(want, got)
        end)
    end

    it("a re-keyed stream cannot join a table already used beside its topic, nor an aggregation", function()
        local code, _, err = check([[
local job = eddy.job { name = "bad" }
local t = job:table("customers")
job:source("orders"):join(t, function(o, c) return o end):to("out")
job:source("returns")
   :select_key(function(k, v) return v end)
   :join(t, function(o, c) return o end)
   :to("out2")
return job
]])
        assert.are.equal(1, code)
        assert.is_truthy(err:find("already used at", 1, true), err)
        assert.is_truthy(err:find("job.lua:4", 1, true), err)     -- the other use
        assert.is_truthy(err:find("job.lua:7", 1, true), err)     -- the re-keyed join
        code, _, err = check([[
local job = eddy.job { name = "bad" }
local n = job:source("clicks"):group_by_key():count { store = "n" }
job:source("orders")
   :select_key(function(k, v) return v end)
   :join(n, function(o, c) return o end)
   :to("out")
return job
]])
        assert.are.equal(1, code)
        assert.is_truthy(err:find("only a table from job:table(topic) can be joined through an automatic repartition", 1, true), err)
        assert.is_truthy(err:find("job.lua:6", 1, true), err)
    end)

    it("a key-preserving step before the join is fine (map_values, filter, peek)", function()
        local r = run([[
local job = eddy.job { name = "ok" }
local t = job:table("customers")
job:source("orders")
   :map_values(function(v) return v:upper() end)
   :filter(function(k, v) return v ~= "SKIP" end)
   :peek(function() end)
   :left_join(t, function(o, c, k) return o .. "/" .. tostring(c) .. "/" .. k end)
   :to("out")
return job
]], { { topic = "customers", key = "c1", value = "Ana", ts = 1 },
      { topic = "orders", key = "c1", value = "o1", ts = 2 },
      { topic = "orders", key = "c2", value = "skip", ts = 3 },
      { topic = "orders", key = "c2", value = "o2", ts = 4 } })
        assert_clean(r)
        assert.are.same({ { key = "c1", value = "O1/Ana/c1", ts = 2 }, { key = "c2", value = "O2/nil/c2", ts = 4 } }, strip(r.out))
    end)

    for _, what in ipairs({
        { "a plain Lua table", "{}" },
        { "a string", '"customers"' },
        { "a windowed aggregate's table", 'job:source("clicks"):group_by_key():window(eddy.tumbling { size = 10 }):count { store = "n" }', "windowed table cannot be joined" },
    }) do
        it(("a join with %s is refused with a clear error"):format(what[1]), function()
            local code, _, err = check(([[
local job = eddy.job { name = "bad" }
local other = %s
job:source("orders")
   :left_join(other, function(o, c) return o end)
   :to("out")
return job
]]):format(what[2]))
            assert.are.equal(1, code)
            assert.is_truthy(err:find(what[3] or "expected a table (job:table(topic) or an aggregation)", 1, true), err)
            assert.is_truthy(err:find("job.lua:5", 1, true), err)
        end)
    end

    it("a join without a function is refused", function()
        local code, _, err = check([[
local job = eddy.job { name = "bad" }
local t = job:table("customers")
job:source("orders"):join(t):to("out")
return job
]])
        assert.are.equal(1, code)
        assert.is_truthy(err:find("join: expected a function", 1, true), err)
        assert.is_truthy(err:find("job.lua:4", 1, true), err)
    end)

    for _, method in ipairs({ "join", "left_join" }) do
        it(("stream:%s(other_stream, fn) without a join window says how to give one"):format(method), function()
            local code, _, err = check(([[
local job = eddy.job { name = "bad" }
local clicks = job:source("clicks")
job:source("orders")
   :%s(clicks, function(o, c) return o end)
   :to("out")
return job
]]):format(method))
            assert.are.equal(1, code)
            assert.is_truthy(err:find("the window must be eddy.join_window{", 1, true), err)
            assert.is_truthy(err:find("job.lua:5", 1, true), err)
        end)
    end

    it("a table topic that is also a source, or a store name used twice, is refused", function()
        local code, _, err = check([[
local job = eddy.job { name = "bad" }
job:source("customers"):to("copy")
local t = job:table("customers")
return job
]])
        assert.are.equal(1, code)
        assert.is_truthy(err:find('topic "customers" is already a source', 1, true), err)
        code, _, err = check([[
local job = eddy.job { name = "bad" }
local a = job:table("customers", { store = "c" })
local b = job:table("accounts", { store = "c" })
return job
]])
        assert.are.equal(1, code)
        assert.is_truthy(err:find('store "c" is already used', 1, true), err)
    end)
end)

-- ===========================================================================================
-- 5. Kafka mode
-- ===========================================================================================

local KAFKA_JOB = [[
local job = eddy.job { name = "orders-enrich-k" }
local customers = job:table("%s", { value = "json" })
job:source("orders", { value = "json" })
   :left_join(customers, function(o, c, k)
      return { order = o.id, customer = k, name = c and c.name or eddy.null, tier = c and c.tier or eddy.null }
   end)
   :to("orders-enriched", { value = "json" })
return job
]]

describe("stream-table join in Kafka mode (eddy broker)", function()
    local K = require "kafka_helper"
    local cluster = K.cluster({ { "orders", 4 }, { "customers", 4 }, { "customers-narrow", 2 },
        { "orders-enriched", 4 }, { "orders-b", 4 }, { "customers-b", 4 }, { "enriched-b", 4 } })
    local dir, brokers, procs
    setup(function() dir, brokers, procs = cluster:start() end)
    teardown(function() cluster:stop() end)

    local function rec(topic, key, value, ts)
        return { topic = topic, key = key, value = value and cjson.encode(value) or nil, ts = ts,
            partition = h.partition_for(key, 4) }
    end

    it("a table topic with another partition count than the stream's: exit 1 naming both", function()
        local script = h.script(dir, "narrow.lua", PRE .. KAFKA_JOB:format("customers-narrow"))
        local p = K.start_eddy(dir, "narrow", script, brokers, { "--state-dir", dir .. "/narrow-state" })
        procs[#procs + 1] = p
        local rc = p:wait(20)
        assert.are.equal(1, rc, p:stderr())
        local err = p:stderr()
        assert.is_truthy(err:find("customers-narrow has 2 partitions", 1, true), err)
        assert.is_truthy(err:find("orders has 4", 1, true), err)
        assert.is_truthy(err:find("co-partitioned", 1, true), err)
    end)

    it("enriches orders; after a restart on an EMPTY state dir the table comes back from its changelog", function()
        local script = h.script(dir, "enrich.lua", PRE .. KAFKA_JOB:format("customers"))
        local T0 = 1710237600000
        local names = { "Ana", "Jonas", "Chloé", "Liam", "Sofia", "Emma", "Oliver", "Lucía", "Noah", "Mia" }
        local customers, ts = {}, T0
        local input = {}
        for i = 1, 20 do
            local id = ("c-%02d"):format(i)
            ts = ts + 1
            local c = { name = names[(i - 1) % #names + 1] .. " " .. i, tier = ({ "bronze", "silver", "gold" })[i % 3 + 1] }
            input[#input + 1] = rec("customers", id, c, ts)
            customers[id] = c
        end
        -- an update and an erasure before any order
        ts = ts + 1
        customers["c-03"] = { name = "Chloé 3", tier = "platinum" }
        input[#input + 1] = rec("customers", "c-03", customers["c-03"], ts)
        ts = ts + 1
        customers["c-05"] = nil
        input[#input + 1] = rec("customers", "c-05", nil, ts)
        K.produce(brokers, input, dir)

        local g = R.rng(77)
        local function orders(from, to)
            local list, want = {}, {}
            for i = from, to do
                ts = ts + 1000
                local id = i % 7 == 0 and "c-99" or ("c-%02d"):format(g.int(1, 20))
                list[#list + 1] = rec("orders", id, { id = ("ord-%d"):format(i), total = g.int(5, 300) }, ts)
                local c = customers[id]
                local p = h.partition_for(id, 4)
                want[p] = want[p] or {}
                table.insert(want[p], { key = id, ts = ts, value = { order = ("ord-%d"):format(i), customer = id,
                    name = c and c.name or cjson.null, tier = c and c.tier or cjson.null } })
            end
            return list, want
        end
        local function by_partition(recs)
            local got = {}
            for _, e in ipairs(K.sort_by_offset(recs)) do
                got[e.partition] = got[e.partition] or {}
                table.insert(got[e.partition], { key = e.key, ts = e.ts, value = cjson.decode(e.payload) })
            end
            return got
        end

        -- run 1: the table first (every customer record taken and committed), then orders
        local p1 = K.start_eddy(dir, "run1", script, brokers, { "--state-dir", dir .. "/state-1", "--commit-interval", "200" })
        procs[#procs + 1] = p1
        K.wait_for("the customers taken and committed", 30, function()
            if not p1:running() then error("eddy exited " .. tostring(p1:rc()) .. ":\n" .. p1:stderr(), 0) end
            local off = K.offsets(brokers, "orders-enrich-k", { { "customers", 4 } }).customers
            for p = 0, 3 do
                if not off[p] or (off[p].high > 0 and off[p].committed ~= off[p].high) then return nil, cjson.encode(off) end
            end
            return true
        end, 0.3)
        local first, want1 = orders(1, 30)
        K.produce(brokers, first, dir)
        local out1 = K.wait_records(brokers, "orders-enriched", 30, 30, p1)
        assert.are.equal(30, #out1)
        assert.are.same(want1, by_partition(out1))
        local rc = p1:stop("TERM", 15)
        assert.are.equal(0, rc, p1:stderr())

        -- run 2: a new, empty state dir; new orders produced while nothing runs
        local second, want2 = orders(31, 45)
        K.produce(brokers, second, dir)
        local p2 = K.start_eddy(dir, "run2", script, brokers, { "--state-dir", dir .. "/state-2", "--commit-interval", "200" })
        procs[#procs + 1] = p2
        local all = K.wait_records(brokers, "orders-enriched", 45, 40, p2)
        assert.are.equal(45, #all, "every order once: nothing of run 1 taken again")
        local got = by_partition(all)
        for p, list in pairs(want2) do
            local tail = {}
            for i = #(want1[p] or {}) + 1, #(got[p] or {}) do tail[#tail + 1] = got[p][i] end
            assert.are.same(list, tail, "partition " .. p .. " after the restart")
        end
        assert.is_truthy(p2:stderr():find("restored", 1, true), p2:stderr())
        assert.are.equal(0, p2:stop("TERM", 15), p2:stderr())
        assert.are.equal(45, #K.consume(brokers, "orders-enriched"), "nothing more after the stop")
    end)

    -- Kafka Streams picks a task's next record by timestamp across its partitions
    -- (max.task.idle.ms), so customers older than the orders are in the table first even
    -- when both topics already hold a backlog. eddy does the same for jobs with tables
    -- (host/eddy_timesync.c): before it, 141 of these 200 orders missed their customer.
    it("a backlog in both topics: the table's older records first (timestamp synchronization)", function()
        local script = h.script(dir, "backlog.lua", PRE .. [[
local job = eddy.job { name = "orders-enrich-b" }
local customers = job:table("customers-b", { value = "json" })
job:source("orders-b", { value = "json" })
   :left_join(customers, function(o, c, k) return { order = o.id, name = c and c.name or eddy.null } end)
   :to("enriched-b", { value = "json" })
return job
]])
        local T0, input = 1710237600000, {}
        for i = 1, 200 do
            input[#input + 1] = rec("customers-b", ("c-%03d"):format(i), { name = "n" .. i }, T0 + i)
        end
        K.produce(brokers, input, dir)
        local orders = {}
        for i = 1, 200 do
            orders[#orders + 1] = rec("orders-b", ("c-%03d"):format(i), { id = i }, T0 + 1000 + i)
        end
        K.produce(brokers, orders, dir)
        local p = K.start_eddy(dir, "backlog", script, brokers, { "--state-dir", dir .. "/state-b" })
        procs[#procs + 1] = p
        local out = K.wait_records(brokers, "enriched-b", 200, 40, p)
        local missing = 0
        for _, e in ipairs(out) do
            local v = cjson.decode(e.payload)
            if v.name == cjson.null then missing = missing + 1 end
        end
        assert.are.equal(200, #out)
        assert.are.equal(0, missing, "orders processed before their (older) customer")
        assert.are.equal(0, p:stop("TERM", 15), p:stderr())
    end)
end)

-- ===========================================================================================
-- 6. Global tables (job:global_table, Kafka Streams' GlobalKTable)
-- ===========================================================================================

-- Orders keyed by customer, products keyed by SKU: the join looks the product up by the
-- order's SKU (key_fn), whatever partition the order and the product are in.
local GLOBAL_JOB = [[
local job = eddy.job { name = "%s" }
local products = job:global_table("%s", { value = "json" })
local orders = job:source("%s", { value = "json" })
local function sku(k, v) return v.sku end
orders:join(products, function(o, p, k) return o.id .. ":" .. p.name .. ":" .. tostring(k) end, sku)
      :to("inner")
orders:left_join(products, function(o, p, k) return o.id .. ":" .. (p and p.name or "-") .. ":" .. tostring(k) end, sku)
      :to("left")
return job
]]

describe("global tables", function()
    -- the store of a global table, from `eddy stores`: { [key] = value } and the tasks seen
    local function global_store(script, state, store)
        local code, dump, err = h.eddy({ "stores", script, store, "--state-dir", state })
        assert.are.equal(0, code, err)
        local entries, tasks, n = {}, {}, 0
        for line in dump:gmatch("[^\n]+") do
            local e = cjson.decode(line)
            entries[e.key] = e.value
            tasks[e.task] = true
            n = n + 1
        end
        return entries, tasks, n
    end

    it("file mode: orders of every partition join products of other partitions through key_fn; "
        .. "a missing product, a tombstone, nil keys; the store is in task 32767_0", function()
        local function o(p, key, id, sku, ts)
            return { topic = "orders", partition = p, key = key, ts = ts,
                value = id and cjson.encode({ id = id, sku = sku }) or nil }
        end
        local function prod(p, key, name, ts)
            return { topic = "products", partition = p, key = key, ts = ts,
                value = name and cjson.encode({ name = name }) or nil }
        end
        local r = run(GLOBAL_JOB:format("gt-file", "products", "orders"), {
            prod(1, "sku-1", "Tea", 1), prod(0, "sku-2", "Mug", 2), prod(1, "sku-3", "Pot", 3),
            prod(0, nil, "Ghost", 4),              -- a product without a key: skipped
            o(3, "u1", "o1", "sku-1", 10),         -- order in partition 3, product in 1
            o(0, "u2", "o2", "sku-2", 11),
            o(2, "u3", "o3", "sku-9", 12),         -- no such product: left join only
            prod(1, "sku-1", nil, 13),             -- a tombstone deletes sku-1
            o(1, "u4", "o4", "sku-1", 14),         -- ... so this one finds nothing
            prod(0, "sku-2", "Big mug", 15),       -- an update: later orders see it
            o(2, "u5", "o5", "sku-2", 16),
            o(1, "u6", "o6", nil, 17),             -- key_fn gives nil: inner drops, left joins nil
            o(3, nil, "o7", "sku-3", 18),          -- a nil stream key, a lookup key: joined
            o(0, "u8", nil, nil, 19),              -- a nil value: dropped by both
            o(1, nil, "o9", nil, 20),              -- a nil key and no lookup key: dropped by both
        }, { "--partitions", "4" }, { keep_state = true })
        local ok, err = pcall(function()
            assert_clean(r)
            local inner, left = {}, {}
            for _, e in ipairs(r.out) do
                table.insert(e.topic == "inner" and inner or left, { key = e.key, value = e.payload, ts = e.ts })
            end
            assert.are.same({
                { key = "u1", value = "o1:Tea:u1", ts = 10 }, { key = "u2", value = "o2:Mug:u2", ts = 11 },
                { key = "u5", value = "o5:Big mug:u5", ts = 16 }, { key = nil, value = "o7:Pot:nil", ts = 18 },
            }, inner)
            assert.are.same({
                { key = "u1", value = "o1:Tea:u1", ts = 10 }, { key = "u2", value = "o2:Mug:u2", ts = 11 },
                { key = "u3", value = "o3:-:u3", ts = 12 }, { key = "u4", value = "o4:-:u4", ts = 14 },
                { key = "u5", value = "o5:Big mug:u5", ts = 16 }, { key = "u6", value = "o6:-:u6", ts = 17 },
                { key = nil, value = "o7:Pot:nil", ts = 18 },
            }, left)
            assert.are.same({ inn = 15, out = 11, errors = 0, dlq = 0 }, r.summary)
            -- one store for every partition, in the pseudo-task 32767_0, the tombstone applied
            local entries, tasks, n = global_store(r.script, r.dir .. "/state", "global-products")
            assert.are.same({ ["sku-2"] = { name = "Big mug" }, ["sku-3"] = { name = "Pot" } }, entries)
            assert.are.same({ ["32767_0"] = true }, tasks)
            assert.are.equal(2, n)
        end)
        os.execute("rm -rf " .. h.q(r.dir))
        if not ok then error(err, 0) end
    end)

    it("file mode: no co-partitioning — a key change before the join, a stream out of a repartition, "
        .. "the default lookup key, a store name of one's own", function()
        local script = [[
local job = eddy.job { name = "gt-rekey" }
local products = job:global_table("products", { value = "json", store = "catalog" })
job:source("orders", { value = "json" })
   :select_key(function(k, v) return v.sku end)
   :join(products, function(o, p, k) return o.id .. "@" .. k .. ":" .. p.name end)
   :to("by-sku")
job:source("clicks", { value = "json" })
   :group_by(function(k, v) return v.sku end)
   :count { store = "clicks-per-sku" }
   :to_stream()
   :left_join(products, function(n, p, k) return k .. "=" .. n .. ":" .. (p and p.name or "-") end)
   :to("click-counts")
return job
]]
        local code, out, cerr = check(script)
        assert.are.equal(0, code, cerr)
        assert.is_truthy(out:find("global table products [catalog]", 1, true), out)
        assert.is_truthy(out:find("join [catalog]", 1, true), out)
        assert.is_truthy(out:find("left_join [catalog]", 1, true), out)
        local r = run(script, {
            { topic = "products", partition = 0, key = "sku-1", value = '{"name":"Tea"}', ts = 1 },
            { topic = "products", partition = 1, key = "sku-2", value = '{"name":"Mug"}', ts = 2 },
            { topic = "orders", partition = 0, key = "u1", value = '{"id":"o1","sku":"sku-2"}', ts = 3 },
            { topic = "orders", partition = 3, key = "u2", value = '{"id":"o2","sku":"sku-1"}', ts = 4 },
            { topic = "orders", partition = 1, key = "u3", value = '{"id":"o3","sku":"sku-7"}', ts = 5 },
            { topic = "clicks", partition = 2, key = "u1", value = '{"sku":"sku-1"}', ts = 6 },
            { topic = "clicks", partition = 1, key = "u2", value = '{"sku":"sku-1"}', ts = 7 },
            { topic = "clicks", partition = 0, key = "u3", value = '{"sku":"sku-7"}', ts = 8 },
        }, { "--partitions", "4" }, { keep_state = true })
        local ok, err = pcall(function()
            assert_clean(r)
            local got = {}
            for _, e in ipairs(r.out) do
                got[e.topic] = got[e.topic] or {}
                table.insert(got[e.topic], { key = e.key, value = e.payload, ts = e.ts })
            end
            assert.are.same({
                ["by-sku"] = { { key = "sku-2", value = "o1@sku-2:Mug", ts = 3 }, { key = "sku-1", value = "o2@sku-1:Tea", ts = 4 } },
                ["click-counts"] = { { key = "sku-1", value = "sku-1=1:Tea", ts = 6 }, { key = "sku-1", value = "sku-1=2:Tea", ts = 7 },
                                     { key = "sku-7", value = "sku-7=1:-", ts = 8 } },
            }, got)
            local entries, tasks = global_store(r.script, r.dir .. "/state", "catalog")
            assert.are.same({ ["sku-1"] = { name = "Tea" }, ["sku-2"] = { name = "Mug" } }, entries)
            assert.are.same({ ["32767_0"] = true }, tasks)
        end)
        os.execute("rm -rf " .. h.q(r.dir))
        if not ok then error(err, 0) end
    end)

    it("file mode: an error in the join function or in key_fn dead-letters the stream record", function()
        local r = run([[
local job = eddy.job { name = "gt-err" }
local g = job:global_table("products")
job:source("orders")
   :left_join(g, function(v, p, k) if v == "boom" then error("bad join") end return v .. "/" .. tostring(p) end,
              function(k, v) if v == "kboom" then error("bad key") end return k end)
   :to("out")
return job
]], { { topic = "products", key = "a", value = "A", ts = 1 },
      { topic = "orders", key = "a", value = "ok", ts = 2 },
      { topic = "orders", key = "a", value = "boom", ts = 3 },
      { topic = "orders", key = "a", value = "kboom", ts = 4 },
      { topic = "orders", key = "b", value = "ok", ts = 5 } })
        assert.are.equal(0, r.code, r.stderr)
        assert.are.same({ { key = "a", value = "ok/A", ts = 2 }, { key = "b", value = "ok/nil", ts = 5 } }, strip(r.out))
        assert.are.equal(2, #r.dlq)
        assert.are.same({ "boom", "kboom" }, { r.dlq[1].payload, r.dlq[2].payload })
        assert.is_truthy(tostring(h.header(r.dlq[1], "eddy.error")):find("job.lua:5: bad join", 1, true))
        assert.is_truthy(tostring(h.header(r.dlq[2], "eddy.error")):find("job.lua:6: bad key", 1, true))
    end)

    describe("errors at load time", function()
        for _, method in ipairs({ "join", "left_join" }) do
            it(("a key function with a job:table (%s) is refused: it is for global tables"):format(method), function()
                local script = ([[
local job = eddy.job { name = "bad" }
local t = job:table("customers")
job:source("orders")
   :%s(t, function(o, c) return o end, function(k, v) return v end)
   :to("out")
return job
]]):format(method)
                local code, _, err = check(script)
                assert.are.equal(1, code)
                assert.is_truthy(err:find(("stream:%s: a key function is for global tables (job:global_table)"):format(method), 1, true), err)
                assert.is_truthy(err:find("job.lua:5", 1, true), err)
                local r = run(script, { { topic = "orders", key = "k", value = "v" } })
                assert.are.equal(1, r.code)
                assert.is_truthy(r.stderr:find("a key function is for global tables", 1, true), r.stderr)
                assert.are.same({}, r.out)
            end)
        end

        it("a key function that is not a function, or a global table's topic used as a source, is refused", function()
            local code, _, err = check([[
local job = eddy.job { name = "bad" }
local g = job:global_table("products")
job:source("orders")
   :join(g, function(o, p) return o end, "sku")
   :to("out")
return job
]])
            assert.are.equal(1, code)
            assert.is_truthy(err:find("join key: expected a function", 1, true), err)
            assert.is_truthy(err:find("job.lua:5", 1, true), err)
            code, _, err = check([[
local job = eddy.job { name = "bad" }
local g = job:global_table("products")
job:source("products"):to("copy")
return job
]])
            assert.are.equal(1, code)
            assert.is_truthy(err:find('topic "products" is already a source', 1, true), err)
        end)
    end)

    describe("in Kafka mode (eddy broker): products with 2 partitions, orders with 4", function()
        local K = require "kafka_helper"
        local cluster = K.cluster({ { "g-products", 2 }, { "g-orders", 4 }, { "g-enriched", 4 },
            { "g-enriched-2", 4 } })
        local dir, brokers, procs
        setup(function() dir, brokers, procs = cluster:start() end)
        teardown(function() cluster:stop() end)

        local GLOBAL_KAFKA_JOB = [[
local job = eddy.job { name = "%s" }
local products = job:global_table("g-products", { value = "json" })
job:source("g-orders", { value = "json" })
   :left_join(products, function(o, p, k)
      return { order = o.id, sku = o.sku, name = p and p.name or eddy.null, rev = p and p.rev or eddy.null }
   end, function(k, o) return o.sku end)
   :to("%s", { value = "json" })
return job
]]
        local catalog = {}         -- the products as the job should see them: sku -> {name, rev}
        local norders = 0

        it("reads the whole topic before the orders, keeps up with it, resumes after a restart; "
            .. "an empty state dir reads it again", function()
            local script = h.script(dir, "global.lua", PRE .. GLOBAL_KAFKA_JOB:format("global-enrich", "g-enriched"))
            local T0 = 1710237600000         -- the products as the job should see them: sku -> {name, rev}
            local function product(sku, rev, ts)
                catalog[sku] = rev and { name = "P " .. sku, rev = rev } or nil
                return { topic = "g-products", key = sku, ts = ts, partition = h.partition_for(sku, 2),
                    value = rev and cjson.encode(catalog[sku]) or nil }
            end
            local want = {}            -- order id -> the expected enriched value
            local function order(i, sku, ts)
                local id, c = ("o-%02d"):format(i), catalog[sku]
                want[id] = { order = id, sku = sku, name = c and c.name or cjson.null, rev = c and c.rev or cjson.null }
                local key = ("u-%02d"):format(i)
                return { topic = "g-orders", key = key, ts = ts, partition = h.partition_for(key, 4),
                    value = cjson.encode({ id = id, sku = sku }) }
            end
            local function sku(i) return ("sku-%02d"):format((i - 1) % 30 + 1) end
            local function check_outputs(n, proc)
                local out = K.wait_records(brokers, "g-enriched", n, 30, proc)
                assert.are.equal(n, #out, "each order enriched once")
                local seen = {}
                for _, e in ipairs(out) do
                    local v = cjson.decode(e.payload)
                    assert.is_nil(seen[v.order], "a second output for " .. v.order)
                    seen[v.order] = true
                    assert.are.same(want[v.order], v, "order " .. v.order)
                end
                return out
            end

            -- before eddy starts: 30 products, an update and a tombstone (2 partitions), then
            -- 40 orders (4 partitions) whose timestamps are all OLDER than the products': a
            -- timestamp-ordered read would take the orders first; the global table is read
            -- to its end before any order
            local products = {}
            for i = 1, 30 do products[#products + 1] = product(sku(i), 1, T0 + 100000 + i) end
            products[#products + 1] = product("sku-02", 2, T0 + 100100)
            products[#products + 1] = product("sku-30", nil, T0 + 100101)
            K.produce(brokers, products, dir)
            local orders = {}
            for i = 1, 40 do orders[#orders + 1] = order(i, sku(i), T0 + i) end
            K.produce(brokers, orders, dir)

            local extra = { "--commit-interval", "200" }
            local p1 = K.start_eddy(dir, "global-1", script, brokers, { "--state-dir", dir .. "/state-a", table.unpack(extra) })
            procs[#procs + 1] = p1
            local out = check_outputs(40, p1)
            local nulls = 0
            for _, e in ipairs(out) do
                if cjson.decode(e.payload).name == cjson.null then nulls = nulls + 1 end
            end
            assert.are.equal(1, nulls, "only the order of the deleted product (sku-30) has no product")
            local log = p1:stderr()
            local ready = log:find("global tables: read to the end of 2 partition(s)", 1, true)
            local first_task = log:find("task g-orders[", 1, true)
            assert.is_truthy(ready and first_task and ready < first_task, log)

            -- running: an update of a product, then (once the store has it) a new order
            K.produce(brokers, { product("sku-05", 3, T0 + 200000) }, dir)
            K.wait_for("the update in the global store", 15, function()
                local entries = global_store(script, dir .. "/state-a", "global-g-products")
                return entries["sku-05"] and entries["sku-05"].rev == 3, cjson.encode(entries["sku-05"])
            end, 0.1)
            K.produce(brokers, { order(41, "sku-05", T0 + 41) }, dir)
            check_outputs(41, p1)
            assert.are.equal(0, p1:stop("TERM", 15), p1:stderr())
            -- 32 + 40 + the update and the order
            assert.are.same({ inn = 74, out = 41, errors = 0, dlq = 0 }, summary(p1:stderr()))

            -- restart on the SAME state dir: the topic's read positions were kept with the
            -- state: only the new order is read, nothing is emitted twice
            K.produce(brokers, { order(42, "sku-05", T0 + 42) }, dir)
            local p2 = K.start_eddy(dir, "global-2", script, brokers, { "--state-dir", dir .. "/state-a", table.unpack(extra) })
            procs[#procs + 1] = p2
            check_outputs(42, p2)
            assert.are.equal(0, p2:stop("TERM", 15), p2:stderr())
            assert.are.same({ inn = 1, out = 1, errors = 0, dlq = 0 }, summary(p2:stderr()),
                "the global topic was not read again")

            -- restart on an EMPTY state dir: no changelog to restore it from, the whole topic is
            -- read again (33 records) before the new order
            K.produce(brokers, { order(43, "sku-05", T0 + 43), order(44, "sku-30", T0 + 44) }, dir)
            local p3 = K.start_eddy(dir, "global-3", script, brokers, { "--state-dir", dir .. "/state-b", table.unpack(extra) })
            procs[#procs + 1] = p3
            check_outputs(44, p3)
            assert.are.equal(0, p3:stop("TERM", 15), p3:stderr())
            assert.are.same({ inn = 35, out = 2, errors = 0, dlq = 0 }, summary(p3:stderr()))
            local entries, tasks, n = global_store(script, dir .. "/state-b", "global-g-products")
            assert.are.same(catalog, entries)
            assert.are.equal(29, n)
            assert.are.same({ ["32767_0"] = true }, tasks)
            assert.are.equal(44, #K.consume(brokers, "g-enriched"), "nothing more after the stops")

            -- the global table is not logged: no changelog of its store, nothing for its task
            local topics = {}
            local p = assert(io.popen(("%s -L -b %s 2>/dev/null"):format(K.KCAT, h.q(brokers))))
            for t in p:read("*a"):gmatch('topic "([^"]+)"') do topics[t] = true end
            p:close()
            assert.is_nil(topics["global-enrich-global-g-products-changelog"])
            if topics["global-enrich-__task-32767-changelog"] then
                assert.are.same({}, K.consume(brokers, "global-enrich-__task-32767-changelog"))
            end
            norders = 44
        end)

        -- needs the topics the test above filled: 33 product records, 44 orders
        it("--threads 2: every worker reads every partition of the global topic, whichever orders it has", function()
            assert.are.equal(44, norders, "the test above ran")
            local script = h.script(dir, "global2.lua", PRE .. GLOBAL_KAFKA_JOB:format("global-two", "g-enriched-2"))
            local p = K.start_eddy(dir, "global-two", script, brokers, { "--state-dir", dir .. "/state-two",
                "--threads", "2", "--commit-interval", "200" })
            procs[#procs + 1] = p
            local out = K.wait_records(brokers, "g-enriched-2", 44, 30, p)
            local seen = {}
            for _, e in ipairs(out) do
                local v = cjson.decode(e.payload)
                local c = catalog[v.sku]
                -- every order read after the whole table: each sees the products' final state
                assert.are.same({ order = v.order, sku = v.sku, name = c and c.name or cjson.null,
                    rev = c and c.rev or cjson.null }, v)
                seen[v.order] = true
            end
            local n = 0
            for _ in pairs(seen) do n = n + 1 end
            assert.are.equal(44, n)
            K.wait_for("both workers' tasks", 20, function()
                local log = p:stderr()
                return log:find("eddy[w1]: task g-orders[", 1, true) and log:find("eddy[w2]: task g-orders[", 1, true)
            end, 0.1)
            -- stop once every order's offset is committed: a stop with offsets still to commit
            -- while the other worker leaves the group waits for the rebalance (up to 6 s)
            K.wait_for("the orders' offsets committed", 20, function()
                local off = K.offsets(brokers, "global-two", { { "g-orders", 4 } })["g-orders"]
                for q = 0, 3 do
                    if not off[q] or off[q].committed ~= off[q].high then return nil, cjson.encode(off) end
                end
                return true
            end, 0.2)
            assert.are.equal(0, p:stop("TERM", 15), p:stderr())
            local log, ins = p:stderr(), {}
            for w in ("12"):gmatch("%d") do
                assert.is_truthy(log:find("eddy[w" .. w .. "]: global tables: read to the end of 2 partition(s)", 1, true), log)
                local i = log:match("eddy%[w" .. w .. "%]: job global%-two: (%d+) record%(s%) in")
                ins[#ins + 1] = tonumber(i)
                assert.is_truthy(ins[#ins] and ins[#ins] >= 33, log)     -- the 33 product records each
            end
            assert.is_truthy(ins[1] + ins[2] >= 66 + 44, log)
        end)
    end)
end)
