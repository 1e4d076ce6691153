-- Benchmarks of core.lock and core.proc through the real module. Prints one line per
-- figure: "name median unit (runs: ...)". Usage: lua5.4 lock_proc.lua [spawns]
local core = require "core"

local RUNS = 5
local SPAWNS = tonumber(arg[1]) or 300

local function median(xs)
  local s = { table.unpack(xs) }
  table.sort(s)
  return s[(#s + 1) // 2]
end

local function report(name, xs, unit)
  local parts = {}
  for i, x in ipairs(xs) do parts[i] = string.format("%.1f", x) end
  print(string.format("%-34s %12.1f %s   (runs: %s)", name, median(xs), unit, table.concat(parts, " ")))
end

local function repeat_runs(fn)
  local xs = {}
  for i = 1, RUNS do xs[i] = fn() end
  return xs
end

-- One task takes and releases a free key: the fast path, no yield.
local function uncontended()
  local n = 200000
  local ns
  core.run(function()
    local acquire = core.lock.acquire
    local t0 = core.now()
    for _ = 1, n do
      local g = acquire("chan")
      g:release()
    end
    ns = (core.now() - t0) * 1e9 / n
  end)
  collectgarbage()
  return ns
end

-- `tasks` tasks share one key and hold it across a yield, so every acquire queues and
-- every release hands the key to the next task on the next loop turn.
local function contended(tasks)
  return function()
    local per_task = 20000 // tasks
    local t0 = core.now()
    core.run(function()
      for _ = 1, tasks do
        core.spawn(function()
          for _ = 1, per_task do
            local g = core.lock.acquire("chan")
            coroutine.yield() -- give way while holding: the others queue
            g:release()
          end
        end)
      end
    end)
    collectgarbage()
    return (core.now() - t0) * 1e9 / (per_task * tasks)
  end
end

-- /bin/true through core.proc.run: spawn, read both pipes to EOF, reap.
local function spawns()
  local us
  core.run(function()
    local t0 = core.now()
    for _ = 1, SPAWNS do
      local r = core.proc.run { argv = { "/bin/true" } }
      assert(r and r.code == 0)
    end
    us = (core.now() - t0) * 1e6 / SPAWNS
  end)
  return us
end

report("lock uncontended acquire+release", repeat_runs(uncontended), "ns/pair")
report("lock contended, 2 tasks", repeat_runs(contended(2)), "ns/pair")
report("lock contended, 10 tasks", repeat_runs(contended(10)), "ns/pair")
report("core.proc.run /bin/true", repeat_runs(spawns), "us/spawn")
