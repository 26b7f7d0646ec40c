-- eddy.window: window definitions (eddy.tumbling, eddy.hopping, eddy.sliding,
-- eddy.session) and the windowed aggregation they drive. Semantics follow
-- Kafka Streams; see CONTRACT.md "Grouped and windowed aggregation".
local _M = {}

local duration = require "eddy.duration"
local setmetatable, getmetatable, type, error = setmetatable, getmetatable, type, error

local Window = {}
Window.__index = Window
Window.__tostring = function(w) return "eddy." .. w.kind .. "{...}" end

function _M.is_window(w) return getmetatable(w) == Window end

local function opts_of(o, what)
    if type(o) ~= "table" then error(what .. ": expected a table of options", 3) end
    return o
end

local function dur(o, field, what, required)
    local v = o[field]
    if v == nil then
        if required then error(("%s: %s is required"):format(what, field), 4) end
        return nil
    end
    return duration.parse(v, what .. " " .. field)
end

local function common(o, what, w)
    w.grace = dur(o, "grace", what) or 0
    w.idle_advance = dur(o, "idle_advance", what)
    return setmetatable(w, Window)
end

--- TimeWindows.ofSizeAndGrace(size, grace)
function _M.tumbling(o)
    o = opts_of(o, "eddy.tumbling")
    local size = dur(o, "size", "eddy.tumbling", true)
    if size <= 0 then error("eddy.tumbling: size must be positive", 2) end
    return common(o, "eddy.tumbling", { kind = "tumbling", size = size, advance = size })
end

--- TimeWindows.ofSizeAndGrace(size, grace).advanceBy(advance)
function _M.hopping(o)
    o = opts_of(o, "eddy.hopping")
    local size = dur(o, "size", "eddy.hopping", true)
    local advance = dur(o, "advance", "eddy.hopping", true)
    if size <= 0 or advance <= 0 or advance > size then
        error("eddy.hopping: need 0 < advance <= size", 2)
    end
    return common(o, "eddy.hopping", { kind = "hopping", size = size, advance = advance })
end

--- SlidingWindows.ofTimeDifferenceAndGrace(diff, grace)
function _M.sliding(o)
    o = opts_of(o, "eddy.sliding")
    local diff = dur(o, "diff", "eddy.sliding", true)
    if diff <= 0 then error("eddy.sliding: diff must be positive", 2) end
    return common(o, "eddy.sliding", { kind = "sliding", diff = diff })
end

--- SessionWindows.ofInactivityGapAndGrace(gap, grace)
function _M.session(o)
    o = opts_of(o, "eddy.session")
    local gap = dur(o, "gap", "eddy.session", true)
    if gap <= 0 then error("eddy.session: gap must be positive", 2) end
    if o.merge ~= nil and type(o.merge) ~= "function" then
        error("eddy.session: merge must be a function(agg1, agg2, k) -> agg", 2)
    end
    -- merge: Kafka Streams' Merger, for aggregate() over sessions (count and
    -- reduce derive theirs). Called merge(acc, other_session_agg, k).
    return common(o, "eddy.session", { kind = "session", gap = gap, merge = o.merge })
end

-- Windowed aggregation ------------------------------------------------------
--
-- Kafka Streams' processors, record for record: KStreamWindowAggregate
-- (tumbling, hopping), KStreamSlidingWindowAggregate (its processReverse, what
-- KS runs on its default stores), KStreamSessionWindowAggregate. Emit "final"
-- is KS's EmitStrategy.onWindowClose (= suppress(untilWindowCloses) for time
-- windows and sessions), evaluated on every record and on every tick.
--
-- Stores (LMDB, per task):
--   <store>      wid .. be8(start)              -> be8(max ts) .. agg   (time windows, sliding)
--                wid .. be8(end) .. be8(start)  -> agg                  (sessions)
--                "\255emitted" -> be8(bound)     (sliding + final: finals sent below bound)
--   <store>#idx  be8(end) .. kb .. be4(#kb) .. be8(start) -> ""   (end: window end; stop for
--                time windows, inclusive end for sliding, last ts for sessions). Not
--                logged: after a restore the host empties it and it is rebuilt here
--                from <store> at the task's first record.
-- where wid = be4(#kb) .. kb, kb the encoded group key (length-prefixed, so a key's
-- windows are one contiguous range). The index is ordered by window end, so closing
-- windows (final results) and dropping expired ones are range scans of the index.
--
-- Results: key = the group key, value = the aggregate, ts = the largest record
-- timestamp in the window (KS's ValueAndTimestamp; for sessions the session end,
-- which is the same thing), rec.window = { start, stop }.

local buffer = require "string.buffer"
local bdec = buffer.decode
-- Values are built in a buffer object of our own, as eddy.state does: concatenating
-- buffer.encode's result in JIT-compiled code was seen to corrupt values on this LuaJIT.
local encbuf = buffer.new()
local function enc(prefix, v)
    return encbuf:reset():put(prefix):encode(v):tostring()
end
local floor, max, min = math.floor, math.max, math.min
local sub = string.sub
local tonumber, pairs, ipairs = tonumber, pairs, ipairs
local tsort = table.sort

local EMITTED = "\255emitted"
local EMPTY_HEADERS = setmetatable({}, { __newindex = function() error("rec.headers is read-only", 2) end })

local bytes = require "eddy.bytes"
local be4, unbe4, collect = bytes.be4, bytes.unbe4, bytes.collect

function _M.build(node, ctx)
    local state = require "eddy.state"
    local be8, unbe8, prefix_end = state.be8, state.unbe8, state.prefix_end
    local S, B, store, nxt = ctx.S, ctx.B, ctx.store, ctx.nxt
    local w = node.window
    local kind = w.kind
    local idx = S:store(node.store .. "#idx")
    local kenc, kdec = node.key_serde.encode, node.key_serde.decode
    local final = node.emit == "final"
    local grace = w.grace
    local sub_id = node.subtopology or 0
    local job_opts = ctx.job and ctx.job.options or {}
    local idle = w.idle_advance
    if idle == nil and job_opts.idle_advance ~= nil then
        idle = require("eddy.duration").parse(job_opts.idle_advance, "eddy.job idle_advance")
    end
    if idle == 0 then idle = nil end

    -- Kafka Streams' initializer, aggregator and (sessions) merger for count/reduce/aggregate.
    local agg_kind, fn, init = node.agg, node.fn, node.init
    local initf, aggf, mergef
    if agg_kind == "count" then
        initf = function() return 0 end
        aggf = function(acc) return acc + 1 end
        mergef = function(a, b) return a + b end
    elseif agg_kind == "reduce" then
        initf = function() return nil end
        aggf = function(acc, v, k) if acc == nil then return v end return fn(acc, v, k) end
        mergef = function(a, b, k) if a == nil then return b end return fn(a, b, k) end
    else
        initf = init
        aggf = function(acc, v, k, rec) return fn(acc, v, k, rec) end
        local m = node.merge or w.merge
        if m then
            mergef = function(a, b, k) return m(a, b, k) end
        elseif kind == "session" then
            error(("aggregate over session windows needs a merger: eddy.session{ gap = ..., merge = "
                .. "function(agg1, agg2, k) return ... end } (%s)"):format(node.line or "?"), 0)
        end
    end

    local function out(k, v, rec, ts, start, stop)
        local r
        if rec then
            r = { topic = rec.topic, partition = rec.partition, offset = rec.offset, ts = ts,
                headers = rec.headers or EMPTY_HEADERS, window = { start = start, stop = stop } }
        else
            r = { partition = S.task % 65536, ts = ts, headers = EMPTY_HEADERS,
                window = { start = start, stop = stop } }
        end
        return nxt(k, v, r, ts)
    end

    -- Time-window values: be8(max ts) .. agg.
    local function tw_get(key)
        local s = store:raw_get(key)
        if s == nil then return nil end
        return bdec(sub(s, 9)), unbe8(s, 1), true
    end
    local function tw_put(key, agg, ts)
        if agg == nil then store:raw_delete(key) else store:raw_put(key, enc(be8(ts), agg)) end
    end

    -- Window bounds from the index: windows with end < closed_below(st) are closed
    -- (their final result is due); windows with end < expire_below(st) are dropped.
    local closed_below, expire_below
    local size, advance, diff, gap
    if kind == "tumbling" or kind == "hopping" then
        size, advance = w.size, w.advance
        -- open while end > st - grace (end exclusive)
        closed_below = function(st) return st - grace + 1 end
        expire_below = closed_below
    elseif kind == "sliding" then
        diff = w.diff
        -- open while end >= st - grace (end inclusive); kept 2*diff longer: the
        -- algorithm reads windows up to 2*diff back to build a record's left window.
        closed_below = function(st) return st - grace end
        expire_below = function(st) return st - grace - 2 * diff end
    else
        gap = w.gap
        -- a session is closed when st > end + gap + grace
        closed_below = function(st) return st - gap - grace end
        expire_below = closed_below
    end

    -- Index keys: be8(end) .. kb .. be4(#kb) .. be8(start): windows that close
    -- together come out in key byte order (Kafka Streams' suppress order).
    local function idx_key(e, wid, start)
        return be8(e) .. sub(wid, 5) .. sub(wid, 1, 4) .. be8(start)
    end
    local function main_key_of(ik)         -- index key -> main store key, wid, start, end
        local e = unbe8(ik, 1)
        local wid = sub(ik, #ik - 11, #ik - 8) .. sub(ik, 9, #ik - 12)
        local s = unbe8(ik, #ik - 7)
        if kind == "session" then return wid .. be8(e) .. be8(s), wid, s, e end
        return wid .. be8(s), wid, s, e
    end

    local emit_final_now
    -- A final result is not the doing of the record that closed its window: if a
    -- step after it fails, the result is dropped and counted, the window stays
    -- closed, and the record goes on (S.isolated).
    local function emit_final(ik)
        return S.isolated("a final result of " .. node.store, emit_final_now, ik)
    end
    function emit_final_now(ik)
        local mk, wid, s, e = main_key_of(ik)
        local raw = store:raw_get(mk)
        if raw == nil then return end
        local k = kdec(sub(wid, 5))
        if kind == "session" then
            return out(k, bdec(raw), nil, e, s, e)
        end
        local ts = unbe8(raw, 1)
        local stop = kind == "sliding" and e or s + size
        return out(k, bdec(sub(raw, 9)), nil, ts, s, stop)
    end

    -- The smallest window end in each task's index (nil: not known since the
    -- start; math.huge: none), so that a record that closes nothing costs a
    -- comparison instead of an index scan.
    local next_end = {}
    local function idx_add(e, wid, start)
        idx:raw_put(idx_key(e, wid, start), "")
        local ne = next_end[S.task]
        if ne and e < ne then next_end[S.task] = e end
    end
    local function first_end()
        local k = idx:raw_first(be8(0), "\255")
        if k == nil then return math.huge end
        return unbe8(k, 1)
    end

    -- Close and expire windows of the task in hand at stream time st.
    local close_pass_now, check_index
    local function close_pass(st)
        check_index()
        if st == -math.huge then return end
        local cb = floor(closed_below(st))
        if cb <= 0 then return end
        local ne = next_end[S.task]
        if ne and ne >= cb then return end     -- nothing can close yet
        close_pass_now(st, cb)
        next_end[S.task] = first_end()
    end
    function close_pass_now(st, cb)
        local eb = floor(expire_below(st))
        if final and eb ~= cb then                 -- sliding: finals before expiry
            local from = store:raw_get(EMITTED)
            if from == nil or unbe8(from, 1) < cb then
                local ks, _, n = collect(idx:raw_iter(from or be8(0), be8(cb)))
                for i = 1, n do emit_final(ks[i]) end
                if n > 0 then store:raw_put(EMITTED, be8(cb)) end
            end
        end
        if eb <= 0 then return end
        -- in chunks: a burst of keys can close a million windows at once
        local from, upto, any = be8(0), be8(eb), false
        repeat
            local ks, _, n = idx:raw_collect(from, upto, 4096)
            for i = 1, n do
                if final and eb == cb then emit_final(ks[i]) end
                store:raw_delete((main_key_of(ks[i])))
            end
            if n > 0 then any, from = true, ks[n] .. "\0" end
        until n < 4096
        if any then idx:delete_range(be8(0), upto) end
    end

    -- Per-task wall-clock activity, for idle_advance.
    local last = {}
    local function note_activity(task, st)
        if idle then
            local l = last[task]
            if not l then l = {}; last[task] = l end
            l.wall, l.st, l.set = tonumber(B.wall_ms), st, nil
        end
    end

    if final or idle then
        S.tickers[#S.tickers + 1] = function(now)
            local tasks = {}
            for task in pairs(S.tasks_seen) do
                if floor(task / 65536) == sub_id then tasks[#tasks + 1] = task end
            end
            tsort(tasks)
            local saved = S.task
            for _, task in ipairs(tasks) do
                S.task = task
                local st = S.get_stream_time(task)
                if idle and st ~= -math.huge then
                    local l = last[task]
                    if not l or st ~= (l.set or l.st) then
                        last[task] = { wall = now, st = st }
                    elseif now - l.wall >= idle then
                        S.set_stream_time(task, l.st + (now - l.wall))
                        st = S.get_stream_time(task)
                        l.set = st
                    end
                end
                close_pass(st)
            end
            S.task = saved
        end
    end
    -- The index is not logged: after a restore it is empty while the store is not.
    -- Rebuilt once per task (at its first use since start, an assignment or a
    -- rewind) from the windows themselves, apart from the record in hand (so a
    -- failing record does not undo it).
    local checked = {}
    local function rebuild_now()
        local ks, _, n = collect(store:raw_iter(nil, "\255"))
        for i = 1, n do
            local k = ks[i]
            local klen = unbe4(k, 1)
            local wid = sub(k, 1, 4 + klen)
            if kind == "session" then
                idx:raw_put(idx_key(unbe8(k, 5 + klen), wid, unbe8(k, 13 + klen)), "")
            else
                local start = unbe8(k, 5 + klen)
                idx:raw_put(idx_key(kind == "sliding" and start + diff or start + size, wid, start), "")
            end
        end
        next_end[S.task] = nil
    end
    function check_index()
        local task = S.task
        if checked[task] then return end
        checked[task] = true
        if idx:raw_first(nil, nil) == nil and store:raw_first(nil, "\255") ~= nil then
            S.isolated("rebuilding the index of " .. node.store, rebuild_now)
        end
    end
    S.forgetters[#S.forgetters + 1] = function(task)
        last[task] = nil; next_end[task] = nil; checked[task] = nil
    end

    local function late() B.late = B.late + 1 end

    ---------------------------------------------------------------- tumbling, hopping
    local function time_windows(k, v, rec, ts, st, wid)
        local close = st - grace
        local start = floor(max(0, ts - size + advance) / advance) * advance
        while start <= ts do
            local stop = start + size
            if stop > close then
                local key = wid .. be8(start)
                local old, old_ts, existed = tw_get(key)
                local new_ts
                if not existed then
                    old, new_ts = initf(), ts
                else
                    new_ts = max(ts, old_ts)
                end
                local new = aggf(old, v, k, rec)
                tw_put(key, new, new_ts)
                if not existed then idx_add(stop, wid, start) end
                if not final then out(k, new, rec, new_ts, start, stop) end
            else
                late()
            end
            start = start + advance
        end
    end

    ---------------------------------------------------------------- sliding
    -- vt: { agg, ts } or nil (KS's ValueAndTimestamp; nil agg = no value).
    local function make(agg, ts) if agg == nil then return nil end return { agg, ts } end

    local function sliding(k, v, rec, ts, st, wid)
        local close = st - grace
        if ts + 1 + diff <= close then return late() end
        local starts = {}                           -- window starts seen (windowStartTimes)

        local function update(start, vt, existed)
            local wend = start + diff
            if wend >= close then
                local old = vt and vt[1]
                local new = aggf(old, v, k, rec)
                local new_ts = old == nil and ts or max(ts, vt[2])
                tw_put(wid .. be8(start), new, new_ts)
                if not existed then idx_add(wend, wid, start) end
                if not final then out(k, new, rec, new_ts, start, wend) end
            else
                late()
            end
        end
        local function create_current_right(right)
            local start = ts + 1
            tw_put(wid .. be8(start), right[1], right[2])
            idx_add(start + diff, wid, start)
            if not final then out(k, right[1], rec, right[2], start, start + diff) end
        end
        local function create_previous_right(start)
            update(start, make(initf(), ts), starts[start] ~= nil)
        end

        local lo = ts < diff and 0 or max(0, ts - 2 * diff)
        local ks, vs, n = collect(store:raw_iter(wid .. be8(lo), wid .. be8(ts + 2)))
        local wins = {}
        local nw = #wid
        for i = 1, n do
            local s = unbe8(ks[i], nw + 1)
            local raw = vs[i]
            wins[i] = { s, { bdec(sub(raw, 9)), unbe8(raw, 1) } }
            starts[s] = true
        end

        if ts < diff then                           -- processEarly
            local combined, right, right_created, prev = nil, nil, false, nil
            for i = 1, n do
                local s, vt = wins[i][1], wins[i][2]
                if s == 0 then
                    combined = vt
                    if vt[2] < ts then prev = vt[2] end
                elseif s <= ts then
                    right = vt
                    update(s, vt, true)
                elseif s == ts + 1 then
                    right_created = true
                end
            end
            if right == nil and combined ~= nil and combined[2] > ts then right = combined end
            if not right_created and right ~= nil and right[2] > ts then create_current_right(right) end
            if prev ~= nil and not starts[prev + 1] then create_previous_right(prev + 1) end
            if combined == nil then
                update(0, make(initf(), ts), false)
            else
                update(0, combined, true)
            end
            return
        end

        -- processReverse
        local left_agg, right_agg = nil, nil
        local left_created, right_created = false, false
        local prev = nil
        for i = n, 1, -1 do
            local s, vt = wins[i][1], wins[i][2]
            local e = s + diff
            if s == ts + 1 then
                right_created = true
            elseif e > ts then
                if right_agg == nil then right_agg = vt end
                update(s, vt, true)
            elseif e == ts then
                left_created = true
                update(s, vt, true)
                if vt[2] < ts then prev = vt[2] else return end
            else                                    -- e < ts
                left_agg = vt
                prev = vt[2]
                break
            end
        end
        -- createWindows
        if prev ~= nil then
            local prs = prev + 1
            if not starts[prs] and prs + diff >= ts then create_previous_right(prs) end
        end
        if not left_created then
            local vt
            if prev ~= nil and ts - diff <= prev then
                vt = make(left_agg[1], ts)
            else
                vt = make(initf(), ts)
            end
            update(ts - diff, vt, starts[ts - diff] ~= nil)
        end
        if not right_created and right_agg ~= nil and right_agg[2] > ts then
            create_current_right(right_agg)
        end
    end

    ---------------------------------------------------------------- sessions
    local function session(k, v, rec, ts, st, wid)
        local close = st - grace - gap
        local nw = #wid
        local ks, vs, n = collect(store:raw_iter(wid .. be8(max(0, ts - gap)), prefix_end(wid)))
        local agg = initf()
        local ms, me = ts, ts
        local merged = {}
        for i = 1, n do
            local e, s = unbe8(ks[i], nw + 1), unbe8(ks[i], nw + 9)
            if s <= ts + gap then
                local a = bdec(vs[i])
                merged[#merged + 1] = { ks[i], s, e, a }
                agg = mergef(agg, a, k)
                if s < ms then ms = s end
                if e > me then me = e end
            end
        end
        if me < close then return late() end
        if not (ms == ts and me == ts) then
            for _, m in ipairs(merged) do
                store:raw_delete(m[1])
                idx:raw_delete(idx_key(m[3], wid, m[2]))
                if not final then out(k, nil, rec, m[3], m[2], m[3]) end
            end
        end
        agg = aggf(agg, v, k, rec)
        local key = wid .. be8(me) .. be8(ms)
        if agg == nil then
            store:raw_delete(key)
        else
            store:raw_put(key, enc("", agg))
            idx_add(me, wid, ms)
        end
        if not final then out(k, agg, rec, me, ms, me) end
    end

    local process = kind == "session" and session or kind == "sliding" and sliding or time_windows

    return function(k, v, rec, ts)
        if k == nil then B.nil_keys = B.nil_keys + 1; return end
        local st = S.get_stream_time(S.task)
        note_activity(S.task, st)
        -- Null values: count counts them (KS's windowed count does); reduce and
        -- aggregate skip them (as eddy's non-windowed aggregations do); sliding
        -- windows skip them for all three (KStreamSlidingWindowAggregate).
        if v ~= nil or (agg_kind == "count" and kind ~= "sliding") then
            if ts < 0 then                      -- (KS's default extractor fails on it)
                error(("window %s: a record's timestamp must not be negative, got %d"):format(
                    node.store, ts), 0)
            end
            check_index()
            local kb = kenc(k)
            process(k, v, rec, ts, st, be4(#kb) .. kb)
        end
        return close_pass(st)
    end
end

return _M
