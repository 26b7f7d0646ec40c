-- spec/tools/join_ref.lua: a reference stream-stream windowed join, written from the
-- rules of Kafka Streams 3.x's KStreamKStreamJoin with the spurious-result fix (as the
-- README states them for eddy), independently of lua/eddy/join.lua. It keeps plain Lua
-- lists, no byte encodings, and no shortcuts: every held record is looked at on every
-- record that may emit.
--
--   local ref = require "tools.join_ref"
--   local out = ref.run(records, { mode = "left", before = 100, after = 100, grace = 10,
--                                  partitions = 4, joiner = fn(l, r, k) or joiner_at = fn(i) })
--
-- records: { side = "left"|"right", key = string|nil, value = string|nil, ts = ms,
--            partition = p }, processed in list order; each partition is a task with its
--            own stream time (the largest timestamp it has seen, the current record's
--            included, nil-key and nil-value records too).
-- Returns the outputs in the order they are produced: { key =, value =, ts =,
-- partition = (the output's partition: murmur2 of the key modulo partitions, or the input
-- partition for a nil key), task = (the input partition), at = (index of the record that
-- produced it) }.
--
-- The rules, for a record of side s with key k, value v, timestamp t, in task p:
--  1. stream time st = max(st, t).
--  2. nil key: left/outer joins emit fn(v, nil) (left side) / fn(nil, v) (right side of an
--     outer join) at once, key nil, timestamp t; otherwise the record is dropped.
--  3. nil value: dropped.
--  4. A record at ts is kept while st <= ts + before + after + grace (a left record at ts
--     must still be found by a right record at ts + after that comes when stream time is
--     ts + after + grace, even with before = 0); older ones of both sides are forgotten,
--     and the record is kept (in side s) unless it is itself that old.
--  5. Left and outer joins, when t == st: every held record whose window has closed is
--     emitted with a nil partner, with its own timestamp, in the order (timestamp, right
--     before left, key (shorter first, then bytes), arrival): a left record at ts is closed
--     when ts + after + grace < st, a right one when ts + before + grace < st.
--  6. The record joins every kept record of the other side with key k and timestamp in
--     [max(0, t - before), max(0, t + after)] for a left record ([t - after, t + before] for
--     a right one), oldest first (arrival order within a timestamp); each pair gives fn(l, r)
--     at max(t, other ts). Held records of the other side with key k and that timestamp are
--     dropped (they found a partner).
--  7. Left record of a left join, or any record of an outer join, that found nothing: when
--     its window already ended (max(0, t + after) < st, t + before for a right record) it is
--     emitted at once, fn(v, nil) at t; otherwise held (step 5).
local _M = {}

local helper = require "helper"

local function key_less(a, b)
    if #a ~= #b then return #a < #b end
    return a < b
end

function _M.run(records, opts)
    local mode = opts.mode
    local before, after, grace = opts.before, opts.after, opts.grace or 0
    local retention = before + after + grace
    local n = opts.partitions or 1
    local joiner_at = opts.joiner_at or function() return opts.joiner end
    local tasks = {}
    local out = {}
    local arrival = 0

    local function task(p)
        local t = tasks[p]
        if not t then
            t = { st = nil, kept = { left = {}, right = {} }, held = {} }
            tasks[p] = t
        end
        return t
    end

    local function unjoined(side)
        return mode == "outer" or (mode == "left" and side == "left")
    end

    local function emit(k, v, ts, p, i)
        local part = k == nil and p or helper.partition_for(k, n)
        out[#out + 1] = { key = k, value = v, ts = ts, partition = part, task = p, at = i }
    end

    for i, r in ipairs(records) do
        local fn = joiner_at(i)
        local function apply(side, v, ov, k)
            if side == "left" then return fn(v, ov, k) end
            return fn(ov, v, k)
        end
        local T = task(r.partition or 0)
        local side, other = r.side, r.side == "left" and "right" or "left"
        local k, v, t = r.key, r.value, r.ts
        -- 1. stream time
        if T.st == nil or t > T.st then T.st = t end
        local st = T.st
        -- 2. nil key
        if k == nil then
            if v ~= nil and unjoined(side) then emit(nil, apply(side, v, nil, nil), t, r.partition or 0, i) end
            goto continue
        end
        -- 3. nil value
        if v == nil then goto continue end
        -- 4. retention
        do
            local live = st - retention
            for _, s in ipairs({ "left", "right" }) do
                local keep = {}
                for _, e in ipairs(T.kept[s]) do
                    if e.ts >= live then keep[#keep + 1] = e end
                end
                T.kept[s] = keep
            end
            if t >= live then
                arrival = arrival + 1
                local list = T.kept[side]
                list[#list + 1] = { key = k, ts = t, value = v, seq = arrival }
            end
        end
        -- 5. held records whose window closed
        if mode ~= "inner" and t == st then
            table.sort(T.held, function(a, b)
                if a.ts ~= b.ts then return a.ts < b.ts end
                if a.side ~= b.side then return a.side == "right" end
                if a.key ~= b.key then return key_less(a.key, b.key) end
                return a.seq < b.seq
            end)
            local keep = {}
            for _, e in ipairs(T.held) do
                local look = e.side == "left" and after or before
                if e.ts + look + grace < st then
                    emit(e.key, apply(e.side, e.value, nil, e.key), e.ts, r.partition or 0, i)
                else
                    keep[#keep + 1] = e
                end
            end
            T.held = keep
        end
        -- 6. join with the other side
        do
            local jb, ja = before, after
            if side == "right" then jb, ja = after, before end
            local from, to = math.max(0, t - jb), math.max(0, t + ja)
            local found = {}
            for _, e in ipairs(T.kept[other]) do
                if e.key == k and e.ts >= from and e.ts <= to then found[#found + 1] = e end
            end
            table.sort(found, function(a, b)
                if a.ts ~= b.ts then return a.ts < b.ts end
                return a.seq < b.seq
            end)
            for _, e in ipairs(found) do
                if mode ~= "inner" then
                    local keep = {}
                    for _, h in ipairs(T.held) do
                        if not (h.side == other and h.key == k and h.ts == e.ts) then keep[#keep + 1] = h end
                    end
                    T.held = keep
                end
                emit(k, apply(side, v, e.value, k), math.max(t, e.ts), r.partition or 0, i)
            end
            -- 7. no partner
            if #found == 0 and unjoined(side) then
                if to < st then
                    emit(k, apply(side, v, nil, k), t, r.partition or 0, i)
                else
                    arrival = arrival + 1
                    T.held[#T.held + 1] = { side = side, key = k, ts = t, value = v, seq = arrival }
                end
            end
        end
        ::continue::
    end
    return out
end

--- Outputs grouped per output partition: { [p] = { {key, value, ts}, ... } }.
function _M.by_partition(list)
    local per = {}
    for _, o in ipairs(list) do
        local p = o.partition
        per[p] = per[p] or {}
        per[p][#per[p] + 1] = { key = o.key, value = o.value, ts = o.ts }
    end
    return per
end

return _M
