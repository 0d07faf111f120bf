-- expr and exprset bindings against Lua's own math and the cost table of
-- src/expr/cost.c / ops.c (Appendix F of the paper).
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local T = require "tap"
local nl = require "normlab"

T.ok(nl == normlab, 'require "normlab" is the preloaded module')

local e = nl.expr("tanh(2*x) + 0.5*x")
T.ok(tostring(e) == "tanh(2*x) + 0.5*x", "__tostring prints the canonical text")
local xs = {-3, -1, -0.25, 0, 0.3, 1, 2.5}
local worst_f, worst_d = 0, 0
local yf, yd = e:eval(xs), e:eval(xs, "double")
for i, x in ipairs(xs) do
  local want = math.tanh(2 * x) + 0.5 * x
  worst_f = math.max(worst_f, math.abs(yf[i] - want))
  worst_d = math.max(worst_d, math.abs(yd[i] - want))
end
T.ok(worst_f < 1e-6, "eval (float engine) matches math.tanh within 1e-6: " .. worst_f)
T.ok(worst_d < 1e-14, "eval 'double' matches math.tanh within 1e-14: " .. worst_d)
T.close(e:eval(0.3), math.tanh(0.6) + 0.15, 1e-6, "eval of one number")
T.close(e(0.3), e:eval(0.3), 0, "__call evaluates")

local function sig(x) return 1 / (1 + math.exp(-x)) end
local cases = {
  {"sigmoid(x)", sig}, {"exp(x)", math.exp}, {"abs(x)", math.abs},
  {"clip(3*x)", function(x) return math.max(-5, math.min(5, 3 * x)) end},
  {"clip(x, -1, 0.5)", function(x) return math.max(-1, math.min(0.5, x)) end},
  {"x^3 - x/2", function(x) return x ^ 3 - x / 2 end},
  {"-x * sigmoid(x)", function(x) return -x * sig(x) end},
}
for _, c in ipairs(cases) do
  local f = nl.expr(c[1])
  local bad_d, bad_f = 0, 0
  for x = -4, 4, 0.37 do
    local want = c[2](x)
    local scale = math.max(1, math.abs(want))
    bad_d = math.max(bad_d, math.abs(f:eval(x, "double") - want) / scale)
    bad_f = math.max(bad_f, math.abs(f:eval(x) - want) / scale)
  end
  T.ok(bad_d < 1e-12, c[1] .. " in double precision matches Lua's math: " .. bad_d)
  T.ok(bad_f < 1e-6, c[1] .. " in the float engine matches Lua's math: " .. bad_f)
end

-- per-op costs (src/expr/ops.c: + - * / 1, tanh 23, sigmoid 22, exp 19,
-- neg 0, abs 0, x^n n-1, clip 0 when reporting, 1 in search)
local costs = {
  {"x + 1", 1}, {"x - 1", 1}, {"2 * x", 1}, {"x / 3", 1}, {"tanh(x)", 23}, {"sigmoid(x)", 22},
  {"exp(x)", 19}, {"-x", 0}, {"abs(x)", 0}, {"x^3", 2}, {"clip(x)", 0},
  {"tanh(2*x) + 0.5*x", 26},
}
for _, c in ipairs(costs) do
  T.ok(nl.expr(c[1]):cost().per_element == c[2], string.format("cost of %s is %d FLOPs per element", c[1], c[2]))
end
T.ok(nl.expr("clip(x)"):cost(1, {clip = 1}).per_element == 1, "clip is charged 1 with {clip=1}")
local c = e:cost(64)
T.ok(c.flops == 26 * 64 and c.bytes == 4 * 64 and c.d == 64, "cost(d): flops = cost*d, bytes = 4d")
local ln, dyt = nl.cost_layernorm(64), nl.cost_dyt(64)
T.ok(ln.flops == 5 * 64 + 2 and ln.bytes == 8 * 64, "LayerNorm: 5d+2 FLOPs, 8d bytes")
T.ok(dyt.flops == 24 * 64 and dyt.bytes == 4 * 64, "DyT: 24d FLOPs, 4d bytes")

local s = nl.expr("x*1 + 0 + 2*3"):simplify()
T.ok(tostring(s) == "x + 6", "simplify folds constants and identities: " .. tostring(s))
T.ok(e:tostring("c"):find("tanhf", 1, true) ~= nil, "tostring('c') prints C")
T.ok(e:tostring("torch"):find("torch.tanh", 1, true) ~= nil, "tostring('torch') prints PyTorch")
T.ok(e:tostring("latex"):find("tanh", 1, true) ~= nil, "tostring('latex')")
T.ok(e:nodes() == #e and e:nodes() == 8 and e:depth() >= 3, "nodes, #, depth")
T.ok(#e:consts() == 2 and e:consts()[1] == 2, "consts in postfix order")
T.ok(nl.expr("tanh(x)") == nl.expr("tanh( x )"), "__eq compares trees")
T.raises("1:6:", "a parse error names line:column", nl.expr, "tanh(")
local _, perr = pcall(nl.expr, "x + * 2")
T.ok(tostring(perr):find("\n", 1, true) and tostring(perr):find("^", 1, true), "a parse error shows the line and a caret")
T.raises("expects an integer", "option types are checked", e.cost, e, 1, {clip = "a"})
T.raises("unknown option 'clap'", "unknown option keys are named", e.cost, e, 1, {clap = 1})

-- expression sets
local set = nl.exprset(T.srcdir() .. "/samples/exprs/paper_examples.exprs")
T.ok(#set > 0, "exprset(file) loads the bundled set: " .. #set .. " entries")
local names = set:names()
T.ok(type(set[names[1]]) == "userdata" and tostring(set[names[1]]) ~= "", "set[layer] is an expression")
T.ok(set["no.such.layer"] == nil, "unknown layer is nil")
set["blocks.99.norm1"] = "tanh(3*x)"
T.ok(tostring(set["blocks.99.norm1"]) == "tanh(3*x)", "assigning text parses it")
set["blocks.99.norm2"] = nl.expr("sigmoid(x)")
T.ok(#set == #names + 2, "assignment adds entries")
set["blocks.99.norm2"] = nil
T.ok(#set == #names + 1 and set["blocks.99.norm2"] == nil, "assigning nil removes")
local seen = 0
for name, ex in pairs(set) do
  if name and getmetatable(ex) then seen = seen + 1 end
end
T.ok(seen == #set, "pairs(set) visits every entry")
local tmp = os.tmpname()
set:save(tmp)
local back = nl.exprset(tmp)
os.remove(tmp)
local same = #back == #set
for name, ex in pairs(set) do same = same and back[name] == ex end
T.ok(same, "save and reload keep every expression exactly")
local sc = set:cost(64)
local sum = 0
for i = 1, #sc do sum = sum + sc[i].flops end
T.ok(#sc == #set and sc.total_flops == sum, "set:cost sums the layers")
local b = nl.budget(set, 64, 17)
T.ok(b.layernorm.flops == #set * (5 * 64 + 2) and b.per_image.set == sum * 17, "normlab.budget (Lua side)")
T.raises("cannot open", "a missing set file is named", nl.exprset, "/nonexistent/x.exprs")
local bad = os.tmpname()
local f = io.open(bad, "w"); f:write("a = tanh(x)\nb = tanh(\n"); f:close()
T.raises(bad .. ":2", "a bad set names file and line", nl.exprset, bad)
os.remove(bad)
T.ok(tostring(set):find("blocks.99.norm1 = tanh(3*x)", 1, true), "__tostring of a set lists NAME = EXPR")
set:set("blocks.98.norm1", "x*0.5", "halved")
local ge, gc = set:get("blocks.98.norm1")
T.ok(tostring(ge) == "x*0.5" and gc == "halved", "set:set with a comment, set:get returns both")
T.ok(tostring(set):find("blocks.98.norm1 = x*0.5  # halved", 1, true), "the comment is kept in the text")
T.ok(nl.exprset():names()[1] == nil and #nl.exprset() == 0, "exprset() is empty")

-- small helpers of the Lua-side library
T.ok(nl.mean({{v = 1}, {v = 3}, {v = 0 / 0}, {}}, "v") == 2 and nl.mean({}, "v") == nil, "normlab.mean skips non-numbers")
local tv, terr = nl.try(nl.expr, "tanh(")
T.ok(tv == nil and terr:find("normlab.expr", 1, true), "normlab.try returns nil and the message")
T.ok(tostring(nl.try(nl.expr, "x")) == "x", "normlab.try returns the results")
T.ok(nl.version():match("^%d+%.%d+"), "normlab.version: " .. nl.version())
T.done()
