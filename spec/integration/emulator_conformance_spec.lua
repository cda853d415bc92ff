-- Conformance with Genesys's own client: the official JavaScript SDK (purecloud-platform-client-v2)
-- logs in, creates a channel and subscribes through the emulator (setGateway, TLS with the test
-- CA), and its answers are checked against the SDK's models; then the npm `ws` client connects to
-- the connectUri and gets a heartbeat, a pong and a published event. See spec/conformance/.
local emulator = require "support.emulator"
local cjson = require "cjson.safe"

describe("emulator conformance with the Genesys JavaScript SDK", function()
  it("passes spec/conformance/conformance.js", function()
    local f = io.open("spec/conformance/node_modules/purecloud-platform-client-v2/package.json")
    assert(f, "spec/conformance/node_modules is missing: run `make deps` (npm ci in spec/conformance)")
    f:close()
    local emu = emulator.start { tls = true, clients = { "sdk-id:sdk-secret" }, heartbeat_ms = 300 }
    finally(function() emu:stop() end)
    local cmd = "env -u LD_PRELOAD EMU_PORT=" .. emu.port ..
      " EMU_HOST=localhost EMU_CLIENT=sdk-id:sdk-secret NODE_EXTRA_CA_CERTS=" .. emu.ca_file ..
      " timeout 60 node spec/conformance/conformance.js 2>&1; echo \"rc=$?\""
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    local rc = tonumber(out:match("rc=(%d+)%s*$"))
    assert.equal(0, rc, out)
    local checks = {}
    for line in out:gmatch("[^\n]+") do
      local j = cjson.decode(line)
      if type(j) == "table" and j.check then checks[j.check] = j end
    end
    for _, c in ipairs { "login_refused", "login", "create_channel", "put_subscriptions",
                         "get_subscriptions", "head_and_list", "unknown_channel", "stream" } do
      assert.truthy(checks[c], "conformance check missing: " .. c .. "\n" .. out)
    end
    assert.equal("wss://localhost:" .. emu.port .. "/channels/" .. checks.create_channel.id,
      checks.create_channel.connectUri)
    -- the emulator saw the SDK's traffic
    local s = emu:stats()
    assert.is_true(s.global.oauth["200"] >= 1 and s.global.oauth["401"] >= 1)
    assert.equal(1, s.channels[checks.create_channel.id].handshakes)
  end)
end)
