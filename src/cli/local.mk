# cli module: the program's entry (main.c is the program's own source, see Makefile.am)
libnormlab_a_SOURCES += src/cli/main.h src/cli/interactive.c src/cli/setup.c
