/* Multi-head softmax self-attention, backward (the forward is
 * nl_attention_forward in tensor/layers.c): four GEMMs and a softmax
 * backward per (image, head). q, k, v are read in place from the qkv
 * activation with leading dimension 3*C: no transposes or copies. */
#pragma GCC optimize("tree-vectorize", "no-trapping-math")

#include "train/layers.h"

#include <math.h>

#include "base/mem.h"
#include "base/threads.h"
#include "tensor/sgemm.h"

typedef struct {
  float *dqkv, *ws;
  const float *qkv, *dout, *catt;
  const float *dpx; /* NULL, or more dP [B, NH, T, T] (attention reuse) */
  float *dpo;       /* reuse: dP += dO v^T here, dv += P^T dO, nothing else */
  int T, C, NH, hd;
  float scale, beta; /* beta 1: dqkv accumulates; 0: overwritten */
} att_job;

static void att_bwd_task(size_t i, int worker, void *user) {
  const att_job *j = user;
  const int T = j->T, C = j->C, hd = j->hd, b = (int)(i / j->NH), h = (int)(i % j->NH);
  const int ld = 3 * C;
  const size_t off = (size_t)b * T * ld + (size_t)h * hd;
  const float *q = j->qkv + off, *k = q + C, *v = q + 2 * C;
  float *dq = j->dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
  const float *P = j->catt + i * (size_t)T * T;
  const float *dO = j->dout + (size_t)b * T * C + (size_t)h * hd;
  if (j->dpo) { /* a block applying reused probabilities */
    nl_sgemm(0, 1, T, T, hd, 1.0f, dO, C, v, ld, 1.0f, j->dpo + i * (size_t)T * T, T);
    nl_sgemm(1, 0, T, hd, T, 1.0f, P, T, dO, C, 1.0f, dv, ld);
    return;
  }
  float *dS = j->ws + (size_t)worker * T * T;
  /* dP = dO v^T, dv += P^T dO */
  nl_sgemm(0, 1, T, T, hd, 1.0f, dO, C, v, ld, 0.0f, dS, T);
  if (j->dpx) {
    const float *x = j->dpx + i * (size_t)T * T;
    for (size_t e = 0; e < (size_t)T * T; e++) dS[e] += x[e];
  }
  nl_sgemm(1, 0, T, hd, T, 1.0f, P, T, dO, C, j->beta, dv, ld);
  /* softmax backward per row: dS = P * (dP - sum(dP * P)) */
  for (int r = 0; r < T; r++) {
    const float *p = P + (size_t)r * T;
    float *d = dS + (size_t)r * T;
    float s = 0.0f;
    for (int c = 0; c < T; c++) s += d[c] * p[c];
    for (int c = 0; c < T; c++) d[c] = p[c] * (d[c] - s);
  }
  /* dq += scale dS k, dk += scale dS^T q */
  nl_sgemm(0, 0, T, hd, T, j->scale, dS, T, k, ld, j->beta, dq, ld);
  nl_sgemm(1, 0, T, hd, T, j->scale, dS, T, q, ld, j->beta, dk, ld);
}

static void attention_backward(float *dqkv, float beta, const float *dout, const float *qkv,
                               const float *att, int B, int T, int C, int NH,
                               const float *dp_in, float *dp_out) {
  att_job j = {.dqkv = dqkv, .dout = dout, .qkv = qkv, .catt = att, .T = T, .C = C, .NH = NH,
               .hd = C / NH, .beta = beta, .dpx = dp_in, .dpo = dp_out};
  j.scale = (float)(1.0 / sqrt((double)j.hd));
  int nw = nl_threads_count(0);
  if (nw < 1) nw = 1;
  j.ws = nl_aalloc((size_t)nw * T * T * sizeof(float));
  nl_parallel_for((size_t)B * NH, att_bwd_task, &j);
  nl_afree(j.ws);
}

void nl_tr_attention_backward(float *dqkv, const float *dout, const float *qkv,
                              const float *att, int B, int T, int C, int NH) {
  attention_backward(dqkv, 1.0f, dout, qkv, att, B, T, C, NH, NULL, NULL);
}

void nl_tr_attention_backward_set(float *dqkv, const float *dout, const float *qkv,
                                  const float *att, int B, int T, int C, int NH) {
  attention_backward(dqkv, 0.0f, dout, qkv, att, B, T, C, NH, NULL, NULL);
}

/* dqkv accumulates (a reusing block writes only its dv) */
void nl_tr_attention_backward_reuse(float *dqkv, const float *dout, const float *qkv,
                                    const float *att, int B, int T, int C, int NH,
                                    const float *dp_in, float *dp_out) {
  attention_backward(dqkv, 1.0f, dout, qkv, att, B, T, C, NH, dp_in, dp_out);
}
