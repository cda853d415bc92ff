-- Corporate proxies: the REST calls (curl) and the WebSocket (lws) both go through an HTTP
-- CONNECT tunnel of a real proxy (Debian's tinyproxy, a separate process with its own
-- configuration, started here), TLS verified end to end against the emulator's names. The REST
-- host is "localhost" and the WebSocket's is "127.0.0.1" (a connectUri fault), so the proxy's
-- log tells the two tunnels apart. A refused tunnel, an unreachable proxy and a proxy killed
-- mid-stream are attempts that fail (reason and stage "proxy") and recover; the proxy's password
-- is never shown.
local emulator = require "support.emulator"
local tinyproxy = require "support.tinyproxy"
local hostile = require "support.hostile"
local ts = require "gn_testsock"
local wait = require "support.wait"
local notify = require "genesys.notify"
local cjson = require "cjson"

local T = "v2.users.proxy.presence"
local PASSWORD = "pr0xy-S3cret-sentinel"

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local interpreter = require("support.build").interpreter

local function count(list, value)
  local n = 0
  for _, v in ipairs(list) do if v == value then n = n + 1 end end
  return n
end

local function has_connect(px, target) return count(px:connects(), target) > 0 end

-- busted keeps only the last finally() of a test: every cleanup goes through one, in reverse.
local function cleanups()
  local fns = {}
  finally(function() for i = #fns, 1, -1 do pcall(fns[i]) end end)
  return function(fn) fns[#fns + 1] = fn end
end

describe("an HTTP proxy", function()
  if not tinyproxy.available() then
    pending("tinyproxy is not installed (make deps installs it)")
    return
  end
  local emu, ws_target, rest_target
  setup(function()
    emu = emulator.start { tls = true, clients = { "test-id:test-secret" } }
    -- the WebSocket goes to 127.0.0.1 while REST goes to localhost (both in the certificate)
    assert.equals(200, (emu:admin("POST", "faults/connect_uri",
      { base = "wss://127.0.0.1:" .. string.format("%d", emu.port), count = 1000000 })))
    rest_target = "localhost:" .. string.format("%d", emu.port)
    ws_target = "127.0.0.1:" .. string.format("%d", emu.port)
  end)
  teardown(function()
    tinyproxy.stop_all()
    if emu then emu:stop() end
  end)

  local function publish(n)
    assert.equals(200, (emu:admin("POST", "publish", { topic = T, eventBody = { n = n } })))
  end

  it("carries the token, channel and subscription calls and the WebSocket, TLS verified", function()
    local later = cleanups()
    local px = tinyproxy.start { connect_ports = { emu.port } }
    later(function() px:stop() end)
    local client, rec = wait.start_client(emu, { proxy = px.url }, { T }, true)
    later(function() client:close() end)
    publish(1)
    assert.truthy(wait.until_(client, function() return #rec.events >= 1 end, 5000), "no event")
    assert.is_true(has_connect(px, rest_target), table.concat(px:connects(), ", "))
    assert.is_true(has_connect(px, ws_target), table.concat(px:connects(), ", "))
    -- verification is on (the default) with the emulator's CA: a wrong CA fails through the
    -- proxy as it does without one
    local bad, brec = wait.start_client(emu, { proxy = px.url,
      tls = { ca_file = "/etc/ssl/certs/ca-certificates.crt" } }, { T })
    later(function() bad:close() end)
    assert.truthy(wait.until_(bad, function() return brec.count("failed") > 0 end, 10000))
    assert.equals("tls", brec.kinds.failed[1].reason)
    assert.equals(0, brec.count("connected"))
  end)

  it("the WebSocket's TLS is checked against the server's name through the tunnel", function()
    local later = cleanups()
    local px = tinyproxy.start { connect_ports = { emu.port } }
    later(function() px:stop() end)
    -- 127.1 is 127.0.0.1 to the proxy's resolver, but not a name in the emulator's certificate
    -- (localhost, 127.0.0.1): the tunnel is made, then TLS refuses the name
    local port = string.format("%d", emu.port)
    assert.equals(200, (emu:admin("POST", "faults/connect_uri", { base = "wss://127.1:" .. port,
      count = 1000000 })))
    later(function()
      emu:admin("POST", "faults/connect_uri", { base = "wss://127.0.0.1:" .. port, count = 1000000 })
    end)
    local client, rec = wait.start_client(emu, { proxy = px.url }, { T })
    later(function() client:close() end)
    assert.truthy(wait.until_(client, function()
      return #rec.where("failed", function(h) return h.stage == "tls" end) > 0 end, 10000),
      "no TLS failure")
    local f = rec.where("failed", function(h) return h.stage == "tls" end)[1]
    assert.equals("tls", f.reason)
    assert.is_true(has_connect(px, "127.1:" .. port), table.concat(px:connects(), ", "))
    assert.equals(0, rec.count("connected"))
  end)

  it("a proxy given by name is resolved by the client (every address tried in turn)", function()
    local later = cleanups()
    local px = tinyproxy.start { connect_ports = { emu.port } }
    later(function() px:stop() end)
    local client, rec = wait.start_client(emu,
      { proxy = "http://localhost:" .. string.format("%d", px.port) }, { T }, true)
    later(function() client:close() end)
    publish(5)
    assert.truthy(wait.until_(client, function() return #rec.events >= 1 end, 5000), "no event")
    assert.is_true(has_connect(px, ws_target))
  end)

  -- A client through the proxy at 127.0.0.1:port until n attempts failed, none connecting: each
  -- failure is the proxy's, its error saying `says` (%s: the proxy's address).
  local function proxy_failures(later, port, n, says)
    local hp = "127.0.0.1:" .. string.format("%d", port)
    local client, rec = wait.start_client(emu, { proxy = "http://" .. hp }, { T })
    later(function() client:close() end)
    assert.truthy(wait.until_(client, function() return rec.count("failed") >= n end, 10000))
    assert.equals(0, rec.count("connected"))
    for _, f in ipairs(rec.kinds.failed) do
      assert.equals("proxy", f.reason)
      assert.equals("proxy", f.stage)
      assert.truthy(f.error:find(says:format(hp), 1, true), f.error)
    end
  end

  it("with the proxy down the client cannot connect: failures name the proxy", function()
    local later = cleanups()
    -- a port held bound and not listening: refused, and no test running beside can take it
    -- (a stopped proxy's port could be, and then something else answers the CONNECT)
    local fd, port = ts.closed_port()
    later(function() ts.close(fd) end)
    proxy_failures(later, port, 2, "cannot reach the proxy %s")
  end)

  it("a proxy that closes without answering CONNECT: every failure names the proxy",
    function()
    local later = cleanups()
    local h = hostile.start { mode = "tcp_drop", count = 0 } -- every connection
    later(function() h:stop() end)
    proxy_failures(later, h.port, 3, "the proxy %s dropped the tunnel")
    local seen = h:requests()
    assert.truthy(#seen >= 3, #seen)
    assert.equals("CONNECT", seen[1].method)
  end)

  it("sends its credentials; wrong ones are the proxy's 401; the password is never shown", function()
    local later = cleanups()
    local px = tinyproxy.start { connect_ports = { emu.port }, auth = "gnuser:" .. PASSWORD }
    later(function() px:stop() end)
    local lines = {}
    local audit = { format = "json", sink = function(l) lines[#lines + 1] = l end }
    -- wrong password first
    local url_bad = "http://gnuser:wrong-" .. PASSWORD .. "@127.0.0.1:" .. string.format("%d", px.port)
    local bad, brec = wait.start_client(emu, { proxy = url_bad, audit = audit }, { T })
    later(function() bad:close() end)
    assert.truthy(wait.until_(bad, function() return brec.count("failed") > 0 end, 10000))
    local f = brec.kinds.failed[1]
    assert.equals("proxy", f.reason)
    assert.equals(401, f.status) -- tinyproxy 1.11 answers 401, not 407
    bad:close()
    -- the right one (percent-encoding decoded as in any URL)
    local url = "http://gnuser:" .. PASSWORD:gsub("%-", "%%2D") .. "@127.0.0.1:" ..
      string.format("%d", px.port)
    local client, rec = wait.start_client(emu, { proxy = url, audit = audit }, { T }, true)
    later(function() client:close() end)
    publish(2)
    assert.truthy(wait.until_(client, function() return #rec.events >= 1 end, 5000), "no event")
    assert.is_true(has_connect(px, ws_target))
    local m = client:metrics()
    local all = table.concat(lines, "\n") .. cjson.encode(m)
    for _, h in ipairs(brec.health) do all = all .. notify.format(h) end
    for _, h in ipairs(rec.health) do all = all .. notify.format(h) end
    assert.is_true(#lines > 0)
    assert.is_nil(all:find(PASSWORD, 1, true))
    -- nor in a configuration error
    local ok, err = pcall(notify.new, wait.config(emu, nil, { proxy = "https://u:" .. PASSWORD .. "@h:1" }))
    assert.is_false(ok)
    assert.truthy(err:find("proxy: expected", 1, true), err)
    assert.is_nil(err:find(PASSWORD, 1, true), err)
  end)

  it("a refused CONNECT is a failure naming the proxy (403), then recovery once allowed", function()
    local later = cleanups()
    local px = tinyproxy.start { connect_ports = {} } -- the emulator's port not allowed
    later(function() px:stop() end)
    local client, rec = wait.start_client(emu, { proxy = px.url }, { T })
    later(function() client:close() end)
    assert.truthy(wait.until_(client, function() return rec.count("failed") >= 2 end, 10000))
    local f = rec.kinds.failed[1]
    assert.equals("proxy", f.reason)
    assert.equals("proxy", f.stage)
    assert.equals(403, f.status)
    assert.truthy(f.error:find("refused the tunnel", 1, true), f.error)
    assert.equals(0, rec.count("connected"))
    assert.are_not.equal("failed", client:state()) -- retried, not given up
    px:restart { connect_ports = { emu.port } }
    assert.truthy(wait.until_(client, function() return rec.count("connected") > 0 end, 10000),
      "no recovery once the proxy allows the tunnel")
  end)

  it("a refused WebSocket tunnel (REST allowed) is a failure at stage proxy", function()
    local later = cleanups()
    local px = tinyproxy.start { connect_ports = { emu.port }, filter = { "127.0.0.1" } }
    later(function() px:stop() end)
    local client, rec = wait.start_client(emu, { proxy = px.url }, { T })
    later(function() client:close() end)
    assert.truthy(wait.until_(client, function()
      return #rec.where("failed", function(h) return h.stage == "proxy" end) > 0 end, 10000))
    local f = rec.where("failed", function(h) return h.stage == "proxy" end)[1]
    assert.equals("proxy", f.reason)
    assert.truthy(f.error:find("refused the tunnel to 127.0.0.1:" .. string.format("%d", emu.port) ..
      " with HTTP 403", 1, true), f.error)
    assert.equals(403, f.status)
    assert.equals(0, rec.count("connected"))
    assert.is_true(has_connect(px, rest_target))
  end)

  it("a refused WebSocket tunnel with credentials: the proxy's status for those credentials", function()
    local later = cleanups()
    local px = tinyproxy.start { connect_ports = { emu.port }, auth = "gnuser:" .. PASSWORD }
    later(function() px:stop() end)
    -- REST direct (no_proxy), the WebSocket through the proxy with a wrong password: 401 (no
    -- credentials at all would be 407)
    local client, rec = wait.start_client(emu, { no_proxy = "localhost",
      proxy = "http://gnuser:x" .. PASSWORD .. "@127.0.0.1:" .. string.format("%d", px.port) }, { T })
    later(function() client:close() end)
    assert.truthy(wait.until_(client, function()
      return #rec.where("failed", function(h) return h.stage == "proxy" end) > 0 end, 10000))
    local f = rec.where("failed", function(h) return h.stage == "proxy" end)[1]
    assert.equals(401, f.status)
    assert.is_nil(f.error:find(PASSWORD, 1, true))
    assert.same({ ws_target }, { px:connects()[1] })
  end)

  it("a proxy killed mid-stream is a reconnect through the restarted proxy", function()
    local later = cleanups()
    local px = tinyproxy.start { connect_ports = { emu.port } }
    later(function() px:stop() end)
    local client, rec = wait.start_client(emu, { proxy = px.url }, { T }, true)
    later(function() client:close() end)
    publish(3)
    assert.truthy(wait.until_(client, function() return #rec.events >= 1 end, 5000))
    local ws_before = count(px:connects(), ws_target)
    px:kill()
    assert.truthy(wait.until_(client, function() return rec.count("disconnected") > 0 end, 10000),
      "the dead tunnel went unnoticed")
    -- down for a while: attempts fail at the proxy
    assert.truthy(wait.until_(client, function()
      return #rec.where("failed", function(h) return h.reason == "proxy" end) > 0 end, 10000))
    px:restart()
    assert.truthy(wait.until_(client, function() return rec.count("connected") >= 2 end, 15000),
      "no reconnect through the restarted proxy")
    assert.is_true(count(px:connects(), ws_target) > ws_before)
    publish(4)
    assert.truthy(wait.until_(client, function()
      local ev = rec.events[#rec.events]
      return ev and ev.body and ev.body.n == 4 end, 5000))
  end)

  it("no_proxy exempts the hosts it names (suffix, port), for REST and WebSocket alike", function()
    local later = cleanups()
    local px = tinyproxy.start { connect_ports = { emu.port } }
    later(function() px:stop() end)
    -- REST exempt by name, the WebSocket by address and port: nothing goes through the proxy
    local client, rec = wait.start_client(emu, { proxy = px.url,
      no_proxy = "example.com, .localhost,127.0.0.1:" .. string.format("%d", emu.port) }, { T }, true)
    later(function() client:close() end)
    assert.same({}, px:connects())
    client:close()
    -- the WebSocket's entry for another port: it alone goes through the proxy
    local c2, rec2 = wait.start_client(emu, { proxy = px.url, no_proxy = "localhost,127.0.0.1:1" },
      { T }, true)
    later(function() c2:close() end)
    assert.same({ ws_target }, px:connects())
    assert.equals(1, rec2.count("connected"))
    assert.equals(1, rec.count("connected"))
  end)

  -- The environment's defaults, in a child process with its own environment.
  local function run_child(env, proxy_field)
    local root = (io.popen("pwd"):read("*l"))
    local out = os.tmpname()
    local cmd = "env -u https_proxy -u HTTPS_PROXY -u no_proxy -u NO_PROXY -u http_proxy " ..
      env .. " " .. shq(interpreter()) .. " " .. shq(root .. "/spec/support/proxy_client.lua") ..
      " " .. shq(root) .. " " .. string.format("%d", emu.port) .. " " .. shq(emu.ca_file) .. " " ..
      shq(proxy_field or "") .. " >" .. shq(out) .. " 2>&1"
    os.execute(cmd)
    local f = io.open(out)
    local text = f:read("*a")
    f:close()
    os.remove(out)
    local r = cjson.decode(text:match("[^\n]*") or "")
    assert.truthy(r, "no result from the child: " .. text)
    assert.is_nil(text:find("Sanitizer", 1, true), text)
    return r, text
  end

  it("defaults to HTTPS_PROXY / https_proxy, honours NO_PROXY, and proxy = false turns it off", function()
    local later = cleanups()
    local px = tinyproxy.start { connect_ports = { emu.port }, auth = "gnuser:" .. PASSWORD }
    later(function() px:stop() end)
    local authed = "http://gnuser:" .. PASSWORD .. "@127.0.0.1:" .. string.format("%d", px.port)
    local r, text = run_child("HTTPS_PROXY=" .. shq(authed))
    assert.is_true(r.connected, text)
    assert.equals(2, #px:connects())
    assert.is_nil(text:find(PASSWORD, 1, true))
    r, text = run_child("https_proxy=" .. shq(px.url:gsub("^http://", "")) .. " no_proxy=127.0.0.1")
    -- lower case, no scheme (as curl takes it); REST refused (no credentials), so no connection
    assert.is_false(r.connected, text)
    assert.equals("proxy", r.failed[1].reason)
    assert.equals(407, r.failed[1].status) -- none given: 407 (wrong ones: 401, tinyproxy's way)
    local before = #px:connects()
    r, text = run_child("HTTPS_PROXY=" .. shq(authed) .. " NO_PROXY=localhost,127.0.0.1")
    assert.is_true(r.connected, text)
    assert.equals(before, #px:connects())
    r, text = run_child("HTTPS_PROXY=http://127.0.0.1:1", "false")
    assert.is_true(r.connected, text)
    -- http_proxy is for http:// URLs: neither curl nor lws (which reads it by itself) takes it
    r, text = run_child("http_proxy=http://127.0.0.1:1")
    assert.is_true(r.connected, text)
    -- and a bad environment value names the variable, not the password
    r, text = run_child("HTTPS_PROXY=" .. shq("ftp://gnuser:" .. PASSWORD .. "@h:1"))
    assert.truthy(r.error and r.error:find("proxy (from HTTPS_PROXY): expected", 1, true), text)
    assert.is_nil(text:find(PASSWORD, 1, true), text)
  end)
end)

describe("proxy configuration", function()
  local base = { gateway = { host = "localhost", port = 1 }, client_id = "i", client_secret = "s" }
  local function config(extra)
    local c = {}
    for k, v in pairs(base) do c[k] = v end
    for k, v in pairs(extra) do c[k] = v end
    return pcall(notify.config, c)
  end

  it("takes the URL apart, decoding the credentials", function()
    local ok, out = config { proxy = "http://us%40er:p%3Ass@proxy.corp:3128/", no_proxy = ".corp" }
    assert.is_true(ok, out)
    assert.same({ "proxy.corp", 3128, "us@er", "p:ss", ".corp" },
      { out.proxy_host, out.proxy_port, out.proxy_user, out.proxy_pass, out.no_proxy })
    ok, out = config { proxy = "http://[::1]:8080" }
    assert.is_true(ok, out)
    assert.same({ "::1", 8080 }, { out.proxy_host, out.proxy_port })
    ok, out = config { proxy = false }
    assert.is_true(ok, out)
    assert.is_nil(out.proxy_host)
  end)

  it("names the field and what was expected, never the password", function()
    for _, case in ipairs {
      { 5, 'proxy: expected a string "http://[user:password@]host:port" or false, got 5' },
      { "proxy.corp:3128", 'got "proxy.corp:3128"' },
      { "https://u:" .. PASSWORD .. "@h:1", "https:// is not supported" },
      { "socks5://h:1", "socks5:// is not supported" },
      { "http://u:" .. PASSWORD .. "@h", "with a host and a port" },
      { "http://u:" .. PASSWORD .. "@h:70000", "with a port from 1 to 65535" },
      { "http://" .. string.rep("u", 60) .. ":" .. string.rep("p", 40) .. "@h:1", "at most 93 bytes" },
      { "http://:" .. PASSWORD .. "@h:1", "a user name without ':'" },
    } do
      local ok, err = config { proxy = case[1] }
      assert.is_false(ok)
      assert.truthy(err:find("genesys.notify: proxy: expected", 1, true), err)
      assert.truthy(err:find(case[2], 1, true), err)
      assert.is_nil(err:find(PASSWORD, 1, true), err)
    end
    local ok, err = config { proxy = "http://h:1", no_proxy = 1 }
    assert.is_false(ok)
    assert.truthy(err:find("no_proxy: expected a string", 1, true), err)
  end)
end)
