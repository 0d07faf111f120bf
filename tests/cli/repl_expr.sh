#!/bin/sh
# Expression commands at the prompt (set, show, simplify, undo) and plots
# of f(x), checked against trees drawn by hand and the cost formulas of
# Appendix F (tanh 23, * and + 1; LayerNorm 5d+2 FLOPs and 8d bytes per
# token, DyT 24d and 4d, an expression cost*d and 4d).
. "$NL_SRCDIR/tests/cli/lib.sh"

# FLOPs count the simplified form: 2*3 folds to 6, so tanh 23 + * 1 + + 1
# = 25 (26 as written)
expect_status 0 "set and show" "$NORMLAB" -c "set a = tanh(1.5 * x) + 2*3; show a"
cat >"$TMP/want" <<'EOS'
a = tanh(1.5 * x) + 2*3  (25 FLOPs/elem)
a = tanh(1.5 * x) + 2*3
+  [0]
|-- tanh  [0.0]
|   `-- *  [0.0.0]
|       |-- 1.5  [0.0.0.0]
|       `-- x  [0.0.0.1]
`-- *  [0.1]
    |-- 2  [0.1.0]
    `-- 3  [0.1.1]
cost: 25 FLOPs per element (simplified; 26 as written), 8 nodes, depth 4
EOS
if cmp -s "$TMP/want" "$TMP/out"; then ok 0 "show draws the tree with node paths and the cost"; else
  ok 1 "show draws the tree with node paths and the cost"; diff "$TMP/want" "$TMP/out" | sed 's/^/# /'; fi

expect_status 0 "simplify folds constants, undo restores" "$NORMLAB" -c "set a = tanh(1.5 * x) + 2*3; simplify a; layers; undo; layers"
expect_out '^a = tanh\(1\.5 ?\* ?x\) \+ 6  \(26 -> 25 FLOPs/elem\)$' "2*3 folds to 6, one multiplication less"
if [ "$(grep -c '^a   ' "$TMP/out")" -eq 2 ] && grep -q '^a  *25  tanh(1.5 \* x) + 2\*3$' "$TMP/out"; then
  ok 0 "undo brings the typed expression back"; else ok 1 "undo brings the typed expression back"; fi

if have_fixtures; then
  M="$NL_FIXTURES/vit_tiny_p4_fmnist.safetensors"
  d=$(sed -n 's/.*"embed_dim": *\([0-9]*\).*/\1/p' "$NL_FIXTURES/vit_tiny_p4_fmnist.json" | head -1)
  expect_status 0 "show per-token figures at the model's width" "$NORMLAB" -c "load model $M; set blocks.0.norm1 = tanh(1.5 * x); show blocks.0.norm1"
  want="per token (d=$d): $((24 * d)) FLOPs, $((4 * d)) bytes read; LayerNorm $((5 * d + 2)) FLOPs, $((8 * d)) bytes; DyT $((24 * d)) FLOPs, $((4 * d)) bytes"
  expect_out "^$(echo "$want" | sed 's/[().;]/\\&/g')$" "per-token FLOPs and bytes follow the formulas (d=$d)"
  expect_status 2 "a layer the model does not have is refused" "$NORMLAB" -c "load model $M; set blocks.99.norm1 = x"
  expect_err "no layer 'blocks.99.norm1' in the loaded model" "the layer is named"
fi

expect_status 2 "a bad expression is refused" "$NORMLAB" -c "set a = tanh(1.5 * x"
expect_err "^normlab set: 1:" "the error gives the column"
expect_err '^ +\^$' "a caret points at the fault"
expect_status 2 "set without '=' is refused" "$NORMLAB" -c "set a tanh(x)"
expect_err "expected 'set LAYER = EXPR'" "the form is explained"
expect_status 2 "simplify of a layer without expression" "$NORMLAB" -c "set a = x; simplify b"
expect_err "layer 'b' has no expression" "the layer is named"
expect_status 2 "edit needs a terminal" "$NORMLAB" -c "set a = x; edit a"
expect_err "edit needs a terminal" "edit explains"

# a set file is checked when loaded
printf 'a = x\nb = tanh(2 * x\n' >"$TMP/bad.exprs"
expect_status 2 "a set with a bad expression is refused" "$NORMLAB" -c "load exprs $TMP/bad.exprs"
expect_err "bad.exprs:2:" "the file and line are named"
expect_status 2 "nothing was loaded" "$NORMLAB" -k -c "load exprs $TMP/bad.exprs; status"
expect_out '^exprs +-$' "the session has no set"

# 'cost' at the prompt counts the session's set itself: no file is written
# to be read back (a modified set used to go through a private file)
mkdir -p "$TMP/tmpd"
cat >"$TMP/cost.nl" <<'EOS'
set a = tanh(x) * 2
set b = x
cost --dim 4 --tokens 1
lua { for f in io.popen("ls -A " .. os.getenv("TMPDIR")):lines() do print("left: " .. f) end }
EOS
expect_status 0 "cost of the session's set" env TMPDIR="$TMP/tmpd" "$NORMLAB" -f "$TMP/cost.nl"
expect_out '^  a +2\*tanh\(x\) +24 +96 +16$' "a: 24 FLOPs/elem (tanh 23, * 1), 96 FLOPs and 16 bytes per token at d=4"
expect_out '^  b +x +0 +0 +16$' "b: 0 FLOPs/elem, 16 bytes per token"
if grep -q '^left: ' "$TMP/out"; then ok 1 "no temporary file while cost runs at the prompt"; sed 's/^/# /' "$TMP/out" | grep left; else ok 0 "no temporary file while cost runs at the prompt"; fi

# the set survives save and open
expect_status 0 "a set made at the prompt is saved" "$NORMLAB" -c "set n1 = x * 0.5; set n2 = sigmoid(x); save $TMP/s1"
expect_status 0 "and reopened" "$NORMLAB" -c "open $TMP/s1; layers"
expect_out '^n1 +1  x \* 0\.5$' "first expression restored"
expect_out '^n2 +22  sigmoid\(x\)$' "second expression restored"

# plots of f(x)
if command -v gnuplot >/dev/null 2>&1; then
  unset DISPLAY
  expect_status 0 "plot expr to PNG" "$NORMLAB" plot expr 'tanh(1.5 * x)' --range -3:3 --term png --output "$TMP/f.png"
  [ "$(od -An -tx1 -N8 "$TMP/f.png" | tr -d ' \n')" = "89504e470d0a1a0a" ]; ok $? "the PNG has a valid header"
  expect_status 0 "plot expr as text" "$NORMLAB" plot expr 'tanh(1.5 * x)' --range -3:3 --term dumb
  expect_out 'f\(x\) = tanh\(1\.5 ?\* ?x\)' "the text plot names the function"
  expect_out '^ +-3 ' "the x axis starts at the range's start"
  expect_status 0 "plot LAYER from the session's set" "$NORMLAB" -c "set blocks.0.norm1 = clip(x); plot blocks.0.norm1 --term dumb"
  expect_out 'blocks\.0\.norm1' "the layer's plot has its name"
  expect_status 2 "plot of an unknown layer" "$NORMLAB" -c "set a = x; plot b --term dumb"
  expect_err "nothing to plot for 'b'" "the layer is named"
  if have_fixtures; then
    # the layer's mapping and its DyT fit, against the fixture's DyT table
    REF="$NL_FIXTURES/vit_tiny_p4_fmnist_ref.safetensors"
    J="$NL_FIXTURES/vit_tiny_p4_fmnist.json"
    expect_status 0 "plot a layer's mapping with its DyT fit" "$NORMLAB" -c "set blocks.0.norm1 = tanh(5 * x); plot blocks.0.norm1 --maps $REF --term dumb --samples 200"
    expect_out 'mapping \([0-9]+ of 50000 points\)' "the mapping's points are drawn, subsampled"
    got=$(sed -n 's/.*DyT tanh(\([0-9.]*\) x), R2 \([0-9.]*\).*/\1 \2/p' "$TMP/out" | head -1)
    want=$(tr -d '\n ' <"$J" | sed 's/.*"layer":"blocks.0.norm1","dyt_alpha":\([0-9.]*\),"dyt_mse":[0-9.e-]*,"dyt_r2":\([0-9.]*\).*/\1 \2/')
    check_num "$(echo "$got $want" | awk '{ printf "%s", ($1 - $3 < 0) ? $3 - $1 : $1 - $3 }') < 0.01 * $(echo "$want" | cut -d' ' -f1)" \
      "DyT alpha within 1% of timm's fit ($got vs $want)"
    check_num "$(echo "$got $want" | awk '{ d = $2 - $4; printf "%s", d < 0 ? -d : d }') < 0.002" \
      "DyT R2 matches the fixture's table"
    expect_out 'f\(x\) = tanh\(5 ?\* ?x\), R2 0\.[0-9]+' "f(x) is drawn with its R2 on the mapping"
    expect_status 0 "at the prompt the session's mappings are used" "$NORMLAB" -c "load maps $REF; plot blocks.0.norm2 --term dumb"
    expect_out 'DyT tanh\([0-9.]+ x\), R2 0\.[0-9]+' "the DyT fit of the session's layer is drawn"
    expect_status 2 "a layer missing from the mappings" "$NORMLAB" plot nonorm --maps "$REF" --term dumb
    expect_err "no mapping for layer 'nonorm'" "the layer is named"
  fi
  expect_status 2 "plot of a bad expression" "$NORMLAB" plot expr 'tanh(' --term dumb
  expect_status 2 "a bad range" "$NORMLAB" plot expr x --range 3:1 --term dumb
  expect_err "A must be below B" "the range is explained"
fi

done_testing
