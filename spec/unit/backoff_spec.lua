-- The backoff policy engine through its Lua API (genesys.notify.backoff), under Lua 5.4 and
-- LuaJIT. Statistical checks use fixed seeds, so they are reproducible; tolerances are stated
-- next to each check.
local backoff = require "genesys.notify.backoff"

local KINDS = { "none", "full", "equal", "decorrelated", "proportional", "seed" }
local BASE, MAX, PCT = 100, 10000, 20

local function policy(kind, extra)
  local t = { base_ms = BASE, max_ms = MAX, multiplier = 2, jitter = kind, jitter_pct = PCT,
              seed = 12345 }
  for k, v in pairs(extra or {}) do t[k] = v end
  return backoff.new(t)
end

-- The un-jittered delay of attempt n.
local function exp_delay(n, mult)
  return math.min(MAX, BASE * (mult or 2) ^ (n - 1))
end

-- Bounds of the nth delay for a kind (prev: the previous delay, for decorrelated).
local function bounds(kind, n, prev)
  local d = exp_delay(n)
  if kind == "none" then return d, d
  elseif kind == "full" then return 0, d
  elseif kind == "equal" then return d / 2, d
  elseif kind == "decorrelated" then return BASE, math.min(MAX, math.max(BASE, 3 * prev))
  elseif kind == "proportional" then return d * (1 - PCT / 100), math.min(MAX, d * (1 + PCT / 100))
  elseif kind == "seed" then return d, math.min(MAX, d * 1.5)
  end
end

-- Mean of the kth delay over m fresh cycles.
local function mean_at(p, k, m)
  local sum = 0
  for _ = 1, m do
    p:reset()
    local d
    for _ = 1, k do d = p:next() end
    sum = sum + d
  end
  return sum / m
end

describe("backoff policy", function()
  for _, kind in ipairs(KINDS) do
    describe("jitter '" .. kind .. "'", function()
      it("keeps every delay within its bounds and under the cap", function()
        local p = policy(kind)
        for _ = 1, 200 do
          p:reset()
          local prev = BASE
          for n = 1, 20 do
            local d = p:next()
            assert.is_number(d)
            local lo, hi = bounds(kind, n, prev)
            assert.is_true(d >= lo - 1e-9 and d <= hi + 1e-9,
              ("attempt %d: %g not in [%g, %g]"):format(n, d, lo, hi))
            assert.is_true(d <= MAX, "cap broken: " .. d)
            prev = d
          end
        end
      end)

      it("has the formula's mean with a fixed seed (tolerance 2% of the mean)", function()
        local p = policy(kind)
        local m = 20000
        if kind == "decorrelated" then
          -- first delay: U(base, 3 * base), mean 2 * base
          local got = mean_at(p, 1, m)
          assert.is_true(math.abs(got - 2 * BASE) <= 0.02 * 2 * BASE, "mean " .. got)
        else
          local d = exp_delay(4)           -- 800 ms, below the cap
          local factor = ({ none = 1, full = 0.5, equal = 0.75, proportional = 1, seed = 1.25 })[kind]
          local want = d * factor
          local got = mean_at(p, 4, m)
          assert.is_true(math.abs(got - want) <= 0.02 * want,
            ("mean %g, formula %g"):format(got, want))
        end
      end)

      if kind ~= "decorrelated" then
        it("grows by the multiplier from one attempt to the next (means, tolerance 3%)", function()
          local p = backoff.new{ base_ms = 10, max_ms = 1e6, multiplier = 3, jitter = kind,
                                 seed = 7 }
          local m3, m4 = mean_at(p, 3, 20000), mean_at(p, 4, 20000)
          assert.is_true(math.abs(m4 / m3 - 3) <= 0.09, "ratio " .. (m4 / m3))
        end)
      else
        it("grows towards the cap from the previous delay", function()
          local p = policy(kind)
          local means = {}
          for k = 1, 6 do means[k] = mean_at(p, k, 4000) end
          for k = 2, 6 do assert.is_true(means[k] > means[k - 1], "mean did not grow at " .. k) end
        end)
      end

      it("reaches and holds the cap after many attempts", function()
        local p = policy(kind)
        local top = 0
        for _ = 1, 60 do
          local d = p:next()
          assert.is_number(d)
          top = math.max(top, d)
        end
        assert.is_true(top <= MAX)
        if kind ~= "full" then assert.is_true(top >= MAX * 0.5, "never near the cap: " .. top) end
      end)
    end)
  end

  it("is reproducible with a seed and differs without one", function()
    local a = policy("full"):delays(30)
    local b = policy("full"):delays(30)
    assert.are.same(a, b)
    local c = backoff.new{ jitter = "full" }:delays(30)
    local d = backoff.new{ jitter = "full" }:delays(30)
    assert.are_not.same(c, d)
  end)

  it("delays(n) previews a fresh copy without touching the policy's own state", function()
    local p = policy("none")
    p:next(); p:next()
    assert.are.same({ 100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000 }, p:delays(9))
    assert.are.equal(2, p:attempt())
    assert.are.equal(400, p:next())
  end)

  describe("give-up", function()
    it("stops after max_retries attempts in a cycle", function()
      local p = policy("none", { max_retries = 3 })
      assert.are.equal(100, p:next())
      assert.are.equal(200, p:next())
      assert.are.equal(400, p:next())
      local d, why = p:next()
      assert.is_nil(d)
      assert.are.equal("max_retries", why)
      assert.is_nil((p:next()))
      local list, reason = p:delays(10)
      assert.are.same({ 100, 200, 400 }, list)
      assert.are.equal("max_retries", reason)
      p:reset()
      assert.are.equal(100, p:next())
    end)

    it("stops when the next attempt would start past max_window_ms from the first failure", function()
      local p = policy("none", { max_window_ms = 1000 })
      assert.are.equal(100, p:next{ now_ms = 0 })
      assert.are.equal(200, p:next{ now_ms = 100 })
      assert.are.equal(400, p:next{ now_ms = 300 })   -- 300 + 400 = 700 <= 1000
      local d, why = p:next{ now_ms = 700 }            -- 700 + 800 > 1000
      assert.is_nil(d)
      assert.are.equal("max_window", why)
      assert.are.same({ 100, 200, 400 }, (p:delays(10)))
    end)

    it("never gives up by default", function()
      local list, reason = backoff.new{ seed = 1 }:delays(10000)
      assert.are.equal(10000, #list)
      assert.is_nil(reason)
    end)
  end)

  describe("reset after a stable connection", function()
    it("keeps counting when the connection drops before reset_after_ms", function()
      local p = policy("none", { reset_after_ms = 5000 })
      p:next{ now_ms = 0 }; p:next{ now_ms = 100 }      -- 100, 200
      p:succeeded{ now_ms = 300 }
      assert.are.equal(400, p:next{ now_ms = 300 + 4999 })
    end)

    it("starts over when the connection stayed up reset_after_ms", function()
      local p = policy("none", { reset_after_ms = 5000 })
      p:next{ now_ms = 0 }; p:next{ now_ms = 100 }
      p:succeeded{ now_ms = 300 }
      assert.are.equal(100, p:next{ now_ms = 5300 })
      assert.are.equal(1, p:attempt())
    end)

    it("restarts the give-up window only with the reset", function()
      local p = policy("none", { reset_after_ms = 5000, max_window_ms = 1000 })
      p:next{ now_ms = 0 }                               -- window starts at 0
      p:succeeded{ now_ms = 100 }
      local d, why = p:next{ now_ms = 900 }              -- flap: 900 + 200 > 1000
      assert.is_nil(d); assert.are.equal("max_window", why)
      p:reset()
      p:next{ now_ms = 10000 }
      p:succeeded{ now_ms = 10100 }
      assert.are.equal(100, p:next{ now_ms = 20000 })    -- stable: new window
    end)
  end)

  describe("Retry-After", function()
    it("is a floor for the next delay", function()
      local p = policy("none")
      assert.are.equal(5000, p:next{ retry_after_ms = 5000 })
      assert.are.equal(200, p:next{ retry_after_ms = 50 })   -- below the computed delay: no effect
    end)

    it("is capped by retry_after_max_ms so no server can park the client for ever", function()
      local p = policy("full", { retry_after_max_ms = 30000 })
      assert.are.equal(30000, p:next{ retry_after_ms = 86400000 })
    end)

    it("applies to every jitter kind", function()
      for _, kind in ipairs(KINDS) do
        local p = policy(kind)
        for _ = 1, 5 do assert.is_true(p:next{ retry_after_ms = 7000 } >= 7000, kind) end
      end
    end)
  end)

  describe("configuration errors name the field", function()
    local cases = {
      { { base_ms = "100" }, "backoff.base_ms", "expected a number" },
      { { base_ms = -1 }, "backoff.base_ms", "> 0" },
      { { base_ms = 0 }, "backoff.base_ms", "> 0" },
      { { max_ms = 0 / 0 }, "backoff.max_ms", "NaN" },
      { { max_ms = math.huge }, "backoff.max_ms", "infinity" },
      { { max_window_ms = -math.huge }, "backoff.max_window_ms", "infinity" },
      { { multiplier = 0.5 }, "backoff.multiplier", "between 1 and" },
      { { multiplier = 0 / 0 }, "backoff.multiplier", "finite" },
      { { base_ms = 5000, max_ms = 1000 }, "backoff.base_ms", "at most max_ms" },
      { { jitter = "fuzzy" }, "backoff.jitter", "expected one of" },
      { { jitter = 3 }, "backoff.jitter", "expected a string" },
      { { jitter_pct = 150 }, "backoff.jitter_pct", "between 0 and 100" },
      { { max_retries = 1.5 }, "backoff.max_retries", "non-negative integer" },
      { { max_retries = -1 }, "backoff.max_retries", "non-negative integer" },
      { { max_retries = "3" }, "backoff.max_retries", "non-negative integer" },
      { { reset_after_ms = -5 }, "backoff.reset_after_ms", ">= 0" },
      { { retry_after_max_ms = 1 / 0 }, "backoff.retry_after_max_ms", "infinity" },
      { { seed = -3 }, "backoff.seed", "non-negative integer" },
      { { base_ms = 100, bogus = 1 }, "backoff.bogus", "unknown field" },
      { { [1] = 100 }, "backoff", "string keys" },
    }
    for _, c in ipairs(cases) do
      it(("rejects %s (%s)"):format(c[2], c[3]), function()
        local ok, err = pcall(backoff.new, c[1])
        assert.is_false(ok)
        assert.is_truthy(err:find(c[2], 1, true), err)
        assert.is_truthy(err:find(c[3], 1, true), err)
        local valid, msg = backoff.validate(c[1])
        assert.is_nil(valid)
        assert.is_truthy(msg:find(c[2], 1, true), msg)
      end)
    end

    it("rejects a policy that is not a table", function()
      local ok, err = pcall(backoff.new, 42)
      assert.is_false(ok)
      assert.is_truthy(err:find("backoff: expected a table, got number", 1, true), err)
    end)

    it("rejects bad next() contexts", function()
      local p = policy("none")
      assert.has_error(function() p:next{ retry_after_ms = -1 } end)
      assert.has_error(function() p:next{ now_ms = "soon" } end)
    end)
  end)

  it("reports its defaults and its policy", function()
    local d = backoff.defaults()
    assert.are.equal("table", type(d))
    for _, k in ipairs{ "base_ms", "max_ms", "multiplier", "jitter", "jitter_pct", "max_retries",
                        "max_window_ms", "reset_after_ms", "retry_after_max_ms" } do
      assert.is_not_nil(d[k], k)
    end
    local p = backoff.new{ jitter = "equal", base_ms = 250 }
    local t = p:policy()
    assert.are.equal("equal", t.jitter)
    assert.are.equal(250, t.base_ms)
    assert.are.equal(d.max_ms, t.max_ms)
    assert.is_truthy(tostring(p):find("genesys.notify.backoff(equal", 1, true))
  end)

  it("describes a policy for operators", function()
    local s = backoff.describe({ base_ms = 100, max_ms = 1000, jitter = "none", max_retries = 4 }, 10)
    assert.are.same({ 100, 200, 400, 800 }, s.delays)
    assert.are.equal(1500, s.total_ms)
    assert.are.equal(800, s.max_ms)
    assert.are.equal("max_retries", s.gave_up)
  end)
end)
