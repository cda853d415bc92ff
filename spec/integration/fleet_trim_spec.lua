-- Consumers further behind than the stream keeps (issue 22): the holder appends with
-- XADD MAXLEN ~ maxlen (here a small redis.maxlen), and what is trimmed before a consumer read it
-- reaches that consumer as a marker (health "restored", reason "trimmed", with the count), so
-- every event is handled or lies inside a marker: a fanout consumer and a whole group paused
-- (SIGSTOP) while more than maxlen events arrive, a group's pending entry trimmed before it was
-- claimed again. Consumers that keep up get no marker (no false positives), also when they
-- started before the stream existed.
local emulator = require "support.emulator"
local redis = require "support.redis"
local delivery = require "support.delivery"
local fleet = require "support.fleet"

local SLOW = fleet.SLOW
local MAXLEN = 100 -- "~": the stream keeps 100 to about 200 (Redis trims whole nodes of 100)
local BURST = 600
local RATE = math.floor(300 / SLOW)
local TOPIC = "v2.users.fleettrim.presence"
local KEY = "gn:trim"
local expect = fleet.expect

describe("a fleet consumer further behind than the stream keeps", function()
  local r, emu, holder, keep, sleep, kgroup, sgroup, rgroup
  local warm, burst, burst_times
  local function env(extra)
    local e = { FLEET_REDIS = r.url, FLEET_KEY = KEY }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end
  local function seen(nodes, stream)
    local s, n, dup = {}, 0, 0
    for _, node in ipairs(nodes) do
      for _, e in ipairs(node:events()) do
        if e.stream == stream then
          if s[e.seq] then dup = dup + 1 else n = n + 1 end
          s[e.seq] = true
        end
      end
    end
    return s, n, dup
  end
  local function got(nodes, stream, seq) return seen(nodes, stream)[seq] end
  -- the trimmed markers a node got: list of {id, count, pending}
  local function trimmed(node)
    local t = {}
    for line in node:out():gmatch("H restored ([^\n]*)\n") do
      if line:find("reason=trimmed", 1, true) then
        t[#t + 1] = { id = line:match("id=(%S+)"), count = tonumber(line:match("count=(%d+)")),
                      pending = line:find("pending", 1, true) ~= nil }
      end
    end
    return t
  end

  setup(function()
    r = redis.start()
    emu = emulator.start { tls = true }
    -- all started before the stream exists (the groups' position is "0-0")
    keep = fleet.spawn("fanout", env())
    sleep = fleet.spawn("fanout", env())
    kgroup = { fleet.spawn("group", env { FLEET_GROUP = "gk", FLEET_CONSUMER = "k1" }) }
    sgroup = { fleet.spawn("group", env { FLEET_GROUP = "gs", FLEET_CONSUMER = "s1" }),
               fleet.spawn("group", env { FLEET_GROUP = "gs", FLEET_CONSUMER = "s2" }) }
    -- r1's handler raises once (its first event stays pending); it never claims itself
    rgroup = { fleet.spawn("group", env { FLEET_GROUP = "gr", FLEET_CONSUMER = "r1",
                                          FLEET_RAISE_ONCE = "1", FLEET_CLAIM_MS = "600000" }) }
    for _, n in ipairs(fleet.nodes) do assert(n:started()) end
    emulator.sleep(0.3)
    holder = fleet.spawn("holder", {
      FLEET_EMU_PORT = string.format("%d", emu.port), FLEET_CA = emu.ca_file, FLEET_TOPIC = TOPIC,
      FLEET_REDIS = r.url, FLEET_KEY = KEY, FLEET_LEASE_MS = string.format("%d", 2000 * SLOW),
      FLEET_MAXLEN = tostring(MAXLEN) })
    expect(function()
      local st, _, cst = holder:lease()
      return st == "holder" and cst == "open"
    end, 15000, "a holder with an open stream")
    -- a few events every consumer handles before the pause
    warm = delivery.publish(emu, TOPIC, 5, 50)
    expect(function()
      return got({ keep }, warm, 5) and got({ sleep }, warm, 5) and got(kgroup, warm, 5) and
        got(sgroup, warm, 5) and got(rgroup, warm, 5)
    end, 15000, "the first events reached every consumer")
    for _, n in ipairs(sgroup) do n:signal("STOP") end
    sleep:signal("STOP")
    local stopped_at = fleet.now_ms()
    burst = delivery.publish(emu, TOPIC, BURST, RATE)
    expect(function() return got({ keep }, burst, BURST) end, 30000,
      "the burst reached the consumer that keeps up")
    expect(function() return got(kgroup, burst, BURST) end, 15000, "and the group that keeps up")
    -- stopped longer than a consumer's watchdog (block_ms 200 + 2000 ms): it falls due while
    -- they are stopped, with a read's answer waiting in their socket
    local left = stopped_at + 2500 - fleet.now_ms()
    if left > 0 then emulator.sleep(left / 1000) end
    local paused = { sleep, sgroup[1], sgroup[2] }
    local function resume() for _, n in ipairs(paused) do n:signal("CONT") end end
    resume()
    local last_cont = fleet.now_ms()
    local caught_up = fleet.wait_for(function()
      if fleet.now_ms() - last_cont > 1000 then -- once more: a SIGCONT lost by a loaded machine
        resume()
        last_cont = fleet.now_ms()
      end
      return got({ sleep }, burst, BURST) and got(sgroup, burst, BURST)
    end, 15000)
    if not caught_up then -- what each paused node did, for the log
      -- each thread's state (T: still stopped) and where it waits; the signals pending
      os.execute("ps -L -o pid,lwp,stat,pcpu,wchan:24,cmd -p " .. sleep.pid .. "," ..
        sgroup[1].pid .. "," .. sgroup[2].pid .. " >&2")
      for _, n in ipairs(paused) do
        os.execute("grep -E '^(State|SigPnd|ShdPnd|SigBlk|SigIgn)' /proc/" .. n.pid ..
          "/status >&2 2>/dev/null")
        local _, k = seen({ n }, burst)
        local last = n:out():match(".*\n(E [^\n]*)\n") or "none"
        io.stderr:write(("%s %d: %d events (%d of the burst, the last: %s), exit status %s\n" ..
          "%s\nstderr: %s\n"):format(n.role, n.pid, #n:events(), k, last,
          fleet.read_file(n.dir .. "/rc"):gsub("%s", ""), n:out():gsub("E [^\n]*\n", ""):sub(-800),
          n:err():sub(-800)))
      end
    end
    assert(caught_up, "the paused consumers read up to the stream's end")
    local _, st = emu:admin("GET", ("publish/%d/times"):format(burst))
    burst_times = st.times
  end)

  teardown(function() fleet.teardown(emu, r) end)

  it("consumers that keep up get no marker and every event once (fanout and group)", function()
    for _, n in ipairs { keep, kgroup[1] } do
      local _, count, dup = seen({ n }, burst)
      assert.are.equal(BURST, count)
      assert.are.equal(0, dup)
      assert.are.same({}, trimmed(n))
    end
  end)

  -- Each paused consumer had a read out (XREAD BLOCK) whose answer came while it was stopped:
  -- after SIGCONT it reads that answer; its watchdog does not call a live link dead.
  it("a paused consumer reads the answer that came while it was stopped: Redis not reported " ..
     "down (fanout and group)", function()
    for _, n in ipairs { sleep, sgroup[1], sgroup[2] } do
      assert.are.same({}, { n:out():match("H redis [^\n]*event=down[^\n]*") })
    end
  end)

  it("a paused fanout consumer: one marker for what was trimmed, its count exact, every event " ..
     "handled once or inside it", function()
    local _, count, dup = seen({ sleep }, burst)
    assert.are.equal(0, dup)
    assert.is_true(BURST - count > 0, "nothing was trimmed: the test proves nothing")
    local m = trimmed(sleep)
    assert.are.equal(1, #m)
    assert.are.equal(BURST - count, m[1].count)
    local lost = fleet.check_promise(burst_times, burst, { sleep }, nil)
    print(("\n  fanout: %d of %d events handled, %d inside the marker"):format(count, BURST, lost))
  end)

  it("a paused group: one marker (in KEY:gaps) that every member reports, its count exact, " ..
     "every event handled or inside it", function()
    local _, count, dup = seen(sgroup, burst)
    assert.are.equal(0, dup)
    assert.is_true(BURST - count > 0, "nothing was trimmed: the test proves nothing")
    expect(function() return #trimmed(sgroup[1]) == 1 and #trimmed(sgroup[2]) == 1 end, 5000,
      "each member reported the group's marker")
    local a, b = trimmed(sgroup[1])[1], trimmed(sgroup[2])[1]
    assert.are.equal(a.id, b.id) -- one marker, not one per member
    assert.are.equal(BURST - count, a.count)
    local lost = fleet.check_promise(burst_times, burst, {}, sgroup)
    print(("\n  group: %d of %d events handled, %d inside the marker"):format(count, BURST, lost))
  end)

  it("a group's pending entry trimmed before it was claimed again: the claiming member writes " ..
     "the group's marker (count 1), every member reports it", function()
    local raised = rgroup[1]:out():match("R (%S+)\n")
    assert.is_truthy(raised, "the handler did not raise")
    -- trimmed by now (the burst was far longer than the stream keeps)
    assert.are.equal("", r:cli("XRANGE", KEY .. ":stream", raised, raised):gsub("%s", ""))
    rgroup[2] = fleet.spawn("group", env { FLEET_GROUP = "gr", FLEET_CONSUMER = "r2",
                                           FLEET_CLAIM_MS = "300" })
    expect(function() return #trimmed(rgroup[1]) == 1 and #trimmed(rgroup[2]) == 1 end, 10000,
      "both members reported the pending entry's marker")
    local m = trimmed(rgroup[2])[1]
    assert.are.equal(1, m.count)
    assert.is_true(m.pending)
    local _, st = emu:admin("GET", ("publish/%d/times"):format(warm))
    fleet.check_promise(st.times, warm, {}, rgroup)
    fleet.check_promise(burst_times, burst, {}, rgroup)
  end)

  -- XADD MAXLEN = 1 by the test itself (the holder trims with "~"): every entry trims the one
  -- before it, so a consumer's cursor is gone at each read although it lost nothing: only the
  -- entries' ordinals tell the two apart.
  it("exact trimming: a consumer whose last entry was trimmed but that lost nothing gets no " ..
     "marker; five entries at once lose four, and the marker says 4 (fanout and group)", function()
    local K = "gn:exact"
    local f = fleet.spawn("fanout", { FLEET_REDIS = r.url, FLEET_KEY = K })
    local g = fleet.spawn("group", { FLEET_REDIS = r.url, FLEET_KEY = K, FLEET_GROUP = "x",
                                     FLEET_CONSUMER = "x1" })
    assert(f:started())
    assert(g:started())
    emulator.sleep(0.3)
    local ADD = "local now = redis.call('TIME') for i = 1, tonumber(ARGV[1]) do " ..
      "local n = tonumber(ARGV[2]) + i redis.call('XADD', KEYS[1], 'MAXLEN', '1', '*', 'type', " ..
      "'event', 'topic', 't', 'fence', '1', 'correlation_id', 'x' .. n, 'received_ms', " ..
      "now[1] .. string.format('%03d', math.floor(now[2] / 1000)), 'raw', '{}') end"
    local added = 0
    local function add(n)
      r:cli("EVAL", ADD, "1", K .. ":stream", tostring(n), tostring(added))
      added = added + n
    end
    local function handled(node) return #node:events() end
    for _ = 1, 10 do
      add(1)
      expect(function() return handled(f) == added and handled(g) == added end, 5000,
        "each entry read before the next one trimmed it")
    end
    assert.are.same({}, trimmed(f))
    assert.are.same({}, trimmed(g))
    add(5)
    expect(function() return handled(f) == 11 and handled(g) == 11 and #trimmed(f) == 1 and
      #trimmed(g) == 1 end, 5000, "one marker each, and the last entry")
    assert.are.equal(4, trimmed(f)[1].count)
    assert.are.equal(4, trimmed(g)[1].count)
    f:stop()
    g:stop()
  end)
end)
