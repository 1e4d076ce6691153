-- The console transport: each line on standard input is a message in the console
-- channel, already addressed to the bot; `/name args` runs a slash command. Replies print
-- to standard output as the chunks Discord would receive, each under a separator line.
-- A message with buttons asks y/N, and the next line answers it.
local core = require "core"

local M = {}

M.CHANNEL_ID = "console"
M.USER = { id = "console", username = os.getenv("USER") or "console" }

local function out(text)
  io.stdout:write(text, "\n")
  io.stdout:flush()
end

local function payload_of(p)
  if type(p) == "string" then return { content = p } end
  return p
end

local pending_question -- {yes = custom_id, no = custom_id} while buttons wait for y/N

local function buttons_of(components)
  local list = {}
  for _, row in ipairs(components or {}) do
    for _, b in ipairs(row.components or {}) do list[#list + 1] = b end
  end
  return list
end

-- Prints one message as Discord would show it.
local function show(label, p)
  p = payload_of(p)
  local lines = { ("──────── %s ────────"):format(label) }
  if p.content and p.content ~= "" then lines[#lines + 1] = p.content end
  for _, e in ipairs(p.embeds or {}) do
    if e.title then lines[#lines + 1] = "## " .. e.title end
    if e.description then lines[#lines + 1] = e.description end
    for _, f in ipairs(e.fields or {}) do lines[#lines + 1] = ("%s: %s"):format(f.name, f.value) end
  end
  for _, f in ipairs(p.files or {}) do
    lines[#lines + 1] = ("[attached %s, %d bytes]"):format(f.name, #f.data)
  end
  local buttons = buttons_of(p.components)
  local live = {}
  for _, b in ipairs(buttons) do
    if not b.disabled then live[#live + 1] = b end
  end
  if #live > 0 then
    local labels = {}
    for i, b in ipairs(live) do labels[i] = "[" .. b.label .. "]" end
    lines[#lines + 1] = table.concat(labels, " ") .. " — answer y/N:"
    pending_question = { yes = live[1].custom_id, no = live[#live].custom_id }
  end
  out(table.concat(lines, "\n"))
  return true
end

local function new_message(line, n)
  return {
    id = tostring(n),
    channel_id = M.CHANNEL_ID,
    content = line,
    author = M.USER,
    roles = {},
    mentions_bot = true,
    transport = "console",
    reply = function(_, p) return show("reply", p) end,
    send = function(_, p) return show("message", p) end,
    typing = function() return true end,
    react = function(_, emoji) out("(reacted " .. emoji .. ")") return true end,
  }
end

local function new_interaction(fields)
  local ix = {
    channel_id = M.CHANNEL_ID,
    user = M.USER,
    roles = {},
    options = {},
    transport = "console",
    reply = function(_, p) return show("/" .. (fields.name or "reply"), p) end,
    defer = function() return true end,
    update = function(_, p) return show("updated", p) end,
    followup = function(_, p) return show("follow-up", p) end,
    edit_original = function(_, p) return show("edited", p) end,
  }
  for k, v in pairs(fields) do ix[k] = v end
  return ix
end

-- Reads lines until end of input or cancellation. dispatch(event, object) hands work to
-- the bot; find_command(name) gives a command's definition (for its options).
function M.run(dispatch, find_command)
  local n = 0
  while true do
    local line, err = core.stdio.read_line()
    if not line then return err end
    n = n + 1
    if pending_question then
      local q = pending_question
      pending_question = nil
      local yes = line:match("^%s*[yY]")
      dispatch("component", new_interaction { custom_id = yes and q.yes or q.no })
    elseif line:match("^/") then
      local name, rest = line:match("^/(%S+)%s*(.-)%s*$")
      local def = find_command(name)
      if not def then
        show("error", ("Unknown command /%s."):format(name))
      else
        local ix = new_interaction { name = name }
        local options = type(def.options) == "function" and def.options() or def.options or {}
        if rest ~= "" and options[1] then ix.options[options[1].name] = rest end
        dispatch("command", ix)
      end
    elseif line:match("%S") then
      dispatch("message", new_message(line, n))
    end
  end
end

return M
