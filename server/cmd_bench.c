/* cmd_bench.c - `lostd bench`: per-stage timings of the pipeline on one
 * fixed image, after a warm-up, as one JSON object; plus the sgemm rate this
 * machine reaches on the model's own GEMM shapes (the ceiling the forward
 * is measured against). Figures only: nothing here asserts a speed. */
#include "arena.h"
#include "clock.h"
#include "cli.h"
#include "err.h"
#include "image.h"
#include "lost_opts.h"
#include "model.h"
#include "pipeline.h"
#include "vit.h"

#include <cblas.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char usage[] =
    "usage: lostd bench --model FILE [--size HxW | --image IMG] [--repeat N] [--warmup N]\n"
    "                   [--threads T] [--precision fp32|bf16] [--stages] [LOST options]\n"
    "\n"
    "Runs the pipeline (preprocess, forward, LOST) --warmup times, then --repeat times\n"
    "(default 2 and 10) on a synthetic image of --size (default 392x504) or on IMG,\n"
    "and prints one JSON object: forward_ms_median, forward_ms_min, lost_ms_median\n"
    "(tokencut_ms_median with --method tokencut), discovery_pct_of_forward,\n"
    "preprocess_ms_median, total_ms_median, gflop (forward), gflops (effective),\n"
    "sgemm_gflops (this machine on the model's GEMM shapes), fma_peak_gflops (the\n"
    "threads on nothing but FMAs: the arithmetic bound, the median of 20 ms samples\n"
    "taken right after each timed forward, so that it follows the clock the\n"
    "forwards ran at; null without AVX-512),\n"
    "peak_rss_mb, threads, precision, load_ms (loading the model), plus the model and\n"
    "size. --stages adds stages_ms (per forward, the mean over the repeats: embed,\n"
    "norm, qkv, attention, proj, fc1, fc2, other) and stages_pct (their shares).\n\n";

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int cli_bench(int argc, char **argv)
{
    const char *model_path = NULL, *image_path = NULL;
    int h = 392, w = 504;
    struct model_opts mo = {.n_head = 0, .act = -1};
    long repeat = 10, warmup = 2, threads = 0;
    int stages = 0;
    struct pipeline_opts o;
    pipeline_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int k = lost_opts_parse("bench", argc, argv, &i, &o, &mo);
        if (k < 0)
            return 2;
        if (k)
            continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s%s", usage, lost_opts_help());
            return 0;
        }
        if (!strcmp(a, "--stages")) {
            stages = 1;
            continue;
        }
        if (!v)
            return cli_fail(2, "bench", "unknown option or missing value: '%s'", a);
        i++;
        if (!strcmp(a, "--model"))
            model_path = v;
        else if (!strcmp(a, "--image"))
            image_path = v;
        else if (!strcmp(a, "--size")) {
            if (cli_parse_pair("bench", a, v, &h, &w))
                return 2;
        } else if (!strcmp(a, "--repeat")) {
            if (cli_parse_int("bench", a, v, 1, 100000, &repeat))
                return 2;
        } else if (!strcmp(a, "--warmup")) {
            if (cli_parse_int("bench", a, v, 0, 100000, &warmup))
                return 2;
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_int("bench", a, v, 1, 1024, &threads))
                return 2;
        } else
            return cli_fail(2, "bench", "unknown option '%s' (see --help)", a);
    }
    if (!model_path)
        return cli_fail(2, "bench", "needs --model FILE (see --help)");
    if (!threads)
        threads = 1;
    /* One pool of threads: the workspace's team on the AVX-512 path (OpenBLAS
     * then single-threaded), OpenBLAS's own threads on the fallback. */
    struct err e = {0};
    struct model *m = NULL;
    double t_load = clock_now_ms();
    if (model_load(model_path, &mo, &m, &e))
        return cli_fail(1, "bench", "%s", e.msg);
    t_load = clock_now_ms() - t_load; /* mapping, checks and packing of the weights */
    const struct model_config *c = model_config(m);
    struct arena *a = arena_init(1u << 30);
    struct image img = {0};
    int status = 1;
    struct vit_work *vw = NULL;
    double *fw = calloc(repeat, sizeof *fw), *lo = calloc(repeat, sizeof *lo),
           *pre = calloc(repeat, sizeof *pre), *tot = calloc(repeat, sizeof *tot),
           *pk = calloc(repeat, sizeof *pk);
    if (!a || !fw || !lo || !pre || !tot || !pk) {
        cli_fail(1, "bench", "out of memory");
        goto done;
    }
    if (image_path) {
        if (image_load_file(image_path, 0, o.exif, a, &img, &e)) {
            cli_fail(1, "bench", "%s: %s", image_path, e.msg);
            goto done;
        }
    } else {
        /* A fixed synthetic image: smooth gradients plus a bright block. */
        img.w = w;
        img.h = h;
        img.px = arena_alloc(a, (size_t)w * h * 3);
        if (!img.px) {
            cli_fail(1, "bench", "image too large");
            goto done;
        }
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                unsigned char *p = img.px + ((size_t)y * w + x) * 3;
                int in = x > w / 3 && x < 2 * w / 3 && y > h / 4 && y < 3 * h / 4;
                p[0] = (unsigned char)(in ? 230 : x * 255 / w);
                p[1] = (unsigned char)(in ? 40 : y * 255 / h);
                p[2] = (unsigned char)(in ? 60 : 128);
            }
    }
    int side = img.w > img.h ? img.w : img.h;
    if (o.max_side > 0 && side > o.max_side)
        side = o.max_side;
    if (vit_work_init(m, pipeline_max_patches(m, side), &vw, &e) ||
        vit_work_set_threads(vw, (int)threads, &e)) {
        cli_fail(1, "bench", "%s", e.msg);
        goto done;
    }
    openblas_set_num_threads(vit_work_fast(vw) ? 1 : (int)threads);
    size_t mark = arena_mark(a);
    struct pipeline_result r;
    for (long i = 0; i < warmup + repeat; i++) {
        arena_rewind(a, mark);
        if (stages && i == warmup)
            vit_work_stage_timing(vw, 1);
        double t0 = clock_now_ms();
        if (pipeline_run_image(m, vw, a, &img, &o, &r, &e)) {
            cli_fail(1, "bench", "%s", e.msg);
            goto done;
        }
        double t = clock_now_ms() - t0;
        if (i >= warmup) {
            fw[i - warmup] = r.ms_forward;
            lo[i - warmup] = r.ms_lost;
            pre[i - warmup] = r.ms_preprocess;
            tot[i - warmup] = t;
            pk[i - warmup] = vit_work_fma_peak_gflops(vw, 20.0);
        }
    }
    double fmin = fw[0];
    for (long i = 1; i < repeat; i++)
        fmin = fw[i] < fmin ? fw[i] : fmin;
    double fmed = median(fw, (int)repeat);
    double gflop = vit_forward_flop(m, r.grid_h * r.grid_w, pipeline_feature_want(m, &o)) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    json_t *j = json_object();
    json_object_set_new(j, "model", json_string(c->arch));
    json_object_set_new(j, "size", json_pack("[i,i]", r.run_h, r.run_w));
    json_object_set_new(j, "grid", json_pack("[i,i]", r.grid_h, r.grid_w));
    json_object_set_new(j, "repeat", json_integer(repeat));
    json_object_set_new(j, "warmup", json_integer(warmup));
    json_object_set_new(j, "load_ms", json_real(t_load));
    if (stages) {
        double ms[VIT_N_STAGES], sum = 0;
        vit_work_stage_ms(vw, ms);
        json_t *sm = json_object(), *sp = json_object();
        for (int s = 0; s < VIT_N_STAGES; s++)
            sum += ms[s];
        for (int s = 0; s < VIT_N_STAGES; s++) {
            json_object_set_new(sm, vit_stage_name(s), json_real(ms[s] / (double)repeat));
            json_object_set_new(sp, vit_stage_name(s), json_real(sum > 0 ? 100 * ms[s] / sum
                                                                         : 0));
        }
        json_object_set_new(j, "stages_ms", sm);
        json_object_set_new(j, "stages_pct", sp);
    }
    json_object_set_new(j, "forward_ms_median", json_real(fmed));
    json_object_set_new(j, "forward_ms_min", json_real(fmin));
    /* The discovery stage: LOST's, or TokenCut's cut (graph, solve, box). */
    double dmed = median(lo, (int)repeat);
    json_object_set_new(j, "method", json_string(o.method == PIPELINE_TOKENCUT ? "tokencut"
                                                                               : "lost"));
    json_object_set_new(j, o.method == PIPELINE_TOKENCUT ? "tokencut_ms_median"
                                                         : "lost_ms_median", json_real(dmed));
    json_object_set_new(j, "discovery_pct_of_forward", json_real(100.0 * dmed / fmed));
    if (o.method == PIPELINE_TOKENCUT)
        json_object_set_new(j, "tokencut_solver", json_string(
            r.tc.solver == TOKENCUT_DENSE ? "dense" : "lanczos"));
    json_object_set_new(j, "preprocess_ms_median", json_real(median(pre, (int)repeat)));
    json_object_set_new(j, "total_ms_median", json_real(median(tot, (int)repeat)));
    json_object_set_new(j, "gflop", json_real(gflop));
    json_object_set_new(j, "gflops", json_real(gflop / (fmed / 1e3)));
    json_object_set_new(j, "sgemm_gflops", json_real(vit_work_gemm_gflops(vw, r.grid_h * r.grid_w)));
    double peak = median(pk, (int)repeat);
    json_object_set_new(j, "fma_peak_gflops", peak > 0 ? json_real(peak) : json_null());
    json_object_set_new(j, "peak_rss_mb", json_real(ru.ru_maxrss / 1024.0));
    json_object_set_new(j, "threads", json_integer(threads));
    json_object_set_new(j, "kernels", json_string(vit_work_fast(vw) ? "avx512" : "openblas"));
    json_object_set_new(j, "blas_threads", json_integer(openblas_get_num_threads()));
    json_object_set_new(j, "blas_core", json_string(openblas_get_corename()));
    json_object_set_new(j, "precision", json_string(model_precision_name(c->precision)));
    json_dumpf(j, stdout, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(5));
    putchar('\n');
    json_decref(j);
    status = 0;
done:
    free(fw), free(lo), free(pre), free(tot), free(pk);
    vit_work_free(vw);
    arena_free(a);
    model_free(m);
    return status;
}
