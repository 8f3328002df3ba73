#!/usr/bin/env bash
# End-to-end checks of `analyze`, `calibrate`, --lost-config and
# --max-objects on the tiny fixture model: analyze prints every documented
# key with consistent sizes and writes the heat maps; calibrate on a small
# VOC layout whose ground truth is the box of one chosen setting reports
# that setting at 100 % and a best of 100 %, resumes from its cache, refuses
# a cache of another grid, and writes a settings file that discover and eval
# accept (eval reproduces the CorLoc calibrate reported; explicit flags win).
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh
FIX=tests/fixtures
M=$FIX/models/tiny.safetensors
IMGS=("$FIX/images/VOC07_000236.jpg" static/samples/shapes.jpg static/samples/disc.png)
tmp=$T

# ---- analyze -------------------------------------------------------------------
if "$LOSTD" analyze --model "$M" --png "$tmp/png" "${IMGS[@]}" >"$tmp/an.jsonl" 2>"$tmp/err"; then
    if msg=$(python3 - "$tmp/an.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 3, f"{len(lines)} lines"
for j in lines:
    gh, gw = j["grid"]
    n = gh * gw
    for k in ("image", "width", "height", "patch", "n_reg", "cls_norm", "register_norms",
              "patch_norms", "norm_stats", "outliers", "neighbor_similarity",
              "neighbor_similarity_mean", "attention", "timings_ms"):
        assert k in j, f"missing {k}"
    assert len(j["patch_norms"]) == n and len(j["neighbor_similarity"]) == n
    assert len(j["register_norms"]) == j["n_reg"] == 4
    a = j["attention"]
    assert len(a["cls"]) == n and len(a["registers"]) == 4
    assert all(len(r) == n for r in a["registers"])
    for m, row in zip([a["patch_mass"]["cls"]] + a["patch_mass"]["registers"],
                      [a["cls"]] + a["registers"]):
        assert abs(sum(row) - m) < 1e-3 and 0 < m <= 1.0001, (m, sum(row))
    o = j["outliers"]
    assert o["method"] == "otsu" and o["count"] == len(o["positions"])
    # a random model has no artifacts: unimodal norms, no outliers
    assert o["bimodal"] is False and o["count"] == 0, o
    st = j["norm_stats"]
    assert abs(st["max"] - max(j["patch_norms"])) < 1e-3 * st["max"]
PY
    ); then pass "analyze JSON has every map with consistent sizes"; else fail "analyze JSON has every map with consistent sizes" "$msg"; fi
    n_png=$(ls "$tmp/png" | grep -c '\.png$')
    # 3 images x (norms, outliers, neighbor_sim, attn_cls, 4 registers)
    if [ "$n_png" -eq 24 ] && python3 - "$tmp/png/000_VOC07_000236_attn_reg3.png" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read(32)
assert b[:8] == b"\x89PNG\r\n\x1a\n"
w, h = struct.unpack(">II", b[16:24])
assert (w, h) == (500, 381), (w, h)
PY
    then pass "analyze --png writes every heat map at the image size"
    else fail "analyze --png writes every heat map at the image size" "$n_png files"; fi
else
    fail "analyze runs" "$(head -c 300 "$tmp/err")"
fi
out=$("$LOSTD" analyze --model "$M" --threshold 8 "${IMGS[0]}" 2>/dev/null)
if echo "$out" | python3 -c '
import json, sys
o = json.loads(sys.stdin.read())["outliers"]
assert o["method"] == "fixed" and o["threshold"] == 8 and o["count"] > 0, o
'; then pass "analyze --threshold is a fixed threshold"; else fail "analyze --threshold is a fixed threshold" "$out"; fi
"$LOSTD" analyze --model "$M" --threshold -1 "${IMGS[0]}" >/dev/null 2>&1
[ $? -eq 2 ] && pass "analyze refuses a bad threshold" || fail "analyze refuses a bad threshold" "status not 2"

# ---- multi-object discover ---------------------------------------------------------
out=$("$LOSTD" discover --model "$M" --max-objects 4 "${IMGS[0]}" 2>/dev/null)
one=$("$LOSTD" discover --model "$M" "${IMGS[0]}" 2>/dev/null)
if python3 - "$out" "$one" <<'PY'
import json, sys
j, k = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert 1 <= len(j["boxes"]) <= 4 and j["boxes"][0]["box"] == j["box"] == k["box"]
assert j["stop"] in ("max_objects", "empty", "seed_degree", "background", "overlap")
assert "boxes" not in k
PY
then pass "discover --max-objects adds boxes, the first is LOST's"
else fail "discover --max-objects adds boxes, the first is LOST's" "$out"; fi

# ---- calibrate on a VOC layout built here ------------------------------------------
# Ground truth = the box of one setting (layer -2, v, L2 on, bias -0.3).
voc=$tmp/voc/VOCdevkit/VOC2007
mkdir -p "$voc/JPEGImages" "$voc/Annotations" "$voc/ImageSets/Main"
: >"$voc/ImageSets/Main/trainval.txt"
i=0
for img in "${IMGS[@]}"; do
    id=$(printf '%06d' $((i + 1)))
    ext=${img##*.}
    cp "$img" "$voc/JPEGImages/$id.$ext"
    "$LOSTD" discover --model "$M" --features v --l2norm --gram-bias -0.3 --layer -2 \
        "$img" >"$tmp/d.json" 2>/dev/null
    python3 - "$tmp/d.json" "$id" "$ext" >"$voc/Annotations/$id.xml" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
x1, y1, x2, y2 = j["box"]
print(f"""<annotation><filename>{sys.argv[2]}.{sys.argv[3]}</filename>
<size><width>{j['width']}</width><height>{j['height']}</height><depth>3</depth></size>
<object><name>thing</name><difficult>0</difficult>
<bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>
</object></annotation>""")
PY
    echo "$id" >>"$voc/ImageSets/Main/trainval.txt"
    i=$((i + 1))
done
cal() { "$LOSTD" calibrate --dataset voc07 --root "$tmp/voc" --model "$M" --subset 3 \
            --out "$tmp/best.json" "$@"; }
if cal --biases 0,-0.3 --layers -1,-2 >"$tmp/table" 2>"$tmp/err"; then
    if msg=$(python3 - "$tmp/table" "$tmp/best.json" <<'PY'
import json, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
assert len(rows) == 2 * 3 * 2 * 2, f"{len(rows)} rows"
star = [r for r in rows if r[:4] == ["-2", "v", "on", "-0.3"]]
assert star and star[0][4] == "100.00", star
best = [r for r in rows if r[-1] == "*best"]
assert len(best) == 1 and best[0][4] == "100.00", best
b = json.load(open(sys.argv[2]))
assert b["corloc"] == 100 and b["images"] == 3, b
assert [str(b["layer"]), b["features"], "on" if b["l2norm"] else "off"] == best[0][:3], b
assert abs(b["gram_bias"] - float(best[0][3])) < 1e-6, b
# the tie-break: no row before the starred best reaches 100
first = [r for r in rows if r[4] == "100.00"][0]
assert first == best[0][:6] or first[:4] == best[0][:4], (first, best)
PY
    ); then pass "calibrate finds the setting that is best by construction"
    else fail "calibrate finds the setting that is best by construction" "$msg"; fi
else
    fail "calibrate runs" "$(head -c 400 "$tmp/err")"
fi
cache=$tmp/best.json.cache.jsonl
if [ "$(wc -l <"$cache")" -eq 4 ] && [ ! -e "$cache.tmp" ]; then
    pass "calibrate cache: header and one line per image"
else
    fail "calibrate cache: header and one line per image" "$(wc -l <"$cache") lines"
fi
cp "$tmp/table" "$tmp/table1"
if cal --biases 0,-0.3 --layers -1,-2 >"$tmp/table" 2>"$tmp/err" &&
   grep -q "3 from the cache" "$tmp/err" && cmp -s "$tmp/table" "$tmp/table1"; then
    pass "calibrate resumes from its cache with the same table"
else
    fail "calibrate resumes from its cache with the same table" "$(head -c 300 "$tmp/err")"
fi
cal --biases 0 --layers -1,-2 >/dev/null 2>"$tmp/err"
if [ $? -eq 1 ] && grep -q -- "--fresh" "$tmp/err"; then
    pass "calibrate refuses a cache of another grid"
else
    fail "calibrate refuses a cache of another grid" "$(head -c 300 "$tmp/err")"
fi
cal --gram-bias 1 >/dev/null 2>&1
[ $? -eq 2 ] && pass "calibrate refuses a single swept option" || fail "calibrate refuses a single swept option" "status not 2"

# ---- the settings file in discover and eval ------------------------------------------
out=$("$LOSTD" discover --model "$M" --lost-config "$tmp/best.json" "${IMGS[0]}" 2>&1)
exp=$(python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); print(b["features"], 2 + b["layer"])' "$tmp/best.json")
got=$(echo "$out" | python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); print(j["feature"], j["layer"])' 2>/dev/null)
[ -n "$exp" ] && [ "$got" = "$exp" ] && pass "discover --lost-config applies the file" || fail "discover --lost-config applies the file" "got '$got' want '$exp'"
got=$("$LOSTD" discover --model "$M" --layer -1 --lost-config "$tmp/best.json" "${IMGS[0]}" 2>/dev/null |
      python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["layer"])' 2>/dev/null)
[ "$got" = "1" ] && pass "an explicit flag overrides --lost-config" || fail "an explicit flag overrides --lost-config" "layer '$got'"
echo '{"features": "w"}' >"$tmp/bad.json"
"$LOSTD" discover --model "$M" --lost-config "$tmp/bad.json" "${IMGS[0]}" >/dev/null 2>"$tmp/err"
if [ $? -eq 2 ] && grep -q features "$tmp/err"; then pass "a bad --lost-config is a usage error"
else fail "a bad --lost-config is a usage error" "$(head -c 200 "$tmp/err")"; fi
if "$LOSTD" eval --dataset voc07 --root "$tmp/voc" --model "$M" --lost-config "$tmp/best.json" \
       >"$tmp/eval.json" 2>"$tmp/err" &&
   python3 -c 'import json,sys; s=json.loads(open(sys.argv[1]).read().splitlines()[-1]); assert abs(s["corloc"] - 100) < 1e-9, s' "$tmp/eval.json" 2>"$tmp/err2"; then
    pass "eval --lost-config reproduces calibrate's CorLoc"
else
    fail "eval --lost-config reproduces calibrate's CorLoc" "$(head -c 300 "$tmp/err" "$tmp/err2" "$tmp/eval.json")"
fi

# ---- serve: POST /analyze and --lost-config ----------------------------------------------
"$LOSTD" serve --host 127.0.0.1 --port 0 --model "$M" --lost-config "$tmp/best.json" \
    >"$tmp/serve.out" 2>"$tmp/serve.err" &
spid=$!
on_exit 'kill -TERM $spid 2>/dev/null' 
port=
for _ in $(seq 1 100); do
    port=$(sed -n 's|^lostd: listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$tmp/serve.out")
    [ -n "$port" ] && break
    sleep 0.05
done
ready=
for _ in $(seq 1 200); do
    [ -n "$port" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready")" = 200 ] && ready=1 && break
    sleep 0.05
done
if [ -z "$ready" ]; then
    fail "serve starts with --lost-config" "$(head -c 300 "$tmp/serve.err")"
else
    url=http://127.0.0.1:$port
    st=$(curl -s -o "$tmp/an_http.json" -w '%{http_code}' --data-binary @"${IMGS[0]}" \
         -H 'Content-Type: image/jpeg' "$url/analyze")
    if [ "$st" = 200 ] && python3 - "$tmp/an_http.json" "$tmp/an.jsonl" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))
c = json.loads(open(sys.argv[2]).readline())
assert h["grid"] == c["grid"] and h["outliers"]["count"] == c["outliers"]["count"]
assert max(abs(a - b) for a, b in zip(h["patch_norms"], c["patch_norms"])) < 1e-4
assert len(h["attention"]["registers"]) == 4
PY
    then pass "POST /analyze answers what lostd analyze prints"
    else fail "POST /analyze answers what lostd analyze prints" "status $st $(head -c 200 "$tmp/an_http.json")"; fi
    st=$(curl -s -o "$tmp/an_thr.json" -w '%{http_code}' --data-binary @"${IMGS[0]}" \
         -H 'Content-Type: image/jpeg' "$url/analyze?threshold=8")
    if [ "$st" = 200 ] && python3 -c 'import json,sys; o=json.load(open(sys.argv[1]))["outliers"]; assert o["method"] == "fixed" and o["count"] > 0' "$tmp/an_thr.json"
    then pass "POST /analyze?threshold= is a fixed threshold"
    else fail "POST /analyze?threshold= is a fixed threshold" "status $st"; fi
    st=$(curl -s -o "$tmp/thr_disc.json" -w '%{http_code}' --data-binary @"${IMGS[0]}" \
         -H 'Content-Type: image/jpeg' "$url/discover?threshold=8")
    [ "$st" = 400 ] && grep -q threshold "$tmp/thr_disc.json" && pass "threshold is refused on /discover" || fail "threshold is refused on /discover" "status $st"
    st=$(curl -s -o /dev/null -w '%{http_code}' --data-binary "not an image" "$url/analyze")
    [ "$st" = 400 ] && pass "POST /analyze with garbage is a 400" || fail "POST /analyze with garbage is a 400" "status $st"
    st=$(curl -s -o "$tmp/disc_http.json" -w '%{http_code}' --data-binary @"${IMGS[0]}" \
         -H 'Content-Type: image/jpeg' "$url/discover")
    exp=$(python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); print(b["features"], 2 + b["layer"])' "$tmp/best.json")
    got=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); p=j.get("parameters", j); print(p["features"], p["layer"])' "$tmp/disc_http.json" 2>/dev/null)
    curl -s "$url/v1/models" >"$tmp/models.json"
    if [ "$st" = 200 ] && [ -n "$exp" ] && [ "$got" = "$exp" ] &&
       python3 - "$tmp/models.json" "$tmp/best.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
ld = m["data"][0]["lost_defaults"] if "data" in m else m["lost_defaults"]
assert ld["features"] == b["features"] and ld["layer"] == b["layer"], (ld, b)
assert ld["l2norm"] == b["l2norm"] and abs(ld["gram_bias"] - b["gram_bias"]) < 1e-6, (ld, b)
PY
    then pass "serve --lost-config sets the LOST defaults"
    else fail "serve --lost-config sets the LOST defaults" "status $st, got '$got' want '$exp', models $(head -c 300 "$tmp/models.json")"; fi
    kill -TERM $spid 2>/dev/null
    wait $spid 2>/dev/null
fi
"$LOSTD" serve --host 127.0.0.1 --port 0 --model "$M" --lost-config "$tmp/bad.json" \
    >/dev/null 2>"$tmp/serve_bad.err" &
bpid=$!
for _ in $(seq 1 100); do kill -0 $bpid 2>/dev/null || break; sleep 0.05; done
if kill -0 $bpid 2>/dev/null; then
    kill -TERM $bpid
    fail "serve refuses a bad --lost-config" "still running"
else
    wait $bpid
    rc=$?
    [ $rc -ne 0 ] && grep -q features "$tmp/serve_bad.err" && pass "serve refuses a bad --lost-config" ||
        fail "serve refuses a bad --lost-config" "status $rc: $(head -c 200 "$tmp/serve_bad.err")"
fi

# ---- --threads: both cores, the same answer ------------------------------------------
for t in 1 2; do
    "$LOSTD" analyze --model "$M" --threads $t "${IMGS[@]}" >"$tmp/an_t$t.jsonl" 2>"$tmp/an_t$t.err"
done
if python3 - "$tmp/an_t1.jsonl" "$tmp/an_t2.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
for x in a + b:
    x.pop("timings_ms", None)
assert a and a == b, "outputs differ"
PY
then pass "analyze --threads 1 and --threads 2 give the same JSON"
else fail "analyze --threads 1 and --threads 2 give the same JSON" "$(head -c 300 "$tmp/an_t2.err")"; fi
for t in 1 2; do
    cal --biases 0,-0.3 --layers -1 --fresh --threads $t --cache "$tmp/cal_t$t.cache" \
        >"$tmp/cal_t$t.table" 2>"$tmp/cal_t$t.err" && cp "$tmp/best.json" "$tmp/best_t$t.json"
done
if cmp -s "$tmp/cal_t1.table" "$tmp/cal_t2.table" && cmp -s "$tmp/best_t1.json" "$tmp/best_t2.json" &&
   [ -s "$tmp/best_t1.json" ]; then
    pass "calibrate --threads 1 and --threads 2 give the same table and settings"
else
    fail "calibrate --threads 1 and --threads 2 give the same table and settings" \
        "$(diff "$tmp/cal_t1.table" "$tmp/cal_t2.table" | head -5) $(head -c 200 "$tmp/cal_t2.err")"
fi
for cmd in analyze calibrate; do
    "$LOSTD" $cmd --model "$M" --threads 0 x.jpg >/dev/null 2>"$tmp/thr.err"
    rc=$?
    [ $rc -eq 2 ] && grep -q -- "--threads" "$tmp/thr.err" && pass "$cmd --threads 0: exit 2 naming the flag" ||
        fail "$cmd --threads 0: exit 2 naming the flag" "status $rc: $(head -c 200 "$tmp/thr.err")"
done

# ---- calibrate --method tokencut sweeps tau; the settings file runs TokenCut
if cal --method tokencut --taus 0.1,0.2,0.3 --layers -1,-2 --features k --fresh \
       --cache "$tmp/tc.cache" >"$tmp/tc_table" 2>"$tmp/tc_err" &&
   python3 - "$tmp/tc_table" "$tmp/best.json" <<'PY'
import json, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()]
assert rows[0][3] == "tau" and len(rows) - 1 == 2 * 3, rows
b = json.load(open(sys.argv[2]))
assert b["method"] == "tokencut" and any(abs(b["tau"] - t) < 1e-6 for t in (0.1, 0.2, 0.3)), b
best = [r for r in rows[1:] if r[-1] == "*best"][0]
assert abs(float(best[3]) - b["tau"]) < 1e-6 and int(best[0]) == b["layer"], (best, b)
PY
then
    "$LOSTD" discover --model "$M" --lost-config "$tmp/best.json" "${IMGS[0]}" >"$tmp/tc_disc.json"
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(j["method"] != "tokencut")' \
        "$tmp/tc_disc.json" && pass "calibrate --method tokencut: a tau table, a settings file discover runs as TokenCut" ||
        fail "calibrate --method tokencut settings file" "$(head -c 300 "$tmp/tc_disc.json")"
else
    fail "calibrate --method tokencut: a tau table, a settings file discover runs as TokenCut" \
        "$(head -c 300 "$tmp/tc_err") $(head -5 "$tmp/tc_table")"
fi
"$LOSTD" calibrate --dataset voc07 --root "$tmp/voc" --model "$M" --method tokencut \
    --biases 0,-0.1 >/dev/null 2>"$tmp/tcb.err"
[ $? -eq 2 ] && grep -q -- "--taus" "$tmp/tcb.err" && pass "calibrate --method tokencut --biases: exit 2" ||
    fail "calibrate --method tokencut --biases: exit 2" "$(cat "$tmp/tcb.err")"
