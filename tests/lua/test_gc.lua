-- Handles are collected: many of each kind made and dropped (run under
-- ASan this shows every __gc frees what the handle holds).
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local T = require "tap"
local nl = normlab
local FX = T.fixtures()

for i = 1, 2000 do
  local e = nl.expr("tanh(" .. i .. "*x) + x")
  local s = e:simplify()
  local _ = e:eval({1, 2, 3}) and s:cost(8)
end
collectgarbage()
T.ok(true, "2000 expressions made and collected")
for i = 1, 200 do
  local s = nl.exprset{a = "x", b = "tanh(x)"}
  s.c = "sigmoid(x)"
  local c = s:copy()
  c.a = nil
end
collectgarbage()
T.ok(true, "200 sets made and collected")
local before = collectgarbage("count")
for i = 1, 5 do
  local m = nl.load_model()
  local info = m:info()
  assert(info.depth > 0)
end
collectgarbage()
collectgarbage()
T.ok(collectgarbage("count") < before + 200, "models are collected")
for i = 1, 5 do
  local mp = nl.import_maps(FX .. "/vit_small_p7_fmnist_ref.safetensors", {x_prefix = "map_x.", y_prefix = "map_y."})
  assert(#mp == 25)
end
collectgarbage()
T.ok(true, "maps are collected")

-- an explicitly closed model refuses further use; to-be-closed variables
do
  local m <close> = nl.load_model()
  T.ok(m:info().depth > 0, "a <close> model works in its scope")
end
local m = nl.load_model()
m:close()
T.raises("the handle is closed", "a closed model says so", m.info, m)
T.ok(tostring(m) == "normlab.model (closed)", "__tostring of a closed model")
m = nil
collectgarbage()
-- handles kept across an error
local keep = nl.expr("x")
pcall(function() local t = nl.exprset{a = "x"}; error("x") end)
collectgarbage()
T.ok(tostring(keep) == "x", "a live handle survives collections")
-- failing loads free what they had read (ASan)
local bad_json = FX .. "/vit_small_p7_fmnist.json"
T.raises("load_maps", "load_maps of a missing file fails", nl.load_maps, "/nonexistent.maps")
T.raises("normlab.load_maps", "load_maps of a model file fails", nl.load_maps, FX .. "/vit_small_p7_fmnist.safetensors")
T.raises("import_maps", "import_maps of a non-safetensors file fails", nl.import_maps, bad_json, {x_prefix = "a", y_prefix = "b"})
T.raises("load_model", "load_model of a non-safetensors file fails", nl.load_model, bad_json)
T.raises("normlab.expr", "deep nesting is refused", nl.expr, string.rep("tanh(", 2000) .. "x" .. string.rep(")", 2000))
collectgarbage()
-- wrong handle types are refused
T.raises("normlab.expr expected, got normlab.exprset", "methods check the handle type", nl.expr("x").eval, nl.exprset{}, 1)
T.done()
