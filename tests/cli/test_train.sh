#!/bin/sh
# normlab train on the small reference model with tiny settings: bad flags,
# a short run that lowers the loss, the files it writes, --resume at the
# right epoch, Ctrl-C then resume giving the uninterrupted result,
# distillation, random init.
. "$NL_SRCDIR/tests/cli/lib.sh"

expect_status 2 "train without --output exits 2" "$NORMLAB" train --model x.st
expect_err "output" "the error names --output"
expect_status 2 "--variant bogus exits 2" "$NORMLAB" train --output "$TMP/o" --variant bogus
expect_err "affine\|full" "the error lists the variants"
expect_status 2 "--lr -1 exits 2" "$NORMLAB" train --output "$TMP/o" --lr -1
expect_err "--lr" "the error names --lr"
expect_status 2 "--lr abc exits 2" "$NORMLAB" train --output "$TMP/o" --lr abc
expect_status 2 "--epochs 0 exits 2" "$NORMLAB" train --output "$TMP/o" --epochs 0
expect_err "epochs" "the error names --epochs"
expect_status 2 "--lambda 2 exits 2" "$NORMLAB" train --output "$TMP/o" --teacher t --lambda 2
expect_err "lambda" "the error names --lambda"
expect_status 2 "--tau without --teacher exits 2" "$NORMLAB" train --output "$TMP/o" --tau 2
expect_status 2 "--augment with --no-augment exits 2" "$NORMLAB" train --output "$TMP/o" \
  --augment --no-augment
expect_status 2 "--schedule bogus exits 2" "$NORMLAB" train --output "$TMP/o" --schedule bogus
expect_status 2 "--drop-path 1.5 exits 2" "$NORMLAB" train --output "$TMP/o" --drop-path 1.5
expect_status 2 "an unknown flag exits 2" "$NORMLAB" train --output "$TMP/o" --bogus 1
expect_status 2 "a missing model exits 2" "$NORMLAB" train --model "$TMP/none.st" \
  --output "$TMP/o"
expect_status 0 "train --help" "$NORMLAB" train --help
expect_out "--variant affine\|full" "help lists --variant"

data_ok() { [ -f "${NL_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}/train-images-idx3-ubyte.gz" ]; }
if have_fixtures && data_ok; then
  M="$NL_FIXTURES/vit_small_p7_fmnist.safetensors"
  A="--model $M --limit 512 --eval-limit 500 --batch 128 --lr 1e-3"
  # shellcheck disable=SC2086
  expect_status 0 "two epochs on 512 images" "$NORMLAB" train $A --epochs 2 --output "$TMP/r"
  for f in epoch-001.safetensors epoch-002.safetensors last.safetensors state.safetensors \
    train.json train.csv; do
    [ -f "$TMP/r/$f" ]; ok $? "$f written"
  done
  head -1 "$TMP/r/train.csv" | grep -qx 'epoch,steps,lr,loss,top1,top5,seconds,images_per_second'
  ok $? "the CSV header"
  [ "$(wc -l <"$TMP/r/train.csv")" -eq 4 ]; ok $? "epochs 0, 1, 2 logged"
  awk -F, 'NR == 2 && $1 == 0 && $4 == "" && $5 > 0.5 { ok = 1 } END { exit !ok }' "$TMP/r/train.csv"
  ok $? "epoch 0 is evaluated before training"
  l1=$(awk -F, 'NR == 3 { print $4 }' "$TMP/r/train.csv")
  l2=$(awk -F, 'NR == 4 { print $4 }' "$TMP/r/train.csv")
  check_num "$l2 < $l1" "the training loss goes down ($l1 -> $l2)"
  awk -F, 'NR == 4 && $2 == 8 { ok = 1 } END { exit !ok }' "$TMP/r/train.csv"
  ok $? "4 steps per epoch (512 / 128)"
  t2=$(awk -F, 'NR == 4 { print $5 }' "$TMP/r/train.csv")
  expect_status 0 "the checkpoint loads in eval" "$NORMLAB" eval \
    --model "$TMP/r/epoch-002.safetensors" --limit 500 --json
  e2=$(sed 's/.*"top1": \([0-9.]*\).*/\1/' "$TMP/out")
  check_num "($e2 - $t2) < 1e-6 && ($t2 - $e2) < 1e-6" "eval of the checkpoint gives the logged top-1 ($e2)"
  # shellcheck disable=SC2086
  expect_status 2 "the same --output without --resume exits 2" "$NORMLAB" train $A --epochs 3 \
    --output "$TMP/r"
  expect_err "resume" "the error suggests --resume"
  # shellcheck disable=SC2086
  expect_status 0 "--resume with --epochs 3" "$NORMLAB" train $A --epochs 3 --output "$TMP/r" \
    --resume
  expect_err "resuming .* at epoch 3, batch 0" "it continues at epoch 3"
  [ "$(wc -l <"$TMP/r/train.csv")" -eq 5 ]; ok $? "epoch 3 appended to the log"
  [ -f "$TMP/r/epoch-003.safetensors" ]; ok $? "epoch-003 written"
  if command -v python3 >/dev/null; then
    run python3 -c "
import json, sys
d = json.load(open('$TMP/r/train.json'))
sys.exit(not (d['config']['epochs'] == 3 and d['resumes'] == [{'epoch': 2, 'batch': 0, 'epochs': [2, 3]}]))"
    ok "$rc" "train.json records the extension (config epochs 3, resumes 2 -> 3)"
  fi
  # a resume must keep the run's settings: a changed one is refused, naming both values
  R="--model $M --limit 512 --eval-limit 500 --batch 128 --epochs 3 --output $TMP/r --resume"
  cp "$TMP/r/state.safetensors" "$TMP/r.state"
  # shellcheck disable=SC2086
  expect_status 2 "--resume with another --lr exits 2" "$NORMLAB" train $R --lr 2e-3
  expect_err "--lr: the run in .*/r was started with 0\.001, this command gives 0\.002" \
    "the error names --lr and both values"
  # shellcheck disable=SC2086
  expect_status 2 "--resume with another --seed exits 2" "$NORMLAB" train $R --lr 1e-3 --seed 7
  expect_err "--seed: the run in .* was started with 0, this command gives 7" \
    "the error names --seed and both values"
  # shellcheck disable=SC2086
  expect_status 2 "--resume with another --variant exits 2" "$NORMLAB" train $R --lr 1e-3 \
    --variant affine
  expect_err "--variant: .* started with 'full', this command gives 'affine'" "the error names --variant"
  # shellcheck disable=SC2086
  expect_status 2 "--resume with another --eval-limit exits 2" "$NORMLAB" train $R --lr 1e-3 \
    --eval-limit 100
  expect_err "--eval-limit: .* started with 500, this command gives 100" "the error names --eval-limit"
  python3 "$NL_SRCDIR/tests/cli/st_tool.py" set "$M" "$TMP/m2.safetensors" \
    blocks.0.mlp.fc1.weight 5 0.5
  # shellcheck disable=SC2086
  expect_status 2 "--resume with another model's weights exits 2" "$NORMLAB" train $R --lr 1e-3 \
    --model "$TMP/m2.safetensors"
  expect_err "--model: .*/m2.safetensors is not the model the run in .* was started from" \
    "the error names --model"
  # shellcheck disable=SC2086
  expect_status 2 "--resume with fewer epochs than done exits 2" "$NORMLAB" train $R --lr 1e-3 \
    --epochs 2
  expect_err "--epochs 2: the run in .* has already trained 3 epochs" "the error says how many are done"
  cmp -s "$TMP/r/state.safetensors" "$TMP/r.state"; ok $? "a refused resume leaves the state as it was"
  cp "$M" "$TMP/same.safetensors"
  # shellcheck disable=SC2086
  expect_status 0 "the same model at another path, another --threads: accepted" "$NORMLAB" train \
    $R --lr 1e-3 --model "$TMP/same.safetensors" --threads 1
  # a torn run directory: the model and state of different steps, a temporary file of an
  # interrupted write. The state is the one commit point: a resume reads it alone and
  # rewrites the model beside it, so it ends with the weights of a run never interrupted.
  T="--model $M --limit 256 --eval-limit 100 --batch 64 --schedule constant"
  # shellcheck disable=SC2086
  expect_status 0 "an uninterrupted 2-epoch run" "$NORMLAB" train $T --epochs 2 --output "$TMP/u2"
  # shellcheck disable=SC2086
  expect_status 0 "the first epoch of the same run" "$NORMLAB" train $T --epochs 1 --output "$TMP/t"
  cp "$TMP/t/state.safetensors" "$TMP/t.state1"
  # shellcheck disable=SC2086
  expect_status 0 "its second epoch" "$NORMLAB" train $T --epochs 2 --output "$TMP/t" --resume
  cmp -s "$TMP/t/last.safetensors" "$TMP/u2/last.safetensors"
  ok $? "one epoch, then a second on --resume: the uninterrupted weights"
  # killed after last.safetensors was renamed, before state.safetensors was, and during the
  # write of the next state
  cp "$TMP/t.state1" "$TMP/t/state.safetensors"
  printf 'half a state' >"$TMP/t/state.safetensors.tmp.Xy12Ab"
  # shellcheck disable=SC2086
  expect_status 0 "resume a run whose model is newer than its state" "$NORMLAB" train $T \
    --epochs 2 --output "$TMP/t" --resume
  expect_err "resuming .* at epoch 2, batch 0" "it resumes at the state's position"
  cmp -s "$TMP/t/last.safetensors" "$TMP/u2/last.safetensors"
  ok $? "and ends with the uninterrupted weights"
  [ -z "$(find "$TMP/t" -name '*.tmp.*')" ]; ok $? "the stale temporary file is removed"
  # killed after the state was renamed, before the model was
  cp "$TMP/t/epoch-001.safetensors" "$TMP/t/last.safetensors"
  # shellcheck disable=SC2086
  expect_status 0 "resume a finished run whose model is older than its state" "$NORMLAB" train \
    $T --epochs 2 --output "$TMP/t" --resume
  cmp -s "$TMP/t/last.safetensors" "$TMP/u2/last.safetensors"
  ok $? "last.safetensors is rewritten from the state"
  # a state without the parameters (as written before they were kept in it) is refused
  python3 "$NL_SRCDIR/tests/cli/st_tool.py" variant "$TMP/t/state.safetensors" "$TMP/s.tmp" \
    drop=param.head.bias
  mv "$TMP/s.tmp" "$TMP/t/state.safetensors"
  # shellcheck disable=SC2086
  expect_status 2 "a state without the model's parameters exits 2" "$NORMLAB" train $T \
    --epochs 2 --output "$TMP/t" --resume
  expect_err "tensor param\.head\.bias is missing" "the error names the missing tensor"
  # Ctrl-C mid-epoch, resume: the same weights as a run never stopped
  B="--model $M --limit 2048 --eval-limit 100 --batch 64 --epochs 1"
  # shellcheck disable=SC2086
  "$NORMLAB" train $B --output "$TMP/i" >"$TMP/i.out" 2>"$TMP/i.err" &
  pid=$!
  n=0
  while ! grep -q "epoch 0 (before" "$TMP/i.err" 2>/dev/null && [ $n -lt 300 ]; do
    sleep 0.1; n=$((n + 1))
  done
  sleep 0.5
  kill -INT $pid
  wait $pid
  rc=$?
  [ "$rc" -eq 130 ]; ok $? "SIGINT: exit status 130 (got $rc)"
  [ -f "$TMP/i/state.safetensors" ] && [ -f "$TMP/i/last.safetensors" ]
  ok $? "SIGINT: model and state saved"
  # shellcheck disable=SC2086
  expect_status 0 "resume the interrupted run" "$NORMLAB" train $B --output "$TMP/i" --resume
  expect_err "resuming .* at epoch 1, batch [1-9]" "it continues inside epoch 1"
  # shellcheck disable=SC2086
  expect_status 0 "the same run without a stop" "$NORMLAB" train $B --output "$TMP/u"
  cmp -s "$TMP/i/last.safetensors" "$TMP/u/last.safetensors"
  ok $? "stopped and resumed gives the uninterrupted weights"
  # a model with a NaN weight: an error naming the tensor, not a 100 % epoch 0
  python3 "$NL_SRCDIR/tests/cli/st_tool.py" set "$M" "$TMP/nan.safetensors" \
    blocks.0.mlp.fc1.weight 5 nan
  expect_status 2 "training a model with a NaN weight exits 2" "$NORMLAB" train \
    --model "$TMP/nan.safetensors" --limit 256 --eval-limit 100 --batch 128 --output "$TMP/n"
  expect_err "tensor blocks\.0\.mlp\.fc1\.weight has 1 non-finite value" "the error names the tensor"
  ! grep -q "epoch 0 (before training)" "$TMP/err"; ok $? "no epoch-0 accuracy is reported"
  # the same messages for a bad value from the command line and from Lua
  expect_status 2 "--lr 0 exits 2" "$NORMLAB" train --output "$TMP/o" --lr 0
  cli=$(sed -n 's/^normlab train: //p' "$TMP/err")
  printf 'local m = normlab.load_model(arg[1])\nlocal ok, e = pcall(m.train, m, {lr = 0, output = arg[2]})\nio.write(tostring(e):match("model:train: (.*)"), "\\n")\n' \
    >"$TMP/lr.lua"
  lua=$("$NORMLAB" lua "$TMP/lr.lua" "$M" "$TMP/o" 2>&1)
  [ -n "$cli" ] && [ "$cli" = "$lua" ]; ok $? "Lua's model:train gives the command line's message ($lua)"
  # distillation, affine variant, JSON
  expect_status 0 "affine distillation from the model itself" "$NORMLAB" train --model "$M" \
    --teacher "$M" --variant affine --limit 256 --eval-limit 100 --batch 128 --epochs 1 \
    --output "$TMP/d" --json
  if command -v python3 >/dev/null; then
    run python3 -c "
import json, sys
d = json.load(open('$TMP/d/train.json'))
c = d['config']
ok = c['variant'] == 'affine' and c['teacher'] == '$M' and c['tau'] == 4 and c['lambda'] == 0.5 \
  and [r['epoch'] for r in d['epochs']] == [0, 1] and d['epochs'][1]['loss'] > 0
sys.exit(not ok)"
    ok "$rc" "train.json: config with teacher, tau 4, lambda 0.5, epochs 0 and 1"
  fi
  expect_status 0 "the same distillation with one thread" "$NORMLAB" --threads 1 train \
    --model "$M" --teacher "$M" --variant affine --limit 256 --eval-limit 100 --batch 128 \
    --epochs 1 --output "$TMP/d1"
  cmp -s "$TMP/d/last.safetensors" "$TMP/d1/last.safetensors"
  ok $? "one thread gives the two-thread weights, byte for byte"
  expect_status 0 "--init random" "$NORMLAB" train --model "$M" --init random --limit 128 \
    --eval-limit 200 --batch 128 --epochs 1 --output "$TMP/z"
  awk -F, 'NR == 2 && $5 < 0.3 { ok = 1 } END { exit !ok }' "$TMP/z/train.csv"
  ok $? "a random init starts near chance"
fi
if have_fixtures; then
  expect_status 0 "bench train" "$NORMLAB" bench train \
    --model "$NL_FIXTURES/vit_small_p7_fmnist.safetensors" --batch 16 --seconds 0.2 --json
  expect_out '"images_per_second":[0-9.]+' "bench train reports images/s"
  expect_out '"fraction_of_peak":[0-9.]+' "bench train reports the fraction of the sgemm peak"
fi
expect_status 0 "bench list shows train" "$NORMLAB" bench list
expect_out '^  train ' "train is listed"
done_testing
