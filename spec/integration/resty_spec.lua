-- genesys.notify.resty inside real nginx (Debian's nginx + lua-nginx-module, a master and two
-- workers) against the emulator over TLS: the example server (examples/openresty/nginx.conf),
-- its port changed (a few tests add a location, an init block or a smaller dict). LuaJIT only:
-- nginx loads the LuaJIT build of the module; pending elsewhere, saying why.
local nginx = require "support.nginx"
local cjson = require "cjson.safe"

local available, why = nginx.available()
if not available then
  describe("genesys.notify.resty in nginx", function()
    pending("skipped: " .. why)
  end)
  return
end

local emulator = require "support.emulator"

local TOPIC = "v2.users.ngx1.presence"
local TTL_MS = 2000
local ROOT = nginx.root()
if ROOT:sub(1, 1) ~= "/" then ROOT = (io.popen("pwd"):read("*l")) .. "/" .. ROOT end
local CONF = assert(nginx.read_file(ROOT .. "/examples/openresty/nginx.conf"))

-- A reader's connect to the bell that nginx logged at level error or crit (refused, or the file
-- gone between the look and the connect): a holder change must not leave such lines behind.
local function bell_knock(log)
  return log:match("[^\n]*connect%(%) to unix:[^\n]*genesys_notify%.bell failed[^\n]*")
end

local function abs(p)
  if p:sub(1, 1) == "/" then return p end
  return ROOT .. "/" .. p:gsub("^%./", "")
end

local function env_for(emu, extra)
  local env = {
    GENESYSCLOUD_OAUTHCLIENT_ID = "test-id", GENESYSCLOUD_OAUTHCLIENT_SECRET = "test-secret",
    GN_GATEWAY = "localhost:" .. emu.port, GN_CA_FILE = abs(emu.ca_file), GN_TOPICS = TOPIC,
    GN_LOCK_TTL_MS = tostring(TTL_MS),
  }
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

local function start(emu, extra, conf)
  return nginx.start { conf = conf or CONF, env = env_for(emu, extra) }
end

local function health(ng)
  return nginx.wait_until(function()
    local h = ng:health()
    return h and h.state == "open" and h.holder_pid and h
  end, 15)
end

local seqn = 0
local function publish(emu)
  seqn = seqn + 1
  local st, j = emu:admin("POST", "publish", { topic = TOPIC, eventBody = { n = seqn } })
  assert.equals(200, st)
  return j.correlationId, j.delivered
end

local function events_of(recs)
  local out = {}
  for _, r in ipairs(recs) do if r.item == "event" then out[#out + 1] = r end end
  return out
end

local function has_cid(recs, cid)
  for _, r in ipairs(recs) do if r.correlation_id == cid then return r end end
  return nil
end

local function health_of(recs, kind, pred)
  for _, r in ipairs(recs) do
    if r.item == "health" and r.kind == kind and (not pred or pred(r)) then return r end
  end
  return nil
end

local function connected_channels(emu)
  local n = 0
  for _, c in pairs(emu:stats().channels) do
    if c.connected and c.client_id == "test-id" then n = n + 1 end
  end
  return n
end

-- A stream on a worker that is not `avoid` (or any worker): streams are opened until one lands
-- there (the example listens with reuseport, so connections spread over the workers).
local function stream_on(ng, seconds, pred)
  for _ = 1, 30 do
    local s = ng:stream("/events", seconds)
    local w = nginx.wait_until(function() return s:worker() end, 5)
    if w and pred(w) then return s, w end
  end
  error("no /events stream landed on the wanted worker in 30 tries")
end

describe("genesys.notify.resty in nginx", function()
  local emu
  setup(function() emu = emulator.start { tls = true, heartbeat_ms = 500 } end)
  teardown(function() if emu then emu:stop() end end)

  it("/events gets every published event through every worker, one channel in all", function()
    local ng = start(emu)
    finally(function() ng:stop() end)
    local h = health(ng)
    assert.truthy(h, "no worker connected: " .. ng:log())
    local workers = {}
    for _, w in ipairs(ng:live_workers()) do workers[w.pid] = true end
    local streams, seen = {}, {}
    local nseen = 0
    for _ = 1, 40 do
      local s = ng:stream("/events", 20)
      local w = nginx.wait_until(function() return s:worker() end, 5)
      assert.truthy(w, "no stream opened")
      streams[#streams + 1] = s
      if not seen[w] then seen[w] = true; nseen = nseen + 1 end
      if nseen == 2 and #streams >= 4 then break end
    end
    assert.equals(2, nseen)
    for w in pairs(seen) do assert.truthy(workers[w], "a stream on a pid that is no worker") end
    local cids = {}
    for i = 1, 5 do cids[i] = publish(emu) end
    for _, s in ipairs(streams) do
      local recs = s:wait_for(function(r)
        for _, cid in ipairs(cids) do if not has_cid(r, cid) then return false end end
        return true
      end, 10)
      assert.truthy(recs, "a stream missed events: " .. s:text())
      local ev = events_of(recs)
      assert.equals(5, #ev)
      for i, r in ipairs(ev) do
        assert.equals(cids[i], r.correlation_id)
        assert.equals(TOPIC, r.topic)
        assert.equals(s:worker(), r.worker)
        assert.equals(i, cjson.decode(r.raw).eventBody.n - (seqn - 5))
        if i > 1 then assert.equals(ev[i - 1].seq + 1, r.seq) end
      end
    end
    assert.equals(1, connected_channels(emu))
    -- /health and /metrics from any worker
    local st, body = ng:get("/metrics")
    assert.equals(200, st)
    assert.truthy(body:find("genesys_notify_events_total{client=\"nginx\"} ", 1, true))
    assert.truthy(body:find("genesys_notify_resty_ring_writes_total ", 1, true))
    assert.truthy(body:find("genesys_notify_resty_missed_total{worker=\"1\"} 0", 1, true))
    assert.truthy(body:find("genesys_notify_resty_ring_full_waits_total 0\n", 1, true), body)
    assert.truthy(body:find("genesys_notify_resty_ring_full_seconds_total 0\n", 1, true), body)
    -- promtool (Debian's prometheus package, in make deps) lints the whole text
    local f = io.popen("env -u LD_PRELOAD promtool check metrics 2>&1 <<'EOF'\n" .. body ..
      "EOF\necho rc=$?")
    local lint = f:read("*a")
    f:close()
    assert.truthy(lint:find("rc=0", 1, true), lint)
    local hh = ng:health()
    assert.equals(h.holder_pid, hh.holder_pid)
    assert.equals(0, hh.ring.write_failures)
  end)

  it("resync: the state read back after a gap reaches every worker through the ring", function()
    emu:admin("POST", "users/ngx1", { presence = "Available" })
    local ng = start(emu, { GN_RESYNC = "presence" })
    finally(function() ng:stop() end)
    assert.truthy(health(ng), "no worker connected: " .. ng:log())
    local a, wa = stream_on(ng, 60, function() return true end)
    local b = stream_on(ng, 60, function(w) return w ~= wa end)
    emu:admin("POST", "faults/handshake", { mode = "refuse", ms = 800 })
    assert.equals(200, (emu:admin("POST", "channels/*/reset", {})))
    nginx.wait_until(function() return ng:health().state ~= "open" end, 5)
    emu:admin("POST", "users/ngx1", { presence = "Busy" })
    for _, s in ipairs { a, b } do
      local recs = s:wait_for(function(r)
        for _, x in ipairs(r) do if x.item == "event" and x.resync then return true end end
      end, 20)
      assert.truthy(recs, "no resync item on a worker's stream: " .. s:text())
      local got
      for _, x in ipairs(recs) do if x.resync then got = x end end
      assert.equals(TOPIC, got.topic)
      local msg = cjson.decode(got.raw)
      assert.equals("Busy", msg.eventBody.presenceDefinition.systemPresence)
      assert.equals("presence", msg.resync.family)
    end
  end)

  it("RST, socket_closing and channel expiry: events go on, each gap reported", function()
    local ng = start(emu)
    finally(function() ng:stop() end)
    assert.truthy(health(ng), "no worker connected: " .. ng:log())
    local s = ng:stream("/events", 60)
    assert.truthy(nginx.wait_until(function() return s:worker() end, 5))
    local function fault(path, body, check)
      local ch = ng:health().channel_id
      local before = publish(emu)
      assert.truthy(s:wait_for(function(r) return has_cid(r, before) end, 10))
      local n0 = #s:records()
      assert.equals(200, (emu:admin("POST", "channels/" .. ch .. "/" .. path, body)))
      local recs = s:wait_for(function(r)
        for i = n0 + 1, #r do if check(r[i]) then return true end end
        return false
      end, 15)
      assert.truthy(recs, path .. ": no gap reported: " .. s:text())
      -- events go on afterwards, on whatever channel the holder has now
      local after
      assert.truthy(nginx.wait_until(function()
        local h = ng:health()
        if not (h and h.state == "open") then return false end
        after = publish(emu)
        return s:wait_for(function(r) return has_cid(r, after) end, 2)
      end, 20), path .. ": events did not come back: " .. s:text())
    end
    fault("reset", {}, function(r)
      return r.kind == "restored" and r.new_channel == false
    end)
    fault("socket_closing", { grace_ms = 1000 }, function(r)
      return r.kind == "rollover" and r.event == "completed"
    end)
    fault("expire", {}, function(r)
      return r.kind == "restored" and r.new_channel == true
    end)
    local recs = s:records()
    assert.truthy(health_of(recs, "disconnected", function(r) return r.reason == "lost" end))
    assert.truthy(health_of(recs, "channel_gone"))
    -- the socket_closing channel stays connected for its grace (1 s) while the rollover drains it
    assert.truthy(nginx.wait_until(function() return connected_channels(emu) == 1 end, 5),
      cjson.encode(emu:stats().channels))
    assert.equals(0, ng:health().workers[1].missed + ng:health().workers[2].missed)
  end)

  it("kill -9 of the holder: another worker takes over, one channel, the gap reported", function()
    local ng = start(emu)
    finally(function() ng:stop() end)
    local h = health(ng)
    assert.truthy(h, "no worker connected: " .. ng:log())
    local holder = h.holder_pid
    local s = stream_on(ng, 60, function(w) return w ~= holder end)
    local cid = publish(emu)
    assert.truthy(s:wait_for(function(r) return has_cid(r, cid) end, 10))
    local killed_ms = math.floor(nginx.now() * 1000)
    ng:kill_worker(holder)
    -- published while nobody holds the stream: lost, and inside the reported interval
    local lost_ms = math.floor(nginx.now() * 1000)
    local _, delivered = publish(emu)
    local recs = s:wait_for(function(r)
      return health_of(r, "restored", function(x) return x.reason == "takeover" end) ~= nil
    end, TTL_MS / 1000 + 10)
    assert.truthy(recs, "no takeover: " .. s:text() .. ng:log())
    local r = health_of(recs, "restored", function(x) return x.reason == "takeover" end)
    assert.equals(holder, r.previous_holder)
    assert.are_not.equal(holder, r.holder_pid)
    assert.truthy(r.deaf_from_ms <= killed_ms, "deaf_from_ms after the kill")
    assert.truthy(r.deaf_to_ms >= killed_ms)
    if delivered == 0 then
      assert.truthy(r.deaf_from_ms <= lost_ms and lost_ms <= r.deaf_to_ms)
    end
    -- the new holder is another worker; events resume through it
    local h2 = health(ng)
    assert.equals(r.holder_pid, h2.holder_pid)
    assert.equals(1, h2.takeovers)
    local cid2 = publish(emu)
    assert.truthy(s:wait_for(function(x) return has_cid(x, cid2) end, 10), s:text())
    assert.truthy(nginx.wait_until(function() return connected_channels(emu) == 1 end, 5))
    -- the takeover lost no ring item: nothing missed, nothing failed to be written
    local h3 = ng:health()
    for _, w in ipairs(h3.workers) do assert.equals(0, w.missed, cjson.encode(h3.workers)) end
    assert.equals(0, h3.ring.write_failures)
    assert.is_nil(health_of(s:records(), "missed"), s:text())
    -- the killed holder left its bell's socket file behind: the other workers' readers do not
    -- knock on it (each refused connect is a line at level error in nginx's log)
    local knock = bell_knock(ng:log())
    assert.is_nil(knock, knock)
  end)

  it("five reloads under a steady stream: one channel, no thread or worker left behind", function()
    -- a topic of its own: the publish stream outlives this test
    local topic = "v2.users.ngx-reload.presence"
    local ng = start(emu, { GN_TOPICS = topic })
    finally(function() ng:stop() end)
    assert.truthy(health(ng), "no worker connected: " .. ng:log())
    local st = emu:admin("POST", "publish", { topic = topic, count = 400, rate = 20 })
    assert.equals(200, st)
    -- open /events requests on the first generation must not keep its workers alive
    local open_streams = {}
    for i = 1, 3 do
      open_streams[i] = ng:stream("/events", 120)
      assert.truthy(nginx.wait_until(function() return open_streams[i]:worker() end, 5))
    end
    local old = {}
    for _ = 1, 5 do
      for _, w in ipairs(ng:workers()) do old[w.pid] = true end
      ng:reload()
      -- the next reload once the new generation serves (two live workers not seen before)
      assert.truthy(nginx.wait_until(function()
        local fresh = 0
        for _, w in ipairs(ng:live_workers()) do if not old[w.pid] then fresh = fresh + 1 end end
        return fresh == 2
      end, 10), "the reload did not start new workers")
    end
    -- every old worker exits (none stuck in "shutting down")
    assert.truthy(nginx.wait_until(function()
      for pid in pairs(old) do if nginx.alive(pid) then return false end end
      return true
    end, 15), "old workers still running: " .. cjson.encode(ng:workers()))
    for _, w in ipairs(ng:workers()) do assert.is_false(w.shutting_down) end
    for _, os_ in ipairs(open_streams) do
      assert.truthy(os_:done(), "an /events request outlived its worker")
      assert.truthy(#events_of(os_:records()) > 0)
    end
    local h = health(ng)
    assert.truthy(h)
    -- each reload hands the stream over (make-before-break), unless the next reload came before
    -- a worker of the new generation took it (then a later generation takes it): never a gap
    assert.truthy(h.handovers >= 1 and h.handovers <= 5, "handovers " .. tostring(h.handovers))
    assert.equals(0, h.takeovers)
    assert.truthy(nginx.wait_until(function() return connected_channels(emu) == 1 end, 10))
    -- threads: the master and every worker but the holder have only their main thread (the
    -- holder has the client's service thread and libuv's pool)
    assert.equals(1, nginx.tasks(ng.master))
    local live = ng:live_workers()
    assert.equals(2, #live)
    for _, w in ipairs(live) do
      if w.pid ~= h.holder_pid then assert.equals(1, nginx.tasks(w.pid)) end
    end
    -- events still flow, through a worker of the last generation
    local s = ng:stream("/events", 30)
    assert.truthy(s:wait_for(function(r) return #events_of(r) >= 3 end, 10), s:text())
    local knock = bell_knock(ng:log())
    assert.is_nil(knock, knock)
  end)

  it("quit: nginx exits within a few seconds, the holder's client closed first", function()
    local ng = start(emu)
    finally(function() ng:stop() end)
    local h = health(ng)
    assert.truthy(h)
    local s = ng:stream("/events", 60) -- an open /events request must not hold the exit up
    assert.truthy(nginx.wait_until(function() return s:worker() end, 5))
    assert.equals(1, connected_channels(emu))
    local took = ng:quit(10)
    assert.truthy(took, "nginx did not exit")
    assert.truthy(took < 5, "quit took " .. took .. " s")
    assert.truthy(ng:log():find("(pid " .. h.holder_pid ..
      ") stepped down as the stream holder: the worker is exiting", 1, true))
    assert.truthy(nginx.wait_until(function() return connected_channels(emu) == 0 end, 5))
    assert.truthy(s:done())
  end)

  it("a client created in init_by_lua_block: a clear error in the log, no hang", function()
    local conf = CONF:gsub("init_worker_by_lua_block {", function() return [[
  init_by_lua_block {
    local notify = require "genesys.notify"
    local host, port = os.getenv("GN_GATEWAY"):match("^(.-):(%d+)$")
    MASTER_CLIENT = notify.new { gateway = { host = host, port = tonumber(port) },
      tls = { ca_file = os.getenv("GN_CA_FILE") }, topics = { os.getenv("GN_TOPICS") } }
  }
  init_worker_by_lua_block {]] end, 1):gsub("    resty.start%(cfg%)\n", "%0    MASTER_CLIENT:start()\n", 1)
    local ng = start(emu, nil, conf)
    finally(function() ng:stop() end)
    local log = ng:log()
    assert.truthy(log:find("init_worker_by_lua error", 1, true), log)
    assert.truthy(log:find("before a fork(); it cannot be used in process", 1, true), log)
    assert.truthy(log:find("in init_worker_by_lua*, not init_by_lua*", 1, true))
    local took = ng:quit(10)
    assert.truthy(took and took < 5, "quit took " .. tostring(took))
  end)

  it("resty.start in init_by_lua_block: nginx refuses to start, saying where it belongs", function()
    local conf = CONF:gsub("init_worker_by_lua_block {", function() return [[
  init_by_lua_block {
    require("genesys.notify.resty").start { dict = "genesys_notify" }
  }
  init_worker_by_lua_block {
]] end, 1)
    local ok, err = pcall(start, emu, nil, conf)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("start() belongs in init_worker_by_lua*", 1, true), err)
  end)

  it("a slow worker (ring of 16): the holder waits for it, every event reaches it, nothing missed", function()
    local ng = start(emu, { GN_HANDLER_MODULE = "support.resty_slow_hook", GN_RING_SIZE = "16" })
    finally(function() ng:stop() end)
    assert.truthy(health(ng), "no worker connected: " .. ng:log())
    local s = ng:stream("/events", 60)
    local w = nginx.wait_until(function() return s:worker() end, 5)
    assert.truthy(w)
    local head0 = ng:health().ring.head
    local st, j = emu:admin("POST", "publish", { topic = TOPIC, count = 200 })
    assert.equals(200, st)
    local stream = j.stream
    assert.truthy(nginx.wait_until(function()
      local _, p = emu:admin("GET", "publish/" .. stream)
      return p.done and p.delivered == 200
    end, 30))
    -- the stream ends once the reader has come up to the head (200 events past head0)
    local recs = s:wait_for(function(r)
      local last = r[#r]
      return last and ((last.seq or last.to_seq or 0) >= head0 + 200)
    end, 40)
    assert.truthy(recs, "the slow worker did not catch up: " .. s:text():sub(-2000))
    -- every sequence number after head0 read once, in order, none reported missed
    local covered = {}
    for _, r in ipairs(recs) do
      assert.are_not.equal("missed", r.kind, cjson.encode(r))
      if r.seq then
        assert.is_nil(covered[r.seq]); covered[r.seq] = true
      end
    end
    for q = head0 + 1, head0 + 200 do
      assert.truthy(covered[q], "seq " .. q .. " not read")
    end
    local h = ng:health()
    assert.equals(0, h.workers[1].missed + h.workers[2].missed)
    assert.equals(0, h.ring.write_failures)
    assert.equals(0, h.reader_stalls)
    -- the holder waited for it with a full ring, and says so: a wait ends when the holder writes
    -- again; 200 events at 50 ms each through a ring of 16 keep it waiting for most of 10 s
    assert.truthy(nginx.wait_until(function()
      local r = ng:health().ring
      return r.full_waits >= 1 and r.full_ms >= 5000
    end, 10), cjson.encode(ng:health().ring))
    local _, body = ng:get("/metrics")
    local waits = tonumber(body:match("\ngenesys_notify_resty_ring_full_waits_total (%d+)\n"))
    local secs = tonumber(body:match("\ngenesys_notify_resty_ring_full_seconds_total ([%d.]+)\n"))
    assert.truthy(waits and waits >= 1 and secs and secs >= 5, body)
  end)

  it("a bad resty field in init_worker: the error in the log names it and what was expected", function()
    local ng = start(emu, { GN_RING_SIZE = "3" })
    finally(function() ng:stop() end)
    assert.truthy(ng:log():find("init_worker_by_lua error: genesys.notify.resty: ring_size: " ..
      "expected an integer from 16 to 10000000, got 3", 1, true), ng:log())
  end)

  it("a follower that does not read: at most its limit waits, the rest dropped and counted", function()
    -- a location of the spec's own: follows with a limit of 5 (once its worker has read the
    -- ring up to its head), reads nothing for a while, then everything that waits
    local conf = CONF:gsub("    location = /health {", function() return [[
    location = /lazy {
      content_by_lua_block {
        local resty = require "genesys.notify.resty"
        repeat -- this worker has read what the ring holds (the connection's health items)
          ngx.sleep(0.05)
          local st = resty.status()
        until st.worker.cursor >= st.ring.head
        local f = resty.follow(5)
        ngx.print(": worker ", ngx.worker.pid(), "\n\n")
        ngx.flush(true)
        ngx.sleep(tonumber(ngx.var.arg_sleep))
        while true do
          local rec, json = f:next(0)
          if not rec then break end
          ngx.print("data: ", json, "\n\n")
        end
        f:close()
      }
    }

    location = /health {]] end, 1)
    local ng = start(emu, nil, conf)
    finally(function() ng:stop() end)
    assert.truthy(health(ng), "no worker connected: " .. ng:log())
    local s = ng:stream("/lazy?sleep=3", 20)
    local w = nginx.wait_until(function() return s:worker() end, 5)
    assert.truthy(w)
    for _ = 1, 12 do publish(emu) end
    assert.truthy(nginx.wait_until(function() return s:done() end, 10))
    local recs = s:records()
    assert.equals(6, #recs, s:text())
    assert.equals(5, #events_of(recs))
    local o = recs[1]
    assert.equals("overflow", o.kind)
    assert.equals("follower", o.reason)
    assert.equals(7, o.dropped)
    local _, metrics = ng:get("/metrics")
    local total = 0
    for n in metrics:gmatch('genesys_notify_resty_follower_dropped_total{worker="%d+"} (%d+)') do
      total = total + tonumber(n)
    end
    assert.equals(7, total, metrics)
  end)

  it("a dict too small for the ring: failed writes counted and reported, the lock never evicted", function()
    local conf = CONF:gsub("lua_shared_dict genesys_notify 4m;",
      "lua_shared_dict genesys_notify 128k;", 1)
    local ng = start(emu, nil, conf)
    finally(function() ng:stop() end)
    local h = health(ng)
    assert.truthy(h, "no worker connected: " .. ng:log())
    local s = ng:stream("/events", 60)
    assert.truthy(nginx.wait_until(function() return s:worker() end, 5))
    local head0 = ng:health().ring.head
    local st, j = emu:admin("POST", "publish", { topic = TOPIC, count = 40, size = 8000 })
    assert.equals(200, st)
    assert.truthy(nginx.wait_until(function()
      local _, p = emu:admin("GET", "publish/" .. j.stream)
      return p.done and p.delivered == 40
    end, 10))
    local recs = s:wait_for(function(r)
      local last = r[#r]
      return last and ((last.seq or last.to_seq or 0) >= head0 + 40)
    end, 10)
    assert.truthy(recs, s:text():sub(-3000))
    local covered, failed = {}, 0
    for _, r in ipairs(recs) do
      if r.kind == "missed" then
        assert.equals("write_failed", r.reason)
        failed = failed + r.count
        for q = r.from_seq, r.to_seq do covered[q] = true end
      elseif r.seq then
        covered[r.seq] = true
      end
    end
    for q = head0 + 1, head0 + 40 do
      assert.truthy(covered[q], "seq " .. q .. " neither read nor reported")
    end
    assert.truthy(failed > 0 and failed < 40, "failed " .. failed)
    local h2 = ng:health()
    assert.equals(failed, h2.ring.write_failures)
    assert.equals(h.holder_pid, h2.holder_pid) -- the lock is still the first holder's
    assert.equals(0, h2.takeovers)
    assert.truthy(ng:log():find("could not be written into the ring", 1, true))
  end)

  it("a holder whose lock is not its own any more steps down; another takes over", function()
    local conf = CONF:gsub("    location = /health {", function() return [[
    location = /steal {
      content_by_lua_block {
        ngx.shared.genesys_notify:set("gn:lock", "1:stolen", 1)
        ngx.say("ok")
      }
    }

    location = /health {]] end, 1)
    local ng = start(emu, nil, conf)
    finally(function() ng:stop() end)
    local h = health(ng)
    assert.truthy(h, "no worker connected: " .. ng:log())
    assert.equals(200, (ng:get("/steal")))
    assert.truthy(nginx.wait_until(function()
      return ng:log():find("(pid " .. h.holder_pid ..
        ") stepped down as the stream holder: the lock is held by 1:stolen", 1, true)
    end, 5), ng:log())
    -- the key expires after 1 s; a worker takes it, and the emulator has one connected channel
    local h2 = nginx.wait_until(function()
      local x = ng:health()
      return x and x.state == "open" and x.takeovers == 1 and x
    end, 10)
    assert.truthy(h2, ng:log())
    assert.truthy(nginx.wait_until(function() return connected_channels(emu) == 1 end, 5))
    -- the gap, in the example's on_health log
    assert.truthy(nginx.wait_until(function() return ng:log():find("reason=takeover", 1, true) end, 5))
  end)

  it("a handler that raises: logged and counted per worker, delivery goes on", function()
    local ng = start(emu, { GN_HANDLER_MODULE = "support.resty_bad_hook" })
    finally(function() ng:stop() end)
    assert.truthy(health(ng), "no worker connected: " .. ng:log())
    local s = ng:stream("/events", 30)
    assert.truthy(nginx.wait_until(function() return s:worker() end, 5))
    local cids = { publish(emu), publish(emu), publish(emu) }
    assert.truthy(s:wait_for(function(r) return has_cid(r, cids[3]) end, 10), s:text())
    assert.equals(3, #events_of(s:records()))
    local h = nginx.wait_until(function()
      local x = ng:health()
      return x and x.workers[1].handler_errors == 3 and x.workers[2].handler_errors == 3 and x
    end, 10)
    assert.truthy(h, cjson.encode(ng:health()))
    local _, metrics = ng:get("/metrics")
    assert.truthy(metrics:find('genesys_notify_resty_handler_errors_total{worker="0"} 3', 1, true))
    local seq = s:records()[#s:records()].seq
    assert.truthy(ng:log():find("a subscribe handler raised: [^\n]*bad handler saw seq " .. seq))
  end)

  it("a handler that yields (ngx.sleep(0), a cosocket call) runs in every worker", function()
    local ng = start(emu, { GN_HANDLER_MODULE = "support.resty_hook" })
    finally(function() ng:stop() end)
    assert.truthy(health(ng))
    local cid = publish(emu)
    local live = ng:live_workers()
    local log = nginx.wait_until(function()
      local l = ng:log()
      for _, w in ipairs(live) do
        if not l:find("hook: seq=%d+ topic=" .. TOPIC:gsub("%.", "%%.") ..
          " slept, cosocket status=200 err=nil worker=" .. w.pid) then return false end
      end
      return l
    end, 10)
    assert.truthy(log, "the handler did not finish in both workers: " .. ng:log())
    local h = ng:health()
    assert.truthy(cid)
    assert.equals(0, h.workers[1].handler_errors + h.workers[2].handler_errors)
  end)
end)

-- The counting conf: the example with `workers` workers, GN_STUCK_S passed on, and /testcount
-- (what support.resty_count_hook keeps: "t:PID:n|first|last|bad|badat", "t:h:KIND").
local function count_conf(workers)
  return (CONF:gsub("worker_processes 2;", "worker_processes " .. workers .. ";", 1)
    :gsub("env GN_HANDLER_MODULE;", "env GN_HANDLER_MODULE;\nenv GN_STUCK_S;", 1)
    :gsub("    location = /health {", function() return [[
    location = /testcount {
      default_type application/json;
      content_by_lua_block {
        local dict = ngx.shared.genesys_notify
        local out = { workers = {}, health = {} }
        for _, k in ipairs(dict:get_keys(0)) do
          local pid, f = k:match("^t:(%d+):(%a+)$")
          if pid then
            out.workers[pid] = out.workers[pid] or {}
            out.workers[pid][f] = dict:get(k)
          end
          local kind = k:match("^t:h:(.+)$")
          if kind then out.health[kind] = dict:get(k) end
        end
        out.stuck = dict:get("t:stuck")
        out.lookpauses = dict:get("t:lookpauses") -- (support.resty_lookpause_hook)
        out.prefix = ngx.config.prefix()
        -- the items the ring's entries hold (a slot: one record, or "b" and a count), and the
        -- events it holds twice (one CorrelationId at two seqs: "CID SEQ SEQ")
        out.ring_items, out.ring_twice = 0, {}
        local at = {}
        local function event(rec, seq)
          local cid = rec:match("^e\t[^\t]*\t[^\t]*\t[^\t]*\t([^\t]+)\t")
          if not cid then return end
          if at[cid] and #out.ring_twice < 20 then
            out.ring_twice[#out.ring_twice + 1] = cid .. " " .. at[cid] .. " " .. seq
          end
          at[cid] = seq
        end
        for _, k in ipairs(dict:get_keys(0)) do
          if k:find("^gn:ring:") then
            local v, seq = dict:get(k)
            v = v or ""
            if v:sub(1, 1) == "b" then
              local n, p = tonumber(v:sub(2, 9), 16), 10
              out.ring_items = out.ring_items + n
              for m = 1, n do
                local b1, b2, b3, b4 = v:byte(p, p + 3)
                if not b4 then break end
                local len = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
                event(v:sub(p + 4, p + 3 + len), seq .. "+" .. (m - 1))
                p = p + 4 + len
              end
            elseif v ~= "" then
              out.ring_items = out.ring_items + 1
              event(v, seq)
            end
          end
        end
        ngx.say(require("cjson.safe").encode(out))
      }
    }

    location = /health {]] end, 1))
end

local function counts(ng)
  local st, body = ng:get("/testcount")
  assert.equals(200, st, body)
  local c = cjson.decode(body)
  -- this spec's nginx answered (not another one on the same port: support.nginx)
  assert.equals((ng.prefix:gsub("/+$", "")), (tostring(c.prefix):gsub("/+$", "")))
  return c
end

-- Worker `pid` (its counts `w`) got no event out of order or twice; else the failure shows
-- the hook's lines (support.resty_count_hook) and the resty layer's.
local function assert_in_order(ng, pid, w)
  if (w.bad or 0) == 0 then return end
  local lines = {}
  for l in ng:log():gmatch("[^\n]*count hook: [^\n]*") do lines[#lines + 1] = l end
  for l in ng:log():gmatch("[^\n]*genesys%.notify%.resty: [^\n]*") do lines[#lines + 1] = l end
  assert.equals(0, w.bad, "worker " .. pid .. " got events out of order or twice: " ..
    cjson.encode(w) .. "\n" .. table.concat(lines, "\n"):sub(1, 6000))
end

-- Every worker in `pids` got the events `first`..`last` of the publish stream, each once and in
-- order (support.resty_count_hook); returns the counts.
local function every_worker_got(ng, pids, last, timeout)
  local c
  local ok = nginx.wait_until(function()
    c = counts(ng)
    for _, pid in ipairs(pids) do
      local w = c.workers[tostring(pid)]
      if not (w and w.last == last) then return false end
    end
    return true
  end, timeout)
  assert.truthy(ok, "not every worker got the last event: " .. cjson.encode(c) .. "\n" ..
    ng:log():sub(-3000))
  for _, pid in ipairs(pids) do
    local w = c.workers[tostring(pid)]
    assert_in_order(ng, pid, w)
    assert.equals(w.last - w.first + 1, w.n, "worker " .. pid .. ": " .. cjson.encode(w))
  end
  return c
end

local function publish_done(emu, stream, n, timeout)
  return nginx.wait_until(function()
    local _, p = emu:admin("GET", "publish/" .. stream)
    return p.done and p.delivered >= n
  end, timeout)
end

-- After a publish stream of `total` events through reloads or a holder change: every live
-- worker got its events once and in order up to the last, and the workers' ranges (old
-- generations' included) cover 1..total, so every event reached some worker. Returns the
-- counts and the live workers' pids.
local function all_reached(ng, emu, stream, total)
  assert.truthy(publish_done(emu, stream, total, 30), "the publish stream did not finish")
  local pids = {}
  for _, w in ipairs(ng:live_workers()) do pids[#pids + 1] = w.pid end
  local c = every_worker_got(ng, pids, total, 20)
  -- the holders wrote each event into the ring once (the handovers' overlap skipped)
  assert.equals(0, #c.ring_twice, "the ring holds events twice: " .. cjson.encode(c.ring_twice))
  local covered = {}
  for pid, w in pairs(c.workers) do
    assert_in_order(ng, pid, w) -- the old generations' workers too: what they read, they read once
    for q = w.first, w.last do covered[q] = true end
  end
  for q = 1, total do assert.truthy(covered[q], "event " .. q .. " reached no worker") end
  return c, pids
end

local BURST = tonumber(os.getenv("GN_RESTY_BURST") or "") or 20000

-- After a burst of BURST events: each of the nw live workers got all of them, from the first,
-- once and in order, and nothing was missed or failed in the ring. Returns the counts.
local function whole_burst(ng, nw)
  local pids = {}
  for _, w in ipairs(ng:live_workers()) do pids[#pids + 1] = w.pid end
  assert.equals(nw, #pids)
  local c = every_worker_got(ng, pids, BURST, 60 + BURST / 1000)
  for _, pid in ipairs(pids) do
    assert.equals(1, c.workers[tostring(pid)].first)
    assert.equals(BURST, c.workers[tostring(pid)].n)
  end
  local h = ng:health()
  for _, w in ipairs(h.workers) do assert.equals(0, w.missed) end
  assert.equals(0, h.ring.write_failures)
  assert.equals(0, h.reader_stalls)
  assert.is_nil(c.health.missed, "missed: " .. cjson.encode(c.health))
  return c
end

-- Reloads nginx three times, each once the generation before is gone (its holder handed the
-- stream over), then a second more of the stream. Returns the generations' workers' pids, the
-- first generation's included; says(ng) is what a failure shows.
local function reload_thrice(ng, nw, says)
  local gens = { {} }
  for _, w in ipairs(ng:live_workers()) do gens[1][#gens[1] + 1] = w.pid end
  for _ = 1, 3 do
    local old = {}
    for _, w in ipairs(ng:workers()) do old[w.pid] = true end
    ng:reload()
    local fresh
    assert.truthy(nginx.wait_until(function()
      for pid in pairs(old) do if nginx.alive(pid) then return false end end
      fresh = {}
      for _, w in ipairs(ng:live_workers()) do
        if not old[w.pid] then fresh[#fresh + 1] = w.pid end
      end
      return #fresh == nw
    end, 20), "the reload did not complete: " .. says(ng))
    gens[#gens + 1] = fresh
    emulator.sleep(1)
  end
  return gens
end

-- A new generation's readers start where the readers of the one it replaces are, not where an
-- earlier reload's readers were (which would hand each event since to the new workers again):
-- each generation's first event comes after every first event of the one before (a reload a
-- second or more after the one before, under a stream of 30 events/s).
local function assert_no_replay(c, gens)
  for g = 2, #gens do
    local before = 0
    for _, pid in ipairs(gens[g - 1]) do
      before = math.max(before, c.workers[tostring(pid)].first)
    end
    for _, pid in ipairs(gens[g]) do
      local w = c.workers[tostring(pid)]
      assert.truthy(w.first > before, "generation " .. g .. "'s worker " .. pid ..
        " began at event " .. w.first .. ", generation " .. (g - 1) .. " at " .. before ..
        ": " .. cjson.encode(c.workers))
    end
  end
end

describe("genesys.notify.resty in nginx: reloads and bursts lose nothing", function()
  local emu
  setup(function() emu = emulator.start { tls = true, heartbeat_ms = 500 } end)
  teardown(function() if emu then emu:stop() end end)

  -- (the third: each successor pauses between its look at the lock and at the old holder's
  -- offer, so the lock is often passed on meanwhile: support.resty_lookpause_hook)
  for _, case in ipairs { { 2, "count" }, { 4, "count" }, { 2, "lookpause" } } do
    local nw, hook = case[1], case[2]
    it(nw .. " workers, reloads under a steady stream" ..
        (hook == "lookpause" and ", successors that look slowly" or "") ..
        ": every event reaches every worker once, no gap, nothing missed", function()
      local topic = "v2.users.ngx-reload" .. nw .. hook .. ".presence"
      local ng = nginx.start { conf = count_conf(nw), workers = nw,
        env = env_for(emu, { GN_TOPICS = topic, GN_HANDLER_MODULE = "support.resty_" .. hook .. "_hook" }) }
      finally(function() ng:stop() end)
      assert.truthy(health(ng), "no worker connected: " .. ng:log())
      local total = 300
      local st, j = emu:admin("POST", "publish", { topic = topic, count = total, rate = 30 })
      assert.equals(200, st)
      emulator.sleep(1)
      local gens = reload_thrice(ng, nw, function() return ng:log():sub(-3000) end)
      local reloads = #gens - 1
      local c = all_reached(ng, emu, j.stream, total)
      assert_no_replay(c, gens)
      if hook == "lookpause" then assert.truthy((c.lookpauses or 0) > 0, "no successor paused") end
      local h = ng:health()
      assert.equals(reloads, h.handovers, cjson.encode(h))
      -- each handover's overlap (half a second of both streams, handover_grace_ms) was skipped,
      -- and counted
      assert.truthy(h.handover_duplicates >= reloads, cjson.encode(h))
      assert.equals(0, h.takeovers)
      assert.equals(0, h.ring.write_failures)
      assert.is_nil(c.health.missed, "missed: " .. cjson.encode(c.health))
      assert.is_nil(c.health.restored, "a deaf interval: " .. tostring(ng:log():match("count hook: [^\n]*")))
      assert.truthy((c.health.handover or 0) >= reloads, cjson.encode(c.health))
      assert.truthy(nginx.wait_until(function() return connected_channels(emu) == 1 end, 10))
      -- the old holder's bell goes before the readers look for the new one
      local knock = bell_knock(ng:log())
      assert.is_nil(knock, knock)
    end)

    -- (the bursts have no handover: not again with the pausing hook)
    if hook == "count" then
      it(nw .. " workers, a burst of " .. BURST .. " events of 1 KB at the default settings: " ..
          "every worker gets every one", function()
        local topic = "v2.users.ngx-burst" .. nw .. ".presence"
        local ng = nginx.start { conf = count_conf(nw), workers = nw,
          env = env_for(emu, { GN_TOPICS = topic, GN_HANDLER_MODULE = "support.resty_count_hook" }) }
        finally(function() ng:stop() end)
        assert.truthy(health(ng), "no worker connected: " .. ng:log())
        local st, j = emu:admin("POST", "publish", { topic = topic, count = BURST, size = 1024 })
        assert.equals(200, st)
        assert.truthy(publish_done(emu, j.stream, BURST, 60 + BURST / 500),
          "the burst was not delivered")
        local c = whole_burst(ng, nw)
        assert.is_nil(c.health.overflow, "the library dropped events: " .. ng:log():sub(-2000))
        -- a batch's entry empties the slots of its other items: what earlier laps left there is
        -- gone, and the ring holds at most ring_size items (the dict does not fill up with them)
        c = counts(ng)
        assert.truthy(c.ring_items > 0 and c.ring_items <= 1024, "ring items: " .. c.ring_items)
      end)
    end
  end

  -- The holder's worker alone told to quit (kill -QUIT to it, not a reload): no newer generation
  -- runs, so one of its siblings takes the stream over make-before-break (the master forks the
  -- replacement only once the old worker has exited).
  it("the holder's worker alone quits: a sibling takes the stream over, no gap, nothing missed",
    function()
      local topic = "v2.users.ngx-quitone.presence"
      local ng = nginx.start { conf = count_conf(2), workers = 2,
        env = env_for(emu, { GN_TOPICS = topic, GN_HANDLER_MODULE = "support.resty_count_hook" }) }
      finally(function() ng:stop() end)
      local h0 = health(ng)
      assert.truthy(h0, "no worker connected: " .. ng:log())
      local total = 150
      local st, j = emu:admin("POST", "publish", { topic = topic, count = total, rate = 30 })
      assert.equals(200, st)
      emulator.sleep(1)
      local old = h0.holder_pid
      assert(os.execute("kill -QUIT " .. old))
      local h = nginx.wait_until(function()
        local x = ng:health()
        return not nginx.alive(old) and x and x.holder_pid ~= old and x.state == "open" and x
      end, 20)
      assert.truthy(h, "the stream did not move: " .. ng:log():sub(-3000))
      local c = all_reached(ng, emu, j.stream, total)
      h = ng:health()
      assert.equals(1, h.handovers, cjson.encode(h))
      assert.equals(0, h.takeovers)
      assert.is_nil(c.health.missed, "missed: " .. cjson.encode(c.health))
      assert.is_nil(c.health.restored, "a deaf interval: " .. ng:log():sub(-3000))
    end)

  -- A reload's handover cut short: the exiting holder is killed after its successor's stream is
  -- open but before it passes the lock on. The successor has had every event since its stream
  -- opened, so it takes the stream over when the dead holder's lock runs out, with no gap.
  it("the old holder killed in the middle of a reload's handover: the successor takes the " ..
      "stream over, no gap, nothing lost or doubled", function()
    local topic = "v2.users.ngx-hokill.presence"
    -- a long grace after the successor is ready: the old holder is still in its handover when
    -- it is killed
    local conf = count_conf(2):gsub('cfg%.stall_ms = [^\n]*', function(l)
      return l .. "\n    cfg.handover_grace_ms = 20000"
    end, 1)
    local ng = nginx.start { conf = conf, workers = 2,
      env = env_for(emu, { GN_TOPICS = topic, GN_HANDLER_MODULE = "support.resty_count_hook" }) }
    finally(function() ng:stop() end)
    local h0 = health(ng)
    assert.truthy(h0, "no worker connected: " .. ng:log())
    local old = h0.holder_pid
    local total = 300
    local st, j = emu:admin("POST", "publish", { topic = topic, count = total, rate = 30 })
    assert.equals(200, st)
    emulator.sleep(1)
    ng:reload()
    assert.truthy(nginx.wait_until(function()
      return ng:log():find("has its stream open; the exiting holder passes the lock on", 1, true)
    end, 20), "no successor opened its stream: " .. ng:log():sub(-3000))
    -- what the old stream got before the successor's opened is in the ring by now
    emulator.sleep(1)
    assert.is_nil(ng:log():find("handed the stream over", 1, true), "the handover was not cut short")
    assert.truthy(nginx.alive(old))
    ng:kill_worker(old)
    assert.truthy(nginx.wait_until(function()
      return ng:log():find("holds the Genesys stream (handover, no gap)", 1, true)
    end, TTL_MS / 1000 + 10), "the successor did not take the stream: " .. ng:log():sub(-3000))
    local c, pids = all_reached(ng, emu, j.stream, total)
    assert.equals(2, #pids)
    local h = ng:health()
    assert.truthy(h.holder_pid == pids[1] or h.holder_pid == pids[2], cjson.encode(h))
    assert.equals(0, h.takeovers, cjson.encode(h))
    assert.equals(0, h.handovers) -- the old holder never passed the lock on
    assert.equals(0, h.ring.write_failures)
    assert.is_nil(c.health.missed, "missed: " .. cjson.encode(c.health))
    assert.is_nil(c.health.restored, "a deaf interval: " .. tostring(ng:log():match("count hook: [^\n]*")))
    assert.truthy((c.health.handover or 0) >= 2, cjson.encode(c.health)) -- one in each new worker
    assert.truthy(nginx.wait_until(function() return connected_channels(emu) == 1 end, 10))
    -- the dead holder's bell file: removed by the successor, never knocked on
    local knock = bell_knock(ng:log())
    assert.is_nil(knock, knock)
  end)

  it("a stuck worker is skipped after stall_ms and reported; it reports what it lost", function()
    local ng = nginx.start { conf = count_conf(2), workers = 2,
      env = env_for(emu, { GN_HANDLER_MODULE = "support.resty_stuck_hook", GN_RING_SIZE = "16",
        GN_STALL_MS = "1000", GN_STUCK_S = "4" }) }
    finally(function() ng:stop() end)
    local h0 = health(ng)
    assert.truthy(h0, "no worker connected: " .. ng:log())
    local s = stream_on(ng, 60, function(w) return w ~= h0.holder_pid end)
    local head0 = ng:health().ring.head
    local st, j = emu:admin("POST", "publish", { topic = TOPIC, count = 200 })
    assert.equals(200, st)
    assert.truthy(publish_done(emu, j.stream, 200, 30))
    -- the holder's worker gets all 200 (the stuck one does not hold it back for ever)
    local c = every_worker_got(ng, { h0.holder_pid }, 200, 30)
    assert.truthy(c.stuck, "no worker got stuck")
    assert.are_not.equal(h0.holder_pid, c.stuck)
    local h = ng:health()
    assert.truthy(h.reader_stalls >= 1, cjson.encode(h))
    assert.truthy(c.health.reader_stalled >= 1)
    assert.truthy(ng:log():find("the reader of pid " .. c.stuck .. " has not moved for", 1, true))
    -- once it moves again, the stuck worker reports what the ring overwrote meanwhile: every
    -- sequence number is read or inside one reported range
    local recs = s:wait_for(function(r)
      local last = r[#r]
      return last and ((last.seq or last.to_seq or 0) >= head0 + 200)
    end, 30)
    assert.equals(c.stuck, s:worker()) -- two workers: the one that is not the holder
    assert.truthy(recs, s:text():sub(-2000))
    local covered, missed = {}, 0
    for _, r in ipairs(recs) do
      if r.kind == "missed" then
        assert.equals("overwritten", r.reason)
        missed = missed + r.count
        for q = r.from_seq, r.to_seq do assert.is_nil(covered[q]); covered[q] = true end
      elseif r.seq then
        assert.is_nil(covered[r.seq]); covered[r.seq] = true
      end
    end
    for q = head0 + 1, head0 + 200 do assert.truthy(covered[q], "seq " .. q) end
    assert.truthy(missed > 0)
    -- the stuck worker's missed count is the one the metrics say; the holder's worker missed none
    assert.equals(missed, ng:health().workers[1].missed + ng:health().workers[2].missed)
    assert.equals(0, ng:health().ring.write_failures)
  end)

  it("resync: a stuck worker's missed range is healed, the resync items follow it in that worker",
    function()
    emu:admin("POST", "users/ngx1", { presence = "Away" })
    local ng = nginx.start { conf = count_conf(2), workers = 2,
      env = env_for(emu, { GN_HANDLER_MODULE = "support.resty_stuck_hook", GN_RING_SIZE = "16",
        GN_STALL_MS = "1000", GN_STUCK_S = "4", GN_RESYNC = "presence" }) }
    finally(function() ng:stop() end)
    local h0 = health(ng)
    assert.truthy(h0, "no worker connected: " .. ng:log())
    local s = stream_on(ng, 60, function(w) return w ~= h0.holder_pid end)
    local st, j = emu:admin("POST", "publish", { topic = TOPIC, count = 200 })
    assert.equals(200, st)
    assert.truthy(publish_done(emu, j.stream, 200, 30))
    -- the stuck worker reports its missed range, then gets the resync the holder ran over it
    local recs = s:wait_for(function(r)
      local missed
      for i, x in ipairs(r) do
        if x.kind == "missed" then missed = missed or i end
        if missed and x.item == "event" and x.resync then return true end
      end
    end, 40)
    assert.truthy(recs, s:text():sub(-2000))
    local got
    for _, x in ipairs(recs) do if x.resync then got = x end end
    assert.equals(TOPIC, got.topic)
    local msg = cjson.decode(got.raw)
    assert.equals("Away", msg.eventBody.presenceDefinition.systemPresence)
    assert.truthy(msg.resync.deaf_to_ms >= msg.resync.deaf_from_ms)
  end)

  it("a dead worker's reader is dropped at once, not waited for", function()
    local ng = nginx.start { conf = count_conf(2), workers = 2,
      env = env_for(emu, { GN_HANDLER_MODULE = "support.resty_stuck_hook", GN_RING_SIZE = "16",
        GN_STALL_MS = "600000", GN_STUCK_S = "3600" }) }
    finally(function() ng:stop() end)
    local h0 = health(ng)
    assert.truthy(h0, "no worker connected: " .. ng:log())
    local st, j = emu:admin("POST", "publish", { topic = TOPIC, count = 200 })
    assert.equals(200, st)
    local c = nginx.wait_until(function()
      local x = counts(ng)
      return x.stuck and x
    end, 10)
    assert.truthy(c, "no worker got stuck")
    -- the holder waits for the stuck reader (stall_ms is 10 minutes): the holder's worker stops
    -- short of the burst
    emulator.sleep(1)
    local w = counts(ng).workers[tostring(h0.holder_pid)]
    assert.truthy(w and w.last < 200, "the holder did not wait: " .. cjson.encode(w))
    ng:kill_worker(c.stuck)
    assert.truthy(publish_done(emu, j.stream, 200, 30))
    every_worker_got(ng, { h0.holder_pid }, 200, 20)
    local h = ng:health()
    assert.equals(1, h.readers_gone, cjson.encode(h))
    assert.equals(0, h.reader_stalls)
    assert.truthy(ng:log():find("the reader of pid " .. c.stuck .. " is gone", 1, true))
  end)
end)

describe("genesys.notify.resty on several machines: a Redis lease for the fleet", function()
  local redis = require "support.redis"
  local emu, r
  setup(function()
    emu = emulator.start { tls = true, heartbeat_ms = 500 }
    r = redis.start()
  end)
  teardown(function()
    if emu then emu:stop() end
    if r then r:stop() end
  end)

  it("two nginx share one channel; every node's /events gets every event; the other takes over", function()
    local env = { GN_REDIS_URL = r.url, GN_REDIS_KEY = "gn:ngx", GN_REDIS_LEASE_MS = "1000" }
    local a = start(emu, env)
    finally(function() a:stop() end)
    local b = start(emu, env)
    finally(function() b:stop() end)
    assert.truthy(nginx.wait_until(function() return connected_channels(emu) == 1 end, 15),
      "no channel: " .. a:log())
    for _ = 1, 10 do
      assert.is_true(connected_channels(emu) <= 1, "two channels at once")
      emulator.sleep(0.05)
    end
    local sa = a:stream("/events", 30)
    local sb = b:stream("/events", 30)
    assert.truthy(nginx.wait_until(function() return sa:worker() and sb:worker() end, 5))
    emulator.sleep(0.5) -- the fleet consumers read from the stream's end
    local cids = {}
    for i = 1, 3 do cids[i] = publish(emu) end
    for _, s in ipairs { sa, sb } do
      local recs = s:wait_for(function(rr)
        for _, cid in ipairs(cids) do if not has_cid(rr, cid) then return false end end
        return true
      end, 10)
      assert.truthy(recs, "a node's stream missed events: " .. s:text())
      assert.equals(3, #events_of(recs))
    end
    -- the node holding the lease goes away: the other one streams, its workers get the gap
    local fence = tonumber(r:cli("GET", "gn:ngx:fence"))
    local holder = tonumber(r:cli("GET", "gn:ngx:lease"):match(":(%d+):")) -- host:pid:random
    local gone, stay, st = a, b, sb
    for _, w in ipairs(b:workers()) do if w.pid == holder then gone, stay, st = b, a, sa end end
    gone:stop()
    assert.truthy(nginx.wait_until(function()
      return (tonumber(r:cli("GET", "gn:ngx:fence")) or 0) > fence and connected_channels(emu) == 1
    end, 10), "no takeover: " .. stay:log())
    assert.truthy(st:wait_for(function(rr)
      return health_of(rr, "restored", function(x) return x.takeover end)
    end, 10), "no gap marker: " .. st:text())
    local cid = publish(emu)
    assert.truthy(st:wait_for(function(rr) return has_cid(rr, cid) end, 10), st:text())
    local log = stay:log() .. gone:log()
    assert.is_nil(log:find("test-secret", 1, true))
  end)

  -- the log's lines of the resty layer and the library, events aside
  local function notices(ng)
    local out = {}
    for line in ng:log():gmatch("[^\n]+") do
      if line:find("genesys.notify", 1, true) and not line:find(" event ", 1, true) and
          not line:find("token event", 1, true) and not line:find("subscription ", 1, true) then
        out[#out + 1] = line
      end
    end
    return table.concat(out, "\n"):sub(-8000)
  end

  -- (the second: successors that pause between their looks, as in the plain mode's specs)
  for _, hook in ipairs { "count", "lookpause" } do
    it("fleet mode, reloads under a steady stream" ..
        (hook == "lookpause" and ", successors that look slowly" or "") .. ": the lease and " ..
        "the ring's feed are handed over, every event once in every worker and in the fleet's " ..
        "stream, no marker, nothing missed", function()
      local fleet = require "support.fleet"
      local topic = "v2.users.ngx-fleetreload" .. hook .. ".presence"
      local key = "gn:ngxreload" .. hook
      local fan = fleet.spawn("fanout", { FLEET_REDIS = r.url, FLEET_KEY = key })
      finally(function()
        fleet.stop_all()
        fleet.cleanup()
      end)
      assert(fan:started())
      local ng = nginx.start { conf = count_conf(2), workers = 2,
        env = env_for(emu, { GN_TOPICS = topic,
          GN_HANDLER_MODULE = "support.resty_" .. hook .. "_hook", GN_REDIS_URL = r.url,
          GN_REDIS_KEY = key, GN_REDIS_LEASE_MS = "2000" }) }
      finally(function() ng:stop() end)
      assert.truthy(health(ng), "no worker connected: " .. ng:log())
      assert.truthy(nginx.wait_until(function() return connected_channels(emu) == 1 end, 15))
      emulator.sleep(0.5) -- the fleet consumers read from the stream's end
      local total = 300
      local st, j = emu:admin("POST", "publish", { topic = topic, count = total, rate = 30 })
      assert.equals(200, st)
      emulator.sleep(1)
      local gens = reload_thrice(ng, 2, notices)
      local reloads = #gens - 1
      local c = all_reached(ng, emu, j.stream, total)
      assert_no_replay(c, gens)
      if hook == "lookpause" then assert.truthy((c.lookpauses or 0) > 0, "no successor paused") end
      -- the fleet's stream itself: every event once (a fanout consumer outside nginx)
      local seen = {}
      assert.truthy(nginx.wait_until(function()
        seen = {}
        for _, e in ipairs(fan:events()) do
          if e.stream == j.stream then seen[e.seq] = (seen[e.seq] or 0) + 1 end
        end
        return seen[total]
      end, 10), "the fanout consumer did not get the last event")
      for q = 1, total do
        assert.equals(1, seen[q], "event " .. q .. " in the fleet's stream: " ..
          fan:out():gsub("E [^\n]*\n", "") .. notices(ng))
      end
      assert.equals(0, #fan:markers(), "a marker in the fleet's stream: " .. fan:out():gsub("E [^\n]*\n", ""))
      local h = ng:health()
      assert.equals(reloads, h.handovers, notices(ng))
      assert.equals(0, h.takeovers)
      assert.equals(0, h.ring.write_failures)
      assert.is_nil(c.health.missed, "missed: " .. cjson.encode(c.health))
      assert.is_nil(c.health.restored, "a gap: " .. tostring(ng:log():match("count hook: [^\n]*")))
      assert.truthy((c.health.handover or 0) >= reloads, cjson.encode(c.health))
      assert.truthy(nginx.wait_until(function() return connected_channels(emu) == 1 end, 10))
      local knock = bell_knock(ng:log())
      assert.is_nil(knock, knock)
    end)
  end

  it("fleet mode, a burst of " .. BURST .. " events of 1 KB at the default settings: the stream " ..
      "feeds the ring under back-pressure, every worker gets every one, nothing missed", function()
    local topic = "v2.users.ngx-fleetburst.presence"
    local ng = nginx.start { conf = count_conf(2), workers = 2,
      env = env_for(emu, { GN_TOPICS = topic, GN_HANDLER_MODULE = "support.resty_count_hook",
        GN_REDIS_URL = r.url, GN_REDIS_KEY = "gn:ngxburst", GN_REDIS_LEASE_MS = "5000" }) }
    finally(function() ng:stop() end)
    assert.truthy(health(ng), "no worker connected: " .. ng:log())
    assert.truthy(nginx.wait_until(function() return connected_channels(emu) == 1 end, 15))
    emulator.sleep(0.5) -- the fleet consumer reads from the stream's end
    local st, j = emu:admin("POST", "publish", { topic = topic, count = BURST, size = 1024 })
    assert.equals(200, st)
    assert.truthy(publish_done(emu, j.stream, BURST, 60 + BURST / 500), "the burst was not delivered")
    local c = whole_burst(ng, 2)
    assert.is_nil(c.health.restored, "a gap: " .. tostring(ng:log():match("count hook: [^\n]*")))
  end)
end)
