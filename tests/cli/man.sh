#!/bin/sh
# The manual page: mandoc finds nothing to complain about, and every command
# and option that normlab's help lists is documented in it.
. "$NL_SRCDIR/tests/cli/lib.sh"
MAN="$NL_SRCDIR/man/normlab.1"

[ -f "$MAN" ]; ok $? "man/normlab.1 exists"
if command -v mandoc >/dev/null 2>&1; then
  # messages about the system's mandoc.db depend on the machine, not the page
  mandoc -Tlint -Wwarning "$MAN" 2>&1 | grep -v 'mandoc\.db' >"$TMP/lint"
  if [ -s "$TMP/lint" ]; then ok 1 "mandoc -Tlint is clean"; sed 's/^/# /' "$TMP/lint"; else
    ok 0 "mandoc -Tlint is clean"; fi
  mandoc -Tascii "$MAN" 2>/dev/null | sed "s/.\x08//g" >"$TMP/page"
  grep -q 'EXIT STATUS' "$TMP/page"; ok $? "the page renders"
  # the Lua interface's page
  mandoc -Tlint -Wwarning "$NL_SRCDIR/man/normlab-lua.3" 2>&1 | grep -v 'mandoc\.db' >"$TMP/lint3"
  if [ -s "$TMP/lint3" ]; then ok 1 "normlab-lua.3: mandoc -Tlint is clean"; sed 's/^/# /' "$TMP/lint3"; else
    ok 0 "normlab-lua.3: mandoc -Tlint is clean"; fi
else
  echo "ok 2 # SKIP mandoc not installed"
  _n=$((_n + 1))
fi

# command names from the shell's help and from the prompt's help
"$NORMLAB" help | awk '/^Commands:/ {on=1; next} on && /^  [a-z]/ {print $1}' >"$TMP/shell"
"$NORMLAB" -c help | awk '/^  [a-z]/ {print $1}' >"$TMP/all"
[ -s "$TMP/shell" ]; ok $? "normlab help lists commands"
missing=""
for c in $(sort -u "$TMP/shell" "$TMP/all"); do
  grep -Eq "^\.It Cm $c( |$)" "$MAN" || missing="$missing $c"
  # every option the command declares
  "$NORMLAB" -c "help $c" | sed -n 's/^  --\([a-z0-9-]*\).*/\1/p' >"$TMP/opts"
  for o in $(cat "$TMP/opts"); do
    grep -Eq "Fl -$o( |$)" "$MAN" || missing="$missing $c:--$o"
  done
done
if [ -z "$missing" ]; then ok 0 "every command and option is in the man page"; else
  ok 1 "every command and option is in the man page"; echo "# missing:$missing"; fi
# the shell's commands are all reachable at the prompt
missing=""
for c in $(cat "$TMP/shell"); do
  grep -qx "$c" "$TMP/all" || missing="$missing $c"
done
[ -z "$missing" ]; ok $? "the prompt's help lists the shell's commands"

# the environment: every variable the program reads is in ENVIRONMENT, and
# normlab's own (all but the system's and Lua's) start with NORMLAB_; an
# older name is read only as the fallback of a NORMLAB_ one
sed -n '/^\.Sh ENVIRONMENT/,/^\.Sh [A-DF-Z]/p' "$MAN" >"$TMP/envsec"
grep -rhoE 'getenv\("[A-Z_0-9]+"' "$NL_SRCDIR/src" | sed 's/.*("//; s/"//' | sort -u >"$TMP/vars"
grep -rhoE 'nl_getenv\("[A-Z_0-9]+", "[A-Z_0-9]+"' "$NL_SRCDIR/src" | sed 's/.*, "//; s/"//' | sort -u >"$TMP/old"
[ -s "$TMP/vars" ]; ok $? "the sources read environment variables"
missing="" prefix=""
for v in $(cat "$TMP/vars" "$TMP/old"); do
  grep -Eq "Ev $v( |$)" "$TMP/envsec" || missing="$missing $v"
done
for v in $(cat "$TMP/vars"); do
  case "$v" in
    NORMLAB_*|HOME|TMPDIR|TERM|COLUMNS|DISPLAY|PATH|GNUTERM|LANG|LC_ALL) ;;
    *) prefix="$prefix $v" ;;
  esac
done
[ -z "$missing" ]; ok $? "every environment variable read is in normlab(1) ENVIRONMENT"
[ -z "$missing" ] || echo "# missing:$missing"
[ -z "$prefix" ]; ok $? "normlab's own environment variables start with NORMLAB_"
[ -z "$prefix" ] || echo "# not NORMLAB_:$prefix"
# the table of one name per concept and the older names
grep -q '^\.Sh OPTION NAMES' "$MAN"; ok $? "the page has the naming table"

done_testing
