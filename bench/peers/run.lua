-- make bench-peers: the project and its peers, one at a time, against one emulator over TLS.
--
-- Every client (bench/peers/*) does OAuth, creates a channel, subscribes one topic, connects with
-- the emulator's CA and prints lines on stdout: "open <channel>", "done <n> <ok> <ms>" after each
-- burst (ok = every sequence number 1..COUNT arrived, in order; ms = first to last event),
-- "reconnect <ms>" (close noticed -> open), and in idle mode (GN_CONNS > 1) "base" (one
-- connection) then "all" (GN_CONNS connections). This driver publishes, resets, reads
-- /proc/PID/stat (utime+stime, all threads) and /proc/PID/status, and prints one markdown table
-- of medians with the spread (min-max) over BENCH_RUNS runs.
--
--   GN_BINDIR=build/lua5.4/bin lua5.4 bench/peers/run.lua
--   env: BENCH_RUNS (3), BENCH_EVENTS (200000), BENCH_RECONNECTS (20), BENCH_IDLE (50
--        idle connections in one process), BENCH_IDLE_S (10, seconds of idle CPU measured),
--        BENCH_ONLY (comma-separated client keys), BENCH_OUT (keep the clients' output there),
--        BENCH_PERF (a file: `perf record -g` of each client's bursts, FILE-key-size-run.data),
--        BENCH_BASELINE (a build folder: the project from it as one more row, "gnbase"),
--        BENCH_BASELINE_JIT (the same for LuaJIT: "gnbasejit"),
--        BENCH_GN_BUILD (the Lua 5.4 build folder of the "gn54" row, default build/lua5.4)
package.path = "spec/?.lua;lua/?.lua;" .. package.path
local emulator = require "support.emulator"

local RUNS = tonumber(os.getenv("BENCH_RUNS")) or 3
local EVENTS = tonumber(os.getenv("BENCH_EVENTS")) or 200000
local RECONNECTS = tonumber(os.getenv("BENCH_RECONNECTS")) or 20
local IDLE = tonumber(os.getenv("BENCH_IDLE")) or 50
local IDLE_S = tonumber(os.getenv("BENCH_IDLE_S")) or 10
local MANY = tonumber(os.getenv("BENCH_MANY")) or 100      -- clients on one context
local MANY_RATE = tonumber(os.getenv("BENCH_MANY_RATE")) or 1000 -- events/s over all of them
local MANY_S = tonumber(os.getenv("BENCH_MANY_S")) or 10   -- seconds measured
local HARD = tonumber(os.getenv("BENCH_HARD")) or 10       -- hard reconnects (channel expired)
local ONLY = os.getenv("BENCH_ONLY")
local PERF = os.getenv("BENCH_PERF")
local BIN = emulator.bindir()
local TCK = 100   -- getconf CLK_TCK on Linux

local function sh(cmd) return os.execute(cmd) end
local function capture(cmd)
  local p = assert(io.popen(cmd)); local s = p:read("a"); p:close(); return s
end
local function read(path)
  local f = io.open(path); if not f then return nil end
  local s = f:read("a"); f:close(); return s
end
local function now() return tonumber(capture("date +%s.%N")) end
local function sleep(s) sh(string.format("sleep %.3f", s)) end
local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Clients: key, label, command (run from the repository root).
local CLIENTS = {
  { "gn54", "genesys-notify, Lua 5.4", "lua5.4 bench/peers/gn_client.lua " ..
    (os.getenv("BENCH_GN_BUILD") or "build/lua5.4") },
  { "gnjit", "genesys-notify, LuaJIT", "luajit bench/peers/gn_client.lua build/luajit" },
  { "node", "Node 20 + `ws` + `JSON.parse`", "node bench/peers/node_client.js" },
  { "python", "Python 3.11 + `websockets` + `json.loads`", "/usr/bin/python3 bench/peers/py_client.py" },
  { "luahttp51", "lua-http + lua-cjson, Lua 5.1", "lua5.1 bench/peers/luahttp_client.lua" },
  { "luahttpjit", "lua-http + lua-cjson, LuaJIT", "luajit bench/peers/luahttp_client.lua" },
  { "lws", "bare libwebsockets 4.1.6 C client, no parse", BIN .. "/gn-bench-lws" },
  { "lwsjson", "bare libwebsockets + jansson parse", BIN .. "/gn-bench-lws --parse" },
}
-- BENCH_BASELINE=DIR: one more row, the project's Lua 5.4 client with the module built in DIR
-- (DIR/genesys/notify/core.so), for a before/after in the same run.
local BASELINE = os.getenv("BENCH_BASELINE")
if BASELINE then
  table.insert(CLIENTS, 2, { "gnbase", "genesys-notify, Lua 5.4, before (" .. BASELINE .. ")",
    "lua5.4 bench/peers/gn_client.lua " .. BASELINE })
end
-- BENCH_BASELINE_JIT=DIR: the same for the LuaJIT client (DIR built with LUA=luajit), "gnbasejit".
local BASELINE_JIT = os.getenv("BENCH_BASELINE_JIT")
if BASELINE_JIT then
  table.insert(CLIENTS, BASELINE and 4 or 3, { "gnbasejit", "genesys-notify, LuaJIT, before (" ..
    BASELINE_JIT .. ")", "luajit bench/peers/gn_client.lua " .. BASELINE_JIT })
end
if ONLY then
  local keep = {}
  for _, c in ipairs(CLIENTS) do
    if ("," .. ONLY .. ","):find("," .. c[1] .. ",", 1, true) then keep[#keep + 1] = c end
  end
  CLIENTS = keep
end

local function cpu_ticks(pid)
  local s = read("/proc/" .. pid .. "/stat")
  if not s then return nil end
  local f = {}
  for x in s:match("%) (.*)"):gmatch("%S+") do f[#f + 1] = x end
  return tonumber(f[12]) + tonumber(f[13])   -- utime, stime (fields 14, 15)
end
local function rss_kb(pid)
  return tonumber((read("/proc/" .. pid .. "/status") or ""):match("VmRSS:%s*(%d+)"))
end

local emu = emulator.start { tls = true, token_ttl = 86400, channel_ttl = 86400,
  args = { "--max-channels", tostring(IDLE * 4 + 100) } }
-- The emulator helper keeps its curl files in emu.dir under /tmp; a cleanup of /tmp by another
-- program removed it under a run once (every later publish failed): it is made again if gone.
local admin = emu.admin
function emu.admin(self, ...)
  sh("mkdir -p " .. shq(self.dir))
  return admin(self, ...)
end
local dir = os.getenv("BENCH_OUT") or capture("mktemp -d /tmp/gn-peers.XXXXXX"):gsub("%s+$", "")
sh("mkdir -p " .. shq(dir))
local seq = 0

local P = {}
P.__index = P
local function spawn(c, env)
  seq = seq + 1
  local self = setmetatable({ out = dir .. "/" .. c[1] .. "-" .. seq .. ".out" }, P)
  local e = { "GN_BASE=" .. emu.base_url, "GN_CA=" .. emu.ca_file, "GN_CRED=test-id:test-secret",
    "GN_COUNT=" .. EVENTS }
  for k, v in pairs(env) do e[#e + 1] = k .. "=" .. v end
  local cmd = "env " .. table.concat(e, " ") .. " " .. c[3] .. " >" .. shq(self.out) .. " 2>" ..
    shq(self.out .. ".err") .. " </dev/null & echo $!"
  self.pid = tonumber(capture(cmd):match("%d+"))
  return self
end
-- The k-th line starting with word (its fields), waiting up to timeout seconds.
function P:line(word, k, timeout)
  local deadline = now() + timeout
  repeat
    local n = 0
    for l in (read(self.out) or ""):gmatch("[^\n]+") do
      if l:match("^error") then return nil, l end
      if l:match("^" .. word .. "%f[%s%z]") then
        n = n + 1
        if n == k then
          local f = {}
          for x in l:gmatch("%S+") do f[#f + 1] = x end
          return f
        end
      end
    end
    if not read("/proc/" .. self.pid .. "/stat") then
      return nil, "exited: " .. (read(self.out .. ".err") or ""):sub(1, 300)
    end
    sleep(0.02)
  until now() > deadline
  return nil, "timeout waiting for " .. word .. " #" .. k
end
function P:kill()
  sh("kill " .. self.pid .. " 2>/dev/null; sleep 0.2; kill -9 " .. self.pid .. " 2>/dev/null")
end

local results = {}   -- key -> metric -> list
local failures = {}  -- key -> list of strings
local function put(key, m, v)
  results[key] = results[key] or {}
  results[key][m] = results[key][m] or {}
  table.insert(results[key][m], v)
end
local function fail(key, why)
  failures[key] = failures[key] or {}
  table.insert(failures[key], why)
  io.stderr:write("  FAILED " .. key .. ": " .. why .. "\n")
end

local function pct(list, p)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  if #s == 0 then return nil end
  return s[math.max(1, math.ceil(#s * p))]
end

local topic_n = 0
local function burst_run(c, run)
  topic_n = topic_n + 1
  local topic = "v2.users.peer" .. topic_n .. ".presence"
  local p = spawn(c, { GN_TOPIC = topic, GN_CONNS = 1 })
  local ok, err = pcall(function()
    local o = assert(p:line("open", 1, 30))
    local chan = o[2]
    for k, size in ipairs { 1024, 400 } do
      local c0, e0 = cpu_ticks(p.pid), cpu_ticks(emu.pid)
      local perf
      if PERF then
        perf = tonumber(capture(string.format(
          "perf record -g -F 999 -p %d -o %s >/dev/null 2>&1 & echo $!",
          p.pid, shq(PERF .. "-" .. c[1] .. "-" .. size .. "-" .. run .. ".data"))):match("%d+"))
        sleep(0.5)
      end
      local st = emu:admin("POST", "publish", { topic = topic, count = EVENTS, size = size })
      assert(st == 200, "publish: HTTP " .. tostring(st))
      local d, e = p:line("done", k, 300)
      if not d then error(e, 0) end
      local c1, e1 = cpu_ticks(p.pid), cpu_ticks(emu.pid)
      if perf then
        sh("kill -INT " .. perf)
        while read("/proc/" .. perf .. "/stat") do sleep(0.1) end
      end
      if d[3] ~= "1" or tonumber(d[2]) ~= EVENTS then
        error(string.format("burst of %d B: %s events, loss or reorder", size, d[2]), 0)
      end
      local ms = tonumber(d[4])
      put(c[1], "eps" .. size, EVENTS / ms * 1000)
      put(c[1], size == 1024 and "cpu" or "cpu" .. size, (c1 - c0) * 1e6 / TCK / EVENTS)
      put(c[1], size == 1024 and "emu" or "emu" .. size, (e1 - e0) * 1e6 / TCK / EVENTS)
    end
    local lat = {}
    for i = 1, RECONNECTS do
      local st = emu:admin("POST", "channels/" .. chan .. "/reset", {})
      assert(st == 200, "reset: HTTP " .. tostring(st))
      local r, e = p:line("reconnect", i, 30)
      if not r then error(e, 0) end
      lat[#lat + 1] = tonumber(r[2])
      sleep(0.05)
    end
    put(c[1], "rec50", pct(lat, 0.5))
    put(c[1], "rec99", pct(lat, 0.99))
    -- hard reconnect (the channel expired: a new channel, its subscriptions, then the socket):
    -- the project's rows only (the peers have no reconnect logic of their own)
    if c[1]:match("^gn") then
      local hl, n = {}, RECONNECTS
      for i = 1, HARD do
        local st = emu:admin("POST", "channels/" .. chan .. "/expire", {})
        assert(st == 200, "expire: HTTP " .. tostring(st))
        local r, e = p:line("reconnect", n + i, 30)
        if not r then error(e, 0) end
        hl[#hl + 1] = tonumber(r[2])
        chan = r[3] or chan
        sleep(0.05)
      end
      put(c[1], "hard50", pct(hl, 0.5))
      put(c[1], "hard99", pct(hl, 0.99))
    end
  end)
  p:kill()
  if not ok then fail(c[1], "run " .. run .. ": " .. tostring(err)) end
end

local function idle_run(c, run)
  topic_n = topic_n + 1
  local topic = "v2.users.idle" .. topic_n .. ".presence"
  local p = spawn(c, { GN_TOPIC = topic, GN_CONNS = IDLE })
  local ok, err = pcall(function()
    assert(p:line("base", 1, 30))
    local r0 = rss_kb(p.pid)
    local a, e = p:line("all", 1, 120)
    if not a then error(e, 0) end
    sleep(2)
    local r1 = rss_kb(p.pid)
    local c0, t0 = cpu_ticks(p.pid), now()
    sleep(IDLE_S)
    local c1, t1 = cpu_ticks(p.pid), now()
    put(c[1], "rss", (r1 - r0) / (IDLE - 1))
    -- CPU of the whole idle process (IDLE connections), in ms per second
    put(c[1], "idle", (c1 - c0) * 1000 / TCK / (t1 - t0))
  end)
  p:kill()
  if not ok then fail(c[1], "idle run " .. run .. ": " .. tostring(err)) end
end

-- MANY clients of the project in one process on one context, MANY_RATE events/s in all (a
-- paced stream per channel) for MANY_S seconds: CPU (all threads) and RSS of the process.
local function many_run(c, run)
  topic_n = topic_n + 1
  local topic = "v2.users.many" .. topic_n .. ".presence"
  local p = spawn(c, { GN_TOPIC = topic, GN_MANY = MANY })
  local ok, err = pcall(function()
    local m, e = p:line("many", 1, 180)
    if not m then error(e, 0) end
    -- the streams outlast the window (they start one admin call at a time, which takes seconds
    -- for 100) and end with the process
    local per = MANY_RATE / MANY
    for i = 2, #m do
      local st = emu:admin("POST", "channels/" .. m[i] .. "/events",
        { count = math.floor(per * (MANY_S + 60)), rate = per })
      assert(st == 200, "events: HTTP " .. tostring(st))
    end
    local function got() -- the latest count the client printed (every 200 ms)
      local n = 0
      for l in (read(p.out) or ""):gmatch("got (%d+)") do n = tonumber(l) end
      return n
    end
    sleep(1.5)
    local g0, c0, t0 = got(), cpu_ticks(p.pid), now()
    sleep(MANY_S)
    local n, c1, t1 = got(), cpu_ticks(p.pid), now()
    put(c[1], "many_cpu", (c1 - c0) * 100 / TCK / (t1 - t0))
    put(c[1], "many_rss", rss_kb(p.pid) / 1024)
    put(c[1], "many_eps", (n - g0) / (t1 - t0))
  end)
  p:kill()
  if not ok then fail(c[1], "many run " .. run .. ": " .. tostring(err)) end
end

-- One HTTP round trip to the emulator's REST side on a kept TLS connection (curl, 21 requests
-- on one connection, the first, which pays the handshake, left out): what a hard reconnect's two
-- REST calls (POST channels, PUT subscriptions) cost at least, for its goal (issue 12, goal 2).
local function rtt_run()
  local url = emu.base_url .. "/api/v2/notifications/channels"
  local args = {}
  for i = 1, 21 do args[i] = "-o /dev/null " .. shq(url) end
  local out = capture("curl -s --cacert " .. shq(emu.ca_file) .. " -w 'rtt %{time_total}\\n' " ..
    table.concat(args, " ") .. " 2>/dev/null")
  local first = true
  for v in out:gmatch("rtt ([%d.]+)") do
    if not first then put("http", "rtt", tonumber(v) * 1000) end
    first = false
  end
end

local ok, err = pcall(function()
  for run = 1, RUNS do
    rtt_run()
    for _, c in ipairs(CLIENTS) do
      io.stderr:write(string.format("run %d/%d: %s\n", run, RUNS, c[2]))
      burst_run(c, run)
      idle_run(c, run)
      if c[1] == "gn54" and MANY > 0 then many_run(c, run) end
    end
  end
end)
emu:stop()
if not ok then error(err, 0) end

local function med(key, m, fmt)
  local l = results[key] and results[key][m]
  if not l or #l == 0 then return "-" end
  local s = {}
  for i, v in ipairs(l) do s[i] = v end
  table.sort(s)
  local md = #s % 2 == 1 and s[(#s + 1) / 2] or (s[#s / 2] + s[#s / 2 + 1]) / 2
  if #s == 1 then return string.format(fmt, md) end
  return string.format(fmt .. " (" .. fmt .. "-" .. fmt .. ")", md, s[1], s[#s])
end

print(string.format("\n%d runs, bursts of %d events, %d resets per run, %d idle connections " ..
  "per client process; median (min-max)\n", RUNS, EVENTS, RECONNECTS, IDLE))
print("| client | ~1 KB events/s | CPU µs/event | ~400 B events/s | CPU µs/event (400 B) " ..
  "| reconnect p50 / p99 ms " ..
  "| RSS KB per idle client | idle CPU ms/s (" .. IDLE .. " clients) | failed runs " ..
  "| emulator CPU µs/event (1 KB / 400 B) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for _, c in ipairs(CLIENTS) do
  local k = c[1]
  print(string.format("| %s | %s | %s | %s | %s | %s / %s | %s | %s | %d | %s / %s |", c[2],
    med(k, "eps1024", "%.0f"), med(k, "cpu", "%.1f"), med(k, "eps400", "%.0f"),
    med(k, "cpu400", "%.1f"), med(k, "rec50", "%.1f"), med(k, "rec99", "%.1f"),
    med(k, "rss", "%.0f"), med(k, "idle", "%.2f"), failures[k] and #failures[k] or 0,
    med(k, "emu", "%.1f"), med(k, "emu400", "%.1f")))
end
for _, c in ipairs(CLIENTS) do
  for _, f in ipairs(failures[c[1]] or {}) do print("- " .. c[2] .. " failed: " .. f) end
end
print("\n| client | hard reconnect p50 / p99 ms (" .. HARD .. " channel expiries) | " .. MANY ..
  " clients, " .. MANY_RATE .. " events/s: CPU % of a core | RSS MB | events/s received |")
print("|---|---:|---:|---:|---:|")
local rtt = results.http and results.http.rtt and pct(results.http.rtt, 0.5)
local lws50 = results.lws and results.lws.rec50 and pct(results.lws.rec50, 0.5)
for _, c in ipairs(CLIENTS) do
  local k = c[1]
  if results[k] and (results[k].hard50 or results[k].many_cpu) then
    print(string.format("| %s | %s / %s | %s | %s | %s |", c[2], med(k, "hard50", "%.1f"),
      med(k, "hard99", "%.1f"), med(k, "many_cpu", "%.1f"), med(k, "many_rss", "%.1f"),
      med(k, "many_eps", "%.0f")))
  end
end
if rtt then
  print(string.format("\nHTTP round trip on a kept TLS connection (curl, %d requests): p50 %.2f ms, " ..
    "p99 %.2f ms", #results.http.rtt, rtt, pct(results.http.rtt, 0.99)))
  if lws50 then
    print(string.format("Hard reconnect goal: bare lws handshake p50 %.1f + 2 x %.2f = %.2f ms", lws50,
      rtt, lws50 + 2 * rtt))
  end
end
