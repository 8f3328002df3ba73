#!/usr/bin/env bash
# e2e_deploy.sh - the packaging in docker/, checked offline, from the repo root.
#  1. Every manifest parses (python3 + PyYAML; `kubectl kustomize` renders the
#     kustomization when kubectl is installed); the Deployment's probes, the
#     Service, the HPA, the volumes and every resource block are consistent;
#     every LOSTD_* variable is one the daemon knows (`lostd serve --help`).
#  2. The Dockerfile: ARG BASE before the FROMs, multi-stage, the project's
#     Makefile, non-root USER, HEALTHCHECK on /health/live, exec-form
#     ENTRYPOINT and CMD, VOLUME on the cache, EXPOSE = LOSTD_PORT, and the
#     runtime packages cover every NEEDED library of the binary (dpkg only).
#  3. The daemon, started with the Deployment's (and compose's) environment
#     and the tiny fixture model, answers every probe path of the manifests
#     with 200 once ready (404 would mean a wrong path) and exits 0 on SIGTERM.
#  4. The Indexed Job's commands, run for every index 0..N-1 and then the
#     merge Job's command, with the volumes mapped to local folders and
#     --model replaced by --predictions tests/fixtures/lost/LOST_VOC07.csv
#     (LOST's published boxes, so no backbone runs): CorLoc 61.90, 3102/5011.
# The image itself is built and run by tests/e2e_image.sh (the same pods in
# the image). Prints "PASS name" / "FAIL name: why" / "SKIP name: why";
# LOSTD_BIN is the binary. Needs python3 with PyYAML (Debian: python3-yaml)
# and curl; the kubelet's env and $(VAR) rules are tests/kube.py's, shared
# with tests/e2e_image.sh.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh
case "$BIN" in /*) ;; *) BIN=$PWD/$BIN;; esac
PY=${PYTHON:-$PY}
field() { grep -o "\"$1\":[^,}]*" | head -n 1 | cut -d: -f2- | tr -d '"'; }

if [ ! -x "$BIN" ]; then
    fail "binary" "$BIN is not built"
    exit 1
fi
if ! "$PY" -c 'import yaml' 2>/dev/null; then
    fail "python3 yaml" "PyYAML is missing (Debian: apt-get install python3-yaml); manifests unchecked"
    exit 1
fi
"$BIN" serve --help >"$T/serve-help.txt" 2>&1

# Steps 1 and 2, and the extraction for 3 and 4: the python below prints
# PASS/FAIL lines and writes into $T: probes.txt (one path a line),
# env-deploy.txt / env-compose.txt (NAME=VALUE), shard-I.argv and merge.argv
# (one argument a line, volumes already mapped to local folders).
"$PY" - "$T" "$BIN" <<'PYEOF'
import glob, json, os, re, shutil, subprocess, sys
import yaml
sys.dont_write_bytecode = True
sys.path.insert(0, "tests")
from kube import cores, env_values, expand   # the kubelet's rules (tests/kube.py)

T, BIN = sys.argv[1], sys.argv[2]
K8S = "docker/k8s"

def ok(name):
    print("PASS " + name)

def bad(name, why):
    print("FAIL %s: %s" % (name, why))

def check(name, errors):
    if errors:
        bad(name, "; ".join(errors))
    else:
        ok(name)

# -- 1. manifests parse ------------------------------------------------------
docs, errs = [], []   # docs: (file, document)
files = sorted(glob.glob(K8S + "/*.yaml"))
if not files:
    errs.append("no manifests in " + K8S)
for f in files:
    try:
        for d in yaml.safe_load_all(open(f)):
            if d is None:
                continue
            if not isinstance(d, dict):
                errs.append("%s: a document is not a mapping" % f)
                continue
            docs.append((f, d))
    except yaml.YAMLError as e:
        errs.append("%s: %s" % (f, str(e).replace("\n", " ")))
try:
    compose = yaml.safe_load(open("docker/compose.yaml"))
except (OSError, yaml.YAMLError) as e:
    compose = None
    errs.append("docker/compose.yaml: %s" % str(e).replace("\n", " "))
check("manifests and compose.yaml are valid YAML", errs)

objs = [(f, d) for f, d in docs if d.get("kind") != "Kustomization"]
errs = []
for f, d in objs:
    for key in ("apiVersion", "kind"):
        if not d.get(key):
            errs.append("%s: no %s" % (f, key))
    if not (d.get("metadata") or {}).get("name"):
        errs.append("%s: %s without metadata.name" % (f, d.get("kind")))
check("every object has apiVersion, kind, metadata.name", errs)

def of_kind(kind):
    return [d for _, d in objs if d.get("kind") == kind]

# Kustomization: its resources exist, and kubectl renders it when present.
kust = [d for _, d in docs if d.get("kind") == "Kustomization"]
errs = []
for k in kust:
    for r in k.get("resources", []):
        if not os.path.exists(os.path.join(K8S, r)):
            errs.append("resource %s does not exist" % r)
check("kustomization resources exist", errs if kust else ["no kustomization.yaml"])
if kust and shutil.which("kubectl"):
    p = subprocess.run(["kubectl", "kustomize", K8S], capture_output=True, text=True)
    if p.returncode != 0:
        bad("kubectl kustomize renders", p.stderr.strip()[:300])
    else:
        kinds = sorted(d["kind"] for d in yaml.safe_load_all(p.stdout) if d)
        want = ["Deployment", "HorizontalPodAutoscaler", "PersistentVolumeClaim", "Service"]
        missing = [k for k in want if k not in kinds]
        check("kubectl kustomize renders " + ", ".join(want),
              ["missing " + ", ".join(missing) + " in " + ", ".join(kinds)] if missing else [])
else:
    print("SKIP kubectl kustomize renders: kubectl not installed (the YAML checks above still ran)")

# -- the Deployment ----------------------------------------------------------
deps = of_kind("Deployment")
probes = set()
env_deploy = {}
if len(deps) != 1:
    bad("one Deployment", "found %d" % len(deps))
else:
    dep = deps[0]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    tlabels = spec["template"]["metadata"].get("labels", {})
    sel = spec.get("selector", {}).get("matchLabels", {})
    c = pod["containers"][0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    errs = []
    if any(tlabels.get(k) != v for k, v in sel.items()) or not sel:
        errs.append("selector %s does not match the pod labels %s" % (sel, tlabels))
    want = {"startupProbe": "/health/ready", "readinessProbe": "/health/ready",
            "livenessProbe": "/health/live"}
    for kind, path in want.items():
        pr = c.get(kind)
        if not pr or "httpGet" not in pr:
            errs.append("%s missing or not httpGet" % kind)
            continue
        g = pr["httpGet"]
        probes.add(g.get("path"))
        if g.get("path") != path:
            errs.append("%s on %s, expected %s" % (kind, g.get("path"), path))
        port = g.get("port")
        if port not in ports and port not in ports.values():
            errs.append("%s port %s is not a container port" % (kind, port))
    st = c.get("startupProbe") or {}
    budget = st.get("periodSeconds", 10) * st.get("failureThreshold", 3)
    if budget < 300:
        errs.append("startupProbe allows only %ds for the model download" % budget)
    check("Deployment probes: startup+readiness on /health/ready, liveness on /health/live", errs)

    errs = []
    for cc in pod.get("containers", []) + pod.get("initContainers", []):
        r = cc.get("resources", {})
        for part in ("requests", "limits"):
            for res in ("cpu", "memory"):
                if res not in r.get(part, {}):
                    errs.append("%s: no %s.%s" % (cc["name"], part, res))
    check("Deployment resources: cpu and memory requests and limits", errs)

    errs = []
    sc = pod.get("securityContext", {})
    if not sc.get("runAsNonRoot") or sc.get("runAsUser", 0) == 0:
        errs.append("pod does not run as non-root")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    env_deploy = env_values(c)
    if int(env_deploy.get("LOSTD_GRACE", 10)) >= grace:
        errs.append("LOSTD_GRACE %s >= terminationGracePeriodSeconds %s"
                    % (env_deploy.get("LOSTD_GRACE"), grace))
    vols = {v["name"] for v in pod.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        if m["name"] not in vols:
            errs.append("mount %s has no volume" % m["name"])
    if not any(m["mountPath"] == "/var/cache/lostd" for m in c.get("volumeMounts", [])):
        errs.append("the model cache /var/cache/lostd is not a mounted volume")
    check("Deployment: non-root, grace, cache volume", errs)

    svcs = of_kind("Service")
    errs = [] if svcs else ["no Service"]
    for s in svcs:
        ss = s["spec"].get("selector", {})
        if not ss or any(tlabels.get(k) != v for k, v in ss.items()):
            errs.append("Service %s selects %s, not the Deployment's pods" % (s["metadata"]["name"], ss))
        for p in s["spec"].get("ports", []):
            tp = p.get("targetPort", p.get("port"))
            if tp not in ports and tp not in ports.values():
                errs.append("targetPort %s is not a container port" % tp)
    check("Service selects the Deployment and targets its port", errs)

    hpas = of_kind("HorizontalPodAutoscaler")
    errs = [] if hpas else ["no HorizontalPodAutoscaler"]
    for h in hpas:
        hs = h["spec"]
        ref = hs.get("scaleTargetRef", {})
        if ref.get("kind") != "Deployment" or ref.get("name") != dep["metadata"]["name"]:
            errs.append("scaleTargetRef %s" % ref)
        if not 1 <= hs.get("minReplicas", 1) <= hs.get("maxReplicas", 0):
            errs.append("replicas %s..%s" % (hs.get("minReplicas"), hs.get("maxReplicas")))
        cpu = [m for m in hs.get("metrics", [])
               if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"]
        if not cpu:
            errs.append("no cpu metric")
    check("HorizontalPodAutoscaler scales the Deployment on CPU", errs)

# PVCs: every claim a pod uses is defined here.
claims = {d["metadata"]["name"] for d in of_kind("PersistentVolumeClaim")}
errs = []
for kind in ("Deployment", "Job"):
    for d in of_kind(kind):
        for v in d["spec"]["template"]["spec"].get("volumes", []):
            cn = v.get("persistentVolumeClaim", {}).get("claimName")
            if cn and cn not in claims:
                errs.append("%s %s uses claim %s, not defined" % (kind, d["metadata"]["name"], cn))
check("every PersistentVolumeClaim used is defined", errs)

# -- compose -------------------------------------------------------------------
env_compose = {}
if compose:
    errs = []
    svc = (compose.get("services") or {}).get("lostd")
    if not svc:
        errs.append("no service lostd")
    else:
        hc = " ".join(svc.get("healthcheck", {}).get("test", []))
        m = re.search(r"http://[^/ ]+(/[^ ]*)", hc)
        if not m or m.group(1) != "/health/live":
            errs.append("healthcheck is not on /health/live: %s" % hc)
        else:
            probes.add(m.group(1))
        if not any(str(v).endswith(":/var/cache/lostd") for v in svc.get("volumes", [])):
            errs.append("no volume on /var/cache/lostd")
        lim = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        if "cpus" not in lim or "memory" not in lim:
            errs.append("no cpu/memory limits")
        b = svc.get("build", {})
        df = os.path.join("docker", b.get("context", "."), b.get("dockerfile", "Dockerfile"))
        if not os.path.isfile(os.path.normpath(df)):
            errs.append("build points at %s, which does not exist" % df)
        env_compose = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
    check("compose.yaml: healthcheck, cache volume, limits, build", errs)

# -- 2. the Dockerfile ---------------------------------------------------------
instrs = []   # (INSTRUCTION, rest)
buf = ""
for line in open("docker/Dockerfile"):
    s = line.rstrip("\n")
    if not buf and (not s.strip() or s.lstrip().startswith("#")):
        continue
    if s.lstrip().startswith("#"):
        continue
    if s.endswith("\\"):
        buf += s[:-1] + " "
        continue
    buf += s
    word, _, rest = buf.strip().partition(" ")
    instrs.append((word.upper(), rest.strip()))
    buf = ""

errs = []
froms = [i for i, (w, _) in enumerate(instrs) if w == "FROM"]
argbase = [i for i, (w, r) in enumerate(instrs) if w == "ARG" and r.startswith("BASE=")]
if not argbase or not froms or argbase[0] > froms[0]:
    errs.append("no ARG BASE=... before the first FROM")
elif "bookworm" not in instrs[argbase[0]][1]:
    errs.append("BASE does not default to bookworm")
if len(froms) < 2:
    errs.append("not multi-stage")
for i in froms:
    if not instrs[i][1].startswith("${BASE}") and not instrs[i][1].startswith("$BASE"):
        errs.append("FROM %s does not use the BASE argument" % instrs[i][1])

def with_args(stage):
    """The stage with its ARG defaults substituted into RUN lines, as the
    shell of RUN sees them (the package lists are ARGs)."""
    args, out = {}, []
    for w, r in stage:
        if w == "ARG" and "=" in r:
            k, _, v = r.partition("=")
            args[k.strip()] = " ".join(v.strip().strip('"').split())
        elif w == "RUN":
            r = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                       lambda m: args.get(m.group(1) or m.group(2), m.group(0)), r)
        out.append((w, r))
    return out

runtime = with_args(instrs[froms[-1]:]) if froms else []
build = with_args(instrs[froms[0]:froms[-1]]) if froms else []
if not any(w == "RUN" and re.search(r"\bmake\b.*\bbuild/lostd\b", r) for w, r in build):
    errs.append("the build stage does not run the Makefile's build/lostd")
users = [r for w, r in runtime if w == "USER"]
if not users or users[-1].split(":")[0] in ("root", "0"):
    errs.append("the runtime stage does not switch to a non-root USER")
hc = [r for w, r in runtime if w == "HEALTHCHECK"]
if not hc or "/health/live" not in hc[-1]:
    errs.append("no HEALTHCHECK on /health/live")
else:
    probes.add("/health/live")
    tool = re.search(r"CMD\s+(\S+)", hc[-1])
    pkgs_rt = " ".join(r for w, r in runtime if w == "RUN")
    if tool and tool.group(1) == "curl" and not re.search(r"\bcurl\b(?!-)", pkgs_rt.replace("libcurl4", "")):
        errs.append("HEALTHCHECK uses curl, which the runtime stage does not install")
for word in ("ENTRYPOINT", "CMD"):
    last = [r for w, r in runtime if w == word]
    try:
        v = json.loads(last[-1]) if last else None
    except ValueError:
        v = None
    if not isinstance(v, list) or not v:
        errs.append("%s is not in exec form (a JSON array)" % word)
    elif word == "ENTRYPOINT" and v[0] not in ("lostd", "/usr/local/bin/lostd"):
        errs.append("ENTRYPOINT runs %s, not lostd" % v[0])
envs = {}
for w, r in runtime:
    if w == "ENV":
        for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', r):
            envs[k] = v.strip('"')
if envs.get("LOSTD_HOST") != "0.0.0.0":
    errs.append("ENV LOSTD_HOST is not 0.0.0.0")
vol = " ".join(r for w, r in runtime if w == "VOLUME")
if not envs.get("LOSTD_CACHE") or envs["LOSTD_CACHE"] not in vol:
    errs.append("LOSTD_CACHE (%s) is not a VOLUME" % envs.get("LOSTD_CACHE"))
expose = " ".join(r for w, r in runtime if w == "EXPOSE").split()
if envs.get("LOSTD_PORT", "8080") not in [e.split("/")[0] for e in expose]:
    errs.append("EXPOSE %s does not include LOSTD_PORT %s" % (expose, envs.get("LOSTD_PORT")))
check("Dockerfile: ARG BASE, multi-stage Makefile build, non-root USER, HEALTHCHECK, "
      "exec-form ENTRYPOINT/CMD, VOLUME, ENV, EXPOSE", errs)

# The runtime packages cover the binary's NEEDED libraries (Debian only).
apt = " ".join(r for w, r in runtime if w == "RUN")
if shutil.which("dpkg") and shutil.which("readelf") and shutil.which("ldd"):
    needed = re.findall(r"\(NEEDED\).*\[(.+?)\]",
                        subprocess.run(["readelf", "-d", BIN], capture_output=True,
                                       text=True).stdout)
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
        ["ldd", BIN], capture_output=True, text=True).stdout, re.M))
    errs = []
    for so in needed:
        if so.startswith(("libc.so", "libm.so", "libpthread.so", "libdl.so")):
            continue   # libc6: part of every Debian base image
        if so.startswith(("libasan.", "libubsan.", "libtsan.", "liblsan.")):
            continue   # make test SAN=...: the image never ships a sanitizer build
        p = paths.get(so)
        if not p:
            errs.append("%s not found by ldd" % so)
            continue
        cands = {p, os.path.realpath(p)}
        cands |= {"/usr" + c for c in cands if not c.startswith("/usr/")}
        pkg = None
        for cand in cands:
            q = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True)
            if q.returncode == 0:
                pkg = q.stdout.split(":")[0].split(",")[0].strip()
                break
        if not pkg:
            errs.append("%s: no package owns %s" % (so, p))
        elif not re.search(r"(?<![\w.-])%s(?![\w.-])" % re.escape(pkg), apt):
            errs.append("%s comes from %s, not installed in the runtime stage" % (so, pkg))
    check("runtime stage installs the package of every NEEDED library", errs)
else:
    print("SKIP runtime packages cover NEEDED libraries: needs dpkg, readelf, ldd")

# Every LOSTD_* name used anywhere is one the daemon reads.
known = set(re.findall(r"LOSTD_[A-Z_]+", open(os.path.join(T, "serve-help.txt")).read()))
used = set(envs) | set(env_deploy) | set(env_compose)
for f, d in objs:
    used |= set(re.findall(r"LOSTD_[A-Z_]+", yaml.safe_dump(d)))
unknown = sorted(n for n in used if n.startswith("LOSTD_") and n not in known)
check("every LOSTD_* variable is known to `lostd serve --help`",
      ["unknown: " + ", ".join(unknown)] if unknown else ([] if known else ["no help text"]))

# -- the Indexed Job and the merge ---------------------------------------------
jobs = of_kind("Job")
shard = [j for j in jobs if j["spec"].get("completionMode") == "Indexed"]
merge = [j for j in jobs if j["spec"].get("completionMode") != "Indexed"]
local = {"lostd-voc": os.path.abspath("tests/fixtures/voc2007"),
         "lostd-eval-results": os.path.join(T, "results")}

def argv_of(job, index=None):
    """The container's command line as the kubelet runs it: ENTRYPOINT (lostd)
    unless command is set, $(VAR) expanded from the declared env, mount paths
    mapped to local folders. Also returns the errors found."""
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    errs = []
    argv = list(c.get("command") or ["lostd"]) + list(c.get("args") or [])
    declared = {e["name"] for e in c.get("env", [])}
    vols = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
            for v in pod.get("volumes", [])}
    mapping = []
    for m in c.get("volumeMounts", []):
        claim = vols.get(m["name"])
        if claim in local:
            mapping.append((m["mountPath"].rstrip("/"), local[claim]))
    values = env_values(c)
    if index is not None:
        values["JOB_COMPLETION_INDEX"] = str(index)
    out = []
    for a in argv:
        for var in re.findall(r"\$\((\w+)\)", a):
            if var not in declared and var != "JOB_COMPLETION_INDEX":
                errs.append("$(%s) is not a declared env variable" % var)
        a = expand(a, values)
        for mp, loc in mapping:
            a = re.sub(r"(?<![\w/])%s(?=/|\b|$)" % re.escape(mp), loc, a)
        out.append(a)
    return out, errs

def opt(argv, name):
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) else None

errs = []
N = None
if len(shard) != 1:
    errs.append("expected one Job with completionMode Indexed, found %d" % len(shard))
else:
    js = shard[0]["spec"]
    N = js.get("completions")
    if not isinstance(N, int) or N < 1:
        errs.append("completions %r" % N)
    par = js.get("parallelism", 1)
    if not isinstance(par, int) or not 1 <= par <= (N or 0):
        errs.append("parallelism %r not in 1..completions" % par)
    if js["template"]["spec"].get("restartPolicy") != "Never" and "podFailurePolicy" in js:
        errs.append("podFailurePolicy needs restartPolicy Never")
    raw = list(js["template"]["spec"]["containers"][0].get("args") or [])
    s = opt(raw, "--shard")
    if s != "$(JOB_COMPLETION_INDEX)/%s" % N:
        errs.append("--shard is %r, expected $(JOB_COMPLETION_INDEX)/%s" % (s, N))
    o = opt(raw, "--out")
    if not o or "$(JOB_COMPLETION_INDEX)" not in o:
        errs.append("--out %r does not depend on the index" % o)
    c = js["template"]["spec"]["containers"][0]
    r = c.get("resources", {})
    if not all(k in r.get("requests", {}) for k in ("cpu", "memory")):
        errs.append("no cpu/memory requests")
    a0, _ = argv_of(shard[0], 0)
    th = opt(a0, "--threads")
    lim = r.get("limits", {}).get("cpu")
    if th is None or lim is None or th != str(cores(lim)):
        errs.append("--threads %s does not match limits.cpu %s (eval's default is every "
                    "CPU of the node)" % (th, lim))
    _, e2 = argv_of(shard[0])
    errs += e2
check("Indexed Job: completions = N, parallelism <= N, --shard $(JOB_COMPLETION_INDEX)/N, "
      "per-index --out, requests, --threads = limits.cpu", errs)

errs = []
if len(merge) != 1:
    errs.append("expected one merge Job, found %d" % len(merge))
elif shard:
    margv, e2 = argv_of(merge[0])
    errs += e2
    cmd = " ".join(margv)
    raw = list(shard[0]["spec"]["template"]["spec"]["containers"][0].get("args") or [])
    pat = opt(raw, "--out").replace("$(JOB_COMPLETION_INDEX)", "*")
    if "--merge" not in cmd:
        errs.append("the merge Job does not run --merge")
    mraw = " ".join(list(merge[0]["spec"]["template"]["spec"]["containers"][0].get("command") or [])
                    + list(merge[0]["spec"]["template"]["spec"]["containers"][0].get("args") or []))
    if pat not in mraw:
        errs.append("the merge Job does not read %s" % pat)
    for name in ("--dataset", "--root"):
        if "%s %s" % (name, opt(raw, name)) not in mraw:
            errs.append("merge %s differs from the shards' %s" % (name, opt(raw, name)))
    r = merge[0]["spec"]["template"]["spec"]["containers"][0].get("resources", {})
    if "requests" not in r:
        errs.append("no requests")
check("merge Job reads every shard's --out, same --dataset and --root", errs)

# Files for the shell: the commands with local paths; --model replaced.
with open(os.path.join(T, "probes.txt"), "w") as f:
    f.write("".join(p + "\n" for p in sorted(probes) if p))
for name, env in (("env-deploy.txt", env_deploy), ("env-compose.txt", env_compose),
                  ("env-image.txt", envs)):
    with open(os.path.join(T, name), "w") as f:
        f.write("".join("%s=%s\n" % kv for kv in sorted(env.items())))
if shard and merge and N:
    for i in range(N):
        a, _ = argv_of(shard[0], i)
        if "--model" in a:
            k = a.index("--model")
            a[k:k + 2] = ["--predictions", os.path.abspath("tests/fixtures/lost/LOST_VOC07.csv")]
        with open(os.path.join(T, "shard-%d.argv" % i), "w") as f:
            f.write("".join(x + "\n" for x in a))
    a, _ = argv_of(merge[0])
    with open(os.path.join(T, "merge.argv"), "w") as f:
        f.write("".join(x + "\n" for x in a))
    with open(os.path.join(T, "n"), "w") as f:
        f.write(str(N))
PYEOF

# -- 3. the daemon answers the probe paths, with the manifests' environment ----
# serve_with NAME ENVFILE: the daemon with the image's ENV, then ENVFILE's, then
# what a test needs (loopback, port 0, fixture model, no download).
serve_with() {
    local name=$1 envfile=$2
    local -a envs=()
    local kv
    while IFS= read -r kv; do [ -n "$kv" ] && envs+=("$kv"); done \
        < <(cat "$T/env-image.txt" "$envfile" 2>/dev/null)
    envs+=(LOSTD_HOST=127.0.0.1 LOSTD_PORT=0 LOSTD_HEALTH_PORT=0 LOSTD_CACHE="$T/cache"
           LOSTD_MODEL=tests/fixtures/models/tiny.safetensors LOSTD_STATIC_DIR=static)
    env "${envs[@]}" "$BIN" serve >"$T/$name.out" 2>"$T/$name.err" &
    PID=$!
    PIDS+=("$PID")
    PORT=
    for _ in $(seq 1 200); do
        PORT=$(sed -n 's|^lostd: listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$T/$name.out")
        [ -n "$PORT" ] && break
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$PORT" ]
}

if ! command -v curl >/dev/null; then
    skip "probe paths served" "curl is not installed"
elif [ ! -s "$T/probes.txt" ]; then
    fail "probe paths served" "no probe paths extracted from the manifests"
else
    for which in deploy compose; do
        if ! serve_with "$which" "$T/env-$which.txt"; then
            fail "daemon with the $which environment" "did not start: $(tail -c 300 "$T/$which.err")"
            continue
        fi
        ready=0
        for _ in $(seq 1 400); do
            code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health/ready")
            [ "$code" = 200 ] && { ready=1; break; }
            sleep 0.05
        done
        bad=
        while IFS= read -r p; do
            code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT$p")
            [ "$code" = 200 ] || bad="$bad $p=$code"
        done <"$T/probes.txt"
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health/nope")
        [ "$code" = 404 ] || bad="$bad /health/nope=$code(expected 404)"
        if [ $ready -eq 1 ] && [ -z "$bad" ]; then
            pass "daemon with the $which environment: probes $(tr '\n' ' ' <"$T/probes.txt")-> 200"
        else
            fail "daemon with the $which environment" "ready $ready;$bad $(tail -c 300 "$T/$which.err")"
        fi
        kill -TERM "$PID"
        wait "$PID"; rc=$?
        if [ $rc -eq 0 ]; then
            pass "daemon with the $which environment: SIGTERM exits 0"
        else
            fail "daemon with the $which environment: SIGTERM" "exit $rc"
        fi
    done
fi

# -- 4. the sharded evaluation as the Jobs run it ------------------------------
if [ ! -f "$T/n" ]; then
    fail "sharded VOC07 evaluation" "no Job commands extracted"
else
    N=$(cat "$T/n")
    mkdir -p "$T/results" "$T/bin"
    ln -s "$BIN" "$T/bin/lostd"   # the image's ENTRYPOINT / PATH name
    ok=1; imgs=0; why=
    for i in $(seq 0 $((N - 1))); do
        mapfile -t argv <"$T/shard-$i.argv"
        out=$(PATH="$T/bin:$PATH" "${argv[@]}" 2>"$T/shard-$i.err"); rc=$?
        n=$(field images <<<"$out")
        if [ $rc -ne 0 ] || [ -z "$n" ] || [ ! -f "$T/results/shard-$i.jsonl" ]; then
            ok=0; why="$why shard $i: rc $rc $(head -c 200 "$T/shard-$i.err")"
        else
            imgs=$((imgs + n))
        fi
    done
    [ $ok -eq 1 ] && [ "$imgs" = 5011 ] && pass "Indexed Job: $N shards ran, $imgs images in all" \
        || fail "Indexed Job shards" "images $imgs;$why"
    mapfile -t argv <"$T/merge.argv"
    out=$(PATH="$T/bin:$PATH" "${argv[@]}" 2>"$T/merge.err"); rc=$?
    if [ $rc -eq 0 ] && [ "$(field corloc <<<"$out")" = "61.9" ] &&
       [ "$(field hits <<<"$out")" = 3102 ] && [ "$(field images <<<"$out")" = 5011 ] &&
       [ "$(field not_evaluated <<<"$out")" = 0 ]; then
        pass "merge Job: VOC07 in $N shards = CorLoc 61.90 (3102/5011), --model replaced by --predictions LOST_VOC07.csv"
    else
        fail "merge Job" "rc $rc: $out $(head -c 300 "$T/merge.err")"
    fi
fi

exit 0
