std = "lua54"
-- `local _name <close> = guard`: held for its scope, never read.
ignore = { "211/_.+" }
max_line_length = 120
files["spec"] = { std = "+busted" }
files["config.lua"] = { globals = {}, read_globals = { "env" } }
exclude_files = { "build", "build-*" }
