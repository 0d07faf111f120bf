#!/bin/sh
# Batch use of the prompt: -c, -f, piped input, -k, exit statuses, and a
# session saved and reopened.
. "$NL_SRCDIR/tests/cli/lib.sh"

# -c runs the commands and exits; ';' separates them, not inside quotes
expect_status 0 "-c with two commands exits 0" "$NORMLAB" -c "status; help load"
expect_out '^model +-' "-c ran the first command"
expect_out '^usage: load ' "-c ran the second command"
expect_status 0 "';' inside quotes is not a separator" "$NORMLAB" -c "setting note 'a; b'; setting note"
expect_out '^a; b$' "the quoted ';' reached the command"
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
printf 'setting b one\\\ntwo\nsetting b\nhelp \\\nload\n' >"$TMP/cont.nl"
expect_status 0 "continued lines run" "$NORMLAB" -f "$TMP/cont.nl"
expect_out '^onetwo$' "a trailing backslash glues the lines"
expect_out '^usage: load ' "a continued command runs"
printf 'status\nsetting c '"'"'open\n' >"$TMP/open.nl"
expect_status 2 "a quote left open at the end exits 2" "$NORMLAB" -f "$TMP/open.nl"
expect_err "open.nl:2: column 11: unterminated single quote" "the open quote is located"

# undo goes back through loads of expression sets
printf 'a = x\n' >"$TMP/one.exprs"
printf 'a = 2 * x\nb = x\n' >"$TMP/two.exprs"
expect_status 0 "undo restores the previous set" "$NORMLAB" -c "load exprs $TMP/one.exprs; load exprs $TMP/two.exprs; undo; layers"
expect_out '^undone: the set has 1 expressions$' "undo reports the set"
expect_out '^a +0  x$' "the first set is back"
expect_status 2 "nothing to undo exits 2" "$NORMLAB" -c "undo"
expect_err "nothing to undo" "undo explains"

# source runs a script in the current session; timer prints wall times
printf 'setting from_script yes\n' >"$TMP/inner.nl"
expect_status 0 "source runs a script in the session" "$NORMLAB" -c "source $TMP/inner.nl; setting from_script"
expect_out '^yes$' "the script's setting is in the session"
printf 'source %s\n' "$TMP/self.nl" >"$TMP/self.nl"
expect_status 2 "a script sourcing itself stops" "$NORMLAB" -c "source $TMP/self.nl"
expect_err "nested too deeply" "deep nesting is reported"
expect_status 0 "timer setting" "$NORMLAB" -c "setting timer on; status"
expect_err '^time: [0-9]+\.[0-9]{3} s$' "timer prints each command's time"

# piped input is batch mode too
run sh -c "printf 'setting x 1\nsetting x\n' | '$NORMLAB'"
ok "$rc" "piped commands exit 0"
expect_out '^1$' "piped commands ran"
run sh -c "printf 'frobnicate\nsetting x 1\n' | '$NORMLAB'"
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
echo "setting a 1; setting a" >&3
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

done_testing
