-- make demo: the library's main job on the bundled emulator, with the faults production sees.
--
-- Starts genesys-notify-emulator over TLS (a throwaway CA in build/certs), runs the
-- `genesys-notify` command against it with a steady stream of events, and plays a scripted
-- fault sequence while the terminal shows the events and every health item. Then it accounts,
-- phase by phase, for each event the emulator generated: received once, or lost inside an
-- interval the client reported as deaf. Exits 0 only if nothing was lost while the client said
-- it was connected and nothing arrived twice.
--
-- Run from the checkout (make demo does: lua5.4 demo/demo.lua). GN_BINDIR names the build's
-- bin folder (the emulator); GN_DEMO_CLI the command (default bin/genesys-notify).
package.path = "lua/?.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("GN_BUILD") or "build/lua5.4") .. "/?.so;" .. package.cpath

local cjson = require "cjson.safe"
local notify = require "genesys.notify"
local emulator = require "support.emulator"

local now_ms = notify.now_ms
local TOPIC = "v2.users.5f3a-demo.presence"
local RATE = 50              -- events per second, all through the demo
local CLIENT_ID = "demo-client"
-- A throwaway secret, made here: the demo shows that it never appears in any output.
local SECRET = ("demo-%08x%08x"):format(math.random(0, 0x7fffffff), math.floor(now_ms() % 0x7fffffff))

local TTY = os.getenv("TERM") and os.getenv("TERM") ~= "dumb" and
  (os.execute("test -t 1") == true or os.execute("test -t 1") == 0)
local function color(code, s) return TTY and ("\27[" .. code .. "m" .. s .. "\27[0m") or s end

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function sh(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0 -- (a status number under LuaJIT)
end
local function capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local s = p:read("*a")
  p:close()
  return s
end
local function sleep_ms(ms) os.execute(("sleep %.3f"):format(ms / 1000)) end

local T0 = now_ms()
local function stamp() return ("%5.1fs"):format((now_ms() - T0) / 1000) end
local function say(s) io.stdout:write(stamp(), "  ", s, "\n"); io.stdout:flush() end

-- ------------------------------------------------------------------------------------------
-- The command under demonstration, as a separate process; its stdout (one JSON line per event)
-- and stderr (one JSON line per health item) go to files this script follows.

local Tail = {}
Tail.__index = Tail
function Tail.new(path) return setmetatable({ path = path, pos = 0, part = "" }, Tail) end
function Tail:lines()
  local f = io.open(self.path, "rb")
  if not f then return {} end
  f:seek("set", self.pos)
  local s = f:read("*a") or ""
  f:close()
  self.pos = self.pos + #s
  s = self.part .. s
  local out = {}
  local last = 1
  for line, nxt in s:gmatch("([^\n]*)\n()") do
    out[#out + 1] = line
    last = nxt
  end
  self.part = s:sub(last)
  return out
end

local dir = capture("mktemp -d /tmp/gn-demo.XXXXXX"):gsub("%s+$", "")
assert(dir ~= "", "mktemp failed")

-- Channels live 6 s unless resubscribed (Genesys: 24 h): the client renews them all through the
-- demo (the "channel lifetime" phase shows it), as it would every day against Genesys.
local emu = emulator.start { tls = true, clients = { CLIENT_ID .. ":" .. SECRET },
  heartbeat_ms = 1000, token_ttl = 3600, channel_ttl = 6 }

local cli_cmd = os.getenv("GN_DEMO_CLI") or "bin/genesys-notify"
local argv = {
  "--gateway", emu.base_url, "--ca-file", emu.ca_file, "--topic", TOPIC,
  "--health", "json",
  -- quick reconnects for a 90 s demo; the defaults suit production
  "--backoff-base-ms", "200", "--backoff-max-ms", "2000",
  -- a silent link is pinged after 1.5 s and declared dead 1 s later
  "--heartbeat-idle-ms", "1500", "--heartbeat-timeout-ms", "1000",
  -- after each gap, the presence is read back over REST and printed as a resync line
  "--resync", "presence",
}
-- The secret goes through a file only this user can read (never a command line, which `ps`
-- shows).
local secret_file = dir .. "/secret"
sh("umask 077 && : > " .. shq(secret_file))
do
  local f = assert(io.open(secret_file, "w"))
  f:write(SECRET, "\n")
  f:close()
end
argv[#argv + 1] = "--client-secret-file"
argv[#argv + 1] = secret_file
local parts = {}
for _, a in ipairs(argv) do parts[#parts + 1] = shq(a) end
local cli_pid = tonumber(capture(
  "GENESYSCLOUD_OAUTHCLIENT_ID=" .. shq(CLIENT_ID) ..
  " sh -c " .. shq("exec " .. cli_cmd .. " " .. table.concat(parts, " ") ..
    " >" .. shq(dir .. "/events.jsonl") .. " 2>" .. shq(dir .. "/health.jsonl") ..
    " </dev/null") .. " & echo $!"):match("%d+") or "")
assert(cli_pid, "could not start " .. cli_cmd)

local events_tail, health_tail = Tail.new(dir .. "/events.jsonl"), Tail.new(dir .. "/health.jsonl")
local events = {}        -- (stream, sequence) -> times received
local received_by_stream = {}
local health = {}        -- every health item, in order
local stray = {}         -- lines that were not JSON (shown, and counted)
local last_shown_ms, shown_since = 0, 0
-- A restarted emulator numbers its streams from 1 again: events are keyed by the emulator's
-- life (epoch) too.
local epoch = 1

local resynced = {}      -- resync lines: the state read back after a gap
local function follow()
  -- health first: a gap's restored item is shown before the resync lines that heal it
  for _, line in ipairs(health_tail:lines()) do
    local h = cjson.decode(line)
    if type(h) == "table" and h.kind then
      h.seen_ms = now_ms()
      health[#health + 1] = h
      local detail = {}
      for _, k in ipairs { "reason", "event", "phase", "entities", "requests", "code", "latency_ms",
                           "delay_ms", "retry_after_ms",
                           "gap_ms", "new_channel", "error" } do
        if h[k] ~= nil and h[k] ~= cjson.null then
          detail[#detail + 1] = k .. "=" .. tostring(type(h[k]) == "number" and
            ("%.0f"):format(h[k]) or h[k])
        end
      end
      say(color("33", ("health %-14s %s"):format(h.kind, table.concat(detail, " "))))
    elseif line ~= "" then
      stray[#stray + 1] = line
      say("stderr: " .. line)
    end
  end
  for _, line in ipairs(events_tail:lines()) do
    local ev = cjson.decode(line)
    local b = type(ev) == "table" and type(ev.body) == "table" and ev.body
    if b and type(ev.resync) == "table" then
      resynced[#resynced + 1] = ev
      local pd = type(b.presenceDefinition) == "table" and b.presenceDefinition.systemPresence
      say(color("36", ("resync %s presence=%s (state read back after the gap; modifiedDate %s)")
        :format(ev.topic, tostring(pd), tostring(b.modifiedDate))))
    elseif b and b.stream and b.sequence then
      local k = ("%d:%d:%d"):format(epoch, b.stream, b.sequence)
      events[k] = (events[k] or 0) + 1
      local sk = ("%d:%d"):format(epoch, b.stream)
      received_by_stream[sk] = (received_by_stream[sk] or 0) + 1
      -- one event line a second, with how many came since the last line
      shown_since = shown_since + 1
      if now_ms() - last_shown_ms >= 1000 then
        say(color("32", ("event  %d received (seq %d of stream %d): %s"):format(shown_since,
          b.sequence, b.stream, line:sub(1, 80) .. (#line > 80 and "..." or ""))))
        last_shown_ms, shown_since = now_ms(), 0
      end
    elseif line ~= "" then
      stray[#stray + 1] = line
      say("stdout: " .. line)
    end
  end
end

local function cli_alive() return sh("kill -0 " .. cli_pid .. " 2>/dev/null") end

local function wait_for(pred, timeout_ms, what)
  local deadline = now_ms() + timeout_ms
  while now_ms() < deadline do
    follow()
    if pred() then return true end
    if not cli_alive() then
      follow()
      error(cli_cmd .. " exited while waiting for " .. what)
    end
    sleep_ms(50)
  end
  error("timed out after " .. timeout_ms .. " ms waiting for " .. what)
end

local function count(kind)
  local n = 0
  for _, h in ipairs(health) do if h.kind == kind then n = n + 1 end end
  return n
end

-- ------------------------------------------------------------------------------------------
-- Phases: each publishes a stream of RATE events/s, injects its fault a little after the start,
-- and waits until the stream is done and the client is connected and quiet again.

local function admin(method, path, body)
  local code, res = emu:admin(method, path, body)
  assert(code == 200, ("emulator %s %s: %s %s"):format(method, path, tostring(code),
    type(res) == "table" and cjson.encode(res) or tostring(res)))
  return res
end

local PHASES = {
  { name = "steady stream", fault = nil },
  -- no fault: the channel would end 6 s after its last subscription; the client resubscribes
  -- before that (health renewal resubscribed) and nothing is lost
  { name = "channel lifetime", recovered = { "renewal", "resubscribed" }, renewal = true },
  { name = "TCP reset", fault = function() admin("POST", "channels/*/reset", {}) end },
  { name = "close 1011", fault = function()
      admin("POST", "channels/*/close", { code = 1011, reason = "internal error" }) end },
  { name = "socket_closing", recovered = { "rollover", "completed" }, fault = function()
      admin("POST", "channels/*/socket_closing", { grace_ms = 1500 }) end },
  { name = "channel expiry", fault = function() admin("POST", "channels/*/expire", {}) end },
  { name = "OAuth 429 + Retry-After", fault = function()
      -- the token is revoked and the channel expires: the hard reconnect needs a new token,
      -- whose first request is rate limited with Retry-After: 2
      admin("POST", "faults/http", { target = "oauth", status = 429, count = 1, retry_after = 2 })
      admin("POST", "tokens/revoke", {})
      admin("POST", "channels/*/expire", {})
    end },
  { name = "stall (heartbeat)", fault = function()
      admin("POST", "channels/*/stall", { ms = 5000 }) end },
  { name = "10 s outage, restart", outage_ms = 10000 },
  { name = "presence set while deaf", resync = "Busy", fault = function()
      -- reconnects refused for 3 s after a reset: the presence set meanwhile reaches no
      -- socket, and comes back as a resync line once the client is connected again
      admin("POST", "faults/handshake", { mode = "refuse", ms = 3000 })
      admin("POST", "channels/*/reset", {})
      sleep_ms(300)
      admin("POST", "users/" .. TOPIC:match("^v2%.users%.([^.]+)%."), { presence = "Busy" })
      say(color("35", "fault  presence set to Busy while the client is deaf"))
    end },
}

local results = {}
local function run_phase(p)
  local h0 = #health
  say(color("1", ("== phase: %s"):format(p.name)))
  local secs = 4
  if p.outage_ms then
    -- The server is gone for outage_ms (process stopped: connections reset, channels and
    -- tokens forgotten), then comes back on the same port; the stream starts after it is back.
    emu:stop(true)
    say(color("35", ("fault  emulator stopped for %d s"):format(p.outage_ms / 1000)))
    local back = now_ms() + p.outage_ms
    while now_ms() < back do follow(); sleep_ms(100) end
    follow() -- everything the old emulator wrote is in; what comes next is the new one's
    epoch = epoch + 1
    emu:restart()
    say(color("35", "fault  emulator restarted"))
  end
  local st = admin("POST", "publish", { topic = TOPIC, count = RATE * secs, rate = RATE,
                                        size = 300 })
  local stream = math.floor(st.stream)
  if p.fault then
    local at = now_ms() + 1200
    while now_ms() < at do follow(); sleep_ms(50) end
    say(color("35", "fault  " .. p.name))
    p.fault()
  end
  -- recovered: back on a live link (restored), or the hand-over done (a rollover has no gap)
  local want = p.recovered or { "restored" }
  local function recovered()
    if not (p.fault or p.outage_ms or p.renewal) then return true end
    if p.resync then
      local got = false
      for _, ev in ipairs(resynced) do
        got = got or ev.body.presenceDefinition.systemPresence == p.resync
      end
      if not got then return false end
    end
    for i = h0 + 1, #health do
      local h = health[i]
      if h.kind == want[1] and (not want[2] or h.event == want[2]) then return true end
    end
    return false
  end
  wait_for(function()
    local _, s = emu:admin("GET", ("publish/%d"):format(stream))
    return type(s) == "table" and s.done and recovered()
  end, 30000, p.name .. ": the stream to end and the client to recover")
  -- quiet: what was written has arrived
  local n, since = -1, now_ms()
  wait_for(function()
    local r = received_by_stream[("%d:%d"):format(epoch, stream)] or 0
    if r ~= n then n, since = r, now_ms() end
    return now_ms() - since > 700
  end, 10000, "the last events")
  local _, times = emu:admin("GET", ("publish/%d/times"):format(stream))
  results[#results + 1] = { phase = p, stream = stream, epoch = epoch, status = times, h0 = h0,
                            h1 = #health }
end

local ok, err = pcall(function()
  wait_for(function() return count("connected") > 0 end, 20000, "the first connection")
  for _, p in ipairs(PHASES) do run_phase(p) end
end)

-- ------------------------------------------------------------------------------------------
-- Stop the command (SIGTERM: a clean close) and account.

sh("kill -TERM " .. cli_pid .. " 2>/dev/null")
local rc
for _ = 1, 100 do
  if not cli_alive() then break end
  sleep_ms(50)
end
rc = cli_alive() and "still running" or "exited"
if rc == "still running" then sh("kill -KILL " .. cli_pid .. " 2>/dev/null") end
follow()
emu:stop()

local function intervals(from_i, to_i)
  local iv = {}
  for i = from_i, to_i do
    local h = health[i]
    if h and (h.kind == "restored" or h.kind == "gap") and tonumber(h.deaf_from_ms) then
      iv[#iv + 1] = { tonumber(h.deaf_from_ms), tonumber(h.deaf_to_ms), h.kind }
    end
  end
  return iv
end

local failures = {}
print()
print(("%-24s %5s %5s %7s %9s %4s  %-34s %s"):format("phase", "sent", "recv", "in gaps",
  "connected", "dups", "reported deaf intervals", "reconnect ms"))
local totals = { sent = 0, recv = 0, gap = 0, lost = 0, dup = 0 }
for _, r in ipairs(results) do
  local st = r.status or {}
  local sent = math.floor(tonumber(st.generated) or 0)
  -- every interval reported during the phase (and a little after: a restored item comes once
  -- the new link is open)
  local iv = intervals(r.h0 + 1, r.h1)
  local recv, dup, in_gap, lost = 0, 0, 0, 0
  for s = 1, sent do
    local n = events[("%d:%d:%d"):format(r.epoch, r.stream, s)] or 0
    if n >= 1 then recv = recv + 1 end
    if n > 1 then dup = dup + n - 1 end
    if n == 0 then
      local t = st.times and tonumber(st.times[s])
      local inside = false
      for _, i in ipairs(iv) do
        if t and t >= i[1] and t <= i[2] then inside = true break end
      end
      if inside then in_gap = in_gap + 1 else lost = lost + 1 end
    end
  end
  local ivs, lat = {}, {}
  for _, i in ipairs(iv) do ivs[#ivs + 1] = ("%s %.0f ms"):format(i[3], i[2] - i[1]) end
  for i = r.h0 + 1, r.h1 do
    local h = health[i]
    if h.kind == "connected" and tonumber(h.latency_ms) then
      lat[#lat + 1] = ("%.0f"):format(h.latency_ms)
    end
  end
  print(("%-24s %5d %5d %7d %9d %4d  %-34s %s"):format(r.phase.name, sent, recv, in_gap, lost, dup,
    #ivs > 0 and table.concat(ivs, ", ") or "-", #lat > 0 and table.concat(lat, ", ") or "-"))
  totals.sent, totals.recv = totals.sent + sent, totals.recv + recv
  totals.gap, totals.lost, totals.dup = totals.gap + in_gap, totals.lost + lost, totals.dup + dup
  if lost > 0 then failures[#failures + 1] = r.phase.name .. ": " .. lost .. " lost while connected" end
  if dup > 0 then failures[#failures + 1] = r.phase.name .. ": " .. dup .. " duplicates" end
  if sent == 0 then failures[#failures + 1] = r.phase.name .. ": the emulator sent nothing" end
end
print(("%-24s %5d %5d %7d %9d %4d"):format("total", totals.sent, totals.recv, totals.gap,
  totals.lost, totals.dup))
print()
print("sent: events the emulator generated; recv: received by genesys-notify (once each);")
print("in gaps: not received, generated inside an interval the client reported as deaf;")
print("connected: not received and outside every reported interval (must be 0); dups: must be 0.")

-- The secret never appears in anything the command printed.
for _, f in ipairs { "events.jsonl", "health.jsonl" } do
  local s = emulator.read_file and emulator.read_file(dir .. "/" .. f) or
    capture("cat " .. shq(dir .. "/" .. f))
  if s:find(SECRET, 1, true) then failures[#failures + 1] = "the secret appeared in " .. f end
end
if not ok then failures[#failures + 1] = tostring(err) end
if #results < #PHASES and ok then failures[#failures + 1] = "not every phase ran" end
if #stray > 0 then failures[#failures + 1] = #stray .. " output lines were not JSON" end
do
  local healed = false
  for _, ev in ipairs(resynced) do
    healed = healed or ev.body.presenceDefinition.systemPresence == "Busy"
  end
  if not healed then failures[#failures + 1] = "the presence set while deaf was not resynced" end
end
if rc ~= "exited" then failures[#failures + 1] = "genesys-notify did not exit on SIGTERM" end

sh("rm -rf " .. shq(dir))
print(("%.1f s"):format((now_ms() - T0) / 1000))
if #failures > 0 then
  print(color("31", "demo FAILED: " .. table.concat(failures, "; ")))
  os.exit(1)
end
print(color("32", "demo passed: every event received once or inside a reported gap"))
os.exit(0)
