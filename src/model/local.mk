# model module: sources and tests (appended to the variables in Makefile.am)
