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
    'layer,seed,rank,nodes,flops,train_fitness,val_fitness,val_mse,val_r2,expr,origin'
  ok $? "the CSV header has the eleven columns"
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
ok = set(l) == {'name','expr','val_mse','val_r2','flops','nodes','seconds','origin'} and \
  l['name'] == '$L' and 0 < l['val_r2'] <= 1 and abs(d['mean_val_r2'] - l['val_r2']) < 1e-12 \
  and 'seconds' in d and 1 <= l['nodes'] <= 20
sys.exit(not ok)"
    ok "$rc" "JSON has layers[{name,expr,val_mse,val_r2,flops,nodes,seconds,origin}], mean_val_r2, seconds"
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
  # one parser for the command, 'evolve ... &' at the prompt and Lua: the same messages
  # (a pointer to the help, which depends on where one is, left out)
  nohint='s/ (see .*help evolve.)$//'
  for bad in "--pop 2" "--max-nodes 2.5" "--pop 10 --tournament 11" "--complexity bits" "--xyzzy 5"; do
    run "$NORMLAB" evolve --maps "$M" --output "$TMP/msg" $bad
    cli=$(sed -n 's/^normlab evolve: //p' "$TMP/err" | sed "$nohint")
    cli_rc=$rc
    run "$NORMLAB" -c "evolve --maps $M --output $TMP/msg $bad &"
    bg=$(sed -n 's/^normlab evolve: //p' "$TMP/err" | sed "$nohint")
    bg_rc=$rc
    set -- $bad
    key=${1#--}
    val=$2
    [ "$#" -gt 2 ] && key="pop = $2, ${3#--}" && val=$4
    case "$val" in [0-9]*) ;; *) val="'$val'" ;; esac
    run "$NORMLAB" -c "lua { normlab.evolve(normlab.load_maps('$M'), {$(echo "$key" | tr - _) = $val}) }"
    lua=$(sed -n 's/.*normlab\.evolve: //p' "$TMP/err" | head -1 | sed "$nohint")
    [ "$cli_rc" -eq 2 ] && [ "$bg_rc" -eq 2 ] && [ -n "$cli" ] && [ "$cli" = "$bg" ] && [ "$cli" = "$lua" ]
    ok $? "$bad: one message from the command, 'evolve ... &' and Lua ($cli | $bg | $lua)"
  done
  [ ! -d "$TMP/msg/parts" ]; ok $? "none of them started a search"

  # --threads travels with the search: a background evolve takes it, and
  # one thread in the background gives the fronts of two in the foreground
  expect_status 0 "evolve ... --threads 1 & at the prompt" "$NORMLAB" -c \
    "evolve --maps $M --layer $L --pop 40 --gens 3 --seeds 2 --seed 5 --threads 1 --output $TMP/bg &"
  expect_out "started in the background" "the background search starts"
  expect_status 0 "the same search in the foreground on two threads" "$NORMLAB" --threads 2 \
    evolve --maps "$M" --layer $L --pop 40 --gens 3 --seeds 2 --seed 5 --output "$TMP/fg"
  cmp -s "$TMP/bg/$L.csv" "$TMP/fg/$L.csv" && cmp -s "$TMP/bg/chosen.exprs" "$TMP/fg/chosen.exprs"
  ok $? "bitwise the same fronts and chosen.exprs"

  # a campaign directory holds the results of one mappings file and one set of settings
  M2="$TMP/maps_swapped.st"
  expect_status 0 "other mappings: x and y swapped" "$NORMLAB" maps \
    --import "$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors" \
    --x-prefix map_y. --y-prefix map_x. --output "$M2"
  cp "$TMP/ev/$L.csv" "$TMP/before.csv"
  expect_status 2 "resuming from other mappings is refused" "$NORMLAB" evolve --maps "$M2" \
    --layer $L --pop 40 --gens 3 --seeds 2 --output "$TMP/ev"
  expect_err "parts/$L\.seed0\.csv was computed from other mappings \(fingerprint [0-9a-f]{16}; $M2 has [0-9a-f]{16}\)" \
    "the error names the part and the mappings"
  expect_err "--recompute" "and says how to search it again"
  cmp -s "$TMP/before.csv" "$TMP/ev/$L.csv"; ok $? "the results are left as they were"
  expect_status 2 "resuming with other settings is refused" "$NORMLAB" evolve --maps "$M" \
    --layer $L --pop 40 --gens 4 --seeds 2 --output "$TMP/ev"
  expect_err "parts/$L\.seed0\.csv was computed with other settings \(gens 3 there, 4 here\)" \
    "the error names the part and the setting"
  expect_status 0 "--recompute searches it again from the other mappings" "$NORMLAB" evolve \
    --maps "$M2" --layer $L --pop 40 --gens 3 --seeds 2 --output "$TMP/ev" --recompute
  expect_status 0 "the same search from scratch" "$NORMLAB" evolve --maps "$M2" --layer $L \
    --pop 40 --gens 3 --seeds 2 --output "$TMP/ev2"
  cmp -s "$TMP/ev/$L.csv" "$TMP/ev2/$L.csv"; ok $? "the recomputed fronts are those of the other mappings"

  # --layer into an existing campaign keeps the other layers in chosen.exprs
  L2=blocks.0.norm2
  expect_status 0 "a second layer into the same directory" "$NORMLAB" evolve --maps "$M2" \
    --layer $L2 --pop 40 --gens 3 --seeds 2 --output "$TMP/ev"
  grep -q "^$L = " "$TMP/ev/chosen.exprs" && grep -q "^$L2 = " "$TMP/ev/chosen.exprs"
  ok $? "chosen.exprs holds both layers"
  grep "^$L = " "$TMP/ev2/chosen.exprs" >"$TMP/l1.txt"
  grep -qxF -f "$TMP/l1.txt" "$TMP/ev/chosen.exprs"; ok $? "the first layer's entry is unchanged"
  expect_status 2 "a layer from other mappings beside them is refused" "$NORMLAB" evolve \
    --maps "$M" --layer blocks.1.norm1 --pop 40 --gens 3 --output "$TMP/ev"
  expect_err "chosen.exprs holds layer $L, whose part .*parts/$L\.seed0\.csv was computed from other mappings" \
    "the error names the layer and its part"

  # a layer whose y is constant: an error naming it, as dyt gives
  if command -v python3 >/dev/null; then
    python3 - "$TMP/flat.st" <<'PY'
import json, math, struct, sys
xs = [math.sin(i) for i in range(40)]
t = {"good.x": xs, "good.y": [math.tanh(2 * x) for x in xs], "flat.x": xs, "flat.y": [0.25] * 40}
header, blobs, off = {}, b"", 0
for name, v in t.items():
    data = struct.pack("<%df" % len(v), *v)
    header[name] = {"dtype": "F32", "shape": [len(v)], "data_offsets": [off, off + len(data)]}
    blobs += data
    off += len(data)
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + blobs)
PY
    expect_status 2 "a layer with constant y exits 2" "$NORMLAB" evolve --maps "$TMP/flat.st" \
      --pop 10 --gens 1 --output "$TMP/flat" --json
    expect_err "layer 'flat': y is constant" "the error names the layer"
    [ ! -s "$TMP/out" ]; ok $? "no JSON without the layer"
    expect_status 2 "normlab dyt refuses it too" "$NORMLAB" dyt --maps "$TMP/flat.st" --bins 2
    expect_status 0 "the other layer alone is searched" "$NORMLAB" evolve --maps "$TMP/flat.st" \
      --layer good --pop 10 --gens 1 --output "$TMP/flat"
    run "$NORMLAB" -c "lua { normlab.evolve(normlab.load_maps('$TMP/flat.st'), {pop = 10, gens = 1}) }"
    grep -q "normlab.evolve: .*layer 'flat': y is constant" "$TMP/err"; ok $? "Lua gets the same error"
  fi
  expect_status 0 "bench gp on the mappings" "$NORMLAB" bench gp --maps "$M" --seconds 0.5 --json
  expect_out '"gens_per_s"' "bench gp reports generations/s"
  expect_out '"limit_node_evals_per_s_per_core"' "bench gp reports the engine's limit"
  expect_status 0 "bench gp under normlab --threads 3" "$NORMLAB" --threads 3 bench gp --maps "$M" \
    --seconds 0.3 --json
  expect_out '"threads": 3,' "the global --threads reaches the benchmark's search"
fi
expect_status 0 "bench list shows gp" "$NORMLAB" bench list
expect_out '^  gp ' "gp is listed"
done_testing
