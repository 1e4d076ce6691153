-- coordinator.sessions against the real SQLite binding, in a fresh state directory each.
local sessions = require("coordinator.sessions")
local sqlite = require("core").sqlite

local function tmpdir()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkdir -p '" .. path .. "'"))
  return path
end

local CH = "1180581229440143390"
local USER = "283994167018504192"

describe("coordinator.sessions", function()
  local dir, store

  before_each(function()
    dir = tmpdir()
  end)

  after_each(function()
    if store then
      store:close()
      store = nil
    end
    os.execute("rm -rf '" .. dir .. "'")
  end)

  local function open()
    store = assert(sessions.open(dir .. "/state"))
    return store
  end

  local function reopen()
    store:close()
    return open()
  end

  describe("open", function()
    it("creates the state directory and the schema at the latest version", function()
      open()
      local f = io.open(dir .. "/state/" .. sessions.FILE_NAME, "rb")
      assert.is_not_nil(f)
      f:close()
      local db = assert(sqlite.open(dir .. "/state/" .. sessions.FILE_NAME))
      local v = db:query("PRAGMA user_version")[1].user_version
      db:close()
      assert.are.equal(#sessions.migrations, v)
    end)

    it("reopens an existing store without migrating again", function()
      open():set_model(CH, "opus", USER)
      reopen()
      assert.are.equal("opus", store:get_model(CH))
    end)

    it("returns nil, err when the state directory cannot be created", function()
      local f = assert(io.open(dir .. "/file", "w"))
      f:close()
      local got, err = sessions.open(dir .. "/file/state")
      assert.is_nil(got)
      assert.matches("^could not open the session store: open: could not create directory", err)
    end)

    it("refuses a database from a newer version of the code", function()
      local db = assert(sqlite.open(dir .. "/" .. sessions.FILE_NAME))
      db:exec("PRAGMA user_version = 99")
      db:close()
      local got, err = sessions.open(dir)
      assert.is_nil(got)
      assert.matches("schema version 99 is newer than this code knows", err)
    end)

    it("raises on a bad state_dir", function()
      assert.has_error(function() sessions.open() end)
      assert.has_error(function() sessions.open("") end)
    end)
  end)

  describe("migration", function()
    it("brings a version 1 database forward and keeps its data", function()
      local path = dir .. "/" .. sessions.FILE_NAME
      local db = assert(sqlite.open(path))
      db:exec(sessions.migrations[1])
      db:exec("PRAGMA user_version = 1")
      db:run("INSERT INTO channel_sessions (channel_id, session_id, project, model, turns, "
        .. "total_cost, last_activity, last_user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        CH, "sess-old", "/srv/app", "sonnet", 3, 0.5, 1700000000, USER)
      db:close()

      store = assert(sessions.open(dir))
      local row = store:get(CH, "/srv/app")
      assert.are.equal("sess-old", row.session_id)
      assert.are.equal("sonnet", row.model)
      assert.are.equal(3, row.turns)
      assert.are.equal(3, row.session_turns)
      assert.are.equal(0.5, row.total_cost)
      assert.are.equal(0, row.input_tokens)
      assert.are.equal(1700000000, row.last_activity)
      assert.are.equal(USER, row.last_user_id)
      assert.is_nil(row.reset_by)
      -- the new columns work
      assert(store:record_turn(CH, {input_tokens = 10, output_tokens = 20, at = 1700000100}))
      row = store:get(CH)
      assert.are.equal(10, row.input_tokens)
      assert.are.equal(4, row.turns)
    end)

    it("applies all pending steps or none", function()
      local broken = {sessions.migrations[1], "CREATE TABLE extra (x); SELECT * FROM nope"}
      assert.has_error(function() sessions.open(dir, {migrations = broken}) end,
        "no such table: nope")
      local db = assert(sqlite.open(dir .. "/" .. sessions.FILE_NAME))
      local v = db:query("PRAGMA user_version")[1].user_version
      local tables = db:query("SELECT name FROM sqlite_master WHERE type = 'table'")
      db:close()
      assert.are.equal(0, v)
      assert.are.same({}, tables)
    end)
  end)

  describe("round trips", function()
    it("returns nil for an unknown channel", function()
      assert.is_nil(open():get(CH))
      assert.is_nil(store:get_model(CH))
      assert.is_nil(store:session_id(CH, "/srv/app"))
    end)

    it("stores a session and finds it after reopening", function()
      assert.is_true(open():set_session(CH, {session_id = "s1", project = "/srv/app"}))
      reopen()
      local row = store:get(CH)
      assert.are.equal(CH, row.channel_id)
      assert.are.equal("s1", row.session_id)
      assert.are.equal("/srv/app", row.project)
      assert.are.equal(0, row.turns)
      assert.are.equal("s1", store:session_id(CH, "/srv/app"))
    end)

    it("accumulates turns, cost and tokens, and remembers who and when", function()
      open()
      local turn = {session_id = "s1", project = "/srv/app", cost = 0.25, input_tokens = 100,
                    output_tokens = 40, user_id = USER, at = 1700000000}
      assert.is_true(store:record_turn(CH, turn))
      turn.cost, turn.at, turn.user_id = 0.5, 1700000060, "42"
      assert.is_true(store:record_turn(CH, turn))
      reopen()
      local row = store:get(CH)
      assert.are.equal(2, row.turns)
      assert.are.equal(2, row.session_turns)
      assert.are.equal(0.75, row.total_cost)
      assert.are.equal(200, row.input_tokens)
      assert.are.equal(80, row.output_tokens)
      assert.are.equal(1700000060, row.last_activity)
      assert.are.equal("42", row.last_user_id)
      assert.are.equal("integer", math.type(row.turns))
    end)

    it("starts counting session turns again when the session changes", function()
      open()
      store:record_turn(CH, {session_id = "s1", project = "/p"})
      store:record_turn(CH, {session_id = "s1", project = "/p"})
      store:record_turn(CH, {session_id = "s2", project = "/p"})
      local row = store:get(CH)
      assert.are.equal("s2", row.session_id)
      assert.are.equal(3, row.turns)
      assert.are.equal(1, row.session_turns)
    end)

    it("keeps channels apart", function()
      open()
      store:set_session(CH, {session_id = "a", project = "/p"})
      store:set_session("2", {session_id = "b", project = "/q"})
      store:set_model("2", "haiku", USER)
      assert.are.equal("a", store:get(CH).session_id)
      assert.are.equal("b", store:get("2").session_id)
      assert.is_nil(store:get_model(CH))
    end)

    it("raises on wrong argument types", function()
      open()
      assert.has_error(function() store:get(1180581229440143390) end)
      assert.has_error(function() store:set_session(CH, {session_id = "s"}) end)
      assert.has_error(function() store:record_turn(CH, {cost = "1"}) end)
      assert.has_error(function() store:record_turn(CH, {input_tokens = 1.5}) end)
      assert.has_error(function() store:reset(CH) end)
      assert.has_error(function() store:set_model(CH, 5, USER) end)
    end)
  end)

  describe("reset", function()
    it("drops the session, keeps the channel's totals and model, records who", function()
      open()
      store:set_model(CH, "opus", USER)
      store:record_turn(CH, {session_id = "s1", project = "/p", cost = 1.0, user_id = USER})
      assert.is_true(store:reset(CH, "99", 1700000500))
      reopen()
      local row = store:get(CH)
      assert.is_nil(row.session_id)
      assert.is_nil(store:session_id(CH, "/p"))
      assert.are.equal(0, row.session_turns)
      assert.are.equal(1, row.turns)
      assert.are.equal(1.0, row.total_cost)
      assert.are.equal("opus", row.model)
      assert.are.equal("99", row.reset_by)
      assert.are.equal(1700000500, row.reset_at)
      -- the next turn starts a fresh session
      store:record_turn(CH, {session_id = "s2", project = "/p"})
      assert.are.equal("s2", store:session_id(CH, "/p"))
      assert.are.equal(1, store:get(CH).session_turns)
    end)

    it("is harmless on a channel without a session", function()
      assert.is_true(open():reset(CH, USER))
      assert.is_nil(store:get(CH).session_id)
    end)
  end)

  describe("model", function()
    it("sets, persists, records who, and clears back to the default", function()
      open()
      assert.is_true(store:set_model(CH, "opus", USER, 1700000200))
      reopen()
      assert.are.equal("opus", store:get_model(CH))
      local row = store:get(CH)
      assert.are.equal(USER, row.model_set_by)
      assert.are.equal(1700000200, row.model_set_at)
      assert.is_true(store:set_model(CH, nil, "7"))
      assert.is_nil(store:get_model(CH))
      assert.are.equal("7", store:get(CH).model_set_by)
    end)

    it("survives a session change and a reset", function()
      open()
      store:set_model(CH, "sonnet", USER)
      store:record_turn(CH, {session_id = "s1", project = "/p"})
      store:reset(CH, USER)
      assert.are.equal("sonnet", store:get_model(CH))
    end)
  end)

  describe("project mismatch", function()
    it("treats a session from another project as absent", function()
      open()
      store:record_turn(CH, {session_id = "s1", project = "/srv/old", cost = 0.1})
      assert.is_nil(store:session_id(CH, "/srv/new"))
      local row = store:get(CH, "/srv/new")
      assert.is_nil(row.session_id)
      assert.is_true(row.project_changed)
      assert.are.equal(1, row.turns) -- the channel's history is still there
      -- same project: still resumable
      assert.are.equal("s1", store:session_id(CH, "/srv/old"))
      -- without a project, get shows what is stored
      assert.are.equal("s1", store:get(CH).session_id)
    end)

    it("replaces the session once a turn runs in the new project", function()
      open()
      store:record_turn(CH, {session_id = "s1", project = "/srv/old"})
      store:record_turn(CH, {session_id = "s2", project = "/srv/new"})
      assert.are.equal("s2", store:session_id(CH, "/srv/new"))
      assert.is_nil(store:session_id(CH, "/srv/old"))
      assert.are.equal(1, store:get(CH).session_turns)
    end)

    it("counts a same-id session in another directory as a new session", function()
      open()
      store:set_session(CH, {session_id = "s1", project = "/a"})
      store:record_turn(CH, {session_id = "s1", project = "/a"})
      store:set_session(CH, {session_id = "s1", project = "/b"})
      assert.are.equal(0, store:get(CH).session_turns)
      assert.are.equal("/b", store:get(CH).project)
    end)
  end)

  describe("failures", function()
    it("returns nil, err when the database is locked past the busy timeout", function()
      open()
      store:set_model(CH, "opus", USER)
      local other = assert(sqlite.open(store.path))
      other:exec("BEGIN IMMEDIATE")
      -- shorten the wait: reopen the store's connection with a small timeout
      store.db:close()
      store.db = assert(sqlite.open(store.path, {busy_timeout_ms = 50}))
      local ok, err = store:record_turn(CH, {cost = 1.0})
      other:exec("ROLLBACK")
      other:close()
      assert.is_nil(ok)
      assert.matches("^could not record the turn: busy: ", err)
      assert.are.equal(0, store:get(CH).turns) -- nothing half-written
    end)
  end)
end)
