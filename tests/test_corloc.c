/* test_corloc.c - IoU edge cases (LOST's float32 YOLOv5 formula), the
 * >= 0.5 hit rule, and the CorLoc accumulators. */
#include "check.h"
#include "corloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void case_half(void)
{
    float a[4] = {0, 0, 10, 10}, b[4] = {0, 0, 10, 20};
    float gt[1][4] = {{0, 0, 10, 20}};
    float iou = corloc_iou(a, b);
    CHECK(iou >= 0.5f, "iou %.9g < 0.5", iou);
    CHECK(corloc_hit(a, (const float (*)[4])gt, 1, NULL) == 1, "not a hit");
    float c[4] = {0, 0, 10, 21};
    CHECK(corloc_iou(a, c) < 0.5f, "100/210 counted as >= 0.5");
}

static void case_basic(void)
{
    float a[4] = {0, 0, 10, 10}, far[4] = {20, 20, 30, 30}, touch[4] = {10, 0, 20, 10};
    CHECK(fabsf(corloc_iou(a, a) - 1.0f) < 1e-6f, "self iou %.9g", corloc_iou(a, a));
    CHECK(corloc_iou(a, far) == 0.0f, "disjoint %.9g", corloc_iou(a, far));
    CHECK(corloc_iou(a, touch) == 0.0f, "touching %.9g", corloc_iou(a, touch));
    float z[4] = {5, 5, 5, 5};
    float iz = corloc_iou(z, z);
    CHECK(iz == 0.0f && !isnan(iz), "zero-area %.9g", iz);
    float inside[4] = {2, 2, 8, 8}; /* 36 / 100 */
    CHECK(fabsf(corloc_iou(a, inside) - 0.36f) < 1e-6f, "nested %.9g", corloc_iou(a, inside));
    CHECK(corloc_iou(a, inside) == corloc_iou(inside, a), "not symmetric");
}

/* For integer boxes the float32 formula must agree with the exact integer
 * test 2 inter >= a1 + a2 - inter (spec 5). */
static void case_integer_equivalence(void)
{
    unsigned s = 1;
    int bad = 0;
    for (int t = 0; t < 200000 && bad < 5; t++) {
        int v[8];
        for (int k = 0; k < 8; k++) {
            s = s * 1664525u + 1013904223u;
            v[k] = (int)((s >> 8) % 600);
        }
        int a0 = v[0] < v[2] ? v[0] : v[2], a2 = v[0] < v[2] ? v[2] : v[0];
        int a1 = v[1] < v[3] ? v[1] : v[3], a3 = v[1] < v[3] ? v[3] : v[1];
        int b0 = v[4] < v[6] ? v[4] : v[6], b2 = v[4] < v[6] ? v[6] : v[4];
        int b1 = v[5] < v[7] ? v[5] : v[7], b3 = v[5] < v[7] ? v[7] : v[5];
        if (t % 3 == 0) { /* near-threshold cases: shared corner, similar size */
            b0 = a0; b1 = a1; b2 = a2; b3 = a3 + (a3 - a1) - (int)(s % 3);
        }
        long iw = (a2 < b2 ? a2 : b2) - (a0 > b0 ? a0 : b0);
        long ih = (a3 < b3 ? a3 : b3) - (a1 > b1 ? a1 : b1);
        long inter = (iw > 0 ? iw : 0) * (ih > 0 ? ih : 0);
        long ar1 = (long)(a2 - a0) * (a3 - a1), ar2 = (long)(b2 - b0) * (b3 - b1);
        if (ar1 == 0 || ar2 == 0)
            continue;
        int exact = 2 * inter >= ar1 + ar2 - inter;
        float fa[4] = {(float)a0, (float)a1, (float)a2, (float)a3};
        float fb[4] = {(float)b0, (float)b1, (float)b2, (float)b3};
        int got = corloc_iou(fa, fb) >= 0.5f;
        if (got != exact) {
            bad++;
            CHECK(0, "(%d,%d,%d,%d) vs (%d,%d,%d,%d): float %d, exact %d", a0, a1, a2, a3, b0,
                  b1, b2, b3, got, exact);
        }
    }
}

static void case_hit_any(void)
{
    float box[4] = {0, 0, 100, 100};
    float gt[3][4] = {{200, 200, 300, 300}, {0, 0, 50, 50}, {0, 0, 100, 150}};
    float best = -1;
    CHECK(corloc_hit(box, (const float (*)[4])gt, 2, &best) == 0, "hit with 2 boxes");
    CHECK(fabsf(best - 0.25f) < 1e-6f, "best %.9g", best);
    CHECK(corloc_hit(box, (const float (*)[4])gt, 3, &best) == 1, "no hit with 3 boxes");
    CHECK(fabsf(best - 100.0f / 150.0f) < 1e-6f, "best %.9g", best);
    CHECK(corloc_hit(box, NULL, 0, &best) == 0 && best == 0.0f, "empty gt");
}

static void case_acc(void)
{
    struct corloc_acc a, b;
    corloc_init(&a);
    corloc_init(&b);
    CHECK(corloc_percent(&a) == 0.0, "empty percent");
    for (int i = 0; i < 5011; i++)
        corloc_add(i < 3000 ? &a : &b, i % 5011 < 3102);
    a.skipped = 1;
    b.missing = 2;
    b.excluded = 3;
    corloc_merge(&a, &b);
    CHECK(a.images == 5011 && a.hits == 3102, "images %ld hits %ld", a.images, a.hits);
    CHECK(a.skipped == 1 && a.missing == 2 && a.excluded == 3, "counters");
    char buf[32];
    snprintf(buf, sizeof buf, "%.2f", corloc_percent(&a));
    CHECK(!strcmp(buf, "61.90"), "corloc %s", buf);
}

int main(void)
{
    CHECK_CASE("iou (0,0,10,10) vs (0,0,10,20) = 0.5 is a hit", case_half());
    CHECK_CASE("iou identity, disjoint, touching, zero area, nested", case_basic());
    CHECK_CASE("float32 iou >= 0.5 equals the integer test", case_integer_equivalence());
    CHECK_CASE("hit against any gt box, best iou", case_hit_any());
    CHECK_CASE("accumulators and percent", case_acc());
    return check_status();
}
