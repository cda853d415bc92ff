-- The TLS matrix: the client against emulators whose certificates are wrong in one way each
-- (spec/support/mkcerts_matrix.sh makes them). Both TLS stacks are checked apart: REST (libcurl;
-- the token request is the first one) with the gateway on the bad server, and the WebSocket
-- (libwebsockets) with REST on a good server whose channels' connectUri points at the bad one.
-- Each must refuse: health `failed` with reason "tls" and the TLS library's reason, no
-- connection, and state `failed` once max_retries is spent. tls.verify = false connects.
--
-- Controls make the refusals mean something: the same setup with a good certificate connects
-- (REST), and a WebSocket to a good server that does not know the channel fails for a
-- non-TLS reason (the handshake's 404), so a TLS failure here is the certificate's doing.
local emulator = require "support.emulator"
local wait = require "support.wait"
local notify = require "genesys.notify"

local T = "v2.users.tls-matrix.presence"
local DIR = emulator.matrix_certs()
local CA = DIR .. "/ca.pem"
local KEY = DIR .. "/server.key"

-- name, certificate, host the client uses, CA given, what the REST and WS reasons say
local CASES = {
  { what = "an expired certificate", cert = "expired.pem", host = "localhost",
    rest = "expired", ws = "expired" },
  { what = "a certificate not yet valid", cert = "future.pem", host = "localhost",
    rest = "not yet valid", ws = "not yet valid" },
  { what = "a certificate for another host name", cert = "wronghost.pem", host = "localhost",
    rest = "localhost", ws = "hostname" },
  { what = "an IP address not in the certificate (connect by IP)", cert = "noip.pem",
    host = "127.0.0.1", rest = "127.0.0.1", ws = "ip address mismatch" },
  { what = "a self-signed certificate without ca_file", cert = "selfsigned.pem",
    host = "localhost", no_ca = true, rest = "self-signed", ws = "self-signed" },
  { what = "an untrusted intermediate (its root is not in ca_file)", cert = "intermediate.pem",
    host = "localhost", rest = "local issuer", ws = "local issuer" },
}

local function start(cert, host)
  return emulator.start { tls = true, cert = DIR .. "/" .. cert, key = KEY, ca_file = CA,
    host = host, admin_insecure = true, clients = { "test-id:test-secret" } }
end

-- Waits (bounded: a client that connects by mistake must fail the spec, not hang it) for the
-- final state and its gave_up item. state() is read live from the service thread, which sets it
-- just before it queues gave_up, so the state can be seen a poll before the item arrives.
local function ends_failed(client, rec)
  return wait.until_(client, function()
    return client:state() == "failed" and rec.count("gave_up") > 0
  end, 15000) and "failed" or client:state()
end

local function few_retries()
  return { base_ms = 50, max_ms = 50, jitter = "none", max_retries = 1 }
end

-- Every failed item of the run is a TLS one naming the reason; returns how many.
local function all_tls(rec, want)
  local failed = rec.kinds.failed or {}
  assert.is_true(#failed >= 1, "no failed item")
  for _, f in ipairs(failed) do
    assert.equals("tls", f.reason, "not a TLS failure: " .. tostring(f.error))
    assert.truthy(tostring(f.error):lower():find(want, 1, true),
      "the reason does not say '" .. want .. "': " .. tostring(f.error))
  end
  return #failed
end

describe("TLS matrix", function()
  local good -- REST for the WebSocket cases
  setup(function() good = start("good.pem", "localhost") end)
  teardown(function() if good then good:stop() end end)

  it("control: a good certificate connects and delivers with ca_file", function()
    local rec = wait.recorder()
    local client = notify.new(wait.config(good, rec, { topics = { T } }))
    finally(function() client:close() end)
    client:start()
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000))
    good:admin("POST", "publish", { topic = T, eventBody = { n = 1 } })
    assert.truthy(wait.until_(client, function() return #rec.events >= 1 end, 5000))
  end)

  it("control: a WebSocket to a good server that lacks the channel fails, but not for TLS", function()
    local other = start("good.pem", "localhost")
    finally(function() other:stop() end)
    assert.equals(200, (good:admin("POST", "faults/connect_uri",
      { base = "wss://localhost:" .. other.port, count = 1000 })))
    finally(function() good:admin("POST", "faults/clear", {}) end)
    local rec = wait.recorder()
    local client = notify.new(wait.config(good, rec, { topics = { T }, backoff = few_retries() }))
    finally(function() client:close() end)
    client:start()
    assert.equals("failed", ends_failed(client, rec))
    assert.equals(0, rec.count("connected"))
    for _, f in ipairs(rec.kinds.failed) do
      assert.are_not.equal("tls", f.reason, f.error)
      assert.equals("handshake", f.stage, f.error)
      assert.equals(404, f.status, f.error)
    end
  end)

  for _, case in ipairs(CASES) do
    describe(case.what, function()
      local bad
      setup(function() bad = start(case.cert, case.host) end)
      teardown(function() if bad then bad:stop() end end)

      it("REST (libcurl) refuses: failed with reason tls, then state failed", function()
        local before = bad:stats().global
        local rec = wait.recorder()
        local cfg = wait.config(bad, rec, { topics = { T }, backoff = few_retries() })
        if case.no_ca then cfg.tls = nil end
        local client = notify.new(cfg)
        finally(function() client:close() end)
        client:start()
        assert.equals("failed", ends_failed(client, rec))
        assert.equals(2, all_tls(rec, case.rest)) -- the attempt and its one retry
        assert.equals("max_retries", rec.kinds.gave_up[1].reason)
        assert.equals(0, rec.count("connected"))
        local after = bad:stats().global
        assert.equals(before.tokens_issued, after.tokens_issued)
      end)

      it("WebSocket (libwebsockets) refuses: failed with reason tls, then state failed", function()
        local base = "wss://" .. case.host .. ":" .. bad.port
        assert.equals(200, (good:admin("POST", "faults/connect_uri", { base = base, count = 1000 })))
        finally(function() good:admin("POST", "faults/clear", {}) end)
        local before = bad:stats().global
        local rec = wait.recorder()
        -- REST goes to the good server, so the client needs the matrix CA (a self-signed
        -- certificate is not in it either)
        local client = notify.new(wait.config(good, rec, { topics = { T }, backoff = few_retries() }))
        finally(function() client:close() end)
        client:start()
        assert.equals("failed", ends_failed(client, rec))
        assert.equals(2, all_tls(rec, case.ws))
        for _, f in ipairs(rec.kinds.failed) do assert.equals("tls", f.stage) end
        assert.equals(0, rec.count("connected"))
        assert.is_true(rec.count("subscription") >= 1, "REST did not get as far as a channel")
        local after = bad:stats().global
        assert.equals(before.handshakes, after.handshakes)
      end)

      it("tls.verify = false connects (REST and WebSocket) and delivers", function()
        local rec = wait.recorder()
        local cfg = wait.config(bad, rec, { topics = { T } })
        cfg.tls = { verify = false }
        local client = notify.new(cfg)
        finally(function() client:close() end)
        client:start()
        assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000),
          "did not connect with verify = false")
        bad:admin("POST", "publish", { topic = T, eventBody = { n = 1 } })
        assert.truthy(wait.until_(client, function() return #rec.events >= 1 end, 5000))
      end)
    end)
  end
end)
