-- normlab.evolve: results, the on_generation callback stopping the search
-- by returning false, errors raised inside it (search stopped, error and
-- traceback propagated), campaigns on disk.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local T = require "tap"
local nl = normlab
local FX = T.fixtures()
local maps = nl.import_maps(FX .. "/vit_small_p7_fmnist_ref.safetensors", {x_prefix = "map_x.", y_prefix = "map_y."})
local L1, L2 = "blocks.0.norm1", "blocks.0.norm2"

local calls, last = 0, nil
local r = nl.evolve(maps, {layer = L1, pop = 60, gens = 8, seed = 3, on_generation = function(g)
  calls = calls + 1
  last = g
end})
T.ok(calls == 8 and last.gen == 8 and last.gens == 8 and last.layer == L1, "on_generation is called once per generation")
T.ok(last.best_fitness > 0 and last.front_size > 0 and last.task == 1 and last.ntasks == 1, "the callback sees the figures of the search")
T.ok(r.stopped == false and #r.layers == 1, "a finished search")
local l = r.layers[1]
T.ok(l.name == L1 and getmetatable(l.expr) and type(l.text) == "string", "the chosen expression, as a handle and as text")
T.ok(l.val_r2 > 0.7 and l.val_r2 <= 1, "its validation R^2 is plausible: " .. l.val_r2)
T.ok(#l.front >= 1 and l.front[1].nodes <= l.front[#l.front].nodes, "the front, ordered by complexity")
T.ok(tostring(r.set[L1]) == l.text, "the result's set holds the chosen expression")
local again = nl.evolve(maps, {layer = L1, pop = 60, gens = 8, seed = 3})
T.ok(again.layers[1].text == l.text, "same seed, same result")

-- stop by returning false
calls = 0
r = nl.evolve(maps, {layer = {L1, L2}, pop = 40, gens = 20, on_generation = function(g)
  calls = calls + 1
  if g.gen == 3 then return false end
end})
T.ok(r.stopped == true and calls == 3, "returning false stops the search after that generation")
T.ok(#r.layers == 1 and #r.layers[1].front >= 1, "the front found so far is kept; the second layer is not searched")
-- nil and true go on
calls = 0
r = nl.evolve(maps, {layer = L1, pop = 40, gens = 4, on_generation = function() calls = calls + 1; return true end})
T.ok(calls == 4 and not r.stopped, "returning true (or nothing) goes on")

-- an error inside the callback
calls = 0
local ok, err = pcall(nl.evolve, maps, {layer = {L1, L2}, pop = 40, gens = 20, on_generation = function(g)
  calls = calls + 1
  if g.gen == 2 then error("boom in the callback") end
end})
T.ok(not ok and calls == 2, "an error in the callback stops the search at once")
T.ok(tostring(err):find("boom in the callback", 1, true), "the error propagates: " .. tostring(err):match("[^\n]*"))
T.ok(tostring(err):find("on_generation", 1, true), "the error says it came from on_generation")
T.ok(tostring(err):find("stack traceback", 1, true) and tostring(err):find("test_evolve.lua", 1, true),
     "the error carries the callback's traceback")
local ok2, err2 = pcall(nl.evolve, maps, {layer = L1, pop = 40, gens = 5, on_generation = function() error({code = 1}) end})
T.ok(not ok2 and tostring(err2):find("table value", 1, true), "a non-string error object is reported")
-- errors from nested library calls in the callback
local ok3, err3 = pcall(nl.evolve, maps, {layer = L1, pop = 40, gens = 5, on_generation = function() nl.expr("tanh(") end})
T.ok(not ok3 and tostring(err3):find("normlab.expr", 1, true), "a binding's error inside the callback propagates")
-- the state is still usable
T.ok(nl.evolve(maps, {layer = L1, pop = 20, gens = 1}).layers[1].text ~= nil, "a later search runs normally")

-- several seeds: the best seed's choice
r = nl.evolve(maps, {layer = L2, seeds = 2, pop = 40, gens = 3})
local seeds = {}
for _, m in ipairs(r.layers[1].front) do seeds[m.seed] = true end
T.ok(seeds[0] and seeds[1], "the fronts of both seeds are returned")
local best = math.huge
for _, m in ipairs(r.layers[1].front) do best = math.min(best, m.val_fitness) end
T.ok(r.layers[1].val_fitness >= best, "the chosen member is on the fronts")

-- a campaign in a directory, resumed
local dir = nl.tmpdir("nl-evolve")
local c1 = nl.evolve(maps, {layer = {L1}, pop = 30, gens = 3, output = dir})
T.ok(#c1.layers == 1 and c1.layers[1].text and io.open(dir .. "/chosen.exprs"), "output=DIR runs a campaign with files")
local c2 = nl.evolve(maps, {layer = {L1}, pop = 30, gens = 3, output = dir})
T.ok(c2.layers[1].text == c1.layers[1].text, "rerunning resumes with the same result")
T.ok(nl.exprset(dir .. "/chosen.exprs")[L1] == c1.set[L1], "chosen.exprs = the result's set")
calls = 0
local okc, errc = pcall(nl.evolve, maps, {layer = {L2}, pop = 30, gens = 10, output = dir, on_generation = function(g)
  calls = calls + 1
  if g.gen == 2 then error("stop the campaign") end
end})
T.ok(not okc and calls == 2 and tostring(errc):find("stop the campaign", 1, true), "a campaign's callback error propagates")
local rc = nl.evolve(maps, {layer = {L2}, pop = 30, gens = 10, output = dir, on_generation = function(g)
  if g.gen == 1 then return false end
end})
T.ok(rc.stopped, "a campaign stopped by returning false says so")
os.execute("rm -rf '" .. dir .. "'")

-- bad options
T.raises("no layer 'nope'", "an unknown layer is named", nl.evolve, maps, {layer = "nope"})
-- the options go through the evolve command's parser: its messages
T.raises("unknown option '--population'", "an unknown option is named", nl.evolve, maps, {population = 5})
T.raises("--pop must be between 4 and 1000000, got 1", "option ranges are checked", nl.evolve, maps, {pop = 1})
T.raises("--complexity expects one of nodes|flops, got 'bits'", "choices are checked", nl.evolve, maps, {complexity = "bits"})
T.raises("--max-nodes expects an integer, got '2.5'", "Lua's spelling of a key, a number that is no integer", nl.evolve, maps, {max_nodes = 2.5})
T.raises("--tournament must be between 1 and --pop (10), got 11", "checks between options", nl.evolve, maps, {pop = 10, tournament = 11})
T.ok(#nl.evolve(maps, {layer = L1, pop = 10.0, gens = 1, threads = 1}).layers == 1, "an integral float is an integer")
T.done()
