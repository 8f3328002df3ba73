/* cmd_lost.c - `lostd lost`: LOST on a feature array from disk (.npy), one
 * JSON object on stdout. Wiring only: tensor_load_npy (core) ->
 * lost_find_box (lost) -> jansson. Lets anyone check the LOST stage against
 * the reference Python on features the two share, without a backbone. */
#include "cli.h"
#include "params.h"

#include "arena.h"
#include "err.h"
#include "lost.h"
#include "tensor.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "lost"
/* Gram matrices above this are refused (N = 46340 patches at 8 GiB). */
#define MAX_GRAM_BYTES ((size_t)8 << 30)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lostd lost --features F.npy --grid RxC --patch P --image-size HxW\n"
            "                  [--k-patches K] [--gram-bias B] [--l2norm] [--mask]\n"
            "                  [--method lost|tokencut] [--tau T] [--eps E] [--no-binary-graph]\n\n"
            "  --features F.npy  float32 [R*C, D] (or [1, R*C, D]): patch tokens only,\n"
            "                    CLS and registers dropped, row-major patches\n"
            "  --grid RxC        patch rows x columns\n"
            "  --patch P         patch size in pixels (boxes are scaled by it)\n"
            "  --image-size HxW  original image height x width (box ends are clipped to it)\n"
            "  --k-patches K     candidates for the seed expansion (default 100)\n"
            "  --gram-bias B     added to every Gram entry (default 0)\n"
            "  --l2norm          L2-normalise each patch feature first\n"
            "  --mask            also print the component mask and the degree map (R rows);\n"
            "                    with TokenCut the mask and the eigenvector map\n"
            "  --method M        lost (default) or tokencut (Normalized Cut of the patch graph)\n"
            "  --tau T, --eps E, --no-binary-graph   TokenCut's graph (0.2, 1e-5, binary)\n\n"
            "Prints one JSON object: box [x1,y1,x2,y2] (pixels, exclusive end), box_feat\n"
            "[r0,c0,r1,c1], seed, seed_rc, seed_degree, n_similar, seed_background, seed_box;\n"
            "with TokenCut box, box_feat, seed, seed_rc, n_cc, eigenvalue, solver.\n"
            "Exit status: 0 ok, 1 failure (file, sizes), 2 usage.\n");
}

static json_t *int_array(const int *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *rows_u8(const unsigned char *v, int rows, int cols)
{
    json_t *a = json_array();
    for (int r = 0; r < rows; r++) {
        json_t *row = json_array();
        for (int c = 0; c < cols; c++)
            json_array_append_new(row, json_integer(v[(size_t)r * cols + c]));
        json_array_append_new(a, row);
    }
    return a;
}

static json_t *rows_int(const int *v, int rows, int cols)
{
    json_t *a = json_array();
    for (int r = 0; r < rows; r++)
        json_array_append_new(a, int_array(v + (size_t)r * cols, cols));
    return a;
}

static json_t *rows_float(const float *v, int rows, int cols)
{
    json_t *a = json_array();
    for (int r = 0; r < rows; r++) {
        json_t *row = json_array();
        for (int c = 0; c < cols; c++)
            json_array_append_new(row, json_real(v[(size_t)r * cols + c]));
        json_array_append_new(a, row);
    }
    return a;
}

static int print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!s)
        return cli_fail(1, CMD, "out of memory");
    puts(s);
    free(s);
    return fflush(stdout) ? 1 : 0;
}

/* --method tokencut: box, box_feat, seed, seed_rc, n_cc (and with --mask
 * the component and the eigenvector, one row per grid row). */
static int print_tokencut(const struct tensor *t, int dim, const struct lost_grid *g,
                          const struct pipeline_opts *po, int want_mask, struct arena *ar,
                          struct err *e)
{
    struct tokencut_result r;
    if (tokencut_find_box(t->data, dim, g, &po->tc, ar, &r, e))
        return cli_fail(1, CMD, "%s", e->msg);
    json_t *o = json_object();
    json_object_set_new(o, "box", int_array(r.box, 4));
    json_object_set_new(o, "box_feat", int_array(r.box_feat, 4));
    json_object_set_new(o, "seed", json_integer(r.seed));
    int rc2[2] = {r.seed / g->cols, r.seed % g->cols};
    json_object_set_new(o, "seed_rc", int_array(rc2, 2));
    json_object_set_new(o, "n_cc", json_integer(r.n_cc));
    json_object_set_new(o, "eigenvalue", json_real(r.lambda));
    json_object_set_new(o, "solver", json_string(r.solver == TOKENCUT_DENSE ? "dense"
                                                                            : "lanczos"));
    json_object_set_new(o, "lanczos_steps", json_integer(r.iterations));
    if (r.fallback)
        json_object_set_new(o, "fallback", json_string(r.fallback));
    int gr[2] = {g->rows, g->cols}, im[2] = {g->img_h, g->img_w};
    json_object_set_new(o, "grid", int_array(gr, 2));
    json_object_set_new(o, "image_size", int_array(im, 2));
    json_object_set_new(o, "patch", json_integer(g->patch_y));
    json_object_set_new(o, "method", json_string("tokencut"));
    json_object_set_new(o, "tau", json_real(po->tc.tau));
    json_object_set_new(o, "eps", json_real(po->tc.eps));
    json_object_set_new(o, "binary_graph", json_boolean(po->tc.binary));
    if (want_mask) {
        json_object_set_new(o, "mask", rows_u8(r.mask, g->rows, g->cols));
        json_object_set_new(o, "eigenvector", rows_float(r.eigvec, g->rows, g->cols));
    }
    return print_json(o);
}

int cli_lost(int argc, char **argv)
{
    const char *feats = NULL;
    int rows = 0, cols = 0, img_h = 0, img_w = 0, want_mask = 0;
    long patch = 0;
    struct pipeline_opts po;
    pipeline_opts_default(&po);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        /* The feature-map rows of the parameter table (--features is the
         * file here, not the backbone's feature). */
        const char *pv;
        const struct param_def *d = strcmp(a, "--features") ? params_find_flag(a, &pv) : NULL;
        if (d && (d->where & PARAM_MAP)) {
            if (!pv && i + 1 >= argc)
                return cli_fail(2, CMD, "%s needs a value", a);
            struct err pe = {0};
            if (params_set(d, pv ? pv : argv[++i], &po, NULL, &pe))
                return cli_fail(2, CMD, "%s: %s", a, pe.msg);
            continue;
        }
        if (!strcmp(a, "--mask")) {
            want_mask = 1;
            continue;
        }
        if (strncmp(a, "--", 2) || i + 1 >= argc) {
            usage(stderr);
            return cli_fail(2, CMD, i + 1 >= argc && !strncmp(a, "--", 2)
                                        ? "%s needs a value" : "unexpected argument '%s'", a);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--features")) {
            feats = v;
        } else if (!strcmp(a, "--grid")) {
            if (cli_parse_pair(CMD, a, v, &rows, &cols))
                return 2;
        } else if (!strcmp(a, "--patch")) {
            if (cli_parse_int(CMD, a, v, 1, 4096, &patch))
                return 2;
        } else if (!strcmp(a, "--image-size")) {
            if (cli_parse_pair(CMD, a, v, &img_h, &img_w))
                return 2;
        } else {
            usage(stderr);
            return cli_fail(2, CMD, "unknown option '%s'", a);
        }
    }
    if (!feats || !rows || !patch || !img_h) {
        usage(stderr);
        return cli_fail(2, CMD, "--features, --grid, --patch and --image-size are required");
    }

    struct err e;
    err_clear(&e);
    struct tensor t;
    if (tensor_load_npy(feats, 0, &t, &e))
        return cli_fail(1, CMD, "%s", e.msg);
    long n = (long)rows * cols, dim = t.ndim >= 1 ? t.shape[t.ndim - 1] : 0;
    int shape_ok = (t.ndim == 2 && t.shape[0] == n) ||
                   (t.ndim == 3 && t.shape[0] == 1 && t.shape[1] == n);
    if (!shape_ok || dim < 1 || dim > (1 << 20)) {
        char shp[96] = "";
        for (int k = 0; k < t.ndim; k++)
            snprintf(shp + strlen(shp), sizeof shp - strlen(shp), "%s%ld", k ? ", " : "",
                     t.shape[k]);
        tensor_free(&t);
        return cli_fail(1, CMD, "%s has shape [%s], expected [%ld, D] for grid %dx%d "
                        "(drop the CLS and register tokens first)", feats, shp, n, rows, cols);
    }
    size_t gram = (size_t)n * (size_t)n * sizeof(float);
    if (gram > MAX_GRAM_BYTES) {
        tensor_free(&t);
        return cli_fail(1, CMD, "grid %dx%d needs a %zu MiB Gram matrix, over the %zu MiB limit",
                        rows, cols, gram >> 20, MAX_GRAM_BYTES >> 20);
    }
    /* TokenCut also keeps its graph in double and its Lanczos vectors. */
    struct arena *ar = arena_init(gram * 4 + (size_t)n * (size_t)dim * sizeof(float) +
                                  (size_t)n * 2200 + ((size_t)16 << 20));
    if (!ar) {
        tensor_free(&t);
        return cli_fail(1, CMD, "cannot reserve scratch memory");
    }
    struct lost_grid g = {.rows = rows, .cols = cols, .patch_y = (int)patch,
                          .patch_x = (int)patch, .img_h = img_h, .img_w = img_w};
    if (po.method == PIPELINE_TOKENCUT) {
        int rc = print_tokencut(&t, (int)dim, &g, &po, want_mask, ar, &e);
        tensor_free(&t);
        arena_free(ar);
        return rc;
    }
    struct lost_result r;
    int rc = lost_find_box(t.data, (int)dim, &g, &po.lost, ar, &r, &e);
    tensor_free(&t);
    if (rc) {
        arena_free(ar);
        return cli_fail(1, CMD, "%s", e.msg);
    }
    json_t *o = json_object();
    json_object_set_new(o, "box", int_array(r.box, 4));
    json_object_set_new(o, "box_feat", int_array(r.box_feat, 4));
    json_object_set_new(o, "seed", json_integer(r.seed));
    int rc2[2] = {r.seed / cols, r.seed % cols};
    json_object_set_new(o, "seed_rc", int_array(rc2, 2));
    json_object_set_new(o, "seed_degree", json_integer(r.seed_degree));
    json_object_set_new(o, "n_similar", json_integer(r.n_similar));
    json_object_set_new(o, "seed_background", json_boolean(r.seed_background));
    json_object_set_new(o, "seed_box", int_array(r.seed_box, 4));
    int gr[2] = {rows, cols}, im[2] = {img_h, img_w};
    json_object_set_new(o, "grid", int_array(gr, 2));
    json_object_set_new(o, "image_size", int_array(im, 2));
    json_object_set_new(o, "patch", json_integer(patch));
    json_object_set_new(o, "k_patches", json_integer(po.lost.k_patches));
    json_object_set_new(o, "gram_bias", json_real(po.lost.gram_bias));
    json_object_set_new(o, "l2norm", json_boolean(po.lost.l2norm));
    json_object_set_new(o, "method", json_string("lost"));
    if (want_mask) {
        json_object_set_new(o, "mask", rows_u8(r.mask, rows, cols));
        json_object_set_new(o, "degree", rows_int(r.degree, rows, cols));
    }
    arena_free(ar);
    return print_json(o);
}
