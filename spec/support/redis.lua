-- Starts a real redis-server (Debian's) on a free port for busted specs, as a separate process.
--   local redis = require "support.redis"
--   local r = redis.start()        -- r.port, r.url ("redis://127.0.0.1:PORT/0"), r.pid
--   r:cli("GET", "k")  --> the reply text of redis-cli (raw mode, one line per element)
--   r:stop(); r:restart() (same port, data gone); r:signal("STOP"|"CONT"|"KILL")
--   redis.start{ args = { "--requirepass", pw }, auth = { "--user", u, "--pass", pw },
--     bind = "127.0.0.1 ::1", tls = certs_dir }: extra server arguments, what redis-cli needs to
--     log in, the addresses, TLS only (--port 0 --tls-port, the certificates of
--     spec/support/mkcerts_redis.sh, clients' certificates required); r.url has no credentials.
--   redis.sentinel{ master = r, name = "m", lines = {...}, auth = {...} }: a sentinel
--     (redis-server --sentinel) watching r (quorum 1), more lines for its configuration file
-- Every started server must be stopped (finally/teardown); redis.stop_all() stops any left.
local _M = {}
local mt = { __index = _M }
local live = {}

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function clean(cmd) return "exec env -u LD_PRELOAD sh -c " .. shq(cmd) end
local function sh(cmd)
  local ok = os.execute(clean(cmd))
  return ok == true or ok == 0
end
local function capture(cmd)
  local p = assert(io.popen(clean(cmd), "r"))
  local s = p:read("*a")
  p:close()
  return s
end
local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
local function sleep(s) sh("sleep " .. string.format("%.3f", s)) end
_M.sleep = sleep
_M.shq = shq

local function now_s() return tonumber(capture("date +%s.%N")) or os.time() end

function _M:_spawn()
  os.remove(self.dir .. "/log")
  os.remove(self.dir .. "/pid")
  local o = self.opts or {}
  local args
  if o.sentinel then
    -- a sentinel's configuration is a file it rewrites
    local f = assert(io.open(self.dir .. "/sentinel.conf", "w"))
    f:write(string.format("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\n" ..
      "sentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 1000\n" ..
      "sentinel failover-timeout %s 3000\n", self.port, self.dir, o.name, o.sentinel.port, o.name,
      o.name))
    for _, l in ipairs(o.lines or {}) do f:write(l, "\n") end
    f:close()
    args = { "redis-server", self.dir .. "/sentinel.conf", "--sentinel", "--logfile",
      self.dir .. "/log", "--daemonize", "no" }
  else
    args = { "redis-server", "--port", tostring(o.tls and 0 or self.port), "--save", "",
      "--appendonly", "no", "--dir", self.dir, "--logfile", self.dir .. "/log", "--daemonize", "no",
      "--protected-mode", "no", "--enable-debug-command", "local", "--bind" }
    for a in (o.bind or "127.0.0.1"):gmatch("%S+") do args[#args + 1] = a end
    if o.tls then
      for _, a in ipairs { "--tls-port", tostring(self.port), "--tls-cert-file", o.tls .. "/server.pem",
        "--tls-key-file", o.tls .. "/server.key", "--tls-ca-cert-file", o.tls .. "/ca.pem",
        "--tls-auth-clients", "yes" } do args[#args + 1] = a end
    end
    for _, a in ipairs(o.args or {}) do args[#args + 1] = a end
  end
  local parts = {}
  for _, a in ipairs(args) do parts[#parts + 1] = shq(a) end
  sh(table.concat(parts, " ") .. " </dev/null >/dev/null 2>&1 & echo $! >" .. shq(self.dir .. "/pid"))
  self.pid = tonumber((read_file(self.dir .. "/pid") or ""):match("%d+"))
  local deadline = now_s() + 10
  repeat
    local log = read_file(self.dir .. "/log") or ""
    if log:find("Ready to accept connections", 1, true) or log:find("+monitor master", 1, true) then
      return true
    end
    if log:find("Address already in use", 1, true) or
      not sh("kill -0 " .. tostring(self.pid) .. " 2>/dev/null") then
      return false
    end
    sleep(0.02)
  until now_s() > deadline
  return false
end

function _M.start(opts)
  local self = setmetatable({ opts = opts }, mt)
  self.dir = capture("mktemp -d /tmp/gn-redis.XXXXXX"):gsub("%s+$", "")
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  for _ = 1, 20 do
    self.port = math.random(20000, 59999)
    if self:_spawn() then
      self.url = string.format("redis://127.0.0.1:%d/0", self.port)
      live[self.pid] = self
      return self
    end
    if self.pid then sh("kill -9 " .. self.pid .. " 2>/dev/null") end
  end
  error("redis-server did not start: " .. (read_file(self.dir .. "/log") or ""))
end

function _M.sentinel(opts)
  return _M.start { sentinel = opts.master, name = opts.name, lines = opts.lines, auth = opts.auth }
end

-- redis-cli in raw mode: the reply, one element a line.
function _M:cli(...)
  local parts = { "redis-cli", "--raw", "-p", tostring(self.port) }
  local o = self.opts or {}
  for _, a in ipairs(o.auth or {}) do parts[#parts + 1] = shq(a) end
  if o.auth then parts[#parts + 1] = "--no-auth-warning" end
  if o.tls then
    for _, a in ipairs { "--tls", "--cacert", o.tls .. "/ca.pem", "--cert", o.tls .. "/client.pem",
      "--key", o.tls .. "/client.key" } do parts[#parts + 1] = shq(a) end
  end
  for _, a in ipairs { ... } do parts[#parts + 1] = shq(a) end
  return capture(table.concat(parts, " ") .. " 2>&1")
end

function _M:signal(sig)
  if self.pid then sh("kill -" .. sig .. " " .. self.pid .. " 2>/dev/null") end
end

local function wait_gone(pid)
  local deadline = now_s() + 10
  while sh("kill -0 " .. pid .. " 2>/dev/null") and now_s() < deadline do sleep(0.02) end
end

function _M:stop(keep_dir)
  if self.pid then
    self:signal("KILL")
    wait_gone(self.pid)
    live[self.pid] = nil
    self.pid = nil
  end
  if not keep_dir then sh("rm -rf " .. shq(self.dir)) end
end

-- Same port, empty data (no persistence), after `down_s` seconds without a server.
function _M:restart(down_s)
  self:stop(true)
  if down_s then sleep(down_s) end
  for _ = 1, 50 do
    if self:_spawn() then
      live[self.pid] = self
      return self
    end
    sleep(0.1)
  end
  error("redis-server did not restart on port " .. self.port)
end

function _M.stop_all()
  for _, r in pairs(live) do pcall(r.stop, r) end
end

local sentinel_mt = { __gc = function() _M.stop_all() end }
if rawget(_G, "newproxy") then
  local proxy = newproxy(true)
  getmetatable(proxy).__gc = sentinel_mt.__gc
  _M._sentinel = proxy
else
  _M._sentinel = setmetatable({}, sentinel_mt)
end

return _M
