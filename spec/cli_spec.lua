-- spec/cli_spec.lua: the command line. `eddy version`, --help of each command, and
-- `eddy check` printing sources, each step with its script line, and sinks.
local h = require "helper"

local PRE = 'local eddy = require "eddy"\n'

local function lines(s)
    local t = {}
    for l in (s or ""):gmatch("[^\n]+") do t[#t + 1] = l end
    return t
end

local function line_of(text, marker)
    local n = 0
    for l in (text .. "\n"):gmatch("([^\n]*)\n") do
        n = n + 1
        if l:find(marker, 1, true) then return n end
    end
    error("marker not found: " .. marker)
end

local function has(text, s)
    return text ~= nil and text:find(s, 1, true) ~= nil
end

describe("eddy version", function()
    it("prints eddy's version, the same as the Lua module's, and its libraries", function()
        local code, out, err = h.eddy({ "version" })
        assert.equal(0, code)
        assert.equal("", err)
        local v = out:match("^eddy (%d+%.%d+%.%d+)")
        assert.truthy(v, out)
        assert.equal(require("eddy")._VERSION, v)
        assert.truthy(out:find("librdkafka %d"), out)
        assert.truthy(out:find("LuaJIT", 1, true), out)
        assert.equal(1, #lines(out))
    end)

    it("--version is the same", function()
        local _, a = h.eddy({ "version" })
        local code, b = h.eddy({ "--version" })
        assert.equal(0, code)
        assert.equal(a, b)
    end)
end)

describe("help", function()
    it("eddy --help (and -h, help) lists the commands on stdout, exit 0", function()
        for _, flag in ipairs({ "--help", "-h", "help" }) do
            local code, out, err = h.eddy({ flag })
            assert.equal(0, code, flag)
            assert.equal("", err, flag)
            for _, cmd in ipairs({ "run", "check", "broker", "version" }) do
                assert.truthy(out:find("eddy " .. cmd, 1, true), flag .. ": no 'eddy " .. cmd .. "' in " .. out)
            end
        end
    end)

    it("eddy with no command prints the usage on stderr, exit 2", function()
        local code, out, err = h.eddy({})
        assert.equal(2, code)
        assert.equal("", out)
        assert.truthy(has(err, "eddy run"), err)
    end)

    it("eddy run --help lists its options, exit 0", function()
        for _, flag in ipairs({ "--help", "-h" }) do
            local code, out, err = h.eddy({ "run", flag })
            assert.equal(0, code)
            assert.equal("", err)
            assert.truthy(has(out, "eddy run SCRIPT"), out)
            for _, opt in ipairs({ "--brokers", "--input", "--input-format", "--output", "--dlq",
                "--partitions", "--state-dir", "--app-id", "--guarantee", "-X" }) do
                assert.truthy(out:find("%f[%w%-]" .. opt:gsub("%-", "%%-") .. "%f[^%w%-]"), "no " .. opt .. " in run --help")
            end
            assert.truthy(has(out, "envelope") and has(out, "lines"), out)
        end
    end)

    it("eddy run SCRIPT --help shows the help, without running anything", function()
        local code, out = h.eddy({ "run", "/nonexistent.lua", "--input", "-", "--help" })
        assert.equal(0, code)
        assert.truthy(has(out, "--input"), out)
    end)

    it("eddy check --help describes it, exit 0", function()
        local code, out, err = h.eddy({ "check", "--help" })
        assert.equal(0, code)
        assert.equal("", err)
        assert.truthy(has(out, "eddy check SCRIPT"), out)
        local code2, out2 = h.eddy({ "check", "-h" })
        assert.equal(0, code2)
        assert.equal(out, out2)
    end)

    it("eddy broker --help lists its options and does not start a broker, exit 0", function()
        local code, out, err = h.eddy({ "broker", "--help" })
        assert.equal(0, code)
        assert.equal("", err)
        for _, opt in ipairs({ "--brokers", "--topic", "--bootstrap-file", "bootstrap:" }) do
            assert.truthy(has(out, opt), "no " .. opt .. " in broker --help")
        end
        assert.falsy(out:match("^bootstrap: "), out)
    end)

    it("eddy broker with a bad option is a usage error, exit 2", function()
        local code, _, err = h.eddy({ "broker", "--nope" })
        assert.equal(2, code)
        assert.truthy(has(err, "--nope"), err)
        assert.equal(2, (h.eddy({ "broker", "--brokers", "0" })))
        assert.equal(2, (h.eddy({ "broker", "--topic" })))
    end)
end)

describe("eddy check", function()
    local script = PRE .. [[
local job = eddy.job { name = "topo" }                          -- <job>
local clicks = job:source("clicks", { value = "json" })          -- <src1>
local more = job:source({ "views", "taps" })                     -- <src2>
local all = clicks
   :map(function(k, v) return k, v end)                          -- <map>
   :merge(more)                                                  -- <merge>
local cleaned = all
   :filter(function(k, v) return v ~= nil end)                   -- <filter>
   :filter_not(function(k, v) return false end)                  -- <filter_not>
   :select_key(function(k, v) return k end)                      -- <select_key>
   :peek(function() end)                                         -- <peek>
local a, b = cleaned:branch(                                     -- <branch>
   function(k) return k == "a" end,
   function(k) return true end)
a:flat_map(function(k, v, emit) emit(k, v) end)                  -- <flat_map>
 :to("out-a")                                                    -- <to-a>
b:flat_map_values(function(v, emit) emit(v) end)                 -- <flat_map_values>
 :map_values(function(v) return v end)                           -- <map_values>
 :to("out-b")                                                    -- <to-b>
 :to("out-a")                                                    -- <to-a2>
return job
]]

    local function run_check()
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", script)
        local code, out, err = h.eddy({ "check", sp }, { stdin = '{"payload":"must not be read"}\n' })
        os.execute("rm -rf " .. h.q(dir))
        return code, out, err
    end

    it("exits 0 and writes only to stdout", function()
        local code, out, err = run_check()
        assert.equal(0, code, err)
        assert.equal("", err)
        assert.truthy(#out > 0)
        assert.falsy(has(out, "must not be read"))
    end)

    it("names the job and where it is defined", function()
        local _, out = run_check()
        local first = lines(out)[1]
        assert.truthy(has(first, "topo"), first)
        assert.truthy(has(first, "job.lua:" .. line_of(script, "<job>")), first)
    end)

    it("prints the sources in order", function()
        local _, out = run_check()
        local src = out:match("sources:%s*([^\n]*)")
        assert.truthy(src, out)
        local got = {}
        for t in src:gmatch("[%w%._%-]+") do got[#got + 1] = t end
        assert.same({ "clicks", "views", "taps" }, got)
    end)

    it("prints each sink topic once, in order", function()
        local _, out = run_check()
        local snk = out:match("sinks:%s*([^\n]*)")
        assert.truthy(snk, out)
        local got = {}
        for t in snk:gmatch("[%w%._%-]+") do got[#got + 1] = t end
        assert.same({ "out-a", "out-b" }, got)
    end)

    it("prints every step with the script line that defined it, in definition order", function()
        local _, out = run_check()
        local steps = {}
        for _, l in ipairs(lines(out)) do
            local where = l:match("job%.lua:(%d+)")
            if where and not l:find("^job ") then steps[#steps + 1] = { text = l, line = tonumber(where) } end
        end
        -- { a word (or words) the step's line shows, the marker of its line }
        local want = {
            { "source", "<src1>", "clicks" }, { "source", "<src2>", "views" },
            { "map", "<map>" }, { "merge", "<merge>" }, { "filter", "<filter>" },
            { "filter_not", "<filter_not>" }, { "select_key", "<select_key>" }, { "peek", "<peek>" },
            { "branch", "<branch>" }, { "flat_map", "<flat_map>" }, { "to", "<to-a>", "out-a" },
            { "flat_map_values", "<flat_map_values>" }, { "map_values", "<map_values>" },
            { "to", "<to-b>", "out-b" }, { "to", "<to-a2>", "out-a" },
        }
        local pos = 0
        for _, w in ipairs(want) do
            local n = line_of(script, w[2])
            local found
            for i = pos + 1, #steps do
                local s = steps[i]
                if s.line == n and s.text:find("%f[%w_]" .. w[1] .. "%f[^%w_]")
                    and (not w[3] or has(s.text, w[3])) then
                    found = i
                    break
                end
            end
            assert.truthy(found, ("no step %q at job.lua:%d after step %d in:\n%s"):format(w[1], n, pos, out))
            pos = found
        end
    end)

    it("a valid script that reads no input needs no --input", function()
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", PRE .. 'local job = eddy.job "x"\njob:source("in"):to("out")\nreturn job\n')
        local code, out = h.eddy({ "check", sp })
        os.execute("rm -rf " .. h.q(dir))
        assert.equal(0, code)
        assert.truthy(has(out, "in") and has(out, "out"))
    end)

    it("takes exactly one script (exit 2 otherwise)", function()
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", PRE .. 'local job = eddy.job "x"\njob:source("in"):to("out")\nreturn job\n')
        local code = h.eddy({ "check", sp, sp })
        os.execute("rm -rf " .. h.q(dir))
        assert.equal(2, code)
        assert.equal(2, (h.eddy({ "check" })))
    end)
end)
