/* cmd_analyze.c - `lostd analyze`: artifact analysis of each image, one
 * JSON line per image on stdout (server/analyze_json.c builds it), and with
 * --png DIR heat maps of the norms, the input redundancy and the attention
 * of CLS and every register, written as PNG through libspng. */
#include "analyze.h"
#include "analyze_json.h"
#include "arena.h"
#include "cli.h"
#include "err.h"
#include "file.h"
#include "image.h"
#include "lost_opts.h"
#include "model.h"
#include "pipeline.h"
#include "vit.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CMD "analyze"

static const char usage[] =
    "usage: lostd analyze --model FILE [--threshold T] [--png DIR] [options] IMAGE...\n"
    "\n"
    "Artifact analysis (registers paper): per image one JSON line with the\n"
    "output-token norm of every patch and register, the high-norm outlier\n"
    "patches (norm > T with --threshold, e.g. 150 as the paper uses for ViT-g;\n"
    "otherwise Otsu's threshold on the log-norms, kept only when the two classes\n"
    "are clearly apart, so a unimodal distribution gives no outliers), their\n"
    "fraction and grid positions, the mean cosine similarity of each patch's\n"
    "input embedding to its 4 neighbours, and the last block's attention of CLS\n"
    "and of each register over the patches (head mean).\n"
    "\n"
    "  --threshold T    fixed outlier threshold on the token norm (default: automatic)\n"
    "  --png DIR        also write heat maps: DIR/<name>_norms.png, _neighbor_sim.png,\n"
    "                   _outliers.png, _attn_cls.png, _attn_reg<i>.png (model-input\n"
    "                   size, one colour square per patch, min..max of each map)\n"
    "  --max-side N     downscale images whose longer side exceeds N\n"
    "  --max-pixels N   refuse images over N pixels\n"
    "  --threads N      threads of the forward (default: the online CPUs)\n"
    "  --exif W         apply (default: upright, as a person sees the photo) or\n"
    "                   ignore a JPEG's EXIF orientation\n"
    "  --heads N, --act A   as for discover\n"
    "Exit status 1 when an image fails (its line is {\"image\", \"error\"}).\n";

/* Encodes in memory, then replaces path in one step (include/file.h). */
static int write_png(const char *path, const unsigned char *rgb, int w, int h, struct err *e)
{
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    int rc = 0, s = 0;
    struct spng_ihdr ihdr = {.width = (uint32_t)w, .height = (uint32_t)h, .bit_depth = 8,
                             .color_type = SPNG_COLOR_TYPE_TRUECOLOR};
    void *png = NULL;
    size_t n = 0;
    if (!ctx)
        rc = err_set(e, ERR_NOMEM, "png: out of memory");
    else if ((s = spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1)) ||
             (s = spng_set_ihdr(ctx, &ihdr)) ||
             (s = spng_encode_image(ctx, rgb, (size_t)w * h * 3, SPNG_FMT_PNG,
                                    SPNG_ENCODE_FINALIZE)) ||
             !(png = spng_get_png_buffer(ctx, &n, &s)))
        rc = err_set(e, ERR_IO, "%s: %s", path, spng_strerror(s));
    spng_ctx_free(ctx);
    if (!rc)
        rc = file_replace(path, png, n, e);
    free(png);
    return rc;
}

static int write_map(const char *dir, const char *name, const char *suffix, const float *map,
                     const struct analyze_run *run, struct arena *a, struct err *e)
{
    const struct analyze_result *r = &run->res;
    int N = r->n_patch;
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < N; i++)
        if (isfinite(map[i])) {
            lo = map[i] < lo ? map[i] : lo;
            hi = map[i] > hi ? map[i] : hi;
        }
    if (!(lo <= hi))
        lo = hi = 0;
    size_t mark = arena_mark(a);
    unsigned char *rgb;
    int rc = analyze_heatmap(map, r->grid_h, r->grid_w, run->patch, run->run_w, run->run_h, lo,
                             hi, a, &rgb, e);
    char path[4096];
    if (!rc && snprintf(path, sizeof path, "%s/%s_%s.png", dir, name, suffix) >= (int)sizeof path)
        rc = err_set(e, ERR_IO, "%s: path too long", dir);
    if (!rc)
        rc = write_png(path, rgb, run->run_w, run->run_h, e);
    arena_rewind(a, mark);
    return rc;
}

/* File stem of an image path: "dir/cat.01.jpg" -> "cat.01"; index-prefixed
 * so two images with the same name do not overwrite each other. */
static void stem(const char *path, int index, char *out, size_t n)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *dot = strrchr(b, '.');
    int len = dot && dot != b ? (int)(dot - b) : (int)strlen(b);
    snprintf(out, n, "%03d_%.*s", index, len > 200 ? 200 : len, b);
}

static int write_maps(const char *dir, const char *img_path, int index,
                      const struct analyze_run *run, struct arena *a, struct err *e)
{
    const struct analyze_result *r = &run->res;
    char name[256];
    stem(img_path, index, name, sizeof name);
    int rc = write_map(dir, name, "norms", r->patch_norm, run, a, e);
    if (!rc) {
        /* Outliers: 1 on a detected patch, 0 elsewhere. */
        size_t mark = arena_mark(a);
        float *m = arena_calloc(a, (size_t)r->n_patch, sizeof *m);
        if (!m)
            rc = err_set(e, ERR_TOOBIG, "no scratch for the outlier map");
        for (int i = 0; m && i < r->n_outlier; i++)
            m[r->outlier[i]] = 1;
        if (m)
            rc = write_map(dir, name, "outliers", m, run, a, e);
        arena_rewind(a, mark);
    }
    if (!rc && r->neighbor_sim)
        rc = write_map(dir, name, "neighbor_sim", r->neighbor_sim, run, a, e);
    if (!rc && r->attn_map)
        rc = write_map(dir, name, "attn_cls", r->attn_map, run, a, e);
    for (int i = 0; !rc && r->attn_map && i < r->n_reg; i++) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, "attn_reg%d", i);
        rc = write_map(dir, name, suffix, r->attn_map + (size_t)(1 + i) * r->n_patch, run, a,
                       e);
    }
    return rc;
}

int cli_analyze(int argc, char **argv)
{
    const char *model_path = NULL, *png_dir = NULL;
    struct model_opts mo = {.n_head = 0, .act = -1};
    struct analyze_json_opts ao = {.threshold = 0, .max_side = 0,
                                   .max_pixels = IMAGE_DEFAULT_MAX_PIXELS};
    long threads = pipeline_threads_default();
    int exif = IMAGE_EXIF_APPLY;
    char **images = calloc((size_t)argc, sizeof *images);
    int n_img = 0;
    if (!images)
        return cli_fail(1, CMD, "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double d;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            free(images);
            return 0;
        } else if (!strcmp(a, "--model") && v) {
            model_path = argv[++i];
        } else if (!strcmp(a, "--png") && v) {
            png_dir = argv[++i];
        } else if (!strcmp(a, "--threshold") && v) {
            if (cli_parse_float(CMD, a, argv[++i], &d)) {
                free(images);
                return 2;
            }
            if (!(d > 0) || !isfinite(d)) {
                free(images);
                return cli_fail(2, CMD, "--threshold must be a finite number > 0");
            }
            ao.threshold = (float)d;
        } else if (!strcmp(a, "--max-side") && v) {
            if (cli_parse_int(CMD, a, argv[++i], 0, 16384, &n)) {
                free(images);
                return 2;
            }
            ao.max_side = (int)n;
        } else if (!strcmp(a, "--threads") && v) {
            if (cli_parse_int(CMD, a, argv[++i], 1, 256, &threads)) {
                free(images);
                return 2;
            }
        } else if (!strcmp(a, "--exif") && v) {
            if (lost_opts_parse_exif(CMD, argv[++i], &exif)) {
                free(images);
                return 2;
            }
        } else if (!strcmp(a, "--max-pixels") && v) {
            if (cli_parse_int(CMD, a, argv[++i], 1, 1L << 40, &n)) {
                free(images);
                return 2;
            }
            ao.max_pixels = n;
        } else if ((!strcmp(a, "--heads") || !strcmp(a, "--act")) && v) {
            struct pipeline_opts unused;
            pipeline_opts_default(&unused);
            if (lost_opts_parse(CMD, argc, argv, &i, &unused, &mo) < 0) {
                free(images);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            free(images);
            return cli_fail(2, CMD, "unknown option or missing value: '%s'", a);
        } else {
            images[n_img++] = argv[i];
        }
    }
    if (!model_path || n_img == 0) {
        free(images);
        return cli_fail(2, CMD, "needs --model FILE and at least one image (see --help)");
    }
    if (png_dir && mkdir(png_dir, 0777) && errno != EEXIST) {
        int rc = cli_fail(1, CMD, "%s: %s", png_dir, strerror(errno));
        free(images);
        return rc;
    }
    struct err e = {0};
    struct model *m = NULL;
    if (model_load(model_path, &mo, &m, &e)) {
        free(images);
        return cli_fail(1, CMD, "%s", e.msg);
    }
    struct arena *a = arena_init((size_t)ao.max_pixels * 24 + (1u << 30));
    struct vit_work *w = NULL;
    int failures = 0;
    for (int i = 0; i < n_img && a; i++) {
        arena_reset(a);
        struct image img;
        int rc = image_load_file(images[i], ao.max_pixels, exif, a, &img, &e);
        if (!rc)
            rc = pipeline_workspace_ensure(m, &w, img.w, img.h, ao.max_side, (int)threads,
                                           &e);
        struct analyze_run run;
        json_t *j = NULL;
        if (!rc)
            rc = analyze_json_image(m, w, a, &img, &ao, &run, &j, &e);
        if (!rc && png_dir)
            rc = write_maps(png_dir, images[i], i, &run, a, &e);
        if (rc) {
            json_decref(j);
            failures++;
            fprintf(stderr, "lostd %s: %s: %s\n", CMD, images[i], e.msg);
            cli_print_line(json_pack("{s:s, s:s, s:s}", "image", images[i], "error", e.msg,
                                 "type", err_name(rc)));
            continue;
        }
        /* "image" first, as discover prints it. */
        json_t *line = json_pack("{s:s}", "image", images[i]);
        json_object_update(line, j);
        json_decref(j);
        cli_print_line(line);
    }
    if (!a)
        failures = cli_fail(1, CMD, "out of memory for scratch");
    vit_work_free(w);
    arena_free(a);
    model_free(m);
    free(images);
    return failures ? 1 : 0;
}
