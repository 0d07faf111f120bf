#!/bin/sh
# The prompt's own expression set and model: eval, replace and train use
# them by default (checked against the shell's commands given the same
# set as a file), and cost takes d and the tokens per image from the
# loaded model's config (figures worked out by hand).
. "$NL_SRCDIR/tests/cli/lib.sh"

if ! have_fixtures; then
  echo "ok 1 # SKIP fixtures not found in $NL_FIXTURES"
  echo "1..1"
  exit 0
fi
M="$NL_FIXTURES/vit_tiny_p4_fmnist.safetensors" # d 192, 28x28 images, patch 4: 7*7 + 1 = 50 tokens

# cost at the prompt: d = 192 and 50 tokens from the model. tanh is 23
# FLOPs/elem: 23*192 = 4,416 per token, x 50 tokens = 220,800; LayerNorm
# (5*192 + 2) * 50 = 48,100; DyT 24*192*50 = 230,400
expect_status 0 "cost of the session's set on the loaded model" "$NORMLAB" -c "load model $M; set blocks.0.norm1 = tanh(x); cost"
expect_out '^d = 192 \(model\), tokens = 50 \(model\)$' "d and tokens come from the model, and say so"
expect_out '^  blocks\.0\.norm1  tanh\(x\) +23 +4,416 +768$' "per token at d = 192"
expect_out '^  this set +220,800 +38,400$' "the set over 50 tokens"
expect_out '^  LayerNorm +48,100 +76,800 ' "LayerNorm over 50 tokens"
expect_out '^  DyT +230,400 +38,400 ' "DyT over 50 tokens"
expect_status 0 "cost --tokens overrides the model's" "$NORMLAB" -c "load model $M; cost --tokens 10 'tanh(x)'"
expect_out '^d = 192 \(model\), tokens = 10 \(--tokens\)$' "an option given says so"
expect_out '^  this set +44,160 ' "23 * 192 * 10"
expect_status 0 "cost without a model" "$NORMLAB" -c "cost 'tanh(x)'"
expect_out '^d = 768 \(default: ViT-B/16\), tokens = 197 \(default: ViT-B/16\)$' "the defaults are named"
expect_status 0 "cost --json at the prompt" "$NORMLAB" -c "load model $M; cost --json 'x'"
expect_out '"dim_from": "model"' "the JSON says where d came from"
expect_out '"tokens": 50,' "the JSON has the model's tokens"
if command -v gnuplot >/dev/null 2>&1; then
  expect_status 0 "plot cost at the prompt" env COLUMNS=120 LINES=40 "$NORMLAB" -c "load model $M; set blocks.0.norm1 = tanh(x); plot cost --term dumb"
  expect_out 'd = 192 \(model\)' "plot cost uses the model's width"
fi

# replace at the prompt: the session's set as it is (an unsaved edit)
# and model, the same checkpoint as the shell's replace of that set
printf 'blocks.0.norm1 = x\nblocks.3.norm2 = tanh(1.5 * x)\n' >"$TMP/s.exprs"
expect_status 0 "the shell's replace with a set file" "$NORMLAB" replace --model "$M" --set "$TMP/s.exprs" --output "$TMP/shell.safetensors"
expect_status 0 "replace at the prompt without --set" "$NORMLAB" -c "load model $M; set blocks.0.norm1 = x; set blocks.3.norm2 = tanh(1.5 * x); replace --output $TMP/prompt.safetensors"
expect_out "kept LayerNorm \(not in the session's set\)" "the report names the session's set"
cmp -s "$TMP/shell.safetensors" "$TMP/prompt.safetensors"; ok $? "the same checkpoint as the shell's"
expect_status 2 "replace at the prompt without a set" "$NORMLAB" -c "load model $M; replace --output $TMP/none.safetensors"
expect_err "missing required option --set SPEC \(or an expression set in the session" "the missing set is explained"
[ ! -e "$TMP/none.safetensors" ]; ok $? "nothing is written"
expect_status 0 "replace --set beats the session's set" "$NORMLAB" -c "load model $M; set blocks.0.norm1 = x; replace --set ln --output $TMP/ln.safetensors"
expect_out '^0 of 25 layers replaced|^25 of 25 layers replaced' "--set ln was used"

# eval at the prompt: the session's model with the session's set, as the
# shell's eval of the checkpoint replace wrote
expect_status 0 "the shell's eval of the adapted checkpoint" "$NORMLAB" eval --model "$TMP/shell.safetensors" --limit 300 --json
ref=$(sed -n 's/.*"top1": \([0-9.]*\).*/\1/p' "$TMP/out")
expect_status 0 "the shell's eval of the model" "$NORMLAB" eval --model "$M" --limit 300 --json
plain=$(sed -n 's/.*"top1": \([0-9.]*\).*/\1/p' "$TMP/out")
check_num "$ref != $plain" "the set changes the accuracy ($ref vs $plain)"
expect_status 0 "eval at the prompt" "$NORMLAB" -c "load model $M; set blocks.0.norm1 = x; set blocks.3.norm2 = tanh(1.5 * x); eval --limit 300 --json; eval --limit 300"
got=$(sed -n 's/.*"top1": \([0-9.]*\).*/\1/p' "$TMP/out")
check_num "$got == $ref" "eval uses the session's set on the session's model ($got vs $ref)"
expect_out '"set": "the session.s set", "replaced": 2' "the JSON names what was replaced"
expect_out "with the session's set \(2 of 25 norm layers replaced\) on fmnist:test" "the line says what was evaluated"
expect_status 0 "eval --set none at the prompt" "$NORMLAB" -c "load model $M; set blocks.0.norm1 = x; eval --limit 300 --json --set none"
got=$(sed -n 's/.*"top1": \([0-9.]*\).*/\1/p' "$TMP/out")
check_num "$got == $plain" "--set none evaluates the model as loaded"
expect_status 0 "eval --set FILE on the shell line" "$NORMLAB" eval --model "$M" --set "$TMP/s.exprs" --limit 300 --json
got=$(sed -n 's/.*"top1": \([0-9.]*\).*/\1/p' "$TMP/out")
check_num "$got == $ref" "--set FILE on the shell line is the replaced checkpoint's accuracy"
printf 'blocks.99.norm1 = x\n' >"$TMP/bad.exprs"
expect_status 2 "a set naming a layer the model lacks is an error" "$NORMLAB" eval --model "$M" --set "$TMP/bad.exprs" --limit 10
expect_err "blocks\.99\.norm1" "the layer is named"

# train at the prompt: the session's set goes into the model it trains,
# and setting seed is its --seed
expect_status 0 "train at the prompt" "$NORMLAB" -c "load model $M; set blocks.0.norm1 = x; setting seed 3; train --epochs 1 --limit 64 --eval-limit 64 --batch 32 --output $TMP/run"
expect_err "with the session's set \(1 of 25 norm layers replaced\)" "train says what it put in"
expect_status 0 "info of the trained checkpoint" "$NORMLAB" info "$TMP/run/last.safetensors"
expect_out '^  blocks\.0\.norm1 +expr +\(x\)\*w \+ b$' "the trained checkpoint holds the session's expression"
expect_out '^norm layers \(25: 24 LayerNorm, 0 DyT, 1 expression\)' "and LayerNorm elsewhere"
grep -q '"seed": 3' "$TMP/run/train.json"; ok $? "the setting's seed reached train"

done_testing
