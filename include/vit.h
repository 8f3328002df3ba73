/* vit.h - the ViT forward pass on one image, on the CPU.
 * Stage: normalised tensor [3, H, W] -> tokens [1 + R + N, D] and the
 * q / k / v of one block for the N patch tokens. The model is shared and
 * read-only; all per-call memory lives in a struct vit_work owned by one
 * thread, sized once for a maximum number of patches. Never prints. */
#ifndef LOSTD_VIT_H
#define LOSTD_VIT_H

struct err;
struct model;

struct vit_work;

/* Workspace for inputs of up to max_patches patches. Returns 0, ERR_INPUT
 * (max_patches < 1) or ERR_NOMEM / ERR_TOOBIG. Free with vit_work_free. */
int vit_work_init(const struct model *m, int max_patches, struct vit_work **out,
                  struct err *e);
void vit_work_free(struct vit_work *w);
int vit_work_max_patches(const struct vit_work *w);

/* Threads a forward on this workspace uses (the caller's included; default
 * 1). On the AVX-512 path the workspace starts its own team; on the
 * OpenBLAS fallback this is a no-op and OpenBLAS's own threads apply.
 * Call once, not per forward. Returns 0, ERR_INPUT or ERR_NOMEM. */
int vit_work_set_threads(struct vit_work *w, int n_threads, struct err *e);
int vit_work_threads(const struct vit_work *w);

/* 1 when models loaded now will run on lostd's AVX-512 kernels (the CPU has
 * AVX-512F and LOSTD_KERNELS is not "blas"): callers then keep OpenBLAS
 * single-threaded so only one team of threads runs. Pure. */
int vit_kernels_available(void);

/* 1 when forwards on this workspace use lostd's AVX-512 kernels, 0 for the
 * OpenBLAS fallback (no AVX-512, or LOSTD_KERNELS=blas in the environment
 * when the model was loaded). */
int vit_work_fast(const struct vit_work *w);

/* Stages of a forward that vit_work_stage_ms accounts for. */
enum vit_stage {
    VIT_STAGE_EMBED,    /* im2col, patch projection, positions, registers */
    VIT_STAGE_NORM,     /* the LayerNorms not fused into a projection */
    VIT_STAGE_QKV,      /* the qkv projections */
    VIT_STAGE_ATTN,     /* attention: packing K/V, scores, softmax, times V */
    VIT_STAGE_PROJ,     /* the attention output projections (+ residual, LN2) */
    VIT_STAGE_FC1,      /* the first MLP projections (+ GELU / SwiGLU) */
    VIT_STAGE_FC2,      /* the second MLP projections (+ residual, next LN1) */
    VIT_STAGE_OTHER,    /* copies of q/k/v, the final norm, the projection */
    VIT_N_STAGES
};

/* Per-stage wall time: with on = 1 every later forward on w adds each
 * stage's milliseconds to w's counters (a clock read between stages, which
 * run one after another; the threads of a stage all finish before the
 * next), with on = 0 it stops; either clears the counters. */
void vit_work_stage_timing(struct vit_work *w, int on);
/* The counters (ms, summed over the forwards since vit_work_stage_timing)
 * into ms[VIT_N_STAGES]. */
void vit_work_stage_ms(const struct vit_work *w, double *ms);
/* The stage's name ("embed", "norm", "qkv", "attention", "proj", "fc1",
 * "fc2", "other"). */
const char *vit_stage_name(int stage);

/* FLOPs of a forward for n_patch patches that taps the last block and
 * wants `want` (VIT_WANT_Q/_K/_V bits) of it, as vit_forward runs it on the
 * AVX-512 path: patch embedding, every block but the last in full, then the
 * last block's qkv (only the wanted thirds, patch rows only, when it can). */
double vit_forward_flop(const struct model *m, int n_patch, unsigned want);

/* The GEMM rate (GFLOP/s) this workspace's path reaches on the model's own
 * projection shapes for n_patch patches (best of 5 each): the ceiling a
 * forward is measured against. Overwrites the workspace's buffers. */
double vit_work_gemm_gflops(struct vit_work *w, int n_patch);
/* The arithmetic peak (GFLOP/s) of the workspace's threads, all at once,
 * each running nothing but independent 512-bit FMAs for `ms`: the bound no
 * forward can pass. 0 on the OpenBLAS path (no AVX-512 kernels to measure). */
double vit_work_fma_peak_gflops(struct vit_work *w, double ms);
/* Bytes the workspace holds (address space: pages are faulted in by the
 * forwards that use them). */
unsigned long vit_work_bytes(const struct vit_work *w);
/* Gives the pages of the per-token buffers beyond keep_patches patches back
 * to the OS (madvise MADV_DONTNEED; the buffers stay valid and read as zeros
 * until written again), so one large image does not pin a large workspace
 * for good. The next forward of that size faults them in again. Returns the
 * bytes released. Cannot fail. */
unsigned long vit_work_trim(struct vit_work *w, int keep_patches);

enum {
    VIT_WANT_Q = 1u << 0,      /* the patch rows' q of block `layer` */
    VIT_WANT_TOKENS = 1u << 1, /* all blocks and the final norm */
    VIT_WANT_ATTN = 1u << 2,   /* last block's attention of CLS and registers (implies
                                  running every block) */
    VIT_WANT_PATCH_EMBED = 1u << 3, /* the patch embeddings before positions are added */
    VIT_WANT_K = 1u << 4,      /* ... its k */
    VIT_WANT_V = 1u << 5,      /* ... its v */
    VIT_WANT_QKV = VIT_WANT_Q | VIT_WANT_K | VIT_WANT_V
};

struct vit_opts {
    int layer;          /* block whose q/k/v is tapped; < 0 counts from the end (-1 = last) */
    unsigned want;      /* VIT_WANT_* bits; 0 means VIT_WANT_QKV. When the tapped block
                           is the last one run (no tokens, attention maps or taps
                           beyond it), only the wanted ones of its q, k, v are
                           computed, for the patch rows only: LOST reads k alone. */
    /* More taps in the same pass (e.g. the last few blocks for a sweep):
     * block tap_layers[t] (< 0 from the end) writes its patch rows' q, k, v
     * to taps + t * 3 * n_patch * dim as [3][n_patch][dim] (q, k, v).
     * taps is caller memory of n_taps * 3 * n_patch * dim floats. */
    int n_taps;
    const int *tap_layers;
    float *taps;
    /* Non-NULL: read before each block; once it is nonzero the forward
     * stops there with ERR_CANCELLED (set from another thread when nobody
     * waits for the result any more). */
    const _Atomic int *cancel;
};

/* Results; pointers into the workspace, valid until the next vit_forward or
 * vit_work_free on it. */
struct vit_out {
    int grid_h, grid_w;     /* patch grid: H / P, W / P */
    int n_patch;            /* grid_h * grid_w */
    int n_reg, n_tok, dim;  /* n_tok = 1 + n_reg + n_patch */
    int layer;              /* the tapped block, 0-based */
    const float *q, *k, *v; /* [n_patch, dim] each, patches row-major, heads concatenated;
                               NULL unless wanted (VIT_WANT_Q, _K, _V) */
    const float *tokens;    /* [n_tok, dim] after the final norm: CLS, registers, patches;
                               NULL without VIT_WANT_TOKENS */
    const float *pos_embed; /* [1 + n_patch, dim]: the CLS position (zeros when the family
                               has none), then the resampled patch positions */
    const float *attn;      /* [n_head, 1 + n_reg, n_tok]: the last block's softmax
                               attention rows of the CLS token (row 0) and of each register
                               over all tokens (each row sums to 1; the patch columns are
                               1 + n_reg .. n_tok - 1); VIT_WANT_ATTN only */
    const float *patch_embed; /* [n_patch, dim] output of the patch embedding, before
                               positions; VIT_WANT_PATCH_EMBED only */
    int n_head;
    const float *embed;     /* [embed_dim] image embedding (final-normed CLS times the
                               projection), OpenCLIP with VIT_WANT_TOKENS only, else NULL */
    int embed_dim;
};

/* x: [3, h, w] normalised, row-major; h and w multiples of the patch size.
 * Returns 0, ERR_INPUT (bad size or layer), ERR_TOOBIG (more patches than
 * the workspace holds). opts may be NULL (last block's q/k/v). */
int vit_forward(const struct model *m, struct vit_work *w, const float *x, int h, int w_px,
                const struct vit_opts *opts, struct vit_out *out, struct err *e);

/* The upper triangle (entries i <= j) of F F^T into U [n, n] row-major, for
 * F [n, dim] (LOST's Gram matrix), on this workspace's kernels and threads;
 * OpenBLAS's ssyrk on the fallback. Only the attention scratch is reused:
 * the outputs of the last forward (q, k, v, tokens) stay valid. Returns 0,
 * or ERR_TOOBIG when n x dim is more than the workspace was sized for. */
int vit_work_gram(struct vit_work *w, const float *f, int n, int dim, float *U, struct err *e);

/* Resampling weights of one axis, exposed for tests: fills wts [n_out, n_in]
 * (dense, row per output) for the antialiased (aa = 1, PIL-style, a = -0.5)
 * or plain (aa = 0, A = -0.75, edge clamped) bicubic, with sampling scale s
 * (input pixels per output pixel). */
void vit_resample_weights(int n_in, int n_out, double s, int aa, double *wts);

#endif
