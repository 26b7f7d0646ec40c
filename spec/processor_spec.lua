-- spec/processor_spec.lua: stream:process{} (eddy.processor) through the real host in
-- file mode: process/forward, ctx fields, definition errors, per-key event-time
-- timers (order, once, per task, cancel, restart), stream-time and wall-clock
-- schedules, init per task, failing handlers (process -> DLQ with its store writes
-- undone; on_timer / every -> counted and logged, writes and outputs withdrawn).
-- Expected outputs are computed here by simulating the semantics independently.
local h = require "helper"

local PRE = 'local eddy = require "eddy"\n'

local function input_text(records)
    local out = {}
    for i, r in ipairs(records) do
        out[i] = type(r) == "string" and r or h.envelope(r)
    end
    return table.concat(out, "\n") .. "\n"
end

--- Run SCRIPT in file mode over RECORDS. opts.state: a state dir to keep between runs.
local function run(script, records, args, opts)
    opts = opts or {}
    local dir = h.tmpdir()
    local sp = h.script(dir, "job.lua", script)
    local inp = h.write(dir .. "/in.jsonl", input_text(records or {}))
    local argv = { "run", sp, "--input", inp, "--output", dir .. "/out.jsonl",
        "--dlq", dir .. "/dlq.jsonl", "--state-dir", opts.state or (dir .. "/state") }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    local code, stdout, stderr = h.eddy(argv)
    local r = { code = code, stdout = stdout, stderr = stderr,
        out_text = h.read(dir .. "/out.jsonl") or "", dlq_text = h.read(dir .. "/dlq.jsonl") or "" }
    r.out, r.dlq = h.envelopes(r.out_text), h.envelopes(r.dlq_text)
    os.execute("rm -rf " .. h.q(dir))
    return r
end

local function check(script)
    local dir = h.tmpdir()
    local sp = h.script(dir, "job.lua", script)
    local code, stdout, stderr = h.eddy({ "check", sp })
    os.execute("rm -rf " .. h.q(dir))
    return code, stdout, stderr
end

local function kvt(list)
    local t = {}
    for i, e in ipairs(list) do t[i] = { e.key, e.payload, e.ts } end
    return t
end

local function ok_run(r)
    assert.are.equal(0, r.code, r.stderr)
    return r
end

describe("stream:process", function()
    it("forwards zero, one or more records, with the record's or an explicit timestamp", function()
        local r = ok_run(run(PRE .. [[
local job = eddy.job "fwd"
job:source("in"):process {
  process = function(ctx, k, v, rec)
    if v == "drop" then return end
    ctx:forward(k, v:upper())
    if v == "two" then ctx:forward(k .. "2", "again", rec.ts + 5) end
  end,
}:to("out")
return job
]], { { key = "a", payload = "one", ts = 10 }, { key = "b", payload = "drop", ts = 11 },
      { key = "c", payload = "two", ts = 12 } }))
        assert.are.same({ { "a", "ONE", 10 }, { "c", "TWO", 12 }, { "c2", "again", 17 } }, kvt(r.out))
    end)

    it("gives ctx.partition, ctx.stream_time and the record's metadata", function()
        local r = ok_run(run(PRE .. [[
local job = eddy.job "meta"
job:source("in"):process {
  stores = { "s" },
  process = function(ctx, k, v, rec)
    ctx:forward(k, ("%d %d %d %s"):format(ctx.partition, ctx.stream_time, rec.offset, rec.topic))
  end,
}:to("out")
return job
]], { { key = "a", payload = "x", ts = 50, partition = 1 }, { key = "b", payload = "x", ts = 40, partition = 1 },
      { key = "c", payload = "x", ts = 30, partition = 0 }, { key = "d", payload = "x", ts = 60, partition = 1 } },
        { "--partitions", "2" }))
        table.sort(r.out, function(a, b) return a.key < b.key end)
        assert.are.same({ "1 50 0 in", "1 50 1 in", "0 30 0 in", "1 60 2 in" },
            { r.out[1].payload, r.out[2].payload, r.out[3].payload, r.out[4].payload })
    end)

    it("is checked when the script loads", function()
        local cases = {
            { "process = 1", "process must be a function" },
            { "stores = { 'a' }", "a process = function" },
            { "process = function() end, on_timers = function() end", 'unknown field "on_timers"' },
            { "process = function() end, stores = { x = { ttl = 'soon' } }", "store x: bad ttl" },
            { "process = function() end, stores = { x = { size = 1 } }", 'unknown option "size"' },
        }
        for _, c in ipairs(cases) do
            local code, _, err = check(PRE .. "local job = eddy.job 'bad'\njob:source('in'):process { " ..
                c[1] .. " }:to('out')\nreturn job\n")
            assert.are.equal(1, code)
            assert.truthy(err:find(c[2], 1, true), err)
            assert.truthy(err:find("job.lua:3", 1, true), err)
        end
        local code, out = check(PRE .. "local job = eddy.job 'good'\n" ..
            "job:source('in'):process { stores = { 'a', b = { ttl = '1h' } }, process = function() end }:to('out')\n" ..
            "return job\n")
        assert.are.equal(0, code)
        assert.truthy(out:find("process", 1, true))
    end)

    it("raises a clear error for a store it did not declare (the record goes to the DLQ)", function()
        local r = ok_run(run(PRE .. [[
local job = eddy.job "undeclared"
job:source("in"):process {
  stores = { "mine" },
  process = function(ctx, k, v) ctx:store("other"):put(k, v) end,
}:to("out")
return job
]], { { key = "a", payload = "x", ts = 1 } }))
        assert.are.equal(1, #r.dlq)
        local msg = h.header(r.dlq[1], "eddy.error")
        assert.truthy(msg:find('"other"', 1, true), msg)
        assert.truthy(msg:find("not declared", 1, true), msg)
        assert.truthy(msg:find("job.lua:5", 1, true), msg)
    end)

    it("sends a record whose process fails to the DLQ and undoes its store writes", function()
        local r = ok_run(run(PRE .. [[
local job = eddy.job "fails"
job:source("in"):process {
  stores = { "n" },
  process = function(ctx, k, v)
    local s = ctx:store("n")
    local n = (s:get(k) or 0) + 1
    s:put(k, n)
    s:put("other", "written")
    if v == "boom" then error("no good") end
    ctx:forward(k, tostring(n) .. " " .. tostring(s:get("other")))
    s:delete("other")
  end,
}:to("out")
return job
]], { { key = "a", payload = "x", ts = 1 }, { key = "a", payload = "boom", ts = 2 },
      { key = "a", payload = "x", ts = 3 } }))
        assert.are.same({ { "a", "1 written", 1 }, { "a", "2 written", 3 } }, kvt(r.out))
        assert.are.equal(1, #r.dlq)
        assert.are.equal("boom", r.dlq[1].payload)
        assert.truthy(h.header(r.dlq[1], "eddy.error"):find("job.lua:10: no good", 1, true))
    end)

    it("runs init once per task before its first record", function()
        local recs = {}
        for i = 1, 8 do recs[i] = { key = "k" .. i, payload = "x", ts = i, partition = i % 2 } end
        local r = ok_run(run(PRE .. [[
local job = eddy.job "init"
job:source("in"):process {
  stores = { "s" },
  init = function(ctx)
    local s = ctx:store("s")
    s:put("inits", (s:get("inits") or 0) + 1)
  end,
  process = function(ctx, k, v)
    ctx:forward(k, ctx.partition .. ":" .. ctx:store("s"):get("inits"))
  end,
}:to("out")
return job
]], recs, { "--partitions", "2" }))
        assert.are.equal(8, #r.out)
        for _, e in ipairs(r.out) do
            local i = tonumber(e.key:sub(2))
            assert.are.equal((i % 2) .. ":1", e.payload)
        end
    end)
end)

-- The timer job: each record "d" sets a timer for its key at ts + d (several per
-- record when the value is a list "d1,d2"); on_timer forwards "fired@ts".
local TIMERS = PRE .. [[
local job = eddy.job "timers"
job:source("in"):process {
  process = function(ctx, k, v, rec)
    for d in v:gmatch("[^,]+") do
      if d:sub(1, 1) == "-" then ctx:cancel_timer(k, rec.ts + tonumber(d:sub(2)))
      else ctx:timer(k, rec.ts + tonumber(d)) end
    end
  end,
  on_timer = function(ctx, key, ts)
    ctx:forward(key, "fired@" .. ts .. " st=" .. ctx.stream_time .. " p=" .. ctx.partition)
  end,
}:to("out")
return job
]]

--- Simulate TIMERS on one task: records {key, "d,...", ts}; fires after each record.
local function simulate(records, timers)
    timers = timers or {}
    local st, out = -math.huge, {}
    for _, r in ipairs(records) do
        local k, v, ts = r.key, r.payload, r.ts
        if ts > st then st = ts end
        for d in v:gmatch("[^,]+") do
            if d:sub(1, 1) == "-" then timers[k .. "\0" .. (ts + tonumber(d:sub(2)))] = nil
            else timers[k .. "\0" .. (ts + tonumber(d))] = { key = k, ts = ts + tonumber(d) } end
        end
        local due = {}
        for id, t in pairs(timers) do
            if t.ts <= st then due[#due + 1] = t; timers[id] = nil end
        end
        table.sort(due, function(a, b) if a.ts ~= b.ts then return a.ts < b.ts end return a.key < b.key end)
        for _, t in ipairs(due) do
            out[#out + 1] = { t.key, "fired@" .. t.ts .. " st=" .. st .. " p=" .. (r.partition or 0), t.ts }
        end
    end
    return out, timers
end

describe("ctx:timer", function()
    it("fires each timer once, in timestamp order, when stream time reaches it", function()
        local recs = { { key = "k1", payload = "10", ts = 100 }, { key = "k2", payload = "5,20", ts = 102 },
            { key = "k1", payload = "0", ts = 104 },              -- due at once: after this record
            { key = "k3", payload = "1", ts = 90 },               -- late record: stream time stays 104
            { key = "k2", payload = "3", ts = 107 },              -- 107: k2@107 and k2@110 not yet...
            { key = "k1", payload = "10", ts = 100 },             -- same (key, ts) as the first: one timer
            { key = "k3", payload = "50", ts = 130 } }
        local expected = simulate(recs)
        local r = ok_run(run(TIMERS, recs))
        assert.are.same(expected, kvt(r.out))
        assert.are.equal(6, #r.out)
    end)

    it("matches a simulation on a larger input", function()
        local recs, x = {}, 12345
        local function rnd(n) x = (x * 1103515245 + 12345) % 2147483648; return x % n end
        local ts = 1000
        for i = 1, 400 do
            ts = ts + rnd(20) - 5                                -- mostly forward, sometimes back
            local n = rnd(3)
            local ds = {}
            for j = 1, n + 1 do ds[j] = tostring(rnd(60)) end
            if rnd(5) == 0 then ds[#ds + 1] = "-" .. rnd(60) end  -- cancel one, maybe existing
            recs[i] = { key = ("k%02d"):format(rnd(12)), payload = table.concat(ds, ","), ts = ts }
        end
        local expected = simulate(recs)
        local r = ok_run(run(TIMERS, recs))
        assert.are.equal(#expected, #r.out)
        assert.are.same(expected, kvt(r.out))
    end)

    it("works with epoch-millisecond timestamps", function()
        local T = 1700000000000
        local recs = { { key = "a", payload = "60000", ts = T }, { key = "b", payload = "1000", ts = T + 5 },
            { key = "c", payload = "0", ts = T + 59999 }, { key = "d", payload = "0", ts = T + 60000 },
            { key = "e", payload = "3600000", ts = T + 61000 } }
        local r = ok_run(run(TIMERS, recs))
        assert.are.same(simulate(recs), kvt(r.out))
        assert.are.equal(4, #r.out)
    end)

    it("keeps timers per task: stream time of one partition does not fire another's", function()
        local recs = { { key = "a", payload = "10", ts = 100, partition = 0 },
            { key = "b", payload = "10", ts = 100, partition = 1 },
            { key = "c", payload = "0", ts = 500, partition = 1 },
            { key = "d", payload = "0", ts = 111, partition = 0 } }
        local r = ok_run(run(TIMERS, recs, { "--partitions", "2" }))
        local p0 = simulate({ recs[1], recs[4] })
        local p1 = simulate({ recs[2], recs[3] })
        local got0, got1 = {}, {}
        for _, e in ipairs(r.out) do
            local t = { e.key, e.payload, e.ts }
            if e.payload:find("p=0", 1, true) then got0[#got0 + 1] = t else got1[#got1 + 1] = t end
        end
        assert.are.same(p0, got0)
        assert.are.same(p1, got1)
    end)

    it("cancels a timer", function()
        local recs = { { key = "a", payload = "10,20", ts = 100 }, { key = "a", payload = "-20", ts = 100 },
            { key = "b", payload = "0", ts = 200 } }
        local r = ok_run(run(TIMERS, recs))
        assert.are.same(simulate(recs), kvt(r.out))
        assert.are.equal(2, #r.out)
    end)

    it("survives a restart with the same state dir", function()
        local state = h.tmpdir()
        local first = { { key = "a", payload = "100", ts = 1000 }, { key = "b", payload = "50,70", ts = 1010 },
            { key = "a", payload = "0", ts = 1020 } }
        local second = { { key = "c", payload = "1000", ts = 1075 }, { key = "c", payload = "0", ts = 1200 } }
        local exp1, pending = simulate(first)
        local exp2 = simulate(second, pending)
        -- stream time is restored too: the second run's records see it
        local r1 = ok_run(run(TIMERS, first, {}, { state = state }))
        assert.are.same(exp1, kvt(r1.out))
        local r2 = ok_run(run(TIMERS, second, {}, { state = state }))
        assert.are.same(exp2, kvt(r2.out))
        assert.are.equal(4, #r2.out)
        os.execute("rm -rf " .. h.q(state))
    end)

    it("fires on a quiet partition when eddy.job{ idle_advance } moves stream time", function()
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", (TIMERS:gsub('eddy.job "timers"', 'eddy.job { name = "idle", idle_advance = "300ms" }')))
        -- a timer at 1500; then only late records (ts 900): stream time moves by the wall clock
        local function line(v, ts) return h.q(h.envelope({ key = "k", payload = v, ts = ts })) end
        local cmd = ("(echo %s; sleep 0.5; echo %s; sleep 0.5; echo %s; sleep 0.3; echo %s) | %s run %s --input - --state-dir %s --quiet > %s 2>&1")
            :format(line("500", 1000), line("5000", 900), line("5000", 900), line("5000", 900),
                h.q(h.EDDY), h.q(sp), h.q(dir .. "/state"), h.q(dir .. "/out"))
        os.execute(cmd)
        local out = h.envelopes(h.read(dir .. "/out"))
        os.execute("rm -rf " .. h.q(dir))
        assert.are.equal(1, #out, h.read(dir .. "/out"))
        assert.are.equal(1500, out[1].ts)
        local st = tonumber(out[1].payload:match("st=(%d+)"))
        assert.truthy(st >= 1500 and st < 3000, out[1].payload)
    end)

    it("is refused without an on_timer handler", function()
        local r = ok_run(run(PRE .. [[
local job = eddy.job "noh"
job:source("in"):process { process = function(ctx, k, v, rec) ctx:timer(k, rec.ts) end }:to("out")
return job
]], { { key = "a", payload = "x", ts = 1 } }))
        assert.are.equal(1, #r.dlq)
        assert.truthy(h.header(r.dlq[1], "eddy.error"):find("no on_timer handler", 1, true))
    end)

    it("counts and logs a failing on_timer, withdraws its writes and outputs, fires it once", function()
        local r = ok_run(run(PRE .. [[
local job = eddy.job "tfail"
job:source("in"):process {
  stores = { "s" },
  process = function(ctx, k, v, rec)
    ctx:timer(k, rec.ts + 10)
    ctx:forward(k, "n=" .. tostring(ctx:store("s"):get("n")))
  end,
  on_timer = function(ctx, key, ts)
    local s = ctx:store("s")
    s:put("n", (s:get("n") or 0) + 1)
    ctx:forward(key, "before")
    if key == "bad" then error("timer broke") end
    ctx:forward(key, "after")
  end,
}:to("out")
return job
]], { { key = "bad", payload = "x", ts = 100 }, { key = "good", payload = "x", ts = 105 },
      { key = "z", payload = "x", ts = 120 }, { key = "z", payload = "x", ts = 200 } }))
        assert.are.same({ { "bad", "n=nil", 100 }, { "good", "n=nil", 105 }, { "z", "n=nil", 120 },
            { "good", "before", 115 }, { "good", "after", 115 }, { "z", "n=1", 200 },
            { "z", "before", 130 }, { "z", "after", 130 } }, kvt(r.out))
        assert.truthy(r.stderr:find("job.lua:13: timer broke", 1, true), r.stderr)
        assert.truthy(r.stderr:find("on_timer", 1, true), r.stderr)
        assert.truthy(r.stderr:find("1 error(s)", 1, true), r.stderr)     -- eddy_errors_total
        assert.are.equal(0, #r.dlq)
    end)
end)

describe("ctx:every", function()
    it("punctuates on stream time like Kafka Streams (aligned to 0, missed ones skipped)", function()
        local recs = { { key = "a", payload = "x", ts = 5 }, { key = "a", payload = "x", ts = 9 },
            { key = "a", payload = "x", ts = 12 }, { key = "a", payload = "x", ts = 8 },
            { key = "a", payload = "x", ts = 47 }, { key = "a", payload = "x", ts = 50 } }
        local r = ok_run(run(PRE .. [[
local job = eddy.job "st"
job:source("in"):process {
  init = function(ctx)
    ctx:every(10, function(ctx, now) ctx:forward("tick", tostring(now)) end, "stream")
  end,
  process = function(ctx, k, v, rec) end,
}:to("out")
return job
]], recs))
        -- independent: schedule at 0, +10; after each record, at most one punctuation at
        -- stream time when stream time >= next; next = first grid point after stream time
        local expected, nxt, st = {}, 0, -math.huge
        for _, rec in ipairs(recs) do
            st = math.max(st, rec.ts)
            if st >= nxt then
                expected[#expected + 1] = { "tick", tostring(st), st }
                nxt = (math.floor(st / 10) + 1) * 10
            end
        end
        assert.are.same(expected, kvt(r.out))
    end)

    it("punctuates on the wall clock between input lines", function()
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", PRE .. [[
local job = eddy.job "wall"
job:source("in"):process {
  init = function(ctx)
    ctx:every("200ms", function(ctx, now) ctx:forward("tick", tostring(now)) end)
  end,
  process = function(ctx, k, v, rec) ctx:forward(k, v) end,
}:to("out")
return job
]])
        local line = h.envelope({ key = "r", payload = "x", ts = 1 })
        local cmd = ("(echo %s; sleep 0.7; echo %s; sleep 0.7; echo %s) | %s run %s --input - --state-dir %s --quiet > %s 2>&1")
            :format(h.q(line), h.q(line), h.q(line), h.q(h.EDDY), h.q(sp), h.q(dir .. "/state"), h.q(dir .. "/out"))
        local t0 = os.time() * 1000
        os.execute(cmd)
        local t1 = os.time() * 1000 + 1000
        local out = h.envelopes(h.read(dir .. "/out"))
        os.execute("rm -rf " .. h.q(dir))
        local ticks, recs = {}, 0
        for _, e in ipairs(out) do
            if e.key == "tick" then ticks[#ticks + 1] = e else recs = recs + 1 end
        end
        assert.are.equal(3, recs)
        assert.truthy(#ticks >= 2 and #ticks <= 8, "ticks: " .. #ticks)
        local prev = 0
        for _, t in ipairs(ticks) do
            local now = tonumber(t.payload)
            assert.are.equal(now, t.ts)                    -- forwarded at the wall time
            assert.truthy(now >= t0 and now <= t1)
            assert.truthy(now > prev)
            prev = now
        end
    end)

    it("counts and logs a failing schedule and goes on", function()
        local recs = {}
        for i = 1, 4 do recs[i] = { key = "a", payload = "x", ts = i * 10 } end
        local r = ok_run(run(PRE .. [[
local job = eddy.job "efail"
job:source("in"):process {
  init = function(ctx)
    ctx:every(10, function(ctx, now)
      ctx:forward("tick", tostring(now))
      if now == 20 then error("bad tick") end
    end, "stream")
  end,
  process = function(ctx, k, v, rec) end,
}:to("out")
return job
]], recs))
        assert.are.same({ { "tick", "10", 10 }, { "tick", "30", 30 }, { "tick", "40", 40 } }, kvt(r.out))
        assert.truthy(r.stderr:find("job.lua:7: bad tick", 1, true), r.stderr)
        assert.truthy(r.stderr:find("1 error(s)", 1, true), r.stderr)
    end)
end)
