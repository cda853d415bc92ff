-- Fleet nodes for the fleet specs (spec/integration/fleet*_spec.lua): each node is a process of
-- its own (spec/support/fleet_node.lua, run with the spec's interpreter) whose stdout the spec
-- reads, even after a kill -9. Also the promise check against the emulator's publish record.
--   local fleet = require "support.fleet"
--   local n = fleet.spawn("holder" | "fanout" | "group", env)   -- env: FLEET_* variables
--   n:out(), n:lease(), n:events(), n:markers(), n:kill9(), n:stop(); fleet.stop_all()
local emulator = require "support.emulator"

local _M = {}

local build = require "support.build"
_M.SLOW = build.slow

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
_M.shq = shq
local interpreter = build.interpreter
local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end
_M.read_file = read_file
local function now_ms()
  local p = io.popen("date +%s%3N")
  local v = tonumber(p:read("*l"))
  p:close()
  return v
end
_M.now_ms = now_ms
local function wait_for(fn, timeout_ms)
  local deadline = now_ms() + timeout_ms * _M.SLOW
  repeat
    local v = fn()
    if v then return v end
    emulator.sleep(0.05)
  until now_ms() > deadline
  return fn()
end
_M.wait_for = wait_for

local Node = {}
Node.__index = Node
local nodes = {}
_M.nodes = nodes

-- wait_for, printing every node's last lines when it fails (what went wrong, in the log)
function _M.expect(fn, timeout_ms, what)
  local v = wait_for(fn, timeout_ms)
  if not v then
    io.stderr:write("\n---- ", what, "\n")
    for _, n in ipairs(nodes) do
      local out = n:out():gsub("M [^\n]*\n", ""):gsub("L [^\n]*\n", ""):gsub("E [^\n]*\n", "")
      io.stderr:write("== ", n.role, " ", n.pid, " ", tostring(n:lease()), "\n", out:sub(-1500),
        n:err():sub(-500), "\n")
    end
  end
  assert(v, what)
  return v
end

function _M.spawn(role, env)
  local dir = io.popen("mktemp -d /tmp/gn-fleet.XXXXXX"):read("*l")
  local root = io.popen("pwd"):read("*l")
  local parts = { "env -u LD_PRELOAD", "LUA_PATH=" .. shq(root .. "/lua/?.lua;;"),
    "LUA_CPATH=" .. shq(os.getenv("GN_BUILD") .. "/?.so;;"), "FLEET_ROLE=" .. role,
    "FLEET_STOP=" .. shq(dir .. "/stop") }
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. shq(v) end
  local cmd = table.concat(parts, " ") .. " " .. shq(interpreter()) .. " " ..
    shq(root .. "/spec/support/fleet_node.lua")
  local inner = cmd .. " >" .. shq(dir .. "/out") .. " 2>" .. shq(dir .. "/err") ..
    " </dev/null & echo $! >" .. shq(dir .. "/pid") .. "; wait $!; echo $? >" .. shq(dir .. "/rc")
  os.execute("sh -c " .. shq(inner) .. " >/dev/null 2>&1 &")
  local n = setmetatable({ dir = dir, role = role }, Node)
  n.pid = wait_for(function() return tonumber(read_file(dir .. "/pid"):match("%d+") or "") end, 10000)
  assert(n.pid, "node did not start")
  nodes[#nodes + 1] = n
  return n
end

function Node:out() return read_file(self.dir .. "/out") end
function Node:err() return read_file(self.dir .. "/err") end
function Node:signal(sig) os.execute("kill -" .. sig .. " " .. self.pid .. " 2>/dev/null") end
function Node:started(timeout_ms)
  return wait_for(function() return self:out():find("S started", 1, true) end, timeout_ms or 10000)
end
function Node:stop()
  if self.done then return end
  self.done = true
  io.open(self.dir .. "/stop", "w"):close()
  self:signal("CONT")
  if not wait_for(function() return read_file(self.dir .. "/rc") ~= "" end, 10000) then
    self:signal("KILL")
  end
end
function Node:kill9()
  self:signal("KILL")
  self.done = true
  wait_for(function() return read_file(self.dir .. "/rc") ~= "" end, 5000)
end
-- The lease state the node last printed ("holder"/"candidate"), its fence, its client state.
function Node:lease()
  local st, fence, cst
  for a, b, c in self:out():gmatch("M (%a+) (%d+) (%a+)[^\n]*\n") do st, fence, cst = a, tonumber(b), c end
  return st, fence, cst
end
-- Its lease value (host:pid:random), once printed.
function Node:value()
  return self:out():match("M %a+ %d+ %a+ (%S+)\n")
end
-- Hands its lease over to the node `to` (client:lease_handover).
function Node:handover(to)
  local f = assert(io.open(self.dir .. "/stop.handover", "wb"))
  f:write(assert(to:value(), "the successor printed no lease value"), "\n")
  f:close()
end
function Node:count(pat)
  local n = 0
  for _ in self:out():gmatch(pat) do n = n + 1 end
  return n
end
-- Events it handled: list of {cid, fence, id, stream, seq} (stream and seq: of a publish stream).
function Node:events()
  local t = {}
  for cid, fence, id, rest in self:out():gmatch("E (%S+) (%d+) (%S+)([^\n]*)\n") do
    local stream, seq = rest:match("^ (%d+) (%d+)")
    t[#t + 1] = { cid = cid, fence = tonumber(fence), id = id, stream = tonumber(stream),
                  seq = tonumber(seq) }
  end
  return t
end
-- The gap markers it got (health "restored"): list of {from, to} in wall-clock ms.
function Node:markers()
  local t = {}
  for line in self:out():gmatch("H restored ([^\n]*)\n") do
    local from, to = tonumber(line:match("deaf_from_ms=(%S+)")), tonumber(line:match("deaf_to_ms=(%S+)"))
    if from and to then t[#t + 1] = { from, to } end
  end
  return t
end

function _M.stop_all()
  for _, n in ipairs(nodes) do n:stop() end
end

-- The nodes' stderr without a sanitizer report (for a teardown's asserts).
function _M.clean_stderr()
  for _, n in ipairs(nodes) do
    assert(not n:err():find("Sanitizer", 1, true), n:err())
    assert(not n:err():find("runtime error", 1, true), n:err())
  end
end

function _M.cleanup()
  for _, n in ipairs(nodes) do os.execute("rm -rf " .. shq(n.dir)) end
  for k in pairs(nodes) do nodes[k] = nil end
end

-- A spec's teardown: stops every node, checks their stderr, stops the emulator and the Redis
-- (either may be nil), removes the nodes' folders.
function _M.teardown(emu, r)
  _M.stop_all()
  _M.clean_stderr()
  if emu then emu:stop() end
  if r then r:stop() end
  _M.cleanup()
end

--- The promise, with the publisher's record: every event of publish stream `stream` (times[k]:
-- when the emulator generated event k) reached every fanout consumer and at least one member of
-- the group, or lies inside a marker that consumer (each member, for the group) got. Returns the
-- number of events lost inside markers (per consumer, summed), and raises naming the first
-- events outside every marker. A consumer still reading (a group member behind the others: the
-- "caught up" waits see one member's progress) is waited for: the same check is made again until
-- it holds or wait_ms (default 15 s, 3x in sanitizer builds) has passed, then the last failure
-- is raised.
function _M.check_promise(times, stream, fanouts, members, wait_ms)
  local deadline = now_ms() + (wait_ms or 15000 * _M.SLOW)
  while true do
    local ok, res = pcall(_M.check_promise_now, times, stream, fanouts, members)
    if ok then return res end
    if now_ms() > deadline then error(res, 2) end
    emulator.sleep(0.2)
  end
end

function _M.check_promise_now(times, stream, fanouts, members)
  local function seen_of(list)
    local seen = {}
    for _, n in ipairs(list) do
      for _, e in ipairs(n:events()) do
        if e.stream == stream then seen[e.seq] = true end
      end
    end
    return seen
  end
  local function inside(t, iv)
    for _, i in ipairs(iv) do if t >= i[1] and t <= i[2] then return true end end
    return false
  end
  local covered = 0
  local function check(label, seen, ivs)
    local outside = {}
    for k, t in ipairs(times) do
      if not seen[k] then
        local ok = true
        for _, iv in ipairs(ivs) do ok = ok and inside(t, iv) end
        if ok then covered = covered + 1 else outside[#outside + 1] = k end
      end
    end
    if #outside > 0 then
      local shown, ivtext = {}, {}
      for i = 1, math.min(#outside, 8) do shown[i] = ("#%d at %d"):format(outside[i], times[outside[i]]) end
      for _, i in ipairs(ivs[1] or {}) do ivtext[#ivtext + 1] = ("[%.0f, %.0f]"):format(i[1], i[2]) end
      error(("%s: %d of %d events lost outside every marker (%s); markers %s"):format(label,
        #outside, #times, table.concat(shown, ", "), table.concat(ivtext, " ")), 0)
    end
  end
  for i, n in ipairs(fanouts) do check("fanout " .. i, seen_of { n }, { n:markers() }) end
  if members and #members > 0 then
    local ivs = {}
    for _, n in ipairs(members) do ivs[#ivs + 1] = n:markers() end
    check("group", seen_of(members), ivs)
  end
  return covered
end

return _M
