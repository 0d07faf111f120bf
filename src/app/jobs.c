/* The background search at the prompt: 'evolve ... &' starts the
 * campaign on a thread (session/job.h) while the prompt stays usable;
 * 'jobs' and 'status' show its progress, 'stop' ends it after the current
 * generation keeping the partial front. When it ends (finished or
 * stopped) its fronts are loaded into the session and the session is
 * autosaved. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/wb_local.h"
#include "session/job.h"
#include "session/session.h"
#include "base/mem.h"
#include "search/gp.h"

extern const nl_cmd nl_cmd_evolve;

static int g_saved_task; /* last layer-seed index a checkpoint saw */

static int get_int(const nl_args *a, const char *name, long lo, long hi, int *out,
                   nl_error *err) {
  long v;
  if (nl_arg_int_range(a, name, lo, hi, &v, err) != 0) return -1;
  *out = (int)v;
  return 0;
}

/* The search settings of an 'evolve' command line, as 'evolve' reads them. */
static int config_of(const nl_args *a, nl_gp_config *c, int *seeds, nl_error *err) {
  nl_gp_config_default(c);
  int seed;
  if (get_int(a, "seeds", 1, 10000, seeds, err) || get_int(a, "seed", 0, 2147483647L, &seed, err) ||
      get_int(a, "pop", 4, 1000000, &c->pop, err) ||
      get_int(a, "gens", 0, 1000000, &c->gens, err) ||
      get_int(a, "max-nodes", 1, 1000, &c->max_nodes, err) ||
      get_int(a, "init-depth", 1, 30, &c->init_depth, err) ||
      get_int(a, "tournament", 1, c->pop, &c->tournament, err) ||
      get_int(a, "const-steps", 0, 100000, &c->const_steps, err) ||
      get_int(a, "const-top", 0, 1000000, &c->const_top, err) ||
      get_int(a, "const-points", 0, 1000000000, &c->const_points, err))
    return -1;
  c->seed = (uint64_t)seed;
  c->penalty = nl_arg_num(a, "penalty");
  c->const_lr = nl_arg_num(a, "const-lr");
  c->complexity = strcmp(nl_arg_str(a, "complexity"), "flops") == 0 ? NL_GP_FLOPS : NL_GP_NODES;
  c->select = strcmp(nl_arg_str(a, "select"), "knee") == 0 ? NL_GP_KNEE : NL_GP_MINVAL;
  return nl_gp_config_check(c, err);
}

int nl_wb_job_start(nl_ctx *ctx, int argc, char **argv, nl_error *err) {
  if (strcmp(argv[0], "evolve") != 0)
    return nl_fail(err, NL_EINPUT, "only 'evolve' runs in the background ('%s ... &')", argv[0]);
  if (nl_job_running())
    return nl_fail(err, NL_EINPUT, "a background evolve is running ('jobs', 'stop')");
  nl_args a;
  if (nl_args_parse(&a, &nl_cmd_evolve, argc - 1, argv + 1, ctx, err) != 0) {
    free(a.pos);
    return -1;
  }
  int rc = -1, seeds;
  nl_gp_config cfg;
  const char *maps = nl_arg_need(&a, "maps", err);
  const char *out = maps ? nl_arg_need(&a, "output", err) : NULL;
  if (!out) goto done;
  if (nl_arg_given(&a, "threads")) {
    nl_fail(err, NL_EINPUT, "--threads is not for a background evolve (it shares the session's)");
    goto done;
  }
  if (config_of(&a, &cfg, &seeds, err) != 0) goto done;
  const char *layer = nl_arg_str(&a, "layer");
  int all = strcmp(layer, "all") == 0;
  if (nl_job_start(&cfg, seeds, maps, all ? NULL : layer, out, err) != 0) goto done;
  g_saved_task = 0;
  fprintf(ctx->out,
          "[evolve] started in the background: %s, %d seed%s, results in %s ('jobs', 'stop')\n",
          all ? "all layers" : layer, seeds, seeds == 1 ? "" : "s", out);
  rc = 0;
done:
  free(a.pos);
  return rc;
}

/* Join a finished job: report, load its fronts, autosave. */
static void finish(nl_ctx *ctx) {
  nl_job_result r;
  if (nl_job_join(&r) != 0) return;
  if (r.rc != 0 && !r.stopped) {
    fprintf(ctx->err, "[evolve] failed: %s\n", r.err.msg);
  } else {
    fprintf(ctx->err, "[evolve] %s after %.1f s: %d layer%s with a front, mean val R2 %.5f; %s\n",
            r.stopped ? "stopped" : "finished", r.seconds, r.nfronts, r.nfronts == 1 ? "" : "s",
            r.mean_val_r2, r.outdir);
    nl_wb_fronts_arrived(ctx, r.outdir);
  }
  free(r.outdir);
}

/* While the job runs: when it has moved on to another layer-seed (one
 * search finished), load what is on disk and save the session quietly,
 * so a crash loses no finished search. */
static void checkpoint(nl_ctx *ctx) {
  nl_session *s = ctx->session;
  int task = nl_job_task();
  if (task <= g_saved_task || !s || !s->dir) return;
  g_saved_task = task;
  nl_error err;
  nl_error_clear(&err);
  char *dir = nl_xstrdup(nl_job_outdir()), *sd = nl_xstrdup(s->dir);
  if (nl_session_load(s, "fronts", dir, &err) == 0 && s->nfronts > 0)
    nl_session_save(s, sd, &err); /* quietly: the end of the job reports */
  free(dir);
  free(sd);
}

int nl_wb_job_poll(nl_ctx *ctx) {
  if (!nl_job_running()) return 0;
  if (!nl_job_ended()) {
    checkpoint(ctx);
    return 0;
  }
  finish(ctx);
  return 1;
}

void nl_wb_job_end(nl_ctx *ctx, int stop) {
  if (!nl_job_running()) return;
  if (stop) nl_job_stop();
  finish(ctx);
}

/* ---- commands ---- */

static const nl_opt no_opts[] = {{0}};

static int run_jobs(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)a;
  (void)err;
  nl_wb_job_poll(ctx);
  char line[600];
  if (nl_job_line(line, sizeof line))
    fprintf(ctx->out, "%s\n", line);
  else
    fprintf(ctx->out, "no background job\n");
  return 0;
}

static const nl_cmd cmd_jobs = {
    .name = "jobs",
    .summary = "show the background search's progress",
    .help = "Start one with a trailing '&': evolve --output DIR ... &. The line shows the\n"
            "layer-seed, generation, best training fitness, front size, node-evals/s and\n"
            "the time since it started; 'status' and the dashboard show it too.",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run_jobs,
};

static int run_stop(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)a;
  if (!nl_job_running()) return nl_fail(err, NL_EINPUT, "no background job to stop");
  if (!nl_job_ended()) fprintf(ctx->err, "[evolve] stopping after the current generation\n");
  fflush(ctx->err);
  nl_wb_job_end(ctx, 1);
  return 0;
}

static const nl_cmd cmd_stop = {
    .name = "stop",
    .summary = "stop the background search, keeping its partial front",
    .help = "Waits for the current generation to end. Finished layer-seeds and the\n"
            "partial front of the running one stay in the output directory (rerunning the\n"
            "same evolve resumes); the fronts are loaded into the session and the session\n"
            "is autosaved when it has a directory.",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run_stop,
};

const nl_cmd *const nl_wb_job_commands[] = {&cmd_jobs, &cmd_stop, NULL};
