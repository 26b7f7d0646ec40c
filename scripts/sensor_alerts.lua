-- sensor_alerts.lua: per-minute temperature averages, and an alert when a
-- sensor goes silent, from one stream of readings.
--
-- Input (topic sensor-readings), keyed by sensor id, timestamped with the time
-- of the reading:
--   key "th-04"  {"sensor":"th-04","site":"dock-b","temp_c":12.43}
-- Output:
--   sensor-averages  one record per sensor and minute, once the minute is over
--                    (tumbling 1 min windows, grace 10 s, emit = "final"):
--                    {"sensor":"th-04","minute":1710237660000,"avg_c":12.51,"readings":3}
--   sensor-alerts    from a processor with a store and an event-time timer per
--                    sensor: when 5 minutes of stream time pass without a reading
--                    {"sensor":"th-04","site":"dock-b","status":"silent","last_seen":...,"at":...}
--                    and when the sensor speaks again
--                    {"sensor":"th-04","site":"dock-b","status":"back","last_seen":...,"at":...,"silent_s":423}
--
-- Time is event time: a reading 2 minutes late misses its minute (dropped and
-- counted in eddy_late_records_total); readings a few seconds out of order still
-- count, within the grace. Timers fire as stream time (the newest reading seen
-- in the partition) passes them, so on a quiet topic an alert waits for the
-- next reading of any sensor in that partition (or set idle_advance).
-- A reading that is not JSON goes to the dead-letter queue.
--
-- Try it:
--   build/eddy run scripts/sensor_alerts.lua --input scripts/data/sensor_readings.jsonl
local eddy = require "eddy"

local job = eddy.job { name = "sensor-alerts" }

local SILENCE = 5 * 60 * 1000       -- ms without a reading before an alert

local readings = job:source("sensor-readings", { value = "json" })

-- 1. Per-minute averages: sum and count per window, the average once it closes.
readings
   :group_by_key()
   :window(eddy.tumbling { size = "1m", grace = "10s" })
   :aggregate(function() return { sum = 0, count = 0 } end,
              function(acc, r)
                 acc.sum = acc.sum + r.temp_c
                 acc.count = acc.count + 1
                 return acc
              end,
              { store = "minute-temps", emit = "final" })
   :to_stream()
   :map_values(function(acc, sensor, rec)
      return { sensor = sensor, minute = rec.window.start,
               avg_c = math.floor(acc.sum / acc.count * 100 + 0.5) / 100, readings = acc.count }
   end)
   :to("sensor-averages", { value = "json" })

-- 2. Silence alerts: remember each sensor's last reading; a timer 5 min after
-- it. Every reading sets a new timer, so when one fires the store says
-- whether the sensor has been heard from since (then it is not silent).
readings
   :process {
      stores = { "last-seen" },
      process = function(ctx, sensor, r, rec)
         local seen = ctx:store("last-seen")
         local s = seen:get(sensor)
         if s and rec.ts <= s.last then return end        -- older than what we know
         if s and s.alerted then
            ctx:forward(sensor, { sensor = sensor, site = r.site, status = "back",
               last_seen = s.last, at = rec.ts, silent_s = math.floor((rec.ts - s.last) / 1000) })
         end
         seen:put(sensor, { last = rec.ts, site = r.site, alerted = false })
         ctx:timer(sensor, rec.ts + SILENCE)
      end,
      on_timer = function(ctx, sensor, ts)
         local seen = ctx:store("last-seen")
         local s = seen:get(sensor)
         if s and not s.alerted and s.last + SILENCE <= ts then
            s.alerted = true
            seen:put(sensor, s)
            ctx:forward(sensor, { sensor = sensor, site = s.site, status = "silent",
               last_seen = s.last, at = ts }, ts)
         end
      end,
   }
   :to("sensor-alerts", { value = "json" })

return job
