-- A real HTTP proxy for the specs: Debian's tinyproxy as a separate process on a free port of
-- 127.0.0.1, with its own configuration file, in the foreground (-d) with its log on stderr.
--
--   local tinyproxy = require "support.tinyproxy"
--   local px = tinyproxy.start{ connect_ports = { emu.port }, auth = "user:pass",
--     filter = { "127.0.0.1" } }   -- CONNECT refused (403) to other ports and filtered hosts
--   px.port, px.url ("http://127.0.0.1:PORT"), px:log(), px:connects() -> { "host:port", ... }
--   px:stop(), px:kill() (SIGKILL: every tunnel dies at once), px:restart{...} (same port,
--   options changed by the table given)
-- Every started proxy must be stopped (finally/teardown); tinyproxy.stop_all() stops any left.
local _M = {}
local mt = { __index = _M }
local live = {}

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Without the sanitizer runtime busted may have preloaded: tinyproxy is not ours to check.
local function sh(cmd)
  local ok, _, code = os.execute("exec env -u LD_PRELOAD sh -c " .. shq(cmd))
  if type(ok) == "number" then return ok == 0, ok end
  return ok == true, code
end

local function capture(cmd)
  local p = assert(io.popen("exec env -u LD_PRELOAD sh -c " .. shq(cmd), "r"))
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

local function now_s() return tonumber(capture("date +%s.%N")) or os.time() end
local function sleep(s) sh("sleep " .. string.format("%.3f", s)) end

local function available()
  return sh("command -v tinyproxy >/dev/null 2>&1")
end
_M.available = available

function _M:_write_conf()
  local o = self.opts
  local lines = {
    "Port " .. string.format("%d", self.port),
    "Listen 127.0.0.1",
    "Timeout 600",
    "Allow 127.0.0.1",
    "LogLevel Connect",
    "MaxClients 100",
  }
  -- no ConnectPort line at all would allow every port: one that is never used keeps it closed
  local ports = o.connect_ports or {}
  if #ports == 0 then ports = { 1 } end
  for _, p in ipairs(ports) do lines[#lines + 1] = "ConnectPort " .. string.format("%d", p) end
  if o.auth then
    local u, p = o.auth:match("^([^:]*):(.*)$")
    lines[#lines + 1] = "BasicAuth " .. u .. " " .. p
  end
  if o.filter then
    local f = assert(io.open(self.dir .. "/filter", "w"))
    for _, h in ipairs(o.filter) do f:write("^", (h:gsub("%.", "\\.")), "$\n") end
    f:close()
    lines[#lines + 1] = 'Filter "' .. self.dir .. '/filter"'
    lines[#lines + 1] = "FilterExtended On"
  end
  local f = assert(io.open(self.dir .. "/tinyproxy.conf", "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
end

-- Starts tinyproxy on self.port; returns true when it listens, false when it exited (the port
-- was taken).
function _M:_spawn()
  local d = self.dir
  for _, f in ipairs { "pid", "rc" } do os.remove(d .. "/" .. f) end
  self:_write_conf()
  local inner = "tinyproxy -d -c " .. shq(d .. "/tinyproxy.conf") .. " >>" .. shq(d .. "/log") ..
    " 2>&1 </dev/null & echo $! >" .. shq(d .. "/pid.tmp") .. "; mv " .. shq(d .. "/pid.tmp") ..
    " " .. shq(d .. "/pid") .. "; wait $!; echo $? >" .. shq(d .. "/rc")
  local mark = #(read_file(d .. "/log") or "")
  assert(sh("sh -c " .. shq(inner) .. " >/dev/null 2>&1 &"))
  local deadline = now_s() + 10
  while now_s() < deadline do
    sleep(0.02)
    self.pid = tonumber((read_file(d .. "/pid") or ""):match("%d+") or "")
    if read_file(d .. "/rc") then return false end
    -- LogLevel Connect prints nothing at start: a CONNECT-less probe tells it listens
    if self.pid and sh("bash -c " .. shq("exec 3<>/dev/tcp/127.0.0.1/" ..
      string.format("%d", self.port)) .. " 2>/dev/null") then
      live[self.pid] = self
      return true
    end
  end
  error("tinyproxy did not start: " .. (read_file(d .. "/log") or ""):sub(mark + 1))
end

function _M.start(o)
  o = o or {}
  local self = setmetatable({ opts = o }, mt)
  self.dir = capture("mktemp -d /tmp/gn-proxy.XXXXXX"):gsub("%s+$", "")
  assert(self.dir ~= "", "mktemp failed")
  for _ = 1, 20 do
    self.port = o.port or tonumber(capture("shuf -i 20000-59999 -n 1"))
    if self:_spawn() then
      self.url = "http://127.0.0.1:" .. string.format("%d", self.port)
      return self
    end
    if o.port then break end
  end
  error("tinyproxy: no free port: " .. (read_file(self.dir .. "/log") or ""))
end

--- Its log so far (every run on this port, restarts included).
function _M:log() return read_file(self.dir .. "/log") or "" end

--- The targets of the CONNECT requests in its log, in order ("host:port").
function _M:connects()
  local out = {}
  for t in self:log():gmatch("Request %(file descriptor %d+%): CONNECT (%S+) HTTP") do
    out[#out + 1] = t
  end
  return out
end

local function wait_gone(self)
  local deadline = now_s() + 10
  while not read_file(self.dir .. "/rc") and now_s() < deadline do sleep(0.02) end
  live[self.pid] = nil
  self.pid = nil
end

function _M:kill()
  if not self.pid then return end
  sh("kill -KILL " .. self.pid .. " 2>/dev/null")
  wait_gone(self)
end

function _M:stop(keep)
  if self.pid then
    sh("kill -TERM " .. self.pid .. " 2>/dev/null")
    wait_gone(self)
  end
  if not keep then sh("rm -rf " .. shq(self.dir)) end
end

--- Stops it (if running) and starts it again on the same port, with opts changed by `changes`.
function _M:restart(changes)
  self:stop(true)
  for k, v in pairs(changes or {}) do self.opts[k] = v end
  local deadline = now_s() + 10
  repeat
    if self:_spawn() then return self end
    sleep(0.1) -- the port may linger a moment
  until now_s() > deadline
  error("tinyproxy: cannot restart on port " .. self.port)
end

function _M.stop_all()
  for _, p in pairs(live) do pcall(p.stop, p) end
end

return _M
