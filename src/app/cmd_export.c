/* normlab export: a model as a PyTorch package, as C code of its norm
 * slots, or as ONNX through the PyTorch package (scripts/export-onnx). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "app/cmd.h"
#include "app/model_path.h"
#include "base/fileio.h"
#include "base/mem.h"
#include "model/export.h"
#include "model/vit.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "model (safetensors, timm names)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"to", NL_OPT_CHOICE, "FORMAT", NULL, "pytorch, c or onnx", "pytorch|c|onnx", NL_OPTF_REQUIRED},
    {"output", NL_OPT_STR, "DIR", NULL, "directory to write (replaced when it holds an export)", NULL,
     NL_OPTF_PATH | NL_OPTF_REQUIRED},
    {"set", NL_OPT_STR, "SPEC", NULL,
     "replace the norms first, as replace --set (at the prompt: the session's set; none: as "
     "loaded)",
     NULL, NL_OPTF_PATH},
    {"heads", NL_OPT_INT, "N", NULL, "number of attention heads (overrides the config)", NULL, 0},
    {0},
};

/* scripts/export-onnx of the source tree, else the installed one. */
static char *onnx_script(void) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s/scripts/export-onnx", NL_SRCDIR);
  if (nl_file_exists(buf)) return nl_xstrdup(buf);
  snprintf(buf, sizeof buf, "%s/scripts/export-onnx", NL_DATADIR);
  return nl_xstrdup(buf);
}

/* Run the ONNX step on the PyTorch files in dir: $NORMLAB_PYTHON SCRIPT
 * DIR, or the script itself (#!/usr/bin/python3). Its output goes to the
 * error stream. */
static int run_onnx(nl_ctx *ctx, const char *dir, nl_error *err) {
  char *script = onnx_script();
  if (!nl_file_exists(script)) {
    int rc = nl_fail(err, NL_EIO, "--to onnx: %s not found (install normlab's scripts)", script);
    free(script);
    return rc;
  }
  const char *py = getenv("NORMLAB_PYTHON");
  fflush(ctx->out);
  fflush(ctx->err);
  pid_t pid = fork();
  if (pid < 0) {
    free(script);
    return nl_fail(err, NL_EIO, "fork: %s", strerror(errno));
  }
  if (pid == 0) {
    int efd = fileno(ctx->err);
    if (efd >= 0) {
      dup2(efd, 1);
      dup2(efd, 2);
    }
    if (py && *py) execlp(py, py, script, dir, (char *)NULL);
    else execl(script, script, dir, (char *)NULL);
    fprintf(stderr, "normlab: cannot run %s: %s\n", py && *py ? py : script, strerror(errno));
    _exit(127);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  int rc = 0;
  /* the script exits 2 on what it was given (no torch, a bad module) */
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    rc = nl_fail(err, WIFEXITED(st) && WEXITSTATUS(st) == 2 ? NL_EINPUT : NL_EIO, "--to onnx: %s failed (%s %d); nothing written", script,
                 WIFEXITED(st) ? "exit status" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
  free(script);
  return rc;
}

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *to = nl_arg_need(a, "to", err);
  if (!to) return -1;
  const char *outdir = nl_arg_need(a, "output", err);
  if (!outdir) return -1;
  nl_vit_load_opts lo = {0};
  if (nl_arg_given(a, "heads")) {
    long h;
    if (nl_arg_int_range(a, "heads", 1, 4096, &h, err)) return -1;
    lo.heads = (int)h;
  }
  nl_model_norms s;
  if (nl_model_norms_get(ctx, a, 1, &s, err)) {
    nl_model_norms_free(&s);
    return -1;
  }
  const char *path = nl_model_path(ctx, a);
  nl_vit m;
  if (nl_vit_load(&m, path, &lo, err)) {
    nl_model_norms_free(&s);
    return -1;
  }
  int rc = nl_model_norms_apply(&s, &m, NULL, NULL, err);
  if (!rc) {
    if (!strcmp(to, "c")) {
      rc = nl_export_c(&m, outdir, err);
    } else if (!strcmp(to, "pytorch")) {
      rc = nl_export_pytorch(&m, outdir, err);
    } else { /* onnx: the PyTorch files, then model.onnx beside them */
      char *tmp = nl_export_tmpdir(outdir, err);
      rc = tmp ? 0 : -1;
      if (!rc) rc = nl_export_pytorch_into(&m, tmp, err);
      if (!rc) rc = run_onnx(ctx, tmp, err);
      if (!rc) rc = nl_export_publish(tmp, outdir, err);
      if (rc && tmp) nl_export_discard(tmp);
      free(tmp);
    }
  }
  if (!rc) {
    int nk[3] = {0};
    for (int i = 0; i < m.nnorms; i++) nk[m.norms[i].kind]++;
    fprintf(ctx->out, "exported %s (%d norm slots: %d LayerNorm, %d DyT, %d expression) to %s/ as %s\n",
            path, m.nnorms, nk[NL_NORM_LAYERNORM], nk[NL_NORM_DYT], nk[NL_NORM_EXPR], outdir,
            !strcmp(to, "c") ? "norms.c, norms.h"
            : !strcmp(to, "pytorch") ? "model.py, model.safetensors, README.md"
                                     : "model.onnx, model.py, model.safetensors, README.md");
  }
  nl_vit_free(&m);
  nl_model_norms_free(&s);
  return rc;
}

const nl_cmd nl_cmd_export = {
    .name = "export",
    .args = NULL,
    .summary = "export a model to PyTorch (model.py + safetensors), C (norm slots) or ONNX",
    .help = "Writes the model (after --set, if given) into the directory --output,\n"
            "atomically (a temporary directory renamed into place; an existing directory\n"
            "is replaced only when it holds nothing but an export's files).\n"
            "  --to pytorch  model.py: a self-contained timm-layout VisionTransformer\n"
            "                (torch only); load(DIR) returns the module with its weights;\n"
            "                norm slots are generated code: nn.LayerNorm, DyT with a\n"
            "                learnable alpha, or f(x)*weight + bias with the expression's\n"
            "                constants in a float32 buffer (not trained, not saved);\n"
            "                model.safetensors: the weights in timm's names, which normlab\n"
            "                and save() in model.py read and write; README.md: how to use\n"
            "                it, also inside timm's own VisionTransformer.\n"
            "  --to c        norms.c, norms.h: one dependency-free function per norm slot,\n"
            "                y = f(x)*w + b over one token of d floats, plain loops over\n"
            "                restrict pointers with normlab's own tanh/exp (no libm but\n"
            "                sqrtf), for edge toolchains.\n"
            "  --to onnx     the PyTorch files and model.onnx, made by scripts/export-onnx\n"
            "                (torch.onnx.export of load(DIR), checked with onnx.checker;\n"
            "                python3-torch and python3-onnx; NORMLAB_PYTHON names another\n"
            "                interpreter).\n"
            "Re-align the PyTorch export on GPUs with scripts/realign-ddp; its checkpoints\n"
            "load back into normlab.",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
