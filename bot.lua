-- bot.lua: the policy. What a mention means, what each command does, what replies look
-- like. Edit it and send SIGHUP (or restart) to change the bot; `--check` validates it.
--
-- Handlers run in a task each, so they may wait (for the channel's lock, for Claude, for
-- Discord) without blocking anything else. Reading an undefined global is an error here.
--
-- A message (`msg`) has: id, channel_id, guild_id, parent_id (a thread's parent channel),
-- is_dm, content, author {id, username, bot}, roles (the author's role ids),
-- mentions_bot, bot_user_id, transport ("discord" or "console"), and methods
-- msg:reply(payload) (answers that message), msg:send(payload) (to its channel),
-- msg:typing(), msg:react(emoji). A payload is a string or
-- {content =, files = {{name =, data =}}, components =, embeds =}. Replies never ping:
-- the transports send allowed_mentions = {parse = []}.
--
-- An interaction (`ix`: a slash command or a button press) has: name, options (a map),
-- custom_id, user {id, username}, roles, channel_id, guild_id, parent_id, is_dm,
-- transport, and ix:reply(payload) (payload.ephemeral hides it from others),
-- ix:defer(), ix:update(payload) (edits the button's message), ix:followup(payload),
-- ix:edit_original(payload).
local core = require "core"
local bot = require "coordinator.bot"
local turns = require "coordinator.turns"

local HELP = "Mention me with what you want done in this channel's project, "
  .. "e.g. `@me fix the failing test`. Commands: /status, /model, /reset, /stop."
local TYPING_EVERY = 8      -- seconds; Discord's indicator lasts about 10
local CONFIRM_FOR = 60      -- seconds the /reset buttons stay usable

local function cfg() return bot.config() end

-- Store writes that fail (disk full, I/O) are logged: the turn itself goes on.
local function check_store(ok, err)
  if not ok then core.log.error("bot", "session store: " .. tostring(err)) end
end

-- ---------------------------------------------------------------------------------------
-- Where a message belongs: its channel's configuration, or nil when the bot ignores it.
-- A thread inherits its parent channel's configuration and has a session of its own.

local function route(where)
  local c = cfg()
  if where.transport == "console" then
    return { key = where.channel_id, project = c.console.project or os.getenv("PWD") or ".",
             trigger = "all", users = {}, roles = {}, open = true }
  end
  if where.is_dm then
    if not c.access.dms or not c.access.dm_project then return nil end
    return { key = where.channel_id, project = c.access.dm_project, trigger = "all",
             users = {}, roles = {} }
  end
  local ch = c.channels[where.channel_id] or (where.parent_id and c.channels[where.parent_id])
  if not ch then return nil end
  return { key = where.channel_id, project = ch.project, trigger = ch.trigger, model = ch.model,
           users = ch.users, roles = ch.roles }
end

-- With no user or role list (global or the channel's), anyone who can post may use it.
local function allowed(r, user_id, roles)
  if r.open then return true end
  local c = cfg()
  local lists = { c.access.users, r.users }
  local role_lists = { c.access.roles, r.roles }
  local any = false
  for _, list in ipairs(lists) do
    for _, id in ipairs(list) do
      any = true
      if id == user_id then return true end
    end
  end
  for _, list in ipairs(role_lists) do
    for _, id in ipairs(list) do
      any = true
      for _, have in ipairs(roles or {}) do
        if have == id then return true end
      end
    end
  end
  return not any
end

local told_not_allowed = {} -- "channel:user" -> true: say it once per user per channel

local function refuse(msg, r)
  local k = r.key .. ":" .. msg.author.id
  core.log.info("bot", ("refused user %s in channel %s: not in the allowed users or roles")
    :format(msg.author.id, r.key))
  if told_not_allowed[k] then return end
  told_not_allowed[k] = true
  msg:reply("Sorry, you are not allowed to use me in this channel.")
end

-- The prompt, or nil when the message is not for the bot.
local function prompt_of(msg, r)
  local text = msg.content or ""
  local mentioned = msg.mentions_bot
  if msg.bot_user_id then
    local n
    text, n = text:gsub("<@!?" .. msg.bot_user_id .. ">", "")
    mentioned = mentioned or n > 0
  end
  if r.trigger ~= "all" and not mentioned then return nil end
  return (text:match("^%s*(.-)%s*$"))
end

-- ---------------------------------------------------------------------------------------
-- Replies

local function chunks_of(text, limit)
  return core.chunk(text, { limit = limit or cfg().reply.chunk_limit })
end

-- Sends a long text: in order, the first chunk as a reply to msg; above
-- reply.max_chunks, the first chunk and the whole text as a Markdown file.
local function deliver(msg, text)
  local c = cfg().reply
  local chunks = chunks_of(text)
  if #chunks > c.max_chunks then
    local note = ("\n\n*(%d messages' worth: the whole reply is attached as reply.md)*"):format(#chunks)
    local first = chunks_of(text, c.chunk_limit - utf8.len(note))[1]
    return msg:reply { content = first .. note, files = { { name = "reply.md", data = text } } }
  end
  for i, chunk in ipairs(chunks) do
    local ok, err
    if i == 1 then ok, err = msg:reply(chunk) else ok, err = msg:send(chunk) end
    if not ok then return nil, err end
  end
  return true
end

local function denials_text(denials)
  if not denials or #denials == 0 then return "" end
  local lines = { "", "Claude was not allowed to use:" }
  for _, d in ipairs(denials) do
    lines[#lines + 1] = ("- %s%s"):format(d.tool, d.summary and (": `" .. d.summary .. "`") or "")
  end
  lines[#lines + 1] = "(claude.permission_mode / claude.allowed_tools in config.lua widen this)"
  return table.concat(lines, "\n")
end

local function fence(text)
  return "```\n" .. text:gsub("```", "`\u{200b}``") .. "\n```"
end

-- What the user reads when a turn did not give an answer.
local function failure_text(outcome, run)
  local kind, message = outcome.kind, outcome.message or ""
  if kind == "api_error" then return "Claude could not answer: " .. message end
  if kind == "timeout" then
    return ("Stopped: the turn ran longer than %d s (claude.timeout in config.lua)."):format(cfg().claude.timeout)
  end
  if kind == "interrupted" then
    if run and run.stopped_by then return ("Stopped by <@%s>."):format(run.stopped_by) end
    return "The turn was interrupted."
  end
  if kind == "not_found" then
    return ("I could not run `%s`: it is not installed or not on PATH. Install Claude Code with "
      .. "`npm install -g @anthropic-ai/claude-code`, or point claude.command in config.lua at it.")
      :format(cfg().claude.command)
  end
  if kind == "no_project" then
    return "This channel's project directory is missing (" .. message .. "). "
      .. "Fix its `project` in config.lua."
  end
  if kind == "bad_output" or kind == "crashed" or kind == "cli_error" then
    return "Claude did not finish normally (" .. kind .. "):\n" .. fence(message)
  end
  return ("Claude stopped with %s: %s"):format(kind, message)
end

-- ---------------------------------------------------------------------------------------
-- A turn: the channel's lock, then Claude, then the reply.

local function session_model(r, row)
  return (row and row.model) or r.model or cfg().claude.model
end

local function short(id) return id and id:sub(1, 8) or "none" end

local function run_claude(r, msg, prompt, session_id, model)
  local store = bot.store()
  return turns.run {
    cfg = cfg(), key = r.key, project = r.project, session_id = session_id, model = model,
    prompt = prompt, user_id = msg.author.id,
    on_progress = function(p)
      -- Known as soon as Claude starts: a crash mid-turn still leaves it resumable.
      if p.kind == "init" and p.session_id and p.session_id ~= session_id then
        check_store(store:set_session(r.key, { session_id = p.session_id, project = r.project }))
      end
    end,
  }
end

local function take_turn(r, msg, prompt)
  local store = bot.store()
  local row = store:get(r.key, r.project)
  local session_id = row and row.session_id
  local model = session_model(r, row)

  local typing = core.spawn(function()
    repeat msg:typing() until not core.sleep(TYPING_EVERY)
  end)
  local _ <close> = setmetatable({}, { __close = function() typing:cancel() end })

  local _slot <close> = turns.slot(cfg().limits.max_concurrent_runs)
  local started = core.now()
  local outcome, run = run_claude(r, msg, prompt, session_id, model)
  local notice
  if not outcome.ok and outcome.kind == "stale_session" and session_id then
    check_store(store:reset(r.key, "bot"))
    notice = ("*(The previous conversation %s could not be resumed: %s. Started a new one.)*")
      :format(short(session_id), outcome.message)
    outcome, run = run_claude(r, msg, prompt, nil, model)
  end

  if outcome.session_id then
    local usage = outcome.usage or {}
    check_store(store:record_turn(r.key, {
      session_id = outcome.session_id, project = r.project, cost = outcome.cost or 0,
      -- JSON numbers arrive as floats
      input_tokens = math.tointeger(usage.input_tokens or 0) or 0,
      output_tokens = math.tointeger(usage.output_tokens or 0) or 0,
      user_id = msg.author.id,
    }))
  end
  core.log.info("turn", ("channel=%s user=%s prompt_chars=%d duration=%.1fs exit=%s cost=%.4f ended=%s")
    :format(r.key, msg.author.id, utf8.len(prompt) or #prompt, core.now() - started,
            tostring(outcome.code or (outcome.ok and 0) or "-"), outcome.cost or 0,
            outcome.ok and "ok" or outcome.kind))

  if notice then msg:send(notice) end
  if not outcome.ok then return deliver(msg, failure_text(outcome, run)) end
  local text = outcome.text or ""
  if not text:match("%S") then
    return deliver(msg, "Claude finished without a reply." .. denials_text(outcome.denials))
  end
  return deliver(msg, text)
end

bot.on("message", function(msg)
  if msg.author.bot or msg.author.id == msg.bot_user_id then return end
  local r = route(msg)
  if not r then return end
  local prompt = prompt_of(msg, r)
  if not prompt then return end
  if not allowed(r, msg.author.id, msg.roles) then return refuse(msg, r) end
  if prompt == "" then return msg:reply(HELP) end

  -- Position and place in line are taken together, before anything waits, so the
  -- notices and the lock's FIFO order agree with the order messages arrived in.
  local ahead = #turns.queue(r.key)
  if ahead > cfg().limits.queue_per_channel then
    return msg:reply(("This channel is busy (%d waiting). Please send it again once the queue is shorter.")
      :format(ahead - 1))
  end
  local _ticket <close> = turns.enqueue(r.key, { msg = msg })
  if ahead > 0 then core.spawn(msg.reply, msg, ("Queued — %d ahead of you."):format(ahead)) end
  local _guard <close> = assert(core.lock.acquire(r.key))
  local delivered, err = take_turn(r, msg, prompt)
  if not delivered then
    core.log.error("bot", ("could not deliver the reply in channel %s: %s"):format(r.key, tostring(err)))
  end
end)

-- ---------------------------------------------------------------------------------------
-- Slash commands. Each answers within Discord's 3 seconds.

-- The channel an interaction is about, checked like a message's; nil after answering.
local function command_route(ix)
  local r = route(ix)
  if not r then
    ix:reply { content = "This channel is not configured for me.", ephemeral = true }
    return nil
  end
  if not allowed(r, ix.user.id, ix.roles) then
    ix:reply { content = "Sorry, you are not allowed to use me in this channel.", ephemeral = true }
    return nil
  end
  return r
end

local function ts(unix) return unix and ("<t:%d:R>"):format(unix) or "never" end

local function duration(s)
  s = math.floor(s)
  if s < 60 then return s .. " s" end
  if s < 3600 then return ("%d min %d s"):format(s // 60, s % 60) end
  return ("%d h %d min"):format(s // 3600, (s % 3600) // 60)
end

bot.command {
  name = "status",
  description = "Show this channel's Claude session and the bot's state",
  run = function(ix)
    local r = command_route(ix)
    if not r then return end
    local row = bot.store():get(r.key, r.project) or {}
    local run = turns.current(r.key)
    local queued = #turns.queue(r.key) - (run and 1 or 0)
    local state = run and ("running for %s"):format(duration(core.now() - run.started)) or "idle"
    if queued > 0 then state = state .. (", %d queued"):format(queued) end
    local info = bot.info() or {}
    local seconds = info.latency and info.latency()
    local latency = seconds and ("%d ms"):format(math.floor(seconds * 1000 + 0.5)) or "n/a"
    ix:reply { embeds = { {
      title = "Claude session",
      color = run and 0xE67E22 or 0x2ECC71,
      fields = {
        { name = "Session", value = short(row.session_id), inline = true },
        { name = "Model", value = session_model(r, row) or "CLI default", inline = true },
        { name = "State", value = state, inline = true },
        { name = "Project", value = "`" .. r.project .. "`" },
        { name = "Turns", value = tostring(row.session_turns or 0), inline = true },
        { name = "Cost", value = ("$%.4f"):format(row.total_cost or 0), inline = true },
        { name = "Last activity", value = ts(row.last_activity), inline = true },
        { name = "Bot uptime", value = duration(core.now() - (info.started or core.now())), inline = true },
        { name = "Gateway latency", value = latency, inline = true },
      },
    } } }
  end,
}

local function model_choices()
  local choices = {}
  for i, m in ipairs(cfg().claude.models) do
    if i > 25 then break end
    choices[#choices + 1] = { name = m, value = m }
  end
  return choices
end

bot.command {
  name = "model",
  description = "Show or set the Claude model for this channel",
  options = function()
    return { { type = 3, name = "name", description = "The model for the next turns",
               required = false, choices = model_choices() } }
  end,
  run = function(ix)
    local r = command_route(ix)
    if not r then return end
    local store = bot.store()
    local name = ix.options.name
    local list = table.concat(cfg().claude.models, ", ")
    if not name then
      local row = store:get(r.key, r.project)
      return ix:reply(("Model: **%s**. Choices: %s."):format(session_model(r, row) or "CLI default", list))
    end
    local known = false
    for _, m in ipairs(cfg().claude.models) do known = known or m == name end
    if not known then
      return ix:reply { content = ("Unknown model `%s`. Choices: %s."):format(name, list), ephemeral = true }
    end
    check_store(store:set_model(r.key, name, ix.user.id))
    ix:reply(("Model set to **%s** for the next turns in this channel."):format(name))
  end,
}

bot.command {
  name = "stop",
  description = "Stop the turn Claude is running in this channel",
  run = function(ix)
    local r = command_route(ix)
    if not r then return end
    local run = turns.current(r.key)
    if not run or not turns.stop(r.key, ix.user.id) then
      return ix:reply { content = "Nothing is running in this channel.", ephemeral = true }
    end
    local queue = turns.queue(r.key) -- the running turn first, then the waiting ones
    local waiting = #queue - 1
    local after = waiting > 0 and (" %d queued message(s) will run next, in order."):format(waiting) or ""
    ix:reply(("Stopping the running turn (started %s ago).%s"):format(duration(core.now() - run.started), after))
    -- Each waiting author hears what happens to their message.
    for i = 2, #queue do
      local m = queue[i].msg
      core.spawn(m.reply, m, ("The turn ahead of yours was stopped by <@%s>. Your message stays queued: %s.")
        :format(ix.user.id, i == 2 and "it runs next" or ("%d ahead of it"):format(i - 2)))
    end
  end,
}

-- /reset asks first. The buttons carry the requester's id; only they may press them.
local pending_resets = {} -- custom_id suffix -> {user_id =, key =, done =}

bot.command {
  name = "reset",
  description = "Forget this channel's Claude conversation (asks first)",
  run = function(ix)
    local r = command_route(ix)
    if not r then return end
    local nonce = ("%s:%d"):format(ix.user.id, math.random(1, 1 << 30))
    local pending = { user_id = ix.user.id, key = r.key, project = r.project }
    pending_resets[nonce] = pending
    local function buttons(disabled)
      return { { type = 1, components = {
        { type = 2, style = 4, label = "Confirm", custom_id = "reset:yes:" .. nonce, disabled = disabled },
        { type = 2, style = 2, label = "Cancel", custom_id = "reset:no:" .. nonce, disabled = disabled },
      } } }
    end
    ix:reply { content = "Forget this channel's conversation with Claude? The next turn starts fresh.",
               components = buttons(false) }
    core.sleep(CONFIRM_FOR)
    if not pending.done then
      pending.done = true
      pending_resets[nonce] = nil
      ix:edit_original { content = "Reset not confirmed in time; nothing changed.", components = buttons(true) }
    end
  end,
}

bot.on("component", function(ix)
  local answer, nonce = (ix.custom_id or ""):match("^reset:(%a+):(.+)$")
  if not answer then return end
  local pending = pending_resets[nonce]
  if not pending or pending.done then
    return ix:reply { content = "This question has expired.", ephemeral = true }
  end
  if ix.user.id ~= pending.user_id then
    return ix:reply { content = "Not yours: only the person who asked for the reset can answer.", ephemeral = true }
  end
  pending.done = true
  pending_resets[nonce] = nil
  if answer ~= "yes" then
    return ix:update { content = "Reset cancelled; nothing changed.", components = {} }
  end
  -- A reset while a turn runs would race the turn's own session update: refuse.
  if turns.current(pending.key) then
    return ix:update { content = "A turn is running in this channel: use /stop first, then /reset.",
                       components = {} }
  end
  check_store(bot.store():reset(pending.key, ix.user.id))
  ix:update { content = ("Session reset by <@%s>. The next turn starts a new conversation."):format(ix.user.id),
              components = {} }
end)
