-- notify.regions is the official region table: the JS SDK that spec/conformance installs (npm
-- purecloud-platform-client-v2, through `make deps`) ships it as PureCloudRegionHosts.js, and
-- every official SDK is generated from the same list. A region Genesys adds makes this spec fail
-- when the SDK pin moves, rather than a user's configuration.
local notify = require "genesys.notify"

local SDK = "spec/conformance/node_modules/purecloud-platform-client-v2/src/" ..
  "purecloud-platform-client-v2/PureCloudRegionHosts.js"

-- The SDK's table as region name -> domain (its keys spell the region with underscores).
local function official()
  local f = io.open(SDK, "rb")
  assert(f, SDK .. " is missing: run `make deps` (npm ci in spec/conformance)")
  local text = f:read("*a")
  f:close()
  local t, n = {}, 0
  for key, domain in text:gmatch("([%w_]+)%s*:%s*'([^']+)'") do
    t[key:gsub("_", "-")] = domain
    n = n + 1
  end
  assert(n >= 18, "could not read the region table of " .. SDK .. " (" .. n .. " entries)")
  return t
end

describe("notify.regions", function()
  it("equals the official SDK's region table, entry for entry", function()
    local want = official()
    for region, domain in pairs(want) do
      assert.equals(domain, notify.regions[region], "region " .. region .. " of the official table")
    end
    for region, domain in pairs(notify.regions) do
      assert.equals(want[region], domain, "region " .. region .. " is not in the official table")
    end
  end)

  it("takes the EU sovereign cloud region", function()
    local ok, client = pcall(notify.new, { region = "eusc-de-east-1", client_id = "a",
      client_secret = "s" })
    assert(ok, client)
    client:close()
  end)
end)
