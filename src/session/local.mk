# session module: the workbench state as a library (appended to the variables in Makefile.am)
libnormlab_a_SOURCES += src/session/session.c src/session/session.h \
	src/session/job.c src/session/job.h
