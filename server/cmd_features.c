/* cmd_features.c - `lostd features`: one image (or a prepared tensor)
 * through the backbone, written as NumPy files for inspection and for
 * parity checks against the reference implementations. */
#include "arena.h"
#include "cli.h"
#include "err.h"
#include "image.h"
#include "lost_opts.h"
#include "model.h"
#include "tensor.h"
#include "vit.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "usage: lostd features --model FILE (--image IMG | --tensor X.npy) --out DIR\n"
    "                      [--layer L] [--heads N] [--act gelu|quickgelu] [--max-pixels N]\n"
    "                      [--threads T] [--exif apply|ignore]\n"
    "\n"
    "Runs the backbone once and writes float32 .npy files to DIR:\n"
    "  input.npy [3,H,W]   the preprocessed, zero-padded input\n"
    "  queries.npy, keys.npy, values.npy [Np,D]  q/k/v of block L (default -1, the last)\n"
    "  patch_tokens.npy [Np,D], cls_token.npy [D], register_tokens.npy [R,D]\n"
    "                      tokens after the final norm (registers only when R > 0)\n"
    "  meta.json           grid, sizes, model configuration\n"
    "--tensor takes a normalised float32 [3,H,W] whose sides are multiples of the patch.\n"
    "--exif: apply (default) or ignore a JPEG's EXIF orientation.\n";

static int save(const char *dir, const char *name, const float *p, int nd, long a, long b,
                long c, struct err *e)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    long shape[3] = {a, b, c};
    return tensor_save_npy(path, p, nd, shape, e);
}

int cli_features(int argc, char **argv)
{
    const char *model_path = NULL, *image = NULL, *tensor_path = NULL, *out = NULL;
    long layer = -1, heads = 0, max_pixels = IMAGE_DEFAULT_MAX_PIXELS, threads = 1;
    int act = -1, exif = IMAGE_EXIF_APPLY;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!v)
            return cli_fail(2, "features", "%s needs a value (see --help)", a);
        i++;
        if (!strcmp(a, "--model"))
            model_path = v;
        else if (!strcmp(a, "--image"))
            image = v;
        else if (!strcmp(a, "--tensor"))
            tensor_path = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--layer")) {
            if (cli_parse_int("features", a, v, -1000, 999, &layer))
                return 2;
        } else if (!strcmp(a, "--heads")) {
            if (cli_parse_int("features", a, v, 1, 4096, &heads))
                return 2;
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_int("features", a, v, 1, 64, &threads))
                return 2;
        } else if (!strcmp(a, "--act")) {
            act = !strcmp(v, "gelu") ? MODEL_ACT_GELU
                : !strcmp(v, "quickgelu") || !strcmp(v, "quick_gelu") ? MODEL_ACT_QUICKGELU : -2;
            if (act == -2)
                return cli_fail(2, "features", "--act expects gelu or quickgelu, got '%s'", v);
        } else if (!strcmp(a, "--exif")) {
            if (lost_opts_parse_exif("features", v, &exif))
                return 2;
        } else if (!strcmp(a, "--max-pixels")) {
            if (cli_parse_int("features", a, v, 1, 1L << 40, &max_pixels))
                return 2;
        } else
            return cli_fail(2, "features", "unknown option '%s' (see --help)", a);
    }
    if (!model_path || !out || !image == !tensor_path)
        return cli_fail(2, "features", "needs --model, --out and one of --image / --tensor "
                        "(see --help)");
    struct err e = {0};
    struct model *m = NULL;
    struct vit_work *w = NULL;
    struct arena *ar = NULL;
    struct tensor tin = {0};
    int status = 1;
    struct model_opts mo = {.n_head = (int)heads, .act = act};
    if (model_load(model_path, &mo, &m, &e)) {
        cli_fail(1, "features", "%s", e.msg);
        goto done;
    }
    const struct model_config *c = model_config(m);
    const float *x;
    int H, W, img_h = 0, img_w = 0;
    if (image) {
        ar = arena_init((size_t)max_pixels * 3 * 6 + (64u << 20));
        struct image img;
        float *t;
        struct image_norm norm;
        memcpy(norm.mean, c->mean, sizeof norm.mean);
        memcpy(norm.std, c->std, sizeof norm.std);
        if (!ar || image_load_file(image, max_pixels, exif, ar, &img, &e) ||
            image_to_tensor(&img, c->patch, &norm, ar, &t, &H, &W, &e)) {
            cli_fail(1, "features", "%s: %s", image, ar ? e.msg : "out of memory");
            goto done;
        }
        x = t;
        img_h = img.h;
        img_w = img.w;
    } else {
        if (tensor_load_npy(tensor_path, 0, &tin, &e)) {
            cli_fail(1, "features", "%s: %s", tensor_path, e.msg);
            goto done;
        }
        if (tin.ndim != 3 || tin.shape[0] != 3 || tin.shape[1] % c->patch ||
            tin.shape[2] % c->patch || tin.shape[1] < 1 || tin.shape[2] < 1) {
            cli_fail(1, "features", "%s: expected float32 [3, H, W] with H and W multiples "
                     "of %d", tensor_path, c->patch);
            goto done;
        }
        x = tin.data;
        H = img_h = (int)tin.shape[1];
        W = img_w = (int)tin.shape[2];
    }
    int N = (H / c->patch) * (W / c->patch);
    struct vit_opts vo = {.layer = (int)layer, .want = VIT_WANT_QKV | VIT_WANT_TOKENS};
    struct vit_out o;
    if (vit_work_init(m, N, &w, &e) || vit_work_set_threads(w, (int)threads, &e) ||
        vit_forward(m, w, x, H, W, &vo, &o, &e)) {
        cli_fail(1, "features", "%s", e.msg);
        goto done;
    }
    if (mkdir(out, 0777) && errno != EEXIST) {
        cli_fail(1, "features", "cannot create %s: %s", out, strerror(errno));
        goto done;
    }
    long D = c->dim, Np = o.n_patch;
    if (save(out, "input.npy", x, 3, 3, H, W, &e) ||
        save(out, "queries.npy", o.q, 2, Np, D, 0, &e) ||
        save(out, "keys.npy", o.k, 2, Np, D, 0, &e) ||
        save(out, "values.npy", o.v, 2, Np, D, 0, &e) ||
        save(out, "patch_tokens.npy", o.tokens + (1 + c->n_reg) * D, 2, Np, D, 0, &e) ||
        save(out, "cls_token.npy", o.tokens, 1, D, 0, 0, &e) ||
        (c->n_reg && save(out, "register_tokens.npy", o.tokens + D, 2, c->n_reg, D, 0, &e))) {
        cli_fail(1, "features", "%s", e.msg);
        goto done;
    }
    json_t *meta = json_pack("{s:[i,i], s:[i,i], s:[i,i], s:i, s:i, s:i, s:i, s:i, s:i, s:s, "
                             "s:s, s:s, s:s, s:i, s:s}",
                             "grid", o.grid_h, o.grid_w, "image_size", img_h, img_w,
                             "padded_size", H, W, "patch", c->patch, "dim", c->dim, "heads",
                             c->n_head, "registers", c->n_reg, "depth", c->depth,
                             "ffn_hidden", c->ffn_hidden, "ffn", model_ffn_name(c->ffn),
                             "naming", model_naming_name(c->naming), "family",
                             model_family_name(c->family), "arch", c->arch, "layer", o.layer,
                             "lost_feature", model_feature_name(c->lost_feature));
    char mp[4096];
    snprintf(mp, sizeof mp, "%s/meta.json", out);
    if (!meta || json_dump_file(meta, mp, JSON_INDENT(1) | JSON_PRESERVE_ORDER)) {
        json_decref(meta);
        cli_fail(1, "features", "cannot write %s", mp);
        goto done;
    }
    json_decref(meta);
    status = 0;
done:
    tensor_free(&tin);
    vit_work_free(w);
    model_free(m);
    arena_free(ar);
    return status;
}
