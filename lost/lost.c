/* lost.c - the LOST stage: patch features -> Gram matrix -> seed -> box.
 * Mirrors valeoai/LOST object_discovery.py (`lost`, `patch_scoring`,
 * `detect_box`, `dino_seg`) as paraphrased in docs/specs/lost.md sections 3-4.
 * Takes float32 features from the backbone and hands out integer boxes;
 * all scratch comes from the caller's arena. Never prints, never exits. */
#include "lost.h"
#include "lost_impl.h"

#include "arena.h"
#include "err.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void lost_params_default(struct lost_params *p)
{
    p->k_patches = LOST_K_PATCHES;
    p->gram_bias = 0.0f;
    p->l2norm = 0;
    p->gram = NULL;
    p->gram_ctx = NULL;
}

int lost_check_grid(const struct lost_grid *g, size_t *n_out, struct err *e)
{
    if (!g)
        return err_set(e, ERR_INPUT, "lost: no grid given");
    if (g->rows < 1 || g->cols < 1)
        return err_set(e, ERR_INPUT, "lost: grid is %dx%d, both must be >= 1", g->rows,
                       g->cols);
    if (g->patch_y < 1 || g->patch_x < 1)
        return err_set(e, ERR_INPUT, "lost: patch size %dx%d, both must be >= 1", g->patch_y,
                       g->patch_x);
    if (g->img_h < 1 || g->img_w < 1)
        return err_set(e, ERR_INPUT, "lost: image size %dx%d, both must be >= 1", g->img_h,
                       g->img_w);
    if ((long long)g->rows * g->cols > INT_MAX / 2)
        return err_set(e, ERR_TOOBIG, "lost: grid %dx%d has too many patches", g->rows,
                       g->cols);
    /* Pixel coordinates must fit in int: (rows+1) * patch. */
    if ((long long)(g->rows + 1) * g->patch_y > INT_MAX ||
        (long long)(g->cols + 1) * g->patch_x > INT_MAX)
        return err_set(e, ERR_TOOBIG, "lost: grid x patch size overflows pixel coordinates");
    *n_out = (size_t)g->rows * (size_t)g->cols;
    return 0;
}

/* Patch-unit box -> pixels (spec 3.11). clip: cut x2/y2 to the image (LOST);
 * DINO-seg does not clip. Cannot fail. */
void lost_feat_to_px(const int bf[4], const struct lost_grid *g, int clip, int box[4])
{
    box[0] = bf[1] * g->patch_x;
    box[1] = bf[0] * g->patch_y;
    box[2] = bf[3] * g->patch_x;
    box[3] = bf[2] * g->patch_y;
    if (clip) {
        if (box[2] > g->img_w)
            box[2] = g->img_w;
        if (box[3] > g->img_h)
            box[3] = g->img_h;
    }
}

/* 4-connected component of `on` containing seed, by an explicit queue (no
 * recursion: N can be thousands). comp [N] is overwritten: 1 inside.
 * If on[seed] is 0 the component is the seed alone and 1 is returned
 * (upstream's "seed in the background" case); 0 otherwise. box_feat gets
 * r0, c0, r1, c1 with exclusive ends. queue: [N] scratch. */
int lost_seed_component(const unsigned char *on, int rows, int cols, int seed, int *queue,
                        unsigned char *comp, int box_feat[4])
{
    size_t n = (size_t)rows * (size_t)cols;
    memset(comp, 0, n);
    int r0 = seed / cols, c0 = seed % cols, r1 = r0, c1 = c0;
    comp[seed] = 1;
    int background = !on[seed];
    if (!background) {
        size_t head = 0, tail = 0;
        queue[tail++] = seed;
        while (head < tail) {
            int p = queue[head++];
            int r = p / cols, c = p % cols;
            if (r < r0) r0 = r;
            if (r > r1) r1 = r;
            if (c < c0) c0 = c;
            if (c > c1) c1 = c;
            int nb[4] = {r > 0 ? p - cols : -1, r + 1 < rows ? p + cols : -1,
                         c > 0 ? p - 1 : -1, c + 1 < cols ? p + 1 : -1};
            for (int k = 0; k < 4; k++) {
                int q = nb[k];
                if (q >= 0 && on[q] && !comp[q]) {
                    comp[q] = 1;
                    queue[tail++] = q;
                }
            }
        }
    }
    box_feat[0] = r0;
    box_feat[1] = c0;
    box_feat[2] = r1 + 1;
    box_feat[3] = c1 + 1;
    return background;
}

int lost_l2normalize(const float *feats, int n, int dim, struct arena *a, const float **out,
                     struct err *e)
{
    /* Per-patch scaling of the whole (heads concatenated) vector, as
     * torch.nn.functional.normalize(dim=-1): x / max(||x||, 1e-12). */
    float *fn = arena_alloc(a, (size_t)n * (size_t)dim * sizeof(float));
    if (!fn)
        return err_set(e, ERR_TOOBIG, "lost: no scratch for %d x %d normalised features", n,
                       dim);
    for (int i = 0; i < n; i++) {
        const float *x = feats + (size_t)i * dim;
        double ss = 0;
        for (int d = 0; d < dim; d++)
            ss += (double)x[d] * x[d];
        float nrm = (float)sqrt(ss);
        if (nrm < 1e-12f)
            nrm = 1e-12f;
        for (int d = 0; d < dim; d++)
            fn[(size_t)i * dim + d] = x[d] / nrm;
    }
    *out = fn;
    return 0;
}

/* Entry (i, j) of the biased Gram matrix from its upper triangle U. */
static inline float gram_at(const float *U, size_t n, int i, int j, float bias)
{
    return (i <= j ? U[(size_t)i * n + j] : U[(size_t)j * n + i]) + bias;
}

int lost_find_box(const float *feats, int dim, const struct lost_grid *g,
                  const struct lost_params *p, struct arena *a,
                  struct lost_result *out, struct err *e)
{
    size_t n;
    int rc = lost_check_grid(g, &n, e);
    if (rc)
        return rc;
    if (!feats || !p || !out)
        return err_set(e, ERR_INPUT, "lost: missing features, parameters or output");
    if (dim < 1)
        return err_set(e, ERR_INPUT, "lost: feature dim %d, must be >= 1", dim);
    if (p->k_patches < 1)
        return err_set(e, ERR_INPUT, "lost: k_patches %d, must be >= 1", p->k_patches);
    if (!isfinite(p->gram_bias))
        return err_set(e, ERR_INPUT, "lost: gram_bias is not finite");
    if (n > SIZE_MAX / sizeof(float) / n || n > (size_t)INT_MAX / (size_t)dim)
        return err_set(e, ERR_TOOBIG, "lost: %zu patches x dim %d is too large", n, dim);
    memset(out, 0, sizeof *out);
    int N = (int)n;

    const float *f = feats;
    if (p->l2norm) {
        int rc2 = lost_l2normalize(feats, N, dim, a, &f, e);
        if (rc2)
            return rc2;
    }

    float *A = arena_alloc(a, n * n * sizeof(float)); /* [N, N] */
    int *degree = arena_alloc(a, n * sizeof(int));   /* [N] */
    int *order = arena_alloc(a, n * sizeof(int));    /* [N] */
    int *count = arena_calloc(a, n + 1, sizeof(int)); /* degree histogram [N + 1] */
    double *msum = arena_calloc(a, n, sizeof(double));
    float *affinity = arena_alloc(a, n * sizeof(float));
    unsigned char *on = arena_alloc(a, n);
    unsigned char *comp = arena_alloc(a, n);
    int *queue = arena_alloc(a, n * sizeof(int));
    if (!A || !degree || !order || !count || !msum || !affinity || !on || !comp || !queue)
        return err_set(e, ERR_TOOBIG, "lost: no scratch for %d patches (Gram %zu MiB)", N,
                       n * n * sizeof(float) >> 20);

    /* 1. A = F F^T + b: only the upper triangle U is formed (symmetric
     * rank-k update); entries are read as a(i, j) = U[min, max] + b, so the
     * matrix is neither mirrored nor rewritten with the bias. The bias is
     * added in float exactly where upstream adds it (spec 3.1). */
    if (p->gram) {
        int grc = p->gram(p->gram_ctx, f, N, dim, A, e);
        if (grc)
            return grc;
    } else {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, N, dim, 1.0f, f, dim, 0.0f, A, N);
    }
    const float bias = p->gram_bias;

    /* 2. Degree: positive entries off the diagonal (patch_scoring). Each
     * upper entry counts for its row and its column. */
    memset(degree, 0, n * sizeof *degree);
    for (int i = 0; i < N; i++) {
        const float *row = A + (size_t)i * n;
        int d = 0;
        for (int j = i + 1; j < N; j++) {
            int pos = row[j] + bias > 0.0f;
            d += pos;
            degree[j] += pos;
        }
        degree[i] += d;
    }

    /* 3. Order by ascending degree, ties by ascending index: a counting sort
     * is stable by construction. Upstream's torch.argsort is not (spec 3.3). */
    for (int i = 0; i < N; i++)
        count[degree[i] + 1]++;
    for (int d = 1; d <= N; d++)
        count[d] += count[d - 1];
    for (int i = 0; i < N; i++)
        order[count[degree[i]]++] = i;

    /* 4-7. Seed, similars among the first k, M = column sums of their rows.
     * Double accumulation: only the sign of M matters downstream. */
    int s = order[0];
    int k = p->k_patches < N ? p->k_patches : N;
    int n_sim = 0;
    for (int t = 0; t < k; t++) {
        int q = order[t];
        if (gram_at(A, n, s, q, bias) > 0.0f) {
            /* row q of the full matrix: column q of U above the diagonal,
             * row q of U from the diagonal on */
            for (int j = 0; j < q; j++)
                msum[j] += A[(size_t)j * n + q] + bias;
            const float *qrow = A + (size_t)q * n;
            for (int j = q; j < N; j++)
                msum[j] += qrow[j] + bias;
            n_sim++;
        }
    }
    for (int j = 0; j < N; j++) {
        affinity[j] = (float)msum[j];
        on[j] = msum[j] > 0.0;
    }

    /* 8-11. Mask, the seed's 4-connected component, box. */
    out->seed = s;
    out->seed_degree = degree[s];
    out->n_similar = n_sim;
    out->seed_background = lost_seed_component(on, g->rows, g->cols, s, queue, comp,
                                           out->box_feat);
    lost_feat_to_px(out->box_feat, g, 1, out->box);

    /* Seed-only expansion (upstream visualisation): same rules on A[s, :].
     * Uses `on` as scratch after the main component is stored in comp. */
    unsigned char *comp_seed = on;
    for (int j = 0; j < N; j++)
        on[j] = gram_at(A, n, s, j, bias) > 0.0f;
    int seed_feat[4];
    unsigned char *tmp = arena_alloc(a, n);
    if (!tmp)
        return err_set(e, ERR_TOOBIG, "lost: no scratch for the seed box");
    lost_seed_component(comp_seed, g->rows, g->cols, s, queue, tmp, seed_feat);
    lost_feat_to_px(seed_feat, g, 1, out->seed_box);

    out->mask = comp;
    out->degree = degree;
    out->affinity = affinity;
    return 0;
}

struct ranked {
    float v;
    int i;
};

static int cmp_ranked(const void *pa, const void *pb)
{
    const struct ranked *x = pa, *y = pb;
    if (x->v < y->v) return -1;
    if (x->v > y->v) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

int lost_dinoseg(const float *attn, int n_head, int head, const struct lost_grid *g,
                 struct arena *a, int box[4], int box_feat[4], unsigned char **mask_out,
                 struct err *e)
{
    size_t n;
    int rc = lost_check_grid(g, &n, e);
    if (rc)
        return rc;
    if (!attn || !box)
        return err_set(e, ERR_INPUT, "dinoseg: missing attention or output");
    if (n_head < 1 || head < 0 || head >= n_head)
        return err_set(e, ERR_INPUT, "dinoseg: head %d out of range for %d heads", head,
                       n_head);
    int N = (int)n;
    struct ranked *rk = arena_alloc(a, n * sizeof *rk);
    unsigned char *keep = arena_alloc(a, n);
    int *label = arena_calloc(a, n, sizeof(int));
    int *queue = arena_alloc(a, n * sizeof(int));
    if (!rk || !keep || !label || !queue)
        return err_set(e, ERR_TOOBIG, "dinoseg: no scratch for %d patches", N);

    /* Only the chosen head's mask is ever labelled upstream, so only that
     * head is thresholded here. */
    const float *row = attn + (size_t)head * n;
    double sum = 0;
    for (int i = 0; i < N; i++) {
        if (!isfinite(row[i]))
            return err_set(e, ERR_INPUT, "dinoseg: attention value %d is not finite", i);
        rk[i].v = row[i];
        rk[i].i = i;
        sum += row[i];
    }
    qsort(rk, n, sizeof *rk, cmp_ranked);
    /* val /= sum in float32; torch's CPU cumsum accumulates in double and
     * stores float32; the comparison is against 1 - 0.6 as float32. */
    float fsum = (float)sum;
    double cum = 0;
    for (int t = 0; t < N; t++) {
        cum += (double)(rk[t].v / fsum);
        keep[rk[t].i] = (float)cum > 0.4f;
    }

    /* Label 4-connected components in raster order of their first patch:
     * the numbering scipy.ndimage.label produces. */
    int n_lab = 0;
    for (int p0 = 0; p0 < N; p0++) {
        if (!keep[p0] || label[p0])
            continue;
        n_lab++;
        size_t qh = 0, qt = 0;
        label[p0] = n_lab;
        queue[qt++] = p0;
        while (qh < qt) {
            int p = queue[qh++];
            int r = p / g->cols, c = p % g->cols;
            int nb[4] = {r > 0 ? p - g->cols : -1, r + 1 < g->rows ? p + g->cols : -1,
                         c > 0 ? p - 1 : -1, c + 1 < g->cols ? p + 1 : -1};
            for (int k = 0; k < 4; k++) {
                int q = nb[k];
                if (q >= 0 && keep[q] && !label[q]) {
                    label[q] = n_lab;
                    queue[qt++] = q;
                }
            }
        }
    }

    /* Upstream: size_components = [sum(labels == c) for c in range(max)],
     * i.e. labels 0..n-1; the last label n is never a candidate (bug kept on
     * purpose for parity). n <= 1 selects label 0, the background. */
    int best = 0;
    if (n_lab >= 2) {
        int *size = arena_calloc(a, (size_t)n_lab, sizeof(int));
        if (!size)
            return err_set(e, ERR_TOOBIG, "dinoseg: no scratch for %d labels", n_lab);
        for (int i = 0; i < N; i++)
            if (label[i] < n_lab)
                size[label[i]]++;
        best = 1;
        for (int c = 2; c < n_lab; c++)
            if (size[c] > size[best])
                best = c;
    }
    int r0 = INT_MAX, c0 = INT_MAX, r1 = -1, c1 = -1;
    for (int i = 0; i < N; i++) {
        if (label[i] != best)
            continue;
        int r = i / g->cols, c = i % g->cols;
        if (r < r0) r0 = r;
        if (r > r1) r1 = r;
        if (c < c0) c0 = c;
        if (c > c1) c1 = c;
    }
    if (r1 < 0)
        return err_set(e, ERR_INPUT,
                       "dinoseg: every patch is kept, the chosen background label is empty "
                       "(upstream fails here too)");
    int bf[4] = {r0, c0, r1 + 1, c1 + 1};
    lost_feat_to_px(bf, g, 0, box);
    if (box_feat)
        memcpy(box_feat, bf, sizeof bf);
    if (mask_out) {
        for (int i = 0; i < N; i++)
            keep[i] = label[i] == best;
        *mask_out = keep;
    }
    return 0;
}
