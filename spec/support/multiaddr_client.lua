-- Run by spec/integration/client_multiaddr_spec.lua in a private mount namespace where the
-- spec's hosts file is bind-mounted over /etc/hosts (localhost: ::1 first, then 127.0.0.1).
-- Args: repository root, emulator port, CA file. Starts a client on localhost:PORT and prints
-- one JSON line: {connected=, failed={...errors}, resolved={...}}.
local root, port, ca = arg[1], tonumber(arg[2]), arg[3]
package.path = root .. "/lua/?.lua;" .. root .. "/spec/?.lua;" .. package.path
package.cpath = os.getenv("GN_BUILD") .. "/?.so;" .. package.cpath
local notify = require "genesys.notify"
local cjson = require "cjson"

local failed, connected = {}, nil
local client = notify.new {
  gateway = { host = "localhost", port = port, protocol = "https" },
  client_id = "test-id", client_secret = "test-secret", tls = { ca_file = ca },
  topics = { "v2.users.multiaddr.presence" },
  backoff = { base_ms = 50, max_ms = 50, jitter = "none", max_retries = 3 },
  timeouts = { connect_ms = 10000, handshake_ms = 10000, http_ms = 10000 },
  on_health = function(h)
    if h.kind == "failed" then failed[#failed + 1] = (h.stage or "?") .. ": " .. tostring(h.error) end
    if h.kind == "connected" then connected = true end
  end,
}
client:start()
local deadline = notify.now_ms() + 20000 * (tonumber(os.getenv("GN_SLOW")) or 1)
while not connected and client:state() ~= "failed" and notify.now_ms() < deadline do
  client:poll(50)
end
client:close()
io.write(cjson.encode { connected = connected or false, failed = failed }, "\n")
