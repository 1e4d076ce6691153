-- A plain pure-Lua implementation of the chunking rules of core/chunk.h: the oracle the
-- property test (spec/chunk_spec.lua) holds the C formatter to, and the Lua side of the
-- benchmark. Never used at run time. Positions are 0-based byte offsets, as in the C code;
-- at(x) is the byte at offset x. Unlike the C code it reads all lines up front.
local M = {}

local byte, sub, find = string.byte, string.sub, string.find

local TEXT, CODE, OPEN, CLOSE = 1, 2, 3, 4

local WS = { [32] = true, [9] = true, [10] = true, [13] = true, [12] = true, [11] = true }
M.WS = WS

-- Length of the well-formed UTF-8 sequence at 1-based i, or of the maximal ill-formed
-- subpart (then true).
local function seq_len(s, i)
  local c = byte(s, i)
  if c < 0x80 then return 1, false end
  local need
  local lo, hi = 0x80, 0xBF
  if c >= 0xC2 and c <= 0xDF then need = 1
  elseif c == 0xE0 then need, lo = 2, 0xA0
  elseif (c >= 0xE1 and c <= 0xEC) or c == 0xEE or c == 0xEF then need = 2
  elseif c == 0xED then need, hi = 2, 0x9F
  elseif c == 0xF0 then need, lo = 3, 0x90
  elseif c >= 0xF1 and c <= 0xF3 then need = 3
  elseif c == 0xF4 then need, hi = 3, 0x8F
  else return 1, true end
  for j = 1, need do
    local b = byte(s, i + j)
    if not b or b < lo or b > hi then return j, true end
    lo, hi = 0x80, 0xBF
  end
  return need + 1, false
end

-- The text with every maximal ill-formed subsequence replaced by U+FFFD, and the count.
function M.sanitize(s)
  local out, n, i, count, from = {}, #s, 1, 0, 1
  while true do
    local j = find(s, "[\128-\255]", i)
    if not j then break end
    local len, bad = seq_len(s, j)
    if bad then
      out[#out + 1] = sub(s, from, j - 1)
      out[#out + 1] = "\239\191\189"
      count = count + 1
      from = j + len
    end
    i = j + len
    if i > n then break end
  end
  if count == 0 then return s, 0 end
  out[#out + 1] = sub(s, from)
  return table.concat(out), count
end

local function is_cont(c) return c >= 0x80 and c < 0xC0 end

local function decode(s, x) -- code point at 0-based x
  local c = byte(s, x + 1)
  if c < 0x80 then return c end
  local b1, b2, b3 = byte(s, x + 2) or 0, byte(s, x + 3) or 0, byte(s, x + 4) or 0
  if c < 0xE0 then return (c & 0x1F) << 6 | (b1 & 0x3F) end
  if c < 0xF0 then return (c & 0x0F) << 12 | (b1 & 0x3F) << 6 | (b2 & 0x3F) end
  return (c & 0x07) << 18 | (b1 & 0x3F) << 12 | (b2 & 0x3F) << 6 | (b3 & 0x3F)
end

local function is_extend(c)
  return (c >= 0x300 and c <= 0x36F) or (c >= 0x1AB0 and c <= 0x1AFF)
    or (c >= 0x1DC0 and c <= 0x1DFF) or (c >= 0x20D0 and c <= 0x20FF)
    or (c >= 0xFE00 and c <= 0xFE0F) or (c >= 0xFE20 and c <= 0xFE2F) or c == 0x200D
    or (c >= 0x1F3FB and c <= 0x1F3FF) or (c >= 0xE0020 and c <= 0xE007F)
    or (c >= 0xE0100 and c <= 0xE01EF)
end

-- The lines of s with their fence reading.
local function read_lines(s, fmax)
  local lines, n, ls, open = {}, #s, 0, nil
  while ls < n do
    local q = find(s, "\n", ls + 1, true)
    local le = q or n
    local ce = q and q - 1 or n
    if q and ce > ls and byte(s, ce) == 13 then ce = ce - 1 end
    local l = { ls = ls, ce = ce, le = le, type = open and CODE or TEXT, f = open }
    -- fence?
    local i, cp = ls, 0
    while i < ce and cp < 3 and byte(s, i + 1) == 32 do i, cp = i + 1, cp + 1 end
    local ch = i < ce and byte(s, i + 1)
    if ch == 96 or ch == 126 then
      local j = i
      while j < ce and byte(s, j + 1) == ch do j = j + 1 end
      local k = j - i
      local total = 0
      for x = ls, ce - 1 do
        if not is_cont(byte(s, x + 1)) then total = total + 1 end
      end
      if k >= 3 and total <= fmax then
        local rest = sub(s, j + 1, ce)
        local blank = not find(rest, "[^ \t]")
        local tick = find(rest, "`", 1, true)
        if open then
          if ch == byte(s, open.run_at + 1) and k >= open.k and blank then
            l.type = CLOSE
            open = nil
          end
        elseif ch == 126 or not tick then
          local f = { os = ls, olen = ce - ls, ocp = total, run_at = i, k = k }
          l.type, l.f = OPEN, f
          open = f
        end
      end
    end
    lines[#lines + 1] = l
    ls = le
  end
  return lines
end

-- Marks (in prot) offsets strictly inside code spans and links of [from, to), up to E.
local function protect(s, prot, from, to, E)
  local function mark(a, b)
    if b > E + 1 then b = E + 1 end
    for x = a, b - 1 do prot[x] = true end
  end
  local runs = {}
  local i = from
  while i < to do
    if byte(s, i + 1) == 96 then
      local j = i
      while j < to and byte(s, j + 1) == 96 do j = j + 1 end
      runs[#runs + 1] = { at = i, len = j - i }
      i = j
    else
      i = i + 1
    end
  end
  local r = 1
  while r <= #runs do
    local m
    for q = r + 1, #runs do
      if runs[q].len == runs[r].len then m = q break end
    end
    if m then
      mark(runs[r].at + 1, runs[m].at + runs[m].len)
      r = m + 1
    else
      r = r + 1
    end
  end
  i = from
  while i < to do
    if byte(s, i + 1) ~= 91 then
      i = i + 1
    else
      local j = i + 1
      while j < to and byte(s, j + 1) ~= 91 and byte(s, j + 1) ~= 93 do j = j + 1 end
      if j + 1 < to and byte(s, j + 1) == 93 and byte(s, j + 2) == 40 then
        local m = j + 2
        while m < to and byte(s, m + 1) ~= 40 and byte(s, m + 1) ~= 41 do m = m + 1 end
        if m < to and byte(s, m + 1) == 41 then mark(i + 1, m + 1) end
      end
      i = j
    end
  end
end

-- Splits text; returns the chunk strings and, for each, its slice of the sanitised text
-- { start, stop, open_at, open_len, close_at, close_len, close_nl } (0-based, stop
-- exclusive), then the sanitised text.
function M.split(text, limit)
  limit = limit or 2000
  local s = M.sanitize(text)
  local n = #s
  local fmax = limit // 4
  local lines = read_lines(s, fmax)
  local function at(x) return byte(s, x + 1) end
  local chunks, spans = {}, {}

  local function emit(p, start_line, c)
    local sp = { start = p, stop = c.a, open_at = 0, open_len = 0, close_at = 0, close_len = 0,
                 close_nl = false }
    local parts = {}
    if start_line.type == CODE then
      sp.open_at, sp.open_len = start_line.f.os, start_line.f.olen
      parts[#parts + 1] = sub(s, sp.open_at + 1, sp.open_at + sp.open_len) .. "\n"
    end
    parts[#parts + 1] = sub(s, p + 1, c.a)
    if c.inside then
      sp.close_at, sp.close_len, sp.close_nl = c.cf.run_at, c.cf.k, c.close_nl
      parts[#parts + 1] = (c.close_nl and "\n" or "") .. sub(s, c.cf.run_at + 1, c.cf.run_at + c.cf.k)
    end
    chunks[#chunks + 1] = table.concat(parts)
    spans[#spans + 1] = sp
  end

  local function run_class(a)
    local i, nl = a, 0
    while i < n and WS[at(i)] do
      if at(i) == 10 then nl = nl + 1 end
      i = i + 1
    end
    if i >= n then return 5 end
    if nl >= 2 then return 4 elseif nl == 1 then return 3 end
    return nil
  end

  local function bad_cut(x)
    if is_extend(decode(s, x)) then return true end
    if x > 0 then
      local px = x - 1
      while px > 0 and is_cont(at(px)) do px = px - 1 end
      return decode(s, px) == 0x200D
    end
    return false
  end

  -- the next chunk starts at cur.b in line cur.li
  local cur = { b = 0, skip = true, li = 1 }
  while true do
    if cur.skip then
      local i = cur.b
      while i < n and WS[at(i)] do
        i = i + 1
        if at(i - 1) == 10 and i < n then cur.li = cur.li + 1 end
      end
      cur.b = i
    end
    if cur.b >= n then break end

    local p, start_li = cur.b, cur.li
    local start = lines[start_li]
    local prefix = start.type == CODE and start.f.ocp + 1 or 0
    local budget = limit - prefix
    local half = budget // 2
    local E, cnt = p, 0
    while E < n do
      if not is_cont(at(E)) then
        if cnt == budget then break end
        cnt = cnt + 1
      end
      E = E + 1
    end
    local prot = {}
    local best, latest, hard = {}, nil, nil
    local function consider(c)
      if c.cls >= 0 and c.cp >= half then best[c.cls] = c end
      if c.cls < 0 then hard = c end
      if not latest or c.a > latest.a or (c.a == latest.a and c.cls > latest.cls) then latest = c end
    end

    local li, pos, cp = start_li, p, 0
    local fin
    while true do
      local ln = lines[li]
      local ce, le = ln.ce, ln.le
      -- like the C code, the line end is looked for only up to E (the "\n" at most at E)
      if (le > ce and le - 1 > E) or (le == ce and n > E) then ce, le = math.huge, math.huge end
      if ln.type == TEXT or ln.type == CLOSE then
        local is_text = ln.type == TEXT
        if is_text then
          local pend = math.min(E + (E - p), n, ce)
          protect(s, prot, pos, pend, E)
        end
        local hx, hcp
        local stop = math.min(ce, E)
        for x = pos, math.min(stop, n - 1) do
          local ch = at(x)
          if not is_cont(ch) then
            if WS[ch] then
              if x > p and not WS[at(x - 1)] then
                local cls = run_class(x)
                if cls == 5 then
                  fin = { cls = 5, a = x, cp = cp }
                  break
                end
                if not cls then
                  local pc = at(x - 1)
                  cls = (is_text and prot[x]) and 0 or (pc == 46 or pc == 33 or pc == 63) and 2 or 1
                end
                consider { cls = cls, a = x, cp = cp, b = x, skip = true, li = li }
              end
            elseif is_text and x > ln.ls and x > p and x < ce then
              hx, hcp = x, cp
            end
            if x < ce and x < E then cp = cp + 1 end
          end
        end
        if fin then break end
        if hx then consider { cls = -1, a = hx, cp = hcp, b = hx, skip = true, li = li } end
        if ce > E then break end
        if ce == n then
          fin = { cls = 5, a = n, cp = cp }
          break
        end
        cp = cp + (le - ce)
        if le > E then break end
        pos, li = le, li + 1
      elseif ln.type == OPEN then
        if ce > E then break end
        for x = pos, ce - 1 do
          if not is_cont(at(x)) then cp = cp + 1 end
        end
        local ends = le > ce
        if ce == n or le == n then
          cp = cp + (le - ce)
          if cp + ln.f.k + (ends and 0 or 1) <= budget then
            fin = { cls = 5, a = n, cp = cp, inside = true, close_nl = not ends, cf = ln.f }
          end
          break
        end
        cp = cp + (le - ce)
        if le > E then break end
        pos, li = le, li + 1
      else -- CODE
        local room = budget >= 1 + ln.f.k and budget - 1 - ln.f.k or 0
        local hx, hcp
        local stop = math.min(ce, E)
        for x = pos, stop - 1 do
          if not is_cont(at(x)) then
            if x > ln.ls and x > p and cp <= room then hx, hcp = x, cp end
            cp = cp + 1
          end
        end
        if hx then
          consider { cls = -1, a = hx, cp = hcp, inside = true, close_nl = true, cf = ln.f,
                     b = hx, skip = false, li = li }
        end
        if ce > E then break end
        local ends = le > ce
        if ce == n or le == n then
          local all = cp + (le - ce)
          if all + ln.f.k + (ends and 0 or 1) <= budget then
            fin = { cls = 5, a = n, cp = all, inside = true, close_nl = not ends, cf = ln.f }
          end
          break
        end
        local nxt = lines[li + 1]
        if nxt.type == CODE and ce > p and cp <= room then
          consider { cls = 3, a = ce, cp = cp, inside = true, close_nl = true, cf = ln.f,
                     b = le, skip = false, li = li + 1 }
        end
        cp = cp + (le - ce)
        if le > E then break end
        pos, li = le, li + 1
      end
    end

    if fin then
      emit(p, start, fin)
      break
    end
    local ch
    for k = 4, 0, -1 do
      if best[k] then ch = best[k] break end
    end
    if not ch and hard and hard.cp >= half then
      local x, xcp, floor = hard.a, hard.cp, math.max(half, 1)
      local lsx = lines[hard.li].ls
      while bad_cut(x) and xcp > floor do
        local px = x - 1
        while px > 0 and is_cont(at(px)) do px = px - 1 end
        if px <= lsx then break end
        x, xcp = px, xcp - 1
      end
      if not bad_cut(x) then hard.a, hard.b, hard.cp = x, x, xcp end
      ch = hard
    end
    ch = ch or latest
    assert(ch, "no split point: the rules guarantee one")
    emit(p, start, ch)
    cur = { b = ch.b, skip = ch.skip, li = ch.li }
  end
  return chunks, spans, s
end

M.TYPES = { TEXT = TEXT, CODE = CODE, OPEN = OPEN, CLOSE = CLOSE }
M.read_lines = read_lines

return M
