-- Reconnection against the emulator: abrupt resets, close codes, the server going away and
-- coming back, single flight, give-up.
local emulator = require "support.emulator"
local wait = require "support.wait"
local notify = require "genesys.notify"

local TOPIC = "v2.users.r1.presence"

local function start_client(emu, extra)
  return wait.start_client(emu, extra, { TOPIC }, true)
end

local function events_on(emu, ch, n)
  local st = emu:admin("POST", "channels/" .. ch .. "/events", { count = n, topic = TOPIC })
  assert.equals(200, st)
end

describe("genesys.notify client: reconnection", function()
  local emu
  setup(function() emu = emulator.start { tls = true } end)
  teardown(function() if emu then emu:stop() end end)

  it("an abrupt reset (RST) -> soft reconnect to the same channel, gap reported, sequence goes on", function()
    local client, rec = start_client(emu)
    finally(function() client:close() end)
    local ch = wait.channel_of(rec)
    events_on(emu, ch, 3)
    assert.truthy(wait.until_(client, function() return #rec.events >= 3 end, 5000))
    local before = rec.events[3].body.sequence
    assert.equals(200, (emu:admin("POST", "channels/" .. ch .. "/reset", {})))
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    local d = rec.kinds.disconnected[1]
    assert.equals("lost", d.reason)
    assert.equals(1006, d.code)
    local r = rec.kinds.restored[1]
    assert.is_true(r.gap_ms >= 0 and r.gap_ms < 5000)
    assert.is_true(r.deaf_to_ms >= r.deaf_from_ms)
    assert.is_false(r.new_channel)
    assert.equals(ch, wait.channel_of(rec)) -- soft: the same channel
    assert.equals(1, rec.count("attempt"))
    local a = rec.kinds.attempt[1]
    assert.equals("reconnect", a.type)
    assert.equals(1, a.attempt)
    assert.equals(1, a.connection_id)
    assert.equals("number", type(a.delay_ms))
    assert.equals("number", type(a.timestamp_ms))
    events_on(emu, ch, 3)
    assert.truthy(wait.until_(client, function() return #rec.events >= 6 end, 5000))
    assert.is_true(rec.events[4].body.sequence > before)
    for i = 5, 6 do assert.equals(rec.events[i - 1].body.sequence + 1, rec.events[i].body.sequence) end
    assert.equals(2, emu:stats().channels[ch].handshakes)
  end)

  it("a soft reconnect resumes the TLS session, offered only to the same name, address and port", function()
    local ctx = notify.context()
    local a, ra = start_client(emu, { context = ctx })
    finally(function() a:close(); ctx:close() end)
    assert.equals(0, a:metrics().tls_resumed)
    assert.equals(200, (emu:admin("POST", "channels/" .. wait.channel_of(ra) .. "/reset", {})))
    assert.truthy(wait.until_(a, function() return ra.count("restored") > 0 end, 10000))
    assert.equals(1, a:metrics().tls_resumed)
    -- the same server under another name (127.0.0.1; the emulator names itself localhost, and
    -- its certificate holds both): a's session is not
    -- offered to it (a session skips the certificate check that the name needs)
    assert.equals(200, (emu:admin("POST", "faults/connect_uri",
      { base = "wss://127.0.0.1:" .. emu.port, count = 1 })))
    local b, rb = start_client(emu, { context = ctx })
    finally(function() b:close() end)
    assert.equals(0, b:metrics().tls_resumed)
    assert.equals(200, (emu:admin("POST", "channels/" .. wait.channel_of(rb) .. "/reset", {})))
    assert.truthy(wait.until_(b, function() return rb.count("restored") > 0 end, 10000))
    assert.equals(1, b:metrics().tls_resumed)
    assert.equals(1, a:metrics().tls_resumed)
  end)

  for _, code in ipairs { 1000, 1001, 1011, 4000 } do
    it("close code " .. code .. " -> disconnected with that code, then back on the same channel", function()
      local client, rec = start_client(emu)
      finally(function() client:close() end)
      local ch = wait.channel_of(rec)
      assert.equals(200, (emu:admin("POST", "channels/" .. ch .. "/close",
        { code = code, reason = "test " .. code })))
      assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
      local d = rec.kinds.disconnected[1]
      assert.equals(code, d.code)
      assert.equals("closed", d.reason)
      assert.equals("test " .. code, d.close_reason)
      assert.equals(1, rec.count("attempt"))
      assert.equals("open", client:state())
      events_on(emu, ch, 1)
      assert.truthy(wait.until_(client, function() return #rec.events >= 1 end, 5000))
    end)
  end

  it("the emulator killed and restarted on the same port -> back afterwards, backoff growth seen", function()
    local emu2 = emulator.start { tls = true }
    finally(function() emu2:stop() end)
    local client, rec = start_client(emu2, {
      backoff = { base_ms = 50, max_ms = 800, multiplier = 2, jitter = "none", reset_after_ms = 200 } })
    finally(function() client:close() end)
    local old = wait.channel_of(rec)
    emu2:kill()
    assert.truthy(wait.until_(client, function() return rec.count("attempt") >= 5 end, 10000))
    emu2:restart()
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    local delays = {}
    for i, a in ipairs(rec.kinds.attempt) do
      delays[i] = a.delay_ms
      assert.equals(i, a.attempt)
    end
    -- none jitter: 50, 100, 200, 400, 800, 800 ...
    assert.equals(50, delays[1])
    for i = 2, 5 do assert.equals(math.min(800, delays[i - 1] * 2), delays[i]) end
    assert.equals(rec.count("attempt"), rec.count("failed") + 1)
    -- the restarted emulator forgot the channel and the token: a new channel, a new token
    local r = rec.kinds.restored[1]
    assert.is_true(r.new_channel)
    assert.are_not.equal(old, wait.channel_of(rec))
    assert.truthy(r.gap_ms >= 50 + 100 + 200 + 400)
    local st = emu2:stats()
    assert.same({ TOPIC }, st.channels[wait.channel_of(rec)].subscriptions)
    assert.is_true(st.channels[wait.channel_of(rec)].connected)
    local m = client:metrics()
    assert.equals(rec.count("failed"), m.failures)
    assert.equals(2, m.successes)
    assert.equals(2, m.latency_ms.count)
  end)

  it("the watchdog and client:reconnect() firing together -> one attempt", function()
    local k = wait.slow()
    local client, rec = start_client(emu, {
      heartbeat = { idle_ms = 100 * k, ping_timeout_ms = 50 * k },
      backoff = { base_ms = 1000, max_ms = 1000, jitter = "none", reset_after_ms = 100 } })
    finally(function() client:close() end)
    local ch = wait.channel_of(rec)
    -- the server stops answering (no heartbeat, no pong) for longer than the watchdog waits
    emu:admin("POST", "channels/" .. ch .. "/stall", { ms = 3000 * k })
    -- the watchdog fires (seen by its trigger), and the application asks for a reconnect on top
    -- while the cycle it opened waits out its delay
    assert.truthy(wait.until_(client, function()
      return client:metrics().scheduler.by_reason.timeout > 0 end, 5000), "the watchdog did not fire")
    local won = 0
    for _ = 1, 20 do if client:reconnect() then won = won + 1 end end
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    assert.equals(0, won)
    assert.equals(1, rec.count("attempt"))
    assert.equals("heartbeat_timeout", rec.kinds.disconnected[1].reason)
    assert.equals("timeout", rec.kinds.attempt[1].trigger)
    local sc = client:metrics().scheduler
    assert.equals(1, sc.by_reason.timeout)
    assert.equals(1 + 20, sc.by_reason.manual) -- start() opens the first cycle as a manual one
    assert.equals(20, sc.coalesced)
    assert.equals(2, sc.cycles)
  end)

  it("the close callback and client:reconnect() firing together -> one attempt", function()
    local client, rec = start_client(emu, {
      backoff = { base_ms = 300, max_ms = 300, jitter = "none", reset_after_ms = 100 } })
    finally(function() client:close() end)
    local ch = wait.channel_of(rec)
    emu:admin("POST", "channels/" .. ch .. "/close", { code = 1011, reason = "together" })
    local won = 0
    for _ = 1, 20 do if client:reconnect() then won = won + 1 end end
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    -- nothing else comes: the one attempt stays the only one
    assert.is_nil(wait.until_(client, function() return rec.count("attempt") > 1 end, 300))
    assert.equals(1, rec.count("attempt"))
    assert.is_true(won <= 1)
    local sc = client:metrics().scheduler
    assert.equals(1 + 20, sc.by_reason.manual) -- start() opens the first cycle as a manual one
    assert.equals(sc.triggers, sc.by_reason.manual + sc.by_reason.close + sc.by_reason.error)
    assert.equals(2, sc.cycles)
    assert.equals(sc.triggers - 2, sc.coalesced)
    assert.equals(2, emu:stats().channels[ch].handshakes)
  end)

  it("reconnect() while open: exactly one of many concurrent calls opens the cycle", function()
    local client, rec = start_client(emu, { backoff = { base_ms = 200, max_ms = 200, jitter = "none" } })
    finally(function() client:close() end)
    local results = {}
    for i = 1, 50 do results[i] = client:reconnect() end
    assert.is_true(results[1])
    for i = 2, 50 do assert.is_false(results[i]) end
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    assert.equals(1, rec.count("attempt"))
    assert.equals("manual", rec.kinds.disconnected[1].reason)
    assert.equals("manual", rec.kinds.attempt[1].reason)
  end)

  it("a dead heartbeat is noticed by the watchdog: ping, then reconnect", function()
    local k = wait.slow()
    local client, rec = start_client(emu, { heartbeat = { idle_ms = 100 * k, ping_timeout_ms = 100 * k } })
    finally(function() client:close() end)
    emu:admin("POST", "channels/" .. wait.channel_of(rec) .. "/stall", { ms = 1000 * k })
    assert.truthy(wait.until_(client, function() return rec.count("disconnected") > 0 end, 5000))
    assert.equals("heartbeat_timeout", rec.kinds.disconnected[1].reason)
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
  end)

  it("the watchdog reads a pong that arrived while the process was stopped past the deadline", function()
    -- libuv runs timers before it polls: a thread kept off the CPU past ping_timeout_ms, with the
    -- pong already in the socket, must read it before calling the link dead. The emulator holds
    -- its pong back for D ms; the whole test process is stopped (SIGSTOP) from just after the
    -- ping until well past the deadline, so the pong arrives while it is stopped.
    local k = wait.slow()
    local D, T = 500 * k, 1000 * k
    assert.equals(200, (emu:admin("POST", "faults/pong", { delay_ms = D })))
    finally(function() emu:admin("POST", "faults/clear") end)
    local client, rec = start_client(emu, { heartbeat = { idle_ms = 200 * k, ping_timeout_ms = T } })
    finally(function() client:close() end)
    local ch = wait.channel_of(rec)
    local function pings()
      local _, st = emu:admin("GET", "stats")
      return st.channels[ch].pings
    end
    assert.truthy(wait.until_(client, function() return pings() >= 1 end, 10000), "no ping")
    local f = assert(io.open("/proc/self/stat"))
    local pid = assert(f:read("*l"):match("^(%d+)"))
    f:close()
    os.execute(string.format("sh -c 'kill -STOP %s; sleep %.3f; kill -CONT %s' &", pid,
      (T + 1000 * k) / 1000, pid))
    -- stopped here; once continued, give the client time to act on it
    wait.for_ms(client, 500 * k)
    assert.truthy(wait.until_(client, function() return pings() >= 2 end, 10000),
      "no ping after the stop")
    local d = rec.kinds.disconnected and rec.kinds.disconnected[1]
    assert.equals(0, rec.count("disconnected"), d and ("disconnected: " .. tostring(d.reason)))
  end)

  it("gives up by the policy: state failed, health gave_up with the reason, no more attempts", function()
    local rec = wait.recorder()
    local dead = { host = "localhost", port = 1, tls = true, ca_file = emu.ca_file }
    local client = notify.new(wait.config(dead, rec,
      { backoff = { base_ms = 10, max_ms = 20, jitter = "none", max_retries = 3 } }))
    finally(function() client:close() end)
    client:start()
    assert.equals("failed", client:run())
    assert.equals(1, rec.count("gave_up"))
    assert.equals("max_retries", rec.kinds.gave_up[1].reason)
    assert.equals(3, rec.count("attempt"))
    assert.equals(4, rec.count("failed"))
    assert.equals(0, client:poll(100))
    assert.equals("failed", client:state())
  end)

  it("an attempt abandoned on its connect timeout never completes its handshake later", function()
    -- lws 4.1.6 acts on an asynchronous kill only at its next service of timers, and a
    -- connecting socket's own progress resets that timer: an attempt given up while nothing
    -- else runs on the loop went on to TLS and the upgrade once the server answered, and then
    -- displaced whatever connection the channel had (one connection per channel).
    local k = wait.slow()
    -- An emulator that offers TLS 1.2 at most: a TLS 1.2 client sends nothing before the
    -- server's Finished, so a hold that starts inside TLS stalls the attempt there (with TLS
    -- 1.3 the client may send its upgrade after one server flight). It catches the attempt
    -- more often, not always: the hold (lws rx flow control at SERVER_NEW_CLIENT_INSTANTIATED)
    -- can still come after lws finished the TLS accept (CI's LuaJIT leg: six of six tries).
    local emu12 = emulator.start { tls = true, args = { "--tls-max", "1.2" } }
    local client, rec = wait.start_client(emu12, {
      timeouts = { connect_ms = 300 * k, handshake_ms = 300 * k, http_ms = 3000 * k },
      backoff = { base_ms = 1000 * k, max_ms = 3000 * k, multiplier = 2, jitter = "none",
                  reset_after_ms = 200 },
    }, { "v2.users.late-1.presence" }, true)
    -- (one finally: busted keeps only the last one of a test)
    finally(function()
      client:close()
      emu12:stop()
    end)
    local ch = wait.channel_of(rec)
    -- The attempt after a reconnect (1 s later) is held unread for 1.2 s: the client gives it up
    -- after 300 ms; the next attempt comes 2 s after that, when nothing is held any more. The
    -- hold must catch the attempt before its upgrade is sent (a slow build's emulator can read
    -- the TLS ClientHello before it holds the socket; an upgrade already sent is the server's to
    -- take), so the scenario is run until an attempt is given up at the connect stage.
    local seen = {}
    for try = 1, 6 do
      if try > 1 then
        -- Let the last try settle: a held upgrade answered late, then the backoff reset (open
        -- for reset_after_ms), so the next attempt again comes 1 s after reconnect(), inside
        -- the hold's window.
        wait.for_ms(client, 1500 * k)
        assert.truthy(wait.until_(client, function() return client:state() == "open" end,
          15000 * k))
        wait.for_ms(client, 300)
      end
      local h0 = emu12:stats().channels[ch].handshakes
      local failed0, restored0 = rec.count("failed"), rec.count("restored")
      emu12:admin("POST", "faults/handshake", { mode = "slow", ms = 1500 * k, delay_ms = 1200 * k })
      assert.is_true(client:reconnect())
      assert.truthy(wait.until_(client, function() return rec.count("restored") > restored0 end,
        15000 * k), "not restored")
      assert.equals(ch, wait.channel_of(rec), "a soft reconnect")
      -- (a slow build may also reach the emulator before the hold starts: no failure at all)
      local f = (rec.kinds.failed or {})[failed0 + 1]
      if f then assert.equals("timeout", f.reason) end
      seen[#seen + 1] = f and f.error or "not held"
      if f and f.error:find("^connect timed out") then
        wait.for_ms(client, 500)
        -- The connection that restored it, and nothing in between.
        assert.equals(h0 + 1, emu12:stats().channels[ch].handshakes)
        assert.equals(rec.count("restored"), rec.count("disconnected"))
        return
      end
    end
    -- Say so rather than pass.
    pending("the emulator's hold never caught an attempt before its upgrade (" ..
      table.concat(seen, "; ") .. ")")
  end)
end)
