#!/bin/sh
# The layers of the code: scripts/check-layers passes on src/, and catches
# what it is there to catch (an upward include, an include between two
# front-ends, an include cycle between headers, a folder without a rank)
# when they are planted in a copy of src/.
. "$NL_SRCDIR/tests/cli/lib.sh"
check="$NL_SRCDIR/scripts/check-layers"

expect_status 0 "src/ has no upward include, no same-rank include and no cycle" \
  sh "$check" "$NL_SRCDIR/src"
[ ! -s "$TMP/out" ]; ok $? "a clean tree prints nothing"

# plant(): a fresh copy of src/ in $TMP/src
plant() { rm -rf "$TMP/src" && cp -R "$NL_SRCDIR/src" "$TMP/src"; }

plant
printf '\n#include "app/cmd.h"\n' >>"$TMP/src/model/maps.c"
expect_status 1 "an upward include (model -> app) fails" sh "$check" "$TMP/src"
expect_out 'src/model/maps\.c:[0-9]+: #include "app/cmd\.h": upward include \(model, rank 3, includes app, rank 6\)' \
  "the upward include is named with file, line, include and rule"

plant
printf '\n#include "lua/nlua.h"\n' >>"$TMP/src/repl/complete.c"
expect_status 1 "an include between two front-ends (repl -> lua) fails" sh "$check" "$TMP/src"
expect_out 'src/repl/complete\.c:[0-9]+: #include "lua/nlua\.h": include between folders of the same rank' \
  "the same-rank include is named"

plant
printf '#ifndef A\n#define A\n#include "expr/cyc_b.h"\n#endif\n' >"$TMP/src/expr/cyc_a.h"
printf '#ifndef B\n#define B\n#include "expr/cyc_c.h"\n#endif\n' >"$TMP/src/expr/cyc_b.h"
printf '#ifndef C\n#define C\n#include "expr/cyc_a.h"\n#endif\n' >"$TMP/src/expr/cyc_c.h"
expect_status 1 "an include cycle between headers of one folder fails" sh "$check" "$TMP/src"
expect_out 'include cycle: .*expr/cyc_a\.h:3 -> .*expr/cyc_b\.h:3 -> .*expr/cyc_c\.h:3 -> .*expr/cyc_a\.h' \
  "the cycle is printed as its chain of file:line"
n=$(grep -c 'include cycle' "$TMP/out")
[ "$n" -eq 1 ]; ok $? "the cycle is reported once (got $n)"

plant
mkdir "$TMP/src/extra"
printf '#include "base/error.h"\n' >"$TMP/src/extra/x.c"
expect_status 1 "a folder without a rank fails" sh "$check" "$TMP/src"
expect_out "folder 'extra' has no rank" "the folder is named"

expect_status 2 "a missing directory is bad use" sh "$check" "$TMP/nothing"

done_testing
