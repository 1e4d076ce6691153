-- core.http.request against a local HTTP/1.1 server: results, keep-alive reuse,
-- transport errors, timeouts and cancellation.
local core = require "core"

local function here()
  return debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
end

describe("core.http.request", function()
  local server, base

  setup(function()
    -- the sanitizer build preloads its runtime: not for python
    server = assert(io.popen("env -u LD_PRELOAD /usr/bin/python3 " .. here()
      .. "/fixtures/http_server.py", "r"))
    local port = assert(server:read("l"), "the test server did not start")
    base = "http://127.0.0.1:" .. port
  end)

  teardown(function()
    core.run(function() core.http.request { url = base .. "/quit", timeout = 5 } end)
    server:close()
  end)

  it("returns status, headers and body, and reuses the connection", function()
    local results = core.run(function()
      local out = {}
      for i = 1, 5 do out[i] = assert(core.http.request { url = base .. "/ok" }) end
      out.peers = assert(core.http.request { url = base .. "/peers" })
      return out
    end)
    assert.equal(200, results[1].status)
    assert.equal("hello", results[5].body)
    assert.equal("a", results[1].headers["x-test"])
    assert.equal("1, 2", results[1].headers["x-multi"])
    assert.equal("1", results.peers.body) -- six requests, one connection
  end)

  it("sends method, body and headers", function()
    local r = core.run(function()
      return assert(core.http.request {
        method = "PATCH", url = base .. "/echo", body = "{\"a\":1}",
        headers = { ["X-A"] = "yes", "Content-Type: application/json" },
      })
    end)
    assert.equal(201, r.status)
    assert.truthy(r.body:find('"method": "PATCH"', 1, true), r.body)
    assert.truthy(r.body:find('"body": "{\\"a\\":1}"', 1, true), r.body)
    assert.truthy(r.body:find('"x_a": "yes"', 1, true), r.body)
    assert.truthy(r.body:find('"ctype": "application/json"', 1, true), r.body)
  end)

  it("gives 4xx and 5xx as results", function()
    local a, b = core.run(function()
      return core.http.request { url = base .. "/status/503" }, core.http.request { url = base .. "/nope" }
    end)
    assert.equal(503, a.status)
    assert.equal(404, b.status)
  end)

  it("reports transport failures as nil, err", function()
    local r, err = core.run(function() return core.http.request { url = "http://127.0.0.1:1/" } end)
    assert.is_nil(r)
    assert.truthy(err:match("^connect: "), err)
    r, err = core.run(function() return core.http.request { url = base .. "/slow", timeout = 0.2 } end)
    assert.is_nil(r)
    assert.equal("timeout", err)
  end)

  it("is cancelled with its task", function()
    local r, err, waited = core.run(function()
      local out = {}
      local t0 = core.now()
      local h = core.spawn(function()
        out.r, out.err = core.http.request { url = base .. "/slow", timeout = 10 }
      end)
      core.sleep(0.05)
      h:cancel()
      core.sleep(0.05)
      return out.r, out.err, core.now() - t0
    end)
    assert.is_nil(r)
    assert.equal("cancelled", err)
    assert.is_true(waited < 1)
  end)

  it("must run inside a task", function()
    assert.has_error(function() core.http.request { url = base .. "/ok" } end)
    assert.has_error(function() core.run(function() core.http.request {} end) end)
  end)
end)
