-- sessions.lua: click sessionization. A user's session is a run of clicks with
-- no pause longer than 30 minutes (session windows, Kafka Streams'
-- SessionWindows.ofInactivityGapAndGrace(30 min, 5 min)); for each session, one
-- summary once it is over.
--
-- Input (topic clicks), keyed by user id, timestamped with the click's time:
--   key "u-1042"  {"page":"/products/scale","user":"u-1042"}
-- Output (topic user-sessions), keyed by user, one record per finished session
-- (emit = "final": when stream time has passed its last click + 30 min + grace),
-- timestamped by the implementation (Kafka Streams: the session's end):
--   {"user":"u-1042","start":1710234065132,"stop":1710235505371,"minutes":24.0,
--    "clicks":7,"pages":5,"entry":"/","exit":"/checkout"}
--   start, stop: the first and last click (rec.window), clicks: every click,
--   pages: distinct pages, entry and exit: the first and last page viewed.
--
-- A late click (its session, merged, would end more than gap + grace = 35 min
-- before the newest click seen: already closed) is dropped and counted
-- (eddy_late_records_total); a click
-- without a user (null key) is skipped; a payload that is not JSON goes to the
-- dead-letter queue. Sessions still open when the input ends are not emitted:
-- nothing has closed them yet (run the job on, or add later clicks).
--
-- Try it:
--   build/eddy run scripts/sessions.lua --input scripts/data/clicks_sessions.jsonl
local eddy = require "eddy"

local job = eddy.job { name = "sessions" }

-- One click as a partial session summary. Summaries combine with `merge`,
-- which is associative and commutative, so it serves both to add a click to a
-- session and to merge two sessions that a late click has bridged (as Kafka
-- Streams' session reduce uses its reducer to merge sessions).
local function click(page, ts)
    return { clicks = 1, pages = { [page] = true }, first = ts, entry = page, last = ts, exit = page }
end

local function merge(a, b)
    local pages = {}
    for p in pairs(a.pages) do pages[p] = true end
    for p in pairs(b.pages) do pages[p] = true end
    local s = { clicks = a.clicks + b.clicks, pages = pages }
    if b.first < a.first then s.first, s.entry = b.first, b.entry else s.first, s.entry = a.first, a.entry end
    if b.last > a.last then s.last, s.exit = b.last, b.exit else s.last, s.exit = a.last, a.exit end
    return s
end

job:source("clicks", { value = "json" })
   :map_values(function(c, _, rec) return click(c.page, rec.ts) end)
   :group_by_key()
   :window(eddy.session { gap = "30m", grace = "5m" })
   :reduce(merge, { store = "click-sessions", emit = "final" })
   :to_stream()
   :map_values(function(s, user, rec)
      local npages = 0
      for _ in pairs(s.pages) do npages = npages + 1 end
      local w = rec.window
      return { user = user, start = w.start, stop = w.stop,
               minutes = math.floor((w.stop - w.start) / 6000 + 0.5) / 10,
               clicks = s.clicks, pages = npages, entry = s.entry, exit = s.exit }
   end)
   :to("user-sessions", { value = "json" })

return job
