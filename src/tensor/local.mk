# tensor module: sources and tests (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += src/tensor/kernels.c src/tensor/kernels.h

