-- ad_clicks.lua: did anyone click the ad? Impressions joined with their clicks
-- within 10 minutes (a windowed stream-stream left join), one outcome per
-- impression, and a click-through rate per ad.
--
-- Input, two topics, both keyed by impression id (the ad server and the click
-- tracker both key by it, so the topics are co-partitioned: same key, same
-- partition count), timestamped by the "ts" field of the event (ms):
--   ad-impressions  one record per ad shown
--                   {"impression_id":"imp-0001","ad":"ad-spring-sale","user":"u-104",
--                    "placement":"home-top","ts":1710234003000}
--   ad-clicks       one record per click on a shown ad (the tracker may send a click
--                   twice when its first send timed out)
--                   {"impression_id":"imp-0001","click_id":"clk-0001","ts":1710234045000}
-- Output:
--   ad-outcomes  one record per impression, keyed by impression id, with the
--                impression's timestamp, or the click's for a clicked one:
--                clicked: the first click within 10 minutes after the impression
--     {"impression_id":"imp-0001","ad":"ad-spring-sale","user":"u-104","placement":"home-top",
--      "impression_ts":1710234003000,"clicked":true,"click_id":"clk-0001","latency_ms":42000}
--                not clicked: no click within 10 minutes; emitted once the window and
--                its grace (1 minute for late clicks) are over, never before
--     {"impression_id":"imp-0002",...,"clicked":false,"click_id":null,"latency_ms":null}
--   ad-ctr       per ad, every time an impression's outcome is known:
--     {"ad":"ad-spring-sale","impressions":12,"clicks":3,"ctr":0.25}
--
-- How it works. The left join keeps every impression and every click of the
-- last before + after + grace = 11 minutes in LMDB (store family
-- "impression-clicks", logged to ad-clicks-impression-clicks-changelog). A click
-- joins each impression with the same id that came at most 10 minutes before it
-- (before = 0: a click never counts for an impression that came after it). An
-- impression nobody clicked waits in the join's store until stream time (the
-- newest event time seen in its partition) is past its ts + 10 min + 1 min grace,
-- then comes out with a nil click: Kafka Streams' left join without spurious
-- "not clicked" results. A click 12 minutes after its impression joins nothing;
-- a click with no impression (from a lost impression) joins nothing either (a
-- left join: only impressions produce results).
-- The join emits one result per (impression, click) pair, so a duplicate click
-- gives a second result; the "first-outcome" processor keeps the first outcome
-- per impression and drops the others (it remembers an impression id for an hour
-- of stream time, far longer than the join can produce results for it).
-- Impressions of the last 11 minutes of a partition wait for its later records:
-- in Kafka mode they come out as new records arrive; a file run ends with them
-- pending (with --partitions 4 the sample ends with 13 of 100 pending).
-- A record that is not JSON, or has no numeric "ts", goes to the dead-letter queue.
--
-- Try it:
--   build/eddy run scripts/ad_clicks.lua --input scripts/data/ad_events.jsonl --partitions 4
local eddy = require "eddy"

local job = eddy.job { name = "ad-clicks" }

local WINDOW = eddy.join_window { before = 0, after = "10m", grace = "1m" }
local REMEMBER = 60 * 60 * 1000     -- ms of stream time an impression's outcome is remembered

local function event_time(_, v) return v.ts end

local impressions = job:source("ad-impressions", { value = "json", timestamp = event_time })
local clicks = job:source("ad-clicks", { value = "json", timestamp = event_time })

local outcomes = impressions
   :left_join(clicks, WINDOW, function(imp, click)
      return {
         impression_id = imp.impression_id,
         ad = imp.ad,
         user = imp.user,
         placement = imp.placement,
         impression_ts = imp.ts,
         clicked = click ~= nil,
         click_id = click and click.click_id or eddy.null,
         latency_ms = click and click.ts - imp.ts or eddy.null,
      }
   end, { name = "impression-clicks" })
   -- the first outcome per impression; a duplicate click's second result is dropped
   :process {
      name = "first-outcome",
      stores = { "decided" },
      process = function(ctx, id, outcome)
         local decided = ctx:store("decided")
         if decided:get(id) ~= nil then return end
         decided:put(id, outcome.clicked)
         ctx:timer(id, outcome.impression_ts + REMEMBER)
         ctx:forward(id, outcome)
      end,
      on_timer = function(ctx, id) ctx:store("decided"):delete(id) end,
   }

outcomes:to("ad-outcomes", { value = "json" })

outcomes
   :group_by(function(_, o) return o.ad end, { name = "ad-ctr" })
   :aggregate(function() return { impressions = 0, clicks = 0 } end,
              function(acc, o)
                 acc.impressions = acc.impressions + 1
                 if o.clicked then acc.clicks = acc.clicks + 1 end
                 return acc
              end,
              { store = "ad-ctr" })
   :to_stream()
   :map_values(function(acc, ad)
      return { ad = ad, impressions = acc.impressions, clicks = acc.clicks,
               ctr = acc.clicks / acc.impressions }
   end)
   :to("ad-ctr", { value = "json" })

return job
