-- Gateway settings from the configuration: intent names to the bitfield, the shard of a
-- guild, and the option table core.gateway.start takes.
local M = {}

-- Discord's gateway intents (API v10). Privileged ones must also be enabled in the
-- developer portal (Bot > Privileged Gateway Intents), or Discord closes with 4014.
M.INTENTS = {
  GUILDS = 1 << 0,
  GUILD_MEMBERS = 1 << 1,            -- privileged
  GUILD_PRESENCES = 1 << 8,          -- privileged
  GUILD_MESSAGES = 1 << 9,
  GUILD_MESSAGE_REACTIONS = 1 << 10,
  DIRECT_MESSAGES = 1 << 12,
  MESSAGE_CONTENT = 1 << 15,         -- privileged
}

-- {"GUILDS", "MESSAGE_CONTENT"} -> 32769, or nil, "unknown intent: X".
function M.intents(names)
  local bits = 0
  for _, name in ipairs(names) do
    local bit = M.INTENTS[name]
    if not bit then return nil, "unknown intent: " .. tostring(name) end
    bits = bits | bit
  end
  return bits
end

-- The shard that receives a guild's events: (guild_id >> 22) % shard_count; DMs go to 0.
function M.shard_for(guild_id, shard_count)
  if guild_id == nil then return 0 end
  local id = math.tointeger(tonumber(guild_id))
  if not id then return nil, "not a snowflake: " .. tostring(guild_id) end
  return (id >> 22) % shard_count
end

-- The table for core.gateway.start from the `discord` section of the configuration.
-- url: the configured gateway_url, else the one GET /gateway/bot returned (passed in).
-- handlers: { on_event = fn(name, data, seq), on_fatal = fn(code, message) }.
function M.options(discord, url, handlers)
  local intents, err = M.intents(discord.intents)
  if not intents then return nil, err end
  url = discord.gateway_url or url
  if not url then return nil, "no gateway URL: set discord.gateway_url or ask GET /gateway/bot" end
  local shard
  if discord.shard_count then shard = { discord.shard_id or 0, discord.shard_count } end
  return {
    url = url,
    token = discord.token,
    intents = intents,
    compress = discord.compress,
    ca_file = discord.ca_file,
    shard = shard,
    max_concurrency = discord.max_concurrency,
    on_event = handlers.on_event,
    on_fatal = handlers.on_fatal,
  }
end

return M
