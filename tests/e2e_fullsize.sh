#!/usr/bin/env bash
# Full-size parity: random-weight ViT-S/14 and ViT-B/14, with and without
# registers, at non-square sizes, against the PyTorch reference forward in
# tests/golden/ref_dinov2.py (Debian's python3-torch). Prints PASS/FAIL lines.
set -u
cd "$(dirname "$0")/.."
LOSTD=${LOSTD_BIN:-build/lostd}
PY=/usr/bin/python3
if ! $PY -c 'import torch, numpy' 2>/dev/null; then
    echo "SKIP full-size parity: $PY has no torch/numpy (apt-get install python3-torch)"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# arch  HxW (multiples of 14, non-square)  seed
cases="vits14_reg:392x504:1 vits14:434x322:2 vitb14_reg:266x364:3 vitb14:196x252:4"
for c in $cases; do
    IFS=: read -r arch size seed <<<"$c"
    h=${size%x*}; w=${size#*x}
    name="full-size $arch $size"
    m="$tmp/$arch.safetensors"
    if ! "$LOSTD" model init --arch "$arch" --seed "$seed" --out "$m" 2>"$tmp/err"; then
        echo "FAIL $name: model init: $(cat "$tmp/err")"; continue
    fi
    $PY -c "import numpy as np; r=np.random.default_rng($seed); np.save('$tmp/x.npy', r.standard_normal((3,$h,$w)).astype(np.float32))"
    rm -rf "$tmp/ours" "$tmp/ref"
    if ! "$LOSTD" features --model "$m" --tensor "$tmp/x.npy" --out "$tmp/ours" 2>"$tmp/err"; then
        echo "FAIL $name: lostd features: $(cat "$tmp/err")"; continue
    fi
    if ! $PY tests/golden/ref_dinov2.py "$m" "$tmp/x.npy" "$tmp/ref" 2>"$tmp/err"; then
        echo "FAIL $name: reference: $(tail -3 "$tmp/err")"; continue
    fi
    files="keys.npy queries.npy values.npy patch_tokens.npy cls_token.npy"
    case $arch in *_reg) files="$files register_tokens.npy";; esac
    if out=$($PY tests/golden/compare.py "$tmp/ours" "$tmp/ref" $files 2>&1); then
        echo "PASS $name"
    else
        echo "FAIL $name: $(echo "$out" | tr '\n' ';')"
    fi
    rm -f "$m"
done
