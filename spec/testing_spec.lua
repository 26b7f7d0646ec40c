-- spec/testing_spec.lua: eddy.testing's driver against the real engine (file mode,
-- a temporary state dir): rounds of pipe/read continue one run's state.
local testing = require "eddy.testing"

local T0 = 1700000000000

local STATELESS = [[
local eddy = require "eddy"
local job = eddy.job { name = "upper" }
job:source("words"):map_values(function(v) return v:upper() end):to("loud")
return job
]]

local COUNT = [[
local eddy = require "eddy"
local job = eddy.job { name = "counter" }
job:source("clicks")
   :group_by_key()
   :count { store = "counts" }
   :to_stream()
   :map_values(tostring)
   :to("click-counts")
return job
]]

local WINDOWED = [[
local eddy = require "eddy"
local job = eddy.job { name = "per-minute" }
job:source("clicks")
   :group_by_key()
   :window(eddy.tumbling { size = "1m" })
   :count { store = "minute-counts", emit = "final" }
   :to_stream()
   :map_values(function(n, k, rec) return { n = n, start = rec.window.start } end)
   :to("per-minute", { value = "json" })
return job
]]

local JSON_JOB = [[
local eddy = require "eddy"
local job = eddy.job { name = "orders" }
job:source("orders", { value = "json" })
   :filter(function(k, o) return o.total > 10 end)
   :map_values(function(o) return { id = o.id, total = o.total, big = o.total > 100 } end)
   :to("big-orders", { value = "json" })
return job
]]

local FAILING = [[
local eddy = require "eddy"
local job = eddy.job { name = "strict", on_error = "fail" }
job:source("in")
   :map_values(function(v)
      if v == "boom" then error("cannot take " .. v) end
      return v
   end)
   :to("out")
return job
]]

local TICKER = [[
local eddy = require "eddy"
local job = eddy.job { name = "ticker" }
job:source("in")
   :process {
      init = function(ctx)
         ctx:every("10s", function(ctx, now) ctx:forward("tick", "tick") end)
      end,
      process = function(ctx, k, v) ctx:forward(k, v) end,
   }
   :to("out")
return job
]]

local function keys_values(records)
    local out = {}
    for i, r in ipairs(records) do out[i] = { r.key, r.value } end
    return out
end

describe("eddy.testing driver", function()
    local d
    after_each(function()
        if d then d:close() end
        d = nil
    end)

    it("runs a stateless job: read gives records one at a time, then nil", function()
        d = testing.driver(STATELESS)
        d:pipe("words", "k1", "hello", T0)
        d:pipe("words", "k2", "world", T0 + 1, { source = "spec" })
        local r = d:read("loud")
        assert.same({ "k1", "HELLO", T0 }, { r.key, r.value, r.ts })
        r = d:read("loud")
        assert.same({ "k2", "WORLD", T0 + 1 }, { r.key, r.value, r.ts })
        assert.equal("spec", r.headers.source)
        assert.is_nil(d:read("loud"))
        assert.same({}, d:read_all("loud"))
        assert.same({}, d:read_all("no-such-topic"))
    end)

    it("pipes a list, with the job's first source for a nil topic", function()
        d = testing.driver(STATELESS)
        d:pipe(nil, { { "a", "x", T0 }, { "b", "y", T0 + 1 }, { key = "c", value = "z", ts = T0 + 2 } })
        assert.same({ { "a", "X" }, { "b", "Y" }, { "c", "Z" } }, keys_values(d:read_all("loud")))
    end)

    it("encodes tables as JSON and decodes JSON outputs on request", function()
        d = testing.driver(JSON_JOB, { value = "json" })
        d:pipe("orders", "o1", { id = "o1", total = 5 }, T0)
        d:pipe("orders", "o2", { id = "o2", total = 250 }, T0)
        d:pipe("orders", "o3", { id = "o3", total = 20 }, T0)
        local out = d:read_all("big-orders")
        assert.same({ { "o2", { id = "o2", total = 250, big = true } },
                      { "o3", { id = "o3", total = 20, big = false } } }, keys_values(out))
    end)

    it("continues counts over several pipe/read rounds, as one run would", function()
        d = testing.driver(COUNT)
        d:pipe("clicks", { { "alice", "/", T0 }, { "bob", "/", T0 + 1 }, { "alice", "/a", T0 + 2 } })
        assert.same({ { "alice", "1" }, { "bob", "1" }, { "alice", "2" } }, keys_values(d:read_all("click-counts")))
        d:pipe("clicks", "alice", "/b", T0 + 3)
        assert.same({ { "alice", "3" } }, keys_values(d:read_all("click-counts")))
        d:pipe("clicks", "bob", "/c", T0 + 4)
        local r = d:read("click-counts")
        assert.same({ "bob", "2" }, { r.key, r.value })
        assert.is_nil(d:read("click-counts"))
        assert.same({ alice = 3, bob = 2 }, d:store("counts"))
    end)

    it("closes windows as stream time passes them, over rounds", function()
        d = testing.driver(WINDOWED, { value = "json" })
        local m = 60000
        d:pipe("clicks", { { "u1", "a", T0 }, { "u1", "b", T0 + 1000 }, { "u2", "c", T0 + 2000 } })
        assert.same({}, d:read_all("per-minute"))                 -- the minute is still open
        d:pipe("clicks", "u1", "d", T0 + m + 5)                   -- stream time passes its end
        local out = d:read_all("per-minute")
        local start = T0 - T0 % m
        assert.same({ { "u1", { n = 2, start = start } }, { "u2", { n = 1, start = start } } }, keys_values(out))
        d:pipe("clicks", "u1", "late", T0 + 3000)                 -- its window has closed
        d:pipe("clicks", "u1", "e", T0 + 2 * m + 5)
        assert.same({ { "u1", { n = 1, start = start + m } } }, keys_values(d:read_all("per-minute")))
    end)

    it("collects dead letters with the eddy.* headers", function()
        d = testing.driver(JSON_JOB)
        d:pipe("orders", "o1", "not json", T0)
        d:pipe("orders", "o2", { id = "o2", total = 50 }, T0)
        local dead = d:dlq()
        assert.equal(1, #dead)
        assert.equal("o1", dead[1].key)
        assert.equal("not json", dead[1].value)
        assert.equal("deserialize", dead[1].stage)
        assert.truthy(dead[1].error:find("JSON"))
        assert.equal("orders", dead[1].headers["eddy.topic"])
        assert.equal(1, #d:read_all("big-orders"))
        assert.same({}, d:dlq())                                  -- each dead letter once
    end)

    it("raises a failing job's error with its script line", function()
        d = testing.driver(FAILING)
        d:pipe("in", "k", "fine", T0)
        d:pipe("in", "k", "boom", T0 + 1)
        local ok, err = pcall(d.read_all, d, "out")
        assert.is_false(ok)
        assert.truthy(err:find("job.lua:5: cannot take boom", 1, true), err)
    end)

    it("raises a handler's error, unless dead letters are expected (dlq = true)", function()
        local script = FAILING:gsub('on_error = "fail"', 'on_error = "dlq"')
        d = testing.driver(script)
        d:pipe("in", { { "k", "fine", T0 }, { "k", "boom", T0 + 1 } })
        local ok, err = pcall(d.read_all, d, "out")
        assert.is_false(ok)
        assert.truthy(err:find("the job failed on record in[0]@1 (process): ", 1, true), err)
        assert.truthy(err:find("job.lua:5: cannot take boom", 1, true), err)
        d:close()
        d = testing.driver(script, { dlq = true })
        d:pipe("in", { { "k", "fine", T0 }, { "k", "boom", T0 + 1 } })
        assert.same({ { "k", "fine" } }, keys_values(d:read_all("out")))
        local dead = d:dlq()
        assert.same({ "k", "boom", "process" }, { dead[1].key, dead[1].value, dead[1].stage })
    end)

    it("gives records without a timestamp the driver's clock (start_time)", function()
        d = testing.driver(STATELESS, { start_time = T0 })
        d:pipe("words", "a", "x")
        d:advance_time(5000)
        d:pipe("words", "b", "y")
        local out = d:read_all("loud")
        assert.same({ T0, T0 + 5000 }, { out[1].ts, out[2].ts })
    end)

    it("reloads a new version that keeps the state", function()
        d = testing.driver(COUNT)
        d:pipe("clicks", { { "alice", "/", T0 }, { "alice", "/", T0 + 1 } })
        assert.same({ { "alice", "1" }, { "alice", "2" } }, keys_values(d:read_all("click-counts")))
        d:reload((COUNT:gsub("map_values%(tostring%)", 'map_values(function(n) return "n=" .. n end)')))
        d:pipe("clicks", "alice", "/", T0 + 2)
        assert.same({ { "alice", "n=3" } }, keys_values(d:read_all("click-counts")))
    end)

    it("refuses a new version that does not load, with eddy's message", function()
        d = testing.driver(COUNT)
        local ok, err = pcall(d.reload, d, "local x = \n")
        assert.is_false(ok)
        assert.truthy(err:find("job.lua:2:", 1, true), err)
        d:pipe("clicks", "alice", "/", T0)                        -- the old version runs on
        assert.same({ { "alice", "1" } }, keys_values(d:read_all("click-counts")))
    end)

    it("fires wall-clock schedules when time is advanced", function()
        d = testing.driver(TICKER)
        d:pipe("in", "k", "v", T0)
        assert.same({ { "k", "v" } }, keys_values(d:read_all("out")))
        d:advance_time(25000)
        local ticks = d:read_all("out")
        assert.is_true(#ticks >= 1)
        assert.equal("tick", ticks[1].key)
        assert.same({}, d:read_all("out"))                        -- no time passed since
    end)

    it("reads a store as a table", function()
        d = testing.driver(COUNT)
        d:pipe("clicks", { { "a", "x", T0 }, { "b", "x", T0 }, { "a", "x", T0 } })
        assert.same({ a = 2, b = 1 }, d:store("counts"))
        local entries = d:store_entries("counts")
        assert.equal(2, #entries)
        assert.equal("0_0", entries[1].task)
    end)

    it("runs a script from its path, modules next to it included", function()
        d = testing.driver((os.getenv("EDDY_ROOT") or ".") .. "/scripts/clickstream.lua")
        d:pipe("clicks", "a-1", { event_id = "e1", type = "page_view", anonymous_id = "a-1",
            url = "https://shop.example.com/", user_agent = "Mozilla/5.0 (X11; Linux)",
            timestamp = "2024-03-12T09:15:02.123Z" })
        local r = d:read("clicks-enriched", "json")
        assert.equal("anon:a-1", r.key)
        assert.equal("home", r.value.page)
        assert.equal(1710234902123, r.ts)
    end)

    it("spreads records over partitions", function()
        d = testing.driver(COUNT, { partitions = 4 })
        for i = 1, 20 do d:pipe("clicks", "user" .. i, "x", T0 + i) end
        local parts = {}
        for _, r in ipairs(d:read_all("click-counts")) do parts[r.partition] = true end
        assert.is_true(next(parts, next(parts)) ~= nil)           -- more than one partition
        local n = 0
        for _ in pairs(d:store("counts")) do n = n + 1 end
        assert.equal(20, n)
    end)
end)
