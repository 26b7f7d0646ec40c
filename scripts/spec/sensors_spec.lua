-- sensors.lua: two firmware generations merged into one topic of readings.
local testing = require "eddy.testing"

describe("sensors", function()
    local d
    before_each(function() d = testing.driver("sensors.lua", { value = "json" }) end)
    after_each(function() d:close() end)

    it("converts a legacy CSV reading, timestamped with its own time", function()
        d:pipe("sensors-legacy", "th-03", "th-03,1710237600,71.6,44.0")
        local r = d:read("sensor-readings")
        assert.equal("th-03", r.key)
        assert.equal(1710237600000, r.ts)
        assert.same({ device = "th-03", temp_c = 22, humidity = 44, firmware = "v1" }, r.value)
    end)

    it("splits a batch of new-firmware readings, faults apart", function()
        d:pipe("sensors", "th-11", { device = "th-11", site = "dock-b", readings = {
            { at = 1710237600000, temp_c = 21.4, rh = 41.2 },
            { at = 1710237660000, temp_c = 85.0, rh = 41.0 },      -- DS18B20 power-glitch value
            { at = 1710237720000, temp_c = 21.6, rh = 40.9 },
        } })
        local ok = d:read_all("sensor-readings")
        assert.same({ 1710237600000, 1710237720000 }, { ok[1].ts, ok[2].ts })
        assert.same({ device = "th-11", site = "dock-b", temp_c = 21.4, humidity = 41.2, firmware = "v2" },
                    ok[1].value)
        local faults = d:read_all("sensor-faults")
        assert.equal(1, #faults)
        assert.equal(85, faults[1].value.temp_c)
    end)

    it("dead-letters a legacy line it cannot read", function()
        d = testing.driver("sensors.lua", { dlq = true })     -- the job's errors go to the DLQ
        d:pipe("sensors-legacy", "th-03", "th-03;garbled")
        assert.same({}, d:read_all("sensor-readings"))
        assert.truthy(d:dlq()[1].error:find("not a legacy reading", 1, true))
    end)
end)
