--- bench/resty_bench.lua: the nginx side of bench/resty_bench.sh (issue 10's wake-up benchmark).
-- Loaded by nginx workers (lua-nginx-module, LuaJIT). One worker holds the clients (a shared
-- dict `add`); the other publishes. Modes:
--   latency: the holder runs the variants side by side (each its own client on the same topic):
--     a  wake socket: a cosocket on client:wake_socket() in an ngx.timer.at light thread, then drain()
--     b  ngx.timer.every(0.010) calling drain()
--     c  ngx.timer.every(0.001) calling drain()
--     d  genesys.notify.resty (when it is there): resty.subscribe() in the worker that does not
--        hold resty's stream (through the shared-dict ring and the bell)
--   The other worker publishes `count` events at `rate`/s through the emulator's admin API; each
--   carries t_us, the wall clock taken right before the request is sent; a handler records
--   (its wall clock - t_us).
--   idle: the holder runs one variant (or none), nothing is published; the driver reads the
--   workers' CPU from /proc.
local ffi = require "ffi"
local notify = require "genesys.notify"
local cjson = require "cjson.safe"

local _M = {}
local T = "v2.users.bench-resty.presence"

pcall(ffi.cdef, [[
  typedef struct { long tv_sec; long tv_nsec; } gnb_timespec;
  int clock_gettime(int clk, gnb_timespec *ts);
]])
local tsbuf = ffi.new("gnb_timespec")
local function now_us()
  ffi.C.clock_gettime(0, tsbuf) -- CLOCK_REALTIME
  return tonumber(tsbuf.tv_sec) * 1e6 + tonumber(tsbuf.tv_nsec) / 1e3
end

local O            -- options from init_worker
local D            -- the bench dict
local lat = {}     -- variant -> latencies (ms)

local function record(variant, ev, keep)
  local t = ev.body and ev.body.t_us
  if not t then return end
  local ms = (now_us() - t) / 1000
  if keep and not keep() then return end
  local l = lat[variant]
  if not l then l = {}; lat[variant] = l end
  l[#l + 1] = ms
end

local function handle(variant, items)
  for _, it in ipairs(items) do
    if it.item == "event" then
      record(variant, it)
    elseif it.kind == "connected" then
      D:incr("connected", 1, 0)
    end
  end
end

local function drain_all(variant, c)
  while true do
    local items = c:drain(256)
    handle(variant, items)
    if #items < 256 then return end
  end
end

local function new_client()
  local c = notify.new {
    gateway = { host = "localhost", port = O.emu_port, protocol = "https" },
    client_id = "test-id", client_secret = "test-secret",
    tls = { ca_file = O.ca }, topics = { T },
  }
  c:start()
  return c
end

local clients = {} -- luacheck: ignore (keeps every client referenced for the worker's life)

local function start_variant(v)
  local c = new_client()
  clients[v] = c
  if v == "a" then
    local path = c:wake_socket()
    ngx.timer.at(0, function()
      local sock = ngx.socket.tcp()
      sock:settimeout(86400000)
      local ok, err = sock:connect("unix:" .. path)
      if not ok then ngx.log(ngx.ERR, "bench: wake socket: ", err) return end
      while true do
        local data, rerr = sock:receiveany(4096)
        if not data and rerr ~= "timeout" then break end -- closed: the client was closed
        drain_all("a", c)
      end
    end)
  elseif v == "b" then
    ngx.timer.every(0.010, function() drain_all("b", c) end)
  elseif v == "c" then
    ngx.timer.every(0.001, function() drain_all("c", c) end)
  end
end

local function percentiles(l)
  table.sort(l)
  local n = #l
  local function p(q) return n > 0 and l[math.max(1, math.ceil(q * n))] or nil end
  return { n = n, p50 = p(0.50), p90 = p(0.90), p99 = p(0.99), max = l[n] }
end

-- The holder, latency mode: when the publisher is done, waits a little and writes the figures.
local function watch_results(key)
  ngx.timer.every(0.5, function(premature)
    if premature or D:get(key) then return end
    local done = D:get("published_at")
    if not done or ngx.now() - done < 1 then return end
    local out = {}
    for v, l in pairs(lat) do out[v] = percentiles(l) end
    D:set(key, cjson.encode(out))
  end)
end

local function publish_one(i)
  local sock = ngx.socket.tcp()
  sock:settimeout(5000)
  local ok, err = sock:connect("127.0.0.1", O.emu_port)
  if not ok then return nil, err end
  ok, err = sock:sslhandshake(nil, "localhost", false)
  if not ok then return nil, err end
  local body = string.format('{"topic":"%s","eventBody":{"i":%d,"t_us":%.0f}}', T, i, now_us())
  ok, err = sock:send("POST /__emulator/publish HTTP/1.1\r\nHost: localhost\r\n" ..
    "Content-Type: application/json\r\nConnection: close\r\nContent-Length: " .. #body ..
    "\r\n\r\n" .. body)
  if not ok then return nil, err end
  local line = sock:receive("*l")
  sock:close()
  return line
end

local function publisher()
  ngx.timer.at(0, function()
    -- wait until every client of the holder is connected (and resty's, when it runs)
    while (D:get("connected") or 0) < O.need_connected do ngx.sleep(0.1) end
    local deadline = ngx.now() + 20
    while _M.resty and _M.resty.status().state ~= "open" and ngx.now() < deadline do
      ngx.sleep(0.1)
    end
    ngx.sleep(1)
    D:set("publishing", true)
    local gap = 1 / O.rate
    local t0 = ngx.now()
    for i = 1, O.count do
      local line, err = publish_one(i)
      if not (line and line:find(" 200", 1, true)) then
        ngx.log(ngx.ERR, "bench: publish ", i, ": ", tostring(line or err))
      end
      ngx.update_time()
      local due = t0 + i * gap
      if due > ngx.now() then ngx.sleep(due - ngx.now()) end
    end
    ngx.update_time()
    D:set("published_at", ngx.now())
  end)
end

--- init_worker_by_lua: o = { mode = "latency" | "idle", variants = "abc" / "a" / "",
-- emu_port, ca, count, rate, resty = bool }
function _M.init_worker(o)
  O = o
  D = ngx.shared.bench
  local holder = D:add("holder", ngx.worker.pid())
  if o.resty then
    local ok, resty = pcall(require, "genesys.notify.resty")
    if ok then
      resty.start { dict = "genesys_notify",
        gateway = { host = "localhost", port = o.emu_port, protocol = "https" },
        client_id = "test-id", client_secret = "test-secret",
        tls = { ca_file = o.ca }, topics = { T } }
      _M.resty = resty
      local function not_holder() return resty.status().holder_pid ~= ngx.worker.pid() end
      resty.subscribe(function(ev) record("d", ev, not_holder) end)
      watch_results("results:d:" .. ngx.worker.pid())
    else
      ngx.log(ngx.ERR, "bench: no genesys.notify.resty: ", resty)
    end
  end
  if holder then
    for v in o.variants:gmatch("%a") do start_variant(v) end
    if o.mode == "latency" then watch_results("results:holder") end
  elseif o.mode == "latency" then
    publisher()
  end
end

--- content_by_lua for /state: the dict's keys as JSON.
function _M.state()
  local out = {}
  for _, k in ipairs(D:get_keys(0)) do out[k] = D:get(k) end
  if _M.resty then out.resty_state = _M.resty.status().state end
  ngx.say(cjson.encode(out))
end

return _M
