/* normlab quantize: integer weights for the blocks' Linear layers (RTN,
 * AWQ, SmoothQuant W8A8), written as a quantized safetensors checkpoint
 * (model/quant.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/data_load.h"
#include "app/model_path.h"
#include "base/json.h"
#include "base/mem.h"
#include "data/dataset.h"
#include "model/quant.h"
#include "model/vit.h"

static const nl_opt opts[] = {
    {"model", NL_OPT_STR, "FILE", NULL, "model to quantize (safetensors, timm names)", NULL, NL_OPTF_PATH | NL_OPTF_SESSION},
    {"weights", NL_OPT_CHOICE, "BITS", NULL, "weight width: 8, 4 or 3 (required)", "8|4|3", 0},
    {"group", NL_OPT_INT, "G", "0", "input channels per scale (0: one per output channel for 8 bits, 128 for 4 and 3 bits)", NULL, 0},
    {"method", NL_OPT_CHOICE, "M", "rtn", "rtn (round to nearest) or awq (activation-aware scales)", "rtn|awq", 0},
    {"acts", NL_OPT_INT, "BITS", "0", "8: INT8 activations too (W8A8, SmoothQuant); 0: weight-only", NULL, 0},
    {"smooth", NL_OPT_NUM, "ALPHA", "0.5", "SmoothQuant migration strength for --acts 8 (0: none)", NULL, 0},
    {"act-mode", NL_OPT_CHOICE, "MODE", "token", "W8A8 activation scales: per token (dynamic) or per tensor (static, calibrated)", "token|tensor", 0},
    {"keep-fp16", NL_OPT_STR, "PARTS", "", "parts kept in FP16 storage, not quantized: head,patch_embed,attn,mlp,qkv,proj,fc1,fc2", NULL, 0},
    {"data", NL_OPT_STR, "SPEC", "fmnist:train", "calibration images (data spec)", NULL, 0},
    {"images", NL_OPT_INT, "N", "32", "calibration images (the first N of --data)", NULL, 0},
    NL_OPT_SKIP_BAD,
    {"output", NL_OPT_STR, "FILE", NULL, "quantized checkpoint to write (safetensors)", NULL, NL_OPTF_PATH | NL_OPTF_REQUIRED},
    {"threads", NL_OPT_INT, "N", "0", "worker threads (0: normlab --threads)", NULL, 0},
    {"json", NL_OPT_FLAG, NULL, NULL, "print one JSON object", NULL, 0},
    {0},
};

static int run(nl_ctx *ctx, const nl_args *a, nl_error *err) {
  const char *wbits = nl_arg_str(a, "weights");
  if (!wbits || !*wbits) return nl_fail(err, NL_EINPUT, "--weights is required (8, 4 or 3)");
  long group, acts, images, threads;
  if (nl_arg_int_range(a, "group", 0, 1 << 20, &group, err) ||
      nl_arg_int_range(a, "acts", 0, 8, &acts, err) ||
      nl_arg_int_range(a, "images", 1, 60000, &images, err) ||
      nl_arg_int_range(a, "threads", 0, 4096, &threads, err))
    return -1;
  if (acts != 0 && acts != 8) return nl_fail(err, NL_EINPUT, "--acts %ld: want 8 (or 0: weight-only)", acts);
  const char *outpath = nl_arg_need(a, "output", err);
  if (!outpath) return -1;
  nl_quant_opts o;
  memset(&o, 0, sizeof o);
  o.bits = atoi(wbits);
  o.group = (int)group;
  if (o.bits < 8 && !nl_arg_given(a, "group")) o.group = 128;
  o.awq = strcmp(nl_arg_str(a, "method"), "awq") == 0;
  o.acts = (int)acts;
  o.smooth = (float)nl_arg_num(a, "smooth");
  if (!(o.smooth >= 0 && o.smooth <= 1)) return nl_fail(err, NL_EINPUT, "--smooth %g: want a number in [0, 1]", (double)o.smooth);
  if (!acts && nl_arg_given(a, "smooth"))
    return nl_fail(err, NL_EINPUT, "--smooth applies to W8A8 only: give --acts 8");
  if (!acts && nl_arg_given(a, "act-mode"))
    return nl_fail(err, NL_EINPUT, "--act-mode applies to W8A8 only: give --acts 8");
  o.act_per_tensor = strcmp(nl_arg_str(a, "act-mode"), "tensor") == 0;
  if (nl_quant_parts_parse(nl_arg_str(a, "keep-fp16"), &o.fp16, err)) {
    nl_error e2 = *err;
    return nl_fail(err, NL_EINPUT, "--keep-fp16: %s", e2.msg);
  }
  const char *path = nl_model_path(ctx, a);
  if (!path) return nl_fail(err, NL_EINPUT, "no model: give --model FILE");
  nl_vit m;
  if (nl_vit_load(&m, path, NULL, err)) return -1;
  nl_dataset d;
  if (nl_app_load_images(ctx, nl_arg_str(a, "data"), 0, images, &m.cfg, nl_app_skip_bad(a), &d,
                         err)) {
    nl_vit_free(&m);
    return -1;
  }
  const nl_vit_config *c = &m.cfg;
  int rc = 0;
  float *x = NULL;
  size_t nrep = (size_t)c->depth * NL_QL_COUNT;
  nl_quant_layer_report *rep = nl_xcalloc(nrep, sizeof *rep);
  size_t bytes0 = nl_vit_stored_bytes(&m);
  if (!rc) {
    x = nl_xmalloc(sizeof(float) * (size_t)d.n * c->in_chans * c->img_size * c->img_size);
    nl_dataset_normalize(&d, 0, d.n, c->in_chans, c->nmean, c->mean, c->std, x);
    rc = nl_vit_quantize(&m, x, d.n, &o, threads ? (int)threads : ctx->threads, rep, err);
  }
  if (!rc) rc = nl_vit_save(&m, outpath, err);
  if (!rc) {
    char prec[160];
    nl_vit_precision(&m, prec, sizeof prec);
    size_t bytes1 = nl_vit_stored_bytes(&m);
    if (nl_arg_flag(a, "json")) {
      json_t *root = json_object(), *layers = json_array();
      json_object_set_new(root, "model", json_string(path));
      json_object_set_new(root, "output", json_string(outpath));
      json_object_set_new(root, "precision", json_string(prec));
      json_object_set_new(root, "bytes_before", json_integer((json_int_t)bytes0));
      json_object_set_new(root, "bytes", json_integer((json_int_t)bytes1));
      for (size_t i = 0; i < nrep; i++) {
        if (!rep[i].name[0]) continue;
        json_array_append_new(layers, json_pack("{s:s, s:o, s:o, s:o, s:o}", "name", rep[i].name,
                                                "alpha", nl_json_float(rep[i].alpha), "err_rtn",
                                                nl_json_float(rep[i].err_rtn), "err_best",
                                                nl_json_float(rep[i].err_best), "err_final",
                                                nl_json_float(rep[i].err_final)));
      }
      json_object_set_new(root, "layers", layers);
      nl_json_print(ctx->out, root);
      json_decref(root);
    } else {
      FILE *f = ctx->out;
      fprintf(f, "%-22s  %5s  %12s  %12s  %12s\n", "layer", "alpha", "mse rtn", "mse chosen",
              "mse runtime");
      for (size_t i = 0; i < nrep; i++)
        if (rep[i].name[0])
          fprintf(f, "%-22s  %5.2f  %12.4g  %12.4g  %12.4g\n", rep[i].name, (double)rep[i].alpha,
                  rep[i].err_rtn, rep[i].err_best, rep[i].err_final);
      fprintf(f, "(output mean squared error of each layer on %d calibration images of %s)\n", d.n,
              d.name);
      fprintf(f, "precision: %s\n", prec);
      fprintf(f, "model bytes: %zu -> %zu (%.1f %%)\n", bytes0, bytes1,
              bytes0 ? 100.0 * (double)bytes1 / (double)bytes0 : 0.0);
      fprintf(f, "wrote %s\n", outpath);
    }
  }
  free(rep);
  free(x);
  nl_dataset_free(&d);
  nl_vit_free(&m);
  return rc;
}

const nl_cmd nl_cmd_quantize = {
    .name = "quantize",
    .args = NULL,
    .summary = "integer weights (W8, W4, W8A8) for the blocks' Linear layers: RTN, AWQ, SmoothQuant",
    .help = "Quantizes the Linear layers of every block (attn.qkv, attn.proj, mlp.fc1,\n"
            "mlp.fc2) and writes a quantized checkpoint; patch embedding and head stay FP32\n"
            "(FP16 with --keep-fp16 head,patch_embed).\n"
            "  --weights 8   I8, asymmetric zero point, one scale per output channel (or\n"
            "                per --group input channels); products dequantized per tile\n"
            "  --weights 4   4 bits packed two per byte, asymmetric, groups of --group\n"
            "                (128; a layer with fewer inputs gets one group per channel)\n"
            "  --weights 3   3 bits packed 8 per 3 bytes, as 4 bits otherwise (inputs and\n"
            "                groups multiples of 8)\n"
            "  --method awq  per-input-channel scales s = mean|x|^alpha, alpha searched on\n"
            "                {0, 0.05, ..., 0.95} for the least output error on the\n"
            "                calibration images (alpha 0 is RTN); 1/s folded into norm1 /\n"
            "                norm2's affine (qkv, fc1) and into v's rows of qkv (proj);\n"
            "                fc2's (after GELU) kept as the layer's input scale\n"
            "  --acts 8      W8A8: symmetric I8 weights and INT8 activations (per token,\n"
            "                dynamic; --act-mode tensor: one static scale from calibration),\n"
            "                products INT8 x INT8 -> INT32 in oneDNN; SmoothQuant scales\n"
            "                s = max|X|^a / max|W|^(1-a), a = --smooth, folded the same way\n"
            "Prints each layer's output error (alpha 0 = RTN, the chosen alpha, and through\n"
            "the runtime's own integer product) and the model bytes. eval, forward, info,\n"
            "bench forward load the result and run it on its integers.",
    .opts = opts,
    .min_pos = 0,
    .max_pos = 0,
    .run = run,
};
