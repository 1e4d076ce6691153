-- The config loader: sandbox, schema messages (exact), defaults, token sources.
local config = require "coordinator.config"

local tmp = os.tmpname()

local function write(text)
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  return tmp
end

local function load_text(text, opts)
  return config.load(write(text), opts)
end

local function errors_of(text, opts)
  local cfg, errors = load_text(text, opts)
  assert.is_nil(cfg)
  local label = tmp:match("([^/]+)$")
  for i, line in ipairs(errors) do errors[i] = line:gsub("^" .. label:gsub("%p", "%%%0"), "config.lua") end
  return errors
end

describe("config", function()
  teardown(function() os.remove(tmp) end)

  it("loads the shipped config.lua (console mode needs no token)", function()
    local cfg, errors = config.load("config.lua", { console = true })
    assert.is_nil(errors)
    assert.equal("https://discord.com/api/v10", cfg.discord.api_url)
    assert.equal("claude", cfg.claude.command)
  end)

  it("fills defaults and keeps given values", function()
    local cfg = assert(load_text([[return {
      discord = { token = "t0ken-abc", intents = { "GUILDS" } },
      channels = { ["123"] = { project = "/srv/app" } },
    }]]))
    assert.same({ "GUILDS" }, cfg.discord.intents)
    assert.equal("mention", cfg.channels["123"].trigger)
    assert.equal(2000, cfg.reply.chunk_limit)
    assert.equal("info", cfg.log_level)
    assert.same({}, cfg.access.users)
  end)

  it("names the key path and the types for a wrong type", function()
    assert.same({ "config.lua: discord.intents: expected a list of one of \"GUILDS\", \"GUILD_MESSAGES\", "
      .. "\"DIRECT_MESSAGES\", \"MESSAGE_CONTENT\", \"GUILD_MEMBERS\", \"GUILD_MESSAGE_REACTIONS\"s, got number" },
      errors_of([[return { discord = { token = "t0ken-abc", intents = 5 } }]]))
    assert.same({ "config.lua: claude.timeout: expected a number, got string" },
      errors_of([[return { discord = { token = "t0ken-abc" }, claude = { timeout = "10" } }]]))
    assert.same({ "config.lua: claude.args[2]: expected a string, got number" },
      errors_of([[return { discord = { token = "t0ken-abc" }, claude = { args = { "-x", 3 } } }]]))
  end)

  it("reports unknown keys, one line each", function()
    assert.same({ "config.lua: extra: unknown key", "config.lua: discord.tokn: unknown key" },
      errors_of([[return { discord = { token = "t0ken-abc", tokn = "x" }, extra = 1 }]]))
  end)

  it("reports missing required values", function()
    assert.same({ "config.lua: channels[\"42\"].project: required, but missing" },
      errors_of([[return { discord = { token = "t0ken-abc" }, channels = { ["42"] = { trigger = "all" } } }]]))
    assert.same({ "config.lua: discord.token: required, but missing (set DISCORD_TOKEN, or discord.token_file)" },
      errors_of([[return { discord = {} }]]))
  end)

  it("checks enums and channel ids", function()
    assert.same({ "config.lua: channels[\"42\"].trigger: expected one of \"mention\", \"all\", got \"every\"" },
      errors_of([[return { discord = { token = "t0ken-abc" },
        channels = { ["42"] = { project = "/p", trigger = "every" } } }]]))
    assert.same({ "config.lua: channels.general: key \"general\" does not look like a Discord id (digits)" },
      errors_of([[return { discord = { token = "t0ken-abc" }, channels = { general = { project = "/p" } } }]]))
  end)

  it("makes undefined names errors and reads the environment only through env", function()
    local errors = errors_of([[return { discord = { token = DISCORD_TOKEN } }]])
    assert.equal(1, #errors)
    assert.matches("undefined name 'DISCORD_TOKEN'", errors[1])
    local cfg = assert(load_text([[return { discord = { token = env("NO_SUCH_VAR_X", "fallback-token") } }]]))
    assert.equal("fallback-token", cfg.discord.token)
  end)

  it("reads the token from token_file", function()
    local token_path = os.tmpname()
    local f = assert(io.open(token_path, "w"))
    f:write("  file-token-123\n")
    f:close()
    local cfg = assert(load_text(([[return { discord = { token_file = %q } }]]):format(token_path)))
    assert.equal("file-token-123", cfg.discord.token)
    os.remove(token_path)
  end)

  it("does not need a token in console mode", function()
    assert.truthy(load_text([[return {}]], { console = true }))
  end)

  it("reports a syntax error and a non-table result", function()
    local errors = errors_of([[return {]])
    assert.matches("expected", errors[1])
    assert.same({ "config.lua: must return a table, got number" }, errors_of([[return 5]]))
  end)
end)
