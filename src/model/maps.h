/* Mappings: per norm layer, the recorded points (x, y) of its element-wise
 * map, where x is the layer's input and y its pre-affine output
 * (y - b) / (w + 1e-12).
 *
 * File format: a safetensors file with two F32 1-D tensors per layer,
 * "<layer>.x" and "<layer>.y", of equal, non-zero length and finite values,
 * plus string metadata (model, data, offset, images, points, seed, ...).
 * Layer names may contain dots ("blocks.3.norm1"); the suffix after the
 * last dot tells x from y. Layers are kept in natural order (digit runs
 * compare as numbers: blocks.2 before blocks.10, then norm), which is the
 * forward order of timm ViTs. Any file of this layout is accepted;
 * nl_maps_import reads other layouts (prefix/suffix naming, any float
 * dtype, any shape). */
#ifndef NL_MODEL_MAPS_H
#define NL_MODEL_MAPS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct nl_maps_layer {
  char *name;
  float *x, *y;  /* n points each, owned */
  size_t n;
} nl_maps_layer;

typedef struct nl_maps_meta {
  char *key, *value;
} nl_maps_meta;

typedef struct nl_maps {
  char *path;            /* file it was loaded from (NULL when built) */
  nl_maps_layer *layers; /* natural order after load, insertion order when built */
  int nlayers;
  nl_maps_meta *meta;
  int nmeta;
} nl_maps;

/* An empty set (all fields zero); nl_maps_free releases everything. */
void nl_maps_init(nl_maps *m);
void nl_maps_free(nl_maps *m);

/* Read and validate a mappings file. Every violation is an NL_EINPUT error
 * naming the file and the tensor: a tensor not named <layer>.x / <layer>.y,
 * a dtype other than F32, a shape other than 1-D, no points, x and y of
 * different lengths, a missing partner, a NaN or infinity, no layers. */
int nl_maps_load(nl_maps *m, const char *path, nl_error *err);

/* Write atomically (tensors and metadata). Fails on an empty set. */
int nl_maps_save(const nl_maps *m, const char *path, nl_error *err);

/* Import from any safetensors file: layer L's x is the tensor named
 * x_prefix L x_suffix, its y is y_prefix L y_suffix (NULL counts as "").
 * Tensors of any float dtype and shape are flattened to F32; tensors that
 * match neither pattern are skipped. The same checks as nl_maps_load apply
 * to the matched tensors; the x pattern and the y pattern must differ. The
 * source's metadata is kept and "imported_from" records the file. */
typedef struct nl_maps_import_opts {
  const char *x_prefix, *x_suffix, *y_prefix, *y_suffix;
} nl_maps_import_opts;
int nl_maps_import(nl_maps *m, const char *path, const nl_maps_import_opts *o, nl_error *err);

/* Add a layer, copying n points of x and y. Fails (NL_EINPUT) on an empty
 * or duplicate name, n == 0 or a non-finite value. */
int nl_maps_add(nl_maps *m, const char *name, const float *x, const float *y, size_t n,
                nl_error *err);
/* Same, taking ownership of x and y (allocated with nl_xmalloc/malloc;
 * freed here on failure too). */
int nl_maps_add_owned(nl_maps *m, const char *name, float *x, float *y, size_t n,
                      nl_error *err);

const nl_maps_layer *nl_maps_find(const nl_maps *m, const char *name);
/* Index of a layer, or -1. */
int nl_maps_index(const nl_maps *m, const char *name);

/* Content fingerprint of the layers: names, point counts and the values
 * of x and y, layers taken by name (neither their order nor the metadata
 * counts), 64 bits. The same for a set saved and loaded again; any changed
 * point changes it. */
uint64_t nl_maps_fingerprint(const nl_maps *m);

/* Metadata: set (replacing an existing key) and get (NULL when absent). */
void nl_maps_set_meta(nl_maps *m, const char *key, const char *value);
const char *nl_maps_get_meta(const nl_maps *m, const char *key);

/* Sort the layers into natural order. */
void nl_maps_sort(nl_maps *m);
/* Natural-order comparison of two names (digit runs as numbers). */
int nl_natural_cmp(const char *a, const char *b);

#endif
