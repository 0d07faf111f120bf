/* The model table and the measured figures of 'cost' (cost_model.c),
 * called by cmd_cost.c. */
#ifndef NL_APP_COST_LOCAL_H
#define NL_APP_COST_LOCAL_H

#include "app/cmd.h"
#include "expr/expr.h"

/* 'cost --model M [--set S] [--batch B] [--per-block] [--measure]': the
 * per-block table (model/blockcost.h), with measured time per part. */
int nl_cost_model_command(nl_ctx *ctx, const nl_args *a, nl_error *err);

/* Measured seconds per call of each layer's expression slot, then of
 * LayerNorm and DyT (n + 2 figures into sec), over N rows of width d. */
void nl_cost_measure_set(nl_ctx *ctx, const nl_prog *progs, int n, int d, long N, double seconds,
                         double *sec);

#endif
