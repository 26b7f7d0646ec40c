-- router.lua: split one topic of shop events into a topic per domain.
--
-- Input (topic shop-events): events in the CloudEvents Kafka "binary" format:
-- the payload is the event's JSON data, the metadata is in headers, e.g.
--   key: ord-10400   headers: ce_type = com.example.shop.payment.failed, ce_id = ..., ...
-- Output: each event, unchanged (key, value and headers), in the topic of its
-- domain: orders, payments or shipments. Failed payments also go to
-- payment-alerts. Anything else (other domains, events without a ce_type
-- header) goes to shop-events-unrouted, so nothing is dropped on the floor.
--
-- The router never decodes the payload ("bytes" serde): it reads the type from
-- the headers and forwards the record's bytes as they are.
--
-- Try it (--partitions 3: records without a partition are spread by key hash,
-- like a Kafka producer would):
--   build/eddy run scripts/router.lua --input scripts/data/shop_events.jsonl --partitions 3
local eddy = require "eddy"

local job = eddy.job { name = "router" }

-- "com.example.shop.payment.failed" -> "payment", "failed"
local function event_type(rec)
    local ce_type = rec.headers.ce_type
    if not ce_type then return nil end
    return ce_type:match("^com%.example%.shop%.(%w+)%.([%w_]+)$")
end

-- A branch predicate that matches one domain.
local function domain(name)
    return function(_, _, rec) return event_type(rec) == name end
end

local function everything_else() return true end

-- branch: the first matching predicate wins; a record matching none would be
-- dropped, hence the catch-all at the end.
local orders, payments, shipments, unrouted = job:source("shop-events", { value = "bytes" })
    :branch(domain("order"), domain("payment"), domain("shipment"), everything_else)

orders:to("orders", { value = "bytes" })
shipments:to("shipments", { value = "bytes" })
unrouted:to("shop-events-unrouted", { value = "bytes" })

-- to() returns its stream, so a stream can feed more than one sink.
payments:to("payments", { value = "bytes" })
    :filter(function(_, _, rec)
        local _, action = event_type(rec)
        return action == "failed"
    end)
    :to("payment-alerts", { value = "bytes" })

return job
