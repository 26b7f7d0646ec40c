-- wordcount.lua: a running count per word, kept in the store "counts".
local testing = require "eddy.testing"

describe("wordcount", function()
    local d
    before_each(function() d = testing.driver("wordcount.lua", { partitions = 2 }) end)
    after_each(function() d:close() end)

    it("counts words, lower-cased, and forwards every new count", function()
        d:pipe("text-lines", nil, "To be, or not to be")
        assert.same({ to = "2", be = "2", ["or"] = "1", ["not"] = "1" }, d:read_map("word-counts"))
    end)

    it("goes on counting from the stored counts", function()
        d:pipe("text-lines", nil, "the cat")
        d:read_all("word-counts")
        d:pipe("text-lines", nil, "the hat")
        assert.same({ the = "2", hat = "1" }, d:read_map("word-counts"))
        assert.same({ the = 2, cat = 1, hat = 1 }, d:store("counts"))
    end)
end)
