-- The delivery guarantee under a published stream: every event the server delivered to a live
-- socket reaches on_event exactly once, and every other event lies inside a reported deaf
-- interval. Rollovers back to back under thousands of events per second, a stalled socket,
-- and (as root, with network namespaces) a link that silently drops everything.
--
-- Sizes for `make test`; GN_DELIVERY_SCALE (make soak) multiplies the counts and hand-overs.
local emulator = require "support.emulator"
local wait = require "support.wait"
local delivery = require "support.delivery"

local SCALE = tonumber(os.getenv("GN_DELIVERY_SCALE") or "") or 1
local T = "v2.users.delivery-1.presence"

local function times_of(emu, stream)
  local _, st = emu:admin("GET", ("publish/%d/times"):format(stream))
  return function(s) return st.times[s] end
end

describe("delivery guarantee", function()
  local emu
  setup(function()
    emu = emulator.start { tls = true, clients = { "test-id:test-secret" }, heartbeat_ms = 500 }
  end)
  teardown(function() if emu then emu:stop() end end)

  it("rollovers back to back under a fast stream: every event exactly once, gap=false",
    function()
      -- Queue bounds out of the way (events and bytes): this is about hand-overs, and a loaded
      -- machine's Lua thread can fall seconds behind a 4,000 events/s stream (an overflow drop
      -- is reported as such, not as a deaf interval; client_bounds_spec checks those).
      local client, rec = wait.start_client(emu, { queue_limit = 1000000,
                                                   queue_bytes = 4 * 1024 * 1024 * 1024 },
                                            { T }, true)
      finally(function() client:close() end)
      local function no_overflow()
        assert.equals(0, rec.count("overflow"), "events were dropped by the queue bounds")
      end
      local rate = math.floor(4000 / wait.slow())
      local handovers = 20 * SCALE
      local count = rate * (4 + math.floor(handovers / 4))
      local stream = delivery.publish(emu, T, count, rate)
      local grace = 400 * wait.slow()
      local done, late = 0, 0
      while done < handovers do
        wait.for_ms(client, 100)
        local done_items = rec.where("rollover", function(h) return h.event == "completed" end)
        local ch = #done_items > 0 and done_items[#done_items].to or wait.channel_of(rec)
        local asked = emulator.now() * 1000 -- wall clock, like the items' timestamp_ms
        emu:admin("POST", "channels/" .. ch .. "/socket_closing", { grace_ms = grace })
        assert(wait.until_(client, function()
          return #rec.where("rollover", function(h) return h.event == "completed" end) > done
        end, 10000), "rollover " .. done + 1 .. " did not complete")
        done = done + 1
        -- The new socket opened after the server closed the old one (a client that fell behind
        -- on a loaded machine read the notice late): that hand-over may lose events, reported.
        local c = rec.where("rollover", function(h) return h.event == "completed" end)[done]
        if c.timestamp_ms - asked > grace then late = late + 1 end
      end
      delivery.drain(emu, client, rec, stream, 1000)
      for _, h in ipairs(rec.where("rollover", function(x) return x.event == "completed" end)) do
        assert.is_false(h.gap)
      end
      no_overflow()
      local missed, got = delivery.assert_covered(rec, stream, count, times_of(emu, stream))
      if late == 0 then
        -- every hand-over in time: nothing may be lost
        assert.equals(0, missed, "events lost without a gap")
        assert.equals(count, got)
      else
        print(("\n  rollover: %d of %d hand-overs opened after the server's %d ms grace " ..
          "(a loaded machine): %d events lost, all inside reported gaps"):format(late, handovers,
          grace, missed))
      end
      assert.equals(handovers, client:metrics().rollovers)
      assert.is_true(client:metrics().duplicates > 0, "the overlap was exercised")
      print(("\n  rollover: %d hand-overs, %d events at %d/s, %d duplicates dropped")
        :format(handovers, count, rate, client:metrics().duplicates))
    end)

  it("a socket_closing read after the server's grace: the hand-over's gap is reported", function()
    -- The server closes the old socket (its grace) before the new channel is open, and the
    -- client reads that close only after the new socket opened (the old socket was behind):
    -- what the server published between its close and the new socket's open went to no socket.
    -- A stall right after the notice keeps the old socket behind; a late REST answer keeps the
    -- new channel from opening within the grace.
    local k = wait.slow()
    local client, rec = wait.start_client(emu, {}, { T }, true)
    -- (one finally: busted keeps only the last one of a test)
    finally(function()
      emu:admin("POST", "faults/clear", {})
      client:close()
    end)
    -- 500 events/s (scaled down in slow builds) for 4 s, or until the stall below ends when
    -- that is later: the fault windows are scaled, and a stream over before a slow build's grace
    -- ended would leave no event in the gap (valgrind: 25/s for 32 s)
    local rate = math.floor(500 / k)
    local count = math.floor(rate * math.max(4, 2 + 1.5 * k))
    local stream = delivery.publish(emu, T, count, rate)
    wait.for_ms(client, 1000)
    local ch = wait.channel_of(rec)
    assert.equals(200, (emu:admin("POST", "faults/http",
      { target = "rest", delay_ms = 600 * k, count = 1 })))
    assert.equals(200, (emu:admin("POST", "channels/" .. ch .. "/socket_closing",
      { grace_ms = 300 * k })))
    assert(wait.until_(client, function() return rec.count("socket_closing") > 0 end, 2000),
      "no notice")
    assert.equals(200, (emu:admin("POST", "channels/" .. ch .. "/stall", { ms = 1500 * k })))
    delivery.drain(emu, client, rec, stream, 1500)
    -- The gap is known when the old socket ends: after its stall (in slow builds, after the
    -- stream has ended). It is queued just after the drained item: wait for both (a missing
    -- gap then fails below, after this wait).
    assert(wait.until_(client, function()
      return #rec.where("rollover", function(h)
        return h.event == "drained" and h.channel_id == ch
      end) > 0
    end, 10000), "the old socket did not end")
    wait.until_(client, function()
      return #rec.where("gap", function(h) return h.channel_id == ch end) > 0
    end, 2000)
    -- (the old socket ends with the server's close frame, or, when the stall holds it past
    -- the close, without one: either way the interval is the hand-over's)
    local late = rec.where("gap", function(h)
      return h.reason == "rollover_no_overlap" or h.reason == "rollover_drain_lost"
    end)
    local missed = delivery.assert_covered(rec, stream, count, times_of(emu, stream))
    assert.is_true(missed > 0, "nothing was lost: the test did not test")
    assert.equals(1, #late, "the late hand-over's gap")
    assert.equals(ch, late[1].channel_id)
    print(("\n  late notice: %d of %d events lost, all inside [%.0f, %.0f]"):format(missed, count,
      late[1].deaf_from_ms, late[1].deaf_to_ms))
  end)

  it("a stalled socket: what did not arrive lies inside the reported interval", function()
    local client, rec = wait.start_client(emu, {
      heartbeat = { idle_ms = 200, ping_timeout_ms = 200 },
    }, { T }, true)
    finally(function() client:close() end)
    local rate, count = 200, 200 * 4 * SCALE
    local stream = delivery.publish(emu, T, count, rate)
    wait.for_ms(client, 1000)
    emu:admin("POST", "channels/" .. wait.channel_of(rec) .. "/stall", { ms = 1500 })
    delivery.drain(emu, client, rec, stream, 1000)
    assert.is_true(rec.count("restored") >= 1, "the stall was noticed")
    local missed = delivery.assert_covered(rec, stream, count, times_of(emu, stream))
    print(("\n  stall: %d of %d events lost, all inside %s")
      :format(missed, count, (function()
        local r = rec.last("restored")
        return ("[%.0f, %.0f]"):format(r.deaf_from_ms, r.deaf_to_ms)
      end)()))
  end)
end)

-- True when cmd exited 0: os.execute returns true/nil in Lua 5.4 but a status number in
-- LuaJIT, where even a failure's number is truthy.
local function ok(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end

-- A kernel-level blackhole needs two network namespaces: only root can make them.
local function netns_reason()
  local id = io.popen("id -u"):read("*l")
  if id ~= "0" then return "not root (network namespaces need CAP_NET_ADMIN)" end
  local probe = "gn-probe-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e6))
  if not ok("ip netns add " .. probe .. " >/dev/null 2>&1") then
    return "`ip netns add` failed (no iproute2, or namespaces not allowed in this container)"
  end
  os.execute("ip netns del " .. probe .. " >/dev/null 2>&1")
  return nil
end

describe("delivery guarantee through a blackholed link", function()
  local why = netns_reason()
  if why then
    pending("skipped: " .. why)
    return
  end
  -- Runs of the suite may overlap (make test runs Lua 5.4 and LuaJIT side by side): each claims
  -- a slot by creating its namespace (`ip netns add` fails when the name exists, so creation is
  -- the lock) and takes the slot's own /30, so no two runs share a name, a veth or a route.
  local ns, slot
  local function sh(cmd) assert(ok(cmd), cmd) end
  local emu
  setup(function()
    for i = 0, 63 do
      if ok(("ip netns add gnbh%d >/dev/null 2>&1"):format(i)) then
        ns, slot = "gnbh" .. i, i
        break
      end
    end
    assert(ns, "no free network namespace slot gnbh0..gnbh63 (left over from killed runs?)")
    local va, vb = ns .. "a", ns .. "b"
    local near, far = ("10.213.%d.1"):format(slot), ("10.213.%d.2"):format(slot)
    sh(("ip link add %s type veth peer name %s"):format(va, vb))
    sh(("ip link set %s netns %s"):format(vb, ns))
    sh(("ip addr add %s/30 dev %s && ip link set %s up"):format(near, va, va))
    sh(("ip netns exec %s sh -c 'ip addr add %s/30 dev %s && ip link set %s up && " ..
        "ip link set lo up'"):format(ns, far, vb, vb))
    emu = emulator.start { netns = ns, host = far, heartbeat_ms = 500,
                           clients = { "test-id:test-secret" } }
  end)
  teardown(function()
    if emu then emu:stop() end
    if ns then
      os.execute("ip link del " .. ns .. "a >/dev/null 2>&1")
      os.execute("ip netns del " .. ns .. " >/dev/null 2>&1")
    end
  end)

  it("every event not received lies inside a reported interval", function()
    local client, rec = wait.start_client(emu, {
      heartbeat = { idle_ms = 300, ping_timeout_ms = 300 },
      timeouts = { connect_ms = 500, handshake_ms = 1000, http_ms = 1000 },
    }, { T }, true)
    finally(function() client:close() end)
    local rate, count = 100, 100 * 6 * SCALE
    local stream = delivery.publish(emu, T, count, rate)
    wait.for_ms(client, 1500)
    -- The emulator's side of the link goes down: what it sends is lost, nothing comes back, and
    -- the client's side stays up (no error reaches the client: only silence).
    sh(("ip netns exec %s ip link set %sb down"):format(ns, ns))
    wait.for_ms(client, 2000)
    sh(("ip netns exec %s ip link set %sb up"):format(ns, ns))
    delivery.drain(emu, client, rec, stream, 1500)
    assert.is_true(rec.count("restored") >= 1, "the blackhole was noticed")
    local missed = delivery.assert_covered(rec, stream, count, times_of(emu, stream))
    assert.is_true(missed > 0, "the blackhole lost nothing: the test did not test")
    local ivs = {}
    for _, i in ipairs(delivery.intervals(rec)) do
      ivs[#ivs + 1] = ("[%.0f, %.0f] (%.0f ms)"):format(i[1], i[2], i[2] - i[1])
    end
    print(("\n  blackhole: %d of %d events lost, all inside %s"):format(missed, count,
      table.concat(ivs, " ")))
  end)
end)
