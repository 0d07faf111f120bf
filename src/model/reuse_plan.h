/* Attention-reuse plans carried by a model (nl_vit.reuse): which blocks
 * reuse an earlier block's attention, and how.
 *
 * Block l with source s (0 <= s < l) and transformation block (TB):
 *   none    TReX-style, training-free: block l skips its q and k
 *           projections, q k^T and the softmax, and applies block s's
 *           attention probabilities (as block s used them in this pass) to
 *           its own values; v, proj and the MLP as usual. Saves
 *           2 T D 2D + 2 T^2 D FLOPs per image.
 *   linear  SkipAt-style: block l skips its whole attention branch (norm1,
 *           qkv, attention, proj) and takes as its attention output
 *           (the proj output, before layer scale) W z + b, z block s's
 *           attention output in this pass; W [D, D], b [D].
 *   mlp     the same with fc2(gelu(fc1(z))): fc1 [H, D], fc2 [D, H].
 * A TB block saves 2 T D 3D + 4 T^2 D + 2 T D D and costs its TB's matrix
 * FLOPs (2 T D D, or 4 T D H).
 *
 * In a checkpoint (nl_vit_save): __metadata__ "reuse", a JSON object
 *   {"version": 1, "blocks": [{"block": 5, "source": 4, "tb": "linear"},
 *                             {"block": 7, "source": 6, "tb": "mlp", "hidden": 48}]}
 * and the TB tensors "reuse.L.tb.weight" [D, D], "reuse.L.tb.bias" [D]
 * (linear), "reuse.L.tb.fc1.weight" [H, D], "reuse.L.tb.fc1.bias" [H],
 * "reuse.L.tb.fc2.weight" [D, H], "reuse.L.tb.fc2.bias" [D] (mlp).
 * nl_vit_load attaches the plan; the forward pass, the staged pass and the
 * trainer follow it. The library never prints. */
#ifndef NL_MODEL_REUSE_PLAN_H
#define NL_MODEL_REUSE_PLAN_H

#include <stddef.h>

#include "base/error.h"
#include "model/vit.h"

struct nl_st_file;
struct nl_st_writer;

typedef enum nl_tb_kind { NL_TB_NONE = 0, NL_TB_LINEAR, NL_TB_MLP } nl_tb_kind;

typedef struct nl_vit_reuse {
  int depth, dim;
  int src[NL_VIT_MAX_DEPTH];     /* -1: the block computes its own attention */
  nl_tb_kind tb[NL_VIT_MAX_DEPTH];
  int hidden[NL_VIT_MAX_DEPTH];  /* mlp: H */
  /* TB parameters, views into params: linear w1 [D, D], b1 [D];
   * mlp w1 [H, D], b1 [H], w2 [D, H], b2 [D] */
  float *w1[NL_VIT_MAX_DEPTH], *b1[NL_VIT_MAX_DEPTH];
  float *w2[NL_VIT_MAX_DEPTH], *b2[NL_VIT_MAX_DEPTH];
  float *params;                 /* every TB's parameters, one buffer (NULL: none) */
  size_t nparams;
} nl_vit_reuse;

/* An empty plan for a model of depth blocks, width dim. */
nl_vit_reuse *nl_reuse_plan_new(int depth, int dim);
void nl_reuse_plan_free(nl_vit_reuse *p);
nl_vit_reuse *nl_reuse_plan_copy(const nl_vit_reuse *p);
/* Block l reuses block src's attention with a TB of kind tb (hidden: mlp
 * width). NL_EINPUT naming the block for a block that does not exist, a
 * source that is not an earlier block, an mlp without a hidden width.
 * TB parameters are (re)laid out and zeroed for blocks whose kind or
 * width changes; the others keep theirs. src -1 clears the block. */
int nl_reuse_plan_set(nl_vit_reuse *p, int l, int src, nl_tb_kind tb, int hidden, nl_error *err);
/* Blocks that reuse. */
int nl_reuse_plan_count(const nl_vit_reuse *p);
/* 1 when some later block reads block s's attention. */
int nl_reuse_plan_is_source(const nl_vit_reuse *p, int s);
const char *nl_tb_kind_name(nl_tb_kind k);
int nl_tb_kind_parse(const char *s, nl_tb_kind *k);
/* "5<4:linear,7<6" style text of the plan ("none" when empty). */
void nl_reuse_plan_text(const nl_vit_reuse *p, char *buf, size_t cap);

/* NL_EINPUT naming the blocks when a block of plan p applies the attention
 * probabilities of a block with another number of heads (a head-pruned
 * model, nl_vit_heads); 0 otherwise (p may be NULL). */
int nl_reuse_plan_check_heads(const nl_vit_reuse *p, const nl_vit_config *c, nl_error *err);

/* Matrix FLOPs per image block l saves (its TB's cost subtracted; 0 for a
 * block that does not reuse), and the whole model's under the plan. */
double nl_reuse_block_saving(const nl_vit_reuse *p, const nl_vit_config *c, int l);
double nl_reuse_plan_flops(const nl_vit_reuse *p, const nl_vit_config *c);
/* FP32 weight bytes the plan leaves unread (q, k rows of a none block;
 * norm1, qkv, proj of a TB block) minus the TB's own. */
double nl_reuse_plan_bytes_saved(const nl_vit_reuse *p, const nl_vit_config *c);

/* Checkpoint I/O (see above); nl_reuse_plan_read returns NULL without
 * error when the file has no plan. is_tensor: a name the plan owns. */
nl_vit_reuse *nl_reuse_plan_read(const struct nl_st_file *f, const nl_vit_config *c,
                                 const char *path, nl_error *err);
int nl_reuse_plan_is_tensor(const nl_vit_reuse *p, const char *name);
int nl_reuse_plan_write(const nl_vit_reuse *p, struct nl_st_writer *w, nl_error *err);

/* A TB on rows of z [rows, D]: out [rows, D]; hid, act [rows, H] (mlp:
 * fc1 output and its GELU; may be NULL for linear). */
void nl_reuse_tb_forward(const nl_vit_reuse *p, int l, const float *z, float *out, float *hid,
                         float *act, int rows);

#endif
