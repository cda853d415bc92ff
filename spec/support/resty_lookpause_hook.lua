-- support.resty_count_hook, and a pause the resty layer's successor takes between its look at
-- the lock and its look at the exiting holder's offer (gn:ho), for resty_spec: the exiting
-- holder passes the lock on during that pause more often than not, so a successor that reads
-- the two as one moment is caught in the act. Only the shared dict's get is wrapped (the dicts'
-- methods are one table in a worker); the product's code is not touched.
local _M = {}

function _M.init(resty)
  local dict = ngx.shared.genesys_notify
  local methods = getmetatable(dict).__index
  local get = methods.get
  methods.get = function(self, key)
    if key == "gn:ho" then
      local info = debug.getinfo(2, "n")
      if info and info.name == "succeed" then
        -- counted (t:lookpauses): the spec checks that the pause was taken at all
        dict:incr("t:lookpauses", 1, 0)
        ngx.sleep(0.03)
      end
    end
    return get(self, key)
  end
  require("support.resty_count_hook").init(resty)
end

return _M
