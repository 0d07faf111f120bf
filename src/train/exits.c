/* Early exits: heads, their training on recorded features, the packed
 * early-exit pass, and the rules on a table of every exit's decisions. */
#include "train/exits.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/rng.h"
#include "base/threads.h"
#include "base/timer.h"
#include "expr/expr.h"
#include "model/norm.h"
#include "model/safetensors.h"
#include "tensor/layers.h"
#include "train/evaluate.h"
#include "train/layers.h"
#include "train/loss.h"
#include "train/optim.h"

/* ---- the model's hash ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}

void nl_vit_hash(const nl_vit *m, char out[17]) {
  uint64_t h = 14695981039346656037ull;
  for (int i = 0; i < m->ntensors; i++) {
    const nl_param *p = &m->tensors[i];
    h = fnv(h, p->name, strlen(p->name) + 1);
    h = fnv(h, p->shape, sizeof(int64_t) * (size_t)p->ndim);
    h = fnv(h, m->params + p->offset, sizeof(float) * p->numel);
  }
  for (int i = 0; i < m->nnorms; i++) {
    const nl_norm *n = &m->norms[i];
    h = fnv(h, &n->kind, sizeof n->kind);
    if (n->expr) h = fnv(h, n->expr, strlen(n->expr));
  }
  snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* ---- heads ---- */

/* Parameters of one exit: norm w, b [D], alpha (16 floats, aligned),
 * head w [C, D], b [C]; each view rounded up to 16 floats. */
#define R16(n) (((n) + 15) / 16 * 16)
static size_t exit_floats(int D, int C) {
  return 2 * R16((size_t)D) + 16 + R16((size_t)C * D) + R16((size_t)C);
}

static void layout(nl_exits *e) {
  const size_t D = (size_t)e->dim, C = (size_t)e->classes, per = exit_floats(e->dim, e->classes);
  e->nparams = per * (size_t)e->depth;
  e->params = nl_aalloc(sizeof(float) * e->nparams);
  memset(e->params, 0, sizeof(float) * e->nparams);
  e->norms = nl_xcalloc((size_t)e->depth, sizeof(nl_norm));
  e->head_w = nl_xcalloc((size_t)e->depth, sizeof(float *));
  e->head_b = nl_xcalloc((size_t)e->depth, sizeof(float *));
  for (int k = 0; k < e->depth; k++) {
    float *p = e->params + per * (size_t)k;
    nl_norm *n = &e->norms[k];
    snprintf(n->name, sizeof n->name, "exits.%d.norm", k);
    n->kind = e->kind;
    n->w = p;
    n->b = p + R16(D);
    n->alpha = p + 2 * R16(D);
    *n->alpha = 0.5f;
    n->prog = e->prog;
    n->expr = e->expr;
    e->head_w[k] = p + 2 * R16(D) + 16;
    e->head_b[k] = e->head_w[k] + R16(C * D);
  }
}

static void shape_of(nl_exits *e, const nl_vit *m) {
  memset(e, 0, sizeof *e);
  const nl_vit_config *c = &m->cfg;
  e->depth = c->depth;
  e->dim = c->dim;
  e->classes = c->classes;
  e->tokens = c->tokens;
  e->avg_pool = c->avg_pool;
  e->class_token = c->class_token;
  e->eps = c->eps;
  e->kind = m->final_norm->kind;
}

int nl_exits_init(nl_exits *e, const nl_vit *m, nl_error *err) {
  shape_of(e, m);
  if (e->depth < 1) return nl_fail(err, NL_EINPUT, "the model has no blocks");
  const nl_norm *fn = m->final_norm;
  if (fn->kind == NL_NORM_EXPR) {
    e->prog = nl_xmalloc(sizeof *e->prog);
    nl_prog_init(e->prog);
    nl_prog_copy(e->prog, fn->prog);
    e->expr = nl_xstrdup(fn->expr ? fn->expr : "");
  }
  layout(e);
  const size_t D = (size_t)e->dim, C = (size_t)e->classes;
  for (int k = 0; k < e->depth; k++) {
    memcpy(e->norms[k].w, fn->w, sizeof(float) * D);
    memcpy(e->norms[k].b, fn->b, sizeof(float) * D);
    *e->norms[k].alpha = *fn->alpha;
    memcpy(e->head_w[k], m->head_w, sizeof(float) * C * D);
    memcpy(e->head_b[k], m->head_b, sizeof(float) * C);
  }
  nl_vit_hash(m, e->model_hash);
  return 0;
}

void nl_exits_free(nl_exits *e) {
  if (!e) return;
  if (e->prog) {
    nl_prog_free(e->prog);
    free(e->prog);
  }
  free(e->expr);
  nl_afree(e->params);
  free(e->policy);
  free(e->predictor);
  free(e->norms);
  free(e->head_w);
  free(e->head_b);
  memset(e, 0, sizeof *e);
}

/* ---- file ---- */

int nl_exits_save(const nl_exits *e, const char *path, nl_error *err) {
  nl_st_writer *w = nl_st_writer_new();
  int rc = 0;
  const int64_t D = e->dim, C = e->classes;
  for (int k = 0; k < e->depth && !rc; k++) {
    char nm[64];
    int64_t sd[1] = {D}, sc[1] = {C}, shw[2] = {C, D}, s1[1] = {1};
    snprintf(nm, sizeof nm, "exits.%d.norm.weight", k);
    rc = nl_st_writer_add(w, nm, e->norms[k].w, 1, sd, err);
    snprintf(nm, sizeof nm, "exits.%d.norm.bias", k);
    if (!rc) rc = nl_st_writer_add(w, nm, e->norms[k].b, 1, sd, err);
    snprintf(nm, sizeof nm, "exits.%d.norm.alpha", k);
    if (!rc && e->kind == NL_NORM_DYT) rc = nl_st_writer_add(w, nm, e->norms[k].alpha, 1, s1, err);
    snprintf(nm, sizeof nm, "exits.%d.head.weight", k);
    if (!rc) rc = nl_st_writer_add(w, nm, e->head_w[k], 2, shw, err);
    snprintf(nm, sizeof nm, "exits.%d.head.bias", k);
    if (!rc) rc = nl_st_writer_add(w, nm, e->head_b[k], 1, sc, err);
  }
  if (!rc && e->policy) {
    const int64_t K = e->depth - 1;
    int64_t sw[2] = {K, D}, sk[1] = {K}, sd[1] = {D};
    const float *p = e->policy;
    rc = nl_st_writer_add(w, "policy.weight", p, 2, sw, err) ||
         nl_st_writer_add(w, "policy.bias", p + K * D, 1, sk, err) ||
         nl_st_writer_add(w, "policy.mean", p + K * D + K, 1, sd, err) ||
         nl_st_writer_add(w, "policy.std", p + K * D + K + D, 1, sd, err);
  }
  if (!rc && e->predictor) {
    const int64_t K = e->depth;
    int64_t sw[2] = {K, D}, sk[1] = {K}, sd[1] = {D};
    const float *p = e->predictor;
    rc = nl_st_writer_add(w, "predictor.weight", p, 2, sw, err) ||
         nl_st_writer_add(w, "predictor.bias", p + K * D, 1, sk, err) ||
         nl_st_writer_add(w, "predictor.mean", p + K * D + K, 1, sd, err) ||
         nl_st_writer_add(w, "predictor.std", p + K * D + K + D, 1, sd, err);
  }
  if (!rc) {
    json_t *j = json_object();
    json_object_set_new(j, "version", json_integer(1));
    json_object_set_new(j, "depth", json_integer(e->depth));
    json_object_set_new(j, "dim", json_integer(e->dim));
    json_object_set_new(j, "classes", json_integer(e->classes));
    json_object_set_new(j, "tokens", json_integer(e->tokens));
    json_object_set_new(j, "pool", json_string(e->avg_pool ? "avg" : "token"));
    json_object_set_new(j, "class_token", json_integer(e->class_token));
    json_object_set_new(j, "eps", json_real(e->eps));
    json_object_set_new(j, "norm", json_string(nl_norm_kind_name(e->kind)));
    if (e->expr) json_object_set_new(j, "expr", json_string(e->expr));
    json_object_set_new(j, "model", json_string(e->model));
    json_object_set_new(j, "model_hash", json_string(e->model_hash));
    json_object_set_new(j, "data", json_string(e->data));
    json_object_set_new(j, "images", json_integer(e->images));
    json_object_set_new(j, "epochs", json_integer(e->epochs));
    json_object_set_new(j, "seed", json_integer((json_int_t)e->seed));
    json_object_set_new(j, "lr", json_real(e->lr));
    if (e->predictor) json_object_set_new(j, "predictor_block", json_integer(e->pred_block));
    if (e->policy) {
      json_object_set_new(j, "policy_head", json_string(e->policy_exit_head ? "last_exit" : "final"));
      json_object_set_new(j, "policy_init_tau", json_real(e->policy_init_tau));
    }
    char *t = json_dumps(j, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(j);
    nl_st_writer_meta(w, "normlab_exits", t);
    free(t);
    rc = nl_st_writer_save(w, path, err);
  }
  nl_st_writer_free(w);
  return rc;
}

static int meta_int(json_t *j, const char *key, long lo, long hi, long *out, const char *path,
                    nl_error *err) {
  json_t *v = json_object_get(j, key);
  if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
    return nl_fail(err, NL_EINPUT, "%s: metadata normlab_exits: '%s' missing or out of range",
                   path, key);
  *out = (long)json_integer_value(v);
  return 0;
}

static const char *meta_str(json_t *j, const char *key) {
  json_t *v = json_object_get(j, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Copy tensor `name` of shape [d0] or [d0, d1] (d1 = 0: 1-D) into dst. */
static int read_tensor(const nl_st_file *f, const char *name, int64_t d0, int64_t d1, float *dst,
                       nl_error *err) {
  const nl_st_tensor *t = nl_st_find(f, name);
  if (!t) return nl_fail(err, NL_EINPUT, "%s: no tensor '%s'", f->path, name);
  int nd = d1 ? 2 : 1;
  if (t->ndim != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
    if (nd == 2)
      return nl_fail(err, NL_EINPUT, "%s: tensor '%s' is not [%lld, %lld]", f->path, name,
                     (long long)d0, (long long)d1);
    return nl_fail(err, NL_EINPUT, "%s: tensor '%s' is not [%lld]", f->path, name, (long long)d0);
  }
  nl_st_to_f32(t, dst);
  for (size_t i = 0; i < t->numel; i++)
    if (!isfinite(dst[i]))
      return nl_fail(err, NL_EINPUT, "%s: tensor '%s' holds a value that is not finite", f->path,
                     name);
  return 0;
}

int nl_exits_load(nl_exits *e, const char *path, nl_error *err) {
  memset(e, 0, sizeof *e);
  nl_st_file f;
  if (nl_st_open(&f, path, err)) return -1;
  const char *mt = nl_st_meta_get(&f, "normlab_exits");
  json_error_t je;
  json_t *j = mt ? json_loads(mt, 0, &je) : NULL;
  int rc = 0;
  if (!mt)
    rc = nl_fail(err, NL_EINPUT, "%s: not an exits file (no 'normlab_exits' metadata; make one "
                 "with 'exits fit')", path);
  else if (!json_is_object(j))
    rc = nl_fail(err, NL_EINPUT, "%s: metadata normlab_exits is not a JSON object", path);
  long depth = 0, dim = 0, classes = 0, tokens = 0, ct = 0;
  if (!rc)
    rc = meta_int(j, "depth", 1, 4096, &depth, path, err) ||
         meta_int(j, "dim", 1, 1 << 16, &dim, path, err) ||
         meta_int(j, "classes", 1, 1 << 20, &classes, path, err) ||
         meta_int(j, "tokens", 1, 1 << 20, &tokens, path, err) ||
         meta_int(j, "class_token", 0, 1, &ct, path, err);
  const char *pool = rc ? NULL : meta_str(j, "pool"), *kind = rc ? NULL : meta_str(j, "norm");
  if (!rc && (!pool || (strcmp(pool, "avg") && strcmp(pool, "token"))))
    rc = nl_fail(err, NL_EINPUT, "%s: metadata normlab_exits: 'pool' is not avg or token", path);
  nl_norm_kind k = NL_NORM_LAYERNORM;
  if (!rc) {
    if (kind && strcmp(kind, "layernorm") == 0) k = NL_NORM_LAYERNORM;
    else if (kind && strcmp(kind, "dyt") == 0) k = NL_NORM_DYT;
    else if (kind && strcmp(kind, "expr") == 0) k = NL_NORM_EXPR;
    else rc = nl_fail(err, NL_EINPUT, "%s: metadata normlab_exits: 'norm' is not layernorm, dyt or expr", path);
  }
  if (!rc) {
    e->depth = (int)depth;
    e->dim = (int)dim;
    e->classes = (int)classes;
    e->tokens = (int)tokens;
    e->avg_pool = strcmp(pool, "avg") == 0;
    e->class_token = (int)ct;
    json_t *ev = json_object_get(j, "eps");
    e->eps = json_is_number(ev) ? (float)json_number_value(ev) : 1e-6f;
    e->kind = k;
    const char *s;
    if ((s = meta_str(j, "model"))) snprintf(e->model, sizeof e->model, "%s", s);
    if ((s = meta_str(j, "data"))) snprintf(e->data, sizeof e->data, "%s", s);
    if ((s = meta_str(j, "model_hash"))) snprintf(e->model_hash, sizeof e->model_hash, "%s", s);
    json_t *v;
    if (json_is_integer(v = json_object_get(j, "images"))) e->images = (long)json_integer_value(v);
    if (json_is_integer(v = json_object_get(j, "epochs"))) e->epochs = (int)json_integer_value(v);
    if (json_is_integer(v = json_object_get(j, "seed"))) e->seed = (uint64_t)json_integer_value(v);
    if (json_is_number(v = json_object_get(j, "lr"))) e->lr = json_number_value(v);
    if (k == NL_NORM_EXPR) {
      const char *x = meta_str(j, "expr");
      e->prog = nl_xmalloc(sizeof *e->prog);
      nl_prog_init(e->prog);
      nl_error pe;
      if (!x || nl_parse(x, 1, e->prog, &pe))
        rc = nl_fail(err, NL_EINPUT, "%s: metadata normlab_exits: expression heads without a "
                     "valid 'expr'%s%s", path, x ? ": " : "", x ? pe.msg : "");
      e->expr = nl_xstrdup(x ? x : "");
    }
  }
  if (!rc) {
    layout(e);
    for (int i = 0; i < e->depth && !rc; i++) {
      char nm[64];
      snprintf(nm, sizeof nm, "exits.%d.norm.weight", i);
      rc = read_tensor(&f, nm, dim, 0, e->norms[i].w, err);
      snprintf(nm, sizeof nm, "exits.%d.norm.bias", i);
      if (!rc) rc = read_tensor(&f, nm, dim, 0, e->norms[i].b, err);
      snprintf(nm, sizeof nm, "exits.%d.norm.alpha", i);
      if (!rc && k == NL_NORM_DYT) rc = read_tensor(&f, nm, 1, 0, e->norms[i].alpha, err);
      snprintf(nm, sizeof nm, "exits.%d.head.weight", i);
      if (!rc) rc = read_tensor(&f, nm, classes, dim, e->head_w[i], err);
      snprintf(nm, sizeof nm, "exits.%d.head.bias", i);
      if (!rc) rc = read_tensor(&f, nm, classes, 0, e->head_b[i], err);
    }
  }
  if (!rc && nl_st_find(&f, "policy.weight")) {
    const int64_t K = depth - 1, D = dim;
    e->policy = nl_xmalloc(sizeof(float) * (size_t)(K * D + K + 2 * D));
    float *p = e->policy;
    rc = read_tensor(&f, "policy.weight", K, D, p, err) ||
         read_tensor(&f, "policy.bias", K, 0, p + K * D, err) ||
         read_tensor(&f, "policy.mean", D, 0, p + K * D + K, err) ||
         read_tensor(&f, "policy.std", D, 0, p + K * D + K + D, err);
    const char *ph = meta_str(j, "policy_head");
    if (!rc && ph && strcmp(ph, "final") && strcmp(ph, "last_exit"))
      rc = nl_fail(err, NL_EINPUT, "%s: metadata normlab_exits: 'policy_head' is not final or "
                   "last_exit", path);
    e->policy_exit_head = ph && strcmp(ph, "last_exit") == 0;
    json_t *v = json_object_get(j, "policy_init_tau");
    e->policy_init_tau = json_is_number(v) ? json_number_value(v) : 0;
  }
  if (!rc && nl_st_find(&f, "predictor.weight")) {
    const int64_t K = depth, D = dim;
    long pb = 0;
    rc = meta_int(j, "predictor_block", 0, depth - 1, &pb, path, err);
    e->pred_block = (int)pb;
    e->predictor = nl_xmalloc(sizeof(float) * (size_t)(K * D + K + 2 * D));
    float *p = e->predictor;
    rc = rc || read_tensor(&f, "predictor.weight", K, D, p, err) ||
         read_tensor(&f, "predictor.bias", K, 0, p + K * D, err) ||
         read_tensor(&f, "predictor.mean", D, 0, p + K * D + K, err) ||
         read_tensor(&f, "predictor.std", D, 0, p + K * D + K + D, err);
    for (int64_t j2 = 0; !rc && j2 < D; j2++)
      if (!(p[K * D + K + D + j2] > 0))
        rc = nl_fail(err, NL_EINPUT, "%s: tensor 'predictor.std' holds a value that is not "
                     "positive", path);
  } else if (!rc && json_object_get(j, "predictor_block"))
    rc = nl_fail(err, NL_EINPUT, "%s: metadata names a predictor_block but there is no tensor "
                 "'predictor.weight'", path);
  json_decref(j);
  nl_st_close(&f);
  if (rc) nl_exits_free(e);
  return rc ? -1 : 0;
}

int nl_exits_check(const nl_exits *e, const nl_vit *m, const char *exits_path, int any_weights,
                   nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  if (e->depth != c->depth || e->dim != c->dim || e->classes != c->classes ||
      e->tokens != c->tokens || e->avg_pool != c->avg_pool || e->class_token != c->class_token)
    return nl_fail(err, NL_EINPUT,
                   "%s: exit heads for another model: depth %d, width %d, %d classes, %d tokens "
                   "(%s pooling), the model has depth %d, width %d, %d classes, %d tokens (%s "
                   "pooling)",
                   exits_path, e->depth, e->dim, e->classes, e->tokens,
                   e->avg_pool ? "avg" : "token", c->depth, c->dim, c->classes, c->tokens,
                   c->avg_pool ? "avg" : "token");
  if (e->kind != m->final_norm->kind)
    return nl_fail(err, NL_EINPUT, "%s: exit heads with %s norms, the model's %s is %s",
                   exits_path, nl_norm_kind_name(e->kind), m->final_norm->name,
                   nl_norm_kind_name(m->final_norm->kind));
  char h[17];
  nl_vit_hash(m, h);
  if (!any_weights && strcmp(h, e->model_hash) != 0)
    return nl_fail(err, NL_EINPUT,
                   "%s: exit heads fitted on another model (%s, weights hash %s; this model's "
                   "is %s): fit them on this model, or give --any-weights to use them anyway",
                   exits_path, e->model[0] ? e->model : "unnamed", e->model_hash, h);
  return 0;
}

void nl_exits_head(const nl_exits *e, int k, const float *feat, int n, float *logits,
                   float *scratch) {
  nl_norm_forward(&e->norms[k], scratch, NULL, NULL, NULL, NULL, feat, n, e->dim, e->eps, NULL);
  nl_linear_forward(logits, scratch, e->head_w[k], e->head_b[k], n, e->dim, e->classes);
}

/* ---- workspace and the packed pass ---- */

int nl_exits_ws_init(nl_exits_ws *w, const nl_vit *m, int batch, int threads, nl_error *err) {
  memset(w, 0, sizeof *w);
  if (nl_vit_acts_init(&w->acts, &m->cfg, batch, 0, err)) return -1;
  w->acts.threads = threads;
  const nl_vit_config *c = &m->cfg;
  const size_t B = (size_t)batch, D = (size_t)c->dim;
  w->x = nl_aalloc(sizeof(float) * B * c->tokens * D);
  w->x2 = nl_aalloc(sizeof(float) * B * c->tokens * D);
  w->mask = nl_xcalloc(B * (size_t)c->depth, 1);
  w->pooled = nl_aalloc(sizeof(float) * B * D);
  w->scratch = nl_aalloc(sizeof(float) * B * D);
  w->logits = nl_aalloc(sizeof(float) * B * c->classes);
  w->idx = nl_xmalloc(sizeof(int) * B);
  w->start = nl_xmalloc(sizeof(int) * B);
  w->prob = nl_xmalloc(sizeof(float) * B * (size_t)c->depth);
  return 0;
}

void nl_exits_ws_free(nl_exits_ws *w) {
  nl_vit_acts_free(&w->acts);
  nl_afree(w->x);
  nl_afree(w->x2);
  free(w->mask);
  nl_afree(w->pooled);
  nl_afree(w->scratch);
  nl_afree(w->logits);
  free(w->idx);
  free(w->start);
  free(w->prob);
  memset(w, 0, sizeof *w);
}

/* Top softmax probability (in double) and its class (first of ties). */
static double top_prob(const float *l, int C, int *arg) {
  int a = 0;
  for (int j = 1; j < C; j++)
    if (l[j] > l[a]) a = j;
  double s = 0;
  for (int j = 0; j < C; j++) s += exp((double)l[j] - (double)l[a]);
  if (arg) *arg = a;
  return 1.0 / s;
}

static void pool(const nl_exits *e, float *out, const float *x, int n) {
  nl_pool_forward(out, x, e->avg_pool ? NL_POOL_AVG : NL_POOL_TOKEN, e->class_token, n, e->tokens,
                  e->dim);
}

static int pred_start(const float *prob, int depth, int F, double q);

/* The packed pass; with use_pred, an image's exits are checked from its
 * predicted start on (before F none are). */
static int forward_impl(const nl_vit *m, const nl_exits *e, nl_exits_ws *w, const float *images,
                        int n, int use_pred, double q, double tau, float *logits, int *blocks,
                        int *heads, nl_error *err) {
  const int depth = m->cfg.depth, C = e->classes, D = e->dim;
  const int F = use_pred ? e->pred_block : 0;
  const size_t TD = (size_t)e->tokens * e->dim;
  if (nl_vit_embed(m, &w->acts, images, n, w->x, err)) return -1;
  for (int i = 0; i < n; i++) {
    w->idx[i] = i;
    w->start[i] = F;
    if (heads) heads[i] = 0;
  }
  int live = n;
  for (int k = 0; k < depth && live > 0; k++) {
    if (nl_vit_block_run(m, &w->acts, k, w->x, live, err)) return -1;
    const int last = k == depth - 1;
    if (!last && tau >= 1) continue;
    int pooled = 0, outer = -1;
    if (use_pred && k == F) {
      outer = nl_threads_enter(w->acts.threads);
      pool(e, w->pooled, w->x, live);
      pooled = 1;
      nl_exits_pred_probs(e, w->pooled, live, w->prob, w->scratch);
      for (int i = 0; i < live; i++) w->start[i] = pred_start(w->prob + (size_t)i * depth, depth, F, q);
    }
    int sel = 0;
    for (int i = 0; i < live; i++) sel += last || w->start[i] <= k;
    if (sel == 0) {
      if (outer >= 0) nl_threads_leave(outer);
      continue;
    }
    if (outer < 0) outer = nl_threads_enter(w->acts.threads);
    if (!pooled) pool(e, w->pooled, w->x, live);
    const float *hin = w->pooled;
    if (sel < live) { /* the rows that check: gathered into x2 */
      for (int i = 0, r = 0; i < live; i++)
        if (w->start[i] <= k)
          memcpy(w->x2 + (size_t)r++ * D, w->pooled + (size_t)i * D, sizeof(float) * D);
      hin = w->x2;
    }
    nl_exits_head(e, k, hin, sel, w->logits, w->scratch);
    nl_threads_leave(outer);
    int keep = 0;
    for (int i = 0, r = 0; i < live; i++) {
      int checks = last || w->start[i] <= k, leave = 0;
      const float *l = NULL;
      if (checks) {
        l = w->logits + (size_t)r++ * C;
        if (heads) heads[w->idx[i]]++;
        leave = last || top_prob(l, C, NULL) > tau;
      }
      if (leave) {
        memcpy(logits + (size_t)w->idx[i] * C, l, sizeof(float) * C);
        blocks[w->idx[i]] = k + 1;
      } else {
        if (keep != i) {
          memmove(w->x + (size_t)keep * TD, w->x + (size_t)i * TD, sizeof(float) * TD);
          w->idx[keep] = w->idx[i];
          w->start[keep] = w->start[i];
          nl_vit_acts_reuse_move(&w->acts, m, keep, i); /* a reuse plan's kept attention */
        }
        keep++;
      }
    }
    live = keep;
  }
  return 0;
}

int nl_exits_forward(const nl_vit *m, const nl_exits *e, nl_exits_ws *w, const float *images,
                     int n, double tau, float *logits, int *blocks, nl_error *err) {
  return forward_impl(m, e, w, images, n, 0, 0, tau, logits, blocks, NULL, err);
}

int nl_exits_pred_forward(const nl_vit *m, const nl_exits *e, nl_exits_ws *w, const float *images,
                          int n, double q, double tau, float *logits, int *blocks, int *heads,
                          nl_error *err) {
  if (!e->predictor) return nl_fail(err, NL_EINPUT, "the exit heads have no complexity predictor");
  return forward_impl(m, e, w, images, n, 1, q, tau, logits, blocks, heads, err);
}

/* ---- recording ---- */

/* Run the backbone over d; after every block, cb(k, pooled [nb, D], first
 * image, nb). */
typedef void (*block_cb)(int k, const float *pooled, int first, int nb, void *user,
                         nl_exits_ws *w);

static int over_blocks(const nl_vit *m, const nl_exits *e, const nl_dataset *d, int batch,
                       int threads, block_cb cb, void *user, nl_error *err) {
  if (nl_vit_check_data(m, d, NULL, err) || nl_vit_check_finite(m, NULL, err)) return -1;
  if (batch < 1) batch = 100;
  nl_exits_ws w;
  if (nl_exits_ws_init(&w, m, batch, threads, err)) return -1;
  const nl_vit_config *c = &m->cfg;
  float *img = nl_aalloc(sizeof(float) * (size_t)batch * c->in_chans * c->img_size * c->img_size);
  int rc = 0;
  for (int i = 0; i < d->n && !rc; i += batch) {
    int nb = d->n - i < batch ? d->n - i : batch;
    nl_dataset_normalize(d, i, nb, c->in_chans, c->nmean, c->mean, c->std, img);
    rc = nl_vit_embed(m, &w.acts, img, nb, w.x, err);
    for (int k = 0; k < c->depth && !rc; k++) {
      rc = nl_vit_block_run(m, &w.acts, k, w.x, nb, err);
      if (rc) break;
      int outer = nl_threads_enter(threads);
      pool(e, w.pooled, w.x, nb);
      cb(k, w.pooled, i, nb, user, &w);
      nl_threads_leave(outer);
    }
  }
  nl_afree(img);
  nl_exits_ws_free(&w);
  return rc;
}

typedef struct {
  float *feat;
  int depth, dim;
} feat_rec;

static void rec_feat(int k, const float *pooled, int first, int nb, void *user, nl_exits_ws *w) {
  (void)w;
  feat_rec *r = user;
  for (int i = 0; i < nb; i++)
    memcpy(r->feat + ((size_t)(first + i) * r->depth + k) * r->dim, pooled + (size_t)i * r->dim,
           sizeof(float) * r->dim);
}

int nl_exits_features(const nl_vit *m, const nl_dataset *d, int batch, int threads, float **feat,
                      nl_error *err) {
  nl_exits shape;
  shape_of(&shape, m);
  feat_rec r = {NULL, m->cfg.depth, m->cfg.dim};
  r.feat = nl_try_alloc((size_t)d->n * r.depth * r.dim, sizeof(float));
  if (!r.feat)
    return nl_fail(err, NL_ENOMEM, "cannot allocate %.1f MB of features",
                   (double)d->n * r.depth * r.dim * 4e-6);
  if (over_blocks(m, &shape, d, batch, threads, rec_feat, &r, err)) {
    free(r.feat);
    return -1;
  }
  *feat = r.feat;
  return 0;
}

typedef struct {
  const nl_exits *e;
  nl_exits_table *t;
} table_rec;

static void rec_table(int k, const float *pooled, int first, int nb, void *user, nl_exits_ws *w) {
  table_rec *r = user;
  const int C = r->e->classes, depth = r->t->depth;
  if (r->t->pprob && k == r->t->pred_block)
    nl_exits_pred_probs(r->e, pooled, nb, r->t->pprob + (size_t)first * depth, w->scratch);
  nl_exits_head(r->e, k, pooled, nb, w->logits, w->scratch);
  for (int i = 0; i < nb; i++) {
    size_t at = (size_t)(first + i) * depth + k;
    r->t->pmax[at] = (float)top_prob(w->logits + (size_t)i * C, C, &r->t->pred[at]);
  }
}

int nl_exits_table_make(const nl_vit *m, const nl_exits *e, const nl_dataset *d, int batch,
                        int threads, nl_exits_table *t, nl_error *err) {
  memset(t, 0, sizeof *t);
  t->n = d->n;
  t->depth = m->cfg.depth;
  t->pred = nl_xmalloc(sizeof(int) * (size_t)d->n * t->depth);
  t->pmax = nl_xmalloc(sizeof(float) * (size_t)d->n * t->depth);
  t->label = nl_xmalloc(sizeof(int) * (size_t)(d->n ? d->n : 1));
  for (int i = 0; i < d->n; i++) t->label[i] = d->labels[i];
  if (e->predictor) {
    t->pprob = nl_xmalloc(sizeof(float) * (size_t)(d->n ? d->n : 1) * t->depth);
    t->pred_block = e->pred_block;
  }
  table_rec r = {e, t};
  if (over_blocks(m, e, d, batch, threads, rec_table, &r, err)) {
    nl_exits_table_free(t);
    return -1;
  }
  return 0;
}

void nl_exits_table_free(nl_exits_table *t) {
  free(t->pred);
  free(t->pmax);
  free(t->label);
  free(t->pprob);
  memset(t, 0, sizeof *t);
}

/* ---- rules ---- */

void nl_exits_rule(const nl_exits_table *t, double tau, nl_exits_stats *s, int *blocks) {
  memset(s, 0, sizeof *s);
  double nb = 0;
  for (int i = 0; i < t->n; i++) {
    const int *p = t->pred + (size_t)i * t->depth;
    const float *q = t->pmax + (size_t)i * t->depth;
    int k = t->depth - 1;
    if (tau < 1)
      for (int j = 0; j < t->depth - 1; j++)
        if ((double)q[j] > tau) {
          k = j;
          break;
        }
    nb += k + 1;
    s->top1 += p[k] == t->label[i];
    if (blocks) blocks[i] = k + 1;
  }
  s->images = t->n;
  s->mean_blocks = t->n ? nb / t->n : 0;
  s->mean_heads = tau < 1 ? s->mean_blocks : 1;
}

void nl_exits_full(const nl_exits_table *t, nl_exits_stats *s) { nl_exits_rule(t, 1.0, s, NULL); }

void nl_exits_oracle(const nl_exits_table *t, nl_exits_stats *s, int *blocks) {
  memset(s, 0, sizeof *s);
  double nb = 0;
  for (int i = 0; i < t->n; i++) {
    const int *p = t->pred + (size_t)i * t->depth;
    int fin = p[t->depth - 1], k = 0;
    while (p[k] != fin) k++;
    nb += k + 1;
    s->top1 += fin == t->label[i];
    if (blocks) blocks[i] = k + 1;
  }
  s->images = t->n;
  s->mean_blocks = t->n ? nb / t->n : 0;
  s->mean_heads = 1;
}

int nl_exits_tau_grid(double *tau, int cap) {
  int n = 0;
#define PUT(v)                    \
  do {                            \
    if (tau && n < cap) tau[n] = (v); \
    n++;                          \
  } while (0)
  for (int i = 10; i <= 99; i++) PUT(i / 100.0);
  for (int j = 1; j <= 40; j++) PUT(1 - pow(10, -(2 + j / 8.0)));
  PUT(1.0);
#undef PUT
  return n;
}

double nl_exits_pick_tau(const nl_exits_table *t, double max_drop, nl_exits_stats *s) {
  nl_exits_stats full, cur;
  nl_exits_full(t, &full);
  double grid[256];
  int ng = nl_exits_tau_grid(grid, 256);
  double best = 1.0;
  *s = full;
  for (int g = 0; g < ng; g++) {
    nl_exits_rule(t, grid[g], &cur, NULL);
    double drop = t->n ? 100.0 * (double)(full.top1 - cur.top1) / t->n : 0;
    if (drop <= max_drop + 1e-12 && cur.mean_blocks <= s->mean_blocks) {
      best = grid[g];
      *s = cur;
    }
  }
  return best;
}

double nl_exits_flops(const nl_vit_config *c, double blocks, double heads) {
  nl_vit_config z = *c;
  z.depth = 0;
  double f0 = nl_vit_flops_per_image(&z);
  z.depth = 1;
  double blk = nl_vit_flops_per_image(&z) - f0;
  z.depth = 0;
  z.classes = 0;
  double head = f0 - nl_vit_flops_per_image(&z);
  return f0 + blocks * blk + (heads - 1) * head;
}

/* ---- training ---- */

void nl_exits_fit_opts_default(nl_exits_fit_opts *o) {
  memset(o, 0, sizeof *o);
  o->epochs = 10;
  o->batch = 128;
  o->lr = 2e-3f;
  o->weight_decay = 1e-4f;
}

/* Mean cross-entropy of exit k on all features. */
static double exit_loss(const nl_exits *e, int k, const float *feat, const int32_t *labels, int n,
                        int B, float *xb, float *nb, float *lg, int32_t *lb) {
  const int D = e->dim, depth = e->depth;
  double sum = 0;
  for (int i = 0; i < n; i += B) {
    int m = n - i < B ? n - i : B;
    for (int r = 0; r < m; r++) {
      memcpy(xb + (size_t)r * D, feat + ((size_t)(i + r) * depth + k) * D, sizeof(float) * D);
      lb[r] = labels[i + r];
    }
    nl_exits_head(e, k, xb, m, lg, nb);
    sum += nl_tr_ce_loss(NULL, lg, lb, m, e->classes) * m;
  }
  return n ? sum / n : 0;
}

int nl_exits_fit(nl_exits *e, const float *feat, const int32_t *labels, int n,
                 const nl_exits_fit_opts *o, double *loss, nl_error *err) {
  nl_exits_fit_opts def;
  if (!o) {
    nl_exits_fit_opts_default(&def);
    o = &def;
  }
  if (n < 1) return nl_fail(err, NL_EINPUT, "no images to fit the exit heads on");
  if (o->epochs < 1 || o->batch < 1 || !(o->lr > 0))
    return nl_fail(err, NL_EINPUT, "exits fit: epochs, batch and lr must be positive");
  for (int i = 0; i < n; i++)
    if (labels[i] >= e->classes)
      return nl_fail(err, NL_EINPUT, "image %d has label %d, the model has %d classes", i,
                     labels[i], e->classes);
  const int D = e->dim, C = e->classes, depth = e->depth, B = o->batch;
  float *xb = nl_aalloc(sizeof(float) * (size_t)B * D), *nb = nl_aalloc(sizeof(float) * (size_t)B * D);
  float *dn = nl_aalloc(sizeof(float) * (size_t)B * D), *fx = nl_aalloc(sizeof(float) * (size_t)B * D);
  float *dfx = nl_aalloc(sizeof(float) * (size_t)B * D), *lg = nl_aalloc(sizeof(float) * (size_t)B * C);
  float *dl = nl_aalloc(sizeof(float) * (size_t)B * C);
  float *mean = nl_xmalloc(sizeof(float) * B), *rstd = nl_xmalloc(sizeof(float) * B);
  int32_t *lb = nl_xmalloc(sizeof(int32_t) * B);
  int *order = nl_xmalloc(sizeof(int) * n);
  const size_t per = exit_floats(D, C);
  float *grad = nl_aalloc(sizeof(float) * per);
  int outer = nl_threads_enter(o->threads);
  const double t0 = nl_now();
  for (int k = 0; k < depth - 1; k++) {
    nl_norm *nm = &e->norms[k];
    float *gw = grad + (nm->w - nm->w), *gb = grad + (nm->b - nm->w), *ga = grad + (nm->alpha - nm->w);
    float *ghw = grad + (e->head_w[k] - nm->w), *ghb = grad + (e->head_b[k] - nm->w);
    nl_tr_adamw opt;
    nl_tr_adamw_init(&opt, o->lr, o->weight_decay);
    nl_tr_adamw_add(&opt, "norm.weight", nm->w, gw, (size_t)D, NL_TR_GROUP_AFFINE, 0);
    nl_tr_adamw_add(&opt, "norm.bias", nm->b, gb, (size_t)D, NL_TR_GROUP_AFFINE, 0);
    if (e->kind == NL_NORM_DYT) nl_tr_adamw_add(&opt, "norm.alpha", nm->alpha, ga, 1, NL_TR_GROUP_ALPHA, 0);
    nl_tr_adamw_add(&opt, "head.weight", e->head_w[k], ghw, (size_t)C * D, NL_TR_GROUP_BACKBONE, 1);
    nl_tr_adamw_add(&opt, "head.bias", e->head_b[k], ghb, (size_t)C, NL_TR_GROUP_BACKBONE, 0);
    nl_rng rng;
    nl_rng_stream(&rng, o->seed, (uint64_t)k);
    for (int i = 0; i < n; i++) order[i] = i;
    double last = 0;
    for (int ep = 0; ep < o->epochs; ep++) {
      nl_rng_shuffle(&rng, order, n);
      double sum = 0;
      for (int i = 0; i < n; i += B) {
        int m = n - i < B ? n - i : B;
        for (int r = 0; r < m; r++) {
          memcpy(xb + (size_t)r * D, feat + ((size_t)order[i + r] * depth + k) * D,
                 sizeof(float) * D);
          lb[r] = labels[order[i + r]];
        }
        nl_tr_adamw_zero_grad(&opt);
        nl_norm_forward(nm, nb, mean, rstd, fx, dfx, xb, m, D, e->eps, NULL);
        nl_linear_forward(lg, nb, e->head_w[k], e->head_b[k], m, D, C);
        memset(dl, 0, sizeof(float) * (size_t)m * C);
        sum += nl_tr_ce_loss(dl, lg, lb, m, C) * m;
        memset(dn, 0, sizeof(float) * (size_t)m * D);
        nl_tr_linear_backward(dn, ghw, ghb, dl, nb, e->head_w[k], m, D, C);
        switch (e->kind) {
          case NL_NORM_LAYERNORM:
            nl_tr_layernorm_backward(NULL, gw, gb, dn, xb, nm->w, mean, rstd, m, D);
            break;
          case NL_NORM_DYT:
            nl_tr_dyt_backward(NULL, ga, gw, gb, dn, xb, *nm->alpha, nm->w, m, D);
            break;
          case NL_NORM_EXPR:
            nl_tr_pwnorm_backward(NULL, gw, gb, dn, fx, dfx, nm->w, m, D);
            break;
        }
        nl_tr_adamw_step(&opt, 1.0f);
      }
      last = sum / n;
    }
    nl_tr_adamw_free(&opt);
    if (o->progress) {
      const char *keys[1] = {"loss"};
      double vals[1] = {last};
      nl_progress p = {.task = "exits fit", .label = nm->name, .done = k + 1, .total = depth - 1,
                       .elapsed = nl_now() - t0,
                       .nvals = 1, .keys = keys, .vals = vals};
      if (o->progress(&p, o->progress_user)) break;
    }
  }
  if (loss)
    for (int k = 0; k < depth; k++) loss[k] = exit_loss(e, k, feat, labels, n, B, xb, nb, lg, lb);
  nl_threads_leave(outer);
  nl_afree(xb);
  nl_afree(nb);
  nl_afree(dn);
  nl_afree(fx);
  nl_afree(dfx);
  nl_afree(lg);
  nl_afree(dl);
  nl_afree(grad);
  free(mean);
  free(rstd);
  free(lb);
  free(order);
  return 0;
}

/* ---- the block policy ---- */

void nl_exits_policy_opts_default(nl_exits_policy_opts *o) {
  memset(o, 0, sizeof *o);
  o->epochs = 5;
  o->batch = 64;
  o->lr = 0.01f;
  o->init_bias = 2.0f;
  o->init_tau = 0.9;
  o->init_epochs = 5;
}

static void policy_logits(const nl_exits *e, const float *f, int n, float *fh, float *z);
static float sigm(float x);

/* Per image of features [n, depth, D]: every exit's argmax pred and top
 * probability pmax [n, depth]. */
static void feat_decisions(const nl_exits *e, const float *feat, int n, int *pred, float *pmax) {
  const int D = e->dim, C = e->classes, depth = e->depth, B = 256;
  float *xb = nl_aalloc(sizeof(float) * (size_t)B * D), *nb = nl_aalloc(sizeof(float) * (size_t)B * D);
  float *lg = nl_aalloc(sizeof(float) * (size_t)B * C);
  for (int i = 0; i < n; i += B) {
    int m = n - i < B ? n - i : B;
    for (int k = 0; k < depth; k++) {
      for (int r = 0; r < m; r++)
        memcpy(xb + (size_t)r * D, feat + ((size_t)(i + r) * depth + k) * D, sizeof(float) * D);
      nl_exits_head(e, k, xb, m, lg, nb);
      for (int r = 0; r < m; r++) {
        size_t at = (size_t)(i + r) * depth + k;
        pmax[at] = (float)top_prob(lg + (size_t)r * C, C, &pred[at]);
      }
    }
  }
  nl_afree(xb);
  nl_afree(nb);
  nl_afree(lg);
}

/* The start: logistic regression of the logits on the rule's decisions. */
static void policy_init_rule(nl_exits *e, const float *feat, int n, const nl_exits_policy_opts *o,
                             float *gW, float *fh, float *z, float *dz) {
  const int depth = e->depth, K = depth - 1, D = e->dim, B = o->batch;
  int *pred = nl_xmalloc(sizeof(int) * (size_t)n * depth), *jr = nl_xmalloc(sizeof(int) * (size_t)n);
  float *pmax = nl_xmalloc(sizeof(float) * (size_t)n * depth);
  feat_decisions(e, feat, n, pred, pmax);
  for (int i = 0; i < n; i++) {
    int k = depth - 1;
    for (int j = 0; j < depth - 1; j++)
      if ((double)pmax[(size_t)i * depth + j] > o->init_tau) {
        k = j;
        break;
      }
    jr[i] = k; /* blocks 0..k run */
  }
  free(pred);
  free(pmax);
  float *W = e->policy, *bias = W + (size_t)K * D, *gb = gW + (size_t)K * D;
  float *xb = nl_aalloc(sizeof(float) * (size_t)B * D);
  int *order = nl_xmalloc(sizeof(int) * n);
  for (int i = 0; i < n; i++) order[i] = i;
  nl_tr_adamw opt;
  nl_tr_adamw_init(&opt, o->lr, 0);
  nl_tr_adamw_add(&opt, "policy.weight", W, gW, (size_t)K * D, NL_TR_GROUP_BACKBONE, 0);
  nl_tr_adamw_add(&opt, "policy.bias", bias, gb, (size_t)K, NL_TR_GROUP_BACKBONE, 0);
  nl_rng rng;
  nl_rng_stream(&rng, o->seed, 7);
  for (int ep = 0; ep < o->init_epochs; ep++) {
    nl_rng_shuffle(&rng, order, n);
    for (int i = 0; i < n; i += B) {
      int m = n - i < B ? n - i : B;
      for (int r = 0; r < m; r++)
        memcpy(xb + (size_t)r * D, feat + (size_t)order[i + r] * depth * D, sizeof(float) * D);
      policy_logits(e, xb, m, fh, z);
      for (int r = 0; r < m; r++)
        for (int k = 0; k < K; k++) {
          float y = k + 1 <= jr[order[i + r]];
          dz[(size_t)r * K + k] = (sigm(z[(size_t)r * K + k]) - y) / m;
        }
      nl_tr_adamw_zero_grad(&opt);
      nl_tr_linear_backward(NULL, gW, gb, dz, fh, W, m, D, K);
      nl_tr_adamw_step(&opt, 1.0f);
    }
  }
  nl_tr_adamw_free(&opt);
  nl_afree(xb);
  free(order);
  free(jr);
}

double nl_exits_policy_flops(const nl_exits *e) { return 2.0 * e->dim * (e->depth - 1); }

static float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Policy logits z [n, depth-1] of pooled block-0 outputs f [n, D]; fh
 * [n, D] gets the standardised features. */
static void policy_logits(const nl_exits *e, const float *f, int n, float *fh, float *z) {
  const int D = e->dim, K = e->depth - 1;
  const float *W = e->policy, *b = W + (size_t)K * D, *mu = b + K, *sd = mu + D;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < D; j++) fh[(size_t)i * D + j] = (f[(size_t)i * D + j] - mu[j]) / sd[j];
  nl_linear_forward(z, fh, W, b, n, D, K);
}

/* Blocks 1..depth-1 over w->x [n, T, D] as w->mask [n, depth] says; then
 * the model's own norm and head (the last exit) into w->logits. */
static int run_masked(const nl_vit *m, const nl_exits *e, nl_exits_ws *w, int n, nl_error *err) {
  const int depth = m->cfg.depth;
  const size_t TD = (size_t)e->tokens * e->dim;
  for (int k = 1; k < depth; k++) {
    int c = 0;
    for (int i = 0; i < n; i++) c += w->mask[(size_t)i * depth + k];
    if (c == 0) continue;
    if (c == n) {
      if (nl_vit_block_run(m, &w->acts, k, w->x, n, err)) return -1;
      continue;
    }
    for (int i = 0, r = 0; i < n; i++)
      if (w->mask[(size_t)i * depth + k]) memcpy(w->x2 + TD * r++, w->x + TD * i, sizeof(float) * TD);
    if (nl_vit_block_run(m, &w->acts, k, w->x2, c, err)) return -1;
    for (int i = 0, r = 0; i < n; i++)
      if (w->mask[(size_t)i * depth + k]) memcpy(w->x + TD * i, w->x2 + TD * r++, sizeof(float) * TD);
  }
  int outer = nl_threads_enter(w->acts.threads);
  pool(e, w->pooled, w->x, n);
  if (!e->policy_exit_head) {
    nl_exits_head(e, depth - 1, w->pooled, n, w->logits, w->scratch);
  } else { /* per last block run, its images gathered, that exit's head */
    const int D = e->dim, C = e->classes;
    float *g = w->x2, *gl = nl_xmalloc(sizeof(float) * (size_t)n * C);
    for (int k = 0; k < depth; k++) {
      int c = 0;
      for (int i = 0; i < n; i++) {
        int last = 0;
        for (int j = 0; j < depth; j++)
          if (w->mask[(size_t)i * depth + j]) last = j;
        if (last == k) memcpy(g + (size_t)c++ * D, w->pooled + (size_t)i * D, sizeof(float) * D);
      }
      if (c == 0) continue;
      nl_exits_head(e, k, g, c, gl, w->scratch);
      for (int i = 0, r = 0; i < n; i++) {
        int last = 0;
        for (int j = 0; j < depth; j++)
          if (w->mask[(size_t)i * depth + j]) last = j;
        if (last == k) memcpy(w->logits + (size_t)i * C, gl + (size_t)r++ * C, sizeof(float) * C);
      }
    }
    free(gl);
  }
  nl_threads_leave(outer);
  return 0;
}

/* Embedding and block 0 of n images into w->x, pooled into w->pooled. */
static int first_block(const nl_vit *m, const nl_exits *e, nl_exits_ws *w, const float *images,
                       int n, nl_error *err) {
  if (nl_vit_embed(m, &w->acts, images, n, w->x, err) ||
      nl_vit_block_run(m, &w->acts, 0, w->x, n, err))
    return -1;
  int outer = nl_threads_enter(w->acts.threads);
  pool(e, w->pooled, w->x, n);
  nl_threads_leave(outer);
  return 0;
}

int nl_exits_policy_forward(const nl_vit *m, const nl_exits *e, nl_exits_ws *w,
                            const float *images, int n, float *logits, int *blocks,
                            nl_error *err) {
  if (!e->policy) return nl_fail(err, NL_EINPUT, "the exit heads have no block policy");
  if (m->reuse)
    return nl_fail(err, NL_EINPUT, "the block policy skips blocks per image, which an attention-"
                   "reuse plan's sources must run: use the threshold rule with a plan");
  const int depth = m->cfg.depth, K = depth - 1, C = e->classes;
  if (first_block(m, e, w, images, n, err)) return -1;
  float *z = nl_xmalloc(sizeof(float) * (size_t)n * (K ? K : 1));
  int outer = nl_threads_enter(w->acts.threads);
  policy_logits(e, w->pooled, n, w->scratch, z);
  nl_threads_leave(outer);
  for (int i = 0; i < n; i++) {
    w->mask[(size_t)i * depth] = 1;
    blocks[i] = 1;
    for (int k = 1; k < depth; k++) {
      int on = z[(size_t)i * K + k - 1] > 0;
      w->mask[(size_t)i * depth + k] = (unsigned char)on;
      blocks[i] += on;
    }
  }
  free(z);
  if (run_masked(m, e, w, n, err)) return -1;
  memcpy(logits, w->logits, sizeof(float) * (size_t)n * C);
  return 0;
}

int nl_exits_policy_fit(const nl_vit *m, nl_exits *e, const nl_dataset *d,
                        const nl_exits_policy_opts *o, nl_error *err) {
  nl_exits_policy_opts def;
  if (!o) {
    nl_exits_policy_opts_default(&def);
    o = &def;
  }
  if (d->n < 1) return nl_fail(err, NL_EINPUT, "no images to train the block policy on");
  if (o->epochs < (o->init_feat ? 0 : 1) || o->batch < 1 || !(o->lr > 0))
    return nl_fail(err, NL_EINPUT, "exits policy: epochs, batch and lr must be positive");
  if (o->init_feat && !(o->init_tau >= 0 && o->init_tau <= 1))
    return nl_fail(err, NL_EINPUT, "exits policy: the start's threshold %g is not in [0, 1]", o->init_tau);
  if (nl_vit_check_data(m, d, NULL, err) || nl_vit_check_finite(m, NULL, err)) return -1;
  const nl_vit_config *c = &m->cfg;
  const int depth = c->depth, K = depth - 1, D = e->dim, C = e->classes, B = o->batch;
  if (K < 1) return nl_fail(err, NL_EINPUT, "a policy needs two blocks or more");
  const size_t CHW = (size_t)c->in_chans * c->img_size * c->img_size;
  nl_exits_ws w;
  if (nl_exits_ws_init(&w, m, B, o->threads, err)) return -1;
  float *img = nl_aalloc(sizeof(float) * B * CHW);
  free(e->policy);
  e->policy = nl_xcalloc((size_t)K * D + K + 2 * D, sizeof(float));
  float *W = e->policy, *bias = W + (size_t)K * D, *mu = bias + K, *sd = mu + D;
  int rc = 0;
  /* standardisation of the block-0 features over all images */
  double *s1 = nl_xcalloc((size_t)D, sizeof(double)), *s2 = nl_xcalloc((size_t)D, sizeof(double));
  for (int i = 0; i < d->n && !rc; i += B) {
    int nb = d->n - i < B ? d->n - i : B;
    nl_dataset_normalize(d, i, nb, c->in_chans, c->nmean, c->mean, c->std, img);
    rc = first_block(m, e, &w, img, nb, err);
    for (int r = 0; r < nb && !rc; r++)
      for (int j = 0; j < D; j++) {
        double v = w.pooled[(size_t)r * D + j];
        s1[j] += v;
        s2[j] += v * v;
      }
  }
  for (int j = 0; j < D; j++) {
    double mean = s1[j] / d->n, var = s2[j] / d->n - mean * mean;
    mu[j] = (float)mean;
    sd[j] = (float)sqrt(var > 1e-12 ? var : 1e-12);
  }
  free(s1);
  free(s2);
  for (int k = 0; k < K; k++) bias[k] = o->init_bias;
  e->policy_exit_head = o->exit_head != 0;
  e->policy_init_tau = o->init_feat ? o->init_tau : 0;
  float *gW = nl_xcalloc((size_t)K * D + K, sizeof(float)), *gb = gW + (size_t)K * D;
  float *fh = nl_aalloc(sizeof(float) * (size_t)B * D), *z = nl_xmalloc(sizeof(float) * (size_t)B * K);
  float *dz = nl_xmalloc(sizeof(float) * (size_t)B * K);
  const double penalty = o->penalty > 0 ? o->penalty : 1;
  const size_t TD = (size_t)c->tokens * D;
  float *x0 = o->greedy_baseline ? nl_aalloc(sizeof(float) * (size_t)B * TD) : NULL;
  double *rg = nl_xcalloc((size_t)B, sizeof(double));
  if (!rc && o->init_feat) {
    int outer = nl_threads_enter(o->threads);
    policy_init_rule(e, o->init_feat, d->n, o, gW, fh, z, dz);
    nl_threads_leave(outer);
  }
  int *order = nl_xmalloc(sizeof(int) * d->n);
  for (int i = 0; i < d->n; i++) order[i] = i;
  nl_tr_adamw opt;
  nl_tr_adamw_init(&opt, o->lr, 0);
  nl_tr_adamw_add(&opt, "policy.weight", W, gW, (size_t)K * D, NL_TR_GROUP_BACKBONE, 0);
  nl_tr_adamw_add(&opt, "policy.bias", bias, gb, (size_t)K, NL_TR_GROUP_BACKBONE, 0);
  nl_rng rng;
  nl_rng_seed(&rng, o->seed);
  double baseline = 0;
  int have_base = 0;
  const double t0 = nl_now();
  for (int ep = 0; ep < o->epochs && !rc; ep++) {
    nl_rng_shuffle(&rng, order, d->n);
    double rsum = 0, bsum = 0;
    long right = 0;
    for (int i = 0; i < d->n && !rc; i += B) {
      int nb = d->n - i < B ? d->n - i : B;
      for (int r = 0; r < nb; r++)
        nl_dataset_normalize(d, order[i + r], 1, c->in_chans, c->nmean, c->mean, c->std,
                             img + CHW * r);
      rc = first_block(m, e, &w, img, nb, err);
      if (rc) break;
      int outer = nl_threads_enter(o->threads);
      policy_logits(e, w.pooled, nb, fh, z);
      nl_threads_leave(outer);
      if (x0) { /* the greedy decisions' rewards: the baseline (self-critical) */
        memcpy(x0, w.x, sizeof(float) * (size_t)nb * TD);
        for (int r = 0; r < nb; r++) {
          w.mask[(size_t)r * depth] = 1;
          for (int k = 0; k < K; k++) w.mask[(size_t)r * depth + k + 1] = z[(size_t)r * K + k] > 0;
        }
        rc = run_masked(m, e, &w, nb, err);
        if (rc) break;
        for (int r = 0; r < nb; r++) {
          const float *l = w.logits + (size_t)r * C;
          int a = 0, used = 0;
          for (int j = 1; j < C; j++)
            if (l[j] > l[a]) a = j;
          for (int k = 0; k < K; k++) used += w.mask[(size_t)r * depth + k + 1];
          double frac = (double)used / K;
          rg[r] = a == d->labels[order[i + r]] ? 1 - frac * frac : -penalty;
        }
        memcpy(w.x, x0, sizeof(float) * (size_t)nb * TD);
      }
      for (int r = 0; r < nb; r++) {
        w.mask[(size_t)r * depth] = 1;
        for (int k = 0; k < K; k++) {
          float p = 0.2f + 0.6f * sigm(z[(size_t)r * K + k]);
          w.mask[(size_t)r * depth + k + 1] = nl_rng_uniform(&rng) < p;
        }
      }
      rc = run_masked(m, e, &w, nb, err);
      if (rc) break;
      double rmean = 0;
      float *R = dz; /* rewards first, then the gradient in place */
      for (int r = 0; r < nb; r++) {
        const float *l = w.logits + (size_t)r * C;
        int a = 0, used = 0;
        for (int j = 1; j < C; j++)
          if (l[j] > l[a]) a = j;
        for (int k = 0; k < K; k++) used += w.mask[(size_t)r * depth + k + 1];
        double frac = (double)used / K;
        double rew = a == d->labels[order[i + r]] ? 1 - frac * frac : -penalty;
        right += a == d->labels[order[i + r]];
        R[(size_t)r * K] = (float)rew;
        rmean += rew;
        bsum += used + 1;
      }
      rmean /= nb;
      rsum += rmean * nb;
      if (!have_base) baseline = rmean, have_base = 1;
      for (int r = nb - 1; r >= 0; r--) {
        double adv = R[(size_t)r * K] - (x0 ? rg[r] : baseline);
        for (int k = 0; k < K; k++) {
          float s = sigm(z[(size_t)r * K + k]), p = 0.2f + 0.6f * s;
          float u = w.mask[(size_t)r * depth + k + 1];
          /* d(-adv log pi(u))/dz, pi = p^u (1-p)^(1-u), dp/dz = 0.6 s (1-s) */
          double dlog = (u - p) / (p * (1 - p)) * 0.6 * s * (1 - s);
          dz[(size_t)r * K + k] = (float)(-adv * dlog / nb);
        }
      }
      baseline = 0.9 * baseline + 0.1 * rmean;
      nl_tr_adamw_zero_grad(&opt);
      outer = nl_threads_enter(o->threads);
      nl_tr_linear_backward(NULL, gW, gb, dz, fh, W, nb, D, K);
      nl_threads_leave(outer);
      nl_tr_adamw_step(&opt, 1.0f);
    }
    if (!rc && o->progress) {
      const char *keys[3] = {"reward", "blocks", "top1"};
      double vals[3] = {rsum / d->n, bsum / d->n, (double)right / d->n};
      nl_progress p = {.task = "exits policy", .done = ep + 1, .total = o->epochs,
                       .elapsed = nl_now() - t0, .nvals = 3, .keys = keys, .vals = vals};
      if (o->progress(&p, o->progress_user)) break;
    }
  }
  nl_tr_adamw_free(&opt);
  nl_afree(x0);
  free(rg);
  free(gW);
  nl_afree(fh);
  free(z);
  free(dz);
  free(order);
  nl_afree(img);
  nl_exits_ws_free(&w);
  return rc;
}

/* ---- the complexity predictor ---- */

void nl_exits_oracle_targets(const nl_exits *e, const float *feat, int n, int32_t *target) {
  const int D = e->dim, C = e->classes, depth = e->depth, B = 256;
  float *xb = nl_aalloc(sizeof(float) * (size_t)B * D), *nb = nl_aalloc(sizeof(float) * (size_t)B * D);
  float *lg = nl_aalloc(sizeof(float) * (size_t)B * C);
  int *pk = nl_xmalloc(sizeof(int) * (size_t)B * depth);
  for (int i = 0; i < n; i += B) {
    int m = n - i < B ? n - i : B;
    for (int k = 0; k < depth; k++) {
      for (int r = 0; r < m; r++)
        memcpy(xb + (size_t)r * D, feat + ((size_t)(i + r) * depth + k) * D, sizeof(float) * D);
      nl_exits_head(e, k, xb, m, lg, nb);
      for (int r = 0; r < m; r++) top_prob(lg + (size_t)r * C, C, &pk[(size_t)r * depth + k]);
    }
    for (int r = 0; r < m; r++) {
      const int *p = pk + (size_t)r * depth;
      int k = 0;
      while (p[k] != p[depth - 1]) k++;
      target[i + r] = k;
    }
  }
  nl_afree(xb);
  nl_afree(nb);
  nl_afree(lg);
  free(pk);
}

void nl_exits_pred_opts_default(nl_exits_pred_opts *o) {
  memset(o, 0, sizeof *o);
  o->epochs = 20;
  o->batch = 128;
  o->lr = 2e-3f;
  o->weight_decay = 1e-4f;
}

double nl_exits_pred_flops(const nl_exits *e) { return 2.0 * e->dim * e->depth; }

/* Logits z [n, depth] of pooled block-F outputs f [n, D]; fh [n, D] gets
 * the standardised features. */
static void pred_logits(const nl_exits *e, const float *f, int n, float *fh, float *z) {
  const int D = e->dim, K = e->depth;
  const float *W = e->predictor, *b = W + (size_t)K * D, *mu = b + K, *sd = mu + D;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < D; j++) fh[(size_t)i * D + j] = (f[(size_t)i * D + j] - mu[j]) / sd[j];
  nl_linear_forward(z, fh, W, b, n, D, K);
}

void nl_exits_pred_probs(const nl_exits *e, const float *f, int n, float *prob, float *scratch) {
  const int K = e->depth;
  pred_logits(e, f, n, scratch, prob);
  for (int i = 0; i < n; i++) {
    float *z = prob + (size_t)i * K;
    float mx = z[0];
    for (int k = 1; k < K; k++)
      if (z[k] > mx) mx = z[k];
    double s = 0;
    for (int k = 0; k < K; k++) s += exp((double)z[k] - mx);
    for (int k = 0; k < K; k++) z[k] = (float)(exp((double)z[k] - mx) / s);
  }
}

static int pred_start(const float *prob, int depth, int F, double q) {
  if (q >= 1) return depth - 1;
  double cum = 0;
  int k = 0;
  for (; k < depth - 1; k++) {
    cum += prob[k];
    if (cum >= q) break;
  }
  return k < F ? F : k;
}

int nl_exits_pred_start(const nl_exits *e, const float *prob, double q) {
  return pred_start(prob, e->depth, e->pred_block, q);
}

int nl_exits_pred_fit(nl_exits *e, const float *feat, const int32_t *target, int n,
                      const nl_exits_pred_opts *o, double *epoch_loss, nl_error *err) {
  nl_exits_pred_opts def;
  if (!o) {
    nl_exits_pred_opts_default(&def);
    o = &def;
  }
  const int D = e->dim, K = e->depth, F = o->block, B = o->batch;
  if (n < 1) return nl_fail(err, NL_EINPUT, "no images to fit the complexity predictor on");
  if (o->epochs < 1 || B < 1 || !(o->lr > 0))
    return nl_fail(err, NL_EINPUT, "exits predictor: epochs, batch and lr must be positive");
  if (F < 0 || F >= K)
    return nl_fail(err, NL_EINPUT, "--predictor-block %d: the model has blocks 0..%d", F, K - 1);
  for (int i = 0; i < n; i++)
    if (target[i] < 0 || target[i] >= K)
      return nl_fail(err, NL_EINPUT, "image %d has target block %d, the model has %d blocks", i,
                     target[i], K);
  free(e->predictor);
  e->predictor = nl_xcalloc((size_t)K * D + K + 2 * D, sizeof(float));
  e->pred_block = F;
  float *W = e->predictor, *bias = W + (size_t)K * D, *mu = bias + K, *sd = mu + D;
  double *s1 = nl_xcalloc((size_t)D, sizeof(double)), *s2 = nl_xcalloc((size_t)D, sizeof(double));
  for (int i = 0; i < n; i++)
    for (int j = 0; j < D; j++) {
      double v = feat[((size_t)i * K + F) * D + j];
      s1[j] += v;
      s2[j] += v * v;
    }
  for (int j = 0; j < D; j++) {
    double mean = s1[j] / n, var = s2[j] / n - mean * mean;
    mu[j] = (float)mean;
    sd[j] = (float)sqrt(var > 1e-12 ? var : 1e-12);
  }
  free(s1);
  free(s2);
  /* start from the targets' frequencies: bias = log prior */
  double *cnt = nl_xcalloc((size_t)K, sizeof(double));
  for (int i = 0; i < n; i++) cnt[target[i]] += 1;
  for (int k = 0; k < K; k++) bias[k] = (float)log((cnt[k] + 1.0) / (n + K));
  free(cnt);
  float *gW = nl_xcalloc((size_t)K * D + K, sizeof(float)), *gb = gW + (size_t)K * D;
  float *xb = nl_aalloc(sizeof(float) * (size_t)B * D), *fh = nl_aalloc(sizeof(float) * (size_t)B * D);
  float *z = nl_aalloc(sizeof(float) * (size_t)B * K), *dz = nl_aalloc(sizeof(float) * (size_t)B * K);
  int32_t *lb = nl_xmalloc(sizeof(int32_t) * B);
  int *order = nl_xmalloc(sizeof(int) * n);
  for (int i = 0; i < n; i++) order[i] = i;
  nl_tr_adamw opt;
  nl_tr_adamw_init(&opt, o->lr, o->weight_decay);
  nl_tr_adamw_add(&opt, "predictor.weight", W, gW, (size_t)K * D, NL_TR_GROUP_BACKBONE, 1);
  nl_tr_adamw_add(&opt, "predictor.bias", bias, gb, (size_t)K, NL_TR_GROUP_BACKBONE, 0);
  nl_rng rng;
  nl_rng_stream(&rng, o->seed, (uint64_t)K + 1000);
  int outer = nl_threads_enter(o->threads);
  for (int ep = 0; ep < o->epochs; ep++) {
    nl_rng_shuffle(&rng, order, n);
    double sum = 0;
    for (int i = 0; i < n; i += B) {
      int m = n - i < B ? n - i : B;
      for (int r = 0; r < m; r++) {
        memcpy(xb + (size_t)r * D, feat + ((size_t)order[i + r] * K + F) * D, sizeof(float) * D);
        lb[r] = target[order[i + r]];
      }
      nl_tr_adamw_zero_grad(&opt);
      pred_logits(e, xb, m, fh, z);
      memset(dz, 0, sizeof(float) * (size_t)m * K);
      sum += nl_tr_ce_loss(dz, z, lb, m, K) * m;
      nl_tr_linear_backward(NULL, gW, gb, dz, fh, W, m, D, K);
      nl_tr_adamw_step(&opt, 1.0f);
    }
    if (epoch_loss) epoch_loss[ep] = sum / n;
  }
  nl_threads_leave(outer);
  nl_tr_adamw_free(&opt);
  free(gW);
  nl_afree(xb);
  nl_afree(fh);
  nl_afree(z);
  nl_afree(dz);
  free(lb);
  free(order);
  return 0;
}

void nl_exits_pred_rule(const nl_exits_table *t, double q, double tau, nl_exits_stats *s,
                        int *blocks) {
  memset(s, 0, sizeof *s);
  double nb = 0, nh = 0;
  const int depth = t->depth;
  for (int i = 0; i < t->n; i++) {
    const int *p = t->pred + (size_t)i * depth;
    const float *pm = t->pmax + (size_t)i * depth;
    int st = t->pprob ? pred_start(t->pprob + (size_t)i * depth, depth, t->pred_block, q) : 0;
    int k = depth - 1;
    if (tau < 1)
      for (int j = st; j < depth - 1; j++)
        if ((double)pm[j] > tau) {
          k = j;
          break;
        }
    nb += k + 1;
    nh += tau < 1 ? k - (st < k ? st : k) + 1 : 1;
    s->top1 += p[k] == t->label[i];
    if (blocks) blocks[i] = k + 1;
  }
  s->images = t->n;
  s->mean_blocks = t->n ? nb / t->n : 0;
  s->mean_heads = t->n ? nh / t->n : 0;
}

int nl_exits_q_grid(double *q, int cap) {
  static const double g[] = {0,    0.01, 0.02, 0.05, 0.1,  0.15, 0.2,  0.25,  0.3,   0.35, 0.4,
                             0.45, 0.5,  0.55, 0.6,  0.65, 0.7,  0.75, 0.8,   0.85,  0.9,  0.95,
                             0.98, 0.99, 0.995, 0.999, 1};
  int n = (int)(sizeof g / sizeof *g);
  for (int i = 0; q && i < n && i < cap; i++) q[i] = g[i];
  return n;
}

void nl_exits_pick_pred(const nl_exits_table *t, double max_drop, double *q, double *tau,
                        nl_exits_stats *s) {
  nl_exits_stats full, cur;
  nl_exits_full(t, &full);
  double qs[64], ts[257];
  int nq = nl_exits_q_grid(qs, 64);
  ts[0] = 0;
  int nt = 1 + nl_exits_tau_grid(ts + 1, 256);
  *q = 1;
  *tau = 1;
  *s = full;
  for (int a = 0; a < nq; a++)
    for (int b = 0; b < nt; b++) {
      nl_exits_pred_rule(t, qs[a], ts[b], &cur, NULL);
      double drop = t->n ? 100.0 * (double)(full.top1 - cur.top1) / t->n : 0;
      if (drop <= max_drop + 1e-12 &&
          (cur.mean_blocks < s->mean_blocks ||
           (cur.mean_blocks == s->mean_blocks && cur.mean_heads < s->mean_heads))) {
        *q = qs[a];
        *tau = ts[b];
        *s = cur;
      }
    }
}

int nl_exits_drop_grid(double *d, int cap) {
  static const double g[] = {0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 50};
  int n = (int)(sizeof g / sizeof *g);
  for (int i = 0; d && i < n && i < cap; i++) d[i] = g[i];
  return n;
}
