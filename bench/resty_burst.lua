-- make bench-resty, the burst table (issue 24 item 4): a burst of BENCH_EVENTS events (1 KB and
-- 400 B) published at once on the emulator over TLS, into
--   plain: the project's plain client (bench/peers/gn_client.lua: on_event with the body
--     decoded), Lua 5.4 and LuaJIT, one process each;
--   resty: genesys.notify.resty in nginx with 2 workers at the default settings (ring_size
--     1024, a 4m dict), a subscribe handler in every worker (the body decoded by the module);
--   resty1: the same with 1 worker (the holder and its own reader), BENCH_ONLY=...,resty1;
--   peer: lua-resty-websocket + lua-cjson in one nginx worker (bench/resty_burst_ngx.lua).
-- events/s: BENCH_EVENTS / (first to last event) in each process or worker; CPU µs per event:
-- utime+stime of every thread of the process (resty: of its workers together, and of each
-- worker) over the burst, and the emulator's. One table of medians (min-max) over BENCH_RUNS
-- runs, each run every client once, alone, one after another against one emulator; ratios per
-- run against the plain client and the peer of the same run; then, per path, the rate the
-- machine's cores allow at the CPU per event measured (client + emulator), since on a small
-- machine every path shares the cores with the emulator and, in nginx, with its other workers.
--
-- A third table splits each rate ratio into the cores each path kept busy and the ratio its CPU
-- per event allows on equal cores; a fourth gives that ratio if the holder's writes cost nothing
-- (the bound of any ring: both workers still decode every event).
--
--   lua5.4 bench/resty_burst.lua BINDIR    (from the checkout; make bench-resty does it)
--   env: BENCH_RUNS (3), BENCH_EVENTS (100000), BENCH_ONLY (comma-separated row keys),
--        BENCH_RING (resty's ring_size; default: the module's), BENCH_DICT (its dict, 4m),
--        BENCH_PERF (a folder: `perf record -g` of the nginx workers during each resty and peer
--        burst, into FOLDER/KEY-SIZE-RUN.data; read with perf report -i), BENCH_JITP (a folder:
--        LuaJIT's profiler in every nginx worker, FOLDER/p-PID.txt; BENCH_JITP_MODE its mode)
package.path = "spec/?.lua;lua/?.lua;" .. package.path
local emulator = require "support.emulator"
local nginx = require "support.nginx"
local cjson = require "cjson.safe"

local RUNS = tonumber(os.getenv("BENCH_RUNS")) or 3
local EVENTS = tonumber(os.getenv("BENCH_EVENTS")) or 100000
local ONLY = os.getenv("BENCH_ONLY")
local PERF = os.getenv("BENCH_PERF")
local run_no = 0
local TCK = 100
local ROOT = (io.popen("pwd"):read("*l"))
local WSLIB = ROOT .. "/build/lua-resty-websocket-3aef1aa/lib"

local function capture(cmd)
  local p = assert(io.popen(cmd)); local s = p:read("a"); p:close(); return s
end
local function read(path)
  local f = io.open(path); if not f then return nil end
  local s = f:read("a"); f:close(); return s
end
local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function now() return tonumber(capture("date +%s.%N")) end
local function sleep(s) os.execute(string.format("sleep %.3f", s)) end
-- utime+stime (clock ticks) in a /proc stat file
local function stat_ticks(path)
  local s = assert(read(path), path .. ": the process has ended")
  local f = {}
  for x in s:match("%) (.*)"):gmatch("%S+") do f[#f + 1] = x end
  return tonumber(f[12]) + tonumber(f[13])
end
local function ticks(pids)
  local t = 0
  for _, pid in ipairs(pids) do t = t + stat_ticks("/proc/" .. pid .. "/stat") end
  return t
end
-- of one thread (the main one when tid is the pid: the Lua thread of the plain client and of an
-- nginx worker; the rest of a process is its service thread)
local function thread_ticks(pid, tid)
  return stat_ticks("/proc/" .. pid .. "/task/" .. (tid or pid) .. "/stat")
end
local function wait_until(fn, timeout)
  local deadline = now() + timeout
  repeat
    local v = fn()
    if v then return v end
    sleep(0.05)
  until now() > deadline
  return nil
end
local function want(key)
  return not ONLY or ("," .. ONLY .. ","):find("," .. key .. ",", 1, true)
end

local emu = emulator.start { tls = true, heartbeat_ms = 30000, token_ttl = 86400,
  channel_ttl = 86400 }
local CA = emu.ca_file:sub(1, 1) == "/" and emu.ca_file or (ROOT .. "/" .. emu.ca_file:gsub("^%./", ""))
local dir = capture("mktemp -d /tmp/gn-resty-burst.XXXXXX"):gsub("%s+$", "")
local topic_n = 0
local function topic()
  topic_n = topic_n + 1
  return "v2.users.rburst" .. topic_n .. ".presence"
end

local res = {} -- key -> metric -> list
local function put(key, m, v)
  res[key] = res[key] or {}
  res[key][m] = res[key][m] or {}
  table.insert(res[key][m], v)
end
local function publish(t, size)
  local st = emu:admin("POST", "publish", { topic = t, count = EVENTS, size = size })
  assert(st == 200, "publish: HTTP " .. tostring(st))
end

-- The plain client: a process printing "open", then "done N OK MS" per burst.
local function plain(key, cmd)
  local t = topic()
  local out = dir .. "/" .. key .. ".out"
  local pid = tonumber(capture("env GN_BASE=" .. emu.base_url .. " GN_CA=" .. emu.ca_file ..
    " GN_CRED=test-id:test-secret GN_COUNT=" .. EVENTS .. " GN_TOPIC=" .. t .. " GN_CONNS=1 " ..
    cmd .. " >" .. shq(out) .. " 2>&1 </dev/null & echo $!"):match("%d+"))
  local function line(word, k)
    return wait_until(function()
      local n = 0
      for l in (read(out) or ""):gmatch("[^\n]+") do
        if l:match("^" .. word) then
          n = n + 1
          if n == k then return l end
        end
      end
    end, 300)
  end
  local ok, err = pcall(function()
    assert(line("open", 1), "no open: " .. (read(out) or ""))
    for k, size in ipairs { 1024, 400 } do
      local c0, e0, l0 = ticks { pid }, ticks { emu.pid }, thread_ticks(pid)
      publish(t, size)
      local l = assert(line("done", k), "no done")
      local c1, e1, l1 = ticks { pid }, ticks { emu.pid }, thread_ticks(pid)
      put(key, "lua" .. size, (l1 - l0) * 1e6 / TCK / EVENTS)
      put(key, "svc" .. size, (c1 - c0 - (l1 - l0)) * 1e6 / TCK / EVENTS)
      local n, good, ms = l:match("^done (%d+) (%d) ([%d.]+)")
      assert(tonumber(n) == EVENTS and good == "1", "loss or reorder: " .. l)
      put(key, "eps" .. size, EVENTS / tonumber(ms) * 1000)
      put(key, "cpu" .. size, (c1 - c0) * 1e6 / TCK / EVENTS)
      put(key, "emu" .. size, (e1 - e0) * 1e6 / TCK / EVENTS)
      put(key, "cores" .. size, EVENTS / tonumber(ms) * 1000 * (c1 - c0 + e1 - e0) / TCK / EVENTS)
    end
  end)
  os.execute("kill " .. pid .. " 2>/dev/null; sleep 0.2; kill -9 " .. pid .. " 2>/dev/null")
  if not ok then io.stderr:write("FAILED " .. key .. ": " .. tostring(err) .. "\n") end
end

local CONF = [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
daemon off;
master_process on;
worker_processes @WORKERS@;
error_log logs/error.log notice;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  lua_package_path "@ROOT@/lua/?.lua;@ROOT@/bench/?.lua;@WSLIB@/?.lua;;";
  lua_package_cpath "@ROOT@/build/luajit/?.so;;";
  lua_shared_dict genesys_notify @DICT@;
  lua_shared_dict bench 1m;
  lua_ssl_trusted_certificate @CA@;
  lua_ssl_verify_depth 3;
  init_worker_by_lua_block {
    require("resty_burst_ngx").init_worker { mode = "@MODE@", port = @PORT@, ca = "@CA@",
      topic = "@TOPIC@", count = @COUNT@, ring_size = @RING@, jitp = @JITP@,
      jitp_mode = @JITPMODE@ }
  }
  server {
    listen 127.0.0.1:8080;
    location = /health { content_by_lua_block { require("resty_burst_ngx").state() } }
  }
}
]]

-- nginx with `workers` workers in `mode`; bursts of 1 KB and 400 B; per worker events/s, CPU
-- of every worker together.
local function in_nginx(key, mode, workers)
  local t = topic()
  local conf = CONF:gsub("@(%u+)@", { WORKERS = tostring(workers), ROOT = ROOT, WSLIB = WSLIB,
    CA = CA, MODE = mode, PORT = tostring(emu.port), TOPIC = t, COUNT = tostring(EVENTS),
    RING = os.getenv("BENCH_RING") or "nil", DICT = os.getenv("BENCH_DICT") or "4m",
    JITP = os.getenv("BENCH_JITP") and string.format("%q", os.getenv("BENCH_JITP")) or "nil",
    JITPMODE = os.getenv("BENCH_JITP_MODE") and string.format("%q", os.getenv("BENCH_JITP_MODE")) or
      "nil" })
  local ng = nginx.start { conf = conf, workers = workers }
  local ok, err = pcall(function()
    local function state()
      local st, body = ng:get("/health")
      return st == 200 and cjson.decode(body) or nil
    end
    assert(wait_until(function()
      local s = state()
      return s and (s.state == "open" or s.open)
    end, 30), "not open: " .. ng:log():sub(-2000))
    sleep(1)
    local pids = {}
    for _, w in ipairs(ng:live_workers()) do pids[#pids + 1] = w.pid end
    local holder0 = state().holder_pid
    for k, size in ipairs { 1024, 400 } do
      local perf
      if PERF then
        os.execute("mkdir -p " .. shq(PERF))
        perf = tonumber(capture("perf record -q -g -p " .. table.concat(pids, ",") .. " -o " ..
          shq(PERF .. "/" .. key .. "-" .. size .. "-" .. run_no .. ".data") ..
          " >/dev/null 2>&1 </dev/null & echo $!"):match("%d+"))
        sleep(0.5)
      end
      local before = mode == "resty" and state() or {}
      local c0, w0, e0, l0 = ticks(pids), {}, ticks { emu.pid }, {}
      for _, pid in ipairs(pids) do w0[pid], l0[pid] = ticks { pid }, thread_ticks(pid) end
      publish(t, size)
      local s = wait_until(function()
        local x = state()
        if not x then return nil end
        local n = 0
        for _, pid in ipairs(pids) do
          local d = x["done:" .. pid .. ":" .. k]
          if d and d:match("^%d+ %d ([%d.]+)") then n = n + 1 end
        end
        return n == (mode == "peer" and 1 or #pids) and x
      end, 300)
      assert(s, "the burst did not reach every worker: " .. ng:log():sub(-2000))
      local c1, e1 = ticks(pids), ticks { emu.pid }
      if perf then os.execute("kill -INT " .. perf .. "; sleep 1") end
      if mode == "resty" then
        assert(s.holder_pid == holder0, "the holder changed during the burst")
        for _, pid in ipairs(pids) do
          local role = key .. (pid == s.holder_pid and "holder" or "other")
          local all, lua = ticks { pid } - w0[pid], thread_ticks(pid) - l0[pid]
          put(role, "cpu" .. size, all * 1e6 / TCK / EVENTS)
          put(role, "lua" .. size, lua * 1e6 / TCK / EVENTS)
          put(role, "svc" .. size, (all - lua) * 1e6 / TCK / EVENTS)
        end
      end
      local worst
      for _, pid in ipairs(pids) do
        local d = s["done:" .. pid .. ":" .. k]
        if d then
          local n, good, ms = d:match("^(%d+) (%d) ([%d.]+)")
          assert(tonumber(n) == EVENTS and good == "1", "loss or reorder in " .. pid .. ": " .. d)
          local eps = EVENTS / tonumber(ms) * 1000
          if mode == "resty" then
            put(key .. (pid == s.holder_pid and "holder" or "other"), "eps" .. size, eps)
          end
          worst = worst and math.min(worst, eps) or eps
        end
      end
      assert(mode ~= "resty" or s.missed == 0, "missed: " .. tostring(s.missed))
      if mode == "resty" then
        io.stderr:write(string.format("  resty %d B: socket paused %s times, %s ms in all " ..
          "(the status is written once a second); the holder waited for a reader a ring behind " ..
          "%d times, %d ms in all\n", size, tostring(s.pauses), tostring(s.paused_ms),
          (s.full_waits or 0) - (before.full_waits or 0), (s.full_ms or 0) - (before.full_ms or 0)))
      end
      put(key, "eps" .. size, worst)
      put(key, "cpu" .. size, (c1 - c0) * 1e6 / TCK / EVENTS)
      put(key, "emu" .. size, (e1 - e0) * 1e6 / TCK / EVENTS)
      put(key, "cores" .. size, worst * (c1 - c0 + e1 - e0) / TCK / EVENTS)
    end
  end)
  ng:stop()
  if not ok then io.stderr:write("FAILED " .. key .. ": " .. tostring(err) .. "\n") end
end

local NCPU = tonumber(capture("nproc")) or 1
local loads = {}
local function loadavg() return (read("/proc/loadavg") or "?"):match("^(%S+)") end
local t_start = capture("date -u +%H:%M")
for run = 1, RUNS do
  run_no = run
  loads[#loads + 1] = loadavg()
  io.stderr:write("run " .. run .. " of " .. RUNS .. "\n")
  if want("plain54") then plain("plain54", "lua5.4 bench/peers/gn_client.lua build/lua5.4") end
  if want("plainjit") then plain("plainjit", "luajit bench/peers/gn_client.lua build/luajit") end
  if want("resty") then in_nginx("resty", "resty", 2) end
  if want("resty1") then in_nginx("resty1", "resty", 1) end
  if want("peer") then in_nginx("peer", "peer", 1) end
  -- ratios within this run
  local function last(key, m) local l = res[key] and res[key][m]; return l and l[#l] end
  for _, ref in ipairs { "plain54", "plainjit", "peer" } do
    for _, r in ipairs { "resty", "resty1" } do
      for _, size in ipairs { 1024, 400 } do
        local pe, pc = last(ref, "eps" .. size), last(ref, "cpu" .. size)
        local re, rc = last(r, "eps" .. size), last(r, "cpu" .. size)
        if pe and re then
          put("ratio_" .. r .. "_" .. ref, "eps" .. size, re / pe)
          put("ratio_" .. r .. "_" .. ref, "cpu" .. size, rc / pc)
          -- the cores each used (client and emulator) over its burst, and the rate resty's CPU
          -- per event would give on the cores ref used, as a share of ref's rate
          local po, ro = last(ref, "cores" .. size), last(r, "cores" .. size)
          local pm, rm = last(ref, "emu" .. size), last(r, "emu" .. size)
          put("ratio_" .. r .. "_" .. ref, "cores" .. size, ro / po)
          put("ratio_" .. r .. "_" .. ref, "fit" .. size, (pc + pm) / (rc + rm))
          -- the same if the holder's writes cost nothing: its worker's Lua thread as the other
          -- worker's (the bound of any ring on these cores: two decodes, one service thread)
          local ol, hs = last(r .. "other", "lua" .. size), last(r .. "holder", "svc" .. size)
          if ol and hs then
            put("ratio_" .. r .. "_" .. ref, "free" .. size, (pc + pm) / (2 * ol + hs + rm))
          end
        end
      end
    end
  end
end
loads[#loads + 1] = loadavg()
local t_end = capture("date -u +%H:%M")
emu:stop()
os.execute("rm -rf " .. shq(dir))

local function med(l)
  if not l or #l == 0 then return nil end
  local s = {}
  for i, v in ipairs(l) do s[i] = v end
  table.sort(s)
  return s[math.ceil(#s / 2)], s[1], s[#s]
end
local function cell(key, m, fmt)
  local v, lo, hi = med(res[key] and res[key][m])
  if not v then return "-" end
  if #res[key][m] == 1 then return string.format(fmt, v) end
  return string.format(fmt .. " (" .. fmt .. "-" .. fmt .. ")", v, lo, hi)
end
print(string.format("\nA burst of %d events, %d run(s), medians (min-max); events/s first to last event; " ..
  "CPU: every thread, resty: its workers together; %s-%s UTC, %d cores, load average (1 min) at " ..
  "each run's start and at the end: %s", EVENTS, RUNS, t_start:gsub("%s", ""), t_end:gsub("%s", ""),
  NCPU, table.concat(loads, ", ")))
print("| path | 1 KB events/s | CPU µs/event | 400 B events/s | CPU µs/event |")
print("|---|---:|---:|---:|---:|")
local rows = {
  { "plain54", "plain client, Lua 5.4" }, { "plainjit", "plain client, LuaJIT" },
  { "restyholder", "resty, holder worker" }, { "restyother", "resty, other worker" },
  { "resty", "resty, slower worker / both workers' CPU" },
  { "resty1", "resty, 1 worker (holder and reader)" },
  { "peer", "lua-resty-websocket + cjson, one worker" },
}
for _, r in ipairs(rows) do
  if res[r[1]] then
    print(string.format("| %s | %s | %s | %s | %s |", r[2], cell(r[1], "eps1024", "%.0f"),
      cell(r[1], "cpu1024", "%.1f"), cell(r[1], "eps400", "%.0f"), cell(r[1], "cpu400", "%.1f")))
  end
end
-- The per-run ratios of resty (and resty1) against each of refs: metrics a, b at both sizes.
local function ratio_rows(refs, a, b, tail)
  for _, r in ipairs { "resty", "resty1" } do
    for _, ref in ipairs(refs) do
      local k = "ratio_" .. r .. "_" .. ref
      if res[k] and res[k][a .. 1024] then
        print(string.format("| %s / %s%s | %sx | %sx | %sx | %sx |", r, ref, tail,
          cell(k, a .. 1024, "%.2f"), cell(k, b .. 1024, "%.2f"), cell(k, a .. 400, "%.2f"),
          cell(k, b .. 400, "%.2f")))
      end
    end
  end
end
ratio_rows({ "plain54", "plainjit", "peer" }, "eps", "cpu", " (per run)")
-- Where a rate ratio comes from: the cores each path kept busy (events/s x the CPU per event of
-- the client and the emulator), and the ratio its CPU per event allows on the same cores.
print("\nPer run against the plain client: cores used (resty / plain: events/s x (client + " ..
  "emulator) CPU per event, each over its burst), and the events/s ratio resty's CPU per event " ..
  "would give on the cores the plain client used ((plain + emulator) / (resty + emulator) µs):")
print("| path | 1 KB cores used | 1 KB ratio, equal cores | 400 B cores used | 400 B ratio, equal cores |")
print("|---|---:|---:|---:|---:|")
ratio_rows({ "plain54", "plainjit" }, "cores", "fit", "")
-- The bound of the ring: what the equal-cores ratio would be if the holder's writes cost
-- nothing (two workers still decode every event). Below 0.8x, no ring reaches the rate goal.
if res.ratio_resty_plainjit and res.ratio_resty_plainjit.free1024 then
  print("\nPer run, the equal-cores ratio if the holder's writes cost nothing (its worker's Lua " ..
    "thread as the other worker's): (plain + emulator) / (2 x other worker + holder's service " ..
    "thread + emulator) µs:")
  print("| path | 1 KB ratio, equal cores, free ring | 400 B ratio, equal cores, free ring |")
  print("|---|---:|---:|")
  for _, ref in ipairs { "plain54", "plainjit" } do
    local k = "ratio_resty_" .. ref
    if res[k] and res[k].free1024 then
      print(string.format("| resty / %s | %sx | %sx |", ref, cell(k, "free1024", "%.2f"),
        cell(k, "free400", "%.2f")))
    end
  end
end
-- What the cores allow: every event costs the client's CPU and the emulator's; on NCPU cores
-- no path can go faster than NCPU / (both), whatever it does with its time.
print(string.format("\nCPU per event of the client and the emulator together, and the rate %d " ..
  "cores allow at that cost (NCPU s / (client + emulator) µs), medians:", NCPU))
print("| path | 1 KB client + emulator µs | allows events/s | 400 B client + emulator µs | allows events/s |")
print("|---|---:|---:|---:|---:|")
-- One row per path: fn(l, size) gives the two cells of each size ("-" without data).
local function size_rows(list, need, fn)
  for _, r in ipairs(list) do
    local l = res[r[1]]
    if l and l[need] then
      local a, b = fn(l, 1024)
      local c, d = fn(l, 400)
      print(string.format("| %s | %s | %s | %s | %s |", r[2], a, b, c, d))
    end
  end
end
size_rows(rows, "emu1024", function(l, size)
  local c, e = med(l["cpu" .. size]), med(l["emu" .. size])
  if not c or not e then return "-", "-" end
  return string.format("%.1f + %.1f", c, e), string.format("%.0f", NCPU * 1e6 / (c + e))
end)

-- Where each path's CPU goes, by thread: a process's main thread runs its Lua (the plain
-- client's on_event, an nginx worker's handlers, reader and, in the holder's worker, the holder),
-- the rest is the service thread (receive, TLS, frames, the queue). The holder's own cost over a
-- reader's is its Lua thread's figure less the other worker's.
print("\nCPU µs per event by thread, medians (Lua: the process's main thread; service: the rest):")
print("| path | 1 KB Lua thread | 1 KB service thread | 400 B Lua thread | 400 B service thread |")
print("|---|---:|---:|---:|---:|")
size_rows({
  { "plain54", "plain client, Lua 5.4" }, { "plainjit", "plain client, LuaJIT" },
  { "restyholder", "resty, holder worker" }, { "restyother", "resty, other worker" },
  { "resty1holder", "resty, 1 worker" },
}, "lua1024", function(l, size)
  local lu, sv = med(l["lua" .. size]), med(l["svc" .. size])
  if not lu or not sv then return "-", "-" end
  return string.format("%.1f", lu), string.format("%.1f", sv) -- a tick is 0.1 µs per event
end)
