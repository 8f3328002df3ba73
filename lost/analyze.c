/* analyze.c - artifact analysis: token norms, high-norm outliers, input
 * redundancy and attention maps of CLS and registers (see analyze.h).
 * Takes the arrays of one vit_forward and hands out per-patch maps from the
 * caller's arena; never runs the model, never prints. */
#include "analyze.h"

#include "arena.h"
#include "err.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *pa, const void *pb)
{
    double x = *(const double *)pa, y = *(const double *)pb;
    return (x > y) - (x < y);
}

int analyze_split_log(const float *norms, int n, struct arena *a, struct analyze_split *out,
                      struct err *e)
{
    if (!norms || !out || n < 1)
        return err_set(e, ERR_INPUT, "analyze: no norms to split");
    memset(out, 0, sizeof *out);
    size_t mark = arena_mark(a);
    double *x = arena_alloc(a, (size_t)n * sizeof *x);
    if (!x)
        return err_set(e, ERR_TOOBIG, "analyze: no scratch for %d norms", n);
    double sum = 0, sum2 = 0;
    for (int i = 0; i < n; i++) {
        double v = norms[i] > 1e-12f ? norms[i] : 1e-12;
        x[i] = log(v);
    }
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    for (int i = 0; i < n; i++) {
        sum += x[i];
        sum2 += x[i] * x[i];
    }
    /* Exact Otsu: low class x[0..i], high class x[i+1..n-1]. */
    int best = -1;
    double best_var = -1, s0 = 0, q0 = 0;
    for (int i = 0; i + 1 < n; i++) {
        s0 += x[i];
        q0 += x[i] * x[i];
        if (!(x[i] < x[i + 1]))
            continue;
        double n0 = i + 1, n1 = n - n0;
        double m0 = s0 / n0, m1 = (sum - s0) / n1;
        double v = n0 / n * (n1 / n) * (m1 - m0) * (m1 - m0);
        if (v > best_var) {
            best_var = v;
            best = i;
        }
    }
    if (best < 0) {
        arena_rewind(a, mark);
        return 0;
    }
    s0 = q0 = 0;
    for (int i = 0; i <= best; i++) {
        s0 += x[i];
        q0 += x[i] * x[i];
    }
    double n0 = best + 1, n1 = n - n0;
    double m0 = s0 / n0, m1 = (sum - s0) / n1;
    double v0 = q0 / n0 - m0 * m0, v1 = (sum2 - q0) / n1 - m1 * m1;
    double sd = sqrt(v0 > 0 ? v0 : 0) + sqrt(v1 > 0 ? v1 : 0);
    out->threshold = (float)exp(0.5 * (x[best] + x[best + 1]));
    out->n_high = n - (best + 1);
    out->ratio = (float)exp(m1 - m0);
    out->separation = sd > 0 ? (float)((m1 - m0) / sd) : INFINITY;
    out->bimodal = 2 * out->n_high <= n && out->ratio >= ANALYZE_MIN_RATIO &&
                   out->separation >= ANALYZE_MIN_SEPARATION;
    arena_rewind(a, mark);
    return 0;
}

static float cosine(const float *u, const float *v, int dim)
{
    double uv = 0, uu = 0, vv = 0;
    for (int d = 0; d < dim; d++) {
        uv += (double)u[d] * v[d];
        uu += (double)u[d] * u[d];
        vv += (double)v[d] * v[d];
    }
    if (uu <= 0 || vv <= 0)
        return 0.0f;
    return (float)(uv / sqrt(uu * vv));
}

static float row_norm(const float *x, int dim)
{
    double s = 0;
    for (int d = 0; d < dim; d++)
        s += (double)x[d] * x[d];
    return (float)sqrt(s);
}

int analyze_tokens(const struct analyze_input *in, float threshold, struct arena *a,
                   struct analyze_result *out, struct err *e)
{
    if (!in || !out || !in->tokens)
        return err_set(e, ERR_INPUT, "analyze: no tokens");
    if (in->grid_h < 1 || in->grid_w < 1 || in->dim < 1 || in->n_reg < 0 ||
        (in->attn && in->n_head < 1))
        return err_set(e, ERR_INPUT, "analyze: bad sizes (grid %dx%d, dim %d, %d registers, "
                       "%d heads)", in->grid_h, in->grid_w, in->dim, in->n_reg, in->n_head);
    if ((long long)in->grid_h * in->grid_w > INT_MAX / 4 ||
        (long long)in->grid_h * in->grid_w * in->dim > (long long)(SIZE_MAX / 8))
        return err_set(e, ERR_TOOBIG, "analyze: grid %dx%d is too large", in->grid_h,
                       in->grid_w);
    if (!isfinite(threshold))
        return err_set(e, ERR_INPUT, "analyze: threshold is not finite");
    memset(out, 0, sizeof *out);
    int N = in->grid_h * in->grid_w, R = in->n_reg, D = in->dim;
    int T = 1 + R + N;
    out->grid_h = in->grid_h;
    out->grid_w = in->grid_w;
    out->n_patch = N;
    out->n_reg = R;
    out->n_head = in->attn ? in->n_head : 0;

    out->patch_norm = arena_alloc(a, (size_t)N * sizeof(float));
    out->reg_norm = R ? arena_alloc(a, (size_t)R * sizeof(float)) : NULL;
    unsigned char *is_out = arena_calloc(a, (size_t)N, 1);
    if (!out->patch_norm || (R && !out->reg_norm) || !is_out)
        return err_set(e, ERR_TOOBIG, "analyze: no scratch for %d norms", N);
    out->cls_norm = row_norm(in->tokens, D);
    for (int r = 0; r < R; r++)
        out->reg_norm[r] = row_norm(in->tokens + (size_t)(1 + r) * D, D);
    for (int p = 0; p < N; p++)
        out->patch_norm[p] = row_norm(in->tokens + (size_t)(1 + R + p) * D, D);

    /* Outliers. */
    int rc;
    if (threshold > 0) {
        out->method = ANALYZE_FIXED;
        out->threshold = threshold;
    } else {
        out->method = ANALYZE_OTSU;
        if ((rc = analyze_split_log(out->patch_norm, N, a, &out->split, e)))
            return rc;
        out->threshold = out->split.threshold;
    }
    int take = out->method == ANALYZE_FIXED || out->split.bimodal;
    for (int p = 0; p < N; p++)
        if (take && out->patch_norm[p] > out->threshold) {
            is_out[p] = 1;
            out->n_outlier++;
        }
    out->outlier = arena_alloc(a, (size_t)(out->n_outlier ? out->n_outlier : 1) * sizeof(int));
    if (!out->outlier)
        return err_set(e, ERR_TOOBIG, "analyze: no scratch for the outlier list");
    for (int p = 0, k = 0; p < N; p++)
        if (is_out[p])
            out->outlier[k++] = p;
    out->outlier_frac = (float)out->n_outlier / (float)N;

    /* Redundancy of the input: where the registers paper finds artifacts. */
    out->sim_outlier = out->sim_other = NAN;
    if (in->patch_embed) {
        out->neighbor_sim = arena_alloc(a, (size_t)N * sizeof(float));
        if (!out->neighbor_sim)
            return err_set(e, ERR_TOOBIG, "analyze: no scratch for the similarity map");
        int W = in->grid_w, H = in->grid_h;
        double so = 0, sr = 0;
        for (int p = 0; p < N; p++) {
            int r = p / W, c = p % W;
            int nb[4] = {r > 0 ? p - W : -1, r + 1 < H ? p + W : -1, c > 0 ? p - 1 : -1,
                         c + 1 < W ? p + 1 : -1};
            double s = 0;
            int cnt = 0;
            for (int k = 0; k < 4; k++)
                if (nb[k] >= 0) {
                    s += cosine(in->patch_embed + (size_t)p * D,
                                in->patch_embed + (size_t)nb[k] * D, D);
                    cnt++;
                }
            out->neighbor_sim[p] = cnt ? (float)(s / cnt) : 0.0f;
            if (is_out[p])
                so += out->neighbor_sim[p];
            else
                sr += out->neighbor_sim[p];
        }
        if (out->n_outlier)
            out->sim_outlier = (float)(so / out->n_outlier);
        if (out->n_outlier < N)
            out->sim_other = (float)(sr / (N - out->n_outlier));
    }

    /* Attention of CLS and registers to the patches, head mean. */
    if (in->attn) {
        size_t rows = (size_t)(1 + R);
        out->attn_map = arena_calloc(a, rows * (size_t)N, sizeof(float));
        out->attn_patch_mass = arena_calloc(a, rows, sizeof(float));
        if (!out->attn_map || !out->attn_patch_mass)
            return err_set(e, ERR_TOOBIG, "analyze: no scratch for the attention maps");
        for (size_t r = 0; r < rows; r++) {
            float *dst = out->attn_map + r * (size_t)N;
            double mass = 0;
            for (int p = 0; p < N; p++) {
                double s = 0;
                for (int h = 0; h < in->n_head; h++)
                    s += in->attn[((size_t)h * rows + r) * (size_t)T + (size_t)(1 + R + p)];
                dst[p] = (float)(s / in->n_head);
                mass += dst[p];
            }
            out->attn_patch_mass[r] = (float)mass;
        }
    }
    return 0;
}

void analyze_colormap(float t, unsigned char rgb[3])
{
    /* Five stops of an inferno-like ramp: dark blue, purple, magenta-red,
     * orange, light yellow. Ordered in lightness, readable in grey. */
    static const float stop[5][3] = {
        {0, 0, 4}, {87, 16, 110}, {188, 55, 84}, {249, 142, 9}, {252, 255, 164}};
    if (!(t > 0))
        t = 0;
    if (t > 1)
        t = 1;
    float s = t * 4;
    int i = (int)s;
    if (i > 3)
        i = 3;
    float f = s - i;
    for (int c = 0; c < 3; c++) {
        float v = stop[i][c] + f * (stop[i + 1][c] - stop[i][c]);
        rgb[c] = (unsigned char)(v + 0.5f);
    }
}

int analyze_heatmap(const float *map, int grid_h, int grid_w, int cell, int out_w, int out_h,
                    float lo, float hi, struct arena *a, unsigned char **rgb, struct err *e)
{
    if (!map || !rgb || grid_h < 1 || grid_w < 1 || cell < 1 || out_w < 1 || out_h < 1 ||
        (long long)out_w > (long long)grid_w * cell || (long long)out_h > (long long)grid_h * cell)
        return err_set(e, ERR_INPUT, "heatmap: bad sizes (grid %dx%d, cell %d, out %dx%d)",
                       grid_h, grid_w, cell, out_h, out_w);
    if ((long long)out_w * out_h > (1LL << 31))
        return err_set(e, ERR_TOOBIG, "heatmap: %dx%d is too large", out_w, out_h);
    unsigned char *px = arena_alloc(a, (size_t)out_w * (size_t)out_h * 3);
    if (!px)
        return err_set(e, ERR_TOOBIG, "heatmap: no scratch for %dx%d pixels", out_w, out_h);
    float span = hi - lo;
    for (int y = 0; y < out_h; y++) {
        const float *row = map + (size_t)(y / cell) * grid_w;
        unsigned char *dst = px + (size_t)y * out_w * 3;
        for (int x = 0; x < out_w; x++) {
            float v = span > 0 ? (row[x / cell] - lo) / span : 0.0f;
            analyze_colormap(v, dst + (size_t)x * 3);
        }
    }
    *rgb = px;
    return 0;
}
