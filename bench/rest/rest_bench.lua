-- N requests through core.discord.request (GET /channels/{id}) from `tasks` tasks;
-- prints "requests N wall_s". Configuration from the environment (see bench/rest/run).
local core = require "core"

local n = tonumber(arg[1]) or 2000
local tasks = tonumber(arg[2]) or 1
local channel = assert(os.getenv("BENCH_CHANNEL"))

core.log.level("warn")
core.discord.configure {
  token = os.getenv("DISCORD_TOKEN"), api_url = os.getenv("DISCORD_API_URL"),
  user_agent_url = "https://example.invalid/bench", global_per_second = 0,
}

local wall = core.run(function()
  local t0 = core.now()
  local left = n
  for _ = 1, tasks do
    core.spawn(function()
      while left > 0 do
        left = left - 1
        local res, err = core.discord.request { method = "GET", path = "/channels/" .. channel }
        if not res or res.status ~= 200 then error("request failed: " .. tostring(err or res.status)) end
      end
    end)
  end
  return core.now() - t0
end)
print(("requests %d %.6f"):format(n, wall))
