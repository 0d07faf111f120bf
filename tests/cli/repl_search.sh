#!/bin/sh
# Searches at the prompt, driven through a pseudo-terminal (tmux): Ctrl-C
# during a foreground evolve returns to the prompt with the front kept and
# loaded; 'evolve ... &' runs in the background while the prompt stays
# usable, 'jobs' and the dashboard show its progress, 'stop' keeps the
# partial front, a finished one is announced; the fronts are recorded in
# the session's directory (its expression set is saved only by 'save');
# the dashboard follows a background search to its end.
. "$NL_SRCDIR/tests/cli/lib.sh"

if ! command -v tmux >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1; then
  echo "ok 1 # SKIP tmux or python3 not installed"
  echo "1..1"
  exit 0
fi
SOCK="normlab-search-$$"
cleanup() {
  tmux -L "$SOCK" kill-server >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'cleanup; exit 1' INT TERM HUP PIPE

# mappings: one layer L, 4000 points of y = tanh(2x) + x/10 on [-3, 3]
python3 - "$TMP/m.maps" <<'EOF'
import json, math, struct, sys
n = 4000
xs = [-3 + 6 * i / (n - 1) for i in range(n)]
ys = [math.tanh(2 * x) + x / 10 for x in xs]
bx, by = struct.pack("<%df" % n, *xs), struct.pack("<%df" % n, *ys)
h = {"__metadata__": {"kind": "test"},
     "L.x": {"dtype": "F32", "shape": [n], "data_offsets": [0, len(bx)]},
     "L.y": {"dtype": "F32", "shape": [n], "data_offsets": [len(bx), len(bx) + len(by)]}}
hb = json.dumps(h).encode()
hb += b" " * ((8 - len(hb) % 8) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(hb)) + hb + bx + by)
EOF

tmux -L "$SOCK" -f /dev/null new-session -d -x 120 -y 40 \
  "cd '$TMP' && HOME='$TMP' TERM=xterm NORMLAB_HISTORY='' '$NORMLAB'; echo \"[exit \$?]\"; sleep 600"
keys() { tmux -L "$SOCK" send-keys "$@"; }
screen() { tmux -L "$SOCK" capture-pane -p; }
wait_for() {
  _t=0
  _lim=$(( ${2:-10} * 10 ))
  tmux -L "$SOCK" has-session 2>/dev/null || { echo "# the tmux server is gone"; return 1; }
  while [ "$_t" -lt "$_lim" ]; do
    if screen | grep -Eq -- "$1"; then return 0; fi
    sleep 0.1
    _t=$((_t + 1))
  done
  echo "# timed out waiting for /$1/; screen:"
  screen | sed '/^$/d; s/^/#   /'
  return 1
}
clear_screen() { keys C-l; sleep 0.2; tmux -L "$SOCK" clear-history; }

wait_for '^normlab> ?$'
keys "load maps m.maps; save sess" Enter
wait_for '^saved sess/session.json'; ok $? "a session with a directory"

# foreground: Ctrl-C during the search
keys "evolve --layer L --pop 60 --gens 100000 --output fg" Enter
wait_for 'gen [0-9]+/100000'; ok $? "the foreground search shows live progress"
sleep 1
keys C-c
wait_for '^normlab:m> ?$' 20; ok $? "Ctrl-C during evolve returns to the prompt"
wait_for "fronts fg loaded \(1 layers\)"; ok $? "the partial front is loaded into the session"
wait_for 'recorded the fronts in sess/session.json'; ok $? "the fronts are recorded in the session after the search"
[ -s "$TMP/fg/L.csv" ]; ok $? "the front is kept on disk"
grep -q '"fronts"' "$TMP/sess/session.json"; ok $? "session.json records the fronts"
[ -s "$TMP/sess/fronts/L.csv" ]; ok $? "the session's directory holds the front"
clear_screen
keys "front L" Enter
wait_for ' members; .pick L N\|knee\|minval'; ok $? "front lists the kept members"
keys "pick L knee" Enter
wait_for '^L = .*\(#[0-9]+, [0-9]+ FLOPs/elem, val R² [0-9.]+\)'; ok $? "pick sets the knee member"
[ ! -e "$TMP/sess/set.exprs" ]; ok $? "the picked expression is not written without 'save'"

# background: the prompt stays usable
clear_screen
keys "evolve --layer L --pop 60 --gens 100000 --output bg &" Enter
wait_for '^\[evolve\] started in the background'; ok $? "evolve & starts a background search"
keys "setting seed 7; setting seed" Enter
wait_for '^7$'; ok $? "the prompt runs commands while it searches"
keys "frob"
sleep 0.2
keys C-c
wait_for 'frob\^C$'; ok $? "Ctrl-C at the prompt clears the line"
sleep 0.5
keys "jobs" Enter
wait_for '^evolve running: \[1/1\] L seed 0  gen [0-9]+/100000'; ok $? "jobs shows the running search (Ctrl-C did not stop it)"
keys "status" Enter
wait_for '^job +evolve running'; ok $? "status shows the job"
keys "evolve --layer L --output other" Enter
wait_for '^normlab evolve: a background evolve is running; wait for it or .stop. it first'
ok $? "a second search waits for the first"
keys "dashboard" Enter
wait_for 'FLOPs/elem'; ok $? "the dashboard opens during the search"
wait_for '^ evolve running: .*gen [0-9]+/100000 .*node-evals/s'; ok $? "the dashboard shows the search's progress"
wait_for 'val R² +DyT R² +bound R²'; ok $? "the dashboard has the fit columns with mappings loaded"
wait_for '^ L +[0-9]+ +[01]\.[0-9]{4} +[01]\.[0-9]{4} +[01]\.[0-9]{4} +[01]\.[0-9]{4} '; ok $? "the layer's row shows val, DyT and bound R2"
keys q
wait_for '^normlab:m> ?$'; ok $? "q returns to the prompt"
clear_screen
keys "stop" Enter
wait_for '^\[evolve\] stopped after'; ok $? "stop ends the search"
wait_for "fronts bg loaded \(1 layers\)"; ok $? "its partial front is loaded"
[ -s "$TMP/bg/L.csv" ]; ok $? "its front is on disk"
keys "dashboard" Enter
wait_for 'FLOPs/elem'
keys Enter
wait_for '^   front: val MSE( \(log scale\))? against FLOPs/elem'; ok $? "the detail view plots the layer's front"
keys q
wait_for '^normlab:m> ?$'

# a background search that finishes by itself is announced at the prompt
clear_screen
keys "evolve --layer L --pop 30 --gens 3 --output bg2 &" Enter
wait_for '^\[evolve\] finished after' 20; ok $? "a finished background search is announced"
wait_for "fronts bg2 loaded"; ok $? "its front is loaded"
keys "setting seed 8; setting seed" Enter
wait_for '^8$'; ok $? "the prompt works after the announcement"

grep -q '^L = ' "$TMP/sess/set.exprs" 2>/dev/null && ok 1 "searches do not save the set's edits" || ok 0 "searches do not save the set's edits"

# the dashboard follows a background search: its front fills the table
# when the search ends, without leaving the view
clear_screen
keys "unload fronts" Enter
keys "evolve --layer L --pop 60 --gens 400 --output bg3 &" Enter
wait_for '^\[evolve\] started in the background'
keys "dashboard" Enter
wait_for '^ evolve running: '; ok $? "the dashboard opens while the search runs"
if screen | grep -q 'front R² max'; then ok 1 "no front column before the search has one"; else ok 0 "no front column before the search has one"; fi
wait_for 'front R² max' 120; ok $? "the front's column appears when the search ends"
# layer, FLOPs, front R2, then val, DyT and bound R2
screen | grep -Eq '^ L +[0-9]+ +[01]\.[0-9]{4} +[01]\.[0-9]{4} +[01]\.[0-9]{4} +[01]\.[0-9]{4} ' && screen | grep -q 'Up/Down move'
ok $? "still in the dashboard, the row shows the front's best R2"
wait_for '^ \[evolve\] finished after [0-9.]+ s'; ok $? "the status line says the search finished"
if screen | grep -q 'evolve running'; then ok 1 "the running line is gone"; else ok 0 "the running line is gone"; fi
keys q
wait_for '^fronts bg3 loaded'; ok $? "the search's reports are shown back at the prompt"

# quit with the picked expression unsaved: yes saves it into the session
keys "quit" Enter
wait_for 'Save them to sess first\?'; ok $? "quit asks about the unsaved pick"
keys "y" Enter
wait_for '^\[exit 0\]'; ok $? "quit leaves with status 0"
grep -q '^L = ' "$TMP/sess/set.exprs"; ok $? "yes saved the set into the session"
screen | grep -q 'Sanitizer' && ok 1 "no sanitizer report" || ok 0 "no sanitizer report"
done_testing
