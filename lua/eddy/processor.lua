-- eddy.processor: the low-level processor (stream:process{...}), Kafka Streams'
-- Processor API: per-task init/close, declared stores, ctx:forward, per-key
-- event-time timers kept in LMDB, and punctuation schedules (ctx:every) on
-- wall-clock or stream time. eddy.dsl validates the definition (check), and
-- eddy.runtime compiles the node (build). See CONTRACT.md "Processor and timers".
--
-- Timers live in the store "<name>#timers" of each task, keyed by
-- be8(ts) .. string.buffer(key), so LMDB's key order is firing order. They fire
-- after the record that moved stream time to (or past) them, from the
-- runtime's after-record hook, and from the host's ticks (idle_advance, or a
-- pass left unfinished). A handler that fails inside a timer or a schedule is
-- counted in eddy_errors_total and logged; its store writes and outputs are
-- withdrawn, the way a failing record's are, and the timer is not fired again.
local _M = {}

local ffi = require "ffi"
local buffer = require "string.buffer"
local duration = require "eddy.duration"
local C = ffi.C
local benc, bdec = buffer.encode, buffer.decode
local type, error, pairs, ipairs, pcall, next, tostring, setmetatable =
    type, error, pairs, ipairs, pcall, next, tostring, setmetatable
local floor, huge, sub, sort = math.floor, math.huge, string.sub, table.sort
local ffi_string = ffi.string

-- The host functions used here (eddy_log, eddy_stats, the undo log) are
-- declared by eddy.state, which this module requires before it uses them.
local function host_has(sym)
    local ok = pcall(function() return C[sym] end)
    return ok
end

local EMPTY_HEADERS = setmetatable({}, { __newindex = function() error("rec.headers is read-only", 2) end })

-- Definition ---------------------------------------------------------------

local FIELDS = { stores = "table", init = "function", process = "function",
    on_timer = "function", close = "function", name = "string" }

--- Validate a processor definition; returns the node's fields (for dsl.new_node).
--- Errors are raised at `level` (the user's call of stream:process).
function _M.check(def, level)
    level = (level or 2) + 1
    if type(def) ~= "table" then
        error("process: expected a table { process = function(ctx, k, v, rec) ... end, ... }", level)
    end
    for k, v in pairs(def) do
        local want = FIELDS[k]
        if not want then
            error(("process: unknown field %q (stores, init, process, on_timer, close, name)")
                :format(tostring(k)), level)
        end
        if type(v) ~= want then
            error(("process: %s must be a %s, got %s"):format(k, want, type(v)), level)
        end
    end
    if not def.process then
        error("process: a process = function(ctx, k, v, rec) ... end is required", level)
    end
    if def.name and not def.name:match("^[%w%._%-]+$") then
        error("process: name must be made of [A-Za-z0-9._-]", level)
    end
    local stores, order = {}, {}
    for k, v in pairs(def.stores or {}) do
        local name, opts
        if type(k) == "number" then
            name, opts = v, {}
        else
            name, opts = k, v
        end
        if type(name) ~= "string" or not name:match("^[%w%._%-]+$") then
            error(("process: store names are strings of [A-Za-z0-9._-], got %s"):format(tostring(name)), level)
        end
        if type(opts) ~= "table" then
            error(("process: store %s: options must be a table such as { ttl = \"1h\" }"):format(name), level)
        end
        for ok in pairs(opts) do
            if ok ~= "ttl" then
                error(("process: store %s: unknown option %q (ttl)"):format(name, tostring(ok)), level)
            end
        end
        if opts.ttl ~= nil then
            local good = pcall(duration.parse, opts.ttl)
            if not good then
                error(("process: store %s: bad ttl %q (use ms or a string like \"30s\", \"1h\")")
                    :format(name, tostring(opts.ttl)), level)
            end
        end
        if stores[name] then error(("process: store %s is declared twice"):format(name), level) end
        stores[name] = { ttl = opts.ttl }
        order[#order + 1] = name
    end
    sort(order)
    return {
        fn = def.process,                      -- runtime: does the job read `rec`? (yes: 4th param)
        process = def.process, init = def.init, on_timer = def.on_timer, close = def.close,
        pname = def.name, stores = stores, store_names = order,
        -- Stores, timers and schedules need the job's state (LMDB, ticks).
        stateful = (#order > 0 or def.on_timer ~= nil or def.init ~= nil),
    }
end

-- Runtime ------------------------------------------------------------------

local function check_ts(ts, what)
    if type(ts) ~= "number" or ts ~= ts or ts >= 2 ^ 53 or ts <= -2 ^ 53 then  -- exact as a double
        error(what .. ": a timestamp must be a number of milliseconds within -2^53..2^53, got "
            .. tostring(ts), 3)
    end
    return floor(ts)
end

-- KS PunctuationSchedule.next: the next time after `now`, on the schedule's grid.
local function next_time(sched, now)
    local t = sched.at + sched.interval
    if now >= t then
        t = sched.at + (floor((now - sched.at) / sched.interval) + 1) * sched.interval
    end
    return t
end

-- The machinery shared by every processor of one job (one per state S).
local schedulers = setmetatable({}, { __mode = "k" })

local function scheduler(S, B, job)
    local sch = schedulers[S]
    if sch then return sch end
    local state = require "eddy.state"
    local be8, unbe8 = state.be8, state.unbe8
    local kp, kl, vp, vl = ffi.new("const char *[1]"), ffi.new("size_t[1]"),
        ffi.new("const char *[1]"), ffi.new("size_t[1]")
    local can_log, can_count = host_has("eddy_log"), host_has("eddy_stats")
    local can_undo = host_has("eddy_state_undo_record") and host_has("eddy_batch_drop_outputs_of")

    sch = { procs = {}, pending = {} }
    schedulers[S] = sch
    local procs, pending = sch.procs, sch.pending

    function sch.report(what, err)
        if can_count then C.eddy_stats.errors = C.eddy_stats.errors + 1 end
        local msg = ("processor %s"):format(what) .. ": " .. tostring(err)
        if can_log then C.eddy_log(0, "%s", msg) else io.stderr:write(msg, "\n") end
    end

    -- Outputs and store writes of a timer or schedule belong to no record: each
    -- call runs under its own batch index below -1, so that the host's
    -- per-record undo log and eddy_batch_drop_outputs_of see it alone.
    local seq = -1
    function sch.fresh()
        seq = seq - 1
        if seq < -1000000000 then seq = -2 end
        B.cur = seq
        return seq
    end
    function sch.withdraw(cur)
        if not can_undo then return end
        if B.state ~= nil then C.eddy_state_undo_record(B.state) end
        C.eddy_batch_drop_outputs_of(B, cur)
    end

    --- Up to `limit` raw keys of `store` (current task) in [from, to).
    function sch.scan(store, from, to, limit)
        local task, db = store:db()
        local it = C.eddy_kv_iter(B, task, db, from or "", from and #from or 0, to or "", to and #to or 0)
        if it < 0 then error("store " .. store.name .. ": " .. ffi_string(C.eddy_kv_error(B)), 0) end
        local out = {}
        while true do
            if #out >= limit then C.eddy_kv_iter_close(B, it); break end
            if C.eddy_kv_next(B, it, kp, kl, vp, vl) == 0 then break end
            out[#out + 1] = ffi_string(kp[0], kl[0])
        end
        return out
    end
    sch.be8, sch.unbe8 = be8, unbe8

    local function drain()
        while true do
            local task = next(pending)
            if task == nil then return end
            pending[task] = nil
            local st = floor(task / 65536)
            for _, P in ipairs(procs) do
                if P.sub == st then P.due(task, false) end
            end
        end
    end

    --- After each record (runtime): fire what the record made due.
    function S.after_record()
        if next(pending) == nil then return end
        local cur, task, stage = B.cur, S.task, B.stage
        local ok, err = pcall(drain)
        B.cur, S.task, B.stage = cur, task, stage
        if not ok then sch.report("timers", err) end
    end

    -- Every move of a task's stream time may make timers and schedules due.
    local advance, set_stream_time = S.advance, S.set_stream_time
    S.advance = function(task, ts)
        pending[task] = true
        return advance(task, ts)
    end
    if set_stream_time then
        S.set_stream_time = function(task, t)
            pending[task] = true
            return set_stream_time(task, t)
        end
    end

    -- eddy.job{ idle_advance = d }: a task whose stream time has not moved for d
    -- of wall-clock time follows the wall clock from its last move (the rule of
    -- eddy.window's idle_advance), so its timers fire on a quiet partition.
    local opts = job and job.options or {}
    local idle = opts.idle_advance and duration.parse(opts.idle_advance, "eddy.job idle_advance")
    if idle == 0 then idle = nil end
    local last = {}
    local function idle_advance(task, now)
        local st = S.get_stream_time(task)
        if st == -huge then return end
        local l = last[task]
        if not l or st ~= (l.set or l.st) then
            last[task] = { wall = now, st = st }
        elseif now - l.wall >= idle then
            S.set_stream_time(task, l.st + (now - l.wall))
            l.set = S.get_stream_time(task)
        end
    end

    -- Between batches: init new tasks, wall-clock schedules, and whatever is due.
    S.tickers[#S.tickers + 1] = function(now)
        local cur, saved = B.cur, S.task
        local ok, err = pcall(function()
            local tasks = {}
            for task in pairs(S.tasks_seen) do tasks[#tasks + 1] = task end
            sort(tasks)
            for _, task in ipairs(tasks) do
                local st, mine = floor(task / 65536), false
                for _, P in ipairs(procs) do
                    if P.sub == st then
                        if idle and not mine then idle_advance(task, now) end
                        mine = true
                        P.tick(task, now)
                    end
                end
            end
            drain()
        end)
        B.cur, S.task = cur, saved
        if not ok then sch.report("ticks", err) end
    end

    S.forgetters[#S.forgetters + 1] = function(task)
        pending[task], last[task] = nil, nil
        for _, P in ipairs(procs) do P.forget(task) end
    end
    return sch
end

--- Build the node function of a "process" node. S: the job's state (nil when the
--- job is stateless), B: the batch view, job: the job (its options).
function _M.build(node, nxt, S, B, job)
    local process, init, on_timer, close = node.process, node.init, node.on_timer, node.close
    local name = node.pname or ("process-" .. node.id)
    local label = name .. " (" .. node.line .. ")"
    local sch = S and scheduler(S, B, job)
    local stores = {}
    if S then
        for _, sname in ipairs(node.store_names) do
            stores[sname] = S:store(sname, { ttl = node.stores[sname].ttl })
        end
    end
    local tstore = S and on_timer and S:store(name .. "#timers")
    local mstore = S and S:store(name .. "#sched")
    local ctxs = {}          -- task -> ctx (init done)
    local due = {}           -- task -> earliest timer ts (cache of the first key)
    local firing = {}        -- task -> true while its timers fire

    local Ctx = {}
    Ctx.__index = Ctx
    Ctx.__tostring = function(c) return "eddy.processor.ctx(" .. name .. ", task " .. c.task .. ")" end

    function Ctx:store(sname)
        local s = stores[sname]
        if not s then
            if node.stores[sname] and not S then
                error("ctx:store(" .. tostring(sname) .. "): the job has no state", 2)
            end
            local declared = #node.store_names > 0 and table.concat(node.store_names, ", ") or "none"
            error(("ctx:store: store %q is not declared by processor %s (declared: %s); add it to stores = { ... }")
                :format(tostring(sname), name, declared), 2)
        end
        if self._phase == "close" then
            error("ctx:store(" .. sname .. ") is not available in close(): the task's stores are already closed", 2)
        end
        return s
    end

    function Ctx:forward(k, v, ts)
        local phase = self._phase
        if phase == "init" or phase == "close" then
            error("ctx:forward is not available in " .. phase .. "()", 2)
        end
        local rec = self._rec
        if ts == nil then return nxt(k, v, rec, self._ts) end
        ts = check_ts(ts, "ctx:forward")
        local r = { topic = rec.topic, partition = rec.partition, offset = rec.offset, ts = ts,
            headers = rec.headers, window = rec.window }
        return nxt(k, v, r, ts)
    end

    local function timer_key(self, key, ts, what)
        if not on_timer then
            error(what .. ": processor " .. name .. " has no on_timer handler", 3)
        end
        if not S then error(what .. ": timers need the job's state", 3) end
        ts = check_ts(ts, what)
        if ts < 0 then error(what .. ": the timestamp must not be negative, got " .. ts, 3) end
        if key == nil then error(what .. ": a key is required", 3) end
        local ok, kb = pcall(benc, key)
        if not ok then error(what .. ": the key cannot be encoded: " .. tostring(kb), 3) end
        if self.task ~= S.task then
            error(what .. ": this ctx belongs to another task", 3)
        end
        return sch.be8(ts) .. kb, ts
    end

    --- An event-time timer for `key` at `ts`: on_timer(ctx, key, ts) runs once
    --- when the task's stream time reaches ts. One timer per (key, ts).
    function Ctx:timer(key, ts)
        local ek
        ek, ts = timer_key(self, key, ts, "ctx:timer")
        tstore:raw_put(ek, "1")
        local task = self.task
        if due[task] ~= nil and ts < due[task] then due[task] = ts end   -- nil: not loaded yet
        if not firing[task] and ts <= S.get_stream_time(task) then sch.pending[task] = true end
    end

    --- Cancel the timer for (key, ts); true if there was one.
    function Ctx:cancel_timer(key, ts)
        local ek = timer_key(self, key, ts, "ctx:cancel_timer")
        if tstore:raw_get(ek) == nil then return false end
        tstore:raw_delete(ek)
        return true
    end

    --- A schedule: fn(ctx, now) every `interval`, on the wall clock (default) or
    --- on stream time ("stream"). Returns a handle with :cancel().
    function Ctx:every(interval, fn, kind)
        if not S then
            error("ctx:every: schedules need a stateful processor (give it init = function(ctx) ... end)", 2)
        end
        local ms = duration.parse(interval, "ctx:every interval")
        if ms <= 0 then error("ctx:every: the interval must be positive", 2) end
        if type(fn) ~= "function" then error("ctx:every: expected a function(ctx, now)", 2) end
        local list
        if kind == nil or kind == "wall" or kind == "wall_clock" then
            -- KS WALL_CLOCK_TIME: first one interval after the schedule began. The
            -- last run (or the start) is kept in the task's "#sched" store, so a
            -- restarted job goes on from it instead of starting the interval over.
            list = self._wall
            local key = "every" .. (#self._wall + #self._stream + 1)
            local now = tonumber(B.wall_ms)
            local at = now + ms
            if mstore then
                local saved = S.task
                S.task = self.task
                local last = mstore:raw_get(key)
                if last then at = sch.unbe8(last, 1) + ms else mstore:raw_put(key, sch.be8(now)) end
                S.task = saved
            end
            list[#list + 1] = { interval = ms, fn = fn, at = at, kind = "wall" }
        elseif kind == "stream" or kind == "stream_time" then
            -- KS STREAM_TIME: aligned to 0, first as soon as there is a stream time
            list = self._stream
            list[#list + 1] = { interval = ms, fn = fn, at = 0, kind = "stream" }
            sch.pending[self.task] = true
        else
            error(("ctx:every: kind must be \"wall\" or \"stream\", got %q"):format(tostring(kind)), 2)
        end
        local sched = list[#list]
        sched.index = #self._wall + #self._stream
        return { cancel = function() sched.cancelled = true end }
    end

    local function new_ctx(task)
        local partition = task % 65536
        return setmetatable({ task = task, partition = partition, name = name,
            _wall = {}, _stream = {}, _phase = nil }, Ctx)
    end

    -- The task's ctx, init run (errors propagate: the caller contains them).
    local function ctx_for(task)
        local c = ctxs[task]
        if c then return c end
        c = new_ctx(task)
        if S then c.stream_time = S.get_stream_time(task) end
        if init then
            c._phase = "init"
            init(c)
            c._phase = nil
        end
        ctxs[task] = c
        return c
    end

    if not S then
        -- A stateless processor: no stores, timers or schedules; stream time in memory.
        return function(k, v, rec, ts)
            local task = rec.partition or 0
            local c = ctx_for(task)
            if c.stream_time == nil or ts > c.stream_time then c.stream_time = ts end
            local sp, sr, st = c._phase, c._rec, c._ts
            c._phase, c._rec, c._ts = "process", rec, ts
            process(c, k, v, rec)
            c._phase, c._rec, c._ts = sp, sr, st
        end
    end

    -- Run fn(c, ...) for a timer or schedule, contained: on failure its writes and
    -- outputs are withdrawn, the error counted and logged. `marker` makes the
    -- first write of the call (see sch.fresh) and is redone after a withdrawal.
    local function contained(what, marker, fn, c, ...)
        local cur = sch.fresh()
        marker()
        local ok, err = pcall(fn, c, ...)
        if not ok then
            sch.withdraw(cur)
            sch.fresh()
            marker()
            sch.report(label .. ": " .. what, err)
        end
        return ok
    end

    local function synthetic(c, ts)
        return { topic = nil, partition = c.partition, offset = nil, ts = ts, headers = EMPTY_HEADERS }
    end

    -- Init for a task outside a record (ticks, timers): contained.
    local function ctx_contained(task)
        local c = ctxs[task]
        if c then return c end
        local good, res = true, nil
        if init then
            local cur = sch.fresh()
            mstore:raw_put("init", "1")
            good, res = pcall(ctx_for, task)
            if not good then
                sch.withdraw(cur)
                sch.report(label .. ": init (task " .. task .. ")", res)
                return nil
            end
            return res
        end
        return ctx_for(task)
    end

    local CHUNK = 256

    local function fire_timers(c, task, bound)
        local upper = sch.be8(bound + 1)
        local from = nil
        firing[task] = true
        while true do
            local chunk = sch.scan(tstore, from, upper, CHUNK)
            if #chunk == 0 then break end
            for _, ek in ipairs(chunk) do
                if tstore:raw_get(ek) ~= nil then   -- not cancelled by an earlier on_timer
                    local ts, key = sch.unbe8(ek, 1), bdec(sub(ek, 9))
                    c._phase, c._rec, c._ts = "timer", synthetic(c, ts), ts
                    c.stream_time = bound
                    contained("on_timer(" .. tostring(key) .. ", " .. ts .. ")",
                        function() tstore:raw_delete(ek) end, on_timer, c, key, ts)
                    c._phase = nil
                end
            end
            from = chunk[#chunk] .. "\0"
        end
        firing[task] = nil
        local first = sch.scan(tstore, nil, nil, 1)[1]
        due[task] = first and sch.unbe8(first, 1) or huge
    end

    local function run_schedules(c, list, now, what)
        local i = 1
        while i <= #list do
            local s = list[i]
            if s.cancelled then
                table.remove(list, i)
            else
                if s.at <= now then
                    c._phase, c._rec, c._ts = what, synthetic(c, now), now
                    c.stream_time = S.get_stream_time(c.task)
                    local key = "every" .. s.index
                    contained("every(" .. s.interval .. "ms, " .. s.kind .. ")",
                        function() mstore:raw_put(key, sch.be8(now)) end, s.fn, c, now)
                    c._phase = nil
                    s.at = next_time(s, now)
                end
                i = i + 1
            end
        end
    end

    -- Timers and stream-time schedules of `task` due at its stream time.
    -- reload: read the earliest timer from the store rather than the cache.
    local P = { sub = node.subtopology or 0 }
    function P.due(task, reload)
        local st = S.get_stream_time(task)
        if st == -huge then return end
        local c = ctxs[task]
        if tstore then
            local saved = S.task
            S.task = task
            if due[task] == nil or reload then
                local first = sch.scan(tstore, nil, nil, 1)[1]
                due[task] = first and sch.unbe8(first, 1) or huge
            end
            if due[task] <= st then
                c = c or ctx_contained(task)
                if c then fire_timers(c, task, st) end
            end
            S.task = saved
        end
        if c and #c._stream > 0 then
            local saved = S.task
            S.task = task
            run_schedules(c, c._stream, st, "every")
            S.task = saved
        end
    end
    function P.tick(task, now)
        local saved = S.task
        S.task = task
        local c = ctx_contained(task)
        if c and #c._wall > 0 then run_schedules(c, c._wall, now, "every") end
        S.task = saved
        P.due(task, true)
    end
    function P.forget(task)
        local c = ctxs[task]
        ctxs[task], due[task], firing[task] = nil, nil, nil
        if c and close then
            c._phase = "close"
            local ok, err = pcall(close, c)
            if not ok then sch.report(label .. ": close (task " .. task .. ")", err) end
        end
    end
    P.id = node.id
    sch.procs[#sch.procs + 1] = P
    sort(sch.procs, function(a, b) return a.id < b.id end)

    return function(k, v, rec, ts)
        local task = S.task
        local c = ctxs[task] or ctx_for(task)
        local sp, sr, st = c._phase, c._rec, c._ts
        c._phase, c._rec, c._ts = "process", rec, ts
        c.stream_time = S.get_stream_time(task)
        process(c, k, v, rec)
        c._phase, c._rec, c._ts = sp, sr, st
    end
end

return _M
