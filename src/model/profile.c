/* Activation statistics and part times from an observed forward pass. */
#include "model/profile.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/interrupt.h"
#include "base/mem.h"
#include "base/timer.h"
#include "model/safetensors.h"

static const char *const stat_names[4] = {"absmean", "mean", "var", "absmax"};

/* Running sums of one layer (double: the means of many rows). */
typedef struct acc {
  double *sum, *sumsq, *sumabs;
  float *absmax;
  double rows;
  double *gram;  /* [width, width] sum of x x^T (upper triangle), when collected */
} acc;

typedef struct run_state {
  const nl_vit *m;
  nl_profile *p;
  acc *a;
  float *tmp;    /* one batch's x^T x, the widest layer's (the observer runs one layer at a time) */
} run_state;

/* Layer index of (block, site) in forward order. */
static int layer_index(const nl_vit *m, int block, nl_vit_site site) {
  if (block >= 0) return block * NL_VIT_BLOCK_SITES + (int)site;
  return m->cfg.depth * NL_VIT_BLOCK_SITES + (site == NL_SITE_HEAD_IN);
}

static int on_act(int block, nl_vit_site site, const float *x, int rows, int width, void *user) {
  run_state *s = user;
  int li = layer_index(s->m, block, site);
  if (li < 0 || li >= s->p->nlayers || s->p->layers[li].width != width) return 1;
  acc *a = &s->a[li];
  for (int r = 0; r < rows; r++) {
    const float *row = x + (size_t)r * width;
    for (int j = 0; j < width; j++) {
      double v = row[j], av = fabs(v);
      a->sum[j] += v;
      a->sumsq[j] += v * v;
      a->sumabs[j] += av;
      if ((float)av > a->absmax[j] || isnan(row[j])) a->absmax[j] = (float)av;
    }
  }
  a->rows += rows;
  if (a->gram) {
    /* one batch in float (rows of one batch), the sum over batches in double */
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, width, rows, 1.0f, x, width, 0.0f, s->tmp,
                width);
    for (int i = 0; i < width; i++)
      for (int j = i; j < width; j++) a->gram[(size_t)i * width + j] += s->tmp[(size_t)i * width + j];
  }
  return 0;
}

static void layer_alloc(nl_profile_layer *L, int width) {
  L->width = width;
  L->absmean = nl_xcalloc((size_t)width, sizeof(float));
  L->mean = nl_xcalloc((size_t)width, sizeof(float));
  L->var = nl_xcalloc((size_t)width, sizeof(float));
  L->absmax = nl_xcalloc((size_t)width, sizeof(float));
}

/* The layers of model m, named, sized, zeroed. */
static void layout(nl_profile *p, const nl_vit *m) {
  const nl_vit_config *c = &m->cfg;
  p->depth = c->depth;
  p->nlayers = c->depth * NL_VIT_BLOCK_SITES + 2;
  p->layers = nl_xcalloc((size_t)p->nlayers, sizeof(nl_profile_layer));
  p->part_ms = nl_xcalloc((size_t)c->depth * NL_PROFILE_PARTS, sizeof(double));
  for (int b = 0; b < c->depth; b++)
    for (int s = 0; s < NL_VIT_BLOCK_SITES; s++) {
      nl_profile_layer *L = &p->layers[layer_index(m, b, (nl_vit_site)s)];
      snprintf(L->name, sizeof L->name, "blocks.%d.%s", b, nl_vit_site_name((nl_vit_site)s));
      L->block = b;
      L->site = (nl_vit_site)s;
      layer_alloc(L, s == NL_SITE_FC2_IN    ? nl_vit_mlp_width(c, b)
                     : s == NL_SITE_PROJ_IN ? nl_vit_attn_width(c, b)
                                            : c->dim);
    }
  nl_profile_layer *F = &p->layers[layer_index(m, -1, NL_SITE_FINAL_IN)];
  snprintf(F->name, sizeof F->name, "%s.in", m->final_norm->name);
  F->block = -1;
  F->site = NL_SITE_FINAL_IN;
  layer_alloc(F, c->dim);
  nl_profile_layer *H = &p->layers[layer_index(m, -1, NL_SITE_HEAD_IN)];
  snprintf(H->name, sizeof H->name, "head.in");
  H->block = -1;
  H->site = NL_SITE_HEAD_IN;
  layer_alloc(H, c->dim);
}

int nl_profile_run(const nl_vit *m, int images, nl_image_fn fill, void *fill_user,
                   const nl_profile_opts *o, nl_profile *p, nl_error *err) {
  memset(p, 0, sizeof *p);
  if (images < 1) return nl_fail(err, NL_EINPUT, "profiling needs at least one image");
  int batch = o && o->batch > 0 ? o->batch : 32;
  if (batch > images) batch = images;
  layout(p, m);
  run_state s = {m, p, nl_xcalloc((size_t)p->nlayers, sizeof(acc)), NULL};
  size_t tmp_w = 0;
  for (int i = 0; i < p->nlayers; i++) {
    size_t w = (size_t)p->layers[i].width;
    s.a[i].sum = nl_xcalloc(w, sizeof(double));
    s.a[i].sumsq = nl_xcalloc(w, sizeof(double));
    s.a[i].sumabs = nl_xcalloc(w, sizeof(double));
    s.a[i].absmax = nl_xcalloc(w, sizeof(float));
    if (o && o->cov && p->layers[i].site == NL_SITE_FC2_IN && p->layers[i].block >= 0) {
      s.a[i].gram = nl_xcalloc(w * w, sizeof(double));
      if (w > tmp_w) tmp_w = w;
    }
  }
  if (tmp_w) s.tmp = nl_xcalloc(tmp_w * tmp_w, sizeof(float));
  const nl_vit_config *c = &m->cfg;
  double *part_s = nl_xcalloc(nl_vit_part_slots(c->depth), sizeof(double));
  nl_vit_observer obs = {on_act, &s};
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
  long timed = 0;
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
    /* the first of several batches warms up (threads, BLAS buffers): untimed */
    acts.part_s = first == 0 && nb < images ? NULL : part_s;
    if (acts.part_s) timed += nb;
    if (nl_vit_forward_observed(m, &acts, buf, nb, NULL, NULL, &obs, err) != 0) {
      rc = -1;
      break;
    }
    if (o && o->progress) {
      nl_progress pr = {"profile", NULL, first + nb, images, nl_now() - t0, NULL, 0, NULL, NULL};
      if (o->progress(&pr, o->progress_user)) {
        rc = nl_fail(err, NL_EINTR, "stopped after %d of %d images", first + nb, images);
        break;
      }
    }
  }
  for (int i = 0; i < p->nlayers; i++) {
    nl_profile_layer *L = &p->layers[i];
    acc *a = &s.a[i];
    L->rows = a->rows;
    for (int j = 0; rc == 0 && a->rows > 0 && j < L->width; j++) {
      double mean = a->sum[j] / a->rows, var = a->sumsq[j] / a->rows - mean * mean;
      L->mean[j] = (float)mean;
      L->var[j] = (float)(var > 0 ? var : 0);
      L->absmean[j] = (float)(a->sumabs[j] / a->rows);
      L->absmax[j] = a->absmax[j];
    }
    if (rc == 0 && a->gram && a->rows > 0) {
      const int w = L->width;
      L->cov = nl_xmalloc((size_t)w * w * sizeof(float));
      for (int u = 0; u < w; u++)
        for (int v = u; v < w; v++) {
          double cv = a->gram[(size_t)u * w + v] / a->rows -
                      (a->sum[u] / a->rows) * (a->sum[v] / a->rows);
          L->cov[(size_t)u * w + v] = L->cov[(size_t)v * w + u] = (float)cv;
        }
    }
    free(a->gram);
    free(a->sum);
    free(a->sumsq);
    free(a->sumabs);
    free(a->absmax);
  }
  free(s.a);
  free(s.tmp);
  for (int b = 0; b < c->depth; b++)
    for (int k = 0; k < NL_PROFILE_PARTS; k++)
      p->part_ms[(size_t)b * NL_PROFILE_PARTS + k] =
          timed ? 1e3 * part_s[nl_vit_part_index(nl_profile_part(k), b)] / timed : 0;
  free(part_s);
  free(buf);
  nl_vit_acts_free(&acts);
  if (rc) {
    nl_profile_free(p);
    return -1;
  }
  p->images = images;
  return 0;
}

void nl_profile_free(nl_profile *p) {
  if (!p) return;
  for (int i = 0; i < p->nlayers; i++) {
    free(p->layers[i].absmean);
    free(p->layers[i].mean);
    free(p->layers[i].var);
    free(p->layers[i].absmax);
    free(p->layers[i].cov);
  }
  free(p->layers);
  free(p->part_ms);
  memset(p, 0, sizeof *p);
}

const nl_profile_layer *nl_profile_find(const nl_profile *p, const char *name) {
  for (int i = 0; i < p->nlayers; i++)
    if (strcmp(p->layers[i].name, name) == 0) return &p->layers[i];
  return NULL;
}

const nl_profile_layer *nl_profile_hidden(const nl_profile *p, int block) {
  char nm[64];
  snprintf(nm, sizeof nm, "blocks.%d.mlp.fc2.in", block);
  return nl_profile_find(p, nm);
}

int nl_profile_save(const nl_profile *p, const char *path, const char *const *meta, int nmeta,
                    nl_error *err) {
  nl_st_writer *w = nl_st_writer_new();
  int rc = 0;
  for (int i = 0; rc == 0 && i < p->nlayers; i++) {
    const nl_profile_layer *L = &p->layers[i];
    const float *v[4] = {L->absmean, L->mean, L->var, L->absmax};
    int64_t shape[1] = {L->width};
    for (int k = 0; rc == 0 && k < 4; k++) {
      char nm[96];
      snprintf(nm, sizeof nm, "%s.%s", L->name, stat_names[k]);
      rc = nl_st_writer_add(w, nm, v[k], 1, shape, err);
    }
    if (rc == 0 && L->cov) {
      char nm[96];
      snprintf(nm, sizeof nm, "%s.cov", L->name);
      int64_t sh2[2] = {L->width, L->width};
      rc = nl_st_writer_add(w, nm, L->cov, 2, sh2, err);
    }
  }
  if (rc == 0 && p->part_ms && p->depth > 0) {
    size_t n = (size_t)p->depth * NL_PROFILE_PARTS;
    float *t = nl_xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) t[i] = (float)p->part_ms[i];
    int64_t shape[2] = {p->depth, NL_PROFILE_PARTS};
    rc = nl_st_writer_add(w, "time.parts", t, 2, shape, err);
    free(t);
  }
  if (rc == 0) {
    char v[256];
    snprintf(v, sizeof v, "%ld", p->images);
    nl_st_writer_meta(w, "images", v);
    size_t k = 0;
    for (int i = 0; i < NL_PROFILE_PARTS; i++)
      k += (size_t)snprintf(v + k, sizeof v - k, "%s%s", i ? "," : "",
                            nl_vit_part_name(nl_profile_part(i)));
    nl_st_writer_meta(w, "parts", v);
    nl_st_writer_meta(w, "time_unit", "ms per image");
    nl_st_writer_meta(w, "kind", "normlab profile");
    for (int i = 0; i < nmeta; i++) nl_st_writer_meta(w, meta[2 * i], meta[2 * i + 1]);
    rc = nl_st_writer_save(w, path, err);
  }
  nl_st_writer_free(w);
  return rc;
}

/* Site of a layer name's tail ("mlp.fc2.in"), block from "blocks.N." */
static void parse_name(const char *name, int *block, nl_vit_site *site) {
  *block = -1;
  *site = NL_SITE_FINAL_IN;
  const char *tail = name;
  if (strncmp(name, "blocks.", 7) == 0) {
    char *end;
    long b = strtol(name + 7, &end, 10);
    if (*end == '.') {
      *block = (int)b;
      tail = end + 1;
    }
  }
  if (strcmp(name, "head.in") == 0) *site = NL_SITE_HEAD_IN;
  for (int s = 0; *block >= 0 && s < NL_VIT_BLOCK_SITES; s++)
    if (strcmp(tail, nl_vit_site_name((nl_vit_site)s)) == 0) *site = (nl_vit_site)s;
}

int nl_profile_load(nl_profile *p, const char *path, nl_error *err) {
  memset(p, 0, sizeof *p);
  nl_st_file f;
  if (nl_st_open(&f, path, err)) return -1;
  int rc = 0, cap = 0;
  /* layers: every "<layer>.absmean" tensor, the other three beside it */
  for (int i = 0; rc == 0 && i < f.n; i++) {
    const char *nm = f.t[i].name;
    size_t len = strlen(nm);
    if (len < 9 || strcmp(nm + len - 8, ".absmean") != 0) continue;
    if (len - 8 >= sizeof p->layers[0].name) {
      rc = nl_fail(err, NL_EINPUT, "%s: tensor name '%s' is too long", path, nm);
      break;
    }
    if (p->nlayers == cap) {
      cap = cap ? 2 * cap : 64;
      p->layers = nl_xrealloc(p->layers, (size_t)cap * sizeof(nl_profile_layer));
    }
    nl_profile_layer *L = &p->layers[p->nlayers];
    memset(L, 0, sizeof *L);
    memcpy(L->name, nm, len - 8);
    L->name[len - 8] = 0;
    parse_name(L->name, &L->block, &L->site);
    if (f.t[i].ndim != 1 || f.t[i].numel < 1) {
      rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s' is not a 1-D channel list", path, nm);
      break;
    }
    layer_alloc(L, (int)f.t[i].numel);
    p->nlayers++;
    float *dst[4] = {L->absmean, L->mean, L->var, L->absmax};
    for (int k = 0; rc == 0 && k < 4; k++) {
      char tn[96];
      snprintf(tn, sizeof tn, "%s.%s", L->name, stat_names[k]);
      const nl_st_tensor *t = nl_st_find(&f, tn);
      if (!t || t->ndim != 1 || t->numel != (size_t)L->width)
        rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s' is %s (want [%d], as %s.absmean)", path, tn,
                     t ? "of another shape" : "missing", L->width, L->name);
      else
        nl_st_to_f32(t, dst[k]);
    }
    char cn[96];
    snprintf(cn, sizeof cn, "%s.cov", L->name);
    const nl_st_tensor *ct = rc == 0 ? nl_st_find(&f, cn) : NULL;
    if (ct && (ct->ndim != 2 || ct->shape[0] != L->width || ct->shape[1] != L->width))
      rc = nl_fail(err, NL_EINPUT, "%s: tensor '%s' is not [%d, %d] (the covariance of %s's %d "
                   "channels)", path, cn, L->width, L->width, L->name, L->width);
    else if (ct) {
      L->cov = nl_xmalloc((size_t)L->width * L->width * sizeof(float));
      nl_st_to_f32(ct, L->cov);
    }
  }
  if (rc == 0 && p->nlayers == 0)
    rc = nl_fail(err, NL_EINPUT, "%s: not a profile (no '<layer>.absmean' tensors; write one with "
                 "'normlab profile')", path);
  const char *im = rc == 0 ? nl_st_meta_get(&f, "images") : NULL;
  if (im) p->images = strtol(im, NULL, 10);
  const nl_st_tensor *tp = rc == 0 ? nl_st_find(&f, "time.parts") : NULL;
  if (tp && tp->ndim == 2 && tp->shape[1] == NL_PROFILE_PARTS && tp->shape[0] > 0) {
    p->depth = (int)tp->shape[0];
    float *t = nl_xmalloc(tp->numel * sizeof(float));
    nl_st_to_f32(tp, t);
    p->part_ms = nl_xcalloc(tp->numel, sizeof(double));
    for (size_t i = 0; i < tp->numel; i++) p->part_ms[i] = t[i];
    free(t);
  }
  nl_st_close(&f);
  if (rc) nl_profile_free(p);
  return rc;
}

int nl_profile_check(const nl_profile *p, const nl_vit *m, const char *what, nl_error *err) {
  for (int b = 0; b < m->cfg.depth; b++) {
    const nl_profile_layer *L = nl_profile_hidden(p, b);
    if (!L)
      return nl_fail(err, NL_EINPUT, "%s has no statistics of blocks.%d.mlp.fc2.in (a profile of "
                     "another model?)", what, b);
    if (L->width != nl_vit_mlp_width(&m->cfg, b))
      return nl_fail(err, NL_EINPUT, "%s: blocks.%d.mlp.fc2.in has %d channels but the model's "
                     "block %d has %d (a profile of another model?)", what, b, L->width, b,
                     nl_vit_mlp_width(&m->cfg, b));
    const nl_profile_layer *P = nl_profile_attn(p, b);
    if (P && P->width != nl_vit_attn_width(&m->cfg, b))
      return nl_fail(err, NL_EINPUT, "%s: blocks.%d.attn.proj.in has %d channels but the model's "
                     "block %d has %d (%d heads of %d; a profile of another model?)", what, b,
                     P->width, b, nl_vit_attn_width(&m->cfg, b), nl_vit_heads(&m->cfg, b),
                     nl_vit_head_dim(&m->cfg));
  }
  return 0;
}

const nl_profile_layer *nl_profile_attn(const nl_profile *p, int block) {
  char nm[64];
  snprintf(nm, sizeof nm, "blocks.%d.attn.proj.in", block);
  return nl_profile_find(p, nm);
}
