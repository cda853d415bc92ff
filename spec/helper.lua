-- Puts the build output and the Lua sources on the module paths, for the interpreter the
-- specs run under. `make test` passes GN_BUILD; a bare `busted` finds build/<lua>.
local is_jit = rawget(_G, "jit") ~= nil
local build = os.getenv("GN_BUILD")
if not build or build == "" then
  build = "build/" .. (is_jit and "luajit" or "lua5.4")
end
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath
