-- wrk script for the warm-up: alternates /hello and /items/{id} (ids 1..1000), so both routes are warm.
local i = 0

request = function()
  i = i + 1
  if i % 2 == 0 then
    return wrk.format("GET", "/hello")
  end
  return wrk.format("GET", "/items/" .. (math.floor(i / 2) % 1000 + 1))
end
