-- poll()/run() from inside a callback: refused with a clear error (reported as health
-- callback_error), and no event is lost or delivered twice. Another client's poll() works there.
local emulator = require "support.emulator"
local wait = require "support.wait"

local TOPIC = "v2.users.r1.presence"
local N = 300 -- deep enough that recursing poll() calls would overflow the C stack

local REENTRY = "poll() called from inside a callback (on_event); callbacks run inside poll()/run(): " ..
  "return from the callback instead"

describe("genesys.notify client: poll()/run() inside a callback", function()
  local emu
  setup(function() emu = emulator.start { tls = true } end)
  teardown(function() if emu then emu:stop() end end)

  -- Sends n events to the client's channel and waits until the emulator has sent them all, so
  -- they are queued together and one poll() delivers several of them.
  local function send(rec, n)
    local ch = wait.channel_of(rec)
    local before = emu:stats().channels[ch].events_sent
    assert.equals(200, (emu:admin("POST", "channels/" .. ch .. "/events", { count = n, topic = TOPIC })))
    assert.truthy(emulator.wait_until(function()
      return emu:stats().channels[ch].events_sent >= before + n end, 10 * wait.slow()))
  end

  it("poll() in on_event raises there (callback_error) and every event arrives exactly once", function()
    local client, rec
    local seen, answers = {}, {}
    client, rec = wait.start_client(emu, {
      on_event = function(ev)
        seen[#seen + 1] = ev.body.sequence
        answers[#answers + 1] = client:poll(0) -- raises: the rest of this handler does not run
        error("not reached")
      end }, { TOPIC }, true)
    finally(function() client:close() end)
    send(rec, N)
    assert.truthy(wait.until_(client, function() return #seen >= N end, 10000))
    wait.for_ms(client, 200)
    assert.equals(N, #seen)
    assert.equals(N, client:metrics().events)
    local once = {}
    for _, s in ipairs(seen) do
      assert.is_nil(once[s], "event " .. tostring(s) .. " delivered twice")
      once[s] = true
    end
    assert.equals(0, #answers)
    local errs = rec.kinds.callback_error or {}
    assert.equals(N, #errs)
    for _, h in ipairs(errs) do
      assert.equals("on_event", h.callback)
      assert.truthy(h.error:find(REENTRY, 1, true), h.error)
    end
    assert.equals(0, client:metrics().dropped)
    assert.equals("open", client:state())
  end)

  it("run() in on_event is refused the same way", function()
    local client, rec
    local events, depth, nested = 0, 0, false
    client, rec = wait.start_client(emu, {
      on_event = function()
        events = events + 1
        -- were run() to run here (no guard), it would never return: close to end it, and fail
        if depth > 0 then nested = true; client:close(); return end
        depth = depth + 1
        local ok, err = pcall(client.run, client)
        depth = depth - 1
        if not ok then error(err, 0) end
      end }, { TOPIC }, true)
    finally(function() client:close() end)
    send(rec, 3)
    assert.truthy(wait.until_(client, function() return events >= 3 end, 10000))
    wait.for_ms(client, 100)
    assert.is_false(nested)
    assert.equals(3, events)
    assert.equals(3, client:metrics().events)
    assert.equals(3, rec.count("callback_error"))
    assert.truthy(rec.kinds.callback_error[1].error:find(
      "genesys.notify: run() called from inside a callback (on_event)", 1, true))
  end)

  it("poll() in on_health is refused too, and health goes on", function()
    -- caught here: an error of on_health itself is reported on stderr, not through on_health
    local client, rec
    local polls = {}
    local record = wait.recorder()
    client, rec = wait.start_client(emu, {
      on_health = function(h)
        polls[#polls + 1] = { pcall(client.poll, client, 0) }
        record.on_health(h)
      end }, { TOPIC })
    finally(function() client:close() end)
    assert.truthy(wait.until_(client, function() return record.count("connected") > 0 end, 10000))
    assert.equals(0, #rec.health) -- the recorder's own on_health was replaced
    assert.equals(#record.health, #polls)
    assert.truthy(#polls >= 3) -- token, subscription, connected
    for _, r in ipairs(polls) do
      assert.is_false(r[1])
      assert.truthy(r[2]:find("poll() called from inside a callback (on_health)", 1, true), r[2])
    end
  end)

  it("poll() of another client inside a callback works, and the other client loses nothing", function()
    local a, b, ra, rb
    local b_ran, b_errs = 0, {}
    b, rb = wait.start_client(emu, nil, { TOPIC }, true)
    finally(function() b:close() end)
    a, ra = wait.start_client(emu, {
      on_event = function(ev)
        ra.events[#ra.events + 1] = ev
        -- b's events wait in its queue (b is polled nowhere else): a's handler delivers them
        local deadline = wait.now_ms() + 10000 * wait.slow()
        while #rb.events < N and wait.now_ms() < deadline do
          local ok, n = pcall(b.poll, b, 50)
          if ok then b_ran = b_ran + n else b_errs[#b_errs + 1] = n; break end
        end
      end }, { TOPIC }, true)
    finally(function() a:close() end)
    send(rb, N)
    send(ra, 1)
    assert.truthy(wait.until_(a, function() return #ra.events >= 1 end, 10000))
    assert.same({}, b_errs)
    assert.equals(0, ra.count("callback_error"))
    assert.equals(N, #rb.events)
    assert.truthy(b_ran >= N)
    assert.equals(N, b:metrics().events)
    for i = 2, N do assert.equals(rb.events[i - 1].body.sequence + 1, rb.events[i].body.sequence) end
  end)

  it("close() inside a callback still ends poll() at once", function()
    local client, rec
    local seen = 0
    client, rec = wait.start_client(emu, {
      on_event = function() seen = seen + 1; client:close() end }, { TOPIC }, true)
    finally(function() client:close() end)
    send(rec, 5)
    assert.truthy(wait.until_(client, function() return client:state() == "closed" end, 10000))
    assert.equals(1, seen)
    assert.equals(0, rec.count("callback_error"))
    assert.equals(0, client:poll(0))
  end)
end)
