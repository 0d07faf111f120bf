/* Vision Transformer (timm VisionTransformer naming) on the CPU.
 *
 * Parameters live in one float buffer (nl_vit.params) with named views
 * (nl_vit.tensors, in timm names; nl_vit.blocks for per-block pointers), so
 * optimisers and checkpoints work on the buffer as a whole. A forward pass
 * writes its activations into an nl_vit_acts whose per-layer buffers stay
 * addressable after the call (all layers kept, for a backward pass, or one
 * shared set, for inference).
 *
 * Every LayerNorm of timm's model is a norm slot (nl_norm): blocks.N.norm1,
 * blocks.N.norm2, then norm (class-token pooling) or fc_norm (average
 * pooling). A slot's kind is LayerNorm, DyT (tanh(alpha x) w + b) or an
 * expression (f(x) w + b); the affine w, b always stays the slot's own
 * parameters.
 *
 * DyT alpha is a learnable parameter and lives in nl_vit.params like every
 * other: the buffer reserves one float (a 16-float aligned view) per norm
 * slot for it, and nl_norm.alpha points there for every slot, whatever its
 * kind. While a slot is DyT, nl_vit.tensors lists that float as the tensor
 * "<slot>.alpha", shape [1] (the name and shape of the DyT reference
 * implementation), so optimisers and checkpoints see it; for other kinds it
 * is not listed (like the alignment padding between views, it belongs to no
 * tensor; nl_vit.nparams counts it). Changing kinds (nl_norm_set_*, or
 * nl_vit_replace in model/replace.h for a whole model) edits the
 * nl_vit.tensors list in place (entries after the slot shift by one) but
 * never moves the buffer: pointers into nl_vit.params stay valid, nl_param
 * pointers and indices into nl_vit.tensors do not. The gradient of alpha is
 * at offset (n->alpha - m->params) of a buffer laid out like params.
 *
 * Checkpoints (nl_vit_save) record every slot's kind in the safetensors
 * __metadata__ key "norms", a JSON object
 *   {"blocks.0.norm1": {"kind": "expr", "expr": "0.7*clip(2.3*x)"},
 *    "blocks.0.norm2": {"kind": "dyt"}, "norm": {"kind": "layernorm"}, ...}
 * with DyT alphas as the tensors "<slot>.alpha" (F32 [1]). nl_vit_load
 * restores the kinds; a file without "norms" gets DyT wherever a
 * "<slot>.alpha" tensor exists and LayerNorm elsewhere. */
#ifndef NL_MODEL_VIT_H
#define NL_MODEL_VIT_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

struct nl_prog;
struct nl_qlinear;
struct nl_vit_quant;
struct nl_vit_reuse;

/* Blocks a model may have (per-block MLP widths are kept in the config). */
#define NL_VIT_MAX_DEPTH 128

typedef struct nl_vit_config {
  int img_size, in_chans, patch;
  int dim, depth, heads, mlp_hidden, classes; /* mlp_hidden: the widest block's */
  /* MLP hidden width of each block (fc1 rows), from the tensor shapes: all
   * equal to mlp_hidden for a timm model, per block after a budget prune
   * (model/prune.h). 0 reads as mlp_hidden (nl_vit_mlp_width). */
  int mlp_widths[NL_VIT_MAX_DEPTH];
  /* Attention heads of each block, from the tensor shapes (qkv rows =
   * 3 * h * head_dim, proj columns = h * head_dim): all equal to heads for
   * a timm model, fewer after a head prune (model/prune.h). The head
   * dimension stays dim / heads. 0 reads as heads (nl_vit_heads). */
  int head_counts[NL_VIT_MAX_DEPTH];
  int class_token;  /* 1: a class token is prepended */
  int avg_pool;     /* 1: mean over patch tokens + fc_norm; 0: token 0 after norm */
  int layer_scale;  /* blocks carry ls1.gamma / ls2.gamma */
  int qkv_bias;
  float eps;        /* LayerNorm epsilon (1e-6) */
  int nmean;        /* entries of mean/std (1 or in_chans) */
  float mean[4], std[4];
  /* derived */
  int grid, npatch, tokens; /* tokens = npatch + class_token */
  char arch[64];            /* architecture name if known, else "" */
  char source[160];         /* where the config came from */
  char norm_source[96];     /* where mean/std came from */
  /* preprocessing of images (data/transform.h) */
  float crop_pct;           /* evaluation: shorter side to floor(img_size / crop_pct) */
  char interpolation[16];   /* "bicubic", "bilinear", ... */
  char crop_source[96];     /* where crop_pct / interpolation came from */
  char size_source[96];     /* where img_size came from */
} nl_vit_config;

/* Block l's MLP hidden width. */
static inline int nl_vit_mlp_width(const nl_vit_config *c, int l) {
  return c->mlp_widths[l] > 0 ? c->mlp_widths[l] : c->mlp_hidden;
}
/* 1 when every block has the same MLP width (a timm-loadable mlp_ratio). */
int nl_vit_mlp_uniform(const nl_vit_config *c);
/* Block l's attention heads, the head dimension (dim / heads, every block)
 * and block l's attention width (heads x head dim: qkv gives 3 x that
 * many outputs, proj takes that many inputs). */
static inline int nl_vit_heads(const nl_vit_config *c, int l) {
  return c->head_counts[l] > 0 ? c->head_counts[l] : c->heads;
}
static inline int nl_vit_head_dim(const nl_vit_config *c) {
  return c->heads > 0 ? c->dim / c->heads : c->dim;
}
static inline int nl_vit_attn_width(const nl_vit_config *c, int l) {
  return c->head_counts[l] > 0 ? c->head_counts[l] * nl_vit_head_dim(c) : c->dim;
}
/* 1 when every block has all cfg.heads heads (no head pruned). */
int nl_vit_heads_full(const nl_vit_config *c);

typedef enum nl_norm_kind { NL_NORM_LAYERNORM = 0, NL_NORM_DYT, NL_NORM_EXPR } nl_norm_kind;

typedef struct nl_norm {
  char name[48];        /* "blocks.3.norm1", "norm", "fc_norm" */
  nl_norm_kind kind;
  float *w, *b;         /* affine, views into nl_vit.params */
  float *alpha;         /* DyT: tanh(*alpha * x); view into nl_vit.params (see above),
                           never NULL in a loaded model; *alpha is 0.5 unless set */
  struct nl_prog *prog; /* expression: owned copy, NULL for other kinds */
  char *expr;           /* expression: its text as saved (round-trip precision,
                           parses back to prog exactly), owned; NULL for other kinds */
} nl_norm;

/* A named view into the parameter buffer. */
typedef struct nl_param {
  char name[48];        /* timm tensor name */
  int ndim;
  int64_t shape[4];
  size_t numel, offset; /* offset in floats into nl_vit.params */
} nl_param;

typedef struct nl_vit_block {
  float *qkv_w, *qkv_b, *proj_w, *proj_b, *ls1;
  float *fc1_w, *fc1_b, *fc2_w, *fc2_b, *ls2;
  nl_norm *norm1, *norm2;
  /* quantized layers (model/quant.h), NL_QL_QKV, _PROJ, _FC1, _FC2;
   * NULL: the FP32 weights above */
  struct nl_qlinear *q[4];
} nl_vit_block;

typedef struct nl_vit {
  nl_vit_config cfg;
  float *params;        /* all parameters, one 64-byte aligned buffer */
  size_t nparams;       /* floats in params */
  nl_param *tensors;    /* live tensors, in checkpoint order (see alpha above) */
  int ntensors;
  int tensors_cap;      /* room in tensors (one more per norm slot) */
  float *cls_token, *pos_embed, *patch_w, *patch_b, *head_w, *head_b;
  nl_vit_block *blocks; /* depth entries */
  nl_norm *norms;       /* 2 * depth + 1 slots, in forward order */
  int nnorms;
  nl_norm *final_norm;  /* "norm" or "fc_norm" */
  struct nl_vit_quant *quant; /* NULL: not quantized (model/quant.h) */
  /* NULL, or (precision bf16, nl_vit_set_precision) the Linear weights
   * rounded to bfloat16 at the offsets they have in params (the rest
   * unused): the forward pass then runs every Linear (patch embedding,
   * qkv, proj, fc1, fc2, head) as a BF16 product with FP32 accumulation
   * (tensor/bf16.h); norms, attention, GELU and residuals stay FP32. A copy
   * made once: changing params afterwards (training) needs
   * nl_vit_set_precision again. */
  uint16_t *bf16;
  /* NULL, or (nl_vit_load_opts.packed) wpack[4 * block + NL_QL_QKV ..]: the
   * Linear weights packed for the matrix kernel (tensor/gemm.h) in wpack_mem,
   * NULL where the FP32 view is kept; owned */
  float **wpack, *wpack_mem;
  struct nl_vit_reuse *reuse; /* NULL: every block computes its own attention;
                                 else the attention-reuse plan the passes follow
                                 (model/reuse_plan.h), owned, saved and loaded */
} nl_vit;

typedef struct nl_vit_load_opts {
  int heads;            /* > 0: override the number of heads */
  int int_only;         /* a quantized model for inference only: the FP32 copies of its
                           quantized weights are neither decoded nor touched (so not
                           resident), their views (qkv_w, ...) NULL; the forward pass runs
                           on the integers as always. Such a model must not be trained,
                           extracted or saved (nl_vit_quant_check_trainable). No effect
                           on an FP32 model. */
  int precision;        /* NL_PREC_BF16: nl_vit_set_precision after loading */
  int packed;           /* inference only: the blocks' FP32 Linear weights (qkv, proj,
                           fc1, fc2) are converted straight into the matrix kernel's
                           packed layout (nl_vit.wpack) and their FP32 views are NULL,
                           their part of params untouched, so the weights are held
                           once instead of twice (params and a pack per evaluation,
                           nl_vit_acts_pack). Only where the kernel runs
                           (nl_gemm_available), at FP32 precision, without an
                           attention-reuse plan; a weight with non-finite values stays
                           unpacked (the evaluation names it). Such a model must not be
                           trained, extracted, converted or saved. */
} nl_vit_load_opts;

/* Precision of the forward pass's matrix products (see nl_vit.bf16). */
typedef enum nl_precision { NL_PREC_FP32 = 0, NL_PREC_BF16 } nl_precision;
/* "fp32" or "bf16" (the --precision values, and Lua's precision=):
 * NL_EINPUT naming the value otherwise. */
int nl_precision_parse(const char *s, nl_precision *p, nl_error *err);
const char *nl_precision_name(nl_precision p);

/* Load a model: weights from a safetensors file (F32/F16/BF16, kept as
 * F32; a quantized model's integer layers as model/quant.h describes), config from the file's __metadata__ model_args, else a hub-style
 * config.json beside it, else inferred from the tensor shapes. Unknown and
 * missing tensors are errors naming them. A directory stands for its
 * model.safetensors (and the config.json beside it), as the hub
 * distributes timm models. Preprocessing (crop_pct, interpolation, mean,
 * std, input_size) comes from config.json's pretrained_cfg, else
 * __metadata__ keys of the same names, else crop_pct 0.875 (timm's
 * default) with a pretrained_cfg and 1 without, bicubic. */
int nl_vit_load(nl_vit *m, const char *path, const nl_vit_load_opts *o, nl_error *err);
void nl_vit_free(nl_vit *m);
/* 1 when tensor `name` of m is held only packed (nl_vit_load_opts.packed). */
int nl_vit_weight_packed(const nl_vit *m, const char *name);
/* The config alone, as nl_vit_load resolves it (the tensors are not
 * read, only their header). */
int nl_vit_read_config(nl_vit_config *c, const char *path, const nl_vit_load_opts *o,
                       nl_error *err);
/* A model of config c (mlp_widths per block) with zeroed parameters and
 * LayerNorm in every slot (alphas 0.5): the target of a transformation
 * that changes shapes (model/prune.h). NL_EINPUT for a config that is not
 * a ViT. */
int nl_vit_create(nl_vit *m, const nl_vit_config *c, nl_error *err);
/* Write the parameters (timm names, DyT alphas included), the config and
 * the norm kinds ("norms") as __metadata__ (model_args has mlp_ratio only
 * when every block has the same MLP width; otherwise "mlp_widths", a JSON
 * list of the blocks' widths, which nl_vit_load checks against the
 * shapes); atomically (temporary file and rename: an error leaves no file
 * behind). A quantized model is written with its integer layers and scheme
 * (model/quant.h). */
int nl_vit_save(const nl_vit *m, const char *path, nl_error *err);
/* The same with `nmeta` more __metadata__ entries (key, value pairs in
 * meta), e.g. how a model was made ("pruned"). */
int nl_vit_save_meta(const nl_vit *m, const char *path, const char *const *meta, int nmeta,
                     nl_error *err);

/* Run m's Linear layers in precision p from now on: BF16 makes the BF16
 * copies of the weights (again, from the current params), FP32 drops them.
 * NL_EINPUT when BF16 cannot run: a quantized model (its layers are
 * integer products already), or a CPU without BF16 instructions
 * (tensor/bf16.h, nl_bf16_check_cpu). */
int nl_vit_set_precision(nl_vit *m, nl_precision p, nl_error *err);

/* Parameter count and matrix FLOPs (multiply-add = 2) per image. */
size_t nl_vit_param_count(const nl_vit *m);
double nl_vit_flops_per_image(const nl_vit_config *c);

nl_norm *nl_vit_norm_find(nl_vit *m, const char *name);
/* Switch slot n of model m to a kind. The affine is kept; nl_vit.tensors
 * gains or loses "<slot>.alpha" (see above). */
void nl_norm_set_layernorm(nl_vit *m, nl_norm *n);
/* DyT with *n->alpha = alpha. */
void nl_norm_set_dyt(nl_vit *m, nl_norm *n, float alpha);
/* Expression norm f(x) * w + b, f evaluated with nl_eval. Keeps the
 * canonical form of p (printed at round-trip precision and parsed back:
 * the same function, and exactly what a saved checkpoint reloads).
 * NL_EINPUT naming the slot when p is not a well-formed program or has a
 * constant that is not finite. */
int nl_norm_set_expr(nl_vit *m, nl_norm *n, const struct nl_prog *p, nl_error *err);
/* "layernorm", "dyt" or "expr". */
const char *nl_norm_kind_name(nl_norm_kind k);

/* Activations of one forward pass over a batch of up to `batch` images.
 * Arrays are row-major: [batch, tokens, dim] unless noted. */
typedef struct nl_vit_layer_acts {
  float *res1;          /* block input = norm1 input */
  float *ln1, *ln1_mean, *ln1_rstd; /* norm1 output, LayerNorm stats [B*T] */
  float *qkv;           /* [B, T, 3D] */
  float *att;           /* softmax probabilities [B, H, T, T] */
  float *atty;          /* attention output before proj [B, T, D] */
  float *proj;          /* proj output (before layer scale) */
  float *res2;          /* res1 + ls1 * proj = norm2 input */
  float *ln2, *ln2_mean, *ln2_rstd;
  float *fc1;           /* [B, T, mlp_hidden], before GELU */
  float *gelu;          /* [B, T, mlp_hidden] */
  float *fc2;           /* fc2 output (before layer scale) */
} nl_vit_layer_acts;

/* The parts of the forward pass, for the cost table (model/blockcost.h) and
 * its timing (nl_vit_acts.part_s): the block parts (NORM1 .. RESIDUAL: the
 * two residual adds and layer scales) and the parts outside the blocks. */
typedef enum nl_vit_part {
  NL_PART_PATCH = 0, /* im2col and the patch projection, class token and positions */
  NL_PART_NORM1,
  NL_PART_QKV,
  NL_PART_ATTN, /* scores, softmax, value product */
  NL_PART_PROJ,
  NL_PART_NORM2,
  NL_PART_FC1,
  NL_PART_GELU,
  NL_PART_FC2,
  NL_PART_RESIDUAL,
  NL_PART_NORM, /* the final norm */
  NL_PART_HEAD, /* pooling and the head */
  NL_PART_COUNT
} nl_vit_part;
/* "patch_embed", "norm1", ..., "residual", "norm", "head". */
const char *nl_vit_part_name(nl_vit_part p);
/* Index of (part, block) in a part_s array: block parts at
 * (1 + block) * NL_PART_COUNT + part, the others (block -1) at part. */
#define nl_vit_part_index(part, block) ((size_t)((block) + 1) * NL_PART_COUNT + (size_t)(part))
#define nl_vit_part_slots(depth) ((size_t)((depth) + 1) * NL_PART_COUNT)

typedef struct nl_vit_acts {
  int batch;            /* capacity in images */
  int keep_all;         /* 1: every layer has its own buffers */
  float *patches;       /* im2col [B, npatch, C*p*p] */
  nl_vit_layer_acts *layer; /* depth entries */
  float *out;           /* last block's output [B, T, D] */
  float *normed, *norm_mean, *norm_rstd; /* final norm output: [B,T,D] (token) or [B,D] (avg) */
  float *pooled;        /* [B, D]: mean of patch tokens (avg) or token 0 of normed */
  float *logits;        /* [B, classes] */
  float *mem;
  /* Optional (NULL after nl_vit_acts_init): seconds spent in each part of
   * the pass, added to part_s[nl_vit_part_index(part, block)]
   * (nl_vit_part_slots(depth) doubles, the caller's). */
  double *part_s;
  int threads;          /* worker threads of the passes run on these buffers
                         * (0 after nl_vit_acts_init: nl_threads_default()) */
  /* Packed FP32 weights (nl_vit_acts_pack; NULL after nl_vit_acts_init):
   * wpack[4 * block + NL_QL_QKV ..] for the model wpack_model, NULL for a
   * quantized layer. */
  float **wpack, *wpack_mem;
  const struct nl_vit *wpack_model;
  /* Attention reuse (model/reuse_plan.h), allocated by the pass on need:
   * per block the attention probabilities [B, H, T, T] and attention
   * outputs [B, T, D] later blocks read, and the mlp TBs' hidden rows. */
  float **reuse_att, **reuse_out;
  float *reuse_hid, *reuse_act;
  size_t reuse_hid_cap;
} nl_vit_acts;

int nl_vit_acts_init(nl_vit_acts *a, const nl_vit_config *c, int batch, int keep_all,
                     nl_error *err);
void nl_vit_acts_free(nl_vit_acts *a);
/* Pack m's FP32 Linear weights once for the matrix kernel (tensor/gemm.h),
 * so that passes of m on these activations skip packing them per product
 * (the products' bits are the same either way). For inference on a model
 * whose weights no longer change: after a change, pack again (passes of
 * another model ignore the packs). No-op without the kernel (OpenBLAS);
 * NL_ENOMEM when the copy does not fit. */
int nl_vit_acts_pack(nl_vit_acts *a, const struct nl_vit *m, nl_error *err);

/* Norm tap: called once per norm slot and forward pass, in forward order,
 * with the slot's name, its index in nl_vit.norms, its input x and output y
 * as [batch, tokens, dim] float arrays (tokens is 1 for fc_norm, which acts
 * on pooled features). The arrays are valid only during the call. Return 0
 * to go on, non-zero to stop the forward pass (it then fails with NL_EINTR). */
typedef int (*nl_norm_tap_fn)(const char *layer, int index, const float *x, const float *y,
                              int batch, int tokens, int dim, void *user);

/* Observer: what a profiler sees of a forward pass (model/profile.h).
 * Sites are the inputs of every Linear and norm of a block, in forward
 * order; the final norm's input and the head's input have block -1. */
typedef enum nl_vit_site {
  NL_SITE_NORM1_IN,  /* block input (norm1's input) */
  NL_SITE_QKV_IN,    /* norm1 output */
  NL_SITE_PROJ_IN,   /* attention output before proj */
  NL_SITE_NORM2_IN,  /* norm2's input */
  NL_SITE_FC1_IN,    /* norm2 output */
  NL_SITE_FC2_IN,    /* fc1 output after GELU */
  NL_VIT_BLOCK_SITES,
  NL_SITE_FINAL_IN = NL_VIT_BLOCK_SITES, /* final norm's input (block -1) */
  NL_SITE_HEAD_IN,                       /* head's input (block -1) */
} nl_vit_site;

/* "norm1.in", "attn.qkv.in", "attn.proj.in", "norm2.in", "mlp.fc1.in",
 * "mlp.fc2.in", then "in" (final norm: "<norm>.in") and "head.in". */
const char *nl_vit_site_name(nl_vit_site s);
typedef struct nl_vit_observer {
  /* Called with each site's activations x [rows, width] (rows = images x
   * tokens; the pooled features of avg pooling have one row per image),
   * valid during the call; may be NULL. Non-zero stops the pass (NL_EINTR). */
  int (*act)(int block, nl_vit_site site, const float *x, int rows, int width, void *user);
  void *user;
} nl_vit_observer;

/* Forward `n` images (n <= acts->batch), input [n, C, H, W] normalised.
 * Logits land in acts->logits. tap may be NULL. The layers are the forward
 * functions of tensor/layers.h and nl_norm_forward (model/norm.h), the same
 * the trainer runs (train/vit_train.c), so both give the same activations;
 * runs on acts->threads workers (base/threads.h); bitwise the same for any
 * thread count. */
int nl_vit_forward(const nl_vit *m, nl_vit_acts *acts, const float *images, int n,
                   nl_norm_tap_fn tap, void *tap_user, nl_error *err);
/* The same pass, reporting to obs (NULL: exactly nl_vit_forward). Part
 * times go to acts->part_s as in nl_vit_forward; the observer's own calls
 * are not timed. */
int nl_vit_forward_observed(const nl_vit *m, nl_vit_acts *acts, const float *images, int n,
                            nl_norm_tap_fn tap, void *tap_user, const nl_vit_observer *obs,
                            nl_error *err);

/* The pass in stages, for passes that stop images between blocks or shrink
 * the batch (train/exits.h): nl_vit_embed writes the tokens of n images
 * into x [n, T, D]; nl_vit_block_run runs block l on x in place. Both use
 * acts' buffers (layer l's, a->normed as scratch) and a->threads, and run
 * the very calls of nl_vit_forward (embed, then blocks 0..depth-1, give
 * bitwise the block outputs of a plain pass over the same n images). */
int nl_vit_embed(const nl_vit *m, nl_vit_acts *acts, const float *images, int n, float *x,
                 nl_error *err);
int nl_vit_block_run(const nl_vit *m, nl_vit_acts *acts, int l, float *x, int n, nl_error *err);
/* Under a reuse plan, image `from`'s kept attention (see nl_vit_acts)
 * moves to position `to`, for passes that pack their batch between
 * blocks; nothing without a plan. */
void nl_vit_acts_reuse_move(nl_vit_acts *acts, const nl_vit *m, int to, int from);

#endif
