/* Quantization: the RTN formulas on a matrix worked out by hand, the INT8
 * product through oneDNN against an exact integer reference, AWQ against
 * RTN (the grid holds alpha 0; a planted 10x activation channel), a
 * quantized timm fixture against the fixture's FP32 logits, and the saved
 * file read back. */
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
#include "model/quant.h"
#include "model/safetensors.h"
#include "model/vit.h"
#include "tensor/qlinear.h"

static char fx_path[4096];

static const char *fixture(const char *name) {
  const char *dir = getenv("NL_FIXTURES");
  snprintf(fx_path, sizeof fx_path, "%s/%s", dir ? dir : "../shared/fixtures/timm", name);
  return fx_path;
}

/* ---- RTN by hand ----
 * 4 bits, asymmetric, one group of 4 per row (llm-awq's formulas, qlinear.h):
 * row 0 {-1, -0.6, 0.25, 2}: s = (2 - -1) / 15 = 0.2, z = 0 - round(-1 / 0.2) = 5,
 *   q = round(w / 0.2) + 5 = {-5+5, -3+5, 1+5, 10+5} = {0, 2, 6, 15},
 *   w' = 0.2 (q - 5) = {-1, -0.6, 0.2, 2}
 * row 1 {0.1, 0.2, 0.3, 0.4}: s = 0.3 / 15 = 0.02, z = -round(0.1 / 0.02) = -5 -> clamped to 0,
 *   q = {5, 10, 15, 20 -> 15}, w' = {0.1, 0.2, 0.3, 0.3} */
static void test_rtn_by_hand_4bit(void **state) {
  (void)state;
  const float w[8] = {-1.0f, -0.6f, 0.25f, 2.0f, 0.1f, 0.2f, 0.3f, 0.4f};
  nl_qlinear q;
  assert_int_equal(nl_qlinear_quantize(&q, w, 2, 4, 4, 4, 0), 0);
  assert_int_equal(q.ngroups, 1);
  assert_float_equal(q.scale[0], 0.2f, 1e-7);
  assert_int_equal(q.zero[0], 5);
  assert_float_equal(q.scale[1], 0.02f, 1e-8);
  assert_int_equal(q.zero[1], 0);
  const int32_t want[8] = {0, 2, 6, 15, 5, 10, 15, 15};
  for (int i = 0; i < 8; i++) assert_int_equal(nl_qlinear_get(&q, i / 4, i % 4), want[i]);
  /* packed two per byte, even column in the low nibble */
  assert_int_equal(q.q[0], 0x20);
  assert_int_equal(q.q[1], 0xF6);
  assert_int_equal(q.q[2], 0xA5);
  assert_int_equal(q.q[3], 0xFF);
  float d[8];
  nl_qlinear_dequantize(&q, d);
  const float wd[8] = {-1.0f, -0.6f, 0.2f, 2.0f, 0.1f, 0.2f, 0.3f, 0.3f};
  for (int i = 0; i < 8; i++) assert_float_equal(d[i], wd[i], 1e-6);
  assert_int_equal(nl_qlinear_bytes(&q), 4 + 2 * 4 + 2);
  nl_qlinear_free(&q);
}

/* 3 bits: 8 weights in 3 bytes, column k of a row at bits 3k..3k+2 of the
 * row's bytes read as one little-endian bit string. Every pattern of a 3 x
 * 24 matrix set column by column, each read back, and the bytes against
 * the layout assembled here bit by bit; then quantized weights with groups
 * of 8: RTN's formulas in [0, 7], and nl_qlinear_forward against the
 * double product with s (q - z) (the weight-only path: dequantized tiles
 * and sgemm). */
static void test_pack_3bit(void **state) {
  (void)state;
  const int oc = 3, ic = 24;
  nl_qlinear q;
  nl_qlinear_alloc(&q, oc, ic, 3, 3, 0);
  assert_int_equal(nl_qlinear_row_bytes(3, ic), 9);
  assert_int_equal(nl_qlinear_ic_ok(3, 20), 0);
  int32_t v[72];
  for (int i = 0; i < oc * ic; i++) v[i] = (int32_t)((i * 5 + i / 7) % 8);
  for (int i = 0; i < oc * ic; i++) nl_qlinear_set(&q, i / ic, i % ic, 7); /* all ones first */
  for (int i = 0; i < oc * ic; i++) nl_qlinear_set(&q, i / ic, i % ic, v[i]);
  uint8_t want[27];
  memset(want, 0, sizeof want);
  for (int o = 0; o < oc; o++)
    for (int k = 0; k < ic; k++)
      for (int b = 0; b < 3; b++)
        if ((v[o * ic + k] >> b) & 1) {
          int bit = 3 * k + b;
          want[o * 9 + bit / 8] |= (uint8_t)(1u << (bit % 8));
        }
  assert_memory_equal(q.q, want, sizeof want);
  for (int i = 0; i < oc * ic; i++) assert_int_equal(nl_qlinear_get(&q, i / ic, i % ic), v[i]);
  nl_qlinear_free(&q);

  /* quantize: rows of 16, groups of 8 */
  const int O = 5, I = 16, N = 7;
  float w[80], x[112], b[5], out[35];
  nl_rng r;
  nl_rng_seed(&r, 3);
  for (int i = 0; i < O * I; i++) w[i] = (float)nl_rng_normal(&r);
  for (int i = 0; i < N * I; i++) x[i] = (float)nl_rng_normal(&r);
  for (int i = 0; i < O; i++) b[i] = (float)nl_rng_normal(&r);
  assert_int_equal(nl_qlinear_quantize(&q, w, O, 12, 3, 6, 0), -1); /* 12 inputs do not pack */
  assert_int_equal(nl_qlinear_quantize(&q, w, O, I, 3, 8, 1), -1); /* 3 bits are asymmetric */
  assert_int_equal(nl_qlinear_quantize(&q, w, O, I, 3, 8, 0), 0);
  for (int o = 0; o < O; o++)
    for (int g = 0; g < 2; g++) {
      const float *wg = w + o * I + g * 8;
      double lo = wg[0], hi = wg[0];
      for (int k = 1; k < 8; k++) lo = fmin(lo, wg[k]), hi = fmax(hi, wg[k]);
      double s = fmax((hi - lo) / 7, 1e-5);
      long z = lround(-lo / s);
      z = z < 0 ? 0 : z > 7 ? 7 : z;
      assert_float_equal(q.scale[o * 2 + g], s, 1e-6 * s);
      assert_int_equal(q.zero[o * 2 + g], z);
      for (int k = 0; k < 8; k++) {
        long qv = lround(wg[k] / s) + z;
        qv = qv < 0 ? 0 : qv > 7 ? 7 : qv;
        assert_int_equal(nl_qlinear_get(&q, o, g * 8 + k), qv);
      }
    }
  char eb[256];
  assert_int_equal(nl_qlinear_forward(out, x, &q, b, N, eb, sizeof eb), 0);
  for (int n = 0; n < N; n++)
    for (int o = 0; o < O; o++) {
      double acc = b[o];
      for (int k = 0; k < I; k++) {
        int g = k / 8;
        acc += (double)x[n * I + k] * q.scale[o * 2 + g] *
               (double)(nl_qlinear_get(&q, o, k) - q.zero[o * 2 + g]);
      }
      assert_float_equal(out[n * O + o], acc, 1e-5 * (1 + fabs(acc)));
    }
  assert_int_equal(nl_qlinear_bytes(&q), 5 * 6 + 10 * 4 + 10);
  nl_qlinear_free(&q);
}

/* 8 bits: symmetric {-1.27, 0.5, 1, 0}: s = 1.27 / 127 = 0.01, q = {-127, 50, 100, 0};
 * asymmetric, groups of 2: {0, 2.55 | -1, 1.55}: s = 2.55 / 255 = 0.01 for both,
 * z = -128 - round(0) = -128, q = {-128, 127}; z = -128 - round(-100) = -28,
 * q = {-100 - 28, 155 - 28} = {-128, 127}, w' = 0.01 (q - z) = {-1, 1.55}. */
static void test_rtn_by_hand_8bit(void **state) {
  (void)state;
  const float ws[4] = {-1.27f, 0.5f, 1.0f, 0.0f};
  nl_qlinear q;
  assert_int_equal(nl_qlinear_quantize(&q, ws, 1, 4, 8, 4, 1), 0);
  assert_float_equal(q.scale[0], 0.01f, 1e-8);
  assert_int_equal(q.zero[0], 0);
  const int32_t want[4] = {-127, 50, 100, 0};
  for (int i = 0; i < 4; i++) assert_int_equal(nl_qlinear_get(&q, 0, i), want[i]);
  nl_qlinear_free(&q);
  const float wa[4] = {0.0f, 2.55f, -1.0f, 1.55f};
  assert_int_equal(nl_qlinear_quantize(&q, wa, 1, 4, 8, 2, 0), 0);
  assert_int_equal(q.ngroups, 2);
  assert_float_equal(q.scale[0], 0.01f, 1e-8);
  assert_int_equal(q.zero[0], -128);
  assert_int_equal(nl_qlinear_get(&q, 0, 0), -128);
  assert_int_equal(nl_qlinear_get(&q, 0, 1), 127);
  assert_float_equal(q.scale[1], 0.01f, 1e-8);
  assert_int_equal(q.zero[1], -28);
  assert_int_equal(nl_qlinear_get(&q, 0, 2), -128);
  assert_int_equal(nl_qlinear_get(&q, 0, 3), 127);
  float d[4];
  nl_qlinear_dequantize(&q, d);
  assert_float_equal(d[0], 0.0f, 1e-7);
  assert_float_equal(d[1], 2.55f, 1e-6);
  assert_float_equal(d[2], -1.0f, 1e-6);
  assert_float_equal(d[3], 1.55f, 1e-6);
  nl_qlinear_free(&q);
  /* shapes that do not split: an odd 4-bit group, a group not dividing ic */
  assert_int_equal(nl_qlinear_quantize(&q, wa, 1, 4, 4, 3, 0), -1);
  assert_int_equal(nl_qlinear_quantize(&q, wa, 2, 2, 8, 3, 0), -1);
}

/* ---- INT8 products ---- */

static void test_int8_matmul_exact(void **state) {
  (void)state;
  nl_rng r;
  nl_rng_seed(&r, 7);
  const int shapes[3][3] = {{37, 45, 70}, {1, 192, 64}, {300, 17, 129}};
  for (int si = 0; si < 3; si++) {
    const int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
    int8_t *a = nl_xmalloc((size_t)M * K), *w = nl_xmalloc((size_t)N * K);
    int32_t *c = nl_xmalloc(sizeof(int32_t) * (size_t)M * N);
    for (int i = 0; i < M * K; i++) a[i] = (int8_t)((int)(nl_rng_u64(&r) % 255) - 127);
    for (int i = 0; i < N * K; i++) w[i] = (int8_t)((int)(nl_rng_u64(&r) % 255) - 127);
    a[0] = -127;
    w[0] = -127; /* extremes */
    char eb[200] = "";
    assert_int_equal(nl_qgemm_s8(M, N, K, a, w, c, eb, sizeof eb), 0);
    int cached = nl_qgemm_cache_size();
    assert_int_equal(nl_qgemm_s8(M, N, K, a, w, c, eb, sizeof eb), 0);
    assert_int_equal(nl_qgemm_cache_size(), cached); /* the primitive is reused */
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        int64_t s = 0;
        for (int k = 0; k < K; k++) s += (int64_t)a[(size_t)i * K + k] * w[(size_t)j * K + k];
        if (s != c[(size_t)i * N + j]) fail_msg("%dx%dx%d: c[%d,%d] = %d, want %lld", M, N, K, i, j, c[(size_t)i * N + j], (long long)s);
      }
    free(a);
    free(w);
    free(c);
  }
}

/* The W8A8 layer: rows of x are sa_i times integers with max |.| 127 (so
 * per-token quantization recovers the integers exactly); out_ij must be
 * sa_i s_j sum_k a_ik q_jk + b_j (int64 sum here) within float rounding. */
static void test_w8a8_layer_scales(void **state) {
  (void)state;
  const int N = 300, IC = 96, OC = 40; /* 300 rows: two row tiles */
  nl_rng r;
  nl_rng_seed(&r, 3);
  nl_qlinear q;
  nl_qlinear_alloc(&q, OC, IC, 8, 1, 1);
  q.acts = 8;
  float *b = nl_xmalloc(sizeof(float) * OC), *x = nl_xmalloc(sizeof(float) * N * IC);
  float *out = nl_xmalloc(sizeof(float) * N * OC), *sa = nl_xmalloc(sizeof(float) * N);
  int32_t *ai = nl_xmalloc(sizeof(int32_t) * N * IC);
  for (int o = 0; o < OC; o++) {
    q.scale[o] = 0.001f * (float)(1 + o);
    b[o] = (float)o - 20.0f;
    for (int k = 0; k < IC; k++) nl_qlinear_set(&q, o, k, (int32_t)(nl_rng_u64(&r) % 255) - 127);
  }
  for (int i = 0; i < N; i++) {
    sa[i] = 0.01f * (float)(1 + i % 13);
    for (int k = 0; k < IC; k++) {
      ai[i * IC + k] = (int32_t)(nl_rng_u64(&r) % 255) - 127;
      if (k == i % IC) ai[i * IC + k] = (i & 1) ? 127 : -127;
      x[i * IC + k] = sa[i] * (float)ai[i * IC + k];
    }
  }
  char eb[200] = "";
  assert_int_equal(nl_qlinear_forward(out, x, &q, b, N, eb, sizeof eb), 0);
  double worst = 0;
  for (int i = 0; i < N; i++)
    for (int o = 0; o < OC; o++) {
      int64_t s = 0;
      for (int k = 0; k < IC; k++) s += (int64_t)ai[i * IC + k] * nl_qlinear_get(&q, o, k);
      double prod = (double)sa[i] * q.scale[o] * (double)s, want = prod + b[o];
      /* relative to the terms' size (the sum may cancel) */
      double rel = fabs(out[i * OC + o] - want) / (fabs(prod) + fabs(b[o]) + 1e-6);
      if (rel > worst) worst = rel;
    }
  /* float products of three factors and one add: a few ulps */
  if (worst > 2e-6) fail_msg("worst relative error %g", worst);
  nl_qlinear_free(&q);
  free(b);
  free(x);
  free(out);
  free(sa);
  free(ai);
}

/* ---- AWQ ---- */

static void planted(float *x, int rows, int ic, float *w, int oc, uint64_t seed) {
  nl_rng r;
  nl_rng_seed(&r, seed);
  for (int i = 0; i < rows * ic; i++) x[i] = (float)nl_rng_normal(&r);
  for (int i = 0; i < rows; i++) x[i * ic + 3] *= 10.0f; /* the salient channel */
  for (int i = 0; i < oc * ic; i++) w[i] = (float)nl_rng_normal(&r);
}

/* The grid starts at alpha 0 (s = 1: RTN), so the chosen alpha's error is
 * never above RTN's; with one activation channel 10x the others, AWQ
 * protects it (llm-awq's observation) and is clearly better. */
static void test_awq_beats_rtn_planted(void **state) {
  (void)state;
  const int rows = 256, ic = 64, oc = 48;
  float *x = nl_xmalloc(sizeof(float) * rows * ic), *w = nl_xmalloc(sizeof(float) * oc * ic);
  float s[64], alpha = -1;
  double eb, er;
  planted(x, rows, ic, w, oc, 11);
  nl_awq_search(x, rows, ic, w, oc, 4, 32, s, &alpha, &eb, &er);
  assert_true(eb <= er);
  assert_true(alpha > 0);
  if (!(eb < 0.8 * er)) fail_msg("AWQ error %g, RTN %g: not clearly better", eb, er);
  /* the salient channel gets the largest scale */
  for (int k = 0; k < ic; k++)
    if (k != 3) assert_true(s[k] < s[3]);
  free(x);
  free(w);
}

/* ---- the fixture models ---- */

typedef struct {
  float *inputs, *logits;
  int n, classes;
} refset;

static int load_ref(const char *name, refset *rs) {
  nl_st_file f;
  nl_error err;
  if (nl_st_open(&f, fixture(name), &err)) {
    print_message("skipped: %s\n", err.msg);
    return -1;
  }
  size_t ni, nl;
  rs->inputs = nl_st_read_f32(&f, "inputs", &ni, &err);
  rs->logits = nl_st_read_f32(&f, "logits", &nl, &err);
  rs->n = 8;
  rs->classes = (int)(nl / 8);
  nl_st_close(&f);
  return rs->inputs && rs->logits ? 0 : -1;
}

static int argmax(const float *v, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (v[i] > v[b]) b = i;
  return b;
}

static float *run_logits(const nl_vit *m, const float *inputs, int n) {
  nl_vit_acts a;
  nl_error err;
  assert_int_equal(nl_vit_acts_init(&a, &m->cfg, n, 0, &err), 0);
  a.threads = 2;
  if (nl_vit_forward(m, &a, inputs, n, NULL, NULL, &err)) fail_msg("%s", err.msg);
  float *l = nl_xmalloc(sizeof(float) * (size_t)n * m->cfg.classes);
  memcpy(l, a.logits, sizeof(float) * (size_t)n * m->cfg.classes);
  nl_vit_acts_free(&a);
  return l;
}

/* Quantize a fixture model, calibrating on its 8 reference inputs, and
 * compare with the fixture's FP32 logits: same top-1 on all 8 and logits
 * within tol. Then save, load, and the loaded model gives the same logits
 * bit for bit. */
static void check_fixture(const char *model, const char *ref, const nl_quant_opts *o, double tol,
                          int check_awq) {
  refset rs;
  if (load_ref(ref, &rs)) {
    skip();
    return;
  }
  nl_vit m;
  nl_error err;
  if (nl_vit_load(&m, fixture(model), NULL, &err)) fail_msg("%s", err.msg);
  size_t nrep = (size_t)m.cfg.depth * NL_QL_COUNT;
  nl_quant_layer_report *rep = nl_xcalloc(nrep, sizeof *rep);
  if (nl_vit_quantize(&m, rs.inputs, rs.n, o, 2, rep, &err)) fail_msg("%s", err.msg);
  for (size_t i = 0; i < nrep; i++) {
    if (!rep[i].name[0]) continue;
    if (check_awq && !(rep[i].err_best <= rep[i].err_rtn))
      fail_msg("%s: AWQ error %g above RTN's %g", rep[i].name, rep[i].err_best, rep[i].err_rtn);
    assert_true(isfinite(rep[i].err_final));
  }
  float *lq = run_logits(&m, rs.inputs, rs.n);
  double worst = 0;
  for (int i = 0; i < rs.n; i++) {
    const float *a = lq + i * rs.classes, *b = rs.logits + i * rs.classes;
    if (argmax(a, rs.classes) != argmax(b, rs.classes))
      fail_msg("%s: image %d: top-1 %d, FP32 reference %d", model, i, argmax(a, rs.classes),
               argmax(b, rs.classes));
    for (int c = 0; c < rs.classes; c++) worst = fmax(worst, fabs((double)a[c] - b[c]));
  }
  print_message("%s: max |logit - FP32 reference| = %.4g (tolerance %g)\n", model, worst, tol);
  if (worst > tol) fail_msg("%s: logits %.4g off the FP32 reference (tolerance %g)", model, worst, tol);
  /* saved and loaded: the same logits, bit for bit */
  char path[] = "/tmp/nl_test_quant_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  if (nl_vit_save(&m, path, &err)) fail_msg("%s", err.msg);
  nl_vit m2;
  if (nl_vit_load(&m2, path, NULL, &err)) fail_msg("%s", err.msg);
  assert_non_null(m2.quant);
  assert_int_equal(nl_vit_stored_bytes(&m2), nl_vit_stored_bytes(&m));
  float *l2 = run_logits(&m2, rs.inputs, rs.n);
  assert_memory_equal(lq, l2, sizeof(float) * (size_t)rs.n * rs.classes);
  /* and once more through save (the loaded model writes the same tensors) */
  if (nl_vit_save(&m2, path, &err)) fail_msg("%s", err.msg);
  nl_vit m3;
  if (nl_vit_load(&m3, path, NULL, &err)) fail_msg("%s", err.msg);
  float *l3 = run_logits(&m3, rs.inputs, rs.n);
  assert_memory_equal(lq, l3, sizeof(float) * (size_t)rs.n * rs.classes);
  /* loaded for inference only (no FP32 copies of the integer weights): the
   * views are gone, the logits the same bit for bit, and training refused */
  nl_vit m4;
  const nl_vit_load_opts lo = {.int_only = 1};
  if (nl_vit_load(&m4, path, &lo, &err)) fail_msg("%s", err.msg);
  for (int l = 0; l < m4.cfg.depth; l++) {
    const nl_vit_block *B = &m4.blocks[l];
    assert_true(!B->q[NL_QL_QKV] == !!B->qkv_w && !B->q[NL_QL_PROJ] == !!B->proj_w);
    assert_true(!B->q[NL_QL_FC1] == !!B->fc1_w && !B->q[NL_QL_FC2] == !!B->fc2_w);
  }
  assert_non_null(m4.blocks[0].q[NL_QL_QKV]);
  float *l4 = run_logits(&m4, rs.inputs, rs.n);
  assert_memory_equal(lq, l4, sizeof(float) * (size_t)rs.n * rs.classes);
  assert_int_equal(nl_vit_stored_bytes(&m4), nl_vit_stored_bytes(&m));
  assert_int_equal(nl_vit_quant_check_trainable(&m4, "q", "train", &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "quantized"));
  assert_int_equal(nl_vit_quant_check_trainable(&m3, "q", "train", &err), -1);
  free(l4);
  nl_vit_free(&m4);
  unlink(path);
  free(l3);
  free(l2);
  free(lq);
  free(rep);
  nl_vit_free(&m3);
  nl_vit_free(&m2);
  nl_vit_free(&m);
  free(rs.inputs);
  free(rs.logits);
}

/* Tolerances: the fixtures' logits are of order 10; 8-bit weights with one
 * scale per output channel move each weight by at most s/2 = range/510.
 * Measured worst logit changes on these 8 inputs: W8 0.012-0.017, W8A8
 * 0.03-0.05, W4 g32 AWQ 0.26. The bounds are about 4x those (noise from
 * the calibration set), far below what a broken scale, zero point or
 * packing gives (logits off by whole units), and top-1 must match on all
 * 8 images. */
static void test_fixture_w8_rtn(void **state) {
  (void)state;
  nl_quant_opts o = {.bits = 8};
  check_fixture("vit_tiny_p4_fmnist.safetensors", "vit_tiny_p4_fmnist_ref.safetensors", &o, 0.07, 0);
  check_fixture("vit_small_p7_fmnist.safetensors", "vit_small_p7_fmnist_ref.safetensors", &o, 0.07, 0);
}

static void test_fixture_w8_awq_fp16(void **state) {
  (void)state;
  nl_quant_opts o = {.bits = 8, .awq = 1, .fp16 = NL_QPART_HEAD | NL_QPART_PATCH};
  check_fixture("vit_tiny_p4_fmnist.safetensors", "vit_tiny_p4_fmnist_ref.safetensors", &o, 0.07, 1);
}

static void test_fixture_w8a8(void **state) {
  (void)state;
  nl_quant_opts o = {.bits = 8, .acts = 8, .smooth = 0.5f};
  check_fixture("vit_tiny_p4_fmnist.safetensors", "vit_tiny_p4_fmnist_ref.safetensors", &o, 0.2, 0);
  o.act_per_tensor = 1;
  check_fixture("vit_small_p7_fmnist.safetensors", "vit_small_p7_fmnist_ref.safetensors", &o, 0.2, 0);
}

static void test_fixture_w4_awq(void **state) {
  (void)state;
  nl_quant_opts o = {.bits = 4, .group = 32, .awq = 1};
  check_fixture("vit_small_p7_fmnist.safetensors", "vit_small_p7_fmnist_ref.safetensors", &o, 1.0, 1);
}

static void test_parts(void **state) {
  (void)state;
  unsigned m;
  nl_error err;
  assert_int_equal(nl_quant_parts_parse("head,attn", &m, &err), 0);
  assert_int_equal(m, NL_QPART_HEAD | NL_QPART_QKV | NL_QPART_PROJ);
  assert_int_equal(nl_quant_parts_parse("", &m, &err), 0);
  assert_int_equal(m, 0);
  assert_int_equal(nl_quant_parts_parse("head,bogus", &m, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "bogus"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rtn_by_hand_4bit),
      cmocka_unit_test(test_rtn_by_hand_8bit),
      cmocka_unit_test(test_pack_3bit),
      cmocka_unit_test(test_int8_matmul_exact),
      cmocka_unit_test(test_w8a8_layer_scales),
      cmocka_unit_test(test_awq_beats_rtn_planted),
      cmocka_unit_test(test_parts),
      cmocka_unit_test(test_fixture_w8_rtn),
      cmocka_unit_test(test_fixture_w8_awq_fp16),
      cmocka_unit_test(test_fixture_w8a8),
      cmocka_unit_test(test_fixture_w4_awq),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
