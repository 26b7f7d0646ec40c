-- spec/gate_spec.lua: what guards a version before and while it runs: job:example{}
-- (run through the real engine on every load: `eddy check`, `eddy run`, a reload) and
-- the watchdog for a handler that never returns.
local h = require "helper"

local function job(body)
    return [[
local eddy = require "eddy"
local job = eddy.job { name = "gate", handler_timeout = 400 }
]] .. body .. "\nreturn job\n"
end

local DOUBLER = [[
job:source("in", { value = "json" })
   :filter(function(k, v) return v.n > 1 end)
   :map_values(function(v) return { n = v.n * 2 } end)
   :to("out", { value = "json" })
]]

describe("job:example{}", function()
    it("a version whose examples pass loads; eddy check runs them", function()
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", job(DOUBLER .. [[
job:example { input = { { "a", { n = 1 } }, { "b", { n = 5 } }, { "c", { n = 2 } } },
              output = { out = { { "b", { n = 10 } }, { "c", { n = 4 } } } } }
]]))
        local code, out, err = h.eddy({ "check", sp })
        os.execute("rm -rf " .. h.q(dir))
        assert.are.equal(0, code, err)
        assert.truthy(out:find("sources: in", 1, true))
    end)

    it("a version whose examples fail is refused with the first difference (check and run)", function()
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", job(DOUBLER .. [[
job:example { input = { { "a", { n = 1 } }, { "b", { n = 5 } } },
              output = { out = { { "b", { n = 11 } } } } }
]]))
        local code, _, err = h.eddy({ "check", sp })
        assert.are.equal(1, code)
        assert.truthy(err:find("refused by its examples", 1, true), err)
        assert.truthy(err:find('topic out, record 1: expected {"b", {"n":11}}', 1, true), err)
        assert.truthy(err:find("job.lua:", 1, true), err)
        local rcode, rout, rerr = h.eddy({ "run", sp, "--input", "-", "--no-watch" },
            { stdin = '{"key":"x","payload":"{\\"n\\":3}"}\n' })
        os.execute("rm -rf " .. h.q(dir))
        assert.are.equal(1, rcode, rerr)
        assert.are.same({}, h.envelopes(rout))
    end)

    it("an example whose record fails names the error; missing and extra outputs are differences", function()
        local dir = h.tmpdir()
        local sp = h.script(dir, "a.lua", job(DOUBLER .. [[
job:example { input = { { "a", "not json" } }, output = { out = {} } }
]]))
        local code, _, err = h.eddy({ "check", sp })
        assert.are.equal(1, code)
        assert.truthy(err:find("a record failed", 1, true), err)
        sp = h.script(dir, "b.lua", job(DOUBLER .. [[
job:example { input = { { "b", { n = 5 } } }, output = { other = { { "b", { n = 10 } } } } }
]]))
        code, _, err = h.eddy({ "check", sp })
        os.execute("rm -rf " .. h.q(dir))
        assert.are.equal(1, code)
        assert.truthy(err:find("topic other, record 1: expected", 1, true) or
            err:find("unexpected output to topic out", 1, true), err)
    end)

    it("a reload whose examples fail is refused; the running version goes on", function()
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", job(DOUBLER))
        local bad = job(DOUBLER:gsub("v.n %* 2", "v.n * 3") .. [[
job:example { input = { { "b", { n = 5 } } }, output = { out = { { "b", { n = 10 } } } } }
]])
        local cmd = ("(echo %s; sleep 0.5; cat %s > %s; sleep 0.8; echo %s; sleep 0.3) | %s run %s --input - --state-dir %s > %s 2> %s")
            :format(h.q('{"key":"k","payload":"{\\"n\\":2}"}'), h.q(h.write(dir .. "/bad.lua", bad)), h.q(sp),
                h.q('{"key":"k","payload":"{\\"n\\":3}"}'), h.q(h.EDDY), h.q(sp), h.q(dir .. "/st"),
                h.q(dir .. "/out"), h.q(dir .. "/err"))
        os.execute(cmd)
        local out, err = h.envelopes(h.read(dir .. "/out")), h.read(dir .. "/err")
        os.execute("rm -rf " .. h.q(dir))
        assert.truthy(err:find("refused", 1, true) and err:find("its examples fail", 1, true), err)
        assert.are.equal(2, #out, err)
        assert.are.equal('{"n":4}', out[1].payload)
        assert.are.equal('{"n":6}', out[2].payload)       -- still the old version (x2)
    end)
end)

describe("the watchdog", function()
    it("stops a job whose handler never returns: exit 1, one FATAL line naming the version, nothing committed", function()
        local dir = h.tmpdir()
        local sp = h.script(dir, "job.lua", job([[
job:source("in"):map_values(function(v)
  if v == "spin" then local i = 0; while true do i = i + 1 end end
  return v
end):to("out")
]]))
        local t0 = os.time()
        local code, out, err = h.eddy({ "run", sp, "--input", "-", "--no-watch" },
            { stdin = '{"payload":"a"}\n{"payload":"spin"}\n{"payload":"b"}\n' })
        os.execute("rm -rf " .. h.q(dir))
        assert.are.equal(1, code, err)
        assert.truthy(err:find("watchdog: FATAL", 1, true), err)
        assert.truthy(err:match("version %x+ has not returned"), err)
        assert.is_true(os.time() - t0 <= 5)
        assert.are.same({}, h.envelopes(out))            -- nothing of that batch was written
    end)
end)
