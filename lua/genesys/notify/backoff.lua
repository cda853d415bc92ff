--- genesys.notify.backoff: reconnection backoff policies.
-- A policy is created from a table (every field optional, every field validated):
--   local backoff = require "genesys.notify.backoff"
--   local p = backoff.new{ base_ms = 1000, max_ms = 60000, multiplier = 2, jitter = "full" }
--   p:next{ retry_after_ms = 5000 }   --> delay in ms, or nil, "max_retries" | "max_window"
--   p:delays(10)                       --> the first 10 delays of a fresh copy of the policy
-- The engine is the C core's (genesys.notify.core); this module adds the operator helpers.
local core = require "genesys.notify.core"

local _M = { _VERSION = core._VERSION }

local error, type = error, type
local backoff_new = core.backoff_new

--- Creates a policy object; raises, naming the field, on a bad configuration.
function _M.new(policy)
  if policy ~= nil and type(policy) ~= "table" then
    error("backoff: expected a table, got " .. type(policy), 2)
  end
  local ok, p = pcall(backoff_new, policy)
  if not ok then error(p, 2) end
  return p
end

--- The library's default policy, as a table.
function _M.defaults()
  return core.backoff_default()
end

--- Checks a policy table without keeping an engine: true, or nil and the message.
function _M.validate(policy)
  local ok, err = pcall(backoff_new, policy)
  if ok then return true end
  return nil, err
end

--- Summary of n simulated delays of a policy: { delays = {...}, total_ms, max_ms, gave_up }.
function _M.describe(policy, n)
  local p = _M.new(policy)
  local delays, gave_up = p:delays(n or 10)
  local total, max = 0, 0
  for i = 1, #delays do
    total = total + delays[i]
    if delays[i] > max then max = delays[i] end
  end
  return { delays = delays, total_ms = total, max_ms = max, gave_up = gave_up }
end

return _M
