/* The whole adaptation in one call (adapt.h). */
#define _POSIX_C_SOURCE 200809L
#include "adapt/adapt.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "base/interrupt.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/timer.h"
#include "data/dataset.h"
#include "expr/expr.h"
#include "model/replace.h"
#include "model/vit.h"
#include "search/sequential.h"
#include "train/calibrate.h"
#include "train/evaluate.h"
#include "train/train_opts.h"

void nl_adapt_opts_init(nl_adapt_opts *o) {
  memset(o, 0, sizeof *o);
  nl_gp_campaign_opts_init(&o->gp);
  o->gp.cfg.pop = 200;
  o->gp.cfg.gens = 20;
  o->gp.images = 64;
  o->gp.points = 20000;
  o->gp.data = nl_xstrdup("fmnist:train");
  o->calib_what = "both";
  o->calib_epochs = 10;
  o->epochs = 1;
}

void nl_adapt_opts_free(nl_adapt_opts *o) { nl_gp_campaign_opts_free(&o->gp); }

static void note(const nl_adapt_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(const nl_adapt_opts *o, const char *fmt, ...) {
  if (!o->note) return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  o->note(o->note_user, buf);
}

int nl_adapt_check(nl_adapt_opts *o, nl_error *err) {
  if (!o->model) return nl_fail(err, NL_EINPUT, "missing required option --model");
  if (!o->output) return nl_fail(err, NL_EINPUT, "missing required option --output");
  if (o->budget) {
    char sel[96];
    snprintf(sel, sizeof sel, "budget=%s", o->budget);
    if (nl_gp_campaign_opts_set(&o->gp, "select", sel, err) != 0)
      return nl_error_prefix(err, "--budget %s", o->budget);
    /* the search explores the budgeted space itself (evolve --max-flops):
     * picking within budget from an unlimited search finds few cheap members */
    if (nl_gp_campaign_opts_set(&o->gp, "max-flops", o->budget, err) != 0)
      return nl_error_prefix(err, "--budget %s", o->budget);
  }
  if (o->realign && strcmp(o->realign, "A") != 0 && strcmp(o->realign, "F") != 0 &&
      strcmp(o->realign, "D") != 0)
    return nl_fail(err, NL_EINPUT, "--realign expects one of A|F|D, got '%s'", o->realign);
  if (o->realign && !o->realign_fn)
    return nl_fail(err, NL_EINPUT, "--realign: this front-end cannot train");
  if (o->realign && o->epochs < 1)
    return nl_fail(err, NL_EINPUT, "--epochs must be at least 1, got %d", o->epochs);
  if (o->calibrate < 0 || o->calibrate > 60000)
    return nl_fail(err, NL_EINPUT, "--calibrate must be between 0 and 60000, got %d",
                   o->calibrate);
  if (strcmp(o->calib_what, "consts") != 0 && strcmp(o->calib_what, "affine") != 0 &&
      strcmp(o->calib_what, "both") != 0)
    return nl_fail(err, NL_EINPUT, "--calibrate-what expects one of consts|affine|both, got '%s'",
                   o->calib_what);
  if (o->eval_images < 0 || o->eval_images > 10000)
    return nl_fail(err, NL_EINPUT, "--eval-images must be between 0 and 10000, got %d",
                   o->eval_images);
  if (o->threads) o->gp.cfg.threads = o->threads;
  if (nl_gp_campaign_opts_set(&o->gp, "model", o->model, err) != 0) return -1;
  return nl_gp_campaign_opts_finish(&o->gp, err);
}

/* ---- the record of the stages (DIR/adapt.json) ---- */

typedef struct run {
  nl_adapt_opts *o;
  char *dir;
  json_t *state;  /* {"stages": {NAME: {"key", "top1", "seconds", ...}}} */
  nl_dataset test;
  nl_vit teacher;
  double eval_s;
} run;

static char *in_dir(const run *r, const char *name) { return nl_path_join(r->dir, name); }

static int save_state(run *r, nl_error *err) {
  char *path = in_dir(r, "adapt.json"), *text = nl_json_text(r->state, 0);
  int rc = nl_write_file_atomic(path, text, strlen(text), err);
  free(text);
  free(path);
  return rc;
}

/* The stage's record when its key is `key` and its output file exists. */
static json_t *stage_done(run *r, const char *stage, const char *key, const char *output) {
  json_t *s = json_object_get(json_object_get(r->state, "stages"), stage);
  const char *k = json_string_value(json_object_get(s, "key"));
  if (!k || strcmp(k, key) != 0) return NULL;
  char *path = in_dir(r, output);
  int ok = nl_file_exists(path);
  free(path);
  return ok ? s : NULL;
}

static json_t *stage_record(run *r, const char *stage, const char *key) {
  json_t *s = json_object();
  json_object_set_new(s, "key", json_string(key));
  json_object_set_new(json_object_get(r->state, "stages"), stage, s);
  return s;
}

/* Top-1 (percent) of m on the evaluation images. */
static int top1(run *r, const nl_vit *m, const char *name, double *out, nl_error *err) {
  nl_eval_opts eo;
  nl_eval_opts_default(&eo);
  eo.threads = r->o->threads;
  eo.interruptible = 1;
  eo.model_name = name;
  nl_eval_result er;
  double t0 = nl_now();
  if (nl_vit_evaluate(m, &r->test, &eo, &er, err) != 0) return -1;
  r->eval_s += nl_now() - t0;
  if (er.stopped) return nl_fail(err, NL_EINTR, "interrupted while evaluating %s", name);
  *out = er.images ? 100.0 * (double)er.top1 / (double)er.images : 0;
  return 0;
}

/* The stage's model on disk, its top-1 recorded. */
static int finish_stage(run *r, json_t *rec, const nl_vit *m, const char *file, double t0,
                        nl_error *err) {
  char *path = in_dir(r, file);
  int rc = nl_vit_save(m, path, err);
  free(path);
  double t1 = 0;
  double s = nl_now() - t0, e0 = r->eval_s;
  if (rc == 0) rc = top1(r, m, file, &t1, err);
  if (rc != 0) return -1;
  json_object_set_new(rec, "top1", json_real(t1));
  json_object_set_new(rec, "seconds", json_real(s));
  json_object_set_new(rec, "eval_seconds", json_real(r->eval_s - e0));
  return save_state(r, err);
}

/* ---- stages ---- */

/* The search; DIR/chosen.exprs and the per-layer figures. */
static int stage_evolve(run *r, const char *key, nl_error *err) {
  nl_adapt_opts *o = r->o;
  double t0 = nl_now();
  char *cdir = in_dir(r, "evolve");
  const char *one[1] = {o->gp.layer};
  nl_gp_campaign cam = {.cfg = &o->gp.cfg, .layers = o->gp.layer ? one : NULL,
                        .nlayers = o->gp.layer ? 1 : 0, .seeds = o->gp.seeds, .outdir = cdir,
                        .progress = o->progress, .user = o->progress_user,
                        .recompute = 1 /* the key changed: what is there is stale */};
  nl_gp_source src;
  nl_gp_source_from_opts(&src, &o->gp);
  src.model = o->model;
  nl_gp_summary s;
  note(o, "evolve: %s search, %d image(s) x %ld points per layer, population %d, %d "
          "generations, %d seed(s)", src.sequential ? "sequential" : "independent", src.images,
       src.points, o->gp.cfg.pop, o->gp.cfg.gens, o->gp.seeds);
  int rc = nl_gp_model_campaign_run(&cam, &src, &s, err);
  nl_exprset set;
  nl_exprset_init(&set);
  if (rc == 0) {
    char *path = nl_path_join(cdir, "chosen.exprs");
    rc = nl_exprset_load(path, &set, err);
    free(path);
  }
  if (rc == 0) {
    char *path = in_dir(r, "chosen.exprs");
    rc = nl_exprset_save(&set, path, err);
    free(path);
  }
  if (rc == 0) {
    json_t *rec = stage_record(r, "evolve", key), *ls = json_array();
    for (int i = 0; i < s.nlayers; i++) {
      const nl_gp_layer_summary *l = &s.layers[i];
      if (!l->expr) continue;
      json_array_append_new(ls, json_pack("{s:s,s:f}", "name", l->name, "val_r2", l->val_r2));
    }
    json_object_set_new(rec, "layers", ls);
    json_object_set_new(rec, "seconds", json_real(nl_now() - t0));
    rc = save_state(r, err);
  }
  nl_exprset_free(&set);
  nl_gp_summary_free(&s);
  free(cdir);
  return rc;
}

static int stage_replace(run *r, const char *key, nl_error *err) {
  double t0 = nl_now();
  nl_exprset set;
  nl_exprset_init(&set);
  char *path = in_dir(r, "chosen.exprs");
  int rc = nl_exprset_load(path, &set, err);
  nl_vit m;
  if (rc == 0) rc = nl_vit_load(&m, r->o->model, NULL, err);
  if (rc == 0) {
    nl_replace_spec spec = {.mode = NL_REPLACE_SET, .set = &set, .source = path};
    rc = nl_vit_replace(&m, &spec, NULL, err);
    if (rc == 0) rc = finish_stage(r, stage_record(r, "replace", key), &m, "replaced.safetensors",
                                   t0, err);
    nl_vit_free(&m);
  }
  free(path);
  nl_exprset_free(&set);
  return rc;
}

static int calib_progress(const nl_progress *p, void *user) {
  run *r = user;
  if (p->done > 0) note(r->o, "calibrate: epoch %ld/%ld, KL %.6f", p->done, p->total, p->vals[0]);
  else note(r->o, "calibrate: KL before %.6f", p->vals[0]);
  return 0;
}

static int stage_calibrate(run *r, const char *key, nl_error *err) {
  const nl_adapt_opts *o = r->o;
  double t0 = nl_now();
  char *path = in_dir(r, "replaced.safetensors");
  nl_vit m;
  int rc = nl_vit_load(&m, path, NULL, err);
  free(path);
  if (rc != 0) return -1;
  nl_dataset d;
  rc = nl_dataset_load(&d, "fmnist:train", 0, o->calibrate, err);
  if (rc == 0) {
    nl_calib_opts co;
    nl_calib_opts_default(&co);
    co.what = strcmp(o->calib_what, "consts") == 0   ? NL_CALIB_CONSTS
              : strcmp(o->calib_what, "affine") == 0 ? NL_CALIB_AFFINE
                                                     : NL_CALIB_BOTH;
    co.epochs = o->calib_epochs;
    co.threads = o->threads;
    co.interruptible = 1;
    co.progress = calib_progress;
    co.progress_user = r;
    nl_calib_result cr;
    memset(&cr, 0, sizeof cr);
    rc = nl_vit_calibrate(&m, &r->teacher, &d, &co, &cr, err);
    if (rc == 0 && cr.stopped) rc = nl_fail(err, NL_EINTR, "calibration interrupted");
    if (rc == 0) {
      json_t *rec = stage_record(r, "calibrate", key);
      json_object_set_new(rec, "kl_before", json_real(cr.kl_before));
      json_object_set_new(rec, "kl_after", json_real(cr.kl_after));
      rc = finish_stage(r, rec, &m, "calibrated.safetensors", t0, err);
    }
    nl_calib_result_free(&cr);
    nl_dataset_free(&d);
  }
  nl_vit_free(&m);
  return rc;
}

static int stage_realign(run *r, const char *key, const char *input, nl_error *err) {
  const nl_adapt_opts *o = r->o;
  double t0 = nl_now();
  char *in = in_dir(r, input), *rdir = in_dir(r, "realign"), *state = nl_path_join(rdir, "state.safetensors");
  /* an interrupted run of this key continues from its state */
  json_t *prev = json_object_get(json_object_get(r->state, "stages"), "realign_started");
  int resume = prev && json_string_value(prev) && strcmp(json_string_value(prev), key) == 0 &&
               nl_file_exists(state);
  json_object_set_new(json_object_get(r->state, "stages"), "realign_started", json_string(key));
  int rc = save_state(r, err);
  if (rc == 0 && !resume && nl_file_exists(state)) {
    /* a run of other settings: start over in a fresh directory */
    char *old = in_dir(r, "realign.old");
    if (rename(rdir, old) != 0)
      rc = nl_fail(err, NL_EIO, "%s holds a training run of other settings and cannot be moved "
                   "aside to %s", rdir, old);
    free(old);
  }
  if (rc == 0)
    rc = o->realign_fn(o->realign_user, in, o->model, o->realign, o->epochs, o->train_images,
                       o->eval_images, o->threads, rdir, resume, err);
  if (rc == 0) {
    char *last = nl_path_join(rdir, "last.safetensors");
    nl_vit m;
    rc = nl_vit_load(&m, last, NULL, err);
    free(last);
    if (rc == 0) {
      rc = finish_stage(r, stage_record(r, "realign", key), &m, "realigned.safetensors", t0, err);
      nl_vit_free(&m);
    }
  }
  free(in);
  free(rdir);
  free(state);
  return rc;
}

/* ---- the report ---- */

static json_t *num_or_null(json_t *rec, const char *field) {
  json_t *v = json_object_get(rec, field);
  return v ? json_real(json_number_value(v)) : json_null();
}

static json_t *report(run *r, const char *last_file, double total, nl_error *err) {
  (void)last_file;
  json_t *st = json_object_get(r->state, "stages");
  json_t *rep = json_object();
  json_object_set_new(rep, "top1_ln", num_or_null(json_object_get(st, "ln"), "top1"));
  json_object_set_new(rep, "top1_replaced", num_or_null(json_object_get(st, "replace"), "top1"));
  json_t *cal = r->o->calibrate ? json_object_get(st, "calibrate") : NULL;
  json_t *ra = r->o->realign ? json_object_get(st, "realign") : NULL;
  json_object_set_new(rep, "top1_calibrated", cal ? num_or_null(cal, "top1") : json_null());
  json_object_set_new(rep, "top1_realigned", ra ? num_or_null(ra, "top1") : json_null());
  json_object_set_new(rep, "eval_images", json_integer(r->test.n));
  /* per layer: the chosen set, costed as 'normlab cost' costs it */
  nl_exprset set;
  nl_exprset_init(&set);
  char *path = in_dir(r, "chosen.exprs");
  int rc = nl_exprset_load(path, &set, err);
  free(path);
  if (rc != 0) {
    json_decref(rep);
    return NULL;
  }
  int d = r->teacher.cfg.dim;
  json_t *ls = json_array(), *r2s = json_object_get(json_object_get(st, "evolve"), "layers");
  double sr2 = 0, sfl = 0;
  int nr2 = 0;
  for (int i = 0; i < set.n; i++) {
    const nl_exprset_entry *e = &set.e[i];
    nl_cost_opts co = {0};
    int c = nl_cost(&e->prog, &co);
    nl_token_cost tc = nl_cost_expr_token(c, d);
    json_t *vr2 = json_null();
    for (size_t k = 0; k < json_array_size(r2s); k++) {
      json_t *L = json_array_get(r2s, k);
      if (strcmp(json_string_value(json_object_get(L, "name")), e->name) == 0) {
        double v = json_number_value(json_object_get(L, "val_r2"));
        vr2 = json_real(v);
        sr2 += v;
        nr2++;
      }
    }
    char *text = nl_print(&e->prog, NL_PRINT_EXACT);
    json_array_append_new(ls, json_pack("{s:s,s:s,s:o,s:i,s:f}", "name", e->name, "expression",
                                        text, "val_r2", vr2, "flops_per_element", c,
                                        "bytes_per_token", tc.read_bytes));
    free(text);
    sfl += c;
  }
  json_object_set_new(rep, "mean_val_r2", nr2 ? json_real(sr2 / nr2) : json_null());
  json_object_set_new(rep, "mean_flops_per_element", set.n ? json_real(sfl / set.n) : json_null());
  json_object_set_new(rep, "ln_flops_per_element",
                      json_real(nl_cost_layernorm_token(d).flops / (double)d));
  json_object_set_new(rep, "layers", ls);
  json_t *sec = json_object();
  json_object_set_new(sec, "evolve", num_or_null(json_object_get(st, "evolve"), "seconds"));
  json_object_set_new(sec, "replace", num_or_null(json_object_get(st, "replace"), "seconds"));
  json_object_set_new(sec, "calibrate", cal ? num_or_null(cal, "seconds") : json_null());
  json_object_set_new(sec, "realign", ra ? num_or_null(ra, "seconds") : json_null());
  /* the recorded work of every stage run, whichever call ran it */
  double ev = 0, tot = 0;
  const char *stages[] = {"ln", "evolve", "replace", "calibrate", "realign"};
  for (int i = 0; i < 5; i++) {
    json_t *rec = json_object_get(st, stages[i]);
    if ((i == 3 && !cal) || (i == 4 && !ra) || !rec) continue;
    ev += json_number_value(json_object_get(rec, "eval_seconds"));
    tot += json_number_value(json_object_get(rec, "seconds")) +
           json_number_value(json_object_get(rec, "eval_seconds"));
  }
  json_object_set_new(sec, "eval", json_real(ev));
  json_object_set_new(sec, "total", json_real(tot));
  json_object_set_new(sec, "this_call", json_real(total));
  json_object_set_new(rep, "seconds", sec);
  json_object_set(rep, "settings", json_object_get(r->state, "settings"));
  nl_exprset_free(&set);
  return rep;
}

/* ---- the run ---- */


static json_t *settings_json(const nl_adapt_opts *o) {
  const nl_gp_campaign_opts *g = &o->gp;
  return json_pack("{s:s,s:s?,s:b,s:s,s:i,s:I,s:i,s:i,s:i,s:i,s:i,s:s?,s:s,s:i,s:I,s:i}", "model",
                   o->model, "budget", o->budget, "sequential", g->sequential, "data",
                   g->data ? g->data : "fmnist:test", "images", g->images, "points",
                   (json_int_t)g->points, "seeds", g->seeds, "pop", g->cfg.pop, "gens",
                   g->cfg.gens, "calibrate", o->calibrate, "calibrate_epochs", o->calib_epochs,
                   "realign", o->realign, "calibrate_what", o->calib_what, "epochs", o->epochs,
                   "train_images", (json_int_t)o->train_images, "eval_images", o->eval_images);
}

int nl_adapt_run(nl_adapt_opts *o, json_t **out, nl_error *err) {
  *out = NULL;
  if (nl_adapt_check(o, err) != 0) return -1;
  double t0 = nl_now();
  run r;
  memset(&r, 0, sizeof r);
  r.o = o;
  r.dir = nl_xstrdup(o->output);
  if (nl_mkdir_p(r.dir, err) != 0) {
    free(r.dir);
    return -1;
  }
  /* the record of earlier runs */
  char *sp = in_dir(&r, "adapt.json");
  if (nl_file_exists(sp)) {
    json_error_t je;
    r.state = json_load_file(sp, 0, &je);
    if (!r.state || !json_is_object(json_object_get(r.state, "stages"))) {
      json_decref(r.state);
      r.state = NULL;
    }
  }
  free(sp);
  if (!r.state) r.state = json_pack("{s:o}", "stages", json_object());
  json_object_set_new(r.state, "settings", settings_json(o));
  int rc = nl_vit_load(&r.teacher, o->model, NULL, err);
  if (rc != 0) {
    json_decref(r.state);
    free(r.dir);
    return -1;
  }
  rc = nl_dataset_load(&r.test, "fmnist:test", 0, o->eval_images, err);
  const nl_gp_campaign_opts *g = &o->gp;
  const nl_gp_config *c = &g->cfg;
  char *k_ln = NULL, *k_ev = NULL, *k_rp = NULL, *k_cal = NULL, *k_ra = NULL;
  if (rc == 0) {
    uint64_t fp = nl_vit_fingerprint(&r.teacher);
    k_ln = nl_xstrdupf("model=%016llx eval=%d", (unsigned long long)fp, r.test.n);
    k_ev = nl_xstrdupf("model=%016llx data=%s offset=%ld images=%d points=%ld xseed=%llu seq=%d seeds=%d "
                "pop=%d gens=%d max_nodes=%d complexity=%d select=%d budget=%s seed=%llu "
                "layer=%s",
                (unsigned long long)fp, g->data ? g->data : "fmnist:test", g->offset, g->images,
                g->points, (unsigned long long)g->extract_seed, g->sequential, g->seeds, c->pop,
                c->gens, c->max_nodes, (int)c->complexity, (int)c->select,
                o->budget ? o->budget : "-", (unsigned long long)c->seed,
                g->layer ? g->layer : "all");
    k_rp = nl_xstrdupf("%s | eval=%d", k_ev, r.test.n);
    k_cal = nl_xstrdupf("%s | calibrate=%d what=%s epochs=%d", k_rp, o->calibrate, o->calib_what,
                 o->calib_epochs);
    k_ra = nl_xstrdupf("%s | realign=%s epochs=%d images=%ld", o->calibrate ? k_cal : k_rp,
                o->realign ? o->realign : "-", o->epochs, o->train_images);
  }
  /* LayerNorm */
  if (rc == 0 && !stage_done(&r, "ln", k_ln, "adapt.json")) {
    double t1, e0 = r.eval_s;
    rc = top1(&r, &r.teacher, o->model, &t1, err);
    if (rc == 0) {
      json_t *rec = stage_record(&r, "ln", k_ln);
      json_object_set_new(rec, "top1", json_real(t1));
      json_object_set_new(rec, "eval_seconds", json_real(r.eval_s - e0));
      rc = save_state(&r, err);
    }
  }
  if (rc == 0)
    note(o, "LayerNorm: top-1 %.2f %% on %d test images",
         json_number_value(json_object_get(
             json_object_get(json_object_get(r.state, "stages"), "ln"), "top1")),
         r.test.n);
  /* each stage: skipped when done with the same key */
  const char *last = "replaced.safetensors";
  if (rc == 0) {
    if (stage_done(&r, "evolve", k_ev, "chosen.exprs")) note(o, "evolve: done before (resumed)");
    else rc = stage_evolve(&r, k_ev, err);
  }
  if (rc == 0) {
    if (stage_done(&r, "replace", k_rp, "replaced.safetensors")) note(o, "replace: done before");
    else rc = stage_replace(&r, k_rp, err);
    if (rc == 0)
      note(o, "replaced: top-1 %.2f %%",
           json_number_value(json_object_get(
               json_object_get(json_object_get(r.state, "stages"), "replace"), "top1")));
  }
  if (rc == 0 && o->calibrate) {
    last = "calibrated.safetensors";
    if (stage_done(&r, "calibrate", k_cal, last)) note(o, "calibrate: done before");
    else rc = stage_calibrate(&r, k_cal, err);
    if (rc == 0)
      note(o, "calibrated: top-1 %.2f %%",
           json_number_value(json_object_get(
               json_object_get(json_object_get(r.state, "stages"), "calibrate"), "top1")));
  }
  if (rc == 0 && o->realign) {
    const char *input = last;
    last = "realigned.safetensors";
    if (stage_done(&r, "realign", k_ra, last)) note(o, "realign: done before");
    else rc = stage_realign(&r, k_ra, input, err);
    if (rc == 0)
      note(o, "re-aligned: top-1 %.2f %%",
           json_number_value(json_object_get(
               json_object_get(json_object_get(r.state, "stages"), "realign"), "top1")));
  }
  /* the adapted model: the last stage's, under its own name */
  if (rc == 0) {
    char *src = in_dir(&r, last), *dst = in_dir(&r, "adapted.safetensors");
    nl_vit m;
    rc = nl_vit_load(&m, src, NULL, err);
    if (rc == 0) {
      rc = nl_vit_save(&m, dst, err);
      nl_vit_free(&m);
    }
    free(src);
    free(dst);
  }
  json_t *rep = NULL;
  if (rc == 0) rep = report(&r, last, nl_now() - t0, err);
  if (rc == 0 && !rep) rc = -1;
  if (rc == 0) {
    char *path = in_dir(&r, "report.json"), *text = nl_json_text(rep, 0);
    rc = nl_write_file_atomic(path, text, strlen(text), err);
    free(text);
    free(path);
  }
  if (rc == 0) *out = rep;
  else json_decref(rep);
  free(k_ln);
  free(k_ev);
  free(k_rp);
  free(k_cal);
  free(k_ra);
  nl_dataset_free(&r.test);
  nl_vit_free(&r.teacher);
  json_decref(r.state);
  free(r.dir);
  return rc;
}
