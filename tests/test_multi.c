/* test_multi.c - multi-object discovery (lost/multi.c): the first object is
 * exactly LOST's box on every LOST fixture (with and without L2
 * normalisation and a bias), planted objects come out smallest first and the
 * search stops on the background, and bad parameters are refused. Run from
 * the repo root. */
#include "arena.h"
#include "check.h"
#include "err.h"
#include "lost.h"
#include "tensor.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURES "tests/fixtures/lost"

static int same_as_lost(const char *name, struct arena *a)
{
    char path[512];
    snprintf(path, sizeof path, FIXTURES "/%.200s/case.json", name);
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je);
    snprintf(path, sizeof path, FIXTURES "/%.200s/feats.npy", name);
    struct tensor t = {0};
    struct err e = {0};
    if (!c || tensor_load_npy(path, 0, &t, &e) || t.ndim != 2) {
        json_decref(c);
        tensor_free(&t);
        return 0;
    }
    json_t *grid = json_object_get(c, "grid"), *hw = json_object_get(c, "image_hw");
    int patch = (int)json_integer_value(json_object_get(c, "patch"));
    struct lost_grid g = {.rows = (int)json_integer_value(json_array_get(grid, 0)),
                          .cols = (int)json_integer_value(json_array_get(grid, 1)),
                          .patch_y = patch, .patch_x = patch,
                          .img_h = (int)json_integer_value(json_array_get(hw, 0)),
                          .img_w = (int)json_integer_value(json_array_get(hw, 1))};
    int dim = (int)t.shape[1];
    for (int variant = 0; variant < 3; variant++) {
        struct lost_params p;
        lost_params_default(&p);
        p.k_patches = (int)json_integer_value(json_object_get(c, "k_patches"));
        p.gram_bias = variant == 2 ? -0.3f : 0.0f;
        p.l2norm = variant >= 1;
        struct lost_result r;
        struct lost_multi_result mr;
        struct lost_multi_params mp;
        lost_multi_params_default(&mp);
        for (int max = 1; max <= 4; max += 3) {
            mp.max_objects = max;
            arena_reset(a);
            int rc = lost_find_box(t.data, dim, &g, &p, a, &r, &e);
            CHECK(rc == 0, "%s: lost_find_box: %s", name, e.msg);
            rc = rc ? rc : lost_find_boxes(t.data, dim, &g, &p, &mp, a, &mr, &e);
            CHECK(rc == 0, "%s: lost_find_boxes: %s", name, e.msg);
            if (rc)
                continue;
            CHECK(mr.n >= 1 && mr.n <= max, "%s: %d objects for max %d", name, mr.n, max);
            CHECK(!memcmp(mr.obj[0].box, r.box, sizeof r.box) &&
                      !memcmp(mr.obj[0].box_feat, r.box_feat, sizeof r.box_feat) &&
                      mr.obj[0].seed == r.seed && mr.obj[0].seed_degree == r.seed_degree,
                  "%s variant %d max %d: first object %d,%d,%d,%d seed %d, LOST %d,%d,%d,%d "
                  "seed %d", name, variant, max, mr.obj[0].box[0], mr.obj[0].box[1],
                  mr.obj[0].box[2], mr.obj[0].box[3], mr.obj[0].seed, r.box[0], r.box[1],
                  r.box[2], r.box[3], r.seed);
            CHECK(max > 1 || mr.stop == LOST_STOP_MAX, "%s: stop %s with max 1", name,
                  lost_stop_name(mr.stop));
            /* Later boxes never start inside an earlier box. */
            for (int i = 1; i < mr.n; i++)
                for (int k = 0; k < i; k++) {
                    const int *b = mr.obj[k].box_feat;
                    int s = mr.obj[i].seed, rr = s / g.cols, cc = s % g.cols;
                    CHECK(!(rr >= b[0] && rr < b[2] && cc >= b[1] && cc < b[3]),
                          "%s: seed %d of object %d lies in box %d", name, s, i, k);
                }
        }
    }
    json_decref(c);
    tensor_free(&t);
    return 1;
}

static void fixtures(struct arena *a)
{
    CHECK_CASE("max_objects 1 and the first of many are LOST's box on every fixture", {
        DIR *d = opendir(FIXTURES);
        struct dirent *de;
        int n = 0;
        while (d && (de = readdir(d)))
            if (de->d_name[0] != '.' && !strchr(de->d_name, '.'))
                n += same_as_lost(de->d_name, a);
        if (d)
            closedir(d);
        CHECK(n >= 4, "only %d fixtures read", n);
    });
}

/* Background e0 everywhere; three objects with their own direction:
 * C 2x2 at (1, 1), B 3x3 at (6, 7), A 4x4 at (7, 1). Cross products are 0,
 * so degrees are size - 1 inside objects and large on the background. */
static void planted(struct arena *a)
{
    enum { R = 12, C = 12, D = 4 };
    static float f[R * C * D];
    struct { int r, c, s, dir; } obj[3] = {{1, 1, 2, 1}, {6, 7, 3, 2}, {7, 1, 4, 3}};
    memset(f, 0, sizeof f);
    for (int p = 0; p < R * C; p++)
        f[p * D] = 1;
    for (int k = 0; k < 3; k++)
        for (int r = obj[k].r; r < obj[k].r + obj[k].s; r++)
            for (int c = obj[k].c; c < obj[k].c + obj[k].s; c++) {
                f[(r * C + c) * D] = 0;
                f[(r * C + c) * D + obj[k].dir] = 1;
            }
    struct lost_grid g = {.rows = R, .cols = C, .patch_y = 10, .patch_x = 10, .img_h = 115,
                          .img_w = 120};
    struct lost_params p;
    lost_params_default(&p);
    struct lost_multi_params mp;
    lost_multi_params_default(&mp);
    struct lost_multi_result mr;
    struct err e = {0};

    CHECK_CASE("planted objects: smallest first, then stop on the background", {
        mp.max_objects = 10;
        arena_reset(a);
        CHECK(lost_find_boxes(f, D, &g, &p, &mp, a, &mr, &e) == 0, "%s", e.msg);
        CHECK(mr.n == 3, "%d objects, want 3 (stop %s)", mr.n, lost_stop_name(mr.stop));
        CHECK(mr.stop == LOST_STOP_DEGREE, "stop %s, want seed_degree",
              lost_stop_name(mr.stop));
        for (int k = 0; k < mr.n && k < 3; k++) {
            int want[4] = {obj[k].r, obj[k].c, obj[k].r + obj[k].s, obj[k].c + obj[k].s};
            CHECK(!memcmp(mr.obj[k].box_feat, want, sizeof want),
                  "object %d: %d,%d,%d,%d want %d,%d,%d,%d", k, mr.obj[k].box_feat[0],
                  mr.obj[k].box_feat[1], mr.obj[k].box_feat[2], mr.obj[k].box_feat[3],
                  want[0], want[1], want[2], want[3]);
            CHECK(mr.obj[k].seed_degree == obj[k].s * obj[k].s - 1, "object %d degree %d", k,
                  mr.obj[k].seed_degree);
        }
        CHECK(mr.obj[1].box[0] == 70 && mr.obj[1].box[3] == 90, "pixel box of B");
        CHECK(mr.obj[1].n_active == R * C - 4, "active patches in round 2: %d",
              mr.obj[1].n_active);
    });

    CHECK_CASE("max_objects caps the count; bad parameters are refused", {
        mp.max_objects = 2;
        arena_reset(a);
        CHECK(lost_find_boxes(f, D, &g, &p, &mp, a, &mr, &e) == 0 && mr.n == 2 &&
                  mr.stop == LOST_STOP_MAX, "n %d stop %s", mr.n, lost_stop_name(mr.stop));
        mp.max_objects = 0;
        CHECK(lost_find_boxes(f, D, &g, &p, &mp, a, &mr, &e) == ERR_INPUT, "0 accepted");
        mp.max_objects = LOST_MAX_OBJECTS + 1;
        CHECK(lost_find_boxes(f, D, &g, &p, &mp, a, &mr, &e) == ERR_INPUT, "33 accepted");
        mp.max_objects = 3;
        mp.max_seed_degree_frac = 1.5f;
        CHECK(lost_find_boxes(f, D, &g, &p, &mp, a, &mr, &e) == ERR_INPUT, "frac accepted");
        /* Accept any seed: the background becomes one more object, then the
         * grid runs out of unclaimed patches or boxes repeat. */
        mp.max_seed_degree_frac = 1.0f;
        mp.max_objects = LOST_MAX_OBJECTS;
        arena_reset(a);
        CHECK(lost_find_boxes(f, D, &g, &p, &mp, a, &mr, &e) == 0, "%s", e.msg);
        CHECK(mr.n >= 3 && mr.stop != LOST_STOP_MAX && mr.stop != LOST_STOP_DEGREE,
              "n %d stop %s", mr.n, lost_stop_name(mr.stop));
    });
}

int main(void)
{
    struct arena *a = arena_init((size_t)1 << 28);
    if (!a) {
        printf("FAIL setup: no arena\n");
        return 1;
    }
    fixtures(a);
    planted(a);
    arena_free(a);
    return check_status();
}
