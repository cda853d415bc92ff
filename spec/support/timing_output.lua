-- A busted output handler that writes how long each spec file took, a line per file:
-- "<seconds> <file>", to $GN_TIMING_OUT (appended). `make spec-seconds` uses it to write
-- spec/support/spec_seconds.txt, by which spec/support/shard.lua balances make sanitize's parts.
-- Failures are still printed (the file times of a failing run are not written over the last).
return function(_options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.base")()
  local started = {}
  local path = assert(os.getenv("GN_TIMING_OUT"), "GN_TIMING_OUT is not set")
  local out = assert(io.open(path, "a"))
  -- loaded before spec/helper.lua sets the module paths: luv's clock (lua-luv), not ours
  local hrtime = require("luv").hrtime
  local function clock() return hrtime() / 1e6 end
  busted.subscribe({ "file", "start" }, function(file)
    started[file.name] = clock()
    return nil, true
  end)
  busted.subscribe({ "file", "end" }, function(file)
    out:write(("%.1f %s\n"):format((clock() - started[file.name]) / 1000, file.name))
    out:flush()
    return nil, true
  end)
  busted.subscribe({ "test", "end" }, function(element, _, status)
    if status == "failure" or status == "error" then
      io.stderr:write(status, ": ", handler.getFullName(element), "\n")
    end
    return nil, true
  end)
  busted.subscribe({ "error" }, function(element, _, message)
    io.stderr:write("error: ", tostring(element and element.name), ": ", tostring(message), "\n")
    return nil, true
  end)
  return handler
end
