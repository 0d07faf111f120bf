/* Training layers: one forward/backward pair per layer of a timm
 * VisionTransformer, for re-alignment after its LayerNorms are replaced.
 *
 * Conventions (all functions):
 *  - Activations are row-major [rows, channels], rows = batch * tokens,
 *    token t of image b at row b*T + t.
 *  - Linear weights are in timm layout: w [out, in], bias [out].
 *  - Backward functions ACCUMULATE: every gradient output (dinp, dw, db, ...)
 *    is added to (+=), never overwritten, so the caller zeroes gradients once
 *    per step and residual branches simply add into the same dinp. Any
 *    gradient pointer documented as "may be NULL" is then skipped.
 *  - "saves" lists what the forward writes for its backward; the backward
 *    also needs the forward's input where it says `inp`.
 *  - Matrix products are cblas_sgemm calls, single-threaded on fixed blocks
 *    handed out over nl_parallel_for (linear: 256 rows of out / dinp, 64
 *    output channels of dw); element-wise loops are plain and
 *    vectorisable. Large element-wise layers (>= 64K elements) and attention
 *    are split over nl_parallel_for in fixed chunks (chunk size depends on
 *    the shape only; column reductions such as dw, db are summed per
 *    chunk and then in chunk order), so results do not depend on the thread
 *    count. Scratch for those reductions is allocated per call.
 */
#ifndef NL_TRAIN_LAYERS_H
#define NL_TRAIN_LAYERS_H

#include <stddef.h>

#include "base/rng.h"

/* ---- linear: out[N,OC] = inp[N,IC] @ w[OC,IC]^T + b[OC] ----
 * b may be NULL (no bias). Saves nothing: backward needs inp.
 * Backward: dinp[N,IC] += dout @ w; dw[OC,IC] += dout^T @ inp;
 * db[OC] += column sums of dout. dinp, dw, db may each be NULL. */
void nl_tr_linear_forward(float *out, const float *inp, const float *w, const float *b,
                          int N, int IC, int OC);
void nl_tr_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, int N, int IC, int OC);

/* ---- LayerNorm over the last dim: out = (x - mean) * rstd * w + b ----
 * rstd = 1/sqrt(var + eps), var biased (divide by C). eps = 1e-6 in timm's ViT.
 * Saves mean[N], rstd[N]. Backward needs inp, w, mean, rstd.
 * dinp, dw, db may be NULL. */
void nl_tr_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                             const float *w, const float *b, int N, int C, float eps);
void nl_tr_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *w, const float *mean,
                              const float *rstd, int N, int C);

/* ---- DyT: out = tanh(alpha * x) * w + b, alpha a scalar, w, b [C] ----
 * Saves nothing (backward recomputes tanh from inp).
 * Backward: dalpha[0] += sum dout*w*(1-t^2)*x, dw += sum_rows dout*t,
 * db += sum_rows dout, dinp += dout*w*alpha*(1-t^2), t = tanh(alpha*x).
 * Any gradient pointer may be NULL. */
void nl_tr_dyt_forward(float *out, const float *inp, float alpha, const float *w,
                       const float *b, int N, int C);
void nl_tr_dyt_backward(float *dinp, float *dalpha, float *dw, float *db, const float *dout,
                        const float *inp, float alpha, const float *w, int N, int C);

/* ---- point-wise norm affine: out = fx * w + b, fx = f(x) given ----
 * The affine part of an expression norm y = f(x)*w + b. The caller supplies
 * fx = f(x) [N,C] and, for the backward, dfx = f'(x) [N,C]
 * (see nl_tr_exprnorm_forward, which computes both with the expression
 * engine). Backward: dinp += dout*w*dfx, dw += sum_rows dout*fx,
 * db += sum_rows dout. Gradient pointers may be NULL. out may alias fx. */
void nl_tr_pwnorm_forward(float *out, const float *fx, const float *w, const float *b,
                          int N, int C);
void nl_tr_pwnorm_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *fx, const float *dfx, const float *w, int N, int C);

/* ---- exact GELU: out = 0.5 x (1 + erf(x / sqrt 2)), n elements ----
 * Saves nothing; backward needs inp: dinp += dout * gelu'(x).
 * out may alias inp in the forward only if the backward is not needed. */
void nl_tr_gelu_forward(float *out, const float *inp, size_t n);
void nl_tr_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* ---- multi-head softmax self-attention (timm Attention, no masking) ----
 * qkv [B*T, 3*C] is the output of the qkv Linear: columns [0,C) are q,
 * [C,2C) k, [2C,3C) v, and head h owns columns h*hd .. h*hd+hd-1 of each
 * (hd = C / NH; C must be a multiple of NH), as timm's
 * reshape(B, T, 3, NH, hd) gives.
 * out [B*T, C]: head h's output in columns h*hd.. (timm's transpose+reshape),
 * ready for the proj Linear.
 * Per (image, head): S = q k^T / sqrt(hd); P = softmax_rows(S); O = P v.
 * Saves att [B, NH, T, T] (the probabilities P).
 * Backward: dqkv [B*T, 3C] += (dq | dk | dv); needs qkv and att.
 * The work is split over (image, head) pairs with nl_parallel_for;
 * results do not depend on the thread count. */
void nl_tr_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C,
                             int NH);
void nl_tr_attention_backward(float *dqkv, const float *dout, const float *qkv,
                              const float *att, int B, int T, int C, int NH);

/* ---- residual: out = a + b (n elements; out may alias a or b) ----
 * Backward: da += dout, db += dout (either may be NULL; for a residual
 * stream updated in place, the stream's gradient simply passes through and
 * only the branch needs nl_tr_residual_backward(NULL, dbranch, ...)). */
void nl_tr_residual_forward(float *out, const float *a, const float *b, size_t n);
void nl_tr_residual_backward(float *da, float *db, const float *dout, size_t n);

/* ---- layer scale: out = inp * gamma, gamma [C] per channel ----
 * Backward needs inp: dinp += dout*gamma, dgamma += sum_rows dout*inp.
 * Either gradient may be NULL. */
void nl_tr_layerscale_forward(float *out, const float *inp, const float *gamma, int N, int C);
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

/* ---- patch embedding (Conv2d kernel = stride = P, as a GEMM) ----
 * im2col: img [B, CI, H, W] -> patches [B*NP, CI*P*P], NP = (H/P)*(W/P),
 * patch index py*(W/P) + px (timm's flatten order), column c*P*P + ky*P + kx
 * (the flattened conv weight [D, CI, P, P] is then a Linear weight [D, CI*P*P]).
 * H and W must be multiples of P. The embedding itself is
 * nl_tr_linear_forward(tok, patches, w, b, B*NP, CI*P*P, D); its backward
 * with dinp = NULL gives dW and dB. */
void nl_tr_im2col(float *patches, const float *img, int B, int CI, int H, int W, int P);

/* ---- token assembly: x[b] = [cls; patch tokens] + pos ----
 * patch [B*NP, D], cls [D], pos [(1+NP), D] (timm pos_embed with the class
 * token included) -> x [B*(1+NP), D]. cls may be NULL: no class token, x
 * [B*NP, D] and pos [NP, D].
 * Backward: dpatch += dx at patch rows (may be NULL), dcls += sum_b dx[b,0],
 * dpos += sum_b dx[b,:]. */
void nl_tr_tokens_forward(float *x, const float *patch, const float *cls, const float *pos,
                          int B, int NP, int D);
void nl_tr_tokens_backward(float *dpatch, float *dcls, float *dpos, const float *dx,
                           const float *cls, int B, int NP, int D);

/* ---- token pooling: x [B*T, C] -> out [B, C] ----
 * NL_TR_POOL_TOKEN: out[b] = x[b, 0] (class token).
 * NL_TR_POOL_AVG: out[b] = mean over t in [prefix, T) of x[b, t] (timm
 * excludes the prefix tokens, prefix = 1 with a class token).
 * Backward: dx += the scattered dout. */
typedef enum { NL_TR_POOL_TOKEN = 0, NL_TR_POOL_AVG = 1 } nl_tr_pool;
void nl_tr_pool_forward(float *out, const float *x, nl_tr_pool pool, int prefix, int B, int T,
                        int C);
void nl_tr_pool_backward(float *dx, const float *dout, nl_tr_pool pool, int prefix, int B,
                         int T, int C);

#endif
