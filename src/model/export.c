/* Export to PyTorch (model.py + model.safetensors) and to C (the norm
 * slots as plain vectorisable loops). See model/export.h. */
#define _POSIX_C_SOURCE 200809L
#include "model/export.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/mem.h"
#include "expr/expr.h"
#include "model/safetensors.h"

/* ---- the export directory: temporary beside it, then renamed ---- */

/* Files an export writes; an existing directory holding only these (and
 * their temporaries) may be replaced. */
static const char *const export_files[] = {"model.py", "model.safetensors", "README.md",
                                           "norms.c", "norms.h", "model.onnx", NULL};

static int is_export_file(const char *name) {
  for (int i = 0; export_files[i]; i++) {
    size_t n = strlen(export_files[i]);
    if (strncmp(name, export_files[i], n) == 0 && (name[n] == '\0' || strncmp(name + n, ".tmp.", 5) == 0))
      return 1;
  }
  return strcmp(name, "__pycache__") == 0;
}

/* rm of a flat directory (and a __pycache__ inside it) */
static void rm_flat(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char *p = nl_path_join(dir, e->d_name);
      if (!strcmp(e->d_name, "__pycache__")) rm_flat(p);
      else unlink(p);
      free(p);
    }
    closedir(d);
  }
  rmdir(dir);
}

void nl_export_discard(const char *tmp) {
  if (tmp) rm_flat(tmp);
}

char *nl_export_tmpdir(const char *dir, nl_error *err) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  char *t = nl_xmalloc(n + 32);
  snprintf(t, n + 32, "%.*s.tmp.%ldXXXXXX", (int)n, dir, (long)getpid());
  /* mkdtemp wants the X's last */
  if (!mkdtemp(t)) {
    nl_fail(err, NL_EIO, "%.*s: cannot make a temporary directory beside it: %s", (int)n, dir,
            strerror(errno));
    free(t);
    return NULL;
  }
  mode_t um = umask(0);
  umask(um);
  chmod(t, 0777 & ~um); /* mkdtemp gives 0700; let the umask decide */
  return t;
}

int nl_export_publish(const char *tmp, const char *dir, nl_error *err) {
  struct stat st;
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      return nl_fail(err, NL_EINPUT, "%s: exists and is not a directory", dir);
    DIR *d = opendir(dir);
    if (!d) return nl_fail(err, NL_EIO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    const char *bad = NULL;
    char badname[256];
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || is_export_file(e->d_name)) continue;
      snprintf(badname, sizeof badname, "%s", e->d_name);
      bad = badname;
      break;
    }
    closedir(d);
    if (bad)
      return nl_fail(err, NL_EINPUT,
                     "%s: exists and holds %s, which no export writes; give a new or an "
                     "export's directory",
                     dir, bad);
    size_t n = strlen(tmp) + 8;
    char *old = nl_xmalloc(n);
    snprintf(old, n, "%s.old", tmp);
    if (rename(dir, old) != 0) {
      int e2 = errno;
      free(old);
      return nl_fail(err, NL_EIO, "%s: cannot move the previous export aside: %s", dir,
                     strerror(e2));
    }
    if (rename(tmp, dir) != 0) {
      int e2 = errno;
      rename(old, dir);
      free(old);
      return nl_fail(err, NL_EIO, "%s: %s", dir, strerror(e2));
    }
    rm_flat(old);
    free(old);
    return 0;
  }
  if (rename(tmp, dir) != 0) return nl_fail(err, NL_EIO, "%s: %s", dir, strerror(errno));
  return 0;
}

/* ---- PyTorch ---- */

static const char py_static[] =
    "import functools\n"
    "import json\n"
    "import os\n"
    "import struct\n"
    "\n"
    "import torch\n"
    "from torch import nn\n"
    "\n"
    "# ---- safetensors, read and written with torch alone ----\n"
    "_DTYPES = {\"F32\": torch.float32, \"F16\": torch.float16, \"BF16\": torch.bfloat16,\n"
    "           \"F64\": torch.float64, \"I64\": torch.int64, \"I32\": torch.int32, \"U8\": torch.uint8}\n"
    "\n"
    "\n"
    "def read_safetensors(path):\n"
    "    \"\"\"Tensors (dict name -> tensor) and __metadata__ (dict) of a safetensors file.\"\"\"\n"
    "    with open(path, \"rb\") as f:\n"
    "        (n,) = struct.unpack(\"<Q\", f.read(8))\n"
    "        header = json.loads(f.read(n))\n"
    "        data = f.read()\n"
    "    meta = header.pop(\"__metadata__\", {}) or {}\n"
    "    out = {}\n"
    "    for name, h in header.items():\n"
    "        dt = _DTYPES.get(h[\"dtype\"])\n"
    "        if dt is None:\n"
    "            raise ValueError(f\"{path}: tensor {name}: dtype {h['dtype']} not supported\")\n"
    "        a, b = h[\"data_offsets\"]\n"
    "        if b > a:\n"
    "            t = torch.frombuffer(bytearray(data[a:b]), dtype=dt)\n"
    "        else:\n"
    "            t = torch.empty(0, dtype=dt)\n"
    "        out[name] = t.reshape(h[\"shape\"])\n"
    "    return out, meta\n"
    "\n"
    "\n"
    "def write_safetensors(path, tensors, meta=None):\n"
    "    \"\"\"Write tensors (name -> tensor, kept in F32) atomically (temporary file, rename).\"\"\"\n"
    "    header, blobs, off = {}, [], 0\n"
    "    if meta:\n"
    "        header[\"__metadata__\"] = {k: str(v) for k, v in meta.items()}\n"
    "    for name, t in tensors.items():\n"
    "        t = t.detach().to(\"cpu\", torch.float32).contiguous()\n"
    "        b = t.numpy().tobytes()\n"
    "        header[name] = {\"dtype\": \"F32\", \"shape\": list(t.shape), \"data_offsets\": [off, off + len(b)]}\n"
    "        blobs.append(b)\n"
    "        off += len(b)\n"
    "    h = json.dumps(header).encode()\n"
    "    h += b\" \" * (-len(h) % 8)\n"
    "    tmp = f\"{path}.tmp.{os.getpid()}\"\n"
    "    with open(tmp, \"wb\") as f:\n"
    "        f.write(struct.pack(\"<Q\", len(h)))\n"
    "        f.write(h)\n"
    "        for b in blobs:\n"
    "            f.write(b)\n"
    "        f.flush()\n"
    "        os.fsync(f.fileno())\n"
    "    os.replace(tmp, path)\n"
    "\n"
    "\n"
    "# ---- layers, in timm's layout and names ----\n"
    "class DyT(nn.Module):\n"
    "    \"\"\"Dynamic Tanh: tanh(alpha x) * weight + bias, alpha learnable [1].\"\"\"\n"
    "\n"
    "    def __init__(self, dim, alpha=0.5):\n"
    "        super().__init__()\n"
    "        self.alpha = nn.Parameter(torch.full((1,), float(alpha)))\n"
    "        self.weight = nn.Parameter(torch.ones(dim))\n"
    "        self.bias = nn.Parameter(torch.zeros(dim))\n"
    "\n"
    "    def forward(self, x):\n"
    "        return torch.tanh(self.alpha * x) * self.weight + self.bias\n"
    "\n"
    "\n"
    "class DropPath(nn.Module):\n"
    "    \"\"\"Stochastic depth per sample (timm.layers.DropPath, scale_by_keep).\"\"\"\n"
    "\n"
    "    def __init__(self, p=0.0):\n"
    "        super().__init__()\n"
    "        self.drop_prob = p\n"
    "\n"
    "    def forward(self, x):\n"
    "        if self.drop_prob == 0.0 or not self.training:\n"
    "            return x\n"
    "        keep = 1.0 - self.drop_prob\n"
    "        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)\n"
    "        return x * mask.div_(keep)\n"
    "\n"
    "\n"
    "class LayerScale(nn.Module):\n"
    "    def __init__(self, dim):\n"
    "        super().__init__()\n"
    "        self.gamma = nn.Parameter(1e-5 * torch.ones(dim))\n"
    "\n"
    "    def forward(self, x):\n"
    "        return x * self.gamma\n"
    "\n"
    "\n"
    "class PatchEmbed(nn.Module):\n"
    "    def __init__(self, patch, in_chans, dim):\n"
    "        super().__init__()\n"
    "        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)\n"
    "\n"
    "    def forward(self, x):\n"
    "        return self.proj(x).flatten(2).transpose(1, 2)\n"
    "\n"
    "\n"
    "class Attention(nn.Module):\n"
    "    def __init__(self, dim, heads, qkv_bias):\n"
    "        super().__init__()\n"
    "        self.num_heads = heads\n"
    "        self.head_dim = dim // heads\n"
    "        self.scale = self.head_dim ** -0.5\n"
    "        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)\n"
    "        self.proj = nn.Linear(dim, dim)\n"
    "\n"
    "    def forward(self, x):\n"
    "        B, N, C = x.shape\n"
    "        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)\n"
    "        q, k, v = qkv.unbind(0)\n"
    "        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)\n"
    "        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))\n"
    "\n"
    "\n"
    "class Mlp(nn.Module):\n"
    "    def __init__(self, dim, hidden):\n"
    "        super().__init__()\n"
    "        self.fc1 = nn.Linear(dim, hidden)\n"
    "        self.act = nn.GELU()\n"
    "        self.fc2 = nn.Linear(hidden, dim)\n"
    "\n"
    "    def forward(self, x):\n"
    "        return self.fc2(self.act(self.fc1(x)))\n"
    "\n"
    "\n"
    "class Block(nn.Module):\n"
    "    def __init__(self, i, cfg, drop_path):\n"
    "        super().__init__()\n"
    "        d = cfg[\"embed_dim\"]\n"
    "        self.norm1 = make_norm(f\"blocks.{i}.norm1\", d)\n"
    "        self.attn = Attention(d, cfg[\"num_heads\"], cfg[\"qkv_bias\"])\n"
    "        self.ls1 = LayerScale(d) if cfg[\"layer_scale\"] else nn.Identity()\n"
    "        self.drop_path1 = DropPath(drop_path)\n"
    "        self.norm2 = make_norm(f\"blocks.{i}.norm2\", d)\n"
    "        self.mlp = Mlp(d, cfg[\"mlp_hidden\"])\n"
    "        self.ls2 = LayerScale(d) if cfg[\"layer_scale\"] else nn.Identity()\n"
    "        self.drop_path2 = DropPath(drop_path)\n"
    "\n"
    "    def forward(self, x):\n"
    "        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))\n"
    "        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))\n"
    "\n"
    "\n"
    "class VisionTransformer(nn.Module):\n"
    "    \"\"\"timm's VisionTransformer forward, with this export's norm slots.\"\"\"\n"
    "\n"
    "    def __init__(self, cfg=None, drop_path_rate=0.0):\n"
    "        super().__init__()\n"
    "        cfg = dict(CONFIG if cfg is None else cfg)\n"
    "        self.cfg = cfg\n"
    "        d, depth = cfg[\"embed_dim\"], cfg[\"depth\"]\n"
    "        self.global_pool = cfg[\"global_pool\"]\n"
    "        self.num_prefix_tokens = 1 if cfg[\"class_token\"] else 0\n"
    "        self.patch_embed = PatchEmbed(cfg[\"patch_size\"], cfg[\"in_chans\"], d)\n"
    "        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg[\"class_token\"] else None\n"
    "        self.pos_embed = nn.Parameter(torch.zeros(1, cfg[\"tokens\"], d))\n"
    "        dpr = [drop_path_rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]\n"
    "        self.blocks = nn.Sequential(*[Block(i, cfg, dpr[i]) for i in range(depth)])\n"
    "        if self.global_pool == \"avg\":\n"
    "            self.norm = nn.Identity()\n"
    "            self.fc_norm = make_norm(\"fc_norm\", d)\n"
    "        else:\n"
    "            self.norm = make_norm(\"norm\", d)\n"
    "            self.fc_norm = nn.Identity()\n"
    "        self.head = nn.Linear(d, cfg[\"num_classes\"])\n"
    "\n"
    "    def forward_features(self, x):\n"
    "        x = self.patch_embed(x)\n"
    "        if self.cls_token is not None:\n"
    "            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)\n"
    "        x = self.blocks(x + self.pos_embed)\n"
    "        return self.norm(x)\n"
    "\n"
    "    def forward_head(self, x):\n"
    "        if self.global_pool == \"avg\":\n"
    "            x = x[:, self.num_prefix_tokens:].mean(dim=1)\n"
    "        else:\n"
    "            x = x[:, 0]\n"
    "        return self.head(self.fc_norm(x))\n"
    "\n"
    "    def forward(self, x):\n"
    "        return self.forward_head(self.forward_features(x))\n"
    "\n"
    "\n"
    "def make_norm(name, dim):\n"
    "    \"\"\"A fresh module for norm slot `name` (its kind and function from this export).\"\"\"\n"
    "    return SLOTS[name](dim)\n"
    "\n"
    "\n"
    "def build(drop_path_rate=0.0):\n"
    "    \"\"\"The model of this export with fresh weights.\"\"\"\n"
    "    return VisionTransformer(CONFIG, drop_path_rate)\n"
    "\n"
    "\n"
    "def _weights_path(path):\n"
    "    return os.path.join(path, \"model.safetensors\") if os.path.isdir(path) else path\n"
    "\n"
    "\n"
    "def load(path=os.path.dirname(os.path.abspath(__file__)), drop_path_rate=0.0):\n"
    "    \"\"\"The exported model (eval mode) with its weights from path (the export\n"
    "    directory or a safetensors file with the same tensors, e.g. a checkpoint\n"
    "    of scripts/realign-ddp).\"\"\"\n"
    "    model = build(drop_path_rate)\n"
    "    tensors, _ = read_safetensors(_weights_path(path))\n"
    "    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)\n"
    "    return model.eval()\n"
    "\n"
    "\n"
    "def save(model, path):\n"
    "    \"\"\"Write model's weights as a checkpoint normlab loads (timm names, the\n"
    "    config, mean/std and the norm kinds in __metadata__).\"\"\"\n"
    "    model = getattr(model, \"module\", model)  # DistributedDataParallel\n"
    "    meta = {\"model_args\": json.dumps(MODEL_ARGS), \"mean\": json.dumps(CONFIG[\"mean\"]),\n"
    "            \"std\": json.dumps(CONFIG[\"std\"]), \"norms\": NORMS_JSON, \"format\": \"pt\"}\n"
    "    write_safetensors(path, model.state_dict(), meta)\n"
    "\n"
    "\n"
    "def timm_swap_norms(vit):\n"
    "    \"\"\"Put this export's norm slots into timm's own VisionTransformer built with\n"
    "    the same architecture (timm.create_model(..., **TIMM_ARGS)); load the\n"
    "    weights afterwards: vit.load_state_dict(read_safetensors(F)[0]).\"\"\"\n"
    "    for name in SLOTS:\n"
    "        parent, _, leaf = name.rpartition(\".\")\n"
    "        owner = vit.get_submodule(parent) if parent else vit\n"
    "        setattr(owner, leaf, make_norm(name, CONFIG[\"embed_dim\"]))\n"
    "    return vit\n"
    "\n"
    "\n"
    "# ---- generated from the model ----\n";

/* "blocks.3.norm1" -> "blocks_3_norm1" */
static void ident(char *buf, size_t n, const char *slot) {
  snprintf(buf, n, "%s", slot);
  for (char *p = buf; *p; p++)
    if (*p == '.') *p = '_';
}

void nl_export_c_name(char *buf, size_t n, const char *slot) {
  char id[64];
  ident(id, sizeof id, slot);
  snprintf(buf, n, "nl_norm_%s", id);
}

static int has_x(const nl_prog *p) {
  for (int i = 0; i < p->len; i++)
    if (p->nodes[i].op == NL_OP_X) return 1;
  return 0;
}

/* The class of an expression slot: f(x) * weight + bias, constants in c. */
static void py_expr_class(FILE *o, const nl_norm *n) {
  char id[64];
  ident(id, sizeof id, n->name);
  char *f = nl_print(n->prog, NL_PRINT_TORCH_BUF);
  fprintf(o, "\n\nclass Norm_%s(nn.Module):\n", id);
  fprintf(o, "    \"\"\"%s: (%s) * weight + bias\"\"\"\n\n", n->name, n->expr ? n->expr : "");
  fputs("    def __init__(self, dim):\n        super().__init__()\n", o);
  fputs("        self.weight = nn.Parameter(torch.ones(dim))\n", o);
  fputs("        self.bias = nn.Parameter(torch.zeros(dim))\n", o);
  fputs("        # the expression's constants: a float32 buffer, not trained, not saved\n", o);
  fputs("        self.register_buffer(\"c\", torch.tensor([", o);
  int k = 0;
  for (int i = 0; i < n->prog->len; i++)
    if (n->prog->nodes[i].op == NL_OP_CONST)
      fprintf(o, "%s%.9g", k++ ? ", " : "", (double)n->prog->nodes[i].val);
  fputs("], dtype=torch.float32), persistent=False)\n\n", o);
  fputs("    def forward(self, x):\n        c = self.c\n", o);
  if (has_x(n->prog)) fprintf(o, "        return (%s) * self.weight + self.bias\n", f);
  else fprintf(o, "        return (%s).expand_as(x) * self.weight + self.bias\n", f);
  free(f);
}

/* The generated tail of model.py: config, metadata, slot classes, SLOTS. */
static int py_generated(FILE *o, const nl_vit *m, const char *st_path, nl_error *err) {
  const nl_vit_config *c = &m->cfg;
  nl_st_file f;
  if (nl_st_open(&f, st_path, err)) return -1;
  json_t *meta = json_object();
  for (int i = 0; i < f.nmeta; i++)
    json_object_set_new(meta, f.meta[i].key, json_string(f.meta[i].value));
  nl_st_close(&f);
  char *mt = json_dumps(meta, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_ENSURE_ASCII);
  json_decref(meta);
  if (!mt) return nl_fail(err, NL_ENOMEM, "%s: cannot print its metadata", st_path);
  fprintf(o, "CONFIG = {\"img_size\": %d, \"patch_size\": %d, \"in_chans\": %d, "
             "\"num_classes\": %d, \"embed_dim\": %d, \"depth\": %d, \"num_heads\": %d, "
             "\"mlp_hidden\": %d, \"qkv_bias\": %s, \"class_token\": %s, "
             "\"global_pool\": \"%s\", \"layer_scale\": %s, \"eps\": %.9g, \"tokens\": %d,\n"
             "          \"mean\": [",
          c->img_size, c->patch, c->in_chans, c->classes, c->dim, c->depth, c->heads,
          c->mlp_hidden, c->qkv_bias ? "True" : "False", c->class_token ? "True" : "False",
          c->avg_pool ? "avg" : "token", c->layer_scale ? "True" : "False", (double)c->eps,
          c->tokens);
  for (int i = 0; i < c->nmean; i++) fprintf(o, "%s%.9g", i ? ", " : "", (double)c->mean[i]);
  fputs("], \"std\": [", o);
  for (int i = 0; i < c->nmean; i++) fprintf(o, "%s%.9g", i ? ", " : "", (double)c->std[i]);
  fputs("]}\n", o);
  fprintf(o, "# the arguments of timm.create_model(\"vit_base_patch16_224\", ...) (or any vit_*)\n"
             "# for the same architecture, e.g. for timm_swap_norms\n"
             "TIMM_ARGS = dict(img_size=%d, patch_size=%d, in_chans=%d, num_classes=%d, "
             "embed_dim=%d, depth=%d,\n                 num_heads=%d, mlp_ratio=%.9g, "
             "qkv_bias=%s, class_token=%s, global_pool=\"%s\",\n                 "
             "init_values=%s)\n",
          c->img_size, c->patch, c->in_chans, c->classes, c->dim, c->depth, c->heads,
          (double)c->mlp_hidden / c->dim, c->qkv_bias ? "True" : "False",
          c->class_token ? "True" : "False", c->avg_pool ? "avg" : "token",
          c->layer_scale ? "1e-5" : "None");
  fprintf(o, "# __metadata__ of model.safetensors, as normlab wrote it\nMETA = json.loads(r\"\"\"%s\"\"\")\n",
          mt);
  fputs("MODEL_ARGS = json.loads(META[\"model_args\"])\nNORMS_JSON = META[\"norms\"]\n", o);
  free(mt);
  for (int i = 0; i < m->nnorms; i++)
    if (m->norms[i].kind == NL_NORM_EXPR) py_expr_class(o, &m->norms[i]);
  fputs("\n\n# norm slot -> module factory (called with the width)\nSLOTS = {\n", o);
  for (int i = 0; i < m->nnorms; i++) {
    const nl_norm *n = &m->norms[i];
    char id[64];
    ident(id, sizeof id, n->name);
    if (n->kind == NL_NORM_LAYERNORM)
      fprintf(o, "    \"%s\": functools.partial(nn.LayerNorm, eps=%.9g),\n", n->name, (double)c->eps);
    else if (n->kind == NL_NORM_DYT)
      fprintf(o, "    \"%s\": functools.partial(DyT, alpha=%.9g),\n", n->name, (double)*n->alpha);
    else
      fprintf(o, "    \"%s\": Norm_%s,\n", n->name, id);
  }
  fputs("}\n", o);
  return 0;
}

static const char readme_torch[] =
    "# normlab export (PyTorch)\n\n"
    "Files:\n"
    "- `model.py`: self-contained (torch only) timm-layout VisionTransformer whose norm\n"
    "  slots are generated code (`SLOTS`): `nn.LayerNorm`, `DyT` (tanh(alpha x) w + b,\n"
    "  alpha a learnable parameter `<slot>.alpha`) or one class per expression slot\n"
    "  computing f(x) * weight + bias. An expression's constants are a float32 buffer `c`\n"
    "  registered with persistent=False: not trained (as in `normlab train`) and not in\n"
    "  the state dict, so the checkpoint keeps timm's tensor names.\n"
    "- `model.safetensors`: the weights in timm's names (F32), the config, mean/std and\n"
    "  the norm kinds in `__metadata__`; normlab loads it as it is.\n\n"
    "Use:\n\n"
    "    import sys; sys.path.insert(0, DIR)\n"
    "    import model\n"
    "    net = model.load(DIR)          # eval mode; inputs normalised with CONFIG mean/std\n"
    "    logits = net(images)           # images [N, in_chans, img_size, img_size]\n"
    "    model.save(net, \"ckpt.safetensors\")   # back to normlab: normlab eval --model ckpt.safetensors\n\n"
    "Into timm's own VisionTransformer (same tensor names; only the norm modules differ):\n\n"
    "    import timm, model\n"
    "    vit = timm.create_model(\"vit_base_patch16_224\", pretrained=False, **model.TIMM_ARGS)\n"
    "    model.timm_swap_norms(vit)     # replaces blocks.N.norm1/norm2 and norm (or fc_norm)\n"
    "    vit.load_state_dict(model.read_safetensors(DIR + \"/model.safetensors\")[0])\n\n"
    "ONNX: `normlab export --to onnx` runs scripts/export-onnx on this module\n"
    "(torch.onnx.export, then onnx.checker). Re-alignment with DDP: scripts/realign-ddp.\n";

static int write_text(const char *dir, const char *name, const char *text, nl_error *err) {
  char *p = nl_path_join(dir, name);
  int rc = nl_write_file_atomic(p, text, strlen(text), err);
  free(p);
  return rc;
}

int nl_export_pytorch_into(const nl_vit *m, const char *tmp, nl_error *err) {
  /* timm's Attention needs num_heads heads of dim / num_heads in every block */
  for (int l = 0; l < m->cfg.depth; l++)
    if (nl_vit_heads(&m->cfg, l) != m->cfg.heads)
      return nl_fail(err, NL_EINPUT, "export: blocks.%d has %d of %d attention heads (a "
                     "head-pruned model); timm's layout needs every block's %d heads of "
                     "dimension %d (dim = heads x head_dim)", l, nl_vit_heads(&m->cfg, l),
                     m->cfg.heads, m->cfg.heads, nl_vit_head_dim(&m->cfg));
  char *st = nl_path_join(tmp, "model.safetensors");
  char *py = nl_path_join(tmp, "model.py");
  int rc = nl_vit_save(m, st, err);
  nl_atomic_file af;
  if (!rc) rc = nl_atomic_open(&af, py, err);
  if (!rc) {
    fprintf(af.fp, "\"\"\"normlab export: a timm-layout VisionTransformer (%d x %d x %d, "
                   "patch %d, dim %d, depth %d, heads %d)\nwith generated norm slots. "
                   "Generated by normlab export; see README.md.\"\"\"\n",
            m->cfg.img_size, m->cfg.img_size, m->cfg.in_chans, m->cfg.patch, m->cfg.dim,
            m->cfg.depth, m->cfg.heads);
    fputs(py_static, af.fp);
    if (py_generated(af.fp, m, st, err)) {
      nl_atomic_abort(&af);
      rc = -1;
    } else {
      rc = nl_atomic_commit(&af, err);
    }
  }
  if (!rc) rc = write_text(tmp, "README.md", readme_torch, err);
  free(st);
  free(py);
  return rc;
}

int nl_export_pytorch(const nl_vit *m, const char *dir, nl_error *err) {
  char *tmp = nl_export_tmpdir(dir, err);
  if (!tmp) return -1;
  int rc = nl_export_pytorch_into(m, tmp, err);
  if (!rc) rc = nl_export_publish(tmp, dir, err);
  if (rc) nl_export_discard(tmp);
  free(tmp);
  return rc;
}

/* ---- C ---- */

/* normlab's element-wise functions (base/vmath.h) as the C file spells
 * them: plain float code without libm, so loops over them vectorise. */
static const char c_prelude[] =
    "#include <math.h> /* sqrtf, for LayerNorm slots */\n"
    "#include <stdint.h>\n"
    "#include <string.h>\n\n"
    "#include \"norms.h\"\n\n"
    "/* Element-wise functions as normlab computes them (branch-free float code,\n"
    " * so the loops below vectorise). */\n"
    "static inline float nlx_bits2f(int32_t i) { float f; memcpy(&f, &i, sizeof f); return f; }\n"
    "static inline float nlx_expf(float x) {\n"
    "  float xc = x < 89.0f ? x : 89.0f;\n"
    "  xc = xc > -104.0f ? xc : -104.0f;\n"
    "  float nf = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;\n"
    "  float r = (xc - nf * 0.693359375f) + nf * 2.12194440e-4f;\n"
    "  float p = 1.0f / 5040.0f;\n"
    "  p = p * r + 1.0f / 720.0f;\n"
    "  p = p * r + 1.0f / 120.0f;\n"
    "  p = p * r + 1.0f / 24.0f;\n"
    "  p = p * r + 1.0f / 6.0f;\n"
    "  p = p * r + 0.5f;\n"
    "  p = p * r + 1.0f;\n"
    "  p = p * r + 1.0f;\n"
    "  int32_t n = (int32_t)nf;\n"
    "  int32_t n1 = n >> 1, n2 = n - n1;\n"
    "  float res = (p * nlx_bits2f((n1 + 127) << 23)) * nlx_bits2f((n2 + 127) << 23);\n"
    "  return x != x ? x : res;\n"
    "}\n"
    "static inline float nlx_tanhf(float x) {\n"
    "  float z = x * x;\n"
    "  float q = -929569.0f / 638512875.0f;\n"
    "  q = q * z + 21844.0f / 6081075.0f;\n"
    "  q = q * z - 1382.0f / 155925.0f;\n"
    "  q = q * z + 62.0f / 2835.0f;\n"
    "  q = q * z - 17.0f / 315.0f;\n"
    "  q = q * z + 2.0f / 15.0f;\n"
    "  q = q * z - 1.0f / 3.0f;\n"
    "  float small = x + x * z * q;\n"
    "  float ax = x < 0.0f ? -x : x;\n"
    "  float e = nlx_expf(-2.0f * ax);\n"
    "  float big = (1.0f - e) / (1.0f + e);\n"
    "  big = x < 0.0f ? -big : big;\n"
    "  return ax < 0.55f ? small : big;\n"
    "}\n"
    "static inline float nlx_fabsf(float a) { return a < 0.0f ? -a : a; }\n"
    "/* fmaxf/fminf as clip uses them: a NaN operand a passes through */\n"
    "static inline float nlx_fmaxf(float a, float lo) { return a < lo ? lo : a; }\n"
    "static inline float nlx_fminf(float a, float hi) { return a > hi ? hi : a; }\n"
    "static inline float nlx_powi(float a, int n) {\n"
    "  if (n <= 0) return 1.0f;\n"
    "  float r = a;\n"
    "  for (int k = 1; k < n; k++) r = r * a;\n"
    "  return r;\n"
    "}\n"
    "/* sums in 16 lanes, added in order at the end (as normlab's LayerNorm) */\n"
    "static inline float nlx_row_sum(const float *restrict x, float m, int sq, int d) {\n"
    "  float acc[16] = {0};\n"
    "  int j = 0;\n"
    "  for (; j + 16 <= d; j += 16)\n"
    "    for (int k = 0; k < 16; k++) {\n"
    "      float c = x[j + k] - m;\n"
    "      acc[k] += sq ? c * c : x[j + k];\n"
    "    }\n"
    "  for (int k = 0; j < d; j++, k++) {\n"
    "    float c = x[j] - m;\n"
    "    acc[k] += sq ? c * c : x[j];\n"
    "  }\n"
    "  float s = 0.0f;\n"
    "  for (int k = 0; k < 16; k++) s += acc[k];\n"
    "  return s;\n"
    "}\n";

/* The C printer's libm names as the prelude spells them. */
static char *c_rename(const char *s) {
  static const char *const from[] = {"tanhf", "expf", "fabsf", "fmaxf", "fminf", "powf", NULL};
  static const char *const to[] = {"nlx_tanhf", "nlx_expf", "nlx_fabsf", "nlx_fmaxf",
                                   "nlx_fminf", "nlx_powi", NULL};
  size_t cap = strlen(s) * 2 + 64, n = 0;
  char *o = nl_xmalloc(cap);
  for (const char *p = s; *p;) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_') {
      const char *q = p;
      while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || *q == '_' ||
             (*q >= '0' && *q <= '9'))
        q++;
      const char *rep = NULL;
      for (int i = 0; from[i]; i++)
        if ((size_t)(q - p) == strlen(from[i]) && !strncmp(p, from[i], (size_t)(q - p))) rep = to[i];
      size_t l = rep ? strlen(rep) : (size_t)(q - p);
      if (n + l + 1 > cap) o = nl_xrealloc(o, cap = (n + l + 1) * 2);
      memcpy(o + n, rep ? rep : p, l);
      n += l;
      p = q;
    } else {
      if (n + 2 > cap) o = nl_xrealloc(o, cap *= 2);
      o[n++] = *p++;
    }
  }
  o[n] = '\0';
  return o;
}

static void c_slot(FILE *o, const nl_vit *m, const nl_norm *n) {
  char fn[80];
  nl_export_c_name(fn, sizeof fn, n->name);
  fprintf(o, "\nvoid %s(float *restrict y, const float *restrict in, const float *restrict w,\n"
             "    %*s const float *restrict b, int d) {\n",
          fn, (int)strlen(fn), "");
  if (n->kind == NL_NORM_LAYERNORM) {
    fprintf(o, "  /* LayerNorm, eps %.9g */\n"
               "  const float mean = nlx_row_sum(in, 0.0f, 0, d) / (float)d;\n"
               "  const float var = nlx_row_sum(in, mean, 1, d) / (float)d;\n"
               "  const float rs = 1.0f / sqrtf(var + %.9gf);\n"
               "  for (int i = 0; i < d; i++) y[i] = (in[i] - mean) * rs * w[i] + b[i];\n}\n",
            (double)m->cfg.eps, (double)m->cfg.eps);
    return;
  }
  if (n->kind == NL_NORM_DYT) {
    char a[40];
    snprintf(a, sizeof a, "%.9g", (double)*n->alpha);
    if (!strpbrk(a, ".eEn")) strcat(a, ".0");
    fprintf(o, "  /* DyT: tanh(%s x) */\n"
               "  for (int i = 0; i < d; i++) y[i] = nlx_tanhf(%sf * in[i]) * w[i] + b[i];\n}\n",
            a, a);
    return;
  }
  char *e = nl_print(n->prog, NL_PRINT_C);
  char *r = c_rename(e);
  fprintf(o, "  /* f(x) = %s */\n", n->expr ? n->expr : "");
  /* the printed expression reads x: a scalar per element */
  fprintf(o, "  for (int i = 0; i < d; i++) {\n    const float x = in[i];\n"
             "    y[i] = (%s) * w[i] + b[i];\n  }\n}\n", r);
  free(e);
  free(r);
}

int nl_export_c(const nl_vit *m, const char *dir, nl_error *err) {
  char *tmp = nl_export_tmpdir(dir, err);
  if (!tmp) return -1;
  char *hp = nl_path_join(tmp, "norms.h"), *cp = nl_path_join(tmp, "norms.c");
  nl_atomic_file h, c;
  int rc = nl_atomic_open(&h, hp, err);
  if (!rc) {
    fprintf(h.fp,
            "/* The norm slots of a normlab model: y = f(x) * w + b over one token of d\n"
            " * floats x = in[0..d-1] (LayerNorm slots: the LayerNorm). w, b are the slot's affine\n"
            " * (\"<slot>.weight\", \"<slot>.bias\" in model.safetensors). Generated by\n"
            " * normlab export --to c; dependency-free C99 (libm: sqrtf). in and y must not\n"
            " * overlap. The loops vectorise with clang -O2 and with gcc -O3\n"
            " * -fno-trapping-math (so that the selects in tanh and exp become blends;\n"
            " * NaNs still propagate). */\n"
            "#ifndef NL_EXPORT_NORMS_H\n#define NL_EXPORT_NORMS_H\n\n"
            "#define NL_NORM_DIM %d\n#define NL_NORM_SLOTS %d\n\n",
            m->cfg.dim, m->nnorms);
    for (int i = 0; i < m->nnorms; i++) {
      char fn[80];
      nl_export_c_name(fn, sizeof fn, m->norms[i].name);
      fprintf(h.fp, "/* %s: %s */\nvoid %s(float *restrict y, const float *restrict in, "
                    "const float *restrict w,\n    %*s const float *restrict b, int d);\n",
              m->norms[i].name,
              m->norms[i].kind == NL_NORM_EXPR ? m->norms[i].expr : nl_norm_kind_name(m->norms[i].kind),
              fn, (int)strlen(fn), "");
    }
    fputs("\n#endif\n", h.fp);
    rc = nl_atomic_commit(&h, err);
  }
  if (!rc) rc = nl_atomic_open(&c, cp, err);
  if (!rc) {
    fputs("/* Generated by normlab export --to c: see norms.h. */\n", c.fp);
    fputs(c_prelude, c.fp);
    for (int i = 0; i < m->nnorms; i++) c_slot(c.fp, m, &m->norms[i]);
    rc = nl_atomic_commit(&c, err);
  }
  if (!rc) rc = nl_export_publish(tmp, dir, err);
  if (rc) nl_export_discard(tmp);
  free(hp);
  free(cp);
  free(tmp);
  return rc;
}
