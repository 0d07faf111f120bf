#!/usr/bin/env python3
"""Write the first N Fashion-MNIST test images, normalised as the timm
fixtures are ((pixel / 255 - 0.2860) / 0.3530), to a safetensors file:
'inputs' F32 [N, 1, 28, 28] and 'labels' I32 [N] (no numpy).

  fmnist_inputs.py N OUT [DIR]   DIR: the idx files (Debian's dataset-fashion-mnist)
"""
import gzip, json, os, struct, sys

n, out = int(sys.argv[1]), sys.argv[2]
d = sys.argv[3] if len(sys.argv) > 3 else os.environ.get(
    'NORMLAB_FMNIST_DIR', '/usr/share/datasets/fashion-mnist')


def idx(name):
    p = os.path.join(d, name)
    return gzip.open(p + '.gz').read() if os.path.exists(p + '.gz') else open(p, 'rb').read()


img, lab = idx('t10k-images-idx3-ubyte'), idx('t10k-labels-idx1-ubyte')
assert struct.unpack('>I', img[:4])[0] == 2051 and struct.unpack('>I', lab[:4])[0] == 2049
n = min(n, struct.unpack('>I', img[4:8])[0])
px = img[16:16 + n * 784]
x = struct.pack('<%df' % (n * 784), *[(p / 255.0 - 0.2860) / 0.3530 for p in px])
y = struct.pack('<%di' % n, *lab[8:8 + n])
h = {'inputs': {'dtype': 'F32', 'shape': [n, 1, 28, 28], 'data_offsets': [0, len(x)]},
     'labels': {'dtype': 'I32', 'shape': [n], 'data_offsets': [len(x), len(x) + len(y)]}}
hb = json.dumps(h).encode()
hb += b' ' * (-len(hb) % 8)
with open(out + '.tmp', 'wb') as f:
    f.write(struct.pack('<Q', len(hb)) + hb + x + y)
os.replace(out + '.tmp', out)
