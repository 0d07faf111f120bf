/* AdamW, weight-decay and group conventions, learning-rate schedules. */
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

void nl_tr_adamw_init(nl_tr_adamw *o, float lr, float weight_decay) {
  memset(o, 0, sizeof *o);
  for (int g = 0; g < NL_TR_NGROUPS; g++) o->lr[g] = lr;
  o->train_groups = NL_TR_GROUPS_ALL;
  o->beta1 = 0.9f;
  o->beta2 = 0.999f;
  o->eps = 1e-8f;
  o->weight_decay = weight_decay;
}

void nl_tr_adamw_free(nl_tr_adamw *o) {
  free(o->p);
  nl_afree(o->m);
  nl_afree(o->v);
  memset(o, 0, sizeof *o);
}

void nl_tr_adamw_add(nl_tr_adamw *o, const char *name, float *w, float *g, size_t n,
                     nl_tr_group group, int decay) {
  if (o->np == o->cap) {
    o->cap = o->cap ? 2 * o->cap : 32;
    o->p = nl_xrealloc(o->p, (size_t)o->cap * sizeof *o->p);
  }
  nl_tr_param *p = &o->p[o->np++];
  p->name = name;
  p->w = w;
  p->g = g;
  p->n = n;
  p->group = group;
  p->decay = decay;
  p->off = o->total;
  o->total += n;
}

/* One AdamW update of n parameters, one pass over w, g, m, v:
 *   m = b1 m + (1 - b1) g
 *   v = b2 v + (1 - b2) g g
 *   w = w keep - lr (m / bc1) / (sqrt(v / bc2) + eps)
 * each operation rounded once in this order (no contraction into FMA:
 * the vector path uses separate multiplies and adds, -std=c11 keeps the
 * scalar one from contracting, and the square root is correctly rounded
 * both ways), so the AVX-512 path and the scalar tail give the same bits
 * as the scalar formula for every element. */
static void adamw_scalar(float *w, const float *g, float *m, float *v, size_t k0, size_t n,
                         float b1, float b2, float eps, float bc1, float bc2, float lr,
                         float keep) {
  for (size_t k = k0; k < n; k++) {
    m[k] = b1 * m[k] + (1.0f - b1) * g[k];
    v[k] = b2 * v[k] + (1.0f - b2) * g[k] * g[k];
    w[k] = w[k] * keep - lr * (m[k] / bc1) / (sqrtf(v[k] / bc2) + eps);
  }
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>

/* 16 at a time; returns how many it did (a multiple of 16). */
__attribute__((target("avx512f"))) static size_t adamw_avx512(float *w, const float *g, float *m,
                                                              float *v, size_t n, float b1,
                                                              float b2, float eps, float bc1,
                                                              float bc2, float lr, float keep) {
  const __m512 vb1 = _mm512_set1_ps(b1), vb2 = _mm512_set1_ps(b2);
  const __m512 c1 = _mm512_set1_ps(1.0f - b1), c2 = _mm512_set1_ps(1.0f - b2);
  const __m512 veps = _mm512_set1_ps(eps), vbc1 = _mm512_set1_ps(bc1), vbc2 = _mm512_set1_ps(bc2);
  const __m512 vlr = _mm512_set1_ps(lr), vkeep = _mm512_set1_ps(keep);
  size_t k = 0;
  for (; k + 16 <= n; k += 16) {
    const __m512 gk = _mm512_loadu_ps(g + k);
    const __m512 mk = _mm512_add_ps(_mm512_mul_ps(vb1, _mm512_loadu_ps(m + k)),
                                    _mm512_mul_ps(c1, gk));
    const __m512 vk = _mm512_add_ps(_mm512_mul_ps(vb2, _mm512_loadu_ps(v + k)),
                                    _mm512_mul_ps(_mm512_mul_ps(c2, gk), gk));
    const __m512 den = _mm512_add_ps(_mm512_sqrt_ps(_mm512_div_ps(vk, vbc2)), veps);
    const __m512 step = _mm512_div_ps(_mm512_mul_ps(vlr, _mm512_div_ps(mk, vbc1)), den);
    _mm512_storeu_ps(m + k, mk);
    _mm512_storeu_ps(v + k, vk);
    _mm512_storeu_ps(w + k, _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(w + k), vkeep), step));
  }
  return k;
}

static int have_avx512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") != 0;
}
#endif

static void adamw_update(float *w, const float *g, float *m, float *v, size_t n, float b1,
                         float b2, float eps, float bc1, float bc2, float lr, float keep) {
  size_t k = 0;
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
  if (have_avx512()) k = adamw_avx512(w, g, m, v, n, b1, b2, eps, bc1, bc2, lr, keep);
#endif
  adamw_scalar(w, g, m, v, k, n, b1, b2, eps, bc1, bc2, lr, keep);
}

void nl_tr_adamw_step(nl_tr_adamw *o, float lr_mult) {
  if (!o->m) {
    size_t bytes = (o->total ? o->total : 1) * sizeof(float);
    o->m = nl_aalloc(bytes);
    o->v = nl_aalloc(bytes);
    memset(o->m, 0, bytes);
    memset(o->v, 0, bytes);
  }
  o->t++;
  const float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
  const float bc1 = (float)(1.0 - pow(b1, (double)o->t));
  const float bc2 = (float)(1.0 - pow(b2, (double)o->t));
  for (int i = 0; i < o->np; i++) {
    const nl_tr_param *p = &o->p[i];
    if (!(o->train_groups & NL_TR_GROUP_BIT(p->group))) continue;
    const float lr = o->lr[p->group] * lr_mult;
    const float keep = p->decay ? 1.0f - lr * o->weight_decay : 1.0f;
    adamw_update(p->w, p->g, o->m + p->off, o->v + p->off, p->n, b1, b2, eps, bc1, bc2, lr, keep);
  }
}

void nl_tr_adamw_zero_grad(nl_tr_adamw *o) {
  for (int i = 0; i < o->np; i++) memset(o->p[i].g, 0, o->p[i].n * sizeof(float));
}

double nl_tr_clip_grad_norm(nl_tr_adamw *o, double max_norm) {
  double s = 0.0;
  for (int i = 0; i < o->np; i++) {
    const nl_tr_param *p = &o->p[i];
    if (!(o->train_groups & NL_TR_GROUP_BIT(p->group))) continue;
    for (size_t k = 0; k < p->n; k++) s += (double)p->g[k] * p->g[k];
  }
  double norm = sqrt(s);
  if (max_norm > 0.0 && norm > max_norm) {
    float c = (float)(max_norm / (norm + 1e-6));
    for (int i = 0; i < o->np; i++) {
      const nl_tr_param *p = &o->p[i];
      if (!(o->train_groups & NL_TR_GROUP_BIT(p->group))) continue;
      for (size_t k = 0; k < p->n; k++) p->g[k] *= c;
    }
  }
  return norm;
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && strcmp(s + a - b, suf) == 0;
}

int nl_tr_default_decay(const char *name, int ndim) {
  if (ndim <= 1 || ends_with(name, ".bias")) return 0;
  static const char *const nd[] = {"pos_embed", "cls_token", "dist_token", "reg_token"};
  for (size_t i = 0; i < sizeof nd / sizeof nd[0]; i++)
    if (strcmp(name, nd[i]) == 0) return 0;
  return 1;
}

nl_tr_group nl_tr_default_group(const char *name) {
  if (ends_with(name, ".alpha")) return NL_TR_GROUP_ALPHA;
  /* module = the component before the last '.' */
  const char *last = strrchr(name, '.');
  if (!last) return NL_TR_GROUP_BACKBONE;
  const char *mod = last;
  while (mod > name && mod[-1] != '.') mod--;
  size_t len = (size_t)(last - mod);
  if ((len >= 4 && strncmp(mod, "norm", 4) == 0) || (len == 7 && strncmp(mod, "fc_norm", 7) == 0))
    return NL_TR_GROUP_AFFINE;
  return NL_TR_GROUP_BACKBONE;
}

double nl_tr_lr_mult(const nl_tr_sched *s, long step) {
  if (s->kind == NL_TR_SCHED_CONSTANT) return 1.0;
  if (step < 0) return 0.0;
  if (step < s->warmup) return (double)(step + 1) / (double)s->warmup;
  if (step >= s->total) return 0.0;
  const double span = (double)(s->total - s->warmup);
  return 0.5 * (1.0 + cos(3.14159265358979323846 * (double)(step - s->warmup) / span));
}
