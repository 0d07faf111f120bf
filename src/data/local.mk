# data module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += src/data/dataset.c src/data/dataset.h

