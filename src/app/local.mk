libnormlab_a_SOURCES += \
	src/app/cmd.c src/app/cmd.h \
	src/app/commands.c \
	src/app/main.h src/app/interactive.c \
	src/app/cmd_help.c \
	src/app/bench.h src/app/cmd_bench.c \
	src/app/model_path.c src/app/model_path.h \
	src/app/bench_forward.c \
	src/app/cmd_info.c src/app/cmd_eval.c src/app/cmd_forward.c \
	src/app/cmd_extract.c src/app/cmd_maps.c src/app/cmd_dyt.c \
	src/app/cmd_replace.c \
	src/app/bench_extract.c

# GP search command and benchmark.
libnormlab_a_SOURCES += src/app/cmd_evolve.c src/app/bench_gp.c \
	src/app/bench_fused.c src/app/bench_fused.h
