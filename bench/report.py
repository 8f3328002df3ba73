#!/usr/bin/env python3
"""Turns the raw lines of bench/run.sh ($BUILD/bench/results.jsonl) into one
markdown report: the machine, the forward table (lostd, ONNX Runtime and
PyTorch side by side), the key row with OpenBLAS's variables unset, lostd's
other stages and memory, the daemon under load and eval throughput. Prints
it and writes it to RESULTS. Figures only: nothing is asserted.

usage: report.py RESULTS.jsonl RESULTS.md LOSTD
"""
import json
import os
import platform
import subprocess
import sys


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine(rows, lostd):
    lscpu = dict(line.split(":", 1) for line in sh("lscpu").splitlines() if ":" in line)
    lscpu = {k.strip(): v.strip() for k, v in lscpu.items()}
    flags = set(lscpu.get("Flags", "").split())
    want = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
            "amx_tile", "amx_bf16"]
    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 2 ** 20)
    cores = {r["env"]: r["r"].get("blas_core") for r in rows if r["kind"] == "lostd"}
    ort = next((r["r"]["ort_version"] for r in rows if r["kind"] == "ort"), "not run")
    torch = next((r["r"]["torch_version"] for r in rows if r["kind"] == "torch"), "not run")
    jem = next((r["r"] for r in rows if r["kind"] == "torch"), {})
    dirty = " (with uncommitted changes)" if sh("git", "status", "--porcelain", "core",
                                                  "lost", "server", "include") else ""
    starts = [r["r"] for r in rows if r["kind"] == "load" and r["r"]["when"] == "start"]
    ends = [r["r"] for r in rows if r["kind"] == "load" and r["r"]["when"] == "end"]
    lines = [
        "| | |", "|---|---|",
        "| CPU | %s (family %s, model %s), %s cores, %s thread(s) per core |" % (
            lscpu.get("Model name", "?"), lscpu.get("CPU family", "?"),
            lscpu.get("Model", "?"), lscpu.get("CPU(s)", "?"),
            lscpu.get("Thread(s) per core", "?")),
        "| ISA flags | %s |" % " ".join(f if f in flags else "~~%s~~" % f for f in want),
        "| memory | %s |" % mem,
        "| OS | Debian %s, kernel %s |" % (open("/etc/debian_version").read().strip()
                                         if os.path.exists("/etc/debian_version") else "?",
                                         platform.release()),
        "| environment | OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s |" % (
            os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
            os.environ.get("OPENBLAS_L2_SIZE", "(unset)")),
        "| OpenBLAS core | %s as set; %s with both variables unset |" % (
            cores.get("set", "?"), cores.get("unset", "not run")),
        "| lostd | %s, %s |" % (os.environ.get("BENCH_LOSTD_REV") or
                               sh("git", "describe", "--always", "--dirty=+") + dirty,
                               sh("cc", "--version").split("\n")[0]),
        "| ONNX Runtime | onnxruntime-node %s (CPU EP), node %s |" % (ort, sh("node", "--version")),
        "| PyTorch | %s (Debian python3-torch), %s |" % (
            torch, ("libjemalloc2 preloaded, MALLOC_CONF=%s" % jem.get("malloc_conf")
                    if jem.get("jemalloc") else "glibc malloc (no jemalloc!)") +
            ", OMP_WAIT_POLICY=%s, OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = threads"
            % (jem.get("omp_wait_policy") or "(unset)")),
    ]
    for i, (a, b) in enumerate(zip(starts, ends)):
        lines.append("| load average%s | %s at start, %s at the end; %s took %s s |" % (
            "" if i == 0 else " (rows re-run)", a["loadavg"], b["loadavg"],
            "the run" if i == 0 else "re-run %d" % i, b["seconds"]))
    probes = [r for r in rows if r["kind"] == "cpu"]
    for when in ("start", "end"):
        p = [r for r in probes if r["r"]["when"] == when]
        if p:
            lines.append("| each CPU alone, at the %s | %s |" % (when, "; ".join(
                "cpu %d: %.1f ms, %.0f%% of its FMA peak (%.0f GFLOP/s)" % (
                    r["r"]["cpu"], r["r"]["bench"]["forward_ms_median"],
                    100 * r["r"]["bench"]["gflops"] / r["r"]["bench"]["fma_peak_gflops"],
                    r["r"]["bench"]["fma_peak_gflops"]) for r in p)))
    if probes:
        lines.append("| | (ViT-S/14-reg, 392x504, 1 thread pinned with taskset; a 2-thread "
                     "forward waits for the slower CPU) |")
    return lines


def fmt(v, f="%.1f"):
    return "-" if v is None else f % v


def ratio(a, b):
    return "-" if a is None or b is None else "%.2fx" % (a / b)


def forward_table(rows, env="set"):
    key = {}
    for r in rows:
        if r["kind"] in ("lostd", "lostd_bf16", "ort", "torch") and r["env"] == env:
            key.setdefault((r["model"], r["size"], r["threads"]), {})[r["kind"]] = r["r"]
    out = ["| model | size HxW | patches | threads | lostd ms | ORT ms | PyTorch ms "
           "| lostd vs ORT | lostd vs PyTorch | lostd bf16 ms | bf16 vs ORT | GFLOP "
           "| lostd GFLOP/s | ceiling GFLOP/s | % of ceiling | FMA peak GFLOP/s | % of peak "
           "| peak RSS MB lostd / ORT / PyTorch |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for (m, s, t), e in key.items():
        lo, o, p, bf = e.get("lostd"), e.get("ort"), e.get("torch"), e.get("lostd_bf16")
        ms = lambda x: x["forward_ms_median"] if x else None  # noqa: E731
        peak = lo and lo.get("fma_peak_gflops")
        out.append("| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s "
                   "| %s | %s | %s | %s |" % (
            m, s, "-" if not lo else lo["grid"][0] * lo["grid"][1], t,
            fmt(ms(lo)), fmt(ms(o)), fmt(ms(p)), ratio(ms(o), ms(lo)), ratio(ms(p), ms(lo)),
            fmt(ms(bf)), ratio(ms(o), ms(bf)),
            fmt(lo and lo["gflop"], "%.2f"), fmt(lo and lo["gflops"]),
            fmt(lo and lo["sgemm_gflops"]),
            fmt(lo and 100 * lo["gflops"] / lo["sgemm_gflops"], "%.0f%%"),
            fmt(peak), fmt(peak and 100 * lo["gflops"] / peak, "%.0f%%"),
            " / ".join(fmt(x and x["peak_rss_mb"], "%.0f") for x in (lo, o, p))))
    return out


def find(rows, kind, model, size, threads, env="set"):
    """The record of one (merged) row, or None."""
    return next((r["r"] for r in rows if r["kind"] == kind and r["model"] == model
                 and r["size"] == size and r["threads"] == threads and r["env"] == env), None)


def roofline(rows):
    """What the key row's arithmetic allows: the forward at the FMA peak
    measured in the same run, and the share of that peak a given speed-up
    over PyTorch (OpenBLAS variables unset) would take."""
    def pick(kind, env):
        return find(rows, kind, "vits14_reg", "392x504", 2, env)
    lo, pt = pick("lostd", "unset") or pick("lostd", "set"), pick("torch", "unset")
    peak = lo and lo.get("fma_peak_gflops")
    if not peak:
        return []
    floor = lo["gflop"] / peak * 1e3
    out = ["", "Arithmetic bound: %.2f GFLOP at the FMA peak of that run (%.0f GFLOP/s on 2 "
           "threads) take %.1f ms; lostd's %.1f ms is %.0f%% of that peak." % (
               lo["gflop"], peak, floor, lo["forward_ms_median"],
               100 * floor / lo["forward_ms_median"])]
    if pt:
        need = pt["forward_ms_median"] / 2.5
        out[-1] += (" Being 2.5x faster than PyTorch with the OpenBLAS variables unset "
                    "(%.1f ms) would take %.1f ms: %.0f%% of the FMA peak over the whole "
                    "forward, softmax, LayerNorm and GELU included." % (
                        pt["forward_ms_median"], need, 100 * floor / need))
    return out


def key_rows(rows):
    out = ["| engine | environment | ms median (median round) | ms min | lostd vs engine "
           "| notes |",
           "|---|---|---:|---:|---:|---|"]
    sel = [r for r in rows if r["kind"] in ("lostd", "lostd_bf16", "ort", "torch",
                                            "torch_jedefault", "torch_glibc",
                                            "torch_ompdefault")
           and r["model"] == "vits14_reg" and r["size"] == "392x504" and r["threads"] == 2]
    base = {r["env"]: r["r"]["forward_ms_median"] for r in sel if r["kind"] == "lostd"}
    names = {"lostd": "lostd", "lostd_bf16": "lostd bf16", "ort": "ONNX Runtime",
             "torch": "PyTorch + jemalloc", "torch_jedefault": "PyTorch + jemalloc",
             "torch_glibc": "PyTorch", "torch_ompdefault": "PyTorch + jemalloc"}
    for kind in ("lostd", "lostd_bf16", "ort", "torch", "torch_jedefault", "torch_glibc",
                 "torch_ompdefault"):
        for r in sel:
            if r["kind"] != kind:
                continue
            x = r["r"]
            note = ""
            if kind.startswith("lostd"):
                note = "kernels %s, OpenBLAS core %s" % (x.get("kernels"), x.get("blas_core"))
                o = next((q["r"]["forward_ms_median"] for q in sel
                          if q["kind"] == "ort" and q["env"] == r["env"]), None)
                if kind == "lostd_bf16" and o:
                    note += "; ORT / bf16 = %.2fx" % (o / x["forward_ms_median"])
            elif kind == "ort" and x.get("max_abs_diff_vs_torch") is not None:
                note = "output vs PyTorch: max abs %.1e" % x["max_abs_diff_vs_torch"]
            elif kind.startswith("torch"):
                note = ("MALLOC_CONF=" + x["malloc_conf"] if x.get("malloc_conf") else
                        "jemalloc defaults" if x.get("jemalloc") else "glibc malloc")
                note += ", OMP_WAIT_POLICY=" + (x.get("omp_wait_policy") or "(unset)")
            if len(x.get("rounds", [])) > 1:
                note += "; round medians %s" % " / ".join("%.1f" % v for v in x["rounds"])
            env = "as set" if r["env"] == "set" else "OPENBLAS_* unset"
            b = base.get(r["env"])
            out.append("| %s | %s | %.1f | %.1f | %s | %s |" % (
                names[kind], env, x["forward_ms_median"], x["forward_ms_min"],
                "-" if kind.startswith("lostd") or b is None
                else "%.2fx" % (x["forward_ms_median"] / b),
                note))
    return out


def forward_split(rows):
    """lostd bench --stages: the forward's wall time per stage, with the
    FLOP rate of the whole against the FMA peak of the same run."""
    names = ["embed", "norm", "qkv", "attention", "proj", "fc1", "fc2", "other"]
    out = ["| model | size | threads | precision | forward ms | % of FMA peak | " +
           " | ".join(names) + " |", "|---|---|---:|---|---:|---:|" + "---:|" * len(names)]
    for r in rows:
        if r["kind"] != "stages":
            continue
        x = r["r"]
        ms, pct = x.get("stages_ms", {}), x.get("stages_pct", {})
        peak = x.get("fma_peak_gflops")
        out.append("| %s | %s | %d | %s | %.1f | %s | %s |" % (
            r["model"], r["size"], r["threads"], x.get("precision", "?"),
            x["forward_ms_median"],
            fmt(100 * x["gflops"] / peak if peak and x.get("precision") == "fp32" else None,
                "%.0f%%"),
            " | ".join("%s (%s)" % (fmt(ms.get(n)), fmt(pct.get(n), "%.0f%%")) for n in names)))
    return out if len(out) > 2 else []


def lostd_stages(rows):
    out = ["| model | size | threads | load ms | preprocess ms | forward ms | LOST ms | "
           "LOST / forward | peak RSS MB | weights MB | RSS - weights MB |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["kind"] != "lostd" or r["env"] != "set":
            continue
        x = r["r"]
        w = os.path.getsize(r["weights"]) / 2 ** 20 if r.get("weights") else None
        out.append("| %s | %s | %d | %s | %.2f | %.1f | %.2f | %.1f%% | %.0f | %s | %s |" % (
            r["model"], r["size"], r["threads"], fmt(x.get("load_ms"), "%.0f"),
            x["preprocess_ms_median"],
            x["forward_ms_median"], x["lost_ms_median"],
            100 * x["lost_ms_median"] / x["forward_ms_median"], x["peak_rss_mb"],
            fmt(w, "%.0f"), fmt(w and x["peak_rss_mb"] - w, "%.0f")))
    return out


def targets(rows, ideal):
    """The performance issue's targets read off this run's rows: what each
    asks, what the run measured, and whether it holds. Figures only: bench
    asserts nothing. Compared unrounded: 84.5% of the peak misses 85%."""
    def ms(x):
        return x["forward_ms_median"] if x else None

    out = ["| target | this run | met |", "|---|---|---|"]

    def row(what, value, ok):
        out.append("| %s | %s | %s |" % (what, value, "-" if ok is None else
                                          "yes" if ok else "no"))
    for env in ("set", "unset"):
        lo = find(rows, "lostd", "vits14_reg", "392x504", 2, env)
        if lo and lo.get("fma_peak_gflops"):
            pct = 100 * lo["gflops"] / lo["fma_peak_gflops"]
            row("fp32 key row (ViT-S 392x504, 2 threads%s) >= 85%% of the FMA peak" % (
                "" if env == "set" else ", OpenBLAS variables unset"),
                "%.1f%% (%.1f ms)" % (pct, ms(lo)), pct >= 85)
    for model, sizes in (("vitb14_reg", ("224x224", "392x504", "518x518")),
                         ("vitl14_reg", ("392x504",))):
        for size in sizes:
            lo, o = find(rows, "lostd", model, size, 2), find(rows, "ort", model, size, 2)
            if lo and o:
                r = ms(o) / ms(lo)
                row("%s %s, 2 threads >= 1.15x ONNX Runtime" % (model, size),
                    "%.3fx (%.1f / %.1f ms)" % (r, ms(o), ms(lo)), r >= 1.15)
    for env in ("set", "unset"):
        bf, o = (find(rows, "lostd_bf16", "vits14_reg", "392x504", 2, env),
                 find(rows, "ort", "vits14_reg", "392x504", 2, env))
        if bf and o:
            r = ms(o) / ms(bf)
            row("bf16 key row%s >= 2.0x ONNX Runtime" % (
                "" if env == "set" else " (OpenBLAS variables unset)"),
                "%.3fx (%.1f / %.1f ms)" % (r, ms(o), ms(bf)), r >= 2.0)
    for r in rows:
        if r["kind"] == "bf16_boxes":
            x = r["r"]
            row("bf16 gives fp32's box and seed on every check image, %s" % r["model"],
                "%d / %d boxes, %d / %d seeds" % (x["same_box"], x["images"], x["same_seed"],
                                                  x["images"]),
                x["same_box"] == x["images"] and x["same_seed"] == x["images"])
    loads = sorted(r["r"]["load_ms"] for r in rows if r["kind"] == "model_load"
                   and r["model"] == "vitl14_reg" and r["r"].get("precision") == "fp32"
                   and r["r"].get("load_ms") is not None)
    if loads:
        med = loads[len(loads) // 2]
        row("ViT-L loaded (file in the page cache) in <= 1.5 s", "%.0f ms median of %d" % (
            med, len(loads)), med <= 1500)
    lost = [r["r"]["discovery_pct_of_forward"] for r in rows if r["kind"] == "lostd"
            and r["r"].get("discovery_pct_of_forward") is not None]
    if lost:
        row("LOST <= 3% of the forward", "at most %.1f%%" % max(lost), max(lost) <= 3)
    if ideal:
        for r in rows:
            if r["kind"] == "daemon" and r["r"]["concurrency"] == 8:
                pct = 100 * r["r"]["wrk"]["rps"] / ideal
                one = r["r"]["workers"] == 1
                row("daemon at concurrency 8, %d x %d, >= 90%% of the ideal%s" % (
                    r["r"]["workers"], r["threads"], " (one worker on both cores: the "
                    "latency layout, not a target)" if one else ""), "%.1f%%" % pct,
                    None if one else pct >= 90)
    return out if len(out) > 2 else []


def model_load(rows):
    """Load times of bench/run.sh's model_load runs (file in the page cache)."""
    runs = {}
    for r in rows:
        if r["kind"] == "model_load" and r["r"].get("load_ms") is not None:
            runs.setdefault((r["model"], r["r"].get("precision", "?"), r["threads"]),
                            []).append(r["r"]["load_ms"])
    out = ["| model | precision | threads | loads | load ms median | min | max |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for (m, p, t), v in runs.items():
        v = sorted(v)
        out.append("| %s | %s | %d | %d | %.0f | %.0f | %.0f |" % (
            m, p, t, len(v), v[len(v) // 2], v[0], v[-1]))
    return out if len(out) > 2 else []


def daemon(rows, ncores):
    # measured before and after the load: the faster one sets the ideal
    ones = [r["r"] for r in rows if r["kind"] == "single"]
    one = min(ones, key=lambda o: o["total_ms_median"]) if ones else None
    ideal = ncores * 1000.0 / one["total_ms_median"] if one else None
    out = ["| workers x threads | concurrency | requests | images/s | of ideal | p50 ms "
           "| p99 ms | max ms | errors |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["kind"] != "daemon":
            continue
        x, w = r["r"], r["r"]["wrk"]
        out.append("| %d x %d | %d | %d | %.2f | %s | %.0f | %.0f | %.0f | %d |" % (
            x["workers"], r["threads"], x["concurrency"], w["requests"], w["rps"],
            fmt(ideal and 100 * w["rps"] / ideal, "%.0f%%"), w["p50_ms"], w["p99_ms"],
            w["max_ms"], w["non2xx"] + w["socket_errors"] + w["timeouts"]))
    return out, ideal, one, ones


def evals(rows):
    e = {r["r"]["images"]: r["r"] for r in rows if r["kind"] == "eval"}
    if len(e) < 2:
        return None
    (n0, a), (n1, b) = sorted(e.items())[:2]
    ok = all(x.get("summary") and x["summary"].get("images") == n for n, x in e.items())
    return (n1 - n0) / (b["seconds"] - a["seconds"]), n1, b["seconds"], ok


def tokencut(rows):
    out = []
    tb = [r for r in rows if r["kind"] == "tokencut" and r["r"].get("bench")]
    if tb:
        out += ["| input | forward (ms) | TokenCut (ms) | % of forward | solver |",
                "|---|---:|---:|---:|---|"]
        for r in tb:
            b = r["r"]["bench"]
            out.append("| %s | %s | %s | %s%% | %s |" % (
                r["size"], fmt(b["forward_ms_median"]), fmt(b.get("tokencut_ms_median"), "%.2f"),
                fmt(b.get("discovery_pct_of_forward"), "%.1f"), b.get("tokencut_solver", "-")))
    ts = [r["r"] for r in rows if r["kind"] == "tokencut_solver" and r["r"].get("lostd")]
    if ts:
        out += ["", "| patches | lostd: whole cut, Lanczos (ms) | lostd: dense LAPACK (ms) | "
                "authors' scipy eigh (ms) | Lanczos steps | same box |", "|---:|---:|---:|---:|---:|---|"]
        for t in ts:
            l, o = t["lostd"], t.get("official") or {}
            out.append("| %d | %s | %s | %s | %d | %s |" % (
                l["patches"], fmt(l["tokencut_ms_median"], "%.2f"), fmt(l["dense_ms_median"]),
                fmt(o.get("official_ms_median")), l["lanczos_steps"],
                "yes" if l["same_box"] else "no"))
    return out


def coco(rows):
    """lostd's COCO read (eval --predictions: stream, keep the 20k, score)
    against python3's json.load of the same file: median and best round."""
    size = next((r["r"]["bytes"] for r in rows if r["kind"] == "coco_file"), None)
    runs = {k: [r["r"] for r in rows if r["kind"] == k] for k in ("coco_lostd", "coco_python")}
    if not runs["coco_lostd"] or not size:
        return []
    names = {"coco_lostd": "`lostd eval --dataset coco20k --predictions` (yajl stream, then scoring)",
             "coco_python": "python3 `json.load` of the file alone"}
    med = {}
    out = ["| reader | seconds, median (min) | peak RSS MB, median | rounds |",
           "|---|---:|---:|---:|"]
    for k, xs in runs.items():
        if not xs:
            continue
        secs = sorted(x["seconds"] for x in xs)
        rss = sorted(x["rss_kb"] * 1024 / 1e6 for x in xs)
        med[k] = (secs[(len(secs) - 1) // 2], rss[(len(rss) - 1) // 2])
        out.append("| %s | %.2f (%.2f) | %.0f | %d |" % (names[k], med[k][0], secs[0],
                                                       med[k][1], len(xs)))
    if len(med) == 2:
        out += ["", "For a %.0f MB file lostd takes %.2f of python's time (%.1fx faster) and "
                "%.1f%% of its memory." % (
                    size / 1e6, med["coco_lostd"][0] / med["coco_python"][0],
                    med["coco_python"][0] / med["coco_lostd"][0],
                    100 * med["coco_lostd"][1] / med["coco_python"][1])]
    return out


def dedupe(rows):
    """A row re-run (BENCH_APPEND=1) replaces the earlier line of the same
    row, in the earlier line's place; load lines are all kept."""
    def key(r):
        x = r["r"]
        return (r["kind"], r["model"], r["size"], r["threads"], r["env"], r.get("round", 1),
                x.get("workers"), x.get("concurrency"), x.get("images"), x.get("cpu"),
                x.get("when"),
                x.get("precision") if r["kind"] in ("stages", "model_load") else None)
    last = {key(r): r for r in rows if r["kind"] != "load"}
    out, seen = [], set()
    for r in rows:
        if r["kind"] == "load":
            out.append(r)
        elif key(r) not in seen:
            seen.add(key(r))
            out.append(last[key(r)])
    return out


def merge_rounds(rows):
    """The key row's rounds as one row each: the round with the median
    forward time stands for them, with the lowest minimum over all rounds
    and every round's median in r["rounds"]."""
    groups, out = {}, []
    for r in rows:
        if r["kind"] in ("load", "model_load", "single") or "forward_ms_median" not in r["r"]:
            out.append(r)
            continue
        k = (r["kind"], r["model"], r["size"], r["threads"], r["env"],
             r["r"].get("precision") if r["kind"] == "stages" else None)
        if k not in groups:
            groups[k] = []
            out.append(k)
        groups[k].append(r)
    merged = []
    for r in out:
        if not isinstance(r, tuple):
            merged.append(r)
            continue
        g = sorted(groups[r], key=lambda x: x["r"]["forward_ms_median"])
        m = dict(g[(len(g) - 1) // 2])
        m["r"] = dict(m["r"])
        m["r"]["forward_ms_min"] = min(x["r"]["forward_ms_min"] for x in g)
        m["r"]["rounds"] = [x["r"]["forward_ms_median"] for x in groups[r]]
        merged.append(m)
    return merged


def main():
    src, dst, lostd = sys.argv[1:4]
    rows = merge_rounds(dedupe([json.loads(line) for line in open(src) if line.strip()]))
    for r in rows:
        if r["kind"] == "lostd":
            r["weights"] = os.path.join(os.path.dirname(src),
                                        "dinov2_%s_random.safetensors" % r["model"])
    ncores = os.cpu_count() or 1
    md = ["# lostd benchmark results", "",
          "Written by `make bench` (bench/run.sh, bench/report.py); figures only. Every engine",
          "times the same forward on the same random full-size weights (`lostd model init",
          "--seed 0`): patch embedding, position table and registers, all blocks but the",
          "last in full, then the last block's LayerNorm and keys of the patch tokens (what",
          "LOST reads); not its queries, values, attention or MLP, not the final norm (see",
          "bench/model.py). Times are the",
          "median of the timed runs after a warm-up, in milliseconds per image (batch 1);",
          "\"lostd vs X\" is X's time over lostd's (above 1 = lostd faster). The ceiling is",
          "what lostd's own GEMM path reaches on the model's GEMM shapes in the same run;",
          "the FMA peak is the same threads running nothing but independent FMAs (the",
          "arithmetic bound: no forward of that many FLOPs can take less time).",
          "", "## Machine", ""]
    md += machine(rows, lostd)
    d, ideal, one, ones = daemon(rows, ncores)
    tg = targets(rows, ideal)
    if tg:
        md += ["", "## Targets (the performance issue's, read off the rows below, compared "
               "unrounded)", ""] + tg
    par = next((r["r"] for r in rows if r["kind"] == "parity"), None)
    ort_d = [r["r"]["max_abs_diff_vs_torch"] for r in rows
             if r["kind"] == "ort" and r["r"].get("max_abs_diff_vs_torch") is not None]
    md += ["", "## Forward: lostd, ONNX Runtime, PyTorch", ""]
    md += forward_table(rows)
    md += ["", "Same output: lostd's q/k/v vs bench/model.py at %s: max abs %s (keys reach "
           "%s); ONNX Runtime vs PyTorch over all rows: max abs %s." % (
               "x".join(map(str, par["size"])) if par else "-",
               "%.1e" % max(v for k, v in par["lostd_vs_torch_max_abs"].items()
                            if k != "max_abs_keys") if par else "-",
               "%.1f" % par["lostd_vs_torch_max_abs"]["max_abs_keys"] if par else "-",
               "%.1e" % max(ort_d) if ort_d else "-")]
    md += ["", "## Key row: ViT-S/14-reg, 392x504, 2 threads, environment as set and with",
           "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset in that command alone", ""]
    md += key_rows(rows)
    md += roofline(rows)
    bf = [r for r in rows if r["kind"] == "bf16_boxes"]
    if bf:
        md += ["", "bf16 against fp32 on the fixture images (tests/fixtures/images, "
               "static/samples) and scikit-image's sample photos (random weights, so "
               "this shows drift, not accuracy): " +
               "; ".join("%s: %d of %d boxes identical, %d of %d seeds, lowest IoU %s" % (
                   r["model"], r["r"]["same_box"], r["r"]["images"], r["r"]["same_seed"],
                   r["r"]["images"], fmt(r["r"]["min_iou"], "%.3f")) for r in bf) + "."]
    tc = tokencut(rows)
    if tc:
        md += ["", "## TokenCut (ViT-S/14-reg keys; the cut: graph, solve, box)", ""] + tc
    fs = forward_split(rows)
    if fs:
        md += ["", "## Where the forward's time goes (lostd bench --stages; ms per forward, "
               "share of it; the FMA peak is float32's, so bf16 has none)", ""] + fs
    md += ["", "## lostd: other stages and memory", ""]
    md += lostd_stages(rows)
    ml = model_load(rows)
    if ml:
        md += ["", "## Model load (the checkpoint in the page cache: read through once, "
               "then each run a fresh `lostd bench` that maps, validates and packs it)", ""] + ml
    if len(d) > 2:
        md += ["", "## Daemon (`lostd serve`, ViT-S/14-reg, VOC07_000236.jpg 500x381 POSTed "
               "as image/jpeg, wrk on 127.0.0.1, closed loop, 30 s or 400 responses per run)",
               "", "Ideal = cores / single-image time = %d / %.1f ms = %.2f images/s (lostd "
               "bench, 392x504, 1 thread, preprocess + forward + LOST; measured before and "
               "after the load: %s ms, the faster one taken; JPEG decode excluded)." % (
                   ncores, one["total_ms_median"], ideal,
                   " / ".join("%.1f" % o["total_ms_median"] for o in ones)) if ones else "", ""]
        md += d
    ev = evals(rows)
    if ev:
        md += ["", "## `lostd eval --model` (ViT-S/14-reg, VOC layout, copies of "
               "VOC07_000236.jpg)", "",
               "%.2f images/s steady state (from the difference of a 4- and a %d-image run, "
               "so model load drops out); the %d-image run took %.1f s wall in all.%s" % (
                   ev[0], ev[1], ev[1], ev[2], "" if ev[3] else
                   " (eval did not report every image: check the raw lines)")]
    cc = coco(rows)
    if cc:
        md += ["", "## COCO 20k annotations (a train2014-sized file from tests/coco_scale.py, "
               "19,817 images listed)", ""] + cc
    md += ["", "## Reproduce", "",
           "    apt-get install -y python3-torch libjemalloc2 wrk curl nodejs npm time",
           "    (cd bench && ONNXRUNTIME_NODE_INSTALL=skip npm ci)",
           "    make && make bench        # or BUILD=dir bash bench/run.sh",
           "", "<details><summary>raw lines (%s)</summary>" % os.path.basename(src), "",
           "```"]
    md += [json.dumps({k: v for k, v in r.items() if k != "weights"}) for r in rows]
    md += ["```", "", "</details>", ""]
    text = "\n".join(md)
    with open(dst, "w") as f:
        f.write(text)
    print(text.split("## Reproduce")[0].rstrip())
    print("\nbench: wrote %s" % dst)


if __name__ == "__main__":
    main()
