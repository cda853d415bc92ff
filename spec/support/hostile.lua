-- Starts spec/support/hostile_server.py (a Genesys gateway that misbehaves on purpose) as a
-- separate process on a free port, plain or TLS (the emulator's test CA), for busted specs.
--
--   local hostile = require "support.hostile"
--   local srv = hostile.start{ mode = "token_echo_401", count = 2, tls = true }
--   srv.port, srv.host, srv.tls, srv.ca_file, srv.token, srv.secret
--   srv:set(mode, count, flood) -- a new mode for the running server
--   srv:requests() --> every request logged since the last set (method, path, headers, mode)
--   srv:stop()
local server = require "support.server"
local wait = require "support.wait"

local _M = { TOKEN = "hostile-access-token-7f3a9c" }
local mt = { __index = _M }

local shq, capture = server.shq, server.capture
local read_file = wait.read_file

local live = {}

function _M.start(o)
  o = o or {}
  local self = setmetatable({ mode = o.mode or "good", tls = o.tls and true or false,
    secret = o.secret or "test-secret", token = _M.TOKEN }, mt)
  local root = os.getenv("GN_ROOT") or "."
  local args = { "python3", root .. "/spec/support/hostile_server.py", "--port", "0",
    "--mode", self.mode, "--count", tostring(o.count or 0), "--secret", self.secret }
  if o.topic then args[#args + 1] = "--topic"; args[#args + 1] = o.topic end
  if o.flood then args[#args + 1] = "--flood"; args[#args + 1] = tostring(o.flood) end
  local s = server.spawn { name = "hostile server", prefix = "gn-hostile", args = args,
    tls = self.tls, start_s = 10 }
  self.dir, self.pid, self.port, self.ca_file = s.dir, s.pid, s.port, s.ca_file
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

function _M:requests() return server.lines(self.dir .. "/log") end

function _M:log_text() return read_file(self.dir .. "/log") or "" end

function _M:stop()
  if self.pid then live[self.pid] = nil end
  server.stop(self)
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
