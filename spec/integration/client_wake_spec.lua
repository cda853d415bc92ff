-- The wake sockets (issue 10): client:wake_socket() and notify.bell(path). A peer on a unix-domain
-- socket (what an OpenResty cosocket can wait on; an eventfd it cannot) gets a byte when items
-- start waiting or the bell rings, and nothing otherwise; many peers, a peer that never reads,
-- the cap on peers, EOF on close, fork. Lua has no sockets here: spec/support/testsock.c is a
-- test-only module that connects and waits with poll().
local emulator = require "support.emulator"
local wait = require "support.wait"
local notify = require "genesys.notify"
local ts = require "gn_testsock"
local tf = require "gn_testfork"

local T = "v2.users.wake-1.presence"
local now_ms = wait.now_ms
local QUIET_MS = 300 -- how long "nothing arrives" is watched for

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local function exists(path) return sh("test -e '" .. path .. "' && echo y") == "y" end

local function tmpdir()
  local d = sh("mktemp -d")
  assert(d ~= "")
  return d
end

-- Waits for bytes on fd (true), or fails the test after timeout_ms.
local function woken(fd, timeout_ms)
  local r = ts.wait(fd, math.floor((timeout_ms or 5000) * wait.slow()))
  return type(r) == "number" and r > 0, r
end

local function connect(path)
  local fd, err = ts.connect(path)
  assert(fd, "connect " .. path .. ": " .. tostring(err))
  return fd
end

-- Drains everything waiting; returns the items.
local function drain_all(client)
  local all = {}
  repeat
    local got = client:drain(64)
    for _, it in ipairs(got) do all[#all + 1] = it end
  until #got < 64
  return all
end

local function publish(emu, n)
  assert.equals(200, (emu:admin("POST", "publish", { topic = T, eventBody = { n = n } })))
end

describe("client:wake_socket()", function()
  local emu
  setup(function() emu = emulator.start { tls = true, heartbeat_ms = 30000 } end)
  teardown(function() if emu then emu:stop() end end)

  local function new_client()
    local client = notify.new(wait.config(emu, nil, { topics = { T } }))
    client:start()
    return client
  end

  -- Reads and drains (as an OpenResty reader would) until a "connected" health item came.
  local function until_connected(client, fd)
    local deadline = now_ms() + 10000 * wait.slow()
    while now_ms() < deadline do
      local ok = woken(fd, 1000)
      if ok then
        for _, it in ipairs(drain_all(client)) do
          if it.kind == "connected" then return it end
        end
      end
    end
    error("the client did not connect")
  end

  it("wakes a peer when items start waiting, and not while nothing arrives", function()
    local client = new_client()
    finally(function() client:close() end)
    local path = client:wake_socket()
    assert.equals(path, client:wake_socket()) -- made once
    assert.truthy(path:find("/gn%-notify%-[^/]+/wake%.sock$"), path)
    assert.equals("700", sh("stat -c %a '" .. path:match("^(.*)/") .. "'"))
    local fd = connect(path)
    finally(function() ts.close(fd) end)
    until_connected(client, fd)
    -- a quiet stream (30 s heartbeats): drained, nothing more comes
    drain_all(client)
    assert.equals(0, ts.wait(fd, QUIET_MS))
    for i = 1, 20 do
      publish(emu, i)
      local ok, r = woken(fd, 5000)
      assert(ok, "peer not woken for event " .. i .. ": " .. tostring(r))
      local items = drain_all(client)
      -- the byte came before the event was taken: it is there now, or was taken by an earlier
      -- drain of this loop (never: each drain above left nothing)
      assert.equals(1, #items)
      assert.equals(i, items[1].body.n)
    end
    assert.equals(0, ts.wait(fd, QUIET_MS))
    assert.equals(1, client:metrics().wake_peers)
  end)

  it("wakes every peer, and a peer that connects late gets a byte for what already waits", function()
    local client = new_client()
    finally(function() client:close() end)
    local path = client:wake_socket()
    local first = connect(path)
    finally(function() ts.close(first) end)
    until_connected(client, first)
    drain_all(client)
    local fds = {}
    finally(function() for _, fd in ipairs(fds) do ts.close(fd) end end)
    for i = 1, 50 do
      fds[i] = connect(path)
      assert.truthy(woken(fds[i], 5000)) -- its first byte: drain what may be waiting
    end
    assert.truthy(emulator.wait_until(function() return client:metrics().wake_peers == 51 end, 5))
    for _, fd in ipairs(fds) do assert.equals(0, ts.wait(fd, 0)) end
    publish(emu, 1)
    for i, fd in ipairs(fds) do assert(woken(fd, 5000), "peer " .. i .. " not woken") end
    assert.truthy(woken(first, 5000))
    -- items already waiting when a peer connects: its first byte is the wake-up
    publish(emu, 2)
    assert.truthy(emulator.wait_until(function() return client:metrics().queued_events == 2 end, 10))
    local late = connect(path)
    finally(function() ts.close(late) end)
    assert.truthy(woken(late, 5000))
    assert.equals(2, #drain_all(client))
  end)

  it("close(): peers see EOF, the socket and its directory are removed", function()
    local client = new_client()
    local path = client:wake_socket()
    local fd = connect(path)
    finally(function() ts.close(fd) end)
    until_connected(client, fd)
    client:close()
    assert.equals("eof", ts.wait(fd, 5000 * wait.slow()))
    assert.is_false(exists(path))
    assert.is_false(exists(path:match("^(.*)/")))
    local ok, err = pcall(client.wake_socket, client)
    assert.is_false(ok)
    assert.truthy(err:find("the client is closed", 1, true), err)
  end)
end)

describe("notify.bell(path)", function()
  local dir
  setup(function() dir = tmpdir() end)
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  -- Rings and waits until the service thread has served it (stats().rings went up).
  local function ring_served(bell)
    local before = bell:stats().rings
    bell:ring()
    assert.truthy(emulator.wait_until(function() return bell:stats().rings > before end, 5))
  end

  it("rings every peer, and only when rung", function()
    local bell = notify.bell(dir .. "/b1.sock")
    finally(function() bell:close() end)
    assert.equals(dir .. "/b1.sock", bell:path())
    local fds = {}
    finally(function() for _, fd in ipairs(fds) do ts.close(fd) end end)
    for i = 1, 20 do
      fds[i] = connect(bell:path())
      assert.truthy(woken(fds[i], 5000)) -- the byte on connect
    end
    for _, fd in ipairs(fds) do assert.equals(0, ts.wait(fd, 0)) end
    assert.equals(0, ts.wait(fds[1], QUIET_MS))
    for round = 1, 3 do
      bell:ring()
      for i, fd in ipairs(fds) do assert(woken(fd, 5000), "round " .. round .. " peer " .. i) end
    end
    -- rings coalesce: 100 rings at once are at most 100 bytes to a peer, at least 1
    for _ = 1, 100 do bell:ring() end
    local ok, n = woken(fds[1], 5000)
    assert.truthy(ok)
    assert.is_true(n >= 1 and n <= 100, n)
    local st = bell:stats()
    assert.equals(20, st.peers)
    assert.equals(0, st.refused)
  end)

  it("a peer that never reads is skipped, never blocks the others, and holds nothing", function()
    local bell = notify.bell(dir .. "/lazy.sock")
    finally(function() bell:close() end)
    local lazy = connect(bell:path())
    local busy = connect(bell:path())
    finally(function() ts.close(lazy); ts.close(busy) end)
    assert.truthy(woken(busy, 5000))
    -- each ring served on its own: one byte per ring to the lazy peer, until its buffer is full
    local rounds = 0
    while bell:stats().skipped == 0 do
      rounds = rounds + 1
      assert(rounds <= 20000, "the lazy peer's buffer never filled")
      ring_served(bell)
      assert(woken(busy, 5000), "the busy peer was not woken at ring " .. rounds)
    end
    -- and it goes on: more rings, the busy peer still woken, the lazy one still connected
    for i = 1, 50 do
      ring_served(bell)
      assert(woken(busy, 5000), "not woken after the lazy peer filled up, ring " .. i)
    end
    local st = bell:stats()
    assert.is_true(st.skipped >= 50, st.skipped)
    assert.equals(2, st.peers)
    -- what the lazy peer has is what the kernel buffered (one byte a ring, bounded)
    local got = ts.wait(lazy, 0)
    assert.is_true(type(got) == "number" and got > 0 and got <= rounds, tostring(got))
  end)

  it("takes at most 1024 peers: one more gets EOF at once and is counted", function()
    local bell = notify.bell(dir .. "/cap.sock")
    local fds = {}
    -- (one finally: busted keeps only the last one of a test)
    finally(function()
      for _, fd in pairs(fds) do ts.close(fd) end
      bell:close()
    end)
    for i = 1, 1024 do fds[i] = connect(bell:path()) end
    assert.truthy(emulator.wait_until(function() return bell:stats().accepted == 1024 end, 10))
    local extra = connect(bell:path()) -- the kernel accepts it; the bell closes it
    fds.extra = extra
    assert.equals("eof", ts.wait(extra, 5000 * wait.slow()))
    local st = bell:stats()
    assert.equals(1024, st.peers)
    assert.equals(1, st.refused)
    -- a peer leaves: there is room again
    ts.close(fds[1]); fds[1] = nil
    assert.truthy(emulator.wait_until(function() return bell:stats().peers == 1023 end, 5))
    local again = connect(bell:path())
    fds.again = again
    assert.truthy(woken(again, 5000))
    assert.equals(1024, bell:stats().peers)
  end)

  it("close(): peers see EOF and the socket file is removed; ring after close raises", function()
    local path = dir .. "/eof.sock"
    local bell = notify.bell(path)
    local fd = connect(path)
    finally(function() ts.close(fd) end)
    assert.truthy(woken(fd, 5000))
    bell:close()
    bell:close() -- idempotent
    assert.equals("eof", ts.wait(fd, 5000 * wait.slow()))
    assert.is_false(exists(path))
    local ok, err = pcall(bell.ring, bell)
    assert.is_false(ok)
    assert.truthy(err:find("the bell is closed", 1, true), err)
  end)

  it("replaces a stale socket file, and closing an old bell leaves a newer one's file", function()
    local path = dir .. "/stale.sock"
    ts.stale(path)
    assert.is_true(exists(path))
    assert.is_nil(ts.connect(path)) -- nobody listens there
    local old = notify.bell(path)
    local fd = connect(path)
    finally(function() ts.close(fd) end)
    assert.truthy(woken(fd, 5000))
    local new = notify.bell(path) -- replaces old's file
    finally(function() new:close() end)
    old:close()
    assert.is_true(exists(path))
    local fd2 = connect(path)
    finally(function() ts.close(fd2) end)
    assert.truthy(woken(fd2, 5000))
    new:ring()
    assert.truthy(woken(fd2, 5000))
  end)

  it("refuses a bad path, naming path", function()
    local file = dir .. "/regular"
    local f = assert(io.open(file, "w")); f:write("x"); f:close()
    local cases = {
      { file, 'path: expected a free path or a stale socket file, got a regular file at "' .. file .. '"' },
      { dir, "path: expected a free path or a stale socket file, got a directory" },
      { dir .. "/" .. string.rep("x", 120), "path: expected a unix socket path of 1 to 107 bytes, got" },
      { dir .. "/no/such/dir.sock",
        'path: cannot listen at "' .. dir .. '/no/such/dir.sock" (bind: No such file or directory)' },
      { "", 'path: expected a file path for a unix socket, got ""' },
      { nil, "path: expected a file path for a unix socket, got nil" },
      { 42, "path: expected a file path for a unix socket, got 42" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(notify.bell, c[1])
      assert.is_false(ok)
      assert.truthy(err:find("genesys.notify: " .. c[2], 1, true), err)
    end
    assert.equals("x", wait.read_file(file)) -- left alone
  end)

  it("fork: the child's copies are closed (peers see EOF when the parent closes), and it refuses",
    function()
    local path = dir .. "/fork.sock"
    local bell = notify.bell(path)
    local fd = connect(path)
    finally(function() ts.close(fd) end)
    assert.truthy(woken(fd, 5000))
    local gate = dir .. "/gate"
    local out = dir .. "/child.out"
    local pid = tf.fork()
    if pid == 0 then
      local ok, err = pcall(bell.ring, bell)
      local ok2 = pcall(bell.close, bell) -- returns at once
      local f = io.open(out, "w")
      f:write(tostring(ok), "\n", tostring(err), "\n", tostring(ok2), "\n")
      f:close()
      -- stays alive until the parent has checked the EOF
      local deadline = now_ms() + 30000
      while not io.open(gate) and now_ms() < deadline do os.execute("sleep 0.02") end
      tf.exit(0)
    end
    finally(function()
      local g = io.open(gate, "w"); g:close()
      tf.wait(pid, 30000)
    end)
    assert.truthy(emulator.wait_until(function() return wait.read_file(out) ~= nil and
      select(2, wait.read_file(out):gsub("\n", "")) == 3 end, 10))
    local lines = {}
    for l in wait.read_file(out):gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equals("false", lines[1])
    assert.truthy(lines[2]:find("this bell was created in process " .. tf.getpid() ..
      ", before a fork()", 1, true), lines[2])
    assert.equals("true", lines[3])
    -- the parent's bell is unaffected
    bell:ring()
    assert.truthy(woken(fd, 5000))
    assert.truthy(exists(path)) -- the child's close() did not remove the parent's file
    -- the child is alive and holds no copy: the parent's close gives EOF now
    bell:close()
    assert.equals("eof", ts.wait(fd, 5000 * wait.slow()))
  end)
end)
