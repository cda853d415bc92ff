-- lua-http (Debian lua-http, cqueues) + lua-cjson as a peer for make bench-peers, under Lua 5.1
-- or LuaJIT (its dependencies are packaged for 5.1 only). Env and output lines: see run.lua.
local cqueues = require "cqueues"
local request = require "http.request"
local websocket = require "http.websocket"
local http_tls = require "http.tls"
local cjson = require "cjson"

local base = os.getenv("GN_BASE")
local topic = os.getenv("GN_TOPIC")
local COUNT = tonumber(os.getenv("GN_COUNT")) or 0
local CONNS = tonumber(os.getenv("GN_CONNS")) or 1

local function out(s) io.stdout:write(s, "\n"); io.stdout:flush() end
local function now() return cqueues.monotime() * 1000 end

local ctx = http_tls.new_client_context()
ctx:getStore():add(os.getenv("GN_CA"))

local function b64(s)
  local b = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((s:gsub(".", function(x)
    local r, byte = "", x:byte()
    for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

local function req(method, path, headers, body)
  local r = request.new_from_uri(base .. path)
  r.ctx = ctx
  r.headers:upsert(":method", method)
  for k, v in pairs(headers) do r.headers:upsert(k, v) end
  r:set_body(body)
  local h, st = assert(r:go(10))
  local text = assert(st:get_body_as_string())
  if h:get(":status") ~= "200" then error(method .. " " .. path .. ": HTTP " .. h:get(":status")) end
  return cjson.decode(text)
end

local function channel(token, t)
  local auth = { authorization = "Bearer " .. token, ["content-type"] = "application/json" }
  local ch = req("POST", "/api/v2/notifications/channels", auth, "")
  req("PUT", "/api/v2/notifications/channels/" .. ch.id .. "/subscriptions", auth,
    cjson.encode { { id = t } })
  return ch
end

-- lua-http 0.4's read_frame reads a frame's payload with timeout 0 (websocket.lua:282), so a frame
-- whose payload is not yet buffered (split over TLS records: every burst) raises "Connection
-- timed out". The bench lets that read wait instead (header reads keep their deadline).
local patched
local function patch(sock)
  if patched then return end
  patched = true
  local methods = debug.getmetatable(sock).__index
  local xread = methods.xread
  methods.xread = function(self, what, mode, timeout)
    if timeout == 0 and mode == "b" then timeout = 60 end
    return xread(self, what, mode, timeout)
  end
end

local function stream(ch, t, counting, opened)
  local closed_at
  while true do
    local ws = websocket.new_from_uri(ch.connectUri)
    ws.request.ctx = ctx
    local ok = ws:connect(10)
    if ok then
      patch(ws.socket)
      if closed_at then out(string.format("reconnect %.3f", now() - closed_at)) end
      if opened then opened(); opened = nil end
      local n, bad, first = 0, false, 0
      while true do
        local data, opcode = ws:receive()
        if not data then break end
        if counting and opcode == "text" then
          local m = cjson.decode(data)
          if m.topicName == t then
            local seq = m.eventBody.sequence
            if seq == 1 then n, bad, first = 0, false, now() end
            n = n + 1
            if seq ~= n then bad = true end
            if seq == COUNT then
              out(string.format("done %d %d %.3f", n, (bad or n ~= COUNT) and 0 or 1, now() - first))
            end
          end
        end
      end
      pcall(ws.close, ws)
    end
    closed_at = now()
  end
end

local cq = cqueues.new()
cq:wrap(function()
  local tok = req("POST", "/oauth/token", { authorization = "Basic " .. b64(os.getenv("GN_CRED")),
    ["content-type"] = "application/x-www-form-urlencoded" }, "grant_type=client_credentials")
    .access_token
  local first = channel(tok, topic)
  local cond = require "cqueues.condition".new()
  local is_open = false
  cq:wrap(stream, first, topic, CONNS == 1, function() is_open = true; cond:signal() end)
  while not is_open do cond:wait() end
  out("open " .. first.id)
  if CONNS > 1 then
    cqueues.sleep(1)
    out("base")
    cqueues.sleep(1)
    for i = 2, CONNS do
      local t = topic:gsub("%.presence$", "-" .. i .. ".presence")
      local ch = channel(tok, t)
      local o = false
      cq:wrap(stream, ch, t, false, function() o = true; cond:signal() end)
      while not o do cond:wait() end
    end
    out("all")
  end
end)
local ok, err = cq:loop()
if not ok then out("error " .. tostring(err)); os.exit(1) end
