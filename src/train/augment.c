/* Random crop from a padded image and horizontal flip. */
#include "train/augment.h"

#include <stddef.h>

float nl_tr_pad_value(float mean, float std) { return -mean / std; }

void nl_tr_augment_draw(nl_tr_aug *a, int B, int pad, float flip_p, nl_rng *rng) {
  for (int b = 0; b < B; b++) {
    a[b].dy = pad > 0 ? (int)nl_rng_below(rng, (uint64_t)(2 * pad + 1)) : 0;
    a[b].dx = pad > 0 ? (int)nl_rng_below(rng, (uint64_t)(2 * pad + 1)) : 0;
    a[b].flip = nl_rng_uniform(rng) < flip_p;
  }
}

void nl_tr_augment_apply(float *out, const float *in, const nl_tr_aug *a, int B, int CH, int H,
                         int W, int pad, float pad_value) {
  for (int b = 0; b < B; b++) {
    const int sy0 = a[b].dy - pad, sx0 = a[b].dx - pad, flip = a[b].flip;
    for (int c = 0; c < CH; c++) {
      const float *src = in + ((size_t)b * CH + c) * H * W;
      float *dst = out + ((size_t)b * CH + c) * H * W;
      for (int y = 0; y < H; y++) {
        const int sy = y + sy0;
        float *row = dst + (size_t)y * W;
        if (sy < 0 || sy >= H) {
          for (int x = 0; x < W; x++) row[x] = pad_value;
          continue;
        }
        const float *srow = src + (size_t)sy * W;
        for (int x = 0; x < W; x++) {
          const int sx = (flip ? W - 1 - x : x) + sx0;
          row[x] = (sx >= 0 && sx < W) ? srow[sx] : pad_value;
        }
      }
    }
  }
}
