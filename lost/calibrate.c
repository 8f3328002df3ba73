/* calibrate.c - the settings sweep of `lostd calibrate` (calibrate.h):
 * enumerates bias x feature x l2norm x layer, runs LOST for each setting on
 * features the caller already computed, scores the boxes with CorLoc's hit
 * rule. The backbone is not run here: the caller runs it once per block and
 * every bias / feature / l2norm of that block reuses the same q, k, v. */
#include "calibrate.h"
#include "tokencut.h"

#include "arena.h"
#include "corloc.h"
#include "err.h"
#include "lost.h"
#include "model.h"

#include <math.h>
#include <string.h>

void calibrate_grid_default(struct calibrate_grid *g, int depth, int family_feature)
{
    memset(g, 0, sizeof *g);
    for (int l = 1; l <= 4 && l <= depth; l++)
        g->layer[g->n_layer++] = -l;
    g->feat[g->n_feat++] = family_feature;
    static const int qkv[3] = {MODEL_FEATURE_Q, MODEL_FEATURE_K, MODEL_FEATURE_V};
    for (int i = 0; i < 3; i++)
        if (qkv[i] != family_feature)
            g->feat[g->n_feat++] = qkv[i];
    g->n_l2 = 2;
    g->l2[0] = 0;
    g->l2[1] = 1;
    static const float b[] = {0.0f, -0.1f, -0.2f, -0.3f, -0.5f, -0.75f, -1.0f};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        g->bias[g->n_bias++] = b[i];
    g->k_patches = LOST_K_PATCHES;
}

int calibrate_grid_check(const struct calibrate_grid *g, struct err *e)
{
    if (g->n_layer < 1 || g->n_layer > CALIBRATE_MAX_LAYERS)
        return err_set(e, ERR_INPUT, "calibrate: %d layers, allowed 1..%d", g->n_layer,
                       CALIBRATE_MAX_LAYERS);
    if (g->n_feat < 1 || g->n_feat > 3)
        return err_set(e, ERR_INPUT, "calibrate: %d features, allowed 1..3", g->n_feat);
    if (g->n_l2 < 1 || g->n_l2 > 2)
        return err_set(e, ERR_INPUT, "calibrate: %d l2norm values, allowed 1..2", g->n_l2);
    if (g->n_bias < 1 || g->n_bias > CALIBRATE_MAX_BIASES)
        return err_set(e, ERR_INPUT, "calibrate: %d biases, allowed 1..%d", g->n_bias,
                       CALIBRATE_MAX_BIASES);
    if (g->k_patches < 1)
        return err_set(e, ERR_INPUT, "calibrate: k_patches %d, must be >= 1", g->k_patches);
    for (int i = 0; i < g->n_feat; i++) {
        if (g->feat[i] < MODEL_FEATURE_Q || g->feat[i] > MODEL_FEATURE_V)
            return err_set(e, ERR_INPUT, "calibrate: unknown feature %d", g->feat[i]);
        for (int j = 0; j < i; j++)
            if (g->feat[j] == g->feat[i])
                return err_set(e, ERR_INPUT, "calibrate: feature listed twice");
    }
    for (int i = 0; i < g->n_l2; i++)
        if ((g->l2[i] != 0 && g->l2[i] != 1) || (i && g->l2[0] == g->l2[i]))
            return err_set(e, ERR_INPUT, "calibrate: l2norm values must be distinct 0 / 1");
    for (int i = 0; i < g->n_bias; i++) {
        if (!isfinite(g->bias[i]))
            return err_set(e, ERR_INPUT, "calibrate: bias %d is not finite", i);
        if (g->tokencut && (g->bias[i] < -1 || g->bias[i] > 1))
            return err_set(e, ERR_INPUT, "calibrate: tau %g outside [-1, 1]",
                           (double)g->bias[i]);
    }
    if (g->tokencut && (g->n_l2 != 1 || !(g->tc_eps > 0)))
        return err_set(e, ERR_INPUT, "calibrate: TokenCut takes one l2norm value and eps > 0");
    for (int i = 0; i < g->n_layer; i++)
        for (int j = 0; j < i; j++)
            if (g->layer[i] == g->layer[j])
                return err_set(e, ERR_INPUT, "calibrate: layer %d listed twice", g->layer[i]);
    return 0;
}

int calibrate_per_layer(const struct calibrate_grid *g)
{
    return g->n_feat * g->n_l2 * g->n_bias;
}

int calibrate_n_settings(const struct calibrate_grid *g)
{
    return g->n_layer * calibrate_per_layer(g);
}

void calibrate_setting_at(const struct calibrate_grid *g, int i, struct calibrate_setting *s)
{
    int bi = i % g->n_bias;
    i /= g->n_bias;
    int l2i = i % g->n_l2;
    i /= g->n_l2;
    int fi = i % g->n_feat;
    int li = i / g->n_feat;
    s->layer = g->layer[li];
    s->feature = g->feat[fi];
    s->l2norm = g->l2[l2i];
    s->gram_bias = g->bias[bi];
}

int calibrate_layer_hits(const struct calibrate_grid *g, const float *const qkv[3], int dim,
                         const struct lost_grid *lg, float scale_x, float scale_y, int img_w,
                         int img_h, const float (*gt)[4], int n_gt, struct arena *a,
                         unsigned char *hits, struct err *e)
{
    int rc = calibrate_grid_check(g, e);
    if (rc)
        return rc;
    size_t mark = arena_mark(a);
    int t = 0;
    for (int fi = 0; fi < g->n_feat; fi++)
        for (int l2i = 0; l2i < g->n_l2; l2i++)
            for (int bi = 0; bi < g->n_bias; bi++, t++) {
                int rbox[4];
                if (g->tokencut) {
                    struct tokencut_params tp;
                    tokencut_params_default(&tp);
                    tp.tau = g->bias[bi];
                    tp.eps = g->tc_eps;
                    tp.binary = g->tc_binary;
                    struct tokencut_result tr;
                    rc = tokencut_find_box(qkv[g->feat[fi]], dim, lg, &tp, a, &tr, e);
                    memcpy(rbox, tr.box, sizeof rbox);
                } else {
                    struct lost_params p = {.k_patches = g->k_patches,
                                            .gram_bias = g->bias[bi], .l2norm = g->l2[l2i]};
                    struct lost_result lr;
                    rc = lost_find_box(qkv[g->feat[fi]], dim, lg, &p, a, &lr, e);
                    memcpy(rbox, lr.box, sizeof rbox);
                }
                arena_rewind(a, mark);
                if (rc)
                    return rc;
                /* To original pixels, as pipeline_run_image does after a
                 * downscale: start down, end up, ends clipped. */
                float box[4] = {floorf(rbox[0] * scale_x), floorf(rbox[1] * scale_y),
                                ceilf(rbox[2] * scale_x), ceilf(rbox[3] * scale_y)};
                if (scale_x == 1.0f && scale_y == 1.0f)
                    for (int k = 0; k < 4; k++)
                        box[k] = (float)rbox[k];
                if (box[2] > img_w)
                    box[2] = (float)img_w;
                if (box[3] > img_h)
                    box[3] = (float)img_h;
                hits[t] = (unsigned char)corloc_hit(box, gt, n_gt, NULL);
            }
    return 0;
}

int calibrate_best(const struct calibrate_grid *g, const long *hits)
{
    int n = calibrate_n_settings(g), best = -1;
    for (int i = 0; i < n; i++)
        if (best < 0 || hits[i] > hits[best])
            best = i;
    return best;
}
