-- Checks of the delivery guarantee against a published stream of the emulator
-- (`POST publish {topic, count, rate}`: every event carries its `sequence` in the stream and
-- `published_ms`, the wall-clock time the emulator generated it): every event delivered at most
-- once, and every event that did not arrive generated inside an interval the client reported
-- (health "restored" deaf_from_ms..deaf_to_ms, or "gap").
local wait = require "support.wait"

local _M = {}

--- Starts a stream of count events on topic at rate per second; returns its id.
-- size: frame bytes (default the emulator's --event-size).
function _M.publish(emu, topic, count, rate, size)
  local code, body = emu:admin("POST", "publish", { topic = topic, count = count, rate = rate,
                                                    size = size })
  assert(code == 200, "publish stream refused: " .. tostring(code))
  return math.floor(body.stream)
end

--- Polls until the stream is done and the client has what it will get (quiet_ms without a new
-- event after the emulator generated the last one).
function _M.drain(emu, client, rec, stream, quiet_ms)
  local last_n, last_change = -1, wait.now_ms()
  assert(wait.until_(client, function()
    if #rec.events ~= last_n then last_n, last_change = #rec.events, wait.now_ms() end
    if wait.now_ms() - last_change <= quiet_ms then return false end
    local _, st = emu:admin("GET", ("publish/%d"):format(stream))
    return st.done
  end, 120000), "the stream did not end")
end

--- The reported deaf intervals (restored and gap items), as {from, to} in wall-clock ms.
function _M.intervals(rec)
  local out = {}
  for _, h in ipairs(rec.kinds.restored or {}) do out[#out + 1] = { h.deaf_from_ms, h.deaf_to_ms } end
  for _, h in ipairs(rec.kinds.gap or {}) do out[#out + 1] = { h.deaf_from_ms, h.deaf_to_ms } end
  return out
end

--- Checks the guarantee for stream (count events); returns received, missing, duplicates.
function _M.check(rec, stream, count)
  local seen, dup = {}, 0
  for _, ev in ipairs(rec.events) do
    local b = ev.body
    if b.stream == stream then
      if seen[b.sequence] then dup = dup + 1 end
      seen[b.sequence] = b.published_ms or true
    end
  end
  assert(dup == 0, dup .. " events delivered twice")
  local missing, outside = {}, {}
  local iv = _M.intervals(rec)
  -- The publish times of the events around each missing one bound it from both sides: an event
  -- generated before a received event of the same socket was sent before it.
  for s = 1, count do
    if not seen[s] then missing[#missing + 1] = s end
  end
  return seen, missing, iv, outside
end

--- Places every sequence 1..count missing from seen (sequence -> anything) against the
-- intervals iv ({from, to} wall-clock ms): returns the missing sequences, those published outside
-- every interval, and inside[s] = the index in iv of the interval holding s.
function _M.lost(seen, count, iv, published_ms_of)
  local missing, outside, inside = {}, {}, {}
  for s = 1, count do
    if not seen[s] then
      missing[#missing + 1] = s
      local t = published_ms_of(s)
      for k, i in ipairs(iv) do
        if t and t >= i[1] and t <= i[2] then inside[s] = k; break end
      end
      if not inside[s] then outside[#outside + 1] = s end
    end
  end
  return missing, outside, inside
end

--- Formats the lost events outside every interval (at most 10) and the intervals (with near:
-- only those within near ms of one of these events), for a message.
function _M.describe(outside, iv, published_ms_of, near)
  local bad, ivs = {}, {}
  for k = 1, math.min(#outside, 10) do
    bad[k] = ("#%d at %s"):format(outside[k], tostring(published_ms_of(outside[k])))
  end
  for _, i in ipairs(iv) do
    local show = not near
    for k = 1, near and math.min(#outside, 10) or 0 do
      local t = published_ms_of(outside[k]) or 0
      if t >= i[1] - near and t <= i[2] + near then show = true end
    end
    if show then ivs[#ivs + 1] = ("[%.0f, %.0f]"):format(i[1], i[2]) end
  end
  return table.concat(ivs, " ") .. ": " .. table.concat(bad, ", ")
end

--- Every missing event's publish time inside a reported interval; returns how many missed.
function _M.assert_covered(rec, stream, count, published_ms_of)
  local seen, _, iv = _M.check(rec, stream, count)
  local missing, outside = _M.lost(seen, count, iv, published_ms_of)
  assert(#outside == 0, #outside .. " of " .. #missing .. " lost events outside every reported "
    .. "interval " .. _M.describe(outside, iv, published_ms_of))
  local n = 0
  for _ in pairs(seen) do n = n + 1 end
  return #missing, n
end

return _M
