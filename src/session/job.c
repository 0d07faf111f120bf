/* The background search: a GP campaign on a thread (see job.h). */
#define _POSIX_C_SOURCE 200809L
#include "session/job.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/interrupt.h"
#include "base/mem.h"
#include "base/timer.h"
#include "model/maps.h"
#include "search/sequential.h"

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
  int nlayers, seeds, recompute;
  char *outdir;
  nl_gp_source src;   /* with a model: where the mappings come from */
  char *model, *data; /* owned copies src points to */
  nl_gp_summary sum;
  nl_exprset init;     /* --init: the initial population's expressions */
  char *init_path;
  nl_exprset queue;    /* injected expressions not yet taken (under mu) */
  nl_error err;
  int rc;
  double t0, t1; /* started; ended (set before done) */
} J = {.mu = PTHREAD_MUTEX_INITIALIZER};

int nl_job_running(void) { return J.active; }
int nl_job_ended(void) { return J.active && atomic_load(&J.done); }
void nl_job_stop(void) { atomic_store(&J.stop, 1); }
const char *nl_job_outdir(void) { return J.active ? J.outdir : NULL; }

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

/* The campaign's source of injected expressions: the queued entry of
 * the layer being searched, if any (taken once). */
static int take_inject(const char *layer, nl_prog *out, void *user) {
  (void)user;
  int got = 0;
  pthread_mutex_lock(&J.mu);
  const nl_exprset_entry *e = nl_exprset_find(&J.queue, layer);
  if (e) {
    nl_prog_copy(out, &e->prog);
    nl_exprset_remove(&J.queue, layer);
    got = 1;
  }
  pthread_mutex_unlock(&J.mu);
  return got;
}

int nl_job_inject(const char *layer, const nl_prog *p, nl_error *err) {
  if (!J.active || atomic_load(&J.done))
    return nl_fail(err, NL_EINPUT, "no background evolve is running ('evolve ... &' starts one)");
  /* with --model the layers are the model's, known to the search only */
  int searched = J.nlayers ? strcmp(J.one_layer, layer) == 0
                : J.model ? 1 : nl_maps_index(&J.maps, layer) >= 0;
  if (!searched)
    return nl_fail(err, NL_EINPUT, "the background evolve does not search layer '%s'", layer);
  /* a layer whose searches are over would never take it */
  pthread_mutex_lock(&J.mu);
  int over = 0;
  if (J.have_prog && !J.nlayers && !J.model && J.seeds > 0)
    over = nl_maps_index(&J.maps, layer) < J.prog.task / J.seeds;
  char now[256];
  snprintf(now, sizeof now, "%s", J.layer);
  pthread_mutex_unlock(&J.mu);
  if (over)
    return nl_fail(err, NL_EINPUT,
                   "the background evolve has finished layer '%s' (it is on %s); seed a new run "
                   "with --init instead",
                   layer, now);
  if (p->len > J.cfg.max_nodes)
    return nl_fail(err, NL_EINPUT,
                   "%s's expression has %d nodes, more than the search's --max-nodes %d", layer,
                   p->len, J.cfg.max_nodes);
  pthread_mutex_lock(&J.mu);
  nl_exprset_set(&J.queue, layer, p, NULL);
  pthread_mutex_unlock(&J.mu);
  return 0;
}

static void *job_main(void *arg) {
  (void)arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGWINCH);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  nl_interrupt_ignore_thread();
  nl_gp_campaign cam = {.cfg = &J.cfg, .maps = &J.maps, .layers = J.nlayers ? J.layers : NULL,
                        .nlayers = J.nlayers, .seeds = J.seeds, .outdir = J.outdir,
                        .progress = on_progress, .recompute = J.recompute,
                        .init = J.init_path ? &J.init : NULL, .init_path = J.init_path,
                        .inject = take_inject};
  nl_error_clear(&J.err);
  J.rc = J.model ? nl_gp_model_campaign_run(&cam, &J.src, &J.sum, &J.err)
                 : nl_gp_campaign_run(&cam, &J.sum, &J.err);
  J.t1 = nl_now(); /* the clock stops here */
  atomic_store(&J.done, 1);
  return NULL;
}

int nl_job_start(const nl_gp_campaign_opts *o, nl_error *err) {
  if (J.active)
    return nl_fail(err, NL_EINPUT, "a background evolve is running ('jobs', 'stop')");
  J.cfg = o->cfg;
  J.seeds = o->seeds;
  J.recompute = o->recompute;
  nl_exprset_init(&J.init);
  nl_exprset_init(&J.queue);
  J.init_path = NULL;
  if (o->init) {
    if (nl_exprset_load(o->init, &J.init, err) != 0) return -1;
    J.init_path = nl_xstrdup(o->init);
  }
  nl_maps_init(&J.maps);
  J.model = J.data = NULL;
  if (o->model) {
    nl_gp_source_from_opts(&J.src, o);
    J.src.model = J.model = nl_xstrdup(o->model);
    J.src.data = J.data = nl_xstrdup(J.src.data);
  } else if (nl_maps_load(&J.maps, o->maps, err) != 0) {
    nl_exprset_free(&J.init);
    free(J.init_path);
    J.init_path = NULL;
    return -1;
  }
  J.nlayers = 0;
  if (o->layer && !o->model) {
    if (nl_gp_campaign_check_layer(&J.maps, o->layer, err) != 0) {
      nl_maps_free(&J.maps);
      nl_exprset_free(&J.init);
      free(J.init_path);
      J.init_path = NULL;
      return -1;
    }
    J.one_layer = nl_xstrdup(o->layer);
    J.layers[0] = J.one_layer;
    J.nlayers = 1;
  } else if (o->layer) { /* checked against the model's slots when the job starts */
    J.one_layer = nl_xstrdup(o->layer);
    J.layers[0] = J.one_layer;
    J.nlayers = 1;
  }
  J.outdir = nl_xstrdup(o->output);
  atomic_store(&J.done, 0);
  atomic_store(&J.stop, 0);
  J.have_prog = 0;
  J.t0 = nl_now();
  memset(&J.sum, 0, sizeof J.sum);
  if (pthread_create(&J.th, NULL, job_main, NULL) != 0) {
    nl_fail(err, NL_EINTERNAL, "cannot start a thread for the background evolve");
    nl_maps_free(&J.maps);
    nl_exprset_free(&J.init);
    free(J.init_path);
    J.init_path = NULL;
    free(J.outdir);
    free(J.one_layer);
    free(J.model);
    free(J.data);
    J.outdir = J.one_layer = J.model = J.data = NULL;
    return -1;
  }
  J.active = 1;
  return 0;
}

/* "evolve running: [1/4] blocks.0.norm1 seed 0  gen 3/50 ..." */
int nl_job_line(char *buf, size_t n) {
  if (!J.active) return 0;
  int done = atomic_load(&J.done), stopping = atomic_load(&J.stop);
  double secs = (done ? J.t1 : nl_now()) - J.t0;
  pthread_mutex_lock(&J.mu);
  if (J.have_prog)
    snprintf(buf, n,
             "evolve %s: [%d/%d] %s seed %d  gen %d/%d  best F %.5g  front %d  %.3g node-evals/s  "
             "%.0f s",
             done ? "ended" : stopping ? "stopping" : "running", J.prog.task + 1, J.prog.ntasks,
             J.prog.layer, J.prog.seed, J.prog.gen, J.prog.gens, J.prog.best_fitness,
             J.prog.front_size, J.prog.node_evals_per_s, secs);
  else
    snprintf(buf, n, "evolve %s: starting, results in %s", done ? "ended" : "running", J.outdir);
  pthread_mutex_unlock(&J.mu);
  return 1;
}

int nl_job_task(void) {
  pthread_mutex_lock(&J.mu);
  int task = J.have_prog ? J.prog.task : 0;
  pthread_mutex_unlock(&J.mu);
  return task;
}

int nl_job_join(nl_job_result *r) {
  memset(r, 0, sizeof *r);
  if (!J.active) return -1;
  pthread_join(J.th, NULL);
  J.active = 0;
  r->rc = J.rc;
  r->err = J.err;
  r->stopped = J.rc != 0 && J.err.code == NL_EINTR;
  r->seconds = J.t1 - J.t0;
  double sr2 = 0;
  for (int i = 0; i < J.sum.nlayers; i++)
    if (J.sum.layers[i].expr && isfinite(J.sum.layers[i].val_r2)) {
      sr2 += J.sum.layers[i].val_r2;
      r->nfronts++;
    }
  r->mean_val_r2 = r->nfronts ? sr2 / r->nfronts : NAN;
  r->outdir = J.outdir;
  nl_gp_summary_free(&J.sum);
  nl_maps_free(&J.maps);
  nl_exprset_free(&J.init);
  free(J.init_path);
  J.init_path = NULL;
  pthread_mutex_lock(&J.mu);
  nl_exprset_free(&J.queue);
  pthread_mutex_unlock(&J.mu);
  free(J.one_layer);
  free(J.model);
  free(J.data);
  J.outdir = J.one_layer = J.model = J.data = NULL;
  return 0;
}
