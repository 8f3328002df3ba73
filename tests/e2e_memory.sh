#!/usr/bin/env bash
# Memory under valid-but-hostile input, against `lostd serve` with the tiny
# fixture model and 2 workers (README "Security and limits"):
# - a 26 MB JSON array `[{},{},...]` is refused with 400 at a small cost;
# - two concurrent 6300x6300 progressive 4:2:0 JPEGs both get 200 within the
#   scratch budget (peak growth < 160 MB), and 5 s later RSS is back within
#   32 MB of its warmed-up value;
# - uploads in flight share --max-upload-total (503 + Retry-After beyond);
# - health checks answer on --health-port while slow clients hold every
#   connection of the main port; --allowed-hosts (421), Vary: Origin;
# - --scratch-budget refuses an image it cannot ever hold (413), and the
#   decode metric stays sane after a failed decode; --model-sha256.
# Prints PASS/FAIL lines; needs python3 and ImageMagick.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh
MODEL=tests/fixtures/models/tiny.safetensors
IMG=tests/fixtures/images/VOC07_000236.jpg

if [ -n "${LOSTD_SAN:-}" ]; then
    # ASan's shadow memory and quarantine make RSS figures meaningless.
    echo "SKIP memory figures under the sanitizer build ($LOSTD_SAN)"
    exit 0
fi

convert -size 6300x6300 gradient:red-blue -interlace Plane -sampling-factor 4:2:0 \
    -quality 85 "$T/prog.jpg" || { fail "make the progressive JPEG" "convert failed"; exit 1; }
convert -size 6300x6300 gradient:red-blue -interlace Plane -sampling-factor 1x1 \
    -quality 85 "$T/prog444.jpg" || exit 1

# start NAME ARGS...: a daemon on a free port; sets PID, PORT (and HPORT).
start() {
    local name=$1; shift
    "$BIN" serve --model "$MODEL" --host 127.0.0.1 --port 0 --workers 2 --threads 1 "$@" \
        >"$T/$name.out" 2>"$T/$name.err" &
    PID=$!
    PIDS+=("$PID")
    PORT=; HPORT=
    for _ in $(seq 100); do
        PORT=$(sed -n 's/^lostd: listening on .*:\([0-9]*\)$/\1/p' "$T/$name.out")
        [ -n "$PORT" ] && break
        sleep 0.1
    done
    HPORT=$(sed -n 's/^lostd: health checks on .*:\([0-9]*\)$/\1/p' "$T/$name.out")
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "$name: daemon ready" "$(tail -3 "$T/$name.err")"
    return 1
}
stop() { kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }

# ---- one daemon for the memory figures
start mem || exit 1
$PY - "$PORT" "$PID" "$IMG" "$T/prog.jpg" <<'EOF'
import http.client, json, sys, threading, time
port, pid, img, prog = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

def status(key):
    for line in open("/proc/%s/status" % pid):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return -1

def reset_peak():
    try:
        with open("/proc/%s/clear_refs" % pid, "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False

def post(body, ctype, path="/discover"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", path, body, {"Content-Type": ctype})
    r = c.getresponse()
    return r.status, r.read()

def check(name, ok, why):
    print(("PASS %s" % name) if ok else ("FAIL %s: %s" % (name, why)))

jpg = open(img, "rb").read()
for _ in range(4):  # warm: both workers, every code path of a normal request
    post(jpg, "image/jpeg")
warm = status("VmRSS")

# 1. A 26 MB JSON array: 400 before any tree is built.
can_reset = reset_peak()
body = b"[" + b"{}," * (26 * 1000 * 1000 // 3 - 1) + b"{}]"
st, out = post(body, "application/json")
growth = status("VmHWM") - warm
check("26 MB JSON array -> 400", st == 400, "status %d %r" % (st, out[:120]))
check("26 MB JSON array: peak growth under 64 MB", can_reset and growth < 64 << 20,
      "grew %.1f MB (peak reset: %s)" % (growth / 2**20, can_reset))
del body
st, out = post(b'{"inputs": "AAAA", "parameters": {"k": {"deep": 1}}}', "application/json")
check("JSON: an object inside parameters -> 400", st == 400, "status %d" % st)
st, out = post(b'{"inputs": [1, 2]}', "application/json")
check("JSON: inputs an array -> 400", st == 400, "status %d" % st)

# 2. Two concurrent 6300x6300 progressive JPEGs.
big = open(prog, "rb").read()
base = status("VmRSS")
reset_peak()
res = [None, None]
def one(i):
    t = time.time()
    s, b = post(big, "image/jpeg")
    res[i] = (s, time.time() - t, b)
ts = [threading.Thread(target=one, args=(i,)) for i in range(2)]
[t.start() for t in ts]
[t.join() for t in ts]
growth = status("VmHWM") - base
check("two 6300x6300 progressive JPEGs -> 200, 200",
      all(r[0] == 200 for r in res), [(r[0], r[2][:100]) for r in res])
check("two 6300x6300 progressive JPEGs: peak growth under 160 MB", growth < 160 << 20,
      "grew %.1f MB" % (growth / 2**20))
print("# progressive 6300x6300 x2: %.2f s and %.2f s, peak growth %.1f MB"
      % (res[0][1], res[1][1], growth / 2**20))
if res[0][0] == 200:
    r = json.loads(res[0][2])
    check("the box is reported in the full image's pixels",
          r["image"] == {"width": 6300, "height": 6300} and r["objects"][0]["box"]["xmax"] <= 6300,
          r["image"])
time.sleep(5)
after = status("VmRSS")
check("5 s after the burst RSS is within 32 MB of the warmed-up value",
      after - warm < 32 << 20, "warm %.1f MB, after %.1f MB" % (warm / 2**20, after / 2**20))

# 3. POST /analyze decodes the same way, from the same budget.
base = status("VmRSS")
reset_peak()
def ana(i):
    res[i] = post(big, "image/jpeg", "/analyze")
ts = [threading.Thread(target=ana, args=(i,)) for i in range(2)]
[t.start() for t in ts]
[t.join() for t in ts]
growth = status("VmHWM") - base
check("two 6300x6300 progressive JPEGs to /analyze -> 200, 200, peak growth under 160 MB",
      all(r[0] == 200 for r in res) and growth < 160 << 20,
      "%s, grew %.1f MB" % ([r[0] for r in res], growth / 2**20))
EOF
# The decode metric after a failed decode: a finite, small sum.
head -c 3000 "$IMG" >"$T/trunc.jpg"
curl -s -o /dev/null -H 'Content-Type: image/jpeg' --data-binary @"$T/trunc.jpg" \
    "http://127.0.0.1:$PORT/discover"
dsum=$(curl -s "http://127.0.0.1:$PORT/metrics" |
       sed -n 's/^lostd_stage_seconds_sum{stage="decode"} \(.*\)$/\1/p')
if $PY -c "import math,sys; v=float(sys.argv[1]); sys.exit(0 if math.isfinite(v) and 0 <= v < 100 else 1)" "${dsum:-nan}"; then
    pass "decode time after a failed decode is defined ($dsum s in all)"
else
    fail "decode time after a failed decode is defined" "sum '$dsum'"
fi
grep -q "memory bound [0-9]* MB = weights" "$T/mem.err" &&
    pass "the worst-case memory is logged at start" ||
    fail "the worst-case memory is logged at start" "$(head -5 "$T/mem.err")"
stop

# ---- the scratch budget refuses what it can never hold; waits otherwise
start small --scratch-budget 64M || exit 1
st=$(curl -s -o "$T/body" -w '%{http_code}' -H 'Content-Type: image/jpeg' \
     --data-binary @"$T/prog444.jpg" "http://127.0.0.1:$PORT/discover")
if [ "$st" = 413 ] && grep -q "scratch-budget" "$T/body"; then
    pass "progressive 4:4:4 6300x6300 over --scratch-budget -> 413 naming the flag"
else
    fail "progressive 4:4:4 over --scratch-budget -> 413" "$st $(head -c 200 "$T/body")"
fi
st=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: image/jpeg' \
     --data-binary @"$IMG" "http://127.0.0.1:$PORT/discover")
[ "$st" = 200 ] && pass "a normal image right after -> 200" || fail "normal image after 413" "$st"
stop

# ---- uploads in flight, the health listener, Host and Vary
start edge --max-upload 1M --max-upload-total 3M --max-connections 4 --health-port 0 \
    --allowed-hosts "localhost,127.0.0.1" --cors-origins "https://a.example" || exit 1
$PY - "$PORT" "$HPORT" <<'EOF'
import http.client, socket, sys, time
port, hport = int(sys.argv[1]), int(sys.argv[2] or 0)
def check(name, ok, why):
    print(("PASS %s" % name) if ok else ("FAIL %s: %s" % (name, why)))

def slow(n):
    """Opens a raw upload declaring n bytes and sends only part of it."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /discover HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg\r\n"
              b"Content-Length: %d\r\n\r\n" % n + b"\xff\xd8\xff" + b"\0" * 1000)
    return s

def reply(s):
    s.settimeout(10)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data

# Each slow upload holds 1 MB of the 3 MB budget from its first byte.
held = [slow(1000000) for _ in range(3)]
time.sleep(0.3)
s = slow(1000000)
head = reply(s)
check("uploads in flight over --max-upload-total -> 503 with Retry-After",
      head.startswith(b"HTTP/1.1 503") and b"Retry-After" in head, head[:200])
s.close()
# Every main-port connection is now taken by slow clients (4 = limit).
s4 = slow(10)
time.sleep(0.3)
if hport:
    c = http.client.HTTPConnection("127.0.0.1", hport, timeout=5)
    try:
        c.request("GET", "/health/ready")
        r = c.getresponse()
        st = r.status
        r.read()
    except OSError as e:
        st = str(e)
    check("health listener answers while slow clients hold every connection", st == 200, st)
    c = http.client.HTTPConnection("127.0.0.1", hport, timeout=5)
    c.request("POST", "/discover", b"x", {"Content-Type": "image/jpeg"})
    r = c.getresponse()
    r.read()
    check("the health listener serves health checks only (404)", r.status == 404, r.status)
else:
    check("health listener started", False, "no 'health checks on' line")
for x in held + [s4]:
    x.close()
time.sleep(0.5)

def get(path, headers):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    r.read()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders())

st, h = get("/version", {"Host": "evil.example"})
check("Host not in --allowed-hosts -> 421", st == 421, st)
st, h = get("/version", {"Host": "localhost:%d" % port})
check("Host in --allowed-hosts (with a port) -> 200", st == 200, st)
st, h = get("/health/live", {"Host": "evil.example"})
check("health checks ignore the Host list (probes use pod IPs)", st == 200, st)
st, h = get("/version", {"Host": "localhost", "Origin": "https://b.example"})
check("Vary: Origin on a non-matching origin, no Allow-Origin",
      "origin" in h.get("vary", "").lower() and "access-control-allow-origin" not in h, h)
st, h = get("/version", {"Host": "localhost"})
check("Vary: Origin without an Origin header", "origin" in h.get("vary", "").lower(), h)
st, h = get("/version", {"Host": "localhost", "Origin": "https://a.example"})
check("matching origin allowed", h.get("access-control-allow-origin") == "https://a.example", h)
EOF
stop

# ---- --model-sha256 pins the weights
sum=$(sha256sum "$MODEL" | cut -d' ' -f1)
wrong=$(printf '%064d' 0)
"$BIN" serve --model "$MODEL" --port 0 --model-sha256 "$wrong" >"$T/pin.out" 2>"$T/pin.err"
rc=$?
if [ $rc -eq 1 ] && grep -q "model-sha256" "$T/pin.err"; then
    pass "--model-sha256 mismatch: exit 1 with a message, never serves"
else
    fail "--model-sha256 mismatch" "exit $rc: $(tail -2 "$T/pin.err")"
fi
"$BIN" serve --model "$MODEL" --port 0 --model-sha256 xyz >/dev/null 2>"$T/pin2.err"
[ $? -eq 2 ] && pass "--model-sha256 not 64 hex digits: exit 2" ||
    fail "--model-sha256 bad value" "$(cat "$T/pin2.err")"
start pinned --model-sha256 "$(echo "$sum" | tr a-f A-F)" &&
    pass "--model-sha256 matching (any case) serves"
stop
