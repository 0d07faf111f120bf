/* The settings of a GP campaign (`normlab evolve`, `evolve ... &` at the
 * prompt, Lua's normlab.evolve): one struct, and one parser from key/value
 * text that all three use, so that a bad value gives the same message
 * from each.
 *
 * Keys are the command's long option names ("max-nodes"; '_' may stand
 * for '-', as Lua spells them); values are text ("500", "flops"). Ranges:
 *   seeds 1..10000, seed 0..2147483647, pop 4..1000000, gens 0..1000000,
 *   max-nodes 1..1000, init-depth 1..30, tournament 1..pop,
 *   const-steps 0..100000, const-top 0..1000000, const-points 0..1e9,
 *   penalty >= 0, const-lr > 0, threads 1..256,
 *   complexity nodes|flops, select minval|knee|budget=F|budget=ln (F > 0),
 *   max-flops F|ln (F >= 0, 0: no limit);
 * maps, output, layer, init, model, data take any text (layer "all": every
 * layer); the flags recompute, sequential and json take no value (or
 * "1"/"true", "0"/"false"); images 1..1000000, offset 0..2147483647,
 * points 0..4294967295, extract-seed 0..2147483647 (used with model). */
#ifndef NL_SEARCH_CAMPAIGN_OPTS_H
#define NL_SEARCH_CAMPAIGN_OPTS_H

#include "base/error.h"
#include "search/gp.h"

typedef struct nl_gp_campaign_opts {
  nl_gp_config cfg;  /* the search's settings; cfg.threads 0: not given */
  int seeds;         /* independent searches per layer (1) */
  char *maps;        /* mappings file; NULL: not given; owned */
  char *output;      /* result directory; NULL: not given; owned */
  char *layer;       /* the one layer to search; NULL: every layer; owned */
  char *init;        /* expressions (.exprs) seeding the layers' initial
                        populations; NULL: none; owned */
  int recompute;     /* search again the finished parts that were computed
                        from other mappings or with other settings, rather
                        than refuse (nl_gp_campaign.recompute) */
  int json;          /* the command's output format */
  /* the mappings extracted from a model instead of read from --maps
     (search/sequential.h) */
  char *model;       /* checkpoint; NULL: not given; owned */
  char *data;        /* data spec; NULL: fmnist:test; owned */
  int sequential;    /* layer k searched with layers < k replaced */
  int images;        /* images to extract from (64) */
  long offset;       /* first image (0) */
  long points;       /* points per layer (50000; 0: every position) */
  uint64_t extract_seed; /* sampling seed (42) */
} nl_gp_campaign_opts;

/* The defaults of `normlab help evolve`. */
void nl_gp_campaign_opts_init(nl_gp_campaign_opts *o);
void nl_gp_campaign_opts_free(nl_gp_campaign_opts *o);

/* Set one option from text (see above). NL_EINPUT naming the option on an
 * unknown key or a bad value: "unknown option '--KEY' (see 'normlab help
 * evolve')", "--pop expects an integer, got 'abc'", "--pop must be between
 * 4 and 1000000, got 2", "--complexity expects one of nodes|flops, got 'x'". */
int nl_gp_campaign_opts_set(nl_gp_campaign_opts *o, const char *key, const char *value,
                            nl_error *err);

/* After the last set: the checks between options (--tournament within
 * --pop) and of the whole search configuration (nl_gp_config_check). */
int nl_gp_campaign_opts_finish(nl_gp_campaign_opts *o, nl_error *err);

/* Is key one of the options (same spelling rules as the setter)? */
int nl_gp_campaign_opts_known(const char *key);

#endif
