-- A host name that resolves to several addresses, the server listening on only one of them:
-- `localhost` giving ::1 first and then 127.0.0.1, the emulator bound to 127.0.0.1 only. Every
-- address must be tried in turn: libcurl does it for REST; the WebSocket transport resolves by
-- itself (lws gets one address) and used to try only the first, so the client never connected.
--
-- Without editing /etc/hosts: the client runs in a child process inside a private mount
-- namespace (unshare -m, root only) where the spec's own hosts file is bind-mounted over
-- /etc/hosts; the machine's file is untouched. Skipped, with the reason, where that is not
-- possible.
local emulator = require "support.emulator"


local function capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local s = p:read("*a")
  p:close()
  return s
end

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local interpreter = require("support.build").interpreter

describe("a host name with several addresses", function()
  local emu, hosts
  setup(function()
    hosts = os.tmpname()
    local f = assert(io.open(hosts, "w"))
    f:write("::1 localhost\n127.0.0.1 localhost\n")
    f:close()
    emu = emulator.start { tls = true, host = "127.0.0.1" }
  end)
  teardown(function()
    if emu then emu:stop() end
    if hosts then os.remove(hosts) end
  end)

  local function in_namespace(cmd)
    return "env -u LD_PRELOAD unshare -m sh -c " ..
      shq("mount --bind " .. shq(hosts) .. " /etc/hosts && " .. cmd)
  end

  -- Runs spec/support/multiaddr_client.lua in the namespace; returns its result table, or nil
  -- when no namespace can be had here (the spec is then pending).
  local function run_client()
    local order = capture(in_namespace("getent ahosts localhost") .. " 2>/dev/null")
    if not order:find("^::1%s") then
      pending("no private mount namespace here (unshare -m and mount need root): " ..
        "cannot make localhost resolve to ::1 first without editing /etc/hosts")
      return nil
    end
    assert.truthy(order:find("\n127%.0%.0%.1%s"), order) -- both, ::1 first
    local err = os.tmpname()
    local root = capture("pwd"):gsub("%s+$", "")
    local out = capture(in_namespace("exec " .. shq(interpreter()) .. " " ..
      shq(root .. "/spec/support/multiaddr_client.lua") .. " " .. shq(root) .. " " ..
      string.format("%d", emu.port) .. " " .. shq(emu.ca_file)) .. " 2>" .. shq(err))
    local f = io.open(err)
    local stderr = f and f:read("*a") or ""
    if f then f:close() end
    os.remove(err)
    assert.is_nil(stderr:find("Sanitizer", 1, true), stderr)
    local r = require("cjson").decode(out:match("[^\n]*") or "")
    assert.truthy(r, "no result from the client: " .. out .. stderr)
    return r
  end

  it("the WebSocket tries the next address when the first refuses (::1, then 127.0.0.1)", function()
    local r = run_client()
    if not r then return end
    assert.is_true(r.connected, "never connected: " .. table.concat(r.failed, "; "))
    -- within the first attempt: the refused ::1 is not a failed attempt
    assert.same({}, r.failed)
    assert.equals(1, emu:stats().global.handshakes)
  end)

  it("when every address refuses, the attempt fails once, saying how many were tried", function()
    assert.equals(200, (emu:admin("POST", "faults/connect_uri",
      { base = "wss://localhost:1", count = 1000 })))
    finally(function() emu:admin("POST", "faults/clear", {}) end)
    local r = run_client()
    if not r then return end
    assert.is_false(r.connected)
    assert.equals(4, #r.failed) -- the attempt and max_retries = 3, not one per address
    for _, e in ipairs(r.failed) do
      assert.truthy(e:find("^connect: .*%(2 addresses of localhost tried%)$"), e)
    end
  end)
end)
