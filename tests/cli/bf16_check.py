#!/usr/bin/env python3
"""Mixed-precision training step of normlab against PyTorch's autocast.

bf16_check.py EXPORT FP32_DUMP BF16_DUMP [LOSS_TOL GRAD_TOL]

EXPORT is `normlab export --to pytorch` of the model; the dumps are
`normlab train --dump-grads` of one step (--drop-path 0) on the same batch
with --precision fp32 and bf16. The exported module computes the step's
cross-entropy loss and gradients in FP32 and under
torch.autocast("cpu", dtype=torch.bfloat16) on that batch. Checks:
  - normlab's FP32 loss equals PyTorch's FP32 loss (within 1e-4 relative);
  - normlab's BF16 loss is within LOSS_TOL (default 1e-2) relative of
    PyTorch's autocast loss, and of the FP32 loss;
  - normlab's BF16 gradients differ from PyTorch's FP32 ones by at most
    GRAD_TOL (default 2) times what autocast's do, per tensor in relative
    L2 norm (autocast rounds more: every Linear's output and the attention
    products too), plus 1e-3.
Prints the figures; exit 0 when all hold, 1 otherwise.
"""
import importlib.util
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F


def read_st(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        h = json.loads(f.read(n))
        data = f.read()
    meta = h.pop("__metadata__", {}) or {}
    dt = {"F32": torch.float32, "I32": torch.int32}
    out = {}
    for k, v in h.items():
        a, b = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(data[a:b]), dtype=dt[v["dtype"]]).reshape(v["shape"])
    return out, json.loads(meta.get("step", "{}")).get("loss")


def load_model(d):
    spec = importlib.util.spec_from_file_location("normlab_export", os.path.join(d, "model.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.load(d, drop_path_rate=0.0).train()


def step(d, x, y, bf16):
    model = load_model(d)
    if bf16:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
    else:
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    return loss.item(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def main(argv):
    if len(argv) not in (3, 5):
        sys.exit(__doc__)
    export, d32, d16 = argv[:3]
    loss_tol = float(argv[3]) if len(argv) == 5 else 1e-2
    grad_tol = float(argv[4]) if len(argv) == 5 else 2.0
    torch.set_num_threads(1)
    t32, nl32 = read_st(d32)
    t16, nl16 = read_st(d16)
    x, y = t32["inputs"], t32["labels"].long()
    ok = True
    if not torch.equal(x, t16["inputs"]):
        print("the two dumps hold different batches")
        return 1
    pt32, g32 = step(export, x, y, False)
    pt16, g16 = step(export, x, y, True)
    print(f"loss: normlab fp32 {nl32:.6f}, bf16 {nl16:.6f}; torch fp32 {pt32:.6f}, "
          f"autocast bf16 {pt16:.6f}")
    if abs(nl32 - pt32) > 1e-4 * abs(pt32):
        print("normlab's FP32 loss differs from PyTorch's")
        ok = False
    for what, a, b in (("autocast", nl16, pt16), ("fp32", nl16, pt32)):
        r = abs(a - b) / abs(b)
        print(f"normlab bf16 loss against torch {what}: relative {r:.3g} (bound {loss_tol:g})")
        ok &= r <= loss_tol
    worst_nl = worst_pt = 0.0
    bad = []
    for name, g in g32.items():
        if g.norm() == 0:
            continue
        e_nl = rel(t16["grad." + name], g)
        e_pt = rel(g16[name], g)
        worst_nl, worst_pt = max(worst_nl, e_nl), max(worst_pt, e_pt)
        if e_nl > grad_tol * e_pt + 1e-3:
            bad.append(f"{name}: normlab bf16 {e_nl:.3g}, autocast {e_pt:.3g}")
    print(f"gradients against torch fp32 (relative L2, worst tensor): normlab bf16 {worst_nl:.3g}, "
          f"autocast bf16 {worst_pt:.3g}")
    for b in bad:
        print("  " + b)
    ok &= not bad
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
