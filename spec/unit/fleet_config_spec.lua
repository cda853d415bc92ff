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
    { with { url = "http://h:1", key = "k" }, "redis.url: expected a URL redis://host[:port][/db]" },
    { with { url = "redis://h:port", key = "k" }, "redis.url: expected a URL redis://host[:port][/db]" },
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

  it("a password in the URL is refused without being shown", function()
    local ok, err = pcall(notify.new, with { url = "redis://:s3cr3t@h:1/0", key = "k" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("redis.url", 1, true))
    assert.falsy(tostring(err):find("s3cr3t", 1, true), tostring(err))
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
