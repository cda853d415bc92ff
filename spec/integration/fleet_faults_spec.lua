-- The fleet's promise whatever Redis does (issue 22): a publish stream of the emulator runs
-- through each fault, and every event it generated reaches every fanout consumer and at least
-- one group member, or lies inside a marker that consumer got. Faults: a Redis stall longer than
-- the lease (DEBUG SLEEP), a Redis restarted without persistence, maxmemory reached, FLUSHALL, a
-- holder whose socket went silent and that died before it noticed (within idle_ms +
-- ping_timeout_ms), a group handler that raised, claimed again after a takeover. And a memory
-- policy that could evict the lease is refused.
local emulator = require "support.emulator"
local redis = require "support.redis"
local delivery = require "support.delivery"
local fleet = require "support.fleet"

local SLOW = fleet.SLOW
local LEASE_MS = 1000 * SLOW
local RATE = 25
local TOPIC = "v2.users.fleetfaults.presence"
local KEY = "gn:faults"
local wait_for, expect = fleet.wait_for, fleet.expect

describe("the fleet's promise through Redis faults", function()
  local r, emu, holders, fan, grp
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
  local function open_holder()
    return wait_for(function()
      for _, h in ipairs(holders) do
        if not h.done then
          local st, _, cst = h:lease()
          if st == "holder" and cst == "open" then return h end
        end
      end
    end, 15000)
  end
  local function got(n, stream, seq)
    for _, e in ipairs(n:events()) do if e.stream == stream and e.seq == seq then return true end end
  end

  -- Publishes count events at RATE/s, runs fault() once the consumers got a few, waits until
  -- the stream ended with a holder open and the last event reached everyone, checks the promise.
  local function through(fault, count, rate)
    count = count * SLOW
    expect(open_holder, 15000, "a holder with an open stream before the fault")
    local stream = delivery.publish(emu, TOPIC, count, rate or RATE)
    expect(function() return got(fan[1], stream, 10) end, 10000, "events before the fault")
    fault()
    expect(function()
      local _, st = emu:admin("GET", ("publish/%d"):format(stream))
      return st.done
    end, 60000, "the publish stream ended")
    expect(function()
      if not (got(fan[1], stream, count) and got(fan[2], stream, count)) then return false end
      for _, m in ipairs(grp) do if got(m, stream, count) then return true end end
    end, 20000, "the last event reached every consumer (a holder was open at the end)")
    emulator.sleep(0.3) -- the group's other member: its last read
    local _, st = emu:admin("GET", ("publish/%d/times"):format(stream))
    local lost = fleet.check_promise(st.times, stream, fan, grp)
    print(("\n  %d events, %d lost inside markers (summed over consumers)"):format(count, lost))
    return stream, lost
  end

  setup(function()
    r = redis.start()
    emu = emulator.start { tls = true }
    fan = { fleet.spawn("fanout", consumer_env()), fleet.spawn("fanout", consumer_env()) }
    grp = { fleet.spawn("group", consumer_env { FLEET_GROUP = "g", FLEET_CONSUMER = "c1" }),
            fleet.spawn("group", consumer_env { FLEET_GROUP = "g", FLEET_CONSUMER = "c2" }) }
    for _, c in ipairs(fan) do assert(c:started()) end
    for _, c in ipairs(grp) do assert(c:started()) end
    emulator.sleep(0.3) -- the consumers' first reads are out ("$": from the stream's end)
    holders = { fleet.spawn("holder", holder_env()), fleet.spawn("holder", holder_env()) }
  end)

  teardown(function()
    fleet.stop_all()
    fleet.clean_stderr()
    if emu then emu:stop() end
    if r then r:stop() end
    fleet.cleanup()
  end)

  it("a Redis stall longer than the lease (DEBUG SLEEP): the hole is a marker from received times", function()
    local _, lost = through(function()
      r:cli("DEBUG", "SLEEP", string.format("%.1f", 2.5 * LEASE_MS / 1000)) -- returns after it
    end, 250)
    assert.is_true(lost > 0, "the stall lost nothing: it did not test anything")
    print("  " .. (fan[1]:out():match("H restored [^\n]*reason=takeover[^\n]*") or "(no takeover marker)"))
  end)

  it("a takeover's marker ends no earlier than the successor's stream opened (an event every ms " ..
      "beside its edges)", function()
    -- the edges in whole ms: the end once came from the stream's age in whole ms, up to 1.5 ms
    -- early, and an event sent just before the open, lost, then lay outside every marker
    local _, lost = through(function()
      r:cli("DEBUG", "SLEEP", string.format("%.1f", 2.5 * LEASE_MS / 1000))
    end, 6000, 1000)
    assert.is_true(lost > 0, "the stall lost nothing: it did not test anything")
  end)

  it("Redis restarted without persistence: consumers get a marker for what was lost", function()
    through(function() r:restart(0.5 * LEASE_MS / 1000) end, 200)
  end)

  it("maxmemory reached: failed appends are followed by a marker covering them", function()
    through(function()
      r:cli("CONFIG", "SET", "maxmemory", "1")
      emulator.sleep(1.5 * LEASE_MS / 1000)
      r:cli("CONFIG", "SET", "maxmemory", "0")
    end, 200)
  end)

  it("the holder's link cut with its last appends unanswered, no event after them: their " ..
      "marker comes anyway", function()
    -- what a burst did in nginx (issue 22): appends queued behind each other, the link dropped
    -- with them out, and the publish over, so no later append carried the hole's marker
    expect(open_holder, 15000, "a holder with an open stream before the fault")
    local before = #fan[1]:markers()
    r:cli("CLIENT", "PAUSE", string.format("%d", math.floor(0.5 * LEASE_MS)), "WRITE")
    local stream = delivery.publish(emu, TOPIC, 20, 400)
    expect(function()
      local _, st = emu:admin("GET", ("publish/%d"):format(stream))
      return st.done
    end, 10000, "the publish stream ended")
    emulator.sleep(0.1) -- received by the holder, its appends held by the pause
    r:cli("CLIENT", "KILL", "TYPE", "normal")
    r:cli("CLIENT", "UNPAUSE")
    expect(function() return #fan[1]:markers() > before and #fan[2]:markers() > before end,
      10000, "a marker for the appends that were lost with the link")
    local _, st = emu:admin("GET", ("publish/%d/times"):format(stream))
    local lost = fleet.check_promise(st.times, stream, fan, grp)
    assert.is_true(lost > 0, "the cut lost nothing: it did not test anything")
  end)

  it("FLUSHALL: the lost data's hole is a marker, group members drop nothing as stale", function()
    local stale = {}
    for i, m in ipairs(grp) do stale[i] = m:count("H stale ") end
    through(function() r:cli("FLUSHALL") end, 200)
    for i, m in ipairs(grp) do assert.equals(stale[i], m:count("H stale "), "stale drops in the group") end
  end)

  it("the holder's own socket reset: its deaf interval reaches every consumer as a marker", function()
    through(function()
      local code = emu:admin("POST", "channels/*/reset", {})
      assert.equals(200, code)
    end, 150)
  end)

  it("a holder whose socket went silent dies before it notices: the silence lies inside a marker", function()
    -- a half-open link: no FIN, no data (the emulator writes nothing, heartbeats included); the
    -- holder renews its lease all along and is killed long before idle_ms + ping_timeout_ms
    local _, lost = through(function()
      local h = open_holder()
      assert.equals(200, (emu:admin("POST", "channels/*/stall", { ms = 600000 })))
      emulator.sleep(2.5 * LEASE_MS / 1000)
      h:kill9()
      holders[#holders + 1] = fleet.spawn("holder", holder_env()) -- the spare for the next tests
    end, 150)
    assert.is_true(lost > 0, "the silence lost nothing: it did not test anything")
    local last
    for m in fan[1]:out():gmatch("H restored [^\n]*reason=takeover[^\n]*") do last = m end
    print("  " .. (last or "(no takeover marker)"))
  end)

  it("a holder hands the lease over to a successor (make-before-break): no marker, every event once",
    function()
    local h = expect(open_holder, 15000, "a holder")
    local env = holder_env()
    env.FLEET_SUCCESSOR = "1"
    local succ = fleet.spawn("holder", env)
    holders[#holders + 1] = succ
    expect(function() return succ:out():find("H connected", 1, true) and succ:value() end, 15000,
      "the successor's stream open while it does not hold the lease")
    assert.equals("candidate", (succ:lease()))
    local before = {}
    for i, n in ipairs(fan) do before[i] = #n:markers() end
    local count = 100 * SLOW
    local stream = delivery.publish(emu, TOPIC, count, RATE)
    expect(function() return got(fan[1], stream, 20) end, 10000, "events before the handover")
    local _, fence = h:lease()
    h:handover(succ)
    expect(function()
      local st, f = succ:lease()
      return st == "holder" and f > fence
    end, 10000, "the successor holds the lease")
    assert.truthy(h:out():find("H lease event=handed_over", 1, true), h:out():sub(-1500))
    expect(function()
      local _, st = emu:admin("GET", ("publish/%d"):format(stream))
      return st.done
    end, 60000, "the publish stream ended")
    expect(function()
      return got(fan[1], stream, count) and got(fan[2], stream, count)
    end, 20000, "the last event reached the fanout consumers")
    emulator.sleep(0.3)
    for i, n in ipairs(fan) do
      local seen = {}
      for _, e in ipairs(n:events()) do
        if e.stream == stream then seen[e.seq] = (seen[e.seq] or 0) + 1 end
      end
      for q = 1, count do assert.equals(1, seen[q], ("fanout %d: event %d"):format(i, q)) end
      assert.equals(before[i], #n:markers(), "a marker: " .. n:out():gsub("E [^\n]*\n", ""))
    end
    local _, st = emu:admin("GET", ("publish/%d/times"):format(stream))
    fleet.check_promise(st.times, stream, fan, grp)
    print("  " .. (succ:out():match("H lease [^\n]*event=took_over[^\n]*") or "(no took_over)"))
    h:stop()
  end)

  it("a raised group handler's entry, claimed after a takeover, is handled (not dropped as stale)", function()
    local c = fleet.spawn("group", consumer_env { FLEET_GROUP = "g9", FLEET_CONSUMER = "once",
      FLEET_RAISE_ONCE = "1", FLEET_CLAIM_MS = string.format("%d", 3 * LEASE_MS) })
    assert(c:started())
    expect(open_holder, 15000, "a holder")
    local stream = delivery.publish(emu, TOPIC, 40 * SLOW, RATE)
    local id = expect(function() return c:out():match("\nR (%S+)\n") end, 10000, "the handler raised")
    local h = open_holder()
    local _, old = h:lease()
    h:kill9()
    -- another holder takes over (its marker raises the consumers' highest fence) before the claim
    expect(function()
      local n = open_holder()
      return n and select(2, n:lease()) > old
    end, 15000, "a takeover")
    expect(function() return c:out():find("E %S+ %d+ " .. id:gsub("%-", "%%-")) end, 10000 + 3 * LEASE_MS,
      "the entry whose handler raised was not handled again")
    assert.is_nil(c:out():find("H stale ", 1, true), "an entry dropped as stale")
    -- the spare holder for the next tests
    holders[#holders + 1] = fleet.spawn("holder", holder_env())
    local _ = stream
    c:stop()
  end)
end)

describe("a memory policy that can evict the lease", function()
  local r, emu, h
  teardown(function()
    fleet.stop_all()
    fleet.clean_stderr()
    if emu then emu:stop() end
    if r then r:stop() end
    fleet.cleanup()
  end)

  it("allkeys-lru: candidates refuse to take the lease and say why; noeviction: one holds", function()
    r = redis.start()
    emu = emulator.start { tls = true }
    r:cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    h = fleet.spawn("holder", { FLEET_EMU_PORT = string.format("%d", emu.port), FLEET_CA = emu.ca_file,
      FLEET_TOPIC = TOPIC, FLEET_REDIS = r.url, FLEET_KEY = KEY,
      FLEET_LEASE_MS = string.format("%d", LEASE_MS) })
    expect(function() return h:out():find("H redis [^\n]*event=eviction_policy[^\n]*policy=allkeys%-lru") end,
      10000, "no health item about the evicting policy")
    emulator.sleep(2 * LEASE_MS / 1000)
    assert.not_equals("holder", (h:lease()))
    assert.equals(0, emu:stats().global.open_connections)
    assert.equals("", (r:cli("GET", KEY .. ":lease"):gsub("%s", "")))
    r:cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
    expect(function() return h:lease() == "holder" end, 10000, "no holder once the policy is noeviction")
  end)
end)
