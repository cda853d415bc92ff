-- The client against WebSocket servers the project did not write: Python `websockets` (Debian's
-- python3-websockets) and Node `ws` (npm), each misbehaving on purpose, plain and over TLS. The
-- emulator never fragments a message and never pings (RECEIVE.md fact 9); these servers do, in
-- their own code: fragmented messages, pings between fragments, close codes; and frames no
-- library would send, written as raw bytes after the library's handshake: 64-bit lengths of small
-- payloads, one byte per TCP write, TLS records cut anywhere, masked server frames, RSV bits,
-- unknown opcodes. The emulator keeps the REST side (token, channel, subscriptions) and points
-- the channel's connectUri at the foreign server (its connect_uri fault); the server's first
-- connection of a scenario misbehaves, later ones behave.
--
-- For each: every event the server sent in a well-formed frame reaches on_event once, in order,
-- with its body whole; a frame a client must refuse ends the connection with close code 1002
-- (the server's own log says what the client sent) and nothing of it is delivered; the client
-- reconnects and receives the next connection's events.
local emulator = require "support.emulator"
local foreign = require "support.foreign"
local wait = require "support.wait"
local notify = require "genesys.notify"

local T = "v2.users.foreign-conformance.presence"

-- scenario -> events of the first connection that must arrive (in order), and how it ends
local SCENARIOS = {
  { name = "good", events = 3 },
  { name = "fragments", events = 3 },
  { name = "ping_between", events = 4 },        -- the 4th is sent only once every ping was answered
  { name = "len64", events = 3, sizes = { [2] = 70000 } },
  { name = "bytewise", events = 3 },
  { name = "split_records", events = 3, sizes = { [1] = 5000, [3] = 20000 } },
  { name = "close_code", events = 2, close = 4001, reason = "going away for a test" },
  { name = "masked", events = 1, refused = "masked" },
  { name = "rsv", events = 1, refused = "reserved bits" },
  { name = "opcode", events = 1, refused = "opcode 3" },
}

local function body_of(ev)
  return type(ev.body) == "table" and ev.body or {}
end

-- The events of scenario sc's connection conn, in the order they came.
local function from(rec, sc, conn)
  local out = {}
  for _, ev in ipairs(rec.events) do
    local b = body_of(ev)
    if b.s == sc and b.c == conn then out[#out + 1] = b end
  end
  return out
end

local function conn_log(srv, sc, conn)
  for _, c in ipairs(srv:connections()) do
    if c.scenario == sc and c.conn == conn then return c end
  end
end

for _, impl in ipairs { "python", "node" } do
  local runnable, why = foreign.command(impl)
  for _, tls in ipairs { false, true } do
    describe(impl .. " server (" .. (tls and "wss" or "ws") .. ")", function()
      local emu, srv
      setup(function()
        assert(runnable, why)
        emu = emulator.start { tls = tls, admin_insecure = true,
          clients = { "test-id:test-secret" } }
        srv = foreign.start { impl = impl, tls = tls, topic = T }
      end)
      teardown(function()
        if srv then srv:stop() end
        if emu then emu:stop() end
      end)

      for _, sc in ipairs(SCENARIOS) do
        it(sc.name, function()
          assert.equals(200, (emu:admin("POST", "faults/connect_uri",
            { base = srv.base .. "/" .. sc.name, count = 1000 })))
          finally(function() emu:admin("POST", "faults/clear", {}) end)
          local rec = wait.recorder()
          local client = notify.new(wait.config(emu, rec, { topics = { T } }))
          finally(function() client:close() end)
          client:start()
          -- a scenario that ends its connection is followed by one that behaves
          local ends = sc.close or sc.refused
          assert.truthy(wait.until_(client, function()
            return #from(rec, sc.name, 1) >= sc.events and
              (not ends or #from(rec, sc.name, 2) >= 3)
          end, 20000), "events of the first connection: " .. #from(rec, sc.name, 1) ..
            ", of the next: " .. #from(rec, sc.name, 2))
          -- the first connection's well-formed events, once each, in order, bodies whole
          local first = from(rec, sc.name, 1)
          assert.equals(sc.events, #first)
          for i, b in ipairs(first) do
            assert.equals(i, b.n)
            local want = sc.sizes and sc.sizes[i]
            if want then assert.is_true(#b.pad > want - 300, "event " .. i .. " cut short") end
          end
          if not ends then
            assert.equals(0, rec.count("disconnected"))
          else
            local nxt = from(rec, sc.name, 2)
            for i, b in ipairs(nxt) do assert.equals(i, b.n) end
            local d = rec.kinds.disconnected and rec.kinds.disconnected[1]
            assert.truthy(d, "no disconnected item")
            if sc.close then
              assert.equals(sc.close, d.code)
              assert.equals(sc.reason, d.close_reason)
            elseif sc.refused then
              assert.equals(1002, d.code, d.error)
              assert.truthy(tostring(d.error):find(sc.refused, 1, true), d.error)
            end
          end
          client:close()
          -- what the server saw the client do (its log line comes when the connection ends)
          local log1
          wait.until_(client, function()
            log1 = conn_log(srv, sc.name, 1)
            return log1 ~= nil
          end, 10000)
          assert.truthy(log1, "the server logged no end of the first connection")
          if sc.close then
            assert.equals(sc.close, log1.client_close_code) -- the server's code echoed
          elseif sc.refused then
            assert.equals(1002, log1.client_close_code)
          end
          if sc.name == "ping_between" then assert.is_true((log1.pongs or 0) >= 10, log1.pongs) end
        end)
      end
    end)
  end
end
