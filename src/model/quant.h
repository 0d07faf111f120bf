/* Quantized ViTs: the Linear layers of the blocks (attn.qkv, attn.proj,
 * mlp.fc1, mlp.fc2) with integer weights (tensor/qlinear.h), chosen by
 * round-to-nearest (RTN), AWQ or SmoothQuant, stored in safetensors and
 * run as integers by the forward pass.
 *
 * File format. A quantized layer L (e.g. "blocks.3.attn.qkv") replaces the
 * F32 tensor "L.weight" by
 *   L.weight        I8 [oc, ic] (8-bit) or U8 [oc, ic/2] (4-bit, two per
 *                   byte, even column in the low nibble)
 *   L.weight_scale  F32 [oc, ngroups]  (s > 0, finite)
 *   L.weight_zero   I8 (8-bit) / U8 (4-bit) [oc, ngroups]
 *   L.input_scale   F32 [ic], optional: the input is multiplied by it first
 *                   (an AWQ / SmoothQuant factor that is not folded)
 *   L.act_scale     F32 [1]: the static activation scale (W8A8, per tensor)
 * and __metadata__ "quantization" holds the scheme as JSON:
 *   {"bits": 8, "group": 0, "symmetric": false, "method": "awq",
 *    "acts": 0, "act_mode": "token", "smooth": 0.5, "fp16": ["head"],
 *    "layers": ["blocks.0.attn.qkv", ...], "alpha": {"blocks.0.attn.qkv": 0.35, ...}}
 * (group 0: one scale per output channel). Parts named in "fp16" are
 * stored as F16. Biases, norms, embeddings stay F32.
 *
 * In memory: nl_vit.quant holds the scheme and the layers; each block's
 * q[k] points at its layer (NULL: FP32). nl_vit.params keeps, for the
 * other users of the parameter buffer (training, extraction), the weights
 * as the integers decode (s (q - z)); the forward pass of a quantized layer
 * runs on the integers. */
#ifndef NL_MODEL_QUANT_H
#define NL_MODEL_QUANT_H

#include <stddef.h>

#include "model/safetensors.h"
#include "model/vit.h"
#include "tensor/qlinear.h"

enum { NL_QL_QKV = 0, NL_QL_PROJ, NL_QL_FC1, NL_QL_FC2, NL_QL_COUNT };
/* "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2". */
const char *nl_qlayer_name(int k);

/* Parts (bit masks) for --keep-fp16. */
enum {
  NL_QPART_HEAD = 1 << 0,
  NL_QPART_PATCH = 1 << 1,
  NL_QPART_QKV = 1 << 2,
  NL_QPART_PROJ = 1 << 3,
  NL_QPART_FC1 = 1 << 4,
  NL_QPART_FC2 = 1 << 5,
};
/* "head,patch_embed,attn,mlp,qkv,proj,fc1,fc2" (attn = qkv + proj, mlp =
 * fc1 + fc2; "none" or "" for none). NL_EINPUT naming an unknown part. */
int nl_quant_parts_parse(const char *list, unsigned *mask, nl_error *err);

typedef struct nl_vit_quant {
  int bits;            /* 8 or 4 */
  int group;           /* requested group (0: per output channel) */
  int symmetric;
  int acts;            /* 0 or 8 */
  int act_per_tensor;
  char method[16];     /* rtn, awq, smoothquant */
  float smooth;
  unsigned fp16;       /* parts stored as F16 */
  int int_only;        /* loaded with nl_vit_load_opts.int_only: no FP32 copies */
  nl_qlinear *lin;     /* depth * NL_QL_COUNT; bits 0: not quantized */
  float *alpha;        /* depth * NL_QL_COUNT: chosen alpha (-1: none) */
} nl_vit_quant;

void nl_vit_quant_free(nl_vit_quant *q);

typedef struct nl_quant_opts {
  int bits;            /* 8 or 4 */
  int group;           /* 0: per output channel */
  int awq;             /* AWQ scale search */
  int acts;            /* 8: W8A8 with SmoothQuant scales */
  int act_per_tensor;  /* W8A8: static per-tensor activation scale (else per token) */
  float smooth;        /* SmoothQuant alpha */
  unsigned fp16;       /* parts kept in FP16 (not quantized) */
} nl_quant_opts;

typedef struct nl_quant_layer_report {
  char name[48];
  float alpha;         /* AWQ / SmoothQuant alpha (0 for RTN) */
  double err_rtn;      /* mean squared output error on the calibration batch, alpha 0
                          (weights only: W8A8's symmetric weights, FP32 activations) */
  double err_best;     /* the same at the chosen alpha (AWQ: the grid's least) */
  double err_final;    /* the same through the quantized layer's own forward
                          (W8A8: activations quantized too) */
} nl_quant_layer_report;

/* AWQ search for one layer (llm-awq's auto_scale): x [rows, ic]
 * calibration inputs, w [oc, ic]. For alpha in {0, 0.05, ..., 0.95}:
 * s = max(mean_rows |x|, ...)^alpha clamped at 1e-4, divided by
 * sqrt(max s * min s); error = mean over rows and outputs of
 * (x w^T - (x / s) Q(w s)^T)^2 with Q the RTN quantizer (bits, group,
 * asymmetric). Writes the least-error s [ic] and alpha, that error and the
 * alpha 0 (plain RTN) error. `threads` as nl_parallel_for. */
void nl_awq_search(const float *x, int rows, int ic, const float *w, int oc, int bits, int group,
                   float *s, float *alpha, double *err_best, double *err_rtn);
/* SmoothQuant scales: s_j = max(max_r |x_rj|, 1e-5)^alpha / max(max_o |w_oj|, 1e-5)^(1 - alpha). */
void nl_smooth_scales(const float *x, int rows, int ic, const float *w, int oc, float alpha,
                      float *s);

/* Quantize model m in place (it must not be quantized yet): calibration
 * images [n, C, H, W] normalised (the AWQ / SmoothQuant statistics and the
 * reported errors). rep: depth * NL_QL_COUNT entries or NULL. */
int nl_vit_quantize(nl_vit *m, const float *images, int n, const nl_quant_opts *o,
                    int threads, nl_quant_layer_report *rep, nl_error *err);

/* Bytes of the model's tensors at their stored widths. */
size_t nl_vit_stored_bytes(const nl_vit *m);
/* The same for m->tensors[i]: a quantized layer's weight is its integers
 * with their scales, zero points, input and activation scales
 * (nl_qlinear_bytes); a --keep-fp16 part 2 bytes per value; the rest 4. */
size_t nl_vit_tensor_stored_bytes(const nl_vit *m, int i);
/* "fp32", or e.g. "W8A8 (INT8 oneDNN)", "W4 g128 weight-only", "bf16 (...)". */
void nl_vit_precision(const nl_vit *m, char *buf, size_t cap);

/* 1 when m->tensors[i] is a quantized weight loaded int_only, or a Linear
 * weight held only packed (nl_vit_load_opts.packed): its region of
 * m->params holds no values and must not be read. */
int nl_vit_tensor_fp32_absent(const nl_vit *m, int i);
/* 0 for an FP32 model; NL_EINPUT for a quantized one, naming path and
 * `what` (e.g. "train"): its FP32 weights are only a decoded copy, which
 * saving does not keep (it writes the integers), so changing them would be
 * lost. */
int nl_vit_quant_check_trainable(const nl_vit *m, const char *path, const char *what,
                                 nl_error *err);

/* ---- used by the loader and saver (vit_load.c) ---- */
/* Parse __metadata__ quantization (NULL with NL_EINPUT on a bad scheme). */
nl_vit_quant *nl_quant_scheme_parse(const char *json, const nl_vit_config *c, const char *path,
                                    nl_error *err);
/* name is a quantized layer's integer weight / one of its extra tensors. */
int nl_quant_is_qweight(const nl_vit_quant *q, const nl_vit_config *c, const char *name);
int nl_quant_is_extra(const nl_vit_quant *q, const nl_vit_config *c, const char *name);
/* Read the layers from f into q (checks every tensor's dtype, shape and
 * values), decode them into m's parameters, attach q to m (m owns it from
 * then on, also on error). */
int nl_quant_attach(nl_vit *m, nl_vit_quant *q, const nl_st_file *f, const char *path,
                    nl_error *err);
/* Add m's tensors to w at their stored widths, and the scheme metadata. */
int nl_quant_write(const nl_vit *m, nl_st_writer *w, nl_error *err);

#endif
