/* multi.c - multi-object discovery: LOST repeated on the patches left
 * outside the boxes already found (lost.h, "multi-object discovery").
 * Takes the same features as lost_find_box and hands out up to
 * LOST_MAX_OBJECTS boxes; the first is LOST's own box (same Gram, same
 * stable order, same tie-breaks), so max_objects = 1 is plain LOST. All
 * scratch from the caller's arena; never prints. */
#include "lost.h"

#include "arena.h"
#include "err.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

void lost_multi_params_default(struct lost_multi_params *mp)
{
    mp->max_objects = 1;
    mp->max_seed_degree_frac = 0.5f;
    mp->min_active = 2;
}

const char *lost_stop_name(enum lost_stop s)
{
    switch (s) {
    case LOST_STOP_MAX: return "max_objects";
    case LOST_STOP_EMPTY: return "empty";
    case LOST_STOP_DEGREE: return "seed_degree";
    case LOST_STOP_BACKGROUND: return "background";
    case LOST_STOP_OVERLAP: return "overlap";
    }
    return "unknown";
}

/* Patch-unit IoU of two r0, c0, r1, c1 boxes (exclusive ends). */
static double iou_feat(const int a[4], const int b[4])
{
    long ih = (long)(a[2] < b[2] ? a[2] : b[2]) - (a[0] > b[0] ? a[0] : b[0]);
    long iw = (long)(a[3] < b[3] ? a[3] : b[3]) - (a[1] > b[1] ? a[1] : b[1]);
    if (ih <= 0 || iw <= 0)
        return 0;
    double inter = (double)ih * iw;
    double ua = (double)(a[2] - a[0]) * (a[3] - a[1]) + (double)(b[2] - b[0]) * (b[3] - b[1]);
    return inter / (ua - inter);
}

static int contains(const int outer[4], const int inner[4])
{
    return outer[0] <= inner[0] && outer[1] <= inner[1] && outer[2] >= inner[2] &&
           outer[3] >= inner[3];
}

int lost_find_boxes(const float *feats, int dim, const struct lost_grid *g,
                    const struct lost_params *p, const struct lost_multi_params *mp,
                    struct arena *a, struct lost_multi_result *out, struct err *e)
{
    if (!feats || !g || !p || !mp || !out)
        return err_set(e, ERR_INPUT, "lost: missing features, parameters or output");
    if (mp->max_objects < 1 || mp->max_objects > LOST_MAX_OBJECTS)
        return err_set(e, ERR_INPUT, "lost: max_objects %d, allowed 1..%d", mp->max_objects,
                       LOST_MAX_OBJECTS);
    if (!(mp->max_seed_degree_frac >= 0.0f && mp->max_seed_degree_frac <= 1.0f))
        return err_set(e, ERR_INPUT, "lost: max_seed_degree_frac must be in [0, 1]");
    if (g->rows < 1 || g->cols < 1 || g->patch_y < 1 || g->patch_x < 1 || g->img_h < 1 ||
        g->img_w < 1 || dim < 1)
        return err_set(e, ERR_INPUT, "lost: bad grid or feature sizes");
    if (p->k_patches < 1 || !isfinite(p->gram_bias))
        return err_set(e, ERR_INPUT, "lost: bad k_patches or gram_bias");
    if ((long long)g->rows * g->cols > 1 << 26 ||
        (long long)(g->rows + 1) * g->patch_y > INT_MAX ||
        (long long)(g->cols + 1) * g->patch_x > INT_MAX ||
        (long long)g->rows * g->cols > INT_MAX / dim)
        return err_set(e, ERR_TOOBIG, "lost: grid %dx%d is too large", g->rows, g->cols);
    memset(out, 0, sizeof *out);
    size_t n = (size_t)g->rows * (size_t)g->cols;
    if (n > SIZE_MAX / sizeof(float) / n)
        return err_set(e, ERR_TOOBIG, "lost: %zu patches is too many", n);
    int N = (int)n, C = g->cols;

    const float *f = feats;
    if (p->l2norm) {
        int rc2 = lost_l2normalize(feats, N, dim, a, &f, e);
        if (rc2)
            return rc2;
    }
    float *A = arena_alloc(a, n * n * sizeof(float));
    int *degree = arena_alloc(a, n * sizeof(int));
    int *order = arena_alloc(a, n * sizeof(int));
    int *count = arena_alloc(a, (n + 1) * sizeof(int));
    double *msum = arena_alloc(a, n * sizeof(double));
    unsigned char *active = arena_alloc(a, n);
    unsigned char *on = arena_alloc(a, n);
    unsigned char *comp = arena_alloc(a, n);
    int *queue = arena_alloc(a, n * sizeof(int));
    if (!A || !degree || !order || !count || !msum || !active || !on || !comp || !queue)
        return err_set(e, ERR_TOOBIG, "lost: no scratch for %d patches (Gram %zu MiB)", N,
                       n * n * sizeof(float) >> 20);
    /* The Gram matrix as lost_find_box builds it (mirrored upper triangle). */
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, N, dim, 1.0f, f, dim, 0.0f, A, N);
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            A[(size_t)j * n + i] = A[(size_t)i * n + j];
    if (p->gram_bias != 0.0f)
        for (size_t i = 0; i < n * n; i++)
            A[i] += p->gram_bias;
    memset(active, 1, n);
    int n_active = N;

    for (;;) {
        int first = out->n == 0;
        if (out->n == mp->max_objects) {
            out->stop = LOST_STOP_MAX;
            break;
        }
        if (!first && n_active < (mp->min_active > 1 ? mp->min_active : 1)) {
            out->stop = LOST_STOP_EMPTY;
            break;
        }
        /* Degrees among active patches, stable order by counting sort. */
        memset(count, 0, (n + 1) * sizeof(int));
        for (int i = 0; i < N; i++) {
            if (!active[i])
                continue;
            const float *row = A + (size_t)i * n;
            int d = 0;
            for (int j = 0; j < N; j++)
                d += active[j] && j != i && row[j] > 0.0f;
            degree[i] = d;
            count[d + 1]++;
        }
        for (int d = 1; d <= N; d++)
            count[d] += count[d - 1];
        for (int i = 0; i < N; i++)
            if (active[i])
                order[count[degree[i]]++] = i;
        int s = order[0];
        if (!first && degree[s] > mp->max_seed_degree_frac * (float)(n_active - 1)) {
            out->stop = LOST_STOP_DEGREE;
            break;
        }
        int k = p->k_patches < n_active ? p->k_patches : n_active;
        const float *srow = A + (size_t)s * n;
        memset(msum, 0, n * sizeof(double));
        for (int t = 0; t < k; t++) {
            int q = order[t];
            if (srow[q] > 0.0f) {
                const float *qrow = A + (size_t)q * n;
                for (int j = 0; j < N; j++)
                    msum[j] += qrow[j];
            }
        }
        for (int j = 0; j < N; j++)
            on[j] = active[j] && msum[j] > 0.0;
        if (!first && !on[s]) {
            out->stop = LOST_STOP_BACKGROUND;
            break;
        }
        /* The seed's 4-connected component inside the mask; the seed alone
         * when it is outside (first object only: LOST's fallback). */
        memset(comp, 0, n);
        comp[s] = 1;
        int r0 = s / C, c0 = s % C, r1 = r0, c1 = c0;
        if (on[s]) {
            size_t head = 0, tail = 0;
            queue[tail++] = s;
            while (head < tail) {
                int q = queue[head++];
                int r = q / C, c = q % C;
                if (r < r0) r0 = r;
                if (r > r1) r1 = r;
                if (c < c0) c0 = c;
                if (c > c1) c1 = c;
                int nb[4] = {r > 0 ? q - C : -1, r + 1 < g->rows ? q + C : -1,
                             c > 0 ? q - 1 : -1, c + 1 < C ? q + 1 : -1};
                for (int t = 0; t < 4; t++)
                    if (nb[t] >= 0 && on[nb[t]] && !comp[nb[t]]) {
                        comp[nb[t]] = 1;
                        queue[tail++] = nb[t];
                    }
            }
        }
        struct lost_object *o = &out->obj[out->n];
        int bf[4] = {r0, c0, r1 + 1, c1 + 1};
        int dup = 0;
        for (int t = 0; t < out->n && !dup; t++)
            dup = iou_feat(bf, out->obj[t].box_feat) > 0.5 || contains(bf, out->obj[t].box_feat);
        if (dup) {
            out->stop = LOST_STOP_OVERLAP;
            break;
        }
        memcpy(o->box_feat, bf, sizeof bf);
        o->box[0] = bf[1] * g->patch_x;
        o->box[1] = bf[0] * g->patch_y;
        o->box[2] = bf[3] * g->patch_x;
        o->box[3] = bf[2] * g->patch_y;
        if (o->box[2] > g->img_w)
            o->box[2] = g->img_w;
        if (o->box[3] > g->img_h)
            o->box[3] = g->img_h;
        o->seed = s;
        o->seed_degree = degree[s];
        o->n_active = n_active;
        out->n++;
        for (int r = bf[0]; r < bf[2]; r++)
            for (int c = bf[1]; c < bf[3]; c++)
                if (active[r * C + c]) {
                    active[r * C + c] = 0;
                    n_active--;
                }
    }
    return 0;
}
