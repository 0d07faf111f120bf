/* `normlab train`: re-align (or train from scratch) a ViT on Fashion-MNIST
 * with the whole-model trainer (src/train/vit_train.h). The settings are
 * parsed by the library (train/train_opts.h, shared with Lua); evaluation
 * is nl_vit_evaluate (train/evaluate.h). Evaluates before training and
 * after every epoch, writes a checkpoint per epoch, the state (the run's
 * one commit point) and a log into --output, resumes with --resume (same
 * settings), and saves and stops on Ctrl-C (exit 130). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/data_load.h"
#include "app/model_path.h"
#include "base/fileio.h"
#include "base/interrupt.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/rng.h"
#include "base/threads.h"
#include "base/timer.h"
#include "data/dataset.h"
#include "model/safetensors.h"
#include "model/quant.h"
#include "model/vit.h"
#include "train/augment.h"
#include "train/loss.h"
#include "train/evaluate.h"
#include "train/optim.h"
#include "train/train_opts.h"
#include "train/vit_train.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "model to train (safetensors, timm names)", NULL,
     NL_OPTF_PATH | NL_OPTF_SESSION},
    {"data", NL_OPT_STR, "SPEC", "fmnist:train", "training data", NULL, 0},
    {"eval", NL_OPT_STR, "SPEC", "fmnist:test", "evaluation data", NULL, 0},
    NL_OPT_SKIP_BAD,
    {"epochs", NL_OPT_INT, "E", "1", "epochs", NULL, 0},
    {"lr", NL_OPT_NUM, "X", "0.0005", "base learning rate (backbone group)", NULL, 0},
    {"lr-affine", NL_OPT_NUM, "X", NULL, "learning rate of the norm affines (default --lr)", NULL,
     0},
    {"lr-alpha", NL_OPT_NUM, "X", NULL, "learning rate of DyT alphas (default --lr)", NULL, 0},
    {"variant", NL_OPT_CHOICE, NULL, "full",
     "trained parameters: affine or A (norm w, b, alpha), full or F, D (full, distilled from "
     "--teacher), tb (the transformation blocks of the model's reuse plan alone)",
     NL_TRAIN_VARIANTS, 0},
    {"teacher", NL_OPT_STR, "FILE", NULL, "distil from this model's logits", NULL, NL_OPTF_PATH},
    {"tau", NL_OPT_NUM, "T", "4", "distillation temperature", NULL, 0},
    {"lambda", NL_OPT_NUM, "L", "0.5", "distillation weight: (1-L) CE + L tau^2 KL", NULL, 0},
    {"batch", NL_OPT_INT, "B", "256", "images per step", NULL, 0},
    {"wd", NL_OPT_NUM, "X", "0.05", "decoupled weight decay (not on biases, norms, pos, cls)",
     NULL, 0},
    {"warmup", NL_OPT_INT, "N", "0", "linear warm-up steps", NULL, 0},
    {"schedule", NL_OPT_CHOICE, NULL, "cosine", "learning-rate schedule per step",
     "cosine|constant", 0},
    {"drop-path", NL_OPT_NUM, "P", "0.1", "stochastic depth rate of the last block", NULL, 0},
    {"augment", NL_OPT_FLAG, NULL, NULL, "random crop (2-pixel pad) and flip (the default)", NULL,
     0},
    {"no-augment", NL_OPT_FLAG, NULL, NULL, "train on the images as they are", NULL, 0},
    {"images", NL_OPT_INT, "N", "0", "use the first N training images (0: all)", NULL, 0},
    {"eval-images", NL_OPT_INT, "N", "0", "evaluate on the first N images (0: all)", NULL, 0},
    {"init", NL_OPT_CHOICE, NULL, "model", "start from the model's weights or timm's random init",
     "model|random", 0},
    {"seed", NL_OPT_INT, "S", "0", "seed of shuffling, augmentation, drop path, init", NULL,
     NL_OPTF_SESSION},
    {"threads", NL_OPT_INT, "N", NULL, "worker threads (default: normlab --threads)", NULL,
     NL_OPTF_SESSION},
    {"precision", NL_OPT_CHOICE, NULL, "fp32",
     "the step's Linear products: fp32, or bf16 operands with FP32 sums (master weights, "
     "gradients and AdamW stay FP32; needs AVX512-BF16)",
     "fp32|bf16", 0},
    {"output", NL_OPT_STR, "DIR", NULL, "run directory (checkpoints, state, log)", NULL,
     NL_OPTF_REQUIRED | NL_OPTF_PATH},
    {"resume", NL_OPT_FLAG, NULL, NULL, "continue the run in --output", NULL, 0},
    {"set", NL_OPT_STR, "SPEC", NULL,
     "replace the norms first, as replace --set (at the prompt: the session's set; none: as "
     "loaded)",
     NULL, NL_OPTF_PATH},
    {"json", NL_OPT_FLAG, NULL, NULL, "print the log as one JSON object", NULL, 0},
    {"dump-grads", NL_OPT_STR, "FILE", NULL,
     "write the first step's batch and gradients to FILE (safetensors) and stop", NULL,
     NL_OPTF_PATH},
    {0},
};

/* ---- run directory ---- */

typedef struct {
  char dir[900];
  char path[1024];
} run_dir;

static const char *rd_path(run_dir *r, const char *name) {
  snprintf(r->path, sizeof r->path, "%s/%s", r->dir, name);
  return r->path;
}

/* The log: {"config": {...}, "epochs": [{epoch, steps, lr, loss, top1, top5, seconds,
 * images_per_second}], "position": {epoch, batch, loss_sum, seconds}}. */
static int write_log(json_t *log, run_dir *rd, nl_error *err) {
  char *s = nl_json_text(log, NL_JSON_PRETTY);
  if (!s) return nl_fail(err, NL_ENOMEM, "out of memory");
  int rc = nl_write_file_atomic(rd_path(rd, "train.json"), s, strlen(s), err);
  free(s);
  if (rc) return -1;
  /* the same rows as CSV */
  json_t *rows = json_object_get(log, "epochs");
  size_t cap = 256 + 160 * json_array_size(rows), len = 0;
  char *csv = nl_xmalloc(cap);
  len += (size_t)snprintf(csv, cap, "epoch,steps,lr,loss,top1,top5,seconds,images_per_second\n");
  size_t i;
  json_t *r;
  json_array_foreach(rows, i, r) {
    json_t *l = json_object_get(r, "loss");
    char ls[32] = "";
    if (json_is_number(l)) snprintf(ls, sizeof ls, "%.6f", json_number_value(l));
    len += (size_t)snprintf(
        csv + len, cap - len, "%lld,%lld,%.6g,%s,%.6f,%.6f,%.2f,%.1f\n",
        (long long)json_integer_value(json_object_get(r, "epoch")),
        (long long)json_integer_value(json_object_get(r, "steps")),
        json_number_value(json_object_get(r, "lr")), ls,
        json_number_value(json_object_get(r, "top1")), json_number_value(json_object_get(r, "top5")),
        json_number_value(json_object_get(r, "seconds")),
        json_number_value(json_object_get(r, "images_per_second")));
  }
  rc = nl_write_file_atomic(rd_path(rd, "train.csv"), csv, len, err);
  free(csv);
  return rc;
}

/* The position: state.safetensors first, the run's one commit point (model
 * parameters, optimizer state and the log with the position, written
 * atomically), then last.safetensors and train.json / train.csv, which are
 * copies of what it holds. A resume reads only the state and rewrites the
 * copies, so a kill between any two of these writes leaves a run that
 * resumes consistently. */
/* A checkpoint: the model, with the precision of the steps that made it
 * ("train_precision" in __metadata__). */
static int save_checkpoint(const nl_vit *m, nl_precision p, const char *path, nl_error *err) {
  const char *const meta[] = {"train_precision", nl_precision_name(p)};
  return nl_vit_save_meta(m, path, meta, 1, err);
}

static int save_position(const nl_vit_trainer *t, json_t *log, run_dir *rd, nl_error *err) {
  char *s = nl_json_text(log, NL_JSON_LINE);
  if (!s) return nl_fail(err, NL_ENOMEM, "out of memory");
  int rc = nl_vt_save_state(t, rd_path(rd, "state.safetensors"), s, err);
  free(s);
  if (rc || save_checkpoint(t->m, t->o.precision, rd_path(rd, "last.safetensors"), err))
    return -1;
  return write_log(log, rd, err);
}

/* ---- the command ---- */

typedef struct {
  nl_vit m, teacher;
  int have_m, have_t;
  nl_dataset tr;
  int have_tr;
  uint8_t *seen_bad;   /* --skip-bad, streamed: per training entry, reported already */
  long tr_skipped;     /* training images left out (distinct) */
  long ev_skipped;     /* evaluation images left out */
  int ev_reported;     /* the evaluation data's bad images were named once */
  float *xtr, *xb, *xa;
  int32_t *yb;
  nl_train_stream *ts; /* image folders and CIFAR: decoded chunk by chunk */
  nl_vit_trainer t;
  int have_t_;
  json_t *log;
  const char *dump_grads; /* --dump-grads FILE, or NULL */
} train_state;

/* --dump-grads: the batch of the step just taken ("inputs" [B, C, H, W] as
 * trained on, "labels" I32 [B]) and the gradient of every tensor
 * ("grad.NAME", zero for frozen groups), with the loss in __metadata__. */
static int dump_grads(const train_state *S, int B, const char *path, nl_error *err) {
  const nl_vit *m = &S->m;
  const nl_vit_config *c = &m->cfg;
  nl_st_writer *w = nl_st_writer_new();
  int64_t xs[4] = {B, c->in_chans, c->img_size, c->img_size}, ys[1] = {B};
  int rc = nl_st_writer_add(w, "inputs", S->xb, 4, xs, err);
  if (!rc) rc = nl_st_writer_add_raw(w, "labels", NL_DT_I32, S->yb, 1, ys, err);
  char name[64];
  for (int i = 0; !rc && i < m->ntensors; i++) {
    const nl_param *p = &m->tensors[i];
    snprintf(name, sizeof name, "grad.%s", p->name);
    rc = nl_st_writer_add(w, name, S->t.grad + p->offset, p->ndim, p->shape, err);
  }
  char meta[160];
  snprintf(meta, sizeof meta, "{\"loss\": %.9g, \"ce\": %.9g, \"kl\": %.9g}", S->t.loss,
           S->t.ce, S->t.kl);
  nl_st_writer_meta(w, "step", meta);
  if (!rc) rc = nl_st_writer_save(w, path, err);
  nl_st_writer_free(w);
  return rc ? nl_error_prefix(err, "--dump-grads") : 0;
}

static void cleanup(train_state *s) {
  if (s->have_t_) nl_vt_free(&s->t);
  free(s->xtr), free(s->xb), free(s->xa), free(s->yb);
  nl_train_stream_close(s->ts);
  free(s->seen_bad);
  if (s->have_tr) nl_dataset_free(&s->tr);
  if (s->have_t) nl_vit_free(&s->teacher);
  if (s->have_m) nl_vit_free(&s->m);
  if (s->log) json_decref(s->log);
}

/* Load a dataset the model can take; x receives all of it, normalised. */
static int load_data(nl_ctx *ctx, nl_dataset *d, const char *spec, long limit, int skip_bad,
                     const nl_vit *m, const char *model, float **x, nl_error *err) {
  if (nl_app_load_data(ctx, spec, 0, limit, &m->cfg, skip_bad, d, err)) return -1;
  if (nl_vit_check_data(m, d, model, err)) return -1;
  if (!x) return 0;
  const nl_vit_config *c = &m->cfg;
  size_t img = (size_t)c->in_chans * c->img_size * c->img_size;
  *x = nl_try_alloc((size_t)d->n * img, sizeof(float));
  if (!*x) return nl_fail(err, NL_ENOMEM, "cannot hold %d normalised images of %s", d->n, spec);
  nl_dataset_normalize(d, 0, d->n, c->in_chans, c->nmean, c->mean, c->std, *x);
  return 0;
}

static json_t *epoch_row(long epoch, long steps, double lr, double loss, double t1, double t5,
                         double sec, double ips) {
  /* epoch 0 has no training loss: null */
  return json_pack("{s:I, s:I, s:f, s:o, s:f, s:f, s:f, s:f}", "epoch", (json_int_t)epoch, "steps",
                   (json_int_t)steps, "lr", lr, "loss", loss >= 0 ? json_real(loss) : json_null(),
                   "top1", t1, "top5", t5, "seconds", sec, "images_per_second", ips);
}

/* The evaluation data streams as eval's does (nl_app_open_stream): this
 * many images a chunk, the next decoded meanwhile, so that its memory does
 * not grow with --eval-images; whole batches of EVAL_BATCH. */
#define EVAL_BATCH 256
#define EVAL_CHUNK (2 * EVAL_BATCH)

/* Top-1 / top-5 of the model being trained on the evaluation data (over
 * the images used: *images of them; bad ones left out with --skip-bad,
 * named on the first evaluation only). */
static int evaluate(nl_ctx *ctx, train_state *S, const nl_train_opts *A, double *t1, double *t5,
                    long *images, nl_error *err) {
  const int skip = A->skip_bad ? (S->ev_reported ? NL_SKIP_QUIET : NL_SKIP_REPORT) : 0;
  nl_data_stream *st;
  if (nl_app_open_stream(ctx, A->eval, 0, A->eval_limit, &S->m.cfg, skip, EVAL_CHUNK, &st, err))
    return nl_error_prefix(err, "--eval");
  nl_eval_opts eo;
  nl_eval_opts_default(&eo);
  eo.batch = EVAL_BATCH;
  eo.threads = A->threads;
  eo.model_name = A->model;
  nl_eval_result r;
  int rc = nl_vit_evaluate_stream(&S->m, st, &eo, &r, err);
  nl_data_stream_close(st);
  if (rc) return -1;
  S->ev_reported = 1;
  S->ev_skipped = r.skipped;
  *t1 = r.images ? (double)r.top1 / r.images : 0;
  *t5 = r.images ? (double)r.top5 / r.images : 0;
  *images = r.images;
  return 0;
}

/* Before anything is written: the evaluation data opens, and its first
 * image suits the model (evaluate checks every chunk again). */
static int check_eval_data(nl_ctx *ctx, const train_state *S, const nl_train_opts *A,
                           nl_error *err) {
  nl_data_stream *st;
  if (nl_app_open_stream(ctx, A->eval, 0, 1, &S->m.cfg, A->skip_bad ? NL_SKIP_QUIET : 0, 1, &st,
                         err))
    return nl_error_prefix(err, "--eval");
  nl_dataset d;
  int rc = nl_data_stream_next(st, &d, err);
  if (!rc && d.n > 0) rc = nl_vit_check_data(&S->m, &d, A->model, err);
  nl_dataset_free(&d);
  nl_data_stream_close(st);
  return rc ? nl_error_prefix(err, "--eval") : 0;
}

/* The skipped counts as recorded in the log. */
static void log_skipped(const train_state *S, const nl_train_opts *A) {
  if (A->skip_bad)
    json_object_set_new(S->log, "skipped",
                        json_pack("{s:I, s:I}", "data", (json_int_t)S->tr_skipped, "eval",
                                  (json_int_t)S->ev_skipped));
}

/* Continue the run in rd: the position, parameters, optimizer state and
 * log from the state; the settings must be the run's (config: this
 * command's). */
static int resume(nl_ctx *ctx, const nl_train_opts *A, train_state *S, run_dir *rd, json_t *config,
                  long nb, long *epoch0, long *batch0, double *loss_sum, double *sec_sum,
                  nl_error *err) {
  char *meta = NULL, sp[sizeof rd->path];
  snprintf(sp, sizeof sp, "%s", rd_path(rd, "state.safetensors"));
  if (nl_vt_load_state(&S->t, sp, &meta, err)) return -1;
  json_error_t je;
  S->log = meta ? json_loads(meta, 0, &je) : NULL;
  free(meta);
  json_t *pos = S->log ? json_object_get(S->log, "position") : NULL;
  json_t *saved = S->log ? json_object_get(S->log, "config") : NULL;
  if (!pos || !json_is_array(json_object_get(S->log, "epochs")) || !json_is_object(saved))
    return nl_fail(err, NL_EINPUT, "%s: the state holds no readable position", sp);
  if (nl_train_config_check_resume(saved, config, rd->dir, err)) return -1;
  *epoch0 = (long)json_integer_value(json_object_get(pos, "epoch"));
  *batch0 = (long)json_integer_value(json_object_get(pos, "batch"));
  *loss_sum = json_number_value(json_object_get(pos, "loss_sum"));
  *sec_sum = json_number_value(json_object_get(pos, "seconds"));
  long bpe = (long)json_integer_value(json_object_get(pos, "batches_per_epoch"));
  if (bpe != nb)
    return nl_fail(err, NL_EINPUT,
                   "%s was run with %ld batches per epoch, this command gives %ld: keep --batch "
                   "and --images",
                   rd->dir, bpe, nb);
  long old = (long)json_integer_value(json_object_get(saved, "epochs"));
  if (A->epochs < *epoch0 + (*batch0 > 0))
    return nl_fail(err, NL_EINPUT,
                   "--epochs %ld: the run in %s has already trained %ld epoch%s%s; give at least "
                   "%ld",
                   A->epochs, rd->dir, *epoch0, *epoch0 == 1 ? "" : "s",
                   *batch0 ? " and part of the next" : "", *epoch0 + (*batch0 > 0));
  if (old != A->epochs) { /* a changed length is recorded */
    json_t *rs = json_object_get(S->log, "resumes");
    if (!json_is_array(rs)) json_object_set_new(S->log, "resumes", rs = json_array());
    json_array_append_new(rs, json_pack("{s:I, s:I, s:[I, I]}", "epoch", (json_int_t)*epoch0,
                                        "batch", (json_int_t)*batch0, "epochs", (json_int_t)old,
                                        (json_int_t)A->epochs));
    json_object_set_new(saved, "epochs", json_integer((json_int_t)A->epochs));
  }
  if (nl_vit_check_finite(&S->m, sp, err)) return -1;
  /* the copies of the state, whatever step they were left at */
  if (save_checkpoint(&S->m, A->precision, rd_path(rd, "last.safetensors"), err) ||
      write_log(S->log, rd, err))
    return -1;
  fprintf(ctx->err, "train: resuming %s at epoch %ld, batch %ld of %ld\n", rd->dir, *epoch0 + 1,
          *batch0, nb);
  return 0;
}

static int train_run(nl_ctx *ctx, const nl_train_opts *A, const nl_model_norms *norms,
                     train_state *S, nl_error *err) {
  if (nl_vt_check_precision(A->precision, err)) return -1; /* before anything is written */
  if (nl_vit_load(&S->m, A->model, NULL, err)) return -1;
  S->have_m = 1;
  if (nl_vit_quant_check_trainable(&S->m, A->model, "train", err)) return -1;
  if (norms->spec) { /* the norms go in before anything is recorded (the fingerprint) */
    int replaced;
    if (nl_model_norms_apply(norms, &S->m, NULL, &replaced, err)) return -1;
    fprintf(ctx->err, "train: %s with %s (%d of %d norm layers replaced)\n", A->model,
            norms->label, replaced, S->m.nnorms);
  }
  nl_vit *m = &S->m;
  const nl_vit_config *c = &m->cfg;
  if (A->teacher) {
    if (nl_vit_load(&S->teacher, A->teacher, NULL, err) ||
        nl_vit_check_finite(&S->teacher, A->teacher, err))
      return nl_error_prefix(err, "--teacher");
    S->have_t = 1;
  }
  /* image folders and CIFAR stream: the listing in memory, the images of
   * the next chunk of batches decoded in the background while the current
   * ones train (NORMLAB_TRAIN_WHOLE_SET=1, for the tests: the whole set
   * decoded at the start of every epoch, as before; the same run) */
  const char *whole = getenv("NORMLAB_TRAIN_WHOLE_SET");
  const int stream = nl_app_data_transformed(A->data) && !(whole && strcmp(whole, "1") == 0);
  S->have_tr = 1;
  if (stream) {
    int dw = nl_threads_count(A->threads) / 2; /* half the cores beside the training step */
    /* whole batches a chunk (about 64 images): a pass is nb * B images with
     * B = --batch, or B = all the images in one batch when they are fewer
     * (then the pass is one chunk) */
    int chunk = (int)(A->batch < 64 ? (64 / A->batch) * A->batch : A->batch);
    if (nl_app_open_train_stream(ctx, A->data, A->limit, c, A->augment, A->skip_bad,
                                 dw > 0 ? dw : 1, chunk, &S->ts, &S->tr, err) ||
        nl_vit_check_data(m, &S->tr, A->model, err))
      return -1;
    if (A->skip_bad) S->seen_bad = nl_xcalloc((size_t)S->tr.n + 1, 1);
  } else if (load_data(ctx, &S->tr, A->data, A->limit, A->skip_bad ? NL_SKIP_REPORT : 0, m,
                       A->model, &S->xtr, err)) {
    return -1;
  }
  S->tr_skipped = S->tr.skipped;
  if (check_eval_data(ctx, S, A, err)) return -1;
  const int ntr = S->tr.n, B = (int)(A->batch < ntr ? A->batch : ntr);
  const long nb = ntr / B; /* full batches per epoch; the rest is dropped, as timm does */
  const size_t img = (size_t)c->in_chans * c->img_size * c->img_size;
  /* the settings as recorded, with the fingerprints of the models as given */
  json_t *config = nl_train_config(A, m, S->have_t ? &S->teacher : NULL, ntr, B);
  if (A->random_init) nl_vt_init_random(m, (uint64_t)A->seed);
  /* run directory */
  run_dir rd;
  if (strlen(A->output) >= sizeof rd.dir) {
    json_decref(config);
    return nl_fail(err, NL_EINPUT, "--output: path too long");
  }
  snprintf(rd.dir, sizeof rd.dir, "%s", A->output);
  int have_state = 0;
  int rc = nl_mkdir_p(rd.dir, err);
  if (!rc) {
    have_state = nl_file_exists(rd_path(&rd, "state.safetensors"));
    if (have_state && !A->resume)
      rc = nl_fail(err, NL_EINPUT,
                   "%s already holds a run: add --resume to continue it, or choose another "
                   "--output",
                   rd.dir);
  }
  /* what an interrupted write left behind */
  if (!rc && nl_atomic_cleanup(rd.dir, err) < 0) rc = -1;
  if (rc) {
    json_decref(config);
    return -1;
  }
  /* trainer */
  nl_vt_opts o;
  nl_vt_opts_default(&o);
  o.batch = B;
  o.train_groups = A->affine ? NL_TR_GROUP_BIT(NL_TR_GROUP_AFFINE) | NL_TR_GROUP_BIT(NL_TR_GROUP_ALPHA)
                             : NL_TR_GROUPS_ALL;
  o.tb_only = A->tb_only;
  o.lr[NL_TR_GROUP_BACKBONE] = (float)A->lr;
  o.lr[NL_TR_GROUP_AFFINE] = (float)A->lr_affine;
  o.lr[NL_TR_GROUP_ALPHA] = (float)A->lr_alpha;
  o.weight_decay = (float)A->wd;
  o.drop_path = (float)A->drop_path;
  o.tau = (float)A->tau;
  o.lambda = (float)A->lambda;
  o.threads = A->threads;
  o.precision = A->precision;
  if (nl_vt_init(&S->t, m, S->have_t ? &S->teacher : NULL, &o, err)) {
    json_decref(config);
    return -1;
  }
  S->have_t_ = 1;
  nl_vit_trainer *t = &S->t;
  S->xb = nl_xmalloc((size_t)B * img * sizeof(float));
  S->xa = nl_xmalloc((size_t)B * img * sizeof(float));
  S->yb = nl_xmalloc((size_t)B * sizeof(int32_t));
  /* position */
  long epoch0 = 0, batch0 = 0;
  double loss_sum = 0, sec_sum = 0;
  if (have_state) {
    rc = resume(ctx, A, S, &rd, config, nb, &epoch0, &batch0, &loss_sum, &sec_sum, err);
    json_decref(config);
    if (rc) return -1;
  } else {
    if (A->resume) fprintf(ctx->err, "train: nothing to resume in %s, starting\n", rd.dir);
    S->log = json_object();
    json_object_set_new(S->log, "config", config);
    json_object_set_new(S->log, "epochs", json_array());
    double t1, t5, e0 = nl_now();
    long evn;
    if (evaluate(ctx, S, A, &t1, &t5, &evn, err)) return -1;
    json_array_append_new(json_object_get(S->log, "epochs"),
                          epoch_row(0, 0, 0, -1, t1, t5, nl_now() - e0, 0));
    log_skipped(S, A);
    char sk[80] = "";
    if (S->ev_skipped)
      snprintf(sk, sizeof sk, " (%ld bad skipped, not counted)", S->ev_skipped);
    fprintf(ctx->err, "train: epoch 0 (before training): top-1 %.2f %%, top-5 %.2f %% on %ld images%s\n",
            100 * t1, 100 * t5, evn, sk);
  }
  const nl_tr_sched sch = nl_vt_schedule(A->cosine, A->warmup, A->epochs * nb);
  json_t *rows = json_object_get(S->log, "epochs");
  const float pad = nl_tr_pad_value(c->mean[0], c->std[0]);
  /* image folders and CIFAR: timm's RandomResizedCrop + flip, drawn anew
   * each epoch (seeded by --seed and the epoch), instead of the pad-and-crop */
  const int rrc = A->augment && nl_app_data_transformed(A->data);
  const uint64_t seed = (uint64_t)A->seed;
  int *perm = nl_xmalloc((size_t)ntr * sizeof(int));
  nl_tr_aug *aug = nl_xmalloc((size_t)B * sizeof *aug);
  int stopped = 0;
  for (long e = epoch0 + 1; e <= A->epochs && !rc && !stopped; e++) {
    nl_rng pr;
    nl_rng_stream(&pr, seed, 0x100000000ull + (uint64_t)e);
    for (int i = 0; i < ntr; i++) perm[i] = i;
    nl_rng_shuffle(&pr, perm, ntr);
    double t0 = nl_now(), last = t0, lr_now = 0;
    long b = e == epoch0 + 1 ? batch0 : 0;
    /* the chunk of the stream the batches come from */
    const uint8_t *chunk = NULL;
    const char *const *bad = NULL; /* --skip-bad: per image of the chunk, its message or NULL */
    long chunk_n = 0, chunk_at = 0;
    if (stream) {
      uint64_t crop_seed = nl_rng_u64(&pr); /* the draw the whole-set path makes */
      nl_train_stream_begin(S->ts, perm + b * B, (nb - b) * B, crop_seed);
    } else if (rrc) {
      nl_dataset_free(&S->tr);
      S->have_tr = 0;
      if (nl_app_load_train_data(ctx, A->data, A->limit, c, A->skip_bad ? NL_SKIP_QUIET : 0,
                                 nl_rng_u64(&pr), &S->tr, err)) {
        rc = -1;
        break;
      }
      S->have_tr = 1;
      if (S->tr.n != ntr) {
        rc = nl_fail(err, NL_EINPUT, "%s: %d images this epoch, %d before", A->data, S->tr.n, ntr);
        break;
      }
      nl_dataset_normalize(&S->tr, 0, ntr, c->in_chans, c->nmean, c->mean, c->std, S->xtr);
    }
    if (b == 0) loss_sum = 0, sec_sum = 0;
    long b_start = b;
    for (; b < nb; b++) {
      if (nl_interrupted()) {
        stopped = 1;
        break;
      }
      const long step = (e - 1) * nb + b;
      int n = B; /* images of the step: B, less the bad ones left out (--skip-bad) */
      if (stream) {
        if (chunk_at + B > chunk_n) {
          if (nl_train_stream_next(S->ts, &chunk, &bad, &chunk_n, err)) {
            rc = nl_error_prefix(err, "epoch %ld, batch %ld", e, b + 1);
            break;
          }
          chunk_at = 0;
          if (chunk_n < B) {
            rc = nl_fail(err, NL_EINTERNAL, "%s: the stream ended before batch %ld", A->data, b + 1);
            break;
          }
        }
        nl_dataset view = S->tr;
        view.images = (uint8_t *)chunk;
        view.n = (int)chunk_n;
        float *dst = A->augment && !rrc ? S->xa : S->xb;
        if (!bad) {
          nl_dataset_normalize(&view, (int)chunk_at, B, c->in_chans, c->nmean, c->mean, c->std,
                               dst);
          for (int k = 0; k < B; k++) S->yb[k] = S->tr.labels[perm[b * B + k]];
        } else { /* the good images of the batch, each with its own label */
          n = 0;
          for (int k = 0; k < B; k++) {
            int idx = perm[b * B + k];
            const char *msg = bad[chunk_at + k];
            if (msg) {
              if (!S->seen_bad[idx]) {
                S->seen_bad[idx] = 1;
                S->tr_skipped++;
                nl_app_report_bad(ctx, msg);
              }
              continue;
            }
            nl_dataset_normalize(&view, (int)chunk_at + k, 1, c->in_chans, c->nmean, c->mean,
                                 c->std, dst + (size_t)n * img);
            S->yb[n++] = S->tr.labels[idx];
          }
        }
        chunk_at += B;
      }
      for (int k = 0; k < B && !stream; k++) {
        int idx = perm[b * B + k];
        memcpy((A->augment && !rrc ? S->xa : S->xb) + (size_t)k * img, S->xtr + (size_t)idx * img,
               img * sizeof(float));
        S->yb[k] = S->tr.labels[idx];
      }
      if (A->augment && !rrc) {
        nl_rng ar;
        nl_rng_stream(&ar, seed, 0x200000000ull + (uint64_t)step);
        nl_tr_augment_draw(aug, B, 2, 0.5f, &ar);
        nl_tr_augment_apply(S->xb, S->xa, aug, n, c->in_chans, c->img_size, c->img_size, 2, pad);
      }
      if (n == 0) continue; /* a batch of bad images only: no step */
      nl_rng dr;
      nl_rng_stream(&dr, seed, 0x300000000ull + (uint64_t)step);
      float mult = (float)nl_tr_lr_mult(&sch, step);
      lr_now = A->lr * mult;
      if (nl_vt_step(t, S->xb, S->yb, n, &dr, mult, err)) {
        rc = nl_error_prefix(err, "epoch %ld, batch %ld", e, b);
        break;
      }
      if (S->dump_grads) { /* a check against other trainers: one step, then stop */
        if (S->ts) nl_train_stream_begin(S->ts, NULL, 0, 0); /* nothing reads perm after this */
        free(perm);
        free(aug);
        if (dump_grads(S, n, S->dump_grads, err)) return -1;
        fprintf(ctx->out, "wrote the batch and gradients of step %ld (loss %.6f) to %s\n", step + 1,
                t->loss, S->dump_grads);
        return 0;
      }
      loss_sum += t->loss;
      double now = nl_now();
      if (ctx->tty ? now - last > 0.5 : now - last > 30 || b + 1 == nb) {
        last = now;
        double ips = (double)(b + 1 - b_start) * B / (now - t0);
        fprintf(ctx->err, "%sepoch %ld/%ld  batch %ld/%ld  loss %.4f (mean %.4f)  lr %.3g  %.1f images/s%s",
                ctx->tty ? "\r" : "", e, A->epochs, b + 1, nb, t->loss, loss_sum / (b + 1), lr_now,
                ips, ctx->tty ? "   " : "\n");
        fflush(ctx->err);
      }
    }
    if (ctx->tty) fputc('\n', ctx->err);
    sec_sum += nl_now() - t0;
    if (rc) break;
    json_t *pos;
    if (stopped) {
      pos = json_pack("{s:I, s:I, s:f, s:f, s:I}", "epoch", (json_int_t)(e - 1), "batch",
                      (json_int_t)b, "loss_sum", loss_sum, "seconds", sec_sum,
                      "batches_per_epoch", (json_int_t)nb);
      json_object_set_new(S->log, "position", pos);
      rc = save_position(t, S->log, &rd, err);
      break;
    }
    double t1, t5;
    long evn;
    if (evaluate(ctx, S, A, &t1, &t5, &evn, err)) {
      rc = -1;
      break;
    }
    log_skipped(S, A);
    double ips = sec_sum > 0 ? (double)nb * B / sec_sum : 0;
    json_array_append_new(rows, epoch_row(e, e * nb, lr_now, loss_sum / (nb ? nb : 1), t1, t5,
                                          sec_sum, ips));
    fprintf(ctx->err, "train: epoch %ld: loss %.4f, top-1 %.2f %%, top-5 %.2f %%, %.1f s\n", e,
            loss_sum / (nb ? nb : 1), 100 * t1, 100 * t5, sec_sum);
    pos = json_pack("{s:I, s:I, s:f, s:f, s:I}", "epoch", (json_int_t)e, "batch", (json_int_t)0,
                    "loss_sum", 0.0, "seconds", 0.0, "batches_per_epoch", (json_int_t)nb);
    json_object_set_new(S->log, "position", pos);
    char name[64];
    snprintf(name, sizeof name, "epoch-%03ld.safetensors", e);
    if (save_checkpoint(m, A->precision, rd_path(&rd, name), err) ||
        save_position(t, S->log, &rd, err))
      rc = -1;
    if (!rc && ctx->progress) { /* a front-end's per-epoch callback may stop the run */
      static const char *const keys[] = {"loss", "top1", "top5", "seconds", "lr"};
      const double vals[] = {loss_sum / (nb ? nb : 1), t1, t5, sec_sum, lr_now};
      nl_progress p = {"train", NULL, e, A->epochs, sec_sum, NULL, 5, keys, vals};
      if (ctx->progress(&p, ctx->progress_user) && e < A->epochs) stopped = 1;
    }
  }
  if (S->ts) nl_train_stream_begin(S->ts, NULL, 0, 0); /* nothing reads perm after this */
  free(perm);
  free(aug);
  if (rc) return -1;
  if (!json_object_get(S->log, "position")) {
    json_object_set_new(S->log, "position",
                        json_pack("{s:I, s:I, s:f, s:f, s:I}", "epoch", (json_int_t)A->epochs,
                                  "batch", (json_int_t)0, "loss_sum", 0.0, "seconds", 0.0,
                                  "batches_per_epoch", (json_int_t)nb));
    if (save_position(t, S->log, &rd, err)) return -1;
  }
  /* final table */
  if (A->json) {
    nl_json_print(ctx->out, S->log);
  } else {
    fprintf(ctx->out, "%5s %7s %10s %8s %8s %8s %9s %9s\n", "epoch", "steps", "lr", "loss",
            "top1", "top5", "seconds", "images/s");
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
      json_t *l = json_object_get(r, "loss");
      char ls[32] = "-";
      if (json_is_number(l)) snprintf(ls, sizeof ls, "%.4f", json_number_value(l));
      fprintf(ctx->out, "%5lld %7lld %10.3g %8s %7.2f%% %7.2f%% %9.1f %9.1f\n",
              (long long)json_integer_value(json_object_get(r, "epoch")),
              (long long)json_integer_value(json_object_get(r, "steps")),
              json_number_value(json_object_get(r, "lr")), ls,
              100 * json_number_value(json_object_get(r, "top1")),
              100 * json_number_value(json_object_get(r, "top5")),
              json_number_value(json_object_get(r, "seconds")),
              json_number_value(json_object_get(r, "images_per_second")));
    }
  }
  if (A->skip_bad) /* the summary of --skip-bad */
    fprintf(ctx->err,
            "train: %ld bad training image%s and %ld bad evaluation image%s skipped "
            "(--skip-bad); loss and top-1 are over the images used\n",
            S->tr_skipped, S->tr_skipped == 1 ? "" : "s", S->ev_skipped,
            S->ev_skipped == 1 ? "" : "s");
  if (stopped)
    return nl_fail(err, NL_EINTR, "stopped; the run is saved in %s: add --resume to continue",
                   rd.dir);
  return 0;
}

/* The options given on the command line, through the one parser of the
 * training settings (train/train_opts.h), which Lua's model:train uses
 * too. */
static int parse(nl_ctx *ctx, const nl_args *a, nl_train_opts *o, nl_error *err) {
  const nl_opt *ol = a->cmd->opts;
  for (int i = 0; ol[i].name; i++)
    if (a->val[i] && strcmp(ol[i].name, "model") && strcmp(ol[i].name, "set") &&
        strcmp(ol[i].name, "dump-grads") &&
        /* given, or from the session */
        nl_train_opts_set(o, ol[i].name, ol[i].type == NL_OPT_FLAG ? NULL : a->val[i], err))
      return -1;
  const char *model = nl_model_path(ctx, a); /* given, the session's, or the bundled one */
  if (nl_train_opts_set(o, "model", model, err)) return -1;
  return nl_train_opts_finish(o, err);
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_train_opts A;
  nl_train_opts_init(&A);
  if (parse(ctx, a, &A, err)) {
    nl_train_opts_free(&A);
    return -1;
  }
  nl_model_norms norms;
  if (nl_model_norms_get(ctx, a, 1, &norms, err)) {
    nl_model_norms_free(&norms);
    nl_train_opts_free(&A);
    return -1;
  }
  train_state S;
  memset(&S, 0, sizeof S);
  if (!A.threads) A.threads = ctx->threads;
  S.dump_grads = nl_arg_str(a, "dump-grads");
  int rc = train_run(ctx, &A, &norms, &S, err);
  cleanup(&S);
  nl_model_norms_free(&norms);
  nl_train_opts_free(&A);
  return rc;
}

/* old option names (normlab(1), OPTION NAMES) */
static const nl_opt_alias aliases[] = {
    {"limit", "images"}, {"eval-limit", "eval-images"}, {NULL, NULL}};

const nl_cmd nl_cmd_train = {
    .name = "train",
    .args = NULL,
    .summary = "re-align a model after its norms are replaced, or train it from scratch",
    .help =
        "Trains --model on --data (Fashion-MNIST) with AdamW: --variant affine trains only the\n"
        "norm affines w, b and DyT alphas, full trains everything. With --teacher the loss is\n"
        "(1-lambda) CE + lambda tau^2 KL(teacher || student). Evaluates top-1 / top-5 on --eval\n"
        "before training (epoch 0) and after every epoch; writes DIR/epoch-NNN.safetensors,\n"
        "DIR/last.safetensors, the state DIR/state.safetensors (parameters, optimizer, log:\n"
        "the one commit point a resume reads) and the log DIR/train.json and DIR/train.csv.\n"
        "--resume continues where the run stopped, with the run's settings: only --epochs,\n"
        "--threads, --json and --skip-bad may change. Ctrl-C saves and stops (exit 130). Same --seed,\n"
        "same run. --set replaces the model's norms before training (as replace --set);\n"
        "at the prompt it defaults to the session's expression set, as it is, on the\n"
        "session's model ('--set none': the model as loaded). The --eval data streams in\n"
        "chunks (as eval's), whatever its size. A bad image in --data or --eval stops the\n"
        "run (exit 2, the last saved epoch kept); --skip-bad leaves it out instead (named\n"
        "once on stderr, counted in the summary and in train.json \"skipped\"): a batch\n"
        "steps on its good images, top-1 is over the images used. --precision bf16 trains in\n"
        "mixed precision: the Linear layers' products (forward and both backward ones) take\n"
        "operands rounded to bfloat16 with FP32 sums; master weights, gradients, AdamW state,\n"
        "norms, attention and the loss stay FP32, evaluation runs in FP32; the precision is\n"
        "recorded in train.json (config) and in every checkpoint (train_precision).",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
    .aliases = aliases,
};
