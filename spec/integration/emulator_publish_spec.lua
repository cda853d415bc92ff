-- Publish streams (POST /__emulator/publish with "count"): N generated events on a topic at a
-- rate, each written when it is generated to every live connection subscribed to the topic with
-- one CorrelationId; GET publish/ID counts generated, delivered, dropped. Real sockets, TLS.
local emulator = require "support.emulator"
local cjson = require "cjson.safe"

local OTHER = "v2.users.u-other.presence"
-- sanitizer builds run about 3x slower: waits stretch, rate bounds do not
local SLOW = require("support.build").slow

-- Each test publishes on a topic of its own, so that no connection of an earlier test counts.
local ntopic = 0
local function topic()
  ntopic = ntopic + 1
  return "v2.users.u-publish-" .. ntopic .. ".presence"
end

-- The events of publish stream `id` a probe received, in order: {seq=, corr=, ms=, len=, t=}.
local function stream_events(r, id)
  local out = {}
  for _, f in ipairs(r.texts) do
    local b = f.msg and f.msg.eventBody
    if b and b.stream == id then
      out[#out + 1] = { seq = b.sequence, corr = f.msg.metadata.CorrelationId,
        ms = b.published_ms, len = f.len, topic = f.msg.topicName, t = f.t }
    end
  end
  return out
end

-- Asserts the events are the consecutive sequences first..last.
local function assert_consecutive(evs, first, last)
  assert.is_true(#evs > 0, "no events")
  assert.equal(first, evs[1].seq)
  for i = 2, #evs do
    assert.equal(evs[i - 1].seq + 1, evs[i].seq, "gap after sequence " .. evs[i - 1].seq)
  end
  assert.equal(last, evs[#evs].seq)
end

describe("emulator publish streams", function()
  local emu, tok
  setup(function()
    emu = emulator.start { tls = true }
    tok = emu:token()
  end)
  teardown(function() assert.equal(0, emu:stop()) end)      -- exit status 0, else its stderr

  local function start(body)
    local st, j = emu:admin("POST", "publish", body)
    assert.equal(200, st, cjson.encode(j))
    return j
  end

  local function status(id)
    local st, j = emu:admin("GET", string.format("publish/%d", id))
    assert.equal(200, st, cjson.encode(j))
    return j
  end

  local function wait_done(id, timeout)
    return emulator.wait_until(function()
      local j = status(id)
      return j.done and j.queued == 0 and j
    end, timeout or 20 * SLOW)
  end

  -- A connected probe on a new channel subscribed to topics.
  local function listener(topics, o)
    local ch = emu:channel(tok, topics)
    o = o or {}
    o.channel = ch.id
    o.duration_ms = o.duration_ms or 20000 * SLOW
    local p = emu:probe_bg(o)
    assert.equal(101, p:wait_open().handshake)
    assert.truthy(emulator.wait_until(function() return emu:stats().channels[ch.id].connected end))
    return ch, p
  end

  it("reaches every subscribed channel with one CorrelationId per event, in sequence, at the rate",
    function()
      local T = topic()
      local a, pa = listener({ T }, { max_frames = 400 })
      local b, pb = listener({ OTHER, T }, { max_frames = 400 })
      local c, pc = listener({ OTHER })
      local j = start { topic = T, count = 400, rate = 200, size = 400 }
      assert.is_number(j.stream)
      assert.equal(400, j.count)
      local done = wait_done(j.stream)
      assert.truthy(done, "the stream did not finish")
      assert.same({ 400, 800, 0, 0, 0 },
        { done.generated, done.delivered, done.dropped, done.queued, done.discarded })
      local ea, eb = stream_events(pa:result(), j.stream), stream_events(pb:result(), j.stream)
      assert_consecutive(ea, 1, 400)
      assert_consecutive(eb, 1, 400)
      local seen = {}
      for i = 1, 400 do
        assert.equal(ea[i].corr, eb[i].corr, "CorrelationId of sequence " .. i)
        assert.equal(ea[i].ms, eb[i].ms)
        assert.is_nil(seen[ea[i].corr], "CorrelationId reused")
        seen[ea[i].corr] = true
        assert.equal(400, ea[i].len)
        assert.equal(T, ea[i].topic)
        if i > 1 then assert.is_true(ea[i].ms >= ea[i - 1].ms) end
      end
      -- 400 events at 200/s: 399 intervals of 5 ms. Never early; late within loose bounds.
      local span = ea[400].ms - ea[1].ms
      assert.is_true(span >= 1990, "400 events at 200/s took " .. span .. " ms")
      assert.is_true(span < 4000 * SLOW, "400 events at 200/s took " .. span .. " ms")
      assert.is_true(math.abs(ea[1].ms - done.started_ms) < 1000 * SLOW)
      emu:admin("POST", "channels/" .. c.id .. "/close", {})
      assert.equal(0, #stream_events(pc:result(), j.stream))    -- not subscribed to T
      local s = emu:stats().channels
      assert.is_true(s[a.id].events_sent >= 400 and s[b.id].events_sent >= 400)
    end)

  it("bursts without a rate: every event, in order, to every subscriber", function()
    local T = topic()
    local _, pa = listener({ T }, { max_frames = 3000 })
    local _, pb = listener({ T }, { max_frames = 3000 })
    local j = start { topic = T, count = 3000, size = 200 }
    local done = wait_done(j.stream)
    assert.truthy(done, "the burst did not finish")
    assert.same({ 3000, 6000, 0 }, { done.generated, done.delivered, done.dropped })
    local ea, eb = stream_events(pa:result(), j.stream), stream_events(pb:result(), j.stream)
    assert_consecutive(ea, 1, 3000)
    assert_consecutive(eb, 1, 3000)
    assert.equal(ea[3000].corr, eb[3000].corr)
  end)

  it("reaches a channel that subscribes mid-stream from then on only", function()
    local T = topic()
    local _, pa = listener({ T })
    local late, pl = listener({ OTHER })
    local j = start { topic = T, count = 600, rate = 200, size = 300 }
    assert.truthy(pa:wait_for(function(r) return #stream_events(r, j.stream) >= 150 end, 10 * SLOW))
    local st = emu:rest(tok, "PUT", "/channels/" .. late.id .. "/subscriptions", { { id = T } })
    assert.equal(200, st)
    local done = wait_done(j.stream)
    assert.truthy(done)
    emu:admin("POST", "channels/*/close", {})
    local ea, el = stream_events(pa:result(), j.stream), stream_events(pl:result(), j.stream)
    assert_consecutive(ea, 1, 600)
    local first = el[1] and el[1].seq
    assert.is_true(first and first > 150, "the late subscriber's first event: " .. tostring(first))
    assert_consecutive(el, first, 600)
    for _, e in ipairs(el) do assert.equal(ea[e.seq].corr, e.corr) end
    assert.equal(600 + #el, done.delivered)
    assert.equal(0, done.dropped)
  end)

  it("counts events with no live subscribed connection as dropped", function()
    local T = topic()
    local ch = emu:channel(tok, { T })
    -- no connection yet: the first events are dropped
    local j = start { topic = T, count = 400, rate = 100, size = 300 }
    assert.truthy(emulator.wait_until(function() return status(j.stream).generated >= 40 end,
      10 * SLOW))
    local p = emu:probe_bg { channel = ch.id, duration_ms = 20000 * SLOW }
    assert.equal(101, p:wait_open().handshake)
    assert.truthy(p:wait_for(function(r) return #stream_events(r, j.stream) >= 80 end, 10 * SLOW))
    -- the connection goes mid-stream: the rest is dropped too
    assert.equal(200, (emu:admin("POST", "channels/" .. ch.id .. "/close", {})))
    local evs = stream_events(p:result(), j.stream)
    local done = wait_done(j.stream)
    assert.truthy(done)
    assert.equal(400, done.generated)
    assert.equal(#evs, done.delivered)                     -- what was written was received
    assert.is_true(done.discarded <= 1, "discarded " .. done.discarded)
    assert.is_true(evs[1].seq > 40 and evs[#evs].seq < 400,
      "received " .. evs[1].seq .. ".." .. evs[#evs].seq)
    assert_consecutive(evs, evs[1].seq, evs[#evs].seq)
    -- before the connection, and after it less what its queue held when it closed
    assert.equal(evs[1].seq - 1 + 400 - evs[#evs].seq - done.discarded, done.dropped)
  end)

  it("survives connections reset, replaced, closed and channels expiring mid-stream", function()
    local T = topic()
    local chans, probes = {}, {}
    for i = 1, 5 do chans[i], probes[i] = listener({ T }) end
    local j = start { topic = T, count = 1500, rate = 500, size = 400 }
    assert.truthy(probes[1]:wait_for(function(r) return #stream_events(r, j.stream) >= 200 end,
      10 * SLOW))
    assert.equal(200, (emu:admin("POST", "channels/" .. chans[1].id .. "/reset", {})))
    assert.equal(200, (emu:admin("POST", "channels/" .. chans[2].id .. "/expire", {})))
    assert.equal(200, (emu:admin("POST", "channels/" .. chans[3].id .. "/socket_closing",
      { grace_ms = 300 })))
    local again = emu:probe_bg { channel = chans[4].id, duration_ms = 20000 * SLOW }  -- replaces
    assert.equal(101, again:wait_open().handshake)
    assert.equal(200, (emu:admin("POST", "channels/" .. chans[5].id .. "/stall", { ms = 300 })))
    local done = wait_done(j.stream)
    assert.truthy(done)
    assert.equal(1500, done.generated)
    assert.equal(0, done.dropped)                          -- the replacement was live throughout
    emu:admin("POST", "channels/*/close", {})
    -- every subscriber's events were consecutive for as long as it was connected
    local received = 0
    for i, p in ipairs(probes) do
      local evs = stream_events(p:result(), j.stream)
      received = received + #evs
      assert_consecutive(evs, 1, evs[#evs].seq)
      if i == 5 then assert.equal(1500, evs[#evs].seq) end   -- a stall only delays
    end
    local evs = stream_events(again:result(), j.stream)
    assert_consecutive(evs, evs[1].seq, 1500)
    received = received + #evs
    -- the reset socket's last writes may never arrive: delivered counts what was written
    assert.is_true(received <= done.delivered and received >= done.delivered - 100,
      "received " .. received .. ", delivered " .. done.delivered)
    -- the socket_closing connection still received events during its 300 ms grace (500/s)
    local r3, notice = probes[3]:result()
    for _, f in ipairs(r3.texts) do
      if f.msg.topicName == "v2.system.socket_closing" then notice = f end
    end
    assert.truthy(notice)
    local after = 0
    for _, e in ipairs(stream_events(r3, j.stream)) do
      if e.t > notice.t then after = after + 1 end
    end
    assert.is_true(after >= 30, after .. " events after socket_closing")
    assert.equal(1001, r3["end"].code)
  end)

  it("lists streams and validates requests, naming the field", function()
    local T = topic()
    local st, j = emu:admin("GET", "publish")
    assert.equal(200, st)
    assert.is_true(#j.streams >= 1)
    assert.is_number(j.streams[1].generated)
    assert.equal(404, (emu:admin("GET", "publish/999999")))
    assert.equal(404, (emu:admin("GET", "publish/x")))
    local cases = {
      { { topic = T, count = 0 }, '"count"' },
      { { topic = T, count = "5" }, '"count"' },
      { { topic = T, count = 5, rate = 0 }, '"rate"' },
      { { topic = T, count = 5, rate = "fast" }, '"rate"' },
      { { topic = T, count = 5, size = 0 }, '"size"' },
      { { topic = 'v2.users."x".presence', count = 5 }, '"topic"' },
      { { count = 5 }, '"topic"' },
      { { topic = T, count = 5, eventBody = {} }, '"eventBody"' },
      { { topic = T, rate = 5 }, '"rate"' },
    }
    for _, c in ipairs(cases) do
      local s, e = emu:admin("POST", "publish", c[1])
      assert.equal(400, s, cjson.encode(c[1]))
      assert.matches(c[2], e.message)
    end
    -- the single event is unchanged
    local s1, one = emu:admin("POST", "publish", { topic = T, eventBody = { x = 1 } })
    assert.equal(200, s1)
    assert.is_number(one.delivered)
    assert.is_string(one.correlationId)
  end)
end)
