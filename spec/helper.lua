-- Puts the build output and the Lua sources on the module paths, for the interpreter the
-- specs run under. `make test` passes GN_BUILD; a bare `busted` finds build/<lua>.
local is_jit = rawget(_G, "jit") ~= nil
local build = os.getenv("GN_BUILD")
if not build or build == "" then
  build = "build/" .. (is_jit and "luajit" or "lua5.4")
end
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

-- busted 2 keeps only the last function given to finally() in a test (each call replaces the
-- one before), so a test that registered two cleanups ran only its last. Every test's
-- finally() here accumulates instead: the cleanups run in reverse order of registration, all
-- of them even when one raises (the first error is reported).
local busted = require "busted"
busted.subscribe({ "test", "start" }, function(element)
  local env = element.env
  local set = env and env.finally
  if set then
    local fns = {}
    env.finally = function(fn)
      fns[#fns + 1] = fn
      set(function()
        local err
        for i = #fns, 1, -1 do
          local ok, e = pcall(fns[i])
          if not ok and err == nil then err = e end
        end
        if err ~= nil then error(err, 0) end
      end)
    end
  end
  return nil, true
end)
