-- Runs bin/genesys-notify as a separate process for the CLI specs (cli_spec, cli_stop_spec): under
-- the interpreter of this run (lua5.4 or luajit), or $(BINDIR)/lua_host in sanitizer builds
-- (GN_BUILD points it at the matching modules). Output, exit status and pid go to files.
--
--   local C = require "support.cli"
--   local cli = C.spawn(args, env)   -- cli:out(), cli:err(), cli:health(kind), cli:events(),
--                                    -- cli:signal("TERM"), cli:wait(ms) -> rc, cli:cleanup()
--   local rc, out, err = C.run(args, env, timeout_s)
--   C.defer(fn) / C.run_deferred() (after_each), C.wait_for(fn, ms), C.capture(cmd), C.shq(s),
--   C.read_file(p), C.write_file(p, s),
--   C.tmpdir(), C.env_prefix(env), C.argv(args), C.interpreter(), C.now_ms(), C.SLOW
local emulator = require "support.emulator"
local cjson = require "cjson.safe"
local notify = require "genesys.notify"

local build = require "support.build"
local SAN = build.san
local SLOW = build.slow

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local read_file = require("support.wait").read_file

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function capture(cmd)
  local p = assert(io.popen("env -u LD_PRELOAD sh -c " .. shq(cmd), "r"))
  local s = p:read("*a")
  p:close()
  return s
end

local interpreter = build.interpreter

local function tmpdir()
  local d = capture("mktemp -d /tmp/gn-cli.XXXXXX"):gsub("%s+$", "")
  assert(d ~= "")
  return d
end

local function now_ms() return notify.now_ms() end

-- Waits for fn() to be truthy (polling every 20 ms); returns its value or nil at the deadline.
local function wait_for(fn, timeout_ms)
  local deadline = now_ms() + (timeout_ms or 10000) * SLOW
  while true do
    local v = fn()
    if v then return v end
    if now_ms() > deadline then return nil end
    emulator.sleep(0.02)
  end
end

local function env_prefix(env)
  local parts = { "env -u LD_PRELOAD" }
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. shq(v) end
  return table.concat(parts, " ")
end

local function argv(args)
  local parts = {}
  for _, a in ipairs(args) do parts[#parts + 1] = shq(a) end
  return table.concat(parts, " ")
end

local Cli = {}
Cli.__index = Cli

-- Starts the CLI in the background; its stdout, stderr and exit status go to files.
local function spawn(args, env)
  local self = setmetatable({ dir = tmpdir() }, Cli)
  local d = self.dir
  local inner = env_prefix(env) .. " " .. shq(interpreter()) .. " bin/genesys-notify " .. argv(args) ..
    " >" .. shq(d .. "/out") .. " 2>" .. shq(d .. "/err") .. " </dev/null & echo $! >" ..
    shq(d .. "/pid.tmp") .. "; mv " .. shq(d .. "/pid.tmp") .. " " .. shq(d .. "/pid") ..
    "; wait $!; echo $? >" .. shq(d .. "/rc.tmp") .. "; mv " .. shq(d .. "/rc.tmp") .. " " .. shq(d .. "/rc")
  os.execute("env -u LD_PRELOAD sh -c " .. shq(inner) .. " >/dev/null 2>&1 &")
  self.pid = wait_for(function() return tonumber((read_file(d .. "/pid") or ""):match("%d+")) end, 5000)
  assert(self.pid, "the CLI did not start")
  return self
end

function Cli:out() return read_file(self.dir .. "/out") or "" end
function Cli:err() return read_file(self.dir .. "/err") or "" end
function Cli:signal(name) os.execute("kill -" .. name .. " " .. self.pid) end
function Cli:wait(timeout_ms)
  local rc = wait_for(function() return tonumber(read_file(self.dir .. "/rc") or "") end, timeout_ms or 20000)
  if not rc then
    self:signal("KILL")
    error("the CLI did not exit; stderr:\n" .. self:err())
  end
  self.rc = rc
  return rc
end
-- Health lines of a --health json run, decoded.
function Cli:health(kind)
  local out = {}
  for line in self:err():gmatch("[^\n]+") do
    local h = cjson.decode(line)
    if type(h) == "table" and (not kind or h.kind == kind) then out[#out + 1] = h end
  end
  return out
end
function Cli:events()
  local out = {}
  for line in self:out():gmatch("[^\n]+") do out[#out + 1] = assert(cjson.decode(line), line) end
  return out
end
-- A sanitizer report in a command's stderr fails the spec, whatever the exit status.
local function no_sanitizer_report(err)
  for _, pat in ipairs { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                         "runtime error:" } do
    assert(not err:find(pat, 1, true), "sanitizer report:\n" .. err)
  end
end
function Cli:cleanup()
  if not self.rc then self:signal("KILL"); pcall(self.wait, self, 5000) end
  local err = self:err() -- read before the folder goes
  os.execute("rm -rf " .. shq(self.dir))
  no_sanitizer_report(err)
end

-- Runs the CLI to its end. Returns rc, stdout, stderr.
local function run(args, env, timeout_s)
  local d = tmpdir()
  local cmd = env_prefix(env) .. " timeout " .. (timeout_s or 30) * SLOW .. " " .. shq(interpreter()) ..
    " bin/genesys-notify " .. argv(args) .. " >" .. shq(d .. "/out") .. " 2>" .. shq(d .. "/err") ..
    " </dev/null; echo $?"
  local rc = tonumber((capture(cmd):gsub("%s+$", "")))
  local out, err = read_file(d .. "/out") or "", read_file(d .. "/err") or ""
  os.execute("rm -rf " .. shq(d))
  return rc, out, err
end

-- Cleanups of the running test, run after it whatever happened (busted keeps only one finally
-- per test, and a test here may start a CLI and other processes): defer(fn) in the test,
-- run_deferred() in after_each, last in first out.
local cleanups = {}
local function defer(fn) cleanups[#cleanups + 1] = fn end
local function run_deferred()
  for i = #cleanups, 1, -1 do
    local fn = cleanups[i]
    cleanups[i] = nil
    fn()
  end
end

return { spawn = spawn, no_sanitizer_report = no_sanitizer_report, defer = defer,
  run_deferred = run_deferred, run = run, wait_for = wait_for,
  capture = capture, shq = shq,
  read_file = read_file, write_file = write_file, tmpdir = tmpdir, env_prefix = env_prefix,
  argv = argv, interpreter = interpreter, now_ms = now_ms, SLOW = SLOW, SAN = SAN }
