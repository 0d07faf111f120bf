/* safetensors files: 8-byte little-endian header length N, N bytes of JSON
 * header ({"name": {"dtype","shape","data_offsets"}, "__metadata__": {str:
 * str}}), then the data area. Reading validates as strictly as the
 * reference implementation; every violation is an NL_EINPUT error naming the
 * file and the tensor. F16 and BF16 tensors are converted to F32 on load. */
#ifndef NL_MODEL_SAFETENSORS_H
#define NL_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum nl_dtype {
  NL_DT_F32,
  NL_DT_F16,
  NL_DT_BF16,
  NL_DT_F64,
  NL_DT_I64,
  NL_DT_I32,
  NL_DT_I16,
  NL_DT_I8,
  NL_DT_U8,
  NL_DT_BOOL,
  NL_DT_COUNT
} nl_dtype;

const char *nl_dtype_name(nl_dtype t);
size_t nl_dtype_size(nl_dtype t);

#define NL_ST_MAX_DIMS 8

typedef struct nl_st_tensor {
  char *name;
  nl_dtype dtype;       /* dtype in the file */
  int ndim;
  int64_t shape[NL_ST_MAX_DIMS];
  size_t numel;
  size_t begin, end;    /* byte offsets within the data area */
  const void *raw;      /* points into the file's data (valid while open) */
} nl_st_tensor;

typedef struct nl_st_meta {
  char *key, *value;
} nl_st_meta;

typedef struct nl_st_file {
  char *path;
  void *map;            /* whole file (mmap or read) */
  size_t size;
  nl_st_tensor *t;      /* in header order */
  int n;
  nl_st_meta *meta;
  int nmeta;
} nl_st_file;

int nl_st_open(nl_st_file *f, const char *path, nl_error *err);
/* Validate a header held in memory (the fuzz target's entry point):
 * buf holds a whole file image of `size` bytes. */
int nl_st_parse(nl_st_file *f, const char *name, const void *buf, size_t size, nl_error *err);
void nl_st_close(nl_st_file *f);

const nl_st_tensor *nl_st_find(const nl_st_file *f, const char *name);
const char *nl_st_meta_get(const nl_st_file *f, const char *key);
/* Copy a tensor to float32 (F32, F16, BF16, F64, integer types converted).
 * dst holds t->numel floats. */
void nl_st_to_f32(const nl_st_tensor *t, float *dst);
/* Allocate and return a float32 copy (caller frees), or NULL with an error
 * when the tensor is missing. */
float *nl_st_read_f32(const nl_st_file *f, const char *name, size_t *numel, nl_error *err);
/* Drop t's bytes from this process's resident memory once they have been
 * copied out (a loader converting tensor after tensor): the whole pages its
 * data covers are unmapped from memory with madvise(MADV_DONTNEED) and read
 * back from the file if touched again, so t->raw stays valid. Loading a
 * model then peaks at its parameters plus one tensor instead of parameters
 * plus the whole file. Does nothing for a file image held in memory
 * (nl_st_parse) or a tensor under one page. */
void nl_st_release(const nl_st_file *f, const nl_st_tensor *t);

/* Writer: collects tensors (F32 only; data is copied or borrowed) and
 * metadata, then writes atomically (temporary file + rename). Tensors are
 * written in name order, as the reference implementation does. */
typedef struct nl_st_writer nl_st_writer;
nl_st_writer *nl_st_writer_new(void);
void nl_st_writer_free(nl_st_writer *w);
/* data is copied. */
int nl_st_writer_add(nl_st_writer *w, const char *name, const float *data, int ndim,
                     const int64_t *shape, nl_error *err);
/* Raw tensors of any dtype (e.g. U8, I32), data copied. */
int nl_st_writer_add_raw(nl_st_writer *w, const char *name, nl_dtype dtype, const void *data,
                         int ndim, const int64_t *shape, nl_error *err);
void nl_st_writer_meta(nl_st_writer *w, const char *key, const char *value);
int nl_st_writer_save(nl_st_writer *w, const char *path, nl_error *err);

#endif
