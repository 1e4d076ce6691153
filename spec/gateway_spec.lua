-- The gateway's Lua side: intents and shards from the configuration, and core.gateway's
-- contract (misuse raises; a gateway that cannot connect keeps trying until stopped).
local core = require "core"
local gateway = require "coordinator.gateway"

describe("coordinator.gateway", function()
  it("turns intent names into Discord's bitfield", function()
    assert.equal(37377, gateway.intents { "GUILDS", "GUILD_MESSAGES", "DIRECT_MESSAGES", "MESSAGE_CONTENT" })
    assert.equal(0, gateway.intents {})
    local bits, err = gateway.intents { "GUILDS", "MESAGE_CONTENT" }
    assert.is_nil(bits)
    assert.equal("unknown intent: MESAGE_CONTENT", err)
  end)

  it("finds a guild's shard with (id >> 22) % count, DMs on shard 0", function()
    -- 1200000000000000002 >> 22 = 286102294921
    assert.equal(286102294921 % 4, gateway.shard_for("1200000000000000002", 4))
    assert.equal(0, gateway.shard_for(nil, 4))
    assert.equal(0, gateway.shard_for("1200000000000000002", 1))
  end)

  it("builds core.gateway.start options from the discord section", function()
    local on_event = function() end
    local o = assert(gateway.options({ token = "t", intents = { "GUILDS" }, compress = true,
                                       shard_id = 1, shard_count = 2 }, "wss://g.example", { on_event = on_event }))
    assert.same({ 1, 2 }, o.shard)
    assert.equal("wss://g.example", o.url)
    assert.equal(1, o.intents)
    assert.equal(on_event, o.on_event)
    o = assert(gateway.options({ token = "t", intents = {}, gateway_url = "wss://mine" }, "wss://asked", {}))
    assert.equal("wss://mine", o.url)
    assert.is_nil(o.shard)
    assert.is_nil(gateway.options({ token = "t", intents = {} }, nil, {}))
  end)
end)

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
