-- eddy.runtime: compiles a job's topology into Lua closures and runs batches
-- of records that the host hands over through the FFI: one protected call per
-- batch (the host's), a loop over the records here. When a record fails, the
-- host reads `cur` and `stage` from the batch, dead-letters that record and
-- calls run(cur + 1) to go on with the rest of the batch.
local _M = {}

local ffi = require "ffi"
local dsl = require "eddy.dsl"
local window = require "eddy.window"
local buffer = require "string.buffer"
local benc = buffer.encode
local ffi_string, tonumber, type, error, floor = ffi.string, tonumber, type, error, math.floor
local setmetatable = setmetatable

ffi.cdef [[
typedef struct eddy_rec {
    int64_t offset;
    int64_t ts;
    const char *key;
    const char *value;
    int32_t klen;
    int32_t vlen;
    int32_t partition;
    int32_t source;
    int32_t hdr;
    int32_t nhdr;
} eddy_rec;
typedef struct eddy_hdr {
    const char *name;
    const char *value;
    int32_t nlen;
    int32_t vlen;
} eddy_hdr;
typedef struct eddy_batch_view {
    eddy_rec *recs;
    eddy_hdr *hdrs;
    int32_t n;
    int32_t cur;
    int32_t stage;
    int32_t reserved;
    void *state;
    int64_t wall_ms;
    int32_t late;
    int32_t nil_keys;
} eddy_batch_view;
void eddy_batch_emit(eddy_batch_view *b, int32_t sink, const char *k, int32_t klen,
                     const char *v, int32_t vlen, int64_t ts);
void eddy_batch_forward(eddy_batch_view *b, int32_t sink);
]]

local C = ffi.C

-- The task that holds global tables (job:global_table): sub-topology 32767, partition 0,
-- state under <state-dir>/<app>/32767_0; never a Kafka task, so never logged.
local GLOBAL_SUB = 32767
local GLOBAL_TASK = GLOBAL_SUB * 65536
_M.GLOBAL_TASK = GLOBAL_TASK
_M.STAGE_DESERIALIZE, _M.STAGE_PROCESS, _M.STAGE_SERIALIZE = 1, 2, 3

local EMPTY_HEADERS = setmetatable({}, { __newindex = function() error("rec.headers is read-only", 2) end })

-- Timestamps are Lua numbers (doubles), exact within -2^53..2^53 ms (285,000 years either way).
-- Beyond that a window's arithmetic stops advancing (INT64 max hung a tumbling
-- window) and the int64 written back wraps (INT64 max came out as INT64 min), so
-- such a record fails with this reason (the DLQ) before it can move stream time.
local MAX_TS = 2 ^ 53
local function ts_out_of_range(ts, what)
    error(("%s %s is out of range: eddy handles timestamps within -2^53..2^53 ms"):format(what,
        type(ts) == "number" and ("%.0f"):format(ts) or tostring(ts):gsub("LL$", "")), 0)
end

local function check_ts(ts, what)
    if type(ts) ~= "number" or ts ~= ts then
        error(what .. " must return a number of milliseconds, got " .. type(ts), 0)
    end
    if ts >= MAX_TS or ts <= -MAX_TS then ts_out_of_range(ts, what .. ": the timestamp") end
    return floor(ts)
end

local function with_ts(rec, ts)
    return { topic = rec.topic, partition = rec.partition, offset = rec.offset,
        ts = check_ts(ts, "emit's timestamp"), headers = rec.headers, window = rec.window }
end

-- Builders: node, next function, child functions -> the node's function
-- (k, v, rec, ts). The record's timestamp travels beside `rec`, so what a user
-- function does to its `rec` table cannot change what is written.
local build = {}

function build.source(_, nxt) return nxt end
function build.merge(_, nxt) return nxt end
function build.branch_out(_, nxt) return nxt end

function build.map(node, nxt)
    local fn = node.fn
    return function(k, v, rec, ts)
        local k2, v2 = fn(k, v, rec)
        return nxt(k2, v2, rec, ts)
    end
end

function build.map_values(node, nxt)
    local fn = node.fn
    return function(k, v, rec, ts) return nxt(k, fn(v, k, rec), rec, ts) end
end

function build.select_key(node, nxt)
    local fn = node.fn
    return function(k, v, rec, ts) return nxt(fn(k, v, rec), v, rec, ts) end
end

function build.filter(node, nxt)
    local fn = node.fn
    return function(k, v, rec, ts) if fn(k, v, rec) then return nxt(k, v, rec, ts) end end
end

function build.filter_not(node, nxt)
    local fn = node.fn
    return function(k, v, rec, ts) if not fn(k, v, rec) then return nxt(k, v, rec, ts) end end
end

function build.peek(node, nxt)
    local fn = node.fn
    return function(k, v, rec, ts) fn(k, v, rec); return nxt(k, v, rec, ts) end
end

function build.flat_map(node, nxt)
    local fn, cur, cur_ts = node.fn, nil, nil
    local function emit(k2, v2, ts)
        if ts ~= nil then
            local r = with_ts(cur, ts)
            return nxt(k2, v2, r, r.ts)
        end
        return nxt(k2, v2, cur, cur_ts)
    end
    return function(k, v, rec, ts)
        local saved, saved_ts = cur, cur_ts
        cur, cur_ts = rec, ts
        fn(k, v, emit, rec)
        cur, cur_ts = saved, saved_ts
    end
end

function build.flat_map_values(node, nxt)
    local fn, cur_k, cur, cur_ts = node.fn, nil, nil, nil
    local function emit(v2) return nxt(cur_k, v2, cur, cur_ts) end
    return function(k, v, rec, ts)
        local sk, sr, st = cur_k, cur, cur_ts
        cur_k, cur, cur_ts = k, rec, ts
        fn(v, emit, k, rec)
        cur_k, cur, cur_ts = sk, sr, st
    end
end

function build.branch(node, _, kids)
    local preds, n = node.preds, #node.preds
    return function(k, v, rec, ts)
        for i = 1, n do
            if preds[i](k, v, rec) then return kids[i](k, v, rec, ts) end
        end
    end
end

-- Position of `rec` in each kind's user function (k, v, rec) etc.
local rec_param = { map = 3, map_values = 3, filter = 3, filter_not = 3, select_key = 3, peek = 3,
    flat_map = 4, flat_map_values = 4, join_table = 99, join_side = 99, table_join_side = 99,
    join_out = 99 }

local function wants_rec(fn, pos)
    local info = debug.getinfo(fn, "Su")
    if info.what == "C" then return false end      -- tostring, tonumber...: they ignore it
    return info.isvararg or (info.nparams or pos) >= pos
end

-- Does any user function take `rec`? If none does, one table is reused for
-- every record instead of a new one each (no allocation per record).
local function job_uses_rec(job)
    for _, n in ipairs(job.nodes) do
        if n.fn and wants_rec(n.fn, rec_param[n.kind] or 1) then return true end
        if n.timestamp and wants_rec(n.timestamp, 3) then return true end
        for _, p in ipairs(n.preds or {}) do
            if wants_rec(p, 3) then return true end
        end
    end
    return false
end

--- Prepare `job` against the host's batch (a lightuserdata). Returns the
--- topology (plain data) with `configure(app_id, kafka, partitions)`, which
--- compiles the pipeline, sets `run` (the batch loop) and returns the full
--- lists of source and sink topics (internal repartition topics included).
function _M.prepare(job, batch_ud)
    if not dsl.is_job(job) then
        error("the script must return a job (return eddy.job{...} after defining it)", 0)
    end
    if #job.sources == 0 then
        error("the job has no source: add job:source(\"topic\")", 0)
    end
    local B = ffi.cast("eddy_batch_view *", batch_ud)
    local topo = dsl.topology(job)
    topo.options = job.options
    topo.describe = dsl.describe(job)
    topo.dot = dsl.picture(job, "dot")
    topo.mermaid = dsl.picture(job, "mermaid")
    topo.configure = function(app_id, kafka, partitions)
        return _M.compile(job, B, topo, app_id, kafka, partitions)
    end
    topo.signature = function() return _M.signature(job) end
    topo.layout = function(app_id) return _M.layout(job, app_id) end
    topo.run_examples = function(exe, script) return _M.run_examples(job, exe, script) end
    topo.dump = function(store, k, v) return _M.dump(job, store, k, v) end
    topo.compatible = function(old) return _M.compatible(job, old) end
    topo.on_reload = function(old_version)
        if job.reload_hook then job.reload_hook({ job = job.name }, old_version) end
    end
    return topo
end

-- What a reload must keep: the source topics, and every store's kind (a
-- key-value store, or a window store with its window). One line per fact.
local function store_kinds(job)
    local kinds = {}
    for _, n in ipairs(job.nodes) do
        if n.kind == "aggregate" then
            local w = n.window
            if w then
                kinds[n.store] = ("window %s size=%s advance=%s diff=%s gap=%s grace=%s"):format(
                    w.kind, tostring(w.size), tostring(w.advance), tostring(w.diff), tostring(w.gap),
                    tostring(w.grace))
            else
                kinds[n.store] = "key-value (" .. n.agg .. ")"
            end
        elseif n.kind == "table" or n.kind == "global_table" then
            kinds[n.store] = "key-value (" .. n.kind .. " " .. n.topics[1] .. ")"
        elseif n.kind == "join_out" and n.spec.window then
            local w = n.spec.window
            kinds[n.spec.name] = ("join window before=%d after=%d grace=%d %s"):format(w.before, w.after,
                w.grace, n.spec.mode)
        elseif n.kind == "process" and type(n.stores) == "table" then
            for k, v in pairs(n.stores) do
                kinds[type(k) == "string" and k or tostring(v)] = "key-value (process)"
            end
        end
    end
    return kinds
end

--- Kafka mode: which sub-topology reads each source topic, and the changelog
--- families of each sub-topology (a store and its "store#..." indexes share the
--- topic <app>-<store>-changelog; a processor's timers use its name; stream
--- time and commit markers use __task-<S>). Lines "source\tS\ttopic",
--- "family\tS\tname", "table\tS\ttopic" (a table read in S), "global\tS\ttopic"
--- and "join\tS\tname" (a stream-stream join in S: its inputs are read in
--- timestamp order, as for tables).
function _M.layout(job, app_id)
    local lines, seen = {}, {}
    local function fam(sub, name)
        local key = sub .. "\t" .. name
        if not seen[key] then
            seen[key] = true
            lines[#lines + 1] = "family\t" .. key
        end
    end
    for _, s in ipairs(job.sources) do
        if s.node.kind ~= "global_table" then
            lines[#lines + 1] = ("source\t%d\t%s"):format(s.node.subtopology or 0, s.topic)
        end
    end
    for sub = 0, (job.nsubtopologies or 0) do fam(sub, "__task-" .. sub) end
    for _, n in ipairs(job.nodes) do
        local sub = n.subtopology or 0
        if n.kind == "repartition" then
            lines[#lines + 1] = ("source\t%d\t%s-%s-repartition"):format(sub, app_id, n.name)
        elseif n.kind == "aggregate" and n.store then
            fam(sub, n.store)
        elseif n.kind == "table" then
            fam(sub, n.store)
            lines[#lines + 1] = ("table\t%d\t%s"):format(sub, n.topics[1])
        elseif n.kind == "global_table" then
            lines[#lines + 1] = ("global\t%d\t%s"):format(GLOBAL_SUB, n.topics[1])
        elseif n.kind == "join_out" and n.spec.window then
            fam(sub, n.spec.name)
            lines[#lines + 1] = ("join\t%d\t%s"):format(sub, n.spec.name)
        elseif n.kind == "process" then
            for _, sname in ipairs(n.store_names or {}) do fam(sub, sname) end
            fam(sub, n.pname or ("process-" .. n.id))
        end
    end
    return table.concat(lines, "\n")
end

function _M.signature(job)
    local lines = {}
    for _, s in ipairs(job.sources) do lines[#lines + 1] = "source\t" .. s.topic end
    for name, kind in pairs(store_kinds(job)) do lines[#lines + 1] = "store\t" .. name .. "\t" .. kind end
    for _, n in ipairs(job.nodes) do
        if n.kind == "repartition" then lines[#lines + 1] = "repartition\t" .. n.name end
    end
    table.sort(lines)
    return table.concat(lines, "\n")
end

-- `eddy stores`: one stored entry as JSON ----------------------------------

local function unbe(s, i, n)
    local x = 0
    for j = i, i + n - 1 do x = x * 256 + s:byte(j) end
    return x
end

--- The JSON line of one raw entry of `store`, or nil (internal or expired).
function _M.dump(job, store, k, v)
    local cjson = require "cjson"
    local bdec = buffer.decode
    local node
    for _, n in ipairs(job.nodes) do
        if (n.kind == "aggregate" or n.kind == "table" or n.kind == "global_table") and n.store == store then
            node = n
        end
    end
    local function json(x)
        local ok, s = pcall(cjson.encode, x)
        return ok and s or cjson.encode(tostring(x))
    end
    if node and node.window then
        if k:byte(1) == 255 then return nil end      -- "\255emitted": the window store's own
        local kind = node.window.kind
        local klen = unbe(k, 1, 4)
        local key = node.key_serde.decode(k:sub(5, 4 + klen))
        local rest = k:sub(5 + klen)
        local window, value
        if kind == "session" then
            window = { start = unbe(rest, 9, 8), stop = unbe(rest, 1, 8) }
            value = bdec(v)
        else
            local start = unbe(rest, 1, 8)
            local stop = kind == "sliding" and start + node.window.diff or start + node.window.size
            window = { start = start, stop = stop }
            value = bdec(v:sub(9))
        end
        return ('{"key":%s,"window":%s,"value":%s}'):format(json(key), json(window), json(value))
    end
    if k:sub(1, 1) ~= "=" then return nil end
    local tag = v:byte(1)
    local value
    if tag == 116 then
        if unbe(v, 2, 8) <= os.time() * 1000 then return nil end
        value = bdec(v:sub(10))
    else
        value = bdec(v:sub(2))
    end
    local key = k:sub(2)
    if node then
        value = value[1]                     -- aggregates and tables keep { value, timestamp }
        key = node.key_serde.decode(key)
    end
    return ('{"key":%s,"value":%s}'):format(json(key), json(value))
end

-- Examples ------------------------------------------------------------------

local function sh_quote(x) return "'" .. tostring(x):gsub("'", "'\\''") .. "'" end

local function as_bytes(v, cjson)
    if v == nil then return nil end
    if type(v) == "string" then return v end
    if type(v) == "number" or type(v) == "boolean" then return tostring(v) end
    return cjson.encode(v)
end

local function deep_equal(a, b)
    if type(a) ~= type(b) then return false end
    if type(a) ~= "table" then return a == b end
    for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
end

local function matches(want, got, cjson)
    if want == nil then return got == nil end
    if got == nil then return false end
    if type(want) == "table" then
        local ok, v = pcall(cjson.decode, got)
        return ok and deep_equal(want, v)
    end
    if type(want) == "number" then return tonumber(got) == want end
    return tostring(want) == got
end

local function show(v)
    if v == nil then return "nil" end
    if type(v) == "string" then return ("%q"):format(v) end
    if type(v) == "table" then return require("cjson").encode(v) end
    return tostring(v)
end

--- Run the job's examples through the real engine (this binary, file mode, a
--- scratch state dir). Returns nil, or the first difference.
function _M.run_examples(job, exe, script)
    if not job.examples or os.getenv("EDDY_EXAMPLES") == "off" then return nil end
    local cjson = require "cjson"
    local tmp = io.popen("mktemp -d /tmp/eddy-example.XXXXXX"):read("*l")
    if not tmp then return "examples: cannot make a scratch directory" end
    local problem
    for i, ex in ipairs(job.examples) do
        local lines = {}
        for j, r in ipairs(ex.input) do
            local e = { topic = r.topic or job.sources[1].topic, payload = as_bytes(r[2], cjson) or cjson.null,
                key = as_bytes(r[1], cjson) or cjson.null, ts = r[3] or (1700000000000 + j) }
            lines[j] = cjson.encode(e)
        end
        local f = io.open(tmp .. "/in.jsonl", "w")
        f:write(table.concat(lines, "\n"), "\n")
        f:close()
        os.execute("rm -rf " .. sh_quote(tmp .. "/state"))
        local cmd = ("EDDY_EXAMPLES=off timeout 20 %s run %s --input %s --output %s --dlq %s --state-dir %s "
            .. "--no-watch --quiet --app-id eddy-example > %s 2>&1"):format(sh_quote(exe), sh_quote(script),
            sh_quote(tmp .. "/in.jsonl"), sh_quote(tmp .. "/out.jsonl"), sh_quote(tmp .. "/dlq.jsonl"),
            sh_quote(tmp .. "/state"), sh_quote(tmp .. "/log"))
        os.execute(cmd)
        local got = {}
        local of = io.open(tmp .. "/out.jsonl")
        for line in (of and of:read("*a") or ""):gmatch("[^\n]+") do
            local e = cjson.decode(line)
            got[e.topic] = got[e.topic] or {}
            local t = got[e.topic]
            t[#t + 1] = { e.key ~= cjson.null and e.key or nil, e.payload ~= cjson.null and e.payload or nil }
        end
        if of then of:close() end
        local df = io.open(tmp .. "/dlq.jsonl")
        local dlq = df and df:read("*a") or ""
        if df then df:close() end
        local where = ("example %d (%s)"):format(i, ex.line)
        if dlq ~= "" then
            local e = cjson.decode(dlq:match("[^\n]+"))
            local msg = ""
            for j = 1, #(e.headers or {}), 2 do
                if e.headers[j] == "eddy.error" then msg = e.headers[j + 1] end
            end
            problem = where .. ": a record failed: " .. msg
            break
        end
        for topic, want in pairs(ex.output) do
            local have = got[topic] or {}
            for j = 1, math.max(#want, #have) do
                local w, g = want[j], have[j]
                if not w or not g or not matches(w[1], g[1], cjson) or not matches(w[2], g[2], cjson) then
                    problem = ("%s: topic %s, record %d: expected %s, got %s"):format(where, topic, j,
                        w and ("{" .. show(w[1]) .. ", " .. show(w[2]) .. "}") or "nothing",
                        g and ("{" .. show(g[1]) .. ", " .. show(g[2]) .. "}") or "nothing")
                    break
                end
            end
            if problem then break end
        end
        if not problem then
            for topic in pairs(got) do
                if not ex.output[topic] then
                    problem = ("%s: unexpected output to topic %s"):format(where, topic)
                    break
                end
            end
        end
        if problem then break end
    end
    os.execute("rm -rf " .. sh_quote(tmp))
    return problem
end

--- nil when a job with signature `old` may be replaced by this one; otherwise
--- the reason. Removed stores are allowed (kept on disk): returned as a warning.
function _M.compatible(job, old)
    local old_sources, old_stores, old_reparts = {}, {}, {}
    for line in old:gmatch("[^\n]+") do
        local what, a, b = line:match("^(%a+)\t([^\t]*)\t?(.*)$")
        if what == "source" then old_sources[a] = true elseif what == "store" then old_stores[a] = b
        elseif what == "repartition" then old_reparts[a] = true end
    end
    -- a consumer's subscription is fixed when it starts: internal topics stay too
    local new_reparts = {}
    for _, n in ipairs(job.nodes) do
        if n.kind == "repartition" then new_reparts[n.name] = true end
    end
    for name in pairs(old_reparts) do
        if not new_reparts[name] then
            return ("the repartition topic of %q is gone (grouping steps cannot change in a reload; name the grouping: group_by_key{ name = ... })"):format(name)
        end
    end
    for name in pairs(new_reparts) do
        if not old_reparts[name] then
            return ("a new repartition (%q) cannot be added in a reload (the internal topics are fixed at start)"):format(name)
        end
    end
    local new_sources = {}
    for _, s in ipairs(job.sources) do new_sources[s.topic] = true end
    for t in pairs(old_sources) do
        if not new_sources[t] then return ("source topic %q was removed (sources cannot change in a reload)"):format(t) end
    end
    for t in pairs(new_sources) do
        if not old_sources[t] then return ("source topic %q was added (sources cannot change in a reload)"):format(t) end
    end
    local kinds, warnings = store_kinds(job), {}
    for name, kind in pairs(old_stores) do
        if kinds[name] == nil then
            warnings[#warnings + 1] = ("store %q is no longer used; its data stays on disk"):format(name)
        elseif kinds[name] ~= kind then
            return ("store %q changed from %s to %s (a store keeps its kind and window)"):format(name, kind, kinds[name])
        end
    end
    return nil, table.concat(warnings, "; ")
end

function _M.compile(job, B, topo, app_id, kafka, partitions)
    local state = require "eddy.state"     -- after this module's cdef (it uses eddy_batch_view)
    local S = job.stateful and state.new(B) or nil
    local sources, sinks = {}, {}
    for i, t in ipairs(topo.sources) do sources[i] = t end
    for i, t in ipairs(topo.sinks) do sinks[i] = t end
    local sink_index = {}
    for i, t in ipairs(sinks) do sink_index[t] = i - 1 end
    local emit = C.eddy_batch_emit
    local srcs = {}

    local builders = setmetatable({}, { __index = build })

    function builders.sink(node)
        local idx, kenc, venc = sink_index[node.topic], node.key_serde.encode, node.value_serde.encode
        return function(k, v, rec, ts)
            B.stage = 3
            local ks, vs = nil, nil
            if k ~= nil then ks = kenc(k) end
            if v ~= nil then vs = venc(v) end
            emit(B, idx, ks, ks and #ks or -1, vs, vs and #vs or -1, ts)
            B.stage = 2
        end
    end

    -- A grouping after a key change. Kafka mode: through the internal topic
    -- <app>-<name>-repartition, read back as a source of the next sub-topology.
    -- File mode: the same murmur2 shuffle in memory, into the task that the
    -- record would reach through the topic.
    function builders.repartition(node, nxt)
        local kenc, kdec = node.key_serde.encode, node.key_serde.decode
        local sub = node.subtopology * 65536
        if kafka then
            local topic = app_id .. "-" .. node.name .. "-repartition"
            sinks[#sinks + 1] = topic
            local idx = #sinks - 1
            sources[#sources + 1] = topic
            srcs[#sources - 1] = { topic = topic, push = nxt, kdec = kdec, vdec = buffer.decode,
                sub = sub, internal = true }
            return function(k, v, rec, ts)
                if k == nil then B.nil_keys = B.nil_keys + 1; return end
                B.stage = 3
                local kb = kenc(k)
                local vb = v ~= nil and benc(v) or nil
                emit(B, idx, kb, #kb, vb, vb and #vb or -1, ts)
                B.stage = 2
            end
        end
        local n = partitions
        local copier = buffer.new()
        return function(k, v, rec, ts)
            if k == nil then B.nil_keys = B.nil_keys + 1; return end
            local kb = kenc(k)
            local saved = S.task
            local task = sub + C.eddy_murmur2_partition(kb, #kb, n)
            S.task = task
            S.advance(task, ts)
            -- what the next sub-topology sees is what it would read back from the
            -- topic: the key through its serde, the value through string.buffer
            -- (tables only: other values are immutable; a buffer object of its own, as
            -- bdec(benc(v)) in one expression was miscompiled by this LuaJIT's JIT)
            if type(v) == "table" then
                copier:reset()
                copier:encode(v)
                v = copier:decode()
            end
            nxt(kdec(kb), v, rec, ts)
            S.task = saved
        end
    end

    function builders.aggregate(node, nxt)
        local store = S:store(node.store)
        if node.window then
            return window.build(node, { S = S, B = B, store = store, nxt = nxt, job = job })
        end
        local kenc, agg, fn, init = node.key_serde.encode, node.agg, node.fn, node.init
        local change = node.change
        return function(k, v, rec, ts)
            if k == nil then B.nil_keys = B.nil_keys + 1; return end
            if v == nil then return end     -- Kafka Streams ignores null values (count too)
            local kb = kenc(k)
            local cur = store:get(kb)          -- { aggregate, timestamp } or nil
            local old, old_ts = nil, ts
            if cur ~= nil then old, old_ts = cur[1], cur[2] end
            if change then change.old = old end    -- for a table-table join after it
            local new
            if agg == "count" then
                new = (old or 0) + 1
            elseif agg == "reduce" then
                if old == nil then new = v else new = fn(old, v, k) end
            else
                if old == nil then old = init() end
                new = fn(old, v, k, rec)
            end
            -- the result's timestamp is the largest of its inputs' (Kafka Streams 3.x)
            if old_ts > ts then ts = old_ts end
            if new == nil then store:delete(kb) else store:put(kb, { new, ts }) end
            return nxt(k, new, rec, ts)
        end
    end

    function builders.to_stream(_, nxt) return nxt end

    -- job:table(topic): the latest value per key, kept as { value, timestamp };
    -- its changes go on to to_stream() and table-table joins (which read the old value)
    function builders.table(node, nxt)
        local store = S:store(node.store)
        local kenc = node.key_serde.encode
        local change = node.change
        return function(k, v, rec, ts)
            if k == nil then B.nil_keys = B.nil_keys + 1; return end
            local kb = kenc(k)
            if change then
                local cur = store:get(kb)
                change.old = cur and cur[1]
            end
            if v == nil then store:delete(kb) else store:put(kb, { v, ts }) end
            return nxt(k, v, rec, ts)
        end
    end

    -- job:global_table(topic): one store for every partition, in the task GLOBAL_TASK
    function builders.global_table(node, nxt)
        local store = S:store(node.store)
        local kenc = node.key_serde.encode
        return function(k, v, rec, ts)
            if k == nil then B.nil_keys = B.nil_keys + 1; return end
            local saved = S.task
            S.task = GLOBAL_TASK
            local kb = kenc(k)
            if v == nil then store:delete(kb) else store:put(kb, { v, ts }) end
            S.task = saved
            return nxt(k, v, rec, ts)
        end
    end

    -- stream:join / left_join(table, fn): the table's value for the record's key now
    function builders.join_table(node, nxt)
        local store = S:store(node.table_store)
        local kenc, fn, left = node.table_key.encode, node.fn, node.left
        if node.global then
            local key_fn = node.key_fn
            return function(k, v, rec, ts)
                if v == nil then return end
                local lk = k
                if key_fn then lk = key_fn(k, v) end
                local tv
                if lk ~= nil then
                    local saved = S.task
                    S.task = GLOBAL_TASK
                    tv = store:get(kenc(lk))
                    if tv ~= nil then tv = tv[1] end
                    S.task = saved
                elseif k == nil then
                    B.nil_keys = B.nil_keys + 1
                    return
                end
                if tv == nil and not left then return end
                return nxt(k, fn(v, tv, k), rec, ts)
            end
        end
        return function(k, v, rec, ts)
            if k == nil then B.nil_keys = B.nil_keys + 1; return end   -- dropped, as KS < 3.7
            if v == nil then return end
            local tv = store:get(kenc(k))          -- { value, timestamp }
            if tv ~= nil then tv = tv[1] end
            if tv == nil and not left then return end
            return nxt(k, fn(v, tv, k), rec, ts)
        end
    end

    -- stream:join(other, eddy.join_window{...}, fn) and table:join(table, fn): one
    -- node per side, both feeding the join's output node (eddy.join)
    function builders.join_side(node, nxt)
        return require("eddy.join").build_side(node, nxt, S, B)
    end
    function builders.table_join_side(node, nxt)
        return require("eddy.join").build_table_side(node, nxt, S)
    end
    function builders.join_out(_, nxt) return nxt end

    function builders.process(node, nxt)
        return require("eddy.processor").build(node, nxt, S, B, job)
    end

    local compiled = {}
    local function compile(node)
        local f = compiled[node.id]
        if f then return f end
        local kids = {}
        for i, c in ipairs(node.children) do kids[i] = compile(c) end
        local nxt
        if #kids == 0 then
            nxt = function() end
        elseif #kids == 1 then
            nxt = kids[1]
        elseif #kids == 2 then
            local a, b = kids[1], kids[2]
            nxt = function(k, v, rec, ts) a(k, v, rec, ts); return b(k, v, rec, ts) end
        else
            nxt = function(k, v, rec, ts) for i = 1, #kids do kids[i](k, v, rec, ts) end end
        end
        f = builders[node.kind](node, nxt, kids)
        compiled[node.id] = f
        return f
    end

    for i, s in ipairs(job.sources) do
        local node = s.node
        srcs[i - 1] = { topic = s.topic, push = compile(node), kdec = node.key_serde.decode,
            vdec = node.value_serde.decode, tsx = node.timestamp, sub = (node.subtopology or 0) * 65536,
            global = node.kind == "global_table" or nil }
    end
    for _, node in ipairs(job.nodes) do compile(node) end     -- every node, internal sources too

    -- A source read straight into sinks, bytes to bytes (string/bytes serdes, no
    -- timestamp extractor, no state): each record is copied in C, no Lua strings.
    local BYTES = { string = true, bytes = true }
    for i, s in ipairs(job.sources) do
        local node, direct = s.node, {}
        for _, c in ipairs(node.children) do
            if c.kind ~= "sink" or #c.children > 0 or not BYTES[c.key_serde.name]
                or not BYTES[c.value_serde.name] then
                direct = nil
                break
            end
            direct[#direct + 1] = sink_index[c.topic]
        end
        if direct and #direct > 0 and not S and node.kind == "source" and not node.timestamp
            and BYTES[node.key_serde.name] and BYTES[node.value_serde.name] then
            srcs[i - 1].direct = direct
        end
    end
    local forward = C.eddy_batch_forward

    local uses_rec = job_uses_rec(job)
    local shared = {}

    local function run(start)
        local recs, hdrs, n = B.recs, B.hdrs, B.n
        for i = start, n - 1 do
            B.cur = i
            B.stage = 1
            local r = recs[i]
            local src = srcs[r.source]
            local direct = src.direct
            if direct then
                B.stage = 3
                for j = 1, #direct do forward(B, direct[j]) end
                goto next_record
            end
            do
            local k, v = nil, nil
            if r.key ~= nil then k = src.kdec(ffi_string(r.key, r.klen)) end
            if r.value ~= nil then v = src.vdec(ffi_string(r.value, r.vlen)) end
            local rec
            if not uses_rec or src.internal then
                rec = shared
                rec.topic, rec.partition, rec.offset, rec.ts = src.topic, r.partition, nil, tonumber(r.ts)
                B.stage = 2
                if src.tsx then rec.ts = check_ts(src.tsx(k, v, rec), "the source's timestamp extractor") end
            else
                local headers = EMPTY_HEADERS
                local nh = r.nhdr
                if nh > 0 then
                    headers = {}
                    for j = r.hdr, r.hdr + nh - 1 do
                        local h = hdrs[j]
                        local hv = false
                        if h.value ~= nil then hv = ffi_string(h.value, h.vlen) end
                        headers[ffi_string(h.name, h.nlen)] = hv
                    end
                end
                rec = { topic = src.topic, partition = r.partition, offset = tonumber(r.offset),
                    ts = tonumber(r.ts), headers = headers }
                B.stage = 2
                if src.tsx then rec.ts = check_ts(src.tsx(k, v, rec), "the source's timestamp extractor") end
            end
            local ts = rec.ts
            if ts >= MAX_TS or ts <= -MAX_TS then ts_out_of_range(r.ts, "the record's timestamp") end
            if S then
                if src.global then
                    -- a global table: its own task; no stream time; offsets per partition
                    S.task = GLOBAL_TASK
                    if kafka then
                        S.note_offset(GLOBAL_TASK, src.topic .. "@" .. r.partition, tonumber(r.offset) + 1)
                    end
                else
                    local task = src.sub + r.partition
                    S.task = task
                    S.advance(task, rec.ts)
                    if kafka then S.note_offset(task, src.topic, tonumber(r.offset) + 1) end
                end
            end
            src.push(k, v, rec, rec.ts)
            if S and S.after_record then S.after_record() end    -- timers made due (eddy.processor)
            end
            ::next_record::
        end
        if S then S.end_batch() end
    end

    topo.run = run
    topo.S = S
    if S then
        topo.tick = function(now)
            if #S.tickers == 0 then return end
            for _, f in ipairs(S.tickers) do f(now) end
            S.end_batch()
        end
        topo.forget = function(partition)
            for task in pairs(S.tasks_seen) do
                if task % 65536 == partition then S.forget_task(task) end
            end
        end
        -- the tasks a process owns exist before their first record: wall-clock
        -- schedules and idle_advance work on them from the start
        topo.assign = function(partition)
            for sub = 0, (job.nsubtopologies or 0) do
                S.tasks_seen[sub * 65536 + partition] = true   -- (stream time: read on first use)
            end
        end
        if not kafka then
            for p = 0, partitions - 1 do topo.assign(p) end
        end
        topo.forget_all = function()
            local tasks = {}
            for task in pairs(S.tasks_seen) do tasks[#tasks + 1] = task end
            for _, task in ipairs(tasks) do S.forget_task(task) end
        end
    else
        topo.assign = function() end
        topo.forget_all = function() end
    end
    return { sources = sources, sinks = sinks }
end

return _M
