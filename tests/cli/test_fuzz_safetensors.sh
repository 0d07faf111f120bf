#!/bin/sh
# Fuzz the safetensors header parser (nl_st_parse) with libFuzzer, ASan and
# UBSan for ~15 s (5 s with NL_TEST_QUICK=1) from a small seed corpus.
. "$NL_SRCDIR/tests/cli/lib.sh"

secs=${FUZZ_SECONDS:-15}
[ "${NL_TEST_QUICK:-0}" = 1 ] && [ "$secs" -gt 5 ] && secs=5
cc=""
for c in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
  command -v "$c" >/dev/null 2>&1 && { cc=$c; break; }
done
if [ -z "$cc" ]; then
  echo "ok 1 - # SKIP fuzz_safetensors: no clang with libFuzzer"
  echo "1..1"
  exit 0
fi
mkdir -p "$TMP/corpus" "$TMP/artifacts"
cp "$NL_SRCDIR/tests/fuzz/corpus_safetensors/"* "$TMP/corpus/"
if "$cc" -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$NL_SRCDIR/src" -I"$NL_BUILDDIR" -D_POSIX_C_SOURCE=200809L \
    "$NL_SRCDIR/tests/fuzz/fuzz_safetensors.c" "$NL_SRCDIR/src/model/safetensors.c" \
    "$NL_SRCDIR/src/base/error.c" "$NL_SRCDIR/src/base/mem.c" "$NL_SRCDIR/src/base/fileio.c" \
    -ljansson -lm -o "$TMP/fuzz_safetensors" >"$TMP/build.log" 2>&1; then
  ok 0 "fuzz_safetensors builds with $cc"
else
  ok 1 "fuzz_safetensors builds with $cc"
  sed 's/^/# /' "$TMP/build.log" | head -20
  done_testing
  exit 1
fi
"$TMP/fuzz_safetensors" -max_total_time="$secs" -timeout=60 -rss_limit_mb=2048 \
  -dict="$NL_SRCDIR/tests/fuzz/safetensors.dict" -artifact_prefix="$TMP/artifacts/" \
  "$TMP/corpus" >"$TMP/fuzz.log" 2>&1
frc=$?
runs=$(grep -Eo 'Done [0-9]+ runs' "$TMP/fuzz.log" | grep -Eo '[0-9]+')
if [ "$frc" -eq 0 ]; then
  ok 0 "fuzz_safetensors: ${runs:-?} inputs in ${secs}s without a crash"
else
  ok 1 "fuzz_safetensors found a failure (exit $frc)"
  grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$TMP/fuzz.log" | head -10 | sed 's/^/# /'
  for f in "$TMP/artifacts"/*; do
    [ -f "$f" ] && echo "# input: $(head -c 200 "$f" | od -An -c | head -3 | tr -s ' ')"
  done
fi
done_testing
