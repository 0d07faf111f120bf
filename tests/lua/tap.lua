-- A tiny TAP emitter for the Lua tests: ok, close, raises, skip, done.
local T = {n = 0, failed = 0}

function T.ok(cond, desc)
  T.n = T.n + 1
  print(string.format("%s %d - %s", cond and "ok" or "not ok", T.n, desc))
  if not cond then T.failed = T.failed + 1 end
  return cond
end

-- |a - b| <= tol * max(1, |b|)
function T.close(a, b, tol, desc)
  local good = type(a) == "number" and type(b) == "number" and
               math.abs(a - b) <= tol * math.max(1, math.abs(b))
  if not T.ok(good, desc) then print(string.format("# got %s, wanted %s (tol %g)", tostring(a), tostring(b), tol)) end
  return good
end

-- fn(...) must raise an error matching pattern (plain find)
function T.raises(pattern, desc, fn, ...)
  local ok, err = pcall(fn, ...)
  local good = not ok and tostring(err):find(pattern, 1, true) ~= nil
  if not T.ok(good, desc) then print("# " .. (ok and "no error" or tostring(err)):gsub("\n", "\n# ")) end
  return good, err
end

function T.skip(desc, why)
  T.n = T.n + 1
  print(string.format("ok %d # SKIP %s: %s", T.n, desc, why))
end

function T.quick() return os.getenv("NL_TEST_QUICK") == "1" end

function T.fixtures()
  local d = os.getenv("NL_FIXTURES")
  if not d then
    local src = os.getenv("NL_SRCDIR") or "."
    d = src .. "/../shared/fixtures/timm"
  end
  return d
end

function T.srcdir() return os.getenv("NL_SRCDIR") or "." end

function T.done()
  print("1.." .. T.n)
  os.exit(T.failed == 0 and 0 or 1, true) -- close the state: every __gc runs (ASan checks them)
end

return T
