-- Fault injection in the emulator, observed from real clients over real sockets:
-- close/reset/stall/socket_closing/malformed on live connections, refused or slow handshakes,
-- refused TCP, HTTP 429/500/503 and late answers (delay_ms) for OAuth and REST, start-up faults
-- from --fault.
local emulator = require "support.emulator"
local cjson = require "cjson.safe"

local PRESENCE = "v2.users.u-faults.presence"
-- sanitizer builds run about 3x slower: fault delays stretch with them
local SLOW = require("support.build").slow

local function meta(r, message)
  local n = {}
  for _, f in ipairs(r.texts) do
    if f.msg and f.msg.eventBody and f.msg.eventBody.message == message then n[#n + 1] = f end
  end
  return n
end

for _, tls in ipairs { false, true } do
  local mode = tls and "TLS" or "plain"

  describe("emulator connection faults (" .. mode .. ")", function()
    local emu, tok
    setup(function()
      emu = emulator.start { tls = tls, heartbeat_ms = 200 }
      tok = emu:token()
    end)
    teardown(function()
      local rc, err = emu:stop()
      assert.equal(0, rc, err)
    end)

    local function connected(duration, opts)
      local ch = emu:channel(tok, { PRESENCE })
      local o = opts or {}
      o.channel = ch.id
      o.duration_ms = duration
      local p = emu:probe_bg(o)
      assert.equal(101, p:wait_open().handshake)
      assert.truthy(emulator.wait_until(function() return emu:stats().channels[ch.id].connected end))
      return ch, p
    end

    it("closes a socket with the given code and reason", function()
      local ch, p = connected(5000)
      local st, j = emu:admin("POST", "channels/" .. ch.id .. "/close",
        { code = 1011, reason = "server fault" })
      assert.equal(200, st)
      assert.same({ ch.id }, j.channels)
      local r = p:result()
      assert.equal("close", r["end"]["end"])
      assert.equal(1011, r["end"].code)
      assert.equal("server fault", r["end"].reason)
      st = emu:admin("POST", "channels/" .. ch.id .. "/close", { code = 99 })
      assert.equal(409, st)          -- no live connection any more
    end)

    it("validates close parameters, naming the field", function()
      local ch, p = connected(5000)
      local st, j = emu:admin("POST", "channels/" .. ch.id .. "/close", { code = 99 })
      assert.equal(400, st)
      assert.matches('"code"', j.message)
      st, j = emu:admin("POST", "channels/" .. ch.id .. "/close", "[1,2")
      assert.matches("JSON object", j.message)
      assert.equal(400, st)
      st = emu:admin("POST", "channels/" .. ch.id .. "/explode", {})
      assert.equal(404, st)
      st = emu:admin("POST", "channels/streaming-0-none/close", {})
      assert.equal(404, st)
      emu:admin("POST", "channels/" .. ch.id .. "/close", {})
      p:result()
    end)

    it("resets a socket abruptly (TCP RST, no close frame)", function()
      local ch, p = connected(5000)
      local st = emu:admin("POST", "channels/" .. ch.id .. "/reset", {})
      assert.equal(200, st)
      local r = p:result()
      assert.equal("reset", r["end"]["end"])
      assert.is_nil(r["end"].code)
      assert.truthy(emulator.wait_until(function()
        return emu:stats().channels[ch.id].connections == 0
      end))
    end)

    it("handles a client's close late (close fault): the socket held open and unanswered, the channel "
        .. "counted as connected until then", function()
      assert.equal(200, (emu:admin("POST", "faults/close", { delay_ms = 1500 * SLOW })))
      finally(function() emu:admin("POST", "faults/clear", {}) end)
      local held = emu:stats().global.closes_held
      local ch, p = connected(20000 * SLOW, { close_after_ms = 200 })
      -- one snapshot: the client's close arrived (held) and the channel still counts
      assert.truthy(emulator.wait_until(function()
        local st = emu:stats()
        return st.global.closes_held == held + 1 and st.channels[ch.id].connected
      end), "the close is held")
      local r = p:result()
      assert.equal("eof", r["end"]["end"]) -- no close answer: the socket just ends
      assert.is_nil(r["end"].code)
      assert.is_false(emu:stats().channels[ch.id].connected)
    end)

    it("stalls: writes nothing, heartbeats included, while TCP stays open", function()
      local ch, p = connected(3000, { send = {} })
      emulator.sleep(0.5)
      local st = emu:admin("POST", "channels/" .. ch.id .. "/stall", { ms = 1000 })
      assert.equal(200, st)
      local r = p:result()
      assert.equal("timeout", r["end"]["end"])    -- never closed
      local hb = meta(r, "WebSocket Heartbeat")
      local maxgap = 0
      for i = 2, #hb do maxgap = math.max(maxgap, hb[i].t - hb[i - 1].t) end
      assert.is_true(maxgap >= 900 and maxgap < 2500, "longest silence " .. maxgap)
      -- the silence is measured between two heartbeats: they came back after the stall
      emu:admin("POST", "channels/" .. ch.id .. "/close", {})
    end)

    it("sends v2.system.socket_closing, then closes after the grace period", function()
      local ch, p = connected(5000)
      local st = emu:admin("POST", "channels/" .. ch.id .. "/socket_closing", { grace_ms = 600 })
      assert.equal(200, st)
      local r = p:result()
      local notice
      for _, f in ipairs(r.texts) do
        if f.msg.topicName == "v2.system.socket_closing" then notice = f end
      end
      assert.truthy(notice)
      assert.is_string(notice.msg.metadata.CorrelationId)
      -- the official SystemMessageSystemMessage fields (userId: null for client credentials)
      local b = notice.msg.eventBody
      assert.equal(ch.id, b.channelId)
      assert.equal(notice.msg.metadata.CorrelationId, b.correlationId)
      for _, k in ipairs { "systemTopicType", "organizationId", "oauthClientId",
                           "oauthClientOrgId", "reason", "message" } do
        assert.is_string(b[k], k)
      end
      assert.equal("test-id", b.oauthClientId)
      assert.equal("table", type(b.data))
      assert.is_true(b.userId == cjson.null, "userId")
      assert.equal("close", r["end"]["end"])
      assert.equal(1001, r["end"].code)
      local grace = r["end"].elapsed_ms - notice.t
      assert.is_true(grace >= 550 and grace < 3000, "grace " .. grace)
    end)

    it("sends malformed frames: invalid JSON, binary, invalid UTF-8, oversized", function()
      local ch, p = connected(5000, { print_max = 100 })
      local base = "channels/" .. ch.id .. "/malformed"
      assert.equal(200, (emu:admin("POST", base, { kind = "invalid_json" })))
      assert.equal(200, (emu:admin("POST", base, { kind = "binary" })))
      assert.equal(200, (emu:admin("POST", base, { kind = "invalid_utf8" })))
      assert.equal(200, (emu:admin("POST", base, { kind = "oversized", size = 2000000 })))
      local st, j = emu:admin("POST", base, { kind = "weird" })
      assert.equal(400, st)
      assert.matches('"kind"', j.message)
      local r = p:wait_for(function(x)
        for _, f in ipairs(x.frames) do if f.len == 2000000 then return true end end
      end, 15)
      assert.truthy(r, "oversized frame not received")
      local kinds = {}
      for _, f in ipairs(r.frames) do
        if f.frame == "binary" then kinds.binary = f
        elseif f.len == 2000000 then kinds.oversized = f
        elseif f.utf8 == false then kinds.utf8 = f
        elseif f.json == false then kinds.json = f end
      end
      assert.equal(16, kinds.binary.len)
      assert.is_true(kinds.json.utf8)
      assert.is_false(kinds.utf8.utf8)
      assert.is_true(kinds.oversized.json)
      emu:admin("POST", "channels/" .. ch.id .. "/close", {})
      p:result()
    end)

    it("applies an action to every connected channel with id *", function()
      local a, pa = connected(5000)
      local b, pb = connected(5000)
      local st, j = emu:admin("POST", "channels/*/close", { code = 4000, reason = "all" })
      assert.equal(200, st)
      assert.is_true(j.count >= 2)
      local ids = {}
      for _, id in ipairs(j.channels) do ids[id] = true end
      assert.is_true(ids[a.id] and ids[b.id])
      assert.equal(4000, pa:result()["end"].code)
      assert.equal(4000, pb:result()["end"].code)
    end)

    it("refuses new handshakes for a duration", function()
      local ch = emu:channel(tok, { PRESENCE })
      -- fault durations do not depend on the transport: timed in the plain run only
      if not tls then
        assert.equal(200, (emu:admin("POST", "faults/handshake", { mode = "refuse", ms = 2500 })))
        local t0 = emulator.now()
        assert.equal(503, emu:probe { channel = ch.id, duration_ms = 500 }.open.handshake)
        local dt = emulator.now() - t0
        if dt < 2.6 then emulator.sleep(2.6 - dt) end
        assert.equal(101, emu:probe { channel = ch.id, duration_ms = 200 }.open.handshake)
      end
      -- until cleared when no duration is given
      emu:admin("POST", "faults/handshake", { mode = "refuse" })
      assert.equal(503, emu:probe { channel = ch.id, duration_ms = 200 }.open.handshake)
      assert.equal(200, (emu:admin("POST", "faults/clear", {})))
      assert.equal(101, emu:probe { channel = ch.id, duration_ms = 200 }.open.handshake)
    end)

    it("slows handshakes down by delay_ms", function()
      local ch = emu:channel(tok, { PRESENCE })
      local fast = emu:probe { channel = ch.id, duration_ms = 100 }.open
      assert.equal(200, (emu:admin("POST", "faults/handshake", { mode = "slow", delay_ms = 700, ms = 5000 })))
      local slow = emu:probe { channel = ch.id, duration_ms = 100 }.open
      emu:admin("POST", "faults/clear", {})
      assert.equal(101, slow.handshake)
      assert.is_true(slow.ms >= 680, "slow handshake took " .. slow.ms)
      assert.is_true(fast.ms < 680, "normal handshake took " .. fast.ms)
    end)

    it("refuses new TCP connections (accept and close) for a duration", function()
      local ch = emu:channel(tok, { PRESENCE })
      -- a duration is required: refused connections include the admin API's own
      local st0, j0 = emu:admin("POST", "faults/tcp", { mode = "refuse" })
      assert.equal(400, st0)
      assert.matches('"ms"', j0.message)
      assert.equal(200, (emu:admin("POST", "faults/tcp", { mode = "refuse", ms = 2500 })))
      local t0 = emulator.now()
      local r = emu:probe { channel = ch.id, duration_ms = 300 }
      assert.is_string(r.open.error or (r.open.handshake == -1 and "closed"))
      assert.not_equal(101, r.open.handshake)
      assert.equal(0, (emu:admin("GET", "stats")))      -- the admin API is refused too
      local dt = emulator.now() - t0
      if dt < 2.6 then emulator.sleep(2.6 - dt) end
      assert.equal(101, emu:probe { channel = ch.id, duration_ms = 100 }.open.handshake)
      local st, j = emu:admin("POST", "faults/tcp", { mode = "drop" })
      assert.equal(400, st)
      assert.matches('"mode"', j.message)
    end)
  end)
end

describe("emulator HTTP faults", function()
  local emu
  setup(function() emu = emulator.start { tls = true } end)
  teardown(function()
    local rc, err = emu:stop()
    assert.equal(0, rc, err)
  end)
  before_each(function() emu:admin("POST", "faults/clear", {}) end)

  local function oauth()
    return emu:http("POST", "/oauth/token", {
      headers = { Authorization = "Basic " .. emulator.basic("test-id:test-secret") },
      body = "grant_type=client_credentials" })
  end

  it("answers OAuth with 429 + Retry-After for the next N requests", function()
    local st, j = emu:admin("POST", "faults/http",
      { target = "oauth", status = 429, count = 2, retry_after = 3 })
    assert.equal(200, st, cjson.encode(j))
    for _ = 1, 2 do
      local s, body, h = oauth()
      assert.equal(429, s)
      assert.equal("3", h["retry-after"])
      local e = cjson.decode(body)
      assert.equal(429, e.status)
      assert.equal("too.many.requests", e.code)
      assert.matches("Retry the request in %[3%] seconds", e.message)
    end
    assert.equal(200, (oauth()))
  end)

  it("answers REST with 503 for a duration, then recovers", function()
    local tok = emu:token()
    emu:admin("POST", "faults/http", { target = "rest", status = 503, ms = 2500 })
    local t0 = emulator.now()
    local st, j = emu:rest(tok, "POST", "/channels")
    assert.equal(503, st)
    assert.equal(503, j.status)
    assert.equal(503, (emu:rest(tok, "GET", "/channels")))
    assert.equal(200, (oauth()))      -- OAuth is not affected
    local dt = emulator.now() - t0
    if dt < 2.6 then emulator.sleep(2.6 - dt) end
    assert.equal(200, (emu:rest(tok, "POST", "/channels")))
  end)

  it("answers 500 once, and faults/clear ends a fault early", function()
    local tok = emu:token()
    emu:admin("POST", "faults/http", { target = "rest", status = 500, count = 1 })
    assert.equal(500, (emu:rest(tok, "GET", "/channels")))
    assert.equal(200, (emu:rest(tok, "GET", "/channels")))
    emu:admin("POST", "faults/http", { target = "oauth", status = 503 })
    assert.equal(503, (oauth()))
    assert.equal(503, (oauth()))
    emu:admin("POST", "faults/clear", {})
    assert.equal(200, (oauth()))
    local g = emu:stats().global
    assert.is_true(g.rest["500"] >= 1 and g.oauth["503"] >= 2 and g.rest["503"] >= 2)
  end)

  -- curl in the background: returns a function that waits for it and returns the HTTP status
  -- (0 when curl gave up) and the seconds it took.
  local nbg = 0
  local function curl_bg(path, headers, max_time)
    nbg = nbg + 1
    local out = emu.dir .. "/bg-" .. nbg
    local args = { "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
      "--cacert", emu.ca_file, "--max-time", tostring(max_time or 30) }
    for k, v in pairs(headers or {}) do args[#args + 1] = "-H"; args[#args + 1] = k .. ": " .. v end
    args[#args + 1] = emu.base_url .. path
    for i, a in ipairs(args) do args[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
    local cmd = "env -u LD_PRELOAD " .. table.concat(args, " ") .. " >" .. out .. ".tmp; mv " ..
      out .. ".tmp " .. out
    os.execute("env -u LD_PRELOAD sh -c '" .. cmd:gsub("'", "'\\''") .. "' >/dev/null 2>&1 &")
    return function()
      local text = emulator.wait_until(function()
        local f = io.open(out)
        local t = f and f:read("*a")
        if f then f:close() end
        return t
      end, 60)
      local st, secs = (text or ""):match("(%d+) ([%d.]+)")
      return tonumber(st), tonumber(secs)
    end
  end

  local function timed(fn)
    local t0 = emulator.now()
    local st = fn()
    return st, emulator.now() - t0
  end

  it("delays exactly count REST requests and answers everything else at once", function()
    local tok = emu:token()
    local auth = { Authorization = "Bearer " .. tok }
    local d = 1.2 * SLOW
    assert.equal(200, (emu:admin("POST", "faults/http",
      { target = "rest", delay_ms = math.floor(d * 1000), count = 2 })))
    local first = curl_bg("/api/v2/notifications/channels", auth)
    emulator.sleep(0.2)
    -- while it waits, the emulator answers other requests at once
    local st, dt = timed(function() return emu:admin("GET", "stats") end)
    assert.equal(200, st)
    assert.is_true(dt < d / 2, "stats took " .. dt)
    st, dt = timed(oauth)
    assert.equal(200, st)
    assert.is_true(dt < d / 2, "OAuth took " .. dt)
    -- the second REST request is delayed too, with its normal answer
    local body
    st, dt = timed(function()
      local s, b = emu:rest(tok, "POST", "/channels")
      body = b
      return s
    end)
    assert.equal(200, st)
    assert.is_string(body.id)
    assert.is_true(dt >= d, "second REST request took " .. dt)
    local s1, t1 = first()
    assert.equal(200, s1)
    assert.is_true(t1 >= d, "first REST request took " .. tostring(t1))
    -- the third is not
    st, dt = timed(function() return emu:rest(tok, "GET", "/channels") end)
    assert.equal(200, st)
    assert.is_true(dt < d / 2, "third REST request took " .. dt)
  end)

  it("answers a status late when status and delay_ms are combined", function()
    local d = 0.8 * SLOW
    assert.equal(200, (emu:admin("POST", "faults/http",
      { target = "oauth", status = 503, delay_ms = math.floor(d * 1000), count = 1 })))
    local st, dt = timed(oauth)
    assert.equal(503, st)
    assert.is_true(dt >= d, "the 503 came after " .. dt)
    st, dt = timed(oauth)
    assert.equal(200, st)
    assert.is_true(dt < d / 2, "the next answer took " .. dt)
  end)

  it("does no harm when a client hangs up during the delay", function()
    local function open_fds()
      local p = assert(io.popen("ls /proc/" .. emu.pid .. "/fd | wc -l"))
      local n = tonumber(p:read("*a"))
      p:close()
      return n
    end
    local tok = emu:token()
    local auth = { Authorization = "Bearer " .. tok }
    local base = open_fds()
    assert.equal(200, (emu:admin("POST", "faults/http",
      { target = "rest", delay_ms = 1000, count = 3 })))
    local gone = {}
    for i = 1, 3 do gone[i] = curl_bg("/api/v2/notifications/channels", auth, 0.3) end
    for i = 1, 3 do assert.equal(0, (gone[i]())) end      -- curl gave up: no answer
    local st, dt = timed(function() return emu:rest(tok, "GET", "/channels") end)
    assert.equal(200, st)                                 -- the fault was used up
    assert.is_true(dt < 0.5 * SLOW, "REST took " .. dt)
    -- once the answers fall due, the abandoned connections go (lws 4.1 sees the hang-up only
    -- when it writes); the sanitizer runs check that nothing leaks or is used after it is freed
    assert.truthy(emulator.wait_until(function() return open_fds() <= base end, 5 * SLOW),
      "the emulator still holds " .. open_fds() - base .. " more descriptors")
    assert.equal(200, (emu:admin("GET", "stats")))
  end)

  it("rejects bad fault requests, naming the field", function()
    local cases = {
      { { target = "db", status = 500 }, '"target"' },
      { { target = "rest" }, '"status"' },
      { { target = "rest", status = 200 }, '"status"' },
      { { target = "rest", status = 429, count = -1 }, '"count"' },
      { { target = "rest", status = 429, retry_after = "soon" }, '"retry_after"' },
      { { target = "rest", delay_ms = 0 }, '"delay_ms"' },
      { { target = "rest", delay_ms = "slow", count = 1 }, '"delay_ms"' },
      { { target = "oauth", status = 503, delay_ms = 600001 }, '"delay_ms"' },
    }
    for _, c in ipairs(cases) do
      local st, j = emu:admin("POST", "faults/http", c[1])
      assert.equal(400, st)
      assert.matches(c[2], j.message)
    end
    local st, j = emu:admin("POST", "faults/handshake", { mode = "slow", delay_ms = "x" })
    assert.equal(400, st)
    assert.matches('"delay_ms"', j.message)
    assert.equal(404, (emu:admin("POST", "faults/disk", {})))
  end)
end)

describe("emulator fault table", function()
  -- emulator/faults.c is the one table of fault kinds: every kind it serves is documented (a
  -- row POST faults/KIND in docs/emulator.md), listed by --help and set by --fault.
  it("documents, lists and accepts every kind it has", function()
    local emu = emulator.start {}
    finally(function() emu:stop() end)
    local st, j = emu:admin("GET", "faults")
    assert.equal(200, st)
    local f = assert(io.open("docs/emulator.md"))
    local doc = f:read("*a")
    f:close()
    local _, help = emulator.run_raw { "--help" }
    local n = 0
    for kind, summary in pairs(j.kinds) do
      n = n + 1
      assert.is_string(summary)
      assert.truthy(doc:find("`POST faults/" .. kind .. " ", 1, true), kind .. " has no doc row")
      assert.truthy(help:find(kind, 1, true), kind .. " is not in --help")
      local code, e = emu:admin("POST", "faults/" .. kind, {})
      assert.not_equal(404, code, kind)
      assert.not_matches("unknown fault kind", type(e) == "table" and e.message or "")
    end
    assert.is_true(n >= 6)
    assert.equal(200, (emu:admin("POST", "faults/clear", {})))
  end)
end)

describe("emulator start-up faults (--fault)", function()
  it("applies http and handshake faults from the command line", function()
    local emu = emulator.start { args = { "--fault", "http:target=oauth,status=503,count=1",
      "--fault", "handshake:mode=refuse,ms=8000" } }
    finally(function() emu:stop() end)
    local st = emu:http("POST", "/oauth/token", {
      headers = { Authorization = "Basic " .. emulator.basic("test-id:test-secret") },
      body = "grant_type=client_credentials" })
    assert.equal(503, st)
    local ch = emu:channel(emu:token(), { PRESENCE })
    assert.equal(503, emu:probe { channel = ch.id, duration_ms = 100 }.open.handshake)
  end)

  it("delays the first count REST requests with --fault http:...,delay_ms=", function()
    local d = 500 * SLOW
    local emu = emulator.start { tls = true,
      args = { "--fault", "http:target=rest,delay_ms=" .. d .. ",count=2" } }
    finally(function() emu:stop() end)
    local tok = emu:token()
    for i = 1, 3 do
      local t0 = emulator.now()
      assert.equal(200, (emu:rest(tok, "GET", "/channels")))
      local dt = (emulator.now() - t0) * 1000
      if i < 3 then
        assert.is_true(dt >= d, "request " .. i .. " took " .. dt .. " ms")
      else
        assert.is_true(dt < d / 2, "request 3 took " .. dt .. " ms")
      end
    end
  end)

  it("rejects a bad --fault with exit status 2, naming the flag", function()
    local rc, _, err = emulator.run_raw { "--client", "a:b", "--fault", "http:target=oauth" }
    assert.equal(2, rc)
    assert.matches("%-%-fault", err)
    assert.matches('"status"', err)
    rc, _, err = emulator.run_raw { "--client", "a:b", "--fault", "nonsense" }
    assert.equal(2, rc)
    assert.matches("%-%-fault", err)
  end)
end)
