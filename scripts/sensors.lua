-- sensors.lua: normalise readings from two generations of warehouse sensors
-- into one topic, one record per reading.
--
-- Input, two topics:
--   sensors-legacy  old firmware, one CSV reading per record, Fahrenheit:
--                   "th-03,1710237600,71.6,44.0"   (device, unix seconds, °F, % humidity)
--   sensors         new firmware, JSON, a batch of readings per record, Celsius:
--                   {"device":"th-11","site":"dock-b","readings":[{"at":1710237600000,"temp_c":21.4,"rh":41.2}, ...]}
-- Output, keyed by device, each record timestamped with the time of its reading:
--   sensor-readings  {"device":"th-11","site":"dock-b","temp_c":21.4,"humidity":41.2,"firmware":"v2"}
--   sensor-faults    the same, for readings no working sensor can produce: the
--                    DS18B20 chip reports 85.0 °C after a power glitch and
--                    -127 °C when disconnected.
-- A record that cannot be read at all goes to the dead-letter queue (sensors-dlq).
--
-- Try it:
--   build/eddy run scripts/sensors.lua --input scripts/data/sensors.jsonl
local eddy = require "eddy"

local job = eddy.job { name = "sensors" }

local function round1(x) return math.floor(x * 10 + 0.5) / 10 end

-- Old firmware. flat_map's emit(key, value, ts) sets the new record's timestamp.
local legacy = job:source("sensors-legacy")
    :flat_map(function(_, line, emit)
        local device, secs, temp_f, rh = line:match("^([%w%-]+),(%d+),(%-?[%d.]+),([%d.]+)$")
        if not device then error("not a legacy reading: " .. line) end   -- -> DLQ
        emit(device, {
            device = device,
            temp_c = round1((tonumber(temp_f) - 32) * 5 / 9),
            humidity = tonumber(rh),
            firmware = "v1",
        }, tonumber(secs) * 1000)
    end)

-- New firmware: one record in, one record out per reading in the batch.
local current = job:source("sensors", { value = "json" })
    :flat_map(function(_, batch, emit)
        for _, r in ipairs(batch.readings) do
            emit(batch.device, {
                device = batch.device,
                site = batch.site,
                temp_c = r.temp_c,
                humidity = r.rh,
                firmware = "v2",
            }, r.at)
        end
    end)

local function plausible(_, r)
    return r.temp_c > -55 and r.temp_c < 85 and r.humidity >= 0 and r.humidity <= 100
end

local ok, faulty = current:merge(legacy)
    :branch(plausible, function() return true end)

ok:to("sensor-readings", { value = "json" })
faulty:to("sensor-faults", { value = "json" })

return job
