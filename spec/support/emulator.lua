-- Starts and drives genesys-notify-emulator as a separate process, for busted specs.
-- Works under Lua 5.4 and LuaJIT with Debian packages only (lua-cjson); HTTP goes through the
-- `curl` command, process control through `sh`. Every started emulator must be stopped:
-- use `finally(function() emu:stop() end)` or a teardown. `emulator.stop_all()` stops any left.
--
--   local emulator = require "support.emulator"
--   local emu = emulator.start{ tls = true, clients = {"test-id:test-secret"}, token_ttl = 3600,
--     channel_ttl = 86400, heartbeat_ms = 30000, args = {"--event-rate", "10"}, port = nil,
--     max_channels = 20, channel_ends_with_token = false }
--   (TLS with other certificates: cert =, key =, ca_file = (emu.ca_file); admin_insecure = true
--   makes the spec's own curl calls skip verification, for a server with a bad certificate)
--   emu.port, emu.host, emu.ca_file, emu.base_url, emu.pid, emu.ws_scheme
--   emu:admin(method, path, body_table) --> status, decoded_json_or_text
--   emu:stats(); emu:stop(); emu:kill(); emu:restart()
--   emu:http(method, url_path, {headers=..., body=...}) --> status, body, headers
--   emu:token(); emu:channel(token, topics); emu:probe{...}; emu:probe_bg{...}
local cjson = require "cjson.safe"

local _M = { _VERSION = "0.1" }
local mt = { __index = _M }

local live = {}   -- pid -> emulator, for stop_all()

local function shq(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Every command runs without LD_PRELOAD: sanitizer runs preload libasan/libtsan into busted, and
-- the shell and tools we spawn are not ours to check (the emulator is linked with the sanitizer).
local function clean(cmd)
  return "exec env -u LD_PRELOAD sh -c " .. "'" .. cmd:gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local ok, _, code = os.execute(clean(cmd))
  if type(ok) == "number" then return ok == 0, ok end   -- Lua 5.1 / LuaJIT without 5.2 compat
  return ok == true, code
end

local function capture(cmd)
  local p = assert(io.popen(clean(cmd), "r"))
  local s = p:read("*a")
  p:close()
  return s
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function sleep(s) sh("sleep " .. string.format("%.3f", s)) end
_M.sleep = sleep

local function now_s()
  -- os.clock is CPU time; date +%s.%N is wall time
  return tonumber(capture("date +%s.%N")) or os.time()
end
_M.now = now_s

local function root()
  return os.getenv("GN_ROOT") or "."
end

local function bindir()
  local d = os.getenv("GN_BINDIR")
  if d and d ~= "" then return d end
  return root() .. "/build/lua5.4/bin"
end
_M.bindir = bindir

-- Commands for tools we spawn: never inject the sanitizer runtime into curl/openssl, and the
-- emulator is already linked with it in sanitizer builds.
local NOPRELOAD = "env -u LD_PRELOAD "

-- The TLS matrix's certificates (spec/support/mkcerts_matrix.sh): returns their folder.
function _M.matrix_certs()
  local dir = root() .. "/build/certs/matrix"
  if not read_file(dir .. "/done") then
    assert(sh(NOPRELOAD .. "sh " .. shq(root() .. "/spec/support/mkcerts_matrix.sh") .. " " ..
      shq(dir)), "emulator: creating the TLS matrix certificates failed")
  end
  return dir
end

function _M.certs()
  local dir = root() .. "/build/certs"
  if not read_file(dir .. "/server.pem") then
    assert(sh(NOPRELOAD .. "sh " .. shq(root() .. "/emulator/mkcerts.sh") .. " " .. shq(dir)),
      "emulator: creating test certificates failed")
  end
  return dir .. "/ca.pem", dir .. "/server.pem", dir .. "/server.key"
end

local function tmpdir()
  local d = capture("mktemp -d /tmp/gn-emu.XXXXXX"):gsub("%s+$", "")
  assert(d ~= "", "mktemp failed")
  return d
end

local function build_args(o)
  local a = { "--port", tostring(o.port or 0), "--host", o.host or "127.0.0.1" }
  for _, c in ipairs(o.clients or { "test-id:test-secret" }) do
    a[#a + 1] = "--client"; a[#a + 1] = c
  end
  if o.token_ttl then a[#a + 1] = "--token-ttl"; a[#a + 1] = tostring(o.token_ttl) end
  if o.channel_ttl then a[#a + 1] = "--channel-ttl"; a[#a + 1] = tostring(o.channel_ttl) end
  if o.heartbeat_ms then a[#a + 1] = "--heartbeat-ms"; a[#a + 1] = tostring(o.heartbeat_ms) end
  if o.max_channels then a[#a + 1] = "--max-channels"; a[#a + 1] = tostring(o.max_channels) end
  if o.channel_ends_with_token then a[#a + 1] = "--channel-ends-with-token" end
  if o.tls then
    local _, cert, key = _M.certs()
    cert, key = o.cert or cert, o.key or key
    a[#a + 1] = "--tls-cert"; a[#a + 1] = cert
    a[#a + 1] = "--tls-key"; a[#a + 1] = key
  end
  for _, x in ipairs(o.args or {}) do a[#a + 1] = x end
  return a
end

local function ready_timeout()
  local san = os.getenv("GN_SAN")
  return (san and san ~= "") and 30 or 10
end

-- Runs the emulator binary with raw arguments and waits for it to end (for CLI specs).
-- Returns exit code, stdout, stderr.
function _M.run_raw(args, timeout)
  local d = tmpdir()
  local parts = {}
  for _, x in ipairs(args) do parts[#parts + 1] = shq(x) end
  local cmd = NOPRELOAD .. "timeout " .. (timeout or 10) .. " " ..
    shq(bindir() .. "/genesys-notify-emulator") .. " " .. table.concat(parts, " ") ..
    " >" .. shq(d .. "/out") .. " 2>" .. shq(d .. "/err") .. " </dev/null; echo $?"
  local rc = tonumber((capture("sh -c " .. shq(cmd)):gsub("%s+$", "")))
  local out, err = read_file(d .. "/out") or "", read_file(d .. "/err") or ""
  sh("rm -rf " .. shq(d))
  return rc, out, err
end

function _M:_spawn()
  local d = self.dir
  for _, f in ipairs { "pid", "rc", "out", "err" } do os.remove(d .. "/" .. f) end
  local parts = {}
  for _, x in ipairs(self.argv) do parts[#parts + 1] = shq(x) end
  -- A watcher shell records the emulator's exit status; the emulator is its direct child.
  -- o.netns: run it inside that network namespace (ip netns exec), for link-level faults.
  local netns = self.opts.netns and ("ip netns exec " .. shq(self.opts.netns) .. " ") or ""
  local inner = NOPRELOAD .. netns .. shq(bindir() .. "/genesys-notify-emulator") .. " " ..
    table.concat(parts, " ") .. " >" .. shq(d .. "/out") .. " 2>" .. shq(d .. "/err") ..
    " </dev/null & echo $! >" .. shq(d .. "/pid.tmp") .. "; mv " .. shq(d .. "/pid.tmp") ..
    " " .. shq(d .. "/pid") .. "; wait $!; echo $? >" .. shq(d .. "/rc.tmp") .. "; mv " ..
    shq(d .. "/rc.tmp") .. " " .. shq(d .. "/rc")
  assert(sh("sh -c " .. shq(inner) .. " >/dev/null 2>&1 &"))
  local deadline = now_s() + ready_timeout()
  local line
  repeat
    sleep(0.02)
    local out = read_file(d .. "/out")
    line = out and out:match("^([^\n]*)\n")
    if read_file(d .. "/rc") then break end
  until line or now_s() > deadline
  self.pid = tonumber((read_file(d .. "/pid") or ""):match("%d+") or "")
  local ready = line and cjson.decode(line)
  if not (ready and ready.listening) then
    local err = read_file(d .. "/err") or ""
    if self.pid then sh("kill -9 " .. self.pid .. " 2>/dev/null") end
    error("emulator did not start: " .. (line or "no ready line") .. " " .. err, 3)
  end
  self.port = math.floor(ready.port)
  self.ready = ready
  self.base_url = self.scheme .. "://" .. self.host .. ":" .. self.port
  live[self.pid] = self
end

function _M.start(o)
  o = o or {}
  local self = setmetatable({}, mt)
  self.opts = o
  self.host = o.host or "localhost"
  self.tls = o.tls and true or false
  self.scheme = self.tls and "https" or "http"
  self.ws_scheme = self.tls and "wss" or "ws"
  if self.tls then self.ca_file = o.ca_file or _M.certs() end
  self.argv = build_args(o)
  self.dir = tmpdir()
  self:_spawn()
  return self
end

local function wait_rc(self, timeout)
  local deadline = now_s() + timeout
  repeat
    local rc = read_file(self.dir .. "/rc")
    if rc then return tonumber(rc) end
    sleep(0.02)
  until now_s() > deadline
  return nil
end

-- SIGTERM and wait. Returns the exit status and the emulator's stderr (also kept in
-- emu.last_rc, emu.last_err, emu.last_out). Removes the emulator's temporary folder.
function _M:stop(keep_dir)
  if not self.pid then
    if not keep_dir then sh("rm -rf " .. shq(self.dir)) end
    return self.last_rc, self.last_err
  end
  sh("kill -TERM " .. self.pid .. " 2>/dev/null")
  local rc = wait_rc(self, 20)
  if not rc then
    sh("kill -KILL " .. self.pid .. " 2>/dev/null")
    rc = wait_rc(self, 5) or -1
  end
  live[self.pid] = nil
  self.pid = nil
  self.last_rc, self.last_err = rc, read_file(self.dir .. "/err") or ""
  self.last_out = read_file(self.dir .. "/out") or ""
  sh("rm -rf " .. shq(self.dir .. "/probe-") .. "*")
  if not keep_dir then sh("rm -rf " .. shq(self.dir)) end
  -- A sanitizer report fails the spec that stopped the emulator, whatever the exit status.
  for _, pat in ipairs { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                         "WARNING: ThreadSanitizer", "runtime error:" } do
    if self.last_err:find(pat, 1, true) then
      error("emulator sanitizer report:\n" .. self.last_err, 2)
    end
  end
  return self.last_rc, self.last_err
end

function _M:kill()
  if not self.pid then return end
  sh("kill -KILL " .. self.pid .. " 2>/dev/null")
  wait_rc(self, 5)
  live[self.pid] = nil
  self.pid = nil
  self.last_rc, self.last_err = -9, read_file(self.dir .. "/err") or ""
end

-- Same arguments, same port.
function _M:restart()
  self:stop(true)
  local port = string.format("%d", self.port)
  for i, x in ipairs(self.argv) do
    if x == "--port" then self.argv[i + 1] = port end
  end
  local deadline = now_s() + 5
  while true do
    local ok, err = pcall(self._spawn, self)
    if ok then return self end
    if now_s() > deadline then error(err, 2) end
    sleep(0.1)
  end
end

function _M.stop_all()
  for _, e in pairs(live) do pcall(e.stop, e) end
end

-- Safety net for a spec that forgot its teardown: when the Lua state closes (busted exits with
-- os.exit(code, true)), any emulator still running is stopped. Lua 5.4 runs __gc on tables;
-- LuaJIT only on userdata, hence newproxy there.
local sentinel_mt = { __gc = function() _M.stop_all() end }
if rawget(_G, "newproxy") then
  local proxy = newproxy(true)
  getmetatable(proxy).__gc = sentinel_mt.__gc
  _M._sentinel = proxy
else
  _M._sentinel = setmetatable({}, sentinel_mt)
end

-- ---- HTTP -------------------------------------------------------------------------------

local function parse_headers(raw)
  local h = {}
  -- the last header block (curl writes one per response, e.g. after 100-continue)
  local block = raw:match(".*(HTTP/[^\n]*\n.-)\r?\n\r?\n") or raw
  for name, value in block:gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do
    h[name:lower()] = value
  end
  return h
end

function _M:http(method, path, o)
  o = o or {}
  local d = self.dir
  local args = { "curl", "-sS", "-o", d .. "/body", "-D", d .. "/hdr", "-w", "%{http_code}",
    "--max-time", tostring(o.timeout or 30) }
  if method == "HEAD" then args[#args + 1] = "--head"
  else args[#args + 1] = "-X"; args[#args + 1] = method end
  if self.opts.admin_insecure then args[#args + 1] = "--insecure"
  elseif self.ca_file then args[#args + 1] = "--cacert"; args[#args + 1] = self.ca_file end
  for k, v in pairs(o.headers or {}) do
    args[#args + 1] = "-H"; args[#args + 1] = k .. ": " .. v
  end
  if o.body then
    write_file(d .. "/req", o.body)
    args[#args + 1] = "--data-binary"; args[#args + 1] = "@" .. d .. "/req"
  end
  args[#args + 1] = (o.base_url or self.base_url) .. path
  local parts = {}
  for _, x in ipairs(args) do parts[#parts + 1] = shq(x) end
  os.remove(d .. "/body"); os.remove(d .. "/hdr")
  local out = capture(NOPRELOAD .. table.concat(parts, " ") .. " 2>" .. shq(d .. "/curlerr"))
  local status = tonumber(out:match("(%d+)%s*$")) or 0
  return status, read_file(d .. "/body") or "", parse_headers(read_file(d .. "/hdr") or "")
end

function _M:admin(method, path, body)
  local o = {}
  if body ~= nil then
    o.body = type(body) == "string" and body or cjson.encode(body)
    o.headers = { ["Content-Type"] = "application/json" }
  end
  local status, text = self:http(method, "/__emulator/" .. path, o)
  local j = cjson.decode(text)
  if j == nil then return status, text end
  return status, j
end

function _M:stats()
  local st, j = self:admin("GET", "stats")
  assert(st == 200, "stats: HTTP " .. tostring(st))
  return j
end

function _M.basic(cred)
  -- base64 without external tools
  local b = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((cred:gsub(".", function(x)
    local r, byte = "", x:byte()
    for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#cred % 3 + 1])
end

-- Client-credentials token for cred ("id:secret", default the first client).
function _M:token(cred)
  cred = cred or (self.opts.clients or { "test-id:test-secret" })[1]
  local st, body = self:http("POST", "/oauth/token", {
    headers = { Authorization = "Basic " .. _M.basic(cred),
      ["Content-Type"] = "application/x-www-form-urlencoded" },
    body = "grant_type=client_credentials" })
  assert(st == 200, "token: HTTP " .. st .. " " .. body)
  return cjson.decode(body).access_token
end

function _M:rest(token, method, path, body)
  local o = { headers = { Authorization = "Bearer " .. token } }
  if body ~= nil then
    o.body = type(body) == "string" and body or cjson.encode(body)
    o.headers["Content-Type"] = "application/json"
  end
  local st, text, h = self:http(method, "/api/v2/notifications" .. path, o)
  return st, cjson.decode(text) or text, h
end

-- Creates a channel and subscribes topics. Returns the channel table {id, connectUri, expires}.
function _M:channel(token, topics)
  local st, ch = self:rest(token, "POST", "/channels")
  assert(st == 200, "create channel: HTTP " .. st)
  if topics and #topics > 0 then
    local list = {}
    for i, t in ipairs(topics) do list[i] = { id = t } end
    local s2 = self:rest(token, "PUT", "/channels/" .. ch.id .. "/subscriptions", list)
    assert(s2 == 200, "subscribe: HTTP " .. s2)
  end
  return ch
end

-- ---- WebSocket probe ---------------------------------------------------------------------

local function probe_cmd(self, o)
  local url = o.url or (self.ws_scheme .. "://" .. self.host .. ":" .. self.port ..
    (o.path or ("/channels/" .. o.channel)))
  local a = { bindir() .. "/gn-wsprobe", "--url", url, "--duration-ms",
    tostring(o.duration_ms or 3000) }
  if self.ca_file then a[#a + 1] = "--ca"; a[#a + 1] = self.ca_file end
  for _, s in ipairs(o.send or {}) do a[#a + 1] = "--send"; a[#a + 1] = s end
  if o.max_frames then a[#a + 1] = "--max-frames"; a[#a + 1] = tostring(o.max_frames) end
  if o.until_text then a[#a + 1] = "--until"; a[#a + 1] = o.until_text end
  if o.ping_ms then a[#a + 1] = "--ping-ms"; a[#a + 1] = tostring(o.ping_ms) end
  if o.print_max then a[#a + 1] = "--print-max"; a[#a + 1] = tostring(o.print_max) end
  if o.close_after_ms then a[#a + 1] = "--close-after-ms"; a[#a + 1] = tostring(o.close_after_ms) end
  if o.quiet then a[#a + 1] = "--quiet" end
  local parts = {}
  for _, x in ipairs(a) do parts[#parts + 1] = shq(x) end
  return NOPRELOAD .. table.concat(parts, " ")
end

local function decode_lines(text)
  local r = { frames = {}, texts = {} }
  for line in (text or ""):gmatch("[^\n]+") do
    local j = cjson.decode(line)
    if j then
      if j.handshake or j.error then r.open = j
      elseif j["end"] then r["end"] = j
      elseif j.frame then
        r.frames[#r.frames + 1] = j
        if j.frame == "text" and j.data then
          j.msg = cjson.decode(j.data)
          r.texts[#r.texts + 1] = j
        end
      end
    end
  end
  return r
end
_M.decode_probe = decode_lines

-- Runs the probe to completion. Returns {open=, frames={...}, texts={...}, end=}.
function _M:probe(o)
  return decode_lines(capture(probe_cmd(self, o) .. " 2>&1"))
end

local Probe = {}
Probe.__index = Probe

-- Starts the probe in the background; :result() waits for it; :current() reads what it has.
function _M:probe_bg(o)
  self.nprobe = (self.nprobe or 0) + 1
  local base = self.dir .. "/probe-" .. self.nprobe
  local inner = probe_cmd(self, o) .. " >" .. shq(base .. ".out") .. " 2>&1; echo $? >" ..
    shq(base .. ".rc.tmp") .. "; mv " .. shq(base .. ".rc.tmp") .. " " .. shq(base .. ".rc")
  assert(sh("sh -c " .. shq(inner) .. " >/dev/null 2>&1 &"))
  return setmetatable({ base = base }, Probe)
end

function Probe:current()
  return decode_lines(read_file(self.base .. ".out"))
end

-- Waits until the probe has connected (first line present).
function Probe:wait_open(timeout)
  local deadline = now_s() + (timeout or 10)
  repeat
    local r = self:current()
    if r.open then return r.open end
    sleep(0.02)
  until now_s() > deadline
  return nil
end

-- Waits until pred(current) is true.
function Probe:wait_for(pred, timeout)
  local deadline = now_s() + (timeout or 10)
  repeat
    local r = self:current()
    if pred(r) then return r end
    sleep(0.02)
  until now_s() > deadline
  return nil
end

function Probe:result(timeout)
  local deadline = now_s() + (timeout or 30)
  repeat
    if read_file(self.base .. ".rc") then break end
    sleep(0.02)
  until now_s() > deadline
  return self:current()
end

-- Waits until fn() returns a truthy value; returns it (or nil on timeout).
function _M.wait_until(fn, timeout)
  local deadline = now_s() + (timeout or 10)
  repeat
    local v = fn()
    if v then return v end
    sleep(0.02)
  until now_s() > deadline
  return nil
end

return _M
