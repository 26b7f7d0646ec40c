-- spec/limits_kafka_spec.lua: resources stay bounded across rebalances (issue 10).
-- A stateful job (LMDB environments opened and closed as partitions come and go,
-- librdkafka's consumer, producer and their threads) through repeated rebalances:
-- a second member joins and leaves; the first one's open files and threads must
-- come back to what they were, and its counts stay right.
local h = require "spec.helper"
local K = require "spec.kafka_helper"

local ROUNDS = 4

local JOB = [[
local eddy = require "eddy"
local job = eddy.job { name = "limits-rebalance" }
job:source("lim-in")
   :group_by_key()
   :count { store = "counts" }
   :to_stream()
   :map_values(tostring)
   :to("lim-out")
return job
]]

local function count_dir(path)
    local p = io.popen("ls " .. path .. " 2>/dev/null | wc -l")
    local n = tonumber(p:read("*a"))
    p:close()
    return n
end

describe("bounded resources across rebalances", function()
    local c = K.cluster({ { "lim-in", 4 }, { "lim-out", 4 } })
    local dir, brokers, procs
    setup(function() dir, brokers, procs = c:start() end)
    teardown(function() c:stop() end)

    it(("%d joins and leaves of a second member leave the first one's open files and threads as they were"):format(ROUNDS), function()
        local script = h.write(dir .. "/job.lua", JOB)
        local a = K.spawn(dir, "a", { h.EDDY, "run", script, "--brokers", brokers, "--state-dir",
            dir .. "/state-a", "--no-watch", table.unpack(K.FAST_GROUP) })
        procs[#procs + 1] = a
        local pid = a:child()
        local sent = 0
        local function send(n)
            local recs = {}
            for i = 1, n do recs[i] = { topic = "lim-in", key = "k" .. ((sent + i) % 20), value = "x" } end
            K.produce(brokers, recs, dir)
            sent = sent + n
        end
        send(40)
        K.wait_records(brokers, "lim-out", 40, 30, a)
        local base_fds, base_threads
        local function assigned(p) return select(2, p:stderr():gsub("%] assigned", "")) end
        for round = 1, ROUNDS do
            local a0 = assigned(a)
            local b = K.spawn(dir, "b" .. round, { h.EDDY, "run", script, "--brokers", brokers, "--state-dir",
                dir .. "/state-b", "--no-watch", table.unpack(K.FAST_GROUP) })
            procs[#procs + 1] = b
            K.wait_for("b" .. round .. " and a to share the partitions", 30, function()
                return assigned(b) > 0 and assigned(a) > a0, b:stderr()
            end, 0.1)
            send(20)
            K.wait_records(brokers, "lim-out", sent, 30, a)
            local a1 = assigned(a)
            b:stop("TERM", 30)
            K.wait_for("a to take b's partitions back", 30, function() return assigned(a) > a1 end, 0.1)
            send(20)
            K.wait_records(brokers, "lim-out", sent, 30, a)
            if round == 2 then
                base_fds, base_threads = count_dir("/proc/" .. pid .. "/fd"), count_dir("/proc/" .. pid .. "/task")
            end
        end
        local fds, threads = count_dir("/proc/" .. pid .. "/fd"), count_dir("/proc/" .. pid .. "/task")
        assert.is_truthy(fds <= base_fds, ("open files: %d after round 2, %d after round %d"):format(base_fds, fds, ROUNDS))
        assert.is_truthy(threads <= base_threads, ("threads: %d after round 2, %d after round %d"):format(base_threads, threads, ROUNDS))
        -- the counts: the last output per key is that key's number of records
        local last = {}
        for _, e in ipairs(K.sort_by_offset(K.consume(brokers, "lim-out"))) do last[e.key] = tonumber(e.payload) end
        for k = 0, 19 do
            local want = 0
            for i = 1, sent do if i % 20 == k then want = want + 1 end end
            assert.are.equal(want, last["k" .. k], ("k%d: %s, want %d"):format(k, tostring(last["k" .. k]), want))
        end
    end)
end)
