-- The offline LuaRocks install: `luarocks make` with rockspec/luarocks-config.lua into a
-- temporary tree, then `require "genesys.notify.backoff"` from another directory with only
-- LUA_PATH/LUA_CPATH pointing into that tree. Runs for the interpreter busted runs under (Lua 5.4,
-- or LuaJIT with LuaRocks' 5.1 tree and LuaJIT's headers). Skipped in sanitizer runs: the rock is
-- an ordinary, unsanitized build.
local is_jit = rawget(_G, "jit") ~= nil
local abi = is_jit and "5.1" or _VERSION:match("%d+%.%d+")
local interp = is_jit and "luajit" or "lua" .. abi
local san = os.getenv("GN_SAN")

local function sh(cmd)
  local f = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\""))
  local out = f:read("*a")
  f:close()
  local code = tonumber(out:match("exit=(%d+)%s*$"))
  return code, (out:gsub("exit=%d+%s*$", ""))
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local describe_rock = (san and san ~= "") and pending or describe

describe_rock("the offline rock (" .. interp .. ")", function()
  local tree, code, out

  setup(function()
    tree = os.tmpname()
    os.remove(tree)
    assert(os.execute("mkdir -p " .. q(tree)))
    local vars = ""
    if is_jit then
      local _, flags = sh("pkg-config --cflags-only-I luajit")
      local inc = assert(flags:match("%-I(%S+)"), "pkg-config found no LuaJIT headers: " .. flags)
      vars = " LUA_INCDIR=" .. q(inc) .. " LUA=$(command -v luajit)"
    end
    code, out = sh("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL"
      .. " LUAROCKS_CONFIG=rockspec/luarocks-config.lua luarocks --lua-version=" .. abi
      .. " --tree " .. q(tree) .. " make rockspec/genesys-notify-scm-1.rockspec" .. vars)
  end)

  teardown(function()
    if tree then os.execute("rm -rf " .. q(tree)) end
  end)

  it("installs without a rock server, taking lua-cjson as provided", function()
    assert.equal(0, code, out)
    assert.truthy(out:find("lua-cjson (2.1.0-1 provided by VM)", 1, true), out)
    assert.truthy(out:find("is now installed in", 1, true), out)
  end)

  it("is found from another directory through the tree's paths alone", function()
    assert.equal(0, code, out)
    local lpath = tree .. "/share/lua/" .. abi .. "/?.lua;" .. tree .. "/share/lua/" .. abi
      .. "/?/init.lua;;"
    local cpath = tree .. "/lib/lua/" .. abi .. "/?.so;;"
    -- Delays are printed with %d: Lua 5.4 returns them as floats (100.0), LuaJIT as numbers.
    local script = [[
      local b = require "genesys.notify.backoff"
      local d = b.new{ jitter = "none", base_ms = 100, max_ms = 1000 }:delays(3)
      for i = 1, #d do d[i] = string.format("%d", d[i]) end
      io.write(package.searchpath("genesys.notify.backoff", package.path), " ",
               package.searchpath("genesys.notify.core", package.cpath), " ",
               table.concat(d, ","))
    ]]
    local rc, res = sh("cd / && LUA_PATH=" .. q(lpath) .. " LUA_CPATH=" .. q(cpath) .. " "
      .. interp .. " -e " .. q(script))
    assert.equal(0, rc, res)
    local lua_file, so_file, delays = res:match("^(%S+) (%S+) (%S+)$")
    assert.equal(tree .. "/share/lua/" .. abi .. "/genesys/notify/backoff.lua", lua_file, res)
    assert.equal(tree .. "/lib/lua/" .. abi .. "/genesys/notify/core.so", so_file, res)
    assert.equal("100,200,400", delays)
  end)

  it("installs the genesys-notify command, which runs from another directory", function()
    assert.equal(0, code, out)
    local bin = tree .. "/bin/genesys-notify"
    local rc, res = sh("cd / && env -u LUA_PATH -u LUA_CPATH -u GN_BUILD " .. q(bin) .. " --version")
    assert.equal(0, rc, res)
    assert.truthy(res:find("^genesys%-notify 0%.1%.0 %(Lua 5%.") , res)
    assert.equal(is_jit, res:find("LuaJIT", 1, true) ~= nil, res)
    rc, res = sh("cd / && env -u LUA_PATH -u LUA_CPATH -u GN_BUILD " .. q(bin) .. " --max-events x")
    assert.equal(2, rc, res)
    assert.truthy(res:find("--max-events: expected an integer", 1, true), res)
  end)
end)

-- The release: `make src-rock` packs the release rockspec with the source archive of the checkout;
-- the .src.rock alone, copied into an empty folder, installs without a rock server and without the
-- checkout (the build runs in LuaRocks' own unpacked copy), and its version is the rockspec's.
describe_rock("the release source rock (" .. interp .. ")", function()
  local dist, tree, work, code, out, rock, version

  setup(function()
    local base = os.tmpname()
    os.remove(base)
    dist, tree, work = base .. "/dist", base .. "/tree", base .. "/work"
    assert(os.execute("mkdir -p " .. q(dist) .. " " .. q(tree) .. " " .. q(work)))
    local _, spec = sh("ls rockspec/genesys-notify-[0-9]*-1.rockspec")
    version = assert(spec:match("genesys%-notify%-([%d%.]+)%-1%.rockspec"), spec)
    rock = "genesys-notify-" .. version .. "-1.src.rock"
    code, out = sh("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory src-rock DIST_DIR="
      .. q(dist) .. " && cp " .. q(dist .. "/" .. rock) .. " " .. q(work .. "/"))
    if code ~= 0 then return end
    local vars = ""
    if is_jit then
      local _, flags = sh("pkg-config --cflags-only-I luajit")
      vars = " LUA_INCDIR=" .. q(flags:match("%-I(%S+)")) .. " LUA=$(command -v luajit)"
    end
    code, out = sh("cd " .. q(work) .. " && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL LUAROCKS_CONFIG="
      .. q(os.getenv("PWD") .. "/rockspec/luarocks-config.lua") .. " luarocks --lua-version=" .. abi
      .. " --tree " .. q(tree) .. " install ./" .. rock .. vars)
  end)

  teardown(function()
    if dist then os.execute("rm -rf " .. q(dist:gsub("/dist$", ""))) end
  end)

  it("installs from the file alone and reports the rockspec's version", function()
    assert.equal(0, code, out)
    assert.truthy(out:find("genesys-notify " .. version .. "-1 is now installed", 1, true), out)
    local rc, res = sh("cd / && env -u LUA_PATH -u LUA_CPATH -u GN_BUILD " .. q(tree .. "/bin/genesys-notify")
      .. " --version")
    assert.equal(0, rc, res)
    assert.truthy(res:find("genesys-notify " .. version .. " (", 1, true), res)
    local lpath = tree .. "/share/lua/" .. abi .. "/?.lua;;"
    local cpath = tree .. "/lib/lua/" .. abi .. "/?.so;;"
    rc, res = sh("cd / && LUA_PATH=" .. q(lpath) .. " LUA_CPATH=" .. q(cpath) .. " " .. interp
      .. " -e " .. q('io.write(require("genesys.notify")._VERSION)'))
    assert.equal(0, rc, res)
    assert.equal(version, res)
  end)
end)
