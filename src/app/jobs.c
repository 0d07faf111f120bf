/* A search in the background of the session: 'evolve ... &' runs the
 * campaign library call on a thread while the prompt stays usable; 'jobs'
 * and 'status' show its progress, 'stop' ends it after the current
 * generation keeping the partial front. When it ends (finished or
 * stopped) the main thread loads its fronts and autosaves the session.
 *
 * One job at a time. The job owns its own copy of the mappings and never
 * touches the session; only the main thread does. Ctrl-C is the
 * foreground's: the job's thread blocks SIGINT and ignores the interrupt
 * flag. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/session.h"
#include "base/interrupt.h"
#include "base/mem.h"
#include "base/timer.h"
#include "model/maps.h"
#include "repl/repl.h"
#include "search/gp.h"

extern const nl_cmd nl_cmd_evolve;

static struct {
  int active; /* a thread was started and not yet joined */
  pthread_t th;
  atomic_int done, stop;
  pthread_mutex_t mu;
  nl_gp_progress prog; /* last progress (layer copied into layer[]) */
  char layer[256];
  int have_prog;
  nl_gp_config cfg;
  nl_maps maps;
  char *one_layer;
  const char *layers[1];
  int nlayers, seeds;
  char *outdir;
  nl_gp_summary sum;
  nl_error err;
  int rc;
  double t0;
  int saved_task; /* last layer-seed index a checkpoint saw */
} J = {.mu = PTHREAD_MUTEX_INITIALIZER};

int nl_repl_job_running(void) { return J.active; }
int nl_repl_job_ended(void) { return J.active && atomic_load(&J.done); }

static int on_progress(const nl_gp_progress *p, void *user) {
  (void)user;
  pthread_mutex_lock(&J.mu);
  J.prog = *p;
  snprintf(J.layer, sizeof J.layer, "%s", p->layer ? p->layer : "");
  J.prog.layer = J.layer;
  J.have_prog = 1;
  pthread_mutex_unlock(&J.mu);
  return atomic_load(&J.stop);
}

static void *job_main(void *arg) {
  (void)arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGWINCH);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  nl_interrupt_ignore_thread();
  nl_gp_campaign cam = {&J.cfg, &J.maps, J.nlayers ? J.layers : NULL, J.nlayers, J.seeds,
                        J.outdir, on_progress, NULL};
  nl_error_clear(&J.err);
  J.rc = nl_gp_campaign_run(&cam, &J.sum, &J.err);
  atomic_store(&J.done, 1);
  return NULL;
}

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

int nl_repl_job_start(nl_ctx *ctx, int argc, char **argv, nl_error *err) {
  if (strcmp(argv[0], "evolve") != 0)
    return nl_fail(err, NL_EINPUT, "only 'evolve' runs in the background ('%s ... &')", argv[0]);
  if (J.active)
    return nl_fail(err, NL_EINPUT, "a background evolve is running ('jobs', 'stop')");
  nl_args a;
  if (nl_args_parse(&a, &nl_cmd_evolve, argc - 1, argv + 1, ctx, err) != 0) {
    free(a.pos);
    return -1;
  }
  int rc = -1;
  const char *maps = nl_arg_need(&a, "maps", err);
  const char *out = maps ? nl_arg_need(&a, "output", err) : NULL;
  if (!out) goto done;
  if (nl_arg_given(&a, "threads")) {
    nl_fail(err, NL_EINPUT, "--threads is not for a background evolve (it shares the session's)");
    goto done;
  }
  if (config_of(&a, &J.cfg, &J.seeds, err) != 0) goto done;
  if (nl_maps_load(&J.maps, maps, err) != 0) goto done;
  const char *layer = nl_arg_str(&a, "layer");
  J.nlayers = 0;
  if (strcmp(layer, "all") != 0) {
    if (nl_maps_index(&J.maps, layer) < 0) {
      nl_fail(err, NL_EINPUT, "%s: no layer '%s'", maps, layer);
      nl_maps_free(&J.maps);
      goto done;
    }
    J.one_layer = nl_xstrdup(layer);
    J.layers[0] = J.one_layer;
    J.nlayers = 1;
  }
  J.outdir = nl_xstrdup(out);
  atomic_store(&J.done, 0);
  atomic_store(&J.stop, 0);
  J.have_prog = 0;
  J.saved_task = 0;
  J.t0 = nl_now();
  memset(&J.sum, 0, sizeof J.sum);
  if (pthread_create(&J.th, NULL, job_main, NULL) != 0) {
    nl_fail(err, NL_EINTERNAL, "cannot start a thread for the background evolve");
    nl_maps_free(&J.maps);
    free(J.outdir);
    free(J.one_layer);
    J.outdir = J.one_layer = NULL;
    goto done;
  }
  J.active = 1;
  fprintf(ctx->out,
          "[evolve] started in the background: %s, %d seed%s, results in %s ('jobs', 'stop')\n",
          J.nlayers ? layer : "all layers", J.seeds, J.seeds == 1 ? "" : "s", J.outdir);
  rc = 0;
done:
  free(a.pos);
  return rc;
}

/* One line on the job: "evolve: running, blocks.0.norm1 seed 0 gen 3/50 ..." */
int nl_repl_job_line(char *buf, size_t n) {
  if (!J.active) return 0;
  int done = atomic_load(&J.done), stopping = atomic_load(&J.stop);
  pthread_mutex_lock(&J.mu);
  if (J.have_prog)
    snprintf(buf, n,
             "evolve %s: [%d/%d] %s seed %d  gen %d/%d  best F %.5g  front %d  %.3g node-evals/s  "
             "%.0f s",
             done ? "ended" : stopping ? "stopping" : "running", J.prog.task + 1, J.prog.ntasks,
             J.prog.layer, J.prog.seed, J.prog.gen, J.prog.gens, J.prog.best_fitness,
             J.prog.front_size, J.prog.node_evals_per_s, nl_now() - J.t0);
  else
    snprintf(buf, n, "evolve %s: starting, results in %s", done ? "ended" : "running", J.outdir);
  pthread_mutex_unlock(&J.mu);
  return 1;
}

/* Join a finished job: report, load its fronts, autosave. */
static void finish(nl_ctx *ctx) {
  pthread_join(J.th, NULL);
  J.active = 0;
  int stopped = J.rc != 0 && J.err.code == NL_EINTR;
  if (J.rc != 0 && !stopped) {
    fprintf(ctx->err, "[evolve] failed: %s\n", J.err.msg);
  } else {
    double sr2 = 0;
    int nr = 0;
    for (int i = 0; i < J.sum.nlayers; i++)
      if (J.sum.layers[i].expr && isfinite(J.sum.layers[i].val_r2)) {
        sr2 += J.sum.layers[i].val_r2;
        nr++;
      }
    fprintf(ctx->err, "[evolve] %s after %.1f s: %d layer%s with a front, mean val R2 %.5f; %s\n",
            stopped ? "stopped" : "finished", nl_now() - J.t0, nr, nr == 1 ? "" : "s",
            nr ? sr2 / nr : NAN, J.outdir);
    nl_repl_fronts_arrived(ctx, J.outdir);
  }
  nl_gp_summary_free(&J.sum);
  nl_maps_free(&J.maps);
  free(J.outdir);
  free(J.one_layer);
  J.outdir = J.one_layer = NULL;
}

/* While the job runs: when it has moved on to another layer-seed (one
 * search finished), load what is on disk and save the session quietly,
 * so a crash loses no finished search. */
static void checkpoint(nl_ctx *ctx) {
  nl_session *s = ctx->session;
  pthread_mutex_lock(&J.mu);
  int task = J.have_prog ? J.prog.task : 0;
  pthread_mutex_unlock(&J.mu);
  if (task <= J.saved_task || !s || !s->dir) return;
  J.saved_task = task;
  nl_error err;
  nl_error_clear(&err);
  char *dir = nl_xstrdup(J.outdir), *sd = nl_xstrdup(s->dir);
  if (nl_session_load(s, "fronts", dir, &err) == 0 && s->nfronts > 0)
    nl_session_save(s, sd, &err); /* quietly: the end of the job reports */
  free(dir);
  free(sd);
}

int nl_repl_job_poll(nl_ctx *ctx) {
  if (!J.active) return 0;
  if (!atomic_load(&J.done)) {
    checkpoint(ctx);
    return 0;
  }
  finish(ctx);
  return 1;
}

void nl_repl_job_end(nl_ctx *ctx, int stop) {
  if (!J.active) return;
  if (stop) atomic_store(&J.stop, 1);
  finish(ctx);
}

/* ---- commands ---- */

static const nl_opt no_opts[] = {{0}};

static int run_jobs(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  (void)a;
  (void)err;
  nl_repl_job_poll(ctx);
  char line[600];
  if (nl_repl_job_line(line, sizeof line))
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
  if (!J.active) return nl_fail(err, NL_EINPUT, "no background job to stop");
  if (!atomic_load(&J.done)) fprintf(ctx->err, "[evolve] stopping after the current generation\n");
  fflush(ctx->err);
  nl_repl_job_end(ctx, 1);
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

const nl_cmd *const nl_repl_job_commands[] = {&cmd_jobs, &cmd_stop, NULL};
