#!/usr/bin/env bash
# The parameter table (server/params.c): every discovery parameter is
# accepted or refused the same way whichever way it comes in: a command-line
# flag (`lostd discover`), a `--lost-config` settings file, the daemon's
# LOSTD_* environment twin, and over HTTP as a query string, a form field and
# a JSON body parameter; the refusal says the same thing everywhere. Also:
# --help and the OpenAPI document list the table's rows with its bounds.
# Prints PASS/FAIL lines; needs curl and python3.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh
on_exit '[ -n "${PID:-}" ] && kill -TERM "$PID" 2>/dev/null'

"$BIN" serve --model tests/fixtures/models/tiny.safetensors --host 127.0.0.1 --port 0 \
    --workers 1 --threads 1 --max-side 448 >"$T/serve.out" 2>"$T/serve.err" &
PID=$!
for _ in $(seq 200); do
    PORT=$(sed -n 's/^lostd: listening on .*:\([0-9]*\)$/\1/p' "$T/serve.out")
    [ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break
    sleep 0.1
done

$PY - "$BIN" "$PORT" "$T" <<'EOF'
import base64, json, os, subprocess, sys, urllib.parse, uuid
import http.client
BIN, PORT, T = sys.argv[1], int(sys.argv[2]), sys.argv[3]
MODEL = "tests/fixtures/models/tiny.safetensors"
IMG = "tests/fixtures/images/VOC07_000236.jpg"
img = open(IMG, "rb").read()
b64 = base64.b64encode(img).decode()
fails = 0

def check(name, ok, why=""):
    global fails
    print(("PASS %s" % name) if ok else ("FAIL %s: %s" % (name, why)))
    fails += not ok

def post(path, body, ctype):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    c.request("POST", path, body, {"Content-Type": ctype})
    r = c.getresponse()
    data = r.read()
    msg = ""
    if r.status != 200:
        try:
            msg = json.loads(data)["error"]["message"]
        except Exception:
            msg = data[:200].decode("latin-1")
    return r.status == 200, msg

def by_query(name, v):
    return post("/discover?" + urllib.parse.urlencode({name: v}), img, "image/jpeg")

def by_form(name, v):
    bd = uuid.uuid4().hex
    body = (("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (bd, name, v))
            .encode() + ("--%s\r\nContent-Disposition: form-data; name=\"image\"; "
                         "filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n" % bd).encode()
            + img + ("\r\n--%s--\r\n" % bd).encode())
    return post("/discover", body, "multipart/form-data; boundary=" + bd)

def as_json(v):
    """The value as a JSON client would send it: a number when it is one."""
    try:
        x = float(v)
        if v.strip() == v and x == x and abs(x) < 2**63 and v.lower() not in ("nan", "inf"):
            return int(v) if v.lstrip("-").isdigit() else x
    except ValueError:
        pass
    return {"true": True, "false": False}.get(v, v)

def by_json(name, v):
    body = json.dumps({"inputs": b64, "parameters": {name: as_json(v)}}).encode()
    return post("/discover", body, "application/json")

def by_flag(flag, v):
    p = subprocess.run([BIN, "discover", "--model", MODEL, flag, v, IMG],
                       capture_output=True, text=True)
    return p.returncode == 0, p.stderr.strip()

def by_file(name, v):
    path = os.path.join(T, "cfg.json")
    with open(path, "w") as f:
        json.dump({name: as_json(v)}, f)
    p = subprocess.run([BIN, "discover", "--model", MODEL, "--lost-config", path, IMG],
                       capture_output=True, text=True)
    return p.returncode == 0, p.stderr.strip()

def by_env(flag, v):
    """lostd serve's environment twin: refused values stop it at start (exit 2)."""
    env = dict(os.environ)
    env["LOSTD_" + flag[2:].upper().replace("-", "_")] = v
    p = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, env=env)
    return p.returncode == 0, p.stderr.strip()

# Values on both sides of each bound, and garbage. (max_side: the daemon
# above caps requests at its own --max-side 448 and the patch size below;
# only values inside both ranges or refused by both are compared.)
cases = {
    "k_patches": ("--k-patches", ["1", "100", "1000000", "0", "1000001", "-1", "1.5", "1e3",
                                  "0x10", "nan", "", "abc", "99999999999999999999"]),
    "gram_bias": ("--gram-bias", ["0", "-0.25", "1000000", "-1000000", "1000001", "-1e7",
                                  "nan", "inf", "-inf", "", "0x", "1e400"]),
    "features": ("--features", ["k", "q", "v", "K", "x", "", "kq"]),
    "layer": ("--layer", ["-1", "0", "1", "-2", "1.0", "", "x", "-1000000"]),
    "max_side": ("--max-side", ["448", "224", "-14", "1e3", "", "x", "100000"]),
    "method": ("--method", ["lost", "tokencut", "LOST", "ncut", ""]),
    "tau": ("--tau", ["0.2", "-1", "1", "1.01", "-1.5", "nan", ""]),
    "eps": ("--eps", ["1e-5", "1", "0", "-1e-5", "nan", "inf"]),
}
for name, (flag, values) in cases.items():
    for v in values:
        got = {"flag": by_flag(flag, v), "file": by_file(name, v), "query": by_query(name, v),
               "form": by_form(name, v), "json": by_json(name, v)}
        if name not in ("layer", "max_side"):  # checked against the model / cap at run time
            got["env"] = by_env(flag, v)
        verdicts = set(ok for ok, _ in got.values())
        check("%s=%r: the same verdict %s everywhere" % (name, v,
              "accepted" if True in verdicts else "refused"), len(verdicts) == 1,
              {k: ok for k, (ok, _) in got.items()})
        if verdicts == {False} and name not in ("layer", "max_side"):
            want = "%s must be" % name
            bad = {k: m for k, (ok, m) in got.items() if want not in m}
            check("%s=%r: one message (\"%s ...\") everywhere" % (name, v, want), not bad, bad)

# A bool: the flag and its negation, and the values of every other way.
for v, want in (("1", True), ("true", True), ("0", True), ("off", True), ("maybe", False),
                ("2", False), ("", False)):
    got = {"file": by_file("l2norm", v), "query": by_query("l2norm", v),
           "form": by_form("l2norm", v), "json": by_json("l2norm", v),
           "env": by_env("--l2norm", v)}
    verdicts = set(ok for ok, _ in got.values())
    check("l2norm=%r: %s everywhere" % (v, "accepted" if want else "refused"),
          verdicts == {want}, {k: ok for k, (ok, _) in got.items()})
for flag in ("--l2norm", "--no-l2norm"):
    p = subprocess.run([BIN, "discover", "--model", MODEL, flag, IMG], capture_output=True)
    check("%s is a switch" % flag, p.returncode == 0, p.stderr[-200:])

# Help and OpenAPI come from the table.
h = subprocess.run([BIN, "discover", "--help"], capture_output=True, text=True).stdout
check("discover --help lists the rows with their bounds",
      "--k-patches" in h and "1..1000000" in h and "--no-l2norm" in h, h[-400:])
c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
c.request("GET", "/openapi.json")
doc = json.loads(c.getresponse().read())
ps = {p["name"]: p for p in doc["paths"]["/discover"]["post"]["parameters"]}
check("OpenAPI lists every HTTP row with the table's bounds",
      ps.get("k_patches", {}).get("schema", {}).get("maximum") == 1000000 and
      ps.get("gram_bias", {}).get("schema", {}).get("minimum") == -1000000 and
      set(ps) >= {"k_patches", "gram_bias", "features", "l2norm", "layer", "max_side",
                  "format", "image_id", "debug"}, sorted(ps))
EOF
kill -TERM "$PID" 2>/dev/null
wait "$PID" 2>/dev/null
PID=
