-- What core.so exports: only its luaopen_* entry point (the Makefile builds with
-- -fvisibility=hidden), so no gn_/lgn_ name of the core can clash with another library loaded into
-- the same process, nginx's workers first. Read with nm from the build the specs run against.
local build = assert(os.getenv("GN_BUILD"), "GN_BUILD is not set (run through make)")

describe("core.so's exported symbols", function()
  it("are the luaopen_ entry point and no name of the core", function()
    local so = build .. "/genesys/notify/core.so"
    local f = assert(io.popen("nm -D --defined-only '" .. so .. "' 2>&1"))
    local out = f:read("*a")
    f:close()
    local ours = {}
    for name in out:gmatch("%s[TDBRtdbrVWvw]%s+([%w_]+)") do
      if name:match("^l?gn_") or name:match("^luaopen_") then ours[#ours + 1] = name end
    end
    table.sort(ours)
    assert.same({ "luaopen_genesys_notify_core" }, ours, out:sub(1, 2000))
  end)
end)
