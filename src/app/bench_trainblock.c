/* `normlab bench trainblock`: one ViT block forward and backward built from
 * the layer pairs (forward tensor/layers.h, backward train/layers.h), at
 * vit_tiny_p4_fmnist's shape: 50 tokens, width 192, 3 heads, MLP 768,
 * LayerNorm, layer scale. The rate counts the
 * matrix-product FLOPs of a training step (3x the forward's: forward, dX,
 * dW), set beside the measured sgemm peak. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/bench.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/rng.h"
#include "base/threads.h"
#include "base/timer.h"
#include "train/layers.h"

enum { BT_T = 50, BT_D = 192, BT_NH = 3, BT_H = 768 };

typedef struct {
  int B, N;
  float *x, *ln1, *m1, *r1, *qkv, *att, *ao, *pr, *ls1, *x1, *ln2, *m2, *r2, *f1, *g1, *f2,
      *ls2, *x2;
  float *wqkv, *bqkv, *wp, *bp, *w1, *b1, *w2, *b2, *nw, *nb, *g;
  float *gwqkv, *gbqkv, *gwp, *gbp, *gw1, *gb1, *gw2, *gb2, *gnw, *gnb, *gg;
  float *dx, *dt, *dh, *dh2, *dq, *dln;
} bt_state;

static float *bt_buf(size_t n, nl_rng *r, float scale) {
  float *p = nl_aalloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = scale * (float)(nl_rng_uniform(r) - 0.5);
  return p;
}

static void bt_forward(bt_state *s) {
  const int N = s->N, D = BT_D, H = BT_H;
  nl_layernorm_forward(s->ln1, s->m1, s->r1, s->x, s->nw, s->nb, N, D, 1e-6f);
  nl_linear_forward(s->qkv, s->ln1, s->wqkv, s->bqkv, N, D, 3 * D);
  nl_attention_forward(s->ao, s->att, s->qkv, s->B, BT_T, D, BT_NH);
  nl_linear_forward(s->pr, s->ao, s->wp, s->bp, N, D, D);
  nl_layerscale_forward(s->ls1, s->pr, s->g, N, D);
  nl_residual_forward(s->x1, s->x, s->ls1, (size_t)N * D);
  nl_layernorm_forward(s->ln2, s->m2, s->r2, s->x1, s->nw, s->nb, N, D, 1e-6f);
  nl_linear_forward(s->f1, s->ln2, s->w1, s->b1, N, D, H);
  nl_gelu_forward(s->g1, s->f1, (size_t)N * H);
  nl_linear_forward(s->f2, s->g1, s->w2, s->b2, N, H, D);
  nl_layerscale_forward(s->ls2, s->f2, s->g, N, D);
  nl_residual_forward(s->x2, s->x1, s->ls2, (size_t)N * D);
}

/* s->dx holds dL/dx2 on entry and dL/dx on return. */
static void bt_backward(bt_state *s) {
  const int N = s->N, D = BT_D, H = BT_H;
  const size_t nd = (size_t)N * D;
  memset(s->dt, 0, nd * sizeof(float));
  nl_tr_layerscale_backward(s->dt, s->gg, s->dx, s->f2, s->g, N, D);
  memset(s->dh, 0, (size_t)N * H * sizeof(float));
  nl_tr_linear_backward(s->dh, s->gw2, s->gb2, s->dt, s->g1, s->w2, N, H, D);
  memset(s->dh2, 0, (size_t)N * H * sizeof(float));
  nl_tr_gelu_backward(s->dh2, s->dh, s->f1, (size_t)N * H);
  memset(s->dln, 0, nd * sizeof(float));
  nl_tr_linear_backward(s->dln, s->gw1, s->gb1, s->dh2, s->ln2, s->w1, N, D, H);
  nl_tr_layernorm_backward(s->dx, s->gnw, s->gnb, s->dln, s->x1, s->nw, s->m2, s->r2, N, D);
  memset(s->dt, 0, nd * sizeof(float));
  nl_tr_layerscale_backward(s->dt, s->gg, s->dx, s->pr, s->g, N, D);
  memset(s->dln, 0, nd * sizeof(float));
  nl_tr_linear_backward(s->dln, s->gwp, s->gbp, s->dt, s->ao, s->wp, N, D, D);
  memset(s->dq, 0, nd * 3 * sizeof(float));
  nl_tr_attention_backward(s->dq, s->dln, s->qkv, s->att, s->B, BT_T, D, BT_NH);
  memset(s->dln, 0, nd * sizeof(float));
  nl_tr_linear_backward(s->dln, s->gwqkv, s->gbqkv, s->dq, s->ln1, s->wqkv, N, D, 3 * D);
  nl_tr_layernorm_backward(s->dx, s->gnw, s->gnb, s->dln, s->x, s->nw, s->m1, s->r1, N, D);
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long B;
  if (nl_arg_int_range(a, "batch", 1, 4096, &B, err)) return -1;
  double seconds = nl_arg_num(a, "seconds");
  if (!(seconds > 0 && seconds <= 3600))
    return nl_fail(err, NL_EINPUT, "--seconds: expected a number in (0, 3600]");
  const int json = nl_arg_flag(a, "json");
  const int N = (int)B * BT_T, D = BT_D, H = BT_H;
  const size_t nd = (size_t)N * D, nh = (size_t)N * H;
  nl_rng r;
  nl_rng_seed(&r, 1);
  bt_state s = {.B = (int)B, .N = N};
  float **acts[] = {&s.x, &s.ln1, &s.ao, &s.pr, &s.ls1, &s.x1, &s.ln2, &s.f2, &s.ls2, &s.x2,
                    &s.dx, &s.dt, &s.dln};
  for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) *acts[i] = bt_buf(nd, &r, 2.0f);
  s.m1 = bt_buf((size_t)N, &r, 0), s.r1 = bt_buf((size_t)N, &r, 0);
  s.m2 = bt_buf((size_t)N, &r, 0), s.r2 = bt_buf((size_t)N, &r, 0);
  s.qkv = bt_buf(3 * nd, &r, 1), s.dq = bt_buf(3 * nd, &r, 0);
  s.att = bt_buf((size_t)B * BT_NH * BT_T * BT_T, &r, 0);
  s.f1 = bt_buf(nh, &r, 1), s.g1 = bt_buf(nh, &r, 1), s.dh = bt_buf(nh, &r, 0);
  s.dh2 = bt_buf(nh, &r, 0);
  float **ps[] = {&s.wqkv, &s.gwqkv, &s.wp, &s.gwp, &s.w1, &s.gw1, &s.w2, &s.gw2};
  size_t psz[] = {3 * D * D, 3 * D * D, D * D, D * D, H * D, H * D, D * H, D * H};
  for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) *ps[i] = bt_buf(psz[i], &r, 0.1f);
  float **vs[] = {&s.bqkv, &s.gbqkv, &s.bp, &s.gbp, &s.b1, &s.gb1, &s.b2, &s.gb2, &s.nw, &s.gnw,
                  &s.nb, &s.gnb, &s.g, &s.gg};
  size_t vsz[] = {3 * D, 3 * D, D, D, H, H, D, D, D, D, D, D, D, D};
  for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) *vs[i] = bt_buf(vsz[i], &r, 0.2f);

  const double peak = nl_bench_sgemm_peak(ctx->threads);
  /* the layers run on the bench's threads (BLAS's count included) */
  const int outer = nl_threads_enter(ctx->threads);
  const double hd = (double)D / BT_NH;
  const double fwd_flops = 2.0 * N * (3.0 * D * D + (double)D * D + 2.0 * D * H) +
                           4.0 * B * BT_NH * (double)BT_T * BT_T * hd;
  bt_forward(&s); /* warm-up */
  bt_backward(&s);
  double tf = 0, tb = 0;
  int reps = 0;
  double t0 = nl_now();
  while (nl_now() - t0 < seconds || reps < 2) {
    double a0 = nl_now();
    bt_forward(&s);
    double a1 = nl_now();
    bt_backward(&s);
    double a2 = nl_now();
    tf += a1 - a0;
    tb += a2 - a1;
    reps++;
  }
  nl_threads_leave(outer);
  tf /= reps;
  tb /= reps;
  const double rate = 3.0 * fwd_flops / (tf + tb) * 1e-9;
  if (json) {
    json_t *j = json_pack("{s:s, s:I, s:i, s:o, s:o, s:o, s:o, s:o}", "bench", "trainblock",
                          "batch", (json_int_t)B, "threads", nl_threads_count(ctx->threads), "forward_ms",
                          nl_json_rounded(tf * 1e3, 3), "backward_ms", nl_json_rounded(tb * 1e3, 3),
                          "gflops", nl_json_rounded(rate, 2), "sgemm_peak_gflops",
                          nl_json_rounded(peak, 2), "fraction_of_peak",
                          nl_json_rounded(rate / peak, 4));
    nl_json_print(ctx->out, j);
    json_decref(j);
  } else {
    nl_bench_print_machine(ctx);
    fprintf(ctx->out,
            "trainblock: ViT block T=%d D=%d heads=%d mlp=%d, batch %ld, %d reps\n"
            "  forward  %9.3f ms\n  backward %9.3f ms\n"
            "  %.2f GFLOP per step (3x forward matmuls) -> %.1f GFLOP/s\n"
            "  sgemm peak %.1f GFLOP/s: %.1f %% of peak\n",
            BT_T, D, BT_NH, H, B, reps, tf * 1e3, tb * 1e3, 3.0 * fwd_flops * 1e-9, rate, peak,
            100.0 * rate / peak);
  }
  float **all[] = {&s.x, &s.ln1, &s.ao, &s.pr, &s.ls1, &s.x1, &s.ln2, &s.f2, &s.ls2, &s.x2,
                   &s.dx, &s.dt, &s.dln, &s.m1, &s.r1, &s.m2, &s.r2, &s.qkv, &s.dq, &s.att,
                   &s.f1, &s.g1, &s.dh, &s.dh2};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) nl_afree(*all[i]);
  for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) nl_afree(*ps[i]);
  for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) nl_afree(*vs[i]);
  return 0;
}

const nl_bench nl_bench_trainblock = {
    "trainblock", "one ViT block forward+backward from the training layers, % of sgemm peak",
    run};
