/* test_calibrate.c - the LOST settings sweep (lost/calibrate.c) and the
 * settings file (server/lost_opts.c): on features built so that exactly one
 * setting (block, v, L2 on, bias -0.7) boxes the ground truth, the sweep
 * returns that setting and every other one scores less; the enumeration
 * order and tie-break; the settings file round-trips and explicit options
 * win over it. */
#include "arena.h"
#include "calibrate.h"
#include "check.h"
#include "err.h"
#include "lost.h"
#include "model.h"

#include "../server/lost_opts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { R = 6, C = 6, N = R * C, D = 8, P = 14 };

/* Features of one "image": a 2x2 object at (r, c) on a background.
 * Background rows: s * e0 (s = 3). Object rows: 0.5 e0 + sqrt(0.55) e1 +
 * sqrt(0.2) e_(2+i), unit length. Cosines: background-background 1,
 * object-background 0.5, object-object 0.8. Only L2-normalised features
 * with a bias in (-0.8, -0.5) keep the object apart: with -0.7 the object
 * patches are each other's only positive neighbours (box = object); with
 * -0.9 the seed is alone (1 patch, IoU 0.25); above -0.5 or without
 * normalisation everything is positive or the background swamps M (box =
 * whole image). */
static void object_feats(float *f, int r0, int c0)
{
    memset(f, 0, sizeof(float) * N * D);
    for (int p = 0; p < N; p++)
        f[p * D] = 3;
    int i = 0;
    for (int r = r0; r < r0 + 2; r++)
        for (int c = c0; c < c0 + 2; c++, i++) {
            float *x = f + (r * C + c) * D;
            x[0] = 0.5f;
            x[1] = sqrtf(0.55f);
            x[2 + i] = sqrtf(0.2f);
        }
}

static void sweep(struct arena *a)
{
    struct calibrate_grid g;
    memset(&g, 0, sizeof g);
    g.n_layer = 2;
    g.layer[0] = -1;
    g.layer[1] = -2;
    g.n_feat = 3;
    g.feat[0] = MODEL_FEATURE_K;
    g.feat[1] = MODEL_FEATURE_Q;
    g.feat[2] = MODEL_FEATURE_V;
    g.n_l2 = 2;
    g.l2[0] = 0;
    g.l2[1] = 1;
    g.n_bias = 4;
    g.bias[0] = 0;
    g.bias[1] = -0.3f;
    g.bias[2] = -0.7f;
    g.bias[3] = -0.9f;
    g.k_patches = 100;

    CHECK_CASE("enumeration order and tie-break", {
        struct err e = {0};
        CHECK(calibrate_grid_check(&g, &e) == 0, "%s", e.msg);
        CHECK(calibrate_n_settings(&g) == 48 && calibrate_per_layer(&g) == 24, "counts");
        struct calibrate_setting s;
        calibrate_setting_at(&g, 0, &s);
        CHECK(s.layer == -1 && s.feature == MODEL_FEATURE_K && !s.l2norm && s.gram_bias == 0,
              "setting 0");
        calibrate_setting_at(&g, 1, &s);
        CHECK(s.gram_bias == -0.3f && !s.l2norm, "bias varies fastest");
        calibrate_setting_at(&g, 4, &s);
        CHECK(s.l2norm && s.feature == MODEL_FEATURE_K, "then l2norm");
        calibrate_setting_at(&g, 8, &s);
        CHECK(s.feature == MODEL_FEATURE_Q && s.layer == -1, "then feature");
        calibrate_setting_at(&g, 47, &s);
        CHECK(s.layer == -2 && s.feature == MODEL_FEATURE_V && s.l2norm &&
                  s.gram_bias == -0.9f, "last setting");
        long hits[48] = {0};
        hits[5] = hits[30] = hits[17] = 7;
        CHECK(calibrate_best(&g, hits) == 5, "tie not broken to the lowest index");
        struct calibrate_grid bad = g;
        bad.feat[1] = MODEL_FEATURE_K;
        CHECK(calibrate_grid_check(&bad, &e) == ERR_INPUT, "duplicate feature accepted");
        bad = g;
        bad.bias[2] = NAN;
        CHECK(calibrate_grid_check(&bad, &e) == ERR_INPUT, "NaN bias accepted");
    });

    CHECK_CASE("the sweep returns the one setting that is best by construction", {
        /* Three images. In block -2, v shows the object at its ground truth;
         * every other (block, feature) shows the same structure elsewhere. */
        static const int obj[3][2] = {{1, 1}, {3, 2}, {0, 4}};
        static const int decoy[3][2] = {{4, 4}, {0, 0}, {4, 0}};
        static float fq[N * D], fk[N * D], fv[N * D], fd[N * D];
        long hits[48] = {0};
        struct err e = {0};
        struct lost_grid lg = {.rows = R, .cols = C, .patch_y = P, .patch_x = P,
                               .img_h = R * P, .img_w = C * P};
        int rc = 0;
        for (int im = 0; im < 3 && !rc; im++) {
            float gt[1][4] = {{(float)obj[im][1] * P, (float)obj[im][0] * P,
                               (float)(obj[im][1] + 2) * P, (float)(obj[im][0] + 2) * P}};
            object_feats(fd, decoy[im][0], decoy[im][1]);
            object_feats(fv, obj[im][0], obj[im][1]);
            memcpy(fq, fd, sizeof fq);
            memcpy(fk, fd, sizeof fk);
            for (int li = 0; li < 2 && !rc; li++) {
                const float *qkv[3];
                qkv[MODEL_FEATURE_Q] = fq;
                qkv[MODEL_FEATURE_K] = fk;
                qkv[MODEL_FEATURE_V] = li == 1 ? fv : fd;
                unsigned char bits[24];
                rc = calibrate_layer_hits(&g, qkv, D, &lg, 1, 1, lg.img_w, lg.img_h,
                                          (const float (*)[4])gt, 1, a, bits, &e);
                for (int s = 0; s < 24; s++)
                    hits[li * 24 + s] += bits[s];
            }
        }
        CHECK(rc == 0, "%s", e.msg);
        int best = calibrate_best(&g, hits);
        struct calibrate_setting s;
        calibrate_setting_at(&g, best, &s);
        CHECK(s.layer == -2 && s.feature == MODEL_FEATURE_V && s.l2norm &&
                  s.gram_bias == -0.7f, "best is layer %d %s l2 %d bias %g", s.layer,
              model_feature_name(s.feature), s.l2norm, (double)s.gram_bias);
        CHECK(hits[best] == 3, "best has %ld hits", hits[best]);
        for (int i = 0; i < 48; i++)
            CHECK(i == best || hits[i] < hits[best], "setting %d ties the best (%ld)", i,
                  hits[i]);
        CHECK(arena_used(a) == 0, "scratch not rewound: %zu bytes", arena_used(a));
    });
}

static void settings_file(void)
{
    CHECK_CASE("settings file round-trips; explicit options win; bad files change nothing", {
        char path[] = "/tmp/lostd_test_calib_XXXXXX";
        int fd = mkstemp(path);
        close(fd);
        struct err e = {0};
        struct pipeline_opts o, back;
        pipeline_opts_default(&o);
        o.lost.k_patches = 37;
        o.lost.gram_bias = -0.2f;
        o.lost.l2norm = 1;
        o.feature = MODEL_FEATURE_V;
        o.layer = -3;
        o.max_side = 448;
        json_t *j = lost_opts_config_json(&o);
        json_object_set_new(j, "corloc", json_real(61.5)); /* informational, ignored */
        CHECK(lost_opts_write_json(path, j, &e) == 0, "write: %s", e.msg);
        json_decref(j);
        pipeline_opts_default(&back);
        CHECK(lost_opts_read_config(path, &back, &e) == 0, "read: %s", e.msg);
        CHECK(back.lost.k_patches == 37 && back.lost.gram_bias == -0.2f &&
                  back.lost.l2norm == 1 && back.feature == MODEL_FEATURE_V &&
                  back.layer == -3 && back.max_side == 448,
              "read back k %d bias %.9g l2 %d feature %d layer %d max_side %d",
              back.lost.k_patches, (double)back.lost.gram_bias, back.lost.l2norm,
              back.feature, back.layer, back.max_side);
        FILE *f = fopen(path, "r");
        char text[1024] = {0};
        size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
        if (f)
            fclose(f);
        CHECK(n > 0 && strstr(text, "-0.2,") && !strstr(text, "0.2000"),
              "bias not written as -0.2: %s", text);

        /* Options given on the command line win, wherever --lost-config is. */
        pipeline_opts_default(&back);
        back.lost.gram_bias = 0.5f;
        back.layer = -1;
        back.given = LOST_OPTS_GIVEN_BIAS | LOST_OPTS_GIVEN_LAYER;
        CHECK(lost_opts_read_config(path, &back, &e) == 0, "read: %s", e.msg);
        CHECK(back.lost.gram_bias == 0.5f && back.layer == -1 && back.lost.k_patches == 37 &&
                  back.feature == MODEL_FEATURE_V, "explicit options overridden");
        char *argv[] = {"discover", "--lost-config", path, "--k-patches", "5", NULL};
        pipeline_opts_default(&back);
        struct model_opts mo = {.n_head = 0, .act = -1};
        for (int i = 1; i < 5; i++)
            CHECK(lost_opts_parse("test", 5, argv, &i, &back, &mo) == 1, "arg %d", i);
        CHECK(back.lost.k_patches == 5 && back.lost.gram_bias == -0.2f, "flag after the file");
        char *argv2[] = {"discover", "--k-patches", "5", "--lost-config", path, NULL};
        pipeline_opts_default(&back);
        for (int i = 1; i < 5; i++)
            CHECK(lost_opts_parse("test", 5, argv2, &i, &back, &mo) == 1, "arg %d", i);
        CHECK(back.lost.k_patches == 5 && back.layer == -3, "flag before the file");

        /* A wrong value: error naming the key, options untouched. */
        f = fopen(path, "w");
        if (f) {
            fputs("{\"gram_bias\": -0.4, \"features\": \"x\"}", f);
            fclose(f);
        }
        pipeline_opts_default(&back);
        CHECK(lost_opts_read_config(path, &back, &e) == ERR_INPUT && strstr(e.msg, "features"),
              "bad feature: %s", e.msg);
        CHECK(back.lost.gram_bias == 0.0f, "partial apply of a bad file");
        f = fopen(path, "w");
        if (f) {
            fputs("[1, 2", f);
            fclose(f);
        }
        CHECK(lost_opts_read_config(path, &back, &e) == ERR_INPUT, "broken JSON accepted");
        unlink(path);
        CHECK(lost_opts_read_config(path, &back, &e) == ERR_NOTFOUND, "missing file: %d",
              e.code);
    });
}

int main(void)
{
    struct arena *a = arena_init((size_t)1 << 26);
    if (!a) {
        printf("FAIL setup: no arena\n");
        return 1;
    }
    sweep(a);
    settings_file();
    arena_free(a);
    return check_status();
}
