-- Property test of core.chunk: thousands of random markdown documents, each split by the
-- C formatter and by the pure-Lua reference (spec/chunk_reference.lua); the two must agree
-- exactly and every rule of core/chunk.h must hold.
local core = require "core"
local ref = require "chunk_reference"

local T = ref.TYPES
local WS = ref.WS

-- A small deterministic generator (xorshift), so a failure names a reproducible seed.
local function rng(seed)
  local x = seed * 2654435761 % 4294967296 + 1
  return function(a, b)
    x = x ~ (x << 13) & 0xFFFFFFFF
    x = x ~ (x >> 17)
    x = x ~ (x << 5) & 0xFFFFFFFF
    return a + x % (b - a + 1)
  end
end

local WORDS = { "the", "a", "reply", "function", "returns", "value", "when", "it", "is", "and",
  "caf\u{E9}", "na\u{EF}ve", "\u{4E2D}\u{6587}", "\u{1F600}", "\u{1F44D}\u{1F3FD}",
  "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}", "e\u{301}t\u{E9}", "\u{5B57}", "\u{2014}",
  "`code`", "`a b`", "``x ` y``", "[link](http://e.x/a)", "[two words](u)", "**bold**", "x.",
  "end!", "why?", "\u{1F1EB}\u{1F1F7}", "1.", "-", "*" }

local FENCE_LANGS = { "", "python", "lua", " c", "js title=\"x\"", "sh", "diff" }

local function gen_doc(r)
  local out = {}
  local function add(s) out[#out + 1] = s end
  local nl = r(1, 6) == 1 and "\r\n" or "\n"
  local blocks = r(1, 12)
  for _ = 1, blocks do
    local kind = r(1, 12)
    if kind <= 5 then -- a paragraph
      local words = r(1, 60)
      for w = 1, words do
        add(WORDS[r(1, #WORDS)])
        local sep = r(1, 20)
        if w == words then break end
        add(sep == 1 and nl or sep == 2 and "  " or sep == 3 and "\t" or sep == 4 and ". " or " ")
      end
      add(nl)
      if r(1, 2) == 1 then add(nl) end
    elseif kind == 6 then -- a list
      for _ = 1, r(1, 6) do add("- " .. WORDS[r(1, #WORDS)] .. " " .. WORDS[r(1, #WORDS)] .. nl) end
    elseif kind == 7 then -- a long word or line
      add(string.rep(string.char(r(97, 122)), r(20, 700)))
      add(nl)
    elseif kind <= 10 then -- a fenced block
      local ch = r(1, 4) == 1 and "~" or "`"
      local len = r(3, 5)
      local fence = string.rep(ch, len)
      add(string.rep(" ", r(0, 4) == 4 and 4 or r(0, 1)) .. fence .. FENCE_LANGS[r(1, #FENCE_LANGS)] .. nl)
      for _ = 1, r(0, 12) do
        local line = r(1, 8)
        if line == 1 then add(string.rep(ch, r(3, len + 1))) -- may close (long enough) or not
        elseif line == 2 then add(string.rep(ch == "~" and "`" or "~", 3)) -- the other kind
        elseif line == 3 then add("")
        elseif line == 4 then add("    " .. WORDS[r(1, #WORDS)] .. "  ")
        else add("  x = " .. WORDS[r(1, #WORDS)] .. "(" .. r(1, 99) .. ")") end
        add(nl)
      end
      if r(1, 5) > 1 then add(fence .. (r(1, 4) == 1 and ch .. "  " or "") .. nl) end -- else unclosed
    elseif kind == 11 then -- whitespace noise
      add(string.rep(r(1, 2) == 1 and nl or " ", r(1, 8)))
    else -- odd bytes: invalid UTF-8 and controls
      local bytes = { "\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xf0\x9f\x98", "\0", "\r", "\x80" }
      add("odd" .. bytes[r(1, #bytes)] .. "bytes" .. nl)
    end
  end
  return table.concat(out)
end

local function is_blank(s) return not s:find("[^ \t\r\n\f\v]") end

-- Every rule, on the reference's spans (the C strings are equal to the reference's).
local function check_rules(input, limit, chunks, spans, s)
  local msg
  local function fail(m) msg = msg or m end
  local lines = ref.read_lines(s, limit // 4)
  local function line_of(x)
    local lo, hi = 1, #lines
    while lo < hi do
      local mid = (lo + hi + 1) // 2
      if lines[mid].ls <= x then lo = mid else hi = mid - 1 end
    end
    return lines[lo]
  end
  local function inside(x)
    if #lines == 0 then return false end
    if x >= #s then
      local l = lines[#lines]
      return l.type == T.CODE or l.type == T.OPEN, l.f
    end
    local l = line_of(x)
    return l.type == T.CODE, l.f
  end
  if utf8.len(input) and s ~= input then fail("valid input changed by sanitising") end
  if not utf8.len(s) then fail("sanitised text is not UTF-8") end
  local prev = 0
  local rebuilt = {}
  for i, c in ipairs(chunks) do
    local sp = spans[i]
    local n = utf8.len(c)
    if not n then fail("chunk " .. i .. " is not valid UTF-8") end
    if n and n > limit then fail("chunk " .. i .. " has " .. n .. " code points") end
    if is_blank(c) then fail("chunk " .. i .. " is empty or blank") end
    local gap = s:sub(prev + 1, sp.start)
    if not is_blank(gap) then fail("chunk " .. i .. ": text other than whitespace dropped") end
    local in_start, fs = inside(sp.start)
    if in_start and i > 1 and not (gap == "" or gap == "\n" or gap == "\r\n") then
      fail("chunk " .. i .. ": more than one line ending dropped in code")
    end
    if not in_start and WS[s:byte(sp.start + 1)] then fail("chunk " .. i .. " starts with whitespace") end
    if in_start ~= (sp.open_len > 0) then fail("chunk " .. i .. ": reopening wrong") end
    if in_start and (sp.open_at ~= fs.os or sp.open_len ~= fs.olen) then
      fail("chunk " .. i .. ": reopened line is not the opening line")
    end
    local in_end, fe = inside(sp.stop)
    if in_end ~= (sp.close_len > 0) then fail("chunk " .. i .. ": closing wrong") end
    if in_end and (sp.close_at ~= fe.run_at or sp.close_len ~= fe.k) then
      fail("chunk " .. i .. ": closing run differs from the opening one")
    end
    -- the chunk is exactly: reopened line, the slice, the closing run
    local body = s:sub(sp.start + 1, sp.stop)
    local want = (sp.open_len > 0 and s:sub(sp.open_at + 1, sp.open_at + sp.open_len) .. "\n" or "")
      .. body .. (sp.close_len > 0 and (sp.close_nl and "\n" or "") ..
        s:sub(sp.close_at + 1, sp.close_at + sp.close_len) or "")
    if want ~= c then fail("chunk " .. i .. " is not its slice plus fences") end
    rebuilt[#rebuilt + 1] = gap
    rebuilt[#rebuilt + 1] = body
    prev = sp.stop
  end
  local tail = s:sub(prev + 1)
  if not is_blank(tail) then fail("text after the last chunk dropped") end
  rebuilt[#rebuilt + 1] = tail
  if table.concat(rebuilt) ~= s then fail("chunks and dropped whitespace do not rebuild the input") end
  if #chunks == 0 and not is_blank(s) then fail("no chunks for a non-blank input") end
  return msg
end

local seen = { reopened = 0, chunks = 0, replaced = 0 }

local function compare(input, limit)
  local c_chunks = core.chunk(input, { limit = limit })
  local l_chunks, spans, s = ref.split(input, limit)
  seen.chunks = seen.chunks + #spans
  for _, sp in ipairs(spans) do
    if sp.open_len > 0 then seen.reopened = seen.reopened + 1 end
  end
  if s ~= input then seen.replaced = seen.replaced + 1 end
  local same = #c_chunks == #l_chunks
  for i = 1, math.max(#c_chunks, #l_chunks) do
    if c_chunks[i] ~= l_chunks[i] then
      same = false
      break
    end
  end
  if not same then return "C and Lua differ" end
  return check_rules(input, limit, l_chunks, spans, s)
end

describe("core.chunk", function()
  it("agrees with the Lua reference on hand-picked inputs", function()
    for _, case in ipairs {
      { "", 10 }, { "   \n", 10 }, { "hello world", 5 }, { "```\ncode\n", 12 },
      { "````\n```\nx\n```\n````", 16 }, { "a\r\n\r\nb", 1 }, { string.rep("x", 10000), 2000 },
      { "``` a`b\ncode", 40 }, { "\xff\xfe", 1 },
    } do
      assert.is_nil(compare(case[1], case[2]), ("%q"):format(case[1]))
    end
  end)

  it("returns the default 2000 code point chunks and validates opts", function()
    local long = string.rep("word ", 1000)
    local chunks = core.chunk(long)
    assert.equal(3, #chunks)
    assert.is_true(utf8.len(chunks[1]) <= 2000)
    assert.same({}, core.chunk("  \n "))
    assert.has_error(function() core.chunk("x", { limit = 0 }) end)
    assert.has_error(function() core.chunk("x", { limit = 1.5 }) end)
    assert.has_error(function() core.chunk(nil) end)
  end)

  it("agrees with the reference and keeps every rule on random documents", function()
    local docs = tonumber(os.getenv("CHUNK_SPEC_DOCS") or "") or 3000
    for seed = 1, docs do
      local r = rng(seed)
      local doc = gen_doc(r)
      local pick = r(1, 10)
      local limit = pick <= 6 and r(12, 120) or pick <= 8 and r(1, 11) or pick == 9 and r(120, 600) or 2000
      local err = compare(doc, limit)
      if err then
        error(("seed %d, limit %d: %s\ninput: %q"):format(seed, limit, err, doc))
      end
    end
    -- the documents do exercise the interesting paths
    if docs >= 3000 then
      assert.is_true(seen.chunks > 20 * docs, "chunks: " .. seen.chunks)
      assert.is_true(seen.reopened > docs, "reopened blocks: " .. seen.reopened)
      assert.is_true(seen.replaced > docs // 10, "inputs with invalid UTF-8: " .. seen.replaced)
    end
  end)

  it("agrees with the reference on long documents at the default limit", function()
    for seed = 1, 30 do
      local r = rng(100000 + seed)
      local parts = {}
      for i = 1, 12 do parts[i] = gen_doc(r) end
      local doc = table.concat(parts, "\n\n")
      assert.is_nil(compare(doc, 2000), "seed " .. seed)
    end
  end)
end)
