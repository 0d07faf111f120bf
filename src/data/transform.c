#define _POSIX_C_SOURCE 200809L
#include "data/transform.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

#define PRECISION_BITS (32 - 8 - 2)

/* ---- PIL's filters (Resample.c) ---- */

static double box_filter(double x) { return x > -0.5 && x <= 0.5 ? 1.0 : 0.0; }

static double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

static double hamming_filter(double x) {
  if (x < 0.0) x = -x;
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x = x * M_PI;
  return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double bicubic_filter(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

static double sinc_filter(double x) {
  if (x == 0.0) return 1.0;
  x = x * M_PI;
  return sin(x) / x;
}

static double lanczos_filter(double x) {
  return -3.0 <= x && x < 3.0 ? sinc_filter(x) * sinc_filter(x / 3) : 0.0;
}

static const struct {
  const char *name;
  double (*fn)(double);
  double support;
} filters[] = {
    {"bilinear", bilinear_filter, 1.0}, {"bicubic", bicubic_filter, 2.0},
    {"box", box_filter, 0.5},           {"hamming", hamming_filter, 1.0},
    {"lanczos", lanczos_filter, 3.0},
};

int nl_interp_parse(const char *name) {
  for (int i = 0; i < (int)(sizeof filters / sizeof filters[0]); i++)
    if (strcmp(name, filters[i].name) == 0) return i;
  return -1;
}

const char *nl_interp_name(int interp) {
  return interp >= 0 && interp < (int)(sizeof filters / sizeof filters[0]) ? filters[interp].name
                                                                           : "?";
}

/* Per output pixel: the first input pixel, their count, and 22-bit
 * fixed-point weights (ksize per pixel): PIL's precompute_coeffs and
 * normalize_coeffs_8bpc. */
static int coeffs(int in_size, int out_size, int interp, int **bounds, int32_t **kk) {
  double scale = (double)in_size / out_size, fscale = scale < 1.0 ? 1.0 : scale;
  double support = filters[interp].support * fscale;
  int ksize = (int)ceil(support) * 2 + 1;
  *bounds = nl_xmalloc(sizeof(int) * 2 * (size_t)out_size);
  *kk = nl_xmalloc(sizeof(int32_t) * (size_t)ksize * out_size);
  double *k = nl_xmalloc(sizeof(double) * (size_t)ksize);
  for (int xx = 0; xx < out_size; xx++) {
    double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / fscale;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; x++) {
      double w = filters[interp].fn((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; x++)
      if (ww != 0.0) k[x] /= ww;
    int32_t *o = *kk + (size_t)xx * ksize;
    for (int x = 0; x < ksize; x++) {
      double v = x < xmax ? k[x] : 0.0;
      o[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                   : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
    }
    (*bounds)[2 * xx] = xmin;
    (*bounds)[2 * xx + 1] = xmax;
  }
  free(k);
  return ksize;
}

/* The vertical pass's inner loops, vectorised on purpose (the rest of
 * normlab builds at -O2, whose cost model leaves these scalar). */
__attribute__((optimize("O3"))) static void row_fma(int32_t *restrict acc,
                                                    const uint8_t *restrict r, int32_t w,
                                                    size_t n) {
  for (size_t q = 0; q < n; q++) acc[q] += r[q] * w;
}

__attribute__((optimize("O3"))) static void row_clip(uint8_t *restrict o,
                                                     const int32_t *restrict acc, size_t n) {
  for (size_t q = 0; q < n; q++) {
    int32_t v = acc[q] >> PRECISION_BITS;
    o[q] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
  }
}

static inline uint8_t clip8(int32_t v) {
  v >>= PRECISION_BITS;
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* PIL's resize of the box (x0, y0, bw, bh) of in to ow x oh, computing only
 * the output window (wx, wy, ww, wh) into out (ww * wh * c bytes,
 * interleaved): each output pixel depends on its own weights only, so the
 * window equals the same part of the whole resized image. */
static void resample_window(const nl_image *in, int x0, int y0, int bw, int bh, int ow, int oh,
                            int interp, int wx, int wy, int ww, int wh, uint8_t *out) {
  const int C = in->c;
  const size_t istride = (size_t)in->w * C, ostride = (size_t)ww * C;
  const uint8_t *src = in->px + (size_t)y0 * istride + (size_t)x0 * C;
  const int need_h = ow != bw, need_v = oh != bh;
  if (!need_h && !need_v) { /* PIL returns a copy */
    for (int y = 0; y < wh; y++)
      memcpy(out + y * ostride, src + (size_t)(y + wy) * istride + (size_t)wx * C, ostride);
    return;
  }
  int *bh_ = NULL, *bv = NULL;
  int32_t *kh = NULL, *kv = NULL;
  int ksh = need_h ? coeffs(bw, ow, interp, &bh_, &kh) : 0;
  int ksv = need_v ? coeffs(bh, oh, interp, &bv, &kv) : 0;
  /* rows of the box the vertical pass reads for the window's rows */
  int yfirst = need_v ? bv[2 * wy] : wy;
  int ylast = need_v ? bv[2 * (wy + wh - 1)] + bv[2 * (wy + wh - 1) + 1] : wy + wh;
  const uint8_t *mid;
  size_t mstride;
  uint8_t *tmp = NULL;
  if (need_h) {
    int rows = ylast - yfirst;
    tmp = nl_xmalloc(ostride * (size_t)(rows > 0 ? rows : 1));
    for (int y = 0; y < rows; y++) {
      const uint8_t *r = src + (size_t)(y + yfirst) * istride;
      uint8_t *o = tmp + (size_t)y * ostride;
      for (int xx = 0; xx < ww; xx++) {
        const int xmin = bh_[2 * (wx + xx)], xn = bh_[2 * (wx + xx) + 1];
        const int32_t *k = kh + (size_t)(wx + xx) * ksh;
        if (C == 3) {
          int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
          const uint8_t *p = r + (size_t)xmin * 3;
          for (int x = 0; x < xn; x++) {
            s0 += p[3 * x] * k[x];
            s1 += p[3 * x + 1] * k[x];
            s2 += p[3 * x + 2] * k[x];
          }
          o[3 * xx] = clip8(s0), o[3 * xx + 1] = clip8(s1), o[3 * xx + 2] = clip8(s2);
        } else {
          int32_t s0 = 1 << (PRECISION_BITS - 1);
          for (int x = 0; x < xn; x++) s0 += r[xmin + x] * k[x];
          o[xx] = clip8(s0);
        }
      }
    }
    mid = tmp;
    mstride = ostride;
  } else {
    mid = src + (size_t)yfirst * istride + (size_t)wx * C;
    mstride = istride;
  }
  if (need_v) {
    int32_t *acc = nl_xmalloc(sizeof(int32_t) * ostride);
    for (int yy = 0; yy < wh; yy++) {
      const int ymin = bv[2 * (wy + yy)] - yfirst, yn = bv[2 * (wy + yy) + 1];
      const int32_t *k = kv + (size_t)(wy + yy) * ksv;
      for (size_t q = 0; q < ostride; q++) acc[q] = 1 << (PRECISION_BITS - 1);
      for (int y = 0; y < yn; y++) row_fma(acc, mid + (size_t)(ymin + y) * mstride, k[y], ostride);
      row_clip(out + (size_t)yy * ostride, acc, ostride);
    }
    free(acc);
  } else {
    for (int y = 0; y < wh; y++) memcpy(out + y * ostride, mid + (size_t)y * mstride, ostride);
  }
  free(tmp);
  free(bh_), free(kh), free(bv), free(kv);
}

void nl_resample(const nl_image *in, int x0, int y0, int bw, int bh, int ow, int oh, int interp,
                 nl_image *out) {
  out->w = ow, out->h = oh, out->c = in->c;
  out->px = nl_xmalloc((size_t)ow * oh * in->c + 1);
  resample_window(in, x0, y0, bw, bh, ow, oh, interp, 0, 0, ow, oh, out->px);
}

/* Python's round() of a double: half to even. */
static int pyround(double v) { return (int)nearbyint(v); }

void nl_rrc_params(int width, int height, double smin, double smax, double rmin, double rmax,
                   nl_rng *rng, nl_crop *box) {
  double area = (double)height * width, lr0 = log(rmin), lr1 = log(rmax);
  box->flip = 0;
  for (int t = 0; t < 10; t++) {
    double target = area * (smin + (smax - smin) * nl_rng_uniform(rng));
    double ar = exp(lr0 + (lr1 - lr0) * nl_rng_uniform(rng));
    int w = pyround(sqrt(target * ar)), h = pyround(sqrt(target / ar));
    if (0 < w && w <= width && 0 < h && h <= height) {
      box->i = (int)nl_rng_below(rng, (uint64_t)(height - h + 1));
      box->j = (int)nl_rng_below(rng, (uint64_t)(width - w + 1));
      box->h = h, box->w = w;
      return;
    }
  }
  double in_ratio = (double)width / height;
  int w, h;
  if (in_ratio < rmin) {
    w = width;
    h = pyround(w / rmin);
  } else if (in_ratio > rmax) {
    h = height;
    w = pyround(h * rmax);
  } else {
    w = width;
    h = height;
  }
  box->i = (height - h) / 2;
  box->j = (width - w) / 2;
  box->h = h, box->w = w;
}

void nl_eval_geometry(int width, int height, int size, double crop_pct, int *rw, int *rh,
                      nl_crop *box) {
  int scale = (int)floor(size / crop_pct);
  /* torchvision's Resize(int): the shorter side to `scale` */
  if (width <= height) {
    *rw = scale;
    *rh = (int)((double)scale * height / width);
  } else {
    *rh = scale;
    *rw = (int)((double)scale * width / height);
  }
  /* CenterCrop (a crop larger than the image is padded with zeros) */
  box->i = pyround((*rh - size) / 2.0);
  box->j = pyround((*rw - size) / 2.0);
  box->h = box->w = size;
  box->flip = 0;
}

/* Write the box of im (rows i.., columns j..; outside the image zero, as
 * torchvision's padding CenterCrop) planar into out [c, size, size]. */
static void crop_planar(const nl_image *im, const nl_crop *b, int size, uint8_t *out) {
  const int C = im->c;
  if (b->i >= 0 && b->j >= 0 && b->i + size <= im->h && b->j + size <= im->w) {
    for (int y = 0; y < size; y++) {
      const uint8_t *r = im->px + ((size_t)(b->i + y) * im->w + b->j) * C;
      for (int c = 0; c < C; c++) {
        uint8_t *o = out + ((size_t)c * size + y) * size;
        if (b->flip)
          for (int x = 0; x < size; x++) o[x] = r[(size_t)(size - 1 - x) * C + c];
        else
          for (int x = 0; x < size; x++) o[x] = r[(size_t)x * C + c];
      }
    }
    return;
  }
  for (int c = 0; c < C; c++)
    for (int y = 0; y < size; y++) {
      uint8_t *o = out + ((size_t)c * size + y) * size;
      int sy = b->i + y;
      for (int x = 0; x < size; x++) {
        int sx = b->j + (b->flip ? size - 1 - x : x);
        o[x] = sy >= 0 && sy < im->h && sx >= 0 && sx < im->w
                   ? im->px[((size_t)sy * im->w + sx) * C + c]
                   : 0;
      }
    }
}

void nl_tf_eval(const nl_image *im, int size, double crop_pct, int interp, uint8_t *out) {
  int rw, rh;
  nl_crop b;
  nl_eval_geometry(im->w, im->h, size, crop_pct, &rw, &rh, &b);
  /* only the part of the resized image the crop keeps (zeros outside it) */
  int x0 = b.j < 0 ? 0 : b.j, y0 = b.i < 0 ? 0 : b.i;
  int x1 = b.j + size > rw ? rw : b.j + size, y1 = b.i + size > rh ? rh : b.i + size;
  nl_image r = {x1 - x0, y1 - y0, im->c, NULL};
  r.px = nl_xmalloc((size_t)r.w * r.h * r.c + 1);
  resample_window(im, 0, 0, im->w, im->h, rw, rh, interp, x0, y0, r.w, r.h, r.px);
  nl_crop in_r = {b.i - y0, b.j - x0, size, size, 0};
  crop_planar(&r, &in_r, size, out);
  nl_image_free(&r);
}

void nl_tf_train(const nl_image *im, const nl_crop *box, int size, int interp, uint8_t *out) {
  nl_image r;
  nl_resample(im, box->j, box->i, box->w, box->h, size, size, interp, &r);
  nl_crop all = {0, 0, size, size, box->flip};
  crop_planar(&r, &all, size, out);
  nl_image_free(&r);
}
