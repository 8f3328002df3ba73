/* calibrate.h - the LOST settings sweep behind `lostd calibrate`: which
 * Gram bias, feature (q/k/v), L2 normalisation and block give the best
 * CorLoc for one checkpoint (docs/specs/lost.md section 7: the registers paper
 * tuned the bias by hand, later work the layer and normalisation too).
 * The grid of settings is enumerated in a fixed order; for one image and
 * one tapped block the caller hands in q, k and v and gets one hit bit per
 * setting of that block. Pure computation: no I/O, no model, scratch from
 * the given arena, thread-safe with one arena per thread. Never prints. */
#ifndef LOSTD_CALIBRATE_H
#define LOSTD_CALIBRATE_H

struct arena;
struct err;
struct lost_grid;

#define CALIBRATE_MAX_LAYERS 16
#define CALIBRATE_MAX_BIASES 32

/* The sweep. Enumeration order (setting index, also the tie-break):
 * layer (as listed), then feature (as listed), then l2norm (as listed), then
 * bias (as listed): index = ((li * n_feat + fi) * n_l2 + l2i) * n_bias + bi. */
struct calibrate_grid {
    int n_layer;
    int layer[CALIBRATE_MAX_LAYERS];    /* blocks, < 0 counts from the end */
    int n_feat;
    int feat[3];                        /* enum model_feature, distinct */
    int n_l2;
    int l2[2];                          /* 0 / 1, distinct */
    int n_bias;
    float bias[CALIBRATE_MAX_BIASES];   /* finite; with TokenCut the values of tau, in [-1, 1] */
    int k_patches;                      /* LOST candidates, >= 1 */
    int tokencut;                       /* 1: the sweep runs TokenCut (tokencut.h): the fourth
                                           axis is tau, l2norm has one value (TokenCut always
                                           normalises), eps from tc_eps */
    float tc_eps;
    int tc_binary;
};

struct calibrate_setting {
    int layer, feature, l2norm;
    float gram_bias;
};

/* The default grid for a model of `depth` blocks whose papers' feature is
 * family_feature: layers -1..-4 (at most depth), features family_feature
 * first then the others in q, k, v order, l2norm off then on, biases
 * 0, -0.1, -0.2, -0.3, -0.5, -0.75, -1 (0 first: plain LOST wins ties),
 * k_patches 100. Cannot fail. */
/* Default taus of a TokenCut sweep around the authors' 0.2. */
#define CALIBRATE_TAUS {0.1f, 0.15f, 0.2f, 0.25f, 0.3f}

void calibrate_grid_default(struct calibrate_grid *g, int depth, int family_feature);

/* Checks sizes and values. Returns 0 or ERR_INPUT. */
int calibrate_grid_check(const struct calibrate_grid *g, struct err *e);

/* Settings in the grid; settings of one layer (n_feat * n_l2 * n_bias). */
int calibrate_n_settings(const struct calibrate_grid *g);
int calibrate_per_layer(const struct calibrate_grid *g);

/* Setting i (0 <= i < calibrate_n_settings). Cannot fail. */
void calibrate_setting_at(const struct calibrate_grid *g, int i, struct calibrate_setting *s);

/* One image, one block: runs LOST for every feature / l2norm / bias of the
 * grid on qkv[MODEL_FEATURE_Q / K / V] ([N, dim] each, N = lg->rows *
 * lg->cols, patches only), maps each box to original pixels (x * scale_x,
 * y * scale_y: start rounded down, end up, clipped to img_w / img_h, as the
 * pipeline does) and scores it against gt [n_gt][4] (corloc_hit). hits
 * [calibrate_per_layer] gets 0/1 in enumeration order within the layer.
 * Scratch from a, rewound before returning. Returns 0 or LOST's errors. */
int calibrate_layer_hits(const struct calibrate_grid *g, const float *const qkv[3], int dim,
                         const struct lost_grid *lg, float scale_x, float scale_y, int img_w,
                         int img_h, const float (*gt)[4], int n_gt, struct arena *a,
                         unsigned char *hits, struct err *e);

/* The best setting: most hits, ties to the lowest index (the enumeration
 * order above). hits [calibrate_n_settings]. Returns its index, -1 when the
 * grid is empty. Cannot fail. */
int calibrate_best(const struct calibrate_grid *g, const long *hits);

#endif
