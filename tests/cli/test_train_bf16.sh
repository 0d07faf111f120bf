#!/bin/sh
# train --precision bf16 (mixed-precision training step): bad values and a
# CPU without the kernel refused with exit 2 before anything is written;
# the precision recorded in train.json and the checkpoints, kept on
# --resume; one step's loss and gradients against PyTorch's
# torch.autocast("cpu", dtype=torch.bfloat16) on the same batch
# (tests/cli/bf16_check.py); bench train --precision; Lua's model:train.
. "$NL_SRCDIR/tests/cli/lib.sh"
PY=/usr/bin/python3
M=$NL_FIXTURES/vit_tiny_p4_fmnist.safetensors
FM=${NORMLAB_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}

skip_all() { echo "ok $((_n = _n + 1)) # SKIP $1"; done_testing; exit $?; }

expect_status 2 "train --precision fp16 exits 2" "$NORMLAB" train --output "$TMP/o" --precision fp16
expect_err "train: --precision expects one of fp32\|bf16, got 'fp16'" "the bad value and the choices are named"
ok $([ ! -e "$TMP/o" ]; echo $?) "nothing written"
expect_status 2 "a garbage --precision exits 2" "$NORMLAB" train --output "$TMP/o" --precision 'bf16 '
expect_err "got 'bf16 '" "the value is named"
expect_status 2 "bench train --precision fp16 exits 2" "$NORMLAB" bench train --precision fp16 --batch 2
expect_err "bench: --precision expects one of fp32\|bf16, got 'fp16'" "bench names it too"
# Lua's model:train: the command line's parser and message
printf 'local m = normlab.load_model(arg[1])\nlocal ok, e = pcall(m.train, m, {precision = "fp16", output = arg[2]})\nio.write(tostring(e):match("model:train: (.*)"), "\\n")\n' \
  >"$TMP/p.lua"
lua=$("$NORMLAB" lua "$TMP/p.lua" "$NL_SRCDIR/samples/models/vit_small_p7_fmnist.safetensors" "$TMP/o" 2>&1)
[ "$lua" = "--precision expects one of fp32|bf16, got 'fp16'" ]; ok $? "Lua's model:train gives the same message ($lua)"

have_fixtures || skip_all "timm fixtures not found in $NL_FIXTURES"
[ -f "$FM/train-images-idx3-ubyte.gz" ] || skip_all "Fashion-MNIST not installed (dataset-fashion-mnist)"

NORMLAB_GEMM=blas expect_status 2 "bf16 without normlab's kernel (NORMLAB_GEMM=blas) exits 2" \
  "$NORMLAB" train --model "$M" --output "$TMP/blas" --precision bf16 --images 16 --eval-images 4
expect_err "precision bf16 needs AVX512-BF16 instructions" "the missing instructions are named"
ok $([ ! -e "$TMP/blas" ]; echo $?) "nothing written"

# Whether this CPU runs the kernel (else the rest is refused as above)
run "$NORMLAB" bench train --model "$M" --batch 2 --seconds 0.1 --precision bf16 --json
if [ "$rc" -eq 2 ] && grep -q 'AVX512-BF16' "$TMP/err"; then
  echo "# $(cat "$TMP/err"): skipping the BF16 runs"
  done_testing
  exit $?
fi
ok $rc "bench train --precision bf16"
expect_out '"precision": "bf16"' "bench train reports the precision"

# a short run: the precision in train.json and the checkpoints; --resume keeps it
expect_status 0 "train --precision bf16" "$NORMLAB" --threads 2 train --model "$M" --images 32 --batch 16 \
  --eval-images 16 --precision bf16 --output "$TMP/run"
"$PY" - "$TMP/run" <<'EOF'
import json, struct, sys
d = sys.argv[1]
assert json.load(open(d + "/train.json"))["config"]["precision"] == "bf16"
for f in ("last.safetensors", "epoch-001.safetensors"):
    with open(d + "/" + f, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        assert json.loads(fh.read(n))["__metadata__"]["train_precision"] == "bf16", f
EOF
ok $? "train.json and both checkpoints record precision bf16"
expect_status 2 "--resume with --precision fp32 exits 2" "$NORMLAB" train --model "$M" --images 32 --batch 16 \
  --eval-images 16 --epochs 2 --precision fp32 --output "$TMP/run" --resume
expect_err "--precision: the run in .* was started with 'bf16', this command gives 'fp32'" "the change is named"
expect_status 0 "--resume with the run's precision" "$NORMLAB" train --model "$M" --images 32 --batch 16 \
  --eval-images 16 --epochs 2 --precision bf16 --output "$TMP/run" --resume

# one step against PyTorch: FP32 and BF16 dumps of the same batch
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "ok $((_n = _n + 1)) # SKIP no python3 with torch"
  done_testing
  exit $?
fi
expect_status 0 "export --to pytorch" "$NORMLAB" export --model "$M" --to pytorch --output "$TMP/pt"
for p in fp32 bf16; do
  expect_status 0 "train --dump-grads --precision $p" "$NORMLAB" --threads 2 train --model "$M" --images 16 \
    --batch 16 --drop-path 0 --eval-images 1 --precision $p --output "$TMP/g_$p" --dump-grads "$TMP/g_$p.safetensors"
done
expect_status 0 "BF16 loss within 1e-2 of autocast's, gradients as close to FP32 as autocast's" \
  "$PY" "$NL_SRCDIR/tests/cli/bf16_check.py" "$TMP/pt" "$TMP/g_fp32.safetensors" "$TMP/g_bf16.safetensors"
sed 's/^/# /' "$TMP/out"
# the check can fail: a BF16 step with drop path (the same batch, other gradients)
expect_status 0 "train --dump-grads --precision bf16 --drop-path 0.5" "$NORMLAB" --threads 2 train --model "$M" \
  --images 16 --batch 16 --drop-path 0.5 --eval-images 1 --precision bf16 --output "$TMP/g_dp" \
  --dump-grads "$TMP/g_dp.safetensors"
expect_status 1 "... is told apart" \
  "$PY" "$NL_SRCDIR/tests/cli/bf16_check.py" "$TMP/pt" "$TMP/g_fp32.safetensors" "$TMP/g_dp.safetensors"
sed 's/^/# /' "$TMP/out"
done_testing
