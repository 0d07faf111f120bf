#!/bin/sh
# profile and prune on the command line: the profile file's names and
# statistics against numpy on the timm fixture's recorded tensors; pruned
# checkpoints (ratio and budget) load in info, eval, replace and train; a
# uniform prune has the shapes timm builds from its mlp_ratio; bad flags
# exit 2 with a message and write nothing. Attention heads: the pruned
# logits against a PyTorch reference, shapes, metadata, the cost table by
# hand, and the commands that run a head-pruned checkpoint.
. "$NL_SRCDIR/tests/cli/lib.sh"
SMALL=$NL_FIXTURES/vit_small_p7_fmnist.safetensors
REF=$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors
if ! have_fixtures || [ ! -f "${NL_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}/t10k-images-idx3-ubyte.gz" ]; then
  echo "1..0 # SKIP fixtures or Fashion-MNIST missing"
  exit 0
fi
PY=python3
python3 -c "import numpy" 2>/dev/null || PY=/usr/bin/python3

# bad input: exit 2, a message, no file
expect_status 2 "prune without --ratio or --budget-mb" "$NORMLAB" prune --model "$SMALL" --output "$TMP/x.st"
expect_err 'give --ratio R or --budget-mb MB \(MLP channels\) and/or --heads R or --keep-heads N' "it names the options"
expect_status 2 "prune --ratio 1" "$NORMLAB" prune --model "$SMALL" --ratio 1 --output "$TMP/x.st"
expect_err '\[0, 1\)' "the message gives the range"
expect_status 2 "prune --ratio -0.1" "$NORMLAB" prune --model "$SMALL" --ratio -0.1 --output "$TMP/x.st"
expect_status 2 "prune --ratio and --budget-mb together" "$NORMLAB" prune --model "$SMALL" --ratio 0.5 --budget-mb 2 --output "$TMP/x.st"
expect_status 2 "prune --budget-mb 0" "$NORMLAB" prune --model "$SMALL" --budget-mb 0 --output "$TMP/x.st"
expect_status 2 "prune --budget-mb below the floor" "$NORMLAB" prune --model "$SMALL" --budget-mb 0.5 --score magnitude --no-compensate --output "$TMP/x.st"
expect_err 'below 0\.[0-9]+ MB, the model with one MLP channel per block' "the message gives the floor"
expect_status 2 "prune --score bogus" "$NORMLAB" prune --model "$SMALL" --ratio 0.5 --score bogus --output "$TMP/x.st"
expect_status 2 "prune --profile that is not a profile" "$NORMLAB" prune --model "$SMALL" --ratio 0.5 --profile "$SMALL" --output "$TMP/x.st"
expect_err 'not a profile' "it says so"
expect_status 2 "prune --profile with --images" "$NORMLAB" prune --model "$SMALL" --ratio 0.5 --profile "$SMALL" --images 4 --output "$TMP/x.st"
expect_status 2 "prune without --output" "$NORMLAB" prune --model "$SMALL" --ratio 0.5
expect_status 2 "profile --images 0" "$NORMLAB" profile --model "$SMALL" --images 0
expect_status 2 "profile of a missing model" "$NORMLAB" profile --model "$TMP/none.safetensors" --images 2
expect_status 2 "profile --plot --layer bogus" "$NORMLAB" profile --model "$SMALL" --images 2 --plot --layer bogus --term dumb
expect_err 'no such layer' "it names the layer"
ok $([ ! -e "$TMP/x.st" ]; echo $?) "no file written by a failed prune"

# profile of the first 2 test images: block 7's norm1 input and output as
# the fixture recorded them (timm, float64), statistics worked out by numpy
expect_status 0 "profile 2 test images" "$NORMLAB" profile --model "$SMALL" --data fmnist:test --images 2 --batch 1 --output "$TMP/p.safetensors"
expect_out '^blocks\.7\.mlp\.fc2\.in +256 ' "the table lists the hidden channels"
expect_out '^  all ' "the time table has a total row"
$PY - "$TMP/p.safetensors" "$REF" >"$TMP/np" 2>&1 <<'PY'
import json, struct, sys
import numpy as np
def load(path):
    b = open(path, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    t = {}
    for k, v in h.items():
        if k == '__metadata__' or v['dtype'] != 'F32': continue
        a, e = v['data_offsets']
        t[k] = np.frombuffer(b[8 + n + a:8 + n + e], dtype='<f4').reshape(v['shape'])
    return t, h.get('__metadata__', {})
p, meta = load(sys.argv[1]); r, _ = load(sys.argv[2])
worst = 0.0
for site, ref in (('blocks.7.norm1.in', 'ln_in.blocks.7.norm1'), ('blocks.7.attn.qkv.in', 'ln_out.blocks.7.norm1')):
    x = r[ref].astype(np.float64).reshape(-1, r[ref].shape[-1])
    want = {'mean': x.mean(0), 'var': x.var(0), 'absmean': np.abs(x).mean(0), 'absmax': np.abs(x).max(0)}
    for k, w in want.items():
        worst = max(worst, float(np.max(np.abs(p[site + '.' + k] - w) / (1 + np.abs(w)))))
print(meta.get('images'), meta.get('data'), p['time.parts'].shape, len([k for k in p if k.endswith('.absmean')]), '%.3g' % worst)
PY
set -- $(cat "$TMP/np")
ok $([ "${1:-}" = 2 ] && [ "${2:-}" = fmnist:test ] && [ "${3:-}${4:-}" = "(12,9)" ] && [ "${5:-}" = 74 ]; echo $?) \
  "profile file: metadata, time.parts [12, 9], 74 layers ($(cat "$TMP/np"))"
w=${6:-x}
case $w in [0-9]*) ;; *) w=1 ;; esac   # no figure: fail
check_num "$w < 1e-4" "norm1 input and output statistics agree with numpy on the fixture (${6:-?})"
expect_status 0 "profile --json" "$NORMLAB" profile --model "$SMALL" --data fmnist:test --images 2 --json
expect_out '"parts": \["norm1", "qkv", "attention", "proj", "norm2", "fc1", "gelu", "fc2", "residual"\]' "the parts in order"
if command -v gnuplot >/dev/null 2>&1; then
  expect_status 0 "profile --plot (text)" "$NORMLAB" profile --model "$SMALL" --images 4 --plot --term dumb --layer blocks.0.mlp.fc2.in --stat var
  expect_out 'blocks\.0\.mlp\.fc2\.in: var per channel' "the histogram is drawn"
fi

# ratio 0: the same logits as the model
expect_status 0 "prune --ratio 0" "$NORMLAB" prune --model "$SMALL" --ratio 0 --profile "$TMP/p.safetensors" --output "$TMP/r0.safetensors"
expect_status 0 "forward of it" "$NORMLAB" forward --model "$TMP/r0.safetensors" --input "$REF" --output "$TMP/f0.safetensors"
d=$(python3 "$NL_SRCDIR/tests/cli/st_tool.py" maxdiff "$TMP/f0.safetensors" "$REF" logits)
check_num "$d <= 1e-4" "ratio 0 gives timm's logits ($d)"

# uniform ratio: every block 256 -> 154, and timm's shapes from the metadata
expect_status 0 "prune --ratio 0.4 --score magnitude" "$NORMLAB" prune --model "$SMALL" --ratio 0.4 --score magnitude --profile "$TMP/p.safetensors" --output "$TMP/u.safetensors"
expect_out '^MLP widths: 256 in every block -> 154 in every block$' "round(0.4 * 256) = 102 channels go"
python3 - "$TMP/u.safetensors" >"$TMP/shapes" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
ma = json.loads(h['__metadata__']['model_args'])
d = ma['embed_dim']; hid = int(d * ma['mlp_ratio'])   # timm: hidden_features = int(dim * mlp_ratio)
bad = [k for i in range(ma['depth']) for k, want in (
    ('blocks.%d.mlp.fc1.weight' % i, [hid, d]), ('blocks.%d.mlp.fc1.bias' % i, [hid]),
    ('blocks.%d.mlp.fc2.weight' % i, [d, hid]), ('blocks.%d.mlp.fc2.bias' % i, [d]))
    if h[k]['shape'] != want]
print(hid, len(bad), json.loads(h['__metadata__']['pruned'])['score'])
PY
ok $([ "$(cat "$TMP/shapes")" = "154 0 magnitude" ]; echo $?) "timm's layout from mlp_ratio: every MLP tensor has its shape ($(cat "$TMP/shapes"))"
expect_status 0 "eval of the uniform prune" "$NORMLAB" eval --model "$TMP/u.safetensors" --images 500 --json
top=$(sed 's/.*"top1": \([0-9.]*\).*/\1/' "$TMP/out")
check_num "$top > 0.5" "it still classifies (top-1 $top on 500 images)"

# budget: per-block widths, fits, loads in info, eval, replace, train
expect_status 0 "prune --budget-mb 1.9 --json" "$NORMLAB" prune --model "$SMALL" --budget-mb 1.9 --images 64 --output "$TMP/b.safetensors" --json
bytes=$(sed 's/.*"param_bytes": \([0-9]*\).*/\1/' "$TMP/out")
check_num "$bytes <= 1900000" "the parameters fit the budget ($bytes bytes)"
expect_out '"widths": \[[0-9, ]+\]' "the widths are reported"
expect_status 0 "info of the budget prune" "$NORMLAB" info --model "$TMP/b.safetensors"
expect_status 0 "eval of the budget prune" "$NORMLAB" eval --model "$TMP/b.safetensors" --images 500 --json
top=$(sed 's/.*"top1": \([0-9.]*\).*/\1/' "$TMP/out")
check_num "$top > 0.7" "it classifies (top-1 $top on 500 images)"
expect_status 0 "replace on the budget prune" "$NORMLAB" replace --model "$TMP/b.safetensors" --set dyt --output "$TMP/bd.safetensors"
expect_status 0 "eval of that" "$NORMLAB" eval --model "$TMP/bd.safetensors" --images 50
expect_status 0 "train the budget prune one epoch" "$NORMLAB" train --model "$TMP/b.safetensors" --images 256 --eval-images 200 --batch 64 --epochs 1 --threads 2 --output "$TMP/run"
expect_status 0 "eval of the trained checkpoint" "$NORMLAB" eval --model "$TMP/run/last.safetensors" --images 200 --json
top=$(sed 's/.*"top1": \([0-9.]*\).*/\1/' "$TMP/out")
check_num "$top > 0.6" "the trained pruned model classifies (top-1 $top on 200 images)"

# random is seeded: same seed, same file; another seed, another
for s in 1 1b 2; do
  expect_status 0 "prune random seed ${s%b}" "$NORMLAB" prune --model "$SMALL" --ratio 0.5 --score random --seed "${s%b}" --no-compensate --output "$TMP/rand$s.safetensors"
done
cmp -s "$TMP/rand1.safetensors" "$TMP/rand1b.safetensors"; ok $? "the same seed writes the same file"
! cmp -s "$TMP/rand1.safetensors" "$TMP/rand2.safetensors"; ok $? "another seed removes other channels"
# contribution score and least-squares refit: the profile's covariance of
# block 7's hidden channels over the first 2 test images, the kept channels
# and the refitted fc2 against numpy on the fixture's recorded norm2 output
expect_status 2 "prune --refit with a profile without covariance" "$NORMLAB" prune --model "$SMALL" --ratio 0.6 --refit --profile "$TMP/p.safetensors" --output "$TMP/x.st"
expect_err 'covariance of blocks\.0\.mlp\.fc2\.in' "it names the missing tensor"
expect_status 2 "prune --refit-damp -1" "$NORMLAB" prune --model "$SMALL" --ratio 0.6 --refit --refit-damp -1 --images 4 --output "$TMP/x.st"
expect_status 2 "prune --refit-damp without --refit" "$NORMLAB" prune --model "$SMALL" --ratio 0.6 --refit-damp 0.1 --images 4 --output "$TMP/x.st"
ok $([ ! -e "$TMP/x.st" ]; echo $?) "no file written by a failed refit"
expect_status 0 "profile --cov of 2 test images" "$NORMLAB" profile --model "$SMALL" --data fmnist:test --images 2 --batch 1 --cov --output "$TMP/pc.safetensors"
expect_status 0 "prune --score contribution --refit" "$NORMLAB" prune --model "$SMALL" --ratio 0.6 --score contribution --refit --refit-damp 0.05 --profile "$TMP/pc.safetensors" --output "$TMP/rf.safetensors" --json
expect_out '"refit": true, "refit_damp": 0.05' "the JSON says how fc2 was made"
$PY - "$TMP/pc.safetensors" "$REF" "$SMALL" "$TMP/rf.safetensors" >"$TMP/np" 2>&1 <<'PY'
import json, math, struct, sys
import numpy as np
def load(path):
    b = open(path, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    t = {}
    for k, v in h.items():
        if k == '__metadata__' or v['dtype'] != 'F32': continue
        a, e = v['data_offsets']
        t[k] = np.frombuffer(b[8 + n + a:8 + n + e], dtype='<f4').reshape(v['shape']).astype(np.float64)
    return t
p, r, m, q = (load(a) for a in sys.argv[1:5])
pre = 'blocks.7.mlp.'
y = r['ln_out.blocks.7.norm2'].reshape(-1, 64)
z = y @ m[pre + 'fc1.weight'].T + m[pre + 'fc1.bias']
h = 0.5 * z * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
mu = h.mean(0); C = np.cov(h, rowvar=False, bias=True)
cov_err = np.abs(p[pre + 'fc2.in.cov'] - C).max() / np.abs(C).max()
W2, b2 = m[pre + 'fc2.weight'], m[pre + 'fc2.bias']
score = np.diag(C) * (W2 ** 2).sum(0)
keep = np.sort(np.argsort(score, kind='stable')[round(0.6 * 256):])
rows = {tuple(w): j for j, w in enumerate(m[pre + 'fc1.weight'])}
kept = [rows.get(tuple(w), -1) for w in q[pre + 'fc1.weight']]
CK = C[np.ix_(keep, keep)]
lam = 0.05 * np.trace(CK) / len(keep)
Wn = W2 @ C[:, keep] @ np.linalg.inv(CK + lam * np.eye(len(keep)))
bn = b2 + W2 @ mu - Wn @ mu[keep]
w_err = np.abs(q[pre + 'fc2.weight'] - Wn).max() / np.abs(Wn).max()
b_err = np.abs(q[pre + 'fc2.bias'] - bn).max() / np.abs(bn).max()
print(int(list(keep) == kept), '%.3g' % cov_err, '%.3g' % max(w_err, b_err))
PY
set -- $(cat "$TMP/np")
ok $([ "${1:-}" = 1 ]; echo $?) "the kept channels are numpy's top 40 % of Var[h_j] ||W2[:,j]||^2 ($(cat "$TMP/np"))"
c=${2:-x}; case $c in [0-9]*) ;; *) c=1 ;; esac
check_num "$c < 1e-4" "the hidden channels' covariance agrees with numpy (${2:-?})"
w=${3:-x}; case $w in [0-9]*) ;; *) w=1 ;; esac
check_num "$w < 1e-3" "the refitted fc2 is numpy's ridge regression (${3:-?})"
expect_status 0 "eval of the refitted prune" "$NORMLAB" eval --model "$TMP/rf.safetensors" --images 500 --json
top=$(sed 's/.*"top1": \([0-9.]*\).*/\1/' "$TMP/out")
check_num "$top > 0.7" "it classifies (top-1 $top on 500 images)"
# attention heads: bad input exits 2 with a message and writes nothing
for h in 1 -0.2 1.5; do
  expect_status 2 "prune --heads $h" "$NORMLAB" prune --model "$SMALL" --heads "$h" --output "$TMP/x.st"
  expect_err "\-\-heads $h: the fraction of heads removed must be in \[0, 1\)" "the message gives the range"
done
expect_status 2 "prune --keep-heads 0" "$NORMLAB" prune --model "$SMALL" --keep-heads 0 --output "$TMP/x.st"
expect_err 'keep-heads 0: every block keeps at least one head' "it says why"
expect_status 2 "prune --keep-heads 3 of 2 heads" "$NORMLAB" prune --model "$SMALL" --keep-heads 3 --output "$TMP/x.st"
expect_err 'keep-heads 3: .* has 2 heads per block' "it names the model's heads"
expect_status 2 "prune --heads and --keep-heads together" "$NORMLAB" prune --model "$SMALL" --heads 0.5 --keep-heads 1 --output "$TMP/x.st"
expect_status 2 "prune --head-score variance" "$NORMLAB" prune --model "$SMALL" --heads 0.5 --head-score variance --output "$TMP/x.st"
expect_status 2 "prune --head-score without heads" "$NORMLAB" prune --model "$SMALL" --ratio 0.5 --head-score random --output "$TMP/x.st"
expect_status 2 "prune --score without MLP channels" "$NORMLAB" prune --model "$SMALL" --heads 0.5 --score magnitude --output "$TMP/x.st"
ok $([ ! -e "$TMP/x.st" ]; echo $?) "no file written by a failed head prune"

# contribution-scored heads with bias compensation against PyTorch: the
# fixture's timm forward in float64, its heads scored from the attention
# outputs of the 2 profiled test images, the removed heads' outputs replaced
# by their means; small: 1 of 2 heads kept, tiny (F16): round(0.3 * 3) = 1
# of 3 removed
TPY=
for p in python3 /usr/bin/python3; do
  if "$p" -c 'import torch, numpy' 2>/dev/null; then TPY=$p; break; fi
done
TINY=$NL_FIXTURES/vit_tiny_p4_fmnist.safetensors
expect_status 0 "prune --keep-heads 1 (small)" "$NORMLAB" prune --model "$SMALL" --keep-heads 1 --profile "$TMP/p.safetensors" --output "$TMP/h1.safetensors" --json
expect_out '"heads_before": \[2(, 2){11}\], "heads": \[1(, 1){11}\]' "every block keeps 1 of its 2 heads"
expect_status 0 "profile of the tiny model" "$NORMLAB" profile --model "$TINY" --data fmnist:test --images 2 --batch 1 --output "$TMP/pt.safetensors"
expect_status 0 "prune --heads 0.3 (tiny)" "$NORMLAB" prune --model "$TINY" --heads 0.3 --profile "$TMP/pt.safetensors" --output "$TMP/ht.safetensors"
expect_out '^heads: 3 in every block -> 2 in every block \(head dim 64\)$' "round(0.3 * 3) = 1 head goes per block"
for k in small:"$SMALL":h1 tiny:"$TINY":ht; do
  name=${k%%:*}; rest=${k#*:}; src=${rest%:*}; out=${rest##*:}
  expect_status 0 "forward of the head-pruned $name model" "$NORMLAB" forward --model "$TMP/$out.safetensors" --input "${src%.safetensors}_ref.safetensors" --output "$TMP/f$out.safetensors"
  if [ -n "$TPY" ]; then
    r=$("$TPY" "$NL_SRCDIR/tests/cli/headprune_ref.py" "$src" "${src%.safetensors}_ref.safetensors" "$TMP/f$out.safetensors" 1 2 2>&1 | tail -1)
    d=${r##* }; case $d in [0-9]*) ;; *) d=1 ;; esac
    check_num "$d <= 1e-4" "$name: logits equal PyTorch's with the lowest-contribution head of each block replaced by its mean ($r)"
  else
    echo "ok $((_n = _n + 1)) # SKIP PyTorch reference: no python3 with torch and numpy"
  fi
done

# the head-pruned checkpoint: shapes, metadata, info, cost, eval, train
python3 - "$TMP/h1.safetensors" >"$TMP/shapes" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
m = h['__metadata__']
bad = [k for i in range(12) for k, want in (
    ('blocks.%d.attn.qkv.weight' % i, [96, 64]), ('blocks.%d.attn.qkv.bias' % i, [96]),
    ('blocks.%d.attn.proj.weight' % i, [64, 32]), ('blocks.%d.attn.proj.bias' % i, [64]))
    if h[k]['shape'] != want]
print(len(bad), json.loads(m['model_args'])['num_heads'], m['head_counts'], json.loads(m['pruned'])['heads'] == [1] * 12)
PY
ok $([ "$(cat "$TMP/shapes")" = "0 2 [1,1,1,1,1,1,1,1,1,1,1,1] True" ]; echo $?) "qkv [3 x 32, 64], proj [64, 32]; num_heads 2, head_counts and 'pruned' say 1 per block ($(cat "$TMP/shapes"))"
expect_status 0 "info of the head-pruned model" "$NORMLAB" info --model "$TMP/h1.safetensors"
expect_out '^heads per block: 1 1 1 1 1 1 1 1 1 1 1 1 \(pruned; head dim 32\)$' "info lists the heads per block"
# by hand (T 17, D 64, A 32, 1 head): qkv 2*17*64*96 = 208896, attention
# 4*17^2*32 + 17*(24*17+1) = 43945, proj 2*17*32*64 = 69632 per block
expect_status 0 "cost of the head-pruned model" "$NORMLAB" cost --model "$TMP/h1.safetensors" --json
python3 - "$TMP/out" >"$TMP/c" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r = {(x['part'], x.get('block', -1)): x for x in j['rows']}
print(r[('qkv', 3)]['flops'], r[('attention', 3)]['flops'], r[('proj', 3)]['flops'], r[('qkv', 3)]['params'], r[('proj', 3)]['params'], j['head_counts'][3])
PY
ok $([ "$(cat "$TMP/c")" = "208896 43945 69632 6240 2112 1" ]; echo $?) "cost rows of block 3 by hand ($(cat "$TMP/c"))"
expect_status 0 "eval of the head-pruned model" "$NORMLAB" eval --model "$TMP/h1.safetensors" --images 500 --json
top=$(sed 's/.*"top1": \([0-9.]*\).*/\1/' "$TMP/out")
check_num "$top > 0.3" "it classifies (top-1 $top on 500 images)"
expect_status 0 "train the head-pruned model one epoch" "$NORMLAB" train --model "$TMP/h1.safetensors" --images 256 --eval-images 200 --batch 64 --epochs 1 --threads 2 --output "$TMP/hrun"
expect_status 0 "info of the trained checkpoint" "$NORMLAB" info --model "$TMP/hrun/last.safetensors"
expect_out '^heads per block: 1 1 1 1 1 1 1 1 1 1 1 1 ' "training keeps the head counts"
# the quantized and BF16 passes run the pruned block shapes: logits near the
# FP32 pass's (the unpruned model's W8 and BF16 logits differ from FP32 by
# about 0.02 too)
expect_status 0 "quantize the head-pruned model (W8)" "$NORMLAB" quantize --model "$TMP/h1.safetensors" --weights 8 --images 8 --output "$TMP/h1q.safetensors"
expect_status 0 "forward of that" "$NORMLAB" forward --model "$TMP/h1q.safetensors" --input "$REF" --output "$TMP/fh1q.safetensors"
d=$(python3 "$NL_SRCDIR/tests/cli/st_tool.py" maxdiff "$TMP/fh1q.safetensors" "$TMP/fh1.safetensors" logits)
check_num "$d < 0.1" "W8 logits of the head-pruned model near its FP32 ones ($d)"
expect_status 0 "quantize the head-pruned model (W4, packed columns)" "$NORMLAB" quantize --model "$TMP/h1.safetensors" --weights 4 --images 8 --output "$TMP/h1q4.safetensors"
expect_status 0 "info of that" "$NORMLAB" info --model "$TMP/h1q4.safetensors"
expect_out '^heads per block: 1 1 1 1 1 1 1 1 1 1 1 1 ' "the W4 checkpoint keeps the head counts"
if grep -q avx512_bf16 /proc/cpuinfo 2>/dev/null || grep -q amx_bf16 /proc/cpuinfo 2>/dev/null; then
  expect_status 0 "forward --precision bf16 of the head-pruned model" "$NORMLAB" forward --model "$TMP/h1.safetensors" --precision bf16 --input "$REF" --output "$TMP/fh1b.safetensors"
  d=$(python3 "$NL_SRCDIR/tests/cli/st_tool.py" maxdiff "$TMP/fh1b.safetensors" "$TMP/fh1.safetensors" logits)
  check_num "$d < 0.1" "BF16 logits of the head-pruned model near its FP32 ones ($d)"
else
  echo "ok $((_n = _n + 1)) # SKIP BF16: the CPU has no BF16 instructions"
fi
expect_status 0 "attention reuse on the head-pruned model (equal heads)" "$NORMLAB" reuse --model "$TMP/h1.safetensors" --blocks 11 --eval-images 50 --json
expect_status 2 "export --to pytorch of a head-pruned model" "$NORMLAB" export --model "$TMP/h1.safetensors" --to pytorch --output "$TMP/hexp"
expect_err 'blocks\.0 has 1 of 2 attention heads .*timm' "it names the block and the reason"
ok $([ ! -e "$TMP/hexp" ]; echo $?) "no export directory left behind"
# random heads follow the seed; MLP channels and heads in one prune
for s in 1 1b 2; do
  expect_status 0 "prune heads at random, seed ${s%b}" "$NORMLAB" prune --model "$TINY" --heads 0.5 --head-score random --seed "${s%b}" --no-compensate --output "$TMP/hrand$s.safetensors"
done
cmp -s "$TMP/hrand1.safetensors" "$TMP/hrand1b.safetensors"; ok $? "the same seed writes the same file"
! cmp -s "$TMP/hrand1.safetensors" "$TMP/hrand2.safetensors"; ok $? "another seed removes other heads"
expect_status 0 "prune --ratio 0.4 --keep-heads 1" "$NORMLAB" prune --model "$SMALL" --ratio 0.4 --score magnitude --keep-heads 1 --profile "$TMP/p.safetensors" --output "$TMP/mh.safetensors"
expect_out '^MLP widths: 256 in every block -> 154 in every block$' "the MLP channels go"
expect_out '^heads: 2 in every block -> 1 in every block' "and the heads"
expect_status 0 "eval of the MLP and head prune" "$NORMLAB" eval --model "$TMP/mh.safetensors" --images 200 --json
done_testing
