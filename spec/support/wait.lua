-- Helpers for client specs: wait while polling clients (busted 2 has no async tests), a
-- recorder that keeps every event and health item a client delivered, and a client factory
-- pointed at an emulator started by support.emulator.
local notify = require "genesys.notify"

local _M = {}

local now_ms = notify.now_ms
_M.now_ms = now_ms

--- A whole file, or nil when it cannot be opened.
function _M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- A number field of /proc/PID/status (pid: default "self"), e.g. "VmRSS" (KB) or "Threads".
function _M.proc_status(field, pid)
  local s = _M.read_file("/proc/" .. tostring(pid or "self") .. "/status") or ""
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

--- The resident set of a process (default this one), in KB.
function _M.rss_kb(pid) return _M.proc_status("VmRSS", pid) end

local build = require "support.build"

--- True when the process runs under valgrind (its preload library is mapped).
function _M.under_valgrind() return build.under_valgrind end

--- How many times slower than a plain build this run is (valgrind about 20x, sanitizers about
-- 3x): fault windows, client timeouts and deadlines are multiplied by it, so the specs check the
-- same behaviour everywhere instead of the speed of the build (support.build).
local SLOW = build.slow
function _M.slow() return SLOW end

local function as_list(clients)
  if type(clients) == "table" and clients.poll == nil and getmetatable(clients) == nil then
    return clients
  end
  return { clients }
end

--- Polls the clients until fn() returns a truthy value or timeout_ms passes.
-- Returns fn's value, or nil on timeout.
function _M.until_(clients, fn, timeout_ms)
  local list = as_list(clients)
  local deadline = now_ms() + (timeout_ms or 10000) * SLOW
  while true do
    local v = fn()
    if v then return v end
    if now_ms() > deadline then return nil end
    local slice = #list > 1 and 0 or 20
    for _, c in ipairs(list) do c:poll(slice) end
    if #list > 1 then
      -- many clients: one short sleep for the whole round
      list[1]:poll(5)
    end
  end
end

--- Polls for duration_ms, whatever happens.
function _M.for_ms(clients, duration_ms)
  local list = as_list(clients)
  local deadline = now_ms() + duration_ms
  while now_ms() < deadline do
    for _, c in ipairs(list) do c:poll(#list > 1 and 0 or 20) end
    if #list > 1 then list[1]:poll(5) end
  end
end

--- A recorder: rec.events, rec.health (every item, in order), rec.kinds[kind] = list.
function _M.recorder()
  local rec = { events = {}, health = {}, kinds = {} }
  function rec.on_event(ev) rec.events[#rec.events + 1] = ev end
  function rec.on_health(h)
    rec.health[#rec.health + 1] = h
    local k = rec.kinds[h.kind]
    if not k then k = {}; rec.kinds[h.kind] = k end
    k[#k + 1] = h
    if os.getenv("GN_SPEC_TRACE") then
      local parts = {}
      for key, v in pairs(h) do
        if type(v) ~= "table" then parts[#parts + 1] = key .. "=" .. tostring(v) end
      end
      table.sort(parts)
      io.stderr:write("health ", table.concat(parts, " "), "\n")
    end
  end
  function rec.count(kind) return #(rec.kinds[kind] or {}) end
  function rec.last(kind) local k = rec.kinds[kind]; return k and k[#k] end
  function rec.where(kind, pred)
    local out = {}
    for _, h in ipairs(rec.kinds[kind] or {}) do if pred(h) then out[#out + 1] = h end end
    return out
  end
  return rec
end

--- Client configuration for an emulator (fast timings for tests); extra fields override.
function _M.config(emu, rec, extra)
  local cfg = {
    gateway = { host = emu.host, port = emu.port, protocol = emu.tls and "https" or "http" },
    client_id = "test-id", client_secret = "test-secret",
    tls = emu.ca_file and { ca_file = emu.ca_file } or nil,
    backoff = { base_ms = 50, max_ms = 400, multiplier = 2, jitter = "none", reset_after_ms = 200 },
    timeouts = { connect_ms = 3000 * SLOW, handshake_ms = 3000 * SLOW, http_ms = 5000 * SLOW },
    on_event = rec and rec.on_event, on_health = rec and rec.on_health,
  }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

--- Creates and starts a client on the emulator with a recorder; topics default to `topics`.
-- With `connected`, waits (10 s, stretched for slow builds by until_) for its first connection.
function _M.start_client(emu, extra, topics, connected)
  local rec = _M.recorder()
  local cfg = _M.config(emu, rec, extra)
  cfg.topics = cfg.topics or topics
  local client = notify.new(cfg)
  client:start()
  if connected then
    assert(_M.until_(client, function() return rec.count("connected") > 0 end, 10000),
      "the client did not connect")
  end
  return client, rec
end

--- The channel id of the client's current connection (from its last "connected" health).
function _M.channel_of(rec)
  local c = rec.last("connected")
  return c and c.channel_id
end

return _M
