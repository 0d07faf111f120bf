/* The per-block cost table (see blockcost.h for the formulas). */
#include "model/blockcost.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "expr/expr.h"
#include "model/quant.h"

const char *nl_vit_part_name(nl_vit_part p) {
  static const char *const names[NL_PART_COUNT] = {
      "patch_embed", "norm1", "qkv", "attention", "proj", "norm2",
      "fc1",         "gelu",  "fc2", "residual",  "norm", "head"};
  return (unsigned)p < NL_PART_COUNT ? names[p] : "?";
}

void nl_norm_token_cost(const nl_norm *n, int d, double *flops, double *read_bytes) {
  nl_token_cost t = {0, 0};
  switch (n->kind) {
    case NL_NORM_LAYERNORM: t = nl_cost_layernorm_token(d); break;
    case NL_NORM_DYT: t = nl_cost_dyt_token(d); break;
    case NL_NORM_EXPR: {
      nl_prog s;
      nl_prog_init(&s);
      nl_prog_copy(&s, n->prog);
      nl_simplify(&s);
      nl_cost_opts co = {.clip_cost = 0};
      t = nl_cost_expr_token(nl_cost(&s, &co), d);
      nl_prog_free(&s);
      break;
    }
  }
  *flops = t.flops;
  *read_bytes = t.read_bytes;
}

/* The part (and block) a tensor belongs to, from its timm name. */
static nl_vit_part part_of(const char *name, int *block) {
  *block = -1;
  if (strncmp(name, "blocks.", 7) == 0) {
    char *end;
    *block = (int)strtol(name + 7, &end, 10);
    const char *s = *end == '.' ? end + 1 : end;
    if (strncmp(s, "norm1.", 6) == 0) return NL_PART_NORM1;
    if (strncmp(s, "norm2.", 6) == 0) return NL_PART_NORM2;
    if (strncmp(s, "attn.qkv.", 9) == 0) return NL_PART_QKV;
    if (strncmp(s, "attn.proj.", 10) == 0) return NL_PART_PROJ;
    if (strncmp(s, "mlp.fc1.", 8) == 0) return NL_PART_FC1;
    if (strncmp(s, "mlp.fc2.", 8) == 0) return NL_PART_FC2;
    return NL_PART_RESIDUAL; /* ls1.gamma, ls2.gamma */
  }
  if (strncmp(name, "head.", 5) == 0) return NL_PART_HEAD;
  if (strncmp(name, "norm.", 5) == 0 || strncmp(name, "fc_norm.", 8) == 0) return NL_PART_NORM;
  return NL_PART_PATCH; /* patch_embed.*, cls_token, pos_embed */
}

/* Row index of (part, block) in the forward-order table. */
static int row_of(nl_vit_part p, int block, int depth) {
  if (p == NL_PART_PATCH) return 0;
  if (p == NL_PART_NORM) return 1 + 9 * depth;
  if (p == NL_PART_HEAD) return 2 + 9 * depth;
  return 1 + 9 * block + ((int)p - (int)NL_PART_NORM1);
}

int nl_vit_cost_rows(const nl_vit *m, const nl_st_file *stored, int batch, nl_part_cost **rows,
                     int *n, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  if (batch < 1) return nl_fail(err, NL_EINPUT, "batch size %d must be at least 1", batch);
  const int depth = c->depth, nr = 9 * depth + 3;
  const double T = c->tokens, D = c->dim, NP = c->npatch;
  const double Kp = (double)c->in_chans * c->patch * c->patch, K = c->classes;
  nl_part_cost *r = nl_xcalloc((size_t)nr, sizeof *r);
  for (int i = 0; i < nr; i++) r[i].block = -1;
  r[0].part = NL_PART_PATCH;
  for (int l = 0; l < depth; l++)
    for (int p = NL_PART_NORM1; p <= NL_PART_RESIDUAL; p++) {
      nl_part_cost *x = &r[row_of((nl_vit_part)p, l, depth)];
      x->part = (nl_vit_part)p;
      x->block = l;
    }
  r[1 + 9 * depth].part = NL_PART_NORM;
  r[2 + 9 * depth].part = NL_PART_HEAD;

  /* parameters and their stored bytes, from the model's tensors */
  for (int i = 0; i < m->ntensors; i++) {
    const nl_param *t = &m->tensors[i];
    int block;
    nl_vit_part p = part_of(t->name, &block);
    if (block >= depth) continue;
    nl_part_cost *x = &r[row_of(p, block, depth)];
    x->params += (double)t->numel;
    if (m->quant) {
      /* integers with their scales and zero points, FP16 parts, F32 rest */
      x->weight_bytes += (double)nl_vit_tensor_stored_bytes(m, i);
    } else {
      const nl_st_tensor *st = stored ? nl_st_find(stored, t->name) : NULL;
      double width = st ? (double)nl_dtype_size(st->dtype) : 4.0;
      x->weight_bytes += (double)t->numel * width;
    }
  }

  /* FLOPs and activation bytes per image */
  double f, rb;
  r[0].flops = 2 * NP * D * Kp;
  r[0].act_bytes = 4 * NP * Kp;
  for (int l = 0; l < depth; l++) {
    const nl_vit_block *B = &m->blocks[l];
    const double Hm = nl_vit_mlp_width(c, l); /* per block: pruned models differ */
    const double H = nl_vit_heads(c, l), A = nl_vit_attn_width(c, l);
    nl_part_cost *x = &r[1 + 9 * l];
    nl_norm_token_cost(B->norm1, c->dim, &f, &rb);
    x[0].flops = T * f, x[0].act_bytes = T * rb, x[0].slot_kind = nl_norm_kind_name(B->norm1->kind);
    x[1].flops = 2 * T * D * 3 * A, x[1].act_bytes = 4 * T * D;
    x[2].flops = 4 * T * T * A + H * T * (24 * T + 1), x[2].act_bytes = 4 * (3 * T * A + H * T * T);
    x[3].flops = 2 * T * A * D, x[3].act_bytes = 4 * T * A;
    nl_norm_token_cost(B->norm2, c->dim, &f, &rb);
    x[4].flops = T * f, x[4].act_bytes = T * rb, x[4].slot_kind = nl_norm_kind_name(B->norm2->kind);
    x[5].flops = 2 * T * D * Hm, x[5].act_bytes = 4 * T * D;
    x[6].flops = 27 * T * Hm, x[6].act_bytes = 4 * T * Hm;
    x[7].flops = 2 * T * Hm * D, x[7].act_bytes = 4 * T * Hm;
    x[8].flops = 2 * T * D, x[8].act_bytes = 16 * T * D;
    if (c->layer_scale) x[8].flops += 2 * T * D, x[8].act_bytes += 8 * T * D;
  }
  nl_part_cost *fn = &r[1 + 9 * depth], *hd = &r[2 + 9 * depth];
  const double nrows = c->avg_pool ? 1 : T;
  nl_norm_token_cost(m->final_norm, c->dim, &f, &rb);
  fn->flops = nrows * f, fn->act_bytes = nrows * rb;
  fn->slot_kind = nl_norm_kind_name(m->final_norm->kind);
  hd->flops = 2 * D * K, hd->act_bytes = 4 * D;
  if (c->avg_pool) hd->flops += NP * D, hd->act_bytes += 4 * NP * D;
  for (int i = 0; i < nr; i++) r[i].bytes = r[i].weight_bytes / batch + r[i].act_bytes;
  *rows = r;
  *n = nr;
  return 0;
}
