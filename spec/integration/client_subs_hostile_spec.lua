-- Subscription answers read as Genesys means them, and no request loop under any of them: for
-- each hostile answer the emulator can give (a composite's member refused on its own entry, a
-- topic left out of the answer, names in another case, every topic refused, invalid names in
-- each of the emulator's modes, 429 and 503 on a live channel; 429 on every REST or token request
-- from the start, where connection attempts repeat under the client's own default backoff
-- policy), one client on its own emulator runs through the same
-- window while the subscription requests reaching the server are counted. Once an answer
-- repeats, the requests come through the backoff engine (capped no lower than a minute), so a
-- window of WINDOW_MS holds at most LIMIT of them where a loop made tens of thousands.
--
-- The clients' backoff is 250 ms doubling, capped at 500 ms and without jitter: without the
-- subscription path's own one-minute floor that cap alone would allow about 24 requests in the
-- window. Counts only; the window is long enough for the cap to matter, not a timing assertion.
local emulator = require "support.emulator"
local wait = require "support.wait"
local cjson = require "cjson.safe"

local WINDOW_MS = 12000
local LIMIT = 8

local function requests(emu, what)
  local n = 0
  for _, c in pairs(emu:stats().global[what or "rest"]) do n = n + c end
  return n
end

local function admin_ok(emu, method, path, body)
  local st, j = emu:admin(method, path, body)
  assert(st == 200, path .. ": HTTP " .. tostring(st) .. " " .. cjson.encode(j))
  return j
end

local function items(rec, event, pred)
  return rec.where("subscription", function(h)
    return h.event == event and (not pred or pred(h)) end)
end

local U = "v2.users.u-hostile-"
local COMPOSITE = U .. "1?presence&routingStatus"

-- Each scenario: emulator arguments, setup before the client, the client's topics, what it does
-- once connected (the window starts after), and what must hold after the window.
local scenarios = {
  {
    name = "a composite with a member refused on its own entry",
    setup = function(emu)
      admin_ok(emu, "POST", "permissions/deny", { topic = "v2.users.*.routingStatus",
        missing = { "routing:agent:view" }, reason = "Missing routing:agent:view" })
    end,
    topics = { COMPOSITE, U .. "2.presence" },
    check = function(client, rec, emu)
      local member = items(rec, "rejected", function(h) return h.topic == U .. "1.routingStatus" end)
      assert.equals(1, #member, "the member is reported once")
      assert.equals(COMPOSITE, member[1].composite)
      assert.same({ "routing:agent:view" }, member[1].missing_permissions)
      assert.equals("Missing routing:agent:view", member[1].reason)
      assert.equals(1, #items(rec, "rejected"))
      local m = client:metrics()
      assert.is_true(m.subscriptions_synced)
      assert.equals(2, m.topics_confirmed)
      -- the composite's permitted member delivers under its own name; the refused one does not
      assert.equals(1, admin_ok(emu, "POST", "publish", { topic = U .. "1.presence" }).delivered)
      assert.equals(0, admin_ok(emu, "POST", "publish", { topic = U .. "1.routingStatus" }).delivered)
      assert.truthy(wait.until_(client, function()
        for _, ev in ipairs(rec.events) do if ev.topic == U .. "1.presence" then return true end end
      end, 10000), "the member's event did not arrive")
    end,
  },
  {
    name = "a topic left out of every answer",
    -- from the window's start (subscribed then): put at the client's start, its retries would
    -- have spread out (250 ms doubling) by the time every client connected, which took long
    -- enough under TSan to leave one request in the window
    at_window = function(emu, client)
      admin_ok(emu, "POST", "faults/subscriptions", { mode = "omit", topic = "u-hostile-3" })
      client:subscribe(U .. "3.presence")
    end,
    topics = { U .. "4.presence" },
    min = 3, -- the user's own request, then it is asked again, and again: never forgotten
    check = function(client, rec)
      local unknown = items(rec, "unknown")
      assert.is_true(#unknown >= 2)
      assert.same({ U .. "3.presence" }, unknown[1].topics)
      assert.equals(0, #items(rec, "rejected"))
      local m = client:metrics()
      assert.equals(2, m.topics_wanted, "the unknown topic is still wanted")
      assert.equals(1, m.topics_confirmed)
      assert.is_false(m.subscriptions_synced)
    end,
  },
  {
    name = "names answered in another case",
    setup = function(emu) admin_ok(emu, "POST", "faults/subscriptions", { mode = "case" }) end,
    topics = { U .. "5.presence", U .. "6?presence&routingStatus" },
    max = 0,
    check = function(client, rec, emu)
      assert.equals(0, #items(rec, "rejected"))
      assert.equals(0, #items(rec, "unknown"))
      local m = client:metrics()
      assert.is_true(m.subscriptions_synced)
      assert.equals(2, m.topics_confirmed)
      -- the user's spelling is what the client reports
      local s = items(rec, "subscribed")
      table.sort(s[1].topics)
      assert.same({ U .. "5.presence", U .. "6?presence&routingStatus" }, s[1].topics)
      assert.equals(1, admin_ok(emu, "POST", "publish", { topic = U .. "5.presence" }).delivered)
      assert.truthy(wait.until_(client, function() return #rec.events > 0 end, 10000))
      assert.equals(U .. "5.presence", rec.events[1].topic)
    end,
  },
  {
    name = "every topic refused, then one subscribed again",
    setup = function(emu)
      admin_ok(emu, "POST", "permissions/deny", { topic = "v2.users.*.presence" })
    end,
    topics = { U .. "7.presence", U .. "8.presence" },
    max = 0,
    check = function(client, rec)
      assert.equals(2, #items(rec, "rejected"), "each reported once")
      assert.same({ "emulator:topic:view" }, items(rec, "rejected")[1].missing_permissions)
      assert.equals(0, client:metrics().topics_wanted, "Rejected is final")
      -- until the user subscribes it again: one request, reported again, final again
      client:subscribe(U .. "7.presence")
      assert.truthy(wait.until_(client, function() return #items(rec, "rejected") == 3 end, 10000))
      wait.for_ms(client, 1000)
      assert.equals(3, #items(rec, "rejected"))
      assert.equals(U .. "7.presence", items(rec, "rejected")[3].topic)
    end,
  },
  {
    name = "an invalid name refused as a whole (emulator mode error)",
    live = { U .. "x&y" },
    max = 1, -- the user's own change
    check = function(client, rec)
      local r = items(rec, "rejected")
      assert.equals(1, #r)
      assert.equals(U .. "x&y", r[1].topic)
      assert.equals(400, r[1].status)
      assert.equals(1, client:metrics().topics_wanted)
    end,
  },
  {
    name = "an invalid name left out (emulator mode omit)",
    args = { "--invalid-topics", "omit" },
    live = { U .. "x&y" },
    min = 2,
    check = function(client, rec)
      assert.same({ U .. "x&y" }, items(rec, "unknown")[1].topics)
      assert.equals(0, #items(rec, "rejected"))
      assert.equals(2, client:metrics().topics_wanted)
    end,
  },
  {
    name = "an invalid name Rejected (emulator mode rejected)",
    args = { "--invalid-topics", "rejected" },
    live = { U .. "x&y" },
    max = 1, -- the user's own change
    check = function(client, rec)
      local r = items(rec, "rejected")
      assert.equals(1, #r)
      assert.equals("Invalid topic name", r[1].reason)
      assert.equals(1, client:metrics().topics_wanted)
    end,
  },
  {
    name = "429 with Retry-After on every request",
    live = { U .. "9.presence" },
    fault = { target = "rest", status = 429, retry_after = 1 },
    min = 2,
    check = function(client, rec)
      assert.is_true(#items(rec, "failed", function(h) return h.status == 429 end) >= 2)
      assert.equals(2, client:metrics().topics_wanted)
    end,
  },
  {
    -- before the channel is up, requests repeat as connection attempts: the client's own
    -- backoff policy (here its defaults: 1 s doubling to 60 s, full jitter) paces them; counted
    -- from the client's start
    name = "429 on every request from the start (connection attempts)",
    setup = function(emu)
      admin_ok(emu, "POST", "faults/http", { target = "rest", status = 429, retry_after = 1 })
    end,
    default_backoff = true,
    no_connect = true,
    min = 1,
    max = 12,
    check = function(client, rec)
      assert.equals(0, rec.count("connected"))
      assert.is_true(rec.count("attempt") >= 1)
      assert.equals(1, client:metrics().topics_wanted)
    end,
  },
  {
    name = "429 on every token request from the start",
    setup = function(emu)
      admin_ok(emu, "POST", "faults/http", { target = "oauth", status = 429, retry_after = 1 })
    end,
    default_backoff = true,
    no_connect = true,
    count = "oauth",
    min = 1,
    max = 12,
    check = function(client, rec)
      assert.equals(0, rec.count("connected"))
      assert.equals(1, client:metrics().topics_wanted)
    end,
  },
  {
    name = "503 on every request",
    live = { U .. "9.presence" },
    fault = { target = "rest", status = 503 },
    min = 2,
    check = function(client, rec)
      assert.is_true(#items(rec, "failed", function(h) return h.status == 503 end) >= 2)
      assert.equals(2, client:metrics().topics_wanted)
    end,
  },
}

describe("a rollover's new channel that leaves a topic out", function()
  it("reports it unknown and puts it again on the new channel", function()
    local emu = emulator.start { tls = true }
    finally(function() emu:stop() end)
    local a, b = U .. "10.presence", U .. "11.presence"
    local client, rec = wait.start_client(emu, { backoff = { base_ms = 250, max_ms = 500,
      multiplier = 2, jitter = "none", reset_after_ms = 200 } }, { a, b }, true)
    finally(function() client:close() end)
    assert.truthy(wait.until_(client, function() return client:metrics().subscriptions_synced end))
    local old = wait.channel_of(rec)
    admin_ok(emu, "POST", "faults/subscriptions", { mode = "omit", topic = "u-hostile-11",
                                                    count = 1 })
    admin_ok(emu, "POST", "channels/" .. old .. "/socket_closing", { grace_ms = 5000 })
    assert.truthy(wait.until_(client, function()
      return #rec.where("rollover", function(h) return h.event == "completed" end) > 0
    end, 10000), "no rollover")
    local unknown = items(rec, "unknown")
    assert.equals(1, #unknown)
    assert.same({ b }, unknown[1].topics)
    -- put again on the new channel (the fault answered once), and settled
    assert.truthy(wait.until_(client, function() return client:metrics().subscriptions_synced end,
      10000), "not synced after the rollover")
    local now = rec.where("rollover", function(h) return h.event == "completed" end)[1].to
    assert.not_equal(old, now)
    local held = emu:stats().channels[now].subscriptions
    table.sort(held)
    assert.same({ a, b }, held)
    assert.equals(0, #items(rec, "rejected"))
  end)
end)

describe("subscription answers as Genesys means them, without a request loop", function()
  local runs = {}
  teardown(function()
    for _, r in ipairs(runs) do
      if r.client then r.client:close() end
      if r.emu then r.emu:stop() end
    end
  end)

  it("every hostile answer: reported as meant, and at most a few requests per window", function()
    local backoff = { base_ms = 250, max_ms = 500, multiplier = 2, jitter = "none",
                      reset_after_ms = 200 }
    local clients = {}
    for i, sc in ipairs(scenarios) do
      local emu = emulator.start { tls = true, args = sc.args }
      local r = { sc = sc, emu = emu }
      runs[i] = r
      if sc.setup then sc.setup(emu) end
      r.client, r.rec = wait.start_client(emu, { backoff = sc.default_backoff and
        { base_ms = 1000, max_ms = 60000, multiplier = 2, jitter = "full" } or backoff },
        sc.topics or { U .. "0.presence" })
      clients[i] = r.client
    end
    assert(wait.until_(clients, function()
      for _, r in ipairs(runs) do
        if r.rec.count("connected") == 0 and not r.sc.no_connect then return false end
      end
      return true
    end, 15000), "not every client connected")
    wait.for_ms(clients, 300) -- the answers to the connection's own request are in
    for _, r in ipairs(runs) do
      r.before = r.sc.no_connect and 0 or requests(r.emu, r.sc.count)
      if r.sc.fault then admin_ok(r.emu, "POST", "faults/http", r.sc.fault) end
      if r.sc.live then r.client:subscribe(r.sc.live) end
      if r.sc.at_window then r.sc.at_window(r.emu, r.client) end
    end
    wait.for_ms(clients, WINDOW_MS)
    for _, r in ipairs(runs) do
      local n = requests(r.emu, r.sc.count) - r.before
      r.requests = n
      io.stdout:write(("\n  %-55s %d requests in %d ms"):format(r.sc.name, n, WINDOW_MS))
    end
    for _, r in ipairs(runs) do
      admin_ok(r.emu, "POST", "faults/clear")
      local sc, n = r.sc, r.requests
      assert(n <= (sc.max or LIMIT), sc.name .. ": " .. n .. " requests in the window")
      assert(n >= (sc.min or 0), sc.name .. ": " .. n .. " requests in the window, expected " ..
        "the topic to be asked again")
      sc.check(r.client, r.rec, r.emu)
    end
  end)
end)
