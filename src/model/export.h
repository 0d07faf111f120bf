/* Export of a model for use outside normlab.
 *
 * PyTorch (nl_export_pytorch): a directory with
 *   model.py           self-contained (torch only): a timm-layout
 *                      VisionTransformer (patch_embed.proj, cls_token,
 *                      pos_embed, blocks.N.{norm1, attn.qkv, attn.proj,
 *                      ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}, norm
 *                      or fc_norm, head) whose norm slots are generated
 *                      code, one nn.Module class per slot: nn.LayerNorm, DyT
 *                      (tanh(alpha x) w + b, alpha a learnable parameter
 *                      [1]) or f(x) w + b with f printed by the expression
 *                      printer (NL_PRINT_TORCH_BUF) and its constants in a
 *                      non-persistent float32 buffer c (not trained, not in
 *                      the state dict, as in normlab train); load(dir)
 *                      returns the module with model.safetensors loaded,
 *                      save(module, path) writes a checkpoint normlab reads.
 *   model.safetensors  nl_vit_save's checkpoint (timm names, DyT alphas as
 *                      "<slot>.alpha", norm kinds in __metadata__).
 *   README.md          how to load it, also into timm's own class.
 * C (nl_export_c): norms.h and norms.c, one function per norm slot,
 *   void nl_norm_<slot>(float *restrict y, const float *restrict in,
 *                      const float *restrict w, const float *restrict b, int d)
 *   computing y = f(x) * w + b over one token x = in[0..d-1] (LayerNorm slots:
 *   the LayerNorm with its eps), with the element-wise functions normlab's
 *   own kernels use (base/vmath.h: exp, tanh, sigmoid as branch-free
 *   float code; libm's sqrtf for LayerNorm only), so the loops vectorise and the results match
 *   normlab's forward to float rounding.
 *
 * Either writes its files into a temporary directory beside `dir`, then
 * renames it into place: an error leaves nothing behind. An existing
 * `dir` is replaced only when it holds nothing but files an export
 * writes; otherwise NL_EINPUT naming it. */
#ifndef NL_MODEL_EXPORT_H
#define NL_MODEL_EXPORT_H

#include "base/error.h"
#include "model/vit.h"

int nl_export_pytorch(const nl_vit *m, const char *dir, nl_error *err);
/* The PyTorch files written into an existing directory (no publishing). */
int nl_export_pytorch_into(const nl_vit *m, const char *tmpdir, nl_error *err);
int nl_export_c(const nl_vit *m, const char *dir, nl_error *err);

/* The C function name of a slot: "nl_norm_" + the name with '.' as '_'. */
void nl_export_c_name(char *buf, size_t n, const char *slot);

/* Directory publishing, shared with callers that add files (the ONNX
 * step): make a fresh temporary directory beside dir (caller frees the
 * returned path), and move it into place as dir. */
char *nl_export_tmpdir(const char *dir, nl_error *err);
int nl_export_publish(const char *tmp, const char *dir, nl_error *err);
/* Remove a temporary directory and its files (no subdirectories). */
void nl_export_discard(const char *tmp);

#endif
