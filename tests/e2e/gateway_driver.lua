-- A small bot for the gateway end-to-end tests: connects core.gateway with settings from
-- the environment and prints one line per event on stdout, so a test can assert what
-- arrived (each dispatch exactly once) and how the process ended.
--   GW_URL GW_TOKEN GW_INTENTS GW_COMPRESS=1 GW_CA_FILE GW_BACKOFF_MAX GW_HELLO_TIMEOUT
--   GW_READY_TIMEOUT GW_STOP_AFTER (stop cleanly after this many MESSAGE_CREATE)
--   GW_SEND_BURST (after READY, queue this many presence updates at once)
-- Lines: "EVENT <name> <seq> <id or ->", "FATAL <code> <message>", "STOPPED".
local core = require "core"

local function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

local function say(...)
  io.stdout:write(table.concat({ ... }, " "), "\n")
  io.stdout:flush()
end

local stop_after = tonumber(env("GW_STOP_AFTER", "0"))
local burst = tonumber(env("GW_SEND_BURST", "0"))
local exit_code = 0

core.run(function()
  local gw, seen = nil, 0
  local err
  gw, err = core.gateway.start {
    url = env("GW_URL"),
    token = env("GW_TOKEN"),
    intents = math.tointeger(tonumber(env("GW_INTENTS", "37377"))),
    compress = env("GW_COMPRESS", "0") == "1",
    ca_file = env("GW_CA_FILE"),
    backoff_max = tonumber(env("GW_BACKOFF_MAX", "60")),
    hello_timeout = tonumber(env("GW_HELLO_TIMEOUT", "60")),
    ready_timeout = tonumber(env("GW_READY_TIMEOUT", "15")),
    on_event = function(name, data, seq)
      local id = type(data) == "table" and data.id or nil
      if name == "READY" then
        id = data.session_id
        for i = 1, burst do
          local ok, serr = gw:send { op = 3, d = { since = i, status = "online", afk = false } }
          if not ok then say("SEND-FAILED", serr) end
        end
      end
      if name == "GUILD_CREATE" then id = data.id .. ":" .. tostring(#(data.members or {})) end
      say("EVENT", name, tostring(seq), type(id) == "string" and id or "-")
      if name == "MESSAGE_CREATE" then
        seen = seen + 1
        if stop_after > 0 and seen >= stop_after then gw:stop() end
      end
    end,
    on_fatal = function(code, message)
      say("FATAL", tostring(code), message)
    end,
  }
  if not gw then
    say("START-FAILED", err)
    exit_code = 1
    return
  end
  local ok, why = gw:wait()
  if not ok then exit_code = 1 end
  say("STOPPED", ok and "ok" or why)
end)

os.exit(exit_code)
