libnormlab_a_SOURCES += src/app/data_load.c src/app/data_load.h src/app/bench_data.c
libnormlab_a_SOURCES += \
	src/app/cmd.c src/app/cmd.h \
	src/app/workbench.c src/app/workbench.h src/app/wb_local.h \
	src/app/commands.c \
	src/app/cmd_help.c \
	src/app/bench.h src/app/cmd_bench.c \
	src/app/model_path.c src/app/model_path.h \
	src/app/bench_forward.c src/app/bench_peak.c \
	src/app/cmd_info.c src/app/cmd_eval.c src/app/cmd_forward.c \
	src/app/cmd_extract.c src/app/cmd_maps.c src/app/cmd_dyt.c \
	src/app/cmd_replace.c \
	src/app/cmd_calibrate.c \
	src/app/cmd_adapt.c src/app/adapt_cmd.h \
	src/app/cmd_quantize.c \
	src/app/cmd_exits.c \
	src/app/cmd_reuse.c \
	src/app/bench_extract.c

# GP search command and benchmark.
libnormlab_a_SOURCES += src/app/cmd_evolve.c src/app/bench_gp.c \
	src/app/bench_fused.c src/app/bench_fused.h \
	src/app/bench_norm.c src/app/bench_norm.h

# Cost, training, plots.
libnormlab_a_SOURCES += src/app/cmd_cost.c src/app/bench_expr.c \
	src/app/cost_model.c src/app/cost_local.h \
	src/app/bench_trainblock.c src/app/cmd_train.c src/app/bench_train.c \
	src/app/cmd_plot.c

# Command-line words, and the session commands of the prompt.
libnormlab_a_SOURCES += src/app/split.c src/app/split.h \
	src/app/session_cmds.c src/app/expr_cmds.c src/app/fit_cmds.c \
	src/app/pipeline.c src/app/jobs.c

# Export to PyTorch, C and ONNX.
libnormlab_a_SOURCES += src/app/cmd_export.c
# EdgeFlex: activation profile and MLP channel pruning.
libnormlab_a_SOURCES += src/app/cmd_profile.c src/app/profile_cmd.h src/app/cmd_prune.c
