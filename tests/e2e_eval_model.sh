#!/usr/bin/env bash
# `lostd eval --model` end to end on a small dataset in VOC layout made here:
# three copies of the VOC image (ground truth set so that two are hits and one
# a miss), one listed image whose JPEG is missing and one corrupt JPEG (both
# reported and skipped, exit status 3), then the same run in two shards merged.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh
M=tests/fixtures/models/tiny.safetensors
IMG=tests/fixtures/images/VOC07_000236.jpg
tmp=$T
V=$tmp/VOCdevkit/VOC2007
mkdir -p "$V/Annotations" "$V/JPEGImages" "$V/ImageSets/Main"
xml() { # id xmin ymin xmax ymax (1-based inclusive, as VOC)
    cat >"$V/Annotations/$1.xml" <<XML
<annotation><filename>$1.jpg</filename><size><width>500</width><height>381</height><depth>3</depth></size>
<object><name>thing</name><difficult>0</difficult><bndbox><xmin>$2</xmin><ymin>$3</ymin><xmax>$4</xmax><ymax>$5</ymax></bndbox></object>
</annotation>
XML
}
# discover's box for this image and model: [84, 168, 266, 266] (0-based, exclusive)
for id in 000001 000002 000003 000004 000005; do echo $id >>"$V/ImageSets/Main/trainval.txt"; done
cp "$IMG" "$V/JPEGImages/000001.jpg"; xml 000001 85 169 266 266     # the same box: hit
cp "$IMG" "$V/JPEGImages/000002.jpg"; xml 000002 1 1 60 60          # far away: miss
cp "$IMG" "$V/JPEGImages/000003.jpg"; xml 000003 80 160 270 280     # close: hit
xml 000004 1 1 10 10                                                # JPEG missing
head -c 2000 "$IMG" >"$V/JPEGImages/000005.jpg"; xml 000005 1 1 10 10 # corrupt

"$LOSTD" eval --dataset voc07 --root "$tmp" --model "$M" --out "$tmp/all.jsonl" \
    >"$tmp/sum.json" 2>"$tmp/err"
rc=$?
if [ $rc -eq 3 ]; then echo "PASS eval --model exits 3 when images are skipped"
else echo "FAIL eval --model exits 3 when images are skipped: status $rc $(cat "$tmp/err")"; fi
if python3 - "$tmp/sum.json" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
ok = j["images"] == 3 and j["hits"] == 2 and abs(j["corloc"] - 66.67) < 1e-9 and j["skipped"] == 2
sys.exit(0 if ok else print(j) or 1)
PY
then echo "PASS eval --model CorLoc 66.67 over 3 images, 2 skipped"
else echo "FAIL eval --model CorLoc 66.67 over 3 images, 2 skipped: $(cat "$tmp/sum.json")"; fi
if grep -q 000004 "$tmp/err" && grep -q 000005 "$tmp/err"; then
    echo "PASS eval --model reports the missing and the corrupt image"
else
    echo "FAIL eval --model reports the missing and the corrupt image: $(cat "$tmp/err")"
fi
for s in 0 1; do
    "$LOSTD" eval --dataset voc07 --root "$tmp" --model "$M" --shard $s/2 --out "$tmp/s$s.jsonl" >/dev/null 2>&1
done
"$LOSTD" eval --dataset voc07 --merge "$tmp/s0.jsonl" "$tmp/s1.jsonl" >"$tmp/merged.json" 2>/dev/null
if python3 -c "
import json, sys
a = json.loads(open('$tmp/sum.json').read().strip().splitlines()[-1])
b = json.loads(open('$tmp/merged.json').read().strip().splitlines()[-1])
sys.exit(0 if (a['images'], a['hits'], a['corloc']) == (b['images'], b['hits'], b['corloc']) else 1)"; then
    echo "PASS eval --model shards merge to the same CorLoc"
else
    echo "FAIL eval --model shards merge to the same CorLoc: $(cat "$tmp/merged.json")"
fi

# --method tokencut: the same protocol; each image's box is discover's TokenCut box
"$LOSTD" discover --model "$M" --method tokencut "$IMG" >"$tmp/tc.json" 2>/dev/null
"$LOSTD" eval --dataset voc07 --root "$tmp" --model "$M" --method tokencut \
    --out "$tmp/tc.jsonl" >"$tmp/tc_sum.json" 2>/dev/null
rc=$?
if [ $rc -eq 3 ] && python3 - "$tmp/tc.json" "$tmp/tc.jsonl" "$tmp/tc_sum.json" <<'PY'
import json, sys
box = json.load(open(sys.argv[1]))["box"]
lines = [json.loads(l) for l in open(sys.argv[2])]
ok = [l for l in lines if l.get("status") == "ok"]
assert len(ok) == 3 and all(l["box"] == box for l in ok), (box, ok)
s = json.loads(open(sys.argv[3]).read().strip().splitlines()[-1])
assert s["images"] == 3 and s["skipped"] == 2, s
PY
then echo "PASS eval --model --method tokencut: discover's TokenCut box per image, same counts"
else echo "FAIL eval --model --method tokencut: status $rc $(cat "$tmp/tc_sum.json")"; fi

# EXIF: dataset boxes are in the stored pixels' frame (LOST reads images with
# PIL, no orientation applied). A folder with the VOC image twice, the second
# copy tagged with EXIF orientation 6 (display rotated 90 degrees): eval gives
# both the untagged copy's box; --exif apply rotates the tagged one (so the
# tag is really read), discover applies it by default and --exif ignore not.
E=$tmp/exif/VOCdevkit/VOC2007
mkdir -p "$E/Annotations" "$E/JPEGImages" "$E/ImageSets/Main"
printf '000001\n000002\n' >"$E/ImageSets/Main/trainval.txt"
cp "$IMG" "$E/JPEGImages/000001.jpg"
python3 - "$IMG" "$E/JPEGImages/000002.jpg" <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read()
ifd = struct.pack('>H', 1) + struct.pack('>HHIHH', 0x0112, 3, 1, 6, 0) + struct.pack('>I', 0)
app1 = b'Exif\x00\x00' + b'MM\x00\x2a' + struct.pack('>I', 8) + ifd
open(sys.argv[2], 'wb').write(b[:2] + b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1
                              + b[2:])
PY
for id in 000001 000002; do
    V=$E xml $id 85 169 266 266
done
boxes() { # jsonl: the boxes of 000001 and 000002, one per line
    python3 -c "
import json, sys
r = {}
for l in open(sys.argv[1]):
    j = json.loads(l)
    if 'box' in j: r[j['image_id']] = j['box']
d = lambda b: json.dumps(b, separators=(',', ':'))
print(d(r.get('000001')), d(r.get('000002')))" "$1"
}
"$LOSTD" eval --dataset voc07 --root "$tmp/exif" --model "$M" --out "$tmp/exif.jsonl" \
    >"$tmp/exif_sum.json" 2>"$tmp/exif_err"
rc=$?
read -r b1 b2 <<<"$(boxes "$tmp/exif.jsonl")"
if [ $rc -eq 0 ] && [ "$b1" = "$b2" ] && [ "$b1" != null ] &&
   grep -q '"hits": *2\|"hits":2' "$tmp/exif_sum.json"; then
    echo "PASS eval ignores EXIF orientation: the tagged copy gets the untagged box $b1"
else
    echo "FAIL eval ignores EXIF orientation: status $rc, $b1 vs $b2, $(cat "$tmp/exif_sum.json" "$tmp/exif_err")"
fi
"$LOSTD" eval --dataset voc07 --root "$tmp/exif" --model "$M" --exif apply \
    --out "$tmp/exif_apply.jsonl" >/dev/null 2>&1
read -r a1 a2 <<<"$(boxes "$tmp/exif_apply.jsonl")"
if [ "$a1" = "$b1" ] && [ "$a2" != "$b1" ] && [ "$a2" != null ]; then
    echo "PASS eval --exif apply reads the tag (the tagged copy's box moves: $a2)"
else
    echo "FAIL eval --exif apply reads the tag: $a1 $a2 (untagged $b1)"
fi
d_apply=$("$LOSTD" discover --model "$M" "$E/JPEGImages/000002.jpg" 2>/dev/null |
          python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["box"], separators=(",", ":")))')
d_ign=$("$LOSTD" discover --model "$M" --exif ignore "$E/JPEGImages/000002.jpg" 2>/dev/null |
        python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["box"], separators=(",", ":")))')
if [ "$d_apply" = "$a2" ] && [ "$d_ign" = "$b1" ]; then
    echo "PASS discover applies EXIF by default ($d_apply), --exif ignore gives eval's box"
else
    echo "FAIL discover EXIF default: apply $d_apply (want $a2), ignore $d_ign (want $b1)"
fi
"$LOSTD" eval --dataset voc07 --root "$tmp/exif" --model "$M" --exif sideways \
    --out "$tmp/x.jsonl" >/dev/null 2>"$tmp/bad_exif"
rc=$?
if [ $rc -eq 2 ] && grep -q 'exif must be one of apply, ignore' "$tmp/bad_exif"; then
    echo "PASS eval --exif sideways: exit 2 with the table's message"
else
    echo "FAIL eval --exif sideways: status $rc $(cat "$tmp/bad_exif")"
fi
