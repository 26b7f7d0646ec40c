-- router.lua: CloudEvents routed by their ce_type header, payloads untouched.
local testing = require "eddy.testing"

local function event(ce_type)
    return { ce_type = ce_type, ce_id = "id-1", ["content-type"] = "application/json" }
end

describe("router", function()
    local d
    before_each(function() d = testing.driver("router.lua") end)
    after_each(function() d:close() end)

    it("routes each domain to its topic, bytes and headers unchanged", function()
        local order = '{"order_id":"ord-1","total":92.0}'
        d:pipe("shop-events", "ord-1", order, nil, event "com.example.shop.order.placed")
        d:pipe("shop-events", "ord-1", "{}", nil, event "com.example.shop.shipment.dispatched")
        local r = d:read("orders")
        assert.same({ "ord-1", order }, { r.key, r.value })
        assert.equal("com.example.shop.order.placed", r.headers.ce_type)
        assert.equal(1, #d:read_all("shipments"))
        assert.same({}, d:read_all("payments"))
    end)

    it("also alerts on failed payments", function()
        d:pipe("shop-events", "ord-2", "{}", nil, event "com.example.shop.payment.captured")
        d:pipe("shop-events", "ord-3", "{}", nil, event "com.example.shop.payment.failed")
        assert.equal(2, #d:read_all("payments"))
        local alerts = d:read_all("payment-alerts")
        assert.equal(1, #alerts)
        assert.equal("ord-3", alerts[1].key)
    end)

    it("sends anything else to the unrouted topic", function()
        d:pipe("shop-events", "x", "{}", nil, event "com.example.crm.lead.created")
        d:pipe("shop-events", "y", "{}")                          -- no ce_type header
        assert.equal(2, #d:read_all("shop-events-unrouted"))
    end)
end)
