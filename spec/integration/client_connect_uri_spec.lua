-- A connectUri the client cannot use. A multicast address once made connect() fail inside
-- libwebsockets' own connect call, which freed the connection twice (ASan: heap-use-after-free;
-- plain build: an abort in libuv); the connection now outlives that call, and such an address
-- is refused before lws sees it (lws 4.1.6 leaks ~480 bytes on each such failure). A refused
-- port fails later, like any connect. Either way the attempt fails like any other, and connects
-- that keep failing on one channel's connectUri move the client to a new channel.
local emulator = require "support.emulator"
local wait = require "support.wait"

local T = "v2.users.connect-uri.presence"

describe("an unusable connectUri", function()
  local emu
  setup(function() emu = emulator.start { tls = true, clients = { "test-id:test-secret" } } end)
  teardown(function() if emu then emu:stop() end end)

  for _, base in ipairs { "ws://224.0.0.1:9", "wss://127.0.0.1:1" } do
    it(base .. ": the attempt fails, the client moves to a new channel and connects", function()
      assert.equals(200, (emu:admin("POST", "faults/connect_uri", { base = base, count = 1 })))
      local client, rec = wait.start_client(emu, nil, { T })
      finally(function() client:close() end)
      assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 15000),
        "never connected")
      local failed = rec.where("failed", function(h) return h.stage == "connect" or
                                                           h.stage == "dns" end)
      assert.is_true(#failed >= 1, "the bad connectUri did not fail an attempt")
      if base:find("224.0.0.1", 1, true) then
        assert.truthy(failed[1].error:find("not a unicast address", 1, true), failed[1].error)
      end
      local first = rec.kinds.subscription[1].channel_id
      local c = rec.last("connected")
      assert.are_not.equal(first, c.channel_id)
      assert.is_true(c.new_channel)
      -- and the socket works
      emu:admin("POST", "publish", { topic = T, eventBody = { n = 1 } })
      assert.truthy(wait.until_(client, function() return #rec.events >= 1 end, 5000))
    end)
  end
end)
