#define _POSIX_C_SOURCE 200809L
#include "data/folder.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fileio.h"
#include "base/mem.h"
#include "base/rng.h"
#include "base/threads.h"
#include "base/timer.h"
#include "data/image.h"
#include "data/transform.h"

/* One image to decode: a file, or a CIFAR record (32x32 RGB, planar). */
typedef struct entry {
  char *path;                 /* file, or the CIFAR batch it came from */
  const unsigned char *rec;   /* CIFAR: the 3072 pixel bytes; NULL for files */
  int label;
} entry;

typedef struct listing {
  entry *e;
  int n, cap;
  char **classes;             /* image folders: the class names */
  int nclasses;
  unsigned char *blob;        /* CIFAR: the batches, concatenated */
} listing;

static void listing_free(listing *l) {
  for (int i = 0; i < l->n; i++) free(l->e[i].path);
  for (int i = 0; l->classes && i < l->nclasses; i++) free(l->classes[i]);
  free(l->e);
  free(l->classes);
  free(l->blob);
  memset(l, 0, sizeof *l);
}

static void add(listing *l, char *path, const unsigned char *rec, int label) {
  if (l->n == l->cap) l->e = nl_xrealloc(l->e, sizeof(entry) * (size_t)(l->cap = l->cap ? 2 * l->cap : 256));
  l->e[l->n++] = (entry){path, rec, label};
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *p = nl_xmalloc(la + lb + 2);
  memcpy(p, a, la);
  p[la] = '/';
  memcpy(p + la + 1, b, lb + 1);
  return p;
}

/* Names in dir (no . and ..), sorted; dirs_only: 1 subfolders, 0 the rest. */
static int list_dir(const char *dir, int dirs, char ***out, int *n, nl_error *err) {
  DIR *dp = opendir(dir);
  *out = NULL;
  *n = 0;
  if (!dp) return nl_fail(err, nl_errno_code(errno), "%s: cannot open folder: %s", dir, strerror(errno));
  int cap = 0;
  struct dirent *de;
  while ((de = readdir(dp))) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    char *p = join(dir, de->d_name);
    int d = is_dir(p);
    free(p);
    if (d != dirs) continue;
    if (*n == cap) *out = nl_xrealloc(*out, sizeof(char *) * (size_t)(cap = cap ? 2 * cap : 64));
    (*out)[(*n)++] = nl_xstrdup(de->d_name);
  }
  closedir(dp);
  if (*n) qsort(*out, (size_t)*n, sizeof(char *), cmp_str);
  return 0;
}

static void free_names(char **v, int n) {
  for (int i = 0; i < n; i++) free(v[i]);
  free(v);
}

/* The images below dir in os.walk order with sorted roots and names: the
 * files of a folder, then its subfolders' (sorted by path). */
static int walk(listing *l, const char *dir, int label, nl_error *err) {
  char **files, **subs;
  int nf, ns;
  if (list_dir(dir, 0, &files, &nf, err)) return -1;
  for (int i = 0; i < nf; i++)
    if (nl_image_name_ok(files[i])) add(l, join(dir, files[i]), NULL, label);
  free_names(files, nf);
  if (list_dir(dir, 1, &subs, &ns, err)) return -1;
  int rc = 0;
  for (int i = 0; i < ns && !rc; i++) {
    char *p = join(dir, subs[i]);
    rc = walk(l, p, label, err);
    free(p);
  }
  free_names(subs, ns);
  return rc;
}

static int scan_folder(listing *l, const char *dir, nl_error *err) {
  if (!is_dir(dir)) return nl_fail(err, NL_EINPUT, "%s: not a folder (imagefolder:DIR)", dir);
  if (list_dir(dir, 1, &l->classes, &l->nclasses, err)) return -1;
  if (l->nclasses == 0)
    return nl_fail(err, NL_EINPUT,
                   "%s: no class folders (an image folder holds one subfolder of images per class)",
                   dir);
  for (int c = 0; c < l->nclasses; c++) {
    char *p = join(dir, l->classes[c]);
    int before = l->n, rc = walk(l, p, c, err);
    if (!rc && l->n == before)
      rc = nl_fail(err, NL_EINPUT, "%s: class folder '%s' holds no .jpg, .jpeg or .png images", p,
                   l->classes[c]);
    free(p);
    if (rc) return -1;
  }
  return 0;
}

/* ---- CIFAR-10 ---- */

#define CIFAR_REC 3073

static int read_file(const char *path, unsigned char **buf, size_t *len, nl_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return nl_fail(err, nl_errno_code(errno), "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) || st.st_size < 0) {
    fclose(f);
    return nl_fail(err, NL_EIO, "%s: cannot stat", path);
  }
  *len = (size_t)st.st_size;
  *buf = nl_xmalloc(*len + 1);
  size_t r = fread(*buf, 1, *len, f);
  fclose(f);
  if (r != *len) {
    free(*buf);
    return nl_fail(err, NL_EIO, "%s: read error", path);
  }
  return 0;
}

static int scan_cifar(listing *l, const char *spec, char *dir, nl_error *err) {
  int test = 0;
  size_t dl = strlen(dir);
  if (dl > 5 && strcmp(dir + dl - 5, ":test") == 0) test = 1, dir[dl - 5] = 0;
  else if (dl > 6 && strcmp(dir + dl - 6, ":train") == 0) dir[dl - 6] = 0;
  char base[4096];
  snprintf(base, sizeof base, "%s", dir);
  char probe[4200];
  snprintf(probe, sizeof probe, "%s/%s", base, test ? "test_batch.bin" : "data_batch_1.bin");
  if (!nl_file_exists(probe)) {
    snprintf(base, sizeof base, "%s/cifar-10-batches-bin", dir);
    snprintf(probe, sizeof probe, "%s/%s", base, test ? "test_batch.bin" : "data_batch_1.bin");
    if (!nl_file_exists(probe))
      return nl_fail(err, NL_EINPUT,
                     "%s: no CIFAR-10 binary batches in %s (want %s, from cifar-10-binary.tar.gz)",
                     spec, dir, test ? "test_batch.bin" : "data_batch_1.bin .. data_batch_5.bin");
  }
  const int nb = test ? 1 : 5;
  unsigned char *parts[5] = {0};
  size_t lens[5] = {0}, total = 0;
  char paths[5][4200];
  int rc = 0;
  for (int b = 0; b < nb && !rc; b++) {
    if (test) snprintf(paths[b], sizeof paths[b], "%s/test_batch.bin", base);
    else snprintf(paths[b], sizeof paths[b], "%s/data_batch_%d.bin", base, b + 1);
    rc = read_file(paths[b], &parts[b], &lens[b], err);
    if (!rc && (lens[b] == 0 || lens[b] % CIFAR_REC))
      rc = nl_fail(err, NL_EINPUT,
                   "%s: %zu bytes is not a whole number of CIFAR-10 records (%d bytes each: a label "
                   "byte and 32x32x3 pixels)",
                   paths[b], lens[b], CIFAR_REC);
    for (size_t k = 0; !rc && k < lens[b]; k += CIFAR_REC)
      if (parts[b][k] > 9)
        rc = nl_fail(err, NL_EINPUT, "%s: record %zu has label %d (CIFAR-10 labels are 0..9)",
                     paths[b], k / CIFAR_REC, parts[b][k]);
    total += lens[b];
  }
  if (!rc) {
    l->blob = nl_xmalloc(total + 1);
    size_t at = 0;
    for (int b = 0; b < nb; b++) {
      memcpy(l->blob + at, parts[b], lens[b]);
      for (size_t k = 0; k < lens[b]; k += CIFAR_REC)
        add(l, nl_xstrdup(paths[b]), l->blob + at + k + 1, l->blob[at + k]);
      at += lens[b];
    }
    l->nclasses = 10;
  }
  for (int b = 0; b < nb; b++) free(parts[b]);
  return rc;
}

/* ---- decoding on workers ---- */

typedef struct job {
  const listing *l;
  const nl_data_opts *o;
  long first;          /* index in the listing of task 0 */
  uint8_t *out;        /* per task one image at the model's size */
  int32_t *boxes;      /* per task 5 ints (train) */
  size_t img;          /* bytes of one */
  char **msg;          /* per task: the error, or NULL */
} job;

/* Decode entry k of l with o's transform into out (the training crop
 * drawn from nl_rng_stream(o->seed, k); its box into bx when not NULL);
 * an undecodable image: its message, the caller's to free. */
static char *decode_entry(const listing *l, const nl_data_opts *o, long k, uint8_t *out,
                          int32_t *bx) {
  const entry *e = &l->e[k];
  nl_image im;
  nl_error err;
  if (e->rec) {
    im.w = im.h = 32, im.c = 3;
    im.px = nl_xmalloc(3072);
    for (int p = 0; p < 1024; p++)
      for (int c = 0; c < 3; c++) im.px[3 * p + c] = e->rec[c * 1024 + p];
  } else if (nl_image_read(&im, e->path, &err)) {
    return nl_xstrdup(err.msg);
  }
  nl_image_convert(&im, o->channels);
  if (o->train) {
    nl_rng r;
    nl_rng_stream(&r, o->seed, (uint64_t)k);
    nl_crop box;
    nl_rrc_params(im.w, im.h, 0.08, 1.0, 3.0 / 4.0, 4.0 / 3.0, &r, &box);
    box.flip = nl_rng_uniform(&r) < 0.5;
    if (bx) bx[0] = box.i, bx[1] = box.j, bx[2] = box.h, bx[3] = box.w, bx[4] = box.flip;
    nl_tf_train(&im, &box, o->size, o->interp, out);
  } else {
    nl_tf_eval(&im, o->size, o->crop_pct, o->interp, out);
  }
  nl_image_free(&im);
  return NULL;
}

static void decode_one(size_t t, int worker, void *user) {
  (void)worker;
  job *j = user;
  j->msg[t] = decode_entry(j->l, j->o, j->first + (long)t, j->out + t * j->img,
                           j->boxes + 5 * t);
}

/* Check the options, scan the spec's listing. */
static int open_listing(listing *l, const char *spec, const nl_data_opts *o, nl_error *err) {
  memset(l, 0, sizeof *l);
  if (o->size <= 0 || (o->channels != 1 && o->channels != 3) || !(o->crop_pct > 0) ||
      strcmp(nl_interp_name(o->interp), "?") == 0)
    return nl_fail(err, NL_EINPUT, "%s: the model's input (%d x %d x %d, crop_pct %g) cannot take images",
                   spec, o->channels, o->size, o->size, o->crop_pct);
  int cifar = strncmp(spec, "cifar10:", 8) == 0;
  char *dir = nl_xstrdup(strchr(spec, ':') + 1);
  int rc = cifar ? scan_cifar(l, spec, dir, err) : scan_folder(l, dir, err);
  free(dir);
  if (rc) listing_free(l);
  return rc;
}

/* Decode entries [from, from + count) of l into d (labels, skipped). */
static int decode_range(const listing *l, const char *spec, long from, long count,
                        const nl_data_opts *o, nl_dataset *d, nl_error *err) {
  memset(d, 0, sizeof *d);
  size_t img = (size_t)o->channels * o->size * o->size;
  d->images = nl_try_alloc((size_t)count * img + 1, 1);
  if (!d->images)
    return nl_fail(err, NL_ENOMEM, "%s: cannot hold %ld images of %dx%dx%d (%.1f GB): use --images",
                   spec, count, o->channels, o->size, o->size, (double)count * img / 1e9);
  d->labels = nl_xmalloc(sizeof(int32_t) * ((size_t)count + 1));
  snprintf(d->name, sizeof d->name, "%s", spec);
  d->rows = d->cols = o->size;
  d->channels = o->channels;
  d->classes = l->nclasses;
  /* chunks: progress and an orderly first error between them */
  const long chunk = 256;
  char **msg = nl_xcalloc((size_t)chunk, sizeof(char *));
  int32_t *boxes = nl_xcalloc((size_t)chunk * 5, sizeof(int32_t));
  double t0 = nl_now();
  long kept = 0;
  int rc = 0;
  for (long at = 0; at < count && !rc; at += chunk) {
    long n = count - at < chunk ? count - at : chunk;
    job j = {l, o, from + at, d->images + (size_t)kept * img, boxes, img, msg};
    /* decode into the free slots from `kept` on; bad ones are squeezed out below */
    nl_parallel_for_n((size_t)n, o->threads, decode_one, &j);
    for (long t = 0; t < n; t++) {
      const entry *e = &l->e[from + at + t];
      if (msg[t]) {
        if (!o->skip_bad && !rc) rc = nl_fail(err, NL_EINPUT, "%s (use --skip-bad to leave bad images out)", msg[t]);
        else if (o->skip_bad && o->warn) o->warn(msg[t], o->warn_user);
        free(msg[t]);
        msg[t] = NULL;
        d->skipped++;
        continue;
      }
      uint8_t *dst = d->images + (size_t)kept * img, *src = j.out + (size_t)t * img;
      if (dst != src) memmove(dst, src, img);
      if (o->boxes) memcpy(o->boxes + 5 * kept, boxes + 5 * t, 5 * sizeof(int32_t));
      d->labels[kept++] = e->label;
    }
    if (!rc && o->progress) {
      nl_progress p = {"decode", spec, at + n, count, nl_now() - t0, NULL, 0, NULL, NULL};
      if (o->progress(&p, o->progress_user))
        rc = nl_fail(err, NL_EINTR, "%s: stopped after %ld of %ld images", spec, at + n, count);
    }
  }
  free(msg);
  free(boxes);
  d->n = (int)kept;
  if (rc) nl_dataset_free(d);
  return rc;
}

int nl_folder_load(nl_dataset *d, const char *spec, long offset, long limit,
                   const nl_data_opts *o, nl_error *err) {
  memset(d, 0, sizeof *d);
  listing l;
  if (open_listing(&l, spec, o, err)) return -1;
  if (offset < 0 || offset > l.n) {
    int n = l.n;
    listing_free(&l);
    return nl_fail(err, NL_EINPUT, "%s: offset %ld outside [0, %d]", spec, offset, n);
  }
  long keep = l.n - offset;
  if (limit > 0 && limit < keep) keep = limit;
  int rc = decode_range(&l, spec, offset, keep, o, d, err);
  listing_free(&l);
  if (!rc && d->n == 0) {
    rc = nl_fail(err, NL_EINPUT, "%s: no images left (%d could not be decoded)", spec, d->skipped);
    nl_dataset_free(d);
  }
  return rc;
}

/* ---- streams: chunks decoded one ahead on a background thread ---- */

struct nl_data_stream {
  listing l;
  nl_data_opts o;        /* the caller's options */
  nl_dataset whole;      /* Fashion-MNIST: the whole set, handed out at once */
  int have_whole;
  char *spec;
  long next, end;        /* entries [next, end) not yet handed out */
  int chunk;
  long total;            /* entries at the start */
  /* the prefetch */
  pthread_t th;
  int busy;
  long p_from, p_count;
  nl_dataset pending;
  int pending_rc;
  nl_error pending_err;
  char **warns;          /* bad images the prefetch left out, reported by next() */
  int nwarns;
  atomic_int cancel;
};

static void collect_warn(const char *msg, void *user) {
  nl_data_stream *s = user;
  s->warns = nl_xrealloc(s->warns, sizeof(char *) * (size_t)(s->nwarns + 1));
  s->warns[s->nwarns++] = nl_xstrdup(msg);
}

static int check_cancel(const nl_progress *p, void *user) {
  (void)p;
  return atomic_load(&((nl_data_stream *)user)->cancel);
}

static void *prefetch_main(void *arg) {
  nl_data_stream *s = arg;
  nl_data_opts o = s->o;
  o.threads = 1; /* one core beside the forward pass */
  o.warn = collect_warn;
  o.warn_user = s;
  o.progress = check_cancel;
  o.progress_user = s;
  o.boxes = NULL;
  s->pending_rc = decode_range(&s->l, s->spec, s->p_from, s->p_count, &o, &s->pending, &s->pending_err);
  return NULL;
}

int nl_data_stream_open(nl_data_stream **out, const char *spec, long offset, long limit,
                        const nl_data_opts *o, int chunk, nl_error *err) {
  *out = NULL;
  nl_data_stream *s = nl_xcalloc(1, sizeof *s);
  s->o = *o;
  s->spec = nl_xstrdup(spec);
  s->chunk = chunk > 0 ? chunk : 1024;
  atomic_init(&s->cancel, 0);
  if (strncmp(spec, "imagefolder:", 12) != 0 && strncmp(spec, "cifar10:", 8) != 0) {
    if (nl_dataset_load_opts(&s->whole, spec, offset, limit, o, err)) {
      free(s->spec);
      free(s);
      return -1;
    }
    s->have_whole = 1;
    s->total = s->whole.n;
    *out = s;
    return 0;
  }
  if (open_listing(&s->l, spec, o, err)) {
    free(s->spec);
    free(s);
    return -1;
  }
  if (offset < 0 || offset > s->l.n) {
    nl_fail(err, NL_EINPUT, "%s: offset %ld outside [0, %d]", spec, offset, s->l.n);
    nl_data_stream_close(s);
    return -1;
  }
  s->next = offset;
  s->end = limit > 0 && offset + limit < s->l.n ? offset + limit : s->l.n;
  s->total = s->end - s->next;
  *out = s;
  return 0;
}

long nl_data_stream_total(const nl_data_stream *s) {
  return s->total;
}

static void join_prefetch(nl_data_stream *s) {
  if (!s->busy) return;
  pthread_join(s->th, NULL);
  s->busy = 0;
}

int nl_data_stream_next(nl_data_stream *s, nl_dataset *d, nl_error *err) {
  memset(d, 0, sizeof *d);
  if (s->have_whole) {
    *d = s->whole;
    memset(&s->whole, 0, sizeof s->whole);
    s->have_whole = 0;
    return 0;
  }
  int rc;
  if (s->busy) {
    join_prefetch(s);
    for (int i = 0; i < s->nwarns; i++) {
      if (s->o.warn) s->o.warn(s->warns[i], s->o.warn_user);
      free(s->warns[i]);
    }
    s->nwarns = 0;
    rc = s->pending_rc;
    if (rc) {
      if (err) *err = s->pending_err;
    } else {
      *d = s->pending;
    }
    memset(&s->pending, 0, sizeof s->pending);
    s->next = s->p_from + s->p_count;
  } else if (s->next < s->end) {
    long n = s->end - s->next < s->chunk ? s->end - s->next : s->chunk;
    rc = decode_range(&s->l, s->spec, s->next, n, &s->o, d, err);
    s->next += n;
  } else {
    return 0; /* the end: d->n == 0 */
  }
  if (!rc && s->next < s->end) { /* decode the next chunk meanwhile */
    s->p_from = s->next;
    s->p_count = s->end - s->next < s->chunk ? s->end - s->next : s->chunk;
    if (pthread_create(&s->th, NULL, prefetch_main, s) == 0) s->busy = 1;
  }
  return rc;
}

void nl_data_stream_close(nl_data_stream *s) {
  if (!s) return;
  atomic_store(&s->cancel, 1);
  join_prefetch(s);
  nl_dataset_free(&s->pending);
  for (int i = 0; i < s->nwarns; i++) free(s->warns[i]);
  free(s->warns);
  if (s->have_whole) nl_dataset_free(&s->whole);
  listing_free(&s->l);
  free(s->spec);
  free(s);
}

/* ---- training streams: a permutation's images, chunk by chunk ---- */

struct nl_train_stream {
  listing l;
  nl_data_opts o;        /* the caller's, seed of the current pass */
  char *spec;
  size_t img;            /* bytes of one image */
  long chunk;            /* images a chunk */
  int workers;
  const int *order;      /* the pass: listing indices, the caller's */
  long n, at;            /* its length; the first not yet handed out */
  uint8_t *buf[2];       /* the chunk handed out, the one decoded ahead */
  int cur;
  /* the prefetch into buf[1 - cur]: order[p_at, p_at + p_count) */
  pthread_t th;
  int busy;
  long p_at, p_count;
  atomic_long p_next;    /* the next task of the chunk */
  char **p_msg;          /* per task: the error, or NULL */
  char **h_msg;          /* skip_bad: the messages of the chunk handed out */
  atomic_int cancel;
};

static void *tr_worker(void *arg) {
  nl_train_stream *s = arg;
  uint8_t *out = s->buf[1 - s->cur];
  for (;;) {
    long t = atomic_fetch_add(&s->p_next, 1);
    if (t >= s->p_count || atomic_load(&s->cancel)) break;
    s->p_msg[t] = decode_entry(&s->l, &s->o, s->order[s->p_at + t], out + (size_t)t * s->img, NULL);
  }
  return NULL;
}

/* The prefetch thread: itself and workers - 1 more decode the chunk. */
static void *tr_prefetch(void *arg) {
  nl_train_stream *s = arg;
  pthread_t th[NL_THREADS_MAX];
  int extra = 0;
  for (int w = 1; w < s->workers && w < s->p_count; w++)
    if (pthread_create(&th[extra], NULL, tr_worker, s) == 0) extra++;
  tr_worker(s);
  for (int w = 0; w < extra; w++) pthread_join(th[w], NULL);
  return NULL;
}

static void tr_start(nl_train_stream *s) {
  s->p_at = s->at;
  s->p_count = s->n - s->at < s->chunk ? s->n - s->at : s->chunk;
  atomic_store(&s->p_next, 0);
  if (pthread_create(&s->th, NULL, tr_prefetch, s) == 0) {
    s->busy = 1;
  } else { /* no thread: decode here */
    tr_prefetch(s);
    s->busy = 2;
  }
}

static void tr_join(nl_train_stream *s) {
  if (s->busy == 1) pthread_join(s->th, NULL);
  s->busy = 0;
}

static void tr_clear_msgs(nl_train_stream *s) {
  for (long t = 0; t < s->chunk; t++) {
    free(s->p_msg[t]);
    s->p_msg[t] = NULL;
  }
}

int nl_train_stream_open(nl_train_stream **out, const char *spec, long limit,
                         const nl_data_opts *o, int chunk, nl_dataset *shell, nl_error *err) {
  *out = NULL;
  memset(shell, 0, sizeof *shell);
  nl_train_stream *s = nl_xcalloc(1, sizeof *s);
  if (open_listing(&s->l, spec, o, err)) {
    free(s);
    return -1;
  }
  if (limit > 0 && limit < s->l.n) { /* the first `limit` entries, as nl_folder_load keeps */
    for (int i = (int)limit; i < s->l.n; i++) free(s->l.e[i].path);
    s->l.n = (int)limit;
  }
  s->o = *o;
  s->o.boxes = NULL;
  s->spec = nl_xstrdup(spec);
  s->img = (size_t)o->channels * o->size * o->size;
  s->chunk = chunk > 0 ? chunk : 64;
  s->workers = nl_threads_count(o->threads);
  for (int b = 0; b < 2; b++) s->buf[b] = nl_xmalloc((size_t)s->chunk * s->img + 1);
  s->p_msg = nl_xcalloc((size_t)s->chunk, sizeof(char *));
  s->h_msg = nl_xcalloc((size_t)s->chunk, sizeof(char *));
  atomic_init(&s->cancel, 0);
  atomic_init(&s->p_next, 0);
  snprintf(shell->name, sizeof shell->name, "%s", spec);
  shell->n = s->l.n;
  shell->rows = shell->cols = o->size;
  shell->channels = o->channels;
  shell->classes = s->l.nclasses;
  shell->labels = nl_xmalloc(sizeof(int32_t) * ((size_t)s->l.n + 1));
  for (int i = 0; i < s->l.n; i++) shell->labels[i] = s->l.e[i].label;
  *out = s;
  return 0;
}

static void tr_cancel(nl_train_stream *s) {
  atomic_store(&s->cancel, 1);
  tr_join(s);
  atomic_store(&s->cancel, 0);
  tr_clear_msgs(s);
}

void nl_train_stream_begin(nl_train_stream *s, const int *order, long n, uint64_t seed) {
  tr_cancel(s);
  s->order = order;
  s->n = n;
  s->at = 0;
  s->o.seed = seed;
  if (n > 0) tr_start(s);
}

int nl_train_stream_next(nl_train_stream *s, const uint8_t **images, const char *const **bad,
                         long *count, nl_error *err) {
  *images = NULL;
  *count = 0;
  if (bad) *bad = NULL;
  /* the messages of the chunk handed out last */
  for (long t = 0; t < s->chunk; t++) {
    free(s->h_msg[t]);
    s->h_msg[t] = NULL;
  }
  if (!s->busy) return 0; /* the end of the pass */
  tr_join(s);
  int nbad = 0;
  for (long t = 0; t < s->p_count; t++) {
    if (!s->p_msg[t]) continue;
    if (!s->o.skip_bad || !bad) {
      nl_fail(err, NL_EINPUT, "%s (use --skip-bad to leave bad images out)", s->p_msg[t]);
      tr_clear_msgs(s);
      s->at = s->n; /* the pass ends here */
      return -1;
    }
    s->h_msg[t] = s->p_msg[t]; /* handed out with the chunk */
    s->p_msg[t] = NULL;
    nbad++;
  }
  if (nbad) *bad = (const char *const *)s->h_msg;
  s->cur = 1 - s->cur;
  *images = s->buf[s->cur];
  *count = s->p_count;
  s->at = s->p_at + s->p_count;
  if (s->at < s->n) tr_start(s); /* the next chunk meanwhile */
  return 0;
}

void nl_train_stream_close(nl_train_stream *s) {
  if (!s) return;
  tr_cancel(s);
  for (long t = 0; t < s->chunk; t++) free(s->h_msg[t]);
  free(s->h_msg);
  free(s->p_msg);
  free(s->buf[0]);
  free(s->buf[1]);
  listing_free(&s->l);
  free(s->spec);
  free(s);
}
