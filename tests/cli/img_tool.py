#!/usr/bin/python3
"""Image fixtures and torchvision references for tests/cli/test_data.sh.

  fmnist-folder OUT N      the first N Fashion-MNIST test images as PNG
                           (lossless) in OUT/<label>/<index>.png
  jpegs OUT                JPEGs (and a few PNGs) of assorted sizes, aspect
                           ratios and modes in OUT/{a,b,c}/
  check-eval DIR DUMP S CROP INTERP
                           torchvision's PIL pipeline (ImageFolder loader,
                           Resize(floor(S/CROP)), CenterCrop(S)) against the
                           images of `normlab bench data --dump`
  check-train DIR DUMP S INTERP
                           the dump's crop boxes: inside the image, area and
                           ratio in RandomResizedCrop's ranges or its fallback
                           (torchvision's get_params on the same image), and
                           the pixels against F.resized_crop + hflip
  cifar OUT N              CIFAR-10 style batches of N random records
Prints figures; exits 1 when a check fails.
"""
import gzip
import math
import os
import random
import struct
import sys

import numpy as np
from PIL import Image

FMNIST = os.environ.get("NORMLAB_FMNIST_DIR", "/usr/share/datasets/fashion-mnist")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        import json
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    dt = {"U8": np.uint8, "I32": np.int32, "F32": np.float32}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=dt[v["dtype"]]).reshape(v["shape"])
    return out


def fmnist_folder(out, n):
    with gzip.open(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")) as f:
        img = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        lab = np.frombuffer(f.read(), np.uint8, offset=8)
    for c in range(10):
        os.makedirs(os.path.join(out, str(c)), exist_ok=True)
    for i in range(n):
        Image.fromarray(img[i], "L").save(os.path.join(out, str(lab[i]), "%05d.png" % i))


def picture(w, h, seed):
    """Texture with edges, gradients and noise: resampling errors show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / (3 + seed % 5)) * np.cos(y / 7.0)
    g = 255 * x / max(w - 1, 1)
    b = np.where(((x // 9) + (y // 9)) % 2 == 0, 230, 20) + 0.0
    a = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


SIZES = [(500, 375), (375, 500), (224, 224), (640, 427), (300, 100), (97, 333), (1000, 120),
         (33, 47), (256, 257), (800, 600), (120, 1000), (231, 230), (1200, 20), (24, 900)]


def jpegs(out):
    for d in "abc":
        os.makedirs(os.path.join(out, d), exist_ok=True)
    for k, (w, h) in enumerate(SIZES):
        im = Image.fromarray(picture(w, h, k))
        im.save(os.path.join(out, "abc"[k % 3], "img%02d.jpg" % k), quality=90)
    # other modes: grey JPEG, RGBA PNG, palette PNG, grey PNG; an upper-case suffix
    Image.fromarray(picture(320, 240, 20)).convert("L").save(os.path.join(out, "a", "grey.JPEG"), quality=85)
    rgba = Image.fromarray(picture(211, 150, 21)).convert("RGBA")
    rgba.putalpha(Image.fromarray((np.arange(211 * 150) % 256).astype(np.uint8).reshape(150, 211)))
    rgba.save(os.path.join(out, "b", "rgba.png"))
    Image.fromarray(picture(180, 260, 22)).convert("P", palette=Image.ADAPTIVE).save(os.path.join(out, "c", "pal.png"))
    Image.fromarray(picture(150, 90, 23)).convert("L").save(os.path.join(out, "c", "grey.png"))
    with open(os.path.join(out, "a", "notes.txt"), "w") as f:
        f.write("not an image: ImageFolder skips it\n")


INTERP = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def tv_interp(name):
    from torchvision.transforms import InterpolationMode
    return {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}[name]


def check_eval(folder, dump, size, crop, interp):
    from torchvision import datasets, transforms
    t = transforms.Compose([transforms.Resize(int(math.floor(size / crop)), interpolation=tv_interp(interp)),
                            transforms.CenterCrop(size)])
    ds = datasets.ImageFolder(folder, transform=t)
    d = read_safetensors(dump)
    imgs, labs = d["images"], d["labels"]
    if len(ds) != len(imgs):
        print("count: torchvision %d, normlab %d" % (len(ds), len(imgs)))
        return 1
    worst = 0.0
    bad = 0
    total = 0.0
    for k, (im, y) in enumerate(ds):
        ref = np.asarray(im, dtype=np.float64).transpose(2, 0, 1)
        got = imgs[k].astype(np.float64)
        if ref.shape != got.shape or y != labs[k]:
            print("image %d (%s): shape %s label %d, normlab %s label %d" % (k, ds.samples[k][0], ref.shape, y, got.shape, labs[k]))
            bad += 1
            continue
        m = np.abs(ref - got).mean()
        total += m
        worst = max(worst, m)
    mean = total / len(ds)
    print("images %d, mean |diff| %.4f (per image worst %.4f) in 8-bit steps" % (len(ds), mean, worst))
    return 1 if bad or worst > 2.0 else 0


def check_train(folder, dump, size, interp):
    import torch
    from torchvision import datasets, transforms
    import torchvision.transforms.functional as F
    ds = datasets.ImageFolder(folder)
    d = read_safetensors(dump)
    imgs, boxes = d["images"], d["boxes"]
    if len(ds) != len(imgs):
        print("count: torchvision %d, normlab %d" % (len(ds), len(imgs)))
        return 1
    bad = 0
    worst = 0.0
    fallbacks = 0
    for k, (im, _) in enumerate(ds):
        W, H = im.size
        i, j, h, w, flip = (int(v) for v in boxes[k])
        if not (0 <= i and 0 <= j and 0 < h and 0 < w and i + h <= H and j + w <= W):
            print("image %d: box %s outside %dx%d" % (k, boxes[k], W, H))
            bad += 1
            continue
        frac, ratio = h * w / (H * W), w / h
        fb = transforms.RandomResizedCrop.get_params(im, [1e-9, 1e-9], [3 / 4, 4 / 3])
        # a drawn box: area and ratio in range (up to the rounding of w and h); else the fallback
        drawn = 0.08 * 0.9 <= frac <= 1.0 and 0.75 * 0.9 <= ratio <= 4 / 3 * 1.1 and (h, w) != (H, W)
        if not drawn:
            fallbacks += 1
            if (i, j, h, w) != tuple(fb) and (h, w) != (H, W):
                print("image %d: fallback box %s, torchvision %s" % (k, (i, j, h, w), fb))
                bad += 1
                continue
        ref = F.resized_crop(im, i, j, h, w, [size, size], interpolation=tv_interp(interp))
        if flip:
            ref = F.hflip(ref)
        ref = np.asarray(ref, dtype=np.float64).transpose(2, 0, 1)
        m = np.abs(ref - imgs[k].astype(np.float64)).mean()
        worst = max(worst, m)
    print("images %d, %d fallback boxes, worst mean |diff| %.4f in 8-bit steps" % (len(ds), fallbacks, worst))
    return 1 if bad or worst > 2.0 else 0


def check_cifar(batch, dump, size, crop, interp):
    """The records of a binary batch (label byte, R, G, B planes of 32x32)
    through torchvision's eval transform, against the dump."""
    from torchvision import transforms
    t = transforms.Compose([transforms.Resize(int(math.floor(size / crop)), interpolation=tv_interp(interp)),
                            transforms.CenterCrop(size)])
    rec = np.fromfile(batch, np.uint8).reshape(-1, 3073)
    d = read_safetensors(dump)
    if len(rec) != len(d["images"]):
        print("count: batch %d, normlab %d" % (len(rec), len(d["images"])))
        return 1
    worst = 0.0
    for k in range(len(rec)):
        im = Image.fromarray(rec[k, 1:].reshape(3, 32, 32).transpose(1, 2, 0), "RGB")
        ref = np.asarray(t(im), dtype=np.float64).transpose(2, 0, 1)
        if rec[k, 0] != d["labels"][k]:
            print("record %d: label %d, normlab %d" % (k, rec[k, 0], d["labels"][k]))
            return 1
        worst = max(worst, np.abs(ref - d["images"][k]).mean())
    print("records %d, worst mean |diff| %.4f in 8-bit steps" % (len(rec), worst))
    return 1 if worst > 2.0 else 0


def cifar(out, n):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in ["data_batch_%d.bin" % b for b in range(1, 6)] + ["test_batch.bin"]:
        rec = np.zeros((n, 3073), np.uint8)
        rec[:, 0] = rng.integers(0, 10, n)
        rec[:, 1:] = rng.integers(0, 256, (n, 3072))
        rec.tofile(os.path.join(out, name))


def main(argv):
    cmd = argv[1]
    if cmd == "fmnist-folder":
        fmnist_folder(argv[2], int(argv[3]))
    elif cmd == "jpegs":
        jpegs(argv[2])
    elif cmd == "check-eval":
        return check_eval(argv[2], argv[3], int(argv[4]), float(argv[5]), argv[6])
    elif cmd == "check-train":
        return check_train(argv[2], argv[3], int(argv[4]), argv[5])
    elif cmd == "check-cifar":
        return check_cifar(argv[2], argv[3], int(argv[4]), float(argv[5]), argv[6])
    elif cmd == "cifar":
        cifar(argv[2], int(argv[3]))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
