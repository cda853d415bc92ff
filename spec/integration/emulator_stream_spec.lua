-- The emulator's notification stream: handshake, heartbeat, ping/pong, events, publish, one
-- connection per channel, expiry and eviction — plain and TLS, real process, real sockets.
local emulator = require "support.emulator"

local PRESENCE = "v2.users.0c6a1f2e-0001.presence"
local QUEUE = "v2.routing.queues.7f1d-q1.conversations"

local function events_of(r)
  local t = {}
  for _, f in ipairs(r.texts) do
    if f.msg and f.msg.topicName ~= "channel.metadata" then t[#t + 1] = f end
  end
  return t
end

local function metadata_of(r, message)
  local t = {}
  for _, f in ipairs(r.texts) do
    if f.msg and f.msg.topicName == "channel.metadata" and f.msg.eventBody.message == message then
      t[#t + 1] = f
    end
  end
  return t
end

for _, tls in ipairs { false, true } do
  local mode = tls and "TLS" or "plain"

  describe("emulator stream (" .. mode .. ")", function()
    local emu, tok
    setup(function()
      emu = emulator.start { tls = tls, heartbeat_ms = 200 }
      tok = emu:token()
    end)
    teardown(function()
      local rc, err = emu:stop()
      assert.equal(0, rc, err)
    end)

    it("refuses the handshake for an unknown channel", function()
      local r = emu:probe { channel = "streaming-0-doesnotexist", duration_ms = 1000 }
      assert.equal(404, r.open.handshake)
    end)

    it("sends a heartbeat every --heartbeat-ms and answers ping with pong", function()
      local ch = emu:channel(tok, { PRESENCE })
      local r = emu:probe { channel = ch.id, send = { '{"message":"ping"}' }, duration_ms = 1100 }
      assert.equal(101, r.open.handshake)
      local pongs = metadata_of(r, "pong")
      assert.equal(1, #pongs)
      assert.is_true(pongs[1].t < 1000)
      local hb = metadata_of(r, "WebSocket Heartbeat")
      assert.is_true(#hb >= 3 and #hb <= 6, "heartbeats: " .. #hb)
      for i = 2, #hb do
        local gap = hb[i].t - hb[i - 1].t
        assert.is_true(gap > 120 and gap < 600, "heartbeat gap " .. gap)
      end
      assert.equal(0, #events_of(r))     -- nothing but metadata without event sources
      assert.equal("timeout", r["end"]["end"])
    end)

    it("streams a burst of realistic events with a per-channel sequence", function()
      local ch = emu:channel(tok, { PRESENCE, QUEUE })
      local p = emu:probe_bg { channel = ch.id, duration_ms = 5000, max_frames = 400, print_max = 100000 }
      assert.equal(101, p:wait_open().handshake)
      local st, j = emu:admin("POST", "channels/" .. ch.id .. "/events", { count = 300 })
      assert.equal(200, st)
      assert.equal(1, j.count)
      local r = p:wait_for(function(x) return #events_of(x) >= 300 end, 15)
      assert.truthy(r, "300 events did not arrive")
      local ev = events_of(r)
      local seen = {}
      for i, f in ipairs(ev) do
        local m = f.msg
        assert.equal("2", m.version)
        assert.equal(i, m.eventBody.sequence)
        assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", m.metadata.CorrelationId)
        seen[m.topicName] = (seen[m.topicName] or 0) + 1
        if m.topicName == PRESENCE then
          assert.is_string(m.eventBody.presenceDefinition.systemPresence)
          assert.is_string(m.eventBody.modifiedDate)
          assert.equal(1024, f.len)
        else
          assert.equal(QUEUE, m.topicName)
          assert.equal(2, #m.eventBody.participants)
          assert.equal("7f1d-q1", m.eventBody.participants[2].queueId)
          assert.is_true(f.len >= 1000 and f.len <= 1400)
        end
      end
      assert.equal(150, seen[PRESENCE])
      assert.equal(150, seen[QUEUE])
      local s = emu:stats().channels[ch.id]
      assert.equal(300, s.events_sent)
      assert.equal(1, s.first_seq)
      assert.equal(300, s.last_seq)
      emu:admin("POST", "channels/" .. ch.id .. "/close", {})
      p:result()
    end)

    it("streams at a rate, on one topic, with a chosen size", function()
      local ch = emu:channel(tok, { PRESENCE, QUEUE })
      local p = emu:probe_bg { channel = ch.id, duration_ms = 3000, print_max = 100000 }
      assert.equal(101, p:wait_open().handshake)
      local st = emu:admin("POST", "channels/" .. ch.id .. "/events",
        { count = 10, rate = 20, topic = QUEUE, size = 4000 })
      assert.equal(200, st)
      local r = p:wait_for(function(x) return #events_of(x) >= 10 end, 10)
      assert.truthy(r)
      local ev = events_of(r)
      for _, f in ipairs(ev) do
        assert.equal(QUEUE, f.msg.topicName)
        assert.equal(4000, f.len)
      end
      -- 10 events at 20/s span about 450 ms
      local span = ev[10].t - ev[1].t
      assert.is_true(span > 300 and span < 3000, "span " .. span)
      -- admin validation names the field
      local s2, e2 = emu:admin("POST", "channels/" .. ch.id .. "/events", { count = "x" })
      assert.equal(400, s2)
      assert.matches('"count"', e2.message)
      s2, e2 = emu:admin("POST", "channels/" .. ch.id .. "/events",
        { count = 1, topic = "v2.users.x.presence" })
      assert.equal(409, s2)
      assert.matches("not subscribed", e2.message)
      emu:admin("POST", "channels/" .. ch.id .. "/close", {})
      p:result()
      s2 = emu:admin("POST", "channels/" .. ch.id .. "/events", { count = 1 })
      assert.equal(409, s2)   -- no live connection
    end)

    it("publishes one event to every subscribed channel with one CorrelationId", function()
      local a = emu:channel(tok, { PRESENCE })
      local b = emu:channel(tok, { PRESENCE, QUEUE })
      local c = emu:channel(tok, { QUEUE })
      local pa = emu:probe_bg { channel = a.id, until_text = "overlap", duration_ms = 5000 }
      local pb = emu:probe_bg { channel = b.id, until_text = "overlap", duration_ms = 5000 }
      local pc = emu:probe_bg { channel = c.id, duration_ms = 1500 }
      for _, p in ipairs { pa, pb, pc } do assert.equal(101, p:wait_open().handshake) end
      assert.truthy(emulator.wait_until(function() return emu:stats().global.open_connections >= 3 end))
      local st, j = emu:admin("POST", "publish", { topic = PRESENCE,
        eventBody = { id = "user-1", note = "overlap", presenceDefinition = { systemPresence = "Away" } } })
      assert.equal(200, st)
      assert.equal(2, j.delivered)
      local ra, rb, rc = pa:result(), pb:result(), pc:result()
      local ea, eb = events_of(ra), events_of(rb)
      assert.equal(1, #ea)
      assert.equal(1, #eb)
      assert.equal(j.correlationId, ea[1].msg.metadata.CorrelationId)
      assert.equal(j.correlationId, eb[1].msg.metadata.CorrelationId)
      assert.equal("Away", ea[1].msg.eventBody.presenceDefinition.systemPresence)
      assert.equal(PRESENCE, eb[1].msg.topicName)
      assert.is_number(ea[1].msg.eventBody.sequence)
      assert.equal(0, #events_of(rc))
      st = emu:admin("POST", "publish", { eventBody = {} })
      assert.equal(400, st)
    end)

    it("keeps one connection per channel: a second one displaces the first", function()
      local ch = emu:channel(tok, { PRESENCE })
      local first = emu:probe_bg { channel = ch.id, duration_ms = 5000 }
      assert.equal(101, first:wait_open().handshake)
      local second = emu:probe_bg { channel = ch.id, duration_ms = 800 }
      assert.equal(101, second:wait_open().handshake)
      local r1 = first:result()
      assert.equal("close", r1["end"]["end"])
      assert.matches("replaced", r1["end"].reason)
      local r2 = second:result()
      assert.equal("timeout", r2["end"]["end"])
      local s = emu:stats().channels[ch.id]
      assert.equal(2, s.handshakes)
    end)

    it("expire and evict send a 404 notice, close, and refuse reconnection", function()
      for _, action in ipairs { "expire", "evict" } do
        local ch = emu:channel(tok, { PRESENCE })
        local p = emu:probe_bg { channel = ch.id, duration_ms = 5000 }
        assert.equal(101, p:wait_open().handshake)
        assert.truthy(emulator.wait_until(function() return emu:stats().channels[ch.id].connected end))
        local st = emu:admin("POST", "channels/" .. ch.id .. "/" .. action, {})
        assert.equal(200, st)
        local r = p:result()
        local last = r.texts[#r.texts].msg
        assert.equal("404", last.result)
        assert.equal(ch.id, last.eventBody.channelId)
        assert.equal("close", r["end"]["end"])
        assert.equal(1000, r["end"].code)
        local s = emu:stats().channels[ch.id]
        assert.is_true(s.expired)
        assert.equal(action == "evict", s.evicted)
        assert.equal(404, emu:probe { channel = ch.id, duration_ms = 500 }.open.handshake)
        assert.equal(409, (emu:admin("POST", "channels/" .. ch.id .. "/" .. action, {})))
      end
    end)
  end)
end

describe("emulator stream lifetime and limits", function()
  it("closes a connected channel when its --channel-ttl runs out", function()
    local emu = emulator.start { channel_ttl = 2 }
    finally(function() emu:stop() end)
    local ch = emu:channel(emu:token(), { PRESENCE })
    local r = emu:probe { channel = ch.id, duration_ms = 6000 }
    assert.equal(101, r.open.handshake)
    assert.equal("close", r["end"]["end"])
    assert.equal("404", r.texts[#r.texts].msg.result)
    assert.is_true(r["end"].elapsed_ms > 300 and r["end"].elapsed_ms < 5000)
  end)

  it("streams --event-rate events per second per connected channel", function()
    local emu = emulator.start { args = { "--event-rate", "40", "--event-size", "512" } }
    finally(function() emu:stop() end)
    local ch = emu:channel(emu:token(), { PRESENCE })
    local r = emu:probe { channel = ch.id, duration_ms = 1000 }
    local ev = events_of(r)
    assert.is_true(#ev >= 20 and #ev <= 45, "events in 1 s at 40/s: " .. #ev)
    for i, f in ipairs(ev) do
      assert.equal(i, f.msg.eventBody.sequence)
      assert.equal(512, f.len)
    end
  end)

  it("closes with 1009 when a client message exceeds --max-message", function()
    local emu = emulator.start { args = { "--max-message", "100" } }
    finally(function() emu:stop() end)
    local ch = emu:channel(emu:token(), { PRESENCE })
    local r = emu:probe { channel = ch.id, duration_ms = 2000,
      send = { '{"message":"ping"}', '{"message":"' .. string.rep("x", 200) .. '"}' } }
    assert.equal(1, #metadata_of(r, "pong"))
    assert.equal("close", r["end"]["end"])
    assert.equal(1009, r["end"].code)
  end)

  it("reports connections and handshake rates in the stats", function()
    local emu = emulator.start {}
    finally(function() emu:stop() end)
    local tok = emu:token()
    local probes = {}
    for i = 1, 5 do
      local ch = emu:channel(tok, { PRESENCE })
      probes[i] = emu:probe_bg { channel = ch.id, duration_ms = 1500 }
    end
    for _, p in ipairs(probes) do assert.equal(101, p:wait_open().handshake) end
    local g = emu:stats().global
    assert.equal(5, g.open_connections)
    assert.equal(5, g.handshakes)
    assert.is_true(g.handshakes_per_s_peak >= 1 and g.handshakes_per_s_peak <= 5)
    for _, p in ipairs(probes) do p:result() end
    emulator.sleep(1.1)
    g = emu:stats().global
    assert.equal(0, g.open_connections)
    assert.equal(0, g.handshakes_per_s)
    assert.is_true(g.handshakes_per_s_peak >= 1)
  end)
end)
