-- GET a list of paths in turn, each with its own bearer token: wrk -s paths.lua URL -- <file of "path token" lines>
-- Requests are formatted once, in init; past the end of the list it starts again from the top.
package.path = package.path .. ";" .. debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "?.lua"
require "report"

function init(args)
  prepared = {}
  for line in io.lines(args[1]) do
    local path, token = line:match("^(%S+) (%S+)")
    prepared[#prepared + 1] = wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
  end
  pos = 0
end

function request()
  pos = pos % #prepared + 1
  return prepared[pos]
end

done = report
