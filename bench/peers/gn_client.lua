-- The project as a peer for make bench-peers: events into on_event with the body as a table.
--   lua5.4 bench/peers/gn_client.lua build/lua5.4   (env and output lines: see run.lua)
-- queue_limit holds a whole burst: the slow-consumer pause (issue 12, goal 4) is not there yet,
-- and a burst larger than the queue would be dropped (counted) instead of pushed back.
local build = arg[1] or "build/lua5.4"
package.path = "lua/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath
local notify = require "genesys.notify"

local host, port = os.getenv("GN_BASE"):match("^https://(.-):(%d+)$")
local id, secret = os.getenv("GN_CRED"):match("^(.-):(.*)$")
local topic = os.getenv("GN_TOPIC")
local COUNT = tonumber(os.getenv("GN_COUNT")) or 0
local CONNS = tonumber(os.getenv("GN_CONNS")) or 1

local function out(s) io.stdout:write(s, "\n"); io.stdout:flush() end

local function client(t, counting)
  local n, bad, first = 0, false, 0
  local closed_at
  local st = {}
  local c = notify.new {
    gateway = { host = host, port = tonumber(port), protocol = "https" },
    client_id = id, client_secret = secret, tls = { ca_file = os.getenv("GN_CA") },
    topics = { t },
    -- reconnect at once after an RST: the latency measured is the reconnect's own
    backoff = { base_ms = 1, max_ms = 1, jitter = "none", reset_after_ms = 1 },
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
    end or nil,
    on_health = function(h)
      if h.kind == "disconnected" then closed_at = h.timestamp_ms
      elseif h.kind == "connected" then
        st.channel = h.channel_id
        if closed_at then out(string.format("reconnect %.3f", h.timestamp_ms - closed_at)) end
        closed_at = nil
      elseif h.kind == "overflow" or h.kind == "gave_up" then
        out("error " .. notify.format(h))
      end
    end,
  }
  c:start()
  while not st.channel do c:poll(50) end
  return c, st.channel
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
