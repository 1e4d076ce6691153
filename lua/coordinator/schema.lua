-- A small schema language for validating plain Lua tables (the config).
--
--   local S = require "coordinator.schema"
--   local spec = S.record {
--     name = S.string { required = true },
--     tags = S.list(S.string(), { default = {} }),
--   }
--   local value, errors = S.check(spec, input, "config.lua")
--
-- `check` returns the value with defaults filled in, and a list of messages, one per
-- problem, each naming the key path: `config.lua: tags[2]: expected a string, got number`.
local M = {}

local function type_error(what, got)
  return ("expected %s, got %s"):format(what, type(got))
end

local function scalar(lua_type, what, extra)
  return function(opts)
    opts = opts or {}
    return {
      what = what,
      required = opts.required,
      default = opts.default,
      check = function(v)
        if type(v) ~= lua_type then return type_error(what, v) end
        if extra then return extra(v, opts) end
      end,
    }
  end
end

local function min_check(v, opts)
  if opts.min and v < opts.min then return ("must be at least %s, got %s"):format(opts.min, v) end
  if opts.max and v > opts.max then return ("must be at most %s, got %s"):format(opts.max, v) end
end

M.string = scalar("string", "a string", function(v, opts)
  if opts.nonempty and v == "" then return "must not be empty" end
  if opts.pattern and not v:match(opts.pattern) then
    return ("%q does not look like %s"):format(v, opts.pattern_what or opts.pattern)
  end
end)
M.boolean = scalar("boolean", "a boolean")
M.number = scalar("number", "a number", min_check)
M.integer = function(opts)
  local s = scalar("number", "an integer", function(v, o)
    if math.type(v) ~= "integer" then return type_error("an integer", v) .. " with a fraction" end
    return min_check(v, o)
  end)(opts)
  return s
end

function M.enum(values, opts)
  opts = opts or {}
  local quoted = {}
  for i, v in ipairs(values) do quoted[i] = ("%q"):format(v) end
  local what = "one of " .. table.concat(quoted, ", ")
  return {
    what = what,
    required = opts.required,
    default = opts.default,
    check = function(v)
      for _, allowed in ipairs(values) do
        if v == allowed then return nil end
      end
      if type(v) ~= "string" then return type_error(what, v) end
      return ("expected %s, got %q"):format(what, v)
    end,
  }
end

local function plural(what)
  -- "a string" -> "strings", "an integer" -> "integers", "a table" -> "tables"
  return (what:gsub("^an? ", "") .. "s")
end

local function is_list(v)
  if type(v) ~= "table" then return false end
  local n = #v
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

function M.list(item, opts)
  opts = opts or {}
  return {
    what = "a list of " .. plural(item.what),
    item = item,
    required = opts.required,
    default = opts.default,
    max = opts.max,
    kind = "list",
  }
end

-- A table from keys (checked by key_spec, a string spec) to values of value_spec.
function M.map(key_spec, value_spec, opts)
  opts = opts or {}
  return {
    what = "a table",
    key = key_spec,
    value = value_spec,
    required = opts.required,
    default = opts.default,
    kind = "map",
  }
end

function M.record(fields, opts)
  opts = opts or {}
  return {
    what = "a table",
    fields = fields,
    required = opts.required,
    default = opts.default,
    kind = "record",
  }
end

local function copy_default(d)
  if type(d) ~= "table" then return d end
  local c = {}
  for k, v in pairs(d) do c[k] = copy_default(v) end
  return c
end

local function join(path, key)
  if type(key) == "number" then return ("%s[%d]"):format(path, key) end
  if type(key) == "string" and key:match("^[%a_][%w_]*$") then
    return path == "" and key or path .. "." .. key
  end
  return ("%s[%q]"):format(path, tostring(key))
end

local validate

local function validate_fields(spec, value, path, errors)
  local unknown = {}
  for key in pairs(value) do
    if type(key) ~= "string" or not spec.fields[key] then unknown[#unknown + 1] = join(path, key) end
  end
  table.sort(unknown)
  for _, key_path in ipairs(unknown) do errors[#errors + 1] = { key_path, "unknown key" } end
  local names = {}
  for name in pairs(spec.fields) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    value[name] = validate(spec.fields[name], value[name], join(path, name), errors)
  end
end

validate = function(spec, value, path, errors)
  if value == nil then
    if spec.default ~= nil then value = copy_default(spec.default)
    elseif spec.required then
      errors[#errors + 1] = { path, "required, but missing" }
      return nil
    elseif spec.kind == "record" then value = {}
    else return nil end
  end
  if spec.kind == "record" then
    if type(value) ~= "table" then
      errors[#errors + 1] = { path, type_error("a table", value) }
      return value
    end
    validate_fields(spec, value, path, errors)
  elseif spec.kind == "list" then
    if type(value) ~= "table" then
      errors[#errors + 1] = { path, type_error(spec.what, value) }
      return value
    elseif not is_list(value) then
      errors[#errors + 1] = { path, "expected " .. spec.what .. ", got a table with other keys" }
      return value
    end
    if spec.max and #value > spec.max then
      errors[#errors + 1] = { path, ("at most %d entries, got %d"):format(spec.max, #value) }
    end
    for i = 1, #value do
      local item_errors = #errors
      local msg = spec.item.check and spec.item.check(value[i])
      if msg then errors[#errors + 1] = { join(path, i), msg }
      elseif not spec.item.check then value[i] = validate(spec.item, value[i], join(path, i), errors) end
      if #errors > item_errors then break end -- one message per list is enough
    end
  elseif spec.kind == "map" then
    if type(value) ~= "table" then
      errors[#errors + 1] = { path, type_error("a table", value) }
      return value
    end
    local keys = {}
    for k in pairs(value) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      local msg = spec.key.check(k)
      if msg then errors[#errors + 1] = { join(path, k), "key " .. msg }
      else value[k] = validate(spec.value, value[k], join(path, k), errors) end
    end
  else
    local msg = spec.check(value)
    if msg then errors[#errors + 1] = { path, msg } end
  end
  return value
end

-- Returns value (defaults filled in) and a list of "<source>: <path>: <message>" lines.
function M.check(spec, value, source)
  local raw = {}
  local result = validate(spec, value, "", raw)
  local lines = {}
  for i, e in ipairs(raw) do
    lines[i] = ("%s: %s: %s"):format(source, e[1] == "" and "(top level)" or e[1], e[2])
  end
  return result, lines
end

return M
