# lib.sh - the shell helpers every tests/e2e_*.sh shares. Source it after
# `cd` to the repository root:  . tests/lib.sh
# It sets BIN (and LOSTD, the same: $LOSTD_BIN, default build/lostd), PY
# (the system python3 when there is one: version-manager shims start slowly),
# T (a temporary folder, removed at exit) and PIDS (processes sent SIGTERM at
# exit), and defines:
#   pass NAME / fail NAME WHY / skip NAME WHY    print the result lines
#   check NAME STATUS WHY                         pass when STATUS is 0
#   serve_start NAME ARGS...   lostd serve on 127.0.0.1, port 0, in the
#                              background (stdout/stderr in $T/NAME.out/.err);
#                              sets PID and PORT; 1 when it never listened
#   serve_ready [TRIES]        waits for /health/ready on $PORT (0 = ready)
#   serve_stop                 SIGTERM to $PID and waits; its exit status
#   rss_kb PID KEY             VmRSS / VmHWM ... of a process, in kB
# A script adds its own cleanup with: on_exit 'command'.

BIN=${LOSTD_BIN:-build/lostd}
LOSTD=$BIN
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
T=$(mktemp -d)
PIDS=()
LIB_ON_EXIT=()
lib_cleanup() {
    local c p
    for c in "${LIB_ON_EXIT[@]}"; do eval "$c"; done
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap lib_cleanup EXIT
on_exit() { LIB_ON_EXIT+=("$1"); }

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
skip() { echo "SKIP $1: $2"; }
check() { if [ "$2" -eq 0 ]; then pass "$1"; else fail "$1" "$3"; fi; }

serve_start() {
    local name=$1; shift
    "$BIN" serve --host 127.0.0.1 --port 0 "$@" >"$T/$name.out" 2>"$T/$name.err" &
    PID=$!
    PIDS+=("$PID")
    PORT=
    local _
    for _ in $(seq 1 200); do
        PORT=$(sed -n 's|^lostd: listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$T/$name.out")
        [ -n "$PORT" ] && return 0
        kill -0 "$PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

serve_ready() {
    local _
    for _ in $(seq 1 "${1:-400}"); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health/ready")" = 200 ] \
            && return 0
        kill -0 "$PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

serve_stop() { kill -TERM "$PID" 2>/dev/null; wait "$PID"; }

rss_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
