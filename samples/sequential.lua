-- sequential.lua: search the norm functions one layer at a time, in forward
-- order, each on the mapping of a model whose earlier layers are already
-- replaced. A function fitted on the original model's mapping meets
-- inputs that the replaced layers before it have shifted; fitted in order,
-- each layer sees the inputs it will get, and its LayerNorm target on them
-- (the slot is still LayerNorm when its points are recorded).
--
--   normlab lua samples/sequential.lua [--model FILE] [--seeds N]
--       [--pop N] [--gens N] [--images N] [--points N] [--eval-images N]
--       [--output DIR] [--quick]
--
-- Writes DIR/sequential.exprs and DIR/sequential.safetensors (the model
-- with every norm replaced) and prints, per layer, the fit and the
-- function, then top-1 / top-5 of the replaced model (no re-alignment)
-- beside the same search on the original model's mapping alone.
local nl = require "normlab"

local opt = {model = nl.default_model(), seeds = 1, pop = 500, gens = 50, images = 64, points = 50000,
             eval_images = 0, output = "out/sequential"}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--quick" then
    opt.quick, opt.pop, opt.gens, opt.images, opt.points, opt.eval_images = true, 16, 2, 8, 2000, 300
  elseif a:match("^%-%-") and arg[i + 1] and opt[a:sub(3):gsub("-", "_")] ~= nil then
    local k = a:sub(3):gsub("-", "_")
    opt[k] = type(opt[k]) == "number" and assert(tonumber(arg[i + 1]), a .. " expects a number") or arg[i + 1]
    i = i + 1
  else
    error("unknown argument '" .. a .. "' (see the head of sequential.lua)", 0)
  end
  i = i + 1
end
os.execute("mkdir -p '" .. opt.output .. "'")

local search = {seeds = opt.seeds, pop = opt.pop, gens = opt.gens}
local function extract(m)
  return m:extract{offset = 100, images = opt.images, points = opt.points, seed = 42}
end

local model = nl.load_model(opt.model)
local names = model:info().norm_layers

-- every layer on the original model's mapping (the ordinary campaign)
io.stderr:write("search on the original mapping\n")
local base = nl.evolve(extract(model), search)
local one = model:replace(base.set)

-- one layer at a time, in forward order
local seq, set, rows = nl.load_model(opt.model), nl.exprset(), {}
local byb = nl.by_name(base.layers)
for k, name in ipairs(names) do
  local s = {layer = name}
  for key, v in pairs(search) do s[key] = v end
  local L = nl.evolve(extract(seq), s).layers[1]
  set[name] = L.expr
  seq:set_norm(name, L.expr)
  rows[#rows + 1] = {layer = name, r2 = L.val_r2, r2_base = byb[name] and byb[name].val_r2, nodes = L.nodes,
                     expr = L.expr:tostring("short")}
  io.stderr:write(string.format("[%d/%d] %-16s val R² %.4f\n", k, #names, name, L.val_r2))
end
set:save(opt.output .. "/sequential.exprs")
seq:save(opt.output .. "/sequential.safetensors")

print(string.format("%s: %d norm layers, %d images x %d points, %d seed(s), population %d, %d generations",
                    opt.model, #names, opt.images, opt.points, opt.seeds, opt.pop, opt.gens))
nl.print_table(rows, {{"layer"}, {"r2", "val R² (in order)", "%.4f"}, {"r2_base", "val R² (original)", "%.4f"},
                      {"nodes", "nodes"}, {"expr", "function"}})
local function pct(v) return string.format("%.2f %%", 100 * v) end
local ln, a, b = model:eval{images = opt.eval_images}, one:eval{images = opt.eval_images}, seq:eval{images = opt.eval_images}
nl.print_table({
  {what = "LayerNorm", top1 = pct(ln.top1), top5 = pct(ln.top5)},
  {what = "every layer fitted on the original mapping", top1 = pct(a.top1), top5 = pct(a.top5)},
  {what = "layers fitted in order (sequential)", top1 = pct(b.top1), top5 = pct(b.top5)},
}, {{"what", "norms, no re-alignment"}, {"top1", "top-1"}, {"top5", "top-5"}})
print("set: " .. opt.output .. "/sequential.exprs, model: " .. opt.output .. "/sequential.safetensors")
