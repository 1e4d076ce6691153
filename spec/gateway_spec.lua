-- core.gateway's contract: misuse raises; a gateway that cannot connect keeps trying
-- until it is stopped, and every waiter wakes then.
local core = require "core"

describe("core.gateway", function()
  local function opts(extra)
    local o = { url = "ws://127.0.0.1:1", token = "token", intents = 1, on_event = function() end,
                backoff_base = 0.05, backoff_max = 0.1 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end

  it("raises on misuse", function()
    assert.has_error(function() core.gateway.start {} end)
    assert.has_error(function() core.gateway.start(opts { token = false }) end)
    assert.has_error(function() core.gateway.start(opts { on_event = 5 }) end)
    assert.has_error(function() core.gateway.start(opts { shard = { 2, 2 } }) end)
    assert.has_error(function() core.gateway.start(opts { url = "https://not-a-websocket" }) end)
    assert.has_error(function() core.gateway.start(opts { presence = string.rep("x", 5000) }) end)
  end)

  it("keeps retrying an unreachable server, then stops when asked", function()
    local result = { core.run(function()
      local gw = assert(core.gateway.start(opts()))
      assert.is_nil(gw:session())
      local sent, err = gw:send { op = 3, d = {} }
      assert.is_nil(sent)
      assert.equal("not connected", err)
      core.sleep(0.4) -- several refused attempts, backing off
      local connects = gw:stats().connects
      gw:stop()
      assert.equal("stopped", gw:state())
      return connects, gw:wait()
    end) }
    assert.is_true(result[1] >= 3)
    assert.is_true(result[2])
  end)

  it("a stop from another task wakes every waiter", function()
    core.run(function()
      local gw = assert(core.gateway.start(opts()))
      core.spawn(function() core.sleep(0.05); assert.is_true(gw:stop()) end)
      assert.is_true(gw:wait())
    end)
  end)
end)
