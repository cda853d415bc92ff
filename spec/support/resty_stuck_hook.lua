-- A worker that gets stuck, for spec/integration/resty_spec.lua (GN_HANDLER_MODULE): the first
-- worker that does not hold the stream and sees an event with eventBody.sequence 5 sleeps in its
-- handler for GN_STUCK_S seconds (its reader does not move meanwhile). Every worker also counts
-- as resty_count_hook does.
local _M = {}

function _M.init(resty)
  require("support.resty_count_hook").init(resty)
  local dict = ngx.shared.genesys_notify
  local stuck_s = tonumber(os.getenv("GN_STUCK_S") or "") or 3
  resty.subscribe(function(ev)
    if ev.body and ev.body.sequence == 5 and resty.status().holder_pid ~= ngx.worker.pid()
        and dict:safe_add("t:stuck", ngx.worker.pid()) then
      ngx.log(ngx.WARN, "stuck hook: this worker sleeps ", stuck_s, " s in its handler")
      ngx.sleep(stuck_s)
      ngx.log(ngx.WARN, "stuck hook: this worker goes on")
    end
  end)
end

return _M
