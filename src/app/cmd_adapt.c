/* normlab adapt: the whole adaptation in one command (adapt/adapt.h):
 * search, replace, calibrate, re-align, top-1 after each stage,
 * report.json; reruns resume. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapt/adapt.h"
#include "app/adapt_cmd.h"
#include "app/cmd.h"
#include "app/model_path.h"
#include "base/json.h"

extern const nl_cmd nl_cmd_train;

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL,
     "model to adapt (default: the bundled vit_small_p7_fmnist)", NULL,
     NL_OPTF_PATH | NL_OPTF_SESSION},
    {"output", NL_OPT_STR, "DIR", NULL,
     "result directory (adapted.safetensors, chosen.exprs, report.json)", NULL,
     NL_OPTF_REQUIRED | NL_OPTF_PATH},
    {"budget", NL_OPT_STR, "ln|F", NULL,
     "per layer the best fit within F FLOPs per element (ln: LayerNorm's 5 + 2/d): the "
     "search's --select budget=...", NULL, 0},
    {"sequential", NL_OPT_FLAG, NULL, NULL,
     "search layer k on the mapping recorded with layers < k replaced", NULL, 0},
    {"calibrate", NL_OPT_INT, "N", "0",
     "calibrate on the first N training images (0: no calibration)", NULL, 0},
    {"calibrate-what", NL_OPT_CHOICE, NULL, "both", "what calibration tunes",
     "consts|affine|both", 0},
    {"calibrate-epochs", NL_OPT_INT, "E", "10", "calibration passes over its images", NULL, 0},
    {"realign", NL_OPT_CHOICE, NULL, NULL,
     "re-align: A affine, F full, D full distilled from --model (none: no re-alignment)",
     "A|F|D", 0},
    {"epochs", NL_OPT_INT, "E", "1", "re-alignment epochs", NULL, 0},
    {"train-images", NL_OPT_INT, "N", "0", "re-alignment training images (0: all)", NULL, 0},
    {"data", NL_OPT_STR, "SPEC", "fmnist:train", "images the mappings are recorded from", NULL, 0},
    {"images", NL_OPT_INT, "N", "64", "images the mappings are recorded from", NULL, 0},
    {"points", NL_OPT_INT, "N", "20000", "points sampled per layer", NULL, 0},
    {"seeds", NL_OPT_INT, "S", "1", "independent searches per layer", NULL, 0},
    {"pop", NL_OPT_INT, "N", "200", "population size", NULL, 0},
    {"gens", NL_OPT_INT, "N", "20", "generations", NULL, 0},
    {"select", NL_OPT_STR, "HOW", NULL, "the search's selection (see 'normlab help evolve')", NULL,
     0},
    {"eval-images", NL_OPT_INT, "N", "0", "test images of each top-1 (0: all 10,000)", NULL, 0},
    {"threads", NL_OPT_INT, "N", NULL, "worker threads (default: normlab --threads)", NULL,
     NL_OPTF_SESSION},
    {"json", NL_OPT_FLAG, NULL, NULL, "print report.json", NULL, 0},
    {0},
};

int nl_app_realign(void *user, const char *model, const char *teacher, const char *variant,
                   int epochs, long images, int eval_images, int threads, const char *outdir, int resume,
                   nl_error *err) {
  nl_ctx *ctx = user, c2 = *ctx;
  c2.out = ctx->err; /* the training log is progress here */
  char ep[32], im[32], th[32], ev[32];
  snprintf(ev, sizeof ev, "%d", eval_images);
  snprintf(ep, sizeof ep, "%d", epochs);
  snprintf(im, sizeof im, "%ld", images);
  snprintf(th, sizeof th, "%d", threads);
  char *argv[20];
  int n = 0;
  argv[n++] = "--model", argv[n++] = (char *)model;
  argv[n++] = "--variant", argv[n++] = (char *)variant;
  argv[n++] = "--epochs", argv[n++] = ep;
  argv[n++] = "--images", argv[n++] = im;
  argv[n++] = "--output", argv[n++] = (char *)outdir;
  argv[n++] = "--set", argv[n++] = "none";
  argv[n++] = "--eval-images", argv[n++] = ev;
  if (strcmp(variant, "D") == 0) argv[n++] = "--teacher", argv[n++] = (char *)teacher;
  if (threads > 0) argv[n++] = "--threads", argv[n++] = th;
  if (resume) argv[n++] = "--resume";
  nl_args a;
  int rc = nl_args_parse(&a, &nl_cmd_train, n, argv, &c2, err);
  if (rc == 0) rc = nl_cmd_train.run(&c2, &a, err);
  free(a.pos);
  if (rc != 0) nl_error_prefix(err, "re-alignment");
  return rc;
}

static void note(void *user, const char *line) {
  nl_ctx *ctx = user;
  fprintf(ctx->err, "adapt: %s\n", line);
  fflush(ctx->err);
}

typedef struct live {
  nl_ctx *ctx;
  int shown;
} live;

static int progress(const nl_gp_progress *p, void *u) {
  live *l = u;
  fprintf(l->ctx->err, "\r[%d/%d] %s seed %d  gen %d/%d  best F %.5g  %.1fs   ", p->task + 1,
          p->ntasks, p->layer, p->seed, p->gen, p->gens, p->best_fitness, p->elapsed);
  if (p->gen == p->gens && p->task + 1 == p->ntasks) fputc('\n', l->ctx->err);
  fflush(l->ctx->err);
  return 0;
}

static double num(const json_t *o, const char *k) {
  const json_t *v = json_object_get(o, k);
  return json_is_number(v) ? json_number_value(v) : NAN;
}

static void print_summary(nl_ctx *ctx, const json_t *rep, const char *dir) {
  const json_t *ls = json_object_get(rep, "layers");
  int w = 5;
  for (size_t i = 0; i < json_array_size(ls); i++) {
    int l = (int)strlen(json_string_value(json_object_get(json_array_get(ls, i), "name")));
    if (l > w) w = l;
  }
  fprintf(ctx->out, "%-*s %9s %11s  %s\n", w, "layer", "val R²", "FLOPs/elem", "expression");
  for (size_t i = 0; i < json_array_size(ls); i++) {
    const json_t *L = json_array_get(ls, i);
    fprintf(ctx->out, "%-*s %8.4f %11.0f  %s\n", w,
            json_string_value(json_object_get(L, "name")), num(L, "val_r2"),
            num(L, "flops_per_element"), json_string_value(json_object_get(L, "expression")));
  }
  fprintf(ctx->out, "mean val R² %.4f; FLOPs per element: mean %.2f, LayerNorm %.2f\n",
          num(rep, "mean_val_r2"), num(rep, "mean_flops_per_element"),
          num(rep, "ln_flops_per_element"));
  const json_t *sec = json_object_get(rep, "seconds");
  const char *names[] = {"LayerNorm", "replaced", "calibrated", "re-aligned"};
  const char *keys[] = {"top1_ln", "top1_replaced", "top1_calibrated", "top1_realigned"};
  fprintf(ctx->out, "top-1 on %lld test images:",
          (long long)json_integer_value(json_object_get(rep, "eval_images")));
  for (int i = 0; i < 4; i++)
    if (json_is_number(json_object_get(rep, keys[i])))
      fprintf(ctx->out, "%s %s %.2f %%", i ? "," : "", names[i], num(rep, keys[i]));
  fprintf(ctx->out, "\nseconds:");
  const char *st[] = {"evolve", "calibrate", "realign", "eval", "total"};
  for (int i = 0, n = 0; i < 5; i++)
    if (json_is_number(json_object_get(sec, st[i])))
      fprintf(ctx->out, "%s %s %.1f", n++ ? "," : "", st[i], num(sec, st[i]));
  fputc('\n', ctx->out);
  fprintf(ctx->out, "wrote %s/adapted.safetensors, %s/chosen.exprs, %s/report.json\n", dir, dir,
          dir);
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  nl_adapt_opts o;
  nl_adapt_opts_init(&o);
  long calibrate, cepochs, epochs, timages, images, points, seeds, pop, gens, evim, threads = 0;
  int rc = 0;
  if (nl_arg_int_range(a, "calibrate", 0, 60000, &calibrate, err) ||
      nl_arg_int_range(a, "calibrate-epochs", 1, 100000, &cepochs, err) ||
      nl_arg_int_range(a, "epochs", 1, 100000, &epochs, err) ||
      nl_arg_int_range(a, "train-images", 0, 60000, &timages, err) ||
      nl_arg_int_range(a, "images", 1, 60000, &images, err) ||
      nl_arg_int_range(a, "points", 0, 4294967295L, &points, err) ||
      nl_arg_int_range(a, "seeds", 1, 10000, &seeds, err) ||
      nl_arg_int_range(a, "pop", 4, 1000000, &pop, err) ||
      nl_arg_int_range(a, "gens", 0, 1000000, &gens, err) ||
      nl_arg_int_range(a, "eval-images", 0, 10000, &evim, err) ||
      (nl_arg_given(a, "threads") && nl_arg_int_range(a, "threads", 1, 256, &threads, err)))
    rc = -1;
  o.model = nl_model_path(ctx, a);
  o.output = nl_arg_str(a, "output");
  o.budget = nl_arg_str(a, "budget");
  o.gp.sequential = nl_arg_flag(a, "sequential");
  o.calibrate = (int)calibrate;
  o.calib_what = nl_arg_str(a, "calibrate-what");
  o.calib_epochs = (int)cepochs;
  o.realign = nl_arg_str(a, "realign");
  o.epochs = (int)epochs;
  o.train_images = timages;
  o.eval_images = (int)evim;
  o.threads = threads ? (int)threads : ctx->threads;
  if (rc == 0 && nl_arg_str(a, "select") && nl_arg_str(a, "budget"))
    rc = nl_fail(err, NL_EINPUT, "give --budget or --select, not both");
  if (rc == 0 && nl_arg_str(a, "select"))
    rc = nl_gp_campaign_opts_set(&o.gp, "select", nl_arg_str(a, "select"), err);
  if (rc == 0) rc = nl_gp_campaign_opts_set(&o.gp, "data", nl_arg_str(a, "data"), err);
  o.gp.images = (int)images;
  o.gp.points = points;
  o.gp.seeds = (int)seeds;
  o.gp.cfg.pop = (int)pop;
  o.gp.cfg.gens = (int)gens;
  o.realign_fn = nl_app_realign;
  o.realign_user = ctx;
  o.note = note;
  o.note_user = ctx;
  live lv = {ctx, 0};
  if (ctx->tty) {
    o.progress = progress;
    o.progress_user = &lv;
  }
  json_t *rep = NULL;
  if (rc == 0) rc = nl_adapt_check(&o, err);
  if (rc == 0) rc = nl_adapt_run(&o, &rep, err);
  if (rc == 0) {
    if (nl_arg_flag(a, "json")) nl_json_print(ctx->out, rep);
    else print_summary(ctx, rep, o.output);
  }
  json_decref(rep);
  nl_adapt_opts_free(&o);
  return rc;
}

const nl_cmd nl_cmd_adapt = {
    .name = "adapt",
    .args = NULL,
    .summary = "the whole adaptation: search, replace, calibrate, re-align, top-1 per stage",
    .help =
        "Runs extract -> evolve -> select (simplified) -> replace -> calibrate -> re-align on\n"
        "--model, with top-1 on the Fashion-MNIST test set (--eval-images, 0: all 10,000)\n"
        "after each stage. The mappings are recorded from --images images of --data\n"
        "(--sequential: layer by layer, each with the layers before it replaced, as\n"
        "'evolve --sequential'); --budget maps to the search's '--select budget=...';\n"
        "--calibrate N tunes the norms' numbers to the original model's outputs on N\n"
        "training images (as 'normlab calibrate'); --realign A|F|D trains --epochs epochs\n"
        "(as 'normlab train', D distilled from --model). DIR receives adapted.safetensors\n"
        "(the last stage's model), chosen.exprs, report.json, and the stages' outputs\n"
        "(evolve/, replaced.safetensors, calibrated.safetensors, realign/); DIR/adapt.json\n"
        "records each stage's settings, so a rerun skips the stages done with the same\n"
        "settings and resumes an interrupted one (Ctrl-C stops at a safe point).\n"
        "JSON (report.json): {\"top1_ln\", \"top1_replaced\", \"top1_calibrated\",\n"
        "\"top1_realigned\" (percent; null: not run), \"eval_images\", \"mean_val_r2\",\n"
        "\"mean_flops_per_element\", \"ln_flops_per_element\", \"layers\": [{\"name\",\n"
        "\"expression\", \"val_r2\", \"flops_per_element\", \"bytes_per_token\"}], \"seconds\":\n"
        "{\"evolve\", \"replace\", \"calibrate\", \"realign\", \"eval\", \"total\"}, \"settings\"}.",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
