-- eddy.testing: test a job without a broker, as Kafka Streams users do with
-- TopologyTestDriver.
--
--   local testing = require "eddy.testing"
--   local d = testing.driver("wordcount.lua")          -- a path, or the script's text
--   d:pipe("text-lines", nil, "to be or not to be")
--   assert.same({ "1", "1", "1", "1", "2", "2" }, values(d:read_all("word-counts")))
--   d:close()
--
-- The driver runs the real engine: `eddy run SCRIPT` in file mode, with its state
-- in a temporary directory. Piped records are buffered; reading (read, read_all,
-- store, dlq) first runs the engine over the records piped since the last run, on
-- the same state, so a test made of several pipe/read rounds behaves exactly as
-- one long run would (stream time, windows, grace, late records, timers, stores).
--
-- testing.driver(script, opts), opts (all optional):
--   partitions = N        file-mode partitions (records spread by murmur2 of the key)
--   app_id = "id"         the app id (default: the job's name)
--   start_time = ms       the wall clock the job sees at the start; also the
--                         timestamp of piped records that give none (else: now)
--   value = "json"        decode output values as JSON in read/read_all (or a
--                         table { topic = "json" } per topic)
--   dlq = true            a record the job's code fails on (dead-letter stage
--                         process or serialize) goes to d:dlq() as in a real run;
--                         without it, it raises an error naming the script's
--                         file:line, as Kafka Streams' TopologyTestDriver does.
--                         Bad input (stage deserialize, envelope) always goes
--                         to d:dlq().
--
-- Methods:
--   d:pipe(topic, key, value[, ts[, headers]])   one record
--   d:pipe(topic, { {k, v[, ts[, headers]]}, ... })   a list (or {key=, value=, ts=,
--                         headers=, partition=} tables). topic nil: the job's first
--                         source. Values and keys: strings; numbers as their text;
--                         tables as JSON; nil is a null (tombstone). Headers: a
--                         table name -> value, or a kcat-style flat list.
--   d:read(topic[, "json"])      the next unread output record of topic, or nil
--   d:read_all(topic[, "json"])  every unread output record of topic (a list)
--   d:read_values(topic[, "json"])  the same, values only
--   d:read_map(topic[, "json"])  the same as a table key -> latest value
--                         Records: { key=, value=, ts=, headers = {name = value},
--                         topic=, partition=, offset= }
--   d:dlq()               dead letters since the last call: records with
--                         .error, .stage (from the eddy.* headers) and .headers
--   d:store(name)         the store's contents, a table key -> value (all tasks)
--   d:store_entries(name) the same as a list of {task=, key=, value=[, window=]}
--   d:advance_time(ms)    move the job's wall clock on; the next run fires the
--                         wall-clock schedules (ctx:every) that fall due
--   d:now()               the wall-clock time the job sees (start_time given)
--   d:reload(script)      the next runs use this new version (text or path) on the
--                         same state; errors with eddy's message if it does not load
--   d:run()               run the engine now over what is piped (reads do it)
--   d:close()             remove the temporary directory
--
-- A run that fails (a job with on_error = "fail", a script that does not load, a
-- handler error without opts.dlq) raises eddy's message at the spec's line; the
-- message names the script's file:line.
local _M = {}

local ok_ejson, ejson = pcall(require, "eddy.json")
local cjson = require("cjson").new()
cjson.encode_number_precision(14)   -- its maximum; integers up to 2^46 exact
cjson.encode_sparse_array(true)
local json_encode = ok_ejson and ejson.encode or cjson.encode
local json_decode = ok_ejson and ejson.decode or cjson.decode
_M.null = ok_ejson and ejson.null or cjson.null

local function q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

local function write_file(path, text)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
end

-- os.execute's status in LuaJIT (a raw wait status) and in 5.2 style.
local function execute(cmd)
    local ok, how, code = os.execute(cmd)
    if type(ok) == "number" then
        if ok >= 256 then return math.floor(ok / 256) end
        return ok
    end
    if how == "exit" then return code end
    return 128 + (code or 0)
end

local function now_ms()
    local ok, ffi = pcall(require, "ffi")
    if ok then
        pcall(ffi.cdef, "typedef struct { long tv_sec; long tv_usec; } eddy_testing_timeval;"
            .. " int gettimeofday(eddy_testing_timeval *tv, void *tz);")
        local tv = ffi.new("eddy_testing_timeval")
        ffi.C.gettimeofday(tv, nil)
        return tonumber(tv.tv_sec) * 1000 + math.floor(tonumber(tv.tv_usec) / 1000)
    end
    return os.time() * 1000
end

local function eddy_bin()
    local bin = os.getenv("EDDY_BIN")               -- set by `eddy test`
    if bin and bin ~= "" then return bin end
    bin = (os.getenv("EDDY_ROOT") or ".") .. "/build/eddy"   -- plain busted in a checkout
    local f = io.open(bin, "rb")
    if f then
        f:close()
        return bin
    end
    return "eddy"                                    -- an installed eddy on PATH
end

local function trim(s)
    return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- The last meaningful stderr line(s) of a failed eddy command.
local function failure(text, what)
    text = trim(text or "")
    if text == "" then return what .. " failed without a message" end
    return text
end

-- Raise msg at the spec's line: the first caller outside this module.
local function raise(msg)
    local level = 2
    while true do
        local info = debug.getinfo(level, "S")
        if not info then error(msg, 0) end
        if not info.source:find("eddy/testing%.lua$") then error(msg, level) end
        level = level + 1
    end
end

local function is_path(s)
    return not s:find("\n", 1, true) and #s < 4096 and (s:match("%.lua$") or io.open(s, "rb") ~= nil)
end

-- key / value -> the envelope's string (or JSON null)
local function bytes(v)
    local t = type(v)
    if v == nil or v == _M.null then return _M.null end
    if t == "string" then return v end
    if t == "number" then
        if v == math.floor(v) and math.abs(v) < 2^53 then return ("%d"):format(v) end
        return ("%.17g"):format(v)
    end
    if t == "boolean" then return tostring(v) end
    if t == "table" then return json_encode(v) end
    raise(("eddy.testing: cannot pipe a %s (strings, numbers or tables)"):format(t))
end

local function header_list(h)
    if h == nil then return nil end
    local list = {}
    if #h > 0 then
        for i = 1, #h do list[i] = tostring(h[i]) end
    else
        local names = {}
        for name in pairs(h) do names[#names + 1] = name end
        table.sort(names)
        for _, name in ipairs(names) do
            list[#list + 1] = name
            list[#list + 1] = tostring(h[name])
        end
    end
    return list
end

local function header_map(list)
    local m = {}
    if type(list) ~= "table" then return m end
    for i = 1, #list - 1, 2 do
        local v = list[i + 1]
        if v == _M.null or v == cjson.null then v = nil end
        m[list[i]] = v
    end
    return m
end

local function envelopes(text)
    local list = {}
    for line in (text or ""):gmatch("[^\n]+") do
        if line:sub(1, 1) == "{" then
            local e = json_decode(line)
            local rec = {
                topic = e.topic,
                partition = e.partition,
                offset = e.offset,
                ts = e.ts,
                key = e.key,
                value = e.payload,
                headers = header_map(e.headers),
            }
            if rec.key == _M.null or rec.key == cjson.null then rec.key = nil end
            if rec.value == _M.null or rec.value == cjson.null then rec.value = nil end
            list[#list + 1] = rec
        end
    end
    return list
end

-- A relative script path: from the current directory, else next to the calling
-- spec's directory (spec/../job.lua) or in it, so `eddy test path/to/spec` works
-- from anywhere.
local function find_script(path)
    local f = io.open(path, "rb")
    if f then
        f:close()
        return path
    end
    if path:sub(1, 1) == "/" then return nil end
    for level = 3, 6 do
        local info = debug.getinfo(level, "S")
        local src = info and info.source
        if src and src:sub(1, 1) == "@" and not src:find("eddy/testing.lua", 1, true) then
            local dir = src:sub(2):match("^(.*)/[^/]*$") or "."
            for _, cand in ipairs({ dir .. "/../" .. path, dir .. "/" .. path }) do
                f = io.open(cand, "rb")
                if f then
                    f:close()
                    return cand
                end
            end
            return nil
        end
    end
    return nil
end

local Driver = {}
Driver.__index = Driver

function _M.driver(script, opts)
    opts = opts or {}
    assert(type(script) == "string", "eddy.testing.driver: a script path or the script's text")
    local bin = eddy_bin()
    local p = assert(io.popen("mktemp -d /tmp/eddy-test.XXXXXX"))
    local dir = p:read("*l")
    p:close()
    assert(dir and dir ~= "", "eddy.testing: cannot make a temporary directory")
    local d = setmetatable({
        bin = bin,
        dir = dir,
        opts = opts,
        pending = {},
        outputs = {},        -- topic -> list of records
        cursor = {},         -- topic -> index of the last record read
        dead = {},
        dead_read = 0,
        offset = 0,          -- EDDY_CLOCK_OFFSET_MS
        dirty = true,        -- a run is due even with nothing piped (init, timers)
        runs = 0,
        version = 0,
    }, Driver)
    if opts.start_time then
        d.clock0 = opts.start_time
        d.offset = opts.start_time - now_ms()
    end
    if is_path(script) then
        local found = find_script(script)
        if not found then
            d:close()
            raise(("eddy.testing.driver: no such script: %s"):format(script))
        end
        script = found
        d.script = script
        d.script_dir = script:match("^(.*)/[^/]*$") or "."
        d.name = script:match("([^/]+)$")
    else
        d.name = "job.lua"
        d.script_dir = "."
        d.script = dir .. "/" .. d.name
        write_file(d.script, script)
    end
    -- a safety net for a driver that is not closed: removed when collected
    d.guard = newproxy and newproxy(true)
    if d.guard then
        getmetatable(d.guard).__gc = function() os.execute("rm -rf " .. q(dir)) end
    end
    return d
end

function Driver:_env()
    local env = { "EDDY_CLOCK_OFFSET_MS=" .. ("%d"):format(self.offset) }
    if self.lua_path then env[#env + 1] = "LUA_PATH=" .. q(self.lua_path) end
    return table.concat(env, " ")
end

--- Buffer records for the next run.
function Driver:pipe(topic, key, value, ts, headers)
    local list
    if type(key) == "table" and value == nil and ts == nil and (type(key[1]) == "table" or next(key) == nil) then
        list = key
    else
        list = { { key, value, ts, headers, n = 4 } }
    end
    for _, r in ipairs(list) do
        local k, v, t, h, part
        if r.value ~= nil or r.key ~= nil or r.ts ~= nil then
            k, v, t, h, part = r.key, r.value, r.ts, r.headers, r.partition
        else
            k, v, t, h = r[1], r[2], r[3], r[4]
        end
        local e = { key = bytes(k), payload = bytes(v) }
        if topic then e.topic = topic end
        if t == nil and self.clock0 then t = self.clock0 + self:_advanced() end
        if t ~= nil then e.ts = t end
        if part ~= nil then e.partition = part end
        e.headers = header_list(h)
        self.pending[#self.pending + 1] = json_encode(e)
    end
    return self
end

function Driver:_advanced()
    return self.advanced or 0
end

--- Move the job's wall clock on by ms (a duration string such as "30s" too).
function Driver:advance_time(ms)
    if type(ms) == "string" then ms = require("eddy.duration").parse(ms) end
    assert(type(ms) == "number" and ms >= 0, "advance_time: a number of ms >= 0")
    self.advanced = self:_advanced() + ms
    self.offset = self.offset + ms
    self.dirty = true
    return self
end

--- The wall-clock time the job sees (about; exact only with start_time).
function Driver:now()
    return now_ms() + self.offset
end

--- Run the engine over the records piped since the last run.
function Driver:run()
    if #self.pending == 0 and not self.dirty then return self end
    local dir = self.dir
    local input, output, dlq, err = dir .. "/in.jsonl", dir .. "/out.jsonl", dir .. "/dlq.jsonl", dir .. "/stderr"
    write_file(input, #self.pending > 0 and table.concat(self.pending, "\n") .. "\n" or "")
    self.pending = {}
    self.dirty = false
    os.remove(output)
    os.remove(dlq)
    local args = {
        self:_env(), q(self.bin), "run", q(self.script),
        "--input", q(input), "--output", q(output), "--dlq", q(dlq),
        "--state-dir", q(dir .. "/state"), "--no-watch", "--quiet",
    }
    if self.opts.app_id then args[#args + 1] = "--app-id " .. q(self.opts.app_id) end
    if self.opts.partitions then args[#args + 1] = "--partitions " .. q(self.opts.partitions) end
    local cmd = table.concat(args, " ") .. " < /dev/null > /dev/null 2> " .. q(err)
    local code = execute(cmd)
    self.runs = self.runs + 1
    -- what came out before a failure is still there to read
    for _, rec in ipairs(envelopes(read_file(output))) do
        local list = self.outputs[rec.topic]
        if not list then
            list = {}
            self.outputs[rec.topic] = list
        end
        list[#list + 1] = rec
    end
    local job_error
    for _, rec in ipairs(envelopes(read_file(dlq))) do
        rec.error = rec.headers["eddy.error"]
        rec.stage = rec.headers["eddy.stage"]
        self.dead[#self.dead + 1] = rec
        if not job_error and not self.opts.dlq and (rec.stage == "process" or rec.stage == "serialize") then
            job_error = rec
        end
    end
    if code ~= 0 then
        raise(failure(read_file(err), "eddy run"))
    end
    if job_error then
        -- the job's code failed on a record: an error in the test, as in Kafka
        -- Streams' TopologyTestDriver (opts.dlq = true keeps it for d:dlq())
        local h = job_error.headers
        raise(("the job failed on record %s[%s]@%s (%s): %s"):format(h["eddy.topic"] or "?",
            h["eddy.partition"] or "?", h["eddy.offset"] or "?", job_error.stage, job_error.error or "?"))
    end
    return self
end

local function decoder(self, topic, format)
    format = format or self.opts.value
    if type(format) == "table" then format = format[topic] end
    if format == nil or format == "string" or format == "bytes" then return nil end
    if format == "json" then
        return function(s)
            local ok, v = pcall(json_decode, s)
            if not ok then raise(("read %s: a value is not JSON: %s"):format(topic, s)) end
            return v
        end
    end
    if format == "number" then return tonumber end
    if type(format) == "function" then return format end
    raise(("read %s: unknown format %q (\"json\", \"number\", \"string\" or a function)"):format(topic, tostring(format)))
end

local function decoded(rec, dec)
    if not dec or rec.value == nil then return rec end
    local copy = {}
    for k, v in pairs(rec) do copy[k] = v end
    copy.value = dec(rec.value)
    return copy
end

--- The next unread output record of topic, or nil.
function Driver:read(topic, format)
    assert(type(topic) == "string", "read: an output topic")
    self:run()
    local list = self.outputs[topic] or {}
    local i = (self.cursor[topic] or 0) + 1
    local rec = list[i]
    if not rec then return nil end
    self.cursor[topic] = i
    return decoded(rec, decoder(self, topic, format))
end

--- Every unread output record of topic.
function Driver:read_all(topic, format)
    assert(type(topic) == "string", "read_all: an output topic")
    self:run()
    local list = self.outputs[topic] or {}
    local dec = decoder(self, topic, format)
    local out = {}
    for i = (self.cursor[topic] or 0) + 1, #list do out[#out + 1] = decoded(list[i], dec) end
    self.cursor[topic] = #list
    return out
end

--- The values of every unread output record of topic.
function Driver:read_values(topic, format)
    local out = {}
    for i, rec in ipairs(self:read_all(topic, format)) do out[i] = rec.value end
    return out
end

--- Every unread output record of topic as a table key -> latest value (a changelog
--- read as a table; a null value deletes).
function Driver:read_map(topic, format)
    local out = {}
    for _, rec in ipairs(self:read_all(topic, format)) do
        if rec.key ~= nil then out[rec.key] = rec.value end
    end
    return out
end

--- Topics that have output, in name order.
function Driver:topics()
    self:run()
    local t = {}
    for topic in pairs(self.outputs) do t[#t + 1] = topic end
    table.sort(t)
    return t
end

--- Dead letters since the last call.
function Driver:dlq()
    self:run()
    local out = {}
    for i = self.dead_read + 1, #self.dead do out[#out + 1] = self.dead[i] end
    self.dead_read = #self.dead
    return out
end

--- A store's entries in every task: a list of { task=, key=, value= [, window=] }.
function Driver:store_entries(name)
    assert(type(name) == "string", "store: a store name")
    self:run()
    local out, err = self.dir .. "/store.jsonl", self.dir .. "/stderr"
    local args = { self:_env(), q(self.bin), "stores", q(self.script), q(name),
                   "--state-dir", q(self.dir .. "/state") }
    if self.opts.app_id then args[#args + 1] = "--app-id " .. q(self.opts.app_id) end
    local code = execute(table.concat(args, " ") .. " < /dev/null > " .. q(out) .. " 2> " .. q(err))
    if code ~= 0 then raise(failure(read_file(err), "eddy stores")) end
    local list = {}
    for line in (read_file(out) or ""):gmatch("[^\n]+") do
        local e = json_decode(line)
        list[#list + 1] = e
    end
    return list
end

--- A store's contents: a table key -> value. For a windowed store the keys are
--- "key@start" (the window's start in ms).
function Driver:store(name)
    local t = {}
    for _, e in ipairs(self:store_entries(name)) do
        local key = e.key
        if type(e.window) == "table" and e.window.start then
            key = ("%s@%d"):format(tostring(key), e.window.start)
        end
        t[key] = e.value
    end
    return t
end

--- Make the next runs use a new version of the script (its text, or a path), on
--- the same state, as a hot reload would. Errors with eddy's message when the
--- new version does not load (or fails its examples).
function Driver:reload(script)
    assert(type(script) == "string", "reload: the new script's text or path")
    self:run()     -- what was piped before the reload is the old version's
    local text = script
    if is_path(script) then
        text = read_file(script)
        if not text then raise("reload: no such script: " .. script) end
    end
    self.version = self.version + 1
    local dir = self.dir .. "/v" .. self.version
    os.execute("mkdir -p " .. q(dir))
    local path = dir .. "/" .. self.name
    write_file(path, text)
    local err = self.dir .. "/stderr"
    -- modules next to the original script stay reachable
    local lua_path = ("%s/?.lua;%s/?/init.lua;;"):format(self.script_dir, self.script_dir)
    local env = "LUA_PATH=" .. q(lua_path)
    local code = execute(env .. " " .. q(self.bin) .. " check " .. q(path) .. " < /dev/null > /dev/null 2> " .. q(err))
    if code ~= 0 then raise(failure(read_file(err), "eddy check")) end
    self.script = path
    self.lua_path = lua_path
    self.dirty = true
    return self
end

--- Remove the driver's temporary directory.
function Driver:close()
    if self.dir then
        os.execute("rm -rf " .. q(self.dir))
        self.dir = nil
    end
end

return _M
