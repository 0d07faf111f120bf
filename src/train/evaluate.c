/* The evaluation loop (see evaluate.h). */
#include "train/evaluate.h"

#include "data/transform.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/interrupt.h"
#include "base/mem.h"
#include "base/timer.h"
#include "model/quant.h"
#include "train/loss.h"

void nl_eval_opts_default(nl_eval_opts *o) {
  o->batch = 100;
  o->threads = 0;
  o->interruptible = 0;
  o->progress = NULL;
  o->progress_user = NULL;
  o->model_name = NULL;
  o->predictions = NULL;
  o->npredictions = 0;
}

static const char *name_of(const char *model_name) { return model_name ? model_name : "the model"; }

void nl_vit_data_opts(const nl_vit_config *c, nl_data_opts *o) {
  nl_data_opts_default(o, c->img_size, c->in_chans);
  if (c->crop_pct > 0) o->crop_pct = c->crop_pct;
  int ip = nl_interp_parse(c->interpolation);
  if (ip >= 0) o->interp = ip;
}

int nl_vit_check_data(const nl_vit *m, const nl_dataset *d, const char *model_name,
                      nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  const char *mn = name_of(model_name);
  if (d->rows != c->img_size || d->cols != c->img_size)
    return nl_fail(err, NL_EINPUT, "%s expects %dx%d images but %s has %dx%d", mn, c->img_size,
                   c->img_size, d->name, d->rows, d->cols);
  if (d->channels > 1 && d->channels != c->in_chans)
    return nl_fail(err, NL_EINPUT, "%s takes %d input channels but %s has %d", mn, c->in_chans,
                   d->name, d->channels);
  if (d->classes > c->classes)
    return nl_fail(err, NL_EINPUT, "%s has %d classes but %s has labels up to %d", mn,
                   c->classes, d->name, d->classes - 1);
  if (c->in_chans < 1 || (c->nmean != 1 && c->nmean != c->in_chans))
    return nl_fail(err, NL_EINPUT,
                   "%s takes %d input channels but its mean/std have %d entries: cannot "
                   "normalise the images of %s",
                   mn, c->in_chans, c->nmean, d->name);
  return 0;
}

size_t nl_vit_tensor_nonfinite(const nl_vit *m, int i, size_t *nan, size_t *inf) {
  const nl_param *p = &m->tensors[i];
  const float *v = m->params + p->offset;
  size_t nn = 0, ni = 0;
  /* integers without an FP32 copy (int_only): finite by construction */
  const size_t numel = nl_vit_tensor_fp32_absent(m, i) ? 0 : p->numel;
  for (size_t k = 0; k < numel; k++) {
    if (isnan(v[k])) nn++;
    else if (isinf(v[k])) ni++;
  }
  if (nan) *nan = nn;
  if (inf) *inf = ni;
  return nn + ni;
}

int nl_vit_check_finite(const nl_vit *m, const char *model_name, nl_error *err) {
  for (int i = 0; i < m->ntensors; i++) {
    size_t nn, ni;
    if (!nl_vit_tensor_nonfinite(m, i, &nn, &ni)) continue;
    int more = 0;
    for (int j = i + 1; j < m->ntensors; j++) more += nl_vit_tensor_nonfinite(m, j, NULL, NULL) > 0;
    char also[64] = "";
    if (more) snprintf(also, sizeof also, " (and %d more tensor%s)", more, more == 1 ? "" : "s");
    return nl_fail(err, NL_EINPUT,
                   "%s: tensor %s has %zu non-finite value%s of %zu (%zu NaN, %zu infinite)%s; "
                   "a model with non-finite parameters cannot be evaluated ('normlab info' "
                   "lists them)",
                   name_of(model_name), m->tensors[i].name, nn + ni, nn + ni == 1 ? "" : "s",
                   m->tensors[i].numel, nn, ni, also);
  }
  return 0;
}

/* ---- diagnosis of non-finite logits ---- */

typedef struct {
  int found;       /* 1: output not finite, input finite; 2: input not finite */
  char layer[48];
} nf_tap;

static int all_finite(const float *v, size_t n) {
  for (size_t k = 0; k < n; k++)
    if (!isfinite(v[k])) return 0;
  return 1;
}

static int nf_tap_fn(const char *layer, int index, const float *x, const float *y, int batch,
                     int tokens, int dim, void *user) {
  (void)index;
  nf_tap *t = user;
  size_t n = (size_t)batch * tokens * dim;
  if (!all_finite(x, n)) t->found = 2;
  else if (!all_finite(y, n)) t->found = 1;
  else return 0;
  snprintf(t->layer, sizeof t->layer, "%s", layer);
  return 1; /* stop the pass */
}

/* The error for a batch (images [first, first + n)) whose logits are not
 * finite: the image, and where the first non-finite value appears. */
static int nonfinite_logits(const nl_vit *m, nl_vit_acts *acts, const float *x, int first, int n,
                            const nl_dataset *d, const char *mn, nl_error *err) {
  const int K = m->cfg.classes;
  int img = 0;
  const char *what = "NaN";
  for (int b = 0; b < n; b++) {
    const float *l = acts->logits + (size_t)b * K;
    if (all_finite(l, (size_t)K)) continue;
    img = b;
    for (int k = 0; k < K; k++)
      if (!isnan(l[k]) && isinf(l[k])) what = "infinite";
    for (int k = 0; k < K; k++)
      if (isnan(l[k])) what = "NaN";
    break;
  }
  nf_tap t = {0, ""};
  nl_error e2;
  nl_error_clear(&e2);
  nl_vit_forward(m, acts, x, n, nf_tap_fn, &t, &e2); /* stops at the first non-finite norm */
  char where[160];
  if (t.found == 1)
    snprintf(where, sizeof where, "the first non-finite values are the output of norm layer %s",
             t.layer);
  else if (t.found == 2)
    snprintf(where, sizeof where, "the input of norm layer %s is already not finite", t.layer);
  else
    snprintf(where, sizeof where, "every norm layer's output is finite");
  return nl_fail(err, NL_EINPUT,
                 "%s: tensor logits is %s for image %d of %s (the parameters are finite; %s)", mn,
                 what, first + img, d->name, where);
}

int nl_vit_evaluate(const nl_vit *m, const nl_dataset *d, const nl_eval_opts *o,
                    nl_eval_result *r, nl_error *err) {
  nl_eval_opts def;
  if (!o) {
    nl_eval_opts_default(&def);
    o = &def;
  }
  r->images = r->top1 = r->top5 = 0;
  r->seconds = 0;
  r->stopped = 0;
  r->skipped = d->skipped;
  const char *mn = name_of(o->model_name);
  if (nl_vit_check_data(m, d, mn, err) || nl_vit_check_finite(m, mn, err)) return -1;
  const nl_vit_config *c = &m->cfg;
  int batch = o->batch > 0 ? o->batch : 100;
  if (batch > d->n && d->n > 0) batch = d->n;
  nl_vit_acts acts;
  if (nl_vit_acts_init(&acts, c, batch, 0, err)) return -1;
  acts.threads = o->threads;
  if (nl_vit_acts_pack(&acts, m, err)) { /* the weights stay as they are during the sweep */
    nl_vit_acts_free(&acts);
    return -1;
  }
  const int K = c->classes, k5 = K < 5 ? K : 5;
  float *x = nl_xmalloc(sizeof(float) * (size_t)batch * c->in_chans * d->rows * d->cols);
  int32_t *lab = nl_xmalloc(sizeof(int32_t) * (size_t)batch);
  double t0 = nl_now();
  int rc = 0;
  for (int i = 0; i < d->n; i += batch) {
    if (o->interruptible && nl_interrupted()) {
      r->stopped = 1;
      break;
    }
    int n = d->n - i < batch ? d->n - i : batch;
    nl_dataset_normalize(d, i, n, c->in_chans, c->nmean, c->mean, c->std, x);
    if ((rc = nl_vit_forward(m, &acts, x, n, NULL, NULL, err)) != 0) break;
    if (!all_finite(acts.logits, (size_t)n * K)) {
      rc = nonfinite_logits(m, &acts, x, i, n, d, mn, err);
      break;
    }
    for (int b = 0; b < n; b++) lab[b] = d->labels[i + b];
    r->top1 += nl_tr_topk_correct(acts.logits, lab, n, K, 1);
    r->top5 += nl_tr_topk_correct(acts.logits, lab, n, K, k5);
    for (int b = 0; o->predictions && b < n && i + b < o->npredictions; b++) {
      const float *lg = acts.logits + (size_t)b * K;
      int best = 0;
      for (int k = 1; k < K; k++)
        if (lg[k] > lg[best]) best = k;
      o->predictions[i + b] = best;
    }
    r->images += n;
    if (o->progress) {
      static const char *const keys[] = {"top1", "top5"};
      const double vals[] = {(double)r->top1 / r->images, (double)r->top5 / r->images};
      nl_progress p = {"eval", d->name, r->images, d->n, nl_now() - t0, NULL, 2, keys, vals};
      if (o->progress(&p, o->progress_user)) {
        r->stopped = r->images < d->n;
        break;
      }
    }
  }
  r->seconds = nl_now() - t0;
  free(lab);
  free(x);
  nl_vit_acts_free(&acts);
  return rc;
}

/* Progress of a chunk, as counts over the whole stream. */
typedef struct stream_progress {
  const nl_eval_opts *o;
  long base, top1, top5, total;
  double t0;
} stream_progress;

static int chunk_progress(const nl_progress *p, void *user) {
  stream_progress *sp = user;
  long done = sp->base + p->done;
  static const char *const keys[] = {"top1", "top5"};
  const double vals[] = {done ? (sp->top1 + p->vals[0] * p->done) / done : 0,
                         done ? (sp->top5 + p->vals[1] * p->done) / done : 0};
  nl_progress q = {"eval", p->label, done, sp->total, nl_now() - sp->t0, NULL, 2, keys, vals};
  return sp->o->progress(&q, sp->o->progress_user);
}

int nl_vit_evaluate_stream(const nl_vit *m, nl_data_stream *s, const nl_eval_opts *o,
                           nl_eval_result *r, nl_error *err) {
  nl_eval_opts def;
  if (!o) {
    nl_eval_opts_default(&def);
    o = &def;
  }
  memset(r, 0, sizeof *r);
  stream_progress sp = {o, 0, 0, 0, nl_data_stream_total(s), nl_now()};
  nl_eval_opts co = *o;
  if (o->progress) {
    co.progress = chunk_progress;
    co.progress_user = &sp;
  }
  int rc = 0;
  for (;;) {
    if (o->interruptible && nl_interrupted()) {
      r->stopped = 1;
      break;
    }
    nl_dataset d;
    if ((rc = nl_data_stream_next(s, &d, err)) != 0) break;
    if (d.n == 0) { /* the end, or a chunk of bad images only */
      int end = d.skipped == 0;
      r->skipped += d.skipped;
      nl_dataset_free(&d);
      if (end) break;
      continue;
    }
    nl_eval_result cr;
    if (o->predictions) { /* this chunk's images go after the ones done */
      co.predictions = r->images < o->npredictions ? o->predictions + r->images : NULL;
      co.npredictions = r->images < o->npredictions ? o->npredictions - r->images : 0;
    }
    rc = nl_vit_evaluate(m, &d, &co, &cr, err);
    nl_dataset_free(&d);
    r->images += cr.images;
    r->top1 += cr.top1;
    r->top5 += cr.top5;
    r->skipped += cr.skipped;
    sp.base = r->images, sp.top1 = r->top1, sp.top5 = r->top5;
    if (rc) break;
    if (cr.stopped) {
      r->stopped = 1;
      break;
    }
  }
  r->seconds = nl_now() - sp.t0;
  if (!rc && !r->stopped && r->images == 0 && r->skipped > 0)
    rc = nl_fail(err, NL_EINPUT, "no images left (%ld could not be decoded)", r->skipped);
  return rc;
}
