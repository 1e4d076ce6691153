-- Child processes through the real C module, as the bot runs `claude`: streamed lines,
-- timeouts, cancellation, many at once, a lock per channel around each turn.
local core = require "core"

local PATH = { PATH = "/usr/local/bin:/usr/bin:/bin" }

local function sh(script, opts)
  opts = opts or {}
  opts.argv = { "/bin/sh", "-c", script }
  opts.env = opts.env or PATH
  return opts
end

-- Is pid still a running process? A zombie counts as gone: killed grandchildren are
-- reparented to init, which may take its time to reap them.
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  local state = stat:match("%) (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

local function wait_gone(pid)
  for _ = 1, 100 do
    if not alive(pid) then return true end
    core.sleep(0.01)
  end
  return false
end

describe("core.proc", function()
  it("runs a program and reports code, stdout and stderr", function()
    core.run(function()
      local r = assert(core.proc.run(sh("echo out; echo err >&2; exit 7")))
      assert.equal(7, r.code)
      assert.is_nil(r.signal)
      assert.equal("out\n", r.stdout)
      assert.equal("err\n", r.stderr)
      assert.is_false(r.timed_out)
      assert.is_false(r.truncated)
    end)
  end)

  it("passes argv verbatim, without a shell, and looks the program up in PATH", function()
    core.run(function()
      local r = core.proc.run { argv = { "printf", "%s|", "$HOME", "a b", ";", "*" } }
      assert.equal("$HOME|a b|;|*|", r.stdout)
    end)
  end)

  it("gives the child exactly the environment it is given", function()
    core.run(function()
      -- the test runner has HOME, PATH...; none of it leaks
      local r = core.proc.run { argv = { "/usr/bin/env" } }
      assert.equal("", r.stdout)
      r = core.proc.run { argv = { "/usr/bin/env" }, env = { FOO = "bar" } }
      assert.equal("FOO=bar\n", r.stdout)
      r = core.proc.run { argv = { "/usr/bin/env" }, env = { "DISCORD_TOKEN=passed" } }
      assert.equal("DISCORD_TOKEN=passed\n", r.stdout)
    end)
  end)

  it("reports spawn failures as results", function()
    core.run(function()
      local h, err = core.proc.spawn { argv = { "no-such-claude-binary" } }
      assert.is_nil(h)
      assert.matches("^spawn: ENOENT", err)
      assert.matches("no%-such%-claude%-binary", err)
      local r, err2 = core.proc.run { argv = { "true" }, cwd = "/no/such/project" }
      assert.is_nil(r)
      assert.matches("^spawn: ENOENT", err2)
      assert.matches("/no/such/project", err2)
      assert.has_error(function() core.proc.spawn { argv = {} } end)
      assert.has_error(function() core.proc.spawn { argv = { "true" }, timeout = "soon" } end)
    end)
  end)

  it("runs in the given directory", function()
    core.run(function()
      local r = core.proc.run(sh("pwd", { cwd = "/usr" }))
      assert.equal("/usr\n", r.stdout)
    end)
  end)

  it("streams lines to on_line, which may yield, in order", function()
    core.run(function()
      local lines = {}
      local r = core.proc.run(sh("echo one; echo two >&2; printf 'three\\n\\nlast'", {
        on_line = function(stream, line)
          core.sleep(0.001) -- e.g. editing a Discord message
          lines[#lines + 1] = stream .. ":" .. line
        end,
      }))
      assert.equal(0, r.code)
      table.sort(lines) -- stdout and stderr interleave freely; each stream keeps its order
      assert.same({ "stderr:two", "stdout:", "stdout:last", "stdout:one", "stdout:three" }, lines)
      assert.equal("one\nthree\n\nlast", r.stdout)
    end)
  end)

  it("delivers a line of several megabytes whole", function()
    core.run(function()
      local got = {}
      core.proc.run(sh("echo a; head -c 3000000 /dev/zero | tr '\\0' x; echo; echo b", {
        on_line = function(_, line) got[#got + 1] = #line end,
      }))
      assert.same({ 1, 3000000, 1 }, got)
    end)
  end)

  it("writes stdin while reading output", function()
    core.run(function()
      local input = string.rep("0123456789abcdef\n", 64 * 1024) -- 1 MiB
      local r = core.proc.run { argv = { "cat" }, stdin = input }
      assert.equal(#input, #r.stdout)
      assert.is_true(r.stdout == input)
      -- a pipe kept open
      local h = core.proc.spawn { argv = { "cat" }, stdin = true }
      assert.is_true(h:write("hello "))
      assert.is_true(h:write("world"))
      h:close_stdin()
      assert.equal("hello world", h:wait().stdout)
    end)
  end)

  it("caps what it keeps with max_output and can stop the child", function()
    core.run(function()
      local r = core.proc.run(sh("head -c 100000 /dev/zero", { max_output = 1000 }))
      assert.equal(1000, #r.stdout)
      assert.is_true(r.truncated)
      assert.equal(0, r.code)
      r = core.proc.run { argv = { "yes" }, max_output = 65536, kill_on_max_output = true }
      assert.is_true(r.truncated)
      assert.equal(2, r.signal) -- SIGINT, the polite signal
    end)
  end)

  it("stops a child on timeout, politely first, and its grandchildren too", function()
    core.run(function()
      local started = core.now()
      -- ignores SIGINT and SIGTERM, like a stuck tool; its grandchild holds stdout
      local r = core.proc.run(sh("trap '' INT TERM; sleep 30 & echo $!; while :; do sleep 0.02; done",
                                 { timeout = 0.1, kill_grace = 0.1 }))
      assert.is_true(r.timed_out)
      assert.equal(9, r.signal)
      assert.is_true(core.now() - started < 3)
      assert.is_true(wait_gone(tonumber(r.stdout:match("%d+"))))
      -- a child that ends its turn on SIGINT (as claude does) exits cleanly
      r = core.proc.run(sh("trap 'echo aborted; exit 0' INT; while :; do sleep 0.02; done",
                           { timeout = 0.05 }))
      assert.is_true(r.timed_out)
      assert.equal(0, r.code)
      assert.equal("aborted\n", r.stdout)
    end)
  end)

  it("kills with a chosen signal", function()
    core.run(function()
      local h = core.proc.spawn { argv = { "sleep", "30" } }
      assert.is_true(h.pid > 0)
      assert.is_true(h:kill("TERM"))
      local r = h:wait()
      assert.equal(15, r.signal)
      assert.same({ nil, "exited" }, { h:kill() })
      assert.has_error(function() h:kill("NOPE") end)
      -- wait() again gives the same result
      assert.equal(r, h:wait())
    end)
  end)

  it("runs 50 children at once", function()
    local started = core.now()
    local results = {}
    core.run(function()
      for i = 1, 50 do
        core.spawn(function()
          local r = core.proc.run(sh("sleep 0.3; echo " .. i))
          results[i] = r.stdout
        end)
      end
    end)
    for i = 1, 50 do assert.equal(i .. "\n", results[i]) end
    -- one after the other they would take 15 s
    assert.is_true(core.now() - started < 8, "the children did not run concurrently")
  end)

  it("stops the child when the waiting task is cancelled from another task", function()
    core.run(function()
      local h = core.proc.spawn(sh("sleep 30 & wait", { kill_grace = 0.1 }))
      local result
      local waiter = core.spawn(function() result = { h:wait() } end)
      core.spawn(function()
        core.sleep(0.05) -- the child is running, the waiter waiting
        waiter:cancel()
      end)
      for _ = 1, 200 do
        if result then break end
        core.sleep(0.01)
      end
      assert.same({ nil, "cancelled" }, result)
      assert.is_true(wait_gone(h.pid))
    end)
  end)

  it("completes after a slow on_line consumer is cancelled", function()
    core.run(function()
      -- 20 MB of lines against a consumer stuck in its first callback: reading pauses
      -- at the queue limit; cancelling the consumer must let the child finish anyway
      local consumer
      local h = core.proc.spawn(sh("yes 0123456789012345678901234567890123456789 | head -c 20000000", {
        kill_grace = 0.1,
        on_line = function()
          assert(coroutine.running() == consumer, "a line was kept for after the consumer left")
          core.sleep(60)
        end,
      }))
      local waiter = core.spawn(function()
        consumer = coroutine.running()
        h:wait()
      end)
      core.sleep(0.2)
      waiter:cancel()
      while waiter:status() ~= "done" do core.sleep(0) end
      local r = h:wait() -- gets no line: they were dropped with the consumer
      assert.is_truthy(r)
      assert.is_true(#r.stdout > 8 * 1024 * 1024)
    end)
  end)

  it("stops the child and raises when on_line raises", function()
    core.run(function()
      local h = core.proc.spawn(sh("echo boom; sleep 30", {
        kill_grace = 0.1, -- SIGINT may reach sh before it starts sleep, and not stop it
        on_line = function() error("bad line", 0) end,
      }))
      local ok, err = pcall(h.wait, h)
      assert.is_false(ok)
      assert.equal("bad line", err)
      assert.is_true(wait_gone(h.pid))
    end)
  end)

  it("refreshes a typing indicator with a task and core.sleep during a turn", function()
    local ticks, took = 0, nil
    core.run(function()
      local done = false
      local ticker = core.spawn(function()
        while not done do
          ticks = ticks + 1 -- would be: POST /channels/{id}/typing
          core.sleep(0.03)
        end
      end)
      local t0 = core.now()
      core.proc.run(sh("sleep 0.2"))
      took = core.now() - t0
      done = true
      ticker:cancel()
    end)
    -- one tick at the start, then one per 30 ms while the child ran
    assert.is_true(ticks >= 4 and ticks <= took / 0.03 + 2, ticks .. " ticks in " .. took .. " s")
  end)

  it("releases a channel's lock when the turn times out", function()
    local order = {}
    core.run(function()
      local function turn(id, script)
        local ok, err = core.lock.with("chan-1", function()
          local r = core.proc.run(sh(script, { timeout = 0.1, kill_grace = 0.1 }))
          order[#order + 1] = id .. (r.timed_out and " timed out" or " done")
        end)
        assert(ok, err)
      end
      core.spawn(turn, "first", "sleep 30")
      core.spawn(turn, "second", "true")
    end)
    assert.same({ "first timed out", "second done" }, order)
    assert.is_false(core.lock.state("chan-1").held)
  end)

  it("leaves no zombie after many spawns", function()
    core.run(function()
      for _ = 1, 200 do
        assert.equal(0, core.proc.run { argv = { "/bin/true" } }.code)
      end
      -- our children that are zombies: state Z in /proc/*/stat with our pid as parent
      local me = io.open("/proc/self/stat"):read("a"):match("^(%d+)")
      local r = core.proc.run(sh("grep -l '^[0-9]* (.*) Z " .. me .. " ' /proc/[0-9]*/stat | wc -l"))
      assert.equal("0", r.stdout:match("%d+"))
    end)
  end)
end)

describe("shutdown", function()
  -- A separate Lua state (lua5.4 running a script) that ends with tasks still waiting on
  -- locks and children: closing it must kill and reap the children and free everything
  -- (the sanitizer build runs this too).
  local script = [[
    local core = require "core"
    local h = core.proc.spawn { argv = { "/bin/sh", "-c", "trap '' INT TERM; sleep 60 & wait" } }
    io.stdout:write(h.pid, "\n")
    io.stdout:flush()
    core.spawn(function() local g = core.lock.acquire("x"); core.sleep(100); g:release() end)
    core.spawn(function() h:wait() end)
    core.run(function() core.sleep(0.01) end)
    core.spawn(function() core.lock.acquire("x", { timeout = 50 }) end)
    core.spawn(function() core.lock.acquire("x") end)
    core.spawn(function() core.proc.run { argv = { "sleep", "60" }, on_line = print } end)
    core.run(function() core.sleep(0.01) end)
    os.exit(0, true) -- close the state
  ]]

  it("kills and reaps every child and frees waiting locks when the state closes", function()
    core.run(function()
      local env = {}
      for _, name in ipairs { "LUA_PATH", "LUA_CPATH", "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PATH" } do
        env[name] = os.getenv(name)
      end
      local started = core.now()
      local r = assert(core.proc.run { argv = { "lua5.4", "-e", script }, env = env, timeout = 20 })
      assert.equal(0, r.code, r.stderr)
      assert.is_true(core.now() - started < 10)
      local pid = tonumber(r.stdout:match("^(%d+)"))
      assert.is_truthy(pid)
      assert.is_true(wait_gone(pid))
    end)
  end)
end)
