-- access_log.lua: combined-format log lines -> JSON requests keyed by client.
local testing = require "eddy.testing"

local LINE = '203.0.113.7 - alice [12/Mar/2024:09:15:02 +0000] "GET /cart?id=9 HTTP/1.1" 200 5120 '
    .. '"https://shop.example.com/" "Mozilla/5.0 (X11; Linux x86_64)"'

describe("access_log", function()
    local d
    before_each(function() d = testing.driver("access_log.lua", { value = "json" }) end)
    after_each(function() d:close() end)

    it("parses a line, keyed by client, timestamped with the log's time", function()
        d:pipe("access-logs", nil, LINE)
        local r = d:read("http-requests")
        assert.equal("203.0.113.7", r.key)
        assert.equal(1710234902000, r.ts)
        assert.same({ client = "203.0.113.7", user = "alice", method = "GET", path = "/cart",
                      query = "id=9", protocol = "HTTP/1.1", status = 200, bytes = 5120,
                      referrer = "https://shop.example.com/", user_agent = "Mozilla/5.0 (X11; Linux x86_64)",
                      ts = 1710234902000 }, r.value)
    end)

    it("drops health checks", function()
        d:pipe("access-logs", nil, (LINE:gsub("/cart%?id=9", "/healthz")))
        assert.is_nil(d:read("http-requests"))
    end)

    it("dead-letters a line that does not parse, with the reason", function()
        d:pipe("access-logs", nil, "\22\3\1 garbage")
        assert.is_nil(d:read("http-requests"))
        local dead = d:dlq()
        assert.equal(1, #dead)
        assert.equal("not a combined-format log line", dead[1].error:match("not a combined%-format log line"))
    end)
end)
