#!/bin/sh
# scripts/realign-ddp: two ranks over gloo on CPU re-align an export for a few
# steps of Fashion-MNIST (the loss falls, both ranks end with the same weights,
# the checkpoint loads in normlab with PyTorch's logits); one step of normlab
# train and of the exported module on the same batch give the same gradients.
. "$NL_SRCDIR/tests/cli/lib.sh"
SMALL=$NL_FIXTURES/vit_small_p7_fmnist.safetensors
REF=$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors
CHECK=$NL_SRCDIR/tests/cli/export_check.py
OPS=$NL_SRCDIR/tests/data/export_ops.exprs
RA=$NL_SRCDIR/scripts/realign-ddp
FM=${NORMLAB_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}

skip_all() { echo "ok 1 # SKIP $1"; _n=1; done_testing; exit $?; }
PY=
for p in python3 /usr/bin/python3; do
  if "$p" -c 'import torch, numpy, torch.distributed' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || skip_all "no python3 with torch and numpy (Debian: python3-torch python3-numpy)"
have_fixtures || skip_all "timm fixtures not found in $NL_FIXTURES"
[ -f "$FM/train-images-idx3-ubyte.gz" ] || skip_all "Fashion-MNIST not installed (dataset-fashion-mnist)"

# bad options exit 2 with the option named
expect_status 2 "--variant D without --teacher" "$PY" "$RA" --export "$TMP/none" --variant D --output "$TMP/r"
expect_err "teacher" "the error names --teacher"
expect_status 1 "an export directory without model.py" "$PY" "$RA" --export "$TMP/none" --output "$TMP/r"
expect_err "model.py" "the error names model.py"

# an adapted model (DyT everywhere and expressions) and its export
expect_status 0 "replace" "$NORMLAB" replace --model "$SMALL" --set "$OPS" --output "$TMP/expr.safetensors"
"$NORMLAB" replace --model "$TMP/expr.safetensors" --set dyt --output "$TMP/dyt.safetensors" >/dev/null
expect_status 0 "export --to pytorch" "$NORMLAB" export --model "$TMP/expr.safetensors" --to pytorch --output "$TMP/pt"

# gradients of one step: normlab (train --dump-grads) against the exported module
# (NL_TEST_QUICK=1: the full variant only)
variants="full affine"
[ "${NL_TEST_QUICK:-0}" = 1 ] && variants=full
for v in $variants; do
  expect_status 0 "train --dump-grads ($v)" "$NORMLAB" --threads 2 train --model "$TMP/expr.safetensors" --variant $v --images 16 --batch 16 --drop-path 0 --eval-images 1 --output "$TMP/run_$v" --dump-grads "$TMP/grads_$v.safetensors"
  expect_status 0 "gradients equal within 1e-4 relative ($v)" "$PY" "$RA" --export "$TMP/pt" --variant $v --grad-check "$TMP/grads_$v.safetensors"
  sed 's/^/# /' "$TMP/out"
done
# D: distilled from the original model (its export is the teacher)
"$NORMLAB" export --model "$SMALL" --to pytorch --output "$TMP/pt_teacher" >/dev/null
expect_status 0 "train --dump-grads (D)" "$NORMLAB" --threads 2 train --model "$TMP/expr.safetensors" --variant D --teacher "$SMALL" --tau 2 --lambda 0.7 --images 16 --batch 16 --drop-path 0 --eval-images 1 --output "$TMP/run_D" --dump-grads "$TMP/grads_D.safetensors"
expect_status 0 "gradients equal within 1e-4 relative (D, tau 2, lambda 0.7)" "$PY" "$RA" --export "$TMP/pt" --variant D --teacher "$TMP/pt_teacher" --tau 2 --lambda 0.7 --grad-check "$TMP/grads_D.safetensors"
sed 's/^/# /' "$TMP/out"
# the check can fail: a different model's gradients differ
"$NORMLAB" export --model "$TMP/dyt.safetensors" --to pytorch --output "$TMP/pt_dyt" >/dev/null
expect_status 1 "another model's gradients differ" "$PY" "$RA" --export "$TMP/pt_dyt" --grad-check "$TMP/grads_full.safetensors"

# the augmentation (random crop from a 2-pixel pad, flip) is normlab's
expect_status 0 "realign-ddp's augmentation follows normlab's rule" "$PY" "$CHECK" augment "$RA"
sed 's/^/# /' "$TMP/out"

# two ranks over gloo (torchrun's own --redirects/--tee given: Debian 12's
# torch 1.13 on Python 3.11 fails on their defaults)
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run env OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --nnodes 1 --nproc_per_node 2 \
  --rdzv_backend c10d --rdzv_endpoint "127.0.0.1:$port" --redirects 2 --tee 2 --log_dir "$TMP/ddplogs" \
  "$RA" --backend gloo --export "$TMP/pt" --variant full --images 64 --batch 16 --epochs 2 \
  --lr 1e-3 --eval-images 64 --save-every-rank --output "$TMP/ddp"
ok $rc "torchrun --nproc_per_node 2: realign-ddp over gloo"
[ "$rc" -eq 0 ] || sed 's/^/# /' "$TMP/err" | tail -15
grep 'realign-ddp: epoch' "$TMP/out" "$TMP/err" | sed 's/^/# /'
expect_status 0 "the loss falls" "$PY" "$CHECK" falls "$TMP/ddp/train.json"
sed 's/^/# /' "$TMP/out"
expect_status 0 "both ranks hold identical weights" "$PY" "$CHECK" same "$TMP/ddp/last.safetensors" "$TMP/ddp/last.rank1.safetensors"
expect_status 1 "(and the check tells trained from untrained weights)" "$PY" "$CHECK" same "$TMP/ddp/last.safetensors" "$TMP/pt/model.safetensors"
expect_status 0 "normlab evaluates the checkpoint" "$NORMLAB" eval --model "$TMP/ddp/last.safetensors" --images 64 --json
expect_status 0 "normlab forward on the checkpoint" "$NORMLAB" forward --model "$TMP/ddp/last.safetensors" --input "$REF" --output "$TMP/ddp_fwd.safetensors"
expect_status 0 "its logits equal PyTorch's within 1e-4" "$PY" "$CHECK" logits "$TMP/pt" "$REF" "$TMP/ddp_fwd.safetensors" 1e-4 "$TMP/ddp/last.safetensors"
sed 's/^/# /' "$TMP/out"

# ImageFolder data (PNGs of Fashion-MNIST test images), one process
if [ "${NL_TEST_QUICK:-0}" = 1 ]; then
  echo "ok $((_n = _n + 1)) # SKIP realign-ddp on an image folder: NL_TEST_QUICK"
  done_testing
  exit $?
fi
expect_status 0 "an image folder" "$PY" "$CHECK" imagefolder "$FM" "$TMP/folder" 24
expect_status 0 "realign-ddp --data imagefolder:DIR (one process)" "$PY" "$RA" --export "$TMP/pt" --data "imagefolder:$TMP/folder" --eval "imagefolder:$TMP/folder" --batch 8 --epochs 1 --workers 0 --output "$TMP/ifo"
expect_status 0 "normlab evaluates its checkpoint" "$NORMLAB" eval --model "$TMP/ifo/last.safetensors" --images 16
expect_status 1 "a missing image folder is an error naming it" "$PY" "$RA" --export "$TMP/pt" --data "imagefolder:$TMP/nofolder" --output "$TMP/ifo2"
expect_err "nofolder" "the error names the folder"
done_testing
