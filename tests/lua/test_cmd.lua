-- normlab.cmd and the command table; replace/train through the table
-- (skipped where this build has no such command).
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local T = require "tap"
local nl = normlab
local FX = T.fixtures()
local SRC = T.srcdir()

T.ok(nl.has_command("eval") and not nl.has_command("nope"), "has_command")
local names = {}
for _, c in ipairs(nl.commands()) do names[c.name] = c end
T.ok(names.lua and names.evolve and #names.evolve.options > 5, "commands() lists the table with options")
local out = nl.cmd("cost --dim 64 " .. SRC .. "/samples/exprs/paper_examples.exprs", {capture = true})
T.ok(type(out) == "string" and out:find("d = 64", 1, true), "cmd with capture returns the output")
local j = nl.cmd({"info", "--json", FX .. "/vit_small_p7_fmnist.safetensors"}, {json = true})
T.ok(j.embed_dim == 64 and #j.norm_layers == 25, "cmd with json decodes the output; words as a list")
T.ok(nl.cmd("help info") == true, "cmd prints and returns true")
local r, msg, status = nl.cmd("dyt --maps /nonexistent.maps", {check = false})
T.ok(r == nil and msg:find("cannot open", 1, true) and status == 2, "check=false returns nil, the message and the status")
T.raises("normlab dyt:", "a failing command raises its message", nl.cmd, "dyt --maps /nonexistent.maps")
T.raises("unknown command", "an unknown command raises", nl.cmd, "nope")
T.raises("expects one command", "';' lists are refused", nl.cmd, "help; help")
T.ok(nl.json_decode('{"a": [1, 2.5, "x", true]}').a[2] == 2.5, "json_decode")
T.raises("json_decode", "bad JSON is an error", nl.json_decode, "{")
-- live progress of a command (eval reports per batch): stop, errors
local seen = 0
local j2 = nl.cmd("eval --limit 500 --batch 100 --json", {json = true, on_progress = function(p)
  seen = seen + 1
  T.ok(p.task == "eval" and p.total == 500 and p.done == 100 * seen, "on_progress sees the batches: " .. p.done)
  if seen == 2 then return false end
end})
T.ok(seen == 2 and j2.images == 200 and j2.interrupted == true, "on_progress returning false stops the command; its output comes back")
local okp, errp = pcall(nl.cmd, "eval --limit 300 --batch 100", {on_progress = function() error("progress boom") end})
T.ok(not okp and tostring(errp):find("progress boom", 1, true) and tostring(errp):find("traceback", 1, true),
     "an error in on_progress stops the command and propagates with its traceback")

-- the Lua-side library is found with require
local lib = require "normlab.lib"
T.ok(type(lib) == "function" and type(nl.format_table) == "function", "require finds lua/normlab/lib.lua")
local txt = nl.format_table({{name = "a", v = 1.5}, {name = "bb", v = 10}}, {{"name", "layer"}, {"v", "value", "%.2f"}})
T.ok(txt == "layer  value\na       1.50\nbb     10.00\n", "format_table aligns columns")

-- replace: a library call; train: the train command
local m = nl.load_model()
local set = nl.exprset{["blocks.0.norm1"] = "tanh(4*x)"}
local dir = nl.tmpdir("nl-replace")
local rm, kept = m:replace(set, {output = dir .. "/replaced.safetensors"})
T.ok(getmetatable(rm) and rm:norms()[1].kind == "expr" and rm:norms()[2].kind == "layernorm",
     "model:replace(set) returns the adapted model")
T.ok(#kept == 24 and kept[1] == "blocks.0.norm2", "model:replace lists the layers the set does not name")
T.ok(m:norms()[1].kind == "layernorm", "model:replace leaves the model itself as it was")
local reread = nl.load_model(dir .. "/replaced.safetensors")
T.ok(reread:norms()[1].expr == rm:norms()[1].expr, "model:replace{output=} writes the adapted checkpoint")
-- DyT alpha 0.5 everywhere: the fixture's top-1 (10.0 %) on the test images
local dy = m:replace(0.5)
local allk = true
for _, n in ipairs(dy:norms()) do allk = allk and n.kind == "dyt" and n.alpha == 0.5 end
T.ok(allk, "model:replace(0.5): DyT with alpha 0.5 in every layer")
if not T.quick() then
  local fxj = nl.json_load(FX .. "/vit_small_p7_fmnist.json")
  T.close(dy:eval{}.top1, fxj["top1_after_dyt_alpha_0.5_no_finetune"], 0.01, "DyT 0.5 top-1 is the fixture's")
else
  T.skip("DyT 0.5 top-1 is the fixture's", "NL_TEST_QUICK")
end
local pl = m:replace({["norm"] = 1.5})
T.ok(pl:norms()[25].kind == "dyt" and pl:norms()[25].alpha == 1.5 and pl:norms()[1].kind == "layernorm",
     "model:replace{LAYER = ALPHA}: per-layer alphas")
T.ok(m:replace("ln"):eval{limit = 200}.top1 == m:eval{limit = 200}.top1, "model:replace('ln') keeps LayerNorm")
T.raises("blocks.99.norm1", "a set naming an unknown layer is an error naming it", m.replace, m,
         nl.exprset{["blocks.99.norm1"] = "x"})
T.raises("'nope': no such file; a replacement is FILE.exprs, dyt, dyt=ALPHA, dyt=FILE.json or ln",
         "a bad replacement is an error listing the forms", m.replace, m, "nope")
-- the string is the grammar of 'normlab replace --set': dyt=FILE and FILE.exprs too
local af = dir .. "/alphas.json"
local fh = assert(io.open(af, "w"))
fh:write('{"blocks.0.norm1": 0.75, "norm": 1.25}')
fh:close()
local fa, fkept = m:replace("dyt=" .. af)
T.ok(fa:norms()[1].kind == "dyt" and fa:norms()[1].alpha == 0.75 and fa:norms()[25].alpha == 1.25 and
     fa:norms()[2].kind == "layernorm" and #fkept == 23,
     "model:replace('dyt=FILE'): the file's alphas, the other layers kept")
local sf = dir .. "/one.exprs"
fh = assert(io.open(sf, "w"))
fh:write("blocks.0.norm1 = tanh(4*x)\n")
fh:close()
T.ok(m:replace(sf):norms()[1].expr == rm:norms()[1].expr, "model:replace('FILE.exprs') reads the set")
T.raises("dyt=nan: alpha is not a finite number", "model:replace('dyt=nan') is refused as on the command line",
         m.replace, m, "dyt=nan")
T.raises("alphas.json: 'blocks.0.norm1': alpha is not a number", "a bad alphas file is named with its entry",
         m.replace, m, "dyt=" .. (function()
           local bf = dir .. "/alphas.json"
           local f = assert(io.open(bf, "w"))
           f:write('{"blocks.0.norm1": "big"}')
           f:close()
           return bf
         end)())
os.execute("rm -rf '" .. dir .. "'")
if nl.has_command("train") then
  local epochs, seen = 0, nil
  local small = {limit = 256, eval_limit = 200, batch = 64}
  local function opts(t) for k, v in pairs(small) do t[k] = v end return t end
  local tm, log = dy:train(opts{variant = "A", epochs = 3, lr = 1e-2, on_epoch = function(e)
    epochs = epochs + 1
    seen = e
    if epochs == 1 then return false end
  end})
  T.ok(getmetatable(tm) ~= nil and epochs == 1, "model:train: on_epoch returning false stops after that epoch")
  T.ok(seen and seen.epoch == 1 and seen.epochs == 3 and type(seen.top1) == "number" and
       seen.top1 >= 0 and seen.top1 <= 1 and seen.loss > 0, "on_epoch sees epoch, epochs, loss, top-1")
  T.ok(log and #log.epochs == 2 and log.epochs[2].top1 == seen.top1, "model:train returns the run's log")
  T.ok(tm:norms()[1].alpha ~= 0.5 and dy:norms()[1].alpha == 0.5,
       "the affine variant trains DyT alpha; the model itself is unchanged")
  local ok, err = pcall(dy.train, dy, opts{variant = "A", epochs = 2, on_epoch = function() error("epoch boom") end})
  T.ok(not ok and tostring(err):find("epoch boom", 1, true), "model:train: an error in on_epoch propagates")
  T.raises("variant D (distillation) needs --teacher", "variant D without a teacher is an error", dy.train, dy, opts{variant = "D"})
  T.raises("--lr: expected a number in (0, 10], got -1", "a bad value is refused with the command line's message",
           dy.train, dy, opts{lr = -1})
  T.raises("--seed expects an integer, got '1.5'", "a non-integer is refused with the command line's message",
           dy.train, dy, opts{seed = 1.5})
  T.raises("model= is not an option", "model= is refused (the handle is the model)", dy.train, dy, opts{model = "x"})
  T.raises("no option --nope", "an unknown option is an error naming it", dy.train, dy, opts{nope = 1})
  local td = dy:train(opts{variant = "D", teacher = m, epochs = 1, lr = 1e-3})
  T.ok(getmetatable(td) ~= nil, "variant D distils from a teacher handle")
else
  T.raises("train is not available in this build", "model:train says it is not available", m.train, m, {epochs = 1})
  for i = 1, 10 do T.skip("model:train " .. i, "train is not in the command table") end
end
T.done()
