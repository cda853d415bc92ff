-- The stream's own faults: channel expiry (hard reconnect, every subscription restored),
-- malformed frames, oversized messages, socket_closing, queue overflow.
local emulator = require "support.emulator"
local wait = require "support.wait"

local T1, T2, T3 = "v2.users.s1.presence", "v2.users.s2.presence", "v2.users.s3.presence"

local function start_client(emu, extra)
  return wait.start_client(emu, extra, { T1 }, true)
end

describe("genesys.notify client: stream faults", function()
  local emu
  setup(function() emu = emulator.start { tls = true } end)
  teardown(function() if emu then emu:stop() end end)

  it("channel expired -> hard reconnect: a new channel with every subscription restored", function()
    local client, rec = start_client(emu, { topics = { T1 } })
    finally(function() client:close() end)
    client:subscribe { T2, T3 }
    local old = wait.channel_of(rec)
    assert.truthy(wait.until_(client, function()
      return #emu:stats().channels[old].subscriptions == 3 end, 5000))
    assert.equals(200, (emu:admin("POST", "channels/" .. old .. "/expire", {})))
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    assert.equals(1, rec.count("channel_gone"))
    local new = wait.channel_of(rec)
    assert.are_not.equal(old, new)
    assert.is_true(rec.kinds.restored[1].new_channel)
    local subs = emu:stats().channels[new].subscriptions
    table.sort(subs)
    assert.same({ T1, T2, T3 }, subs)
    emu:admin("POST", "channels/" .. new .. "/events", { count = 2, topic = T3 })
    assert.truthy(wait.until_(client, function() return #rec.events >= 2 end, 5000))
    assert.equals(new, rec.events[1].channel_id)
  end)

  it("an evicted channel is replaced the same way", function()
    local client, rec = start_client(emu)
    finally(function() client:close() end)
    local old = wait.channel_of(rec)
    emu:admin("POST", "channels/" .. old .. "/evict", {})
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    assert.are_not.equal(old, wait.channel_of(rec))
    assert.same({ T1 }, emu:stats().channels[wait.channel_of(rec)].subscriptions)
  end)

  for _, kind in ipairs { "invalid_json", "binary", "invalid_utf8" } do
    it("a malformed frame (" .. kind .. ") is a health event and the stream goes on", function()
      local client, rec = start_client(emu)
      finally(function() client:close() end)
      local ch = wait.channel_of(rec)
      assert.equals(200, (emu:admin("POST", "channels/" .. ch .. "/malformed", { kind = kind })))
      emu:admin("POST", "channels/" .. ch .. "/events", { count = 2, topic = T1 })
      assert.truthy(wait.until_(client, function() return #rec.events >= 2 end, 5000))
      local m = rec.kinds.malformed
      assert.truthy(m and #m >= 1, "no malformed health")
      assert.equals(kind, m[1].reason)
      assert.equals(1, m[1].count)
      assert.equals(1, client:metrics().malformed)
      -- either the stream went on, or (invalid UTF-8 refused by the WebSocket layer) it recovered
      assert.equals("open", client:state())
    end)
  end

  it("a message over max_message_size is a health event and a reconnect, never a crash", function()
    local client, rec = start_client(emu, { max_message_size = 4096 })
    finally(function() client:close() end)
    local ch = wait.channel_of(rec)
    emu:admin("POST", "channels/" .. ch .. "/malformed", { kind = "oversized", size = 100000 })
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    local o = rec.kinds.oversize[1]
    assert.truthy(o.error:find("max_message_size", 1, true))
    assert.equals(4096, o.limit)
    assert.equals("oversize", rec.kinds.disconnected[1].reason)
    emu:admin("POST", "channels/" .. ch .. "/events", { count = 1, topic = T1 })
    assert.truthy(wait.until_(client, function() return #rec.events >= 1 end, 5000))
  end)

  it("fragmented large messages within the limit are reassembled", function()
    local client, rec = start_client(emu, { max_message_size = 1024 * 1024 })
    finally(function() client:close() end)
    emu:admin("POST", "channels/" .. wait.channel_of(rec) .. "/events",
      { count = 3, topic = T1, size = 200000 })
    assert.truthy(wait.until_(client, function() return #rec.events >= 3 end, 5000))
    for _, ev in ipairs(rec.events) do assert.is_true(#ev.raw >= 200000) end
    assert.equals(0, rec.count("malformed"))
  end)

  it("socket_closing -> rollover: new channel before the old one goes, nothing lost or doubled", function()
    local client, rec = start_client(emu)
    finally(function() client:close() end)
    local old = wait.channel_of(rec)
    emu:admin("POST", "channels/" .. old .. "/socket_closing", { grace_ms = 3000 * wait.slow() })
    local n = 0
    local function publish()
      n = n + 1
      emu:admin("POST", "publish", { topic = T1, eventBody = { n = n } })
    end
    while n < 30 and not wait.until_(client, function()
      return #rec.where("rollover", function(h) return h.event == "completed" end) > 0 end, 1) do
      publish()
    end
    assert.truthy(wait.until_(client, function()
      return #rec.where("rollover", function(h) return h.event == "completed" end) > 0 end, 5000))
    for _ = 1, 5 do publish() end
    assert.truthy(wait.until_(client, function() return #rec.events >= n end, 5000))
    wait.for_ms(client, 200)
    assert.equals(1, rec.count("socket_closing"))
    local done = rec.where("rollover", function(h) return h.event == "completed" end)[1]
    assert.is_false(done.gap)
    assert.equals(old, done.from)
    assert.are_not.equal(old, done.to)
    assert.equals(0, rec.count("disconnected"))
    assert.equals(0, rec.count("restored"))
    local seen = {}
    for _, ev in ipairs(rec.events) do
      assert.is_nil(seen[ev.body.n], "event " .. tostring(ev.body.n) .. " delivered twice")
      seen[ev.body.n] = true
    end
    for i = 1, n do assert.truthy(seen[i], "event " .. i .. " lost") end
    local st = emu:stats()
    assert.same({ T1 }, st.channels[done.to].subscriptions)
    assert.is_true(st.channels[done.to].connected)
    -- The old socket is read until the server closes it after the grace: then it is "drained".
    assert.truthy(wait.until_(client, function()
      return #rec.where("rollover", function(h) return h.event == "drained" end) > 0 end,
      6000 * wait.slow()))
    local drained = rec.where("rollover", function(h) return h.event == "drained" end)[1]
    assert.equals(old, drained.channel_id)
    assert.equals(1001, drained.code)
    assert.is_false(emu:stats().channels[old].connected)
    assert.equals(0, rec.count("gap"))
    assert.equals(1, client:metrics().rollovers)
  end)

  it("socket_closing with no time left -> the gap is reported and the new channel takes over", function()
    local client, rec = start_client(emu)
    finally(function() client:close() end)
    local old = wait.channel_of(rec)
    emu:admin("POST", "channels/" .. old .. "/socket_closing", { grace_ms = 1 })
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    assert.equals("socket_closing", rec.kinds.disconnected[1].reason)
    assert.is_true(rec.kinds.restored[1].new_channel)
    assert.are_not.equal(old, wait.channel_of(rec))
    assert.equals("open", client:state())
  end)

  it("a full event queue drops and counts, and reports it as health overflow", function()
    local client, rec = start_client(emu, { queue_limit = 10, overflow = "drop" })
    finally(function() client:close() end)
    local ch = wait.channel_of(rec)
    emu:admin("POST", "channels/" .. ch .. "/events", { count = 50, topic = T1 })
    -- do not poll until the client has read them all (metrics() counts dropped ones too)
    assert.truthy(emulator.wait_until(function() return client:metrics().events >= 50 end, 5))
    assert.equals(10, client:metrics().queued_events)
    assert.truthy(wait.until_(client, function() return #rec.events >= 10 end, 5000))
    local ov = rec.kinds.overflow
    assert.truthy(ov and #ov >= 1, "no overflow health")
    local dropped = 0
    for _, h in ipairs(ov) do dropped = dropped + h.dropped end
    assert.equals(50, #rec.events + dropped)
    assert.equals(dropped, client:metrics().dropped)
    assert.equals(10, ov[1].queue_limit)
    assert.equals("open", ov[1].state)
    assert.equals("number", type(ov[1].timestamp_ms))
  end)
end)
