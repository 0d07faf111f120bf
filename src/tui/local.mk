# tui module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += src/tui/dashboard.c src/tui/dashboard.h
