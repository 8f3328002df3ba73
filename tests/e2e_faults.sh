#!/usr/bin/env bash
# Faults from disk for the CLI: broken checkpoints (missing, truncated
# mid-tensor, header lying about lengths, offsets, dtypes and shapes),
# datasets with a missing image, a corrupt annotation or an image listed
# twice, outputs that cannot be written; each fails (or skips the item) with
# a clear message and no crash, and nothing half-written appears under the
# final name. Then `lostd eval` killed with SIGKILL mid-run and resumed must
# end with the same lines and CorLoc as an uninterrupted run, both from
# --predictions (the VOC07 fixture, 5011 images) and --model (a small set
# made here). Prints PASS/FAIL lines.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh
M=tests/fixtures/models/tiny.safetensors
IMG=tests/fixtures/images/VOC07_000236.jpg
CSV=tests/fixtures/lost/LOST_VOC07.csv

# expect NAME STATUS NEEDLE CMD...: exit status STATUS and NEEDLE in stderr.
expect() {
    local name=$1 want=$2 needle=$3; shift 3
    timeout 120 "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ $rc -gt 125 ]; then fail "$name" "crashed or hung (status $rc): $(tail -c 300 "$T/err")"
    elif [ $rc -ne "$want" ]; then fail "$name" "status $rc, expected $want: $(head -c 300 "$T/err")"
    elif ! grep -qF -- "$needle" "$T/err"; then
        fail "$name" "stderr lacks '$needle': $(head -c 300 "$T/err")"
    else pass "$name"; fi
}

# ---- checkpoints
$PY - "$M" "$T" <<'PY'
import json, struct, sys
src, T = sys.argv[1], sys.argv[2]
b = open(src, "rb").read()
hl = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + hl])
data = b[8 + hl:]
def write(name, hdr, data, hlen=None):
    hb = json.dumps(hdr).encode()
    hb += b" " * ((-len(hb)) % 8)
    n = hlen if hlen is not None else len(hb)
    open(f"{T}/{name}.safetensors", "wb").write(struct.pack("<Q", n) + hb + data)
def copy():
    return json.loads(json.dumps(h))
names = [k for k in h if k != "__metadata__"]
big = max(names, key=lambda k: h[k]["data_offsets"][1] - h[k]["data_offsets"][0])
other = [k for k in names if k != big][0]
s, e = h[big]["data_offsets"]
open(f"{T}/trunc_mid.safetensors", "wb").write(b[:8 + hl + (s + e) // 2])
open(f"{T}/trunc_header.safetensors", "wb").write(b[:8 + hl // 2])
x = copy(); x[big]["data_offsets"] = [s, e + 4096]; write("offset_past_end", x, data)
x = copy(); x[big]["data_offsets"] = [s + 4, e]; write("offset_short", x, data)
x = copy(); n = x[other]["data_offsets"][1] - x[other]["data_offsets"][0]
x[other]["data_offsets"] = [s, s + n]; write("offset_overlap", x, data)
x = copy(); x[big]["data_offsets"] = [e, s]; write("offset_reversed", x, data)
x = copy(); x[big]["data_offsets"] = [-8, e]; write("offset_negative", x, data)
x = copy(); x[big]["data_offsets"] = [2**63 - 8, 2**63 + 8]; write("offset_huge", x, data)
x = copy(); x[big]["dtype"] = "F8_E9M9"; write("dtype_unknown", x, data)
x = copy(); x[big]["shape"] = [2**40, 2**40]; write("shape_overflow", x, data)
x = copy(); x[big]["shape"] = [-1, 4]; write("shape_negative", x, data)
x = copy(); x[other + "_dup"] = x[other]; write("aliased_range", x, data)
write("hlen_huge", h, data, hlen=2**63)
write("hlen_past_file", h, data, hlen=len(data) + 1000)
open(f"{T}/header_not_json.safetensors", "wb").write(struct.pack("<Q", 16) + b"{not json here!}")
open(f"{T}/header_array.safetensors", "wb").write(struct.pack("<Q", 8) + b"[1,2,3] ")
open(f"{T}/empty.safetensors", "wb").write(b"")
PY
expect "checkpoint missing" 1 "No such file" "$LOSTD" discover --model "$T/none.safetensors" "$IMG"
expect "checkpoint is a directory" 1 "$T" "$LOSTD" discover --model "$T" "$IMG"
for c in trunc_mid:outside trunc_header:header offset_past_end:outside offset_short:need \
         offset_overlap:overlap offset_reversed:begin offset_negative:data_offsets \
         offset_huge:safetensors dtype_unknown:dtype shape_overflow:shape \
         shape_negative:shape aliased_range:overlap hlen_huge:header hlen_past_file:header \
         header_not_json:header header_array:header empty:bytes; do
    expect "checkpoint ${c%%:*} -> clear error" 1 "${c#*:}" \
        "$LOSTD" discover --model "$T/${c%%:*}.safetensors" "$IMG"
done
# The daemon with a broken checkpoint: reports it and exits 1, it does not serve.
timeout 60 "$LOSTD" serve --host 127.0.0.1 --port 0 --model "$T/trunc_mid.safetensors" \
    >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -eq 1 ] && grep -q 'outside' "$T/err"; then pass "serve with a truncated checkpoint exits 1"
else fail "serve with a truncated checkpoint" "status $rc: $(tail -c 300 "$T/err")"; fi

# ---- datasets: a small VOC layout with a missing image and a corrupt annotation
V=$T/voc/VOCdevkit/VOC2007
mkdir -p "$V/Annotations" "$V/JPEGImages" "$V/ImageSets/Main"
xml() { # id xmin ymin xmax ymax
    printf '<annotation><filename>%s.jpg</filename><size><width>500</width><height>381</height></size><object><name>thing</name><bndbox><xmin>%s</xmin><ymin>%s</ymin><xmax>%s</xmax><ymax>%s</ymax></bndbox></object></annotation>\n' \
        "$1" "$2" "$3" "$4" "$5" >"$V/Annotations/$1.xml"
}
i=0
for op in "" "-flop" "-flip" "-rotate 180" "-crop 400x300+50+40 +repage" "-negate" \
          "-crop 300x381+0+0 +repage" "-crop 300x381+200+0 +repage" "-blur 0x3" \
          "-resize 60%" "-colorspace Gray" "-modulate 100,0" "-roll +120+0" "-roll +0+90" \
          "-resize 130%" "-level 20%,80%"; do
    i=$((i + 1)); id=$(printf '%06d' "$i")
    # shellcheck disable=SC2086
    convert "$IMG" $op "$V/JPEGImages/$id.jpg"
    if [ $((i % 2)) -eq 1 ]; then # ground truth = the box discover gives: a hit
        b=$("$LOSTD" discover --model "$M" "$V/JPEGImages/$id.jpg" 2>/dev/null |
            $PY -c 'import json,sys; b=json.load(sys.stdin)["box"]; print(b[0]+1,b[1]+1,b[2],b[3])')
        # shellcheck disable=SC2086
        xml "$id" ${b:-1 1 9 9}
    else                           # a small corner box: a miss
        xml "$id" 1 1 $((i + 20)) $((i + 20))
    fi
    echo "$id" >>"$V/ImageSets/Main/trainval.txt"
done
cp "$V/ImageSets/Main/trainval.txt" "$T/good_set.txt"
echo 000100 >>"$V/ImageSets/Main/trainval.txt"; xml 000100 1 1 50 50        # no JPEG
echo 000101 >>"$V/ImageSets/Main/trainval.txt"; cp "$IMG" "$V/JPEGImages/000101.jpg"
printf '<annotation><object><name>x</name><bndbox><xmin>1' >"$V/Annotations/000101.xml" # torn XML
echo 000102 >>"$V/ImageSets/Main/trainval.txt"; cp "$IMG" "$V/JPEGImages/000102.jpg"
xml 000102 1 1 abc 50                                                         # non-integer
EV=(eval --dataset voc07 --root "$T/voc")
expect "eval: missing image, corrupt XML -> skipped, exit 3" 3 "" \
    "$LOSTD" "${EV[@]}" --model "$M" --out "$T/skip.jsonl"
if grep -q '"images":16,"hits":8,' "$T/out" && grep -q '"skipped":3' "$T/out"; then
    pass "eval counts 16 images, 8 hits and 3 skipped"
else fail "eval skip counts" "$(cat "$T/out")"; fi
for c in "000100:No such file" "000101:malformed XML" "000102:integer"; do
    id=${c%%:*}
    if grep "\"image_id\":\"$id\"" "$T/skip.jsonl" | grep '"status":"skipped"' |
        grep -qF "${c#*:}" && grep "skipped $id" "$T/err" | grep -qF "${c#*:}"; then
        pass "skipped $id, reason '${c#*:}' in --out and on stderr"
    else
        fail "skipped $id" "no reason '${c#*:}': $(grep "$id" "$T/skip.jsonl" "$T/err")"
    fi
done
cp "$T/good_set.txt" "$V/ImageSets/Main/dup.txt"; echo 000003 >>"$V/ImageSets/Main/dup.txt"
expect "eval: image listed twice -> exit 1" 1 "listed twice" \
    "$LOSTD" "${EV[@]}" --set dup --model "$M" --out "$T/dup.jsonl"
[ ! -e "$T/dup.jsonl" ] && [ ! -e "$T/dup.jsonl.part" ]
[ $? -eq 0 ] && pass "listed twice: nothing written" || fail "listed twice" "output written"
expect "eval: set file missing -> exit 1" 1 "nope.txt" "$LOSTD" "${EV[@]}" --set nope --model "$M"
expect "eval: set name with a slash -> exit 1" 1 "bad set name" \
    "$LOSTD" "${EV[@]}" --set ../../x --model "$M"
mkdir -p "$T/coco/annotations"
printf 'train2014/COCO_train2014_000000000009.jpg\ntrain2014/COCO_train2014_000000000009.jpg\n' \
    >"$T/coco/coco_20k_filenames.txt"
echo '{"images": [], "annotations": []}' >"$T/coco/annotations/instances_train2014.json"
expect "coco: image listed twice -> exit 1" 1 "listed twice" \
    "$LOSTD" eval --dataset coco20k --root "$T/coco" --predictions "$CSV"
printf 'train2014/../../etc/COCO_train2014_000000000009.jpg\n' >"$T/coco/coco_20k_filenames.txt"
expect "coco: '..' in the image list -> exit 1" 1 "not a COCO file name" \
    "$LOSTD" eval --dataset coco20k --root "$T/coco" --predictions "$CSV"

# ---- outputs that cannot be written
touch "$T/afile"
VOC=(eval --dataset voc07 --root tests/fixtures/voc2007)
expect "eval --out under a file -> exit 1" 1 "Not a directory" \
    "$LOSTD" "${VOC[@]}" --predictions "$CSV" --out "$T/afile/x.jsonl"
mkdir -p "$T/outdir"
expect "eval --out is a directory -> exit 1" 1 "directory" \
    "$LOSTD" "${VOC[@]}" --predictions "$CSV" --out "$T/outdir"
[ -d "$T/outdir" ] && [ -z "$(ls -A "$T/outdir")" ]
[ $? -eq 0 ] && pass "eval --out directory left untouched" || fail "eval --out directory" "changed"
expect "features --out under a file -> exit 1" 1 "Not a directory" \
    "$LOSTD" features --model "$M" --image "$IMG" --out "$T/afile/f"
expect "model init --out under a file -> exit 1" 1 "Not a directory" \
    "$LOSTD" model init --arch vits14 --out "$T/afile/m.safetensors"
[ ! -e "$T/afile/m.safetensors" ] && [ "$(find "$T" -name '*.tmp.*' | wc -l)" -eq 0 ]
[ $? -eq 0 ] && pass "no temporary files left behind" || fail "temporary files" "$(find "$T" -name '*.tmp.*')"

# ---- kill -9 mid-run, then --resume: same lines and CorLoc as an uninterrupted run
same_run() { # name, uninterrupted out, resumed out, uninterrupted summary, resumed summary
    $PY - "$@" <<'PY'
import json, sys
name, a, b, sa, sb = sys.argv[1:6]
la = sorted(open(a).read().splitlines())
lb = sorted(open(b).read().splitlines())
ja = json.loads(open(sa).read().strip().splitlines()[-1])
jb = json.loads(open(sb).read().strip().splitlines()[-1])
for k in ("images", "hits", "corloc", "skipped"):
    assert ja[k] == jb[k], (k, ja[k], jb[k])
assert la == lb, "lines differ: %d vs %d" % (len(la), len(lb))
print("PASS %s: corloc %s, %d lines" % (name, jb["corloc"], len(lb)))
PY
    [ $? -eq 0 ] || fail "$1" "resumed run differs from the uninterrupted one"
}
# kill_when NAME OUT MIN_LINES CMD...: starts CMD, SIGKILLs it once OUT.part
# has MIN_LINES lines (or after 20 s), checks the final name was not written.
kill_when() {
    local name=$1 out=$2 min=$3; shift 3
    "$@" >/dev/null 2>&1 &
    local p=$! n=0
    for _ in $(seq 1 2000); do
        n=$(cat "$out.part" 2>/dev/null | wc -l)
        [ "$n" -ge "$min" ] && break
        kill -0 $p 2>/dev/null || break
        sleep 0.01
    done
    kill -9 $p 2>/dev/null
    wait $p 2>/dev/null
    if [ -e "$out" ]; then
        echo "note: $name finished before the kill"
    else
        pass "$name: killed with $(wc -l <"$out.part") lines in $(basename "$out").part, no $(basename "$out")"
    fi
}
"$LOSTD" "${VOC[@]}" --predictions "$CSV" --out "$T/full.jsonl" >"$T/full.sum" 2>/dev/null
for k in 1 500 3000; do
    rm -f "$T/r.jsonl" "$T/r.jsonl.part"
    kill_when "eval --predictions kill -9 at >= $k" "$T/r.jsonl" "$k" \
        "$LOSTD" "${VOC[@]}" --predictions "$CSV" --out "$T/r.jsonl"
    "$LOSTD" "${VOC[@]}" --predictions "$CSV" --out "$T/r.jsonl" --resume >"$T/r.sum" 2>"$T/r.err"
    rc=$?
    [ $rc -eq 0 ] && [ ! -e "$T/r.jsonl.part" ] ||
        fail "resume after kill at $k" "status $rc, $(cat "$T/r.err")"
    same_run "eval --predictions resumed after kill -9 at $k = uninterrupted" \
        "$T/full.jsonl" "$T/r.jsonl" "$T/full.sum" "$T/r.sum"
done
cp "$T/good_set.txt" "$V/ImageSets/Main/trainval.txt"
"$LOSTD" "${EV[@]}" --model "$M" --out "$T/mfull.jsonl" >"$T/mfull.sum" 2>/dev/null
kill_when "eval --model kill -9 mid-run" "$T/m.jsonl" 4 \
    "$LOSTD" "${EV[@]}" --model "$M" --out "$T/m.jsonl"
"$LOSTD" "${EV[@]}" --model "$M" --out "$T/m.jsonl" --resume >"$T/m.sum" 2>"$T/m.err"
rc=$?
[ $rc -eq 0 ] && [ ! -e "$T/m.jsonl.part" ] || fail "eval --model resume" "status $rc $(cat "$T/m.err")"
same_run "eval --model resumed after kill -9 = uninterrupted" \
    "$T/mfull.jsonl" "$T/m.jsonl" "$T/mfull.sum" "$T/m.sum"

# ---- a full disk and a closed stdout: a clear error, never a half-written file
mkdir -p "$T/full"
if mount -t tmpfs -o size=64k lostd-faults "$T/full" 2>/dev/null; then
    "$LOSTD" "${VOC[@]}" --predictions "$CSV" --out "$T/full/r.jsonl" >/dev/null 2>"$T/full.err"
    rc=$?
    if [ $rc -eq 1 ] && grep -qi "no space\|write failed" "$T/full.err" && [ ! -e "$T/full/r.jsonl" ] &&
       [ -z "$(find "$T/full" -name '*.tmp.*')" ]; then
        pass "eval --out on a full disk: exit 1, no result file, no temporary"
    else
        fail "eval --out on a full disk" "status $rc: $(head -c 300 "$T/full.err"); $(ls "$T/full")"
    fi
    rm -f "$T/full/"*
    "$LOSTD" eval --dataset voc07 --merge "$T/full.jsonl" --out "$T/full/merged.jsonl" \
        >/dev/null 2>"$T/merge_full.err"
    rc=$?
    [ $rc -eq 1 ] && [ ! -e "$T/full/merged.jsonl" ] && [ -z "$(ls "$T/full")" ] &&
        pass "eval --merge --out on a full disk: exit 1, nothing left" ||
        fail "eval --merge --out on a full disk" "status $rc: $(head -c 300 "$T/merge_full.err"); $(ls "$T/full")"
    umount "$T/full"
else
    echo "SKIP full-disk cases: cannot mount a tmpfs here (tests/test_file.c covers the writer)"
fi
"$LOSTD" "${VOC[@]}" --predictions "$CSV" >/dev/full 2>"$T/devfull.err"
rc=$?
[ $rc -eq 1 ] && grep -q "cannot write the result" "$T/devfull.err" &&
    pass "eval with stdout on a full device: exit 1 with a message" ||
    fail "eval with stdout on a full device" "status $rc: $(head -c 200 "$T/devfull.err")"
exit 0
