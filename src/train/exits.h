/* Early exits (input-adaptive depth, DeeBERT-style): an exit head after
 * every block of a frozen ViT, and the forward pass that stops each image at
 * the first block whose head is confident enough.
 *
 * An exit head is a copy of the model's final norm slot (the same kind:
 * LayerNorm, DyT or expression, model/norm.h) and a linear head, applied to
 * the block output pooled as the model pools (class token, or the mean of
 * the patch tokens): exit k (0-based) reads the output of block k. Exit
 * depth-1 is the model's own final norm and head, copied and never
 * trained, so it gives the model's logits. The others start as copies too
 * and are trained (nl_exits_fit) with AdamW and cross-entropy on pooled
 * features recorded once from the frozen backbone (nl_exits_features);
 * LayerNorm and expression heads train w, b (an expression keeps its
 * constants), DyT heads also alpha.
 *
 * The rule: after block k < depth-1, an image exits when the largest
 * softmax probability of its exit head exceeds tau (strictly: tau = 1 never
 * exits); tau must be in [0, 1]. At tau = 1 the pass evaluates no
 * intermediate head at all.
 *
 * File format (safetensors): per exit k the F32 tensors
 * "exits.K.norm.weight" [D], "exits.K.norm.bias" [D], "exits.K.norm.alpha"
 * [1] (DyT only), "exits.K.head.weight" [C, D], "exits.K.head.bias" [C];
 * __metadata__ "normlab_exits" a JSON object: version, depth, dim,
 * classes, tokens, pool ("token"|"avg"), norm kind, expr (expression
 * heads), model (the path fitted on), model_hash (nl_vit_hash of it), and
 * how it was fitted (data, images, epochs, seed, lr). With a block policy
 * also "policy.weight" [depth-1, D], "policy.bias" [depth-1],
 * "policy.mean" [D], "policy.std" [D]. The library never prints.
 *
 * The block policy (BlockDrop-style, Wu et al. 2018): a linear layer on the
 * standardised pooled output of block 0 gives one logit per later block;
 * block k runs when its logit is > 0 (probability > 0.5), a skipped block
 * passes its input on (identity), and the model's own norm and head give
 * the prediction. Trained by REINFORCE: block k drawn with probability
 * 0.2 + 0.6 sigmoid(logit) (exploration, as BlockDrop's alpha 0.8), reward
 * 1 - (fraction of blocks 1..depth-1 run)^2 when the prediction is right,
 * -1 when wrong (-gamma with a penalty gamma), minus a moving average of
 * the reward (0.9 old + 0.1 the batch's mean) as the baseline, or the
 * reward of the policy's own greedy decisions on the same image
 * (self-critical); AdamW on the policy alone. Two more options
 * (metadata "policy_head", "policy_init_tau"): the prediction from the exit
 * head after the last block run instead of the model's own (a policy that
 * runs blocks 0..j then gives exit j's answer, as early exit would); and a
 * start from the threshold rule's decisions: before REINFORCE, the logits
 * are fitted by logistic regression (AdamW, on the recorded block-0
 * features) to run block k exactly when the rule at tau would have.
 *
 * The complexity predictor: a linear layer (softmax over depth classes)
 * on the standardised pooled output of block F (pred_block) that gives,
 * per image, the probability that the oracle's exit block (the first exit
 * that already gives the full-depth prediction) is block k, k = 0..depth-1.
 * Trained by AdamW on cross-entropy against the oracle's blocks of the fit
 * images, from the recorded features. It sets where an image starts
 * checking its exits: start = the smallest k >= F whose cumulative
 * probability reaches q (q >= 1: depth-1, never early); the image then
 * leaves at the first block k >= start whose exit's top probability
 * exceeds tau. q = 0 (with F = 0) is the threshold rule; tau = 0 stops
 * every image at its start (the predictor alone). Stored as
 * "predictor.weight" [depth, D], "predictor.bias" [depth],
 * "predictor.mean" [D], "predictor.std" [D], metadata "predictor_block". */
#ifndef NL_TRAIN_EXITS_H
#define NL_TRAIN_EXITS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/progress.h"
#include "data/dataset.h"
#include "model/vit.h"

typedef struct nl_exits {
  int depth, dim, classes, tokens;
  int avg_pool, class_token; /* the model's pooling */
  float eps;                 /* LayerNorm epsilon */
  nl_norm_kind kind;
  nl_norm *norms;            /* depth slots "exits.K.norm"; w, b, alpha into params;
                                prog/expr shared by all (owned by e->prog/e->expr) */
  float **head_w, **head_b;  /* depth pointers into params: [C, D], [C] */
  float *params;             /* every exit's parameters, one buffer */
  size_t nparams;
  struct nl_prog *prog;      /* expression heads: the final norm's program */
  char *expr;
  char model_hash[17];       /* nl_vit_hash of the model they belong to */
  float *policy;             /* NULL, or the block policy (nl_exits_policy_fit):
                                w [depth-1, D], b [depth-1], mean [D], std [D] */
  float *predictor;          /* NULL, or the complexity predictor (nl_exits_pred_fit):
                                w [depth, D], b [depth], mean [D], std [D] */
  int pred_block;            /* the block whose pooled output the predictor reads */
  int policy_exit_head;      /* 1: the policy's prediction from the exit head of the
                                last block run; 0: the model's own head (BlockDrop) */
  double policy_init_tau;    /* provenance: the rule it started from (0: none) */
  /* provenance (saved in the metadata) */
  char model[256], data[64];
  long images;
  int epochs;
  uint64_t seed;
  double lr;
} nl_exits;

/* A 64-bit FNV-1a hash of the model's tensors (names, shapes, values) in
 * checkpoint order and its norm kinds, as 16 hex digits. */
void nl_vit_hash(const nl_vit *m, char out[17]);

/* Exit heads for m: every one a copy of m's final norm slot and head. */
int nl_exits_init(nl_exits *e, const nl_vit *m, nl_error *err);
void nl_exits_free(nl_exits *e);
/* Atomic write; the reader checks names, shapes and the metadata. */
int nl_exits_save(const nl_exits *e, const char *path, nl_error *err);
int nl_exits_load(nl_exits *e, const char *path, nl_error *err);
/* Do e's heads belong to m? Depth, width, classes, tokens, pooling and the
 * final norm's kind must agree (NL_EINPUT naming both), and, unless
 * any_weights, the model's hash (NL_EINPUT: "fitted on another model"). */
int nl_exits_check(const nl_exits *e, const nl_vit *m, const char *exits_path, int any_weights,
                   nl_error *err);

/* Exit head k on pooled features feat [n, D]: logits [n, C]. scratch holds
 * n * D floats. Runs on the calling thread's scope (base/threads.h). */
void nl_exits_head(const nl_exits *e, int k, const float *feat, int n, float *logits,
                   float *scratch);

/* The pooled output of every block for every image of d: *feat [d->n,
 * depth, D] (caller frees), batch images per pass, on `threads` workers. */
int nl_exits_features(const nl_vit *m, const nl_dataset *d, int batch, int threads, float **feat,
                      nl_error *err);

typedef struct nl_exits_fit_opts {
  int epochs;          /* passes over the features (10) */
  int batch;           /* features per step (128) */
  float lr;            /* AdamW (2e-3), constant */
  float weight_decay;  /* of the head weights (1e-4) */
  uint64_t seed;       /* the order of the features: one stream per exit */
  int threads;         /* 0: nl_threads_default() */
  nl_progress_fn progress; /* after every exit (task "exits fit", done/total exits,
                              key "loss": its mean loss over the last epoch); may be NULL */
  void *progress_user;
} nl_exits_fit_opts;

void nl_exits_fit_opts_default(nl_exits_fit_opts *o);
/* Train exits 0..depth-2 on features [n, depth, D] (nl_exits_features) and
 * labels [n]; each exit alone, the order of its minibatches drawn from its
 * own stream of o->seed: the same result for any thread count. loss[k]
 * (may be NULL; depth entries) gets exit k's mean cross-entropy on the
 * features after training (exit depth-1: the model's own). */
int nl_exits_fit(nl_exits *e, const float *feat, const int32_t *labels, int n,
                 const nl_exits_fit_opts *o, double *loss, nl_error *err);

/* ---- the packed early-exit pass ---- */
typedef struct nl_exits_ws {
  nl_vit_acts acts;
  float *x, *x2, *pooled, *scratch, *logits;
  unsigned char *mask;  /* [batch, depth]: the policy's blocks */
  int *idx;
  int *start;           /* [batch]: the predictor's first block to check */
  float *prob;          /* [batch, depth]: the predictor's probabilities */
} nl_exits_ws;

int nl_exits_ws_init(nl_exits_ws *w, const nl_vit *m, int batch, int threads, nl_error *err);
void nl_exits_ws_free(nl_exits_ws *w);
/* Forward n normalised images [n, C, H, W] block by block; after block k <
 * depth-1 the heads of the images still running are evaluated, those whose
 * top softmax probability exceeds tau leave (their logits written), and the
 * others are packed to the front of the batch and go on as a smaller
 * batch. logits [n, C] and blocks [n] (blocks run, 1..depth) are per image
 * in input order. tau >= 1: no intermediate head is evaluated. */
int nl_exits_forward(const nl_vit *m, const nl_exits *e, nl_exits_ws *w, const float *images,
                     int n, double tau, float *logits, int *blocks, nl_error *err);

/* ---- the block policy ---- */
typedef struct nl_exits_policy_opts {
  int epochs, batch;   /* passes over the images (5), images per step (64) */
  float lr;            /* AdamW (0.01) */
  float init_bias;     /* starting logit of every block (2: run with p 0.88) */
  uint64_t seed;       /* the draws and the order */
  int threads;
  int exit_head;       /* predict from the exit head of the last block run (0) */
  double penalty;      /* the reward of a wrong prediction is -penalty (BlockDrop's
                          gamma; 1, as 0 does) */
  int greedy_baseline; /* the baseline: 0 the moving average, 1 the reward of the
                          policy's own greedy decisions on the same image
                          (self-critical, Rennie et al. 2017) */
  const float *init_feat; /* NULL, or features [d->n, depth, D] of d's images
                             (nl_exits_features): start from the threshold rule */
  double init_tau;     /* the rule's threshold for the start (0.9) */
  int init_epochs;     /* passes of the start's logistic regression (5) */
  nl_progress_fn progress; /* after every epoch (task "exits policy", keys "reward",
                              "blocks", "top1": means of the epoch's draws); may be NULL */
  void *progress_user;
} nl_exits_policy_opts;

void nl_exits_policy_opts_default(nl_exits_policy_opts *o);
/* Train e's block policy on the images of d (allocated if e has none).
 * epochs may be 0 when init_feat is given: the start alone. */
int nl_exits_policy_fit(const nl_vit *m, nl_exits *e, const nl_dataset *d,
                        const nl_exits_policy_opts *o, nl_error *err);
/* The packed pass under the policy: block 0 on all n images, then block k
 * on the images whose policy runs it, gathered into a contiguous batch (all
 * of them: in place); logits [n, C] and blocks [n] (blocks run) per image. */
int nl_exits_policy_forward(const nl_vit *m, const nl_exits *e, nl_exits_ws *w,
                            const float *images, int n, float *logits, int *blocks,
                            nl_error *err);
/* The policy's own FLOPs per image (its linear layer). */
double nl_exits_policy_flops(const nl_exits *e);

/* ---- every exit's decision on every image, and the rules on it ---- */
typedef struct nl_exits_table {
  int n, depth;
  int *pred;           /* [n, depth]: argmax of exit k on image i (first of ties) */
  float *pmax;         /* [n, depth]: its top softmax probability */
  int *label;          /* [n] */
  float *pprob;        /* [n, depth] or NULL: the predictor's probabilities */
  int pred_block;
} nl_exits_table;

/* Run the backbone over d (full depth, batch images per pass) and every
 * exit head after every block. */
int nl_exits_table_make(const nl_vit *m, const nl_exits *e, const nl_dataset *d, int batch,
                        int threads, nl_exits_table *t, nl_error *err);
void nl_exits_table_free(nl_exits_table *t);

typedef struct nl_exits_stats {
  long images, top1;
  double mean_blocks;  /* blocks run per image */
  double mean_heads;   /* exit heads evaluated per image (the last one included) */
} nl_exits_stats;

/* The threshold rule at tau, as nl_exits_forward decides (blocks[i] may
 * be NULL). */
void nl_exits_rule(const nl_exits_table *t, double tau, nl_exits_stats *s, int *blocks);
/* Full depth: the model's own prediction (the last exit). */
void nl_exits_full(const nl_exits_table *t, nl_exits_stats *s);
/* The oracle: per image the first block whose exit already gives the
 * full-depth prediction (so its top-1 is full depth's); one head per image
 * (it knows where to stop). blocks may be NULL. */
void nl_exits_oracle(const nl_exits_table *t, nl_exits_stats *s, int *blocks);
/* The thresholds tried by nl_exits_pick_tau (and plot exits): 0.1 ..
 * 0.99 in steps of 0.01, then 1 - 10^-(2 + j/8) down to 1 - 1e-7, then 1;
 * ascending. Returns the count; tau (may be NULL) gets them. */
int nl_exits_tau_grid(double *tau, int cap);
/* The most aggressive threshold of the grid (fewest mean blocks; the
 * larger tau of equals) whose top-1 on t is at most max_drop points
 * (percent) below full depth; tau = 1 always qualifies. s gets its
 * figures. */
double nl_exits_pick_tau(const nl_exits_table *t, double max_drop, nl_exits_stats *s);

/* FLOPs per image (model/vit.h's nl_vit_flops_per_image counting: matrix
 * products, multiply-add = 2) with `blocks` blocks run and `heads` heads
 * evaluated: embedding + blocks * block + heads * head; blocks = depth,
 * heads = 1 is nl_vit_flops_per_image. Fractional means allowed. */
double nl_exits_flops(const nl_vit_config *c, double blocks, double heads);

/* ---- the complexity predictor ---- */
/* The oracle's block (0-based) of each of n images from their features
 * [n, depth, D]: the first exit whose argmax is the last exit's. */
void nl_exits_oracle_targets(const nl_exits *e, const float *feat, int n, int32_t *target);

typedef struct nl_exits_pred_opts {
  int block;           /* F: the block whose pooled output it reads (0) */
  int epochs, batch;   /* (20), (128) */
  float lr;            /* AdamW (2e-3) */
  float weight_decay;  /* (1e-4) */
  uint64_t seed;       /* the order */
  int threads;
} nl_exits_pred_opts;

void nl_exits_pred_opts_default(nl_exits_pred_opts *o);
/* Train e's predictor (allocated, replacing any) on features [n, depth, D]
 * and target blocks [n] (0..depth-1); epoch_loss (may be NULL; o->epochs
 * entries) gets each epoch's mean cross-entropy over its minibatches (the
 * loss before each step). */
int nl_exits_pred_fit(nl_exits *e, const float *feat, const int32_t *target, int n,
                      const nl_exits_pred_opts *o, double *epoch_loss, nl_error *err);
/* Probabilities prob [n, depth] of pooled block-F outputs f [n, D];
 * scratch holds n * D floats. */
void nl_exits_pred_probs(const nl_exits *e, const float *f, int n, float *prob, float *scratch);
/* The first block to check for an image with probabilities prob [depth]. */
int nl_exits_pred_start(const nl_exits *e, const float *prob, double q);
/* The predictor's own FLOPs per image (its linear layer). */
double nl_exits_pred_flops(const nl_exits *e);
/* The packed pass with the predictor: as nl_exits_forward, but an image's
 * exit is checked only from its start (q) on; heads [n] (may be NULL) gets
 * the heads evaluated per image. */
int nl_exits_pred_forward(const nl_vit *m, const nl_exits *e, nl_exits_ws *w, const float *images,
                          int n, double q, double tau, float *logits, int *blocks, int *heads,
                          nl_error *err);
/* The predictor's rule at (q, tau) on t (which needs pprob), as
 * nl_exits_pred_forward decides; mean_heads counts the heads evaluated. */
void nl_exits_pred_rule(const nl_exits_table *t, double q, double tau, nl_exits_stats *s,
                        int *blocks);
/* The quantiles tried: 0, 0.01, 0.02, 0.05, 0.1 .. 0.9 in steps of 0.05,
 * 0.95, 0.98, 0.99, 0.995, 0.999, 1; ascending. */
int nl_exits_q_grid(double *q, int cap);
/* The (q, tau) of q grid x ({0} and the tau grid) with the fewest mean
 * blocks (then fewest heads) whose top-1 on t is at most max_drop points
 * below full depth. */
void nl_exits_pick_pred(const nl_exits_table *t, double max_drop, double *q, double *tau,
                        nl_exits_stats *s);
/* The max-drop budgets (points) at which exits eval --oracle and plot exits
 * report the held-out picks: 0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2,
 * 3, 5, 10, 20, 50. */
int nl_exits_drop_grid(double *d, int cap);

#endif
