-- A subscribe handler for spec/integration/resty_spec.lua (loaded by the example conf through
-- GN_HANDLER_MODULE): it yields (ngx.sleep(0)) and makes a cosocket call (TLS to the emulator,
-- an admin GET) for every event, then logs what it saw, so the spec can read the error log.
local _M = {}

function _M.init(resty)
  local host, port = (os.getenv("GN_GATEWAY") or ""):match("^(.-):(%d+)$")
  resty.subscribe(function(ev)
    ngx.sleep(0)
    local sock = ngx.socket.tcp()
    sock:settimeout(5000)
    local ok, err = sock:connect("127.0.0.1", tonumber(port))
    local status
    if ok then ok, err = sock:sslhandshake(nil, host, false) end
    if ok then ok, err = sock:send("GET /__emulator/channels HTTP/1.1\r\nHost: " .. host ..
      "\r\nConnection: close\r\n\r\n") end
    if ok then
      local line
      line, err = sock:receive("*l")
      status = line and line:match("^HTTP/1%.1 (%d+)")
    end
    sock:close()
    ngx.log(ngx.NOTICE, "hook: seq=", ev.seq, " topic=", ev.topic, " slept, cosocket status=",
      tostring(status), " err=", tostring(err), " worker=", ngx.worker.pid())
  end)
end

return _M
