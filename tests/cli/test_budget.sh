#!/bin/sh
# Cost-aware choice and the human in the loop, on synthetic mappings whose
# generating function is known (y = 0.3 x + 1.7 clip(x, -0.7, 0.5) + noise):
# evolve --select budget=..., --max-flops, --init seeds, 'inject' into a
# running background search, 'pick LAYER budget=...', the origin column,
# and the errors (exit 2) for bad values.
. "$NL_SRCDIR/tests/cli/lib.sh"
M="$TMP/s.maps"
# the mappings: layer L, 4000 points, width 192 recorded
python3 - "$M" <<'PY'
import json, struct, random, sys
random.seed(1)
n = 4000
xs = [random.uniform(-2, 2) for _ in range(n)]
ys = [0.3 * x + 1.7 * min(max(x, -0.7), 0.5) + random.gauss(0, 0.01) for x in xs]
h = {"L.x": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]},
     "L.y": {"dtype": "F32", "shape": [n], "data_offsets": [4 * n, 8 * n]},
     "__metadata__": {"width": "192"}}
hb = json.dumps(h).encode()
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(hb)) + hb + struct.pack('<%df' % n, *xs)
                              + struct.pack('<%df' % n, *ys))
PY
ok $? "synthetic mappings written"
SMALL="--pop 30 --gens 4 --threads 1"

# ---- bad values exit 2 ----
for v in budget=0 budget=-1 budget= budget=inf cheapest budget=abc; do
  expect_status 2 "--select $v exits 2" "$NORMLAB" evolve --maps "$M" --output "$TMP/o" --select "$v"
done
expect_err "budget expects a number of FLOPs per element > 0 or 'ln'" "the error says what budget takes"
expect_status 2 "--max-flops -3 exits 2" "$NORMLAB" evolve --maps "$M" --output "$TMP/o" --max-flops -3
expect_err "max-flops" "the error names --max-flops"
expect_status 2 "--init of a missing file exits 2" "$NORMLAB" evolve --maps "$M" --output "$TMP/o" \
  --init "$TMP/none.exprs"
expect_err "none.exprs" "the error names the file"
printf 'L = 0.3*x +\n' >"$TMP/bad.exprs"
printf '# seeds\n\nL = 0.3*x + (\n' >"$TMP/bad.exprs"
expect_status 2 "--init of a bad file exits 2" "$NORMLAB" evolve --maps "$M" --output "$TMP/o" \
  --init "$TMP/bad.exprs"
expect_err "bad.exprs:3" "the error names the file and line"
printf 'L = x + x + x + x + x + x + x + x + x + x + x\n' >"$TMP/long.exprs"
expect_status 2 "--init with more nodes than --max-nodes exits 2" "$NORMLAB" evolve --maps "$M" \
  --output "$TMP/o" --init "$TMP/long.exprs" --max-nodes 10
expect_err "long.exprs:1: L's expression has 21 nodes, more than --max-nodes 10" "the error names file, line and limit"

# ---- scripts/pwl-seeds: one 5-FLOP piecewise-linear seed per layer ----
run sh "$NL_SRCDIR/scripts/pwl-seeds" "$M" "$NORMLAB"
ok "$rc" "pwl-seeds runs"
cp "$TMP/out" "$TMP/pwl.exprs"
# x is uniform on [-2, 2]: s = 4/sqrt(12) = 1.1547 (sample std within 2 %)
sed -n 's/^L = \(.*\)$/\1/p' "$TMP/pwl.exprs" | tr -c '0-9.\n-' ' ' | awk '{
  s = 2 / sqrt(3); ok = NF == 7
  want[1] = 0.05 / s; want[2] = 0.6 / s; want[3] = -s; want[4] = s; want[5] = 0.3 / s
  want[6] = -3 * s; want[7] = 3 * s
  for (i = 1; i <= 7; i++) if ((($i - want[i]) / want[i])^2 > 4e-4) ok = 0
  exit !ok }'
ok $? "the seed is a*x + b*clip(x, -s, s) + c*clip(x, -3s, 3s) with the layer's x std"
expect_status 0 "cost of the seeds" "$NORMLAB" cost "$TMP/pwl.exprs"
expect_out "^  L +.* 5 +[0-9,]+ +[0-9,]+$" "the seed costs 5 FLOPs per element"

# ---- --init: the exact generating function wins, origin seed ----
printf 'L = 0.3*x + 1.7*clip(x, -0.7, 0.5)  # the generator\nother = x\n' >"$TMP/seed.exprs"
expect_status 0 "evolve --init --select budget=ln --max-flops ln" "$NORMLAB" evolve --maps "$M" \
  --output "$TMP/ev" --init "$TMP/seed.exprs" --select budget=ln --max-flops ln --penalty 0 \
  $SMALL --json
cp "$TMP/out" "$TMP/ev.json"
head -1 "$TMP/ev/L.csv" | grep -q ',expr,origin$'; ok $? "the fronts have an origin column"
awk -F, 'NR > 1 && $NF == "seed"' "$TMP/ev/L.csv" | grep -q .; ok $? "the seed is in the front, origin seed"
awk -F, 'NR > 1 && $NF != "seed" && $NF != "search" && $NF != "injected"' "$TMP/ev/L.csv" | grep -q .
[ $? -ne 0 ]; ok $? "every origin is search, seed or injected"
grep -q '^L = .*origin=seed' "$TMP/ev/chosen.exprs"; ok $? "the chosen member is the seed's"
grep -q '^L = .*flops=[0-5] .*budget=5.01' "$TMP/ev/chosen.exprs"
ok $? "chosen.exprs shows the chosen cost and the budget 5 + 2/192"
if command -v python3 >/dev/null; then
  run python3 -c "
import json, sys
l = json.load(open('$TMP/ev.json'))['layers'][0]
sys.exit(not (l['origin'] == 'seed' and l['flops'] <= 5 and abs(l['budget'] - (5 + 2 / 192)) < 1e-9
              and l['val_r2'] > 0.999))"
  ok "$rc" "JSON: origin seed, flops <= 5, budget 5 + 2/192, R^2 > 0.999"
fi
# the seed's constants (the generator's) are within 0.02 of 0.3, 1.7, -0.7, 0.5
sed -n 's/^L = \([^#]*\)#.*/\1/p' "$TMP/ev/chosen.exprs" | tr -c '0-9.\n-' ' ' >"$TMP/nums"
awk '{ n = 0; for (i = 1; i <= NF; i++) if ($i ~ /[0-9]/) v[++n] = $i }
  END { exit !(n == 4 && (v[1] - 0.3)^2 < 4e-4 && (v[2] - 1.7)^2 < 4e-4 && (v[3] + 0.7)^2 < 4e-4 \
               && (v[4] - 0.5)^2 < 4e-4) }' "$TMP/nums"
ok $? "the chosen constants are the generator's"

expect_status 0 "front lists the members" "$NORMLAB" -c "load fronts $TMP/ev; front L"
expect_out "clip\(x, -0.7, 0.5\)  # seed$" "front marks the seed's members"

# ---- Lua: the same options ----
cat >"$TMP/b.lua" <<LUA
local nl = require "normlab"
local m = nl.load_maps("$M")
local r = nl.evolve(m, {pop = 30, gens = 4, threads = 1, penalty = 0, select = "budget=ln",
                        max_flops = "ln", init = "$TMP/seed.exprs"})
local l = r.layers[1]
print("lua:", l.name, l.flops, l.origin, string.format("%.6f", l.val_r2))
local c = nl.evolve(m, {pop = 30, gens = 2, threads = 1, select = "budget=ln", max_flops = "ln",
                        init = "$TMP/seed.exprs", output = "$TMP/lev"})
print("campaign:", c.layers[1].name, c.layers[1].flops)
local ok, e = pcall(nl.evolve, m, {select = "budget=zero"})
print("bad:", e)
ok, e = pcall(nl.evolve, m, {init = "$TMP/bad.exprs"})
print("badinit:", e)
LUA
expect_status 0 "normlab.evolve with select, max_flops and init" "$NORMLAB" lua "$TMP/b.lua"
expect_out "^lua:	L	[0-5]	seed	0.99" "in memory: the seed's member, within 5 FLOPs"
expect_out "^campaign:	L	[0-5]$" "a campaign with a budget"
expect_out "^bad:.*--select: budget expects a number" "a bad budget is an error"
expect_out "^badinit:.*bad.exprs:3" "a bad init file is an error naming file and line"

# ---- a front with no member within the budget ----
# rewrite the finished part's members to one tanh (23 FLOPs): rerunning
# the same command re-selects from disk and names the cheapest cost
P="$TMP/ev/parts/L.seed0.csv"
head -2 "$P" >"$TMP/part"
printf 'L,0,1,4,24,0.5,0.5,0.5,0.5,"tanh(2*x)",search\nL,0,1,3,23,0.6,0.6,0.6,0.4,"tanh(x) + x*0",search\n' >>"$TMP/part"
cp "$TMP/part" "$P"
expect_status 0 "re-selecting a front above the budget" "$NORMLAB" evolve --maps "$M" \
  --output "$TMP/ev" --init "$TMP/seed.exprs" --select budget=ln --max-flops ln --penalty 0 $SMALL
expect_err "layer L: no front member within the budget of 5.01 FLOPs per element \(the cheapest costs 23\)" \
  "the message names the layer, the budget and the cheapest cost"
grep -q '^L = ' "$TMP/ev/chosen.exprs"; [ $? -ne 0 ]; ok $? "the layer is left out of chosen.exprs"
expect_status 0 "budget=30 picks a member" "$NORMLAB" evolve --maps "$M" \
  --output "$TMP/ev" --init "$TMP/seed.exprs" --select budget=30 --max-flops ln --penalty 0 $SMALL
grep -q '^L = tanh([0-9.]*\*x) .*budget=30' "$TMP/ev/chosen.exprs"
ok $? "budget=30: the lower validation fitness of the two (constants re-fitted)"
expect_status 0 "budget=23.5 picks the cheaper" "$NORMLAB" evolve --maps "$M" \
  --output "$TMP/ev" --init "$TMP/seed.exprs" --select budget=23.5 --max-flops ln --penalty 0 $SMALL
grep -q '^L = tanh(x)' "$TMP/ev/chosen.exprs"; ok $? "budget=23.5: x*0 folds, tanh(x) costs 23"

# ---- pick LAYER budget=... at the prompt; old fronts files ----
mkdir -p "$TMP/fr"
cat >"$TMP/fr/L.csv" <<'CSV'
layer,seed,rank,nodes,flops,train_fitness,val_fitness,val_mse,val_r2,expr
L,0,1,1,0,1,0.5,0.5,0.5,"x"
L,0,1,6,0,1,0.1,0.1,0.9,"clip(2*x, -1, 1) + (1 + 2)*x"
L,0,1,4,0,1,0.01,0.01,0.99,"tanh(3*x)"
CSV
expect_status 0 "pick budget=ln on an old fronts file" "$NORMLAB" -c \
  "load fronts $TMP/fr; pick L budget=ln; show L"
expect_out "^L = clip\(2\*x, -1, 1\) \+ \(1 \+ 2\)\*x" "the best member within 5 FLOPs (the flops column is not believed)"
expect_status 0 "pick budget=24" "$NORMLAB" -c "load fronts $TMP/fr; pick L budget=24"
expect_out "^L = tanh\(3\*x\)" "budget 24 admits the tanh"
expect_status 2 "pick budget=abc exits 2" "$NORMLAB" -c \
  "load fronts $TMP/fr; pick L budget=abc"
expect_err "budget expects a number" "pick: a bad budget is named"
printf 'layer,expr\nL,"tanh(x)"\n' >"$TMP/fr/L.csv"
expect_status 2 "pick with no member within the budget exits 2" "$NORMLAB" -c \
  "load fronts $TMP/fr; pick L budget=ln"
expect_err "no member of L's front costs at most 5 FLOPs per element \(the cheapest costs 23\)" \
  "the error names the cheapest cost"

# ---- inject into a running background search ----
printf 'evolve --maps %s --output %s --pop 30 --gens 400 --penalty 0 --threads 1 &\nset L = 0.3*x + 1.7*clip(x, -0.7, 0.5)\ninject L\n' \
  "$M" "$TMP/bg" >"$TMP/inject.nl"
run sh -c "'$NORMLAB' <'$TMP/inject.nl'"
ok "$rc" "a piped session starts a search and injects"
grep -q "sent; the search of L takes it at its next generation" "$TMP/out"
ok $? "inject reports that the expression was sent"
awk -F, 'NR > 1 && $NF == "injected"' "$TMP/bg/L.csv" | grep -q '0.3\*x + 1.7\*clip(x, -0.7, 0.5)'
ok $? "the injected expression is in the front with origin injected"
expect_status 2 "inject without a running search exits 2" "$NORMLAB" -c "set L = x; inject L"
expect_err "no background evolve is running" "the error says so"
expect_status 2 "inject of a layer without an expression exits 2" "$NORMLAB" -c "inject nope"
expect_err "layer 'nope' has no expression" "the error names the layer"
done_testing
