-- Discord's REST API as the bot uses it, on top of core.discord.request (which queues by
-- rate-limit bucket, retries, and gives message creates a nonce).
--
-- Every function waits (it must run inside a task) and returns
--   value, nil, res   on success (the decoded JSON, or true when Discord sends none)
--   nil, err, res     on failure: err is "discord 400 Invalid Form Body (50035): content:
--                     Must be 2000 or fewer in length." for an HTTP error, "unauthorized:
--                     ..." for a 401, or a transport error ("timeout", "connect: ...")
-- where res is core.discord.request's result table (nil after a transport failure).
--
-- A message is a string (its content) or a table:
--   {content =, embeds =, components =, files = {{name =, data =, content_type =}},
--    reply_to = message id, ping_reply = bool, allowed_mentions =, flags =, reason =}
-- Unless allowed_mentions is given, nothing in the text pings anyone: the bot relays text
-- from the model and from users, so it sends allowed_mentions = {parse = []}.
local core = require "core"

local M = {}

-- A table marked to encode as a JSON array even when empty ({} encodes as an object).
M.array = core.discord.array
M.null = core.discord.null

local function arr(t)
  if t == nil then return nil end
  return M.array(t)
end

-- Configures the client from the `discord` section of the configuration.
function M.configure(cfg, extra)
  local opts = {
    token = cfg.token,
    api_url = cfg.api_url,
    ca_file = cfg.ca_file,
    global_per_second = cfg.global_rate_per_second,
    user_agent_url = cfg.user_agent_url or "https://github.com/claude-coordinator",
    version = core.version,
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return core.discord.configure(opts)
end

local function call(req)
  local res, err, res401 = core.discord.request(req)
  if not res then return nil, err, res401 end
  if not res.ok then return nil, "discord " .. (res.error or tostring(res.status)), res end
  if res.json ~= nil then return res.json, nil, res end
  return true, nil, res
end
M.call = call

local function escape_segment(s)
  return (tostring(s):gsub("[^%w%-_%.~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- Builds the JSON payload of a message (create, edit, follow-up).
function M.message_payload(msg)
  if type(msg) == "string" then msg = { content = msg } end
  local p = {
    content = msg.content,
    embeds = arr(msg.embeds),
    components = arr(msg.components),
    flags = msg.flags,
    attachments = arr(msg.attachments),
  }
  local am = msg.allowed_mentions
  if am == nil then
    am = { parse = M.array() }
    if msg.ping_reply then am.replied_user = true end
  else
    local copy = {}
    for k, v in pairs(am) do copy[k] = v end
    copy.parse = arr(copy.parse)
    copy.users = arr(copy.users)
    copy.roles = arr(copy.roles)
    am = copy
  end
  p.allowed_mentions = am
  if msg.reply_to then
    p.message_reference = { message_id = tostring(msg.reply_to), fail_if_not_exists = false }
  end
  if msg.nonce then p.nonce = msg.nonce end
  return p, msg.files, msg.reason
end

-- Sends a message payload (JSON, or multipart when it has files) to a route.
local function message_call(method, path, msg)
  local payload, files, reason = M.message_payload(msg)
  return call { method = method, path = path, json = payload, files = files, reason = reason }
end

-- Posts a message in a channel; returns the message object.
function M.send(channel_id, msg)
  return message_call("POST", "/channels/" .. escape_segment(channel_id) .. "/messages", msg)
end

-- Replies to a message (no ping, and no failure if the original is gone).
function M.reply(channel_id, message_id, msg)
  if type(msg) == "string" then msg = { content = msg } end
  local m = {}
  for k, v in pairs(msg) do m[k] = v end
  m.reply_to = message_id
  return M.send(channel_id, m)
end

function M.edit(channel_id, message_id, msg)
  return message_call("PATCH",
    ("/channels/%s/messages/%s"):format(escape_segment(channel_id), escape_segment(message_id)), msg)
end

function M.delete(channel_id, message_id, reason)
  return call {
    method = "DELETE",
    path = ("/channels/%s/messages/%s"):format(escape_segment(channel_id), escape_segment(message_id)),
    reason = reason,
  }
end

-- Shows "typing…" for about 10 s; refresh about every 8 s while work goes on.
function M.typing(channel_id)
  return call { method = "POST", path = "/channels/" .. escape_segment(channel_id) .. "/typing" }
end

-- Adds the bot's reaction: emoji is a unicode emoji or "name:id" for a custom one.
function M.react(channel_id, message_id, emoji)
  return call {
    method = "PUT",
    path = ("/channels/%s/messages/%s/reactions/%s/@me"):format(
      escape_segment(channel_id), escape_segment(message_id), escape_segment(emoji)),
  }
end

M.CALLBACK = {
  PONG = 1, MESSAGE = 4, DEFERRED_MESSAGE = 5, DEFERRED_UPDATE = 6, UPDATE_MESSAGE = 7,
  AUTOCOMPLETE = 8, MODAL = 9,
}
M.EPHEMERAL = 64

-- Answers an interaction (within 3 s of its creation): kind is a number or a key of
-- M.CALLBACK; data is a message (see above) for 4 and 7, {choices = {...}} for 8.
function M.interaction_callback(interaction, kind, data)
  local t = type(kind) == "string" and M.CALLBACK[kind] or kind
  local body = { type = t }
  if data ~= nil then
    if t == M.CALLBACK.AUTOCOMPLETE then
      body.data = { choices = arr(data.choices or data) }
    elseif t == M.CALLBACK.MODAL then
      body.data = data
    else
      local payload = M.message_payload(data)
      body.data = payload
    end
  end
  local files = type(data) == "table" and data.files or nil
  return call {
    method = "POST",
    path = ("/interactions/%s/%s/callback"):format(
      escape_segment(interaction.id), escape_segment(interaction.token)),
    json = body, files = files,
  }
end

-- A follow-up message on an interaction (the token stays valid 15 minutes).
function M.follow_up(application_id, token, msg)
  return message_call("POST",
    ("/webhooks/%s/%s?wait=true"):format(escape_segment(application_id), escape_segment(token)), msg)
end

function M.edit_original(application_id, token, msg)
  return message_call("PATCH",
    ("/webhooks/%s/%s/messages/@original"):format(escape_segment(application_id), escape_segment(token)), msg)
end

-- Replaces the application's commands (per guild when guild_id is given: immediate).
function M.bulk_overwrite_commands(application_id, commands, guild_id)
  local path = guild_id
    and ("/applications/%s/guilds/%s/commands"):format(escape_segment(application_id),
                                                       escape_segment(guild_id))
    or ("/applications/%s/commands"):format(escape_segment(application_id))
  return call { method = "PUT", path = path, json = M.array(commands) }
end

-- GET /users/@me: the bot's own user. At start-up, a 401 here means the token is wrong
-- or revoked (err starts with "unauthorized"): the bot then exits 1.
function M.me()
  return call { method = "GET", path = "/users/@me" }
end

function M.gateway_bot()
  return call { method = "GET", path = "/gateway/bot" }
end

-- configure() then me(): the start-up check. Returns the bot's user, or nil, err; when
-- M.is_unauthorized(err), the token is wrong or revoked and the bot should exit 1 (a
-- retry loop would only add invalid requests).
function M.start(cfg, extra)
  M.configure(cfg, extra)
  local me, err = M.me()
  if not me then
    if M.is_unauthorized(err) then
      return nil, "Discord rejected the bot token (401 Unauthorized): it is wrong or was revoked; "
        .. "set DISCORD_TOKEN (or discord.token_file) to the token shown under Bot in the developer portal ("
        .. err .. ")"
    end
    return nil, "could not reach Discord: " .. err
  end
  return me
end

function M.is_unauthorized(err)
  return type(err) == "string"
    and (err:sub(1, 12) == "unauthorized" or err:find("(401", 1, true) ~= nil)
end

return M
