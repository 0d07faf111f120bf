#define _POSIX_C_SOURCE 200809L
#include "data/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/fileio.h"
#include "base/mem.h"
#include "base/text.h"
#include "data/folder.h"

/* Read a whole (possibly gzip-compressed) file. */
static unsigned char *read_gz(const char *path, size_t *len, nl_error *err) {
  gzFile g = gzopen(path, "rb");
  if (!g) {
    nl_fail(err, nl_errno_code(errno), "%s: cannot open: %s", path,
            errno ? strerror(errno) : "zlib error");
    return NULL;
  }
  size_t cap = 1 << 20, n = 0;
  unsigned char *buf = nl_xmalloc(cap);
  for (;;) {
    if (n == cap) {
      cap *= 2;
      buf = nl_xrealloc(buf, cap);
    }
    int r = gzread(g, buf + n, (unsigned)(cap - n > (1u << 30) ? (1u << 30) : cap - n));
    if (r < 0) {
      int e;
      const char *msg = gzerror(g, &e);
      nl_fail(err, NL_EINPUT, "%s: corrupt compressed data: %s", path, msg);
      gzclose(g);
      free(buf);
      return NULL;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  gzclose(g);
  *len = n;
  return buf;
}

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int nl_idx_load(nl_dataset *d, const char *ip, const char *lp, nl_error *err) {
  memset(d, 0, sizeof *d);
  size_t il, ll;
  unsigned char *ib = read_gz(ip, &il, err);
  if (!ib) return -1;
  unsigned char *lb = read_gz(lp, &ll, err);
  if (!lb) {
    free(ib);
    return -1;
  }
  int rc = 0;
  if (il < 16 || be32(ib) != 0x00000803u)
    rc = nl_fail(err, NL_EINPUT, "%s: not an idx3 image file (magic 0x%08x, want 0x00000803)", ip,
                 il >= 4 ? be32(ib) : 0);
  else if (ll < 8 || be32(lb) != 0x00000801u)
    rc = nl_fail(err, NL_EINPUT, "%s: not an idx1 label file (magic 0x%08x, want 0x00000801)", lp,
                 ll >= 4 ? be32(lb) : 0);
  if (rc) goto out;
  uint32_t n = be32(ib + 4), r = be32(ib + 8), c = be32(ib + 12), nlab = be32(lb + 4);
  if (r == 0 || c == 0 || r > 4096 || c > 4096 || n > 100000000u) {
    rc = nl_fail(err, NL_EINPUT, "%s: implausible header: %u images of %ux%u", ip, n, r, c);
    goto out;
  }
  if (il != 16 + (size_t)n * r * c) {
    rc = nl_fail(err, NL_EINPUT, "%s: %zu bytes, but the header announces %u images of %ux%u (%zu bytes)",
                 ip, il, n, r, c, 16 + (size_t)n * r * c);
    goto out;
  }
  if (ll != 8 + (size_t)nlab) {
    rc = nl_fail(err, NL_EINPUT, "%s: %zu bytes, but the header announces %u labels", lp, ll, nlab);
    goto out;
  }
  if (nlab != n) {
    rc = nl_fail(err, NL_EINPUT, "%s has %u images but %s has %u labels", ip, n, lp, nlab);
    goto out;
  }
  d->n = (int)n;
  d->rows = (int)r;
  d->cols = (int)c;
  d->classes = 0;
  d->images = nl_xmalloc((size_t)n * r * c + 1);
  memcpy(d->images, ib + 16, (size_t)n * r * c);
  d->labels = nl_xmalloc(sizeof(int32_t) * ((size_t)n + 1));
  for (uint32_t i = 0; i < n; i++) d->labels[i] = lb[8 + i];
  d->channels = 1;
  for (uint32_t i = 0; i < n; i++)
    if (d->labels[i] + 1 > d->classes) d->classes = d->labels[i] + 1;
out:
  free(ib);
  free(lb);
  return rc;
}

int nl_dataset_load(nl_dataset *d, const char *spec, long offset, long limit, nl_error *err) {
  return nl_dataset_load_opts(d, spec, offset, limit, NULL, err);
}

void nl_data_opts_default(nl_data_opts *o, int size, int channels) {
  memset(o, 0, sizeof *o);
  o->size = size;
  o->channels = channels;
  o->crop_pct = 1.0;
  o->interp = 1; /* NL_INTERP_BICUBIC */
}

int nl_dataset_load_opts(nl_dataset *d, const char *spec, long offset, long limit,
                         const nl_data_opts *o, nl_error *err) {
  memset(d, 0, sizeof *d);
  if (strncmp(spec, "imagefolder:", 12) == 0 || strncmp(spec, "cifar10:", 8) == 0) {
    if (!o)
      return nl_fail(err, NL_EINPUT, "%s: image folders and CIFAR-10 need a model's input size",
                     spec);
    return nl_folder_load(d, spec, offset, limit, o, err);
  }
  const char *split;
  if (strcmp(spec, "fmnist:test") == 0) split = "t10k";
  else if (strcmp(spec, "fmnist:train") == 0) split = "train";
  else
    return nl_fail(err, NL_EINPUT,
                   "unknown data spec '%s' (known: fmnist:test, fmnist:train, imagefolder:DIR, "
                   "cifar10:DIR[:train|:test])",
                   spec);
  const char *dir = nl_getenv("NORMLAB_FMNIST_DIR", "NL_FMNIST_DIR");
  if (!dir || !*dir) dir = NL_FMNIST_DIR_DEFAULT;
  char ip[4096], lp[4096];
  snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, split);
  snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, split);
  if (!nl_file_exists(ip) || !nl_file_exists(lp))
    return nl_fail(err, NL_EINPUT,
                   "%s: Fashion-MNIST not found (%s missing); install it with: apt-get install "
                   "dataset-fashion-mnist, or set NORMLAB_FMNIST_DIR to its directory",
                   spec, !nl_file_exists(ip) ? ip : lp);
  if (nl_idx_load(d, ip, lp, err)) return -1;
  snprintf(d->name, sizeof d->name, "%s", spec);
  if (offset < 0 || offset > d->n) {
    int n = d->n;
    nl_dataset_free(d);
    return nl_fail(err, NL_EINPUT, "%s: offset %ld outside [0, %d]", spec, offset, n);
  }
  long keep = d->n - offset;
  if (limit > 0 && limit < keep) keep = limit;
  size_t px = (size_t)d->rows * d->cols;
  if (offset > 0) {
    memmove(d->images, d->images + (size_t)offset * px, (size_t)keep * px);
    memmove(d->labels, d->labels + offset, (size_t)keep * sizeof(int32_t));
  }
  d->n = (int)keep;
  return 0;
}

void nl_dataset_free(nl_dataset *d) {
  if (!d) return;
  free(d->images);
  free(d->labels);
  memset(d, 0, sizeof *d);
}

void nl_dataset_normalize(const nl_dataset *d, int first, int n, int channels, int nmean,
                          const float *mean, const float *std, float *out) {
  size_t px = (size_t)d->rows * d->cols;
  int dc = d->channels > 0 ? d->channels : 1;
  for (int i = 0; i < n; i++) {
    const uint8_t *img = d->images + (size_t)(first + i) * px * dc;
    for (int c = 0; c < channels; c++) {
      const uint8_t *src = img + (dc == 1 ? 0 : (size_t)(c < dc ? c : dc - 1) * px);
      float m = mean[nmean > 1 ? c : 0], s = std[nmean > 1 ? c : 0];
      float *o = out + ((size_t)i * channels + c) * px;
      for (size_t k = 0; k < px; k++) o[k] = ((float)src[k] / 255.0f - m) / s;
    }
  }
}
