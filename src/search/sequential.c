/* Campaigns on a model: extraction in memory, optionally interleaved with
 * the search layer by layer (sequential.h). */
#define _POSIX_C_SOURCE 200809L
#include "search/sequential.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "base/mem.h"
#include "base/timer.h"
#include "data/dataset.h"
#include "model/extract.h"
#include "model/maps.h"
#include "model/vit.h"

void nl_gp_source_default(nl_gp_source *s) {
  memset(s, 0, sizeof *s);
  s->data = "fmnist:test";
  s->images = NL_EXTRACT_IMAGES;
  s->points = NL_EXTRACT_POINTS;
  s->seed = NL_EXTRACT_SEED;
}

void nl_gp_source_from_opts(nl_gp_source *s, const nl_gp_campaign_opts *o) {
  nl_gp_source_default(s);
  s->model = o->model;
  if (o->data) s->data = o->data;
  s->offset = o->offset;
  s->images = o->images;
  s->points = o->points;
  s->seed = o->extract_seed;
  s->sequential = o->sequential;
}

typedef struct source {
  const nl_dataset *d;
  const nl_vit_config *c;
} source;

static int fill(int first, int n, float *dst, void *user, nl_error *err) {
  (void)err;
  source *s = user;
  nl_dataset_normalize(s->d, first, n, s->c->in_chans, s->c->nmean, s->c->mean, s->c->std, dst);
  return 0;
}

/* Mappings of slot `only` - 1 (0: every slot) of m over the images. */
static int extract(const nl_vit *m, const nl_dataset *d, const nl_gp_source *s, int threads,
                   int only, nl_maps *out, nl_error *err) {
  source src = {d, &m->cfg};
  nl_extract_opts o = {.points = s->points, .seed = s->seed, .threads = threads, .only = only};
  if (nl_extract(m, s->images, fill, &src, &o, out, err) != 0) return -1;
  char v[32];
  nl_maps_set_meta(out, "model", s->model);
  nl_maps_set_meta(out, "data", s->data);
  snprintf(v, sizeof v, "%ld", s->offset);
  nl_maps_set_meta(out, "offset", v);
  return 0;
}

/* Progress of one layer's campaign, counted over the whole run. */
typedef struct wrap {
  const nl_gp_campaign *c;
  int base, ntasks;
} wrap;

static int wrap_cb(const nl_gp_progress *p, void *u) {
  wrap *w = u;
  nl_gp_progress q = *p;
  q.task = w->base + p->task;
  q.ntasks = w->ntasks;
  return w->c->progress ? w->c->progress(&q, w->c->user) : 0;
}

/* DIR/chosen.exprs with the model's slots first, in forward order, then
 * whatever else it holds. */
static int reorder_chosen(const char *outdir, const nl_vit *m, nl_error *err) {
  size_t len = strlen(outdir) + 16;
  char *path = nl_xmalloc(len);
  snprintf(path, len, "%s/chosen.exprs", outdir);
  nl_exprset in, set;
  nl_exprset_init(&in);
  nl_exprset_init(&set);
  int rc = nl_file_exists(path) ? nl_exprset_load(path, &in, err) : 0;
  if (rc == 0 && in.n > 0) {
    for (int i = 0; i < m->nnorms; i++) {
      const nl_exprset_entry *e = nl_exprset_find(&in, m->norms[i].name);
      if (e) nl_exprset_set(&set, e->name, &e->prog, e->comment);
    }
    for (int k = 0; k < in.n; k++)
      if (!nl_exprset_find(&set, in.e[k].name))
        nl_exprset_set(&set, in.e[k].name, &in.e[k].prog, in.e[k].comment);
    rc = nl_exprset_save(&set, path, err);
  }
  nl_exprset_free(&in);
  nl_exprset_free(&set);
  free(path);
  return rc;
}

/* The slots one at a time: record slot k on m (earlier slots replaced),
 * search it, put its choice in place. */
static int run_sequential(const nl_gp_campaign *c, const nl_gp_source *s, nl_vit *m,
                          const nl_dataset *d, nl_gp_summary *out, nl_error *err) {
  out->layers = nl_xcalloc((size_t)m->nnorms, sizeof(nl_gp_layer_summary));
  out->nlayers = m->nnorms;
  for (int k = 0; k < m->nnorms; k++) {
    out->layers[k].name = nl_xstrdup(m->norms[k].name);
    nl_prog_init(&out->layers[k].prog);
  }
  wrap w = {c, 0, m->nnorms * c->seeds};
  int rc = 0;
  for (int k = 0; k < m->nnorms && rc == 0; k++) {
    nl_maps maps;
    if (extract(m, d, s, c->cfg->threads, k + 1, &maps, err) != 0) {
      nl_error_prefix(err, "sequential search, layer %s", m->norms[k].name);
      return -1;
    }
    /* DIR/maps/LAYER.safetensors: the mapping the layer is searched on */
    size_t pl = strlen(c->outdir) + strlen(m->norms[k].name) + 32;
    char *mp = nl_xmalloc(pl);
    snprintf(mp, pl, "%s/maps", c->outdir);
    rc = nl_mkdir_p(mp, err);
    snprintf(mp, pl, "%s/maps/%s.safetensors", c->outdir, m->norms[k].name);
    if (rc == 0) rc = nl_maps_save(&maps, mp, err);
    free(mp);
    if (rc != 0) {
      nl_maps_free(&maps);
      return -1;
    }
    nl_gp_campaign one = *c;
    one.maps = &maps;
    one.layers = NULL;
    one.nlayers = 0;
    one.per_layer_maps = 1;
    one.progress = wrap_cb;
    one.user = &w;
    w.base = k * c->seeds;
    nl_gp_summary ls;
    rc = nl_gp_campaign_run(&one, &ls, err);
    if (ls.nlayers == 1) { /* take over the layer's summary */
      nl_gp_layer_summary *dst = &out->layers[k];
      free(dst->name);
      nl_prog_free(&dst->prog);
      *dst = ls.layers[0];
      memset(&ls.layers[0], 0, sizeof ls.layers[0]);
      ls.nlayers = 0;
    }
    nl_gp_summary_free(&ls);
    nl_maps_free(&maps);
    if (rc == 0) rc = reorder_chosen(c->outdir, m, err);
    if (rc != 0) break;
    const nl_gp_layer_summary *L = &out->layers[k];
    if (!L->expr) {
      rc = nl_fail(err, NL_EINTERNAL, "sequential search: layer %s has no chosen expression",
                   L->name);
      break;
    }
    rc = nl_norm_set_expr(m, &m->norms[k], &L->prog, err);
  }
  return rc;
}

int nl_gp_model_campaign_run(const nl_gp_campaign *c, const nl_gp_source *s, nl_gp_summary *out,
                             nl_error *err) {
  memset(out, 0, sizeof *out);
  if (s->sequential && c->layers)
    return nl_fail(err, NL_EINPUT,
                   "a sequential search covers every layer in forward order: leave out --layer");
  if (s->images < 1) return nl_fail(err, NL_EINPUT, "--images must be at least 1");
  if (nl_gp_config_check(c->cfg, err) != 0) return -1;
  nl_vit m;
  if (nl_vit_load(&m, s->model, NULL, err) != 0) return -1;
  nl_dataset d;
  if (nl_dataset_load(&d, s->data, s->offset, s->images, err) != 0) {
    nl_vit_free(&m);
    return -1;
  }
  int rc = 0;
  if (d.n < s->images)
    rc = nl_fail(err, NL_EINPUT, "%s has only %d images from offset %ld; --images %d asked for",
                 s->data, d.n, s->offset, s->images);
  else if (d.rows != m.cfg.img_size || d.cols != m.cfg.img_size)
    rc = nl_fail(err, NL_EINPUT, "%s images are %dx%d; %s expects %dx%d", s->data, d.rows,
                 d.cols, s->model, m.cfg.img_size, m.cfg.img_size);
  double t0 = nl_now();
  if (rc == 0 && s->sequential) {
    rc = run_sequential(c, s, &m, &d, out, err);
  } else if (rc == 0) {
    nl_maps maps;
    rc = extract(&m, &d, s, c->cfg->threads, 0, &maps, err);
    if (rc == 0) {
      nl_gp_campaign cam = *c;
      cam.maps = &maps;
      rc = nl_gp_campaign_run(&cam, out, err);
      nl_maps_free(&maps);
    }
  }
  out->seconds = nl_now() - t0;
  nl_dataset_free(&d);
  nl_vit_free(&m);
  return rc;
}
