-- luacheck configuration (make lint)
std = "max"
max_line_length = 110
files["spec"] = { std = "+busted" }
exclude_files = { "build/**", "spec/conformance/node_modules/**" }
files["bench/resty_bench.lua"] = { std = "max+ngx_lua" }
