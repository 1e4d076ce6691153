-- core.discord.request against a local server answering like Discord: headers it adds,
-- nonces, readable nested errors, 429 and 5xx retries, the 401 latch. (The full rate-limit
-- behaviour is tested end to end against the fake Discord.)
local core = require "core"

local function here()
  return debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
end

describe("core.discord.request", function()
  local server, base

  local function configure(extra)
    local cfg = { token = "spec-token-123", api_url = base .. "/api",
                  user_agent_url = "https://example.invalid/spec", version = "9.9",
                  retry_base = 0.02, retry_max = 0.05 }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    core.discord.configure(cfg)
  end

  setup(function()
    server = assert(io.popen("env -u LD_PRELOAD /usr/bin/python3 " .. here()
      .. "/fixtures/http_server.py", "r"))
    base = "http://127.0.0.1:" .. assert(server:read("l"), "the test server did not start")
    configure()
  end)

  teardown(function()
    core.run(function() core.http.request { url = base .. "/quit", timeout = 5 } end)
    server:close()
  end)

  it("must be configured and run in a task", function()
    assert.has_error(function() core.discord.request { path = "/channels/1/messages" } end)
  end)

  it("adds authorization, user agent, reason and a nonce on creates", function()
    local res = core.run(function()
      return assert(core.discord.request {
        method = "POST", path = "/channels/1/messages", reason = "tidy: été",
        json = { content = "hi", allowed_mentions = { parse = core.discord.array() } },
      })
    end)
    assert.equal(200, res.status)
    assert.is_true(res.ok)
    local echo = res.json
    assert.equal("Bot spec-token-123", echo.auth)
    assert.equal("DiscordBot (https://example.invalid/spec, 9.9)", echo.ua)
    assert.equal("tidy%3A%20%C3%A9t%C3%A9", echo.reason)
    assert.equal("application/json", echo.ctype)
    assert.equal("hi", echo.body.content)
    assert.is_true(echo.body.enforce_nonce)
    assert.equal(res.nonce, echo.body.nonce)
    assert.is_true(#res.nonce <= 25)
    assert.equal(0, #echo.body.allowed_mentions.parse)
    assert.equal("POST /channels/:id/messages", res.route)
  end)

  it("keeps a nonce the caller gave", function()
    local res = core.run(function()
      return core.discord.request { method = "POST", path = "/channels/1/messages",
                                    json = { content = "x", nonce = "mine" } }
    end)
    assert.equal("mine", res.json.body.nonce)
    assert.is_nil(res.json.body.enforce_nonce)
  end)

  it("flattens Discord's nested errors", function()
    local res = core.run(function()
      return core.discord.request { method = "POST", path = "/channels/2/messages",
                                    json = { content = ("x"):rep(2001) } }
    end)
    assert.equal(400, res.status)
    assert.is_false(res.ok)
    assert.same({ "content: Must be 2000 or fewer in length.",
                  "embeds.0.title: Must be 256 or fewer in length." }, res.errors)
    assert.equal("400 Invalid Form Body (50035): content: Must be 2000 or fewer in length.; "
      .. "embeds.0.title: Must be 256 or fewer in length.", res.error)
  end)

  it("waits retry_after seconds on a 429, outside the retry budget", function()
    configure { max_retries = 0 }
    local res, waited = core.run(function()
      local t0 = core.now()
      local r = core.discord.request { path = "/limited/1" }
      return r, core.now() - t0
    end)
    configure()
    assert.equal(200, res.status)
    assert.equal(2, res.attempts)
    assert.is_true(waited >= 0.24 and waited < 0.9, waited) -- 0.25 s, not the header's 1 s
  end)

  it("retries 5xx with backoff a bounded number of times", function()
    local ok, bad = core.run(function()
      local a = core.discord.request { path = "/flaky/a" }
      configure { max_retries = 1 }
      local b = core.discord.request { path = "/flaky/b" }
      configure()
      return a, b
    end)
    assert.equal(200, ok.status)
    assert.equal(3, ok.attempts)
    assert.equal(502, bad.status)
    assert.equal(2, bad.attempts)
  end)

  it("reports a 401 distinctly and refuses to send more until reconfigured", function()
    local a, b = core.run(function()
      local r1 = { core.discord.request { path = "/unauth/1" } }
      local r2 = { core.discord.request { path = "/channels/1/messages", method = "POST",
                                          json = { content = "after" } } }
      return r1, r2
    end)
    assert.is_nil(a[1])
    assert.truthy(a[2]:match("^unauthorized: 401"), a[2])
    assert.equal(401, a[3].status)
    assert.is_nil(b[1])
    assert.truthy(b[2]:match("^unauthorized"), b[2])
    configure()
    local c = core.run(function() return core.discord.request { path = "/count" } end)
    assert.equal(1, c.json["/api/unauth/1"]) -- never retried
  end)

  it("returns nil, err for transport failures after the retries", function()
    core.discord.configure { token = "spec-token-123", api_url = "http://127.0.0.1:1/api",
                             max_retries = 1, retry_base = 0.01 }
    local r, err = core.run(function() return core.discord.request { path = "/users/@me" } end)
    configure()
    assert.is_nil(r)
    assert.truthy(err:match("^connect: "), err)
  end)

  it("is cancelled with its task", function()
    local r, err = core.run(function()
      local out = {}
      local h = core.spawn(function() out.r, out.err = core.discord.request { path = "/flaky/c" } end)
      core.sleep(0.005)
      h:cancel()
      core.sleep(0.01)
      return out.r, out.err
    end)
    assert.is_nil(r)
    assert.equal("cancelled", err)
  end)
end)
