/* cmd_discover.c - `lostd discover`: the main object of each image, one
 * JSON line per image on stdout, errors per image as JSON lines too. */
#include "arena.h"
#include "clock.h"
#include "cli.h"
#include "discover_json.h"
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
#include <unistd.h>

static const char usage[] =
    "usage: lostd discover --model FILE [options] IMAGE...\n"
    "\n"
    "Prints one JSON object per image and line: image, width, height, box\n"
    "[x1,y1,x2,y2] (pixels of the image, exclusive end), box_feat, seed, seed_rc,\n"
    "seed_degree, n_similar, seed_background, grid, patch, feature, layer,\n"
    "timings_ms. An image that cannot be processed gives {\"image\", \"error\"}\n"
    "and the exit status is 1.\n"
    "With --max-objects N > 1 (at most %d), LOST is repeated on the patches outside\n"
    "the boxes found so far and the line also has \"boxes\" ([{box, box_feat, seed,\n"
    "seed_degree}], the first is \"box\") and \"stop\" (why the search ended:\n"
    "max_objects, empty, seed_degree - the next seed is similar to over half of\n"
    "the patches left -, background, overlap; see include/lost.h).\n"
    "\n";

int cli_discover(int argc, char **argv)
{
    const char *model_path = NULL;
    struct pipeline_opts o;
    pipeline_opts_default(&o);
    struct model_opts mo = {.n_head = 0, .act = -1};
    long max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    long threads = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    char **images = calloc(argc, sizeof *images);
    int n_img = 0;
    if (!images)
        return cli_fail(1, "discover", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k = lost_opts_parse("discover", argc, argv, &i, &o, &mo);
        if (k < 0) {
            free(images);
            return 2;
        }
        if (k)
            continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf(usage, LOST_MAX_OBJECTS);
            printf("%s  --threads N      threads for the forward (default: the online CPUs)\n"
                   "  --max-pixels N   refuse images over N pixels (default %ld)\n"
                   "  --max-objects N  multi-object discovery, up to N boxes (default 1: LOST)\n",
                   lost_opts_help(), (long)IMAGE_DEFAULT_MAX_PIXELS);
            free(images);
            return 0;
        } else if (!strcmp(a, "--model") && i + 1 < argc) {
            model_path = argv[++i];
        } else if (!strcmp(a, "--max-objects") && i + 1 < argc) {
            long n;
            if (cli_parse_int("discover", a, argv[++i], 1, LOST_MAX_OBJECTS, &n)) {
                free(images);
                return 2;
            }
            o.max_objects = (int)n;
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            if (cli_parse_int("discover", a, argv[++i], 1, 64, &threads)) {
                free(images);
                return 2;
            }
        } else if (!strcmp(a, "--max-pixels") && i + 1 < argc) {
            if (cli_parse_int("discover", a, argv[++i], 1, 1L << 40, &max_pixels)) {
                free(images);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            free(images);
            return cli_fail(2, "discover", "unknown option or missing value: '%s'", a);
        } else {
            images[n_img++] = argv[i];
        }
    }
    if (!model_path || n_img == 0) {
        free(images);
        return cli_fail(2, "discover", "needs --model FILE and at least one image "
                        "(see --help)");
    }
    o.max_pixels = max_pixels;
    struct err e = {0};
    struct model *m = NULL;
    if (model_load(model_path, &mo, &m, &e)) {
        free(images);
        return cli_fail(1, "discover", "%s", e.msg);
    }
    /* Scratch: decoded pixels, tensor and the Gram matrix of the largest image. */
    struct arena *a = arena_init((size_t)max_pixels * 20 + (1u << 30));
    struct vit_work *w = NULL;
    int failures = 0;
    for (int i = 0; i < n_img && a; i++) {
        arena_reset(a);
        double t0 = clock_now_ms();
        unsigned char *bytes;
        size_t nbytes;
        struct image_info info;
        struct pipeline_result r;
        /* The daemon's path: bytes to box, decoded straight to --max-side. */
        struct image_decode_opts dopt = {.max_pixels = max_pixels, .exif = o.exif,
                                         .fit_side = o.max_side};
        int rc = image_read_file(images[i], a, &bytes, &nbytes, &e);
        if (!rc && (rc = image_probe(bytes, nbytes, &dopt, &info, &e)))
            err_prefix(&e, "%s", images[i]);
        if (!rc)
            rc = pipeline_workspace_ensure(m, &w, info.up_w, info.up_h, o.max_side,
                                           (int)threads, &e);
        double t1 = clock_now_ms();
        if (!rc && (rc = pipeline_run_bytes(m, w, a, bytes, nbytes, &o, &r, &e)))
            err_prefix(&e, "%s", images[i]);
        if (rc) {
            failures++;
            fprintf(stderr, "lostd discover: %s\n", e.msg);
            cli_print_line(json_pack("{s:s, s:s, s:s}", "image", images[i], "error", e.msg,
                                 "type", err_name(rc)));
            continue;
        }
        r.ms_decode += t1 - t0;
        struct discover_json_opts dj = {.schema = DISCOVER_JSON_CLI, .image = images[i]};
        cli_print_line(discover_json(&r, &dj));
    }
    if (!a)
        failures = cli_fail(1, "discover", "out of memory for scratch");
    vit_work_free(w);
    arena_free(a);
    model_free(m);
    free(images);
    return failures ? 1 : 0;
}
