-- The Redis that production runs (docs: "Running a fleet"): a lease holder and a stream consumer
-- in this process against real redis-server processes with a password (in the URL and from a
-- file), an ACL user and a database, IPv6, a host name, TLS (CA, client certificate, server name:
-- with a hiredis 1.x build, `make test-hiredis1`), and a password that is wrong or missing (a
-- health item naming the cause, never `standby` in silence). Every output (health items,
-- events, metrics, Prometheus text, errors) is kept and searched for the passwords at the end.
local emulator = require "support.emulator"
local redis = require "support.redis"
local notify = require "genesys.notify"
local core = require "genesys.notify.core"

local SLOW = require("support.build").slow
local TOPIC = "v2.users.redisprod.presence"
local CERTS = io.popen("pwd"):read("*l") .. "/build/certs/redis"
local PASS, APP_PASS, FILE_PASS = "pw-Xq81-top", "app-Kz27-pw", "file-Jd55-pw"
local _, HAVE_TLS = core.redis_check { url = "redis://h:1/0" }

local seen = {} -- every text this library gave us
local function keep(v, depth)
  depth = depth or 0
  if type(v) == "table" and depth < 6 then
    for k, x in pairs(v) do
      seen[#seen + 1] = tostring(k)
      keep(x, depth + 1)
    end
  else
    seen[#seen + 1] = tostring(v)
  end
end

local function now_ms() return notify.now_ms() end
local keys = 0
local emu

-- A holder (a client with redis = cfg) and a fanout consumer of its stream, polled together
-- until the consumer got `want` events or the deadline; returns what happened.
local function pipeline(cfg, want, timeout_ms)
  keys = keys + 1
  local key = "gn:rp" .. keys
  local rcfg, ccfg = { key = key, lease_ms = 1000 * SLOW }, { key = key }
  for k, v in pairs(cfg) do rcfg[k], ccfg[k] = v, v end
  local res = { health = {}, chealth = {}, events = 0 }
  local client = notify.new {
    gateway = { host = "localhost", port = emu.port, protocol = "https" },
    tls = { ca_file = emu.ca_file },
    client_id = "test-id", client_secret = "test-secret", topics = { TOPIC },
    backoff = { base_ms = 50, max_ms = 400, multiplier = 2, jitter = "none", reset_after_ms = 200 },
    redis = rcfg,
    on_health = function(h) keep(h); res.health[#res.health + 1] = h end,
    on_event = function(ev) keep(ev) end,
  }
  local consumer = notify.consumer {
    redis = ccfg, mode = "fanout", block_ms = 100,
    on_event = function(ev) keep(ev); res.events = res.events + 1 end,
    on_health = function(h) keep(h); res.chealth[#res.chealth + 1] = h end,
  }
  keep(tostring(client)); keep(tostring(consumer))
  consumer:start()
  client:start()
  local deadline = now_ms() + (timeout_ms or 10000) * SLOW
  while now_ms() < deadline and res.events < (want or 3) do
    client:poll(20)
    consumer:poll(20)
  end
  res.lease = client:metrics().lease
  res.redis_up = consumer:metrics().redis_up
  keep(client:metrics()); keep(client:metrics("prometheus")); keep(consumer:metrics())
  client:close()
  consumer:close()
  res.key = key
  return res
end

local function find_health(list, kind, pat)
  for _, h in ipairs(list) do
    if h.kind == kind and (not pat or tostring(h.error):find(pat)) then return h end
  end
end

describe("fleet against a production Redis", function()
  setup(function()
    emu = emulator.start { tls = true, args = { "--event-rate", "20" } }
  end)
  teardown(function()
    if emu then emu:stop() end
    redis.stop_all()
  end)

  describe("with requirepass", function()
    local r
    setup(function() r = redis.start { args = { "--requirepass", PASS }, auth = { "-a", PASS } } end)
    teardown(function() r:stop() end)

    it("authenticates with the URL's password: events flow holder -> stream -> consumer", function()
      local res = pipeline({ url = string.format("redis://:%s@127.0.0.1:%d/0", PASS, r.port) })
      assert.is_true(res.events >= 3, "events " .. res.events)
      assert.equals(1, res.lease.acquired)
      assert.is_true(res.redis_up)
    end)

    it("takes the password from password_file", function()
      local path = os.tmpname()
      local f = io.open(path, "w"); f:write(PASS, "\n"); f:close()
      local res = pipeline({ url = r.url, password_file = path })
      os.remove(path)
      assert.is_true(res.events >= 3, "events " .. res.events)
    end)

    it("a wrong or missing password is a health item that says so, and no holder", function()
      for _, case in ipairs {
        { string.format("redis://:%s@127.0.0.1:%d/0", FILE_PASS, r.port), "WRONGPASS" },
        { r.url, "NOAUTH" },
      } do
        local res = pipeline({ url = case[1] }, 1, 1500)
        assert.equals(0, res.events)
        assert.equals(0, res.lease.acquired)
        assert.equals("candidate", res.lease.state)
        local h = find_health(res.health, "redis", case[2])
        assert.truthy(h, "no redis health item with " .. case[2])
        assert.equals("down", h.event)
        assert.truthy(find_health(res.chealth, "redis", case[2]), "consumer: no " .. case[2])
      end
    end)
  end)

  it("an ACL user in database 2 (AUTH user password, SELECT 2 on every connection)", function()
    local r = redis.start { args = { "--requirepass", PASS }, auth = { "-a", PASS } }
    finally(function() r:stop() end)
    assert.matches("OK", r:cli("ACL", "SETUSER", "app", "on", ">" .. APP_PASS, "~gn:*", "+@all"))
    local res = pipeline({ url = string.format("redis://app:%s@127.0.0.1:%d/2", APP_PASS, r.port) })
    assert.is_true(res.events >= 3, "events " .. res.events)
    assert.is_true(tonumber(r:cli("-n", "2", "XLEN", res.key .. ":stream"):match("%d+")) >= 3)
    assert.equals("0", r:cli("-n", "0", "EXISTS", res.key .. ":stream"):match("%d+"))
    -- the user's password is not the default user's
    local bad = pipeline({ url = string.format("redis://app:%s@127.0.0.1:%d/2", PASS, r.port) }, 1, 1500)
    assert.equals(0, bad.lease.acquired)
    assert.truthy(find_health(bad.health, "redis", "WRONGPASS"))
  end)

  it("an IPv6 address and a host name (resolved off the service thread)", function()
    local r = redis.start { bind = "127.0.0.1 ::1" }
    finally(function() r:stop() end)
    local res = pipeline({ url = string.format("redis://[::1]:%d/0", r.port) })
    assert.is_true(res.events >= 3, "events " .. res.events)
    res = pipeline({ url = string.format("redis://localhost:%d/0", r.port) })
    assert.is_true(res.events >= 3, "events " .. res.events)
    -- a name that does not resolve: a health item, and the client keeps answering
    res = pipeline({ url = "redis://no-such-host.invalid:6379/0" }, 1, 1500)
    assert.equals(0, res.lease.acquired)
    assert.truthy(find_health(res.health, "redis", "resolve"), "no resolve error")
  end)

  describe("over TLS", function()
    if not HAVE_TLS then
      pending("this build has hiredis without TLS: run make test-hiredis1 (rediss:// is refused " ..
        "at configuration: spec/unit/fleet_config_spec.lua)")
      return
    end
    local r
    local function tls(extra)
      local t = { ca_file = CERTS .. "/ca.pem", cert_file = CERTS .. "/client.pem",
        key_file = CERTS .. "/client.key" }
      for k, v in pairs(extra or {}) do t[k] = v or nil end
      return t
    end
    setup(function()
      r = redis.start { tls = CERTS, args = { "--requirepass", PASS }, auth = { "-a", PASS } }
    end)
    teardown(function() r:stop() end)

    it("rediss:// with a CA, a client certificate and the server's name checked", function()
      for _, host in ipairs { "localhost", "127.0.0.1" } do
        local res = pipeline({ url = string.format("rediss://:%s@%s:%d/0", PASS, host, r.port),
          tls = tls() })
        assert.is_true(res.events >= 3, host .. ": events " .. res.events)
      end
    end)

    it("refuses a server its CA did not sign, a wrong name, and goes without a client certificate", function()
      local url = string.format("rediss://:%s@localhost:%d/0", PASS, r.port)
      for _, case in ipairs {
        { tls { ca_file = CERTS .. "/otherca.pem" }, "certificate verify failed" },
        { tls { server_name = "redis.example.org" }, "hostname mismatch" },
        -- TLS 1.3: the server's alert, or its reset when it comes first
        { { ca_file = CERTS .. "/ca.pem" }, "certificate required", "reset by peer" },
      } do
        local res = pipeline({ url = url, tls = case[1] }, 1, 1500)
        assert.equals(0, res.lease.acquired)
        local h = find_health(res.health, "redis")
        assert.truthy(h, "no redis health item")
        assert.equals("down", h.event)
        assert.truthy(tostring(h.error):find(case[2], 1, true) or
          case[3] and tostring(h.error):find(case[3], 1, true), tostring(h.error))
      end
    end)
  end)

  it("no password in anything the library gave (health, events, metrics, errors)", function()
    for _, bad in ipairs { "redis://:" .. PASS .. "@h:99999/0", "redis://:" .. PASS .. "@[zz]:1/0" } do
      local ok, err = pcall(notify.consumer, { redis = { url = bad, key = "k" } })
      assert.is_false(ok)
      keep(err)
    end
    assert.is_true(#seen > 100, "too little output kept: " .. #seen)
    local all = table.concat(seen, "\n")
    for _, p in ipairs { PASS, APP_PASS, FILE_PASS } do
      assert.falsy(all:find(p, 1, true), "a password in the library's output")
    end
  end)
end)
