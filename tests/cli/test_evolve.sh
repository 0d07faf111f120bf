#!/bin/sh
# normlab evolve on mappings imported from the small reference model, with
# tiny settings: result files, CSV columns, JSON fields, resume, bad flags.
. "$NL_SRCDIR/tests/cli/lib.sh"

expect_status 2 "evolve without --maps exits 2" "$NORMLAB" evolve --output "$TMP/o"
expect_status 2 "evolve without --output exits 2" "$NORMLAB" evolve --maps "$TMP/none.st"
expect_status 2 "--complexity bogus exits 2" "$NORMLAB" evolve --maps "$TMP/none.st" \
  --output "$TMP/o" --complexity bogus
expect_err "nodes\|flops" "the error lists the choices"
expect_status 2 "--select bogus exits 2" "$NORMLAB" evolve --maps x --output o --select bogus
expect_status 2 "--pop 0 exits 2" "$NORMLAB" evolve --maps "$TMP/none.st" --output "$TMP/o" --pop 0
expect_status 2 "--max-nodes abc exits 2" "$NORMLAB" evolve --maps x --output o --max-nodes abc
expect_status 2 "--tournament larger than --pop exits 2" "$NORMLAB" evolve --maps x --output o \
  --pop 10 --tournament 11
expect_status 2 "a missing mappings file exits 2" "$NORMLAB" evolve --maps "$TMP/none.st" \
  --output "$TMP/o"
expect_status 0 "evolve --help" "$NORMLAB" evolve --help
expect_out "--complexity nodes\|flops" "help lists --complexity"

if have_fixtures; then
  M="$TMP/maps.st"
  expect_status 0 "import the reference mappings" "$NORMLAB" maps \
    --import "$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors" \
    --x-prefix map_x. --y-prefix map_y. --output "$M"
  L=blocks.0.norm1
  expect_status 2 "an unknown layer exits 2" "$NORMLAB" evolve --maps "$M" --layer nope \
    --output "$TMP/o"
  expect_err "no layer 'nope'" "the error names the layer"
  expect_status 0 "evolve one layer, tiny settings" "$NORMLAB" evolve --maps "$M" --layer $L \
    --pop 40 --gens 3 --seeds 2 --output "$TMP/ev" --json
  cp "$TMP/out" "$TMP/ev.json"
  [ -f "$TMP/ev/$L.csv" ]; ok $? "the layer's fronts CSV exists"
  [ -f "$TMP/ev/chosen.exprs" ]; ok $? "chosen.exprs exists"
  head -1 "$TMP/ev/$L.csv" | grep -qx \
    'layer,seed,rank,nodes,flops,train_fitness,val_fitness,val_mse,val_r2,expr'
  ok $? "the CSV header has the ten columns"
  awk -F, 'NR > 1 && $1 == "blocks.0.norm1" && ($2 == 0 || $2 == 1) && $4 >= 1 && $4 <= 20 \
    { n++ } END { exit !(n >= 2 && n == NR - 1) }' "$TMP/ev/$L.csv"
  ok $? "every row names the layer, a seed 0 or 1, at most 20 nodes"
  cut -d, -f2 "$TMP/ev/$L.csv" | sort -u | grep -c '^[01]$' | grep -qx 2
  ok $? "both seeds have rows"
  grep -q "^$L = .*# *seed=[01] nodes=[0-9]* flops=" "$TMP/ev/chosen.exprs"
  ok $? "chosen.exprs holds the layer with its figures"
  expect_status 0 "chosen.exprs is a valid expression set" "$NORMLAB" cost "$TMP/ev/chosen.exprs"
  if command -v python3 >/dev/null; then
    run python3 -c "
import json, sys
d = json.load(open('$TMP/ev.json'))
l = d['layers'][0]
ok = set(l) == {'name','expr','val_mse','val_r2','flops','nodes','seconds'} and \
  l['name'] == '$L' and 0 < l['val_r2'] <= 1 and abs(d['mean_val_r2'] - l['val_r2']) < 1e-12 \
  and 'seconds' in d and 1 <= l['nodes'] <= 20
sys.exit(not ok)"
    ok "$rc" "JSON has layers[{name,expr,val_mse,val_r2,flops,nodes,seconds}], mean_val_r2, seconds"
  fi
  cp "$TMP/ev/$L.csv" "$TMP/first.csv"
  expect_status 0 "rerunning the same command resumes" "$NORMLAB" evolve --maps "$M" \
    --layer $L --pop 40 --gens 3 --seeds 2 --output "$TMP/ev"
  expect_out "resumed" "finished layer-seeds are skipped"
  cmp -s "$TMP/first.csv" "$TMP/ev/$L.csv"; ok $? "the fronts are unchanged"
  expect_status 0 "one thread gives the same fronts" "$NORMLAB" --threads 1 evolve \
    --maps "$M" --layer $L --pop 40 --gens 3 --seeds 2 --output "$TMP/ev1"
  cmp -s "$TMP/first.csv" "$TMP/ev1/$L.csv"; ok $? "identical to the two-thread run"
  expect_status 0 "--complexity flops --select knee" "$NORMLAB" evolve --maps "$M" --layer $L \
    --pop 40 --gens 3 --complexity flops --select knee --output "$TMP/evf"
  [ -f "$TMP/evf/$L.csv" ]; ok $? "flops run writes its CSV"
  # Ctrl-C: stops after the current generation, keeps the front as a partial part
  if command -v timeout >/dev/null; then
    run timeout --preserve-status -s INT 1 "$NORMLAB" evolve --maps "$M" --layer $L \
      --pop 40 --gens 1000000 --output "$TMP/evi"
    [ "$rc" -eq 130 ]; ok $? "SIGINT: exit status 130 (got $rc)"
    [ -f "$TMP/evi/parts/$L.seed0.partial.csv" ] && [ ! -f "$TMP/evi/parts/$L.seed0.csv" ]
    ok $? "SIGINT: the front is kept as a partial result, not marked finished"
    grep -q "partial" "$TMP/evi/chosen.exprs"; ok $? "chosen.exprs marks the layer partial"
  fi
  expect_status 0 "bench gp on the mappings" "$NORMLAB" bench gp --maps "$M" --seconds 0.5 --json
  expect_out '"gens_per_s"' "bench gp reports generations/s"
  expect_out '"limit_node_evals_per_s_per_core"' "bench gp reports the engine's limit"
fi
expect_status 0 "bench list shows gp" "$NORMLAB" bench list
expect_out '^  gp ' "gp is listed"
done_testing
