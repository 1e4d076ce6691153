-- Loading config.lua: a data file run in a sandbox, then checked against the schema.
--
-- The file returns one table. In it, `env "NAME"` reads an environment variable (nil when
-- unset) and `env("NAME", "default")` gives a default; reading any other undefined name
-- is an error, so a typo cannot silently become nil.
local S = require "coordinator.schema"

local M = {}

local snowflake = S.string { pattern = "^%d+$", pattern_what = "a Discord id (digits)" }

M.spec = S.record {
  discord = S.record {
    token = S.string { nonempty = true },
    token_file = S.string {},
    api_url = S.string { default = "https://discord.com/api/v10", pattern = "^https?://" ,
                         pattern_what = "an http(s) URL" },
    gateway_url = S.string { pattern = "^wss?://[^?]+$",
                             pattern_what = "a ws(s):// URL without a query string" },
    intents = S.list(S.enum { "GUILDS", "GUILD_MESSAGES", "DIRECT_MESSAGES", "MESSAGE_CONTENT",
                              "GUILD_MEMBERS", "GUILD_MESSAGE_REACTIONS" },
                     { default = { "GUILDS", "GUILD_MESSAGES", "DIRECT_MESSAGES", "MESSAGE_CONTENT" } }),
    compress = S.boolean { default = true },
    resume_after_restart = S.boolean { default = false },
    ca_file = S.string {},
    shard_id = S.integer { min = 0 },
    shard_count = S.integer { min = 1 },
    guild_ids = S.list(snowflake, { default = {} }),
    global_rate_per_second = S.number { default = 50, min = 1 },
  },
  claude = S.record {
    command = S.string { default = "claude", nonempty = true },
    args = S.list(S.string(), { default = {} }),
    model = S.string {},
    models = S.list(S.string { nonempty = true }, { default = { "sonnet", "opus", "haiku" }, max = 25 }),
    permission_mode = S.enum { "default", "acceptEdits", "plan", "bypassPermissions" },
    allowed_tools = S.list(S.string(), { default = {} }),
    append_system_prompt = S.string {},
    timeout = S.number { default = 900, min = 1 },
    kill_grace = S.number { default = 10, min = 0 },
    env = S.map(S.string { pattern = "^[%a_][%w_]*$", pattern_what = "a variable name" },
                S.string(), { default = {} }),
  },
  channels = S.map(snowflake, S.record {
    project = S.string { required = true, nonempty = true },
    trigger = S.enum({ "mention", "all" }, { default = "mention" }),
    model = S.string {},
    users = S.list(snowflake, { default = {} }),
    roles = S.list(snowflake, { default = {} }),
  }, { default = {} }),
  access = S.record {
    users = S.list(snowflake, { default = {} }),
    roles = S.list(snowflake, { default = {} }),
    dms = S.boolean { default = false },
    dm_project = S.string {},
  },
  limits = S.record {
    queue_per_channel = S.integer { default = 5, min = 0 },
    max_concurrent_runs = S.integer { default = 4, min = 1 },
    cpu_budget = S.number { default = 2, min = 0 },
    shutdown_grace = S.number { default = 10, min = 0 },
  },
  reply = S.record {
    chunk_limit = S.integer { default = 2000, min = 100, max = 2000 },
    max_chunks = S.integer { default = 4, min = 1 },
  },
  console = S.record {
    project = S.string {},
  },
  state_dir = S.string { default = "./state", nonempty = true },
  log_level = S.enum({ "debug", "info", "warn", "error" }, { default = "info" }),
  bot_file = S.string { default = "bot.lua", nonempty = true },
}

local function basename(path) return path:match("([^/]+)$") or path end
local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

-- A global environment where unknown names raise instead of reading as nil.
function M.strict_env(base, label)
  return setmetatable({}, {
    __index = function(_, name)
      local v = base[name]
      if v == nil then error(("%s: undefined name '%s'"):format(label, tostring(name)), 2) end
      return v
    end,
    __newindex = function(_, name)
      error(("%s: assignment to undeclared global '%s'"):format(label, tostring(name)), 2)
    end,
  })
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

local function resolve(base_dir, path)
  if path:sub(1, 1) == "/" then return path end
  return base_dir .. "/" .. path
end

-- Loads and validates the file. opts.console: no token is needed.
-- Returns config, or nil and a list of error lines.
function M.load(path, opts)
  opts = opts or {}
  local label = basename(path)
  local source, err = read_file(path)
  if not source then return nil, { ("%s: cannot read: %s"):format(label, err) } end
  local sandbox = M.strict_env({
    env = function(name, default)
      if type(name) ~= "string" then error("env: expected a variable name", 2) end
      local v = os.getenv(name)
      if v == nil or v == "" then return default end
      return v
    end,
    tostring = tostring, tonumber = tonumber, pairs = pairs, ipairs = ipairs,
    string = string, table = table, math = math,
  }, label)
  local chunk, cerr = load(source, "@" .. path, "t", sandbox)
  if not chunk then return nil, { cerr } end
  local ok, value = pcall(chunk)
  if not ok then return nil, { tostring(value) } end
  if type(value) ~= "table" then
    return nil, { ("%s: must return a table, got %s"):format(label, type(value)) }
  end
  local cfg, errors = S.check(M.spec, value, label)
  if #errors > 0 then return nil, errors end

  local dir = dirname(path)
  cfg.config_dir = dir
  cfg.bot_file = resolve(dir, cfg.bot_file)
  local d = cfg.discord
  if d.token_file then
    local t, terr = read_file(resolve(dir, d.token_file))
    if not t then return nil, { ("%s: discord.token_file: cannot read: %s"):format(label, terr) } end
    d.token = t:match("^%s*(.-)%s*$")
  end
  if not opts.console and (d.token == nil or d.token == "") then
    return nil, { ("%s: discord.token: required, but missing (set DISCORD_TOKEN, or discord.token_file)")
      :format(label) }
  end
  if (d.shard_id == nil) ~= (d.shard_count == nil) then
    return nil, { ("%s: discord.shard_id and discord.shard_count go together"):format(label) }
  end
  if d.shard_id and d.shard_id >= d.shard_count then
    return nil, { ("%s: discord.shard_id: must be below discord.shard_count"):format(label) }
  end
  for i, model in ipairs(cfg.claude.models) do
    if #model > 100 then
      return nil, { ("%s: claude.models[%d]: at most 100 characters"):format(label, i) }
    end
  end
  return cfg
end

return M
