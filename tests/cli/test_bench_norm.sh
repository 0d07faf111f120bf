#!/bin/sh
# `normlab bench norm`: the bytes moved per token against the formulas
# (LayerNorm 2 reads + 1 write, DyT and expressions 1 read + 1 write, FP32),
# the sizes asked for (in L1, in L2, beyond the last-level cache, as sysfs
# gives the caches), the expressions of --set, and bad flags. No wall time
# is asserted.
. "$NL_SRCDIR/tests/cli/lib.sh"

if ! command -v python3 >/dev/null 2>&1; then
  echo "1..0 # SKIP needs python3"
  exit 0
fi
py() { python3 -c "$@"; }

expect_status 0 "bench list names norm" "$NORMLAB" bench list
expect_out '^  norm ' "norm benchmark listed"

# one size per width: bytes per token by the formula
for d in 64 192 768; do
  expect_status 0 "bench norm --dim $d --tokens 40" "$NORMLAB" bench norm --dim $d --tokens 40 \
    --seconds 0.1 --json
  cp "$TMP/out" "$TMP/b.json"
  res=$(py "
import json, sys
d, j = $d, json.load(open(sys.argv[1]))
c = j['cases']
bad = []
if len(c) != 1 or c[0]['dim'] != d or c[0]['tokens'] != 40: bad.append('case')
if c[0]['working_set_bytes'] != 2 * 4 * 40 * d: bad.append('working set')
for r in c[0]['results']:
  want = (2 + 1) * 4 * d if r['kind'] == 'layernorm' else (1 + 1) * 4 * d
  passes = 2 if r['kind'] == 'layernorm' else 1
  if r['bytes_per_token'] != want: bad.append('%s bytes %s' % (r['name'], r['bytes_per_token']))
  if r['passes'] != passes: bad.append('%s passes' % r['name'])
  if not r['ns_per_token'] > 0: bad.append('%s time' % r['name'])
  if abs(r['gb_per_s'] - want / r['ns_per_token']) > 1e-3 * max(1, r['gb_per_s']): bad.append('%s GB/s' % r['name'])
kinds = [r['kind'] for r in c[0]['results']]
if kinds[:2] != ['layernorm', 'dyt'] or kinds[2:] != ['expr'] * 5: bad.append('kinds %s' % kinds)
if c[0]['results'][0]['flops_per_token'] != 5 * d + 2 or c[0]['results'][1]['flops_per_token'] != 24 * d: bad.append('flops')
print(' '.join(bad) or 'ok')" "$TMP/b.json")
[ "$res" = ok ] || echo "# $res"
ok "$([ "$res" = ok ] && echo 0 || echo 1)" "d = $d: LayerNorm 12d bytes per token (2 reads + 1 write), DyT and the 5 built-in expressions 8d"
done

# the default sizes, chosen from the caches sysfs reports
cache() {  # cache LEVEL: bytes of cpu0's data/unified cache of that level (0: none)
for i in /sys/devices/system/cpu/cpu0/cache/index*; do
  [ -r "$i/level" ] || continue
  [ "$(cat "$i/type")" = Instruction ] && continue
  if [ "$(cat "$i/level")" = "$1" ]; then
    s=$(cat "$i/size")
    case $s in *K) echo $(( ${s%K} * 1024 ));; *M) echo $(( ${s%M} * 1048576 ));; *) echo "$s";; esac
    return
  fi
done
echo 0
}
L1=$(cache 1); L2=$(cache 2); L3=$(cache 3)
LLC=$L3; [ "$LLC" -gt 0 ] || LLC=$L2
if [ "${NL_TEST_QUICK:-0}" = 1 ]; then
  # arrays beyond the last-level cache are large and slow under the sanitizers
  _n=$((_n + 2)); echo "ok $((_n - 1)) # SKIP default sizes (NL_TEST_QUICK)"; echo "ok $_n # SKIP"
else
  expect_status 0 "bench norm, default sizes" "$NORMLAB" bench norm --seconds 0.3 --json
  cp "$TMP/out" "$TMP/d.json"
  res=$(py "
import json, sys
j = json.load(open(sys.argv[1]))
l1, l2, llc = [int(v) for v in sys.argv[2:5]]
bad = []
ca = j['caches']
if l1 and (ca['l1d'], ca['l2']) != (l1, l2): bad.append('caches %s' % ca)
if llc and ca['llc'] != llc: bad.append('llc %s' % ca)
l1 = l1 or 32768; l2 = l2 or 1 << 20; llc = llc or 32 << 20
dims = sorted({c['dim'] for c in j['cases']})
if dims != [64, 192, 768]: bad.append('dims %s' % dims)
for d in dims:
    ws = sorted(c['working_set_bytes'] for c in j['cases'] if c['dim'] == d)
    if len(ws) != 3: bad.append('%d sizes at d=%d' % (len(ws), d)); continue
    if not ws[0] <= l1: bad.append('d=%d: %d not in L1' % (d, ws[0]))
    if not l1 < ws[1] <= l2: bad.append('d=%d: %d not in L2 only' % (d, ws[1]))
    if not ws[2] > llc: bad.append('d=%d: %d fits in the last-level cache' % (d, ws[2]))
for c in j['cases']:
    for r in c['results']:
        want = 12 * c['dim'] if r['kind'] == 'layernorm' else 8 * c['dim']
        if r['bytes_per_token'] != want: bad.append('bytes')
if not j['copy_gb_per_s'] > 0: bad.append('copy')
print(' '.join(bad) or 'ok')" "$TMP/d.json" "$L1" "$L2" "$LLC")
  [ "$res" = ok ] || echo "# $res"
  ok "$([ "$res" = ok ] && echo 0 || echo 1)" "d = 64, 192, 768, each in L1, in L2 and beyond the last-level cache (sysfs: L1d $L1, L2 $L2, LLC $LLC)"
fi

expect_status 0 "text output" "$NORMLAB" bench norm --dim 192 --tokens 8 --seconds 0.1
expect_out '^machine: ' "machine line"
expect_out "^caches \(sysfs, cpu0\): L1d $((L1 / 1024)) KiB, L2 $((L2 / 1024)) KiB" "cache sizes from sysfs printed"
expect_out '^limit: streaming copy of [0-9.]+ MiB on [0-9]+ threads?: [0-9.]+ GB/s' "the copy bandwidth as the limit"
expect_out '^expressions: built-in' "says the built-in expressions are used"
expect_out '^  LayerNorm +2 +[0-9.]+ +2304 +[0-9.]+ +[0-9]+% +1\.00x$' "LayerNorm row: 2 passes, 12d = 2304 bytes"
expect_out '^  DyT +1 +[0-9.]+ +1536 ' "DyT row: 1 pass, 8d = 1536 bytes"
expect_out '^  mix5 +1 +[0-9.]+ +1536 +[0-9.]+ +[0-9]+% +[0-9.]+x$' "expression rows with the LayerNorm ratio"

printf '# two\na = 0.5*clip(2*x)\nb = tanh(0.7*x) + 0.1*x\n' >"$TMP/two.exprs"
expect_status 0 "--set FILE" "$NORMLAB" bench norm --set "$TMP/two.exprs" --dim 64 --tokens 10 --seconds 0.1 --json
res=$(py "
import json, sys
r = json.load(open(sys.argv[1]))['cases'][0]['results']
print([x['name'] for x in r] == ['LayerNorm', 'DyT', 'a', 'b'] and r[2]['expr'] == '0.5*clip(2*x)')" "$TMP/out")
ok "$([ "$res" = True ] && echo 0 || echo 1)" "the set's expressions, by name"
expect_out "two\.exprs" "names the set"

# bad flags: exit 2 and say what is wrong
expect_status 2 "--dim 0" "$NORMLAB" bench norm --dim 0
expect_err 'dim' "names --dim"
expect_status 2 "--dim abc" "$NORMLAB" bench norm --dim abc
expect_err 'dim' "names --dim"
expect_status 2 "--tokens 0" "$NORMLAB" bench norm --tokens 0
expect_err 'tokens' "names --tokens"
expect_status 2 "--tokens too large" "$NORMLAB" bench norm --dim 768 --tokens 60000000
expect_err 'tokens 60000000 at d = 768 needs' "says how much memory it would need"
expect_status 2 "--seconds 0" "$NORMLAB" bench norm --seconds 0
expect_err 'seconds' "names --seconds"
expect_status 2 "missing set" "$NORMLAB" bench norm --set "$TMP/none.exprs"
expect_err 'none\.exprs' "names the file"
printf 'a = tanh(x\n' >"$TMP/bad.exprs"
expect_status 2 "bad set" "$NORMLAB" bench norm --set "$TMP/bad.exprs"
expect_err 'bad\.exprs:1:' "names the file and line"
expect_status 2 "unknown benchmark" "$NORMLAB" bench nrom
expect_err "did you mean 'norm'" "suggests norm"

done_testing
