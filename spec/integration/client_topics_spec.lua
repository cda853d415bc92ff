-- A topic name with invalid UTF-8 is refused by subscribe() before anything is sent: the live
-- channel keeps its topics and later subscription changes still work. (Every rule is in
-- spec/unit/topics_spec.lua.)
local emulator = require "support.emulator"
local wait = require "support.wait"

local T1, T2, T3 = "v2.users.t1.presence", "v2.users.t2.presence", "v2.users.t3.presence"

describe("genesys.notify client: bad topic names are never sent", function()
  local emu
  setup(function() emu = emulator.start { tls = true } end)
  teardown(function() if emu then emu:stop() end end)

  it("subscribe() with invalid UTF-8 raises and the channel and later changes are untouched", function()
    local client, rec = wait.start_client(emu, nil, { T1 }, true)
    finally(function() client:close() end)
    local ch = wait.channel_of(rec)
    local n = #rec.health
    local ok, err = pcall(client.subscribe, client, { T2, "v2.users.\192\175.presence" })
    assert.is_false(ok)
    assert.truthy(err:find("topics[2]: expected a Genesys topic name", 1, true), err)
    wait.for_ms(client, 300)
    assert.equals(n, #rec.health) -- no subscription health: nothing was sent
    assert.same({ T1 }, emu:stats().channels[ch].subscriptions)
    assert.is_true(client:subscribe(T3))
    assert.truthy(wait.until_(client, function()
      return #rec.where("subscription", function(h) return h.event == "updated" end) > 0 end, 5000))
    local subs = emu:stats().channels[ch].subscriptions
    table.sort(subs)
    assert.same({ T1, T3 }, subs)
    assert.equals(0, #rec.where("subscription", function(h)
      return h.event == "rejected" or h.event == "failed" end))
  end)
end)
