"""What TokenCut's authors' ncut() computes (docs/specs/tokencut.md), in
numpy/scipy float64 as their code does, for checking lostd on maps nobody
tuned for: python3 ref_tokencut.py feats.npy rows cols patch H W tau eps binary
prints {"box", "box_feat", "seed", "n_cc"} as JSON."""
import json
import sys

import numpy as np
import scipy.linalg
import scipy.ndimage


def ncut(feats, rows, cols, patch, h, w, tau=0.2, eps=1e-5, binary=True):
    f = np.asarray(feats, dtype=np.float32)
    norm = np.maximum(np.sqrt((f.astype(np.float64) ** 2).sum(1)), 1e-12).astype(np.float32)
    f = f / norm[:, None]
    s = f @ f.T  # float32, as the torch product
    if binary:
        a = (s > tau).astype(np.float64)
        a[a == 0] = eps
    else:
        a = s.copy()
        a[a < tau] = eps
    d = a.sum(1)
    vals, vecs = scipy.linalg.eigh(np.diag(d) - a, np.diag(d), subset_by_index=[1, 2])
    x = vecs[:, 0]
    part = x > x.sum() / len(x)
    seed = int(np.argmax(np.abs(x)))
    # How well the answer is determined: the gap to the next eigenvalue and
    # how far the closest entry is from the mean and the runner-up from the
    # seed, relative to max |x|. Near zero, float rounding decides.
    ax = np.sort(np.abs(x))[::-1]
    top = float(ax[0]) if len(ax) else 1.0
    posed = {"gap": float(vals[1] - vals[0]) if len(vals) > 1 else 1.0,
             "mean": float(np.min(np.abs(x - x.mean()))) / top,
             "seed": float(ax[0] - ax[1]) / top if len(ax) > 1 else 1.0}
    if not part[seed]:
        part = ~part
    lab, _ = scipy.ndimage.label(part.reshape(rows, cols))
    comp = lab == lab.flat[seed]
    rr, cc = np.nonzero(comp)
    r0, r1, c0, c1 = int(rr.min()), int(rr.max()), int(cc.min()), int(cc.max())
    box = [c0 * patch, r0 * patch, min((c1 + 1) * patch, w), min((r1 + 1) * patch, h)]
    return {"box": box, "box_feat": [r0, c0, r1 + 1, c1 + 1], "seed": seed,
            "n_cc": int(comp.sum()), "posed": posed}


if __name__ == "__main__":
    a = sys.argv[1:]
    out = ncut(np.load(a[0]), int(a[1]), int(a[2]), int(a[3]), int(a[4]), int(a[5]),
               float(a[6]), float(a[7]), a[8] == "1")
    print(json.dumps(out))
