-- orders_enrich.lua: orders left-joined with the customers table.
local testing = require "eddy.testing"

local T = 1710237600000            -- 2024-03-12T10:00:00Z
local M = 60000

local function customer(id, name, tier, country)
    return { customer_id = id, name = name, email = id .. "@example.com", tier = tier, country = country }
end

local function order(id, cust, items)
    local total = 0
    for _, it in ipairs(items) do total = total + it.qty * it.price end
    return { order_id = id, customer_id = cust, channel = "web", items = items, total = total, currency = "EUR" }
end

local GRINDER = { sku = "EG-01", qty = 1, price = 189.0 }
local FILTERS = { sku = "PF-100", qty = 3, price = 6.5 }

-- the directory of this spec (eddy test may run it from anywhere)
local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

describe("orders_enrich", function()
    local d
    before_each(function() d = testing.driver("orders_enrich.lua", { value = "json", partitions = 4 }) end)
    after_each(function() d:close() end)

    it("enriches an order with its customer, keeping the order's key and timestamp", function()
        d:pipe("customers", "c-1001", customer("c-1001", "Ana Souza", "gold", "PT"), T)
        d:pipe("orders", "c-1001", order("ord-1", "c-1001", { GRINDER, FILTERS }), T + M)
        local out = d:read_all("orders-enriched")
        assert.equal(1, #out)
        assert.equal("c-1001", out[1].key)
        assert.equal(T + M, out[1].ts)
        assert.same({
            order_id = "ord-1", customer_id = "c-1001", channel = "web", items = { GRINDER, FILTERS },
            total = 208.5, currency = "EUR", item_count = 4,
            customer = { name = "Ana Souza", tier = "gold", country = "PT" },
            priority = true, region = "EU",
        }, out[1].value)
        assert.same({}, d:read_all("orders-unknown-customer"))
    end)

    it("keeps an order whose customer is unknown (left join), and reports it", function()
        d:pipe("orders", "c-2000", order("ord-2", "c-2000", { FILTERS }), T)
        local out = d:read("orders-enriched")
        assert.equal(testing.null, out.value.customer)
        assert.same({ false, "unknown" }, { out.value.priority, out.value.region })
        local unknown = d:read_all("orders-unknown-customer")
        assert.equal(1, #unknown)
        assert.equal("ord-2", unknown[1].value.order_id)
    end)

    it("a customer update changes the orders after it, not the ones before; alone it emits nothing", function()
        d:pipe("customers", "c-1003", customer("c-1003", "Chloé Martin", "silver", "FR"), T)
        d:pipe("orders", "c-1003", order("ord-3", "c-1003", { FILTERS }), T + M)
        assert.same({ "silver" }, { d:read("orders-enriched").value.customer.tier })
        d:pipe("customers", "c-1003", customer("c-1003", "Chloé Martin", "gold", "FR"), T + 2 * M)
        assert.same({}, d:read_all("orders-enriched"))            -- a table update joins nothing
        d:pipe("orders", "c-1003", order("ord-4", "c-1003", { GRINDER }), T + 3 * M)
        local out = d:read_all("orders-enriched")
        assert.equal(1, #out)
        assert.same({ "ord-4", "gold", true }, { out[1].value.order_id, out[1].value.customer.tier, out[1].value.priority })
    end)

    it("an erased customer (a tombstone) is unknown from then on", function()
        d:pipe("customers", "c-1007", customer("c-1007", "Oliver Smith", "gold", "GB"), T)
        d:pipe("orders", "c-1007", order("ord-5", "c-1007", { FILTERS }), T + M)
        d:pipe("customers", "c-1007", nil, T + 2 * M)
        d:pipe("orders", "c-1007", order("ord-6", "c-1007", { FILTERS }), T + 3 * M)
        local out = d:read_all("orders-enriched")
        assert.same({ "UK", "unknown" }, { out[1].value.region, out[2].value.region })
        assert.equal(testing.null, out[2].value.customer)
        assert.is_nil(d:store("customers")["c-1007"])
    end)

    it("runs the sample data: every order out once, joined with the customer of its time", function()
        local f = assert(io.open(HERE .. "/../data/orders.jsonl"))
        local json = require "cjson"
        local records, table_now, want, want_unknown = {}, {}, {}, {}
        for line in f:lines() do
            local e = json.decode(line)
            local value = e.payload ~= json.null and json.decode(e.payload) or nil
            records[#records + 1] = { topic = e.topic, key = e.key, value = e.payload ~= json.null and e.payload or nil, ts = e.ts }
            if e.topic == "customers" then
                table_now[e.key] = value
            else
                local c = table_now[e.key]
                want[value.order_id] = c and c.tier or "none"
                if not c then want_unknown[#want_unknown + 1] = value.order_id end
            end
        end
        f:close()
        for _, r in ipairs(records) do d:pipe(r.topic, r.key, r.value, r.ts) end
        local got, n = {}, 0
        for _, r in ipairs(d:read_all("orders-enriched")) do
            n = n + 1
            assert.is_nil(got[r.value.order_id], "twice: " .. r.value.order_id)
            got[r.value.order_id] = r.value.customer ~= testing.null and r.value.customer.tier or "none"
        end
        assert.equal(40, n)
        assert.same(want, got)
        local unknown = {}
        for _, r in ipairs(d:read_all("orders-unknown-customer")) do unknown[#unknown + 1] = r.value.order_id end
        table.sort(unknown)
        table.sort(want_unknown)
        assert.same(want_unknown, unknown)
        assert.same({ "ord-20025", "ord-20026", "ord-20039" }, unknown)   -- c-1007 after its erasure,
        -- c-1012 before it signed up, c-1013 never known
        assert.equal(11, (function() local c = 0 for _ in pairs(d:store("customers")) do c = c + 1 end return c end)())
    end)
end)
