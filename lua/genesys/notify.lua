--- genesys.notify: a Genesys Cloud notification client that keeps its stream alive.
--
-- local notify = require "genesys.notify"
-- local client = notify.new{ region = "us-east-1", topics = {...}, on_event = f, on_health = g }
-- client:start()
-- client:run()   -- or client:poll(ms) from your own loop, or wait on client:fd()
--
-- This module validates the configuration (every error names the field and says what was
-- expected), turns a region or gateway into the login and API base URLs, and hands a
-- normalized table to the C core (genesys.notify.core). The client object itself is C.
local core = require "genesys.notify.core"

local type, pairs, ipairs, tostring, error, pcall, next = type, pairs, ipairs, tostring, error, pcall, next
local os_getenv, string_format, io_open = os.getenv, string.format, io.open
local table_concat, table_sort = table.concat, table.sort
local topic_error = core.topic_error

local _M = { _VERSION = core._VERSION }

--- Region names and the domains they map to: the official SDKs' region table
-- (PureCloudRegionHosts of the JS SDK; spec/unit/regions_spec.lua holds the two equal).
local REGIONS = {
  ["us-east-1"] = "mypurecloud.com",
  ["us-east-2"] = "use2.us-gov-pure.cloud",
  ["us-west-2"] = "usw2.pure.cloud",
  ["ca-central-1"] = "cac1.pure.cloud",
  ["sa-east-1"] = "sae1.pure.cloud",
  ["eu-west-1"] = "mypurecloud.ie",
  ["eu-west-2"] = "euw2.pure.cloud",
  ["eu-central-1"] = "mypurecloud.de",
  ["eu-central-2"] = "euc2.pure.cloud",
  ["ap-south-1"] = "aps1.pure.cloud",
  ["ap-northeast-1"] = "mypurecloud.jp",
  ["ap-northeast-2"] = "apne2.pure.cloud",
  ["ap-northeast-3"] = "apne3.pure.cloud",
  ["ap-southeast-2"] = "mypurecloud.com.au",
  ["ap-southeast-1"] = "apse1.pure.cloud",
  ["me-central-1"] = "mec1.pure.cloud",
  ["mx-central-1"] = "mxc1.pure.cloud",
  ["eusc-de-east-1"] = "edee1.eusc-pure.cloud",
}
_M.regions = REGIONS
_M.null = core.null
_M.now_ms = core.now_ms

local function fail(field, expected, got)
  error(string_format("genesys.notify: %s: expected %s, got %s", field, expected, got), 0)
end

local function describe(v)
  if type(v) == "string" then return string_format("%q", v) end
  return type(v) == "table" and "a table" or tostring(v)
end

local function check_keys(t, allowed, prefix)
  local unknown -- made only for an error: new() leaves no garbage for a valid table
  for k in pairs(t) do
    if not allowed[k] then
      unknown = unknown or {}
      unknown[#unknown + 1] = tostring(k)
    end
  end
  if unknown then
    table_sort(unknown)
    local names = {}
    for k in pairs(allowed) do names[#names + 1] = k end
    table_sort(names)
    error(string_format("genesys.notify: %s%s: unknown field (expected one of: %s)", prefix,
      table_concat(unknown, ", "), table_concat(names, ", ")), 0)
  end
end

-- The C core takes strings up to their first NUL byte: one inside would cut the value short
-- without a word.
local function no_nul(field, v, secret)
  if type(v) == "string" and v:find("\0", 1, true) then
    fail(field, "a string without NUL bytes", secret and "a string with a NUL byte" or describe(v))
  end
  return v
end

local function check_string(v, field)
  if type(v) ~= "string" or v == "" then fail(field, "a non-empty string", describe(v)) end
  return no_nul(field, v)
end

local function opt_string(t, k, field)
  local v = t[k]
  if v == nil then return nil end
  return check_string(v, field)
end

-- A host name (labels of letters, digits, '-' and '_', not starting or ending with '-'), an
-- IPv4 address, or an IPv6 literal in brackets: nothing that could change the URL it goes into
-- ('/', '?', '#', '@', ':', spaces...).
local function valid_host(h)
  if h:find("^%[[%x:%.]+%]$") then return true end
  if #h > 253 then return false end
  for label in (h .. "."):gmatch("([^.]*)%.") do
    if #label == 0 or #label > 63 or not label:find("^[%w_][%w_%-]*$") or label:find("%-$") then
      return false
    end
  end
  return true
end

-- v when it is an integer from lo to hi (of unit, when given); else fails naming field.
local function check_int(v, field, lo, hi, unit)
  if type(v) ~= "number" or v ~= v or v < lo or v > hi or v % 1 ~= 0 then
    fail(field, string_format("an integer %sfrom %d to %d", unit and ("number of " .. unit .. " ") or "",
      lo, hi), describe(v))
  end
  return v
end

-- t[k] as check_int takes it, nil when absent.
local function opt_int(t, k, field, lo, hi, unit)
  local v = t[k]
  if v == nil then return nil end
  return check_int(v, field, lo, hi, unit)
end

local function opt_ms(t, k, field, lo, hi) return opt_int(t, k, field, lo, hi, "milliseconds") end

-- The options of a client: one table in C (GN_CONF_OPTIONS in csrc/core/conf.h, the fleet's
-- GN_LEASE_OPTIONS in csrc/fleet/lease.h; core.options) gives each user field (its dotted path)
-- its normalized key, kind, default, range or choices. A row is checked here by its kind and
-- put in the normalized table under its key (nil stays nil: the default is C's); a table of
-- options accepts its rows' names (and the fields that are not rows: keys_under's extra).
local OPTIONS = core.options
local ROWS = {}
for field, o in pairs(OPTIONS) do
  o.field = field
  ROWS[o.index] = o
end
_M.options = OPTIONS

-- '"a", "b" or "c"' from "a|b|c"
local function quote_list(choices)
  local q = {}
  for c in choices:gmatch("[^|]+") do q[#q + 1] = string_format("%q", c) end
  if #q == 1 then return q[1] end
  return table_concat(q, ", ", 1, #q - 1) .. " or " .. q[#q]
end

-- v (not nil) checked as row o says; returns the normalized value or fails naming the field.
local function opt_check(o, v)
  local field, kind = o.field, o.kind
  if kind == "fraction" then
    if type(v) ~= "number" or v ~= v or v < o.lo or v > o.hi then
      fail(field, string_format("a fraction of the lifetime from %g to %g", o.lo, o.hi), describe(v))
    end
    return v
  elseif kind == "ms" or kind == "int" or kind == "bytes" then
    local unit = kind == "ms" and "milliseconds" or kind == "bytes" and "bytes" or nil
    return check_int(v, field, o.lo, o.hi, unit)
  elseif kind == "flag" then
    if type(v) ~= "boolean" then fail(field, "a boolean", describe(v)) end
    return v
  elseif kind == "choice" then
    for c in o.choices:gmatch("[^|]+") do
      if v == c then return v end
    end
    fail(field, quote_list(o.choices), describe(v))
  end
  v = check_string(v, field) -- string, pemfile, label
  if kind == "pemfile" then
    local fh = io_open(v, "r")
    if not fh then fail(field, "a readable PEM file", describe(v) .. " (cannot be opened)") end
    fh:close()
  elseif kind == "label" and v:find('["\\\n]') then
    fail(field, "a label without quotes, backslashes or newlines", describe(v))
  end
  return v
end

-- Every row directly under prefix ("" for the top level, "renew.", ...) read from t (the
-- user's table at that path) into out[key], in the table's order.
-- The rows directly under each prefix, as {row, name there}, listed once: new() makes no
-- garbage walking every row (an idle client's RSS counts what its new() left for the GC).
local ROWS_AT = {}
local function rows_into(out, t, prefix)
  local at = ROWS_AT[prefix]
  if not at then
    at = {}
    for _, o in ipairs(ROWS) do
      local f = o.field
      if f:sub(1, #prefix) == prefix and not f:find(".", #prefix + 1, true) then
        at[#at + 1] = { o, f:sub(#prefix + 1) }
      end
    end
    ROWS_AT[prefix] = at
  end
  for i = 1, #at do
    local o, name = at[i][1], at[i][2]
    local v = t[name]
    if v ~= nil then out[o.key] = opt_check(o, v) end
  end
end

-- The fields a table of options at prefix accepts: its rows' names (a nested table's name at
-- the top level), and extra (a set: what is not a row there).
local function keys_under(prefix, extra)
  local k = {}
  for n in pairs(extra or {}) do k[n] = true end
  for _, o in ipairs(ROWS) do
    if o.field:sub(1, #prefix) == prefix then k[o.field:sub(#prefix + 1):match("^[^.]+")] = true end
  end
  return k
end

local function domain_of(region, field)
  if REGIONS[region] then return REGIONS[region] end
  if region:find("^[%w%-]+%.[%w%.%-]+$") then return region end
  local names = {}
  for k in pairs(REGIONS) do names[#names + 1] = k end
  table_sort(names)
  fail(field, "a region name (" .. table_concat(names, ", ") .. ") or a domain such as mypurecloud.com",
    describe(region))
end

local function join(base, part)
  if not part or part == "" then return base end
  part = part:gsub("^/+", ""):gsub("/+$", "")
  if part == "" then return base end
  return base .. "/" .. part
end

local function gateway_urls(g)
  if type(g) ~= "table" then fail("gateway", "a table {host=, port=, protocol=, ...}", describe(g)) end
  check_keys(g, { host = true, port = true, protocol = true, path_params_login = true,
    path_params_api = true }, "gateway.")
  local host = opt_string(g, "host", "gateway.host")
  if not host then fail("gateway.host", "a host name", "nil") end
  if not valid_host(host) then
    fail("gateway.host", "a bare host name or IP address (letters, digits, '-', '_' and dots; " ..
      "IPv6 in brackets; no scheme, port, path or spaces)", describe(host))
  end
  local protocol = g.protocol == nil and "https" or g.protocol
  if protocol ~= "https" and protocol ~= "http" then
    fail("gateway.protocol", '"https" or "http"', describe(protocol))
  end
  local port = g.port
  if port ~= nil and (type(port) ~= "number" or port % 1 ~= 0 or port < 1 or port > 65535) then
    fail("gateway.port", "an integer from 1 to 65535", describe(port))
  end
  for _, k in ipairs { "path_params_login", "path_params_api" } do
    if g[k] ~= nil and type(g[k]) ~= "string" then fail("gateway." .. k, "a string", describe(g[k])) end
    no_nul("gateway." .. k, g[k])
  end
  local base = protocol .. "://" .. host .. (port and (":" .. string_format("%d", port)) or "")
  return join(join(base, g.path_params_login), "oauth/token"), join(base, g.path_params_api)
end

-- The top level: the rows' names (and their tables') and what is not a row.
local ALLOWED = keys_under("", {
  region = true, gateway = true, client_id = true, client_secret = true, topics = true,
  backoff = true, on_event = true, on_health = true, context = true, audit = true, policy = true,
  proxy = true, no_proxy = true, redis = true, resync = true,
})

-- ---- resync (docs/resync.md) ---------------------------------------------------------------
-- resync = true | { "presence", "routing_status", ... } | { families = true | {...},
--   budget = 150, window_ms = 60000, spacing_ms = ..., reserve = ... }. Family names are
-- checked in C against the one table of families (the error names the field).
local function resync_config(r, out)
  if r == false then return end
  local fams = r
  if type(r) == "table" and (r.families ~= nil or next(r) == nil or type(next(r)) == "string") then
    check_keys(r, keys_under("resync.", { families = true }), "resync.")
    fams = r.families == nil and true or r.families
    rows_into(out, r, "resync.")
  end
  if fams == true then
    out.resync_families = "all"
  elseif type(fams) == "string" and fams ~= "" and not fams:find(",", 1, true) then
    out.resync_families = fams
  elseif type(fams) == "table" and #fams > 0 then
    for i = 1, #fams do
      if type(fams[i]) ~= "string" or fams[i] == "" or fams[i]:find(",", 1, true) then
        fail("resync[" .. i .. "]", "a family name", describe(fams[i]))
      end
    end
    out.resync_families = table_concat(fams, ",")
  else
    fail("resync", "true, a family name, a list of family names or a table {families = ...}",
      describe(fams))
  end
end

-- ---- redis (a fleet member: see the README, "Running a fleet") ----------------------------
local REDIS_ALLOWED = keys_under("redis.", { url = true, password_file = true, tls = true,
  sentinel = true })
local REDIS_TLS = { ca_file = true, cert_file = true, key_file = true, server_name = true }
local REDIS_SENTINEL = { master = true, addrs = true, user = true, password = true,
  password_file = true, min_replicas = true }
local REDIS_URL = "a URL redis[s]://[user[:password]@]host[:port][/db]"

-- The connection fields of a redis table r (url, password_file, tls, sentinel) into o as the C
-- core reads them, checked there (one parser: csrc/net/redis_conf.c). A URL or a password is
-- never shown in an error: either may hold a secret.
local function redis_conn(r, o)
  if r.url ~= nil and type(r.url) ~= "string" then fail("redis.url", REDIS_URL, type(r.url)) end
  o.url = r.url
  o.password_file = opt_string(r, "password_file", "redis.password_file")
  if r.tls ~= nil then
    if type(r.tls) ~= "table" then
      fail("redis.tls", "a table { ca_file = ..., cert_file = ..., key_file = ..., server_name = ... }",
        describe(r.tls))
    end
    check_keys(r.tls, REDIS_TLS, "redis.tls.")
    for k in pairs(REDIS_TLS) do o["tls_" .. k] = opt_string(r.tls, k, "redis.tls." .. k) end
  end
  local s = r.sentinel
  if s ~= nil then
    if type(s) ~= "table" then
      fail("redis.sentinel", 'a table { master = "name", addrs = { "host:port", ... } }', describe(s))
    end
    check_keys(s, REDIS_SENTINEL, "redis.sentinel.")
    o.sentinel_master = opt_string(s, "master", "redis.sentinel.master")
    if not o.sentinel_master then fail("redis.sentinel.master", "the master's name", "nil") end
    if type(s.addrs) ~= "table" or #s.addrs == 0 then
      fail("redis.sentinel.addrs", 'a list of "host:port" (one per sentinel)', describe(s.addrs))
    end
    for i, a in ipairs(s.addrs) do
      if type(a) ~= "string" or a == "" or a:find(",", 1, true) then
        fail("redis.sentinel.addrs[" .. i .. "]", '"host:port" or "[IPv6 address]:port"', describe(a))
      end
    end
    o.sentinel_addrs = table_concat(s.addrs, ",")
    o.sentinel_user = opt_string(s, "user", "redis.sentinel.user")
    if s.password ~= nil and (type(s.password) ~= "string" or s.password == "") then
      fail("redis.sentinel.password", "a non-empty string", type(s.password))
    end
    o.sentinel_password = no_nul("redis.sentinel.password", s.password, true)
    o.sentinel_password_file = opt_string(s, "password_file", "redis.sentinel.password_file")
    o.sentinel_min_replicas = opt_int(s, "min_replicas", "redis.sentinel.min_replicas", 0, 100)
  end
  local ok, err = pcall(core.redis_check, o)
  if not ok then error("genesys.notify: " .. tostring(err), 0) end
  return o
end
_M.redis_conn = redis_conn

local function redis_config(r, out)
  if type(r) ~= "table" then
    fail("redis", "a table { url = ..., key = ..., lease_ms = ... }", describe(r))
  end
  check_keys(r, REDIS_ALLOWED, "redis.")
  local o = redis_conn(r, {})
  rows_into(o, r, "redis.") -- key, lease_ms, margin_ms, maxlen (lease.h's rows)
  if not o.key then fail("redis.key", "a non-empty string", "nil") end
  local lease_ms = o.lease_ms or OPTIONS["redis.lease_ms"].default
  if o.margin_ms and o.margin_ms * 2 >= lease_ms then
    fail("redis.margin_ms", "less than half of lease_ms", describe(o.margin_ms))
  end
  out.redis = o
end

-- ---- proxy -------------------------------------------------------------------------------
-- "http://[user:pass@]host:port" (user and password percent-encoded as in any URL). Errors show
-- the value with its credentials replaced: they are secrets.
local function redact_userinfo(v)
  local s = v:gsub("^(%a[%w+.-]*://).*@", "%1[redacted]@")
  if s == v then s = v:gsub("^.*@", "[redacted]@") end
  return string_format("%q", s)
end

local function pct_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Returns host, port, user, pass from v (field names the source in errors); scheme may be left
-- out when lenient (environment values, as curl takes them).
local function parse_proxy(v, field, lenient)
  local expected = '"http://[user:password@]host:port"'
  local shown = redact_userinfo(v)
  if v:find("[%s%c]") then fail(field, expected .. " without spaces or control characters", shown) end
  local scheme, rest = v:match("^(%a[%w+.-]*)://(.*)$")
  if scheme then
    if scheme:lower() ~= "http" then
      fail(field, expected .. " (an http:// proxy; " .. scheme:lower() .. ":// is not supported)",
        shown)
    end
  elseif lenient then
    rest = v
  else
    fail(field, expected, shown)
  end
  rest = rest:gsub("/$", "")
  local userinfo, hostport = rest:match("^(.*)@([^@]*)$")
  if not userinfo then hostport = rest end
  local host, port = hostport:match("^(%[[%x:%.]+%]):(%d+)$")
  if not host then host, port = hostport:match("^([^:/]+):(%d+)$") end
  if not host or not valid_host(host) then fail(field, expected .. " with a host and a port", shown) end
  port = tonumber(port)
  if port < 1 or port > 65535 then fail(field, expected .. " with a port from 1 to 65535", shown) end
  local user, pass
  if userinfo then
    local u, p = userinfo:match("^([^:]*):(.*)$")
    if not u then u = userinfo end
    user, pass = pct_decode(u), p and pct_decode(p) or ""
    if user == "" or user:find(":", 1, true) or user:find("\0", 1, true) or pass:find("\0", 1, true) then
      fail(field, "a user name without ':' or NUL bytes before the password", shown)
    end
    -- libwebsockets keeps "user:password" in 93 bytes at most (its Basic token buffer)
    if #user + 1 + #pass > 93 then
      fail(field, "credentials of at most 93 bytes (user:password)", shown)
    end
  end
  host = host:gsub("^%[(.*)%]$", "%1")
  return host, port, user, pass
end

local function proxy_config(cfg, out)
  local v, field = cfg.proxy, "proxy"
  if v == false then return end
  if v == nil then
    for _, name in ipairs { "https_proxy", "HTTPS_PROXY" } do
      local e = os_getenv(name)
      if e and e ~= "" then v, field = e, "proxy (from " .. name .. ")"; break end
    end
    if v == nil then return end
    out.proxy_host, out.proxy_port, out.proxy_user, out.proxy_pass = parse_proxy(v, field, true)
  elseif type(v) ~= "string" or v == "" then
    fail("proxy", 'a string "http://[user:password@]host:port" or false', describe(v))
  else
    out.proxy_host, out.proxy_port, out.proxy_user, out.proxy_pass = parse_proxy(v, field, false)
  end
  local np = cfg.no_proxy
  if np == nil then
    for _, name in ipairs { "no_proxy", "NO_PROXY" } do
      local e = os_getenv(name)
      if e and e ~= "" then np = e; break end
    end
  elseif type(np) ~= "string" then
    fail("no_proxy", 'a string of host names separated by commas ("*" for all)', describe(np))
  end
  if np and np ~= "" then out.no_proxy = no_nul("no_proxy", np) end
end

-- ---- audit lines -------------------------------------------------------------------------
-- One line per health item, for an audit trail of the connection: "pipe" (timestamp|kind|state|
-- key=value|...) or "json" (one object per line). Values are flat; tables are summarized. Keys
-- that could ever carry a credential are redacted, although the core never puts one in a health
-- item.
local SECRET_KEY = { token = true, access_token = true, secret = true, client_secret = true,
  authorization = true, password = true }

local function iso_ms(ms)
  local secs = math.floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. string_format(".%03dZ", math.floor(ms % 1000))
end

local function flat(v)
  if type(v) == "table" then
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    return "[" .. n .. "]"
  elseif type(v) == "number" and v % 1 ~= 0 then
    return string_format("%.1f", v)
  end
  return tostring(v)
end

local function json_str(v)
  return '"' .. tostring(v):gsub('[%c"\\]', function(c)
    return string_format("\\u%04x", c:byte())
  end) .. '"'
end

-- The original design's three line types ("seed"), so log parsers written for it keep working:
--   AUDIT|RECONNECT_ATTEMPT|connId=N|attempt=N|delayMs=N         (health "attempt")
--   AUDIT|RECONNECT_SUCCESS|connId=N|latencyMs=N|successRate=R   ("connected" after attempt 1+)
--   AUDIT|RECONNECT_FAIL|connId=N|attempt=N|reason=WORD          ("failed"; "gave_up" with
--                                                                  reason=gave_up:WHY)
-- Other items give no line (nil). ctx: { connection_id = the last one seen, success_rate = 0..1 }.
local function seed_value(v)
  return (tostring(v):gsub("[|=%s]", "_"))
end

local function seed_line(h, ctx)
  ctx = ctx or {}
  local conn = h.connection_id or ctx.connection_id or 0
  local k = h.kind
  if k == "attempt" then
    return string_format("AUDIT|RECONNECT_ATTEMPT|connId=%d|attempt=%d|delayMs=%d", conn,
      h.attempt or 0, math.floor((h.delay_ms or 0) + 0.5))
  elseif k == "connected" and (h.attempt or 0) > 0 then
    return string_format("AUDIT|RECONNECT_SUCCESS|connId=%d|latencyMs=%d|successRate=%.2f", conn,
      math.floor((h.latency_ms or 0) + 0.5), ctx.success_rate or 0)
  elseif k == "failed" then
    return string_format("AUDIT|RECONNECT_FAIL|connId=%d|attempt=%d|reason=%s", conn,
      h.attempt or 0, seed_value(h.reason or "unknown"))
  elseif k == "gave_up" then
    return string_format("AUDIT|RECONNECT_FAIL|connId=%d|attempt=%d|reason=gave_up:%s", conn,
      h.attempts or 0, seed_value(h.reason or "unknown"))
  end
  return nil
end

local function audit_line(fmt, h, ctx)
  if fmt == "seed" then return seed_line(h, ctx) end
  local keys = {}
  for k in pairs(h) do
    if k ~= "kind" and k ~= "state" and k ~= "timestamp_ms" then keys[#keys + 1] = k end
  end
  table_sort(keys)
  local ts = iso_ms(h.timestamp_ms or 0)
  if fmt == "json" then
    local parts = { '"ts":' .. json_str(ts), '"kind":' .. json_str(h.kind),
      '"state":' .. json_str(h.state) }
    for _, k in ipairs(keys) do
      local v = h[k]
      if SECRET_KEY[k] then v = "[redacted]" end
      local enc
      if type(v) == "number" then enc = (v == v and v ~= math.huge and v ~= -math.huge) and
        (v % 1 == 0 and string_format("%d", v) or string_format("%.3f", v)) or "null"
      elseif type(v) == "boolean" then enc = tostring(v)
      else enc = json_str(flat(v)) end
      parts[#parts + 1] = json_str(k) .. ":" .. enc
    end
    return "{" .. table_concat(parts, ",") .. "}"
  end
  local parts = { ts, h.kind or "?", h.state or "?" }
  for _, k in ipairs(keys) do
    local v = SECRET_KEY[k] and "[redacted]" or flat(h[k])
    parts[#parts + 1] = k .. "=" .. v:gsub("[|\n]", " ")
  end
  return table_concat(parts, "|")
end
_M.audit_line = audit_line

--- Validates the user's configuration and returns the table the C core takes.
-- The tables of options (tls, timeouts, heartbeat; renew: before a channel's or its token's
-- end, docs: "Channel and token lifetimes"): name, what is expected, the fields it accepts, prefix.
local OPTION_TABLES = {
  { "tls", "a table {ca_file=, verify=}" },
  { "timeouts", "a table {connect_ms=, handshake_ms=, http_ms=}" },
  { "heartbeat", "a table {idle_ms=, ping_timeout_ms=}" },
  { "renew", "a table {rule=, at=, margin_ms=, drain_ms=}" },
}
for _, t in ipairs(OPTION_TABLES) do
  t[3], t[4] = keys_under(t[1] .. "."), t[1] .. "."
end
local CALLBACKS = { "on_event", "on_health", "policy" }

function _M.config(cfg)
  if type(cfg) ~= "table" then fail("config", "a table", describe(cfg)) end
  check_keys(cfg, ALLOWED, "")
  local out = {}
  if cfg.gateway ~= nil and cfg.region ~= nil then
    error("genesys.notify: region, gateway: expected one of them, got both", 0)
  end
  if cfg.gateway ~= nil then
    out.token_url, out.api_base = gateway_urls(cfg.gateway)
  else
    local region = cfg.region
    if region == nil then region = os_getenv "GENESYSCLOUD_REGION" end
    if region == nil or region == "" then
      fail("region", "a region name or domain (or gateway, or GENESYSCLOUD_REGION in the environment)", "nil")
    end
    if type(region) ~= "string" then fail("region", "a string", describe(region)) end
    local domain = domain_of(region, "region")
    out.token_url = "https://login." .. domain .. "/oauth/token"
    out.api_base = "https://api." .. domain
  end
  local id = cfg.client_id
  if id == nil then id = os_getenv "GENESYSCLOUD_OAUTHCLIENT_ID" end
  if type(id) ~= "string" or id == "" then
    fail("client_id", "a non-empty string (or GENESYSCLOUD_OAUTHCLIENT_ID in the environment)",
      id == nil and "nil" or type(id))
  end
  local secret = cfg.client_secret
  if secret == nil then secret = os_getenv "GENESYSCLOUD_OAUTHCLIENT_SECRET" end
  if type(secret) ~= "string" or secret == "" then
    -- Never echo the value: it is a secret.
    fail("client_secret", "a non-empty string (or GENESYSCLOUD_OAUTHCLIENT_SECRET in the environment)",
      secret == nil and "nil" or (type(secret) == "string" and "an empty string" or type(secret)))
  end
  no_nul("client_id", id)
  no_nul("client_secret", secret, true)
  out.client_id, out.client_secret = id, secret
  local topics = cfg.topics
  if topics ~= nil then
    local one = type(topics) == "string"
    if one then topics = { topics } end
    if type(topics) ~= "table" then fail("topics", "an array of topic strings", describe(topics)) end
    local list, seen = {}, {}
    for k in pairs(topics) do
      if type(k) ~= "number" or k < 1 or k % 1 ~= 0 or k > #topics then
        fail("topics", "an array (keys 1..n)", "the key " .. describe(k))
      end
    end
    -- Types first, then names (a wrong type anywhere is reported before a bad name), as
    -- client:subscribe() does. Names are checked in C (core.topic_error, shared with subscribe):
    -- Genesys's rules and real UTF-8 checking on LuaJIT too; the message escapes the bad value.
    for i = 1, #topics do
      local t = topics[i]
      if type(t) ~= "string" or t == "" then
        fail("topics[" .. i .. "]", "a non-empty string", describe(t))
      end
    end
    for i = 1, #topics do
      local t = topics[i]
      local bad = topic_error(t)
      if bad then
        error(string_format("genesys.notify: %s: %s", one and "topics" or "topics[" .. i .. "]", bad), 0)
      end
      if not seen[t] then seen[t] = true; list[#list + 1] = t end
    end
    if #list > 20000 then
      fail("topics", "at most 20000 topics (20 channels of 1000, Genesys's limits)", #list .. " topics")
    end
    out.topics = list
  end
  if cfg.backoff ~= nil and type(cfg.backoff) ~= "table" then
    fail("backoff", "a policy table", describe(cfg.backoff))
  end
  out.backoff = cfg.backoff -- checked field by field in C (genesys.notify.backoff's rules)
  -- the tables of options (OPTION_TABLES): each of their rows checked and normalized by the
  -- table of options
  for _, t in ipairs(OPTION_TABLES) do
    local name, v = t[1], cfg[t[1]]
    if v ~= nil then
      if type(v) ~= "table" then fail(name, t[2], describe(v)) end
      check_keys(v, t[3], t[4])
      rows_into(out, v, t[4])
    end
  end
  -- the top level's rows (queue_limit, channel_budget: channels of the credential across the
  -- process, one kept spare; queue_bytes, overflow, pause_max_ms, max_message_size, name)
  rows_into(out, cfg, "")
  for _, k in ipairs(CALLBACKS) do
    if cfg[k] ~= nil and type(cfg[k]) ~= "function" then fail(k, "a function", describe(cfg[k])) end
    out[k] = cfg[k]
  end
  if cfg.audit ~= nil then
    local a = cfg.audit
    if type(a) ~= "table" then
      fail("audit", 'a table {format = "pipe"|"json"|"seed", sink = file or function}', describe(a))
    end
    check_keys(a, { format = true, sink = true }, "audit.")
    local fmt = a.format == nil and "pipe" or a.format
    if fmt ~= "pipe" and fmt ~= "json" and fmt ~= "seed" then
      fail("audit.format", '"pipe", "json" or "seed"', describe(fmt))
    end
    local sink = a.sink == nil and io.stderr or a.sink
    local write
    if type(sink) == "function" then
      write = sink
    elseif (type(sink) == "userdata" or type(sink) == "table") and sink.write then
      write = function(line) sink:write(line, "\n") end
    else
      fail("audit.sink", "a file (with :write) or a function(line)", describe(sink))
    end
    local user = out.on_health
    -- "seed" lines carry the last connection id and the client's success rate: the client is
    -- known once notify.new has made it (a weak reference: no cycle through the callback).
    local holder = setmetatable({}, { __mode = "v" })
    local ctx = { connection_id = 0 }
    out.audit_holder = holder
    local function audit(h)
      if fmt == "seed" then
        if h.connection_id then ctx.connection_id = h.connection_id end
        if h.kind == "connected" and holder.client then
          local ok, m = pcall(holder.client.metrics, holder.client)
          ctx.success_rate = ok and m.success_rate or nil
        end
      end
      local line = audit_line(fmt, h, ctx)
      if line then write(line) end
    end
    -- poll() writes the line before on_health; drain() (which calls no on_health) through
    -- audit_sink.
    out.audit_sink = audit
    out.on_health = function(h)
      audit(h)
      if user then return user(h) end
    end
  end
  proxy_config(cfg, out)
  if cfg.redis ~= nil then redis_config(cfg.redis, out) end
  if cfg.resync ~= nil then resync_config(cfg.resync, out) end
  if cfg.context ~= nil then
    if not core.is_context(cfg.context) then
      fail("context", "a context from notify.context()", describe(cfg.context))
    end
    out.context = cfg.context
  end
  return out
end

--- One line for a health item or event ("kind key=value ..."), for logs. Tables inside are
-- summarized; keys are sorted so lines diff well.
function _M.format(h)
  local keys = {}
  for k in pairs(h) do
    if k ~= "kind" and k ~= "timestamp_ms" and k ~= "raw" and k ~= "body" then keys[#keys + 1] = k end
  end
  table_sort(keys)
  local parts = { h.kind or h.topic or "?" }
  for _, k in ipairs(keys) do
    local v = h[k]
    if type(v) == "table" then
      local n = 0
      for _ in pairs(v) do n = n + 1 end
      v = "[" .. n .. "]"
    elseif type(v) == "number" and v % 1 ~= 0 then
      v = string_format("%.1f", v)
    elseif type(v) == "string" and v:find("[%s=]") then
      v = string_format("%q", v)
    end
    parts[#parts + 1] = k .. "=" .. tostring(v)
  end
  return table_concat(parts, " ")
end

--- Prometheus text for several clients in one exposition (one scrape): each family's # HELP and
-- # TYPE once, then the samples of every client, told apart by their client="NAME" label (so
-- every client needs a name of its own: two alike raise, naming both).
function _M.prometheus(clients)
  if type(clients) ~= "table" then fail("prometheus(clients)", "an array of clients", describe(clients)) end
  local order, fams, names = {}, {}, {}
  for i = 1, #clients do
    local text = clients[i]:metrics("prometheus")
    local name = text:match('{client="([^"]*)"')
    if names[name] then
      error(string_format('genesys.notify: prometheus(clients): clients[%d]: expected a name of its own ' ..
        '(the client label), got %q, the name of clients[%d]', i, name, names[name]), 2)
    end
    names[name] = i
    local cur
    for line in text:gmatch("[^\n]+") do
      local fam = line:match("^# %u+ (%S+)")
      if fam then
        cur = fams[fam]
        if not cur then
          cur = { first = i, lines = {} }
          fams[fam] = cur
          order[#order + 1] = fam
        end
        if cur.first == i then cur.lines[#cur.lines + 1] = line end
      elseif cur then
        cur.lines[#cur.lines + 1] = line
      end
    end
  end
  local out = {}
  for _, fam in ipairs(order) do out[#out + 1] = table_concat(fams[fam].lines, "\n") end
  return #out > 0 and (table_concat(out, "\n") .. "\n") or ""
end

--- A context of its own: one service thread for every client created with { context = ctx }.
-- Clients without a context share the process's default context.
function _M.context()
  return core.context_new()
end

--- A bell: a unix-domain socket at `path` whose peers get one byte at each bell:ring()
-- (coalesced, never blocking), served by the default context's service thread. A socket file
-- already at `path` is replaced. bell:ring(), bell:path(), bell:stats(), bell:close().
function _M.bell(path)
  if type(path) ~= "string" or path == "" then
    fail("path", "a file path for a unix socket", describe(path))
  end
  if path:find("\0", 1, true) then fail("path", "a path without NUL bytes", describe(path)) end
  local ok, b = pcall(core.bell_new, path)
  if not ok then error(b, 2) end
  return b
end

--- A reader of a fleet's Redis Stream (see the README, "Running a fleet"):
-- notify.consumer{ redis = { url = ..., key = ... }, mode = "fanout" | "group", group = ...,
--   consumer = ..., claim_idle_ms = ..., block_ms = ..., on_event = f, on_health = g }
-- with start/poll/run/fd/close/metrics like a client.
local CONSUMER_ALLOWED = { redis = true, mode = true, group = true, consumer = true,
  claim_idle_ms = true, block_ms = true, count = true, queue_limit = true, on_event = true,
  on_health = true, after_id = true }
function _M.consumer(cfg)
  local ok, norm = pcall(function()
    if type(cfg) ~= "table" then fail("consumer", "a table", describe(cfg)) end
    check_keys(cfg, CONSUMER_ALLOWED, "")
    local r = cfg.redis
    if type(r) ~= "table" then fail("redis", "a table { url = ..., key = ... }", describe(r)) end
    check_keys(r, { url = true, key = true, password_file = true, tls = true, sentinel = true },
      "redis.")
    local o = redis_conn(r, {})
    o.key = opt_string(r, "key", "redis.key")
    if not o.key then fail("redis.key", "a non-empty string", "nil") end
    o.mode = cfg.mode or "fanout"
    if o.mode ~= "fanout" and o.mode ~= "group" then
      fail("mode", '"fanout" or "group"', describe(o.mode))
    end
    o.group = opt_string(cfg, "group", "group")
    if o.mode == "group" and not o.group then fail("group", 'a group name (mode = "group")', "nil") end
    o.consumer = opt_string(cfg, "consumer", "consumer")
    o.claim_idle_ms = opt_ms(cfg, "claim_idle_ms", "claim_idle_ms", 10, 86400000)
    o.block_ms = opt_ms(cfg, "block_ms", "block_ms", 10, 60000)
    o.count = opt_int(cfg, "count", "count", 1, 100000)
    o.queue_limit = opt_int(cfg, "queue_limit", "queue_limit", 2, 1e9)
    -- fanout: start after this stream entry (ev.id of the last one handled) instead of the end
    o.after_id = opt_string(cfg, "after_id", "after_id")
    if o.after_id and (o.mode ~= "fanout" or not o.after_id:match("^%d+%-%d+$") or #o.after_id > 60) then
      fail("after_id", 'a stream entry id "<ms>-<seq>" (mode = "fanout")', describe(o.after_id))
    end
    for _, k in ipairs { "on_event", "on_health" } do
      if cfg[k] ~= nil and type(cfg[k]) ~= "function" then fail(k, "a function", describe(cfg[k])) end
      o[k] = cfg[k]
    end
    return o
  end)
  if not ok then error(norm, 2) end
  return core.consumer_new(norm)
end

--- Creates a client (not yet connected: call client:start()). Raises on a bad configuration.
function _M.new(cfg)
  local ok, norm = pcall(_M.config, cfg)
  if not ok then error(norm, 2) end -- point at the caller's line
  local client = core.client_new(norm)
  if norm.audit_holder then norm.audit_holder.client = client end
  return client
end

return _M
