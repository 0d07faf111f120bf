#!/bin/sh
# info, eval and forward on the timm fixtures; malformed safetensors files.
. "$NL_SRCDIR/tests/cli/lib.sh"
ST="python3 $NL_SRCDIR/tests/cli/st_tool.py"
SMALL=$NL_FIXTURES/vit_small_p7_fmnist.safetensors
TINY=$NL_FIXTURES/vit_tiny_p4_fmnist.safetensors

expect_status 0 "info on the small fixture" "$NORMLAB" info "$SMALL"
expect_out 'config from: +__metadata__ model_args' "info says where the config came from"
expect_out 'width 64, depth 12, heads 2, mlp 256, classes 10' "info shows the architecture"
expect_out 'parameters: +[0-9]+' "info shows the parameter count"
expect_out 'blocks.11.norm2' "info lists the block norm layers"
expect_out '^  norm$' "info lists the final norm"
expect_status 0 "info --json" "$NORMLAB" info --json "$TINY"
expect_out '"num_heads": 3' "info --json has the heads"
expect_out '"flops_per_image": 554' "info --json has the FLOPs per image"
expect_status 0 "info of the bundled default model" "$NORMLAB" info
expect_out 'vit_small_p7_fmnist' "the default model is vit_small_p7_fmnist"

# config.json beside a file without metadata
mkdir -p "$TMP/hub"
$ST variant "$TINY" "$TMP/hub/model.safetensors" drop=none.nothing
python3 - "$TMP/hub/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]
b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); h.pop('__metadata__')
hb = json.dumps(h).encode()
open(p, 'wb').write(struct.pack('<Q', len(hb)) + hb + b[8 + n:])
PY
cat >"$TMP/hub/config.json" <<'JSON'
{"architecture": "vit_tiny_p4_fmnist", "num_classes": 10, "global_pool": "token",
 "model_args": {"num_heads": 3, "embed_dim": 192},
 "pretrained_cfg": {"input_size": [1, 28, 28], "mean": [0.25], "std": [0.5], "num_classes": 10}}
JSON
expect_status 0 "info with a hub-style config.json" "$NORMLAB" info --json "$TMP/hub/model.safetensors"
expect_out 'config_source": "[^"]*config.json"' "config.json is named as the source"
expect_out '"mean": \[0.25\]' "mean from pretrained_cfg"
rm "$TMP/hub/config.json"
expect_status 0 "info with the config inferred from shapes" "$NORMLAB" info --json "$TMP/hub/model.safetensors"
expect_out 'inferred from tensor shapes' "inferred config is reported"
expect_out '"num_heads": 3' "heads default to width / 64"
expect_status 0 "--heads overrides" "$NORMLAB" info --json --heads 6 "$TMP/hub/model.safetensors"
expect_out '"num_heads": 6' "--heads is used"

# eval
expect_status 0 "eval on 500 test images" "$NORMLAB" eval --model "$SMALL" --images 500 --json
expect_out '^\{"top1": 0\.[0-9]+, "top5": 0\.[0-9]+, "images": 500, "images_per_second": [0-9.]+, "skipped": 0\}$' "eval --json prints the five figures (skipped: images left out by --skip-bad)"
top1=$(sed 's/.*"top1": \([0-9.]*\).*/\1/' "$TMP/out")
check_num "$top1 > 0.8" "top-1 on 500 images is plausible ($top1)"
expect_status 0 "eval --limit, the old name of --images, still works" "$NORMLAB" eval --model "$SMALL" --limit 500 --json
expect_out "^\\{\"top1\": $top1, .*\"images\": 500," "--limit N evaluates the same N images"
expect_err "eval: --limit is deprecated; use --images" "the old name gets a one-line note"
expect_status 0 "eval with --offset" "$NORMLAB" eval --model "$SMALL" --offset 9990 --batch 3 --json
expect_out '"images": 10,' "offset 9990 leaves 10 images"
if [ "${NL_TEST_QUICK:-0}" != 1 ]; then
  expect_status 0 "eval on the whole test set (small)" "$NORMLAB" eval --model "$SMALL" --json
  echo "# small: $(cat "$TMP/out")"
  expect_out '"top1": 0\.874, "top5": 0\.9982, "images": 10000' "top-1 87.40 %, top-5 99.82 % as timm"
fi
# small batches, so that a loaded machine still finishes some within the 5 s
expect_status 130 "Ctrl-C stops eval" timeout --preserve-status -s INT 5 "$NORMLAB" eval \
  --model "$TINY" --data fmnist:train --batch 8 --json
expect_out '"images": [1-9][0-9]*, "images_per_second": [0-9.]+, "skipped": 0, "interrupted": true' "an interrupted eval reports the images done"
expect_err 'interrupted after [0-9]+ of 60000 images' "an interrupted eval says so"
expect_status 2 "eval of unknown data" "$NORMLAB" eval --model "$SMALL" --data cifar:test
expect_err "unknown data spec 'cifar:test'" "unknown data spec is named"
NORMLAB_FMNIST_DIR=$TMP/nowhere expect_status 2 "eval without the dataset package" "$NORMLAB" eval --model "$SMALL"
expect_err 'apt-get install dataset-fashion-mnist' "missing dataset names the package"

# non-finite parameters and logits: an error naming the tensor, never a score
# (a NaN logit compares false with every other, so it used to count as correct)
$ST set "$SMALL" "$TMP/nan.safetensors" blocks.0.mlp.fc1.weight 5 nan
$ST set "$SMALL" "$TMP/inf.safetensors" head.bias 3 inf
expect_status 2 "eval of a model with a NaN weight exits 2" "$NORMLAB" eval \
  --model "$TMP/nan.safetensors" --images 200 --json
expect_err 'tensor blocks\.0\.mlp\.fc1\.weight has 1 non-finite value of 16384 \(1 NaN, 0 infinite\)' \
  "the error names the tensor and counts the NaN"
[ ! -s "$TMP/out" ]; ok $? "no top-1 is printed for it"
expect_status 2 "eval of a model with an infinite bias exits 2" "$NORMLAB" eval \
  --model "$TMP/inf.safetensors" --images 200
expect_err 'tensor head\.bias has 1 non-finite value of 10 \(0 NaN, 1 infinite\)' \
  "the error names the infinite tensor"
expect_status 0 "info of the NaN model still works" "$NORMLAB" info "$TMP/nan.safetensors"
expect_out '^non-finite: +blocks\.0\.mlp\.fc1\.weight: 1 of 16384 values \(1 NaN, 0 infinite\)$' \
  "info lists the non-finite tensor with its count"
expect_status 0 "info --json of the NaN model" "$NORMLAB" info --json "$TMP/nan.safetensors"
expect_out '"non_finite": \[\{"name": "blocks\.0\.mlp\.fc1\.weight", "count": 1, "nan": 1, "inf": 0, "numel": 16384\}\]' \
  "info --json lists it under non_finite"
expect_status 0 "info --json of a finite model" "$NORMLAB" info --json "$SMALL"
expect_out '"non_finite": \[\]' "a finite model has no non_finite entries"
# finite parameters, non-finite logits: exp(100 x) overflows a float for x > 0.89
printf 'blocks.3.norm1 = exp(100*x)\n' >"$TMP/overflow.exprs"
expect_status 0 "replace with an overflowing function" "$NORMLAB" replace --model "$SMALL" \
  --set "$TMP/overflow.exprs" --output "$TMP/overflow.safetensors"
expect_status 2 "eval of a model whose logits are NaN exits 2" "$NORMLAB" eval \
  --model "$TMP/overflow.safetensors" --images 100 --json
expect_err 'tensor logits is NaN for image 0 of fmnist:test .*output of norm layer blocks\.3\.norm1' \
  "the error names the logits and the norm layer where the values stop being finite"

# forward against the reference tensors
expect_status 0 "forward with taps" "$NORMLAB" forward --model "$SMALL" \
  --input "$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors" --output "$TMP/fw.safetensors" --taps --batch 3
d=$($ST maxdiff "$TMP/fw.safetensors" "$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors" logits)
check_num "$d <= 1e-4" "forward logits match timm within 1e-4 ($d)"
python3 - "$TMP/fw.safetensors" "$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors" >"$TMP/taps" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]
(ha, da), (hb, db) = load(sys.argv[1]), load(sys.argv[2])
worst, count = 0.0, 0
for k in hb:
    if not (k.startswith('ln_in.') or k.startswith('ln_out.')):
        continue
    s, t = ha[k]['data_offsets']; u, v = hb[k]['data_offsets']
    a = struct.unpack('<%df' % ((t - s) // 4), da[s:t])
    r = struct.unpack('<%df' % ((v - u) // 4), db[u:v])
    a = a[:len(r)]  # the reference holds the first 2 images
    worst = max(worst, max(abs(p - q) for p, q in zip(a, r))); count += 1
print(count, '%.3g' % worst)
PY
read -r ntaps worst <"$TMP/taps"
check_num "$ntaps == 50" "forward --taps writes ln_in/ln_out for 25 layers ($ntaps)"
check_num "$worst <= 1e-4" "taps match timm within 1e-4 ($worst)"
expect_status 0 "forward of a named tensor" "$NORMLAB" forward --model "$SMALL" \
  --input "$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors:inputs" --output "$TMP/fw2.safetensors"
expect_status 2 "forward of a missing tensor" "$NORMLAB" forward --model "$SMALL" \
  --input "$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors:nope" --output "$TMP/fw3.safetensors"
expect_err "no tensor 'nope'" "missing input tensor is named"
expect_status 2 "forward of a wrongly shaped tensor" "$NORMLAB" forward --model "$SMALL" \
  --input "$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors:logits" --output "$TMP/fw3.safetensors"
expect_err "must be \[N, 1, 28, 28\]" "shape error says what is expected"

# malformed files: each a clear error and exit status 2
for kind in truncated header_past_end bad_json overlap out_of_range gap shape_mismatch unknown_dtype; do
  $ST bad $kind "$TMP/$kind.safetensors"
  expect_status 2 "$kind file exits 2" "$NORMLAB" info "$TMP/$kind.safetensors"
  case $kind in
    truncated) pat="data_offsets \[0, 8\] run past the data area" ;;
    header_past_end) pat="runs past the end of the file" ;;
    bad_json) pat="not valid JSON" ;;
    overlap) pat="tensor 'b': data \[4, 8\) overlaps tensor 'a'" ;;
    out_of_range) pat="tensor 'a': data_offsets \[8, 16\] run past" ;;
    gap) pat="tensor 'b': gap of 4 bytes" ;;
    shape_mismatch) pat="tensor 'a': shape and dtype F32 give 12 bytes" ;;
    unknown_dtype) pat="tensor 'a': unknown dtype 'F4'" ;;
  esac
  expect_err "$kind.safetensors: .*$pat" "$kind error names the file and the fault"
done
$ST variant "$SMALL" "$TMP/missing.safetensors" drop=blocks.5.attn.proj.weight
expect_status 2 "missing tensor exits 2" "$NORMLAB" info "$TMP/missing.safetensors"
expect_err "missing: blocks.5.attn.proj.weight" "missing tensor is named"
$ST variant "$SMALL" "$TMP/extra.safetensors" add=blocks.0.attn.q_norm.weight
expect_status 2 "unexpected tensor exits 2" "$NORMLAB" info "$TMP/extra.safetensors"
expect_err "not understood by the ViT loader: blocks.0.attn.q_norm.weight" "unexpected tensor is named"
expect_status 2 "missing model file exits 2" "$NORMLAB" info "$TMP/none.safetensors"
expect_err "none.safetensors: cannot open" "missing file is named"

# bench forward (figures only; no timing asserted)
expect_status 0 "bench forward runs" "$NORMLAB" bench forward --model "$SMALL" --batch 8 --seconds 0.2 --json
expect_out '"images_per_second": [0-9.]+, "gflops": [0-9.]+, "sgemm_peak_gflops": [0-9.]+' "bench forward prints images/s, GFLOP/s and the sgemm peak"

done_testing
