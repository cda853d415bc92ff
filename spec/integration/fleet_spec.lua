-- A fleet (README, "Running a fleet"): three candidate processes share one credential through a
-- Redis lease (a real redis-server on a free port), the emulator over TLS, consumers of the
-- fleet's stream as processes of their own in both modes. Holder crashes (kill -9), pauses
-- (SIGSTOP longer than the lease), a Redis restart, a group consumer killed mid-batch, and no
-- secret in Redis or in any output.
local emulator = require "support.emulator"
local redis = require "support.redis"

local fleet = require "support.fleet"
local delivery = require "support.delivery"

local SLOW = fleet.SLOW
local LEASE_MS = 1000 * SLOW
local BACKOFF_MAX_MS = LEASE_MS / 2 -- the candidates' retry delay cap (lease.c)
local TOPIC = "v2.users.fleet.presence"
local KEY = "gn:fleet"

local shq, read_file, now_ms, wait_for, expect = fleet.shq, fleet.read_file, fleet.now_ms,
  fleet.wait_for, fleet.expect
local spawn = fleet.spawn
local nodes = fleet.nodes

describe("a fleet behind a Redis lease", function()
  local r, emu, holders, fan, grp, stream
  local function holder_env()
    return { FLEET_EMU_PORT = string.format("%d", emu.port), FLEET_CA = emu.ca_file,
      FLEET_TOPIC = TOPIC, FLEET_REDIS = r.url, FLEET_KEY = KEY,
      FLEET_LEASE_MS = string.format("%d", LEASE_MS) }
  end
  local function consumer_env(extra)
    local e = { FLEET_REDIS = r.url, FLEET_KEY = KEY }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end
  local function holding()
    local list = {}
    for _, h in ipairs(holders) do
      if not h.done and h:lease() == "holder" then list[#list + 1] = h end
    end
    return list
  end

  setup(function()
    r = redis.start()
    emu = emulator.start { tls = true }
    fan = { spawn("fanout", consumer_env()), spawn("fanout", consumer_env()) }
    grp = { spawn("group", consumer_env { FLEET_GROUP = "g", FLEET_CONSUMER = "c1" }),
            spawn("group", consumer_env { FLEET_GROUP = "g", FLEET_CONSUMER = "c2" }) }
    for _, c in ipairs(fan) do
      assert(wait_for(function() return c:out():find("S started") end, 10000))
    end
    for _, c in ipairs(grp) do
      assert(wait_for(function() return c:out():find("S started") end, 10000))
    end
    emulator.sleep(0.3) -- the consumers' first reads are out ("$": from the stream's end)
    holders = { spawn("holder", holder_env()), spawn("holder", holder_env()), spawn("holder", holder_env()) }
    -- the publisher's record: 20 events/s from the first open stream on, through every test
    expect(function()
      for _, h in ipairs(holders) do
        local st, _, cst = h:lease()
        if st == "holder" and cst == "open" then return true end
      end
    end, 10000, "a holder with an open stream")
    stream = delivery.publish(emu, TOPIC, 20 * 600, 20)
  end)

  teardown(function()
    for _, n in ipairs(nodes) do n:stop() end
    for _, n in ipairs(nodes) do
      assert.not_matches("Sanitizer", n:err())
      assert.not_matches("runtime error", n:err())
    end
    if emu then emu:stop() end
    if r then r:stop() end
    for _, n in ipairs(nodes) do os.execute("rm -rf " .. shq(n.dir)) end
  end)

  it("one holder at a time: one connection at the emulator; events reach consumers in both modes", function()
    expect(function() return #holding() == 1 and emu:stats().global.open_connections == 1 end, 10000,
      "one holder and one connection")
    local samples, ones = 0, 0
    local deadline = now_ms() + 2500
    while now_ms() < deadline do
      local open = emu:stats().global.open_connections
      assert.is_true(open <= 1, "two channels open at once: " .. tostring(open))
      assert.is_true(#holding() <= 1)
      samples = samples + 1
      if open == 1 then ones = ones + 1 end
      emulator.sleep(0.05)
    end
    assert.is_true(ones >= samples - 1)
    -- every fanout consumer sees the stream; the group shares it, each entry handled once
    local h = holding()[1]
    local _, fence = h:lease()
    for _, c in ipairs(fan) do
      assert.truthy(wait_for(function() return #c:events() >= 20 end, 5000))
      assert.equals(fence, c:events()[1].fence)
    end
    local seen, total = {}, 0
    assert.truthy(wait_for(function() return #grp[1]:events() > 0 and #grp[2]:events() > 0 end, 5000))
    for _, c in ipairs(grp) do
      for _, e in ipairs(c:events()) do
        assert.is_nil(seen[e.id], "entry " .. e.id .. " handled twice in the group")
        seen[e.id] = true
        total = total + 1
      end
    end
    -- everything a fanout consumer saw reached the group too
    local missing = wait_for(function()
      local m = 0
      local g = {}
      for _, c in ipairs(grp) do for _, e in ipairs(c:events()) do g[e.id] = true end end
      for _, e in ipairs(fan[1]:events()) do if not g[e.id] then m = m + 1 end end
      return m == 0 and m or nil
    end, 3000)
    assert.equals(0, missing)
  end)

  it("kill -9 of the holder: another holds within lease_ms + one backoff delay, events flow, " ..
     "every consumer gets the gap", function()
    local h = holding()[1]
    local _, old_fence = h:lease()
    local killed_at = now_ms()
    h:kill9()
    local new
    assert.truthy(wait_for(function()
      new = holding()[1]
      return new and select(2, new:lease()) > old_fence
    end, 10000))
    local took = now_ms() - killed_at
    print(string.format("\n  takeover after kill -9: %d ms (lease %d ms)", took, LEASE_MS))
    assert.is_true(took <= LEASE_MS + BACKOFF_MAX_MS + 300 * SLOW, "takeover took " .. took .. " ms")
    local _, new_fence = new:lease()
    for _, c in ipairs(fan) do
      assert.truthy(wait_for(function() return c:out():find("H restored .*fence=" .. new_fence) end, 5000),
        "no gap marker at a fanout consumer")
      assert.truthy(wait_for(function()
        local ev = c:events()
        return #ev > 0 and ev[#ev].fence >= new_fence
      end, 5000))
    end
    for _, c in ipairs(grp) do
      assert.truthy(wait_for(function() return c:out():find("H restored .*fence=" .. new_fence) end, 5000),
        "no gap marker at a group consumer")
      assert.equals(1, c:count("H restored [^\n]*fence=" .. new_fence))
    end
  end)

  it("SIGSTOP longer than the lease: the paused holder steps down without delivering; " ..
     "stale appends are dropped", function()
    local h = holding()[1]
    local _, old_fence = h:lease()
    local stopped_at = now_ms()
    h:signal("STOP")
    local new = wait_for(function()
      for _, x in ipairs(holders) do
        local st, f = x:lease()
        if x ~= h and not x.done and st == "holder" and f > old_fence then return x end
      end
    end, 10000)
    assert.truthy(new)
    emulator.sleep(LEASE_MS / 1000)
    h:signal("CONT")
    assert.truthy(wait_for(function() return h:out():find("H lease .*event=stepped_down") or
      h:out():find("H lease .*event=lost") end, 5000))
    assert.truthy(wait_for(function() return h:lease() == "candidate" end, 5000))
    -- it delivered nothing after the resume: whatever it held back was counted, not delivered
    -- (events it received before the pause may still reach its own on_event: it held the lease)
    local late = 0
    for ms in h:out():gmatch("\nL (%d+)") do
      if tonumber(ms) > stopped_at + 100 then late = late + 1 end
    end
    assert.equals(0, late, "the paused holder delivered events it received after its resume")
    -- a late append carrying its old fence (what a paused holder's write would look like)
    r:cli("XADD", KEY .. ":stream", "*", "type", "event", "topic", TOPIC, "channel_id", "x",
      "received_ms", "0", "correlation_id", "late-append", "fence", tostring(old_fence), "raw", "{}")
    for _, c in ipairs(fan) do
      assert.truthy(wait_for(function() return c:out():find("H stale .*fence=" .. old_fence) end, 5000))
      assert.is_nil(c:out():find("E late%-append"))
    end
    -- a group member, which sees entries out of order, drops it too: a newer fence took the
    -- stream at an earlier position (the takeover marker's stream_id)
    expect(function()
      for _, c in ipairs(grp) do
        if c:out():find("H stale [^\n]*fence=" .. old_fence) then return true end
      end
    end, 5000, "no group member dropped the late append as stale")
    for _, c in ipairs(grp) do assert.is_nil(c:out():find("E late%-append")) end
    for _, x in ipairs(fan) do
      local newest = 0
      for _, e in ipairs(x:events()) do
        assert.is_true(e.fence >= newest, "an older fence delivered after a newer one")
        newest = e.fence
      end
    end
  end)

  it("Redis down longer than the lease: the holder steps down, candidates retry without spinning, " ..
     "the stream comes back", function()
    assert.truthy(wait_for(function() return #holding() == 1 end, 5000))
    local h = holding()[1]
    local function cpu_ticks(n)
      local s = read_file("/proc/" .. n.pid .. "/stat"):match("%) (.*)") or ""
      local f = {}
      for x in s:gmatch("%S+") do f[#f + 1] = x end
      return (tonumber(f[12]) or 0) + (tonumber(f[13]) or 0)
    end
    local before = {}
    for _, x in ipairs(holders) do if not x.done then before[x] = cpu_ticks(x) end end
    r:stop(true)
    local down_at = now_ms()
    assert.truthy(wait_for(function() return h:lease() == "candidate" end, 5000))
    assert.truthy(h:out():find("H lease .*event=stepped_down"))
    assert.truthy(wait_for(function() return emu:stats().global.open_connections == 0 end, 5000))
    emulator.sleep(1.5 * LEASE_MS / 1000)
    local elapsed_ticks = (now_ms() - down_at) / 10
    for x, t in pairs(before) do
      local used = cpu_ticks(x) - t
      assert.is_true(used < elapsed_ticks * 0.5 * SLOW,
        "a candidate used " .. used .. " ticks in " .. elapsed_ticks)
    end
    r:restart()
    expect(function() return #holding() == 1 and emu:stats().global.open_connections == 1 end, 10000,
      "one holder after redis came back")
    local _, fence = holding()[1]:lease()
    for _, c in ipairs(fan) do
      assert.truthy(wait_for(function()
        local ev = c:events()
        return #ev > 0 and ev[#ev].fence >= fence
      end, 8000), "no events at a fanout consumer after redis came back")
    end
    assert.truthy(wait_for(function()
      for _, c in ipairs(grp) do
        local ev = c:events()
        if #ev > 0 and ev[#ev].fence >= fence then return true end
      end
    end, 8000), "no events in the group after redis came back")
  end)

  it("Redis stopped (no answers) longer than the lease: the holder steps down, all recover after", function()
    expect(function() return #holding() == 1 end, 5000, "one holder before the stop")
    local h = holding()[1]
    local stepped = h:count("H lease [^\n]*event=stepped_down")
    r:signal("STOP")
    finally(function() r:signal("CONT") end)
    expect(function() return h:lease() == "candidate" end, 5000, "the holder did not step down")
    assert.equals(stepped + 1, h:count("H lease [^\n]*event=stepped_down"))
    assert.truthy(wait_for(function() return emu:stats().global.open_connections == 0 end, 5000))
    emulator.sleep(LEASE_MS / 1000)
    assert.equals(0, #holding())
    r:signal("CONT")
    expect(function() return #holding() == 1 and emu:stats().global.open_connections == 1 end, 10000,
      "one holder after redis answered again")
    local _, fence = holding()[1]:lease()
    for _, c in ipairs(fan) do
      expect(function()
        local ev = c:events()
        return #ev > 0 and ev[#ev].fence >= fence
      end, 8000, "no events at a fanout consumer after redis answered again")
    end
  end)

  it("the promise through all of the above (the publisher's record): every event reached every " ..
     "consumer or lies inside a marker it got", function()
    expect(function() return #holding() == 1 and select(3, holding()[1]:lease()) == "open" end, 10000,
      "one open holder")
    local _, st = emu:admin("GET", ("publish/%d/times"):format(stream))
    local times, n = st.times, #st.times
    local function got(c, seq)
      for _, e in ipairs(c:events()) do if e.stream == stream and e.seq >= seq then return true end end
    end
    expect(function()
      return got(fan[1], n) and got(fan[2], n) and (got(grp[1], n) or got(grp[2], n))
    end, 10000, "the consumers caught up")
    emulator.sleep(0.3)
    for k = #times, n + 1, -1 do times[k] = nil end
    local lost = fleet.check_promise(times, stream, fan, grp)
    print(("\n  %d events so far, %d lost inside markers (summed over consumers)"):format(n, lost))
  end)

  it("a group consumer killed mid-batch: its pending entries are claimed and handled by another", function()
    local slow = spawn("group", consumer_env { FLEET_GROUP = "g2", FLEET_CONSUMER = "slow",
      FLEET_SLOW_MS = "400", FLEET_COUNT = "10" })
    assert.truthy(wait_for(function() return slow:out():find("S started") and #slow:events() >= 2 end, 10000))
    slow:kill9()
    local pending = {}
    for id in r:cli("XPENDING", KEY .. ":stream", "g2", "-", "+", "1000", "slow"):gmatch("(%d+%-%d+)\n") do
      pending[#pending + 1] = id
    end
    assert.is_true(#pending > 0, "nothing was pending at the kill")
    local other = spawn("group", consumer_env { FLEET_GROUP = "g2", FLEET_CONSUMER = "other",
      FLEET_CLAIM_MS = "500" })
    assert.truthy(wait_for(function()
      local got = {}
      for _, e in ipairs(other:events()) do got[e.id] = true end
      for _, id in ipairs(pending) do if not got[id] then return nil end end
      return true
    end, 8000), "the dead consumer's pending entries were not handled by another")
  end)

  it("a group event whose handler raised is not acknowledged: it is claimed and handled again", function()
    local c = spawn("group", consumer_env { FLEET_GROUP = "g3", FLEET_CONSUMER = "once",
      FLEET_RAISE_ONCE = "1", FLEET_CLAIM_MS = "300" })
    local id = wait_for(function() return c:out():match("\nR (%S+)\n") end, 10000)
    assert.truthy(id, "no event reached the handler")
    assert.truthy(wait_for(function() return c:out():find("E %S+ %d+ " .. id:gsub("%-", "%%-")) end, 8000),
      "the failed event was not handled again")
    assert.truthy(c:out():find("H callback_error", 1, true))
    c:stop()
  end)

  it("a holder that closes lets go of the lease at once", function()
    assert.truthy(wait_for(function() return #holding() == 1 end, 5000))
    local h = holding()[1]
    local value = r:cli("GET", KEY .. ":lease")
    assert.truthy(value:find(":" .. h.pid .. ":", 1, true), value)
    h:stop()
    assert.equals("0\n", read_file(h.dir .. "/rc"))
    -- gone or someone else's already, well before it could have expired (lease_ms)
    local now = r:cli("GET", KEY .. ":lease")
    assert.is_nil(now:find(":" .. h.pid .. ":", 1, true), "the closed holder still holds the lease")
    expect(function() return #holding() == 1 end, 5000, "a new holder after the close")
  end)

  it("metrics (and Prometheus) show the lease state and the fencing token", function()
    local notify = require "genesys.notify"
    local wait = require "support.wait"
    local made = {}
    local function member(name)
      local c, rec = wait.start_client(emu, { name = name, topics = { TOPIC },
        redis = { url = r.url, key = "gn:solo", lease_ms = LEASE_MS } })
      made[#made + 1] = c
      return c, rec
    end
    local a, arec = member("a")
    assert.truthy(wait.until_(a, function() return arec.count("connected") > 0 end, 10000))
    local b = member("b")
    wait.for_ms({ a, b }, 300)
    local ma, mb = a:metrics(), b:metrics()
    assert.equals("holder", ma.lease.state)
    assert.equals("open", ma.state)
    assert.equals("candidate", mb.lease.state)
    assert.equals("standby", b:state())
    assert.equals(tonumber(r:cli("GET", "gn:solo:fence")), ma.lease.fence)
    assert.equals(1, arec.count("lease"))
    assert.equals("acquired", arec.last("lease").event)
    local text = notify.prometheus { a, b }
    assert.truthy(text:find('genesys_notify_lease_holder{client="a"} 1\n', 1, true), text)
    assert.truthy(text:find('genesys_notify_lease_holder{client="b"} 0\n', 1, true), text)
    local fence_line = string.format('genesys_notify_lease_fence{client="a"} %d\n', ma.lease.fence)
    assert.truthy(text:find(fence_line, 1, true))
    assert.truthy(text:find('# TYPE genesys_notify_lease_appended_total counter', 1, true))
    for _, c in ipairs(made) do c:close() end
  end)

  it("no credential or token in Redis or in any output", function()
    local dump = {}
    for key in r:cli("KEYS", "*"):gmatch("[^\n]+") do
      local t = r:cli("TYPE", key):gsub("%s", "")
      dump[#dump + 1] = key
      if t == "string" then dump[#dump + 1] = r:cli("GET", key)
      elseif t == "stream" then dump[#dump + 1] = r:cli("XRANGE", key, "-", "+") end
    end
    local text = table.concat(dump, "\n")
    assert.truthy(text:find("type"), "the dump is empty")
    local outputs = {}
    for _, n in ipairs(nodes) do outputs[#outputs + 1] = n:out() .. n:err() end
    local all = text .. table.concat(outputs, "\n")
    for _, secret in ipairs { "test-secret", emulator.basic("test-id:test-secret"), "Bearer",
                              "access_token" } do
      assert.is_nil(all:find(secret, 1, true), "found " .. secret)
    end
    -- the emulator's access tokens are 32 random hex digits: no such run anywhere
    assert.truthy(emu:token():find("^" .. string.rep("%x", 32)), "the emulator's tokens changed form")
    local run = all:match(string.rep("%x", 32))
    assert.is_nil(run, "a token-like value: " .. tostring(run))
  end)
end)

describe("a fleet whose holder needs a pool of channels", function()
  local r, emu, a, b
  local function env()
    return { FLEET_EMU_PORT = string.format("%d", emu.port), FLEET_CA = emu.ca_file,
      FLEET_TOPIC = TOPIC, FLEET_REDIS = r.url, FLEET_KEY = KEY .. ":pool",
      FLEET_LEASE_MS = string.format("%d", LEASE_MS), FLEET_TOPICS_N = "1500" }
  end
  local function open_conns() return emu:stats().global.open_connections end
  -- the emulator keeps n connections (and never more) for ms milliseconds
  local function holds(n, ms)
    local deadline = now_ms() + ms
    while now_ms() < deadline do
      local open = open_conns()
      assert.equals(n, open, "connections at the emulator")
      emulator.sleep(0.05)
    end
  end

  setup(function()
    r = redis.start()
    emu = emulator.start { tls = true }
    a = spawn("holder", env())
    b = spawn("holder", env())
  end)

  teardown(function()
    fleet.stop_all()
    fleet.clean_stderr()
    if emu then emu:stop() end
    if r then r:stop() end
    fleet.cleanup()
  end)

  it("1,500 topics: two channels at the holder, none at the candidate; a paused holder parks both", function()
    local holder, other
    expect(function()
      if a:lease() == "holder" then holder, other = a, b
      elseif b:lease() == "holder" then holder, other = b, a end
      return holder and open_conns() == 2 and select(3, holder:lease()) == "open"
    end, 15000, "one holder with two open channels")
    assert.equals("standby", select(3, other:lease()))
    holds(2, 1000)
    -- paused past the lease: the other takes over with its own two channels
    local _, old_fence = holder:lease()
    holder:signal("STOP")
    expect(function()
      local st, fence, cst = other:lease()
      return st == "holder" and fence > old_fence and cst == "open"
    end, 15000, "the candidate took over")
    holder:signal("CONT")
    -- the old holder finds it lost the lease and parks every channel of its pool
    expect(function()
      local st, _, cst = holder:lease()
      return st ~= "holder" and cst == "standby" and open_conns() == 2
    end, 10000, "the paused holder parked its pool")
    holds(2, 1000)
  end)

  it("a fresh holder takes over: events of its second channel's topics reach a consumer or lie " ..
     "inside a marker", function()
    local fan = spawn("fanout", { FLEET_REDIS = r.url, FLEET_KEY = KEY .. ":pool" })
    assert(fan:started())
    emulator.sleep(0.3) -- its first read is out ("$")
    local holder = expect(function()
      for _, n in ipairs { a, b } do
        local st, _, cst = n:lease()
        if st == "holder" and cst == "open" then return n end
      end
    end, 15000, "an open holder")
    local other = holder == a and b or a
    local fresh = spawn("holder", env()) -- never held: its channels open for the first time
    expect(function() return fresh:lease() == "candidate" end, 15000, "the fresh candidate")
    local topic = "v2.users.fleet-1500.presence" -- in the second channel (the first has 1,000)
    local stream = delivery.publish(emu, topic, 150 * SLOW, 25)
    local function got(seq)
      for _, e in ipairs(fan:events()) do if e.stream == stream and e.seq == seq then return true end end
    end
    expect(function() return got(10) end, 10000, "events before the takeover")
    other:signal("STOP") -- the fresh candidate takes over
    holder:kill9()
    expect(function()
      local st, _, cst = fresh:lease()
      return st == "holder" and cst == "open"
    end, 15000, "the fresh holder streams")
    other:signal("CONT")
    expect(function()
      local _, st = emu:admin("GET", ("publish/%d"):format(stream))
      return st.done and got(150 * SLOW)
    end, 30000, "the last event reached the consumer")
    local _, st = emu:admin("GET", ("publish/%d/times"):format(stream))
    local lost = fleet.check_promise(st.times, stream, { fan }, nil)
    print(("\n  %d events, %d lost inside markers"):format(#st.times, lost))
  end)
end)

describe("a fleet holder's resync", function()
  local r, emu, holder, second, fan
  local key = KEY .. ":resync"
  local function holder_env()
    return { FLEET_EMU_PORT = string.format("%d", emu.port), FLEET_CA = emu.ca_file,
      FLEET_TOPIC = TOPIC, FLEET_REDIS = r.url, FLEET_KEY = key,
      FLEET_LEASE_MS = string.format("%d", LEASE_MS), FLEET_RESYNC = "presence" }
  end
  setup(function()
    r = redis.start()
    emu = emulator.start { tls = true }
    emu:admin("POST", "users/fleet", { presence = "Available" })
    -- two fanout consumers and a group member
    fan = { spawn("fanout", { FLEET_REDIS = r.url, FLEET_KEY = key }),
            spawn("fanout", { FLEET_REDIS = r.url, FLEET_KEY = key }),
            spawn("group", { FLEET_REDIS = r.url, FLEET_KEY = key, FLEET_GROUP = "g",
              FLEET_CONSUMER = "c1" }) }
    for _, c in ipairs(fan) do
      assert(wait_for(function() return c:out():find("S started") end, 10000))
    end
    emulator.sleep(0.3)
    holder = spawn("holder", holder_env())
  end)
  teardown(function()
    for _, n in ipairs { holder, second, fan and fan[1], fan and fan[2], fan and fan[3] } do
      if n then
        n:stop()
        assert.not_matches("Sanitizer", n:err())
        assert.not_matches("runtime error", n:err())
      end
    end
    if emu then emu:stop() end
    if r then r:stop() end
  end)

  it("reaches every consumer through the stream, like events", function()
    expect(function() return holder:lease() == "holder" and holder:out():find("H connected") end,
      10000, "the holder connected")
    -- refused long enough that the change below is made while the holder is deaf
    emu:admin("POST", "faults/handshake", { mode = "refuse", ms = 2000 })
    emu:admin("POST", "channels/*/reset", {})
    expect(function() return holder:out():find("H disconnected") end, 10000, "the gap")
    emu:admin("POST", "users/fleet", { presence = "Busy" })
    for _, c in ipairs(fan) do
      expect(function() return c:out():find("Y " .. TOPIC .. " Busy presence", 1, true) end, 20000,
        "the resync item at a consumer")
    end
  end)

  it("a takeover's gap is healed for every consumer: the new holder's resync items (ev.resync) " ..
     "carry the value set during the takeover", function()
    second = spawn("holder", holder_env()) -- never held: no channel of its own to restore
    expect(function() return second:lease() == "candidate" end, 15000, "a second candidate")
    local _, old_fence = holder:lease()
    holder:signal("STOP")
    finally(function() holder:signal("CONT") end)
    emu:admin("POST", "users/fleet", { presence = "Meeting" }) -- no one listens for it
    expect(function()
      local st, fence, cst = second:lease()
      return st == "holder" and fence > old_fence and cst == "open"
    end, 15000, "the second candidate took over")
    for _, c in ipairs(fan) do
      local line = expect(function()
        return c:out():match("Y " .. TOPIC:gsub("%.", "%%.") .. " Meeting presence (%d+) (%d+)")
      end, 20000, "the takeover's resync item at a consumer")
      assert.truthy(line)
    end
    -- the items heal the takeover marker's interval (the consumers' "restored" with takeover)
    local from, to = fan[1]:out():match("Y " .. TOPIC:gsub("%.", "%%.") .. " Meeting presence (%d+) (%d+)")
    assert.is_true(tonumber(to) > tonumber(from))
  end)
end)
