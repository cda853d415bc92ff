-- shard.lua K N: the spec files of part K of N (1 <= K <= N), one per line, for running the
-- specs of one build as N busted processes side by side (make sanitize). Every spec file under
-- spec/unit and spec/integration is in exactly one part.
--
-- The parts are balanced by how long each file took: spec/support/spec_seconds.txt, written by
-- `make spec-seconds` (a TSan run of every spec; the ASan times are much the same, since the
-- long files wait on timers). A file it does not list counts as DEFAULT seconds. Files are dealt
-- longest first, each to the part with the least so far; ties go to the lower part, and the
-- part that also runs the C tests (part 1) starts with their time.
local DEFAULT = 10
local C_TESTS = "test-c" -- the key for the C tests' time in spec_seconds.txt

local K, N = tonumber(arg[1]), tonumber(arg[2])
if not (K and N and K >= 1 and K <= N and K % 1 == 0 and N % 1 == 0) then
  io.stderr:write("usage: lua shard.lua K N   (1 <= K <= N: part K of N)\n")
  os.exit(2)
end
local root = arg[0]:match("^(.*)/spec/support/[^/]*$") or "."

local seconds = {}
local f = io.open(root .. "/spec/support/spec_seconds.txt")
if f then
  for line in f:lines() do
    local s, name = line:match("^%s*([%d.]+)%s+(%S+)")
    if s then seconds[name] = tonumber(s) end
  end
  f:close()
end

local files = {}
for _, dir in ipairs { "spec/unit", "spec/integration" } do
  local p = io.popen("cd " .. root .. " && ls " .. dir .. "/*_spec.lua 2>/dev/null")
  for name in p:lines() do files[#files + 1] = name end
  p:close()
end
if #files == 0 then
  io.stderr:write("shard.lua: no spec files under " .. root .. "/spec\n")
  os.exit(1)
end
local function weight(name) return seconds[name] or DEFAULT end
table.sort(files, function(a, b)
  local wa, wb = weight(a), weight(b)
  if wa ~= wb then return wa > wb end
  return a < b
end)

local total, parts = {}, {}
for k = 1, N do total[k], parts[k] = 0, {} end
total[1] = seconds[C_TESTS] or 0
for _, name in ipairs(files) do
  local best = 1
  for k = 2, N do if total[k] < total[best] then best = k end end
  total[best] = total[best] + weight(name)
  parts[best][#parts[best] + 1] = name
end
table.sort(parts[K])
io.write(table.concat(parts[K], "\n"), "\n")
io.stderr:write(("shard.lua: part %d of %d, %d spec files, about %d s by spec_seconds.txt\n")
  :format(K, N, #parts[K], math.floor(total[K] + 0.5)))
