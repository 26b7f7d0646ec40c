-- sessions.lua: one summary per user session (gap 30 min, grace 5 min), once it is over.
local testing = require "eddy.testing"

local T = 1710230400000            -- 2024-03-12 08:00 UTC
local MIN = 60000

local function click(page) return { page = page } end

describe("sessions", function()
    local d
    before_each(function() d = testing.driver("sessions.lua", { value = "json" }) end)
    after_each(function() d:close() end)

    it("summarises a session once stream time has passed its end + gap + grace", function()
        d:pipe("clicks", "u1", click "/", T)
        d:pipe("clicks", "u1", click "/products/scale", T + 4 * MIN)
        d:pipe("clicks", "u1", click "/cart", T + 10 * MIN)
        assert.same({}, d:read_all("user-sessions"))            -- still open
        d:pipe("clicks", "u2", click "/", T + 46 * MIN)          -- past 10 + 30 + 5 minutes
        local r = d:read("user-sessions")
        assert.equal("u1", r.key)
        assert.same({ user = "u1", start = T, stop = T + 10 * MIN, minutes = 10, clicks = 3,
                      pages = 3, entry = "/", exit = "/cart" }, r.value)
        assert.is_nil(d:read("user-sessions"))
    end)

    it("keeps a user's clicks less than 30 minutes apart in one session", function()
        d:pipe("clicks", { { "u1", click "/", T }, { "u1", click "/a", T + 25 * MIN },
                           { "u1", click "/", T + 50 * MIN } })
        d:pipe("clicks", "u2", click "/", T + 2 * 60 * MIN)
        local s = d:read("user-sessions").value
        assert.same({ 3, 2, 50 }, { s.clicks, s.pages, s.minutes })
    end)

    it("drops a click whose session has already closed", function()
        d:pipe("clicks", { { "u1", click "/", T }, { "u2", click "/", T + 60 * MIN } })
        assert.equal(1, #d:read_all("user-sessions"))
        d:pipe("clicks", "u1", click "/late", T + 5 * MIN)       -- late: its session ended at T
        d:pipe("clicks", "u2", click "/", T + 3 * 60 * MIN)
        local out = d:read_all("user-sessions")
        assert.equal(1, #out)
        assert.equal("u2", out[1].key)
    end)
end)
