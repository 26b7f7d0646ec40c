-- eddy.state: the Lua side of the stores. A store is a named LMDB database in
-- each task's environment (host/eddy_state.c); the store object works on the
-- task of the record in hand (state.task, set by the runtime). Keys are
-- strings (numbers are converted with tostring); values are any Lua value
-- LuaJIT's string.buffer encodes. Values with a TTL carry their expiry.
local _M = {}

local ffi = require "ffi"
local buffer = require "string.buffer"
local duration = require "eddy.duration"
local C = ffi.C
local ffi_string, type, tostring, error, floor = ffi.string, type, tostring, error, math.floor
local benc, bdec = buffer.encode, buffer.decode
local byte, char, sub = string.byte, string.char, string.sub

ffi.cdef [[
int32_t     eddy_kv_open(eddy_batch_view *b, int32_t task, const char *name);
const char *eddy_kv_get(eddy_batch_view *b, int32_t task, int32_t db, const char *k, size_t klen, size_t *vlen);
int         eddy_kv_put(eddy_batch_view *b, int32_t task, int32_t db, const char *k, size_t klen, const char *v, size_t vlen);
int         eddy_kv_del(eddy_batch_view *b, int32_t task, int32_t db, const char *k, size_t klen);
int64_t     eddy_kv_count(eddy_batch_view *b, int32_t task, int32_t db);
int32_t     eddy_kv_iter(eddy_batch_view *b, int32_t task, int32_t db, const char *from, size_t flen, const char *to, size_t tlen);
int         eddy_kv_next(eddy_batch_view *b, int32_t it, const char **k, size_t *klen, const char **v, size_t *vlen);
void        eddy_kv_iter_close(eddy_batch_view *b, int32_t it);
int64_t     eddy_kv_del_range(eddy_batch_view *b, int32_t task, int32_t db, const char *from, size_t flen, const char *to, size_t tlen);
const char *eddy_kv_error(eddy_batch_view *b);
int32_t     eddy_murmur2_partition(const void *key, size_t len, int32_t n);
]]

-- Host functions for work outside a record (S.isolated, eddy.processor): the
-- log, the undo log, output withdrawal and the error counter (a prefix of the
-- host's struct eddy_metrics is enough).
ffi.cdef [[
void eddy_log(int level, const char *fmt, ...);
void eddy_state_undo_record(void *st);
void eddy_batch_drop_outputs_of(eddy_batch_view *b, int32_t src);
typedef struct eddy_metrics { uint64_t records_in, records_out, errors, dead_lettered,
    batches, late_records, nil_keys; } eddy_metrics;
extern eddy_metrics eddy_stats;
]]

local vlen = ffi.new("size_t[1]")
-- Values are built in a buffer object of our own: `"v" .. buffer.encode(v)` mixes
-- string.buffer's temporary buffer with a JIT-compiled concatenation, and this
-- LuaJIT (2.1.0-beta3, 2022) was seen to corrupt results that way.
local encbuf = buffer.new()
local kp, kl, vp, vl = ffi.new("const char *[1]"), ffi.new("size_t[1]"), ffi.new("const char *[1]"), ffi.new("size_t[1]")

-- Value encoding: a tag byte, then string.buffer's encoding. "v": plain;
-- "t": 8 bytes of expiry (ms, big-endian) first.
local function be8(n)
    n = floor(n)
    local hi, lo = floor(n / 4294967296), n % 4294967296
    return char(floor(hi / 16777216) % 256, floor(hi / 65536) % 256, floor(hi / 256) % 256, hi % 256,
        floor(lo / 16777216) % 256, floor(lo / 65536) % 256, floor(lo / 256) % 256, lo % 256)
end
local function unbe8(s, i)
    local a, b, c, d, e, f, g, h = byte(s, i, i + 7)
    return (((a * 256 + b) * 256 + c) * 256 + d) * 4294967296 + ((e * 256 + f) * 256 + g) * 256 + h
end
_M.be8, _M.unbe8 = be8, unbe8

--- Does the "next" key after every key with this prefix exist? Returns it or nil.
local function prefix_end(p)
    for i = #p, 1, -1 do
        local c = byte(p, i)
        if c < 255 then return sub(p, 1, i - 1) .. char(c + 1) end
    end
    return nil
end
_M.prefix_end = prefix_end

function _M.new(B)
    local S = { task = 0, B = B }
    local stores = {}

    local function kv_error(what)
        local msg = ffi_string(C.eddy_kv_error(B))
        if sub(msg, 1, #what) == what then error(msg, 3) end     -- it names the store already
        error(what .. ": " .. msg, 3)
    end

    local Store = {}
    Store.__index = Store
    Store.__tostring = function(s) return "eddy.store(" .. s.name .. ")" end

    -- Keys are stored with a one-byte tag ("=") so that "" is a key like any
    -- other (LMDB has no empty keys); range/prefix bounds carry it too.
    local function keystr(k, name)
        local t = type(k)
        if t == "string" then
            if #k > 510 then        -- LMDB's key limit (511) less the tag
                error(("store %s: a key is at most 510 bytes, got one of %d"):format(name, #k), 3)
            end
            return "=" .. k
        end
        if t == "number" or t == "boolean" then return "=" .. tostring(k) end
        error("store " .. name .. ": keys are strings or numbers, got a " .. t, 3)
    end

    function Store:db()
        local db = self.h
        if not db then                          -- the handle is the same in every task
            db = C.eddy_kv_open(B, S.task, self.name)
            if db < 0 then kv_error("store " .. self.name) end
            self.h = db
        end
        return S.task, db
    end

    local function decode_value(s, now)
        local tag = byte(s, 1)
        if tag == 116 then                     -- "t": with expiry
            if unbe8(s, 2) <= now then return nil, true end
            return bdec(sub(s, 10))
        end
        return bdec(sub(s, 2))
    end

    -- Store:get decodes straight from LMDB's memory (valid until the next write):
    -- no Lua string of the stored bytes is made
    local decbuf = buffer.new()
    function Store:get(k)
        local key = keystr(k, self.name)
        local task, db = self:db()
        local p = C.eddy_kv_get(B, task, db, key, #key, vlen)
        if p == nil then return nil end
        local n = tonumber(vlen[0])
        local u = ffi.cast("const uint8_t *", p)
        if u[0] == 116 then                    -- "t": with expiry
            local e = (((u[1] * 256 + u[2]) * 256 + u[3]) * 256 + u[4]) * 4294967296
                + ((u[5] * 256 + u[6]) * 256 + u[7]) * 256 + u[8]
            if e <= B.wall_ms then return nil end
            return (decbuf:set(p + 9, n - 9):decode())
        end
        return (decbuf:set(p + 1, n - 1):decode())
    end

    function Store:put(k, v, opts)
        local key = keystr(k, self.name)
        if v == nil then return self:delete(k) end
        local task, db = self:db()
        local ttl = opts and opts.ttl or self.ttl
        local s
        if ttl then
            local ms = duration.parse(ttl, "ttl")
            local expiry = tonumber(B.wall_ms) + ms
            encbuf:reset():put("t", be8(expiry)):encode(v)
            s = encbuf:tostring()
            local idx = self.ttl_index
            if not idx then
                idx = _M.open_store(self.name .. "#ttl")
                self.ttl_index = idx
            end
            local it, idb = idx:db()
            local ik = be8(expiry) .. key
            if C.eddy_kv_put(B, it, idb, ik, #ik, "", 0) ~= 0 then kv_error("store " .. self.name) end
        else
            encbuf:reset():put("v"):encode(v)
            s = encbuf:tostring()
        end
        if C.eddy_kv_put(B, task, db, key, #key, s, #s) ~= 0 then kv_error("store " .. self.name) end
    end

    function Store:delete(k)
        local key = keystr(k, self.name)
        local task, db = self:db()
        local rc = C.eddy_kv_del(B, task, db, key, #key)
        if rc < 0 then kv_error("store " .. self.name) end
        return rc == 1
    end

    function Store:count()
        local task, db = self:db()
        local n = C.eddy_kv_count(B, task, db)
        if n < 0 then kv_error("store " .. self.name) end
        return tonumber(n)
    end

    -- Iterate keys in [from, to) (to == nil: no upper bound), skipping expired values.
    local function iterate(self, from, to)
        local task, db = self:db()
        local it = C.eddy_kv_iter(B, task, db, from or "", from and #from or 0, to or "", to and #to or 0)
        if it < 0 then kv_error("store " .. self.name) end
        local now = B.wall_ms
        return function()
            while true do
                if it < 0 or C.eddy_kv_next(B, it, kp, kl, vp, vl) == 0 then
                    it = -1
                    return nil
                end
                local v, expired = decode_value(ffi_string(vp[0], vl[0]), now)
                if not expired then return ffi_string(kp[0] + 1, kl[0] - 1), v end
            end
        end
    end

    --- Keys from `from` to `to`, both included, in key order.
    function Store:range(from, to)
        from = from ~= nil and keystr(from, self.name) or "="
        to = to ~= nil and (keystr(to, self.name) .. "\0") or ">"
        return iterate(self, from, to)
    end

    --- Keys that start with `p`, in key order.
    function Store:prefix(p)
        p = keystr(p, self.name)
        return iterate(self, p, prefix_end(p))
    end

    --- Raw iteration over encoded keys, for eddy's own window and timer stores.
    function Store:raw_iter(from, to)
        local task, db = self:db()
        local it = C.eddy_kv_iter(B, task, db, from or "", from and #from or 0, to or "", to and #to or 0)
        if it < 0 then kv_error("store " .. self.name) end
        return function()
            if it < 0 or C.eddy_kv_next(B, it, kp, kl, vp, vl) == 0 then
                it = -1
                return nil
            end
            return ffi_string(kp[0], kl[0]), ffi_string(vp[0], vl[0])
        end
    end
    --- At most `max` keys of [from, to) and their values, in key order (no iterator
    --- left open): keys, values, count.
    function Store:raw_collect(from, to, max)
        local task, db = self:db()
        local it = C.eddy_kv_iter(B, task, db, from or "", from and #from or 0, to or "", to and #to or 0)
        if it < 0 then kv_error("store " .. self.name) end
        local ks, vs, n = {}, {}, 0
        while n < max do
            if C.eddy_kv_next(B, it, kp, kl, vp, vl) == 0 then return ks, vs, n end
            n = n + 1
            ks[n], vs[n] = ffi_string(kp[0], kl[0]), ffi_string(vp[0], vl[0])
        end
        C.eddy_kv_iter_close(B, it)
        return ks, vs, n
    end
    --- The first key in [from, to), or nil (no iterator left open).
    function Store:raw_first(from, to)
        local task, db = self:db()
        local it = C.eddy_kv_iter(B, task, db, from or "", from and #from or 0, to or "", to and #to or 0)
        if it < 0 then kv_error("store " .. self.name) end
        local k
        if C.eddy_kv_next(B, it, kp, kl, vp, vl) ~= 0 then
            k = ffi_string(kp[0], kl[0])
            C.eddy_kv_iter_close(B, it)
        end
        return k
    end
    function Store:raw_get(key)
        local task, db = self:db()
        local p = C.eddy_kv_get(B, task, db, key, #key, vlen)
        if p == nil then return nil end
        return ffi_string(p, vlen[0])
    end
    function Store:raw_put(key, s)
        local task, db = self:db()
        if C.eddy_kv_put(B, task, db, key, #key, s, #s) ~= 0 then kv_error("store " .. self.name) end
    end
    function Store:raw_delete(key)
        local task, db = self:db()
        if C.eddy_kv_del(B, task, db, key, #key) < 0 then kv_error("store " .. self.name) end
    end
    function Store:delete_range(from, to)
        local task, db = self:db()
        local n = C.eddy_kv_del_range(B, task, db, from or "", from and #from or 0, to or "", to and #to or 0)
        if n < 0 then kv_error("store " .. self.name) end
        return tonumber(n)
    end

    --- Remove expired TTL entries of this store (bulk, by the expiry index).
    function Store:sweep()
        local idx = self.ttl_index
        if not idx then return 0 end
        local now = tonumber(B.wall_ms)
        local limit = be8(now + 1)
        local n = 0
        for ik in idx:raw_iter(nil, limit) do
            local key = sub(ik, 9)
            local cur = self:raw_get(key)
            if cur and byte(cur, 1) == 116 and unbe8(cur, 2) <= now then
                self:raw_delete(key)
                n = n + 1
            end
        end
        idx:delete_range(nil, limit)
        return n
    end

    -- Work that belongs to no input record (a final window result, a timer):
    -- run it under a batch index of its own, so that when it fails its store
    -- writes are undone and its outputs dropped alone; the failure is logged and
    -- counted in eddy_errors_total, never lost silently.
    local seq = -1
    function S.isolated(what, fn, ...)
        local saved = B.cur
        seq = seq - 1
        if seq < -1000000000 then seq = -2 end
        B.cur = seq
        local ok, err = pcall(fn, ...)
        if not ok then
            C.eddy_state_undo_record(B.state)
            C.eddy_batch_drop_outputs_of(B, seq)
            C.eddy_stats.errors = C.eddy_stats.errors + 1
            C.eddy_log(0, "%s", what .. " failed (dropped, counted in eddy_errors_total): " .. tostring(err))
        end
        B.cur = saved
        return ok
    end

    function _M.open_store(name, opts)
        local s = stores[name]
        if not s then
            s = setmetatable({ name = name, ttl = opts and opts.ttl }, Store)
            if s.ttl then duration.parse(s.ttl, "store " .. name .. " ttl") end
            stores[name] = s
        end
        return s
    end
    S.store = function(_, name, opts) return _M.open_store(name, opts) end
    S.stores = stores

    --- Stream time of the task in hand: persisted in the task's "__meta" store.
    local stream_time = {}
    function S.get_stream_time(task)
        local t = stream_time[task]
        if t == nil then
            local saved = S.task
            S.task = task
            local v = _M.open_store("__meta"):get("stream_time")
            S.task = saved
            t = v or -math.huge
            stream_time[task] = t
        end
        return t
    end
    local dirty = {}
    function S.advance(task, ts)
        local t = stream_time[task]
        if t == nil then
            t = S.get_stream_time(task)
            S.tasks_seen[task] = true
        end
        if ts > t then
            stream_time[task] = ts
            dirty[task] = true
            return ts
        end
        return t
    end
    --- Move a task's stream time forward by the wall clock (idle_advance).
    function S.set_stream_time(task, t)
        if t > S.get_stream_time(task) then
            stream_time[task] = t
            dirty[task] = true
        end
    end
    --- Kafka mode: the next input offset per task and topic, written with the
    --- state it produced (one LMDB transaction), so a restart never applies an
    --- input to the state twice.
    S.offsets = {}
    function S.note_offset(task, topic, next_offset)
        local t = S.offsets[task]
        if not t then t = {}; S.offsets[task] = t end
        t[topic] = next_offset
    end

    --- At the end of a batch: persist stream times that moved and input offsets, sweep TTLs.
    function S.end_batch()
        local saved = S.task
        for task, topics in pairs(S.offsets) do
            S.task = task
            local st = _M.open_store("__offsets")
            for topic, off in pairs(topics) do st:raw_put(topic, be8(off)) end
            S.offsets[task] = nil
        end
        for task in pairs(dirty) do
            S.task = task
            _M.open_store("__meta"):put("stream_time", stream_time[task])
            dirty[task] = nil
        end
        -- TTL sweeps: every user store (its expiry index may come from an earlier run)
        do
            for name, st in pairs(stores) do
                if name ~= "__meta" and not name:find("#", 1, true) then
                    st.ttl_index = st.ttl_index or _M.open_store(name .. "#ttl")
                    for task in pairs(S.tasks_seen) do
                        S.task = task
                        if st.ttl_index:count() > 0 then st:sweep() end
                    end
                end
            end
        end
        S.task = saved
    end
    --- Tasks this process has seen (task id -> true), for wall-clock work per task.
    S.tasks_seen = {}
    --- fn(now_ms) run between batches by the host (ctx:every, idle_advance).
    S.tickers = {}
    --- fn(task) when a task's partition is revoked: drop in-memory caches.
    S.forgetters = {}
    function S.forget_task(task)
        stream_time[task] = nil
        dirty[task] = nil
        S.tasks_seen[task] = nil
        for _, f in ipairs(S.forgetters) do f(task) end
    end
    return S
end

return _M
