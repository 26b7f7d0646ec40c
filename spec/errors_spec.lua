-- spec/errors_spec.lua: bad records and bad scripts. on_error dlq|skip|fail, the DLQ
-- record exactly, malformed envelope lines, undecodable values, Lua errors naming the
-- script file:line, partial flat_map outputs withdrawn, nothing lost; script load
-- errors (exit 1, one line naming file:line) and usage errors (exit 2).
local h = require "helper"
local cjson = require "cjson"

local PRE = 'local eddy = require "eddy"\n'

local function input_text(records)
    local out = {}
    for i, r in ipairs(records) do
        out[i] = type(r) == "string" and r or h.envelope(r)
    end
    return table.concat(out, "\n") .. "\n"
end

--- Run SCRIPT in file mode. opts.files: extra files {name = text} next to the script.
local function run(script, records, args, opts)
    opts = opts or {}
    local dir = h.tmpdir()
    local sp = h.script(dir, "job.lua", script)
    for name, text in pairs(opts.files or {}) do h.write(dir .. "/" .. name, text) end
    local text = type(records) == "string" and records or input_text(records or {})
    local inp = h.write(dir .. "/in.jsonl", text)
    local argv = { "run", sp, "--input", inp, "--output", dir .. "/out.jsonl",
        "--dlq", dir .. "/dlq.jsonl" }
    if not opts.verbose then argv[#argv + 1] = "--quiet" end
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    local code, stdout, stderr = h.eddy(argv)
    local r = { code = code, stdout = stdout, stderr = stderr,
        out_text = h.read(dir .. "/out.jsonl") or "", dlq_text = h.read(dir .. "/dlq.jsonl") or "" }
    r.out, r.dlq = h.envelopes(r.out_text), h.envelopes(r.dlq_text)
    os.execute("rm -rf " .. h.q(dir))
    return r
end

local function check(script, files)
    local dir = h.tmpdir()
    local sp = h.script(dir, "job.lua", script)
    for name, text in pairs(files or {}) do h.write(dir .. "/" .. name, text) end
    local code, stdout, stderr = h.eddy({ "check", sp })
    os.execute("rm -rf " .. h.q(dir))
    return code, stdout, stderr
end

local function line_of(text, marker)
    local n = 0
    for l in (text .. "\n"):gmatch("([^\n]*)\n") do
        n = n + 1
        if l:find(marker, 1, true) then return n end
    end
    error("marker not found: " .. marker)
end

local function lines(s)
    local t = {}
    for l in (s or ""):gmatch("[^\n]+") do t[#t + 1] = l end
    return t
end

local function field(list, name)
    local t = {}
    for i, e in ipairs(list) do t[i] = e[name] end
    return t
end

local function header_names(e)
    local t = {}
    local hs = e.headers or {}
    for i = 1, #hs, 2 do t[#t + 1] = hs[i] end
    return t
end

-- A job whose map_values fails on "bad" values, at the line marked <boom>.
local function failing(on_error)
    return PRE .. ("local job = eddy.job { name = \"errs\"%s }\n"):format(
        on_error and (", on_error = %q"):format(on_error) or "") .. [[
job:source("in")
   :map_values(function(v)
      if v == "bad" then error("bad value " .. v) end -- <boom>
      return v:upper()
   end)
   :to("out")
return job
]]
end

local MIXED = { { key = "1", payload = "a" }, { key = "2", payload = "bad" }, "not json at all",
    { key = "4", payload = "d" } }

describe("on_error", function()
    it("dlq (the default): bad records go to the DLQ, the others to the output, exit 0", function()
        for _, policy in ipairs({ false, "dlq" }) do
            local r = run(failing(policy or nil), MIXED)
            assert.equal(0, r.code)
            assert.same({ "A", "D" }, field(r.out, "payload"))
            assert.same({ "bad", "not json at all" }, field(r.dlq, "payload"))
            assert.same({ "errs-dlq", "errs-dlq" }, field(r.dlq, "topic"))
        end
    end)

    it("skip: bad records are dropped, the others go on, exit 0", function()
        local r = run(failing("skip"), MIXED)
        assert.equal(0, r.code)
        assert.same({ "A", "D" }, field(r.out, "payload"))
        assert.same({}, r.dlq)
        assert.equal("", r.dlq_text)
    end)

    it("fail: exit 1 with one line naming the record and the script line; nothing after it", function()
        local script = failing("fail")
        local r = run(script, { { key = "1", payload = "a" }, { key = "2", payload = "bad" },
            { key = "3", payload = "c" } })
        assert.equal(1, r.code)
        local err = lines(r.stderr)
        assert.equal(1, #err, r.stderr)
        assert.truthy(err[1]:find("job.lua:" .. line_of(script, "<boom>"), 1, true), err[1])
        assert.truthy(err[1]:find("bad value bad", 1, true), err[1])
        assert.truthy(err[1]:find("in", 1, true), err[1])
        for _, e in ipairs(r.out) do assert.not_equal("C", e.payload) end
        assert.same({}, r.dlq)
    end)

    -- At-least-once: the records before the failing one were processed; their
    -- outputs are written before the job stops.
    it("fail: the outputs of the records before the failing one are written", function()
        local r = run(failing("fail"), { { key = "1", payload = "a" }, { key = "2", payload = "b" },
            { key = "3", payload = "bad" }, { key = "4", payload = "d" } })
        assert.equal(1, r.code)
        assert.same({ "A", "B" }, field(r.out, "payload"))
    end)

    it("fail: a malformed envelope line stops the job naming the input line", function()
        local r = run(failing("fail"), { { key = "1", payload = "a" }, "{oops", { key = "3", payload = "c" } })
        assert.equal(1, r.code)
        local err = lines(r.stderr)
        assert.equal(1, #err, r.stderr)
        assert.truthy(err[1]:find("input line 2", 1, true), err[1])
        assert.same({ "A" }, field(r.out, "payload"))
    end)

    it("fail: an undecodable value stops the job", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "errs", on_error = "fail" }
job:source("in", { value = "json" }):to("out", { value = "json" })
return job
]], { { key = "1", payload = "{\"a\":1}" }, { key = "2", payload = "{nope" }, { key = "3", payload = "3" } })
        assert.equal(1, r.code)
        assert.equal(1, #lines(r.stderr), r.stderr)
        assert.truthy(r.stderr:find("deserialize", 1, true), r.stderr)
    end)
end)

describe("the DLQ record", function()
    it("keeps the original key, payload, ts and headers, then adds exactly the eddy.* headers", function()
        local script = PRE .. [[
local job = eddy.job { name = "errs" }
job:source("in")
   :map(function(k, v) return "changed-" .. k, "changed-" .. v end)
   :map_values(function(v) error("boom") end) -- <boom>
   :to("out")
return job
]]
        local r = run(script, { '{"topic":"in","partition":2,"offset":41,"ts":1700000000123,"key":"k",'
            .. '"payload":"the payload","headers":["h1","v1","h2",null]}' }, { "--partitions", "4" })
        assert.equal(0, r.code)
        assert.same({}, r.out)
        assert.equal(1, #r.dlq)
        local d = r.dlq[1]
        assert.equal("errs-dlq", d.topic)
        assert.equal("k", d.key)
        assert.equal("the payload", d.payload)
        assert.equal(1700000000123, d.ts)
        local hs = d.headers
        assert.same({ "h1", "v1", "h2", cjson.null }, { hs[1], hs[2], hs[3], hs[4] })
        assert.same({ "h1", "h2", "eddy.error", "eddy.stage", "eddy.topic", "eddy.partition", "eddy.offset" },
            header_names(d))
        local msg = h.header(d, "eddy.error")
        assert.truthy(msg:find("job.lua:" .. line_of(script, "<boom>") .. ": boom", 1, true), msg)
        assert.equal("process", h.header(d, "eddy.stage"))
        assert.equal("in", h.header(d, "eddy.topic"))
        assert.equal("2", h.header(d, "eddy.partition"))
        assert.equal("41", h.header(d, "eddy.offset"))
    end)

    it("names the source topic the record came from", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "errs" }
job:source("a"):to("out")
job:source("b", { value = "number" }):to("out", { value = "number" })
return job
]], { { topic = "b", partition = 0, offset = 3, payload = "NaN-ish" } })
        assert.equal(1, #r.dlq)
        assert.equal("b", h.header(r.dlq[1], "eddy.topic"))
        assert.equal("deserialize", h.header(r.dlq[1], "eddy.stage"))
        assert.equal("3", h.header(r.dlq[1], "eddy.offset"))
    end)

    it("keeps a null key and a null payload null", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "errs" }
job:source("in"):peek(function() error("no") end):to("out")
return job
]], { '{"key":null,"payload":null}' })
        assert.equal(1, #r.dlq)
        assert.is_nil(r.dlq[1].key)
        assert.is_nil(r.dlq[1].payload)
        assert.truthy(r.dlq_text:find('"key":null,"payload":null', 1, true))
    end)

    it("has one line of message: no traceback", function()
        local r = run(failing(), { { key = "1", payload = "bad" } })
        local msg = h.header(r.dlq[1], "eddy.error")
        assert.falsy(msg:find("\n", 1, true), msg)
        assert.falsy(msg:find("traceback", 1, true), msg)
    end)

    it("goes to stderr when --dlq is not given", function()
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", failing())
        local inp = h.write(dir .. "/in.jsonl", input_text({ { key = "1", payload = "bad" }, { key = "2", payload = "ok" } }))
        local code, out, err = h.eddy({ "run", sp, "--input", inp, "--quiet" })
        os.execute("rm -rf " .. h.q(dir))
        assert.equal(0, code)
        assert.same({ "OK" }, field(h.envelopes(out), "payload"))
        local d = h.envelopes(err)
        assert.equal(1, #d)
        assert.equal("bad", d[1].payload)
        assert.equal("errs-dlq", d[1].topic)
    end)
end)

describe("malformed envelope lines", function()
    it("are dead-lettered raw with stage envelope, partition -1, their 0-based line index", function()
        local bad = {
            "not json",
            "{",
            '{"key":"k"}',
            '{"payload":5}',
            '{"payload":"x"} trailing',
            '{"payload":"x","partition":-1}',
            '{"topic":"nope","payload":"x"}',
            '{"key":"a\\nb\\u0000","payload":7}',     -- escapes before the error: the raw line is kept
            '{"payload":"\\q"}',
        }
        local text = { '{"key":"ok0","payload":"x"}' }
        for _, b in ipairs(bad) do text[#text + 1] = b end
        text[#text + 1] = ""                            -- a blank line counts as a line
        text[#text + 1] = '{"key":"ok1","payload":"y"}'
        text[#text + 1] = '[1,2]'
        local r = run(PRE .. [[
local job = eddy.job { name = "errs" }
job:source("in"):to("out")
job:source("other"):to("out")
return job
]], table.concat(text, "\n") .. "\n")
        assert.equal(0, r.code)
        assert.same({ "ok0", "ok1" }, field(r.out, "key"))
        local want_raw = {}
        for _, b in ipairs(bad) do want_raw[#want_raw + 1] = b end
        want_raw[#want_raw + 1] = "[1,2]"
        assert.same(want_raw, field(r.dlq, "payload"))
        local want_line = { 2, 3, 4, 5, 6, 7, 8, 9, 10, 13 }
        for i, d in ipairs(r.dlq) do
            assert.is_nil(d.key)
            assert.equal("errs-dlq", d.topic)
            assert.equal("envelope", h.header(d, "eddy.stage"))
            assert.equal("in", h.header(d, "eddy.topic"))
            assert.equal("-1", h.header(d, "eddy.partition"))
            assert.equal(tostring(want_line[i] - 1), h.header(d, "eddy.offset"))
            local msg = h.header(d, "eddy.error")
            assert.truthy(msg:find("input line " .. want_line[i], 1, true), msg)
        end
    end)

    it("never stop the run: with skip they are dropped and the rest goes on", function()
        local r = run(failing("skip"), { "garbage", { key = "1", payload = "ok" }, "{", { key = "2", payload = "ok" } })
        assert.equal(0, r.code)
        assert.same({ "OK", "OK" }, field(r.out, "payload"))
    end)
end)

describe("undecodable values", function()
    it("are deserialize errors, for values and for keys", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "errs" }
job:source("in", { key = "number", value = "json" }):to("out", { key = "number", value = "json" })
return job
]], { { key = "1", payload = "[1]" }, { key = "2", payload = "{x}" }, { key = "three", payload = "{}" },
            { key = "4", payload = "{}" } })
        assert.equal(0, r.code)
        assert.same({ "1", "4" }, field(r.out, "key"))
        assert.same({ "2", "three" }, field(r.dlq, "key"))
        assert.same({ "deserialize", "deserialize" }, { h.header(r.dlq[1], "eddy.stage"), h.header(r.dlq[2], "eddy.stage") })
    end)
end)

describe("Lua errors in user functions", function()
    local script = PRE .. [[
local job = eddy.job { name = "errs" }
local mod = require "mod"
job:source("in")
   :filter(function(k) if k == "filter" then error("in filter") end return true end) -- <filter>
   :select_key(function(k) if k == "select" then return nil .. "x" end return k end) -- <select>
   :map_values(function(v, k)
      if k == "table" then error({ code = 42 }) end -- <table>
      if k == "level0" then error("no position", 0) end -- <level0>
      if k == "index" then local t = nil; return t.field end -- <index>
      if k == "module" then return mod.explode(v) end
      return v
   end)
   :flat_map_values(function(v, emit, k) if k == "fmv" then error("in fmv") end emit(v) end) -- <fmv>
   :branch(function(k) if k == "branch" then error("in branch") end return true end) -- <branch>
   :to("out")
return job
]]
    local mod = "local M = {}\n\nfunction M.explode(v)\n   error(\"module says \" .. v) -- line 4\nend\n\nreturn M\n"

    it("are process errors whose message names the script file:line", function()
        local cases = { "filter", "select", "table", "level0", "index", "fmv", "branch" }
        local recs = {}
        for i, c in ipairs(cases) do recs[i] = { key = c, payload = "x" } end
        recs[#recs + 1] = { key = "fine", payload = "y" }
        local r = run(script, recs, {}, { files = { ["mod.lua"] = mod } })
        assert.equal(0, r.code)
        assert.same({ "fine" }, field(r.out, "key"))
        assert.equal(#cases, #r.dlq)
        for i, c in ipairs(cases) do
            local d = r.dlq[i]
            assert.equal(c, d.key)
            assert.equal("process", h.header(d, "eddy.stage"), c)
            local msg = h.header(d, "eddy.error")
            local want = "job.lua:" .. line_of(script, "<" .. c .. ">")
            assert.truthy(msg:find(want, 1, true), c .. ": expected " .. want .. " in " .. msg)
        end
        assert.truthy(h.header(r.dlq[1], "eddy.error"):find("in filter", 1, true))
        assert.truthy(h.header(r.dlq[4], "eddy.error"):find("no position", 1, true))
    end)

    it("in a module next to the script name that module's file:line", function()
        local r = run(script, { { key = "module", payload = "hi" } }, {}, { files = { ["mod.lua"] = mod } })
        assert.equal(0, r.code)
        assert.equal(1, #r.dlq)
        local msg = h.header(r.dlq[1], "eddy.error")
        assert.truthy(msg:find("mod.lua:4", 1, true), msg)
        assert.truthy(msg:find("module says hi", 1, true), msg)
    end)

    -- A Lua error in a user function is a process error, the timestamp extractor included.
    it("in the source's timestamp extractor is a process error naming its line", function()
        local s = PRE .. [[
local job = eddy.job { name = "errs" }
job:source("in", { timestamp = function(k, v, rec)
   if v == "bad" then error("no time in " .. v) end -- <ts>
   return 1000
end }):to("out")
return job
]]
        local r = run(s, { { key = "a", payload = "bad" }, { key = "b", payload = "good" } })
        assert.equal(0, r.code)
        assert.same({ "b" }, field(r.out, "key"))
        assert.same({ 1000 }, field(r.out, "ts"))
        assert.equal(1, #r.dlq)
        local msg = h.header(r.dlq[1], "eddy.error")
        assert.truthy(msg:find("job.lua:" .. line_of(s, "<ts>"), 1, true), msg)
        assert.equal("process", h.header(r.dlq[1], "eddy.stage"))
    end)

    it("a timestamp extractor returning something that is not a number is a bad record", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "errs" }
job:source("in", { timestamp = function(k, v, rec) if v == "bad" then return "soon" end return 5 end })
   :to("out")
return job
]], { { key = "a", payload = "bad" }, { key = "b", payload = "ok" } })
        assert.equal(0, r.code)
        assert.same({ "b" }, field(r.out, "key"))
        assert.same({ "a" }, field(r.dlq, "key"))
    end)
end)

describe("a record that fails half-way", function()
    it("through flat_map emits nothing; the records around it are whole", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "errs" }
job:source("in")
   :flat_map(function(k, v, emit)
      emit(k, v .. "-1")
      emit(k, v .. "-2")
      if v == "bad" then error("after two emits") end
      emit(k, v .. "-3")
   end)
   :to("out")
return job
]], { { key = "a", payload = "x" }, { key = "b", payload = "bad" }, { key = "c", payload = "y" } })
        assert.equal(0, r.code)
        assert.same({ "x-1", "x-2", "x-3", "y-1", "y-2", "y-3" }, field(r.out, "payload"))
        assert.same({ "bad" }, field(r.dlq, "payload"))
    end)

    it("with a fan-out emits nothing on the branch that succeeded first", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "errs" }
local s = job:source("in")
s:to("first")
s:map_values(function(v) if v == "bad" then error("second branch") end return v end):to("second")
return job
]], { { key = "a", payload = "ok" }, { key = "b", payload = "bad" }, { key = "c", payload = "ok2" } })
        assert.equal(0, r.code)
        assert.same({ "first", "second", "first", "second" }, field(r.out, "topic"))
        assert.same({ "a", "a", "c", "c" }, field(r.out, "key"))
        assert.same({ "b" }, field(r.dlq, "key"))
    end)

    it("in serialization withdraws the outputs it emitted before", function()
        local r = run(PRE .. [[
local job = eddy.job { name = "errs" }
job:source("in")
   :flat_map_values(function(v, emit) emit("fine"); emit(v == "bad" and { "table" } or "also fine") end)
   :to("out")
return job
]], { { key = "a", payload = "x" }, { key = "b", payload = "bad" } })
        assert.equal(0, r.code)
        assert.same({ "a", "a" }, field(r.out, "key"))
        assert.same({ "serialize" }, { h.header(r.dlq[1], "eddy.stage") })
        assert.equal("b", r.dlq[1].key)
    end)

    it("as the first and as the last record of the input", function()
        local r = run(failing(), { { key = "1", payload = "bad" }, { key = "2", payload = "a" },
            { key = "3", payload = "bad" } })
        assert.equal(0, r.code)
        assert.same({ "2" }, field(r.out, "key"))
        assert.same({ "1", "3" }, field(r.dlq, "key"))
    end)
end)

describe("nothing is lost", function()
    local script = PRE .. [[
local job = eddy.job { name = "errs" }
job:source("in", { value = "json" })
   :flat_map(function(k, v, emit)
      emit(k, { n = v.n })
      if v.n % 7 == 0 then error("seven") end
      if v.n % 5 == 0 then emit(k, { bad = print }) end
   end)
   :to("out", { value = "json" })
return job
]]
    local N = 20000      -- more than two batches

    local function input()
        local t = {}
        for i = 1, N do
            if i % 13 == 0 then
                t[i] = '{"key":"' .. i .. '","payload":'               -- malformed envelope
            elseif i % 11 == 0 then
                t[i] = '{"key":"' .. i .. '","payload":"{\\"n\\":"}'  -- undecodable JSON
            else
                t[i] = '{"key":"' .. i .. '","payload":"{\\"n\\":' .. i .. '}"}'
            end
        end
        return table.concat(t, "\n") .. "\n"
    end

    it("every input record is either in the output or in the DLQ, exactly once", function()
        local r = run(script, input(), { "--partitions", "3" })
        assert.equal(0, r.code)
        local where = {}
        for _, e in ipairs(r.out) do
            local id = tonumber(e.key)
            assert.is_nil(where[id] == "dlq" and true or nil, "in both: " .. tostring(id))
            where[id] = "out"
            assert.same({ n = id }, cjson.decode(e.payload))
        end
        for _, d in ipairs(r.dlq) do
            local id = tonumber(d.key) or tonumber(d.payload:match('^{"key":"(%d+)"'))
            assert.is_nil(where[id], "twice: " .. tostring(id))
            where[id] = "dlq"
        end
        local nout, ndlq = 0, 0
        for i = 1, N do
            local want
            if i % 13 == 0 or i % 11 == 0 or i % 7 == 0 or i % 5 == 0 then want = "dlq" else want = "out" end
            assert.equal(want, where[i], "record " .. i)
            if want == "out" then nout = nout + 1 else ndlq = ndlq + 1 end
        end
        assert.equal(nout, #r.out)
        assert.equal(ndlq, #r.dlq)
    end)

    it("with skip, the output has exactly the good records", function()
        local s = script:gsub('name = "errs"', 'name = "errs", on_error = "skip"')
        local r = run(s, input())
        assert.equal(0, r.code)
        local want = 0
        for i = 1, N do
            if not (i % 13 == 0 or i % 11 == 0 or i % 7 == 0 or i % 5 == 0) then want = want + 1 end
        end
        assert.equal(want, #r.out)
        assert.same({}, r.dlq)
    end)
end)

describe("a script that does not load", function()
    local function assert_one_line(code, stderr, want)
        assert.equal(1, code)
        local l = lines(stderr)
        assert.equal(1, #l, stderr)
        assert.truthy(l[1]:find(want, 1, true), "expected " .. want .. " in: " .. tostring(l[1]))
        return l[1]
    end

    local cases = {
        { "a syntax error", 'local job = eddy.job "x"\nlocal t = = 1 -- <here>\n' },
        { "calling nil at the top level", 'local job = eddy.job "x"\nundefined_function() -- <here>\n' },
        { "error() with a table at the top level", 'local job = eddy.job "x"\nerror({ 1 }) -- <here>\n' },
        { "error() with level 0 at the top level", 'local job = eddy.job "x"\nerror("plain", 0) -- <here>\n' },
        { "requiring a module that does not exist", 'local job = eddy.job "x"\nlocal m = require "no_such_mod" -- <here>\n' },
    }
    for _, c in ipairs(cases) do
        it(c[1] .. ": exit 1, one line naming file:line (check and run)", function()
            local script = PRE .. c[2] .. 'job:source("in"):to("out")\nreturn job\n'
            local want = "job.lua:" .. line_of(script, "<here>")
            local code, stdout, stderr = check(script)
            assert_one_line(code, stderr, want)
            assert.equal("", stdout)
            local r = run(script, { { payload = "x" } }, {}, { verbose = true })
            assert_one_line(r.code, r.stderr, want)
            assert.same({}, r.out)
        end)
    end

    it("a module with a syntax error: the line names the module's file:line", function()
        local code, _, stderr = check(PRE .. 'local m = require "broken"\nlocal job = eddy.job "x"\n'
            .. 'job:source("in"):to("out")\nreturn job\n', { ["broken.lua"] = "local M = {}\n\nM.x = = 1\nreturn M\n" })
        assert_one_line(code, stderr, "broken.lua:3")
    end)

    it("a script that does not return a job: exit 1, one line naming the script", function()
        for _, body in ipairs({ "return 5\n", "local x = 1\n", "return {}\n" }) do
            local code, _, stderr = check(PRE .. body)
            assert_one_line(code, stderr, "job.lua")
        end
    end)

    it("a job without a source: exit 1, one line", function()
        local code, _, stderr = check(PRE .. 'return eddy.job "lonely"\n')
        local l = assert_one_line(code, stderr, "job.lua")
        assert.truthy(l:find("source", 1, true), l)
    end)
end)

describe("usage errors exit 2", function()
    local GOOD = PRE .. 'local job = eddy.job "x"\njob:source("in"):to("out")\nreturn job\n'

    local function eddy_in_dir(fn)
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", GOOD)
        local inp = h.write(dir .. "/in.jsonl", '{"payload":"x"}\n')
        local code, out, err = fn(dir, sp, inp)
        os.execute("rm -rf " .. h.q(dir))
        return code, out, err
    end

    it("an unknown option, named in the message", function()
        local code, out, err = eddy_in_dir(function(_, sp, inp)
            return h.eddy({ "run", sp, "--input", inp, "--frobnicate" })
        end)
        assert.equal(2, code)
        assert.equal("", out)
        assert.truthy(err:find("--frobnicate", 1, true), err)
    end)

    it("an unknown option of check", function()
        local code, _, err = eddy_in_dir(function(_, sp) return h.eddy({ "check", sp, "--nope" }) end)
        assert.equal(2, code)
        assert.truthy(err:find("--nope", 1, true), err)
    end)

    it("a missing script file (run and check)", function()
        local code, _, err = h.eddy({ "run", "/nonexistent/job.lua", "--input", "-" })
        assert.equal(2, code)
        assert.truthy(err:find("/nonexistent/job.lua", 1, true), err)
        code = h.eddy({ "check", "/nonexistent/job.lua" })
        assert.equal(2, code)
    end)

    it("a missing input file, named in the message", function()
        local code, _, err = eddy_in_dir(function(dir, sp)
            return h.eddy({ "run", sp, "--input", dir .. "/missing.jsonl" })
        end)
        assert.equal(2, code)
        assert.truthy(err:find("missing.jsonl", 1, true), err)
    end)

    it("an option without its value", function()
        local code = eddy_in_dir(function(_, sp) return h.eddy({ "run", sp, "--input" }) end)
        assert.equal(2, code)
    end)

    it("neither --input nor --brokers", function()
        local code = eddy_in_dir(function(_, sp) return h.eddy({ "run", sp }) end)
        assert.equal(2, code)
    end)

    it("no script", function()
        assert.equal(2, (h.eddy({ "run", "--input", "-" })))
        assert.equal(2, (h.eddy({ "check" })))
    end)

    it("an unknown command, and no command", function()
        assert.equal(2, (h.eddy({ "frobnicate" })))
        assert.equal(2, (h.eddy({})))
    end)

    it("an output file that cannot be created", function()
        local code = eddy_in_dir(function(_, sp, inp)
            return h.eddy({ "run", sp, "--input", inp, "--output", "/nonexistent/dir/out.jsonl" })
        end)
        assert.equal(2, code)
    end)

    it("a usage error wins over a broken script", function()
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", "this is not lua\n")
        local code = h.eddy({ "run", sp, "--bogus" })
        os.execute("rm -rf " .. h.q(dir))
        assert.equal(2, code)
    end)
end)
