-- clickstream.lua: drop bots, re-key by user, enrich, event time from the event.
local testing = require "eddy.testing"

local PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) Mobile/15E148"

local function click(t)
    local ev = { event_id = "e-1", type = "page_view", anonymous_id = "a-7f3c9e",
                 url = "https://shop.example.com/", user_agent = PHONE,
                 timestamp = "2024-03-12T09:15:02.123Z" }
    for k, v in pairs(t or {}) do ev[k] = v end
    return ev
end

describe("clickstream", function()
    local d
    before_each(function() d = testing.driver("clickstream.lua", { value = "json" }) end)
    after_each(function() d:close() end)

    it("re-keys by the logged-in user and enriches the event", function()
        d:pipe("clicks", "a-7f3c9e", click {
            user_id = "u-1042",
            url = "https://shop.example.com/products/espresso-grinder?utm_source=newsletter&utm_campaign=spring",
        })
        local r = d:read("clicks-enriched")
        assert.equal("u-1042", r.key)
        assert.equal(1710234902123, r.ts)                      -- the click's own time
        assert.same({ event_id = "e-1", type = "page_view", user = "u-1042", logged_in = true,
                      path = "/products/espresso-grinder", page = "product", product = "espresso-grinder",
                      source = "newsletter", campaign = "spring", device = "mobile", ts = 1710234902123 },
                    r.value)
    end)

    it("keys anonymous visitors by their anonymous id", function()
        d:pipe("clicks", "a-7f3c9e", click { user_id = testing.null, referrer = "https://www.google.com/" })
        local r = d:read("clicks-enriched")
        assert.equal("anon:a-7f3c9e", r.key)
        assert.equal("www.google.com", r.value.source)
    end)

    it("drops bots", function()
        d:pipe("clicks", "a-1", click { user_agent = "Googlebot/2.1 (+http://www.google.com/bot.html)" })
        d:pipe("clicks", "a-2", click { user_agent = "" })
        assert.same({}, d:read_all("clicks-enriched"))
    end)

    it("dead-letters an event without a valid timestamp", function()
        d = testing.driver("clickstream.lua", { dlq = true })  -- the job's errors go to the DLQ
        d:pipe("clicks", "a-1", click { timestamp = "yesterday" })
        assert.is_nil(d:read("clicks-enriched"))
        assert.truthy(d:dlq()[1].error:find("no valid timestamp: yesterday", 1, true))
    end)
end)
