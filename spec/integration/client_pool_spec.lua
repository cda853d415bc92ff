-- A client with more than 1,000 topics holds a pool of channels (at most 1,000 topics each), each
-- with its own socket, reconnects and rollovers, within the channel budget of its credential
-- (shared by every client of the process, one channel kept spare for rollovers). Everything is
-- checked against the emulator's own view (its stats) as well as the client's.
local emulator = require "support.emulator"
local wait = require "support.wait"
local notify = require "genesys.notify"
local delivery = require "support.delivery"

local function topics(n, tag, from)
  local t = {}
  for i = from or 1, (from or 1) + n - 1 do t[#t + 1] = "v2.users." .. tag .. "-" .. i .. ".presence" end
  return t
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local function count_keys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- The channel ids of the client's pool now, by pool channel number (the latest "connected" or
-- completed rollover of each).
local function channel_ids(rec)
  local ids = {}
  for _, h in ipairs(rec.health) do
    if h.kind == "connected" then ids[h.channel or 1] = h.channel_id
    elseif h.kind == "rollover" and h.event == "completed" then ids[h.channel or 1] = h.to end
  end
  return ids
end

-- "connected" items of pool channel n.
local function connects(rec, n)
  return #rec.where("connected", function(h) return (h.channel or 1) == n end)
end

-- Waits until the client has `n` channels open and the server holds all `total` topics, and
-- (rec given) until rec holds the "connected" item of each of channels 1..n: the metrics are
-- the service thread's and can be ahead of what the application has polled, and a test that
-- takes the channels' ids from rec right after found one missing (a slow build, CI's TSan leg).
local function wait_pool(client, n, total, rec)
  local ok = wait.until_(client, function()
    local m = client:metrics()
    if not (#m.channels == n and m.state == "open" and m.topics_confirmed == total
      and m.subscriptions_synced) then return false end
    if not rec then return true end
    local ids = channel_ids(rec)
    for k = 1, n do if not ids[k] then return false end end
    return true
  end, 20000)
  local m = client:metrics()
  local seen = 0
  if rec then for k = 1, n do if channel_ids(rec)[k] then seen = seen + 1 end end end
  assert.truthy(ok, string.format("pool of %d/%d channels, state %s, %d/%d topics confirmed%s",
    #m.channels, n, m.state, m.topics_confirmed, total,
    rec and string.format(", %d/%d channels' connected items polled", seen, n) or ""))
end

-- The emulator's live, connected channels among ids (a set of channel ids).
local function server_channels(emu, ids)
  local st = emu:stats().channels
  local out = {}
  for id in pairs(ids) do
    local c = st[id]
    if c and c.connected and not c.expired then out[id] = c end
  end
  return out
end

describe("genesys.notify client: a pool of channels within the channel budget", function()
  local emu
  setup(function() emu = emulator.start { tls = true } end)
  teardown(function() if emu then emu:stop() end end)

  it("spreads 5,000 topics over 5 channels of 1,000 and delivers the events of every one", function()
    local want = topics(5000, "five")
    local client, rec = wait.start_client(emu, nil, want)
    finally(function() client:close() end)
    wait_pool(client, 5, 5000, rec)
    local ids = channel_ids(rec)
    assert.equals(5, count_keys(ids))
    local idset = {}
    for _, id in pairs(ids) do idset[id] = true end
    local srv = server_channels(emu, idset)
    assert.equals(5, count_keys(srv))
    local held = {}
    for _, c in pairs(srv) do
      assert.equals(1000, #c.subscriptions)
      for _, t in ipairs(c.subscriptions) do
        assert.is_nil(held[t], t .. " is on two channels")
        held[t] = true
      end
    end
    assert.same(set_of(want), held)
    -- events from all of them, each tagged with the channel it came on
    local st = emu:admin("POST", "channels/*/events", { count = 20 })
    assert.equals(200, st)
    assert.truthy(wait.until_(client, function() return #rec.events >= 100 end, 10000),
      #rec.events .. " events")
    local per = {}
    for _, ev in ipairs(rec.events) do per[ev.channel_id] = (per[ev.channel_id] or 0) + 1 end
    for n, id in pairs(ids) do assert.equals(20, per[id], "channel " .. n) end
    local m = client:metrics()
    assert.equals(100, m.events)
    -- the totals are the channels' together
    assert.equals(5, m.successes)
    assert.equals(5, m.latency_ms.count)
    assert.equals(5000, m.topics_wanted)
    assert.equals(5, m.scheduler.cycles)
    for _, ch in ipairs(m.channels) do
      assert.equals(20, ch.events)
      assert.equals(1000, ch.topics_confirmed)
      assert.equals("open", ch.state)
    end
    local prom = client:metrics("prometheus")
    assert.truthy(prom:find('genesys_notify_channel_events_total{client="",channel="5"} 20', 1, true))
  end)

  it("an RST on one channel reconnects that one only", function()
    local client, rec = wait.start_client(emu, nil, topics(2500, "rst"))
    finally(function() client:close() end)
    wait_pool(client, 3, 2500, rec)
    local ids = channel_ids(rec)
    local before = emu:stats().channels
    assert.equals(200, (emu:admin("POST", "channels/" .. ids[2] .. "/reset", {})))
    assert.truthy(wait.until_(client, function() return connects(rec, 2) == 2 end, 10000))
    wait_pool(client, 3, 2500, rec)
    local after = emu:stats().channels
    assert.equals(1, connects(rec, 1))
    assert.equals(1, connects(rec, 3))
    assert.equals(ids[2], channel_ids(rec)[2]) -- soft: the same channel
    assert.equals(before[ids[2]].handshakes + 1, after[ids[2]].handshakes)
    for _, n in ipairs { 1, 3 } do
      assert.equals(before[ids[n]].handshakes, after[ids[n]].handshakes, "channel " .. n)
      assert.is_true(after[ids[n]].connected)
    end
    local m = client:metrics()
    assert.equals(1, m.disconnects)
    for _, ch in ipairs(m.channels) do assert.equals(ch.channel == 2 and 1 or 0, ch.disconnects) end
  end)

  it("an expired channel is replaced (hard reconnect) with its topics; the others are untouched", function()
    local client, rec = wait.start_client(emu, nil, topics(2500, "exp"))
    finally(function() client:close() end)
    wait_pool(client, 3, 2500, rec)
    local ids = channel_ids(rec)
    local before = emu:stats().channels
    local had = before[ids[3]].subscriptions
    assert.equals(500, #had)
    assert.equals(200, (emu:admin("POST", "channels/" .. ids[3] .. "/expire", {})))
    assert.truthy(wait.until_(client, function()
      return #rec.where("connected", function(h)
        return h.channel == 3 and h.new_channel and h.channel_id ~= ids[3]
      end) > 0
    end, 10000))
    wait_pool(client, 3, 2500, rec)
    local now = channel_ids(rec)
    assert.equals(ids[1], now[1])
    assert.equals(ids[2], now[2])
    local after = emu:stats().channels
    assert.same(set_of(had), set_of(after[now[3]].subscriptions))
    for _, n in ipairs { 1, 2 } do
      assert.equals(before[ids[n]].handshakes, after[ids[n]].handshakes, "channel " .. n)
      assert.same(set_of(before[ids[n]].subscriptions), set_of(after[ids[n]].subscriptions))
    end
    assert.equals(1, connects(rec, 1))
    assert.equals(1, connects(rec, 2))
  end)

  it("socket_closing on every channel at once: each rolls over through the one spare, none lost or doubled",
      function()
    -- budget 4: the 3 channels leave one spare, so the rollovers take it one after another
    local client, rec = wait.start_client(emu, { channel_budget = 4 }, topics(2100, "roll"))
    finally(function() client:close() end)
    wait_pool(client, 3, 2100, rec)
    local ids = channel_ids(rec)
    assert.equals(200, (emu:admin("POST", "channels/*/events", { count = 300, rate = 200 })))
    assert.truthy(wait.until_(client, function() return #rec.events >= 30 end, 5000))
    assert.equals(200, (emu:admin("POST", "channels/*/socket_closing", { grace_ms = 3000 * wait.slow() })))
    assert.truthy(wait.until_(client, function()
      return #rec.where("rollover", function(h) return h.event == "completed" end) == 3
    end, 15000), "three rollovers")
    -- the spare was needed by each in turn
    assert.truthy(#rec.where("rollover", function(h) return h.event == "deferred" end) >= 1)
    assert.equals(0, #rec.where("rollover", function(h) return h.event == "failed" end))
    local now = channel_ids(rec)
    local all = {}
    for n = 1, 3 do
      assert.are_not.equal(ids[n], now[n])
      all[ids[n]] = true
      all[now[n]] = true
    end
    -- a few more on the new channels, then everything the server sent arrived exactly once
    assert.truthy(wait.until_(client, function()
      local st = emu:stats().channels
      for n = 1, 3 do if st[ids[n]].connected then return false end end
      return true
    end, 15000), "the old sockets closed")
    assert.equals(200, (emu:admin("POST", "channels/*/events", { count = 10 })))
    local sent
    assert.truthy(wait.until_(client, function()
      sent = 0
      for id, c in pairs(emu:stats().channels) do if all[id] then sent = sent + c.events_sent end end
      return #rec.events >= sent
    end, 15000), "received " .. #rec.events .. " of " .. tostring(sent))
    wait.for_ms(client, 200)
    assert.equals(sent, #rec.events)
    local seen = {}
    for _, ev in ipairs(rec.events) do
      local id = ev.channel_id .. "#" .. tostring(ev.body.sequence)
      assert.is_nil(seen[id], "twice: " .. tostring(id))
      seen[id] = true
    end
    local m = client:metrics()
    assert.equals(3, m.rollovers)
    for _, ch in ipairs(m.channels) do assert.equals(1, ch.rollovers) end
  end)

  it("two clients of one credential share its budget: the one that does not fit is told, and served as the "
      .. "other frees channels", function()
    local ctx = notify.context()
    finally(function() ctx:close() end)
    local a, ra = wait.start_client(emu, { channel_budget = 4 }, topics(2000, "a"))
    finally(function() a:close() end)
    wait_pool(a, 2, 2000, ra)
    local bt = topics(2500, "b")
    local b, rb = wait.start_client(emu, { channel_budget = 4, context = ctx }, bt)
    finally(function() b:close() end)
    local function budget_items(event)
      return rb.where("subscription", function(h)
        return h.reason == "channel_budget" and h.event == event
      end)
    end
    assert.truthy(wait.until_({ a, b }, function()
      return b:state() == "open" and b:metrics().topics_confirmed == 1000 and #budget_items("rejected") > 0
    end, 10000))
    local rej = budget_items("rejected")
    assert.equals(1, #rej)
    assert.equals(1500, rej[1].count)
    assert.equals(100, #rej[1].topics)
    assert.truthy(rej[1].error:find("channel budget (4", 1, true), rej[1].error)
    local mb = b:metrics()
    assert.equals(1, #mb.channels)
    assert.equals(1500, mb.topics_waiting)
    assert.equals(2500, mb.topics_wanted)
    assert.is_false(mb.subscriptions_synced)
    -- no channel of a was evicted or touched: three live channels for the credential
    local function live()
      local n = 0
      for _, c in pairs(emu:stats().channels) do
        if c.client_id == "test-id" and c.connected and not c.expired then n = n + 1 end
      end
      return n
    end
    assert.equals(3, live())
    assert.equals(0, ra.count("channel_gone"))
    assert.equals(0, ra.count("disconnected"))
    -- a empties its second channel: b gets that channel
    local a2 = emu:stats().channels[channel_ids(ra)[2]].subscriptions
    assert.is_true(a:unsubscribe(a2))
    assert.truthy(wait.until_({ a, b }, function() return #budget_items("admitted") == 1 end, 10000))
    assert.equals(1000, budget_items("admitted")[1].count)
    assert.equals(500, budget_items("admitted")[1].waiting)
    assert.truthy(wait.until_(b, function()
      local m = b:metrics()
      return #m.channels == 2 and m.state == "open" and m.topics_confirmed == 2000 and m.topics_waiting == 500
    end, 10000))
    assert.equals(1, #budget_items("rejected")) -- told once
    -- a closes: b gets the rest
    a:close()
    assert.truthy(wait.until_(b, function() return #budget_items("admitted") == 2 end, 10000))
    assert.equals(500, budget_items("admitted")[2].count)
    wait_pool(b, 3, 2500, rb)
    local idset = {}
    for _, id in pairs(channel_ids(rb)) do idset[id] = true end
    local held = {}
    for _, c in pairs(server_channels(emu, idset)) do
      for _, t in ipairs(c.subscriptions) do held[t] = true end
    end
    assert.same(set_of(bt), held)
    assert.equals(0, b:metrics().topics_waiting)
    assert.truthy(wait.until_(b, function() return live() == 3 end, 5000))
  end)

  it("unsubscribing half the topics closes the emptied channels and leaves the others alone", function()
    local client, rec = wait.start_client(emu, nil, topics(4000, "half"))
    finally(function() client:close() end)
    wait_pool(client, 4, 4000, rec)
    local ids = channel_ids(rec)
    local before = emu:stats().channels
    local gone = {}
    for _, n in ipairs { 3, 4 } do
      for _, t in ipairs(before[ids[n]].subscriptions) do gone[#gone + 1] = t end
    end
    assert.equals(2000, #gone)
    local mark = #rec.health
    assert.is_true(client:unsubscribe(gone))
    assert.truthy(wait.until_(client, function()
      return #rec.where("pool", function(h) return h.event == "closed" end) == 2
    end, 10000))
    wait_pool(client, 2, 2000, rec)
    for i = mark + 1, #rec.health do
      local h = rec.health[i]
      assert.is_false(h.channel == 1 or h.channel == 2,
        "channel " .. tostring(h.channel) .. " got " .. h.kind)
    end
    local after = emu:stats().channels
    for _, n in ipairs { 1, 2 } do
      assert.same(set_of(before[ids[n]].subscriptions), set_of(after[ids[n]].subscriptions))
      assert.equals(before[ids[n]].handshakes, after[ids[n]].handshakes)
      assert.is_true(after[ids[n]].connected)
    end
    assert.truthy(wait.until_(client, function()
      local st = emu:stats().channels
      return not st[ids[3]].connected and not st[ids[4]].connected
    end, 5000), "the emptied channels' sockets closed")
    local closed = rec.where("pool", function(h) return h.event == "closed" end)
    local c1, c2 = closed[1].channel, closed[2].channel
    assert.same({ 3, 4 }, { math.min(c1, c2), math.max(c1, c2) })
    -- new topics fill a new channel (1 and 2 are full), not a move
    assert.is_true(client:subscribe(topics(10, "more")))
    wait_pool(client, 3, 2010, rec)
  end)
end)

-- A channel we closed counts at the server until the server has handled our close: its unit of
-- the budget comes back only when the transport confirms the end (the server's close answer, or
-- the TCP connection gone), never when our close frame is sent. The emulator's close fault makes
-- that lag long (a slow server), and allows exactly the budget: a channel created while the
-- closed one still counts would evict a live one (the oldest in use, since none is unconnected).
describe("genesys.notify client: the budget while a closed socket still counts at the server", function()
  it("a rollover waiting for the spare starts only once the server has seen the old socket's close",
      function()
    local trace = os.getenv("GN_SPEC_TRACE")
    local emu = emulator.start { tls = true, max_channels = 3, args = trace and { "--log" } or nil }
    finally(function()
      emu:stop()
      if trace then io.stderr:write(emu.last_out or "", emu.last_err or "") end
    end)
    -- budget 3: two channels of the pool and the one spare
    local want = topics(1100, "held")
    local client, rec = wait.start_client(emu, { channel_budget = 3 }, want)
    finally(function() client:close() end)
    wait_pool(client, 2, 1100, rec)
    local ids = channel_ids(rec)
    -- one published stream on each channel (1,000 topics to a channel, in order), across both
    -- rollovers
    local n, rate = 300, 100
    local streams = { delivery.publish(emu, want[1], n, rate), delivery.publish(emu, want[1001], n, rate) }
    -- the server handles a client's close 1.2 s late (below the client's 2 s close timeout)
    assert.equals(200, (emu:admin("POST", "faults/close", { delay_ms = 1200 })))
    -- channel 1 rolls over through the spare, then channel 2 waits for it: channel 1's old socket
    -- (proven empty by its pong) is closed for it
    assert.equals(200, (emu:admin("POST", ("channels/%s/socket_closing"):format(ids[1]),
      { grace_ms = 30000 })))
    local function completed()
      return #rec.where("rollover", function(h) return h.event == "completed" end)
    end
    assert.truthy(wait.until_(client, function() return completed() == 1 end, 10000), "first rollover")
    assert.equals(200, (emu:admin("POST", ("channels/%s/socket_closing"):format(ids[2]),
      { grace_ms = 4000 * wait.slow() })))
    assert.truthy(wait.until_(client, function() return completed() == 2 end, 15000), "second rollover")
    for _, s in ipairs(streams) do delivery.drain(emu, client, rec, s, 1000) end
    local g = emu:stats().global
    assert.truthy(g.closes_held >= 1, "the server held a close")
    assert.truthy(#rec.where("rollover", function(h) return h.event == "deferred" end) >= 1,
      "the second rollover waited for the spare")
    local function story()
      local lines = {}
      for _, h in ipairs(rec.health) do
        if h.kind ~= "attempt" then lines[#lines + 1] = "    " .. notify.format(h) end
      end
      return "\n" .. table.concat(lines, "\n", math.max(1, #lines - 30))
    end
    assert.equals(0, rec.count("channel_gone"), "a live channel was evicted" .. story())
    assert.equals(0, rec.count("budget"), "the budget shrank" .. story())
    assert.equals(0, client:metrics().evictions)
    assert.equals(0, rec.count("restored"), "deaf intervals" .. story())
    assert.equals(0, rec.count("gap"), "gap items" .. story())
    for _, s in ipairs(streams) do
      local seen = delivery.check(rec, s, n) -- no duplicate
      local got = count_keys(seen)
      assert.equals(n, got, ("stream %d: %d of %d events"):format(s, got, n) .. story())
    end
    assert.truthy(g.channels_connected_peak <= 3, "connected peak " .. g.channels_connected_peak)
  end)
  it("a channel emptied by unsubscribe frees its unit for another client only once the server has seen "
      .. "its close", function()
    local emu = emulator.start { tls = true, max_channels = 3 }
    finally(function() emu:stop() end)
    local ctx = notify.context()
    finally(function() ctx:close() end)
    -- budget 3: a holds both usable channels, b (same credential) waits for one
    local want = topics(1100, "empty")
    local a, ra = wait.start_client(emu, { channel_budget = 3 }, want)
    finally(function() a:close() end)
    wait_pool(a, 2, 1100, ra)
    local b, rb = wait.start_client(emu, { channel_budget = 3, context = ctx }, topics(10, "waiting"))
    finally(function() b:close() end)
    assert.truthy(wait.until_({ a, b }, function()
      return #rb.where("subscription", function(h) return h.event == "rejected" end) == 1
    end, 10000), "b waits for the budget")
    -- the server handles a client's close 1.2 s late; a empties its second channel, for b
    assert.equals(200, (emu:admin("POST", "faults/close", { delay_ms = 1200 })))
    local second = {}
    for i = 1001, 1100 do second[#second + 1] = want[i] end
    assert.is_true(a:unsubscribe(second))
    assert.truthy(wait.until_({ a, b }, function()
      local m = b:metrics()
      return m.state == "open" and m.topics_confirmed == 10
    end, 15000), "b got the unit")
    local g = emu:stats().global
    assert.truthy(g.closes_held >= 1, "the server held a close")
    -- b's channel connected only once a's second one no longer counted: never three at once
    assert.equals(2, g.channels_connected_peak)
    assert.equals(0, ra.count("disconnected") + ra.count("channel_gone") + rb.count("budget"))
  end)
end)
