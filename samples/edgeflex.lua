-- edgeflex.lua: the EdgeFlex pipeline on one model, without retraining:
-- profile the activations, prune the lowest-variance MLP channels (with
-- bias compensation), quantize (W8A8 SmoothQuant by default), optionally
-- replace the norms, and evaluate each step.
--
--   normlab lua samples/edgeflex.lua [--model FILE] [--ratio R]
--       [--weights 8|4] [--acts 8|0] [--group G] [--method rtn|awq]
--       [--set SPEC] [--images N] [--profile-images N] [--calib-images N]
--       [--seconds S] [--output DIR] [--quick] [--fit compensate|refit]
--
-- --fit refit: the prune refits fc2 on the kept channels by least squares
-- (prune --refit; the profile is made with --cov) instead of bias
-- compensation.
--
-- Prints the per-block budget table (normlab cost --model, per image at
-- batch 1: FLOPs, parameters, bytes read with the weights at their stored
-- width) of the model as given and after the last step, then one row per
-- step: top-1 on the first --images test images, latency per image at
-- batch 1 and 64 (bench forward), model bytes (every tensor at its stored
-- width) and the peak resident memory of an eval of the step's model in a
-- process of its own (/usr/bin/time -f %M; "-" where that tool is missing).
-- Writes DIR/profile.safetensors, DIR/pruned.safetensors,
-- DIR/quantized.safetensors (and DIR/replaced.safetensors with --set).
local nl = require "normlab"

local opt = {model = nl.default_model(), ratio = 0.6, weights = 8, acts = 8, group = 0,
             method = "rtn", set = "", images = 500, profile_images = 256, calib_images = 32,
             seconds = 1, output = "out/edgeflex", fit = "compensate"}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--quick" then
    opt.images, opt.profile_images, opt.calib_images, opt.seconds = 100, 32, 8, 0.2
  elseif a:match("^%-%-") and arg[i + 1] and opt[(a:sub(3):gsub("-", "_"))] ~= nil then
    local k = a:sub(3):gsub("-", "_")
    opt[k] = type(opt[k]) == "number" and assert(tonumber(arg[i + 1]), a .. " expects a number") or arg[i + 1]
    i = i + 1
  else
    error("unknown argument '" .. a .. "' (see the head of edgeflex.lua)", 0)
  end
  i = i + 1
end
if opt.fit ~= "compensate" and opt.fit ~= "refit" then
  error("--fit " .. tostring(opt.fit) .. ": want compensate or refit", 0)
end
if opt.acts == 8 and (opt.weights ~= 8 or opt.method ~= "rtn") then
  error("--acts 8 (W8A8 SmoothQuant) needs --weights 8 --method rtn; give --acts 0 for weight-only", 0)
end
os.execute("mkdir -p '" .. opt.output .. "'")
local function out(name) return opt.output .. "/" .. name end
local function run(words) return nl.cmd(words, {capture = true}) end
local function json(words) return nl.cmd(words, {json = true}) end

-- the normlab binary running this script (the parent of a popen'd shell),
-- for the peak memory of an eval in a process of its own
local exe do
  local p = io.popen("readlink /proc/$PPID/exe 2>/dev/null")
  exe = p and p:read("l") or nil
  if p then p:close() end
end
local have_time = os.execute("test -x /usr/bin/time") == true
local function peak_kb(model)
  if not (exe and have_time) then return nil end
  local p = io.popen(string.format("/usr/bin/time -f 'peak %%M' '%s' eval --model '%s' --images %d --batch 100 --json 2>&1 >/dev/null",
                                   exe, model, opt.images))
  local text = p:read("a")
  p:close()
  return tonumber(text:match("peak (%d+)%s*$"))
end

local function measure(name, model)
  local ev = json({"eval", "--model", model, "--images", tostring(opt.images), "--batch", "100", "--json"})
  local lat = {}
  local bytes
  for _, b in ipairs({1, 64}) do
    local bf = json({"bench", "forward", "--model", model, "--batch", tostring(b), "--seconds",
                     tostring(opt.seconds), "--json"})
    lat[b] = 1e3 / bf.images_per_second -- ms per image
    bytes = bf.model_bytes
  end
  return {name = name, model = model, top1 = ev.top1, images = ev.images, ms1 = lat[1],
          ms64 = lat[64], bytes = bytes, peak = peak_kb(model)}
end

local function cost(model)
  return json({"cost", "--model", model, "--batch", "1", "--json"})
end

-- the pipeline
local steps = {}
steps[#steps + 1] = measure("fp32", opt.model)
local before = cost(opt.model)
local refit = opt.fit == "refit"
run({"profile", "--model", opt.model, "--images", tostring(opt.profile_images), "--output", out("profile.safetensors"),
     refit and "--cov" or nil})
run({"prune", "--model", opt.model, "--ratio", tostring(opt.ratio), "--score", "variance", "--profile",
     out("profile.safetensors"), "--output", out("pruned.safetensors"), refit and "--refit" or nil})
steps[#steps + 1] = measure(string.format("prune %g", opt.ratio), out("pruned.safetensors"))
local q = {"quantize", "--model", out("pruned.safetensors"), "--weights", tostring(opt.weights), "--method",
           opt.method, "--images", tostring(opt.calib_images), "--output", out("quantized.safetensors")}
if opt.group > 0 then q[#q + 1] = "--group"; q[#q + 1] = tostring(opt.group) end
if opt.acts == 8 then q[#q + 1] = "--acts"; q[#q + 1] = "8"; q[#q + 1] = "--smooth"; q[#q + 1] = "0.5" end
run(q)
local last = out("quantized.safetensors")
steps[#steps + 1] = measure(opt.acts == 8 and "+ W8A8" or string.format("+ W%d", opt.weights), last)
if opt.set ~= "" then
  run({"replace", "--model", last, "--set", opt.set, "--output", out("replaced.safetensors")})
  last = out("replaced.safetensors")
  steps[#steps + 1] = measure("+ norms " .. opt.set, last)
end
local after = cost(last)

-- the per-block budget table, before and after
local function group3(v)
  local s = string.format("%.0f", v)
  local k
  repeat s, k = s:gsub("^(-?%d+)(%d%d%d)", "%1,%2") until k == 0
  return s
end
print(string.format("budget per image at batch 1: before = %s, after = %s", opt.model, last))
print(string.format("%-12s %14s %14s %11s %11s %12s %12s", "part", "FLOPs before", "FLOPs after",
                    "params bef", "params aft", "bytes before", "bytes after"))
local function row(name, b, a)
  print(string.format("%-12s %14s %14s %11s %11s %12s %12s", name, group3(b.flops), group3(a.flops),
                      group3(b.params), group3(a.params), group3(b.bytes), group3(a.bytes)))
end
for k, b in ipairs(before.parts) do row(b.part, b, after.parts[k]) end
row("total", before.total, after.total)
print()
print(string.format("steps (top-1 on %d test images; latency per image; peak RSS of an eval process):", steps[1].images))
print(string.format("%-16s %8s %10s %10s %12s %10s", "step", "top-1", "ms@1", "ms@64", "model bytes", "peak KB"))
for _, s in ipairs(steps) do
  print(string.format("%-16s %7.2f%% %10.3f %10.4f %12s %10s", s.name, 100 * s.top1, s.ms1, s.ms64,
                      group3(s.bytes), s.peak and group3(s.peak) or "-"))
end
local f, l = steps[1], steps[#steps]
print(string.format("last against fp32: model bytes x%.3f, peak memory %s, latency at batch 1 x%.2f faster, at 64 x%.2f, top-1 %+.2f points",
                    l.bytes / f.bytes,
                    (f.peak and l.peak) and string.format("%+.1f %%", 100 * (l.peak / f.peak - 1)) or "-",
                    f.ms1 / l.ms1, f.ms64 / l.ms64, 100 * (l.top1 - f.top1)))
