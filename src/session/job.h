/* A search in the background of a session: one GP campaign (search/gp.h)
 * on a thread while the front-end stays usable. One job at a time.
 *
 * The job owns its own copy of the mappings and never touches the session
 * (only the caller's thread does); it reports its progress into a record
 * that nl_job_line reads under a lock. Ctrl-C is the foreground's: the
 * job's thread blocks SIGINT and SIGWINCH and ignores the interrupt flag,
 * and is stopped by nl_job_stop (after the current generation, keeping the
 * partial front). It runs on the worker count of its settings
 * (o->cfg.threads), whatever the foreground uses. */
#ifndef NL_SESSION_JOB_H
#define NL_SESSION_JOB_H

#include <stddef.h>

#include "base/error.h"
#include "search/campaign_opts.h"
#include "search/gp.h"

/* Start the search of the settings `o` (finished: nl_gp_campaign_opts_finish;
 * o->maps or o->model, and o->output given): the mappings file o->maps, or
 * the mappings recorded from o->model (search/sequential.h; o->sequential),
 * o->layer (NULL: every layer), results in o->output. NL_EINPUT when a job is running, the
 * mappings cannot be read or lack the layer. */
int nl_job_start(const nl_gp_campaign_opts *o, nl_error *err);
/* 1 from nl_job_start until nl_job_join. */
int nl_job_running(void);
/* Running, and its thread has finished (nl_job_join will not wait). */
int nl_job_ended(void);
/* Ask the search to stop after its current generation. */
void nl_job_stop(void);
/* One line on the job ("evolve running: [1/4] blocks.0.norm1 seed 0 gen
 * 3/50 ... 12 s") into buf; 0 when there is none. The seconds run from
 * its start to now, or to its end once it has ended. */
int nl_job_line(char *buf, size_t n);
/* The index of the layer-seed the search is on (0 before its first
 * report): it grows each time one search of the campaign has finished. */
int nl_job_task(void);
/* Send an expression into the running search of `layer` (the campaign
 * adds it to that layer's population at its next generation; one queued
 * per layer, a newer one replaces it). NL_EINPUT when no job runs, the job
 * does not search the layer, or p has more nodes than its --max-nodes. */
int nl_job_inject(const char *layer, const nl_prog *p, nl_error *err);
/* The output directory of the running job, NULL when there is none. */
const char *nl_job_outdir(void);

/* How a job ended. */
typedef struct nl_job_result {
  int rc;              /* 0, or -1 with err */
  nl_error err;
  int stopped;         /* stopped (nl_job_stop) rather than failed */
  double seconds;      /* since it started */
  int nfronts;         /* layers with a front */
  double mean_val_r2;  /* over those layers (NAN when none) */
  char *outdir;        /* owned by the caller */
} nl_job_result;

/* Wait for the thread to end (after nl_job_stop, or when it has ended)
 * and release the job; fills r. Nothing to do when no job runs (returns
 * -1). */
int nl_job_join(nl_job_result *r);

#endif
