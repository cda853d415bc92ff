-- A test server we run as a separate process (hostile.lua's misbehaving gateway, foreign.lua's
-- WebSocket servers we did not write): started on a free port (--port 0; the server prints
-- {"listening":true,"port":N} as its first line), plain or TLS (the emulator's test CA), its
-- output, errors and log in a private directory.
--
--   local server = require "support.server"
--   local s = server.spawn{ name = "hostile server", prefix = "gn-hostile", args = {...},
--     tls = true, log = true, start_s = 10 }   -- args get --log DIR/log and --tls CERT KEY
--   s.dir, s.pid, s.port, s.ca_file
--   server.lines(s.dir .. "/log")  -- one decoded JSON table per line
--   server.stop(s)                 -- TERM, stderr kept in s.stderr, the directory removed
local cjson = require "cjson.safe"
local emulator = require "support.emulator"
local wait = require "support.wait"

local _M = {}

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function sh(cmd)
  local ok = os.execute("exec env -u LD_PRELOAD sh -c " .. shq(cmd))
  return ok == true or ok == 0
end
local function capture(cmd)
  local p = assert(io.popen("exec env -u LD_PRELOAD sh -c " .. shq(cmd), "r"))
  local s = p:read("*a")
  p:close()
  return s
end
_M.shq, _M.sh, _M.capture = shq, sh, capture

--- Starts o.args (a list: the command and its arguments) and waits up to o.start_s seconds
-- for its ready line. Returns {dir, pid, port, ca_file}; raises (level 3: the spec's line)
-- naming o.name with the server's stderr when it does not start.
function _M.spawn(o)
  local s = { tls = o.tls and true or false }
  s.dir = capture("mktemp -d /tmp/" .. o.prefix .. ".XXXXXX"):gsub("%s+$", "")
  local args = {}
  for i, a in ipairs(o.args) do args[i] = a end
  args[#args + 1] = "--log"; args[#args + 1] = s.dir .. "/log"
  if s.tls then
    local ca, cert, key = emulator.certs()
    s.ca_file = ca
    args[#args + 1] = "--tls"; args[#args + 1] = cert; args[#args + 1] = key
  end
  local parts = {}
  for _, a in ipairs(args) do parts[#parts + 1] = shq(a) end
  local d = s.dir
  assert(sh(table.concat(parts, " ") .. " >" .. shq(d .. "/out") .. " 2>" .. shq(d .. "/err") ..
    " </dev/null & echo $! >" .. shq(d .. "/pid")))
  local deadline = emulator.now() + (o.start_s or 10)
  local line
  repeat
    emulator.sleep(0.02)
    line = (wait.read_file(d .. "/out") or ""):match("^([^\n]*)\n")
  until line or emulator.now() > deadline
  s.pid = tonumber((wait.read_file(d .. "/pid") or ""):match("%d+") or "")
  local ready = line and cjson.decode(line)
  if not (ready and ready.listening) then
    if s.pid then sh("kill -9 " .. s.pid) end
    error(o.name .. " did not start: " .. (wait.read_file(d .. "/err") or ""), 3)
  end
  s.port = math.floor(ready.port)
  return s
end

--- The lines of the file at path, each decoded as JSON (or {raw = line}).
function _M.lines(path)
  local out = {}
  for l in (wait.read_file(path) or ""):gmatch("[^\n]+") do
    out[#out + 1] = cjson.decode(l) or { raw = l }
  end
  return out
end

--- Ends s (started by spawn): TERM, its stderr kept in s.stderr, its directory removed.
function _M.stop(s)
  if s.pid then
    sh("kill -TERM " .. s.pid .. " 2>/dev/null")
    s.pid = nil
  end
  s.stderr = wait.read_file(s.dir .. "/err") or ""
  sh("rm -rf " .. shq(s.dir))
end

return _M
