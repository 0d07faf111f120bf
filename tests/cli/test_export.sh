#!/bin/sh
# export: PyTorch logits against normlab's (and timm's) for LayerNorm, DyT and
# expression slots; the C file compiled and run against normlab's norm taps;
# ONNX through the checker; bad input exits 2 and writes nothing.
. "$NL_SRCDIR/tests/cli/lib.sh"
SMALL=$NL_FIXTURES/vit_small_p7_fmnist.safetensors
REF=$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors
CHECK=$NL_SRCDIR/tests/cli/export_check.py
OPS=$NL_SRCDIR/tests/data/export_ops.exprs

# an interpreter with torch and numpy: python3, else Debian's
PY=
for p in python3 /usr/bin/python3; do
  if "$p" -c 'import torch, numpy' 2>/dev/null; then PY=$p; break; fi
done

# bad input first: these need no torch
expect_status 2 "--to is required" "$NORMLAB" export --model "$SMALL" --output "$TMP/x"
expect_status 2 "--to must be pytorch, c or onnx" "$NORMLAB" export --model "$SMALL" --to tflite --output "$TMP/x"
expect_err "tflite" "the bad format is named"
expect_status 2 "missing model" "$NORMLAB" export --model "$TMP/none.safetensors" --to c --output "$TMP/x"
[ ! -e "$TMP/x" ]; ok $? "nothing written after an error"
mkdir "$TMP/busy" && echo keep >"$TMP/busy/notes.txt"
expect_status 2 "a directory with other files is not replaced" "$NORMLAB" export --model "$SMALL" --to c --output "$TMP/busy"
expect_err "notes.txt" "the error names the foreign file"
[ "$(cat "$TMP/busy/notes.txt")" = keep ] && [ ! -e "$TMP/busy/norms.c" ]; ok $? "the directory is left as it was"
ls -a "$TMP" | grep -q '\.tmp\.' && st=1 || st=0
ok $st "no temporary directory left behind"

if ! have_fixtures; then
  echo "ok $((_n = _n + 1)) # SKIP timm fixtures not found in $NL_FIXTURES"
  done_testing
  exit $?
fi

# models with LayerNorm, DyT and expression slots (every operator: see $OPS)
cp "$SMALL" "$TMP/ln.safetensors"
expect_status 0 "replace --set dyt=0.7" "$NORMLAB" replace --model "$SMALL" --set dyt=0.7 --output "$TMP/dyt.safetensors"
expect_status 0 "replace --set ops" "$NORMLAB" replace --model "$SMALL" --set "$OPS" --output "$TMP/expr.safetensors"

# C: compiled and run on normlab's norm inputs gives normlab's norm outputs
if command -v cc >/dev/null && [ -n "$PY" ]; then
  for k in ln dyt expr; do
    expect_status 0 "forward --taps ($k)" "$NORMLAB" forward --model "$TMP/$k.safetensors" --input "$REF" --output "$TMP/${k}_fwd.safetensors" --taps
    expect_status 0 "export --to c ($k)" "$NORMLAB" export --model "$TMP/$k.safetensors" --to c --output "$TMP/c_$k"
    expect_status 0 "C norms equal normlab's within 1e-6 relative ($k)" "$PY" "$CHECK" cnorm "$TMP/c_$k" "$TMP/${k}_fwd.safetensors" "$TMP/$k.safetensors" 1e-6
    sed 's/^/# /' "$TMP/out"
  done
  grep -q 'nl_norm_blocks_0_norm1(float \*restrict y' "$TMP/c_expr/norms.h"; ok $? "norms.h declares a function per slot"
else
  echo "ok $((_n = _n + 1)) # SKIP C parity: needs cc and numpy"
fi

if [ -z "$PY" ]; then
  echo "ok $((_n = _n + 1)) # SKIP PyTorch and ONNX parity: no python3 with torch and numpy (Debian: python3-torch python3-numpy)"
  done_testing
  exit $?
fi

# PyTorch: logits of the exported module equal normlab's within 1e-4
for k in ln dyt expr; do
  [ -f "$TMP/${k}_fwd.safetensors" ] || "$NORMLAB" forward --model "$TMP/$k.safetensors" --input "$REF" --output "$TMP/${k}_fwd.safetensors"
  expect_status 0 "export --to pytorch ($k)" "$NORMLAB" export --model "$TMP/$k.safetensors" --to pytorch --output "$TMP/pt_$k"
  expect_status 0 "PyTorch logits equal normlab's within 1e-4 ($k)" "$PY" "$CHECK" logits "$TMP/pt_$k" "$REF" "$TMP/${k}_fwd.safetensors" 1e-4
  sed 's/^/# /' "$TMP/out"
done
# the LayerNorm export against timm's own logits (the fixture)
expect_status 0 "PyTorch logits equal timm's within 1e-4" "$PY" "$CHECK" logits "$TMP/pt_ln" "$REF" "$REF" 1e-4
# --set replaces before exporting: the same module as replace, then export
expect_status 0 "export --set" "$NORMLAB" export --model "$SMALL" --set "$OPS" --to pytorch --output "$TMP/pt_set"
expect_status 0 "export --set gives the replaced model's logits" "$PY" "$CHECK" logits "$TMP/pt_set" "$REF" "$TMP/expr_fwd.safetensors" 1e-4
grep -q 'persistent=False' "$TMP/pt_expr/model.py"; ok $? "expression constants are a non-persistent buffer"
# timm's options the fixtures lack: average pooling with fc_norm, layer scale
expect_status 0 "a variant with avg pooling and layer scale" "$PY" "$CHECK" variant "$SMALL" "$TMP/avg.safetensors"
sed 's/^norm = /fc_norm = /' "$OPS" >"$TMP/avg.exprs"
expect_status 0 "replace (avg)" "$NORMLAB" replace --model "$TMP/avg.safetensors" --set "$TMP/avg.exprs" --output "$TMP/avgx.safetensors"
"$NORMLAB" forward --model "$TMP/avgx.safetensors" --input "$REF" --output "$TMP/avgx_fwd.safetensors" --taps
expect_status 0 "export --to pytorch (avg, layer scale)" "$NORMLAB" export --model "$TMP/avgx.safetensors" --to pytorch --output "$TMP/pt_avg"
expect_status 0 "PyTorch logits equal normlab's within 1e-4 (avg, layer scale)" "$PY" "$CHECK" logits "$TMP/pt_avg" "$REF" "$TMP/avgx_fwd.safetensors" 1e-4
sed 's/^/# /' "$TMP/out"
if command -v cc >/dev/null; then
  expect_status 0 "export --to c (fc_norm)" "$NORMLAB" export --model "$TMP/avgx.safetensors" --to c --output "$TMP/c_avg"
  expect_status 0 "C norms equal normlab's within 1e-6 relative (fc_norm)" "$PY" "$CHECK" cnorm "$TMP/c_avg" "$TMP/avgx_fwd.safetensors" "$TMP/avgx.safetensors" 1e-6
fi
# into timm's class: timm_swap_norms puts the slots where timm has its LayerNorms
for k in expr avg; do
  expect_status 0 "timm_swap_norms, then the weights: the export's logits ($k)" "$PY" "$CHECK" swap "$TMP/pt_$k"
  sed 's/^/# /' "$TMP/out"
done
# a second export into the same directory replaces it
expect_status 0 "export over an earlier export" "$NORMLAB" export --model "$TMP/dyt.safetensors" --to pytorch --output "$TMP/pt_set"
grep -q 'functools.partial(DyT, alpha=0.699999988)' "$TMP/pt_set/model.py"; ok $? "the earlier export was replaced"

# ONNX through the PyTorch module, checked with onnx.checker
if "$PY" -c 'import onnx' 2>/dev/null; then
  expect_status 0 "export --to onnx" env NORMLAB_PYTHON="$PY" "$NORMLAB" export --model "$TMP/expr.safetensors" --to onnx --output "$TMP/onnx"
  expect_status 0 "model.onnx passes onnx.checker (and onnxruntime when present)" "$PY" "$CHECK" onnx "$TMP/onnx"
  sed 's/^/# /' "$TMP/out"
  expect_status 1 "a failing ONNX step is an error" env NORMLAB_PYTHON=false "$NORMLAB" export --model "$TMP/expr.safetensors" --to onnx --output "$TMP/onnx2"
  [ ! -e "$TMP/onnx2" ]; ok $? "and writes nothing"
  mkdir "$TMP/notorch" && printf 'raise ImportError("no torch", name="torch")\n' >"$TMP/notorch/torch.py"
  expect_status 2 "without torch: exit 2" env NORMLAB_PYTHON="$PY" PYTHONPATH="$TMP/notorch" "$NORMLAB" export --model "$TMP/expr.safetensors" --to onnx --output "$TMP/onnx3"
  expect_err "torch is missing" "the error says torch is missing"
else
  echo "ok $((_n = _n + 1)) # SKIP ONNX: python3-onnx not installed"
fi
done_testing
