/* Quantized Linear layers: integer weights with per-group scales and zero
 * points, and their forward products.
 *
 * Quantization of a group of weights w (the formulas of llm-awq's
 * pseudo_quantize_tensor and SmoothQuant's per-channel W8):
 *  - asymmetric, integer range [qmin, qmax] (4-bit: [0, 15]; 8-bit: [-128, 127]):
 *      s = max((max w - min w) / (qmax - qmin), 1e-5)
 *      z = clamp(qmin - round(min w / s), qmin, qmax)
 *      q = clamp(round(w / s) + z, qmin, qmax),   w ~ s (q - z)
 *  - symmetric (8-bit, the weights of an INT8 x INT8 product):
 *      s = max(max |w| / 127, 1e-8), z = 0, q = clamp(round(w / s), -127, 127)
 * round() is round-half-away-from-zero (C's roundf; torch.round rounds half
 * to even: they differ only on exact .5 ties).
 *
 * Storage: bits 8: int8 [oc, ic]; bits 4: uint8 [oc, ic / 2], column 2k in
 * the low nibble of byte k, 2k + 1 in the high one; bits 3 (asymmetric,
 * [0, 7]): uint8 [oc, 3 ic / 8] (ic a multiple of 8), column k of a row in
 * bits 3k .. 3k + 2 of the row's bytes read as one little-endian bit string
 * (8 columns in 3 bytes). Scales float [oc,
 * ngroups], zero points int32 in memory (int8 / uint8 in files), group =
 * ic / ngroups consecutive input channels.
 *
 * Forward (out [N, oc] = inp [N, ic] @ W^T + b):
 *  - weight-only (acts 0): tiles of 64 output channels are dequantized into
 *    a small per-worker float buffer and multiplied by the FP32 Linear's
 *    AVX-512 kernel (tensor/gemm.h; OpenBLAS's sgemm without AVX-512), the
 *    tiles over nl_parallel_for: no dequantized copy of the whole matrix.
 *  - W8A8 (acts 8, bits 8, symmetric): the input rows are quantized to int8
 *    (per token, dynamic: sa_i = max_k |x_ik| / 127; or per tensor, static:
 *    sa = act_scale from calibration), the product int8 x int8 -> int32 runs
 *    in oneDNN's matmul primitive (created once per shape and cached), and
 *    out_ij = acc_ij * sa_i * s_j + b_j. On CPUs with AVX512-VNNI the
 *    product is normlab's own kernel (tensor/igemm.h: the quantization a
 *    pass of its own, the scales, the bias and the layer after it fused
 *    into the product's tiles), over weights packed once by
 *    nl_qlinear_pack; the same integers and the same bits as oneDNN.
 * in_scale (may be NULL, [ic]): the input's columns are multiplied by it
 * first (AWQ / SmoothQuant factors that could not be folded into the
 * preceding operation). */
#ifndef NL_TENSOR_QLINEAR_H
#define NL_TENSOR_QLINEAR_H

#include <stddef.h>
#include <stdint.h>

typedef struct nl_qlinear {
  int oc, ic;
  int bits;            /* 8, 4 or 3 */
  int ngroups, group;  /* group = ic / ngroups */
  int symmetric;       /* zero points all 0, range [-127, 127] */
  int acts;            /* 0: FP32 activations; 8: INT8 activations (bits 8, symmetric) */
  int act_per_tensor;  /* acts 8: 1 static act_scale, 0 per-token dynamic */
  float act_scale;
  uint8_t *q;          /* int8 [oc, ic] (bits 8), packed uint8 [oc, ic/2] (bits 4) or
                        * [oc, 3 ic / 8] (bits 3) */
  float *scale;        /* [oc, ngroups] */
  int32_t *zero;       /* [oc, ngroups] */
  float *in_scale;     /* NULL or [ic] */
  int8_t *vnni;        /* W8A8 on AVX512-VNNI (nl_qlinear_pack): the weights packed for
                        * tensor/igemm.h's kernel, or NULL */
  int32_t *vcomp;      /* with vnni: the kernel's per-channel corrections */
} nl_qlinear;

/* W8A8 layers (acts 8) where tensor/igemm.h's kernel runs: pack the
 * weights for it once (vnni, vcomp); a no-op for other layers, elsewhere,
 * or when already packed. With drop, the plain copy q is freed and the
 * weights are held once: get, set, nl_qlinear_raw and the forward read the
 * packed copy. Returns 1 when the layer is (now) packed. */
int nl_qlinear_pack(nl_qlinear *q, int drop);
/* The weights in the storage layout (q's bytes: oc x nl_qlinear_row_bytes)
 * into dst, from q or, when it was dropped, from the packed copy. */
void nl_qlinear_raw(const nl_qlinear *q, uint8_t *dst);

/* Bytes of one row of ic weights at bits 8, 4 or 3 (packed). */
size_t nl_qlinear_row_bytes(int bits, int ic);
/* Input widths a packed width can store: ic even (4 bits), a multiple of 8
 * (3 bits); 1 or 0. */
int nl_qlinear_ic_ok(int bits, int ic);

/* Integer range of a scheme. */
void nl_qrange(int bits, int symmetric, int *qmin, int *qmax);
/* Scale and zero point of n values (formulas above). */
void nl_qparams(const float *w, size_t n, int bits, int symmetric, float *scale, int32_t *zero);
/* q = clamp(round(w / s) + z, qmin, qmax). */
int32_t nl_qvalue(float w, float s, int32_t z, int qmin, int qmax);

/* Quantize w [oc, ic] into q (allocates; q->in_scale NULL, acts 0).
 * group: input channels per scale (ic for one per output channel); ic must
 * be a multiple of it, and even for bits 4. Returns 0, or -1 when the
 * shape does not allow it. */
int nl_qlinear_quantize(nl_qlinear *q, const float *w, int oc, int ic, int bits, int group,
                        int symmetric);
/* Allocate storage for a layer of this shape (contents zero). */
void nl_qlinear_alloc(nl_qlinear *q, int oc, int ic, int bits, int ngroups, int symmetric);
void nl_qlinear_free(nl_qlinear *q);
/* Bytes of q's weight storage (integers, scales, zero points at their file
 * widths, in_scale, act_scale). */
size_t nl_qlinear_bytes(const nl_qlinear *q);
/* Integer weight (before the zero point) at row o, column k. */
int32_t nl_qlinear_get(const nl_qlinear *q, int o, int k);
void nl_qlinear_set(nl_qlinear *q, int o, int k, int32_t v);
/* w [oc, ic] = s (q - z): the stored weights as floats (in_scale not
 * applied). */
void nl_qlinear_dequantize(const nl_qlinear *q, float *w);

/* out [N, oc] = inp [N, ic] @ W^T + b (see above). 0, or -1 when oneDNN
 * failed (err names the call). */
int nl_qlinear_forward(float *out, const float *inp, const nl_qlinear *q, const float *b, int N,
                       char *errbuf, size_t errcap);
/* The same, then e's element-wise layer (tensor/layers.h; NULL: none): on
 * the VNNI kernel on each tile while it is in cache, else as a pass of its
 * own; the bits of the separate layer either way. */
struct nl_lin_epilogue;
int nl_qlinear_forward_ex(float *out, const float *inp, const nl_qlinear *q, const float *b,
                          int N, const struct nl_lin_epilogue *e, char *errbuf, size_t errcap);

/* c [M, N] = a [M, K] @ w [N, K]^T in int32 through oneDNN's matmul
 * (s8 x s8 -> s32; the primitive is cached per (M, N, K)). 0, or -1 with a
 * message in errbuf. */
int nl_qgemm_s8(int M, int N, int K, const int8_t *a, const int8_t *w, int32_t *c, char *errbuf,
                size_t errcap);
/* c [M, N] (row stride ldc) = a [M, K] (row stride lda) @ w [N, K]^T
 * (+ bias [N] when not NULL) through oneDNN's matmul: bf16 x bf16 with
 * FP32 accumulation and an f32 result (tensor/bf16.h), the primitive cached
 * per (M, N, K, lda, ldc, bias) in the same cache as nl_qgemm_s8. Runs on
 * the calling thread. 0, or -1 with a message in errbuf. */
int nl_gemm_bf16(int M, int N, int K, const uint16_t *a, int lda, const uint16_t *w,
                 const float *bias, float *c, int ldc, char *errbuf, size_t errcap);
/* Primitives created so far (the cache's size; tests check reuse). */
int nl_qgemm_cache_size(void);
/* Quantize rows of x [rows, cols] (times in_scale per column if given) to
 * int8: per row when act_scale <= 0 (sa_i = max |x_i| / 127, written to
 * sa), else with the one scale act_scale (sa_i = act_scale). */
void nl_quantize_rows_s8(const float *x, int rows, int cols, const float *in_scale,
                         float act_scale, int8_t *q, float *sa);

#endif
