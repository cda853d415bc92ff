-- Resync (issue 25): after a deaf interval the client reads back the current state of the
-- subscribed topics over REST and delivers it as resync items, against the emulator's
-- directory (users and queues changed through its admin API), permissions and rate limit.
local emulator = require "support.emulator"
local wait = require "support.wait"

local function users(prefix, n, suffixes)
  local topics = {}
  for i = 1, n do
    for _, s in ipairs(suffixes) do topics[#topics + 1] = "v2.users." .. prefix .. i .. "." .. s end
  end
  return topics
end

-- The server's count of REST requests (every token), from its rate limiter's table.
local function rest_requests(emu)
  local st, j = emu:admin("GET", "ratelimit")
  assert.equals(200, st)
  local n, limited = 0, 0
  for _, t in ipairs(j.tokens) do n = n + t.requests; limited = limited + t.limited end
  return n, limited, j
end

-- RST on the client's channel with reconnects refused for ms: a deaf interval the client
-- reports as "restored" once the refusal ends. during() runs while the socket is down.
local function outage(emu, client, rec, ms, during)
  local ch = wait.channel_of(rec)
  local before = rec.count("disconnected")
  assert.equals(200, (emu:admin("POST", "faults/handshake", { mode = "refuse", ms = ms })))
  assert.equals(200, (emu:admin("POST", "channels/" .. ch .. "/reset", {})))
  assert.truthy(wait.until_(client, function() return rec.count("disconnected") > before end, 10000))
  if during then during() end
end

local function completed(rec, n)
  return function()
    local k = 0
    for _, h in ipairs(rec.kinds.resync or {}) do
      if h.phase == "completed" or h.phase == "failed" then k = k + 1 end
    end
    return k >= (n or 1)
  end
end

local function resync_items(rec)
  local out = {}
  for _, e in ipairs(rec.events) do if e.resync then out[#out + 1] = e end end
  return out
end

describe("genesys.notify client: resync after gaps", function()
  local emu
  setup(function() emu = emulator.start { tls = true } end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function()
    emu:admin("POST", "faults/clear", {})
    emu:admin("POST", "ratelimit", { per_window = 0, window_ms = 60000, reset = true })
    emu:admin("POST", "permissions", '{"client_id":"test-id","deny":[]}')
  end)

  it("presence and routing status changed while the socket was down arrive as resync items with "
    .. "the values set during the gap", function()
    for i = 1, 3 do
      emu:admin("POST", "users/a" .. i, { presence = "Available", routing_status = "IDLE" })
    end
    local client, rec = wait.start_client(emu, { resync = { "presence", "routing_status" } },
      users("a", 3, { "presence", "routingStatus" }), true)
    finally(function() client:close() end)
    outage(emu, client, rec, 1500, function()
      local st = emu:admin("POST", "users/a2", { presence = "Busy", routing_status = "INTERACTING" })
      assert.equals(200, st)
    end)
    assert.truthy(wait.until_(client, completed(rec), 20000), "no resync completed")
    local restored = rec.last("restored")
    local items = resync_items(rec)
    assert.equals(6, #items)
    local by = {}
    for _, e in ipairs(items) do
      by[e.topic] = e
      assert.is_true(e.resync)
      assert.equals(restored.deaf_from_ms, e.deaf_from_ms)
      assert.equals(restored.deaf_to_ms, e.deaf_to_ms)
      assert.is_true(e.read_ms >= e.deaf_to_ms)
    end
    local p = by["v2.users.a2.presence"]
    assert.equals("Busy", p.body.presenceDefinition.systemPresence)
    assert.equals("PURECLOUD", p.body.source)
    assert.equals("modifiedDate", p.newer_than)
    assert.equals("string", type(p.body.modifiedDate))
    local r = by["v2.users.a2.routingStatus"]
    assert.equals("INTERACTING", r.body.routingStatus.status)
    assert.equals("a2", r.body.id)
    assert.equals("startTime", r.newer_than)
    assert.equals("Available", by["v2.users.a1.presence"].body.presenceDefinition.systemPresence)
    local done = rec.last("resync")
    assert.equals("completed", done.phase)
    assert.equals(6, done.entities)
    assert.equals(2, done.requests)
    local m = client:metrics()
    assert.equals(1, m.resync_runs)
    assert.equals(6, m.resync_entities)
    assert.truthy(client:metrics("prometheus"):find('genesys_notify_resync_entities_total{client="', 1, true))
  end)

  it("drain() returns resync items as item = \"resync\"", function()
    emu:admin("POST", "users/d1", { presence = "Available" })
    local rec = wait.recorder()
    local notify = require "genesys.notify"
    local cfg = wait.config(emu, nil, { resync = "presence", topics = { "v2.users.d1.presence" } })
    local client = notify.new(cfg)
    client:start()
    finally(function() client:close() end)
    local got = {}
    local function pump()
      local list = client:drain()
      for _, it in ipairs(list) do
        got[#got + 1] = it
        if it.item == "health" then rec.on_health(it) end
      end
      if #list == 0 then os.execute("sleep 0.02") end
    end
    local t0 = os.time()
    repeat pump() until rec.count("connected") > 0 or os.time() - t0 > 10
    local ch = wait.channel_of(rec)
    emu:admin("POST", "faults/handshake", { mode = "refuse", ms = 1000 })
    emu:admin("POST", "channels/" .. ch .. "/reset", {})
    emu:admin("POST", "users/d1", { presence = "Meal" })
    t0 = os.time()
    local item
    repeat
      pump()
      for _, it in ipairs(got) do if it.item == "resync" then item = it end end
    until item or os.time() - t0 > 20 * wait.slow()
    assert.truthy(item, "no resync item from drain()")
    assert.equals("v2.users.d1.presence", item.topic)
    assert.equals("Meal", item.body.presenceDefinition.systemPresence)
    assert.is_true(item.resync)
  end)

  it("client:resync_gap() says plainly when resync is off, and takes the gap when it is on",
    function()
    local notify = require "genesys.notify"
    local off = notify.new(wait.config(emu, nil, { topics = { "v2.users.g1.presence" } }))
    finally(function() off:close() end)
    local ok, err = off:resync_gap(1000, 2000)
    assert.is_nil(ok)
    assert.equals("resync is off", err)
    off:start()
    ok, err = off:resync_gap(1000, 2000) -- running, but nothing would heal the gap
    assert.is_nil(ok)
    assert.equals("resync is off", err)
    local on = notify.new(wait.config(emu, nil, { resync = "presence",
      topics = { "v2.users.g1.presence" } }))
    finally(function() on:close() end)
    ok, err = on:resync_gap(1000, 2000)
    assert.is_nil(ok)
    assert.equals("the client is not running", err)
    on:start()
    assert.is_true(on:resync_gap(1000, 2000))
  end)

  it("a composite topic is resynced as the topics its events arrive under", function()
    emu:admin("POST", "users/k1", { presence = "Available", routing_status = "IDLE" })
    local client, rec = wait.start_client(emu, { resync = { "presence", "routing_status" } },
      { "v2.users.k1?presence&routingStatus" }, true)
    finally(function() client:close() end)
    outage(emu, client, rec, 800, function()
      emu:admin("POST", "users/k1", { presence = "Away", routing_status = "NOT_RESPONDING" })
    end)
    assert.truthy(wait.until_(client, completed(rec), 20000))
    local by = {}
    for _, e in ipairs(resync_items(rec)) do by[e.topic] = e end
    assert.equals("Away", by["v2.users.k1.presence"].body.presenceDefinition.systemPresence)
    assert.equals("NOT_RESPONDING", by["v2.users.k1.routingStatus"].body.routingStatus.status)
  end)

  it("120 users' presence heals in 3 requests", function()
    local topics = users("h", 120, { "presence" })
    for i = 1, 120 do emu:admin("POST", "users/h" .. i, { presence = "Available" }) end
    local client, rec = wait.start_client(emu, { resync = { "presence" } }, topics, true)
    finally(function() client:close() end)
    local before = rest_requests(emu)
    outage(emu, client, rec, 1000, function() emu:admin("POST", "users/h77", { presence = "Away" }) end)
    assert.truthy(wait.until_(client, completed(rec), 30000))
    local after = rest_requests(emu)
    assert.equals(3, after - before) -- a soft reconnect makes no REST call: only the resync's
    local items = resync_items(rec)
    assert.equals(120, #items)
    local seen = {}
    for _, e in ipairs(items) do seen[e.topic] = e end
    assert.equals("Away", seen["v2.users.h77.presence"].body.presenceDefinition.systemPresence)
    assert.equals(3, rec.last("resync").requests)
  end)

  it("an event newer than the snapshot wins: the older snapshot is dropped and counted", function()
    emu:admin("POST", "users/n1", { presence = "Available" })
    emu:admin("POST", "users/n2", { presence = "Available" })
    local client, rec = wait.start_client(emu, { resync = { "presence" } },
      { "v2.users.n1.presence", "v2.users.n2.presence" }, true)
    finally(function() client:close() end)
    local before = rest_requests(emu)
    outage(emu, client, rec, 800, function()
      -- the resync's request is read at once and answered 3 s later: the snapshot it carries is
      -- older than the change made meanwhile, whose event the live socket delivers first
      emu:admin("POST", "faults/http", { target = "rest", delay_ms = 3000, count = 1 })
    end)
    assert.truthy(wait.until_(client, function() return rest_requests(emu) > before end, 20000))
    emu:admin("POST", "users/n1", { presence = "Busy" })
    assert.truthy(wait.until_(client, completed(rec), 20000))
    local last = {}
    for _, e in ipairs(rec.events) do
      if e.topic == "v2.users.n1.presence" then last[#last + 1] = e end
    end
    assert.equals(1, #last, "only the live event for n1, not the older snapshot after it")
    assert.is_nil(last[1].resync)
    assert.equals("Busy", last[1].body.presenceDefinition.systemPresence)
    assert.equals(1, rec.last("resync").stale)
    assert.equals(1, client:metrics().resync_stale)
    assert.equals(1, #resync_items(rec)) -- n2's snapshot is still delivered
  end)

  it("a 403 family is reported once and skipped from then on", function()
    emu:admin("POST", "users/f1", { presence = "Available", station = { id = "st1", name = "Desk" } })
    emu:admin("POST", "permissions", { client_id = "test-id",
      deny = { "telephony:otherStationAssociation:view" } })
    local client, rec = wait.start_client(emu, { resync = { "presence", "station" } },
      { "v2.users.f1.presence", "v2.users.f1.station" }, true)
    finally(function() client:close() end)
    outage(emu, client, rec, 800)
    assert.truthy(wait.until_(client, completed(rec), 20000))
    local forbidden = rec.where("resync", function(h) return h.phase == "forbidden" end)
    assert.equals(1, #forbidden)
    assert.equals("station", forbidden[1].family)
    assert.equals("telephony:otherStationAssociation:view", forbidden[1].permission)
    local before = rest_requests(emu)
    outage(emu, client, rec, 800)
    assert.truthy(wait.until_(client, completed(rec, 2), 20000))
    assert.equals(1, rest_requests(emu) - before) -- presence only: the station family is skipped
    assert.equals(1, #rec.where("resync", function(h) return h.phase == "forbidden" end))
    for _, e in ipairs(resync_items(rec)) do assert.equals("v2.users.f1.presence", e.topic) end
    assert.equals(2, #resync_items(rec))
    assert.equals(1, client:metrics().resync_forbidden)
  end)

  it("a 429 is honoured: the retry waits for its Retry-After", function()
    for i = 1, 2 do emu:admin("POST", "users/r" .. i, { presence = "Available", routing_status = "IDLE" }) end
    local client, rec = wait.start_client(emu, { resync = { "presence", "routing_status" } },
      users("r", 2, { "presence", "routingStatus" }), true)
    finally(function() client:close() end)
    outage(emu, client, rec, 800, function()
      -- one request per 2 s per token: the resync's second request is refused with the time
      -- until the window has room; a client that retries sooner is refused again
      emu:admin("POST", "ratelimit", { per_window = 1, window_ms = 2000, reset = true })
    end)
    assert.truthy(wait.until_(client, completed(rec), 30000))
    local _, limited = rest_requests(emu)
    assert.equals(1, limited)
    assert.equals(1, client:metrics().resync_rate_limited)
    local rl = rec.where("resync", function(h) return h.phase == "rate_limited" end)
    assert.equals(1, #rl)
    assert.is_true(rl[1].retry_after_ms >= 1000)
    assert.equals("completed", rec.last("resync").phase)
    assert.equals(4, #resync_items(rec))
  end)

  it("every family: station, conversation summary, activity, queue members and observations, "
    .. "conversations", function()
    emu:admin("POST", "users/x1", { presence = "Available", routing_status = "IDLE",
      station = { id = "s1", name = "Desk 1" },
      conversation_summary = { call = { contactCenter = { active = 1, acw = 0 } } } })
    emu:admin("POST", "queues/q1", { members = { { id = "x1" } }, observations = { oWaiting = 2 } })
    emu:admin("POST", "conversations/c1", { user = "x1", queue = "q1", state = "active" })
    local topics = { "v2.users.x1.station", "v2.users.x1.conversationsummary", "v2.users.x1.activity",
      "v2.routing.queues.q1.users", "v2.analytics.queues.q1.observations", "v2.users.x1.conversations",
      "v2.routing.queues.q1.conversations.calls" }
    local client, rec = wait.start_client(emu, { resync = true }, topics, true)
    finally(function() client:close() end)
    outage(emu, client, rec, 800, function()
      emu:admin("POST", "users/x1", { station = { id = "s2", name = "Desk 2" },
        conversation_summary = { call = { contactCenter = { active = 0, acw = 1 } } } })
      emu:admin("POST", "queues/q1", { members = { { id = "x2" } }, observations = { oWaiting = 5 } })
    end)
    assert.truthy(wait.until_(client, completed(rec), 30000))
    local by = {}
    for _, e in ipairs(resync_items(rec)) do by[e.topic] = e end
    assert.equals("s2", by["v2.users.x1.station"].body.associatedStation.id)
    assert.equals("station", by["v2.users.x1.station"].family)
    assert.equals("none", by["v2.users.x1.station"].newer_than)
    assert.equals(1, by["v2.users.x1.conversationsummary"].body.call.contactCenter.acw)
    assert.equals("IDLE", by["v2.users.x1.activity"].body.routingStatus.status)
    local members = by["v2.routing.queues.q1.users"].body
    assert.equals(2, members.total)
    local obs = by["v2.analytics.queues.q1.observations"].body
    assert.equals("q1", obs.group.queueId)
    local waiting
    for _, d in ipairs(obs.data) do if d.metric == "oWaiting" then waiting = d.stats.count end end
    assert.equals(5, waiting)
    for _, t in ipairs { "v2.users.x1.conversations", "v2.routing.queues.q1.conversations" } do
      local c = by[t].body
      assert.equals("c1", c.conversations[1].conversationId)
      assert.equals(by[t].deaf_from_ms, c.ended.from_ms)
      assert.equals("POST /api/v2/analytics/conversations/details/query", c.ended.query)
    end
    assert.equals(7, #resync_items(rec))
  end)

  it("activity: the users' parts and the queues each user has joined (GET /api/v2/users/{id}/queues"
    .. "?joined=true), read after the gap", function()
    emu:admin("POST", "users/v1", { presence = "Available", routing_status = "IDLE" })
    emu:admin("POST", "users/v2", { presence = "Available", routing_status = "IDLE" })
    emu:admin("POST", "queues/qa", { members = { { id = "v1" } } })
    local client, rec = wait.start_client(emu, { resync = { "activity" } },
      users("v", 2, { "activity" }), true)
    finally(function() client:close() end)
    outage(emu, client, rec, 800, function()
      emu:admin("POST", "queues/qb", { members = { { id = "v1" }, { id = "v2", joined = false } } })
    end)
    assert.truthy(wait.until_(client, completed(rec), 30000))
    local by = {}
    for _, e in ipairs(resync_items(rec)) do by[e.topic] = e end
    local q1 = {}
    for _, q in ipairs(by["v2.users.v1.activity"].body.queues) do q1[#q1 + 1] = q.id end
    table.sort(q1)
    assert.same({ "qa", "qb" }, q1)
    assert.same({}, by["v2.users.v2.activity"].body.queues) -- v2 has not joined qb
    assert.equals("IDLE", by["v2.users.v2.activity"].body.routingStatus.status)
    -- one users' read for both, one queues read per user
    assert.equals(3, rec.last("resync").requests)
  end)

  it("one resync at a time: a gap during a resync widens it instead of starting another", function()
    local topics = users("w", 120, { "presence" })
    for i = 1, 120 do emu:admin("POST", "users/w" .. i, { presence = "Available" }) end
    local client, rec = wait.start_client(emu, { resync = { families = { "presence" },
      spacing_ms = 1500 } }, topics, true)
    finally(function() client:close() end)
    outage(emu, client, rec, 600)
    assert.truthy(wait.until_(client, function()
      return #rec.where("resync", function(h) return h.phase == "started" end) > 0
    end, 20000))
    -- a second gap while the first resync's three requests are spread 1.5 s apart
    outage(emu, client, rec, 600)
    assert.truthy(wait.until_(client, function() return rec.count("restored") >= 2 end, 20000))
    assert.truthy(wait.until_(client, completed(rec), 30000))
    wait.for_ms(client, 500)
    assert.equals(1, #rec.where("resync", function(h) return h.phase == "started" end))
    assert.equals(1, #rec.where("resync", function(h) return h.phase == "completed" end))
    local second = rec.kinds.restored[2]
    local done = rec.last("resync")
    assert.equals(rec.kinds.restored[1].deaf_from_ms, done.deaf_from_ms)
    assert.equals(second.deaf_to_ms, done.deaf_to_ms)
    local last = resync_items(rec)
    assert.equals(second.deaf_to_ms, last[#last].deaf_to_ms)
    assert.is_true(#last >= 120)
  end)

  it("resync configuration errors name the field", function()
    local notify = require "genesys.notify"
    local cfg = wait.config(emu, nil, { resync = { "presence", "nope" } })
    local ok, err = pcall(notify.new, cfg)
    assert.is_false(ok)
    assert.truthy(err:find("resync: expected", 1, true), err)
    assert.truthy(err:find('"nope"', 1, true), err)
    cfg = wait.config(emu, nil, { resync = { families = true, budget = 1 } })
    ok, err = pcall(notify.new, cfg)
    assert.is_false(ok)
    assert.truthy(err:find("resync.budget", 1, true), err)
    cfg = wait.config(emu, nil, { resync = 42 })
    ok, err = pcall(notify.new, cfg)
    assert.is_false(ok)
    assert.truthy(err:find("resync:", 1, true), err)
  end)
end)

describe("genesys.notify client: resync within the token's budget", function()
  local emu
  setup(function() emu = emulator.start { tls = true, args = { "--max-channels", "25" } } end)
  teardown(function() if emu then emu:stop() end end)

  it("a resync during a maintenance wave of a 20-channel pool stays within the budget", function()
    -- the server refuses (429) beyond 200 requests in any 10 s (a minute's budget squeezed
    -- into 10 s): the client's budget is the same. The stream alone peaks near 90 (20 channels
    -- and subscriptions, then a rollover and some hard reconnects each); the resync needs 160
    -- requests (4,000 users of two families, 50 a call): both at once would exceed it.
    emu:admin("POST", "ratelimit", { per_window = 200, window_ms = 10000, reset = true })
    local topics = {}
    for i = 1, 4000 do
      topics[#topics + 1] = "v2.users.b" .. i .. ".presence"
      topics[#topics + 1] = "v2.users.b" .. i .. ".routingStatus"
    end
    for i = 1, 11001 do topics[#topics + 1] = "v2.users.g" .. i .. ".geolocation" end
    local client, rec = wait.start_client(emu, { channel_budget = 21,
      resync = { families = { "presence", "routing_status" }, budget = 200, window_ms = 10000 } },
      topics)
    finally(function() client:close() end)
    -- every channel open (a channel never opened has no gap to heal when it is reset)
    assert.truthy(wait.until_(client, function()
      local m = client:metrics()
      if not (m.subscriptions_synced and #m.channels == 20) then return false end
      for _, c in ipairs(m.channels) do if c.state ~= "open" then return false end end
      return true
    end, 60000), "the pool did not come up")
    emu:admin("POST", "faults/handshake", { mode = "refuse", ms = 1000 })
    assert.equals(200, (emu:admin("POST", "channels/*/reset", {})))
    assert.truthy(wait.until_(client, function()
      return #rec.where("resync", function(h) return h.phase == "started" end) > 0
    end, 60000), "no resync started")
    -- every channel open again (a channel still reconnecting gets no socket_closing, and no
    -- rollover: under TSan, 1 s after the resync started, some were not)
    assert.truthy(wait.until_(client, function()
      for _, c in ipairs(client:metrics().channels) do if c.state ~= "open" then return false end end
      return true
    end, 60000), "the pool did not come back")
    assert.equals("started", rec.last("resync").phase, "the resync ended before the wave")
    -- the wave: every channel rolls over (a channel and a subscription each) mid-resync
    assert.equals(200, (emu:admin("POST", "channels/*/socket_closing", { grace_ms = 3000 * wait.slow() })))
    -- 20 requests for each of the 8 channels holding resync topics that was deaf; channels
    -- that come back after a resync finished get one of their own
    local function settled()
      local l = rec.last("resync")
      return l.phase == "completed" and client:metrics().resync_requests >= 20
    end
    assert.truthy(wait.until_(client, settled, 120000), "the resync did not complete")
    wait.for_ms(client, 2000)
    assert.truthy(wait.until_(client, settled, 120000), "the resync did not complete")
    assert.equals(0, client:metrics().resync_failed)
    assert.equals(0, client:metrics().resync_rate_limited)
    local _, limited, j = rest_requests(emu)
    assert.equals(0, limited, require("cjson").encode(j))
    assert.is_true(j.tokens[1].peak <= 200, "peak " .. j.tokens[1].peak)
    assert.is_true(rec.count("rollover") >= 20)
  end)
end)
