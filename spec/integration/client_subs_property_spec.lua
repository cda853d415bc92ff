-- Subscription changes are intents reconciled against what the server confirmed: whatever the
-- interleaving of subscribe/unsubscribe calls, requests in flight, REST failures (500, 503, 429,
-- slow answers past the client's timeout), reconnects and channel expiries, once the client
-- settles the emulator's channel holds exactly the wanted set, and no topic was ever reported
-- rejected (every topic here is valid).
--
-- GN_PROP_ROUNDS (default 400, fewer in slow builds and 100 in make test's LuaJIT leg; `make
-- soak` runs thousands) and GN_PROP_SEED make it longer or repeatable; a failure prints the seed
-- and the round.
local emulator = require "support.emulator"
local wait = require "support.wait"

local ROUNDS = tonumber(os.getenv("GN_PROP_ROUNDS") or "") or math.floor(400 / wait.slow())
local SEED = tonumber(os.getenv("GN_PROP_SEED") or "") or os.time()

describe("subscription changes (property)", function()
  local emu
  setup(function() emu = emulator.start { tls = true, clients = { "test-id:test-secret" } } end)
  teardown(function() if emu then emu:stop() end end)

  it("any interleaving with faults and reconnects ends with the server holding the wanted set",
    function()
      math.randomseed(SEED)
      local pool = {}
      for i = 1, 26 do pool[i] = ("v2.users.%08d-prop.presence"):format(i) end
      local client, rec = wait.start_client(emu, {
        backoff = { base_ms = 5, max_ms = 60, multiplier = 2, jitter = "full",
                    reset_after_ms = 50 },
        timeouts = { connect_ms = 3000 * wait.slow(), handshake_ms = 3000 * wait.slow(),
                     http_ms = 150 * wait.slow() },
      }, {}, true)
      finally(function() client:close() end)
      local want, ops, faults, reconnects, expiries = {}, 0, 0, 0, 0
      local delay_fault = true -- dropped if this emulator has no delay fault
      local function connected_last()
        for i = #rec.health, 1, -1 do
          local k = rec.health[i].kind
          if k == "connected" then return true end
          if k == "disconnected" or k == "channel_gone" then return false end
        end
        return false
      end
      local function where(r)
        -- what the client last said about its subscriptions, to read a failure without a rerun
        local tail = {}
        for i = math.max(1, #rec.health - 12), #rec.health do
          local h = rec.health[i]
          tail[#tail + 1] = h.kind .. ":" .. tostring(h.event or h.reason or "") ..
            (h.status and ("/" .. h.status) or "") .. (h.topics and ("[" .. #h.topics .. "]") or "")
        end
        local m, n = client:metrics(), 0
        for _ in pairs(want) do n = n + 1 end
        return ("seed %d, round %d; wanted %d, client wanted %d and confirmed %d; recent health: %s")
          :format(SEED, r, n, m.topics_wanted, m.topics_confirmed, table.concat(tail, " "))
      end
      for r = 1, ROUNDS do
        for _ = 1, math.random(1, 6) do
          local x = math.random()
          if x < 0.10 then
            local status = ({ 500, 503, 429 })[math.random(3)]
            emu:admin("POST", "faults/http", { target = "rest", status = status,
                                               count = math.random(1, 3), retry_after = 0 })
            faults = faults + 1
          elseif x < 0.14 and delay_fault then
            local code = emu:admin("POST", "faults/http", { target = "rest", count = 1,
                                                            delay_ms = 300 * wait.slow() })
            if code ~= 200 then delay_fault = false else faults = faults + 1 end
          elseif x < 0.18 then
            client:reconnect()
            reconnects = reconnects + 1
          elseif x < 0.20 then
            local ch = wait.channel_of(rec)
            if ch then emu:admin("POST", "channels/" .. ch .. "/expire") end
            expiries = expiries + 1
          else
            local list = {}
            for k = 1, math.random(1, 4) do list[k] = pool[math.random(#pool)] end
            local add = math.random() < 0.6
            if add then client:subscribe(list) else client:unsubscribe(list) end
            for _, t in ipairs(list) do want[t] = add or nil end
            ops = ops + 1
          end
          client:poll(math.random(0, 3))
        end
        -- The channel read below is the one the last "connected" item names. The state is
        -- open a moment before that item reaches this thread: after an expiry the new channel
        -- can be open and synced while the last item delivered still names the old channel,
        -- which holds the set from before. Settled means the stream's last word here is
        -- "connected" (nothing since of a channel gone or a socket closed).
        local settled = wait.until_(client, function()
          local m = client:metrics()
          return client:state() == "open" and m.subscriptions_synced and connected_last()
        end, 20000)
        assert(settled, "did not settle: " .. where(r))
        local held = emu:stats().channels[wait.channel_of(rec)].subscriptions
        local got = {}
        for _, t in ipairs(held) do got[t] = true end
        for t in pairs(want) do assert(got[t], t .. " wanted but not held: " .. where(r)) end
        for t in pairs(got) do assert(want[t], t .. " held but not wanted: " .. where(r)) end
        local n = 0
        for _ in pairs(want) do n = n + 1 end
        assert.equals(n, client:metrics().topics_confirmed, where(r))
      end
      assert.equals(0, #rec.where("subscription", function(h) return h.event == "rejected" end),
        "a valid topic was reported rejected (" .. where(ROUNDS) .. ")")
      emu:admin("POST", "faults/clear")
      -- The faults really hit the subscription path: failures were reported and retried.
      assert.is_true(#rec.where("subscription", function(h) return h.event == "failed" end) > 0)
      print(("\n  property: %d rounds, %d changes, %d faults, %d reconnects, %d expiries, seed %d")
        :format(ROUNDS, ops, faults, reconnects, expiries, SEED))
    end)
end)
