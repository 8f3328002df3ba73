/* kern.c - AVX-512 kernels for the forward pass: a packed SGEMM (12x32
 * register tile, weights packed once into 32-column panels), row softmax,
 * GELU, SwiGLU, LayerNorm and residual updates. Selected at run time with
 * kern_available(); the rest of the tree never executes these instructions
 * on a CPU without AVX-512F. Numerics: float32 with FMA; exp and erf are
 * polynomial approximations accurate to ~1e-7, far inside the parity
 * tolerance. No allocation, no I/O. */
#include "kern_impl.h"
#include "clock.h"

#include <assert.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ALIGNED64(p) ((((uintptr_t)(p)) & 63u) == 0)

int kern_available(void)
{
    const char *env = getenv("LOSTD_KERNELS");
    if (env && !strcmp(env, "blas"))
        return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
}

int kern_bf16_available(void)
{
    return kern_available() && __builtin_cpu_supports("avx512bf16");
}

size_t kern_packed_bf16_elems(int n, int k)
{
    size_t np = ((size_t)n + KERN_NR - 1) / KERN_NR;
    return np * KERN_NR * (size_t)((k + 1) / 2 * 2);
}

/* A bf16 block's row stride: kc2 plus one cache line, so that the twelve
 * rows of a micro-tile fall in different L1 sets (a stride of a power of two
 * puts them all in one). */
static inline size_t bf16_a_stride(int kc2) { return (size_t)kc2 + 32; }

size_t kern_bf16_scratch_elems(void) { return (size_t)KERN_MC * bf16_a_stride(KERN_KC); }

/* The depth of each pass over k: k split into equal passes of at most
 * KERN_KC (a multiple of 16 where k allows), so that a long k (1536, 4096)
 * is not left with a short last pass, and C is reread as few times as
 * possible. */
static inline int k_block(int k)
{
    int passes = (k + KERN_KC - 1) / KERN_KC;
    int kc = (k + passes - 1) / passes;
    kc = (kc + 15) / 16 * 16;
    return kc < KERN_KC ? kc : KERN_KC;
}

/* Rows per block of A (at most KERN_MC, a multiple of KERN_MR): the rows
 * in equal blocks, so that no short block streams every panel of B for a
 * few rows (130 rows: 72 + 58, not 96 + 34). */
static inline int m_block(int m)
{
    if (m <= KERN_MC)
        return KERN_MC;
    int blocks = (m + KERN_MC - 1) / KERN_MC;
    int per = (m + blocks - 1) / blocks;
    per = (per + KERN_MR - 1) / KERN_MR * KERN_MR;
    return per < KERN_MC ? per : KERN_MC;
}

size_t kern_packed_floats(int n, int k)
{
    size_t np = ((size_t)n + KERN_NR - 1) / KERN_NR;
    return np * KERN_NR * (size_t)k;
}

void kern_pack_nn(const float *B, int ldb, int k, int n, float *dst)
{
    assert(k >= 1 && n >= 1 && ldb >= n && ALIGNED64(dst));
    int np = (n + KERN_NR - 1) / KERN_NR;
    for (int p = 0; p < np; p++) {
        float *d = dst + (size_t)p * k * KERN_NR;
        int j0 = p * KERN_NR, nj = n - j0 < KERN_NR ? n - j0 : KERN_NR;
        for (int kk = 0; kk < k; kk++) {
            float *row = d + (size_t)kk * KERN_NR;
            memcpy(row, B + (size_t)kk * ldb + j0, sizeof *row * nj);
            for (int j = nj; j < KERN_NR; j++)
                row[j] = 0.0f;
        }
    }
}

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,fma,prfchw")
#include <immintrin.h>

/* Gathers 32 rows' element kk per step: the transpose the keys of every
 * head need before Q K^T. Tails are masked; padding is zero. */
/* Transposes the 16x16 tile r (r[i] = row i) in registers: four rounds of
 * swapping the off-diagonal s x s blocks of each 2s x 2s block (s = 8, 4,
 * 2, 1), 16 two-source permutes each. */
static void transpose16(__m512 r[16])
{
    for (int s = 8; s >= 1; s /= 2) {
        int lo[16], hi[16];
        for (int c = 0; c < 16; c++) {
            lo[c] = c & s ? 16 + c - s : c;   /* row i:   i's left, i+s's left moved right */
            hi[c] = c & s ? 16 + c : c + s;   /* row i+s: i's right moved left, i+s's right */
        }
        __m512i il = _mm512_loadu_si512(lo), ih = _mm512_loadu_si512(hi);
        for (int i = 0; i < 16; i++) {
            if (i & s)
                continue;
            __m512 a = r[i], b = r[i + s];
            r[i] = _mm512_permutex2var_ps(a, il, b);
            r[i + s] = _mm512_permutex2var_ps(a, ih, b);
        }
    }
}

/* The 16 x kc tile of B at rows j0.. (nj of them valid) and columns kk0..
 * (kc <= 16 valid), transposed: t[kk] = B[j0 + 0..15][kk0 + kk], zero where
 * invalid. Row loads are contiguous (no gathers: a weight matrix is read
 * once, at memory speed). */
static void load_tile_t(const float *B, int ldb, int nj, int kk0, int kc, __m512 t[16])
{
    __mmask16 mk = kc >= 16 ? 0xffff : (__mmask16)((1u << kc) - 1);
    for (int j = 0; j < 16; j++)
        t[j] = j < nj ? _mm512_maskz_loadu_ps(mk, B + (size_t)j * ldb + kk0)
                      : _mm512_setzero_ps();
    transpose16(t);
}

/* Rows [j0, j0 + KERN_NR) of B (short rows only: k <= 256, so that they
 * fit in L1 beside the panel being transposed), fetched ahead. The keys a
 * head's panels are packed from lie 3D floats apart in the q/k/v rows, a
 * pattern the hardware does not follow on its own: the attention's pack
 * pass took 10-25% less time with this (timed inside the forward). */
static inline void prefetch_next_rows(const float *B, int ldb, int n, int k, int j0)
{
    if (k > 256)
        return;
    int nn = n - j0 < KERN_NR ? n - j0 : KERN_NR;
    for (int j = 0; j < nn; j++)
        for (int kk = 0; kk < k; kk += 16)
            _mm_prefetch((const char *)(B + (size_t)(j0 + j) * ldb + kk), _MM_HINT_T0);
}

void kern_pack_nt(const float *B, int ldb, int n, int k, float *dst)
{
    assert(k >= 1 && n >= 1 && ldb >= k && ALIGNED64(dst));
    int np = (n + KERN_NR - 1) / KERN_NR;
    for (int p = 0; p < np; p++) {
        float *d = dst + (size_t)p * k * KERN_NR;
        int j0 = p * KERN_NR, nj = n - j0 < KERN_NR ? n - j0 : KERN_NR;
        prefetch_next_rows(B, ldb, n, k, j0 + KERN_NR);
        for (int kk0 = 0; kk0 < k; kk0 += 16) {
            int kc = k - kk0 < 16 ? k - kk0 : 16;
            for (int v = 0; v < 2; v++) {
                __m512 t[16];
                int nv = nj - 16 * v;
                load_tile_t(B + (size_t)(j0 + 16 * v) * ldb, ldb, nv < 0 ? 0 : nv, kk0, kc,
                            t);
                for (int kk = 0; kk < kc; kk++)
                    _mm512_store_ps(d + (size_t)(kk0 + kk) * KERN_NR + 16 * v, t[kk]);
            }
        }
    }
}

/* float32 -> bf16 as to_bf16 below does (round to nearest even, NaN kept
 * quiet), 16 at a time, in the low 16 bits of each 32-bit lane. */
static __m512i bf16_bits(__m512 x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                 _mm512_and_si512(_mm512_srli_epi32(u, 16),
                                                  _mm512_set1_epi32(1))));
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x400000));
    return _mm512_srli_epi32(r, 16);
}

/* Two rows' worth of 16 columns as bf16 pairs: lane j holds (a[j], b[j]),
 * a in the low half, the layout kern_pack_*_bf16 store. */
static inline __m512i bf16_pairs(__m512 a, __m512 b)
{
    return _mm512_or_si512(bf16_bits(a), _mm512_slli_epi32(bf16_bits(b), 16));
}

void kern_pack_nt_bf16(const float *B, int ldb, int n, int k, unsigned short *dst)
{
    assert(k >= 1 && n >= 1 && ldb >= k && ALIGNED64(dst));
    int np = (n + KERN_NR - 1) / KERN_NR, k2 = (k + 1) / 2 * 2;
    for (int p = 0; p < np; p++) {
        unsigned short *d = dst + (size_t)p * k2 * KERN_NR;
        int j0 = p * KERN_NR, nj = n - j0 < KERN_NR ? n - j0 : KERN_NR;
        prefetch_next_rows(B, ldb, n, k, j0 + KERN_NR);
        for (int kk0 = 0; kk0 < k; kk0 += 16) {
            int kc = k - kk0 < 16 ? k - kk0 : 16;
            for (int v = 0; v < 2; v++) {
                __m512 t[16];
                int nv = nj - 16 * v;
                load_tile_t(B + (size_t)(j0 + 16 * v) * ldb, ldb, nv < 0 ? 0 : nv, kk0, kc,
                            t);
                /* vector v of the pair (kk, kk+1) holds columns 16v..16v+15,
                 * each as the pair (B[.][kk], B[.][kk+1]) */
                for (int kk = 0; kk < kc; kk += 2) {
                    _mm512_store_si512(d + (size_t)(kk0 + kk) * KERN_NR + 32 * v,
                                       bf16_pairs(t[kk], t[kk + 1]));
                }
            }
        }
    }
}

/* Rows (kk, kk+1) of B [k, n] as bf16 pairs, panel by panel: the layout of
 * kern_pack_nt_bf16 for a B stored the other way round (attention values).
 * No transpose: each pair of rows interleaves into one vector per 16
 * columns. */
void kern_pack_nn_bf16(const float *B, int ldb, int k, int n, unsigned short *dst)
{
    assert(k >= 1 && n >= 1 && ldb >= n && ALIGNED64(dst));
    int np = (n + KERN_NR - 1) / KERN_NR, k2 = (k + 1) / 2 * 2;
    for (int p = 0; p < np; p++) {
        unsigned short *d = dst + (size_t)p * k2 * KERN_NR;
        int j0 = p * KERN_NR, nj = n - j0 < KERN_NR ? n - j0 : KERN_NR;
        __mmask16 m[2];
        for (int v = 0; v < 2; v++) {
            int c = nj - 16 * v;
            m[v] = c >= 16 ? (__mmask16)0xffff : c <= 0 ? 0 : (__mmask16)((1u << c) - 1);
        }
        for (int kk = 0; kk < k; kk += 2) {
            const float *r0 = B + (size_t)kk * ldb + j0;
            for (int v = 0; v < 2; v++) {
                __m512 a = _mm512_maskz_loadu_ps(m[v], r0 + 16 * v);
                __m512 b = kk + 1 < k ? _mm512_maskz_loadu_ps(m[v], r0 + ldb + 16 * v)
                                      : _mm512_setzero_ps();
                _mm512_store_si512(d + (size_t)kk * KERN_NR + 32 * v, bf16_pairs(a, b));
            }
        }
    }
}

/* The arithmetic peak of the calling core: twelve independent chains of
 * 512-bit FMAs (enough to cover the latency of two FMA pipes), nothing
 * else, for about `ms` milliseconds. Returns GFLOP/s. */
double kern_fma_peak(double ms)
{
    __m512 a0 = _mm512_set1_ps(0.1f), a1 = _mm512_set1_ps(0.2f), a2 = _mm512_set1_ps(0.3f);
    __m512 a3 = _mm512_set1_ps(0.4f), a4 = _mm512_set1_ps(0.5f), a5 = _mm512_set1_ps(0.6f);
    __m512 a6 = _mm512_set1_ps(0.7f), a7 = _mm512_set1_ps(0.8f), a8 = _mm512_set1_ps(0.9f);
    __m512 a9 = _mm512_set1_ps(1.0f), a10 = _mm512_set1_ps(1.1f), a11 = _mm512_set1_ps(1.2f);
    __m512 m = _mm512_set1_ps(0.99999994f), c = _mm512_set1_ps(1e-7f);
    double t0 = clock_now_ms();
    long steps = 0;
    double el;
    do {
        for (int i = 0; i < 4096; i++) {
            a0 = _mm512_fmadd_ps(a0, m, c), a1 = _mm512_fmadd_ps(a1, m, c);
            a2 = _mm512_fmadd_ps(a2, m, c), a3 = _mm512_fmadd_ps(a3, m, c);
            a4 = _mm512_fmadd_ps(a4, m, c), a5 = _mm512_fmadd_ps(a5, m, c);
            a6 = _mm512_fmadd_ps(a6, m, c), a7 = _mm512_fmadd_ps(a7, m, c);
            a8 = _mm512_fmadd_ps(a8, m, c), a9 = _mm512_fmadd_ps(a9, m, c);
            a10 = _mm512_fmadd_ps(a10, m, c), a11 = _mm512_fmadd_ps(a11, m, c);
        }
        steps += 4096;
        el = clock_now_ms() - t0;
    } while (el < ms);
    __m512 sum = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                               _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    sum = _mm512_add_ps(sum, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    volatile float sink = _mm512_reduce_add_ps(sum); /* keeps the chains alive */
    (void)sink;
    return steps * 12.0 * 32.0 / (el * 1e6);
}

/* Writes an mr x nr corner of the 12x32 tile: + bias, + C when acc. */
static inline void store_tile(__m512 c[KERN_MR][2], float *C, int ldc, int mr, int nr,
                              const float *bias, int acc)
{
    __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (int i = 0; i < mr; i++) {
        float *cr = C + (size_t)i * ldc;
        __m512 v0 = _mm512_add_ps(c[i][0], bias0), v1 = _mm512_add_ps(c[i][1], bias1);
        if (acc) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
        }
        _mm512_mask_storeu_ps(cr, m0, v0);
        _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
}

/* The register tile for a tile of exactly MR rows and NV vectors of 16
 * columns (constants in each instantiation, see micro_direct): 2 MR
 * accumulators at most, two B vectors, one broadcast. A is read in place
 * (row stride lda), no packing pass: the rows' cache lines stay in L1
 * across 16 steps of k. Every second step also prefetches one of the pf_n
 * cache lines at pf into L2 (see next_panel). Only the MR rows and NV
 * vectors that exist are computed, so a short tile (the last of 261 rows:
 * 9) or a narrow one (the last keys of a block: 5) costs its own size, not
 * a whole tile's; each element's sum is the same chain of FMAs in any
 * case. */
static inline __attribute__((always_inline)) void
micro_rows(const int MR, const int NV, int kc, const float *A, size_t lda, const float *bp,
           size_t ldb, float *C, int ldc, int nr, const float *bias, int acc, const char *pf,
           int pf_n)
{
    __m512 c[KERN_MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < KERN_MR; i++)
        c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (int kk = 0; kk < kc; kk++) {
        __m512 b0 = _mm512_load_ps(bp), b1 = NV > 1 ? _mm512_load_ps(bp + 16) : b0;
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512 av = _mm512_set1_ps(A[i * lda + kk]);
            c[i][0] = _mm512_fmadd_ps(av, b0, c[i][0]);
            if (NV > 1)
                c[i][1] = _mm512_fmadd_ps(av, b1, c[i][1]);
        }
        bp += ldb;
        if (!(kk & 1) && (kk >> 1) < pf_n)
            _mm_prefetch(pf + (size_t)(kk >> 1) * 64, _MM_HINT_T1);
    }
    store_tile(c, C, ldc, MR, nr, bias, acc);
}

/* The switch behind micro_direct and micro_bf16: CALL(r, nv) with the
 * tile's rows r (1-12, a constant in each case) and vectors of columns nv
 * (1 when nr <= 16, else 2), so that each shape has its own loop. */
#define TILE_CASE(r, nr, CALL)                                                          \
    case r:                                                                             \
        if ((nr) > 16)                                                                  \
            CALL(r, 2);                                                                 \
        else                                                                            \
            CALL(r, 1);                                                                 \
        break
#define TILE_DISPATCH(mr, nr, CALL)                                                     \
    do {                                                                                \
        switch (mr) {                                                                   \
            TILE_CASE(1, nr, CALL); TILE_CASE(2, nr, CALL); TILE_CASE(3, nr, CALL);     \
            TILE_CASE(4, nr, CALL); TILE_CASE(5, nr, CALL); TILE_CASE(6, nr, CALL);     \
            TILE_CASE(7, nr, CALL); TILE_CASE(8, nr, CALL); TILE_CASE(9, nr, CALL);     \
            TILE_CASE(10, nr, CALL); TILE_CASE(11, nr, CALL); TILE_CASE(12, nr, CALL);  \
        default:                                                                        \
            assert(!"tile rows out of range");                                          \
        }                                                                               \
    } while (0)

/* A tile short of rows (mr < 12) or of columns (nr < 32): micro_rows for
 * its shape. */
static void micro_direct(int kc, const float *A, size_t lda, const float *bp, size_t ldb,
                         float *C, int ldc, int mr, int nr, const float *bias, int acc,
                         const char *pf, int pf_n)
{
#define CALL(r, nv) micro_rows(r, nv, kc, A, lda, bp, ldb, C, ldc, nr, bias, acc, pf, pf_n)
    TILE_DISPATCH(mr, nr, CALL);
#undef CALL
}

/* The whole-tile kernels' 24 accumulators, c<row><half> (rows 0-9, a, b),
 * as named variables so they stay in registers, and their store to C
 * (row stride ldc) with bias (or NULL) and, when acc, C's old values. */
#define FULL_TILE_ACCUMULATORS                                                          \
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00; \
    __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;           \
    __m512 c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00;           \
    __m512 c90 = c00, c91 = c00, ca0 = c00, ca1 = c00, cb0 = c00, cb1 = c00
#define PUT_ROW(i, ca, cb)                                                              \
    do {                                                                                \
        float *r_ = C + (i) * ldc;                                                      \
        __m512 v0_ = _mm512_add_ps(ca, bias0), v1_ = _mm512_add_ps(cb, bias1);          \
        if (acc) {                                                                      \
            v0_ = _mm512_add_ps(v0_, _mm512_loadu_ps(r_));                              \
            v1_ = _mm512_add_ps(v1_, _mm512_loadu_ps(r_ + 16));                         \
        }                                                                               \
        _mm512_storeu_ps(r_, v0_);                                                      \
        _mm512_storeu_ps(r_ + 16, v1_);                                                 \
    } while (0)
#define STORE_FULL_TILE()                                                               \
    do {                                                                                \
        __m512 bias0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();              \
        __m512 bias1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();         \
        PUT_ROW(0, c00, c01); PUT_ROW(1, c10, c11); PUT_ROW(2, c20, c21);               \
        PUT_ROW(3, c30, c31); PUT_ROW(4, c40, c41); PUT_ROW(5, c50, c51);               \
        PUT_ROW(6, c60, c61); PUT_ROW(7, c70, c71); PUT_ROW(8, c80, c81);               \
        PUT_ROW(9, c90, c91); PUT_ROW(10, ca0, ca1); PUT_ROW(11, cb0, cb1);             \
    } while (0)

/* micro_rows for a whole 12 x 32 tile, the common case: the twelve rows
 * are addressed from four base pointers and two strides (so no pointer is
 * spilled in the loop), and the accumulators go from registers to C
 * without a round trip through the stack. Same sums in the same order.
 * Every second step of the first 48 also fetches one of the tile's 24
 * lines of C for writing (PREFETCHW): a store to a line in no cache waits
 * for the line to be read first, which cost 4% of a product whose C is
 * larger than L2 (96 x 384 x 384 alone in a loop, C cold each call). */
static void micro_full(int kc, const float *A, size_t lda, const float *bp, size_t ldb,
                       float *C, size_t ldc, const float *bias, int acc, const char *pf, int pf_n)
{
    FULL_TILE_ACCUMULATORS;
    const float *p0 = A, *p3 = A + 3 * lda, *p6 = A + 6 * lda, *p9 = A + 9 * lda;
    size_t l2 = 2 * lda;
#define ROW(ca, cb, v)                                                                  \
    do {                                                                                \
        __m512 a_ = _mm512_set1_ps(v);                                                  \
        ca = _mm512_fmadd_ps(a_, b0, ca);                                               \
        cb = _mm512_fmadd_ps(a_, b1, cb);                                               \
    } while (0)
    for (int kk = 0; kk < kc; kk++) {
        __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
        ROW(c00, c01, p0[0]);
        ROW(c10, c11, p0[lda]);
        ROW(c20, c21, p0[l2]);
        ROW(c30, c31, p3[0]);
        ROW(c40, c41, p3[lda]);
        ROW(c50, c51, p3[l2]);
        ROW(c60, c61, p6[0]);
        ROW(c70, c71, p6[lda]);
        ROW(c80, c81, p6[l2]);
        ROW(c90, c91, p9[0]);
        ROW(ca0, ca1, p9[lda]);
        ROW(cb0, cb1, p9[l2]);
        p0++, p3++, p6++, p9++;
        bp += ldb;
        if (!(kk & 1) && (kk >> 1) < pf_n)
            _mm_prefetch(pf + (size_t)(kk >> 1) * 64, _MM_HINT_T1);
        if ((kk & 1) && (kk >> 1) < 24)
            __builtin_prefetch(C + (size_t)(kk >> 2) * ldc + ((kk >> 1) & 1) * 16, 1, 3);
    }
#undef ROW
    STORE_FULL_TILE();
}

/* The panel of B used after this one comes from memory while this one is
 * in use: its cache lines are spread over the row tiles that share this
 * panel, `per` lines each, tile t taking lines [t * per, (t + 1) * per). */
struct prefetch {
    const char *next;
    int lines, per;
};

static inline struct prefetch next_panel(const void *next, size_t bytes, int mc)
{
    struct prefetch p = {next, (int)(bytes / 64), 0};
    int tiles = (mc + KERN_MR - 1) / KERN_MR;
    p.per = (p.lines + tiles - 1) / tiles;
    return p;
}

static inline int prefetch_count(const struct prefetch *p, int tile)
{
    int left = p->lines - tile * p->per;
    return left < 0 ? 0 : left < p->per ? left : p->per;
}

/* A block's row stride in the scratch: kc rounded up to whole cache lines,
 * plus one, so that the rows fall in different L1 sets. */
static inline size_t a_copy_stride(int kc) { return ((size_t)kc + 15) / 16 * 16 + 16; }

size_t kern_scratch_floats(void) { return (size_t)KERN_MC * a_copy_stride(KERN_KC); }

/* Whether rows lda floats apart collide in L1: its 64 sets of 64-byte lines
 * repeat every 4 KiB, so with lda a multiple of 1024 floats the twelve rows
 * a micro-tile reads at once all map to one set, which holds 8 lines (12 on
 * some cores) besides B's: every step of k misses. That is every product
 * of ViT-L (D = 1024, 4096 hidden) and ViT-B's fc2 (3072): 8-10% of their
 * time, measured one product at a time. */
static inline int a_rows_collide(size_t lda) { return lda % 1024 == 0; }

size_t kern_a_stride(size_t k) { return a_rows_collide(k) ? k + 16 : k; }

/* Rows [0, rows) of A (stride lda), kc floats each, into L2 ahead of their
 * first use. A read in place from a matrix larger than L2 (the first panel
 * of B meets each block's rows cold) cost 4% of a product's time, measured
 * alone in a loop (96 x 384 x 384, A from a cold buffer each call). */
static inline void prefetch_rows(const float *a, size_t lda, int rows, int kc)
{
    for (int r = 0; r < rows; r++)
        for (int off = 0; off < kc; off += 16)
            _mm_prefetch((const char *)(a + (size_t)r * lda + off), _MM_HINT_T1);
}

/* The block of A after rows [i0, i0 + mb) of the pass at depth p0 (passes
 * kb deep): the pass's next rows, or the next pass's first ones; no rows
 * when this is the last block. */
struct next_a {
    const float *a;
    size_t lda;
    int rows, kc;
};

static inline struct next_a next_a_block(const float *A, int lda, int m, int k, int i0, int mb,
                                         int p0, int kb)
{
    struct next_a na = {NULL, (size_t)lda, 0, 0};
    if (i0 + mb < m) {
        na.a = A + (size_t)(i0 + mb) * lda + p0;
        na.rows = m - i0 - mb < mb ? m - i0 - mb : mb;
        na.kc = k - p0 < kb ? k - p0 : kb;
    } else if (p0 + kb < k) {
        na.a = A + p0 + kb;
        na.rows = m < mb ? m : mb;
        na.kc = k - p0 - kb < kb ? k - p0 - kb : kb;
    }
    return na;
}

/* The tile of rows [ir, ir + KERN_MR) of a block of `rows` rows at a
 * (stride lda, kc floats each), clipped to the block; nothing past it. */
static inline void prefetch_tile(const float *a, size_t lda, int rows, int ir, int kc)
{
    if (ir < rows)
        prefetch_rows(a + (size_t)ir * lda, lda, rows - ir < KERN_MR ? rows - ir : KERN_MR, kc);
}

/* The next block's rows of the tile at row ir, fetched during this block's
 * last panel of B, so that its first panel finds them in cache. */
static inline void prefetch_next_tile(const struct next_a *na, int ir)
{
    if (na)
        prefetch_tile(na->a, na->lda, na->rows, ir, na->kc);
}

/* The blocked product behind kern_gemm and kern_gemm_nn: panel jp of B at
 * B + jp * panel_stride, its rows ldb floats apart (packed: k * KERN_NR and
 * KERN_NR; in place: KERN_NR and the matrix's stride). A packed B's next
 * panel is contiguous, so it is prefetched while this one is in use; an
 * in-place B is left to the hardware's stride prefetcher. A block of A read
 * in place is fetched a tile ahead during the first panel, and the next
 * block during the last one (prefetch_rows). */
static void gemm_blocks(int m, int n, int k, const float *A, int lda, const float *B,
                        size_t panel_stride, size_t ldb, int packed, float *C, int ldc,
                        const float *bias, int accumulate, float *scratch)
{
    int copy = scratch && a_rows_collide(lda);
    int np = (n + KERN_NR - 1) / KERN_NR;
    int kb = k_block(k), mb = m_block(m);
    for (int p0 = 0; p0 < k; p0 += kb) {
        int kc = k - p0 < kb ? k - p0 : kb;
        int acc = accumulate || p0 > 0;
        const float *bias_now = p0 == 0 ? bias : NULL;
        /* MC rows of A stay in L2 while every 32-column panel of B passes */
        for (int i0 = 0; i0 < m; i0 += mb) {
            int mc = m - i0 < mb ? m - i0 : mb;
            const float *ab = A + (size_t)i0 * lda + p0;
            size_t la = (size_t)lda;
            if (copy) { /* once per block, for every panel of B */
                la = a_copy_stride(kc);
                for (int i = 0; i < mc; i++)
                    memcpy(scratch + i * la, ab + (size_t)i * lda, sizeof *ab * kc);
                ab = scratch;
            }
            struct next_a na = next_a_block(A, lda, m, k, i0, mb, p0, kb);
            for (int jp = 0; jp < np; jp++) {
                const float *bp = B + jp * panel_stride + (size_t)p0 * ldb;
                int j0 = jp * KERN_NR, nr = n - j0 < KERN_NR ? n - j0 : KERN_NR;
                struct prefetch pf = next_panel(jp + 1 < np ? bp + panel_stride
                                                            : B + (size_t)p0 * ldb,
                                                packed ? sizeof *bp * kc * KERN_NR : 0, mc);
                for (int ir = 0, t = 0; ir < mc; ir += KERN_MR, t++) {
                    int mr = mc - ir < KERN_MR ? mc - ir : KERN_MR;
                    const float *a = ab + ir * la;
                    float *c = C + (size_t)(i0 + ir) * ldc + j0;
                    const char *pfa = pf.next + (size_t)t * pf.per * 64;
                    if (jp == 0) /* the next tile's rows */
                        prefetch_tile(ab, la, mc, ir + KERN_MR, kc);
                    if (jp == np - 1)
                        prefetch_next_tile(&na, ir);
                    if (mr == KERN_MR && nr == KERN_NR)
                        micro_full(kc, a, la, bp, ldb, c, (size_t)ldc,
                                   bias_now ? bias_now + j0 : NULL, acc, pfa,
                                   prefetch_count(&pf, t));
                    else
                        micro_direct(kc, a, la, bp, ldb, c, ldc, mr, nr,
                                     bias_now ? bias_now + j0 : NULL, acc, pfa,
                                     prefetch_count(&pf, t));
                }
            }
        }
    }
}

void kern_gemm(int m, int n, int k, const float *A, int lda, const float *Bp, float *C,
               int ldc, const float *bias, int accumulate, float *scratch)
{
    assert(m >= 0 && n >= 0 && k >= 0 && lda >= k && ldc >= n && ALIGNED64(Bp));
    gemm_blocks(m, n, k, A, lda, Bp, (size_t)k * KERN_NR, KERN_NR, 1, C, ldc, bias, accumulate,
                scratch);
}

void kern_gemm_nn(int m, int n, int k, const float *A, int lda, const float *B, int ldb,
                  float *C, int ldc, int accumulate)
{
    assert(m >= 0 && n >= 0 && k >= 0 && lda >= k && ldb >= n && ldc >= n && n % KERN_NR == 0 &&
           ldb % 16 == 0 && ALIGNED64(B));
    gemm_blocks(m, n, k, A, lda, B, KERN_NR, (size_t)ldb, 0, C, ldc, NULL, accumulate, NULL);
}

/* e^x for x in float range, relative error ~1e-7: x = n ln2 + r,
 * |r| <= ln2 / 2, degree-6 Taylor polynomial, 2^n by scalef. */
static inline __m512 exp512(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* 2^t for t <= 0 (softmax exponents after the row maximum is taken off):
 * t = n + r, n = round(t), r = t - n (vreduceps: exact, and 0 for t = -inf,
 * so that 2^-inf = 0), 2^r by a degree-5 polynomial (minimax for the
 * relative error on [-1/2, 1/2]: 7.5e-8, 2.1e-7 once evaluated in
 * float32), 2^n by scalef (0 below 2^-149). */
static inline __m512 exp2_neg512(__m512 t)
{
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_reduce_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 p = _mm512_set1_ps(1.3276471979286704e-3f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(9.675541334209831e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.5507132735430752e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.24022119723848651f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.693146967064733f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0000000716546822f));
    return _mm512_scalef_ps(p, n);
}

static inline float hmax(__m512 v) { return _mm512_reduce_max_ps(v); }
static inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

/* The maximum of s[0..n), n = n16 + the lanes in tail: four chains, so
 * that the loop runs at the loads' pace, not max's latency. */
static inline float row_max(const float *s, int n16, __mmask16 tail)
{
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int j = 0;
    for (; j + 64 <= n16; j += 64) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(s + j));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(s + j + 16));
        m2 = _mm512_max_ps(m2, _mm512_loadu_ps(s + j + 32));
        m3 = _mm512_max_ps(m3, _mm512_loadu_ps(s + j + 48));
    }
    for (; j < n16; j += 16)
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(s + j));
    if (tail)
        m1 = _mm512_max_ps(m1, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail, s + n16));
    return hmax(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

/* A softmax term 2^(s c - mc), mc = m c rounded once per row: one FMA. The
 * rounding of mc scales every term of the row, and their sum, by the same
 * factor, so the normalised weights do not see it (the online softmax
 * rescales with the same rounded products, see online_max). */
static inline __m512 softmax_exp(__m512 s, __m512 vmc, __m512 vc)
{
    return exp2_neg512(_mm512_fmsub_ps(s, vc, vmc));
}

/* Where a row's softmax terms go: 16 of them (`mask` lanes) to element j
 * of the row's output, f (float32) or h (bf16). The bf16 one is defined
 * with the bf16 kernels below; row_terms and softmax_online are always
 * inlined, so the store is a direct call in each caller's target. */
typedef void (*put_terms_fn)(__m512 e, float *f, unsigned short *h, int j, __mmask16 mask);

static inline __attribute__((always_inline)) void put_f32(__m512 e, float *f,
                                                          unsigned short *h, int j,
                                                          __mmask16 mask)
{
    (void)h;
    _mm512_mask_storeu_ps(f + j, mask, e);
}

/* The terms softmax_exp(s[j]) of one row (e^(scale (s - m)), c = scale
 * log2(e)), stored by `put` into f (f == s is fine) or h; returns their sum,
 * added in index order. Meanwhile it takes the maximum of the next row `nx`
 * into *nx_max: the next row cannot start without it, and its loads and
 * maxima run beside this row's arithmetic instead of after it. n = n16 +
 * the lanes in tail. */
static inline __attribute__((always_inline)) float
row_terms(const float *s, const float *nx, int n16, __mmask16 tail, float m, float c,
          put_terms_fn put, float *f, unsigned short *h, float *nx_max)
{
    __m512 vc = _mm512_set1_ps(c), vmc = _mm512_set1_ps(m * c), acc = _mm512_setzero_ps();
    __m512 x0 = _mm512_set1_ps(-INFINITY), x1 = x0;
    int j = 0;
    for (; j + 32 <= n16; j += 32) {
        __m512 e0 = softmax_exp(_mm512_loadu_ps(s + j), vmc, vc);
        __m512 e1 = softmax_exp(_mm512_loadu_ps(s + j + 16), vmc, vc);
        x0 = _mm512_max_ps(x0, _mm512_loadu_ps(nx + j));
        x1 = _mm512_max_ps(x1, _mm512_loadu_ps(nx + j + 16));
        put(e0, f, h, j, 0xffff);
        put(e1, f, h, j + 16, 0xffff);
        acc = _mm512_add_ps(_mm512_add_ps(acc, e0), e1);
    }
    if (j < n16) {
        __m512 e = softmax_exp(_mm512_loadu_ps(s + j), vmc, vc);
        x0 = _mm512_max_ps(x0, _mm512_loadu_ps(nx + j));
        put(e, f, h, j, 0xffff);
        acc = _mm512_add_ps(acc, e);
    }
    if (tail) {
        __m512 e = softmax_exp(_mm512_maskz_loadu_ps(tail, s + n16), vmc, vc);
        e = _mm512_maskz_mov_ps(tail, e);
        x1 = _mm512_max_ps(x1, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail, nx + n16));
        put(e, f, h, n16, tail);
        acc = _mm512_add_ps(acc, e);
    }
    *nx_max = hmax(_mm512_max_ps(x0, x1));
    return hsum(acc);
}

void kern_softmax_rows(float *S, int rows, int n, int lds, float scale, float *sums)
{
    assert(rows >= 0 && n >= 1 && lds >= n);
    int n16 = n & ~15;
    __mmask16 tail = (__mmask16)((1u << (n - n16)) - 1);
    float c = scale * 1.44269504088896341f;
    float mx = rows > 0 ? row_max(S, n16, tail) : 0.0f;
    for (int r = 0; r < rows; r++) {
        float *s = S + (size_t)r * lds;
        const float *nx = r + 1 < rows ? s + lds : s; /* the last row's is not used */
        sums[r] = row_terms(s, nx, n16, tail, mx, c, put_f32, s, NULL, &mx);
    }
}

/* One row of an online softmax block whose own maximum is bm: the running
 * maximum *m becomes the maximum over all blocks so far; returns the factor
 * exp(scale (m_before - m)) (c = scale log2(e)) that the earlier blocks'
 * terms, taken relative to m_before, need. */
static inline float online_max(float bm, float c, float *m)
{
    float m_old = *m, m_new = bm > m_old ? bm : m_old;
    *m = m_new;
    return m_old == -INFINITY ? 0.0f : exp2f(m_old * c - m_new * c);
}

/* kern_softmax_online (terms in place, put_f32) and its bf16 form (terms
 * into P). */
static inline __attribute__((always_inline)) void
softmax_online(float *S, int rows, int n, int lds, float scale, float *m, float *l, float *alpha,
               put_terms_fn put, unsigned short *P, size_t ldp)
{
    int n16 = n & ~15;
    __mmask16 tail = (__mmask16)((1u << (n - n16)) - 1);
    float c = scale * 1.44269504088896341f;
    float bm = rows > 0 ? row_max(S, n16, tail) : 0.0f;
    for (int r = 0; r < rows; r++) {
        float *s = S + (size_t)r * lds;
        const float *nx = r + 1 < rows ? s + lds : s;
        unsigned short *p = P ? P + (size_t)r * ldp : NULL;
        float a = online_max(bm, c, &m[r]);
        l[r] = l[r] * a + row_terms(s, nx, n16, tail, m[r], c, put, s, p, &bm);
        if (p && (n & 1))
            p[n] = 0; /* the pair (n - 1, n) of an odd n */
        alpha[r] = a;
    }
}

void kern_softmax_online(float *S, int rows, int n, int lds, float scale, float *m, float *l,
                         float *alpha)
{
    assert(rows >= 0 && n >= 1 && lds >= n);
    softmax_online(S, rows, n, lds, scale, m, l, alpha, put_f32, NULL, 0);
}

/* 1 / d: the 14-bit hardware estimate and one Newton step (relative
 * error ~1e-8), cheaper than a division. d > 0 and finite or +inf. */
static inline __m512 recip512(__m512 d)
{
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

/* gelu(u) = u/2 (1 + erf(u / sqrt 2)). With z = |u| / sqrt 2 and
 * q = erfc(z) = t P(t) e^{-z^2}, t = 1 / (1 + p z) (Abramowitz-Stegun
 * 7.1.26, |error| <= 1.5e-7): 1 + erf = q for u < 0 (no cancellation),
 * 2 - q otherwise. e^{-z^2} = 2^{-z^2 log2(e)}. */
static inline __m512 gelu512(__m512 u)
{
    /* z capped at 1e4 (erfc is 0 in float long before): 1 + p z and z^2 stay finite */
    __m512 z = _mm512_min_ps(_mm512_mul_ps(_mm512_abs_ps(u), _mm512_set1_ps(0.70710678118654752f)),
                             _mm512_set1_ps(1e4f));
    __m512 t = recip512(_mm512_fmadd_ps(z, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    __m512 e = exp2_neg512(_mm512_mul_ps(_mm512_mul_ps(z, z), _mm512_set1_ps(-1.44269504088896341f)));
    __m512 q = _mm512_mul_ps(p, e);
    __mmask16 neg = _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 one_plus_erf = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(2.0f), q), q);
    return _mm512_mul_ps(_mm512_mul_ps(u, _mm512_set1_ps(0.5f)), one_plus_erf);
}

static inline __m512 sigmoid_mul512(__m512 u, float k)
{
    __m512 e = exp512(_mm512_mul_ps(u, _mm512_set1_ps(-k)));
    return _mm512_mul_ps(u, recip512(_mm512_add_ps(_mm512_set1_ps(1.0f), e)));
}

void kern_gelu(float *x, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, gelu512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, m, gelu512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

void kern_quickgelu(float *x, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, sigmoid_mul512(_mm512_loadu_ps(x + i), 1.702f));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, m, sigmoid_mul512(_mm512_maskz_loadu_ps(m, x + i), 1.702f));
    }
}

void kern_swiglu_row(float *h, const float *g, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(h + i, _mm512_mul_ps(sigmoid_mul512(_mm512_loadu_ps(h + i), 1.0f),
                                              _mm512_loadu_ps(g + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(sigmoid_mul512(_mm512_maskz_loadu_ps(m, h + i), 1.0f),
                                 _mm512_maskz_loadu_ps(m, g + i));
        _mm512_mask_storeu_ps(h + i, m, v);
    }
}

void kern_layernorm(const float *x, float *y, int n, int d, const float *w, const float *b,
                    float eps)
{
    assert(n >= 0 && d >= 1);
    int d16 = d & ~15;
    __mmask16 tail = (__mmask16)((1u << (d - d16)) - 1);
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * d;
        float *yr = y + (size_t)t * d;
        __m512 s = _mm512_setzero_ps();
        for (int i = 0; i < d16; i += 16)
            s = _mm512_add_ps(s, _mm512_loadu_ps(xr + i));
        if (tail)
            s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(tail, xr + d16));
        float mu = hsum(s) / d;
        __m512 vm = _mm512_set1_ps(mu), v = _mm512_setzero_ps();
        for (int i = 0; i < d16; i += 16) {
            __m512 u = _mm512_sub_ps(_mm512_loadu_ps(xr + i), vm);
            v = _mm512_fmadd_ps(u, u, v);
        }
        if (tail) {
            __m512 u = _mm512_maskz_sub_ps(tail, _mm512_maskz_loadu_ps(tail, xr + d16), vm);
            v = _mm512_fmadd_ps(u, u, v);
        }
        float inv = 1.0f / sqrtf(hsum(v) / d + eps);
        __m512 vi = _mm512_set1_ps(inv);
        for (int i = 0; i < d16; i += 16) {
            __m512 u = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + i), vm), vi);
            _mm512_storeu_ps(yr + i, _mm512_fmadd_ps(u, _mm512_loadu_ps(w + i),
                                                     _mm512_loadu_ps(b + i)));
        }
        if (tail) {
            __m512 u = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, xr + d16), vm), vi);
            _mm512_mask_storeu_ps(yr + d16, tail,
                                  _mm512_fmadd_ps(u, _mm512_maskz_loadu_ps(tail, w + d16),
                                                  _mm512_maskz_loadu_ps(tail, b + d16)));
        }
    }
}

void kern_scale_rows(const float *x, int ldx, const float *f, int n, int d, float *y, int ldy)
{
    assert(n >= 0 && d >= 0 && ldx >= d && ldy >= d);
    int d16 = d & ~15;
    __mmask16 tail = (__mmask16)((1u << (d - d16)) - 1);
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * ldx;
        float *yr = y + (size_t)t * ldy;
        __m512 fv = _mm512_set1_ps(f[t]);
        for (int i = 0; i < d16; i += 16)
            _mm512_storeu_ps(yr + i, _mm512_mul_ps(_mm512_loadu_ps(xr + i), fv));
        if (tail)
            _mm512_mask_storeu_ps(yr + d16, tail,
                                  _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, xr + d16), fv));
    }
}

void kern_residual(float *h, const float *a, const float *gamma, int n, int d)
{
    assert(n >= 0 && d >= 0);
    int d16 = d & ~15;
    __mmask16 tail = (__mmask16)((1u << (d - d16)) - 1);
    for (int t = 0; t < n; t++) {
        float *hr = h + (size_t)t * d;
        const float *ar = a + (size_t)t * d;
        for (int i = 0; i < d16; i += 16) {
            __m512 av = _mm512_loadu_ps(ar + i);
            __m512 hv = _mm512_loadu_ps(hr + i);
            hv = gamma ? _mm512_fmadd_ps(_mm512_loadu_ps(gamma + i), av, hv)
                       : _mm512_add_ps(hv, av);
            _mm512_storeu_ps(hr + i, hv);
        }
        if (tail) {
            __m512 av = _mm512_maskz_loadu_ps(tail, ar + d16);
            __m512 hv = _mm512_maskz_loadu_ps(tail, hr + d16);
            hv = gamma ? _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, gamma + d16), av, hv)
                       : _mm512_add_ps(hv, av);
            _mm512_mask_storeu_ps(hr + d16, tail, hv);
        }
    }
}

/* float -> bfloat16, round to nearest even (NaN kept quiet). */
static unsigned short to_bf16(float f)
{
    unsigned int u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (unsigned short)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (unsigned short)(u >> 16);
}

#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bf16,fma,prfchw")

/* A block [mc, kc] as bf16 rows of kc2 (kc rounded up to even) elements,
 * row stride sa. */
static void pack_a_bf16(const float *A, int lda, int mc, int kc, int kc2, size_t sa,
                        unsigned short *dst)
{
    for (int i = 0; i < mc; i++) {
        const float *a = A + (size_t)i * lda;
        unsigned short *d = dst + (size_t)i * sa;
        int kk = 0;
        for (; kk + 32 <= kc; kk += 32) {
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(a + kk + 16),
                                              _mm512_loadu_ps(a + kk));
            _mm512_storeu_si512(d + kk, (__m512i)v);
        }
        for (; kk < kc; kk++)
            d[kk] = to_bf16(a[kk]); /* the same rounding as the vector instruction */
        if (kc2 > kc)
            d[kc] = 0;
    }
}

/* micro_rows for bf16 operands: MR rows (rows lda2 elements apart) and NV
 * vectors of columns, kc2 deep in pairs. */
static inline __attribute__((always_inline)) void
micro_bf16_rows(const int MR, const int NV, int kc2, const unsigned short *ap, size_t lda2,
                const unsigned short *bp, float *C, int ldc, int nr, const float *bias, int acc,
                const char *pf, int pf_n)
{
    __m512 c[KERN_MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < KERN_MR; i++)
        c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (int kk = 0; kk < kc2; kk += 2) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(bp);
        __m512bh b1 = NV > 1 ? (__m512bh)_mm512_load_si512(bp + 32) : b0;
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            unsigned int pair;
            memcpy(&pair, ap + i * lda2 + kk, 4);
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)pair);
            c[i][0] = _mm512_dpbf16_ps(c[i][0], av, b0);
            if (NV > 1)
                c[i][1] = _mm512_dpbf16_ps(c[i][1], av, b1);
        }
        bp += 2 * KERN_NR;
        if ((kk >> 1) < pf_n)
            _mm_prefetch(pf + (size_t)(kk >> 1) * 64, _MM_HINT_T1);
    }
    store_tile(c, C, ldc, MR, nr, bias, acc);
}

/* A bf16 tile short of rows or columns (as micro_direct). */
static void micro_bf16(int kc2, const unsigned short *ap, size_t lda2, const unsigned short *bp,
                       float *C, int ldc, int mr, int nr, const float *bias, int acc,
                       const char *pf, int pf_n)
{
#define CALL(r, nv) micro_bf16_rows(r, nv, kc2, ap, lda2, bp, C, ldc, nr, bias, acc, pf, pf_n)
    TILE_DISPATCH(mr, nr, CALL);
#undef CALL
}

/* micro_bf16_rows for a whole 12 x 32 tile: rows on four base pointers,
 * accumulators stored straight from registers, C's lines fetched for
 * writing in the first 24 steps (as micro_full). */
static void micro_bf16_full(int kc2, const unsigned short *ap, size_t lda2,
                            const unsigned short *bp, float *C, size_t ldc, const float *bias,
                            int acc, const char *pf, int pf_n)
{
    FULL_TILE_ACCUMULATORS;
    const unsigned short *p0 = ap, *p3 = ap + 3 * lda2, *p6 = ap + 6 * lda2, *p9 = ap + 9 * lda2;
    size_t l2 = 2 * lda2;
#define ROW(ca, cb, ptr)                                                                \
    do {                                                                                \
        unsigned int pair_;                                                             \
        memcpy(&pair_, ptr, 4);                                                         \
        __m512bh a_ = (__m512bh)_mm512_set1_epi32((int)pair_);                          \
        ca = _mm512_dpbf16_ps(ca, a_, b0);                                              \
        cb = _mm512_dpbf16_ps(cb, a_, b1);                                              \
    } while (0)
    for (int kk = 0; kk < kc2; kk += 2) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(bp), b1 = (__m512bh)_mm512_load_si512(bp + 32);
        ROW(c00, c01, p0);
        ROW(c10, c11, p0 + lda2);
        ROW(c20, c21, p0 + l2);
        ROW(c30, c31, p3);
        ROW(c40, c41, p3 + lda2);
        ROW(c50, c51, p3 + l2);
        ROW(c60, c61, p6);
        ROW(c70, c71, p6 + lda2);
        ROW(c80, c81, p6 + l2);
        ROW(c90, c91, p9);
        ROW(ca0, ca1, p9 + lda2);
        ROW(cb0, cb1, p9 + l2);
        p0 += 2, p3 += 2, p6 += 2, p9 += 2;
        bp += 2 * KERN_NR;
        if ((kk >> 1) < pf_n)
            _mm_prefetch(pf + (size_t)(kk >> 1) * 64, _MM_HINT_T1);
        if ((kk >> 1) < 24)
            __builtin_prefetch(C + (size_t)(kk >> 2) * ldc + ((kk >> 1) & 1) * 16, 1, 3);
    }
#undef ROW
    STORE_FULL_TILE();
}

/* One block of mc rows of a bf16 product (A rounded, rows lda2 apart)
 * against every panel of B (b0: the first panel at this pass's depth,
 * panels ldbp elements apart), kc2 deep: the panel and tile loops of
 * kern_gemm_bf16 and kern_gemm_bf16_pa. */
static void bf16_panels(int mc, int n, const unsigned short *ab, size_t lda2,
                        const unsigned short *b0, size_t ldbp, int kc2, float *C, int ldc,
                        const float *bias, int acc, const struct next_a *na)
{
    int np = (n + KERN_NR - 1) / KERN_NR;
    for (int jp = 0; jp < np; jp++) {
        const unsigned short *bp = b0 + (size_t)jp * ldbp;
        int j0 = jp * KERN_NR, nr = n - j0 < KERN_NR ? n - j0 : KERN_NR;
        struct prefetch pf = next_panel(jp + 1 < np ? bp + ldbp : b0,
                                        sizeof *bp * kc2 * KERN_NR, mc);
        for (int ir = 0, t = 0; ir < mc; ir += KERN_MR, t++) {
            int mr = mc - ir < KERN_MR ? mc - ir : KERN_MR;
            const char *pfa = pf.next + (size_t)t * pf.per * 64;
            float *c = C + (size_t)ir * ldc + j0;
            if (jp == np - 1)
                prefetch_next_tile(na, ir);
            if (mr == KERN_MR && nr == KERN_NR)
                micro_bf16_full(kc2, ab + (size_t)ir * lda2, lda2, bp, c, (size_t)ldc,
                                bias ? bias + j0 : NULL, acc, pfa, prefetch_count(&pf, t));
            else
                micro_bf16(kc2, ab + (size_t)ir * lda2, lda2, bp, c, ldc, mr, nr,
                           bias ? bias + j0 : NULL, acc, pfa, prefetch_count(&pf, t));
        }
    }
}

void kern_gemm_bf16(int m, int n, int k, const float *A, int lda, const unsigned short *Bp,
                    float *C, int ldc, const float *bias, int accumulate,
                    unsigned short *scratch)
{
    assert(m >= 0 && n >= 0 && k >= 0 && lda >= k && ldc >= n && ALIGNED64(Bp) && scratch);
    int k2 = (k + 1) / 2 * 2, kb = k_block(k), mb = m_block(m);
    for (int p0 = 0; p0 < k; p0 += kb) {
        int kc = k - p0 < kb ? k - p0 : kb, kc2 = (kc + 1) / 2 * 2;
        size_t sa = bf16_a_stride(kc2);
        int acc = accumulate || p0 > 0;
        const float *bias_now = p0 == 0 ? bias : NULL;
        for (int i0 = 0; i0 < m; i0 += mb) {
            int mc = m - i0 < mb ? m - i0 : mb;
            struct next_a na = next_a_block(A, lda, m, k, i0, mb, p0, kb);
            pack_a_bf16(A + (size_t)i0 * lda + p0, lda, mc, kc, kc2, sa, scratch);
            bf16_panels(mc, n, scratch, sa, Bp + (size_t)p0 * KERN_NR, (size_t)k2 * KERN_NR, kc2,
                        C + (size_t)i0 * ldc, ldc, bias_now, acc, &na);
        }
    }
}

void kern_round_bf16_rows(const float *A, int lda, int m, int k, unsigned short *dst, size_t ld2)
{
    assert(m >= 0 && k >= 1 && lda >= k && ld2 >= (size_t)(k + 1) / 2 * 2);
    pack_a_bf16(A, lda, m, k, (k + 1) / 2 * 2, ld2, dst);
}

void kern_gemm_bf16_pa(int m, int n, int k, const unsigned short *Ap, size_t lda2,
                       const unsigned short *Bp, size_t ldbp, float *C, int ldc, int accumulate)
{
    int k2 = (k + 1) / 2 * 2;
    assert(m >= 0 && n >= 0 && k >= 1 && lda2 >= (size_t)k2 && ldc >= n && ALIGNED64(Bp) &&
           ldbp % 32 == 0 && (n <= KERN_NR || ldbp >= (size_t)k2 * KERN_NR));
    int kb = k_block(k), mb = m_block(m);
    for (int p0 = 0; p0 < k; p0 += kb) {
        int kc = k - p0 < kb ? k - p0 : kb, kc2 = (kc + 1) / 2 * 2;
        int acc = accumulate || p0 > 0;
        for (int i0 = 0; i0 < m; i0 += mb) {
            int mc = m - i0 < mb ? m - i0 : mb;
            bf16_panels(mc, n, Ap + (size_t)i0 * lda2 + p0, lda2, Bp + (size_t)p0 * KERN_NR, ldbp,
                        kc2, C + (size_t)i0 * ldc, ldc, NULL, acc, NULL);
        }
    }
}

/* The bf16 put_terms_fn: 16 terms (`mask` lanes) rounded to bf16 (nearest
 * even, as kern_round_bf16_rows) at h + j; S is left as it was. */
static inline __attribute__((always_inline)) void put_bf16(__m512 e, float *f,
                                                           unsigned short *h, int j,
                                                           __mmask16 mask)
{
    (void)f;
    __m256i v = (__m256i)_mm512_cvtneps_pbh(e);
    if (mask == 0xffff) {
        _mm256_storeu_si256((__m256i *)(h + j), v);
        return;
    }
    unsigned short tmp[16];
    _mm256_storeu_si256((__m256i *)tmp, v);
    memcpy(h + j, tmp, sizeof *tmp * (size_t)__builtin_popcount(mask));
}

void kern_softmax_online_bf16(const float *S, int rows, int n, int lds, float scale, float *m,
                              float *l, float *alpha, unsigned short *P, size_t ldp)
{
    assert(rows >= 0 && n >= 1 && lds >= n && ldp >= (size_t)(n + 1) / 2 * 2);
    /* S is only read: the terms go to P */
    softmax_online((float *)S, rows, n, lds, scale, m, l, alpha, put_bf16, P, ldp);
}

#pragma GCC pop_options
