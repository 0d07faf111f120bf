-- adaptive.lua: early exit and attention reuse, alone and composed with the
-- found norm functions (a replaced model) and 8-bit weights, in one table.
--
--   normlab lua samples/adaptive.lua [--model FILE] [--set FILE.exprs]
--       [--blocks LIST] [--tb none|linear|mlp] [--fit-images N]
--       [--tau T] [--exit-images N] [--exit-epochs E] [--images N]
--       [--output DIR] [--quick]
--
-- Steps (every file under --output, default out/adaptive):
--   norms    --set FILE then `normlab replace`, or `normlab adapt --budget ln
--            --sequential --calibrate 512` run here (its calibrated model);
--   W8       `normlab quantize --weights 8` of the replaced model;
--   reuse    model:reuse{blocks =, tb =} (the Lua binding of `normlab
--            reuse`: TBs fitted by least squares) on the model and on the
--            replaced W8 model, saved with the plan;
--   exits    `normlab exits fit` on the model and on the replaced W8 model
--            (the heads of a model serve its reuse variant too: same
--            weights), then `normlab exits eval --tau T`.
-- Each row: top-1 on the first --images test images, FLOPs per image
-- (matrix products; early exit: per image the blocks it ran, reuse: less
-- the plan's savings), weight bytes (as stored: `normlab cost`, less the
-- weights a plan leaves unread, at the stored width) and
-- images/s (the early-exit pass's own timing in `exits eval`, the same
-- run as its full-depth pass).
local nl = require "normlab"

local opt = {model = nl.default_model(), set = "", blocks = "4,6,7,8,9,11", tb = "linear",
             fit_images = 2000, tau = 0.95, exit_images = 3000, exit_epochs = 5, images = 2000,
             output = "out/adaptive"}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--quick" then
    opt.fit_images, opt.exit_images, opt.exit_epochs, opt.images = 200, 300, 1, 100
  elseif a:match("^%-%-") and arg[i + 1] and opt[(a:sub(3):gsub("-", "_"))] ~= nil then
    local k = a:sub(3):gsub("-", "_")
    opt[k] = type(opt[k]) == "number" and assert(tonumber(arg[i + 1]), a .. " expects a number") or arg[i + 1]
    i = i + 1
  else
    error("unknown argument '" .. a .. "' (see the head of adaptive.lua)", 0)
  end
  i = i + 1
end
if not (opt.tau >= 0 and opt.tau <= 1) then error("--tau must be in [0, 1]", 0) end
os.execute("mkdir -p '" .. opt.output .. "'")
local function out(name) return opt.output .. "/" .. name end
local function run(words) return nl.cmd(words, {capture = true}) end
local function json(words) return nl.cmd(words, {json = true}) end
local N = tostring(opt.images)

-- the models
local set, replaced = opt.set, out("replaced.safetensors")
if set == "" then
  local quick = opt.images <= 100
  local ad = {"adapt", "--model", opt.model, "--output", out("adapt"), "--budget", "ln",
              "--sequential", "--calibrate", quick and "32" or "512", "--eval-images", N}
  if quick then
    for _, w in ipairs({"--images", "16", "--points", "2000", "--pop", "40", "--gens", "3",
                        "--calibrate-epochs", "1"}) do ad[#ad + 1] = w end
  end
  run(ad)
  set = out("adapt/chosen.exprs")
  -- the calibrated model: calibration tunes the norms' numbers in the
  -- model, which chosen.exprs alone does not carry
  replaced = out("adapt/adapted.safetensors")
else
  run({"replace", "--model", opt.model, "--set", set, "--output", replaced})
end
run({"quantize", "--model", replaced, "--weights", "8", "--output", out("replaced_w8.safetensors")})

local function with_plan(src, dst)
  local m = nl.load_model(src)
  m:reuse{blocks = opt.blocks, tb = opt.tb, fit_images = opt.fit_images}
  m:save(dst)
  local plan = m:reuse_plan()
  m:close()
  return plan
end
local plan = with_plan(opt.model, out("reuse.safetensors"))
with_plan(out("replaced_w8.safetensors"), out("replaced_w8_reuse.safetensors"))

local function fit_exits(model, dst)
  run({"exits", "fit", "--model", model, "--images", tostring(opt.exit_images), "--epochs",
       tostring(opt.exit_epochs), "--holdout", "100", "--output", dst})
end
fit_exits(opt.model, out("exits.safetensors"))
fit_exits(out("replaced_w8.safetensors"), out("exits_rw8.safetensors"))

-- the rows: `exits eval` times the early-exit pass against the full pass
-- of the same model in one run; tau 1 never exits (the model itself)
local function bytes_of(model)
  local c = json({"cost", "--model", model, "--batch", "1", "--json"})
  return c.weight_bytes_with_reuse or c.total.weight_bytes
end
local function row(name, model, exits, tau)
  local e = json({"exits", "eval", "--model", model, "--exits", exits, "--tau", tostring(tau),
                  "--eval-images", N, "--batch", "64", "--any-weights", "--json"})
  local r = tau < 1 and e.exit or e.full
  return {name = name, top1 = r.top1, mflops = r.mflops_per_image,
          ips = r.images_per_second,
          blocks = r.mean_blocks, bytes = bytes_of(model)}
end
local rows = {
  row("fp32", opt.model, out("exits.safetensors"), 1),
  row(string.format("exit tau %g", opt.tau), opt.model, out("exits.safetensors"), opt.tau),
  row("reuse " .. plan.text, out("reuse.safetensors"), out("exits.safetensors"), 1),
  row("reuse + exit", out("reuse.safetensors"), out("exits.safetensors"), opt.tau),
  row("norms + W8", out("replaced_w8.safetensors"), out("exits_rw8.safetensors"), 1),
  row("norms + W8 + exit", out("replaced_w8.safetensors"), out("exits_rw8.safetensors"), opt.tau),
  row("norms + W8 + reuse", out("replaced_w8_reuse.safetensors"), out("exits_rw8.safetensors"), 1),
  row("norms + W8 + reuse + exit", out("replaced_w8_reuse.safetensors"), out("exits_rw8.safetensors"), opt.tau),
}
print(string.format("%s, %s test images; norms %s; reuse %s (TB %s); exit tau %g",
                    opt.model, N, set, plan.text, opt.tb, opt.tau))
print(string.format("%-44s %8s %7s %10s %12s %10s", "variant", "top-1", "blocks", "MFLOPs",
                    "weight bytes", "images/s"))
for _, r in ipairs(rows) do
  print(string.format("%-44s %7.2f%% %7.2f %10.3f %12.0f %10.1f", r.name:sub(1, 44), 100 * r.top1,
                      r.blocks, r.mflops, r.bytes, r.ips or 0))
end
