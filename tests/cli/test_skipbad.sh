#!/bin/sh
# --skip-bad: an image folder of Fashion-MNIST test PNGs with a truncated
# JPEG and a garbage PNG among them. Without the flag eval, extract and
# train stop with exit 2 naming the file (train keeps its last saved
# epoch); with it the bad images are named, counted, and left out: eval's
# top-1 and extract's mappings are those of the folder without them, every
# image trained on carries its own label, and train's per-epoch top-1 is
# what `normlab eval` gives for its checkpoint. Train's evaluation data
# streams: its peak memory does not grow with --eval-images.
. "$NL_SRCDIR/tests/cli/lib.sh"
IMG=$NL_SRCDIR/tests/cli/img_tool.py
PY=
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy, PIL' 2>/dev/null; then PY=$p; break; fi
done
FM=${NORMLAB_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
# the bundled vit_small_p7 (21 MFLOPs an image): the checks are about the data, not the model
SMALL=$NL_SRCDIR/samples/models/vit_small_p7_fmnist.safetensors
if [ -z "$PY" ] || [ ! -f "$FM/t10k-images-idx3-ubyte.gz" ] || [ ! -f "$SMALL" ]; then
  echo "1..0 # SKIP needs python3 with numpy and PIL, Fashion-MNIST and the timm fixtures"
  exit 0
fi
top1() { sed -n 's/.*"top1": \([0-9.e-]*\).*/\1/p' "$TMP/out"; }

# 600 good images (PNG, lossless); in "mix" the same plus a truncated JPEG
# in the middle of class 0 and a garbage PNG in the middle of class 9 (the
# last class: eval meets it in the chunk decoded in the background)
run "$PY" "$IMG" fmnist-folder "$TMP/good" 600
ok $rc "write 600 Fashion-MNIST test images as PNG"
cp -r "$TMP/good" "$TMP/mix"
b0=$(ls "$TMP/good/0" | sed -n 20p); b0=${b0%.png}x.jpg
b9=$(ls "$TMP/good/9" | sed -n 20p); b9=${b9%.png}x.png
"$PY" - "$TMP/mix/0/$b0" "$TMP/mix/9/$b9" <<'PY'
import io, sys
import numpy as np
from PIL import Image
b = io.BytesIO()
Image.fromarray(np.arange(784, dtype=np.uint8).reshape(28, 28), "L").save(b, "JPEG", quality=90)
open(sys.argv[1], "wb").write(b.getvalue()[:len(b.getvalue()) // 2])          # truncated JPEG
open(sys.argv[2], "wb").write(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes())
PY
ok $? "add a truncated JPEG (0/$b0) and a garbage PNG (9/$b9)"

# --- eval ---
expect_status 0 "eval the good images" "$NORMLAB" eval --model "$SMALL" --data "imagefolder:$TMP/good" --batch 64 --json
ref=$(top1)
expect_status 2 "eval without --skip-bad stops at the bad JPEG" "$NORMLAB" eval --model "$SMALL" --data "imagefolder:$TMP/mix" --batch 64
expect_err "mix/0/$b0: corrupt or truncated JPEG" "naming the file and the reason"
expect_status 0 "eval --skip-bad" "$NORMLAB" eval --model "$SMALL" --data "imagefolder:$TMP/mix" --batch 64 --skip-bad --json
got=$(top1)
expect_out '"images": 600' "600 images used"
expect_out '"skipped": 2' "2 skipped"
expect_err "skipped: .*mix/0/$b0: corrupt or truncated JPEG" "the JPEG named"
expect_err "skipped: .*mix/9/$b9: .*PNG" "the PNG met by the background decoder named"
check_num "$got == $ref && $ref > 0.5" "top-1 of the good images ($got, $ref)"
expect_status 0 "eval --skip-bad, text" "$NORMLAB" eval --model "$SMALL" --data "imagefolder:$TMP/mix" --batch 64 --skip-bad
expect_out "of 600 images, 2 bad images skipped" "the summary says 2 skipped"

# --- Lua's model:eval{skip_bad = true} ---
cat >"$TMP/sb.lua" <<'LUA'
local nl = require "normlab"
local m = nl.load_model(arg[1])
local r = m:eval{data = "imagefolder:" .. arg[2], batch = 64, skip_bad = true}
print(string.format("lua: %d images, %d skipped, top1 %.17g", r.images, r.skipped, r.top1))
local ok, e = pcall(m.eval, m, {data = "imagefolder:" .. arg[2]})
print("without skip_bad:", ok, e)
LUA
expect_status 0 "Lua model:eval{skip_bad = true}" "$NORMLAB" lua "$TMP/sb.lua" "$SMALL" "$TMP/mix"
expect_out "lua: 600 images, 2 skipped" "600 used, 2 skipped"
expect_err "skipped: .*$b9" "the bad images named"
lt=$(sed -n 's/.*top1 \([0-9.e-]*\).*/\1/p' "$TMP/out")
check_num "${lt:-0} == $ref" "top-1 of the good images ($lt)"
expect_out "without skip_bad:.*false.*$b0: corrupt or truncated JPEG" "without skip_bad: an error naming the file"

# --- extract: the mappings of the good images ---
X="extract --model $SMALL --points 2000 --seed 5 --batch 50"
expect_status 0 "extract the good images" "$NORMLAB" $X --data "imagefolder:$TMP/good" --images 600 --output "$TMP/good.maps"
expect_status 2 "extract without --skip-bad" "$NORMLAB" $X --data "imagefolder:$TMP/mix" --images 602 --output "$TMP/mix.maps"
expect_err "mix/0/$b0: corrupt or truncated JPEG" "names the file"
[ ! -e "$TMP/mix.maps" ]; ok $? "and writes nothing"
expect_status 0 "extract --skip-bad" "$NORMLAB" $X --data "imagefolder:$TMP/mix" --images 602 --output "$TMP/mix.maps" --skip-bad
expect_out "from 600 images .*2 bad images skipped" "the summary says 2 skipped"
expect_err "skipped: .*$b0" "the JPEG named"
expect_err "skipped: .*$b9" "the PNG named"
"$PY" - "$IMG" "$TMP/good.maps" "$TMP/mix.maps" <<'PY'
import os, sys
import numpy as np
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import img_tool
a, b = img_tool.read_safetensors(sys.argv[2]), img_tool.read_safetensors(sys.argv[3])
sys.exit(0 if a.keys() == b.keys() and len(a) > 0 and all(np.array_equal(a[k], b[k]) for k in a) else 1)
PY
ok $? "the same mappings as from the good images alone"

# --- train: the batch keeps each image with its label ---
TR="train --model $SMALL --variant affine --batch 64 --seed 2"
expect_status 0 "train --skip-bad --dump-grads (one step, no augmentation)" "$NORMLAB" $TR --data "imagefolder:$TMP/mix" \
  --images 64 --no-augment --eval "imagefolder:$TMP/mix" --eval-images 8 --skip-bad --output "$TMP/dg" --dump-grads "$TMP/dg.st"
expect_err "skipped: .*$b0" "the bad training image named"
"$PY" - "$IMG" "$TMP/dg.st" "$TMP/good" <<'PY'
import os, sys
import numpy as np
from PIL import Image
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import img_tool
d = img_tool.read_safetensors(sys.argv[2])
x, y = d["inputs"].reshape(len(d["inputs"]), -1), d["labels"]
z = lambda v: (v - v.mean(-1, keepdims=True)) / (v.std(-1, keepdims=True) + 1e-9)
# the first 64 entries of the folder: class 0 then class 1, the bad one among them
files = sorted((c, f) for c in os.listdir(sys.argv[3]) for f in os.listdir(os.path.join(sys.argv[3], c)))[:80]
imgs = np.stack([np.asarray(Image.open(os.path.join(sys.argv[3], c, f)), np.float64).ravel() for c, f in files])
labs = np.array([int(c) for c, f in files])
dist = ((z(x.astype(np.float64))[:, None, :] - z(imgs)[None, :, :]) ** 2).mean(-1)
k = dist.argmin(1)
ok = len(y) == 63 and dist.min(1).max() < 1e-6 and np.array_equal(labs[k], y) and len(set(k)) == 63
print(len(y), dist.min(1).max(), np.array_equal(labs[k], y))
sys.exit(0 if ok else 1)
PY
ok $? "63 images in the step (64 less the bad one), each with its own label"

# --- train: stops without --skip-bad keeping the last epoch; resumes with it ---
cp -r "$TMP/good" "$TMP/tr"
# (--lr 0.02: two steps that move top-1, so that epoch 2's figure is not epoch 0's)
TE="$TR --lr 0.02 --data imagefolder:$TMP/tr --images 64 --eval imagefolder:$TMP/tr --output $TMP/run"
expect_status 0 "train one epoch on good images" "$NORMLAB" $TE --epochs 1
cp "$TMP/run/last.safetensors" "$TMP/last1" && cp "$TMP/run/state.safetensors" "$TMP/state1"
cp "$TMP/mix/0/$b0" "$TMP/tr/0/" && cp "$TMP/mix/9/$b9" "$TMP/tr/9/"
expect_status 2 "the next epoch meets the bad JPEG" "$NORMLAB" $TE --epochs 2 --resume
expect_err "tr/0/$b0: corrupt or truncated JPEG" "naming the file"
cmp -s "$TMP/run/last.safetensors" "$TMP/last1" && cmp -s "$TMP/run/state.safetensors" "$TMP/state1"
ok $? "the saved epoch is left as it was"
expect_status 0 "--resume --skip-bad continues" "$NORMLAB" $TE --epochs 2 --resume --skip-bad --json
expect_err "skipped: .*tr/0/$b0" "the bad training image named"
expect_err "skipped: .*tr/9/$b9" "the bad evaluation image named"
expect_err "1 bad training image and 2 bad evaluation images skipped" "the summary counts them"
e2=$("$PY" -c "import json,sys; j=json.load(open(sys.argv[1])); print(j['epochs'][-1]['top1'], j['skipped']['data'], j['skipped']['eval'])" "$TMP/run/train.json")
set -- $e2
check_num "$2 == 1 && $3 == 2" "train.json records the skipped images ($2, $3)"
tr1=$1
expect_status 0 "eval the trained model on the good images" "$NORMLAB" eval --model "$TMP/run/last.safetensors" \
  --data "imagefolder:$TMP/tr" --skip-bad --batch 256 --json
ev=$(top1)
expect_out '"images": 600' "the 600 good images"
check_num "$ev == $tr1 && $ev > 0.5 && $ev != $ref" "epoch 2's top-1 is eval's on the same images ($tr1, $ev; untrained $ref)"

# --- train's evaluation streams: peak memory does not grow with --eval-images ---
# (not under the sanitizers: their allocator holds freed memory in quarantine)
if [ -x /usr/bin/time ] && ! grep -aq __asan_init "$NORMLAB"; then
  run "$PY" "$NL_SRCDIR/scripts/make-vit" "$TMP/v64" --img 64 --dim 32 --depth 1 --heads 2 --classes 3
  ok $rc "make a tiny 64 px RGB model"
  "$PY" - "$TMP/big" <<'PY'
import os, sys
import numpy as np
from PIL import Image
r = np.random.default_rng(0)
for c in range(3):
    d = os.path.join(sys.argv[1], "c%d" % c)
    os.makedirs(d, exist_ok=True)
    for i in range(100):
        Image.fromarray(r.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(os.path.join(d, "%03d.jpg" % i), quality=90)
        for k in range(1, 20):  # the same file under 20 names: 6000 images
            os.link(os.path.join(d, "%03d.jpg" % i), os.path.join(d, "%03d_%02d.jpg" % (i, k)))
PY
  ok $? "an image folder of 6000 JPEGs"
  rss() { # rss N OUT: peak resident KB of a one-step run evaluating N images
    /usr/bin/time -f %M -o "$TMP/rss" "$NORMLAB" --threads 2 train --model "$TMP/v64" --data "imagefolder:$TMP/big" \
      --images 8 --batch 8 --epochs 1 --variant affine --eval "imagefolder:$TMP/big" --eval-images $1 --output "$TMP/$2" >/dev/null 2>&1 &&
      tail -n 1 "$TMP/rss"
  }
  s1=$(rss 600 m600); s2=$(rss 6000 m6000)
  # 5400 more images are 5400 x 3 x 64 x 64 bytes (66 MB) decoded at once;
  # streamed, two chunks of 512 (6 MB each) whatever their number
  check_num "${s2:-1e9} - ${s1:-0} < 25000" "train's evaluation: 5400 more images take < 25 MB ($s1 -> $s2 KB)"
fi
done_testing
