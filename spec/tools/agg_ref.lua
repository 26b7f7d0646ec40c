-- spec/tools/agg_ref.lua: what the aggregation specs compare eddy against, computed
-- here in plain Lua, independently of eddy: a seeded random generator, input
-- generation, a reference aggregation (Kafka Streams' rules), and grouping of output
-- records per key.
local _M = {}

--- A seeded generator (a 31-bit LCG, the same numbers on every platform).
function _M.rng(seed)
    local s = seed % 2147483648
    local r = {}
    function r.next()
        s = (s * 1103515245 + 12345) % 2147483648
        return s
    end
    --- an integer in [lo, hi]
    --- (from the high bits: an LCG's low bits repeat with a tiny period)
    function r.int(lo, hi) return lo + math.floor(r.next() / 2147483648 * (hi - lo + 1)) end
    function r.pick(list) return list[r.int(1, #list)] end
    function r.chance(p) return r.next() / 2147483648 < p end
    return r
end

--- A pool of n distinct keys, with a few awkward ones (spaces, quotes, UTF-8, a
--- backslash, long) among plain ones.
function _M.key_pool(n)
    local odd = { "a b", 'quo"te', "ключ", "back\\slash", "tab\there", "ünï", ("long-"):rep(40),
        "x:y/z", "0", "-1" }
    local keys = {}
    for i = 1, n do keys[i] = odd[i] or ("k%03d"):format(i) end
    return keys
end

--- Reference aggregation over input records (tables with key, value, ts, partition).
--- spec:
---   regroup(rec) -> new key (nil: the record is skipped), default rec.key
---   value(rec)   -> the value the aggregation sees, default rec.value
---   group(rec, key) -> the identity of the aggregate (default key; e.g. partition..key
---                     when the grouping does not repartition)
---   step(acc, v, key, rec) -> new acc; acc is nil for the first record of a key
---                     (a nil result deletes the aggregate)
---   fails(rec, key, v) -> true when the record fails (dead-lettered, nothing changes)
--- Returns the expected updates in input order { {key=, value=, ts=, rec=}, ... } and
--- the final aggregates by group.
function _M.aggregate(records, spec)
    local state, out, last_ts = {}, {}, {}
    for _, rec in ipairs(records) do
        local key = rec.key
        if spec.regroup then key = spec.regroup(rec) end
        local v = rec.value
        if spec.value then v = spec.value(rec) end
        if key ~= nil and v ~= nil and not (spec.fails and spec.fails(rec, key, v)) then
            local g = spec.group and spec.group(rec, key) or key
            local new = spec.step(state[g], v, key, rec)
            -- Kafka Streams: an update's timestamp is the largest of its inputs'
            local ts = rec.ts
            if last_ts[g] and last_ts[g] > ts then ts = last_ts[g] end
            if new == nil then last_ts[g] = nil else last_ts[g] = ts end
            state[g] = new
            out[#out + 1] = { key = key, value = new, ts = ts, rec = rec }
        end
    end
    return out, state
end

-- step functions for the three aggregations
function _M.count_step(acc) return (acc or 0) + 1 end

--- Group a list of {key=, ...} in order: { [key] = { item, ... } }.
function _M.by_key(list, keyf)
    local t = {}
    for _, e in ipairs(list) do
        local k = keyf and keyf(e) or e.key
        if k == nil then k = "\0nil" end
        local l = t[k]
        if not l then l = {}; t[k] = l end
        l[#l + 1] = e
    end
    return t
end

--- Compare eddy's output envelopes with expected updates, per key, in order.
--- decode(payload) turns an output payload into the value compared with the
--- expected one (default: the payload text); expect_value(e) the expected side.
--- Returns nil when equal, or a description of the first difference.
function _M.diff_updates(out, expected, decode, expect_value)
    decode = decode or function(p) return p end
    expect_value = expect_value or function(e) return e.value end
    local got, want = _M.by_key(out), _M.by_key(expected)
    local function show(v)
        if type(v) == "table" then return require("cjson").encode(v) end
        return tostring(v)
    end
    local function same(a, b)
        if type(a) ~= type(b) then return false end
        if type(a) ~= "table" then return a == b end
        for k, v in pairs(a) do if not same(v, b[k]) then return false end end
        for k in pairs(b) do if a[k] == nil then return false end end
        return true
    end
    local keys = {}
    for k in pairs(want) do keys[#keys + 1] = k end
    for k in pairs(got) do if not want[k] then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do
        local g, w = got[k] or {}, want[k] or {}
        for i = 1, math.max(#g, #w) do
            local ge, we = g[i], w[i]
            if not ge or not we then
                return ("key %q: %d update(s) out, %d expected; update #%d: got %s, expected %s")
                    :format(k, #g, #w, i, ge and show(decode(ge.payload)) or "none",
                        we and show(expect_value(we)) or "none")
            end
            local gv, wv = decode(ge.payload), expect_value(we)
            if not same(gv, wv) then
                return ("key %q update #%d: value %s, expected %s"):format(k, i, show(gv), show(wv))
            end
            if we.ts and ge.ts ~= we.ts then
                return ("key %q update #%d (value %s): ts %s, expected %s"):format(k, i, show(gv),
                    tostring(ge.ts), tostring(we.ts))
            end
        end
    end
    return nil
end

--- The last value per key of a list of envelopes (payload text; nil for a tombstone).
function _M.last_per_key(out)
    local t = {}
    for _, e in ipairs(out) do t[e.key] = e.payload == nil and false or e.payload end
    return t
end

return _M
