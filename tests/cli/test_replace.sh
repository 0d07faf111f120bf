#!/bin/sh
# replace: LayerNorm, DyT and expression sets into adapted checkpoints that
# info, eval and forward run directly; accuracies against the fixtures; bad
# sets exit 2 and write nothing.
. "$NL_SRCDIR/tests/cli/lib.sh"
ST="python3 $NL_SRCDIR/tests/cli/st_tool.py"
SMALL=$NL_FIXTURES/vit_small_p7_fmnist.safetensors
REF=$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors
JSON=$NL_FIXTURES/vit_small_p7_fmnist.json
SET=$NL_SRCDIR/samples/exprs/paper_examples.exprs
fixture() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$JSON" "$1"; }
top1() { sed 's/.*"top1": \([0-9.]*\).*/\1/' "$TMP/out"; }

# ln: a copy with plain LayerNorms gives timm's logits
expect_status 0 "replace --set ln" "$NORMLAB" replace --model "$SMALL" --set ln --output "$TMP/ln.safetensors"
expect_out '^norm +layernorm +LayerNorm$' "the table shows the final norm as LayerNorm"
expect_out '^0 of 25 layers replaced$' "nothing is replaced"
expect_status 0 "forward of the ln copy" "$NORMLAB" forward --model "$TMP/ln.safetensors" \
  --input "$REF" --output "$TMP/fw_ln.safetensors"
d=$($ST maxdiff "$TMP/fw_ln.safetensors" "$REF" logits)
check_num "$d <= 1e-4" "the ln copy gives timm's logits within 1e-4 ($d)"
expect_status 0 "info of the ln copy" "$NORMLAB" info "$TMP/ln.safetensors"
expect_out '^norm layers \(25, all LayerNorm\):' "info: all LayerNorm"

# DyT with alpha 0.5
expect_status 0 "replace --set dyt" "$NORMLAB" replace --model "$SMALL" --set dyt --output "$TMP/dyt.safetensors"
expect_out '^blocks\.0\.norm1 +dyt +tanh\(0\.5\*x\)$' "the table shows DyT with alpha 0.5"
expect_out '^25 of 25 layers replaced$' "all 25 layers replaced"
expect_out "^wrote $TMP/dyt.safetensors\$" "the output is named"
python3 - "$TMP/dyt.safetensors" >"$TMP/meta" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
norms = json.loads(h['__metadata__']['norms'])
a = h['blocks.7.norm2.alpha']
v = struct.unpack('<f', b[8 + n + a['data_offsets'][0]:8 + n + a['data_offsets'][1]])[0]
print(len(norms), norms['blocks.0.norm1']['kind'], norms['norm']['kind'], a['dtype'], a['shape'], v)
PY
ok $([ "$(cat "$TMP/meta")" = "25 dyt dyt F32 [1] 0.5" ]; echo $?) "checkpoint: norms metadata and alpha tensors F32 [1] ($(cat "$TMP/meta"))"
expect_status 0 "info of the DyT checkpoint" "$NORMLAB" info "$TMP/dyt.safetensors"
expect_out '^norm layers \(25: 0 LayerNorm, 25 DyT, 0 expression\):' "info counts the kinds"
expect_out '^  blocks\.11\.norm2 +dyt +tanh\(0\.5\*x\)\*w \+ b$' "info shows each layer's kind"
expect_status 0 "info --json of the DyT checkpoint" "$NORMLAB" info --json "$TMP/dyt.safetensors"
expect_out '\{"name": "norm", "kind": "dyt", "alpha": 0\.5\}' "info --json has kind and alpha"
expect_status 0 "replace --set dyt=1.75" "$NORMLAB" replace --model "$SMALL" --set dyt=1.75 --output "$TMP/dyt175.safetensors"
expect_out '^norm +dyt +tanh\(1\.75\*x\)$' "dyt=ALPHA sets alpha"
expect_status 0 "ln from an adapted checkpoint" "$NORMLAB" replace --model "$TMP/dyt175.safetensors" --set ln --output "$TMP/back.safetensors"
expect_status 0 "forward of it" "$NORMLAB" forward --model "$TMP/back.safetensors" --input "$REF" --output "$TMP/fw_back.safetensors"
d=$($ST maxdiff "$TMP/fw_back.safetensors" "$REF" logits)
check_num "$d <= 1e-4" "DyT and back to LayerNorm gives timm's logits ($d)"

# least-squares alphas: extract the paper's points (test images 100..163), fit, replace
expect_status 0 "extract the mappings" "$NORMLAB" extract --model "$SMALL" --offset 100 --images 64 --output "$TMP/maps.safetensors"
expect_status 0 "dyt --json" "$NORMLAB" dyt --maps "$TMP/maps.safetensors" --json
cp "$TMP/out" "$TMP/alphas.json"
expect_status 0 "replace --set dyt=ALPHAS.json" "$NORMLAB" replace --model "$SMALL" --set "dyt=$TMP/alphas.json" --output "$TMP/lsq.safetensors"
expect_out '^25 of 25 layers replaced$' "every layer gets its alpha"
alpha=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['layers'][0]['alpha'])" "$TMP/alphas.json")
want=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['dyt_table'][0]['dyt_alpha'])" "$JSON")
check_num "($alpha - $want) ^ 2 < (0.02 * $want) ^ 2" "blocks.0.norm1 alpha $alpha is the fixture's $want within 2 %"
if [ "${NL_TEST_QUICK:-0}" != 1 ]; then
  expect_status 0 "eval DyT 0.5 on the test set" "$NORMLAB" eval --model "$TMP/dyt.safetensors" --json
  t=$(top1); f=$(fixture top1_after_dyt_alpha_0.5_no_finetune)
  echo "# DyT alpha 0.5: top-1 $t (fixture $f)"
  check_num "$t - $f < 0.01 && $f - $t < 0.01" "DyT 0.5 top-1 $t is the fixture's $f within 1 point"
  expect_status 0 "eval least-squares DyT on the test set" "$NORMLAB" eval --model "$TMP/lsq.safetensors" --json
  t=$(top1); f=$(fixture top1_after_dyt_alpha_lsq_no_finetune)
  echo "# DyT least squares: top-1 $t (fixture $f)"
  check_num "$t - $f < 0.01 && $f - $t < 0.01" "least-squares DyT top-1 $t is the fixture's $f within 1 point"
else
  expect_status 0 "eval the DyT checkpoint (quick: 200 images)" "$NORMLAB" eval --model "$TMP/lsq.safetensors" --limit 200 --json
fi

# an expression set
expect_status 0 "replace with a full set" "$NORMLAB" replace --model "$SMALL" --set "$SET" --output "$TMP/set.safetensors"
expect_out '^blocks\.0\.norm1 +expr +0\.698\*clip\(2\.31\*x\)$' "the table shows the expressions"
expect_out '^25 of 25 layers replaced$' "all replaced"
expect_status 0 "info of the adapted checkpoint" "$NORMLAB" info "$TMP/set.safetensors"
expect_out '^  blocks\.5\.norm2 +expr +\(1\.06\*x\*sigmoid\(1\.8\*x\) - 0\.093\)\*w \+ b$' "info shows the expression"
expect_status 0 "eval of the adapted checkpoint" "$NORMLAB" eval --model "$TMP/set.safetensors" --limit 200 --json
expect_status 0 "forward of the adapted checkpoint" "$NORMLAB" forward --model "$TMP/set.safetensors" --input "$REF" --output "$TMP/fw_set.safetensors"
d=$($ST maxdiff "$TMP/fw_set.safetensors" "$REF" logits)
check_num "$d > 0.01" "the expressions change the logits ($d)"
printf '# part of a set\nblocks.0.norm1 = 0.7*clip(2.3*x)\n\nnorm = tanh(x)  # final\n' >"$TMP/part.exprs"
expect_status 0 "replace with a partial set" "$NORMLAB" replace --model "$SMALL" --set "$TMP/part.exprs" --output "$TMP/part.safetensors"
expect_out '^blocks\.0\.norm2 +layernorm +LayerNorm \(not in the set\)$' "layers not in the set stay LayerNorm"
expect_out "^2 of 25 layers replaced; 23 kept LayerNorm \(not in $TMP/part.exprs\): blocks\.0\.norm2 blocks\.1\.norm1 .* blocks\.11\.norm2\$" "the kept layers are listed"
expect_status 0 "a partial set on an adapted checkpoint" "$NORMLAB" replace --model "$TMP/dyt175.safetensors" --set "$TMP/part.exprs" --output "$TMP/part2.safetensors"
expect_out '^blocks\.0\.norm2 +dyt +tanh\(1\.75\*x\) \(not in the set\)$' "layers not in the set are left as they were"
expect_out "^2 of 25 layers replaced; 23 kept as they were \(not in $TMP/part.exprs\): blocks\.0\.norm2 " "and listed"
expect_status 0 "replace --json" "$NORMLAB" replace --model "$SMALL" --set "$TMP/part.exprs" --output "$TMP/part.safetensors" --json
expect_out '"kept": \["blocks\.0\.norm2", ' "--json lists the kept layers"
expect_out '\{"name": "norm", "kind": "expr", "expr": "tanh\(x\)"\}' "--json has each layer"

# bad input: exit 2, a message, no output written, an existing one untouched
cp "$TMP/dyt.safetensors" "$TMP/keep.safetensors"
printf '# set\nblocks.0.norm1 = x\n\nblocks.12.norm1 = x\n' >"$TMP/b1.exprs"
expect_status 2 "unknown layer" "$NORMLAB" replace --model "$SMALL" --set "$TMP/b1.exprs" --output "$TMP/keep.safetensors"
expect_err "b1\.exprs:4: unknown layer 'blocks\.12\.norm1'" "the unknown layer is named with its line"
ok $(cmp -s "$TMP/keep.safetensors" "$TMP/dyt.safetensors"; echo $?) "the existing output is untouched"
printf 'blocks.0.norm1 = x\nblocks.0.norm2 = tanh(2*x\n' >"$TMP/b2.exprs"
expect_status 2 "parse error" "$NORMLAB" replace --model "$SMALL" --set "$TMP/b2.exprs" --output "$TMP/none.safetensors"
expect_err 'b2\.exprs:2:26: expected' "the parse error has line:col"
expect_err '^ +\^$' "and a caret"
printf 'blocks.0.norm1 = x\nblocks.0.norm2 = nan*x\n' >"$TMP/b3.exprs"
expect_status 2 "NaN constant" "$NORMLAB" replace --model "$SMALL" --set "$TMP/b3.exprs" --output "$TMP/none.safetensors"
expect_err "b3\.exprs:2:18: 'nan' is not allowed" "the NaN constant is named"
printf 'blocks.0.norm1 = 1e39*x\n' >"$TMP/b4.exprs"
expect_status 2 "constant out of range" "$NORMLAB" replace --model "$SMALL" --set "$TMP/b4.exprs" --output "$TMP/none.safetensors"
expect_err 'b4\.exprs:1:18: number out of range' "the out-of-range constant is named"
expect_status 2 "dyt=nan" "$NORMLAB" replace --model "$SMALL" --set dyt=nan --output "$TMP/none.safetensors"
expect_err 'alpha is not a finite number' "a NaN alpha is refused"
# one grammar of the spec: Lua's model:replace parses the same text with the same messages
printf 'local m = normlab.load_model(arg[1])\nfor i = 2, #arg do\n  local ok, e = pcall(m.replace, m, arg[i])\n  io.write(tostring(e):match("model:replace: (.*)"), "\\n")\nend\n' >"$TMP/spec.lua"
for spec in dyt=nan dyt= "dyt=$TMP/nothing.json" "$TMP/nothing.exprs" "$TMP/b4.exprs"; do
  "$NORMLAB" replace --model "$SMALL" --set "$spec" --output "$TMP/none.safetensors" 2>"$TMP/cli.err"
  cli=$(sed -n '1s/^normlab replace: --set: //p' "$TMP/cli.err")
  lua=$("$NORMLAB" lua "$TMP/spec.lua" "$SMALL" "$spec" 2>&1 | head -1)
  [ -n "$cli" ] && [ "$cli" = "$lua" ]; ok $? "--set '$spec' and model:replace('$spec'): the same message ($lua)"
done
echo '{"layers": [{"name": "blocks.0.norm1", "alpha": 1.0}, {"name": "fc_norm", "alpha": 1.0}]}' >"$TMP/ba.json"
expect_status 2 "alphas for an unknown layer" "$NORMLAB" replace --model "$SMALL" --set "dyt=$TMP/ba.json" --output "$TMP/none.safetensors"
expect_err "unknown layer 'fc_norm'" "the unknown layer is named"
expect_status 2 "alphas file missing" "$NORMLAB" replace --model "$SMALL" --set "dyt=$TMP/nothing.json" --output "$TMP/none.safetensors"
expect_status 2 "--set is required" "$NORMLAB" replace --model "$SMALL" --output "$TMP/none.safetensors"
expect_status 2 "a set file that does not exist" "$NORMLAB" replace --model "$SMALL" --set "$TMP/nothing.exprs" --output "$TMP/none.safetensors"
ok $([ ! -e "$TMP/none.safetensors" ]; echo $?) "no output file after the errors"
left=$(ls -A "$TMP" | grep -v -E '\.(safetensors|exprs|json|lua)$' | grep -v -E '^(out|err|meta|cli\.err)$' | tr '\n' ' ')
ok $([ -z "$left" ]; echo $?) "no temporary files left behind ($left)"

# malformed norms metadata in a checkpoint: exit 2 naming the layer
python3 - "$TMP/set.safetensors" "$TMP/badmeta.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
norms = json.loads(h['__metadata__']['norms']); norms['blocks.4.norm1']['expr'] = '0.55*clip(3.1*x'
h['__metadata__']['norms'] = json.dumps(norms)
hb = json.dumps(h).encode()
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hb)) + hb + b[8 + n:])
PY
expect_status 2 "info of a checkpoint with a broken expression" "$NORMLAB" info "$TMP/badmeta.safetensors"
expect_err "__metadata__ norms: layer 'blocks\.4\.norm1': 1:16:" "the layer and column are named"
done_testing
