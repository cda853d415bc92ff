-- Run by spec/integration/client_proxy_spec.lua with a chosen environment (HTTPS_PROXY,
-- NO_PROXY...). Args: repository root, emulator port, CA file, and "false" to pass proxy = false.
-- Starts a client on localhost:PORT and prints one JSON line: {connected=, failed={...}} or
-- {error=} when the configuration is refused; then its health items, one per line.
local root, port, ca, proxy = arg[1], tonumber(arg[2]), arg[3], arg[4]
package.path = root .. "/lua/?.lua;" .. root .. "/spec/?.lua;" .. package.path
package.cpath = os.getenv("GN_BUILD") .. "/?.so;" .. package.cpath
local notify = require "genesys.notify"
local cjson = require "cjson"

local failed, connected, lines = {}, false, {}
local cfg = {
  gateway = { host = "localhost", port = port, protocol = "https" },
  client_id = "test-id", client_secret = "test-secret", tls = { ca_file = ca },
  topics = { "v2.users.proxy.presence" },
  backoff = { base_ms = 50, max_ms = 50, jitter = "none", max_retries = 2 },
  on_health = function(h)
    lines[#lines + 1] = notify.format(h)
    if h.kind == "failed" then
      failed[#failed + 1] = { reason = h.reason, stage = h.stage, status = h.status, error = h.error }
    end
    if h.kind == "connected" then connected = true end
  end,
}
if proxy == "false" then cfg.proxy = false end
local ok, client = pcall(notify.new, cfg)
if not ok then
  io.write(cjson.encode { error = client }, "\n")
  os.exit(0)
end
client:start()
local deadline = notify.now_ms() + 20000 * (tonumber(os.getenv("GN_SLOW")) or 1)
while not connected and client:state() ~= "failed" and notify.now_ms() < deadline do
  client:poll(50)
end
client:close()
io.write(cjson.encode { connected = connected, failed = failed }, "\n")
io.write(table.concat(lines, "\n"), "\n")
