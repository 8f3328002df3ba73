#!/usr/bin/env bash
# End-to-end test of the default-model download: `lostd serve` without
# --model (and with hf://...) against a loopback stand-in for the Hugging
# Face hub that serves the tiny fixture model with the hub's checksum
# headers. Checks the cache layout, the SHA-256 check, HF_TOKEN, redirects,
# readiness during a slow download, reuse of the cache offline, and clean
# failures (bad checksum, 404, truncated transfer, offline) that leave no
# partial file behind. Prints PASS/FAIL lines; needs curl and python3.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh
FIXTURE=tests/fixtures/models/tiny.safetensors

cat >"$T/hub.py" <<'EOF'
# A stand-in for the hub: GET /<owner>/<repo>/resolve/main/<file>.
# argv: fixture, mode, port file, request log[, TLS cert, http target].
# Modes: ok, redirect, badsum, 404, slow, truncated, nodigest, cdnsum (the
# digest only on the redirect's second hop), tohttp (https hub redirecting
# to the http target).
import hashlib, http.server, json, ssl, sys, time
fixture, mode, port_file, log = sys.argv[1:5]
cert = sys.argv[5] if len(sys.argv) > 5 else ""
target = sys.argv[6] if len(sys.argv) > 6 else ""
model = open(fixture, "rb").read()
sha = hashlib.sha256(model).hexdigest()
config = json.dumps({"hidden_size": 64, "num_attention_heads": 2,
                     "layer_norm_eps": 1e-6}).encode()
git_sha1 = hashlib.sha1(b"blob %d\0" % len(config) + config).hexdigest()

class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        with open(log, "a") as f:
            f.write("%s auth=%s\n" % (self.path, self.headers.get("Authorization")))
        parts = self.path.split("/")
        name = parts[-1]
        if mode == "404" or "/resolve/main/" not in self.path and not self.path.startswith("/cdn/"):
            return self.reply(404, b"not found")
        if name == "config.json":
            if mode != "ok":
                return self.reply(404, b"no config")
            return self.reply(200, config, {"ETag": '"%s"' % git_sha1})
        if mode == "tohttp":
            self.send_response(302)
            self.send_header("Location", target + "/cdn/" + name)
            self.send_header("X-Linked-ETag", '"%s"' % sha)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "nodigest":
            return self.reply(200, model, {})
        if mode == "cdnsum" and not self.path.startswith("/cdn/"):
            self.send_response(302)
            self.send_header("Location", "/cdn/" + name)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "cdnsum":
            return self.reply(200, model, {"X-Linked-ETag": '"%s"' % sha, "ETag": '"%s"' % sha})
        if mode == "redirect" and not self.path.startswith("/cdn/"):
            self.send_response(302)
            self.send_header("Location", "/cdn/" + name)
            self.send_header("X-Linked-ETag", '"%s"' % sha)
            self.send_header("ETag", '"not-the-sha"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "redirect":
            return self.reply(200, model, {"ETag": '"cdn-etag-123"'})
        want = "0" * 64 if mode == "badsum" else sha
        hdr = {"X-Linked-ETag": '"%s"' % want, "ETag": '"%s"' % want}
        if mode == "slow":
            time.sleep(2)
        if mode == "truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(len(model)))
            self.send_header("X-Linked-ETag", '"%s"' % sha)
            self.end_headers()
            self.wfile.write(model[: len(model) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.reply(200, model, hdr)

    def reply(self, code, body, headers={}):
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
if cert:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert + ".crt", cert + ".key")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
EOF

HUB_PID=
hub() { # mode [cert target]: (re)starts the stand-in hub, sets HUB
    [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
    rm -f "$T/hub.port"
    : >"$T/hub.log"
    $PY "$T/hub.py" "$FIXTURE" "$1" "$T/hub.port" "$T/hub.log" "${2:-}" "${3:-}" &
    HUB_PID=$!
    PIDS+=("$HUB_PID")
    for _ in $(seq 1 100); do [ -f "$T/hub.port" ] && break; sleep 0.05; done
    HUB=$([ -n "${2:-}" ] && echo https || echo http)://127.0.0.1:$(cat "$T/hub.port")
}

# serve NAME ARGS...: starts lostd in the background (env from the caller),
# sets PID and PORT (once the port line is out).
serve() {
    local name=$1; shift
    "$BIN" serve --host 127.0.0.1 --port 0 "$@" >"$T/$name.out" 2>"$T/$name.err" &
    PID=$!
    PIDS+=("$PID")
    PORT=
    for _ in $(seq 1 100); do
        PORT=$(sed -n 's|^lostd: listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$T/$name.out")
        [ -n "$PORT" ] && return 0
        kill -0 "$PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
ready() { # waits for /health/ready; 0 when ready
    for _ in $(seq 1 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health/ready")" = 200 ] \
            && return 0
        kill -0 "$PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
stop() { kill -TERM "$PID"; wait "$PID"; }
exits_with() { # code: waits (bounded) for the daemon to exit by itself
    for _ in $(seq 1 200); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID"; return 1; fi
    wait "$PID"
    [ $? -eq "$1" ]
}
no_partial() { # dir: no temporary or final model file left
    [ -z "$(find "$1" -name '*.tmp.*' 2>/dev/null)" ] &&
        [ -z "$(find "$1" -name '*.safetensors' 2>/dev/null)" ]
}

SHA=$($PY -c "import hashlib,sys;print(hashlib.sha256(open('$FIXTURE','rb').read()).hexdigest())")
DEF=facebook/dinov2-with-registers-small

# 1. the default model, downloaded with the token, verified, cached
hub ok
CACHE=$T/cache1
LOSTD_CACHE=$CACHE HF_ENDPOINT=$HUB HF_TOKEN=tok123 serve default
check "default: listens" $? "$(cat "$T/default.err")"
ready; check "default: ready after download" $? "$(tail -5 "$T/default.err")"
cmp -s "$CACHE/$DEF/model.safetensors" "$FIXTURE"
check "default: cached at \$LOSTD_CACHE/$DEF/model.safetensors" $? "$(find "$CACHE")"
[ -f "$CACHE/$DEF/config.json" ]; check "default: config.json beside it" $? "$(find "$CACHE")"
[ -z "$(find "$CACHE" -name '*.tmp.*')" ]; check "default: no temporary file left" $? "$(find "$CACHE")"
grep -q "^/$DEF/resolve/main/model.safetensors auth=Bearer tok123$" "$T/hub.log"
check "default: HF_TOKEN sent as Bearer" $? "$(cat "$T/hub.log")"
curl -s "http://127.0.0.1:$PORT/v1/models" >"$T/models.json"
$PY - "$T/models.json" "$SHA" "$DEF" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))["data"][0]
assert m["sha256"] == sys.argv[2] and m["id"] == sys.argv[3], m
EOF
check "default: /v1/models names the repo and the sha256" $? "$(cat "$T/models.json")"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Content-Type: image/jpeg" \
    --data-binary @tests/fixtures/images/VOC07_000236.jpg "http://127.0.0.1:$PORT/discover")
check "default: POST /discover works" $([ "$code" = 200 ]; echo $?) "status $code"
stop; check "default: SIGTERM exits 0" $? "exit status"

# 2. the cache is used offline
hub ok; DEAD=$HUB; kill "$HUB_PID"; wait "$HUB_PID" 2>/dev/null; HUB_PID=
LOSTD_CACHE=$CACHE HF_ENDPOINT=$DEAD serve cached && ready
check "cached: ready offline from the cache" $? "$(tail -3 "$T/cached.err")"
stop

# 3. offline with an empty cache: one clear message, exit 1
LOSTD_CACHE=$T/cache3 HF_ENDPOINT=$DEAD serve offline
exits_with 1; check "offline: exits 1" $? "$(tail -3 "$T/offline.err")"
grep -q "Download $DEAD/$DEF/resolve/main/model.safetensors and put it at $T/cache3/$DEF/model.safetensors" \
    "$T/offline.err"
check "offline: says what to download and where" $? "$(tail -2 "$T/offline.err")"
no_partial "$T/cache3"; check "offline: no partial file" $? "$(find "$T/cache3")"

# 4. bad checksum
hub badsum
LOSTD_CACHE=$T/cache4 HF_ENDPOINT=$HUB serve badsum
exits_with 1; check "bad checksum: exits 1" $? "$(tail -3 "$T/badsum.err")"
grep -q "SHA-256 mismatch" "$T/badsum.err"; check "bad checksum: says so" $? "$(tail -2 "$T/badsum.err")"
no_partial "$T/cache4"; check "bad checksum: no partial file" $? "$(find "$T/cache4")"

# 5. 404
hub 404
LOSTD_CACHE=$T/cache5 HF_ENDPOINT=$HUB serve notfound --model hf://acme/missing
exits_with 1; check "404: exits 1" $? "$(tail -3 "$T/notfound.err")"
grep -q "HTTP 404" "$T/notfound.err"; check "404: says so" $? "$(tail -2 "$T/notfound.err")"
no_partial "$T/cache5"; check "404: no partial file" $? "$(find "$T/cache5")"

# 6. a transfer cut in the middle
hub truncated
LOSTD_CACHE=$T/cache6 HF_ENDPOINT=$HUB serve truncated
exits_with 1; check "truncated: exits 1" $? "$(tail -3 "$T/truncated.err")"
no_partial "$T/cache6"; check "truncated: no partial file" $? "$(find "$T/cache6")"

# 7. hf://OWNER/REPO/FILE through a redirect, checked with X-Linked-ETag
hub redirect
LOSTD_CACHE=$T/cache7 HF_ENDPOINT=$HUB serve redirect --model hf://acme/tiny-vit/weights.safetensors
ready && grep -q "sha256 $SHA" "$T/redirect.err" && ! grep -q "not verified" "$T/redirect.err"
check "redirect: hf:// URL downloaded and verified" $? "$(tail -3 "$T/redirect.err")"
cmp -s "$T/cache7/acme/tiny-vit/weights.safetensors" "$FIXTURE"
check "redirect: cached under acme/tiny-vit" $? "$(find "$T/cache7")"
stop

# 8. a slow download: live at once, not ready until the model is in
hub slow
LOSTD_CACHE=$T/cache8 HF_ENDPOINT=$HUB serve slow
sleep 0.5
live=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health/live")
rd=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$PORT/health/ready")
check "slow: /health/live 200 while downloading" $([ "$live" = 200 ]; echo $?) "$live"
case "$rd" in *'"reason":"downloading the model"'*' 503') pass "slow: /health/ready 503 with the reason";;
    *) fail "slow: /health/ready 503 with the reason" "$rd";; esac
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Content-Type: image/jpeg" \
    --data-binary @tests/fixtures/images/VOC07_000236.jpg "http://127.0.0.1:$PORT/discover")
check "slow: POST /discover 503 before ready" $([ "$code" = 503 ]; echo $?) "$code"
ready; check "slow: ready once downloaded" $? "$(tail -3 "$T/slow.err")"
stop; check "slow: SIGTERM exits 0" $? "exit status"

# 9. malformed hf:// URL
LOSTD_CACHE=$T/cache9 HF_ENDPOINT=$HUB serve badurl --model 'hf://acme/../x'
exits_with 1; check "bad hf:// URL: exits 1" $? "$(tail -2 "$T/badurl.err")"

# 10. no digest from the hub: refused, unless --model-sha256 pins one
hub nodigest
LOSTD_CACHE=$T/cache10 HF_ENDPOINT=$HUB serve nodigest
exits_with 1; check "no digest: refused, exit 1" $? "$(tail -3 "$T/nodigest.err")"
grep -q "announced no checksum" "$T/nodigest.err"
check "no digest: says why and how to pin" $? "$(tail -2 "$T/nodigest.err")"
no_partial "$T/cache10"; check "no digest: nothing in the cache" $? "$(find "$T/cache10")"
LOSTD_CACHE=$T/cache10 HF_ENDPOINT=$HUB serve nodigest_badpin --model-sha256 "$(printf '%064d' 7)"
exits_with 1; check "no digest, wrong pin: refused" $? "$(tail -3 "$T/nodigest_badpin.err")"
no_partial "$T/cache10"; check "no digest, wrong pin: nothing in the cache" $? "$(find "$T/cache10")"
LOSTD_CACHE=$T/cache10 HF_ENDPOINT=$HUB serve nodigest_pin --model-sha256 "$SHA" && ready
check "no digest, right --model-sha256: downloaded and served" $? "$(tail -3 "$T/nodigest_pin.err")"
stop

# 11. a digest only on the second hop (a CDN vouching for itself): refused
hub cdnsum
LOSTD_CACHE=$T/cache11 HF_ENDPOINT=$HUB serve cdnsum
exits_with 1; check "digest from a later hop only: refused" $? "$(tail -3 "$T/cdnsum.err")"
no_partial "$T/cache11"; check "digest from a later hop: nothing in the cache" $? "$(find "$T/cache11")"

# 12. two processes downloading into one cache at once: one download, both serve
hub slow
LOSTD_CACHE=$T/cache12 HF_ENDPOINT=$HUB serve twin_a; PA=$PID; PORTA=$PORT
LOSTD_CACHE=$T/cache12 HF_ENDPOINT=$HUB serve twin_b; PB=$PID; PORTB=$PORT
PID=$PA; PORT=$PORTA; ready; ra=$?
PID=$PB; PORT=$PORTB; ready; rb=$?
check "two processes, one cache: both ready" $((ra + rb)) "$(tail -n 2 "$T/twin_a.err" "$T/twin_b.err")"
n=$(grep -c "/model.safetensors " "$T/hub.log")
check "two processes, one cache: one download" $([ "$n" = 1 ]; echo $?) "$n downloads"
cmp -s "$T/cache12/$DEF/model.safetensors" "$FIXTURE" &&
    [ -z "$(find "$T/cache12" -name '*.tmp.*')" ]
check "two processes, one cache: verified file, no temporaries" $? "$(find "$T/cache12")"
grep -q "another process is downloading" "$T/twin_a.err" "$T/twin_b.err"
check "two processes, one cache: the second says it waits" $? "$(tail -n 3 "$T/twin_b.err")"
PID=$PA; stop; PID=$PB; stop

# 13. a cached file corrupted on disk, re-verified against the pin
printf 'garbage' | dd of="$T/cache12/$DEF/model.safetensors" bs=1 seek=100 conv=notrunc 2>/dev/null
LOSTD_CACHE=$T/cache12 HF_ENDPOINT=$DEAD serve corrupt --model-sha256 "$SHA"
exits_with 1; check "corrupted cache + --model-sha256: refused, exit 1" $? "$(tail -3 "$T/corrupt.err")"
grep -q "expects $SHA" "$T/corrupt.err"; check "corrupted cache: says which digest" $? "$(tail -2 "$T/corrupt.err")"

# 14. https hub redirecting to http: refused
if command -v openssl >/dev/null; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1         -addext "subjectAltName=IP:127.0.0.1" -keyout "$T/tls.key" -out "$T/tls.crt" 2>/dev/null
    hub ok; PLAIN=$HUB; PLAIN_PID=$HUB_PID; HUB_PID=
    hub tohttp "$T/tls" "$PLAIN"
    CURL_CA_BUNDLE=$T/tls.crt LOSTD_CACHE=$T/cache14 HF_ENDPOINT=$HUB serve tohttp
    exits_with 1; check "https hub redirecting to http: refused, exit 1" $? "$(tail -3 "$T/tohttp.err")"
    grep -q "stays on https" "$T/tohttp.err"; check "https to http: says why" $? "$(tail -2 "$T/tohttp.err")"
    no_partial "$T/cache14"; check "https to http: nothing in the cache" $? "$(find "$T/cache14")"
    hub ok "$T/tls"
    CURL_CA_BUNDLE=$T/tls.crt LOSTD_CACHE=$T/cache14 HF_ENDPOINT=$HUB serve https && ready
    check "https hub (CA from CURL_CA_BUNDLE): downloaded and served" $? "$(tail -3 "$T/https.err")"
    stop
    kill "$PLAIN_PID" 2>/dev/null
else
    echo "SKIP https cases: no openssl"
fi
exit 0
