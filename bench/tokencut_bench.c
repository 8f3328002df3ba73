/* tokencut_bench.c - times TokenCut (lost/tokencut.c) on feature maps the
 * size of a 392x504 and a 518x518 input at patch 14 (1008 and 1369 patches,
 * D = 384), with the iterative solver and with the dense LAPACK solve, on the
 * features of a full-size model when given (a .npy [N, D]) or on a
 * structured random map. Prints one JSON line per size. Built and run by
 * `make bench` (bench/run.sh); alone:
 *   make build/bench/tokencut_bench && build/bench/tokencut_bench [feats.npy]
 * OPENBLAS_NUM_THREADS sets the threads of the Gram product. */
#include "arena.h"
#include "clock.h"
#include "err.h"
#include "tensor.h"
#include "tokencut.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A map with a few smooth regions and noise, like keys of a photo. */
static void make_map(float *f, int rows, int cols, int dim, unsigned seed)
{
    float *centers = malloc(sizeof(float) * 4 * dim);
    for (int k = 0; k < 4 * dim; k++) {
        seed = seed * 1664525u + 1013904223u;
        centers[k] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            int region = (r > rows / 3 && r < 2 * rows / 3 && c > cols / 3 && c < 2 * cols / 3)
                             ? 0 : (r < rows / 2 ? 1 : 2) + (c > cols * 3 / 4);
            float *v = f + ((size_t)r * cols + c) * dim;
            for (int d = 0; d < dim; d++) {
                seed = seed * 1664525u + 1013904223u;
                v[d] = centers[region % 4 * dim + d] + 0.6f * ((float)((seed >> 8) & 0xffff) /
                                                               65536.0f - 0.5f);
            }
        }
    free(centers);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int sizes[][2] = {{28, 36}, {37, 37}};
    struct arena *a = arena_init((size_t)1 << 30);
    struct tensor t = {0};
    struct err e = {0};
    if (argc > 1 && tensor_load_npy(argv[1], 0, &t, &e)) {
        fprintf(stderr, "tokencut_bench: %s\n", e.msg);
        return 1;
    }
    for (int s = 0; s < 2; s++) {
        int rows = sizes[s][0], cols = sizes[s][1], dim = 384, n = rows * cols;
        float *f = malloc(sizeof(float) * (size_t)n * dim);
        if (t.data && t.shape[0] == n) {
            dim = (int)t.shape[1];
            f = realloc(f, sizeof(float) * (size_t)n * dim);
            memcpy(f, t.data, sizeof(float) * (size_t)n * dim);
        } else {
            make_map(f, rows, cols, dim, 5u + (unsigned)s);
        }
        struct lost_grid g = {rows, cols, 14, 14, rows * 14, cols * 14};
        double ms[2][15];
        int steps = 0, fallback = 0, same = 1, box0[4] = {0};
        for (int dense = 0; dense < 2; dense++)
            for (int rep = 0; rep < 15; rep++) {
                struct tokencut_params p;
                tokencut_params_default(&p);
                p.dense = dense;
                struct tokencut_result r;
                arena_reset(a);
                double t0 = clock_now_ms();
                if (tokencut_find_box(f, dim, &g, &p, a, &r, &e)) {
                    fprintf(stderr, "tokencut_bench: %s\n", e.msg);
                    return 1;
                }
                ms[dense][rep] = clock_now_ms() - t0;
                if (!dense) {
                    steps = r.iterations;
                    fallback += r.solver == TOKENCUT_DENSE;
                    memcpy(box0, r.box, sizeof box0);
                } else {
                    same &= !memcmp(box0, r.box, sizeof box0);
                }
            }
        qsort(ms[0], 15, sizeof(double), cmp_d);
        qsort(ms[1], 15, sizeof(double), cmp_d);
        printf("{\"patches\": %d, \"dim\": %d, \"tokencut_ms_median\": %.2f, "
               "\"dense_ms_median\": %.2f, \"lanczos_steps\": %d, \"fallbacks\": %d, "
               "\"same_box\": %s}\n", n, dim, ms[0][7], ms[1][7], steps, fallback,
               same ? "true" : "false");
        free(f);
    }
    tensor_free(&t);
    arena_free(a);
    return 0;
}
