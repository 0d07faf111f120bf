/* Classification losses on logits [B, K] (row-major), mean over the batch.
 * Each returns the loss and, when dlogits is not NULL, ADDS the gradient of
 * that loss with respect to the logits into dlogits [B, K]. Computed with
 * max-subtracted softmax in double accumulators. */
#ifndef NL_TRAIN_LOSS_H
#define NL_TRAIN_LOSS_H

#include <stdint.h>

/* Cross entropy: (1/B) sum_b -log softmax(s_b)[y_b].
 * Gradient: (softmax(s_b) - onehot(y_b)) / B. Labels must be in [0, K). */
double nl_tr_ce_loss(float *dlogits, const float *logits, const int32_t *labels, int B, int K);

/* Cross entropy with label smoothing eps (timm's LabelSmoothingCrossEntropy):
 * (1/B) sum_b [(1 - eps) * -log p_b[y_b] + eps * mean_k -log p_b[k]].
 * Gradient: (p_b - (1 - eps) onehot(y_b) - eps / K) / B. eps = 0 is
 * nl_tr_ce_loss. */
double nl_tr_ce_smooth_loss(float *dlogits, const float *logits, const int32_t *labels, int B,
                            int K, float eps);

/* Logit distillation (Hinton): with p_t = softmax(t/tau), p_s = softmax(s/tau),
 *   loss = (1 - lambda) * CE(s, y) + lambda * tau^2 * KL(p_t || p_s),
 * KL(p||q) = sum p (log p - log q), both terms averaged over the batch.
 * Gradient of the KL term: lambda * tau * (p_s - p_t) / B.
 * Defaults: NL_TR_KD_TAU, NL_TR_KD_LAMBDA. ce_out / kl_out (may be NULL)
 * receive the unweighted batch-mean CE and KL. */
#define NL_TR_KD_TAU 4.0f
#define NL_TR_KD_LAMBDA 0.5f
double nl_tr_kd_loss(float *dlogits, const float *logits, const float *teacher,
                     const int32_t *labels, int B, int K, float tau, float lambda,
                     double *ce_out, double *kl_out);

/* Number of rows whose label is among the top-k logits (ties count against:
 * a logit equal to the label's counts as above it only if it comes first). */
int nl_tr_topk_correct(const float *logits, const int32_t *labels, int B, int K, int k);

#endif
