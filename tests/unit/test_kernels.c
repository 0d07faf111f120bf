/* Kernels against plain double-precision references (formulas written out
 * here), and a whole ViT forward (average pooling, fc_norm, layer scale,
 * attention) against a naive double-precision implementation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/rng.h"
#include "base/vmath.h"
#include "model/safetensors.h"
#include "model/vit.h"
#include "tensor/sgemm.h"
#include "tensor/kernels.h"
#include "tensor/layers.h"

static void fill(float *x, size_t n, double scale, uint64_t seed) {
  nl_rng r;
  nl_rng_seed(&r, seed);
  for (size_t i = 0; i < n; i++) x[i] = (float)(scale * nl_rng_normal(&r));
}

static void test_layernorm(void **state) {
  (void)state;
  enum { R = 7, D = 192 };
  float x[R * D], w[D], b[D], y[R * D], mean[R], rstd[R];
  fill(x, R * D, 3.0, 1);
  for (int i = 0; i < R * D; i++) x[i] += 5.0f; /* an offset the mean must remove */
  fill(w, D, 1.0, 2);
  fill(b, D, 1.0, 3);
  nl_layernorm_rows(y, mean, rstd, x, w, b, R, D, 1e-6f);
  double worst = 0;
  for (int r = 0; r < R; r++) {
    double m = 0, v = 0;
    for (int j = 0; j < D; j++) m += x[r * D + j];
    m /= D;
    for (int j = 0; j < D; j++) v += (x[r * D + j] - m) * (x[r * D + j] - m);
    v /= D;
    for (int j = 0; j < D; j++) {
      double ref = (x[r * D + j] - m) / sqrt(v + 1e-6) * w[j] + b[j];
      worst = fmax(worst, fabs(ref - y[r * D + j]));
    }
    assert_true(fabs(mean[r] - m) < 1e-5);
    assert_true(fabs(rstd[r] - 1 / sqrt(v + 1e-6)) < 1e-5 / sqrt(v));
  }
  printf("# layernorm: max error %.3g\n", worst);
  assert_true(worst < 2e-5);
}

static void test_elementwise(void **state) {
  (void)state;
  enum { N = 20001 };
  float *x = nl_xmalloc(sizeof(float) * N), *y = nl_xmalloc(sizeof(float) * N);
  for (int i = 0; i < N; i++) x[i] = -10.0f + 20.0f * i / (N - 1);
  double we = 0, wg = 0, wt = 0, wx = 0;
  nl_verf(y, x, N);
  for (int i = 0; i < N; i++) we = fmax(we, fabs(y[i] - erf((double)x[i])));
  nl_gelu(y, x, N);
  for (int i = 0; i < N; i++) {
    double v = x[i];
    wg = fmax(wg, fabs(y[i] - 0.5 * v * (1 + erf(v / sqrt(2.0)))));
  }
  nl_vtanh(y, x, N);
  for (int i = 0; i < N; i++) wt = fmax(wt, fabs(y[i] - tanh((double)x[i])));
  for (int i = 0; i < N; i++) x[i] = -80.0f + 160.0f * i / (N - 1);
  nl_vexp(y, x, N);
  for (int i = 0; i < N; i++) wx = fmax(wx, fabs(y[i] - exp((double)x[i])) / exp((double)x[i]));
  printf("# erf %.3g, gelu %.3g, tanh %.3g (absolute), exp %.3g (relative)\n", we, wg, wt, wx);
  assert_true(we < 5e-7);
  assert_true(wg < 2e-6);
  assert_true(wt < 5e-7);
  assert_true(wx < 5e-7);
  /* NaN propagates, infinities saturate */
  float s[3] = {NAN, INFINITY, -INFINITY}, o[3];
  nl_gelu(o, s, 3);
  assert_true(isnan(o[0]));
  assert_true(isinf(o[1]) && o[1] > 0);
  nl_vtanh(o, s, 3);
  assert_true(isnan(o[0]) && o[1] == 1.0f && o[2] == -1.0f);
  nl_verf(o, s, 3);
  assert_true(isnan(o[0]) && o[1] == 1.0f && o[2] == -1.0f);
  /* DyT */
  float w[4] = {1, 2, -1, 0.5f}, b[4] = {0, 1, 2, 3}, xi[8], yo[8];
  fill(xi, 8, 2.0, 5);
  nl_dyt_rows(yo, xi, 0.7f, w, b, 2, 4);
  for (int i = 0; i < 8; i++)
    assert_true(fabs(yo[i] - (tanh(0.7 * xi[i]) * w[i % 4] + b[i % 4])) < 1e-6);
  free(x);
  free(y);
}

/* The one fast exp, erf and tanh (base/vmath.h), finely sampled, against
 * libm in double. erf's error is largest near 0 (3.7e-7: 1 - erfc there
 * carries erfc's rounding); GELU only sees it scaled by x/2. */
static void test_vmath(void **state) {
  (void)state;
  double e_exp = 0, e_erf = 0, e_tanh = 0;
  for (int i = 0; i <= 200000; i++) {
    float x = -87.0f + 175.0f * (float)i / 200000.0f;
    e_exp = fmax(e_exp, fabs(nl_vm_exp(x) - exp((double)x)) / exp((double)x));
    float z = -6.0f + 12.0f * (float)i / 200000.0f;
    e_erf = fmax(e_erf, fabs(nl_vm_erf(z) - erf((double)z)));
    e_tanh = fmax(e_tanh, fabs(nl_vm_tanh(z) - tanh((double)z)));
  }
  printf("# vmath: exp %.3g (relative), erf %.3g, tanh %.3g (absolute)\n", e_exp, e_erf, e_tanh);
  assert_true(e_exp < 3e-7);
  assert_true(e_erf < 4e-7);
  assert_true(e_tanh < 3e-7);
  /* NaN propagates; saturation at the ends */
  assert_true(isnan(nl_vm_exp(NAN)) && isnan(nl_vm_erf(NAN)) && isnan(nl_vm_tanh(NAN)));
  assert_true(nl_vm_exp(-1000.0f) >= 0.0f && nl_vm_exp(-1000.0f) < 1e-37f);
  assert_true(nl_vm_erf(INFINITY) == 1.0f && nl_vm_erf(-INFINITY) == -1.0f);
  assert_true(nl_vm_tanh(100.0f) == 1.0f && nl_vm_tanh(-100.0f) == -1.0f);
}

static void test_softmax_linear(void **state) {
  (void)state;
  enum { R = 5, N = 50 };
  float x[R * N], y[R * N];
  fill(x, R * N, 4.0, 7);
  memcpy(y, x, sizeof x);
  nl_softmax_rows(y, R, N, 0.125f);
  for (int r = 0; r < R; r++) {
    double s = 0;
    for (int j = 0; j < N; j++) s += exp(0.125 * x[r * N + j]);
    for (int j = 0; j < N; j++) assert_true(fabs(y[r * N + j] - exp(0.125 * x[r * N + j]) / s) < 1e-7);
  }
  enum { M = 9, K = 13, O = 6 };
  float a[M * K], w[O * K], bias[O], out[M * O];
  fill(a, M * K, 1, 8);
  fill(w, O * K, 1, 9);
  fill(bias, O, 1, 10);
  nl_linear_forward(out, a, w, bias, M, K, O);
  for (int i = 0; i < M; i++)
    for (int o = 0; o < O; o++) {
      double s = bias[o];
      for (int k = 0; k < K; k++) s += (double)a[i * K + k] * w[o * K + k];
      assert_true(fabs(s - out[i * O + o]) < 1e-5);
    }
}

/* ---- a small random ViT: average pooling, fc_norm, layer scale, no class token ---- */

enum { IMG = 8, P = 4, C = 2, D = 8, HEADS = 2, DEPTH = 2, HM = 16, CLS = 3, G = IMG / P, NP = G * G, T = NP };

typedef struct tens {
  const char *name;
  int ndim;
  int64_t shape[4];
} tens;

static double ln_d(double *o, const double *x, const float *w, const float *b) {
  double m = 0, v = 0;
  for (int j = 0; j < D; j++) m += x[j];
  m /= D;
  for (int j = 0; j < D; j++) v += (x[j] - m) * (x[j] - m);
  v /= D;
  for (int j = 0; j < D; j++) o[j] = (x[j] - m) / sqrt(v + 1e-6) * w[j] + b[j];
  return m;
}

static void naive_forward(const nl_vit *m, const float *img, double *logits) {
  double x[T][D], h[T][D], qkv[T][3 * D], att[T][D], mlp[T][HM];
  for (int t = 0; t < T; t++) {
    int gy = t / G, gx = t % G;
    for (int o = 0; o < D; o++) {
      double s = m->patch_b[o];
      for (int c = 0; c < C; c++)
        for (int py = 0; py < P; py++)
          for (int px = 0; px < P; px++)
            s += (double)m->patch_w[((o * C + c) * P + py) * P + px] *
                 img[(c * IMG + gy * P + py) * IMG + gx * P + px];
      x[t][o] = s + m->pos_embed[t * D + o];
    }
  }
  int hd = D / HEADS;
  for (int l = 0; l < DEPTH; l++) {
    const nl_vit_block *B = &m->blocks[l];
    for (int t = 0; t < T; t++) ln_d(h[t], x[t], B->norm1->w, B->norm1->b);
    for (int t = 0; t < T; t++)
      for (int o = 0; o < 3 * D; o++) {
        double s = B->qkv_b[o];
        for (int k = 0; k < D; k++) s += (double)B->qkv_w[o * D + k] * h[t][k];
        qkv[t][o] = s;
      }
    for (int hh = 0; hh < HEADS; hh++)
      for (int i = 0; i < T; i++) {
        double sc[T], mx = -1e300, z = 0;
        for (int j = 0; j < T; j++) {
          double s = 0;
          for (int k = 0; k < hd; k++) s += qkv[i][hh * hd + k] * qkv[j][D + hh * hd + k];
          sc[j] = s / sqrt((double)hd);
          mx = fmax(mx, sc[j]);
        }
        for (int j = 0; j < T; j++) z += (sc[j] = exp(sc[j] - mx));
        for (int k = 0; k < hd; k++) {
          double s = 0;
          for (int j = 0; j < T; j++) s += sc[j] / z * qkv[j][2 * D + hh * hd + k];
          att[i][hh * hd + k] = s;
        }
      }
    for (int t = 0; t < T; t++)
      for (int o = 0; o < D; o++) {
        double s = B->proj_b[o];
        for (int k = 0; k < D; k++) s += (double)B->proj_w[o * D + k] * att[t][k];
        x[t][o] += B->ls1[o] * s;
      }
    for (int t = 0; t < T; t++) ln_d(h[t], x[t], B->norm2->w, B->norm2->b);
    for (int t = 0; t < T; t++) {
      for (int o = 0; o < HM; o++) {
        double s = B->fc1_b[o];
        for (int k = 0; k < D; k++) s += (double)B->fc1_w[o * D + k] * h[t][k];
        mlp[t][o] = 0.5 * s * (1 + erf(s / sqrt(2.0)));
      }
      for (int o = 0; o < D; o++) {
        double s = B->fc2_b[o];
        for (int k = 0; k < HM; k++) s += (double)B->fc2_w[o * HM + k] * mlp[t][k];
        x[t][o] += B->ls2[o] * s;
      }
    }
  }
  double pooled[D] = {0}, f[D];
  for (int t = 0; t < T; t++)
    for (int j = 0; j < D; j++) pooled[j] += x[t][j] / T;
  ln_d(f, pooled, m->final_norm->w, m->final_norm->b);
  for (int c = 0; c < CLS; c++) {
    double s = m->head_b[c];
    for (int k = 0; k < D; k++) s += (double)m->head_w[c * D + k] * f[k];
    logits[c] = s;
  }
}

static void test_vit_avgpool_layerscale(void **state) {
  (void)state;
  char path[] = "/tmp/nl_vit_avg_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  tens ts[64];
  int n = 0;
  char names[64][48];
#define T_(nm, nd, a, b, c, d) \
  do {                          \
    snprintf(names[n], 48, "%s", nm); \
    ts[n] = (tens){names[n], nd, {a, b, c, d}}; \
    n++; \
  } while (0)
  T_("pos_embed", 3, 1, T, D, 0);
  T_("patch_embed.proj.weight", 4, D, C, P, P);
  T_("patch_embed.proj.bias", 1, D, 0, 0, 0);
  for (int l = 0; l < DEPTH; l++) {
    char b[48];
#define BT(s, nd, a, bb) snprintf(b, sizeof b, "blocks.%d.%s", l, s); T_(b, nd, a, bb, 0, 0)
    BT("norm1.weight", 1, D, 0); BT("norm1.bias", 1, D, 0);
    BT("attn.qkv.weight", 2, 3 * D, D); BT("attn.qkv.bias", 1, 3 * D, 0);
    BT("attn.proj.weight", 2, D, D); BT("attn.proj.bias", 1, D, 0);
    BT("ls1.gamma", 1, D, 0); BT("ls2.gamma", 1, D, 0);
    BT("norm2.weight", 1, D, 0); BT("norm2.bias", 1, D, 0);
    BT("mlp.fc1.weight", 2, HM, D); BT("mlp.fc1.bias", 1, HM, 0);
    BT("mlp.fc2.weight", 2, D, HM); BT("mlp.fc2.bias", 1, D, 0);
#undef BT
  }
  T_("fc_norm.weight", 1, D, 0, 0, 0);
  T_("fc_norm.bias", 1, D, 0, 0, 0);
  T_("head.weight", 2, CLS, D, 0, 0);
  T_("head.bias", 1, CLS, 0, 0, 0);
#undef T_
  nl_error err;
  nl_st_writer *w = nl_st_writer_new();
  for (int i = 0; i < n; i++) {
    size_t k = 1;
    for (int d = 0; d < ts[i].ndim; d++) k *= (size_t)ts[i].shape[d];
    float *v = nl_xmalloc(sizeof(float) * k);
    fill(v, k, strstr(ts[i].name, "norm") && strstr(ts[i].name, "weight") ? 0.3 : 0.5, 100 + i);
    if (strstr(ts[i].name, "norm") && strstr(ts[i].name, "weight"))
      for (size_t j = 0; j < k; j++) v[j] += 1.0f;
    assert_int_equal(nl_st_writer_add(w, ts[i].name, v, ts[i].ndim, ts[i].shape, &err), 0);
    free(v);
  }
  nl_st_writer_meta(w, "model_args", "{\"img_size\": 8, \"patch_size\": 4, \"in_chans\": 2, \"embed_dim\": 8, \"depth\": 2, \"num_heads\": 2, \"num_classes\": 3, \"class_token\": false, \"global_pool\": \"avg\", \"init_values\": 1e-5}");
  assert_int_equal(nl_st_writer_save(w, path, &err), 0);
  nl_st_writer_free(w);
  nl_vit m;
  if (nl_vit_load(&m, path, NULL, &err)) fail_msg("%s", err.msg);
  assert_int_equal(m.cfg.avg_pool, 1);
  assert_int_equal(m.cfg.layer_scale, 1);
  assert_int_equal(m.cfg.tokens, NP);
  assert_string_equal(m.final_norm->name, "fc_norm");
  enum { NB = 3 };
  float img[NB * C * IMG * IMG];
  fill(img, NB * C * IMG * IMG, 1.0, 42);
  nl_vit_acts a;
  assert_int_equal(nl_vit_acts_init(&a, &m.cfg, NB, 1, &err), 0);
  assert_int_equal(nl_vit_forward(&m, &a, img, NB, NULL, NULL, &err), 0);
  double worst = 0;
  for (int b = 0; b < NB; b++) {
    double ref[CLS];
    naive_forward(&m, img + b * C * IMG * IMG, ref);
    for (int c = 0; c < CLS; c++) worst = fmax(worst, fabs(ref[c] - a.logits[b * CLS + c]));
  }
  printf("# avg-pool / layer-scale ViT vs naive double forward: max logit error %.3g\n", worst);
  assert_true(worst < 1e-5);
  nl_vit_acts_free(&a);
  nl_vit_free(&m);
  unlink(path);
}

/* nl_sgemm against a double-precision triple loop, every transpose case,
 * shapes with partial kernel tiles (12 x 32) and several k blocks (256),
 * leading dimensions wider than the matrices (padding untouched), alpha,
 * beta 0 (c holds NaN, which must not reach the result) and beta != 0;
 * and, for normlab's own kernel (cblas_sgemm does not promise it), the
 * result of a product split into row and column tiles equals the whole
 * product bitwise; nl_sgemm_bias likewise. */
static void test_sgemm(void **state) {
  (void)state;
  static const int shapes[][3] = {{1, 1, 1},    {13, 33, 7},  {12, 32, 256}, {50, 50, 64},
                                  {145, 513, 300}, {64, 192, 600}, {17, 17, 32}, {3, 100, 1000}};
  printf("# nl_sgemm: %s kernel\n", nl_sgemm_native() ? "AVX-512" : "cblas_sgemm");
  double worst = 0;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
        const size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
        float *A = nl_xmalloc(na * sizeof(float)), *B = nl_xmalloc(nb * sizeof(float));
        float *c = nl_xmalloc((size_t)M * ldc * sizeof(float));
        float *c0 = nl_xmalloc((size_t)M * ldc * sizeof(float));
        fill(A, na, 1.0, 10 + s);
        fill(B, nb, 1.0, 20 + s);
        fill(c0, (size_t)M * ldc, 1.0, 30 + s);
        const float alpha = 0.7f, beta = s % 2 ? 1.0f : (s % 4 ? 0.3f : 0.0f);
        for (size_t i = 0; i < (size_t)M * ldc; i++)
          c[i] = beta == 0.0f && (int)(i % ldc) < N ? NAN : c0[i];
        nl_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, c, ldc);
        for (int i = 0; i < M; i++)
          for (int j = 0; j < ldc; j++) {
            const float got = c[(size_t)i * ldc + j];
            if (j >= N) {
              assert_true(got == c0[(size_t)i * ldc + j]); /* padding untouched */
              continue;
            }
            double ref = 0;
            for (int k = 0; k < K; k++)
              ref += (double)(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                     (tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
            ref = alpha * ref + (beta == 0.0f ? 0.0 : beta * (double)c0[(size_t)i * ldc + j]);
            assert_true(isfinite(got));
            worst = fmax(worst, fabs(ref - got) / sqrt((double)K));
          }
        /* the same product as 4 tiles (rows split at 5, columns at 32) */
        if (nl_sgemm_native() && M > 5 && N > 32) {
          float *t = nl_xmalloc((size_t)M * ldc * sizeof(float));
          memcpy(t, c0, (size_t)M * ldc * sizeof(float));
          const int r[3] = {0, 5, M}, q[3] = {0, 32, N};
          for (int x = 0; x < 2; x++)
            for (int y = 0; y < 2; y++)
              nl_sgemm(ta, tb, r[x + 1] - r[x], q[y + 1] - q[y], K, alpha,
                       ta ? A + r[x] : A + (size_t)r[x] * lda, lda,
                       tb ? B + (size_t)q[y] * ldb : B + q[y], ldb, beta,
                       t + (size_t)r[x] * ldc + q[y], ldc);
          if (beta != 0.0f) assert_memory_equal(t, c, (size_t)M * ldc * sizeof(float));
          free(t);
        }
        free(A);
        free(B);
        free(c);
        free(c0);
      }
  /* nl_sgemm_bias: every row starts as bias, c (NaN here) is not read */
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      enum { M = 29, N = 45, K = 300 };
      float A[M * K], B[K * N], bias[N], c[M * N];
      fill(A, M * K, 1.0, 40);
      fill(B, K * N, 1.0, 41);
      fill(bias, N, 1.0, 42);
      for (int i = 0; i < M * N; i++) c[i] = NAN;
      nl_sgemm_bias(ta, tb, M, N, K, 0.5f, A, ta ? M : K, B, tb ? K : N, bias, c, N);
      for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
          double ref = 0;
          for (int k = 0; k < K; k++)
            ref += (double)(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
          ref = 0.5 * ref + bias[j];
          assert_true(isfinite(c[i * N + j]));
          worst = fmax(worst, fabs(ref - c[i * N + j]) / sqrt((double)K));
        }
    }
  printf("# nl_sgemm: max error %.3g (over sqrt(K)) against double sums\n", worst);
  assert_true(worst < 5e-6); /* cblas_sgemm (OpenBLAS 0.3.21): 2.3e-6 */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layernorm),
      cmocka_unit_test(test_elementwise),
      cmocka_unit_test(test_vmath),
      cmocka_unit_test(test_softmax_linear),
      cmocka_unit_test(test_vit_avgpool_layerscale),
      cmocka_unit_test(test_sgemm),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
