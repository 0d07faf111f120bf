#!/usr/bin/python3
"""Checks of normlab export for tests/cli/test_export.sh (needs torch and numpy).

  export_check.py logits DIR REF OUT TOL [WEIGHTS]
      load DIR/model.py, run REF's `inputs` through load(DIR) (or
      load(WEIGHTS)), compare with OUT's `logits` (normlab forward):
      max |diff| <= TOL; prints it
  export_check.py variant SRC OUT
      SRC with average pooling (norm -> fc_norm) and layer scale (ls1.gamma,
      ls2.gamma drawn in [0.5, 1.5]): the timm options the fixtures lack
  export_check.py swap DIR
      timm_swap_norms on a model whose slots are plain nn.LayerNorm (as in
      timm's class), then the weights: logits equal load(DIR)'s
  export_check.py imagefolder FMNIST_DIR OUT N
      OUT/<label>/<i>.png: the first N Fashion-MNIST test images (PIL)
  export_check.py augment REALIGN_DDP
      realign-ddp's batch augmentation against normlab's rule written out
      (train/augment.c: source column (flip ? W-1-x : x) + dx - 2, row
      y + dy - 2, outside: the pad value)
  export_check.py same A B
      the tensors of safetensors files A and B are bitwise the same
  export_check.py falls RUN_JSON
      the mean loss of the last epoch of realign-ddp's train.json is below
      the first's
  export_check.py cnorm DIR TAPS MODEL TOL
      compile DIR/norms.c (cc -O3 -fno-trapping-math -shared, as norms.h advises), apply every slot's function to
      TAPS' ln_in.<slot> with MODEL's <slot>.weight/.bias, compare with
      TAPS' ln_out.<slot>: |diff| <= TOL * max(|ref|, 1) everywhere
  export_check.py onnx DIR
      onnx.checker on DIR/model.onnx; with onnxruntime, its logits against
      the PyTorch module's
Safetensors are read here with numpy, independently of the code under test.
"""
import ctypes
import importlib.util
import json
import os
import struct
import subprocess
import sys

import numpy as np


def st_read(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        h = json.loads(f.read(n))
        data = f.read()
    out = {}
    types = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "U8": np.uint8, "I64": np.int64}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=types[v["dtype"]]).reshape(v["shape"])
    return out


def load_module(d):
    spec = importlib.util.spec_from_file_location("exported_model", os.path.join(d, "model.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def logits(d, ref, out, tol, weights=None):
    import torch
    torch.set_num_threads(1)
    mod = load_module(d)
    net = mod.load(weights or d)
    x = torch.from_numpy(st_read(ref)["inputs"].astype(np.float32).copy())
    with torch.no_grad():
        y = net(x).numpy()
    want = st_read(out)["logits"]
    diff = float(np.max(np.abs(y - want)))
    print(f"max |logits - normlab| = {diff:.3g} (largest logit {float(np.max(np.abs(want))):.3g})")
    return 0 if diff <= tol and np.all(np.isfinite(y)) else 1


def cnorm(d, taps, model, tol):
    so = os.path.join(d, "libnorms.so")
    subprocess.run(["cc", "-std=c99", "-O3", "-fno-trapping-math", "-Wall", "-Wextra", "-Werror",
                    "-pedantic", "-shared", "-fPIC", "-o", so,
                    os.path.join(d, "norms.c"), "-lm"], check=True)
    lib = ctypes.CDLL(so)
    t = st_read(taps)
    w = st_read(model)
    worst, n = 0.0, 0
    fp = ctypes.POINTER(ctypes.c_float)
    for key in sorted(t):
        if not key.startswith("ln_in."):
            continue
        slot = key[len("ln_in."):]
        x = np.ascontiguousarray(t[key], dtype=np.float32)
        want = t["ln_out." + slot]
        wt = np.ascontiguousarray(w[slot + ".weight"], dtype=np.float32)
        bs = np.ascontiguousarray(w[slot + ".bias"], dtype=np.float32)
        dim = wt.shape[0]
        rows = x.reshape(-1, dim)
        y = np.zeros_like(rows)
        fn = getattr(lib, "nl_norm_" + slot.replace(".", "_"))
        for r in range(rows.shape[0]):
            fn(y[r].ctypes.data_as(fp), rows[r].ctypes.data_as(fp), wt.ctypes.data_as(fp),
               bs.ctypes.data_as(fp), ctypes.c_int(dim))
        ref = want.reshape(-1, dim)
        rel = float(np.max(np.abs(y - ref) / np.maximum(np.abs(ref), 1.0)))
        worst = max(worst, rel)
        n += 1
    print(f"{n} slots, worst relative difference {worst:.3g}")
    return 0 if n > 0 and worst <= tol else 1


def onnx_check(d):
    import onnx
    m = onnx.load(os.path.join(d, "model.onnx"))
    onnx.checker.check_model(m)
    print(f"onnx.checker: ok ({len(m.graph.node)} nodes, opset {m.opset_import[0].version})")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("onnxruntime absent: checked and loaded only")
        return 0
    import torch
    mod = load_module(d)
    net = mod.load(d)
    c = mod.CONFIG
    x = torch.randn(2, c["in_chans"], c["img_size"], c["img_size"])
    sess = onnxruntime.InferenceSession(os.path.join(d, "model.onnx"))
    y = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = net(x).numpy()
    diff = float(np.max(np.abs(y - want)))
    print(f"onnxruntime vs torch: max |diff| {diff:.3g}")
    return 0 if diff <= 1e-4 else 1


def variant(src, out):
    with open(src, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        h = json.loads(f.read(n))
    meta = h["__metadata__"]
    ts = st_read(src)
    rng = np.random.default_rng(1)
    d = ts["cls_token"].shape[-1]
    res = {}
    for k in h:
        if k == "__metadata__":
            continue
        v = ts[k].astype(np.float32)
        res["fc_" + k if k.startswith("norm.") else k] = v
        for a, g in (("attn.proj.bias", "ls1.gamma"), ("mlp.fc2.bias", "ls2.gamma")):
            if k.endswith(a):
                res[k.replace(a, g)] = rng.uniform(0.5, 1.5, d).astype(np.float32)
    ma = json.loads(meta["model_args"])
    ma["global_pool"] = "avg"
    ma["init_values"] = 1e-5
    meta["model_args"] = json.dumps(ma)
    hdr, blobs, off = {"__metadata__": meta}, [], 0
    for k, v in res.items():
        b = np.ascontiguousarray(v).tobytes()
        hdr[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    hb = json.dumps(hdr).encode()
    hb += b" " * (-len(hb) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
    return 0


def swap(d):
    import torch
    from torch import nn
    mod = load_module(d)
    want_net = mod.load(d)
    net = mod.build()
    eps = mod.CONFIG["eps"]
    for name in mod.SLOTS:  # timm's own modules in the slots
        parent, _, leaf = name.rpartition(".")
        owner = net.get_submodule(parent) if parent else net
        setattr(owner, leaf, nn.LayerNorm(mod.CONFIG["embed_dim"], eps=eps))
    mod.timm_swap_norms(net)
    net.load_state_dict(mod.read_safetensors(os.path.join(d, "model.safetensors"))[0])
    net.eval()
    c = mod.CONFIG
    x = torch.randn(3, c["in_chans"], c["img_size"], c["img_size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((net(x) - want_net(x)).abs().max())
    kinds = sorted({type(m).__name__ for n, m in net.named_modules() if n in mod.SLOTS})
    print(f"after timm_swap_norms: slot modules {kinds}, max |logits diff| {diff:.3g}")
    return 0 if diff == 0.0 else 1


def imagefolder(src, out, n):
    import gzip
    from PIL import Image
    with gzip.open(os.path.join(src, "t10k-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(src, "t10k-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    for i in range(n):
        d = os.path.join(out, f"class{y[i]}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(x[i]).save(os.path.join(d, f"{i:05d}.png"))
    return 0


def augment(script):
    import importlib.machinery
    import torch
    loader = importlib.machinery.SourceFileLoader("realign_ddp", script)
    spec = importlib.util.spec_from_loader("realign_ddp", loader)
    ra = importlib.util.module_from_spec(spec)
    loader.exec_module(ra)
    x = torch.randn(16, 2, 5, 7)
    out = ra.pad_crop_flip(x, -9.0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the same draws, in the script's order
    B, C, H, W = x.shape
    dy = torch.randint(0, 5, (B, 1), generator=g)
    dx = torch.randint(0, 5, (B, 1), generator=g)
    fl = torch.rand(B, 1, generator=g) < 0.5
    ref = torch.full_like(x, -9.0)
    for b in range(B):
        for y in range(H):
            for c in range(W):
                sy = y + int(dy[b, 0]) - 2
                sx = (W - 1 - c if fl[b, 0] else c) + int(dx[b, 0]) - 2
                if 0 <= sy < H and 0 <= sx < W:
                    ref[b, :, y, c] = x[b, :, sy, sx]
    diff = float((out - ref).abs().max())
    print(f"{B} images, {int(fl.sum())} flipped: max |diff| {diff}")
    return 0 if diff == 0.0 and 0 < int(fl.sum()) < B else 1


def main(a):
    if a[0] == "logits":
        return logits(a[1], a[2], a[3], float(a[4]), a[5] if len(a) > 5 else None)
    if a[0] == "variant":
        return variant(a[1], a[2])
    if a[0] == "swap":
        return swap(a[1])
    if a[0] == "imagefolder":
        return imagefolder(a[1], a[2], int(a[3]))
    if a[0] == "augment":
        return augment(a[1])
    if a[0] == "same":
        x, y = st_read(a[1]), st_read(a[2])
        diff = [k for k in x if k not in y or not np.array_equal(x[k], y[k])]
        print(f"{len(x)} tensors, {len(diff)} differ {diff[:5]}")
        return 0 if not diff and len(x) == len(y) and len(x) > 0 else 1
    if a[0] == "falls":
        ep = json.load(open(a[1]))["epochs"]
        first, last = ep[1]["loss"], ep[-1]["loss"]
        print(f"loss {first:.4f} in epoch 1, {last:.4f} in epoch {len(ep) - 1}")
        return 0 if len(ep) > 2 and last < first else 1
    if a[0] == "cnorm":
        return cnorm(a[1], a[2], a[3], float(a[4]))
    if a[0] == "onnx":
        return onnx_check(a[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
