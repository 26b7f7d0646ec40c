-- clickstream.lua: clean up and enrich a website clickstream.
--
-- Input (topic clicks): JSON events from the browser tracking SDK, keyed by the
-- SDK's anonymous id, e.g.
--   {"event_id":"e-000042","type":"page_view","anonymous_id":"a-7f3c9e","user_id":"u-1042",
--    "url":"https://shop.example.com/products/espresso-grinder?utm_source=newsletter&utm_campaign=spring",
--    "referrer":"https://www.google.com/","user_agent":"Mozilla/5.0 (iPhone; ...)",
--    "timestamp":"2024-03-12T09:15:02.123Z"}
-- Output (topic clicks-enriched): the same event without bots, re-keyed by user
-- (the logged-in user id, else "anon:" .. anonymous id) so that one user's
-- events land in one partition, with the page, campaign and device worked out:
--   {"event_id":"e-000042","type":"page_view","user":"u-1042","logged_in":true,
--    "path":"/products/espresso-grinder","page":"product","product":"espresso-grinder",
--    "source":"newsletter","campaign":"spring","device":"mobile","ts":1710234902123}
-- The record timestamp is the event's own `timestamp` (when the user clicked),
-- not the time it reached Kafka. Events that are not JSON or have no valid
-- timestamp go to the dead-letter queue (topic clickstream-dlq).
--
-- Try it:
--   build/eddy run scripts/clickstream.lua --input scripts/data/clicks.jsonl
local eddy = require "eddy"
local timeutil = require "lib.timeutil"      -- scripts/lib/timeutil.lua

local job = eddy.job { name = "clickstream" }

-- Substrings of user agents that are not people (matched on the lower-cased agent).
local BOTS = { "bot", "crawler", "spider", "headlesschrome", "lighthouse", "curl/", "python-requests" }

local function is_bot(_, ev)
    local ua = type(ev.user_agent) == "string" and ev.user_agent:lower() or ""
    if ua == "" then return true end                   -- real browsers always send one
    for _, pattern in ipairs(BOTS) do
        if ua:find(pattern, 1, true) then return true end
    end
    return false
end

local function device(ua)
    if ua:find("iPad", 1, true) or ua:find("Tablet", 1, true) then return "tablet" end
    if ua:find("Mobile", 1, true) then return "mobile" end
    return "desktop"
end

-- "/products/espresso-grinder" -> "product", "espresso-grinder"
local function page_of(path)
    if path == "/" then return "home" end
    local product = path:match("^/products/([%w%-]+)$")
    if product then return "product", product end
    local section = path:match("^/(%a+)")
    local known = { products = "listing", search = "search", cart = "cart", checkout = "checkout" }
    return known[section] or "other"
end

local function query_param(query, name)
    return query and query:match("[?&]" .. name .. "=([^&#]*)")
end

local function enrich(ev, user, ts)
    local host, path, query = ev.url:match("^https?://([^/]+)(/[^?#]*)(%??[^#]*)")
    path = path or "/"
    local page, product = page_of(path)
    local referrer_host = type(ev.referrer) == "string" and ev.referrer:match("^https?://([^/]+)")
    if referrer_host == host then referrer_host = "internal" end   -- a click within the site
    return {
        event_id = ev.event_id,
        type = ev.type,
        user = user,
        logged_in = ev.user_id ~= nil,
        path = path,
        page = page,
        product = product,
        -- where the visit came from: the utm_source tag, else the referring site
        source = query_param(query, "utm_source") or referrer_host or "direct",
        campaign = query_param(query, "utm_campaign"),
        device = device(ev.user_agent),
        ts = ts,
    }
end

job:source("clicks", {
        value = "json",
        -- event time; an event without a usable timestamp fails here -> DLQ
        timestamp = function(_, ev)
            return timeutil.iso8601(ev.timestamp) or error("no valid timestamp: " .. tostring(ev.timestamp))
        end,
    })
    :filter_not(is_bot)
    -- the JSON null that some SDK versions send for "not logged in" is cjson.null (eddy.null)
    :map(function(_, ev, rec)
        if ev.user_id == eddy.null then ev.user_id = nil end
        local user = ev.user_id or ("anon:" .. ev.anonymous_id)
        return user, enrich(ev, user, rec.ts)        -- rec.ts: the extracted event time
    end)
    :to("clicks-enriched", { value = "json" })

return job
