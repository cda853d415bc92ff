-- Decoding events for on_event: C (jansson tree -> Lua table) against lua-cjson, side by side.
--
--   lua5.4 bench/decode_bench.lua [build dir] [iterations]      (also runs under luajit)
--
-- Three ways to get ev.body, per message, on the Lua thread:
--   cjson          cjson.decode(raw) in Lua (Debian's lua-cjson)
--   C parse+conv   jansson parse + table building in C (if the Lua thread had to parse)
--   C convert      table building from the jansson tree only: what the client's Lua thread pays,
--                  because the service thread already parsed the message to read topicName
-- Figures are medians of 5 runs; the loop overhead of the cjson run is included (one call).
-- luacheck: no max line length (the sample messages are kept as they arrive, one line each)
local build = arg[1] or ("build/" .. (rawget(_G, "jit") and "luajit" or "lua5.4"))
local N = tonumber(arg[2]) or 20000
package.path = "lua/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath
local core = require "genesys.notify.core"
local testjson = require "gn_testjson" -- build/: the C side, never installed
local cjson = require "cjson"

local presence = [[{"topicName":"v2.users.8f0a1c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b.presence","version":"2","eventBody":{"id":"8f0a1c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b","source":"PURECLOUD","presenceDefinition":{"id":"6a3af858-942f-489d-9700-5f9bcdcdae9b","systemPresence":"Available"},"message":"","modifiedDate":"2026-11-27T10:15:30.123Z","sequence":1234},"metadata":{"CorrelationId":"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"}}]]

local parts = {}
for i = 1, 4 do
  parts[#parts + 1] = string.format([[{"id":"p%d-1111-2222-3333-444455556666","name":"Participant %d","address":"tel:+1555000%04d","startTime":"2026-11-27T10:15:%02d.000Z","connectedTime":"2026-11-27T10:15:%02d.500Z","purpose":"%s","state":"connected","direction":"inbound","held":false,"wrapupRequired":true,"queue":{"id":"q-%d","selfUri":"/api/v2/routing/queues/q-%d"},"attributes":{"crm.id":"%d","priority":"%d"},"provider":"Edge","muted":false,"confined":false,"recording":true,"recordingState":"active","ani":"tel:+1555000%04d","dnis":"tel:+18005550100"}]],
    i, i, i, i, i, i % 2 == 0 and "agent" or "customer", i, i, i * 1000, i, i)
end
local conversation = [[{"topicName":"v2.conversations.calls.1a2b3c4d-0000-1111-2222-333344445555","version":"2","eventBody":{"id":"1a2b3c4d-0000-1111-2222-333344445555","maxParticipants":4,"participants":[]]
  .. table.concat(parts, ",") .. [[],"recordingState":"active","divisions":[{"division":{"id":"d1"},"entities":[{"id":"e1"},{"id":"e2"}]}],"sequence":99},"metadata":{"CorrelationId":"c0ffee00-0000-1111-2222-333344445555"}}]]

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

local function time_cjson(text, n)
  local t0 = core.now_ms()
  local decode = cjson.decode
  for i = 1, n do
    local v = decode(text)
    if i % 256 == 0 then collectgarbage("step") end
    if not v then error("decode") end
  end
  return core.now_ms() - t0
end

local function run(name, text)
  local r = { cjson = {}, pc = {}, conv = {}, text = {} }
  for _ = 1, 5 do
    collectgarbage()
    r.cjson[#r.cjson + 1] = time_cjson(text, N)
    collectgarbage()
    r.pc[#r.pc + 1] = testjson.json_bench(text, N, "parse+convert")
    collectgarbage()
    r.conv[#r.conv + 1] = testjson.json_bench(text, N, "convert")
    collectgarbage()
    r.text[#r.text + 1] = testjson.json_bench(text, N, "text")
  end
  local us = function(ms) return ms * 1000 / N end
  local cj, pc, cv = us(median(r.cjson)), us(median(r.pc)), us(median(r.conv))
  local tx = us(median(r.text))
  print(string.format("%-13s %6d B   cjson %6.2f us   C parse+convert %6.2f us (%4.2fx)"
    .. "   C convert %6.2f us (%4.2fx)   C text decode %6.2f us (%4.2fx)",
    name, #text, cj, pc, pc / cj, cv, cv / cj, tx, tx / cj))
end

print(string.format("decode bench: %s, %d messages per run, median of 5 runs, per message",
  rawget(_G, "jit") and jit.version or _VERSION, N))
run("presence", presence)
run("conversation", conversation)
