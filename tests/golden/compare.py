#!/usr/bin/env python3
"""Compares lostd's feature files with reference ones, array by array.

usage: compare.py OURS_DIR REF_DIR NAME...
Prints one line per array with the max abs error and the tolerance
1e-4 * (1 + max |ref|) (the fixtures' rule); exits 1 if any array is over
it, has another shape, or is missing.
"""
import os
import sys

import numpy as np


def main():
    ours, ref, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    bad = 0
    for n in names:
        a = np.load(os.path.join(ours, n))
        b = np.load(os.path.join(ref, n))
        if a.shape != b.shape:
            print("%s: shape %s, reference %s" % (n, a.shape, b.shape))
            bad += 1
            continue
        err = float(np.abs(a.astype(np.float64) - b).max())
        tol = 1e-4 * (1 + float(np.abs(b).max()))
        ok = err <= tol
        bad += not ok
        print("%s: max abs error %.3g, tolerance %.3g %s" % (n, err, tol, "ok" if ok else "OVER"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
