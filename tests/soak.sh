#!/usr/bin/env bash
# Soak (`make soak`, not part of `make test`): a bounded loopback load on
# `lostd serve` with the tiny fixture model. SOAK_REQUESTS requests (default
# 5000) from SOAK_CONCURRENCY keep-alive clients (default 16), one in ten
# malformed (ten kinds, each with its documented status). Checks: the daemon
# never dies, every valid reply has the box `lostd discover` gives for that
# image, every malformed one its status, and resident memory after the run is
# within 10% of after the warm-up. Reports requests/s and p50/p99 latency as
# figures, not as assertions. Prints PASS/FAIL lines.
set -u
cd "$(dirname "$0")/.."
BIN=${LOSTD_BIN:-${BUILD:-build}/lostd}
MODEL=tests/fixtures/models/tiny.safetensors
IMG=tests/fixtures/images/VOC07_000236.jpg
N=${SOAK_REQUESTS:-5000}
C=${SOAK_CONCURRENCY:-16}
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
T=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

convert "$IMG" -resize 320x240 -quality 85 "$T/a.jpg" &&
    convert "$IMG" -flop -resize 256x192 -quality 80 "$T/b.jpg" &&
    convert "$IMG" -crop 300x300+100+40 +repage -resize 200x200 "$T/c.png" ||
    { echo "FAIL soak setup: convert failed"; exit 1; }
for f in a.jpg b.jpg c.png; do
    "$BIN" discover --model "$MODEL" "$T/$f" >"$T/$f.ref" 2>"$T/err" ||
        { echo "FAIL soak reference $f: $(cat "$T/err")"; exit 1; }
done

"$BIN" serve --host 127.0.0.1 --port 0 --model "$MODEL" --queue 64 --max-upload 512k \
    --max-connections 64 >"$T/out" 2>"$T/err" &
PID=$!
PORT=
for _ in $(seq 1 100); do
    PORT=$(sed -n 's|^lostd: listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$T/out")
    [ -n "$PORT" ] && break
    sleep 0.05
done
[ -n "$PORT" ] || { echo "FAIL soak start: no port line"; cat "$T/err"; exit 1; }

$PY - "$PORT" "$PID" "$T" "$N" "$C" <<'PYEOF'
import base64, http.client, json, os, struct, sys, threading, time

port, pid, T, N, C = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), \
    int(sys.argv[5])

def rss_mib():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return -1

images = []
for f, ct in (("a.jpg", "image/jpeg"), ("b.jpg", "image/jpeg"), ("c.png", "image/png")):
    images.append((f, open("%s/%s" % (T, f), "rb").read(), ct,
                   json.load(open("%s/%s.ref" % (T, f)))["box"]))
a = images[0][1]

def with_size(data, w, h):
    b = bytearray(data)
    i = 2
    while b[i] == 0xFF:
        m, n = b[i + 1], (b[i + 2] << 8) | b[i + 3]
        if m in (0xC0, 0xC1, 0xC2):
            b[i + 5:i + 9] = struct.pack(">HH", h, w)
            break
        i += 2 + n
    return bytes(b)

B = "soakBoundary42"
form_noimg = ("--%s\r\nContent-Disposition: form-data; name=\"k_patches\"\r\n\r\n5\r\n--%s--\r\n"
              % (B, B)).encode()
# (name, method, path, body, content type, expected status)
malformed = [
    ("garbage", "POST", "/discover", os.urandom(3000), "image/jpeg", 400),
    ("truncated", "POST", "/discover", a[: len(a) // 2], "image/jpeg", 400),
    ("text/plain", "POST", "/discover", b"hello", "text/plain", 415),
    ("k_patches=-1", "POST", "/discover?k_patches=-1", a, "image/jpeg", 400),
    ("gram_bias=nan", "POST", "/discover?gram_bias=nan", a, "image/jpeg", 400),
    ("over --max-upload", "POST", "/discover", b"\xff\xd8" + os.urandom(600 << 10),
     "image/jpeg", 413),
    ("60000x60000", "POST", "/discover", with_size(a, 60000, 60000), "image/jpeg", 413),
    ("bad base64", "POST", "/discover", b'{"inputs": "@@@@"}', "application/json", 400),
    ("form without image", "POST", "/discover", form_noimg,
     "multipart/form-data; boundary=" + B, 400),
    ("GET /discover", "GET", "/discover", None, None, 405),
]

lock = threading.Lock()
stats = {"ok": 0, "wrong": [], "bad_status": [], "errors": [], "lat": [], "rejected": {}}
counter = [0]

def next_index():
    with lock:
        i = counter[0]
        if i >= total[0]:
            return -1
        counter[0] += 1
        return i

def client(record):
    conn = None
    while True:
        i = next_index()
        if i < 0:
            break
        if i % 10 == 9:
            name, method, path, body, ct, want = malformed[(i // 10) % len(malformed)]
            ref = None
        else:
            f, body, ct, ref = images[i % 3]
            name, method, path, want = f, "POST", "/discover", 200
        headers = {"Content-Type": ct} if ct else {}
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            st = r.status
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:
            # A refused body may be answered before it was all sent: the
            # daemon then closes; that is the documented 413, not an error.
            if conn is not None:
                conn.close()
            conn = None
            if want == 413 and isinstance(e, (BrokenPipeError, ConnectionResetError)):
                st, data = 413, b""
            else:
                with lock:
                    stats["errors"].append("%s: %r" % (name, e))
                continue
        dt = time.perf_counter() - t0
        with lock:
            if record:
                stats["lat"].append(dt)
            if st != want:
                stats["bad_status"].append("%s: %d, expected %d: %.120r" % (name, st, want, data))
            elif ref is not None:
                try:
                    b = json.loads(data)["objects"][0]["box"]
                    got = [b["xmin"], b["ymin"], b["xmax"], b["ymax"]]
                except Exception as e:
                    got = repr(e)
                if got != ref:
                    stats["wrong"].append("%s: %s, lostd discover gave %s" % (name, got, ref))
                else:
                    stats["ok"] += 1
            else:
                stats["rejected"][name] = stats["rejected"].get(name, 0) + 1
    if conn is not None:
        conn.close()

def run(n, record):
    counter[0] = 0
    total[0] = n
    ths = [threading.Thread(target=client, args=(record,)) for _ in range(C)]
    t0 = time.perf_counter()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return time.perf_counter() - t0

total = [0]
for _ in range(200):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/health/ready")
        if c.getresponse().status == 200:
            break
    except OSError:
        pass
    time.sleep(0.1)
warm = max(C * 20, N // 10)
run(warm, False)
rss_warm = rss_mib()
for k in ("ok", "wrong", "bad_status", "errors", "rejected"):
    stats[k] = 0 if k == "ok" else ({} if k == "rejected" else [])
secs = run(N, True)
time.sleep(0.5)
rss_end = rss_mib()

fails = 0
def check(cond, name, why):
    global fails
    if cond:
        print("PASS " + name)
    else:
        fails += 1
        print("FAIL %s: %s" % (name, why))

alive = True
try:
    os.kill(pid, 0)
except OSError:
    alive = False
lat = sorted(stats["lat"])
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
n_bad = sum(stats["rejected"].values())
print("soak: %d requests (%d valid, %d malformed) at concurrency %d in %.1f s: %.1f requests/s, "
      "latency p50 %.1f ms, p99 %.1f ms, max %.1f ms"
      % (N, stats["ok"], n_bad, C, secs, N / secs, p(0.5), p(0.99), p(1.0)))
print("soak: RSS %.1f MiB after %d warm-up requests, %.1f MiB after the run (%+.1f%%)"
      % (rss_warm, warm, rss_end, 100 * (rss_end - rss_warm) / rss_warm))
print("soak: rejected by kind: " + ", ".join("%s %d" % kv for kv in sorted(stats["rejected"].items())))
check(alive, "soak: the daemon is alive", "it died")
check(not stats["errors"], "soak: no transport errors", "; ".join(stats["errors"][:5]))
check(not stats["wrong"], "soak: every valid reply has the lostd discover box (%d)" % stats["ok"],
      "%d wrong: %s" % (len(stats["wrong"]), "; ".join(stats["wrong"][:5])))
check(not stats["bad_status"], "soak: every status as documented (%d malformed rejected)" % n_bad,
      "%d: %s" % (len(stats["bad_status"]), "; ".join(stats["bad_status"][:5])))
check(stats["ok"] + n_bad == N, "soak: all %d requests answered" % N,
      "%d ok + %d rejected" % (stats["ok"], n_bad))
check(rss_end <= rss_warm * 1.10, "soak: RSS within 10%% of warm-up (%.1f -> %.1f MiB)"
      % (rss_warm, rss_end), "grew %.1f%%" % (100 * (rss_end - rss_warm) / rss_warm))
sys.exit(1 if fails else 0)
PYEOF
rc=$?
kill -TERM "$PID"
for _ in $(seq 1 200); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
wait "$PID"; st=$?
PID=
if [ "$st" -eq 0 ]; then echo "PASS soak: clean exit on SIGTERM"
else echo "FAIL soak: daemon exit status $st"; tail -n 20 "$T/err"; rc=1; fi
grep -E 'ERROR|runtime error|LeakSanitizer' "$T/err" | head -n 5
exit $rc
