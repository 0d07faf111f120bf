#define _POSIX_C_SOURCE 200809L
#include "data/image.h"

#include <errno.h>
#include <jerror.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
/* jpeglib.h needs stdio.h and size_t first */
#include <jpeglib.h>

#include "base/mem.h"

/* ---- JPEG ---- */

typedef struct jerr_mgr {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
} jerr_mgr;

static void jpeg_on_error(j_common_ptr ci) {
  jerr_mgr *e = (jerr_mgr *)ci->err;
  (*ci->err->format_message)(ci, e->msg);
  longjmp(e->jb, 1);
}

/* Warnings are ignored as PIL ignores them, except the end of the data
 * before the image is complete: PIL calls that a truncated file. */
static void jpeg_on_message(j_common_ptr ci, int level) {
  if (level < 0 && ci->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(ci);
}

static int decode_jpeg(nl_image *im, const unsigned char *data, size_t len, const char *name,
                       nl_error *err) {
  struct jpeg_decompress_struct ci;
  jerr_mgr je;
  uint8_t *volatile px = NULL;
  memset(&ci, 0, sizeof ci);
  ci.err = jpeg_std_error(&je.pub);
  je.pub.error_exit = jpeg_on_error;
  je.pub.emit_message = jpeg_on_message;
  je.msg[0] = 0;
  if (setjmp(je.jb)) {
    jpeg_destroy_decompress(&ci);
    free(px);
    return nl_fail(err, NL_EINPUT, "%s: corrupt or truncated JPEG: %s", name, je.msg);
  }
  jpeg_create_decompress(&ci);
  jpeg_mem_src(&ci, data, (unsigned long)len);
  jpeg_read_header(&ci, TRUE);
  if (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&ci);
    return nl_fail(err, NL_EINPUT, "%s: CMYK JPEG is not supported (convert it to RGB)", name);
  }
  int c = ci.num_components == 1 ? 1 : 3;
  ci.out_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&ci);
  if (ci.output_components != c || ci.output_width == 0 || ci.output_height == 0 ||
      ci.output_width > 65535 || ci.output_height > 65535) {
    jpeg_destroy_decompress(&ci);
    return nl_fail(err, NL_EINPUT, "%s: unsupported JPEG (%ux%u, %d components)", name,
                   ci.output_width, ci.output_height, ci.output_components);
  }
  size_t stride = (size_t)ci.output_width * c;
  px = nl_xmalloc(stride * ci.output_height);
  while (ci.output_scanline < ci.output_height) {
    JSAMPROW row = px + stride * ci.output_scanline;
    jpeg_read_scanlines(&ci, &row, 1);
  }
  jpeg_finish_decompress(&ci);
  im->w = (int)ci.output_width;
  im->h = (int)ci.output_height;
  im->c = c;
  im->px = px;
  jpeg_destroy_decompress(&ci);
  return 0;
}

/* ---- PNG ---- */

typedef struct png_src {
  const unsigned char *data;
  size_t len, pos;
  char msg[256];
} png_src;

static void png_on_read(png_structp p, png_bytep out, size_t n) {
  png_src *s = png_get_io_ptr(p);
  if (s->len - s->pos < n) png_error(p, "file ends early (truncated)");
  memcpy(out, s->data + s->pos, n);
  s->pos += n;
}

static void png_on_error(png_structp p, png_const_charp msg) {
  png_src *s = png_get_error_ptr(p);
  snprintf(s->msg, sizeof s->msg, "%s", msg);
  png_longjmp(p, 1);
}

static void png_on_warning(png_structp p, png_const_charp msg) { (void)p, (void)msg; }

static int decode_png(nl_image *im, const unsigned char *data, size_t len, const char *name,
                      nl_error *err) {
  png_src s = {data, len, 0, ""};
  png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &s, png_on_error, png_on_warning);
  if (!p) return nl_fail(err, NL_ENOMEM, "%s: out of memory", name);
  png_infop info = png_create_info_struct(p);
  uint8_t *volatile px = NULL;
  png_bytep *volatile rows = NULL;
  if (!info || setjmp(png_jmpbuf(p))) {
    png_destroy_read_struct(&p, info ? &info : NULL, NULL);
    free(px);
    free(rows);
    return nl_fail(err, NL_EINPUT, "%s: corrupt or truncated PNG: %s", name,
                   s.msg[0] ? s.msg : "out of memory");
  }
  png_set_read_fn(p, &s, png_on_read);
  png_set_user_limits(p, 65535, 65535);
  png_read_info(p, info);
  int ct = png_get_color_type(p, info), bd = png_get_bit_depth(p, info);
  /* PIL's convert("RGB"/"L") of what it decodes: palette to RGB, alpha
   * dropped, 16 bits to the high byte, fewer than 8 bits expanded */
  if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(p);
  if (ct == PNG_COLOR_TYPE_GRAY && bd < 8) png_set_expand_gray_1_2_4_to_8(p);
  if (bd == 16) png_set_strip_16(p);
  if (ct & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(p);
  png_set_interlace_handling(p);
  png_read_update_info(p, info);
  int c = (int)png_get_channels(p, info);
  png_uint_32 w = png_get_image_width(p, info), h = png_get_image_height(p, info);
  size_t stride = png_get_rowbytes(p, info);
  if ((c != 1 && c != 3) || stride != (size_t)w * c) {
    snprintf(s.msg, sizeof s.msg, "unsupported layout (%d channels)", c);
    png_longjmp(p, 1);
  }
  px = nl_xmalloc(stride * h);
  rows = nl_xmalloc(sizeof(png_bytep) * h);
  for (png_uint_32 y = 0; y < h; y++) rows[y] = px + stride * y;
  png_read_image(p, rows);
  png_read_end(p, NULL);
  png_destroy_read_struct(&p, &info, NULL);
  free(rows);
  im->w = (int)w;
  im->h = (int)h;
  im->c = c;
  im->px = px;
  return 0;
}

/* ---- entry points ---- */

int nl_image_decode(nl_image *im, const unsigned char *data, size_t len, const char *name,
                    nl_error *err) {
  memset(im, 0, sizeof *im);
  static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
    return decode_jpeg(im, data, len, name, err);
  if (len >= 8 && memcmp(data, png_sig, 8) == 0) return decode_png(im, data, len, name, err);
  return nl_fail(err, NL_EINPUT, "%s: not a JPEG or PNG image (%s)", name,
                 len == 0 ? "empty file" : "unknown signature");
}

int nl_image_read(nl_image *im, const char *path, nl_error *err) {
  memset(im, 0, sizeof *im);
  FILE *f = fopen(path, "rb");
  if (!f) return nl_fail(err, nl_errno_code(errno), "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  unsigned char *buf = nl_xmalloc(cap);
  for (;;) {
    if (n == cap) buf = nl_xrealloc(buf, cap *= 2);
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  int rc = bad ? nl_fail(err, NL_EIO, "%s: read error", path) : nl_image_decode(im, buf, n, path, err);
  free(buf);
  return rc;
}

void nl_image_convert(nl_image *im, int c) {
  if (im->c == c) return;
  size_t n = (size_t)im->w * im->h;
  if (c == 3) {
    uint8_t *o = nl_xmalloc(n * 3);
    for (size_t i = 0; i < n; i++) o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = im->px[i];
    free(im->px);
    im->px = o;
  } else {
    const uint8_t *s = im->px;
    for (size_t i = 0; i < n; i++)
      im->px[i] = (uint8_t)((s[3 * i] * 19595u + s[3 * i + 1] * 38470u + s[3 * i + 2] * 7471u +
                             0x8000u) >> 16);
  }
  im->c = c;
}

void nl_image_free(nl_image *im) {
  if (!im) return;
  free(im->px);
  memset(im, 0, sizeof *im);
}

int nl_image_name_ok(const char *name) {
  const char *dot = strrchr(name, '.');
  if (!dot) return 0;
  return strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 ||
         strcasecmp(dot, ".png") == 0;
}
