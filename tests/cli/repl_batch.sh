#!/bin/sh
# Batch use of the prompt: -c, -f, piped input, -k, exit statuses, and a
# session saved and reopened.
. "$NL_SRCDIR/tests/cli/lib.sh"

# -c runs the commands and exits; ';' separates them, not inside quotes
expect_status 0 "-c with two commands exits 0" "$NORMLAB" -c "status; help load"
expect_out '^model +-' "-c ran the first command"
expect_out '^usage: load ' "-c ran the second command"
expect_status 2 "';' inside quotes is not a separator" "$NORMLAB" -c "show 'a; b'; status"
expect_err "no layer 'a; b'" "the quoted ';' reached the command"
if grep -q '^session' "$TMP/out"; then ok 1 "the quoted command was the only one"; else ok 0 "the quoted command was the only one"; fi
expect_status 2 "-c stops at an unknown command with 2" "$NORMLAB" -c "frobnicate; status"
expect_err "unknown command 'frobnicate'" "the unknown command is named"
if grep -q '^session' "$TMP/out"; then ok 1 "-c stopped at the failure"; else ok 0 "-c stopped at the failure"; fi
expect_status 2 "a mistyped command exits 2" "$NORMLAB" -c "stauts"
expect_err "unknown command 'stauts'; did you mean 'status'\?" "a near command is suggested"
expect_status 2 "-k keeps going but reports the failure" "$NORMLAB" -k -c "frobnicate; status"
expect_out '^session' "-k ran the command after the failure"
expect_status 2 "an unterminated quote is bad input" "$NORMLAB" -c "setting a 'b"
expect_err "unterminated single quote" "the quote is reported"
expect_status 2 "bad option of a session command exits 2" "$NORMLAB" -c "refit L --iters x"
expect_err "refit: --iters expects an integer" "the option is named"
# 'history N': the count is the argument; --count N, its old spelling, still works
expect_status 0 "history N at the prompt" "$NORMLAB" -c "history 5"
expect_status 2 "a bad count for history exits 2" "$NORMLAB" -c "history x"
expect_err "history: N is a number of lines from 1 to 100000, got 'x'" "the bad count is named"
expect_status 0 "history --count N (the old spelling) still works" "$NORMLAB" -c "history --count 5"
expect_err "history: --count is deprecated; use 'history N'" "the old spelling gets a one-line note"

# -f FILE: comments and blank lines ignored, the failing line named
cat >"$TMP/ok.nl" <<'EOS'
# a script
setting seed 7

setting seed   # prints 7
EOS
expect_status 0 "-f runs a script" "$NORMLAB" -f "$TMP/ok.nl"
expect_out '^7$' "-f output"
if [ "$(wc -l <"$TMP/out")" -eq 1 ]; then ok 0 "batch mode prints no prompts"; else
  ok 1 "batch mode prints no prompts"; sed 's/^/# /' "$TMP/out"; fi
printf 'status\nload maps %s/none.safetensors\nstatus\n' "$TMP" >"$TMP/bad.nl"
expect_status 2 "-f stops at the first error with 2" "$NORMLAB" -f "$TMP/bad.nl"
expect_err "stopped at .*bad.nl:2" "the failing line is named"
expect_status 2 "-f -k runs to the end, still exit 2" "$NORMLAB" -k -f "$TMP/bad.nl"
if [ "$(grep -c '^session' "$TMP/out")" -eq 2 ]; then ok 0 "-k ran both status lines"; else ok 1 "-k ran both status lines"; fi
expect_status 2 "-f of a missing file exits 2" "$NORMLAB" -f "$TMP/missing.nl"
expect_err "missing.nl: cannot open" "the missing script is named"
expect_status 2 "-f with a command is refused" "$NORMLAB" -f "$TMP/ok.nl" help
expect_status 2 "-c needs a value" "$NORMLAB" -c

# a trailing backslash continues a line; an open quote at the end is an error
printf 'setting seed 1\\\n2\nsetting seed\nhelp \\\nload\n' >"$TMP/cont.nl"
expect_status 0 "continued lines run" "$NORMLAB" -f "$TMP/cont.nl"
expect_out '^12$' "a trailing backslash glues the lines"
expect_out '^usage: load ' "a continued command runs"
printf 'status\nsetting c '"'"'open\n' >"$TMP/open.nl"
expect_status 2 "a quote left open at the end exits 2" "$NORMLAB" -f "$TMP/open.nl"
expect_err "open.nl:2: column 11: unterminated single quote" "the open quote is located"

# undo goes back through loads of expression sets
printf 'a = x\n' >"$TMP/one.exprs"
printf 'a = 2 * x\nb = x\n' >"$TMP/two.exprs"
expect_status 0 "undo restores the previous set" "$NORMLAB" -c "load exprs $TMP/one.exprs; load exprs $TMP/two.exprs; undo; layers"
expect_out '^undone: a = x  \(was 2 \* x\)$' "undo names the layer, the expression it restored and the one it replaced"
expect_out '^undone: b = \(LayerNorm: not in the set\)  \(was x\)$' "undo names a layer it took out of the set"
expect_out '^undone: 2 layers; the set has 1 expression$' "undo sums up a change of several layers"
expect_out '^a +0  x$' "the first set is back"
expect_status 0 "undo of one edit" "$NORMLAB" -c "set a = tanh(x); set a = 2 * x; undo"
if [ "$(grep -c '^undone' "$TMP/out")" -eq 1 ] && grep -q '^undone: a = tanh(x)  (was 2 \* x)$' "$TMP/out"; then
  ok 0 "undo of one edit says what it undid in one line"
else
  ok 1 "undo of one edit says what it undid in one line"; sed 's/^/# /' "$TMP/out"
fi
expect_status 0 "undo of the first edit" "$NORMLAB" -c "set a = x; undo"
expect_out '^undone: a = \(LayerNorm: not in the set\)  \(was x\)$' "undo of an added layer names it"
expect_status 2 "nothing to undo exits 2" "$NORMLAB" -c "undo"
expect_err "nothing to undo" "undo explains"

# source runs a script in the current session; timer prints wall times
printf 'setting seed 21\n' >"$TMP/inner.nl"
expect_status 0 "source runs a script in the session" "$NORMLAB" -c "source $TMP/inner.nl; setting seed"
expect_out '^21$' "the script's setting is in the session"
printf 'source %s\n' "$TMP/self.nl" >"$TMP/self.nl"
expect_status 2 "a script sourcing itself stops" "$NORMLAB" -c "source $TMP/self.nl"
expect_err "nested too deeply" "deep nesting is reported"
expect_status 0 "timer setting" "$NORMLAB" -c "setting timer on; status"
expect_err '^time: [0-9]+\.[0-9]{3} s$' "timer prints each command's time"

# piped input is batch mode too
run sh -c "printf 'setting seed 1\nsetting seed\n' | '$NORMLAB'"
ok "$rc" "piped commands exit 0"
expect_out '^1$' "piped commands ran"
run sh -c "printf 'frobnicate\nsetting seed 1\n' | '$NORMLAB'"
[ "$rc" -eq 2 ]; ok $? "piped input stops with 2 at an error"
expect_err "stopped at <stdin>:1" "piped failure names the line"
run sh -c "printf 'quit\nfrobnicate\n' | '$NORMLAB'"
ok "$rc" "quit ends the input with 0"
expect_status 2 "dashboard needs a terminal" "$NORMLAB" -c dashboard
expect_err "needs a terminal" "dashboard explains"

# Ctrl-C (SIGINT) stops a script with 130
mkfifo "$TMP/fifo"
"$NORMLAB" <"$TMP/fifo" >"$TMP/out" 2>"$TMP/err" &
pid=$!
exec 3>"$TMP/fifo"
echo "setting seed 1; setting seed" >&3
t=0
while [ "$t" -lt 100 ] && ! grep -q '^1$' "$TMP/out"; do sleep 0.1; t=$((t + 1)); done
kill -INT "$pid"
wait "$pid"
rc=$?
exec 3>&-
[ "$rc" -eq 130 ]; ok $? "SIGINT stops piped input with 130 (got $rc)"
expect_err "interrupted after <stdin>:1" "the interruption is reported"

# the shell's commands keep working, and help lists both tables
expect_status 0 "normlab help still works" "$NORMLAB" help
expect_status 0 "help at the prompt" "$NORMLAB" -c help
expect_out '^Session commands:' "help lists the session commands"
expect_out '^  bench ' "help lists the shell's commands"
expect_status 0 "CMD --help at the prompt" "$NORMLAB" -c "save --help"
expect_out '^usage: save \[DIR\]' "session command usage has no 'normlab' prefix"

# after 'load model', commands take --model from the session
if have_fixtures; then
  M="$NL_FIXTURES/vit_tiny_p4_fmnist.safetensors"
  expect_status 0 "info without --model after load model" "$NORMLAB" -c "load model $M; info"
  expect_out "^model: +$M$" "the session's model was used"
  expect_status 0 "an explicit option beats the session" "$NORMLAB" -c "load model $M; info --model $NL_FIXTURES/vit_small_p7_fmnist.safetensors"
  expect_out "^model: +$NL_FIXTURES/vit_small_p7_fmnist.safetensors$" "the given model was used"
fi

# save -> open round trip, through the commands
cat >"$TMP/in.exprs" <<'EOS'
# hand-made
blocks.0.norm1 = tanh(1.25 * x)  # seed 3
norm = x
EOS
if have_fixtures; then M="$NL_FIXTURES/vit_tiny_p4_fmnist.safetensors"; LM="load model $M;"; else LM=""; fi
expect_status 0 "save a session" "$NORMLAB" -c "$LM load exprs $TMP/in.exprs; setting seed 5; save $TMP/sess"
expect_out "saved $TMP/sess/session.json" "save names the file"
[ -f "$TMP/sess/session.json" ] && [ -f "$TMP/sess/set.exprs" ]; ok $? "session.json and set.exprs written"
ls "$TMP/sess" | grep -q 'tmp' && ok 1 "no temporary files left" || ok 0 "no temporary files left"
expect_status 0 "open the session" "$NORMLAB" -c "open $TMP/sess; status; layers; setting seed"
expect_out '^5$' "setting restored"
expect_out '^blocks.0.norm1 +24  tanh\(1.25 \* x\)' "expression restored"
expect_out "^exprs +$TMP/sess/set.exprs +\(2 expressions\)" "set restored from the session"
if have_fixtures; then
  expect_out "^model +$TMP/sess/vit_tiny_p4_fmnist.safetensors +\(25 norm layers\)" "model restored"
  cmp -s "$M" "$TMP/sess/vit_tiny_p4_fmnist.safetensors"; ok $? "model copy is identical"
fi
expect_status 2 "open of a non-session exits 2" "$NORMLAB" -c "open $TMP"
expect_err "session.json: cannot open" "the missing session.json is named"

# unsaved edits (one rule, 'help' and normlab(1)): quit and open refuse in
# a script (exit 2) unless given as quit! / open!; the end of a script
# leaves as it is; a saved set is no longer unsaved
expect_status 2 "quit with unsaved edits is refused in a script" "$NORMLAB" -c "set a = x; quit; status"
expect_err "quit: the expression set has unsaved changes \(1 expression\): 'save DIR' first, or 'quit!' to discard them" "the refusal says what to do"
if grep -q '^session' "$TMP/out"; then ok 1 "the script stopped at the refused quit"; else ok 0 "the script stopped at the refused quit"; fi
expect_status 0 "quit! discards them" "$NORMLAB" -c "set a = x; quit!; frobnicate"
expect_status 0 "quit after save leaves" "$NORMLAB" -c "set a = x; save $TMP/s6; quit; frobnicate"
grep -q '^a = x$' "$TMP/s6/set.exprs"; ok $? "the saved set is on disk"
expect_status 2 "quit after an edit of a saved session is refused" "$NORMLAB" -c "open $TMP/s6; set a = 2 * x; quit"
expect_err "'save' first, or 'quit!'" "a session with a directory is saved with a plain 'save'"
expect_status 0 "quit with nothing edited leaves" "$NORMLAB" -c "load exprs $TMP/one.exprs; setting seed 3; quit; frobnicate"
expect_status 2 "open with unsaved edits is refused in a script" "$NORMLAB" -c "set b = x; open $TMP/s6"
expect_err "open: the expression set has unsaved changes .*'open! $TMP/s6' to discard them" "the refusal names open!"
expect_status 0 "open! discards them" "$NORMLAB" -c "set b = x; open! $TMP/s6; layers"
expect_out '^a +0  x$' "open! opened the session"
if grep -Eq '^b +[0-9]+  x$' "$TMP/out"; then ok 1 "the discarded edit is gone"; else ok 0 "the discarded edit is gone"; fi
run sh -c "printf 'set a = x\nquit\nstatus\n' | '$NORMLAB'"
[ "$rc" -eq 2 ]; ok $? "piped input: quit with unsaved edits exits 2"
expect_err "stopped at <stdin>:2" "the refused quit is located"
expect_status 0 "the end of a script is not a quit" "$NORMLAB" -c "set a = x"
expect_status 0 "undoing every edit leaves nothing unsaved" "$NORMLAB" -c "set a = x; undo; quit"
expect_status 0 "help states the rule" "$NORMLAB" -c "help"
expect_out "'quit!', 'open!' discard" "help names quit! and open!"

# settings: a typed table; unknown names and bad values are errors (2)
expect_status 0 "setting lists the settings" "$NORMLAB" -c "setting seed 7; setting"
expect_out '^seed +7 +session ' "a setting given in the session"
expect_out '^threads +- +unset ' "a setting without a value"
expect_out '^term +auto +default .*\[auto\|window\|png\|dumb\]' "a setting's default and its choices"
expect_out '^timer +off +default ' "every setting is listed"
expect_status 2 "a bad value is refused" "$NORMLAB" -c "setting threads -5"
expect_err "setting: threads: expects an integer from 1 to 256, got '-5'" "the value and the range are named"
expect_status 2 "NAME=VALUE is checked too" "$NORMLAB" -c "setting threads=-5"
expect_status 0 "NAME=VALUE sets" "$NORMLAB" -c "setting threads=3; setting threads"
expect_out '^3$' "NAME=VALUE set the value"
expect_status 2 "an unknown setting is refused" "$NORMLAB" -c "setting sed 4"
expect_err "unknown setting 'sed'; did you mean 'seed'\? \(settings: seed, threads, term, timer\)" "the near name and the list are given"
expect_status 2 "showing an unknown setting is an error" "$NORMLAB" -c "setting colour"
expect_status 2 "a bad choice is refused" "$NORMLAB" -c "setting term svg"
expect_err "term: expects one of auto\|window\|png\|dumb, got 'svg'" "the choices are named"
run env GNUTERM=dumb "$NORMLAB" -c "setting term; setting"
[ "$rc" -eq 0 ] && grep -q '^dumb$' "$TMP/out"; ok $? "GNUTERM is the default of term"
expect_out '^term +dumb +GNUTERM ' "the list says the value comes from GNUTERM"
run env GNUTERM=x11 "$NORMLAB" -c "setting term"
expect_out '^window$' "gnuplot's terminal names are understood"
run env GNUTERM=dumb "$NORMLAB" -c "setting term png; setting term"
expect_out '^png$' "a setting of the session beats GNUTERM"
# a session saved by another version: settings it does not know are left out
mkdir -p "$TMP/oldsess"
printf '{"normlab_session": 1, "settings": {"note": "hi", "seed": "4", "threads": "-1"}}\n' >"$TMP/oldsess/session.json"
expect_status 0 "a session with unknown settings opens" "$NORMLAB" -c "open $TMP/oldsess; setting seed; setting threads"
expect_out '^4$' "its known settings are kept"
expect_out '^\(unset\)$' "a bad value is left out"
expect_err "left out of .*oldsess: unknown setting 'note'.*threads: expects an integer" "what was left out is named"

# paths: a directory given with a trailing slash is joined with one '/'
expect_status 0 "save DIR/" "$NORMLAB" -c "set a = x; save $TMP/s14/; status"
expect_out "^saved $TMP/s14/session.json$" "one slash between the directory and session.json"
expect_out "^session +$TMP/s14$" "the session's directory without the slash"
expect_out "^exprs +$TMP/s14/set.exprs " "the set's path with one slash"

# a NUL byte in a piped line is an error naming the line, not a cut line
run sh -c "printf 'status\nsetting seed 1\\000junk\nstatus\n' | '$NORMLAB'"
[ "$rc" -eq 2 ]; ok $? "a NUL byte in piped input exits 2"
expect_err '<stdin>:2: column 15: a NUL byte in the line' "the line and column are named"
[ "$(grep -c '^session' "$TMP/out")" -eq 1 ]; ok $? "the line with the NUL byte did not run, nor the rest"
printf 'status\n\000\n' >"$TMP/nul.nl"
expect_status 2 "a NUL byte in a -f script exits 2" "$NORMLAB" -f "$TMP/nul.nl"
expect_err 'nul.nl:2: column 1: a NUL byte' "the script's line is named"

# a path that cannot name a file is the input's fault (2), as a missing
# file is: through a file, a symbolic link loop, a directory
printf 'x' >"$TMP/plain"
ln -s "$TMP/loop" "$TMP/loop"
expect_status 2 "load model through a file exits 2" "$NORMLAB" -c "load model $TMP/plain/m.safetensors"
expect_err "plain/m.safetensors: cannot open: Not a directory" "the reason is named"
expect_status 2 "load maps of a link loop exits 2" "$NORMLAB" -c "load maps $TMP/loop"
expect_status 2 "load exprs of a directory exits 2" "$NORMLAB" -c "load exprs $TMP"
expect_status 2 "info through a file exits 2" "$NORMLAB" info "$TMP/plain/m.safetensors"
expect_status 2 "save through a file exits 2" "$NORMLAB" -c "set a = x; save $TMP/plain/s"
# permission denied is the input's fault (2), as a missing file is
if [ "$(id -u)" -ne 0 ]; then
  printf 'x' >"$TMP/locked.safetensors"
  printf 'a = x\n' >"$TMP/locked.exprs"
  chmod 000 "$TMP/locked.safetensors" "$TMP/locked.exprs"
  expect_status 2 "load model of an unreadable file exits 2" "$NORMLAB" -c "load model $TMP/locked.safetensors"
  expect_err "locked.safetensors: cannot open: Permission denied" "the file and the reason are named"
  expect_status 2 "load exprs of an unreadable file exits 2" "$NORMLAB" -c "load exprs $TMP/locked.exprs"
  expect_status 2 "info of an unreadable model exits 2" "$NORMLAB" info "$TMP/locked.safetensors"
  expect_status 2 "-f of an unreadable script exits 2" "$NORMLAB" -f "$TMP/locked.exprs"
  mkdir "$TMP/ro"
  chmod 555 "$TMP/ro"
  expect_status 2 "save into a directory without write permission exits 2" "$NORMLAB" -c "set a = x; save $TMP/ro/s"
  chmod 755 "$TMP/ro"
  chmod 644 "$TMP/locked.safetensors" "$TMP/locked.exprs"
else
  echo "ok $((_n + 1)) # SKIP permissions do not apply to root"; _n=$((_n + 1))
fi

done_testing
