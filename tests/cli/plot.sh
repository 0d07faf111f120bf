#!/bin/sh
# plot through gnuplot: PNG files, text plots, names that try to inject
# gnuplot commands, gnuplot missing.
. "$NL_SRCDIR/tests/cli/lib.sh"

if ! command -v gnuplot >/dev/null 2>&1; then
  echo "ok 1 # SKIP gnuplot not installed"
  echo "1..1"
  exit 0
fi
unset DISPLAY
F="$TMP/fronts"
mkdir "$F"
cat >"$F/a.csv" <<'EOS'
layer,seed,rank,nodes,flops,train_fitness,val_fitness,val_mse,val_r2,expr
blocks.0.norm1,1,0,1,0,0.30,0.31,0.30,0.70,x
blocks.0.norm1,1,0,3,2,0.10,0.11,0.10,0.90,tanh(x)
blocks.0.norm1,1,0,7,5,0.03,0.04,0.03,0.97,"clip(1.5 * x, -2, 2)"
"it's'; system 'touch PWNED'; '",1,0,2,1,0.2,0.2,0.2,0.8,x
"two
lines",1,0,2,1,0.2,0.2,0.2,0.8,x
EOS

png_ok() {  # png_ok FILE: the 8-byte PNG signature and an IHDR chunk
  [ "$(od -An -tx1 -N16 "$1" | tr -d ' \n')" = "89504e470d0a1a0a0000000d49484452" ]
}

expect_status 0 "plot front to a PNG file" "$NORMLAB" plot front blocks.0.norm1 --fronts "$F" --term png --output "$TMP/front.png"
expect_out "^wrote $TMP/front.png$" "the file name is printed"
png_ok "$TMP/front.png"; ok $? "the file has a valid PNG header"
[ "$(wc -c <"$TMP/front.png")" -gt 2000 ]; ok $? "the PNG has content"

# without DISPLAY and --output: a fresh name in the current directory
(cd "$TMP" && "$NORMLAB" plot front blocks.0.norm1 --fronts "$F" >"$TMP/out" 2>"$TMP/err"; echo $? >"$TMP/rc")
[ "$(cat "$TMP/rc")" -eq 0 ]; ok $? "automatic terminal without DISPLAY exits 0"
expect_out '^wrote normlab-plot-1\.png$' "automatic terminal writes a PNG"
png_ok "$TMP/normlab-plot-1.png"; ok $? "that PNG is valid"
(cd "$TMP" && "$NORMLAB" plot front blocks.0.norm1 --fronts "$F" --term png >"$TMP/out" 2>&1)
expect_out '^wrote normlab-plot-2\.png$' "an existing plot is not overwritten"

expect_status 0 "plot as text" "$NORMLAB" plot front blocks.0.norm1 --fronts "$F" --term dumb --y val_mse --x nodes
expect_out 'Pareto front of blocks\.0\.norm1 \(3 non-dominated of 3 members\)' "the text plot has its title"
expect_out 'nodes' "the text plot labels its axis"
[ "$(wc -l <"$TMP/out")" -ge 20 ]; ok $? "the text plot has the terminal's height"

# a text plot takes the terminal's size: $COLUMNS x $LINES, one of each
# left free (for the cursor); 79 x 24 without a terminal
run env COLUMNS=100 LINES=30 "$NORMLAB" plot front blocks.0.norm1 --fronts "$F" --term dumb
[ "$(wc -l <"$TMP/out")" -eq 29 ]; ok $? "LINES=30 draws 29 lines (got $(wc -l <"$TMP/out"))"
w=$(awk '{ if (length > m) m = length } END { print m }' "$TMP/out")
[ "$w" -eq 99 ]; ok $? "COLUMNS=100 draws 99 columns (got $w)"
run env -u COLUMNS -u LINES "$NORMLAB" plot front blocks.0.norm1 --fronts "$F" --term dumb
[ "$(wc -l <"$TMP/out")" -eq 24 ]; ok $? "without a terminal 24 lines"
if command -v script >/dev/null 2>&1; then
  # a pseudo-terminal of 90 x 20 (the size set inside it), COLUMNS and LINES unset
  script -qec "stty cols 90 rows 20; env -u COLUMNS -u LINES '$NORMLAB' plot front blocks.0.norm1 --fronts '$F' --term dumb" /dev/null | tr -d '\r' >"$TMP/out"
  w=$(awk '{ if (length > m) m = length } END { print m }' "$TMP/out")
  [ "$w" -eq 89 ] && [ "$(grep -c . "$TMP/out")" -ge 10 ] && [ "$(wc -l <"$TMP/out")" -le 20 ]
  ok $? "at a terminal its own size: 89 columns, at most 19 lines (got $w, $(wc -l <"$TMP/out"))"
fi

# plot front draws only the non-dominated members (of all seeds), with the
# knee and minval members marked (as 'pick' chooses them) and the axes named.
# The data gnuplot gets is read through a stand-in for gnuplot.
cat >"$F/b.csv" <<'EOS'
layer,seed,rank,nodes,flops,train_fitness,val_fitness,val_mse,val_r2,expr
blocks.0.norm1,2,0,4,3,0.10,4.9,5.0,0.10,sin(x)
blocks.0.norm1,2,0,9,6,0.03,0.05,0.04,0.96,"clip(x)"
EOS
cat >"$TMP/gp.sh" <<EOS
#!/bin/sh
cat >"$TMP/script.gp"
EOS
chmod +x "$TMP/gp.sh"
expect_status 0 "plot front through a stand-in gnuplot" env NL_GNUPLOT="$TMP/gp.sh" "$NORMLAB" plot front blocks.0.norm1 --fronts "$F" --term dumb
# $d0: the front in FLOPs order; (3, 5.0) and (6, 0.04) are dominated
awk '/^\$d0 << EOD$/ {on=1; next} /^EOD$/ {on=0} on' "$TMP/script.gp" >"$TMP/d0"
printf '0 0.300000012\n2 0.100000001\n5 0.0299999993\n' | cmp -s - "$TMP/d0"; ok $? "only the non-dominated members are drawn, in order"
# the knee of (0, .30) (2, .10) (5, .03): farthest from the line through the
# ends with both axes scaled to [0, 1]: (2, .10); minval: val_fitness .04 at (5, .03)
awk '/^\$d1 << EOD$/ {getline; print; exit}' "$TMP/script.gp" | grep -qx '2 0.100000001'; ok $? "the knee is marked"
awk '/^\$d2 << EOD$/ {getline; print; exit}' "$TMP/script.gp" | grep -qx '5 0.0299999993'; ok $? "the minval member is marked"
grep -q "title 'knee: flops 2, val_mse 0.1'" "$TMP/script.gp" && grep -q "title 'minval: flops 5, val_mse 0.03'" "$TMP/script.gp"
ok $? "the marks are named in the key"
grep -q "set xlabel 'FLOPs per element'" "$TMP/script.gp" && grep -q "set ylabel 'validation MSE'" "$TMP/script.gp"
ok $? "both axes are labelled"
grep -q "Pareto front of blocks.0.norm1 (3 non-dominated of 5 members)" "$TMP/script.gp"; ok $? "the title counts the members"
expect_status 0 "plot front with R2 upwards" env NL_GNUPLOT="$TMP/gp.sh" "$NORMLAB" plot front blocks.0.norm1 --fronts "$F" --term dumb --y val_r2
awk '/^\$d0 << EOD$/ {on=1; next} /^EOD$/ {on=0} on' "$TMP/script.gp" >"$TMP/d0"
printf '0 0.699999988\n2 0.899999976\n5 0.970000029\n' | cmp -s - "$TMP/d0"; ok $? "with R2 the higher figure wins"
grep -q "set ylabel 'validation R2" "$TMP/script.gp"; ok $? "the R2 axis is labelled"
expect_status 0 "plot front as text with the marks" "$NORMLAB" plot front blocks.0.norm1 --fronts "$F" --term dumb
expect_out 'knee: flops 2' "the text plot's key names the knee"
if grep -Eq '^ +[1-5](\.[0-9]+)? [+|]' "$TMP/out"; then ok 1 "the dominated member (val MSE 5) is not on the axis"; else ok 0 "the dominated member (val MSE 5) is not on the axis"; fi
rm "$F/b.csv"

# the terminal: --term, else at the prompt 'setting term', else $GNUTERM
mkdir "$TMP/t" && cd "$TMP/t" || exit 1
expect_status 0 "setting term reaches plot" "$NORMLAB" -c "setting term dumb; plot expr 'tanh(x)'"
expect_out 'f\(x\) = tanh\(x\)' "the plot is drawn as text"
if ls | grep -q png; then ok 1 "no PNG is written"; else ok 0 "no PNG is written"; fi
expect_status 0 "GNUTERM is the default terminal at the prompt" env GNUTERM=dumb "$NORMLAB" -c "plot expr 'tanh(x)'"
expect_out 'f\(x\) = tanh\(x\)' "GNUTERM=dumb draws text"
expect_status 0 "and on the shell line" env GNUTERM=dumb "$NORMLAB" plot expr 'tanh(x)'
expect_out 'f\(x\) = tanh\(x\)' "GNUTERM=dumb draws text there too"
expect_status 0 "--term beats the setting" "$NORMLAB" -c "setting term dumb; plot expr 'tanh(x)' --term png --output $TMP/t.png"
expect_out "^wrote $TMP/t.png$" "--term png wrote the file"
if ls | grep -q png; then ok 1 "nothing else is written"; else ok 0 "nothing else is written"; fi
cd "$TMP" || exit 1

# names are data, never commands
(cd "$TMP" && "$NORMLAB" plot front "it's'; system 'touch PWNED'; '" --fronts "$F" --term dumb >"$TMP/out" 2>"$TMP/err"; echo $? >"$TMP/rc")
[ "$(cat "$TMP/rc")" -eq 0 ]; ok $? "a name with quotes plots"
[ ! -e "$TMP/PWNED" ]; ok $? "a quote in a name does not run gnuplot commands"
expect_out "it's'; system 'touch PWNED'; '" "the name is shown as it is"
expect_status 2 "a name with a newline is refused" "$NORMLAB" plot front "two
lines" --fronts "$F" --term dumb
expect_err "control character" "the newline is named"

# errors
expect_status 2 "a layer without front members exits 2" "$NORMLAB" plot front blocks.9.norm2 --fronts "$F" --term dumb
expect_err "no front members for layer 'blocks.9.norm2'" "the layer is named"
expect_status 2 "no fronts directory exits 2" "$NORMLAB" plot front blocks.0.norm1 --term dumb
expect_err "no fronts" "the missing option is explained"
expect_status 2 "an unknown plot exits 2" "$NORMLAB" plot pie
expect_status 2 "a bad --term exits 2" "$NORMLAB" plot front x --fronts "$F" --term svg
expect_err "--term expects one of auto\|window\|png\|dumb" "the choices are listed"

# plot cost: bars of FLOPs per element per layer beside LayerNorm and DyT
printf 'blocks.0.norm1 = tanh(2*x)\nblocks.0.norm2 = x * 0.5\n' >"$TMP/c.exprs"
expect_status 0 "plot cost of a set to a PNG file" "$NORMLAB" plot cost --set "$TMP/c.exprs" --term png --output "$TMP/cost.png"
png_ok "$TMP/cost.png"; ok $? "the cost plot is a valid PNG"
expect_status 0 "plot cost of the session's set at the prompt, as text" "$NORMLAB" -c "load exprs $TMP/c.exprs; plot cost --term dumb"
expect_out 'blocks\.0\.norm1 .*blocks\.0\.norm2' "the layers label the bars"
expect_out 'this set .*LayerNorm .*DyT' "the set, LayerNorm and DyT are in the key"
expect_status 2 "plot cost without a set exits 2" "$NORMLAB" plot cost --term dumb
expect_err "no expression set" "the missing set is named"
expect_status 0 "plot cost --exprs, the old name of --set, still works" "$NORMLAB" plot cost --exprs "$TMP/c.exprs" --term dumb
expect_err "plot: --exprs is deprecated; use --set" "the old name gets a one-line note"
expect_out 'blocks\.0\.norm1 .*blocks\.0\.norm2' "the old name reads the set"

# gnuplot missing: status 1 (not the input's fault) with a clear message
expect_status 1 "NORMLAB_GNUPLOT pointing nowhere exits 1" env NORMLAB_GNUPLOT=/nonexistent/gnuplot "$NORMLAB" plot front blocks.0.norm1 --fronts "$F" --term dumb
expect_err "gnuplot not found" "the missing gnuplot is named"
expect_err "set NORMLAB_GNUPLOT" "the message names the variable"
expect_status 1 "NL_GNUPLOT, its old name, still works" env NL_GNUPLOT=/nonexistent/gnuplot "$NORMLAB" plot front blocks.0.norm1 --fronts "$F" --term dumb
expect_status 0 "NORMLAB_GNUPLOT comes before NL_GNUPLOT" env NORMLAB_GNUPLOT="$(command -v gnuplot)" NL_GNUPLOT=/nonexistent/gnuplot "$NORMLAB" plot front blocks.0.norm1 --fronts "$F" --term dumb
expect_status 1 "no gnuplot on PATH exits 1" env PATH=/nonexistent "$NORMLAB" plot front blocks.0.norm1 --fronts "$F" --term png --output "$TMP/x.png"
expect_err "apt-get install gnuplot" "the message says how to install it"
[ ! -e "$TMP/x.png" ]; ok $? "nothing is written without gnuplot"

# at the prompt the session supplies --fronts
expect_status 0 "plot at the prompt with the session's fronts" "$NORMLAB" -c "load fronts $F; plot front blocks.0.norm1 --term dumb"
expect_out 'Pareto front of blocks\.0\.norm1' "the session's fronts were used"

done_testing
