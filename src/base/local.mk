libnormlab_a_SOURCES += \
	src/base/error.c src/base/error.h \
	src/base/mem.c src/base/mem.h \
	src/base/rng.c src/base/rng.h \
	src/base/timer.c src/base/timer.h \
	src/base/fileio.c src/base/fileio.h \
	src/base/interrupt.c src/base/interrupt.h \
	src/base/progress.h \
	src/base/threads.c src/base/threads.h \
	src/base/json.c src/base/json.h \
	src/base/text.c src/base/text.h \
	src/base/linalg.c src/base/linalg.h \
	src/base/vmath.h
