/* Training augmentation for normalised images [B, CH, H, W]: random crop of
 * the original size from the image padded by `pad` pixels on every side
 * with a constant value, then horizontal flip with probability flip_p
 * (torchvision RandomCrop(H, padding=pad) then RandomHorizontalFlip).
 *
 * For normalised images the padding is the value a black pixel normalises
 * to, -mean/std (nl_tr_pad_value): -0.2860/0.3530 for Fashion-MNIST.
 *
 * Drawing and applying are separate so the draws can be checked and reused:
 * per image, two offsets in [0, 2*pad] and a flip bit, drawn from one rng in
 * image order (dy, dx, flip). With one stream per batch, e.g.
 * nl_rng_stream(&r, seed, epoch * batches_per_epoch + batch), the result is
 * the same for any thread count. */
#ifndef NL_TRAIN_AUGMENT_H
#define NL_TRAIN_AUGMENT_H

#include "base/rng.h"

typedef struct nl_tr_aug {
  int dy, dx;  /* crop offset in the padded image, each in [0, 2*pad] */
  int flip;    /* 1: mirror left-right after cropping */
} nl_tr_aug;

float nl_tr_pad_value(float mean, float std);
void nl_tr_augment_draw(nl_tr_aug *a, int B, int pad, float flip_p, nl_rng *rng);
/* out[b,c,y,x] = padded[b,c,y+dy,x'+dx] with x' = flip ? W-1-x : x, where
 * padded[.., Y, X] = in[.., Y-pad, X-pad] inside the image and pad_value
 * outside. out must not alias in. */
void nl_tr_augment_apply(float *out, const float *in, const nl_tr_aug *a, int B, int CH, int H,
                         int W, int pad, float pad_value);

#endif
