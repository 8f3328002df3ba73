/* lost.h - single-object discovery (LOST) on ViT patch features.
 * Takes the features of the patch tokens (CLS and registers already dropped,
 * the chosen q, k or v of the last block) and returns one box in pixels of
 * the original image, following valeoai/LOST `lost` / `patch_scoring` /
 * `detect_box` (spec: docs/specs/lost.md section 3). Also the DINO-seg baseline of
 * the same repository (`dino_seg`, section 4). Pure computation: no I/O,
 * scratch only from the given arena, thread-safe with one arena per thread. */
#ifndef LOSTD_LOST_H
#define LOSTD_LOST_H

struct arena;
struct err;

#define LOST_K_PATCHES 100

struct lost_params {
    int k_patches;      /* candidates: first k patches of the degree order (>= 1) */
    float gram_bias;    /* added to every Gram entry, diagonal included (registers
                         * paper; not upstream). 0 = upstream LOST. */
    int l2norm;         /* nonzero: L2-normalise each patch's feature row first
                         * (a zero row stays zero) */
    /* Optional Gram provider: writes the upper triangle (entries i <= j) of
     * F F^T into U [n, n] row-major, F [n, dim]; returns 0 or an ERR_* code.
     * NULL = cblas_ssyrk. Lets a caller run the product on its own threads and
     * kernels (the pipeline uses the workspace's); signs of entries within
     * rounding of 0 may then differ from OpenBLAS's. */
    int (*gram)(void *ctx, const float *f, int n, int dim, float *U, struct err *e);
    void *gram_ctx;
};

/* Fills p with upstream defaults: k_patches 100, gram_bias 0, l2norm 0, no
 * Gram provider. Cannot fail. */
void lost_params_default(struct lost_params *p);

/* Geometry of one feature map. rows x cols = N patches, patch index
 * p = r * cols + c (row-major). Boxes in pixels are scaled by (patch_y,
 * patch_x) and their end clipped to (img_h, img_w). */
struct lost_grid {
    int rows, cols;         /* R, C */
    int patch_y, patch_x;   /* sy, sx: pixels per patch (the ViT patch size) */
    int img_h, img_w;       /* original image, before padding to the grid */
};

struct lost_result {
    int box[4];             /* x1, y1, x2, y2: original-image pixels, x2/y2 exclusive,
                             * x2 <= img_w, y2 <= img_h */
    int box_feat[4];        /* r0, c0, r1, c1: patch units, r1/c1 exclusive */
    int seed_box[4];        /* the "seed expansion" box of upstream's visualisation:
                             * same rules applied to the Gram row A[seed, :] */
    int seed;               /* patch index of the seed (min degree, lowest index on ties) */
    int seed_degree;        /* #{ j != seed : A[seed, j] > 0 } */
    int n_similar;          /* |S|: candidates q with A[seed, q] > 0 */
    int seed_background;    /* 1 when M[seed] <= 0 (upstream raises ValueError):
                             * box/box_feat are then the seed patch alone */
    /* Maps for display, [N] row-major, allocated from the arena given to
     * lost_find_box: valid until that arena is reset or rewound. */
    unsigned char *mask;    /* 1 on the connected component kept for the box */
    int *degree;            /* degree of every patch */
    float *affinity;        /* M_j = sum over q in S of A[q, j] */
};

/* feats: [rows * cols, dim] row-major float32, read only (finite values
 * expected). Steps (spec 3): A = F F^T (+ bias), degree, stable order
 * (ascending degree, ties by ascending patch index), seed, similars among
 * the first k, M, mask M > 0, 4-connected component of the seed, box.
 * Scratch: N*N floats for the Gram matrix plus O(N + N*dim) from a.
 * Returns 0; ERR_INPUT on bad sizes/parameters; ERR_TOOBIG when a runs out
 * (or N*N overflows). e->msg says which. */
int lost_find_box(const float *feats, int dim, const struct lost_grid *g,
                  const struct lost_params *p, struct arena *a,
                  struct lost_result *out, struct err *e);

/* feats [n, dim] with every row scaled to unit L2 norm (x / max(||x||,
 * 1e-12), as torch's F.normalize), into arena memory at *out. Returns 0 or
 * ERR_TOOBIG. */
int lost_l2normalize(const float *feats, int n, int dim, struct arena *a, const float **out,
                     struct err *e);

/* DINO-seg baseline (upstream `dino_seg`, spec 4).
 * attn: [n_head, rows * cols] row-major, the last block's attention of the
 * CLS token to the patch tokens (a[h, 0, 1:], register columns dropped).
 * For every head: sort ascending (stable: ties by ascending patch index;
 * upstream's torch.sort is not stable), divide by the row sum, cumulative
 * sum; keep patches whose cumulative mass > 0.4. Head `head` is labelled
 * (4-connectivity, labels 1..n in raster order as scipy.ndimage.label).
 *
 * Upstream quirk, reproduced on purpose: component sizes are only computed
 * for labels 0..n-1, so the last label n never competes; with n >= 2 the
 * winner is the largest of labels 1..n-1 (first on ties), and with n <= 1
 * the "component" is label 0, the BACKGROUND (every unkept patch). The box
 * uses the +1 rule, scaled by (patch_y, patch_x), and is NOT clipped to the
 * image (upstream does not clip here). If that chosen set is empty (n == 1 and
 * every patch kept) upstream crashes; we return ERR_INPUT.
 * box: x1, y1, x2, y2 pixels; box_feat (may be NULL): r0, c0, r1, c1.
 * mask_out (may be NULL): [N] from the arena, 1 on the chosen component.
 * Returns 0, ERR_INPUT (bad sizes, head out of range, empty choice) or ERR_TOOBIG. */
int lost_dinoseg(const float *attn, int n_head, int head, const struct lost_grid *g,
                 struct arena *a, int box[4], int box_feat[4], unsigned char **mask_out,
                 struct err *e);

/* ---- multi-object discovery (lost/multi.c) -------------------------------
 * LOST repeated on the patches outside the boxes already found. Object 1 is
 * exactly lost_find_box's box. Each later round masks every patch inside an
 * earlier box (the rectangle, not only the component), then reruns the same
 * steps on the remaining ("active") patches only: degrees count active
 * neighbours, the seed is the active patch of lowest degree (lowest index on
 * ties), the k candidates are the first k active patches in that order, the
 * mask and the seed's 4-connected component stay inside the active set.
 * Stopping rule, checked for every object after the first, in this order:
 *   LOST_STOP_MAX         max_objects boxes found;
 *   LOST_STOP_EMPTY       fewer than min_active active patches left;
 *   LOST_STOP_DEGREE      the new seed's degree > max_seed_degree_frac *
 *                         (active - 1): the seed is similar to most of what is
 *                         left, i.e. what is left is background;
 *   LOST_STOP_BACKGROUND  the seed falls outside its own mask (M[seed] <= 0);
 *   LOST_STOP_OVERLAP     the new box has IoU > 0.5 with an earlier box or
 *                         contains one: the same object (or object plus
 *                         background) again. The box is dropped.
 * The Gram matrix is computed once (N*N floats from a). */

#define LOST_MAX_OBJECTS 32

struct lost_multi_params {
    int max_objects;            /* 1..LOST_MAX_OBJECTS; 1 = LOST */
    float max_seed_degree_frac; /* default 0.5 */
    int min_active;             /* default 2 */
};

enum lost_stop {
    LOST_STOP_MAX = 0,
    LOST_STOP_EMPTY,
    LOST_STOP_DEGREE,
    LOST_STOP_BACKGROUND,
    LOST_STOP_OVERLAP
};

struct lost_object {
    int box[4];             /* x1, y1, x2, y2 original-image pixels as lost_result.box */
    int box_feat[4];        /* r0, c0, r1, c1 patch units, exclusive ends */
    int seed;               /* patch index */
    int seed_degree;        /* among the active patches of its round */
    int n_active;           /* active patches in its round (N for the first) */
};

struct lost_multi_result {
    int n;                              /* objects found, >= 1 */
    struct lost_object obj[LOST_MAX_OBJECTS];
    enum lost_stop stop;                /* why the search ended */
};

/* Defaults above, max_objects 1. Cannot fail. */
void lost_multi_params_default(struct lost_multi_params *mp);

/* "max_objects", "empty", "seed_degree", "background", "overlap". */
const char *lost_stop_name(enum lost_stop s);

/* feats, dim, g, p as lost_find_box. Returns 0; ERR_INPUT on bad sizes or
 * parameters (max_objects outside 1..LOST_MAX_OBJECTS, frac not in [0, 1]);
 * ERR_TOOBIG when a runs out. */
int lost_find_boxes(const float *feats, int dim, const struct lost_grid *g,
                    const struct lost_params *p, const struct lost_multi_params *mp,
                    struct arena *a, struct lost_multi_result *out, struct err *e);

#endif
