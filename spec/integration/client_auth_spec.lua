-- Tokens and authorization faults against the emulator: bad credentials, 403, 429 with
-- Retry-After, a 503 storm, revoked tokens, one token request for many clients, TLS trust.
local emulator = require "support.emulator"
local wait = require "support.wait"
local notify = require "genesys.notify"

local TOPIC = "v2.users.a1.presence"

local function oauth_count(st, code) return (st.global.oauth or {})[tostring(code)] or 0 end
local function rest_count(st, code) return (st.global.rest or {})[tostring(code)] or 0 end

describe("genesys.notify client: tokens and auth faults", function()
  local emu
  setup(function() emu = emulator.start { tls = true } end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function() emu:admin("POST", "faults/clear", {}) end)

  it("bad credentials -> final failure auth with a clear message, no retry loop", function()
    local before = emu:stats()
    local rec = wait.recorder()
    local client = notify.new(wait.config(emu, rec, { client_secret = "wrong-secret", topics = { TOPIC } }))
    finally(function() client:close() end)
    client:start()
    assert.equals("failed", client:run())
    local g = rec.kinds.gave_up[1]
    assert.equals("auth", g.reason)
    assert.truthy(g.error:find("bad credentials", 1, true), g.error)
    assert.truthy(g.error:find("client_secret", 1, true))
    assert.falsy(g.error:find("wrong-secret", 1, true))
    assert.equals(0, rec.count("attempt"))
    wait.for_ms(client, 200)
    local after = emu:stats()
    assert.equals(1, oauth_count(after, 401) - oauth_count(before, 401))
    assert.equals(0, rec.count("attempt"))
  end)

  it("403 -> gave_up forbidden, no retry loop", function()
    local rec = wait.recorder()
    local before = emu:stats()
    emu:admin("POST", "faults/http", { target = "rest", status = 403, count = 5 })
    local client = notify.new(wait.config(emu, rec, { topics = { TOPIC } }))
    finally(function() client:close() end)
    client:start()
    assert.equals("failed", client:run())
    assert.equals("forbidden", rec.kinds.gave_up[1].reason)
    assert.equals(0, rec.count("attempt"))
    local n403 = rest_count(emu:stats(), 403) - rest_count(before, 403)
    assert.is_true(n403 >= 1)
    wait.for_ms(client, 300) -- nothing more is tried
    assert.equals(n403, rest_count(emu:stats(), 403) - rest_count(before, 403))
    assert.equals(0, rec.count("attempt"))
  end)

  it("OAuth 429 with Retry-After -> the next delay is at least Retry-After", function()
    local rec = wait.recorder()
    emu:admin("POST", "faults/http", { target = "oauth", status = 429, count = 1, retry_after = 1 })
    local client = notify.new(wait.config(emu, rec, { topics = { TOPIC } }))
    finally(function() client:close() end)
    local t0 = wait.now_ms()
    client:start()
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    assert.is_true(wait.now_ms() - t0 >= 1000)
    local f = rec.kinds.failed[1]
    assert.equals("rate_limited", f.reason)
    assert.equals(429, f.status)
    local a = rec.kinds.attempt[1]
    assert.is_true(a.delay_ms >= 1000, "delay " .. a.delay_ms)
    assert.equals(1000, a.retry_after_ms)
  end)

  it("a 503 storm -> backoff with growing delays, then back without giving up", function()
    local rec = wait.recorder()
    emu:admin("POST", "faults/http", { target = "rest", status = 503, ms = 700 * wait.slow() })
    local client = notify.new(wait.config(emu, rec, { topics = { TOPIC } }))
    finally(function() client:close() end)
    client:start()
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    assert.is_true(rec.count("failed") >= 3)
    for _, f in ipairs(rec.kinds.failed) do assert.equals(503, f.status) end
    local a = rec.kinds.attempt
    for i = 2, math.min(#a, 4) do assert.is_true(a[i].delay_ms > a[i - 1].delay_ms) end
    assert.equals(0, rec.count("gave_up"))
    assert.same({ TOPIC }, emu:stats().channels[wait.channel_of(rec)].subscriptions)
  end)

  it("tokens revoked -> one refresh and the client goes on", function()
    local rec = wait.recorder()
    local client = notify.new(wait.config(emu, rec, { topics = { TOPIC } }))
    finally(function() client:close() end)
    client:start()
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    local issued = emu:stats().global.tokens_issued
    emu:admin("POST", "tokens/revoke", {})
    client:subscribe("v2.users.a2.presence")
    assert.truthy(wait.until_(client, function()
      return #rec.where("subscription", function(h) return h.event == "updated" end) > 0 end, 5000))
    assert.equals(issued + 1, emu:stats().global.tokens_issued)
    assert.equals(1, #rec.where("token", function(h) return h.event == "rejected" end))
    assert.equals(2, #emu:stats().channels[wait.channel_of(rec)].subscriptions)
    -- and a hard reconnect after a revocation: 401 on channel creation -> refresh -> new channel
    emu:admin("POST", "tokens/revoke", {})
    emu:admin("POST", "channels/" .. wait.channel_of(rec) .. "/expire", {})
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    assert.equals(issued + 2, emu:stats().global.tokens_issued)
    assert.is_true(rec.kinds.restored[1].new_channel)
    assert.equals(0, rec.count("gave_up"))
  end)

  it("a token near its end is refreshed before use, never sent to be refused", function()
    local emu2 = emulator.start { tls = true, token_ttl = 2 }
    finally(function() emu2:stop() end)
    local rec = wait.recorder()
    -- renew.rule "channel": this spec counts the token refreshes a subscription change needs;
    -- under the default rule ("both") a channel made with a 2 s token is also moved to a new one
    -- every second, each with a token of its own (client_renew_spec counts those).
    local client = notify.new(wait.config(emu2, rec, { topics = { TOPIC },
      renew = { rule = "channel" } }))
    finally(function() client:close() end)
    client:start()
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    assert.equals(2, math.floor(rec.kinds.token[1].expires_in_s + 0.5))
    wait.for_ms(client, 2100) -- the token has expired on the server by now
    client:subscribe("v2.users.a3.presence")
    assert.truthy(wait.until_(client, function()
      return #rec.where("subscription", function(h) return h.event == "updated" end) > 0 end, 5000))
    assert.equals(0, #rec.where("token", function(h) return h.event == "rejected" end))
    assert.equals(2, #rec.where("token", function(h) return h.event == "refreshed" end))
    local st = emu2:stats()
    assert.equals(2, st.global.tokens_issued)
    assert.equals(0, rest_count(st, 401))
  end)

  it("100 clients, one context, one credential -> one token request at start, one after revoking", function()
    -- Genesys allows 20 channels per OAuth client; the emulator is told to allow one per client here
    local emu2 = emulator.start { tls = true, args = { "--max-channels", "1000" } }
    finally(function() emu2:stop() end)
    local clients, recs = {}, {}
    finally(function() for _, c in ipairs(clients) do c:close() end end)
    -- under valgrind (about 50x slower) 20 clients make the same point within the time limit
    local N = wait.under_valgrind() and 20 or 100
    for i = 1, N do
      recs[i] = wait.recorder()
      clients[i] = notify.new(wait.config(emu2, recs[i], { topics = { "v2.users.m" .. i .. ".presence" },
        channel_budget = 1000 })) -- and the clients' budget for their shared credential too
    end
    for _, c in ipairs(clients) do c:start() end
    local function all(kind, n)
      return function()
        for _, r in ipairs(recs) do if r.count(kind) < n then return false end end
        return true
      end
    end
    assert.truthy(wait.until_(clients, all("connected", 1), 60000), "not all connected")
    local st = emu2:stats()
    assert.equals(1, st.global.tokens_issued)
    assert.equals(1, oauth_count(st, 200))
    assert.equals(1, clients[1]:metrics().token_requests)
    emu2:admin("POST", "tokens/revoke", {})
    emu2:admin("POST", "channels/*/expire", {})
    assert.truthy(wait.until_(clients, all("restored", 1), 60000), "not all restored")
    st = emu2:stats()
    assert.equals(2, st.global.tokens_issued)
    assert.equals(2, oauth_count(st, 200))
    for _, r in ipairs(recs) do assert.is_true(r.kinds.restored[1].new_channel) end
  end)

  it("an untrusted CA -> a clear TLS failure and no connection", function()
    local before = emu:stats()
    local rec = wait.recorder()
    local cfg = wait.config(emu, rec, { topics = { TOPIC },
      backoff = { base_ms = 50, max_ms = 50, jitter = "none", max_retries = 1 } })
    cfg.tls = nil -- the system's CAs do not know the emulator's test CA
    local client = notify.new(cfg)
    finally(function() client:close() end)
    client:start()
    assert.equals("failed", client:run())
    local f = rec.kinds.failed[1]
    assert.equals("tls", f.reason)
    assert.truthy(f.error:lower():find("certificate", 1, true), f.error)
    assert.equals(0, rec.count("connected"))
    local after = emu:stats()
    assert.equals(before.global.tokens_issued, after.global.tokens_issued)
    assert.equals(before.global.handshakes, after.global.handshakes)
  end)

  it("tls.verify = false connects without the CA (an explicit opt-out)", function()
    local rec = wait.recorder()
    local cfg = wait.config(emu, rec, { topics = { TOPIC } })
    cfg.tls = { verify = false }
    local client = notify.new(cfg)
    finally(function() client:close() end)
    client:start()
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
  end)
end)

describe("genesys.notify client: secrets stay secret", function()
  local emu
  setup(function() emu = emulator.start { tls = true, clients = { "test-id:S3cr3t-Value-9" } } end)
  teardown(function() if emu then emu:stop() end end)

  it("neither the client secret nor a token appears in any health item, event or error", function()
    -- the emulator's tokens are long runs of hex digits: no string we show may hold 32 of them
    assert.truthy(emu:token("test-id:S3cr3t-Value-9"):find("^" .. ("%x"):rep(32) .. "%x*$"))
    local seen = {}
    local function scan(v, depth)
      if depth > 5 then return end
      if type(v) == "table" then for k, x in pairs(v) do scan(k, depth + 1); scan(x, depth + 1) end
      elseif type(v) == "string" then seen[#seen + 1] = v end
    end
    local rec = wait.recorder()
    local cfg = wait.config(emu, rec, { client_secret = "S3cr3t-Value-9", topics = { TOPIC } })
    local client = notify.new(cfg)
    finally(function() client:close() end)
    client:start()
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    emu:admin("POST", "tokens/revoke", {})
    client:subscribe("v2.users.a9.presence") -- 401, refresh, retry
    emu:admin("POST", "channels/" .. wait.channel_of(rec) .. "/events", { count = 2, topic = TOPIC })
    assert.truthy(wait.until_(client, function() return #rec.events >= 2 end, 5000))
    assert.truthy(wait.until_(client, function()
      return #rec.where("subscription", function(h) return h.event == "updated" end) > 0 end, 5000))
    -- a wrong secret too
    local rec2 = wait.recorder()
    local bad = notify.new(wait.config(emu, rec2, { client_secret = "S3cr3t-Wrong-1" }))
    finally(function() bad:close() end)
    bad:start()
    assert.equals("failed", bad:run())
    scan(rec.health, 0); scan(rec.events, 0); scan(rec2.health, 0)
    scan(client:metrics(), 0); scan({ client:metrics("prometheus"), tostring(client) }, 0)
    assert.is_true(#seen > 20)
    local token_shape = ("%x"):rep(32)
    for _, s in ipairs(seen) do
      assert.falsy(s:find("S3cr3t", 1, true), s)
      assert.falsy(s:find(token_shape), s)
      assert.falsy(s:find("Bearer", 1, true), s)
      assert.falsy(s:find("Basic ", 1, true), s)
    end
  end)
end)
