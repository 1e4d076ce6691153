-- core.sqlite against the real build/core.so: types, parameters, errors, transactions.
local sqlite = require("core").sqlite

local function tmpdir()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkdir -p '" .. path .. "'"))
  return path
end

local function rmtree(path)
  os.execute("rm -rf '" .. path .. "'")
end

describe("core.sqlite", function()
  local db

  before_each(function()
    db = assert(sqlite.open(":memory:"))
    db:exec([[
      CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, n TEXT);
    ]])
  end)

  after_each(function()
    db:close()
  end)

  describe("types", function()
    it("round-trips integers, reals, text and null", function()
      db:run("INSERT INTO t (i, r, s, n) VALUES (?, ?, ?, ?)",
        math.maxinteger, 0.25, "héllo\0world", nil)
      local rows = db:query("SELECT i, r, s, n FROM t")
      assert.are.equal(1, #rows)
      local row = rows[1]
      assert.are.equal(math.maxinteger, row.i)
      assert.are.equal("integer", math.type(row.i))
      assert.are.equal(0.25, row.r)
      assert.are.equal("float", math.type(row.r))
      assert.are.equal("héllo\0world", row.s)
      assert.is_nil(row.n)
    end)

    it("keeps snowflake ids exact as TEXT", function()
      local id = "1180581229440143390"
      db:run("INSERT INTO t (s) VALUES (?)", id)
      assert.are.equal(id, db:query("SELECT s FROM t WHERE s = ?", id)[1].s)
    end)

    it("binds an integral float as REAL and an integer as INTEGER", function()
      assert.are.equal("real", db:query("SELECT typeof(?) AS ty", 2.0)[1].ty)
      assert.are.equal("integer", db:query("SELECT typeof(?) AS ty", 2)[1].ty)
      assert.are.equal("null", db:query("SELECT typeof(?) AS ty", nil)[1].ty)
    end)

    it("returns BLOBs as strings", function()
      assert.are.equal("\1\2\0", db:query("SELECT x'010200' AS b")[1].b)
    end)

    it("names columns by their alias and keeps row order", function()
      for k = 1, 5 do db:run("INSERT INTO t (i) VALUES (?)", k) end
      local rows = db:query("SELECT i AS value FROM t ORDER BY i DESC")
      assert.are.same({{value = 5}, {value = 4}, {value = 3}, {value = 2}, {value = 1}}, rows)
    end)

    it("returns an empty array when nothing matches", function()
      assert.are.same({}, db:query("SELECT * FROM t WHERE id = ?", 42))
    end)
  end)

  describe("run", function()
    it("returns the changes and the last inserted id", function()
      local changes, id = db:run("INSERT INTO t (i) VALUES (?)", 7)
      assert.are.equal(1, changes)
      assert.are.equal(1, id)
      db:run("INSERT INTO t (i) VALUES (?)", 8)
      changes = db:run("UPDATE t SET i = i + 1")
      assert.are.equal(2, changes)
    end)
  end)

  describe("errors", function()
    it("raises SQL errors with SQLite's message", function()
      assert.has_error(function() db:query("SELECT * FROM missing") end, "no such table: missing")
      assert.has_error(function() db:exec("CREATE TABLE") end)
      db:exec("CREATE TABLE u (k TEXT PRIMARY KEY)")
      db:run("INSERT INTO u VALUES (?)", "a")
      assert.has_error(function() db:run("INSERT INTO u VALUES (?)", "a") end,
        "UNIQUE constraint failed: u.k")
    end)

    it("raises on a parameter count mismatch", function()
      assert.has_error(function() db:query("SELECT ?", 1, 2) end,
        "bad arguments to 'query' (the statement takes 1 parameter, got 2)")
      assert.has_error(function() db:run("INSERT INTO t (i, s) VALUES (?, ?)", 1) end,
        "bad arguments to 'run' (the statement takes 2 parameters, got 1)")
    end)

    it("raises on values it cannot bind", function()
      assert.has_error(function() db:query("SELECT ?", {}) end)
      assert.has_error(function() db:query("SELECT ?", true) end)
    end)

    it("refuses several statements in query and run", function()
      assert.has_error(function() db:query("SELECT 1; SELECT 2") end)
      assert.has_error(function() db:run("DELETE FROM t; DELETE FROM t") end)
      -- a trailing ';' or comment is fine
      assert.are.equal(1, db:query("SELECT 1 AS x; -- done")[1].x)
    end)

    it("raises when used after close, and close is idempotent", function()
      assert.is_true(db:close())
      assert.is_true(db:close())
      assert.has_error(function() db:query("SELECT 1") end, "attempt to use a closed database")
      db = assert(sqlite.open(":memory:")) -- for after_each
    end)

    it("raises on bad arguments to open", function()
      assert.has_error(function() sqlite.open() end)
      assert.has_error(function() sqlite.open("x", 5) end)
    end)

    it("returns nil, err when the directory is missing", function()
      local dir = tmpdir()
      local got, err = sqlite.open(dir .. "/no/such/dir/x.db")
      rmtree(dir)
      assert.is_nil(got)
      assert.are.equal("open: directory does not exist: " .. dir .. "/no/such/dir", err)
    end)

    it("creates the directory when asked to", function()
      local dir = tmpdir()
      local other = assert(sqlite.open(dir .. "/a/b/x.db", {create_dir = true}))
      other:exec("CREATE TABLE k (v)")
      other:close()
      local f = io.open(dir .. "/a/b/x.db", "rb")
      rmtree(dir)
      assert.is_not_nil(f)
      f:close()
    end)

    it("returns nil, err for a file that is not a database", function()
      local dir = tmpdir()
      local f = assert(io.open(dir .. "/junk.db", "wb"))
      f:write(string.rep("this is not sqlite\n", 100))
      f:close()
      local got, err = sqlite.open(dir .. "/junk.db")
      rmtree(dir)
      assert.is_nil(got)
      assert.matches("^corrupt: file is not a database", err)
    end)

    it("returns nil, 'busy: ...' when another connection holds the write lock", function()
      local dir = tmpdir()
      local a = assert(sqlite.open(dir .. "/x.db"))
      local b = assert(sqlite.open(dir .. "/x.db", {busy_timeout_ms = 50}))
      a:exec("CREATE TABLE k (v)")
      a:exec("BEGIN IMMEDIATE")
      local ok, err = b:run("INSERT INTO k VALUES (?)", 1)
      a:exec("ROLLBACK")
      a:close()
      b:close()
      rmtree(dir)
      assert.is_nil(ok)
      assert.matches("^busy: ", err)
    end)
  end)

  describe("transaction", function()
    it("commits and returns fn's results", function()
      local a, b = db:transaction(function(d)
        d:run("INSERT INTO t (i) VALUES (?)", 1)
        return "x", 2
      end)
      assert.are.equal("x", a)
      assert.are.equal(2, b)
      assert.are.equal(1, #db:query("SELECT * FROM t"))
      assert.is_true(db:transaction(function() end))
    end)

    it("rolls back and re-raises the same error value", function()
      db:run("INSERT INTO t (i) VALUES (?)", 1)
      local marker = {}
      local ok, err = pcall(db.transaction, db, function(d)
        d:run("INSERT INTO t (i) VALUES (?)", 2)
        d:run("UPDATE t SET i = 100")
        error(marker)
      end)
      assert.is_false(ok)
      assert.are.equal(marker, err)
      assert.are.same({{i = 1}}, db:query("SELECT i FROM t"))
    end)

    it("rolls back when an SQL error happens inside", function()
      assert.has_error(function()
        db:transaction(function(d)
          d:run("INSERT INTO t (i) VALUES (?)", 2)
          d:query("SELECT * FROM missing")
        end)
      end, "no such table: missing")
      assert.are.same({}, db:query("SELECT i FROM t"))
      -- and the connection is usable for the next transaction
      db:transaction(function(d) d:run("INSERT INTO t (i) VALUES (?)", 3) end)
      assert.are.same({{i = 3}}, db:query("SELECT i FROM t"))
    end)

    it("refuses to nest", function()
      assert.has_error(function()
        db:transaction(function(d) d:transaction(function() end) end)
      end)
      assert.are.same({}, db:query("SELECT i FROM t"))
    end)

    it("rolls back a yield inside fn instead of holding the lock", function()
      local co = coroutine.wrap(function()
        return pcall(db.transaction, db, function(d)
          d:run("INSERT INTO t (i) VALUES (?)", 1)
          coroutine.yield("yielded")
        end)
      end)
      local ok = co()
      assert.is_false(ok)
      assert.are.same({}, db:query("SELECT i FROM t"))
    end)

    it("is visible to another connection only after commit", function()
      local dir = tmpdir()
      local a = assert(sqlite.open(dir .. "/x.db"))
      local b = assert(sqlite.open(dir .. "/x.db"))
      a:exec("CREATE TABLE k (v INTEGER)")
      local seen_inside
      a:transaction(function(d)
        d:run("INSERT INTO k VALUES (?)", 1)
        seen_inside = #b:query("SELECT * FROM k")
      end)
      local seen_after = #b:query("SELECT * FROM k")
      a:close()
      b:close()
      rmtree(dir)
      assert.are.equal(0, seen_inside)
      assert.are.equal(1, seen_after)
    end)
  end)

  it("uses WAL with synchronous=FULL on files", function()
    local dir = tmpdir()
    local a = assert(sqlite.open(dir .. "/x.db"))
    local mode = a:query("PRAGMA journal_mode")[1].journal_mode
    local sync = a:query("PRAGMA synchronous")[1].synchronous
    a:close()
    rmtree(dir)
    assert.are.equal("wal", mode)
    assert.are.equal(2, sync) -- FULL
  end)

  it("closes through <close> and __gc", function()
    do
      local d <close> = assert(sqlite.open(":memory:"))
      d:exec("CREATE TABLE z (v)")
    end
    sqlite.open(":memory:")
    collectgarbage()
    collectgarbage()
  end)
end)
