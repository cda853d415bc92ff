-- Odd token answers (issue 9, item 4): an expires_in of 0.001, 1e300 or 2e16, an access_token
-- longer than a request header takes, or one carrying CR/LF (a header injection). Each is refused
-- as a failed attempt that backs off, with a message naming the field; none starts a storm of
-- token requests, and the client connects once a sane token comes.
local emulator = require "support.emulator"
local wait = require "support.wait"

local T = "v2.users.token-answer.presence"

describe("odd token answers", function()
  local emu
  setup(function() emu = emulator.start { tls = true, clients = { "test-id:test-secret" } } end)
  teardown(function() if emu then emu:stop() end end)

  local cases = {
    { name = "expires_in 0.001", fault = { expires_in = 0.001 }, says = "expires_in under 1 s" },
    { name = "a token of 5,000 bytes", fault = { access_token = ("a"):rep(5000) },
      says = "longer than 4,000 bytes" },
    { name = "a token with CR/LF", fault = { access_token = "abc\r\nX-Injected: 1" },
      says = "control characters" },
  }
  for _, c in ipairs(cases) do
    it(c.name .. ": refused, backed off, then connected", function()
      c.fault.count = 3
      assert.equals(200, (emu:admin("POST", "faults/token", c.fault)))
      local before = emu:stats().global.tokens_issued
      local client, rec = wait.start_client(emu, nil, { T })
      finally(function() client:close() end)
      assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 15000),
        "never connected")
      local refused = rec.where("token", function(h) return h.event == "failed" end)
      assert.equals(3, #refused)
      for _, h in ipairs(refused) do assert.truthy(h.error:find(c.says, 1, true), h.error) end
      -- one request per attempt, not a storm
      assert.equals(4, emu:stats().global.tokens_issued - before)
      assert.equals(3, #rec.kinds.attempt)
    end)
  end

  it("expires_in 1e300 is used as a year, not overflowed into a token never usable", function()
    assert.equals(200, (emu:admin("POST", "faults/token", { expires_in = 1e300, count = 1 })))
    local before = emu:stats().global.tokens_issued
    local client, rec = wait.start_client(emu, nil, { T }, true)
    finally(function() client:close() end)
    -- changes that need a fresh token take the cached one: no new token request
    for i = 1, 20 do client:subscribe(("v2.users.t%02d.presence"):format(i)) end
    assert.truthy(wait.until_(client, function() return client:metrics().subscriptions_synced
      and client:metrics().topics_confirmed == 21 end, 10000))
    assert.equals(1, emu:stats().global.tokens_issued - before)
    local t = rec.where("token", function(h) return h.event == "refreshed" end)[1]
    assert.is_true(t.expires_in_s <= 366 * 86400 + 1, tostring(t.expires_in_s))
  end)
end)
