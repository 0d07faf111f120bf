-- model:profile and model:prune against the timm fixture: the profile of
-- the first 2 test images has norm1's input statistics of the fixture's
-- recorded tensor (worked out here); a ratio prune halves every block's
-- width; the prune's bytes are the parameters' bytes; heads are pruned alone
-- or with the channels; bad options raise.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local T = require "tap"
local nl = normlab
local FX = T.fixtures()
local m = nl.load_model(FX .. "/vit_small_p7_fmnist.safetensors")

local p = m:profile{data = "fmnist:test", images = 2, batch = 2}
T.ok(p.images == 2 and #p.parts == 9 and #p.time_ms == 12, "profile: images, 9 parts, 12 blocks of times")
T.ok(#p.layers.order == 74 and p.layers["head.in"].width == 64, "profile: 74 layers, head.in 64 wide")
local hid = p.layers["blocks.4.mlp.fc2.in"]
T.ok(hid.width == 256 and #hid.var == 256, "profile: the hidden channels, per channel")
-- channel 3 of blocks.2.norm1's input: mean over the fixture's 2 x 17 tokens
local m0 = nl.import_maps(FX .. "/vit_small_p7_fmnist_ref.safetensors", {x_prefix = "ln_in.", y_prefix = "ln_out."})
local x = m0:points("blocks.2.norm1")
local s, n = 0, 0
for i = 4, #x, 64 do s, n = s + x[i], n + 1 end
T.close(p.layers["blocks.2.norm1.in"].mean[4], s / n, 1e-5, "profile: a channel's mean as the fixture's tokens give it")

local pm, r = m:prune{ratio = 0.5, score = "magnitude", compensate = false}
T.ok(pm:info().mlp_widths[1] == 128 and pm:info().mlp_widths[12] == 128, "prune: 256 -> 128 in every block")
T.ok(r.param_bytes == 4 * pm:info().parameters and r.param_bytes < r.param_bytes_before, "prune: bytes of the parameters, fewer")
local e = pm:eval{images = 200}
T.ok(e.top1 > 0.5, string.format("prune: the pruned model classifies (top-1 %.3f on 200)", e.top1))
local bm = m:prune{budget_mb = 2.0, score = "variance", images = 32}
T.ok(bm:info().parameters * 4 <= 2.0e6, "prune: budget_mb fits")
T.raises("one of ratio", "prune: neither ratio nor budget_mb", function() m:prune{} end)
T.raises("outside [0, 1)", "prune: ratio 1", function() m:prune{ratio = 1, score = "random", compensate = false} end)
T.raises("score 'bogus'", "prune: unknown score", function() m:prune{ratio = 0.5, score = "bogus"} end)
-- refit: profiled here with the covariance; a profile file without it, or a
-- negative damping, raises
local rm = m:prune{ratio = 0.6, score = "contribution", refit = true, images = 64}
T.ok(rm:info().mlp_widths[1] == 102, "prune refit: 256 -> 102 in every block")
local re = rm:eval{images = 200}
T.ok(re.top1 > 0.8, string.format("prune refit: the model classifies (top-1 %.3f on 200)", re.top1))
local pf = os.tmpname()
m:profile{images = 4, output = pf}
T.raises("covariance of blocks.0.mlp.fc2.in", "prune refit: a profile without covariance",
  function() m:prune{ratio = 0.5, refit = true, profile = pf} end)
os.remove(pf)
T.raises("refit_damp", "prune refit: negative damping", function() m:prune{ratio = 0.5, refit = true, refit_damp = -1} end)
-- attention heads: 1 of 2 kept per block (contribution, profiled here), with
-- the MLP channels in the same call; bad head options raise
local hm, hr = m:prune{keep_heads = 1, images = 32}
local hi = hm:info()
T.ok(hi.head_counts[1] == 1 and hi.head_counts[12] == 1 and hi.num_heads == 2, "prune heads: 2 -> 1 in every block")
T.ok(hr.param_bytes == hr.param_bytes_before - 12 * 4 * (3 * 32 * 64 + 3 * 32 + 32 * 64), "prune heads: qkv and proj lose one head's rows and columns")
local he = hm:eval{images = 200}
T.ok(he.top1 > 0.3, string.format("prune heads: the model classifies (top-1 %.3f on 200)", he.top1))
local both = m:prune{ratio = 0.5, score = "magnitude", heads = 0.5, head_score = "random", compensate = false}
T.ok(both:info().mlp_widths[1] == 128 and both:info().head_counts[1] == 1, "prune: MLP channels and heads in one call")
T.raises("between 1 and 2", "prune: keep_heads 0", function() m:prune{keep_heads = 0} end)
T.raises("between 1 and 2", "prune: keep_heads 3", function() m:prune{keep_heads = 3} end)
T.raises("[0, 1)", "prune: heads 1", function() m:prune{heads = 1} end)
T.raises("head_score 'variance'", "prune: head_score variance", function() m:prune{heads = 0.5, head_score = "variance"} end)
T.done()
