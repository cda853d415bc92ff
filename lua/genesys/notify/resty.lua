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
-- Stream, and the same worker feeds this nginx's ring from that stream (a fanout consumer). A
-- reload hands both over make-before-break (handover_fleet, succeed_fleet).
local notify = require "genesys.notify"
local cjson = require "cjson.safe"
local semaphore = require "ngx.semaphore"

local ngx = ngx
local type, pairs, ipairs, tostring, tonumber, pcall, error, setmetatable =
  type, pairs, ipairs, tostring, tonumber, pcall, error, setmetatable
local string_format, math_floor, math_random, math_min, math_max =
  string.format, math.floor, math.random, math.min, math.max
local table_concat = table.concat
local str_find, str_sub, str_byte, str_char = string.find, string.sub, string.byte, string.char
local ngx_log, ERR, WARN, NOTICE, INFO = ngx.log, ngx.ERR, ngx.WARN, ngx.NOTICE, ngx.INFO

local _M = { _VERSION = notify._VERSION }

-- Readers decode each event's text once, with the C decoder, straight from the ring record.
local json_decode = require("genesys.notify.core").json_decode_text
local ring_decode_entry = require("genesys.notify.core").ring_decode_entry
local prometheus_family = require("genesys.notify.core").prometheus_family
-- ngx.now() as the C function itself: resty.core's Lua wrapper (tonumber of an FFI call) got
-- blacklisted by LuaJIT during a burst, and with it the reader's loop that called it, which
-- then ran in the interpreter.
local ngx_now = ngx.now
do
  local ok, f = pcall(function() return require("ffi").C.ngx_http_lua_ffi_now end)
  if ok and f then ngx_now = f end
end

local K_LOCK = "gn:lock"        -- "pid:nonce" of the holder, with a TTL
local K_SEQ = "gn:seq"          -- the last sequence number written into the ring
local K_RING = "gn:ring:"       -- .. (seq % ring_size): the record (decode_record)
local K_STATUS = "gn:status"    -- the holder's state, metrics and last health item (JSON)
local K_PROM = "gn:prom"        -- the holder's client:metrics("prometheus")
local K_HEARD = "gn:heard"      -- wall-clock ms a holder last read a message from Genesys
local K_CNT = "gn:cnt:"         -- counters of the resty layer
local K_RP = "gn:rp:"           -- .. slot: the pid of a worker whose reader the holder waits for
local K_RC = "gn:rc:"           -- .. slot: that reader's cursor (the last seq it read)
local K_EXIT = "gn:exit:"       -- .. pid: that worker is exiting (reload, quit)
local K_HEAL = "gn:heal"        -- a list of "FROM_MS TO_MS": readers' missed ranges to resync
local HEAL_MAX = 64             -- asks waiting at most (a resync widens over all of them)
local K_HO = "gn:ho"            -- an exiting holder's lock value: it offers the stream
local K_HOT = "gn:hot"          -- when that holder's worker was forked (seconds since boot)
local K_SUCC = "gn:succ"        -- the lock value of the worker taking the stream over
local K_READY = "gn:ready"      -- the successor's lock value once its own stream is open
local K_LVAL = "gn:lval"        -- fleet mode: the successor's lease value (its stream is open)
local K_HOF = "gn:hof"          -- fleet mode: "1" when the exiting holder holds the fleet lease
local K_XC = "gn:xc:"           -- .. slot: "CURSOR UPTIME": the cursor a worker left it with as
                                -- it exited (a reload), and when (seconds since boot)
local K_FPOS = "gn:fpos"        -- fleet mode: "<redis key> <stream id>" of the last entry in the ring
local K_BELL = "gn:bell"        -- the lock value of the holder whose bell listens (readers knock
                                -- only on a live one's: not on a file a killed holder left)

local RESTY_FIELDS = {
  dict = true, lock_ttl_ms = true, ring_size = true, bell_path = true, follower_limit = true,
  fallback_ms = true, stall_ms = true, handover_ms = true, handover_grace_ms = true,
}

local S -- this worker's state, set by start()
local handlers, health_handlers = {}, {}
local followers = setmetatable({}, { __mode = "k" })
local nfollowers = 0 -- open followers (next() is not compiled by LuaJIT)

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

local function handler_failed(what, err)
  count("handler_errors:" .. S.wid)
  ngx_log(ERR, "genesys.notify.resty: a ", what, " handler raised: ", tostring(err))
end

-- (One handler, the common case, without the loop: LuaJIT aborted the reader's traces on a loop
-- of one turn, "leaving loop in root trace".)
local function run_handlers(list, arg, what)
  local n = #list
  if n == 1 then
    local ok, err = pcall(list[1], arg)
    if not ok then handler_failed(what, err) end
    return
  end
  for i = 1, n do
    local ok, err = pcall(list[i], arg)
    if not ok then handler_failed(what, err) end
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

-- rec: a ring record as a table; json: a health record's text (events are encoded here, and
-- only when a follower listens). Events get body (the decoded eventBody) for the handlers:
-- decoded with their entry (pre: ring_decode_entry's table; body nil there: it has none, or none
-- that decodes) when handlers listened then, else here from rec.raw; followers get the record
-- (never its body) and its text with the serving worker's pid.
local function deliver(rec, json, pre)
  rec.worker = S.pid
  if nfollowers > 0 then
    if json then
      json = json:sub(1, -2) .. ',"worker":' .. S.pid .. "}"
    else
      local body = rec.body
      rec.body = nil
      rec.raw = rec.raw -- made when first read (ring_decode_entry): into the table for the text
      json = cjson.encode(rec)
      rec.body = body
    end
    follower_push(rec, json)
  end
  if rec.item == "event" then
    if #handlers > 0 then
      if not (pre and S.rent_body) then
        local ok, msg = pcall(json_decode, rec.raw)
        rec.body = ok and type(msg) == "table" and msg.eventBody or nil
      end
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
  -- resync = ...: the holder reads back the state of every topic over the range, from the last
  -- event this worker read to now, and the ring brings the items to every worker (this one too)
  if S.client_cfg.resync and not S.client_cfg.redis and S.dict:llen(K_HEAL) < HEAL_MAX then
    S.dict:lpush(K_HEAL, string_format("%.0f %.0f", S.last_rms or S.started_ms, now_ms()))
  end
end

-- The holder: a resync over each range readers asked for (report_missed).
local function heal_missed(client)
  for _ = 1, HEAL_MAX do
    local v = S.dict:rpop(K_HEAL)
    if not v then return end
    local sp = str_find(v, " ", 1, true)
    local from, to = tonumber(str_sub(v, 1, sp and sp - 1)), sp and tonumber(str_sub(v, sp + 1))
    if from and to and from <= to then client:resync_gap(from, to) end
  end
end

-- A record: "e\tRECEIVED_MS\tTOPIC\tCHANNEL_ID\tCORRELATION_ID\tBODY_AT\tBODY_LEN\nRAW" for an
-- event (the message text as received, never re-encoded, and where its eventBody is in it: the
-- holder takes it ready-made from drain(max, "record"); BODY_AT 0: not known), "h\nJSON" for a
-- health item, "j\nJSON" for an event whose fields could not go in the header (a tab or newline
-- in them; a fence). (Plain finds and subs only: LuaJIT compiles them, not string.match.)
-- A ring entry holds the items seq F..F+N-1 of one batch in the slot of F (F % ring_size), with
-- the low 31 bits of F as the entry's flags: one record as it is, or several as
-- "b" .. N (8 hex digits) and each record after its length (4 bytes, big-endian), up to
-- ENTRY_BYTES:
-- one safe_set per batch for the holder and one get per batch for each reader. The slots of
-- F+1..F+N-1 hold nothing (the holder deletes what an earlier lap left there), so a reader that
-- is not inside an entry finds the next one in the slot of the next seq: a slot without that
-- seq's entry is an item that could not be written, or one the ring has overwritten.
local SEQ_MOD = 2147483648
local ENTRY_BYTES = 32768
-- A yield between batches: ngx.sleep(0) logs a warning on each call in an nginx without
-- OpenResty's delayed-events patch (Debian's), so the shortest real sleep.
local YIELD_S = 0.001
-- The holder and its worker's reader hand each batch to each other with semaphores (a posted
-- event: the other light thread runs at once, no timer). Such hand-offs never pass through
-- nginx's event loop, so every SLICE_S of them a real sleep lets requests, timers and sockets in.
local SLICE_S = 0.02

-- A real sleep when this worker's light threads have run for SLICE_S without one (true then).
local function breathe()
  ngx.update_time()
  local t = ngx_now()
  if t - S.slice_s < SLICE_S then return false end
  ngx.sleep(YIELD_S)
  ngx.update_time()
  S.slice_s = ngx_now()
  return true
end

-- The dict key of seq s's slot, made once per slot (not a number formatted per event).
local ring_keys = {}
local function ring_key(s)
  local i = s % S.ring_size
  local k = ring_keys[i]
  if not k then
    k = K_RING .. i
    ring_keys[i] = k
  end
  return k
end

-- The header of an event record (starting at byte i of v, 1 when not given): where its tabs and
-- its newline are (nil: not one).
local function event_fields(v, i)
  local t2 = str_find(v, "\t", (i or 1) + 2, true)
  local t3 = t2 and str_find(v, "\t", t2 + 1, true)
  local t4 = t3 and str_find(v, "\t", t3 + 1, true)
  local t5 = t4 and str_find(v, "\t", t4 + 1, true)
  local t6 = t5 and str_find(v, "\t", t5 + 1, true)
  local nl = t6 and str_find(v, "\n", t6 + 1, true)
  return t2, t3, t4, t5, t6, nl
end

-- The record of seq s, bytes i..j of v, as a table (nil: undecodable); a health record's JSON
-- text; for an event, where its body is in v (bi..bj; bi nil: not known).
local function decode_record(v, s, i, j)
  local kind = str_byte(v, i)
  if kind == 101 then -- "e"
    local t2, t3, t4, t5, t6, nl = event_fields(v, i)
    if not nl or nl > j then return nil end
    local at = tonumber(str_sub(v, t5 + 1, t6 - 1)) or 0
    local bi, bj
    if at > 0 then
      bi = nl + at
      bj = bi + (tonumber(str_sub(v, t6 + 1, nl - 1)) or 0) - 1
      if bj > j then return nil end
    end
    return { item = "event", seq = s, topic = str_sub(v, t2 + 1, t3 - 1),
      channel_id = str_sub(v, t3 + 1, t4 - 1), received_ms = tonumber(str_sub(v, i + 2, t2 - 1)),
      correlation_id = t5 > t4 + 1 and str_sub(v, t4 + 1, t5 - 1) or nil,
      raw = str_sub(v, nl + 1, j) }, nil, bi, bj
  elseif kind == 104 or kind == 106 then -- "h", "j"
    local json = str_sub(v, i + 2, j)
    local rec = cjson.decode(json)
    if type(rec) ~= "table" then return nil end
    rec.seq = s
    return rec, kind == 104 and json or nil
  end
  return nil
end

-- Item s for this worker's reader: an event's table (body decoded when handlers listen), another
-- record's text, false (undecodable); or nil and why it is missed. S.rent is the entry being read
-- (ring_decode_entry's items of seqs first..last; next: the one to come): one get and one C call
-- per entry. S.seeking: the reader skipped into the ring (overwritten items) and looks for the
-- next entry's start, counting what lies before it as overwritten.
local rent = { items = {} }
-- The entries the holder of this worker wrote in its last batch (own_v[k], first seq own_s[k]):
-- its worker's reader, which reads the batch right after it (hand_over_batch), takes them from
-- here instead of getting a copy from the dict (a 32 KB string per entry, which the collector
-- then sweeps). Only the last batch's: no slot is written twice within one batch (ring_room).
local own_s, own_v, own_n = {}, {}, 0
local function own_clear()
  for k = 1, own_n do own_v[k] = nil end
  own_n = 0
end
local function own_entry(s)
  for k = 1, own_n do
    if own_s[k] == s then
      local v = own_v[k]
      own_v[k] = nil
      own_s[k] = nil
      return v, s % SEQ_MOD
    end
  end
  return nil
end
local function ring_item(s)
  local e = S.rent
  if e then
    if s == e.next then
      e.next = s + 1
      if s >= e.last then S.rent = nil end
      return e.items[s - e.first + 1]
    end
    S.rent = nil
  end
  local dict = S.dict
  local v, fl = own_entry(s)
  if not v then v, fl = dict:get(ring_key(s)) end
  if v and fl == s % SEQ_MOD then
    S.seeking = nil
    S.rent_body = #handlers > 0
    local n = ring_decode_entry(v, s, S.rent_body, rent.items)
    if n < 1 then return false end
    rent.first, rent.next, rent.last = s, s, s + n - 1
    S.rent = rent
    return ring_item(s)
  end
  -- not this seq's entry: an item the ring has overwritten (a later one's entry is there, or the
  -- ring has moved a whole length past it), or one that could not be written
  if S.seeking or (fl and (fl - s) % SEQ_MOD < SEQ_MOD / 2) or
      s <= (dict:get(K_SEQ) or 0) - S.ring_size then
    S.seeking = true
    return nil, "overwritten"
  end
  return nil, "write_failed"
end

-- Calls fn(v, i, j) for each record of the entries from seq `from` to `to` that are still in
-- the ring (outside any reader's cursor: the successor's look at what was written).
local function ring_scan(from, to, fn)
  local dict, q = S.dict, from
  while q <= to do
    local v, fl = dict:get(ring_key(q))
    if v and fl == q % SEQ_MOD then
      if str_byte(v, 1) == 98 then
        local n, p = tonumber(str_sub(v, 2, 9), 16) or 1, 10
        for _ = 1, n do
          local b1, b2, b3, b4 = str_byte(v, p, p + 3)
          if not b4 then break end
          local len = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
          fn(v, p + 4, p + 3 + len)
          p = p + 4 + len
        end
        q = q + n
      else
        fn(v, 1, #v)
        q = q + 1
      end
    else
      q = q + 1
    end
  end
end

-- This worker's reader slot: the holder never overwrites what a live reader has not read.
local function publish_cursor()
  if S.slot then S.dict:safe_set(K_RC .. S.slot, S.cursor) end
end

-- Reads the ring from this worker's cursor up to the sequence counter. The cursor goes into the
-- dict every 64 items and whenever the handlers let time pass (the holder waits on it), and the
-- reader yields every 256 items (the holder may share this worker).
local function read_ring()
  local dict, size = S.dict, S.ring_size
  local head = dict:get(K_SEQ) or 0
  if head < S.cursor then
    -- the dict was emptied (an nginx restart keeps no shm): start again from its head
    S.cursor, S.rent, S.seeking = head, nil, nil
  end
  if head - S.cursor > size then
    local skip_to = head - size
    report_missed("overwritten", skip_to - S.cursor, S.cursor + 1, skip_to)
    S.cursor, S.rent, S.seeking = skip_to, nil, true
  end
  local miss_reason, miss_from, miss_n = nil, nil, 0
  local since, t_pub = 0, ngx_now()
  while S.cursor < head do
    local s = S.cursor + 1
    local r, why = ring_item(s)
    local rec, json, reason, pre
    if r == nil then
      reason = why
    elseif r == false then
      reason = "undecodable"
    elseif type(r) == "string" then
      rec, json = decode_record(r, s, 1, #r)
      if not rec then reason = "undecodable" end
    else
      rec, pre = r, true
    end
    if miss_reason and reason ~= miss_reason then
      report_missed(miss_reason, miss_n, miss_from, miss_from + miss_n - 1)
      miss_reason, miss_n = nil, 0
    end
    S.cursor = s
    if reason then
      if not miss_reason then miss_reason, miss_from = reason, s end
      miss_n = miss_n + 1
    else
      if rec.received_ms then S.last_rms = rec.received_ms end
      if rec.item == "health" then
        S.last_state = rec.state or S.last_state
      elseif S.succ then
        -- a successor's worker: what the previous holder wrote, for the switch's de-duplication
        S.succ.seen[rec.correlation_id or rec.raw] = true
      end
      deliver(rec, json, pre)
    end
    since = since + 1
    if since % 64 == 0 or ngx_now() ~= t_pub then
      publish_cursor()
      t_pub = ngx_now()
      if since >= 256 then
        -- requests wait meanwhile, and a reader that yields too often reads slower: a 1 ms
        -- sleep per SLICE_S (in the holder's worker the holder waits for this reader to
        -- catch up: hand_over_batch)
        since = 0
        breathe()
      end
    end
    if S.exiting then break end
    if S.cursor >= head then head = dict:get(K_SEQ) or head end
  end
  if miss_reason then report_missed(miss_reason, miss_n, miss_from, miss_from + miss_n - 1) end
  publish_cursor()
end

-- Whether the bell's socket file is there (nginx logs a failed connect at level crit, so the
-- reader does not try while there is none): opening a socket fails with ENXIO, a missing file
-- with ENOENT.
local function bell_exists()
  local f, err = io.open(S.bell_path, "rb")
  if f then f:close() return true end
  return not (err or ""):find("No such file", 1, true)
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

-- Takes the lock when nobody holds it. A killed holder's bell file may still be there: readers
-- do not knock on it (K_BELL names a dead worker) and the new bell replaces it. Returns whether
-- the lock is this worker's.
local function take_lock(value)
  return S.dict:safe_add(K_LOCK, value, S.ttl_ms / 1000) and true or false
end

-- Whether pid is a live process: not gone, not a zombie, and not exiting. A process killed
-- outright (kill -9) closes its sockets while it exits, before it is a zombie: a reader whose
-- connection to that holder's bell just ended would otherwise reconnect at once, see it alive,
-- and be refused (a line at level error in nginx's log). The kernel sets PF_EXITING (0x4 in
-- /proc/PID/stat's flags, its 9th field) as the exit starts, before the files close.
local function pid_alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "rb")
  if not f then return false end
  local st = f:read("*a") or ""
  f:close()
  local state, flags = st:match("^%d+ %b() (%a) %S+ %S+ %S+ %S+ %S+ (%d+)")
  if not state then return not st:match("^%d+ %b() [ZX]") end
  if state == "Z" or state == "X" then return false end
  return math_floor(tonumber(flags) / 4) % 2 == 0
end

-- Seconds since boot (/proc/uptime: 10 ms ticks), or nil.
local function boot_seconds()
  local f = io.open("/proc/uptime", "rb")
  if not f then return nil end
  local up = tonumber((f:read("*l") or ""):match("^([%d.]+)"))
  f:close()
  return up
end

-- When process pid (this one when nil) was forked, in seconds since boot (/proc/PID/stat's 22nd
-- field, in ticks of USER_HZ, which Linux fixes at 100 for /proc), or nil.
local function fork_seconds(pid)
  local f = io.open("/proc/" .. (pid or "self") .. "/stat", "rb")
  if not f then return nil end
  local st = f:read("*a") or ""
  f:close()
  -- the fields after the command's closing parenthesis: state is the 3rd, starttime the 22nd
  local rest = st:match("^.*%) (.*)$")
  local n, start = 2, nil
  for field in (rest or ""):gmatch("%S+") do
    n = n + 1
    if n == 22 then
      start = tonumber(field)
      break
    end
  end
  return start and start / 100
end

local function unregister_reader()
  local slot = S.slot
  if not slot then return end
  S.slot = nil
  if S.dict:get(K_RP .. slot) == S.pid then
    S.dict:delete(K_RP .. slot)
    S.dict:delete(K_RC .. slot)
  end
end

-- Takes a reader slot (a dead worker's is taken back): the pid first (safe_add decides between
-- two workers), then the cursor.
local function register_reader()
  local dict = S.dict
  for i = 0, S.nslots - 1 do
    local ok = dict:safe_add(K_RP .. i, S.pid)
    if not ok then
      local pid = dict:get(K_RP .. i)
      if pid and pid ~= S.pid and not pid_alive(pid) then
        dict:delete(K_RP .. i)
        ok = dict:safe_add(K_RP .. i, S.pid)
      end
    end
    if ok then
      S.slot = i
      local sok, err = dict:safe_set(K_RC .. i, S.cursor)
      if not sok then
        unregister_reader()
        ngx_log(ERR, "genesys.notify.resty: no room for this worker's reader cursor: ", err)
      end
      return
    end
  end
  ngx_log(ERR, "genesys.notify.resty: every reader slot (", S.nslots, ") is taken: the holder ",
    "does not wait for worker ", S.wid, " (pid ", S.pid, "), which may miss items")
end

-- The reader: one per worker (an ngx.timer). Its watcher is connected to the bell; it reads the
-- ring on every byte, and at least every fallback_ms (also while the bell is gone).
local function reader(premature)
  if premature then return end
  local fallback = S.fallback_ms / 1000
  local child = ngx.thread.spawn(watch, function()
    if not bell_exists() then return nil end
    -- A holder killed (kill -9, a crash) leaves its socket file behind, and nginx logs each
    -- refused connect to it at level error: no knock unless K_BELL names a live holder, which
    -- sets it once its bell listens. Not the lock: the next holder takes the lock before it
    -- removes the dead one's file and makes its own bell, and a knock in between was refused.
    local owner = S.dict:get(K_BELL)
    local pid = owner and tonumber(tostring(owner):match("^(%d+):"))
    if not pid or (pid ~= S.pid and not pid_alive(pid)) then return nil end
    return S.bell_path
  end, S.reader_sema, fallback)
  while not (S.exiting or ngx.worker.exiting()) do
    S.reader_sema:wait(fallback)
    local ok, err = pcall(read_ring)
    if not ok then ngx_log(ERR, "genesys.notify.resty: reading the ring: ", tostring(err)) end
    -- the holder of this worker waits for it to have read its batch (hand_over_batch)
    if S.pass_sema:count() < 0 then S.pass_sema:post(1) end
    -- an exiting holder offers the stream: this worker's lock loop looks now, not at its tick
    if not (S.holder or S.succ) and S.dict:get(K_HO) then S.lock_sema:post(1) end
  end
  unregister_reader()
  ngx.thread.kill(child)
end

-- ---- the holder --------------------------------------------------------------------------

local function lock_value() return S.pid .. ":" .. S.nonce end

-- The holder writes in batches: ring_open() reads the head, ring_put() adds an item to the
-- entry being built (entry_flush writes it when it is full), ring_commit() writes the last entry
-- and advances the counter once for the batch. An item that could not be written (its slot left
-- without its entry: the readers report it as write_failed) is counted here.
local function ring_open()
  local dict = S.dict
  local head = dict:get(K_SEQ)
  if not head then
    -- the counter is gone (it is never evicted: every write here is safe_*); start it again
    dict:safe_add(K_SEQ, 0)
    head = dict:get(K_SEQ) or 0
    ngx_log(ERR, "genesys.notify.resty: the ring counter was missing")
  end
  S.wbase, S.wn, S.wfail = head, 0, 0
  -- the entry being built: its first seq, its records (wrecs[2k]: the k-th record's length in 4
  -- bytes, wrecs[2k+1]: the record; wrecs[1]: the header), its count and bytes
  S.wstart, S.wcnt, S.wbytes = head + 1, 0, 0
  S.wrecs = S.wrecs or {}
  own_clear()
  S.occ = S.occ or {} -- per slot: true (an entry of this holder), false (none), nil (not known)
end

local function ring_next() return S.wbase + S.wn + 1 end

local function write_failed(s, err)
  S.wfail = S.wfail + 1
  local t = now_ms()
  if t - (S.fail_logged or 0) > 1000 then
    S.fail_logged = t
    ngx_log(ERR, "genesys.notify.resty: an item could not be written into the ring (seq ", s,
      "): ", tostring(err), "; readers report it as missed (write_failed): enlarge the ",
      "lua_shared_dict or lower ring_size")
  end
end

-- Writes the entry being built (seq wstart .. wstart+wcnt-1) into the slot of its first seq,
-- and empties the slots of the others (what an earlier lap left there: every reader has read
-- it, the room check saw to that). An entry of several that cannot be written is tried again
-- one record per slot, so only what does not fit is lost.
local function entry_flush()
  local n = S.wcnt
  if n == 0 then return end
  local dict, size, occ, recs, first = S.dict, S.ring_size, S.occ, S.wrecs, S.wstart
  local ok, err
  if n == 1 then
    ok, err = dict:safe_set(ring_key(first), recs[3], 0, first % SEQ_MOD)
  else
    recs[1] = "b" .. string_format("%08x", n)
    ok, err = dict:safe_set(ring_key(first), table_concat(recs, "", 1, 2 * n + 1), 0,
      first % SEQ_MOD)
  end
  if ok then
    occ[first % size] = true
    for q = first + 1, first + n - 1 do
      local k = q % size
      if occ[k] ~= false then
        dict:delete(ring_key(q))
        occ[k] = false
      end
    end
  else
    for m = 1, n do
      local q = first + m - 1
      local qok, qerr = true, err
      if n > 1 then qok, qerr = dict:safe_set(ring_key(q), recs[2 * m + 1], 0, q % SEQ_MOD) end
      if n > 1 and qok then
        occ[q % size] = true
      else
        write_failed(q, qerr)
        occ[q % size] = nil -- an earlier lap's entry may still be there
      end
    end
  end
  for m = 1, 2 * n + 1 do recs[m] = nil end
  S.wstart, S.wcnt, S.wbytes = first + n, 0, 0
end

local function ring_put(payload, err)
  local s = S.wbase + S.wn + 1
  S.wn = S.wn + 1
  if not payload then
    entry_flush()
    write_failed(s, err)
    S.wstart = s + 1
    return
  end
  local len = #payload
  if S.wcnt > 0 and S.wbytes + len > ENTRY_BYTES then entry_flush() end
  local n = S.wcnt + 1
  S.wrecs[2 * n] = str_char(math_floor(len / 16777216) % 256, math_floor(len / 65536) % 256,
    math_floor(len / 256) % 256, len % 256)
  S.wrecs[2 * n + 1] = payload
  S.wcnt, S.wbytes = n, S.wbytes + len + 4
end

-- An entry the client built (drain_entries: "b" .. N and N event records), written as it is
-- into the slot of the next seq; the entry being built before it is written first. When it
-- cannot be written, its records are tried one per slot, as entry_flush does.
local function ring_put_entry(v)
  entry_flush()
  local n = tonumber(str_sub(v, 2, 9), 16) or 0
  local dict, size, occ, first = S.dict, S.ring_size, S.occ, S.wbase + S.wn + 1
  S.wn = S.wn + n
  local ok, err = dict:safe_set(ring_key(first), v, 0, first % SEQ_MOD)
  if ok then
    own_n = own_n + 1
    own_s[own_n], own_v[own_n] = first, v
    occ[first % size] = true
    for q = first + 1, first + n - 1 do
      local k = q % size
      if occ[k] ~= false then
        dict:delete(ring_key(q))
        occ[k] = false
      end
    end
  else
    local p = 10
    for m = 1, n do
      local q = first + m - 1
      local b1, b2, b3, b4 = str_byte(v, p, p + 3)
      local len = b4 and ((b1 * 256 + b2) * 256 + b3) * 256 + b4 or 0
      local qok, qerr = false, err
      if n > 1 and b4 then
        qok, qerr = dict:safe_set(ring_key(q), str_sub(v, p + 4, p + 3 + len), 0, q % SEQ_MOD)
      end
      p = p + 4 + len
      if qok then
        occ[q % size] = true
      else
        write_failed(q, qerr)
        occ[q % size] = nil -- an earlier lap's entry may still be there
      end
    end
  end
  S.wstart = first + n
end

local function ring_commit()
  local n = S.wn
  if n == 0 then return 0 end
  entry_flush()
  local newv, err = S.dict:incr(K_SEQ, n)
  if newv ~= S.wbase + n then
    ngx_log(ERR, "genesys.notify.resty: the ring counter moved under this holder (",
      tostring(newv or err), ", expected ", S.wbase + n, ")")
  end
  S.wbase, S.wn = newv or (S.wbase + n), 0
  if n > S.wfail then count("ring_writes", n - S.wfail) end
  if S.wfail > 0 then count("ring_write_failures", S.wfail) end
  S.wfail = 0
  return n
end

local function ring_put_json(kind, rec)
  rec.seq = ring_next()
  local json, err = cjson.encode(rec)
  ring_put(json and (kind .. "\n" .. json), err and ("cannot encode: " .. tostring(err)))
end

local function unsafe(x)
  return x and (str_find(x, "\t", 1, true) or str_find(x, "\n", 1, true))
end

local function ring_put_event(topic, ch, rms, cid, raw, fence)
  if fence or unsafe(topic) or unsafe(ch) or unsafe(cid) then
    ring_put_json("j", { item = "event", topic = topic, channel_id = ch, received_ms = rms,
      correlation_id = cid, raw = raw, fence = fence })
  else
    ring_put("e\t" .. string_format("%.17g", rms or 0) .. "\t" .. topic .. "\t" .. (ch or "") ..
      "\t" .. (cid or "") .. "\t0\t0\n" .. raw)
  end
end

-- Between two batches the holder lets its own worker's reader read what it wrote: it waits
-- until the reader has caught up (the reader posts pass_sema), at most YIELD_S; every SLICE_S a
-- real sleep instead.
local function hand_over_batch()
  if breathe() then return end
  if S.reader_sema:count() <= 0 then S.reader_sema:post(1) end
  S.pass_sema:wait(YIELD_S)
end

local function wake_readers(h)
  if h.bell then pcall(h.bell.ring, h.bell) end
  if S.reader_sema:count() <= 0 then S.reader_sema:post(1) end
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

-- Between two batches of the holder (the plain and the fleet pump): this worker's reader (and,
-- every SLICE_S, requests) run; the lock is renewed when a quarter of its ttl has passed.
-- Returns false when the pump must stop (the holder is going down, or the lock was lost: h.lost).
local function between_batches(h)
  hand_over_batch()
  if h.down then return false end
  if now_ms() - h.renewed_ms >= S.ttl_ms / 4 then
    local ok, why = renew(h)
    if not ok then
      h.lost = why
      return false
    end
  end
  return true
end

local gone -- (h, r, head, t): a reader whose worker died, reported (below)
local overlap -- (h): a successor's de-duplication of the handover's overlap (below)
local start_cursor -- (dict): where a new worker's reader starts (below)

-- How many items may be written now without overwriting one a reader the holder waits for has
-- not read. Every registered reader is waited for while its cursor moves; h.readers keeps, per
-- slot, the cursor seen last and when it last moved.
local rp_keys, rc_keys = {}, {} -- the reader slots' keys, made once (ring_room runs per batch)
local function ring_room(h)
  local dict, t = S.dict, now_ms()
  local head = S.wbase + S.wn
  local min
  local readers = h.readers
  for i = 0, S.nslots - 1 do
    local kp = rp_keys[i]
    if not kp then
      kp = K_RP .. i
      rp_keys[i], rc_keys[i] = kp, K_RC .. i
    end
    local pid = dict:get(kp)
    if not pid then
      readers[i] = nil
    else
      local cur = dict:get(rc_keys[i]) or head
      local r = readers[i]
      if not r or r.pid ~= pid then
        if r and r.cur < head and not pid_alive(r.pid) then
          -- its slot went to a new worker (nginx started one in place of the dead one)
          gone(h, r, head, t)
        end
        r = { pid = pid, cur = cur, moved = t }
        readers[i] = r
      elseif cur ~= r.cur then
        r.cur, r.moved = cur, t
        if r.skipped then
          r.skipped = nil
          ngx_log(NOTICE, "genesys.notify.resty: the reader of pid ", pid, " moves again (seq ",
            cur, "): waited for again")
        end
      elseif cur >= r.head then
        r.moved = t -- it had read everything when last looked at: idle, not stuck
      end
      r.head = head
      if not r.skipped and (not min or cur < min) then min = cur end
    end
  end
  if not min then return S.ring_size end
  return math_max(0, min + S.ring_size - head)
end

local function reader_note(h, kind, r, head, t)
  ngx_log(WARN, "genesys.notify.resty: the reader of pid ", r.pid, " ",
    kind == "reader_gone" and "is gone" or ("has not moved for " .. (t - r.moved) .. " ms"),
    " at seq ", r.cur, " (ring head ", head, "): no longer waited for")
  h.notes[#h.notes + 1] = { item = "health", kind = kind, pid = r.pid, cursor = r.cur,
    head = head, stalled_ms = math_floor(t - r.moved), stall_ms = S.stall_ms,
    timestamp_ms = math_floor(t), state = h.client and h.client:state() or "unknown" }
end

function gone(h, r, head, t)
  count("readers_gone")
  reader_note(h, "reader_gone", r, head, t)
end

-- The ring is full for the slowest reader: a reader whose worker is gone is dropped, one whose
-- cursor has not moved for stall_ms is skipped (it reports what it loses as missed when it
-- moves again); each is counted, logged and reported to every worker (a health item).
local function unblock(h)
  local t, head = now_ms(), S.wbase + S.wn
  for i, r in pairs(h.readers) do
    if not r.skipped and r.cur + S.ring_size - head < 3 then
      if not pid_alive(r.pid) then
        if S.dict:get(K_RP .. i) == r.pid then
          S.dict:delete(K_RP .. i)
          S.dict:delete(K_RC .. i)
        end
        h.readers[i] = nil
        gone(h, r, head, t)
      elseif t - r.moved >= S.stall_ms then
        r.skipped = true
        count("reader_stalls")
        reader_note(h, "reader_stalled", r, head, t)
      end
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
-- It starts after the last entry an earlier holder of the dict lock wrote into the ring
-- (K_FPOS, written per batch: pump_fleet), so a change of holder (a reload, a kill -9, a stolen
-- lock) neither skips nor repeats an entry: the stream held them meanwhile.
local function fleet_consumer(h)
  local r = S.client_cfg.redis
  local pos = S.dict:get(K_FPOS)
  local key, after = (pos or ""):match("^(.*) (%d+%-%d+)$")
  if key ~= r.key then after = nil end
  h.fkey = r.key
  return notify.consumer { redis = { url = r.url, key = r.key, password_file = r.password_file,
      tls = r.tls, sentinel = r.sentinel }, mode = "fanout", block_ms = 200, after_id = after,
    on_event = function(ev)
      ring_put_event(ev.topic, ev.channel_id, ev.received_ms, ev.correlation_id, ev.raw, ev.fence)
      h.fpos = ev.id
    end,
    on_health = function(it)
      local rec = {}
      for k, v in pairs(it) do rec[k] = v end
      rec.item = "health"
      ngx_log(INFO, "genesys.notify.resty: fleet stream: ", notify.format(it))
      ring_put_json("h", rec)
      if it.id then h.fpos = it.id end
    end }
end

-- The handover's de-duplication is over (the overlap's time has passed): what it skipped is
-- counted and logged.
local function dedup_done(h)
  if h.dups > 0 then
    ngx_log(NOTICE, "genesys.notify.resty: the handover's overlap: ", h.dups,
      " event(s) both streams delivered, written once")
  end
  count("handover_duplicates", h.dups)
  h.dups = 0
  h.dedup = nil
end

-- One item the client gave, into the current batch.
local function put_item(h, it)
  if type(it) == "string" and str_byte(it, 1) == 98 then
    -- a run of events as a ring entry, ready-made by drain_entries
    ring_put_entry(it)
    return
  end
  if type(it) == "string" then
    -- an event as its ring record, ready-made by drain(max, "record")
    h.last_rec = it
    if h.consumer then return end -- fleet mode: it reaches the ring through the Redis Stream
    local dedup = h.dedup
    if dedup then
      -- just after a handover: what the previous holder already wrote is skipped, once
      local t2, _, t4, t5, _, nl = event_fields(it)
      local key = t5 > t4 + 1 and str_sub(it, t4 + 1, t5 - 1) or str_sub(it, nl + 1)
      if dedup[key] then
        dedup[key] = nil
        h.dups = h.dups + 1
        return
      end
      local rms = tonumber(str_sub(it, 3, t2 - 1))
      if rms and rms > h.dedup_until then dedup_done(h) end
    end
    ring_put(it)
    return
  end
  if it.item == "resync" then
    -- the state read back after a gap (resync = ...): every worker gets it as an event marked
    -- resync; rare, so as a "j" record; in fleet mode it comes through the Redis Stream
    if h.consumer then return end
    ring_put_json("j", { item = "event", topic = it.topic, channel_id = it.channel_id,
      received_ms = it.received_ms, raw = it.raw, resync = true })
    return
  end
  if it.item == "event" then
    local rms = it.received_ms
    if rms and rms > (h.last_ms or 0) then h.last_ms = rms end
    if h.consumer then return end -- fleet mode: it reaches the ring through the Redis Stream
    local dedup = h.dedup
    if dedup then
      -- just after a handover: what the previous holder already wrote is skipped, once
      local key = it.correlation_id or it.raw
      if dedup[key] then
        dedup[key] = nil
        h.dups = h.dups + 1
        return
      end
      if rms and rms > h.dedup_until then dedup_done(h) end
    end
    ring_put_event(it.topic, it.channel_id, rms, it.correlation_id, it.raw)
    return
  end
  local rec = {}
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
      ring_put_json("h", rec)
      rec = { item = "health", kind = "restored", reason = "takeover", state = "open",
        deaf_from_ms = from, deaf_to_ms = to, gap_ms = to - from, new_channel = true,
        channel_id = it.channel_id, holder_pid = S.pid, previous_holder = h.previous,
        timestamp_ms = to }
    end
  end
  if h.consumer then
    -- fleet mode: the ring's room is pump_fleet's to share out
    h.notes[#h.notes + 1] = rec
    return
  end
  ring_put_json("h", rec)
end

-- The holder waits while the slowest reader it waits for is a ring behind (h.blocked): the
-- client's queue fills meanwhile, and with overflow = "pause" the server holds the rest. Each
-- wait is counted when it ends (ring_full_waits) with its time (ring_full_ms): readers too slow
-- for the bursts, or a ring too small for them, seen before a reader is a stall_ms behind.
local function set_blocked(h, blocked)
  if blocked then
    h.blocked_since = h.blocked_since or now_ms()
  elseif h.blocked_since then
    count("ring_full_waits")
    count("ring_full_ms", math_floor(now_ms() - h.blocked_since + 0.5))
    h.blocked_since = nil
  end
  h.blocked = blocked
end

local BATCH = 256       -- items per batch: the holder yields and rings the bell after each
local PENDING_MAX = 4096 -- items a successor takes from its client before the switch

-- Moves what the client holds into the ring, a batch at a time (the bell rung and the light
-- thread yielding after each). Stops when the slowest reader it waits for is a ring behind
-- (h.blocked): the client's queue then fills and overflow = "pause" stops reading the socket,
-- so the server holds the rest. Returns the number of items written.
local pump_fleet -- (h, client): the same in fleet mode (below)
local function pump(h, client)
  if h.consumer then return pump_fleet(h, client) end
  local total = 0
  while true do
    ring_open()
    local room = ring_room(h)
    if room < 3 then
      unblock(h)
      room = ring_room(h)
    end
    set_blocked(h, room < 3)
    if h.blocked then break end
    local budget = room - 2 -- a health item may take two slots (connected + restored)
    local notes = h.notes
    while #notes > 0 and budget > 0 do
      ring_put_json("h", table.remove(notes, 1))
      budget = budget - 1
    end
    local want = math_min(budget, BATCH)
    local items, first, last, got
    if h.pending then
      items, first = h.pending, h.pi
      last = math_min(#items, first + want - 1)
      h.pi = last + 1
      if h.pi > #items then h.pending = nil end
      got = last - first + 1
    elseif h.dedup or h.consumer then
      items = client:drain(want, "record")
      first, last = 1, #items
      got = last
    else
      items, got = client:drain_entries(want, ENTRY_BYTES + 9)
      first, last = 1, #items
      local rms = items.last_ms
      if rms and rms > (h.last_ms or 0) then h.last_ms = rms end
    end
    for i = first, last do put_item(h, items[i]) end
    local n = ring_commit()
    if n > 0 then
      wake_readers(h)
      total = total + n
    end
    h.empty = not h.pending and got < want
    if h.empty then break end
    if not between_batches(h) then break end
  end
  if h.dedup and h.empty and now_ms() > h.dedup_until then dedup_done(h) end
  if h.last_rec then
    local t2 = str_find(h.last_rec, "\t", 3, true)
    local rms = t2 and tonumber(str_sub(h.last_rec, 3, t2 - 1))
    if rms and rms > (h.last_ms or 0) then h.last_ms = rms end
    h.last_rec = nil
  end
  heard(h, h.last_ms)
  return total
end

-- Fleet mode: the ring is fed from the fleet's stream (the consumer), a batch at a time under
-- the same back-pressure as the holder's own items in the other mode: while the slowest reader
-- waited for is a ring behind, nothing more is taken from the consumer (its queue fills, and its
-- reads of the Redis Stream pause at half of queue_limit: the stream holds the events, nothing
-- is lost); stuck and dead readers are skipped and reported (unblock). The client's own events
-- are in the stream already (the consumer brings them back); its health items wait in h.notes
-- for room. Returns the number of items written.
function pump_fleet(h, client)
  local total = 0
  if h.pending then -- a successor's: what its client gave before it held the dict lock
    for i = h.pi or 1, #h.pending do put_item(h, h.pending[i]) end
    h.pending = nil
  end
  repeat
    local items = client:drain(BATCH, "record")
    for i = 1, #items do put_item(h, items[i]) end
  until #items < BATCH
  h.last_rec = nil
  local consumer, notes = h.consumer, h.notes
  while true do
    ring_open()
    local room = ring_room(h)
    if room < 3 then
      unblock(h)
      room = ring_room(h)
    end
    set_blocked(h, room < 3)
    if h.blocked then break end
    local budget = room - 2
    while #notes > 0 and budget > 0 do
      ring_put_json("h", table.remove(notes, 1))
      budget = budget - 1
    end
    local want = math_min(budget, BATCH)
    local n = want > 0 and consumer:poll(0, want) or 0
    local w = ring_commit()
    if h.fpos then
      -- where the next holder's consumer starts (the ring has everything up to here)
      S.dict:safe_set(K_FPOS, h.fkey .. " " .. h.fpos)
      h.fpos = nil
    end
    if w > 0 then
      wake_readers(h)
      total = total + w
    end
    h.empty = #notes == 0 and n < want
    if h.empty then break end
    if not between_batches(h) then break end
  end
  heard(h, h.last_ms)
  return total
end

local function step_down(h, why)
  if h.down then return end
  h.down = true
  own_clear()
  local client, bell = h.client, h.bell
  if h.consumer then h.consumer:close() end
  if h.successor and not h.was_holder then
    -- a successor that gives up withdraws first, so that the exiting holder does not pass the
    -- lock on to it from now on
    if S.dict:get(K_SUCC) == h.value then S.dict:delete(K_SUCC) end
  end
  if client and not h.closed then
    -- what the client still holds goes into the ring first (nothing dropped silently), unless
    -- the lock is another worker's already. A successor that had the lock passed on as it gave
    -- up skips what the old holder wrote; in fleet mode it writes no event (the fleet's stream
    -- feeds the ring, and the next holder's consumer starts where the old one's ended).
    if S.dict:get(K_LOCK) == h.value then
      local unfinished = h.successor and not h.was_holder
      if not (unfinished and S.client_cfg.redis) then
        if unfinished and not h.dedup then overlap(h) end
        pcall(pump, h, client)
      end
    end
    pcall(write_status, h, client)
    client:close()
  end
  local dict = S.dict
  if bell then
    -- readers stop knocking before the bell goes (unless a successor's bell is the one now)
    if dict:get(K_BELL) == h.value then dict:delete(K_BELL) end
    pcall(bell.ring, bell)
    bell:close()
  end
  if dict:get(K_LOCK) == h.value then dict:delete(K_LOCK) end
  if dict:get(K_SUCC) == h.value then dict:delete(K_SUCC) end
  if S.holder == h then S.holder = nil end
  if h.successor then S.succ = nil end
  ngx_log(NOTICE, "genesys.notify.resty: worker ", S.wid, " (pid ", S.pid, ") ",
    h.was_holder and "stepped down as the stream holder: " or "stopped taking the stream over: ",
    why)
end

local function new_bell(h)
  -- Without a bell the readers still read the ring every fallback_ms (logged here).
  local bok, bell = pcall(notify.bell, S.bell_path)
  if not bok then
    ngx_log(ERR, "genesys.notify.resty: no bell at ", S.bell_path, " (", tostring(bell),
      "): workers read the ring every ", S.fallback_ms, " ms instead")
    bell = nil
  end
  h.bell = bell
  -- the readers knock once it listens (K_BELL names this holder), never on a file left by a
  -- holder killed before: the lock alone names the next holder before its bell is made
  if bell then
    local ok, err = S.dict:safe_set(K_BELL, h.value)
    if not ok then
      ngx_log(ERR, "genesys.notify.resty: no room to name the bell (", tostring(err),
        "): workers read the ring every ", S.fallback_ms, " ms instead")
    end
  end
end

-- Creates and starts the client (and, for a holder, the bell). Returns nil, or why not.
local function open_consumer(h)
  local cok, consumer = pcall(fleet_consumer, h)
  if not cok then
    ngx_log(ERR, "genesys.notify.resty: the fleet stream consumer: ", tostring(consumer))
    return "the fleet stream consumer could not be created"
  end
  h.consumer = consumer
  consumer:start()
end

local function open_client(h, with_bell)
  local cfg = {}
  for k, v in pairs(S.client_cfg) do cfg[k] = v end
  if cfg.redis and h.lease_successor then
    -- its stream runs before it holds the fleet lease, which the exiting holder hands over
    local r = {}
    for k, v in pairs(cfg.redis) do r[k] = v end
    r.successor = true
    cfg.redis = r
  end
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
    -- (a successor opens its consumer once it holds the dict lock: the ring has one feed)
    h.takeover_from = nil
    if not h.successor then
      local why = open_consumer(h)
      if why then return why end
    end
  end
  if with_bell then new_bell(h) end
  client:start()
  -- Without the wake socket the holder drains every 50 ms: slower, never silent (logged here).
  local wok, wpath = pcall(client.wake_socket, client)
  if not wok then
    ngx_log(ERR, "genesys.notify.resty: no wake socket (", tostring(wpath),
      "): the holder drains every 50 ms instead")
    wpath = nil
  end
  h.wake = semaphore.new(0)
  h.wpath = wpath
  if wpath then
    -- the wake socket goes only with the client: its watcher ends then
    h.watcher = ngx.thread.spawn(watch, function() return wpath end, h.wake, nil)
  end
end

-- Whether one of the master's children was forked after this worker's generation (a reload:
-- the new workers are forked 100 ms before the old ones are told to quit; a generation is
-- forked within a few ms). Not when this worker alone was told to quit: its siblings may then
-- take the stream over.
-- The pids of nginx's master's children (this worker's parent's), as text; nil when /proc does
-- not tell.
local function master_children()
  local stat = io.open("/proc/self/stat", "rb")
  local master = stat and tonumber((stat:read("*a") or ""):match("^%d+ %b() %S+ (%d+)"))
  if stat then stat:close() end
  local f = master and io.open("/proc/" .. master .. "/task/" .. master .. "/children", "rb")
  if not f then return nil end
  local kids = f:read("*a") or ""
  f:close()
  return kids
end

local function newer_generation()
  local kids = S.forked and master_children()
  if not kids then return false end
  for pid in kids:gmatch("%d+") do
    local t = tonumber(pid) ~= S.pid and fork_seconds(pid)
    if t and t > S.forked + 0.05 then return true end
  end
  return false
end

-- Whether a worker of a newer generation runs (a reload: nginx starts the new workers before it
-- tells the old ones to quit), from the master's children and the exiting marks in the dict.
local function newer_workers()
  local kids = master_children()
  if not kids then
    -- no children file: a reader slot of a worker that is not exiting
    for i = 0, S.nslots - 1 do
      local pid = S.dict:get(K_RP .. i)
      if pid and pid ~= S.pid and not S.dict:get(K_EXIT .. pid) and pid_alive(pid) then
        return true
      end
    end
    return false
  end
  local seen = {}
  for pid in kids:gmatch("%d+") do
    pid = tonumber(pid)
    if pid ~= S.pid and not S.dict:get(K_EXIT .. pid) then
      local c = io.open("/proc/" .. pid .. "/cmdline", "rb")
      local cmd = c and c:read("*a") or ""
      if c then c:close() end
      -- a new worker is titled "worker process" once its init_worker has run; before, it still
      -- has the master's title
      if (cmd:find("worker process", 1, true) and not cmd:find("shutting down", 1, true)) or
          cmd:find("master process", 1, true) then
        return true
      end
      seen[#seen + 1] = pid .. " (" .. cmd:gsub("%z", " "):gsub("%s+$", "") .. ")"
    else
      seen[#seen + 1] = pid .. (pid == S.pid and " (this one)" or " (exiting)")
    end
  end
  ngx_log(NOTICE, "genesys.notify.resty: no worker of a newer generation among the master's ",
    "children: ", table_concat(seen, ", "))
  return false
end

-- The exiting holder hands the stream over (make-before-break): it keeps its stream, and writes
-- into the ring, until a worker of the new generation has its own stream open (K_READY), then
-- handover_grace_ms longer (what only the old socket got arrives meanwhile); then it writes
-- what its client still holds, closes it and passes the lock on. The successor skips what both
-- streams delivered (by CorrelationId, from what its worker's reader read). Returns a reason to
-- stop, or nil to go on.
local handover_fleet -- (h, t): the same in fleet mode (below)

-- The exiting holder passes the lock on to the successor succ, then withdraws its offer (K_HO
-- and the keys named): in that order, so that a successor looking meanwhile sees either the
-- offer still standing or the lock its own, never the offer gone and the lock another's (it
-- would give up, and the stream would go to a takeover). Returns why the holder stops.
local function pass_lock(succ, ...)
  local dict = S.dict
  local ok, err = dict:safe_set(K_LOCK, succ, S.ttl_ms / 1000)
  if not ok then dict:delete(K_LOCK) end
  dict:delete(K_HO)
  for i = 1, select("#", ...) do dict:delete((select(i, ...))) end
  if not ok then
    return "the worker is exiting (the lock could not be passed on: " .. tostring(err) .. ")"
  end
  count("handovers")
  return "the worker is exiting: handed the stream over to " .. succ
end

local function handover_step(h, t)
  if h.consumer then return handover_fleet(h, t) end
  local dict, ho = S.dict, h.handover
  dict:safe_set(K_HO, h.value, (S.handover_ms + S.ttl_ms) / 1000)
  local succ = dict:get(K_SUCC)
  if succ and dict:get(K_READY) == succ then
    ho.ready_ms = ho.ready_ms or t
    if t - ho.ready_ms < S.grace_ms then return nil end
    -- everything the old stream got goes into the ring (the readers are waited for)
    local deadline = t + S.stall_ms
    repeat
      pump(h, h.client)
      if not h.empty then ngx.sleep(0.002) end
    until h.empty or now_ms() > deadline
    write_status(h, h.client)
    h.client:close()
    h.closed = true
    return pass_lock(succ, K_READY)
  end
  if not succ and t - (ho.checked or 0) >= 100 then
    ho.checked = t
    if not newer_workers() then
      dict:delete(K_HO)
      return "the worker is exiting"
    end
  end
  if t - ho.started > S.handover_ms then
    dict:delete(K_HO)
    return "the worker is exiting (no worker took the stream over within handover_ms)"
  end
  return nil
end

-- Fleet mode: the ring's feed goes over at the stream position (K_FPOS: nothing skipped,
-- nothing twice), so only the fleet lease needs make-before-break, when this worker's client
-- holds it: the successor's client is then a lease successor (redis.successor: its stream runs
-- and it keeps what it receives) and says when its stream is open (K_READY, its lease value in
-- K_LVAL); this client hands the lease over (client:lease_handover) and parks; the successor
-- takes the lease, appends what it kept that the fleet's stream does not have (lease.h), and
-- takes the dict lock. Returns a reason to stop, or nil to go on.
function handover_fleet(h, t)
  local dict, ho = S.dict, h.handover
  dict:safe_set(K_HO, h.value, (S.handover_ms + S.ttl_ms) / 1000)
  local lease = h.client:metrics().lease or {}
  local holding = lease.state == "holder"
  local succ = dict:get(K_SUCC)
  if not succ then
    if t - (ho.checked or 0) >= 100 then
      ho.checked = t
      if not newer_workers() then
        dict:delete(K_HO)
        return "the worker is exiting"
      end
    end
  elseif holding then
    if not ho.sent and dict:get(K_READY) == succ then
      local to = dict:get(K_LVAL)
      if to then
        ho.sent = t
        local ok, err = h.client:lease_handover(to)
        if not ok then ngx_log(ERR, "genesys.notify.resty: the lease handover: ", tostring(err)) end
      end
    end
    -- the lease moves in a round trip to redis; a handover that failed (reported by the client)
    -- ends as a release (the successor takes the lease over with a marker)
    if ho.sent and t - ho.sent >= 5000 then
      dict:delete(K_HO)
      return "the worker is exiting (the fleet lease did not move to the successor)"
    end
  end
  if succ and not holding then
    -- handed over (or never held here): the ring's feed goes to the successor
    pump(h, h.client)
    h.consumer:close()
    write_status(h, h.client)
    h.client:close()
    h.closed = true
    return pass_lock(succ, K_READY, K_LVAL)
  end
  if t - ho.started > S.handover_ms then
    dict:delete(K_HO)
    return "the worker is exiting (no worker took the stream over within handover_ms)"
  end
  return nil
end

local function hold(h)
  h.was_holder = true
  if not h.client then
    local why = open_client(h, true)
    if why then return why end
  end
  local client, wake = h.client, h.wake
  local tick = h.consumer and 50 or math_min(S.ttl_ms / 4, 500)
  local next_status = 0
  local last_heartbeats, last_tick = 0, now_ms()
  while not h.down do
    local t = now_ms()
    if t - h.renewed_ms >= S.ttl_ms / 4 then
      local rok, why = renew(h)
      if not rok then return why end
    end
    -- (a successor whose client is about to take the fleet lease over, handed to it just now,
    -- hands it on once it has it)
    local settling = h.lease_successor and h.consumer and t - (h.fed_since or 0) < 5000 and
      (client:metrics().lease or {}).state ~= "holder"
    if (S.exiting or ngx.worker.exiting()) and not h.handover and not settling then
      h.handover = { started = t }
      if h.consumer then -- fleet mode: whether the successor must be a lease successor, first
        local lease = client:metrics().lease or {}
        h.handover.holding = lease.state == "holder"
        S.dict:safe_set(K_HOF, h.handover.holding and "1" or "0", (S.handover_ms + S.ttl_ms) / 1000)
      end
      -- in a reload, only a worker of the new generation may take the stream over (try_succeed)
      if newer_generation() then
        S.dict:safe_set(K_HOT, S.forked, (S.handover_ms + S.ttl_ms) / 1000)
      else
        S.dict:delete(K_HOT)
      end
      S.dict:safe_set(K_HO, h.value, (S.handover_ms + S.ttl_ms) / 1000)
      if h.bell then pcall(h.bell.ring, h.bell) end -- the other workers' readers look at once
      ngx_log(NOTICE, "genesys.notify.resty: worker ", S.wid, " (pid ", S.pid, ") exits: it ",
        "keeps the stream until a worker of the new generation has its own open")
    end
    if h.handover then
      local why = handover_step(h, t)
      if why then return why end
    end
    pump(h, client)
    if h.lost then return h.lost end
    heal_missed(client)
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
    -- blocked: a reader that moves is seen within YIELD_S (nothing tells the holder; 2 ms here
    -- was a tenth of a 2-worker burst's time, the other worker's reader being descheduled)
    local wait = h.blocked and YIELD_S or (h.handover and 0.02) or
      (h.wpath and tick / 1000 or 0.05)
    wake:wait(wait)
  end
  return "stopped"
end

local function new_holder(value)
  S.occ = {} -- what another holder left in the ring is not known (entry_flush)
  return { value = value, renewed_ms = now_ms(), readers = {}, notes = {}, dups = 0,
    status = { holder_pid = S.pid, holder_worker_id = S.wid, since_ms = math_floor(now_ms()),
      state = "idle" } }
end

local function try_take()
  local dict = S.dict
  local value = lock_value()
  if not take_lock(value) then return nil end
  local h = new_holder(value)
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

-- A worker of the new generation offers to take the stream over from an exiting holder.
local function try_succeed()
  if S.exiting or ngx.worker.exiting() then return nil end
  local dict = S.dict
  local ho = dict:get(K_HO)
  if not ho or ho ~= dict:get(K_LOCK) then return nil end
  -- only a worker of a newer generation: nginx tells the old workers to quit one after the
  -- other, and a sibling of the exiting holder that has not been told yet would take the stream
  -- only to hand it on again (a channel more at Genesys). A generation is forked within a few
  -- ms, the next one a reload later.
  local hot = dict:get(K_HOT)
  if hot and S.forked and S.forked < hot + 0.05 then return nil end
  local value = lock_value()
  if not dict:safe_add(K_SUCC, value, S.ttl_ms / 1000) then return nil end
  dict:delete(K_READY)
  dict:delete(K_LVAL)
  local h = new_holder(value)
  h.successor = true
  -- fleet mode: a lease successor only when the exiting holder holds the fleet lease
  h.lease_successor = S.client_cfg.redis and dict:get(K_HOF) == "1" or nil
  h.previous = tonumber(ho:match("^(%d+):"))
  h.pending, h.pi = {}, 1
  S.succ = { seen = {} } -- this worker's reader collects what the old holder writes from now
  h.start_seq = dict:get(K_SEQ) or 0
  ngx_log(NOTICE, "genesys.notify.resty: worker ", S.wid, " (pid ", S.pid,
    ") opens a stream to take over from the exiting holder ", ho)
  return h
end

-- Fleet mode, the dict lock is ours: the ring's feed starts where the previous holder's ended
-- (K_FPOS); this worker's client took the fleet lease over (a lease successor appends what it
-- kept: lease.h), or competes for it as any candidate.
local function succeed_fleet(h)
  local dict = S.dict
  S.succ = nil
  h.renewed_ms = now_ms()
  h.fed_since = h.renewed_ms
  dict:delete(K_SUCC)
  dict:delete(K_HOF)
  local why = open_consumer(h)
  if why then return why end
  S.holder = h
  new_bell(h)
  if h.ready then
    count("handovers_taken")
    h.notes[#h.notes + 1] = { item = "health", kind = "handover", state = "open",
      holder_pid = S.pid, previous_holder = h.previous, gap_ms = 0,
      timestamp_ms = math_floor(now_ms()) }
  end
  ngx_log(NOTICE, "genesys.notify.resty: worker ", S.wid, " (pid ", S.pid,
    ") feeds the ring from the fleet's stream (", h.ready and "handover" or "takeover", ")")
  return nil
end

-- The lock is the successor's: what the previous holder wrote since this successor started is
-- taken from the ring here (besides what this worker's reader saw, when it still reads), so that
-- what both streams delivered is written once (h.dedup, put_item).
function overlap(h)
  local dict = S.dict
  local seen = S.succ and S.succ.seen or {}
  local last = dict:get(K_SEQ) or 0
  local from = math_max(h.start_seq or last, last - S.ring_size)
  if h.start_seq and h.start_seq < from then
    ngx_log(WARN, "genesys.notify.resty: the previous holder wrote ", last - h.start_seq,
      " items while this one opened its stream, more than the ring holds: events of the ",
      "overlap before seq ", from, " may be written twice")
  end
  ring_scan(from + 1, last, function(v, i, j)
    if str_byte(v, i) == 101 then
      local _, _, t4, t5, _, nl = event_fields(v, i)
      if nl and nl <= j then
        seen[t5 > t4 + 1 and str_sub(v, t4 + 1, t5 - 1) or str_sub(v, nl + 1, j)] = true
      end
    end
  end)
  h.dedup = seen
  h.dedup_until = now_ms() + S.grace_ms
end

-- The successor: opens its stream while the old holder still writes, takes what it delivers
-- (up to PENDING_MAX; then its queue and the pause hold the rest), says when it is open, and
-- waits for the lock. Returns nil when it holds the lock (then hold() goes on), or why not.
local function succeed(h)
  local why = open_client(h, false)
  if why then return why end
  local dict, client = S.dict, h.client
  while true do
    -- the lock first: once it is ours, hold() goes on (and, in an exiting worker, hands the
    -- stream over in turn) rather than dropping it
    local lock = dict:get(K_LOCK)
    if lock == h.value then break end
    -- an exiting worker gives up unless its stream is open already: then the old holder may be
    -- passing the lock on right now, and it takes it and hands it on in turn
    if (S.exiting or ngx.worker.exiting()) and not h.ready then return "the worker is exiting" end
    if dict:get(K_SUCC) == h.value then dict:expire(K_SUCC, S.ttl_ms / 1000) end
    local ho = dict:get(K_HO)
    if not lock or ho ~= lock then
      -- the old holder went without passing the lock on (quit, handover_ms, a crash)
      if take_lock(h.value) then
        if not h.ready and not S.client_cfg.redis then
          h.takeover_from = dict:get(K_HEARD)
          if h.takeover_from then count("takeovers") end
        end
        break
      end
      -- (or the old holder passed it on between the two looks: pass_lock)
      if dict:get(K_LOCK) == h.value then break end
      return "another worker holds the stream"
    end
    local waiting = #h.pending - h.pi + 1
    if waiting < PENDING_MAX then
      local items = client:drain(math_min(BATCH, PENDING_MAX - waiting), "record")
      for i = 1, #items do
        local it = items[i]
        -- (fleet mode: its events reach the ring through the fleet's stream, not from here)
        if not S.client_cfg.redis or (type(it) == "table" and it.item ~= "event" and
            it.item ~= "resync") then
          h.pending[#h.pending + 1] = it
        end
        if type(it) == "table" and it.kind == "connected" and not h.ready then
          h.ready = true
          if S.client_cfg.redis then
            local m = client:metrics()
            dict:safe_set(K_LVAL, m.lease and m.lease.value or "", S.ttl_ms / 1000)
          end
          dict:safe_set(K_READY, h.value, S.ttl_ms / 1000)
          ngx_log(NOTICE, "genesys.notify.resty: worker ", S.wid, " (pid ", S.pid,
            ") has its stream open; the exiting holder passes the lock on")
        end
      end
    end
    h.wake:wait(0.01)
  end
  if S.client_cfg.redis then return succeed_fleet(h) end
  overlap(h)
  S.succ = nil
  h.renewed_ms = now_ms()
  dict:delete(K_SUCC)
  if h.pi > #h.pending then h.pending = nil end
  S.holder = h
  new_bell(h)
  if h.ready and not h.takeover_from then
    count("handovers_taken")
    h.notes[#h.notes + 1] = { item = "health", kind = "handover", state = "open",
      holder_pid = S.pid, previous_holder = h.previous, gap_ms = 0,
      timestamp_ms = math_floor(now_ms()) }
  end
  ngx_log(NOTICE, "genesys.notify.resty: worker ", S.wid, " (pid ", S.pid,
    ") holds the Genesys stream (", h.ready and "handover, no gap" or "takeover", ")")
  return nil
end

-- The lock loop: every worker tries to take the lock while nobody holds it, or to take the
-- stream over from an exiting holder; the winner holds the stream in this same light thread
-- until it steps down.
local function lock_loop(premature)
  if premature then return end
  local every = math_max(S.ttl_ms / 4, 100) / 1000
  while not (S.exiting or ngx.worker.exiting()) do
    local h = try_take() or try_succeed()
    if h then
      local ok, why = pcall(function()
        if h.successor then
          local w = succeed(h)
          if w then return w end
        end
        return hold(h)
      end)
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
-- holder's loop hands the stream over to a worker of the new generation (or, when there is
-- none, lets go at once); every follower is woken so its request ends.
local function on_exit(premature)
  if not premature then
    local ok, err = ngx.timer.at(3600, on_exit)
    if not ok then ngx_log(ERR, "genesys.notify.resty: exit timer: ", err) end
    return
  end
  S.exiting = true
  S.dict:safe_set(K_EXIT .. S.pid, true, 600)
  if S.slot then -- what it did not read, the new generation's workers read (start_cursor)
    S.dict:safe_set(K_XC .. S.slot, S.cursor .. " " .. (boot_seconds() or 0), 60)
  end
  unregister_reader()
  local h = S.holder
  if h and h.wake then h.wake:post(1) end
  for f in pairs(followers) do f.sema:post(1) end
  S.lock_sema:post(1)
  S.reader_sema:post(1)
end

-- Where a new worker's reader starts: the ring's head, or, in a reload, where the old
-- generation's readers are (still reading, or just exited: K_XC): nginx starts the new workers
-- and tells the old ones to quit without waiting for either, so what was written between an
-- old reader's last read and the new one's start would reach no worker. Only the readers of
-- the generation this one replaces: live ones, and those that exited after this worker was
-- forked (the master tells the old workers to quit 100 ms after it forks the new ones). What an
-- earlier reload's readers left is not followed: the generation between read it, and following
-- it would hand every event since to this worker again. Nor a dead worker's slot (killed: it
-- never left it), nor a reader far behind (a stuck one, skipped by the holder). A reader starts
-- at an entry's first item (ring_item): the entry holding the item after the lowest cursor is
-- looked for backwards.
function start_cursor(dict)
  local head = dict:get(K_SEQ) or 0
  local from, floor, whose = head, head - math_floor(S.ring_size / 2), nil
  local forked = S.forked
  for i = 0, S.nslots - 1 do
    local pid = dict:get(K_RP .. i)
    local c = pid and dict:get(K_RC .. i)
    if c and c >= floor and c < from and pid_alive(pid) then
      from, whose = c, "the reader of pid " .. pid
    end
    local xc, xt = (dict:get(K_XC .. i) or ""):match("^(%d+) ([%d.]+)$")
    xc, xt = tonumber(xc), tonumber(xt)
    -- (2 ticks of slack: both times are in 10 ms ticks; when /proc did not tell either time,
    -- the record is followed: a few items again rather than items lost)
    if xc and xc >= floor and xc < from and (not forked or xt == 0 or xt >= forked - 0.02) then
      from, whose = xc, "a reader that exited as this worker started"
    end
  end
  local at = head
  for q = from + 1, math_max(from + 1 - BATCH, floor + 1), -1 do
    if q > head then break end
    local v, fl = dict:get(ring_key(q))
    if v and fl == q % SEQ_MOD then
      at = q - 1
      break
    end
  end
  if at < head then
    ngx_log(INFO, "genesys.notify.resty: worker ", S.wid, " (pid ", S.pid, ") reads from seq ",
      at + 1, ", ", head - at, " item(s) behind the ring's head, where ", whose, " read")
  end
  return at
end

-- ---- the public API ---------------------------------------------------------------------

--- Starts the resty layer in this worker (call it in init_worker_by_lua*, in every worker).
-- cfg: dict (lua_shared_dict name, required), lock_ttl_ms (5000), ring_size (1024),
-- bell_path (<prefix>logs/genesys_notify.bell), follower_limit (1000), fallback_ms (1000),
-- stall_ms (5000), handover_ms (30000), handover_grace_ms (500), and any field of
-- genesys.notify.new except on_event and on_health.
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
    stall_ms = opt_int(cfg, "stall_ms", 100, 3600000, 5000),
    handover_ms = opt_int(cfg, "handover_ms", 0, 3600000, 30000),
    grace_ms = opt_int(cfg, "handover_grace_ms", 0, 60000, 500),
    bell_path = cfg.bell_path or (ngx.config.prefix() .. "logs/genesys_notify.bell"),
    pid = ngx.worker.pid(), wid = ngx.worker.id() or 0, missed = 0, started_ms = now_ms(),
    lock_sema = semaphore.new(0), reader_sema = semaphore.new(0), pass_sema = semaphore.new(0),
    slice_s = ngx_now(),
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
  -- every generation's workers (a reload runs two at once, more for reloads in a row)
  S.nslots = math_max(16, 4 * ngx.worker.count())
  S.forked = fork_seconds()
  S.cursor = start_cursor(dict)
  register_reader()
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
  nfollowers = nfollowers + 1
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
  if not self.closed then nfollowers = nfollowers - 1 end
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
  st.handovers = counter("handovers")
  st.handover_duplicates = counter("handover_duplicates")
  st.reader_stalls = counter("reader_stalls")
  st.readers_gone = counter("readers_gone")
  local readers = {}
  for i = 0, S.nslots - 1 do
    local pid = dict:get(K_RP .. i)
    if pid then readers[#readers + 1] = { slot = i, pid = pid, cursor = dict:get(K_RC .. i) } end
  end
  st.readers = readers
  st.heard_ms = dict:get(K_HEARD)
  st.ring = { head = dict:get(K_SEQ) or 0, size = S.ring_size, writes = counter("ring_writes"),
    write_failures = counter("ring_write_failures"), full_waits = counter("ring_full_waits"),
    full_ms = counter("ring_full_ms") }
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
  local function metric(name, typ, help, lines) -- the text as the core writes every family
    out[#out + 1] = prometheus_family("resty_" .. name, typ, help, lines)
  end
  metric("ring_writes_total", "counter", "Items written into the shared ring by stream holders.",
    { { "", counter("ring_writes") } })
  metric("ring_write_failures_total", "counter",
    "Items that could not be written into the ring (readers report them as missed).",
    { { "", counter("ring_write_failures") } })
  metric("ring_full_waits_total", "counter",
    "Times the holder waited for a reader a whole ring behind (the server held the stream meanwhile).",
    { { "", counter("ring_full_waits") } })
  metric("ring_full_seconds_total", "counter",
    "Time the holder waited for readers a whole ring behind.",
    { { "", counter("ring_full_ms") / 1000 } })
  metric("takeovers_total", "counter", "Times a worker took the stream over from another holder.",
    { { "", counter("takeovers") } })
  metric("handovers_total", "counter",
    "Times an exiting holder passed the stream on to a worker whose own stream was open.",
    { { "", counter("handovers") } })
  metric("handover_duplicates_total", "counter",
    "Events both streams of a handover delivered, written into the ring once.",
    { { "", counter("handover_duplicates") } })
  metric("reader_stalls_total", "counter",
    "Times the holder stopped waiting for a worker's reader that had not moved for stall_ms.",
    { { "", counter("reader_stalls") } })
  metric("readers_gone_total", "counter",
    "Readers of workers that died, dropped by the holder.", { { "", counter("readers_gone") } })
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
