#!/bin/sh
# `normlab cost --model`: the per-block table of the two timm fixtures
# against formulas worked out here from the fixtures' configs
# (../shared/fixtures/timm/*.json), the norm slot following --set,
# --measure, and bad input.
. "$NL_SRCDIR/tests/cli/lib.sh"

if ! have_fixtures || ! command -v python3 >/dev/null 2>&1; then
  echo "1..0 # SKIP needs the timm fixtures and python3"
  exit 0
fi

# check_table JSON CONFIG.json BATCH NORM: every row, the part totals and
# the model total against the hand formulas; prints the failures.
check_table() {
  python3 - "$@" <<'PY'
import json, sys
out, cfgf, B, norm = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3]), sys.argv[4]
c = cfgf["config"]
D, depth, H = c["embed_dim"], c["depth"], c["num_heads"]
P, C, K = c["patch_size"], c["in_chans"], c["num_classes"]
Hm = int(D * c["mlp_ratio"])
NP = (c["img_size"] // P) ** 2
T = NP + 1                      # class token, token pooling (timm's defaults)
Kp = C * P * P
w = {"F32": 4, "F16": 2, "BF16": 2}[cfgf["weights_dtype"]]
# the norm slots: LayerNorm 5D+2 FLOPs and 8D bytes per token, DyT 24D
# and 4D, 0.5*clip(2*x) 2D (two multiplications; clip 0) and 4D
nf, nb, extra = {"ln": (5 * D + 2, 8 * D, 0), "dyt": (24 * D, 4 * D, 1),
                 "expr": (2 * D, 4 * D, 0)}[norm]
def wb(params_stored, params_f32=0):  # weights read per image
    return (params_stored * w + params_f32 * 4) / B
want = {
  "patch_embed": (2 * NP * D * Kp, D * Kp + D + D + T * D, wb(D * Kp + D + D + T * D) + 4 * NP * Kp),
  "norm1": (T * nf, 2 * D + extra, wb(2 * D, extra) + T * nb),
  "qkv": (2 * T * D * 3 * D, 3 * D * D + 3 * D, wb(3 * D * D + 3 * D) + 4 * T * D),
  "attention": (4 * T * T * D + H * T * (24 * T + 1), 0, 4 * (3 * T * D + H * T * T)),
  "proj": (2 * T * D * D, D * D + D, wb(D * D + D) + 4 * T * D),
  "norm2": (T * nf, 2 * D + extra, wb(2 * D, extra) + T * nb),
  "fc1": (2 * T * D * Hm, D * Hm + Hm, wb(D * Hm + Hm) + 4 * T * D),
  "gelu": (27 * T * Hm, 0, 4 * T * Hm),
  "fc2": (2 * T * Hm * D, Hm * D + D, wb(Hm * D + D) + 4 * T * Hm),
  "residual": (2 * T * D, 0, 16 * T * D),
  "norm": (T * nf, 2 * D + extra, wb(2 * D, extra) + T * nb),
  "head": (2 * D * K, D * K + K, wb(D * K + K) + 4 * D),
}
bad = []
def cmp(what, row, f, p, b):
    for key, v in (("flops", f), ("params", p), ("bytes", b)):
        if abs(row[key] - round(v)) > 0.5:
            bad.append("%s %s: %s, wanted %s" % (what, key, row[key], round(v)))
rows = out["rows"]
if len(rows) != 9 * depth + 3:
    bad.append("%d rows, wanted %d" % (len(rows), 9 * depth + 3))
for r in rows:
    cmp("%s[%s]" % (r["part"], r.get("block", "-")), r, *want[r["part"]])
n = {p: (depth if p in ("norm1", "qkv", "attention", "proj", "norm2", "fc1", "gelu", "fc2",
                         "residual") else 1) for p in want}
for r in out["parts"]:
    f, p, b = want[r["part"]]
    cmp("parts " + r["part"], r, n[r["part"]] * f, n[r["part"]] * p, n[r["part"]] * b)
tf = sum(n[k] * v[0] for k, v in want.items())
tp = sum(n[k] * v[1] for k, v in want.items())
tb = sum(n[k] * v[2] for k, v in want.items())
cmp("total", out["total"], tf, tp, tb)
# the matrix FLOPs of a block are what the paper's models quote: 24 N D^2 + 4 N^2 D
mm = sum(r["flops"] for r in out["parts"] if r["part"] in ("qkv", "attention", "proj", "fc1", "fc2"))
mm -= depth * H * T * (24 * T + 1)
if Hm == 4 * D and mm != depth * (24 * T * D * D + 4 * T * T * D):
    bad.append("block matrix FLOPs %s, wanted 24 N D^2 + 4 N^2 D per block" % mm)
kinds = {r.get("norm_kind") for r in rows if r["part"] in ("norm1", "norm2", "norm")}
want_kind = {"ln": "layernorm", "dyt": "dyt", "expr": "expr"}[norm]
if kinds != {want_kind}:
    bad.append("norm kinds %s, wanted %s" % (kinds, want_kind))
print("\n".join(bad[:8]) if bad else "ok")
PY
}

for fx in vit_tiny_p4_fmnist vit_small_p7_fmnist; do
  M="$NL_FIXTURES/$fx.safetensors"
  J="$NL_FIXTURES/$fx.json"
  for spec in ln dyt expr; do
    case $spec in
      ln) set_arg="";;
      dyt) set_arg="--set dyt";;
      expr) set_arg="--set $TMP/half.exprs"
            python3 -c "
import sys
depth = 12
names = ['blocks.%d.norm%d' % (b, k) for b in range(depth) for k in (1, 2)] + ['norm']
open(sys.argv[1], 'w').write(''.join('%s = 0.5*clip(2*x)\n' % n for n in names))" "$TMP/half.exprs";;
    esac
    for B in 1 64; do
      # shellcheck disable=SC2086
      expect_status 0 "$fx: cost --model --json --batch $B ($spec)" "$NORMLAB" cost --model "$M" \
        --json --batch $B $set_arg
      cp "$TMP/out" "$TMP/cost.json"
      res=$(check_table "$TMP/cost.json" "$J" $B $spec)
      [ "$res" = ok ] || echo "$res" | sed 's/^/# /'
      ok "$([ "$res" = ok ] && echo 0 || echo 1)" "$fx, $spec, batch $B: every row, part and total against the formulas"
    done
  done
done

# hand figures written out for vit_tiny_p4 (T = 50, D = 192, F16 weights)
M="$NL_FIXTURES/vit_tiny_p4_fmnist.safetensors"
expect_status 0 "text table" "$NORMLAB" cost --model "$M"
# qkv: 12 * 2*50*192*576 FLOPs, 12 * (3*192^2 + 576) params
expect_out '^  qkv x 12 +132,710,400 +1,334,016 ' "qkv FLOPs 12*2*N*D*3D, params 12*(3D^2+3D)"
# LayerNorm: 12 * 50*(5*192+2) FLOPs; bytes 12*(50*8*192 + 2*192*2)
expect_out '^  norm1 x 12 +layernorm +577,200 +4,608 +930,816$' "norm1 LayerNorm: 5d+2 FLOPs, 8d bytes per token"
expect_out 'weights stored as F16' "stored width named"
expect_status 0 "--per-block" "$NORMLAB" cost --model "$M" --per-block
expect_out '^  blocks\.0\.norm1 +layernorm +48,100 ' "blocks.0.norm1: 50*(5*192+2) FLOPs"
expect_out '^  blocks\.11\.fc2 +14,745,600 ' "blocks.11.fc2: 2*50*768*192 FLOPs"
expect_status 0 "an expression set's norm slots" "$NORMLAB" cost --model "$M" --set "$TMP/half.exprs" --per-block
# 0.5*clip(2*x): 2 FLOPs per element, 4d bytes: 50*2*192 FLOPs, 50*4*192 + 2*192*2 bytes
expect_out '^  blocks\.3\.norm2 +expr +19,200 +384 +39,168$' "expression slot: 2d FLOPs, 4d bytes per token"

# --measure: time per part of the real forward, beside the figures
expect_status 0 "--measure" "$NORMLAB" cost --model "$M" --measure --seconds 0.2 --json --batch 2
cp "$TMP/out" "$TMP/m.json"
res=$(python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
parts = d['parts']
ok = all(p['seconds_per_image'] > 0 for p in parts)
s = sum(p['seconds_per_image'] for p in parts)
ok = ok and abs(s - d['total']['seconds_per_image']) <= 1e-9 * max(1, s)
ok = ok and s <= d['forward_seconds_per_image'] * 1.0001 and d['forward_passes'] >= 2
print('ok' if ok else 'bad')" "$TMP/m.json")
ok "$([ "$res" = ok ] && echo 0 || echo 1)" "every part timed, parts add up to the total, within the whole pass"
expect_status 0 "--measure text" "$NORMLAB" cost --model "$M" --measure --seconds 0.1
expect_out 'us/image +time +GFLOP/s' "measured columns"
expect_out 'whole forward pass: [0-9.]+ us/image' "whole pass beside the parts"

# a quantized model: the weights at their stored widths with their scales
# (the bundled vit_small_p7: D = 64, Hm = 256, K = 10, 12 blocks), by hand
# formulas and against the byte ranges of the file's own tensors; FLOPs and
# parameter counts as the FP32 model's
SMALL=$NL_SRCDIR/samples/models/vit_small_p7_fmnist.safetensors
expect_status 0 "FP32 cost of the bundled model" "$NORMLAB" cost --model "$SMALL" --json --batch 4
cp "$TMP/out" "$TMP/fp32.json"
expect_status 0 "quantize W8 per channel" "$NORMLAB" quantize --model "$SMALL" --weights 8 --images 4 \
  --output "$TMP/q8.safetensors"
expect_status 0 "quantize W4 g32 AWQ, FP16 head" "$NORMLAB" quantize --model "$SMALL" --weights 4 \
  --group 32 --method awq --keep-fp16 head --images 4 --output "$TMP/q4.safetensors"
expect_status 0 "quantize W8A8 per tensor" "$NORMLAB" quantize --model "$SMALL" --weights 8 --acts 8 \
  --smooth 0.5 --act-mode tensor --images 4 --output "$TMP/qa8.safetensors"
for q in q8 q4 qa8; do
  expect_status 0 "$q: cost --model --json --batch 4" "$NORMLAB" cost --model "$TMP/$q.safetensors" --json --batch 4
  cp "$TMP/out" "$TMP/$q.json"
  res=$(python3 - "$q" "$TMP/$q.json" "$TMP/fp32.json" "$TMP/$q.safetensors" <<'PY'
import json, struct, sys
q, out, f32 = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
b = open(sys.argv[4], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
D, Hm, K, depth, B, T = 64, 256, 10, 12, 4, 17
bits, group, tensor_scale = {"q8": (8, 0, 0), "q4": (4, 32, 0), "qa8": (8, 0, 1)}[q]
def linear(l, name, oc, ic):  # stored bytes of a quantized Linear with its F32 bias
    g = 1 if group == 0 else ic // group
    ins = 4 * ic if "blocks.%d.%s.input_scale" % (l, name) in h else 0
    return oc * ic * bits // 8 + 4 * oc * g + oc * g + ins + 4 * tensor_scale + 4 * oc
hw = 2 if q == "q4" else 4    # the FP16 head
want = {}
for l in range(depth):
    want[("qkv", l)] = linear(l, "attn.qkv", 3 * D, D)
    want[("proj", l)] = linear(l, "attn.proj", D, D)
    want[("fc1", l)] = linear(l, "mlp.fc1", Hm, D)
    want[("fc2", l)] = linear(l, "mlp.fc2", D, Hm)
    want[("norm1", l)] = want[("norm2", l)] = 4 * 2 * D
want[("head", -1)] = hw * (D * K + K)
# the same from the file: every tensor's byte range, by the part it feeds
def part(name):
    if name.startswith("blocks."):
        l, rest = name.split(".", 2)[1:]
        for k, p in (("attn.qkv.", "qkv"), ("attn.proj.", "proj"), ("mlp.fc1.", "fc1"),
                     ("mlp.fc2.", "fc2"), ("norm1.", "norm1"), ("norm2.", "norm2")):
            if rest.startswith(k): return (p, int(l))
        return ("residual", int(l))
    if name.startswith("head."): return ("head", -1)
    if name.startswith("norm."): return ("norm", -1)
    return ("patch_embed", -1)
infile = {}
for k, v in h.items():
    if k != "__metadata__":
        s, t = v["data_offsets"]; infile[part(k)] = infile.get(part(k), 0) + t - s
bad = []
rows = out["rows"]
for r, r32 in zip(rows, f32["rows"]):
    key = (r["part"], r.get("block", -1))
    if key in want and r["weight_bytes"] != want[key]:
        bad.append("%s weight bytes %s, by hand %s" % (key, r["weight_bytes"], want[key]))
    if r["weight_bytes"] != infile.get(key, 0):
        bad.append("%s weight bytes %s, in the file %s" % (key, r["weight_bytes"], infile.get(key, 0)))
    if abs(r["bytes"] - (r["weight_bytes"] / B + r["activation_bytes"])) > 0.5:
        bad.append("%s bytes read %s" % (key, r["bytes"]))
    for f in ("part", "flops", "params", "activation_bytes"):
        if r[f] != r32[f]: bad.append("%s %s %s, FP32 %s" % (key, f, r[f], r32[f]))
if out["total"]["weight_bytes"] != len(b) - 8 - n:
    bad.append("total weight bytes %s, file data %s" % (out["total"]["weight_bytes"], len(b) - 8 - n))
print("\n".join(bad[:8]) if bad else "ok")
PY
)
  [ "$res" = ok ] || echo "$res" | sed 's/^/# /'
  ok "$([ "$res" = ok ] && echo 0 || echo 1)" "$q: weight bytes at the stored width with scales (hand formulas, file), FLOPs as FP32"
done
expect_status 0 "text table of the W8 model" "$NORMLAB" cost --model "$TMP/q8.safetensors"
# qkv x 12: 12 * (3D*D + 3D*4 scales + 3D zero points + 3D*4 bias + 4*T*D) = 12 * 18,368
expect_out '^  qkv x 12 +5,013,504 +149,760 +220,416$' "W8 qkv: 3D^2 + 3D scales, zero points and bias, + acts"
expect_out '^  precision: W8 rtn weight-only' "the precision named"

# bad input: exit 2, a clear message
expect_status 2 "--batch 0" "$NORMLAB" cost --model "$M" --batch 0
expect_err 'batch' "names --batch"
expect_status 2 "missing model" "$NORMLAB" cost --model "$TMP/none.safetensors"
expect_err 'none\.safetensors' "names the file"
expect_status 2 "unknown --set" "$NORMLAB" cost --model "$M" --set "$TMP/none.exprs"
expect_err 'none\.exprs' "names the set"
expect_status 2 "expressions as arguments with --model" "$NORMLAB" cost --model "$M" 'x'
expect_err 'with --model, give the norms as --set' "explained"
expect_status 2 "--per-block without --model" "$NORMLAB" cost --per-block 'x'
expect_err 'needs --model' "explained"
expect_status 2 "--measure --seconds 0" "$NORMLAB" cost --model "$M" --measure --seconds 0
expect_err 'seconds' "names --seconds"

done_testing
