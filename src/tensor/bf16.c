/* BF16 products (see bf16.h). */
#include "tensor/bf16.h"

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/mem.h"
#include "base/threads.h"
#include "tensor/qlinear.h"

#if defined(__GNUC__) && !defined(__clang__)
#define NL_VECTORIZE __attribute__((optimize("tree-vectorize")))
#else
#define NL_VECTORIZE
#endif

/* Branch-free nl_bf16_round, so that the loop vectorizes. */
NL_VECTORIZE void nl_bf16_from_f32(uint16_t *dst, const float *src, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &src[i], sizeof u);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t q = (u >> 16) | 0x40u;
    dst[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? q : r);
  }
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41: return "SSE4.1";
    case dnnl_cpu_isa_avx: return "AVX";
    case dnnl_cpu_isa_avx2: return "AVX2";
    case dnnl_cpu_isa_avx2_vnni: return "AVX2-VNNI";
    case dnnl_cpu_isa_avx512_mic:
    case dnnl_cpu_isa_avx512_mic_4ops: return "AVX-512 (Xeon Phi)";
    case dnnl_cpu_isa_avx512_core: return "AVX-512 without BF16";
    case dnnl_cpu_isa_avx512_core_vnni: return "AVX-512 VNNI without BF16";
    case dnnl_cpu_isa_avx512_core_bf16: return "AVX512-BF16";
    case dnnl_cpu_isa_avx512_core_amx: return "AMX";
    default: return "no x86 vector instructions it knows";
  }
}

int nl_bf16_check_cpu(char *why, size_t cap) {
  dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  if (((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) ==
      (unsigned)dnnl_cpu_isa_avx512_core_bf16)
    return 0;
  if (why)
    snprintf(why, cap,
             "BF16 products need AVX512-BF16 (or AMX) instructions, and oneDNN runs on %s here "
             "(it would emulate BF16, slower than FP32, or have no kernel); use precision fp32",
             isa_name(isa));
  return -1;
}

/* ---- the tiled product ---- */

#define BF_ROWS 256       /* rows of out per tile */
#define BF_MIN_TILES 4    /* below this many row tiles, split the columns too */
#define BF_COL_ALIGN 16   /* column tiles are a multiple of this */
#define BF_PAR_MIN (1 << 18) /* multiply-adds below which one call is made */

typedef struct {
  const float *x;
  const uint16_t *w;
  const float *b;
  float *out;
  int N, IC, OC, rb, cb, ncb;
  pthread_mutex_t lock;
  int failed;
  char msg[200];
} bf_job;

static void gemm_task(size_t i, int worker, void *user) {
  (void)worker;
  bf_job *j = user;
  const int r0 = (int)(i / (size_t)j->ncb) * j->rb, c0 = (int)(i % (size_t)j->ncb) * j->cb;
  const int m = r0 + j->rb < j->N ? j->rb : j->N - r0;
  const int n = c0 + j->cb < j->OC ? j->cb : j->OC - c0;
  char eb[200] = "";
  /* the tile's input rows in BF16 (again for each column tile of a row
   * tile: IC values per row against n * IC multiply-adds), so that a
   * Linear is one parallel region, as in FP32 */
  uint16_t *xb = nl_xmalloc(sizeof(uint16_t) * (size_t)m * j->IC);
  nl_bf16_from_f32(xb, j->x + (size_t)r0 * j->IC, (size_t)m * j->IC);
  int rc = nl_gemm_bf16(m, n, j->IC, xb, j->IC, j->w + (size_t)c0 * j->IC, j->b ? j->b + c0 : NULL,
                        j->out + (size_t)r0 * j->OC + c0, j->OC, eb, sizeof eb);
  free(xb);
  if (rc) {
    pthread_mutex_lock(&j->lock);
    if (!j->failed) {
      j->failed = 1;
      snprintf(j->msg, sizeof j->msg, "%s", eb);
    }
    pthread_mutex_unlock(&j->lock);
  }
}

int nl_linear_forward_bf16(float *out, const float *inp, const uint16_t *w, const float *b, int N,
                           int IC, int OC, char *eb, size_t ec) {
  if (N < 1 || OC < 1) return 0;
  bf_job j;
  memset(&j, 0, sizeof j);
  j.x = inp;
  j.w = w;
  j.b = b;
  j.out = out;
  j.N = N;
  j.IC = IC;
  j.OC = OC;
  pthread_mutex_init(&j.lock, NULL);
  /* tiles from the shapes only (never the thread count): the same bits for any */
  j.rb = BF_ROWS;
  j.cb = OC;
  const int nrb = (N + BF_ROWS - 1) / BF_ROWS;
  if (nrb < BF_MIN_TILES) {
    const int ncb = (BF_MIN_TILES + nrb - 1) / nrb;
    j.cb = (OC + ncb - 1) / ncb;
    j.cb = (j.cb + BF_COL_ALIGN - 1) / BF_COL_ALIGN * BF_COL_ALIGN;
  }
  if ((double)N * OC * IC < BF_PAR_MIN) j.rb = N, j.cb = OC;
  if (j.rb > N) j.rb = N;
  if (j.cb > OC) j.cb = OC;
  j.ncb = (OC + j.cb - 1) / j.cb;
  const size_t ntiles = (size_t)((N + j.rb - 1) / j.rb) * (size_t)j.ncb;
  if (ntiles == 1)
    gemm_task(0, 0, &j); /* small: on this thread */
  else
    nl_parallel_for(ntiles, gemm_task, &j);
  pthread_mutex_destroy(&j.lock);
  if (j.failed) {
    if (eb) snprintf(eb, ec, "%s", j.msg);
    return -1;
  }
  return 0;
}
