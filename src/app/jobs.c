/* The background search at the prompt: 'evolve ... &' starts the
 * campaign on a thread (session/job.h) while the prompt stays usable;
 * 'jobs' and 'status' show its progress, 'stop' ends it after the current
 * generation keeping the partial front. When it ends (finished or
 * stopped) its fronts are loaded into the session and recorded in its
 * directory. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/wb_local.h"
#include "session/job.h"
#include "session/session.h"
#include "base/mem.h"
#include "search/campaign_opts.h"
#include "search/gp.h"

extern const nl_cmd nl_cmd_evolve;

static int g_saved_task; /* last layer-seed index a checkpoint saw */

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
  nl_gp_campaign_opts o;
  nl_gp_campaign_opts_init(&o);
  int rc = nl_evolve_opts_parse(ctx, &a, &o, err);
  if (rc == 0) rc = nl_job_start(&o, err);
  if (rc == 0) {
    g_saved_task = 0;
    fprintf(ctx->out,
            "[evolve] started in the background: %s, %d seed%s, results in %s ('jobs', 'stop')\n",
            o.layer ? o.layer : "all layers", o.seeds, o.seeds == 1 ? "" : "s", o.output);
  }
  nl_gp_campaign_opts_free(&o);
  free(a.pos);
  return rc;
}

/* Join a finished job: report, load its fronts, record them. */
static void finish(nl_ctx *ctx) {
  nl_job_result r;
  if (nl_job_join(&r) != 0) return;
  if (r.rc != 0 && !r.stopped) {
    fprintf(ctx->err, "[evolve] failed: %s\n", r.err.msg);
  } else {
    fprintf(ctx->err, "[evolve] %s after %.1f s: %d layer%s with a front, mean val R² %.5f; %s\n",
            r.stopped ? "stopped" : "finished", r.seconds, r.nfronts, r.nfronts == 1 ? "" : "s",
            r.mean_val_r2, r.outdir);
    nl_wb_fronts_arrived(ctx, r.outdir);
  }
  free(r.outdir);
}

/* While the job runs: when it has moved on to another layer-seed (one
 * search finished), load what is on disk (views show it at once) and,
 * in a session with a directory, record the fronts there quietly, so a
 * crash loses no finished search. */
static void checkpoint(nl_ctx *ctx) {
  nl_session *s = ctx->session;
  int task = nl_job_task();
  if (task <= g_saved_task || !s) return;
  g_saved_task = task;
  nl_error err;
  nl_error_clear(&err);
  char *dir = nl_xstrdup(nl_job_outdir());
  if (nl_session_load(s, "fronts", dir, &err) == 0 && s->nfronts > 0 && s->dir)
    nl_session_record_fronts(s, &err); /* quietly: the end of the job reports */
  free(dir);
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
            "same evolve resumes); the fronts are loaded into the session and recorded in\n"
            "its directory when it has one.",
    .opts = no_opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run_stop,
};

static int run_inject(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *layer = a->pos[0];
  const nl_exprset_entry *e = ctx->session ? nl_session_find(ctx->session, layer) : NULL;
  if (!e)
    return nl_fail(err, NL_EINPUT,
                   "layer '%s' has no expression in the session's set ('set %s = EXPR' first)",
                   layer, layer);
  if (nl_job_inject(layer, &e->prog, err) != 0) return -1;
  fprintf(ctx->out, "[evolve] %s = %s sent; the search of %s takes it at its next generation\n",
          layer, e->text ? e->text : "", layer);
  return 0;
}

static const nl_cmd cmd_inject = {
    .name = "inject",
    .args = "LAYER",
    .summary = "send a layer's expression into the running background search",
    .help = "The session set's current expression for LAYER joins the population of the\n"
            "background search ('evolve ... &') of that layer at its next generation (when\n"
            "the layer's search has not started yet, at its first), replacing its worst\n"
            "member; the fronts mark it, and its descendants with the same tree, with the\n"
            "origin 'injected'. It must fit the search's --max-nodes.",
    .opts = no_opts,
    .min_pos = 1,
    .max_pos = 1,
    .run = run_inject,
};

const nl_cmd *const nl_wb_job_commands[] = {&cmd_jobs, &cmd_stop, &cmd_inject, NULL};
