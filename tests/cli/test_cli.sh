#!/bin/sh
# The command-line front: help, version, unknown commands and bad flags.
. "$NL_SRCDIR/tests/cli/lib.sh"

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

done_testing
