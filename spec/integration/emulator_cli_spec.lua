-- The emulator's command line: ready line, clean exit on signals, flag errors naming the flag.
local emulator = require "support.emulator"

describe("emulator command line", function()
  it("prints one JSON ready line with the bound port and exits 0 on SIGTERM", function()
    local emu = emulator.start { tls = true }
    assert.is_true(emu.ready.listening)
    assert.is_true(emu.ready.tls)
    assert.is_true(emu.port > 0 and emu.port < 65536)
    assert.equal(200, (emu:admin("GET", "stats")))
    local rc, err = emu:stop()
    assert.equal(0, rc, err)
    assert.equal(1, select(2, emu.last_out:gsub("\n", "")))   -- exactly one line
  end)

  it("exits 0 on SIGINT with live connections", function()
    local emu = emulator.start { heartbeat_ms = 100 }
    local ch = emu:channel(emu:token(), { "v2.users.u.presence" })
    local p = emu:probe_bg { channel = ch.id, duration_ms = 3000 }
    assert.equal(101, p:wait_open().handshake)
    os.execute("kill -INT " .. emu.pid)
    local r = p:result()
    assert.equal("close", r["end"]["end"])     -- going away with a close frame, not a drop
    assert.equal(1001, r["end"].code)
    local rc, err = emu:stop()
    assert.equal(0, rc, err)
  end)

  it("restarts on the same port", function()
    local emu = emulator.start {}
    finally(function() emu:stop() end)
    local port = emu.port
    emu:restart()
    assert.equal(port, emu.port)
    assert.equal(200, (emu:admin("GET", "stats")))
  end)

  it("logs JSON lines with --log, never a token or a secret", function()
    local emu = emulator.start { clients = { "log-id:VERY-SECRET-1" }, args = { "--log" } }
    local tok = emu:token("log-id:VERY-SECRET-1")
    emu:channel(tok, { "v2.users.u.presence" })
    emu:stop()
    assert.matches('"event":"channel_created"', emu.last_out)
    assert.not_matches("VERY%-SECRET", emu.last_out .. emu.last_err)
    assert.not_matches(tok, emu.last_out .. emu.last_err)
  end)

  local bad = {
    { { "--port", "x" }, "%-%-port: expected an integer from 0 to 65535" },
    { { "--port", "70000" }, "%-%-port" },
    { { "--heartbeat-ms", "-5" }, "%-%-heartbeat%-ms" },
    { { "--token-ttl" }, "%-%-token%-ttl" },
    { { "--event-rate", "fast" }, "%-%-event%-rate: expected a number" },
    { { "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key" },
      "%-%-tls%-cert: expected a readable PEM file" },
    { { "--bogus" }, 'unknown flag "%-%-bogus"' },
  }
  for _, case in ipairs(bad) do
    it("rejects " .. table.concat(case[1], " ") .. " with status 2", function()
      local args = { "--client", "a:b" }
      for _, x in ipairs(case[1]) do args[#args + 1] = x end
      local rc, out, err = emulator.run_raw(args)
      assert.equal(2, rc)
      assert.equal("", out)
      assert.matches(case[2], err)
    end)
  end

  it("requires a client and never echoes a malformed one (it may hold a secret)", function()
    local rc, _, err = emulator.run_raw { "--port", "0" }
    assert.equal(2, rc)
    assert.matches("%-%-client: expected at least one ID:SECRET", err)
    rc, _, err = emulator.run_raw { "--client", "no-colon-SECRETVALUE" }
    assert.equal(2, rc)
    assert.matches("%-%-client", err)
    assert.not_matches("SECRETVALUE", err)
  end)

  it("requires --tls-cert and --tls-key together", function()
    local _, cert = emulator.certs()
    local rc, _, err = emulator.run_raw { "--client", "a:b", "--tls-cert", cert }
    assert.equal(2, rc)
    assert.matches("%-%-tls%-key", err)
  end)
end)
