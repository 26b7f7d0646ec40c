-- spec/scripts_spec.lua: the example jobs in scripts/, run through the real
-- binary in file mode on their sample data in scripts/data/.
--
-- Expectations are derived here from the sample data with plain Lua, cjson and
-- GNU date (for timestamps), independently of the jobs' own code: each test
-- re-reads the input, decides what should come out, and compares that with
-- what eddy wrote to --output and --dlq.
local h = require "helper"
local cjson = require "cjson"
local cjson_safe = require "cjson.safe"

local ROOT = h.ROOT

local function path(p) return ROOT .. "/" .. p end

local function lines_of(file)
    local list = {}
    for line in assert(h.read(path(file)), "missing " .. file):gmatch("[^\n]+") do
        list[#list + 1] = line
    end
    return list
end

-- Run a job in file mode; returns outputs, dead letters, exit code, stderr.
local function run(script, input, extra)
    local dir = h.tmpdir()
    local args = { "run", path(script), "--input", path(input),
        "--output", dir .. "/out.jsonl", "--dlq", dir .. "/dlq.jsonl" }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    local code, _, err = h.eddy(args)
    local outs = h.envelopes(h.read(dir .. "/out.jsonl"))
    local dlq = h.envelopes(h.read(dir .. "/dlq.jsonl"))
    os.execute("rm -rf " .. h.q(dir))
    return outs, dlq, code, err
end

-- Epoch ms for each date string, computed by GNU date (not by the jobs' Lua).
local function date_ms(list)
    if #list == 0 then return {} end
    local dir = h.tmpdir()
    h.write(dir .. "/dates", table.concat(list, "\n") .. "\n")
    local p = io.popen("date -u -f " .. h.q(dir .. "/dates") .. " +%s%3N 2>&1")
    local res = {}
    for l in p:lines() do res[#res + 1] = assert(tonumber(l), "date: " .. l) end
    p:close()
    os.execute("rm -rf " .. h.q(dir))
    assert(#res == #list, "date parsed " .. #res .. " of " .. #list)
    return res
end

local function headers_map(list)
    local m = {}
    for i = 1, #(list or {}), 2 do m[list[i]] = list[i + 1] end
    return m
end

-- Compare two decoded JSON values; numbers within 1e-9.
local function same(a, b)
    if type(a) == "number" and type(b) == "number" then return math.abs(a - b) < 1e-9 end
    if type(a) ~= "table" or type(b) ~= "table" then return a == b end
    for k, v in pairs(a) do if not same(v, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
end

local function assert_same(expected, actual, what)
    if not same(expected, actual) then
        error(("%s:\n  expected %s\n  actual   %s"):format(what, cjson.encode(expected),
            cjson.encode(actual)), 2)
    end
end

-- Offsets in each output topic-partition are 0, 1, 2, ...
local function assert_dense_offsets(outs)
    local next_off = {}
    for _, e in ipairs(outs) do
        local tp = e.topic .. "/" .. e.partition
        assert.are.equal(next_off[tp] or 0, e.offset, "offset in " .. tp)
        next_off[tp] = e.offset + 1
    end
end

describe("example scripts", function()
    it("every script passes eddy check and names its sources and sinks", function()
        local want = {
            ["scripts/access_log.lua"] = { "access-logs", "http-requests" },
            ["scripts/clickstream.lua"] = { "clicks", "clicks-enriched" },
            ["scripts/router.lua"] = { "shop-events", "orders", "payments", "shipments",
                "payment-alerts", "shop-events-unrouted" },
            ["scripts/sensors.lua"] = { "sensors-legacy", "sensors", "sensor-readings",
                "sensor-faults" },
        }
        for script, topics in pairs(want) do
            local code, out, err = h.eddy({ "check", path(script) })
            assert.are.equal(0, code, script .. ": " .. tostring(err))
            for _, t in ipairs(topics) do
                assert.truthy(out:find(t, 1, true), script .. " topology lacks " .. t .. ":\n" .. out)
            end
        end
    end)

    it("sample data sets are realistic in size (50-500 records)", function()
        for _, f in ipairs { "scripts/data/access.log", "scripts/data/clicks.jsonl",
            "scripts/data/shop_events.jsonl", "scripts/data/sensors.jsonl" } do
            local n = #lines_of(f)
            assert.is_true(n >= 50 and n <= 500, f .. " has " .. n .. " records")
        end
    end)
end)

---------------------------------------------------------------------------
-- access_log.lua
---------------------------------------------------------------------------

-- Split a log line into tokens: bare words, [bracketed] and "quoted" fields.
local function clf_tokens(line)
    local toks, i, n = {}, 1, #line
    while i <= n do
        local c = line:sub(i, i)
        if c == " " then
            i = i + 1
        else
            local close = (c == "[" and "]") or (c == '"' and '"') or nil
            local j
            if close then
                j = line:find(close, i + 1, true)
                if not j then return nil end
                toks[#toks + 1] = line:sub(i + 1, j - 1)
                i = j + 1
                if i <= n and line:sub(i, i) ~= " " then return nil end
            else
                j = (line:find(" ", i, true) or n + 1) - 1
                toks[#toks + 1] = line:sub(i, j)
                i = j + 1
            end
        end
    end
    return toks
end

-- The request a combined-format line describes, or nil when it is not one.
local function parse_access(line)
    local t = clf_tokens(line)
    if not t or #t ~= 9 then return nil end
    local parts = {}
    for w in t[5]:gmatch("[^ ]+") do parts[#parts + 1] = w end
    if #parts ~= 3 or #t[5] ~= #parts[1] + #parts[2] + #parts[3] + 2 then return nil end
    local method, target, proto = parts[1], parts[2], parts[3]
    if not method:match("^[A-Z]+$") or proto:sub(1, 5) ~= "HTTP/" then return nil end
    if not t[6]:match("^%d%d%d$") or not (t[7] == "-" or t[7]:match("^%d+$")) then return nil end
    local q = target:find("?", 1, true)
    local req = {
        client = t[1], method = method, protocol = proto,
        path = q and target:sub(1, q - 1) or target,
        status = tonumber(t[6]), bytes = t[7] == "-" and 0 or tonumber(t[7]),
        user_agent = t[9],
    }
    if t[3] ~= "-" then req.user = t[3] end
    if q and q < #target then req.query = target:sub(q + 1) end
    if t[8] ~= "-" then req.referrer = t[8] end
    -- "12/Mar/2024:09:15:02 +0100" -> "12 Mar 2024 09:15:02 +0100" for date(1)
    req.date = t[4]:gsub("/", " "):gsub(":", " ", 1)
    return req
end

describe("access_log.lua", function()
    local input = lines_of("scripts/data/access.log")
    local good, bad = {}, {}
    for i, line in ipairs(input) do
        local req = parse_access(line)
        if req then
            req.offset = i - 1
            good[#good + 1] = req
        else
            bad[#bad + 1] = { line = line, offset = i - 1 }
        end
    end
    local stamps = {}
    for i, r in ipairs(good) do stamps[i] = r.date end
    stamps = date_ms(stamps)
    local expected = {}
    for i, r in ipairs(good) do
        r.ts, r.date = stamps[i], nil
        if r.path ~= "/healthz" then
            local off = r.offset
            r.offset = nil
            expected[#expected + 1] = { req = r, offset = off }
        end
    end

    local outs, dlq, code, err = run("scripts/access_log.lua", "scripts/data/access.log",
        { "--input-format", "lines" })

    it("runs to the end of the file", function()
        assert.are.equal(0, code, err)
        assert.truthy(err:find(("%d record%%(s%%) in, %d out, %d error"):format(#input, #expected, #bad)), err)
    end)

    it("the sample has health checks and bad lines to show filtering and the DLQ", function()
        assert.is_true(#good - #expected >= 5)
        assert.is_true(#bad >= 3)
    end)

    it("writes one JSON request per parsed line, keyed by client IP, health checks dropped", function()
        assert.are.equal(#expected, #outs)
        for i, want in ipairs(expected) do
            local got = outs[i]
            assert.are.equal("http-requests", got.topic)
            assert.are.equal(want.req.client, got.key)
            assert_same(want.req, cjson.decode(got.payload), "request " .. i)
        end
        assert_dense_offsets(outs)
    end)

    it("stamps each record with the time in the log line (timestamp extractor)", function()
        -- eddy bug (see report): a source's timestamp extractor is not applied
        -- when no function in the job declares a `rec` parameter.
        assert.are.equal(#expected, #outs)
        local wrong = 0
        for i, want in ipairs(expected) do
            if outs[i].ts ~= want.req.ts then wrong = wrong + 1 end
        end
        assert.are.equal(0, wrong, ("%d of %d records have ts %s instead of the log time %s"):format(
            wrong, #expected, tostring(outs[1].ts), tostring(expected[1].req.ts)))
    end)

    it("dead-letters every line that is not in combined format, unchanged", function()
        assert.are.equal(#bad, #dlq)
        for i, b in ipairs(bad) do
            local d = dlq[i]
            assert.are.equal("access-log-dlq", d.topic)
            assert.are.equal(b.line, d.payload)
            assert.are.equal("deserialize", h.header(d, "eddy.stage"))
            assert.are.equal("access-logs", h.header(d, "eddy.topic"))
            assert.are.equal(tostring(b.offset), h.header(d, "eddy.offset"))
            assert.truthy(h.header(d, "eddy.error"):find("not a combined-format log line", 1, true))
        end
    end)
end)

---------------------------------------------------------------------------
-- clickstream.lua
---------------------------------------------------------------------------

describe("clickstream.lua", function()
    local PARTITIONS = 4
    local input = h.envelopes(h.read(path("scripts/data/clicks.jsonl")))
    local BOT_MARKERS = { "googlebot", "bingbot", "ahrefsbot", "headlesschrome", "python-requests",
        "curl/", "lighthouse", "crawler", "spider" }
    local function bot(ua)
        if type(ua) ~= "string" or ua == "" then return true end
        ua = ua:lower()
        for _, m in ipairs(BOT_MARKERS) do
            if ua:find(m, 1, true) then return true end
        end
        return false
    end
    local ISO = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[%.%d]*[Z+-]"

    local events, bad, bots = {}, {}, 0
    for _, env in ipairs(input) do
        local ev = cjson_safe.decode(env.payload)
        if type(ev) ~= "table" then
            bad[#bad + 1] = env
            env.stage = "deserialize"                -- the JSON serde refuses it
        elseif type(ev.timestamp) ~= "string" or not ev.timestamp:match(ISO) then
            bad[#bad + 1] = env
            env.stage = "process"                    -- the timestamp extractor (user code) fails
        elseif bot(ev.user_agent) then
            bots = bots + 1
        else
            events[#events + 1] = { env = env, ev = ev }
        end
    end
    local stamps = {}
    for i, e in ipairs(events) do stamps[i] = e.ev.timestamp end
    stamps = date_ms(stamps)

    local expected = {}
    for i, e in ipairs(events) do
        local ev = e.ev
        local user = ev.user_id ~= cjson.null and ev.user_id or ("anon:" .. ev.anonymous_id)
        local host, rest = ev.url:match("^https://([^/]+)(.*)$")
        local p, query = rest, ""
        local qpos = rest:find("?", 1, true)
        if qpos then p, query = rest:sub(1, qpos - 1), rest:sub(qpos) end
        local params = {}
        for k, v in query:gmatch("([%w_]+)=([^&]*)") do params[k] = v end
        local segs = {}
        for s in p:gmatch("[^/]+") do segs[#segs + 1] = s end
        local page, product
        if #segs == 0 then page = "home"
        elseif segs[1] == "products" and #segs == 2 then page, product = "product", segs[2]
        elseif segs[1] == "products" then page = "listing"
        elseif segs[1] == "search" or segs[1] == "cart" or segs[1] == "checkout" then page = segs[1]
        else page = "other" end
        local ref_host = type(ev.referrer) == "string" and ev.referrer:match("^https?://([^/]+)") or nil
        if ref_host == host then ref_host = "internal" end
        local ua = ev.user_agent
        local device = (ua:find("iPad", 1, true) and "tablet")
            or (ua:find("Mobile", 1, true) and "mobile") or "desktop"
        expected[i] = {
            key = user, ts = stamps[i], headers = e.env.headers,
            value = {
                event_id = ev.event_id, type = ev.type, user = user,
                logged_in = ev.user_id ~= cjson.null, path = p, page = page, product = product,
                source = params.utm_source or ref_host or "direct", campaign = params.utm_campaign,
                device = device, ts = stamps[i],
            },
        }
    end

    local outs, dlq, code, err = run("scripts/clickstream.lua", "scripts/data/clicks.jsonl",
        { "--partitions", tostring(PARTITIONS) })

    it("runs to the end of the file", function()
        assert.are.equal(0, code, err)
        assert.truthy(err:find(("%d record%%(s%%) in, %d out, %d error"):format(#input, #expected, #bad)), err)
    end)

    it("the sample has bots and bad events", function()
        assert.is_true(bots >= 10, "bots: " .. bots)
        assert.is_true(#bad >= 2, "bad: " .. #bad)
    end)

    it("drops bots and writes enriched events keyed by user", function()
        assert.are.equal(#expected, #outs)
        for i, want in ipairs(expected) do
            local got = outs[i]
            assert.are.equal("clicks-enriched", got.topic)
            assert.are.equal(want.key, got.key)
            assert_same(want.value, cjson.decode(got.payload), "event " .. i)
            assert.are.same(want.headers, got.headers)
        end
        assert_dense_offsets(outs)
    end)

    it("uses the event's own time as the record timestamp", function()
        for i, want in ipairs(expected) do
            assert.are.equal(want.ts, outs[i].ts, "event " .. i)
        end
    end)

    it("puts all of a user's events in one partition (murmur2 of the new key)", function()
        for i, want in ipairs(expected) do
            assert.are.equal(h.partition_for(want.key, PARTITIONS), outs[i].partition, "event " .. i)
        end
    end)

    it("dead-letters undecodable events and events without a usable timestamp", function()
        assert.are.equal(#bad, #dlq)
        for i, b in ipairs(bad) do
            local d = dlq[i]
            assert.are.equal("clickstream-dlq", d.topic)
            assert.are.equal(b.payload, d.payload)
            assert.are.equal(b.key, d.key)
            assert.are.equal(b.stage, h.header(d, "eddy.stage"))
            assert.are.equal(tostring(b.partition), h.header(d, "eddy.partition"))
            assert.are.equal(tostring(b.offset), h.header(d, "eddy.offset"))
        end
    end)
end)

---------------------------------------------------------------------------
-- router.lua
---------------------------------------------------------------------------

describe("router.lua", function()
    local PARTITIONS = 3
    local input = h.envelopes(h.read(path("scripts/data/shop_events.jsonl")))
    local expected, unrouted, alerts = {}, 0, 0
    for _, env in ipairs(input) do
        local ce_type = headers_map(env.headers).ce_type or ""
        local prefix = "com.example.shop."
        local dom, action
        if ce_type:sub(1, #prefix) == prefix then
            dom, action = ce_type:sub(#prefix + 1):match("^([^.]+)%.([^.]+)$")
        end
        local topic = ({ order = "orders", payment = "payments", shipment = "shipments" })[dom]
        if not topic then
            topic = "shop-events-unrouted"
            unrouted = unrouted + 1
        end
        expected[#expected + 1] = { topic = topic, env = env }
        if topic == "payments" and action == "failed" then
            expected[#expected + 1] = { topic = "payment-alerts", env = env }
            alerts = alerts + 1
        end
    end

    local outs, dlq, code, err = run("scripts/router.lua", "scripts/data/shop_events.jsonl",
        { "--partitions", tostring(PARTITIONS) })

    it("runs to the end of the file without errors", function()
        assert.are.equal(0, code, err)
        assert.are.equal(0, #dlq)
        assert.truthy(err:find(("%d record%%(s%%) in, %d out, 0 error"):format(#input, #expected)), err)
    end)

    it("the sample has unroutable events and failed payments", function()
        assert.is_true(unrouted >= 5)
        assert.is_true(alerts >= 2)
    end)

    it("forwards each event unchanged to its domain's topic", function()
        assert.are.equal(#expected, #outs)
        for i, want in ipairs(expected) do
            local got = outs[i]
            assert.are.equal(want.topic, got.topic, "record " .. i)
            assert.are.equal(want.env.key, got.key)
            assert.are.equal(want.env.payload, got.payload)      -- byte for byte
            assert.are.equal(want.env.ts, got.ts)
            assert.are.same(want.env.headers, got.headers)
        end
        assert_dense_offsets(outs)
    end)

    it("spreads keyed records over --partitions by murmur2, as a Kafka producer would", function()
        for i, want in ipairs(expected) do
            assert.are.equal(h.partition_for(want.env.key, PARTITIONS), outs[i].partition, "record " .. i)
        end
    end)
end)

---------------------------------------------------------------------------
-- sensors.lua
---------------------------------------------------------------------------

describe("sensors.lua", function()
    local input = h.envelopes(h.read(path("scripts/data/sensors.jsonl")))
    local expected, bad = {}, {}
    local per_topic = {}
    local function reading(device, v, ts)
        local topic = (v.temp_c <= -55 or v.temp_c >= 85 or v.humidity < 0 or v.humidity > 100)
            and "sensor-faults" or "sensor-readings"
        expected[#expected + 1] = { topic = topic, key = device, ts = ts, value = v }
    end
    for _, env in ipairs(input) do
        per_topic[env.topic] = (per_topic[env.topic] or 0) + 1
        local offset = per_topic[env.topic] - 1     -- Kafka: offsets count per topic-partition
        if env.topic == "sensors-legacy" then
            local f = {}
            for field in (env.payload .. ","):gmatch("([^,]*),") do f[#f + 1] = field end
            local secs, temp_f, rh = tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
            if #f == 4 and f[1] ~= "" and secs and temp_f and rh then
                local c = (temp_f - 32) * 5 / 9
                reading(f[1], { device = f[1], temp_c = math.floor(c * 10 + 0.5) / 10,
                    humidity = rh, firmware = "v1" }, secs * 1000)
            else
                bad[#bad + 1] = { env = env, stage = "process", offset = offset }
            end
        else
            local batch = cjson_safe.decode(env.payload)
            if batch == nil then
                bad[#bad + 1] = { env = env, stage = "deserialize", offset = offset }
            elseif type(batch.readings) ~= "table" then
                bad[#bad + 1] = { env = env, stage = "process", offset = offset }
            else
                for _, r in ipairs(batch.readings) do
                    reading(batch.device, { device = batch.device, site = batch.site,
                        temp_c = r.temp_c, humidity = r.rh, firmware = "v2" }, r.at)
                end
            end
        end
    end
    local faults = 0
    for _, e in ipairs(expected) do if e.topic == "sensor-faults" then faults = faults + 1 end end

    local outs, dlq, code, err = run("scripts/sensors.lua", "scripts/data/sensors.jsonl")

    it("runs to the end of the file", function()
        assert.are.equal(0, code, err)
        assert.truthy(err:find(("%d record%%(s%%) in, %d out, %d error"):format(#input, #expected, #bad)), err)
    end)

    it("the sample has both firmwares, faulty readings and bad records", function()
        assert.is_true(per_topic["sensors-legacy"] >= 20 and per_topic["sensors"] >= 20)
        assert.is_true(faults >= 2, "faults: " .. faults)
        assert.is_true(#bad >= 3, "bad: " .. #bad)
    end)

    it("writes one record per reading from both sources, timestamped by the reading", function()
        assert.are.equal(#expected, #outs)
        for i, want in ipairs(expected) do
            local got = outs[i]
            assert.are.equal(want.topic, got.topic, "reading " .. i)
            assert.are.equal(want.key, got.key)
            assert.are.equal(want.ts, got.ts, "reading " .. i)
            assert_same(want.value, cjson.decode(got.payload), "reading " .. i)
        end
        assert_dense_offsets(outs)
    end)

    it("dead-letters records it cannot read, with the failing stage", function()
        assert.are.equal(#bad, #dlq)
        for i, b in ipairs(bad) do
            local d = dlq[i]
            assert.are.equal("sensors-dlq", d.topic)
            assert.are.equal(b.env.payload, d.payload)
            assert.are.equal(b.env.topic, h.header(d, "eddy.topic"))
            assert.are.equal(b.stage, h.header(d, "eddy.stage"))
        end
    end)

    it("numbers file-mode offsets per topic-partition, as Kafka does", function()
        -- eddy bug (see report): records of several source topics without an
        -- "offset" share one counter per partition, so a dead letter names an
        -- offset its topic never had.
        assert.are.equal(#bad, #dlq)
        for i, b in ipairs(bad) do
            assert.are.equal(tostring(b.offset), h.header(dlq[i], "eddy.offset"),
                b.env.topic .. " record " .. b.env.payload:sub(1, 30))
        end
    end)
end)

---------------------------------------------------------------------------
-- Bugs found while writing the examples, reduced to a few lines.
---------------------------------------------------------------------------

describe("eddy (found by the examples)", function()
    it("applies a source's timestamp extractor even when no function takes rec", function()
        local dir = h.tmpdir()
        local script = h.script(dir, "ts.lua", [[
local eddy = require "eddy"
local job = eddy.job { name = "ts" }
job:source("in", { value = "json", timestamp = function(_, v) return v.at end })
   :to("out", { value = "json" })
return job
]])
        local code, out, err = h.eddy({ "run", script, "--input", "-" },
            { stdin = h.envelope { payload = '{"at":1710234902123}', ts = 5 } .. "\n" })
        os.execute("rm -rf " .. h.q(dir))
        assert.are.equal(0, code, err)
        local envs = h.envelopes(out)
        assert.are.equal(1, #envs)
        assert.are.equal(1710234902123, envs[1].ts)
    end)
end)
