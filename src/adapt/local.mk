# adapt module: the whole adaptation in one call (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += src/adapt/adapt.c src/adapt/adapt.h

# Command adapt, evolve --model --sequential.
NL_CLI_TESTS += tests/cli/test_adapt.sh
