/* analyze_json.c - image -> forward with tokens, attention and patch
 * embeddings -> analyze_tokens -> one JSON object. See analyze_json.h. */
#include "analyze_json.h"
#include "clock.h"
#include "pipeline.h"

#include "arena.h"
#include "cli.h"
#include "err.h"
#include "image.h"
#include "model.h"
#include "vit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_t *float_array(const float *x, int n)
{
    json_t *j = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(j, isfinite(x[i]) ? json_real(x[i]) : json_null());
    return j;
}

static json_t *real_or_null(float x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static int cmp_float(const void *pa, const void *pb)
{
    float x = *(const float *)pa, y = *(const float *)pb;
    return (x > y) - (x < y);
}

static json_t *build(const struct analyze_run *run, struct arena *a)
{
    const struct analyze_result *r = &run->res;
    int N = r->n_patch, R = r->n_reg;
    json_t *j = json_object();
    json_object_set_new(j, "width", json_integer(run->img_w));
    json_object_set_new(j, "height", json_integer(run->img_h));
    json_object_set_new(j, "grid", json_pack("[i,i]", r->grid_h, r->grid_w));
    json_object_set_new(j, "patch", json_integer(run->patch));
    if (run->run_w != run->img_w || run->run_h != run->img_h)
        json_object_set_new(j, "model_input", json_pack("[i,i]", run->run_h, run->run_w));
    json_object_set_new(j, "n_reg", json_integer(R));
    json_object_set_new(j, "cls_norm", json_real(r->cls_norm));
    json_object_set_new(j, "register_norms", float_array(r->reg_norm, R));
    json_object_set_new(j, "patch_norms", float_array(r->patch_norm, N));

    float *sorted = arena_alloc(a, (size_t)N * sizeof *sorted);
    if (sorted) {
        memcpy(sorted, r->patch_norm, (size_t)N * sizeof *sorted);
        qsort(sorted, (size_t)N, sizeof *sorted, cmp_float);
        float med = N % 2 ? sorted[N / 2] : 0.5f * (sorted[N / 2 - 1] + sorted[N / 2]);
        json_object_set_new(j, "norm_stats", json_pack("{s:f, s:f, s:f}", "min",
                                                       (double)sorted[0], "median",
                                                       (double)med, "max",
                                                       (double)sorted[N - 1]));
    }

    json_t *o = json_object();
    json_object_set_new(o, "method", json_string(r->method == ANALYZE_FIXED ? "fixed" : "otsu"));
    json_object_set_new(o, "threshold", json_real(r->threshold));
    if (r->method == ANALYZE_OTSU) {
        json_object_set_new(o, "bimodal", json_boolean(r->split.bimodal));
        json_object_set_new(o, "ratio", real_or_null(r->split.ratio));
        json_object_set_new(o, "separation", real_or_null(r->split.separation));
    }
    json_object_set_new(o, "count", json_integer(r->n_outlier));
    json_object_set_new(o, "fraction", json_real(r->outlier_frac));
    json_t *pos = json_array();
    for (int i = 0; i < r->n_outlier; i++)
        json_array_append_new(pos, json_pack("[i,i]", r->outlier[i] / r->grid_w,
                                             r->outlier[i] % r->grid_w));
    json_object_set_new(o, "positions", pos);
    int above = 0;
    int take = r->method == ANALYZE_FIXED || r->split.bimodal;
    for (int i = 0; i < R; i++)
        above += take && r->reg_norm[i] > r->threshold;
    json_object_set_new(o, "registers_above", json_integer(above));
    json_object_set_new(j, "outliers", o);

    if (r->neighbor_sim) {
        json_object_set_new(j, "neighbor_similarity", float_array(r->neighbor_sim, N));
        json_object_set_new(j, "neighbor_similarity_mean",
                            json_pack("{s:o, s:o}", "outliers", real_or_null(r->sim_outlier),
                                      "others", real_or_null(r->sim_other)));
    }
    if (r->attn_map) {
        json_t *regs = json_array();
        for (int i = 0; i < R; i++)
            json_array_append_new(regs, float_array(r->attn_map + (size_t)(1 + i) * N, N));
        json_object_set_new(j, "attention",
                            json_pack("{s:o, s:o, s:{s:f, s:o}}", "cls",
                                      float_array(r->attn_map, N), "registers", regs,
                                      "patch_mass", "cls", (double)r->attn_patch_mass[0],
                                      "registers", float_array(r->attn_patch_mass + 1, R)));
    }
    json_object_set_new(j, "timings_ms", json_pack("{s:f, s:f}", "forward", run->ms_forward,
                                                   "analyze", run->ms_analyze));
    return j;
}

/* From the pixels the model sees (in: already fitted to o->max_side) of an
 * image of img_w x img_h. */
static int analyze_fitted(const struct model *m, struct vit_work *w, struct arena *a,
                          const struct image *fitted, int img_w, int img_h,
                          const struct analyze_json_opts *o, struct analyze_run *run,
                          json_t **out, struct err *e)
{
    const struct model_config *c = model_config(m);
    memset(run, 0, sizeof *run);
    run->img_w = img_w;
    run->img_h = img_h;
    run->patch = c->patch;
    const struct image in = *fitted;
    int rc;
    run->run_w = in.w;
    run->run_h = in.h;
    struct image_norm norm;
    memcpy(norm.mean, c->mean, sizeof norm.mean);
    memcpy(norm.std, c->std, sizeof norm.std);
    float *x;
    int H, W;
    if ((rc = image_to_tensor(&in, c->patch, &norm, a, &x, &H, &W, e)))
        return rc;
    long need = (long)(H / c->patch) * (W / c->patch);
    if (need > vit_work_max_patches(w))
        return err_set(e, ERR_TOOBIG, "a %dx%d image needs %ld patches, at most %d are "
                       "allowed (downscale it, e.g. max_side)", in.w, in.h, need,
                       vit_work_max_patches(w));
    double t0 = clock_now_ms();
    struct vit_opts vo = {.layer = -1,
                          .want = VIT_WANT_TOKENS | VIT_WANT_ATTN | VIT_WANT_PATCH_EMBED,
                          .cancel = o->cancel};
    struct vit_out v;
    if ((rc = vit_forward(m, w, x, H, W, &vo, &v, e)))
        return rc;
    double t1 = clock_now_ms();
    struct analyze_input ai = {.tokens = v.tokens, .patch_embed = v.patch_embed,
                               .attn = v.attn, .grid_h = v.grid_h, .grid_w = v.grid_w,
                               .n_reg = v.n_reg, .dim = v.dim, .n_head = v.n_head};
    if ((rc = analyze_tokens(&ai, o->threshold, a, &run->res, e)))
        return rc;
    run->ms_forward = t1 - t0;
    run->ms_analyze = clock_now_ms() - t1;
    *out = build(run, a);
    if (!*out)
        return err_set(e, ERR_NOMEM, "out of memory for the JSON reply");
    return 0;
}

int analyze_json_image(const struct model *m, struct vit_work *w, struct arena *a,
                       const struct image *img, const struct analyze_json_opts *o,
                       struct analyze_run *run, json_t **out, struct err *e)
{
    struct image in = *img;
    int rc;
    if (o->max_side > 0 && (img->w > o->max_side || img->h > o->max_side))
        if ((rc = image_downscale(img, o->max_side, a, &in, e)))
            return rc;
    return analyze_fitted(m, w, a, &in, img->w, img->h, o, run, out, e);
}

int analyze_json_bytes(const struct model *m, struct vit_work *w, struct arena *a,
                       const unsigned char *buf, size_t n, const struct analyze_json_opts *o,
                       json_t **out, struct err *e)
{
    double t0 = clock_now_ms();
    /* The daemon's decode: budgeted, straight to max_side, EXIF applied. */
    struct pipeline_opts po;
    pipeline_opts_default(&po);
    po.max_pixels = o->max_pixels;
    po.max_side = o->max_side;
    po.deadline_ms = o->deadline_ms;
    po.scratch = o->scratch;
    po.cancel = o->cancel;
    struct image img;
    struct image_info info;
    int rc = pipeline_decode(buf, n, &po, a, &img, &info, e);
    if (rc)
        return rc;
    double ms = clock_now_ms() - t0;
    struct analyze_run run;
    if ((rc = analyze_fitted(m, w, a, &img, info.up_w, info.up_h, o, &run, out, e)))
        return rc;
    json_object_set_new(json_object_get(*out, "timings_ms"), "decode", json_real(ms));
    return 0;
}
