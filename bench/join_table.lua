-- bench/join_table.lua: bench scenario j. A stream-table join (Kafka Streams'
-- KStream#join(KTable)): every record of the stream topic looks up its key in
-- a table of 1M keys (job:table, an LMDB store per task, logged to
-- <app>-j-table-changelog) and goes out as "stream value|table value".
-- bench.py runs it twice per round on one --state-dir and app id: first with
-- BENCH_STREAM naming an empty topic, to load the table alone (timed through
-- --http's eddy_records_in_total), then with the stream topic (timed by its
-- outputs, as the other Kafka scenarios). The table and stream topics have the
-- same partition count (co-partitioned) and are keyed with murmur2.
local eddy = require "eddy"

local job = eddy.job { name = "bench-join-table" }

local tbl = job:table(os.getenv("BENCH_TABLE") or "bench-j-table", { store = "j-table" })

job:source(os.getenv("BENCH_STREAM") or "bench-j-stream")
   :join(tbl, function(v, tv) return v .. "|" .. tv end)
   :to(os.getenv("BENCH_OUT") or "bench-out-j")

return job
