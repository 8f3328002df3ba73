/* test_kern.c - the AVX-512 kernels against plain C references: packed GEMM
 * on odd sizes (tails in every dimension, accumulate, bias, strided A and
 * B), softmax, GELU, QuickGELU, SwiGLU, LayerNorm and residual updates.
 * Skips (prints a note, passes nothing) on a CPU without AVX-512. */
#include "check.h"
#include "../core/kern_impl.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <string.h>

static float frand(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void fill(float *x, size_t n, unsigned *s)
{
    for (size_t i = 0; i < n; i++)
        x[i] = frand(s);
}

static void gemm_case(int m, int n, int k, int nn, int acc)
{
    char name[128];
    snprintf(name, sizeof name, "gemm %s m=%d n=%d k=%d%s", nn ? "nn" : "nt", m, n, k,
             acc ? " accumulate" : "");
    CHECK_CASE(name, {
        unsigned s = (unsigned)(m * 7 + n * 13 + k);
        int lda = k + 3, ldb = nn ? n + 5 : k + 5, ldc = n + 2;
        float *A = malloc(sizeof *A * (size_t)m * lda);
        float *B = malloc(sizeof *B * (size_t)(nn ? k : n) * ldb);
        float *C = malloc(sizeof *C * (size_t)m * ldc), *bias = malloc(sizeof *bias * n);
        float *Bp = aligned_alloc(64, sizeof(float) * kern_packed_floats(n, k) + 64);
        fill(A, (size_t)m * lda, &s);
        fill(B, (size_t)(nn ? k : n) * ldb, &s);
        fill(C, (size_t)m * ldc, &s);
        fill(bias, (size_t)n, &s);
        float *C0 = malloc(sizeof *C0 * (size_t)m * ldc);
        memcpy(C0, C, sizeof *C * (size_t)m * ldc);
        if (nn)
            kern_pack_nn(B, ldb, k, n, Bp);
        else
            kern_pack_nt(B, ldb, n, k, Bp);
        kern_gemm(m, n, k, A, lda, Bp, C, ldc, bias, acc, NULL);
        double worst = 0;
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double r = bias[j] + (acc ? C0[(size_t)i * ldc + j] : 0.0);
                for (int q = 0; q < k; q++)
                    r += (double)A[(size_t)i * lda + q] *
                         (nn ? B[(size_t)q * ldb + j] : B[(size_t)j * ldb + q]);
                double d = fabs(r - C[(size_t)i * ldc + j]) / (1 + sqrt((double)k));
                worst = d > worst ? d : worst;
            }
            /* the padding column past n must be untouched */
            CHECK(C[(size_t)i * ldc + n] == C0[(size_t)i * ldc + n], "wrote past n at row %d", i);
        }
        CHECK(worst < 1e-5, "max scaled error %g", worst);
        free(A), free(B), free(C), free(C0), free(bias), free(Bp);
    });
}

static float round_bf16(float f)
{
    unsigned int u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

/* bf16 GEMM against a double reference on bf16-rounded inputs: the products
 * are exact, so only float32 accumulation error remains. */
static void gemm_bf16_case(int m, int n, int k)
{
    char name[128];
    snprintf(name, sizeof name, "gemm bf16 m=%d n=%d k=%d", m, n, k);
    CHECK_CASE(name, {
        unsigned s = (unsigned)(m * 3 + n * 5 + k);
        int lda = k + 1, ldc = n + 3;
        float *A = malloc(sizeof *A * (size_t)m * lda), *B = malloc(sizeof *B * (size_t)n * k);
        float *C = malloc(sizeof *C * (size_t)m * ldc), *bias = malloc(sizeof *bias * n);
        unsigned short *Bp = aligned_alloc(64, 2 * kern_packed_bf16_elems(n, k) + 64);
        unsigned short *sc = aligned_alloc(64, 2 * kern_bf16_scratch_elems() + 64);
        fill(A, (size_t)m * lda, &s);
        fill(B, (size_t)n * k, &s);
        fill(bias, (size_t)n, &s);
        kern_pack_nt_bf16(B, k, n, k, Bp);
        kern_gemm_bf16(m, n, k, A, lda, Bp, C, ldc, bias, 0, sc);
        double worst = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double r = bias[j];
                for (int q = 0; q < k; q++)
                    r += (double)round_bf16(A[(size_t)i * lda + q]) * round_bf16(B[(size_t)j * k + q]);
                double d = fabs(r - C[(size_t)i * ldc + j]) / (1 + sqrt((double)k));
                worst = d > worst ? d : worst;
            }
        CHECK(worst < 1e-5, "max scaled error %g", worst);
        free(A), free(B), free(C), free(bias), free(Bp), free(sc);
    });
}

/* The bits of round_bf16(f). */
static unsigned short bf16_of(float f)
{
    float r = round_bf16(f);
    unsigned u;
    memcpy(&u, &r, 4);
    return (unsigned short)(u >> 16);
}

/* kern_gemm_bf16_pa: A rounded once by kern_round_bf16_rows, B a slice of
 * rows [k0, k0 + k) of a larger [N, K] matrix packed as values are
 * (kern_pack_nn_bf16), read through that packing's panel stride; accumulate
 * onto C. Against a double reference on the bf16-rounded inputs. */
static void gemm_bf16_pa_case(int m, int n, int k, int k0, int K)
{
    char name[128];
    snprintf(name, sizeof name, "gemm bf16 pre-rounded A, B slice: m=%d n=%d k=%d at %d of %d",
             m, n, k, k0, K);
    CHECK_CASE(name, {
        unsigned s = (unsigned)(m * 11 + n * 3 + k);
        int lda = k + 5, ldc = n + 1, K2 = (K + 1) / 2 * 2;
        size_t ld2 = (size_t)(k + 1) / 2 * 2 + 6;
        float *A = malloc(sizeof *A * (size_t)m * lda), *B = malloc(sizeof *B * (size_t)K * n);
        float *C = malloc(sizeof *C * (size_t)m * ldc), *C0 = malloc(sizeof *C0 * (size_t)m * ldc);
        unsigned short *Ah = malloc(2 * (size_t)m * ld2);
        unsigned short *Bp = aligned_alloc(64, 2 * kern_packed_bf16_elems(n, K) + 64);
        fill(A, (size_t)m * lda, &s);
        fill(B, (size_t)K * n, &s);
        for (size_t i = 0; i < (size_t)m * ldc; i++)
            C[i] = C0[i] = frand(&s);
        kern_pack_nn_bf16(B, n, K, n, Bp);
        kern_round_bf16_rows(A, lda, m, k, Ah, ld2);
        for (int i = 0; i < m; i++) {
            for (int q = 0; q < k; q++)
                CHECK(Ah[(size_t)i * ld2 + q] == bf16_of(A[(size_t)i * lda + q]),
                      "A[%d][%d] rounded differently", i, q);
            if (k & 1)
                CHECK(Ah[(size_t)i * ld2 + k] == 0, "row %d: no zero after an odd k", i);
        }
        kern_gemm_bf16_pa(m, n, k, Ah, ld2, Bp + (size_t)k0 * 32, (size_t)K2 * 32, C, ldc, 1);
        double worst = 0;
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double r = C0[(size_t)i * ldc + j];
                for (int q = 0; q < k; q++)
                    r += (double)round_bf16(A[(size_t)i * lda + q]) *
                         round_bf16(B[(size_t)(k0 + q) * n + j]);
                double d = fabs(r - C[(size_t)i * ldc + j]) / (1 + sqrt((double)k));
                worst = d > worst ? d : worst;
            }
            CHECK(C[(size_t)i * ldc + n] == C0[(size_t)i * ldc + n], "wrote past n at row %d", i);
        }
        CHECK(worst < 1e-5, "max scaled error %g", worst);
        free(A), free(B), free(C), free(C0), free(Ah), free(Bp);
    });
}

/* kern_softmax_online_bf16 against kern_softmax_online then rounding:
 * the same maxima, sums and factors, P the rounded S, S untouched. */
static void softmax_bf16_case(int n)
{
    char name[96];
    snprintf(name, sizeof name, "online softmax into bf16, %d keys in two blocks", n);
    CHECK_CASE(name, {
        enum { R = 5, LD = 80 };
        float S[R * LD], ref[R * LD], keep[R * LD];
        float m1[R], l1[R], a1[R], m2[R], l2[R], a2[R];
        unsigned short P[R * (LD + 2)];
        unsigned s = (unsigned)n;
        for (int r = 0; r < R; r++)
            m1[r] = m2[r] = -INFINITY, l1[r] = l2[r] = 0;
        for (int blk = 0; blk < 2; blk++) {
            for (int i = 0; i < R * LD; i++)
                S[i] = ref[i] = keep[i] = 12 * frand(&s) + (float)blk;
            memset(P, 0xff, sizeof P);
            kern_softmax_online(ref, R, n, LD, 0.125f, m1, l1, a1);
            kern_softmax_online_bf16(S, R, n, LD, 0.125f, m2, l2, a2, P, LD + 2);
            for (int r = 0; r < R; r++) {
                CHECK(m1[r] == m2[r] && l1[r] == l2[r] && a1[r] == a2[r],
                      "row %d: max/sum/factor %g/%g/%g vs %g/%g/%g", r, m2[r], l2[r], a2[r],
                      m1[r], l1[r], a1[r]);
                for (int j = 0; j < n; j++) {
                    CHECK(P[r * (LD + 2) + j] == bf16_of(ref[r * LD + j]),
                          "row %d col %d: P not the rounded exponential", r, j);
                }
                if (n & 1)
                    CHECK(P[r * (LD + 2) + n] == 0, "row %d: no zero after an odd n", r);
                CHECK(!memcmp(S + r * LD, keep + r * LD, sizeof *S * LD), "S changed");
            }
        }
    });
}

/* The packed layouts written out element by element (kern_impl.h): float32
 * panels d[p][kk][j] = B[32p + j][kk]; bf16 panels of column pairs
 * d[p][kk/2][v][lane][kk%2] = bf16(B[32p + 16v + lane][kk]), rounded to
 * nearest even with NaN kept quiet; zero beyond n and k. Exact equality. */
static unsigned short ref_bf16(float f)
{
    unsigned u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (unsigned short)((u >> 16) | 0x40);
    return (unsigned short)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/* Elements of the bf16 panels H of an [n, k] right-hand side that differ
 * from the layout above; element (col, kk) is B[col][kk], or B[kk][col]
 * when `nn` (B stored [k, n]). */
static long bf16_panels_differ(const unsigned short *H, const float *B, int ldb, int n, int k,
                               int nn)
{
    int np = (n + KERN_NR - 1) / KERN_NR, k2 = (k + 1) / 2 * 2;
    long bad = 0;
    for (int p = 0; p < np; p++)
        for (int kk = 0; kk < k2; kk++)
            for (int j = 0; j < KERN_NR; j++) {
                int col = p * KERN_NR + j, v = j / 16, lane = j % 16;
                size_t src = nn ? (size_t)kk * ldb + col : (size_t)col * ldb + kk;
                float x = col < n && kk < k ? B[src] : 0.0f;
                size_t at = (size_t)p * k2 * KERN_NR + (size_t)(kk / 2 * 2) * KERN_NR +
                            (size_t)v * 32 + (size_t)lane * 2 + (size_t)(kk % 2);
                bad += H[at] != ref_bf16(x);
            }
    return bad;
}

static void pack_case(int n, int k)
{
    char name[96];
    snprintf(name, sizeof name, "pack nt n=%d k=%d (float32 and bf16 panels, bf16 nn)", n, k);
    CHECK_CASE(name, {
        unsigned s = (unsigned)(n * 31 + k);
        int ldb = k + 3, np = (n + KERN_NR - 1) / KERN_NR;
        float *B = malloc(sizeof *B * (size_t)n * ldb);
        float *P = aligned_alloc(64, sizeof(float) * kern_packed_floats(n, k) + 64);
        unsigned short *H = aligned_alloc(64, 2 * kern_packed_bf16_elems(n, k) + 64);
        for (size_t i = 0; i < (size_t)n * ldb; i++)
            B[i] = frand(&s) * 1000.0f;
        unsigned nan = 0x7fa00001u, inf = 0x7f800000u;  /* a signalling NaN, +inf */
        memcpy(&B[0], &nan, 4);
        memcpy(&B[(size_t)(n - 1) * ldb + k - 1], &inf, 4);
        B[(size_t)(n / 2) * ldb + k / 2] = 1.00390625f;  /* a tie: rounds to even */
        kern_pack_nt(B, ldb, n, k, P);
        long bad = 0;
        for (int p = 0; p < np; p++)
            for (int kk = 0; kk < k; kk++)
                for (int j = 0; j < KERN_NR; j++) {
                    int col = p * KERN_NR + j;
                    float want = col < n ? B[(size_t)col * ldb + kk] : 0.0f;
                    float got = P[((size_t)p * k + kk) * KERN_NR + j];
                    bad += memcmp(&want, &got, 4) != 0;
                }
        CHECK(bad == 0, "float32: %ld elements differ", bad);
        if (kern_bf16_available()) {
            kern_pack_nt_bf16(B, ldb, n, k, H);
            bad = bf16_panels_differ(H, B, ldb, n, k, 0);
            CHECK(bad == 0, "bf16: %ld elements differ", bad);
            /* the same matrix read as [k' = n, n' = k] by kern_pack_nn_bf16 */
            unsigned short *V = aligned_alloc(64, 2 * kern_packed_bf16_elems(k, n) + 64);
            kern_pack_nn_bf16(B, ldb, n, k, V);
            bad = bf16_panels_differ(V, B, ldb, k, n, 1);
            CHECK(bad == 0, "bf16 nn: %ld elements differ", bad);
            free(V);
        }
        free(B);
        free(P);
        free(H);
    });
}

/* kern_gemm_nn (B read in place, any aligned stride) gives what kern_gemm
 * gives on the same B packed by kern_pack_nn, bit for bit, with and
 * without accumulation. */
static void gemm_nn_case(int m, int n, int k)
{
    char name[96];
    snprintf(name, sizeof name, "gemm with B in place m=%d n=%d k=%d", m, n, k);
    CHECK_CASE(name, {
        unsigned s = (unsigned)(m * 131 + n * 7 + k);
        int lda = k + 5, ldb = n + 48, ldc = n + 3;
        float *A = malloc(sizeof *A * ((size_t)m * lda + 1));
        float *B = aligned_alloc(64, sizeof *B * ((size_t)k * ldb + 16));
        float *Bp = aligned_alloc(64, sizeof(float) * kern_packed_floats(n, k) + 64);
        float *C1 = malloc(sizeof *C1 * ((size_t)m * ldc + 1));
        float *C2 = malloc(sizeof *C2 * ((size_t)m * ldc + 1));
        fill(A, (size_t)m * lda, &s);
        fill(B, (size_t)k * ldb, &s);
        kern_pack_nn(B, ldb, k, n, Bp);
        for (int acc = 0; acc < 2; acc++) {
            for (size_t i = 0; i < (size_t)m * ldc; i++)
                C1[i] = C2[i] = frand(&s);
            kern_gemm(m, n, k, A, lda, Bp, C1, ldc, NULL, acc, NULL);
            kern_gemm_nn(m, n, k, A, lda, B, ldb, C2, ldc, acc);
            CHECK(memcmp(C1, C2, sizeof *C1 * (size_t)m * ldc) == 0, "accumulate %d: differs",
                  acc);
        }
        free(A), free(B), free(Bp), free(C1), free(C2);
    });
}

/* With scratch and lda a multiple of 1024 floats, kern_gemm reads A from
 * padded copies of its blocks: bit for bit the product read in place, over
 * several row blocks and passes of k with tails, bias and accumulation;
 * and the copies are really made (the scratch is written). */
static void gemm_copy_case(int m, int n, int k, int lda)
{
    char name[96];
    snprintf(name, sizeof name, "gemm with A copied m=%d n=%d k=%d lda=%d", m, n, k, lda);
    CHECK_CASE(name, {
        unsigned s = (unsigned)(m * 31 + n * 17 + k);
        int ldc = n + 1;
        size_t nscr = kern_scratch_floats();
        float *A = malloc(sizeof *A * (size_t)m * lda), *B = malloc(sizeof *B * (size_t)n * k);
        float *Bp = aligned_alloc(64, sizeof(float) * kern_packed_floats(n, k) + 64);
        float *scr = aligned_alloc(64, sizeof *scr * nscr), *bias = malloc(sizeof *bias * n);
        float *C1 = malloc(sizeof *C1 * (size_t)m * ldc), *C2 = malloc(sizeof *C2 * (size_t)m * ldc);
        fill(A, (size_t)m * lda, &s);
        fill(B, (size_t)n * k, &s);
        fill(bias, (size_t)n, &s);
        kern_pack_nt(B, k, n, k, Bp);
        for (int acc = 0; acc < 2; acc++) {
            for (size_t i = 0; i < nscr; i++)
                scr[i] = -7.0f;
            for (size_t i = 0; i < (size_t)m * ldc; i++)
                C1[i] = C2[i] = frand(&s);
            kern_gemm(m, n, k, A, lda, Bp, C1, ldc, bias, acc, NULL);
            kern_gemm(m, n, k, A, lda, Bp, C2, ldc, bias, acc, scr);
            CHECK(memcmp(C1, C2, sizeof *C1 * (size_t)m * ldc) == 0, "accumulate %d: differs",
                  acc);
            CHECK(scr[0] != -7.0f, "the scratch was not used");
        }
        free(A), free(B), free(Bp), free(scr), free(bias), free(C1), free(C2);
    });
}

int main(void)
{
    if (!kern_available()) {
        printf("SKIP kernels: this CPU has no AVX-512 (the OpenBLAS path is used)\n");
        return 0;
    }
    int sizes[][3] = {{1, 1, 1}, {12, 32, 7}, {13, 33, 257}, {100, 64, 384}, {37, 1152, 64},
                      {96, 17, 600}, {200, 96, 520}, {5, 300, 3},
                      /* k over KERN_KC: equal passes (2 x 776, 3 x 784) accumulate */
                      {30, 40, 1552}, {13, 64, 2350},
                      /* m over KERN_MC: equal row blocks (72 + 58, 3 x 72 + 1) */
                      {130, 70, 33}, {217, 40, 20}, {0, 32, 16}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int nn = 0; nn < 2; nn++)
            gemm_case(sizes[i][0], sizes[i][1], sizes[i][2], nn, (int)(i & 1));
    /* every height of a short tile (1-12 rows), on one vector of columns
     * (a last panel of 16) and on two (a last panel of 24) */
    for (int mr = 1; mr <= 12; mr++)
        for (int n = 48; n <= 56; n += 8)
            gemm_case(mr, n, 19, mr % 3 == 0, n == 56);
    int packs[][2] = {{1, 1}, {15, 17}, {32, 16}, {33, 31}, {100, 64}, {47, 385}, {64, 1}};
    for (size_t i = 0; i < sizeof packs / sizeof packs[0]; i++)
        pack_case(packs[i][0], packs[i][1]);
    gemm_nn_case(48, 64, 512);   /* the attention's P V, one key block */
    gemm_nn_case(5, 64, 501);    /* a short query block, the last key block */
    gemm_nn_case(13, 32, 7);
    gemm_nn_case(100, 96, 1100); /* two passes over k, two row blocks */
    gemm_copy_case(200, 70, 1024, 1024); /* row blocks with a tail, one pass */
    gemm_copy_case(37, 96, 2100, 3072);  /* three passes over k, the last shorter */
    gemm_copy_case(13, 40, 300, 2048);   /* k below a pass, 13 rows */
    if (kern_bf16_available()) {
        gemm_bf16_case(13, 33, 7);
        gemm_bf16_case(100, 64, 385);
        gemm_bf16_case(200, 96, 800);
        gemm_bf16_case(25, 70, 2085); /* three passes, odd k */
        gemm_bf16_case(130, 40, 64);  /* two row blocks of A */
        for (int mr = 1; mr <= 12; mr++) /* every short tile, as for float32 */
            for (int n = 48; n <= 56; n += 8)
                gemm_bf16_case(mr, n, 19);
        gemm_bf16_pa_case(13, 64, 7, 0, 7);
        gemm_bf16_pa_case(100, 64, 501, 512, 1013); /* the attention's P V, second block */
        gemm_bf16_pa_case(40, 45, 1101, 32, 1200);  /* two passes, odd k, partial panel */
        softmax_bf16_case(37);
        softmax_bf16_case(64);
    } else {
        printf("SKIP gemm bf16: this CPU has no AVX-512 BF16\n");
    }
    /* logits spread 10 (flat rows) and 400 (peaked rows, most entries
     * underflow towards 0) */
    for (int spread = 10; spread <= 400; spread *= 40)
    CHECK_CASE(spread == 10 ? "softmax rows" : "softmax rows, wide logits", {
        unsigned s = 5;
        int rows = 3, n = 37, ld = 40;
        float S[3 * 40], sums[3], ref[3 * 40];
        for (int i = 0; i < rows * ld; i++)
            S[i] = ref[i] = spread * frand(&s);
        kern_softmax_rows(S, rows, n, ld, 0.125f, sums);
        for (int r = 0; r < rows; r++) {
            double mx = -1e30, sum = 0;
            for (int j = 0; j < n; j++)
                mx = ref[r * ld + j] > mx ? ref[r * ld + j] : mx;
            for (int j = 0; j < n; j++)
                sum += exp(0.125 * (ref[r * ld + j] - mx));
            /* the terms may share one factor 2^d, |d| within an ulp of the
             * exponent at the maximum (m c is rounded once per row), which
             * the normalised weights do not see */
            CHECK(fabs(sums[r] - sum) < 1e-5 * sum, "row %d sum %g vs %g", r, sums[r], sum);
            for (int j = 0; j < n; j++) {
                double e = exp(0.125 * (ref[r * ld + j] - mx));
                CHECK(fabs(S[r * ld + j] - e) < 1e-5 * e + 1e-30, "row %d col %d: %.9g vs %.9g",
                      r, j, S[r * ld + j], e);
                /* relative: the polynomial's 2.1e-7 plus the rounding of
                 * the exponent t = log2(e), |t| * 2^-24; a subnormal term
                 * is good to half its spacing, 2^-150 */
                double t = fabs(log2(e));
                double w = (double)S[r * ld + j] / sums[r];
                CHECK(fabs(w - e / sum) < (3e-7 + 1e-7 * t) * (e / sum) + 0x1p-150 / sums[r],
                      "row %d col %d normalised: %.9g vs %.9g", r, j, w, e / sum);
            }
            CHECK(S[r * ld + n] == ref[r * ld + n], "wrote past n");
        }
    });
    /* -inf logits (a masked key) give a term of exactly 0, in the vector
     * body and in the tail, and leave the other terms as they were */
    CHECK_CASE("softmax rows, -inf logits", {
        enum { N = 37 };
        float S[N], ref[N], sum, rsum;
        unsigned s = 3;
        for (int j = 0; j < N; j++)
            S[j] = ref[j] = 10 * frand(&s);
        S[3] = S[N - 2] = -INFINITY;
        ref[3] = ref[N - 2] = -1e30f; /* underflows to 0 as well */
        kern_softmax_rows(S, 1, N, N, 0.125f, &sum);
        kern_softmax_rows(ref, 1, N, N, 0.125f, &rsum);
        CHECK(S[3] == 0 && S[N - 2] == 0, "terms of -inf: %g %g", S[3], S[N - 2]);
        CHECK(sum == rsum && memcmp(S, ref, sizeof S) == 0, "sum %g vs %g", sum, rsum);
    });
    /* keys in blocks of 128 (the last one short), logits whose maximum
     * grows from block to block and one that falls: the running output
     * sum(p_j v_j), rescaled by alpha, equals the full softmax's */
    CHECK_CASE("online softmax over key blocks", {
        enum { R = 3, N = 300, KB = 128 };
        static float S[R * N], blk[R * KB];
        float m[R], l[R], alpha[R], o[R] = {0}, v[N];
        unsigned s = 9;
        for (int i = 0; i < N; i++)
            v[i] = frand(&s);
        for (int r = 0; r < R; r++)
            for (int j = 0; j < N; j++)
                S[r * N + j] = 20 * frand(&s) + (r == 0 ? 0.2f * j : r == 1 ? -0.2f * j : 0);
        for (int r = 0; r < R; r++)
            m[r] = -INFINITY, l[r] = 0;
        for (int k0 = 0; k0 < N; k0 += KB) {
            int nk = N - k0 < KB ? N - k0 : KB;
            for (int r = 0; r < R; r++)
                memcpy(blk + r * KB, S + r * N + k0, sizeof *blk * nk);
            kern_softmax_online(blk, R, nk, KB, 0.125f, m, l, alpha);
            for (int r = 0; r < R; r++) {
                o[r] *= alpha[r];
                for (int j = 0; j < nk; j++)
                    o[r] += blk[r * KB + j] * v[k0 + j];
            }
        }
        for (int r = 0; r < R; r++) {
            double mx = -1e30, sum = 0, ref = 0;
            for (int j = 0; j < N; j++)
                mx = S[r * N + j] > mx ? S[r * N + j] : mx;
            for (int j = 0; j < N; j++) {
                double e = exp(0.125 * (S[r * N + j] - mx));
                sum += e;
                ref += e * v[j];
            }
            CHECK(fabs(m[r] - mx) == 0, "row %d maximum %g vs %g", r, m[r], mx);
            CHECK(fabs(l[r] - sum) < 1e-5 * sum, "row %d sum %g vs %g", r, l[r], sum);
            CHECK(fabs(o[r] / l[r] - ref / sum) < 1e-5, "row %d output %g vs %g", r,
                  o[r] / l[r], ref / sum);
        }
    });
    CHECK_CASE("gelu, quickgelu, swiglu", {
        enum { N = 2003 };
        static float x[N], y[N], g[N];
        for (int i = 0; i < N; i++)
            x[i] = y[i] = -12.0f + 24.0f * i / (N - 1);
        kern_gelu(x, N);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double u = y[i], r = 0.5 * u * (1 + erf(u / sqrt(2.0)));
            double d = fabs(x[i] - r);
            worst = d > worst ? d : worst;
        }
        CHECK(worst < 2e-6, "gelu max error %g", worst);
        float big[5] = {1e30f, -1e30f, 3e38f, -3e38f, INFINITY};
        kern_gelu(big, 5);
        CHECK(big[0] == 1e30f && big[1] == 0 && big[2] == 3e38f && big[3] == 0 &&
                  big[4] == INFINITY,
              "gelu of huge inputs: %g %g %g %g %g", big[0], big[1], big[2], big[3], big[4]);
        memcpy(x, y, sizeof x);
        kern_quickgelu(x, N);
        worst = 0;
        for (int i = 0; i < N; i++) {
            double u = y[i], r = u / (1 + exp(-1.702 * u));
            worst = fabs(x[i] - r) > worst ? fabs(x[i] - r) : worst;
        }
        CHECK(worst < 2e-6, "quickgelu max error %g", worst);
        memcpy(x, y, sizeof x);
        for (int i = 0; i < N; i++)
            g[i] = 0.5f + 0.001f * i;
        kern_swiglu_row(x, g, N);
        worst = 0;
        for (int i = 0; i < N; i++) {
            double u = y[i], r = u / (1 + exp(-u)) * g[i];
            worst = fabs(x[i] - r) > worst ? fabs(x[i] - r) : worst;
        }
        CHECK(worst < 1e-5, "swiglu max error %g", worst);
    });
    CHECK_CASE("layernorm and residual", {
        unsigned s = 9;
        int n = 3, d = 70;
        float x[3 * 70], y[3 * 70], w[70], b[70], h[3 * 70], h0[3 * 70];
        for (int i = 0; i < n * d; i++)
            x[i] = 3 + 2 * frand(&s), h[i] = h0[i] = frand(&s);
        for (int i = 0; i < d; i++)
            w[i] = 1 + frand(&s), b[i] = frand(&s);
        kern_layernorm(x, y, n, d, w, b, 1e-6f);
        for (int t = 0; t < n; t++) {
            double mu = 0, var = 0;
            for (int i = 0; i < d; i++)
                mu += x[t * d + i];
            mu /= d;
            for (int i = 0; i < d; i++)
                var += (x[t * d + i] - mu) * (x[t * d + i] - mu);
            var /= d;
            for (int i = 0; i < d; i++) {
                double r = (x[t * d + i] - mu) / sqrt(var + 1e-6) * w[i] + b[i];
                CHECK(fabs(y[t * d + i] - r) < 1e-5, "row %d col %d: %g vs %g", t, i,
                      y[t * d + i], r);
            }
        }
        kern_residual(h, x, w, n, d);
        for (int i = 0; i < n * d; i++)
            CHECK(fabs(h[i] - (h0[i] + w[i % d] * x[i])) < 1e-5, "residual %d", i);
    });
    CHECK_CASE("kern_scale_rows: each row times its factor, bit for bit, in place or not", {
        unsigned s = 21;
        enum { N = 5, LD = 83 };
        float x[N * LD], y[N * LD], f[N];
        for (int d = 1; d <= 70; d += 23) { /* 1, 24, 47, 70: tails of 1, 8, 15 and 6 */
            for (int i = 0; i < N * LD; i++)
                x[i] = frand(&s), y[i] = -7.0f;
            for (int t = 0; t < N; t++)
                f[t] = 1.0f / (1.5f + frand(&s));
            kern_scale_rows(x, LD, f, N, d, y, LD);
            for (int t = 0; t < N; t++)
                for (int i = 0; i < LD; i++)
                    CHECK(y[t * LD + i] == (i < d ? x[t * LD + i] * f[t] : -7.0f),
                          "d %d row %d col %d", d, t, i);
            kern_scale_rows(x, LD, f, N, d, x, LD); /* in place */
            CHECK(memcmp(x, y, sizeof(float) * d) == 0, "d %d: in place differs", d);
            for (int t = 0; t < N; t++)
                CHECK(memcmp(x + t * LD, y + t * LD, sizeof(float) * d) == 0, "d %d row %d", d, t);
        }
    });
    CHECK_CASE("kernel preconditions are asserted (misaligned panel, short stride)", {
        /* Each call runs in a child: the assertion must abort it. */
        for (int which = 0; which < 2; which++) {
            pid_t pid = fork();
            if (pid == 0) {
                float *buf = aligned_alloc(64, 4096 * sizeof(float));
                float A[32] = {0}, C[32];
                if (which == 0)
                    kern_gemm(1, 4, 4, A, 4, buf + 1, C, 4, NULL, 0, NULL); /* panel off by 4 bytes */
                else
                    kern_gemm(1, 4, 4, A, 2, buf, C, 4, NULL, 0, NULL);     /* lda < k */
                _exit(0);
            }
            int st = 0;
            waitpid(pid, &st, 0);
            CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "case %d: status %d", which, st);
        }
    });
    return check_status();
}
