-- orders_enrich.lua: enrich orders with the customer who placed them.
--
-- Input, two topics, both keyed by customer id (the checkout service keys orders by
-- customer so that they are co-partitioned with the customers topic):
--   customers  the CRM's customer records, the latest per key is the truth; a null
--              value (tombstone) is an erasure request: the customer is gone
--              {"customer_id":"c-1001","name":"Ana Souza","email":"ana.souza@example.pt",
--               "tier":"gold","country":"PT","customer_since":"2019-01-01"}
--   orders     orders as they are placed
--              {"order_id":"ord-20001","customer_id":"c-1001","channel":"web",
--               "items":[{"sku":"TP-58","qty":2,"price":34.0}],"total":68.0,"currency":"EUR"}
-- Output:
--   orders-enriched          every order (a left join: an order is never held back
--                            because its customer is unknown), with the customer's
--                            name, tier and country as they were when the order was
--                            processed, and what fulfilment needs from them:
--     {"order_id":"ord-20001","customer_id":"c-1001","channel":"web","items":[...],
--      "total":68.0,"currency":"EUR","item_count":2,
--      "customer":{"name":"Ana Souza","tier":"gold","country":"PT"},
--      "priority":true,"region":"EU"}
--     (an unknown customer: "customer":null, "priority":false, "region":"unknown")
--   orders-unknown-customer  the orders whose customer was not in the table (signed
--                            up after ordering, or erased): for the CRM team
-- The email stays out of the output: fulfilment does not need it.
--
-- The table is the latest customer record per key (LMDB store "customers",
-- restored from its changelog on a new machine); a customer update affects the
-- orders processed after it, never the ones before (an order is not re-emitted).
--
-- Try it:
--   build/eddy run scripts/orders_enrich.lua --input scripts/data/orders.jsonl --partitions 4
local eddy = require "eddy"

local job = eddy.job { name = "orders-enrich" }

local customers = job:table("customers", { value = "json", store = "customers" })

local PRIORITY_TIERS = { gold = true, platinum = true }
local EU = { AT = 1, BE = 1, BG = 1, CY = 1, CZ = 1, DE = 1, DK = 1, EE = 1, ES = 1, FI = 1, FR = 1,
             GR = 1, HR = 1, HU = 1, IE = 1, IT = 1, LT = 1, LU = 1, LV = 1, MT = 1, NL = 1, PL = 1,
             PT = 1, RO = 1, SE = 1, SI = 1, SK = 1 }

local function region(country)
    if country == nil then return "unknown" end
    if EU[country] then return "EU" end
    if country == "GB" then return "UK" end
    if country == "US" or country == "CA" then return "NA" end
    return "ROW"
end

local function enrich(order, customer)
    local count = 0
    for _, item in ipairs(order.items or {}) do count = count + (item.qty or 0) end
    return {
        order_id = order.order_id,
        customer_id = order.customer_id,
        channel = order.channel,
        items = order.items,
        total = order.total,
        currency = order.currency,
        item_count = count,
        customer = customer and { name = customer.name, tier = customer.tier, country = customer.country }
            or eddy.null,
        priority = customer ~= nil and PRIORITY_TIERS[customer.tier] == true,
        region = region(customer and customer.country),
    }
end

local enriched = job:source("orders", { value = "json" })
    :left_join(customers, function(order, customer) return enrich(order, customer) end)

enriched:to("orders-enriched", { value = "json" })

enriched
    :filter(function(_, o) return o.customer == eddy.null end)
    :to("orders-unknown-customer", { value = "json" })

return job
