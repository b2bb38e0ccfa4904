-- wrk script for the SIGTERM-under-load test: counts responses, and those saying "Connection: close" (lame duck).
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   responses = 0
   closes = 0
end

function response(status, headers, body)
   responses = responses + 1
   local c = headers["connection"] or headers["Connection"]
   if c ~= nil and string.lower(c) == "close" then
      closes = closes + 1
   end
end

function done(summary, latency, requests)
   local r, c = 0, 0
   for _, t in ipairs(threads) do
      r = r + t:get("responses")
      c = c + t:get("closes")
   end
   io.write(string.format("STATOR responses=%d closes=%d\n", r, c))
end
