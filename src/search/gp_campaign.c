/* Campaigns: searches over layers and seeds with results in a directory.
 *
 * DIR/parts/LAYER.seedK.csv        one finished layer-seed (atomic write)
 * DIR/parts/LAYER.seedK.partial.csv  a layer-seed stopped early
 * DIR/LAYER.csv                    the fronts of all seeds of the layer
 * DIR/chosen.exprs                 one selected expression per layer
 *
 * A part starts with one comment line "# normlab evolve part: ..." holding
 * the search time, whether it finished, and after " | " its signature: the
 * content fingerprint of the mappings ("maps=HEX", nl_maps_fingerprint)
 * and every setting that changes a search's result ("pop=500 gens=50
 * ..."); then the fronts CSV. A finished part with the run's signature is
 * never searched again; one with another signature is refused (or searched
 * again with nl_gp_campaign.recompute). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/interrupt.h"
#include "base/mem.h"
#include "base/timer.h"
#include "model/maps.h"
#include "search/fronts.h"
#include "search/fit.h"
#include "search/gp.h"

const char nl_gp_csv_header[] =
    "layer,seed,rank,nodes,flops,train_fitness,val_fitness,val_mse,val_r2,expr,origin";

/* The mappings' fingerprint and the settings that change a search's
 * result, as space-separated KEY=VALUE words. */
static void signature(const nl_gp_config *c, uint64_t maps, uint64_t init, char *buf,
                      size_t len) {
  int at = snprintf(buf, len,
           "maps=%016llx pop=%d gens=%d max_nodes=%d init_depth=%d tournament=%d penalty=%.17g "
           "delta_scale=%.17g const_steps=%d const_top=%d const_lr=%.17g const_points=%d "
           "val_frac=%.17g p_cross=%.17g p_mut=%.17g w=%.6g,%.6g,%.6g,%.6g,%.6g,%.6g "
           "leaf_x=%.17g complexity=%s seed=%llu",
           (unsigned long long)maps, c->pop, c->gens, c->max_nodes, c->init_depth, c->tournament,
           c->penalty,
           c->delta_scale, c->const_steps, c->const_top, c->const_lr, c->const_points,
           c->val_frac, c->p_cross, c->p_mut, c->op_weight[0], c->op_weight[1], c->op_weight[2],
           c->op_weight[3], c->op_weight[4], c->op_weight[5], c->p_leaf_x,
           c->complexity == NL_GP_FLOPS ? "flops" : "nodes", (unsigned long long)c->seed);
  /* the settings added later appear only when used, so that older parts
   * keep their signature */
  if (at < 0 || (size_t)at >= len) return;
  if (c->max_flops != 0)
    at += snprintf(buf + at, len - (size_t)at, " max_flops=%.17g",
                   nl_gp_limit(c->max_flops, c->width));
  if (c->op_weight[6] != 0 && (size_t)at < len)
    at += snprintf(buf + at, len - (size_t)at, " w_clip3=%.6g", c->op_weight[6]);
  if (init && (size_t)at < len)
    snprintf(buf + at, len - (size_t)at, " init=%016llx", (unsigned long long)init);
}

/* Fingerprint of an initial population file's entries (names and
 * round-trip text), 0 when there is none. */
static uint64_t init_fingerprint(const nl_exprset *s) {
  if (!s || s->n == 0) return 0;
  uint64_t h = 1469598103934665603ULL;
  for (int k = 0; k < s->n; k++) {
    char *t = nl_print(&s->e[k].prog, NL_PRINT_EXACT);
    for (const char *q = s->e[k].name; *q; q++) h = (h ^ (uint8_t)*q) * 1099511628211ULL;
    h = (h ^ '=') * 1099511628211ULL;
    for (const char *q = t; *q; q++) h = (h ^ (uint8_t)*q) * 1099511628211ULL;
    h = (h ^ '\n') * 1099511628211ULL;
    free(t);
  }
  return h ? h : 1;
}

/* The value of word KEY= in a signature (length in *n), or NULL. */
static const char *sig_value(const char *sig, const char *key, size_t *n) {
  size_t kl = strlen(key);
  for (const char *p = sig; p && *p;) {
    while (*p == ' ') p++;
    const char *end = strchr(p, ' ');
    size_t wl = end ? (size_t)(end - p) : strlen(p);
    if (wl > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
      *n = wl - kl - 1;
      return p + kl + 1;
    }
    p = end;
  }
  return NULL;
}

/* What differs between a part's signature and the run's: "(mappings
 * fingerprint A there, B here)" and/or "(gens 3 there, 5 here; ...)";
 * returns a malloc'd text, mappings first. */
static char *sig_diff(const char *part, const char *run, const char *maps_name) {
  char buf[2048];
  size_t len = 0, n, pn;
  buf[0] = '\0';
  const char *rv = sig_value(run, "maps", &n), *pv = sig_value(part, "maps", &pn);
  if (!pv)
    len += (size_t)snprintf(buf + len, sizeof buf - len,
                            "was written by an older normlab, without a mappings fingerprint");
  else if (pn != n || strncmp(pv, rv, n) != 0)
    len += (size_t)snprintf(buf + len, sizeof buf - len,
                            "was computed from other mappings (fingerprint %.*s; %s has %.*s)",
                            (int)pn, pv, maps_name, (int)n, rv);
  int first = 1;
  for (const char *p = run; *p && len < sizeof buf - 1;) {
    while (*p == ' ') p++;
    const char *eq = strchr(p, '='), *end = strchr(p, ' ');
    if (!eq) break;
    size_t wl = end ? (size_t)(end - p) : strlen(p);
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
    const char *v = eq + 1;
    size_t vl = wl - (size_t)(v - p);
    p = end ? end : p + wl;
    if (strcmp(key, "maps") == 0) continue;
    const char *w = sig_value(part, key, &pn);
    if (w && pn == vl && strncmp(w, v, vl) == 0) continue;
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s %.*s there, %.*s here",
                            first ? (len ? " and with other settings (" : "was computed with "
                                                                          "other settings (")
                                  : "; ",
                            key, w ? (int)pn : 4, w ? w : "none", (int)vl, v);
    first = 0;
  }
  if (!first && len < sizeof buf - 1) snprintf(buf + len, sizeof buf - len, ")");
  return nl_xstrdup(buf);
}

static char *safe_name(const char *layer) {
  char *s = nl_xstrdup(layer);
  for (char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '.' || *p == '_' || *p == '-'))
      *p = '_';
  if (s[0] == '.') s[0] = '_';
  return s;
}


typedef struct part {
  nl_gp_member *m;
  int n;
  int finished;
  double seconds;
  char *sig;
} part;

static void part_free(part *p) {
  for (int i = 0; i < p->n; i++) nl_prog_free(&p->m[i].prog);
  free(p->m);
  free(p->sig);
  memset(p, 0, sizeof *p);
}

/* Read a part file; -1 with an error naming the file and line. */
static int part_read(const char *path, part *p, nl_error *err) {
  memset(p, 0, sizeof *p);
  char *text = nl_read_file(path, NULL, err);
  if (!text) return -1;
  int rc = 0, lineno = 1, cap = 0;
  /* line 1: "# normlab evolve part: ... finished=F ... seconds=S | SIGNATURE" */
  char *eol = strchr(text, '\n');
  if (eol) *eol = '\0';
  size_t l = strlen(text);
  if (l && text[l - 1] == '\r') text[l - 1] = '\0';
  const char *tag = "# normlab evolve part: ";
  if (strncmp(text, tag, strlen(tag)) != 0) {
    free(text);
    return nl_fail(err, NL_EINPUT, "%s:1: not a normlab evolve part file", path);
  }
  char *f = strstr(text, " finished="), *s = strstr(text, " seconds="), *g = strstr(text, " | ");
  p->finished = f ? atoi(f + 10) : 0;
  p->seconds = s ? strtod(s + 9, NULL) : 0;
  p->sig = nl_xstrdup(g ? g + 3 : "");
  const char *q = eol ? eol + 1 : text + l;
  int nh = 0;
  char **head = NULL;
  if (*q) { /* line 2: the header */
    lineno++;
    nh = nl_csv_record(&q, &head, &lineno);
    if (nh < 0) rc = nl_fail(err, NL_EINPUT, "%s:%d: unterminated quote", path, lineno);
    else nl_csv_free(head, nh);
  }
  while (rc == 0 && *q) {
    int at = ++lineno;
    char **fl;
    int nf = nl_csv_record(&q, &fl, &lineno);
    if (nf < 0) {
      rc = nl_fail(err, NL_EINPUT, "%s:%d: unterminated quote", path, at);
      break;
    }
    if (nf == 1 && fl[0][0] == '\0') { /* blank line */
      nl_csv_free(fl, nf);
      continue;
    }
    if (nf != 10 && nf != 11) { /* origin (the 11th) came later */
      nl_csv_free(fl, nf);
      rc = nl_fail(err, NL_EINPUT, "%s:%d: expected 11 CSV fields", path, at);
      break;
    }
    if (p->n == cap) {
      cap = cap ? 2 * cap : 16;
      p->m = nl_xrealloc(p->m, sizeof(nl_gp_member) * (size_t)cap);
    }
    nl_gp_member *m = &p->m[p->n];
    memset(m, 0, sizeof *m);
    m->rank = atoi(fl[2]);
    m->nodes = atoi(fl[3]);
    m->flops = atoi(fl[4]);
    m->train_fitness = strtod(fl[5], NULL);
    m->val_fitness = strtod(fl[6], NULL);
    m->val_mse = strtod(fl[7], NULL);
    m->val_r2 = strtod(fl[8], NULL);
    m->origin = nf > 10 && nl_gp_origin_parse(fl[10]) > 0 ? nl_gp_origin_parse(fl[10]) : 0;
    nl_prog_init(&m->prog);
    if (nl_parse(fl[9], at, &m->prog, err) != 0) {
      nl_prog_free(&m->prog);
      nl_error_prefix(err, "%s", path);
      rc = -1;
    } else {
      p->n++;
    }
    nl_csv_free(fl, nf);
  }
  free(text);
  if (rc != 0) part_free(p);
  return rc;
}

static int part_write(const char *path, const char *layer, int seed, const nl_gp_result *r,
                      const char *sig, nl_error *err) {
  nl_atomic_file af;
  if (nl_atomic_open(&af, path, err) != 0) return -1;
  fprintf(af.fp, "# normlab evolve part: layer=%s seed=%d finished=%d gens=%d seconds=%.6f | %s\n",
          layer, seed, r->finished, r->gens_done, r->seconds, sig);
  fprintf(af.fp, "%s\n", nl_gp_csv_header);
  nl_fronts_write_rows(af.fp, layer, seed, r->front, r->nfront);
  return nl_atomic_commit(&af, err);
}

void nl_gp_summary_free(nl_gp_summary *s) {
  for (int i = 0; i < s->nlayers; i++) {
    free(s->layers[i].name);
    free(s->layers[i].expr);
    nl_prog_free(&s->layers[i].prog);
  }
  free(s->layers);
  memset(s, 0, sizeof *s);
}

/* Merge the parts of one layer into DIR/LAYER.csv and fill its summary. */
static int merge_layer(const nl_gp_campaign *c, const char *layer, const char *sig,
                       nl_gp_layer_summary *ls, nl_error *err) {
  char *sn = safe_name(layer);
  char *out = nl_xstrdupf("%s/%s.csv", c->outdir, sn);
  nl_atomic_file af;
  if (nl_atomic_open(&af, out, err) != 0) {
    free(sn);
    free(out);
    return -1;
  }
  fprintf(af.fp, "%s\n", nl_gp_csv_header);
  int rc = 0, have = 0;
  for (int k = 0; k < c->seeds && rc == 0; k++) {
    char *pf = nl_xstrdupf("%s/parts/%s.seed%d.csv", c->outdir, sn, k);
    char *pp = nl_xstrdupf("%s/parts/%s.seed%d.partial.csv", c->outdir, sn, k);
    part p;
    const char *use = NULL;
    if (nl_file_exists(pf)) use = pf;
    else if (nl_file_exists(pp)) use = pp;
    if (use) {
      if (part_read(use, &p, err) != 0) {
        rc = -1;
      } else if (strcmp(p.sig, sig) == 0) {
        nl_fronts_write_rows(af.fp, layer, k, p.m, p.n);
        ls->seconds += p.seconds;
        ls->seeds_done += p.finished && use == pf;
        int ch, cheap = -1;
        if (c->cfg->select == NL_GP_BUDGET) {
          ch = nl_gp_select_within(p.m, p.n, ls->limit, &cheap);
          if (cheap >= 0 && (ls->cheapest < 0 || cheap < ls->cheapest)) ls->cheapest = cheap;
        } else {
          ch = nl_gp_select(p.m, p.n, c->cfg->select);
        }
        if (ch >= 0 && (!have || p.m[ch].val_fitness < ls->val_fitness)) {
          have = 1;
          nl_prog_copy(&ls->prog, &p.m[ch].prog);
          ls->seed = k;
          ls->nodes = p.m[ch].nodes;
          ls->flops = p.m[ch].flops;
          ls->val_fitness = p.m[ch].val_fitness;
          ls->val_mse = p.m[ch].val_mse;
          ls->val_r2 = p.m[ch].val_r2;
          ls->origin = p.m[ch].origin;
        }
        part_free(&p);
      } else {
        part_free(&p);
      }
    }
    free(pf);
    free(pp);
  }
  if (c->cfg->select == NL_GP_BUDGET) ls->over_budget = rc == 0 && !have && ls->cheapest >= 0;
  if (rc == 0 && have && c->cfg->select == NL_GP_BUDGET) {
    /* simplified, constants re-fitted (kept when validation F is not worse) */
    const nl_maps_layer *L = nl_maps_find(c->maps, layer);
    nl_fit_polish_info pi;
    if (L && nl_fit_polish(&ls->prog, c->cfg, layer, L->x, L->y, L->n, 100, &pi)) {
      ls->refitted = 1;
      ls->val_fitness = pi.val_after;
      ls->val_mse = pi.val_mse;
      ls->val_r2 = pi.val_r2;
    }
  }
  if (rc == 0 && have) {
    nl_cost_opts rep = {0};
    nl_simplify(&ls->prog); /* what chosen.exprs gets, and its figures */
    ls->nodes = ls->prog.len;
    ls->flops = nl_cost(&ls->prog, &rep);
    free(ls->expr);
    ls->expr = nl_print(&ls->prog, NL_PRINT_EXACT);
  }
  if (rc != 0)
    nl_atomic_abort(&af);
  else
    rc = nl_atomic_commit(&af, err);
  free(sn);
  free(out);
  return rc;
}

/* DIR/chosen.exprs: per layer of the mappings (in their order) this run's
 * choice, else the entry the file held before (`kept`: the other layers'
 * results, and those of this run's layers not reached this time); then the
 * kept entries of layers the mappings do not have. */
static int write_chosen(const nl_gp_campaign *c, const nl_gp_summary *s, const nl_exprset *kept,
                        nl_error *err) {
  nl_exprset set;
  nl_exprset_init(&set);
  const nl_maps *m = c->maps;
  for (int j = 0; j < m->nlayers; j++) {
    const char *name = m->layers[j].name;
    const nl_gp_layer_summary *l = NULL;
    for (int i = 0; i < s->nlayers && !l; i++)
      if (strcmp(s->layers[i].name, name) == 0 && s->layers[i].expr) l = &s->layers[i];
    if (l) {
      char com[320], bud[96] = "";
      if (l->limit > 0)
        snprintf(bud, sizeof bud, " budget=%.4g%s%s", l->limit, l->refitted ? " refit" : "",
                 l->origin ? (l->origin == NL_GP_ORIGIN_SEED ? " origin=seed" : " origin=injected")
                           : "");
      snprintf(com, sizeof com,
               "seed=%d nodes=%d flops=%d val_mse=%.6g val_r2=%.6f val_fitness=%.6g%s%s", l->seed,
               l->nodes, l->flops, l->val_mse, l->val_r2, l->val_fitness, bud,
               l->seeds_done < c->seeds ? " partial" : "");
      nl_exprset_set(&set, l->name, &l->prog, com);
    } else {
      int over = 0; /* a layer over budget this run keeps no older entry */
      for (int i = 0; i < s->nlayers; i++)
        if (strcmp(s->layers[i].name, name) == 0 && s->layers[i].over_budget) over = 1;
      const nl_exprset_entry *e = nl_exprset_find(kept, name);
      if (e && !over) nl_exprset_set(&set, e->name, &e->prog, e->comment);
    }
  }
  for (int k = 0; k < kept->n; k++)
    if (nl_maps_index(m, kept->e[k].name) < 0)
      nl_exprset_set(&set, kept->e[k].name, &kept->e[k].prog, kept->e[k].comment);
  char *path = nl_xstrdupf("%s/chosen.exprs", c->outdir);
  int rc = nl_exprset_save(&set, path, err);
  free(path);
  nl_exprset_free(&set);
  return rc;
}

int nl_gp_campaign_check_layer(const nl_maps *m, const char *layer, nl_error *err) {
  if (nl_maps_index(m, layer) >= 0) return 0;
  if (m->path)
    return nl_fail(err, NL_EINPUT, "%s: no layer '%s' (see 'normlab maps --maps %s')", m->path,
                   layer, m->path);
  return nl_fail(err, NL_EINPUT, "no layer '%s' in the mappings", layer);
}

/* The signature of the first part of `layer` on disk (finished or partial,
 * seed 0 upwards), or NULL when it has none; *path gets its file. */
static char *first_part_sig(const char *outdir, const char *layer, char **path) {
  char *sn = safe_name(layer), *sig = NULL;
  *path = NULL;
  for (int k = 0; !sig; k++) {
    char *pf = nl_xstrdupf("%s/parts/%s.seed%d.csv", outdir, sn, k);
    char *pp = nl_xstrdupf("%s/parts/%s.seed%d.partial.csv", outdir, sn, k);
    const char *use = nl_file_exists(pf) ? pf : nl_file_exists(pp) ? pp : NULL;
    part p;
    nl_error e2;
    if (use && part_read(use, &p, &e2) == 0) {
      sig = p.sig;
      p.sig = NULL;
      *path = nl_xstrdup(use);
      part_free(&p);
    }
    free(pf);
    free(pp);
    if (!use) break;
  }
  free(sn);
  return sig;
}

/* Before any search: the results already in outdir must come from the
 * run's mappings and settings. A finished part of this run's layers with
 * another signature, and a layer of chosen.exprs whose parts were
 * computed from other mappings, are refused, naming the part and what
 * differs; with c->recompute such parts are searched again and such
 * entries dropped from `kept`. */
static int check_existing(const nl_gp_campaign *c, const int *li, int nl, const char *sig,
                          nl_exprset *kept, nl_error *err) {
  const nl_maps *m = c->maps;
  const char *mname = m->path ? m->path : "the mappings";
  const char *hint = c->recompute ? "" : "; rerun with the part's mappings and settings to resume it, "
                                         "add --recompute to search it again, or choose another "
                                         "--output";
  for (int i = 0; i < nl; i++) {
    const char *layer = m->layers[li[i]].name;
    char *sn = safe_name(layer);
    int stale = 0, rc = 0;
    for (int k = 0; k < c->seeds && rc == 0; k++) {
      char *pf = nl_xstrdupf("%s/parts/%s.seed%d.csv", c->outdir, sn, k);
      part p;
      nl_error e2;
      if (nl_file_exists(pf) && part_read(pf, &p, &e2) == 0) {
        if (p.finished && strcmp(p.sig, sig) != 0) {
          stale = 1;
          if (!c->recompute) {
            char *d = sig_diff(p.sig, sig, mname);
            rc = nl_fail(err, NL_EINPUT, "%s %s%s", pf, d, hint);
            free(d);
          }
        }
        part_free(&p);
      }
      free(pf);
    }
    free(sn);
    if (rc) return -1;
    if (stale) nl_exprset_remove(kept, layer);
  }
  /* the other layers chosen.exprs holds: from the same mappings? */
  size_t n;
  const char *fp = sig_value(sig, "maps", &n);
  for (int k = 0; k < kept->n;) {
    const char *name = kept->e[k].name;
    int in_run = 0;
    for (int i = 0; i < nl && !in_run; i++) in_run = strcmp(m->layers[li[i]].name, name) == 0;
    char *path = NULL, *psig = in_run ? NULL : first_part_sig(c->outdir, name, &path);
    size_t pn = 0;
    const char *pv = psig ? sig_value(psig, "maps", &pn) : NULL;
    int other = psig && !c->per_layer_maps && (!pv || pn != n || strncmp(pv, fp, n) != 0);
    int rc = 0;
    if (other && !c->recompute)
      rc = nl_fail(err, NL_EINPUT,
                   "%s/chosen.exprs holds layer %s, whose part %s %s: one result directory "
                   "holds the results of one mappings file; choose another --output, or add "
                   "--recompute to drop the layer from chosen.exprs",
                   c->outdir, name, path, pv ? "was computed from other mappings" :
                   "was written by an older normlab, without a mappings fingerprint");
    free(path);
    free(psig);
    if (rc) return -1;
    if (other) nl_exprset_remove(kept, name);
    else k++;
  }
  return 0;
}

typedef struct wrap {
  const nl_gp_campaign *c;
  int task, ntasks;
  int stopped;
} wrap;

static int wrap_cb(const nl_gp_progress *p, void *u) {
  wrap *w = u;
  nl_gp_progress q = *p;
  q.task = w->task;
  q.ntasks = w->ntasks;
  int r = w->c->progress ? w->c->progress(&q, w->c->user) : 0;
  if (r) w->stopped = 1;
  return r;
}

/* The layers' width d (for NL_GP_LN limits): the configuration's, else
 * the mappings' "width" metadata, else 0 (unknown). */
static int maps_width(const nl_gp_config *cfg, const nl_maps *m) {
  if (cfg->width > 0) return cfg->width;
  const char *w = nl_maps_get_meta(m, "width");
  long v = w ? strtol(w, NULL, 10) : 0;
  return v > 0 && v < 1000000 ? (int)v : 0;
}

static int campaign_run(const nl_gp_campaign *c, nl_gp_summary *out, nl_error *err);

int nl_gp_campaign_run(const nl_gp_campaign *c0, nl_gp_summary *out, nl_error *err) {
  nl_gp_config cfg = *c0->cfg;
  cfg.width = maps_width(c0->cfg, c0->maps);
  nl_gp_campaign c = *c0;
  c.cfg = &cfg;
  return campaign_run(&c, out, err);
}

/* A seed of the initial population must fit the search's node limit. */
static int check_init(const nl_gp_campaign *c, nl_error *err) {
  if (!c->init) return 0;
  for (int k = 0; k < c->init->n; k++) {
    const nl_exprset_entry *e = &c->init->e[k];
    if (e->prog.len > c->cfg->max_nodes)
      return nl_fail(err, NL_EINPUT,
                     "%s:%d: %s's expression has %d nodes, more than --max-nodes %d",
                     c->init_path ? c->init_path : "init", e->line, e->name, e->prog.len,
                     c->cfg->max_nodes);
  }
  return 0;
}

static int campaign_run(const nl_gp_campaign *c, nl_gp_summary *out, nl_error *err) {
  memset(out, 0, sizeof *out);
  double t0 = nl_now();
  if (nl_gp_config_check(c->cfg, err) != 0) return -1;
  if (check_init(c, err) != 0) return -1;
  if (c->seeds < 1) return nl_fail(err, NL_EINPUT, "seeds must be >= 1, got %d", c->seeds);
  const nl_maps *m = c->maps;
  int nl = c->layers ? c->nlayers : m->nlayers;
  int *li = nl_xmalloc(sizeof(int) * (size_t)(nl ? nl : 1));
  for (int i = 0; i < nl; i++) {
    if (c->layers && nl_gp_campaign_check_layer(m, c->layers[i], err) != 0) {
      free(li);
      return -1;
    }
    li[i] = c->layers ? nl_maps_index(m, c->layers[i]) : i;
  }
  /* every layer searchable, before hours go into the first */
  for (int i = 0; i < nl; i++) {
    const nl_maps_layer *L = &m->layers[li[i]];
    if (nl_gp_check_points(c->cfg, L->name, L->x, L->y, L->n, err) != 0) {
      if (m->path) nl_error_prefix(err, "%s", m->path);
      free(li);
      return -1;
    }
  }
  char *parts = nl_xstrdupf("%s/parts", c->outdir);
  if (nl_mkdir_p(parts, err) != 0) {
    free(parts);
    free(li);
    return -1;
  }
  char sig[1024];
  signature(c->cfg, nl_maps_fingerprint(m), init_fingerprint(c->init), sig, sizeof sig);
  /* what the directory already holds */
  nl_exprset kept;
  nl_exprset_init(&kept);
  char *chosen = nl_xstrdupf("%s/chosen.exprs", c->outdir);
  int rc = nl_file_exists(chosen) ? nl_exprset_load(chosen, &kept, err) : 0;
  free(chosen);
  if (rc == 0) rc = check_existing(c, li, nl, sig, &kept, err);
  if (rc != 0) {
    nl_exprset_free(&kept);
    free(parts);
    free(li);
    return -1;
  }
  out->layers = nl_xcalloc((size_t)(nl ? nl : 1), sizeof(nl_gp_layer_summary));
  out->nlayers = nl;
  for (int i = 0; i < nl; i++) {
    out->layers[i].name = nl_xstrdup(m->layers[li[i]].name);
    nl_prog_init(&out->layers[i].prog);
    out->layers[i].cheapest = -1;
    if (c->cfg->select == NL_GP_BUDGET)
      out->layers[i].limit = nl_gp_limit(c->cfg->budget, c->cfg->width);
  }
  int stopped = 0;
  wrap w = {c, 0, nl * c->seeds, 0};
  for (int i = 0; i < nl && rc == 0 && !stopped; i++) {
    const nl_maps_layer *L = &m->layers[li[i]];
    char *sn = safe_name(L->name);
    for (int k = 0; k < c->seeds && rc == 0 && !stopped; k++) {
      w.task = i * c->seeds + k;
      char *pf = nl_xstrdupf("%s/%s.seed%d.csv", parts, sn, k);
      char *pp = nl_xstrdupf("%s/%s.seed%d.partial.csv", parts, sn, k);
      int done = 0;
      if (nl_file_exists(pf)) {
        part p;
        nl_error e2;
        if (part_read(pf, &p, &e2) == 0) {
          done = p.finished && strcmp(p.sig, sig) == 0;
          part_free(&p);
        }
      }
      if (done) {
        out->layers[i].skipped++;
      } else if (nl_interrupted()) {
        stopped = 1;
      } else {
        nl_gp_result r;
        const nl_exprset_entry *ie = c->init ? nl_exprset_find(c->init, L->name) : NULL;
        nl_gp_extra xtra = {ie ? &ie->prog : NULL, ie ? 1 : 0, c->inject, c->inject_user};
        if (nl_gp_run_with(c->cfg, &xtra, L->name, L->x, L->y, L->n, k, wrap_cb, &w, &r, err) !=
            0) {
          nl_error_prefix(err, "layer %s seed %d", L->name, k);
          rc = -1;
        } else {
          if (r.finished) {
            rc = part_write(pf, L->name, k, &r, sig, err);
            if (rc == 0) unlink(pp);
          } else {
            rc = part_write(pp, L->name, k, &r, sig, err);
            stopped = 1;
          }
          nl_gp_result_free(&r);
        }
      }
      free(pf);
      free(pp);
    }
    free(sn);
    if (rc == 0) rc = merge_layer(c, L->name, sig, &out->layers[i], err);
    if (rc == 0) rc = write_chosen(c, out, &kept, err);
  }
  nl_exprset_free(&kept);
  free(parts);
  free(li);
  out->seconds = nl_now() - t0;
  if (rc != 0) return -1;
  if (stopped) return nl_fail(err, NL_EINTR, "stopped; rerun the same command to resume");
  return 0;
}
