-- bot.lua: the policy. Edit it and send SIGHUP (or restart) to change what the bot does.
--
-- Handlers run in their own task each: they may wait (sleep, run a process, call Discord)
-- without blocking anything else. Reading an undefined global is an error here.
local bot = require "coordinator.bot"

bot.on("message", function(msg)
  msg:reply("I heard: " .. msg.content)
end)
