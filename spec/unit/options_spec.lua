-- The one table of options (GN_CONF_OPTIONS in csrc/core/conf.h, GN_LEASE_OPTIONS in
-- csrc/fleet/lease.h; core.options): every row is documented (docs/client.md, docs/fleet.md for
-- the fleet's), and a value out of its range, outside its choices or of the wrong type raises
-- naming the field and what was expected. Generated from the table: a new row is tested here
-- without a word added.
local notify = require "genesys.notify"

local root = os.getenv("GN_ROOT") or "."
local function read(path)
  local f = assert(io.open(root .. "/" .. path, "r"))
  local s = f:read("*a")
  f:close()
  return s
end

local base = { gateway = { host = "localhost", port = 1 }, client_id = "a", client_secret = "s" }

-- A valid configuration with value at the row's dotted path (and what its table needs).
local function with(o, value)
  local cfg = {}
  for k, v in pairs(base) do cfg[k] = v end
  if o.docfile == "fleet" then cfg.redis = { url = "redis://127.0.0.1:6379/0", key = "k" } end
  if o.field:match("^resync%.") then cfg.resync = { families = true } end
  local t, path = cfg, {}
  for part in o.field:gmatch("[^.]+") do path[#path + 1] = part end
  for i = 1, #path - 1 do
    t[path[i]] = t[path[i]] or {}
    t = t[path[i]]
  end
  t[path[#path]] = value
  return cfg
end

-- Values the row must refuse, each with what the message must say it got.
local function bad_values(o)
  if o.kind == "flag" then return { "yes", 1 } end
  if o.kind == "choice" then return { "nonsense", 3 } end
  if o.kind == "string" or o.kind == "pemfile" or o.kind == "label" then return { 42, "" } end
  local out = { "10", o.hi + 1, o.lo - 1 }
  if o.kind ~= "fraction" then out[#out + 1] = o.lo + 0.5 end -- not an integer
  return out
end

-- A value the row must take.
local function good_value(o)
  if o.kind == "flag" then return not o.default end
  if o.kind == "choice" then return o.choices:match("[^|]+$") end
  if o.kind == "pemfile" then return root .. "/build/certs/ca.pem" end
  if o.kind == "string" or o.kind == "label" then return "x" end
  return o.lo
end

describe("the table of options", function()
  local rows = {}
  for field, o in pairs(notify.options) do rows[#rows + 1] = o; assert.equals(field, o.field) end
  table.sort(rows, function(a, b) return a.index < b.index end)

  it("has the client's, resync's, renewal's and the fleet's options, strings, flags and choices "
    .. "among them", function()
    local want = { "timeouts.connect_ms", "overflow", "tls.verify", "tls.ca_file", "name",
      "renew.rule", "renew.at", "resync.budget", "resync.window_ms", "redis.key",
      "redis.lease_ms", "redis.maxlen" }
    for _, f in ipairs(want) do assert.truthy(notify.options[f], f) end
  end)

  it("documents every row (docs/client.md; the fleet's in docs/fleet.md)", function()
    local docs = { client = read("docs/client.md"), fleet = read("docs/fleet.md") }
    for _, o in ipairs(rows) do
      local doc = assert(docs[o.docfile], o.field)
      assert.truthy(doc:find("\n| `" .. o.field .. "` |", 1, true),
        o.field .. " has no row in docs/" .. o.docfile .. ".md's table of options")
    end
  end)

  it("refuses a bad value of each row, naming the field and what was expected", function()
    local n = 0
    for _, o in ipairs(rows) do
      for _, v in ipairs(bad_values(o)) do
        local ok, err = pcall(notify.config, with(o, v))
        assert.is_false(ok, o.field .. " took " .. tostring(v))
        assert.truthy(err:find("genesys.notify: " .. o.field .. ": expected ", 1, true),
          o.field .. " = " .. tostring(v) .. ": " .. tostring(err))
        n = n + 1
      end
    end
    assert.truthy(n >= 2 * #rows)
  end)

  it("takes a good value of each row into the normalized table under its key", function()
    for _, o in ipairs(rows) do
      local v = good_value(o)
      local ok, norm = pcall(notify.config, with(o, v))
      assert.is_true(ok, o.field .. ": " .. tostring(norm))
      local got = o.docfile == "fleet" and norm.redis[o.key] or norm[o.key]
      assert.equals(v, got, o.field)
    end
  end)
end)
