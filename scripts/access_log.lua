-- access_log.lua: turn raw web-server access logs into structured JSON events.
--
-- Input: one line per request in Apache/nginx "combined" format, e.g.
--   203.0.113.7 - alice [12/Mar/2024:09:15:02 +0000] "GET /cart?id=9 HTTP/1.1" 200 5120 "https://shop.example.com/" "Mozilla/5.0 ..."
-- Output (topic http-requests), keyed by client IP, with the log's own time as
-- the record timestamp:
--   {"client":"203.0.113.7","user":"alice","method":"GET","path":"/cart","query":"id=9",
--    "protocol":"HTTP/1.1","status":200,"bytes":5120,"referrer":"https://shop.example.com/",
--    "user_agent":"Mozilla/5.0 ...","ts":1710234902000}
-- A line that does not parse (truncated, TLS noise on port 80, ...) is a bad
-- record: it goes to the dead-letter queue with the reason, the run goes on.
--
-- Try it:
--   build/eddy run scripts/access_log.lua --input scripts/data/access.log \
--       --input-format lines --dlq bad-lines.jsonl
local eddy = require "eddy"
local timeutil = require "lib.timeutil"      -- scripts/lib/timeutil.lua

local job = eddy.job { name = "access-log" }  -- on_error defaults to "dlq"

-- %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"
local COMBINED = '^(%S+) %S+ (%S+) %[([^%]]+)%] "(%u+) (%S+) (HTTP/[%d.]+)" (%d%d%d) (%S+) "([^"]*)" "([^"]*)"$'

-- A custom value serde: decoding a line either gives a table or raises an
-- error, which makes the record a bad record (eddy.stage = "deserialize").
local function parse(line)
    local client, user, time, method, target, protocol, status, bytes, referrer, agent =
        line:match(COMBINED)
    if not client then error("not a combined-format log line", 0) end
    local ts = timeutil.clf(time)
    if not ts then error("bad time: " .. time, 0) end
    local path, query = target:match("^([^?]*)%??(.*)$")
    return {
        client = client,
        user = user ~= "-" and user or nil,        -- nil fields are left out of the JSON
        method = method,
        path = path,
        query = query ~= "" and query or nil,
        protocol = protocol,
        status = tonumber(status),
        bytes = tonumber(bytes) or 0,              -- "-" means no body
        referrer = referrer ~= "-" and referrer or nil,
        user_agent = agent,
        ts = ts,
    }
end

job:source("access-logs", {
        value = { decode = parse },
        timestamp = function(_, req) return req.ts end,   -- event time = the log's time
    })
    -- load-balancer health checks are noise here
    :filter_not(function(_, req) return req.path == "/healthz" end)
    :select_key(function(_, req) return req.client end)
    :to("http-requests", { value = "json" })

return job
