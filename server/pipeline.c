/* pipeline.c - image bytes -> decoded pixels -> padded tensor -> q/k/v ->
 * LOST box, with per-stage timings. See pipeline.h. */
#include "pipeline.h"
#include "clock.h"
#include "arena.h"
#include "budget.h"
#include "cli.h"
#include "err.h"
#include "vit.h"

#include <cblas.h>
#include <math.h>
#include <unistd.h>
#include <string.h>

void pipeline_opts_default(struct pipeline_opts *o)
{
    memset(o, 0, sizeof *o);
    lost_params_default(&o->lost);
    tokencut_params_default(&o->tc);
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

/* Takes n more bytes of o->scratch (when set) for `what`, on top of the
 * `held` bytes the request already has, waiting up to the deadline.
 * ERR_TOOBIG when held + n exceeds the whole budget (`hint`, or NULL, is
 * appended to the advice), ERR_BUSY on time. */
static int scratch_take(const struct pipeline_opts *o, long long held, long long n,
                        const char *what, const char *hint, struct err *e)
{
    if (!o->scratch)
        return 0;
    long long cap = budget_cap(o->scratch);
    if (held + n > cap) {
        char also[64] = "";
        if (held)
            snprintf(also, sizeof also, " besides the %lld MB it holds", held >> 20);
        return err_set(e, ERR_TOOBIG, "%s needs %lld MB of scratch%s, over the budget of "
                       "%lld MB (--scratch-budget): send a smaller image%s", what, n >> 20,
                       also, cap >> 20, hint ? hint : "");
    }
    double dl = o->deadline_ms > 0 ? o->deadline_ms : clock_now_ms() + 30e3;
    if (budget_acquire(o->scratch, n, dl))
        return err_set(e, ERR_BUSY, "%s waited too long for scratch memory held by other "
                       "requests: retry shortly", what);
    return 0;
}

static void scratch_give(const struct pipeline_opts *o, long long n)
{
    if (o->scratch)
        budget_release(o->scratch, n);
}

long long pipeline_tokencut_bytes(long n_patch)
{
    /* the graph phase; the normalised features are in the request bound */
    return tokencut_graph_bytes(n_patch, 0);
}

long long pipeline_discovery_bytes(long n_patch)
{
    long long lost = pipeline_gram_bytes(n_patch, 1), tc = pipeline_tokencut_bytes(n_patch);
    return lost > tc ? lost : tc;
}

/* The largest max_side (a multiple of the patch) at which TokenCut on an
 * image of w x h pixels fits `cap` bytes of scratch, or 0 when none does. */
static int tokencut_side_that_fits(int w, int h, int P, long long cap)
{
    int longer = w > h ? w : h;
    for (int side = longer / P * P; side >= P; side -= P) {
        long gw = ((long)w * side / longer + P - 1) / P, gh = ((long)h * side / longer + P - 1) / P;
        if (pipeline_tokencut_bytes(gw * gh) <= cap)
            return side;
    }
    return 0;
}

/* What a request holds of o->scratch; TokenCut's dense fallback asks for
 * more through tokencut_params.reserve. */
struct scratch_hold {
    const struct pipeline_opts *o;
    long long held;
};

static int scratch_more(void *ctx, long long n, struct err *e)
{
    struct scratch_hold *h = ctx;
    int rc = scratch_take(h->o, h->held, n, "TokenCut's dense solve", NULL, e);
    if (!rc)
        h->held += n;
    return rc;
}

long long pipeline_gram_bytes(long n_patch, int max_objects)
{
    /* LOST's [N, N] Gram matrix (multi-object discovery reuses one more). */
    return (long long)n_patch * n_patch * 4 * (max_objects > 1 ? 2 : 1) + (1LL << 20);
}

long long pipeline_request_bound(const struct model *m, int max_side)
{
    const struct model_config *c = model_config(m);
    long long side = max_side, padded = side + c->patch;
    long long n = pipeline_max_patches(m, max_side);
    /* The fitted image and its upright copy, the padded float tensor, LOST's
     * normalised features and per-patch buffers, the debug maps and the
     * reply. The decoder and the Gram matrix come from the scratch budget,
     * the upload from the upload budget, the forward from the workspace. */
    return 2 * side * side * 3 + padded * padded * 3 * 4 + n * c->dim * 4 * 2 + n * 96 +
           (4LL << 20);
}

int pipeline_max_patches(const struct model *m, int max_side)
{
    int P = model_config(m)->patch;
    long g = (max_side + P - 1) / P;
    return (int)(g * g);
}

/* The feature the graph is built from: o->feature, or the family's default. */
static int feature_of(const struct model *m, const struct pipeline_opts *o)
{
    return o->feature >= 0 ? o->feature : (int)model_config(m)->lost_feature;
}

unsigned pipeline_feature_want(const struct model *m, const struct pipeline_opts *o)
{
    int feat = feature_of(m, o);
    return feat == MODEL_FEATURE_Q ? VIT_WANT_Q : feat == MODEL_FEATURE_V ? VIT_WANT_V
                                                                          : VIT_WANT_K;
}

/* From the pixels the model sees (run: already fitted to o->max_side) of an
 * image whose full upright size is img_w x img_h; t0: when preprocessing
 * started. */
static int run_fitted(const struct model *m, struct vit_work *w, struct arena *a,
                      const struct image *fitted, int img_w, int img_h, double t0,
                      const struct pipeline_opts *o, struct pipeline_result *r, struct err *e)
{
    const struct model_config *c = model_config(m);
    const struct image run = *fitted;
    const struct image full = {img_w, img_h, NULL}; /* only its size is read */
    const struct image *img = &full;
    memset(&r->lost, 0, sizeof r->lost);
    memset(&r->tc, 0, sizeof r->tc);
    r->multi.n = 0;
    r->img_w = img_w;
    r->img_h = img_h;
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
    double t1 = clock_now_ms();
    r->ms_preprocess = t1 - t0;
    long need = (long)(H / c->patch) * (W / c->patch);
    if (need > vit_work_max_patches(w))
        return err_set(e, ERR_TOOBIG, "a %dx%d image needs %ld patches, at most %d are "
                       "allowed (downscale it, e.g. max_side)", run.w, run.h, need,
                       vit_work_max_patches(w));
    int feat = feature_of(m, o);
    /* the one feature the graph is built from: the forward computes only it */
    struct vit_opts vo = {.layer = o->layer, .want = pipeline_feature_want(m, o),
                          .cancel = o->cancel};
    if (o->debug)
        vo.want |= VIT_WANT_TOKENS;
    if (o->dinoseg)
        vo.want |= VIT_WANT_ATTN;
    struct vit_out out;
    if ((rc = vit_forward(m, w, x, H, W, &vo, &out, e)))
        return rc;
    double t2 = clock_now_ms();
    r->ms_forward = t2 - t1;
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
    r->method = o->method;
    long long gram = o->method == PIPELINE_TOKENCUT ? pipeline_tokencut_bytes(out.n_patch)
                                                    : pipeline_gram_bytes(out.n_patch, o->max_objects);
    char what[48], hint[48] = "";
    snprintf(what, sizeof what, "%s on %d patches",
             o->method == PIPELINE_TOKENCUT ? "TokenCut" : "LOST", (int)out.n_patch);
    if (o->method == PIPELINE_TOKENCUT && o->scratch && gram > budget_cap(o->scratch)) {
        /* the largest input whose graph would fit: advice in the 413 */
        int side = tokencut_side_that_fits(run.w, run.h, c->patch, budget_cap(o->scratch));
        if (side)
            snprintf(hint, sizeof hint, " or max_side <= %d", side);
    }
    if ((rc = scratch_take(o, 0, gram, what, hint, e)))
        return rc;
    struct scratch_hold hold = {.o = o, .held = gram};
    /* TokenCut's cosine graph on the workspace's kernels too; its dense
     * fallback asks the budget first */
    struct tokencut_params tp = o->tc;
    tp.gram = gram_on_workspace;
    tp.gram_ctx = w;
    tp.reserve = scratch_more;
    tp.reserve_ctx = &hold;
    if (o->method == PIPELINE_TOKENCUT) {
        rc = tokencut_find_box(f, out.dim, &g, &tp, a, &r->tc, e);
        if (!rc) {
            memcpy(r->lost.box, r->tc.box, sizeof r->lost.box);
            memcpy(r->lost.box_feat, r->tc.box_feat, sizeof r->lost.box_feat);
            r->lost.seed = r->tc.seed;
            r->lost.mask = r->tc.mask;
        }
    } else {
        rc = lost_find_box(f, out.dim, &g, &lp, a, &r->lost, e);
    }
    r->dinoseg = 0;
    if (!rc && o->dinoseg) {
        /* CLS row of every head, patch columns only (CLS and registers dropped) */
        size_t np = (size_t)out.n_patch, pre = 1 + (size_t)out.n_reg;
        float *attn = arena_alloc(a, sizeof(float) * np * out.n_head);
        if (!attn)
            rc = err_set(e, ERR_TOOBIG, "no scratch left for the attention maps");
        for (int h = 0; !rc && h < out.n_head; h++)
            memcpy(attn + h * np, out.attn + (size_t)h * pre * out.n_tok + pre,
                   sizeof *attn * np);
        if (!rc)
            rc = lost_dinoseg(attn, out.n_head, o->dinoseg_head, &g, a, r->dinoseg_box, NULL,
                              NULL, e);
        r->dinoseg = !rc;
    }
    if (!rc && o->max_objects > 1 && o->method == PIPELINE_TOKENCUT) {
        int (*boxes)[4] = arena_alloc(a, sizeof(int[4]) * LOST_MAX_OBJECTS);
        int n = 0;
        const char *stop = "max_objects";
        int mo = o->max_objects < LOST_MAX_OBJECTS ? o->max_objects : LOST_MAX_OBJECTS;
        rc = boxes ? tokencut_find_boxes(f, out.dim, &g, &tp, mo, a, boxes, &n, &stop, e)
                   : err_set(e, ERR_TOOBIG, "no scratch left for the boxes");
        memset(&r->multi, 0, sizeof r->multi);
        for (int i = 0; !rc && i < n; i++)
            memcpy(r->multi.obj[i].box, boxes[i], sizeof boxes[i]);
        r->multi.n = rc ? 0 : n;
        r->multi.stop = !strcmp(stop, "empty")     ? LOST_STOP_EMPTY
                        : !strcmp(stop, "overlap") ? LOST_STOP_OVERLAP
                                                   : LOST_STOP_MAX;
    } else if (!rc && o->max_objects > 1) {
        struct lost_multi_params mp;
        lost_multi_params_default(&mp);
        mp.max_objects = o->max_objects;
        rc = lost_find_boxes(f, out.dim, &g, &o->lost, &mp, a, &r->multi, e);
    }
    scratch_give(o, hold.held);
    if (rc)
        return rc;
    if (run.w != img->w || run.h != img->h) {
        to_original(r->lost.box, r, img);
        if (r->dinoseg)
            to_original(r->dinoseg_box, r, img);
        for (int i = 0; i < r->multi.n; i++)
            to_original(r->multi.obj[i].box, r, img);
    }
    r->ms_lost = clock_now_ms() - t2;
    return 0;
}

int pipeline_run_image(const struct model *m, struct vit_work *w, struct arena *a,
                       const struct image *img, const struct pipeline_opts *o,
                       struct pipeline_result *r, struct err *e)
{
    double t0 = clock_now_ms();
    struct image run = *img;
    if (o->max_side > 0 && (img->w > o->max_side || img->h > o->max_side)) {
        int rc = image_downscale(img, o->max_side, a, &run, e);
        if (rc)
            return rc;
    }
    return run_fitted(m, w, a, &run, img->w, img->h, t0, o, r, e);
}

int pipeline_decode(const unsigned char *buf, size_t n, const struct pipeline_opts *o,
                    struct arena *a, struct image *out, struct image_info *info, struct err *e)
{
    struct image_decode_opts d = {.max_pixels = o->max_pixels, .exif = o->exif,
                                  .fit_side = o->max_side, .deadline_ms = o->deadline_ms,
                                  .cancel = o->cancel};
    /* The header says what the decode will hold (a progressive JPEG: all of
     * its coefficients at full resolution, whatever the scale); that share
     * of the scratch budget is taken first, waiting up to the deadline. */
    int rc = image_probe(buf, n, &d, info, e);
    if (rc)
        return rc;
    long long need = (long long)info->decoder_bytes;
    if ((rc = scratch_take(o, 0, need, info->multi_scan ? "decoding this progressive image"
                                                        : "decoding this image", NULL, e)))
        return rc;
    if (o->scratch)
        d.max_memory = info->coef_bytes + ((size_t)8 << 20);
    rc = image_decode_fit(buf, n, &d, a, out, info, e);
    scratch_give(o, need);
    return rc;
}

int pipeline_run_bytes(const struct model *m, struct vit_work *w, struct arena *a,
                       const unsigned char *buf, size_t n, const struct pipeline_opts *o,
                       struct pipeline_result *r, struct err *e)
{
    memset(r, 0, sizeof *r);
    double t0 = clock_now_ms();
    struct image run;
    struct image_info info;
    int rc = pipeline_decode(buf, n, o, a, &run, &info, e);
    double t1 = clock_now_ms();
    r->ms_decode = t1 - t0;
    if (rc)
        return rc;
    return run_fitted(m, w, a, &run, info.up_w, info.up_h, t1, o, r, e);
}

int pipeline_threads_default(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int pipeline_workspace_ensure(const struct model *m, struct vit_work **w, int img_w, int img_h,
                              int max_side, int threads, struct err *e)
{
    int side = img_w > img_h ? img_w : img_h;
    if (max_side > 0 && side > max_side)
        side = max_side;
    int need = pipeline_max_patches(m, side);
    if (*w && vit_work_max_patches(*w) >= need)
        return 0;
    vit_work_free(*w);
    *w = NULL;
    if (threads <= 0)
        threads = pipeline_threads_default();
    int rc = vit_work_init(m, need, w, e);
    if (!rc)
        rc = vit_work_set_threads(*w, threads, e);
    if (rc) {
        vit_work_free(*w);
        *w = NULL;
        return rc;
    }
    /* One team of threads: ours on the AVX-512 path (OpenBLAS, used only by
     * the fallback and LOST's ssyrk, stays single-threaded), else OpenBLAS's. */
    openblas_set_num_threads(vit_work_fast(*w) ? 1 : threads);
    return 0;
}
