#!/usr/bin/env bash
# e2e_image.sh - the container image built from docker/Dockerfile and run, as
# root, without Docker or a registry (buildah's chroot isolation; README
# "Deploy"), from the repo root:
#  1. The Debian 12 base (docker/buildah.sh base: reused, re-imported from its
#     cached tarball, or debootstrapped), then the image, both as
#     `make image` builds them.
#  2. The image's config: non-root numeric USER equal to the manifests'
#     runAsUser, ENTRYPOINT ["lostd"], HEALTHCHECK kept, VOLUME on the cache;
#     ldd finds every library of the image's lostd.
#  3. The Deployment's pod as the kubelet would start it (ENTRYPOINT + args,
#     its env, its volumes as host folders, read-only root file system), with
#     the fixture model, on a free loopback port: ready, served by a non-root
#     process, a posted JPEG gets the box `build/lostd discover` gives with
#     the same settings, the image's HEALTHCHECK command succeeds (and fails
#     once the daemon is gone), SIGTERM to lostd ends the container with 0.
#  4. The Indexed Job's pods for every JOB_COMPLETION_INDEX, each in a fresh
#     container, their command lines exactly as
#     docker/k8s/eval-shards-job.yaml writes them ($(VAR) from the pod's env)
#     but with --model replaced by --predictions LOST_VOC07.csv (LOST's
#     published boxes, so no backbone runs), then the merge Job's pod (its
#     sh -c): CorLoc 61.90, 3102/5011.
# Containers and the image it made are removed at the end; the base stays.
# SKIP (neither pass nor fail) where buildah cannot run: a sanitizer build
# (LOSTD_SAN set: `make test` runs twice in CI, this runs once), not root,
# buildah/podman missing, debootstrap missing with no cached base, the apt
# mirror unreachable, or `buildah info` failing. Prints "PASS name" /
# "FAIL name: why" / "SKIP name: why"; LOSTD_BIN is the plain binary.
set -u
cd "$(dirname "$0")/.."
BIN=${LOSTD_BIN:-build/lostd}
case "$BIN" in /*) ;; *) BIN=$PWD/$BIN;; esac
PY=${PYTHON:-python3}
pass() { echo "PASS $*"; }
fail() { local name=$1; shift; echo "FAIL $name: $*"; }
skip() { echo "SKIP e2e_image: $1"; exit 0; }

BASE_IMG=${LOSTD_BASE_IMAGE:-localhost/debian:bookworm}
CACHE=${LOSTD_IMAGE_CACHE:-/var/cache/lostd-image}
[ -z "${LOSTD_SAN:-}" ] ||
    skip "sanitizer build (LOSTD_SAN=$LOSTD_SAN); the image is tested by the plain make test"
[ "$(id -u)" -eq 0 ] || skip "not root (buildah's chroot isolation and debootstrap need root)"
for tool in buildah podman curl; do
    command -v "$tool" >/dev/null || skip "$tool is not installed (Debian: buildah podman)"
done
if ! podman image exists "$BASE_IMG" 2>/dev/null &&
   [ ! -s "$CACHE/debian-bookworm-minbase.tar" ] && ! command -v debootstrap >/dev/null; then
    skip "no base image $BASE_IMG, no cached tarball, and debootstrap is not installed"
fi
MIRROR=$(bash docker/buildah.sh mirror)
curl -fsS -m 20 -o /dev/null "$MIRROR/dists/bookworm/Release" 2>/dev/null ||
    skip "the apt mirror $MIRROR is unreachable (the Dockerfile installs packages from it)"
buildah info >/dev/null 2>&1 || skip "buildah info fails: no usable container storage here"
if [ ! -x "$BIN" ]; then
    fail "binary" "$BIN is not built"
    exit 1
fi
"$PY" -c 'import yaml' 2>/dev/null || { fail "python3 yaml" "PyYAML is missing"; exit 1; }

ID=lostd-e2e-image-$$
TAG=localhost/$ID
T=$(mktemp -d)
CTRS=()   # working containers made here
RUNS=()   # tmpfs mounts on their /run
DPID=     # the daemon's `buildah run`

cleanup() {
    local c m
    [ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
    for m in "${RUNS[@]}"; do umount "$m" 2>/dev/null; done
    for c in "${CTRS[@]}"; do buildah rm "$c" >/dev/null 2>&1; done
    buildah rmi "$TAG" >/dev/null 2>&1
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# Leftovers of runs that were killed before their cleanup (their pid is gone).
for c in $(buildah containers --format '{{.ContainerName}}' 2>/dev/null |
           grep -E '^lostd-e2e-image-[0-9]+(-|$)'); do
    p=${c#lostd-e2e-image-}; p=${p%%-*}
    kill -0 "$p" 2>/dev/null && continue
    m=$(buildah mount "$c" 2>/dev/null) && umount "$m/run" 2>/dev/null
    buildah rm "$c" >/dev/null 2>&1
done
for i in $(buildah images --format '{{.Name}}' 2>/dev/null |
           grep -E '^localhost/lostd-e2e-image-[0-9]+$'); do
    p=${i#localhost/lostd-e2e-image-}
    kill -0 "$p" 2>/dev/null || buildah rmi "$i" >/dev/null 2>&1
done

# -- 1. base and image ---------------------------------------------------------
t0=$SECONDS
if bash docker/buildah.sh base >"$T/base.log" 2>&1; then
    pass "base image $(grep '^base:' "$T/base.log" | sed 's/^base: //') ($((SECONDS - t0)) s)"
else
    fail "base image" "$(tail -n 5 "$T/base.log")"
    exit 1
fi
t0=$SECONDS
if ! bash docker/buildah.sh image "$TAG" >"$T/build.log" 2>&1; then
    fail "buildah bud -f docker/Dockerfile" "$(grep -v '^ ' "$T/build.log" | tail -n 15)"
    exit 1
fi
pass "buildah bud -f docker/Dockerfile --build-arg BASE=$BASE_IMG ($((SECONDS - t0)) s)"

# -- 2. the image's config -------------------------------------------------------
podman image inspect "$TAG" >"$T/inspect.json" 2>"$T/inspect.err" ||
    { fail "podman image inspect" "$(cat "$T/inspect.err")"; exit 1; }
# shell-readable: user, entrypoint/cmd (JSON), health (the HEALTHCHECK test as
# one argument a line), the manifests' runAsUser.
"$PY" - "$T" <<'PYEOF'
import glob, json, os, sys
import yaml
T = sys.argv[1]
d = json.load(open(os.path.join(T, "inspect.json")))[0]
cfg = d.get("Config") or {}
hc = (d.get("Healthcheck") or cfg.get("Healthcheck") or {}).get("Test") or []
if hc[:1] == ["CMD-SHELL"]:
    hc = ["/bin/sh", "-c"] + hc[1:]
elif hc[:1] == ["CMD"]:
    hc = hc[1:]
else:
    hc = []
users = set()
for f in sorted(glob.glob("docker/k8s/*.yaml")):
    for doc in yaml.safe_load_all(open(f)):
        pod = ((doc or {}).get("spec") or {}).get("template", {}).get("spec")
        if pod:
            for c in pod["containers"]:
                sc = dict(pod.get("securityContext", {}))
                sc.update(c.get("securityContext", {}))
                if "runAsUser" in sc:
                    users.add("%s:%s" % (sc["runAsUser"], sc.get("runAsGroup", sc["runAsUser"])))
out = {
    "user": cfg.get("User") or "",
    "entrypoint": json.dumps(cfg.get("Entrypoint") or []),
    "cmd": json.dumps(cfg.get("Cmd") or []),
    "volumes": " ".join(sorted(cfg.get("Volumes") or {})),
    "runas": " ".join(sorted(users)),
}
for k, v in out.items():
    open(os.path.join(T, k), "w").write(v + "\n")
open(os.path.join(T, "health"), "w").write("".join(a + "\n" for a in hc))
PYEOF
USER_=$(cat "$T/user"); EP=$(cat "$T/entrypoint"); CMD=$(cat "$T/cmd"); RUNAS=$(cat "$T/runas")
why=
case "$USER_" in ""|0|0:*|root|root:*) why="$why USER '$USER_' is root;";; esac
[ -n "$RUNAS" ] && [ "$RUNAS" != "$USER_" ] &&
    why="$why USER $USER_ differs from the manifests' runAsUser:runAsGroup $RUNAS;"
[ "$EP" = '["lostd"]' ] || why="$why ENTRYPOINT $EP;"
[ -s "$T/health" ] || why="$why no HEALTHCHECK in the image (OCI format drops it);"
grep -qw /var/cache/lostd "$T/volumes" || why="$why no VOLUME /var/cache/lostd;"
if [ -z "$why" ]; then
    pass "image config: USER $USER_ (= runAsUser), ENTRYPOINT $EP, CMD $CMD, HEALTHCHECK," \
         "VOLUME $(cat "$T/volumes")"
else
    fail "image config" "$why"
fi

# new_ctr NAME MOUNTPOINT...: a working container of the image with the mount
# points made, then its root file system remounted read-only (the manifests'
# readOnlyRootFilesystem, compose's read_only) and a small tmpfs on /run,
# where buildah itself writes /run/.containerenv at every run.
new_ctr() {
    local name=$1 m d; shift
    buildah from --name "$name" "$TAG" >/dev/null || return 1
    CTRS+=("$name")
    m=$(buildah mount "$name") || return 1
    for d in "$@"; do mkdir -p "$m$d" || return 1; done
    mount -o remount,ro "$m" || return 1
    mount -t tmpfs -o size=1m,mode=755 lostd-e2e-run "$m/run" || return 1
    RUNS+=("$m/run")
}

# pod_spec MANIFEST [kube.py options]: the kubelet's view of its container
# (tests/kube.py) into the arrays ENVS, MOUNTS (-v values, host folders under
# $T made and given to the image's user, as fsGroup would), TARGETS (mount
# points), ARGV, and N (completions).
pod_spec() {
    local line h p mode uid=${USER_%%:*}
    ENVS=(); MOUNTS=(); TARGETS=(); ARGV=(); N=
    "$PY" -B tests/kube.py "$@" --entrypoint "$EP" --cmd "$CMD" --emptydir-root "$T" \
        >"$T/spec" 2>"$T/spec.err" || return 1
    while IFS= read -r line; do
        case "$line" in
        "env "*) ENVS+=(-e "${line#env }");;
        "mount "*)
            read -r h p mode <<<"${line#mount }"
            case "$h" in "$T"/*) mkdir -p "$h"; [ "$mode" = rw ] && chown "$uid" "$h";; esac
            if [ "$mode" = ro ]; then MOUNTS+=(-v "$h:$p:ro"); else MOUNTS+=(-v "$h:$p"); fi
            TARGETS+=("$p");;
        "arg "*) ARGV+=("${line#arg }");;
        "completions "*) N=${line#completions };;
        esac
    done <"$T/spec"
}

# descendant PID NAME: the first process named NAME below PID (the process a
# `buildah run` started, below buildah-chroot-runtime and -exec).
descendant() {
    local c
    for c in $(pgrep -P "$1"); do
        [ "$(cat "/proc/$c/comm" 2>/dev/null)" = "$2" ] && { echo "$c"; return 0; }
        descendant "$c" "$2" && return 0
    done
    return 1
}

RUN=(buildah run --isolation chroot --network host)
C=$ID-serve
if ! new_ctr "$C" /models; then
    fail "container" "buildah from / read-only root failed"
    exit 1
fi
libs=$("${RUN[@]}" "$C" -- sh -c 'ldd "$(command -v lostd)"' 2>&1)
if [ $? -eq 0 ] && ! grep -q 'not found' <<<"$libs"; then
    pass "image: ldd finds every library of lostd ($(grep -c '=>' <<<"$libs") libraries)"
else
    fail "image: runtime libraries" "$(grep 'not found' <<<"$libs" | tr -s ' \t' ' ' |
        head -n 5) (add the package to RUNTIME_LIBS in docker/Dockerfile)"
fi

# -- 3. the Deployment's pod -----------------------------------------------------
IMG=tests/fixtures/images/VOC07_000236.jpg
MODEL=tiny.safetensors
ready=0
if ! pod_spec docker/k8s/deployment.yaml --claim lostd-model-cache="$T/model-cache"; then
    fail "Deployment pod spec" "$(cat "$T/spec.err")"
else
    "${RUN[@]}" "${ENVS[@]}" -e LOSTD_HOST=127.0.0.1 -e LOSTD_PORT=0 \
        -e LOSTD_MODEL=/models/$MODEL "${MOUNTS[@]}" -v "$PWD/tests/fixtures/models:/models:ro" \
        "$C" -- "${ARGV[@]}" >"$T/serve.out" 2>"$T/serve.err" &
    DPID=$!
    PORT=
    for _ in $(seq 1 600); do
        PORT=$(sed -n 's|^lostd: listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$T/serve.out")
        [ -n "$PORT" ] && break
        kill -0 "$DPID" 2>/dev/null || break
        sleep 0.1
    done
    for _ in $(seq 1 600); do
        [ -n "$PORT" ] || break
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health/ready")
        [ "$code" = 200 ] && { ready=1; break; }
        kill -0 "$DPID" 2>/dev/null || break
        sleep 0.1
    done
    LPID=$(descendant "$DPID" lostd)
    uid=$(awk '/^Uid:/ { print $2 }' "/proc/$LPID/status" 2>/dev/null)
    if [ $ready -eq 1 ]; then
        pass "Deployment pod in the image (${ARGV[*]}, its env, read-only root):" \
             "ready on 127.0.0.1:$PORT"
    else
        fail "Deployment pod in the image" "not ready (port '$PORT'), nothing else" \
             "tried on it: $(tail -c 400 "$T/serve.err")"
    fi
fi
if [ -n "$DPID" ] && [ $ready -eq 1 ]; then
    [ -n "$uid" ] && [ "$uid" != 0 ] && pass "the serving lostd runs as uid $uid" \
        || fail "the serving lostd's uid" "'$uid' (pid '$LPID')"

    side=$(printf '%s\n' "${ENVS[@]}" | sed -n 's/^LOSTD_MAX_SIDE=//p')
    "$BIN" discover --model "tests/fixtures/models/$MODEL" ${side:+--max-side "$side"} "$IMG" \
        >"$T/cli.json" 2>"$T/cli.err"
    code=$(curl -s -o "$T/reply.json" -w '%{http_code}' -H 'Content-Type: image/jpeg' \
           --data-binary @"$IMG" "http://127.0.0.1:$PORT/discover")
    if [ "$code" = 200 ] && "$PY" - "$T/reply.json" "$T/cli.json" >"$T/cmp" 2>&1 <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
b = r["objects"][0]["box"]
got = [b["xmin"], b["ymin"], b["xmax"], b["ymax"]]
want = json.load(open(sys.argv[2]))["box"]
assert got == want, "image %s, build/lostd discover %s" % (got, want)
print(got)
PYEOF
    then
        pass "POST /discover in the image = build/lostd discover${side:+ --max-side $side}:" \
             "box $(cat "$T/cmp")"
    else
        fail "POST /discover in the image" "HTTP $code $(head -c 300 "$T/reply.json")" \
             "$(cat "$T/cmp" "$T/cli.err" 2>/dev/null | tail -n 3)"
    fi

    mapfile -t HC <"$T/health"
    hc_run() { "${RUN[@]}" -e LOSTD_PORT="$PORT" "$C" -- "${HC[@]}" >"$T/hc.out" 2>&1; }
    if [ ${#HC[@]} -eq 0 ]; then
        :   # no HEALTHCHECK: failed above with the image's config
    elif hc_run; then
        pass "HEALTHCHECK command in the container succeeds: ${HC[*]}"
    else
        fail "HEALTHCHECK command" "exit $? $(tail -c 300 "$T/hc.out")"
    fi

    if [ -n "$LPID" ]; then kill -TERM "$LPID"; fi
    for _ in $(seq 1 300); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
    wait "$DPID"; rc=$?
    DPID=
    if [ -n "$LPID" ] && [ $rc -eq 0 ]; then
        pass "SIGTERM to lostd (PID 1 under Docker): container exits 0"
    else
        fail "SIGTERM" "exit $rc: $(tail -c 300 "$T/serve.err")"
    fi
    if [ ${#HC[@]} -eq 0 ]; then
        :
    elif ! hc_run; then
        pass "HEALTHCHECK command fails once the daemon is gone"
    else
        fail "HEALTHCHECK command after the stop" "it still succeeds"
    fi
fi

# -- 4. the Indexed Job and the merge Job --------------------------------------------
PRED=/fixtures/lost/LOST_VOC07.csv
CLAIMS=(--claim lostd-voc="$PWD/tests/fixtures/voc2007" --claim lostd-model-cache="$T/model-cache"
        --claim lostd-eval-results="$T/results")
mkdir -p "$T/results" && chown "${USER_%%:*}" "$T/results"
if ! pod_spec docker/k8s/eval-shards-job.yaml --index 0 "${CLAIMS[@]}" || [ -z "$N" ]; then
    fail "Indexed Job pod spec" "$(cat "$T/spec.err") completions '$N'"
else
    ok=1; imgs=0; why=; t0=$SECONDS
    for i in $(seq 0 $((N - 1))); do
        pod_spec docker/k8s/eval-shards-job.yaml --index "$i" "${CLAIMS[@]}" ||
            { ok=0; why="$why index $i: $(cat "$T/spec.err")"; continue; }
        for k in "${!ARGV[@]}"; do
            [ "${ARGV[$k]}" = --model ] && ARGV[$k]=--predictions && ARGV[$((k + 1))]=$PRED
        done
        [ "$i" -eq 0 ] && first="${ARGV[*]}"
        new_ctr "$ID-shard-$i" "${TARGETS[@]}" /fixtures/lost ||
            { ok=0; why="$why index $i: no container"; continue; }
        out=$("${RUN[@]}" "${ENVS[@]}" "${MOUNTS[@]}" \
              -v "$PWD/tests/fixtures/lost:/fixtures/lost:ro" \
              "$ID-shard-$i" -- "${ARGV[@]}" 2>"$T/shard-$i.err"); rc=$?
        n=$(grep -o '"images":[0-9]*' <<<"$out" | head -n 1 | cut -d: -f2)
        if [ $rc -ne 0 ] || [ -z "$n" ] || [ ! -f "$T/results/shard-$i.jsonl" ]; then
            ok=0; why="$why index $i: rc $rc $(head -c 200 "$T/shard-$i.err")"
        else
            imgs=$((imgs + n))
        fi
    done
    if [ $ok -eq 1 ] && [ "$imgs" = 5011 ]; then
        pass "Indexed Job in the image: $N pods ($first ...), $imgs images" \
             "($((SECONDS - t0)) s)"
    else
        fail "Indexed Job in the image" "images $imgs;$why"
    fi

    if ! pod_spec docker/k8s/eval-merge-job.yaml "${CLAIMS[@]}"; then
        fail "merge Job pod spec" "$(cat "$T/spec.err")"
    elif ! new_ctr "$ID-merge" "${TARGETS[@]}"; then
        fail "merge Job" "no container"
    else
        out=$("${RUN[@]}" "${ENVS[@]}" "${MOUNTS[@]}" "$ID-merge" -- "${ARGV[@]}" 2>"$T/merge.err")
        rc=$?
        field() { grep -o "\"$1\":[^,}]*" <<<"$out" | head -n 1 | cut -d: -f2- | tr -d '"'; }
        if [ $rc -eq 0 ] && [ "$(field corloc)" = 61.9 ] && [ "$(field hits)" = 3102 ] &&
           [ "$(field images)" = 5011 ] && [ "$(field not_evaluated)" = 0 ]; then
            pass "merge Job in the image (${ARGV[*]}): CorLoc 61.90, 3102/5011"
        else
            fail "merge Job in the image" "rc $rc: $out $(head -c 300 "$T/merge.err")"
        fi
    fi
fi
exit 0
