/* The per-block cost table of a ViT: for each part of the forward pass
 * (patch embedding; per block norm1, qkv, attention, proj, norm2, fc1,
 * GELU, fc2 and the residual adds; the final norm; the head) its FLOPs,
 * parameters and bytes read per image at a batch size, every figure a
 * closed form of the config (T tokens, D width, Hm the block's MLP width,
 * H the block's heads and A = H x head_dim its attention width (A = D
 * unless heads were pruned, nl_vit_heads), NP patches, Kp = in_chans *
 * patch^2 patch values, K classes):
 *
 *   patch_embed  2 NP D Kp                 params D Kp + D + T D (+ D cls)   acts 4 NP Kp
 *   norm (slot)  rows * f(D)               params 2D (+1 DyT alpha)          acts rows * r(D)
 *                f: LayerNorm 5D+2, DyT 24D, expression cost*D
 *                r: LayerNorm 8D, DyT and expressions 4D (expr/cost.c)
 *                rows: T (norm1, norm2; the final norm: T with class-token
 *                pooling, which norms every token, 1 with average pooling)
 *   qkv          2 T D 3A                  params 3A D (+ 3A bias)           acts 4 T D
 *   attention    4 T^2 A + H T (24 T + 1)  params 0                          acts 4 (3 T A + H T^2)
 *                (scores and value product 2 T^2 D each; softmax 24 per
 *                score: scale, max, subtract, exp 19, sum, multiply; one
 *                division per row)
 *   proj         2 T A D                   params A D + D                    acts 4 T A
 *   fc1          2 T D Hm                  params D Hm + Hm                  acts 4 T D
 *   gelu         27 T Hm (erf 23 as tanh, 4 multiply-adds)                   acts 4 T Hm
 *   fc2          2 T Hm D                  params Hm D + D                   acts 4 T Hm
 *   residual     2 T D (+ 2 T D layer scale)  params (2D layer scale)        acts 16 T D (+ 8 T D)
 *   head         2 D K (+ NP D average pooling)  params D K + K              acts 4 D (+ 4 NP D)
 *
 * Matrix products count a multiply-add as 2 FLOPs and leave bias adds out
 * (as nl_vit_flops_per_image); the class-token and position adds are not
 * counted. Bytes read per image = the part's weights at their stored width
 * (the file's dtype; 4 where a tensor is not in the file) / batch + its
 * input activations at FP32 (acts above). A quantized model's weights
 * count as stored (model/quant.h, nl_vit_tensor_stored_bytes): a quantized
 * Linear oc x ic with g scale groups per row as oc ic (8-bit) or oc ic / 2
 * (4-bit) bytes + 4 oc g (F32 scales) + oc g (I8/U8 zero points) + 4 ic
 * (an unfolded input scale) + 4 (a static activation scale); FP16 parts 2
 * bytes per value; the rest (biases, norms, embeddings) 4. params counts
 * the weights themselves (oc ic), not their scales. */
#ifndef NL_MODEL_BLOCKCOST_H
#define NL_MODEL_BLOCKCOST_H

#include "model/safetensors.h"
#include "model/vit.h"

/* One row of the table: the part, its block (-1 outside the blocks) and
 * its figures. flops and act_bytes per image; params and weight_bytes for
 * the model; bytes = weight_bytes / batch + act_bytes. */
typedef struct nl_part_cost {
  nl_vit_part part;
  int block;
  const char *slot_kind; /* norm parts: "layernorm", "dyt" or "expr"; else NULL */
  double flops, params, weight_bytes, act_bytes, bytes;
} nl_part_cost;

/* The rows in forward order: patch_embed, then for each block norm1, qkv,
 * attention, proj, norm2, fc1, gelu, fc2, residual, then norm, head
 * (depth * 9 + 3 rows, *rows allocated; free it). stored: the model's file
 * for the stored widths (may be NULL: 4 bytes everywhere). batch >= 1. */
int nl_vit_cost_rows(const nl_vit *m, const nl_st_file *stored, int batch, nl_part_cost **rows,
                     int *n, nl_error *err);

/* The cost model's figure for a norm slot per token at width d (FLOPs and
 * activation bytes read), following its kind; expressions counted once
 * simplified, clip 0. */
void nl_norm_token_cost(const nl_norm *n, int d, double *flops, double *read_bytes);

#endif
