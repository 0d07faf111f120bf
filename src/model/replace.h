/* Replacement of a ViT's LayerNorms: every norm slot becomes f(x) * w + b
 * (an expression from a set), DyT tanh(alpha x) * w + b, or LayerNorm
 * again, with the affine w, b inherited from the slot. */
#ifndef NL_MODEL_REPLACE_H
#define NL_MODEL_REPLACE_H

#include "base/error.h"
#include "expr/expr.h"
#include "model/vit.h"

typedef enum nl_replace_mode {
  NL_REPLACE_LAYERNORM = 0, /* every slot LayerNorm (undoes a replacement) */
  NL_REPLACE_DYT,           /* every slot DyT: per-layer alphas if given, else one alpha */
  NL_REPLACE_SET,           /* the set's expression per slot */
} nl_replace_mode;

/* Per-layer DyT alphas (e.g. the least-squares fits of `normlab dyt`). */
typedef struct nl_dyt_alphas {
  int n;
  char **names;
  float *alphas;
} nl_dyt_alphas;

typedef struct nl_replace_spec {
  nl_replace_mode mode;
  float alpha;                  /* DYT without alphas: alpha of every slot (0.5 in DyT) */
  const nl_dyt_alphas *alphas;  /* DYT: per-layer alphas, or NULL */
  const nl_exprset *set;        /* SET */
  const char *source;           /* file the set or alphas came from, for messages; may be NULL */
} nl_replace_spec;

/* Apply spec to every norm slot of m. With a set or per-layer alphas, a
 * slot they do not name is left as it was (LayerNorm in a model fresh from
 * timm) and kept[i] = 1 (kept: nnorms ints, may be NULL; 0 for every slot
 * that was replaced). A name that is
 * not a norm slot of m, a malformed expression or a constant or alpha that
 * is not finite is an NL_EINPUT error naming the layer (and "file:line"
 * for sets parsed from text); m is then unchanged. */
int nl_vit_replace(nl_vit *m, const nl_replace_spec *spec, int *kept, nl_error *err);

/* A replacement spec parsed from its text, the one grammar of `normlab
 * replace --set` and of the string Lua's model:replace takes:
 *   ln | layernorm   LayerNorm everywhere
 *   dyt              DyT, alpha 0.5, everywhere
 *   dyt=ALPHA        DyT with that (finite) alpha everywhere
 *   dyt=FILE         per-layer alphas from JSON (nl_dyt_alphas_load)
 *   FILE             an expression set (nl_exprset_load), not empty
 * The struct owns the set or the alphas its spec points to; spec.source
 * points into text, which must outlive it. */
typedef struct nl_replace_parsed {
  nl_replace_spec spec;
  nl_exprset set;
  nl_dyt_alphas alphas;
} nl_replace_parsed;

/* Parse text into p (always initialised: free it also after an error).
 * NL_EINPUT naming the text, the file and line, or the entry. */
int nl_replace_parse(nl_replace_parsed *p, const char *text, nl_error *err);
void nl_replace_parsed_free(nl_replace_parsed *p);

/* Read per-layer alphas from JSON: the output of `normlab dyt --json`
 * ({"layers": [{"name": ..., "alpha": ...}, ...]}) or an object
 * {"LAYER": ALPHA, ...}. Errors name the file and the entry. */
int nl_dyt_alphas_load(nl_dyt_alphas *a, const char *path, nl_error *err);
void nl_dyt_alphas_free(nl_dyt_alphas *a);

#endif
