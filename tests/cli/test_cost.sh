#!/bin/sh
# `normlab cost`: the worked examples of Appendix F, the LayerNorm and DyT
# references (5d+2 FLOPs / 8d bytes, 24d FLOPs / 4d bytes per token), the
# JSON fields, the bundled expression set and bad input.
. "$NL_SRCDIR/tests/cli/lib.sh"

SET="$NL_SRCDIR/samples/exprs/paper_examples.exprs"

# jq-free JSON field access through python3 if present, else grep
jget() {  # jget FILE PATH (python expression on `d`)
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1" 2>/dev/null
}

expect_status 0 "cost of the four worked examples" "$NORMLAB" cost \
  '0.698*clip(2.31*x)' '2.5*tanh(clip(x)) + 0.135' 'tanh(x) + tanh(x + 0.27)' \
  '(x + 0.0719)*(-0.307*x*tanh(2.99*x) + 2.46)'
expect_out '^  expr1 +0\.698\*clip\(2\.31\*x\) +2 +1,536 +3,072$' "0.698*clip(2.31*x) costs 2 (1536 FLOPs, 3072 bytes per token at d=768)"
expect_out '^  expr2 .* 25 +19,200 +3,072$' "2.5*tanh(clip(x)) + 0.135 costs 25"
expect_out '^  expr3 .* 48 +36,864 +3,072$' "tanh(x) + tanh(x + 0.27) costs 48"
expect_out '^  expr4 .* 29 +22,272 +3,072$' "(x + 0.0719)*(-0.307*x*tanh(2.99*x) + 2.46) costs 29"
# 4 layers x 197 tokens: LayerNorm 4*197*(5*768+2) = 3,027,496 FLOPs, 4*197*8*768 bytes
expect_out '^  LayerNorm +3,027,496 +4,841,472 ' "LayerNorm totals for 4 layers"
expect_out '^  DyT +14,524,416 +2,420,736 ' "DyT totals for 4 layers"
# the set: (2+25+48+29)*768*197 FLOPs
expect_out '^  this set +15,734,784 +2,420,736$' "set totals"

expect_status 0 "cost of the bundled 25-layer set" "$NORMLAB" cost "$SET"
expect_out '^  blocks\.0\.norm1 ' "table names blocks.0.norm1"
expect_out '^  blocks\.11\.norm2 ' "table names blocks.11.norm2"
expect_out '^  norm ' "table names the final norm"
expect_out 'totals over 25 layers x 197 tokens' "totals section names layers and tokens"
expect_out '^  LayerNorm +18,921,850 +30,259,200 ' "LayerNorm: 25*197*(5*768+2) FLOPs, 30,259,200 bytes"
expect_out '^  DyT +[0-9,]+ +15,129,600 ' "DyT: 15,129,600 bytes"
expect_out '0\.500x' "ratio of bytes against LayerNorm is 0.5"

expect_status 0 "cost --json" "$NORMLAB" cost --json "$SET"
cp "$TMP/out" "$TMP/cost.json"
if command -v python3 >/dev/null 2>&1; then
  ok "$([ "$(jget "$TMP/cost.json" 'd["dim"], d["tokens"], len(d["layers"])')" = "768 197 25" ] && echo 0 || echo 1)" "JSON dim, tokens, 25 layers"
  ok "$([ "$(jget "$TMP/cost.json" 'd["layernorm"]["total_flops"], d["layernorm"]["total_read_bytes"], d["layernorm"]["flops_per_token"]')" = "$((25*197*(5*768+2))) 30259200 3842" ] && echo 0 || echo 1)" "JSON LayerNorm totals"
  ok "$([ "$(jget "$TMP/cost.json" 'd["dyt"]["total_flops"], d["dyt"]["total_read_bytes"], d["dyt"]["flops_per_token"]')" = "$((25*197*24*768)) 15129600 18432" ] && echo 0 || echo 1)" "JSON DyT totals"
  ok "$([ "$(jget "$TMP/cost.json" 'd["layers"][0]["name"], d["layers"][0]["flops_per_element"], d["layers"][0]["flops_per_token"], d["layers"][0]["read_bytes_per_token"]')" = "blocks.0.norm1 2 1536 3072" ] && echo 0 || echo 1)" "JSON first layer fields"
  ok "$([ "$(jget "$TMP/cost.json" 'sum(l["flops_per_token"] for l in d["layers"])*197 == d["total"]["flops"], d["total"]["read_bytes"]')" = "True 15129600" ] && echo 0 || echo 1)" "JSON totals are the sum over layers"
else
  expect_out '"total_read_bytes": 30259200' "JSON LayerNorm bytes"
  expect_out '"total_read_bytes": 15129600' "JSON DyT bytes"
fi

expect_status 0 "--dim and --tokens" "$NORMLAB" cost --json --dim 384 --tokens 50 'x'
expect_out '"total_flops": '"$((50*(5*384+2)))" "LayerNorm FLOPs follow --dim/--tokens"
expect_out '"total_read_bytes": '"$((50*8*384))" "LayerNorm bytes follow --dim/--tokens"

# bad input: exit 2, the position named, the caret shown
expect_status 2 "unmatched parenthesis exits 2" "$NORMLAB" cost 'tanh(x))'
expect_err 'expr1:1:8: unmatched' "error names expr1, line 1, column 8"
expect_err '^           \^$' "caret under the fault"
expect_status 2 "unknown function exits 2" "$NORMLAB" cost 'x + foo(x)'
expect_err "expr1:1:5: unknown function 'foo'" "unknown function named at its column"
expect_status 2 "wrong arity exits 2" "$NORMLAB" cost 'clip(x, 1)'
expect_err 'clip takes 1 or 3 arguments, got 2' "wrong arity explained"
expect_status 2 "nan literal exits 2" "$NORMLAB" cost 'x*nan'
expect_err 'expr1:1:3: .*finite' "nan literal rejected with its position"
expect_status 2 "huge number exits 2" "$NORMLAB" cost '1e999*x'
expect_err 'expr1:1:1: number out of range' "huge number rejected"
expect_status 2 "trailing garbage exits 2" "$NORMLAB" cost 'x + 1 2'
expect_err 'expr1:1:7: unexpected' "trailing garbage named"
expect_status 2 "empty expression exits 2" "$NORMLAB" cost ''
expect_err 'empty expression' "empty expression explained"
deep=$(awk 'BEGIN { for (i = 0; i < 100000; i++) printf "("; printf "x" }')
expect_status 2 "100000 nested parentheses exit 2" "$NORMLAB" cost "$deep"
expect_err 'expr1:1:[0-9]+: expression nested too deeply' "deep nesting explained with a position"

printf 'a = x\n\nb = tanh(x  # ok\n' >"$TMP/bad.exprs"
expect_status 2 "bad file exits 2" "$NORMLAB" cost "$TMP/bad.exprs"
expect_err 'bad\.exprs:3:[0-9]+: expected' "file error names the file and line"
printf 'a = x\na = x + 1\n' >"$TMP/dup.exprs"
expect_status 2 "duplicate layer exits 2" "$NORMLAB" cost "$TMP/dup.exprs"
expect_err "dup\.exprs:2:1: duplicate layer name 'a' \(first defined on line 1\)" "duplicate named with both lines"
printf 'a x + 1\n' >"$TMP/noeq.exprs"
expect_status 2 "line without '=' exits 2" "$NORMLAB" cost "$TMP/noeq.exprs"
expect_err "noeq\.exprs:1:1: expected 'NAME = EXPR'" "missing '=' explained"
printf '# only comments\n\n   # and blanks\n' >"$TMP/empty.exprs"
expect_status 2 "a set without expressions exits 2" "$NORMLAB" cost "$TMP/empty.exprs"
expect_err 'empty\.exprs: no expressions' "empty set explained"
printf 'a = tanh(x)  # t\r\n\r\nb = x*x # m\r\n' >"$TMP/crlf.exprs"
expect_status 0 "Windows line ends are accepted" "$NORMLAB" cost "$TMP/crlf.exprs"
expect_out '^  b +x\*x +1 ' "second entry read"
# constant subtrees and cancellations are folded before counting: the
# examples of the defect report, FLOPs per element by hand (tanh 23,
# sigmoid 22, + - * 1, clip 0): as written 23, 0, 2, 2, 2; once folded
# sigmoid(-17.3082) = 1/(1 + e^17.3082) = 3.04e-08 is a constant (0),
# clip(2.51) = 2.51 (0), x*(0.345*-0.552) = -0.19044*x (1), x + (-x + x) = x
# (0), 0.3*(x - x) = 0 (0); exp(x) - exp(x) stays (inf - inf is NaN at
# x > 88.7): 2*19 + 1 = 39
cat >"$TMP/fold.exprs" <<'EOF2'
a = sigmoid(-3.17*5.46)
b = clip(2.51)
c = x*(0.345*-0.552)
d = x + (-x + x)
e = 0.3*(x - x)
f = exp(x) - exp(x)
EOF2
expect_status 0 "cost of foldable expressions" "$NORMLAB" cost "$TMP/fold.exprs"
expect_out '^  a +3\.04e-08 +0 +0 +3,072$' "sigmoid(-3.17*5.46) is the constant 3.04e-08, 0 FLOPs"
expect_out '^  b +2\.51 +0 +0 +3,072$' "clip(2.51) is 2.51, 0 FLOPs"
expect_out '^  c +-0\.19\*x +1 +768 +3,072$' "x*(0.345*-0.552) is -0.19*x, 1 FLOP"
expect_out '^  d +x +0 +0 +3,072$' "x + (-x + x) is x, 0 FLOPs"
expect_out '^  e +0 +0 +0 +3,072$' "0.3*(x - x) is 0, 0 FLOPs"
expect_out '^  f +exp\(x\) - exp\(x\) +39 +29,952 +3,072$' "exp(x) - exp(x) stays: 39 FLOPs"
# the set: (1 + 39)*768*197 FLOPs
expect_out '^  this set +6,051,840 +3,631,104$' "set totals count the folded forms"
expect_status 0 "cost --json of foldable expressions" "$NORMLAB" cost --json "$TMP/fold.exprs"
if command -v python3 >/dev/null 2>&1; then
  ok "$([ "$(jget "$TMP/out" '[l["flops_per_element"] for l in d["layers"]]')" = "[0, 0, 1, 0, 0, 39]" ] && echo 0 || echo 1)" "JSON flops_per_element of the folded forms"
  ok "$([ "$(jget "$TMP/out" 'd["layers"][3]["expr"], d["layers"][3]["simplified"]')" = "x + (-x + x) x" ] && echo 0 || echo 1)" "JSON keeps the written expression beside the simplified one"
fi
# constants are floats: one that would underflow to 0 is refused with its place
printf 'a = x\nb = 1e-50*x\n' >"$TMP/tiny.exprs"
expect_status 2 "a constant below the smallest float exits 2" "$NORMLAB" cost "$TMP/tiny.exprs"
expect_err 'tiny\.exprs:2:5: number 1e-50 is too small' "the underflowing constant named with file, line and column"
expect_status 0 "a subnormal constant is kept" "$NORMLAB" cost --json '1e-40*x'
expect_out '"simplified": "1e-40\*x"' "1e-40 kept exactly"

expect_status 2 "missing file exits 2" "$NORMLAB" cost "$TMP/none.exprs"
expect_status 2 "bad --dim exits 2" "$NORMLAB" cost --dim 0 x
expect_err -- '--dim must be between' "bad --dim explained"

done_testing
