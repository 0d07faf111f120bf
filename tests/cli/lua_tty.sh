#!/bin/sh
# Lua at the interactive prompt (through tmux): a block over several
# lines with the continuation prompt, an error that returns to the prompt,
# the state kept, Ctrl-C in a running block.
. "$NL_SRCDIR/tests/cli/lib.sh"

if ! command -v tmux >/dev/null 2>&1; then
  echo "ok 1 # SKIP tmux not installed"
  echo "1..1"
  exit 0
fi
SOCK="normlab-luatty-$$"
cleanup() {
  tmux -L "$SOCK" kill-server >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'cleanup; exit 1' INT TERM HUP PIPE
export NORMLAB_HISTORY="$TMP/history"
tmux -L "$SOCK" -f /dev/null new-session -d -x 120 -y 40 \
  "cd '$TMP' && HOME='$TMP' TERM=xterm NORMLAB_HISTORY='$NORMLAB_HISTORY' '$NORMLAB'; echo \"[exit \$?]\"; sleep 600"
keys() { tmux -L "$SOCK" send-keys "$@"; }
screen() { tmux -L "$SOCK" capture-pane -p; }
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

wait_for '^normlab>' 10; ok $? "the prompt starts"
keys 'lua {' Enter
wait_for '^   \.\.\.>' ; ok $? "an open block shows the continuation prompt"
keys 'x = 6 -- }' Enter 'print("answer", x * 7) }' Enter
wait_for '^answer[[:space:]]+42' ; ok $? "the block runs when its brace closes"
keys 'lua { error("tty boom") }' Enter
wait_for 'stack traceback' ; ok $? "an error shows a traceback"
keys 'lua { print("alive", x) }' Enter
wait_for '^alive[[:space:]]+6' ; ok $? "the prompt and the Lua state survive the error"
keys 'lua { while true do end }' Enter
sleep 1
keys C-c
wait_for 'interrupted' ; ok $? "Ctrl-C stops a running block"
keys 'lua { local n = 0; for i = 1, 100000 do n = n + i end; print("after", x, n) }' Enter
wait_for '^after[[:space:]]+6' ; ok $? "the prompt works after the interruption"
if have_fixtures; then
  # Ctrl-C during normlab.evolve in a block: an error, the block does not run on
  keys "lua { m = normlab.import_maps('$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors', {x_prefix = 'map_x.', y_prefix = 'map_y.'}) }" Enter
  keys "lua { print('searching'); r = normlab.evolve(m, {layer = 'blocks.0.norm1', pop = 40, gens = 1000000}); print('ran' .. 'on') }" Enter
  wait_for '^searching' 10
  sleep 1
  keys C-c
  wait_for 'normlab.evolve: interrupted' 10; ok $? "Ctrl-C during normlab.evolve raises an error"
  ! screen | grep -q '^ranon'; ok $? "the block does not run on"
  keys 'lua { print("after", x) }' Enter
  wait_for '^after[[:space:]]+6' ; ok $? "the prompt works after the interrupted search"
fi
keys 'quit' Enter
wait_for '^\[exit 0\]' ; ok $? "quit leaves with status 0"
done_testing
