--- genesys.notify.resty: the client inside nginx (lua-nginx-module / OpenResty, LuaJIT).
--
--   lua_shared_dict genesys_notify 4m;
--   init_worker_by_lua_block {
--     local resty = require "genesys.notify.resty"
--     resty.start { dict = "genesys_notify", region = "eu-west-1", topics = { ... } }
--     resty.subscribe(function(ev) ... end)     -- every worker; may yield
--   }
--   -- anywhere: resty.status(), resty.prometheus(), resty.follow() (for /events)
--
-- One worker of the nginx instance holds the Genesys stream: a lock in the shared dict (added
-- with a TTL, value "pid:nonce", renewed by the holder). The holder waits on its client's wake
-- socket with a cosocket, takes the waiting items with client:drain() (no callback from C, so
-- handlers may yield), writes each into a bounded ring in the shared dict and rings a bell (a
-- unix socket every worker's reader is connected to). Each worker reads the ring from its own
-- cursor; what was overwritten before it read it (or could not be written) is counted and
-- delivered as a health item of kind "missed", never skipped silently. Every write into the
-- dict is a safe_* call (or incr of an existing number): a plain set could evict the lock.
--
-- Nodes on several machines: give redis = { url, key, lease_ms } (README, "Running a fleet").
-- The dict lock still picks one worker per nginx; that worker's client streams only while it
-- holds the Redis lease (one holder for the whole fleet) and appends to the fleet's Redis
-- Stream, and the same worker feeds this nginx's ring from that stream (a fanout consumer).
local notify = require "genesys.notify"
local cjson = require "cjson.safe"
local semaphore = require "ngx.semaphore"

local ngx = ngx
local type, pairs, ipairs, tostring, tonumber, pcall, error, setmetatable, next =
  type, pairs, ipairs, tostring, tonumber, pcall, error, setmetatable, next
local string_format, math_floor, math_random, math_min, math_max =
  string.format, math.floor, math.random, math.min, math.max
local table_concat = table.concat
local ngx_log, ERR, WARN, NOTICE, INFO = ngx.log, ngx.ERR, ngx.WARN, ngx.NOTICE, ngx.INFO

local _M = { _VERSION = notify._VERSION }

local K_LOCK = "gn:lock"        -- "pid:nonce" of the holder, with a TTL
local K_SEQ = "gn:seq"          -- the last sequence number written into the ring
local K_RING = "gn:ring:"       -- .. (seq % ring_size): "seq\n" .. JSON of the item
local K_STATUS = "gn:status"    -- the holder's state, metrics and last health item (JSON)
local K_PROM = "gn:prom"        -- the holder's client:metrics("prometheus")
local K_HEARD = "gn:heard"      -- wall-clock ms a holder last read a message from Genesys
local K_CNT = "gn:cnt:"         -- counters of the resty layer

local RESTY_FIELDS = {
  dict = true, lock_ttl_ms = true, ring_size = true, bell_path = true, follower_limit = true,
  fallback_ms = true,
}

local S -- this worker's state, set by start()
local handlers, health_handlers = {}, {}
local followers = setmetatable({}, { __mode = "k" })

local function fail(field, expected, got)
  error(string_format("genesys.notify.resty: %s: expected %s, got %s", field, expected, got), 0)
end

local function describe(v)
  if type(v) == "string" then return string_format("%q", v) end
  return type(v) == "table" and "a table" or tostring(v)
end

local function now_ms()
  ngx.update_time()
  return ngx.now() * 1000
end

local function opt_int(cfg, k, lo, hi, default)
  local v = cfg[k]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v % 1 ~= 0 or v < lo or v > hi then
    fail(k, string_format("an integer from %d to %d", lo, hi), describe(v))
  end
  return v
end

-- ---- counters in the dict ------------------------------------------------------------------

-- incr of an existing number changes it in place (no allocation, so no eviction); the key is
-- created with safe_add, which fails rather than evict.
local function count(key, n)
  local dict = S.dict
  local v, err = dict:incr(K_CNT .. key, n or 1)
  if v then return v end
  if err == "not found" then
    local ok, aerr = dict:safe_add(K_CNT .. key, 0)
    if not ok and aerr ~= "exists" then
      ngx_log(ERR, "genesys.notify.resty: counter ", key, " not kept: ", aerr)
      return nil
    end
    return dict:incr(K_CNT .. key, n or 1)
  end
  ngx_log(ERR, "genesys.notify.resty: counter ", key, ": ", err)
  return nil
end

local function counter(key)
  return S.dict:get(K_CNT .. key) or 0
end

-- ---- delivery inside a worker ---------------------------------------------------------------

local function run_handlers(list, arg, what)
  for i = 1, #list do
    local ok, err = pcall(list[i], arg)
    if not ok then
      count("handler_errors:" .. S.wid)
      ngx_log(ERR, "genesys.notify.resty: a ", what, " handler raised: ", tostring(err))
    end
  end
end

local function follower_push(rec, json)
  for f in pairs(followers) do
    if not f.closed then
      if f.tail - f.head + 1 >= f.limit then
        f.dropped = f.dropped + 1
        count("follower_dropped:" .. S.wid)
      else
        f.tail = f.tail + 1
        f.q[f.tail] = { rec, json }
      end
      if f.sema:count() <= 0 then f.sema:post(1) end
    end
  end
end

-- rec: the decoded ring record; json: its text. Events get body (the decoded eventBody) for
-- the handlers; followers get the record and its text with the serving worker's pid.
local function deliver(rec, json)
  rec.worker = S.pid
  if next(followers) then
    follower_push(rec, json:sub(1, -2) .. ',"worker":' .. S.pid .. "}")
  end
  if rec.item == "event" then
    if #handlers > 0 then
      local msg = cjson.decode(rec.raw or "")
      rec.body = type(msg) == "table" and msg.eventBody or nil
      run_handlers(handlers, rec, "subscribe")
    end
  else
    run_handlers(health_handlers, rec, "on_health")
  end
end

local function report_missed(reason, n, from_seq, to_seq)
  local total = count("missed:" .. S.wid, n) or 0
  S.missed = S.missed + n
  local st = S.last_state or "unknown"
  local h = { item = "health", kind = "missed", reason = reason, count = n,
    total_missed = total, from_seq = from_seq, to_seq = to_seq, worker_id = S.wid,
    pid = S.pid, timestamp_ms = math_floor(now_ms()), state = st }
  ngx_log(WARN, "genesys.notify.resty: worker ", S.wid, " missed ", n, " item(s) of the ring (",
    reason, ", seq ", from_seq, "..", to_seq, ")")
  deliver(h, cjson.encode(h))
end

-- Reads the ring from this worker's cursor up to the sequence counter.
local function read_ring()
  local dict, size = S.dict, S.ring_size
  local head = dict:get(K_SEQ) or 0
  if head < S.cursor then
    -- the dict was emptied (an nginx restart keeps no shm): start again from its head
    S.cursor = head
  end
  if head - S.cursor > size then
    local skip_to = head - size
    report_missed("overwritten", skip_to - S.cursor, S.cursor + 1, skip_to)
    S.cursor = skip_to
  end
  local miss_reason, miss_from, miss_n = nil, nil, 0
  while S.cursor < head do
    local s = S.cursor + 1
    local v = dict:get(K_RING .. (s % size))
    local nl = v and v:find("\n", 1, true)
    local vs = nl and tonumber(v:sub(1, nl - 1))
    local reason
    if vs ~= s then reason = (vs and vs > s) and "overwritten" or "write_failed" end
    if miss_reason and reason ~= miss_reason then
      report_missed(miss_reason, miss_n, miss_from, miss_from + miss_n - 1)
      miss_reason, miss_n = nil, 0
    end
    S.cursor = s
    if reason then
      if not miss_reason then miss_reason, miss_from = reason, s end
      miss_n = miss_n + 1
    else
      local json = v:sub(nl + 1)
      local rec = cjson.decode(json)
      if type(rec) == "table" then
        if rec.item == "health" then S.last_state = rec.state or S.last_state end
        deliver(rec, json)
      else
        if not miss_reason then miss_reason, miss_from = "undecodable", s end
        miss_n = miss_n + 1
      end
    end
    if S.exiting then break end
  end
  if miss_reason then report_missed(miss_reason, miss_n, miss_from, miss_from + miss_n - 1) end
end

-- Whether the bell's socket file is there (nginx logs a failed connect at level crit, so the
-- reader does not try while no holder has made it): opening a socket fails with ENXIO, a
-- missing file with ENOENT.
local function bell_exists()
  local f, err = io.open(S.bell_path, "rb")
  if f then f:close() return true end
  return not (err and err:find("No such file", 1, true))
end

-- A light thread that stays connected to a unix socket (path_of() gives its path, or nil while
-- there is none) and posts `sema` when bytes arrive or the peer goes; reconnects with a backoff
-- up to max_retry_s (none: it ends when the peer goes). It only waits: its parent does the
-- work and kills it when done. The read timeout is long because nginx logs each cosocket
-- timeout at level error (unless lua_socket_log_errors is off); the parent's own ticks are
-- semaphore waits, which it does not log.
local function watch(path_of, sema, max_retry_s)
  local retry = 0.05
  while true do
    local path = path_of()
    local sock
    if path then
      sock = ngx.socket.tcp()
      sock:settimeout(1000)
      if not sock:connect("unix:" .. path) then sock = nil end
    end
    if sock then
      retry = 0.05
      sock:settimeout(3600000)
      while true do
        local data, err = sock:receiveany(4096)
        if not data and err ~= "timeout" then break end
        if data and sema:count() <= 0 then sema:post(1) end
      end
      sock:close()
      if sema:count() <= 0 then sema:post(1) end -- read once more after the peer went
      if not max_retry_s then return end
    elseif not max_retry_s then
      return
    else
      ngx.sleep(retry)
      retry = math_min(retry * 2, max_retry_s)
    end
  end
end

-- The reader: one per worker (an ngx.timer). Its watcher is connected to the bell; it reads the
-- ring on every byte, and at least every fallback_ms (also while the bell is gone).
local function reader(premature)
  if premature then return end
  local fallback = S.fallback_ms / 1000
  local child = ngx.thread.spawn(watch, function()
    return bell_exists() and S.bell_path or nil
  end, S.reader_sema, fallback)
  while not (S.exiting or ngx.worker.exiting()) do
    S.reader_sema:wait(fallback)
    local ok, err = pcall(read_ring)
    if not ok then ngx_log(ERR, "genesys.notify.resty: reading the ring: ", tostring(err)) end
  end
  ngx.thread.kill(child)
end

-- ---- the holder --------------------------------------------------------------------------

local function lock_value() return S.pid .. ":" .. S.nonce end

local function ring_write(rec)
  local dict = S.dict
  local s = S.wseq + 1
  rec.seq = s
  local json, jerr = cjson.encode(rec)
  local ok, err
  if json then
    ok, err = dict:safe_set(K_RING .. (s % S.ring_size), s .. "\n" .. json)
  else
    err = "cannot encode: " .. tostring(jerr)
  end
  local newv, ierr = dict:incr(K_SEQ, 1)
  if not newv then
    -- the counter is gone (it is never evicted: every write here is safe_*); start it again
    dict:safe_add(K_SEQ, s)
    newv = dict:get(K_SEQ) or s
    ngx_log(ERR, "genesys.notify.resty: the ring counter was missing (", tostring(ierr), ")")
  end
  S.wseq = newv
  if ok then
    count("ring_writes")
  else
    count("ring_write_failures")
    local t = now_ms()
    if t - (S.fail_logged or 0) > 1000 then
      S.fail_logged = t
      ngx_log(ERR, "genesys.notify.resty: an item could not be written into the ring (seq ", s,
        "): ", tostring(err), "; readers report it as missed (write_failed): enlarge the ",
        "lua_shared_dict or lower ring_size")
    end
  end
end

local function write_status(h, client)
  local st = h.status
  st.state = client:state()
  st.updated_ms = math_floor(now_ms())
  local ok, m = pcall(client.metrics, client)
  if ok then st.metrics = m end
  local okp, prom = pcall(client.metrics, client, "prometheus")
  local dict = S.dict
  local json = cjson.encode(st)
  local sok, err = dict:safe_set(K_STATUS, json or "{}")
  if okp and prom then
    local pok, perr = dict:safe_set(K_PROM, prom)
    sok, err = sok and pok, err or perr
  end
  if not sok then
    count("status_write_failures")
    ngx_log(ERR, "genesys.notify.resty: the status could not be written: ", tostring(err))
  end
  return m
end

local function heard(h, ms)
  if ms and ms > (h.heard_ms or 0) then
    h.heard_ms = ms
    S.dict:safe_set(K_HEARD, ms)
  end
end

-- Fleet mode (redis = {...}): the ring is fed from the fleet's Redis Stream (a fanout consumer
-- in the worker holding the dict lock of each nginx), so every node's workers get every event
-- whichever node holds the Redis lease; this node's client only appends to that stream.
local function fleet_consumer(h)
  local r = S.client_cfg.redis
  h.cwrote = 0
  return notify.consumer { redis = { url = r.url, key = r.key }, mode = "fanout", block_ms = 200,
    on_event = function(ev)
      ring_write { item = "event", topic = ev.topic, channel_id = ev.channel_id,
        received_ms = ev.received_ms, raw = ev.raw, correlation_id = ev.correlation_id,
        fence = ev.fence }
      h.cwrote = h.cwrote + 1
    end,
    on_health = function(it)
      local rec = {}
      for k, v in pairs(it) do rec[k] = v end
      rec.item = "health"
      ngx_log(INFO, "genesys.notify.resty: fleet stream: ", notify.format(it))
      ring_write(rec)
      h.cwrote = h.cwrote + 1
    end }
end

-- The items one drain gave: each into the ring, in order.
local function pump(h, client)
  local wrote, last_ms = 0, nil
  if h.consumer then
    h.cwrote = 0
    h.consumer:poll(0)
    wrote = h.cwrote
  end
  while true do
    local items = client:drain(4096)
    for i = 1, #items do
      local it = items[i]
      local rec
      if (it.item == "event" or it.item == "resync") and h.consumer then
        -- fleet mode: it is in the Redis Stream, and reaches the ring through the consumer
        if it.received_ms and (not last_ms or it.received_ms > last_ms) then last_ms = it.received_ms end
      elseif it.item == "event" or it.item == "resync" then
        -- resync items (resync = ...) ride the ring as events, their raw text marked "resync"
        local raw = it.raw
        rec = { item = "event", topic = it.topic, channel_id = it.channel_id,
          received_ms = it.received_ms, raw = raw, resync = it.resync,
          correlation_id = type(raw) == "string" and raw:match('"CorrelationId"%s*:%s*"([^"]*)"') or nil }
        if it.received_ms and (not last_ms or it.received_ms > last_ms) then last_ms = it.received_ms end
      else
        rec = {}
        for k, v in pairs(it) do rec[k] = v end
        rec.item = "health"
        h.status.last_health = { kind = it.kind, timestamp_ms = it.timestamp_ms,
          reason = it.reason, error = it.error }
        h.status_due = true
        ngx_log(INFO, "genesys.notify.resty: ", notify.format(it))
        if it.kind == "rollover" and it.event == "completed" and it.to then
          h.status.channel_id = it.to
        end
        if it.kind == "connected" then
          -- from here on a successor has a gap to report, even if nothing is heard before it
          heard(h, it.timestamp_ms)
          h.status.channel_id = it.channel_id
          if h.takeover_from then
            -- the gap of the takeover: from the last message the previous holder read to this
            -- connection (deaf_from_ms one second earlier, as the library's own restored items)
            local from = h.takeover_from - 1000
            local to = it.timestamp_ms or math_floor(now_ms())
            h.takeover_from = nil
            ring_write(rec)
            wrote = wrote + 1
            rec = { item = "health", kind = "restored", reason = "takeover", state = "open",
              deaf_from_ms = from, deaf_to_ms = to, gap_ms = to - from, new_channel = true,
              channel_id = it.channel_id, holder_pid = S.pid, previous_holder = h.previous,
              timestamp_ms = to }
          end
        end
      end
      if rec then
        ring_write(rec)
        wrote = wrote + 1
      end
    end
    if #items < 4096 then break end
  end
  heard(h, last_ms)
  return wrote
end

-- Renews the lock; false when it is not ours any more (or could not be kept in time).
local function renew(h)
  local dict = S.dict
  local t = now_ms()
  if t - h.renewed_ms > S.ttl_ms then
    return false, "not renewed within lock_ttl_ms"
  end
  local v = dict:get(K_LOCK)
  if v ~= h.value then return false, "the lock is " .. (v and ("held by " .. v) or "gone") end
  local ok, err = dict:expire(K_LOCK, S.ttl_ms / 1000)
  if not ok then return false, "renewing the lock: " .. tostring(err) end
  h.renewed_ms = t
  return true
end

local function step_down(h, why)
  if h.down then return end
  h.down = true
  local client, bell = h.client, h.bell
  if h.consumer then h.consumer:close() end
  if client then
    -- what the client still holds goes into the ring first (nothing dropped silently)
    pcall(pump, h, client)
    pcall(write_status, h, client)
    client:close()
  end
  if bell then
    pcall(bell.ring, bell)
    bell:close()
  end
  if S.dict:get(K_LOCK) == h.value then S.dict:delete(K_LOCK) end
  if S.holder == h then S.holder = nil end
  ngx_log(NOTICE, "genesys.notify.resty: worker ", S.wid, " (pid ", S.pid,
    ") stepped down as the stream holder: ", why)
end

local function hold(h)
  local cfg = {}
  for k, v in pairs(S.client_cfg) do cfg[k] = v end
  local ok, client = pcall(notify.new, cfg)
  if not ok then
    ngx_log(ERR, "genesys.notify.resty: creating the client: ", tostring(client))
    h.status.state = "config_error"
    h.status.error = tostring(client)
    S.dict:safe_set(K_STATUS, cjson.encode(h.status) or "{}")
    return "the client could not be created"
  end
  h.client = client
  if S.client_cfg.redis then
    -- fleet mode: the takeover gap comes from the Redis Stream's marker (every node gets it)
    h.takeover_from = nil
    local cok, consumer = pcall(fleet_consumer, h)
    if not cok then
      ngx_log(ERR, "genesys.notify.resty: the fleet stream consumer: ", tostring(consumer))
      return "the fleet stream consumer could not be created"
    end
    h.consumer = consumer
    consumer:start()
  end
  -- Without a bell the readers still read the ring every fallback_ms; without the wake socket
  -- the holder drains every 50 ms: slower, never silent (logged here).
  local bok, bell = pcall(notify.bell, S.bell_path)
  if not bok then
    ngx_log(ERR, "genesys.notify.resty: no bell at ", S.bell_path, " (", tostring(bell),
      "): workers read the ring every ", S.fallback_ms, " ms instead")
    bell = nil
  end
  h.bell = bell
  client:start()
  local wok, wpath = pcall(client.wake_socket, client)
  if not wok then
    ngx_log(ERR, "genesys.notify.resty: no wake socket (", tostring(wpath),
      "): the holder drains every 50 ms instead")
    wpath = nil
  end
  local wake = semaphore.new(0)
  h.wake = wake
  if wpath then
    -- the wake socket goes only with the client: its watcher ends then
    h.watcher = ngx.thread.spawn(watch, function() return wpath end, wake, nil)
  end
  local tick = h.consumer and 50 or math_min(S.ttl_ms / 4, 500)
  local next_status = 0
  local last_heartbeats, last_tick = 0, now_ms()
  while not (S.exiting or ngx.worker.exiting() or h.down) do
    local t = now_ms()
    if t - h.renewed_ms >= S.ttl_ms / 4 then
      local rok, why = renew(h)
      if not rok then return why end
    end
    local n = pump(h, client)
    if n > 0 and bell then bell:ring() end
    t = now_ms()
    if h.status_due or t >= next_status then
      h.status_due = false
      next_status = t + 1000
      local m = write_status(h, client)
      -- heartbeats are not items: when their count grew, a message was read since last_tick
      if m and m.heartbeats and m.heartbeats ~= last_heartbeats then
        last_heartbeats = m.heartbeats
        heard(h, math_floor(last_tick))
      end
      last_tick = t
    end
    if S.exiting or ngx.worker.exiting() then break end
    wake:wait(wpath and tick / 1000 or 0.05)
  end
  return (S.exiting or ngx.worker.exiting()) and "the worker is exiting" or "stopped"
end

local function try_take()
  local dict = S.dict
  local value = lock_value()
  local ok = dict:safe_add(K_LOCK, value, S.ttl_ms / 1000)
  if not ok then return nil end
  local h = { value = value, renewed_ms = now_ms(),
    status = { holder_pid = S.pid, holder_worker_id = S.wid, since_ms = math_floor(now_ms()),
      state = "idle" } }
  local prev = dict:get(K_HEARD)
  local prev_status = cjson.decode(dict:get(K_STATUS) or "")
  if prev then
    h.takeover_from = prev
    h.previous = type(prev_status) == "table" and prev_status.holder_pid or nil
    count("takeovers")
  end
  h.status.takeovers = counter("takeovers")
  S.holder = h
  ngx_log(NOTICE, "genesys.notify.resty: worker ", S.wid, " (pid ", S.pid,
    ") holds the Genesys stream", prev and " (takeover)" or "")
  return h
end

-- The lock loop: every worker tries to take the lock while nobody holds it; the winner holds
-- the stream in this same light thread until it steps down.
local function lock_loop(premature)
  if premature then return end
  local every = math_max(S.ttl_ms / 4, 100) / 1000
  while not (S.exiting or ngx.worker.exiting()) do
    local h = try_take()
    if h then
      local ok, why = pcall(hold, h)
      if h.watcher and coroutine.status(h.watcher) ~= "dead" then
        ngx.thread.kill(h.watcher)
      end
      step_down(h, ok and why or ("error: " .. tostring(why)))
      if not ok then ngx_log(ERR, "genesys.notify.resty: the holder failed: ", tostring(why)) end
    end
    if S.exiting or ngx.worker.exiting() then break end
    S.lock_sema:wait(every * (0.75 + 0.5 * math_random()))
  end
end

-- Runs when the worker exits (reload, quit): a pending timer expires prematurely then. The
-- holder lets go at once (client closed, lock deleted) so a new worker can take over, and
-- every follower is woken so its request ends.
local function on_exit(premature)
  if not premature then
    local ok, err = ngx.timer.at(3600, on_exit)
    if not ok then ngx_log(ERR, "genesys.notify.resty: exit timer: ", err) end
    return
  end
  S.exiting = true
  local h = S.holder
  if h then
    step_down(h, "the worker is exiting")
    if h.wake then h.wake:post(1) end
  end
  for f in pairs(followers) do f.sema:post(1) end
  S.lock_sema:post(1)
  S.reader_sema:post(1)
end

-- ---- the public API ---------------------------------------------------------------------

--- Starts the resty layer in this worker (call it in init_worker_by_lua*, in every worker).
-- cfg: dict (lua_shared_dict name, required), lock_ttl_ms (5000), ring_size (1024),
-- bell_path (<prefix>logs/genesys_notify.bell), follower_limit (1000), fallback_ms (1000),
-- and any field of genesys.notify.new except on_event and on_health.
function _M.start(cfg)
  local phase = ngx.get_phase()
  if phase ~= "init_worker" then
    error("genesys.notify.resty: start() belongs in init_worker_by_lua* (it runs in every " ..
      "worker, after the fork); it was called in phase " .. tostring(phase) ..
      (phase == "init" and " (init_by_lua*, the master: a client made there cannot be used " ..
      "in the workers)" or ""), 2)
  end
  if S then error("genesys.notify.resty: start() was already called in this worker", 2) end
  if type(cfg) ~= "table" then fail("config", "a table", describe(cfg)) end
  if type(cfg.dict) ~= "string" then fail("dict", "the name of a lua_shared_dict", describe(cfg.dict)) end
  local dict = ngx.shared[cfg.dict]
  if not dict then
    fail("dict", "the name of a lua_shared_dict declared in the http block", describe(cfg.dict))
  end
  for _, k in ipairs { "on_event", "on_health" } do
    if cfg[k] ~= nil then
      fail(k, "nothing: use resty." .. (k == "on_event" and "subscribe" or "on_health") ..
        "(handler), which runs in every worker", "a " .. type(cfg[k]))
    end
  end
  local client_cfg = {}
  for k, v in pairs(cfg) do
    if not RESTY_FIELDS[k] then client_cfg[k] = v end
  end
  notify.config(client_cfg) -- raises naming the field, in every worker, before anything runs
  local st = {
    dict = dict, dict_name = cfg.dict, client_cfg = client_cfg,
    ttl_ms = opt_int(cfg, "lock_ttl_ms", 300, 3600000, 5000),
    ring_size = opt_int(cfg, "ring_size", 16, 10000000, 1024),
    follower_limit = opt_int(cfg, "follower_limit", 1, 10000000, 1000),
    fallback_ms = opt_int(cfg, "fallback_ms", 10, 60000, 1000),
    bell_path = cfg.bell_path or (ngx.config.prefix() .. "logs/genesys_notify.bell"),
    pid = ngx.worker.pid(), wid = ngx.worker.id() or 0, missed = 0,
    lock_sema = semaphore.new(0), reader_sema = semaphore.new(0),
  }
  if type(st.bell_path) ~= "string" or st.bell_path == "" then
    fail("bell_path", "a file path for a unix socket", describe(cfg.bell_path))
  end
  -- workers inherit the master's generator: seed each apart, so their lock tries spread out
  math.randomseed(st.pid * 1000003 + math_floor(now_ms()) % 1000003)
  st.nonce = string_format("%08x%08x", math_random(0, 0x7fffffff), math_floor(now_ms()) % 0x7fffffff)
  S = st
  local ok, err = dict:safe_add(K_SEQ, 0)
  if not ok and err ~= "exists" then
    S = nil
    error("genesys.notify.resty: the shared dict " .. cfg.dict .. " has no room for the ring " ..
      "counter: " .. tostring(err), 2)
  end
  S.cursor = dict:get(K_SEQ) or 0
  S.wseq = S.cursor
  for _, t in ipairs { { 0, reader }, { 0, lock_loop }, { 3600, on_exit } } do
    local tok, terr = ngx.timer.at(t[1], t[2])
    if not tok then error("genesys.notify.resty: ngx.timer.at: " .. tostring(terr), 2) end
  end
  return true
end

--- handler(ev) for every event, in every worker, in a light thread (it may yield): ev.topic,
-- ev.body (the decoded eventBody), ev.raw, ev.channel_id, ev.received_ms, ev.correlation_id,
-- ev.seq (ring sequence number), ev.worker (this worker's pid).
function _M.subscribe(handler)
  if type(handler) ~= "function" then fail("subscribe", "a function", describe(handler)) end
  handlers[#handlers + 1] = handler
end

--- handler(h) for every health item (the library's, plus "missed" of this worker's reader).
function _M.on_health(handler)
  if type(handler) ~= "function" then fail("on_health", "a function", describe(handler)) end
  health_handlers[#health_handlers + 1] = handler
end

local Follower = {}
Follower.__index = Follower

--- For one request (e.g. /events): f:next(timeout_s) -> record, json (events and health items
-- in ring order; json is the record's text with "worker") or nil, "timeout" / "exiting" /
-- "closed". At most `limit` (cfg.follower_limit) wait; beyond it items are dropped, counted,
-- and the next call returns a health item of kind "overflow" with the count.
function _M.follow(limit)
  if not S then error("genesys.notify.resty: follow() before start()", 2) end
  local f = setmetatable({ q = {}, head = 1, tail = 0, dropped = 0,
    limit = limit or S.follower_limit, sema = semaphore.new(0) }, Follower)
  followers[f] = true
  return f
end

function Follower:next(timeout)
  while true do
    if self.closed then return nil, "closed" end
    if self.dropped > 0 then
      local n = self.dropped
      self.dropped = 0
      local h = { item = "health", kind = "overflow", reason = "follower", dropped = n,
        limit = self.limit, worker = S.pid, timestamp_ms = math_floor(now_ms()),
        state = S.last_state or "unknown" }
      return h, cjson.encode(h)
    end
    if self.head <= self.tail then
      local e = self.q[self.head]
      self.q[self.head] = nil
      self.head = self.head + 1
      return e[1], e[2]
    end
    if S.exiting or ngx.worker.exiting() then return nil, "exiting" end
    local ok, err = self.sema:wait(timeout or 30)
    if not ok and err == "timeout" then
      if self.head > self.tail and self.dropped == 0 then return nil, "timeout" end
    elseif not ok then
      return nil, err
    end
  end
end

function Follower:close()
  self.closed = true
  followers[self] = nil
  self.q = {}
end

local function lock_pid()
  local v = S.dict:get(K_LOCK)
  return v and tonumber(v:match("^(%d+):")) or nil
end

--- { holder_pid, state, metrics, channel_id, last_health, since_ms, updated_ms, takeovers,
--   ring = {head, size, writes, write_failures}, worker = {pid, id, cursor, missed}, workers }
function _M.status()
  if not S then error("genesys.notify.resty: status() before start()", 2) end
  local dict = S.dict
  local st = cjson.decode(dict:get(K_STATUS) or "") or {}
  if type(st) ~= "table" then st = {} end
  local holder = lock_pid()
  local alive = holder and io.open("/proc/" .. holder .. "/stat")
  if alive then alive:close() elseif holder then
    -- the lock outlives a holder killed with kill -9 until its TTL; say so
    st.last_holder_pid = holder
    st.holder_pid = nil
    st.state = "holder_gone"
    holder = nil
  end
  if not holder then
    st.last_holder_pid = st.last_holder_pid or st.holder_pid
    st.holder_pid = nil
    if st.state ~= "holder_gone" then st.state = "no_holder" end
  elseif holder ~= st.holder_pid then
    -- a new holder that has not written its status yet
    st = { holder_pid = holder, state = "starting" }
  end
  st.takeovers = counter("takeovers")
  st.heard_ms = dict:get(K_HEARD)
  st.ring = { head = dict:get(K_SEQ) or 0, size = S.ring_size, writes = counter("ring_writes"),
    write_failures = counter("ring_write_failures") }
  st.worker = { pid = S.pid, id = S.wid, cursor = S.cursor, missed = S.missed }
  local workers = {}
  for wid = 0, ngx.worker.count() - 1 do
    workers[#workers + 1] = { id = wid, missed = counter("missed:" .. wid),
      follower_dropped = counter("follower_dropped:" .. wid),
      handler_errors = counter("handler_errors:" .. wid) }
  end
  st.workers = workers
  return st
end

--- Prometheus text: the holder's client metrics (every metrics() field) and this layer's own
-- counters.
function _M.prometheus()
  if not S then error("genesys.notify.resty: prometheus() before start()", 2) end
  local dict = S.dict
  local out = { dict:get(K_PROM) or "" }
  local function metric(name, typ, help, lines)
    out[#out + 1] = "# HELP genesys_notify_resty_" .. name .. " " .. help .. "\n"
    out[#out + 1] = "# TYPE genesys_notify_resty_" .. name .. " " .. typ .. "\n"
    for _, l in ipairs(lines) do
      out[#out + 1] = "genesys_notify_resty_" .. name .. l[1] .. " " .. string_format("%d", l[2]) .. "\n"
    end
  end
  metric("ring_writes_total", "counter", "Items written into the shared ring by stream holders.",
    { { "", counter("ring_writes") } })
  metric("ring_write_failures_total", "counter",
    "Items that could not be written into the ring (readers report them as missed).",
    { { "", counter("ring_write_failures") } })
  metric("takeovers_total", "counter", "Times a worker took the stream over from another holder.",
    { { "", counter("takeovers") } })
  local missed, dropped, herr = {}, {}, {}
  for wid = 0, ngx.worker.count() - 1 do
    local lbl = '{worker="' .. wid .. '"}'
    missed[#missed + 1] = { lbl, counter("missed:" .. wid) }
    dropped[#dropped + 1] = { lbl, counter("follower_dropped:" .. wid) }
    herr[#herr + 1] = { lbl, counter("handler_errors:" .. wid) }
  end
  metric("missed_total", "counter",
    "Ring items a worker's reader missed (overwritten or not written).", missed)
  metric("follower_dropped_total", "counter", "Items dropped for slow followers (/events).", dropped)
  metric("handler_errors_total", "counter", "Errors raised by subscribe/on_health handlers.", herr)
  metric("ring_head", "gauge", "Sequence number of the last item written into the ring.",
    { { "", dict:get(K_SEQ) or 0 } })
  local holder = lock_pid()
  metric("holder_up", "gauge", "1 while a worker holds the stream.", { { "", holder and 1 or 0 } })
  metric("holder_pid", "gauge", "PID of the worker holding the stream (0: none).", { { "", holder or 0 } })
  return table_concat(out)
end

return _M
