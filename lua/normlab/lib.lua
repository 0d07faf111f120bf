-- normlab.lib: helpers written in Lua on top of the C module.
-- require("normlab") loads this file and calls it with the module table;
-- every helper below becomes a field of `normlab`.
return function(normlab)
  -- Rows of a list indexed by a field: by_name(rows [, key]) -> {[row.key] = row}
  function normlab.by_name(rows, key)
    key = key or "name"
    local t = {}
    for _, r in ipairs(rows) do t[r[key]] = r end
    return t
  end

  -- Mean of a field over a list of rows (rows whose field is not a finite
  -- number are left out); nil when none is.
  function normlab.mean(rows, key)
    local s, n = 0, 0
    for _, r in ipairs(rows) do
      local v = key and r[key] or r
      if type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge then
        s, n = s + v, n + 1
      end
    end
    if n == 0 then return nil end
    return s / n
  end

  -- Format a table of rows as text.
  --   columns: list of {key, title [, fmt]} (fmt: a string.format pattern
  --   or a function(value, row) -> string; default "%s")
  -- Numbers are right-aligned, everything else left-aligned; widths count
  -- characters, not bytes (a title "val R²" is 6 wide).
  function normlab.format_table(rows, columns)
    local function cols(s) return utf8.len(s) or #s end
    local cells, width, right = {}, {}, {}
    for j, c in ipairs(columns) do width[j] = cols(c[2] or c[1]) end
    for i, r in ipairs(rows) do
      cells[i] = {}
      for j, c in ipairs(columns) do
        local v, s = r[c[1]], nil
        local f = c[3]
        if v == nil then
          s = "-"
        elseif type(f) == "function" then
          s = f(v, r)
        elseif f then
          s = string.format(f, v)
        else
          s = tostring(v)
        end
        if type(v) == "number" then right[j] = true end
        cells[i][j] = s
        if cols(s) > width[j] then width[j] = cols(s) end
      end
    end
    local out = {}
    local function line(vals)
      local parts = {}
      for j, s in ipairs(vals) do
        local pad = string.rep(" ", width[j] - cols(s))
        parts[j] = right[j] and pad .. s or s .. pad
      end
      out[#out + 1] = (table.concat(parts, "  "):gsub("%s+$", ""))
    end
    local titles = {}
    for j, c in ipairs(columns) do titles[j] = c[2] or c[1] end
    line(titles)
    for _, r in ipairs(cells) do line(r) end
    return table.concat(out, "\n") .. "\n"
  end

  function normlab.print_table(rows, columns)
    io.write(normlab.format_table(rows, columns))
  end

  -- Cost of an expression set at width d, beside LayerNorm and DyT, per
  -- token of every layer: budget(set, d [, tokens]) ->
  --   {rows = { {layer, per_element, flops, bytes}, ... },
  --    set = {flops, bytes}, layernorm = {flops, bytes}, dyt = {flops, bytes},
  --    per_image = {set=, layernorm=, dyt=} (when tokens is given)}
  -- FLOPs and bytes are summed over the layers (per token).
  function normlab.budget(set, d, tokens)
    local c = set:cost(d)
    local n = #set
    local ln, dyt = normlab.cost_layernorm(d), normlab.cost_dyt(d)
    local b = {
      rows = {},
      set = {flops = c.total_flops, bytes = c.total_bytes},
      layernorm = {flops = ln.flops * n, bytes = ln.bytes * n},
      dyt = {flops = dyt.flops * n, bytes = dyt.bytes * n},
      layers = n, d = d,
    }
    for i, r in ipairs(c) do b.rows[i] = r end
    if tokens then
      b.per_image = {set = b.set.flops * tokens, layernorm = b.layernorm.flops * tokens,
                     dyt = b.dyt.flops * tokens}
    end
    return b
  end

  -- Run fn(...) and return its results, or nil and the error message
  -- (for steps a script may skip).
  function normlab.try(fn, ...)
    local r = table.pack(pcall(fn, ...))
    if r[1] then return table.unpack(r, 2, r.n) end
    return nil, r[2]
  end

  -- A fresh directory under $TMPDIR (or /tmp) for a script's files.
  function normlab.tmpdir(prefix)
    local base = os.getenv("TMPDIR") or "/tmp"
    local name = os.tmpname()
    os.remove(name)
    local dir = base .. "/" .. (prefix or "normlab") .. "-" .. name:match("([^/]+)$")
    assert(os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'"), "cannot create " .. dir)
    return dir
  end

  normlab.lib_version = 1
end
