/* One forward pass: inference (nl_vit_forward, model/) and the trainer's
 * forward in eval mode (nl_vt_forward, train/) run the same layer
 * functions, so on the timm fixtures they must give the same activations,
 * layer by layer, bitwise, for every norm kind: LayerNorm (as timm
 * trained them), DyT (a different alpha per slot), an expression norm, and
 * the three kinds mixed over the slots. The LayerNorm logits of both are
 * also held against timm's reference logits (the outside reference; the
 * norm taps are checked against timm's in test_vit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/threads.h"
#include "expr/expr.h"
#include "model/safetensors.h"
#include "model/vit.h"
#include "train/vit_train.h"

enum { NB = 8 }; /* the reference images of the fixtures */

static const char *fixture(const char *name) {
  static char buf[512];
  const char *dir = getenv("NL_FIXTURES");
  snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "../shared/fixtures/timm", name);
  return buf;
}

typedef struct cmp {
  double worst;      /* largest |a - b| over everything compared */
  const char *where; /* first tensor that differs at all */
  int layer;
} cmp;

static void same(cmp *c, const char *what, int layer, const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (a[i] != b[i] && !(isnan(a[i]) && isnan(b[i]))) {
      if (!c->where) c->where = what, c->layer = layer;
      if (!(d <= c->worst)) c->worst = d;
    }
  }
}

static double maxdiff_ref(const nl_st_file *ref, const char *name, const float *x, size_t n) {
  nl_error err;
  size_t m;
  float *r = nl_st_read_f32(ref, name, &m, &err);
  if (!r) fail_msg("%s", err.msg);
  assert_int_equal(m, n);
  double w = 0;
  for (size_t i = 0; i < n; i++) w = fmax(w, fabs((double)x[i] - r[i]));
  free(r);
  return w;
}

typedef enum { K_LAYERNORM, K_DYT, K_EXPR, K_MIXED } kinds;
static const char *const kind_name[] = {"LayerNorm", "DyT", "expression", "mixed"};

static void set_kinds(nl_vit *m, kinds k) {
  nl_error err;
  nl_prog p;
  nl_prog_init(&p);
  /* not DyT in disguise: a tanh with a linear leak, different per call */
  assert_int_equal(nl_parse("0.9*tanh(0.6*x) + 0.05*x - 0.01", 1, &p, &err), 0);
  for (int i = 0; i < m->nnorms; i++) {
    int kind = k == K_MIXED ? i % 3 : (int)k;
    if (kind == K_DYT)
      nl_norm_set_dyt(m, &m->norms[i], 0.3f + 0.03f * (float)i);
    else if (kind == K_EXPR)
      assert_int_equal(nl_norm_set_expr(m, &m->norms[i], &p, &err), 0);
    else
      nl_norm_set_layernorm(m, &m->norms[i]);
  }
  nl_prog_free(&p);
}

static void compare_model(const char *model, const char *ref_name, double ref_tol) {
  nl_error err;
  nl_st_file ref;
  if (nl_st_open(&ref, fixture(ref_name), &err)) fail_msg("%s", err.msg);
  size_t nin;
  float *in = nl_st_read_f32(&ref, "inputs", &nin, &err);
  assert_non_null(in);
  int32_t labels[NB];
  for (int b = 0; b < NB; b++) labels[b] = b % 10;
  for (int k = K_LAYERNORM; k <= K_MIXED; k++) {
    nl_vit m;
    if (nl_vit_load(&m, fixture(model), NULL, &err)) fail_msg("%s", err.msg);
    set_kinds(&m, (kinds)k);
    const nl_vit_config *c = &m.cfg;
    assert_int_equal(nin, (size_t)NB * c->in_chans * c->img_size * c->img_size);
    assert_int_equal(c->avg_pool, 0);
    /* inference, every layer's activations kept */
    nl_vit_acts a;
    assert_int_equal(nl_vit_acts_init(&a, c, NB, 1, &err), 0);
    if (nl_vit_forward(&m, &a, in, NB, NULL, NULL, &err)) fail_msg("%s", err.msg);
    /* the trainer, eval mode (no drop path) */
    nl_vt_opts o;
    nl_vt_opts_default(&o);
    o.batch = NB;
    nl_vit_trainer t;
    if (nl_vt_init(&t, &m, NULL, &o, &err)) fail_msg("%s", err.msg);
    if (nl_vt_forward(&t, in, labels, NB, NULL, &err)) fail_msg("%s", err.msg);
    const size_t T = (size_t)c->tokens, D = (size_t)c->dim, BT = NB * T, BTD = BT * D;
    const size_t BTH = BT * (size_t)c->mlp_hidden;
    cmp r = {0, NULL, -1};
    for (int l = 0; l < c->depth; l++) {
      const nl_vit_layer_acts *I = &a.layer[l];
      const nl_vt_layer *L = &t.layer[l];
      same(&r, "block input", l, I->res1, L->res1, BTD);
      same(&r, "norm1", l, I->ln1, L->n1, BTD);
      if (m.blocks[l].norm1->kind == NL_NORM_LAYERNORM) {
        same(&r, "norm1 mean", l, I->ln1_mean, L->n1_mean, BT);
        same(&r, "norm1 rstd", l, I->ln1_rstd, L->n1_rstd, BT);
      }
      same(&r, "qkv", l, I->qkv, L->qkv, 3 * BTD);
      same(&r, "attention probabilities", l, I->att, L->att, NB * (size_t)c->heads * T * T);
      same(&r, "attention output", l, I->atty, L->atty, BTD);
      same(&r, "proj", l, I->proj, L->proj, BTD);
      same(&r, "norm2 input", l, I->res2, L->res2, BTD);
      same(&r, "norm2", l, I->ln2, L->n2, BTD);
      if (m.blocks[l].norm2->kind == NL_NORM_LAYERNORM) {
        same(&r, "norm2 mean", l, I->ln2_mean, L->n2_mean, BT);
        same(&r, "norm2 rstd", l, I->ln2_rstd, L->n2_rstd, BT);
      }
      same(&r, "fc1", l, I->fc1, L->fc1, BTH);
      same(&r, "gelu", l, I->gelu, L->gelu, BTH);
      same(&r, "fc2", l, I->fc2, L->fc2, BTD);
    }
    same(&r, "last block output", c->depth, a.out, t.out, BTD);
    /* inference normalises every token (for the taps), the trainer only the
     * class token it keeps: compare token 0 of each image */
    for (int b = 0; b < NB; b++) {
      same(&r, "class token", c->depth, a.out + (size_t)b * T * D, t.fin_in + (size_t)b * D, D);
      same(&r, "final norm", c->depth, a.normed + (size_t)b * T * D, t.fin + (size_t)b * D, D);
    }
    same(&r, "logits", c->depth, a.logits, t.logits, (size_t)NB * c->classes);
    printf("# %s, %s norms: inference and training forward %s", model, kind_name[k],
           r.where ? "differ" : "bitwise equal in every activation\n");
    if (r.where) printf(" first at %s of block %d, max |difference| %.3g\n", r.where, r.layer, r.worst);
    assert_null(r.where);
    if (k == K_LAYERNORM) {
      double dl = maxdiff_ref(&ref, "logits", t.logits, (size_t)NB * c->classes);
      printf("# %s: trainer's logits against timm's: max difference %.3g (tolerance %g)\n",
             model, dl, ref_tol);
      assert_true(dl <= ref_tol);
    }
    nl_vt_free(&t);
    nl_vit_acts_free(&a);
    nl_vit_free(&m);
  }
  free(in);
  nl_st_close(&ref);
}

static void test_small(void **state) {
  (void)state;
  compare_model("vit_small_p7_fmnist.safetensors", "vit_small_p7_fmnist_ref.safetensors", 1e-4);
}

static void test_tiny(void **state) {
  (void)state;
  compare_model("vit_tiny_p4_fmnist.safetensors", "vit_tiny_p4_fmnist_ref.safetensors", 2e-4);
}

/* The same with one thread: both paths are thread-count independent. */
static void test_small_one_thread(void **state) {
  (void)state;
  int outer = nl_threads_enter(1);
  compare_model("vit_small_p7_fmnist.safetensors", "vit_small_p7_fmnist_ref.safetensors", 1e-4);
  nl_threads_leave(outer);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small),
      cmocka_unit_test(test_tiny),
      cmocka_unit_test(test_small_one_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
