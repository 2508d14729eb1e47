-- GET a path, optionally with a bearer token: wrk -s get.lua URL -- <token or ->
package.path = package.path .. ";" .. debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "?.lua"
require "report"

function init(args)
  if args[1] and args[1] ~= "-" then
    wrk.headers["Authorization"] = "Bearer " .. args[1]
  end
end

done = report
