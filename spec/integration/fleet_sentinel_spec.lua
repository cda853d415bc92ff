-- A fleet behind Redis Sentinel (docs: "Running a fleet"): a master, a replica and a
-- redis-sentinel (real processes), two lease candidates and two consumers in this process. The
-- master is found through the sentinels (the first one listed is down), followed through a forced
-- failover (SENTINEL FAILOVER), and the fence keeps its promise across it: a tenure whose lease
-- and fence did not reach a replica (WAIT) appends nothing, so no later holder can be handed the
-- same fence, and consumers never accept an event with an older fence than one they delivered.
local emulator = require "support.emulator"
local redis = require "support.redis"
local notify = require "genesys.notify"

local SLOW = require("support.build").slow
local TOPIC = "v2.users.sentinel.presence"
local NAME = "gnm"
local KEY = "gn:sent"
local PASS, SENTINEL_PASS = "sent-Pw93-x", "sentinel-Qa47-x"

local function now_ms() return notify.now_ms() end

describe("a fleet behind Redis Sentinel", function()
  local emu, m, rep, sen
  local objs, log = {}, { events = {}, health = {} }

  -- the health items from the first-th on, one a line (what went wrong)
  local function dump(first)
    local lines = {}
    for i = math.max(1, first), #log.health do
      local h, parts = log.health[i], {}
      for k, v in pairs(h) do parts[#parts + 1] = k .. "=" .. tostring(v) end
      table.sort(parts)
      lines[#lines + 1] = table.concat(parts, " ")
    end
    return table.concat(lines, "\n")
  end

  local function poll_until(fn, timeout_ms, what)
    local deadline = now_ms() + timeout_ms * SLOW
    while now_ms() < deadline do
      for _, o in ipairs(objs) do o:poll(10) end
      if fn() then return true end
    end
    error("timed out: " .. what .. "\n" .. dump(#log.health - 20))
  end

  local function role(r) return (r:cli("ROLE"):match("^(%a+)")) end
  local function master_port()
    return tonumber((sen:cli("SENTINEL", "get-master-addr-by-name", NAME):match("\n(%d+)")))
  end
  local function redis_cfg()
    return { url = "redis://:" .. PASS .. "@" .. NAME .. "/0", key = KEY, lease_ms = 3000,
      sentinel = { master = NAME, addrs = { "127.0.0.1:1", "127.0.0.1:" .. sen.port },
        password = SENTINEL_PASS } }
  end
  local function record(who)
    return function(h) h.who = who; log.health[#log.health + 1] = h end
  end
  local function started(o)
    objs[#objs + 1] = o
    o:start()
    return o
  end
  local function holder(name)
    local c = notify.new {
      gateway = { host = "localhost", port = emu.port, protocol = "https" },
      tls = { ca_file = emu.ca_file }, name = name,
      client_id = "test-id", client_secret = "test-secret", topics = { TOPIC },
      backoff = { base_ms = 50, max_ms = 400, multiplier = 2, jitter = "none", reset_after_ms = 200 },
      redis = redis_cfg(), on_health = record(name),
    }
    return started(c)
  end
  local function consumer(mode)
    local r = redis_cfg()
    r.lease_ms = nil
    local c = notify.consumer {
      redis = r, mode = mode, group = mode == "group" and "g" or nil, block_ms = 100,
      on_event = function(ev) log.events[#log.events + 1] = { mode = mode, fence = ev.fence } end,
      on_health = record(mode),
    }
    return started(c)
  end
  local function count(mode)
    local n = 0
    for _, e in ipairs(log.events) do if e.mode == mode then n = n + 1 end end
    return n
  end

  setup(function()
    emu = emulator.start { tls = true, args = { "--event-rate", "20" } }
    local auth = { "-a", PASS }
    m = redis.start { args = { "--requirepass", PASS, "--masterauth", PASS }, auth = auth }
    rep = redis.start { args = { "--requirepass", PASS, "--masterauth", PASS, "--replicaof",
      "127.0.0.1", tostring(m.port) }, auth = auth }
    assert(emulator.wait_until(function()
      return rep:cli("INFO", "replication"):find("master_link_status:up", 1, true)
    end, 10))
    sen = redis.sentinel { master = m, name = NAME, auth = { "-a", SENTINEL_PASS },
      lines = { "sentinel auth-pass " .. NAME .. " " .. PASS, "requirepass " .. SENTINEL_PASS } }
    assert(emulator.wait_until(function()
      return sen:cli("SENTINEL", "replicas", NAME):find(tostring(rep.port), 1, true)
    end, 15), "the sentinel did not find the replica")
  end)

  teardown(function()
    if os.getenv("GN_SENTINEL_LOG") then -- every health item, to a file
      local f = io.open(os.getenv("GN_SENTINEL_LOG"), "w")
      f:write(dump(1), "\n")
      f:close()
    end
    for _, o in ipairs(objs) do o:close() end
    if emu then emu:stop() end
    redis.stop_all()
  end)

  it("finds the master through the sentinels and follows a forced failover", function()
    local a = holder("a")
    consumer("fanout")
    consumer("group")
    poll_until(function() return count("fanout") >= 3 and count("group") >= 3 end, 15000,
      "events through the master the sentinel named")
    assert.equals("holder", a:metrics().lease.state)
    assert.equals(m.port, master_port())

    local failover_at = #log.health + 1
    assert.matches("OK", sen:cli("SENTINEL", "FAILOVER", NAME))
    poll_until(function() return master_port() == rep.port and role(rep) == "master" and
      role(m) == "slave" end, 20000, "the failover")
    local f, g = count("fanout"), count("group")
    poll_until(function() return count("fanout") >= f + 5 and count("group") >= g + 5 end, 20000,
      "events through the new master")
    assert.equals("holder", a:metrics().lease.state)
    assert.is_true(tonumber(rep:cli("XLEN", KEY .. ":stream"):match("%d+")) > 0)
    -- the sentinels said so (+switch-master) long before the old master was demoted
    local down
    for i = failover_at, #log.health do
      local h = log.health[i]
      if h.who == "a" and h.kind == "redis" and h.event == "down" then down = down or h end
    end
    assert.truthy(down, "the holder did not report the failover's disconnection")
    assert.matches("+switch-master", down.error, 1, true)
  end)

  it("a tenure that did not reach a replica appends nothing; fences only grow for consumers", function()
    -- the replica (now the old master, m) stopped: no acquisition can reach it
    local b = holder("b")
    local a = objs[1]
    local replica_fence = tonumber(rep:cli("GET", KEY .. ":fence"):match("%d+"))
    m:signal("STOP")
    -- what a failover that lost the last renewal leaves: no lease key at the master
    rep:cli("DEL", KEY .. ":lease")
    local reason
    local first = #log.health + 1
    poll_until(function()
      for i = first, #log.health do
        local h = log.health[i]
        if h.kind == "lease" and h.event == "stepped_down" and tostring(h.reason):find("WAIT") then
          reason = h.reason
        end
      end
      return reason
    end, 20000, "a step-down for want of a replica")
    local unreplicated = tonumber(rep:cli("GET", KEY .. ":fence"):match("%d+"))
    assert.is_true(unreplicated > replica_fence, unreplicated .. " " .. replica_fence .. " " .. reason)
    m:signal("CONT")
    local before = #log.events
    poll_until(function()
      return #log.events >= before + 5 and (a:metrics().lease.state == "holder" or
        b:metrics().lease.state == "holder")
    end, 20000, "a holder again once the replica is back")
    -- nothing appended under a fence the replica never had
    local stream = rep:cli("XRANGE", KEY .. ":stream", "-", "+")
    local fences = 0
    for fence in stream:gmatch("\nfence\n(%d+)\n") do
      fences = fences + 1
      fence = tonumber(fence)
      assert.is_false(fence > replica_fence and fence <= unreplicated,
        "an event appended under a fence no replica had: " .. fence)
    end
    assert.is_true(fences > 0)
    -- each consumer delivered events in fence order (an older fence after a newer: stale)
    for _, mode in ipairs { "fanout", "group" } do
      local hi = 0
      for _, e in ipairs(log.events) do
        if e.mode == mode then
          assert.is_true(e.fence >= hi, mode .. ": fence " .. e.fence .. " after " .. hi)
          hi = e.fence
        end
      end
    end
    for _, h in ipairs(log.health) do
      for _, v in pairs(h) do
        assert.falsy(tostring(v):find(PASS, 1, true), "a password in a health item")
        assert.falsy(tostring(v):find(SENTINEL_PASS, 1, true), "a password in a health item")
      end
    end
  end)
end)
