-- The emulator's directory (emulator/directory*.c): users and queues set through the admin API,
-- each change published as its topic's event, read back through the REST endpoints a resync
-- uses in the official shapes; permissions per OAuth client; the per-token rate limit.
local emulator = require "support.emulator"
local cjson = require "cjson"

describe("genesys-notify-emulator: directory", function()
  local emu, tok
  setup(function()
    emu = emulator.start { tls = true }
    tok = emu:token()
  end)
  teardown(function() if emu then emu:stop() end end)

  local function get(path)
    local st, body, h = emu:http("GET", path, { headers = { Authorization = "Bearer " .. tok } })
    return st, cjson.decode(body), h
  end

  it("a presence set through the admin API is published and read back with its modifiedDate",
    function()
    local ch = emu:channel(tok, { "v2.users.e1.presence" })
    local probe = emu:probe_bg { channel = ch.id, duration_ms = 10000 }
    assert.equals(101, probe:wait_open().handshake)
    assert.truthy(emulator.wait_until(function() return emu:stats().channels[ch.id].connected end))
    local st, u = emu:admin("POST", "users/e1", { presence = "Busy", message = "lunch" })
    assert.equals(200, st)
    local ev
    probe:wait_for(function(r)
      for _, f in ipairs(r.texts) do
        if f.msg and f.msg.topicName == "v2.users.e1.presence" then ev = f.msg end
      end
      return ev
    end, 10)
    assert.truthy(ev, "no presence event")
    assert.equals("Busy", ev.eventBody.presenceDefinition.systemPresence)
    local st2, list = get("/api/v2/users/presences/purecloud/bulk?id=e1&id=nobody")
    assert.equals(200, st2)
    assert.equals(1, #list) -- an unknown user is left out
    assert.equals("e1", list[1].userId)
    assert.equals(u.modifiedDate, list[1].modifiedDate)
    assert.equals(ev.eventBody.modifiedDate, list[1].modifiedDate)
    assert.equals("lunch", list[1].message)
    assert.equals(404, (get("/api/v2/users/nobody/routingstatus")))
    local ids = {}
    for i = 1, 51 do ids[i] = "id=u" .. i end
    assert.equals(400, (get("/api/v2/users/presences/purecloud/bulk?" .. table.concat(ids, "&"))))
  end)

  it("queue members page by pageSize with a nextUri", function()
    emu:admin("POST", "queues/eq", { members = { { id = "m1" }, { id = "m2" },
      { id = "m3", joined = false } } })
    local st, p1 = get("/api/v2/routing/queues/eq/members?pageSize=2&pageNumber=1")
    assert.equals(200, st)
    assert.equals(2, #p1.entities)
    assert.equals(3, p1.total)
    assert.truthy(p1.nextUri)
    local _, p2 = get("/api/v2/routing/queues/eq/members?pageSize=2&pageNumber=2")
    assert.equals(1, #p2.entities)
    assert.is_false(p2.entities[1].joined)
    assert.is_nil(p2.nextUri)
  end)

  it("a denied permission answers 403 missing.any.permissions; the rate limit 429 with Retry-After",
    function()
    emu:admin("POST", "users/e2", { station = { id = "s9", name = "Desk" } })
    assert.equals(200, (get("/api/v2/users/e2/station")))
    emu:admin("POST", "permissions", { client_id = "test-id",
      deny = { "telephony:otherStationAssociation:view" } })
    local st, err = get("/api/v2/users/e2/station")
    assert.equals(403, st)
    assert.equals("missing.any.permissions", err.code)
    assert.truthy(err.message:find("telephony:otherStationAssociation:view", 1, true))
    emu:admin("POST", "permissions", '{"client_id":"test-id","deny":[]}')
    emu:admin("POST", "ratelimit", { per_window = 2, window_ms = 60000, reset = true })
    assert.equals(200, (get("/api/v2/users/e2/routingstatus")))
    assert.equals(200, (get("/api/v2/users/e2/routingstatus")))
    local st3, body, h = get("/api/v2/users/e2/routingstatus")
    assert.equals(429, st3)
    assert.equals("too.many.requests", body.code)
    assert.is_true(tonumber(h["retry-after"]) >= 1)
    local _, rl = emu:admin("GET", "ratelimit")
    assert.equals(1, rl.tokens[1].limited)
    assert.equals(2, rl.tokens[1].peak)
    emu:admin("POST", "ratelimit", { per_window = 0, reset = true })
  end)

  it("one table of permission rules: a rule without a topic denies REST reads, one with a topic "
    .. "subscriptions only; GET lists both, clear forgets both", function()
    emu:admin("POST", "permissions/clear")
    emu:admin("POST", "users/e3", { station = { id = "s3", name = "Desk" } })
    local st, j = emu:admin("POST", "permissions/deny", { topic = "v2.users.*.station",
      missing = { "telephony:otherStationAssociation:view" } })
    assert.equals(200, st)
    assert.equals(1, j.rules)
    assert.equals(200, (get("/api/v2/users/e3/station"))) -- a topic rule: subscriptions only
    st, j = emu:admin("POST", "permissions/deny",
      { client_id = "test-id", missing = { "telephony:otherStationAssociation:view" } })
    assert.equals(200, st)
    assert.equals(2, j.rules)
    local st2, err = get("/api/v2/users/e3/station")
    assert.equals(403, st2)
    assert.equals("missing.any.permissions", err.code)
    local _, list = emu:admin("GET", "permissions")
    assert.equals(2, #list.rules)
    assert.equals("v2.users.*.station", list.rules[1].topic)
    assert.is_nil(list.rules[2].topic)
    assert.equals("test-id", list.rules[2].client_id)
    local _, subs = emu:admin("GET", "subscriptions")
    assert.equals(2, subs.permission_rules)
    -- "permissions" sets the client's REST rules: the same table
    emu:admin("POST", "permissions", '{"client_id":"test-id","deny":[]}')
    _, list = emu:admin("GET", "permissions")
    assert.equals(1, #list.rules)
    assert.equals(200, (get("/api/v2/users/e3/station")))
    emu:admin("POST", "permissions", { client_id = "test-id",
      deny = { "telephony:otherStationAssociation:view" } })
    assert.equals(403, (get("/api/v2/users/e3/station")))
    local _, c = emu:admin("POST", "permissions/clear")
    assert.equals(2, c.cleared)
    assert.equals(200, (get("/api/v2/users/e3/station")))
    assert.equals(400, (emu:admin("POST", "permissions/deny", { client_id = "test-id" })))
  end)
end)
