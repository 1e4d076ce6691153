-- The Claude adapter: argv, environment, and every recorded CLI output through the parser.

local claude = require "coordinator.claude"
local lfs = require "lfs"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
if here:sub(1, 1) ~= "/" then here = lfs.currentdir() .. "/" .. here end
local FIXTURES = here .. "/../tests/fixtures/claude-cli-2.1.197"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Replays a recorded case: every stdout line through feed_line, then finish.
local function replay(name, info)
  local p = claude.parser()
  local progress = {}
  for line in read(FIXTURES .. "/" .. name .. ".stdout"):gmatch("[^\n]+") do
    local ev = p:feed_line(line)
    if ev then progress[#progress + 1] = ev end
  end
  info = info or {}
  if info.code == nil then info.code = tonumber(read(FIXTURES .. "/" .. name .. ".exit")) end
  info.stderr = info.stderr or read(FIXTURES .. "/" .. name .. ".stderr")
  return p:finish(info), progress, p
end

local function kinds(progress)
  local out = {}
  for _, ev in ipairs(progress) do out[#out + 1] = ev.kind end
  return out
end

-- What each recorded case must turn into. Every fixture must be listed here.
local EXPECT = {
  ["json-success"] = { ok = true, text = "ECHO[msgs=2,model=claude-opus-4-8]: warm",
                       session_id = "57e42005-0ed3-4c25-a5e9-2600ca2a2984", turns = 1,
                       model = "claude-opus-4-8[1m]" },
  ["json-model"] = { ok = true, text = "ECHO[msgs=2,model=some-model]: which model",
                     model = "some-model" },
  ["json-resume-after-error"] = { ok = true, text = "ECHO[msgs=4,model=claude-opus-4-8]: after error",
                                  session_id = "c8addf40-363d-4945-a6db-4eb45dded135" },
  ["json-with-verbose"] = { ok = true, text = "ECHO[msgs=2,model=claude-opus-4-8]: json verbose",
                            session_id = "92d84636-c5f1-49da-9cff-59942013df20" },
  ["json-tool-denied"] = { ok = true, turns = 2 },
  ["stream-success"] = { ok = true, text = "ECHO[msgs=2,model=claude-opus-4-8]: stream me",
                         session_id = "6f2b7788-9116-4c92-a020-8fd77ddde759" },
  ["stream-tool-turn"] = { ok = true, text = "TOOL_RESULT: hi-sj", turns = 2 },
  ["stream-partial-messages"] = { ok = true,
                                  text = "ECHO[msgs=2,model=claude-opus-4-8]: SLOW stream with partials here" },
  ["json-error-401"] = { ok = false, kind = "api_error",
                         message = "Invalid API key · Fix external API key",
                         session_id = "c5a91a0f-46aa-4bcc-9eec-c10a68fe72a7" },
  ["json-error-429"] = { ok = false, kind = "api_error",
                         message = "API Error: Request rejected (429) · fake rate limit" },
  ["json-error-500"] = { ok = false, kind = "api_error", message_prefix = "API Error: 500 fake internal" },
  ["json-error-connrefused"] = { ok = false, kind = "api_error",
                                 message = "API Error: Unable to connect to API (ConnectionRefused)" },
  ["json-error-not-logged-in"] = { ok = false, kind = "api_error",
                                   message = "Not logged in · Please run /login" },
  ["json-error-max-turns"] = { ok = false, kind = "max_turns",
                               message = "Reached maximum number of turns (1)" },
  ["stream-error-500"] = { ok = false, kind = "api_error",
                           message_prefix = "API Error: 500 fake internal",
                           session_id = "694f5fa4-9d6c-4902-bfcf-bf87766415b7" },
  ["stream-sigint"] = { ok = false, kind = "interrupted",
                        session_id = "1ebd4476-ae13-4eba-a24d-5c890ec4accb" },
  ["stream-sigterm"] = { ok = false, kind = "crashed" },
  ["json-resume-unknown-id"] = { ok = false, kind = "stale_session",
                                 message =
                                   "No conversation found with session ID: 11111111-2222-3333-4444-555555555555" },
  ["json-resume-other-cwd"] = { ok = false, kind = "stale_session",
                                message =
                                  "No conversation found with session ID: ff523815-5e7b-4910-9157-3542ab3a9601" },
  ["json-resume-not-uuid"] = { ok = false, kind = "cli_error",
                               message_prefix = "Error: --resume requires a valid" },
  ["json-session-id-in-use"] = { ok = false, kind = "cli_error",
                                 message =
                                   "Error: Session ID 644aadfd-374e-4b43-ac2f-558410a66e33 is already in use." },
  ["stream-without-verbose"] = { ok = false, kind = "cli_error",
                                 message =
                                   "Error: When using --print, --output-format=stream-json requires --verbose" },
  -- text output is not what the adapter asks for: it must say so, not crash
  ["text-success"] = { ok = false, kind = "bad_output",
                       message =
                         "unexpected output from claude: ECHO[msgs=2,model=claude-opus-4-8]: plain text please" },
  ["json-codeblock"] = { ok = false, kind = "bad_output",
                         message = "unexpected output from claude: # Fake answer with code" },
}

describe("claude parser on the recorded outputs", function()
  local names = {}
  for file in lfs.dir(FIXTURES) do
    local name = file:match("^(.*)%.exit$")
    if name then names[#names + 1] = name end
  end
  table.sort(names)

  it("finds the fixtures and has an expectation for each", function()
    assert.is_true(#names >= 24)
    for _, name in ipairs(names) do
      assert.is_table(EXPECT[name], "no expectation for fixture " .. name)
    end
  end)

  for _, name in ipairs(names) do
    it(name, function()
      local want = assert(EXPECT[name])
      local out = replay(name)
      assert.are.equal(want.ok, out.ok)
      if want.ok then
        if want.text then assert.are.equal(want.text, out.text) end
        assert.is_string(out.session_id)
        assert.is_number(out.cost)
        assert.is_true(out.cost > 0)
        assert.is_number(out.turns)
        assert.is_number(out.usage.input_tokens)
        assert.is_table(out.denials)
        assert.is_string(out.model)
      else
        assert.are.equal(want.kind, out.kind)
        assert.is_string(out.message)
        assert.is_true(#out.message > 0 and #out.message <= claude.MAX_MESSAGE)
        if want.message then assert.are.equal(want.message, out.message) end
        if want.message_prefix then
          assert.are.equal(want.message_prefix, out.message:sub(1, #want.message_prefix))
        end
      end
      for _, k in ipairs { "session_id", "turns", "model" } do
        if want[k] then assert.are.equal(want[k], out[k]) end
      end
    end)
  end

  it("reports the session id and tools as the stream progresses", function()
    local _, progress, p = replay("stream-tool-turn")
    assert.are.same({ "init", "text", "tool_use", "tool_result", "text", "result" }, kinds(progress))
    assert.are.equal("8d9030e0-43b3-4f74-b3c3-cfaf3da24476", progress[1].session_id)
    assert.are.equal("claude-opus-4-8[1m]", progress[1].model)
    assert.are.equal("Bash", progress[3].name)
    assert.are.equal("echo hi-sj", progress[3].summary)
    assert.are.same({ { name = "Bash", summary = "echo hi-sj" } }, p.tool_uses)
    assert.is_false(progress[4].is_error)
  end)

  it("lists denied tools", function()
    local out = replay("json-tool-denied")
    assert.are.equal(1, #out.denials)
    assert.are.equal("Bash", out.denials[1].tool)
    assert.are.equal("touch /srv/project/created.txt", out.denials[1].summary)
    assert.are.equal("toolu_ae568fd856594db0b1929580", out.denials[1].id)
  end)

  it("gives text deltas with partial messages and ignores status lines", function()
    local _, progress = replay("stream-partial-messages")
    local text = {}
    for _, ev in ipairs(progress) do
      if ev.kind == "delta" then text[#text + 1] = ev.text end
    end
    assert.are.equal("ECHO[msgs=2,model=claude-opus-4-8]: SLOW stream with partials here", table.concat(text))
    assert.are.equal("status", progress[2].kind)
  end)

  it("knows the session id of a failed API call so it can be resumed", function()
    local _, progress = replay("stream-error-500")
    assert.are.same({ "init", "text", "result" }, kinds(progress))
  end)

  it("maps a stop requested by the host to interrupted", function()
    assert.are.equal("interrupted", replay("stream-sigint", { stopped = true }).kind)
    assert.are.equal("interrupted", replay("stream-sigterm", { stopped = true, code = 143 }).kind)
    local out = replay("stream-sigterm", { signal = 15, code = nil })
    assert.are.equal("crashed", out.kind)
    assert.are.equal("claude was killed by signal 15", out.message)
  end)

  it("maps a timeout, even when the polite stop produced a result", function()
    local out = replay("stream-sigint", { timed_out = true, timeout = 900 })
    assert.are.equal("timeout", out.kind)
    assert.are.equal("timed out after 900 s", out.message)
    assert.are.equal("1ebd4476-ae13-4eba-a24d-5c890ec4accb", out.session_id)
  end)

  it("keeps a complete reply even if the stop came after it", function()
    local out = replay("stream-success", { timed_out = true })
    assert.is_true(out.ok)
  end)
end)

describe("claude parser on broken output", function()
  it("tolerates non-JSON lines and unknown events around a result", function()
    local p = claude.parser()
    assert.is_nil(p:feed_line("some warning printed by a wrapper"))
    assert.is_nil(p:feed_line('{"type":"brand_new_event","x":1}'))
    assert.is_nil(p:feed_line('{"no_type":true}'))
    assert.is_nil(p:feed_line(""))
    p:feed_line('{"type":"result","subtype":"success","is_error":false,"result":"hi",'
      .. '"session_id":"s1","total_cost_usd":0.5,"num_turns":1,"future_field":{"a":[1]}}\r')
    local out = p:finish { code = 0, stderr = "" }
    assert.is_true(out.ok)
    assert.are.equal("hi", out.text)
    assert.are.equal("s1", out.session_id)
    assert.are.equal(0.5, out.cost)
    assert.are.same({}, out.denials)
    assert.are.equal(2, p.bad_lines)
  end)

  it("reports garbage with the last lines of stderr", function()
    local p = claude.parser()
    p:feed_line("<html><body>502 Bad Gateway</body></html>")
    local stderr = ("line\n"):rep(20) .. "warning: odd\n\27[31merror: it broke\27[0m\n"
    local out = p:finish { code = 0, stderr = stderr }
    assert.are.equal("bad_output", out.kind)
    assert.are.equal("line\nline\nline\nline\nwarning: odd\nerror: it broke", out.message)
  end)

  it("reports garbage without stderr by its first line", function()
    local p = claude.parser()
    p:feed_line("not json " .. ("x"):rep(500))
    local out = p:finish { code = 0, stderr = "" }
    assert.are.equal("bad_output", out.kind)
    assert.is_true(#out.message < 260)
  end)

  it("reports a crash after the init line", function()
    local p = claude.parser()
    p:feed_line('{"type":"system","subtype":"init","session_id":"s2","model":"m"}')
    local out = p:finish { code = 1, stderr = "TypeError: boom\n    at x (y:1:2)\n" }
    assert.are.equal("crashed", out.kind)
    assert.are.equal("TypeError: boom\n    at x (y:1:2)", out.message)
    assert.are.equal("s2", out.session_id)
    out = claude.parser():finish { code = 3, stderr = "" }
    assert.are.equal("crashed", out.kind)
    assert.are.equal("claude exited with status 3 without a result", out.message)
  end)

  it("reports exit 0 without anything", function()
    local out = claude.parser():finish { code = 0, stderr = "" }
    assert.are.equal("bad_output", out.kind)
    assert.are.equal("claude exited without a result", out.message)
  end)

  it("reports a missing command", function()
    local out = claude.parser():finish { spawn_error = "spawn: ENOENT", command = "claude" }
    assert.are.equal("not_found", out.kind)
    assert.are.equal("could not run the Claude command (claude): spawn: ENOENT", out.message)
    assert.are.equal("spawn_failed", claude.parser():finish { spawn_error = "spawn: EMFILE" }.kind)
    assert.are.equal("not_found", claude.parser():finish { code = 127, stderr = "sh: claude: not found" }.kind)
  end)

  it("maps other result subtypes", function()
    local function result(json)
      local p = claude.parser()
      p:feed_line(json)
      return p:finish { code = 1, stderr = "" }
    end
    local out = result('{"type":"result","subtype":"error_max_budget_usd","is_error":true,"errors":["Budget hit"]}')
    assert.are.same({ "max_budget", "Budget hit" }, { out.kind, out.message })
    out = result('{"type":"result","subtype":"error_during_execution","is_error":true,'
      .. '"terminal_reason":"tool_failed","errors":["a","b"]}')
    assert.are.same({ "error", "a; b" }, { out.kind, out.message })
    out = result('{"type":"result","subtype":"something_new","is_error":true}')
    assert.are.same({ "error", "claude failed (something_new)" }, { out.kind, out.message })
  end)

  it("clips very long messages on a UTF-8 boundary", function()
    local p = claude.parser()
    p:feed_line('{"type":"result","subtype":"success","is_error":true,"result":"'
      .. ("é"):rep(2000) .. '"}')
    local out = p:finish { code = 1 }
    assert.is_true(#out.message <= claude.MAX_MESSAGE)
    assert.is_truthy(utf8.len(out.message))
  end)

  it("handles megabyte lines", function()
    local p = claude.parser()
    local big = ("a"):rep(3 * 1024 * 1024)
    p:feed_line('{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t",'
      .. '"content":"' .. big .. '"}]}}')
    p:feed_line('{"type":"result","subtype":"success","is_error":false,"result":"' .. big .. '"}')
    local out = p:finish { code = 0 }
    assert.is_true(out.ok)
    assert.are.equal(#big, #out.text)
  end)
end)

describe("claude.argv", function()
  it("builds the minimal command line", function()
    assert.are.same({ "claude", "-p", "--output-format", "stream-json", "--verbose", "--", "hello" },
      claude.argv { prompt = "hello" })
  end)

  it("adds session, model, permissions, system prompt, extra args and tools in order", function()
    local argv = claude.argv {
      command = "/opt/claude/bin/claude", session_id = "57e42005-0ed3-4c25-a5e9-2600ca2a2984",
      model = "opus", permission_mode = "acceptEdits", append_system_prompt = "Be brief.",
      args = { "--max-turns", "5" }, allowed_tools = { "Bash(git status)", "Edit" },
      prompt = "hi",
    }
    assert.are.same({ "/opt/claude/bin/claude", "-p", "--output-format", "stream-json", "--verbose",
      "--resume", "57e42005-0ed3-4c25-a5e9-2600ca2a2984", "--model", "opus",
      "--permission-mode", "acceptEdits", "--append-system-prompt", "Be brief.",
      "--max-turns", "5", "--allowedTools", "Bash(git status),Edit", "--", "hi" }, argv)
  end)

  it("leaves out empty and default settings", function()
    assert.are.same({ "claude", "-p", "--output-format", "stream-json", "--verbose", "--", "x" },
      claude.argv { prompt = "x", session_id = "", model = "", permission_mode = "default",
                    allowed_tools = {}, args = {} })
  end)

  it("keeps a prompt that looks like a flag as the prompt", function()
    local argv = claude.argv { prompt = "--dangerously-skip-permissions -rf /" }
    assert.are.equal("--", argv[#argv - 1])
    assert.are.equal("--dangerously-skip-permissions -rf /", argv[#argv])
    argv = claude.argv { prompt = "-p", allowed_tools = "Read" }
    assert.are.same({ "--allowedTools", "Read", "--", "-p" }, { table.unpack(argv, #argv - 3) })
  end)

  it("accepts a command given as a list", function()
    local argv = claude.argv { command = { "node", "cli.js" }, prompt = "x" }
    assert.are.same({ "node", "cli.js", "-p" }, { argv[1], argv[2], argv[3] })
  end)

  it("raises on misuse", function()
    assert.has_error(function() claude.argv {} end)
    assert.has_error(function() claude.argv { prompt = 1 } end)
    assert.has_error(function() claude.argv { prompt = "x", command = "" } end)
    assert.has_error(function() claude.argv { prompt = "x", model = 3 } end)
    assert.has_error(function() claude.argv { prompt = "x", args = { 1 } } end)
  end)
end)

describe("claude.env", function()
  local parent = {
    PATH = "/usr/bin:/bin", HOME = "/home/bot", LANG = "en_US.UTF-8", DISCORD_TOKEN = "tok.secret",
    ANTHROPIC_API_KEY = "sk-parent", SHELL = "/bin/bash", USER = "bot",
  }
  local function getenv(name) return parent[name] end

  it("contains only PATH, HOME and the locale by default", function()
    assert.are.same({ PATH = "/usr/bin:/bin", HOME = "/home/bot", LANG = "en_US.UTF-8" },
      claude.env { getenv = getenv })
  end)

  it("never passes the Discord token, even when it is in the parent", function()
    local env = assert(claude.env { getenv = getenv, set = { ANTHROPIC_API_KEY = "sk-1" } })
    assert.is_nil(env.DISCORD_TOKEN)
    assert.are.equal("sk-1", env.ANTHROPIC_API_KEY)
    for _, kv in ipairs(claude.env_list(env)) do
      assert.is_nil(kv:find("tok.secret", 1, true))
    end
  end)

  it("refuses to pass the token by name or by value", function()
    local env, err = claude.env { getenv = getenv, set = { DISCORD_TOKEN = "tok.secret" } }
    assert.is_nil(env)
    assert.are.equal("could not build claude's environment: DISCORD_TOKEN is never passed to claude", err)
    env, err = claude.env { getenv = getenv, set = { OTHER = "x tok.secret y" }, secrets = { "tok.secret" } }
    assert.is_nil(env)
    assert.are.equal("could not build claude's environment: OTHER contains a secret", err)
    env = claude.env { getenv = getenv, set = { BOT_TOKEN = "t" }, forbid = { "BOT_TOKEN" } }
    assert.is_nil(env)
  end)

  it("adds, overrides and removes what the config says", function()
    local env = assert(claude.env { getenv = getenv, home = "/srv/state/home",
      set = { CLAUDE_CODE_MAX_RETRIES = "0", LANG = "C.UTF-8", LC_ALL = "C.UTF-8", PATH = false } })
    assert.are.same({ HOME = "/srv/state/home", LANG = "C.UTF-8", LC_ALL = "C.UTF-8",
                      CLAUDE_CODE_MAX_RETRIES = "0" }, env)
    assert.are.same({ "CLAUDE_CODE_MAX_RETRIES=0", "HOME=/srv/state/home", "LANG=C.UTF-8", "LC_ALL=C.UTF-8" },
      claude.env_list(env))
  end)

  it("has sane defaults with an empty parent environment", function()
    assert.are.same({ PATH = claude.DEFAULT_PATH, LANG = claude.DEFAULT_LANG },
      claude.env { getenv = function() return nil end })
  end)

  it("rejects bad names and values", function()
    assert.is_nil(claude.env { getenv = getenv, set = { ["BAD-NAME"] = "x" } })
    assert.is_nil(claude.env { getenv = getenv, set = { N = 1 } })
    assert.is_nil(claude.env { getenv = getenv, set = { N = "a\0b" } })
  end)
end)

-- The adapter's argv run against the fake CLI (tests/fakeclaude/claude), its output
-- through the parser: the two must agree on flags, shapes and failures.
describe("claude adapter against the fake CLI", function()
  local FAKE = here .. "/../tests/fakeclaude/claude"
  local tmp

  local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

  local function sh(cmd)
    local f = assert(io.popen(cmd))
    local out = f:read("a")
    f:close()
    return out
  end

  -- Runs argv in dir with env (a map), returns the outcome and the progress events.
  local function run(argv, dir, env)
    local words = {}
    for _, a in ipairs(argv) do words[#words + 1] = q(a) end
    local vars = {}
    for _, kv in ipairs(claude.env_list(env)) do vars[#vars + 1] = q(kv) end
    local errfile = tmp .. "/stderr"
    local cmd = ("cd %s && env -i %s %s </dev/null 2>%s; echo \"EXIT:$?\"")
      :format(q(dir), table.concat(vars, " "), table.concat(words, " "), q(errfile))
    local p, progress = claude.parser(), {}
    local code
    for line in sh(cmd):gmatch("[^\n]+") do
      local c = line:match("^EXIT:(%d+)$")
      if c then
        code = tonumber(c)
      else
        local ev = p:feed_line(line)
        if ev then progress[#progress + 1] = ev end
      end
    end
    return p:finish { code = code, stderr = read(errfile) }, progress
  end

  local function env(extra)
    local set = { FAKE_MARKER = "present" }
    for k, v in pairs(extra or {}) do set[k] = v end
    return assert(claude.env { getenv = function(n) return n == "PATH" and os.getenv("PATH") or nil end,
                               home = tmp .. "/home", set = set })
  end

  before_each(function()
    tmp = sh("mktemp -d"):gsub("%s+$", "")
    assert(lfs.mkdir(tmp .. "/home"))
    assert(lfs.mkdir(tmp .. "/a"))
    assert(lfs.mkdir(tmp .. "/b"))
  end)

  after_each(function()
    sh("rm -rf " .. q(tmp))
  end)

  it("answers, resumes in the same directory and goes stale in another", function()
    local out, progress = run(claude.argv { command = FAKE, prompt = "-hello", model = "sonnet" },
                              tmp .. "/a", env())
    assert.is_true(out.ok)
    assert.are.equal("ECHO[msgs=2,model=sonnet]: -hello", out.text)
    assert.are.equal("init", progress[1].kind)
    assert.are.equal(out.session_id, progress[1].session_id)
    out = run(claude.argv { command = FAKE, prompt = "again", session_id = out.session_id },
              tmp .. "/a", env())
    assert.is_true(out.ok)
    assert.are.equal("ECHO[msgs=4,model=claude-opus-4-8]: again", out.text)
    local stale = run(claude.argv { command = FAKE, prompt = "elsewhere", session_id = out.session_id },
                      tmp .. "/b", env())
    assert.are.same({ "stale_session", "No conversation found with session ID: " .. out.session_id },
                    { stale.kind, stale.message })
  end)

  it("passes permissions and tools so a denied tool becomes allowed", function()
    local out = run(claude.argv { command = FAKE, prompt = "[deny]" }, tmp .. "/a", env())
    assert.is_true(out.ok)
    assert.are.equal("Bash", out.denials[1].tool)
    out = run(claude.argv { command = FAKE, prompt = "[deny]", allowed_tools = { "Read", "Bash" } },
              tmp .. "/a", env())
    assert.is_true(out.ok)
    assert.are.same({}, out.denials)
  end)

  it("gives the child exactly the environment built", function()
    local out = run(claude.argv { command = FAKE, prompt = "[env]" }, tmp .. "/a", env())
    local lines = {}
    for line in out.text:gmatch("[^\n]+") do lines[#lines + 1] = line:match("^[^=]+") end
    table.sort(lines)
    assert.are.same({ "FAKE_MARKER", "HOME", "LANG", "PATH" }, lines)
  end)

  it("maps the fake's failures", function()
    local cases = {
      { "[api-error 401]", "api_error", "Invalid API key · Fix external API key" },
      { "[api-error not-logged-in]", "api_error", "Not logged in · Please run /login" },
      { "[garbage]", "bad_output", "warning: fake garbage mode engaged\n"
        .. "error: the output above is not the stream you expected" },
      { "[crash 2]", "crashed" },
      { "[tool x]", "max_turns", "Reached maximum number of turns (1)", { "--max-turns", "1" } },
    }
    for _, c in ipairs(cases) do
      local out = run(claude.argv { command = FAKE, prompt = c[1], args = c[4] }, tmp .. "/a", env())
      assert.are.equal(c[2], out.kind, c[1])
      if c[3] then assert.are.equal(c[3], out.message, c[1]) end
    end
  end)
end)
