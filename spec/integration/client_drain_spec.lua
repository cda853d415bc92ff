-- client:drain(max): the pull API (issue 10). The waiting items come back as tables (the ones
-- the callbacks would get, plus item = "event" or "health"), in arrival order, without the core
-- calling on_event/on_health, so that a handler can run where it may yield (OpenResty). Against
-- the emulator over TLS.
local emulator = require "support.emulator"
local wait = require "support.wait"
local notify = require "genesys.notify"
local cjson = require "cjson"
local ts = require "gn_testsock"

local T = "v2.users.drain-1.presence"
local now_ms = wait.now_ms

local function publish(emu, n, first)
  for i = first or 1, (first or 1) + n - 1 do
    local st = emu:admin("POST", "publish", { topic = T, eventBody = { n = i } })
    assert.equals(200, st)
  end
end

-- Drains until pred(items so far) holds; returns the items (every one, in order).
local function drain_until(client, pred, timeout_ms, max)
  local all = {}
  local deadline = now_ms() + (timeout_ms or 10000) * wait.slow()
  while not pred(all) do
    assert(now_ms() < deadline, "timed out draining (" .. #all .. " items)")
    local got = client:drain(max)
    for _, it in ipairs(got) do all[#all + 1] = it end
    if #got == 0 then
      -- nothing waits: wait on the eventfd the way a loop would (poll(ms) would run callbacks)
      ts.readable(client:fd(), 50)
    end
  end
  return all
end

local function kinds(items, item)
  local out = {}
  for _, it in ipairs(items) do if it.item == item then out[#out + 1] = it end end
  return out
end

local function health_kind(items, kind)
  for _, it in ipairs(items) do if it.item == "health" and it.kind == kind then return it end end
end

-- A client whose callbacks fail the test if they are ever called.
local function strict_config(emu, extra)
  local called = {}
  local cfg = wait.config(emu, nil, extra)
  cfg.topics = { T }
  cfg.on_event = function() called[#called + 1] = "on_event" end
  cfg.on_health = function() called[#called + 1] = "on_health" end
  return cfg, called
end

-- Waits, without taking anything, until `n` events wait in the client's queue.
local function queued(client, n)
  assert.truthy(emulator.wait_until(function() return client:metrics().queued_events >= n end,
    10 * wait.slow()), "the events did not arrive")
end

describe("client:drain()", function()
  local emu
  setup(function() emu = emulator.start { tls = true, heartbeat_ms = 30000 } end)
  teardown(function() if emu then emu:stop() end end)

  it("returns events and health in arrival order, with item, and calls no callback", function()
    local cfg, called = strict_config(emu)
    local client = notify.new(cfg)
    finally(function() client:close() end)
    client:start()
    local items = drain_until(client, function(all) return health_kind(all, "connected") end)
    local ch = health_kind(items, "connected").channel_id
    publish(emu, 5)
    items = drain_until(client, function(all) return #kinds(all, "event") >= 5 end)
    local evs = kinds(items, "event")
    for i, ev in ipairs(evs) do
      assert.equals("event", ev.item)
      assert.equals(T, ev.topic)
      assert.equals(i, ev.body.n)
      assert.equals(i, cjson.decode(ev.raw).eventBody.n)
      assert.is_string(ev.channel_id)
      assert.is_number(ev.received_ms)
    end
    assert.same({}, called)
    -- arrival order across kinds: a reset gives disconnected, then restored, then the events
    -- published after it
    assert.equals(200, (emu:admin("POST", "channels/" .. ch .. "/reset", {})))
    items = drain_until(client, function(all) return health_kind(all, "restored") end)
    publish(emu, 3, 6)
    local more = drain_until(client, function(all) return #kinds(all, "event") >= 3 end)
    for _, it in ipairs(more) do items[#items + 1] = it end
    local pos = {}
    for i, it in ipairs(items) do
      assert.truthy(it.item == "event" or it.item == "health", it.item)
      if it.item == "health" then
        assert.is_string(it.kind)
        assert.is_string(it.state)
        assert.is_number(it.timestamp_ms)
        pos[it.kind] = pos[it.kind] or i
      else
        pos["ev" .. it.body.n] = i
      end
    end
    assert.truthy(pos.disconnected and pos.restored and pos.ev6, cjson.encode(pos))
    assert.is_true(pos.disconnected < pos.restored)
    assert.is_true(pos.restored < pos.ev6)
    assert.is_true(pos.ev6 < pos.ev7 and pos.ev7 < pos.ev8)
    assert.same({}, called)
  end)

  it("honours max, and fewer than max means nothing was left", function()
    local cfg, called = strict_config(emu)
    local client = notify.new(cfg)
    finally(function() client:close() end)
    client:start()
    drain_until(client, function(all) return health_kind(all, "connected") end)
    while #client:drain() > 0 do end -- subscription results and the like
    publish(emu, 10)
    queued(client, 10)
    local sizes, got = {}, {}
    repeat
      local part = client:drain(3)
      sizes[#sizes + 1] = #part
      for _, it in ipairs(part) do got[#got + 1] = it end
    until #part < 3
    assert.same({ 3, 3, 3, 1 }, sizes)
    for i, ev in ipairs(got) do assert.equals(i, ev.body.n) end
    assert.same({}, client:drain(1))
    -- larger than the cap counts as the cap; math.huge too
    publish(emu, 2, 11)
    queued(client, 2)
    assert.equals(2, #client:drain(math.huge))
    assert.same({}, called)
  end)

  it('drain(max, "raw" / "record"): events with their text and CorrelationId, no body', function()
    local cfg, called = strict_config(emu)
    local client = notify.new(cfg)
    finally(function() client:close() end)
    client:start()
    drain_until(client, function(all) return health_kind(all, "connected") end)
    while #client:drain() > 0 do end
    local cids = {}
    for i = 1, 4 do
      local st, j = emu:admin("POST", "publish", { topic = T, eventBody = { n = i } })
      assert.equals(200, st)
      cids[i] = j.correlationId
    end
    queued(client, 4)
    local raw = client:drain(2, "raw")
    local dec = client:drain(2)
    assert.equals(2, #raw)
    assert.equals(2, #dec)
    for i, ev in ipairs(raw) do
      assert.equals("event", ev.item)
      assert.is_nil(ev.body)
      assert.equals(i, cjson.decode(ev.raw).eventBody.n)
      assert.equals(cids[i], ev.correlation_id)
      assert.equals(cjson.decode(ev.raw).metadata.CorrelationId, ev.correlation_id)
      assert.equals(T, ev.topic)
      assert.is_string(ev.channel_id)
      assert.is_number(ev.received_ms)
    end
    for i, ev in ipairs(dec) do -- the default keeps the body, and has the CorrelationId too
      assert.equals(i + 2, ev.body.n)
      assert.equals(cids[i + 2], ev.correlation_id)
    end
    -- "record": each event as genesys.notify.resty's ring record text (resty.lua decode_record)
    for i = 5, 6 do
      local st, j = emu:admin("POST", "publish", { topic = T, eventBody = { n = i } })
      assert.equals(200, st)
      cids[i] = j.correlationId
    end
    queued(client, 2)
    local recs = client:drain(10, "record")
    assert.equals(2, #recs)
    for k, r in ipairs(recs) do
      assert.is_string(r)
      local rms, topic, ch, cid, at, len, text =
        r:match("^e\t([%d.]+)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(%d+)\t(%d+)\n(.*)$")
      assert.truthy(text, r)
      -- the receive time as its digits (whole ms; written by hand in lbind_ring.c), near now
      assert.truthy(rms:match("^%d+$"), rms)
      assert.is_true(math.abs(tonumber(rms) - os.time() * 1000) < 120000, rms)
      assert.equals(T, topic)
      assert.is_truthy(ch:match("^streaming%-"))
      assert.equals(cids[k + 4], cid)
      assert.equals(k + 4, cjson.decode(text).eventBody.n)
      local body = text:sub(tonumber(at), tonumber(at) + tonumber(len) - 1)
      assert.same(cjson.decode(text).eventBody, cjson.decode(body))
    end
    for _, bad in ipairs { "cooked", 1, true } do
      local ok, err = pcall(client.drain, client, 10, bad)
      assert.is_false(ok)
      assert.truthy(err:find('drain(max, mode): mode: expected "raw", "record" or nil, got ', 1,
        true), err)
    end
    assert.same({}, called)
  end)

  it("drain_entries(max, bytes): runs of events as resty's ring entries, read back whole",
    function()
    local core = require "genesys.notify.core"
    local cfg, called = strict_config(emu)
    local client = notify.new(cfg)
    finally(function() client:close() end)
    client:start()
    drain_until(client, function(all) return health_kind(all, "connected") end)
    while #client:drain() > 0 do end
    local cids = {}
    for i = 1, 6 do
      local st, j = emu:admin("POST", "publish", { topic = T, eventBody = { n = i } })
      assert.equals(200, st)
      cids[i] = j.correlationId
    end
    queued(client, 6)
    -- entries of at most 700 bytes: a record or two each (an event's text is a few hundred)
    local entries, got = client:drain_entries(4, 700)
    assert.equals(4, got)
    assert.truthy(#entries >= 2 and #entries <= 4, #entries)
    local evs, out, seq = {}, {}, 1
    for _, v in ipairs(entries) do
      assert.is_string(v)
      assert.truthy(#v <= 700 or tonumber(v:sub(2, 9), 16) == 1, #v)
      local n, bad = core.ring_decode_entry(v, seq, true, out)
      assert.equals(0, bad)
      for k = 1, n do evs[#evs + 1] = out[k] end
      seq = seq + n
    end
    local rest, got2 = client:drain_entries(10, 32768)
    assert.equals(2, got2)
    assert.equals(1, #rest)
    local n = core.ring_decode_entry(rest[1], seq, true, out)
    assert.equals(2, n)
    for k = 1, 2 do evs[#evs + 1] = out[k] end
    assert.equals(evs[6].received_ms, rest.last_ms)
    assert.equals(6, #evs)
    for i, ev in ipairs(evs) do
      assert.equals("event", ev.item)
      assert.equals(i, ev.seq)
      assert.equals(T, ev.topic)
      assert.is_truthy(ev.channel_id:match("^streaming%-"))
      assert.equals(cids[i], ev.correlation_id)
      assert.equals(i, ev.body.n)
      assert.same(cjson.decode(ev.raw).eventBody, ev.body)
      assert.is_true(math.abs(ev.received_ms - os.time() * 1000) < 120000)
    end
    -- records larger than `bytes`: each alone in its entry, and the next call as usual
    for i = 7, 9 do
      local st, j = emu:admin("POST", "publish", { topic = T, eventBody = { n = i } })
      assert.equals(200, st)
      cids[i] = j.correlationId
    end
    queued(client, 3)
    local big, got3 = client:drain_entries(2, 64)
    assert.equals(2, got3)
    assert.equals(2, #big)
    for k = 1, 2 do
      assert.equals(1, (core.ring_decode_entry(big[k], 6 + k, true, out)))
      assert.equals(cids[6 + k], out[1].correlation_id)
      assert.equals(6 + k, out[1].body.n)
    end
    local last = client:drain_entries(10, 32768)
    assert.equals(1, #last)
    assert.equals(1, (core.ring_decode_entry(last[1], 9, true, out)))
    assert.equals(9, out[1].body.n)
    -- nothing waits: an empty array, 0, no last_ms
    local none, z = client:drain_entries(10, 32768)
    assert.same({}, none)
    assert.equals(0, z)
    for _, args in ipairs { { 0, 100 }, { 1, 10 }, { "x", 100 }, { 1, 2 ^ 30 } } do
      assert.is_false((pcall(client.drain_entries, client, args[1], args[2])))
    end
    assert.same({}, called)
  end)

  it("refuses a bad max by name", function()
    local client = notify.new(wait.config(emu, nil, { topics = { T } }))
    finally(function() client:close() end)
    for _, bad in ipairs { 0, -1, 2.5, 0 / 0 } do
      local ok, err = pcall(client.drain, client, bad)
      assert.is_false(ok)
      assert.truthy(err:find("drain(max): expected an integer from 1 to 4096", 1, true), err)
    end
    local ok, err = pcall(client.drain, client, "10")
    assert.is_false(ok)
    assert.truthy(err:find("drain(max): expected an integer from 1 to 4096, got a string", 1, true), err)
  end)

  it("reports drops first, as an overflow health item, as poll() does", function()
    local cfg, called = strict_config(emu, { queue_limit = 4, overflow = "drop" })
    local client = notify.new(cfg)
    finally(function() client:close() end)
    client:start()
    drain_until(client, function(all) return health_kind(all, "connected") end)
    while #client:drain() > 0 do end
    publish(emu, 10)
    assert.truthy(emulator.wait_until(function() return client:metrics().events >= 10 end,
      10 * wait.slow()))
    local items = client:drain()
    assert.equals("health", items[1].item)
    assert.equals("overflow", items[1].kind)
    assert.equals(6, items[1].dropped)
    assert.equals(4, items[1].queue_limit)
    local evs = kinds(items, "event")
    assert.same({ 1, 2, 3, 4 }, { evs[1].body.n, evs[2].body.n, evs[3].body.n, evs[4].body.n })
    assert.equals(4, #evs)
    assert.equals(6, client:metrics().dropped)
    assert.same({}, called)
  end)

  it("a client without on_event keeps its events for drain()", function()
    local cfg = wait.config(emu, nil, { topics = { T } })
    assert.is_nil(cfg.on_event)
    local client = notify.new(cfg)
    finally(function() client:close() end)
    client:start()
    drain_until(client, function(all) return health_kind(all, "connected") end)
    publish(emu, 3)
    local items = drain_until(client, function(all) return #kinds(all, "event") >= 3 end)
    local evs = kinds(items, "event")
    assert.same({ 1, 2, 3 }, { evs[1].body.n, evs[2].body.n, evs[3].body.n })
  end)

  it("poll() is unchanged: it runs the callbacks of what drain() left", function()
    local rec = wait.recorder()
    local client = notify.new(wait.config(emu, rec, { topics = { T } }))
    finally(function() client:close() end)
    client:start()
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end))
    while client:poll(0) > 0 do end
    publish(emu, 4)
    queued(client, 4)
    local first = client:drain(2)
    assert.same({ 1, 2 }, { first[1].body.n, first[2].body.n })
    assert.equals(0, #rec.events)
    assert.equals(2, client:poll(0))
    assert.same({ 3, 4 }, { rec.events[1].body.n, rec.events[2].body.n })
    assert.is_nil(rec.events[1].item)
  end)

  it("answers policy records inline and does not return them", function()
    local seen = {}
    local cfg = wait.config(emu, nil, { topics = { T },
      backoff = { base_ms = 1000, max_ms = 4000, jitter = "none" },
      policy = function(a) seen[#seen + 1] = a; return a.delay_ms + 300 end })
    local client = notify.new(cfg)
    finally(function() client:close() end)
    client:start()
    local items = drain_until(client, function(all) return health_kind(all, "connected") end)
    local ch
    for _, it in ipairs(items) do if it.kind == "connected" then ch = it.channel_id end end
    emu:admin("POST", "channels/" .. ch .. "/reset", {})
    items = drain_until(client, function(all) return health_kind(all, "restored") end)
    assert.equals(1, #seen)
    assert.equals("reconnect", seen[1].type)
    assert.equals("applied", health_kind(items, "policy").event)
    -- the hook's answer (engine's 1000 ms + 300), not the engine's delay
    assert.is_true(health_kind(items, "restored").gap_ms >= 1300, health_kind(items, "restored").gap_ms)
    for _, it in ipairs(items) do assert.truthy(it.item == "event" or it.item == "health") end
  end)

  it("writes audit lines for the health items it returns", function()
    local lines = {}
    local client = notify.new(wait.config(emu, nil, { topics = { T },
      audit = { format = "pipe", sink = function(l) lines[#lines + 1] = l end } }))
    finally(function() client:close() end)
    client:start()
    local items = drain_until(client, function(all) return health_kind(all, "connected") end)
    local n = #kinds(items, "health")
    assert.equals(n, #lines)
    assert.truthy(lines[n]:find("|connected|", 1, true), lines[n])
  end)

  it("returns {} after close(), and refuses inside a callback of poll()", function()
    local rec = wait.recorder()
    local inner
    rec.on_event = function() inner = { pcall(function() return rec.client:drain() end) } end
    local client = notify.new(wait.config(emu, rec, { topics = { T } }))
    rec.client = client
    finally(function() client:close() end)
    client:start()
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end))
    publish(emu, 1)
    assert.truthy(wait.until_(client, function() return inner ~= nil end))
    assert.is_false(inner[1])
    assert.truthy(tostring(inner[2]):find("drain() called from inside a callback (on_event)", 1,
      true), tostring(inner[2]))
    publish(emu, 1, 2)
    queued(client, 1)
    client:close()
    assert.same({}, client:drain())
  end)
end)
