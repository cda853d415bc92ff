-- A pool at Genesys's limits against the emulator (a separate process, TLS): one client with
-- 20,000 topics on 20 channels of 1,000, fed 1,000 events/s in total (50/s per channel):
--   1. time until all 20 channels are open with every topic confirmed
--   2. memory: RSS of the process with the pool open, less RSS before it, per channel
--      (a one-topic client is connected first so the context, TLS and the module are counted
--      before, and the 20,000 names exist as Lua strings already; the pool's figure is its
--      channels, topic sets, index, request bodies and sockets)
--   3. events received against events sent, and the process's CPU time per second at that rate
--
--   GN_BINDIR=build/lua5.4/bin lua5.4 bench/pool_bench.lua [build dir] [seconds]
-- The client's budget is 21 (20 channels and the spare): Genesys's 20 per credential leaves 19
-- usable by default, so the emulator is started with --max-channels 21.
local build = arg[1] or ("build/" .. (rawget(_G, "jit") and "luajit" or "lua5.4"))
local SECS = tonumber(arg[2]) or 10
package.path = "lua/?.lua;spec/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath
local emulator = require "support.emulator"
local wait = require "support.wait"
local notify = require "genesys.notify"

local CHANNELS, PER, RATE = 20, 1000, 1000

local function rss_kb()
  local f = io.open("/proc/self/status")
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local emu = emulator.start { tls = true, args = { "--max-channels", tostring(CHANNELS + 1) } }
local ok, err = pcall(function()
  print(string.format("pool bench: %s, %d channels x %d topics, %d events/s in total for %d s",
    rawget(_G, "jit") and jit.version or _VERSION, CHANNELS, PER, RATE, SECS))
  local warm = notify.new(wait.config(emu, nil, { topics = { "v2.users.warm.presence" }}))
  warm:start()
  assert(wait.until_(warm, function() return warm:state() == "open" end, 10000))
  -- the names exist before the first figure: what is measured is the client's side
  local topics = {}
  for i = 1, CHANNELS * PER do topics[i] = "v2.users.pool-" .. i .. ".presence" end
  collectgarbage(); collectgarbage()
  local rss0 = rss_kb()
  local n = 0
  local c = notify.new(wait.config(emu, nil, { topics = topics, channel_budget = CHANNELS + 2,
    queue_limit = 100000, on_event = function() n = n + 1 end }))
  warm:close()
  local t0 = notify.now_ms()
  c:start()
  assert(wait.until_(c, function()
    local m = c:metrics()
    return #m.channels == CHANNELS and m.state == "open" and m.topics_confirmed == CHANNELS * PER
  end, 120000), "the pool did not open")
  local t_open = notify.now_ms() - t0
  collectgarbage(); collectgarbage()
  local rss1 = rss_kb()
  print(string.format("  %d channels open, %d topics confirmed in %.0f ms", CHANNELS, CHANNELS * PER, t_open))
  print(string.format("  RSS +%d KB with the pool open = %.1f KB per channel of %d topics",
    rss1 - rss0, (rss1 - rss0) / CHANNELS, PER))
  -- 3. 50 events/s on each channel
  local per_ch = math.floor(RATE / CHANNELS)
  local st = emu:admin("POST", "channels/*/events", { count = per_ch * SECS, rate = per_ch, size = 1024 })
  assert(st == 200, "events: HTTP " .. tostring(st))
  local cpu0, w0 = os.clock(), notify.now_ms()
  local want = per_ch * SECS * CHANNELS
  wait.until_(c, function() return n >= want end, (SECS + 30) * 1000)
  local cpu, wall = os.clock() - cpu0, (notify.now_ms() - w0) / 1000
  local m = c:metrics()
  local rss2 = rss_kb()
  print(string.format("  %d of %d events in %.1f s (%.0f events/s), dropped %d; " ..
    "CPU %.2f s = %.1f%% of one core; RSS +%d KB while streaming", n, want, wall, n / wall, m.dropped, cpu,
    100 * cpu / wall, rss2 - rss0))
  local lo, hi
  for _, ch in ipairs(m.channels) do
    lo = math.min(lo or ch.events, ch.events)
    hi = math.max(hi or ch.events, ch.events)
  end
  print(string.format("  events per channel: %d to %d", lo, hi))
  c:close()
  assert(#topics == CHANNELS * PER) -- the names lived through the figures
end)
emu:stop()
if not ok then error(err, 0) end
