std = "lua54"
max_line_length = 120
files["spec"] = { std = "+busted" }
files["config.lua"] = { globals = {}, read_globals = { "env" } }
exclude_files = { "build", "build-*" }
