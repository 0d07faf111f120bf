/* Cross entropy and logit distillation. */
#include "train/loss.h"

#include <math.h>
#include <stddef.h>

/* log-sum-exp of row[i]*inv_tau, and the max used */
static double row_lse(const float *row, int K, double inv_tau, double *mx) {
  double m = row[0] * inv_tau;
  for (int k = 1; k < K; k++) m = row[k] * inv_tau > m ? row[k] * inv_tau : m;
  double s = 0.0;
  for (int k = 0; k < K; k++) s += exp(row[k] * inv_tau - m);
  *mx = m;
  return m + log(s);
}

double nl_tr_ce_loss(float *dlogits, const float *logits, const int32_t *labels, int B, int K) {
  double loss = 0.0;
  for (int b = 0; b < B; b++) {
    const float *s = logits + (size_t)b * K;
    double m;
    double lse = row_lse(s, K, 1.0, &m);
    loss += lse - s[labels[b]];
    if (dlogits) {
      float *d = dlogits + (size_t)b * K;
      for (int k = 0; k < K; k++) {
        double p = exp(s[k] - lse);
        d[k] += (float)((p - (k == labels[b] ? 1.0 : 0.0)) / B);
      }
    }
  }
  return loss / B;
}

double nl_tr_ce_smooth_loss(float *dlogits, const float *logits, const int32_t *labels, int B,
                            int K, float eps) {
  double loss = 0.0;
  for (int b = 0; b < B; b++) {
    const float *s = logits + (size_t)b * K;
    double m;
    double lse = row_lse(s, K, 1.0, &m);
    double mean_nll = 0.0;
    for (int k = 0; k < K; k++) mean_nll += lse - s[k];
    mean_nll /= K;
    loss += (1.0 - eps) * (lse - s[labels[b]]) + eps * mean_nll;
    if (dlogits) {
      float *d = dlogits + (size_t)b * K;
      for (int k = 0; k < K; k++) {
        double p = exp(s[k] - lse);
        double target = (k == labels[b] ? 1.0 - eps : 0.0) + (double)eps / K;
        d[k] += (float)((p - target) / B);
      }
    }
  }
  return loss / B;
}

double nl_tr_kd_loss(float *dlogits, const float *logits, const float *teacher,
                     const int32_t *labels, int B, int K, float tau, float lambda,
                     double *ce_out, double *kl_out) {
  double ce = nl_tr_ce_loss(NULL, logits, labels, B, K);
  if (dlogits && lambda != 1.0f) {
    /* (1 - lambda) * d CE, added row by row */
    for (int b = 0; b < B; b++) {
      const float *s = logits + (size_t)b * K;
      double m;
      double lse = row_lse(s, K, 1.0, &m);
      float *d = dlogits + (size_t)b * K;
      for (int k = 0; k < K; k++) {
        double p = exp(s[k] - lse);
        d[k] += (float)((1.0 - lambda) * (p - (k == labels[b] ? 1.0 : 0.0)) / B);
      }
    }
  }
  const double it = 1.0 / tau;
  double kl = 0.0;
  for (int b = 0; b < B; b++) {
    const float *s = logits + (size_t)b * K, *t = teacher + (size_t)b * K;
    double ms, mt;
    double ls = row_lse(s, K, it, &ms), lt = row_lse(t, K, it, &mt);
    float *d = dlogits ? dlogits + (size_t)b * K : (float *)0;
    for (int k = 0; k < K; k++) {
      double lpt = t[k] * it - lt, lps = s[k] * it - ls;
      double pt = exp(lpt);
      kl += pt * (lpt - lps);
      if (d) d[k] += (float)(lambda * tau * (exp(lps) - pt) / B);
    }
  }
  kl /= B;
  if (ce_out) *ce_out = ce;
  if (kl_out) *kl_out = kl;
  return (1.0 - lambda) * ce + (double)lambda * tau * tau * kl;
}

int nl_tr_topk_correct(const float *logits, const int32_t *labels, int B, int K, int k) {
  int correct = 0;
  for (int b = 0; b < B; b++) {
    const float *s = logits + (size_t)b * K;
    const int y = labels[b];
    int above = 0;
    for (int j = 0; j < K; j++)
      if (s[j] > s[y] || (s[j] == s[y] && j < y)) above++;
    if (above < k) correct++;
  }
  return correct;
}
