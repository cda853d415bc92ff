-- Channels that never end under a running client (issue 21, items 1 and 3): renewed by
-- resubscribing before their expires (the official rule), moved to a new channel before the
-- token that created them ends (the weak sources' rule, --channel-ends-with-token), the spare
-- budget unit free only once an old socket is gone, an eviction below the budget detected and
-- the churn stopped. Against the emulator (TLS, a real process), checked against its published
-- sequence numbers and its own view of the channels (stats).
local emulator = require "support.emulator"
local wait = require "support.wait"
local delivery = require "support.delivery"
local notify = require "genesys.notify"

local function topics(n, tag)
  local t = {}
  for i = 1, n do t[#t + 1] = "v2.users." .. tag .. "-" .. i .. ".presence" end
  return t
end

local function count(rec, kind, event)
  return #rec.where(kind, function(h) return event == nil or h.event == event end)
end

-- No deaf interval, nothing lost or doubled, for each stream {id, count}.
local function assert_whole(rec, streams)
  for _, s in ipairs(streams) do
    local seen = delivery.check(rec, s.id, s.count)
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    assert.equals(s.count, n, "stream " .. s.id .. ": received " .. n .. " of " .. s.count)
  end
  assert.equals(0, count(rec, "gap"), "gap items")
  assert.equals(0, count(rec, "restored"), "restored items (a deaf interval)")
  assert.equals(0, count(rec, "disconnected"), "disconnected items")
  assert.equals(0, count(rec, "channel_gone"), "channel_gone items")
end

describe("renewal before a channel's or its token's end", function()
  it("configuration errors name the field", function()
    local base = { region = "us-east-1", client_id = "a", client_secret = "b" }
    local function err(renew)
      local cfg = {}
      for k, v in pairs(base) do cfg[k] = v end
      cfg.renew = renew
      local ok, e = pcall(notify.new, cfg)
      assert.is_false(ok)
      return e
    end
    assert.matches("renew: expected a table", err(5))
    assert.matches("renew.rule: expected \"both\", \"channel\" or \"off\"", err { rule = "token" })
    assert.matches("renew.at: expected a fraction", err { at = 1.5 })
    assert.matches("renew.margin_ms", err { margin_ms = -1 })
    assert.matches("renew.drain_ms", err { drain_ms = 1 })
    assert.matches("renew.when", err { when = 1 })
  end)

  it("resubscribes before the channel's expires (the official rule): one channel, nothing lost",
      function()
    local emu = emulator.start { tls = true, channel_ttl = 3 }
    finally(function() emu:stop() end)
    local T = "v2.users.renew-1.presence"
    local client, rec = wait.start_client(emu, { renew = { margin_ms = 500 } }, { T }, true)
    finally(function() client:close() end)
    local id = wait.channel_of(rec)
    local stream = delivery.publish(emu, T, 400, 50)
    delivery.drain(emu, client, rec, stream, 500)
    assert_whole(rec, { { id = stream, count = 400 } })
    assert.is_true(count(rec, "renewal", "resubscribed") >= 2)
    assert.equals(0, count(rec, "renewal", "rollover")) -- the token outlives the channel
    assert.equals(id, wait.channel_of(rec))                -- the same channel all along
    local st = emu:stats()
    assert.is_false(st.channels[id].expired)
    assert.equals(1, st.channels[id].handshakes)
    local m = client:metrics()
    assert.equals(count(rec, "renewal", "resubscribed"), m.renewals)
    assert.truthy(client:metrics("prometheus"):find("genesys_notify_renewals_total{client=\"\"} "
      .. m.renewals, 1, true))
  end)

  it("moves to a new channel before the token that created it ends (channels that end with "
    .. "their token): nothing lost, nothing doubled, the old sockets closed by us", function()
    local emu = emulator.start { tls = true, token_ttl = 4, channel_ttl = 60,
                                 channel_ends_with_token = true }
    finally(function() emu:stop() end)
    local T = "v2.users.renew-2.presence"
    local client, rec = wait.start_client(emu, { renew = { margin_ms = 500 } }, { T }, true)
    finally(function() client:close() end)
    local stream = delivery.publish(emu, T, 500, 50)
    delivery.drain(emu, client, rec, stream, 500)
    assert_whole(rec, { { id = stream, count = 500 } })
    local rolls = count(rec, "renewal", "rollover")
    assert.is_true(rolls >= 2, rolls .. " renewal rollovers")
    assert.equals(rolls, client:metrics().renewal_rollovers)
    -- every channel the client left was closed by it, none expired under it while connected
    local st = emu:stats()
    local connected = 0
    for _, c in pairs(st.channels) do if c.connected then connected = connected + 1 end end
    assert.equals(1, connected)
    assert.is_true(st.global.channels_connected_peak <= 2)
  end)

  it("with renew.rule = \"off\" the same channel ends with its token and the loss is reported "
    .. "(what the renewal prevents)", function()
    local emu = emulator.start { tls = true, token_ttl = 3, channel_ttl = 60,
                                 channel_ends_with_token = true }
    finally(function() emu:stop() end)
    local T = "v2.users.renew-3.presence"
    local client, rec = wait.start_client(emu, { renew = { rule = "off" } }, { T }, true)
    finally(function() client:close() end)
    assert.truthy(wait.until_(client, function() return count(rec, "channel_gone") >= 1 end, 8000))
    assert.equals(0, count(rec, "renewal"))
  end)
end)

describe("the channel budget at the server", function()
  it("a socket_closing wave on every channel of a pool goes through the spare one rollover at a "
    .. "time: the next starts only once the old socket is gone; none evicted", function()
    -- 5 channels, budget 6 (one spare), a server that allows exactly 6
    local emu = emulator.start { tls = true, max_channels = 6 }
    finally(function() emu:stop() end)
    local client, rec = wait.start_client(emu, { channel_budget = 6 }, topics(4100, "wave"))
    finally(function() client:close() end)
    assert.truthy(wait.until_(client, function()
      local m = client:metrics()
      return #m.channels == 5 and m.state == "open" and m.subscriptions_synced
    end, 20000), "pool of 5 open")
    assert.equals(200, (emu:admin("POST", "channels/*/socket_closing",
      { grace_ms = 8000 * wait.slow() })))
    assert.truthy(wait.until_(client, function()
      return count(rec, "rollover", "completed") == 5 and count(rec, "rollover", "drained") == 5
    end, 30000), "five rollovers, five drained")
    -- order: at most one rollover between its start and its old socket's end at any time
    local open = 0
    for _, h in ipairs(rec.health) do
      if h.kind == "rollover" and h.event == "started" then
        open = open + 1
        assert.is_true(open <= 1, "a rollover started while another's old socket lived")
      elseif h.kind == "rollover" and h.event == "drained" then
        open = open - 1
      end
    end
    assert.equals(0, count(rec, "rollover", "failed"))
    assert.equals(0, count(rec, "channel_gone"))
    assert.equals(0, count(rec, "budget"))
    local g = emu:stats().global
    assert.is_true(g.channels_connected_peak <= 6, "connected peak " .. g.channels_connected_peak)
    for _, c in pairs(emu:stats().channels) do
      assert.is_false(c.evicted and c.handshakes > 0 and c.connections > 0)
    end
  end)

  it("a server that allows fewer channels than the budget: the eviction is reported with its "
    .. "cause, the budget shrinks, the churn stops", function()
    -- a pool of 3 and renewals by rollover every couple of seconds; the server allows 3
    local emu = emulator.start { tls = true, max_channels = 3, token_ttl = 4, channel_ttl = 60,
                                 channel_ends_with_token = true }
    finally(function() emu:stop() end)
    local client, rec = wait.start_client(emu, { renew = { margin_ms = 500 } },
      topics(2100, "shrink"))
    finally(function() client:close() end)
    -- each eviction shrinks the budget until it is the server's limit (3)
    assert.truthy(wait.until_(client, function()
      local b = rec.last("budget")
      return b and b.event == "shrunk" and b.budget <= 3
    end, 30000), "the budget shrank to the server's limit")
    local first = rec.where("budget", function(h) return h.event == "shrunk" end)[1]
    assert.equals(20, first.was)
    assert.matches("fewer channels than the budget", first.error)
    assert.equals(3, rec.last("budget").budget)
    -- from now on: no more evictions (the spare is not taken: renewals wait, channels end with
    -- their tokens and are replaced, reported) and a bounded number of channels created
    local function evicted()
      local n = 0
      for _, c in pairs(emu:stats().channels) do if c.evicted then n = n + 1 end end
      return n
    end
    wait.for_ms(client, 1000)
    local e0, c0, shrinks = evicted(), 0, count(rec, "budget", "shrunk")
    for _ in pairs(emu:stats().channels) do c0 = c0 + 1 end
    wait.for_ms(client, 8000)
    local c1 = 0
    for _ in pairs(emu:stats().channels) do c1 = c1 + 1 end
    assert.equals(0, evicted() - e0, "evictions after the shrink")
    assert.equals(shrinks, count(rec, "budget", "shrunk"))
    -- channels end with their tokens now (reported), one new channel each: 3 per 4 s
    assert.is_true(c1 - c0 <= 9, (c1 - c0) .. " channels created in 8 s after the shrink")
    assert.is_true(client:metrics().evictions >= 1)
  end)
end)
