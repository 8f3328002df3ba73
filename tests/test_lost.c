/* test_lost.c - LOST core against the fixtures made with the reference
 * Python (tests/fixtures/lost/<case>/{feats.npy,case.json}), plus the
 * bias / background fallback, L2 normalisation, tie-break, limits, and the
 * DINO-seg baseline on crafted attention rows. Run from the repo root. */
#include "arena.h"
#include "check.h"
#include "err.h"
#include "lost.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURES "tests/fixtures/lost"

/* Minimal .npy reader for the fixtures ('<f4', C order, 2-D): the test
 * does not depend on core/tensor.c. Returns malloc'd data or NULL. */
static float *load_npy2(const char *path, long *rows, long *cols)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char pre[10];
    float *data = NULL;
    char hdr[4096];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) || pre[6] != 1)
        goto out;
    size_t hl = pre[8] | (size_t)pre[9] << 8;
    if (hl >= sizeof hdr || fread(hdr, 1, hl, f) != hl)
        goto out;
    hdr[hl] = 0;
    if (!strstr(hdr, "'<f4'") || !strstr(hdr, "'fortran_order': False"))
        goto out;
    const char *sh = strstr(hdr, "'shape': (");
    if (!sh || sscanf(sh + 10, "%ld, %ld", rows, cols) != 2)
        goto out;
    size_t n = (size_t)*rows * (size_t)*cols;
    data = malloc(n * sizeof(float));
    if (data && fread(data, sizeof(float), n, f) != n) {
        free(data);
        data = NULL;
    }
out:
    fclose(f);
    return data;
}

static int jint(json_t *o, const char *k) { return (int)json_integer_value(json_object_get(o, k)); }

static int jarr_eq(json_t *a, const int *v, int n)
{
    if (!json_is_array(a) || (int)json_array_size(a) != n)
        return 0;
    for (int i = 0; i < n; i++)
        if (json_integer_value(json_array_get(a, (size_t)i)) != v[i])
            return 0;
    return 1;
}

static void fixture_body(const char *name, struct arena *a)
{
    char path[512];
    {
        snprintf(path, sizeof path, FIXTURES "/%.200s/case.json", name);
        json_error_t je;
        json_t *c = json_load_file(path, 0, &je);
        CHECK(c, "cannot read %s: %s", path, je.text);
        snprintf(path, sizeof path, FIXTURES "/%.200s/feats.npy", name);
        long n = 0, d = 0;
        float *feats = load_npy2(path, &n, &d);
        CHECK(feats, "cannot read %s", path);
        if (c && feats) {
            json_t *ex = json_object_get(c, "expected");
            json_t *grid = json_object_get(c, "grid"), *hw = json_object_get(c, "image_hw");
            struct lost_grid g = {
                .rows = (int)json_integer_value(json_array_get(grid, 0)),
                .cols = (int)json_integer_value(json_array_get(grid, 1)),
                .patch_y = jint(c, "patch"), .patch_x = jint(c, "patch"),
                .img_h = (int)json_integer_value(json_array_get(hw, 0)),
                .img_w = (int)json_integer_value(json_array_get(hw, 1))};
            struct lost_params p;
            lost_params_default(&p);
            p.k_patches = jint(c, "k_patches");
            p.gram_bias = (float)json_number_value(json_object_get(c, "gram_bias"));
            CHECK(n == (long)g.rows * g.cols, "feats has %ld rows for grid %dx%d", n, g.rows,
                  g.cols);
            struct lost_result r;
            struct err e;
            err_clear(&e);
            arena_reset(a);
            int rc = lost_find_box(feats, (int)d, &g, &p, a, &r, &e);
            CHECK(rc == 0, "lost_find_box: %s", e.msg);
            if (rc == 0) {
                CHECK(jarr_eq(json_object_get(ex, "box"), r.box, 4), "box %d,%d,%d,%d",
                      r.box[0], r.box[1], r.box[2], r.box[3]);
                CHECK(jarr_eq(json_object_get(ex, "box_feat"), r.box_feat, 4),
                      "box_feat %d,%d,%d,%d", r.box_feat[0], r.box_feat[1], r.box_feat[2],
                      r.box_feat[3]);
                CHECK(r.seed == jint(ex, "seed"), "seed %d, want %d", r.seed, jint(ex, "seed"));
                CHECK(r.seed_degree == jint(ex, "degree"), "degree %d, want %d",
                      r.seed_degree, jint(ex, "degree"));
                CHECK(r.n_similar == jint(ex, "n_similars"), "n_similar %d, want %d",
                      r.n_similar, jint(ex, "n_similars"));
                CHECK(!r.seed_background, "seed flagged background");
                CHECK(r.degree[r.seed] == r.seed_degree, "degree map disagrees");
                /* The mask is the component: its bounding box is box_feat. */
                int r0 = 1 << 30, c0 = 1 << 30, r1 = -1, c1 = -1, msum = 0;
                for (int i = 0; i < (int)n; i++)
                    if (r.mask[i]) {
                        int rr = i / g.cols, cc = i % g.cols;
                        r0 = rr < r0 ? rr : r0;
                        r1 = rr > r1 ? rr : r1;
                        c0 = cc < c0 ? cc : c0;
                        c1 = cc > c1 ? cc : c1;
                        msum++;
                        CHECK(r.affinity[i] > 0, "mask patch %d has M <= 0", i);
                    }
                CHECK(r.mask[r.seed] && r0 == r.box_feat[0] && c0 == r.box_feat[1] &&
                          r1 + 1 == r.box_feat[2] && c1 + 1 == r.box_feat[3],
                      "mask (%d patches) does not match box_feat", msum);
            }
        }
        free(feats);
        json_decref(c);
    }
}

static void fixture_case(const char *name, struct arena *a)
{
    char title[300];
    snprintf(title, sizeof title, "fixture %.200s", name);
    CHECK_CASE(title, fixture_body(name, a));
}

static void case_background(struct arena *a)
{
    enum { R = 3, C = 4, D = 2 };
    float f[R * C * D];
    for (int i = 0; i < R * C * D; i++)
        f[i] = 0.01f;
    struct lost_grid g = {R, C, 14, 14, 40, 50};
    struct lost_params p;
    lost_params_default(&p);
    p.gram_bias = -1.0f;
    struct lost_result r;
    struct err e;
    arena_reset(a);
    int rc = lost_find_box(f, D, &g, &p, a, &r, &e);
    CHECK(rc == 0, "rc %d: %s", rc, e.msg);
    CHECK(r.seed_background == 1, "seed_background %d", r.seed_background);
    CHECK(r.seed == 0 && r.seed_degree == 0 && r.n_similar == 0, "seed %d deg %d sim %d",
          r.seed, r.seed_degree, r.n_similar);
    int want[4] = {0, 0, 14, 14};
    CHECK(!memcmp(r.box, want, sizeof want), "box %d,%d,%d,%d", r.box[0], r.box[1],
          r.box[2], r.box[3]);
    int nm = 0;
    for (int i = 0; i < R * C; i++)
        nm += r.mask[i];
    CHECK(nm == 1 && r.mask[0], "mask has %d patches", nm);
}

static void case_bias_all_positive(struct arena *a)
{
    /* Two orthogonal groups; a bias of +2 makes every entry positive,
     * so every degree is N-1 and the seed is patch 0 (tie -> lowest index)
     * and M > 0 everywhere: the box is the whole grid, clipped. */
    enum { R = 2, C = 3, D = 2 };
    float f[R * C * D] = {1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1};
    struct lost_grid g = {R, C, 16, 16, 30, 40};
    struct lost_params p;
    lost_params_default(&p);
    p.gram_bias = 2.0f;
    struct lost_result r;
    struct err e;
    arena_reset(a);
    int rc = lost_find_box(f, D, &g, &p, a, &r, &e);
    CHECK(rc == 0, "%s", e.msg);
    CHECK(r.seed == 0 && r.seed_degree == 5 && r.n_similar == 6, "seed %d deg %d sim %d",
          r.seed, r.seed_degree, r.n_similar);
    int want[4] = {0, 0, 40, 30};
    CHECK(!memcmp(r.box, want, sizeof want), "box %d,%d,%d,%d", r.box[0], r.box[1],
          r.box[2], r.box[3]);
}

/* Features where every patch has a tiny norm: with a negative bias every Gram
 * entry is negative, degrees are all 0, S is empty and M[seed] = 0. */
static void test_background(struct arena *a)
{
    CHECK_CASE("negative bias: seed in background falls back to the seed patch", case_background(a));
    CHECK_CASE("bias shifts every entry including the diagonal", case_bias_all_positive(a));
}

static void case_ties(struct arena *a)
{
    /* Grid 3x3. Patches 0 and 8 (opposite corners) point one way, the
     * rest the other way. Degrees: corners 1, others 6 -> seed 0.
     * M > 0 on {0, 8} only; they are not 4-connected: box = patch 0. */
    enum { R = 3, C = 3, D = 2 };
    float f[R * C * D];
    for (int i = 0; i < R * C; i++) {
        f[2 * i] = (i == 0 || i == 8) ? 1.0f : 0.0f;
        f[2 * i + 1] = (i == 0 || i == 8) ? 0.0f : 1.0f;
        if (i == 4) /* centre: negative w.r.t. the corners */
            f[2 * i] = -0.5f;
    }
    struct lost_grid g = {R, C, 10, 10, 30, 30};
    struct lost_params p;
    lost_params_default(&p);
    struct lost_result r;
    struct err e;
    arena_reset(a);
    int rc = lost_find_box(f, D, &g, &p, a, &r, &e);
    CHECK(rc == 0, "%s", e.msg);
    CHECK(r.seed == 0 && r.seed_degree == 1 && r.n_similar == 2, "seed %d deg %d sim %d",
          r.seed, r.seed_degree, r.n_similar);
    CHECK(r.mask[0] && !r.mask[8], "component spans the diagonal");
    int want[4] = {0, 0, 10, 10};
    CHECK(!memcmp(r.box, want, sizeof want), "box %d,%d,%d,%d", r.box[0], r.box[1],
          r.box[2], r.box[3]);
    CHECK(r.seed_box[2] == 10 && r.seed_box[3] == 10, "seed box");
}

static void case_k_patches(struct arena *a)
{
    enum { R = 2, C = 2, D = 1 };
    float f[4] = {1, 1, 1, -1};
    struct lost_grid g = {R, C, 8, 8, 16, 16};
    struct lost_params p;
    lost_params_default(&p);
    struct lost_result r;
    struct err e;
    arena_reset(a);
    CHECK(lost_find_box(f, D, &g, &p, a, &r, &e) == 0, "%s", e.msg);
    /* degree: 0,1,2 -> 2, patch 3 -> 0: seed 3, similars {3} */
    CHECK(r.seed == 3 && r.n_similar == 1 && r.seed_degree == 0, "seed %d sim %d",
          r.seed, r.n_similar);
    int want[4] = {8, 8, 16, 16};
    CHECK(!memcmp(r.box, want, sizeof want), "box %d,%d,%d,%d", r.box[0], r.box[1],
          r.box[2], r.box[3]);
    p.k_patches = 1;
    arena_reset(a);
    CHECK(lost_find_box(f, D, &g, &p, a, &r, &e) == 0, "%s", e.msg);
    CHECK(r.n_similar == 1, "k=1 n_similar %d", r.n_similar);
}

static void test_ties_and_shapes(struct arena *a)
{
    CHECK_CASE("ties in degree go to the lowest patch index; 4-connectivity", case_ties(a));
    CHECK_CASE("k_patches larger than N uses every patch; k = 1 keeps only the seed", case_k_patches(a));
}

static void case_l2norm(struct arena *a)
{
    enum { R = 6, C = 7, D = 5, N = R * C };
    float f[N * D], fs[N * D], fn[N * D];
    unsigned s = 12345;
    for (int i = 0; i < N * D; i++) {
        s = s * 1103515245u + 12345u;
        f[i] = (float)((s >> 8) & 0xffff) / 65536.0f - 0.45f;
    }
    for (int i = 0; i < N; i++) {
        float k = 0.1f + (float)(i % 7) * 3.0f, nrm = 0;
        for (int d = 0; d < D; d++)
            nrm += f[i * D + d] * f[i * D + d];
        nrm = sqrtf(nrm);
        for (int d = 0; d < D; d++) {
            fs[i * D + d] = f[i * D + d] * k;
            fn[i * D + d] = f[i * D + d] / nrm;
        }
    }
    struct lost_grid g = {R, C, 14, 14, 80, 90};
    struct lost_params p;
    lost_params_default(&p);
    p.l2norm = 1;
    p.gram_bias = -0.2f;
    struct lost_result r1, r2, r3;
    struct err e;
    arena_reset(a);
    CHECK(lost_find_box(f, D, &g, &p, a, &r1, &e) == 0, "%s", e.msg);
    CHECK(lost_find_box(fs, D, &g, &p, a, &r2, &e) == 0, "%s", e.msg);
    p.l2norm = 0;
    CHECK(lost_find_box(fn, D, &g, &p, a, &r3, &e) == 0, "%s", e.msg);
    CHECK(!memcmp(r1.box, r2.box, sizeof r1.box) && r1.seed == r2.seed &&
              r1.n_similar == r2.n_similar,
          "scaled rows changed the result: seed %d vs %d", r1.seed, r2.seed);
    CHECK(!memcmp(r1.box, r3.box, sizeof r1.box) && r1.seed == r3.seed &&
              r1.seed_degree == r3.seed_degree,
          "l2norm differs from pre-normalised input: seed %d vs %d", r1.seed, r3.seed);
}

static void test_l2norm(struct arena *a)
{
    CHECK_CASE("l2norm: per-patch positive scaling does not change the result", case_l2norm(a));
}

static void case_limits(void)
{
    enum { R = 40, C = 40, D = 4 };
    static float f[R * C * D];
    struct arena *small = arena_init(1 << 20); /* Gram needs 10 MB */
    struct lost_grid g = {R, C, 14, 14, 560, 560};
    struct lost_params p;
    lost_params_default(&p);
    struct lost_result r;
    struct err e;
    err_clear(&e);
    CHECK(lost_find_box(f, D, &g, &p, small, &r, &e) == ERR_TOOBIG, "rc %d", e.code);
    arena_free(small);
    struct arena *big = arena_init(64 << 20);
    p.k_patches = 0;
    CHECK(lost_find_box(f, D, &g, &p, big, &r, &e) == ERR_INPUT, "k=0 accepted");
    p.k_patches = 100;
    struct lost_grid bad = {0, C, 14, 14, 560, 560};
    CHECK(lost_find_box(f, D, &bad, &p, big, &r, &e) == ERR_INPUT, "0 rows accepted");
    CHECK(lost_find_box(f, 0, &g, &p, big, &r, &e) == ERR_INPUT, "dim 0 accepted");
    struct lost_grid huge = {100000, 100000, 14, 14, 560, 560};
    CHECK(lost_find_box(f, D, &huge, &p, big, &r, &e) == ERR_TOOBIG, "huge grid rc %d",
          e.code);
    arena_free(big);
}

static void test_limits(void)
{
    CHECK_CASE("small arena -> ERR_TOOBIG; bad parameters -> ERR_INPUT", case_limits());
}

enum { DR = 4, DC = 5, DN = DR * DC };
static float at[2 * DN];
static const struct lost_grid dg = {DR, DC, 16, 16, 60, 70};

/* Background 20 each (mass 240 = 0.375 of 640, below 0.4): every 50 is
 * kept. Blob A = patches 0,1 (label 1); blob B = cols 3-4 of rows 1-3
 * (label 2, 6 patches, the largest). Head 1: one hot patch. */
static void dinoseg_setup(void)
{
    for (int i = 0; i < DN; i++) {
        int r = i / DC, c = i % DC;
        int in_a = r == 0 && c < 2, in_b = r >= 1 && c >= 3;
        at[i] = in_a || in_b ? 50.0f : 20.0f;
        at[DN + i] = r == 3 && c == 4 ? 100.0f : 1.0f;
    }
}

static void case_dinoseg_quirk(struct arena *a)
{
    int box[4], bf[4];
    unsigned char *m = NULL;
    struct err e;
    arena_reset(a);
    int rc = lost_dinoseg(at, 2, 0, &dg, a, box, bf, &m, &e);
    CHECK(rc == 0, "%s", e.msg);
    /* Without the quirk blob B (6 patches) would win. */
    int want[4] = {0, 0, 32, 16}, wbf[4] = {0, 0, 1, 2};
    CHECK(!memcmp(box, want, sizeof want), "box %d,%d,%d,%d", box[0], box[1], box[2],
          box[3]);
    CHECK(!memcmp(bf, wbf, sizeof wbf), "box_feat");
    CHECK(m && m[0] && m[1] && !m[8], "mask");
}
static void case_dinoseg_background(struct arena *a)
{
    int box[4];
    struct err e;
    arena_reset(a);
    int rc = lost_dinoseg(at, 2, 1, &dg, a, box, NULL, NULL, &e);
    CHECK(rc == 0, "%s", e.msg);
    /* head 1 keeps patch 19 only; label 0 = the other 19 patches: whole
     * grid, 80x64 pixels although the image is 70x60. */
    int want[4] = {0, 0, 80, 64};
    CHECK(!memcmp(box, want, sizeof want), "box %d,%d,%d,%d", box[0], box[1], box[2],
          box[3]);
}
static void case_dinoseg_three(struct arena *a)
{
    /* Grid 4x5, kept: patch 0 (label 1, 1 patch), patches 10-11 (label 2,
     * 2 patches), rows 2-3 x cols 3-4 (label 3, 4 patches: the largest,
     * but the last label never competes). Background mass 130/375. */
    float h[DN];
    for (int i = 0; i < DN; i++) {
        int r = i / DC, c = i % DC;
        int hot = i == 0 || i == 10 || i == 11 || (r >= 2 && c >= 3);
        h[i] = hot ? 35.0f : 10.0f;
    }
    int box[4];
    struct err e;
    arena_reset(a);
    int rc = lost_dinoseg(h, 1, 0, &dg, a, box, NULL, NULL, &e);
    CHECK(rc == 0, "%s", e.msg);
    int want[4] = {0, 32, 32, 48};
    CHECK(!memcmp(box, want, sizeof want), "box %d,%d,%d,%d", box[0], box[1], box[2],
          box[3]);
}
static void case_dinoseg_errors(struct arena *a)
{
    int box[4];
    struct err e;
    arena_reset(a);
    CHECK(lost_dinoseg(at, 2, 2, &dg, a, box, NULL, NULL, &e) == ERR_INPUT, "head 2");
    float one[DN];
    for (int i = 0; i < DN; i++)
        one[i] = i == 0 ? 1.0f : 0.0f; /* cum of zeros = 0, patch 0 alone kept */
    CHECK(lost_dinoseg(one, 1, 0, &dg, a, box, NULL, NULL, &e) == 0, "%s", e.msg);
    float uni[1] = {1.0f};
    struct lost_grid g1 = {1, 1, 16, 16, 16, 16};
    CHECK(lost_dinoseg(uni, 1, 0, &g1, a, box, NULL, NULL, &e) == ERR_INPUT,
          "every patch kept must fail like upstream");
    one[3] = NAN;
    CHECK(lost_dinoseg(one, 1, 0, &dg, a, box, NULL, NULL, &e) == ERR_INPUT, "NaN");
}

static void test_dinoseg(struct arena *a)
{
    dinoseg_setup();
    CHECK_CASE("dinoseg: the last label never competes (upstream quirk)", case_dinoseg_quirk(a));
    CHECK_CASE("dinoseg: one component picks label 0 (background), not clipped", case_dinoseg_background(a));
    CHECK_CASE("dinoseg: three labels choose the larger of labels 1..n-1", case_dinoseg_three(a));
    CHECK_CASE("dinoseg: bad head, all kept, NaN", case_dinoseg_errors(a));
}

static int cmp_names(const void *x, const void *y) { return strcmp(x, y); }

int main(void)
{
    struct arena *a = arena_init((size_t)256 << 20);
    if (!a) {
        printf("FAIL arena_init\n");
        return 1;
    }
    DIR *dir = opendir(FIXTURES);
    int n_fix = 0;
    if (dir) {
        char names[64][256];
        struct dirent *de;
        while ((de = readdir(dir)) && n_fix < 64) {
            if (de->d_name[0] == '.')
                continue;
            char p[600];
            snprintf(p, sizeof p, FIXTURES "/%s/case.json", de->d_name);
            FILE *f = fopen(p, "r");
            if (!f)
                continue;
            fclose(f);
            snprintf(names[n_fix++], sizeof names[0], "%s", de->d_name);
        }
        closedir(dir);
        qsort(names, (size_t)n_fix, sizeof names[0], cmp_names);
        for (int i = 0; i < n_fix; i++)
            fixture_case(names[i], a);
    }
    CHECK_CASE("fixtures present (run from the repo root)",
               CHECK(n_fix >= 6, "found %d fixture cases in " FIXTURES, n_fix));
    test_background(a);
    test_ties_and_shapes(a);
    test_l2norm(a);
    test_limits();
    test_dinoseg(a);
    arena_free(a);
    return check_status();
}
