-- Runs Debian's nginx (with lua-nginx-module) as an ordinary process for the resty specs:
-- its own prefix folder under build/ (so a conf's `$prefix/../../lua` is the checkout's lua/ and
-- `$prefix/../luajit` the LuaJIT build), `daemon off`, a master and its workers.
--
--   local nginx = require "support.nginx"
--   local ng = nginx.start{ conf = text, env = { K = "v" }, port = nil }  -- conf: "@PORT@" -> port
--   ng.port, ng.prefix, ng.master
--   ng:workers() --> { {pid=, shutting_down=}, ... }; ng:get(path) --> status, body, headers
--   ng:stream(path, seconds) --> a background curl -N (:text(), :records(), :wait_for(pred))
--   ng:reload(); ng:quit(timeout) --> seconds it took (nil: still running); ng:kill_worker(pid)
--   ng:log() --> error.log; ng:stop() (always, in a finally)
--   nginx.tasks(pid) --> number of threads of a process; nginx.alive(pid)
local cjson = require "cjson.safe"

local _M = {}
local mt = { __index = _M }

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function clean(cmd)
  return "exec env -u LD_PRELOAD sh -c " .. shq(cmd)
end

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
_M.read_file = read_file

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function now_s() return tonumber(capture("date +%s.%N")) or os.time() end
_M.now = now_s

-- The ports come from math.random, which LuaJIT seeds the same in every process: two runs side
-- by side (make test's two legs, make sanitize's parts) would draw the same ports, and the
-- example listens with reuseport, so both nginx would bind one port and each spec's requests
-- would reach either. Seeded apart here; and a port something answers on is not taken.
do
  local urandom = io.open("/dev/urandom", "rb")
  local b = urandom and urandom:read(4) or ""
  if urandom then urandom:close() end
  local seed = math.floor(now_s() * 1000) % 1000000007
  for i = 1, #b do seed = (seed * 256 + b:byte(i)) % 2147483647 end
  math.randomseed(seed)
end

local function port_answers(port)
  return sh("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" .. port .. "' 2>/dev/null")
end
local function sleep(s) sh("sleep " .. string.format("%.3f", s)) end
_M.sleep = sleep

--- Waits until fn() is truthy (returns its value) or timeout_s passes (returns nil).
function _M.wait_until(fn, timeout_s)
  local deadline = now_s() + (timeout_s or 10)
  repeat
    local v = fn()
    if v then return v end
    sleep(0.05)
  until now_s() > deadline
  return nil
end

function _M.alive(pid)
  local st = read_file("/proc/" .. pid .. "/stat")
  return st ~= nil and not st:match("^%d+ %b() Z")
end

--- Threads of a process (/proc/PID/task).
function _M.tasks(pid)
  local out = capture("ls /proc/" .. pid .. "/task 2>/dev/null")
  local n = 0
  for _ in out:gmatch("%d+") do n = n + 1 end
  return n
end

local function root()
  local r = os.getenv("GN_ROOT")
  if r and r ~= "" then return r end
  return (capture("pwd"):gsub("%s+$", ""))
end
_M.root = root

function _M.available()
  if not rawget(_G, "jit") then
    return false, "nginx loads the LuaJIT build of the module: run under LuaJIT"
  end
  if (os.getenv("GN_SAN") or "") ~= "" then
    return false, "nginx cannot load a sanitizer build of the module (its binary has no sanitizer runtime)"
  end
  if not read_file("/usr/lib/nginx/modules/ngx_http_lua_module.so") then
    return false, "libnginx-mod-http-lua is not installed (make deps)"
  end
  return true
end

function _M:_launch()
  local p = self.prefix
  os.remove(p .. "/rc")
  local envs = {}
  for k, v in pairs(self.env) do envs[#envs + 1] = k .. "=" .. shq(v) end
  local user = capture("id -u"):match("^0") and " -g 'user root;'" or ""
  local inner = "env " .. table.concat(envs, " ") .. " nginx -p " .. shq(p .. "/") .. " -c " ..
    shq(p .. "/nginx.conf") .. user .. " >" .. shq(p .. "/out") .. " 2>&1 </dev/null & echo $! >" ..
    shq(p .. "/master.tmp") .. "; mv " .. shq(p .. "/master.tmp") .. " " .. shq(p .. "/master") ..
    "; wait $!; echo $? >" .. shq(p .. "/rc.tmp") .. "; mv " .. shq(p .. "/rc.tmp") .. " " ..
    shq(p .. "/rc")
  os.remove(p .. "/master")
  assert(sh("sh -c " .. shq(inner) .. " >/dev/null 2>&1 &"))
  self.master = _M.wait_until(function()
    return tonumber((read_file(p .. "/master") or ""):match("%d+") or "")
  end, 5)
  assert(self.master, "nginx: no master pid")
  -- ready: the workers run and one answers (a request served means init_worker has run; an
  -- error there is in the log and answered 500, for the specs that look for it)
  -- an nginx that exited (a configuration refused, a port taken) ends the wait at once
  return _M.wait_until(function()
    if read_file(p .. "/rc") then return "exited" end
    return #self:workers() >= self.nworkers and self:get("/health") ~= 0
  end, 10) == true
end

--- Starts nginx. o.conf: the configuration text ("@PORT@" or the example's 8080 listen is
-- replaced by a free port); o.env: environment for nginx; o.workers: how many to wait for (2).
function _M.start(o)
  local self = setmetatable({ env = o.env or {}, nworkers = o.workers or 2 }, mt)
  local base = root() .. "/build"
  sh("mkdir -p " .. shq(base))
  self.prefix = capture("mktemp -d " .. shq(base .. "/nginx.XXXXXX")):gsub("%s+$", "")
  assert(self.prefix ~= "", "mktemp failed")
  sh("chmod 755 " .. shq(self.prefix) .. " && mkdir -p " .. shq(self.prefix .. "/logs"))
  for _ = 1, 10 do
    repeat self.port = math.random(20000, 60000) until not port_answers(self.port)
    local conf = o.conf:gsub("@PORT@", tostring(self.port))
      :gsub("listen 127%.0%.0%.1:8080", "listen 127.0.0.1:" .. self.port)
    write_file(self.prefix .. "/nginx.conf", conf)
    if self:_launch() then return self end
    local log = self:log() .. (read_file(self.prefix .. "/out") or "")
    self:_kill_all()
    if not log:find("Address already in use", 1, true) then
      self.exited = true
      self:stop()
      error("nginx did not start:\n" .. log, 2)
    end
  end
  self.exited = true
  self:stop()
  error("nginx: no free port found", 2)
end

--- Every child of the master: { pid =, shutting_down = bool, cmd = }.
function _M:workers()
  local out = {}
  if not self.master then return out end
  for pid in capture("pgrep -P " .. self.master .. " 2>/dev/null"):gmatch("%d+") do
    local cmd = (read_file("/proc/" .. pid .. "/cmdline") or ""):gsub("%z", " ")
    if cmd:find("worker process", 1, true) and _M.alive(pid) then
      out[#out + 1] = { pid = tonumber(pid), cmd = cmd,
        shutting_down = cmd:find("shutting down", 1, true) ~= nil }
    end
  end
  return out
end

--- Workers not shutting down.
function _M:live_workers()
  local out = {}
  for _, w in ipairs(self:workers()) do if not w.shutting_down then out[#out + 1] = w end end
  return out
end

function _M:log() return read_file(self.prefix .. "/logs/error.log") or "" end

function _M:get(path, timeout)
  local args = "curl -sS -o " .. shq(self.prefix .. "/body") .. " -D " .. shq(self.prefix .. "/hdr") ..
    " -w '%{http_code}' --max-time " .. (timeout or 5) .. " " ..
    shq("http://127.0.0.1:" .. self.port .. path) .. " 2>/dev/null"
  os.remove(self.prefix .. "/body")
  local status = tonumber(capture(args):match("(%d+)%s*$")) or 0
  local h = {}
  for k, v in (read_file(self.prefix .. "/hdr") or ""):gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do
    h[k:lower()] = v
  end
  return status, read_file(self.prefix .. "/body") or "", h
end

function _M:health()
  local st, body = self:get("/health")
  if st ~= 200 then return nil end
  return cjson.decode(body)
end

local Stream = {}
Stream.__index = Stream

--- curl -N on path in the background for `seconds`.
function _M:stream(path, seconds)
  self.nstream = (self.nstream or 0) + 1
  local base = self.prefix .. "/stream-" .. self.nstream
  local inner = "curl -sN -D " .. shq(base .. ".hdr") .. " --max-time " .. (seconds or 10) .. " " ..
    shq("http://127.0.0.1:" .. self.port .. path) .. " >" .. shq(base .. ".out") ..
    " 2>/dev/null; echo $? >" .. shq(base .. ".rc")
  assert(sh("sh -c " .. shq(inner) .. " >/dev/null 2>&1 &"))
  return setmetatable({ base = base }, Stream)
end

function Stream:text() return read_file(self.base .. ".out") or "" end
function Stream:done() return read_file(self.base .. ".rc") ~= nil end

--- The pid of the worker that serves it (from the first comment line), once it is open.
function Stream:worker()
  return tonumber(self:text():match("^: worker (%d+)"))
end

--- Every `data:` record, decoded.
function Stream:records()
  local out = {}
  for line in self:text():gmatch("data: ([^\n]*)\n") do
    local r = cjson.decode(line)
    if r then out[#out + 1] = r end
  end
  return out
end

function Stream:wait_for(pred, timeout_s)
  return _M.wait_until(function()
    local r = self:records()
    if pred(r) then return r end
    return false
  end, timeout_s)
end

function _M:reload()
  assert(sh("kill -HUP " .. self.master))
end

function _M.kill_worker(_, pid)
  assert(sh("kill -9 " .. pid))
end

--- nginx -s quit (SIGQUIT to the master): seconds until it exited, or nil after timeout_s.
function _M:quit(timeout_s)
  local t0 = now_s()
  sh("kill -QUIT " .. self.master)
  local rc = _M.wait_until(function() return read_file(self.prefix .. "/rc") end, timeout_s or 10)
  if not rc then return nil end
  self.exited = true
  return now_s() - t0
end

function _M._kill_all(self)
  if not self.master then return end
  for _, w in ipairs(self:workers()) do sh("kill -9 " .. w.pid .. " 2>/dev/null") end
  sh("kill -9 " .. self.master .. " 2>/dev/null")
  _M.wait_until(function() return read_file(self.prefix .. "/rc") end, 5)
end

--- Quits nginx (kill -9 after 10 s) and removes its prefix; keep = true keeps the folder.
function _M:stop(keep)
  if self.master and not self.exited then
    if not self:quit(10) then self:_kill_all() end
  end
  self.exited = true
  if not keep and not os.getenv("GN_KEEP_NGINX") then sh("rm -rf " .. shq(self.prefix)) end
end

return _M
