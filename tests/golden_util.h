/* golden_util.h - helpers shared by the golden parity tests: reading a
 * fixture input (input.npy, or input_u8.npy mapped to (u - 128) / 32) and
 * comparing an array with a reference .npy under the fixtures' tolerance
 * max |c - ref| <= 1e-4 * (1 + max |ref|). Included by test programs only. */
#ifndef LOSTD_GOLDEN_UTIL_H
#define LOSTD_GOLDEN_UTIL_H

#include "err.h"
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* Compares got with the .npy at dir/file; returns the error ratio
 * err / (1e-4 * (1 + max|ref|)) (<= 1 passes), or -1 if unreadable. */
static double compare(const char *dir, const char *file, const float *got, size_t n)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    struct tensor t;
    struct err e = {0};
    if (tensor_load_npy(path, 0, &t, &e)) {
        printf("  cannot read %s: %s\n", path, e.msg);
        return -1;
    }
    if (tensor_numel(&t) != n) {
        printf("  %s: %zu elements, computed %zu\n", file, tensor_numel(&t), n);
        tensor_free(&t);
        return -1;
    }
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)got[i] - t.data[i]);
        d = x > d ? x : d;
    }
    double tol = 1e-4 * (1 + max_abs(t.data, n));
    tensor_free(&t);
    return d / tol;
}

/* Reads dir/input.npy, else dir/input_u8.npy. */
static int load_input(const char *dir, struct tensor *x)
{
    char path[2048];
    struct err e = {0};
    snprintf(path, sizeof path, "%s/input.npy", dir);
    if (access(path, R_OK) == 0)
        return tensor_load_npy(path, 0, x, &e);
    snprintf(path, sizeof path, "%s/input_u8.npy", dir);
    /* input_u8.npy holds uint8; read the raw bytes after the header */
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    unsigned char hdr[10];
    if (fread(hdr, 1, 10, f) != 10) {
        fclose(f);
        return -1;
    }
    int hl = hdr[8] | hdr[9] << 8;
    char *h = calloc(1, hl + 1);
    if (fread(h, 1, hl, f) != (size_t)hl) {
        free(h);
        fclose(f);
        return -1;
    }
    long s0, s1, s2;
    char *sp = strstr(h, "'shape': (");
    if (!strstr(h, "'|u1'") || !sp || sscanf(sp, "'shape': (%ld, %ld, %ld)", &s0, &s1, &s2) != 3) {
        free(h);
        fclose(f);
        return -1;
    }
    free(h);
    size_t n = (size_t)s0 * s1 * s2;
    unsigned char *u = malloc(n);
    x->data = malloc(n * sizeof(float));
    if (fread(u, 1, n, f) != n) {
        fclose(f);
        free(u);
        return -1;
    }
    fclose(f);
    for (size_t i = 0; i < n; i++)
        x->data[i] = ((float)u[i] - 128.0f) / 32.0f; /* exact in float32 */
    free(u);
    x->ndim = 3;
    x->shape[0] = s0;
    x->shape[1] = s1;
    x->shape[2] = s2;
    return 0;
}

#endif
