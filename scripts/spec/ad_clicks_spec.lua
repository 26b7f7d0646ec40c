-- ad_clicks.lua: impressions left-joined with their clicks within 10 minutes,
-- one outcome per impression, click-through rates per ad.
--
-- Expectations are written by hand (small cases, and the named cases of the
-- sample), and for the whole sample and random inputs computed by a small
-- reference below, written from the rules of a Kafka Streams left join
-- (JoinWindows before 0, after 10 min, grace 1 min; the spurious-result fix),
-- not from eddy's code. Everything runs through the real engine (file mode).
local testing = require "eddy.testing"
local cjson = require "cjson"

local T = 1710234000000            -- 2024-03-12T09:00:00Z
local S, M = 1000, 60000
local AFTER, GRACE = 10 * M, 1 * M  -- the job's window: clicks in [impression, impression + 10 min]
local NULL = testing.null

-- the directory of this spec (eddy test may run it from anywhere)
local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local function impression(id, ad, ts)
    return { impression_id = id, ad = ad or "ad-spring-sale", user = "u-101", placement = "home-top", ts = ts }
end
local function click(id, click_id, ts) return { impression_id = id, click_id = click_id, ts = ts } end

local function clicked(id, ad, imp_ts, click_id, latency)
    return { impression_id = id, ad = ad, user = "u-101", placement = "home-top", impression_ts = imp_ts,
             clicked = true, click_id = click_id, latency_ms = latency }
end
local function not_clicked(id, ad, imp_ts)
    return { impression_id = id, ad = ad, user = "u-101", placement = "home-top", impression_ts = imp_ts,
             clicked = false, click_id = NULL, latency_ms = NULL }
end

-- Kafka's murmur2 partitioner (the file mode's default for a record without a
-- partition), to know which partition, and so which stream time, a key has.
local function murmur2_partition(key, n)
    local bit = require "bit"
    local band, bxor, rshift, tobit = bit.band, bit.bxor, bit.rshift, bit.tobit
    local function mul(a, b)
        return tobit(band(a, 0xffff) * b + tobit(rshift(a, 16) * b) * 65536)
    end
    local m = 0x5bd1e995
    local len = #key
    local h = bxor(tobit(0x9747b28c), len)
    local i = 1
    while len - i + 1 >= 4 do
        local b1, b2, b3, b4 = key:byte(i, i + 3)
        local k = mul(tobit(b1 + b2 * 256 + b3 * 65536 + b4 * 16777216), m)
        k = mul(bxor(k, rshift(k, 24)), m)
        h = bxor(mul(h, m), k)
        i = i + 4
    end
    local rem = len - i + 1
    if rem == 3 then h = bxor(h, key:byte(i + 2) * 65536) end
    if rem >= 2 then h = bxor(h, key:byte(i + 1) * 256) end
    if rem >= 1 then h = mul(bxor(h, key:byte(i)), m) end
    h = mul(bxor(h, rshift(h, 13)), m)
    h = bxor(h, rshift(h, 15))
    return band(h, 0x7fffffff) % n
end

--- The reference. records: { topic=, key=, value= (a table, or nil when it is not
--- JSON), n= arrival index } in arrival order. Per partition: stream time is the
--- largest event time seen (records without a usable ts are dead letters and do
--- not count); a record of either side is kept while stream time <= its ts + 11 min
--- (after + grace; a record already older than that is joined but not kept); a click
--- joins the impressions of its id from 10 min before it up to its own time; an
--- impression that found no click waits until stream time > its ts + 10 min + 1 min
--- (checked when a record moves stream time on), or comes out at once when its
--- window has already ended; a click that joins a waiting impression ends its
--- wait. The job keeps the first result per impression.
--- Returns outcomes (id -> { ts=, clicked=, click_id=, latency= }), the number of
--- join results, and the dead letters.
local function reference(records, partitions)
    local RET = AFTER + GRACE
    local parts, outcomes, results, dead = {}, {}, 0, 0
    local function result(imp, c, ts)
        results = results + 1
        if outcomes[imp.impression_id] then return end        -- the job keeps the first
        outcomes[imp.impression_id] = { ts = ts, ad = imp.ad, clicked = c ~= nil,
            click_id = c and c.click_id or nil, latency = c and c.ts - imp.ts or nil }
    end
    for _, r in ipairs(records) do
        local v = r.value
        if type(v) ~= "table" or type(v.ts) ~= "number" then
            dead = dead + 1
        else
            local p = murmur2_partition(r.key, partitions)
            local P = parts[p]
            if not P then
                P = { st = -math.huge, imps = {}, clicks = {}, waiting = {} }
                parts[p] = P
            end
            local ts = v.ts
            if ts > P.st then P.st = ts end
            local st = P.st
            local function keep_live(list)
                local kept = {}
                for _, x in ipairs(list) do if x.v.ts >= st - RET then kept[#kept + 1] = x end end
                return kept
            end
            P.imps, P.clicks = keep_live(P.imps), keep_live(P.clicks)
            local is_imp = r.topic == "ad-impressions"
            if ts >= st - RET then
                table.insert(is_imp and P.imps or P.clicks, { key = r.key, v = v, n = r.n })
            end
            if ts == st then                                     -- stream time moved: close windows
                local still = {}
                for _, w in ipairs(P.waiting) do
                    if w.v.ts + AFTER + GRACE < st then result(w.v, nil, w.v.ts) else still[#still + 1] = w end
                end
                P.waiting = still
            end
            if is_imp then
                local found = {}
                for _, c in ipairs(P.clicks) do
                    if c.key == r.key and c.v.ts >= ts and c.v.ts <= ts + AFTER then found[#found + 1] = c end
                end
                table.sort(found, function(a, b)
                    if a.v.ts ~= b.v.ts then return a.v.ts < b.v.ts end
                    return a.n < b.n
                end)
                for _, c in ipairs(found) do result(v, c.v, math.max(ts, c.v.ts)) end
                if #found == 0 then
                    if ts + AFTER < st then result(v, nil, ts)
                    else P.waiting[#P.waiting + 1] = { key = r.key, v = v } end
                end
            else
                for _, i in ipairs(P.imps) do
                    if i.key == r.key and i.v.ts >= ts - AFTER and i.v.ts <= ts then
                        local still = {}
                        for _, w in ipairs(P.waiting) do
                            if not (w.key == r.key and w.v.ts == i.v.ts) then still[#still + 1] = w end
                        end
                        P.waiting = still
                        result(i.v, v, math.max(ts, i.v.ts))
                    end
                end
            end
        end
    end
    return outcomes, results, dead
end

-- What the job wrote: outcomes by impression id (each at most once), and the last
-- click-through figures per ad with the number of updates.
local function collect(d)
    local outcomes, n = {}, 0
    for _, r in ipairs(d:read_all("ad-outcomes")) do
        local v = r.value
        assert.equal(r.key, v.impression_id)
        assert.is_nil(outcomes[r.key], "two outcomes for " .. r.key)
        outcomes[r.key] = { ts = r.ts, ad = v.ad, clicked = v.clicked,
            click_id = v.click_id ~= NULL and v.click_id or nil,
            latency = v.latency_ms ~= NULL and v.latency_ms or nil }
        n = n + 1
    end
    local ctr, updates = {}, 0
    for _, r in ipairs(d:read_all("ad-ctr")) do
        ctr[r.key] = r.value
        updates = updates + 1
    end
    return outcomes, n, ctr, updates
end

-- Per ad, { impressions, clicks } over the outcomes.
local function ctr_of(outcomes)
    local t = {}
    for _, o in pairs(outcomes) do
        local a = t[o.ad] or { impressions = 0, clicks = 0 }
        a.impressions = a.impressions + 1
        if o.clicked then a.clicks = a.clicks + 1 end
        t[o.ad] = a
    end
    return t
end

local function assert_ctr(want, got)
    for ad, w in pairs(want) do
        local g = got[ad]
        assert.is_table(g, "no click-through figures for " .. ad)
        assert.same({ ad, w.impressions, w.clicks }, { g.ad, g.impressions, g.clicks })
        assert.near(w.clicks / w.impressions, g.ctr, 1e-12)
    end
    for ad in pairs(got) do assert.is_table(want[ad], "unexpected figures for " .. ad) end
end

local function count(t)
    local n = 0
    for _ in pairs(t) do n = n + 1 end
    return n
end

local function read_sample()
    local f = assert(io.open(HERE .. "/../data/ad_events.jsonl"))
    local records = {}
    for line in f:lines() do
        local e = cjson.decode(line)
        local ok, v = pcall(cjson.decode, e.payload)
        records[#records + 1] = { topic = e.topic, key = e.key, payload = e.payload, ts = e.ts,
            value = ok and v or nil, n = #records + 1 }
    end
    f:close()
    return records
end

describe("ad_clicks", function()
    local d
    after_each(function() if d then d:close() end d = nil end)

    describe("by hand", function()
        before_each(function() d = testing.driver("ad_clicks.lua", { value = "json" }) end)

        it("a click within 10 minutes: the impression is clicked, with the click's time", function()
            d:pipe("ad-impressions", "imp-1", impression("imp-1", "ad-spring-sale", T), T)
            d:pipe("ad-clicks", "imp-1", click("imp-1", "clk-1", T + 42 * S), T + 42 * S)
            local out = d:read_all("ad-outcomes")
            assert.equal(1, #out)
            assert.same({ "imp-1", T + 42 * S }, { out[1].key, out[1].ts })
            assert.same(clicked("imp-1", "ad-spring-sale", T, "clk-1", 42000), out[1].value)
            local ctr = d:read_all("ad-ctr")
            assert.equal(1, #ctr)
            assert.same({ "ad-spring-sale", { ad = "ad-spring-sale", impressions = 1, clicks = 1, ctr = 1 } },
                        { ctr[1].key, ctr[1].value })
        end)

        it("no click: 'not clicked' only once stream time is past the window's end + 1 min grace", function()
            d:pipe("ad-impressions", "imp-1", impression("imp-1", "ad-city-break", T), T)
            d:pipe("ad-impressions", "imp-2", impression("imp-2", "ad-city-break", T + 10 * M), T + 10 * M)
            d:pipe("ad-impressions", "imp-3", impression("imp-3", "ad-city-break", T + 11 * M), T + 11 * M)
            assert.same({}, d:read_all("ad-outcomes"))          -- at T + 11 min exactly: still open
            d:pipe("ad-impressions", "imp-4", impression("imp-4", "ad-city-break", T + 11 * M + 1), T + 11 * M + 1)
            local out = d:read_all("ad-outcomes")
            assert.equal(1, #out)
            assert.same({ "imp-1", T }, { out[1].key, out[1].ts })  -- the impression's own time
            assert.same(not_clicked("imp-1", "ad-city-break", T), out[1].value)
            assert.same({ ad = "ad-city-break", impressions = 1, clicks = 0, ctr = 0 }, d:read("ad-ctr").value)
        end)

        it("the window: a click at +10 min counts, one at +10 min + 1 ms or before the impression does not", function()
            d:pipe("ad-impressions", { { "imp-1", impression("imp-1", "ad-a", T), T },
                                       { "imp-2", impression("imp-2", "ad-a", T + S), T + S },
                                       { "imp-3", impression("imp-3", "ad-a", T + 2 * S), T + 2 * S } })
            d:pipe("ad-clicks", { { "imp-3", click("imp-3", "clk-3", T + S), T + S },           -- 1 s before imp-3
                                  { "imp-1", click("imp-1", "clk-1", T + AFTER), T + AFTER },
                                  { "imp-2", click("imp-2", "clk-2", T + S + AFTER + 1), T + S + AFTER + 1 } })
            d:pipe("ad-impressions", "imp-9", impression("imp-9", "ad-b", T + 20 * M), T + 20 * M)   -- closes them
            local got = {}
            for _, r in ipairs(d:read_all("ad-outcomes")) do got[r.key] = r.value end
            assert.same({ ["imp-1"] = clicked("imp-1", "ad-a", T, "clk-1", AFTER),
                          ["imp-2"] = not_clicked("imp-2", "ad-a", T + S),
                          ["imp-3"] = not_clicked("imp-3", "ad-a", T + 2 * S) }, got)
        end)

        it("a duplicate click, or a second click, gives one outcome: the first click", function()
            d:pipe("ad-impressions", { { "imp-1", impression("imp-1", "ad-a", T), T },
                                       { "imp-2", impression("imp-2", "ad-a", T + S), T + S } })
            d:pipe("ad-clicks", { { "imp-1", click("imp-1", "clk-1", T + 5 * S), T + 5 * S },
                                  { "imp-1", click("imp-1", "clk-1", T + 5 * S), T + 7 * S },  -- resent
                                  { "imp-2", click("imp-2", "clk-2", T + 20 * S), T + 20 * S },
                                  { "imp-2", click("imp-2", "clk-3", T + 3 * M), T + 3 * M } })
            local out = d:read_all("ad-outcomes")
            assert.same({ clicked("imp-1", "ad-a", T, "clk-1", 5000), clicked("imp-2", "ad-a", T + S, "clk-2", 19000) },
                        { out[1].value, out[2].value })
            assert.equal(2, #out)
            local ctr = d:read_all("ad-ctr")
            assert.equal(2, #ctr)
            assert.same({ ad = "ad-a", impressions = 2, clicks = 2, ctr = 1 }, ctr[2].value)
            assert.same({ ["imp-1"] = true, ["imp-2"] = true }, d:store("decided"))
        end)

        it("clicks before the impression arrived, and out-of-order clicks within the grace, count", function()
            d:pipe("ad-clicks", "imp-1", click("imp-1", "clk-1", T + 30 * S), T + 30 * S)        -- first the click
            d:pipe("ad-impressions", "imp-1", impression("imp-1", "ad-a", T), T + 31 * S)         -- then its impression
            d:pipe("ad-impressions", "imp-2", impression("imp-2", "ad-a", T + M), T + M)
            d:pipe("ad-impressions", "imp-3", impression("imp-3", "ad-a", T + 11 * M + 30 * S), T + 11 * M + 30 * S)
            -- stream time T + 11.5 min: imp-2's window (ended T + 11 min) is in its grace
            d:pipe("ad-clicks", "imp-2", click("imp-2", "clk-2", T + 10 * M), T + 11 * M + 31 * S)
            local out = d:read_all("ad-outcomes")
            assert.same({ clicked("imp-1", "ad-a", T, "clk-1", 30000), clicked("imp-2", "ad-a", T + M, "clk-2", 9 * M) },
                        { out[1] and out[1].value, out[2] and out[2].value })
            assert.equal(2, #out)
        end)

        it("the grace ends at stream time = impression + 11 min: a click then still counts, after it not", function()
            d:pipe("ad-impressions", { { "imp-1", impression("imp-1", "ad-a", T), T },
                                       { "imp-2", impression("imp-2", "ad-a", T + 1), T + 1 },
                                       { "imp-3", impression("imp-3", "ad-a", T + 11 * M), T + 11 * M } })
            d:pipe("ad-clicks", "imp-1", click("imp-1", "clk-1", T + 5 * M), T + 11 * M)   -- late, just in time
            d:pipe("ad-impressions", "imp-4", impression("imp-4", "ad-a", T + 11 * M + 2), T + 11 * M + 2)
            d:pipe("ad-clicks", "imp-2", click("imp-2", "clk-2", T + 5 * M), T + 11 * M + 2)   -- imp-2 is out
            local got = {}
            for _, r in ipairs(d:read_all("ad-outcomes")) do got[r.key] = r.value end
            assert.same({ ["imp-1"] = clicked("imp-1", "ad-a", T, "clk-1", 5 * M),
                          ["imp-2"] = not_clicked("imp-2", "ad-a", T + 1) }, got)
        end)

        it("a click with no impression joins nothing; a click without a time is dead-lettered", function()
            d:close()
            d = testing.driver("ad_clicks.lua", { value = "json", dlq = true })
            d:pipe("ad-clicks", "imp-404", click("imp-404", "clk-1", T), T)
            d:pipe("ad-clicks", "imp-1", { impression_id = "imp-1", click_id = "clk-2" }, T + S)
            d:pipe("ad-impressions", "imp-9", impression("imp-9", "ad-a", T + 20 * M), T + 20 * M)
            assert.same({}, d:read_all("ad-outcomes"))
            local dead = d:dlq()
            assert.equal(1, #dead)
            assert.same({ "imp-1", "ad-clicks" }, { dead[1].key, dead[1].headers["eddy.topic"] })
            assert.truthy(dead[1].error:find("timestamp extractor", 1, true), dead[1].error)
        end)
    end)

    describe("the sample (scripts/data/ad_events.jsonl)", function()
        local records = read_sample()

        local function run_sample(partitions)
            d = testing.driver("ad_clicks.lua", { value = "json", partitions = partitions, dlq = true })
            for _, r in ipairs(records) do d:pipe(r.topic, r.key, r.payload, r.ts) end
            return collect(d)
        end

        it("has 100 impressions, 37 clicks (one resent, one without an impression, one without a time)", function()
            local imps, clicks = 0, 0
            for _, r in ipairs(records) do
                if r.topic == "ad-impressions" then imps = imps + 1 else clicks = clicks + 1 end
            end
            assert.same({ 100, 37 }, { imps, clicks })
        end)

        for _, partitions in ipairs({ 1, 4 }) do
            it(("the named cases come out as they should (%d partition(s))"):format(partitions), function()
                local outcomes = run_sample(partitions)
                local function o(id) return outcomes[id] end
                -- a click 5.5 s after the impression
                assert.same({ ts = 1710234075285, ad = "ad-running-shoes", clicked = true, click_id = "clk-0001", latency = 5539 },
                            o("imp-0003"))
                -- a click exactly 10 minutes after: inside the window
                assert.same({ ts = 1710234697208, ad = "ad-spring-sale", clicked = true, click_id = "clk-0002", latency = 600000 },
                            o("imp-0004"))
                -- a click 12 minutes after: too late, the impression was not clicked
                assert.same({ ts = 1710234372407, ad = "ad-running-shoes", clicked = false }, o("imp-0009"))
                -- a click the tracker sent twice: one outcome
                assert.same({ ts = 1710234605478, ad = "ad-spring-sale", clicked = true, click_id = "clk-0006", latency = 47000 },
                            o("imp-0013"))
                -- a click 9.5 min after, that arrived 75 s late (past the window's end, within the grace)
                assert.same({ ts = 1710235576482, ad = "ad-city-break", clicked = true, click_id = "clk-0008", latency = 570000 },
                            o("imp-0021"))
                -- a click 10 minutes and 1 ms after: too late
                assert.same({ ts = 1710235390364, ad = "ad-coffee-club", clicked = false }, o("imp-0030"))
                -- the only click has no time: dead-lettered, so not clicked
                assert.same({ ts = 1710235839328, ad = "ad-spring-sale", clicked = false }, o("imp-0040"))
                -- two clicks: the first counts
                assert.same({ ts = 1710236295746, ad = "ad-spring-sale", clicked = true, click_id = "clk-0021", latency = 20000 },
                            o("imp-0050"))
                assert.is_nil(o("imp-9001"))                      -- a click without an impression
                local dead = d:dlq()
                assert.equal(1, #dead)
                assert.same({ "imp-0040", "ad-clicks" }, { dead[1].key, dead[1].headers["eddy.topic"] })
            end)
        end

        it("one partition: 31 clicked, 58 not clicked, 11 still open at the end", function()
            local outcomes, n, ctr, updates = run_sample(1)
            local yes, no = 0, 0
            for _, o in pairs(outcomes) do if o.clicked then yes = yes + 1 else no = no + 1 end end
            assert.same({ 89, 31, 58 }, { n, yes, no })
            -- the last event is at T + 74:55.005: impressions after T + 63:55.005 that
            -- nobody clicked are still in their window (or its grace)
            local open = {}
            for i = 1, 100 do
                local id = ("imp-%04d"):format(i)
                if not outcomes[id] then open[#open + 1] = i end
            end
            assert.same({ 86, 87, 88, 90, 91, 92, 93, 96, 98, 99, 100 }, open)
            assert.equal(89, updates)
            assert_ctr({
                ["ad-spring-sale"] = { impressions = 21, clicks = 8 },
                ["ad-running-shoes"] = { impressions = 15, clicks = 6 },
                ["ad-coffee-club"] = { impressions = 18, clicks = 3 },
                ["ad-city-break"] = { impressions = 16, clicks = 7 },
                ["ad-phone-plan"] = { impressions = 19, clicks = 7 },
            }, ctr)
        end)

        for _, partitions in ipairs({ 1, 4 }) do
            it(("agrees with the reference on every impression (%d partition(s))"):format(partitions), function()
                local outcomes, n, ctr, updates = run_sample(partitions)
                local want = reference(records, partitions)
                assert.same(want, outcomes)
                assert.equal(count(want), n)
                assert.equal(n, updates)
                assert_ctr(ctr_of(want), ctr)
            end)
        end
    end)

    describe("random inputs", function()
        -- impressions with 0-3 clicks at latencies around the window's edges, resent
        -- clicks, clicks without impressions, arrival delays up to 13 minutes; fed in
        -- 1-3 runs of the engine on the same state (stream time, waiting impressions and
        -- the join's stores carry over)
        local function random_input(seed)
            math.randomseed(seed)
            local random = math.random
            local ads = { "ad-a", "ad-b", "ad-c" }
            local events = {}
            local t = T
            local function add(topic, key, v, arrival) events[#events + 1] = { topic = topic, key = key, value = v, at = arrival } end
            local EDGES = { 0, 1, AFTER - 1, AFTER, AFTER + 1, -1, AFTER + GRACE }
            local nclick = 0
            for i = 1, 30 do
                t = t + random(0, 90) * S                     -- some impressions share a ms
                local id = ("i%02d"):format(i)
                local imp = { impression_id = id, ad = ads[random(#ads)], user = "u-101", placement = "home-top", ts = t }
                add("ad-impressions", id, imp, t + random(0, 2000))
                for _ = 1, ({ 0, 0, 1, 1, 1, 2, 3 })[random(7)] do
                    local lat = random() < 0.3 and EDGES[random(#EDGES)] or random(-2 * M, 13 * M)
                    nclick = nclick + 1
                    local c = { impression_id = id, click_id = ("c%03d"):format(nclick), ts = t + lat }
                    local r = random()
                    local delay = r < 0.7 and random(0, 3000) or r < 0.9 and random(0, 3 * M) or random(0, 13 * M)
                    add("ad-clicks", id, c, c.ts + delay)
                    if random() < 0.15 then add("ad-clicks", id, c, c.ts + delay + random(0, 5000)) end   -- resent
                end
                if random() < 0.1 then
                    local oid = ("x%02d"):format(i)
                    add("ad-clicks", oid, { impression_id = oid, click_id = "orphan", ts = t + S }, t + S)
                end
            end
            for n, e in ipairs(events) do e.n = n end
            table.sort(events, function(a, b) if a.at ~= b.at then return a.at < b.at end return a.n < b.n end)
            for n, e in ipairs(events) do e.n = n end
            return events
        end

        for seed = 1, 8 do
            it(("agrees with the reference (seed %d)"):format(seed), function()
                local events = random_input(seed)
                local partitions = 1 + seed % 3
                d = testing.driver("ad_clicks.lua", { value = "json", partitions = partitions })
                local cuts = { [math.random(#events)] = true, [math.random(#events)] = true }
                local outcomes, n, ctr, updates = {}, 0, {}, 0
                local function drain()
                    local o, k, c, u = collect(d)
                    for id, x in pairs(o) do
                        assert.is_nil(outcomes[id], "two outcomes for " .. id)
                        outcomes[id] = x
                    end
                    for ad, x in pairs(c) do ctr[ad] = x end
                    n, updates = n + k, updates + u
                end
                for i, e in ipairs(events) do
                    d:pipe(e.topic, e.key, e.value, e.at)
                    if cuts[i] then drain() end
                end
                drain()
                local want, results = reference(events, partitions)
                assert.same(want, outcomes)
                assert.equal(n, updates)
                assert_ctr(ctr_of(want), ctr)
                assert.is_true(results >= n)
            end)
        end
    end)
end)
