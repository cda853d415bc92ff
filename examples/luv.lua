-- Several genesys.notify clients inside one luv (libuv) event loop, on client:fd().
--
--   lua5.4 examples/luv.lua [--gateway https://HOST:PORT] [--ca-file FILE] [--clients N] [TOPIC...]
--
-- Credentials and region come from GENESYSCLOUD_OAUTHCLIENT_ID / _SECRET / _REGION (--gateway
-- instead of a region: the bundled emulator, say). Each client's fd() is an eventfd that is
-- readable while items wait: a luv poll handle watches it and calls client:poll(0), which runs
-- the callbacks on this thread. Events go to stdout, health items to stderr, one line each.
-- SIGINT/SIGTERM close every client and end the loop; exit status 0.
local uv = require "luv"
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

local clients, polls, events = {}, {}, 0
for n = 1, nclients do
  local name = "luv-" .. n
  clients[n] = notify.new {
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
end

local function shutdown(signame)
  for n, p in ipairs(polls) do
    p:stop()
    p:close()
    clients[n]:close() -- outside the client's callbacks: here we are in a signal handler
  end
  io.stdout:write("closed clients=", #clients, " events=", events, " on ", signame, "\n")
  io.stdout:flush()
  uv.stop()
end

for n, c in ipairs(clients) do
  local p = uv.new_poll(c:fd())
  p:start("r", function(err)
    assert(not err, err)
    c:poll(0) -- runs what waits (at most 4,096 items; the fd stays readable if more do)
  end)
  polls[n] = p
  c:start()
end

local signals = {}
for _, name in ipairs { "sigint", "sigterm" } do
  local s = uv.new_signal()
  s:start(name, function()
    for _, x in ipairs(signals) do x:stop(); x:close() end
    shutdown(name)
  end)
  signals[#signals + 1] = s
end

uv.run()
