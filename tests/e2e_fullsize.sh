#!/usr/bin/env bash
# Full-size parity: random-weight models of every family at non-square sizes
# -- DINOv2 ViT-S/14 and ViT-B/14 with and without registers, DINO ViT-S/16
# and ViT-B/16, DeiT-III ViT-B/16, OpenCLIP ViT-B/16 with GELU and with
# QuickGELU -- against the PyTorch reference forward in tests/golden/ref_vit.py
# (Debian's python3-torch), after checking that reference against the
# official fixtures. Prints PASS/FAIL lines.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh
PY=/usr/bin/python3   # Debian's, which has torch
# Under a sanitizer (make test SAN=..., which sets LOSTD_SAN) the full-size
# forwards take about ten minutes; the small golden and parity tests cover
# the same code there.
if [ -n "${LOSTD_SAN:-}" ]; then
    echo "SKIP full-size parity: sanitizer build (LOSTD_SAN=$LOSTD_SAN)"
    exit 0
fi
if ! $PY -c 'import torch, numpy' 2>/dev/null; then
    echo "SKIP full-size parity: $PY has no torch/numpy (apt-get install python3-torch)"
    exit 0
fi
tmp=$T
# The reference itself must reproduce the official outputs of the fixtures.
for c in vit/tiny/raw_574x532 vit/tiny_noreg/voc_pad backbones/dino_vits16_tiny/raw_224x272 \
         backbones/deit3_base16_tiny/voc_pad backbones/openclip_vitb16_quickgelu_tiny/raw_160x96; do
    if $PY - "$c" "$tmp" <<'PY'
import json, os, subprocess, sys
import numpy as np
c, tmp = "tests/fixtures/" + sys.argv[1], sys.argv[2]
cj = json.load(open(c + "/case.json"))
inp = os.path.normpath(os.path.join(c, cj.get("input_file", "input.npy")))
if not os.path.exists(inp):
    inp = c + "/input_u8.npy"
if inp.endswith("_u8.npy"):
    np.save(tmp + "/fx.npy", ((np.load(inp).astype(np.float32) - 128) / 32).astype(np.float32))
    inp = tmp + "/fx.npy"
act = cj["config"].get("act", "gelu")
extra = ["--act", "quickgelu"] if "quick" in act else []
subprocess.check_call([sys.executable, "tests/golden/ref_vit.py", "tests/fixtures/" + cj["model"],
                       inp, tmp + "/fxo"] + extra)
worst = 0.0
for ours, ref in [("keys.npy", "last_k.npy"), ("queries.npy", "last_q.npy"),
                  ("values.npy", "last_v.npy"), ("patch_tokens.npy", "x_norm_patchtokens.npy"),
                  ("cls_token.npy", "x_norm_clstoken.npy"), ("image_embed.npy", "image_embed.npy")]:
    if os.path.exists(c + "/" + ref):
        a, b = np.load(tmp + "/fxo/" + ours), np.load(c + "/" + ref)
        worst = max(worst, float(np.abs(a - b).max()) / (1e-4 * (1 + float(np.abs(b).max()))))
sys.exit(0 if worst <= 1 else print("error %.3g x tolerance" % worst) or 1)
PY
    then echo "PASS reference forward reproduces official $c"
    else echo "FAIL reference forward reproduces official $c: see above"; fi
done

# arch  HxW (multiples of the patch, non-square)  seed  [activation]
cases="vits14_reg:392x504:1 vits14:434x322:2 vitb14_reg:266x364:3 vitb14:196x252:4
       dino_vits16:208x320:5 dino_vitb16:224x160:6 deit3_base16:320x208:7
       openclip_vitb16:224x288:8 openclip_vitb16:176x240:9:quickgelu"
for c in $cases; do
    IFS=: read -r arch size seed act <<<"$c"
    act=${act:-gelu}
    h=${size%x*}; w=${size#*x}
    name="full-size $arch $size"
    [ "$act" = gelu ] || name="$name $act"
    m="$tmp/$arch.safetensors"
    if ! "$LOSTD" model init --arch "$arch" --seed "$seed" --out "$m" 2>"$tmp/err"; then
        echo "FAIL $name: model init: $(cat "$tmp/err")"; continue
    fi
    $PY -c "import numpy as np; r=np.random.default_rng($seed); np.save('$tmp/x.npy', r.standard_normal((3,$h,$w)).astype(np.float32))"
    rm -rf "$tmp/ours" "$tmp/ref"
    # two threads: the parallel path of the forward must match the reference too
    if ! "$LOSTD" features --model "$m" --tensor "$tmp/x.npy" --out "$tmp/ours" --act "$act" \
            --threads 2 2>"$tmp/err"; then
        echo "FAIL $name: lostd features: $(cat "$tmp/err")"; continue
    fi
    if ! $PY tests/golden/ref_vit.py "$m" "$tmp/x.npy" "$tmp/ref" --act "$act" 2>"$tmp/err"; then
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

# TokenCut at full size: `lostd discover --method tokencut` on the VOC sample
# with a random ViT-S/14-reg gives the box and seed the authors' ncut()
# computes (tests/golden/ref_tokencut.py) on the keys of the reference
# forward (tests/golden/ref_vit.py, itself checked against the official
# fixtures above).
if $PY -c 'import scipy' 2>/dev/null; then
    m="$tmp/vits14_reg.safetensors"
    img=tests/fixtures/images/VOC07_000236.jpg
    rm -rf "$tmp/tc_ours" "$tmp/tc_ref"
    if "$LOSTD" model init --arch vits14_reg --seed 5 --out "$m" 2>"$tmp/err" &&
       "$LOSTD" features --model "$m" --image "$img" --out "$tmp/tc_ours" --threads 2 2>>"$tmp/err" &&
       $PY tests/golden/ref_vit.py "$m" "$tmp/tc_ours/input.npy" "$tmp/tc_ref" 2>>"$tmp/err" &&
       "$LOSTD" discover --model "$m" --method tokencut "$img" >"$tmp/tc.json" 2>>"$tmp/err"; then
        if msg=$($PY - "$tmp/tc_ref/keys.npy" "$tmp/tc.json" <<'PY' 2>&1
import json, sys
import numpy as np
sys.path.insert(0, "tests/golden")
import ref_tokencut
want = ref_tokencut.ncut(np.load(sys.argv[1]), 28, 36, 14, 381, 500)
got = json.load(open(sys.argv[2]))
assert (got["box"], got["seed"], got["n_cc"]) == (want["box"], want["seed"], want["n_cc"]), (got, want)
print("solver %s" % got["solver"])
PY
        ); then echo "PASS full-size TokenCut: lostd discover = ncut() on the reference keys ($msg)"
        else echo "FAIL full-size TokenCut: lostd discover = ncut() on the reference keys: $msg"; fi
    else
        echo "FAIL full-size TokenCut: $(tail -3 "$tmp/err")"
    fi
    rm -f "$m"
else
    echo "SKIP full-size TokenCut: $PY has no scipy (apt-get install python3-scipy)"
fi
