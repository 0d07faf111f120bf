/* Replacement of the norm slots by a set, DyT or LayerNorm. */
#include "model/replace.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "base/mem.h"

static int slot_index(const nl_vit *m, const char *name) {
  for (int i = 0; i < m->nnorms; i++)
    if (strcmp(m->norms[i].name, name) == 0) return i;
  return -1;
}

/* "file:line: " or "file: " or "" for messages about a set entry. */
static void where(char *buf, size_t cap, const char *source, int line) {
  if (source && line > 0) snprintf(buf, cap, "%s:%d: ", source, line);
  else if (source) snprintf(buf, cap, "%s: ", source);
  else if (line > 0) snprintf(buf, cap, "line %d: ", line);
  else buf[0] = '\0';
}

static int check_prog(const nl_prog *p, const char *at, const char *layer, nl_error *err) {
  nl_prog c;
  nl_prog_init(&c);
  if (p->len > 0) nl_prog_copy(&c, p);
  int ok = p->len > 0 && nl_prog_fix_sizes(&c) == 0;
  nl_prog_free(&c);
  if (!ok) return nl_fail(err, NL_EINPUT, "%slayer '%s': not a well-formed expression", at, layer);
  for (int k = 0; k < p->len; k++)
    if (p->nodes[k].op == NL_OP_CONST && !isfinite(p->nodes[k].val))
      return nl_fail(err, NL_EINPUT, "%slayer '%s': constant %g is not a finite number", at,
                     layer, (double)p->nodes[k].val);
  return 0;
}

/* Validate everything before touching the model; fills idx[] (slot of
 * each entry). */
static int validate(const nl_vit *m, const nl_replace_spec *s, int *idx, nl_error *err) {
  char at[600];
  if (s->mode == NL_REPLACE_SET) {
    if (!s->set) return nl_fail(err, NL_EINPUT, "no expression set given");
    for (int i = 0; i < s->set->n; i++) {
      const nl_exprset_entry *e = &s->set->e[i];
      where(at, sizeof at, s->source, e->line);
      idx[i] = slot_index(m, e->name);
      if (idx[i] < 0)
        return nl_fail(err, NL_EINPUT,
                       "%sunknown layer '%s': the model's norm layers are blocks.0.norm1 .. "
                       "blocks.%d.norm2 and %s",
                       at, e->name, m->cfg.depth - 1, m->final_norm->name);
      if (check_prog(&e->prog, at, e->name, err)) return -1;
    }
  } else if (s->mode == NL_REPLACE_DYT) {
    if (s->alphas) {
      for (int i = 0; i < s->alphas->n; i++) {
        where(at, sizeof at, s->source, 0);
        idx[i] = slot_index(m, s->alphas->names[i]);
        if (idx[i] < 0)
          return nl_fail(err, NL_EINPUT, "%sunknown layer '%s' (entry %d): not a norm layer of the model",
                         at, s->alphas->names[i], i + 1);
        if (!isfinite(s->alphas->alphas[i]))
          return nl_fail(err, NL_EINPUT, "%slayer '%s': alpha %g is not a finite number", at,
                         s->alphas->names[i], (double)s->alphas->alphas[i]);
      }
    } else if (!isfinite(s->alpha)) {
      return nl_fail(err, NL_EINPUT, "DyT alpha %g is not a finite number", (double)s->alpha);
    }
  } else if (s->mode != NL_REPLACE_LAYERNORM) {
    return nl_fail(err, NL_EINPUT, "unknown replacement mode %d", (int)s->mode);
  }
  return 0;
}

int nl_vit_replace(nl_vit *m, const nl_replace_spec *s, int *kept, nl_error *err) {
  int nent = s->mode == NL_REPLACE_SET && s->set ? s->set->n
             : s->mode == NL_REPLACE_DYT && s->alphas ? s->alphas->n
                                                      : 0;
  int *idx = nl_xcalloc((size_t)(nent ? nent : 1), sizeof(int));
  if (validate(m, s, idx, err)) {
    free(idx);
    return -1;
  }
  int *k = nl_xcalloc((size_t)m->nnorms, sizeof(int));
  int rc = 0;
  if (s->mode == NL_REPLACE_LAYERNORM || (s->mode == NL_REPLACE_DYT && !s->alphas)) {
    for (int i = 0; i < m->nnorms; i++) {
      if (s->mode == NL_REPLACE_DYT) nl_norm_set_dyt(m, &m->norms[i], s->alpha);
      else nl_norm_set_layernorm(m, &m->norms[i]);
    }
  } else {
    for (int i = 0; i < m->nnorms; i++) k[i] = 1;
    for (int i = 0; i < nent && !rc; i++) {
      nl_norm *n = &m->norms[idx[i]];
      k[idx[i]] = 0;
      if (s->mode == NL_REPLACE_DYT) {
        nl_norm_set_dyt(m, n, s->alphas->alphas[i]);
      } else if (nl_norm_set_expr(m, n, &s->set->e[i].prog, err)) {
        char at[600];
        where(at, sizeof at, s->source, s->set->e[i].line);
        size_t l = strlen(at);
        if (l >= 2) at[l - 2] = '\0'; /* nl_error_prefix adds ": " */
        if (at[0]) nl_error_prefix(err, "%s", at);
        rc = -1;
      }
    }
  }
  if (kept && !rc) memcpy(kept, k, sizeof(int) * (size_t)m->nnorms);
  free(k);
  free(idx);
  return rc;
}

void nl_dyt_alphas_free(nl_dyt_alphas *a) {
  for (int i = 0; i < a->n; i++) free(a->names[i]);
  free(a->names);
  free(a->alphas);
  memset(a, 0, sizeof *a);
}

static void push_alpha(nl_dyt_alphas *a, const char *name, double v) {
  a->names = nl_xrealloc(a->names, sizeof(char *) * (size_t)(a->n + 1));
  a->alphas = nl_xrealloc(a->alphas, sizeof(float) * (size_t)(a->n + 1));
  a->names[a->n] = nl_xstrdup(name);
  a->alphas[a->n] = (float)v;
  a->n++;
}

int nl_dyt_alphas_load(nl_dyt_alphas *a, const char *path, nl_error *err) {
  memset(a, 0, sizeof *a);
  json_error_t je;
  json_t *root = json_load_file(path, 0, &je);
  if (!root) {
    if (je.line <= 0)
      return nl_fail(err, NL_EINPUT, "%s: cannot read DyT alphas: %s", path, je.text);
    return nl_fail(err, NL_EINPUT, "%s:%d:%d: not JSON: %s", path, je.line, je.column, je.text);
  }
  int rc = 0;
  json_t *layers = json_is_object(root) ? json_object_get(root, "layers") : NULL;
  if (json_is_array(layers)) {
    size_t i;
    json_t *e;
    json_array_foreach(layers, i, e) {
      json_t *nm = json_object_get(e, "name"), *al = json_object_get(e, "alpha");
      if (!json_is_string(nm) || !json_is_number(al)) {
        rc = nl_fail(err, NL_EINPUT, "%s: layers[%zu]: want {\"name\": STRING, \"alpha\": NUMBER}",
                     path, i);
        break;
      }
      push_alpha(a, json_string_value(nm), json_number_value(al));
    }
  } else if (json_is_object(root)) {
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
      if (!json_is_number(v)) {
        rc = nl_fail(err, NL_EINPUT, "%s: '%s': alpha is not a number", path, key);
        break;
      }
      push_alpha(a, key, json_number_value(v));
    }
  } else {
    rc = nl_fail(err, NL_EINPUT,
                 "%s: want the output of `normlab dyt --json` or {\"LAYER\": ALPHA, ...}", path);
  }
  if (!rc && a->n == 0) rc = nl_fail(err, NL_EINPUT, "%s: no layers", path);
  for (int i = 0; !rc && i < a->n; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(a->names[i], a->names[j]) == 0) {
        rc = nl_fail(err, NL_EINPUT, "%s: layer '%s' appears twice", path, a->names[i]);
        break;
      }
  json_decref(root);
  if (rc) nl_dyt_alphas_free(a);
  return rc;
}

/* ---- the spec's text ---- */

#define SPEC_FORMS "FILE.exprs, dyt, dyt=ALPHA, dyt=FILE.json or ln"

int nl_replace_parse(nl_replace_parsed *p, const char *text, nl_error *err) {
  memset(p, 0, sizeof *p);
  nl_exprset_init(&p->set);
  p->spec.alpha = 0.5f;
  if (!text || !*text) return nl_fail(err, NL_EINPUT, "empty replacement: expected " SPEC_FORMS);
  if (strcmp(text, "ln") == 0 || strcmp(text, "layernorm") == 0) {
    p->spec.mode = NL_REPLACE_LAYERNORM;
    return 0;
  }
  if (strcmp(text, "dyt") == 0 || strncmp(text, "dyt=", 4) == 0) {
    p->spec.mode = NL_REPLACE_DYT;
    if (text[3] == '\0') return 0;
    const char *v = text + 4;
    if (!*v) return nl_fail(err, NL_EINPUT, "dyt=: give an alpha or a JSON file of alphas");
    char *end;
    double x = strtod(v, &end);
    if (end != v && *end == '\0') {
      if (!isfinite(x) || fabs(x) > 3.4e38)
        return nl_fail(err, NL_EINPUT, "%s: alpha is not a finite number", text);
      p->spec.alpha = (float)x;
      return 0;
    }
    if (nl_dyt_alphas_load(&p->alphas, v, err)) return -1;
    p->spec.alphas = &p->alphas;
    p->spec.source = v;
    return 0;
  }
  if (!nl_file_exists(text))
    return nl_fail(err, NL_EINPUT, "'%s': no such file; a replacement is " SPEC_FORMS, text);
  p->spec.mode = NL_REPLACE_SET;
  if (nl_exprset_load(text, &p->set, err)) return -1;
  if (p->set.n == 0) return nl_fail(err, NL_EINPUT, "%s: the set has no expressions", text);
  p->spec.set = &p->set;
  p->spec.source = text;
  return 0;
}

void nl_replace_parsed_free(nl_replace_parsed *p) {
  nl_exprset_free(&p->set);
  nl_dyt_alphas_free(&p->alphas);
}
