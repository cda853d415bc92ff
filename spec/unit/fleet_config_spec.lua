-- Configuration errors of the fleet settings (client redis = {...}, notify.consumer{...}) name
-- the field and what was expected, and never show a credential put in the Redis URL.
local notify = require "genesys.notify"

local base = { gateway = { host = "localhost", port = 1 }, client_id = "a", client_secret = "s" }
local function with(redis)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  t.redis = redis
  return t
end

describe("fleet configuration errors name the field", function()
  local url = "redis://127.0.0.1:6379/0"
  local cases = {
    { with("redis://x"), "redis: expected a table" },
    { with { url = "http://h:1", key = "k" },
      "redis.url: expected a URL redis[s]://[user[:password]@]host[:port][/db]" },
    { with { url = "redis://h:port", key = "k" }, "redis.url: expected a port from 1 to 65535" },
    { with { url = "redis://[::zz]:1/0", key = "k" }, "redis.url: expected a URL redis[s]://" },
    { with { url = "redis://h x:1/0", key = "k" }, "without blanks or control characters" },
    { with { url = "redis://app@h:1/0", key = "k" },
      "redis.url: expected a password (in the URL or redis.password_file) with the user name" },
    { with { url = "redis://:a%zzb@h:1/0", key = "k" },
      "redis.url: expected a user and password percent-encoded" },
    { with { url = url, key = "k", password_file = "/nonexistent/pw" },
      "redis.password_file: expected a readable file" },
    { with { url = url, key = "k", tls = { ca_file = "/x" } },
      "redis.tls: expected a rediss:// URL with TLS settings" },
    { with { url = url, key = "k", tls = { ca = "/x" } }, "redis.tls.ca: unknown field" },
    { with { url = url, key = "k", sentinel = { addrs = { "h:1" } } },
      "redis.sentinel.master: expected the master's name, got nil" },
    { with { url = url, key = "k", sentinel = { master = "m", addrs = {} } },
      'redis.sentinel.addrs: expected a list of "host:port"' },
    { with { key = "k", sentinel = { master = "m", addrs = { "h" } } },
      'redis.sentinel.addrs: expected "host:port" or "[IPv6 address]:port" entries' },
    { with { url = "redis://m:6379/0", key = "k", sentinel = { master = "m", addrs = { "h:1" } } },
      "redis.url: expected the master's name as the host and no port" },
    { with { url = "redis://other/0", key = "k", sentinel = { master = "m", addrs = { "h:1" } } },
      "redis.url: expected redis.sentinel.master as the host" },
    { with { key = "k", sentinel = { master = "m", addrs = { "h:1" }, user = "u" } },
      "redis.sentinel.password: expected with redis.sentinel.user" },
    { with { url = "redis://h:99999/0", key = "k" }, "redis.url: expected a port from 1 to 65535" },
    { with { url = "redis://h:6379/70000", key = "k" }, "redis.url: expected a database number" },
    { with { url = url }, "redis.key: expected a non-empty string, got nil" },
    { with { url = url, key = "" }, "redis.key: expected a non-empty string" },
    { with { url = url, key = "k", lease_ms = 50 },
      "redis.lease_ms: expected an integer number of milliseconds from 100 to 3600000" },
    { with { url = url, key = "k", lease_ms = 1000, margin_ms = 500 },
      "redis.margin_ms: expected less than half of lease_ms" },
    { with { url = url, key = "k", maxlen = 0 }, "redis.maxlen: expected an integer from 1" },
    { with { url = url, key = "k", lease = 1 }, "redis.lease: unknown field" },
  }
  for _, case in ipairs(cases) do
    it(case[2], function()
      local ok, err = pcall(notify.new, case[1])
      assert.is_false(ok)
      assert.truthy(tostring(err):find(case[2], 1, true), tostring(err))
    end)
  end

  it("a URL with a password is taken, and never shown when refused", function()
    assert.truthy(notify.config(with { url = "redis://:s3cr3t@h:1/0", key = "k" }))
    assert.truthy(notify.config(with { url = "redis://app:s3cr3t@[::1]:1/3", key = "k" }))
    for _, bad in ipairs { "redis://:s3cr3t@h:99999/0", "redis://app:s3cr3t@h:1/x",
      "redis://app:s3cr3t@h:1/0 ", "http://app:s3cr3t@h:1/0" } do
      local ok, err = pcall(notify.new, with { url = bad, key = "k" })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("redis.url", 1, true), tostring(err))
      assert.falsy(tostring(err):find("s3cr3t", 1, true), tostring(err))
    end
    local ok, err = pcall(notify.new, with { url = "redis://h:1/0", key = "k",
      sentinel = { master = "m", addrs = { "h:1" }, password = 7 } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("redis.sentinel.password: expected a non-empty string, got number",
      1, true))
  end)

  it("a password file holds one line, never shown", function()
    local path = os.tmpname()
    local function write(s) local f = io.open(path, "wb"); f:write(s); f:close() end
    write("s3cr3t\n")
    assert.truthy(notify.config(with { url = "redis://app@h:1/0", key = "k", password_file = path }))
    local ok, err = pcall(notify.new, with { url = "redis://:x@h:1/0", key = "k", password_file = path })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("redis.password_file: expected no password in redis.url", 1, true))
    for _, bad in ipairs { "", "\n", "s3cr3t\nmore\n", "s3\0cr3t" } do
      write(bad)
      ok, err = pcall(notify.new, with { url = "redis://h:1/0", key = "k", password_file = path })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("redis.password_file: expected one line", 1, true), tostring(err))
      assert.falsy(tostring(err):find("s3", 1, true), tostring(err))
    end
    os.remove(path)
  end)

  it("rediss:// works where hiredis has TLS and is refused clearly where it has not", function()
    local core = require "genesys.notify.core"
    local _, tls = core.redis_check { url = "redis://h:1/0" }
    local cfg = with { url = "rediss://h:1/0", key = "k", tls = { ca_file = "/nonexistent/ca.pem" } }
    local ok, err = pcall(notify.new, cfg)
    assert.is_false(ok)
    if tls then
      assert.truthy(tostring(err):find("redis.tls.ca_file: expected a readable PEM file", 1, true),
        tostring(err))
    else
      assert.truthy(tostring(err):find("redis.url: rediss:// (TLS) needs a build with hiredis 1.x", 1, true),
        tostring(err))
    end
  end)

  local ccases = {
    { "nothing", "consumer: expected a table" },
    { {}, "redis: expected a table" },
    { { redis = { url = url } }, "redis.key: expected a non-empty string, got nil" },
    { { redis = { url = "x", key = "k" } }, "redis.url: expected a URL" },
    { { redis = { url = url, key = "k" }, mode = "all" }, 'mode: expected "fanout" or "group", got "all"' },
    { { redis = { url = url, key = "k" }, mode = "group" },
      'group: expected a group name (mode = "group"), got nil' },
    { { redis = { url = url, key = "k" }, claim_idle_ms = 1 },
      "claim_idle_ms: expected an integer number of milliseconds from 10" },
    { { redis = { url = url, key = "k" }, on_event = 1 }, "on_event: expected a function, got 1" },
    { { redis = { url = url, key = "k" }, topic = "x" }, "topic: unknown field" },
  }
  for _, case in ipairs(ccases) do
    it("consumer: " .. case[2], function()
      local ok, err = pcall(notify.consumer, case[1])
      assert.is_false(ok)
      assert.truthy(tostring(err):find(case[2], 1, true), tostring(err))
    end)
  end

  it("a valid consumer can be made and closed without a server", function()
    local c = notify.consumer { redis = { url = url, key = "k" }, mode = "group", group = "g" }
    assert.equals(0, c:poll(0))
    assert.is_true(c:close())
    assert.has_error(function() c:start() end, "genesys.notify: the consumer is closed")
  end)
end)
