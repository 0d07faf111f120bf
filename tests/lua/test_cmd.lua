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

-- replace and train go through the command table
local m = nl.load_model()
local set = nl.exprset{["blocks.0.norm1"] = "tanh(4*x)"}
if nl.has_command("replace") then
  local dir = nl.tmpdir("nl-replace")
  local rm = m:replace(set, {output = dir .. "/replaced.safetensors"})
  T.ok(getmetatable(rm) and rm:norms()[1].kind == "expr", "model:replace returns the adapted model")
  os.execute("rm -rf '" .. dir .. "'")
else
  T.raises("replace is not available in this build", "model:replace says it is not available", m.replace, m, set)
  T.skip("model:replace returns the adapted model", "replace is not in the command table")
end
if nl.has_command("train") then
  local epochs = 0
  local tm = m:train{variant = "A", epochs = 3, lr = 1e-3, on_epoch = function(e)
    epochs = epochs + 1
    if epochs == 1 then return false end
  end}
  T.ok(getmetatable(tm) ~= nil and epochs == 1, "model:train: on_epoch returning false stops after that epoch")
  local ok, err = pcall(m.train, m, {variant = "A", epochs = 2, on_epoch = function() error("epoch boom") end})
  T.ok(not ok and tostring(err):find("epoch boom", 1, true), "model:train: an error in on_epoch propagates")
else
  T.raises("train is not available in this build", "model:train says it is not available", m.train, m, {epochs = 1})
  T.skip("model:train: on_epoch returning false stops after that epoch", "train is not in the command table")
  T.skip("model:train: an error in on_epoch propagates", "train is not in the command table")
end
T.done()
