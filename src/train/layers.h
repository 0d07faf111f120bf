/* Training layers: the backward halves of the ViT layers, llm.c style one
 * function pair per layer with the forward halves in tensor/layers.h
 * (nl_linear_forward with nl_tr_linear_backward, ...), which inference
 * runs too. Drop path, which only training has, is whole here.
 *
 * Conventions (all functions), beside those of tensor/layers.h:
 *  - Backward functions ACCUMULATE: every gradient output (dinp, dw, db, ...)
 *    is added to (+=), never overwritten, so the caller zeroes gradients once
 *    per step and residual branches simply add into the same dinp. Any
 *    gradient pointer documented as "may be NULL" is then skipped.
 *  - A backward needs what its forward saved (see tensor/layers.h) and,
 *    where it says `inp`, the forward's input.
 *  - Matrix products run on fixed tiles (nl_gemm_tiles: nl_gemm_row_tile rows of dinp,
 *    64 output channels of dw); element-wise loops over fixed chunks of rows
 *    (nl_rows_run), column reductions such as dw, db summed per chunk and
 *    then in chunk order; so results do not depend on the thread count.
 *    Scratch for those reductions is allocated per call.
 */
#ifndef NL_TRAIN_LAYERS_H
#define NL_TRAIN_LAYERS_H

#include <stddef.h>

#include "base/rng.h"
#include "expr/expr.h"
#include "tensor/layers.h"

/* ---- linear (forward nl_linear_forward) ----
 * dinp[N,IC] += dout @ w; dw[OC,IC] += dout^T @ inp; db[OC] += column sums
 * of dout. dinp, dw, db may each be NULL. */
void nl_tr_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, int N, int IC, int OC);

/* ---- LayerNorm (forward nl_layernorm_forward) ----
 * Needs inp, w and the saved mean, rstd. dinp, dw, db may be NULL. */
void nl_tr_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *w, const float *mean,
                              const float *rstd, int N, int C);

/* ---- DyT (forward nl_dyt_forward) ----
 * dalpha[0] += sum dout*w*(1-t^2)*x, dw += sum_rows dout*t,
 * db += sum_rows dout, dinp += dout*w*alpha*(1-t^2), t = tanh(alpha*x)
 * recomputed from inp. Any gradient pointer may be NULL. */
void nl_tr_dyt_backward(float *dinp, float *dalpha, float *dw, float *db, const float *dout,
                        const float *inp, float alpha, const float *w, int N, int C);

/* ---- point-wise norm affine (forward nl_pwnorm_forward) ----
 * The affine part of an expression norm y = f(x)*w + b; fx = f(x) and
 * dfx = f'(x) [N,C] are what nl_exprnorm_forward (model/norm.h) saved.
 * dinp += dout*w*dfx, dw += sum_rows dout*fx, db += sum_rows dout.
 * Gradient pointers may be NULL. */
void nl_tr_pwnorm_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *fx, const float *dfx, const float *w, int N, int C);

/* ---- expression constants of a point-wise norm ----
 * For out = f(x; c) * w + b over inp [N, C] (the slot's input x):
 * dc[k] += sum_{rows, channels} dout * w[channel] * df/dc_k (x), k over
 * the nl_prog_nconst(prog) constants in nl_prog_get_consts order, with
 * df/dc_k from nl_eval_jac. Summed in double per fixed chunk of rows,
 * chunks added in order: the same for any thread count. */
void nl_tr_exprnorm_const_backward(float *dc, const float *dout, const float *inp,
                                   const nl_prog *prog, const float *w, int N, int C);

/* ---- exact GELU (forward nl_gelu_forward) ----
 * Needs inp: dinp += dout * gelu'(x), n elements. */
void nl_tr_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* ---- attention (forward nl_attention_forward) ----
 * dqkv [B*T, 3C] += (dq | dk | dv); needs qkv and the saved att. The work
 * is split over (image, head) pairs with nl_parallel_for; results do not
 * depend on the thread count. */
void nl_tr_attention_backward(float *dqkv, const float *dout, const float *qkv,
                              const float *att, int B, int T, int C, int NH);
/* The same with attention reuse (model/reuse_plan.h): dp_in (may be NULL)
 * [B, NH, T, T] is added to dP before the softmax backward (the gradient
 * that later blocks applying these probabilities send back); with dp_out
 * the block applied reused probabilities att: only dv += P^T dO, and
 * dp_out += dO v^T for the block that computed them. */
void nl_tr_attention_backward_reuse(float *dqkv, const float *dout, const float *qkv,
                                    const float *att, int B, int T, int C, int NH,
                                    const float *dp_in, float *dp_out);

/* ---- residual (forward nl_residual_forward) ----
 * da += dout, db += dout (either may be NULL; for a residual stream updated
 * in place, the stream's gradient simply passes through and only the
 * branch needs nl_tr_residual_backward(NULL, dbranch, ...)). */
void nl_tr_residual_backward(float *da, float *db, const float *dout, size_t n);

/* ---- layer scale (forward nl_layerscale_forward) ----
 * Needs inp: dinp += dout*gamma, dgamma += sum_rows dout*inp. Either
 * gradient may be NULL. */
void nl_tr_layerscale_backward(float *dinp, float *dgamma, const float *dout,
                               const float *inp, const float *gamma, int N, int C);

/* ---- stochastic depth (drop path) ----
 * Per sample b: keep with probability 1-p, scale[b] = 1/(1-p) if kept, 0 if
 * dropped (timm's drop_path with scale_by_keep). In eval mode or with p == 0,
 * scale[b] = 1 (identity). Draws B uniforms from rng in order b = 0..B-1.
 * timm's ViT uses p_i = drop_path_rate * i / (depth - 1) for block i
 * (nl_tr_drop_path_rate). */
void nl_tr_droppath_mask(float *scale, int B, float p, int training, nl_rng *rng);
float nl_tr_drop_path_rate(float drop_path_rate, int block, int depth);
/* out[b, :] = inp[b, :] * scale[b], `per` elements per sample (T*C);
 * out may alias inp. Backward: dinp[b, :] += dout[b, :] * scale[b]. */
void nl_tr_droppath_forward(float *out, const float *inp, const float *scale, int B,
                            size_t per);
void nl_tr_droppath_backward(float *dinp, const float *dout, const float *scale, int B,
                             size_t per);

/* ---- overwriting forms ----
 * The same as nl_tr_linear_backward, nl_tr_gelu_backward,
 * nl_tr_attention_backward and nl_tr_droppath_backward, except that the
 * input gradient (dinp, dqkv; not NULL) is overwritten (=), not added to,
 * so that the caller need not zero it first: one pass less over it. The
 * values are those of the accumulating form on a zeroed buffer; parameter
 * gradients (dw, db) still accumulate. nl_tr_gelu_backward_set also takes
 * the forward's output `out` and reads Phi(x) = out / x from it instead of
 * evaluating erf (the gradient then differs from nl_tr_gelu_backward's in
 * the last bits). */
void nl_tr_linear_backward_set(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, int N, int IC, int OC);
void nl_tr_gelu_backward_set(float *dinp, const float *dout, const float *inp, const float *out,
                             size_t n);
void nl_tr_attention_backward_set(float *dqkv, const float *dout, const float *qkv,
                                  const float *att, int B, int T, int C, int NH);
void nl_tr_droppath_backward_set(float *dinp, const float *dout, const float *scale, int B,
                                 size_t per);

/* ---- linear with a choice of form and precision ----
 * set 0: nl_tr_linear_backward, 1: nl_tr_linear_backward_set; bf16 1:
 * the two products (dinp = dout w, dw = dout^T inp) take BF16 operands
 * with FP32 sums (nl_gemm_tiles_bf16, tensor/layers.h) on the same
 * tiles, the backward of nl_linear_forward_bf16ops; db stays FP32. */
void nl_tr_linear_backward_prec(float *dinp, int set, float *dw, float *db, const float *dout,
                                const float *inp, const float *w, int N, int IC, int OC,
                                int bf16);

/* ---- patch embedding (forward nl_im2col + nl_linear_forward) ----
 * nl_tr_linear_backward with dinp = NULL gives dW and dB. */

/* ---- tokens (forward nl_tokens_forward) ----
 * dpatch += dx at patch rows (may be NULL), dcls += sum_b dx[b,0],
 * dpos += sum_b dx[b,:]. */
void nl_tr_tokens_backward(float *dpatch, float *dcls, float *dpos, const float *dx,
                           const float *cls, int B, int NP, int D);

/* ---- pooling (forward nl_pool_forward) ----
 * dx += the scattered dout. */
void nl_tr_pool_backward(float *dx, const float *dout, nl_pool pool, int prefix, int B, int T,
                         int C);

#endif
