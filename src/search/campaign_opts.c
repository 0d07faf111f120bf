/* The GP campaign's settings and their parser (campaign_opts.h). */
#include "search/campaign_opts.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/text.h"
#include "base/threads.h"

typedef enum { K_STR, K_INT, K_U64, K_NUM, K_FLAG, K_CHOICE, K_SELECT, K_LIMIT, K_LONG } kind;

/* One option: its name, type, accepted range and where it lands. */
typedef struct {
  const char *name;
  kind k;
  double lo, hi;       /* K_INT, K_U64, K_NUM */
  int lo_open;         /* K_NUM: lo itself is excluded */
  size_t off;          /* char * / int / uint64_t / double / int (flag, choice index) */
  const char *choices; /* K_CHOICE: "a|b", stored as the index of the choice */
} ospec;

#define OFF(f) offsetof(nl_gp_campaign_opts, f)
static const ospec specs[] = {
    {"maps", K_STR, 0, 0, 0, OFF(maps), NULL},
    {"layer", K_STR, 0, 0, 0, OFF(layer), NULL},
    {"output", K_STR, 0, 0, 0, OFF(output), NULL},
    {"seeds", K_INT, 1, 10000, 0, OFF(seeds), NULL},
    {"seed", K_U64, 0, 2147483647, 0, OFF(cfg.seed), NULL},
    {"pop", K_INT, 4, 1000000, 0, OFF(cfg.pop), NULL},
    {"gens", K_INT, 0, 1000000, 0, OFF(cfg.gens), NULL},
    {"max-nodes", K_INT, 1, 1000, 0, OFF(cfg.max_nodes), NULL},
    {"init-depth", K_INT, 1, 30, 0, OFF(cfg.init_depth), NULL},
    {"tournament", K_INT, 1, 1000000, 0, OFF(cfg.tournament), NULL},
    {"penalty", K_NUM, 0, INFINITY, 0, OFF(cfg.penalty), NULL},
    {"const-steps", K_INT, 0, 100000, 0, OFF(cfg.const_steps), NULL},
    {"const-top", K_INT, 0, 1000000, 0, OFF(cfg.const_top), NULL},
    {"const-lr", K_NUM, 0, INFINITY, 1, OFF(cfg.const_lr), NULL},
    {"const-points", K_INT, 0, 1000000000, 0, OFF(cfg.const_points), NULL},
    {"complexity", K_CHOICE, 0, 0, 0, OFF(cfg.complexity), "nodes|flops"},
    {"select", K_SELECT, 0, 0, 0, OFF(cfg.select), NULL},
    {"max-flops", K_LIMIT, 0, 0, 0, OFF(cfg.max_flops), NULL},
    {"init", K_STR, 0, 0, 0, OFF(init), NULL},
    {"threads", K_INT, 1, NL_THREADS_MAX, 0, OFF(cfg.threads), NULL},
    {"recompute", K_FLAG, 0, 0, 0, OFF(recompute), NULL},
    {"json", K_FLAG, 0, 0, 0, OFF(json), NULL},
    {"model", K_STR, 0, 0, 0, OFF(model), NULL},
    {"data", K_STR, 0, 0, 0, OFF(data), NULL},
    {"sequential", K_FLAG, 0, 0, 0, OFF(sequential), NULL},
    {"images", K_INT, 1, 1000000, 0, OFF(images), NULL},
    {"offset", K_LONG, 0, 2147483647, 0, OFF(offset), NULL},
    {"points", K_LONG, 0, 4294967295.0, 0, OFF(points), NULL},
    {"extract-seed", K_U64, 0, 2147483647, 0, OFF(extract_seed), NULL},
};
#define NSPECS (sizeof specs / sizeof specs[0])

void nl_gp_campaign_opts_init(nl_gp_campaign_opts *o) {
  memset(o, 0, sizeof *o);
  nl_gp_config_default(&o->cfg); /* threads 0: not given */
  o->seeds = 1;
  o->images = 64;      /* NL_EXTRACT_IMAGES */
  o->points = 50000;   /* NL_EXTRACT_POINTS */
  o->extract_seed = 42; /* NL_EXTRACT_SEED */
}

void nl_gp_campaign_opts_free(nl_gp_campaign_opts *o) {
  free(o->maps);
  free(o->output);
  free(o->layer);
  free(o->init);
  free(o->model);
  free(o->data);
  memset(o, 0, sizeof *o);
}

/* The spec of key ('_' standing for '-'), or NULL; name receives the
 * option's spelling. */
static const ospec *find(const char *key, char *name, size_t cap) {
  snprintf(name, cap, "%s", key);
  for (char *p = name; *p; p++)
    if (*p == '_') *p = '-';
  for (size_t i = 0; i < NSPECS; i++)
    if (strcmp(specs[i].name, name) == 0) return &specs[i];
  return NULL;
}

int nl_gp_campaign_opts_known(const char *key) {
  char name[64];
  return find(key, name, sizeof name) != NULL;
}

int nl_gp_campaign_opts_set(nl_gp_campaign_opts *o, const char *key, const char *value,
                            nl_error *err) {
  char name[64];
  const ospec *s = find(key, name, sizeof name);
  if (!s) return nl_fail(err, NL_EINPUT, "unknown option '--%s' (see 'normlab help evolve')", name);
  char *base = (char *)o, *end;
  if (s->k != K_FLAG && !value)
    return nl_fail(err, NL_EINPUT, "option --%s needs a value", s->name);
  switch (s->k) {
    case K_STR: {
      char **dst = (char **)(base + s->off);
      free(*dst);
      /* layer "all" is every layer */
      *dst = strcmp(s->name, "layer") == 0 && strcmp(value, "all") == 0 ? NULL
                                                                         : nl_xstrdup(value);
      break;
    }
    case K_FLAG:
      if (!value || strcmp(value, "1") == 0 || strcmp(value, "true") == 0)
        *(int *)(base + s->off) = 1;
      else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0)
        *(int *)(base + s->off) = 0;
      else
        return nl_fail(err, NL_EINPUT, "option --%s takes no value", s->name);
      break;
    case K_INT:
    case K_LONG:
    case K_U64: {
      errno = 0;
      long v = strtol(value, &end, 10);
      if (*value == '\0' || *end != '\0' || errno == ERANGE)
        return nl_fail(err, NL_EINPUT, "--%s expects an integer, got '%s'", s->name, value);
      if (v < (long)s->lo || v > (long)s->hi)
        return nl_fail(err, NL_EINPUT, "--%s must be between %ld and %ld, got %ld", s->name,
                       (long)s->lo, (long)s->hi, v);
      if (s->k == K_U64) *(uint64_t *)(base + s->off) = (uint64_t)v;
      else if (s->k == K_LONG) *(long *)(base + s->off) = v;
      else *(int *)(base + s->off) = (int)v;
      break;
    }
    case K_NUM: {
      errno = 0;
      double v = strtod(value, &end);
      if (*value == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v))
        return nl_fail(err, NL_EINPUT, "--%s expects a finite number, got '%s'", s->name, value);
      if (v < s->lo || (s->lo_open && v == s->lo))
        return nl_fail(err, NL_EINPUT, "--%s must be %s %g, got %g", s->name,
                       s->lo_open ? ">" : ">=", s->lo, v);
      *(double *)(base + s->off) = v;
      break;
    }
    case K_CHOICE: {
      int i = nl_choice_index(s->choices, value);
      if (i < 0)
        return nl_fail(err, NL_EINPUT, "--%s expects one of %s, got '%s'", s->name, s->choices,
                       value);
      /* the enums count in the order of their choices */
      _Static_assert(NL_GP_NODES == 0 && NL_GP_FLOPS == 1 && NL_GP_MINVAL == 0 && NL_GP_KNEE == 1,
                     "choices in enum order");
      if (strcmp(s->name, "complexity") == 0) o->cfg.complexity = (nl_gp_complexity)i;
      else o->cfg.select = (nl_gp_selection)i;
      break;
    }
    case K_SELECT: {
      char what[80];
      snprintf(what, sizeof what, "--%s", s->name);
      if (nl_gp_selection_parse(value, what, &o->cfg.select, &o->cfg.budget, err) != 0) return -1;
      break;
    }
    case K_LIMIT: {
      double *dst = (double *)(base + s->off);
      if (strcmp(value, "ln") == 0) {
        *dst = NL_GP_LN;
        break;
      }
      errno = 0;
      double v = strtod(value, &end);
      if (*value == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v) || v < 0)
        return nl_fail(err, NL_EINPUT,
                       "--%s expects a number of FLOPs per element >= 0 (0: no limit) or 'ln' "
                       "(LayerNorm's 5 + 2/d), got '%s'",
                       s->name, value);
      *dst = v;
      break;
    }
  }
  return 0;
}

int nl_gp_campaign_opts_finish(nl_gp_campaign_opts *o, nl_error *err) {
  if (o->sequential && !o->model)
    return nl_fail(err, NL_EINPUT, "--sequential needs --model (it records the mappings itself)");
  if (o->model && o->maps)
    return nl_fail(err, NL_EINPUT,
                   "give --maps or --model, not both (--model extracts the mappings itself)");
  if (o->sequential && o->layer)
    return nl_fail(err, NL_EINPUT,
                   "a sequential search covers every layer in forward order: leave out --layer");
  if (o->cfg.tournament > o->cfg.pop)
    return nl_fail(err, NL_EINPUT, "--tournament must be between 1 and --pop (%d), got %d",
                   o->cfg.pop, o->cfg.tournament);
  return nl_gp_config_check(&o->cfg, err);
}
