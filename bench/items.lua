-- wrk script: GET /items/{id} with ids 1..1000 in turn (each wrk thread keeps its own counter).
local i = 0

request = function()
  i = i % 1000 + 1
  return wrk.format("GET", "/items/" .. i)
end
