-- eddy.join: windowed stream-stream joins (eddy.join_window; stream:join,
-- left_join, outer_join with another stream) and table-table joins
-- (table:join, left_join, outer_join). Semantics follow Kafka Streams 3.x:
-- KStreamKStreamJoin with the spurious-result fix, KTableKTable*Join.
--
-- A stream-stream join keeps, per task, every record of each side for
-- before + after + grace (the join's retention) in one LMDB store family
-- <name> (changelog <app>-<name>-changelog):
--   <name>#left, <name>#right   wid .. be8(ts) .. be4(seq)  -> the value
--   <name>#idx                  be8(ts) .. side .. wid .. be4(seq) -> ""  (expiry, both sides;
--                               not logged: rebuilt from #left/#right after a restore)
--   <name>#outer                be8(ts) .. side .. wid .. be4(seq) -> the value
-- where wid = be4(#kb) .. kb (kb: the key through the join's key serde) and
-- side is "\0" (right) or "\1" (left), Kafka Streams' order for records of one
-- timestamp. #outer holds left/outer join records that found no partner yet:
-- they are emitted with a nil partner only once their window has closed
-- (ts + after + grace < stream time for the left side, ts + before + grace for
-- the right), and dropped as soon as a partner arrives.
local _M = {}

local duration = require "eddy.duration"
local buffer = require "string.buffer"
local bdec = buffer.decode
local setmetatable, getmetatable, type, error, pairs = setmetatable, getmetatable, type, error, pairs
local floor, max, min, huge = math.floor, math.max, math.min, math.huge
local byte, sub = string.byte, string.sub

local JoinWindow = {}
JoinWindow.__index = JoinWindow
JoinWindow.__tostring = function(w)
    return ("eddy.join_window{before=%d, after=%d, grace=%d}"):format(w.before, w.after, w.grace)
end

--- JoinWindows: records of the two sides join when their timestamps satisfy
--- left.ts - before <= right.ts <= left.ts + after. `diff` sets both (Kafka
--- Streams' ofTimeDifferenceAndGrace); `grace` (default 0) is how long after a
--- window ends out-of-order records are still joined, and how long left/outer
--- joins wait before emitting a record without a partner.
function _M.join_window(o)
    if type(o) ~= "table" then
        error("eddy.join_window: expected a table such as { diff = \"10m\", grace = \"1m\" } "
            .. "or { before = ..., after = ..., grace = ... }", 2)
    end
    for k in pairs(o) do
        if k ~= "diff" and k ~= "before" and k ~= "after" and k ~= "grace" then
            error(("eddy.join_window: unknown option %q (diff, before, after, grace)"):format(tostring(k)), 2)
        end
    end
    local diff = o.diff ~= nil and duration.parse(o.diff, "eddy.join_window diff") or nil
    local before = o.before ~= nil and duration.parse(o.before, "eddy.join_window before") or diff
    local after = o.after ~= nil and duration.parse(o.after, "eddy.join_window after") or diff
    if before == nil or after == nil then
        error("eddy.join_window: give diff (both directions), or before and after", 2)
    end
    local grace = o.grace ~= nil and duration.parse(o.grace, "eddy.join_window grace") or 0
    return setmetatable({ before = floor(before), after = floor(after), grace = floor(grace) }, JoinWindow)
end

function _M.is_join_window(w) return getmetatable(w) == JoinWindow end

local encbuf = buffer.new()
local function enc(v) return encbuf:reset():encode(v):tostring() end

local bytes = require "eddy.bytes"
local be4, unbe4, collect = bytes.be4, bytes.unbe4, bytes.collect

local EMPTY_HEADERS = setmetatable({}, { __newindex = function() error("rec.headers is read-only", 2) end })

-- The record an output carries: the input's, with the output's timestamp.
local function retime(rec, ts)
    if rec.ts == ts then return rec end
    return { topic = rec.topic, partition = rec.partition, offset = rec.offset, ts = ts,
        headers = rec.headers or EMPTY_HEADERS }
end

-- What both sides of one stream-stream join share in a compiled job: the
-- stores, expiry, and the emission of records that found no partner.
local function shared(spec, S, B)
    local rt = spec.rt
    if rt and rt.S == S then return rt end
    local state = require "eddy.state"
    local be8, unbe8 = state.be8, state.unbe8
    local w = spec.window
    local before, after, grace = w.before, w.after, w.grace
    local retention = before + after + grace
    local name = spec.name
    rt = { S = S }
    rt.stores = { left = S:store(name .. "#left"), right = S:store(name .. "#right") }
    local idx = S:store(name .. "#idx")
    local outer = spec.mode ~= "inner" and S:store(name .. "#outer") or nil
    rt.outer = outer
    local SIDE = { left = "\1", right = "\0" }

    -- the smallest timestamp in #idx / #outer per task (nil: unknown; huge: none)
    local min_idx, min_outer = {}, {}
    local function first_ts(store)
        local k = store:raw_first(be8(0), "\255")
        if k == nil then return huge end
        return unbe8(k, 1)
    end
    -- #idx is not logged: after a restore it is empty while #left/#right are not;
    -- rebuilt once per task (first use since start, an assignment or a rewind),
    -- apart from the record in hand
    local checked = {}
    local function rebuild_now()
        for side, store in pairs(rt.stores) do
            local ks, _, n = collect(store:raw_iter(nil, nil))
            for i = 1, n do
                local k = ks[i]              -- wid .. be8(ts) .. be4(seq)
                idx:raw_put(sub(k, #k - 11, #k - 4) .. SIDE[side] .. sub(k, 1, #k - 12) .. sub(k, #k - 3), "")
            end
        end
        min_idx[S.task] = nil
    end
    local function check_index()
        local task = S.task
        if checked[task] then return end
        checked[task] = true
        if idx:raw_first(nil, nil) == nil and (rt.stores.left:raw_first(nil, nil) ~= nil
            or rt.stores.right:raw_first(nil, nil) ~= nil) then
            S.isolated("rebuilding the index of join " .. name, rebuild_now)
        end
    end
    S.forgetters[#S.forgetters + 1] = function(task)
        min_idx[task], min_outer[task], checked[task] = nil, nil, nil
    end

    --- Records with ts < live(st) have left the join's retention. A record at ts is
    --- kept while st <= ts + before + after + grace: with before = 0, a left record at
    --- ts must still be there for a right record at ts + after + grace (and likewise
    --- with after = 0 for the right side).
    function rt.live(st) return st - retention end

    --- Drop the records of both sides that left the retention (stream time st).
    function rt.expire(st)
        check_index()
        local bound = st - retention
        if bound <= 0 then return end
        local task = S.task
        local m = min_idx[task]
        if m == nil then m = first_ts(idx); min_idx[task] = m end
        if m >= bound then return end
        local ks, _, n = collect(idx:raw_iter(be8(0), be8(bound)))
        for i = 1, n do
            local ik = ks[i]
            local store = byte(ik, 9) == 1 and rt.stores.left or rt.stores.right
            -- main key: wid .. be8(ts) .. be4(seq)
            store:raw_delete(sub(ik, 10, #ik - 4) .. sub(ik, 1, 8) .. sub(ik, #ik - 3))
        end
        idx:delete_range(be8(0), be8(bound))
        min_idx[task] = first_ts(idx)
    end

    --- Keep a record of `side` (Kafka Streams' KStreamJoinWindow).
    function rt.put(side, wid, ts, v)
        local store = rt.stores[side]
        local p = wid .. be8(ts)
        local seq = 0
        for _ in store:raw_iter(p, wid .. be8(ts + 1)) do seq = seq + 1 end
        local s4 = be4(seq)
        store:raw_put(p .. s4, enc(v))
        idx:raw_put(be8(ts) .. SIDE[side] .. wid .. s4, "")
        local task = S.task
        local m = min_idx[task]
        if m ~= nil and ts < m then min_idx[task] = ts end
    end

    --- A record of `side` found no partner: wait in #outer for its window to close.
    function rt.hold(side, wid, ts, v)
        local p = be8(ts) .. SIDE[side] .. wid
        local seq = 0
        for _ in outer:raw_iter(p, p .. "\255\255\255\255\255") do seq = seq + 1 end
        outer:raw_put(p .. be4(seq), enc(v))
        local task = S.task
        local m = min_outer[task]
        if m ~= nil and ts < m then min_outer[task] = ts end
    end

    --- A partner arrived for the records of `side` with this key and timestamp.
    function rt.matched(side, wid, ts)
        local p = be8(ts) .. SIDE[side] .. wid
        outer:delete_range(p, p .. "\255\255\255\255\255")
    end

    --- Emit the held records whose window has closed at stream time st. The
    --- shortcut looks with the shorter of before and after: Kafka Streams' (the
    --- processing side's after) would skip records of the other side whose window
    --- has closed when the window is asymmetric, and emit them later.
    function rt.emit_closed(st, rec, emit_one)
        local task = S.task
        local m = min_outer[task]
        if m == nil then m = first_ts(outer); min_outer[task] = m end
        if m == huge or m + min(before, after) + grace >= st then return end
        local upper = st - min(before, after) - grace     -- nothing at or after this can close
        if upper <= 0 then return end
        local ks, vs, n = collect(outer:raw_iter(be8(0), be8(upper)))
        local left_open, right_open = false, false
        for i = 1, n do
            if left_open and right_open then break end
            local ok = ks[i]
            local ts = unbe8(ok, 1)
            local is_left = byte(ok, 9) == 1
            if ts + (is_left and after or before) + grace >= st then
                if is_left then left_open = true else right_open = true end
            else
                local klen = unbe4(ok, 10)
                local kb = sub(ok, 14, 13 + klen)
                if not S.isolated("a left/outer result of join " .. name, emit_one, is_left, kb,
                    bdec(vs[i]), retime(rec, ts), ts, ok) then
                    outer:raw_delete(ok)           -- a failing record is not retried forever
                end
            end
        end
        min_outer[task] = first_ts(outer)
    end

    spec.rt = rt
    return rt
end

--- One side of a stream-stream join: fn(k, v, rec, ts) for records of that side.
function _M.build_side(node, nxt, S, B)
    local spec, side = node.spec, node.side
    local is_left = side == "left"
    local other_side = is_left and "right" or "left"
    local w = spec.window
    -- this side joins the other's records within [ts - jb, ts + ja]
    local jb, ja = w.before, w.after
    if not is_left then jb, ja = w.after, w.before end
    local rt = shared(spec, S, B)
    local state = require "eddy.state"
    local be8, unbe8 = state.be8, state.unbe8
    local other = rt.stores[other_side]
    local fn, mode = spec.fn, spec.mode
    local kenc, kdec = spec.key_serde.encode, spec.key_serde.decode
    -- does a record of this side without a partner produce a result?
    local unjoined = mode == "outer" or (mode == "left" and is_left)
    local outer = rt.outer
    local function joined(v, ov, k)
        if is_left then return fn(v, ov, k) end
        return fn(ov, v, k)
    end
    -- a held record whose window closed: fn(v, nil, k) / fn(nil, v, k)
    local function emit_one(held_left, kb, v, r, ts, okey)
        local k = kdec(kb)
        local out
        if held_left then out = fn(v, nil, k) else out = fn(nil, v, k) end
        outer:raw_delete(okey)
        return nxt(k, out, r, ts)
    end
    return function(k, v, rec, ts)
        local st = S.advance(S.task, ts)
        if k == nil then
            if v ~= nil and unjoined then      -- Kafka Streams >= 3.7: no key, no partner
                return nxt(nil, joined(v, nil, nil), rec, ts)
            end
            B.nil_keys = B.nil_keys + 1
            return
        end
        if v == nil then return end             -- Kafka Streams skips null values
        if ts < 0 then                          -- (KS's default extractor fails on it)
            error(("join %s: a record's timestamp must not be negative, got %d"):format(spec.name, ts), 0)
        end
        local kb = kenc(k)
        local wid = be4(#kb) .. kb
        rt.expire(st)
        if ts >= rt.live(st) then
            rt.put(side, wid, ts, v)
        else
            B.late = B.late + 1              -- out of the retention: joined, not kept
        end
        if outer and ts == st then rt.emit_closed(st, rec, emit_one) end
        local from, to = max(0, ts - jb), max(0, ts + ja)
        local ks, vs, n = collect(other:raw_iter(wid .. be8(from), wid .. be8(to + 1)))
        local nw = #wid
        for i = 1, n do
            local ots = unbe8(ks[i], nw + 1)
            if outer then rt.matched(other_side, wid, ots) end
            local ots_max = ots > ts and ots or ts
            nxt(k, joined(v, bdec(vs[i]), k), retime(rec, ots_max), ots_max)
        end
        if n == 0 and unjoined then
            if to < st then
                return nxt(k, joined(v, nil, k), rec, ts)
            end
            rt.hold(side, wid, ts, v)
        end
    end
end

-- Table-table joins ---------------------------------------------------------

--- One side of a table-table join: called with each change of that side's
--- table (k, new value, rec, ts); the table node leaves the old value in
--- node.parent_node.change.old. Both tables are materialized: values are
--- { value, timestamp }.
function _M.build_table_side(node, nxt, S)
    local spec, is_left = node.spec, node.side == "left"
    local mine = is_left and spec.left or spec.right
    local theirs = is_left and spec.right or spec.left
    local change = mine.change
    local other = S:store(theirs.store)
    local okenc = theirs.key_serde.encode
    local fn, mode = spec.fn, spec.mode
    return function(k, new, rec, ts)
        if k == nil then return end
        local old = change.old
        local cur = other:get(okenc(k))
        local o, ots = nil, nil
        if cur ~= nil then o, ots = cur[1], cur[2] end
        local out_ts = ts
        if ots and ots > ts then out_ts = ots end
        local out
        if mode == "inner" then
            if o == nil then return end
            if new ~= nil then
                if is_left then out = fn(new, o, k) else out = fn(o, new, k) end
            end
        elseif mode == "left" and not is_left then
            if o == nil then return end             -- no left value: no result
            out = fn(o, new, k)
        elseif mode == "left" then                   -- the left side of a left join
            if o == nil and new == nil and old == nil then return end
            if new ~= nil then out = fn(new, o, k) end
        else                                         -- outer join
            if o == nil and new == nil and old == nil then return end
            if new ~= nil or o ~= nil then
                if is_left then out = fn(new, o, k) else out = fn(o, new, k) end
            end
        end
        return nxt(k, out, retime(rec, out_ts), out_ts)
    end
end

return _M
