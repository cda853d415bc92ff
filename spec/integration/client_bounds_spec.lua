-- Memory stays bounded while the application does not poll: floods of malformed frames coalesce
-- into one health item with a count, events are bounded in bytes as well as in number, every
-- drop is counted and reported, and close() gives the memory back.
local emulator = require "support.emulator"
local wait = require "support.wait"

local T1 = "v2.users.b1.presence"

local rss_kb = wait.rss_kb

-- The sanitizers' allocators keep freed memory in quarantine: RSS bounds mean nothing there
-- (their own leak checks stand in for them).
local function rss_checked() return wait.slow() == 1 end

local function sum(list, field)
  local n = 0
  for _, h in ipairs(list or {}) do n = n + (h[field] or 0) end
  return n
end

-- Waits (without polling the client) until the emulator has written everything it queued on ch.
local function drained(emu, ch)
  return emulator.wait_until(function()
    local c = emu:stats().channels[ch]
    return c and c.queued == 0
  end, 60 * wait.slow())
end

-- Polls everything that waits (run() would block; poll(0) until nothing comes).
local function poll_all(client)
  local total = 0
  repeat
    local n = client:poll(0)
    total = total + n
  until n == 0
  return total
end

describe("genesys.notify client: memory bounded while the application does not poll", function()
  local emu
  setup(function() emu = emulator.start { tls = true, heartbeat_ms = 30000 } end)
  teardown(function() if emu then emu:stop() end end)

  it("a flood of 200,000 binary frames is one malformed item with the count, in bounded memory", function()
    local N = 200000
    local client, rec = wait.start_client(emu, {}, { T1 }, true)
    finally(function() client:close() end)
    poll_all(client)
    local ch = wait.channel_of(rec)
    collectgarbage()
    local rss0 = rss_kb()
    assert.equals(200, (emu:admin("POST", "channels/" .. ch .. "/malformed",
      { kind = "binary", count = N })))
    assert.truthy(drained(emu, ch), "the emulator did not send the flood")
    -- the client has read them all (metrics() reads counters, it runs no callback)
    assert.truthy(emulator.wait_until(function() return client:metrics().malformed >= N end,
      60 * wait.slow()), "the client did not read the flood")
    local grown = rss_kb() - rss0
    if rss_checked() then
      -- before: one item of about 1.2 KB per frame (+232 MB for 200,000)
      assert.is_true(grown < 8 * 1024, "RSS grew by " .. grown .. " KB while not polling")
    end
    poll_all(client)
    local m = rec.kinds.malformed
    assert.truthy(m, "no malformed item")
    assert.equals(1, #m, "consecutive malformed frames of one reason are one item")
    assert.equals("binary", m[1].reason)
    assert.equals(N, m[1].count)
    assert.equals("open", m[1].state)
    assert.equals("number", type(m[1].timestamp_ms))
    assert.is_true(m[1].last_timestamp_ms >= m[1].timestamp_ms)
    local mt = client:metrics()
    assert.equals(N, mt.malformed)
    assert.equals(0, mt.health_dropped)
    assert.equals("open", client:state())
  end)

  it("health items beyond the cap are dropped, counted and reported in the next overflow", function()
    -- malformed items of alternating reasons do not coalesce: the health cap bounds them
    local client, rec = wait.start_client(emu, {}, { T1 }, true)
    finally(function() client:close() end)
    poll_all(client)
    local ch = wait.channel_of(rec)
    local rounds = 600 -- 1,200 items: over the cap of 1,024
    -- one curl for all the requests (a curl per request would take a minute)
    local body = {}
    for i = 1, 2 * rounds do
      if i > 1 then body[#body + 1] = "next" end
      body[#body + 1] = "url = \"" .. emu.base_url .. "/__emulator/channels/" .. ch .. "/malformed\""
      body[#body + 1] = "cacert = \"" .. emu.ca_file .. "\""
      local kind = i % 2 == 0 and "invalid_json" or "binary"
      body[#body + 1] = "data = \"{\\\"kind\\\":\\\"" .. kind .. "\\\"}\""
      body[#body + 1] = "output = \"/dev/null\""
    end
    local cfgfile = os.tmpname()
    local f = assert(io.open(cfgfile, "w"))
    f:write(table.concat(body, "\n"), "\n")
    f:close()
    finally(function() os.remove(cfgfile) end)
    local ok = os.execute("curl -sS -K " .. cfgfile .. " >/dev/null")
    assert.truthy(ok == true or ok == 0, "curl failed")
    assert.truthy(drained(emu, ch))
    assert.truthy(emulator.wait_until(function()
      return client:metrics().malformed >= 2 * rounds end, 30 * wait.slow()))
    local mt = client:metrics()
    assert.is_true(mt.health_dropped > 0, "nothing dropped")
    poll_all(client)
    local items = sum(rec.kinds.malformed, "count")
    local ov = rec.kinds.overflow
    assert.truthy(ov, "no overflow item")
    -- every malformed frame was delivered in an item's count or dropped and reported
    assert.equals(2 * rounds, items + sum(ov, "health_dropped"))
    assert.equals(mt.health_dropped, sum(ov, "health_dropped"))
    assert.equals(0, sum(ov, "dropped"))
    assert.equals("open", ov[1].state)
    assert.equals("number", type(ov[1].timestamp_ms))
    assert.is_true(#rec.health <= 1024 + 50)
  end)

  it("events are bounded in bytes (queue_bytes): every one delivered or dropped and reported", function()
    local N, SIZE = 120, 1024 * 1024
    local client, rec = wait.start_client(emu, { queue_bytes = 16 * 1024 * 1024,
      max_message_size = 2 * SIZE }, { T1 }, true)
    finally(function() client:close() end)
    poll_all(client)
    local ch = wait.channel_of(rec)
    collectgarbage()
    local rss0 = rss_kb()
    emu:admin("POST", "channels/" .. ch .. "/events", { count = N, topic = T1, size = SIZE })
    -- metrics().events counts every event read, dropped ones too
    assert.truthy(emulator.wait_until(function() return client:metrics().events >= N end,
      60 * wait.slow()), "the client did not read them")
    local grown = rss_kb() - rss0
    if rss_checked() then
      -- before: 120 events of 1 MiB (text and tree, 2 MiB each) waited: +240 MB
      assert.is_true(grown < 40 * 1024, "RSS grew by " .. grown .. " KB while not polling")
    end
    local mt = client:metrics()
    assert.is_true(mt.dropped > 0)
    assert.is_true(mt.queued_bytes <= 16 * 1024 * 1024 + 3 * SIZE, mt.queued_bytes)
    poll_all(client)
    local sent = emu:stats().channels[ch].events_sent
    assert.equals(N, sent)
    assert.equals(sent, #rec.events + sum(rec.kinds.overflow, "dropped"))
    assert.equals(mt.dropped, sum(rec.kinds.overflow, "dropped"))
    assert.equals(16 * 1024 * 1024, rec.kinds.overflow[1].queue_bytes)
  end)

  it("events of many small JSON values wait as their text, decoded only when polled", function()
    -- 40 events of 50,000 small numbers (100 KB of text, ~2 MB once decoded): the queue holds
    -- the text (4 MB, under queue_bytes) and the body is decoded on the Lua thread at poll()
    local client, rec = wait.start_client(emu, { queue_bytes = 8 * 1024 * 1024 }, { T1 }, true)
    finally(function() client:close() end)
    poll_all(client)
    local vals = {}
    for i = 1, 50000 do vals[i] = tostring(i % 10) end
    local body = '{"topic":"' .. T1 .. '","eventBody":{"v":[' .. table.concat(vals, ",") .. ']}}'
    collectgarbage()
    local rss0 = rss_kb()
    for _ = 1, 40 do
      local st = emu:admin("POST", "publish", body)
      assert.equals(200, st)
    end
    assert.truthy(emulator.wait_until(function() return client:metrics().events >= 40 end,
      60 * wait.slow()))
    local grown = rss_kb() - rss0
    if rss_checked() then
      -- with a decoded tree per event waiting: +72 MB; the text alone is 4 MB
      assert.is_true(grown < 12 * 1024, "RSS grew by " .. grown .. " KB while not polling")
    end
    local mt = client:metrics()
    assert.equals(0, mt.dropped)
    assert.is_true(mt.queued_bytes >= 40 * 100000 and mt.queued_bytes < 5 * 1024 * 1024,
      mt.queued_bytes)
    poll_all(client)
    assert.equals(40, #rec.events)
    for _, ev in ipairs(rec.events) do assert.equals(50000, #ev.body.v) end
  end)

  it("close() gives the memory of what was never read back", function()
    if not rss_checked() then return end
    local client, rec = wait.start_client(emu, { queue_bytes = 256 * 1024 * 1024,
      max_message_size = 2 * 1024 * 1024 }, { T1 }, true)
    poll_all(client)
    local ch = wait.channel_of(rec)
    collectgarbage()
    local rss0 = rss_kb()
    emu:admin("POST", "channels/" .. ch .. "/events", { count = 60, topic = T1, size = 1024 * 1024 })
    assert.truthy(emulator.wait_until(function() return client:metrics().events >= 60 end,
      60 * wait.slow()))
    local full = rss_kb() - rss0
    -- the queue holds their text (60 MiB; it held a decoded tree too before issue 12)
    assert.is_true(full > 48 * 1024, "the queue should hold the events: " .. full .. " KB")
    client:close()
    local after = rss_kb() - rss0
    assert.is_true(after < 16 * 1024, "RSS after close(): +" .. after .. " KB (+" .. full ..
      " KB before)")
  end)
end)
