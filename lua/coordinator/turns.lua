-- Running Claude turns: one process per turn, the turns running now, and the global cap
-- on concurrent runs. This module's state outlives reloads of bot.lua, so a /stop typed
-- after a reload still finds a turn started by the previous code.
--
--   local outcome, run = turns.run{cfg =, key =, project =, session_id =, model =,
--                                  prompt =, user_id =, on_progress = function(p) end}
--     outcome: coordinator.claude's outcome (kinds there), plus kind = "no_project" when
--              the project directory is missing and kind = "config" for a bad claude.env
--     run:     {started =, finished =, stopped_by =} (nil when nothing was started)
--   turns.current(key) -> {started =, user_id =, stopped_by =} | nil
--   turns.stop(key, user_id) -> true | nil, "idle"
--   turns.queue(key) -> list of waiting entries (see enqueue)
--   local ticket <close> = turns.enqueue(key, entry)   the entry leaves the list on close
--   local slot <close> = turns.slot(cap)                waits for one of `cap` run slots
local core = require "core"
local claude = require "coordinator.claude"

local M = {}

local running = {} -- key -> run
local queues = {}  -- key -> list of entries waiting for the channel
local RUN_SLOTS = "coordinator.turns.run-slots"

function M.current(key) return running[key] end

function M.queue(key) return queues[key] or {} end


function M.enqueue(key, entry)
  local q = queues[key]
  if not q then
    q = {}
    queues[key] = q
  end
  q[#q + 1] = entry
  return setmetatable({}, { __close = function()
    for i, e in ipairs(q) do
      if e == entry then table.remove(q, i) break end
    end
    if #q == 0 and queues[key] == q then queues[key] = nil end
  end })
end

-- Waits, in arrival order, until fewer than `cap` turns run; the guard frees the slot.
function M.slot(cap)
  return assert(core.lock.acquire(RUN_SLOTS, { slots = cap }))
end

function M.stop(key, user_id)
  local run = running[key]
  if not run or not run.handle then return nil, "idle" end
  run.stopped_by = user_id
  run.handle:kill()
  return true
end

function M.run(o)
  local cfg = o.cfg
  local c = cfg.claude
  local argv = claude.argv {
    command = c.command, session_id = o.session_id, model = o.model,
    permission_mode = c.permission_mode, allowed_tools = c.allowed_tools,
    append_system_prompt = c.append_system_prompt, args = c.args, prompt = o.prompt,
  }
  local env, env_err = claude.env { set = c.env, secrets = { cfg.discord.token } }
  if not env then return { ok = false, kind = "config", message = env_err } end

  local parser = claude.parser()
  local run = { started = core.now(), user_id = o.user_id }
  local handle, spawn_err = core.proc.spawn {
    argv = argv, cwd = o.project, env = env,
    timeout = c.timeout, kill_grace = c.kill_grace,
    on_line = function(stream, line)
      if stream ~= "stdout" then return end
      local progress = parser:feed_line(line)
      if progress and o.on_progress then o.on_progress(progress) end
    end,
  }
  if not handle then
    if spawn_err:find("no such directory", 1, true) then
      return { ok = false, kind = "no_project", message = spawn_err }
    end
    return parser:finish { spawn_error = spawn_err, command = c.command }
  end
  run.handle = handle
  running[o.key] = run
  -- Also when the task is ended while it waits (shutdown).
  local _ <close> = setmetatable({}, { __close = function()
    if running[o.key] == run then running[o.key] = nil end
    run.handle = nil
  end })
  local result, wait_err = handle:wait()
  run.finished = core.now()
  if not result then
    return parser:finish { stopped = true, stderr = wait_err, command = c.command }, run
  end
  return parser:finish {
    code = result.code, signal = result.signal, stderr = result.stderr,
    timed_out = result.timed_out, timeout = c.timeout, stopped = run.stopped_by ~= nil,
    command = c.command,
  }, run
end

return M
