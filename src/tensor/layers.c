/* Forward halves of the ViT layers and the deterministic parallel drivers
 * they share with the backward halves (train/layers.c). See layers.h. */
#include "tensor/layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "base/vmath.h"
#include "tensor/gemm.h"
#include "tensor/sgemm.h"
#include "tensor/kernels.h"
#include "tensor/vec512.h"

/* ---- row-parallel driver ----
 * The chunk size depends only on the problem's shape (row width and row
 * count), and column reductions are summed per chunk and then added in
 * chunk order, so results are the same for any thread count. Small
 * problems run as one chunk on the calling thread. */
#define ROWS_CHUNK_ELEMS 16384
#define ROWS_PAR_MIN 32768
#define ROWS_MAX_CHUNKS 64

typedef struct {
  nl_rows_fn fn;
  void *ctx;
  size_t N, chunk;
  int nacc;
  float *part;
} rows_job;

static void rows_task(size_t i, int worker, void *user) {
  (void)worker;
  const rows_job *j = user;
  size_t r0 = i * j->chunk, r1 = r0 + j->chunk < j->N ? r0 + j->chunk : j->N;
  j->fn(j->ctx, r0, r1, j->nacc ? j->part + i * (size_t)j->nacc : NULL);
}

void nl_rows_run(nl_rows_fn fn, void *ctx, size_t N, size_t C, int nacc, float *acc) {
  size_t chunk = N;
  if (N * C >= ROWS_PAR_MIN) {
    chunk = ROWS_CHUNK_ELEMS / (C ? C : 1);
    if (chunk < 1) chunk = 1;
    /* at most ROWS_MAX_CHUNKS chunks, bounding the partial sums' memory */
    if (chunk < (N + ROWS_MAX_CHUNKS - 1) / ROWS_MAX_CHUNKS)
      chunk = (N + ROWS_MAX_CHUNKS - 1) / ROWS_MAX_CHUNKS;
  }
  size_t nch = chunk ? (N + chunk - 1) / chunk : 0;
  if (nch == 0) return;
  float *part = nacc ? nl_xcalloc(nch * (size_t)nacc, sizeof(float)) : NULL;
  rows_job j = {fn, ctx, N, chunk, nacc, part};
  if (nch == 1)
    rows_task(0, 0, &j);
  else
    nl_parallel_for(nch, rows_task, &j);
  for (size_t i = 0; i < nch; i++)
    for (int k = 0; k < nacc; k++) acc[k] += part[i * (size_t)nacc + k];
  free(part);
}

/* ---- tiled matrix products ----
 * Every tile is one single-threaded sgemm call (nl_parallel_for keeps BLAS
 * single-threaded inside), and the tiles depend on the shapes only: each
 * output element is computed by the same call whatever the thread count,
 * so the result is bitwise the same (OpenBLAS's own threading may split a
 * product differently). */
#define GEMM_PAR_MIN (1 << 18) /* multiply-adds below which one call is made */

typedef struct {
  int ta, tb, M, N, K, lda, ldb, ldc, rb, cb, ncb;
  int bf16; /* nl_sgemm_bf16 in place of nl_sgemm */
  float alpha, beta;
  const float *a, *b, *bias;
  float *c;
} gemm_job;

static void gemm_task(size_t i, int worker, void *user) {
  (void)worker;
  const gemm_job *j = user;
  const int r0 = (int)(i / (size_t)j->ncb) * j->rb, c0 = (int)(i % (size_t)j->ncb) * j->cb;
  const int m = r0 + j->rb < j->M ? j->rb : j->M - r0;
  const int n = c0 + j->cb < j->N ? j->cb : j->N - c0;
  const float *a = j->a + (j->ta ? (size_t)r0 : (size_t)r0 * j->lda);
  const float *b = j->b + (j->tb ? (size_t)c0 * j->ldb : (size_t)c0);
  float *c = j->c + (size_t)r0 * j->ldc + c0;
  if (j->bf16 && j->bias)
    nl_sgemm_bf16_bias(j->ta, j->tb, m, n, j->K, j->alpha, a, j->lda, b, j->ldb, j->bias + c0, c,
                       j->ldc);
  else if (j->bf16)
    nl_sgemm_bf16(j->ta, j->tb, m, n, j->K, j->alpha, a, j->lda, b, j->ldb, j->beta, c, j->ldc);
  else if (j->bias)
    nl_sgemm_bias(j->ta, j->tb, m, n, j->K, j->alpha, a, j->lda, b, j->ldb, j->bias + c0, c, j->ldc);
  else
    nl_sgemm(j->ta, j->tb, m, n, j->K, j->alpha, a, j->lda, b, j->ldb, j->beta, c, j->ldc);
}

static void gemm_tiles(int bf16, int ta, int tb, int M, int N, int K, float alpha, const float *a,
                       int lda, const float *b, int ldb, float beta, float *c, int ldc,
                       const float *bias, int rb, int cb) {
  if (M < 1 || N < 1) return;
  if ((double)M * N * K < GEMM_PAR_MIN) rb = M, cb = N;
  if (rb < 1 || rb > M) rb = M;
  if (cb < 1 || cb > N) cb = N;
  const int nrb = (M + rb - 1) / rb, ncb = (N + cb - 1) / cb;
  gemm_job j = {ta, tb, M, N, K, lda, ldb, ldc, rb, cb, ncb, bf16, alpha, beta, a, b, bias, c};
  nl_parallel_for((size_t)nrb * ncb, gemm_task, &j);
}

void nl_gemm_tiles(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc, const float *bias,
                   int rb, int cb) {
  gemm_tiles(0, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc, bias, rb, cb);
}

void nl_gemm_tiles_bf16(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc, const float *bias,
                        int rb, int cb) {
  gemm_tiles(1, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc, bias, rb, cb);
}

int nl_gemm_row_tile(int M) {
  if (M <= 256) return M;
  const int tiles = 2 * ((M + 511) / 512);
  const int rows = (M + tiles - 1) / tiles;
  return (rows + 11) / 12 * 12;
}

/* ---- linear ----
 * With AVX-512 (tensor/gemm.h): the weight packed once per call (or given
 * packed), then tiles of LIN_ROWS rows and all panels, or at small batches
 * fewer rows and groups of panels, as tasks; each task then runs the
 * epilogue on its own tile while it is in cache. Without: OpenBLAS tiles
 * (nl_gemm_tiles), then the epilogue as a pass of its own. Either way the
 * epilogue is the element-wise kernel of the separate layer, so the fused
 * and the separate pass give the same bits. */

#define LIN_MIN_TILES 4  /* below this many row tiles, split the columns too */
#define LIN_COL_ALIGN 16 /* column tiles are a multiple of this */
#define KLIN_MIN_TASKS 8 /* below this many row tiles, split the panels too */

void nl_lin_epilogue_rows(const nl_lin_epilogue *e, const float *out, int OC, int r0, int r1,
                          int c0, int c1) {
  if (!e || e->then == NL_LIN_PLAIN || r1 <= r0 || c1 <= c0) return;
  const size_t w = (size_t)(c1 - c0);
  /* a whole-width tile is one contiguous run of rows */
  const int runs = c0 == 0 && c1 == OC ? 1 : r1 - r0;
  const size_t len = runs == 1 ? (size_t)(r1 - r0) * w : w;
  for (int i = 0; i < runs; i++) {
    const size_t off = (size_t)(r0 + i) * OC + c0;
    if (e->then == NL_LIN_GELU)
      nl_gelu(e->out2 + off, out + off, len);
    else
      nl_residual_forward(e->out2 + off, e->res + off, out + off, len);
  }
}

typedef struct {
  float *out;
  const float *inp, *wp, *b;
  int N, IC, OC, ldc, rb, pg, npg;
  const nl_lin_epilogue *e; /* only with ldc == OC */
} klin_job;

static void klin_task(size_t i, int worker, void *user) {
  (void)worker;
  const klin_job *j = user;
  const int np = (j->OC + NL_GEMM_NR - 1) / NL_GEMM_NR;
  const int r0 = (int)(i / (size_t)j->npg) * j->rb, g = (int)(i % (size_t)j->npg);
  const int r1 = r0 + j->rb < j->N ? r0 + j->rb : j->N;
  const int p0 = g * j->pg, p1 = p0 + j->pg < np ? p0 + j->pg : np;
  nl_gemm_packed(j->out, j->ldc, j->inp, j->IC, j->wp, j->b, j->OC, j->IC, r0, r1, p0, p1);
  const int c0 = p0 * NL_GEMM_NR, c1 = p1 * NL_GEMM_NR < j->OC ? p1 * NL_GEMM_NR : j->OC;
  nl_lin_epilogue_rows(j->e, j->out, j->OC, r0, r1, c0, c1);
}

int nl_lin_tasks(int N, int np, double macs, int *pg, int *npg) {
  const int nrb = (N + NL_LIN_TASK_ROWS - 1) / NL_LIN_TASK_ROWS;
  const int par = macs >= GEMM_PAR_MIN;
  int g = 1;
  if (nrb < KLIN_MIN_TASKS && par) {
    g = (KLIN_MIN_TASKS + nrb - 1) / nrb;
    if (g > np) g = np;
  }
  *pg = (np + g - 1) / g;
  *npg = (np + *pg - 1) / *pg;
  return par;
}

/* out rows ldc floats apart (OC: contiguous) */
static void klin_run(float *out, int ldc, const float *inp, const float *wp, const float *b,
                     int N, int IC, int OC, const nl_lin_epilogue *e) {
  const int np = (OC + NL_GEMM_NR - 1) / NL_GEMM_NR;
  const int nrb = (N + NL_LIN_TASK_ROWS - 1) / NL_LIN_TASK_ROWS;
  int pg, npg;
  const int par = nl_lin_tasks(N, np, (double)N * OC * IC, &pg, &npg);
  klin_job j = {out, inp, wp, b, N, IC, OC, ldc, NL_LIN_TASK_ROWS, pg, npg, e};
  const size_t ntasks = (size_t)nrb * npg;
  if (!par)
    for (size_t i = 0; i < ntasks; i++) klin_task(i, 0, &j);
  else
    nl_parallel_for(ntasks, klin_task, &j);
}

/* Output channels per tile of the tiled (OpenBLAS or BF16) linear: all,
 * or split when there are fewer than LIN_MIN_TILES row tiles. */
static int lin_col_tile(int N, int OC) {
  const int rows = nl_gemm_row_tile(N);
  const int nrb = (N + rows - 1) / rows;
  int cb = OC;
  if (nrb < LIN_MIN_TILES) {
    const int ncb = (LIN_MIN_TILES + nrb - 1) / nrb;
    cb = (OC + ncb - 1) / ncb;
    cb = (cb + LIN_COL_ALIGN - 1) / LIN_COL_ALIGN * LIN_COL_ALIGN;
  }
  return cb;
}

void nl_linear_forward_bf16ops(float *out, int ldc, const float *inp, const float *w,
                               const float *b, int N, int IC, int OC) {
  if (N < 1 || OC < 1) return;
  nl_gemm_tiles_bf16(0, 1, N, OC, IC, 1.0f, inp, IC, w, IC, 0.0f, out, ldc, b, nl_gemm_row_tile(N),
                     lin_col_tile(N, OC));
}

void nl_linear_forward_ex(float *out, const float *inp, const float *w, const float *wpacked,
                          const float *b, int N, int IC, int OC, const nl_lin_epilogue *e) {
  if (N < 1 || OC < 1) return;
  if (nl_gemm_available()) {
    float *tmp = NULL;
    if (!wpacked) {
      tmp = nl_aalloc(nl_gemm_pack_floats(OC, IC) * sizeof(float));
      nl_gemm_pack(tmp, w, OC, IC, 0, (OC + NL_GEMM_NR - 1) / NL_GEMM_NR);
      wpacked = tmp;
    }
    klin_run(out, OC, inp, wpacked, b, N, IC, OC, e);
    nl_afree(tmp);
    return;
  }
  const int rows = nl_gemm_row_tile(N);
  nl_gemm_tiles(0, 1, N, OC, IC, 1.0f, inp, IC, w, IC, 0.0f, out, OC, b, rows, lin_col_tile(N, OC));
  if (e && e->then == NL_LIN_GELU)
    nl_gelu_forward(e->out2, out, (size_t)N * OC);
  else if (e && e->then == NL_LIN_ADD)
    nl_residual_forward(e->out2, e->res, out, (size_t)N * OC);
}

void nl_linear_forward(float *out, const float *inp, const float *w, const float *b, int N,
                       int IC, int OC) {
  nl_linear_forward_ex(out, inp, w, NULL, b, N, IC, OC, NULL);
}

void nl_qkv_forward(float *qkv, const float *inp, const float *w, const float *b, int N, int C,
                    int from) {
  nl_qkv_forward_ex(qkv, inp, w, b, N, C, C, from);
}

void nl_qkv_forward_ex(float *qkv, const float *inp, const float *w, const float *b, int N,
                       int IC, int C, int from) {
  if (N < 1) return;
  if (nl_gemm_available()) { /* any split of the kernel's product gives the same bits */
    const int OC = (3 - from) * C;
    float *wp = nl_aalloc(nl_gemm_pack_floats(OC, IC) * sizeof(float));
    nl_gemm_pack(wp, w + (size_t)from * C * IC, OC, IC, 0, (OC + NL_GEMM_NR - 1) / NL_GEMM_NR);
    klin_run(qkv + (size_t)from * C, 3 * C, inp, wp, b ? b + (size_t)from * C : NULL, N, IC, OC,
             NULL);
    nl_afree(wp);
    return;
  }
  for (int g = from; g < 3; g++)
    nl_gemm_tiles(0, 1, N, C, IC, 1.0f, inp, IC, w + (size_t)g * C * IC, IC, 0.0f,
                  qkv + (size_t)g * C, 3 * C, b ? b + (size_t)g * C : NULL, nl_gemm_row_tile(N),
                  C);
}

/* ---- row-wise layers over nl_rows_run ---- */

typedef struct {
  float *out, *mean, *rstd;
  const float *inp, *w, *b;
  float alpha, eps;
  int C;
} fwd_ctx;

static void ln_rows(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const fwd_ctx *k = p;
  const size_t off = r0 * (size_t)k->C;
  nl_layernorm_rows(k->out + off, k->mean ? k->mean + r0 : NULL, k->rstd ? k->rstd + r0 : NULL,
                    k->inp + off, k->w, k->b, r1 - r0, k->C, k->eps);
}

void nl_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N, int C, float eps) {
  fwd_ctx k = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .w = w, .b = b, .eps = eps,
               .C = C};
  nl_rows_run(ln_rows, &k, (size_t)N, (size_t)C, 0, NULL);
}

static void dyt_rows(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const fwd_ctx *k = p;
  const size_t off = r0 * (size_t)k->C;
  nl_dyt_rows(k->out + off, k->inp + off, k->alpha, k->w, k->b, r1 - r0, k->C);
}

void nl_dyt_forward(float *out, const float *inp, float alpha, const float *w, const float *b,
                    int N, int C) {
  fwd_ctx k = {.out = out, .inp = inp, .alpha = alpha, .w = w, .b = b, .C = C};
  nl_rows_run(dyt_rows, &k, (size_t)N, (size_t)C, 0, NULL);
}

static void pw_rows(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const fwd_ctx *k = p;
  const size_t off = r0 * (size_t)k->C;
  nl_affine_rows(k->out + off, k->inp + off, k->w, k->b, r1 - r0, k->C);
}

void nl_pwnorm_forward(float *out, const float *fx, const float *w, const float *b, int N,
                       int C) {
  fwd_ctx k = {.out = out, .inp = fx, .w = w, .b = b, .C = C};
  nl_rows_run(pw_rows, &k, (size_t)N, (size_t)C, 0, NULL);
}

static void gelu_rows(void *p, size_t r0, size_t r1, float *acc) {
  (void)acc;
  const fwd_ctx *k = p;
  nl_gelu(k->out + r0, k->inp + r0, r1 - r0);
}

void nl_gelu_forward(float *out, const float *inp, size_t n) {
  fwd_ctx k = {.out = out, .inp = inp};
  nl_rows_run(gelu_rows, &k, n, 1, 0, NULL);
}

/* ---- attention: per (image, head) S = q k^T, softmax, O = P v; q, k, v
 * are read in place from qkv with leading dimension 3*C. With AVX-512 both
 * products run on the kernel of tensor/gemm.h (k packed into panels of the
 * worker's scratch, v's rows are already panels): P for one (image, head)
 * is written once and read back from L1. Otherwise a pair of sgemm calls;
 * there the scale is applied inside the first product, here by the
 * softmax. ---- */

typedef struct {
  float *out, *att;
  const float *qkv;
  int T, C, NH, hd;
  float scale;
  float *scratch; /* AVX-512 path: per worker, `per` floats */
  size_t per;
} att_job;

#ifdef NL_VEC512
/* Softmax of each row of x [rows, n] after scaling by `scale`, 16 lanes at
 * a time (the row's tail masked); a NaN score makes its row NaN. Rows of
 * up to 64 stay in registers between the passes. */
/* R rows (1 or 2, interleaved for overlap) of up to 16 * NV columns each
 * (R, NV constants after inlining), kept in registers */
NL_VEC512_INLINE void softmax_row_regs(float *xr, int n, __m512 sc, const int R, const int NV) {
  __m512 v[2][4], mx[2], sum[2], inv[2];
  __mmask16 m[4];
#pragma GCC unroll 4
  for (int c = 0; c < NV; c++) m[c] = nl_mask512((size_t)(n - 16 * c));
#pragma GCC unroll 2
  for (int r = 0; r < R; r++) {
    mx[r] = _mm512_set1_ps(-INFINITY);
    sum[r] = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int c = 0; c < NV; c++) {
      v[r][c] = _mm512_mul_ps(_mm512_maskz_loadu_ps(m[c], xr + (size_t)r * n + 16 * c), sc);
      mx[r] = _mm512_mask_max_ps(mx[r], m[c], v[r][c], mx[r]);
    }
    mx[r] = _mm512_set1_ps(_mm512_reduce_max_ps(mx[r]));
  }
#pragma GCC unroll 2
  for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
    for (int c = 0; c < NV; c++) {
      v[r][c] = nl_exp512(_mm512_sub_ps(v[r][c], mx[r]));
      sum[r] = _mm512_mask_add_ps(sum[r], m[c], sum[r], v[r][c]);
    }
    inv[r] = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum[r]));
  }
#pragma GCC unroll 2
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int c = 0; c < NV; c++)
      _mm512_mask_storeu_ps(xr + (size_t)r * n + 16 * c, m[c], _mm512_mul_ps(v[r][c], inv[r]));
}

NL_VEC512_TARGET static void softmax_rows512(float *x, int rows, int n, float scale) {
  const __m512 sc = _mm512_set1_ps(scale);
  const int nv = (n + 15) / 16;
  int r = 0;
  if (nv <= 4)
    for (; r + 2 <= rows; r += 2) {
      float *xr = x + (size_t)r * n;
      switch (nv) {
        case 1: softmax_row_regs(xr, n, sc, 2, 1); break;
        case 2: softmax_row_regs(xr, n, sc, 2, 2); break;
        case 3: softmax_row_regs(xr, n, sc, 2, 3); break;
        default: softmax_row_regs(xr, n, sc, 2, 4); break;
      }
    }
  for (; r < rows; r++) {
    float *xr = x + (size_t)r * n;
    switch (nv) {
      case 1: softmax_row_regs(xr, n, sc, 1, 1); continue;
      case 2: softmax_row_regs(xr, n, sc, 1, 2); continue;
      case 3: softmax_row_regs(xr, n, sc, 1, 3); continue;
      case 4: softmax_row_regs(xr, n, sc, 1, 4); continue;
      default: break;
    }
    __m512 mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
      const __mmask16 m = nl_mask512((size_t)(n - j));
      const __m512 u = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + j), sc);
      _mm512_mask_storeu_ps(xr + j, m, u);
      mx = _mm512_mask_max_ps(mx, m, u, mx);
    }
    const __m512 mxv = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    for (int j = 0; j < n; j += 16) {
      const __mmask16 m = nl_mask512((size_t)(n - j));
      const __m512 e = nl_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + j), mxv));
      _mm512_mask_storeu_ps(xr + j, m, e);
      sum = _mm512_mask_add_ps(sum, m, sum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int j = 0; j < n; j += 16) {
      const __mmask16 m = nl_mask512((size_t)(n - j));
      _mm512_mask_storeu_ps(xr + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + j), inv));
    }
  }
}
#endif

/* o [T, hd] (rows C apart) = P [T, T] v [T, hd] (rows ld apart): with
 * AVX-512 v^T packed into vpk (panel p, row t holds v[t, p*NR ..]) and the
 * kernel of tensor/gemm.h, else nl_sgemm; the product of the plain pass
 * and of a block applying reused probabilities (nl_attention_apply), so
 * the two give the same bits. */
static void att_pv(float *o, int C, const float *P, const float *v, int ld, int T, int hd,
                   float *vpk) {
  if (vpk) {
    const int NR = NL_GEMM_NR, vp = (hd + NR - 1) / NR;
    for (int p = 0; p < vp; p++) {
      const int w = hd - p * NR < NR ? hd - p * NR : NR;
      for (int t = 0; t < T; t++) {
        float *d = vpk + ((size_t)p * T + t) * NR;
        memcpy(d, v + (size_t)t * ld + (size_t)p * NR, (size_t)w * sizeof(float));
        for (int c = w; c < NR; c++) d[c] = 0.0f;
      }
    }
    nl_gemm_packed(o, C, P, T, vpk, NULL, hd, T, 0, T, 0, vp);
    return;
  }
  nl_sgemm(0, 0, T, hd, T, 1.0f, P, T, v, ld, 0.0f, o, C);
}

static void att_task(size_t i, int worker, void *user) {
  const att_job *j = user;
  const int T = j->T, C = j->C, hd = j->hd, b = (int)(i / j->NH), h = (int)(i % j->NH);
  const int ld = 3 * C;
  const float *q = j->qkv + (size_t)b * T * ld + (size_t)h * hd;
  const float *k = q + C, *v = q + 2 * C;
  float *P = j->att + i * (size_t)T * T;
  float *o = j->out + (size_t)b * T * C + (size_t)h * hd;
  if (j->scratch) {
    const int NR = NL_GEMM_NR, kp = (T + NR - 1) / NR;
    float *kpk = j->scratch + (size_t)worker * j->per;
    float *vpk = kpk + (size_t)kp * NR * hd;
    /* k [T, hd] at stride ld as a weight [T, hd] */
    for (int p = 0; p < kp; p++) {
      const int w = T - p * NR < NR ? T - p * NR : NR;
      float *panel = kpk + (size_t)p * NR * hd;
      if (w < NR) memset(panel, 0, sizeof(float) * (size_t)NR * hd);
      for (int jj = 0; jj < w; jj++) {
        const float *src = k + (size_t)(p * NR + jj) * ld;
        for (int c = 0; c < hd; c++) panel[(size_t)c * NR + jj] = src[c];
      }
    }
    nl_gemm_packed(P, T, q, ld, kpk, NULL, T, hd, 0, T, 0, kp);
#ifdef NL_VEC512
    softmax_rows512(P, T, T, j->scale);
#endif
    att_pv(o, C, P, v, ld, T, hd, vpk);
    return;
  }
  nl_sgemm(0, 1, T, T, hd, j->scale, q, ld, k, ld, 0.0f, P, T);
  nl_softmax_rows(P, (size_t)T, T, 1.0f);
  att_pv(o, C, P, v, ld, T, hd, NULL);
}

/* Scratch floats per worker of the AVX-512 path: k packed as a weight
 * [T, hd] and v^T packed, 64-byte aligned. */
static size_t att_scratch_per(int T, int hd) {
  const size_t NR = NL_GEMM_NR;
  const size_t per = nl_gemm_pack_floats(T, hd) + (hd + NR - 1) / NR * NR * (size_t)T;
  return (per + 15) / 16 * 16;
}

void nl_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C,
                          int NH) {
  att_job j = {.out = out, .att = att, .qkv = qkv, .T = T, .C = C, .NH = NH, .hd = C / NH};
  j.scale = (float)(1.0 / sqrt((double)j.hd));
  if (nl_gemm_available()) {
    j.per = att_scratch_per(T, j.hd);
    const size_t workers = (size_t)nl_threads_count(0);
    j.scratch = nl_aalloc(workers * j.per * sizeof(float));
  }
  nl_parallel_for((size_t)B * NH, att_task, &j);
  nl_afree(j.scratch);
}

typedef struct {
  const float *att, *v;
  float *out, *scratch;
  size_t per;
  int T, C, NH, hd, ldv;
} apply_job;

static void apply_task(size_t i, int worker, void *user) {
  const apply_job *j = user;
  const int b = (int)(i / j->NH), h = (int)(i % j->NH), T = j->T;
  att_pv(j->out + (size_t)b * T * j->C + (size_t)h * j->hd, j->C, j->att + i * (size_t)T * T,
         j->v + (size_t)b * T * j->ldv + (size_t)h * j->hd, j->ldv, T, j->hd,
         j->scratch ? j->scratch + (size_t)worker * j->per : NULL);
}

void nl_attention_apply(float *out, const float *att, const float *v, int ldv, int B, int T,
                        int C, int NH) {
  apply_job j = {.att = att, .v = v, .out = out, .T = T, .C = C, .NH = NH, .hd = C / NH,
                 .ldv = ldv};
  if (nl_gemm_available()) {
    j.per = att_scratch_per(T, j.hd);
    j.scratch = nl_aalloc((size_t)nl_threads_count(0) * j.per * sizeof(float));
  }
  nl_parallel_for((size_t)B * NH, apply_task, &j);
  nl_afree(j.scratch);
}

/* ---- residual, layer scale ---- */

NL_VKERNEL void nl_residual_forward(float *out, const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

NL_VKERNEL void nl_layerscale_forward(float *out, const float *inp, const float *gamma, int N,
                                      int C) {
  for (int i = 0; i < N; i++) {
    const float *x = inp + (size_t)i * C;
    float *y = out + (size_t)i * C;
    for (int c = 0; c < C; c++) y[c] = x[c] * gamma[c];
  }
}

/* ---- patch embedding, tokens, pooling ---- */

void nl_im2col(float *patches, const float *img, int B, int CI, int H, int W, int P) {
  const int GH = H / P, GW = W / P, K = CI * P * P;
  for (int b = 0; b < B; b++)
    for (int py = 0; py < GH; py++)
      for (int px = 0; px < GW; px++) {
        float *row = patches + ((size_t)b * GH * GW + (size_t)py * GW + px) * K;
        for (int c = 0; c < CI; c++)
          for (int ky = 0; ky < P; ky++) {
            const float *src = img + (((size_t)b * CI + c) * H + (size_t)py * P + ky) * W +
                               (size_t)px * P;
            memcpy(row + (c * P + ky) * P, src, (size_t)P * sizeof(float));
          }
      }
}

void nl_tokens_forward(float *x, const float *patch, const float *cls, const float *pos, int B,
                       int NP, int D) {
  const int pre = cls ? 1 : 0, T = NP + pre;
  for (int b = 0; b < B; b++) {
    float *xb = x + (size_t)b * T * D;
    if (cls)
      for (int d = 0; d < D; d++) xb[d] = cls[d] + pos[d];
    for (int t = 0; t < NP; t++) {
      const float *p = patch + ((size_t)b * NP + t) * D;
      const float *q = pos + (size_t)(t + pre) * D;
      float *y = xb + (size_t)(t + pre) * D;
      for (int d = 0; d < D; d++) y[d] = p[d] + q[d];
    }
  }
}

void nl_pool_forward(float *out, const float *x, nl_pool pool, int prefix, int B, int T, int C) {
  for (int b = 0; b < B; b++) {
    const float *xb = x + (size_t)b * T * C;
    float *y = out + (size_t)b * C;
    if (pool == NL_POOL_TOKEN) {
      memcpy(y, xb, (size_t)C * sizeof(float));
      continue;
    }
    for (int c = 0; c < C; c++) y[c] = 0.0f;
    for (int t = prefix; t < T; t++) {
      const float *r = xb + (size_t)t * C;
      for (int c = 0; c < C; c++) y[c] += r[c];
    }
    const float inv = 1.0f / (float)(T - prefix);
    for (int c = 0; c < C; c++) y[c] *= inv;
  }
}
