-- core.ring_decode_entry (csrc/lua/lbind_ring.c): genesys.notify.resty's readers decode a whole
-- ring entry (one record, or "b" .. N in 8 hex digits and N records each after its 4-byte
-- big-endian length) in one call into event tables, the body decoded by the Lua thread's JSON
-- decoder. Malformed records come back as false and are counted; a malformed entry as 0 items;
-- never a raise or a crash. Runs on Lua 5.4 (and the ASan build) as well as LuaJIT: nginx's specs
-- (spec/integration/resty_spec.lua) run only under LuaJIT.
local core = require "genesys.notify.core"
local decode = core.ring_decode_entry

local floor = math.floor
local math_type = math.type or function() return "float" end -- 5.1/LuaJIT: numbers only

local function be4(n)
  return string.char(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256,
    n % 256)
end

local function entry(recs)
  local t = { string.format("b%08x", #recs) }
  for _, r in ipairs(recs) do t[#t + 1] = be4(#r) .. r end
  return table.concat(t)
end

-- An event record as drain(max, "record") makes it (BODY_AT 1-based in RAW, 0: not known).
local function erec(rms, topic, ch, cid, raw, with_at)
  local at, len = 0, 0
  if with_at then
    local i = raw:find('"eventBody":', 1, true)
    if i then
      at = i + #'"eventBody":'
      len = #raw - at -- up to the closing brace
    end
  end
  return table.concat({ "e", rms, topic, ch, cid, at, len }, "\t") .. "\n" .. raw
end

local function raw_of(n)
  return '{"topicName":"v2.users.u' .. n .. '.presence","eventBody":{"n":' .. n ..
    ',"s":"x' .. n .. '"}}'
end

describe("ring_decode_entry", function()
  it("decodes every record of an entry into the resty event table", function()
    local recs = {}
    for k = 1, 5 do
      recs[k] = erec(1700000000000 + k, "v2.users.u" .. k .. ".presence", "ch-1",
        k % 2 == 0 and ("cid-" .. k) or "", raw_of(k), k ~= 3)
    end
    local out = {}
    local n, bad = decode(entry(recs), 41, true, out)
    assert.are.equal(5, n)
    assert.are.equal(0, bad)
    for k = 1, 5 do
      local ev = out[k]
      assert.are.equal("event", ev.item)
      assert.are.equal(40 + k, ev.seq)
      assert.are.equal("v2.users.u" .. k .. ".presence", ev.topic)
      assert.are.equal("ch-1", ev.channel_id)
      assert.are.equal(1700000000000 + k, ev.received_ms)
      assert.are.equal(math_type(tonumber("17")), math_type(ev.received_ms))
      assert.are.equal(k % 2 == 0 and ("cid-" .. k) or nil, ev.correlation_id)
      assert.are.equal(raw_of(k), ev.raw)
      -- with BODY_AT the body's span, without (k == 3) the whole raw's eventBody
      assert.are.same({ n = k, s = "x" .. k }, ev.body)
    end
  end)

  it("makes raw when it is first read (the same string), then keeps it in the table", function()
    local recs = {}
    for k = 1, 3 do recs[k] = erec(k, "t", "c", "", raw_of(k), true) end
    local out = {}
    assert.are.equal(3, (decode(entry(recs), 7, true, out)))
    local evs = { out[1], out[2], out[3] }
    for k = 1, 3 do assert.is_nil(rawget(evs[k], "raw")) end
    assert.are.equal(raw_of(2), evs[2].raw)
    assert.are.equal(raw_of(2), rawget(evs[2], "raw"))
    assert.is_nil(rawget(evs[3], "raw"))
    local keys = {}
    for key in pairs(evs[2]) do keys[key] = true end
    assert.is_true(keys.raw)
    assert.is_nil(evs[2].no_such_field)
    assert.is_nil(evs[2][1])
    -- out filled again by the next entry: the tables already given keep their own raw
    assert.are.equal(1, (decode(erec(9, "t", "c", "", raw_of(9), true), 10, true, out)))
    assert.are.equal(raw_of(9), out[1].raw)
    assert.are.equal(raw_of(3), evs[3].raw)
    assert.are.equal(raw_of(1), evs[1].raw)
    -- a table whose seq a handler changed to one outside its entry has no raw (never another's)
    local moved = out[1]
    rawset(moved, "raw", nil)
    moved.seq = 99
    assert.is_nil(moved.raw)
  end)

  it("leaves the body out when asked, and clears what a longer entry left in out", function()
    local out = { 1, 2, 3, 4, 5, 6 }
    local n = decode(entry({ erec(5, "t", "c", "", raw_of(1), true),
      erec(6, "t", "c", "", raw_of(2), true) }), 1, false, out)
    assert.are.equal(2, n)
    assert.is_nil(out[1].body)
    assert.are.equal(raw_of(2), out[2].raw)
    assert.is_nil(out[3])
    assert.is_nil(out[6])
  end)

  it("takes a single record as an entry of one, and health records as their text", function()
    local out = {}
    assert.are.equal(1, (decode(erec(7, "t", "c", "id", raw_of(9), true), 3, true, out)))
    assert.are.equal(3, out[1].seq)
    assert.are.same({ n = 9, s = "x9" }, out[1].body)
    local h = 'h\n{"item":"health","kind":"connected"}'
    local j = 'j\n{"item":"event","raw":"{}","fence":true}'
    local n, bad = decode(entry({ h, j }), 10, true, out)
    assert.are.equal(2, n)
    assert.are.equal(0, bad)
    assert.are.equal(h, out[1])
    assert.are.equal(j, out[2])
  end)

  it("an event without a body or with one that does not decode has no body, no error", function()
    local out = {}
    local n, bad = decode(entry({ erec(1, "t", "c", "", '{"topicName":"t"}', false),
      "e\t1\tt\tc\t\t2\t3\n{x}y", erec(1, "t", "c", "", "not json", false),
      erec(2, "t2", "c", "", raw_of(4), true) }), 1, true, out)
    assert.are.equal(4, n)
    assert.are.equal(0, bad)
    for k = 1, 3 do
      assert.are.equal("event", out[k].item)
      assert.is_nil(out[k].body)
    end
    assert.are.equal("not json", out[3].raw)
    -- the records around the ones that do not decode keep theirs (the entry decoded again, each
    -- body protected)
    assert.are.same({ n = 4, s = "x4" }, out[4].body)
    assert.are.equal("t2", out[4].topic)
    assert.are.equal(4, out[4].seq)
  end)

  it("counts malformed records as false and goes on with the next", function()
    local good = erec(1, "t", "c", "", raw_of(1), true)
    local out = {}
    local n, bad = decode(entry({
      "e\t1\tt\tc\n{}",                  -- too few fields
      "e\t1\tt\tc\t\t0\t0",              -- no newline
      "e\t1\tt\tc\t\t90\t5\n{}",         -- the body's span outside the raw text
      "x\nwhat",                          -- an unknown kind
      "",                                 -- empty
      good,
    }), 100, true, out)
    assert.are.equal(6, n)
    assert.are.equal(5, bad)
    for k = 1, 5 do assert.are.equal(false, out[k]) end
    assert.are.equal(105, out[6].seq)
    assert.are.same({ n = 1, s = "x1" }, out[6].body)
  end)

  it("a truncated entry: the records it still holds, false for the others", function()
    local e = entry({ erec(1, "t", "c", "", raw_of(1), true), erec(2, "t", "c", "", raw_of(2), true),
      erec(3, "t", "c", "", raw_of(3), true) })
    local cut = e:sub(1, #e - 10)
    local out = {}
    local n, bad = decode(cut, 1, true, out)
    assert.are.equal(3, n)
    assert.are.equal(1, bad)
    assert.are.equal(raw_of(2), out[2].raw)
    assert.are.equal(false, out[3])
  end)

  it("a malformed entry header gives no item, whatever it claims", function()
    local out = { "left" }
    for _, v in ipairs({ "b", "b0000", "bzzzzzzzz", "b00000000", "bffffffff", "b00000002" ..
      be4(3) .. "e\t1" }) do
      local n, bad = decode(v, 1, true, out)
      assert.are.equal(0, n, v)
      assert.are.equal(0, bad)
      assert.is_nil(out[1])
    end
  end)

  it("refuses wrong arguments with an error naming them", function()
    assert.has_error(function() decode({}, 1, true, {}) end)
    assert.has_error(function() decode("b", "x", true, {}) end)
    assert.has_error(function() decode("b", 1, true, nil) end)
  end)
end)
