-- Per-channel locks through the real C module: the concurrency a bot handling several
-- channels needs (one turn at a time per channel, channels in parallel).
local core = require "core"

-- Waits (yielding, one loop turn at a time) until cond() holds; fails after 2 s.
local function wait_until(cond)
  local deadline = core.now() + 2
  while not cond() do
    assert(core.now() < deadline, "condition not reached in time")
    core.sleep(0)
  end
end

-- Handles one "message": holds the channel's lock for `secs` and records start/end.
local function handle(log, channel, id, secs)
  local ok, err = core.lock.with(channel, function()
    log[#log + 1] = "start " .. id
    core.sleep(secs)
    log[#log + 1] = "end " .. id
  end)
  assert(ok, err)
end

describe("core.lock", function()
  after_each(function()
    assert.equal(0, core.lock.count()) -- every test leaves no key behind
  end)

  it("takes a free lock without yielding and reuses a channel's lock", function()
    core.run(function()
      for _ = 1, 3 do
        local other_ran = false
        core.spawn(function() other_ran = true end) -- would run if acquire yielded
        local guard <close> = core.lock.acquire("chan-1")
        assert.is_truthy(guard)
        assert.is_true(guard:held())
        assert.is_false(other_ran)
        assert.same({ held = true, holders = 1, waiting = 0 }, core.lock.state("chan-1"))
      end
      -- the same key, used again and again, is one lock
      assert.same({ held = false, holders = 0, waiting = 0 }, core.lock.state("chan-1"))
    end)
  end)

  it("serializes two messages in one channel", function()
    local log = {}
    local started = core.now()
    core.run(function()
      core.spawn(handle, log, "chan-1", "a", 0.1)
      core.spawn(handle, log, "chan-1", "b", 0.1)
    end)
    assert.same({ "start a", "end a", "start b", "end b" }, log)
    assert.is_true(core.now() - started >= 0.19) -- libuv timers have ms granularity
  end)

  it("runs two channels in parallel", function()
    local log = {}
    local started = core.now()
    core.run(function()
      core.spawn(handle, log, "chan-1", "a", 0.6)
      core.spawn(handle, log, "chan-2", "b", 0.4)
    end)
    local wall = core.now() - started
    assert.same({ "start a", "start b", "end b", "end a" }, log)
    -- the longer is 0.6 s, the sum 1.0 s
    assert.is_true(wall >= 0.59 and wall < 0.9, "wall time " .. wall .. " is not the longer")
  end)

  it("runs three messages of one channel in arrival order", function()
    local log = {}
    core.run(function()
      -- arrival order differs from any timing the tasks might have
      core.spawn(handle, log, "chan-1", "first", 0.03)
      core.spawn(handle, log, "chan-1", "second", 0.01)
      core.spawn(handle, log, "chan-1", "third", 0.02)
    end)
    assert.same({ "start first", "end first", "start second", "end second",
                  "start third", "end third" }, log)
  end)

  it("hands on to 100 waiters in FIFO order, each on a later loop turn", function()
    local order = {}
    core.run(function()
      local guard = core.lock.acquire("c")
      for i = 1, 100 do
        core.spawn(function()
          local held <close> = core.lock.acquire("c")
          assert(held)
          order[#order + 1] = i
        end)
      end
      wait_until(function() return core.lock.state("c").waiting == 100 end)
      assert.same({ held = true, holders = 1, waiting = 100 }, core.lock.state("c"))
      guard:release()
      -- release never runs the waiter inline
      assert.equal(0, #order)
    end)
    assert.equal(100, #order)
    for i = 1, 100 do assert.equal(i, order[i]) end
  end)

  it("tells a busy channel from a free one while held (queued, n ahead)", function()
    core.run(function()
      local guard = core.lock.acquire("chan-1")
      core.spawn(function() core.lock.with("chan-1", function() end) end)
      core.spawn(function() core.lock.with("chan-1", function() end) end)
      wait_until(function() return core.lock.state("chan-1").waiting == 2 end)
      local st = core.lock.state("chan-1")
      assert.is_true(st.held)
      assert.equal(2, st.waiting)
      assert.same({ held = false, holders = 0, waiting = 0 }, core.lock.state("chan-2"))
      -- a try-lock (timeout = 0) from another task does not wait
      local res
      core.spawn(function() res = { core.lock.acquire("chan-1", { timeout = 0 }) } end)
      wait_until(function() return res end)
      assert.same({ nil, "timeout" }, res)
      guard:release()
    end)
  end)

  it("gives up after the timeout and leaves the queue", function()
    core.run(function()
      local guard = core.lock.acquire("chan-1")
      local res, waited
      core.spawn(function()
        local started = core.now()
        res = { core.lock.acquire("chan-1", { timeout = 0.05 }) }
        waited = core.now() - started
      end)
      wait_until(function() return core.lock.state("chan-1").waiting == 1 end)
      wait_until(function() return res end)
      assert.same({ nil, "timeout" }, res)
      assert.is_true(waited >= 0.04 and waited < 0.5)
      assert.equal(0, core.lock.state("chan-1").waiting)
      guard:release()
      -- the lock is usable again
      local again <close> = core.lock.acquire("chan-1", { timeout = 0.05 })
      assert.is_truthy(again)
    end)
  end)

  it("releases the lock when the holder's work times out or fails", function()
    local got = {}
    core.run(function()
      core.spawn(function()
        core.lock.with("chan-1", function()
          core.sleep(0.01)
          error("the turn failed")
        end)
      end)
      core.spawn(function()
        local guard <close> = core.lock.acquire("chan-1")
        assert(guard:held())
        core.sleep(0.01)
        error("the handler raised with the guard in a <close> variable")
      end)
      core.spawn(function()
        local guard <close> = core.lock.acquire("chan-1", { timeout = 2 })
        got[#got + 1] = guard and "third" or "timed out"
      end)
    end)
    assert.same({ "third" }, got)
  end)

  it("with() returns fn's results and raises its error after releasing", function()
    core.run(function()
      assert.same({ true, 1, nil, 3 }, { core.lock.with("k", function() return 1, nil, 3 end) })
      local ok, err = pcall(core.lock.with, "k", function() error("inner", 0) end)
      assert.is_false(ok)
      assert.equal("inner", err)
      assert.is_false(core.lock.state("k").held)
      assert.has_error(function() core.lock.with("k", "not a function") end)
    end)
  end)

  it("lets a cancelled waiter leave the queue (cancel from another task)", function()
    local result = {}
    core.run(function()
      local guard = core.lock.acquire("chan-1")
      local waiter = core.spawn(function()
        result = { core.lock.acquire("chan-1") }
      end)
      core.spawn(function()
        wait_until(function() return core.lock.state("chan-1").waiting == 1 end)
        waiter:cancel()
      end)
      wait_until(function() return result[2] end)
      assert.same({ nil, "cancelled" }, result)
      assert.equal(0, core.lock.state("chan-1").waiting)
      guard:release()
    end)
    assert.same({ nil, "cancelled" }, result)
  end)

  it("raises when a task acquires a key it already holds", function()
    core.run(function()
      local guard <close> = core.lock.acquire("chan-1")
      assert(guard:held())
      local ok, err = pcall(core.lock.acquire, "chan-1")
      assert.is_false(ok)
      assert.matches("already holds", err)
      -- other keys are fine
      local other <close> = core.lock.acquire("chan-2")
      assert.is_truthy(other)
    end)
  end)

  it("is one lock table however often the module is opened", function()
    package.loaded.core = nil
    local again = require "core"
    package.loaded.core = core
    assert.are_not.equal(core, again)
    core.run(function()
      local guard = core.lock.acquire("chan-1")
      assert.same({ held = true, holders = 1, waiting = 0 }, again.lock.state("chan-1"))
      guard:release()
    end)
  end)

  it("raises outside a task", function()
    assert.has_error(function() core.lock.acquire("chan-1") end)
  end)

  it("frees a lock whose task ended without releasing it", function()
    local second
    core.run(function()
      core.spawn(function()
        _G.leaked_guard = core.lock.acquire("chan-1") -- kept alive, never released
      end)
      wait_until(function() return _G.leaked_guard end)
      core.spawn(function()
        local g <close> = core.lock.acquire("chan-1", { timeout = 1 })
        second = g ~= nil
      end)
    end)
    assert.is_true(second)
    _G.leaked_guard = nil
  end)

  it("hands a forgotten lock to a task already waiting when the holder ends", function()
    local waited
    core.run(function()
      core.spawn(function()
        _G.leaked_guard = core.lock.acquire("chan-2") -- kept alive, never released
        core.sleep(0.05)
      end)
      wait_until(function() return _G.leaked_guard end)
      core.spawn(function()
        local started = core.now()
        local g <close> = core.lock.acquire("chan-2", { timeout = 5 })
        waited = g and core.now() - started
      end)
    end)
    assert.is_true(waited ~= nil and waited < 1)
    _G.leaked_guard = nil
  end)

  it("lets up to `slots` tasks hold a key at once, the rest in arrival order", function()
    local log, peak, inside = {}, 0, 0
    core.run(function()
      for i = 1, 5 do
        core.spawn(function()
          local _slot <close> = assert(core.lock.acquire("runs", { slots = 2 }))
          inside = inside + 1
          peak = math.max(peak, inside)
          log[#log + 1] = i
          core.sleep(0.02)
          inside = inside - 1
        end)
      end
      wait_until(function() return core.lock.state("runs").holders == 2 end)
      assert.same({ held = true, holders = 2, waiting = 3 }, core.lock.state("runs"))
    end)
    assert.equal(2, peak)
    assert.same({ 1, 2, 3, 4, 5 }, log)
  end)

  it("keeps no memory for 10,000 channels used once", function()
    core.run(function()
      for i = 1, 10000 do
        local g <close> = core.lock.acquire("channel-" .. i)
        assert(g)
      end
      assert.equal(0, core.lock.count())
      local guards = {}
      for i = 1, 10000 do guards[i] = core.lock.acquire("channel-" .. i) end
      assert.equal(10000, core.lock.count())
      for i = 1, 10000 do guards[i]:release() end
    end)
  end)
end)
