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
