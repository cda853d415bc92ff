--- bench/resty_burst_ngx.lua: the nginx side of bench/resty_burst.lua (make bench-resty's burst
-- table). Loaded by nginx workers (lua-nginx-module, LuaJIT). Modes:
--   resty: genesys.notify.resty in every worker (default settings), a subscribe handler that
--     counts the burst (ev.body.sequence, the body decoded by the module);
--   peer: lua-resty-websocket + lua-cjson in one worker, what an OpenResty user writes instead:
--     OAuth, a channel and its subscription over cosocket HTTPS, then the WebSocket (wss, the
--     emulator's CA through lua_ssl_trusted_certificate), each text frame decoded with cjson.
-- Each worker writes "done:PID:K" = "N OK MS" (K: its K-th burst) into the bench dict when the
-- last event of the burst
-- (sequence COUNT) arrives: N events since sequence 1, OK 1 when every one came in order, MS from
-- the first to the last.
local cjson = require "cjson.safe"

local _M = {}
local O, D

local function now_ms()
  ngx.update_time()
  return ngx.now() * 1000
end

-- The burst counter: call with each event's sequence number.
local function counter()
  local n, bad, first, bursts = 0, false, 0, 0
  return function(seq)
    if seq == 1 then n, bad, first = 0, false, now_ms() end
    n = n + 1
    if seq ~= n then bad = true end
    if seq == O.count then
      bursts = bursts + 1
      D:set("done:" .. ngx.worker.pid() .. ":" .. bursts, string.format("%d %d %.3f", n,
        (bad or n ~= O.count) and 0 or 1, now_ms() - first))
    end
  end
end

-- One HTTPS request to the emulator (Connection: close); returns the decoded JSON body.
local function request(method, path, headers, body)
  local sock = ngx.socket.tcp()
  sock:settimeout(10000)
  assert(sock:connect("127.0.0.1", O.port))
  assert(sock:sslhandshake(nil, "localhost", true))
  local h = { method .. " " .. path .. " HTTP/1.1", "Host: localhost:" .. O.port, "Connection: close",
    "Content-Length: " .. #(body or "") }
  for k, v in pairs(headers) do h[#h + 1] = k .. ": " .. v end
  assert(sock:send(table.concat(h, "\r\n") .. "\r\n\r\n" .. (body or "")))
  local status = assert(sock:receive("*l"))
  local len
  while true do
    local l = assert(sock:receive("*l"))
    if l == "" then break end
    local v = l:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
    if v then len = tonumber(v) end
  end
  local data = len and assert(sock:receive(len)) or assert(sock:receive("*a"))
  sock:close()
  assert(status:find(" 200", 1, true), method .. " " .. path .. ": " .. status)
  return cjson.decode(data)
end

local function peer()
  local ws_client = require "resty.websocket.client"
  local tok = request("POST", "/oauth/token", {
    Authorization = "Basic " .. ngx.encode_base64("test-id:test-secret"),
    ["Content-Type"] = "application/x-www-form-urlencoded" }, "grant_type=client_credentials")
  local auth = { Authorization = "Bearer " .. tok.access_token, ["Content-Type"] = "application/json" }
  local ch = request("POST", "/api/v2/notifications/channels", auth, "")
  request("PUT", "/api/v2/notifications/channels/" .. ch.id .. "/subscriptions", auth,
    cjson.encode { { id = O.topic } })
  local wb = ws_client:new { timeout = 3600000, max_payload_len = 1048576 }
  -- no resolver in this conf: the address, with the name for SNI and the certificate check
  local uri = ch.connectUri:gsub("^wss://localhost:", "wss://127.0.0.1:")
  local ok, err = wb:connect(uri, { ssl_verify = true, server_name = "localhost" })
  if not ok then
    ngx.log(ngx.ERR, "bench peer: connect: ", err)
    return
  end
  D:set("open", ngx.worker.pid())
  local count = counter()
  while true do
    local data, typ, rerr = wb:recv_frame()
    if not data then
      if rerr ~= "timeout" then ngx.log(ngx.ERR, "bench peer: ", rerr) return end
    elseif typ == "text" then
      local m = cjson.decode(data)
      if m and m.topicName == O.topic then count(m.eventBody.sequence) end
    elseif typ == "ping" then
      wb:send_pong(data)
    elseif typ == "close" then
      return
    end
  end
end

--- init_worker_by_lua: o = { mode = "resty" | "peer", port, ca, topic, count, ring_size }
function _M.init_worker(o)
  O, D = o, ngx.shared.bench
  if o.jitp then
    -- BENCH_JITP (a folder): LuaJIT's own profiler per worker, for 25 s, into FOLDER/p-PID.txt
    -- (BENCH_JITP_MODE: jit.p's mode, "v" for the share of each VM state: GC, compiled, C...)
    -- (jit.p: the Lua lines and the C functions they call, which perf cannot name in LuaJIT)
    local pid = ngx.worker.pid()
    require("jit.p").start(o.jitp_mode or "Fl3i1m1", o.jitp .. "/p-" .. pid .. ".txt")
    ngx.timer.at(25, function() require("jit.p").stop() end)
  end
  if o.mode == "resty" then
    local resty = require "genesys.notify.resty"
    resty.start { dict = "genesys_notify",
      gateway = { host = "localhost", port = o.port, protocol = "https" },
      client_id = "test-id", client_secret = "test-secret", tls = { ca_file = o.ca },
      topics = { o.topic }, ring_size = o.ring_size }
    local count = counter()
    resty.subscribe(function(ev) count(ev.body.sequence) end)
  else
    ngx.timer.at(0, function(premature)
      if premature then return end
      local ok, err = pcall(peer)
      if not ok then ngx.log(ngx.ERR, "bench peer: ", err) end
    end)
  end
end

--- content_by_lua for /state: the bench dict and (resty) the holder's state, as JSON.
function _M.state()
  local out = {}
  for _, k in ipairs(D:get_keys(0)) do out[k] = D:get(k) end
  if O.mode == "resty" then
    local st = require("genesys.notify.resty").status()
    out.state, out.holder_pid = st.state, st.holder_pid
    local m = st.metrics or {}
    out.pauses, out.paused_ms, out.reader_stalls = m.pauses, m.paused_ms, st.reader_stalls
    out.full_waits, out.full_ms = st.ring.full_waits, st.ring.full_ms
    out.missed = 0
    for _, w in ipairs(st.workers) do out.missed = out.missed + w.missed end
  end
  ngx.say(cjson.encode(out))
end

return _M
