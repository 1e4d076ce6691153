-- The API that bot.lua programs against:
--
--   local bot = require "coordinator.bot"
--   bot.on("message", function(msg) msg:reply("hello") end)
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

local active -- the registry in use, for bot.config()

function M.config()
  return (loading or active).config
end

-- Runs the bot file in a strict environment and returns its registry, or nil and the
-- error.
function M.load(cfg)
  local registry = { handlers = {}, config = cfg, file = cfg.bot_file }
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

return M
