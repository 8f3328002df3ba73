/* test_analyze.c - the artifact analysis: norms against the reference
 * PyTorch tokens of the fixture model, attention maps against the
 * backbone's own rows, the outlier detector on planted norm arrays
 * (bimodal, unimodal, fixed threshold), and end to end on a copy of the
 * tiny fixture model crafted so that chosen patches carry a huge norm.
 * Run from the repo root. */
#include "analyze.h"
#include "arena.h"
#include "check.h"
#include "err.h"
#include "golden_util.h"
#include "model.h"
#include "safetensors.h"
#include "tensor.h"
#include "vit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX "tests/fixtures"

/* Deterministic uniform in [0, 1) (xorshift), no libc rand state. */
static double urand(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static double nrand(unsigned long long *s)
{
    double u = urand(s) + 1e-12, v = urand(s);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static int load_rows(const char *path, struct tensor *t)
{
    struct err e = {0};
    return tensor_load_npy(path, 0, t, &e);
}

static float rownorm(const float *x, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++)
        s += (double)x[i] * x[i];
    return (float)sqrt(s);
}

static void against_reference(struct arena *a)
{
    CHECK_CASE("norms equal the reference patch/register/CLS token norms", {
        struct model *m = NULL;
        struct vit_work *w = NULL;
        struct err e = {0};
        struct tensor x = {0}, pt = {0}, rt = {0}, ct = {0};
        int rc = model_load(FIX "/models/tiny.safetensors", NULL, &m, &e);
        if (!rc)
            rc = load_input(FIX "/vit/tiny/raw_140x98", &x);
        if (!rc)
            rc = vit_work_init(m, 70, &w, &e);
        if (!rc)
            rc = load_rows(FIX "/vit/tiny/raw_140x98/x_norm_patchtokens.npy", &pt) |
                 load_rows(FIX "/vit/tiny/raw_140x98/x_norm_regtokens.npy", &rt) |
                 load_rows(FIX "/vit/tiny/raw_140x98/x_norm_clstoken.npy", &ct);
        CHECK(rc == 0, "setup: %s", e.msg);
        struct vit_out o;
        struct vit_opts vo = {.layer = -1,
                              .want = VIT_WANT_TOKENS | VIT_WANT_ATTN | VIT_WANT_PATCH_EMBED};
        if (!rc)
            rc = vit_forward(m, w, x.data, 140, 98, &vo, &o, &e);
        CHECK(rc == 0, "forward: %s", e.msg);
        struct analyze_result r;
        if (!rc) {
            struct analyze_input in = {.tokens = o.tokens, .patch_embed = o.patch_embed,
                                       .attn = o.attn, .grid_h = o.grid_h, .grid_w = o.grid_w,
                                       .n_reg = o.n_reg, .dim = o.dim, .n_head = o.n_head};
            rc = analyze_tokens(&in, 0, a, &r, &e);
            CHECK(rc == 0, "analyze: %s", e.msg);
        }
        if (!rc) {
            CHECK(r.n_patch == 70 && r.n_reg == 4, "sizes %d %d", r.n_patch, r.n_reg);
            double worst = 0;
            for (int p = 0; p < 70; p++) {
                float ref = rownorm(pt.data + (size_t)p * 64, 64);
                double d = fabs(r.patch_norm[p] - ref) / (1e-4 * (1 + ref));
                worst = d > worst ? d : worst;
            }
            for (int i = 0; i < 4; i++) {
                float ref = rownorm(rt.data + (size_t)i * 64, 64);
                double d = fabs(r.reg_norm[i] - ref) / (1e-4 * (1 + ref));
                worst = d > worst ? d : worst;
            }
            float cref = rownorm(ct.data, 64);
            double dc = fabs(r.cls_norm - cref) / (1e-4 * (1 + cref));
            worst = dc > worst ? dc : worst;
            CHECK(worst <= 1, "norms off by %.3g x tolerance", worst);

            /* Attention: every row of the backbone sums to 1; the maps are
             * the head mean of the patch columns; the mass is their sum. */
            int T = o.n_tok, R = o.n_reg;
            for (int h = 0; h < o.n_head; h++)
                for (int row = 0; row <= R; row++) {
                    double s = 0;
                    for (int j = 0; j < T; j++)
                        s += o.attn[((size_t)h * (1 + R) + row) * T + j];
                    CHECK(fabs(s - 1) < 1e-5, "head %d row %d sums to %.8f", h, row, s);
                }
            double dmax = 0, mmax = 0;
            for (int row = 0; row <= R; row++) {
                double mass = 0;
                for (int p = 0; p < 70; p++) {
                    double s = 0;
                    for (int h = 0; h < o.n_head; h++)
                        s += o.attn[((size_t)h * (1 + R) + row) * T + 1 + R + p];
                    s /= o.n_head;
                    double d = fabs(s - r.attn_map[(size_t)row * 70 + p]);
                    dmax = d > dmax ? d : dmax;
                    mass += r.attn_map[(size_t)row * 70 + p];
                }
                double d = fabs(mass - r.attn_patch_mass[row]);
                mmax = d > mmax ? d : mmax;
                CHECK(r.attn_patch_mass[row] > 0 && r.attn_patch_mass[row] <= 1 + 1e-5,
                      "row %d patch mass %g", row, r.attn_patch_mass[row]);
            }
            CHECK(dmax < 1e-6 && mmax < 1e-5, "maps differ by %g, mass by %g", dmax, mmax);

            /* Neighbour similarity: recompute one corner and one inner patch. */
            const float *pe = o.patch_embed;
            double c0 = 0;
            for (int k = 0; k < 2; k++) {
                const float *u = pe, *v = pe + (size_t)(k ? 7 : 1) * 64;
                double uv = 0, uu = 0, vv = 0;
                for (int d = 0; d < 64; d++) {
                    uv += (double)u[d] * v[d];
                    uu += (double)u[d] * u[d];
                    vv += (double)v[d] * v[d];
                }
                c0 += uv / sqrt(uu * vv) / 2;
            }
            CHECK(fabs(c0 - r.neighbor_sim[0]) < 1e-5, "corner similarity %g vs %g",
                  r.neighbor_sim[0], c0);
            for (int p = 0; p < 70; p++)
                CHECK(r.neighbor_sim[p] >= -1.0001f && r.neighbor_sim[p] <= 1.0001f,
                      "similarity %d = %g", p, r.neighbor_sim[p]);
            CHECK(r.method == ANALYZE_OTSU, "method %d", r.method);
        }
        tensor_free(&x);
        tensor_free(&pt);
        tensor_free(&rt);
        tensor_free(&ct);
        vit_work_free(w);
        model_free(m);
    });
    arena_reset(a);
}

static void detector(struct arena *a)
{
    enum { N = 400 };
    static float v[N];
    unsigned long long s = 12345;
    static const int planted[] = {7, 42, 93, 250, 399};
    int n_pl = (int)(sizeof planted / sizeof planted[0]);

    CHECK_CASE("automatic threshold finds exactly the planted outliers", {
        for (int i = 0; i < N; i++)
            v[i] = (float)(50 * exp(0.15 * nrand(&s)));
        for (int k = 0; k < n_pl; k++)
            v[planted[k]] = (float)(400 * exp(0.2 * nrand(&s)));
        struct analyze_split sp;
        struct err e = {0};
        CHECK(analyze_split_log(v, N, a, &sp, &e) == 0, "%s", e.msg);
        CHECK(sp.bimodal, "not bimodal: ratio %g separation %g", sp.ratio, sp.separation);
        CHECK(sp.n_high == n_pl, "n_high %d", sp.n_high);
        int found = 0, wrong = 0;
        for (int i = 0; i < N; i++) {
            int is_pl = 0;
            for (int k = 0; k < n_pl; k++)
                is_pl |= planted[k] == i;
            if (v[i] > sp.threshold)
                is_pl ? found++ : wrong++;
        }
        CHECK(found == n_pl && wrong == 0, "found %d of %d, %d wrong (threshold %g)", found,
              n_pl, wrong, sp.threshold);
    });

    CHECK_CASE("unimodal norms give no outliers", {
        struct err e = {0};
        struct analyze_split sp;
        /* log-normal (Gaussian in log space), several spreads */
        for (int t = 0; t < 4; t++) {
            double sd[] = {0.02, 0.1, 0.3, 0.8};
            for (int i = 0; i < N; i++)
                v[i] = (float)(20 * exp(sd[t] * nrand(&s)));
            CHECK(analyze_split_log(v, N, a, &sp, &e) == 0, "%s", e.msg);
            CHECK(!sp.bimodal, "gaussian sd %g: bimodal (ratio %g, separation %g)", sd[t],
                  sp.ratio, sp.separation);
        }
        /* uniform in log space over a factor 20 */
        for (int i = 0; i < N; i++)
            v[i] = (float)(5 * exp(3.0 * i / (N - 1)));
        CHECK(analyze_split_log(v, N, a, &sp, &e) == 0, "%s", e.msg);
        CHECK(!sp.bimodal, "uniform: bimodal (ratio %g, separation %g)", sp.ratio,
              sp.separation);
        /* all equal: no split at all */
        for (int i = 0; i < N; i++)
            v[i] = 3;
        CHECK(analyze_split_log(v, N, a, &sp, &e) == 0 && !sp.bimodal && sp.n_high == 0,
              "constant input split");
        /* a majority of large values is not an artifact minority */
        for (int i = 0; i < N; i++)
            v[i] = i < N / 3 ? 10 : 500;
        CHECK(analyze_split_log(v, N, a, &sp, &e) == 0 && !sp.bimodal,
              "two-thirds high accepted");
    });

    CHECK_CASE("fixed threshold and analyze_tokens on planted tokens", {
        /* Tokens whose norms are given: row i = norm * e_(i mod dim). */
        enum { GH = 6, GW = 5, R = 2, D = 8, NP = GH * GW };
        static float tok[(1 + R + NP) * D];
        memset(tok, 0, sizeof tok);
        for (int t = 0; t < 1 + R + NP; t++)
            tok[(size_t)t * D + t % D] = t < 1 + R ? 300.0f : (float)(10 + (t % 3));
        int pl[] = {4, 17, 29};
        for (int k = 0; k < 3; k++)
            tok[(size_t)(1 + R + pl[k]) * D + (1 + R + pl[k]) % D] = 180.0f + 10 * k;
        struct analyze_input in = {.tokens = tok, .grid_h = GH, .grid_w = GW, .n_reg = R,
                                   .dim = D};
        struct analyze_result r;
        struct err e = {0};
        CHECK(analyze_tokens(&in, 0, a, &r, &e) == 0, "%s", e.msg);
        CHECK(r.n_outlier == 3 && r.outlier[0] == 4 && r.outlier[1] == 17 &&
              r.outlier[2] == 29, "automatic: %d outliers", r.n_outlier);
        CHECK(fabsf(r.outlier_frac - 3.0f / NP) < 1e-6f, "fraction %g", r.outlier_frac);
        CHECK(analyze_tokens(&in, 185, a, &r, &e) == 0, "%s", e.msg);
        CHECK(r.method == ANALYZE_FIXED && r.n_outlier == 2 && r.outlier[0] == 17,
              "fixed 185: %d outliers", r.n_outlier);
        CHECK(fabsf(r.reg_norm[0] - 300) < 1e-3f && fabsf(r.cls_norm - 300) < 1e-3f,
              "register/CLS norms");
        CHECK(!r.neighbor_sim && !r.attn_map && isnan(r.sim_outlier), "optional maps");
        CHECK(analyze_tokens(&in, NAN, a, &r, &e) == ERR_INPUT, "NaN threshold accepted");
        in.grid_h = 0;
        CHECK(analyze_tokens(&in, 0, a, &r, &e) == ERR_INPUT, "empty grid accepted");
    });
    arena_reset(a);
}

/* A copy of the tiny fixture model where the positions of a few patches
 * (on the 37x37 grid of a 518x518 input, which uses the stored positions
 * as they are) carry a huge vector along dimension 0 and every other patch
 * a huge vector along dims 1 - 2, and the final norm weighs dimension 0 by
 * 100: the final LayerNorm then leaves those few patches with norm ~800
 * and the rest with ~8, whatever the image. */
static const int crafted_rc[][2] = {{3, 5}, {20, 30}, {36, 0}, {10, 11}};

static int write_crafted(const char *path, struct err *e)
{
    struct safetensors *st = NULL;
    int rc = safetensors_load(FIX "/models/tiny.safetensors", &st, e);
    if (rc)
        return rc;
    int n = safetensors_count(st);
    struct safetensors_entry *ent = calloc((size_t)n, sizeof *ent);
    float **bufs = calloc((size_t)n, sizeof *bufs);
    for (int i = 0; !rc && i < n; i++) {
        const struct safetensors_tensor *t = safetensors_at(st, i);
        bufs[i] = malloc((size_t)t->numel * sizeof(float));
        rc = safetensors_read_f32(t, bufs[i], 0, t->numel, e);
        ent[i].name = t->name;
        ent[i].ndim = t->ndim;
        memcpy(ent[i].shape, t->shape, sizeof t->shape);
        ent[i].data = bufs[i];
        if (!rc && !strcmp(t->name, "pos_embed")) {
            const float S = 1e4f;
            for (int p = 0; p < 37 * 37; p++) {
                float *row = bufs[i] + (size_t)(1 + p) * 64;
                int hot = 0;
                for (size_t k = 0; k < sizeof crafted_rc / sizeof crafted_rc[0]; k++)
                    hot |= p == crafted_rc[k][0] * 37 + crafted_rc[k][1];
                if (hot) {
                    row[0] += S;
                } else {
                    row[1] += S;
                    row[2] -= S;
                }
            }
        }
        if (!rc && !strcmp(t->name, "norm.weight")) {
            for (int d = 0; d < 64; d++)
                bufs[i][d] = 1.0f;
            bufs[i][0] = 100.0f;
        }
    }
    static const char *keys[] = {"embed_dim", "depth", "num_heads", "ffn",
                                 "num_register_tokens", "patch_size", "img_size",
                                 "interpolate_antialias", "interpolate_offset",
                                 "layer_norm_eps", "naming"};
    const char *meta[2 * 11];
    int n_meta = 0;
    for (int k = 0; k < 11; k++) {
        const char *v = safetensors_meta(st, keys[k]);
        if (v) {
            meta[2 * n_meta] = keys[k];
            meta[2 * n_meta + 1] = v;
            n_meta++;
        }
    }
    if (!rc)
        rc = safetensors_write(path, ent, n, meta, n_meta, e);
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(ent);
    safetensors_free(st);
    return rc;
}

static void crafted_model(struct arena *a)
{
    CHECK_CASE("crafted model: the detector finds exactly the planted patches", {
        char path[] = "/tmp/lostd_test_analyze_XXXXXX";
        int fd = mkstemp(path);
        close(fd);
        struct err e = {0};
        struct model *m = NULL;
        struct vit_work *w = NULL;
        struct tensor x = {0};
        int rc = write_crafted(path, &e);
        if (!rc)
            rc = model_load(path, NULL, &m, &e);
        if (!rc)
            rc = load_input(FIX "/vit/tiny/raw_518x518", &x);
        if (!rc)
            rc = vit_work_init(m, 37 * 37, &w, &e);
        CHECK(rc == 0, "setup: %s", e.msg);
        struct vit_out o;
        struct vit_opts vo = {.layer = -1,
                              .want = VIT_WANT_TOKENS | VIT_WANT_ATTN | VIT_WANT_PATCH_EMBED};
        if (!rc)
            rc = vit_forward(m, w, x.data, 518, 518, &vo, &o, &e);
        CHECK(rc == 0, "forward: %s", e.msg);
        if (!rc) {
            struct analyze_input in = {.tokens = o.tokens, .patch_embed = o.patch_embed,
                                       .attn = o.attn, .grid_h = o.grid_h, .grid_w = o.grid_w,
                                       .n_reg = o.n_reg, .dim = o.dim, .n_head = o.n_head};
            struct analyze_result r;
            int n_pl = (int)(sizeof crafted_rc / sizeof crafted_rc[0]);
            for (int pass = 0; pass < 2; pass++) {
                float thr = pass ? 150.0f : 0.0f;  /* automatic, then the paper's 150 */
                CHECK(analyze_tokens(&in, thr, a, &r, &e) == 0, "%s", e.msg);
                CHECK(r.n_outlier == n_pl, "threshold %g: %d outliers, want %d (split "
                      "threshold %g ratio %g separation %g)", thr, r.n_outlier, n_pl,
                      r.threshold, r.split.ratio, r.split.separation);
                for (int k = 0; k < r.n_outlier && k < n_pl; k++) {
                    int hit = 0;
                    for (int t = 0; t < n_pl; t++)
                        hit |= r.outlier[k] == crafted_rc[t][0] * 37 + crafted_rc[t][1];
                    CHECK(hit, "outlier %d at (%d, %d) was not planted", k, r.outlier[k] / 37,
                          r.outlier[k] % 37);
                }
                CHECK(pass || r.split.bimodal, "automatic split not bimodal");
            }
        }
        tensor_free(&x);
        vit_work_free(w);
        model_free(m);
        unlink(path);
    });
    arena_reset(a);
}

static void heatmap(struct arena *a)
{
    CHECK_CASE("heat map: cells, crop, colour ramp ends", {
        float map[6] = {0, 1, 2, 3, 4, 5}; /* 2 x 3 */
        unsigned char *px = NULL;
        struct err e = {0};
        CHECK(analyze_heatmap(map, 2, 3, 4, 10, 7, 0, 5, a, &px, &e) == 0, "%s", e.msg);
        unsigned char lo[3], hi[3];
        analyze_colormap(0, lo);
        analyze_colormap(1, hi);
        CHECK(px && !memcmp(px, lo, 3), "first pixel is not the low end");
        CHECK(px && !memcmp(px + ((size_t)6 * 10 + 9) * 3, hi, 3),
              "pixel (9, 6) is not the high end");
        CHECK(lo[0] + lo[1] + lo[2] < hi[0] + hi[1] + hi[2], "ramp is not increasing");
        CHECK(analyze_heatmap(map, 2, 3, 4, 13, 7, 0, 5, a, &px, &e) == ERR_INPUT,
              "crop wider than the grid accepted");
    });
    arena_reset(a);
}

int main(void)
{
    (void)compare; /* golden_util.h: only load_input is used here */
    struct arena *a = arena_init((size_t)1 << 28);
    if (!a) {
        printf("FAIL setup: no arena\n");
        return 1;
    }
    against_reference(a);
    detector(a);
    crafted_model(a);
    heatmap(a);
    arena_free(a);
    return check_status();
}
