#!/usr/bin/env bash
# Runs every test program (build/tests/test_*), the parity programs once more
# on the OpenBLAS path, and every shell test (tests/e2e_*.sh).
# Each prints "PASS <case>" / "FAIL <case>: why" lines; a program that exits
# nonzero without a FAIL line counts as one failure. "SKIP <case>: why" lines
# count as neither and are shown under the program's line. Ends with the
# summary line "N passed, N failed" and exits nonzero on any failure.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export LOSTD_BIN="$PWD/$BUILD/lostd"
pass=0; fail=0
log=$(mktemp)
run_one() {
    local name=$1; shift
    local t0=$SECONDS
    "$@" >"$log" 2>&1
    local rc=$?
    local p f
    p=$(grep -c '^PASS ' "$log")
    f=$(grep -c '^FAIL ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "FAIL $name: exited with status $rc" >>"$log"
    fi
    pass=$((pass + p)); fail=$((fail + f))
    printf '%-28s %3d passed, %d failed (%ds)\n' "$name" "$p" "$f" $((SECONDS - t0))
    grep -E '^SKIP ' "$log" | sed 's/^/    /'
    if [ "$f" -ne 0 ]; then grep -E '^FAIL ' "$log" | sed 's/^/    /'; tail -n 20 "$log" | sed 's/^/    | /'; fi
}
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.o|*.d) continue;; esac
    run_one "$(basename "$t")" "$t"
done
# the parity programs again on the OpenBLAS path (LOSTD_KERNELS=blas: what a
# CPU without AVX-512 runs), so both kernel paths stay equal to the reference
for t in test_vit test_backbones test_lost test_tokencut; do
    [ -x "$BUILD/tests/$t" ] || continue
    run_one "$t (openblas)" env LOSTD_KERNELS=blas "$BUILD/tests/$t"
done
for t in tests/e2e_*.sh; do
    [ -f "$t" ] || continue
    run_one "$(basename "$t" .sh)" bash "$t"
done
rm -f "$log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
