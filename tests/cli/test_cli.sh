#!/bin/sh
# The command-line front: help, version, unknown commands and bad flags;
# one name per concept, "did you mean", help hints that work where they
# are given, JSON printed one way, R² spelled one way.
. "$NL_SRCDIR/tests/cli/lib.sh"
MODEL="$NL_SRCDIR/samples/models/vit_small_p7_fmnist.safetensors"

expect_status 0 "--version exits 0" "$NORMLAB" --version
expect_out '^normlab [0-9]+\.[0-9]+\.[0-9]+$' "--version prints the version"
expect_status 0 "--help exits 0" "$NORMLAB" --help
expect_out 'Commands:' "--help lists commands"
expect_out '^  help ' "--help lists the help command"
expect_status 0 "help help exits 0" "$NORMLAB" help help
expect_out '^usage: normlab help' "help CMD shows the command's usage"
expect_status 2 "unknown command exits 2" "$NORMLAB" frobnicate
expect_err "unknown command 'frobnicate'" "unknown command is named"
expect_status 2 "help of an unknown command exits 2" "$NORMLAB" help frobnicate
expect_err "unknown command 'frobnicate'" "help names the unknown command"
expect_status 2 "bad --threads exits 2" "$NORMLAB" --threads zero help
expect_err "--threads expects an integer" "bad --threads is explained"

# "did you mean": commands (shell, help, prompt), options, global options
expect_status 2 "a mistyped command exits 2" "$NORMLAB" evl
expect_err "unknown command 'evl'; did you mean 'eval'\?" "the shell suggests the near command"
expect_status 2 "help of a mistyped command exits 2" "$NORMLAB" help evolv
expect_err "did you mean 'evolve'\?" "help suggests the near command"
expect_status 2 "a mistyped command of the prompt" "$NORMLAB" lod
expect_err "did you mean 'load'\? \(a command of the prompt" "a near prompt command is suggested as one"
expect_status 2 "a mistyped option exits 2" "$NORMLAB" info --jsno
expect_err "unknown option '--jsno'; did you mean '--json'\?" "the near option is suggested"
expect_status 2 "a mistyped old option name" "$NORMLAB" eval --limt 5
expect_err "did you mean '--images'\?" "a near old name suggests the current one"
expect_status 2 "a prefix of one option" "$NORMLAB" cost --tok 5 x
expect_err "did you mean '--tokens'\?" "a unique prefix is completed"
expect_status 2 "a mistyped option at the prompt" "$NORMLAB" -c "score all --itres 3"
expect_err "unknown option '--itres'" "the prompt names it"
expect_status 2 "a mistyped global option" "$NORMLAB" --thread 2 help
expect_err "did you mean '--threads'\?" "a near global option is suggested"
expect_status 2 "a mistyped benchmark" "$NORMLAB" bench forwrd
expect_err "unknown benchmark 'forwrd'; did you mean 'forward'\?" "the near benchmark is suggested"
expect_status 2 "nothing near: no suggestion" "$NORMLAB" info --zzzzzz
if grep -q "did you mean" "$TMP/err"; then ok 1 "no suggestion for a far word"; else ok 0 "no suggestion for a far word"; fi

# prompt commands on the shell line: said so; 'normlab help CMD' shows their help
expect_status 0 "normlab help of a prompt command exits 0" "$NORMLAB" help load
expect_out "'load' is a command of the prompt" "it says load is a prompt command"
expect_out '^usage: load model\|maps\|exprs\|fronts FILE' "and shows its usage"
expect_status 2 "a prompt command on the shell line exits 2" "$NORMLAB" load model x
expect_err "'load' is a command of the prompt" "the error says it is a prompt command"

# every "see '...help CMD'" an error points to works where it is given:
# on the shell line for the shell's commands, at the prompt for all
bad=""
for c in $("$NORMLAB" help | awk '/^Commands:/ {on=1; next} on && /^  [a-z]/ {print $1}'); do
  "$NORMLAB" "$c" --zzzzzz >/dev/null 2>"$TMP/e"
  hint=$(sed -n "s/.*see '\\(normlab help [a-z]*\\)'.*/\\1/p" "$TMP/e")
  if [ -z "$hint" ]; then bad="$bad $c(no hint)"; continue; fi
  # shellcheck disable=SC2086
  "$NORMLAB" ${hint#normlab } >/dev/null 2>&1 || bad="$bad $c($hint fails)"
done
for c in $("$NORMLAB" -c help | awk '/^  [a-z]/ {print $1}'); do
  "$NORMLAB" -c "$c --zzzzzz" >/dev/null 2>"$TMP/e"
  hint=$(sed -n "s/.*see '\\([a-z! ]*\\)'.*/\\1/p" "$TMP/e")
  case "$hint" in
    "help $c") "$NORMLAB" -c "$hint" >/dev/null 2>&1 || bad="$bad prompt:$c($hint fails)" ;;
    *) bad="$bad prompt:$c(hint '$hint')" ;;
  esac
done
[ -z "$bad" ]; ok $? "every help hint works where it is given"
[ -z "$bad" ] || echo "# bad:$bad"
expect_status 2 "a prompt command missing its argument" "$NORMLAB" -c "load model"
expect_err "see 'help load'" "at the prompt the hint is 'help load'"

# one name per concept; the old names still work, with a one-line note
expect_status 2 "eval --limit is --images" "$NORMLAB" eval --limit x
expect_err "eval: --limit is deprecated; use --images" "--limit gets a note"
expect_err "--images expects an integer, got 'x'" "--limit sets --images"
expect_status 2 "train --eval-limit is --eval-images" "$NORMLAB" train --eval-limit x --output "$TMP/t"
expect_err "train: --eval-limit is deprecated; use --eval-images" "--eval-limit gets a note"
expect_err "--eval-images expects an integer" "--eval-limit sets --eval-images"
expect_status 2 "train --limit is --images" "$NORMLAB" train --limit -1 --output "$TMP/t"
expect_err "--images must be" "--limit sets --images"
"$NORMLAB" help eval | grep -q -- '--limit'; [ $? -ne 0 ]; ok $? "help does not show the old name"
printf 'a = tanh(x)\nb = x * 2\n' >"$TMP/s.exprs"
expect_status 0 "cost --set FILE" "$NORMLAB" cost --set "$TMP/s.exprs" --json
cp "$TMP/out" "$TMP/cost-set.json"
run "$NORMLAB" cost "$TMP/s.exprs" --json
cmp -s "$TMP/out" "$TMP/cost-set.json"; ok $? "cost --set FILE is cost FILE"
expect_status 0 "cost --set at the prompt overrides the session's set" \
  "$NORMLAB" -c "set c = x; cost --set $TMP/s.exprs --json"
tail -n 1 "$TMP/out" | cmp -s - "$TMP/cost-set.json"; ok $? "the prompt's cost --set reads the file"
expect_status 2 "cost --set and expressions" "$NORMLAB" cost --set "$TMP/s.exprs" x
expect_err "not both" "both are refused"

# environment variables under one prefix; the old name still read
mkdir -p "$TMP/nofmnist"
expect_status 2 "NORMLAB_FMNIST_DIR names the data directory" env NORMLAB_FMNIST_DIR="$TMP/nofmnist" \
  "$NORMLAB" eval --images 10
expect_err "$TMP/nofmnist/t10k-images-idx3-ubyte.gz missing" "the directory given is the one read"
expect_status 2 "NL_FMNIST_DIR, its old name, still works" env NL_FMNIST_DIR="$TMP/nofmnist" \
  "$NORMLAB" eval --images 10
expect_err "$TMP/nofmnist/t10k" "the old name's directory is read"

# bench list --json
expect_status 0 "bench list --json" "$NORMLAB" bench list --json
cp "$TMP/out" "$TMP/bench.json"
run python3 -c "import json,sys; d=json.load(open('$TMP/bench.json')); n=[b['name'] for b in d['benchmarks']]; \
sys.exit(not ({'expr','forward','extract','train','gp'} <= set(n) and all(b['summary'] for b in d['benchmarks'])))"
ok "$rc" "bench list --json names the benchmarks with their summaries"

# bench peak: the vector unit it measures is the one /proc/cpuinfo reports
expect_status 0 "bench peak --json" "$NORMLAB" --threads 1 bench peak --json
cp "$TMP/out" "$TMP/peak.json"
run python3 -c "
import json, sys
d = json.load(open('$TMP/peak.json'))
flags = set()
for line in open('/proc/cpuinfo'):
    if line.startswith('flags'):
        flags = set(line.split(':', 1)[1].split()); break
want = 'AVX-512' if 'avx512f' in flags else 'AVX2+FMA' if {'avx2', 'fma'} <= flags else 'scalar'
ok = (d['isa'] == want and d['threads'] == 1 and d['fma_gflops_one_core'] > 0
      and d['fma_gflops_all_threads'] > 0 and d['sgemm_peak_gflops'] > 0
      and abs(d['sgemm_fraction_of_fma'] - d['sgemm_peak_gflops'] / d['fma_gflops_all_threads']) < 1e-3)
sys.exit(0 if ok else 1)"
ok "$rc" "bench peak measures the vector unit /proc/cpuinfo names, with positive figures"
expect_status 0 "bench forward prints the FMA peak beside the sgemm peak" "$NORMLAB" --threads 1 bench forward --model "$NL_FIXTURES/vit_small_p7_fmnist.safetensors" --batch 2 --seconds 0.2
expect_out "FMA peak \\(1 threads\\): [0-9.]+ GFLOP/s" "bench forward names the FMA peak"

# JSON printed one way: one line, reals as the shortest decimal that reads
# back the same (Python's repr is that), single-precision values as the
# float's own shortest decimal
cat >"$TMP/jcheck.py" <<'PY'
import json, struct, sys
from decimal import Decimal
reals = []
def keep(s):
    reals.append(s)
    return float(s)
text = open(sys.argv[1]).read()
if text.count("\n") != 1 or not text.endswith("\n"):
    sys.exit("not one line")
d = json.loads(text, parse_float=keep)
for s in reals:
    if Decimal(s) != Decimal(repr(float(s))) or len(s.lstrip("-")) > len(repr(abs(float(s)))) + 2:
        sys.exit("%s is not the shortest form (%r)" % (s, float(s)))
def f32_shortest(v):
    for p in range(1, 10):
        t = "%.*g" % (p, v)
        if struct.pack("<f", float(t)) == struct.pack("<f", v):
            return Decimal(t)
for path in sys.argv[2:]:   # keys whose values are floats: a.b.c, * for every item
    vals = [d]
    for k in path.split("."):
        vals = [x for v in vals for x in (v if k == "*" else [v[k]])]
    for v in vals:
        f = struct.unpack("<f", struct.pack("<f", v))[0]
        if Decimal(repr(v)) != f32_shortest(f):
            sys.exit("%s = %r is not the float's shortest form %s" % (path, v, f32_shortest(f)))
PY
expect_status 0 "replace --set dyt=0.1 --json" "$NORMLAB" replace --model "$MODEL" --set dyt=0.1 \
  --output "$TMP/dyt.safetensors" --json
cp "$TMP/out" "$TMP/j.json"
run python3 "$TMP/jcheck.py" "$TMP/j.json" layers.*.alpha
ok "$rc" "replace --json: one line, alpha 0.1 as 0.1"
grep -Eq '"alpha": 0\.1[,}]' "$TMP/j.json"
ok $? "the alpha is written 0.1, not 0.10000000149011612"
expect_status 0 "info --json" "$NORMLAB" info --json "$TMP/dyt.safetensors"
cp "$TMP/out" "$TMP/j.json"
run python3 "$TMP/jcheck.py" "$TMP/j.json" eps mean.* std.* norms.*.alpha
ok "$rc" "info --json: one line, eps, mean, std, alphas in their shortest forms"
expect_status 0 "cost --json" "$NORMLAB" cost --json 'tanh(x)'
cp "$TMP/out" "$TMP/j.json"
run python3 "$TMP/jcheck.py" "$TMP/j.json"
ok "$rc" "cost --json: one line"

# R² is spelled one way in text: no R2 or R^2 in any help text
for c in $("$NORMLAB" -c help | awk '/^  [a-z]/ {print $1}'); do
  "$NORMLAB" -c "help $c"
  "$NORMLAB" help "$c" 2>/dev/null
done >"$TMP/helps" 2>&1
if grep -En '(^|[^a-z_])R(2|\^2)([^0-9]|$)' "$TMP/helps" >"$TMP/r2"; then
  ok 1 "help texts spell R² one way"; sed 's/^/# /' "$TMP/r2" | head -5
else ok 0 "help texts spell R² one way"; fi
grep -q 'R²' "$TMP/helps"; ok $? "help texts write R²"

done_testing
