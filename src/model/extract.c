#include "model/extract.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/interrupt.h"
#include "base/mem.h"
#include "base/rng.h"
#include "base/timer.h"
#include "model/vit.h"

void nl_extract_sample(uint64_t seed, int layer, uint64_t population, long points, uint64_t *idx) {
  nl_rng r;
  nl_rng_stream(&r, seed, (uint64_t)layer);
  for (long k = 0; k < points; k++) idx[k] = nl_rng_below(&r, population);
}

typedef struct {
  int ready;
  uint64_t per_image;  /* tokens * dim */
  int tokens, dim;
  size_t n;            /* points */
  uint32_t *order;     /* point numbers grouped by row (image, token); NULL when dense */
  uint32_t *col;       /* channel of each entry of order */
  size_t *start;       /* rows + 1 offsets into order */
  float *x, *y;
} layer_state;

typedef struct {
  const nl_vit *m;
  int images, dense;
  long points;
  uint64_t seed;
  int first;           /* first image of the batch in flight */
  int only;            /* nl_extract_opts.only */
  layer_state *L;
  uint64_t *idx;       /* scratch shared by the layers' setups: drawn positions */
  size_t *fill;        /* and bucket cursors */
  size_t idx_cap, fill_cap;
  nl_error *err;       /* the tap's own error (the forward pass reports NL_EINTR) */
  int failed;
} ext;

static void layer_free(layer_state *s) {
  free(s->order);
  free(s->col);
  free(s->start);
  free(s->x);
  free(s->y);
}

/* Allocate a layer's outputs and, when sampling, draw its positions and
 * bucket them by row, i.e. (image, token) (a counting sort: O(points +
 * rows)), so the tap reads each row's few points from one stretch of
 * memory. */
static int layer_setup(ext *e, layer_state *s, const char *name, int index, int tokens, int dim) {
  s->tokens = tokens;
  s->dim = dim;
  s->per_image = (uint64_t)tokens * (uint64_t)dim;
  uint64_t population = s->per_image * (uint64_t)e->images;
  s->n = e->dense ? (size_t)population : (size_t)e->points;
  if (!e->dense && s->n > UINT32_MAX)
    return nl_fail(e->err, NL_EINPUT, "layer '%s': %zu points per layer is too many", name, s->n);
  s->x = nl_try_alloc(s->n, sizeof(float));
  s->y = nl_try_alloc(s->n, sizeof(float));
  if (!s->x || !s->y)
    return nl_fail(e->err, NL_ENOMEM, "layer '%s': out of memory for %zu points", name, s->n);
  if (!e->dense) {
    size_t rows = (size_t)e->images * (size_t)tokens;
    /* Scratch reused from layer to layer: fresh pages cost a fault each. */
    if (e->idx_cap < s->n) {
      free(e->idx);
      e->idx = nl_try_alloc(s->n, sizeof *e->idx);
      e->idx_cap = e->idx ? s->n : 0;
    }
    if (e->fill_cap < rows) {
      free(e->fill);
      e->fill = nl_try_alloc(rows, sizeof *e->fill);
      e->fill_cap = e->fill ? rows : 0;
    }
    uint64_t *idx = e->idx;
    size_t *fill = e->fill;
    s->order = nl_try_alloc(s->n, sizeof *s->order);
    s->col = nl_try_alloc(s->n, sizeof *s->col);
    s->start = nl_try_alloc(rows + 1, sizeof *s->start);
    if (!idx || !fill || !s->order || !s->col || !s->start)
      return nl_fail(e->err, NL_ENOMEM, "layer '%s': out of memory for %zu points", name, s->n);
    nl_extract_sample(e->seed, index, population, (long)s->n, idx);
    memset(s->start, 0, sizeof *s->start * (rows + 1));
    for (size_t k = 0; k < s->n; k++) s->start[idx[k] / (uint64_t)dim + 1]++;
    for (size_t r = 0; r < rows; r++) s->start[r + 1] += s->start[r];
    memcpy(fill, s->start, sizeof *fill * rows);
    for (size_t k = 0; k < s->n; k++) {
      uint64_t r = idx[k] / (uint64_t)dim;
      size_t at = fill[r]++;
      s->order[at] = (uint32_t)k;
      s->col[at] = (uint32_t)(idx[k] - r * (uint64_t)dim);
    }
  }
  s->ready = 1;
  return 0;
}

static int tap(const char *layer, int index, const float *x, const float *y, int batch,
               int tokens, int dim, void *user) {
  ext *e = user;
  if (index < 0 || index >= e->m->nnorms) {
    nl_fail(e->err, NL_EINTERNAL, "norm tap: layer '%s' has index %d of %d", layer, index,
            e->m->nnorms);
    e->failed = 1;
    return 1;
  }
  if (e->only > 0 && index != e->only - 1) return 0;
  layer_state *s = &e->L[index];
  if (!s->ready && layer_setup(e, s, layer, index, tokens, dim) != 0) {
    e->failed = 1;
    return 1;
  }
  if (s->tokens != tokens || s->dim != dim) {
    nl_fail(e->err, NL_EINTERNAL, "norm tap: layer '%s' changed shape", layer);
    e->failed = 1;
    return 1;
  }
  const float *w = e->m->norms[index].w, *b = e->m->norms[index].b;
  if (e->dense) {
    size_t base = (size_t)e->first * s->per_image, total = (size_t)batch * s->per_image;
    memcpy(s->x + base, x, total * sizeof(float));
    for (size_t j = 0; j < total; j++) {
      int c = (int)(j % (size_t)dim);
      s->y[base + j] = (y[j] - b[c]) / (w[c] + 1e-12f);
    }
    return 0;
  }
  size_t r0 = (size_t)e->first * (size_t)tokens, r1 = r0 + (size_t)batch * (size_t)tokens;
  for (size_t r = r0; r < r1; r++) {
    const float *xr = x + (r - r0) * (size_t)dim, *yr = y + (r - r0) * (size_t)dim;
    for (size_t k = s->start[r]; k < s->start[r + 1]; k++) {
      uint32_t pt = s->order[k], c = s->col[k];
      s->x[pt] = xr[c];
      s->y[pt] = (yr[c] - b[c]) / (w[c] + 1e-12f);
    }
  }
  return 0;
}

int nl_extract(const nl_vit *m, int images, nl_image_fn fill, void *fill_user,
               const nl_extract_opts *o, nl_maps *out, nl_error *err) {
  nl_maps_init(out);
  if (images < 1) return nl_fail(err, NL_EINPUT, "extraction needs at least one image");
  if (m->nnorms < 1) return nl_fail(err, NL_EINPUT, "the model has no norm layers");
  long points = o ? o->points : NL_EXTRACT_POINTS;
  int batch = o && o->batch > 0 ? o->batch : 32;
  if (batch > images) batch = images;
  nl_error tap_err;
  nl_error_clear(&tap_err);
  ext e = {.m = m,
           .images = images,
           .dense = points <= 0,
           .points = points,
           .seed = o ? o->seed : NL_EXTRACT_SEED,
           .err = &tap_err,
           .only = o ? o->only : 0};
  if (e.only < 0 || e.only > m->nnorms)
    return nl_fail(err, NL_EINPUT, "extraction: no norm slot %d (the model has %d)", e.only - 1,
                   m->nnorms);
  e.L = nl_xcalloc((size_t)m->nnorms, sizeof *e.L);
  const nl_vit_config *c = &m->cfg;
  size_t img_floats = (size_t)c->in_chans * (size_t)c->img_size * (size_t)c->img_size;
  float *buf = nl_try_alloc((size_t)batch * img_floats, sizeof(float));
  nl_vit_acts acts;
  memset(&acts, 0, sizeof acts);
  int rc = 0;
  if (!buf)
    rc = nl_fail(err, NL_ENOMEM, "out of memory for a batch of %d images", batch);
  else
    rc = nl_vit_acts_init(&acts, c, batch, 0, err);
  acts.threads = o ? o->threads : 0;
  double t0 = nl_now();
  for (int first = 0; rc == 0 && first < images; first += batch) {
    int nb = images - first < batch ? images - first : batch;
    if (nl_interrupted()) {
      rc = nl_fail(err, NL_EINTR, "interrupted after %d of %d images", first, images);
      break;
    }
    if (fill(first, nb, buf, fill_user, err) != 0) {
      rc = -1;
      break;
    }
    e.first = first;
    if (nl_vit_forward(m, &acts, buf, nb, tap, &e, err) != 0) {
      if (e.failed) *err = tap_err;
      rc = -1;
      break;
    }
    if (o && o->progress) {
      nl_progress p = {"extract", NULL, first + nb, images, nl_now() - t0, NULL, 0, NULL, NULL};
      if (o->progress(&p, o->progress_user)) {
        rc = nl_fail(err, NL_EINTR, "stopped after %d of %d images", first + nb, images);
        break;
      }
    }
  }
  for (int i = 0; rc == 0 && i < m->nnorms; i++)
    if (!e.L[i].ready && (!e.only || i == e.only - 1))
      rc = nl_fail(err, NL_EINTERNAL, "norm layer '%s' was not seen in the forward pass",
                   m->norms[i].name);
  for (int i = 0; i < m->nnorms; i++) {
    layer_state *s = &e.L[i];
    if (rc == 0 && (!e.only || i == e.only - 1)) {
      rc = nl_maps_add_owned(out, m->norms[i].name, s->x, s->y, s->n, err);
      s->x = s->y = NULL;
      if (rc != 0) nl_error_prefix(err, "extraction");
    }
    layer_free(s);
  }
  free(e.L);
  free(e.idx);
  free(e.fill);
  free(buf);
  nl_vit_acts_free(&acts);
  if (rc != 0) {
    nl_maps_free(out);
    return -1;
  }
  char v[32];
  snprintf(v, sizeof v, "%d", images);
  nl_maps_set_meta(out, "images", v);
  snprintf(v, sizeof v, "%ld", e.dense ? 0L : points);
  nl_maps_set_meta(out, "points", v);
  snprintf(v, sizeof v, "%llu", (unsigned long long)e.seed);
  nl_maps_set_meta(out, "seed", v);
  snprintf(v, sizeof v, "%d", m->cfg.dim); /* the norms' width d (LayerNorm's 5 + 2/d) */
  nl_maps_set_meta(out, "width", v);
  return 0;
}
