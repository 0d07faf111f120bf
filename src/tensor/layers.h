/* The layers of a timm VisionTransformer, forward halves, llm.c style: one
 * function per layer, shared by inference (model/vit_forward.c) and
 * training (train/vit_train.c, whose backward halves are in train/layers.h).
 * The norm slots' dispatch over LayerNorm / DyT / expression is
 * nl_norm_forward (model/norm.h).
 *
 * Conventions (all functions):
 *  - Activations are row-major [rows, channels], rows = batch * tokens,
 *    token t of image b at row b*T + t.
 *  - Linear weights are in timm layout: w [out, in], bias [out].
 *  - "saves" lists what the forward writes for its backward; the backward
 *    also needs the forward's input where it says `inp`.
 *  - Same inputs, same result, bitwise, for any thread count: matrix
 *    products are single-threaded nl_sgemm calls (tensor/gemm.h) on blocks of the output
 *    whose size depends only on the shapes (nl_gemm_tiles), handed out over
 *    nl_parallel_for; element-wise and row-wise layers run over fixed chunks
 *    of rows (nl_rows_run) with the kernels of tensor/kernels.h; attention
 *    runs one task per (image, head). With AVX-512 the forward products
 *    (Linear, attention) run on tensor/gemm.h instead, whose outputs do not
 *    depend on the split at all.
 */
#ifndef NL_TENSOR_LAYERS_H
#define NL_TENSOR_LAYERS_H

#include <stddef.h>

/* ---- deterministic parallel drivers (also used by the backward halves) ---- */

/* fn(ctx, r0, r1, acc) handles rows [r0, r1); acc is a chunk's own nacc
 * floats, zeroed (NULL when nacc is 0). */
typedef void (*nl_rows_fn)(void *ctx, size_t r0, size_t r1, float *acc);
/* Run fn over rows [0, rows) of width `width` in chunks fixed by the shape
 * (one chunk below 32,768 elements, else about 16,384 elements per chunk,
 * at most 64 chunks) over nl_parallel_for; the chunks' acc are then added
 * into acc (not cleared) in chunk order. */
void nl_rows_run(nl_rows_fn fn, void *ctx, size_t rows, size_t width, int nacc, float *acc);

/* c[M, N] = alpha op(a) op(b) + beta c, op(a) [M, K], op(b) [K, N]
 * (ta, tb: 1 = transposed; leading dimensions as cblas_sgemm's, row-major),
 * as single-threaded sgemm calls on tiles of rb rows and cb columns of c
 * over nl_parallel_for. A product of fewer than 2^18 multiply-adds is one
 * tile. bias (may be NULL) [N]: every row of c starts as bias and beta is
 * taken as 1. */
void nl_gemm_tiles(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc, const float *bias,
                   int rb, int cb);

/* The same with BF16 operands and FP32 sums (nl_sgemm_bf16, tensor/sgemm.h). */
void nl_gemm_tiles_bf16(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc, const float *bias,
                        int rb, int cb);

/* Rows per tile for a product of M rows: all M up to 256; else an even
 * number of tiles of at most 256 rows (a multiple of 12), so that two
 * workers get the same share. Depends on M only. */
int nl_gemm_row_tile(int M);

/* ---- linear: out[N,OC] = inp[N,IC] @ w[OC,IC]^T + b[OC] ----
 * b may be NULL (no bias). Saves nothing: backward needs inp. With
 * AVX-512, normlab's own kernel (tensor/gemm.h: one fma chain per output
 * element in k order) on tiles of 64 rows, the column panels split too at
 * small batches. Otherwise OpenBLAS on tiles of 256 rows of out; when that
 * gives fewer than 4 tiles (small batches), the output channels are split
 * too (into 4 tiles at batch 1), so that more than one core works on a
 * small batch. */
void nl_linear_forward(float *out, const float *inp, const float *w, const float *b, int N,
                       int IC, int OC);

/* ---- linear with BF16 operands (mixed-precision training) ----
 * out[N, OC] (rows ldc floats apart) = bf16(inp) bf16(w)^T + b: inputs
 * and weights rounded to bfloat16, products summed in FP32
 * (nl_gemm_tiles_bf16 on tiles of nl_gemm_row_tile(N) rows, output
 * channels split too at small batches), bias and result FP32; the same
 * bits for any thread count. */
void nl_linear_forward_bf16ops(float *out, int ldc, const float *inp, const float *w,
                               const float *b, int N, int IC, int OC);

/* ---- linear with the next element-wise layer fused in ----
 * out = inp w^T + b as nl_linear_forward, and then, per tile while it is
 * in cache, out2 = gelu(out) (NL_LIN_GELU, nl_gelu_forward's kernel) or
 * out2 = res + out (NL_LIN_ADD, nl_residual_forward's): the bits of the
 * two separate calls. wpacked (may be NULL) is w packed by nl_gemm_pack
 * (tensor/gemm.h), used when nl_gemm_available(); e may be NULL. */
typedef enum { NL_LIN_PLAIN = 0, NL_LIN_GELU, NL_LIN_ADD } nl_lin_then;
typedef struct nl_lin_epilogue {
  nl_lin_then then;
  float *out2;      /* [N, OC]; may alias res */
  const float *res; /* NL_LIN_ADD: [N, OC] */
} nl_lin_epilogue;
void nl_linear_forward_ex(float *out, const float *inp, const float *w, const float *wpacked,
                          const float *b, int N, int IC, int OC, const nl_lin_epilogue *e);
/* How the packed-weight products (the FP32 kernel's Linear, the INT8
 * kernel's) split into tasks: row tiles of NL_LIN_TASK_ROWS rows, and when
 * there are fewer than 8 of them and the product has enough multiply-adds
 * (macs) to share, the np column panels split into groups as well. Sets
 * *pg (panels per group) and *npg (groups: tasks = row tiles x npg);
 * returns 1 when the tasks are worth running in parallel. */
#define NL_LIN_TASK_ROWS 64 /* a multiple of both kernels' row blocks */
int nl_lin_tasks(int N, int np, double macs, int *pg, int *npg);
/* e's layer on rows [r0, r1) and columns [c0, c1) of out [., OC] (the tile
 * a product task just wrote); nothing for e NULL or NL_LIN_PLAIN. */
void nl_lin_epilogue_rows(const nl_lin_epilogue *e, const float *out, int OC, int r0, int r1,
                          int c0, int c1);

/* ---- LayerNorm over the last dim: out = (x - mean) * rstd * w + b ----
 * rstd = 1/sqrt(var + eps), var biased (divide by C). eps = 1e-6 in timm's
 * ViT. Saves mean[N], rstd[N] (either may be NULL when no backward
 * follows). */
void nl_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N, int C, float eps);

/* ---- DyT: out = tanh(alpha * x) * w + b, alpha a scalar, w, b [C] ----
 * Saves nothing (backward recomputes tanh from inp). */
void nl_dyt_forward(float *out, const float *inp, float alpha, const float *w, const float *b,
                    int N, int C);

/* ---- point-wise norm affine: out = fx * w + b, fx = f(x) given ----
 * The affine part of an expression norm y = f(x)*w + b (f(x) and, for the
 * backward, f'(x) come from the expression engine: nl_exprnorm_forward in
 * model/norm.h). out may alias fx. */
void nl_pwnorm_forward(float *out, const float *fx, const float *w, const float *b, int N,
                       int C);

/* ---- exact GELU: out = 0.5 x (1 + erf(x / sqrt 2)), n elements ----
 * Saves nothing; backward needs inp. out may alias inp in the forward only
 * if the backward is not needed. */
void nl_gelu_forward(float *out, const float *inp, size_t n);

/* ---- the qkv Linear of attention: out [N, 3C] = inp [N, C] w^T + b, w
 * [3C, C] (timm's qkv), as three GEMMs of C columns (q, k, v), tiled
 * alike; from 2 computes the v columns only (attention reuse), with the
 * very calls of the whole product, so bitwise the same values. ---- */
void nl_qkv_forward(float *qkv, const float *inp, const float *w, const float *b, int N, int C,
                    int from);
/* The same for a block with fewer heads than the width allows (a head-pruned
 * block): inp [N, IC], w [3C, IC], out [N, 3C]. */
void nl_qkv_forward_ex(float *qkv, const float *inp, const float *w, const float *b, int N,
                       int IC, int C, int from);

/* ---- multi-head softmax self-attention (timm Attention, no masking) ----
 * qkv [B*T, 3*C] is the output of the qkv Linear: columns [0,C) are q,
 * [C,2C) k, [2C,3C) v, and head h owns columns h*hd .. h*hd+hd-1 of each
 * (hd = C / NH; C must be a multiple of NH), as timm's
 * reshape(B, T, 3, NH, hd) gives.
 * out [B*T, C]: head h's output in columns h*hd.. (timm's transpose+reshape),
 * ready for the proj Linear.
 * Per (image, head): S = q k^T / sqrt(hd); P = softmax_rows(S); O = P v.
 * Saves att [B, NH, T, T] (the probabilities P). */
void nl_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C,
                          int NH);

/* out [B*T, C] = per (image, head) P v with given probabilities att [B,
 * NH, T, T] and values v (rows ldv floats apart, head h in columns h*hd..):
 * the second product of nl_attention_forward, bitwise (attention reuse). */
void nl_attention_apply(float *out, const float *att, const float *v, int ldv, int B, int T,
                        int C, int NH);

/* ---- residual: out = a + b (n elements; out may alias a or b) ---- */
void nl_residual_forward(float *out, const float *a, const float *b, size_t n);

/* ---- layer scale: out = inp * gamma, gamma [C] per channel ----
 * Backward needs inp. */
void nl_layerscale_forward(float *out, const float *inp, const float *gamma, int N, int C);

/* ---- patch embedding (Conv2d kernel = stride = P, as a GEMM) ----
 * im2col: img [B, CI, H, W] -> patches [B*NP, CI*P*P], NP = (H/P)*(W/P),
 * patch index py*(W/P) + px (timm's flatten order), column c*P*P + ky*P + kx
 * (the flattened conv weight [D, CI, P, P] is then a Linear weight [D, CI*P*P]).
 * H and W must be multiples of P. The embedding itself is
 * nl_linear_forward(tok, patches, w, b, B*NP, CI*P*P, D). */
void nl_im2col(float *patches, const float *img, int B, int CI, int H, int W, int P);

/* ---- token assembly: x[b] = [cls; patch tokens] + pos ----
 * patch [B*NP, D], cls [D], pos [(1+NP), D] (timm pos_embed with the class
 * token included) -> x [B*(1+NP), D]. cls may be NULL: no class token, x
 * [B*NP, D] and pos [NP, D]. */
void nl_tokens_forward(float *x, const float *patch, const float *cls, const float *pos, int B,
                       int NP, int D);

/* ---- token pooling: x [B*T, C] -> out [B, C] ----
 * NL_POOL_TOKEN: out[b] = x[b, 0] (class token).
 * NL_POOL_AVG: out[b] = mean over t in [prefix, T) of x[b, t] (timm
 * excludes the prefix tokens, prefix = 1 with a class token). */
typedef enum { NL_POOL_TOKEN = 0, NL_POOL_AVG = 1 } nl_pool;
void nl_pool_forward(float *out, const float *x, nl_pool pool, int prefix, int B, int T, int C);

#endif
