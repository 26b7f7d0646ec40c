-- spec/memcheck_spec.lua: a file-mode job under valgrind's memcheck (issue 10: no
-- definitely-lost blocks, no invalid access). The job goes through every part a
-- file-mode record can touch: JSON decode, a filter, a failing handler (DLQ), a
-- malformed line (DLQ), a repartition, a windowed count in LMDB, the sink.
local h = require "spec.helper"
local cjson = require "cjson"

local JOB = [[
local eddy = require "eddy"
local job = eddy.job { name = "memcheck" }
job:source("in", { value = "json" })
   :filter(function(k, v) return v.n % 3 ~= 0 end)
   :map_values(function(v) if v.n == 7 then error("seven") end return v end)
   :select_key(function(k, v) return k .. "/" .. (v.n % 2) end)
   :group_by_key()
   :window(eddy.tumbling { size = "10s", grace = "1s" })
   :count { store = "c" }
   :to_stream()
   :map_values(tostring)
   :to("out")
return job
]]

local T0 = 1700000000000

-- the input, and what the job must give: the last count per (key, window start)
local function input_and_expected()
    local lines, expected, dead = {}, {}, 0
    for i = 0, 2999 do
        local key, n, ts = "k" .. (i % 50), i % 20, T0 + i * 10
        if i % 97 == 0 then
            lines[#lines + 1] = cjson.encode({ key = key, payload = "{bad", ts = ts })
            dead = dead + 1
        else
            lines[#lines + 1] = cjson.encode({ key = key, payload = cjson.encode({ n = n }), ts = ts })
            if n % 3 ~= 0 then
                if n == 7 then
                    dead = dead + 1
                else
                    local w = key .. "/" .. (n % 2) .. "@" .. (ts - ts % 10000)
                    expected[w] = (expected[w] or 0) + 1
                end
            end
        end
    end
    return table.concat(lines, "\n") .. "\n", expected, dead
end

describe("memcheck", function()
    it("a file-mode job with a window, a repartition and DLQ records: no leak, no invalid access (valgrind)", function()
        if h.no_valgrind() then
            pending(h.no_valgrind())
            return
        end
        local dir = h.tmpdir()
        local text, expected, dead = input_and_expected()
        h.write(dir .. "/job.lua", JOB)
        h.write(dir .. "/in.jsonl", text)
        local cmd = ("valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=9 " ..
            "--log-file=%s %s run %s --input %s --output %s --dlq %s --state-dir %s --no-watch --quiet " ..
            "> /dev/null 2>&1"):format(h.q(dir .. "/vg.log"), h.q(h.EDDY), h.q(dir .. "/job.lua"),
            h.q(dir .. "/in.jsonl"), h.q(dir .. "/out"), h.q(dir .. "/dlq"), h.q(dir .. "/state"))
        local ok, _, code = os.execute(cmd)
        if type(ok) == "number" then code = ok / 256 end
        local log = h.read(dir .. "/vg.log") or ""
        assert.are.equal(0, code, "valgrind exit " .. tostring(code) .. ":\n" .. log:sub(1, 4000))
        assert.is_falsy(log:find("definitely lost: [1-9]"), log:sub(1, 4000))
        assert.is_falsy(log:find("Invalid read") or log:find("Invalid write"), log:sub(1, 4000))
        local got = {}
        for _, e in ipairs(h.envelopes(h.read(dir .. "/out"))) do
            -- the last update of each window is its count (one task per key after the repartition)
            got[e.key .. "@" .. (e.ts - e.ts % 10000)] = tonumber(e.payload)
        end
        assert.are.same(expected, got)
        assert.are.equal(dead, #h.envelopes(h.read(dir .. "/dlq")))
        os.execute("rm -rf " .. h.q(dir))
    end)
end)
