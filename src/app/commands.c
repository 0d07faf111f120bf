/* The one command table. Each command lives in its own cmd_<name>.c file
 * and is listed here once, in the order help shows them (the pipeline's
 * order: model, mappings, search, cost, plots, then tools). Commands that
 * a front-end owns ('lua') are added after them by src/cli at start-up
 * (nl_cmd_register). */
#include "app/cmd.h"

extern const nl_cmd nl_cmd_help;
extern const nl_cmd nl_cmd_info;
extern const nl_cmd nl_cmd_eval;
extern const nl_cmd nl_cmd_forward;
extern const nl_cmd nl_cmd_extract;
extern const nl_cmd nl_cmd_maps;
extern const nl_cmd nl_cmd_dyt;
extern const nl_cmd nl_cmd_evolve;
extern const nl_cmd nl_cmd_replace;
extern const nl_cmd nl_cmd_train;
extern const nl_cmd nl_cmd_calibrate;
extern const nl_cmd nl_cmd_adapt;
extern const nl_cmd nl_cmd_quantize;
extern const nl_cmd nl_cmd_cost;
extern const nl_cmd nl_cmd_profile;
extern const nl_cmd nl_cmd_prune;
extern const nl_cmd nl_cmd_exits;
extern const nl_cmd nl_cmd_reuse;
extern const nl_cmd nl_cmd_plot;
extern const nl_cmd nl_cmd_bench;
extern const nl_cmd nl_cmd_export;

const nl_cmd *nl_commands[NL_MAX_CMDS + 1] = {
    &nl_cmd_help,
    &nl_cmd_info,
    &nl_cmd_eval,
    &nl_cmd_forward,
    &nl_cmd_extract,
    &nl_cmd_maps,
    &nl_cmd_dyt,
    &nl_cmd_evolve,
    &nl_cmd_replace,
    &nl_cmd_calibrate,
    &nl_cmd_adapt,
    &nl_cmd_train,
    &nl_cmd_export,
    &nl_cmd_quantize,
    &nl_cmd_cost,
    &nl_cmd_profile,
    &nl_cmd_prune,
    &nl_cmd_exits,
    &nl_cmd_reuse,
    &nl_cmd_plot,
    &nl_cmd_bench,
    NULL,
};
