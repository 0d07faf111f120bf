# TAP helpers for command-line tests. Source it, call the checks, then `done_testing`.
# $NORMLAB is the binary under test; $NL_FIXTURES the timm fixtures;
# $TMP a scratch directory removed at exit.
set -u
: "${NORMLAB:?NORMLAB not set}"
: "${NL_SRCDIR:?NL_SRCDIR not set}"
: "${NL_FIXTURES:=$NL_SRCDIR/../shared/fixtures/timm}"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/normlab-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
_n=0
_failed=0

ok() {  # ok COND-STATUS DESCRIPTION
  _n=$((_n + 1))
  if [ "$1" -eq 0 ]; then
    echo "ok $_n - $2"
  else
    echo "not ok $_n - $2"
    _failed=$((_failed + 1))
  fi
}

# run CMD...: runs it, keeping stdout in $TMP/out, stderr in $TMP/err, status in $rc.
run() {
  "$@" >"$TMP/out" 2>"$TMP/err"
  rc=$?
}

# expect_status N DESC CMD...: run and check the exit status.
expect_status() {
  want=$1; desc=$2; shift 2
  run "$@"
  if [ "$rc" -eq "$want" ]; then ok 0 "$desc"; else
    ok 1 "$desc (exit $rc, wanted $want)"
    sed 's/^/# stderr: /' "$TMP/err" | head -5
  fi
}

# expect_out PATTERN DESC: grep -E on the last stdout.
expect_out() {
  if grep -Eq -- "$1" "$TMP/out"; then ok 0 "$2"; else
    ok 1 "$2 (stdout lacks /$1/)"
    sed 's/^/# stdout: /' "$TMP/out" | head -10
  fi
}

# expect_err PATTERN DESC: grep -E on the last stderr.
expect_err() {
  if grep -Eq -- "$1" "$TMP/err"; then ok 0 "$2"; else
    ok 1 "$2 (stderr lacks /$1/)"
    sed 's/^/# stderr: /' "$TMP/err" | head -10
  fi
}

# Numeric comparison with awk: check_num EXPR DESC, e.g. check_num "0.87 > 0.8" "..."
check_num() {
  if awk "BEGIN { exit !($1) }"; then ok 0 "$2"; else ok 1 "$2 ($1 is false)"; fi
}

have_fixtures() { [ -f "$NL_FIXTURES/vit_small_p7_fmnist.safetensors" ]; }

done_testing() {
  echo "1..$_n"
  [ "$_failed" -eq 0 ]
}
