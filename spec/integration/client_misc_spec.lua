-- Metrics, contexts, handshake faults and timeouts, __close, and a create/close leak loop.
local emulator = require "support.emulator"
local wait = require "support.wait"
local notify = require "genesys.notify"

local TOPIC = "v2.users.x1.presence"

local function start_client(emu, extra)
  return wait.start_client(emu, extra, { TOPIC })
end

local rss_kb = wait.rss_kb

describe("genesys.notify client: metrics, contexts, timeouts", function()
  local emu
  setup(function() emu = emulator.start { tls = true } end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function() emu:admin("POST", "faults/clear", {}) end)

  it("metrics(): attempts, successes, failures, success rate, latency percentiles, events, uptime", function()
    local client, rec = start_client(emu)
    finally(function() client:close() end)
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    for _ = 1, 3 do
      local n = rec.count("connected")
      emu:admin("POST", "channels/" .. wait.channel_of(rec) .. "/reset", {})
      assert.truthy(wait.until_(client, function() return rec.count("connected") > n end, 10000))
    end
    emu:admin("POST", "channels/" .. wait.channel_of(rec) .. "/events", { count = 4, topic = TOPIC })
    assert.truthy(wait.until_(client, function() return #rec.events >= 4 end, 5000))
    local m = client:metrics()
    assert.equals(4, m.attempts)
    assert.equals(4, m.successes)
    assert.equals(0, m.failures)
    assert.equals(1, m.success_rate)
    assert.equals(4, m.events)
    assert.equals(3, m.disconnects)
    assert.equals(4, m.latency_ms.count)
    assert.is_true(m.latency_ms.p50 <= m.latency_ms.p90)
    assert.is_true(m.latency_ms.p90 <= m.latency_ms.p99)
    assert.is_true(m.latency_ms.p99 <= m.latency_ms.max)
    assert.is_true(m.uptime_ms > 0)
    assert.is_true(m.connected_ms >= 0)
    assert.equals("open", m.state)
    assert.equals(4, m.scheduler.cycles)
    local text = client:metrics("prometheus")
    assert.truthy(text:find('genesys_notify_attempts_total{client=""} 4', 1, true), text)
    assert.truthy(text:find('genesys_notify_reconnect_latency_seconds{client="",quantile="0.99"}', 1, true))
    assert.truthy(text:find('genesys_notify_up{client="",state="open"} 1', 1, true))
    assert.has_error(function() client:metrics("xml") end)
  end)

  -- Every field of metrics() and the Prometheus sample that carries it (labels besides client):
  -- a field added to one and not the other fails the spec below.
  local PROM = {
    attempts = { "genesys_notify_attempts_total" },
    successes = { "genesys_notify_successes_total" },
    failures = { "genesys_notify_failures_total" },
    success_rate = { "genesys_notify_success_rate" },
    events = { "genesys_notify_events_total" },
    dropped = { "genesys_notify_events_dropped_total" },
    health_dropped = { "genesys_notify_health_dropped_total" },
    pauses = { "genesys_notify_pauses_total" },
    paused_ms = { "genesys_notify_paused_seconds_total", scale = 1000, approx = true },
    tls_resumed = { "genesys_notify_tls_resumed_total" },
    resync_runs = { "genesys_notify_resync_runs_total" },
    resync_entities = { "genesys_notify_resync_entities_total" },
    resync_requests = { "genesys_notify_resync_requests_total" },
    resync_stale = { "genesys_notify_resync_stale_total" },
    resync_forbidden = { "genesys_notify_resync_forbidden_total" },
    resync_rate_limited = { "genesys_notify_resync_rate_limited_total" },
    resync_failed = { "genesys_notify_resync_failed_total" },
    heartbeats = { "genesys_notify_heartbeats_total" },
    malformed = { "genesys_notify_malformed_total" },
    disconnects = { "genesys_notify_disconnects_total" },
    health = { "genesys_notify_health_total" },
    duplicates = { "genesys_notify_duplicates_total" },
    rollovers = { "genesys_notify_rollovers_total" },
    renewals = { "genesys_notify_renewals_total" },
    renewal_rollovers = { "genesys_notify_renewal_rollovers_total" },
    evictions = { "genesys_notify_evictions_total" },
    queued_events = { "genesys_notify_queued_events" },
    queued_bytes = { "genesys_notify_queued_bytes" },
    topics_wanted = { "genesys_notify_topics_wanted" },
    topics_confirmed = { "genesys_notify_topics_confirmed" },
    subscriptions_synced = { "genesys_notify_subscriptions_synced" },
    uptime_ms = { "genesys_notify_uptime_seconds", scale = 1000, approx = true },
    connected_ms = { "genesys_notify_connected_seconds", scale = 1000, approx = true },
    deaf_ms = { "genesys_notify_deaf_seconds_total", scale = 1000, approx = true },
    state = { "genesys_notify_up", label = "state" },
    ["latency_ms.count"] = { "genesys_notify_reconnect_latency_seconds_count" },
    ["latency_ms.sum"] = { "genesys_notify_reconnect_latency_seconds_sum", scale = 1000, approx = true },
    ["latency_ms.p50"] = { 'genesys_notify_reconnect_latency_seconds{quantile="0.5"}', scale = 1000,
      approx = true },
    ["latency_ms.p90"] = { 'genesys_notify_reconnect_latency_seconds{quantile="0.9"}', scale = 1000,
      approx = true },
    ["latency_ms.p99"] = { 'genesys_notify_reconnect_latency_seconds{quantile="0.99"}', scale = 1000,
      approx = true },
    ["latency_ms.max"] = { "genesys_notify_reconnect_latency_max_seconds", scale = 1000, approx = true },
    ["scheduler.cycles"] = { "genesys_notify_scheduler_cycles_total" },
    ["scheduler.coalesced"] = { "genesys_notify_scheduler_coalesced_total" },
    ["scheduler.triggers"] = { "genesys_notify_scheduler_triggers_total" },
    token_requests = { "genesys_notify_token_requests_total" },
    wake_peers = { "genesys_notify_wake_peers" },
    wake_refused = { "genesys_notify_wake_refused_total" },
    topics_waiting = { "genesys_notify_topics_waiting" },
  }
  -- Each channel of the pool (metrics().channels[i]), labelled channel="N" (its number).
  local CHAN = {
    events = { "genesys_notify_channel_events_total" },
    attempts = { "genesys_notify_channel_attempts_total" },
    successes = { "genesys_notify_channel_successes_total" },
    failures = { "genesys_notify_channel_failures_total" },
    disconnects = { "genesys_notify_channel_disconnects_total" },
    rollovers = { "genesys_notify_channel_rollovers_total" },
    duplicates = { "genesys_notify_channel_duplicates_total" },
    topics_wanted = { "genesys_notify_channel_topics_wanted" },
    topics_confirmed = { "genesys_notify_channel_topics_confirmed" },
    subscriptions_synced = { "genesys_notify_channel_subscriptions_synced" },
    connected_ms = { "genesys_notify_channel_connected_seconds", scale = 1000, approx = true },
  }
  for _, r in ipairs { "close", "error", "timeout", "manual", "expired" } do
    PROM["scheduler.by_reason." .. r] =
      { 'genesys_notify_scheduler_triggers_by_reason_total{reason="' .. r .. '"}' }
  end

  local function flatten(t, prefix, out)
    for k, v in pairs(t) do
      if type(v) == "table" then flatten(v, prefix .. k .. ".", out) else out[prefix .. k] = v end
    end
    return out
  end

  -- { ['name{labels without client}'] = value }, { family = type }, { family = help }
  local function parse_prometheus(text)
    local samples, types, helps = {}, {}, {}
    for line in text:gmatch("[^\n]+") do
      local fam, ty = line:match("^# TYPE (%S+) (%S+)$")
      local hfam, help = line:match("^# HELP (%S+) (.+)$")
      if hfam then
        assert.is_nil(helps[hfam], "help twice: " .. hfam)
        helps[hfam] = help
      elseif fam then
        assert.is_nil(types[fam], "family twice: " .. fam)
        types[fam] = ty
      else
        local name, labels, value = line:match("^([%w_]+){(.-)} (%S+)$")
        assert.truthy(name, "not a sample line: " .. line)
        local rest = {}
        for k, v in labels:gmatch('([%w_]+)="([^"]*)"') do
          if k ~= "client" then rest[#rest + 1] = k .. '="' .. v .. '"' end
        end
        table.sort(rest)
        local key = #rest > 0 and (name .. "{" .. table.concat(rest, ",") .. "}") or name
        assert.is_nil(samples[key], "sample twice: " .. key)
        samples[key] = tonumber(value)
      end
    end
    return samples, types, helps
  end

  it("the Prometheus text carries every field of metrics(), with counters as _total", function()
    local client, rec = start_client(emu, { name = "prom" })
    finally(function() client:close() end)
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    emu:admin("POST", "channels/" .. wait.channel_of(rec) .. "/reset", {})
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    local raw = client:metrics()
    local m = flatten(raw, "", {})
    local text = client:metrics("prometheus")
    assert.equals(1, #raw.channels)
    for i, ch in ipairs(raw.channels) do
      local lab = 'channel="' .. ch.channel .. '"'
      for k, p in pairs(CHAN) do
        PROM["channels." .. i .. "." .. k] = { p[1] .. "{" .. lab .. "}", scale = p.scale, approx = p.approx }
      end
      -- its number and state are the labels of its up sample
      PROM["channels." .. i .. ".state"] = { "genesys_notify_channel_up{" .. lab .. "}", label = "state" }
      PROM["channels." .. i .. ".channel"] = { "genesys_notify_channel_up{" .. lab .. "}", label = "state",
        number = true }
    end
    local samples, types, helps = parse_prometheus(text)
    local used = {}
    for key in pairs(m) do
      assert.truthy(PROM[key], "metrics()." .. key .. " is missing from the Prometheus text (and this spec)")
    end
    for key, p in pairs(PROM) do
      assert.is_not_nil(m[key], "metrics() has no " .. key)
      local v = m[key]
      local sample = p[1]
      if p.number then v = m[key:gsub("channel$", "state")] end
      if p.label then
        local name, labels = sample:match("^(.-){(.*)}$")
        sample = name and (name .. "{" .. labels .. "," .. p.label .. '="' .. v .. '"}')
          or (sample .. "{" .. p.label .. '="' .. v .. '"}')
      end
      local got = samples[sample]
      assert.is_not_nil(got, "no sample " .. sample .. " for metrics()." .. key .. " in:\n" .. text)
      used[sample] = true
      local want = p.label and (v == "open" and 1 or 0) or v
      if type(want) == "boolean" then want = want and 1 or 0 end
      want = want / (p.scale or 1)
      if p.approx then
        assert.is_true(math.abs(got - want) <= math.max(1, want * 0.05), key .. ": " .. got .. " vs " .. want)
      else
        assert.is_true(math.abs(got - want) < 1e-6, key .. ": " .. got .. " vs " .. want)
      end
    end
    for sample in pairs(samples) do
      assert.truthy(used[sample], "sample " .. sample .. " has no metrics() field")
    end
    for fam, ty in pairs(types) do
      if fam:find("_total$") then assert.equals("counter", ty, fam)
      else assert.truthy(ty == "gauge" or ty == "summary", fam .. " " .. ty) end
    end
    for sample in pairs(samples) do
      local fam = sample:gsub("{.*", "")
      if types[fam] == nil then fam = fam:gsub("_count$", ""):gsub("_sum$", "") end
      assert.truthy(types[fam], "no # TYPE for " .. sample)
      assert.truthy(helps[fam], "no # HELP for " .. sample)
    end
    -- promtool (Debian's prometheus package, in make deps) lints it
    local f = io.popen("env -u LD_PRELOAD promtool check metrics 2>&1 <<'EOF'\n" .. text .. "EOF\necho rc=$?")
    local out = f:read("*a")
    f:close()
    assert.truthy(out:find("rc=0", 1, true), out)
  end)

  it("notify.prometheus(clients): one exposition for several clients, each family once", function()
    local a, rec_a = start_client(emu, { name = "alpha" })
    local b, rec_b = start_client(emu, { name = "beta" })
    finally(function() a:close(); b:close() end)
    -- both connected, so that neither gains samples (its first latency) between the merged
    -- text and its own
    assert.truthy(wait.until_({ a, b }, function()
      return rec_a.count("connected") > 0 and rec_b.count("connected") > 0
    end, 10000))
    local text = notify.prometheus { a, b }
    local helps, types, per = {}, {}, { alpha = 0, beta = 0 }
    for line in text:gmatch("[^\n]+") do
      local h = line:match("^# HELP (%S+)")
      local t = line:match("^# TYPE (%S+)")
      if h then helps[h] = (helps[h] or 0) + 1 end
      if t then types[t] = (types[t] or 0) + 1 end
      local who = line:match('^genesys_notify_[%w_]+{client="(%w+)"')
      if who then per[who] = per[who] + 1 end
    end
    for fam, n in pairs(helps) do assert.equals(1, n, fam) end
    for fam, n in pairs(types) do assert.equals(1, n, fam) end
    -- every sample of each client's own text is in the merged one, and no other
    for who, c in pairs { alpha = a, beta = b } do
      local own = 0
      for line in c:metrics("prometheus"):gmatch("[^\n]+") do
        if not line:find("^#") then
          own = own + 1
          assert.truthy(text:find(line:match("^([^ ]+) "), 1, true), line)
        end
      end
      assert.equals(own, per[who], who)
    end
    local f = io.popen("env -u LD_PRELOAD promtool check metrics 2>&1 <<'EOF'\n" .. text .. "EOF\necho rc=$?")
    local out = f:read("*a")
    f:close()
    assert.truthy(out:find("rc=0", 1, true), out)
    local c = start_client(emu, { name = "alpha" })
    finally(function() a:close(); b:close(); c:close() end)
    assert.has_error(function() notify.prometheus { a, b, c } end,
      'genesys.notify: prometheus(clients): clients[3]: expected a name of its own (the client label), ' ..
      'got "alpha", the name of clients[1]')
  end)

  it("failures count in the success rate", function()
    emu:admin("POST", "faults/http", { target = "rest", status = 503, count = 2 })
    local client, rec = start_client(emu)
    finally(function() client:close() end)
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    local m = client:metrics()
    assert.equals(3, m.attempts)
    assert.equals(2, m.failures)
    assert.equals(1, m.successes)
    assert.is_true(math.abs(m.success_rate - 1 / 3) < 1e-9)
  end)

  it("clients of a context of their own work and close with it", function()
    local ctx = notify.context()
    local recs, clients = {}, {}
    for i = 1, 3 do
      clients[i], recs[i] = start_client(emu, { context = ctx })
    end
    ctx:close() -- the clients keep the thread until they close
    assert.truthy(wait.until_(clients, function()
      for _, r in ipairs(recs) do if r.count("connected") == 0 then return false end end
      return true end, 10000))
    for _, c in ipairs(clients) do c:close() end
    assert.has_error(function() notify.new(wait.config(emu, nil, { context = ctx })) end,
      "genesys.notify: context: expected an open context, got a closed one")
    assert.has_error(function() notify.new(wait.config(emu, nil, { context = {} })) end)
  end)

  it("the service thread runs with signals blocked (the application's handlers never run on it)", function()
    local function tasks()
      local pid = io.open("/proc/self/stat"):read("*l"):match("^(%d+)")
      local p = io.popen("ls /proc/" .. pid .. "/task")
      local t = {}
      for tid in p:lines() do t[tid] = true end
      p:close()
      return t, pid
    end
    local function blocked(pid, tid)
      local f = io.open("/proc/" .. pid .. "/task/" .. tid .. "/status")
      if not f then return nil end
      local hex = f:read("*a"):match("SigBlk:%s*(%x+)")
      f:close()
      return hex
    end
    local before = tasks()
    local ctx = notify.context()
    finally(function() ctx:close() end)
    local after, pid = tasks()
    local new = 0
    for tid in pairs(after) do
      if not before[tid] then
        local hex = blocked(pid, tid)
        if hex then
          new = new + 1
          local low = tonumber(hex:sub(-8), 16) -- signals 1..32
          for _, sig in ipairs { 1, 2, 10, 12, 13, 14, 15 } do -- HUP INT USR1 USR2 PIPE ALRM TERM
            assert.is_true(math.floor(low / 2 ^ (sig - 1)) % 2 == 1,
              "signal " .. sig .. " not blocked on thread " .. tid .. " (SigBlk " .. hex .. ")")
          end
        end
      end
    end
    assert.is_true(new >= 1, "no new thread for the context")
  end)

  it("a default-context client and a client of a context of its own run side by side", function()
    local a, ra = start_client(emu)
    finally(function() a:close() end)
    local ctx = notify.context()
    finally(function() ctx:close() end)
    local b, rb = start_client(emu, { context = ctx })
    finally(function() b:close() end)
    assert.truthy(wait.until_({ a, b }, function()
      return ra.count("connected") > 0 and rb.count("connected") > 0 end, 10000))
    a:close() -- the default context stops while the other one lives
    emu:admin("POST", "channels/" .. wait.channel_of(rb) .. "/events", { count = 2, topic = TOPIC })
    assert.truthy(wait.until_(b, function() return #rb.events >= 2 end, 5000))
  end)

  it("a refused handshake (503) is a failure with the status, then the client is back", function()
    emu:admin("POST", "faults/handshake", { mode = "refuse", ms = 300 * wait.slow() })
    local client, rec = start_client(emu)
    finally(function() client:close() end)
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    -- a 5xx refusal is soft: every retry goes to the same channel, made and subscribed once
    for i, f in ipairs(rec.kinds.failed) do
      assert.equals("handshake", f.reason)
      assert.equals(503, f.status)
      assert.equals(i - 1, f.attempt)
      assert.equals(i == 1, f.new_channel)
    end
    local ch = wait.channel_of(rec)
    assert.equals(1, rec.count("subscription"))
    assert.equals(ch, rec.kinds.subscription[1].channel_id)
    assert.is_false(rec.kinds.connected[1].new_channel)
    assert.equals(rec.count("failed"), rec.kinds.connected[1].attempt)
    assert.equals(1, emu:stats().channels[ch].handshakes) -- the refused ones are not counted
  end)

  it("a slow handshake runs into timeouts.handshake_ms and is retried", function()
    local k = wait.slow()
    local client, rec = start_client(emu,
      { timeouts = { connect_ms = 300 * k, handshake_ms = 300 * k, http_ms = 3000 * k } })
    finally(function() client:close() end)
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    -- every new connection is held unread for 2 s during the next 1.5 s; the soft reconnect goes
    -- straight to the WebSocket and must give up on it after 300 ms, then come back
    emu:admin("POST", "faults/handshake", { mode = "slow", ms = 1500 * k, delay_ms = 2000 * k })
    assert.is_true(client:reconnect())
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 15000))
    local f = rec.kinds.failed[1]
    assert.equals("timeout", f.reason)
    assert.truthy(f.error:find("timed out after " .. 300 * k .. " ms", 1, true), f.error)
  end)

  it("refused TCP connections are network failures with backoff", function()
    emu:admin("POST", "faults/tcp", { mode = "refuse", ms = 300 * wait.slow() })
    local client, rec = start_client(emu)
    finally(function() client:close() end)
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    -- each refused try (the token's request, the channel's, or the WebSocket's, depending on
    -- what the process already holds: the token cache is shared) is a failure with no answer,
    -- then an attempt after the policy's delay (50, 100, 200, 400 ms, no jitter), until the
    -- window is over
    local failed, attempts = rec.kinds.failed, rec.kinds.attempt
    assert.truthy(failed and #failed >= 2, "the 300 ms window holds at least the first two tries")
    assert.equals(#failed, #attempts)
    local network = { token = true, network = true, connect = true, tls = true } -- accepted, then cut
    for i, f in ipairs(failed) do
      assert.truthy(network[f.reason], f.reason)
      assert.is_true(f.status == nil or f.status == 0, tostring(f.status))
      assert.equals(i - 1, f.attempt)
      local a = attempts[i]
      assert.equals(i, a.attempt)
      assert.equals(math.min(50 * 2 ^ (i - 1), 400), a.delay_ms)
      assert.equals(f.reason, a.reason)
      assert.equals("error", a.trigger)
    end
    assert.equals(#failed, rec.kinds.connected[1].attempt)
    local m = client:metrics()
    assert.equals(#failed, m.failures)
    assert.equals(1, m.successes)
    assert.equals(#failed + 1, m.attempts)
  end)

  if _VERSION == "Lua 5.4" then
    it("a to-be-closed client is closed when its scope ends", function()
      local rec = wait.recorder()
      local chunk = assert(load([[
        local notify, cfg = ...
        local c <close> = notify.new(cfg)
        c:start()
        return c
      ]]))
      local c = chunk(notify, wait.config(emu, rec, { topics = { TOPIC } }))
      assert.equals("closed", c:state())
    end)
  end

  local function open_fds()
    local p = io.popen("ls /proc/" .. (io.open("/proc/self/stat"):read("*l"):match("^(%d+)")) .. "/fd")
    local n = 0
    for _ in p:lines() do n = n + 1 end
    p:close()
    return n
  end
  local function threads() return wait.proc_status("Threads") end

  it("create, start, close in a loop: memory, descriptors and threads stay flat", function()
    local function round(n)
      for _ = 1, n do
        local c = notify.new(wait.config(emu, nil, { topics = { TOPIC } }))
        c:start()
        c:poll(1)
        c:close()
      end
      collectgarbage()
      collectgarbage()
    end
    round(20)
    local lua0, rss0, fds0, th0 = collectgarbage("count"), rss_kb(), open_fds(), threads()
    round(60)
    local lua1, rss1, fds1, th1 = collectgarbage("count"), rss_kb(), open_fds(), threads()
    assert.is_true(lua1 - lua0 < 200, "Lua heap grew by " .. (lua1 - lua0) .. " KB")
    -- every client holds an eventfd until it is freed (and a context a thread): one leaked per
    -- round is 60 more; a few may come and go with the default context's own sockets
    assert.is_true(fds1 - fds0 <= 4, "open descriptors: " .. fds0 .. " -> " .. fds1)
    assert.is_true(th1 - th0 <= 1, "threads: " .. th0 .. " -> " .. th1)
    -- valgrind's and the sanitizers' allocators keep freed memory (quarantine): there their own
    -- leak checks stand in for this one
    if wait.slow() == 1 then
      assert.is_true(rss1 - rss0 < 4096, "RSS grew by " .. (rss1 - rss0) .. " KB")
    end
  end)
end)

describe("genesys.notify audit lines", function()
  local emu
  setup(function() emu = emulator.start { tls = true } end)
  teardown(function() if emu then emu:stop() end end)

  for _, fmt in ipairs { "pipe", "json" } do
    it("writes one " .. fmt .. " line per health item, attempt records included", function()
      local lines = {}
      local rec = wait.recorder()
      local cfg = wait.config(emu, rec, { topics = { TOPIC },
        audit = { format = fmt, sink = function(l) lines[#lines + 1] = l end } })
      local client = notify.new(cfg)
      finally(function() client:close() end)
      client:start()
      assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
      emu:admin("POST", "channels/" .. wait.channel_of(rec) .. "/reset", {})
      assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
      assert.equals(#rec.health, #lines)
      local attempt
      for _, l in ipairs(lines) do
        assert.falsy(l:find("test-secret", 1, true))
        assert.falsy(l:find("\n", 1, true))
        if l:find("attempt", 1, true) and l:find("reconnect", 1, true) then attempt = l end
      end
      assert.truthy(attempt, "no attempt line")
      if fmt == "pipe" then
        assert.truthy(attempt:find("^%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z|attempt|backoff|"), attempt)
        assert.truthy(attempt:find("|type=reconnect", 1, true), attempt)
        assert.truthy(attempt:find("|delay_ms=", 1, true), attempt)
      else
        local cjson = require "cjson"
        local j = cjson.decode(attempt)
        assert.equals("attempt", j.kind)
        assert.equals("reconnect", j.type)
        assert.equals(1, j.attempt)
        assert.equals("number", type(j.delay_ms))
      end
    end)
  end

  it("rejects a bad audit configuration by field", function()
    local ok, err = pcall(notify.new, wait.config(emu, nil, { audit = { format = "xml" } }))
    assert.is_false(ok)
    assert.truthy(err:find('audit.format: expected "pipe", "json" or "seed", got "xml"', 1, true), err)
    ok, err = pcall(notify.new, wait.config(emu, nil, { audit = { sink = 42 } }))
    assert.is_false(ok)
    assert.truthy(err:find("audit.sink: expected a file", 1, true), err)
  end)
end)

describe("genesys.notify operator policy hook", function()
  local emu
  setup(function() emu = emulator.start { tls = true } end)
  teardown(function() if emu then emu:stop() end end)

  local function run_with(policy, extra)
    local rec = wait.recorder()
    local seen = {}
    local cfg = wait.config(emu, rec, { topics = { TOPIC },
      policy = function(a) seen[#seen + 1] = a; return policy(a) end })
    for k, v in pairs(extra or {}) do cfg[k] = v end
    local client = notify.new(cfg)
    client:start()
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    emu:admin("POST", "channels/" .. wait.channel_of(rec) .. "/reset", {})
    return client, rec, seen
  end

  it("sees the attempt record and its answer replaces the engine's delay", function()
    local client, rec, seen = run_with(function(a) return a.delay_ms + 600 end,
      { backoff = { base_ms = 50, max_ms = 2000, jitter = "none" } })
    finally(function() client:close() end)
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    assert.equals(1, #seen)
    assert.equals("reconnect", seen[1].type)
    assert.equals(1, seen[1].attempt)
    assert.equals("applied", rec.kinds.policy[1].event)
    assert.is_true(rec.kinds.restored[1].gap_ms >= 600, rec.kinds.restored[1].gap_ms)
  end)

  it("false gives up: state failed, gave_up with reason policy", function()
    local client, rec = run_with(function() return false end,
      { backoff = { base_ms = 1000, max_ms = 1000, jitter = "none" } })
    finally(function() client:close() end)
    assert.equals("failed", client:run())
    assert.equals("policy", rec.kinds.gave_up[1].reason)
    assert.equals(0, rec.count("restored"))
  end)

  it("a delay above the policy's caps is refused and the engine's delay stands", function()
    local client, rec = run_with(function() return 1e9 end)
    finally(function() client:close() end)
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    assert.equals("rejected", rec.kinds.policy[1].event)
    assert.truthy(rec.kinds.policy[1].error:find("above the policy's maximum", 1, true))
  end)

  it("a wrong answer or an error is callback_error, and reconnection goes on", function()
    local client, rec = run_with(function() return "soon" end)
    finally(function() client:close() end)
    assert.truthy(wait.until_(client, function() return rec.count("restored") > 0 end, 10000))
    local ce = rec.last("callback_error")
    assert.equals("policy", ce.callback)
    assert.truthy(ce.error:find("policy returned string", 1, true), ce.error)
    local client2, rec2 = run_with(function() error("policy blew up") end)
    finally(function() client2:close() end)
    assert.truthy(wait.until_(client2, function() return rec2.count("restored") > 0 end, 10000))
    assert.truthy(rec2.last("callback_error").error:find("policy blew up", 1, true))
  end)

  it("policy must be a function", function()
    local ok, err = pcall(notify.new, wait.config(emu, nil, { policy = 5 }))
    assert.is_false(ok)
    assert.truthy(err:find("policy: expected a function", 1, true), err)
  end)
end)
