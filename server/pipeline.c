/* pipeline.c - image bytes -> decoded pixels -> padded tensor -> q/k/v ->
 * LOST box, with per-stage timings. See pipeline.h. */
#include "pipeline.h"
#include "arena.h"
#include "cli.h"
#include "err.h"
#include "vit.h"

#include <math.h>
#include <string.h>

void pipeline_opts_default(struct pipeline_opts *o)
{
    memset(o, 0, sizeof *o);
    lost_params_default(&o->lost);
    o->feature = -1;
    o->layer = -1;
}

/* Back to original pixels: start rounded down, end rounded up, so the box
 * still covers what the model marked; ends clipped. */
static void to_original(int b[4], const struct pipeline_result *r, const struct image *img)
{
    b[0] = (int)floorf(b[0] * r->scale_x);
    b[1] = (int)floorf(b[1] * r->scale_y);
    b[2] = (int)ceilf(b[2] * r->scale_x);
    b[3] = (int)ceilf(b[3] * r->scale_y);
    b[2] = b[2] > img->w ? img->w : b[2];
    b[3] = b[3] > img->h ? img->h : b[3];
}

static int gram_on_workspace(void *ctx, const float *f, int n, int dim, float *U,
                             struct err *e)
{
    return vit_work_gram(ctx, f, n, dim, U, e);
}

int pipeline_max_patches(const struct model *m, int max_side)
{
    int P = model_config(m)->patch;
    long g = (max_side + P - 1) / P;
    return (int)(g * g);
}

int pipeline_run_image(const struct model *m, struct vit_work *w, struct arena *a,
                       const struct image *img, const struct pipeline_opts *o,
                       struct pipeline_result *r, struct err *e)
{
    const struct model_config *c = model_config(m);
    double t0 = cli_now_ms();
    memset(&r->lost, 0, sizeof r->lost);
    r->multi.n = 0;
    r->img_w = img->w;
    r->img_h = img->h;
    struct image run = *img;
    if (o->max_side > 0 && (img->w > o->max_side || img->h > o->max_side)) {
        int rc = image_downscale(img, o->max_side, a, &run, e);
        if (rc)
            return rc;
    }
    r->run_w = run.w;
    r->run_h = run.h;
    r->scale_x = (float)img->w / run.w;
    r->scale_y = (float)img->h / run.h;
    struct image_norm norm;
    memcpy(norm.mean, c->mean, sizeof norm.mean);
    memcpy(norm.std, c->std, sizeof norm.std);
    float *x;
    int H, W;
    int rc = image_to_tensor(&run, c->patch, &norm, a, &x, &H, &W, e);
    if (rc)
        return rc;
    double t1 = cli_now_ms();
    r->ms_preprocess = t1 - t0;
    long need = (long)(H / c->patch) * (W / c->patch);
    if (need > vit_work_max_patches(w))
        return err_set(e, ERR_TOOBIG, "a %dx%d image needs %ld patches, at most %d are "
                       "allowed (downscale it, e.g. max_side)", run.w, run.h, need,
                       vit_work_max_patches(w));
    struct vit_opts vo = {.layer = o->layer, .want = VIT_WANT_QKV};
    if (o->debug)
        vo.want |= VIT_WANT_TOKENS;
    if (o->dinoseg)
        vo.want |= VIT_WANT_ATTN;
    struct vit_out out;
    if ((rc = vit_forward(m, w, x, H, W, &vo, &out, e)))
        return rc;
    double t2 = cli_now_ms();
    r->ms_forward = t2 - t1;
    int feat = o->feature >= 0 ? o->feature : (int)c->lost_feature;
    const float *f = feat == MODEL_FEATURE_Q ? out.q : feat == MODEL_FEATURE_V ? out.v : out.k;
    r->feature = feat;
    r->layer = out.layer;
    r->grid_h = out.grid_h;
    r->grid_w = out.grid_w;
    r->patch = c->patch;
    r->n_reg = out.n_reg;
    r->token_norms = NULL;
    r->register_norms = NULL;
    if (o->debug && out.tokens) {
        r->token_norms = arena_alloc(a, sizeof(float) * (size_t)out.n_patch);
        r->register_norms = arena_alloc(a, sizeof(float) * (size_t)(out.n_reg + 1));
        if (!r->token_norms || !r->register_norms)
            return err_set(e, ERR_TOOBIG, "no scratch left for the debug maps");
        for (int i = 0; i < out.n_reg + out.n_patch; i++) {
            const float *t = out.tokens + (size_t)(1 + i) * out.dim;
            double s = 0;
            for (int d = 0; d < out.dim; d++)
                s += (double)t[d] * t[d];
            if (i < out.n_reg)
                r->register_norms[i] = (float)sqrt(s);
            else
                r->token_norms[i - out.n_reg] = (float)sqrt(s);
        }
    }
    struct lost_grid g = {.rows = out.grid_h, .cols = out.grid_w, .patch_y = c->patch,
                          .patch_x = c->patch, .img_h = run.h, .img_w = run.w};
    /* LOST's Gram matrix on the workspace's kernels and threads */
    struct lost_params lp = o->lost;
    lp.gram = gram_on_workspace;
    lp.gram_ctx = w;
    if ((rc = lost_find_box(f, out.dim, &g, &lp, a, &r->lost, e)))
        return rc;
    r->dinoseg = 0;
    if (o->dinoseg) {
        /* CLS row of every head, patch columns only (CLS and registers dropped) */
        size_t np = (size_t)out.n_patch, pre = 1 + (size_t)out.n_reg;
        float *attn = arena_alloc(a, sizeof(float) * np * out.n_head);
        if (!attn)
            return err_set(e, ERR_TOOBIG, "no scratch left for the attention maps");
        for (int h = 0; h < out.n_head; h++)
            memcpy(attn + h * np, out.attn + (size_t)h * pre * out.n_tok + pre,
                   sizeof *attn * np);
        if ((rc = lost_dinoseg(attn, out.n_head, o->dinoseg_head, &g, a, r->dinoseg_box, NULL,
                               NULL, e)))
            return rc;
        r->dinoseg = 1;
    }
    if (o->max_objects > 1) {
        struct lost_multi_params mp;
        lost_multi_params_default(&mp);
        mp.max_objects = o->max_objects;
        if ((rc = lost_find_boxes(f, out.dim, &g, &o->lost, &mp, a, &r->multi, e)))
            return rc;
    }
    if (run.w != img->w || run.h != img->h) {
        to_original(r->lost.box, r, img);
        if (r->dinoseg)
            to_original(r->dinoseg_box, r, img);
        for (int i = 0; i < r->multi.n; i++)
            to_original(r->multi.obj[i].box, r, img);
    }
    r->ms_lost = cli_now_ms() - t2;
    return 0;
}

int pipeline_run_bytes(const struct model *m, struct vit_work *w, struct arena *a,
                       const unsigned char *buf, size_t n, const struct pipeline_opts *o,
                       struct pipeline_result *r, struct err *e)
{
    double t0 = cli_now_ms();
    struct image img;
    int rc = image_decode(buf, n, o->max_pixels, 1, a, &img, e);
    if (rc)
        return rc;
    double t1 = cli_now_ms();
    rc = pipeline_run_image(m, w, a, &img, o, r, e);
    r->ms_decode = t1 - t0;
    return rc;
}
