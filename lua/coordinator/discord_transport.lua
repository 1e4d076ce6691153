-- The Discord transport: the gateway brings events in, REST sends replies. It turns
-- Discord's payloads into the messages and interactions bot.lua sees (see bot.lua's
-- header), registers the bot's slash commands, and keeps what events do not carry (a
-- thread's parent channel).
--
--   local ok, err = transport.run{cfg =, dispatch =, commands = function() end,
--                                 store =, info =}
-- runs until the gateway stops: true after a shutdown, nil and the operator's message
-- after a fatal error (bad token, disallowed intents...).
local core = require "core"
local cjson = require "cjson"
local discord = require "coordinator.discord"

local M = {}

local INTENT_BITS = {
  GUILDS = 1 << 0, GUILD_MEMBERS = 1 << 1, GUILD_MESSAGES = 1 << 9,
  GUILD_MESSAGE_REACTIONS = 1 << 10, DIRECT_MESSAGES = 1 << 12, MESSAGE_CONTENT = 1 << 15,
}
local DEFER_AFTER = 2.5 -- seconds: an interaction not answered by then is deferred
local RESUME_WITHIN = 120 -- seconds: how long a saved gateway session is worth resuming
local THREAD_TYPES = { [10] = true, [11] = true, [12] = true }

local function log(level, msg) core.log[level]("discord", msg) end

local function present(v)
  if v == nil or v == cjson.null then return nil end
  return v
end

function M.intents(names)
  local bits = 0
  for _, name in ipairs(names) do bits = bits | INTENT_BITS[name] end
  return bits
end

-- A stable text form of a value (sorted keys), to tell whether definitions changed.
local function canonical(v)
  if type(v) ~= "table" then return cjson.encode(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = cjson.encode(tostring(k)) .. ":" .. canonical(v[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- The Discord definitions of the bot's commands.
function M.command_definitions(commands)
  local defs = {}
  for _, c in ipairs(commands) do
    local options = type(c.options) == "function" and c.options() or c.options or {}
    for _, o in ipairs(options) do
      if o.choices then o.choices = discord.array(o.choices) end
    end
    defs[#defs + 1] = { name = c.name, type = 1, description = c.description or c.name,
                        options = discord.array(options) }
  end
  return defs
end

local Transport = {}
Transport.__index = Transport

-- Registers the commands by bulk overwrite, only when they differ from what was last
-- registered (Discord allows 200 command creates per guild per day).
function Transport:register_commands()
  if not self.application_id then return end
  local defs = M.command_definitions(self.commands())
  local text = canonical(defs)
  local targets = #self.cfg.discord.guild_ids > 0 and self.cfg.discord.guild_ids or { false }
  for _, guild in ipairs(targets) do
    local meta = ("commands:%s:%s"):format(self.application_id, guild or "global")
    if self.store:get_meta(meta) ~= text then
      local ok, err = discord.bulk_overwrite_commands(self.application_id, defs, guild or nil)
      if ok then
        self.store:set_meta(meta, text)
        log("info", ("registered %d slash command(s) %s"):format(#defs, guild and ("in guild " .. guild) or "globally"))
      else
        log("error", "could not register the slash commands: " .. tostring(err))
      end
    end
  end
end

-- The parent of a thread (nil for other channels), asking Discord once when unknown.
function Transport:parent_of(channel_id, guild_id)
  if not guild_id or self.cfg.channels[channel_id] then return nil end
  local known = self.parents[channel_id]
  if known ~= nil then return known or nil end
  local ch = discord.call { method = "GET", path = "/channels/" .. channel_id }
  local parent = ch and THREAD_TYPES[ch.type] and present(ch.parent_id) or false
  self.parents[channel_id] = parent
  return parent or nil
end

function Transport:learn_threads(threads)
  for _, t in ipairs(threads or {}) do
    if present(t.parent_id) then self.parents[t.id] = t.parent_id end
  end
end

local function payload_of(p)
  if type(p) == "string" then return { content = p } end
  return p
end

function Transport:message(d)
  local author = d.author or {}
  local guild_id = present(d.guild_id)
  local mentions_bot = false
  for _, m in ipairs(d.mentions or {}) do
    if m.id == self.user_id then mentions_bot = true end
  end
  local channel_id, id = d.channel_id, d.id
  return {
    id = id, channel_id = channel_id, guild_id = guild_id, is_dm = guild_id == nil,
    parent_id = self:parent_of(channel_id, guild_id),
    content = present(d.content) or "",
    author = { id = author.id, username = author.username, bot = author.bot == true },
    roles = d.member and d.member.roles or {},
    mentions_bot = mentions_bot, bot_user_id = self.user_id, transport = "discord",
    reply = function(_, p) return discord.reply(channel_id, id, payload_of(p)) end,
    send = function(_, p) return discord.send(channel_id, payload_of(p)) end,
    typing = function() return discord.typing(channel_id) end,
    react = function(_, emoji) return discord.react(channel_id, id, emoji) end,
  }
end

-- An interaction answers once by callback; one that takes longer than DEFER_AFTER is
-- deferred, and its answer then edits the deferred response.
function Transport:interaction(d)
  local member = present(d.member)
  local user = member and member.user or present(d.user) or {}
  local data = present(d.data) or {}
  local guild_id = present(d.guild_id)
  local component = d.type == 3
  local options = {}
  for _, o in ipairs(data.options or {}) do options[o.name] = o.value end
  local state = { answered = false, deferred = false }
  local app_id = d.application_id or self.application_id
  local ix = {
    id = d.id, token = d.token, name = data.name, custom_id = data.custom_id, options = options,
    user = { id = user.id, username = user.username }, roles = member and member.roles or {},
    channel_id = d.channel_id, guild_id = guild_id, is_dm = guild_id == nil,
    parent_id = self:parent_of(d.channel_id, guild_id),
    message = present(d.message), transport = "discord",
  }
  local watchdog
  local function answer(kind, p)
    -- The watchdog may be sending the deferral right now: leave it alone then.
    if not state.deferred then watchdog:cancel() end
    state.answered = true
    if state.deferred then return discord.edit_original(app_id, d.token, p) end
    return discord.interaction_callback(ix, kind, p)
  end
  function ix.reply(_, p)
    p = payload_of(p)
    if state.answered and not state.deferred then return discord.follow_up(app_id, d.token, p) end
    if p.ephemeral then
      local q = {}
      for k, v in pairs(p) do q[k] = v end
      q.ephemeral, q.flags = nil, (p.flags or 0) | discord.EPHEMERAL
      p = q
    end
    return answer(discord.CALLBACK.MESSAGE, p)
  end
  function ix.update(_, p) return answer(discord.CALLBACK.UPDATE_MESSAGE, payload_of(p)) end
  function ix.defer()
    if state.answered then return true end
    state.answered, state.deferred = true, true
    return discord.interaction_callback(ix, component and "DEFERRED_UPDATE" or "DEFERRED_MESSAGE")
  end
  function ix.followup(_, p) return discord.follow_up(app_id, d.token, payload_of(p)) end
  function ix.edit_original(_, p) return discord.edit_original(app_id, d.token, payload_of(p)) end
  watchdog = core.spawn(function()
    if core.sleep(DEFER_AFTER) and not state.answered then ix:defer() end
  end)
  return ix
end

function Transport:on_event(name, d)
  if name == "READY" then
    self.user_id = d.user and d.user.id
    self.application_id = d.application and d.application.id or self.application_id
    log("info", ("ready as %s (%s) in %d guild(s)"):format(
      d.user and d.user.username or "?", self.user_id or "?", #(d.guilds or {})))
    self:register_commands()
  elseif name == "GUILD_CREATE" then
    for _, ch in ipairs(d.channels or {}) do
      if not THREAD_TYPES[ch.type] then self.parents[ch.id] = false end
    end
    self:learn_threads(d.threads)
  elseif name == "THREAD_CREATE" or name == "THREAD_UPDATE" then
    self:learn_threads({ d })
  elseif name == "THREAD_LIST_SYNC" then
    self:learn_threads(d.threads)
  elseif name == "MESSAGE_CREATE" then
    if d.author and d.author.id == self.user_id then return end
    self.dispatch("message", self:message(d))
  elseif name == "INTERACTION_CREATE" then
    if d.type == 2 then self.dispatch("command", self:interaction(d))
    elseif d.type == 3 then self.dispatch("component", self:interaction(d))
    elseif d.type == 4 then
      discord.interaction_callback({ id = d.id, token = d.token }, "AUTOCOMPLETE", { choices = {} })
    end
  end
end

local active -- the running transport, for reloads

-- After a reload: the command definitions may have changed.
function M.reloaded()
  if active then core.spawn(function() active:register_commands() end) end
end

function M.run(o)
  local cfg = o.cfg
  local d = cfg.discord
  local self = setmetatable({ cfg = cfg, dispatch = o.dispatch, commands = o.commands, store = o.store,
                              parents = {} }, Transport)
  local me, err = discord.start(d)
  if not me then return nil, err end
  self.user_id = me.id
  -- GET /gateway/bot gives the URL (unless configured) and the session start budget.
  local info, gerr = discord.gateway_bot()
  if not info and not d.gateway_url then
    return nil, "could not get the gateway URL (GET /gateway/bot): " .. tostring(gerr)
  end
  local limit = info and info.session_start_limit or {}
  local url, max_concurrency = d.gateway_url or info.url, math.tointeger(limit.max_concurrency) or 1
  if limit.remaining and limit.remaining < 1 then
    -- Discord resets the token of a bot that goes past its daily identifies: wait instead.
    local wait = (tonumber(limit.reset_after) or 0) / 1000
    log("warn", ("no gateway session starts left today (1000 a day; going past it resets the token): "
      .. "waiting %.0f s for Discord's reset"):format(wait))
    local deadline = core.now() + wait
    while core.now() < deadline and not M.stopping do core.sleep(math.min(1, deadline - core.now())) end
    if M.stopping then return true end
  end

  self.session_key = ("gateway-session:%d"):format(d.shard_id or 0)
  local gw = core.gateway.start {
    url = url, token = d.token, intents = M.intents(d.intents), compress = d.compress,
    ca_file = d.ca_file, shard = d.shard_id and { d.shard_id, d.shard_count } or nil,
    max_concurrency = max_concurrency, resume = self:saved_session(),
    on_event = function(name, data) self:on_event(name, data) end,
  }
  o.info.latency = function()
    local ms = gw:latency()
    return ms and ms / 1000
  end
  self.gateway = gw
  active = self
  local ok, werr = gw:wait()
  active = nil
  if not ok then return nil, werr end
  return true
end

-- Shutdown: leave the gateway for good (close 1000); run() then returns true. Replies of
-- turns still running go out over REST.
function M.stop()
  M.stopping = true
  if not active then return end
  if not active.cfg.discord.resume_after_restart then return active.gateway:stop() end
  -- Close with 4000 and keep the session for the next process, which resumes it and so
  -- receives what was sent while the bot was down.
  local gw, store, key = active.gateway, active.store, active.session_key
  gw:stop(true)
  local session_id, seq, url = gw:session()
  if session_id then
    store:set_meta(key, cjson.encode { session_id = session_id, seq = seq, url = url, saved_at = os.time() })
    log("info", "gateway session kept for the next start")
  end
end

-- The session a previous process kept (discord.resume_after_restart), once.
function Transport:saved_session()
  local saved = self.store:get_meta(self.session_key)
  if not saved then return nil end
  self.store:delete_meta(self.session_key)
  local ok, s = pcall(cjson.decode, saved)
  if not ok or type(s) ~= "table" or type(s.session_id) ~= "string"
    or os.time() - (tonumber(s.saved_at) or 0) > RESUME_WITHIN then
    return nil
  end
  log("info", "resuming the gateway session of the previous run")
  return { session_id = s.session_id, seq = math.tointeger(s.seq) or 0, url = present(s.url) }
end

return M
