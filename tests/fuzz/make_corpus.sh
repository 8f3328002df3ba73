#!/usr/bin/env bash
# Regenerates the seed corpora under tests/fuzz/corpus/<target>/ from the
# fixtures and a few hand-made inputs. Needs ImageMagick's convert and
# python3. The outputs are committed; run this only to change them. Every
# file stays small (a few KiB) so `make test` replays them quickly.
set -eu
cd "$(dirname "$0")/../.."
C=tests/fuzz/corpus
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
rm -rf "$C"
mkdir -p "$C"/{safetensors,image,voc,coco,base64,http}

# image: a mode byte (bit 0-1: 0 JPEG, 1 PNG, 2-3 sniff; bit 2: EXIF), then the file.
SRC=tests/fixtures/images/VOC07_000236.jpg
convert "$SRC" -resize 40x30! "$T/rgb.ppm"
mk() { # name, mode byte (octal), convert args... (OUT= prefixes the output, e.g. PNG48:)
    local name=$1 mode=$2; shift 2
    convert "$T/rgb.ppm" "$@" "${OUT:-}$T/$name"
    { printf "\\$mode"; cat "$T/$name"; } >"$C/image/$name"
}
mk base.jpg 000 -quality 80
mk prog.jpg 000 -interlace JPEG -quality 70
mk gray.jpg 002 -colorspace Gray
mk cmyk.jpg 002 -colorspace CMYK
mk exif6.jpg 004 -orient RightTop
mk sub444.jpg 000 -sampling-factor 1x1
mk rgb.png 001
mk rgba.png 001 -alpha set -channel A -evaluate set 50% +channel
mk gray.png 003 -colorspace Gray
mk gray16.png 001 -colorspace Gray -depth 16
OUT=PNG48: mk rgb16.png 001 -depth 16
OUT=PNG8: mk palette.png 001 -colors 8
mk interlaced.png 001 -interlace PNG
head -c 300 "$C/image/base.jpg" >"$C/image/truncated.jpg"

# safetensors: small valid containers of each dtype, metadata, an empty tensor.
python3 - "$C/safetensors" <<'PY'
import json, struct, sys
out = sys.argv[1]
def st(name, tensors, meta=None, pad=8):
    hdr, data = {}, b""
    for tn, dt, shape, raw in tensors:
        hdr[tn] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta:
        hdr["__metadata__"] = meta
    h = json.dumps(hdr).encode()
    h += b" " * ((-len(h)) % pad)
    open(f"{out}/{name}", "wb").write(struct.pack("<Q", len(h)) + h + data)
f32 = struct.pack("<6f", *range(6))
st("f32.st", [("a.weight", "F32", [2, 3], f32)], {"format": "pt"})
st("mixed.st", [("x", "F16", [4], b"\x00\x3c" * 4), ("y", "BF16", [2, 2], b"\x80\x3f" * 4),
                ("z", "I64", [1], struct.pack("<q", 7)), ("b", "BOOL", [3], b"\x01\x00\x01"),
                ("u", "U8", [2], b"\x01\x02")])
st("empty.st", [("e", "F32", [0, 4], b"")])
st("scalar.st", [("s", "F64", [], struct.pack("<d", 1.5))])
open(f"{out}/no_tensors.st", "wb").write(struct.pack("<Q", 2) + b"{}")
PY

# voc: a selection byte (bit 0: no_hard), then one annotation file.
for id in 000005 000007 000009; do
    { printf '\001'; cat tests/fixtures/voc2007/VOCdevkit/VOC2007/Annotations/$id.xml; } \
        >"$C/voc/$id.xml"
done
printf '\000<annotation><filename>a.jpg</filename><size><width>10</width><height>9</height></size><object><name>dog</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>9</xmax><ymax>8</ymax></bndbox></object></annotation>' \
    >"$C/voc/difficult.xml"

# coco: the list, NUL, the JSON (first the fixture's pair, cut down).
python3 - "$C/coco" tests/fixtures/coco20k <<'PY'
import json, sys
out, fx = sys.argv[1], sys.argv[2]
j = json.load(open(fx + "/annotations/instances_train2014.json"))
ids = [im["id"] for im in j["images"][:3]]
small = {"images": j["images"][:3],
         "annotations": [a for a in j["annotations"] if a["image_id"] in ids][:6],
         "categories": j.get("categories", [])[:3]}
lst = "".join("train2014/COCO_train2014_%012d.jpg\n" % i for i in ids)
open(out + "/fixture", "wb").write(lst.encode() + b"\0" + json.dumps(small).encode())
crowd = {"images": [{"id": 9, "width": 10, "height": 10}],
         "annotations": [{"image_id": 9, "bbox": [1.5, 2.5, 3, 4], "iscrowd": True},
                         {"image_id": 9, "bbox": [0, 0, 5, 5], "iscrowd": 0, "category_id": 3},
                         {"image_id": 25, "bbox": [0, 0, "x", 5]}]}
open(out + "/crowd", "wb").write(json.dumps(crowd).encode())
# the streaming reader: key orders, unknown keys holding look-alikes,
# polygons and RLEs, repeated keys, odd numbers, deep nesting, and the
# fixture cut short and broken (inputs for the error paths)
lst = b"train2014/COCO_train2014_000000000001.jpg\ntrain2014/COCO_train2014_000000000002.jpg\n"
orders = ('{"info": {"images": [{"id": 1}]}, "annotations": ['
          '{"bbox": [0.5, 1.5, 2, 1], "category_id": 18, "image_id": 1},'
          '{"segmentation": [[1.5, 2.5, 3, 4], [5, 6, 7, 8]], "iscrowd": 0, "image_id": 2,'
          ' "bbox": [1, 2, 3, 4], "extra": {"image_id": 1, "bbox": [9, 9, 9, 9]}},'
          '{"image_id": 1, "iscrowd": 1, "segmentation": {"counts": [0, 5, 3], "size": [4, 4]}},'
          '{"iscrowd": true, "segmentation": {"counts": "ab]}{[\\"", "size": [2, 2]},'
          ' "image_id": 2}, "stray", null, [1]],'
          ' "images": [{"width": 20, "id": 2, "height": 30.0}, {"id": 1.0, "width": "5"}, 7]}')
open(out + "/orders", "wb").write(lst + b"\0" + orders.encode())
repeated = ('{"annotations": [{"image_id": 1, "bbox": [1, 1, 1, 1]}], "images": [],'
            ' "annotations": [{"image_id": 1, "bbox": [1, 2, 3, 4], "bbox": [1, 2, 3],'
            ' "image_id": 2}, {"iscrowd": 1, "iscrowd": 0, "image_id": 1, "bbox": [2, 2, 2, 2]}],'
            ' "images": [{"id": 1, "width": 3, "width": 4}]}')
open(out + "/repeated", "wb").write(lst + b"\0" + repeated.encode())
numbers = ('{"annotations": [{"image_id": 1, "bbox": [-0, 1e2, 2.5E-1, 1e-400],'
           ' "area": 9223372036854775807, "category_id": -9223372036854775808},'
           ' {"image_id": 2, "bbox": [999999999.5, 0, 1, 1]}], "x": [1E+308, -1.7976931348623157e308]}')
open(out + "/numbers", "wb").write(lst + b"\0" + numbers.encode())
deep = '{"annotations": [], "x": ' + "[" * 200 + "]" * 200 + "}"
open(out + "/deep", "wb").write(lst + b"\0" + deep.encode())
full = open(out + "/fixture", "rb").read()
open(out + "/truncated", "wb").write(full[: len(full) * 2 // 3])
cut = full.index(b"\0") + 1 + (len(full) - full.index(b"\0")) // 2
open(out + "/malformed", "wb").write(full[:cut] + b"}" + full[cut:])
PY

# base64: a cap byte, then the text.
printf '\020aGVsbG8gd29ybGQ=' >"$C/base64/padded"
printf '\020aGVsbG8gd29ybGQ' >"$C/base64/unpadded"
printf '\004aGVs\nbG8g d29y bGQ=' >"$C/base64/space_small_cap"
printf '\377-_-_' >"$C/base64/urlsafe"

# http: request line and headers, a blank line, the body (the harness sets
# Content-Length and Connection).
convert "$T/rgb.ppm" -quality 60 "$T/s.jpg"
convert "$T/rgb.ppm" "$T/s.png"
r() { printf '%b' "$1" >"$C/http/$2"; }
r 'GET /health/ready HTTP/1.1\nHost: x\n\n' get_ready
r 'GET / HTTP/1.1\nHost: x\n\n' get_index
r 'GET /metrics HTTP/1.1\nHost: x\n\n' get_metrics
r 'GET /v1/models HTTP/1.1\nHost: x\n\n' get_models
r 'OPTIONS /discover HTTP/1.1\nHost: x\nOrigin: http://a\n\n' options
r 'DELETE /discover HTTP/1.1\nHost: x\n\n' delete
r 'GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\nHost: x\n\n' traversal
{ printf 'POST /discover?k_patches=50&gram_bias=0.5&debug=1 HTTP/1.1\nHost: x\nContent-Type: image/jpeg\n\n'
  cat "$T/s.jpg"; } >"$C/http/raw_jpeg_params"
{ printf 'POST /discover?format=coco&image_id=7 HTTP/1.1\nHost: x\nContent-Type: image/png\n\n'
  cat "$T/s.png"; } >"$C/http/raw_png_coco"
{ printf 'POST /discover HTTP/1.1\nHost: x\nContent-Type: multipart/form-data; boundary=XyZ\n\n'
  printf -- '--XyZ\r\nContent-Disposition: form-data; name="max_side"\r\n\r\n112\r\n'
  printf -- '--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
  printf 'Content-Type: image/jpeg\r\n\r\n'
  cat "$T/s.jpg"; printf -- '\r\n--XyZ--\r\n'; } >"$C/http/multipart"
{ printf 'POST /discover HTTP/1.1\nHost: x\nContent-Type: application/x-www-form-urlencoded\n\n'
  printf 'k_patches=3&features=q&layer=-1'; } >"$C/http/urlencoded"
python3 - "$T/s.jpg" "$C/http/json" <<'PY'
import base64, json, sys
b = base64.b64encode(open(sys.argv[1], "rb").read()).decode()
body = json.dumps({"inputs": "data:image/jpeg;base64," + b,
                   "parameters": {"format": "hf", "l2norm": False, "k_patches": 10}})
open(sys.argv[2], "w").write("POST /discover HTTP/1.1\nHost: x\nContent-Type: application/json\n\n" + body)
PY
echo "corpus: $(find "$C" -type f | wc -l) files, $(du -sh "$C" | cut -f1)"
