/* lost.h - single-object discovery (LOST) on ViT patch features.
 * Takes the features of the patch tokens (CLS and registers already dropped,
 * the chosen q, k or v of the last block) and returns one box in pixels of
 * the original image, following valeoai/LOST `lost` / `patch_scoring` /
 * `detect_box` (spec: specs/lost.md section 3). Also the DINO-seg baseline of
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
};

/* Fills p with upstream defaults: k_patches 100, gram_bias 0, l2norm 0. Cannot fail. */
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

#endif
