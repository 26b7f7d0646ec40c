-- spec/picture_spec.lua: `eddy check --dot` and `--mermaid`: the topology as a
-- picture, sub-topologies, topics and stores included.
local h = require "helper"

describe("eddy check --dot / --mermaid", function()
    it("draws steps with their lines, a cluster per sub-topology, topics and stores", function()
        local code, out, err = h.eddy({ "check", h.ROOT .. "/scripts/wordcount.lua", "--dot" })
        assert.are.equal(0, code, err)
        assert.truthy(out:match('^digraph "wordcount" {'), out)
        assert.truthy(out:find('subgraph cluster_0 { label="sub-topology 0";', 1, true), out)
        assert.truthy(out:find('subgraph cluster_1 { label="sub-topology 1";', 1, true), out)
        assert.truthy(out:find('label="count [counts]\\nscripts/wordcount.lua:28"', 1, true)
            or out:find('count [counts]', 1, true), out)
        assert.truthy(out:find('"topic:text-lines" -> n1;', 1, true), out)
        assert.truthy(out:find('-> "topic:word-counts";', 1, true), out)
        assert.truthy(out:find('"store:counts" [shape=cylinder', 1, true), out)
        assert.truthy(out:match("}\n?$"), out)
        -- every edge joins declared nodes
        for a, b in out:gmatch("n(%d+) %-> n(%d+);") do
            assert.truthy(out:find("n" .. a .. " [label=", 1, true) and out:find("n" .. b .. " [label=", 1, true))
        end
    end)

    it("draws the same as a Mermaid flowchart", function()
        local code, out, err = h.eddy({ "check", h.ROOT .. "/scripts/sensor_alerts.lua", "--mermaid" })
        assert.are.equal(0, code, err)
        assert.truthy(out:match("^flowchart LR"), out)
        assert.truthy(out:find('subgraph s0["sub-topology 0"]', 1, true), out)
        assert.truthy(out:find("aggregate tumbling [minute-temps]", 1, true), out)
        assert.truthy(out:find('st_minute_temps[("store minute-temps")]', 1, true), out)
        assert.truthy(out:find("n1 --> n2", 1, true), out)
    end)
end)
