-- One fleet node for spec/integration/fleet_spec.lua, run as a process of its own with the
-- spec's interpreter: a lease candidate (FLEET_ROLE=holder) or a stream consumer
-- (FLEET_ROLE=fanout|group). Settings come from the environment; every event and health item
-- goes to stdout as one line ("E <correlation id> <fence> <id> [<stream> <sequence>]" for an
-- event, with the emulator's publish stream and sequence when it has them, "H <kind> key=value ..."),
-- flushed at once, so the spec can read what happened even after a kill -9. Exits 0 on SIGTERM
-- (the stop file) after closing. A holder prints "M <lease state> <fence> <state> <lease value>"
-- every 100 ms, and hands its lease over to the value in the file FLEET_STOP.handover when the
-- spec writes one; FLEET_SUCCESSOR=1 makes it a lease successor.
local notify = require "genesys.notify"

local role = os.getenv("FLEET_ROLE")
local stop_file = os.getenv("FLEET_STOP")
local slow_ms = tonumber(os.getenv("FLEET_SLOW_MS") or "0")
local out = io.stdout
out:setvbuf("line")

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

local function on_health(h)
  local parts = { "H", h.kind }
  local keys = {}
  for k in pairs(h) do if k ~= "kind" and type(h[k]) ~= "table" then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(h[k]):gsub("%s", "_") end
  out:write(table.concat(parts, " "), "\n")
end

local function busy_wait(ms)
  local t = notify.now_ms() + ms
  while notify.now_ms() < t do end
end

-- FLEET_TOPICS_N: that many topics (more than 1,000 need a pool of channels)
local topics = { os.getenv("FLEET_TOPIC") }
for i = 2, tonumber(os.getenv("FLEET_TOPICS_N") or "1") do
  topics[i] = "v2.users.fleet-" .. i .. ".presence"
end

local obj, raised
if role == "holder" then
  obj = notify.new {
    gateway = { host = "localhost", port = tonumber(os.getenv("FLEET_EMU_PORT")), protocol = "https" },
    client_id = "test-id", client_secret = "test-secret",
    tls = { ca_file = os.getenv("FLEET_CA") },
    backoff = { base_ms = 50, max_ms = 400, multiplier = 2, jitter = "none", reset_after_ms = 200 },
    topics = topics,
    redis = { url = os.getenv("FLEET_REDIS"), key = os.getenv("FLEET_KEY"),
              lease_ms = tonumber(os.getenv("FLEET_LEASE_MS")),
              maxlen = tonumber(os.getenv("FLEET_MAXLEN") or ""),
              successor = os.getenv("FLEET_SUCCESSOR") == "1" or nil },
    on_event = function(ev) out:write("L ", string.format("%d", ev.received_ms), "\n") end,
    on_health = on_health,
    resync = os.getenv("FLEET_RESYNC"), -- a family name, or nil: off
  }
else
  obj = notify.consumer {
    redis = { url = os.getenv("FLEET_REDIS"), key = os.getenv("FLEET_KEY") },
    mode = role, group = os.getenv("FLEET_GROUP"), consumer = os.getenv("FLEET_CONSUMER"),
    claim_idle_ms = tonumber(os.getenv("FLEET_CLAIM_MS") or "30000"), block_ms = 200,
    count = tonumber(os.getenv("FLEET_COUNT") or "100"),
    on_event = function(ev)
      if os.getenv("FLEET_RAISE_ONCE") and not raised then
        raised = true
        out:write("R ", ev.id, "\n")
        error("a handler that fails once")
      end
      if ev.resync then
        -- a holder's resync item, through the stream:
        -- "Y <topic> <systemPresence> <family> <deaf_from_ms> <deaf_to_ms>"
        local pd = type(ev.body) == "table" and ev.body.presenceDefinition
        out:write("Y ", ev.topic, " ", tostring(pd and pd.systemPresence), " ", tostring(ev.family),
          string.format(" %d %d", ev.deaf_from_ms or -1, ev.deaf_to_ms or -1), "\n")
      end
      local b = type(ev.body) == "table" and ev.body or {}
      out:write("E ", ev.correlation_id, " ", string.format("%d", ev.fence), " ", ev.id,
        b.stream and string.format(" %d %d", b.stream, b.sequence) or "", "\n")
      if slow_ms > 0 then busy_wait(slow_ms) end
    end,
    on_health = on_health,
  }
end
obj:start()
out:write("S started\n")
local last_metrics = 0
while not exists(stop_file) do
  obj:poll(50)
  if role == "holder" and notify.now_ms() - last_metrics > 100 then
    last_metrics = notify.now_ms()
    local m = obj:metrics()
    out:write("M ", m.lease.state, " ", string.format("%d", m.lease.fence), " ", m.state, " ",
      m.lease.value, "\n")
  end
  -- FLEET_STOP.handover holds a successor's lease value: hand the lease over to it
  local hf = role == "holder" and io.open(stop_file .. ".handover", "rb")
  if hf then
    local to = hf:read("*l")
    hf:close()
    os.remove(stop_file .. ".handover")
    local ok, err = obj:lease_handover(to)
    out:write("O ", tostring(ok), " ", tostring(err), "\n")
  end
end
obj:close()
out:write("S closed\n")
os.exit(0)
