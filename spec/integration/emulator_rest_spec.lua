-- The emulator's OAuth and notifications REST API, over plain HTTP and TLS, against the real
-- process. See GENESYS.md for the behaviour being emulated.
local emulator = require "support.emulator"
local cjson = require "cjson.safe"

local function topics(n, prefix)
  local t = {}
  for i = 1, n do t[i] = { id = (prefix or "v2.users.u") .. i .. ".presence" } end
  return t
end

for _, tls in ipairs { false, true } do
  local mode = tls and "TLS" or "plain"

  describe("emulator OAuth and REST (" .. mode .. ")", function()
    local emu
    setup(function()
      emu = emulator.start { tls = tls, clients = { "test-id:test-secret", "other:pw" } }
    end)
    teardown(function()
      local rc, err = emu:stop()
      assert.equal(0, rc, err)
    end)

    describe("POST /oauth/token", function()
      it("issues an opaque bearer token with expires_in from --token-ttl", function()
        local st, body, h = emu:http("POST", "/oauth/token", {
          headers = { Authorization = "Basic " .. emulator.basic("test-id:test-secret"),
            ["Content-Type"] = "application/x-www-form-urlencoded" },
          body = "grant_type=client_credentials" })
        assert.equal(200, st)
        assert.matches("application/json", h["content-type"])
        local j = cjson.decode(body)
        assert.equal("bearer", j.token_type)
        assert.equal(86400, j.expires_in)
        assert.matches("^%x+$", j.access_token)
        assert.is_true(#j.access_token >= 32)
        assert.not_equal(j.access_token, emu:token())   -- random, not derived
      end)

      it("answers 401 with a Genesys-style error for bad credentials", function()
        for _, auth in ipairs { "Basic " .. emulator.basic("test-id:wrong"),
                                "Basic " .. emulator.basic("nobody:test-secret"), "Bearer x" } do
          local st, body = emu:http("POST", "/oauth/token", {
            headers = { Authorization = auth }, body = "grant_type=client_credentials" })
          assert.equal(401, st)
          local j = cjson.decode(body)
          assert.equal(401, j.status)
          assert.is_string(j.message)
          assert.is_string(j.code)
          assert.equal("invalid_client", j.error)
          assert.not_matches("test%-secret", body)
        end
        local st = emu:http("POST", "/oauth/token", { body = "grant_type=client_credentials" })
        assert.equal(401, st)
      end)

      it("answers 400 for a bad grant or body", function()
        local auth = { Authorization = "Basic " .. emulator.basic("test-id:test-secret") }
        local st, body = emu:http("POST", "/oauth/token",
          { headers = auth, body = "grant_type=password" })
        assert.equal(400, st)
        assert.equal("unsupported_grant_type", cjson.decode(body).error)
        st, body = emu:http("POST", "/oauth/token", { headers = auth, body = "foo=bar" })
        assert.equal(400, st)
        assert.matches("grant_type", cjson.decode(body).message)
        st = emu:http("POST", "/oauth/token", { headers = auth })
        assert.equal(400, st)
      end)

      it("counts requests by status in the stats", function()
        local g = emu:stats().global
        assert.is_true(g.oauth["200"] >= 2)
        assert.is_true(g.oauth["401"] >= 4)
        assert.is_true(g.oauth["400"] >= 3)
        assert.is_true(g.tokens_issued >= 2)
      end)
    end)

    describe("channels", function()
      local tok
      before_each(function() tok = emu:token() end)

      it("refuses missing, unknown and revoked tokens with 401", function()
        local st, j = emu:http("POST", "/api/v2/notifications/channels")
        assert.equal(401, st)
        assert.equal(401, cjson.decode(j).status)
        st = emu:rest("not-a-token", "POST", "/channels")
        assert.equal(401, st)
        local t2 = emu:token()
        assert.equal(200, (emu:rest(t2, "GET", "/channels")))
        local ast, r = emu:admin("POST", "tokens/revoke")
        assert.equal(200, ast)
        assert.is_true(r.revoked >= 2)
        assert.equal(401, (emu:rest(t2, "GET", "/channels")))
      end)

      it("creates a channel whose connectUri follows the scheme and Host of the request", function()
        local st, ch = emu:rest(tok, "POST", "/channels")
        assert.equal(200, st)
        assert.matches("^streaming%-", ch.id)
        assert.equal((tls and "wss" or "ws") .. "://localhost:" .. emu.port .. "/channels/" .. ch.id,
          ch.connectUri)
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", ch.expires)
        -- HEAD: 200 while alive, 404 when unknown
        assert.equal(200, (emu:http("HEAD", "/api/v2/notifications/channels/" .. ch.id,
          { headers = { Authorization = "Bearer " .. tok } })))
        assert.equal(404, (emu:http("HEAD", "/api/v2/notifications/channels/nope",
          { headers = { Authorization = "Bearer " .. tok } })))
        assert.equal(405, (emu:rest(tok, "DELETE", "/channels/" .. ch.id)))
        -- GET lists this client's channels only
        local lst, list = emu:rest(tok, "GET", "/channels")
        assert.equal(200, lst)
        local found = false
        for _, e in ipairs(list.entities) do found = found or e.id == ch.id end
        assert.is_true(found)
        local other = emu:token("other:pw")
        local _, olist = emu:rest(other, "GET", "/channels")
        for _, e in ipairs(olist.entities) do assert.not_equal(ch.id, e.id) end
        -- and another client cannot touch it
        assert.equal(404, (emu:rest(other, "GET", "/channels/" .. ch.id .. "/subscriptions")))
      end)

      it("GET/POST/PUT/DELETE subscriptions with validation", function()
        local _, ch = emu:rest(tok, "POST", "/channels")
        local p = "/channels/" .. ch.id .. "/subscriptions"
        local st, j = emu:rest(tok, "PUT", p, { { id = "v2.users.a.presence" },
          { id = "v2.routing.queues.q.conversations" } })
        assert.equal(200, st)
        assert.equal(2, #j.entities)
        assert.equal("v2.users.a.presence", j.entities[1].id)
        st, j = emu:rest(tok, "POST", p, { { id = "v2.users.b.presence" }, { id = "v2.users.a.presence" } })
        assert.equal(200, st)
        assert.equal(3, #j.entities)        -- added, no duplicate
        st, j = emu:rest(tok, "GET", p)
        assert.equal(200, st)
        assert.equal(3, #j.entities)
        st, j = emu:rest(tok, "PUT", p, { { id = "v2.users.c.presence" } })
        assert.equal(200, st)
        assert.equal(1, #j.entities)        -- replaced
        assert.equal("v2.users.c.presence", j.entities[1].id)
        -- malformed bodies
        st, j = emu:rest(tok, "PUT", p, "{not json")
        assert.equal(400, st)
        assert.equal(400, j.status)
        st = emu:rest(tok, "PUT", p, { id = "v2.users.x.presence" })   -- object, not array
        assert.equal(400, st)
        st, j = emu:rest(tok, "PUT", p, { { name = "x" } })
        assert.equal(400, st)
        assert.matches("entry 0", j.message)
        st, j = emu:rest(tok, "PUT", p, { { id = "bad topic\"" } })
        assert.equal(400, st)
        assert.matches("invalid topic", j.message)
        -- ignoreErrors covers permission checks only (official): an invalid name still refuses
        -- the list by default; the other modes are in emulator_subscriptions_spec.lua
        st, j = emu:rest(tok, "PUT", p .. "?ignoreErrors=true",
          { { id = "bad topic" }, { id = "v2.users.d.presence" } })
        assert.equal(400, st)
        assert.matches("invalid topic", j.message)
        emu:admin("POST", "subscriptions/config", { invalid_topics = "omit" })
        st, j = emu:rest(tok, "PUT", p .. "?ignoreErrors=true",
          { { id = "bad topic" }, { id = "v2.users.d.presence" } })
        emu:admin("POST", "subscriptions/config", { invalid_topics = "error" })
        assert.equal(200, st)
        assert.equal(1, #j.entities)
        -- 1,000 topics are fine, 1,001 are not (and leave the channel as it was)
        st, j = emu:rest(tok, "PUT", p, topics(1000))
        assert.equal(200, st)
        assert.equal(1000, #j.entities)
        st, j = emu:rest(tok, "PUT", p, topics(1001))
        assert.equal(400, st)
        assert.matches("1000", j.message)
        st = emu:rest(tok, "POST", p, { { id = "v2.users.extra.presence" } })
        assert.equal(400, st)
        assert.equal(1000, #select(2, emu:rest(tok, "GET", p)).entities)
        -- DELETE removes all
        -- lws cannot read chunked request bodies: a clear 411, not a hang
        st, j = emu:http("PUT", "/api/v2/notifications" .. p, { body = "[]",
          headers = { Authorization = "Bearer " .. tok, ["Transfer-Encoding"] = "chunked" } })
        assert.equal(411, st)
        assert.matches("Content%-Length", cjson.decode(j).message)
        st = emu:rest(tok, "DELETE", p)
        assert.equal(204, st)
        assert.equal(0, #select(2, emu:rest(tok, "GET", p)).entities)
        -- unknown channel
        st, j = emu:rest(tok, "GET", "/channels/streaming-0-nope/subscriptions")
        assert.equal(404, st)
        assert.equal("not.found", j.code)
        assert.equal(404, (emu:rest(tok, "PUT", "/channels/streaming-0-nope/subscriptions", {})))
      end)

      it("counts REST requests by status", function()
        local g = emu:stats().global
        assert.is_true(g.rest["200"] > 5)
        assert.is_true(g.rest["400"] >= 6)
        assert.is_true(g.rest["401"] >= 3)
        assert.is_true(g.rest["404"] >= 3)
      end)
    end)
  end)
end

describe("emulator channel limits and lifetime", function()
  it("keeps at most 20 channels per client, evicting the oldest unconnected one first", function()
    local emu = emulator.start { heartbeat_ms = 60000 }
    finally(function() emu:stop() end)
    local tok = emu:token()
    local ids = {}
    for i = 1, 20 do ids[i] = emu:channel(tok).id end
    -- connect the oldest one: it is in use, so an unconnected one goes first
    local probe = emu:probe_bg { channel = ids[1], duration_ms = 4000 }
    assert.equal(101, probe:wait_open().handshake)
    assert.truthy(emulator.wait_until(function() return emu:stats().channels[ids[1]].connected end))
    local c21 = emu:channel(tok).id
    local s = emu:stats()
    assert.is_true(s.channels[ids[2]].evicted)        -- oldest unconnected
    assert.is_false(s.channels[ids[1]].expired)       -- connected survives
    assert.is_false(s.channels[c21].expired)
    assert.equal(20, s.global.channels_live)
    assert.equal(404, (emu:http("HEAD", "/api/v2/notifications/channels/" .. ids[2],
      { headers = { Authorization = "Bearer " .. tok } })))
    -- another client has its own 20
    assert.equal(200, (emu:rest(tok, "GET", "/channels")))
    local _, list = emu:rest(tok, "GET", "/channels")
    assert.equal(20, #list.entities)
    emu:admin("POST", "channels/" .. ids[1] .. "/close", { code = 1000 })
    probe:result()
  end)

  it("expires channels after --channel-ttl; subscribing again extends the life", function()
    local emu = emulator.start { channel_ttl = 3 }
    finally(function() emu:stop() end)
    local tok = emu:token()
    local a = emu:channel(tok)
    local b = emu:channel(tok)
    local H = { headers = { Authorization = "Bearer " .. tok } }
    emulator.sleep(1.8)
    assert.equal(200, (emu:rest(tok, "PUT", "/channels/" .. b.id .. "/subscriptions",
      { { id = "v2.users.u.presence" } })))
    emulator.sleep(1.8)
    assert.equal(404, (emu:http("HEAD", "/api/v2/notifications/channels/" .. a.id, H)))
    assert.equal(200, (emu:http("HEAD", "/api/v2/notifications/channels/" .. b.id, H)))
    assert.equal(404, (emu:rest(tok, "GET", "/channels/" .. a.id .. "/subscriptions")))
    local s = emu:stats()
    assert.is_true(s.channels[a.id].expired)
    assert.is_false(s.channels[b.id].expired)
  end)

  it("honours --max-channels and lists channels in the admin API", function()
    local emu = emulator.start { clients = { "a:1", "b:2" }, args = { "--max-channels", "2" } }
    finally(function() emu:stop() end)
    local ta, tb = emu:token("a:1"), emu:token("b:2")
    local a1 = emu:channel(ta, { "v2.users.x.presence" }).id
    local a2 = emu:channel(ta).id
    local b1 = emu:channel(tb).id
    local a3 = emu:channel(ta).id            -- evicts a1, the least recently used
    local st, list = emu:admin("GET", "channels")
    assert.equal(200, st)
    local by = {}
    for _, e in ipairs(list.entities) do by[e.id] = e end
    assert.is_true(by[a1].evicted and by[a1].expired)
    assert.is_false(by[a2].expired or by[a3].expired or by[b1].expired)
    assert.equal("a", by[a2].client_id)
    assert.equal("b", by[b1].client_id)
    assert.equal(1, by[a1].topics)
    assert.matches("Z$", by[a3].expires)
    local s = emu:stats()
    assert.equal(3, s.global.channels_live)
    assert.equal("b", s.channels[b1].client_id)
    assert.same({ "v2.users.x.presence" }, s.channels[a1].subscriptions)
  end)

  it("--channel-ends-with-token: a channel ends with the token that created it, whatever "
    .. "its expires and a resubscribe say; without it the channel lives on", function()
    for _, ends in ipairs { true, false } do
      local emu = emulator.start { token_ttl = 2, channel_ttl = 60, channel_ends_with_token = ends }
      finally(function() emu:stop() end)
      local t0 = emulator.now()
      local tok = emu:token()
      local ch = emu:channel(tok)
      -- expires is the channel's own end (about 60 s away), not the token's
      local y, mo, d, h, mi, sec = ch.expires:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):([%d.]+)Z$")
      assert.truthy(y, ch.expires)
      local left = os.time { year = y, month = mo, day = d, hour = h, min = mi, sec = 0 }
        + tonumber(sec) - (os.time(os.date("!*t")) - os.time()) - os.time()
      assert.is_true(left > 40 and left < 80, "expires in " .. left .. " s")
      assert.equal(200, (emu:rest(tok, "PUT", "/channels/" .. ch.id .. "/subscriptions",
        { { id = "v2.users.u.presence" } })))
      emulator.sleep(2.5 - (emulator.now() - t0))
      local tok2 = emu:token()
      local st = emu:http("HEAD", "/api/v2/notifications/channels/" .. ch.id,
        { headers = { Authorization = "Bearer " .. tok2 } })
      assert.equal(ends and 404 or 200, st)
      assert.equal(ends, emu:stats().channels[ch.id].expired)
      emu:stop()
    end
  end)

  it("GET channels lists this token's channels by default, includechannels=oauthclient all "
    .. "of the client's", function()
    local emu = emulator.start {}
    finally(function() emu:stop() end)
    local t1, t2 = emu:token(), emu:token()
    local a, b = emu:channel(t1).id, emu:channel(t2).id
    local function ids(tok, q)
      local st, list = emu:rest(tok, "GET", "/channels" .. (q or ""))
      assert.equal(200, st)
      local out = {}
      for _, e in ipairs(list.entities) do out[#out + 1] = e.id end
      table.sort(out)
      return out
    end
    assert.same({ a }, ids(t1))
    assert.same({ b }, ids(t2, "?includechannels=token"))
    local both = { a, b }
    table.sort(both)
    assert.same(both, ids(t1, "?includechannels=oauthclient"))
    assert.equal(400, (emu:rest(t1, "GET", "/channels?includechannels=everything")))
  end)

  it("counts the most channels a client held at once, live and connected, and the "
    .. "subscription requests", function()
    local emu = emulator.start { max_channels = 3 }
    finally(function() emu:stop() end)
    local tok = emu:token()
    for _ = 1, 5 do emu:channel(tok, { "v2.users.u.presence" }) end
    local g = emu:stats().global
    assert.equal(3, g.channels_live_peak)       -- the limit held: the 4th and 5th evicted
    assert.equal(0, g.channels_connected_peak)
    assert.equal(3, g.max_channels)
    assert.equal(5, g.subscription_requests)
  end)

  it("expires tokens after --token-ttl", function()
    local emu = emulator.start { token_ttl = 2 }
    finally(function() emu:stop() end)
    local t0 = emulator.now()
    local tok = emu:token()
    assert.equal(200, (emu:rest(tok, "GET", "/channels")))
    emulator.sleep(2.2 - (emulator.now() - t0))
    assert.equal(401, (emu:rest(tok, "GET", "/channels")))
  end)
end)
