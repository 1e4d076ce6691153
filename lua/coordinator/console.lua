-- The console transport: each line on standard input is a message in the console
-- channel, already addressed to the bot; replies print to standard output as the chunks
-- Discord would receive, each under a separator line.
local core = require "core"

local M = {}

M.CHANNEL_ID = "console"
M.SEPARATOR = "──────── %s ────────"

local function write_chunks(label, text)
  local out = {}
  out[#out + 1] = M.SEPARATOR:format(label)
  out[#out + 1] = text
  io.stdout:write(table.concat(out, "\n"), "\n")
  io.stdout:flush()
end

local function new_message(line, n)
  return {
    id = tostring(n),
    channel_id = M.CHANNEL_ID,
    content = line,
    author = { id = "console", username = os.getenv("USER") or "console" },
    transport = "console",
    reply = function(_, text) write_chunks("reply", text) return true end,
  }
end

-- Reads lines until end of input or cancellation, handing each to dispatch(event, msg).
function M.run(dispatch)
  local n = 0
  while true do
    local line, err = core.stdio.read_line()
    if not line then return err end
    n = n + 1
    if line:match("%S") then dispatch("message", new_message(line, n)) end
  end
end

return M
