/* cmd_calibrate.c - `lostd calibrate`: sweeps the LOST settings (Gram bias,
 * feature q/k/v, L2 normalisation, last few blocks) on a dataset subset,
 * prints CorLoc for every setting as a table and writes the best one as a
 * settings file that discover / eval / serve read with --lost-config.
 * Wiring only: dataset (lost/) yields items, the backbone (core/vit) runs
 * once per image and taps every swept block; calibrate_layer_hits (lost/)
 * runs LOST for every bias / feature / l2norm of a block on its q, k, v.
 *
 * Resumable: every image's hit bits go to a cache file (JSON lines, a
 * header line that pins the grid, model and dataset), rewritten through a
 * temporary file + rename every few images and at the end, so an
 * interrupted run never leaves a torn file and a rerun skips the images
 * already there. Deterministic: fixed subset, fixed enumeration order,
 * ties broken by that order (calibrate.h). */
#include "arena.h"
#include "clock.h"
#include "calibrate.h"
#include "cli.h"
#include "corloc.h"
#include "dataset.h"
#include "err.h"
#include "file.h"
#include "image.h"
#include "lost.h"
#include "lost_opts.h"
#include "model.h"
#include "pipeline.h"
#include "vit.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CMD "calibrate"
#define SAVE_EVERY 16   /* images between cache rewrites */

static const char usage[] =
    "usage: lostd calibrate --dataset voc07|voc12|coco20k --root DIR --model FILE\n"
    "                       [--subset N] [--out best.json] [--cache FILE] [--fresh]\n"
    "                       [--biases B,B,...] [--layers L,L,...] [--features k,q,v]\n"
    "                       [--l2 both|on|off] [--set NAME] [--no-hard]\n"
    "                       [--k-patches K] [--max-side N] [--heads N] [--act A]\n"
    "                       [--threads N] [--method tokencut [--taus T,T,...]]\n"
    "\n"
    "Runs the backbone on each image of the subset (one forward per tapped block)\n"
    "and LOST for every setting of the grid on those features; prints one table\n"
    "row per setting (CorLoc, hits) and writes the best to --out (default\n"
    "lost_config.json), which discover, eval and serve accept as --lost-config.\n"
    "\n"
    "  --subset N      N images spread evenly over the dataset (items\n"
    "                  floor(i * size / N), i = 0..N-1); default all\n"
    "  --biases LIST   Gram biases (default 0,-0.1,-0.2,-0.3,-0.5,-0.75,-1: the\n"
    "                  documented recipe is b in [-1, 0] with L2-normalised features;\n"
    "                  raw features need biases on the scale of their Gram entries)\n"
    "  --layers LIST   blocks, negative from the end (default -1,-2,-3,-4)\n"
    "  --features LIST default: the family's feature first, then the others\n"
    "  --l2 both|on|off  L2 normalisation values to try (default both: off, on)\n"
    "  --threads N     threads of each forward (default: the online CPUs)\n"
    "  --method tokencut  sweep TokenCut instead: --taus LIST (default\n"
    "                  0.1,0.15,0.2,0.25,0.3) takes the place of the biases; l2norm\n"
    "                  does not apply (TokenCut always normalises)\n"
    "  --cache FILE    per-image results (default <out>.cache.jsonl); a rerun with\n"
    "                  the same grid resumes from it, --fresh ignores it\n"
    "Ties: most hits wins; among equal hits the first in the order layer (as\n"
    "listed), feature (as listed), l2norm (as listed), bias (as listed).\n"
    "Exit status 0, 1 on a fatal error, 2 on a usage error.\n";

struct opts {
    const char *dataset, *root, *model, *out, *cache, *set;
    long subset;
    int fresh, no_hard, l2_mode; /* l2_mode: 0 both, 1 on, 2 off */
    int have_biases, have_layers, have_feats;
    struct calibrate_grid g;
    struct pipeline_opts po;    /* k_patches, max_side, max_pixels */
    struct model_opts mo;
    long threads;               /* of each forward */
    int n_taus;                 /* --taus (TokenCut) */
    float taus[CALIBRATE_MAX_BIASES];
};

/* ---- lists ------------------------------------------------------------------ */

static int parse_list_float(const char *s, float *out, int max, int *n)
{
    char buf[1024];
    if (strlen(s) >= sizeof buf)
        return -1;
    strcpy(buf, s);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        errno = 0;
        double v = strtod(t, &end);
        if (end == t || *end || errno || !isfinite(v) || *n >= max)
            return -1;
        out[(*n)++] = (float)v;
    }
    return *n ? 0 : -1;
}

static int parse_list_int(const char *s, int *out, int max, int *n)
{
    float v[CALIBRATE_MAX_BIASES];
    int k;
    if (parse_list_float(s, v, max < CALIBRATE_MAX_BIASES ? max : CALIBRATE_MAX_BIASES, &k))
        return -1;
    for (int i = 0; i < k; i++) {
        if (v[i] != rintf(v[i]) || fabsf(v[i]) > 1000)
            return -1;
        out[i] = (int)v[i];
    }
    *n = k;
    return 0;
}

static int parse_feats(const char *s, int *out, int *n)
{
    char buf[64];
    if (strlen(s) >= sizeof buf)
        return -1;
    strcpy(buf, s);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int f = model_feature_parse(t);
        if (f < 0 || *n >= 3)
            return -1;
        out[(*n)++] = f;
    }
    return *n ? 0 : -1;
}

/* ---- the cache ------------------------------------------------------------- */

struct entry {
    char id[DATASET_ID_MAX];
    int status;             /* 0 ok, 1 skipped, 2 excluded */
    char *bits;             /* status 0: n_settings '0'/'1' chars, malloc'd */
};

struct cache {
    struct entry *e;
    long n, cap;
};

static json_t *grid_json(const struct opts *o, const struct model_config *c)
{
    const struct calibrate_grid *g = &o->g;
    json_t *lay = json_array(), *fe = json_array(), *l2 = json_array(), *bi = json_array();
    for (int i = 0; i < g->n_layer; i++)
        json_array_append_new(lay, json_integer(g->layer[i]));
    for (int i = 0; i < g->n_feat; i++)
        json_array_append_new(fe, json_string(model_feature_name(g->feat[i])));
    for (int i = 0; i < g->n_l2; i++)
        json_array_append_new(l2, json_boolean(g->l2[i]));
    for (int i = 0; i < g->n_bias; i++)
        json_array_append_new(bi, json_real(g->bias[i]));
    json_t *h = json_pack("{s:i, s:s, s:i, s:i, s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:i, s:i}",
                          "calibrate_cache", 1, "arch", c->arch, "dim", c->dim, "depth",
                          c->depth, "dataset", o->dataset, "set", o->set ? o->set : "trainval",
                          "no_hard", o->no_hard, "layers", lay, "features", fe, "l2norm", l2,
                          "biases", bi, "k_patches", g->k_patches, "max_side", o->po.max_side);
    if (h && o->po.exif == IMAGE_EXIF_APPLY) /* other pixels: never the default's hits */
        json_object_set_new(h, "exif", json_string("apply"));
    if (h && g->tokencut) /* a TokenCut sweep never reuses a LOST sweep's hits */
        json_object_set_new(h, "tokencut", json_pack("{s:f, s:b}", "eps", (double)g->tc_eps,
                                                     "binary_graph", g->tc_binary));
    return h;
}

static struct entry *cache_find(struct cache *c, const char *id)
{
    for (long i = 0; i < c->n; i++)
        if (!strcmp(c->e[i].id, id))
            return &c->e[i];
    return NULL;
}

static struct entry *cache_add(struct cache *c, const char *id)
{
    if (c->n == c->cap) {
        long ncap = c->cap ? c->cap * 2 : 256;
        struct entry *ne = realloc(c->e, (size_t)ncap * sizeof *ne);
        if (!ne)
            return NULL;
        c->e = ne;
        c->cap = ncap;
    }
    struct entry *x = &c->e[c->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->id, sizeof x->id, "%s", id);
    return x;
}

static void cache_free(struct cache *c)
{
    for (long i = 0; i < c->n; i++)
        free(c->e[i].bits);
    free(c->e);
    memset(c, 0, sizeof *c);
}

/* Reads path into c when its header equals hdr. A missing file is an
 * empty cache. ERR_INPUT when it belongs to another grid / model. */
static int cache_read(const char *path, json_t *hdr, int n_set, struct cache *c, struct err *e)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = 0;
    while (!rc && getline(&line, &cap, f) > 0) {
        lineno++;
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j) {
            rc = err_set(e, ERR_INPUT, "%s:%ld: not JSON (%s)", path, lineno, je.text);
            break;
        }
        if (lineno == 1) {
            if (!json_equal(j, hdr))
                rc = err_set(e, ERR_INPUT, "%s was made for another model, dataset or grid; "
                             "pass --fresh or another --cache", path);
            json_decref(j);
            continue;
        }
        json_t *id = json_object_get(j, "id"), *st = json_object_get(j, "status");
        json_t *bits = json_object_get(j, "hits");
        int status = !json_is_string(st) ? -1
                     : !strcmp(json_string_value(st), "ok") ? 0
                     : !strcmp(json_string_value(st), "skipped") ? 1
                     : !strcmp(json_string_value(st), "excluded") ? 2 : -1;
        if (!json_is_string(id) || strlen(json_string_value(id)) >= DATASET_ID_MAX ||
            status < 0 || (status == 0 && (!json_is_string(bits) ||
                                           (int)strlen(json_string_value(bits)) != n_set))) {
            rc = err_set(e, ERR_INPUT, "%s:%ld: not a calibrate result line", path, lineno);
        } else if (!cache_find(c, json_string_value(id))) {
            struct entry *x = cache_add(c, json_string_value(id));
            if (!x || (status == 0 && !(x->bits = strdup(json_string_value(bits)))))
                rc = err_set(e, ERR_NOMEM, "out of memory");
            else
                x->status = status;
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    return rc;
}

/* j (consumed) as one compact line of f. */
static int write_line(struct file_out *f, json_t *j, struct err *e)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!text) {
        file_out_abort(f);
        return err_set(e, ERR_NOMEM, "%s: out of memory", f->path);
    }
    int rc = file_out_printf(f, e, "%s\n", text);
    free(text);
    return rc;
}

static int cache_write(const char *path, json_t *hdr, const struct cache *c, struct err *e)
{
    static const char *const st[] = {"ok", "skipped", "excluded"};
    struct file_out f;
    int rc = file_out_open(&f, path, e);
    if (!rc)
        rc = write_line(&f, json_incref(hdr), e);
    for (long i = 0; i < c->n && !rc; i++) {
        json_t *j = json_pack("{s:s, s:s}", "id", c->e[i].id, "status", st[c->e[i].status]);
        if (j && c->e[i].status == 0)
            json_object_set_new(j, "hits", json_string(c->e[i].bits));
        rc = write_line(&f, j, e);
    }
    if (!rc)
        rc = file_out_commit(&f, e);
    return rc;
}

/* ---- one image ---------------------------------------------------------------- */

struct runner {
    struct model *m;
    struct vit_work *w;
    struct arena *a;
    const struct opts *o;
    unsigned char *bits;    /* [n_settings] */
};

/* Every setting's hit for one item. Returns 0 (r->bits filled), or an error
 * that skips the image. */
static int run_item(struct runner *r, const struct dataset_item *it, struct err *e)
{
    const struct model_config *c = model_config(r->m);
    const struct calibrate_grid *g = &r->o->g;
    arena_reset(r->a);
    struct image img, in;
    int rc = image_load_file(it->path, r->o->po.max_pixels, r->o->po.exif, r->a, &img,
                             e);
    if (rc)
        return rc;
    in = img;
    int side = img.w > img.h ? img.w : img.h;
    if (r->o->po.max_side > 0 && side > r->o->po.max_side) {
        if ((rc = image_downscale(&img, r->o->po.max_side, r->a, &in, e)))
            return rc;
        side = r->o->po.max_side;
    }
    if ((rc = pipeline_workspace_ensure(r->m, &r->w, side, side, 0, (int)r->o->threads, e)))
        return rc;
    struct image_norm norm;
    memcpy(norm.mean, c->mean, sizeof norm.mean);
    memcpy(norm.std, c->std, sizeof norm.std);
    float *x;
    int H, W;
    if ((rc = image_to_tensor(&in, c->patch, &norm, r->a, &x, &H, &W, e)))
        return rc;
    float (*gt)[4] = arena_alloc(r->a, sizeof *gt * (size_t)(it->n_obj ? it->n_obj : 1));
    if (!gt)
        return err_set(e, ERR_TOOBIG, "no scratch for the ground truth");
    for (int k = 0; k < it->n_obj; k++)
        memcpy(gt[k], it->obj[k].box, sizeof gt[k]);
    int per = calibrate_per_layer(g);
    /* One forward taps every swept block's q/k/v. */
    int gh = H / c->patch, gw = W / c->patch, np = gh * gw;
    float *taps = arena_alloc(r->a, sizeof(float) * 3 * (size_t)np * c->dim * g->n_layer);
    if (!taps)
        return err_set(e, ERR_TOOBIG, "no scratch for %d tapped blocks", g->n_layer);
    struct vit_opts vo = {.layer = g->layer[0], .want = VIT_WANT_QKV, .n_taps = g->n_layer,
                          .tap_layers = g->layer, .taps = taps};
    struct vit_out v;
    if ((rc = vit_forward(r->m, r->w, x, H, W, &vo, &v, e)))
        return rc;
    for (int li = 0; li < g->n_layer; li++) {
        const float *t = taps + (size_t)li * 3 * np * c->dim;
        const float *qkv[3];
        qkv[MODEL_FEATURE_Q] = t;
        qkv[MODEL_FEATURE_K] = t + (size_t)np * c->dim;
        qkv[MODEL_FEATURE_V] = t + 2 * (size_t)np * c->dim;
        struct lost_grid lg = {.rows = v.grid_h, .cols = v.grid_w, .patch_y = c->patch,
                               .patch_x = c->patch, .img_h = in.h, .img_w = in.w};
        if ((rc = calibrate_layer_hits(g, qkv, v.dim, &lg, (float)img.w / in.w,
                                       (float)img.h / in.h, img.w, img.h,
                                       (const float (*)[4])gt, it->n_obj, r->a,
                                       r->bits + (size_t)li * per, e)))
            return rc;
    }
    return 0;
}

/* ---- the command ---------------------------------------------------------------- */

static int parse(int argc, char **argv, struct opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 1;
        }
        if (!strcmp(a, "--fresh")) {
            o->fresh = 1;
            continue;
        }
        if (!strcmp(a, "--no-hard")) {
            o->no_hard = 1;
            continue;
        }
        if (!strcmp(a, "--features") && v) {
            /* A list here, not the single feature of the shared options. */
            if (parse_feats(argv[++i], o->g.feat, &o->g.n_feat))
                return cli_fail(2, CMD, "--features expects a list of k, q, v, got '%s'", v);
            o->have_feats = 1;
            continue;
        }
        if (!strcmp(a, "--tau"))
            return cli_fail(2, CMD, "--tau is swept here: use --taus (with --method tokencut)");
        if (!strcmp(a, "--layer") || !strcmp(a, "--gram-bias") || !strcmp(a, "--l2norm") ||
            !strcmp(a, "--lost-config"))
            return cli_fail(2, CMD, "%s is swept here: use --layers, --biases, --l2", a);
        int k = lost_opts_parse(CMD, argc, argv, &i, &o->po, &o->mo);
        if (k < 0)
            return 2;
        if (k)
            continue;
        if (!v)
            return cli_fail(2, CMD, "unknown option or missing value: '%s'", a);
        i++;
        long n;
        const struct cli_str_opt text[] = {
            {"--dataset", &o->dataset}, {"--root", &o->root}, {"--model", &o->model},
            {"--out", &o->out}, {"--cache", &o->cache}, {"--set", &o->set}, {NULL, NULL}};
        if (cli_take_str(a, v, text))
            continue;
        if (!strcmp(a, "--threads")) {
            if (cli_parse_int(CMD, a, v, 1, 256, &o->threads))
                return 2;
        } else if (!strcmp(a, "--subset")) {
            if (cli_parse_int(CMD, a, v, 0, 1L << 30, &n))
                return 2;
            o->subset = n;
        } else if (!strcmp(a, "--biases")) {
            if (parse_list_float(v, o->g.bias, CALIBRATE_MAX_BIASES, &o->g.n_bias))
                return cli_fail(2, CMD, "--biases expects up to %d numbers, comma separated, "
                                "got '%s'", CALIBRATE_MAX_BIASES, v);
            o->have_biases = 1;
        } else if (!strcmp(a, "--taus")) {
            if (parse_list_float(v, o->taus, CALIBRATE_MAX_BIASES, &o->n_taus))
                return cli_fail(2, CMD, "--taus expects up to %d numbers, comma separated, "
                                "got '%s'", CALIBRATE_MAX_BIASES, v);
        } else if (!strcmp(a, "--layers")) {
            if (parse_list_int(v, o->g.layer, CALIBRATE_MAX_LAYERS, &o->g.n_layer))
                return cli_fail(2, CMD, "--layers expects up to %d integers, comma separated, "
                                "got '%s'", CALIBRATE_MAX_LAYERS, v);
            o->have_layers = 1;
        } else if (!strcmp(a, "--l2")) {
            if (!strcmp(v, "both"))
                o->l2_mode = 0;
            else if (!strcmp(v, "on"))
                o->l2_mode = 1;
            else if (!strcmp(v, "off"))
                o->l2_mode = 2;
            else
                return cli_fail(2, CMD, "--l2 expects both, on or off, got '%s'", v);
        } else
            return cli_fail(2, CMD, "unknown option '%s' (see --help)", a);
    }
    if (!o->dataset || !o->root || !o->model)
        return cli_fail(2, CMD, "needs --dataset, --root and --model (see --help)");
    int tc = o->po.method == PIPELINE_TOKENCUT;
    if (tc && (o->have_biases || o->l2_mode))
        return cli_fail(2, CMD, "--method tokencut sweeps --taus (it has no Gram bias and "
                        "always L2-normalises): drop --biases / --l2");
    if (!tc && o->n_taus)
        return cli_fail(2, CMD, "--taus goes with --method tokencut");
    return 0;
}

static void print_table(const struct calibrate_grid *g, const long *hits, long images,
                        int best)
{
    printf("%-6s %-7s %-6s %9s %8s %7s\n", "layer", "feature", "l2norm",
           g->tokencut ? "tau" : "bias", "corloc", "hits");
    for (int i = 0; i < calibrate_n_settings(g); i++) {
        struct calibrate_setting s;
        calibrate_setting_at(g, i, &s);
        printf("%-6d %-7s %-6s %9.4g %8.2f %7ld%s\n", s.layer, model_feature_name(s.feature),
               s.l2norm ? "on" : "off", (double)s.gram_bias,
               images ? 100.0 * hits[i] / images : 0.0, hits[i], i == best ? "  *best" : "");
    }
    fflush(stdout);
}

int cli_calibrate(int argc, char **argv)
{
    struct opts o;
    memset(&o, 0, sizeof o);
    o.out = "lost_config.json";
    pipeline_opts_default(&o.po);
    o.po.max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    o.po.exif = IMAGE_EXIF_IGNORE; /* boxes are in the stored pixels' frame */
    o.mo.act = -1;
    int prc = parse(argc, argv, &o);
    if (prc)
        return prc == 1 ? 0 : prc;
    struct err e = {0};
    enum dataset_kind kind;
    if (dataset_kind_parse(o.dataset, &kind, &e))
        return cli_fail(2, CMD, "%s", e.msg);
    struct runner r = {.o = &o};
    if (model_load(o.model, &o.mo, &r.m, &e))
        return cli_fail(1, CMD, "%s", e.msg);
    const struct model_config *mc = model_config(r.m);

    /* The grid: defaults, then what was given. */
    struct calibrate_grid def;
    calibrate_grid_default(&def, mc->depth, (int)mc->lost_feature);
    if (!o.have_layers) {
        o.g.n_layer = def.n_layer;
        memcpy(o.g.layer, def.layer, sizeof def.layer);
    }
    if (!o.have_feats) {
        o.g.n_feat = def.n_feat;
        memcpy(o.g.feat, def.feat, sizeof def.feat);
    }
    if (!o.have_biases) {
        o.g.n_bias = def.n_bias;
        memcpy(o.g.bias, def.bias, sizeof def.bias);
    }
    o.g.n_l2 = o.l2_mode ? 1 : 2;
    o.g.l2[0] = o.l2_mode == 1 ? 1 : 0;
    o.g.l2[1] = 1;
    if (o.po.method == PIPELINE_TOKENCUT) {
        /* The fourth axis is tau; TokenCut normalises the features itself. */
        static const float taus[] = CALIBRATE_TAUS;
        o.g.tokencut = 1;
        o.g.n_bias = o.n_taus ? o.n_taus : (int)(sizeof taus / sizeof taus[0]);
        memcpy(o.g.bias, o.n_taus ? o.taus : taus, sizeof(float) * (size_t)o.g.n_bias);
        o.g.n_l2 = 1;
        o.g.l2[0] = 1;
        o.g.tc_eps = o.po.tc.eps;
        o.g.tc_binary = o.po.tc.binary;
    }
    o.g.k_patches = o.po.lost.k_patches;
    int status = 0;
    for (int i = 0; i < o.g.n_layer; i++)
        if (o.g.layer[i] >= mc->depth || o.g.layer[i] < -mc->depth)
            status = cli_fail(2, CMD, "layer %d out of range: the model has %d blocks",
                              o.g.layer[i], mc->depth);
    if (!status && calibrate_grid_check(&o.g, &e))
        status = cli_fail(2, CMD, "%s", e.msg);
    if (status) {
        model_free(r.m);
        return status;
    }
    char cache_path[4096];
    snprintf(cache_path, sizeof cache_path, "%s", o.cache ? o.cache : "");
    if (!o.cache && snprintf(cache_path, sizeof cache_path, "%s.cache.jsonl", o.out) >=
                        (int)sizeof cache_path) {
        model_free(r.m);
        return cli_fail(2, CMD, "--out path too long");
    }

    int n_set = calibrate_n_settings(&o.g);
    struct dataset *d = NULL;
    struct cache cache = {0};
    json_t *hdr = grid_json(&o, mc);
    long *hits = calloc((size_t)n_set, sizeof *hits);
    r.bits = malloc((size_t)n_set);
    r.a = arena_init((size_t)o.po.max_pixels * 20 + (2u << 30));
    if (!hits || !r.bits || !r.a || !hdr)
        status = cli_fail(1, CMD, "out of memory");
    if (!status && dataset_load(kind, o.root, o.set, o.no_hard, &d, &e))
        status = cli_fail(1, CMD, "%s", e.msg);
    if (!status && !o.fresh && cache_read(cache_path, hdr, n_set, &cache, &e))
        status = cli_fail(1, CMD, "%s", e.msg);
    long size = d ? dataset_size(d) : 0;
    long n_items = o.subset > 0 && o.subset < size ? o.subset : size;
    long images = 0, skipped = 0, excluded = 0, reused = 0, since_save = 0;
    double t0 = clock_now_ms();
    for (long t = 0; !status && t < n_items; t++) {
        long idx = (long)((double)t * size / n_items);
        struct dataset_item it;
        if (dataset_get(d, idx, &it, &e)) {
            status = cli_fail(1, CMD, "%s", e.msg);
            break;
        }
        struct entry *x = cache_find(&cache, it.id);
        if (x) {
            reused++;
        } else if (!(x = cache_add(&cache, it.id))) {
            status = cli_fail(1, CMD, "out of memory");
        } else if (it.error.code) {
            x->status = 1;
            fprintf(stderr, "lostd %s: %s: skipped: %s\n", CMD, it.id, it.error.msg);
        } else if (it.n_obj == 0) {
            x->status = 2;
        } else {
            int rc = run_item(&r, &it, &e);
            if (rc) {
                x->status = 1;
                fprintf(stderr, "lostd %s: %s: skipped: %s\n", CMD, it.id, e.msg);
            } else if (!(x->bits = malloc((size_t)n_set + 1))) {
                status = cli_fail(1, CMD, "out of memory");
            } else {
                for (int s = 0; s < n_set; s++)
                    x->bits[s] = r.bits[s] ? '1' : '0';
                x->bits[n_set] = 0;
            }
            since_save++;
        }
        dataset_item_free(&it);
        if (status)
            break;
        if (x->status == 0) {
            images++;
            for (int s = 0; s < n_set; s++)
                hits[s] += x->bits[s] == '1';
        } else if (x->status == 1) {
            skipped++;
        } else {
            excluded++;
        }
        if (since_save >= SAVE_EVERY) {
            since_save = 0;
            if (cache_write(cache_path, hdr, &cache, &e))
                status = cli_fail(1, CMD, "%s", e.msg);
        }
        if (cli_isatty_stderr())
            fprintf(stderr, "\rlostd %s: %ld/%ld images (%.1f s)", CMD, t + 1, n_items,
                    (clock_now_ms() - t0) / 1000);
    }
    if (cli_isatty_stderr() && n_items)
        fputc('\n', stderr);
    if (!status && since_save && cache_write(cache_path, hdr, &cache, &e))
        status = cli_fail(1, CMD, "%s", e.msg);
    if (!status && images == 0)
        status = cli_fail(1, CMD, "no image could be evaluated (%ld skipped, %ld excluded)",
                          skipped, excluded);
    if (!status) {
        int best = calibrate_best(&o.g, hits);
        print_table(&o.g, hits, images, best);
        struct calibrate_setting s;
        calibrate_setting_at(&o.g, best, &s);
        struct pipeline_opts bo = o.po;
        if (o.g.tokencut) {
            bo.tc.tau = s.gram_bias; /* the swept axis */
        } else {
            bo.lost.gram_bias = s.gram_bias;
            bo.lost.l2norm = s.l2norm;
        }
        bo.feature = s.feature;
        bo.layer = s.layer;
        json_t *j = lost_opts_config_json(&bo);
        json_object_set_new(j, "corloc", json_real(100.0 * hits[best] / images));
        json_object_set_new(j, "hits", json_integer(hits[best]));
        json_object_set_new(j, "images", json_integer(images));
        json_object_set_new(j, "skipped", json_integer(skipped));
        json_object_set_new(j, "excluded", json_integer(excluded));
        json_object_set_new(j, "dataset", json_string(dataset_kind_name(kind)));
        json_object_set_new(j, "subset", json_integer(n_items));
        json_object_set_new(j, "model", json_string(mc->arch));
        json_object_set_new(j, "settings_tried", json_integer(n_set));
        if (lost_opts_write_json(o.out, j, &e))
            status = cli_fail(1, CMD, "%s", e.msg);
        json_decref(j);
        fprintf(stderr, "lostd %s: best: layer %d, %s, l2norm %s, %s %g: CorLoc %.2f "
                        "(%ld/%ld, %ld from the cache) -> %s\n", CMD, s.layer,
                model_feature_name(s.feature), s.l2norm ? "on" : "off",
                o.g.tokencut ? "tau" : "bias", (double)s.gram_bias,
                100.0 * hits[best] / images, hits[best], images, reused, o.out);
    }
    json_decref(hdr);
    cache_free(&cache);
    dataset_free(d);
    free(hits);
    free(r.bits);
    vit_work_free(r.w);
    arena_free(r.a);
    model_free(r.m);
    return status;
}
