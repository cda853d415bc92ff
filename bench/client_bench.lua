-- The client's own costs against the emulator (a separate process, TLS), side by side:
--   1. memory per idle connected client (N clients of one context), against lws's own floor
--      (ARCHITECTURE.md: 44-47 KB RSS per idle wss client in lws 4.1.6)
--   2. reconnect latency after an abrupt reset (attempt start to open and subscribed), soft
--   3. events per second through poll() for one client (decode to Lua tables included)
--
--   GN_BINDIR=build/lua5.4/bin lua5.4 bench/client_bench.lua [build dir] [clients]
local build = arg[1] or ("build/" .. (rawget(_G, "jit") and "luajit" or "lua5.4"))
local N = tonumber(arg[2]) or 200
package.path = "lua/?.lua;spec/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath
local emulator = require "support.emulator"
local wait = require "support.wait"
local notify = require "genesys.notify"

local function rss_kb()
  local f = io.open("/proc/self/status")
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local emu = emulator.start { tls = true, args = { "--max-channels", tostring(N + 10) } }
local ok, err = pcall(function()
  print(string.format("client bench: %s, %d clients", rawget(_G, "jit") and jit.version or _VERSION, N))

  -- 1. memory per idle client
  local warm = notify.new(wait.config(emu, nil, { topics = { "v2.users.w.presence" } }))
  warm:start()
  wait.until_(warm, function() return warm:state() == "open" end, 10000)
  collectgarbage(); collectgarbage()
  local rss0 = rss_kb()
  -- started ten at a time: a burst of hundreds of TLS handshakes leaves the allocator's peak
  -- behind in RSS, which is not what an idle client costs
  local clients = {}
  local t0 = notify.now_ms()
  for i = 1, N do
    clients[i] = notify.new(wait.config(emu, nil, { topics = { "v2.users.b" .. i .. ".presence" },
      channel_budget = math.min(1000, N + 10) }))
    clients[i]:start()
    if i % 10 == 0 or i == N then
      assert(wait.until_(clients, function()
        for _, c in ipairs(clients) do if c:state() ~= "open" then return false end end
        return true
      end, 120000), "not all clients connected")
    end
  end
  local t_all = notify.now_ms() - t0
  collectgarbage(); collectgarbage()
  local rss1 = rss_kb()
  print(string.format("  %d clients open in %.0f ms; RSS +%d KB = %.1f KB per idle client " ..
    "(lws alone: 44-47 KB)", N, t_all, rss1 - rss0, (rss1 - rss0) / N))
  for _, c in ipairs(clients) do c:close() end
  clients = nil

  -- 2. reconnect latency after RST (soft reconnect, backoff delay excluded by the metric)
  local rec = wait.recorder()
  local c = notify.new(wait.config(emu, rec, { topics = { "v2.users.r.presence" },
    backoff = { base_ms = 1, max_ms = 1, jitter = "none", reset_after_ms = 1 } }))
  c:start()
  wait.until_(c, function() return rec.count("connected") > 0 end, 10000)
  for _ = 1, 50 do
    local n = rec.count("connected")
    emu:admin("POST", "channels/" .. wait.channel_of(rec) .. "/reset", {})
    assert(wait.until_(c, function() return rec.count("connected") > n end, 10000))
  end
  local m = c:metrics()
  print(string.format("  reconnect after RST (soft, %d samples): p50 %.1f ms, p90 %.1f ms, " ..
    "p99 %.1f ms, max %.1f ms", m.latency_ms.count - 1, m.latency_ms.p50, m.latency_ms.p90,
    m.latency_ms.p99, m.latency_ms.max))

  -- 3. events through poll()
  local got = 0
  c:close()
  local rec2 = wait.recorder()
  local c2 = notify.new(wait.config(emu, nil, { topics = { "v2.users.e.presence" },
    queue_limit = 100000, queue_bytes = 1024 * 1024 * 1024, -- the burst waits whole, as before
    on_event = function() got = got + 1 end, on_health = rec2.on_health }))
  c2:start()
  wait.until_(c2, function() return rec2.count("connected") > 0 end, 10000)
  local total = 20000
  emu:admin("POST", "channels/" .. wait.channel_of(rec2) .. "/events",
    { count = total, topic = "v2.users.e.presence", size = 400 })
  local te = notify.now_ms()
  while got < total and notify.now_ms() - te < 60000 do c2:poll(100) end
  local dt = notify.now_ms() - te
  print(string.format("  %d events of ~400 B delivered to on_event in %.0f ms: %.0f events/s " ..
    "(dropped %d)", got, dt, got / dt * 1000, c2:metrics().dropped))
  c2:close()
  warm:close()
end)
emu:stop()
if not ok then error(err, 0) end
