-- The session store: one Claude conversation per Discord channel (a thread is a
-- channel), kept in SQLite under the state directory so that a restarted bot resumes
-- every channel's conversation.
--
--   local sessions = require "coordinator.sessions"
--   local store, err = sessions.open(state_dir)   -- creates state_dir (mode 0700) if missing
--   store:get(channel_id [, project])    -> row | nil        (nil, err on a read failure)
--   store:session_id(channel_id, project) -> id | nil       the id to --resume, if any
--   store:set_session(channel_id, {session_id =, project =})            -> true | nil, err
--   store:record_turn(channel_id, {session_id =, project =, cost =, input_tokens =,
--                                  output_tokens =, user_id =, at =})    -> true | nil, err
--   store:reset(channel_id, user_id [, at])                             -> true | nil, err
--   store:set_model(channel_id, model | nil, user_id [, at])            -> true | nil, err
--   store:get_model(channel_id)           -> model | nil
--   store:get_meta(name) -> value | nil;  store:set_meta(name, value) -> true | nil, err;
--   store:delete_meta(name) -> true | nil, err
--                                          (small named strings the bot keeps)
--   store:close()                         -> true
--
-- A row has: channel_id, session_id, project, model, turns and session_turns (all turns
-- in the channel / in the current session), total_cost (USD), input_tokens,
-- output_tokens, last_activity (unix time), last_user_id, reset_by, reset_at,
-- model_set_by, model_set_at. Absent values are nil; counters are 0 for a new channel.
--
-- Claude's --resume only finds a session from the directory it was created in, so a row
-- remembers its session's project: get(channel_id, project) and session_id() treat a
-- session whose stored project differs from the channel's current one as absent (the
-- row's session_id is nil and project_changed is true; the counters and model stay).
-- The next set_session/record_turn with the new project replaces it.
--
-- Ids (channels, users, sessions) are strings: Discord snowflakes do not fit a double and
-- are stored as TEXT. Wrong argument types raise; a database failure (disk full, I/O,
-- a lock held too long) returns nil, "could not X: kind: detail".
--
-- Durability: every write is one transaction on a WAL database with synchronous=FULL
-- (core/store.h), so a kill -9 at any moment loses at most the write in flight; call
-- set_session when Claude reports the session id (its init event) and record_turn when
-- the turn ends, and a crash mid-turn still leaves the conversation resumable.
--
-- The schema is created and migrated here (below). The SQL is plain, portable SQL
-- (ON CONFLICT ... DO NOTHING, no SQLite-only functions) so the store can move to
-- PostgreSQL; the one SQLite-specific piece is the version kept in PRAGMA user_version.
local sqlite = require("core").sqlite

local M = {}

M.FILE_NAME = "sessions.sqlite3"

-- Append-only: never edit a step that has shipped, add a new one. Step N brings a
-- database from version N-1 to N; all pending steps run in one transaction together with
-- the version bump, so a database is always at exactly one known version.
M.migrations = {
  -- 1: the first layout.
  [[
    CREATE TABLE channel_sessions (
      channel_id    TEXT PRIMARY KEY,
      session_id    TEXT,
      project       TEXT,
      model         TEXT,
      turns         INTEGER NOT NULL DEFAULT 0,
      total_cost    REAL    NOT NULL DEFAULT 0,
      last_activity INTEGER,
      last_user_id  TEXT
    );
  ]],
  -- 2: tokens, turns of the current session, and who changed what.
  [[
    ALTER TABLE channel_sessions ADD COLUMN input_tokens  INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE channel_sessions ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE channel_sessions ADD COLUMN session_turns INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE channel_sessions ADD COLUMN reset_by      TEXT;
    ALTER TABLE channel_sessions ADD COLUMN reset_at      INTEGER;
    ALTER TABLE channel_sessions ADD COLUMN model_set_by  TEXT;
    ALTER TABLE channel_sessions ADD COLUMN model_set_at  INTEGER;
    UPDATE channel_sessions SET session_turns = turns WHERE session_id IS NOT NULL;
  ]],
  -- 3: small named values the bot keeps (e.g. the hash of the registered slash commands).
  [[
    CREATE TABLE bot_meta (
      name  TEXT PRIMARY KEY,
      value TEXT NOT NULL
    );
  ]],
}

local COLUMNS = "channel_id, session_id, project, model, turns, session_turns, total_cost, "
  .. "input_tokens, output_tokens, last_activity, last_user_id, reset_by, reset_at, "
  .. "model_set_by, model_set_at"

-- Environmental failures inside a transaction travel as this error and come back out as
-- nil, err; anything else raised inside (a bug) is re-raised.
local db_failure = {}
db_failure.__index = db_failure

local function must(a, b, ...)
  if a == nil then
    error(setmetatable({msg = b}, db_failure), 0)
  end
  return a, b, ...
end

local function in_transaction(db, what, fn)
  local ok, res, err = pcall(db.transaction, db, fn)
  if ok then
    if res == nil then
      return nil, "could not " .. what .. ": " .. err
    end
    return true
  end
  if getmetatable(res) == db_failure then
    return nil, "could not " .. what .. ": " .. res.msg
  end
  error(res, 0)
end

local function version(db)
  return must(db:query("PRAGMA user_version"))[1].user_version
end

-- Brings db to the newest version. Returns true or nil, err.
function M.migrate(db, migrations)
  migrations = migrations or M.migrations
  local latest = #migrations
  return in_transaction(db, "migrate the session store", function()
    local current = version(db) -- read under the write lock: two openers cannot race
    if current > latest then
      error(setmetatable({msg = string.format(
        "database schema version %d is newer than this code knows (%d)", current, latest)},
        db_failure), 0)
    end
    for v = current + 1, latest do
      must(db:exec(migrations[v]))
    end
    if latest > current then
      must(db:exec(string.format("PRAGMA user_version = %d", latest)))
    end
  end)
end

local Store = {}
Store.__index = Store

-- Opens (creating and migrating) the store in state_dir. opts.migrations is for specs.
function M.open(state_dir, opts)
  assert(type(state_dir) == "string" and state_dir ~= "", "state_dir must be a non-empty string")
  opts = opts or {}
  local path = state_dir:gsub("/+$", "") .. "/" .. M.FILE_NAME
  local db, err = sqlite.open(path, {create_dir = true})
  if not db then
    return nil, "could not open the session store: " .. err
  end
  local done, ok, merr = pcall(M.migrate, db, opts.migrations)
  if not (done and ok) then
    db:close()
    if not done then
      error(ok, 0) -- a broken migration step is a bug: raise, but do not leak the db
    end
    return nil, merr
  end
  return setmetatable({db = db, path = path}, Store)
end

local function check_id(v, name)
  if type(v) ~= "string" or v == "" then
    error(name .. " must be a non-empty string, got " .. type(v), 3)
  end
end

local function opt_string(v, name)
  if v ~= nil and type(v) ~= "string" then
    error(name .. " must be a string or nil, got " .. type(v), 3)
  end
end

local function opt_count(v, name)
  if v ~= nil and (math.type(v) ~= "integer" or v < 0) then
    error(name .. " must be a non-negative integer or nil", 3)
  end
  return v or 0
end

local function opt_time(v)
  if v ~= nil and math.type(v) ~= "integer" then
    error("at must be an integer unix time or nil", 3)
  end
  return v or os.time()
end

local function ensure_row(db, channel_id)
  must(db:run("INSERT INTO channel_sessions (channel_id) VALUES (?) "
    .. "ON CONFLICT (channel_id) DO NOTHING", channel_id))
end

local function read_row(db, channel_id)
  local rows = must(db:query("SELECT " .. COLUMNS .. " FROM channel_sessions WHERE channel_id = ?",
    channel_id))
  return rows[1]
end

function Store:get(channel_id, project)
  check_id(channel_id, "channel_id")
  opt_string(project, "project")
  local ok, row = pcall(read_row, self.db, channel_id)
  if not ok then
    if getmetatable(row) == db_failure then
      return nil, "could not read the session: " .. row.msg
    end
    error(row, 0)
  end
  if row and project and row.session_id and row.project ~= project then
    row.session_id = nil
    row.project_changed = true
  end
  return row
end

function Store:session_id(channel_id, project)
  check_id(project, "project")
  local row, err = self:get(channel_id, project)
  if not row then
    return nil, err
  end
  return row.session_id
end

local function check_session(s)
  if type(s) ~= "table" then
    error("expected a table {session_id =, project =}", 3)
  end
  check_id(s.session_id, "session_id")
  check_id(s.project, "project")
end

-- The turns of the current session after switching to (session_id, project).
local function same_session(row, session_id, project)
  return row.session_id == session_id and row.project == project
end

function Store:set_session(channel_id, s)
  check_id(channel_id, "channel_id")
  check_session(s)
  local db = self.db
  return in_transaction(db, "store the session", function()
    ensure_row(db, channel_id)
    local row = read_row(db, channel_id)
    if same_session(row, s.session_id, s.project) then
      return
    end
    must(db:run("UPDATE channel_sessions SET session_id = ?, project = ?, session_turns = 0 "
      .. "WHERE channel_id = ?", s.session_id, s.project, channel_id))
  end)
end

function Store:record_turn(channel_id, t)
  check_id(channel_id, "channel_id")
  if type(t) ~= "table" then
    error("expected a table describing the turn", 2)
  end
  if t.session_id ~= nil then
    check_session(t)
  end
  local cost = t.cost or 0
  if type(cost) ~= "number" or cost < 0 or cost ~= cost then
    error("cost must be a non-negative number or nil", 2)
  end
  local input = opt_count(t.input_tokens, "input_tokens")
  local output = opt_count(t.output_tokens, "output_tokens")
  opt_string(t.user_id, "user_id")
  local at = opt_time(t.at)
  local db = self.db
  return in_transaction(db, "record the turn", function()
    ensure_row(db, channel_id)
    local row = read_row(db, channel_id)
    local session_id, project, session_turns = row.session_id, row.project, row.session_turns
    if t.session_id and not same_session(row, t.session_id, t.project) then
      session_id, project, session_turns = t.session_id, t.project, 0
    end
    must(db:run([[
      UPDATE channel_sessions SET
        session_id = ?, project = ?, session_turns = ?, turns = turns + 1,
        total_cost = total_cost + ?, input_tokens = input_tokens + ?,
        output_tokens = output_tokens + ?, last_activity = ?,
        last_user_id = COALESCE(?, last_user_id)
      WHERE channel_id = ?]],
      session_id, project, session_turns + 1, cost + 0.0, input, output, at, t.user_id,
      channel_id))
  end)
end

function Store:reset(channel_id, user_id, at)
  check_id(channel_id, "channel_id")
  check_id(user_id, "user_id")
  at = opt_time(at)
  local db = self.db
  return in_transaction(db, "reset the session", function()
    ensure_row(db, channel_id)
    must(db:run("UPDATE channel_sessions SET session_id = NULL, session_turns = 0, "
      .. "reset_by = ?, reset_at = ? WHERE channel_id = ?", user_id, at, channel_id))
  end)
end

function Store:set_model(channel_id, model, user_id, at)
  check_id(channel_id, "channel_id")
  opt_string(model, "model")
  check_id(user_id, "user_id")
  at = opt_time(at)
  local db = self.db
  return in_transaction(db, "set the model", function()
    ensure_row(db, channel_id)
    must(db:run("UPDATE channel_sessions SET model = ?, model_set_by = ?, model_set_at = ? "
      .. "WHERE channel_id = ?", model, user_id, at, channel_id))
  end)
end

function Store:get_model(channel_id)
  local row, err = self:get(channel_id)
  if not row then
    return nil, err
  end
  return row.model
end

function Store:get_meta(name)
  check_id(name, "name")
  local rows = self.db:query("SELECT value FROM bot_meta WHERE name = ?", name)
  return rows[1] and rows[1].value
end

function Store:set_meta(name, value)
  check_id(name, "name")
  check_id(value, "value")
  return in_transaction(self.db, "store " .. name, function(db)
    must(db:run("DELETE FROM bot_meta WHERE name = ?", name))
    must(db:run("INSERT INTO bot_meta (name, value) VALUES (?, ?)", name, value))
  end)
end

function Store:delete_meta(name)
  check_id(name, "name")
  return in_transaction(self.db, "forget " .. name, function(db)
    must(db:run("DELETE FROM bot_meta WHERE name = ?", name))
  end)
end

function Store:close()
  return self.db:close()
end

Store.__close = Store.close

return M
