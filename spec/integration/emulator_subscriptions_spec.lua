-- The emulator's subscription answers held to the official sources (GENESYS.md): composite
-- topics deliver the individual topics' events under their own names; a permission denied
-- through the admin API (per OAuth client or for every client, per topic family) comes back as
-- Genesys sends it with ignoreErrors=true (the composite Permitted plus the member as its own
-- Rejected entry with rejectionReason and missingPermissions; a plain topic Rejected) and fails
-- the whole request without it; names are matched in any case; invalid names are answered in
-- each of the modes the emulator offers (the official sources do not say); the "subscriptions"
-- fault leaves entries out of an answer or changes their case. Real process, TLS.
local emulator = require "support.emulator"
local cjson = require "cjson.safe"

local U = "v2.users.u-subs-1"
local COMPOSITE = U .. "?presence&routingStatus"

local function ids(j)
  local t = {}
  for _, e in ipairs(j.entities or {}) do t[#t + 1] = e.id end
  return t
end

local function entry(j, id)
  for _, e in ipairs(j.entities or {}) do if e.id == id then return e end end
end

describe("emulator subscription answers", function()
  local emu, tok, other
  setup(function()
    emu = emulator.start { tls = true, clients = { "test-id:test-secret", "other:pw" } }
    tok = emu:token()
    other = emu:token("other:pw")
  end)
  teardown(function() assert.equal(0, emu:stop()) end)
  after_each(function()
    emu:admin("POST", "permissions/clear")
    emu:admin("POST", "faults/clear")
    emu:admin("POST", "subscriptions/config", { invalid_topics = "error" })
  end)

  local function put(token, ch, list, ignore)
    local body = {}
    for i, t in ipairs(list) do body[i] = { id = t } end
    return emu:rest(token, "PUT", "/channels/" .. ch .. "/subscriptions" ..
      (ignore == false and "" or "?ignoreErrors=true"), body)
  end

  local function admin_ok(method, path, body)
    local st, j = emu:admin(method, path, body)
    assert.equal(200, st, cjson.encode(j))
    return j
  end

  it("a thousand names: each held once in any case, and events found by name in any case",
    function()
    -- the emulator indexes a channel's names (emulator/ciset.c) rather than comparing each
    -- with all the others: the index must answer as the comparisons did
    local _, ch = emu:rest(tok, "POST", "/channels")
    local list = {}
    for i = 1, 999 do list[i] = ("v2.users.u-many-%d.presence"):format(i) end
    for i = 1, 200 do list[#list + 1] = "v2." .. list[i]:sub(4):upper() end -- the same again
    local st, j = put(tok, ch.id, list)
    assert.equal(200, st, cjson.encode(j))
    assert.equal(999, #ids(j))
    local s = admin_ok("GET", "subscriptions").channels[ch.id]
    assert.equal(999, #s.topics)
    assert.equal(999, #s.delivers)
    -- added to (POST): names held in another case are not added twice (nor counted against
    -- the 1,000)
    local body = { { id = "v2.USERS.U-MANY-5.PRESENCE" }, { id = "v2.users.u-many-999.Presence" },
                   { id = "v2.users.u-many-1000.presence" } }
    st, j = emu:rest(tok, "POST", "/channels/" .. ch.id .. "/subscriptions", body)
    assert.equal(200, st, cjson.encode(j))
    s = admin_ok("GET", "subscriptions").channels[ch.id]
    assert.equal(1000, #s.topics)
    assert.equal(1000, #s.delivers)
    local probe = emu:probe_bg { channel = ch.id, duration_ms = 3000 }
    assert.truthy(probe:wait_open(10))
    assert.truthy(emulator.wait_until(function()
      return emu:stats().channels[ch.id].connected end, 10))
    local function pub(t) return admin_ok("POST", "publish", { topic = t }).delivered end
    assert.equal(1, pub("v2.USERS.U-MANY-777.PRESENCE"))
    assert.equal(1, pub("v2.users.u-many-1000.presence"))
    assert.equal(1, pub("v2.users.u-many-1.presence"))
    assert.equal(0, pub("v2.users.u-many-1001.presence"))
    assert.equal(0, pub("v2.users.u-many-77.presenc"))
    local r = probe:wait_for(function(x)
      local n = 0
      for _, f in ipairs(x.texts) do
        n = n + (f.msg.topicName:lower():find("^v2%.users%.u%-many") and 1 or 0)
      end
      return n >= 3
    end, 10)
    assert.truthy(r, "the probe did not get the three events")
    probe:result(10)
  end)

  it("delivers a composite topic's events under the individual names, in any case", function()
    local _, ch = emu:rest(tok, "POST", "/channels")
    local st, j = put(tok, ch.id, { COMPOSITE })
    assert.equal(200, st)
    assert.same({ COMPOSITE }, ids(j))
    assert.equal("Permitted", j.entities[1].state)
    local s = admin_ok("GET", "subscriptions").channels[ch.id]
    assert.same({ COMPOSITE }, s.topics)
    assert.same({ U .. ".presence", U .. ".routingStatus" }, s.delivers)
    local probe = emu:probe_bg { channel = ch.id, duration_ms = 4000 }
    assert.truthy(probe:wait_open(10))
    assert.truthy(emulator.wait_until(function()
      return emu:stats().channels[ch.id].connected end, 10))
    local function pub(t) return admin_ok("POST", "publish", { topic = t }).delivered end
    assert.equal(1, pub(U .. ".presence"))
    assert.equal(1, pub(U .. ".ROUTINGSTATUS"))     -- names match in any case
    assert.equal(0, pub(U .. ".conversations"))     -- not a member
    assert.equal(0, pub(COMPOSITE))                 -- events never carry the composite name
    local r = probe:wait_for(function(x)
      local n = 0
      for _, f in ipairs(x.texts) do n = n + (f.msg.topicName:find("^v2%.users") and 1 or 0) end
      return n >= 2
    end, 10)
    assert.truthy(r, "the probe did not get both events")
    local got = {}
    for _, f in ipairs(r.texts) do
      if f.msg.topicName:find("^v2%.users") then got[#got + 1] = f.msg.topicName end
    end
    assert.same({ U .. ".presence", U .. ".ROUTINGSTATUS" }, got)
    probe:result(10)
  end)

  it("answers a denied member as Genesys does: composite Permitted plus the member Rejected", function()
    admin_ok("POST", "permissions/deny", { topic = "v2.users.*.routingstatus",
      missing = { "routing:agent:view" }, reason = "Missing permission routing:agent:view" })
    local _, ch = emu:rest(tok, "POST", "/channels")
    local st, j = put(tok, ch.id, { COMPOSITE, "v2.users.u-subs-2.presence" })
    assert.equal(200, st, cjson.encode(j))
    assert.equal(3, #j.entities)
    assert.equal("Permitted", entry(j, COMPOSITE).state)
    assert.equal("Permitted", entry(j, "v2.users.u-subs-2.presence").state)
    local m = entry(j, U .. ".routingStatus")
    assert.equal("Rejected", m.state)
    assert.equal("Missing permission routing:agent:view", m.rejectionReason)
    assert.same({ "routing:agent:view" }, m.missingPermissions)
    local s = admin_ok("GET", "subscriptions").channels[ch.id]
    assert.same({ COMPOSITE, "v2.users.u-subs-2.presence" }, s.topics)
    assert.same({ U .. ".presence", "v2.users.u-subs-2.presence" }, s.delivers)
    -- every member denied: the composite itself is Rejected and not held
    st, j = put(tok, ch.id, { U .. "?routingStatus" })
    assert.equal(200, st)
    assert.equal("Rejected", entry(j, U .. "?routingStatus").state)
    assert.same({ "routing:agent:view" }, entry(j, U .. "?routingStatus").missingPermissions)
    assert.same({}, admin_ok("GET", "subscriptions").channels[ch.id].topics)
    -- a plain topic of the family
    st, j = put(tok, ch.id, { "v2.users.u-subs-3.routingStatus", "v2.users.u-subs-3.presence" })
    assert.equal(200, st)
    assert.equal("Rejected", entry(j, "v2.users.u-subs-3.routingStatus").state)
    assert.equal("Permitted", entry(j, "v2.users.u-subs-3.presence").state)
    assert.same({ "v2.users.u-subs-3.presence" },
      admin_ok("GET", "subscriptions").channels[ch.id].topics)
  end)

  it("fails the whole request without ignoreErrors and changes nothing", function()
    local _, ch = emu:rest(tok, "POST", "/channels")
    assert.equal(200, (put(tok, ch.id, { "v2.users.u-subs-4.presence" }, false)))
    admin_ok("POST", "permissions/deny", { topic = "v2.users.*.routingStatus" })
    local st, j = put(tok, ch.id, { COMPOSITE }, false)
    assert.equal(403, st)
    assert.equal("missing.permissions", j.code)
    assert.equal(403, j.status)
    assert.matches("routingStatus", j.message)
    assert.same({ "v2.users.u-subs-4.presence" },
      admin_ok("GET", "subscriptions").channels[ch.id].topics)
  end)

  it("denies per OAuth client", function()
    admin_ok("POST", "permissions/deny", { topic = "v2.users.*.presence", client_id = "other" })
    local _, a = emu:rest(tok, "POST", "/channels")
    local _, b = emu:rest(other, "POST", "/channels")
    local _, ja = put(tok, a.id, { "v2.users.u-subs-5.presence" })
    local _, jb = put(other, b.id, { "v2.users.u-subs-5.presence" })
    assert.equal("Permitted", ja.entities[1].state)
    assert.equal("Rejected", jb.entities[1].state)
    assert.same({ "emulator:topic:view" }, jb.entities[1].missingPermissions)
  end)

  it("answers invalid names in the mode chosen (error by default, omit, rejected)", function()
    local _, ch = emu:rest(tok, "POST", "/channels")
    local bad = { "v2.users.u-subs-6.presence", "v2.users.x?", "v2.users.x&y" }
    for _, t in ipairs { bad[2], bad[3], "bad topic" } do
      local st, j = put(tok, ch.id, { bad[1], t })
      assert.equal(400, st, t)            -- the default: refused as a whole, ignoreErrors or not
      assert.matches("invalid topic name", j.message)
    end
    admin_ok("POST", "subscriptions/config", { invalid_topics = "omit" })
    local st, j = put(tok, ch.id, bad)
    assert.equal(200, st)
    assert.same({ bad[1] }, ids(j))
    assert.equal(400, (put(tok, ch.id, bad, false)))
    admin_ok("POST", "subscriptions/config", { invalid_topics = "rejected" })
    st, j = put(tok, ch.id, bad)
    assert.equal(200, st)
    assert.same(bad, ids(j))
    assert.equal("Permitted", j.entities[1].state)
    assert.equal("Rejected", j.entities[2].state)
    assert.equal("Invalid topic name", j.entities[3].rejectionReason)
    assert.same({ bad[1] }, admin_ok("GET", "subscriptions").channels[ch.id].topics)
    assert.equal(400, (put(tok, ch.id, bad, false)))
    st, j = emu:admin("POST", "subscriptions/config", { invalid_topics = "drop" })
    assert.equal(400, st)
    assert.matches("invalid_topics", j.message or j)
  end)

  it("the subscriptions fault leaves entries out or changes their case, for count answers", function()
    local _, ch = emu:rest(tok, "POST", "/channels")
    local a, b = "v2.users.u-subs-7.presence", "v2.users.u-subs-8.presence"
    admin_ok("POST", "faults/subscriptions", { mode = "omit", topic = "SUBS-8", count = 1 })
    local _, j = put(tok, ch.id, { a, b })
    assert.same({ a }, ids(j))
    -- the server holds it all the same, and the next answer is whole
    assert.same({ a, b }, admin_ok("GET", "subscriptions").channels[ch.id].topics)
    _, j = put(tok, ch.id, { a, b })
    assert.same({ a, b }, ids(j))
    admin_ok("POST", "faults/subscriptions", { mode = "omit" })   -- the last entry, until cleared
    for _ = 1, 2 do
      _, j = put(tok, ch.id, { a, b })
      assert.same({ a }, ids(j))
    end
    admin_ok("POST", "faults/subscriptions", { mode = "case" })
    _, j = put(tok, ch.id, { a })
    assert.same({ a:upper() }, ids(j))
    assert.same({ a }, admin_ok("GET", "subscriptions").channels[ch.id].topics)
    admin_ok("POST", "faults/clear")
    _, j = put(tok, ch.id, { a })
    assert.same({ a }, ids(j))
    local st, e = emu:admin("POST", "faults/subscriptions", { mode = "lie" })
    assert.equal(400, st)
    assert.matches("mode", e.message or e)
    assert.equal(4 + 2, admin_ok("GET", "subscriptions").channels[ch.id].requests)
  end)

  it("checks the deny rule's fields", function()
    for _, body in ipairs { {}, { topic = 5 }, { topic = "v2.a", client_id = "nobody" },
                            { topic = "v2.a", missing = {} }, { topic = "v2.a", missing = { 1 } },
                            { topic = "v2.a", reason = true } } do
      local st, j = emu:admin("POST", "permissions/deny", body)
      assert.equal(400, st, cjson.encode(body))
      assert.matches("field", j.message or j)
    end
  end)

  it("takes --invalid-topics and the fault on the command line", function()
    local rc, _, err = emulator.run_raw({ "--client", "a:b", "--invalid-topics", "maybe" })
    assert.equal(2, rc)
    assert.matches("%-%-invalid%-topics: expected error, omit or rejected", err)
    local e = emulator.start { args = { "--invalid-topics", "rejected",
                                        "--fault", "subscriptions:mode=case,count=1" } }
    finally(function() e:stop() end)
    local t = e:token()
    local _, ch = e:rest(t, "POST", "/channels")
    local _, j = e:rest(t, "PUT", "/channels/" .. ch.id .. "/subscriptions?ignoreErrors=true",
      { { id = "v2.users.a.presence" }, { id = "v2.bad&x" } })
    assert.same({ "V2.USERS.A.PRESENCE", "V2.BAD&X" }, ids(j))
    assert.equal("Rejected", j.entities[2].state)
  end)
end)
