/* Seeded random streams: xoshiro256** seeded through splitmix64.
 * One stream per task: nl_rng_stream(seed, k) gives independent streams
 * for task k, so results do not depend on scheduling or thread count. */
#ifndef NL_BASE_RNG_H
#define NL_BASE_RNG_H

#include <stdint.h>

typedef struct nl_rng {
  uint64_t s[4];
} nl_rng;

void nl_rng_seed(nl_rng *r, uint64_t seed);
/* Stream `stream` derived from `seed` (hashing both). */
void nl_rng_stream(nl_rng *r, uint64_t seed, uint64_t stream);
uint64_t nl_rng_u64(nl_rng *r);
/* Uniform in [0, 1). */
double nl_rng_uniform(nl_rng *r);
/* Uniform integer in [0, n), unbiased; n > 0. */
uint64_t nl_rng_below(nl_rng *r, uint64_t n);
/* Shuffle a[0 .. n) in place (Fisher-Yates: for i = n-1 down to 1, swap
 * a[i] with a[nl_rng_below(r, i + 1)]). */
void nl_rng_shuffle(nl_rng *r, int *a, int n);
/* Standard normal (Box-Muller, no cached second value: stateless beyond s). */
double nl_rng_normal(nl_rng *r);

#endif
