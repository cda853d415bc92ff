-- Starts a WebSocket server the project did not write, misbehaving on purpose, as a separate
-- process on a free port, plain or TLS (the emulator's test CA): Python `websockets`
-- (spec/support/foreign_ws.py, Debian's python3-websockets) or Node `ws`
-- (spec/conformance/foreign_ws.js, installed by make deps).
--
--   local foreign = require "support.foreign"
--   local srv = foreign.start{ impl = "python" | "node", tls = true, topic = T }
--   srv.port, srv.base          -- "ws[s]://host:port", for the emulator's connect_uri fault
--   srv:connections()           -- one table per finished connection (scenario, conn, codes)
--   srv:stop()
local cjson = require "cjson.safe"
local emulator = require "support.emulator"
local wait = require "support.wait"

local _M = {}
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

--- The command of impl, or nil and why it cannot run here.
function _M.command(impl)
  local root = os.getenv("GN_ROOT") or "."
  if impl == "python" then
    -- Debian's interpreter: python3-websockets is a Debian package (a pyenv python3 on the PATH
    -- would not see it)
    if not sh("/usr/bin/python3 -c 'import websockets' 2>/dev/null") then
      return nil, "python3-websockets is not installed (make deps)"
    end
    return { "/usr/bin/python3", root .. "/spec/support/foreign_ws.py" }
  end
  if not sh("test -d " .. shq(root .. "/spec/conformance/node_modules/ws")) then
    return nil, "ws is not installed in spec/conformance (make deps)"
  end
  return { "node", root .. "/spec/conformance/foreign_ws.js" }
end

function _M.start(o)
  local self = setmetatable({ impl = o.impl, tls = o.tls and true or false }, mt)
  local cmd = assert(_M.command(o.impl))
  self.dir = capture("mktemp -d /tmp/gn-foreign.XXXXXX"):gsub("%s+$", "")
  local args = cmd
  for _, a in ipairs { "--port", "0", "--topic", o.topic, "--log", self.dir .. "/log" } do
    args[#args + 1] = a
  end
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
  local deadline = emulator.now() + 15
  local line
  repeat
    emulator.sleep(0.02)
    line = (read_file(d .. "/out") or ""):match("^([^\n]*)\n")
  until line or emulator.now() > deadline
  self.pid = tonumber((read_file(d .. "/pid") or ""):match("%d+") or "")
  local ready = line and cjson.decode(line)
  if not (ready and ready.listening) then
    if self.pid then sh("kill -9 " .. self.pid) end
    error(o.impl .. " server did not start: " .. (read_file(d .. "/err") or ""), 2)
  end
  self.port = math.floor(ready.port)
  self.base = (self.tls and "wss://localhost:" or "ws://127.0.0.1:") .. self.port
  return self
end

function _M:connections()
  local out = {}
  for l in (read_file(self.dir .. "/log") or ""):gmatch("[^\n]+") do
    out[#out + 1] = cjson.decode(l) or { raw = l }
  end
  return out
end

function _M:stop()
  if self.pid then
    sh("kill -TERM " .. self.pid .. " 2>/dev/null")
    self.pid = nil
  end
  self.stderr = read_file(self.dir .. "/err") or ""
  sh("rm -rf " .. shq(self.dir))
end

return _M
