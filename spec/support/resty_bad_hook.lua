-- A subscribe handler that raises (after yielding), for spec/integration/resty_spec.lua
-- (GN_HANDLER_MODULE): the error is logged and counted, the next handlers and /events go on.
local _M = {}

function _M.init(resty)
  resty.subscribe(function(ev)
    ngx.sleep(0)
    error("bad handler saw seq " .. ev.seq)
  end)
end

return _M
