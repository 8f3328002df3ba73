#!/usr/bin/env bash
# e2e_eval.sh - `lostd eval` and `lostd lost` end to end, from the repo root.
# VOC07 with LOST's published boxes must give CorLoc 61.90 (3102 of 5011),
# also in 3 shards merged and after an interrupted run resumed; bad
# arguments exit nonzero; the small COCO / VOC12 fixtures are re-scored by an
# independent python3 script (skipped when python3 is missing).
# Prints "PASS name" / "FAIL name: why"; LOSTD_BIN is the binary.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh
FIX=tests/fixtures
failed=0
fail() { echo "FAIL $1: $2"; failed=1; }   # also remembered for the exit status
# field NAME < json: the value of a top-level scalar field of a compact JSON line
field() { grep -o "\"$1\":[^,}]*" | head -n 1 | cut -d: -f2- | tr -d '"'; }

if [ ! -x "$BIN" ]; then
    fail "binary" "$BIN is not built"
    exit 1
fi

VOC="--dataset voc07 --root $FIX/voc2007"
CSV=$FIX/lost/LOST_VOC07.csv

# 1. the reference number
out=$("$BIN" eval $VOC --predictions "$CSV" 2>"$T/err"); rc=$?
if [ $rc -eq 0 ] && [ "$(field corloc <<<"$out")" = "61.9" ] &&
   [ "$(field hits <<<"$out")" = 3102 ] && [ "$(field images <<<"$out")" = 5011 ] &&
   [ "$(field skipped <<<"$out")" = 0 ] && [ "$(field missing_predictions <<<"$out")" = 0 ]; then
    pass "voc07 LOST_VOC07.csv: CorLoc 61.90, 3102 of 5011"
else
    fail "voc07 LOST_VOC07.csv" "rc $rc, got: $out $(head -c 300 "$T/err")"
fi

# 2. three shards, merged
ok=1
for s in 0 1 2; do
    "$BIN" eval $VOC --predictions "$CSV" --shard $s/3 --out "$T/s$s.jsonl" >"$T/s$s.json" 2>>"$T/err" || ok=0
    [ -f "$T/s$s.jsonl" ] && [ ! -f "$T/s$s.jsonl.part" ] || ok=0
done
n=$(cat "$T"/s?.jsonl 2>/dev/null | wc -l)
h=$(cat "$T"/s?.json | awk -F'"hits":' '{split($2, a, ","); s += a[1]} END {print s}')
[ "$n" = 5011 ] && [ "$h" = 3102 ] || ok=0
out=$("$BIN" eval --dataset voc07 --root $FIX/voc2007 --merge "$T"/s0.jsonl "$T"/s1.jsonl \
      "$T"/s2.jsonl --out "$T/all.jsonl" 2>>"$T/err"); rc=$?
if [ $ok -eq 1 ] && [ $rc -eq 0 ] && [ "$(field corloc <<<"$out")" = "61.9" ] &&
   [ "$(field hits <<<"$out")" = 3102 ] && [ "$(field images <<<"$out")" = 5011 ] &&
   [ "$(field not_evaluated <<<"$out")" = 0 ] && [ "$(wc -l <"$T/all.jsonl")" = 5011 ]; then
    pass "voc07 in 3 shards + --merge = 61.90"
else
    fail "voc07 shards + merge" "ok $ok lines $n hits $h rc $rc: $out"
fi
out=$("$BIN" eval --dataset voc07 --root $FIX/voc2007 --merge "$T"/s0.jsonl "$T"/s2.jsonl 2>/dev/null); rc=$?
if [ $rc -eq 3 ] && [ "$(field not_evaluated <<<"$out")" = 1670 ]; then
    pass "merge with a shard missing: exit 3, not_evaluated 1670"
else
    fail "merge with a shard missing" "rc $rc: $out"
fi

# 3. interrupted run (a torn last line) resumed
"$BIN" eval $VOC --predictions "$CSV" --limit 700 --out "$T/r.jsonl" >/dev/null 2>&1
mv "$T/r.jsonl" "$T/r.jsonl.part"
printf '{"image_id":"0099' >>"$T/r.jsonl.part"
out=$("$BIN" eval $VOC --predictions "$CSV" --out "$T/r.jsonl" --resume 2>/dev/null); rc=$?
ids=$(grep -o '"image_id":"[0-9]*"' "$T/r.jsonl" | sort -u | wc -l)
if [ $rc -eq 0 ] && [ "$(field hits <<<"$out")" = 3102 ] && [ "$ids" = 5011 ] &&
   [ "$(wc -l <"$T/r.jsonl")" = 5011 ] && [ ! -f "$T/r.jsonl.part" ]; then
    pass "--resume after an interrupted run"
else
    fail "--resume" "rc $rc ids $ids: $out"
fi

# 4. the JSONL output is itself a predictions file
out=$("$BIN" eval $VOC --predictions "$T/all.jsonl" 2>/dev/null); rc=$?
if [ $rc -eq 0 ] && [ "$(field hits <<<"$out")" = 3102 ]; then
    pass "--predictions accepts the JSONL of --out"
else
    fail "--predictions JSONL" "rc $rc: $out"
fi

# 5. missing predictions: counted as misses, exit 3
grep -v '^00000[5-9],' "$CSV" >"$T/part.csv"
out=$("$BIN" eval $VOC --predictions "$T/part.csv" 2>/dev/null); rc=$?
if [ $rc -eq 3 ] && [ "$(field missing_predictions <<<"$out")" = 3 ] &&
   [ "$(field images <<<"$out")" = 5011 ]; then
    pass "missing predictions count as misses, exit 3"
else
    fail "missing predictions" "rc $rc: $out"
fi

# 6. bad arguments and files
check_rc() { # name want_rc args...
    local name=$1 want=$2; shift 2
    "$BIN" "$@" >"$T/o" 2>"$T/e"; local rc=$?
    if [ $rc -eq "$want" ] && [ -s "$T/e" ]; then pass "$name (exit $want)"
    else fail "$name" "exit $rc, want $want; stderr: $(head -c 200 "$T/e")"; fi
}
printf 'image_id,x1,y1,x2,y2\n000005,1,2,3\n' >"$T/bad.csv"
check_rc "eval without arguments" 2 eval
check_rc "eval unknown dataset" 2 eval --dataset voc99 --root $FIX/voc2007 --predictions "$CSV"
check_rc "eval bad shard" 2 eval $VOC --predictions "$CSV" --shard 3/3
check_rc "eval both sources" 2 eval $VOC --predictions "$CSV" --model m.safetensors
check_rc "eval unknown option" 2 eval $VOC --predictions "$CSV" --frobnicate 1
check_rc "eval --resume without --out" 2 eval $VOC --predictions "$CSV" --resume
check_rc "eval missing root" 1 eval --dataset voc07 --root "$T/nope" --predictions "$CSV"
check_rc "eval missing predictions file" 1 eval $VOC --predictions "$T/nope.csv"
check_rc "eval malformed predictions" 1 eval $VOC --predictions "$T/bad.csv"
check_rc "eval --model not wired yet" 1 eval $VOC --model "$T/m.safetensors"
check_rc "lost without arguments" 2 lost
check_rc "lost bad grid" 2 lost --features x.npy --grid 3 --patch 14 --image-size 10x10
check_rc "lost missing file" 1 lost --features "$T/x.npy" --grid 2x2 --patch 14 --image-size 28x28
check_rc "lost grid mismatch" 1 lost --features $FIX/lost/random_small_k/feats.npy \
    --grid 11x12 --patch 14 --image-size 140x168

# 7. lostd lost on a fixture
out=$("$BIN" lost --features $FIX/lost/tiny_voc_keys_bias/feats.npy --grid 28x36 --patch 14 \
      --image-size 381x500 --gram-bias -12.33444595336914 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q '"box":\[210,280,280,308\]' <<<"$out" &&
   grep -q '"box_feat":\[20,15,22,20\]' <<<"$out" && [ "$(field seed <<<"$out")" = 774 ] &&
   [ "$(field seed_degree <<<"$out")" = 53 ] && [ "$(field n_similar <<<"$out")" = 10 ]; then
    pass "lostd lost tiny_voc_keys_bias"
else
    fail "lostd lost tiny_voc_keys_bias" "rc $rc: $out"
fi

# 8. independent re-scoring of the COCO and VOC12 fixtures
if ! command -v python3 >/dev/null 2>&1; then
    echo "PASS independent python3 check (skipped: no python3)"
else
    for ds in coco20k voc12; do
        if [ $ds = coco20k ]; then root=$FIX/coco20k; else root=$FIX/voc2012; fi
        out=$("$BIN" eval --dataset $ds --root $root --predictions $root/predictions.csv 2>/dev/null)
        rc=$?
        want=$(python3 - "$ds" "$root" <<'EOF'
import json, os, sys
import xml.etree.ElementTree as ET
sys.path.insert(0, "tests")
import corloc_ref
ds, root = sys.argv[1], sys.argv[2]
preds = {}
for line in open(os.path.join(root, "predictions.csv")).read().split("\n")[1:]:
    if line:
        f = line.split(",")
        preds[f[0]] = [int(v) for v in f[1:]]
items = []  # (key, gt boxes or None when the item cannot be evaluated)
if ds == "coco20k":
    ids = sorted(int(l.strip().rsplit("_", 1)[1].split(".")[0])
                 for l in open(os.path.join(root, "coco_20k_filenames.txt")) if l.strip())
    doc = json.load(open(os.path.join(root, "annotations", "instances_train2014.json")))
    gts = {}
    for a in doc["annotations"]:
        if a["iscrowd"] == 1:
            continue
        x, y, w, h = a["bbox"]
        gts.setdefault(a["image_id"], []).append(
            [int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h))])
    items = [(str(i), gts.get(i)) for i in ids]
else:
    base = os.path.join(root, "VOCdevkit", "VOC2012")
    for v in open(os.path.join(base, "ImageSets", "Main", "trainval.txt")).read().split():
        boxes = []
        for o in ET.parse(os.path.join(base, "Annotations", v + ".xml")).getroot().iter("object"):
            b = o.find("bndbox")
            c = [int(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
            boxes.append([c[0] - 1, c[1] - 1, c[2], c[3]])
        items.append((v, boxes or None))
images, hits, skipped, missing = corloc_ref.score(items, preds)
print(images, hits, skipped, missing, "%.2f" % (100.0 * hits / images))
EOF
)
        got="$(field images <<<"$out") $(field hits <<<"$out") $(field skipped <<<"$out") $(field missing_predictions <<<"$out")"
        same_pct=$(awk -v a="$(field corloc <<<"$out")" -v b="$(cut -d' ' -f5 <<<"$want")" \
                   'BEGIN {d = a - b; print (a != "" && d < 0.005 && d > -0.005) ? 1 : 0}')
        if [ "$got" = "$(cut -d' ' -f1-4 <<<"$want")" ] && [ "$same_pct" = 1 ] &&
           { [ $rc -eq 0 ] || [ $rc -eq 3 ]; }; then
            pass "$ds fixture matches an independent python3 scoring ($want)"
        else
            fail "$ds fixture vs python3" "lostd '$got' rc $rc, python '$want': $out"
        fi
    done
fi
# --out must be a regular file (or not exist): checked before any work, so a
# long run cannot fail at its final rename or replace a device.
for bad in "$(mktemp -d)" /dev/null; do
    if "$BIN" eval --dataset voc07 --root tests/fixtures/voc2007 \
            --predictions tests/fixtures/lost/LOST_VOC07.csv --out "$bad" >/dev/null 2>"${TMPDIR:-/tmp}/lostd_eval_err"; then
        fail "eval --out $bad refused" "exit 0"
    elif grep -q "not a regular file" "${TMPDIR:-/tmp}/lostd_eval_err" && [ ! -e "$bad.part" ] && [ -e /dev/null ]; then
        pass "eval --out $bad refused up front"
    else
        fail "eval --out $bad refused" "$(cat "${TMPDIR:-/tmp}/lostd_eval_err")"
    fi
done
exit $failed
