/* Unit tests for the REPL's line splitting and completion and for the
 * session state (src/repl, src/app/session.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/main.h"
#include "session/session.h"
#include "base/fileio.h"
#include "repl/complete.h"
#include "search/fronts.h"
#include "repl/repl.h"
#include "app/split.h"

static void test_split_quotes(void **state) {
  (void)state;
  nl_words *c;
  int n;
  nl_error err;
  assert_int_equal(nl_split_line("eval --limit 1000", &c, &n, &err), 0);
  assert_int_equal(n, 1);
  assert_int_equal(c[0].argc, 3);
  assert_string_equal(c[0].argv[2], "1000");
  assert_null(c[0].argv[3]);
  nl_words_free(c, n);

  /* as sh would split it: set a = 'tanh(x); 2' "b\"c" d\ e '' */
  assert_int_equal(nl_split_line("set a = 'tanh(x); 2' \"b\\\"c\" d\\ e ''", &c, &n, &err), 0);
  assert_int_equal(n, 1);
  assert_int_equal(c[0].argc, 7);
  assert_string_equal(c[0].argv[3], "tanh(x); 2");
  assert_string_equal(c[0].argv[4], "b\"c");
  assert_string_equal(c[0].argv[5], "d e");
  assert_string_equal(c[0].argv[6], "");
  nl_words_free(c, n);

  /* backslash inside double quotes stays unless before " or \ */
  assert_int_equal(nl_split_line("x \"a\\nb\" 'c\\d'", &c, &n, &err), 0);
  assert_string_equal(c[0].argv[1], "a\\nb");
  assert_string_equal(c[0].argv[2], "c\\d");
  nl_words_free(c, n);
}

static void test_split_commands_and_comments(void **state) {
  (void)state;
  nl_words *c;
  int n;
  nl_error err;
  assert_int_equal(nl_split_line("status; help load;;layers # a comment; quit", &c, &n, &err), 0);
  assert_int_equal(n, 3);
  assert_string_equal(c[0].argv[0], "status");
  assert_int_equal(c[1].argc, 2);
  assert_string_equal(c[1].argv[1], "load");
  assert_int_equal(c[2].argc, 1);
  assert_string_equal(c[2].argv[0], "layers");
  nl_words_free(c, n);

  assert_int_equal(nl_split_line("   # only a comment", &c, &n, &err), 0);
  assert_int_equal(n, 0);
  nl_words_free(c, n);
  assert_int_equal(nl_split_line("", &c, &n, &err), 0);
  assert_int_equal(n, 0);
  nl_words_free(c, n);
  /* ~ is $HOME at the start of an unquoted word only */
  setenv("HOME", "/home/someone", 1);
  assert_int_equal(nl_split_line("load model ~/m.st '~/q' a~/b ~x ~", &c, &n, &err), 0);
  assert_string_equal(c[0].argv[2], "/home/someone/m.st");
  assert_string_equal(c[0].argv[3], "~/q");
  assert_string_equal(c[0].argv[4], "a~/b");
  assert_string_equal(c[0].argv[5], "~x");
  assert_string_equal(c[0].argv[6], "/home/someone");
  nl_words_free(c, n);
  /* '#' inside a word is not a comment */
  assert_int_equal(nl_split_line("a b#c", &c, &n, &err), 0);
  assert_string_equal(c[0].argv[1], "b#c");
  nl_words_free(c, n);
}

/* Property: words quoted as sh quotes them ('...' with ' written '\'')
 * split back into the same words, whatever bytes they hold. */
static void test_split_roundtrip(void **state) {
  (void)state;
  static const char alphabet[] = "ab =;#'\"\\\t(x)*-+.";
  unsigned seed = 12345;
  for (int iter = 0; iter < 2000; iter++) {
    char words[4][12];
    int nw = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 4;
    char line[400];
    size_t k = 0;
    for (int w = 0; w < nw; w++) {
      int len = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 11;
      for (int i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        words[w][i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
      }
      words[w][len] = '\0';
      if (w) line[k++] = ' ';
      line[k++] = '\'';
      for (int i = 0; i < len; i++) {
        if (words[w][i] == '\'') {
          memcpy(line + k, "'\\''", 4);
          k += 4;
        } else {
          line[k++] = words[w][i];
        }
      }
      line[k++] = '\'';
    }
    line[k] = '\0';
    nl_words *c;
    int n;
    nl_error err;
    assert_int_equal(nl_split_line(line, &c, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(c[0].argc, nw);
    for (int w = 0; w < nw; w++) assert_string_equal(c[0].argv[w], words[w]);
    assert_int_equal(nl_split_incomplete(line), 0);
    nl_words_free(c, n);
  }
}

static void test_split_errors(void **state) {
  (void)state;
  nl_words *c;
  int n;
  nl_error err;
  nl_error_clear(&err);
  assert_int_equal(nl_split_line("set a = 'tanh(x)", &c, &n, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "column 9"));
  assert_non_null(strstr(err.msg, "single quote"));
  assert_int_equal(nl_split_line("a \"b", &c, &n, &err), -1);
  assert_non_null(strstr(err.msg, "double quote"));
}

static void test_split_incomplete(void **state) {
  (void)state;
  assert_int_equal(nl_split_incomplete("status"), 0);
  assert_int_equal(nl_split_incomplete("set a = 'tanh(x"), 1);
  assert_int_equal(nl_split_incomplete("set a = \"x \\\" y"), 1); /* escaped quote inside */
  assert_int_equal(nl_split_incomplete("set a = \"x\" \\"), 2);
  assert_int_equal(nl_split_incomplete("a \\\\"), 0);            /* an escaped backslash */
  assert_int_equal(nl_split_incomplete("a # it's a comment"), 0);
  assert_int_equal(nl_split_incomplete("a b#'c"), 1);              /* '#' inside a word */
  assert_int_equal(nl_split_incomplete("'a\\'"), 0);               /* no escapes in '...' */
}

static void test_split_tail(void **state) {
  (void)state;
  nl_words w;
  int open;
  nl_split_tail("status; load mo", &w, &open);
  assert_int_equal(open, 1);
  assert_int_equal(w.argc, 2);
  assert_string_equal(w.argv[0], "load");
  assert_string_equal(w.argv[1], "mo");
  nl_words_clear(&w);
  nl_split_tail("load model \"my fi", &w, &open);
  assert_int_equal(open, 1);
  assert_string_equal(w.argv[2], "my fi");
  nl_words_clear(&w);
  nl_split_tail("help ", &w, &open);
  assert_int_equal(open, 0);
  assert_int_equal(w.argc, 1);
  nl_words_clear(&w);
}

static int has(char **v, const char *s) {
  for (int i = 0; v[i]; i++)
    if (strcmp(v[i], s) == 0) return 1;
  return 0;
}

static int count(char **v) {
  int n = 0;
  while (v[n]) n++;
  return n;
}

static void test_complete(void **state) {
  (void)state;
  int files;
  char **v = nl_complete_candidates(nl_repl_session(), "lo", &files);
  assert_int_equal(count(v), 1);
  assert_string_equal(v[0], "load");
  assert_int_equal(files, 0);
  nl_session_free_names(v);

  v = nl_complete_candidates(nl_repl_session(), "", &files); /* every command of both tables */
  assert_true(has(v, "help") && has(v, "bench") && has(v, "status") && has(v, "quit"));
  for (int i = 0; nl_commands[i]; i++) assert_true(has(v, nl_commands[i]->name));
  nl_session_free_names(v);

  v = nl_complete_candidates(nl_repl_session(), "load ", &files); /* literal choices of the synopsis */
  assert_true(has(v, "model") && has(v, "maps") && has(v, "exprs") && has(v, "fronts"));
  assert_int_equal(count(v), 4);
  nl_session_free_names(v);

  v = nl_complete_candidates(nl_repl_session(), "load maps ", &files); /* FILE */
  assert_int_equal(files, 1);
  nl_session_free_names(v);

  v = nl_complete_candidates(nl_repl_session(), "bench --", &files); /* options from the table */
  assert_true(has(v, "--model") && has(v, "--batch") && has(v, "--json") && has(v, "--help"));
  nl_session_free_names(v);

  v = nl_complete_candidates(nl_repl_session(), "bench --model ", &files); /* NL_OPTF_PATH */
  assert_int_equal(files, 1);
  nl_session_free_names(v);

  v = nl_complete_candidates(nl_repl_session(), "help sa", &files); /* COMMAND */
  assert_int_equal(count(v), 1);
  assert_string_equal(v[0], "save");
  nl_session_free_names(v);

  v = nl_complete_candidates(nl_repl_session(), "frobnicate ", &files);
  assert_int_equal(count(v), 0);
  nl_session_free_names(v);
}

static void test_complete_layers(void **state) {
  (void)state;
  nl_session *s = nl_repl_session();
  nl_session_init(s);
  nl_session_set_expr(s, "blocks.0.norm1", "tanh(x)", NULL, NULL);
  nl_session_set_expr(s, "blocks.1.norm1", "x", NULL, NULL);
  nl_session_set_expr(s, "norm", "x", NULL, NULL);
  int files;
  char **v = nl_complete_candidates(nl_repl_session(), "layers; show blocks.", &files);
  assert_int_equal(files, 0);
  assert_int_equal(count(v), 2); /* the LAYER positional of show */
  assert_true(has(v, "blocks.0.norm1") && has(v, "blocks.1.norm1"));
  nl_session_free_names(v);
  nl_session_free(s);
}

/* ---- session ---- */

static char *tmpdir(void) {
  char tmpl[] = "/tmp/normlab-test-session-XXXXXX";
  char *d = mkdtemp(tmpl);
  assert_non_null(d);
  return strdup(d);
}

static void write_text(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(text, fp);
  fclose(fp);
}

static void rm_rf(const char *dir) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

/* The session's set is read by the one .exprs grammar (expr/exprset.c):
 * each entry keeps its text as written and its comment; errors give the
 * file, line and column. */
static void test_set_parse(void **state) {
  (void)state;
  nl_exprset set;
  nl_exprset_init(&set);
  nl_error err;
  const char *text = "# header\n\nblocks.0.norm1 = tanh(1.5 * x)  # from seed 3\nnorm=x\n";
  assert_int_equal(nl_exprset_parse(text, "a.exprs", &set, &err), 0);
  assert_int_equal(set.n, 2);
  assert_string_equal(set.e[0].name, "blocks.0.norm1");
  assert_string_equal(set.e[0].text, "tanh(1.5 * x)");
  assert_int_equal(set.e[0].prog.len, 4); /* tanh(* 1.5 x) */
  assert_string_equal(set.e[0].comment, "from seed 3");
  assert_int_equal(set.e[0].line, 3);
  assert_string_equal(set.e[1].text, "x");
  assert_null(set.e[1].comment);
  char *d = tmpdir();
  char p[4200];
  snprintf(p, sizeof p, "%s/out.exprs", d);
  assert_int_equal(nl_exprset_save(&set, p, &err), 0);
  char *out = nl_read_file(p, NULL, NULL);
  assert_string_equal(out, "# normlab expression set: NAME = EXPR, one per line\n"
                           "blocks.0.norm1 = tanh(1.5 * x)  # from seed 3\nnorm = x\n");
  free(out);
  rm_rf(d);
  free(d);
  /* a set made by calls is written as printed, and a copy is deep */
  nl_exprset copy;
  nl_exprset_copy(&copy, &set);
  nl_exprset_free(&set);
  assert_string_equal(copy.e[0].text, "tanh(1.5 * x)");
  assert_int_equal(nl_exprset_set_text(&copy, "norm", "2 *x", "hand", NULL, &err), 0);
  assert_string_equal(nl_exprset_find(&copy, "norm")->text, "2 *x");
  assert_int_equal(nl_exprset_set_text(&copy, "norm", "2 * (x", NULL, "typed", &err), -1);
  assert_non_null(strstr(err.msg, "typed:1:7:"));
  assert_string_equal(nl_exprset_find(&copy, "norm")->text, "2 *x"); /* unchanged */
  nl_exprset_free(&copy);

  assert_int_equal(nl_exprset_parse("a = x\n\nb x\n", "f.exprs", &set, &err), -1);
  assert_non_null(strstr(err.msg, "f.exprs:3:1: expected 'NAME = EXPR'"));
  nl_exprset_free(&set);
  assert_int_equal(nl_exprset_parse("a = x\na = 2\n", "f.exprs", &set, &err), -1);
  assert_non_null(strstr(err.msg, "f.exprs:2:1: duplicate layer name 'a' (first defined on line 1)"));
  nl_exprset_free(&set);
  assert_int_equal(nl_exprset_parse("a =   # nothing\n", "f.exprs", &set, &err), -1);
  assert_non_null(strstr(err.msg, "f.exprs:1:"));
  nl_exprset_free(&set);
}

static void test_session_undo_and_context(void **state) {
  (void)state;
  nl_session s;
  nl_session_init(&s);
  nl_error err;
  assert_null(nl_session_name(&s));
  assert_int_equal(nl_session_undo(&s), -1);
  assert_int_equal(nl_session_set_expr(&s, "a", "x", NULL, &err), 0);
  assert_int_equal(nl_session_set_expr(&s, "a", "tanh(x)", NULL, &err), 0);
  assert_int_equal(nl_session_set_expr(&s, "b", "2 * x", "hand-made", &err), 0);
  assert_string_equal(nl_session_find(&s, "a")->text, "tanh(x)");
  assert_int_equal(nl_session_find(&s, "a")->prog.len, 2); /* parsed once, kept */
  /* a bad expression changes nothing and is no undo step */
  assert_int_equal(nl_session_set_expr(&s, "a", "tanh(", NULL, &err), -1);
  assert_string_equal(nl_session_find(&s, "a")->text, "tanh(x)");
  assert_int_equal(nl_session_undo(&s), 0);
  assert_null(nl_session_find(&s, "b"));
  assert_int_equal(nl_session_undo(&s), 0);
  assert_string_equal(nl_session_find(&s, "a")->text, "x");
  assert_int_equal(nl_session_set_expr(&s, "b", "2 * x", "hand-made", &err), 0);
  /* a whole new set is one undo step */
  nl_exprset copy;
  nl_exprset_copy(&copy, &s.set);
  assert_int_equal(nl_exprset_set_text(&copy, "a", "y", NULL, NULL, &err), -1); /* no y */
  assert_int_equal(nl_exprset_set_text(&copy, "a", "x + 1", NULL, NULL, &err), 0);
  assert_int_equal(nl_exprset_set_text(&copy, "b", "abs(x)", "hand-made", NULL, &err), 0);
  nl_session_replace_set(&s, &copy);
  assert_int_equal(copy.n, 0);
  assert_string_equal(nl_session_find(&s, "b")->text, "abs(x)");
  assert_string_equal(nl_session_find(&s, "b")->comment, "hand-made");
  assert_int_equal(nl_session_undo(&s), 0);
  assert_string_equal(nl_session_find(&s, "a")->text, "x");
  assert_string_equal(nl_session_find(&s, "b")->text, "2 * x");

  /* a modified set reaches the shell's commands as a file written by the
   * one writer */
  const char *p = nl_session_context(&s, "exprs");
  assert_non_null(p);
  char *text = nl_read_file(p, NULL, NULL);
  assert_string_equal(text, "# normlab expression set: NAME = EXPR, one per line\n"
                            "a = x\nb = 2 * x  # hand-made\n");
  free(text);
  char *keep = strdup(p);
  assert_null(nl_session_context(&s, "model"));

  assert_int_equal(nl_session_setting(&s, "seed", "7", &err), 0);
  assert_string_equal(nl_session_context(&s, "seed"), "7");
  assert_int_equal(nl_session_setting(&s, "bad key", "1", &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_int_equal(nl_session_setting(&s, "k", "a\nb", &err), -1);
  nl_session_free(&s);
  assert_false(nl_file_exists(keep)); /* the private file goes with the session */
  free(keep);
}

static void test_session_loads(void **state) {
  (void)state;
  const char *fx = getenv("NL_FIXTURES");
  char model[4096];
  snprintf(model, sizeof model, "%s/vit_tiny_p4_fmnist.safetensors", fx ? fx : ".");
  if (!nl_file_exists(model)) {
    skip();
    return;
  }
  nl_session s;
  nl_session_init(&s);
  nl_error err;
  assert_int_equal(nl_session_load(&s, "model", model, &err), 0);
  /* ViT-Tiny, depth 12: norm1 and norm2 per block and the final norm */
  /* against the fixture's reference: timm's LayerNorm modules and width */
  char ref[4096];
  snprintf(ref, sizeof ref, "%s/vit_tiny_p4_fmnist.json", fx);
  json_error_t je;
  json_t *j = json_load_file(ref, 0, &je);
  assert_non_null(j);
  json_t *ln = json_object_get(j, "ln_layers");
  assert_int_equal(s.nmodel_layers, (int)json_array_size(ln));
  for (size_t i = 0; i < json_array_size(ln); i++) {
    int found = 0;
    for (int k = 0; k < s.nmodel_layers; k++)
      found |= strcmp(s.model_layers[k], json_string_value(json_array_get(ln, i))) == 0;
    assert_true(found);
  }
  assert_int_equal(s.model_width,
                   json_integer_value(json_object_get(json_object_get(j, "config"), "embed_dim")));
  /* the reference file's mappings (map_x.<layer>, map_y.<layer>) name the
   * same layers */
  char refmaps[4096];
  snprintf(refmaps, sizeof refmaps, "%s/vit_tiny_p4_fmnist_ref.safetensors", fx);
  assert_int_equal(nl_session_load(&s, "maps", refmaps, &err), 0);
  assert_int_equal(s.nmaps_layers, (int)json_array_size(ln));
  for (int k = 0; k < s.nmaps_layers; k++) assert_string_equal(s.maps_layers[k], s.model_layers[k]);
  json_decref(j);
  char *name = nl_session_name(&s);
  assert_string_equal(name, "vit_tiny_p4_fmnist");
  free(name);
  char **v = nl_session_layers(&s);
  assert_string_equal(v[0], "blocks.0.norm1");
  assert_string_equal(v[4], "blocks.2.norm1"); /* natural order: 2 before 10 */
  assert_string_equal(v[24], "norm");
  nl_session_free_names(v);
  /* a model is not a mappings file */
  assert_int_equal(nl_session_load(&s, "maps", model, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_non_null(strstr(err.msg, "no mappings"));
  /* a text file is not safetensors */
  char *d = tmpdir();
  char junk[4200];
  snprintf(junk, sizeof junk, "%s/junk.safetensors", d);
  write_text(junk, "hello");
  assert_int_equal(nl_session_load(&s, "model", junk, &err), -1);
  assert_non_null(strstr(err.msg, "not a safetensors file"));
  assert_string_equal(s.model_path, model); /* unchanged on error */
  assert_int_equal(nl_session_load(&s, "weights", junk, &err), -1);
  nl_session_free(&s);
  rm_rf(d);
  free(d);
}

/* A mappings file as the safetensors format describes it: 8-byte
 * little-endian header length, JSON header, data. */
static void write_maps(const char *path, const char *header, size_t data_bytes) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  uint64_t n = strlen(header);
  for (int i = 0; i < 8; i++) fputc((int)((n >> (8 * i)) & 0xff), fp);
  fputs(header, fp);
  for (size_t i = 0; i < data_bytes; i++) fputc(0, fp);
  fclose(fp);
}

static void test_session_maps(void **state) {
  (void)state;
  char *d = tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/m.safetensors", d);
  write_maps(path,
             "{\"__metadata__\":{\"source\":\"t\"},"
             "\"blocks.10.norm1.x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"blocks.10.norm1.y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
             "\"blocks.2.norm1.x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
             "\"blocks.2.norm1.y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]},"
             "\"lonely.x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]}}",
             20);
  nl_session s;
  nl_session_init(&s);
  nl_error err;
  assert_int_equal(nl_session_load(&s, "maps", path, &err), 0);
  assert_int_equal(s.nmaps_layers, 2); /* lonely.x has no .y */
  nl_session_set_expr(&s, "extra", "x", NULL, &err);
  char **v = nl_session_layers(&s);
  assert_string_equal(v[0], "blocks.2.norm1");
  assert_string_equal(v[1], "blocks.10.norm1");
  assert_string_equal(v[2], "extra");
  assert_null(v[3]);
  nl_session_free_names(v);
  assert_string_equal(nl_session_context(&s, "maps"), path);
  /* a header length beyond the file */
  write_maps(path, "{}", 0);
  FILE *fp = fopen(path, "r+b");
  fputc(0x7f, fp);
  fclose(fp);
  assert_int_equal(nl_session_load(&s, "maps", path, &err), -1);
  assert_non_null(strstr(err.msg, "bad header length"));
  nl_session_free(&s);
  rm_rf(d);
  free(d);
}

/* The fronts of a directory, summarized per layer (as 'load fronts'). */
static int read_summary(const char *dir, nl_front_summary **f, int *n, nl_error *err) {
  nl_fronts rows;
  if (nl_fronts_read(dir, NULL, &rows, err) != 0) return -1;
  nl_fronts_summarize(&rows, f, n);
  nl_fronts_free(&rows);
  return 0;
}

static void test_session_fronts(void **state) {
  (void)state;
  char *d = tmpdir();
  char p[4300];
  snprintf(p, sizeof p, "%s/a.csv", d);
  /* the fronts CSV columns of the design notes; expr quoted (RFC 4180) */
  write_text(p,
             "layer,seed,rank,nodes,flops,train_fitness,val_fitness,val_mse,val_r2,expr\n"
             "blocks.0.norm1,1,0,3,2,0.1,0.1,0.2,0.80,tanh(x)\n"
             "blocks.0.norm1,1,0,9,6,0.01,0.02,0.02,0.975,\"clip(x, -2, 2) * \"\"a\"\"\"\n"
             "\n"
             "norm,2,0,1,0,0.5,0.5,0.5,0.5,x\n");
  snprintf(p, sizeof p, "%s/b.csv", d);
  write_text(p, "expr,val_r2,layer\r\n\"2 * x\",0.9,norm\r\n");
  snprintf(p, sizeof p, "%s/notes.txt", d);
  write_text(p, "not a front");
  nl_front_summary *f;
  int n;
  nl_error err;
  assert_int_equal(read_summary(d, &f, &n, &err), 0);
  assert_int_equal(n, 2);
  assert_string_equal(f[0].layer, "blocks.0.norm1");
  assert_int_equal(f[0].members, 2);
  assert_true(f[0].best_r2 == 0.975);
  assert_string_equal(f[0].best_expr, "clip(x, -2, 2) * \"a\"");
  assert_string_equal(f[1].layer, "norm");
  assert_int_equal(f[1].members, 2);
  assert_true(f[1].best_r2 == 0.9);
  assert_string_equal(f[1].best_expr, "2 * x");
  nl_front_summaries_free(f, n);

  nl_session s;
  nl_session_init(&s);
  assert_int_equal(nl_session_load(&s, "fronts", d, &err), 0);
  assert_non_null(nl_session_front(&s, "norm"));
  assert_null(nl_session_front(&s, "blocks.1.norm1"));
  nl_session_free(&s);

  write_text(p, "layer,val_r2\nnorm,0.5,extra\n");
  snprintf(p, sizeof p, "%s/c.csv", d);
  write_text(p, "layer,val_r2\nnorm,0.5,extra\n");
  assert_int_equal(read_summary(d, &f, &n, &err), -1);
  assert_non_null(strstr(err.msg, "c.csv:2: 3 fields, the header has 2"));
  write_text(p, "layer,val_r2\nnorm,high\n");
  assert_int_equal(read_summary(d, &f, &n, &err), -1);
  assert_non_null(strstr(err.msg, "c.csv:2: val_r2 'high' is not a number"));
  write_text(p, "layer,expr\nnorm,\"tanh(x)\n");
  assert_int_equal(read_summary(d, &f, &n, &err), -1);
  assert_non_null(strstr(err.msg, "c.csv:2: unterminated quote"));
  write_text(p, "seed,expr\n1,x\n");
  assert_int_equal(read_summary(d, &f, &n, &err), -1);
  assert_non_null(strstr(err.msg, "no 'layer' column"));
  rm_rf(d);
  free(d);
}

static void test_session_save_open(void **state) {
  (void)state;
  char *d = tmpdir();
  char exprs[4200], fronts[4200], sdir[4200], csv[4300];
  snprintf(exprs, sizeof exprs, "%s/in.exprs", d);
  snprintf(fronts, sizeof fronts, "%s/fronts-in", d);
  snprintf(sdir, sizeof sdir, "%s/sess", d);
  write_text(exprs, "blocks.0.norm1 = tanh(x)\nnorm = x * 0.5  # half\n");
  mkdir(fronts, 0777);
  snprintf(csv, sizeof csv, "%s/blocks.0.norm1.csv", fronts);
  write_text(csv, "layer,seed\nblocks.0.norm1,1\n");

  nl_session s;
  nl_session_init(&s);
  nl_error err;
  assert_int_equal(nl_session_load(&s, "exprs", exprs, &err), 0);
  assert_int_equal(nl_session_load(&s, "fronts", fronts, &err), 0);
  nl_session_set_expr(&s, "blocks.1.norm2", "clip(x)", NULL, &err);
  assert_int_equal(nl_session_setting(&s, "seed", "11", &err), 0);
  assert_int_equal(nl_session_setting(&s, "term", "dumb", &err), 0);
  const char *fx = getenv("NL_FIXTURES");
  char model[4096];
  snprintf(model, sizeof model, "%s/vit_tiny_p4_fmnist.safetensors", fx ? fx : ".");
  int with_model = nl_file_exists(model);
  if (with_model) assert_int_equal(nl_session_load(&s, "model", model, &err), 0);
  assert_int_equal(nl_session_save(&s, sdir, &err), 0);

  char p[4400];
  snprintf(p, sizeof p, "%s/session.json", sdir);
  assert_true(nl_file_exists(p));
  snprintf(p, sizeof p, "%s/fronts/blocks.0.norm1.csv", sdir);
  assert_true(nl_file_exists(p));
  snprintf(p, sizeof p, "%s/set.exprs", sdir);
  char *text = nl_read_file(p, NULL, NULL);
  assert_string_equal(text, "# normlab expression set: NAME = EXPR, one per line\n"
                           "blocks.0.norm1 = tanh(x)\nnorm = x * 0.5  # half\nblocks.1.norm2 = clip(x)\n");
  free(text);

  nl_session t;
  nl_session_init(&t);
  assert_int_equal(nl_session_open(&t, sdir, &err), 0);
  assert_int_equal(t.set.n, 3);
  for (int i = 0; i < 3; i++) {
    assert_string_equal(t.set.e[i].name, s.set.e[i].name);
    assert_string_equal(t.set.e[i].text, s.set.e[i].text);
  }
  assert_string_equal(t.set.e[1].comment, "half");
  assert_string_equal(nl_session_get_setting(&t, "seed"), "11");
  assert_string_equal(nl_session_get_setting(&t, "term"), "dumb");
  assert_int_equal(t.nsettings, 2);
  assert_non_null(t.fronts_dir);
  if (with_model) {
    assert_int_equal(t.nmodel_layers, 25);
    char *name = nl_session_name(&t);
    assert_string_equal(name, "vit_tiny_p4_fmnist");
    free(name);
  }
  /* saving again into the same directory works (artifacts already there),
   * and keeps where the artifacts first came from */
  assert_int_equal(nl_session_save(&t, sdir, &err), 0);
  snprintf(p, sizeof p, "%s/session.json", sdir);
  json_error_t je;
  json_t *sj = json_load_file(p, 0, &je);
  assert_non_null(sj);
  char *real = realpath(exprs, NULL);
  assert_string_equal(json_string_value(json_object_get(json_object_get(sj, "origin"), "exprs")),
                      real);
  free(real);
  json_decref(sj);

  /* a broken session.json leaves the session as it was */
  snprintf(p, sizeof p, "%s/session.json", sdir);
  write_text(p, "{\"normlab_session\": 1, \"exprs\": \"../escape.exprs\"}");
  assert_int_equal(nl_session_open(&t, sdir, &err), -1);
  assert_int_equal(err.code, NL_EINPUT);
  assert_int_equal(t.set.n, 3);
  write_text(p, "{ not json");
  assert_int_equal(nl_session_open(&t, sdir, &err), -1);
  assert_non_null(strstr(err.msg, "session.json:1:"));
  nl_session_free(&t);
  nl_session_free(&s);
  rm_rf(d);
  free(d);
}

int main(void) {
  nl_cli_setup(); /* the front-ends wired as the program wires them */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split_quotes),
      cmocka_unit_test(test_split_commands_and_comments),
      cmocka_unit_test(test_split_roundtrip),
      cmocka_unit_test(test_split_errors),
      cmocka_unit_test(test_split_incomplete),
      cmocka_unit_test(test_split_tail),
      cmocka_unit_test(test_complete),
      cmocka_unit_test(test_complete_layers),
      cmocka_unit_test(test_set_parse),
      cmocka_unit_test(test_session_undo_and_context),
      cmocka_unit_test(test_session_loads),
      cmocka_unit_test(test_session_maps),
      cmocka_unit_test(test_session_fronts),
      cmocka_unit_test(test_session_save_open),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
