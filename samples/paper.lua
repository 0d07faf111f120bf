-- paper.lua: the paper's full experiment on one model (Carrigg et al.
-- 2026): extract the LayerNorm mappings (64 images, 50,000 points per
-- layer), the DyT table, a GP search of every layer with the paper's
-- settings over several seeds, the choice of one function per layer under
-- a FLOP budget, the cost of the set against LayerNorm and DyT, the
-- replacement and the three re-alignments (A: affine only, F: full, D:
-- full with distillation from the original model), and a final report
-- like the paper's Table 1 (fit per layer), Table 2 (accuracy) and the
-- cost comparison.
--
--   normlab lua samples/paper.lua [--model FILE] [--seeds N] [--pop N]
--       [--gens N] [--images N] [--points N] [--eval-images N] [--epochs N]
--       [--budget FLOPS] [--train-images N] [--lr X] [--output DIR] [--quick]
--
-- --seeds: independent searches per layer (the paper: 5); --budget: the
-- most FLOPs per element a chosen function may cost (default 24, DyT's
-- cost: never more expensive than DyT); --eval-images: test images for the
-- accuracies (0: all 10,000); --train-images: training images per
-- re-alignment epoch (0: all 60,000); --lr: learning rate of the full
-- re-alignments (the affine ones use 10x); --quick scales everything down
-- (tests). Table 2 has top-1 / top-5 at epoch 0 (right after the
-- replacement) and after every epoch, for the LayerNorm fine-tune
-- baseline, DyT-A (alpha 0.5), GP-A, GP-F and GP-D.
-- OUTPUT gets maps.safetensors, chosen.exprs (the budgeted choice) and
-- best.exprs (the lowest validation fitness per layer, any cost).
local nl = require "normlab"

local opt = {model = nl.default_model(), seeds = 5, pop = 500, gens = 50, images = 64, points = 50000,
             eval_images = 0, epochs = 3, budget = 24, output = "out/paper", train_images = 0, lr = 1e-4}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--quick" then
    opt.seeds, opt.pop, opt.gens, opt.images, opt.points, opt.eval_images, opt.epochs = 2, 16, 2, 8, 3000, 300, 1
    opt.train_images = 256
  elseif a:match("^%-%-") and arg[i + 1] and opt[a:sub(3):gsub("-", "_")] ~= nil then
    local k = a:sub(3):gsub("-", "_")
    opt[k] = type(opt[k]) == "number" and assert(tonumber(arg[i + 1]), a .. " expects a number") or arg[i + 1]
    i = i + 1
  else
    error("unknown argument '" .. a .. "' (see the head of paper.lua)", 0)
  end
  i = i + 1
end
os.execute("mkdir -p '" .. opt.output .. "'")
local function step(s) io.stderr:write("== " .. s .. "\n") end
local function pct(v) return v and string.format("%.2f", 100 * v) or "-" end

local model = nl.load_model(opt.model)
local info = model:info()
local d, tokens = info.embed_dim, info.tokens

step("accuracy of the model as trained")
local acc = {{method = "LayerNorm (as trained)", top1 = model:eval{images = opt.eval_images}.top1}}

step(string.format("extract: %d images, %d points per layer", opt.images, opt.points))
local maps_file = opt.output .. "/maps.safetensors"
local maps = model:extract{offset = 100, images = opt.images, points = opt.points, seed = 42, output = maps_file}

step("DyT baseline")
local dyt = maps:dyt()
local dm = nl.load_model(opt.model)
for _, r in ipairs(dyt) do dm:set_norm(r.name, r.alpha) end
acc[#acc + 1] = {method = "DyT, least-squares alpha, no re-alignment", top1 = dm:eval{images = opt.eval_images}.top1}
dm = nil

step(string.format("GP search: %d layers x %d seeds, population %d, %d generations", #maps, opt.seeds, opt.pop, opt.gens))
-- in memory (every member of every front comes back); the campaign files
-- of 'normlab evolve' are written with output = DIR instead
local res = nl.evolve(maps, {seeds = opt.seeds, pop = opt.pop, gens = opt.gens, on_generation = function(g)
  if g.gen == g.gens then io.stderr:write(string.format("  [%d/%d] %s seed %d: best F %.4g\n", g.task, g.ntasks, g.layer, g.seed, g.best_fitness)) end
end})

step(string.format("choose: per layer the lowest validation fitness within %g FLOPs per element", opt.budget))
local chosen = nl.exprset()
local table1 = {}
local by = nl.by_name(res.layers)
for _, r in ipairs(dyt) do
  local L = by[r.name]
  local best
  for _, m in ipairs(L and L.front or {}) do
    if m.flops <= opt.budget and (not best or m.val_fitness < best.val_fitness) then best = m end
  end
  if best then chosen[r.name] = best.expr end
  table1[#table1 + 1] = {layer = r.name, dyt = r.r2, gp = L and L.val_r2, chosen = best and best.val_r2,
                         bound = r.bound_r2, flops = best and best.flops,
                         expr = best and best.expr:tostring("short") or "(LayerNorm kept: nothing within budget)"}
end
chosen:save(opt.output .. "/chosen.exprs")
res.set:save(opt.output .. "/best.exprs")

local gp = nl.load_model(opt.model)
gp:apply(chosen)
acc[#acc + 1] = {method = "GP functions, no re-alignment", top1 = gp:eval{images = opt.eval_images}.top1}
gp = nil

step("replace and re-align")
local notes, table2 = {}, {}
local function realign(name, start, variant, lr, extra)
  step("re-align: " .. name)
  local t = {variant = variant, epochs = opt.epochs, lr = lr, images = opt.train_images, eval_images = opt.eval_images,
             batch = 128, warmup = 10, output = opt.output .. "/realign_" .. name:gsub("[^%w]", "_")}
  for k, v in pairs(extra or {}) do t[k] = v end
  local _, log = start:train(t)
  for _, e in ipairs(log.epochs) do
    table2[#table2 + 1] = {method = name, epoch = e.epoch, top1 = e.top1, top5 = e.top5,
                           loss = e.loss}
  end
end
if nl.has_command("train") then
  local replaced = model:replace(chosen, {output = opt.output .. "/replaced.safetensors"})
  realign("LN fine-tune", model, "F", opt.lr)
  realign("DyT-A", model:replace(0.5), "A", 10 * opt.lr, {lr_alpha = 100 * opt.lr})
  realign("GP-A", replaced, "A", 10 * opt.lr)
  realign("GP-F", replaced, "F", opt.lr)
  realign("GP-D", replaced, "D", opt.lr, {teacher = model})
else
  notes[#notes + 1] = "this build has no train command: re-alignment A/F/D skipped"
end

print(string.format("\n%s: width %d, %d norm layers; %d images x %d points; GP: %d seeds, population %d, %d generations\n",
  opt.model, d, #maps, opt.images, opt.points, opt.seeds, opt.pop, opt.gens))
print("Table 1: fit of the pre-affine LayerNorm map per layer (validation R²)")
nl.print_table(table1, {{"layer"}, {"dyt", "DyT", "%.4f"}, {"gp", "GP best", "%.4f"}, {"chosen", "GP chosen", "%.4f"},
                        {"bound", "bound", "%.4f"}, {"flops", "FLOPs/el"}, {"expr", "chosen expression"}})
print(string.format("mean: DyT %.4f, GP best %.4f, GP chosen %.4f, bound %.4f\n", dyt.mean_r2,
  nl.mean(table1, "gp") or 0, nl.mean(table1, "chosen") or 0, dyt.mean_bound_r2))
print(string.format("Table 2: top-1 accuracy (%%) on %s Fashion-MNIST test images", opt.eval_images > 0 and tostring(opt.eval_images) or "all 10,000"))
nl.print_table(acc, {{"method"}, {"top1", "top-1", pct}})
if #table2 > 0 then
  print(string.format("\nRe-alignment: top-1 / top-5 (%%) after each epoch (epoch 0: right after the replacement; " ..
                      "%s training images per epoch)", opt.train_images > 0 and tostring(opt.train_images) or "all 60,000"))
  nl.print_table(table2, {{"method"}, {"epoch", "epoch"}, {"loss", "train loss", "%.4f"}, {"top1", "top-1", pct},
                          {"top5", "top-5", pct}})
end
for _, n in ipairs(notes) do print("note: " .. n) end
local b = nl.budget(chosen, d, tokens)
local kept = #maps - #chosen
local ln1 = nl.cost_layernorm(d)
print(string.format("\nCost of the norms (d = %d, %d tokens per image; %d layer(s) kept as LayerNorm)", d, tokens, kept))
nl.print_table({
  {what = "LayerNorm", flops = b.layernorm.flops + kept * ln1.flops, bytes = b.layernorm.bytes + kept * ln1.bytes, passes = 2},
  {what = "DyT", flops = b.dyt.flops + kept * ln1.flops, bytes = b.dyt.bytes + kept * ln1.bytes, passes = 1},
  {what = "GP set", flops = b.set.flops + kept * ln1.flops, bytes = b.set.bytes + kept * ln1.bytes, passes = 1},
}, {{"what", "all norms"}, {"flops", "FLOPs/token", "%.0f"}, {"bytes", "bytes/token", "%.0f"},
    {"passes", "passes over memory"}})
print("(LayerNorm: 5d+2 FLOPs and 8d bytes per token, a reduction then a second pass; DyT 24d FLOPs, 4d bytes;\n" ..
      " an expression: its FLOPs per element times d, 4d bytes, one pass)")
