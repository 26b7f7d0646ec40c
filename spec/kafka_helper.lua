-- spec/kafka_helper.lua: end-to-end Kafka plumbing for the specs. Starts the real
-- `eddy broker` and `eddy run` as background processes, produces with Debian's
-- python3 + confluent_kafka (spec/tools/produce.py), reads topics back with kcat,
-- and reads a group's committed offsets (spec/tools/offsets.py).
local cjson = require "cjson"
local system = require "system"
local h = require "helper"

local q = h.q
local _M = {}

_M.PYTHON = "/usr/bin/python3"          -- the only python with confluent_kafka
_M.TOOLS = h.ROOT .. "/spec/tools"
_M.KCAT = "kcat"
-- every background process gets a hard cap, so a crashed spec run leaves nothing behind
_M.HARD_CAP_S = 120

function _M.now() return system.monotime() end
function _M.sleep(s) system.sleep(s) end

local function run(cmd)
    local ok, _, code = os.execute(cmd)
    if type(ok) == "number" then return ok / 256 end
    return code
end
_M.sh = run

local function capture(cmd)
    local p = assert(io.popen(cmd, "r"))
    local s = p:read("*a")
    p:close()
    return s
end
_M.capture = capture

--- Poll `fn` every `step` seconds until it returns a truthy value or `timeout`
--- seconds pass. Returns fn's values; on timeout, errors with `what` and the last
--- value fn returned as its second result (a description of what it saw).
function _M.wait_for(what, timeout, fn, step)
    local deadline = _M.now() + timeout
    local last
    while true do
        local v, seen = fn()
        if v then return v, seen end
        last = seen
        if _M.now() >= deadline then
            error(("timed out after %.1fs waiting for %s%s"):format(timeout, what,
                last ~= nil and (" (last seen: " .. tostring(last) .. ")") or ""), 2)
        end
        _M.sleep(step or 0.1)
    end
end

-- ---------------------------------------------------------------- processes

local Proc = {}
Proc.__index = Proc

--- Start argv in the background with stdout/stderr to files in `dir`, killed after
--- `cap` seconds (default HARD_CAP_S). Returns a process object (pid, out, err files).
function _M.spawn(dir, name, argv, cap)
    local parts = {}
    for i, a in ipairs(argv) do parts[i] = q(a) end
    local p = setmetatable({
        name = name,
        out = dir .. "/" .. name .. ".out",
        err = dir .. "/" .. name .. ".err",
        pidfile = dir .. "/" .. name .. ".pid",
        rcfile = dir .. "/" .. name .. ".rc",
    }, Proc)
    os.remove(p.rcfile)
    os.remove(p.pidfile)
    -- `timeout` forwards TERM/INT to the command and returns its exit status
    local inner = ("timeout -k 5 %d %s > %s 2> %s < /dev/null & echo $! > %s; wait $!; echo $? > %s")
        :format(cap or _M.HARD_CAP_S, table.concat(parts, " "), q(p.out), q(p.err), q(p.pidfile),
                q(p.rcfile))
    run("sh -c " .. q(inner) .. " > /dev/null 2>&1 &")
    p.pid = _M.wait_for(name .. " to start", 5, function()
        local s = h.read(p.pidfile)
        return s and tonumber(s:match("%d+"))
    end, 0.01)
    p.started = _M.now()
    return p
end

--- Exit status, or nil while running (remembered once seen: the file may be
--- removed with its directory, and the pid must not be signalled after exit).
function Proc:rc()
    if self.exit_status == nil then
        local s = h.read(self.rcfile)
        self.exit_status = s and tonumber(s:match("%d+"))
    end
    return self.exit_status
end

function Proc:running() return self:rc() == nil end

function Proc:signal(sig)
    if self:running() then run(("kill -%s %d 2>/dev/null"):format(sig, self.pid)) end
end

function Proc:stderr() return h.read(self.err) or "" end
function Proc:stdout() return h.read(self.out) or "" end

--- Wait up to `timeout` s for the process to exit. Returns rc (nil on timeout).
function Proc:wait(timeout)
    local deadline = _M.now() + timeout
    while self:running() and _M.now() < deadline do _M.sleep(0.02) end
    return self:rc()
end

--- Send `sig` (default TERM) and wait up to `timeout` s. Returns rc (nil if it
--- did not exit in time) and the seconds it took.
function Proc:stop(sig, timeout)
    local t0 = _M.now()
    self:signal(sig or "TERM")
    local rc = self:wait(timeout or 10)
    return rc, _M.now() - t0
end

--- Teardown: make sure it is gone (TERM, then KILL). Safe to call twice.
--- self.pid is the `timeout` wrapper: it forwards TERM to the command, but a KILL
--- cannot be forwarded, so the command (the wrapper's child) is killed first, then
--- the wrapper (which would otherwise leave the command running, orphaned).
function Proc:kill()
    if not self:running() then return end
    self:signal("TERM")
    if self:wait(8) == nil then
        if self:running() then run(("pkill -KILL -P %d 2>/dev/null"):format(self.pid)) end
        self:signal("KILL")
        self:wait(5)
    end
end

--- The pids (numbers) of pid's children.
function _M.children(pid)
    local l = {}
    for x in capture("pgrep -P " .. pid .. " 2>/dev/null"):gmatch("%d+") do l[#l + 1] = tonumber(x) end
    return l
end

--- Every process under pid (children, their children, ...): pids (numbers).
function _M.descendants(pid)
    local out, queue = {}, { pid }
    while #queue > 0 do
        for _, c in ipairs(_M.children(table.remove(queue))) do
            out[#out + 1] = c
            queue[#queue + 1] = c
        end
    end
    return out
end

--- The eddy process itself, the `timeout` wrapper's child (waits up to 5 s for it), to
--- signal it directly.
function Proc:child()
    return _M.wait_for("the eddy process under " .. self.name, 5, function()
        return _M.children(self.pid)[1]
    end, 0.02)
end

--- SIGKILL everything under the wrapper (eddy and its workers); returns how many there were.
function Proc:kill9_tree()
    local pids = _M.descendants(self.pid)
    if #pids > 0 then run("kill -9 " .. table.concat(pids, " ") .. " 2>/dev/null") end
    return #pids
end

--- Teardown for processes that may be stopped or have workers: CONT to everything under
--- the wrapper, TERM to the wrapper (forwarded to eddy); after `term_wait` s (default 8)
--- KILL to everything under it (as it was before the TERM, and now), then to the wrapper.
function Proc:reap(term_wait)
    if not self:running() then return end
    local kids = _M.descendants(self.pid)
    for _, c in ipairs(kids) do run("kill -CONT " .. c .. " 2>/dev/null") end
    self:signal("TERM")
    if self:wait(term_wait or 8) == nil then
        for _, c in ipairs(kids) do run("kill -9 " .. c .. " 2>/dev/null") end
        self:kill9_tree()
        if self:wait(3) == nil then self:signal("KILL"); self:wait(3) end
    end
end

-- ---------------------------------------------------------------- broker / eddy

--- Start `eddy broker` with topics { {name, partitions}, ... } without waiting for it.
--- opts.name: the process's name (default "broker"); opts.args: arguments before the
--- topics (e.g. { "--control", path }); opts.cap: its hard cap in seconds (spawn()).
function _M.spawn_broker(dir, topics, opts)
    opts = opts or {}
    local argv = { h.EDDY, "broker" }
    for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
    for _, t in ipairs(topics) do
        argv[#argv + 1] = "--topic"
        argv[#argv + 1] = t[1] .. ":" .. t[2]
    end
    return _M.spawn(dir, opts.name or "broker", argv, opts.cap)
end

--- A broker's bootstrap address once it has printed its line, else nil; errors if it exited.
function _M.broker_address(p)
    if not p:running() then error("eddy broker exited " .. tostring(p:rc()) .. ": " .. p:stderr(), 0) end
    return (p:stdout():match("^bootstrap: (%S+)\n"))
end

--- Wait up to `timeout` s (default 60: the mock cluster can take many seconds to create
--- many topics, 8-18 s seen) for a broker's bootstrap line; returns the address, also
--- kept in p.bootstrap.
function _M.bootstrap(p, timeout)
    p.bootstrap = _M.wait_for(p.name .. "'s bootstrap line", timeout or 60, function()
        local b = _M.broker_address(p)
        return b, b == nil and ("stdout: %s\nstderr: %s"):format(p:stdout(), p:stderr()) or nil
    end, 0.02)
    return p.bootstrap
end

--- Start `eddy broker` (spawn_broker's opts; opts.timeout: bootstrap()'s) and wait for
--- it; on failure it is killed. Returns proc, bootstrap.
function _M.start_broker(dir, topics, opts)
    local p = _M.spawn_broker(dir, topics, opts)
    local ok, bootstrap = pcall(_M.bootstrap, p, opts and opts.timeout)
    if not ok then p:kill(); error(bootstrap, 0) end
    return p, bootstrap
end

--- A broker for a describe block: `local c = K.cluster(topics)`, then
--- `setup(function() dir, brokers, procs = c:start() end)` and `teardown(function() c:stop() end)`.
--- start() makes a temporary dir and starts `eddy broker` with topics { {name, partitions}, ... }
--- there; it returns the dir, the bootstrap address and a list for the processes the tests
--- start (c.procs); stop() kills those, then the broker, and removes the dir.
local Cluster = {}
Cluster.__index = Cluster

function _M.cluster(topics)
    return setmetatable({ topics = topics, procs = {} }, Cluster)
end

function Cluster:start()
    self.dir = h.tmpdir()
    self.broker, self.brokers = _M.start_broker(self.dir, self.topics)
    return self.dir, self.brokers, self.procs
end

function Cluster:stop()
    for _, p in ipairs(self.procs) do p:kill() end
    if self.broker then self.broker:kill() end
    if self.dir then os.execute("rm -rf " .. q(self.dir)) end
end

-- eddy's own session settings for the mock cluster (a first join takes ~3 s)
_M.FAST_GROUP = { "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000" }

--- Start `eddy run SCRIPT --brokers B ...extra`. Returns the process.
function _M.start_eddy(dir, name, script, brokers, extra)
    local argv = { h.EDDY, "run", script, "--brokers", brokers, "--state-dir", dir .. "/state" }
    for _, a in ipairs(_M.FAST_GROUP) do argv[#argv + 1] = a end
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    return _M.spawn(dir, name, argv)
end

-- ---------------------------------------------------------------- clients

local function records_file(records, path)
    local lines = {}
    for i, r in ipairs(records) do
        local hs = {}
        for j, hv in ipairs(r.headers or {}) do
            hs[j] = { hv[1], hv[2] == nil and cjson.null or hv[2] }
        end
        lines[i] = cjson.encode({
            topic = r.topic,
            key = r.key == nil and cjson.null or r.key,
            value = r.value == nil and cjson.null or r.value,
            ts = r.ts, partition = r.partition, headers = hs,
        })
    end
    return h.write(path, table.concat(lines, "\n") .. "\n")
end

local function delivery_reports(out, n, errtext)
    local res = {}
    for line in out:gmatch("[^\n]+") do res[#res + 1] = cjson.decode(line) end
    assert(#res == n, ("produce.py: %d of %d delivery reports; stderr: %s"):format(#res, n, errtext or ""))
    for i, r in ipairs(res) do
        assert(r.error == cjson.null, ("record %d not delivered: %s"):format(i, tostring(r.error)))
    end
    return res
end

--- Produce records (tables: topic, key, value, ts, partition, headers = {{n, v}, ...};
--- key/value/header values nil for null). Returns, in order, { partition =, offset = }
--- per record. Errors if any was not delivered.
function _M.produce(brokers, records, dir)
    local input = records_file(records, dir .. "/produce.jsonl")
    local cmd = ("%s %s %s --input %s 2> %s"):format(_M.PYTHON, q(_M.TOOLS .. "/produce.py"),
        q(brokers), q(input), q(dir .. "/produce.err"))
    return delivery_reports(capture(cmd), #records, h.read(dir .. "/produce.err"))
end

--- Produce in the background at about `rate` records per second. Returns the
--- process; `_M.produced(proc, n)` waits for it and returns the delivery reports.
function _M.produce_async(brokers, records, dir, name, rate)
    local input = records_file(records, dir .. "/" .. name .. ".jsonl")
    local p = _M.spawn(dir, name, { _M.PYTHON, _M.TOOLS .. "/produce.py", brokers,
        "--rate", tostring(rate), "--input", input })
    p.nrecords = #records
    return p
end

function _M.produced(p, timeout)
    local rc = p:wait(timeout or 30)
    assert(rc == 0, ("%s exited %s: %s"):format(p.name, tostring(rc), p:stderr()))
    return delivery_reports(p:stdout(), p.nrecords, p:stderr())
end

--- Read a whole topic with `kcat -C -J -e`. Returns envelopes (key/payload nil for
--- null; headers a flat list with cjson.null for null values).
function _M.consume(brokers, topic)
    local cmd = ("%s -C -J -e -q -b %s -t %s -X fetch.wait.max.ms=10 2>/dev/null"):format(
        _M.KCAT, q(brokers), q(topic))
    return h.envelopes(capture(cmd))
end

--- Poll a topic until it holds at least n records; returns them.
function _M.wait_records(brokers, topic, n, timeout, proc)
    return _M.wait_for(("%d records in %s"):format(n, topic), timeout or 20, function()
        if proc and not proc:running() then
            error(("%s exited %s while waiting for %s:\n%s"):format(proc.name, tostring(proc:rc()),
                topic, proc:stderr()), 0)
        end
        local recs = _M.consume(brokers, topic)
        if #recs >= n then return recs end
        return nil, #recs .. " records"
    end, 0.2)
end

--- Committed offsets of `group` and high watermarks: { [topic] = { [p] = {committed=, high=} } }
--- (p is a 0-based number; committed -1 when none). topics = { {name, partitions}, ... }.
function _M.offsets(brokers, group, topics)
    local argv = { _M.PYTHON, _M.TOOLS .. "/offsets.py", brokers, group }
    for _, t in ipairs(topics) do argv[#argv + 1] = t[1] .. ":" .. t[2] end
    local parts = {}
    for i, a in ipairs(argv) do parts[i] = q(a) end
    local out = capture(table.concat(parts, " ") .. " 2>&1")
    local ok, t = pcall(cjson.decode, out)
    assert(ok and type(t) == "table", "offsets.py failed: " .. out)
    local res = {}
    for topic, ps in pairs(t) do
        res[topic] = {}
        for p, v in pairs(ps) do res[topic][tonumber(p)] = v end
    end
    return res
end

-- ---------------------------------------------------------------- comparing

--- Flat kcat header list from { {name, value}, ... } (nil value -> cjson.null).
function _M.flat_headers(list)
    local f = {}
    for _, hv in ipairs(list or {}) do
        f[#f + 1] = hv[1]
        f[#f + 1] = hv[2] == nil and cjson.null or hv[2]
    end
    return f
end

--- Group records by key (nil key -> "\0nil") keeping their order.
function _M.by_key(recs)
    local t = {}
    for _, r in ipairs(recs) do
        local k = r.key == nil and "\0nil" or r.key
        t[k] = t[k] or {}
        table.insert(t[k], r)
    end
    return t
end

--- Sort envelopes by (partition, offset): the order kcat shows is per partition.
function _M.sort_by_offset(recs)
    table.sort(recs, function(a, b)
        if a.partition ~= b.partition then return a.partition < b.partition end
        return a.offset < b.offset
    end)
    return recs
end

return _M
