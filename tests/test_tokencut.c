/* test_tokencut.c - TokenCut (lost/tokencut.c) against the authors' answers
 * (tests/fixtures/tokencut/<case>/): the box, box_feat, seed and component
 * size exactly, the eigenvector within a tolerance, through the iterative
 * solver and through the dense one; the weighted graph; a forced fallback;
 * parameters refused; several objects. Run from the repository root. */
#include "arena.h"
#include "check.h"
#include "err.h"
#include "tensor.h"
#include "tokencut.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURES "tests/fixtures/tokencut"

static int jint_at(json_t *a, size_t i) { return (int)json_number_value(json_array_get(a, i)); }

static int same4(json_t *a, const int *v)
{
    for (int k = 0; k < 4; k++)
        if (jint_at(a, (size_t)k) != v[k])
            return 0;
    return 1;
}

/* One fixture case through the given solver; counts fallbacks. */
static void run_case(const char *name, int dense, struct arena *a, int *fallbacks)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/case.json", FIXTURES, name);
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je);
    struct tensor f = {0}, ev = {0};
    struct err e = {0};
    snprintf(path, sizeof path, "%s/%s/feats.npy", FIXTURES, name);
    int rc = tensor_load_npy(path, 0, &f, &e);
    snprintf(path, sizeof path, "%s/%s/eigenvector.npy", FIXTURES, name);
    if (!rc)
        rc = tensor_load_npy(path, 0, &ev, &e);
    CHECK(c && !rc, "%s: cannot load the case: %s", name, e.msg);
    if (!c || rc) {
        json_decref(c);
        return;
    }
    json_t *grid = json_object_get(c, "grid"), *hw = json_object_get(c, "image_hw");
    json_t *want = json_object_get(c, "expected");
    struct lost_grid g = {.rows = jint_at(grid, 0), .cols = jint_at(grid, 1),
                          .patch_y = (int)json_integer_value(json_object_get(c, "patch")),
                          .patch_x = (int)json_integer_value(json_object_get(c, "patch")),
                          .img_h = jint_at(hw, 0), .img_w = jint_at(hw, 1)};
    struct tokencut_params p;
    tokencut_params_default(&p);
    p.tau = (float)json_number_value(json_object_get(c, "tau"));
    p.eps = (float)json_number_value(json_object_get(c, "eps"));
    p.dense = dense;
    struct tokencut_result r;
    arena_reset(a);
    rc = tokencut_find_box(f.data, (int)f.shape[f.ndim - 1], &g, &p, a, &r, &e);
    CHECK(rc == 0, "%s: %s", name, e.msg);
    if (!rc) {
        json_t *rc_ = json_object_get(want, "seed_rc");
        CHECK(same4(json_object_get(want, "box"), r.box), "%s: box %d %d %d %d", name,
              r.box[0], r.box[1], r.box[2], r.box[3]);
        CHECK(same4(json_object_get(want, "box_feat"), r.box_feat), "%s: box_feat %d %d %d %d",
              name, r.box_feat[0], r.box_feat[1], r.box_feat[2], r.box_feat[3]);
        CHECK(r.seed == (int)json_integer_value(json_object_get(want, "seed")) &&
                  r.seed / g.cols == jint_at(rc_, 0) && r.seed % g.cols == jint_at(rc_, 1),
              "%s: seed %d", name, r.seed);
        CHECK(r.n_cc == (int)json_integer_value(json_object_get(want, "n_cc")), "%s: n_cc %d",
              name, r.n_cc);
        /* Both are normalised x^T D x = 1 and signed alike: they agree to
         * far below the gaps that decide anything (the reference is float64
         * LAPACK on the same float32 graph). */
        double worst = 0, big = 0;
        for (int i = 0; i < g.rows * g.cols; i++) {
            worst = fmax(worst, fabs((double)r.eigvec[i] - ev.data[i]));
            big = fmax(big, fabs((double)ev.data[i]));
        }
        CHECK(worst <= 1e-4 * big, "%s: eigenvector differs by %g (max |x| %g)", name, worst,
              big);
        *fallbacks += r.solver == TOKENCUT_DENSE;
        if (!dense && r.fallback)
            printf("     %s: dense fallback: %s\n", name, r.fallback);
    }
    tensor_free(&f);
    tensor_free(&ev);
    json_decref(c);
}

/* A budget's stand-in for tokencut_params.reserve: counts the calls,
 * records the request, refuses while `fail` is set (then clears it). */
struct reserve_log {
    int calls, fail;
    long long asked;
};

static int reserve_cb(void *ctx, long long bytes, struct err *e)
{
    struct reserve_log *l = ctx;
    l->calls++;
    l->asked = bytes;
    if (l->fail) {
        l->fail = 0;
        return err_set(e, ERR_TOOBIG, "refused %lld bytes", bytes);
    }
    return 0;
}

int main(void)
{
    struct arena *a = arena_init((size_t)512 << 20);
    const char *cases[] = {"random_24x32", "random_27x36_p14", "random_small_k",
                           "synthetic_block", "tiny_voc_keys", "tiny_voc_keys_tau0",
                           "tiny_voc_keys_tau05", "voc_vits14reg_seed5_keys"};
    int n_cases = (int)(sizeof cases / sizeof cases[0]);
    int fb_iter = 0, fb_dense = 0;

    CHECK_CASE("every fixture: the authors' box, seed and component (Lanczos)", {
        for (int i = 0; i < n_cases; i++)
            run_case(cases[i], 0, a, &fb_iter);
        printf("     dense fallback on %d of %d fixtures\n", fb_iter, n_cases);
    });

    CHECK_CASE("every fixture: the same through the dense solver", {
        for (int i = 0; i < n_cases; i++)
            run_case(cases[i], 1, a, &fb_dense);
        CHECK(fb_dense == n_cases, "dense solver used %d times", fb_dense);
    });

    CHECK_CASE("bad parameters are refused with a clear message", {
        struct tokencut_params p;
        struct err e = {0};
        float bad_tau[] = {-1.5f, 1.01f, NAN, INFINITY};
        for (int i = 0; i < 4; i++) {
            tokencut_params_default(&p);
            p.tau = bad_tau[i];
            CHECK(tokencut_check_params(&p, &e) == ERR_INPUT && strstr(e.msg, "tau"),
                  "tau %g accepted", (double)bad_tau[i]);
        }
        float bad_eps[] = {0.0f, -1e-5f, NAN};
        for (int i = 0; i < 3; i++) {
            tokencut_params_default(&p);
            p.eps = bad_eps[i];
            CHECK(tokencut_check_params(&p, &e) == ERR_INPUT && strstr(e.msg, "eps"),
                  "eps %g accepted", (double)bad_eps[i]);
        }
        tokencut_params_default(&p);
        p.tau = -1.0f;
        CHECK(tokencut_check_params(&p, &e) == 0, "tau -1 refused");
        float f[8] = {1, 0, 0, 1, 1, NAN, 0, 1};
        struct lost_grid g = {2, 2, 1, 1, 2, 2};
        struct tokencut_result r;
        CHECK(tokencut_find_box(f, 2, &g, &p, a, &r, &e) == ERR_INPUT, "NaN feature accepted");
    });

    CHECK_CASE("a tie at the seed falls back to the dense solve", {
        /* Two mirror-image objects: |x| is the same on both sides, so no
         * iterative answer can tell the seed apart. */
        enum { R = 6, C = 8, D = 4 };
        float f[R * C * D];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                float *v = f + (r * C + c) * D;
                int left = c < 2 && r < 3, right = c >= 6 && r < 3;
                v[0] = left ? 1 : 0.1f, v[1] = right ? 1 : 0.1f, v[2] = (!left && !right) ? 1 : 0;
                v[3] = 0.05f * (float)((r * 7 + c * 3) % 5);
            }
        struct tokencut_params p;
        tokencut_params_default(&p);
        struct lost_grid g = {R, C, 16, 16, R * 16, C * 16};
        struct tokencut_result r;
        struct err e = {0};
        arena_reset(a);
        int rc = tokencut_find_box(f, D, &g, &p, a, &r, &e);
        CHECK(rc == 0, "%s", e.msg);
        CHECK(rc || (r.solver == TOKENCUT_DENSE && r.fallback), "no fallback (solver %d)",
              r.solver);
    });

    CHECK_CASE("memory: within tokencut_graph_bytes, the fallback asks for tokencut_dense_bytes", {
        struct tensor f = {0};
        struct err e = {0};
        char path[512];
        snprintf(path, sizeof path, "%s/%s/feats.npy", FIXTURES, "random_27x36_p14");
        int rc = tensor_load_npy(path, 0, &f, &e);
        CHECK(rc == 0, "%s", e.msg);
        if (!rc) {
            long n = f.shape[0];
            int dim = (int)f.shape[1];
            struct lost_grid g = {27, (int)(n / 27), 14, 14, 27 * 14, (int)(n / 27) * 14};
            struct tokencut_params p;
            tokencut_params_default(&p);
            struct reserve_log log = {.fail = 1};
            p.reserve = reserve_cb;
            p.reserve_ctx = &log;
            for (int dense = 0; dense < 2; dense++) {
                struct arena *b = arena_init((size_t)256 << 20);
                struct tokencut_result r;
                p.dense = dense;
                log.calls = 0;
                log.fail = dense; /* the dense run: refused once, then granted */
                rc = tokencut_find_box(f.data, dim, &g, &p, b, &r, &e);
                long long graph = tokencut_graph_bytes(n, dim), more = tokencut_dense_bytes(n);
                if (!dense)
                    CHECK(rc == 0 && log.calls == 0 && (long long)arena_peak(b) <= graph,
                          "Lanczos: rc %d, %d reserve calls, peak %zu > %lld", rc, log.calls,
                          arena_peak(b), graph);
                else {
                    CHECK(rc == ERR_TOOBIG && strstr(e.msg, "refused") && log.calls == 1 &&
                          log.asked == more, "refused reserve: rc %d (%s), asked %lld of %lld",
                          rc, e.msg, log.asked, more);
                    arena_reset(b);
                    rc = tokencut_find_box(f.data, dim, &g, &p, b, &r, &e);
                    CHECK(rc == 0 && log.calls == 2 &&
                          (long long)arena_peak(b) <= graph + more,
                          "dense: rc %d (%s), peak %zu > %lld", rc, e.msg, arena_peak(b),
                          graph + more);
                }
                arena_free(b);
            }
            tensor_free(&f);
        }
    });

    CHECK_CASE("the weighted graph: Lanczos and dense agree on every fixture map", {
        for (int i = 0; i < n_cases; i++) {
            char path[512];
            snprintf(path, sizeof path, "%s/%s/feats.npy", FIXTURES, cases[i]);
            struct tensor f = {0};
            struct err e = {0};
            if (tensor_load_npy(path, 0, &f, &e))
                continue;
            long n = f.shape[0];
            int rows = 1, cols = (int)n;
            for (int k = 2; k * k <= n; k++)
                if (n % k == 0)
                    rows = k, cols = (int)(n / k);
            struct lost_grid g = {rows, cols, 14, 14, rows * 14, cols * 14};
            struct tokencut_params p;
            tokencut_params_default(&p);
            p.binary = 0;
            struct tokencut_result r1, r2;
            arena_reset(a);
            int rc = tokencut_find_box(f.data, (int)f.shape[1], &g, &p, a, &r1, &e);
            int box1[4];
            memcpy(box1, r1.box, sizeof box1);
            int seed1 = r1.seed;
            p.dense = 1;
            if (!rc)
                rc = tokencut_find_box(f.data, (int)f.shape[1], &g, &p, a, &r2, &e);
            CHECK(rc == 0 && !memcmp(box1, r2.box, sizeof box1) && seed1 == r2.seed,
                  "%s: rc %d, seed %d vs %d", cases[i], rc, seed1, rc ? -1 : r2.seed);
            tensor_free(&f);
        }
    });

    CHECK_CASE("several objects: the first is the single cut's, then disjoint ones", {
        struct tensor f = {0};
        struct err e = {0};
        int rc = tensor_load_npy(FIXTURES "/voc_vits14reg_seed5_keys/feats.npy", 0, &f, &e);
        CHECK(rc == 0, "%s", e.msg);
        if (!rc) {
            struct lost_grid g = {28, 36, 14, 14, 381, 500};
            struct tokencut_params p;
            tokencut_params_default(&p);
            int boxes[4][4], n = 0;
            const char *stop = NULL;
            arena_reset(a);
            rc = tokencut_find_boxes(f.data, (int)f.shape[1], &g, &p, 4, a, boxes, &n, &stop,
                                     &e);
            CHECK(rc == 0 && n >= 1, "rc %d n %d: %s", rc, n, e.msg);
            int want[4] = {210, 14, 476, 70};
            CHECK(n >= 1 && !memcmp(boxes[0], want, sizeof want), "first box %d %d %d %d",
                  boxes[0][0], boxes[0][1], boxes[0][2], boxes[0][3]);
            CHECK(stop != NULL, "no stop reason");
            for (int i = 1; i < n; i++)
                CHECK(memcmp(boxes[i], boxes[0], sizeof want), "box %d repeats the first", i);
            tensor_free(&f);
        }
    });

    arena_free(a);
    return check_status();
}
