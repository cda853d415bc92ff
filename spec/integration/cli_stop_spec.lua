-- bin/genesys-notify stops and answers whatever its reader and its scrapers do (issue 22, "a CLI
-- that always stops"), against the emulator over TLS, as a separate process: stdout a FIFO
-- nobody reads (SIGTERM still stops it, /metrics still answers, and once someone reads nothing
-- is lost), the library's topic limit, the secret file checked as ssh checks a key, and the
-- /metrics listener under a slow flood of idle connections, bare-LF requests, bad and oversize
-- requests. No timing is asserted: each wait has a generous deadline.
local emulator = require "support.emulator"
local C = require "support.cli"

local SLOW = C.SLOW
local SECRET = "SENTINEL-s3cr3t-stop-42"
local ID = "cli-stop-id"
local TA = "v2.users.cli-stop-a.presence"
local shq, read_file, write_file, capture = C.shq, C.read_file, C.write_file, C.capture
local wait_for, spawn, run = C.wait_for, C.spawn, C.run

local defer = C.defer

-- A background shell command in its own process group; returns a function that kills the group.
local function background(cmd)
  local pid = capture("setsid sh -c " .. shq(cmd) .. " >/dev/null 2>&1 </dev/null & echo $!"):match("%d+")
  assert(pid, "could not start: " .. cmd)
  -- the whole group (dash's kill takes "-PID" after the signal, and no "--")
  return function() os.execute("kill -KILL -" .. pid .. " 2>/dev/null") end
end

local function http_code(url, extra, max_s)
  return capture("curl -s -o /dev/null -w '%{http_code}' --max-time " .. (max_s or 10) * SLOW .. " " ..
    (extra or "") .. " " .. shq(url))
end

-- Sends raw bytes to 127.0.0.1:port and returns what came back (python3: exact bytes, no curl
-- fixes). With `more`, those bytes follow 0.5 s later (the server has answered by then); a send
-- that fails shows as "<send: Error>" in the result, a read that fails as "<Error>".
local function raw_request(port, bytes, more)
  local script = "import socket,sys,time\n" ..
    "s=socket.create_connection(('127.0.0.1'," .. port .. "))\n" ..
    "s.settimeout(" .. 10 * SLOW .. ")\n" ..
    "parts=open(sys.argv[1],'rb').read().split(b'\\0MORE\\0')\n" ..
    "out=b''\n" ..
    "for i,p in enumerate(parts):\n" ..
    "  if i: time.sleep(0.5)\n" ..
    "  try: s.sendall(p)\n" ..
    "  except Exception as e: out+=('<send: '+type(e).__name__+'>').encode()\n" ..
    "try:\n" ..
    "  while True:\n" ..
    "    b=s.recv(65536)\n" ..
    "    if not b: break\n" ..
    "    out+=b\n" ..
    "except Exception as e:\n" ..
    "  out+=('<'+type(e).__name__+'>').encode()\n" ..
    "sys.stdout.buffer.write(out)\n"
  local d = C.tmpdir()
  write_file(d .. "/req", bytes .. (more and ("\0MORE\0" .. more) or ""))
  write_file(d .. "/c.py", script)
  local out = capture("python3 " .. shq(d .. "/c.py") .. " " .. shq(d .. "/req"))
  os.execute("rm -rf " .. shq(d))
  return out
end

describe("genesys-notify always stops and answers", function()
  local emu, env, tmp
  setup(function()
    emu = emulator.start { tls = true, clients = { ID .. ":" .. SECRET }, heartbeat_ms = 1000,
      args = { "--max-channels", "40" } }
    env = { GENESYSCLOUD_OAUTHCLIENT_ID = ID, GENESYSCLOUD_OAUTHCLIENT_SECRET = SECRET }
    tmp = C.tmpdir()
  end)
  teardown(function()
    if emu then emu:stop() end
    if tmp then os.execute("rm -rf " .. shq(tmp)) end
  end)
  before_each(function() emu:admin("POST", "faults/clear", {}) end)
  after_each(C.run_deferred)

  local function args(extra)
    local a = { "--gateway", "https://localhost:" .. string.format("%d", emu.port), "--ca-file", emu.ca_file,
      "--backoff-base-ms", "50", "--backoff-max-ms", "200", "--backoff-jitter", "none",
      "--connect-timeout-ms", tostring(3000 * SLOW), "--health", "json" }
    for _, x in ipairs(extra) do a[#a + 1] = x end
    return a
  end

  local function metrics_url(cli)
    return wait_for(function()
      local l = cli:health("metrics_listen")[1]
      return l and l.url
    end)
  end

  -- Starts the CLI with stdout into a FIFO that a process holds open without reading.
  local function cli_into_fifo(extra)
    local fifo = tmp .. "/fifo-" .. tostring(math.random(1e9))
    assert(os.execute("mkfifo " .. shq(fifo)))
    defer(function() os.remove(fifo) end)
    local stop_holder = background("exec sleep 600 <" .. shq(fifo))
    defer(stop_holder)
    local d = C.tmpdir()
    defer(function() os.execute("rm -rf " .. shq(d)) end)
    local cmd = C.env_prefix(env) .. " " .. shq(C.interpreter()) .. " bin/genesys-notify " ..
      C.argv(args(extra)) .. " >" .. shq(fifo) .. " 2>" .. shq(d .. "/err") ..
      " </dev/null & echo $! >" .. shq(d .. "/pid") .. "; wait $!; echo $? >" .. shq(d .. "/rc.tmp") ..
      "; mv " .. shq(d .. "/rc.tmp") .. " " .. shq(d .. "/rc")
    os.execute("env -u LD_PRELOAD sh -c " .. shq(cmd) .. " >/dev/null 2>&1 &")
    local pid = wait_for(function() return (read_file(d .. "/pid") or ""):match("%d+") end)
    assert(pid, "the CLI did not start")
    local h = {}
    function h.err() return read_file(d .. "/err") or "" end
    function h.health(_, kind)
      local out = {}
      for line in h.err():gmatch("[^\n]+") do
        local v = require("cjson.safe").decode(line)
        if type(v) == "table" and (not kind or v.kind == kind) then out[#out + 1] = v end
      end
      return out
    end
    function h.rc() return tonumber((read_file(d .. "/rc") or ""):match("%d+")) end
    function h.signal(_, s) os.execute("kill -" .. s .. " " .. pid) end
    defer(function()
      if not h.rc() then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
      C.no_sanitizer_report(h.err())
    end)
    h.fifo = fifo
    return h
  end

  it("SIGTERM stops it while stdout is a FIFO nobody reads, and /metrics answers meanwhile", function()
    local cli = cli_into_fifo { "--topic", TA, "--metrics-listen", "127.0.0.1:0" }
    local url = metrics_url(cli)
    assert.truthy(url, cli.err())
    assert.truthy(wait_for(function() return #cli:health("connected") > 0 end), cli.err())
    -- far more than a pipe holds (64 KiB) and than the command buffers before it pauses (1 MiB)
    assert.equals(200, (emu:admin("POST", "publish", { topic = TA, count = 3000, size = 1000 })))
    assert.truthy(wait_for(function()
      local st, j = emu:admin("GET", "publish")
      return st == 200 and j.streams[1] and j.streams[1].done
    end, 30000))
    emulator.sleep(1)
    -- stdout is full (the FIFO's 64 KiB and more): scrapes are answered all the same
    for _ = 1, 3 do assert.equals("200", http_code(url)) end
    -- lines wait in the command's buffer, and /metrics says so
    local waiting = wait_for(function()
      local text = capture("curl -s --max-time " .. 10 * SLOW .. " " .. shq(url))
      local n = tonumber(text:match("genesys_notify_cli_output_pending_bytes{[^}]*} (%d+)"))
      return n and n > 0 and n
    end, 30000)
    assert.truthy(waiting, "no output pending in /metrics")
    cli:signal("TERM")
    local rc = wait_for(function() return cli.rc() end, 20000)
    assert.equals(0, rc, cli.err())
    local stop = cli:health("stop")[1]
    assert.equals("signal TERM", stop.reason)
    assert.is_true((stop.output_unwritten_bytes or 0) > 0, cli.err())
  end)

  it("SIGINT stops it the same way", function()
    local cli = cli_into_fifo { "--topic", TA }
    assert.truthy(wait_for(function() return #cli:health("connected") > 0 end), cli.err())
    assert.equals(200, (emu:admin("POST", "publish", { topic = TA, count = 3000, size = 1000 })))
    emulator.sleep(1)
    cli:signal("INT")
    assert.equals(0, wait_for(function() return cli.rc() end, 20000), cli.err())
    assert.equals("signal INT", cli:health("stop")[1].reason)
  end)

  it("loses nothing while its reader is stuck: the library pauses, then every event comes", function()
    local n = 2500
    local cli = cli_into_fifo { "--topic", TA, "--max-events", tostring(n) }
    assert.truthy(wait_for(function() return #cli:health("connected") > 0 end), cli.err())
    assert.equals(200, (emu:admin("POST", "publish", { topic = TA, count = n, size = 1000 })))
    emulator.sleep(2 * SLOW) -- the reader is stuck meanwhile
    local out = tmp .. "/fifo.out"
    local stop_reader = background("exec cat " .. shq(cli.fifo) .. " >" .. shq(out))
    defer(stop_reader)
    assert.equals(0, wait_for(function() return cli.rc() end, 60000), cli.err())
    local seqs, lines = {}, 0
    for line in (read_file(out) or ""):gmatch("[^\n]+") do
      lines = lines + 1
      local ev = assert(require("cjson.safe").decode(line), line)
      seqs[ev.body.sequence] = true
    end
    assert.equals(n, lines)
    for i = 1, n do assert.truthy(seqs[i], "event " .. i .. " missing") end
    assert.equals(0, #cli:health("output_dropped"))
  end)

  it("--pause-max-ms reaches the library: a reader stuck past it costs events, all reported", function()
    local cli = cli_into_fifo { "--topic", TA, "--pause-max-ms", "500", "--metrics-listen", "127.0.0.1:0" }
    local url = metrics_url(cli)
    assert.truthy(url, cli.err())
    assert.truthy(wait_for(function() return #cli:health("connected") > 0 end), cli.err())
    -- more than the command buffers (1 MiB) and the library queues (10,000 events) together
    assert.equals(200, (emu:admin("POST", "publish", { topic = TA, count = 20000, size = 300 })))
    -- /metrics shows it live: the library paused the socket, then dropped past 500 ms
    local function metric(text, name) return tonumber(text:match(name .. "{[^}]*} (%d+)")) end
    local text = wait_for(function()
      local t = capture("curl -s --max-time " .. 10 * SLOW .. " " .. shq(url))
      return (metric(t, "genesys_notify_events_dropped_total") or 0) > 0 and t
    end, 60000)
    assert.truthy(text, cli.err():sub(-3000))
    assert.is_true(metric(text, "genesys_notify_pauses_total") >= 1)
    -- health lines wait behind the events: once a reader comes, the drops are reported there too
    defer(background("exec cat " .. shq(cli.fifo) .. " >/dev/null"))
    assert.truthy(wait_for(function()
      for _, h in ipairs(cli:health("backpressure")) do
        if h.event == "dropping" and h.pause_max_ms == 500 then return h end
      end
    end, 60000), cli.err():sub(-3000))
    cli:signal("TERM")
    assert.equals(0, wait_for(function() return cli.rc() end, 20000), cli.err():sub(-3000))
    local rc, _, err = run(args { "--topic", TA, "--pause-max-ms", "-1" }, env)
    assert.equals(2, rc)
    assert.matches("%-%-pause%-max%-ms: expected an integer from 0 to 86400000", err)
  end)

  it("exits 1 naming stdout when it starts with stdout closed", function()
    local out = capture(C.env_prefix(env) .. " " .. shq(C.interpreter()) .. " bin/genesys-notify " ..
      C.argv(args { "--topic", TA }) .. " 2>&1 >&- </dev/null; echo rc=$?")
    assert.matches("genesys%-notify: stdout: fd 1: Bad file descriptor", out)
    assert.matches("rc=1\n", out)
  end)

  local function topics_file(name, n)
    local t = {}
    for i = 1, n do t[i] = string.format("v2.users.cli-%05d.presence", i) end
    local path = tmp .. "/" .. name
    write_file(path, table.concat(t, "\n") .. "\n")
    return path
  end

  -- 20,000 topics are accepted; within the credential's channel budget (20 channels, one kept
  -- spare for rollovers) 19,000 are subscribed and the library reports the other 1,000
  for _, n in ipairs { 1001, 20000 } do
    it("takes " .. n .. " topics, the library's limit being 20,000", function()
      local cli = spawn(args { "--topics-file", topics_file("topics" .. n, n) }, env)
      defer(function() cli:cleanup() end)
      local fit = math.min(n, 19000)
      local subscribed = wait_for(function()
        local total = 0
        for _, c in pairs(emu:stats().channels) do
          if c.connections > 0 then
            for _, t in ipairs(c.subscriptions or {}) do
              if t:find("^v2%.users%.cli%-%d+%.presence$") then total = total + 1 end
            end
          end
        end
        return total == fit and total
      end, 60000)
      assert.equals(fit, subscribed, cli:err():sub(-2000))
      if n > fit then
        local rejected = 0
        for _, h in ipairs(cli:health("subscription")) do
          if h.event == "rejected" and h.reason == "channel_budget" then rejected = rejected + h.count end
        end
        assert.equals(n - fit, rejected, cli:err():sub(-2000))
      end
      cli:signal("TERM")
      assert.equals(0, cli:wait())
    end)
  end

  it("refuses 20,001 topics, and --help says the limit", function()
    local rc, _, err = run(args { "--topics-file", topics_file("topics20001", 20001) }, env)
    assert.equals(2, rc)
    assert.matches("at most 20000 topics", err)
    local _, help = run({ "--help" }, {})
    assert.matches("At most 20000 topics", help)
  end)

  describe("the secret file", function()
    local function secret_file(name, content, mode)
      local path = tmp .. "/" .. name
      write_file(path, content)
      assert(os.execute("chmod " .. mode .. " " .. shq(path)))
      return path
    end
    local id_only = function() return { GENESYSCLOUD_OAUTHCLIENT_ID = ID } end

    for _, mode in ipairs { "644", "640", "604", "660" } do
      it("is refused with mode " .. mode .. ", naming the file and the fix", function()
        local path = secret_file("open" .. mode, SECRET .. "\n", mode)
        local rc, out, err = run(args { "--topic", TA, "--client-secret-file", path }, id_only())
        assert.equals(2, rc, err)
        assert.matches("%-%-client%-secret%-file: " .. path:gsub("%p", "%%%0") .. " has mode 0" .. mode, err)
        assert.matches("chmod 600 " .. path:gsub("%p", "%%%0"), err)
        assert.is_nil((out .. err):find(SECRET, 1, true))
      end)
    end

    it("is refused when another user owns it (as root: a file given to nobody)", function()
      if capture("id -u"):match("%d+") ~= "0" then return pending("needs root to give a file away") end
      local path = secret_file("theirs", SECRET .. "\n", "600")
      assert(os.execute("chown 65534 " .. shq(path)))
      local rc, _, err = run(args { "--topic", TA, "--client-secret-file", path }, id_only())
      assert.equals(2, rc, err)
      assert.matches(path:gsub("%p", "%%%0") .. " is owned by uid 65534, not by this user", err)
    end)

    for name, content in pairs {
      newline = SECRET .. "\n", crlf = SECRET .. "\r\n", blanks = "  " .. SECRET .. " \t\n\n",
      bom = "\239\187\191" .. SECRET .. "\n", bom_crlf = "\239\187\191" .. SECRET .. " \r\n",
    } do
      it("takes the secret with a " .. name .. " around it", function()
        local path = secret_file("ok-" .. name, content, "600")
        local cli = spawn(args { "--topic", TA, "--client-secret-file", path }, id_only())
        defer(function() cli:cleanup() end)
        assert.truthy(wait_for(function()
          return #cli:health("connected") > 0 or cli:err():find("gave_up")
        end), cli:err())
        assert.equals(1, #cli:health("connected"), cli:err())
        cli:signal("TERM")
        assert.equals(0, cli:wait())
      end)
    end

    for name, c in pairs {
      two_lines = { SECRET .. "\nsecond\n", "holds more than one line" },
      inner_blank = { "SENTINEL s3cr3t\n", "holds a blank or a control character at byte 9" },
      empty = { "\239\187\191 \n", "is empty" },
      utf16 = { "\255\254S\0E\0\n\0", "is UTF%-16 text" },
    } do
      it("names what is wrong: " .. name, function()
        local path = secret_file("bad-" .. name, c[1], "600")
        local rc, out, err = run(args { "--topic", TA, "--client-secret-file", path }, id_only())
        assert.equals(2, rc, err)
        assert.matches("%-%-client%-secret%-file: " .. path:gsub("%p", "%%%0") .. " " .. c[2], err)
        assert.is_nil((out .. err):find(SECRET, 1, true))
      end)
    end
  end)

  describe("the /metrics listener", function()
    local cli, url, port
    before_each(function()
      cli = spawn(args { "--topic", TA, "--metrics-listen", "127.0.0.1:0" }, env)
      url = metrics_url(cli)
      assert.truthy(url, cli:err())
      port = url:match(":(%d+)/")
    end)
    after_each(function()
      cli:signal("TERM")
      assert.equals(0, cli:wait())
      cli:cleanup()
    end)

    it("keeps answering scrapes under 16 idle connections renewed every 4.5 s", function()
      -- each round opens 16 connections that send nothing, holds them 4.5 s, and opens the next
      -- 16 before closing them (a slowloris that never lets the server's idle timeout free a slot)
      local flood = "import socket,time\n" ..
        "old=[]\n" ..
        "while True:\n" ..
        "  new=[socket.create_connection(('127.0.0.1'," .. port .. ")) for _ in range(16)]\n" ..
        "  for s in old: s.close()\n" ..
        "  old=new\n" ..
        "  time.sleep(4.5)\n"
      write_file(tmp .. "/flood.py", flood)
      defer(background("exec python3 " .. shq(tmp .. "/flood.py")))
      emulator.sleep(0.5)
      -- each scrape is given 3 s (a loopback scrape takes milliseconds): less than the 4.5 s a
      -- scrape queued behind the flood's connections would wait for the next renewal
      local answered, codes = 0, {}
      for i = 1, 12 do
        local code = http_code(url, nil, 3)
        codes[#codes + 1] = code
        if code == "200" then answered = answered + 1 end
        if i < 12 then emulator.sleep(0.7) end
      end
      assert.equals(12, answered, table.concat(codes, " "))
    end)

    it("answers a bare-LF request", function()
      local lf = raw_request(port, "GET /metrics HTTP/1.1\nHost: x\n\n")
      assert.matches("^HTTP/1%.1 200 OK\r\n", lf)
      assert.matches("genesys_notify_up", lf)
      local lf_head = raw_request(port, "HEAD /metrics HTTP/1.0\n\n")
      assert.matches("^HTTP/1%.1 200 OK\r\n", lf_head)
    end)

    it("answers a 20 KB header with 431, not a reset", function()
      -- curl sends the whole 20 KB: the 431 must reach it after the server stopped reading
      assert.equals("431", http_code(url, "-H " .. shq("X-Big: " .. string.rep("a", 20000))))
      local big = raw_request(port,
        "GET /metrics HTTP/1.1\r\nX-Big: " .. string.rep("b", 20000) .. "\r\n\r\n")
      assert.matches("^HTTP/1%.1 431 Request Header Fields Too Large\r\n", big)
      -- the rest of the request comes after the answer: the client may still send it (no reset)
      big = raw_request(port, "GET /metrics HTTP/1.1\r\nX-Big: " .. string.rep("c", 10000),
        string.rep("c", 10000) .. "\r\n\r\n")
      assert.matches("^HTTP/1%.1 431 Request Header Fields Too Large\r\n", big)
      assert.is_nil(big:find("<", 1, true), big)
      assert.equals("200", http_code(url))
    end)

    it("answers a request that is not HTTP/1.x with 400", function()
      for _, bad in ipairs {
        "GARBAGE\r\n\r\n", "GET /metrics\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/2.0\r\n\r\n", "GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", "GET /metrics HTTP/1.1\r\nX: a\1b\r\n\r\n",
        "GET  /metrics HTTP/1.1\r\n\r\n", "\r\n\r\n",
      } do
        assert.matches("^HTTP/1%.1 400 Bad Request\r\n", raw_request(port, bad), string.format("%q", bad))
      end
      assert.equals("200", http_code(url))
    end)
  end)
end)
