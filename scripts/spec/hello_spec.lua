-- hello.lua: English greetings, shouted; the rest filtered; bad JSON dead-lettered.
local testing = require "eddy.testing"

describe("hello", function()
    local d
    before_each(function() d = testing.driver("hello.lua", { value = "json" }) end)
    after_each(function() d:close() end)

    it("shouts English greetings", function()
        d:pipe("greetings", "u1", { lang = "en", text = "hello" })
        d:pipe("greetings", "u2", { lang = "fr", text = "salut" })
        local out = d:read_all("shouts")
        assert.equal(1, #out)
        assert.equal("u1", out[1].key)
        assert.same({ text = "HELLO", len = 5 }, out[1].value)
    end)

    it("dead-letters a value that is not JSON", function()
        d:pipe("greetings", "u3", "not json at all")
        assert.same({}, d:read_all("shouts"))
        local dead = d:dlq()
        assert.equal("u3", dead[1].key)
        assert.equal("deserialize", dead[1].stage)
    end)
end)
