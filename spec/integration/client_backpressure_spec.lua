-- overflow = "pause": a slow application makes the client stop reading the socket (TCP pushes
-- back on the server, which keeps the events) instead of dropping; the drop option still counts
-- and reports.
local emulator = require "support.emulator"
local wait = require "support.wait"
local notify = require "genesys.notify"

local T = "v2.users.bp1.presence"

-- A slow application: about `ms` (default 1) ms of work per event.
local function slow(rec, ms)
  local record = rec.on_event
  return function(ev)
    local t = os.clock()
    while os.clock() - t < (ms or 1) / 1000 do end
    record(ev)
  end
end

local function start(emu, extra, ms)
  local rec = wait.recorder()
  local cfg = wait.config(emu, rec, extra)
  cfg.topics = { T }
  cfg.on_event = slow(rec, ms)
  local client = notify.new(cfg)
  client:start()
  assert(wait.until_(client, function() return rec.count("connected") > 0 end, 10000),
    "the client did not connect")
  return client, rec
end

describe("genesys.notify client: a slow consumer", function()
  local emu
  setup(function() emu = emulator.start { tls = true } end)
  teardown(function() if emu then emu:stop() end end)

  it("pause (default): a burst of 20x queue_limit arrives once and in order, pauses reported", function()
    local client, rec = start(emu, { queue_limit = 25, pause_max_ms = 60000 })
    finally(function() client:close() end)
    local ch = wait.channel_of(rec)
    local N = 500
    assert.equals(200, (emu:admin("POST", "channels/" .. ch .. "/events",
      { count = N, topic = T, size = 4000 })))
    assert.truthy(wait.until_(client, function() return #rec.events >= N end, 60000),
      "got " .. #rec.events .. " of " .. N)
    wait.for_ms(client, 100) -- nothing more may come
    assert.equals(N, #rec.events)
    local first = rec.events[1].body.sequence
    for i, ev in ipairs(rec.events) do
      assert.equals(first + i - 1, ev.body.sequence)
    end
    local m = client:metrics()
    assert.equals(0, m.dropped)
    assert.equals(0, rec.count("overflow"))
    assert.truthy(m.pauses >= 1, "never paused")
    assert.truthy(m.paused_ms > 0)
    local paused = rec.where("backpressure", function(h) return h.event == "paused" end)
    local resumed = rec.where("backpressure", function(h) return h.event == "resumed" end)
    assert.equals(m.pauses, #paused)
    assert.equals(m.pauses, #resumed)
    assert.equals(25, paused[1].queue_limit)
    assert.truthy(paused[1].queued_events >= 25)
    assert.equals("number", type(resumed[1].paused_ms))
    assert.equals("open", client:state())
    assert.equals(0, rec.count("disconnected"))
  end)

  it("pause: the heartbeat watchdog does not call a paused link dead", function()
    -- each pause lasts about 5 x 40 ms, well over idle_ms + ping_timeout_ms
    local client, rec = start(emu, { queue_limit = 10, overflow = "pause",
      heartbeat = { idle_ms = 30, ping_timeout_ms = 30 } }, 40)
    finally(function() client:close() end)
    local ch = wait.channel_of(rec)
    local N = 60
    emu:admin("POST", "channels/" .. ch .. "/events", { count = N, topic = T })
    assert.truthy(wait.until_(client, function() return #rec.events >= N end, 30000),
      "got " .. #rec.events .. " of " .. N)
    assert.truthy(client:metrics().pauses >= 1, "never paused")
    assert.equals(0, rec.count("disconnected"))
    assert.equals(0, client:metrics().dropped)
  end)

  it("pause over ws:// too: what one socket read holds past the limits waits, nothing dropped", function()
    -- one read takes up to 64 KB (docs/receive.md): the frames after a pause is asked are held
    -- (wss: in the TLS read buffer, ws://: copied) and read when the queue has room again
    local plain = emulator.start { tls = false }
    finally(function() plain:stop() end)
    local client, rec = start(plain, { queue_limit = 10, overflow = "pause" }, 5)
    finally(function() client:close() end)
    local ch = wait.channel_of(rec)
    local N = 120
    plain:admin("POST", "channels/" .. ch .. "/events", { count = N, topic = T, size = 500 })
    assert.truthy(wait.until_(client, function() return #rec.events >= N end, 30000),
      "got " .. #rec.events .. " of " .. N)
    assert.equals(0, client:metrics().dropped)
    assert.truthy(client:metrics().pauses >= 1, "never paused")
    local first = rec.events[1].body.sequence
    for i, ev in ipairs(rec.events) do assert.equals(first + i - 1, ev.body.sequence) end
  end)

  it("pause with a short pause_max_ms: drops after it, counted and reported", function()
    local client, rec = start(emu, { queue_limit = 10, overflow = "pause", pause_max_ms = 50 })
    finally(function() client:close() end)
    local ch = wait.channel_of(rec)
    local N = 300
    emu:admin("POST", "channels/" .. ch .. "/events", { count = N, topic = T })
    -- do not poll: the queue stays full past pause_max_ms, then events are dropped
    assert.truthy(emulator.wait_until(function() return client:metrics().events >= N end, 10))
    assert.truthy(wait.until_(client, function()
      return rec.count("backpressure") >= 3 and client:metrics().queued_events == 0 end, 10000))
    local m = client:metrics()
    assert.truthy(m.dropped > 0, "nothing dropped")
    local dropped = 0
    for _, h in ipairs(rec.kinds.overflow or {}) do dropped = dropped + h.dropped end
    assert.equals(m.dropped, dropped)
    assert.equals(N, #rec.events + dropped)
    local ev = {}
    for _, h in ipairs(rec.kinds.backpressure) do ev[#ev + 1] = h.event end
    assert.same({ "paused", "dropping", "recovered" }, { ev[1], ev[2], ev[3] })
  end)

  it("drop: a full queue drops, counts and reports, and never pauses", function()
    local client, rec = start(emu, { queue_limit = 10, overflow = "drop" })
    finally(function() client:close() end)
    local ch = wait.channel_of(rec)
    emu:admin("POST", "channels/" .. ch .. "/events", { count = 50, topic = T })
    assert.truthy(emulator.wait_until(function() return client:metrics().events >= 50 end, 5))
    assert.truthy(wait.until_(client, function() return #rec.events >= 10 end, 5000))
    local m = client:metrics()
    assert.equals(0, m.pauses)
    assert.equals(0, rec.count("backpressure"))
    local dropped = 0
    for _, h in ipairs(rec.kinds.overflow or {}) do dropped = dropped + h.dropped end
    assert.equals(40, dropped)
    assert.equals(40, m.dropped)
  end)

  it("names the field of a bad setting", function()
    local cfg = wait.config(emu, nil, { topics = { T } })
    cfg.overflow = "block"
    local ok, err = pcall(notify.new, cfg)
    assert.is_false(ok)
    assert.matches('overflow: expected "drop" or "pause"', err, 1, true)
    cfg.overflow = "pause"
    cfg.pause_max_ms = -1
    ok, err = pcall(notify.new, cfg)
    assert.is_false(ok)
    assert.matches("pause_max_ms: expected an integer", err, 1, true)
  end)
end)
