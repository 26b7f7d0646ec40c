-- spec/state_offsets_spec.lua: the state records the input offsets it reflects,
-- in the same LMDB transaction. When the group's committed offsets are behind it
-- (a crash between the state commit and the offset commit, simulated here by
-- committing offset 0 for the group from outside), a restart goes on after what
-- the state reflects: no input is applied to a store twice.
local h = require "helper"
local k = require "kafka_helper"

describe("input offsets kept with the state", function()
    local dir, broker, B
    local procs = {}

    lazy_setup(function()
        dir = h.tmpdir()
        broker, B = k.start_broker(dir, { { "so2-in", 2 }, { "so2-out", 2 } })
    end)

    lazy_teardown(function()
        for _, p in ipairs(procs) do p:kill() end
        if broker then broker:kill() end
        if dir then os.execute("rm -rf " .. h.q(dir)) end
    end)

    it("a restart after the group's offsets fell behind the state counts nothing twice", function()
        local script = h.script(dir, "job.lua", [[
local eddy = require "eddy"
local job = eddy.job { name = "so2" }
job:source("so2-in"):group_by_key():count { store = "c" }:to_stream():to("so2-out", { value = "number" })
return job
]])
        local input = {}
        for i = 1, 30 do
            input[i] = { topic = "so2-in", key = "k" .. (i % 3), value = "v", ts = 1700000000000 + i,
                partition = h.partition_for("k" .. (i % 3), 2) }
        end
        k.produce(B, input, dir)
        local p1 = k.start_eddy(dir, "so2a", script, B, { "--no-watch" })
        procs[#procs + 1] = p1
        k.wait_records(B, "so2-out", 30, 30, p1)
        assert.are.equal(0, p1:stop("TERM", 15), p1:stderr())

        -- the group's committed offsets go back to 0 (as after a crash right after
        -- the state commit): join the group from outside and commit 0
        local cmd = ([[timeout 40 %s - %s <<'PY'
import sys, time
from confluent_kafka import Consumer, TopicPartition
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "so2", "enable.auto.commit": False,
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
c.subscribe(["so2-in"])
t0 = time.time()
while not c.assignment() and time.time() - t0 < 25:
    c.poll(0.2)
c.commit(offsets=[TopicPartition("so2-in", 0, 0), TopicPartition("so2-in", 1, 0)], asynchronous=False)
c.close()
print("ok")
PY]]):format(k.PYTHON, h.q(B))
        local pipe = io.popen(cmd)
        local res = pipe:read("*a")
        pipe:close()
        assert.truthy(res:find("ok", 1, true), res)

        local more = {}
        for i = 1, 3 do
            more[i] = { topic = "so2-in", key = "k0", value = "v", ts = 1700000001000 + i,
                partition = h.partition_for("k0", 2) }
        end
        k.produce(B, more, dir)
        local p2 = k.start_eddy(dir, "so2b", script, B, { "--no-watch" })
        procs[#procs + 1] = p2
        k.wait_records(B, "so2-out", 33, 30, p2)
        k.sleep(1.5)
        assert.are.equal(0, p2:stop("TERM", 15), p2:stderr())
        local err = p2:stderr()
        assert.truthy(err:find("the state reflects inputs up to offset", 1, true), err)
        assert.truthy(err:find("3 record%(s%) in"), err)
        -- the last count per key: k0 had 10, then 3 more
        local last = {}
        for _, r in ipairs(k.consume(B, "so2-out")) do last[r.key] = tonumber(r.payload) end
        assert.are.same({ k0 = 13, k1 = 10, k2 = 10 }, last)
    end)
end)
