-- The Lua thread's JSON decoder (csrc/lbind_json.c, core.json_decode_text: event bodies are
-- decoded with it at poll()/drain()) against the reference it replaced: jansson's tree converted
-- by push_json (json_decode of the test-only module gn_testjson,
-- spec/support/testjson.c). Same values, same integer/float subtypes, null as the same
-- light userdata, on Lua 5.4 and LuaJIT. What it accepts is what the service thread accepts as an
-- event's body (fuzz/fuzz_json_lua.c checks that both ways): RFC 8259, as jansson reads it, but
-- never a NUL byte (jansson skips one after a number or a literal; the service thread refuses it).
local core = require "genesys.notify.core"
local testjson = require "gn_testjson" -- build/, never installed

local math_type = math.type or function() return "float" end -- 5.1/LuaJIT: numbers only

-- Deep equality with number subtypes; returns true or false and where they differ.
local function same(a, b, path)
  path = path or "$"
  if type(a) ~= type(b) then
    return false, path .. ": " .. type(a) .. " vs " .. type(b)
  end
  if type(a) == "number" then
    if math_type(a) ~= math_type(b) or a ~= b then
      return false, string.format("%s: %s %s vs %s %s", path, math_type(a), tostring(a),
        math_type(b), tostring(b))
    end
    return true
  end
  if type(a) ~= "table" then
    if a ~= b then return false, path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
    return true
  end
  for k, v in pairs(a) do
    local ok, why = same(v, b[k], path .. "." .. tostring(k))
    if not ok then return false, why end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "." .. tostring(k) .. ": missing" end
  end
  return true
end

local function agree(text)
  local ref, err = testjson.json_decode(text)
  assert(ref ~= nil, "the reference refused " .. text .. ": " .. tostring(err))
  local ok, got = pcall(core.json_decode_text, text)
  assert(ok, "decoder raised on " .. text .. ": " .. tostring(got))
  local eq, why = same(got, ref)
  assert(eq, "differs on " .. text .. ": " .. tostring(why))
end

describe("the Lua thread's JSON decoder", function()
  it("gives jansson's values on tricky texts", function()
    local texts = {
      '{}', '[]', '{"a":{},"b":[],"c":[{}]}', 'null', 'true', 'false', '"s"', '0', '-0',
      '{"topicName":"t","eventBody":{"x":1}}',
      -- strings: every short escape, \u in the BMP, surrogate pairs, raw UTF-8, long ones
      [["a\"b\\c\/d\be\ff\ng\rh\ti"]],
      [["\u00e9\u20AC\u0041\u007f\u0080\u07ff\u0800\uffff"]],
      [["\ud834\udd1e \uD83D\uDE00 \udbff\udfff"]],
      '"caf\195\169 \226\130\172 \240\157\132\158"',
      '"' .. string.rep("x", 5000) .. '\\n' .. string.rep("y", 3) .. '"',
      '{"' .. string.rep("k", 300) .. '":"' .. string.rep("v", 301) .. '"}',
      '{"\\u00e9":1,"\\n":2,"":3}',
      -- numbers: integer edges, reals, exponents, whole reals, 2^53
      '[9223372036854775807,-9223372036854775808,123456789012345678,-1]',
      '[1.5,-0.25,1e3,1E-3,2.5e+2,1.0,-1.0,0.0,12345678901234567890.5]',
      '[9007199254740992.0,9007199254740993.0,9007199254740991.0,1e300,-1e300,5e-324]',
      '[100000000000000000000000000000000000000000000000000.0]',
      -- duplicate keys (the last wins), keys in any order, whitespace everywhere
      '{"a":1,"b":2,"a":3}', '{"a":{"x":1},"a":[2]}',
      ' \t\r\n{ "b" : [ 1 , 2 , { } ] ,\n"a" : { "c" : null } } \n',
      -- arrays with nulls (holes in Lua: the null sentinel keeps them)
      '[null,1,null,[null]]',
    }
    -- wide containers: the first 32 members wait on the stack for the table (lbind_json.c),
    -- the rest go straight in; duplicates on both sides of that line (the last wins)
    local members, elements = {}, {}
    for i = 1, 100 do
      members[i] = string.format('"k%d":%d', i % 40, i)
      elements[i] = i % 7 == 0 and "null" or i % 5 == 0 and ('{"i":' .. i .. '}') or tostring(i)
    end
    for _, n in ipairs { 31, 32, 33, 64, 100 } do
      agree("{" .. table.concat(members, ",", 1, n) .. "}")
      agree("[" .. table.concat(elements, ",", 1, n) .. "]")
      agree('{"a":[' .. table.concat(elements, ",", 1, n) .. '],"b":{' ..
        table.concat(members, ",", 1, n) .. '}}')
    end
    -- short strings are pushed from a cache of the last one per slot (lbind_json.c): strings
    -- of one length, first, middle and last byte share a slot and must never be mixed up
    local same_slot = {}
    for i = 0, 99 do same_slot[#same_slot + 1] = string.format('"x%02dxyz"', i) end
    for _ = 1, 2 do
      agree("[" .. table.concat(same_slot, ",") .. "]")
      agree("{" .. table.concat(same_slot, ":1,") .. ":1}")
    end
    for _, t in ipairs(texts) do agree(t) end
  end)

  it("gives jansson's values on deep nesting, and takes what the service thread takes", function()
    agree(string.rep("[", 1000) .. string.rep("]", 1000))
    agree(string.rep('{"a":', 500) .. "1" .. string.rep("}", 500))
    -- jansson parses a message nested 2048 deep, so the service thread queues an event whose body
    -- holds 2047 levels (the message's object is the first): poll() must decode it, not raise
    local function nested(n) return string.rep("[", n) .. "7" .. string.rep("]", n) end
    for _, n in ipairs { 1002, 2047 } do
      local ok, v = pcall(core.json_decode_text, nested(n))
      assert.is_true(ok, v)
      for _ = 1, n do v = v[1] end
      assert.equals(7, v)
    end
    local ok, e = pcall(core.json_decode_text, nested(2048))
    assert.is_false(ok)
    assert.matches("nested too deeply", e)
  end)

  it("gives jansson's values on random JSON", function()
    math.randomseed(1234)
    local pieces = { '"a"', '"\\u00e9\\n"', '"\\ud83d\\ude00"', "0", "-12", "1.25", "3e2", "true",
      "false", "null", '"caf\195\169"', "9223372036854775807", "2.0" }
    local function gen(depth)
      local r = math.random(1, depth > 6 and 2 or 4)
      if r <= 2 then return pieces[math.random(#pieces)] end
      local n, out = math.random(0, 5), {}
      if r == 3 then
        for i = 1, n do out[i] = gen(depth + 1) end
        return "[" .. table.concat(out, " , ") .. "]"
      end
      for i = 1, n do out[i] = '"k' .. math.random(1, 4) .. '":' .. gen(depth + 1) end
      return "{" .. table.concat(out, ",") .. "}"
    end
    for _ = 1, 2000 do agree(gen(0)) end
  end)

  -- On LuaJIT a table is made at the size its place (the key it sits under) had in the body
  -- before: shapes change from one body to the next, and a hint must never change a value.
  it("gives the same values when a place's size changes from one body to the next", function()
    local function ints(n)
      local t = {}
      for i = 1, n do t[i] = tostring(i) end
      return "[" .. table.concat(t, ",") .. "]"
    end
    local function members(n, v)
      local t = {}
      for i = 1, n do t[i] = string.format('"m%d":%s', i, v or i) end
      return "{" .. table.concat(t, ",") .. "}"
    end
    for _, n in ipairs { 0, 1, 3, 40, 2, 100, 1, 33, 32, 5, 0, 64, 1 } do
      local list = {}
      for i = 1, (n % 7) + 1 do list[i] = members((n + i) % 9, ints(i % 3)) end
      local text = string.format('{"a":%s,"o":%s,"l":[%s],"n":[%s,%s]}', ints(n), members(n),
        table.concat(list, ","), ints(n % 5), ints(n))
      agree(text)
      local v = core.json_decode_text(text)
      assert.equals(n, #v.a)
      assert.equals(n, #v.n[2])
      local count = 0
      for _ in pairs(v.o) do count = count + 1 end
      assert.equals(n, count)
    end
  end)

  it("never makes a small container large because its place was large before", function()
    local big = {}
    for i = 1, 1000 do big[i] = tostring(i) end
    big = '{"a":[' .. table.concat(big, ",") .. '],"o":{' .. ('"k":1,'):rep(999) .. '"k":1}}'
    local keep = {}
    collectgarbage()
    collectgarbage()
    local before = collectgarbage("count")
    for i = 1, 500 do -- each small body right after a large one at the same places
      core.json_decode_text(big)
      keep[i] = core.json_decode_text('{"a":[1],"o":{"k":2}}')
    end
    collectgarbage()
    collectgarbage()
    local per = (collectgarbage("count") - before) * 1024 / #keep
    -- three small tables each: a few hundred bytes, even at the largest hint (HINT_MAX); a
    -- hint of 1,000 slots would be 8 KB or more
    assert.is_true(per < 1536, string.format("%.0f bytes per body", per))
    assert.equals(1, #keep[500].a)
    assert.equals(2, keep[500].o.k)
  end)

  it("decodes from a byte offset (init), as the resty ring readers do", function()
    local rec = '1\te\thdr\n{"eventBody":{"a":[1,2]},"t":"x"}'
    local init = rec:find("\n", 1, true) + 1
    assert.same({ eventBody = { a = { 1, 2 } }, t = "x" }, core.json_decode_text(rec, init))
    assert.same({ 2 }, core.json_decode_text("xx[2]", 3))
    assert.is_false((pcall(core.json_decode_text, rec, init - 2))) -- the header is not JSON
    for _, bad in ipairs { 0, -1, #rec + 2 } do
      local ok, err = pcall(core.json_decode_text, rec, bad)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("init out of range", 1, true), err)
    end
  end)

  it("raises on what is not JSON instead of guessing", function()
    for _, t in ipairs({ "", "{", '{"a"}', '{"a":1,}', "[1 2]", '"abc', '"\\x"', '"\\ud834"',
                         '"\\udd1e"', "tru", "nul", "-", "[1] x", '{"a":1}}' }) do
      assert.is_false((pcall(core.json_decode_text, t)), t)
    end
  end)

  it("raises on what the service thread refuses (RFC 8259, jansson's strings)", function()
    for _, t in ipairs({
      -- a NUL byte after a value or inside a string (fuzz_json_lua found "[true\0]")
      "[true\0]", "[1\0,2,3]", '{"a":1.5\0,"b":-2\0}', "[null\0]", "1\0", '"a\0b"',
      -- numbers outside the grammar
      "01", "-01", "[00]", "1.", "1.e5", "1.E5", ".5", "-.5", "1e", "1e+", "+1", "0x10",
      "1e400", "99999999999999999999",
      -- strings: raw control characters, bad UTF-8 (overlong, surrogate, past U+10FFFF, cut),
      -- and \u0000 (jansson refuses it without JSON_ALLOW_NUL)
      '"a\1b"', '"tab\there"', '"\192\128"', '"\237\160\128"', '"\244\144\128\128"', '"\195"',
      '"\255"', '"\\u0000"',
    }) do
      local ok, e = pcall(core.json_decode_text, t)
      assert.is_false(ok, string.format("%q", t))
      assert.matches("invalid JSON", e)
    end
  end)
end)
