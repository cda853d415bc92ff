-- bench/herd, the thundering-herd simulator: run it with small numbers and check the invariants
-- that must hold whatever the jitter kind. No timing assertions: the simulation runs in simulated
-- milliseconds, so its figures depend only on the seed.
local bindir = os.getenv("GN_BINDIR")
if not bindir or bindir == "" then bindir = "build/lua5.4/bin" end
local herd = bindir .. "/herd"

local CLIENTS, DOWN_S, RATE = 500, 5, 100
local ARGS = ("--clients %d --down %d --rate %d"):format(CLIENTS, DOWN_S, RATE)

local function run(args)
  local f = assert(io.popen(herd .. " " .. args .. " 2>&1"))
  local out = f:read("*a")
  f:close()
  return out
end

-- os.execute's result differs between Lua 5.1/LuaJIT (a number) and 5.2+ (ok, how, code).
local function exit_code(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a >= 256 and a / 256 or a end
  return a and 0 or c
end

-- Parses the Markdown table: { [jitter] = { peak=, peak_up=, total=, t50=, t99=, t100= } }.
local function parse(out)
  local rows = {}
  for line in out:gmatch("[^\n]+") do
    local kind, peak, peak_up, total, _, t50, t99, t100 = line:match(
      "^| (%a+) | (%d+) %(t=%d+ s%) | (%d+) | (%d+) | ([%d.]+) | (%S+) | (%S+) | (%S+) |")
    if kind then
      rows[kind] = { peak = tonumber(peak), peak_up = tonumber(peak_up), total = tonumber(total),
                     t50 = tonumber(t50), t99 = tonumber(t99), t100 = tonumber(t100) }
    end
  end
  return rows
end

local KINDS = { "none", "full", "equal", "decorrelated", "proportional", "seed" }

describe("bench/herd", function()
  local out, rows

  setup(function()
    local f = io.open(herd, "r")
    assert(f, herd .. " not found: build it with `make` (ctests) or `make bench`")
    f:close()
    out = run(ARGS)
    rows = parse(out)
  end)

  it("prints the command that reproduces the table, and one row per jitter kind", function()
    assert.truthy(out:find("Command: `bench/herd --clients 500 --down 5 --rate 100 ", 1, true))
    for _, k in ipairs(KINDS) do
      assert.is_table(rows[k], "no row for " .. k .. " in:\n" .. out)
    end
  end)

  it("brings every client back, never before the server is up nor faster than its rate",
     function()
    -- The 500th acceptance at 100/s falls in the 5th second after the server is back.
    local lower_bound = DOWN_S + math.ceil(CLIENTS / RATE) - 1
    for _, k in ipairs(KINDS) do
      local r = rows[k]
      assert.is_number(r.t100, k .. ": not every client came back")
      assert.is_true(r.t50 >= DOWN_S, k .. ": a client was back while the server was down")
      assert.is_true(r.t50 <= r.t99 and r.t99 <= r.t100, k .. ": percentiles out of order")
      assert.is_true(r.t100 >= lower_bound, k .. ": faster than the admission rate allows")
    end
  end)

  it("counts at least one attempt per client, and peaks within the totals", function()
    for _, k in ipairs(KINDS) do
      local r = rows[k]
      assert.is_true(r.total >= CLIENTS, k .. ": fewer attempts than clients")
      assert.is_true(r.peak <= r.total, k .. ": peak above the total")
      assert.is_true(r.peak_up <= r.peak, k .. ": post-recovery peak above the overall peak")
    end
  end)

  it("never sees more than one attempt per client per second when delays are >= base", function()
    -- none, seed and decorrelated never wait less than base_ms (1000): at most one attempt per
    -- client per 1-second window. (full and equal may wait less and can exceed the client count.)
    for _, k in ipairs({ "none", "seed", "decorrelated" }) do
      assert.is_true(rows[k].peak <= CLIENTS, k .. ": peak above the number of clients")
    end
  end)

  it("shows the herd without jitter: every client in the same second, worse than full jitter",
     function()
    assert.equal(CLIENTS, rows.none.peak)
    assert.equal(CLIENTS, rows.none.peak_up)
    assert.is_true(rows.none.peak_up >= rows.full.peak_up)
    assert.is_true(rows.none.t100 >= rows.full.t100)
  end)

  it("is reproducible for a seed and varies with it", function()
    assert.equal(out, run(ARGS))
    local other = run(ARGS .. " --seed 7 --jitter full")
    assert.are_not.equal(rows.full.total, parse(other).full.total)
  end)

  it("rejects a bad option, naming it", function()
    assert.are_not.equal(0, exit_code(herd .. " --rate 0 >/dev/null 2>&1"))
    assert.truthy(run("--rate 0"):find("--rate", 1, true))
    assert.truthy(run("--jitter bogus"):find("--jitter", 1, true))
  end)
end)
