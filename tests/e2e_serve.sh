#!/usr/bin/env bash
# End-to-end test of `lostd serve` on 127.0.0.1 with the tiny fixture model:
# every way of sending an image, the reply shapes, parity with `lostd
# discover`, each bad input and its status (the daemon must keep answering),
# 32 concurrent clients, /metrics counting what was sent, the OpenAPI
# document against the routes, limits, API key, CORS, clients that close
# before their reply (dropped from the queue), a full queue, and a
# graceful SIGTERM. Prints PASS/FAIL lines; needs curl and python3.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh
MODEL=tests/fixtures/models/tiny.safetensors
IMG=tests/fixtures/images/VOC07_000236.jpg

# Fixture images: a JPEG from the fixtures (or made here), a PNG of it, and
# broken variants.
if [ ! -f "$IMG" ]; then
    IMG=$T/img.jpg
    convert -size 320x240 xc:skyblue -fill red -draw "rectangle 100,60 220,180" "$IMG" || exit 1
fi
convert "$IMG" "$T/img.png" 2>/dev/null || cp "$IMG" "$T/img.png"
head -c 4000 /dev/urandom >"$T/garbage.bin"
head -c 2000 "$IMG" >"$T/truncated.jpg"
printf 'GIF89a\001\000\001\000\000\000\000;' >"$T/img.gif"
# The same JPEG declaring 60000 x 60000 pixels in its frame header.
$PY - "$IMG" "$T/huge.jpg" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
i = 2
while i < len(b) - 9:
    if b[i] != 0xFF:
        break
    m = b[i + 1]
    n = (b[i + 2] << 8) | b[i + 3]
    if m in (0xC0, 0xC1, 0xC2):
        b[i + 5:i + 9] = (60000).to_bytes(2, 'big') * 2
        break
    i += 2 + n
open(sys.argv[2], 'wb').write(b)
EOF
# The same JPEG with an EXIF orientation of 6 (rotate 90 degrees to display).
$PY - "$IMG" "$T/rot.jpg" <<'EOF'
import struct, sys
b = open(sys.argv[1], 'rb').read()
ifd = struct.pack('>H', 1) + struct.pack('>HHIHH', 0x0112, 3, 1, 6, 0) + struct.pack('>I', 0)
app1 = b'Exif\x00\x00' + b'MM\x00\x2a' + struct.pack('>I', 8) + ifd
open(sys.argv[2], 'wb').write(b[:2] + b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1
                              + b[2:])
EOF
$PY - "$IMG" "$T/img.json" "$T/img_params.json" <<'EOF'
import base64, json, sys
b64 = base64.b64encode(open(sys.argv[1], 'rb').read()).decode()
json.dump({"inputs": b64}, open(sys.argv[2], 'w'))
json.dump({"inputs": "data:image/jpeg;base64," + b64,
           "parameters": {"format": "hf", "k_patches": 100, "l2norm": False}},
          open(sys.argv[3], 'w'))
EOF

# start NAME ARGS...: starts a daemon, sets PORT and PID, waits for ready.
start() {
    local name=$1; shift
    "$BIN" serve --host 127.0.0.1 --port 0 --model "$MODEL" "$@" \
        >"$T/$name.out" 2>"$T/$name.err" &
    PID=$!
    PIDS+=("$PID")
    PORT=
    for _ in $(seq 1 100); do
        PORT=$(sed -n 's|^lostd: listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$T/$name.out")
        [ -n "$PORT" ] && break
        sleep 0.05
    done
    if [ -z "$PORT" ]; then fail "$name start" "no port line"; cat "$T/$name.err"; return 1; fi
    for _ in $(seq 1 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health/ready")" = 200 ] \
            && return 0
        sleep 0.05
    done
    fail "$name start" "never ready"; cat "$T/$name.err"; return 1
}

# stop: SIGTERM the daemon PID, expect exit 0.
stop() {
    kill -TERM "$PID"
    local rc=0
    for _ in $(seq 1 200); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    wait "$PID"; rc=$?
    return $rc
}

# req NAME EXPECTED_STATUS CURL_ARGS...: one request, checks the status and
# that the body is a JSON error of that code when >= 400.
SENT200=0; SENT400=0; SENT413=0; SENT415=0; SENT405=0
req() {
    local name=$1 want=$2; shift 2
    local got
    got=$(curl -s -o "$T/body" -w '%{http_code}' "$@")
    if [ "$got" != "$want" ]; then
        fail "$name" "status $got, expected $want: $(head -c 300 "$T/body")"; return 1
    fi
    case "$want" in 200) ;; 204) ;; *)
        if ! $PY -c "
import json,sys; e=json.load(open('$T/body'))['error']
assert e['code']==$want and e['type'] and e['message']" 2>/dev/null; then
            fail "$name" "not a JSON error body: $(head -c 300 "$T/body")"; return 1
        fi;;
    esac
    pass "$name"
}

start main --workers 2 --queue 64 || exit 1
B=http://127.0.0.1:$PORT

# --- parity with `lostd discover`
"$BIN" discover --model "$MODEL" "$IMG" >"$T/cli.json" 2>"$T/cli.err"
check "cli discover ran" $? "$(cat "$T/cli.err")"
want=$($PY -c "import json;print(json.load(open('$T/cli.json'))['box'])")

same_box() { # file: default reply
    $PY - "$1" "$want" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
b = r["objects"][0]["box"]
got = [b["xmin"], b["ymin"], b["xmax"], b["ymax"]]
assert str(got) == sys.argv[2], (got, sys.argv[2])
assert r["objects"][0]["label"] == "object" and 0 <= r["objects"][0]["score"] <= 1
for k in ("image", "seed", "grid", "model", "timings_ms"):
    assert k in r, k
for k in ("decode", "forward", "lost", "total"):
    assert r["timings_ms"][k] >= 0, k
assert r["image"]["width"] > 0 and r["grid"]["rows"] > 0
EOF
}
req "raw jpeg" 200 -H 'Content-Type: image/jpeg' --data-binary @"$IMG" "$B/discover" &&
    { same_box "$T/body"; check "raw jpeg box equals lostd discover" $? "$(head -c 400 "$T/body") vs $want"; }
SENT200=$((SENT200 + 1))
req "multipart image" 200 -F "image=@$IMG" "$B/discover" &&
    { same_box "$T/body"; check "multipart box equals lostd discover" $? "$(head -c 300 "$T/body")"; }
req "multipart file + fields" 200 -F "file=@$IMG" -F k_patches=100 -F features=k "$B/discover" &&
    { same_box "$T/body"; check "multipart file box" $? "$(head -c 300 "$T/body")"; }
req "json base64" 200 -H 'Content-Type: application/json' --data-binary @"$T/img.json" \
    "$B/discover" && { same_box "$T/body"; check "json box equals lostd discover" $? "mismatch"; }
SENT200=$((SENT200 + 3))
req "no content type" 200 --data-binary @"$IMG" -H 'Content-Type:' "$B/discover"
req "raw png" 200 -H 'Content-Type: image/png' --data-binary @"$T/img.png" "$B/discover"
SENT200=$((SENT200 + 2))

"$BIN" discover --model "$MODEL" "$T/rot.jpg" >"$T/cli_rot.json" 2>&1
req "EXIF-rotated jpeg" 200 -H 'Content-Type: image/jpeg' --data-binary @"$T/rot.jpg" \
    "$B/discover" && $PY - "$T/body" "$T/cli_rot.json" "$IMG" <<'EOF'
import json, struct, sys
r, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
b = r["objects"][0]["box"]
assert [b["xmin"], b["ymin"], b["xmax"], b["ymax"]] == c["box"], (b, c["box"])
assert (r["image"]["width"], r["image"]["height"]) == (c["width"], c["height"])
assert r["image"]["width"] < r["image"]["height"], r["image"]  # the fixture is landscape
EOF
check "EXIF orientation applied, same box as lostd discover" $? "$(head -c 300 "$T/body")"
SENT200=$((SENT200 + 1))
req "EXIF-rotated jpeg, exif=ignore" 200 -H 'Content-Type: image/jpeg' \
    --data-binary @"$T/rot.jpg" "$B/discover?exif=ignore" && $PY - "$T/body" "$want" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
b = r["objects"][0]["box"]
assert str([b["xmin"], b["ymin"], b["xmax"], b["ymax"]]) == sys.argv[2], (b, sys.argv[2])
assert r["image"]["width"] > r["image"]["height"], r["image"]  # the stored, landscape frame
EOF
check "exif=ignore: the stored pixels' frame, the untagged image's box" $? \
    "$(head -c 300 "$T/body")"
SENT200=$((SENT200 + 1))

# --- reply formats
req "format=hf (json params)" 200 -H 'Content-Type: application/json' \
    --data-binary @"$T/img_params.json" "$B/discover" &&
    $PY - "$T/body" "$want" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert isinstance(r, list) and len(r) == 1 and r[0]["label"] == "object"
b = r[0]["box"]
assert str([b["xmin"], b["ymin"], b["xmax"], b["ymax"]]) == sys.argv[2]
EOF
check "format=hf shape" $? "$(head -c 300 "$T/body")"
req "format=coco" 200 -H 'Content-Type: image/jpeg' --data-binary @"$IMG" \
    "$B/discover?format=coco&image_id=42" &&
    $PY - "$T/body" "$want" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
x0, y0, x1, y1 = json.loads(sys.argv[2])
assert r == [{"image_id": 42, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
              "score": r[0]["score"]}], r
EOF
check "format=coco shape" $? "$(head -c 300 "$T/body")"
req "debug=1" 200 -H 'Content-Type: image/jpeg' --data-binary @"$IMG" "$B/discover?debug=1" &&
    $PY - "$T/body" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
n = r["grid"]["rows"] * r["grid"]["cols"]
d = r["debug"]
for k in ("mask", "degree", "affinity", "token_norms"):
    assert len(d[k]) == n, (k, len(d[k]), n)
assert d["seed"] == r["seed"]["index"] and d["mask"][d["seed"]] == 1
assert len(d["register_norms"]) == 4 and min(d["token_norms"]) > 0
EOF
check "debug maps" $? "$(head -c 300 "$T/body")"
req "query params" 200 -H 'Content-Type: image/jpeg' --data-binary @"$IMG" \
    "$B/discover?k_patches=5&gram_bias=0.5&features=q&l2norm=true&layer=-1&max_side=280" &&
    $PY - "$T/body" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["parameters"]
assert p["k_patches"] == 5 and p["features"] == "q" and p["l2norm"] is True, p
assert abs(p["gram_bias"] - 0.5) < 1e-6 and p["max_side"] == 280
assert max(r["grid"]["width"], r["grid"]["height"]) <= 280
b = r["objects"][0]["box"]
assert 0 <= b["xmin"] < b["xmax"] <= r["image"]["width"]
assert 0 <= b["ymin"] < b["ymax"] <= r["image"]["height"]
EOF
check "query params applied, box in original pixels" $? "$(head -c 400 "$T/body")"
SENT200=$((SENT200 + 4))

# --- bad inputs: each gets its status, and the daemon keeps answering
J='Content-Type: image/jpeg'
req "garbage body -> 400" 400 -H "$J" --data-binary @"$T/garbage.bin" "$B/discover"
req "truncated jpeg -> 400" 400 -H "$J" --data-binary @"$T/truncated.jpg" "$B/discover"
req "empty body -> 400" 400 -H "$J" --data-binary '' "$B/discover"
req "k_patches=-1 -> 400" 400 -H "$J" --data-binary @"$IMG" "$B/discover?k_patches=-1"
req "k_patches=abc -> 400" 400 -H "$J" --data-binary @"$IMG" "$B/discover?k_patches=abc"
req "gram_bias=nan -> 400" 400 -H "$J" --data-binary @"$IMG" "$B/discover?gram_bias=nan"
req "gram_bias=inf -> 400" 400 -H "$J" --data-binary @"$IMG" "$B/discover?gram_bias=inf"
req "features=x -> 400" 400 -H "$J" --data-binary @"$IMG" "$B/discover?features=x"
req "layer out of range -> 400" 400 -H "$J" --data-binary @"$IMG" "$B/discover?layer=99"
req "max_side over limit -> 400" 400 -H "$J" --data-binary @"$IMG" "$B/discover?max_side=99999"
req "format=xml -> 400" 400 -H "$J" --data-binary @"$IMG" "$B/discover?format=xml"
req "unknown parameter -> 400" 400 -H "$J" --data-binary @"$IMG" "$B/discover?kpatches=3"
req "bad json -> 400" 400 -H 'Content-Type: application/json' --data-binary '{"inputs":' \
    "$B/discover"
req "bad base64 -> 400" 400 -H 'Content-Type: application/json' \
    --data-binary '{"inputs":"@@@@"}' "$B/discover"
req "json param NaN-like -> 400" 400 -H 'Content-Type: application/json' \
    --data-binary '{"inputs":"AAAA","parameters":{"gram_bias":"NaN"}}' "$B/discover"
req "form without image -> 400" 400 -F k_patches=3 "$B/discover"
SENT400=$((SENT400 + 16))
req "gif -> 415" 415 -H 'Content-Type: image/jpeg' --data-binary @"$T/img.gif" "$B/discover"
req "text/plain -> 415" 415 -H 'Content-Type: text/plain' --data-binary 'hello' "$B/discover"
SENT415=$((SENT415 + 2))
req "declared 60000x60000 -> 413" 413 -H "$J" --data-binary @"$T/huge.jpg" "$B/discover"
head -c 25000000 /dev/zero >"$T/big.bin"
req "body over --max-upload -> 413" 413 -H "$J" --data-binary @"$T/big.bin" "$B/discover"
req "chunked body over --max-upload -> 413" 413 -H "$J" -H 'Transfer-Encoding: chunked' \
    --data-binary @"$T/big.bin" "$B/discover"
SENT413=$((SENT413 + 3))
req "GET /discover -> 405" 405 "$B/discover"
req "DELETE /health -> 405" 405 -X DELETE "$B/health"
SENT405=$((SENT405 + 1))
req "unknown route -> 404" 404 "$B/nope"
req "traversal is not a route -> 404" 404 --path-as-is "$B/../../etc/passwd"
req "still answers after bad inputs" 200 "$B/health/live"
req "HEAD /health/ready" 200 -I "$B/health/ready"

# --- other endpoints
req "/health" 200 "$B/health"
req "/version" 200 "$B/version" &&
    $PY -c "import json; v=json.load(open('$T/body')); assert v['name']=='lostd' and v['version']"
check "/version fields" $? "$(cat "$T/body")"
req "/v1/models" 200 "$B/v1/models" && $PY - "$T/body" "$MODEL" <<'EOF'
import hashlib, json, sys
m = json.load(open(sys.argv[1]))["data"][0]
assert m["sha256"] == hashlib.sha256(open(sys.argv[2], 'rb').read()).hexdigest()
assert m["registers"] == 4 and m["patch"] == 14 and m["dim"] > 0
assert m["lost_defaults"]["k_patches"] == 100 and m["limits"]["max_side"] == 1024
ld = m["lost_defaults"]
assert ld["method"] == "lost" and abs(ld["tau"] - 0.2) < 1e-6 and ld["binary_graph"] is True, ld
assert abs(ld["eps"] - 1e-5) < 1e-9, ld
assert m["limits"]["max_upload"] > 0 and m["limits"]["max_pixels"] > 0
EOF
check "/v1/models fields and sha256" $? "$(head -c 400 "$T/body")"
if [ -f static/index.html ]; then
    code=$(curl -s -o "$T/index" -w '%{http_code} %{content_type}' "$B/")
    case "$code" in "200 text/html"*) cmp -s "$T/index" static/index.html; check "GET / is the demo page" $? "differs";;
        *) fail "GET / is the demo page" "$code";; esac
else
    req "GET / without static files -> 404" 404 "$B/"
fi

# --- OpenAPI: its paths are exactly the routes, each answers
curl -s "$B/openapi.json" >"$T/openapi.json"
$PY - "$T/openapi.json" "$B" <<'EOF'
import json, sys, urllib.request, urllib.error
doc = json.load(open(sys.argv[1]))
assert doc["openapi"].startswith("3.")
routes = {"/discover", "/analyze", "/health", "/health/ready", "/health/live", "/v1/models", "/metrics",
          "/version", "/openapi.json", "/", "/index.html", "/app.js", "/style.css",
          "/samples/voc07_000236.jpg", "/samples/shapes.jpg", "/samples/disc.png"}
assert set(doc["paths"]) == routes, set(doc["paths"]) ^ routes
for path, ops in doc["paths"].items():
    for method in ops:
        req = urllib.request.Request(sys.argv[2] + path, method=method.upper(),
                                     data=b"" if method == "post" else None)
        try:
            code = urllib.request.urlopen(req, timeout=10).status
            body = b""
        except urllib.error.HTTPError as e:
            code, body = e.code, e.read()
        assert code != 405, (path, method, code)
        assert str(code) in ops[method]["responses"], (path, method, code)
        if code == 404:
            assert b"no route" not in body, (path, body)
schema = doc["components"]["schemas"]["Discovery"]["required"]
assert set(schema) == {"objects", "image", "seed", "grid", "model", "timings_ms"}
EOF
check "openapi.json matches the routes" $? "see above"
SENT400=$((SENT400 + 2)) # its POSTs to /discover and /analyze without a body

# --- 32 concurrent clients, all correct
for i in $(seq 1 32); do
    curl -s -o "$T/c$i.json" -w '%{http_code}' -H "$J" --data-binary @"$IMG" "$B/discover" \
        >"$T/c$i.code" &
done
wait_clients() { for p in $(jobs -p); do [ "$p" = "$PID" ] || wait "$p"; done; }
wait_clients
$PY - "$T" "$want" <<'EOF'
import json, sys
ok = 0
for i in range(1, 33):
    try:
        assert open("%s/c%d.code" % (sys.argv[1], i)).read() == "200"
        b = json.load(open("%s/c%d.json" % (sys.argv[1], i)))["objects"][0]["box"]
        assert str([b["xmin"], b["ymin"], b["xmax"], b["ymax"]]) == sys.argv[2]
        ok += 1
    except Exception as e:
        print("client", i, repr(e))
assert ok == 32, ok
EOF
check "32 concurrent clients all correct" $? "see above"
SENT200=$((SENT200 + 32))

# --- /metrics counts what was sent
curl -s "$B/metrics" >"$T/metrics"
$PY - "$T/metrics" "$SENT200" "$SENT400" "$SENT413" "$SENT415" "$SENT405" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
def val(pattern):
    m = re.search(r'^' + re.escape(pattern) + r' (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0
for code, want in zip((200, 400, 413, 415, 405), map(int, sys.argv[2:])):
    got = val('lostd_http_requests_total{route="/discover",code="%d"}' % code)
    assert got == want, (code, got, want)
got = val('lostd_stage_seconds_count{stage="forward"}')
assert got >= int(sys.argv[2]), (got, sys.argv[2])
assert val('lostd_rejections_total{reason="too_large"}') == int(sys.argv[4])
assert val('lostd_workers') == 2 and val('lostd_ready') == 1
assert 'lostd_queue_depth 0' in text and 'lostd_in_flight' in text
assert 'lostd_stage_seconds_bucket{stage="total",le="+Inf"}' in text
EOF
check "/metrics counts what was sent" $? "see above"

stop; check "SIGTERM exits 0" $? "exit status $?"

# --- API key (from a file, through the environment twin), CORS, limits
printf 'sekrit\n' >"$T/key"
LOSTD_API_KEY_FILE="$T/key" LOSTD_MAX_UPLOAD=1M start keyed --cors-origins 'http://a.example' \
    --max-pixels 50000 --timeout 2 || exit 1
B=http://127.0.0.1:$PORT
req "no API key -> 401" 401 -H "$J" --data-binary @"$IMG" "$B/discover"
req "wrong API key -> 401" 401 -H "$J" -H 'Authorization: Bearer nope' --data-binary @"$IMG" \
    "$B/discover"
req "over --max-pixels -> 413" 413 -H "$J" -H 'X-API-Key: sekrit' --data-binary @"$IMG" \
    "$B/discover"
small=$T/small.jpg
convert "$IMG" -resize 200x150 "$small"
req "Bearer key -> 200" 200 -H "$J" -H 'Authorization: Bearer sekrit' --data-binary @"$small" \
    "$B/discover"
head -c 1100000 /dev/zero >"$T/1m.bin"
req "env LOSTD_MAX_UPLOAD=1M -> 413" 413 -H "$J" -H 'X-API-Key: sekrit' \
    --data-binary @"$T/1m.bin" "$B/discover"
req "health needs no key" 200 "$B/health"
h=$(curl -s -D - -o /dev/null -H 'Origin: http://a.example' "$B/health" | tr -d '\r')
echo "$h" | grep -qi '^Access-Control-Allow-Origin: http://a.example$'
check "CORS allowed origin echoed" $? "$h"
h=$(curl -s -D - -o /dev/null -H 'Origin: http://evil.example' "$B/health" | tr -d '\r')
! echo "$h" | grep -qi '^Access-Control-Allow-Origin'
check "CORS other origin not allowed" $? "$h"
req "OPTIONS preflight -> 204" 204 -X OPTIONS -H 'Origin: http://a.example' \
    -H 'Access-Control-Request-Method: POST' "$B/discover"
$PY - "$PORT" <<'EOF'
# A client that sends half a request and stalls is dropped after --timeout.
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"POST /discover HTTP/1.1\r\nHost: x\r\nX-API-Key: sekrit\r\n"
          b"Content-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\nabc")
t0 = time.time()
data = s.recv(4096)
dt = time.time() - t0
assert data == b"" and 1 <= dt < 8, (data[:80], dt)
EOF
check "stalled upload times out" $? "connection kept open"
req "still answers after a stalled client" 200 "$B/health/live"
stop; check "SIGTERM exits 0 (keyed)" $? "exit status"

# --- a client that closes before its reply costs no forward: its job leaves
# the queue (499 in the log and /metrics, reason client_gone); a job already
# on a worker is told to stop. One worker, kept busy by
# 6300x6300 progressive JPEGs (about 0.5 s each to decode here).
convert -size 6300x6300 gradient:red-blue -interlace Plane -sampling-factor 4:2:0 \
    -quality 85 "$T/prog.jpg" || exit 1
start gone --workers 1 --queue 8 || exit 1
$PY - "$PORT" "$T/prog.jpg" "$IMG" <<'EOF2'
import http.client, socket, sys, threading, time
port, prog, img = int(sys.argv[1]), open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
def post(body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/discover", body, {"Content-Type": "image/jpeg"})
    r = c.getresponse()
    return r.status
def leave(body, after):  # sends the whole request, then closes without reading
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /discover HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    time.sleep(after)
    s.close()
res = []
busy = [threading.Thread(target=lambda: res.append(post(prog))) for _ in range(2)]
for t in busy:
    t.start()
time.sleep(0.05)
gone = [threading.Thread(target=leave, args=(img, 0.15)) for _ in range(3)]
for t in gone:
    t.start()
for t in gone + busy:
    t.join()
print("PASS the busy requests answer 200 around the dropped ones" if res == [200, 200]
      else "FAIL the busy requests: %r" % res)
leave(prog, 0.2)  # its decode is on the worker when the client goes
time.sleep(0.2)
print("PASS a request after them answers 200" if post(img) == 200 else "FAIL the request after")
EOF2
metrics=$(curl -s "http://127.0.0.1:$PORT/metrics")
echo "$metrics" | grep -q '^lostd_rejections_total{reason="client_gone"} 4$'
check "clients gone before their reply counted (client_gone 4)" $? \
    "$(echo "$metrics" | grep client_gone)"
echo "$metrics" | grep -q '^lostd_http_requests_total{route="/discover",code="499"} 4$'
check "and logged as 499" $? "$(echo "$metrics" | grep 'code="499"')"
n=$(grep -c 'access POST /discover 499 .*while queued: dropped before inference' "$T/gone.err")
check "the three queued ones dropped before inference" $((n != 3)) "$n log lines"
grep -q 'access POST /discover 499 .*during inference' "$T/gone.err"
check "the one on a worker told to stop" $? "$(grep ' 499 ' "$T/gone.err")"
stop; check "SIGTERM exits 0 after clients left" $? "exit status"

# --- a full queue answers 503 with Retry-After; SIGTERM lets in-flight finish
convert -size 700x500 plasma:fractal -quality 90 "$T/large.jpg" 2>/dev/null ||
    convert -size 700x500 xc:gray "$T/large.jpg"
start busy --workers 1 --queue 1 || exit 1
B=http://127.0.0.1:$PORT
for i in $(seq 1 12); do
    curl -s -D "$T/q$i.h" -o "$T/q$i.json" -w '%{http_code}' -H "$J" \
        --data-binary @"$T/large.jpg" "$B/discover" >"$T/q$i.code" &
done
sleep 0.3
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$B/health/live")
check "health answers while the workers are busy" $([ "$code" = 200 ]; echo $?) "$code"
wait_clients
n200=0; n503=0; retry=0
for i in $(seq 1 12); do
    c=$(cat "$T/q$i.code")
    [ "$c" = 200 ] && n200=$((n200 + 1))
    if [ "$c" = 503 ]; then
        n503=$((n503 + 1)); grep -qi '^Retry-After: ' "$T/q$i.h" && retry=$((retry + 1))
    fi
done
check "full queue -> 503 with Retry-After" $((n503 == 0 || retry != n503 || n200 + n503 != 12)) \
    "200: $n200, 503: $n503, with Retry-After: $retry"
curl -s "$B/metrics" | grep -q '^lostd_rejections_total{reason="queue_full"} [1-9]'
check "queue_full rejections counted" $? "not in /metrics"
curl -s -o "$T/inflight.json" -w '%{http_code}' -H "$J" --data-binary @"$T/large.jpg" \
    "$B/discover" >"$T/inflight.code" &
cpid=$!
sleep 0.2
stop; rc=$?
wait "$cpid"
check "in-flight request finishes after SIGTERM" $([ "$(cat "$T/inflight.code")" = 200 ]; echo $?) \
    "status $(cat "$T/inflight.code")"
check "SIGTERM exits 0 with a request in flight" $rc "exit status $rc"
grep -q 'access POST /discover 200' "$T/main.err"
check "access log lines" $? "no access line"
exit 0
