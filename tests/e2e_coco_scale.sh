#!/usr/bin/env bash
# e2e_coco_scale.sh - COCO 20k at full scale, from the repo root. Makes an
# instances file the size of train2014 (82,783 images, 604,907 annotations
# with polygons and crowd RLEs, ~330 MB; tests/coco_scale.py, fixed seed),
# a 19,817-image list and predictions, then:
# - `lostd eval --dataset coco20k --predictions` gives the images, hits,
#   skipped, missing and CorLoc that tests/coco_scale.py's own reading of the
#   same files gives (python3 json, one element at a time), with one --out
#   line per listed image;
# - its peak RSS (GNU time) stays under 150 MB: the reader keeps the
#   selection, not the file (not checked under a sanitizer);
# - the Kubernetes Jobs' command lines for COCO 20k (the VOC07 manifests
#   through README "Deploy"'s sed lines, 4 shards, --model replaced by
#   --predictions) and the merge give the same CorLoc;
# - the file cut at 50 MB fails with exit 1 naming the file and the offset.
# No timing is asserted; the durations are printed. Prints PASS/FAIL/SKIP.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh
failed=0
fail() { echo "FAIL $1: $2"; failed=1; }
# field NAME < json: a top-level scalar of a one-line JSON object (lostd's or python's)
field() { grep -o "\"$1\": *[^,}]*" | head -n 1 | cut -d: -f2- | tr -d '" '; }
RSS_MAX_KB=146484   # 150 MB; GNU time counts KiB

if [ ! -x "$BIN" ]; then
    fail "binary" "$BIN is not built"
    exit 1
fi
if ! command -v "$PY" >/dev/null 2>&1; then
    skip "COCO at scale" "no python3 to make the annotation file"
    exit 0
fi
TIME=/usr/bin/time
"$TIME" -f %M true >/dev/null 2>&1 || TIME=

D=$T/coco
t0=$SECONDS
gen=$("$PY" tests/coco_scale.py gen "$D") || { fail "generate" "tests/coco_scale.py gen failed"; exit 1; }
echo "# generated in $((SECONDS - t0)) s: $gen"
t0=$SECONDS
ref=$("$PY" tests/coco_scale.py ref "$D") || { fail "reference" "tests/coco_scale.py ref failed"; exit 1; }
echo "# python reference in $((SECONDS - t0)) s: $ref"

# 1. the whole selection in one run
ARGS=(eval --dataset coco20k --root "$D" --predictions "$D/predictions.csv")
t0=$SECONDS
if [ -n "$TIME" ]; then
    "$TIME" -f %M -o "$T/rss" "$BIN" "${ARGS[@]}" --out "$T/all.jsonl" >"$T/out" 2>"$T/err"
else
    "$BIN" "${ARGS[@]}" --out "$T/all.jsonl" >"$T/out" 2>"$T/err"
fi
rc=$?
out=$(tail -n 1 "$T/out")
echo "# lostd eval in $((SECONDS - t0)) s: $out"
got="$(field images <<<"$out") $(field hits <<<"$out") $(field skipped <<<"$out") $(field missing_predictions <<<"$out")"
want="$(field images <<<"$ref") $(field hits <<<"$ref") $(field skipped <<<"$ref") $(field missing <<<"$ref")"
# the counts exactly, the percentage to its two decimals
same_pct() { awk -v a="$1" -v b="$2" 'BEGIN {d = a - b; exit !(a != "" && d < 0.005 && d > -0.005)}'; }
lines=$(wc -l <"$T/all.jsonl" 2>/dev/null || echo 0)
listed=$(grep -c . "$D/coco_20k_filenames.txt")
# exit 3: the list holds images without a box (skipped) and without a prediction
if [ $rc -eq 3 ] && [ "$got" = "$want" ] && [ "$lines" = "$listed" ] &&
   same_pct "$(field corloc <<<"$out")" "$(field corloc <<<"$ref")"; then
    pass "coco20k at train2014 size: lostd = python reference (images hits skipped missing: $got, CorLoc $(field corloc <<<"$out"))"
else
    fail "coco20k at train2014 size" "rc $rc, lostd '$got', python '$want', $lines of $listed lines; $(head -c 300 "$T/err")"
fi

# 2. peak RSS
if [ -n "${LOSTD_SAN:-}" ]; then
    skip "COCO peak RSS" "sanitizer build ($LOSTD_SAN): shadow memory"
elif [ -z "$TIME" ]; then
    skip "COCO peak RSS" "GNU time (/usr/bin/time) is not installed (Debian: time)"
else
    kb=$(tail -n 1 "$T/rss")
    if [ -n "$kb" ] && [ "$kb" -lt $RSS_MAX_KB ]; then
        pass "COCO peak RSS $((kb * 1024 / 1000000)) MB < 150 MB (a $(($(stat -c %s "$D/annotations/instances_train2014.json") / 1000000)) MB file)"
    else
        fail "COCO peak RSS" "$kb kB, limit $RSS_MAX_KB kB"
    fi
fi

# 3. the Jobs as README "Deploy" runs COCO 20k: the VOC07 manifests through
# the README's sed lines (N = 4 here), each pod's command line as the kubelet
# makes it (tests/kube.py), the volumes mapped to local folders and --model
# replaced by --predictions; the merge must give the single run's CorLoc.
N=4
if ! "$PY" -c 'import yaml' 2>/dev/null; then
    skip "COCO 20k as $N Job shards" "python3-yaml is not installed (tests/kube.py)"
else
    sed -e "s/completions: 8$/completions: $N/; s/parallelism: 8$/parallelism: $N/; s|)/8$|)/$N|" \
        -e 's/- voc07$/- coco20k/; s/claimName: lostd-voc$/claimName: lostd-coco/' \
        -e 's|/results/shard-|/results/coco20k-shard-|' \
        docker/k8s/eval-shards-job.yaml >"$T/shards.yaml"
    sed -e 's/voc07/coco20k/g; s/claimName: lostd-voc$/claimName: lostd-coco/' \
        -e 's|/results/shard-|/results/coco20k-shard-|' \
        docker/k8s/eval-merge-job.yaml >"$T/merge.yaml"
    mkdir -p "$T/results" "$T/bin"
    ln -s "$(readlink -f "$BIN")" "$T/bin/lostd"
    # pod_argv MANIFEST [INDEX]: the command line, one argument a line, local paths
    pod_argv() {
        "$PY" tests/kube.py "$1" ${2:+--index "$2"} --entrypoint '["lostd"]' \
            --claim lostd-coco="$D" --claim lostd-eval-results="$T/results" \
            --claim lostd-model-cache="$T" |
            sed -n 's/^arg //p' |
            sed -e "s|^/data\$|$D|; s| /data | $D |; s|/results/|$T/results/|g" \
                -e "s|^/var/cache/lostd/.*safetensors\$|MODEL|"
    }
    ok=1
    t0=$SECONDS
    for i in $(seq 0 $((N - 1))); do
        mapfile -t argv < <(pod_argv "$T/shards.yaml" "$i")
        for k in "${!argv[@]}"; do
            [ "${argv[$k]}" = --model ] && argv[k]=--predictions
            [ "${argv[$k]}" = MODEL ] && argv[k]=$D/predictions.csv
        done
        PATH="$T/bin:$PATH" "${argv[@]}" >/dev/null 2>>"$T/shard.err"
        r=$?
        { [ $r -eq 0 ] || [ $r -eq 3 ]; } && [ -f "$T/results/coco20k-shard-$i.jsonl" ] || ok=0
    done
    mapfile -t argv < <(pod_argv "$T/merge.yaml")
    m=$(PATH="$T/bin:$PATH" "${argv[@]}" 2>>"$T/shard.err")
    r=$?
    echo "# $N Job shards and the merge in $((SECONDS - t0)) s: ${argv[*]: -1}"
    if [ $ok = 1 ] && [ $r -eq 3 ] && same_pct "$(field corloc <<<"$m")" "$(field corloc <<<"$ref")" &&
       [ "$(field hits <<<"$m")" = "$(field hits <<<"$ref")" ] &&
       [ "$(field images <<<"$m")" = "$(field images <<<"$ref")" ] &&
       [ "$(field not_evaluated <<<"$m")" = 0 ] && [ -f "$T/results/coco20k-all.jsonl" ]; then
        pass "COCO 20k as $N Job shards (README's sed on the VOC07 manifests) + merge Job = the single run ($(field corloc <<<"$m"))"
    else
        fail "COCO 20k Job shards + merge" "ok $ok rc $r: $m; $(grep -v 'skipped [0-9]' "$T/shard.err" | head -c 300)"
    fi
fi

# 4. a truncated file: exit 1, the file and the offset named
mkdir -p "$T/cut/annotations"
cp "$D/coco_20k_filenames.txt" "$T/cut/"
head -c 50000000 "$D/annotations/instances_train2014.json" >"$T/cut/annotations/instances_train2014.json"
"$BIN" eval --dataset coco20k --root "$T/cut" --predictions "$D/predictions.csv" >/dev/null 2>"$T/cut.err"
rc=$?
if [ $rc -eq 1 ] && grep -q 'instances_train2014.json: byte 50000000 (end of file): ' "$T/cut.err"; then
    pass "truncated 50 MB file: exit 1, $(sed 's|.*/annotations/||' "$T/cut.err" | head -n 1)"
else
    fail "truncated file" "rc $rc: $(head -c 300 "$T/cut.err")"
fi
exit $failed
