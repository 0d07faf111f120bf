#!/bin/sh
# Data specs: an image folder of Fashion-MNIST PNGs gives exactly the top-1
# of fmnist:test; the eval and training transforms and CIFAR-10 records
# against torchvision's PIL pipeline; hub-style model folders; bad input
# (corrupt or truncated images, empty or missing class folders, CIFAR
# batches of the wrong size, config.json against the shapes) exits 2
# naming the file, and --skip-bad leaves bad images out.
. "$NL_SRCDIR/tests/cli/lib.sh"
IMG=$NL_SRCDIR/tests/cli/img_tool.py
MAKEVIT=$NL_SRCDIR/scripts/make-vit
# an interpreter with numpy, PIL and torchvision
PY=
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy, PIL, torchvision' 2>/dev/null; then PY=$p; break; fi
done
if [ -z "$PY" ]; then
  echo "1..0 # SKIP no python3 with numpy, PIL and torchvision"
  exit 0
fi
FM=${NORMLAB_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}

# --- (a) an image folder of Fashion-MNIST test PNGs = fmnist:test ---
if [ -f "$FM/t10k-images-idx3-ubyte.gz" ]; then
  # 1100 images: eval reads them in chunks of 512 (8 batches of 64), the
  # later ones decoded on the prefetch thread
  run "$PY" "$IMG" fmnist-folder "$TMP/fm" 1100
  ok $rc "write 1100 Fashion-MNIST test images as PNG"
  expect_status 0 "eval --data fmnist:test --images 1100" "$NORMLAB" eval --data fmnist:test --images 1100 --batch 64 --json
  ref1=$(sed 's/.*"top1": \([0-9.e-]*\).*/\1/' "$TMP/out")
  expect_status 0 "eval --data imagefolder:DIR" "$NORMLAB" eval --data "imagefolder:$TMP/fm" --batch 64 --json
  got=$(sed 's/.*"top1": \([0-9.e-]*\).*/\1/' "$TMP/out")
  expect_out '"images": 1100' "all 1100 images read"
  check_num "$got == $ref1 && $ref1 > 0.5" "the same top-1 as fmnist:test ($got, $ref1)"
  expect_status 0 "extract from the image folder" "$NORMLAB" extract --data "imagefolder:$TMP/fm" --images 20 --points 1000 --output "$TMP/fm.maps"
  # the pixels themselves (the folder is sorted by class: compare as sets per label)
  expect_status 0 "bench data --dump of the PNG folder" "$NORMLAB" bench data --data "imagefolder:$TMP/fm" --images 300 --dump "$TMP/fm.st" --seconds 0.01
  run "$PY" - "$IMG" "$TMP/fm.st" "$FM" <<'PY'
import gzip, os, sys
import numpy as np
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import img_tool
d = img_tool.read_safetensors(sys.argv[2])
with gzip.open(os.path.join(sys.argv[3], "t10k-images-idx3-ubyte.gz")) as f:
    ref = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:1100]
with gzip.open(os.path.join(sys.argv[3], "t10k-labels-idx1-ubyte.gz")) as f:
    lab = np.frombuffer(f.read(), np.uint8, offset=8)[:1100]
order = sorted(range(1100), key=lambda i: (str(lab[i]), "%05d.png" % i))[:300]
ok = np.array_equal(d["images"][:, 0], ref[order]) and np.array_equal(d["labels"], lab[order])
sys.exit(0 if ok else 1)
PY
  ok $rc "the decoded PNGs are the idx pixels, in ImageFolder order"
fi

# train on an image folder: RandomResizedCrop + flip drawn anew each epoch,
# the same run for the same seed whatever the thread count
if [ -f "$FM/t10k-images-idx3-ubyte.gz" ] && have_fixtures; then
  rm -f "$TMP/fm/3/zz.jpg" "$TMP/fm/9/zz.jpg"
  for t in 1 2; do
    expect_status 0 "train on imagefolder:DIR, $t threads" "$NORMLAB" --threads $t train --model "$NL_FIXTURES/vit_tiny_p4_fmnist.safetensors" \
      --data "imagefolder:$TMP/fm" --images 64 --eval "imagefolder:$TMP/fm" --eval-images 64 --epochs 2 --batch 32 \
      --variant affine --seed 3 --output "$TMP/tr$t"
  done
  "$PY" - "$TMP/tr1/train.json" "$TMP/tr2/train.json" <<'PY'
import json, sys
a, b = (json.load(open(p))["epochs"] for p in sys.argv[1:3])
la, lb = [e["loss"] for e in a[1:]], [e["loss"] for e in b[1:]]
sys.exit(0 if la == lb and la[0] != la[1] and len(la) == 2 else 1)
PY
  ok $? "the same losses on 1 and 2 threads, two epochs of other crops"
  # the images stream (decoded chunk by chunk in the background); the whole
  # set decoded at the start of every epoch, as before, gives the same run
  NORMLAB_TRAIN_WHOLE_SET=1 "$NORMLAB" --threads 2 train --model "$NL_FIXTURES/vit_tiny_p4_fmnist.safetensors" \
    --data "imagefolder:$TMP/fm" --images 64 --eval "imagefolder:$TMP/fm" --eval-images 64 --epochs 2 --batch 32 \
    --variant affine --seed 3 --output "$TMP/trw" >/dev/null 2>&1
  cmp -s "$TMP/tr1/last.safetensors" "$TMP/trw/last.safetensors" &&
    cmp -s "$TMP/tr2/last.safetensors" "$TMP/trw/last.safetensors"
  ok $? "streamed training on 1 and 2 threads = the whole set decoded each epoch, bit for bit"
fi

# --- (b) transforms against torchvision on JPEGs of assorted sizes ---
run "$PY" "$IMG" jpegs "$TMP/j"
ok $rc "write JPEGs and PNGs of assorted sizes and modes"
run "$PY" "$MAKEVIT" "$TMP/rgb" --dim 32 --depth 1 --heads 2 --classes 3 --crop-pct 0.9 --interpolation bicubic
ok $rc "make a tiny RGB 224 px model folder (config.json, model.safetensors)"
run "$PY" "$MAKEVIT" "$TMP/bil" --dim 32 --depth 1 --heads 2 --classes 3 --img 96 --crop-pct 0.875 --interpolation bilinear
ok $rc "make a tiny 96 px bilinear model folder"
expect_status 0 "info on a model folder" "$NORMLAB" info --model "$TMP/rgb"
expect_out "config from: +$TMP/rgb/config.json" "info: the config from config.json"
expect_out "input size: +224 \(config.json pretrained_cfg.input_size\)" "info: where the input size came from"
expect_out "preprocess: +crop_pct 0.9, bicubic \(config.json pretrained_cfg\)" "info: crop_pct and interpolation from pretrained_cfg"
for m in rgb:224:0.9:bicubic bil:96:0.875:bilinear; do
  IFS=: read -r name size crop interp <<EOF2
$m
EOF2
  expect_status 0 "bench data --dump ($name, eval)" "$NORMLAB" bench data --model "$TMP/$name" --data "imagefolder:$TMP/j" --dump "$TMP/$name.st" --seconds 0.01
  expect_out "18 images to 3x${size}x${size} \(eval transform, $interp, crop_pct $crop\)" "$name: 18 images through the eval transform"
  run "$PY" "$IMG" check-eval "$TMP/j" "$TMP/$name.st" "$size" "$crop" "$interp"
  ok $rc "$name: eval transform as torchvision's PIL pipeline: $(cat "$TMP/out")"
done
expect_status 0 "bench data --train --dump" "$NORMLAB" --threads 2 bench data --model "$TMP/rgb" --data "imagefolder:$TMP/j" --train --seed 7 --dump "$TMP/t2.st" --seconds 0.01
run "$PY" "$IMG" check-train "$TMP/j" "$TMP/t2.st" 224 bicubic
ok $rc "RandomResizedCrop boxes and pixels as torchvision's: $(cat "$TMP/out")"
expect_out "2 fallback boxes" "the two extreme aspect ratios take the fallback box"
expect_status 0 "the same crops on one thread" "$NORMLAB" --threads 1 bench data --model "$TMP/rgb" --data "imagefolder:$TMP/j" --train --seed 7 --dump "$TMP/t1.st" --seconds 0.01
cmp -s "$TMP/t1.st" "$TMP/t2.st"
ok $? "training crops do not depend on the thread count"
"$NORMLAB" bench data --model "$TMP/rgb" --data "imagefolder:$TMP/j" --train --seed 8 --dump "$TMP/t3.st" --seconds 0.01 >/dev/null 2>&1
! cmp -s "$TMP/t3.st" "$TMP/t2.st"
ok $? "another seed, other crops"

# --- CIFAR-10 binary batches ---
run "$PY" "$IMG" cifar "$TMP/cf" 40
ok $rc "write CIFAR-10 style batches"
expect_status 0 "bench data cifar10:DIR:test" "$NORMLAB" bench data --model "$TMP/rgb" --data "cifar10:$TMP/cf:test" --dump "$TMP/cf.st" --seconds 0.01
expect_out "40 images" "the test batch's 40 records"
run "$PY" "$IMG" check-cifar "$TMP/cf/test_batch.bin" "$TMP/cf.st" 224 0.9 bicubic
ok $rc "CIFAR records (planes R, G, B) through torchvision's transform: $(cat "$TMP/out")"
expect_status 0 "cifar10:DIR is the five training batches" "$NORMLAB" bench data --model "$TMP/rgb" --data "cifar10:$TMP/cf" --seconds 0.01
expect_out "200 images" "5 x 40 training records"

# --- training streams: the images of the next chunk of batches are decoded
# in the background; the same weights as the whole set decoded every epoch
# (NORMLAB_TRAIN_WHOLE_SET=1), whatever the thread count; memory bounded ---
run "$PY" "$MAKEVIT" "$TMP/rgb10" --dim 32 --depth 1 --heads 2 --classes 10 --crop-pct 0.9 --interpolation bicubic
ok $rc "make a tiny RGB 224 px model of 10 classes"
TR="train --model $TMP/rgb10 --eval cifar10:$TMP/cf:test --eval-images 8 --batch 8 --seed 5"
for t in 1 3; do
  "$NORMLAB" --threads $t $TR --data "cifar10:$TMP/cf" --images 120 --epochs 2 --output "$TMP/cs$t" >/dev/null 2>"$TMP/err"
  ok $? "train on cifar10:DIR, streamed, $t threads"
done
NORMLAB_TRAIN_WHOLE_SET=1 "$NORMLAB" --threads 2 $TR --data "cifar10:$TMP/cf" --images 120 --epochs 2 --output "$TMP/cw" >/dev/null 2>&1
ok $? "train on cifar10:DIR, the whole set each epoch"
cmp -s "$TMP/cs1/last.safetensors" "$TMP/cw/last.safetensors" && cmp -s "$TMP/cs3/last.safetensors" "$TMP/cw/last.safetensors"
ok $? "CIFAR: streamed (1 and 3 threads) and whole-set training give identical weights"
NORMLAB_TRAIN_WHOLE_SET=1 "$NORMLAB" --threads 2 $TR --data "cifar10:$TMP/cf" --images 120 --epochs 2 --no-augment --output "$TMP/cwn" >/dev/null 2>&1
"$NORMLAB" --threads 2 $TR --data "cifar10:$TMP/cf" --images 120 --epochs 2 --no-augment --output "$TMP/csn" >/dev/null 2>&1
cmp -s "$TMP/csn/last.safetensors" "$TMP/cwn/last.safetensors" && ! cmp -s "$TMP/csn/last.safetensors" "$TMP/cw/last.safetensors"
ok $? "--no-augment (the evaluation transform) streams too, the same weights"
# 300 JPEGs at 224 px: the whole set is 300 x 3 x 224 x 224 floats (180 MB)
"$PY" - "$TMP/big" <<'PY'
import os, sys
import numpy as np
from PIL import Image
r = np.random.default_rng(0)
for c in range(3):
    d = os.path.join(sys.argv[1], "c%d" % c)
    os.makedirs(d, exist_ok=True)
    for i in range(100):
        a = r.integers(0, 256, (48 + i % 7, 64, 3), dtype=np.uint8)
        Image.fromarray(a).save(os.path.join(d, "%03d.jpg" % i), quality=90)
PY
ok $? "write 300 JPEGs in 3 classes"
TB="train --model $TMP/rgb --data imagefolder:$TMP/big --eval imagefolder:$TMP/big --eval-images 8 --batch 8 --epochs 1 --seed 1"
# (not under the sanitizers: their allocator holds freed memory in quarantine)
if [ -x /usr/bin/time ] && ! grep -aq __asan_init "$NORMLAB"; then
  rss() { # rss [ENV=..] N OUT: peak resident KB of a run on the first N images
    /usr/bin/time -f %M -o "$TMP/rss" env $1 "$NORMLAB" --threads 2 $TB --images $2 --output "$TMP/$3" >/dev/null 2>&1 &&
      tail -n 1 "$TMP/rss"
  }
  s24=$(rss NL_X=0 24 r24); s300=$(rss NL_X=0 300 r300)
  w24=$(rss NORMLAB_TRAIN_WHOLE_SET=1 24 w24); w300=$(rss NORMLAB_TRAIN_WHOLE_SET=1 300 w300)
  # 276 more images cost the whole-set path at least their floats (166 MB);
  # streamed, two chunks of 64 images (2 x 9.6 MB) whatever the set's size
  check_num "${w300:-0} - ${w24:-0} > 150000" "whole set: 276 more images take > 150 MB ($w24 -> $w300 KB)"
  check_num "${s300:-1e9} - ${s24:-0} < 60000" "streamed: 276 more images take < 60 MB ($s24 -> $s300 KB)"
  cmp -s "$TMP/r300/last.safetensors" "$TMP/w300/last.safetensors"
  ok $? "and the same weights"
fi
# a bad image met by the background decoder mid-run stops it, naming the file
head -c 300 "$TMP/big/c0/000.jpg" >"$TMP/big/c2/zz.jpg"
expect_status 2 "a truncated JPEG in a streamed training run" "$NORMLAB" --threads 2 $TB --output "$TMP/rbad"
expect_err "epoch 1, batch [0-9]+: .*big/c2/zz.jpg: corrupt or truncated JPEG" "found during the epoch, naming the file"
rm -f "$TMP/big/c2/zz.jpg"

# --- (d) bad input: exit 2 naming the file ---
mkdir -p "$TMP/bad/a" "$TMP/bad/b"
cp "$TMP/j/a/img00.jpg" "$TMP/bad/a/"
cp "$TMP/j/b/img01.jpg" "$TMP/bad/b/"
head -c 3000 "$TMP/j/a/img03.jpg" >"$TMP/bad/b/trunc.jpg"
B="$NORMLAB bench data --model $TMP/rgb --seconds 0.01"
expect_status 2 "a truncated JPEG" $B --data "imagefolder:$TMP/bad"
expect_err "bad/b/trunc.jpg: corrupt or truncated JPEG.*--skip-bad" "names the JPEG and --skip-bad"
expect_status 0 "--skip-bad leaves it out" $B --data "imagefolder:$TMP/bad" --skip-bad
expect_out "2 images" "two images left"
expect_err "skipped: .*trunc.jpg" "and reports it"
rm "$TMP/bad/b/trunc.jpg"
"$PY" -c "
import sys; d = bytearray(open(sys.argv[1], 'rb').read()); i = d.find(b'IDAT') + 40; d[i:i + 16] = b'\xff' * 16
open(sys.argv[2], 'wb').write(d)" "$TMP/j/c/pal.png" "$TMP/bad/b/corrupt.png"
expect_status 2 "a corrupt PNG" $B --data "imagefolder:$TMP/bad"
expect_err "bad/b/corrupt.png: corrupt or truncated PNG" "names the PNG"
head -c 100 "$TMP/j/c/pal.png" >"$TMP/bad/b/corrupt.png"
expect_status 2 "a truncated PNG" $B --data "imagefolder:$TMP/bad"
expect_err "bad/b/corrupt.png: corrupt or truncated PNG" "names the truncated PNG"
printf 'not an image' >"$TMP/bad/b/corrupt.png"
expect_status 2 "a .png that is no image" $B --data "imagefolder:$TMP/bad"
expect_err "corrupt.png: not a JPEG or PNG" "names it"
rm "$TMP/bad/b/corrupt.png"
mkdir "$TMP/bad/c"
expect_status 2 "an empty class folder" $B --data "imagefolder:$TMP/bad"
expect_err "bad/c: class folder 'c' holds no" "names the class folder"
mkdir -p "$TMP/none"
expect_status 2 "a folder with no class folders" $B --data "imagefolder:$TMP/none"
expect_err "none: no class folders" "names the folder"
expect_status 2 "a missing folder" $B --data "imagefolder:$TMP/missing"
head -c 5000 "$TMP/cf/data_batch_2.bin" >"$TMP/cf/x" && mv "$TMP/cf/x" "$TMP/cf/data_batch_2.bin"
expect_status 2 "a CIFAR batch of the wrong size" $B --data "cifar10:$TMP/cf"
expect_err "data_batch_2.bin: 5000 bytes is not a whole number of CIFAR-10 records" "names the batch"
expect_status 2 "an unknown data spec" "$NORMLAB" eval --data "cifar100:$TMP/cf"
expect_err "unknown data spec" "says so"
if [ -f "$FM/t10k-images-idx3-ubyte.gz" ]; then
  head -c 50 "$TMP/j/a/img00.jpg" >"$TMP/fm/3/zz.jpg"
  head -c 50 "$TMP/j/a/img00.jpg" >"$TMP/fm/9/zz.jpg" # class 9 is last: a prefetched chunk
  expect_status 2 "eval stops at a bad image without --skip-bad" "$NORMLAB" eval --data "imagefolder:$TMP/fm" --batch 64
  expect_err "fm/3/zz.jpg: corrupt or truncated JPEG" "naming it"
  rm "$TMP/fm/3/zz.jpg"
  expect_status 2 "the same in a chunk decoded ahead" "$NORMLAB" eval --data "imagefolder:$TMP/fm" --batch 64
  expect_err "fm/9/zz.jpg: corrupt or truncated JPEG" "naming it"
  head -c 50 "$TMP/j/a/img00.jpg" >"$TMP/fm/3/zz.jpg"
  expect_status 0 "eval --skip-bad" "$NORMLAB" eval --data "imagefolder:$TMP/fm" --skip-bad --batch 64 --json
  expect_out '"images": 1100' "the 1100 good images evaluated"
  check_num "$(grep -c 'skipped: .*zz.jpg' "$TMP/err") == 2" "both bad images reported, the prefetched one too"
fi
# config.json against the shapes
sed 's/"num_classes": 3,/"num_classes": 5,/' "$TMP/rgb/config.json" >"$TMP/x.json" && mv "$TMP/x.json" "$TMP/rgb/config.json"
expect_status 2 "config.json disagreeing with head.weight" "$NORMLAB" info --model "$TMP/rgb"
expect_err "rgb/config.json: config.json says num_classes = 5 but head.weight gives 3" "names the file, the key and the tensor"
"$PY" -c "
import json, sys; c = json.load(open(sys.argv[1])); c['num_classes'] = 3; c['pretrained_cfg']['input_size'] = [3, 200, 200]
json.dump(c, open(sys.argv[1], 'w'))" "$TMP/rgb/config.json"
expect_status 2 "config.json input_size disagreeing with pos_embed" "$NORMLAB" info --model "$TMP/rgb"
expect_err "img_size 200 but pos_embed has 196 patch positions" "names the tensor"
rm "$TMP/rgb/model.safetensors"
expect_status 2 "a model folder without model.safetensors" "$NORMLAB" info --model "$TMP/rgb"
expect_err "needs model.safetensors" "says what is missing"
done_testing
