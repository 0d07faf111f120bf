/* Quantized Linear layers (see qlinear.h). */
#include "tensor/qlinear.h"

#include <cblas.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "tensor/gemm.h"
#include "tensor/igemm.h"
#include "tensor/layers.h"

/* Loops on the forward's path are vectorized (GCC's -O2 does not). */
#if defined(__GNUC__) && !defined(__clang__)
#define NL_VECTORIZE __attribute__((optimize("tree-vectorize")))
#else
#define NL_VECTORIZE
#endif

/* ---- formulas ---- */

void nl_qrange(int bits, int symmetric, int *qmin, int *qmax) {
  if (symmetric) {
    *qmax = (1 << (bits - 1)) - 1;
    *qmin = -*qmax;
  } else if (bits == 8) {
    *qmin = -128;
    *qmax = 127;
  } else {
    *qmin = 0;
    *qmax = (1 << bits) - 1;
  }
}

int32_t nl_qvalue(float w, float s, int32_t z, int qmin, int qmax) {
  float r = roundf(w / s) + (float)z;
  if (!(r >= (float)qmin)) r = (float)qmin; /* NaN lands at qmin too */
  if (r > (float)qmax) r = (float)qmax;
  return (int32_t)r;
}

void nl_qparams(const float *w, size_t n, int bits, int symmetric, float *scale, int32_t *zero) {
  int qmin, qmax;
  nl_qrange(bits, symmetric, &qmin, &qmax);
  if (symmetric) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(w[i]));
    *scale = fmaxf(m / (float)qmax, 1e-8f);
    *zero = 0;
    return;
  }
  float lo = w[0], hi = w[0];
  for (size_t i = 1; i < n; i++) {
    lo = fminf(lo, w[i]);
    hi = fmaxf(hi, w[i]);
  }
  float s = fmaxf((hi - lo) / (float)(qmax - qmin), 1e-5f);
  float z = (float)qmin - roundf(lo / s);
  if (z < (float)qmin) z = (float)qmin;
  if (z > (float)qmax) z = (float)qmax;
  *scale = s;
  *zero = (int32_t)z;
}

/* ---- storage ---- */

size_t nl_qlinear_row_bytes(int bits, int ic) {
  return bits == 4 ? (size_t)ic / 2 : bits == 3 ? (size_t)ic * 3 / 8 : (size_t)ic;
}

int nl_qlinear_ic_ok(int bits, int ic) {
  return bits == 4 ? ic % 2 == 0 : bits == 3 ? ic % 8 == 0 : 1;
}

void nl_qlinear_alloc(nl_qlinear *q, int oc, int ic, int bits, int ngroups, int symmetric) {
  memset(q, 0, sizeof *q);
  q->oc = oc;
  q->ic = ic;
  q->bits = bits;
  q->ngroups = ngroups;
  q->group = ic / ngroups;
  q->symmetric = symmetric;
  size_t qb = (size_t)oc * nl_qlinear_row_bytes(bits, ic);
  q->q = nl_xcalloc(qb ? qb : 1, 1);
  q->scale = nl_xcalloc((size_t)oc * (size_t)ngroups, sizeof(float));
  q->zero = nl_xcalloc((size_t)oc * (size_t)ngroups, sizeof(int32_t));
}

void nl_qlinear_free(nl_qlinear *q) {
  if (!q) return;
  free(q->q);
  free(q->scale);
  free(q->zero);
  free(q->in_scale);
  nl_afree(q->vnni);
  nl_afree(q->vcomp);
  memset(q, 0, sizeof *q);
}

/* byte of weight (o, k) in the packed copy (tensor/igemm.h's layout) */
static size_t vnni_at(const nl_qlinear *q, int o, int k) {
  const size_t lda = (size_t)nl_igemm_lda(q->ic);
  return (size_t)(o / NL_IGEMM_NR) * NL_IGEMM_NR * lda + (size_t)(k / 4) * NL_IGEMM_NR * 4 +
         (size_t)(o % NL_IGEMM_NR) * 4 + (size_t)(k % 4);
}

int nl_qlinear_pack(nl_qlinear *q, int drop) {
  if (q->vnni) {
    if (drop && q->q) {
      free(q->q);
      q->q = NULL;
    }
    return 1;
  }
  if (q->acts != 8 || q->bits != 8 || !q->q || q->ic > NL_IGEMM_MAX_K || !nl_igemm_available())
    return 0;
  q->vnni = nl_aalloc(nl_igemm_pack_bytes(q->oc, q->ic));
  q->vcomp = nl_aalloc(sizeof(int32_t) * (size_t)((q->oc + NL_IGEMM_NR - 1) / NL_IGEMM_NR) *
                       NL_IGEMM_NR);
  nl_igemm_pack(q->vnni, q->vcomp, (const int8_t *)q->q, q->oc, q->ic);
  if (drop) {
    free(q->q);
    q->q = NULL;
  }
  return 1;
}

void nl_qlinear_raw(const nl_qlinear *q, uint8_t *dst) {
  const size_t n = (size_t)q->oc * nl_qlinear_row_bytes(q->bits, q->ic);
  if (q->q) {
    memcpy(dst, q->q, n);
    return;
  }
  for (int o = 0; o < q->oc; o++)
    for (int k = 0; k < q->ic; k++)
      dst[(size_t)o * q->ic + k] = (uint8_t)q->vnni[vnni_at(q, o, k)];
}

int32_t nl_qlinear_get(const nl_qlinear *q, int o, int k) {
  if (q->bits == 3) {
    const size_t rb = nl_qlinear_row_bytes(3, q->ic), bit = (size_t)k * 3;
    const uint8_t *r = q->q + (size_t)o * rb + bit / 8;
    unsigned v = r[0];
    if (bit % 8 > 5) v |= (unsigned)r[1] << 8; /* the value crosses into the next byte */
    return (int32_t)((v >> (bit % 8)) & 7);
  }
  if (q->bits == 4) {
    uint8_t b = q->q[(size_t)o * (size_t)(q->ic / 2) + (size_t)(k / 2)];
    return (k & 1) ? b >> 4 : b & 15;
  }
  if (!q->q) return q->vnni[vnni_at(q, o, k)];
  return ((const int8_t *)q->q)[(size_t)o * (size_t)q->ic + (size_t)k];
}

void nl_qlinear_set(nl_qlinear *q, int o, int k, int32_t v) {
  if (q->bits == 3) {
    const size_t rb = nl_qlinear_row_bytes(3, q->ic), bit = (size_t)k * 3;
    uint8_t *r = q->q + (size_t)o * rb + bit / 8;
    const unsigned sh = (unsigned)(bit % 8), m = 7u << sh, x = ((unsigned)v & 7u) << sh;
    r[0] = (uint8_t)((r[0] & ~m) | (x & 0xff));
    if (sh > 5) r[1] = (uint8_t)((r[1] & ~(m >> 8)) | (x >> 8));
  } else if (q->bits == 4) {
    uint8_t *b = &q->q[(size_t)o * (size_t)(q->ic / 2) + (size_t)(k / 2)];
    *b = (k & 1) ? (uint8_t)((*b & 15) | ((v & 15) << 4)) : (uint8_t)((*b & 0xf0) | (v & 15));
  } else {
    if (q->vnni) { /* the packed copy and its correction follow */
      int8_t *at = &q->vnni[vnni_at(q, o, k)];
      q->vcomp[o] -= 128 * ((int32_t)(int8_t)v - *at);
      *at = (int8_t)v;
    }
    if (q->q) ((int8_t *)q->q)[(size_t)o * (size_t)q->ic + (size_t)k] = (int8_t)v;
  }
}

int nl_qlinear_quantize(nl_qlinear *q, const float *w, int oc, int ic, int bits, int group,
                        int symmetric) {
  if (oc < 1 || ic < 1 || group < 1 || ic % group || (bits != 8 && bits != 4 && bits != 3) ||
      (bits != 8 && (!nl_qlinear_ic_ok(bits, ic) || symmetric)))
    return -1;
  nl_qlinear_alloc(q, oc, ic, bits, ic / group, symmetric);
  int qmin, qmax;
  nl_qrange(bits, symmetric, &qmin, &qmax);
  for (int o = 0; o < oc; o++)
    for (int g = 0; g < q->ngroups; g++) {
      const float *wg = w + (size_t)o * ic + (size_t)g * group;
      size_t si = (size_t)o * q->ngroups + (size_t)g;
      nl_qparams(wg, (size_t)group, bits, symmetric, &q->scale[si], &q->zero[si]);
      for (int k = 0; k < group; k++)
        nl_qlinear_set(q, o, g * group + k, nl_qvalue(wg[k], q->scale[si], q->zero[si], qmin, qmax));
    }
  return 0;
}

NL_VECTORIZE static void dequant_rows(const nl_qlinear *q, int o0, int n, float *w) {
  for (int o = o0; o < o0 + n; o++) {
    float *row = w + (size_t)(o - o0) * q->ic;
    for (int g = 0; g < q->ngroups; g++) {
      size_t si = (size_t)o * q->ngroups + (size_t)g;
      const float s = q->scale[si];
      const int32_t z = q->zero[si];
      const int k0 = g * q->group;
      if (q->bits == 3 || !q->q) { /* !q: held only packed (nl_qlinear_pack) */
        for (int k = 0; k < q->group; k++)
          row[k0 + k] = s * (float)(nl_qlinear_get(q, o, k0 + k) - z);
      } else if (q->bits == 4) {
        const uint8_t *b = q->q + (size_t)o * (size_t)(q->ic / 2) + (size_t)(k0 / 2);
        for (int k = 0; k < q->group; k += 2) {
          row[k0 + k] = s * (float)((int32_t)(b[k / 2] & 15) - z);
          row[k0 + k + 1] = s * (float)((int32_t)(b[k / 2] >> 4) - z);
        }
      } else {
        const int8_t *b = (const int8_t *)q->q + (size_t)o * q->ic + (size_t)k0;
        for (int k = 0; k < q->group; k++) row[k0 + k] = s * (float)((int32_t)b[k] - z);
      }
    }
  }
}

void nl_qlinear_dequantize(const nl_qlinear *q, float *w) { dequant_rows(q, 0, q->oc, w); }

size_t nl_qlinear_bytes(const nl_qlinear *q) {
  size_t qb = (size_t)q->oc * nl_qlinear_row_bytes(q->bits, q->ic);
  size_t g = (size_t)q->oc * q->ngroups;
  return qb + g * 4 + g * 1 + (q->in_scale ? (size_t)q->ic * 4 : 0) +
         (q->acts && q->act_per_tensor ? 4 : 0);
}

/* ---- oneDNN: engine, and matmul primitives cached per shape ----
 * Debian's libdnnl runs its primitives on OpenMP. A call stays on the
 * calling thread (its OpenMP thread count set to 1): the products are split
 * into row tiles over normlab's own pool (nl_parallel_for), as the FP32
 * ones are; an OpenMP team per call competing with the pool's workers was
 * ~100x slower on a loaded 2-core machine (20 ms against 0.2 ms for
 * 3400x64x64). */
void omp_set_num_threads(int n); /* libgomp (omp.h) */

/* Entries never move once made (the cache is an array of pointers): other
 * threads use them while a new one is added. Each primitive has a user
 * scratchpad, given per call, so that threads may run one primitive at
 * once. */
typedef struct {
  int M, N, K;
  int bf16;     /* 0: s8 x s8 -> s32; 1: bf16 x bf16 -> f32 (nl_gemm_bf16) */
  int lda, ldc; /* row strides of a and c (s8: K and N) */
  int bias;     /* bf16: an f32 bias [N] is added */
  dnnl_memory_desc_t a_md, b_md, c_md, s_md, bias_md;
  size_t scratch;
  dnnl_primitive_t prim;
} mm_entry;

static pthread_mutex_t mm_lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t mm_engine;
static mm_entry **mm_cache;
static int mm_n, mm_cap;

static int dnnl_err(char *buf, size_t cap, const char *what, dnnl_status_t st) {
  if (buf) snprintf(buf, cap, "oneDNN: %s failed (status %d)", what, (int)st);
  return -1;
}

int nl_qgemm_cache_size(void) {
  pthread_mutex_lock(&mm_lock);
  int n = mm_n;
  pthread_mutex_unlock(&mm_lock);
  return n;
}

/* The cached primitive of a shape and kind (the key: the mm_entry fields
 * before the descriptors), created on first use (under the lock). */
static mm_entry *mm_get(const mm_entry *key, char *eb, size_t ec) {
  mm_entry *e = NULL;
  dnnl_status_t st;
  pthread_mutex_lock(&mm_lock);
  if (!mm_engine && (st = dnnl_engine_create(&mm_engine, dnnl_cpu, 0)) != dnnl_success) {
    mm_engine = NULL;
    dnnl_err(eb, ec, "engine creation", st);
    goto out;
  }
  for (int i = 0; i < mm_n; i++) {
    const mm_entry *c = mm_cache[i];
    if (c->M == key->M && c->N == key->N && c->K == key->K && c->bf16 == key->bf16 &&
        c->lda == key->lda && c->ldc == key->ldc && c->bias == key->bias) {
      e = mm_cache[i];
      goto out;
    }
  }
  if (mm_n == mm_cap) {
    mm_cap = mm_cap ? 2 * mm_cap : 16;
    mm_cache = nl_xrealloc(mm_cache, sizeof(mm_entry *) * (size_t)mm_cap);
  }
  mm_entry n;
  memset(&n, 0, sizeof n);
  n.M = key->M;
  n.N = key->N;
  n.K = key->K;
  n.bf16 = key->bf16;
  n.lda = key->lda;
  n.ldc = key->ldc;
  n.bias = key->bias;
  const int M = n.M, N = n.N, K = n.K;
  /* weights w [N, K] row-major, seen as b [K, N] with strides (1, K) */
  dnnl_dims_t ad = {M, K}, bd = {K, N}, cd = {M, N}, bs = {1, K}, as = {n.lda, 1},
              cs = {n.ldc, 1}, biasd = {1, N};
  dnnl_data_type_t in_t = n.bf16 ? dnnl_bf16 : dnnl_s8, out_t = n.bf16 ? dnnl_f32 : dnnl_s32;
  dnnl_matmul_desc_t d;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_attr_t attr = NULL;
  if ((st = dnnl_memory_desc_init_by_strides(&n.a_md, 2, ad, in_t, as)) ||
      (st = dnnl_memory_desc_init_by_strides(&n.b_md, 2, bd, in_t, bs)) ||
      (st = dnnl_memory_desc_init_by_strides(&n.c_md, 2, cd, out_t, cs)) ||
      (n.bias && (st = dnnl_memory_desc_init_by_tag(&n.bias_md, 2, biasd, dnnl_f32, dnnl_ab))) ||
      (st = dnnl_matmul_desc_init(&d, &n.a_md, &n.b_md, n.bias ? &n.bias_md : NULL, &n.c_md)) ||
      (st = dnnl_primitive_attr_create(&attr)) ||
      (st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) ||
      (st = dnnl_primitive_desc_create(&pd, &d, attr, mm_engine, NULL)) ||
      (st = dnnl_primitive_create(&n.prim, pd))) {
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    dnnl_err(eb, ec,
             n.bf16 ? "matmul bf16 x bf16 -> f32 primitive creation"
                    : "matmul s8 x s8 -> s32 primitive creation",
             st);
    goto out;
  }
  n.s_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  n.scratch = dnnl_memory_desc_get_size(&n.s_md);
  dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_attr_destroy(attr);
  e = nl_xmalloc(sizeof *e);
  *e = n;
  mm_cache[mm_n++] = e;
out:
  pthread_mutex_unlock(&mm_lock);
  return e;
}

/* Run a cached primitive on the calling thread: c = a w^T (+ bias). */
static int mm_run(const mm_entry *e, const void *a, const void *w, const float *bias, void *c,
                  char *eb, size_t ec) {
  omp_set_num_threads(1);
  dnnl_memory_t am = NULL, bm = NULL, cm = NULL, sm = NULL, biasm = NULL;
  dnnl_stream_t s = NULL;
  dnnl_status_t st;
  int rc = 0;
  void *scratch = e->scratch ? nl_aalloc(e->scratch) : NULL;
  if ((st = dnnl_memory_create(&am, &e->a_md, mm_engine, (void *)a)) ||
      (st = dnnl_memory_create(&bm, &e->b_md, mm_engine, (void *)w)) ||
      (st = dnnl_memory_create(&cm, &e->c_md, mm_engine, c)) ||
      (st = dnnl_memory_create(&sm, &e->s_md, mm_engine, scratch)) ||
      (e->bias && (st = dnnl_memory_create(&biasm, &e->bias_md, mm_engine, (void *)bias))) ||
      (st = dnnl_stream_create(&s, mm_engine, dnnl_stream_default_flags))) {
    rc = dnnl_err(eb, ec, "memory or stream creation", st);
  } else {
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, am},
                               {DNNL_ARG_WEIGHTS, bm},
                               {DNNL_ARG_DST, cm},
                               {DNNL_ARG_SCRATCHPAD, sm},
                               {DNNL_ARG_BIAS, biasm}};
    if ((st = dnnl_primitive_execute(e->prim, s, e->bias ? 5 : 4, args)) ||
        (st = dnnl_stream_wait(s)))
      rc = dnnl_err(eb, ec, "matmul execution", st);
  }
  if (s) dnnl_stream_destroy(s);
  if (sm) dnnl_memory_destroy(sm);
  nl_afree(scratch);
  if (am) dnnl_memory_destroy(am);
  if (bm) dnnl_memory_destroy(bm);
  if (cm) dnnl_memory_destroy(cm);
  if (biasm) dnnl_memory_destroy(biasm);
  return rc;
}

int nl_qgemm_s8(int M, int N, int K, const int8_t *a, const int8_t *w, int32_t *c, char *eb,
                size_t ec) {
  if (M < 1 || N < 1 || K < 1) return 0;
  mm_entry key = {.M = M, .N = N, .K = K, .lda = K, .ldc = N};
  mm_entry *e = mm_get(&key, eb, ec);
  if (!e) return -1;
  return mm_run(e, a, w, NULL, c, eb, ec);
}

int nl_gemm_bf16(int M, int N, int K, const uint16_t *a, int lda, const uint16_t *w,
                 const float *bias, float *c, int ldc, char *eb, size_t ec) {
  if (M < 1 || N < 1 || K < 1) return 0;
  mm_entry key = {.M = M, .N = N, .K = K, .bf16 = 1, .lda = lda, .ldc = ldc, .bias = bias != NULL};
  mm_entry *e = mm_get(&key, eb, ec);
  if (!e) return -1;
  return mm_run(e, a, w, bias, c, eb, ec);
}

/* ---- forward ---- */

/* The activation quantizer is on the forward's path for every element of
 * every INT8 layer: branch-free loops the compiler vectorizes, rounding by
 * the 1.5 * 2^23 trick (round half to even, exact for |v| <= 2^22; v is
 * clamped to [-127, 127] first, NaN to 127). */

NL_VECTORIZE static float row_absmax(const float *x, const float *in_scale, int cols) {
  float m[8] = {0};
  int k = 0;
  for (; k + 8 <= cols; k += 8)
    for (int u = 0; u < 8; u++) {
      float a = fabsf(in_scale ? x[k + u] * in_scale[k + u] : x[k + u]);
      m[u] = a > m[u] ? a : m[u];
    }
  for (; k < cols; k++) {
    float a = fabsf(in_scale ? x[k] * in_scale[k] : x[k]);
    m[0] = a > m[0] ? a : m[0];
  }
  float r = 0;
  for (int u = 0; u < 8; u++) r = m[u] > r ? m[u] : r;
  return r;
}

NL_VECTORIZE static void row_quant(const float *x, const float *in_scale, float inv, int cols,
                                   int8_t *q) {
  const float magic = 12582912.0f; /* 1.5 * 2^23 */
  if (in_scale) {
    for (int k = 0; k < cols; k++) {
      float v = x[k] * in_scale[k] * inv;
      v = v < 127.0f ? v : 127.0f;
      v = v > -127.0f ? v : -127.0f;
      q[k] = (int8_t)(int)((v + magic) - magic);
    }
  } else {
    for (int k = 0; k < cols; k++) {
      float v = x[k] * inv;
      v = v < 127.0f ? v : 127.0f;
      v = v > -127.0f ? v : -127.0f;
      q[k] = (int8_t)(int)((v + magic) - magic);
    }
  }
}

void nl_quantize_rows_s8(const float *x, int rows, int cols, const float *in_scale,
                         float act_scale, int8_t *q, float *sa) {
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * cols;
    float s = act_scale;
    if (!(s > 0)) {
      float m = row_absmax(xr, in_scale, cols);
      s = m > 0 ? m / 127.0f : 1.0f;
    }
    row_quant(xr, in_scale, 1.0f / s, cols, q + (size_t)r * cols);
    sa[r] = s;
  }
}

#define QT_COLS 64 /* output channels dequantized per tile */
#define A8_ROWS 256 /* rows per INT8 product (one oneDNN call each) */

typedef struct {
  const nl_qlinear *q;
  const float *x, *b;
  float *out;
  int N;
  float *scratch; /* per worker: a tile and its packed copy (AVX-512 kernel) */
  size_t per_worker;
} wo_job;

static void wo_task(size_t i, int worker, void *user) {
  const wo_job *j = user;
  const nl_qlinear *q = j->q;
  const int o0 = (int)i * QT_COLS, n = o0 + QT_COLS < q->oc ? QT_COLS : q->oc - o0;
  float *c = j->out + o0;
  if (j->scratch) { /* the FP32 Linear's AVX-512 kernel on the tile, packed */
    float *wp = j->scratch + (size_t)worker * j->per_worker;
    float *w = wp + nl_gemm_pack_floats(QT_COLS, q->ic);
    const int np = (n + NL_GEMM_NR - 1) / NL_GEMM_NR;
    dequant_rows(q, o0, n, w);
    nl_gemm_pack(wp, w, n, q->ic, 0, np);
    nl_gemm_packed(c, q->oc, j->x, q->ic, wp, j->b ? j->b + o0 : NULL, n, q->ic, 0, j->N, 0, np);
    return;
  }
  float *w = nl_xmalloc(sizeof(float) * (size_t)n * q->ic);
  dequant_rows(q, o0, n, w);
  float beta = 0.0f;
  if (j->b) {
    for (int r = 0; r < j->N; r++) memcpy(c + (size_t)r * q->oc, j->b + o0, sizeof(float) * (size_t)n);
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->N, n, q->ic, 1.0f, j->x, q->ic, w,
              q->ic, beta, c, q->oc);
  free(w);
}

typedef struct {
  const nl_qlinear *q;
  const float *x, *b;
  float *out;
  int8_t *xq;
  float *sa;
  const int32_t *acc;
  int N, rows_per;
  int failed;
  char msg[200];
} a8_job;

static void a8_quant_task(size_t i, int worker, void *user) {
  (void)worker;
  const a8_job *j = user;
  int r0 = (int)i * j->rows_per, r1 = r0 + j->rows_per < j->N ? r0 + j->rows_per : j->N;
  const nl_qlinear *q = j->q;
  nl_quantize_rows_s8(j->x + (size_t)r0 * q->ic, r1 - r0, q->ic, q->in_scale,
                      q->act_per_tensor ? q->act_scale : 0.0f, j->xq + (size_t)r0 * q->ic,
                      j->sa + r0);
}

static void a8_gemm_task(size_t i, int worker, void *user) {
  (void)worker;
  a8_job *j = user;
  int r0 = (int)i * j->rows_per, r1 = r0 + j->rows_per < j->N ? r0 + j->rows_per : j->N;
  const nl_qlinear *q = j->q;
  char eb[200] = "";
  if (nl_qgemm_s8(r1 - r0, q->oc, q->ic, j->xq + (size_t)r0 * q->ic, (const int8_t *)q->q,
                  (int32_t *)j->acc + (size_t)r0 * q->oc, eb, sizeof eb)) {
    pthread_mutex_lock(&mm_lock);
    if (!j->failed) {
      j->failed = 1;
      snprintf(j->msg, sizeof j->msg, "%s", eb);
    }
    pthread_mutex_unlock(&mm_lock);
  }
}

NL_VECTORIZE static void epilogue_row(float *o, const int32_t *a, float sa, const float *sw,
                                      const float *b, int OC) {
  if (b)
    for (int c = 0; c < OC; c++) o[c] = (float)a[c] * (sa * sw[c]) + b[c];
  else
    for (int c = 0; c < OC; c++) o[c] = (float)a[c] * (sa * sw[c]);
}

static void a8_epilogue_task(size_t i, int worker, void *user) {
  (void)worker;
  const a8_job *j = user;
  int r0 = (int)i * j->rows_per, r1 = r0 + j->rows_per < j->N ? r0 + j->rows_per : j->N;
  const nl_qlinear *q = j->q;
  const int OC = q->oc;
  for (int r = r0; r < r1; r++)
    epilogue_row(j->out + (size_t)r * OC, j->acc + (size_t)r * OC, j->sa[r], q->scale, j->b, OC);
}

/* ---- W8A8 on AVX512-VNNI (tensor/igemm.h) ----
 * Tasks of I8_ROWS rows and all panels, each quantizing its rows first and
 * running the epilogue layer on its tile after; at small batches, fewer
 * rows and groups of panels, after a pass that quantizes the rows once. */

static int qlinear_plain(float *out, const float *inp, const nl_qlinear *q, const float *b, int N,
                         char *eb, size_t ec);

#define I8_ROWS NL_LIN_TASK_ROWS /* rows per task (tasks as tensor/layers.h splits them) */

typedef struct {
  const nl_qlinear *q;
  const float *x, *b;
  float *out;
  uint8_t *u;
  float *sa;
  const int8_t *wp;
  const int32_t *comp;
  const nl_lin_epilogue *e;
  int N, pg, npg;
} i8_job;

static void i8_quant_task(size_t i, int worker, void *user) {
  (void)worker;
  const i8_job *j = user;
  const int r0 = (int)i * I8_ROWS, r1 = r0 + I8_ROWS < j->N ? r0 + I8_ROWS : j->N;
  const nl_qlinear *q = j->q;
  nl_igemm_quantize(j->u, j->sa, j->x, q->ic, q->in_scale, q->act_per_tensor ? q->act_scale : 0.0f,
                    r0, r1);
}

static void i8_gemm_task(size_t i, int worker, void *user) {
  (void)worker;
  const i8_job *j = user;
  const nl_qlinear *q = j->q;
  const int np = (q->oc + NL_IGEMM_NR - 1) / NL_IGEMM_NR;
  const int r0 = (int)(i / (size_t)j->npg) * I8_ROWS, g = (int)(i % (size_t)j->npg);
  const int r1 = r0 + I8_ROWS < j->N ? r0 + I8_ROWS : j->N;
  const int p0 = g * j->pg, p1 = p0 + j->pg < np ? p0 + j->pg : np;
  if (j->npg == 1) i8_quant_task(i, worker, user); /* its rows, while they are in cache */
  nl_igemm_packed(j->out, q->oc, j->u, j->sa, j->wp, j->comp, q->scale, j->b, q->oc, q->ic, r0, r1,
                  p0, p1);
  const int c0 = p0 * NL_IGEMM_NR, c1 = p1 * NL_IGEMM_NR < q->oc ? p1 * NL_IGEMM_NR : q->oc;
  nl_lin_epilogue_rows(j->e, j->out, q->oc, r0, r1, c0, c1);
}

static void i8_forward(float *out, const float *inp, const nl_qlinear *q, const float *b, int N,
                       const nl_lin_epilogue *e) {
  i8_job j = {.q = q, .x = inp, .b = b, .out = out, .e = e, .N = N};
  int8_t *tw = NULL;
  int32_t *tc = NULL;
  j.wp = q->vnni;
  j.comp = q->vcomp;
  if (!j.wp) { /* not packed at load: pack for this call */
    tw = nl_aalloc(nl_igemm_pack_bytes(q->oc, q->ic));
    tc = nl_aalloc(sizeof(int32_t) * (size_t)((q->oc + NL_IGEMM_NR - 1) / NL_IGEMM_NR) *
                   NL_IGEMM_NR);
    nl_igemm_pack(tw, tc, (const int8_t *)q->q, q->oc, q->ic);
    j.wp = tw;
    j.comp = tc;
  }
  j.u = nl_aalloc((size_t)N * (size_t)nl_igemm_lda(q->ic));
  j.sa = nl_xmalloc(sizeof(float) * (size_t)N);
  const int np = (q->oc + NL_IGEMM_NR - 1) / NL_IGEMM_NR;
  const int nrb = (N + I8_ROWS - 1) / I8_ROWS;
  const int par = nl_lin_tasks(N, np, (double)N * q->oc * q->ic, &j.pg, &j.npg);
  const size_t ntasks = (size_t)nrb * (size_t)j.npg;
  if (par) {
    if (j.npg > 1) nl_parallel_for((size_t)nrb, i8_quant_task, &j); /* else in the tasks */
    nl_parallel_for(ntasks, i8_gemm_task, &j);
  } else {
    if (j.npg > 1)
      for (int i = 0; i < nrb; i++) i8_quant_task((size_t)i, 0, &j);
    for (size_t i = 0; i < ntasks; i++) i8_gemm_task(i, 0, &j);
  }
  nl_afree(j.u);
  free(j.sa);
  nl_afree(tw);
  nl_afree(tc);
}

int nl_qlinear_forward(float *out, const float *inp, const nl_qlinear *q, const float *b, int N,
                       char *eb, size_t ec) {
  return nl_qlinear_forward_ex(out, inp, q, b, N, NULL, eb, ec);
}

int nl_qlinear_forward_ex(float *out, const float *inp, const nl_qlinear *q, const float *b,
                          int N, const nl_lin_epilogue *e, char *eb, size_t ec) {
  if (N < 1) return 0;
  if (q->acts == 8 && q->ic <= NL_IGEMM_MAX_K && nl_igemm_available()) {
    i8_forward(out, inp, q, b, N, e);
    return 0;
  }
  int rc = qlinear_plain(out, inp, q, b, N, eb, ec);
  if (!rc && e && e->then == NL_LIN_GELU)
    nl_gelu_forward(e->out2, out, (size_t)N * q->oc);
  else if (!rc && e && e->then == NL_LIN_ADD)
    nl_residual_forward(e->out2, e->res, out, (size_t)N * q->oc);
  return rc;
}

/* oneDNN's INT8 product, or the weight-only tiles; no epilogue */
static int qlinear_plain(float *out, const float *inp, const nl_qlinear *q, const float *b, int N,
                         char *eb, size_t ec) {
  if (q->acts == 8) {
    a8_job j;
    memset(&j, 0, sizeof j);
    j.q = q;
    j.x = inp;
    j.b = b;
    j.out = out;
    j.N = N;
    j.rows_per = A8_ROWS;
    j.xq = nl_xmalloc((size_t)N * q->ic);
    j.sa = nl_xmalloc(sizeof(float) * (size_t)N);
    int32_t *acc = nl_xmalloc(sizeof(int32_t) * (size_t)N * q->oc);
    j.acc = acc;
    size_t nt = (size_t)((N + j.rows_per - 1) / j.rows_per);
    nl_parallel_for(nt, a8_quant_task, &j);
    nl_parallel_for(nt, a8_gemm_task, &j);
    int rc = 0;
    if (j.failed) {
      if (eb) snprintf(eb, ec, "%s", j.msg);
      rc = -1;
    } else {
      nl_parallel_for(nt, a8_epilogue_task, &j);
    }
    free(acc);
    free(j.sa);
    free(j.xq);
    return rc;
  }
  float *xs = NULL;
  if (q->in_scale) {
    xs = nl_xmalloc(sizeof(float) * (size_t)N * q->ic);
    for (int r = 0; r < N; r++)
      for (int k = 0; k < q->ic; k++)
        xs[(size_t)r * q->ic + k] = inp[(size_t)r * q->ic + k] * q->in_scale[k];
  }
  wo_job j = {q, xs ? xs : inp, b, out, N, NULL, 0};
  if (nl_gemm_available()) {
    j.per_worker = (nl_gemm_pack_floats(QT_COLS, q->ic) + (size_t)QT_COLS * q->ic + 15) / 16 * 16;
    j.scratch = nl_aalloc(sizeof(float) * j.per_worker * (size_t)nl_threads_count(0));
  }
  nl_parallel_for((size_t)((q->oc + QT_COLS - 1) / QT_COLS), wo_task, &j);
  nl_afree(j.scratch);
  free(xs);
  return 0;
}
