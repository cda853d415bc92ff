-- spec/helper.lua makes finally() accumulate (busted 2 keeps only the last one of a test): a
-- test's every cleanup runs, in reverse order. The second test reads what the first one's
-- cleanups did (busted runs a file's tests in order).
local order = {}

describe("finally() in the specs", function()
  it("registers three cleanups", function()
    finally(function() order[#order + 1] = "first" end)
    finally(function() order[#order + 1] = "second" end)
    finally(function() order[#order + 1] = "third" end)
  end)

  it("ran all three, the last registered first", function()
    assert.same({ "third", "second", "first" }, order)
  end)
end)
