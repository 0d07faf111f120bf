# Helpers for fuzz targets run as command-line tests. Source after lib.sh.
#
#   fuzz_target NAME SOURCES...
#
# builds tests/fuzz/NAME.c (a libFuzzer entry LLVMFuzzerTestOneInput) with
# clang -fsanitize=fuzzer,address,undefined together with SOURCES (paths
# relative to the source tree) into $TMP, runs it for $FUZZ_SECONDS seconds
# (default 15) over the seed corpus tests/fuzz/corpus_<NAME without fuzz_>/
# (copied, so the tree stays clean), with the dictionary
# tests/fuzz/<NAME without fuzz_>.dict
# when there is one, and reports one ok / not ok line (with the crashing
# input). Without a clang that can link libFuzzer the check is reported as
# skipped. NL_TEST_QUICK=1 shortens the run to 5 seconds.

fuzz_cc() {
  for cc in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
    if command -v "$cc" >/dev/null 2>&1; then
      printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
        >"$TMP/fuzzprobe.c"
      if "$cc" -fsanitize=fuzzer "$TMP/fuzzprobe.c" -o "$TMP/fuzzprobe" >/dev/null 2>&1; then
        echo "$cc"
        return 0
      fi
    fi
  done
  return 1
}

fuzz_target() {
  name=$1; shift
  secs=${FUZZ_SECONDS:-15}
  [ "${NL_TEST_QUICK:-0}" = 1 ] && [ "$secs" -gt 5 ] && secs=5
  cc=$(fuzz_cc) || { echo "ok $((_n = _n + 1)) - # SKIP $name: no clang with libFuzzer"; return 0; }
  srcs=""
  for s in "$@"; do srcs="$srcs $NL_SRCDIR/$s"; done
  corpus_name=${name#fuzz_}
  mkdir -p "$TMP/corpus_$corpus_name" "$TMP/artifacts_$corpus_name"
  if [ -d "$NL_SRCDIR/tests/fuzz/corpus_$corpus_name" ]; then
    cp "$NL_SRCDIR/tests/fuzz/corpus_$corpus_name"/* "$TMP/corpus_$corpus_name/" 2>/dev/null
  fi
  # shellcheck disable=SC2086
  if ! "$cc" -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
      -I"$NL_SRCDIR/src" -I"$NL_BUILDDIR" -D_POSIX_C_SOURCE=200809L \
      "$NL_SRCDIR/tests/fuzz/$name.c" $srcs -lm -o "$TMP/$name" >"$TMP/$name.build" 2>&1; then
    ok 1 "$name builds with $cc"
    sed 's/^/# /' "$TMP/$name.build" | head -20
    return 0
  fi
  dict=""
  [ -f "$NL_SRCDIR/tests/fuzz/$corpus_name.dict" ] && dict="-dict=$NL_SRCDIR/tests/fuzz/$corpus_name.dict"
  # shellcheck disable=SC2086
  "$TMP/$name" -max_total_time="$secs" -timeout=60 -rss_limit_mb=2048 $dict \
    -artifact_prefix="$TMP/artifacts_$corpus_name/" "$TMP/corpus_$corpus_name" \
    >"$TMP/$name.log" 2>&1
  frc=$?
  runs=$(grep -Eo 'Done [0-9]+ runs' "$TMP/$name.log" | grep -Eo '[0-9]+')
  if [ "$frc" -eq 0 ]; then
    ok 0 "$name: ${runs:-?} inputs in ${secs}s without a crash"
  else
    ok 1 "$name found a failure (exit $frc)"
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$TMP/$name.log" | head -10 | sed 's/^/# /'
    for f in "$TMP/artifacts_$corpus_name"/*; do
      [ -f "$f" ] && echo "# input: $(head -c 200 "$f" | od -An -c | head -3 | tr -s ' ')"
    done
  fi
}
