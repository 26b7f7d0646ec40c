-- sensor_alerts.lua: per-minute averages (emit final) and silent-sensor alerts from timers.
local testing = require "eddy.testing"

local M = 1710237600000            -- a minute boundary
local S = 1000

local function reading(sensor, temp) return { sensor = sensor, site = "dock-b", temp_c = temp } end

describe("sensor_alerts", function()
    local d
    before_each(function() d = testing.driver("sensor_alerts.lua", { value = "json" }) end)
    after_each(function() d:close() end)

    it("averages each sensor's minute once the minute and its grace are over", function()
        d:pipe("sensor-readings", { { "th-04", reading("th-04", 12.0), M },
                                    { "th-04", reading("th-04", 13.0), M + 30 * S } })
        d:pipe("sensor-readings", "th-04", reading("th-04", 14.0), M + 65 * S)
        assert.same({}, d:read_all("sensor-averages"))           -- within the 10 s grace
        d:pipe("sensor-readings", "th-04", reading("th-04", 14.0), M + 70 * S)
        assert.same({ sensor = "th-04", minute = M, avg_c = 12.5, readings = 2 },
                    d:read("sensor-averages").value)
    end)

    it("alerts when a sensor has been silent for 5 minutes, and when it is back", function()
        d:pipe("sensor-readings", "th-04", reading("th-04", 12.0), M)
        d:pipe("sensor-readings", "th-06", reading("th-06", 18.0), M + 200 * S)
        assert.same({}, d:read_all("sensor-alerts"))
        d:pipe("sensor-readings", "th-06", reading("th-06", 18.0), M + 400 * S)   -- stream time passes M + 5 min
        assert.same({ sensor = "th-04", site = "dock-b", status = "silent", last_seen = M, at = M + 300 * S },
                    d:read("sensor-alerts").value)
        d:pipe("sensor-readings", "th-04", reading("th-04", 12.5), M + 430 * S)
        assert.same({ sensor = "th-04", site = "dock-b", status = "back", last_seen = M, at = M + 430 * S,
                      silent_s = 430 }, d:read("sensor-alerts").value)
        assert.same({ last = M + 430 * S, site = "dock-b", alerted = false }, d:store("last-seen")["th-04"])
    end)
end)
