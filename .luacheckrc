-- luacheck configuration (make lint)
std = "max"
max_line_length = 110
files["spec"] = { std = "+busted" }
exclude_files = { "build/**", "spec/conformance/node_modules/**" }
files["lua/genesys/notify/resty.lua"] = { std = "max+ngx_lua" }
files["examples"] = { std = "max+ngx_lua" }
files["spec/support/resty_hook.lua"] = { std = "max+ngx_lua" }
files["spec/support/resty_slow_hook.lua"] = { std = "max+ngx_lua" }
files["spec/support/resty_bad_hook.lua"] = { std = "max+ngx_lua" }
files["spec/support/resty_count_hook.lua"] = { std = "max+ngx_lua" }
files["spec/support/resty_stuck_hook.lua"] = { std = "max+ngx_lua" }
files["spec/support/resty_lookpause_hook.lua"] = { std = "max+ngx_lua" }
files["bench/resty_bench.lua"] = { std = "max+ngx_lua" }
files["bench/resty_burst_ngx.lua"] = { std = "max+ngx_lua" }
