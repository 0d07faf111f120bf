"""Outside reference for attention-head pruning (tests/cli/test_prune.sh).

usage: headprune_ref.py MODEL REF PRUNED_LOGITS DROP NPROF

Builds timm's VisionTransformer forward in PyTorch (float64) from MODEL's
weights (timm names), runs it on the first NPROF of REF's normalised test
images and records every block's attention output o (the input of
attn.proj). Scores head h of each block by sum_j Var[o_j] ||W_proj[:, j]||^2
over its head_dim channels, removes the DROP lowest heads of every block,
and runs all of REF's images through the model with the removed heads'
outputs replaced by their means over the profiled rows (what bias
compensation folds into proj.bias). Prints the removed heads per block as
"l:h,..;" and the largest difference between those logits and
PRUNED_LOGITS's "logits" (normlab forward of the pruned checkpoint).
"""
import json
import struct
import sys

import numpy as np
import torch


def load(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    kinds = {'F32': '<f4', 'F16': '<f2', 'I32': '<i4', 'U8': 'u1'}
    t = {}
    for k, v in h.items():
        if k == '__metadata__' or v['dtype'] not in kinds:
            continue
        a, e = v['data_offsets']
        arr = np.frombuffer(b[8 + n + a:8 + n + e], dtype=kinds[v['dtype']]).reshape(v['shape'])
        t[k] = torch.from_numpy(arr.astype(np.float64))
    return t, h.get('__metadata__', {})


def main():
    model, ref, pruned, drop, nprof = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    w, meta = load(model)
    r, _ = load(ref)
    out, _ = load(pruned)
    ma = json.loads(meta['model_args'])
    D, NH, depth, P = ma['embed_dim'], ma['num_heads'], ma['depth'], ma['patch_size']
    hd = D // NH
    ln = lambda x, p: torch.nn.functional.layer_norm(x, (D,), w[p + '.weight'], w[p + '.bias'], 1e-6)

    def forward(x, record=None, replace=None):
        B = x.shape[0]
        y = torch.nn.functional.conv2d(x, w['patch_embed.proj.weight'], w['patch_embed.proj.bias'], stride=P)
        y = y.flatten(2).transpose(1, 2)
        y = torch.cat([w['cls_token'].expand(B, -1, -1), y], 1) + w['pos_embed']
        T = y.shape[1]
        for l in range(depth):
            p = 'blocks.%d.' % l
            h = ln(y, p + 'norm1')
            qkv = (h @ w[p + 'attn.qkv.weight'].T + w[p + 'attn.qkv.bias']).reshape(B, T, 3, NH, hd)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-2, -1) / hd ** 0.5, -1)
            o = (a @ v).transpose(1, 2).reshape(B, T, D)
            if record is not None:
                record.append(o.reshape(-1, D).clone())
            if replace is not None:
                for j, mu in replace[l]:
                    o[:, :, j] = mu
            y = y + o @ w[p + 'attn.proj.weight'].T + w[p + 'attn.proj.bias']
            h = ln(y, p + 'norm2')
            h = torch.nn.functional.gelu(h @ w[p + 'mlp.fc1.weight'].T + w[p + 'mlp.fc1.bias'])
            y = y + h @ w[p + 'mlp.fc2.weight'].T + w[p + 'mlp.fc2.bias']
        y = ln(y, 'norm')
        return y[:, 0] @ w['head.weight'].T + w['head.bias']

    x = r['inputs']
    outs = []
    with torch.no_grad():
        forward(x[:nprof], record=outs)
        replace, removed = [], []
        for l, o in enumerate(outs):
            mean, var = o.mean(0), o.var(0, unbiased=False)
            wn = (w['blocks.%d.attn.proj.weight' % l] ** 2).sum(0)
            score = np.array([float((var[h * hd:(h + 1) * hd] * wn[h * hd:(h + 1) * hd]).sum()) for h in range(NH)])
            gone = sorted(np.argsort(score, kind='stable')[:drop].tolist())
            removed.append(gone)
            replace.append([(j, float(mean[j])) for h in gone for j in range(h * hd, (h + 1) * hd)])
        logits = forward(x, replace=replace)
    d = float((logits - out['logits']).abs().max())
    print(';'.join('%d:%s' % (l, ','.join(map(str, g))) for l, g in enumerate(removed)), '%.3g' % d)


main()
