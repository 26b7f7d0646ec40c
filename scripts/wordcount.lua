-- wordcount.lua: the classic Kafka Streams example, a running count of every
-- word seen, and eddy's `make run` demo.
--
-- Input (topic text-lines): one line of text per record, any key.
-- Output (topic word-counts): keyed by word, the word's count so far as
-- decimal text; every new occurrence of a word forwards its new count, so the
-- latest record per key is the current count (a changelog, as KTable#toStream).
--
-- flat_map changes the key (to the word), so group_by_key repartitions: in Kafka
-- mode through the internal topic wordcount-counts-repartition, so that every
-- occurrence of a word reaches the one task that owns that word's count. The
-- counts live in the LMDB store "counts" (under --state-dir) and survive restarts.
--
-- Try it:
--   make run                                  (through a broker: scripts/demo.sh)
--   build/eddy run scripts/wordcount.lua --input scripts/data/poems.txt \
--       --input-format lines --partitions 4 --state-dir /tmp/wc-state
-- Run the second command twice: the counts go on from where they were.
local eddy = require "eddy"

local job = eddy.job { name = "wordcount" }

job:source("text-lines")
   :flat_map(function(_, line, emit)
      for word in line:lower():gmatch("%a+") do emit(word, 1) end
   end)
   :group_by_key()
   :count { store = "counts" }
   :to_stream()
   :map_values(tostring)
   :to("word-counts")

return job
