-- The client against the emulator over TLS: connect, receive, poll/close semantics, callbacks,
-- live subscriptions, configuration errors.
local emulator = require "support.emulator"
local wait = require "support.wait"
local notify = require "genesys.notify"

local TOPIC = "v2.users.u1.presence"

describe("genesys.notify client: connect and receive", function()
  local emu
  setup(function()
    emu = emulator.start { tls = true, clients = { "test-id:test-secret" }, heartbeat_ms = 30000 }
  end)
  teardown(function()
    if emu then emu:stop() end
  end)

  local function connected(rec, client)
    return wait.until_(client, function() return rec.count("connected") > 0 end, 10000)
  end

  it("gets a token, creates a channel, subscribes, connects over TLS and delivers events", function()
    local rec = wait.recorder()
    local client = notify.new(wait.config(emu, rec, { topics = { TOPIC } }))
    finally(function() client:close() end)
    assert.equals("idle", client:state())
    assert.equals(client, client:start())
    assert.truthy(connected(rec, client), "no connected health")
    assert.equals("open", client:state())
    local ch = wait.channel_of(rec)
    assert.truthy(ch and ch ~= "")
    local st = emu:stats()
    assert.same({ TOPIC }, st.channels[ch].subscriptions)
    assert.is_true(st.channels[ch].connected)
    assert.equals(1, rec.count("token"))
    assert.equals("refreshed", rec.kinds.token[1].event)
    assert.is_nil(rec.kinds.token[1].access_token)

    local status = emu:admin("POST", "channels/" .. ch .. "/events", { count = 5, topic = TOPIC })
    assert.equals(200, status)
    assert.truthy(wait.until_(client, function() return #rec.events >= 5 end, 5000))
    local seq = {}
    for i, ev in ipairs(rec.events) do
      assert.equals(TOPIC, ev.topic)
      assert.equals(ch, ev.channel_id)
      assert.equals("table", type(ev.body))
      assert.equals("string", type(ev.raw))
      assert.truthy(ev.raw:find('"topicName"', 1, true))
      assert.is_true(ev.received_ms > 1.6e12)
      seq[i] = ev.body.sequence
    end
    for i = 2, #seq do assert.equals(seq[i - 1] + 1, seq[i]) end
    local m = client:metrics()
    assert.equals(5, m.events)
    assert.equals(1, m.attempts)
    assert.equals(1, m.successes)
    assert.equals("open", m.state)
    assert.equals(1, m.latency_ms.count)
    local lat = rec.kinds.connected[1].latency_ms
    assert.is_true(lat > 0)
    assert.is_true(math.abs(m.latency_ms.max - lat) < 1e-9, "the metrics' sample is the same")
    -- The connect's latency to the µs: a multiple of 0.001 ms (2.137, not the clock's
    -- 2.136999874), and not whole ms (a LAN reconnect is 1-3 ms: whole ms cannot tell them
    -- apart). A whole number of ms to the µs is a one-in-a-thousand chance, so while the latest
    -- is whole, up to three connects are looked at.
    local lats = { lat }
    while #lats < 3 and lats[#lats] % 1 == 0 do
      client:reconnect()
      assert.truthy(wait.until_(client, function() return rec.count("connected") > #lats end, 5000))
      lats[#lats + 1] = rec.kinds.connected[#lats + 1].latency_ms
    end
    for _, l in ipairs(lats) do
      local us = l * 1000
      assert.is_true(math.abs(us - math.floor(us + 0.5)) < 1e-6, "latency_ms " .. l .. " is not to the µs")
    end
    assert.is_true(lats[#lats] % 1 ~= 0, "latency_ms " .. tostring(lats[#lats]) .. " is whole ms")
  end)

  it("poll() returns how many callbacks ran; fd() is readable only while items wait", function()
    local rec = wait.recorder()
    local client = notify.new(wait.config(emu, rec, { topics = { TOPIC } }))
    finally(function() client:close() end)
    client:start()
    assert.truthy(connected(rec, client))
    while client:poll(0) > 0 do end
    assert.equals(0, client:poll(0))
    assert.equals("number", type(client:fd()))
    emu:admin("POST", "channels/" .. wait.channel_of(rec) .. "/events", { count = 3, topic = TOPIC })
    local n, deadline = 0, wait.now_ms() + 5000
    while n < 3 and wait.now_ms() < deadline do n = n + client:poll(100) end
    assert.equals(3, n)
  end)

  it("heartbeats and pongs never reach on_event", function()
    local emu2 = emulator.start { tls = true, heartbeat_ms = 100 }
    finally(function() emu2:stop() end)
    local rec = wait.recorder()
    local client = notify.new(wait.config(emu2, rec, { topics = { TOPIC },
      heartbeat = { idle_ms = 150 * wait.slow(), ping_timeout_ms = 2000 * wait.slow() } }))
    finally(function() client:close() end)
    client:start()
    assert.truthy(wait.until_(client, function() return client:metrics().heartbeats >= 3 end, 5000))
    assert.equals(0, #rec.events)
    assert.equals(0, rec.count("disconnected"))
  end)

  it("close() is idempotent, joins, and no callback runs after it returns", function()
    local calls = 0
    local client = notify.new(wait.config(emu, nil, { topics = { TOPIC },
      on_event = function() calls = calls + 1 end,
      on_health = function() calls = calls + 1 end }))
    client:start()
    assert.truthy(wait.until_(client, function() return client:state() == "open" end, 10000))
    emu:admin("POST", "channels/*/events", { count = 500, topic = TOPIC, rate = 1000 })
    assert.truthy(wait.until_(client, function() return client:metrics().events > 0 end, 5000))
    client:close()
    local after = calls
    assert.equals("closed", client:state())
    -- the core let go of the client: what waited is gone and nothing more is read, though the
    -- stream (500 events at 1,000/s) was still going (metrics() reads a closed client's counters)
    local m = client:metrics()
    assert.equals(0, m.queued_events)
    assert.is_true(m.events < 500, m.events)
    assert.is_nil(emulator.wait_until(function() return client:metrics().events ~= m.events end, 0.3))
    client:close()
    assert.equals(after, calls)
    assert.has_error(function() client:start() end, "genesys.notify: the client is closed")
    assert.has_error(function() client:subscribe("x") end, "genesys.notify: the client is closed")
  end)

  it("close() from inside a callback stops the poll loop at once", function()
    local client
    local seen = 0
    client = notify.new(wait.config(emu, nil, { topics = { TOPIC },
      on_event = function() seen = seen + 1; client:close() end }))
    client:start()
    assert.truthy(wait.until_(client, function() return client:state() == "open" end, 10000))
    local ch
    for id, c in pairs(emu:stats().channels) do if c.connected then ch = id end end
    emu:admin("POST", "channels/" .. ch .. "/events", { count = 10, topic = TOPIC })
    assert.equals("closed", client:run())
    assert.equals(1, seen)
  end)

  it("close() while connecting or backing off leaves no callback and no thread behind", function()
    for _ = 1, 5 do
      local c = notify.new(wait.config(emu, nil, { topics = { TOPIC } }))
      c:start()
      c:close()
      -- nothing was left running for it: its counters do not move any more
      local h = c:metrics().health
      assert.is_nil(emulator.wait_until(function() return c:metrics().health ~= h end, 0.2))
      assert.equals("closed", c:state())
    end
    -- backing off: an unreachable gateway keeps the client failing, every 100 ms
    local rec = wait.recorder()
    local c = notify.new(wait.config({ host = "localhost", port = 1, tls = true, ca_file = emu.ca_file },
      rec, { backoff = { base_ms = 100, max_ms = 100, jitter = "none" } }))
    c:start()
    assert.truthy(wait.until_(c, function() return rec.count("attempt") > 1 end, 5000))
    c:close()
    -- the backoff timer died with it: no attempt in five of its delays
    local m = c:metrics()
    assert.is_nil(emulator.wait_until(function()
      local now = c:metrics()
      return now.attempts ~= m.attempts or now.health ~= m.health end, 0.5))
  end)

  it("an error in a callback is reported as health callback_error and the client keeps going", function()
    local rec = wait.recorder()
    local client = notify.new(wait.config(emu, rec, { topics = { TOPIC },
      on_event = function(ev)
        rec.events[#rec.events + 1] = ev
        if #rec.events == 1 then error("boom in on_event") end
      end }))
    finally(function() client:close() end)
    client:start()
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    emu:admin("POST", "channels/" .. wait.channel_of(rec) .. "/events", { count = 3, topic = TOPIC })
    assert.truthy(wait.until_(client, function() return #rec.events >= 3 end, 5000))
    local ce = rec.last("callback_error")
    assert.truthy(ce)
    assert.equals("on_event", ce.callback)
    assert.truthy(ce.error:find("boom in on_event", 1, true))
    assert.equals("open", ce.state)
    assert.is_true(ce.timestamp_ms > 1.6e12)
    assert.equals("open", client:state())
  end)

  it("an error in on_health is reported to on_health as callback_error, once (no loop)", function()
    local rec = wait.recorder()
    local raised = 0
    local client = notify.new(wait.config(emu, rec, { topics = { TOPIC },
      on_health = function(h)
        rec.on_health(h)
        if h.kind == "connected" then raised = raised + 1; error("boom in on_health") end
      end }))
    finally(function() client:close() end)
    client:start()
    assert.truthy(wait.until_(client, function() return rec.count("callback_error") > 0 end, 10000))
    local ce = rec.last("callback_error")
    assert.equals("on_health", ce.callback)
    assert.truthy(ce.error:find("boom in on_health", 1, true), ce.error)
    assert.equals("open", ce.state)
    assert.is_true(ce.timestamp_ms > 1.6e12)
    -- an on_health that fails on every item, its own reports included: each failure is tried
    -- once as a report, then goes to stderr; poll() comes back
    local calls = 0
    local c2 = notify.new(wait.config(emu, nil, { topics = { TOPIC },
      on_health = function() calls = calls + 1; error("always") end }))
    finally(function() c2:close() end)
    c2:start()
    assert.truthy(wait.until_(c2, function() return c2:state() == "open" end, 10000))
    wait.until_(c2, function() return false end, 100)
    local items = c2:metrics().health
    assert.is_true(calls <= 2 * items, calls .. " calls for " .. items .. " items")
    assert.equals(1, raised)
  end)

  it("subscribe()/unsubscribe() change the live channel and are reported", function()
    local rec = wait.recorder()
    local client = notify.new(wait.config(emu, rec, { topics = { TOPIC } }))
    finally(function() client:close() end)
    client:start()
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    local ch = wait.channel_of(rec)
    assert.is_true(client:subscribe { "v2.users.u2.presence", "v2.users.u3.presence" })
    assert.truthy(wait.until_(client, function()
      return #emu:stats().channels[ch].subscriptions == 3 end, 5000))
    client:unsubscribe(TOPIC)
    assert.truthy(wait.until_(client, function()
      local s = emu:stats().channels[ch].subscriptions
      return #s == 2 and s[1] ~= TOPIC and s[2] ~= TOPIC end, 5000))
    local function updates()
      return #rec.where("subscription", function(h) return h.event == "updated" end)
    end
    assert.truthy(wait.until_(client, function() return updates() >= 2 end, 5000))
    -- an invalid topic name raises at once and nothing is sent (spec/unit/topics_spec.lua has
    -- every rule); the channel keeps its topics and the next change works
    assert.has_error(function() client:subscribe("not a topic!") end)
    client:subscribe("v2.users.u4.presence")
    assert.truthy(wait.until_(client, function()
      return #emu:stats().channels[ch].subscriptions == 3 end, 5000))
    wait.for_ms(client, 100)
    assert.equals(0, #rec.where("subscription", function(h) return h.event ~= "updated" and
      h.event ~= "subscribed" end))
  end)
end)

describe("genesys.notify configuration errors name the field", function()
  local base = { gateway = { host = "localhost", port = 1 }, client_id = "a", client_secret = "s" }
  local function with(over)
    local t = {}
    for k, v in pairs(base) do t[k] = v end
    for k, v in pairs(over) do
      if v == false and k == "gateway" then t[k] = nil else t[k] = v end
    end
    return t
  end
  local cases = {
    { { region = "nowhere", gateway = false }, "region: expected a region name" },
    { { gateway = { host = "h", port = 70000 } }, "gateway.port: expected an integer from 1 to 65535" },
    { { gateway = { port = 1 } }, "gateway.host: expected a host name" },
    { { gateway = { host = "h", protocol = "ftp" } }, 'gateway.protocol: expected "https" or "http"' },
    { { client_id = 5 }, "client_id: expected a non-empty string" },
    { { client_secret = "" }, "client_secret: expected a non-empty string" },
    { { topics = { "a", 3 } }, "topics[2]: expected a non-empty string, got 3" },
    { { tls = { verify = "yes" } }, "tls.verify: expected a boolean" },
    { { tls = { ca_file = "/nonexistent/ca.pem" } }, "tls.ca_file: expected a readable PEM file" },
    { { timeouts = { connect_ms = -1 } }, "timeouts.connect_ms: expected an integer number of milliseconds" },
    { { heartbeat = { idle_ms = "x" } }, "heartbeat.idle_ms: expected an integer number" },
    { { queue_limit = 0 }, "queue_limit: expected an integer from 1" },
    { { max_message_size = 10 }, "max_message_size: expected an integer number of bytes from 256" },
    { { on_event = 1 }, "on_event: expected a function" },
    { { colour = "red" }, "colour: unknown field" },
    { { tls = { ca = "x" } }, "tls.ca: unknown field" },
    { { backoff = { base_ms = -5 } }, "backoff.base_ms" },
    { { backoff = { nope = 1 } }, "backoff.nope" },
    { { queue_bytes = 100 }, "queue_bytes: expected an integer number of bytes from 65536" },
    { { queue_bytes = 0 / 0 }, "queue_bytes: expected an integer number of bytes from 65536" },
    { { gateway = { host = "evil.example?x=#@:" } }, "gateway.host: expected a bare host name or IP" },
    { { gateway = { host = "h:8443" } }, "gateway.host: expected a bare host name or IP" },
    { { gateway = { host = "user@h" } }, "gateway.host: expected a bare host name or IP" },
    { { gateway = { host = "h\0.evil" } }, "gateway.host: expected a" },
    { { gateway = { host = "h", path_params_api = "api\0x" } },
      "gateway.path_params_api: expected a string without NUL bytes" },
    { { client_id = "id\0rest" }, "client_id: expected a string without NUL bytes" },
    { { client_secret = "s3cr3t\0rest" },
      "client_secret: expected a string without NUL bytes, got a string with a NUL byte" },
  }
  for _, case in ipairs(cases) do
    it(case[2], function()
      local ok, err = pcall(notify.new, with(case[1]))
      assert.is_false(ok)
      assert.truthy(tostring(err):find(case[2], 1, true), tostring(err))
    end)
  end

  it("never echoes the secret", function()
    local ok, err = pcall(notify.new, with { client_secret = { "s3cr3t" } })
    assert.is_false(ok)
    assert.falsy(tostring(err):find("s3cr3t", 1, true))
    ok, err = pcall(notify.new, with { client_secret = "s3cr3t\0rest" })
    assert.is_false(ok)
    assert.falsy(tostring(err):find("s3cr3t", 1, true))
  end)

  it("a backoff error reads like every other configuration error (no file:line first)", function()
    local ok, err = pcall(notify.new, with { backoff = { base_ms = -5 } })
    assert.is_false(ok)
    assert.equals("genesys.notify: backoff.base_ms: expected a number > 0, got -5", err)
  end)

  it("host names and IP literals are accepted", function()
    for _, h in ipairs { "localhost", "127.0.0.1", "[::1]", "api.mypurecloud.com", "my_gw.in" } do
      local c = notify.new(with { gateway = { host = h, port = 1 } })
      c:close()
    end
  end)

  it("poll(nan) raises instead of never returning; negative or infinite waits have no limit", function()
    local c = notify.new(base)
    finally(function() c:close() end)
    local ok, err = pcall(c.poll, c, 0 / 0)
    assert.is_false(ok)
    assert.truthy(err:find("poll(timeout_ms): expected a number of milliseconds", 1, true), err)
    assert.equals(0, c:poll(0.5))
  end)

  it("takes credentials and region from the environment names Genesys's tools use", function()
    -- the module reads the environment through os.getenv when it is loaded: load a copy of it
    -- with the environment this test wants, whatever the process has
    local function with_env(env, fn)
      local saved_getenv, saved_mod = os.getenv, package.loaded["genesys.notify"]
      os.getenv = function(k) return env[k] end -- luacheck: ignore 122
      package.loaded["genesys.notify"] = nil
      local ok, mod = pcall(require, "genesys.notify")
      os.getenv = saved_getenv -- luacheck: ignore 122
      package.loaded["genesys.notify"] = saved_mod
      assert(ok, mod)
      return fn(mod)
    end
    with_env({}, function(n)
      local ok, err = pcall(n.config, { gateway = { host = "h" }, client_id = "x" })
      assert.is_false(ok)
      assert.truthy(err:find(
        "client_secret: expected a non-empty string (or GENESYSCLOUD_OAUTHCLIENT_SECRET", 1, true), err)
      ok, err = pcall(n.config, { client_id = "x", client_secret = "y" })
      assert.is_false(ok)
      assert.truthy(err:find("region: expected a region name or domain", 1, true), err)
    end)
    with_env({ GENESYSCLOUD_OAUTHCLIENT_ID = "env-id",
               GENESYSCLOUD_OAUTHCLIENT_SECRET = "env-secret",
               GENESYSCLOUD_REGION = "eu-west-1" }, function(n)
      local out = n.config({})
      assert.equals("env-id", out.client_id)
      assert.equals("env-secret", out.client_secret)
      assert.equals("https://login.mypurecloud.ie/oauth/token", out.token_url)
      assert.equals("https://api.mypurecloud.ie", out.api_base)
      -- the configuration wins over the environment
      out = n.config({ client_id = "cfg-id", region = "us-east-1" })
      assert.equals("cfg-id", out.client_id)
      assert.equals("https://api.mypurecloud.com", out.api_base)
      -- and a wrong-type value from the configuration is rejected, not replaced
      local ok, err = pcall(n.config, { client_id = 5 })
      assert.is_false(ok)
      assert.truthy(err:find("client_id: expected a non-empty string", 1, true), err)
    end)
  end)
end)
