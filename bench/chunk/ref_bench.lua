-- The Lua side of the chunk benchmark: splits FILE with the pure-Lua reference REPS times
-- at the default limit and prints "MBps_median chunks bytes", like bench_chunk run.
-- Usage: lua5.4 bench/chunk/ref_bench.lua FILE [REPS]
local here = arg[0]:match("^(.*)/bench/chunk/[^/]*$") or "."
package.path = here .. "/spec/?.lua;" .. package.path
local ref = require "chunk_reference"

local path, reps = arg[1], tonumber(arg[2] or "3")
local f = assert(io.open(path, "rb"))
local text = f:read("a")
f:close()
local times, count = {}, 0
for i = 1, reps do
  local t0 = os.clock()
  local chunks = ref.split(text, 2000)
  times[i] = os.clock() - t0
  count = #chunks
  chunks = nil -- luacheck: ignore
  collectgarbage()
end
table.sort(times)
print(string.format("%.1f %d %d", #text / 1e6 / times[reps // 2 + 1], count, #text))
