-- Benchmark client: core.gateway ingesting a stream of MESSAGE_CREATE events. Each event
-- is decoded once (lua-cjson) and handed to its own task, whose handler does what a bot
-- does first: check whether the message mentions it. Prints one line of results.
--   BENCH_URL BENCH_COUNT BENCH_COMPRESS=1
local core = require "core"

local count = math.tointeger(tonumber(os.getenv("BENCH_COUNT") or "100000"))
local bot_id = "1100000000000000001"
local seen, mentions, first, last = 0, 0, nil, nil

core.log.level("warn")
core.run(function()
  local gw
  gw = assert(core.gateway.start {
    url = os.getenv("BENCH_URL"),
    token = "bench-token",
    intents = 37377,
    compress = os.getenv("BENCH_COMPRESS") == "1",
    on_event = function(name, data)
      if name ~= "MESSAGE_CREATE" then return end
      if not first then first = core.now() end
      seen = seen + 1
      for _, m in ipairs(data.mentions) do
        if m.id == bot_id then mentions = mentions + 1 end
      end
      if seen == count then
        last = core.now()
        gw:stop()
      end
    end,
  })
  gw:wait()
end)

local elapsed = (last or core.now()) - (first or core.now())
io.stdout:write(("events=%d mentions=%d seconds=%.3f events_per_s=%.0f\n")
  :format(seen, mentions, elapsed, elapsed > 0 and (seen - 1) / elapsed or 0))
