-- What build this spec run is, for the specs and the processes they start (no dependency, so the
-- support modules that do not load the client can use it too):
--   local build = require "support.build"
--   build.san            GN_SAN: "" (plain), "asan" or "tsan"
--   build.under_valgrind this process runs under valgrind (its preload library is mapped)
--   build.slow           how many times slower than a plain build (valgrind 20, sanitizers 3):
--                        waits, deadlines and lease times are multiplied by it
--   build.rss_slack_kb   what the build's own machinery adds to this process's RSS, for bounds
--                        on RSS growth: under valgrind, memcheck's translations and debug info
--                        (the first time code runs or a library loads) and the freed blocks it
--                        holds back (--freelist-vol, 20 MB) with their shadow: 96 MB; else 0
--   build.interpreter()  the command for a Lua process a spec starts (fleet nodes, the CLI, the
--                        examples): this run's interpreter (lua5.4 or luajit); $(BINDIR)/lua_host
--                        in sanitizer builds; under `make valgrind-lua` (GN_VALGRIND_LOGS set)
--                        spec/support/valgrind_lua.sh, the interpreter under memcheck, logging
--                        to a file per process that the make target checks at the end
local _M = {}

_M.san = os.getenv("GN_SAN") or ""

local function under_valgrind()
  local f = io.open("/proc/self/maps")
  if not f then return false end
  local s = f:read("*a")
  f:close()
  return s:find("vgpreload", 1, true) ~= nil
end
_M.under_valgrind = under_valgrind()

_M.slow = _M.under_valgrind and 20 or (_M.san ~= "" and 3 or 1)

_M.rss_slack_kb = _M.under_valgrind and 96 * 1024 or 0

function _M.interpreter()
  if _M.san ~= "" then return os.getenv("GN_BINDIR") .. "/lua_host" end
  local lua = rawget(_G, "jit") and "luajit" or "lua5.4"
  if (os.getenv("GN_VALGRIND_LOGS") or "") ~= "" and lua == "lua5.4" then
    return io.popen("pwd"):read("*l") .. "/spec/support/valgrind_lua.sh"
  end
  return lua
end

return _M
