/* Output-aware calibration: the trainer's backward gives dL/d(norm output);
 * the expression engine gives df/dc; Adam moves the constants (and, with
 * NL_CALIB_AFFINE, the trainer's AdamW moves w, b and the alphas). */
#include "train/calibrate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/interrupt.h"
#include "base/mem.h"
#include "base/threads.h"
#include "base/timer.h"
#include "expr/expr.h"
#include "model/norm.h"
#include "train/evaluate.h"
#include "train/loss.h"
#include "train/vit_train.h"

void nl_calib_opts_default(nl_calib_opts *o) {
  memset(o, 0, sizeof *o);
  o->what = NL_CALIB_CONSTS;
  o->epochs = 10;
  o->batch = 64;
  o->lr = 1e-2f;
  o->tau = 1.0f; /* plain KL: better top-1 than the trainer's tau 4 (BENCHMARKS.md) */
}

void nl_calib_result_free(nl_calib_result *r) {
  if (!r) return;
  free(r->epoch_kl);
  memset(r, 0, sizeof *r);
}

/* The teacher must be the model m was adapted from: same architecture. */
static int check_teacher(const nl_vit *m, const nl_vit *t, nl_error *err) {
  const nl_vit_config *a = &m->cfg, *b = &t->cfg;
  if (a->img_size != b->img_size || a->in_chans != b->in_chans || a->patch != b->patch ||
      a->dim != b->dim || a->depth != b->depth || a->heads != b->heads ||
      a->mlp_hidden != b->mlp_hidden || a->classes != b->classes ||
      a->class_token != b->class_token || a->avg_pool != b->avg_pool)
    return nl_fail(err, NL_EINPUT,
                   "the teacher is a different model (%dx%dx%d images, patch %d, width %d, depth "
                   "%d, %d heads, mlp %d, %d classes) from the adapted one (%dx%dx%d, patch %d, "
                   "width %d, depth %d, %d heads, mlp %d, %d classes): calibrate against the "
                   "model the adapted one was made from",
                   b->in_chans, b->img_size, b->img_size, b->patch, b->dim, b->depth, b->heads,
                   b->mlp_hidden, b->classes, a->in_chans, a->img_size, a->img_size, a->patch,
                   a->dim, a->depth, a->heads, a->mlp_hidden, a->classes);
  return 0;
}

/* Offsets of every expression slot's constants in one vector. */
static int const_offsets(const nl_vit *m, int *off) {
  int k = 0;
  for (int i = 0; i < m->nnorms; i++) {
    off[i] = k;
    if (m->norms[i].kind == NL_NORM_EXPR && m->norms[i].prog) k += nl_prog_nconst(m->norms[i].prog);
  }
  return k;
}

static void gather_consts(const nl_vit *m, const int *off, float *c) {
  for (int i = 0; i < m->nnorms; i++)
    if (m->norms[i].kind == NL_NORM_EXPR && m->norms[i].prog)
      nl_prog_get_consts(m->norms[i].prog, c + off[i]);
}

static void scatter_consts(nl_vit *m, const int *off, const float *c) {
  for (int i = 0; i < m->nnorms; i++)
    if (m->norms[i].kind == NL_NORM_EXPR && m->norms[i].prog)
      nl_prog_set_consts(m->norms[i].prog, c + off[i]);
}

/* One calibration run's state. */
typedef struct {
  nl_vit *m;
  nl_vit_trainer t;      /* the student's forward and backward, no teacher */
  int *off;              /* [nnorms] constant offsets */
  int nconst;
  float *grad;           /* [nconst] dL/dc of the last backward */
  int32_t *labels;       /* [batch] zeros: never read by the loss (lambda 1) */
  float tau;
} calib;

static void calib_free(calib *c) {
  nl_vt_free(&c->t);
  free(c->off);
  free(c->grad);
  free(c->labels);
  memset(c, 0, sizeof *c);
}

static int calib_init(calib *c, nl_vit *m, int batch, unsigned groups, float lr, float tau,
                      nl_error *err) {
  memset(c, 0, sizeof *c);
  c->m = m;
  c->tau = tau;
  c->off = nl_xcalloc((size_t)m->nnorms, sizeof(int));
  c->nconst = const_offsets(m, c->off);
  c->grad = nl_xcalloc((size_t)(c->nconst ? c->nconst : 1), sizeof(float));
  c->labels = nl_xcalloc((size_t)batch, sizeof(int32_t));
  nl_vt_opts o;
  nl_vt_opts_default(&o);
  o.batch = batch;
  o.train_groups = groups;
  for (int g = 0; g < NL_TR_NGROUPS; g++) o.lr[g] = lr;
  o.weight_decay = 0.0f;
  o.drop_path = 0.0f;
  o.tau = tau;
  o.lambda = 1.0f;
  if (nl_vt_init(&c->t, m, NULL, &o, err)) { /* it leaves nothing allocated */
    free(c->off);
    free(c->grad);
    free(c->labels);
    memset(c, 0, sizeof *c);
    return -1;
  }
  c->t.cgrad = c->grad;
  c->t.cgrad_off = c->off;
  return 0;
}

/* Forward n images (eval mode) against the teacher's logits tl [n, K];
 * loss tau^2 KL into *loss, the KL at tau into *kl; with backward, the
 * gradients (t.grad for the trained groups, c->grad for the constants). */
static int calib_pass(calib *c, const float *images, const float *tl, int n, int backward,
                      double *loss, double *kl, nl_error *err) {
  nl_vit_trainer *t = &c->t;
  if (nl_vt_forward(t, images, c->labels, n, NULL, err)) return -1;
  const int K = c->m->cfg.classes;
  memset(t->dlogits, 0, sizeof(float) * (size_t)n * K);
  double l = nl_tr_kd_loss(t->dlogits, t->logits, tl, c->labels, n, K, c->tau, 1.0f, NULL, kl);
  if (loss) *loss = l;
  if (!isfinite(l))
    return nl_fail(err, NL_EINPUT, "the distillation loss is not finite (%g)%s", l,
                   backward ? ": lower the learning rate" : "");
  if (backward) {
    memset(c->grad, 0, sizeof(float) * (size_t)(c->nconst ? c->nconst : 1));
    nl_vt_backward(t, n);
  }
  return 0;
}

int nl_calib_const_grad(nl_vit *m, const nl_vit *teacher, const float *images, int n, float tau,
                        double *loss, float *grad, nl_error *err) {
  if (n < 1) return nl_fail(err, NL_EINPUT, "no images");
  if (check_teacher(m, teacher, err)) return -1;
  nl_vit_acts a;
  if (nl_vit_acts_init(&a, &teacher->cfg, n, 0, err)) return -1;
  int rc = nl_vit_forward(teacher, &a, images, n, NULL, NULL, err);
  float *tl = NULL;
  if (!rc) {
    size_t nb = sizeof(float) * (size_t)n * teacher->cfg.classes;
    tl = nl_xmalloc(nb);
    memcpy(tl, a.logits, nb);
  }
  nl_vit_acts_free(&a);
  calib c;
  if (!rc && !(rc = calib_init(&c, m, n, 0, 0.0f, tau, err))) {
    rc = calib_pass(&c, images, tl, n, 1, loss, NULL, err);
    if (!rc && grad) memcpy(grad, c.grad, sizeof(float) * (size_t)c.nconst);
    calib_free(&c);
  }
  free(tl);
  return rc;
}

/* Normalised images idx[0..n) of d into x. */
static void load_batch(const nl_dataset *d, const nl_vit_config *cf, const int *idx, int n,
                       float *x) {
  size_t per = (size_t)cf->in_chans * d->rows * d->cols;
  for (int b = 0; b < n; b++)
    nl_dataset_normalize(d, idx[b], 1, cf->in_chans, cf->nmean, cf->mean, cf->std,
                         x + (size_t)b * per);
}

/* Mean KL at tau of m against the teacher logits over all of d, in order. */
static int mean_kl(calib *c, const nl_dataset *d, const float *tlog, int batch, float *x,
                   int *idx, double *out, nl_error *err) {
  const int K = c->m->cfg.classes;
  double s = 0.0;
  for (int i = 0; i < d->n; i += batch) {
    int n = d->n - i < batch ? d->n - i : batch;
    for (int b = 0; b < n; b++) idx[b] = i + b;
    load_batch(d, &c->m->cfg, idx, n, x);
    double kl;
    if (calib_pass(c, x, tlog + (size_t)i * K, n, 0, NULL, &kl, err)) return -1;
    s += kl * n;
  }
  *out = s / d->n;
  return 0;
}

static int check_opts(const nl_vit *m, const nl_calib_opts *o, nl_error *err) {
  if (o->what == 0 || (o->what & ~NL_CALIB_BOTH))
    return nl_fail(err, NL_EINPUT, "what to calibrate must be consts, affine or both (bits %u)",
                   o->what);
  if (o->epochs < 1 || o->epochs > 100000)
    return nl_fail(err, NL_EINPUT, "epochs %d is outside [1, 100000]", o->epochs);
  if (o->batch < 1 || o->batch > 65536)
    return nl_fail(err, NL_EINPUT, "batch %d is outside [1, 65536]", o->batch);
  if (!(o->lr > 0.0f) || !isfinite(o->lr))
    return nl_fail(err, NL_EINPUT, "learning rate %g is not a positive number", (double)o->lr);
  if (!(o->tau > 0.0f) || !isfinite(o->tau))
    return nl_fail(err, NL_EINPUT, "temperature %g is not a positive number", (double)o->tau);
  if (o->what & NL_CALIB_CONSTS) {
    int k = 0;
    for (int i = 0; i < m->nnorms; i++)
      if (m->norms[i].kind == NL_NORM_EXPR && m->norms[i].prog)
        k += nl_prog_nconst(m->norms[i].prog);
    if (k == 0 && o->what == NL_CALIB_CONSTS)
      return nl_fail(err, NL_EINPUT,
                     "the model has no expression constants to calibrate (no norm slot is an "
                     "expression with constants): replace its norms first, or calibrate the "
                     "affine");
  }
  return 0;
}

/* Rewrite every expression slot's text from its (calibrated) program. */
static int refresh_exprs(nl_vit *m, nl_error *err) {
  for (int i = 0; i < m->nnorms; i++) {
    nl_norm *n = &m->norms[i];
    if (n->kind != NL_NORM_EXPR || !n->prog) continue;
    nl_prog p;
    nl_prog_init(&p);
    nl_prog_copy(&p, n->prog);
    int rc = nl_norm_set_expr(m, n, &p, err);
    nl_prog_free(&p);
    if (rc) return -1;
  }
  return 0;
}

static int run(nl_vit *m, const nl_vit *teacher, const nl_dataset *d, const nl_calib_opts *o,
               nl_calib_result *r, nl_error *err) {
  const nl_vit_config *cf = &m->cfg;
  const int K = cf->classes;
  int batch = o->batch < d->n ? o->batch : d->n;
  unsigned groups = (o->what & NL_CALIB_AFFINE)
                        ? NL_TR_GROUP_BIT(NL_TR_GROUP_AFFINE) | NL_TR_GROUP_BIT(NL_TR_GROUP_ALPHA)
                        : 0u;
  double t0 = nl_now();
  size_t per = (size_t)cf->in_chans * d->rows * d->cols;
  float *x = nl_xmalloc(sizeof(float) * per * (size_t)batch);
  int *idx = nl_xmalloc(sizeof(int) * (size_t)(d->n > batch ? d->n : batch));
  float *tlog = nl_xmalloc(sizeof(float) * (size_t)d->n * K);
  int rc = 0;
  /* the teacher's logits, once */
  nl_vit_acts a;
  const int have_a = nl_vit_acts_init(&a, &teacher->cfg, batch, 0, err) == 0;
  if (!have_a) rc = -1;
  for (int i = 0; !rc && i < d->n; i += batch) {
    int n = d->n - i < batch ? d->n - i : batch;
    for (int b = 0; b < n; b++) idx[b] = i + b;
    load_batch(d, cf, idx, n, x);
    if (nl_vit_forward(teacher, &a, x, n, NULL, NULL, err)) {
      rc = nl_error_prefix(err, "teacher");
      break;
    }
    memcpy(tlog + (size_t)i * K, a.logits, sizeof(float) * (size_t)n * K);
  }
  if (have_a) nl_vit_acts_free(&a);
  calib c;
  int have_c = 0;
  if (!rc) {
    rc = calib_init(&c, m, batch, groups, o->lr, o->tau, err);
    have_c = !rc;
  }
  const int tune_c = (o->what & NL_CALIB_CONSTS) && have_c && c.nconst > 0;
  r->nconsts = tune_c ? c.nconst : 0;
  float *cv = NULL, *mom = NULL, *vel = NULL;
  if (tune_c) {
    cv = nl_xmalloc(sizeof(float) * (size_t)c.nconst);
    mom = nl_xcalloc((size_t)c.nconst, sizeof(float));
    vel = nl_xcalloc((size_t)c.nconst, sizeof(float));
    gather_consts(m, c.off, cv);
  }
  if (!rc) rc = mean_kl(&c, d, tlog, batch, x, idx, &r->kl_before, err);
  if (!rc && o->progress) {
    const char *keys[] = {"kl", "loss"};
    double vals[] = {r->kl_before, (double)o->tau * o->tau * r->kl_before};
    nl_progress p = {"calibrate", NULL, 0, o->epochs, nl_now() - t0, NULL, 2, keys, vals};
    if (o->progress(&p, o->progress_user)) r->stopped = 1;
  }
  r->epoch_kl = nl_xcalloc((size_t)o->epochs, sizeof(double));
  long step = 0;
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  for (int e = 0; !rc && !r->stopped && e < o->epochs; e++) {
    nl_rng rng;
    nl_rng_stream(&rng, o->seed, (uint64_t)e);
    for (int i = 0; i < d->n; i++) idx[i] = i;
    nl_rng_shuffle(&rng, idx, d->n);
    double s = 0.0;
    float *tb = nl_xmalloc(sizeof(float) * (size_t)batch * K);
    for (int i = 0; !rc && i < d->n; i += batch) {
      int n = d->n - i < batch ? d->n - i : batch;
      load_batch(d, cf, idx + i, n, x);
      for (int b = 0; b < n; b++)
        memcpy(tb + (size_t)b * K, tlog + (size_t)idx[i + b] * K, sizeof(float) * K);
      double kl;
      if (calib_pass(&c, x, tb, n, 1, NULL, &kl, err)) {
        rc = -1;
        break;
      }
      s += kl * n;
      step++;
      if (tune_c) { /* Adam on the constants */
        float bc1 = 1.0f - powf(b1, (float)step), bc2 = 1.0f - powf(b2, (float)step);
        for (int k = 0; k < c.nconst; k++) {
          float g = c.grad[k];
          mom[k] = b1 * mom[k] + (1 - b1) * g;
          vel[k] = b2 * vel[k] + (1 - b2) * g * g;
          cv[k] -= o->lr * (mom[k] / bc1) / (sqrtf(vel[k] / bc2) + eps);
        }
        scatter_consts(m, c.off, cv);
      }
      if (groups) nl_tr_adamw_step(&c.t.opt, 1.0f);
      if (o->interruptible && nl_interrupted()) {
        r->stopped = 1;
        break;
      }
    }
    free(tb);
    if (rc || r->stopped) break;
    r->epoch_kl[e] = s / d->n;
    r->epochs_done = e + 1;
    if (o->progress) {
      const char *keys[] = {"kl", "loss"};
      double vals[] = {r->epoch_kl[e], (double)o->tau * o->tau * r->epoch_kl[e]};
      nl_progress p = {"calibrate", NULL, e + 1, o->epochs, nl_now() - t0, NULL, 2, keys, vals};
      if (o->progress(&p, o->progress_user) && e + 1 < o->epochs) r->stopped = 1;
    }
  }
  if (!rc) rc = mean_kl(&c, d, tlog, batch, x, idx, &r->kl_after, err);
  if (have_c) calib_free(&c);
  if (!rc) rc = refresh_exprs(m, err);
  free(cv);
  free(mom);
  free(vel);
  free(tlog);
  free(idx);
  free(x);
  r->seconds = nl_now() - t0;
  return rc;
}

int nl_vit_calibrate(nl_vit *m, const nl_vit *teacher, const nl_dataset *d,
                     const nl_calib_opts *o, nl_calib_result *r, nl_error *err) {
  nl_calib_opts def;
  if (!o) {
    nl_calib_opts_default(&def);
    o = &def;
  }
  memset(r, 0, sizeof *r);
  if (check_opts(m, o, err) || check_teacher(m, teacher, err) ||
      nl_vit_check_data(m, d, NULL, err) || nl_vit_check_finite(m, "the adapted model", err) ||
      nl_vit_check_finite(teacher, "the teacher", err))
    return -1;
  if (d->n < 1) return nl_fail(err, NL_EINPUT, "no images to calibrate on");
  /* the whole call runs in one scope of o->threads workers (0: the
   * caller's scope or the default), BLAS's count included */
  int outer = nl_threads_enter(o->threads);
  int rc = run(m, teacher, d, o, r, err);
  nl_threads_leave(outer);
  return rc;
}
