-- Counting handlers for spec/integration/resty_spec.lua (GN_HANDLER_MODULE): every worker
-- keeps, in the shared dict (keys "t:PID:..."; safe_* and incr only, as the ring's own keys),
-- how many events it got, the first and last eventBody.sequence (an emulator publish stream
-- numbers its events 1..count) and how many came out of order or twice ("bad": not last + 1);
-- and, per health kind, how many items every worker got ("t:h:KIND"). The spec reads them
-- through a location of its own.
local _M = {}

local function add(dict, key, n)
  local v = dict:incr(key, n)
  if not v then
    dict:safe_add(key, 0)
    dict:incr(key, n)
  end
end

function _M.init(resty)
  local dict = ngx.shared.genesys_notify
  local pid = ngx.worker.pid()
  local last
  resty.subscribe(function(ev)
    local seq = ev.body and ev.body.sequence
    if type(seq) ~= "number" then return end
    local p = "t:" .. pid .. ":"
    if not last then dict:safe_set(p .. "first", seq) end
    if last and seq ~= last + 1 then add(dict, p .. "bad", 1) end
    last = seq
    dict:safe_set(p .. "last", seq)
    add(dict, p .. "n", 1)
  end)
  resty.on_health(function(h)
    add(dict, "t:h:" .. tostring(h.kind), 1)
    if h.kind == "restored" or h.kind == "missed" then
      ngx.log(ngx.WARN, "count hook: ", require("cjson.safe").encode(h))
    end
  end)
end

return _M
