-- Counting handlers for spec/integration/resty_spec.lua (GN_HANDLER_MODULE): every worker
-- keeps, in the shared dict (keys "t:PID:..."; safe_* and incr only, as the ring's own keys),
-- how many events it got, the first and last eventBody.sequence (an emulator publish stream
-- numbers its events 1..count) and how many came out of order or twice ("bad": not last + 1;
-- "badat": the first such pair, "LAST>SEQ");
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
  -- publish sequence -> the ring seq and the channel it came in, for a failure's log (kept as
  -- they are: a string made per event would slow the burst specs' readers)
  local ring_at, chan_at = {}, {}
  resty.subscribe(function(ev)
    local seq = ev.body and ev.body.sequence
    if type(seq) ~= "number" then return end
    local p = "t:" .. pid .. ":"
    if not last then dict:safe_set(p .. "first", seq) end
    if last and seq ~= last + 1 then
      add(dict, p .. "bad", 1)
      dict:safe_add(p .. "badat", last .. ">" .. seq) -- the first one, for the failure's message
      -- the same ring seq twice: this reader read it again; two ring seqs: the ring has it twice
      ngx.log(ngx.WARN, "count hook: ", last, " then ", seq, " at ", tostring(ev.seq), "/",
        tostring(ev.channel_id), ", before at ", tostring(ring_at[seq]), "/", tostring(chan_at[seq]))
    end
    ring_at[seq], chan_at[seq] = ev.seq, ev.channel_id
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
