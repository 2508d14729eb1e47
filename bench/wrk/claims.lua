-- POST /api/action/do, each request claiming a different pre-recorded completion with its owner's token.
-- wrk -s claims.lua URL -- <file of "actionId token user" lines> <threads>
-- Thread k takes lines k, k+threads, ...: no two requests ever claim the same actionId.
package.path = package.path .. ";" .. debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "?.lua"
require "report"

local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  local nthreads = tonumber(args[2])
  bodies, headers = {}, {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == id then
      local action_id, token = line:match("^(%S+) (%S+)")
      bodies[#bodies + 1] = '{"actionId":"' .. action_id .. '"}'
      headers[#headers + 1] = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}
    end
    i = i + 1
  end
  pos = 0
end

function request()
  -- Past the end of its share a thread repeats its last claim: a 409 that the bench counts as an error.
  if pos < #bodies then pos = pos + 1 end
  return wrk.format("POST", "/api/action/do", headers[pos], bodies[pos])
end

done = report
