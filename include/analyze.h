/* analyze.h - artifact analysis of one forward pass (registers paper,
 * Darcet et al.): output-token norms of every patch and register, the
 * high-norm outlier patches, how redundant each patch's input is with its
 * 4 neighbours, and the last block's attention maps of CLS and of each
 * register over the patches. Also the colour map the heat maps use.
 * Pure computation on caller arrays: no I/O, scratch and results from the
 * given arena, thread-safe with one arena per thread. Never prints. */
#ifndef LOSTD_ANALYZE_H
#define LOSTD_ANALYZE_H

struct arena;
struct err;

/* The automatic threshold accepts a split only when the high class is this
 * many times the low class in geometric-mean norm ... */
#define ANALYZE_MIN_RATIO 2.0
/* ... and the class means of the log-norms are at least this many times the
 * sum of the two class standard deviations apart. */
#define ANALYZE_MIN_SEPARATION 2.0

/* What analyze_tokens reads. Token rows are CLS, registers, patches
 * (row-major in the grid), as struct vit_out hands them out. */
struct analyze_input {
    const float *tokens;      /* [1 + n_reg + n_patch, dim] after the final norm */
    const float *patch_embed; /* [n_patch, dim] before positions; NULL: no similarity map */
    const float *attn;        /* [n_head, 1 + n_reg, 1 + n_reg + n_patch] softmax rows of
                                 CLS and registers; NULL: no attention maps */
    int grid_h, grid_w;       /* n_patch = grid_h * grid_w */
    int n_reg, dim, n_head;
};

enum analyze_method {
    ANALYZE_FIXED = 0,  /* outliers: norm > the given threshold */
    ANALYZE_OTSU        /* automatic, see analyze_split_log */
};

/* The automatic split of a set of norms (analyze_split_log). */
struct analyze_split {
    float threshold;    /* exp of the midpoint of the log gap at the Otsu split; 0 when
                           every value is equal (no split exists) */
    int bimodal;        /* 1 when the split passes the tests: then values > threshold
                           are the outliers; 0: no outliers */
    int n_high;         /* values above the split (whether or not accepted) */
    float ratio;        /* exp(mu_high - mu_low): geometric-mean norm ratio of the classes */
    float separation;   /* (mu_high - mu_low) / (s_low + s_high) on log-norms; +inf when
                           both classes have zero spread */
};

/* Otsu's threshold on log-norms with a minimum-separation test.
 * The n values (> 0; zero and negative values are clamped to 1e-12) are
 * sorted by log; every cut between two distinct neighbours is scored by
 * the between-class variance w_low * w_high * (mu_high - mu_low)^2 (Otsu,
 * exact, no histogram); the best cut wins, the lowest cut on ties. The cut
 * is accepted (bimodal = 1) only if all hold:
 *   - the high class is at most half of the values (artifacts are rare),
 *   - ratio >= ANALYZE_MIN_RATIO (outliers are clearly larger, not a ripple),
 *   - separation >= ANALYZE_MIN_SEPARATION: a single Gaussian cut at its
 *     mean gives ~1.3 and a uniform spread ~1.7, so a unimodal distribution
 *     yields no outliers; two well separated modes give far more.
 * Limitation: with a broad normal mode, a lone outlier may lose the Otsu
 * score to a cut through the normal mode and go undetected; pass a fixed
 * threshold then. Scratch: n doubles from a (rewound). Returns 0, ERR_INPUT
 * (n < 1, NULL) or ERR_TOOBIG. */
int analyze_split_log(const float *norms, int n, struct arena *a, struct analyze_split *out,
                      struct err *e);

struct analyze_result {
    int grid_h, grid_w, n_patch, n_reg, n_head;
    float cls_norm;
    float *patch_norm;        /* [n_patch] L2 norm of each output patch token */
    float *reg_norm;          /* [n_reg] (NULL when n_reg == 0) */
    enum analyze_method method;
    float threshold;          /* the threshold used (FIXED) or found (OTSU) */
    struct analyze_split split; /* OTSU: the split; FIXED: zeroed */
    int n_outlier;
    int *outlier;             /* [n_outlier] patch indices, ascending (row-major) */
    float outlier_frac;       /* n_outlier / n_patch */
    float *neighbor_sim;      /* [n_patch] mean cosine similarity of the patch's input
                                 embedding to its 2..4 grid neighbours; NULL without
                                 patch_embed (a zero vector counts as similarity 0) */
    float sim_outlier;        /* mean neighbor_sim over outliers (NaN when none) */
    float sim_other;          /* ... over the other patches (NaN when none) */
    float *attn_map;          /* [1 + n_reg, n_patch]: row 0 CLS, row 1 + r register r;
                                 attention to each patch averaged over heads (not
                                 renormalised); NULL without attn */
    float *attn_patch_mass;   /* [1 + n_reg] row sums of attn_map: the share of attention
                                 that goes to patches at all */
};

/* Fills out; every array comes from a and lives until it is reset.
 * threshold > 0: ANALYZE_FIXED with that value; otherwise ANALYZE_OTSU on
 * the patch norms (registers and CLS never take part: they are expected to
 * be large). Returns 0, ERR_INPUT (bad sizes, NULL tokens, non-finite
 * threshold) or ERR_TOOBIG (arena exhausted). */
int analyze_tokens(const struct analyze_input *in, float threshold, struct arena *a,
                   struct analyze_result *out, struct err *e);

/* Colour map for heat maps: t in [0, 1] (clamped, NaN -> 0) to RGB, a
 * perceptually ordered dark-blue -> magenta -> orange -> light-yellow ramp
 * (five stops, linear between them). Cannot fail. */
void analyze_colormap(float t, unsigned char rgb[3]);

/* Renders map [grid_h, grid_w] as an RGB image [out_h, out_w, 3]: pixel
 * (x, y) shows patch (y / cell, x / cell) (nearest, i.e. each patch becomes
 * a cell x cell square), values scaled linearly from [lo, hi] to [0, 1]
 * (lo == hi: all 0). out_w <= grid_w * cell and out_h <= grid_h * cell, so
 * the padding the model saw can be cropped away. Pixels from a. Returns 0,
 * ERR_INPUT or ERR_TOOBIG. */
int analyze_heatmap(const float *map, int grid_h, int grid_w, int cell, int out_w, int out_h,
                    float lo, float hi, struct arena *a, unsigned char **rgb, struct err *e);

#endif
