-- scripts/hello.lua: the README's first job. English greetings, shouted.
local eddy = require "eddy"
local job = eddy.job { name = "hello" }

job:source("greetings", { value = "json" })
   :filter(function(k, v) return v.lang == "en" end)
   :map_values(function(v) return { text = v.text:upper(), len = #v.text } end)
   :to("shouts", { value = "json" })

return job
