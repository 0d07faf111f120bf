/* Measured cost of the norm slots (`normlab bench norm`, `cost --measure`):
 * the machine's caches and streaming bandwidth, and the time of one norm
 * slot's forward (nl_norm_forward, exactly what the forward pass runs) on
 * arrays of a chosen size. */
#ifndef NL_APP_BENCH_NORM_H
#define NL_APP_BENCH_NORM_H

#include <stddef.h>

#include "model/vit.h"

/* Cache sizes in bytes from /sys/devices/system/cpu/cpu0/cache (data or
 * unified caches; 0 where not found). */
typedef struct nl_cache_sizes {
  long l1d, l2, llc; /* llc: the highest level found (L3, else L2) */
  int llc_level;
} nl_cache_sizes;
void nl_cache_sizes_read(nl_cache_sizes *c);

/* Memory bandwidth of a streaming copy (memcpy of `bytes` bytes in chunks
 * over `threads` workers), GB/s counting each byte read once and written
 * once (2 x bytes per copy, as STREAM counts it); best of the copies made
 * in about `seconds`. */
double nl_copy_bandwidth(size_t bytes, int threads, double seconds);

/* Bytes moved per token by a norm slot's forward, by the formula: the
 * activations read and written at FP32 (LayerNorm 2 reads + 1 write =
 * 12d: the reduction pass, then the normalising pass; DyT and an
 * expression 1 read + 1 write = 8d). The affine's w and b (8d per call,
 * not per token) are not counted. */
double nl_norm_bytes_per_token(nl_norm_kind kind, int d);

/* A norm slot of kind `kind` over width d for measuring: affine w = 1 +
 * small ramp, b = small ramp (owned), DyT alpha 0.5, prog (kind EXPR)
 * borrowed. */
typedef struct nl_norm_probe {
  nl_norm norm;
  float *w, *b, alpha;
} nl_norm_probe;
void nl_norm_probe_init(nl_norm_probe *p, nl_norm_kind kind, const struct nl_prog *prog, int d);
void nl_norm_probe_free(nl_norm_probe *p);

/* The best (least disturbed) seconds of one nl_norm_forward of each of the
 * k slots over x [N, d] into out, the slots measured in interleaved rounds
 * for about `seconds` (at least 3 rounds; each sample repeats the call
 * enough times to last about 0.2 ms). best[k] receives seconds per call.
 * Runs on `threads` workers (a scope of its own, as the forward pass). */
void nl_norm_time(nl_norm *const *slots, int k, const float *x, float *out, int N, int d,
                  double eps, double seconds, int threads, double *best);

#endif
