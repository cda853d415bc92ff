-- The project as a peer for make bench-peers: events into on_event with the body as a table.
--   lua5.4 bench/peers/gn_client.lua build/lua5.4   (env and output lines: see run.lua)
-- queue_limit holds a whole burst, as before overflow = "pause" existed: the figures stay
-- comparable (with "pause" a smaller queue would push back on the emulator instead).
local build = arg[1] or "build/lua5.4"
package.path = "lua/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath
local notify = require "genesys.notify"

local host, port = os.getenv("GN_BASE"):match("^https://(.-):(%d+)$")
local id, secret = os.getenv("GN_CRED"):match("^(.-):(.*)$")
local topic = os.getenv("GN_TOPIC")
local COUNT = tonumber(os.getenv("GN_COUNT")) or 0
local CONNS = tonumber(os.getenv("GN_CONNS")) or 1
local MANY = tonumber(os.getenv("GN_MANY")) or 0

local function out(s) io.stdout:write(s, "\n"); io.stdout:flush() end

local function client(t, counting, on_ev)
  local n, bad, first = 0, false, 0
  local was_closed
  local st = {}
  local c = notify.new {
    gateway = { host = host, port = tonumber(port), protocol = "https" },
    client_id = id, client_secret = secret, tls = { ca_file = os.getenv("GN_CA") },
    topics = { t },
    -- reconnect at once after an RST: the latency measured is the reconnect's own (the
    -- smallest delay the engine takes rounds to a 0 ms timer; base_ms 1 added a 1 ms wait
    -- that the bare lws client, which reconnects at once, does not have)
    backoff = { base_ms = 0.001, max_ms = 0.001, jitter = "none", reset_after_ms = 1 },
    queue_limit = COUNT + 10000, queue_bytes = 1024 * 1024 * 1024,
    -- many idle connections of one credential: the emulator is told to allow them (--max-channels)
    channel_budget = 1000,
    on_event = counting and function(ev)
      local seq = ev.body.sequence
      if seq == 1 then n, bad, first = 0, false, notify.now_ms() end
      n = n + 1
      if seq ~= n then bad = true end
      if seq == COUNT then
        out(string.format("done %d %d %.3f", n, (bad or n ~= COUNT) and 0 or 1,
          notify.now_ms() - first))
      end
    end or on_ev,
    -- the reconnect's time: connected's latency_ms, from the attempt's start (at once after
    -- the close with this backoff: a 0 ms timer) to the open socket, taken on the service
    -- thread to the µs. (The health items' timestamp_ms are whole ms, too coarse for 2-3 ms;
    -- timing their arrival in this thread counts when the scheduler runs it: two items that
    -- arrive together looked like a 12 µs reconnect.)
    on_health = function(h)
      if h.kind == "disconnected" then was_closed = true
      elseif h.kind == "connected" then
        st.channel = h.channel_id
        if was_closed then
          out(string.format("reconnect %.3f %s", h.latency_ms, h.channel_id))
        end
        was_closed = nil
      elseif h.kind == "overflow" or h.kind == "gave_up" then
        out("error " .. notify.format(h))
      end
    end,
  }
  c:start()
  while not st.channel do c:poll(50) end
  return c, st.channel
end

if MANY > 0 then
  -- many clients on one context (the default one), each on its own channel; a luv loop
  -- watches every client's fd() and polls the one that is readable
  local uv = require "luv"
  local total, all, chans = 0, {}, {}
  local function count() total = total + 1 end
  for i = 1, MANY do
    all[i], chans[i] = client((topic:gsub("%.presence$", "-m" .. i .. ".presence")), false, count)
  end
  out("many " .. table.concat(chans, " "))
  for _, c in ipairs(all) do
    uv.new_poll(c:fd()):start("r", function() c:poll(0) end)
  end
  uv.new_timer():start(200, 200, function() out("got " .. total) end)
  uv.run()
end

local first, chan = client(topic, CONNS == 1)
out("open " .. chan)
if CONNS > 1 then
  local t0 = notify.now_ms()
  while notify.now_ms() - t0 < 1000 do first:poll(100) end
  out("base")
  t0 = notify.now_ms()
  while notify.now_ms() - t0 < 1000 do first:poll(100) end
  local all = {}   -- referenced: a client collected is closed
  for i = 2, CONNS do
    all[i] = client((topic:gsub("%.presence$", "-" .. i .. ".presence")), false)
  end
  out("all")
  -- idle: nothing arrives; wait on the first client only (the others' health items wait in
  -- their bounded queues), so the idle CPU measured is the library's, not a polling loop's
  while all do first:poll(-1) end
end
while true do first:poll(-1) end
