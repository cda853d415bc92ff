-- bin/genesys-notify as a separate process against the emulator over TLS: events as JSON lines,
-- exit codes, signals, SIGHUP topic changes, /metrics through curl and promtool, a sentinel
-- secret in no output, the seed audit lines. The CLI runs under the interpreter of this run
-- (lua5.4 or luajit), or $(BINDIR)/lua_host in sanitizer builds (GN_BUILD points it at the
-- matching module).
local emulator = require "support.emulator"
local cjson = require "cjson.safe"
local notify = require "genesys.notify"

local C = require "support.cli"
local SLOW = C.SLOW
local SECRET = "SENTINEL-s3cr3t-7f1c9e"
local ID = "cli-id"
local TA, TB, TC = "v2.users.cli-a.presence", "v2.users.cli-b.presence", "v2.users.cli-c.presence"
local shq, read_file, write_file, capture = C.shq, C.read_file, C.write_file, C.capture
local interpreter, tmpdir, now_ms, wait_for = C.interpreter, C.tmpdir, C.now_ms, C.wait_for
local env_prefix, argv, spawn, run = C.env_prefix, C.argv, C.spawn, C.run

local defer = C.defer

describe("genesys-notify command line", function()
  local emu, base_args, env, tmp
  after_each(C.run_deferred)
  setup(function()
    emu = emulator.start { tls = true, clients = { ID .. ":" .. SECRET }, heartbeat_ms = 1000 }
    env = { GENESYSCLOUD_OAUTHCLIENT_ID = ID, GENESYSCLOUD_OAUTHCLIENT_SECRET = SECRET }
    base_args = { "--gateway", "https://localhost:" .. string.format("%d", emu.port),
      "--ca-file", emu.ca_file,
      "--backoff-base-ms", "50", "--backoff-max-ms", "200", "--backoff-jitter", "none",
      "--connect-timeout-ms", tostring(3000 * SLOW) }
    tmp = tmpdir()
  end)
  teardown(function()
    if emu then emu:stop() end
    if tmp then os.execute("rm -rf " .. shq(tmp)) end
  end)
  before_each(function() emu:admin("POST", "faults/clear", {}) end)

  local function args(extra)
    local a = {}
    for _, x in ipairs(base_args) do a[#a + 1] = x end
    for _, x in ipairs(extra) do a[#a + 1] = x end
    return a
  end

  -- The emulator's live channel of this run (the newest connected one subscribed to topic).
  local function live_channel(topic)
    for id, c in pairs(emu:stats().channels) do
      if c.connections > 0 then
        for _, t in ipairs(c.subscriptions or {}) do if t == topic then return id, c end end
      end
    end
  end

  local function scan_secret(text, what)
    assert.is_nil(text:find(SECRET, 1, true), what .. " holds the secret:\n" .. text)
    assert.is_nil(text:find(string.rep("%x", 64)), what .. " holds something like a token:\n" .. text)
  end

  describe("usage errors exit 2 and name the flag", function()
    local cases = {
      { { "--max-events", "many" }, '%-%-max%-events: expected an integer from 1 to' },
      { { "--duration" }, "%-%-duration: expected a value, got nothing" },
      { { "--health", "xml" }, '%-%-health: expected one of text, json, none, got "xml"' },
      { { "--gateway", "ftp://x" }, '%-%-gateway: expected a URL https://host%[:port%]' },
      { { "--metrics-listen", "nowhere" }, "%-%-metrics%-listen: expected HOST:PORT" },
      { { "--bogus" }, 'unknown flag "%-%-bogus"' },
      { { "--client-secret", "x" }, "%-%-client%-secret: not accepted" },
      { { "--topic", "users.bad" }, "%-%-topic #2: expected a Genesys topic name" },
      { { "--backoff-base-ms", "5000", "--backoff-max-ms", "100" }, "^genesys%-notify: %-%-backoff" },
      { { "--ca-file", "/nonexistent.pem" }, "%-%-ca%-file %(tls%.ca_file%): expected a readable PEM file" },
      { { "--client-secret-file", "/nonexistent" }, "%-%-client%-secret%-file: expected a readable file" },
      { { "--proxy", "ftp://u:pw@x:1" },
        '%-%-proxy %(proxy%): expected "http://%[user:password@%]host:port"' },
    }
    for _, c in ipairs(cases) do
      it(table.concat(c[1], " "), function()
        local a = { "--topic", TA }
        for _, x in ipairs(c[1]) do a[#a + 1] = x end
        local rc, out, err = run(args(a), env)
        assert.equals(2, rc, err)
        assert.matches(c[2], err)
        assert.equals("", out)
        scan_secret(err, "stderr")
      end)
    end

    it("no secret at all, and a bad line of --topics-file", function()
      local rc, _, err = run(args { "--topic", TA }, { GENESYSCLOUD_OAUTHCLIENT_ID = ID })
      assert.equals(2, rc)
      assert.matches("GENESYSCLOUD_OAUTHCLIENT_SECRET", err)
      write_file(tmp .. "/bad.txt", TA .. "\n# fine\nv2.users.\255x.presence\n")
      rc, _, err = run(args { "--topics-file", tmp .. "/bad.txt" }, env)
      assert.equals(2, rc)
      assert.matches("bad%.txt line 3: expected a Genesys topic name", err)
    end)

    it("--help and --version exit 0", function()
      local rc, out = run({ "--help" }, {})
      assert.equals(0, rc)
      assert.matches("Exit codes:", out)
      rc, out = run({ "--version" }, {})
      assert.equals(0, rc)
      assert.matches("^genesys%-notify %d", out)
    end)
  end)

  it("--proxy: REST and the WebSocket through a real proxy, its password in no output", function()
    local tinyproxy = require "support.tinyproxy"
    local px = tinyproxy.start { connect_ports = { emu.port }, auth = "cliuser:cli-proxy-pw" }
    defer(function() px:stop() end)
    local url = "http://cliuser:cli-proxy-pw@127.0.0.1:" .. string.format("%d", px.port)
    local cli = spawn(args { "--topic", TA, "--max-events", "2", "--health", "json",
      "--audit", "json", "--proxy", url }, env)
    defer(function() cli:cleanup() end)
    assert.truthy(wait_for(function() return #cli:health("connected") > 0 end), cli:err())
    assert.equals(200, (emu:admin("POST", "publish", { topic = TA, count = 2 })))
    assert.equals(0, cli:wait())
    assert.equals(2, #cli:events(), cli:out())
    -- both stacks went through it: the token and channel requests (REST) and the WebSocket
    local port = string.format(":%d", emu.port)
    local n = 0
    for _, c in ipairs(px:connects()) do if c:sub(-#port) == port then n = n + 1 end end
    assert.is_true(n >= 2, "CONNECTs to the emulator through the proxy: " .. n .. "\n" .. px:log())
    assert.is_nil((cli:out() .. cli:err()):find("cli-proxy-pw", 1, true), "the proxy password shows")
    scan_secret(cli:out() .. cli:err(), "output")
  end)

  it("prints one JSON line per event and stops after --max-events", function()
    local cli = spawn(args { "--topic", TA, "--max-events", "5", "--health", "json" }, env)
    defer(function() cli:cleanup() end)
    assert.truthy(wait_for(function() return #cli:health("connected") > 0 end), cli:err())
    local ch = live_channel(TA)
    assert.truthy(ch)
    local st, pub = emu:admin("POST", "publish", { topic = TA, count = 8 })
    assert.equals(200, st)
    assert.equals(0, cli:wait())
    local evs = cli:events()
    assert.equals(5, #evs, cli:out())
    for i, ev in ipairs(evs) do
      assert.equals(TA, ev.topic)
      assert.equals(ch, ev.channel_id)
      assert.equals(i, ev.body.sequence)
      assert.equals(pub.stream, ev.body.stream)
      assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", ev.correlation_id)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", ev.received)
      assert.is_true(ev.received_ms >= ev.body.published_ms)
    end
    local stop = cli:health("stop")[1]
    assert.equals("max_events", stop.reason)
    assert.equals(5, stop.events)
    scan_secret(cli:out() .. cli:err(), "output")
  end)

  it("exits 1, closing the client, when its stdout reader goes away", function()
    local d = tmpdir()
    defer(function() os.execute("rm -rf " .. shq(d)) end)
    local cmd = "(" .. env_prefix(env) .. " " .. shq(interpreter()) .. " bin/genesys-notify " ..
      argv(args { "--topic", TA, "--health", "json" }) .. " 2>" .. shq(d .. "/err") ..
      "; echo $? >" .. shq(d .. "/rc")  .. ") | head -n 1 >" .. shq(d .. "/out")
    os.execute("env -u LD_PRELOAD sh -c " .. shq(cmd) .. " >/dev/null 2>&1 </dev/null &")
    assert.truthy(wait_for(function() return (read_file(d .. "/err") or ""):find('"kind":"connected"') end),
      read_file(d .. "/err"))
    emu:admin("POST", "publish", { topic = TA, count = 1 })
    assert.truthy(wait_for(function() return (read_file(d .. "/out") or ""):find("\n") end))
    -- head has exited: the next events cannot be written
    emu:admin("POST", "publish", { topic = TA, count = 3 })
    local function rc_of() return (read_file(d .. "/rc") or ""):match("%d+") end -- not half written
    local rc = wait_for(rc_of, 20000)
    if not rc then emu:admin("POST", "publish", { topic = TA, count = 3 }) end
    rc = wait_for(rc_of, 20000)
    local err = read_file(d .. "/err")
    assert.equals("1", rc, err)
    assert.matches('"kind":"cli_error".-"error":"stdout: ', err)
    assert.matches('"kind":"stop".-"reason":"stdout"', err)
    assert.equals(1, select(2, read_file(d .. "/out"):gsub("\n", "")))
  end)

  it("takes an http:// gateway (a plain local test server)", function()
    local plain = emulator.start { clients = { ID .. ":" .. SECRET } }
    defer(function() plain:stop() end)
    local cli = spawn({ "--gateway", "http://127.0.0.1:" .. string.format("%d", plain.port), "--topic", TA,
      "--max-events", "2", "--health", "json" }, env)
    defer(function() cli:cleanup() end)
    assert.truthy(wait_for(function() return #cli:health("connected") > 0 end), cli:err())
    plain:admin("POST", "publish", { topic = TA, count = 2 })
    assert.equals(0, cli:wait())
    assert.equals(2, #cli:events())
  end)

  it("exits 0 at --duration", function()
    local t0 = now_ms()
    local rc, out, err = run(args { "--topic", TA, "--duration", "1", "--health", "json" }, env)
    assert.equals(0, rc, err)
    assert.is_true(now_ms() - t0 >= 1000)
    assert.equals("", out)
    assert.matches('"kind":"stop","state":"cli".-"reason":"duration"', err)
    assert.is_nil(err:find("\27", 1, true), "a status line on a stderr that is not a terminal")
  end)

  for _, sig in ipairs { "INT", "TERM" } do
    it("closes cleanly on SIG" .. sig, function()
      local cli = spawn(args { "--topic", TB, "--health", "json" }, env)
      defer(function() cli:cleanup() end)
      assert.truthy(wait_for(function() return #cli:health("connected") > 0 end), cli:err())
      local ch = live_channel(TB)
      assert.truthy(ch)
      cli:signal(sig)
      assert.equals(0, cli:wait())
      assert.equals("signal " .. sig, cli:health("stop")[1].reason)
      -- the emulator saw the socket closed, not left open
      assert.truthy(wait_for(function() return emu:stats().channels[ch].connections == 0 end, 5000))
    end)
  end

  it("exits 3 when the credentials are refused; the secret is in no output, whatever the mode", function()
    for _, health in ipairs { "text", "json" } do
      for _, audit in ipairs { "pipe", "json", "seed" } do
        local bad = { GENESYSCLOUD_OAUTHCLIENT_ID = ID, GENESYSCLOUD_OAUTHCLIENT_SECRET = SECRET .. "-wrong" }
        local rc, out, err = run(args { "--topic", TA, "--health", health, "--audit", audit }, bad)
        assert.equals(3, rc, err)
        assert.matches("gave_up", err)
        assert.matches("auth", err)
        scan_secret(out .. err, health .. "/" .. audit)
      end
    end
    -- from a file too
    write_file(tmp .. "/secret", SECRET .. "-wrong\n")
    os.execute("chmod 600 " .. shq(tmp .. "/secret")) -- a secret file others may read is refused
    local rc, out, err = run(args { "--topic", TA, "--client-secret-file", tmp .. "/secret" },
      { GENESYSCLOUD_OAUTHCLIENT_ID = ID })
    assert.equals(3, rc, err)
    scan_secret(out .. err, "secret file run")
  end)

  it("exits 4 when it gives up (--max-retries)", function()
    emu:admin("POST", "faults/handshake", { mode = "refuse" })
    local rc, out, err = run(args { "--topic", TA, "--max-retries", "2", "--health", "json" }, env)
    assert.equals(4, rc, err)
    assert.equals("", out)
    assert.matches('"kind":"gave_up".-"reason":"max_retries"', err)
  end)

  it("SIGHUP applies the topics file's difference on the live socket", function()
    local file = tmp .. "/topics.txt"
    write_file(file, "# start\n" .. TA .. "\n")
    local cli = spawn(args { "--topics-file", file, "--health", "json" }, env)
    defer(function() cli:cleanup() end)
    assert.truthy(wait_for(function() return #cli:health("connected") > 0 end), cli:err())
    local ch, before = live_channel(TA)
    assert.truthy(ch)
    assert.equals(1, before.handshakes)
    write_file(file, TB .. "   # b\n\n" .. TC .. "\n")
    cli:signal("HUP")
    local subs = wait_for(function()
      local c = emu:stats().channels[ch]
      local s = c.subscriptions
      table.sort(s)
      return #s == 2 and s[1] == TB and s[2] == TC and c
    end, 10000)
    assert.truthy(subs, cli:err())
    assert.equals(1, subs.handshakes)    -- the same socket: no reconnect
    assert.equals(1, subs.connections)
    local r = cli:health("reload")[1]
    assert.equals("applied", r.event)
    assert.equals(2, r.added)
    assert.equals(1, r.removed)
    -- an event on a new topic arrives
    emu:admin("POST", "publish", { topic = TC, count = 1 })
    assert.truthy(wait_for(function() return #cli:events() == 1 end), cli:err())
    assert.equals(TC, cli:events()[1].topic)
    -- a bad file is refused and changes nothing
    write_file(file, "users.nope\n")
    cli:signal("HUP")
    assert.truthy(wait_for(function() return #cli:health("reload") == 2 end), cli:err())
    assert.equals("refused", cli:health("reload")[2].event)
    assert.matches("line 1", cli:health("reload")[2].error)
    assert.equals(2, #emu:stats().channels[ch].subscriptions)
    cli:signal("TERM")
    assert.equals(0, cli:wait())
    assert.equals(1, emu:stats().channels[ch].handshakes)
    assert.equals(0, #cli:health("disconnected"))
  end)

  it("serves Prometheus text at /metrics that promtool accepts", function()
    local cli = spawn(args { "--topic", TA, "--health", "json", "--name", "cli-test",
      "--metrics-listen", "127.0.0.1:0" }, env)
    defer(function() cli:cleanup() end)
    local url = wait_for(function()
      local l = cli:health("metrics_listen")[1]
      return l and l.url
    end)
    assert.truthy(url, cli:err())
    assert.truthy(wait_for(function() return #cli:health("connected") > 0 end), cli:err())
    local ch = live_channel(TA)
    emu:admin("POST", "channels/" .. ch .. "/reset", {})
    assert.truthy(wait_for(function() return #cli:health("restored") > 0 end), cli:err())
    local text = capture("curl -sS --max-time 10 " .. shq(url))
    assert.matches('genesys_notify_up{client="cli%-test",state="open"} 1', text)
    assert.matches('genesys_notify_attempts_total{client="cli%-test"} 2', text)
    assert.matches('genesys_notify_reconnect_latency_seconds_count{client="cli%-test"} 2', text)
    local check = capture("curl -sS --max-time 10 " .. shq(url) ..
      " | promtool check metrics 2>&1; echo rc=$?")
    assert.matches("rc=0", check)
    -- other paths and methods, an oversized request
    -- HEAD: the head only; a request line that is not HTTP: 400
    local head = capture("curl -sS -I --max-time 10 " .. shq(url))
    assert.matches("^HTTP/1%.1 200 OK\r\n", head)
    assert.matches("Content%-Length: %d+", head)
    local port0 = url:match(":(%d+)/")
    local bad = capture("bash -c " .. shq("exec 3<>/dev/tcp/127.0.0.1/" .. port0 ..
      "; printf 'GARBAGE\\r\\n\\r\\n' >&3; timeout 5 cat <&3"))
    assert.matches("^HTTP/1%.1 400 Bad Request", bad)
    local other = url:gsub("/metrics$", "/x")
    assert.equals("404", capture("curl -s -o /dev/null -w '%{http_code}' " .. shq(other)))
    assert.equals("405", capture("curl -s -o /dev/null -w '%{http_code}' -X POST " .. shq(url)))
    assert.equals("431", capture("curl -s -o /dev/null -w '%{http_code}' -H " ..
      shq("X-Big: " .. string.rep("a", 9000)) .. " " .. shq(url)))
    -- 20 connections that never send a request (and stay for 60 s) fill the 16 slots; each is
    -- dropped after 5 s, so a real scrape waits at most that long (without the per-exchange
    -- timeout it would wait for the idle ones, past curl's 15 s)
    local port = url:match(":(%d+)/")
    local holder = capture("setsid bash -c " .. shq("for i in $(seq 20); do (exec 3<>/dev/tcp/127.0.0.1/" ..
      port .. "; sleep 60) & done; wait") .. " >/dev/null 2>&1 & echo $!"):match("%d+")
    defer(function() os.execute("kill -KILL -" .. holder .. " 2>/dev/null") end) -- dash: no "--"
    emulator.sleep(0.3)
    local code = capture("curl -s -o /dev/null -w '%{http_code}' --max-time 15 " .. shq(url))
    assert.equals("200", code)
    cli:signal("INT")
    assert.equals(0, cli:wait())
    scan_secret(text .. cli:err(), "metrics")
  end)

  it("--audit seed writes exactly the three AUDIT| line types", function()
    local afile = tmp .. "/audit.log"
    os.remove(afile)
    local cli = spawn(args { "--topic", TA, "--health", "json", "--audit", "seed", "--audit-file", afile },
      env)
    defer(function() cli:cleanup() end)
    assert.truthy(wait_for(function() return #cli:health("connected") > 0 end), cli:err())
    -- a reset (attempt, success), then a refused handshake (fail) before the next success
    emu:admin("POST", "channels/" .. live_channel(TA) .. "/reset", {})
    assert.truthy(wait_for(function() return #cli:health("connected") > 1 end), cli:err())
    -- a window long enough that the reset's first attempt falls inside it on a loaded machine (at
    -- 300 ms a run with the cores oversubscribed connected after the window: no RECONNECT_FAIL)
    emu:admin("POST", "faults/handshake", { mode = "refuse", ms = 1500 * SLOW })
    emu:admin("POST", "channels/" .. live_channel(TA) .. "/reset", {})
    assert.truthy(wait_for(function() return #cli:health("connected") > 2 end), cli:err())
    cli:signal("TERM")
    assert.equals(0, cli:wait())
    local seen = {}
    local text = read_file(afile) or ""
    for line in text:gmatch("[^\n]+") do
      local kind
      if line:find("^AUDIT|RECONNECT_ATTEMPT|connId=%d+|attempt=%d+|delayMs=%d+$") then kind = "attempt"
      elseif line:find("^AUDIT|RECONNECT_SUCCESS|connId=%d+|latencyMs=%d+|successRate=%d%.%d%d$") then
        kind = "success"
      elseif line:find("^AUDIT|RECONNECT_FAIL|connId=%d+|attempt=%d+|reason=[%w_:]+$") then kind = "fail" end
      assert.truthy(kind, "not a seed audit line: " .. line)
      seen[kind] = (seen[kind] or 0) + 1
    end
    assert.is_true((seen.attempt or 0) >= 2, text)
    assert.equals(2, seen.success, text)
    assert.is_true((seen.fail or 0) >= 1, text)
    assert.matches("AUDIT|RECONNECT_FAIL|connId=2|attempt=%d+|reason=handshake\n", text)
    scan_secret(text .. cli:err() .. cli:out(), "audit")
  end)

  -- script(1) gives the CLI a terminal for stderr while stdout goes to a file.
  local function on_terminal(extra)
    local d = tmpdir()
    local cmd = env_prefix(env) .. " " .. shq(interpreter()) .. " bin/genesys-notify " ..
      argv(args(extra)) .. " >" .. shq(d .. "/out")
    os.execute("env -u LD_PRELOAD sh -c " .. shq("script -qfec " .. shq(cmd) .. " /dev/null >" ..
      shq(d .. "/tty") .. " 2>&1 </dev/null; echo $? >" .. shq(d .. "/rc")) .. " >/dev/null 2>&1 &")
    return d
  end

  it("shows a live status line on a terminal stderr only, never in stdout", function()
    local d = on_terminal { "--topic", TA, "--duration", tostring(4 * SLOW) }
    defer(function() os.execute("rm -rf " .. shq(d)) end)
    assert.truthy(wait_for(function() return (read_file(d .. "/tty") or ""):find("connected", 1, true) end),
      read_file(d .. "/tty"))
    emu:admin("POST", "publish", { topic = TA, count = 3 })
    assert.truthy(wait_for(function() return (read_file(d .. "/rc") or ""):match("%d") end, 20000))
    local tty, out = read_file(d .. "/tty"), read_file(d .. "/out")
    assert.equals("0", read_file(d .. "/rc"):match("%d+"), tty)
    assert.matches("\r\27%[K%[open%] events 3 %([%d%.]+/s%)  reconnects 0  last gap %-", tty)
    local n = 0
    for line in out:gmatch("[^\n]+") do
      n = n + 1
      assert.truthy(cjson.decode(line), line)
    end
    assert.equals(3, n)
    assert.is_nil(out:find("\27", 1, true))
    -- --no-status: none
    local d2 = on_terminal { "--topic", TA, "--duration", "1", "--no-status" }
    defer(function() os.execute("rm -rf " .. shq(d2)) end)
    assert.truthy(wait_for(function() return (read_file(d2 .. "/rc") or ""):match("%d") end, 20000))
    assert.matches("stop", read_file(d2 .. "/tty"))
    assert.is_nil(read_file(d2 .. "/tty"):find("\27[K", 1, true))
  end)

  it("--resync prints the state read back after a gap as lines marked resync", function()
    local topic = "v2.users.cliresync.presence"
    emu:admin("POST", "users/cliresync", { presence = "Available" })
    local cli = spawn(args { "--topic", topic, "--health", "json", "--resync", "presence" }, env)
    defer(function() cli:cleanup() end)
    assert.truthy(wait_for(function() return #cli:health("connected") > 0 end), cli:err())
    emu:admin("POST", "faults/handshake", { mode = "refuse", ms = 800 })
    emu:admin("POST", "channels/" .. live_channel(topic) .. "/reset", {})
    emu:admin("POST", "users/cliresync", { presence = "Busy" })
    local line = wait_for(function()
      for _, ev in ipairs(cli:events()) do if ev.resync then return ev end end
    end, 20000)
    assert.truthy(line, cli:out() .. cli:err())
    assert.equals(topic, line.topic)
    assert.equals("Busy", line.body.presenceDefinition.systemPresence)
    assert.equals("presence", line.resync.family)
    local restored = cli:health("restored")[1]
    assert.equals(math.floor(restored.deaf_from_ms), line.resync.deaf_from_ms)
    local rc = run(args { "--topic", topic, "--resync", "nope", "--duration", "1" }, env)
    assert.equals(2, rc)
  end)

  it("the library's audit option offers the seed lines too", function()
    local ctx = { connection_id = 7, success_rate = 0.75 }
    assert.equals("AUDIT|RECONNECT_ATTEMPT|connId=3|attempt=2|delayMs=327",
      notify.audit_line("seed", { kind = "attempt", connection_id = 3, attempt = 2, delay_ms = 326.8 }, ctx))
    assert.equals("AUDIT|RECONNECT_SUCCESS|connId=4|latencyMs=12|successRate=0.75",
      notify.audit_line("seed", { kind = "connected", connection_id = 4, attempt = 1, latency_ms = 12 }, ctx))
    assert.equals("AUDIT|RECONNECT_FAIL|connId=7|attempt=1|reason=rate_limited",
      notify.audit_line("seed", { kind = "failed", attempt = 1, reason = "rate_limited" }, ctx))
    assert.equals("AUDIT|RECONNECT_FAIL|connId=7|attempt=5|reason=gave_up:max_retries",
      notify.audit_line("seed", { kind = "gave_up", attempts = 5, reason = "max_retries" }, ctx))
    assert.is_nil(notify.audit_line("seed", { kind = "connected", connection_id = 1, attempt = 0 }, ctx))
    assert.is_nil(notify.audit_line("seed", { kind = "token", event = "refreshed" }, ctx))
    assert.has_error(function()
      notify.new { gateway = { host = "localhost", port = 1 }, client_id = "a", client_secret = "b",
        audit = { format = "seedy" } }
    end, 'genesys.notify: audit.format: expected "pipe", "json" or "seed", got "seedy"')
  end)
end)
