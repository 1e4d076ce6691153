-- coordinator.claude: the Claude Code CLI (2.1.197) as a subprocess, in pure Lua.
--
-- No I/O here: this module builds the argv and the environment of a run and interprets
-- what the run printed. Spawning, timeouts and signals belong to core.proc.
--
-- M.argv(opts) -> argv (a list of strings; argv[1] is the program)
--   opts.command               string, or a list such as {"node", "cli.js"}; default "claude"
--   opts.session_id            resume this session (`--resume ID`); nil or "" for a new one
--   opts.model                 `--model`, sent verbatim; nil or "" for the CLI's default
--   opts.permission_mode       `--permission-mode`; nil, "" or "default" adds nothing
--   opts.allowed_tools         list of tool rules (or one comma-separated string)
--   opts.append_system_prompt  `--append-system-prompt`
--   opts.args                  extra arguments (config `claude.args`), inserted verbatim
--   opts.prompt                required; always last, after `--`, so it may start with "-"
--   Shape: {command..., "-p", "--output-format", "stream-json", "--verbose",
--           ["--resume", id], ["--model", m], ["--permission-mode", mode],
--           ["--append-system-prompt", text], args..., ["--allowedTools", "a,b"], "--", prompt}
--   `--allowedTools` is variadic in the CLI (it swallows every following word up to the
--   next option), so it comes last, right before `--`.
--   Misuse (no prompt, wrong types) raises.
--
-- M.env(opts) -> env (a map NAME -> value) | nil, err
--   Built from nothing: PATH, HOME, LANG and LC_ALL (from opts.getenv, default os.getenv;
--   PATH defaults to "/usr/local/bin:/usr/bin:/bin", LANG to "C.UTF-8"; opts.home/opts.path
--   override), then opts.set (config `claude.env`: NAME -> value; a value of false removes
--   a name), nothing else. Fails with nil, "could not build claude's environment: ..." when a
--   name is invalid, a value is not a string, a name is forbidden (DISCORD_TOKEN and
--   opts.forbid), or a value contains one of opts.secrets (e.g. the bot token's value).
-- M.env_list(env) -> sorted list of "NAME=value"
-- M.RECOMMENDED_ENV: variables worth setting for unattended runs (not added by M.env).
--
-- M.parser() -> p, an incremental reader of the CLI's stdout (stream-json lines; a json
--   result object or a `json --verbose` array on one line works too).
--   p:feed_line(line) -> progress | nil. Non-JSON lines are counted, never fatal; unknown
--   event types and fields are ignored. progress is one of
--     {kind = "init", session_id =, model =, cwd =, permission_mode =}
--     {kind = "text", text =}                       an assistant text block
--     {kind = "thinking"}
--     {kind = "tool_use", id =, name =, input =, summary =}   e.g. summary "echo hi"
--     {kind = "tool_result", id =, is_error =}
--     {kind = "delta", text =}                      with --include-partial-messages
--     {kind = "status", subtype =, event =}         other `system` lines (api_retry, ...)
--     {kind = "result", is_error =, subtype =}
--   Fields readable at any time: p.session_id, p.model, p.tool_uses (list of
--   {name, summary}), p.lines, p.bad_lines, p.result (the decoded result object or nil).
--   p:finish{code =, signal =, stderr =, timed_out =, timeout =, stopped =, spawn_error =,
--            command =} -> outcome, where
--     code/signal   how the process ended (exit status / signal number or name)
--     stderr        what it wrote on stderr (string)
--     timed_out     the host stopped it for running longer than `timeout` seconds
--     stopped       the host stopped it on request (/stop)
--     spawn_error   the process never started ("spawn: ENOENT", ...)
--   outcome on success:
--     {ok = true, text =, session_id =, cost =, turns =, duration_ms =, model =,
--      usage = {input_tokens =, output_tokens =, cache_read_input_tokens =,
--               cache_creation_input_tokens =},
--      denials = {{tool =, id =, input =, summary =}, ...}, tool_uses = {...}}
--   outcome on failure:
--     {ok = false, kind =, message =, session_id = (when known), cost =, turns =,
--      denials =, tool_uses =, code =, signal =}
--     kind is one of
--       "api_error"       is_error with subtype "success": message = the result text
--                         ("Invalid API key · Fix external API key", "API Error: 500 ...")
--       "max_turns"       error_max_turns: message = errors[1]
--       "max_budget"      error_max_budget_usd: message = errors[1]
--       "interrupted"     stopped by the host, or the CLI's own aborted_streaming result
--       "timeout"         timed_out: "timed out after N s"
--       "stale_session"   "No conversation found with session ID: ..." (verbatim): the
--                         stored id is unusable (other directory, other HOME, deleted)
--       "cli_error"       the CLI refused the invocation (exit != 0, "Error: ..." or
--                         "error: ..." on stderr, no output): message = that stderr
--       "not_found"       spawn failed with ENOENT/EACCES (or exit 127)
--       "spawn_failed"    any other spawn failure
--       "bad_output"      no result and output that was not the expected JSON: message =
--                         the last lines of stderr, else the first unexpected line
--       "crashed"         no result otherwise (killed by a signal, non-zero exit)
--       "error"           any other is_error result: errors[] or the result text
--     message is short (at most M.MAX_MESSAGE bytes), user-facing, and verbatim from the
--     CLI wherever the CLI gives one.
--   A success result wins over timed_out/stopped: the reply was complete.

local cjson = require "cjson.safe"

local M = {}

M.MAX_MESSAGE = 1500
M.STDERR_LINES = 6
M.DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
M.DEFAULT_LANG = "C.UTF-8"
M.FORBIDDEN_ENV = { "DISCORD_TOKEN" }
M.RECOMMENDED_ENV = {
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1",
  DISABLE_TELEMETRY = "1",
  DISABLE_AUTOUPDATER = "1",
}

local null = cjson.null

local function val(v)
  if v == null then return nil end
  return v
end

-- ------------------------------------------------------------------ argv

local function nonempty(v)
  return v ~= nil and v ~= "" and v or nil
end

local function check_string(v, what)
  if v ~= nil and type(v) ~= "string" then
    error(("claude.argv: %s must be a string, got %s"):format(what, type(v)), 3)
  end
end

function M.argv(opts)
  if type(opts) ~= "table" then error("claude.argv: expected a table", 2) end
  if type(opts.prompt) ~= "string" then error("claude.argv: prompt must be a string", 2) end
  for _, k in ipairs { "session_id", "model", "permission_mode", "append_system_prompt" } do
    check_string(opts[k], k)
  end
  local argv = {}
  local command = opts.command or "claude"
  if type(command) == "table" then
    if #command == 0 then error("claude.argv: command is an empty list", 2) end
    for _, part in ipairs(command) do
      check_string(part, "command[i]")
      argv[#argv + 1] = part
    end
  elseif type(command) == "string" and command ~= "" then
    argv[1] = command
  else
    error("claude.argv: command must be a non-empty string or list", 2)
  end
  local function add(...)
    for i = 1, select("#", ...) do argv[#argv + 1] = select(i, ...) end
  end
  add("-p", "--output-format", "stream-json", "--verbose")
  if nonempty(opts.session_id) then add("--resume", opts.session_id) end
  if nonempty(opts.model) then add("--model", opts.model) end
  local mode = nonempty(opts.permission_mode)
  if mode and mode ~= "default" then add("--permission-mode", mode) end
  if nonempty(opts.append_system_prompt) then
    add("--append-system-prompt", opts.append_system_prompt)
  end
  if opts.args ~= nil then
    if type(opts.args) ~= "table" then error("claude.argv: args must be a list", 2) end
    for _, a in ipairs(opts.args) do
      check_string(a, "args[i]")
      add(a)
    end
  end
  local tools = opts.allowed_tools
  if type(tools) == "string" then tools = { tools } end
  if tools ~= nil and type(tools) ~= "table" then
    error("claude.argv: allowed_tools must be a list", 2)
  end
  if tools and #tools > 0 then
    for _, t in ipairs(tools) do check_string(t, "allowed_tools[i]") end
    add("--allowedTools", table.concat(tools, ","))
  end
  add("--", opts.prompt)
  return argv
end

-- ------------------------------------------------------------------ env

local function env_fail(msg)
  return nil, "could not build claude's environment: " .. msg
end

function M.env(opts)
  opts = opts or {}
  local getenv = opts.getenv or os.getenv
  local env = {}
  env.PATH = opts.path or getenv("PATH") or M.DEFAULT_PATH
  env.HOME = opts.home or getenv("HOME")
  env.LANG = opts.lang or getenv("LANG") or M.DEFAULT_LANG
  env.LC_ALL = opts.lc_all or getenv("LC_ALL")
  local forbidden = {}
  for _, name in ipairs(M.FORBIDDEN_ENV) do forbidden[name] = true end
  for _, name in ipairs(opts.forbid or {}) do forbidden[name] = true end
  if opts.set ~= nil and type(opts.set) ~= "table" then return env_fail("set must be a table") end
  for name, value in pairs(opts.set or {}) do
    if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
      return env_fail(("%q is not a variable name"):format(tostring(name)))
    end
    if forbidden[name] then
      return env_fail(name .. " is never passed to claude")
    end
    if value == false then
      env[name] = nil
    elseif type(value) ~= "string" then
      return env_fail(("%s must be a string, got %s"):format(name, type(value)))
    elseif value:find("\0", 1, true) then
      return env_fail(name .. " contains a NUL byte")
    else
      env[name] = value
    end
  end
  for name, value in pairs(env) do
    for _, secret in ipairs(opts.secrets or {}) do
      if type(secret) == "string" and #secret > 0 and value:find(secret, 1, true) then
        return env_fail(name .. " contains a secret")
      end
    end
  end
  return env
end

function M.env_list(env)
  local list = {}
  for name, value in pairs(env) do list[#list + 1] = name .. "=" .. value end
  table.sort(list)
  return list
end

-- ------------------------------------------------------------------ parser

local function first_line(s, max)
  s = tostring(s or ""):match("^[^\n]*")
  if #s > max then s = s:sub(1, max - 3) .. "..." end
  return s
end

local SUMMARY_KEYS = { "command", "file_path", "path", "pattern", "url", "query", "description",
                       "prompt", "notebook_path" }

-- A one-line description of a tool call for progress displays: "echo hi", "src/x.lua".
function M.tool_summary(name, input)
  if type(input) == "table" then
    for _, k in ipairs(SUMMARY_KEYS) do
      if type(input[k]) == "string" and input[k] ~= "" then
        return first_line(input[k], 120)
      end
    end
  end
  return name or "tool"
end

-- Cut to at most max bytes without splitting a UTF-8 sequence.
local function clip(s, max)
  if #s <= max then return s end
  local cut = max - 3
  while cut > 0 do
    local b = s:byte(cut + 1)
    if not b or b < 0x80 or b >= 0xC0 then break end
    cut = cut - 1
  end
  return s:sub(1, cut) .. "..."
end

-- The last non-empty lines of stderr, without terminal escapes.
function M.stderr_tail(stderr, nlines)
  nlines = nlines or M.STDERR_LINES
  stderr = tostring(stderr or ""):gsub("\27%[[%d;?]*[%a]", ""):gsub("\r", "")
  local lines = {}
  for line in stderr:gmatch("[^\n]+") do
    if line:match("%S") then lines[#lines + 1] = line end
  end
  local from = math.max(1, #lines - nlines + 1)
  local tail = table.concat(lines, "\n", from, #lines)
  if #tail > M.MAX_MESSAGE then tail = "..." .. tail:sub(-(M.MAX_MESSAGE - 3)) end
  return tail
end

local Parser = {}
Parser.__index = Parser

function M.parser()
  return setmetatable({
    session_id = nil, model = nil, cwd = nil,
    tool_uses = {}, lines = 0, bad_lines = 0, first_bad = nil,
    result = nil, last_text = nil,
  }, Parser)
end

local function content_blocks(ev)
  local msg = type(ev.message) == "table" and ev.message or nil
  local content = msg and msg.content
  if type(content) == "table" then return content end
  return {}
end

function Parser:_event(ev)
  local t = ev.type
  if type(ev.session_id) == "string" and not self.session_id then
    self.session_id = ev.session_id
  end
  if t == "system" then
    if ev.subtype == "init" then
      self.session_id = val(ev.session_id) or self.session_id
      self.model = val(ev.model)
      self.cwd = val(ev.cwd)
      return { kind = "init", session_id = self.session_id, model = self.model, cwd = self.cwd,
               permission_mode = val(ev.permissionMode) }
    end
    return { kind = "status", subtype = val(ev.subtype), event = ev }
  elseif t == "assistant" then
    local out
    for _, block in ipairs(content_blocks(ev)) do
      if type(block) == "table" then
        if block.type == "text" and type(block.text) == "string" then
          self.last_text = block.text
          out = out or { kind = "text", text = block.text }
        elseif block.type == "tool_use" then
          local name = val(block.name)
          local use = { kind = "tool_use", id = val(block.id), name = name,
                        input = val(block.input), summary = M.tool_summary(name, val(block.input)) }
          self.tool_uses[#self.tool_uses + 1] = { name = name, summary = use.summary }
          out = out or use
        elseif block.type == "thinking" then
          out = out or { kind = "thinking" }
        end
      end
    end
    return out
  elseif t == "user" then
    for _, block in ipairs(content_blocks(ev)) do
      if type(block) == "table" and block.type == "tool_result" then
        return { kind = "tool_result", id = val(block.tool_use_id), is_error = val(block.is_error) == true }
      end
    end
    return nil
  elseif t == "stream_event" then
    local e = type(ev.event) == "table" and ev.event or {}
    local d = type(e.delta) == "table" and e.delta or {}
    if e.type == "content_block_delta" and d.type == "text_delta" and type(d.text) == "string" then
      return { kind = "delta", text = d.text }
    end
    return nil
  elseif t == "result" then
    self.result = ev
    self.session_id = val(ev.session_id) or self.session_id
    return { kind = "result", is_error = val(ev.is_error) == true, subtype = val(ev.subtype) }
  end
  return nil
end

function Parser:feed_line(line)
  if type(line) ~= "string" then error("parser:feed_line: expected a string", 2) end
  line = line:gsub("%s+$", "")
  if line == "" then return nil end
  self.lines = self.lines + 1
  local ev = cjson.decode(line)
  if type(ev) ~= "table" then
    self.bad_lines = self.bad_lines + 1
    self.first_bad = self.first_bad or line
    return nil
  end
  if #ev > 0 or next(ev) == nil then
    -- `--output-format json --verbose`: every event in one array
    local last
    for _, item in ipairs(ev) do
      if type(item) == "table" then last = self:_event(item) or last end
    end
    return last
  end
  if type(ev.type) ~= "string" then
    self.bad_lines = self.bad_lines + 1
    self.first_bad = self.first_bad or line
    return nil
  end
  return self:_event(ev)
end

local function usage_of(r)
  local u = type(r.usage) == "table" and r.usage or {}
  local function n(k) return type(u[k]) == "number" and u[k] or 0 end
  return { input_tokens = n "input_tokens", output_tokens = n "output_tokens",
           cache_read_input_tokens = n "cache_read_input_tokens",
           cache_creation_input_tokens = n "cache_creation_input_tokens" }
end

local function denials_of(r)
  local out = {}
  local list = type(r.permission_denials) == "table" and r.permission_denials or {}
  for _, d in ipairs(list) do
    if type(d) == "table" then
      local input = val(d.tool_input)
      out[#out + 1] = { tool = val(d.tool_name), id = val(d.tool_use_id), input = input,
                        summary = M.tool_summary(val(d.tool_name), input) }
    end
  end
  return out
end

local function model_of(self, r)
  if self.model then return self.model end
  -- json mode has no init line: take the model that cost the most
  local best, best_cost
  if type(r.modelUsage) == "table" then
    for k, u in pairs(r.modelUsage) do
      local cost = type(u) == "table" and type(u.costUSD) == "number" and u.costUSD or 0
      if not best or cost > best_cost or (cost == best_cost and k < best) then
        best, best_cost = k, cost
      end
    end
  end
  return best
end

local function first_error(r)
  if type(r.errors) == "table" then
    local parts = {}
    for _, e in ipairs(r.errors) do
      if type(e) == "string" then parts[#parts + 1] = e end
    end
    if #parts > 0 then return table.concat(parts, "; ") end
  end
  if type(r.result) == "string" and r.result ~= "" then return r.result end
  return nil
end

local function fail(self, kind, message, info)
  local r = self.result or {}
  return {
    ok = false, kind = kind, message = clip(message, M.MAX_MESSAGE),
    session_id = kind ~= "stale_session" and self.session_id or nil,
    cost = type(r.total_cost_usd) == "number" and r.total_cost_usd or 0,
    turns = type(r.num_turns) == "number" and r.num_turns or nil,
    denials = denials_of(r), tool_uses = self.tool_uses,
    code = info.code, signal = info.signal,
  }
end

local function from_result(self, r, info)
  local is_error = val(r.is_error) == true
  local subtype = val(r.subtype)
  if not is_error and (subtype == "success" or subtype == nil) then
    return {
      ok = true, text = type(r.result) == "string" and r.result or "",
      session_id = self.session_id,
      cost = type(r.total_cost_usd) == "number" and r.total_cost_usd or 0,
      turns = type(r.num_turns) == "number" and r.num_turns or nil,
      duration_ms = val(r.duration_ms),
      usage = usage_of(r), denials = denials_of(r), model = model_of(self, r),
      tool_uses = self.tool_uses,
    }
  end
  if info.timed_out then return nil end
  if info.stopped then return fail(self, "interrupted", "stopped", info) end
  local msg = first_error(r)
  if subtype == "success" then
    return fail(self, "api_error", msg or "the API call failed", info)
  elseif subtype == "error_max_turns" then
    return fail(self, "max_turns", msg or "reached the maximum number of turns", info)
  elseif subtype == "error_max_budget_usd" then
    return fail(self, "max_budget", msg or "reached the budget limit", info)
  elseif subtype == "error_during_execution" and val(r.terminal_reason) == "aborted_streaming" then
    return fail(self, "interrupted", "interrupted", info)
  end
  return fail(self, "error", msg or ("claude failed (" .. tostring(subtype) .. ")"), info)
end

local NOT_FOUND = { ENOENT = true, EACCES = true, ENOTDIR = true }

function Parser:finish(info)
  info = info or {}
  if self.result then
    local out = from_result(self, self.result, info)
    if out then return out end
  end
  if info.timed_out then
    local msg = info.timeout and ("timed out after %g s"):format(info.timeout) or "timed out"
    return fail(self, "timeout", msg, info)
  end
  if info.stopped then return fail(self, "interrupted", "stopped", info) end
  if info.spawn_error then
    local what = tostring(info.spawn_error)
    local code = what:match("E%u+")
    local cmd = info.command and (" (" .. tostring(info.command) .. ")") or ""
    if code and NOT_FOUND[code] then
      return fail(self, "not_found", "could not run the Claude command" .. cmd .. ": " .. what, info)
    end
    return fail(self, "spawn_failed", "could not start the Claude command" .. cmd .. ": " .. what, info)
  end
  local stderr = tostring(info.stderr or "")
  local tail = M.stderr_tail(stderr)
  local stale = stderr:match("No conversation found with session ID[^\n]*")
  if stale then return fail(self, "stale_session", stale, info) end
  if info.code == 127 and self.lines == 0 then
    return fail(self, "not_found", tail ~= "" and tail or "the Claude command was not found", info)
  end
  if info.signal then
    local msg = tail ~= "" and tail or ("claude was killed by signal " .. tostring(info.signal))
    return fail(self, "crashed", msg, info)
  end
  if self.bad_lines > 0 then
    local msg = tail ~= "" and tail or ("unexpected output from claude: " .. first_line(self.first_bad, 200))
    return fail(self, "bad_output", msg, info)
  end
  if info.code and info.code ~= 0 then
    if self.lines == 0 and (tail:match("^[Ee]rror:") or tail:match("\n[Ee]rror:")) then
      return fail(self, "cli_error", tail, info)
    end
    local msg = tail ~= "" and tail
      or ("claude exited with status " .. tostring(info.code) .. " without a result")
    return fail(self, "crashed", msg, info)
  end
  return fail(self, "bad_output", tail ~= "" and tail or "claude exited without a result", info)
end

return M
