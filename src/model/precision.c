/* Precision of a model's Linear layers: the BF16 copies of nl_vit.bf16
 * (model/vit.h) and the --precision values. */
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "model/quant.h"
#include "model/vit.h"
#include "tensor/bf16.h"

int nl_precision_parse(const char *s, nl_precision *p, nl_error *err) {
  if (s && strcmp(s, "fp32") == 0) *p = NL_PREC_FP32;
  else if (s && strcmp(s, "bf16") == 0) *p = NL_PREC_BF16;
  else
    return nl_fail(err, NL_EINPUT, "precision '%s' is not one of fp32, bf16", s ? s : "(none)");
  return 0;
}

const char *nl_precision_name(nl_precision p) { return p == NL_PREC_BF16 ? "bf16" : "fp32"; }

/* Round the n weights at w into m->bf16 at the same offset. */
static void convert(nl_vit *m, const float *w, size_t n) {
  nl_bf16_from_f32(m->bf16 + (w - m->params), w, n);
}

int nl_vit_set_precision(nl_vit *m, nl_precision p, nl_error *err) {
  if (p == NL_PREC_FP32) {
    free(m->bf16);
    m->bf16 = NULL;
    return 0;
  }
  if (m->quant) {
    char q[160];
    nl_vit_precision(m, q, sizeof q);
    return nl_fail(err, NL_EINPUT,
                   "precision bf16 is for FP32 models; this one is quantized (%s) and runs its "
                   "own integer products",
                   q);
  }
  char why[300];
  if (nl_bf16_check_cpu(why, sizeof why)) return nl_fail(err, NL_EINPUT, "%s", why);
  const nl_vit_config *c = &m->cfg;
  const size_t D = (size_t)c->dim;
  if (!m->bf16) m->bf16 = nl_xcalloc(m->nparams ? m->nparams : 1, sizeof(uint16_t));
  convert(m, m->patch_w, D * (size_t)c->in_chans * c->patch * c->patch);
  convert(m, m->head_w, (size_t)c->classes * D);
  for (int l = 0; l < c->depth; l++) {
    const nl_vit_block *B = &m->blocks[l];
    const size_t Hm = (size_t)nl_vit_mlp_width(c, l), A = (size_t)nl_vit_attn_width(c, l);
    convert(m, B->qkv_w, 3 * A * D);
    convert(m, B->proj_w, D * A);
    convert(m, B->fc1_w, Hm * D);
    convert(m, B->fc2_w, D * Hm);
  }
  return 0;
}
