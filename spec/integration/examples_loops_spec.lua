-- The event-loop examples (examples/luv.lua, examples/cqueues.lua) run as processes against the
-- emulator: several clients in one loop on client:fd(), events arrive for each, a reset of
-- every connection is a reconnect of each client, SIGTERM closes them all and the process exits
-- 0. Under LuaJIT as well where Debian has the module for it (lua-luv does, lua-cqueues does
-- not: that case is then pending).
local emulator = require "support.emulator"

local T = "v2.users.loops.presence"
local NCLIENTS = 3
local SLOW = require("support.build").slow

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local interpreter = require("support.build").interpreter

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function count(text, pat)
  local n = 0
  for _ in text:gmatch(pat) do n = n + 1 end
  return n
end

local function wait_for(fn, timeout_s)
  local deadline = os.time() + timeout_s * SLOW
  while os.time() <= deadline do
    local v = fn()
    if v then return v end
    emulator.sleep(0.05)
  end
  return nil
end

-- Starts an example in the background; returns {dir, pid, out(), err(), rc()}.
local function spawn(example, emu)
  local dir = io.popen("mktemp -d /tmp/gn-loop.XXXXXX"):read("*l")
  local root = io.popen("pwd"):read("*l")
  local build = os.getenv("GN_BUILD")
  local lua_path = root .. "/lua/?.lua;;"
  local cpath = build .. "/?.so;;"
  local cmd = "GENESYSCLOUD_OAUTHCLIENT_ID=test-id GENESYSCLOUD_OAUTHCLIENT_SECRET=test-secret " ..
    "LUA_PATH=" .. shq(lua_path) .. " LUA_CPATH=" .. shq(cpath) .. " " .. shq(interpreter()) ..
    " " .. shq(root .. "/examples/" .. example) .. " --gateway " ..
    shq("https://localhost:" .. string.format("%d", emu.port)) .. " --ca-file " ..
    shq(emu.ca_file) .. " --clients " .. NCLIENTS .. " " .. T
  local inner = cmd .. " >" .. shq(dir .. "/out") .. " 2>" .. shq(dir .. "/err") ..
    " </dev/null & echo $! >" .. shq(dir .. "/pid") .. "; wait $!; echo $? >" .. shq(dir .. "/rc")
  os.execute("sh -c " .. shq(inner) .. " >/dev/null 2>&1 &")
  local p = { dir = dir }
  p.pid = wait_for(function() return tonumber(read_file(dir .. "/pid"):match("%d+") or "") end, 10)
  function p.out() return read_file(dir .. "/out") end
  function p.err() return read_file(dir .. "/err") end
  function p.rc() return tonumber(read_file(dir .. "/rc"):match("%d+") or "") end
  function p.cleanup()
    if not p.rc() and p.pid then os.execute("kill -KILL " .. p.pid .. " 2>/dev/null") end
    os.execute("rm -rf " .. shq(dir))
  end
  return p
end

for _, example in ipairs { "luv.lua", "cqueues.lua" } do
  local module = example:gsub("%.lua$", "")
  describe("examples/" .. example, function()
    if not pcall(require, module) then
      pending("lua-" .. module .. " is not installed for this Lua (make deps installs it for 5.4)")
      return
    end
    local emu
    setup(function() emu = emulator.start { tls = true } end)
    teardown(function() if emu then emu:stop() end end)

    it(NCLIENTS .. " clients in one loop: events, a reconnect each, a clean close on SIGTERM", function()
      local p = spawn(example, emu)
      finally(p.cleanup)
      local prefix = module .. "%-%d+ "
      local function connected() return count(p.err(), prefix .. "connected ") end
      assert.truthy(wait_for(function() return connected() >= NCLIENTS end, 20),
        "not every client connected:\n" .. p.err())
      -- one event reaches every client
      assert.equals(200, (emu:admin("POST", "publish", { topic = T, eventBody = { n = 1 } })))
      assert.truthy(wait_for(function() return count(p.out(), '"n":1') >= NCLIENTS end, 10),
        "events:\n" .. p.out() .. p.err())
      for n = 1, NCLIENTS do
        assert.truthy(p.out():find(module .. "-" .. n .. " " .. T .. " ", 1, true), p.out())
      end
      -- every connection reset (TCP RST): every client reconnects in the same loop
      local _, chans = emu:admin("GET", "channels")
      local reset = 0
      for _, ch in ipairs(chans.entities) do
        if ch.connected then
          assert.equals(200, (emu:admin("POST", "channels/" .. ch.id .. "/reset")))
          reset = reset + 1
        end
      end
      assert.equals(NCLIENTS, reset)
      assert.truthy(wait_for(function() return connected() >= 2 * NCLIENTS end, 20),
        "not every client reconnected:\n" .. p.err())
      assert.equals(200, (emu:admin("POST", "publish", { topic = T, eventBody = { n = 2 } })))
      assert.truthy(wait_for(function() return count(p.out(), '"n":2') >= NCLIENTS end, 10),
        "events after the reconnect:\n" .. p.out())
      -- clean close
      os.execute("kill -TERM " .. p.pid)
      local rc = wait_for(p.rc, 20)
      assert.equals(0, rc, p.err())
      assert.truthy(p.out():find("closed clients=" .. NCLIENTS .. " events=" .. 2 * NCLIENTS ..
        " on sigterm", 1, true), p.out())
      assert.is_nil(p.err():find("Sanitizer", 1, true), p.err())
      assert.is_nil(p.err():find("runtime error", 1, true), p.err())
      assert.truthy(wait_for(function() return emu:stats().global.open_connections == 0 end, 10))
    end)
  end)
end
