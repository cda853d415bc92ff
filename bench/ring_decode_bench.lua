-- A genesys.notify.resty reader's decode of ring entries, without nginx: the Lua path it had
-- (per record: string.byte of its length, six finds, five subs, two tonumber, a table, a pcall
-- of the body decode) against core.ring_decode_entry (one C call per entry), on the same
-- entries of 32 records, each event then given its worker field as the reader's deliver()
-- does. CPU µs per event (os.clock, garbage collection included), medians of 5 runs.
--
--   luajit bench/ring_decode_bench.lua [build dir] [entries]      (also runs under lua5.4)
-- luacheck: no max line length (the sample messages are kept as they arrive, one line each)
local build = arg[1] or ("build/" .. (rawget(_G, "jit") and "luajit" or "lua5.4"))
local N = tonumber(arg[2]) or 3000
package.cpath = build .. "/?.so;" .. package.cpath
local core = require "genesys.notify.core"
local json_decode = core.json_decode_text
local str_find, str_sub, str_byte, str_char = string.find, string.sub, string.byte, string.char
local floor = math.floor

local presence = [[{"topicName":"v2.users.8f0a1c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b.presence","version":"2","eventBody":{"id":"8f0a1c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b","source":"PURECLOUD","presenceDefinition":{"id":"6a3af858-942f-489d-9700-5f9bcdcdae9b","systemPresence":"Available"},"message":"","modifiedDate":"2026-11-27T10:15:30.123Z","sequence":%d},"metadata":{"CorrelationId":"0b1c2d3e-4f50-6172-8394-%012d"}}]]
local pad = string.rep("x", 560)
local large = [[{"topicName":"v2.users.8f0a1c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b.presence","version":"2","eventBody":{"id":"8f0a1c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b","source":"PURECLOUD","presenceDefinition":{"id":"6a3af858-942f-489d-9700-5f9bcdcdae9b","systemPresence":"Available"},"message":"]] .. pad .. [[","modifiedDate":"2026-11-27T10:15:30.123Z","sequence":%d},"metadata":{"CorrelationId":"0b1c2d3e-4f50-6172-8394-%012d"}}]]

-- An entry of 32 records as the holder writes it.
local function entry(template)
  local t = { string.format("b%08x", 32) }
  for i = 1, 32 do
    local raw = string.format(template, i, i)
    local at = raw:find('"eventBody":', 1, true) + #'"eventBody":'
    local bend = raw:find(',"metadata"', 1, true)
    local rec = table.concat({ "e", 1764238530123 + i, "v2.users.8f0a1c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b.presence",
      "streaming-0a1b2c3d", string.format("0b1c2d3e-4f50-6172-8394-%012d", i), at, bend - at }, "\t") ..
      "\n" .. raw
    local len = #rec
    t[#t + 1] = str_char(floor(len / 16777216) % 256, floor(len / 65536) % 256,
      floor(len / 256) % 256, len % 256) .. rec
  end
  return table.concat(t)
end

-- The reader's Lua path before ring_decode_entry (resty.lua's event_fields and decode_record).
local function event_fields(v, i)
  local t2 = str_find(v, "\t", (i or 1) + 2, true)
  local t3 = t2 and str_find(v, "\t", t2 + 1, true)
  local t4 = t3 and str_find(v, "\t", t3 + 1, true)
  local t5 = t4 and str_find(v, "\t", t4 + 1, true)
  local t6 = t5 and str_find(v, "\t", t5 + 1, true)
  local nl = t6 and str_find(v, "\n", t6 + 1, true)
  return t2, t3, t4, t5, t6, nl
end

local function lua_path(v, s0, sink)
  local n, p = tonumber(str_sub(v, 2, 9), 16), 10
  for s = s0, s0 + n - 1 do
    local b1, b2, b3, b4 = str_byte(v, p, p + 3)
    local len = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
    local i, j = p + 4, p + 3 + len
    p = p + 4 + len
    local t2, t3, t4, t5, t6, nl = event_fields(v, i)
    local at = tonumber(str_sub(v, t5 + 1, t6 - 1)) or 0
    local bi = nl + at
    local bj = bi + (tonumber(str_sub(v, t6 + 1, nl - 1)) or 0) - 1
    local rec = { item = "event", seq = s, topic = str_sub(v, t2 + 1, t3 - 1),
      channel_id = str_sub(v, t3 + 1, t4 - 1), received_ms = tonumber(str_sub(v, i + 2, t2 - 1)),
      correlation_id = t5 > t4 + 1 and str_sub(v, t4 + 1, t5 - 1) or nil,
      raw = str_sub(v, nl + 1, j) }
    rec.worker = 1 -- deliver's order: the worker's pid, then the body
    local ok, body = pcall(json_decode, v, bi, bj)
    rec.body = ok and body or nil
    sink[1] = rec
  end
end

local out = {}
local function c_path(v, s0, sink)
  local n = core.ring_decode_entry(v, s0, true, out)
  for k = 1, n do out[k].worker = 1 end -- deliver's
  sink[1] = out[n]
end

local function median(t)
  table.sort(t)
  return t[floor((#t + 1) / 2)]
end

local function run(fn, v)
  local sink, times = {}, {}
  for _ = 1, 5 do
    collectgarbage()
    local t0 = os.clock()
    for k = 1, N do fn(v, k * 32, sink) end
    times[#times + 1] = (os.clock() - t0) / (N * 32) * 1e6
  end
  return median(times)
end

print(string.format("ring entries of 32 records, %d entries per run, %s; CPU µs per event, median of 5",
  N, rawget(_G, "jit") and jit.version or _VERSION))
print("| event | Lua path (before) | ring_decode_entry | ratio |")
print("|---|---:|---:|---:|")
for _, c in ipairs { { "about 1 KB", large }, { "about 450 B", presence } } do
  local v = entry(c[2])
  local a, b = run(lua_path, v), run(c_path, v)
  print(string.format("| %s (%d B) | %.2f | %.2f | %.2fx |", c[1],
    #string.format(c[2], 1, 1), a, b, b / a))
end
