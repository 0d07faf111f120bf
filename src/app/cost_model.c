/* 'cost --model': FLOPs, parameters and bytes read per image of each part
 * of a ViT's forward pass (model/blockcost.h), grouped over the blocks or
 * block by block, with measured time per part of the real forward pass
 * (--measure); and the measured time of an expression set's slots. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/bench_norm.h"
#include "app/cost_local.h"
#include "app/model_path.h"
#include "base/interrupt.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/rng.h"
#include "base/threads.h"
#include "base/timer.h"
#include "model/blockcost.h"
#include "model/quant.h"
#include "model/reuse_plan.h"
#include "model/safetensors.h"
#include "model/vit.h"

void nl_cost_measure_set(nl_ctx *ctx, const nl_prog *progs, int n, int d, long N, double seconds,
                         double *sec) {
  const size_t len = (size_t)N * d;
  float *x = nl_aalloc(sizeof(float) * len), *out = nl_aalloc(sizeof(float) * len);
  for (size_t i = 0; i < len; i++) x[i] = (float)((int)((uint32_t)(i * 2654435761u) >> 20) - 2048) / 682.0f; /* in [-3, 3] */
  memset(out, 0, sizeof(float) * len);
  nl_norm_probe *p = nl_xcalloc((size_t)n + 2, sizeof *p);
  nl_norm **sp = nl_xmalloc(sizeof(nl_norm *) * ((size_t)n + 2));
  for (int i = 0; i < n; i++) nl_norm_probe_init(&p[i], NL_NORM_EXPR, &progs[i], d);
  nl_norm_probe_init(&p[n], NL_NORM_LAYERNORM, NULL, d);
  nl_norm_probe_init(&p[n + 1], NL_NORM_DYT, NULL, d);
  for (int i = 0; i < n + 2; i++) sp[i] = &p[i].norm;
  nl_norm_time(sp, n + 2, x, out, (int)N, d, 1e-6, seconds, ctx->threads, sec);
  for (int i = 0; i < n + 2; i++) nl_norm_probe_free(&p[i]);
  free(p);
  free(sp);
  nl_afree(x);
  nl_afree(out);
}

/* 1234567 -> "1,234,567" */
static void group(char *buf, size_t n, double v) {
  char t[64];
  snprintf(t, sizeof t, "%.0f", v);
  size_t len = strlen(t), k = 0, start = t[0] == '-' ? 1 : 0;
  for (size_t i = 0; i < len && k + 2 < n; i++) {
    if (i > start && (len - i) % 3 == 0) buf[k++] = ',';
    buf[k++] = t[i];
  }
  buf[k] = '\0';
}

/* Measure: seconds per image of each (part, block) of the forward pass at
 * batch B, for about `seconds` (at least 3 passes); ps gets
 * nl_vit_part_slots(depth) figures, each part's best pass (the least
 * disturbed by other work on the machine), *fwd the whole pass per image,
 * averaged over the passes. */
static int measure(nl_ctx *ctx, const nl_vit *m, int B, double seconds, double *ps, double *fwd,
                   long *reps_out, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  nl_vit_acts acts;
  if (nl_vit_acts_init(&acts, c, B, 0, err)) return -1;
  acts.threads = ctx->threads;
  size_t n = (size_t)B * c->in_chans * c->img_size * c->img_size;
  float *x = nl_xmalloc(sizeof(float) * n);
  nl_rng r;
  nl_rng_seed(&r, 1);
  for (size_t i = 0; i < n; i++) x[i] = (float)nl_rng_normal(&r);
  const size_t ns = nl_vit_part_slots(c->depth);
  double *pass = nl_xcalloc(ns, sizeof(double));
  acts.part_s = pass;
  int rc = nl_vit_forward(m, &acts, x, B, NULL, NULL, err); /* warm-up */
  for (size_t i = 0; i < ns; i++) ps[i] = INFINITY;
  long reps = 0;
  double t0 = nl_now();
  while (!rc && (reps < 3 || nl_now() - t0 < seconds) && !nl_interrupted()) {
    memset(pass, 0, sizeof(double) * ns);
    rc = nl_vit_forward(m, &acts, x, B, NULL, NULL, err);
    for (size_t i = 0; i < ns && !rc; i++)
      if (pass[i] < ps[i]) ps[i] = pass[i];
    reps++;
  }
  double el = nl_now() - t0;
  for (size_t i = 0; i < ns; i++) ps[i] = reps > 0 && isfinite(ps[i]) ? ps[i] / B : 0;
  if (!rc && reps > 0) {
    *fwd = el / ((double)reps * B);
    *reps_out = reps;
  }
  free(pass);
  free(x);
  nl_vit_acts_free(&acts);
  return rc;
}

typedef struct {
  double flops, params, weight_bytes, act_bytes, bytes, seconds;
  const char *kind; /* norm parts: the slots' kind, "mixed" when they differ */
} agg;

static json_t *row_json(const char *part, int block, const char *kind, double flops,
                        double params, double wb, double ab, double bytes, int measured,
                        double sec) {
  json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "part", part, "flops", (json_int_t)llround(flops),
                        "params", (json_int_t)llround(params), "weight_bytes",
                        (json_int_t)llround(wb), "activation_bytes", (json_int_t)llround(ab),
                        "bytes", (json_int_t)llround(bytes));
  if (block >= 0) json_object_set_new(o, "block", json_integer(block));
  if (kind) json_object_set_new(o, "norm_kind", json_string(kind));
  if (measured) json_object_set_new(o, "seconds_per_image", json_real(sec));
  return o;
}

static void print_row(nl_ctx *ctx, const char *name, const char *kind, double flops,
                      double params, double bytes, int measured, double sec, double total_sec) {
  char f[40], p[40], b[40];
  group(f, sizeof f, flops);
  group(p, sizeof p, params);
  group(b, sizeof b, bytes);
  fprintf(ctx->out, "  %-22s %-9s %16s %12s %14s", name, kind ? kind : "", f, p, b);
  if (measured)
    fprintf(ctx->out, " %11.1f %6.1f%% %8.2f", sec * 1e6, total_sec > 0 ? 100 * sec / total_sec : 0,
            sec > 0 ? flops / sec * 1e-9 : 0);
  fputc('\n', ctx->out);
}

int nl_cost_model_command(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  long batch;
  if (nl_arg_int_range(a, "batch", 1, 4096, &batch, err)) return -1;
  const int meas = nl_arg_flag(a, "measure"), per_block = nl_arg_flag(a, "per-block");
  const int as_json = nl_arg_flag(a, "json");
  double seconds = nl_arg_num(a, "seconds");
  if (meas && !(seconds > 0 && seconds <= 3600))
    return nl_fail(err, NL_EINPUT, "--seconds must be in (0, 3600]");
  if (a->npos > 0)
    return nl_fail(err, NL_EINPUT, "with --model, give the norms as --set SPEC, not as arguments");
  const char *path = nl_arg_str(a, "model");
  nl_model_norms norms;
  int replaced = 0;
  if (nl_model_norms_get(ctx, a, 1, &norms, err)) {
    nl_model_norms_free(&norms);
    return -1;
  }
  nl_vit m;
  const nl_vit_load_opts lo = {.int_only = 1}; /* a quantized model without FP32 copies */
  if (nl_vit_load(&m, path, &lo, err)) {
    nl_model_norms_free(&norms);
    return -1;
  }
  nl_st_file st;
  int rc = nl_model_norms_apply(&norms, &m, NULL, &replaced, err);
  if (!rc) rc = nl_st_open(&st, path, err);
  if (rc) {
    nl_vit_free(&m);
    nl_model_norms_free(&norms);
    return -1;
  }
  nl_part_cost *rows = NULL;
  int nr = 0;
  const nl_vit_config *c = &m.cfg;
  double *ps = NULL, fwd = 0;
  long reps = 0;
  rc = nl_vit_cost_rows(&m, &st, (int)batch, &rows, &nr, err);
  if (!rc && meas) {
    ps = nl_xcalloc(nl_vit_part_slots(c->depth), sizeof(double));
    rc = measure(ctx, &m, (int)batch, seconds, ps, &fwd, &reps, err);
  }
  if (rc) goto done;

  /* grouped over the blocks, in forward order */
  agg g[NL_PART_COUNT];
  memset(g, 0, sizeof g);
  agg tot;
  memset(&tot, 0, sizeof tot);
  for (int i = 0; i < nr; i++) {
    const nl_part_cost *r = &rows[i];
    agg *x = &g[r->part];
    double sec = ps ? ps[nl_vit_part_index(r->part, r->block)] : 0;
    x->flops += r->flops, x->params += r->params, x->weight_bytes += r->weight_bytes;
    x->act_bytes += r->act_bytes, x->bytes += r->bytes, x->seconds += sec;
    if (r->slot_kind) x->kind = !x->kind || strcmp(x->kind, r->slot_kind) == 0 ? r->slot_kind : "mixed";
    tot.flops += r->flops, tot.params += r->params, tot.weight_bytes += r->weight_bytes;
    tot.act_bytes += r->act_bytes, tot.bytes += r->bytes, tot.seconds += sec;
  }
  const char *stored = st.n > 0 ? nl_dtype_name(st.t[0].dtype) : "?";
  for (int i = 0; i < st.n; i++)
    if (st.t[i].dtype != st.t[0].dtype) stored = "mixed";
  char prec[160];
  nl_vit_precision(&m, prec, sizeof prec);
  char normtxt[4400];
  if (norms.spec)
    snprintf(normtxt, sizeof normtxt, "%s (%d of %d norm layers replaced)", norms.label, replaced,
             m.nnorms);
  else
    snprintf(normtxt, sizeof normtxt, "as loaded");

  if (as_json) {
    json_t *root = json_pack("{s:s,s:s,s:I,s:i,s:i,s:i,s:i,s:i,s:i,s:s}", "model", path, "norms",
                             normtxt, "batch", (json_int_t)batch, "tokens", c->tokens, "dim",
                             c->dim, "depth", c->depth, "heads", c->heads, "mlp_hidden",
                             c->mlp_hidden, "classes", c->classes, "stored_dtype", stored);
    json_object_set_new(root, "precision", json_string(prec));
    json_t *hc = json_array();
    for (int l = 0; l < c->depth; l++) json_array_append_new(hc, json_integer(nl_vit_heads(c, l)));
    json_object_set_new(root, "head_counts", hc);
    json_t *jr = json_array(), *jp = json_array();
    for (int i = 0; i < nr; i++) {
      const nl_part_cost *r = &rows[i];
      json_array_append_new(jr, row_json(nl_vit_part_name(r->part), r->block, r->slot_kind,
                                         r->flops, r->params, r->weight_bytes, r->act_bytes,
                                         r->bytes, meas,
                                         ps ? ps[nl_vit_part_index(r->part, r->block)] : 0));
    }
    for (int p = 0; p < NL_PART_COUNT; p++)
      json_array_append_new(jp, row_json(nl_vit_part_name((nl_vit_part)p), -1, g[p].kind,
                                         g[p].flops, g[p].params, g[p].weight_bytes,
                                         g[p].act_bytes, g[p].bytes, meas, g[p].seconds));
    json_object_set_new(root, "rows", jr);
    json_object_set_new(root, "parts", jp);
    json_object_set_new(root, "total", row_json("total", -1, NULL, tot.flops, tot.params,
                                                 tot.weight_bytes, tot.act_bytes, tot.bytes, meas,
                                                 tot.seconds));
    if (meas) {
      json_object_set_new(root, "forward_seconds_per_image", json_real(fwd));
      json_object_set_new(root, "threads", json_integer(nl_threads_count(ctx->threads)));
      json_object_set_new(root, "forward_passes", json_integer(reps));
    }
    if (m.reuse) {
      json_t *ru = json_array();
      for (int l = 0; l < c->depth; l++) {
        if (m.reuse->src[l] < 0) continue;
        json_array_append_new(ru, json_pack("{s:i,s:i,s:s,s:f}", "block", l, "source",
                                            m.reuse->src[l], "tb",
                                            nl_tb_kind_name(m.reuse->tb[l]), "flops_saved",
                                            nl_reuse_block_saving(m.reuse, c, l)));
      }
      json_object_set_new(root, "reuse", ru);
      /* the weights the plan leaves unread, at the model's mean stored width */
      const double width = tot.params > 0 ? tot.weight_bytes / (4.0 * tot.params) : 1;
      json_object_set_new(root, "weight_bytes_with_reuse",
                          json_real(tot.weight_bytes - width * nl_reuse_plan_bytes_saved(m.reuse, c)));
      json_object_set_new(root, "flops_with_reuse", json_real(tot.flops - (nl_vit_flops_per_image(c) - nl_reuse_plan_flops(m.reuse, c))));
    }
    nl_json_print(ctx->out, root);
    json_decref(root);
  } else {
    fprintf(ctx->out, "cost per image at batch %ld: %s\n", batch, path);
    fprintf(ctx->out,
            "  %d tokens, width %d, depth %d, %d heads, MLP %d, %d classes; weights stored as %s;\n"
            "  norms: %s\n",
            c->tokens, c->dim, c->depth, c->heads, c->mlp_hidden, c->classes, stored, normtxt);
    if (m.quant) fprintf(ctx->out, "  precision: %s\n", prec);
    if (!nl_vit_heads_full(c)) {
      fprintf(ctx->out, "  heads per block (pruned):");
      for (int l = 0; l < c->depth; l++) fprintf(ctx->out, " %d", nl_vit_heads(c, l));
      fputc('\n', ctx->out);
    }
    fprintf(ctx->out,
            "  FLOPs: multiply-add = 2, norm slots by the cost model; bytes read: weights at their\n"
            "  stored width / batch + input activations at FP32 (man normlab: cost)\n");
    if (meas)
      fprintf(ctx->out,
              "  measured: %ld forward passes on %d thread%s; time per image of each part in its\n"
              "  best pass\n",
              reps, nl_threads_count(ctx->threads), nl_threads_count(ctx->threads) == 1 ? "" : "s");
    fprintf(ctx->out, "\n  %-22s %-9s %16s %12s %14s", "part", "norm", "FLOPs", "params",
            "bytes read");
    if (meas) fprintf(ctx->out, " %11s %7s %8s", "us/image", "time", "GFLOP/s");
    fputc('\n', ctx->out);
    if (per_block) {
      for (int i = 0; i < nr; i++) {
        const nl_part_cost *r = &rows[i];
        char name[48];
        if (r->block >= 0)
          snprintf(name, sizeof name, "blocks.%d.%s", r->block, nl_vit_part_name(r->part));
        else
          snprintf(name, sizeof name, "%s", nl_vit_part_name(r->part));
        print_row(ctx, name, r->slot_kind, r->flops, r->params, r->bytes, meas,
                  ps ? ps[nl_vit_part_index(r->part, r->block)] : 0, tot.seconds);
      }
    } else {
      for (int p = 0; p < NL_PART_COUNT; p++) {
        char name[48];
        if (p >= NL_PART_NORM1 && p <= NL_PART_RESIDUAL)
          snprintf(name, sizeof name, "%s x %d", nl_vit_part_name((nl_vit_part)p), c->depth);
        else
          snprintf(name, sizeof name, "%s", nl_vit_part_name((nl_vit_part)p));
        print_row(ctx, name, g[p].kind, g[p].flops, g[p].params, g[p].bytes, meas, g[p].seconds,
                  tot.seconds);
      }
    }
    print_row(ctx, "total", NULL, tot.flops, tot.params, tot.bytes, meas, tot.seconds, tot.seconds);
    if (meas)
      fprintf(ctx->out, "\n  whole forward pass: %.1f us/image on average (the parts' best: %.1f)\n",
              fwd * 1e6, tot.seconds * 1e6);
    if (m.reuse) { /* the plan the model carries (model/reuse_plan.h) */
      const double saved = nl_vit_flops_per_image(c) - nl_reuse_plan_flops(m.reuse, c);
      fprintf(ctx->out, "\n  attention reuse (the table above is the full pass):\n");
      fprintf(ctx->out, "  %-22s %-9s %16s\n", "block", "TB", "FLOPs saved");
      for (int l = 0; l < c->depth; l++) {
        if (m.reuse->src[l] < 0) continue;
        char name[48];
        snprintf(name, sizeof name, "blocks.%d <- %d", l, m.reuse->src[l]);
        fprintf(ctx->out, "  %-22s %-9s %16.0f\n", name, nl_tb_kind_name(m.reuse->tb[l]),
                nl_reuse_block_saving(m.reuse, c, l));
      }
      fprintf(ctx->out, "  %-22s %-9s %16.0f (%.1f %% of the total)\n", "with the plan", "",
              tot.flops - saved, 100 * saved / (tot.flops > 0 ? tot.flops : 1));
    }
  }
done:
  free(ps);
  free(rows);
  nl_st_close(&st);
  nl_vit_free(&m);
  nl_model_norms_free(&norms);
  return rc;
}
