#!/bin/sh
# Commands extract, maps and dyt: importing the reference points, the DyT
# table against the fixture's JSON, extraction, and bad mappings files
# (written by hand as safetensors) rejected with exit status 2.
. "$NL_SRCDIR/tests/cli/lib.sh"

# mkst FILE SPEC...: write a safetensors file; SPEC is NAME:DTYPE:SHAPE:VALUES
# with SHAPE like 4 or 2x2 (or 0) and VALUES comma-separated floats, "nan"
# allowed (repeated to fill the shape). DTYPE F32, F16 or I32.
mkst() {
  python3 - "$@" <<'EOF'
import json, math, struct, sys
out, specs = sys.argv[1], sys.argv[2:]
header, blobs, off = {"__metadata__": {"kind": "test"}}, [], 0
for s in specs:
    name, dt, shape, vals = s.split(":")
    shape = [int(d) for d in shape.split("x")] if shape else []
    n = 1
    for d in shape:
        n *= d
    v = [float(x) for x in vals.split(",")] if vals else [0.0]
    v = (v * (n // len(v) + 1))[:n]
    fmt = {"F32": "<%df", "F16": "<%de", "I32": "<%di"}[dt]
    data = struct.pack(fmt % n, *[int(x) if dt == "I32" else x for x in v])
    header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
    blobs.append(data)
    off += len(data)
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
EOF
}

if ! command -v python3 >/dev/null; then
  echo "# python3 missing: bad-file tests skipped"
else
  mkst "$TMP/good.st" "a.x:F32:4:1,2,3,4" "a.y:F32:4:0.5,-1,2,0"
  expect_status 0 "a hand-written mappings file is accepted" "$NORMLAB" maps --maps "$TMP/good.st"
  expect_out '^a +4 ' "its layer is listed with its points"

  check_bad() {  # check_bad DESC PATTERN SPEC...
    desc=$1; pat=$2; shift 2
    mkst "$TMP/bad.st" "$@"
    expect_status 2 "$desc: exit 2" "$NORMLAB" dyt --maps "$TMP/bad.st" --bins 1
    expect_err "bad\.st.*$pat" "$desc: the error names the file and the tensor"
  }
  check_bad "empty tensors" "'a\.[xy]' is empty" "a.x:F32:0:" "a.y:F32:0:"
  check_bad "x and y lengths differ" "'a\.x' and 'a\.y' differ in length \(4 and 5" \
    "a.x:F32:4:1" "a.y:F32:5:1"
  check_bad "NaN in y" "'a\.y' holds NaN at index 2" "a.x:F32:4:1,2,3,4" "a.y:F32:4:1,2,nan,4"
  check_bad "F16 tensor" "'a\.x' has dtype F16; mapping tensors must be F32" \
    "a.x:F16:4:1" "a.y:F32:4:1"
  check_bad "I32 tensor" "'a\.y' has dtype I32" "a.x:F32:4:1" "a.y:I32:4:1"
  check_bad "missing partner" "'b\.y' has no partner 'b\.x'" \
    "a.x:F32:4:1,2,3,4" "a.y:F32:4:1,2,3,4" "b.y:F32:4:1"
  check_bad "2-D tensor" "'a\.x' has shape \[2, 2\]" "a.x:F32:2x2:1" "a.y:F32:4:1"
  check_bad "a stray tensor" "'weights' is not a mapping tensor" \
    "a.x:F32:4:1,2,3,4" "a.y:F32:4:1,2,3,4" "weights:F32:2:1"
  check_bad "no layers" "no mapping layers" 
  expect_status 2 "maps rejects the same file" "$NORMLAB" maps --maps "$TMP/bad.st"
  expect_err "no mapping layers" "maps names the problem"
  printf 'not a safetensors file' >"$TMP/junk.st"
  expect_status 2 "a file that is not safetensors: exit 2" "$NORMLAB" dyt --maps "$TMP/junk.st"
  expect_err "junk\.st" "the error names the file"

  # The importer reads other layouts: F16, 2-D, prefix/suffix naming.
  mkst "$TMP/other.st" "pts/l1/in:F16:2x2:1,2,3,4" "pts/l1/out:F32:4:1,0,1,0" "misc:I32:1:1"
  expect_status 0 "import with prefix and suffix" "$NORMLAB" maps --import "$TMP/other.st" \
    --x-prefix pts/ --x-suffix /in --y-prefix pts/ --y-suffix /out --output "$TMP/imp.st"
  expect_status 0 "the import is a valid mappings file" "$NORMLAB" maps --maps "$TMP/imp.st" --json
  cp "$TMP/out" "$TMP/imp.json"
  run python3 -c "import json,sys; d=json.load(open('$TMP/imp.json')); l=d['layers'][0]; \
sys.exit(not (l['name']=='l1' and l['points']==4 and l['x_max']==4 and d['metadata']['imported_from']))"
  ok "$rc" "imported layer l1 has 4 points, x up to 4, and its source recorded"
  expect_status 2 "import: a naming that matches nothing exits 2" "$NORMLAB" maps \
    --import "$TMP/other.st" --x-prefix nope/ --y-prefix pts/ --output "$TMP/imp2.st"
  expect_err "no partner" "the error says why"
  expect_status 2 "import without --output exits 2" "$NORMLAB" maps --import "$TMP/other.st"
  expect_status 2 "--maps and --import together exit 2" "$NORMLAB" maps --maps "$TMP/imp.st" \
    --import "$TMP/other.st" --output "$TMP/x.st"
fi

expect_status 0 "bench list" "$NORMLAB" bench list
expect_out '^  extract ' "bench list shows the extraction benchmark"
expect_status 2 "bench extract with a missing model exits 2" "$NORMLAB" bench extract \
  --model "$TMP/none.safetensors"
expect_status 2 "dyt without --maps exits 2" "$NORMLAB" dyt
expect_status 2 "dyt --bins 0 exits 2" "$NORMLAB" dyt --maps "$TMP/none.st" --bins 0

if have_fixtures && command -v python3 >/dev/null; then
  for m in vit_small_p7_fmnist vit_tiny_p4_fmnist; do
    expect_status 0 "$m: import the reference points" "$NORMLAB" maps \
      --import "$NL_FIXTURES/${m}_ref.safetensors" --x-prefix map_x. --y-prefix map_y. \
      --model "$m" --output "$TMP/$m.maps"
    expect_out "25 layers, 1250000 points" "$m: 25 layers of 50000 points"
    expect_status 0 "$m: dyt --json" "$NORMLAB" dyt --maps "$TMP/$m.maps" --json
    # Every layer against the fixture's dyt_table: alpha within 1 %, R^2 within 0.002.
    cp "$TMP/out" "$TMP/$m.json"
    run python3 - "$TMP/$m.json" "$NL_FIXTURES/$m.json" <<'EOF'
import json, sys
ours, ref = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
rows = {l["name"]: l for l in ours["layers"]}
bad = 0
for r in ref["dyt_table"]:
    o = rows[r["layer"]]
    if abs(o["alpha"] / r["dyt_alpha"] - 1) >= 0.01 or abs(o["r2"] - r["dyt_r2"]) >= 0.002:
        print("# %s: alpha %g vs %g, r2 %g vs %g" % (r["layer"], o["alpha"], r["dyt_alpha"], o["r2"], r["dyt_r2"]))
        bad += 1
    if o["bound_r2"] < o["r2"] - 0.002:
        print("# %s: bound %g below DyT %g" % (r["layer"], o["bound_r2"], o["r2"]))
        bad += 1
if abs(ours["mean_r2"] - ref["mean_dyt_r2"]) >= 0.002 or ours["bins"] != 256 or len(rows) != 25:
    bad += 1
sys.exit(bad != 0)
EOF
    ok "$rc" "$m: every layer's alpha and R^2 match the fixture's dyt_table"
    sed -n '/^#/p' "$TMP/out"
  done
  expect_status 0 "dyt table" "$NORMLAB" dyt --maps "$TMP/vit_small_p7_fmnist.maps"
  expect_out '^mean +0\.17600[0-9] +0\.8240[0-9]+ ' "the table's mean MSE and R^2 are the fixture's"
  expect_out '^blocks\.11\.norm2 +50000 ' "the table lists layers in forward order"
  expect_out '256 quantile bins' "the bin count is stated"

  model="$NL_FIXTURES/vit_tiny_p4_fmnist.safetensors"
  expect_status 0 "extract 8 images" "$NORMLAB" --threads 2 extract --model "$model" \
    --offset 100 --images 8 --points 2000 --seed 5 --output "$TMP/e1.maps"
  expect_out 'wrote .*25 layers x 2000 points from 8 images of fmnist:test \(offset 100\)' \
    "extract reports what it wrote"
  expect_out '^time: [0-9.]+ s' "extract prints the elapsed time"
  expect_status 0 "extract again, other batch size" "$NORMLAB" --threads 2 extract \
    --model "$model" --offset 100 --images 8 --points 2000 --seed 5 --batch 3 \
    --output "$TMP/e2.maps"
  expect_status 0 "maps --json of the extraction" "$NORMLAB" maps --maps "$TMP/e1.maps" --json
  cp "$TMP/out" "$TMP/e1.json"
  run "$NORMLAB" maps --maps "$TMP/e2.maps" --json
  cp "$TMP/out" "$TMP/e2.json"
  run python3 - "$TMP/e1.json" "$TMP/e2.json" <<'EOF'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
m = a["metadata"]
ok = (m["seed"] == "5" and m["points"] == "2000" and m["images"] == "8" and m["offset"] == "100"
      and m["data"] == "fmnist:test" and m["model"].endswith("vit_tiny_p4_fmnist.safetensors")
      and len(a["layers"]) == 25 and a["layers"][0]["name"] == "blocks.0.norm1"
      and a["layers"][-1]["name"] == "norm")
for la, lb in zip(a["layers"], b["layers"]):
    for k in ("x_mean", "x_var", "y_mean", "y_var", "x_min", "x_max"):
        ok = ok and abs(la[k] - lb[k]) <= 1e-5 * (1 + abs(la[k]))
sys.exit(not ok)
EOF
  ok "$rc" "metadata recorded; batch size does not change the points"
  expect_status 2 "extract --images 0 exits 2" "$NORMLAB" extract --model "$model" --images 0 \
    --output "$TMP/e3.maps"
  expect_status 2 "extract past the end of the split exits 2" "$NORMLAB" extract \
    --model "$model" --offset 9990 --images 64 --output "$TMP/e3.maps"
  expect_err "only 10 images" "the error says how many images there are"
  [ ! -e "$TMP/e3.maps" ]
  ok $? "no output file after a failed extraction"
fi

done_testing
