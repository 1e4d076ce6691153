-- The API that bot.lua programs against:
--
--   local bot = require "coordinator.bot"
--   bot.on("message", function(msg) msg:reply("hello") end)
--
--   bot.command{name = "status", description = "...", options = {...}, run = function(ix) end}
--
-- bot.lua runs once per (re)load; its bot.on calls fill a fresh registry that replaces the
-- running one only when the whole file loaded without error. Each event is handled in its
-- own task. bot.config() is the configuration the registry was loaded with.
local config = require "coordinator.config"

local M = {}

local loading -- the registry being filled while bot.lua runs

function M.on(event, fn)
  if type(event) ~= "string" then error("bot.on: event name must be a string", 2) end
  if type(fn) ~= "function" then error("bot.on: handler must be a function", 2) end
  if not loading then error("bot.on must be called while bot.lua loads", 2) end
  local list = loading.handlers[event]
  if not list then
    list = {}
    loading.handlers[event] = list
  end
  list[#list + 1] = fn
end

-- Declares a slash command: its Discord definition (name, description, options) and the
-- handler run for each invocation. The definitions are registered with Discord on READY.
function M.command(def)
  if type(def) ~= "table" or type(def.name) ~= "string" or type(def.run) ~= "function" then
    error("bot.command: expected {name = string, description = string, run = function}", 2)
  end
  if not loading then error("bot.command must be called while bot.lua loads", 2) end
  if not def.name:match("^[%l%d_-]+$") or #def.name > 32 then
    error("bot.command: name must be 1-32 lowercase letters, digits, - or _", 2)
  end
  loading.commands[#loading.commands + 1] = def
  loading.command_by_name[def.name] = def
end

local active -- the registry in use, for bot.config()
local runtime = {} -- what the host provides: the session store, transport facts

-- The session store (coordinator.sessions), opened by the host under state_dir.
function M.store() return runtime.store end

-- Facts about the connection for /status: {transport =, started =, latency = s | nil}.
function M.info() return runtime.info end

function M.set_runtime(store, info)
  runtime.store, runtime.info = store, info
end

function M.config()
  return (loading or active).config
end

-- Runs the bot file in a strict environment and returns its registry, or nil and the
-- error.
function M.load(cfg)
  local registry = { handlers = {}, commands = {}, command_by_name = {}, config = cfg,
                     file = cfg.bot_file }
  local label = cfg.bot_file:match("([^/]+)$")
  local env = config.strict_env(_G, label)
  local chunk, err = loadfile(cfg.bot_file, "t", env)
  if not chunk then return nil, err end
  loading = registry
  local ok, run_err = pcall(chunk)
  loading = nil
  if not ok then return nil, tostring(run_err) end
  return registry
end

function M.activate(registry)
  active = registry
end

function M.handlers(registry, event)
  return registry.handlers[event] or {}
end

function M.commands(registry)
  return registry.commands
end

function M.find_command(registry, name)
  return registry.command_by_name[name]
end

return M
