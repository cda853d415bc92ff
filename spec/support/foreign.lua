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
local server = require "support.server"

local _M = {}
local mt = { __index = _M }

local shq, sh = server.shq, server.sh

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
  local args = assert(_M.command(o.impl))
  args[#args + 1] = "--port"; args[#args + 1] = "0"
  args[#args + 1] = "--topic"; args[#args + 1] = o.topic
  local s = server.spawn { name = o.impl .. " server", prefix = "gn-foreign", args = args,
    tls = self.tls, start_s = 15 }
  self.dir, self.pid, self.port, self.ca_file = s.dir, s.pid, s.port, s.ca_file
  self.base = (self.tls and "wss://localhost:" or "ws://127.0.0.1:") .. self.port
  return self
end

function _M:connections() return server.lines(self.dir .. "/log") end

function _M:stop() server.stop(self) end

return _M
