-- Tasks on the loop, through the real C module.
local core = require "core"

describe("tasks", function()
  it("runs 100 sleeping tasks in wake-up order", function()
    local order = {}
    core.run(function()
      for i = 1, 100 do
        -- Distinct deadlines, spawned in an order unrelated to them.
        local delay = ((i * 37) % 100) / 1000
        core.spawn(function()
          core.sleep(delay)
          order[#order + 1] = delay
        end)
      end
    end)
    assert.equal(100, #order)
    for i = 2, #order do assert.is_true(order[i - 1] <= order[i]) end
  end)

  it("returns the task's results and raises its error", function()
    assert.same({ 3, "x" }, { core.run(function(a, b) core.sleep(0) return a + b, "x" end, 1, 2) })
    local ok, err = pcall(core.run, function() core.sleep(0) error("boom") end)
    assert.is_false(ok)
    assert.matches("boom", err)
  end)

  it("keeps running the others when one task fails", function()
    local finished = 0
    core.run(function()
      for i = 1, 10 do
        core.spawn(function()
          core.sleep(0.001 * i)
          if i == 3 then error("task three fails") end
          finished = finished + 1
        end)
      end
    end)
    assert.equal(9, finished)
  end)

  it("stops a handler stuck without yielding (CPU budget)", function()
    core.set_cpu_budget(0.2)
    local after = false
    local started = core.now()
    core.run(function()
      core.spawn(function() while true do end end)
      core.spawn(function() core.sleep(0.05) after = true end)
    end)
    core.set_cpu_budget(2)
    assert.is_true(after)
    assert.is_true(core.now() - started < 1.5)
  end)

  it("wakes a cancelled waiter with nil, 'cancelled' and runs <close> on failure", function()
    local r1, r2
    core.run(function()
      local t = core.spawn(function() r1, r2 = core.sleep(60) end)
      core.sleep(0.01)
      t:cancel()
    end)
    assert.is_nil(r1)
    assert.equal("cancelled", r2)
  end)

  it("refuses to wait outside a task", function()
    assert.has_error(function() core.sleep(0.1) end,
      "this operation waits, so it must run inside a task (core.spawn or core.run)")
  end)

  it("lets a bare coroutine.yield() give way to the other tasks", function()
    local seen = {}
    core.run(function()
      core.spawn(function() seen[#seen + 1] = "other" end)
      coroutine.yield()
      seen[#seen + 1] = "self"
    end)
    assert.same({ "other", "self" }, seen)
  end)

  it("gives a monotonic clock in fractional seconds", function()
    local a = core.now()
    core.run(function() core.sleep(0.02) end)
    local b = core.now()
    assert.is_true(b - a >= 0.015 and b - a < 1)
  end)
end)
