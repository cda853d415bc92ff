-- LuaRocks configuration for an offline install of genesys-notify on Debian 12.
--   LUAROCKS_CONFIG=rockspec/luarocks-config.lua luarocks --lua-version=5.4 make \
--     rockspec/genesys-notify-scm-1.rockspec
-- luacheck: globals rocks_servers rocks_provided rocks_trees lua_interpreter, read globals home lua_version
-- It replaces the system configuration (/etc/luarocks/config-*.lua) for that command only.

-- No rock server: everything the rockspec depends on is on the machine already.
rocks_servers = {}

-- Debian's lua-cjson package (2.1.0) ships cjson.so for Lua 5.1 to 5.4 on the default cpath:
-- declare it provided so LuaRocks does not try to fetch the rock. (Lua itself is always provided.)
rocks_provided = {
  ["lua-cjson"] = "2.1.0-1",
}

-- Same trees as Debian's own configuration: as root, `luarocks make` installs into /usr/local,
-- whose share/lua/<v> and lib/lua/<v> are on Debian's default package.path/cpath, so
-- `lua5.4 -e 'require "genesys.notify.backoff"'` works from any directory afterwards.
-- `--local` uses ~/.luarocks; `--tree DIR` any other folder.
rocks_trees = {
  { name = "user", root = home .. "/.luarocks" },
  { name = "system", root = "/usr/local" },
}

-- For Lua 5.1 this project builds for LuaJIT only (its core needs luaL_traceback & co., which
-- PUC Lua 5.1 lacks): the wrapper LuaRocks writes for bin/genesys-notify must run luajit, not
-- the lua5.1 it would find first in /usr/bin.
if lua_version == "5.1" then
  lua_interpreter = "luajit"
end
