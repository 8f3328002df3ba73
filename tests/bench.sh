#!/usr/bin/env bash
# `make bench`: median per-stage timings of a random full-size ViT-S/14 with
# registers (made once with `lostd model init`) at 224x224 and 392x504, at
# 1 and 2 BLAS threads. Figures only; nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
LOSTD=$BUILD/lostd
mkdir -p "$BUILD/bench"
M=$BUILD/bench/dinov2_vits14_reg_random.safetensors
[ -f "$M" ] || "$LOSTD" model init --arch vits14_reg --seed 0 --out "$M"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
printf '%-12s %-9s %7s %10s %10s %9s %9s %8s %8s %9s\n' model size threads forward_ms \
    fwd_min_ms lost_ms prep_ms gflops sgemm peak_MB
for size in 224x224 392x504; do
    for t in 1 2; do
        j=$("$LOSTD" bench --model "$M" --size "$size" --threads "$t" --repeat 7 --warmup 2)
        python3 - "$j" "$size" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
print("%-12s %-9s %7d %10.1f %10.1f %9.2f %9.2f %8.1f %8.1f %9.1f" % (
    "vits14_reg", sys.argv[2], j["threads"], j["forward_ms_median"], j["forward_ms_min"],
    j["lost_ms_median"], j["preprocess_ms_median"], j["gflops"], j["sgemm_gflops"],
    j["peak_rss_mb"]))
PY
    done
done
