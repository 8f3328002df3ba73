"""Times the solve of TokenCut's authors (scipy.linalg.eigh of (D - W, D),
float64, subset [1, 2], as their ncut() does) on a keys .npy; prints
{"patches", "official_ms_median"}. Used by bench/run.sh."""
import json
import sys
import time

import numpy as np
import scipy.linalg

f = np.load(sys.argv[1]).astype(np.float32)
f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
ms = []
for _ in range(5):
    t = time.perf_counter()
    a = ((f @ f.T) > 0.2).astype(np.float64)
    a[a == 0] = 1e-5
    d = a.sum(1)
    scipy.linalg.eigh(np.diag(d) - a, np.diag(d), subset_by_index=[1, 2])
    ms.append((time.perf_counter() - t) * 1e3)
print(json.dumps({"patches": len(f), "official_ms_median": sorted(ms)[len(ms) // 2]}))
