#!/bin/sh
# Lua scripting: the Lua test scripts (tests/lua/test_*.lua, TAP) through
# 'normlab lua', exit statuses, 'lua { }' blocks at the prompt, the
# samples scaled down, and the manual page normlab-lua(3).
. "$NL_SRCDIR/tests/cli/lib.sh"
LT="$NL_SRCDIR/tests/lua"

# lua_tap FILE: run a Lua TAP script and replay its results here
lua_tap() {
  f=$1
  NL_SRCDIR="$NL_SRCDIR" NL_FIXTURES="$NL_FIXTURES" "$NORMLAB" lua "$f" >"$TMP/tap" 2>"$TMP/taperr"
  st=$?
  base=$(basename "$f" .lua)
  nres=0
  while IFS= read -r line; do
    case "$line" in
      "ok "*"# SKIP"*) _n=$((_n + 1)); nres=$((nres + 1)); echo "ok $_n - $base:${line#ok * }" ;;
      "ok "*) nres=$((nres + 1)); ok 0 "$base: ${line#ok * - }" ;;
      "not ok "*) nres=$((nres + 1)); ok 1 "$base: ${line#not ok * - }" ;;
      "#"*) echo "$line" ;;
    esac
  done <"$TMP/tap"
  [ "$st" -eq 0 ] && [ "$nres" -gt 0 ]
  ok $? "$base ran to its end (exit $st)"
  [ "$st" -eq 0 ] || sed 's/^/# stderr: /' "$TMP/taperr" | head -20
}

if have_fixtures; then
  for t in "$LT"/test_*.lua; do lua_tap "$t"; done
else
  echo "ok 1 # SKIP timm fixtures not found in $NL_FIXTURES"
  _n=$((_n + 1))
fi

# scripts, arguments, exit statuses
printf 'print("args", select("#", ...), arg[0] ~= nil, arg[1], arg[2])\n' >"$TMP/args.lua"
expect_status 0 "normlab lua FILE ARGS runs the script" "$NORMLAB" lua "$TMP/args.lua" one "two words"
expect_out "^args	2	true	one	two words$" "arguments arrive as ... and in arg"
printf 'local function f() error("deep failure") end\nf()\n' >"$TMP/err.lua"
expect_status 1 "a runtime error exits 1" "$NORMLAB" lua "$TMP/err.lua"
expect_err "err.lua:1: deep failure" "the error names file and line"
expect_err "stack traceback:" "a traceback follows"
expect_err "in local 'f'" "the traceback names the function"
printf 'x = = 1\n' >"$TMP/syn.lua"
expect_status 2 "a syntax error exits 2" "$NORMLAB" lua "$TMP/syn.lua"
expect_err "syn.lua:1:" "the syntax error names file and line"
expect_status 2 "a missing script exits 2" "$NORMLAB" lua "$TMP/none.lua"
expect_err "none.lua: cannot open" "the missing script is named"
expect_status 2 "lua without a file exits 2" "$NORMLAB" lua
expect_status 0 "lua --code runs a chunk" "$NORMLAB" lua --code 'print(normlab.expr("x*1 + 0"):simplify())'
expect_out "^x$" "the chunk printed its result"
printf 'while true do end\n' >"$TMP/loop.lua"
expect_status 130 "Ctrl-C stops a running script (exit 130)" timeout --preserve-status -s INT 2 "$NORMLAB" lua "$TMP/loop.lua"
expect_err "interrupted" "the interruption is reported"
if have_fixtures; then
  # Ctrl-C during normlab.evolve raises (exit 130), as model:eval does; the
  # script does not run on with the search's partial result
  cat >"$TMP/evolve_int.lua" <<EOS
local maps = normlab.import_maps("$NL_FIXTURES/vit_small_p7_fmnist_ref.safetensors", {x_prefix = "map_x.", y_prefix = "map_y."})
print("searching")
io.stdout:flush()
local r = normlab.evolve(maps, {layer = "blocks.0.norm1", pop = 40, gens = 1000000})
print("ran on", r.stopped)
EOS
  expect_status 130 "Ctrl-C during normlab.evolve ends the script (exit 130)" \
    timeout --preserve-status -s INT 3 "$NORMLAB" lua "$TMP/evolve_int.lua"
  expect_err "normlab.evolve: interrupted" "the interruption is raised from normlab.evolve"
  expect_out "^searching" "the search had started"
  if grep -q "ran on" "$TMP/out"; then ok 1 "the script does not run on"; else ok 0 "the script does not run on"; fi
  sed 's|gens = 1000000}|gens = 1000000, output = "'"$TMP"'/evi"}|' "$TMP/evolve_int.lua" >"$TMP/evolve_int2.lua"
  expect_status 130 "the same with output=DIR (a campaign)" \
    timeout --preserve-status -s INT 3 "$NORMLAB" lua "$TMP/evolve_int2.lua"
  if grep -q "ran on" "$TMP/out"; then ok 1 "that script does not run on"; else ok 0 "that script does not run on"; fi
fi
expect_status 0 "require finds the installed-or-tree library" "$NORMLAB" lua --code 'assert(require("normlab.lib")); print(normlab.path)'
expect_out "$NL_SRCDIR/lua/\?\.lua" "package.path holds the source tree's lua/"

# the prompt: blocks over several lines, a shared state, errors that do not end it
cat >"$TMP/repl.txt" <<'EOS'
lua {
  counter = 41 -- a brace in a comment: }
  local s = "}"
  print("block", counter + 1, s)
}
lua { error("a failing block") }
lua { print("still here", counter) ; normlab.cmd("load model " .. normlab.default_model()) }
status
lua { local t = {1, {2}} print(#t) }
EOS
expect_status 1 "a failing block sets the status (1) but -k goes on" "$NORMLAB" -k -f "$TMP/repl.txt"
expect_out "^block	42	}$" "a block spans lines; braces in strings and comments do not count"
expect_out "^still here	41$" "later blocks share the state"
expect_out "^model .*vit_small_p7_fmnist.safetensors  \(25 norm layers\)" "normlab.cmd at the prompt reaches session commands"
expect_out "^2$" "tables in a block"
expect_err "a failing block" "the block's error is shown"
expect_err "lua block at .*repl.txt:6" "the block's error names the script line"
expect_err "stack traceback" "with a traceback"
printf 'lua { print(1) }\nlua { error("x") }\nlua { print(2) }\n' >"$TMP/stop.txt"
expect_status 1 "without -k a script stops at a failing block" "$NORMLAB" -f "$TMP/stop.txt"
if grep -q '^2$' "$TMP/out"; then ok 1 "nothing after the failing block ran"; else ok 0 "nothing after the failing block ran"; fi
expect_status 0 "-c runs a block" "$NORMLAB" -c 'lua { print(6 * 7) }'
expect_out "^42$" "the block's output"
printf 'x = (x or 0) + 1; print("x", x)\n' >"$TMP/inc.lua"
expect_status 0 "lua FILE at the prompt shares the state" "$NORMLAB" -c "lua $TMP/inc.lua; lua $TMP/inc.lua"
expect_out "^x	2$" "the second run sees the first one's globals"
expect_status 2 "an unclosed block is an error" "$NORMLAB" -c 'lua { print(1)'

# the samples, scaled down
if have_fixtures && [ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || [ -n "${NORMLAB_FMNIST_DIR:-${NL_FMNIST_DIR:-}}" ]; then
  expect_status 0 "samples/quickstart.lua --quick runs" "$NORMLAB" lua "$NL_SRCDIR/samples/quickstart.lua" --quick --output "$TMP/qs"
  expect_out "mean R²" "quickstart prints the R² comparison"
  [ -s "$TMP/qs/blocks.0.norm1.png" ]; ok $? "quickstart writes PNG plots"
  expect_out "^top-1: LayerNorm .*, replaced .*, re-aligned " "quickstart re-aligns the replaced model and reports top-1"
  [ -s "$TMP/qs/realign/last.safetensors" ] && [ -s "$TMP/qs/replaced.safetensors" ]
  ok $? "quickstart writes the replaced and the re-aligned checkpoints"
  expect_status 0 "samples/sequential.lua --quick runs" "$NORMLAB" lua "$NL_SRCDIR/samples/sequential.lua" --quick --output "$TMP/seq"
  expect_out "^layers fitted in order \(sequential\) " "sequential.lua compares both ways of fitting"
  "$NORMLAB" info --model "$TMP/seq/sequential.safetensors" >"$TMP/seqinfo" 2>&1
  grep -q "0 LayerNorm, 0 DyT, 25 expression" "$TMP/seqinfo"; ok $? "sequential.lua writes the model with every norm replaced"
  expect_status 0 "samples/paper.lua --quick runs" "$NORMLAB" lua "$NL_SRCDIR/samples/paper.lua" --quick --output "$TMP/paper"
  expect_out "Table 1" "paper.lua prints Table 1"
  expect_out "Table 2" "paper.lua prints Table 2"
  expect_out "LayerNorm" "paper.lua prints the cost comparison"
  expect_status 0 "samples/edgeflex.lua --quick runs" "$NORMLAB" lua "$NL_SRCDIR/samples/edgeflex.lua" --quick \
    --images 40 --seconds 0.05 --ratio 0.5 --profile-images 16 --calib-images 4 --output "$TMP/ef"
  cp "$TMP/out" "$TMP/ef.txt"
  # the budget table against hand figures of vit_small_p7 (T 17, D 64, Hm 256
  # -> 128 kept, 12 blocks) and the step rows
  res=$(python3 - "$TMP/ef.txt" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
num = lambda s: int(s.replace(",", ""))
i = next(k for k, l in enumerate(lines) if l.startswith("part "))
rows = {}
for l in lines[i + 1:i + 14]:
    f = l.split()
    assert len(f) == 7, l
    rows[f[0]] = [num(x) for x in f[1:]]
bad = []
parts = ["patch_embed", "norm1", "qkv", "attention", "proj", "norm2", "fc1", "gelu", "fc2",
         "residual", "norm", "head"]
if list(rows) != parts + ["total"]: bad.append("rows %s" % list(rows))
for c in range(6):
    if sum(rows[p][c] for p in parts) != rows["total"][c]: bad.append("column %d does not add up" % c)
T, D, Hm, L = 17, 64, 256, 12
if rows["fc1"][:2] != [L * 2 * T * D * Hm, L * 2 * T * D * Hm // 2]: bad.append("fc1 FLOPs %s" % rows["fc1"][:2])
if rows["fc2"][2:4] != [L * (Hm * D + D), L * (Hm // 2 * D + D)]: bad.append("fc2 params %s" % rows["fc2"][2:4])
# W8A8 qkv: 3D^2 int8 + 3D scales (4) and zero points (1) + F32 bias, + 4 T D activations
if rows["qkv"][4:] != [L * (4 * 3 * D * D + 4 * 3 * D + 4 * T * D), L * (3 * D * D + 5 * 3 * D + 4 * 3 * D + 4 * T * D)]:
    bad.append("qkv bytes %s" % rows["qkv"][4:])
j = next(k for k, l in enumerate(lines) if l.startswith("step "))
steps = [l for l in lines[j + 1:] if l and not l.startswith("last against")]
names = [re.split(r"\s{2,}", s)[0] for s in steps]
if names != ["fp32", "prune 0.5", "+ W8A8"]: bad.append("steps %s" % names)
for s in steps:
    m = re.match(r"^(.*?)\s+([0-9.]+)%\s+([0-9.]+)\s+([0-9.]+)\s+([0-9,]+)\s+([0-9,]+|-)$", s)
    if not m or not 0 <= float(m.group(2)) <= 100 or float(m.group(3)) <= 0: bad.append("step row %r" % s)
b = [num(re.split(r"\s+", s)[-2]) for s in steps]
if not b[0] > b[1] > b[2] or b[0] != 2419752: bad.append("model bytes %s" % b)
print("\n".join(bad) if bad else "ok")
PY
)
  [ "$res" = ok ] || echo "$res" | sed 's/^/# /'
  ok "$([ "$res" = ok ] && echo 0 || echo 1)" "edgeflex.lua: the budget table adds up and matches hand figures; one row per step"
  [ -s "$TMP/ef/quantized.safetensors" ]; ok $? "edgeflex.lua writes the quantized model"
  # samples/adaptive.lua: early exit, attention reuse, norms and W8 in one table
  expect_status 0 "samples/adaptive.lua --quick runs" "$NORMLAB" lua "$NL_SRCDIR/samples/adaptive.lua" \
    --quick --images 60 --output "$TMP/ad"
  cp "$TMP/out" "$TMP/ad.txt"
  "$NORMLAB" eval --images 60 --json >"$TMP/ad_eval.json" 2>/dev/null
  res=$(python3 - "$TMP/ad.txt" "$TMP/ad_eval.json" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
ev = json.load(open(sys.argv[2]))
i = next(k for k, l in enumerate(lines) if l.startswith("variant "))
rows = [l for l in lines[i + 1:] if l.strip()]
bad = []
if len(rows) != 8: bad.append("%d rows" % len(rows))
f = {r.split()[0] + ("+" if "exit" in r else "") + str(k): r.split() for k, r in enumerate(rows)}
fp32 = rows[0].split()
# top-1 of the model itself: normlab eval's (printed to 0.01 points)
if abs(float(fp32[1].rstrip("%")) - 100 * ev["top1"]) > 0.005 + 1e-9: bad.append("fp32 top-1 %s vs eval %s" % (fp32[1], ev["top1"]))
# FLOPs by hand (T 17, D 64): full 21.043456 M; the default plan has six
# linear TBs, each saving 2TD3D + 4T^2D + 2TDD - 2TDD = 491776
if fp32[3] != "21.044": bad.append("fp32 MFLOPs %s" % fp32[3])
reuse = rows[2].split()
if reuse[-3] != "%.3f" % (21.043456 - 6 * 0.491776): bad.append("reuse MFLOPs %s" % reuse[-3])
# bytes: 604938 FP32 parameters; a TB block leaves norm1 (2D), qkv (3D^2 + 3D)
# and proj (D^2 + D) unread and reads its TB (D^2 + D)
if fp32[4] != "2419752": bad.append("fp32 bytes %s" % fp32[4])
D = 64
if reuse[-2] != str(2419752 - 6 * 4 * (2 * D + 3 * D * D + 3 * D + D * D + D - D * D - D)): bad.append("reuse bytes %s" % reuse[-2])
print("ok" if not bad else "; ".join(bad))
PY
)
  [ "$res" = ok ] || echo "# $res"
  ok "$([ "$res" = ok ] && echo 0 || echo 1)" "adaptive.lua: eight rows; top-1, FLOPs and bytes of the model and its plan match eval and hand figures"
  # its norms are adapt's calibrated model (calibration tunes numbers that
  # chosen.exprs does not carry): W8 of that model, made and evaluated here,
  # gives the "norms + W8" row's top-1
  "$NORMLAB" quantize --model "$TMP/ad/adapt/adapted.safetensors" --weights 8 \
    --output "$TMP/ad_w8.safetensors" >/dev/null 2>&1
  "$NORMLAB" eval --model "$TMP/ad_w8.safetensors" --images 60 --json >"$TMP/ad_w8.json" 2>/dev/null
  res=$(python3 - "$TMP/ad.txt" "$TMP/ad_w8.json" "$TMP/ad/adapt/report.json" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
ev, rep = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
row = next(l for l in lines if l.startswith("norms + W8 ") and "exit" not in l and "reuse" not in l)
top1 = float(row.split()[3].rstrip("%"))
bad = []
if rep.get("top1_calibrated") is None: bad.append("adapt ran no calibration")
if abs(top1 - 100 * ev["top1"]) > 0.005 + 1e-9: bad.append("norms + W8 %.2f vs W8 of the calibrated model %.4f" % (top1, ev["top1"]))
print("ok" if not bad else "; ".join(bad))
PY
)
  [ "$res" = ok ] || echo "# $res"
  ok "$([ "$res" = ok ] && echo 0 || echo 1)" "adaptive.lua: its norms + W8 row is W8 of adapt's calibrated model"
else
  echo "ok $((_n + 1)) # SKIP Fashion-MNIST not installed"
  _n=$((_n + 1))
fi

# the manual page
MAN3="$NL_SRCDIR/man/normlab-lua.3"
if command -v mandoc >/dev/null 2>&1; then
  mandoc -Tlint -Wwarning "$MAN3" 2>&1 | grep -v 'mandoc\.db' >"$TMP/lint"
  if [ -s "$TMP/lint" ]; then ok 1 "normlab-lua.3: mandoc -Tlint is clean"; sed 's/^/# /' "$TMP/lint"; else
    ok 0 "normlab-lua.3: mandoc -Tlint is clean"; fi
fi
# every function and method of the module is documented
"$NORMLAB" lua --code '
for k, v in pairs(normlab) do if type(v) == "function" then print("normlab." .. k) end end
local function methods(h, kind)
  local mt = getmetatable(h)
  local idx = mt.methods or mt.__index
  for k in pairs(idx) do print(kind .. ":" .. k) end
end
methods(normlab.expr("x"), "expr")
methods(normlab.exprset(), "exprset")
methods(normlab.load_model(), "model")
methods(normlab.import_maps(os.getenv("NL_FIXTURES") .. "/vit_small_p7_fmnist_ref.safetensors", {x_prefix = "map_x.", y_prefix = "map_y."}), "maps")
' >"$TMP/api" 2>"$TMP/apierr"
[ -s "$TMP/api" ]; ok $? "the module lists its functions"
missing=""
for f in $(sort "$TMP/api"); do
  grep -q -- "$f" "$MAN3" || missing="$missing $f"
done
if [ -z "$missing" ]; then ok 0 "every function and method is in normlab-lua.3"; else
  ok 1 "every function and method is in normlab-lua.3"; echo "# missing:$missing"; fi

done_testing
