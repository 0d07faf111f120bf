#!/bin/sh
# The interactive prompt driven through a pseudo-terminal (tmux): completion,
# history across runs, Ctrl-C at the prompt, the dashboard.
. "$NL_SRCDIR/tests/cli/lib.sh"

if ! command -v tmux >/dev/null 2>&1; then
  echo "ok 1 # SKIP tmux not installed"
  echo "1..1"
  exit 0
fi
SOCK="normlab-test-$$"
RUNS=0
cleanup() {
  i=0
  while [ "$i" -le "$RUNS" ]; do
    tmux -L "$SOCK-$i" kill-server >/dev/null 2>&1
    i=$((i + 1))
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'cleanup; exit 1' INT TERM HUP PIPE
export NORMLAB_HISTORY="$TMP/history"

# start: a fresh server with normlab in a 120x40 pane; the pane stays after
# normlab exits and shows its status.
start() {
  tmux -L "$SOCK-$RUNS" kill-server >/dev/null 2>&1
  RUNS=$((RUNS + 1))
  tmux -L "$SOCK-$RUNS" -f /dev/null new-session -d -x 120 -y 40 \
    "cd '$TMP' && HOME='$TMP' TERM=xterm NORMLAB_HISTORY='$NORMLAB_HISTORY' '$NORMLAB'; echo \"[exit \$?]\"; sleep 600"
}
keys() { tmux -L "$SOCK-$RUNS" send-keys "$@"; }
screen() { tmux -L "$SOCK-$RUNS" capture-pane -p; }
# wait_for ERE [SECONDS]: poll the screen until a line matches
wait_for() {
  _t=0
  _lim=$(( ${2:-5} * 10 ))
  while [ "$_t" -lt "$_lim" ]; do
    if screen | grep -Eq -- "$1"; then return 0; fi
    sleep 0.1
    _t=$((_t + 1))
  done
  echo "# timed out waiting for /$1/; screen:"
  screen | sed '/^$/d; s/^/#   /'
  return 1
}

cat >"$TMP/set.exprs" <<'EOS'
blocks.0.norm1 = tanh(1.5 * x)
blocks.0.norm2 = x
norm = x * 0.5
EOS

mkdir "$TMP/fronts"
cat >"$TMP/fronts/blocks.0.norm1.csv" <<'EOS'
layer,seed,rank,nodes,flops,train_fitness,val_fitness,val_mse,val_r2,expr
blocks.0.norm1,1,0,3,2,0.1,0.1,0.2,0.8,tanh(x)
blocks.0.norm1,2,0,5,3,0.01,0.01,0.02,0.975,"tanh(1.5 * x)"
norm,1,0,1,0,0.5,0.5,0.5,0.5,x
EOS

start
wait_for '^normlab> ?$'; ok $? "the prompt appears"

keys 'sta' Tab
wait_for '^normlab> status ?$'; ok $? "Tab completes a command"
keys Enter
wait_for '^fronts +-'; ok $? "the completed command runs"

keys 'load ex' Tab 'set.e' Tab Enter
wait_for '^exprs set.exprs: 3 expressions'; ok $? "Tab completes a choice and a file name"
wait_for '^normlab:set> ?$'; ok $? "the prompt names the session"

keys 'show blocks.0.norm' Tab
wait_for '^normlab:set> show blocks\.0\.norm$'; ok $? "Tab completes the common prefix of layer names"
keys '2' Enter
wait_for '^blocks\.0\.norm2 = x$'; ok $? "a completed layer name is shown"

keys 'plot --sam' Tab
wait_for 'plot --samples ?$'; ok $? "Tab completes an option from the table"
keys C-u

keys 'help \' Enter
wait_for '^   \.\.\.> ?$'; ok $? "a trailing backslash asks for more"
keys 'quit' Enter
wait_for '^usage: quit'; ok $? "the continued line runs as one"

keys 'frobnicate now'
wait_for 'frobnicate now$'
keys C-c
wait_for 'frobnicate now\^C$'; ok $? "Ctrl-C at the prompt shows ^C"
keys 'setting seed 1; setting seed' Enter
wait_for '^1$'; ok $? "the line after Ctrl-C starts empty"
if screen | grep -q "unknown command 'frobnicate'"; then ok 1 "the cleared line did not run"; else ok 0 "the cleared line did not run"; fi

keys 'load fronts fronts; dashboard' Enter
wait_for 'FLOPs/elem'; ok $? "the dashboard draws the table"
wait_for 'blocks\.0\.norm1 .* 0\.9750 '; ok $? "the table shows the front's best R2"
# cost per element (Appendix F): tanh 23, * 1; x alone costs nothing
screen | grep -Eq '^ blocks\.0\.norm1 +24 ' && screen | grep -Eq '^ blocks\.0\.norm2 +0 '
ok $? "the table shows each expression's FLOPs per element"
wait_for 'blocks\.0\.norm1 .*tanh\(1\.5 \* x\)'; ok $? "the table lists layers with expressions"
keys Down Down Enter
wait_for '^ expression:'; ok $? "Enter opens the selected layer's detail"
wait_for 'x \* 0\.5'; ok $? "the detail shows the expression"
wait_for '^ cost: 1 FLOPs per element'; ok $? "the detail shows the cost"
wait_for '^   `-- 0\.5'; ok $? "the detail draws the tree"
keys Escape
wait_for 'FLOPs/elem'; ok $? "a key in the detail returns to the table"
keys s s
wait_for 'front R², lowest first'; ok $? "s cycles the sort order"
screen | sed -n 4p | grep -Eq '^ norm +1 +0\.5000 +x \* 0\.5'; ok $? "sorted by R2 the worst fit comes first"
keys s
tmux -L "$SOCK-$RUNS" resize-window -x 70 -y 16
wait_for '^ ?Up/Down move'; ok $? "the dashboard redraws after a resize"
if [ "$(screen | awk 'length > 70' | wc -l)" -eq 0 ] && screen | sed -n 16p | grep -q 'Up/Down'; then
  ok 0 "the redrawn table fits the new size"
else
  ok 1 "the redrawn table fits the new size"; screen | sed 's/^/#   /'
fi
tmux -L "$SOCK-$RUNS" resize-window -x 120 -y 40
keys q
wait_for '^normlab:set> ?$'; ok $? "q returns to the prompt"
keys 'status' Enter
wait_for '^exprs +set.exprs +\(3 expressions\)'; ok $? "the prompt works after the dashboard"

keys 'dashboard' Enter
wait_for 'FLOPs/elem'
keys C-c
wait_for '^normlab:set> ?$'; ok $? "Ctrl-C leaves the dashboard for the prompt"
keys 'setting seed 2; setting seed' Enter
wait_for '^2$'; ok $? "the prompt works after Ctrl-C in the dashboard"

# edit: a line pre-filled with the current expression
keys 'edit blocks.0.norm2' Enter
wait_for '^blocks\.0\.norm2 = x$'; ok $? "edit pre-fills the current expression"
keys ' * 2' Enter
wait_for '^blocks\.0\.norm2 = x \* 2  \(1 FLOPs/elem\)$'; ok $? "the edited expression is set"
keys 'edit norm' Enter
wait_for '^norm = x \* 0\.5$'
keys ' +' Enter
wait_for 'expected'; ok $? "an invalid edit shows the error"
wait_for '^norm = x \* 0\.5 \+$'; ok $? "the invalid text stays on the line to fix"
keys C-c
wait_for '^norm unchanged$'; ok $? "Ctrl-C leaves the layer unchanged"
keys 'show norm' Enter
wait_for '^norm = x \* 0\.5$'; ok $? "the expression is the old one"
keys 'undo' Enter
wait_for '^undone'
keys 'show blocks.0.norm2' Enter
wait_for '^blocks\.0\.norm2 = x$'; ok $? "undo reverts the edit"

# Ctrl-C interrupts a running command: a script read from a pipe that
# has not ended yet
mkfifo "$TMP/slow.nl"
keys "source $TMP/slow.nl" Enter
exec 3>"$TMP/slow.nl"
echo "setting seed 3; setting seed" >&3
wait_for '^3$'; ok $? "the running script ran its first line"
keys C-c
wait_for 'normlab source: .*slow.nl: interrupted'; ok $? "Ctrl-C interrupts the running command"
(trap "" PIPE; echo "setting seed 4; setting seed" >&3) 2>/dev/null
exec 3>&-
wait_for '^normlab:set> ?$'; ok $? "the prompt is back after the interruption"
keys 'setting seed' Enter
sleep 0.3
[ "$(screen | grep -c '^[34]$')" -eq 2 ] && screen | grep -q '^3$' && ! screen | grep -q '^4$'
ok $? "the results before the interruption are kept, nothing after it ran"

# the set was edited (edit, undo): Ctrl-D asks before dropping the edits
keys C-d
wait_for 'unsaved changes\. Save the session first\? \[y\]es, \[n\]o: discard, \[c\]ancel:$'
ok $? "Ctrl-D with unsaved edits asks first"
keys 'c' Enter
wait_for '^quit cancelled: the session is as it was$'; ok $? "cancel keeps the session"
keys 'status' Enter
wait_for '^unsaved +the expression set'; ok $? "the prompt goes on with the edits"
keys 'quit' Enter
wait_for 'unsaved changes\. Save the session first'; ok $? "quit asks too"
keys 'maybe' Enter
sleep 0.3
[ "$(screen | grep -c 'unsaved changes\. Save the session first')" -eq 3 ]; ok $? "an answer that is not y, n or c asks again"
keys 'y' Enter
wait_for 'Save the session in directory:$'; ok $? "yes without a session directory asks for one"
keys 'kept' Enter
wait_for '^saved kept/session\.json$'; ok $? "the session is saved there"
wait_for '^\[exit 0\]'; ok $? "then quit leaves with status 0"
grep -q '^blocks\.0\.norm2 = x$' "$TMP/kept/set.exprs"; ok $? "the saved set holds the edited expressions"
screen | grep -q 'Sanitizer' && ok 1 "no sanitizer report" || ok 0 "no sanitizer report"
grep -q '^plot --sam' "$NORMLAB_HISTORY" && ok 1 "a cleared line is not in history" || ok 0 "a cleared line is not in history"
grep -qx 'setting seed 2; setting seed' "$NORMLAB_HISTORY"; ok $? "history file written to \$NORMLAB_HISTORY"
grep -qx 'status' "$NORMLAB_HISTORY"; ok $? "a completed line is kept without its trailing blank"

# history across runs
start
wait_for '^normlab> ?$'
keys Up
wait_for '^normlab> quit$'; ok $? "Up recalls the last line of the previous run"
keys C-u 'history' Enter
wait_for 'load exprs set\.exprs'; ok $? "history lists the previous run's lines"
keys 'history 2' Enter
wait_for '^ +[0-9]+  history 2$'
# what 'history 2' printed: the lines between its command and the next prompt
screen | awk '/^normlab> history 2$/ {on = 1; next} /^normlab>/ {on = 0} on && NF' >"$TMP/h2"
[ "$(wc -l <"$TMP/h2")" -eq 2 ] && sed -n 1p "$TMP/h2" | grep -Eq '^ +[0-9]+  history$'
ok $? "history N shows the last N lines"
keys 'quit' Enter
wait_for '^\[exit 0\]'; ok $? "quit leaves with status 0"

# quit with unsaved edits: n discards them
start
wait_for '^normlab> ?$'
keys 'set a = x' Enter
wait_for '^a = x'
keys 'quit' Enter
wait_for 'unsaved changes\.'
keys 'n' Enter
wait_for '^\[exit 0\]'; ok $? "no discards the edits and leaves"
# and in a saved session, yes saves into its directory
start
wait_for '^normlab> ?$'
keys 'open kept' Enter
wait_for '^opened kept'
keys 'set norm = x * 3' Enter
wait_for '^norm = x \* 3'
keys 'open! kept' Enter
wait_for '^opened kept' ; ok $? "open! opens without asking"
keys 'set norm = x * 4' Enter
wait_for '^norm = x \* 4'
keys 'open kept' Enter
wait_for 'Save them to kept first\?'; ok $? "open asks, naming the session's directory"
keys 'y' Enter
wait_for '^saved kept/session\.json$'; ok $? "yes saves into the session's directory"
wait_for '^opened kept'; ok $? "then the session is opened"
grep -q '^norm = x \* 4$' "$TMP/kept/set.exprs"; ok $? "the edit was saved"
keys 'quit' Enter
wait_for '^\[exit 0\]'; ok $? "quit after open leaves (nothing unsaved)"

# Tab completion: settings and their values; model files after load model
mkdir -p "$TMP/models/sub"
: >"$TMP/models/vit.safetensors"
: >"$TMP/models/notes.txt"
start
wait_for '^normlab> ?$'
keys 'setting th' Tab
wait_for '^normlab> setting threads ?$'; ok $? "Tab completes a setting's name"
keys C-u 'setting term d' Tab
wait_for '^normlab> setting term dumb ?$'; ok $? "Tab completes a setting's value"
keys C-u 'load model models/' Tab Tab
wait_for 'vit\.safetensors'; ok $? "load model offers model files"
if screen | grep -q 'notes\.txt'; then ok 1 "load model does not offer other files first"; else ok 0 "load model does not offer other files first"; fi
keys C-u 'load model models/n' Tab
wait_for '^normlab> load model models/notes\.txt ?$'; ok $? "without a model file, other files are offered"
keys C-u 'quit' Enter
wait_for '^\[exit 0\]'

# history is bounded: the file keeps the last 1000 lines
NORMLAB_HISTORY="$TMP/long-history"
i=0
while [ "$i" -lt 1100 ]; do echo "setting n $i"; i=$((i + 1)); done >"$NORMLAB_HISTORY"
start
wait_for '^normlab> ?$'
keys Up
wait_for '^normlab> setting n 1099$'; ok $? "a long history file is read"
keys C-u 'status' Enter C-d
wait_for '^\[exit 0\]'
[ "$(wc -l <"$NORMLAB_HISTORY")" -eq 1000 ]; ok $? "the history file is cut to 1000 lines"
[ "$(tail -n 1 "$NORMLAB_HISTORY")" = "status" ] && [ "$(head -n 1 "$NORMLAB_HISTORY")" = "setting n 101" ]
ok $? "the newest lines are the ones kept"

# an empty NORMLAB_HISTORY keeps no file
NORMLAB_HISTORY=""
start
wait_for '^normlab> ?$'
keys 'status' Enter C-d
wait_for '^\[exit 0\]'; ok $? "runs without a history file"
[ ! -e "$TMP/.normlab_history" ]; ok $? "no history file is written"

done_testing
