#include "base/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void nl_rng_seed(nl_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

void nl_rng_stream(nl_rng *r, uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ 0x6a09e667f3bcc909ULL;
  uint64_t a = splitmix64(&x);
  x = a ^ (stream * 0xd1342543de82ef95ULL + 0x2545f4914f6cdd1dULL);
  nl_rng_seed(r, splitmix64(&x));
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t nl_rng_u64(nl_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double nl_rng_uniform(nl_rng *r) { return (double)(nl_rng_u64(r) >> 11) * 0x1.0p-53; }

uint64_t nl_rng_below(nl_rng *r, uint64_t n) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do v = nl_rng_u64(r);
  while (v >= limit);
  return v % n;
}

void nl_rng_shuffle(nl_rng *r, int *a, int n) {
  for (int i = n - 1; i > 0; i--) {
    const int j = (int)nl_rng_below(r, (uint64_t)i + 1), t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

double nl_rng_normal(nl_rng *r) {
  double u1;
  do u1 = nl_rng_uniform(r);
  while (u1 <= 0.0);
  double u2 = nl_rng_uniform(r);
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
