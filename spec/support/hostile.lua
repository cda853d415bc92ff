-- Starts spec/support/hostile_server.py (a Genesys gateway that misbehaves on purpose) as a
-- separate process on a free port, plain or TLS (the emulator's test CA), for busted specs.
--
--   local hostile = require "support.hostile"
--   local srv = hostile.start{ mode = "token_echo_401", count = 2, tls = true }
--   srv.port, srv.host, srv.tls, srv.ca_file, srv.token, srv.secret
--   srv:set(mode, count, flood) -- a new mode for the running server
--   srv:requests() --> every request logged since the last set (method, path, headers, mode)
--   srv:stop()
local cjson = require "cjson.safe"
local emulator = require "support.emulator"
local wait = require "support.wait"

local _M = { TOKEN = "hostile-access-token-7f3a9c" }
local mt = { __index = _M }

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function sh(cmd)
  local ok = os.execute("exec env -u LD_PRELOAD sh -c " .. shq(cmd))
  return ok == true or ok == 0
end
local function capture(cmd)
  local p = assert(io.popen("exec env -u LD_PRELOAD sh -c " .. shq(cmd), "r"))
  local s = p:read("*a")
  p:close()
  return s
end
local read_file = wait.read_file

local live = {}

function _M.start(o)
  o = o or {}
  local self = setmetatable({ mode = o.mode or "good", tls = o.tls and true or false,
    secret = o.secret or "test-secret", token = _M.TOKEN }, mt)
  self.dir = capture("mktemp -d /tmp/gn-hostile.XXXXXX"):gsub("%s+$", "")
  local root = os.getenv("GN_ROOT") or "."
  local args = { "python3", root .. "/spec/support/hostile_server.py", "--port", "0",
    "--mode", self.mode, "--count", tostring(o.count or 0), "--log", self.dir .. "/log",
    "--secret", self.secret }
  if o.topic then args[#args + 1] = "--topic"; args[#args + 1] = o.topic end
  if o.flood then args[#args + 1] = "--flood"; args[#args + 1] = tostring(o.flood) end
  if self.tls then
    local ca, cert, key = emulator.certs()
    self.ca_file = ca
    args[#args + 1] = "--tls"; args[#args + 1] = cert; args[#args + 1] = key
  end
  local parts = {}
  for _, a in ipairs(args) do parts[#parts + 1] = shq(a) end
  local d = self.dir
  assert(sh(table.concat(parts, " ") .. " >" .. shq(d .. "/out") .. " 2>" .. shq(d .. "/err") ..
    " </dev/null & echo $! >" .. shq(d .. "/pid")))
  local deadline = emulator.now() + 10
  local line
  repeat
    emulator.sleep(0.02)
    line = (read_file(d .. "/out") or ""):match("^([^\n]*)\n")
  until line or emulator.now() > deadline
  self.pid = tonumber((read_file(d .. "/pid") or ""):match("%d+") or "")
  local ready = line and cjson.decode(line)
  if not (ready and ready.listening) then
    if self.pid then sh("kill -9 " .. self.pid) end
    error("hostile server did not start: " .. (read_file(d .. "/err") or ""), 2)
  end
  self.port = math.floor(ready.port)
  self.host = self.tls and "localhost" or "127.0.0.1"
  live[self.pid] = self
  return self
end

--- Changes the mode of the running server (its counters, channel numbers and log start afresh).
function _M:set(mode, count, flood)
  local body = string.format('{"mode":"%s","count":%d,"flood":%d}', mode, count or 0,
    flood or 2000000)
  local url = (self.tls and "https" or "http") .. "://" .. self.host .. ":" .. self.port ..
    "/__hostile/mode"
  local out = capture("curl -sS -o /dev/null -w '%{http_code}' --max-time 5 " ..
    (self.ca_file and ("--cacert " .. shq(self.ca_file) .. " ") or "") ..
    "-X POST --data-binary " .. shq(body) .. " " .. shq(url))
  assert(out:match("200"), "hostile server: setting mode " .. mode .. " failed: " .. out)
  self.mode = mode
  return self
end

function _M:requests()
  local out = {}
  for l in (read_file(self.dir .. "/log") or ""):gmatch("[^\n]+") do
    out[#out + 1] = cjson.decode(l) or { raw = l }
  end
  return out
end

function _M:log_text() return read_file(self.dir .. "/log") or "" end

function _M:stop()
  if self.pid then
    sh("kill -TERM " .. self.pid .. " 2>/dev/null")
    live[self.pid] = nil
    self.pid = nil
  end
  self.stderr = read_file(self.dir .. "/err") or ""
  sh("rm -rf " .. shq(self.dir))
end

function _M.stop_all() for _, s in pairs(live) do pcall(s.stop, s) end end

--- Client configuration pointed at the hostile server (short timeouts: it lies and stalls).
function _M:config(rec, extra)
  local cfg = {
    gateway = { host = self.host, port = self.port, protocol = self.tls and "https" or "http" },
    client_id = "test-id", client_secret = self.secret,
    tls = self.ca_file and { ca_file = self.ca_file } or nil,
    backoff = { base_ms = 50, max_ms = 300, multiplier = 2, jitter = "none", reset_after_ms = 200 },
    timeouts = { connect_ms = 1500 * wait.slow(), handshake_ms = 1500 * wait.slow(),
                 http_ms = 2000 * wait.slow() },
    topics = { "v2.users.hostile.presence" },
    on_event = rec and rec.on_event, on_health = rec and rec.on_health,
  }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

return _M
