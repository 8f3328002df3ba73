#!/usr/bin/env python3
"""The PyTorch column of `make bench`: times bench/model.py's LostForward
(the same work as lostd's forward, see its docstring) in eager mode under
torch.inference_mode, on the same fixed input as the ONNX export.

usage: torch_bench.py --model MODEL.safetensors --size HxW [--threads T]
                      [--repeat N] [--warmup N] [--jit]
--jit traces and freezes the module (torch.jit.freeze +
optimize_for_inference) instead of running it eagerly.
Prints one JSON object. Run with libjemalloc preloaded and told to keep
freed pages (bench/run.sh does): glibc malloc, and jemalloc with its
defaults, hand the large activations back to the kernel, and PyTorch then
pays a page fault per 4 KiB of them on every forward.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as bm  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--jit", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    m, h, w = bm.build(a.model, a.size)
    x = bm.fixed_input(h, w)
    with torch.inference_mode():
        if a.jit:
            m = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(m, (x,))))
        for _ in range(a.warmup):
            m(x)
        ms = []
        for _ in range(a.repeat):
            t = time.perf_counter()
            m(x)
            ms.append((time.perf_counter() - t) * 1e3)
    preload = os.environ.get("LD_PRELOAD", "")
    print(json.dumps({
        "engine": "torch-jit" if a.jit else "torch",
        "torch_version": torch.__version__,
        "size": [h, w],
        "threads": torch.get_num_threads(),
        "repeat": a.repeat,
        "warmup": a.warmup,
        "forward_ms_median": statistics.median(ms),
        "forward_ms_min": min(ms),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "jemalloc": "jemalloc" in preload,
        "malloc_conf": os.environ.get("MALLOC_CONF", ""),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", ""),
    }))


if __name__ == "__main__":
    main()
