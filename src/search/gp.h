/* Genetic programming search for a norm layer's scalar function f(x).
 *
 * Candidates are expression trees over x and constants (nl_prog, postfix)
 * with the operators +, *, neg, tanh, sigmoid and clip(+-5). NSGA-II keeps a
 * population on two objectives, both minimised:
 *   fitness    F = MSE(y, f(x)) + gamma * 0.5 * (f(-delta)^2 + f(delta)^2),
 *              delta = 2 * max|x_train| (the pull-to-zero penalty on tails);
 *   complexity the node count, or the FLOP cost (clip charged 1).
 * Each generation the constants of the best `const_top` offspring get
 * `const_steps` Adam steps on F (written back when they lower F). An
 * archive keeps every non-dominated (F, complexity) pair seen; it is the
 * result ("front"), each member scored on the 10% validation split.
 *
 * Determinism: all random choices of one search come from one stream
 * (seed, layer name, seed index); the parallel parts (evaluation, constant
 * refinement) are pure per individual, so results do not depend on the
 * thread count. */
#ifndef NL_SEARCH_GP_H
#define NL_SEARCH_GP_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "expr/expr.h"

struct nl_maps;

/* Operators the search draws from, in the order of nl_gp_config.op_weight. */
#define NL_GP_NOPS 7
/* +, *, neg, tanh, sigmoid, clip, clip(a, lo, hi) (drawn with constant
 * bounds; weight 0 by default, see nl_gp_config.max_flops) */
extern const nl_op nl_gp_ops[NL_GP_NOPS];

typedef enum { NL_GP_NODES = 0, NL_GP_FLOPS = 1 } nl_gp_complexity;
/* minval, knee, or budget: the best validation fitness among the members
 * whose cost (nl_cost on the simplified tree, clip 0) is within a limit. */
typedef enum { NL_GP_MINVAL = 0, NL_GP_KNEE = 1, NL_GP_BUDGET = 2 } nl_gp_selection;

/* A FLOP limit (budget, max-flops) meaning LayerNorm's own cost per
 * element, 5 + 2/d for a layer of width d (nl_gp_limit). */
#define NL_GP_LN (-1.0)

typedef struct nl_gp_config {
  int pop;              /* population size (500) */
  int gens;             /* generations (50) */
  int max_nodes;        /* node limit of every candidate (20) */
  int init_depth;       /* ramped half-and-half up to this depth (4) */
  int tournament;       /* tournament size (7) */
  double penalty;       /* gamma of the pull-to-zero term (0.005) */
  double delta_scale;   /* delta = delta_scale * max|x_train| (2) */
  int const_steps;      /* Adam steps per generation (10) */
  int const_top;        /* offspring refined per generation (100) */
  double const_lr;      /* Adam step size (0.1) */
  int const_points;     /* training points the Adam steps see, a fixed random
                           subsample (4096); 0: all. F is recomputed on all
                           training points afterwards. */
  double val_frac;      /* validation share of the points (0.1) */
  double p_cross;       /* subtree crossover probability (0.9) */
  double p_mut;         /* mutation probability after crossover (0.3); an
                           offspring made without crossover is always mutated */
  double op_weight[NL_GP_NOPS]; /* 0.28, 0.26, 0.08, 0.20, 0.10, 0.08, 0 */
  double p_leaf_x;      /* a leaf is x with this probability, else N(0,1) (0.5) */
  nl_gp_complexity complexity; /* NL_GP_NODES */
  nl_gp_selection select;      /* NL_GP_MINVAL */
  double budget;        /* NL_GP_BUDGET: FLOPs per element allowed (> 0), or NL_GP_LN */
  double max_flops;     /* search-time limit (0: none; > 0; NL_GP_LN): a candidate
                           whose simplified cost (clip 0) is above it, or with a
                           clip(a, lo, hi) whose bounds depend on x, gets F = +inf;
                           operators costing more than it are not drawn, and
                           clip(a, lo, hi) is drawn with weight 0.15 when its
                           op_weight is 0 */
  int width;            /* the layers' width d, for NL_GP_LN (0: unknown, taken as
                           large: 5 + 2/d rounds down to 5 for every d >= 3) */
  uint64_t seed;        /* base seed (0) */
  int threads;          /* worker threads (0: nl_threads_default()); the result does
                           not depend on it */
} nl_gp_config;

void nl_gp_config_default(nl_gp_config *c);
/* NL_EINPUT naming the field when a setting is out of range. */
int nl_gp_config_check(const nl_gp_config *c, nl_error *err);

/* Live progress of one search, once per generation. */
typedef struct nl_gp_progress {
  const char *layer;
  int seed;             /* seed index */
  int gen, gens;        /* generations done / planned */
  double best_fitness;  /* lowest training F in the population */
  int front_size;       /* archive size */
  double node_evals_per_s; /* forward node evaluations (points x nodes) per second */
  double elapsed;       /* seconds since this search started */
  int task, ntasks;     /* campaign: layer-seed index / count (search alone: 0 / 1) */
} nl_gp_progress;
/* Return non-zero to stop after this generation (the front is kept). */
typedef int (*nl_gp_progress_fn)(const nl_gp_progress *p, void *user);

/* Where a front member came from: the search itself, the initial
 * population given (nl_gp_extra.seeds; their descendants with the same
 * tree and other constants count too), or an expression injected while
 * the search ran. */
typedef enum { NL_GP_ORIGIN_SEARCH = 0, NL_GP_ORIGIN_SEED = 1, NL_GP_ORIGIN_INJECTED = 2 } nl_gp_origin;
/* "search", "seed", "injected"; parse: -1 for other text. */
const char *nl_gp_origin_name(int origin);
int nl_gp_origin_parse(const char *s);

/* One member of a front. */
typedef struct nl_gp_member {
  nl_prog prog;
  int origin;           /* nl_gp_origin */
  int nodes, flops;     /* flops: reporting cost (clip 0, nl_cost) */
  int rank;             /* NSGA-II rank (1 = non-dominated) in (val_fitness,
                           complexity) among the front */
  double train_fitness, val_fitness, val_mse, val_r2;
} nl_gp_member;

typedef struct nl_gp_result {
  nl_gp_member *front;  /* sorted by complexity, then train fitness */
  int nfront;
  int chosen;           /* index of the selected member (-1: none within the budget) */
  int gens_done;
  int finished;         /* 0 when stopped early */
  double seconds;
  double node_evals;
} nl_gp_result;
void nl_gp_result_free(nl_gp_result *r);

/* The pull-to-zero penalty gamma * 0.5 * (f(-delta)^2 + f(delta)^2), in
 * float evaluation; and F on n points (+inf when not finite). */
double nl_gp_penalty(const nl_prog *p, double gamma, double delta, nl_eval_ws *ws);
double nl_gp_fitness(const nl_prog *p, const float *x, const float *y, size_t n, double gamma,
                     double delta, nl_eval_ws *ws);

/* Can the layer's points be searched? NL_EINPUT naming the layer when
 * there are fewer than 10, a value is not finite, or y is constant on
 * them or on their validation split (then R^2 is undefined: refused, as
 * nl_dyt_fit refuses it). */
int nl_gp_check_points(const nl_gp_config *c, const char *layer, const float *x, const float *y,
                       size_t n, nl_error *err);

/* What a search may receive besides its settings: expressions for its
 * initial population, and a source of expressions to add while it runs
 * (called before every generation until it returns 0; it fills *out,
 * an initialised program, and returns 1). Programs longer than
 * c->max_nodes are skipped. */
typedef struct nl_gp_extra {
  const nl_prog *seeds;
  int nseeds;
  int (*inject)(const char *layer, nl_prog *out, void *user);
  void *inject_user;
} nl_gp_extra;

/* Search one layer with seed index `seed_index` on its points (split
 * train/validation inside; checked with nl_gp_check_points first). cb may
 * be NULL. Returns 0 (also when stopped early through cb or
 * nl_interrupted(): then res->finished is 0), -1 on bad input. */
int nl_gp_run(const nl_gp_config *c, const char *layer, const float *x, const float *y, size_t n,
              int seed_index, nl_gp_progress_fn cb, void *user, nl_gp_result *res,
              nl_error *err);
/* The same with extras (NULL: none). */
int nl_gp_run_with(const nl_gp_config *c, const nl_gp_extra *x, const char *layer,
                   const float *xs, const float *ys, size_t n, int seed_index,
                   nl_gp_progress_fn cb, void *user, nl_gp_result *res, nl_error *err);

/* The seeded train/validation split of a layer's n points (the one every
 * search of the layer uses): perm[0..*ntrain) are training indices, the
 * rest validation. Depends on c->seed, c->val_frac and the layer name. */
void nl_gp_split(const nl_gp_config *c, const char *layer, size_t n, size_t *perm,
                 size_t *ntrain);

/* Index of the selected member (NL_GP_BUDGET, which needs a limit: see
 * nl_gp_select_within, reads as minval here): lowest val_fitness (ties: fewer nodes), or
 * the knee of the (flops, val_mse) non-dominated set: the point farthest
 * from the line through its two ends, both axes scaled to [0, 1]. */
int nl_gp_select(const nl_gp_member *m, int n, nl_gp_selection how);

/* The FLOPs per element a limit allows at width d: limit itself, or for
 * NL_GP_LN LayerNorm's 5 + 2/d (d <= 0: unknown, 5). */
double nl_gp_limit(double limit, int width);
/* The member with the lowest val_fitness (ties: fewer nodes) among those
 * whose cost, nl_cost of the parsed/simplified program with clip 0, is at
 * most max_flops; -1 when none is, then *cheapest (may be NULL) gets the
 * lowest cost on the front (-1 when n is 0). */
int nl_gp_select_within(const nl_gp_member *m, int n, double max_flops, int *cheapest);
/* Parse a selection: "minval", "knee", "budget=F" (F > 0, finite) or
 * "budget=ln". NL_EINPUT naming `what` ("--select", "pick") and the text. */
int nl_gp_selection_parse(const char *text, const char *what, nl_gp_selection *how,
                          double *budget, nl_error *err);
/* "minval", "knee", "budget=ln", "budget=5" into buf. */
void nl_gp_selection_format(nl_gp_selection how, double budget, char *buf, size_t n);

/* ---- NSGA-II ---- */
/* Fast non-dominated sort of n points with m objectives (obj[i*m + j],
 * minimised; NaN counts as +inf). rank[i] = 1 for the first front. Returns
 * the number of fronts. */
int nl_nsga2_rank(const double *obj, int n, int m, int *rank);
/* Crowding distance of the k points idx[0..k) (one front): the sum over
 * objectives of the normalised gap between the neighbours, +inf at the
 * ends of each objective's order. */
void nl_nsga2_crowding(const double *obj, int m, const int *idx, int k, double *crowd);

/* ---- campaigns: many layers and seeds, results in a directory ---- */
typedef struct nl_gp_campaign {
  const nl_gp_config *cfg;
  const struct nl_maps *maps;
  const char *const *layers; /* names to search; NULL: every layer */
  int nlayers;
  int seeds;                 /* seed indices 0 .. seeds-1 */
  const char *outdir;
  nl_gp_progress_fn progress;
  void *user;
  int recompute;             /* search again finished parts whose signature differs
                                (and drop chosen.exprs entries of other mappings)
                                rather than refuse them */
  const nl_exprset *init;    /* initial population members: the entry named like a
                                layer seeds that layer's searches (NULL: none) */
  const char *init_path;     /* its file, for messages */
  int (*inject)(const char *layer, nl_prog *out, void *user); /* see nl_gp_extra */
  void *inject_user;
  int per_layer_maps;        /* the layers' mappings come from different files or passes
                                (a sequential campaign, search/sequential.h): the entries of
                                chosen.exprs of layers this run does not search are kept
                                whatever mappings their parts were computed from */
} nl_gp_campaign;

/* NL_EINPUT "MAPS: no layer 'NAME' (see 'normlab maps --maps MAPS')" when
 * the mappings have no such layer. */
int nl_gp_campaign_check_layer(const struct nl_maps *m, const char *layer, nl_error *err);

/* What a campaign produced for one layer: the chosen expression of the
 * best seed (lowest validation fitness among the seeds' selections). */
typedef struct nl_gp_layer_summary {
  char *name;
  nl_prog prog;
  char *expr;            /* round-trip text */
  int seed, nodes, flops;
  double val_fitness, val_mse, val_r2;
  double seconds;        /* search time summed over the seeds */
  int seeds_done;        /* finished layer-seeds */
  int skipped;           /* layer-seeds found finished on disk */
  double limit;          /* --select budget: the FLOPs per element allowed (0: no budget) */
  int over_budget;       /* budget: no member within it; expr is NULL, and
                            cheapest is the lowest cost on the layer's fronts */
  int cheapest;
  int refitted;          /* budget: the constants were re-fitted after simplification */
  int origin;            /* nl_gp_origin of the chosen member */
} nl_gp_layer_summary;

typedef struct nl_gp_summary {
  nl_gp_layer_summary *layers;
  int nlayers;
  double seconds;        /* wall time of this call */
} nl_gp_summary;
void nl_gp_summary_free(nl_gp_summary *s);

/* Run every (layer, seed) not yet finished in outdir: outdir/parts/ gets
 * one file per layer-seed (written atomically; "*.partial.csv" when stopped
 * early), then outdir/LAYER.csv (all seeds' fronts) and outdir/chosen.exprs
 * are rebuilt; chosen.exprs keeps its entries of the layers this run does
 * not search (or does not reach).
 *
 * Each part records the mappings' content fingerprint and the settings
 * that change a search's result. Before searching anything, every layer
 * is checked (nl_gp_check_points), and the directory: a finished part of
 * this run's layers with another fingerprint or other settings, or a layer
 * of chosen.exprs whose parts come from other mappings, is an NL_EINPUT
 * error naming the part file and what differs, unless c->recompute.
 *
 * Returns 0 when all finished; -1 with NL_EINTR when stopped by the
 * callback or an interrupt (what finished is on disk), -1 with another
 * code on errors. `out` is filled in every case (what was merged); release
 * it with nl_gp_summary_free. */
int nl_gp_campaign_run(const nl_gp_campaign *c, nl_gp_summary *out, nl_error *err);

/* The fronts CSV header line (no newline). */
extern const char nl_gp_csv_header[];

#endif
