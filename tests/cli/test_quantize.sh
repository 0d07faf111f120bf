#!/bin/sh
# quantize: the command on the bundled model (W8, W4 AWQ, W8A8), the file
# format (dtypes, shapes, metadata), eval / info / bench forward of the
# result, and bad flags and corrupt quantized files: exit 2, a clear message.
. "$NL_SRCDIR/tests/cli/lib.sh"
ST="python3 $NL_SRCDIR/tests/cli/st_tool.py"
SMALL=$NL_SRCDIR/samples/models/vit_small_p7_fmnist.safetensors
Q=$TMP/w8.safetensors

expect_status 0 "quantize --weights 8" "$NORMLAB" quantize --model "$SMALL" --weights 8 --images 8 --output "$Q"
expect_out '^precision: W8 rtn weight-only' "the precision is reported"
expect_out '^model bytes: 2419752 -> ' "model bytes before and after"
python3 - "$Q" >"$TMP/meta" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
q = json.loads(h['__metadata__']['quantization'])
w, s, z = h['blocks.0.attn.qkv.weight'], h['blocks.0.attn.qkv.weight_scale'], h['blocks.0.attn.qkv.weight_zero']
print(q['bits'], len(q['layers']), w['dtype'], w['shape'], s['dtype'], s['shape'], z['dtype'], h['head.weight']['dtype'])
PY
ok $([ "$(cat "$TMP/meta")" = "8 48 I8 [192, 64] F32 [192, 1] I8 F32" ]; echo $?) "file: I8 weights, per-channel F32 scales, I8 zero points, FP32 head ($(cat "$TMP/meta"))"
expect_status 0 "eval of the W8 model" "$NORMLAB" eval --model "$Q" --images 500 --batch 100 --json
t=$(sed 's/.*"top1": \([0-9.]*\).*/\1/' "$TMP/out")
check_num "$t >= 0.84" "W8 top-1 on 500 test images ($t)"
expect_status 0 "info of the W8 model" "$NORMLAB" info "$Q"

expect_status 0 "quantize --weights 4 --method awq --keep-fp16 head" "$NORMLAB" quantize --model "$SMALL" \
  --weights 4 --group 32 --method awq --keep-fp16 head,patch_embed --images 8 --output "$TMP/w4.safetensors"
expect_out '^precision: W4 g32 awq weight-only.*FP16: head patch_embed' "W4 AWQ precision with the FP16 parts"
python3 - "$TMP/w4.safetensors" >"$TMP/meta" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
w, s = h['blocks.3.mlp.fc2.weight'], h['blocks.3.mlp.fc2.weight_scale']
print(w['dtype'], w['shape'], s['shape'], h['head.weight']['dtype'], 'blocks.3.mlp.fc2.input_scale' in h)
PY
ok $([ "$(cat "$TMP/meta")" = "U8 [64, 128] [64, 8] F16 True" ]; echo $?) "file: 4-bit packed two per byte, groups of 32, FP16 head, fc2's AWQ input scale ($(cat "$TMP/meta"))"
# 3 bits: 8 weights in 3 bytes (little-endian bit string per row), unpacked
# by numpy and dequantized: within half a step of the FP32 weights
expect_status 0 "quantize --weights 3 --group 32" "$NORMLAB" quantize --model "$SMALL" --weights 3 --group 32 --images 8 --output "$TMP/w3.safetensors"
expect_out '^precision: W3 g32 rtn weight-only' "W3 precision"
PY=python3
python3 -c "import numpy" 2>/dev/null || PY=/usr/bin/python3
$PY - "$TMP/w3.safetensors" "$SMALL" >"$TMP/meta" 2>&1 <<'PY'
import json, struct, sys
import numpy as np
def load(path):
    b = open(path, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    dt = {'F32': '<f4', 'U8': 'u1', 'I8': 'i1'}
    t = {k: np.frombuffer(b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]], dtype=dt[v['dtype']]).reshape(v['shape'])
         for k, v in h.items() if k != '__metadata__' and v['dtype'] in dt}
    return h, t
h, q = load(sys.argv[1]); _, f = load(sys.argv[2])
worst = 0.0
for name in ('blocks.0.attn.qkv', 'blocks.11.mlp.fc2'):
    w, s, z = q[name + '.weight'], q[name + '.weight_scale'], q[name + '.weight_zero']
    oc, ic = w.shape[0], w.shape[1] * 8 // 3
    bits = np.unpackbits(w, axis=1, bitorder='little').reshape(oc, ic, 3)
    v = bits[:, :, 0] + 2 * bits[:, :, 1] + 4 * bits[:, :, 2]
    g = ic // s.shape[1]
    deq = np.repeat(s, g, axis=1) * (v - np.repeat(z.astype(np.float64), g, axis=1))
    worst = max(worst, float(np.max(np.abs(deq - f[name + '.weight']) / np.repeat(s, g, axis=1))))
print(h['blocks.0.attn.qkv.weight']['dtype'], h['blocks.0.attn.qkv.weight']['shape'], h['blocks.0.attn.qkv.weight_scale']['shape'], '%.3f' % worst)
PY
set -- $(cat "$TMP/meta")
ok $([ "${1:-}${2:-}${3:-}${4:-}${5:-}" = "U8[192,24][192,2]" ]; echo $?) "file: 3-bit rows of 24 bytes for 64 inputs, 2 groups of 32 ($(cat "$TMP/meta"))"
w=${6:-x}; case $w in [0-9]*) ;; *) w=9 ;; esac
check_num "$w <= 0.5001" "numpy's unpacking is within half a step of the FP32 weights ($w steps)"
expect_status 0 "eval of the W3 model" "$NORMLAB" eval --model "$TMP/w3.safetensors" --images 500 --batch 100 --json
t=$(sed 's/.*"top1": \([0-9.]*\).*/\1/' "$TMP/out")
check_num "$t >= 0.8" "W3 top-1 on 500 test images ($t)"
expect_status 2 "quantize --weights 3 --group 12" "$NORMLAB" quantize --model "$SMALL" --weights 3 --group 12 --images 2 --output "$TMP/x3.safetensors"
expect_err 'multiples of 8' "the message says why"

expect_status 0 "quantize --acts 8 (W8A8)" "$NORMLAB" quantize --model "$SMALL" --weights 8 --acts 8 \
  --smooth 0.5 --act-mode tensor --images 8 --output "$TMP/a8.safetensors"
expect_out '^precision: W8A8 smoothquant \(INT8 products (on AVX512-VNNI|in oneDNN), activations per tensor\)' "W8A8 precision"
# normlab's VNNI kernel and oneDNN give the same logits, bit for bit
if have_fixtures; then
  for e in "" dnnl; do
    expect_status 0 "forward of the W8A8 model (${e:-default})" env NORMLAB_IGEMM=$e "$NORMLAB" forward --model "$TMP/a8.safetensors" \
      --input "$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors" --batch 7 --output "$TMP/a8_logits_${e:-default}.safetensors"
  done
  ok $(cmp -s "$TMP/a8_logits_default.safetensors" "$TMP/a8_logits_dnnl.safetensors"; echo $?) \
    "W8A8 logits on the VNNI kernel equal oneDNN's bit for bit"
fi
expect_status 0 "bench forward of the W8A8 model" "$NORMLAB" bench forward --model "$TMP/a8.safetensors" --batch 4 --seconds 0.2
expect_out '^precision: W8A8' "bench forward reports the precision"
expect_status 0 "bench forward of the FP32 model" "$NORMLAB" bench forward --model "$SMALL" --batch 4 --seconds 0.2
expect_out '^precision: fp32' "bench forward reports fp32"

# eval --compare-ref: agreement with the fixture's reference argmax (timm,
# float64) on test images 300..799; the FP32 model gives timm's predictions
if have_fixtures; then
  REFP=$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors
  expect_status 0 "eval --compare-ref of the FP32 model" "$NORMLAB" eval --model "$SMALL" --offset 300 --images 500 --compare-ref "$REFP" --json
  expect_out '"agreement": 1\.0, "disagree": 0' "the FP32 model agrees with timm on every image"
  expect_status 0 "eval --compare-ref of the W8A8 model" "$NORMLAB" eval --model "$TMP/a8.safetensors" --offset 300 --images 500 --compare-ref "$REFP"
  expect_out '^agreement with .*: [0-9.]+ % \([0-9]+ of 500 images differ\)$' "the text line"
  ag=$(sed -n 's/^agreement with .*: \([0-9.]*\) %.*/\1/p' "$TMP/out")
  check_num "${ag:-0} >= 99" "W8A8 agrees with timm on >= 99 % of 500 images ($ag %)"
  expect_status 2 "eval --compare-ref of a file without test_predictions" "$NORMLAB" eval --model "$SMALL" --images 10 --compare-ref "$SMALL"
  expect_err "no 1-D tensor 'test_predictions'" "it names the tensor"
  expect_status 2 "eval --compare-ref past its end" "$NORMLAB" eval --model "$SMALL" --data fmnist:train --offset 9995 --images 10 --compare-ref "$REFP"
  expect_err 'holds 10000 reference predictions; images 9995\.\.10004' "it gives both counts"
fi

# a budget-pruned model (a different MLP width in each block): every fc1 /
# fc2 quantized at its own width (this crashed while the layers were sized
# by the config's widest MLP)
expect_status 0 "prune --budget-mb" "$NORMLAB" prune --model "$SMALL" --budget-mb 1.5 --score magnitude \
  --output "$TMP/pb.safetensors"
expect_status 0 "quantize a budget-pruned model" "$NORMLAB" quantize --model "$TMP/pb.safetensors" \
  --weights 8 --images 4 --output "$TMP/pbq.safetensors"
python3 - "$TMP/pb.safetensors" "$TMP/pbq.safetensors" >"$TMP/meta" <<'PY'
import json, struct, sys
def hdr(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; return json.loads(b[8:8 + n])
f, q = hdr(sys.argv[1]), hdr(sys.argv[2])
w = [f['blocks.%d.mlp.fc1.weight' % l]['shape'][0] for l in range(12)]
ok = len(set(w)) > 1 and all(
    q['blocks.%d.mlp.fc1.weight' % l]['shape'] == [w[l], 64] and q['blocks.%d.mlp.fc2.weight' % l]['shape'] == [64, w[l]]
    and q['blocks.%d.mlp.fc1.weight_scale' % l]['shape'] == [w[l], 1] for l in range(12))
print("ok" if ok else "bad %s" % w)
PY
ok $([ "$(cat "$TMP/meta")" = ok ]; echo $?) "each block's fc1 / fc2 quantized at its pruned width ($(cat "$TMP/meta"))"
expect_status 0 "eval of the quantized budget-pruned model" "$NORMLAB" eval --model "$TMP/pbq.safetensors" --images 200 --batch 100 --json
t=$(sed 's/.*"top1": \([0-9.]*\).*/\1/' "$TMP/out")
check_num "$t >= 0.8" "its top-1 on 200 test images ($t)"

# bad flags
expect_status 2 "--weights 2" "$NORMLAB" quantize --model "$SMALL" --weights 2 --output "$TMP/x.safetensors"
expect_status 2 "--weights missing" "$NORMLAB" quantize --model "$SMALL" --output "$TMP/x.safetensors"
expect_err 'weights' "the message names --weights"
expect_status 2 "--acts 4" "$NORMLAB" quantize --model "$SMALL" --weights 8 --acts 4 --output "$TMP/x.safetensors"
expect_status 2 "--acts 8 with --weights 4" "$NORMLAB" quantize --model "$SMALL" --weights 4 --acts 8 --output "$TMP/x.safetensors"
expect_status 2 "--acts 8 with --method awq" "$NORMLAB" quantize --model "$SMALL" --weights 8 --acts 8 --method awq --output "$TMP/x.safetensors"
expect_status 2 "--smooth without --acts 8" "$NORMLAB" quantize --model "$SMALL" --weights 8 --smooth 0.5 --output "$TMP/x.safetensors"
expect_status 2 "--smooth 1.5" "$NORMLAB" quantize --model "$SMALL" --weights 8 --acts 8 --smooth 1.5 --output "$TMP/x.safetensors"
expect_status 2 "--group 48 does not divide 64" "$NORMLAB" quantize --model "$SMALL" --weights 8 --group 48 --images 2 --output "$TMP/x.safetensors"
expect_err 'groups of 48' "the message names the group"
expect_status 2 "--group 7 for 4 bits (odd)" "$NORMLAB" quantize --model "$SMALL" --weights 4 --group 7 --output "$TMP/x.safetensors"
expect_status 2 "--keep-fp16 unknown part" "$NORMLAB" quantize --model "$SMALL" --weights 8 --keep-fp16 head,wings --output "$TMP/x.safetensors"
expect_err "unknown part 'wings'" "the message names the part"
expect_status 2 "quantizing a quantized model" "$NORMLAB" quantize --model "$Q" --weights 8 --images 2 --output "$TMP/x.safetensors"
expect_status 2 "training a quantized model" "$NORMLAB" train --model "$Q" --epochs 1 --output "$TMP/x.safetensors"
expect_err 'the model is quantized \(W8 rtn.*saving does not keep; train the FP32 model, then quantize it' "the message names the reason"
expect_status 2 "calibrating a quantized model" "$NORMLAB" calibrate --model "$Q" --teacher "$SMALL" --output "$TMP/x.safetensors"
expect_err 'the model is quantized' "the message names the reason"
ok $([ ! -e "$TMP/x.safetensors" ]; echo $?) "nothing written on errors"

# corrupt quantized files
$ST variant "$Q" "$TMP/noscale.safetensors" drop=blocks.2.mlp.fc1.weight_scale
expect_status 2 "a scale tensor missing" "$NORMLAB" eval --model "$TMP/noscale.safetensors" --images 10
expect_err "blocks\.2\.mlp\.fc1\.weight_scale' is missing" "the message names the missing scale tensor"
$ST variant "$Q" "$TMP/nozero.safetensors" drop=blocks.0.attn.proj.weight_zero
expect_status 2 "a zero-point tensor missing" "$NORMLAB" info "$TMP/nozero.safetensors"
python3 - "$Q" "$TMP/shape.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
e = h['blocks.1.attn.qkv.weight_scale']; s, t = e['data_offsets']
e['shape'] = [191, 1]; e['data_offsets'] = [s, t - 4]          # one row short, 4 bytes left unused
keys = sorted((k for k in h if k != '__metadata__'), key=lambda k: h[k]['data_offsets'][0])
out, hdr = b'', {'__metadata__': h['__metadata__']}
for k in keys:
    s, t = h[k]['data_offsets']; hdr[k] = dict(h[k], data_offsets=[len(out), len(out) + t - s]); out += d[s:t]
hb = json.dumps(hdr).encode(); open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hb)) + hb + out)
PY
expect_status 2 "a scale tensor of the wrong shape" "$NORMLAB" eval --model "$TMP/shape.safetensors" --images 10
expect_err "blocks\.1\.attn\.qkv\.weight_scale': F32 \[191, 1\], expected F32 \[192, N\]" "the message names the tensor and both shapes"
$ST set "$Q" "$TMP/neg.safetensors" blocks.4.mlp.fc2.weight_scale 5 -0.5
expect_status 2 "a negative scale" "$NORMLAB" eval --model "$TMP/neg.safetensors" --images 10
expect_err "weight_scale': entry 5 is -0\.5" "the message names the entry"
$ST set "$Q" "$TMP/nan.safetensors" blocks.4.mlp.fc2.weight_scale 0 nan
expect_status 2 "a NaN scale" "$NORMLAB" eval --model "$TMP/nan.safetensors" --images 10
python3 - "$Q" "$TMP/meta.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
q = json.loads(h['__metadata__']['quantization']); q["bits"] = 2
h['__metadata__']['quantization'] = json.dumps(q)
hb = json.dumps(h).encode(); open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hb)) + hb + b[8 + n:])
PY
expect_status 2 "a scheme with bits 2" "$NORMLAB" eval --model "$TMP/meta.safetensors" --images 10
expect_err 'quantization: "bits" must be 8, 4 or 3' "the message names the scheme"

done_testing
