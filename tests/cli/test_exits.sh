#!/bin/sh
# exits: fit exit heads on the fixture, the early-exit pass at tau = 1 gives
# the fixture's test predictions and the plain pass's logits, FLOPs as worked
# out by hand, the oracle never runs more blocks than the rule where both give
# the full-depth prediction, plot exits --dump; bad input exits 2.
. "$NL_SRCDIR/tests/cli/lib.sh"
SMALL=$NL_FIXTURES/vit_small_p7_fmnist.safetensors
TINY=$NL_FIXTURES/vit_tiny_p4_fmnist.safetensors
REF=$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors
if ! have_fixtures || [ ! -f "${NL_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}/train-images-idx3-ubyte.gz" ]; then
  echo "1..0 # SKIP fixtures or Fashion-MNIST missing"
  exit 0
fi
PY=python3
expect_status 0 "exits fit --json" "$NORMLAB" exits fit --model "$SMALL" --images 400 --epochs 2 \
  --output "$TMP/e.safetensors" --json
expect_out '"norm": "layernorm"' "heads of the model's norm kind"
expect_out '"loss": \[([0-9.e-]+, ){11}[0-9.e-]+\]' "one loss per block"
$PY - "$TMP/e.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
m = json.loads(h['__metadata__']['normlab_exits'])
assert m['depth'] == 12 and m['dim'] == 64 and m['classes'] == 10 and m['norm'] == 'layernorm', m
assert h['exits.3.head.weight']['shape'] == [10, 64] and h['exits.11.norm.bias']['shape'] == [64]
assert 'exits.12.head.weight' not in h
PY
ok $? "safetensors with every exit and the metadata"

# tau 1: never exits; the model's own predictions and logits
expect_status 0 "eval --tau 1" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/e.safetensors" \
  --tau 1 --eval-images 1000 --per-image "$TMP/t1.csv" --json
expect_out '"identical_logits": 1000' "logits identical to the plain forward pass"
expect_out '"exit": \{[^}]*"mean_blocks": 12' "every image runs 12 blocks"
$PY - "$TMP/t1.csv" "$REF" <<'PY'
import json, struct, sys
rows = [l.split(',') for l in open(sys.argv[1]).read().split('\n')[1:] if l]
b = open(sys.argv[2], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
t = h['test_predictions']; s, e = t['data_offsets']
pred = b[8 + n + s: 8 + n + e]
assert len(rows) == 1000
bad = [r for r in rows if int(r[3]) != pred[int(r[0])]]
assert not bad, bad[:3]
PY
ok $? "predictions at tau 1 are the fixture's test_predictions"

# tau 0.9 with the oracle: FLOPs by hand, oracle below the rule where both agree with full depth
expect_status 0 "eval --tau 0.9 --oracle" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/e.safetensors" \
  --tau 0.9 --oracle --eval-images 500 --per-image "$TMP/t9.csv" --json
cp "$TMP/out" "$TMP/t9.json"
$PY - "$TMP/t9.json" "$TMP/t9.csv" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
embed, block, head = 2*16*64*49, 2*17*64*192 + 4*17*17*64 + 2*17*64*64 + 4*17*64*256, 2*64*10
assert abs(j['full']['mflops_per_image'] - (embed + 12*block + head) / 1e6) < 1e-4, j['full']
b = j['exit']['mean_blocks']
assert b < 12, b
assert abs(j['exit']['mflops_per_image'] - (embed + b*block + b*head) / 1e6) < 1e-3, j['exit']
ob = j['oracle']['mean_blocks']
assert abs(j['oracle']['mflops_per_image'] - (embed + ob*block + head) / 1e6) < 1e-3
assert j['oracle']['top1'] == j['full']['top1']
rows = [list(map(int, l.split(','))) for l in open(sys.argv[2]).read().split('\n')[1:] if l]
tot = 0
for i, lab, blocks, pred, full, orc in rows:
    assert 1 <= blocks <= 12 and 1 <= orc <= 12
    if pred == full: assert blocks >= orc, (i, blocks, orc)
    tot += blocks
assert abs(tot / len(rows) - b) < 1e-3
assert len(set(r[2] for r in rows)) >= 3
PY
ok $? "FLOPs by hand; the oracle never later than the rule on agreeing images"

expect_status 0 "eval --max-drop 0.3" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/e.safetensors" \
  --max-drop 0.3 --holdout 500 --eval-images 200
expect_out '^tau [0-9.e-]+ picked on 500 held-out training images' "names the threshold and the held-out images"

expect_status 0 "plot exits --dump" "$NORMLAB" plot exits --model "$SMALL" --exits "$TMP/e.safetensors" \
  --eval-images 300 --dump
$PY - "$TMP/out" <<'PY'
import sys
rows = [l.split(',') for l in open(sys.argv[1]).read().split('\n') if l]
assert rows[0] == ['series', 'tau', 'mflops', 'top1', 'mean_blocks', 'quantile']
assert not [r for r in rows if r[0] in ('predictor', 'predictor+rule', 'policy')]  # none in the file
rule = [r for r in rows if r[0] == 'rule']; full = [r for r in rows if r[0] == 'full'][0]
orc = [r for r in rows if r[0] == 'oracle'][0]
assert len(rule) > 100
assert abs(float(full[2]) - 21.043456) < 1e-4 and float(full[4]) == 12
assert orc[3] == full[3] and float(orc[4]) <= 12
last = rule[-1]
assert float(last[1]) == 1 and last[3] == full[3] and float(last[4]) == 12
assert float(rule[0][4]) == 1  # tau 0.1: every image leaves after block 1
PY
ok $? "the rule's sweep, the oracle and full depth"

# the complexity predictor: trained on the oracle's blocks of the fit images, saved, run
expect_status 0 "exits fit --predictor" "$NORMLAB" exits fit --model "$SMALL" --images 400 --epochs 2 \
  --predictor --predictor-block 1 --predictor-epochs 8 --output "$TMP/q.safetensors" --json
cp "$TMP/out" "$TMP/q.json"
$PY - "$TMP/q.json" "$TMP/q.safetensors" <<'PY'
import json, struct, sys
j = json.load(open(sys.argv[1]))
p = j['predictor']
assert p['block'] == 1 and len(p['epoch_loss']) == 8 and 1 <= p['oracle_mean_blocks'] <= 12, p
assert p['epoch_loss'][-1] < p['epoch_loss'][0], p
b = open(sys.argv[2], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
m = json.loads(h['__metadata__']['normlab_exits'])
assert m['predictor_block'] == 1, m
assert h['predictor.weight']['shape'] == [12, 64] and h['predictor.bias']['shape'] == [12]
assert h['predictor.mean']['shape'] == [64] and h['predictor.std']['shape'] == [64]
PY
ok $? "its loss falls; its tensors and block in the file"
# q 1: never early, the plain pass's logits
expect_status 0 "eval --predictor --quantile 1" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/q.safetensors" \
  --predictor --quantile 1 --eval-images 500 --json
expect_out '"identical_logits": 500' "logits identical to the plain forward pass"
expect_out '"exit": \{[^}]*"mean_blocks": 12' "every image runs 12 blocks"
# q 0.9, tau 0.9 with the oracle: blocks from the per-image file; never before block 1
expect_status 0 "eval --predictor --quantile 0.9 --tau 0.9" "$NORMLAB" exits eval --model "$SMALL" \
  --exits "$TMP/q.safetensors" --predictor --quantile 0.9 --tau 0.9 --oracle --eval-images 300 \
  --per-image "$TMP/q9.csv" --json
cp "$TMP/out" "$TMP/q9.json"
$PY - "$TMP/q9.json" "$TMP/q9.csv" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j['rule'].startswith('predictor') and j['quantile'] == 0.9 and j['predictor_block'] == 1
rows = [list(map(int, l.split(','))) for l in open(sys.argv[2]).read().split('\n')[1:] if l]
assert all(2 <= r[2] <= 12 for r in rows)  # block F = 1: the first check after block 2
b = sum(r[2] for r in rows) / len(rows)
assert abs(j['exit']['mean_blocks'] - b) < 1e-3
embed, block, head, pred = 2*16*64*49, 2*17*64*192 + 4*17*17*64 + 2*17*64*64 + 4*17*64*256, 2*64*10, 2*64*12
h = j['exit']['mean_heads']
assert 1 <= h <= b
assert abs(j['exit']['mflops_per_image'] - (embed + b*block + h*head + pred) / 1e6) < 1e-3, j['exit']
qs = [r['quantile'] for r in j['predictor_sweep']]
assert qs[0] == 0 and qs[-1] == 1 and j['predictor_sweep'][-1]['mean_blocks'] == 12
PY
ok $? "blocks, heads and FLOPs by hand; the predictor's sweep"
expect_status 0 "eval --predictor --max-drop 0.5 --oracle" "$NORMLAB" exits eval --model "$SMALL" \
  --exits "$TMP/q.safetensors" --predictor --max-drop 0.5 --holdout 300 --eval-images 200 --oracle --json
$PY - "$TMP/out" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j['holdout']['images'] == 300 and 0 <= j['quantile'] <= 1
assert j['holdout']['top1_full'] - j['holdout']['top1'] <= 0.005 + 1e-9, j['holdout']
pk = j['picks']
assert pk[0]['max_drop'] == 0 and 'predictor' in pk[0] and 'rule' in pk[0]
assert pk[-1]['rule']['mean_blocks'] <= pk[0]['rule']['mean_blocks']
PY
ok $? "q and tau picked on the held-out images within the drop; the picks at other drops"
expect_status 0 "plot exits --dump with a predictor" "$NORMLAB" plot exits --model "$SMALL" \
  --exits "$TMP/q.safetensors" --eval-images 300 --holdout 300 --dump
$PY - "$TMP/out" "$TMP/q9.json" <<'PY'
import json, sys
rows = [l.split(',') for l in open(sys.argv[1]).read().split('\n') if l][1:]
pr = [r for r in rows if r[0] == 'predictor']; pk = [r for r in rows if r[0] == 'predictor+rule']
full = [r for r in rows if r[0] == 'full'][0]
assert len(pr) == len(json.load(open(sys.argv[2]))['predictor_sweep']) and len(pk) == 15
assert float(pr[0][5]) == 0 and float(pr[-1][5]) == 1
assert pr[-1][3] == full[3] and float(pr[-1][4]) == 12  # q 1: full depth
assert float(pr[0][4]) == 2  # q 0, tau 0: every image stops at block F = 1, after 2 blocks
assert all(1 <= float(r[4]) <= 12 and 0 <= float(r[5]) <= 1 for r in pk)
PY
ok $? "the predictor alone over q, the held-out picks with the rule"
expect_status 2 "--predictor without a predictor" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/e.safetensors" \
  --predictor --quantile 0.5
expect_err 'no complexity predictor' "says so"
expect_status 2 "--quantile above 1" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/q.safetensors" \
  --predictor --quantile 1.5
expect_err 'quantile 1.5: .*\[0, 1\]' "names the range"
expect_status 2 "--quantile without --predictor" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/q.safetensors" \
  --quantile 0.5 --tau 0.9
expect_status 2 "--predictor with neither --quantile nor --max-drop" "$NORMLAB" exits eval --model "$SMALL" \
  --exits "$TMP/q.safetensors" --predictor
expect_status 2 "--predictor --max-drop with --tau" "$NORMLAB" exits eval --model "$SMALL" \
  --exits "$TMP/q.safetensors" --predictor --max-drop 0.3 --tau 0.9
expect_status 2 "--predictor and --policy" "$NORMLAB" exits eval --model "$SMALL" \
  --exits "$TMP/q.safetensors" --predictor --policy
expect_status 2 "--predictor-block past the last block" "$NORMLAB" exits fit --model "$SMALL" --images 50 \
  --predictor --predictor-block 12 --output "$TMP/x.safetensors"
$PY - "$TMP/q.safetensors" "$TMP/qbad.safetensors" "$TMP/qblk.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
def write(path, h, data):
    hb = json.dumps(h).encode(); hb += b' ' * (-len(hb) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(hb)) + hb + data)
data = b[8 + n:]
# predictor.weight [11, 64] (its first 11 rows) instead of [12, 64]; the data laid out again
h1 = json.loads(b[8:8 + n]); meta = h1.pop('__metadata__'); out = b''
for k, t in h1.items():
    s, e = t['data_offsets']; v = data[s:e]
    if k == 'predictor.weight':
        t['shape'] = [11, 64]; v = v[:11 * 64 * 4]
    t['data_offsets'] = [len(out), len(out) + len(v)]; out += v
h1['__metadata__'] = meta
write(sys.argv[2], h1, out)
h2 = json.loads(b[8:8 + n]); m = json.loads(h2['__metadata__']['normlab_exits'])
m['predictor_block'] = 12; h2['__metadata__']['normlab_exits'] = json.dumps(m)
write(sys.argv[3], h2, data)
PY
ok $? "predictor files with a wrong shape and a wrong block"
expect_status 2 "a predictor of the wrong shape" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/qbad.safetensors" \
  --predictor --quantile 0.5
expect_err "predictor.weight' is not \[12, 64\]" "names the tensor and the shape"
expect_status 2 "a predictor block past the last block" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/qblk.safetensors" \
  --predictor --quantile 0.5
expect_err "predictor_block" "names the field"

# the block policy: trained, saved, run
expect_status 0 "exits fit --policy" "$NORMLAB" exits fit --model "$SMALL" --images 200 --epochs 1 \
  --policy --policy-epochs 1 --output "$TMP/p.safetensors"
expect_err 'exits policy: epoch 1/1: reward' "a line per policy epoch"
expect_status 0 "exits eval --policy" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/p.safetensors" \
  --policy --eval-images 100 --json
expect_out '"rule": "policy"' "the policy's run"
expect_status 0 "exits fit --policy-head exit --policy-init-tau 0.9" "$NORMLAB" exits fit --model "$SMALL" \
  --images 200 --epochs 1 --policy --policy-head exit --policy-init-tau 0.9 --policy-epochs 0 \
  --output "$TMP/pi.safetensors"
$PY - "$TMP/pi.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
m = json.loads(h['__metadata__']['normlab_exits'])
assert m['policy_head'] == 'last_exit' and m['policy_init_tau'] == 0.9, m
assert h['policy.weight']['shape'] == [11, 64]
PY
ok $? "the policy's head and start in the metadata"
expect_status 0 "exits eval --policy (exit head)" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/pi.safetensors" \
  --policy --eval-images 100
expect_out 'the exit head of the last block run' "says where the prediction comes from"
expect_status 0 "exits fit --policy-baseline greedy" "$NORMLAB" exits fit --model "$SMALL" --images 100 --epochs 1 \
  --policy --policy-baseline greedy --policy-lr 0.001 --policy-epochs 1 --output "$TMP/pg.safetensors"
expect_err 'exits policy: epoch 1/1: reward' "trains"
expect_status 2 "--policy-baseline other" "$NORMLAB" exits fit --model "$SMALL" --images 50 --policy \
  --policy-baseline median --output "$TMP/x.safetensors"
expect_err 'policy-baseline median: average or greedy' "names the choices"
expect_status 2 "--policy-lr 0" "$NORMLAB" exits fit --model "$SMALL" --images 50 --policy \
  --policy-lr 0 --output "$TMP/x.safetensors"
expect_status 2 "--policy-head other" "$NORMLAB" exits fit --model "$SMALL" --images 50 --policy \
  --policy-head middle --output "$TMP/x.safetensors"
expect_err 'policy-head middle: final or exit' "names the choices"
expect_status 2 "--policy-epochs 0 without a start" "$NORMLAB" exits fit --model "$SMALL" --images 50 --policy \
  --policy-epochs 0 --output "$TMP/x.safetensors"
expect_status 2 "--policy without a policy" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/e.safetensors" --policy
expect_err 'no block policy' "says so"
expect_status 2 "--policy with --tau" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/p.safetensors" --policy --tau 0.5

# bad input: exit 2 and a clear message
expect_status 2 "--tau above 1" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/e.safetensors" --tau 1.5
expect_err 'tau 1.5: .*\[0, 1\]' "names the range"
expect_status 2 "--tau below 0" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/e.safetensors" --tau -0.1
expect_status 2 "both --tau and --max-drop" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/e.safetensors" \
  --tau 0.9 --max-drop 0.3
expect_err 'one of --tau T and --max-drop P' "says to give one"
expect_status 2 "neither" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/e.safetensors"
expect_status 2 "no --exits" "$NORMLAB" exits eval --model "$SMALL" --tau 0.9
expect_err 'exits' "names --exits"
expect_status 2 "a model file as exits" "$NORMLAB" exits eval --model "$SMALL" --exits "$SMALL" --tau 0.9
expect_err 'not an exits file' "says what the file lacks"
expect_status 2 "another subcommand" "$NORMLAB" exits bogus
expect_err "unknown subcommand 'bogus'" "names it"
expect_status 2 "fit --images 0" "$NORMLAB" exits fit --model "$SMALL" --images 0 --output "$TMP/x.safetensors"
expect_status 2 "fit on held-out images" "$NORMLAB" exits fit --model "$SMALL" --images 58000 --output "$TMP/x.safetensors"
expect_err 'held out' "says why"
[ ! -e "$TMP/x.safetensors" ]; ok $? "nothing written"
expect_status 0 "tiny exits" "$NORMLAB" exits fit --model "$TINY" --images 40 --epochs 1 --output "$TMP/tiny.safetensors"
expect_status 2 "exits of another model" "$NORMLAB" exits eval --model "$SMALL" --exits "$TMP/tiny.safetensors" --tau 0.9
expect_err 'another model: depth 12, width 192.*width 64' "names both shapes"
expect_status 2 "plot exits of another model" "$NORMLAB" plot exits --model "$SMALL" --exits "$TMP/tiny.safetensors" --dump
"$NORMLAB" replace --model "$SMALL" --set dyt --output "$TMP/dyt.safetensors" >/dev/null 2>&1
expect_status 2 "exits on a model with other weights" "$NORMLAB" exits eval --model "$TMP/dyt.safetensors" \
  --exits "$TMP/e.safetensors" --tau 0.9
expect_err 'layernorm norms, the model.s norm is dyt' "names both norm kinds"
$PY - "$SMALL" "$TMP/other.safetensors" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
at = 8 + n + (len(b) - 8 - n) // 2 // 4 * 4
b[at:at + 4] = struct.pack('<f', struct.unpack('<f', bytes(b[at:at + 4]))[0] + 0.5)
open(sys.argv[2], 'wb').write(b)
PY
expect_status 2 "exits fitted on other weights" "$NORMLAB" exits eval --model "$TMP/other.safetensors" \
  --exits "$TMP/e.safetensors" --tau 0.9 --eval-images 10
expect_err 'fitted on another model .*--any-weights' "says so and how to go on"
expect_status 0 "--any-weights" "$NORMLAB" exits eval --model "$TMP/other.safetensors" \
  --exits "$TMP/e.safetensors" --tau 0.9 --eval-images 10 --any-weights
# attention reuse
expect_status 0 "reuse --blocks 11" "$NORMLAB" reuse --model "$SMALL" --blocks 11 --eval-images 100 --json
expect_out '"plan": "11<10"' "the plan (block 11 applies block 10's probabilities)"
expect_out '"mflops_reuse": 20.7279' "FLOPs by hand: 21.043456 - 0.31552"
expect_status 2 "reuse block 0" "$NORMLAB" reuse --model "$SMALL" --blocks 0
expect_err 'block 0' "names it"
expect_status 2 "reuse a block that does not exist" "$NORMLAB" reuse --model "$SMALL" --blocks 3,12
expect_err 'block 12 does not exist' "names it"
expect_status 2 "reuse without a plan" "$NORMLAB" reuse --model "$SMALL"
expect_status 2 "reuse its own attention" "$NORMLAB" reuse --model "$SMALL" --blocks 5:5
expect_err 'block 5 cannot reuse the attention of block 5' "names it"
expect_status 2 "reuse a later block's attention" "$NORMLAB" reuse --model "$SMALL" --blocks 5:7
expect_err 'only an earlier block' "says which may"
# transformation blocks, the plan in a checkpoint, the EViT baseline
expect_status 0 "reuse --tb linear --output" "$NORMLAB" reuse --model "$SMALL" --blocks 6,7 --tb linear \
  --fit-images 200 --eval-images 100 --evit-blocks 4,8 --keep 0.5 --output "$TMP/r.safetensors" --json
expect_out '"plan": "6<5:linear,7<6:linear"' "TBs on the block before"
# by hand (T 17, D 64): each TB block saves qkv 417792 + attention 73984 +
# proj 139264 - its own 139264 = 491776
expect_out '"mflops_reuse": 20.0599' "FLOPs by hand: 21.043456 - 2 x 0.491776"
# EViT keep 0.5 before blocks 4 and 8: 17 tokens, then 1 + 8 + 1 = 10, then
# 1 + ceil(4.5) + 1 = 7; a block at T tokens: 98304 T + 256 T^2
expect_out '"mflops_evit": 13.9195' "EViT FLOPs by hand: 100352 + 4 (1745152 + 1008640 + 700672) + 1280"
top1=$(sed -n 's/.*"top1_reuse": \([0-9.]*\).*/\1/p' "$TMP/out")
expect_status 0 "the saved plan: reuse --model R" "$NORMLAB" reuse --model "$TMP/r.safetensors" --eval-images 100 --json
expect_out "\"top1_reuse\": $top1" "same top-1 from the checkpoint"
expect_status 0 "eval follows the plan" "$NORMLAB" eval --model "$TMP/r.safetensors" --images 100 --json
expect_out "\"top1\": $top1" "eval's top-1 is the plan's"
expect_status 0 "cost --model R" "$NORMLAB" cost --model "$TMP/r.safetensors"
expect_out 'blocks.7 <- 6 +linear +491776' "per-block savings"
expect_status 0 "exits on a planned model, tau 1" "$NORMLAB" exits eval --model "$TMP/r.safetensors" \
  --exits "$TMP/e.safetensors" --tau 1 --eval-images 100 --json
expect_out '"identical_logits": 100' "the staged pass follows the plan: the plain pass's logits"
$PY - "$TMP/r.safetensors" "$TMP/bad.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
r = json.loads(h['__metadata__']['reuse'])
assert [(e['block'], e['source'], e['tb']) for e in r['blocks']] == [(6, 5, 'linear'), (7, 6, 'linear')], r
assert h['reuse.6.tb.weight']['shape'] == [64, 64] and h['reuse.7.tb.bias']['shape'] == [64]
r['blocks'][1]['source'] = 9
h['__metadata__']['reuse'] = json.dumps(r)
hb = json.dumps(h).encode(); hb += b' ' * (-len(hb) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hb)) + hb + b[8 + n:])
PY
ok $? "the plan and TB tensors in the checkpoint"
expect_status 2 "a checkpoint whose plan reuses a later block" "$NORMLAB" eval --model "$TMP/bad.safetensors" --images 10
expect_err 'block 7 cannot reuse the attention of block 9' "names the file's block"
expect_status 2 "--keep outside (0, 1]" "$NORMLAB" reuse --model "$SMALL" --blocks 5 --evit-blocks 4 --keep 1.5
expect_status 2 "--tb unknown" "$NORMLAB" reuse --model "$SMALL" --blocks 5 --tb conv
done_testing
