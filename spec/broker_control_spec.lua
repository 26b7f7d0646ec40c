-- spec/broker_control_spec.lua: `eddy broker --control PATH`, the fault-injection
-- FIFO. One two-broker `eddy broker` serves the tests; each test writes commands to
-- its FIFO, waits for the acknowledgement line on the broker's stderr, and checks
-- the effect with kcat and python3 + confluent_kafka. Every process (and every
-- client call, through `timeout`) is bounded and killed in teardown.
local cjson = require "cjson"
local h = require "helper"
local k = require "kafka_helper"

local q = h.q

-- run a shell command under `timeout`; returns exit code, stdout, stderr
local function sh(dir, secs, cmd)
    local out, err = dir .. "/sh.out", dir .. "/sh.err"
    local rc = k.sh(("timeout -k 2 %d sh -c %s > %s 2> %s"):format(secs, q(cmd), q(out), q(err)))
    return rc, h.read(out) or "", h.read(err) or ""
end

-- kcat -P: one record per line of `lines`, extra kcat args
local function kcat_produce(dir, brokers, topic, lines, extra, secs)
    h.write(dir .. "/kcat.in", table.concat(lines, "\n") .. "\n")
    return sh(dir, secs or 15, ("%s -P -b %s -t %s %s < %s"):format(k.KCAT, q(brokers), q(topic),
        extra or "", q(dir .. "/kcat.in")))
end

-- kcat -C -e, bounded: the values read (a stalled read returns what it got)
local function kcat_values(dir, brokers, topic, secs)
    local _, out = sh(dir, secs or 10, ("%s -C -e -q -b %s -t %s -f '%%s\\n' -X fetch.wait.max.ms=10")
        :format(k.KCAT, q(brokers), q(topic)))
    local vals = {}
    for line in out:gmatch("[^\n]+") do vals[#vals + 1] = line end
    table.sort(vals)
    return vals
end

-- kcat -L -J for one topic: the topic's metadata table
local function metadata(dir, brokers, topic)
    local rc, out, err = sh(dir, 10, ("%s -L -J -b %s -t %s"):format(k.KCAT, q(brokers), q(topic)))
    assert(rc == 0, "kcat -L failed: " .. err)
    local md = cjson.decode(out)
    for _, t in ipairs(md.topics) do
        if t.topic == topic then return t end
    end
    error("no topic " .. topic .. " in metadata: " .. out)
end

local function count(s, plain)
    local n, i = 0, 1
    while true do
        local a, b = s:find(plain, i, true)
        if not a then return n end
        n, i = n + 1, b + 1
    end
end

describe("eddy broker --control", function()
    local dir, broker, B, ctl
    local procs = {}

    --- Write one command to the FIFO and wait for its acknowledgement. Returns the
    --- log line ("ok" lines unless expect_error).
    local function command(cmd, expect_error)
        assert(broker:running(), "the broker died:\n" .. broker:stderr())
        local before = #broker:stderr()
        local f = assert(io.open(ctl, "w"))
        f:write(cmd, "\n")
        f:close()
        local prefix = "broker: control: " .. cmd .. ": "
        local line = k.wait_for("the acknowledgement of " .. cmd, 5, function()
            if not broker:running() then error("the broker died:\n" .. broker:stderr(), 0) end
            local new = broker:stderr():sub(before + 1)
            for l in new:gmatch("[^\n]+") do
                if l:find(prefix, 1, true) then return l end
            end
            return nil, new
        end, 0.02)
        if expect_error then
            assert.is_truthy(line:match("^ERROR "), "expected an error line: " .. line)
        else
            assert.are.equal(prefix .. "ok", line:match("eddy: (.*)$"))
        end
        return line
    end

    lazy_setup(function()
        dir = h.tmpdir()
        ctl = dir .. "/control"
        broker = k.spawn(dir, "broker", { h.EDDY, "broker", "--brokers", "2", "--control", ctl })
        local ok, bootstrap = pcall(k.wait_for, "the broker's bootstrap line", 10, function()
            if not broker:running() then error("eddy broker exited: " .. broker:stderr(), 0) end
            return (broker:stdout():match("^bootstrap: (%S+)\n"))
        end, 0.02)
        if not ok then broker:kill(); error(bootstrap, 0) end
        B = bootstrap
    end)

    lazy_teardown(function()
        for _, p in ipairs(procs) do p:kill() end
        if broker then broker:kill() end
        if dir then os.execute("rm -rf " .. q(dir)) end
    end)

    after_each(function()
        for _, p in ipairs(procs) do p:kill() end
        procs = {}
        assert.is_true(broker ~= nil and broker:running(),
            "the broker died:\n" .. (broker and broker:stderr() or ""))
    end)

    it("creates the FIFO and announces it", function()
        local rc = k.sh("test -p " .. q(ctl))
        assert.are.equal(0, rc, ctl .. " is not a FIFO")
        assert.is_truthy(broker:stderr():find("broker: control commands read from " .. ctl, 1, true))
    end)

    it("acknowledges every command with one log line", function()
        for _, cmd in ipairs({
            "topic ack 2",
            "leader ack 1 2",
            "down 2",
            "up 2",
            "rtt 1 0",
            "rtt -1 0",
            "coordinator group ack-group 1",
            "coordinator transaction ack-tx 2",
            -- APIs no later test uses (no consumer group here), so nothing lingers
            "errors Heartbeat 1 NOT_COORDINATOR",
            "errors OffsetCommit 2 NOT_COORDINATOR REQUEST_TIMED_OUT",
            "errors joingroup 1 COORDINATOR_NOT_AVAILABLE",
            "errors 28 1 RD_KAFKA_RESP_ERR_NOT_COORDINATOR",
        }) do
            command(cmd)
        end
        assert.are.equal(1, count(broker:stderr(), "broker: control: topic ack 2: ok"))
    end)

    it("reports a bad command with an error line and keeps running", function()
        command("topic dup 1")
        local bad = {
            { "bogus 1", "unknown command \"bogus\"" },
            { "down", "usage: down BROKER_ID" },
            { "down x", "bad BROKER_ID \"x\"" },
            { "down 9", "Broker not available" },
            { "up 1 2", "usage: up BROKER_ID" },
            { "errors Produce 1 NO_SUCH_ERROR", "unknown error \"NO_SUCH_ERROR\"" },
            { "errors Nope 1 NOT_COORDINATOR", "unknown API \"Nope\"" },
            { "errors Produce 0 NOT_COORDINATOR", "bad COUNT" },
            { "errors Produce 1", "usage: errors API COUNT ERROR" },
            { "topic bad 0", "bad PARTITIONS \"0\"" },
            { "topic dup 1", "Topic already exists" },
            { "leader dup 7 1", "Unknown topic or partition" },
            { "leader dup 0 9", "Broker not available" },
            { "coordinator cluster g 1", "bad coordinator type" },
            { "rtt 1 -5", "bad MS \"-5\"" },
        }
        for _, b in ipairs(bad) do
            local line = command(b[1], true)
            assert.is_truthy(line:find(b[2], 1, true), ("%q: expected %q in %q"):format(b[1], b[2], line))
        end
        -- still serving, still listening
        assert.is_true(broker:running())
        command("topic after-bad 1")
        assert.are.equal(1, #metadata(dir, B, "after-bad").partitions)
        local rc, _, err = kcat_produce(dir, B, "after-bad", { "still-here" })
        assert.are.equal(0, rc, err)
        assert.are.same({ "still-here" }, kcat_values(dir, B, "after-bad"))
    end)

    it("topic NAME PARTITIONS creates a topic with that many partitions", function()
        command("topic t 3")
        local t = metadata(dir, B, "t")
        assert.are.equal(3, #t.partitions)
    end)

    it("leader moves a partition's leader (kcat -L shows it)", function()
        command("topic lead 2")
        command("leader lead 0 2")
        command("leader lead 1 1")
        local leaders = {}
        for _, p in ipairs(metadata(dir, B, "lead").partitions) do leaders[p.partition] = p.leader end
        assert.are.same({ [0] = 2, [1] = 1 }, leaders)
    end)

    it("down stalls produce and consume; up lets the data through", function()
        command("topic du 1")
        command("leader du 0 1")
        local rc0, _, err0 = kcat_produce(dir, B, "du", { "before" })
        assert.are.equal(0, rc0, err0)

        command("down 1")
        -- a producer with a short message timeout gives up
        local rc, _, err = kcat_produce(dir, B, "du", { "lost" }, "-X message.timeout.ms=1500", 10)
        assert.are_not.equal(0, rc)
        assert.is_truthy(err:find("Message timed out", 1, true), err)
        -- a consumer gets nothing while the leader is down
        assert.are.same({}, kcat_values(dir, B, "du", 3))
        -- a patient producer (confluent_kafka, idempotent) waits ...
        local recs = {}
        for i = 1, 5 do recs[i] = { topic = "du", value = "during-" .. i } end
        local p = k.produce_async(B, recs, dir, "produce-du", 0)
        procs[#procs + 1] = p
        k.sleep(1.5)
        assert.is_true(p:running(), "the producer finished while the broker was down:\n" .. p:stdout())

        command("up 1")
        -- ... and delivers once the broker is back
        local dr = k.produced(p, 30)
        assert.are.equal(5, #dr)
        local want = { "before", "during-1", "during-2", "during-3", "during-4", "during-5" }
        local got = k.wait_for("the records after up", 15, function()
            local v = kcat_values(dir, B, "du", 5)
            if #v >= #want then return v end
            return nil, #v .. " records"
        end, 0.2)
        assert.are.same(want, got)
    end)

    it("errors Produce 3 NOT_LEADER_FOR_PARTITION: the producer retries and delivers", function()
        command("topic ep 1")
        local rc0, _, err0 = kcat_produce(dir, B, "ep", { "warm-up" })   -- metadata known
        assert.are.equal(0, rc0, err0)
        command("errors Produce 3 NOT_LEADER_FOR_PARTITION")
        local rc, _, err = kcat_produce(dir, B, "ep", { "a", "b", "c" },
            "-X retries=10 -X retry.backoff.ms=50 -X message.timeout.ms=10000 -d msg", 20)
        assert.are.equal(0, rc, err)
        -- the producer met exactly the three injected errors
        assert.are.equal(3, count(err, "encountered error: Broker: Not leader for partition"), err)
        local got = k.wait_for("the records", 10, function()
            local v = kcat_values(dir, B, "ep", 5)
            if #v >= 4 then return v end
            return nil, #v .. " records"
        end, 0.2)
        assert.are.same({ "a", "b", "c", "warm-up" }, got)
    end)

    it("errors with a non-retriable error fails the produce with that error", function()
        command("topic ea 1")
        command("errors Produce 1 TOPIC_AUTHORIZATION_FAILED")
        local rc, _, err = kcat_produce(dir, B, "ea", { "denied" }, "-X message.timeout.ms=5000", 10)
        assert.are_not.equal(0, rc)
        assert.is_truthy(err:find("Topic authorization failed", 1, true), err)
        -- the stack is used up: the next produce goes through
        local rc2, _, err2 = kcat_produce(dir, B, "ea", { "allowed" })
        assert.are.equal(0, rc2, err2)
        assert.are.same({ "allowed" }, kcat_values(dir, B, "ea"))
    end)
end)

describe("eddy broker --control PATH", function()
    local dir
    local procs = {}

    before_each(function() dir = h.tmpdir() end)
    after_each(function()
        for _, p in ipairs(procs) do p:kill() end
        procs = {}
        os.execute("rm -rf " .. q(dir))
    end)

    local function start(ctl)
        local p = k.spawn(dir, "broker", { h.EDDY, "broker", "--control", ctl })
        procs[#procs + 1] = p
        return p
    end

    it("replaces a stale FIFO and removes it on exit", function()
        local ctl = dir .. "/stale"
        assert.are.equal(0, k.sh("mkfifo " .. q(ctl)))
        local p = start(ctl)
        k.wait_for("the control line", 10, function()
            if not p:running() then error("eddy broker exited: " .. p:stderr(), 0) end
            return p:stderr():find("control commands read from", 1, true)
        end, 0.02)
        local f = assert(io.open(ctl, "w"))
        f:write("topic x 1\n")
        f:close()
        k.wait_for("the ok line", 5, function()
            return p:stderr():find("broker: control: topic x 1: ok", 1, true)
        end, 0.02)
        local rc = p:stop("TERM", 10)
        assert.are.equal(0, rc, p:stderr())
        assert.is_nil(io.open(ctl, "r"), "the FIFO is still there")
    end)

    it("refuses to replace a file that is not a FIFO", function()
        local path = h.write(dir .. "/regular", "keep me\n")
        local p = start(path)
        local rc = p:wait(10)
        assert.are_not.equal(0, rc)
        assert.is_truthy(p:stderr():find("exists and is not a FIFO", 1, true), p:stderr())
        assert.are.equal("keep me\n", h.read(path))
    end)

    it("--control needs a value", function()
        local code, _, err = h.eddy({ "broker", "--control" })
        assert.are.equal(2, code)
        assert.is_truthy(err:find("--control needs a value", 1, true), err)
    end)

    it("is described in --help", function()
        local code, out = h.eddy({ "broker", "--help" })
        assert.are.equal(0, code)
        for _, w in ipairs({ "--control PATH", "down BROKER_ID", "errors API COUNT ERROR",
                             "topic NAME PARTITIONS", "leader TOPIC PARTITION BROKER_ID",
                             "coordinator group|transaction", "rtt BROKER_ID MS" }) do
            assert.is_truthy(out:find(w, 1, true), w)
        end
    end)
end)
