-- Topic names are checked before anything is sent, in notify.new{topics=} and in
-- client:subscribe()/unsubscribe(): Genesys's rules (as the emulator enforces them) and real
-- UTF-8 checking, the same under Lua 5.4 and LuaJIT. No client here is started.
local notify = require "genesys.notify"

local EXPECTED = 'expected a Genesys topic name ("v2." then letters, digits and . _ - ? & :, ' ..
  "at most 200 bytes)"

local function cfg(topics)
  return { gateway = { host = "localhost", port = 1 }, client_id = "a", client_secret = "s",
    topics = topics }
end

-- The error of f(), or nil when it did not raise.
local function err_of(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return nil end
  return tostring(err)
end

-- Every byte of the message is printable ASCII: invalid or control bytes are never printed raw.
local function assert_printable(msg)
  for i = 1, #msg do
    local b = msg:byte(i)
    assert(b >= 32 and b < 127, ("byte %d of the message is %d: %q"):format(i, b, msg))
  end
end

local VALID = {
  "v2.users.8f0a1c2e.presence",
  "v2.routing.queues.ID.conversations",
  "v2.users.ID?presence&routingStatus",
  "v2.a",                                 -- 4 bytes, the shortest
  "v2." .. ("x"):rep(197),                -- 200 bytes, the longest
  "v2.AZaz09._-?&:",                      -- every kind of allowed character
}

-- name, topic, what the message says about it
local INVALID = {
  { "empty after the prefix", "v2.", "(3 bytes)" },
  { "201 bytes", "v2." .. ("x"):rep(198), "(201 bytes)" },
  { "no prefix", "users.x.presence", '(does not start with "v2.")' },
  { "another version", "v3.users.x", '(does not start with "v2.")' },
  { "upper-case prefix", "V2.users.x", '(does not start with "v2.")' },
  { "too short for the prefix", "v2", '(does not start with "v2.")' },
  { "a space", "v2.users.x presence", "(' ' at byte 11 is not allowed)" },
  { "a slash", "v2.users/x", "('/' at byte 9 is not allowed)" },
  { "a star", "v2.users.*", "('*' at byte 10 is not allowed)" },
  { "a quote", 'v2.users."x', "(byte 10 is \\x22, not allowed)" },
  { "a backslash", "v2.users.\\x", "(byte 10 is \\x5c, not allowed)" },
  { "a NUL byte", "v2.users\0.x", "(byte 9 is \\x00, not allowed)" },
  { "a tab", "v2.users.\tx", "(byte 10 is \\x09, not allowed)" },
  { "DEL", "v2.users.\127", "(byte 10 is \\x7f, not allowed)" },
  -- valid UTF-8, but not ASCII: refused by the name rules, not as invalid UTF-8
  { "e acute (U+00E9)", "v2.users.\195\169", "(byte 10 is \\xc3, not allowed)" },
  { "euro sign (U+20AC)", "v2.users.\226\130\172", "(byte 10 is \\xe2, not allowed)" },
  { "U+D7FF (last before the surrogates)", "v2.users.\237\159\191", "(byte 10 is \\xed, not allowed)" },
  { "U+E000 (first after the surrogates)", "v2.users.\238\128\128", "(byte 10 is \\xee, not allowed)" },
  { "U+10000 (an emoji plane)", "v2.users.\240\144\128\128", "(byte 10 is \\xf0, not allowed)" },
  { "U+10FFFF (the last code point)", "v2.users.\244\143\191\191", "(byte 10 is \\xf4, not allowed)" },
}

-- name, topic, byte the invalid sequence starts at
local BAD_UTF8 = {
  { "a lone continuation byte", "v2.users.\128x", 10 },
  { "0xFF", "v2.users.\255", 10 },
  { "0xFE", "v2.users.\254", 10 },
  { "overlong '/' in 2 bytes (C0 AF)", "v2.users.\192\175", 10 },
  { "overlong in 2 bytes (C1 BF)", "v2.users.\193\191", 10 },
  { "overlong '/' in 3 bytes (E0 80 AF)", "v2.users.\224\128\175", 10 },
  { "overlong U+07FF in 3 bytes (E0 9F BF)", "v2.users.\224\159\191", 10 },
  { "overlong '/' in 4 bytes (F0 80 80 AF)", "v2.users.\240\128\128\175", 10 },
  { "overlong U+FFFF in 4 bytes (F0 8F BF BF)", "v2.users.\240\143\191\191", 10 },
  { "a high surrogate (ED A0 80)", "v2.users.\237\160\128", 10 },
  { "a low surrogate (ED BF BF)", "v2.users.\237\191\191", 10 },
  { "above U+10FFFF (F4 90 80 80)", "v2.users.\244\144\128\128", 10 },
  { "a 5-byte lead (F8)", "v2.users.\248\136\128\128\128", 10 },
  { "F5 lead", "v2.users.\245\128\128\128", 10 },
  { "a 2-byte sequence cut at the end", "v2.users.\195", 10 },
  { "a 3-byte sequence cut at the end", "v2.users.\226\130", 10 },
  { "a 4-byte sequence cut at the end", "v2.users.\240\159\152", 10 },
  { "a sequence cut by an ASCII byte", "v2.users.\226\40\161", 10 },
  { "a 4-byte sequence cut by an ASCII byte", "v2.users.\240\159\40\128", 10 },
  { "invalid bytes after valid ones", "v2.\195\169\255", 6 },
  { "in the prefix", "\255v2.users", 1 },
}

describe("genesys.notify topic names", function()
  describe("notify.new{topics=}", function()
    for _, t in ipairs(VALID) do
      it("accepts " .. ("%q"):format(#t > 40 and t:sub(1, 40) .. "..." or t), function()
        local c = notify.new(cfg { "v2.users.other.presence", t })
        c:close()
      end)
    end

    for _, case in ipairs(INVALID) do
      it("refuses " .. case[1] .. ", naming the position", function()
        local err = err_of(notify.new, cfg { "v2.users.fine.presence", "v2.users.fine2.presence", case[2] })
        assert.truthy(err, "not refused")
        assert.truthy(err:find("genesys.notify: topics[3]: " .. EXPECTED .. ", got ", 1, true), err)
        assert.truthy(err:find(case[3], 1, true), err)
        assert_printable(err)
      end)
    end

    for _, case in ipairs(BAD_UTF8) do
      it("refuses invalid UTF-8: " .. case[1], function()
        local err = err_of(notify.new, cfg { "v2.users.fine.presence", "v2.users.fine2.presence", case[2] })
        assert.truthy(err, "not refused")
        assert.truthy(err:find("genesys.notify: topics[3]: " .. EXPECTED .. ", got ", 1, true), err)
        assert.truthy(err:find("(not valid UTF-8 at byte " .. case[3] .. ")", 1, true), err)
        assert_printable(err)
      end)
    end

    it("shows the bad value escaped", function()
      local err = err_of(notify.new, cfg { "v2.users.\255" })
      assert.equals("genesys.notify: topics[1]: " .. EXPECTED ..
        ', got "v2.users.\\xff" (not valid UTF-8 at byte 10)', err)
      err = err_of(notify.new, cfg { 'x"\\\1' })
      assert.truthy(err:find([[got "x\"\\\x01" (does not start with "v2.")]], 1, true), err)
    end)

    it("cuts a long bad value to 48 bytes", function()
      local long = "v2.users.\255" .. ("y"):rep(5000)
      local err = err_of(notify.new, cfg { long })
      assert.truthy(err:find('got "v2.users.\\xff' .. ("y"):rep(38) .. '..." (not valid UTF-8 at byte 10)',
        1, true), err)
      assert.truthy(#err < 300, "message of " .. #err .. " bytes")
      assert_printable(err)
    end)

    it("names the field alone for a single topic string", function()
      local err = err_of(notify.new, cfg("v2 users"))
      assert.truthy(err:find("genesys.notify: topics: " .. EXPECTED .. ', got "v2 users"', 1, true), err)
    end)

    it("points at the caller's line", function()
      local err = err_of(function() notify.new(cfg { "nope" }) end)
      assert.truthy(err:find("^spec/unit/topics_spec%.lua:%d+: genesys%.notify: topics%[1%]: "), err)
    end)

    it("reports a wrong type anywhere before a bad name", function()
      local err = err_of(notify.new, cfg { "not a topic", 3 })
      assert.truthy(err:find("genesys.notify: topics[2]: expected a non-empty string, got 3", 1, true), err)
      err = err_of(notify.new, cfg { "v2.a", "" })
      assert.truthy(err:find('topics[2]: expected a non-empty string, got ""', 1, true), err)
    end)

    it("takes duplicates (a set) and keeps the 20,000-topic limit (20 channels of 1,000)", function()
      local list = {}
      for i = 1, 20000 do list[i] = "v2.users.u" .. i .. ".presence" end
      list[20001] = list[1]
      list[20002] = list[20000]
      notify.new(cfg(list)):close()
      list[20003] = "v2.users.one-too-many.presence"
      local err = err_of(notify.new, cfg(list))
      assert.truthy(err:find("genesys.notify: topics: expected at most 20000 topics (20 channels of 1000, " ..
        "Genesys's limits), got 20001 topics", 1, true), err)
    end)

    it("names channel_budget when it is not an integer from 2 to 1000", function()
      for _, v in ipairs { 1, 1001, 2.5, "20" } do
        local c = cfg { "v2.users.first.presence" }
        c.channel_budget = v
        local err = err_of(notify.new, c)
        assert.truthy(err:find("genesys.notify: channel_budget: expected", 1, true), err)
      end
      local c = cfg { "v2.users.first.presence" }
      c.channel_budget = 2
      notify.new(c):close()
    end)
  end)

  describe("client:subscribe() and unsubscribe()", function()
    local client
    before_each(function() client = notify.new(cfg { "v2.users.first.presence" }) end)
    after_each(function() client:close() end)

    for _, fn in ipairs { "subscribe", "unsubscribe" } do
      it(fn .. "() takes valid names, one or a list with duplicates", function()
        assert.is_true(client[fn](client, VALID[1]))
        assert.is_true(client[fn](client, VALID))
        assert.is_true(client[fn](client, { VALID[2], VALID[2] }))
      end)

      it(fn .. "() refuses a bad name in a list, naming the position", function()
        for _, case in ipairs(INVALID) do
          local err = err_of(client[fn], client, { VALID[1], case[2] })
          assert.truthy(err, case[1] .. ": not refused")
          assert.truthy(err:find("genesys.notify: " .. fn .. "(topics): topics[2]: " .. EXPECTED .. ", got ",
            1, true), err)
          assert.truthy(err:find(case[3], 1, true), err)
          assert_printable(err)
        end
        for _, case in ipairs(BAD_UTF8) do
          local err = err_of(client[fn], client, { VALID[1], VALID[2], case[2] })
          assert.truthy(err, case[1] .. ": not refused")
          assert.truthy(err:find(fn .. "(topics): topics[3]: " .. EXPECTED, 1, true), err)
          assert.truthy(err:find("(not valid UTF-8 at byte " .. case[3] .. ")", 1, true), err)
          assert_printable(err)
        end
      end)

      it(fn .. "() refuses a bad single name and points at the caller's line", function()
        local err = err_of(function() client[fn](client, "v2.users.\237\160\128") end)
        assert.truthy(err:find("^spec/unit/topics_spec%.lua:%d+: genesys%.notify: " .. fn .. "%(topics%): " ..
          "expected a Genesys topic name"), err)
        assert.truthy(err:find('got "v2.users.\\xed\\xa0\\x80" (not valid UTF-8 at byte 10)', 1, true), err)
      end)

      it(fn .. "() reports a wrong type anywhere before a bad name", function()
        local err = err_of(client[fn], client, { "bad name", false })
        local want = fn .. "(topics): topics[2]: expected a non-empty string, got boolean"
        assert.truthy(err:find(want, 1, true), err)
      end)
    end
  end)
end)
