-- coordinator.discord: the payloads it hands to core.discord.request, and the JSON they
-- become (the encoder is the real one from build/core.so).
local core = require "core"
local discord = require "coordinator.discord"

describe("coordinator.discord", function()
  local calls, answer
  local real_request = core.discord.request

  before_each(function()
    calls = {}
    answer = { status = 200, ok = true, json = { id = "99" } }
    core.discord.request = function(req)
      calls[#calls + 1] = req
      return answer
    end
  end)

  after_each(function() core.discord.request = real_request end)

  it("sends allowed_mentions with parse as an empty JSON array", function()
    local msg = assert(discord.send("123", "hello @everyone"))
    assert.equal("99", msg.id)
    local req = calls[1]
    assert.equal("POST", req.method)
    assert.equal("/channels/123/messages", req.path)
    local json = core.discord.encode(req.json)
    assert.truthy(json:find('"parse":[]', 1, true), json)
    assert.falsy(json:find('"parse":{}', 1, true))
  end)

  it("replies without failing when the original is gone, and without a ping", function()
    discord.reply("1", "2", { content = "hi", components = {
      { type = 1, components = { { type = 2, style = 1, label = "Reset", custom_id = "reset" } } } } })
    local p = calls[1].json
    assert.same({ message_id = "2", fail_if_not_exists = false }, p.message_reference)
    assert.is_nil(p.allowed_mentions.replied_user)
    local json = core.discord.encode(p)
    assert.truthy(json:find('"components":[{', 1, true), json)
  end)

  it("keeps explicit allowed mentions, fixing empty lists to arrays", function()
    discord.send("1", { content = "x", allowed_mentions = { parse = {}, users = { "5" } } })
    local json = core.discord.encode(calls[1].json.allowed_mentions)
    assert.truthy(json:find('"parse":[]', 1, true), json)
    assert.truthy(json:find('"users":["5"]', 1, true), json)
  end)

  it("passes files and the audit-log reason through", function()
    discord.send("1", { content = "log", files = { { name = "out.txt", data = "abc" } }, reason = "why" })
    assert.equal("out.txt", calls[1].files[1].name)
    assert.equal("why", calls[1].reason)
  end)

  it("encodes reaction emoji in the path", function()
    assert.is_true(select(1, (function()
      answer = { status = 204, ok = true }
      return discord.react("1", "2", "👍")
    end)()))
    assert.equal("/channels/1/messages/2/reactions/%F0%9F%91%8D/@me", calls[1].path)
    assert.equal("PUT", calls[1].method)
  end)

  it("answers interactions, follows up and edits the original", function()
    discord.interaction_callback({ id = "7", token = "tok" }, "DEFERRED_MESSAGE")
    assert.equal("/interactions/7/tok/callback", calls[1].path)
    assert.same({ type = 5 }, calls[1].json)
    discord.interaction_callback({ id = "7", token = "tok" }, 4, { content = "hi", flags = discord.EPHEMERAL })
    assert.equal(64, calls[2].json.data.flags)
    discord.follow_up("8", "tok", "later")
    assert.equal("POST", calls[3].method)
    assert.equal("/webhooks/8/tok?wait=true", calls[3].path)
    discord.edit_original("8", "tok", { content = "edited" })
    assert.equal("PATCH", calls[4].method)
    assert.equal("/webhooks/8/tok/messages/@original", calls[4].path)
  end)

  it("overwrites commands globally or per guild, an empty list as []", function()
    discord.bulk_overwrite_commands("8", {})
    assert.equal("PUT", calls[1].method)
    assert.equal("/applications/8/commands", calls[1].path)
    assert.equal("[]", core.discord.encode(calls[1].json))
    discord.bulk_overwrite_commands("8", { { name = "ask", type = 1, description = "Ask" } }, "9")
    assert.equal("/applications/8/guilds/9/commands", calls[2].path)
  end)

  it("turns an HTTP error into nil and the readable message", function()
    answer = { status = 400, ok = false,
               error = "400 Invalid Form Body (50035): content: Must be 2000 or fewer in length." }
    local v, err, res = discord.send("1", string.rep("x", 2001))
    assert.is_nil(v)
    assert.equal("discord 400 Invalid Form Body (50035): content: Must be 2000 or fewer in length.", err)
    assert.equal(400, res.status)
  end)

  it("tells a 401 apart", function()
    core.discord.request = function() return nil, "unauthorized: 401 401: Unauthorized" end
    local v, err = discord.me()
    assert.is_nil(v)
    assert.is_true(discord.is_unauthorized(err))
  end)
end)

describe("core.discord.encode", function()
  it("writes arrays, objects, null and escapes", function()
    assert.equal('[]', core.discord.encode(core.discord.array()))
    assert.equal('{}', core.discord.encode({}))
    assert.equal('[1,2.5,"a"]', core.discord.encode({ 1, 2.5, "a" }))
    assert.equal('{"a":null}', core.discord.encode({ a = core.discord.null }))
    assert.equal('"q\\"\\n\\u0001"', core.discord.encode('q"\n\1'))
    assert.equal('"1234567890123456789"', core.discord.encode("1234567890123456789"))
  end)

  it("refuses what JSON cannot say", function()
    assert.has_error(function() core.discord.encode({ 1, 2, x = 3 }) end)
    assert.has_error(function() core.discord.encode({ [1] = 1, [3] = 3 }) end)
    assert.has_error(function() core.discord.encode(0 / 0) end)
    assert.has_error(function() core.discord.encode(print) end)
  end)
end)
