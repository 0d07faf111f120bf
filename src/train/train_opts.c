/* Training settings: parser, recorded config, resume check (train_opts.h). */
#include "train/train_opts.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/text.h"

typedef enum { K_STR, K_INT, K_NUM, K_FLAG, K_CHOICE } kind;

/* One option: its name, type, range and where it lands. */
typedef struct {
  const char *name;
  kind k;
  double lo, hi; /* K_INT, K_NUM: accepted range */
  int lo_open;   /* K_NUM: lo itself is excluded */
  size_t off;    /* K_STR: char *, K_INT: long, K_NUM: double, K_FLAG: int */
  int set_off;   /* >= 0: offset of the int recording that it was given */
  const char *choices; /* K_CHOICE */
} ospec;

#define OFF(f) offsetof(nl_train_opts, f)
static const ospec specs[] = {
    {"model", K_STR, 0, 0, 0, OFF(model), -1, NULL},
    {"data", K_STR, 0, 0, 0, OFF(data), -1, NULL},
    {"eval", K_STR, 0, 0, 0, OFF(eval), -1, NULL},
    {"epochs", K_INT, 1, 100000, 0, OFF(epochs), -1, NULL},
    {"lr", K_NUM, 0, 10, 1, OFF(lr), -1, NULL},
    {"lr-affine", K_NUM, 0, 10, 1, OFF(lr_affine), (int)OFF(lr_affine_set), NULL},
    {"lr-alpha", K_NUM, 0, 10, 1, OFF(lr_alpha), (int)OFF(lr_alpha_set), NULL},
    {"variant", K_CHOICE, 0, 0, 0, 0, -1, NL_TRAIN_VARIANTS},
    {"teacher", K_STR, 0, 0, 0, OFF(teacher), -1, NULL},
    {"tau", K_NUM, 0, 1000, 1, OFF(tau), (int)OFF(tau_set), NULL},
    {"lambda", K_NUM, 0, 1, 0, OFF(lambda), (int)OFF(lambda_set), NULL},
    {"batch", K_INT, 1, 65536, 0, OFF(batch), -1, NULL},
    {"wd", K_NUM, 0, 10, 0, OFF(wd), -1, NULL},
    {"warmup", K_INT, 0, 1000000000, 0, OFF(warmup), -1, NULL},
    {"schedule", K_CHOICE, 0, 0, 0, 0, -1, "cosine|constant"},
    {"drop-path", K_NUM, 0, 0.99, 0, OFF(drop_path), -1, NULL},
    {"augment", K_FLAG, 0, 0, 0, OFF(augment_set), -1, NULL},
    {"no-augment", K_FLAG, 0, 0, 0, OFF(no_augment_set), -1, NULL},
    {"images", K_INT, 0, 1000000000, 0, OFF(limit), -1, NULL},
    {"eval-images", K_INT, 0, 1000000000, 0, OFF(eval_limit), -1, NULL},
    {"init", K_CHOICE, 0, 0, 0, 0, -1, "model|random"},
    {"seed", K_INT, 0, 2147483647, 0, OFF(seed), -1, NULL},
    {"threads", K_INT, 1, 256, 0, 0, -1, NULL},
    {"output", K_STR, 0, 0, 0, OFF(output), -1, NULL},
    {"resume", K_FLAG, 0, 0, 0, OFF(resume), -1, NULL},
    {"json", K_FLAG, 0, 0, 0, OFF(json), -1, NULL},
    {"skip-bad", K_FLAG, 0, 0, 0, OFF(skip_bad), -1, NULL},
    {"precision", K_CHOICE, 0, 0, 0, 0, -1, "fp32|bf16"},
};
#define NSPECS (sizeof specs / sizeof specs[0])

void nl_train_opts_init(nl_train_opts *o) {
  memset(o, 0, sizeof *o);
  o->data = nl_xstrdup("fmnist:train");
  o->eval = nl_xstrdup("fmnist:test");
  o->epochs = 1;
  o->batch = 256;
  o->lr = o->lr_affine = o->lr_alpha = 0.0005;
  o->tau = 4;
  o->lambda = 0.5;
  o->wd = 0.05;
  o->drop_path = 0.1;
  o->cosine = 1;
  o->augment = 1;
}

void nl_train_opts_free(nl_train_opts *o) {
  free(o->model), free(o->teacher), free(o->data), free(o->eval), free(o->output);
  memset(o, 0, sizeof *o);
}

/* Older names of options, still accepted (normlab(1), OPTION NAMES). */
static const struct {
  const char *old, *name;
} renamed[] = {{"limit", "images"}, {"eval-limit", "eval-images"}};

const char *nl_train_opts_renamed(const char *key) {
  char name[64];
  snprintf(name, sizeof name, "%s", key);
  for (char *p = name; *p; p++)
    if (*p == '_') *p = '-';
  for (size_t i = 0; i < sizeof renamed / sizeof renamed[0]; i++)
    if (strcmp(renamed[i].old, name) == 0) return renamed[i].name;
  return NULL;
}

/* The spec of key ('_' standing for '-', an old name for its option), or
 * NULL. */
static const ospec *find(const char *key, char *name, size_t cap) {
  const char *now = nl_train_opts_renamed(key);
  snprintf(name, cap, "%s", now ? now : key);
  for (char *p = name; *p; p++)
    if (*p == '_') *p = '-';
  for (size_t i = 0; i < NSPECS; i++)
    if (strcmp(specs[i].name, name) == 0) return &specs[i];
  return NULL;
}

int nl_train_opts_known(const char *key) {
  char name[64];
  return find(key, name, sizeof name) != NULL;
}

int nl_train_opts_set(nl_train_opts *o, const char *key, const char *value, nl_error *err) {
  char name[64];
  const ospec *s = find(key, name, sizeof name);
  if (!s) {
    const char *names[sizeof specs / sizeof specs[0]];
    for (size_t i = 0; i < NSPECS; i++) names[i] = specs[i].name;
    const char *near = nl_closest(name, names, NSPECS);
    if (near)
      return nl_fail(err, NL_EINPUT, "train has no option --%s; did you mean --%s?", name, near);
    return nl_fail(err, NL_EINPUT, "train has no option --%s (see 'normlab help train')", name);
  }
  char *base = (char *)o, *end;
  if (s->k != K_FLAG && !value)
    return nl_fail(err, NL_EINPUT, "option --%s needs a value", s->name);
  switch (s->k) {
    case K_STR:
      free(*(char **)(base + s->off));
      *(char **)(base + s->off) = nl_xstrdup(value);
      break;
    case K_FLAG: {
      int on;
      if (!value || strcmp(value, "1") == 0 || strcmp(value, "true") == 0) on = 1;
      else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0) on = 0;
      else return nl_fail(err, NL_EINPUT, "option --%s takes no value", s->name);
      *(int *)(base + s->off) = on;
      break;
    }
    case K_INT: {
      errno = 0;
      long v = strtol(value, &end, 10);
      if (*value == '\0' || *end != '\0' || errno == ERANGE)
        return nl_fail(err, NL_EINPUT, "--%s expects an integer, got '%s'", s->name, value);
      if (v < (long)s->lo || v > (long)s->hi)
        return nl_fail(err, NL_EINPUT, "--%s must be between %ld and %ld, got %ld", s->name,
                       (long)s->lo, (long)s->hi, v);
      if (strcmp(s->name, "threads") == 0) o->threads = (int)v;
      else *(long *)(base + s->off) = v;
      break;
    }
    case K_NUM: {
      errno = 0;
      double v = strtod(value, &end);
      if (*value == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v))
        return nl_fail(err, NL_EINPUT, "--%s expects a finite number, got '%s'", s->name, value);
      if (v < s->lo || v > s->hi || (s->lo_open && v == s->lo))
        return nl_fail(err, NL_EINPUT, "--%s: expected a number in %c%g, %g], got %g", s->name,
                       s->lo_open ? '(' : '[', s->lo, s->hi, v);
      *(double *)(base + s->off) = v;
      break;
    }
    case K_CHOICE:
      if (nl_choice_index(s->choices, value) < 0)
        return nl_fail(err, NL_EINPUT, "--%s expects one of %s, got '%s'", s->name, s->choices,
                       value);
      if (strcmp(s->name, "variant") == 0) {
        o->affine = strcmp(value, "affine") == 0 || strcmp(value, "A") == 0;
        o->distil = strcmp(value, "D") == 0;
        o->tb_only = strcmp(value, "tb") == 0;
      } else if (strcmp(s->name, "schedule") == 0) {
        o->cosine = strcmp(value, "cosine") == 0;
      } else if (strcmp(s->name, "precision") == 0) {
        o->precision = strcmp(value, "bf16") == 0 ? NL_PREC_BF16 : NL_PREC_FP32;
      } else {
        o->random_init = strcmp(value, "random") == 0;
      }
      break;
  }
  if (s->set_off >= 0) *(int *)(base + s->set_off) = 1;
  return 0;
}

int nl_train_opts_finish(nl_train_opts *o, nl_error *err) {
  if (!o->output || !*o->output) return nl_fail(err, NL_EINPUT, "missing required option --output DIR");
  if (o->augment_set && o->no_augment_set)
    return nl_fail(err, NL_EINPUT, "--augment and --no-augment contradict each other");
  o->augment = !o->no_augment_set;
  if (!o->teacher && (o->tau_set || o->lambda_set))
    return nl_fail(err, NL_EINPUT, "--tau and --lambda need --teacher");
  if (!o->teacher && o->distil)
    return nl_fail(err, NL_EINPUT, "variant D (distillation) needs --teacher");
  if (!o->lr_affine_set) o->lr_affine = o->lr;
  if (!o->lr_alpha_set) o->lr_alpha = o->lr;
  return 0;
}

/* ---- fingerprint ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

uint64_t nl_vit_fingerprint(const nl_vit *m) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int i = 0; i < m->ntensors; i++) {
    const nl_param *p = &m->tensors[i];
    h = fnv(h, p->name, strlen(p->name) + 1);
    h = fnv(h, p->shape, sizeof(int64_t) * (size_t)p->ndim);
    h = fnv(h, m->params + p->offset, sizeof(float) * p->numel);
  }
  for (int i = 0; i < m->nnorms; i++) {
    const nl_norm *n = &m->norms[i];
    const char *k = nl_norm_kind_name(n->kind);
    h = fnv(h, k, strlen(k) + 1);
    if (n->kind == NL_NORM_EXPR && n->expr) h = fnv(h, n->expr, strlen(n->expr) + 1);
  }
  return h;
}

/* ---- config ---- */

static json_t *hex(uint64_t v) {
  char s[24];
  snprintf(s, sizeof s, "%016llx", (unsigned long long)v);
  return json_string(s);
}

json_t *nl_train_config(const nl_train_opts *o, const nl_vit *model, const nl_vit *teacher,
                        long train_images, long batch) {
  json_t *c = json_pack(
      "{s:s, s:s, s:s, s:s?, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:s, "
      "s:b, s:s, s:I}",
      "model", o->model ? o->model : "", "data", o->data, "eval", o->eval, "teacher", o->teacher,
      "variant", o->tb_only ? "tb" : o->affine ? "affine" : "full", "epochs", (json_int_t)o->epochs, "batch",
      (json_int_t)batch, "train_images", (json_int_t)train_images, "lr", o->lr, "lr_affine",
      o->lr_affine, "lr_alpha", o->lr_alpha, "wd", o->wd, "drop_path", o->drop_path, "tau",
      o->tau, "lambda", o->lambda, "warmup", (json_int_t)o->warmup, "schedule",
      o->cosine ? "cosine" : "constant", "augment", o->augment, "init",
      o->random_init ? "random" : "model", "seed", (json_int_t)o->seed);
  json_object_set_new(c, "images", json_integer((json_int_t)o->limit));
  json_object_set_new(c, "eval_images", json_integer((json_int_t)o->eval_limit));
  json_object_set_new(c, "skip_bad", json_boolean(o->skip_bad));
  json_object_set_new(c, "precision", json_string(nl_precision_name(o->precision)));
  if (model) json_object_set_new(c, "model_fingerprint", hex(nl_vit_fingerprint(model)));
  json_object_set_new(c, "teacher_fingerprint",
                      teacher ? hex(nl_vit_fingerprint(teacher)) : json_null());
  return c;
}

/* The keys compared on --resume, with the option each comes from. */
static const struct {
  const char *key, *opt;
} compared[] = {
    {"model_fingerprint", "model"}, {"teacher_fingerprint", "teacher"},
    {"data", "data"},               {"eval", "eval"},
    {"images", "images"},           {"train_images", "images"},
    {"eval_images", "eval-images"}, {"variant", "variant"},
    {"batch", "batch"},             {"lr", "lr"},
    {"lr_affine", "lr-affine"},     {"lr_alpha", "lr-alpha"},
    {"wd", "wd"},                   {"drop_path", "drop-path"},
    {"tau", "tau"},                 {"lambda", "lambda"},
    {"warmup", "warmup"},           {"schedule", "schedule"},
    {"augment", "augment"},         {"init", "init"},
    {"seed", "seed"},               {"precision", "precision"},
};

static void show(char *buf, size_t cap, const json_t *v) {
  if (json_is_string(v)) {
    snprintf(buf, cap, "'%s'", json_string_value(v));
  } else if (json_is_integer(v)) {
    snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
  } else if (json_is_real(v)) {
    double x = json_real_value(v);
    snprintf(buf, cap, "%.6g", x);
    if (strtod(buf, NULL) != x) snprintf(buf, cap, "%.17g", x);
  } else if (json_is_boolean(v)) {
    snprintf(buf, cap, "%s", json_is_true(v) ? "on" : "off");
  } else {
    snprintf(buf, cap, "none");
  }
}

int nl_train_config_check_resume(const json_t *saved, const json_t *now, const char *dir,
                                 nl_error *err) {
  if (!json_is_object(saved))
    return nl_fail(err, NL_EINPUT, "%s: the run's state records no config", dir);
  for (size_t i = 0; i < sizeof compared / sizeof compared[0]; i++) {
    const json_t *a = json_object_get(saved, compared[i].key);
    /* runs started before the options were renamed */
    if (!a && strcmp(compared[i].key, "images") == 0) a = json_object_get(saved, "limit");
    if (!a && strcmp(compared[i].key, "eval_images") == 0) a = json_object_get(saved, "eval_limit");
    const json_t *b = json_object_get(now, compared[i].key);
    if (!a || !b || json_equal((json_t *)a, (json_t *)b)) continue;
    /* numbers of either JSON type: equal values are equal */
    if (json_is_number(a) && json_is_number(b) && json_number_value(a) == json_number_value(b))
      continue;
    const char *opt = compared[i].opt;
    if (strcmp(opt, "model") == 0 || strcmp(opt, "teacher") == 0) {
      const json_t *pa = json_object_get(saved, opt), *pb = json_object_get(now, opt);
      const char *sa = json_is_string(pa) ? json_string_value(pa) : NULL;
      const char *sb = json_is_string(pb) ? json_string_value(pb) : NULL;
      if (!json_is_string(a) || !json_is_string(b))
        return nl_fail(err, NL_EINPUT,
                       "--%s: the run in %s was started %s --%s%s%s, this command %s; give the "
                       "run's own --%s to resume it, or choose another --output",
                       opt, dir, json_is_string(a) ? "with" : "without", opt, sa ? " " : "",
                       json_is_string(a) && sa ? sa : "", json_is_string(b) ? "gives one" : "gives none",
                       opt);
      return nl_fail(err, NL_EINPUT,
                     "--%s: %s is not the %s the run in %s was started from (%s, fingerprint %s; "
                     "this one's %s); give that %s to resume it, or choose another --output",
                     opt, sb ? sb : "?", opt, dir, sa ? sa : "?", json_string_value(a),
                     json_string_value(b), opt);
    }
    char va[96], vb[96];
    const char *what = strcmp(compared[i].key, "train_images") == 0 ? " training images" : "";
    show(va, sizeof va, a);
    show(vb, sizeof vb, b);
    return nl_fail(err, NL_EINPUT,
                   "--%s: the run in %s was started with %s%s, this command gives %s%s; give the "
                   "run's own value to resume it, or choose another --output (on --resume only "
                   "--epochs, --threads and --json may change)",
                   opt, dir, va, what, vb, what);
  }
  return 0;
}
