-- Drives core.discord.request for the end-to-end REST tests (and the benchmark).
--   lua5.4 rest_driver.lua '<json options>'
-- Configuration from the environment (DISCORD_API_URL, DISCORD_TOKEN, DISCORD_CA_FILE)
-- and the options; prints one JSON object per line: each result, then the stats.
-- Options: channels = {...}, per_channel = n, content = "prefix" | contents = {...},
--   configure = {...} (merged into core.discord.configure), timeout = s.
local core = require "core"
local cjson = require "cjson"
local discord = require "coordinator.discord"

local opts = cjson.decode(arg[1] or "{}")

local function out(t)
  io.stdout:write(core.discord.encode(t), "\n")
  io.stdout:flush()
end

local cfg = {
  token = os.getenv("DISCORD_TOKEN"),
  api_url = os.getenv("DISCORD_API_URL"),
  ca_file = os.getenv("DISCORD_CA_FILE"),
  user_agent_url = "https://example.invalid/coordinator",
}
for k, v in pairs(opts.configure or {}) do cfg[k] = v end
if cfg.ca_file == "" then cfg.ca_file = nil end
core.log.level(opts.log_level or "info")
core.discord.configure(cfg)

local function send_one(channel, i, content)
  local t0 = core.now()
  local msg, err, res = discord.send(channel, { content = content })
  out {
    channel = channel, i = i, ok = msg ~= nil, id = msg and msg.id or nil,
    content = content, err = err, status = res and res.status or nil,
    attempts = res and res.attempts or nil, errors = res and res.errors or nil,
    sent_at = t0, done_at = core.now(),
  }
end

core.run(function()
  local tasks = {}
  for _, channel in ipairs(opts.channels or {}) do
    tasks[#tasks + 1] = core.spawn(function()
      for i = 1, opts.per_channel or 1 do
        local content = opts.contents and opts.contents[i]
          or ("%s %s #%d"):format(opts.content or "message", channel, i)
        send_one(channel, i, content)
      end
    end)
  end
end)
local s = core.discord.stats()
s.kind = "stats"
out(s)
