-- quickstart.lua: the main job on the bundled model in a few minutes on
-- two cores. Extraction, the DyT table, a short search over all layers,
-- R² of the search against DyT and the bound, the cost table, PNG plots,
-- the accuracy with the found functions, and (when this build has the
-- replace and train commands) the replacement and a short re-alignment.
--
--   normlab lua samples/quickstart.lua [--output DIR] [--model FILE]
--        [--pop N] [--gens N] [--quick]
-- --quick scales everything down to a few seconds (tests).
local nl = require "normlab"

local opt = {output = "out/quickstart", model = nl.default_model(), pop = 200, gens = 20,
             images = 64, points = 50000, eval_images = 0, epochs = 1, train_images = 20000}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--quick" then
    opt.quick, opt.pop, opt.gens, opt.images, opt.points, opt.eval_images = true, 20, 2, 8, 4000, 500
    opt.train_images = 256
  elseif a:match("^%-%-") and arg[i + 1] and opt[a:sub(3):gsub("-", "_")] ~= nil then
    local k = a:sub(3):gsub("-", "_")
    opt[k] = type(opt[k]) == "number" and assert(tonumber(arg[i + 1]), a .. " expects a number") or arg[i + 1]
    i = i + 1
  else
    error("unknown argument '" .. a .. "' (see the head of quickstart.lua)", 0)
  end
  i = i + 1
end
os.execute("mkdir -p '" .. opt.output .. "'")
local function step(s) print("\n== " .. s .. " ==") end
local function pct(v) return string.format("%.2f %%", 100 * v) end

step("the bundled model")
local model = nl.load_model(opt.model)
local info = model:info()
print(string.format("%s: width %d, depth %d, %d heads, %d tokens, %d norm layers, %d parameters",
  opt.model, info.embed_dim, info.depth, info.num_heads, info.tokens, #info.norm_layers, info.parameters))

step("accuracy on the Fashion-MNIST test set, LayerNorm as trained")
local base = model:eval{images = opt.eval_images}
print(string.format("top-1 %s, top-5 %s on %d images", pct(base.top1), pct(base.top5), base.images))

step(string.format("LayerNorm mappings: %d test images, %d points per layer", opt.images, opt.points))
local maps_file = opt.output .. "/maps.safetensors"
local maps = model:extract{offset = 100, images = opt.images, points = opt.points, seed = 42, output = maps_file}
print(string.format("%d layers -> %s", #maps, maps_file))

step("DyT baseline per layer, beside the best any f(x) can do")
local dyt = maps:dyt()
print(string.format("mean DyT R² %.4f, mean bound R² %.4f", dyt.mean_r2, dyt.mean_bound_r2))

step(string.format("a short search over all %d layers (population %d, %d generations, 1 seed)", #maps, opt.pop, opt.gens))
local t0 = os.time()
local res = nl.evolve(maps, {pop = opt.pop, gens = opt.gens, seeds = 1, on_generation = function(g)
  if g.gen == g.gens then
    io.stderr:write(string.format("[%d/%d] %-16s best F %.4g\n", g.task, g.ntasks, g.layer, g.best_fitness))
  end
end})
local set_file = opt.output .. "/chosen.exprs"
res.set:save(set_file)
local by = nl.by_name(res.layers)
local rows = {}
for _, d in ipairs(dyt) do
  local g = by[d.name] or {}
  rows[#rows + 1] = {layer = d.name, gp = g.val_r2, dyt = d.r2, bound = d.bound_r2, nodes = g.nodes, expr = g.expr and g.expr:tostring("short")}
end
nl.print_table(rows, {{"layer"}, {"gp", "GP R²", "%.4f"}, {"dyt", "DyT R²", "%.4f"}, {"bound", "bound R²", "%.4f"},
                      {"nodes", "nodes"}, {"expr", "expression"}})
print(string.format("mean R²: GP %.4f, DyT %.4f, bound %.4f (%d s; set in %s)", nl.mean(rows, "gp"), dyt.mean_r2,
                    dyt.mean_bound_r2, os.time() - t0, set_file))

step(string.format("cost per token at the model's width (d = %d, %d tokens)", info.embed_dim, info.tokens))
local b = nl.budget(res.set, info.embed_dim, info.tokens)
nl.print_table({
  {what = "LayerNorm", flops = b.layernorm.flops, bytes = b.layernorm.bytes},
  {what = "DyT", flops = b.dyt.flops, bytes = b.dyt.bytes},
  {what = "found set", flops = b.set.flops, bytes = b.set.bytes},
}, {{"what", "norms (" .. b.layers .. " layers)"}, {"flops", "FLOPs/token", "%.0f"}, {"bytes", "bytes read/token", "%.0f"}})

step("plots (PNG): mapping, DyT and the chosen f(x) of two layers")
for _, layer in ipairs{"blocks.0.norm1", "blocks.6.norm1"} do
  if maps:points(layer, 1)[1] then
    local png = opt.output .. "/" .. layer .. ".png"
    local ok, err = pcall(nl.cmd, string.format("plot %s --maps '%s' --set '%s' --term png --output '%s'",
                                               layer, maps_file, set_file, png), {capture = true})
    print(ok and ("wrote " .. png) or ("plot skipped: " .. tostring(err)))
  end
end

step("accuracy with the found functions in place of the LayerNorms (no re-alignment)")
local adapted = nl.load_model(opt.model)
adapted:apply(res.set)
local raw = adapted:eval{images = opt.eval_images}
print(string.format("top-1 %s (LayerNorm %s)", pct(raw.top1), pct(base.top1)))

step(string.format("replacement and a short re-alignment: %d epoch(s) on %d training images, " ..
                   "distilling from the LayerNorm model (variant D)", opt.epochs, opt.train_images))
if nl.has_command("train") then
  local replaced = model:replace(res.set, {output = opt.output .. "/replaced.safetensors"})
  local tuned, log = replaced:train{variant = "D", teacher = model, epochs = opt.epochs, lr = 1e-4,
                                    images = opt.train_images, batch = 128, warmup = 20,
                                    eval_images = opt.eval_images, output = opt.output .. "/realign"}
  local rows = {}
  for _, e in ipairs(log.epochs) do rows[#rows + 1] = {epoch = e.epoch, top1 = 100 * e.top1, top5 = 100 * e.top5} end
  nl.print_table(rows, {{"epoch", "epoch"}, {"top1", "top-1 %", "%.2f"}, {"top5", "top-5 %", "%.2f"}})
  local after = tuned:eval{images = opt.eval_images}
  print(string.format("top-1: LayerNorm %s, replaced %s, re-aligned %s (checkpoint %s/realign/last.safetensors)",
                      pct(base.top1), pct(raw.top1), pct(after.top1), opt.output))
else
  print("note: this build has no train command; the re-alignment step is skipped")
end
