#!/bin/sh
# calibrate: an adapted fixture model tuned to the original's logits keeps
# every expression's form, changes its numbers, lowers the KL on its
# images, and runs in eval; bad input exits 2 and writes nothing.
. "$NL_SRCDIR/tests/cli/lib.sh"
ST="python3 $NL_SRCDIR/tests/cli/st_tool.py"
SMALL=$NL_FIXTURES/vit_small_p7_fmnist.safetensors
TINY=$NL_FIXTURES/vit_tiny_p4_fmnist.safetensors
if ! have_fixtures || [ ! -f "${NL_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}/train-images-idx3-ubyte.gz" ]; then
  echo "1..0 # SKIP fixtures or Fashion-MNIST missing"
  exit 0
fi
cat >"$TMP/set.exprs" <<'S'
blocks.0.norm1 = 0.7*tanh(2.3*x + 0.1) + 0.05
blocks.5.norm2 = 1.1*x*sigmoid(1.6*x) - 0.03
blocks.11.norm1 = 0.9*clip(1.4*x) + 0.2*tanh(0.5*x)
norm = 1.2*tanh(0.7*x) + 0.01
S
expect_status 0 "replace four slots" "$NORMLAB" replace --model "$SMALL" --set "$TMP/set.exprs" --output "$TMP/a.safetensors"
expect_status 0 "calibrate --json" "$NORMLAB" calibrate --model "$TMP/a.safetensors" --teacher "$SMALL" \
  --images 64 --epochs 2 --batch 32 --lr 0.01 --eval-limit 200 --threads 2 --output "$TMP/c.safetensors" --json
kb=$(sed 's/.*"kl_before": \([0-9.e-]*\).*/\1/' "$TMP/out")
ka=$(sed 's/.*"kl_after": \([0-9.e-]*\).*/\1/' "$TMP/out")
check_num "$ka < 0.95 * $kb" "the KL on the calibration images goes down ($kb -> $ka)"
expect_out '"constants": 14,' "14 constants tuned"
expect_out '"epoch_kl": \[[0-9.e-]+, [0-9.e-]+\]' "one KL per epoch"
expect_out '"top1_before": [0-9.]+, "top1_after": [0-9.]+' "top-1 before and after"
# the trees: the same text once the numbers are masked, other numbers
norms() {
  python3 - "$1" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
for k, v in json.loads(h['__metadata__']['norms']).items():
    print(k, v['kind'], v.get('expr', ''))
PY
}
norms "$TMP/a.safetensors" >"$TMP/na"
norms "$TMP/c.safetensors" >"$TMP/nc"
mask() { sed -E 's/-?[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?/N/g' "$1"; }
[ "$(mask "$TMP/na")" = "$(mask "$TMP/nc")" ]; ok $? "every expression keeps its form"
! cmp -s "$TMP/na" "$TMP/nc"; ok $? "the constants changed"
grep -c ' expr ' "$TMP/nc" | grep -qx 4; ok $? "four expression slots, the rest LayerNorm"
expect_status 0 "eval of the calibrated checkpoint" "$NORMLAB" eval --model "$TMP/c.safetensors" --limit 200 --json
expect_status 0 "calibrate --what both" "$NORMLAB" calibrate --model "$TMP/a.safetensors" --teacher "$SMALL" \
  --images 32 --epochs 1 --what both --eval-limit 0 --output "$TMP/b.safetensors"
expect_out '^calibrated 14 constants and the norms. affine on 32 images' "both: constants and affine"

# bad input: exit 2, a clear message, nothing written
expect_status 2 "a teacher of another architecture" "$NORMLAB" calibrate --model "$TMP/a.safetensors" \
  --teacher "$TINY" --images 8 --output "$TMP/x1.safetensors"
expect_err 'the teacher is a different model .*width 192.* from the adapted one .*width 64' "names both shapes"
[ ! -e "$TMP/x1.safetensors" ]; ok $? "nothing written"
expect_status 2 "--images 0" "$NORMLAB" calibrate --model "$TMP/a.safetensors" --teacher "$SMALL" \
  --images 0 --output "$TMP/x2.safetensors"
expect_err 'images' "names --images"
expect_status 2 "--what bogus" "$NORMLAB" calibrate --model "$TMP/a.safetensors" --teacher "$SMALL" \
  --what bogus --output "$TMP/x3.safetensors"
expect_err 'bogus' "names the bad choice"
expect_status 2 "a model without expressions" "$NORMLAB" calibrate --model "$SMALL" --teacher "$SMALL" \
  --images 8 --output "$TMP/x4.safetensors"
expect_err 'no expression constants to calibrate' "says there is nothing to tune"
$ST set "$TMP/a.safetensors" "$TMP/nan.safetensors" blocks.2.attn.qkv.weight 3 nan
expect_status 2 "a NaN in the model" "$NORMLAB" calibrate --model "$TMP/nan.safetensors" --teacher "$SMALL" \
  --images 8 --output "$TMP/x5.safetensors"
expect_err 'blocks\.2\.attn\.qkv\.weight has 1 non-finite value' "names the tensor"
[ ! -e "$TMP/x5.safetensors" ]; ok $? "nothing written"
# Lua: model:calibrate returns a calibrated copy and the figures; the model stays
cat >"$TMP/c.lua" <<L
local a = normlab.load_model("$TMP/a.safetensors")
local c, r = a:calibrate{teacher = "$SMALL", images = 32, epochs = 2, batch = 16, lr = 0.01}
local function forms(m)
  local t = {}
  for _, n in ipairs(m:norms()) do t[#t + 1] = n.name .. " " .. (n.expr or n.kind) end
  return t
end
local fa, fc = forms(a), forms(c)
local same, moved = true, false
for i = 1, #fa do
  local ma, mc = fa[i]:gsub("[-%d.e]+", "N"), fc[i]:gsub("[-%d.e]+", "N")
  same = same and ma == mc
  moved = moved or fa[i] ~= fc[i]
end
print("forms", same, "moved", moved, "epochs", #r.epoch_kl, "constants", r.constants,
      "lower", r.kl_after < r.kl_before)
print("model kept", forms(normlab.load_model("$TMP/a.safetensors"))[1] == fa[1])
local ok, e = pcall(function() return a:calibrate{teacher = "$SMALL", what = "bogus"} end)
print(e)
L
expect_status 0 "Lua model:calibrate" "$NORMLAB" lua "$TMP/c.lua"
expect_out '^forms	true	moved	true	epochs	2	constants	14	lower	true$' "the copy keeps the forms, moves the constants, lowers the KL"
expect_out '^model kept	true$' "the model itself is unchanged"
expect_out "what = 'bogus': want consts, affine or both" "a bad what is named"
done_testing
