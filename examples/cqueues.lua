-- Several genesys.notify clients inside one cqueues event loop, on client:fd().
--
--   lua5.4 examples/cqueues.lua [--gateway https://HOST:PORT] [--ca-file FILE] [--clients N] [TOPIC...]
--
-- Credentials and region come from GENESYSCLOUD_OAUTHCLIENT_ID / _SECRET / _REGION (--gateway
-- instead of a region: the bundled emulator, say). One coroutine per client waits until its
-- fd() (an eventfd, readable while items wait) is readable and calls client:poll(0), which runs
-- the callbacks in that coroutine. Events go to stdout, health items to stderr, one line each.
-- SIGINT/SIGTERM close every client and end the loop; exit status 0.
local cqueues = require "cqueues"
local signal = require "cqueues.signal"
local notify = require "genesys.notify"

local gateway, ca_file, nclients, topics = nil, nil, 2, {}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--gateway" then gateway = arg[i + 1]; i = i + 1
  elseif a == "--ca-file" then ca_file = arg[i + 1]; i = i + 1
  elseif a == "--clients" then nclients = tonumber(arg[i + 1]); i = i + 1
  else topics[#topics + 1] = a end
  i = i + 1
end
if #topics == 0 then topics = { "v2.users.example.presence" } end

local function gateway_table(url)
  if not url then return nil end
  local proto, host, port = url:match("^(https?)://([^:/]+):?(%d*)")
  return { protocol = proto, host = host, port = tonumber(port) }
end

local loop = cqueues.new()
local clients, events, running = {}, 0, true
for n = 1, nclients do
  local name = "cqueues-" .. n
  local c = notify.new {
    name = name,
    gateway = gateway_table(gateway),
    tls = ca_file and { ca_file = ca_file } or nil,
    topics = topics,
    on_event = function(ev)
      events = events + 1
      io.stdout:write(name, " ", ev.topic, " ", require("cjson").encode(ev.body), "\n")
      io.stdout:flush()
    end,
    on_health = function(h)
      io.stderr:write(name, " ", notify.format(h), "\n")
    end,
  }
  clients[n] = c
  c:start()
  loop:wrap(function()
    -- cqueues.poll takes a plain descriptor number; 1 s timeout so a stop is noticed
    while running do
      if cqueues.poll({ pollfd = c:fd(), events = "r" }, 1) then c:poll(0) end
    end
  end)
end

-- Signals: blocked for the process, taken from a signalfd (cqueues.signal) in the loop.
signal.block(signal.SIGINT, signal.SIGTERM)
loop:wrap(function()
  local sig = signal.listen(signal.SIGINT, signal.SIGTERM)
  local n = sig:wait()
  running = false
  for _, c in ipairs(clients) do c:close() end
  io.stdout:write("closed clients=", #clients, " events=", events, " on ",
    n == signal.SIGINT and "sigint" or "sigterm", "\n")
  io.stdout:flush()
end)

while not loop:empty() do
  local ok, err = loop:step()
  if not ok then error(err) end
end
