-- The host: loads the configuration and bot.lua, connects a transport, routes events to
-- the bot's handlers (one task each), reloads on SIGHUP and shuts down on SIGINT/SIGTERM.
local core = require "core"
local config = require "coordinator.config"
local bot = require "coordinator.bot"
local console = require "coordinator.console"
local sessions = require "coordinator.sessions"
local discord_transport = require "coordinator.discord_transport"

local M = {}

local state = {
  opts = nil,
  cfg = nil,
  registry = nil,
  stopping = false,
  store = nil,      -- the session store, opened under cfg.state_dir
  info = { started = nil, transport = nil, latency = nil },
  transports = {}, -- what brings work in: {stop = fn}, stopped first at shutdown
}

local function log(level, msg) core.log[level]("host", msg) end

local function apply(cfg, registry)
  if not state.store or state.store_dir ~= cfg.state_dir then
    local store, err = sessions.open(cfg.state_dir)
    if not store then return nil, err end
    if state.store then state.store:close() end
    state.store, state.store_dir = store, cfg.state_dir
  end
  bot.set_runtime(state.store, state.info)
  state.cfg, state.registry = cfg, registry
  bot.activate(registry)
  core.log.level(state.opts.log_level or cfg.log_level)
  core.set_cpu_budget(cfg.limits.cpu_budget)
  if cfg.discord.token then core.log.add_secret(cfg.discord.token) end
  return true
end

-- Loads config.lua and bot.lua; returns cfg, registry or nil, list of error lines.
local function load_all(opts)
  local cfg, errors = config.load(opts.config_path, { console = opts.console })
  if not cfg then return nil, errors end
  if cfg.discord.token then core.log.add_secret(cfg.discord.token) end
  local registry, err = bot.load(cfg)
  if not registry then return nil, { err } end
  return cfg, registry
end

-- Hands an event to every handler of the running bot, each in its own task.
-- Returns false when the bot is shutting down and takes no new work.
-- A "command" event goes to the bot.command of that name.
function M.dispatch(event, ...)
  if state.stopping then return false end
  if event == "command" then
    local ix = ...
    local def = bot.find_command(state.registry, ix.name)
    if def then core.spawn(def.run, ix)
    else core.spawn(ix.reply, ix, { content = "Unknown command.", ephemeral = true }) end
    return true
  end
  for _, handler in ipairs(bot.handlers(state.registry, event)) do
    core.spawn(handler, ...)
  end
  return true
end

function M.find_command(name)
  return bot.find_command(state.registry, name)
end

local function reload()
  log("info", "SIGHUP: reloading " .. state.opts.config_path .. " and the bot file")
  local cfg, registry_or_errors = load_all(state.opts)
  if not cfg then
    log("error", "reload failed, the running configuration stays: "
      .. table.concat(registry_or_errors, "; "))
    return
  end
  local ok, err = apply(cfg, registry_or_errors)
  if not ok then
    log("error", "reload failed, the running configuration stays: " .. err)
    return
  end
  if state.info.transport == "discord" then discord_transport.reloaded() end
  log("info", "reloaded")
end

local function wait_for_tasks(deadline)
  -- This task is one of them.
  while core.tasks() > 1 and core.now() < deadline do core.sleep(0.05) end
  return core.tasks() - 1
end

local function shutdown(signal)
  if state.stopping then
    if signal == "INT" then
      log("warn", "second SIGINT: exiting now")
      core.exit(1)
    end
    return
  end
  state.stopping = true
  for _, t in ipairs(state.transports) do t.stop() end
  local grace = state.cfg.limits.shutdown_grace
  log("info", ("SIG%s: shutting down; waiting up to %g s for %d running task(s)")
    :format(signal, grace, core.tasks() - 1))
  local left = wait_for_tasks(core.now() + grace)
  if left > 0 then
    log("warn", ("grace period over: ending %d task(s)"):format(left))
    core.kill_all()
  end
  core.stop(0)
end

-- The program's path if it exists (a path, or a name looked up on PATH).
function M.find_program(command)
  local function executable(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
  end
  if command:find("/", 1, true) then return executable(command) and command or nil end
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    if executable(dir .. "/" .. command) then return dir .. "/" .. command end
  end
  return nil
end

-- Entry point of the executable. Returns an exit code to stop at once, or nil to run.
function M.main(opts)
  state.opts = opts
  if opts.log_level then core.log.level(opts.log_level) end
  local cfg, registry_or_errors = load_all(opts)
  if not cfg then
    for _, line in ipairs(registry_or_errors) do io.stderr:write(line, "\n") end
    return 2
  end
  if opts.check then
    io.stdout:write(("%s: OK (bot file %s)\n"):format(opts.config_path, cfg.bot_file))
    return 0
  end
  local ok, err = apply(cfg, registry_or_errors)
  if not ok then
    io.stderr:write(("%s: state_dir: %s\n"):format(opts.config_path, err))
    return 2
  end
  state.info.started = core.now()

  core.signal.on("HUP", reload)
  core.signal.on("TERM", shutdown)
  core.signal.on("INT", shutdown)

  if opts.console then
    state.info.transport = "console"
    local reader = core.spawn(console.run, M.dispatch, M.find_command)
    state.transports[#state.transports + 1] = { stop = function() reader:cancel() end }
    log("info", "console mode: each line you type is a message to the bot; /status, /model, /reset, /stop work")
    if not M.find_program(cfg.claude.command) then
      log("warn", ("claude.command %q was not found: install Claude Code with "
        .. "`npm install -g @anthropic-ai/claude-code`, or set claude.command in %s")
        :format(cfg.claude.command, opts.config_path))
    end
    return nil
  end
  state.info.transport = "discord"
  state.transports[#state.transports + 1] = { stop = discord_transport.stop }
  core.spawn(function()
    local served, fatal = discord_transport.run {
      cfg = cfg, dispatch = M.dispatch, store = state.store, info = state.info,
      commands = function() return bot.commands(state.registry) end,
    }
    if not served then
      log("error", fatal)
      core.stop(1)
    end
  end)
  return nil
end

return M
