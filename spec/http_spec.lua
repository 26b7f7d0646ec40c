-- spec/http_spec.lua: `eddy run --http` (CONTRACT.md "HTTP", issue 7), through the real
-- binary and real HTTP (curl): /metrics and /status against counts computed here, the
-- interactive store queries (point, range, windowed, unknown key and store), the reload
-- history and its counters, POST /reload and its token rules, Kafka mode's tasks and lag
-- with `eddy broker`, the live page rendered by headless Chromium (its numbers equal
-- /metrics; a screenshot, copied to docs/http-page.png when EDDY_UPDATE_SCREENSHOT=1),
-- and bad --http values. File-mode jobs read a FIFO the spec holds open (a streaming
-- stdin, so the job stays alive and answers store queries between batches). Every
-- process started here is stopped here, by its own pid.
local h = require "helper"
local k = require "kafka_helper"
local cjson = require "cjson"
local bit = require "bit"
local ffi = require "ffi"

local q = h.q

-- a job that dies must fail its test, not kill the spec run with SIGPIPE on the next write
pcall(ffi.cdef, "typedef void (*eddy_spec_sighandler)(int); eddy_spec_sighandler signal(int, eddy_spec_sighandler);")
ffi.C.signal(13, ffi.cast("eddy_spec_sighandler", 1))       -- SIGPIPE: SIG_IGN

local CHROMIUM = "chromium"

-- the version name: FNV-1a 64 of the script's bytes, 16 hex digits (computed here)
local function fnv(s)
    local x = 1469598103934665603ULL
    for i = 1, #s do
        x = bit.bxor(x, s:byte(i))
        x = x * 1099511628211ULL
    end
    return bit.tohex(x, 16)
end

local function capture(cmd)
    local p = assert(io.popen(cmd, "r"))
    local s = p:read("*a")
    p:close()
    return s
end

--- A TCP port nobody listens on now (the kernel's pick).
local function free_port()
    local s = capture([[/usr/bin/python3 -c 'import socket; s = socket.socket(); ]]
        .. [[s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])']])
    return assert(tonumber(s:match("%d+")), "no free port: " .. s)
end

--- An HTTP request with curl. Returns the status code and the body.
--- opts.method (default GET), opts.headers { "Name: value", ... }.
local function http(url, opts)
    opts = opts or {}
    local tmp = os.tmpname()
    local parts = { "curl -s -S --max-time 10 -o", q(tmp), "-w '%{http_code}'" }
    if opts.method then parts[#parts + 1] = "-X " .. q(opts.method) end
    for _, hv in ipairs(opts.headers or {}) do parts[#parts + 1] = "-H " .. q(hv) end
    parts[#parts + 1] = q(url)
    local code = capture(table.concat(parts, " ") .. " 2>/dev/null")
    local body = h.read(tmp) or ""
    os.remove(tmp)
    return tonumber(code) or 0, body
end

local function get_json(url)
    local code, body = http(url)
    local ok, t = pcall(cjson.decode, body)
    return code, ok and t or nil, body
end

--- /metrics as { ["name"] = v, ['name{label="x"}'] = v } (the text before the value).
local function metrics(base)
    local code, body = http(base .. "/metrics")
    assert.are.equal(200, code, "GET /metrics: " .. body)
    local m = {}
    for line in body:gmatch("[^\n]+") do
        if line:sub(1, 1) ~= "#" then
            local name, v = line:match("^(.-)%s+(%S+)$")
            if name then m[name] = tonumber(v) end
        end
    end
    return m, body
end

---------------------------------------------------------------------------------------------
-- A file-mode job reading a FIFO held open here: `eddy run SCRIPT --input - --http ...`.

local Job = {}
Job.__index = Job
local live = {}            -- every job started and not yet cleaned up

--- opts.args: more arguments; opts.env: "NAME=value" put before the command;
--- opts.http: the --http value (default 127.0.0.1:<a free port>).
local function start_job(dir, name, script, opts)
    opts = opts or {}
    local self = setmetatable({ dir = dir, name = name, script = script,
        fifo = dir .. "/" .. name .. ".fifo", err = dir .. "/" .. name .. ".err",
        out = dir .. "/" .. name .. ".out", pidfile = dir .. "/" .. name .. ".pid",
        rcfile = dir .. "/" .. name .. ".rc" }, Job)
    self.port = opts.port or free_port()
    self.base = "http://127.0.0.1:" .. self.port
    local made = os.execute("mkfifo " .. q(self.fifo))
    assert(made == 0 or made == true, "mkfifo " .. self.fifo)
    local argv = { h.EDDY, "run", script, "--input", "-", "--output", self.out,
        "--dlq", dir .. "/" .. name .. ".dlq", "--state-dir", dir .. "/" .. name .. "-state",
        "--http", opts.http or ("127.0.0.1:" .. self.port) }
    for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
    local parts = {}
    for i, a in ipairs(argv) do parts[i] = q(a) end
    local inner = ("%s %s > /dev/null 2> %s < %s & echo $! > %s; wait $!; echo $? > %s"):format(
        opts.env or "", table.concat(parts, " "), q(self.err), q(self.fifo), q(self.pidfile),
        q(self.rcfile))
    os.execute("sh -c " .. q(inner) .. " > /dev/null 2>&1 &")
    self.w = assert(io.open(self.fifo, "w"))       -- meets eddy opening its stdin
    self.w:setvbuf("no")
    live[self] = true
    self.pid = k.wait_for(name .. "'s pid", 5, function()
        local s = h.read(self.pidfile)
        return s and tonumber(s:match("%d+"))
    end, 0.01)
    k.wait_for(name .. " serving HTTP", 10, function()
        if not self:running() then error(name .. " exited " .. tostring(self:rc()) .. ":\n" .. self:log(), 0) end
        return self:log():match("http: serving")
    end, 0.02)
    return self
end

function Job:log() return h.read(self.err) or "" end
function Job:rc()
    if self.exit_status == nil then
        local s = h.read(self.rcfile)
        self.exit_status = s and tonumber(s:match("%d+"))
    end
    return self.exit_status
end
function Job:running() return self:rc() == nil end
function Job:signal(sig)
    if self:running() then os.execute(("kill -%s %d 2>/dev/null"):format(sig, self.pid)) end
end

function Job:send(lines)
    local ok, err = self.w:write(table.concat(lines, "\n") .. "\n")
    if ok then ok, err = self.w:flush() end
    assert(ok, ("writing to %s: %s (exited %s):\n%s"):format(self.name, tostring(err),
        tostring(self:rc()), self:log()))
end

--- Poll /metrics until pred(m) holds; returns m.
function Job:wait_metrics(what, timeout, pred)
    return k.wait_for(what, timeout, function()
        if not self:running() then error(self.name .. " exited:\n" .. self:log(), 0) end
        local m = metrics(self.base)
        if pred(m) then return m end
        return nil, cjson.encode(m)
    end, 0.05)
end

--- Poll /status until pred(status) holds; returns it.
function Job:wait_status(what, timeout, pred)
    return k.wait_for(what, timeout, function()
        if not self:running() then error(self.name .. " exited:\n" .. self:log(), 0) end
        local _, st, body = get_json(self.base .. "/status")
        if st and pred(st) then return st end
        return nil, body
    end, 0.05)
end

--- Close stdin (the end of the input) and wait up to 5 s for the exit. Returns the exit
--- status (stop_all kills what did not exit).
function Job:cleanup()
    if self.w then self.w:close(); self.w = nil end
    k.wait_for(self.name .. " to exit", 5, function() return self:rc() end, 0.02)
    return self:rc()
end

local function stop_all()
    for job in pairs(live) do
        if job.w then job.w:close(); job.w = nil end
        local deadline = k.now() + 5
        while job:running() and k.now() < deadline do k.sleep(0.02) end
        if job:running() then os.execute(("kill -KILL %d 2>/dev/null"):format(job.pid)) end
        live[job] = nil
    end
end

---------------------------------------------------------------------------------------------
-- Headless Chromium

local function chromium(dir, args, url)
    local parts = { "timeout 60", CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
        "--user-data-dir=" .. q(dir .. "/chromium"), "--window-size=1280,1000" }
    for _, a in ipairs(args) do parts[#parts + 1] = a end
    parts[#parts + 1] = q(url)
    return capture(table.concat(parts, " ") .. " 2> " .. q(dir .. "/chromium.err"))
end

local function have_chromium()
    return capture("command -v " .. CHROMIUM .. " 2>/dev/null"):match("%S") ~= nil
end

--- The page's DOM after Chromium ran it for 4 s of virtual time (polls included).
local function dump_dom(dir, url)
    assert(have_chromium(), "chromium is not installed (make deps installs it)")
    local dom = chromium(dir, { "--virtual-time-budget=4000", "--dump-dom" }, url)
    assert(dom:match("id=\"records_in\""), "no DOM from chromium:\n" .. dom:sub(1, 500)
        .. (h.read(dir .. "/chromium.err") or ""))
    return dom
end

--- The text of the element with this id (tags inside it dropped).
local function by_id(dom, id)
    local inner = dom:match('id="' .. id .. '"[^>]*>(.-)</')
    return inner and (inner:gsub("<[^>]*>", ""))
end

--- The text of a table body with this id (rows and cells as text, tags dropped).
local function tbody(dom, id)
    local inner = dom:match('<tbody id="' .. id .. '"[^>]*>(.-)</tbody>')
    return inner and (inner:gsub("<[^>]*>", " "))
end

local function number_in(dom, id)
    local s = by_id(dom, id)
    return s and tonumber((s:gsub(",", ""))), s
end

---------------------------------------------------------------------------------------------

local WORDS = { "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "cat",
    "river", "stone", "moon", "night", "apple", "lemon", "kite", "harbor", "ink", "garden",
    "echo", "mist", "violet", "zephyr", "yarn", "bell", "candle", "dawn", "ember", "fern" }

local WORDCOUNT = h.ROOT .. "/scripts/wordcount.lua"

describe("--http in file mode (word count over a streaming stdin)", function()
    local dir, job
    local N = 400
    local want, nwords = {}, 0

    lazy_setup(function()
        dir = h.tmpdir()
        math.randomseed(7)
        local lines = {}
        for i = 1, N do
            local ws = {}
            for j = 1, math.random(1, 8) do
                local w = WORDS[math.random(#WORDS)]
                ws[j] = (math.random() < 0.2) and w:upper() or w     -- the job lowercases
                want[w] = (want[w] or 0) + 1
                nwords = nwords + 1
            end
            lines[i] = table.concat(ws, " ")
        end
        job = start_job(dir, "wc", WORDCOUNT, { args = { "--input-format", "lines", "--partitions", "3",
            "--no-watch" } })
        -- in three writes, a moment apart: several batches
        job:send({ unpack(lines, 1, 100) })
        k.sleep(0.05)
        job:send({ unpack(lines, 101, 250) })
        k.sleep(0.05)
        job:send({ unpack(lines, 251, N) })
        job:wait_metrics(("eddy_records_in_total == %d"):format(N), 10,
            function(m) return m.eddy_records_in_total == N end)
    end)

    lazy_teardown(function()
        stop_all()
        if dir then os.execute("rm -rf " .. q(dir)) end
    end)

    it("/metrics: records in and out equal the lines and words counted here; the latency histogram counts every record", function()
        local m, text = metrics(job.base)
        assert.are.equal(N, m.eddy_records_in_total)
        assert.are.equal(nwords, m.eddy_records_out_total, "one count update per word")
        assert.are.equal(0, m.eddy_errors_total)
        assert.are.equal(0, m.eddy_dlq_records_total)
        assert.are.equal(0, m.eddy_late_records_total)
        assert.are.equal(N, m.eddy_process_latency_seconds_count)
        assert.are.equal(N, m['eddy_process_latency_seconds_bucket{le="+Inf"}'])
        assert.is_true(m.eddy_process_latency_seconds_sum > 0)
        -- cumulative buckets never decrease
        local last = 0
        for le, v in text:gmatch('eddy_process_latency_seconds_bucket{le="([^"]+)"} (%d+)') do
            assert.is_true(tonumber(v) >= last, "bucket le=" .. le .. " below the one before")
            last = tonumber(v)
        end
        assert.are.equal(0, m['eddy_reloads_total{outcome="ok"}'])
        assert.is_truthy(text:match("# TYPE eddy_records_in_total counter"))
        assert.is_truthy(text:match("# TYPE eddy_process_latency_seconds histogram"))
        assert.is_truthy(text:match('eddy_info{job="wordcount",version="%x+"} 1'))
    end)

    it("/status: job, the version the log reports, mode, records", function()
        local code, st = get_json(job.base .. "/status")
        assert.are.equal(200, code)
        local logged = job:log():match("job wordcount: version (%x+)")
        assert.is_truthy(logged, job:log())
        assert.are.equal("wordcount", st.job)
        assert.are.equal(logged, st.version)
        assert.are.equal(fnv(h.read(WORDCOUNT)), st.version)
        assert.are.equal("file", st.mode)
        assert.are.equal(WORDCOUNT, st.script)
        assert.are.equal(N, st.records_in)
        assert.are.equal(nwords, st.records_out)
        assert.are.equal(0, st.errors)
        assert.are.same({}, st.reloads)
        assert.are.equal(cjson.null, st.last_error)
        assert.is_true(st.now_ms >= st.started_ms)
        assert.is_true(st.pid > 0)
    end)

    it("/stores/counts/<word> is the word's count; an unknown key is 404", function()
        for _, w in ipairs({ "the", "fox", "zephyr", "ink", "apple" }) do
            local code, r, body = get_json(job.base .. "/stores/counts/" .. w)
            if want[w] then
                assert.are.equal(200, code, body)
                assert.are.equal("counts", r.store)
                assert.are.equal(w, r.key)
                assert.are.equal(1, r.count)
                assert.are.equal(w, r.results[1].entry.key)
                assert.are.equal(want[w], r.results[1].entry.value, "count of " .. w)
                assert.is_truthy(r.results[1].task:match("^1_[012]$"), "the task after the repartition")
            end
        end
        local code, r = get_json(job.base .. "/stores/counts/nosuchword")
        assert.are.equal(404, code)
        assert.is_truthy(r.error:match("no such key"))
        -- an upper-case key is another key: the job stored lower case
        code = get_json(job.base .. "/stores/counts/THE")
        assert.are.equal(404, code)
    end)

    it("a range query returns exactly the words in [from, to), in key order, with their counts", function()
        local function expect(from, to)
            local list = {}
            for w, n in pairs(want) do
                if (not from or w >= from) and (not to or w < to) then list[#list + 1] = { w, n } end
            end
            table.sort(list, function(a, b) return a[1] < b[1] end)
            return list
        end
        local function got(query)
            local code, r, body = get_json(job.base .. "/stores/counts" .. query)
            assert.are.equal(200, code, body)
            local list = {}
            for i, e in ipairs(r.results) do list[i] = { e.entry.key, e.entry.value } end
            assert.are.equal(#list, r.count)
            return list
        end
        assert.are.same(expect("c", "m"), got("?from=c&to=m"))
        assert.are.same(expect("dog", "fox"), got("?from=dog&to=fox"))          -- to is exclusive
        assert.are.same(expect("s", nil), got("?from=s"))
        assert.are.same(expect(nil, "b"), got("?to=b"))
        assert.are.same(expect(nil, nil), got(""))                              -- the whole store
        assert.are.same({}, got("?from=w&to=x"))                                -- none there
        local some = got("?limit=3")
        assert.are.equal(3, #some)
        for _, e in ipairs(some) do assert.are.equal(want[e[1]], e[2]) end
        local code = get_json(job.base .. "/stores/counts?limit=0")
        assert.are.equal(400, code)
    end)

    it("an unknown store is 404 naming the job's stores; eddy's own stores are not served", function()
        local code, r = get_json(job.base .. "/stores/nosuchstore/the")
        assert.are.equal(404, code)
        assert.are.equal("no such store: nosuchstore (this job's stores: counts)", r.error)
        code, r = get_json(job.base .. "/stores/nosuchstore")
        assert.are.equal(404, code)
        assert.is_truthy(r.error:match("no such store"))
        code = get_json(job.base .. "/stores/__offsets")
        assert.are.equal(404, code)
        code = get_json(job.base .. "/stores/counts%23idx")         -- "counts#idx": an index
        assert.are.equal(404, code)
        -- the queries created nothing: the job still counts, and answers
        code, r = get_json(job.base .. "/stores/counts/the")
        assert.are.equal(200, code)
        assert.are.equal(want.the, r.results[1].entry.value)
    end)

    it("other paths and methods", function()
        local code, body = http(job.base .. "/nope")
        assert.are.equal(404, code)
        assert.is_truthy(body:match("/metrics"))
        code = http(job.base .. "/status", { method = "DELETE" })
        assert.are.equal(405, code)
        code = http(job.base .. "/status", { method = "POST" })
        assert.are.equal(404, code)
        code, body = http(job.base .. "/stores/counts?from=" .. ("a"):rep(600))
        assert.are.equal(400, code, body)
    end)

    it("GET / is one self-contained page; headless Chromium renders the totals /metrics gives", function()
        local code, page = http(job.base .. "/")
        assert.are.equal(200, code)
        assert.is_truthy(page:match("^<!doctype html>"))
        assert.is_nil(page:match("<script[^>]+src="), "no external script")
        assert.is_nil(page:match("<link[^>]+href="), "no external stylesheet")
        assert.is_nil(page:match("https?://"), "no external address")
        local before = metrics(job.base)
        local dom = dump_dom(dir, job.base .. "/")
        local after = metrics(job.base)
        for id, name in pairs({ records_in = "eddy_records_in_total", records_out = "eddy_records_out_total",
                errors = "eddy_errors_total", dead_lettered = "eddy_dlq_records_total",
                late_records = "eddy_late_records_total" }) do
            assert.are.equal(before[name], after[name], name .. " moved: the job should be idle")
            local n, text = number_in(dom, id)
            assert.are.equal(after[name], n, ("#%s shows %q, /metrics %s"):format(id, tostring(text), tostring(after[name])))
        end
        assert.are.equal("wordcount", by_id(dom, "job"))
        assert.are.equal(fnv(h.read(WORDCOUNT)), by_id(dom, "version"))
        assert.are.equal("file", by_id(dom, "mode"))
        assert.is_truthy(by_id(dom, "uptime"):match("^%d+[smhd]"), by_id(dom, "uptime"))
        assert.is_truthy(by_id(dom, "conn"):match("^live"), "the page got its answers")
        assert.are.equal("none", by_id(dom, "last_error"))
        assert.is_truthy(tbody(dom, "reloads"):match("no reload since the start"))
        assert.is_truthy(tbody(dom, "tasks"):match("file mode"))
    end)
end)

describe("--http: a windowed store", function()
    local dir
    lazy_teardown(function()
        stop_all()
        if dir then os.execute("rm -rf " .. q(dir)) end
    end)

    it("/stores/<store>/<key> returns every window of the key with its start and stop", function()
        dir = h.tmpdir()
        local script = h.script(dir, "win.lua", [[
local eddy = require "eddy"
local job = eddy.job { name = "hwin" }
job:source("clicks")
   :group_by_key()
   :window(eddy.tumbling { size = "1m", grace = "1h" })
   :count { store = "per-minute" }
   :to_stream()
   :map_values(tostring)
   :to("clicks-per-minute")
return job
]])
        local T0 = 1700000000000 - 1700000000000 % 60000
        local recs = {}
        local want = {}           -- key -> start -> count
        math.randomseed(11)
        for i = 1, 120 do
            local key = "u" .. math.random(1, 4)
            local ts = T0 + math.random(0, 5 * 60000 - 1)
            local start = ts - ts % 60000
            want[key] = want[key] or {}
            want[key][start] = (want[key][start] or 0) + 1
            recs[i] = cjson.encode({ key = key, payload = "click", ts = ts })
        end
        local job = start_job(dir, "win", script, { args = { "--partitions", "2", "--no-watch" } })
        job:send(recs)
        job:wait_metrics("120 records in", 10, function(m) return m.eddy_records_in_total == 120 end)
        for key, windows in pairs(want) do
            local code, r, body = get_json(job.base .. "/stores/per-minute/" .. key)
            assert.are.equal(200, code, body)
            local got = {}
            for _, e in ipairs(r.results) do
                assert.are.equal(key, e.entry.key)
                assert.are.equal(e.entry.window.start + 60000, e.entry.window.stop)
                assert.is_nil(got[e.entry.window.start], "a window twice")
                got[e.entry.window.start] = e.entry.value
            end
            assert.are.same(windows, got, "windows of " .. key)
            local n = 0
            for _ in pairs(windows) do n = n + 1 end
            assert.are.equal(n, r.count)
        end
        local code = get_json(job.base .. "/stores/per-minute/nobody")
        assert.are.equal(404, code)
        assert.are.equal(0, job:cleanup())
    end)
end)

describe("--http: reloads", function()
    local dir
    lazy_setup(function() dir = h.tmpdir() end)
    after_each(stop_all)
    lazy_teardown(function()
        stop_all()
        if dir then os.execute("rm -rf " .. q(dir)) end
    end)

    local function script_text(tag)
        return ([[
local eddy = require "eddy"
local job = eddy.job { name = "hrl" }
job:source("in")
   :group_by_key()
   :count { store = "counts" }
   :to_stream()
   :map_values(function(n) return "%s " .. n end)
   :to("out")
return job
]]):format(tag)
    end
    local BROKEN = 'local eddy = require "eddy"\nlocal job = eddy.job { name = "hrl" }\n'
        .. 'job:source("in"):to("out")\nlocal x = = 1\nreturn job\n'            -- line 4

    it("/status.reloads: an ok entry with version and from after SIGHUP; a refused one naming the line; the counters match", function()
        local path = h.script(dir, "job.lua", script_text("v1"))
        local v1 = fnv(script_text("v1"))
        local job = start_job(dir, "rl", path, { args = { "--no-watch" } })
        job:send({ '{"key":"a","payload":"x"}' })
        job:wait_metrics("1 record", 5, function(m) return m.eddy_records_in_total == 1 end)

        -- a good version, by SIGHUP
        h.write(path, script_text("v2"))
        local v2 = fnv(script_text("v2"))
        job:signal("HUP")
        local st = job:wait_status("an ok reload", 10, function(s) return #s.reloads == 1 end)
        local r = st.reloads[1]
        assert.are.equal("ok", r.outcome)
        assert.are.equal(v2, r.version)
        assert.are.equal(v1, r.from)
        assert.is_nil(r.why)
        assert.is_true(r.time_ms >= st.started_ms and r.time_ms <= st.now_ms)
        assert.are.equal(v2, st.version, "/status.version is the running version")

        -- a broken one, by POST /reload (loopback, no token)
        h.write(path, BROKEN)
        local code, body = http(job.base .. "/reload", { method = "POST" })
        assert.are.equal(202, code, body)
        st = job:wait_status("a refused reload", 10, function(s) return #s.reloads == 2 end)
        r = st.reloads[2]
        assert.are.equal("refused", r.outcome)
        assert.are.equal(fnv(BROKEN), r.version)
        assert.are.equal(v2, r.from)
        assert.is_truthy(r.why:match("job%.lua:4:"), "why names the line: " .. tostring(r.why))
        assert.are.equal(v2, st.version, "the old version goes on")

        local m = metrics(job.base)
        assert.are.equal(1, m['eddy_reloads_total{outcome="ok"}'])
        assert.are.equal(1, m['eddy_reloads_total{outcome="refused"}'])
        assert.are.equal(0, m['eddy_reloads_total{outcome="rolled_back"}'])
        assert.is_truthy(m['eddy_info{job="hrl",version="' .. v2 .. '"}'])

        -- v2 handles the next record
        job:send({ '{"key":"a","payload":"x"}' })
        job:wait_metrics("2 records", 5, function(mm) return mm.eddy_records_in_total == 2 end)
        assert.are.equal(0, job:cleanup())
        local outs = h.envelopes(h.read(job.out))
        assert.are.equal("v1 1", outs[1].payload)
        assert.are.equal("v2 2", outs[2].payload)
    end)

    it("a rolled-back version is in the history and counted, with its reason", function()
        local bad = script_text("v1"):gsub('return "v1 " %.%. n', 'error("boom " .. n)')
        local path = h.script(dir, "rb.lua", script_text("v1"))
        local job = start_job(dir, "rb", path, { args = { "--no-watch" } })
        job:send({ '{"key":"a","payload":"x"}' })
        job:wait_metrics("1 record", 5, function(m) return m.eddy_records_in_total == 1 end)
        h.write(path, bad)
        job:signal("HUP")
        job:wait_status("the swap", 10, function(s) return #s.reloads == 1 end)
        local recs = {}
        for i = 1, 12 do recs[i] = '{"key":"k' .. i .. '","payload":"x"}' end
        job:send(recs)
        local st = job:wait_status("a rollback", 10, function(s) return #s.reloads == 2 end)
        assert.are.equal("ok", st.reloads[1].outcome)
        local r = st.reloads[2]
        assert.are.equal("rolled_back", r.outcome)
        assert.are.equal(fnv(bad), r.version)
        assert.are.equal(fnv(script_text("v1")), r.from)
        assert.is_truthy(r.why and #r.why > 0, "a reason")
        assert.are.equal(fnv(script_text("v1")), st.version, "the old version runs again")
        local m = metrics(job.base)
        assert.are.equal(1, m['eddy_reloads_total{outcome="ok"}'])
        assert.are.equal(1, m['eddy_reloads_total{outcome="rolled_back"}'])
        assert.is_truthy(st.last_error ~= cjson.null and st.last_error.message:match("boom"),
            "the last error is the failed version's: " .. cjson.encode(st.last_error))
    end)
end)

describe("--http: POST /reload and its token", function()
    local dir
    lazy_setup(function() dir = h.tmpdir() end)
    after_each(stop_all)
    lazy_teardown(function()
        stop_all()
        if dir then os.execute("rm -rf " .. q(dir)) end
    end)

    local function script(name, tag)
        return h.script(dir, name .. ".lua", ([[
local eddy = require "eddy"
local job = eddy.job { name = "htok" }
job:source("in"):map_values(function(v) return "%s" end):to("out")
return job
]]):format(tag))
    end

    local function reloads(job)
        local _, st = get_json(job.base .. "/status")
        return #st.reloads
    end

    it("bound to 127.0.0.1 without a token: POST /reload is accepted (202)", function()
        local path = script("loop", "a")
        local job = start_job(dir, "loop", path, { args = { "--no-watch" } })
        script("loop", "b")
        local code, body = http(job.base .. "/reload", { method = "POST" })
        assert.are.equal(202, code, body)
        assert.are.same({ reload = "requested" }, cjson.decode(body))
        job:wait_status("the reload", 5, function(s) return #s.reloads == 1 and s.reloads[1].outcome == "ok" end)
    end)

    it("bound to 0.0.0.0 without a token: POST is 403 naming --http-token, and a warning at the start", function()
        local path = script("any", "a")
        local port = free_port()
        local job = start_job(dir, "any", path, { port = port, http = "0.0.0.0:" .. port, args = { "--no-watch" } })
        assert.is_truthy(job:log():match("WARN.-beyond loopback and has no token"), job:log())
        script("any", "b")
        local code, body = http(job.base .. "/reload", { method = "POST" })
        assert.are.equal(403, code)
        assert.is_truthy(cjson.decode(body).error:match("%-%-http%-token"), body)
        -- GETs are served to anyone
        assert.are.equal(200, (http(job.base .. "/status")))
        k.sleep(0.3)
        assert.are.equal(0, reloads(job), "nothing reloaded")
    end)

    it("with --http-token: no header or a wrong one is 403; Authorization: Bearer <token> is 202 and reloads", function()
        local path = script("tok", "a")
        local job = start_job(dir, "tok", path, { args = { "--no-watch", "--http-token", "s3cret" } })
        script("tok", "b")
        local code, body = http(job.base .. "/reload", { method = "POST" })
        assert.are.equal(403, code, body)
        assert.is_truthy(cjson.decode(body).error:match("token"))
        code = http(job.base .. "/reload", { method = "POST", headers = { "Authorization: Bearer wrong" } })
        assert.are.equal(403, code)
        code = http(job.base .. "/reload", { method = "POST", headers = { "Authorization: Bearer s3cret-and-more" } })
        assert.are.equal(403, code)
        code = http(job.base .. "/reload", { method = "POST", headers = { "X-Eddy-Token: s3cre" } })
        assert.are.equal(403, code)
        k.sleep(0.3)
        assert.are.equal(0, reloads(job), "no reload from a refused request")
        code, body = http(job.base .. "/reload", { method = "POST", headers = { "Authorization: Bearer s3cret" } })
        assert.are.equal(202, code, body)
        local st = job:wait_status("the reload", 5, function(s) return #s.reloads == 1 end)
        assert.are.equal("ok", st.reloads[1].outcome)
        assert.is_truthy(job:log():match("reload %x+ swapped in"), job:log())
    end)

    it("EDDY_HTTP_TOKEN beyond loopback: X-Eddy-Token with the token is 202", function()
        local path = script("env", "a")
        local port = free_port()
        local job = start_job(dir, "env", path, { port = port, http = "0.0.0.0:" .. port,
            env = "EDDY_HTTP_TOKEN=t0k", args = { "--no-watch" } })
        assert.is_nil(job:log():match("no token"), job:log())
        script("env", "b")
        assert.are.equal(403, (http(job.base .. "/reload", { method = "POST", headers = { "X-Eddy-Token: nope" } })))
        local code, body = http(job.base .. "/reload", { method = "POST", headers = { "X-Eddy-Token: t0k" } })
        assert.are.equal(202, code, body)
        job:wait_status("the reload", 5, function(s) return #s.reloads == 1 end)
    end)
end)

describe("--http: bad values", function()
    lazy_teardown(stop_all)
    it("exit 2 with a clear message: not an address, a port out of range, a host name, a port taken", function()
        local dir = h.tmpdir()
        for _, v in ipairs({ "nonsense", "127.0.0.1:99999", "db.example.com:8080", ":0" }) do
            local code, _, err = h.eddy({ "run", WORDCOUNT, "--input", "-", "--http", v, "--state-dir", dir .. "/s" })
            assert.are.equal(2, code, v .. ": " .. err)
            assert.is_truthy(err:match("%-%-http " .. v:gsub("%p", "%%%0") .. ": expected PORT, HOST:PORT or :PORT"), err)
        end
        local job = start_job(dir, "taken", WORDCOUNT, { args = { "--input-format", "lines", "--no-watch" } })
        local code, _, err = h.eddy({ "run", WORDCOUNT, "--input", "-", "--http", "127.0.0.1:" .. job.port,
            "--state-dir", dir .. "/other" })
        assert.are.equal(2, code, err)
        assert.is_truthy(err:match("%-%-http 127%.0%.0%.1:" .. job.port .. ": cannot listen: Address already in use"), err)
        assert.is_nil(err:match("Failed to bind"), "libmicrohttpd's own line, unformatted: " .. err)
        assert.is_true(job:running(), "the first job goes on")
        assert.are.equal(200, (http(job.base .. "/status")))
        stop_all()
        os.execute("rm -rf " .. q(dir))
    end)
end)

describe("--http in Kafka mode (eddy broker)", function()
    local dir, broker, B, proc, port, base, script
    local TOPIC, NP = "hk-in", 4
    local produced, per_key, hw = 0, {}, {}
    local procs = {}

    -- cost: the seconds of CPU each record takes (v1: 0.5 ms, so a backlog builds)
    local function script_text(tag, cost)
        return ([[
local eddy = require "eddy"
local job = eddy.job { name = "httpk" }
job:source("hk-in")
   :peek(function() local t = os.clock() + %s; while os.clock() < t do end end)
   :group_by_key()
   :count { store = "per-key" }
   :to_stream()
   :map_values(function(n) return "%s " .. n end)
   :to("hk-out")
return job
]]):format(cost or 0.0005, tag)
    end

    local function records(n)
        local list = {}
        for i = 1, n do
            local key = "k" .. math.random(1, 13)
            per_key[key] = (per_key[key] or 0) + 1
            list[i] = { topic = TOPIC, key = key, value = "v" .. i }
        end
        return list
    end

    lazy_setup(function()
        dir = h.tmpdir()
        broker, B = k.start_broker(dir, { { TOPIC, NP }, { "hk-out", NP } })
        math.randomseed(5)
        for _, r in ipairs(k.produce(B, records(300), dir)) do
            hw[r.partition] = math.max(hw[r.partition] or 0, r.offset + 1)
        end
        produced = 300
        port = free_port()
        base = "http://127.0.0.1:" .. port
        script = h.script(dir, "kc.lua", script_text("v1"))
        proc = k.start_eddy(dir, "kc", script, B, { "--http", "127.0.0.1:" .. port, "--no-watch" })
        procs[#procs + 1] = proc
    end)

    lazy_teardown(function()
        for _, p in ipairs(procs) do p:kill() end
        if broker then broker:kill() end
        if dir then os.execute("rm -rf " .. q(dir)) end
    end)

    it("/status.tasks lists the assigned partitions; once consumed, every lag is 0 and records in = produced", function()
        local m = k.wait_for("every record in and every lag 0", 30, function()
            if not proc:running() then error("eddy exited:\n" .. proc:stderr(), 0) end
            local code, text = http(base .. "/metrics")
            if code ~= 200 then return nil, "HTTP " .. code end
            local mm = metrics(base)
            local lags = 0
            for p = 0, NP - 1 do
                local lag = mm[('eddy_consumer_lag{topic="%s",partition="%d"}'):format(TOPIC, p)]
                if lag == 0 then lags = lags + 1 end
            end
            if mm.eddy_records_in_total == produced and lags == NP then return mm end
            return nil, text
        end, 0.2)
        assert.are.equal(produced, m.eddy_records_in_total)
        assert.are.equal(produced, m.eddy_records_out_total)
        local code, st = get_json(base .. "/status")
        assert.are.equal(200, code)
        assert.are.equal("kafka", st.mode)
        assert.are.equal("httpk", st.job)
        assert.are.equal(fnv(script_text("v1")), st.version)
        assert.are.equal(NP, #st.tasks)
        table.sort(st.tasks, function(a, b) return a.partition < b.partition end)
        for p = 0, NP - 1 do
            local t = st.tasks[p + 1]
            assert.are.equal(TOPIC, t.topic)
            assert.are.equal(p, t.partition)
            assert.are.equal(hw[p] or 0, t.offset, "position of partition " .. p)
            assert.are.equal(0, t.lag)
        end
        assert.are.equal(0, st.lag)
        -- the store answers in Kafka mode too
        local r
        code, r = get_json(base .. "/stores/per-key/k3")
        assert.are.equal(200, code)
        assert.are.equal(per_key.k3, r.results[1].entry.value)
        assert.is_truthy(r.results[1].task:match("^0_%d$"))
    end)

    it("lag shows while the job works through a backlog (0.5 ms a record, batches of 4096), then goes back to 0", function()
        -- /status and the lag gauges are refreshed between batches, at most once a second,
        -- from the consumer's position (a batch taken counts as consumed): 8000 records
        -- take about 4 s in two or more batches, so a lag is seen after the first
        local list = records(8000)
        for _, r in ipairs(k.produce(B, list, dir)) do
            hw[r.partition] = math.max(hw[r.partition] or 0, r.offset + 1)
        end
        local max_status, max_metrics = 0, 0
        local st = k.wait_for("every record in, the positions up to date and no lag", 30, function()
            if not proc:running() then error("eddy exited:\n" .. proc:stderr(), 0) end
            local _, s = get_json(base .. "/status")
            local m = metrics(base)
            local sum = 0
            for p = 0, NP - 1 do
                sum = sum + (m[('eddy_consumer_lag{topic="%s",partition="%d"}'):format(TOPIC, p)] or 0)
            end
            max_metrics = math.max(max_metrics, sum)
            if not s then return nil end
            max_status = math.max(max_status, s.lag)
            local pos = 0
            for _, t in ipairs(s.tasks) do
                assert.is_true(t.lag >= 0, "a negative lag: " .. cjson.encode(t))
                pos = pos + t.offset
            end
            if s.records_in == produced + #list and pos == produced + #list and s.lag == 0 then return s end
            return nil, cjson.encode(s)
        end, 0.1)
        produced = produced + #list
        assert.is_true(max_status > 0, "/status never showed a lag")
        assert.is_true(max_metrics > 0, "/metrics never showed a lag")
        for _, t in ipairs(st.tasks) do
            assert.are.equal(hw[t.partition], t.offset, "position of partition " .. t.partition)
        end
    end)

    it("the page: numbers equal /metrics, tasks and reloads shown; a screenshot under load", function()
        -- reloads first, so the history shows: a good one, then a broken one
        h.write(script, script_text("v2", 0.00005))           -- 50 us a record from now on
        local code = http(base .. "/reload", { method = "POST" })
        assert.are.equal(202, code)
        k.wait_for("the ok reload", 10, function()
            local _, s = get_json(base .. "/status")
            return s and #s.reloads == 1
        end, 0.1)
        h.write(script, script_text("v3") .. "oops(\n")
        assert.are.equal(202, (http(base .. "/reload", { method = "POST" })))
        k.wait_for("the refused reload", 10, function()
            local _, s = get_json(base .. "/status")
            return s and #s.reloads == 2
        end, 0.1)

        -- idle: the DOM's numbers are /metrics'
        local before = metrics(base)
        local dom = dump_dom(dir, base .. "/")
        local after = metrics(base)
        for id, name in pairs({ records_in = "eddy_records_in_total", records_out = "eddy_records_out_total",
                errors = "eddy_errors_total", dead_lettered = "eddy_dlq_records_total",
                late_records = "eddy_late_records_total" }) do
            assert.are.equal(before[name], after[name], name .. " moved: the job should be idle")
            assert.are.equal(after[name], (number_in(dom, id)), "#" .. id)
        end
        assert.are.equal(0, (number_in(dom, "lag")))
        assert.are.equal("kafka", by_id(dom, "mode"))
        local rows = 0
        for topic, p in dom:gmatch('<tr><td class="mono">([^<]+)</td><td class="num">(%d+)</td>') do
            assert.are.equal(TOPIC, topic)
            rows = rows + 1
        end
        assert.are.equal(NP, rows, "a row per task")
        local reloads = tbody(dom, "reloads")
        assert.is_truthy(dom:match('class="badge ok"'), "the ok reload")
        assert.is_truthy(dom:match('class="badge refused"'), "the refused reload")
        assert.is_truthy(reloads:match("kc%.lua:%d+"), "the refusal's reason names the line: " .. reloads)
        assert.are.equal("1 ok \194\183 1 refused \194\183 0 rolled back", by_id(dom, "reload_counts"))

        -- the screenshot, while records flow (1500/s for 12 s; the job keeps up):
        -- Chromium runs the page for 1000 s of virtual time, several seconds of real time (a
        -- chart sample per second of the job's clock)
        local producer = k.produce_async(B, records(18000), dir, "flow", 1500)
        procs[#procs + 1] = producer
        k.sleep(1.0)
        local png = h.ROOT .. "/build/http-page.png"
        os.remove(png)
        chromium(dir, { "--virtual-time-budget=1000000", "--screenshot=" .. png, "--hide-scrollbars" }, base .. "/")
        local f = io.open(png, "rb")
        assert.is_truthy(f, "no screenshot: " .. (h.read(dir .. "/chromium.err") or ""))
        local bytes = f:read("*a")
        f:close()
        assert.are.equal("\137PNG\r\n\26\n", bytes:sub(1, 8))
        assert.is_true(#bytes > 10 * 1024, "a screenshot of " .. #bytes .. " bytes")
        if os.getenv("EDDY_UPDATE_SCREENSHOT") == "1" then
            os.execute("mkdir -p " .. q(h.ROOT .. "/docs") .. " && cp " .. q(png) .. " " .. q(h.ROOT .. "/docs/http-page.png"))
        end
        k.produced(producer, 20)
        produced = produced + 18000
        k.wait_for("every record in", 20, function()
            local mm = metrics(base)
            return mm.eddy_records_in_total == produced
        end, 0.2)
        local rc = proc:stop("TERM", 10)
        assert.are.equal(0, rc, proc:stderr())
    end)
end)
