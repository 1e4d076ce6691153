-- The host: loads the configuration and bot.lua, connects a transport, routes events to
-- the bot's handlers (one task each), reloads on SIGHUP and shuts down on SIGINT/SIGTERM.
local core = require "core"
local config = require "coordinator.config"
local bot = require "coordinator.bot"
local console = require "coordinator.console"

local M = {}

local state = {
  opts = nil,
  cfg = nil,
  registry = nil,
  stopping = false,
  transports = {}, -- tasks that bring work in; cancelled first at shutdown
}

local function log(level, msg) core.log[level]("host", msg) end

local function apply(cfg, registry)
  state.cfg, state.registry = cfg, registry
  bot.activate(registry)
  core.log.level(state.opts.log_level or cfg.log_level)
  core.set_cpu_budget(cfg.limits.cpu_budget)
  if cfg.discord.token then core.log.add_secret(cfg.discord.token) end
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
function M.dispatch(event, ...)
  if state.stopping then return false end
  for _, handler in ipairs(bot.handlers(state.registry, event)) do
    core.spawn(handler, ...)
  end
  return true
end

local function reload()
  log("info", "SIGHUP: reloading " .. state.opts.config_path .. " and the bot file")
  local cfg, registry_or_errors = load_all(state.opts)
  if not cfg then
    log("error", "reload failed, the running configuration stays: "
      .. table.concat(registry_or_errors, "; "))
    return
  end
  apply(cfg, registry_or_errors)
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
  for _, t in ipairs(state.transports) do t:cancel() end
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
  apply(cfg, registry_or_errors)

  core.signal.on("HUP", reload)
  core.signal.on("TERM", shutdown)
  core.signal.on("INT", shutdown)

  if opts.console then
    state.transports[#state.transports + 1] = core.spawn(console.run, M.dispatch)
    log("info", "console mode: each line you type is a message to the bot")
    return nil
  end
  log("error", "the Discord transport is not available in this build; use --console")
  return 1
end

return M
