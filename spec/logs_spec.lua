-- spec/logs_spec.lua: log lines (text: level and time first; --log-format json: one
-- JSON object per line) and the progress line (only on a TTY, never with --quiet).
local cjson = require "cjson"
local h = require "helper"

local INPUT = '{"key":"u1","payload":"{\\"lang\\":\\"en\\",\\"text\\":\\"hi\\"}"}\n{"key":"u2","payload":"oops"}\n'

describe("logs", function()
    it("text lines start with the level and the UTC time", function()
        local code, _, err = h.eddy({ "run", h.ROOT .. "/scripts/hello.lua", "--input", "-", "--no-watch",
            "--dlq", "/dev/null" }, { stdin = INPUT })
        assert.are.equal(0, code, err)
        for line in err:gmatch("[^\n]+") do
            assert.truthy(line:match("^%u+ %d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ eddy: "), line)
        end
        assert.is_nil(err:find("\r", 1, true), "no progress line when stderr is not a TTY")
    end)

    it("--log-format json writes one JSON object per line", function()
        local code, _, err = h.eddy({ "run", h.ROOT .. "/scripts/hello.lua", "--input", "-", "--no-watch",
            "--dlq", "/dev/null", "--log-format", "json" }, { stdin = INPUT })
        assert.are.equal(0, code, err)
        local n = 0
        for line in err:gmatch("[^\n]+") do
            local e = cjson.decode(line)
            assert.truthy(e.level == "INFO" or e.level == "WARN" or e.level == "ERROR", line)
            assert.truthy(e.time:match("^%d%d%d%d%-%d%d%-%d%dT"), line)
            assert.is_string(e.msg)
            n = n + 1
        end
        assert.is_true(n >= 2)
        assert.truthy(err:find("1 dead%-lettered"), err)
        local bad = h.eddy({ "run", h.ROOT .. "/scripts/hello.lua", "--input", "-", "--log-format", "xml" },
            { stdin = INPUT })
        assert.are.equal(2, bad)
    end)

    it("shows a progress line on a TTY (script(1) gives it one), none with --quiet", function()
        local dir = h.tmpdir()
        h.write(dir .. "/in.jsonl", INPUT)
        local function run(extra)
            os.execute(("script -qc %s /dev/null > %s 2>&1"):format(h.q(("%s run %s --input %s --output /dev/null --dlq /dev/null --no-watch %s")
                :format(h.EDDY, h.ROOT .. "/scripts/hello.lua", dir .. "/in.jsonl", extra)), h.q(dir .. "/tty")))
            return h.read(dir .. "/tty") or ""
        end
        local tty = run("")
        local quiet = run("--quiet")
        os.execute("rm -rf " .. h.q(dir))
        assert.truthy(tty:find("2 records, %d+/s, 100%% of the input, 1 errors"), tty)
        assert.is_nil(quiet:find("records, ", 1, true), quiet)
    end)
end)
