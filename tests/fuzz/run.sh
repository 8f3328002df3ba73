#!/usr/bin/env bash
# Runs every libFuzzer target in build-fuzz/tests/fuzz/ (built by `make fuzz`)
# for FUZZ_SECONDS each (default 30), from repository root. Each target
# starts from its seed corpus tests/fuzz/corpus/<target>/ plus the inputs
# that once crashed it (tests/fuzz/regress/<target>/); new coverage goes to
# build-fuzz/corpus/<target>/, never into the repository. A crash, leak,
# timeout or sanitizer report leaves its input in build-fuzz/crashes/<target>/
# and fails the run: fix the bug, then copy that file into
# tests/fuzz/regress/<target>/ so tests/test_fuzz_regress replays it in
# `make test`. Prints PASS/FAIL lines and exits nonzero on any failure.
set -u
cd "$(dirname "$0")/../.."
SECS=${FUZZ_SECONDS:-30}
OUT=build-fuzz
fail=0
for bin in "$OUT"/tests/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    case "$bin" in *.d|*.o) continue;; esac
    t=${bin##*/fuzz_}
    mkdir -p "$OUT/corpus/$t" "$OUT/crashes/$t"
    seeds=(tests/fuzz/corpus/"$t")
    [ -d tests/fuzz/regress/"$t" ] && seeds+=(tests/fuzz/regress/"$t")
    # Per target: the largest input it may grow to, and what the harness
    # needs (the daemon target keeps threads and its own loopback sockets).
    opts=(-max_total_time="$SECS" -timeout=30 -rss_limit_mb=4096
          -artifact_prefix="$OUT/crashes/$t/" -print_final_stats=1)
    case $t in
        image) opts+=(-max_len=65536) ;;
        http) opts+=(-max_len=16384) ;;
        *) opts+=(-max_len=8192) ;;
    esac
    log="$OUT/fuzz_$t.log"
    "$bin" "${opts[@]}" "$OUT/corpus/$t" "${seeds[@]}" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    if [ "$rc" -eq 0 ]; then
        echo "PASS fuzz $t: ${runs:-?} runs in ${SECS}s, ${cov:-cov: ?}"
    else
        echo "FAIL fuzz $t: exit $rc, see $log; inputs in $OUT/crashes/$t/"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -n 5 | sed 's/^/    /'
        fail=1
    fi
done
[ -x "$OUT/tests/fuzz/fuzz_image" ] || { echo "FAIL fuzz: no targets in $OUT (make fuzz)"; fail=1; }
exit $fail
