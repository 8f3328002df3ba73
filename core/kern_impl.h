/* kern_impl.h - private to core/: the AVX-512 kernels of the forward pass
 * (packed GEMM, softmax, GELU, LayerNorm), chosen at run time. Callers check
 * kern_available() and fall back to OpenBLAS and scalar code otherwise.
 * All functions are single-threaded and re-entrant; threading is done by the
 * caller splitting rows. Packed matrices are read-only once built.
 *
 * Preconditions (asserted in core/kern.c; `assert`, so compiled out only
 * with NDEBUG, which the Makefile never sets): sizes are >= 0 (m, n, k,
 * rows) and >= 1 where a row is formed (d, the packed n and k); leading
 * dimensions are at least the row length they step over (lda >= k,
 * ldb >= k for kern_pack_nt and >= n for kern_pack_nn, ldc >= n, lds >= n);
 * packed panels (dst of kern_pack_*, Bp of kern_gemm*) are 64-byte aligned,
 * as the aligned vector loads and stores on them need, and hold
 * kern_packed_floats / kern_packed_bf16_elems elements; A, C, S, x, h and the
 * LayerNorm rows need no alignment (unaligned accesses). */
#ifndef LOSTD_KERN_IMPL_H
#define LOSTD_KERN_IMPL_H

#include <stddef.h>

#define KERN_NR 32  /* columns per packed panel */
#define KERN_MR 12  /* rows per micro-tile */
#define KERN_KC 1024 /* most depth per pass (k is split into equal passes) */
#define KERN_MC 96  /* rows of A kept in L2 while the panels of B pass */

/* 1 when the CPU has AVX-512F (and LOSTD_KERNELS is not "blas"). Pure. */
int kern_available(void);

/* Floats needed for a packed [n, k] right-hand side: n rounded up to
 * KERN_NR, times k. */
size_t kern_packed_floats(int n, int k);

/* Packs B for C = A . B^T where B is stored [n, k] row-major with row
 * stride ldb (PyTorch Linear weights, attention keys). dst: panels of
 * KERN_NR columns, k-major, zero-padded. */
void kern_pack_nt(const float *B, int ldb, int n, int k, float *dst);

/* Packs B for C = A . B where B is stored [k, n] row-major with row stride
 * ldb (attention values). Same layout as kern_pack_nt. */
void kern_pack_nn(const float *B, int ldb, int k, int n, float *dst);

/* C[m, n] (row stride ldc) = (accumulate ? C : 0) + bias + A[m, k] . Bp,
 * with A row-major (stride lda) and Bp from kern_pack_*. bias [n] or NULL.
 * scratch: kern_scratch_floats() floats, 64-byte aligned, or NULL. A is
 * read in place, except that with scratch and lda a multiple of 1024
 * floats each block of A is first copied there with a padded stride (see
 * kern.c: such rows collide in the L1 cache). The same sums either way. */
void kern_gemm(int m, int n, int k, const float *A, int lda, const float *Bp, float *C,
               int ldc, const float *bias, int accumulate, float *scratch);

/* Floats of the scratch kern_gemm copies a block of A into. */
size_t kern_scratch_floats(void);

/* A row stride for an A of k columns that kern_gemm reads in place, never
 * copying: k, or one cache line more when k's rows would collide in L1. */
size_t kern_a_stride(size_t k);

/* kern_gemm with B read in place: row-major [k, n], row stride ldb, no
 * packing (attention values, straight from the q/k/v rows: the hardware
 * follows the stride as fast as it streams a packed panel). n a multiple of
 * KERN_NR, B 64-byte aligned and ldb a multiple of 16 (aligned loads). The
 * same sums in the same order as kern_gemm on kern_pack_nn(B). */
void kern_gemm_nn(int m, int n, int k, const float *A, int lda, const float *B, int ldb,
                  float *C, int ldc, int accumulate);

/* GFLOP/s of the calling core on nothing but independent 512-bit FMAs,
 * measured for about ms milliseconds: the arithmetic peak. */
double kern_fma_peak(double ms);

/* bfloat16 variant (AVX-512 BF16 dot products): 1 when the CPU has it. */
int kern_bf16_available(void);

/* uint16 elements needed for a bf16-packed [n, k] right-hand side (k rounded
 * up to even). Layout: panels of KERN_NR columns; per pair of k, 32 columns
 * x 2 values, so one 64-byte vector holds 16 columns' (k, k+1) pairs. */
size_t kern_packed_bf16_elems(int n, int k);
void kern_pack_nt_bf16(const float *B, int ldb, int n, int k, unsigned short *dst);
/* The same layout for B stored [k, n] row-major (attention values). */
void kern_pack_nn_bf16(const float *B, int ldb, int k, int n, unsigned short *dst);

/* uint16 elements of per-thread scratch kern_gemm_bf16 needs. */
size_t kern_bf16_scratch_elems(void);

/* kern_gemm with A rounded to bfloat16 (nearest even) block by block and
 * bf16 x bf16 products accumulated in float32. */
void kern_gemm_bf16(int m, int n, int k, const float *A, int lda, const unsigned short *Bp,
                    float *C, int ldc, const float *bias, int accumulate,
                    unsigned short *scratch);

/* Rows of A [m, k] (stride lda) rounded to bf16 as kern_gemm_bf16 rounds
 * them, into dst with row stride ld2 (>= k rounded up to even); an odd k
 * gets a zero after its last element. For kern_gemm_bf16_pa. */
void kern_round_bf16_rows(const float *A, int lda, int m, int k, unsigned short *dst, size_t ld2);

/* kern_gemm_bf16 (no bias) on an A already rounded (kern_round_bf16_rows:
 * rows of stride lda2) and B panels ldbp elements apart (kern_pack_*_bf16
 * of a larger matrix: its panel stride), so one call covers every panel of
 * a B whose rows are a slice of the packed ones. No scratch. */
void kern_gemm_bf16_pa(int m, int n, int k, const unsigned short *Ap, size_t lda2,
                       const unsigned short *Bp, size_t ldbp, float *C, int ldc, int accumulate);

/* Row-wise softmax of S[rows, n] (stride lds) scaled by `scale` before the
 * exponential; writes exp(scale * (s - max)) in place and the row sums to
 * sums[rows] (the caller divides later). */
void kern_softmax_rows(float *S, int rows, int n, int lds, float scale, float *sums);

/* One block of keys of an online softmax: for each of `rows` rows of
 * S[rows, n] (stride lds), with the running maximum m[r] (-inf before the
 * first block) and running sum l[r] (0 before): m[r] becomes the maximum
 * over all blocks so far, S the block's exp(scale * (s - m[r])), alpha[r]
 * the factor exp(scale * (m_before - m[r])) that every earlier term (the
 * caller's accumulated output row) must be multiplied by, and
 * l[r] = l[r] * alpha[r] + the block's sum. */
void kern_softmax_online(float *S, int rows, int n, int lds, float scale, float *m, float *l,
                         float *alpha);

/* kern_softmax_online with the block's exponentials written to P (bf16,
 * rows of stride ldp, zero after an odd n's last) instead of S, which is
 * left as it was; the sums are of the float32 values, as there. P is what
 * kern_softmax_online leaves in S, rounded to nearest even as
 * kern_round_bf16_rows rounds (float32 denormals become 0). */
void kern_softmax_online_bf16(const float *S, int rows, int n, int lds, float scale, float *m,
                              float *l, float *alpha, unsigned short *P, size_t ldp);

/* x[i] = gelu(x[i]) (exact-erf form, |error| < 1e-6 relative), n floats. */
void kern_gelu(float *x, size_t n);
/* x[i] = x[i] * sigmoid(1.702 x[i]) */
void kern_quickgelu(float *x, size_t n);
/* h[i] = silu(h[i]) * g[i] for one row of n. */
void kern_swiglu_row(float *h, const float *g, int n);

/* y = LayerNorm(x) per row of d (biased variance), rows n. */
void kern_layernorm(const float *x, float *y, int n, int d, const float *w, const float *b,
                    float eps);

/* h[t] += gamma * a[t] (gamma may be NULL), rows n of d. */
void kern_residual(float *h, const float *a, const float *gamma, int n, int d);

/* y[i][j] = x[i][j] * f[i] for rows i < n, columns j < d (x == y with
 * ldx == ldy scales in place): the attention's rescale of its output so
 * far and its final division by the softmax sums. */
void kern_scale_rows(const float *x, int ldx, const float *f, int n, int d, float *y, int ldy);

#endif
