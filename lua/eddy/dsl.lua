-- eddy.dsl: the job and stream builders. Calling them records a topology as
-- plain data (nodes with a kind, the user's function, the script line, and
-- their children); eddy.runtime compiles it, the host validates it.
local _M = {}

local setmetatable, type, error, select, tostring = setmetatable, type, error, select, tostring
local getinfo = debug.getinfo
local serde = require "eddy.serde"

local Job = {}
Job.__index = Job
local Stream = {}
local stream_methods = {}

-- The call site in the user's script, "file:line" (level 3: the caller of the method).
local function where(level)
    local info = getinfo(level or 3, "Sl")
    if not info then return "?" end
    local src = info.short_src or info.source or "?"
    return src .. ":" .. (info.currentline or 0)
end

local function check_fn(fn, method)
    if type(fn) ~= "function" then
        error(method .. ": expected a function, got " .. type(fn), 3)
    end
end

-- Steps after which the key may differ from the source's: a grouping after
-- them repartitions (Kafka Streams' rule).
local KEY_CHANGING = { map = true, select_key = true, flat_map = true, process = true }

local function new_node(job, kind, parents, fields)
    local node = fields or {}
    node.kind = kind
    node.id = #job.nodes + 1
    node.children = {}
    node.line = node.line or where(4)
    job.nodes[node.id] = node
    local changed, changed_at = false, nil
    for _, p in ipairs(parents) do
        p.children[#p.children + 1] = node
        changed = changed or p.key_changed
        changed_at = changed_at or (p.key_changed and p.key_changed_at) or nil
    end
    if node.key_changed == nil then node.key_changed = changed or KEY_CHANGING[kind] or false end
    -- where the key may have changed: the first such step upstream (for error messages)
    if node.key_changed then node.key_changed_at = changed_at or node.line end
    if node.subtopology == nil then node.subtopology = parents[1] and parents[1].subtopology or 0 end
    return node
end

local function new_stream(job, node)
    return setmetatable({ job = job, node = node }, Stream)
end

Stream.__index = function(_, name)
    return stream_methods[name]
end
Stream.__tostring = function(s) return "eddy.stream(" .. s.node.kind .. "@" .. s.node.line .. ")" end

local function simple(kind, method)
    stream_methods[method] = function(self, fn)
        check_fn(fn, method)
        return new_stream(self.job, new_node(self.job, kind, { self.node }, { fn = fn }))
    end
end
simple("map", "map")
simple("map_values", "map_values")
simple("filter", "filter")
simple("filter_not", "filter_not")
simple("flat_map", "flat_map")
simple("flat_map_values", "flat_map_values")
simple("select_key", "select_key")
simple("peek", "peek")

function stream_methods:branch(...)
    local n = select("#", ...)
    if n == 0 then error("branch: give at least one predicate", 2) end
    local node = new_node(self.job, "branch", { self.node }, { preds = {} })
    local outs = {}
    for i = 1, n do
        local pred = select(i, ...)
        check_fn(pred, "branch (predicate " .. i .. ")")
        node.preds[i] = pred
        local out = new_node(self.job, "branch_out", { node }, { index = i, line = node.line })
        outs[i] = new_stream(self.job, out)
    end
    return unpack(outs, 1, n)
end

--- Low-level processor (eddy.processor): stores, timers, schedules, forward.
function stream_methods:process(def)
    local fields = require("eddy.processor").check(def, 2)
    if fields.pname == nil then
        -- by rank among processors (stable when other steps are added in a reload)
        local rank = 1
        for _, n in ipairs(self.job.nodes) do if n.kind == "process" then rank = rank + 1 end end
        fields.pname = "process-" .. rank
    end
    local node = new_node(self.job, "process", { self.node }, fields)
    if fields.stateful then self.job.stateful = true end
    return new_stream(self.job, node)
end

function stream_methods:merge(other)
    if getmetatable(other) ~= Stream then error("merge: expected a stream", 2) end
    if other.job ~= self.job then error("merge: the streams belong to different jobs", 2) end
    return new_stream(self.job, new_node(self.job, "merge", { self.node, other.node }))
end

local function check_topic(topic, what)
    if type(topic) ~= "string" or topic == "" then
        error(what .. ": a topic name (non-empty string) is required", 3)
    end
    if #topic > 249 or not topic:match("^[%w%._%-]+$") or topic == "." or topic == ".." then
        error(("%s: %q is not a legal Kafka topic name ([A-Za-z0-9._-], at most 249; not . or ..)"):format(what, topic), 3)
    end
end

function stream_methods:to(topic, opts)
    check_topic(topic, "to")
    opts = opts or {}
    local node = new_node(self.job, "sink", { self.node }, {
        topic = topic,
        key_serde = serde.resolve(opts.key, "to(" .. topic .. ") key"),
        value_serde = serde.resolve(opts.value, "to(" .. topic .. ") value"),
    })
    self.job.sinks[#self.job.sinks + 1] = node
    return self
end

-- Grouping and aggregation -------------------------------------------------

local Grouped = {}
Grouped.__index = Grouped
local Table = {}
Table.__index = Table
_M.Grouped, _M.Table = Grouped, Table

local function grouped(stream, opts, line)
    opts = opts or {}
    if type(opts) ~= "table" then error("group_by: options must be a table", 3) end
    return setmetatable({ job = stream.job, node = stream.node, opts = opts, line = line,
        key_serde = serde.resolve(opts.key, "group_by key"),
        repartition = stream.node.key_changed }, Grouped)
end

--- Group by the current key; repartitions only when an upstream step may have changed it.
function stream_methods:group_by_key(opts)
    return grouped(self, opts, where(3))
end

--- Group by a new key fn(k, v, rec) -> k2: always repartitions.
function stream_methods:group_by(fn, opts)
    check_fn(fn, "group_by")
    local node = new_node(self.job, "select_key", { self.node }, { fn = fn, key_changed = true })
    return grouped(new_stream(self.job, node), opts, node.line)
end

local agg_seq = 0
local function aggregate(g, kind, fn, init, opts, level)
    opts = opts or {}
    if type(opts) ~= "table" then error(kind .. ": options must be a table", level) end
    local emit = opts.emit or "update"
    if emit ~= "update" and emit ~= "final" then
        error(kind .. ": emit must be \"update\" or \"final\", got " .. tostring(emit), level)
    end
    if emit == "final" and not g.win then
        error(kind .. ": emit = \"final\" needs a windowed aggregation (grouped:window(w))", level)
    end
    local job = g.job
    local default_name = false
    agg_seq = agg_seq + 1
    local store = opts.store
    if store ~= nil and (type(store) ~= "string" or not store:match("^[%w%._%-]+$")) then
        error(kind .. ": store must be a name ([A-Za-z0-9._-])", level)
    end
    if store ~= nil and store:sub(1, 2) == "__" then
        error(kind .. ": store names starting with \"__\" are eddy's own", level)
    end
    if store == nil then
        -- a default name from the aggregation's rank among its kind, so adding a
        -- map or filter step in a reload does not rename (and lose) the store
        local rank = 1
        for _, n in ipairs(job.nodes) do
            if n.kind == "aggregate" and n.agg == kind and n.default_name then rank = rank + 1 end
        end
        store = kind .. "-" .. rank
        default_name = true
    end
    for _, n in ipairs(job.nodes) do
        if n.store == store then
            error(("%s: store %q is already used at %s"):format(kind, store, n.line), level)
        end
    end
    local parent = g.node
    if g.repartition then
        local name = g.opts.name or store
        parent = new_node(job, "repartition", { parent }, { name = name, key_serde = g.key_serde,
            line = g.line, key_changed = false })
        parent.subtopology = (job.nsubtopologies or 0) + 1
        job.nsubtopologies = parent.subtopology
    end
    local node = new_node(job, "aggregate", { parent }, { agg = kind, fn = fn, init = init,
        store = store, emit = emit, window = g.win, key_serde = g.key_serde, key_changed = false,
        default_name = default_name })
    job.stateful = true
    return setmetatable({ job = job, node = node }, Table)
end

function Grouped:count(opts)
    return aggregate(self, "count", nil, nil, opts, 3)
end

function Grouped:reduce(fn, opts)
    check_fn(fn, "reduce")
    return aggregate(self, "reduce", fn, nil, opts, 3)
end

function Grouped:aggregate(init, fn, opts)
    check_fn(init, "aggregate (initializer)")
    check_fn(fn, "aggregate (aggregator)")
    return aggregate(self, "aggregate", fn, init, opts, 3)
end

--- A windowed grouping: the same count/reduce/aggregate, per window.
function Grouped:window(w)
    local window = require "eddy.window"
    if not window.is_window(w) then
        error("window: expected eddy.tumbling{}, eddy.hopping{}, eddy.sliding{} or eddy.session{}", 2)
    end
    if self.win then error("window: this grouping is already windowed", 2) end
    local g = setmetatable({}, Grouped)
    for k, v in pairs(self) do g[k] = v end
    g.win = w
    return g
end

--- Join each record with the table's current value for its key (Kafka Streams'
--- KStream#join(KTable)): fn(stream_value, table_value, key) -> the joined value.
--- The stream must be co-partitioned with the table's topic (same key, same
--- partition count; no key change before the join). Records with a nil key or
--- value, or no table value (inner join), produce nothing.
local function stream_table_join(self, tbl, fn, left, method, key_fn)
    if getmetatable(tbl) == Table and tbl.node and tbl.node.kind == "global_table" then
        -- a global table holds every partition: no co-partitioning, any key may be looked up
        check_fn(fn, method)
        if key_fn ~= nil then check_fn(key_fn, method .. " key") end
        if tbl.job ~= self.job then error(method .. ": the table belongs to another job", 3) end
        local node = new_node(self.job, "join_table", { self.node }, { fn = fn, left = left,
            table_store = tbl.node.store, table_key = tbl.node.key_serde, global = true,
            key_fn = key_fn, key_changed = self.node.key_changed })
        return new_stream(self.job, node)
    end
    if key_fn ~= nil then
        error(("stream:%s: a key function is for global tables (job:global_table); a table "
            .. "is joined on the record's key"):format(method), 3)
    end
    if getmetatable(tbl) ~= Table or not tbl.node or not (tbl.node.kind == "table"
        or (tbl.node.kind == "aggregate" and not tbl.node.window)) then
        if getmetatable(tbl) == Table and tbl.node and tbl.node.kind == "aggregate" then
            error(("stream:%s: a windowed table cannot be joined (join its to_stream() within "
                .. "a window instead)"):format(method), 3)
        end
        if getmetatable(tbl) == Table then
            error(("stream:%s: the result of a table join is not materialized; write it with "
                .. "to_stream():to(topic) and read that back with job:table(topic)"):format(method), 3)
        end
        error(("stream:%s: expected a table (job:table(topic) or an aggregation), and a function; "
            .. "to join another stream: stream:%s(other, eddy.join_window{...}, fn)"):format(method, method), 3)
    end
    check_fn(fn, method)
    local job = self.job
    if tbl.job ~= job then error(method .. ": the table belongs to another job", 3) end
    local parent = self.node
    if parent.key_changed or parent.subtopology ~= tbl.node.subtopology then
        -- Kafka Streams repartitions the stream by the table's key: here through
        -- <app>-<table store>-join-<n>-repartition into the table's sub-topology,
        -- which becomes one of its own (the table topic read there) unless it is one already
        local tn = tbl.node
        if tn.kind ~= "table" then
            error(("stream:%s: the stream and the table are not co-partitioned (the stream's key "
                .. "may have changed at %s, or one of them went through a repartition), and only a "
                .. "table from job:table(topic) can be joined through an automatic repartition; "
                .. "write the stream to a topic keyed like the table and read that back"):format(method,
                parent.key_changed_at or parent.line), 3)
        end
        if not tn.own_subtopology then
            local c = tn.children[1]
            for _, n in ipairs(job.nodes) do
                if n.kind == "join_table" and n.table_store == tn.store then c = c or n end
            end
            if c then
                error(("stream:%s: a re-keyed stream is joined with table %s through a repartition, "
                    .. "which moves the table into a sub-topology of its own, but the table is already "
                    .. "used at %s; join the re-keyed stream before other uses of the table"):format(
                    method, tn.topics[1], c.line), 3)
            end
            local s = (job.nsubtopologies or 0) + 1
            job.nsubtopologies = s
            tn.subtopology = s
            tn.own_subtopology = true
        end
        local rank = 1
        for _, n in ipairs(job.nodes) do
            if n.kind == "repartition" and n.for_table == tn.store then rank = rank + 1 end
        end
        parent = new_node(job, "repartition", { parent }, { name = tn.store .. "-join-" .. rank,
            key_serde = tn.key_serde, key_changed = false, for_table = tn.store })
        parent.subtopology = tn.subtopology
    end
    local node = new_node(job, "join_table", { parent }, { fn = fn, left = left,
        table_store = tbl.node.store, table_key = tbl.node.key_serde, key_changed = false })
    return new_stream(job, node)
end

--- Join with another stream within a window (Kafka Streams' KStream#join(KStream,
--- JoinWindows)): fn(left_value, right_value, key) for every pair of records
--- with the same key whose timestamps are within the window; the result's
--- timestamp is the larger of the two. left_join: also fn(left_value, nil, key)
--- for a left record that found no partner, emitted once its window has closed
--- (the spurious-result fix); outer_join: both sides so. Streams whose key may
--- have changed are repartitioned by key first (both sides, through
--- <app>-<name>-left/right-repartition). opts: name (stores and topics;
--- default "join-<n>"), key (the key's serde in stores and repartitions).
local function stream_stream_join(self, other, w, fn, opts, mode, method)
    local job = self.job
    local line = where(3)
    if other.job ~= job then error(method .. ": the streams belong to different jobs", 3) end
    if not require("eddy.join").is_join_window(w) then
        error(("stream:%s(other_stream, window, fn): the window must be eddy.join_window{ diff = ..., "
            .. "grace = ... } (or before/after)"):format(method), 3)
    end
    check_fn(fn, method)
    opts = opts or {}
    if type(opts) ~= "table" then error(method .. ": options must be a table", 3) end
    local name = opts.name
    if name ~= nil and (type(name) ~= "string" or not name:match("^[%w%._%-]+$") or name:sub(1, 2) == "__") then
        error(method .. ": name must be a name ([A-Za-z0-9._-], not starting with \"__\")", 3)
    end
    if name == nil then
        local rank = 1
        for _, n in ipairs(job.nodes) do
            if n.kind == "join_out" and n.spec.window and n.spec.default_name then rank = rank + 1 end
        end
        name = "join-" .. rank
    end
    for _, n in ipairs(job.nodes) do
        if n.store == name or (n.kind == "join_out" and n.spec.name == name) then
            error(("%s: name %q is already used at %s"):format(method, name, n.line), 3)
        end
    end
    local key_serde = serde.resolve(opts.key, method .. " key")
    local ln, rn = self.node, other.node
    if ln.key_changed or rn.key_changed or ln.subtopology ~= rn.subtopology then
        -- co-partition both sides by the join key (Kafka Streams repartitions only the
        -- re-keyed side and sizes its topic like the other; eddy sends both through a topic)
        local s = (job.nsubtopologies or 0) + 1
        job.nsubtopologies = s
        ln = new_node(job, "repartition", { ln }, { name = name .. "-left", key_serde = key_serde,
            line = line, key_changed = false })
        ln.subtopology = s
        rn = new_node(job, "repartition", { rn }, { name = name .. "-right", key_serde = key_serde,
            line = line, key_changed = false })
        rn.subtopology = s
    end
    local spec = { name = name, window = w, mode = mode, fn = fn, key_serde = key_serde, line = line,
        default_name = opts.name == nil }
    local L = new_node(job, "join_side", { ln }, { spec = spec, side = "left", line = line, key_changed = false })
    local R = new_node(job, "join_side", { rn }, { spec = spec, side = "right", line = line, key_changed = false })
    local out = new_node(job, "join_out", { L, R }, { spec = spec, line = line, key_changed = false })
    job.stateful = true
    return new_stream(job, out)
end

function stream_methods:join(other, a, b, c)
    if getmetatable(other) == Stream then return stream_stream_join(self, other, a, b, c, "inner", "join") end
    return stream_table_join(self, other, a, false, "join", b)
end
function stream_methods:left_join(other, a, b, c)
    if getmetatable(other) == Stream then return stream_stream_join(self, other, a, b, c, "left", "left_join") end
    return stream_table_join(self, other, a, true, "left_join", b)
end
function stream_methods:outer_join(other, a, b, c)
    if getmetatable(other) == Stream then return stream_stream_join(self, other, a, b, c, "outer", "outer_join") end
    error("stream:outer_join: a stream joins another stream within a window (outer_join(other, "
        .. "eddy.join_window{...}, fn)); a stream-table join is join or left_join", 2)
end

--- Join two tables on their key (Kafka Streams' KTable#join(KTable)): every change
--- of either table emits fn(left_value, right_value, key) with the other's current
--- value, timestamped with the later of the two; a result that no longer exists
--- is a tombstone (nil). join: both values present; left_join: the left one
--- (right may be nil); outer_join: either. Both tables must be materialized
--- (job:table or a non-windowed aggregation) and co-partitioned.
local function table_table_join(self, other, fn, mode, method)
    local function ok_table(t)
        return getmetatable(t) == Table and t.node and (t.node.kind == "table"
            or (t.node.kind == "aggregate" and not t.node.window))
    end
    if not ok_table(self) or not ok_table(other) then
        for _, t in ipairs({ self, other }) do
            if getmetatable(t) == Table and t.node and t.node.kind == "global_table" then
                error(("table:%s: a global table is joined by streams (stream:join(g, fn, key_fn))"):format(method), 3)
            end
            if getmetatable(t) == Table and t.node and t.node.kind == "aggregate" then
                error(("table:%s: windowed tables cannot be joined"):format(method), 3)
            end
            if getmetatable(t) == Table and t.node and t.node.kind == "join_out" then
                error(("table:%s: the result of a table join is not materialized; write it with "
                    .. "to_stream():to(topic) and read that back with job:table(topic)"):format(method), 3)
            end
        end
        error(("table:%s(other_table, fn): expected a table from job:table(topic) or a non-windowed "
            .. "aggregation"):format(method), 3)
    end
    check_fn(fn, method)
    local job = self.job
    if other.job ~= job then error(method .. ": the tables belong to different jobs", 3) end
    if self.node.subtopology ~= other.node.subtopology then
        error(("table:%s: the tables are not co-partitioned (one is an aggregation after a "
            .. "repartition); write one to a topic with to_stream():to(topic) and read it back "
            .. "with job:table(topic)"):format(method), 3)
    end
    local line = where(3)
    local function side(t)
        t.node.change = t.node.change or {}
        return { store = t.node.store, key_serde = t.node.key_serde, change = t.node.change }
    end
    local spec = { kind = "table", mode = mode, fn = fn, left = side(self), right = side(other), line = line }
    local L = new_node(job, "table_join_side", { self.node }, { spec = spec, side = "left", line = line, key_changed = false })
    local R = new_node(job, "table_join_side", { other.node }, { spec = spec, side = "right", line = line, key_changed = false })
    local out = new_node(job, "join_out", { L, R }, { spec = spec, line = line, key_changed = false })
    return setmetatable({ job = job, node = out }, Table)
end

function Table:join(other, fn) return table_table_join(self, other, fn, "inner", "join") end
function Table:left_join(other, fn) return table_table_join(self, other, fn, "left", "left_join") end
function Table:outer_join(other, fn) return table_table_join(self, other, fn, "outer", "outer_join") end

--- The table's changes as a stream (key, new value); windowed results carry rec.window.
function Table:to_stream()
    if self.node.kind == "global_table" then
        error("to_stream: a global table has no stream of changes (every instance reads all of "
            .. "it: each would emit every change); read its topic as a source instead", 2)
    end
    return new_stream(self.job, new_node(self.job, "to_stream", { self.node }, { key_changed = false }))
end

-- Job ----------------------------------------------------------------------

local job_options = {
    name = "string", app_id = "string", brokers = "string", input = "string",
    input_format = "string", output = "string", dlq = "string", partitions = "number",
    state_dir = "string", guarantee = "string", on_error = "string", watch = "boolean",
    http = "string", threads = "number", commit_interval = "string|number",
    kafka = "table", idle_advance = "string|number", reload_rollback_errors = "number",
    state_map_size = "number", handler_timeout = "number", lua_memory_limit = "number",
}

function _M.job(opts)
    if type(opts) == "string" then opts = { name = opts } end
    if type(opts) ~= "table" then error("eddy.job: expected a name or a table of options", 2) end
    for k, v in pairs(opts) do
        local want = job_options[k]
        if not want then error(("eddy.job: unknown option %q"):format(tostring(k)), 2) end
        if not want:find(type(v), 1, true) then
            error(("eddy.job: option %s must be a %s, got %s"):format(k, want, type(v)), 2)
        end
        if k == "lua_memory_limit" and v < 0 then
            error("eddy.job: lua_memory_limit must be MiB >= 0 (0: no limit), got " .. v, 2)
        end
    end
    if type(opts.name) ~= "string" or not opts.name:match("^[%w%._%-]+$") then
        error("eddy.job: a name ([A-Za-z0-9._-]) is required, e.g. eddy.job{ name = \"wordcount\" }", 2)
    end
    local on_error = opts.on_error or "dlq"
    if on_error ~= "dlq" and on_error ~= "skip" and on_error ~= "fail" then
        error(("eddy.job: on_error must be \"dlq\", \"skip\" or \"fail\", got %q"):format(on_error), 2)
    end
    return setmetatable({ options = opts, name = opts.name, on_error = on_error,
        nodes = {}, sources = {}, sinks = {}, line = where(3) }, Job)
end

function Job:source(topics, opts)
    if type(topics) == "string" then topics = { topics } end
    if type(topics) ~= "table" or #topics == 0 then
        error("source: a topic name or a list of topic names is required", 2)
    end
    opts = opts or {}
    if type(opts) ~= "table" then error("source: options must be a table", 2) end
    if opts.timestamp ~= nil and type(opts.timestamp) ~= "function" then
        error("source: timestamp must be a function(k, v, rec) -> ms", 2)
    end
    local line = where(3)
    local node = new_node(self, "source", {}, {
        topics = topics, line = line, timestamp = opts.timestamp,
        key_serde = serde.resolve(opts.key, "source key"),
        value_serde = serde.resolve(opts.value, "source value"),
    })
    for _, t in ipairs(topics) do
        check_topic(t, "source")
        for _, s in ipairs(self.sources) do
            if s.topic == t then
                error(("source: topic %q is already a source of this job (at %s)"):format(t, s.node.line), 2)
            end
        end
        self.sources[#self.sources + 1] = { topic = t, node = node }
    end
    return new_stream(self, node)
end

-- A table node of `kind` ("table" or "global_table") reading `topic`; errors are
-- raised at the script's call (level 3: the caller of Job:table / Job:global_table).
local function new_table(self, topic, opts, kind, what, default_store)
    if type(topic) ~= "string" then error(what .. ": a topic name is required", 3) end
    opts = opts or {}
    if type(opts) ~= "table" then error(what .. ": options must be a table", 3) end
    check_topic(topic, what)
    local store = opts.store or (default_store .. topic)
    if type(store) ~= "string" or not store:match("^[%w%._%-]+$") then
        error(what .. ": store must be a name ([A-Za-z0-9._-])", 3)
    end
    for _, s in ipairs(self.sources) do
        if s.topic == topic then
            error(("%s: topic %q is already a source of this job (at %s)"):format(what, topic, s.node.line), 3)
        end
    end
    for _, n in ipairs(self.nodes) do
        if n.store == store then
            error(("%s: store %q is already used at %s"):format(what, store, n.line), 3)
        end
    end
    local node = new_node(self, kind, {}, { topics = { topic }, store = store, line = where(4),
        key_serde = serde.resolve(opts.key, what .. " key"),
        value_serde = serde.resolve(opts.value, what .. " value"), key_changed = false })
    self.sources[#self.sources + 1] = { topic = topic, node = node }
    self.stateful = true
    return setmetatable({ job = self, node = node }, Table)
end

--- A topic read as a table (Kafka Streams' builder.table): the latest value per
--- key in an LMDB store (a nil value deletes the key), logged and restored like
--- every store. opts: key, value (serdes), store (default "table-<topic>").
function Job:table(topic, opts)
    local t = new_table(self, topic, opts, "table", "table", "table-")
    return t        -- not a tail call: new_table's messages and line point at the script
end

--- A topic read whole by every instance (Kafka Streams' GlobalKTable): every
--- partition's latest value per key, in one store, read to the end of the topic
--- before the job processes anything else and kept up to date as it runs.
--- Streams join it through any key: stream:join(g, fn, function(k, v) return lookup_key end).
function Job:global_table(topic, opts)
    local t = new_table(self, topic, opts, "global_table", "global_table", "global-")
    return t
end

--- An example that gates every load of this script: the input records run
--- through the real engine (file mode, a scratch state) and the outputs must be
--- exactly `output` = { topic = { {k, v}, ... } }; otherwise the version is
--- refused with the difference.
function Job:example(ex)
    if type(ex) ~= "table" or type(ex.input) ~= "table" or type(ex.output) ~= "table" then
        error("example: expected { input = { {k, v, ts}, ... }, output = { topic = { {k, v}, ... } } }", 2)
    end
    self.examples = self.examples or {}
    ex.line = where(3)
    self.examples[#self.examples + 1] = ex
    return self
end

function Job:on_reload(fn)
    check_fn(fn, "on_reload")
    self.reload_hook = fn
end

_M.Job = Job
_M.Stream = Stream
_M.stream_methods = stream_methods

function _M.is_job(x) return getmetatable(x) == Job end

--- The topology as plain data (what `eddy check` prints and the host validates).
function _M.topology(job)
    local nodes = {}
    for i, n in ipairs(job.nodes) do
        local children = {}
        for j, c in ipairs(n.children) do children[j] = c.id end
        nodes[i] = { id = n.id, kind = n.kind, line = n.line, topic = n.topic,
            topics = n.topics, children = children }
    end
    local sources, sinks = {}, {}
    for i, s in ipairs(job.sources) do sources[i] = s.topic end
    local seen = {}
    for _, s in ipairs(job.sinks) do
        if not seen[s.topic] then seen[s.topic] = true; sinks[#sinks + 1] = s.topic end
    end
    return { name = job.name, on_error = job.on_error, sources = sources, sinks = sinks, nodes = nodes,
        stateful = job.stateful or false }
end

-- A duration in the largest unit that divides it: 600000 -> "10m".
local function dur_text(ms)
    for _, u in ipairs({ { 3600000, "h" }, { 60000, "m" }, { 1000, "s" } }) do
        if ms ~= 0 and ms % u[1] == 0 then return ("%d%s"):format(ms / u[1], u[2]) end
    end
    return ("%dms"):format(ms)
end

-- "outer_join [join-1] before 10s after 10s grace 0ms" / "left_join (tables)"
local function join_label(n)
    local spec = n.spec
    local what = spec.mode == "inner" and "join" or (spec.mode .. "_join")
    if spec.window then
        local w = spec.window
        return ("%s [%s] before %s after %s grace %s"):format(what, spec.name, dur_text(w.before),
            dur_text(w.after), dur_text(w.grace))
    end
    return what .. " (tables)"
end

-- A short label for a node in a picture.
local function node_label(job, n)
    if n.kind == "source" then return "source " .. table.concat(n.topics, ", ") end
    if n.kind == "table" then return "table " .. n.topics[1] .. " [" .. n.store .. "]" end
    if n.kind == "global_table" then return "global table " .. n.topics[1] .. " [" .. n.store .. "]" end
    if n.kind == "join_table" then return (n.left and "left_join" or "join") .. " [" .. n.table_store .. "]" end
    if n.kind == "join_side" or n.kind == "table_join_side" then return "join " .. n.side end
    if n.kind == "join_out" then return join_label(n) end
    if n.kind == "sink" then return "to " .. n.topic end
    if n.kind == "branch_out" then return "branch #" .. n.index end
    if n.kind == "aggregate" then
        return n.agg .. (n.window and (" " .. n.window.kind) or "") .. " [" .. n.store .. "]"
    end
    if n.kind == "repartition" then return "repartition " .. n.name end
    return n.kind
end

--- The topology as a Graphviz (dot) or Mermaid picture: steps with their script
--- lines, topics, stores, and one cluster per sub-topology.
function _M.picture(job, format)
    local lines, subs = {}, {}
    for _, n in ipairs(job.nodes) do
        local sub = n.subtopology or 0
        subs[sub] = subs[sub] or {}
        table.insert(subs[sub], n)
    end
    local function esc(x) return (tostring(x):gsub('"', "'")) end
    if format == "mermaid" then
        lines[1] = "flowchart LR"
        for sub, nodes in pairs(subs) do
            lines[#lines + 1] = ("  subgraph s%d[\"sub-topology %d\"]"):format(sub, sub)
            for _, n in ipairs(nodes) do
                lines[#lines + 1] = ('    n%d["%s<br/>%s"]'):format(n.id, esc(node_label(job, n)), esc(n.line))
            end
            lines[#lines + 1] = "  end"
        end
        for _, n in ipairs(job.nodes) do
            if n.kind == "source" or n.kind == "table" or n.kind == "global_table" then
                for _, t in ipairs(n.topics) do
                    lines[#lines + 1] = ('  t_%s[("%s")] --> n%d'):format(t:gsub("[^%w]", "_"), esc(t), n.id)
                end
            end
            if n.kind == "sink" then
                lines[#lines + 1] = ('  n%d --> t_%s[("%s")]'):format(n.id, n.topic:gsub("[^%w]", "_"), esc(n.topic))
            end
            if n.store then
                lines[#lines + 1] = ('  n%d -.- st_%s[("store %s")]'):format(n.id, n.store:gsub("[^%w]", "_"), esc(n.store))
            end
            for _, c in ipairs(n.children) do lines[#lines + 1] = ("  n%d --> n%d"):format(n.id, c.id) end
        end
        return table.concat(lines, "\n")
    end
    lines[1] = ('digraph "%s" {'):format(esc(job.name))
    lines[2] = "  rankdir=LR; node [shape=box, fontname=Helvetica, fontsize=10];"
    for sub, nodes in pairs(subs) do
        lines[#lines + 1] = ('  subgraph cluster_%d { label="sub-topology %d";'):format(sub, sub)
        for _, n in ipairs(nodes) do
            lines[#lines + 1] = ('    n%d [label="%s\\n%s"];'):format(n.id, esc(node_label(job, n)), esc(n.line))
        end
        lines[#lines + 1] = "  }"
    end
    for _, n in ipairs(job.nodes) do
        if n.kind == "source" or n.kind == "table" or n.kind == "global_table" then
            for _, t in ipairs(n.topics) do
                lines[#lines + 1] = ('  "topic:%s" [shape=cds, label="%s"]; "topic:%s" -> n%d;'):format(esc(t), esc(t), esc(t), n.id)
            end
        end
        if n.kind == "sink" then
            lines[#lines + 1] = ('  "topic:%s" [shape=cds, label="%s"]; n%d -> "topic:%s";'):format(esc(n.topic), esc(n.topic), n.id, esc(n.topic))
        end
        if n.store then
            lines[#lines + 1] = ('  "store:%s" [shape=cylinder, label="%s"]; n%d -> "store:%s" [style=dashed, dir=both];'):format(esc(n.store), esc(n.store), n.id, esc(n.store))
        end
        for _, c in ipairs(n.children) do lines[#lines + 1] = ("  n%d -> n%d;"):format(n.id, c.id) end
    end
    lines[#lines + 1] = "}"
    return table.concat(lines, "\n")
end

--- A human description of the topology, one line per step.
function _M.describe(job)
    local t = _M.topology(job)
    local out = { ("job %s (defined at %s)"):format(job.name, job.line) }
    out[#out + 1] = "  sources: " .. table.concat(t.sources, ", ")
    out[#out + 1] = "  sinks:   " .. (#t.sinks > 0 and table.concat(t.sinks, ", ") or "(none)")
    out[#out + 1] = "  steps:"
    for _, n in ipairs(t.nodes) do
        local what = n.kind
        if n.kind == "source" then what = "source " .. table.concat(n.topics, ", ") end
        local full = job.nodes[n.id]
        if n.kind == "table" then what = "table " .. full.topics[1] .. " [" .. full.store .. "]" end
        if n.kind == "global_table" then what = "global table " .. full.topics[1] .. " [" .. full.store .. "]" end
        if n.kind == "join_table" then
            what = (full.left and "left_join" or "join") .. " [" .. full.table_store .. "]"
        end
        if n.kind == "join_side" or n.kind == "table_join_side" then what = "join " .. full.side end
        if n.kind == "join_out" then what = join_label(full) end
        if n.kind == "sink" then what = "to " .. n.topic end
        if n.kind == "branch_out" then what = "branch #" .. job.nodes[n.id].index end
        local jn = job.nodes[n.id]
        if n.kind == "aggregate" then
            what = jn.agg .. (jn.window and (" " .. jn.window.kind) or "") .. " [" .. jn.store .. "]"
        end
        if n.kind == "repartition" then what = "repartition " .. jn.name end
        if n.kind == "process" and type(jn.stores) == "table" then
            local names = {}
            for k, v in pairs(jn.stores) do names[#names + 1] = type(k) == "string" and k or tostring(v) end
            table.sort(names)
            if #names > 0 then what = "process [" .. table.concat(names, ", ") .. "]" end
        end
        local kids = {}
        for i, c in ipairs(n.children) do kids[i] = tostring(c) end
        local line = ("    %2d  %-32s %-32s%s"):format(n.id, what, n.line,
            #kids > 0 and (" -> " .. table.concat(kids, ", ")) or "")
        out[#out + 1] = (line:gsub("%s+$", ""))
    end
    return table.concat(out, "\n")
end

return _M
