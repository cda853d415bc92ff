-- Takeover times of a fleet (docs/fleet.md): three candidate processes
-- (spec/support/fleet_node.lua) behind a real redis-server, the emulator over TLS with a steady
-- event stream; the holder is killed with kill -9, ROUNDS times per lease_ms, and a candidate
-- respawned each time. For each takeover:
--   acquired: kill -> a candidate took the lease (the fence in Redis moved)
--   open:     kill -> the new holder's stream is connected at the emulator
--   gap:      the deaf interval the gap marker reports (previous holder's watermark - 1 s -> open)
--   make bench-fleet   (or: GN_BUILD=build/lua5.4 GN_BINDIR=build/lua5.4/bin lua5.4 bench/fleet_takeover.lua)
package.path = "lua/?.lua;spec/?.lua;" .. package.path
local build = os.getenv("GN_BUILD") or "build/lua5.4"
package.cpath = build .. "/?.so;" .. package.cpath
local emulator = require "support.emulator"
local redis = require "support.redis"

local ROUNDS = tonumber(arg[1]) or 10
local LEASES = { 1000, 3000 }
local TOPIC = "v2.users.bench.presence"
local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function read_file(p)
  local f = io.open(p, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end
local function now_ms()
  local p = io.popen("date +%s%3N")
  local v = tonumber(p:read("*l"))
  p:close()
  return v
end
local interp = rawget(_G, "jit") and "luajit" or "lua5.4"

local r = redis.start()
local emu = emulator.start { tls = true, args = { "--event-rate", "20" } }
local procs = {}
local function spawn(key, lease_ms)
  local dir = io.popen("mktemp -d /tmp/gn-fbench.XXXXXX"):read("*l")
  local env = { FLEET_ROLE = "holder", FLEET_STOP = dir .. "/stop", FLEET_EMU_PORT = tostring(emu.port),
    FLEET_CA = emu.ca_file, FLEET_TOPIC = TOPIC, FLEET_REDIS = r.url, FLEET_KEY = key,
    FLEET_LEASE_MS = tostring(lease_ms), LUA_PATH = "lua/?.lua;;", LUA_CPATH = build .. "/?.so;;" }
  local parts = { "env -u LD_PRELOAD" }
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. shq(v) end
  os.execute("sh -c " .. shq(table.concat(parts, " ") .. " " .. interp ..
    " spec/support/fleet_node.lua >/dev/null 2>&1 & echo $! >" .. shq(dir .. "/pid")) .. " ")
  local p = { dir = dir, pid = tonumber(read_file(dir .. "/pid"):match("%d+")) }
  procs[#procs + 1] = p
  return p
end
local function holder_pid(key)
  return tonumber((r:cli("GET", key .. ":lease"):match(":(%d+):")) or "")
end
local function fence(key) return tonumber(r:cli("GET", key .. ":fence")) or 0 end
local function wait(fn, ms)
  local t = now_ms() + ms
  repeat
    local v = fn()
    if v then return v end
    emulator.sleep(0.01)
  until now_ms() > t
end
local function stats(t)
  table.sort(t)
  return string.format("min %5d  median %5d  max %5d", t[1], t[math.floor((#t + 1) / 2)], t[#t])
end

local ok, err = pcall(function()
  print(string.format("fleet takeover bench: %s, 3 candidates, %d kill -9 per lease_ms",
    rawget(_G, "jit") and jit.version or _VERSION, ROUNDS))
  for _, lease in ipairs(LEASES) do
    local key = "gn:bench:" .. lease
    local mine = {}
    for _ = 1, 3 do mine[#mine + 1] = spawn(key, lease) end
    assert(wait(function() return holder_pid(key) and emu:stats().global.open_connections == 1 end, 20000))
    local acq, open, gap = {}, {}, {}
    for _ = 1, ROUNDS do
      emulator.sleep(0.5)
      local pid, f = holder_pid(key), fence(key)
      local t0 = now_ms()
      os.execute("kill -9 " .. pid)
      assert(wait(function() return fence(key) > f end, 5 * lease + 5000), "no takeover")
      acq[#acq + 1] = now_ms() - t0
      assert(wait(function()
        local st = emu:stats()
        for _, c in pairs(st.channels) do
          if c.connected and st.global.open_connections == 1 and holder_pid(key) ~= pid then return true end
        end
      end, 10000))
      open[#open + 1] = now_ms() - t0
      local g = wait(function()
        return r:cli("XREVRANGE", key .. ":gaps", "+", "-", "COUNT", "1"):match("gap_ms\n(%d+)")
      end, 5000)
      gap[#gap + 1] = tonumber(g)
      r:cli("DEL", key .. ":gaps")
      spawn(key, lease)
    end
    print(string.format("lease_ms %5d  acquired after kill: %s ms", lease, stats(acq)))
    print(string.format("lease_ms %5d  stream open after kill: %s ms", lease, stats(open)))
    print(string.format("lease_ms %5d  gap marker's deaf interval: %s ms", lease, stats(gap)))
    for _, p in ipairs(procs) do io.open(p.dir .. "/stop", "w"):close() end
    emulator.sleep(1)
  end
end)
for _, p in ipairs(procs) do
  os.execute("kill -9 " .. p.pid .. " 2>/dev/null")
  os.execute("rm -rf " .. shq(p.dir))
end
emu:stop()
r:stop()
if not ok then error(err) end
