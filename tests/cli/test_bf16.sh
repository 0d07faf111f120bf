#!/bin/sh
# --precision bf16: eval / forward / extract / bench forward, at the prompt
# and in Lua; 500 Fashion-MNIST test images against the fixture's reference
# predictions; a CPU without BF16 instructions (DNNL_MAX_CPU_ISA lowers what
# oneDNN uses), a quantized model and a bad value refused with exit 2.
. "$NL_SRCDIR/tests/cli/lib.sh"
PY=/usr/bin/python3
SMALL=$NL_SRCDIR/samples/models/vit_small_p7_fmnist.safetensors

expect_status 2 "a bad --precision exits 2" "$NORMLAB" eval --model "$SMALL" --precision fp16 --images 10
expect_err "eval: --precision expects one of fp32\|bf16, got 'fp16'" "the bad value and the choices are named"
DNNL_MAX_CPU_ISA=AVX2 expect_status 2 "bf16 on a CPU without AVX512-BF16 (oneDNN limited to AVX2) exits 2" \
  "$NORMLAB" eval --model "$SMALL" --precision bf16 --images 10
expect_err "BF16 products need AVX512-BF16 \(or AMX\) instructions, and oneDNN runs on AVX2 here" \
  "the missing instructions are named"
DNNL_MAX_CPU_ISA=AVX512_CORE expect_status 2 "... and on AVX-512 without BF16 (emulated) exits 2" \
  "$NORMLAB" forward --model "$SMALL" --precision bf16 --input "$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors" \
  --output "$TMP/no.safetensors"
expect_err "oneDNN runs on AVX-512 without BF16 here" "the emulation case is named"
ok $([ ! -e "$TMP/no.safetensors" ]; echo $?) "nothing written"
expect_status 0 "quantize (W8) for the refusal below" "$NORMLAB" quantize --model "$SMALL" --weights 8 --images 4 \
  --output "$TMP/w8.safetensors"
expect_status 2 "bf16 on a quantized model exits 2" "$NORMLAB" eval --model "$TMP/w8.safetensors" --precision bf16 --images 10
expect_err "precision bf16 is for FP32 models; this one is quantized \(W8" "the quantization is named"

# Whether this CPU runs BF16 (else the rest is refused as above and skipped)
run "$NORMLAB" bench forward --model "$SMALL" --batch 2 --seconds 0.1 --precision bf16
if [ "$rc" -eq 2 ] && grep -q 'AVX512-BF16' "$TMP/err"; then
  echo "# $(cat "$TMP/err"): skipping the BF16 runs"
  done_testing
  exit $?
fi
ok $rc "bench forward --precision bf16"
expect_out '^precision: bf16 \(BF16 products in oneDNN, FP32 accumulation\)' "bench forward reports the precision"

# 500 test images through forward, FP32 and BF16, for both fixtures:
# argmax agreement with the reference predictions (timm, FP64 port) and
# top-1 against the labels
$PY "$NL_SRCDIR/tests/cli/fmnist_inputs.py" 500 "$TMP/in500.safetensors"
ok $? "500 normalised test images written"
for m in vit_small_p7_fmnist vit_tiny_p4_fmnist; do
  for p in fp32 bf16; do
    expect_status 0 "$m: forward --precision $p" "$NORMLAB" forward --model "$NL_FIXTURES/$m.safetensors" \
      --input "$TMP/in500.safetensors" --output "$TMP/$m.$p.safetensors" --batch 100 --precision $p
  done
  $PY - "$TMP/$m.fp32.safetensors" "$TMP/$m.bf16.safetensors" "$NL_FIXTURES/${m}_ref.safetensors" \
    "$TMP/in500.safetensors" >"$TMP/cmp" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    return h, b[8 + n:]
def tensor(p, name, fmt):
    h, d = load(p); s, e = h[name]['data_offsets']
    return struct.unpack('<%d%s' % ((e - s) // struct.calcsize(fmt), fmt), d[s:e])
f, b = tensor(sys.argv[1], 'logits', 'f'), tensor(sys.argv[2], 'logits', 'f')
ref = tensor(sys.argv[3], 'test_predictions', 'B')[:500]
lab = tensor(sys.argv[4], 'labels', 'i')
am = lambda x, i: max(range(10), key=lambda k: x[10 * i + k])
pb = [am(b, i) for i in range(500)]
agree = sum(pb[i] == ref[i] for i in range(500)) / 5.0
top_b = sum(pb[i] == lab[i] for i in range(500)) / 5.0
top_r = sum(ref[i] == lab[i] for i in range(500)) / 5.0
dl = max(abs(x - y) for x, y in zip(f, b))
print(agree, top_b, top_r, dl)
PY
  read agree top_b top_r dl <"$TMP/cmp"
  echo "# $m, 500 images: bf16 argmax = reference on $agree %, top-1 bf16 $top_b %, reference $top_r %, max |logit bf16 - fp32| $dl"
  check_num "$agree >= 99" "$m: bf16 predictions agree with the reference on >= 99 % of 500 images ($agree %)"
  check_num "$top_b - $top_r <= 0.5 && $top_r - $top_b <= 0.5" "$m: bf16 top-1 within 0.5 point of the reference's ($top_b vs $top_r)"
  check_num "$dl > 0 && $dl < 0.5" "$m: bf16 logits differ from fp32, by less than 0.5 ($dl)"
done

# eval, at the prompt and in Lua: the same top-1 as the shell
expect_status 0 "eval --precision bf16" "$NORMLAB" eval --model "$SMALL" --precision bf16 --images 200 --batch 50 --json
t=$(sed 's/.*"top1": \([0-9.]*\).*/\1/' "$TMP/out")
check_num "$t >= 0.84" "bf16 top-1 on 200 images ($t)"
expect_out '"precision": "bf16"' "eval --json says precision bf16"
expect_status 0 "eval --precision bf16 at the prompt" "$NORMLAB" -c "eval --model $SMALL --precision bf16 --images 200 --batch 50 --json"
expect_out "\"top1\": $t," "the prompt's eval gives the same top-1"
cat >"$TMP/e.lua" <<LUA
local m = normlab.load_model("$SMALL")
local r = m:eval{images = 200, batch = 50, precision = "bf16"}
local f = m:eval{images = 200, batch = 50}
print("lua", r.top1, f.top1)
local ok, err = pcall(function() return m:eval{images = 10, precision = "int3"} end)
print(ok, err)
local maps = m:extract{images = 4, points = 50, precision = "bf16"}
print("extract", #maps)
normlab.cmd("eval --model $SMALL --precision bf16 --images 200 --batch 50 --json")
LUA
expect_status 0 "model:eval{precision = 'bf16'} in Lua" "$NORMLAB" lua "$TMP/e.lua"
expect_out "^lua[[:space:]]$t[[:space:]]" "Lua's bf16 eval gives the same top-1"
expect_out "^false.*precision 'int3' is not one of fp32, bf16" "a bad precision= raises, naming it"
expect_out "^extract[[:space:]]25$" "model:extract{precision = 'bf16'}"
expect_out "\"top1\": $t," "normlab.cmd with --precision bf16"

# extract: the maps record the precision
expect_status 0 "extract --precision bf16" "$NORMLAB" extract --model "$SMALL" --precision bf16 --images 4 --points 100 \
  --output "$TMP/maps.safetensors"
grep -q '"precision": *"bf16"' "$TMP/maps.safetensors"
ok $? "the maps' metadata says precision bf16"
done_testing
