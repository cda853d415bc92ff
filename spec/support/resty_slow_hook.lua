-- A slow subscribe handler for spec/integration/resty_spec.lua (GN_HANDLER_MODULE): 50 ms per
-- event, so a burst overruns a small ring and the worker's reader must report what it missed.
local _M = {}

function _M.init(resty)
  resty.subscribe(function() ngx.sleep(0.05) end)
end

return _M
