/* vit.c - the ViT forward of every family (docs/specs/vit.md section 2,
 * docs/specs/backbones.md). On CPUs with AVX-512 the matrix products and the
 * attention run on lostd's own kernels (core/kern.c) over a team of threads
 * (core/team.c); elsewhere, or with LOSTD_KERNELS=blas, on OpenBLAS sgemm
 * and plain C. Takes a normalised, padded
 * tensor and hands out the tapped block's q/k/v for the patch tokens and,
 * when asked, all tokens after the final norm. Reads the model, writes only
 * the workspace; never prints, never allocates after vit_work_init. */
#include "vit.h"
#include "clock.h"
#include "err.h"
#include "kern_impl.h"
#include "model_impl.h"
#include "team_impl.h"
#include "vit_impl.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <time.h>

#define QBLOCK 128 /* query rows per attention tile: scores are [QBLOCK, T] */
#define QB_FAST 48 /* the same for the AVX-512 path (a multiple of KERN_MR) */
#define ATT_KB 512 /* keys per block of the online softmax (a multiple of KERN_NR) */
/* bf16 mode's rounded probabilities and queries (in the thread's bf16
 * scratch): rows one cache line longer than a block, so that the twelve
 * rows a micro-tile reads at once fall in different L1 sets */
#define ATT_P_LD ((size_t)ATT_KB + 32)
#define ATT_Q_LD(hd2) ((size_t)(hd2) + 32)
/* float32 mode's copy of a query block: Q's rows in the qkv matrix are 3D
 * floats apart, 12 KiB for ViT-L, which puts a micro-tile's twelve rows in
 * one L1 set */
#define ATT_QF_LD(hd) ((hd) + 16)

/* uint16 elements of a thread's scratch: kern_gemm_bf16's A blocks,
 * attn_task's rounded queries and probabilities (bf16 mode), or kern_gemm's
 * copies of A (float32, two elements a float). */
static size_t hscr_elems(const struct model_config *c)
{
    size_t att = (size_t)QB_FAST * (ATT_Q_LD((c->head_dim + 1) / 2 * 2) + ATT_P_LD);
    size_t gemm = kern_bf16_scratch_elems(), f32 = 2 * kern_scratch_floats();
    gemm = gemm > f32 ? gemm : f32;
    return att > gemm ? att : gemm;
}
#define MAX_THREADS 64

struct vit_work {
    const struct model *m;
    int max_patch, max_tok;
    float *cols;    /* [max_patch, 3*P*P] im2col */
    float *h;       /* [T, D] residual stream */
    float *z;       /* [T, D] normed */
    float *qkv;     /* [T, 3D], 64-byte aligned in qkv_mem (kern_gemm_nn reads V in place) */
    float *qkv_mem; /* the allocation qkv lies in (16 floats over, for the alignment) */
    float *att;     /* [T, D] heads concatenated */
    float *tmp;     /* [T, D] */
    float *ffn;     /* [T, F1], rows ld_ffn apart */
    size_t ld_ffn;
    float *scores;  /* [QBLOCK, T] */
    float *q, *k, *v; /* [max_patch, D] outputs */
    float *tokens;  /* [T, D] output */
    float *embed;   /* [E] image embedding */
    float *attn;    /* [H, 1 + R, T] CLS/register attention rows of the last block */
    float *pe;      /* [max_patch, D] patch embeddings */
    int keep_attn;  /* set while the last block runs with VIT_WANT_ATTN */
    float *pos;     /* [1 + max_patch, D] cached resampled table */
    int pos_gh, pos_gw;
    double *wts;    /* resampling scratch */
    float *pos_tmp; /* [M, D]: one resampled column of the grid */
    double *pos_acc; /* [D] */
    unsigned long bytes;
    /* AVX-512 path (model weights packed): a thread team and its scratch */
    int fast;
    struct team *team;
    int n_threads;
    float *sblk[MAX_THREADS];   /* [QB_FAST, ATT_KB] attention scores per thread */
    float *ssum[MAX_THREADS];   /* [3, QB_FAST] running maxima, sums, rescale factors */
    unsigned short *hscr[MAX_THREADS]; /* per thread: A blocks, bf16 queries (hscr_elems) */
    float *qblk[MAX_THREADS];   /* [QB_FAST, ATT_QF_LD(head_dim)] a query block's copy */
    float *kp, *vp;             /* packed keys / values, one slot per head */
    size_t kp_stride, vp_stride;
    /* Speed-aware GEMM shares (plan_shares): each thread's rate, in FLOPs
     * per ms of its own task time, smoothed over products (0: not yet
     * measured), and the current product's tallies, one line per thread. */
    double rate[MAX_THREADS];
    struct {
        _Alignas(64) double busy_ms, flop;
    } tally[MAX_THREADS];
    int timing;                 /* vit_work_stage_timing */
    double t_mark;              /* the clock at the end of the last stage */
    double stage_ms[VIT_N_STAGES];
};

/* Ends stage s now (when timing): its time since the last mark. */
static void stage_end(struct vit_work *w, int s)
{
    if (!w->timing)
        return;
    double now = clock_now_ms();
    w->stage_ms[s] += now - w->t_mark;
    w->t_mark = now;
}

void vit_work_stage_timing(struct vit_work *w, int on)
{
    w->timing = on;
    memset(w->stage_ms, 0, sizeof w->stage_ms);
}

void vit_work_stage_ms(const struct vit_work *w, double *ms)
{
    memcpy(ms, w->stage_ms, sizeof w->stage_ms);
}

const char *vit_stage_name(int stage)
{
    static const char *const names[VIT_N_STAGES] = {
        [VIT_STAGE_EMBED] = "embed", [VIT_STAGE_NORM] = "norm",   [VIT_STAGE_QKV] = "qkv",
        [VIT_STAGE_ATTN] = "attention", [VIT_STAGE_PROJ] = "proj", [VIT_STAGE_FC1] = "fc1",
        [VIT_STAGE_FC2] = "fc2",     [VIT_STAGE_OTHER] = "other"};
    return stage >= 0 && stage < VIT_N_STAGES ? names[stage] : "?";
}

/* Whether float32 P V can read the values in place: every head's slice of
 * a q/k/v row starts on a cache line and spans whole panels. */
static int v_in_place(const struct model_config *c)
{
    return c->head_dim % KERN_NR == 0 && c->dim % 16 == 0;
}

static float *alloc_f(struct vit_work *w, size_t n)
{
    /* Zeroed; a large block is a fresh mapping whose pages the forwards
     * fault in as they use them (the server's warm-up touches a typical
     * image's share). */
    float *p = calloc(n ? n : 1, sizeof *p);
    w->bytes += n * sizeof *p;
    return p;
}

/* MADV_DONTNEED on the whole pages of p[used, total) (bytes). */
static unsigned long trim_tail(void *p, size_t used, size_t total)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + used + page - 1) / page * page;
    uintptr_t hi = ((uintptr_t)p + total) / page * page;
    if (!p || hi <= lo || madvise((void *)lo, hi - lo, MADV_DONTNEED))
        return 0;
    return (unsigned long)(hi - lo);
}

unsigned long vit_work_trim(struct vit_work *w, int keep_patches)
{
    const struct model_config *c = &w->m->cfg;
    size_t D = c->dim, P = c->patch, N = (size_t)w->max_patch, T = (size_t)w->max_tok;
    size_t kn = keep_patches < 0 ? 0 : (size_t)keep_patches;
    if (kn >= N)
        return 0;
    size_t kt = T - N + kn, f = sizeof(float);
    unsigned long n = 0;
    n += trim_tail(w->cols, kn * 3 * P * P * f, N * 3 * P * P * f);
    float *rows_t[] = {w->h, w->z, w->att, w->tmp, w->tokens};
    for (size_t i = 0; i < sizeof rows_t / sizeof rows_t[0]; i++)
        n += trim_tail(rows_t[i], kt * D * f, T * D * f);
    n += trim_tail(w->qkv, kt * 3 * D * f, T * 3 * D * f);
    n += trim_tail(w->ffn, kt * w->ld_ffn * f, T * w->ld_ffn * f);
    float *rows_n[] = {w->q, w->k, w->v, w->pe};
    for (size_t i = 0; i < sizeof rows_n / sizeof rows_n[0]; i++)
        n += trim_tail(rows_n[i], kn * D * f, N * D * f);
    /* The cached position table is still valid for its grid only if kept
     * whole: forget it when trimmed. */
    unsigned long pos = trim_tail(w->pos, (1 + kn) * D * f, (1 + N) * D * f);
    if (pos) {
        w->pos_gh = w->pos_gw = 0;
        n += pos;
    }
    return n;
}

static void free_threads(struct vit_work *w)
{
    team_free(w->team);
    w->team = NULL;
    for (int i = 0; i < MAX_THREADS; i++) {
        free(w->sblk[i]);
        free(w->ssum[i]);
        free(w->hscr[i]);
        free(w->qblk[i]);
        w->sblk[i] = w->ssum[i] = NULL;
        w->hscr[i] = NULL;
        w->qblk[i] = NULL;
    }
    w->n_threads = 0;
}

enum epi { EPI_NONE, EPI_GELU, EPI_QUICKGELU, EPI_RESIDUAL, EPI_SWIGLU, EPI_ADD };
static void gemm_par(struct vit_work *w, int m, int n, int k, const float *A, int lda,
                     const float *Bp, const unsigned short *Bh, const float *bias, float *C,
                     int ldc, enum epi epi, const float *gamma, float *h);

static void *alloc64(struct vit_work *w, size_t floats)
{
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p) {
        memset(p, 0, bytes);
        w->bytes += bytes;
    }
    return p;
}

int vit_work_set_threads(struct vit_work *w, int n, struct err *e)
{
    if (n < 1 || n > MAX_THREADS)
        return err_set(e, ERR_INPUT, "%d threads: allowed 1..%d", n, MAX_THREADS);
    free_threads(w);
    memset(w->rate, 0, sizeof w->rate);
    if (!w->fast) {
        w->n_threads = 1;
        return 0; /* the OpenBLAS path threads inside OpenBLAS */
    }
    if (!(w->team = team_init(n)))
        return err_set(e, ERR_NOMEM, "cannot start %d threads", n);
    for (int i = 0; i < n; i++) {
        w->sblk[i] = alloc64(w, (size_t)QB_FAST * ATT_KB);
        w->ssum[i] = alloc64(w, 3 * QB_FAST);
        w->hscr[i] = alloc64(w, (hscr_elems(&w->m->cfg) + 1) / 2);
        w->qblk[i] = alloc64(w, (size_t)QB_FAST * ATT_QF_LD(w->m->cfg.head_dim));
        if (!w->sblk[i] || !w->ssum[i] || !w->hscr[i] || !w->qblk[i]) {
            free_threads(w);
            return err_set(e, ERR_NOMEM, "out of memory for %d threads", n);
        }
    }
    w->n_threads = n;
    return 0;
}

int vit_work_threads(const struct vit_work *w) { return w->n_threads; }

double vit_work_gemm_gflops(struct vit_work *w, int n_patch)
{
    const struct model *m = w->m;
    const struct model_config *c = &m->cfg;
    const struct model_block *b = &m->blocks[0];
    int T = 1 + c->n_reg + n_patch, D = c->dim, F = c->ffn_hidden;
    if (T > w->max_tok)
        T = w->max_tok;
    int F1 = c->ffn == MODEL_FFN_SWIGLU ? 2 * F : F;
    /* A is the hidden buffer, read with the stride each product's A has in
     * the forward (the hidden layer's own for fc2) */
    int ldf = (int)w->ld_ffn;
    struct { int n, k, lda; const float *W, *Wp; const unsigned short *Wh; float *out; } s[] = {
        {3 * D, D, D, b->qkv_w, b->qkv_p, b->qkv_h, w->qkv},
        {D, D, D, b->proj_w, b->proj_p, b->proj_h, w->tmp},
        {F1, D, D, b->fc1_w, b->fc1_p, b->fc1_h, w->ffn},
        {D, F, ldf, b->fc2_w, b->fc2_p, b->fc2_h, w->tmp},
    };
    double flop = 0, ms = 0;
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        double best = 1e30;
        for (int r = 0; r < 5; r++) {
            double t0 = clock_now_ms();
            if (w->fast)
                gemm_par(w, T, s[i].n, s[i].k, w->ffn, s[i].lda, s[i].Wp, s[i].Wh, NULL,
                         s[i].out, s[i].n, EPI_NONE, NULL, NULL);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, s[i].n, s[i].k, 1.0f,
                            w->ffn, s[i].lda, s[i].W, s[i].k, 0.0f, s[i].out, s[i].n);
            double t = clock_now_ms() - t0;
            best = t < best ? t : best;
        }
        flop += 2.0 * T * s[i].n * s[i].k;
        ms += best;
    }
    return ms > 0 ? flop / (ms * 1e6) : 0;
}
struct peak_job {
    double ms;
    double gflops[MAX_THREADS];
};

static void peak_task(void *ctx, int t, int th)
{
    (void)th;
    struct peak_job *j = ctx;
    j->gflops[t] = kern_fma_peak(j->ms);
}

double vit_work_fma_peak_gflops(struct vit_work *w, double ms)
{
    if (!w->fast)
        return 0;
    struct peak_job j = {.ms = ms};
    int n = w->n_threads > 0 ? w->n_threads : 1;
    team_run(w->team, n, peak_task, &j);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += j.gflops[i];
    return sum;
}

int vit_work_fast(const struct vit_work *w) { return w->fast; }
int vit_kernels_available(void) { return kern_available(); }

void vit_work_free(struct vit_work *w)
{
    if (!w)
        return;
    free_threads(w);
    free(w->kp);
    free(w->vp);
    free(w->cols);
    free(w->h);
    free(w->z);
    free(w->qkv_mem);
    free(w->att);
    free(w->tmp);
    free(w->ffn);
    free(w->scores);
    free(w->q);
    free(w->k);
    free(w->v);
    free(w->tokens);
    free(w->embed);
    free(w->attn);
    free(w->pe);
    free(w->pos);
    free(w->wts);
    free(w->pos_tmp);
    free(w->pos_acc);
    free(w);
}

int vit_work_max_patches(const struct vit_work *w) { return w->max_patch; }
unsigned long vit_work_bytes(const struct vit_work *w) { return w->bytes; }

int vit_work_init(const struct model *m, int max_patches, struct vit_work **out,
                  struct err *e)
{
    *out = NULL;
    const struct model_config *c = &m->cfg;
    if (max_patches < 1 || max_patches > 1 << 20)
        return err_set(e, ERR_INPUT, "workspace for %d patches: allowed 1..%d", max_patches,
                       1 << 20);
    struct vit_work *w = calloc(1, sizeof *w);
    if (!w)
        return err_set(e, ERR_NOMEM, "out of memory");
    size_t D = c->dim, N = max_patches, T = 1 + c->n_reg + N, P = c->patch;
    size_t F1 = (size_t)c->ffn_hidden * (c->ffn == MODEL_FFN_SWIGLU ? 2 : 1);
    size_t M = c->pos_grid;
    size_t side = N > M ? N : M; /* a grid side is at most N */
    w->m = m;
    w->fast = m->packed;
    w->max_patch = (int)N;
    w->max_tok = (int)T;
    w->cols = alloc_f(w, N * 3 * P * P);
    w->h = alloc_f(w, T * D);
    w->z = alloc_f(w, T * D);
    w->qkv_mem = alloc_f(w, T * 3 * D + 16);
    w->qkv = w->qkv_mem ? (float *)(((uintptr_t)w->qkv_mem + 63) / 64 * 64) : NULL;
    w->att = alloc_f(w, T * D);
    w->tmp = alloc_f(w, T * D);
    /* fc2 reads the hidden rows in place: padded where ViT-B's 3072 or
     * ViT-L's 4096 floats would put twelve of them in one L1 set */
    w->ld_ffn = w->fast ? kern_a_stride(F1) : F1;
    w->ffn = alloc_f(w, T * w->ld_ffn);
    /* the OpenBLAS path's score tile; the AVX-512 path has one per thread */
    w->scores = alloc_f(w, w->fast ? 1 : (size_t)QBLOCK * T);
    w->q = alloc_f(w, N * D);
    w->k = alloc_f(w, N * D);
    w->v = alloc_f(w, N * D);
    w->tokens = alloc_f(w, T * D);
    w->embed = alloc_f(w, c->embed_dim > 0 ? (size_t)c->embed_dim : 1);
    w->attn = alloc_f(w, (size_t)c->n_head * (1 + c->n_reg) * T);
    w->pe = alloc_f(w, N * D);
    w->pos = alloc_f(w, (1 + N) * D);
    w->pos_tmp = alloc_f(w, M * D);
    w->pos_acc = calloc(D, sizeof *w->pos_acc);
    w->wts = calloc(2 * side * M, sizeof *w->wts);
    w->bytes += 2 * side * M * sizeof(double);
    if (!w->cols || !w->h || !w->z || !w->qkv || !w->att || !w->tmp || !w->ffn ||
        !w->scores || !w->q || !w->k || !w->v || !w->tokens || !w->embed || !w->attn ||
        !w->pe || !w->pos || !w->pos_tmp || !w->pos_acc || !w->wts) {
        vit_work_free(w);
        return err_set(e, ERR_NOMEM, "out of memory for a %d-patch workspace", max_patches);
    }
    if (w->fast) {
        int hd = c->head_dim;
        w->kp_stride = (kern_packed_floats((int)T, hd) + 15) / 16 * 16;
        w->vp_stride = (kern_packed_floats(hd, (int)T) + 15) / 16 * 16;
        w->kp = alloc64(w, w->kp_stride * c->n_head);
        /* value panels: bf16 mode's, or float32's when P V cannot read the
         * values in place */
        int need_vp = m->blocks[0].qkv_h != NULL || !v_in_place(c);
        w->vp = need_vp ? alloc64(w, w->vp_stride * c->n_head) : NULL;
        if (!w->kp || (need_vp && !w->vp)) {
            vit_work_free(w);
            return err_set(e, ERR_NOMEM, "out of memory for a %d-patch workspace", max_patches);
        }
    }
    int rc = vit_work_set_threads(w, 1, e);
    if (rc) {
        vit_work_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* ---- position embedding resampling (vit.md 2.3) ------------------------- */

static double cubic(double x, double a)
{
    x = fabs(x);
    if (x <= 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

void vit_resample_weights(int n_in, int n_out, double s, int aa, double *wts)
{
    memset(wts, 0, sizeof *wts * (size_t)n_in * n_out);
    for (int o = 0; o < n_out; o++) {
        double *row = wts + (size_t)o * n_in;
        if (aa) {
            /* PIL-style convolution: the kernel is stretched by s when
             * shrinking; the window is cut at the borders and renormalised. */
            double support = s >= 1.0 ? 2.0 * s : 2.0, ss = s >= 1.0 ? s : 1.0;
            double center = s * (o + 0.5);
            int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
            if (lo < 0)
                lo = 0;
            if (hi > n_in)
                hi = n_in;
            double sum = 0.0;
            for (int j = lo; j < hi; j++) {
                row[j] = cubic((j - center + 0.5) / ss, -0.5);
                sum += row[j];
            }
            if (sum != 0.0)
                for (int j = lo; j < hi; j++)
                    row[j] /= sum;
        } else {
            /* Four taps with A = -0.75, indices clamped to the edge. */
            double src = s * (o + 0.5) - 0.5;
            double f = floor(src), t = src - f;
            int i0 = (int)f;
            double wt[4] = {cubic(t + 1.0, -0.75), cubic(t, -0.75), cubic(1.0 - t, -0.75),
                            cubic(2.0 - t, -0.75)};
            for (int k = 0; k < 4; k++) {
                int j = i0 - 1 + k;
                j = j < 0 ? 0 : j > n_in - 1 ? n_in - 1 : j;
                row[j] += wt[k];
            }
        }
    }
}

/* Fills w->pos for a gh x gw grid: row 0 the CLS position (or zeros), then
 * the stored M x M table resampled by the family's rule. Cached per size. */
static void position_table(const struct model *m, struct vit_work *w, int gh, int gw)
{
    const struct model_config *c = &m->cfg;
    if (w->pos_gh == gh && w->pos_gw == gw)
        return;
    int D = c->dim, M = c->pos_grid;
    float *pos = w->pos;
    if (m->pos_cls)
        memcpy(pos, m->pos_cls, sizeof *pos * D);
    else
        memset(pos, 0, sizeof *pos * D);
    float *dst = pos + D;
    int skip = 0;
    switch (c->interp) {
    case MODEL_INTERP_OFFSET:
    case MODEL_INTERP_AA_SIZE:
        /* DINOv2: only a 518x518 input (Np == M*M and H == W) skips. */
        skip = gh == M && gw == M;
        break;
    case MODEL_INTERP_AA_IF_DIFFERS:
        /* open_clip compares token counts only and would read a 14x14 table
         * as 7x28; we resample whenever the grid differs (a deliberate
         * difference, see backbones.md 3.3). */
        skip = gh == M && gw == M;
        break;
    }
    if (skip) {
        /* stored [M*M, D] is already token-major */
        memcpy(dst, m->pos_grid, sizeof *dst * (size_t)M * M * D);
    } else {
        int aa = c->interp != MODEL_INTERP_OFFSET;
        double sh, sw;
        if (aa) {
            sh = (double)M / gh;
            sw = (double)M / gw;
        } else {
            /* torch samples with the given factor, not the output size */
            sh = 1.0 / ((gh + c->interp_offset) / M);
            sw = 1.0 / ((gw + c->interp_offset) / M);
        }
        /* Separable: for each output column, the width sum first into
         * col [M, D], then the height sum, as torch orders them. A pass whose
         * size does not change is the identity for the antialiased kernel
         * and is skipped, as torch does. */
        double *ww = w->wts, *wh = w->wts + (size_t)gw * M;
        int wpass = !(aa && gw == M), hpass = !(aa && gh == M);
        if (wpass)
            vit_resample_weights(M, gw, sw, aa, ww);
        if (hpass)
            vit_resample_weights(M, gh, sh, aa, wh);
        /* Taps in ascending order per output, channels innermost: the same
         * sums in the same order as a per-channel loop, but vectorisable. */
        float *col = w->pos_tmp;
        double *acc = w->pos_acc;
        for (int x = 0; x < gw; x++) {
            for (int i = 0; i < M; i++) {
                float *t = col + (size_t)i * D;
                if (!wpass) {
                    memcpy(t, m->pos_grid + ((size_t)i * M + x) * D, sizeof *t * D);
                    continue;
                }
                const double *wr = ww + (size_t)x * M;
                memset(acc, 0, sizeof *acc * D);
                for (int j = 0; j < M; j++) {
                    if (wr[j] == 0.0)
                        continue;
                    const float *g = m->pos_grid + ((size_t)i * M + j) * D;
                    for (int d = 0; d < D; d++)
                        acc[d] += wr[j] * g[d];
                }
                for (int d = 0; d < D; d++)
                    t[d] = (float)acc[d];
            }
            for (int o = 0; o < gh; o++) {
                float *t = dst + ((size_t)o * gw + x) * D;
                if (!hpass) {
                    memcpy(t, col + (size_t)o * D, sizeof *t * D);
                    continue;
                }
                const double *wr = wh + (size_t)o * M;
                memset(acc, 0, sizeof *acc * D);
                for (int i = 0; i < M; i++) {
                    if (wr[i] == 0.0)
                        continue;
                    const float *g = col + (size_t)i * D;
                    for (int d = 0; d < D; d++)
                        acc[d] += wr[i] * g[d];
                }
                for (int d = 0; d < D; d++)
                    t[d] = (float)acc[d];
            }
        }
    }
    w->pos_gh = gh;
    w->pos_gw = gw;
}

/* ---- the blocks --------------------------------------------------------- */

static void layer_norm(const float *x, float *y, int n, int d, const float *g, const float *b,
                       float eps)
{
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * d;
        float *yr = y + (size_t)t * d;
        double mu = 0.0, var = 0.0;
        for (int i = 0; i < d; i++)
            mu += xr[i];
        mu /= d;
        for (int i = 0; i < d; i++) {
            double u = xr[i] - mu;
            var += u * u;
        }
        var /= d;
        float inv = (float)(1.0 / sqrt(var + eps)), fm = (float)mu;
        for (int i = 0; i < d; i++)
            yr[i] = (xr[i] - fm) * inv * g[i] + b[i];
    }
}

/* y[n, out] = x[n, in] . W^T + b, W stored [out, in] (PyTorch Linear). */
static void linear(const float *x, int n, int in, const float *W, const float *b, int out,
                   float *y)
{
    if (b)
        for (int t = 0; t < n; t++)
            memcpy(y + (size_t)t * out, b, sizeof *y * out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in,
                b ? 1.0f : 0.0f, y, out);
}

static void attention(const struct model_config *c, struct vit_work *w, int T)
{
    int D = c->dim, hd = c->head_dim, ld = 3 * D;
    float scale = 1.0f / sqrtf((float)hd);
    for (int n = 0; n < c->n_head; n++) {
        const float *q = w->qkv + n * hd, *k = w->qkv + D + n * hd, *v = w->qkv + 2 * D + n * hd;
        for (int r0 = 0; r0 < T; r0 += QBLOCK) {
            int rows = T - r0 < QBLOCK ? T - r0 : QBLOCK;
            float *S = w->scores;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, T, hd, scale,
                        q + (size_t)r0 * ld, ld, k, ld, 0.0f, S, T);
            for (int i = 0; i < rows; i++) {
                float *s = S + (size_t)i * T, mx = s[0], sum = 0.0f;
                for (int j = 1; j < T; j++)
                    mx = s[j] > mx ? s[j] : mx;
                for (int j = 0; j < T; j++) {
                    s[j] = expf(s[j] - mx);
                    sum += s[j];
                }
                float inv = 1.0f / sum;
                for (int j = 0; j < T; j++)
                    s[j] *= inv;
                int row = r0 + i, pre = 1 + c->n_reg;
                if (w->keep_attn && row < pre)
                    memcpy(w->attn + ((size_t)n * pre + row) * T, s, sizeof *s * (size_t)T);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, T, 1.0f, S, T, v,
                        ld, 0.0f, w->att + (size_t)r0 * D + n * hd, D);
        }
    }
}

static void residual(float *h, const float *a, const float *gamma, int T, int D)
{
    for (int t = 0; t < T; t++) {
        float *hr = h + (size_t)t * D;
        const float *ar = a + (size_t)t * D;
        if (gamma)
            for (int i = 0; i < D; i++)
                hr[i] += gamma[i] * ar[i];
        else
            for (int i = 0; i < D; i++)
                hr[i] += ar[i];
    }
}

static void ffn(const struct model_config *c, const struct model_block *b, struct vit_work *w,
                int T)
{
    int D = c->dim, F = c->ffn_hidden;
    if (c->ffn == MODEL_FFN_SWIGLU) {
        linear(w->z, T, D, b->fc1_w, b->fc1_b, 2 * F, w->ffn);
        /* hidden = silu(x1) * x2, written over x1 in place: row stride 2F */
        for (int t = 0; t < T; t++) {
            float *r = w->ffn + (size_t)t * 2 * F;
            for (int i = 0; i < F; i++) {
                float x1 = r[i];
                r[i] = x1 / (1.0f + expf(-x1)) * r[F + i];
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, D, F, 1.0f, w->ffn, 2 * F,
                    b->fc2_w, F, 0.0f, w->tmp, D);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < D; i++)
                w->tmp[(size_t)t * D + i] += b->fc2_b[i];
    } else {
        linear(w->z, T, D, b->fc1_w, b->fc1_b, F, w->ffn);
        size_t n = (size_t)T * F;
        if (c->act == MODEL_ACT_QUICKGELU)
            for (size_t i = 0; i < n; i++) {
                float u = w->ffn[i];
                w->ffn[i] = u / (1.0f + expf(-1.702f * u));
            }
        else
            for (size_t i = 0; i < n; i++) {
                float u = w->ffn[i];
                w->ffn[i] = 0.5f * u * (1.0f + erff(u * (float)M_SQRT1_2));
            }
        linear(w->ffn, T, F, b->fc2_w, b->fc2_b, D, w->tmp);
    }
}

/* ---- the AVX-512 path: the same steps on packed weights, rows split over
 * the workspace's threads, epilogues fused into the GEMM's row slice. */

struct gemm_job {
    struct vit_work *w;
    int m, n, k, lda, ldc;
    int n_row, n_col; /* row blocks x column blocks, one task each */
    /* Thread i's row blocks, the i-th of n_share runs of n_row / n_share,
     * cover row tiles [cut[i], cut[i + 1]) (sized by the threads' rates). */
    int n_share, cut[MAX_THREADS + 1];
    const float *A, *Bp, *bias;
    const unsigned short *Bh;   /* bf16-packed B instead of Bp, or NULL */
    float *C;
    enum epi epi;
    const float *gamma; /* EPI_RESIDUAL: h += gamma * C */
    float *h;
    const float *add; /* EPI_ADD: C += add, whole rows (ldc == n) */
    /* EPI_RESIDUAL: then LayerNorm of the same rows of h into ln_out (the
     * next step's input), while they are in cache; ln_w NULL = none. */
    const float *ln_w, *ln_b;
    float ln_eps;
    float *ln_out;
};

#define GEMM_MIN_ROWS 96 /* a row block's rows on average (see gemm_plan) */
#define GEMM_RUN 5 /* most row blocks per thread (see tail_edge) */

/* Shares of `tiles` row tiles for the team, in proportion to the threads'
 * measured rates. The cores of a VM need not be equally fast (bench/
 * RESULTS.md times each alone): with even shares the thread on the slower
 * one finishes every product last while the other waits, as stealing
 * cannot split a task already started. The team gives thread i the i-th
 * run of tasks, so thread i's row blocks cover its share. A share within
 * GEMM_DEAD of even stays even (measurement noise would only add
 * imbalance) and none goes beyond GEMM_SKEW of even (one bad measurement
 * cannot starve a thread); shares are even until every rate is known, or
 * when the row blocks do not divide evenly among the threads. Which rows
 * a thread gets never changes a result. */
#define GEMM_SKEW 0.25
#define GEMM_DEAD 0.02
#define GEMM_RATE_NEW 0.1 /* weight of the latest product in a thread's rate */
static void plan_shares(const struct vit_work *w, int tiles, struct gemm_job *j)
{
    int n = w->n_threads, known = 1;
    double sum = 0, f[MAX_THREADS], total = 0;
    j->n_share = n > 1 && j->n_row % n == 0 ? n : 1;
    for (int i = 0; i < j->n_share; i++) {
        known = known && w->rate[i] > 0;
        sum += w->rate[i];
    }
    double even = 1.0 / j->n_share;
    for (int i = 0; i < j->n_share; i++) {
        f[i] = j->n_share > 1 && known ? w->rate[i] / sum : even;
        if (f[i] > even * (1 - GEMM_DEAD) && f[i] < even * (1 + GEMM_DEAD))
            f[i] = even;
        f[i] = f[i] < even * (1 - GEMM_SKEW) ? even * (1 - GEMM_SKEW)
             : f[i] > even * (1 + GEMM_SKEW) ? even * (1 + GEMM_SKEW) : f[i];
        total += f[i];
    }
    double acc = 0;
    j->cut[0] = 0;
    for (int i = 0; i < j->n_share; i++) {
        acc += f[i];
        j->cut[i + 1] = i + 1 == j->n_share ? tiles : (int)(acc / total * tiles + 0.5);
    }
}

void vit_work_seed_rates(struct vit_work *w, const double *rates)
{
    for (int i = 0; i < w->n_threads; i++)
        w->rate[i] = rates[i];
}

/* Splits an m x n product into tasks: row blocks, GEMM_MIN_ROWS rows or
 * more on average and at most GEMM_RUN per thread, in whole runs of the
 * team so that the rate shares apply (row_block sizes them); then column
 * blocks when that leaves too few tasks to balance the team (short inputs:
 * ViT-B at 224x224 has 261 tokens against 2304 qkv columns). One task per
 * team of one. */
static void gemm_plan(const struct vit_work *w, int m, int n, struct gemm_job *j)
{
    int nt = w->n_threads, target = nt > 1 ? 3 * nt : 1, most = nt > 1 ? GEMM_RUN * nt : 1;
    int tiles = (m + KERN_MR - 1) / KERN_MR, panels = (n + KERN_NR - 1) / KERN_NR;
    int n_row = m / GEMM_MIN_ROWS;
    n_row = n_row < 1 ? 1 : n_row > most ? most : n_row;
    if (n_row > nt)
        n_row -= n_row % nt; /* whole runs, so that the shares apply */
    j->n_row = n_row > tiles ? tiles : n_row;
    int n_col = (target + j->n_row - 1) / j->n_row;
    j->n_col = n_col > panels ? panels : n_col;
    plan_shares(w, tiles, j);
}

/* Block i of `parts` over `units` units of `size` (row tiles or column
 * panels), as [*lo, *hi) clipped to `total`: the units are shared out as
 * evenly as they go, so no block is left short. */
static void share(int i, int parts, int units, int size, int total, int *lo, int *hi)
{
    *lo = (int)((long)i * units / parts) * size;
    *hi = (int)((long)(i + 1) * units / parts) * size;
    *lo = *lo < total ? *lo : total;
    *hi = *hi < total ? *hi : total;
}

/* Edge i of a thread's run of `parts` row blocks over `units` row tiles:
 * halves that shrink toward the end (1/2, 1/4, ..., the last two equal). A
 * thread that runs out of its own blocks takes another's last unclaimed
 * one, so the blocks left at the end should be small. With three equal
 * blocks a thread waited for the other in 3-6% of the products' time
 * whenever the rates missed; with five halving ones, 2-3% (ViT-S 392x504, 2
 * threads, the wait timed per product). Blocks of KERN_MC rows or more
 * lose no reuse (kern_gemm streams B once per KERN_MC rows in any case);
 * only the last small ones stream it for fewer rows. */
static int tail_edge(int i, int parts, int units)
{
    return i <= 0 ? 0 : i >= parts ? units : units - (units >> i);
}

/* Rows [*r0, *r1) of row block rt: within its thread's share, halving
 * blocks (tail_edge) when the shares are per thread, else even ones. */
static void row_block(const struct gemm_job *j, int rt, int *r0, int *r1)
{
    int per = j->n_row / j->n_share, i = rt / per, base = j->cut[i] * KERN_MR;
    int units = j->cut[i + 1] - j->cut[i], b = rt % per;
    int lo = j->n_share > 1 ? tail_edge(b, per, units) : (int)((long)b * units / per);
    int hi = j->n_share > 1 ? tail_edge(b + 1, per, units) : (int)((long)(b + 1) * units / per);
    *r0 = base + lo * KERN_MR < j->m ? base + lo * KERN_MR : j->m;
    *r1 = base + hi * KERN_MR < j->m ? base + hi * KERN_MR : j->m;
}

/* The element-wise activation of a GEMM job over `rows` rows of `cols`
 * columns of C (row stride ldc) from c. */
static void act_rows(const struct gemm_job *j, float *c, int rows, int cols)
{
    for (int r = 0; r < rows; r++)
        (j->epi == EPI_GELU ? kern_gelu : kern_quickgelu)(c + (size_t)r * j->ldc, (size_t)cols);
}

/* The row-wise epilogue of rows [r0, r1) (whole rows of C). */
static void gemm_epilogue(const struct gemm_job *j, int r0, int r1)
{
    float *C = j->C + (size_t)r0 * j->ldc;
    switch (j->epi) {
    case EPI_NONE:
        break;
    case EPI_GELU:
    case EPI_QUICKGELU:
        act_rows(j, C, r1 - r0, j->n);
        break;
    case EPI_SWIGLU: /* hidden = silu(x1) * x2 over the two halves of each row */
        for (int r = 0; r < r1 - r0; r++)
            kern_swiglu_row(C + (size_t)r * j->ldc, C + (size_t)r * j->ldc + j->n / 2, j->n / 2);
        break;
    case EPI_ADD: /* (kern_residual: both row strides n) */
        assert(j->ldc == j->n);
        kern_residual(C, j->add + (size_t)r0 * j->ldc, NULL, r1 - r0, j->n);
        break;
    case EPI_RESIDUAL:
        kern_residual(j->h + (size_t)r0 * j->ldc, C, j->gamma, r1 - r0, j->n);
        if (j->ln_w)
            kern_layernorm(j->h + (size_t)r0 * j->ldc, j->ln_out + (size_t)r0 * j->ldc, r1 - r0,
                           j->n, j->ln_w, j->ln_b, j->ln_eps);
        break;
    }
}

/* One block of rows x columns. With whole rows the epilogue runs here,
 * while they are in cache; an element-wise one also runs on a column
 * block; the others (SwiGLU pairs columns, LayerNorm needs the whole row)
 * wait for gemm_epilogue_task. */
static void gemm_task(void *ctx, int t, int th)
{
    struct gemm_job *j = ctx;
    int r0, r1, c0, c1;
    row_block(j, t / j->n_col, &r0, &r1);
    share(t % j->n_col, j->n_col, (j->n + KERN_NR - 1) / KERN_NR, KERN_NR, j->n, &c0, &c1);
    if (r0 >= r1 || c0 >= c1)
        return;
    double t0 = j->w->n_threads > 1 ? clock_now_ms() : 0;
    float *C = j->C + (size_t)r0 * j->ldc + c0;
    const float *bias = j->bias ? j->bias + c0 : NULL;
    size_t panel0 = (size_t)(c0 / KERN_NR) * KERN_NR;
    if (j->Bh)
        kern_gemm_bf16(r1 - r0, c1 - c0, j->k, j->A + (size_t)r0 * j->lda, j->lda,
                       j->Bh + panel0 * (size_t)((j->k + 1) / 2 * 2), C, j->ldc, bias, 0,
                       j->w->hscr[th]);
    else
        kern_gemm(r1 - r0, c1 - c0, j->k, j->A + (size_t)r0 * j->lda, j->lda,
                  j->Bp + panel0 * (size_t)j->k, C, j->ldc, bias, 0, (float *)j->w->hscr[th]);
    if (j->n_col == 1)
        gemm_epilogue(j, r0, r1);
    else if (j->epi == EPI_GELU || j->epi == EPI_QUICKGELU)
        act_rows(j, C, r1 - r0, c1 - c0);
    if (j->w->n_threads > 1) {
        j->w->tally[th].busy_ms += clock_now_ms() - t0;
        j->w->tally[th].flop += 2.0 * (r1 - r0) * (c1 - c0) * j->k;
    }
}

/* After a product: each thread's rate from its tallies, smoothed (the
 * latest product weighs GEMM_RATE_NEW: a core's speed drifts over
 * minutes, not from one product to the next). */
static void update_rates(struct vit_work *w)
{
    for (int i = 0; i < w->n_threads; i++) {
        if (w->tally[i].busy_ms > 0.01) {
            double r = w->tally[i].flop / w->tally[i].busy_ms;
            w->rate[i] = w->rate[i] > 0 ? (1 - GEMM_RATE_NEW) * w->rate[i] + GEMM_RATE_NEW * r : r;
        }
        w->tally[i].busy_ms = w->tally[i].flop = 0;
    }
}

static void gemm_epilogue_task(void *ctx, int t, int th)
{
    (void)th;
    const struct gemm_job *j = ctx;
    int r0, r1;
    row_block(j, t, &r0, &r1);
    if (r0 < r1)
        gemm_epilogue(j, r0, r1);
}

static void gemm_run(struct gemm_job *j)
{
    gemm_plan(j->w, j->m, j->n, j);
    team_run(j->w->team, j->n_row * j->n_col, gemm_task, j);
    if (j->w->n_threads > 1)
        update_rates(j->w);
    if (j->n_col > 1 && (j->epi == EPI_SWIGLU || j->epi == EPI_RESIDUAL || j->epi == EPI_ADD))
        team_run(j->w->team, j->n_row, gemm_epilogue_task, j);
}

/* Rows split for the element-wise passes (LayerNorm): about three per thread. */
static int n_chunks(const struct vit_work *w, int m, int *chunk)
{
    int nt = w->n_threads > 1 ? 3 * w->n_threads : 1;
    int c = (m + nt - 1) / nt;
    c = (c + KERN_MR - 1) / KERN_MR * KERN_MR;
    *chunk = c > 0 ? c : KERN_MR;
    return (m + *chunk - 1) / *chunk;
}

static void gemm_par(struct vit_work *w, int m, int n, int k, const float *A, int lda,
                     const float *Bp, const unsigned short *Bh, const float *bias, float *C,
                     int ldc, enum epi epi, const float *gamma, float *h)
{
    struct gemm_job j = {.w = w, .m = m, .n = n, .k = k, .lda = lda, .ldc = ldc, .A = A,
                         .Bp = Bp, .Bh = Bh, .bias = bias, .C = C, .epi = epi, .gamma = gamma, .h = h};
    gemm_run(&j);
}

/* gemm_par with EPI_RESIDUAL followed by LayerNorm (ln_w, ln_b) of the
 * updated rows of h into z: one pass instead of two parallel loops. */
static void gemm_res_ln(struct vit_work *w, int m, int n, int k, const float *A, int lda,
                        const float *Bp, const unsigned short *Bh, const float *bias, float *C,
                        const float *gamma, float *h, const float *ln_w, const float *ln_b,
                        float eps, float *z)
{
    struct gemm_job j = {.w = w, .m = m, .n = n, .k = k, .lda = lda, .ldc = n, .A = A,
                         .Bp = Bp, .Bh = Bh, .bias = bias, .C = C, .epi = EPI_RESIDUAL,
                         .gamma = gamma, .h = h, .ln_w = ln_w, .ln_b = ln_b, .ln_eps = eps,
                         .ln_out = z};
    gemm_run(&j);
}

struct ln_job {
    const float *x, *g, *b;
    float *y;
    int n, d, chunk;
    float eps;
};

static void ln_task(void *ctx, int t, int th)
{
    (void)th;
    struct ln_job *j = ctx;
    int r0 = t * j->chunk, r1 = r0 + j->chunk < j->n ? r0 + j->chunk : j->n;
    if (r0 < r1)
        kern_layernorm(j->x + (size_t)r0 * j->d, j->y + (size_t)r0 * j->d, r1 - r0, j->d, j->g,
                       j->b, j->eps);
}

static void ln_par(struct vit_work *w, const float *x, float *y, int n, int d, const float *g,
                   const float *b, float eps)
{
    struct ln_job j = {.x = x, .g = g, .b = b, .y = y, .n = n, .d = d, .eps = eps};
    int tasks = n_chunks(w, n, &j.chunk);
    team_run(w->team, tasks, ln_task, &j);
}

struct attn_job {
    const struct model_config *c;
    struct vit_work *w;
    int T, nqb;
    int bf16; /* keys, values and probabilities rounded to bf16 (bf16 mode) */
    int v_in_place; /* float32 P V reads V from the q/k/v rows (kern_gemm_nn) */
};

/* bf16 mode packs into the float32 slots: a bf16 panel set takes at most
 * half of the float one plus one padding row, which the slots' rounding to
 * 16 floats covers. */
static unsigned short *kp_bf16(const struct vit_work *w, int h)
{
    return (unsigned short *)(w->kp + h * w->kp_stride);
}

static unsigned short *vp_bf16(const struct vit_work *w, int h)
{
    return (unsigned short *)(w->vp + h * w->vp_stride);
}

static void attn_pack_task(void *ctx, int h, int th)
{
    (void)th;
    struct attn_job *j = ctx;
    int D = j->c->dim, hd = j->c->head_dim;
    const float *qkv = j->w->qkv;
    if (j->bf16) {
        kern_pack_nt_bf16(qkv + D + h * hd, 3 * D, j->T, hd, kp_bf16(j->w, h));
        kern_pack_nn_bf16(qkv + 2 * D + h * hd, 3 * D, j->T, hd, vp_bf16(j->w, h));
        return;
    }
    kern_pack_nt(qkv + D + h * hd, 3 * D, j->T, hd, j->w->kp + h * j->w->kp_stride);
    if (!j->v_in_place)
        kern_pack_nn(qkv + 2 * D + h * hd, 3 * D, j->T, hd, j->w->vp + h * j->w->vp_stride);
}

/* One head, one block of QB_FAST queries, keys in blocks of ATT_KB: the
 * block's scores S = Q K^T, an online softmax (running maximum and sum per
 * query; the output so far is rescaled when the maximum grows), O += P V;
 * O is divided by the sums at the end. O is the block's rows of this
 * head's columns of w->att, where the projection reads them: the first
 * product brings those lines in while it computes, rather than a copy from
 * a scratch O stalling on them at the end. Per thread only a [QB_FAST,
 * ATT_KB] tile of scores exists, whatever T is. In bf16 mode both products
 * take bf16 operands (Q rounded once per task, P written as bf16 by the
 * softmax) and accumulate in float32; the softmax and its sums stay
 * float32. */
static void attn_task(void *ctx, int t, int th)
{
    struct attn_job *j = ctx;
    struct vit_work *w = j->w;
    const struct model_config *c = j->c;
    int h = t / j->nqb, qb = t % j->nqb, T = j->T, D = c->dim, hd = c->head_dim;
    int r0 = qb * QB_FAST, rows = T - r0 < QB_FAST ? T - r0 : QB_FAST;
    float *S = w->sblk[th], *O = w->att + (size_t)r0 * D + h * hd;
    float *mx = w->ssum[th], *sum = mx + QB_FAST, *alpha = sum + QB_FAST;
    const float *Q = w->qkv + (size_t)r0 * 3 * D + h * hd;
    /* (no value panels when float32 P V reads the values in place) */
    const float *kp = w->kp + h * w->kp_stride, *vp = w->vp ? w->vp + h * w->vp_stride : NULL;
    const unsigned short *kh = kp_bf16(w, h), *vh = w->vp ? vp_bf16(w, h) : NULL;
    int hd2 = (hd + 1) / 2 * 2, T2 = (T + 1) / 2 * 2;
    /* bf16 mode: the block's queries and probabilities, rounded once each
     * (rows one cache line longer than needed, see ATT_P_LD) */
    unsigned short *qh = w->hscr[th], *ph = qh + (size_t)QB_FAST * ATT_Q_LD(hd2);
    float scale = 1.0f / sqrtf((float)hd);
    for (int i = 0; i < rows; i++) {
        mx[i] = -INFINITY;
        sum[i] = 0.0f;
    }
    float *qf = w->qblk[th];
    if (j->bf16)
        kern_round_bf16_rows(Q, 3 * D, rows, hd, qh, ATT_Q_LD(hd2));
    else
        for (int i = 0; i < rows; i++)
            memcpy(qf + (size_t)i * ATT_QF_LD(hd), Q + (size_t)i * 3 * D, sizeof *qf * hd);
    for (int k0 = 0; k0 < T; k0 += ATT_KB) {
        int nk = T - k0 < ATT_KB ? T - k0 : ATT_KB;
        if (j->bf16) {
            /* key panels hold hd2 pairs each; value panels all T2 keys */
            kern_gemm_bf16_pa(rows, nk, hd, qh, ATT_Q_LD(hd2), kh + (size_t)k0 * hd2,
                              (size_t)hd2 * KERN_NR, S, ATT_KB, 0);
            kern_softmax_online_bf16(S, rows, nk, ATT_KB, scale, mx, sum, alpha, ph, ATT_P_LD);
        } else {
            kern_gemm(rows, nk, hd, qf, ATT_QF_LD(hd), kp + (size_t)k0 * hd, S, ATT_KB, NULL, 0,
                      NULL);
            kern_softmax_online(S, rows, nk, ATT_KB, scale, mx, sum, alpha);
        }
        int acc = k0 > 0; /* the first block's product initialises O */
        if (acc)
            kern_scale_rows(O, D, alpha, rows, hd, O, D);
        if (j->bf16) {
            kern_gemm_bf16_pa(rows, hd, nk, ph, ATT_P_LD, vh + (size_t)k0 * KERN_NR,
                              (size_t)T2 * KERN_NR, O, D, acc);
            continue;
        }
        if (j->v_in_place) {
            kern_gemm_nn(rows, hd, nk, S, ATT_KB, w->qkv + (size_t)k0 * 3 * D + 2 * D + h * hd,
                         3 * D, O, D, acc);
            continue;
        }
        /* the values' panels hold all T keys each: one product per panel */
        for (int p0 = 0; p0 < hd; p0 += KERN_NR) {
            int nr = hd - p0 < KERN_NR ? hd - p0 : KERN_NR;
            kern_gemm(rows, nr, nk, S, ATT_KB, vp + (size_t)p0 * T + (size_t)k0 * KERN_NR,
                      O + p0, D, NULL, acc, NULL);
        }
    }
    for (int i = 0; i < rows; i++)
        sum[i] = 1.0f / sum[i];
    kern_scale_rows(O, D, sum, rows, hd, O, D);
}

/* VIT_WANT_ATTN: the CLS and register rows of one head's attention over
 * all keys, normalised, written straight into w->attn. */
static void attn_rows_task(void *ctx, int h, int th)
{
    (void)th;
    struct attn_job *j = ctx;
    struct vit_work *w = j->w;
    const struct model_config *c = j->c;
    int T = j->T, D = c->dim, hd = c->head_dim, pre = 1 + c->n_reg;
    float *A = w->attn + (size_t)h * pre * T;
    kern_gemm(pre, T, hd, w->qkv + h * hd, 3 * D, w->kp + h * w->kp_stride, A, T, NULL, 0,
              NULL);
    for (int i = 0; i < pre; i++) {
        float s, *row = A + (size_t)i * T;
        kern_softmax_rows(row, 1, T, T, 1.0f / sqrtf((float)hd), &s);
        float inv = 1.0f / s;
        for (int k = 0; k < T; k++)
            row[k] *= inv;
    }
}

/* `bf16`: the bf16 products (bf16 mode), except in a block whose attention
 * rows are kept: those maps stay float32 throughout. */
static void attention_fast(const struct model_config *c, struct vit_work *w, int T, int bf16)
{
    struct attn_job j = {.c = c, .w = w, .T = T, .nqb = (T + QB_FAST - 1) / QB_FAST,
                         .bf16 = bf16 && !w->keep_attn, .v_in_place = v_in_place(c)};
    team_run(w->team, c->n_head, attn_pack_task, &j);
    team_run(w->team, c->n_head * j.nqb, attn_task, &j);
    if (w->keep_attn)
        team_run(w->team, c->n_head, attn_rows_task, &j);
}

/* One transformer block on the AVX-512 path; stops after the q/k/v when
 * `stop_after_qkv` (the tapped block of a LOST-only forward). LayerNorms are
 * fused into the residual updates before them: LN2 into the attention
 * projection's, and the next block's LN1 (when `next` is given) into the
 * MLP's. `z_ready`: this block's LN1 output is already in w->z. */
static void block_fast(const struct model_config *c, const struct model_block *b,
                       const struct model_block *next, struct vit_work *w, int T,
                       int stop_after_qkv, int z_ready)
{
    int D = c->dim, F = c->ffn_hidden, ldf = (int)w->ld_ffn;
    if (!z_ready) {
        ln_par(w, w->h, w->z, T, D, b->ln1_w, b->ln1_b, c->ln_eps);
        stage_end(w, VIT_STAGE_NORM);
    }
    gemm_par(w, T, 3 * D, D, w->z, D, b->qkv_p, b->qkv_h, b->qkv_b, w->qkv, 3 * D, EPI_NONE,
             NULL, NULL);
    stage_end(w, VIT_STAGE_QKV);
    if (stop_after_qkv)
        return;
    attention_fast(c, w, T, b->qkv_h != NULL);
    stage_end(w, VIT_STAGE_ATTN);
    gemm_res_ln(w, T, D, D, w->att, D, b->proj_p, b->proj_h, b->proj_b, w->tmp, b->ls1, w->h,
                b->ln2_w, b->ln2_b, c->ln_eps, w->z);
    stage_end(w, VIT_STAGE_PROJ);
    const float *nw = next ? next->ln1_w : NULL, *nb = next ? next->ln1_b : NULL;
    if (c->ffn == MODEL_FFN_SWIGLU) {
        gemm_par(w, T, 2 * F, D, w->z, D, b->fc1_p, b->fc1_h, b->fc1_b, w->ffn, ldf,
                 EPI_SWIGLU, NULL, NULL);
        stage_end(w, VIT_STAGE_FC1);
        gemm_res_ln(w, T, D, F, w->ffn, ldf, b->fc2_p, b->fc2_h, b->fc2_b, w->tmp, b->ls2,
                    w->h, nw, nb, c->ln_eps, w->z);
    } else {
        gemm_par(w, T, F, D, w->z, D, b->fc1_p, b->fc1_h, b->fc1_b, w->ffn, ldf,
                 c->act == MODEL_ACT_QUICKGELU ? EPI_QUICKGELU : EPI_GELU, NULL, NULL);
        stage_end(w, VIT_STAGE_FC1);
        gemm_res_ln(w, T, D, F, w->ffn, ldf, b->fc2_p, b->fc2_h, b->fc2_b, w->tmp, b->ls2, w->h,
                    nw, nb, c->ln_eps, w->z);
    }
    stage_end(w, VIT_STAGE_FC2);
}

/* The tapped block when it is the last one run and not all of q, k, v are
 * wanted (LOST reads k alone): its LayerNorm, then each wanted third of the
 * qkv product for the patch rows only, straight into w->q / w->k / w->v.
 * Each element is the same chain of FMAs as in the whole product, so the
 * values are those of block_fast's qkv bit for bit. */
static void qkv_parts(const struct model_config *c, const struct model_block *b,
                      struct vit_work *w, int T, int z_ready, unsigned want)
{
    int D = c->dim, pre = 1 + c->n_reg, N = T - pre;
    if (!z_ready) {
        ln_par(w, w->h, w->z, T, D, b->ln1_w, b->ln1_b, c->ln_eps);
        stage_end(w, VIT_STAGE_NORM);
    }
    const unsigned bit[3] = {VIT_WANT_Q, VIT_WANT_K, VIT_WANT_V};
    float *dst[3] = {w->q, w->k, w->v};
    size_t k2 = (size_t)(D + 1) / 2 * 2;
    for (int p = 0; p < 3; p++) {
        if (!(want & bit[p]))
            continue;
        size_t col = (size_t)p * D;
        gemm_par(w, N, D, D, w->z + (size_t)pre * D, D, b->qkv_h ? NULL : b->qkv_p + col * D,
                 b->qkv_h ? b->qkv_h + col * k2 : NULL, b->qkv_b ? b->qkv_b + col : NULL,
                 dst[p], D, EPI_NONE, NULL, NULL);
    }
    stage_end(w, VIT_STAGE_QKV);
}

/* Whether a forward whose last block run is the tapped one, wanting `want`
 * of its q/k/v, takes qkv_parts: the AVX-512 path, some but not all of the
 * thirds, and each third of the packed weights starting on a panel. */
static int qkv_parts_ok(const struct model *m, unsigned want)
{
    unsigned q = want & VIT_WANT_QKV;
    return m->packed && q && q != VIT_WANT_QKV && m->cfg.dim % KERN_NR == 0;
}

/* ---- LOST's Gram matrix on the workspace's kernels ---------------------- */

#define GRAM_ROWS 96 /* a multiple of KERN_MR and of KERN_NR: blocks start on a panel */

struct gram_job {
    struct vit_work *w;
    const float *f, *Fp;
    float *U;
    int n, dim;
};

/* Rows [r0, r0 + 96) against columns r0..n-1: the upper triangle and a few
 * entries below the diagonal inside the block, which nobody reads. */
static void gram_task(void *ctx, int t, int th)
{
    struct gram_job *j = ctx;
    int r0 = t * GRAM_ROWS, rows = j->n - r0 < GRAM_ROWS ? j->n - r0 : GRAM_ROWS;
    const float *bp = j->Fp + (size_t)(r0 / KERN_NR) * j->dim * KERN_NR;
    kern_gemm(rows, j->n - r0, j->dim, j->f + (size_t)r0 * j->dim, j->dim, bp,
              j->U + (size_t)r0 * j->n + r0, j->n, NULL, 0, (float *)j->w->hscr[th]);
}

int vit_work_gram(struct vit_work *w, const float *f, int n, int dim, float *U, struct err *e)
{
    if (n < 1 || dim < 1)
        return err_set(e, ERR_INPUT, "gram: %d x %d features", n, dim);
    if (n > w->max_patch || dim > w->m->cfg.dim)
        return err_set(e, ERR_TOOBIG, "gram: %d x %d features exceed the workspace (%d x %d)",
                       n, dim, w->max_patch, w->m->cfg.dim);
    if (!w->fast) {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, dim, 1.0f, f, dim, 0.0f, U, n);
        return 0;
    }
    /* The packed features go where the attention packs its keys: that
     * scratch holds n_head panels of [T, head_dim], at least [n, dim]. */
    if (kern_packed_floats(n, dim) > w->kp_stride * (size_t)w->m->cfg.n_head)
        return err_set(e, ERR_TOOBIG, "gram: %d x %d features exceed the workspace", n, dim);
    kern_pack_nt(f, dim, n, dim, w->kp);
    struct gram_job j = {.w = w, .f = f, .Fp = w->kp, .U = U, .n = n, .dim = dim};
    team_run(w->team, (n + GRAM_ROWS - 1) / GRAM_ROWS, gram_task, &j);
    return 0;
}

static void copy_cols(const float *src, int ld, int col, int rows, int D, float *dst)
{
    for (int t = 0; t < rows; t++)
        memcpy(dst + (size_t)t * D, src + (size_t)t * ld + col, sizeof *dst * D);
}

double vit_forward_flop(const struct model *m, int n_patch, unsigned want)
{
    const struct model_config *c = &m->cfg;
    double N = n_patch, T = 1 + c->n_reg + N, D = c->dim, F = c->ffn_hidden;
    double K = 3.0 * c->patch * c->patch;
    double ffn = c->ffn == MODEL_FFN_SWIGLU ? 2 * T * D * 2 * F + 2 * T * F * D
                                            : 2 * T * D * F * 2;
    double block = 2 * T * D * 3 * D + 2 * 2 * T * T * D + 2 * T * D * D + ffn;
    int thirds = (want & VIT_WANT_Q ? 1 : 0) + (want & VIT_WANT_K ? 1 : 0) +
                 (want & VIT_WANT_V ? 1 : 0);
    double last = qkv_parts_ok(m, want) ? 2 * N * D * D * thirds : 2 * T * D * 3 * D;
    return 2 * N * K * D + (c->depth - 1) * block + last;
}

/* Patch row r of the image x [3, h, w_px] as gw rows of cols, each the
 * patch's 3 P P pixels in (channel, y, x) order: the patch embedding's A. */
struct im2col_job {
    const float *x;
    float *cols;
    int h, w_px, gw, P;
};

static void im2col_task(void *ctx, int r, int th)
{
    (void)th;
    const struct im2col_job *j = ctx;
    int P = j->P, K = 3 * P * P;
    for (int cc = 0; cc < j->gw; cc++) {
        float *col = j->cols + ((size_t)r * j->gw + cc) * K;
        for (int ch = 0; ch < 3; ch++)
            for (int ky = 0; ky < P; ky++)
                memcpy(col + (ch * P + ky) * P,
                       j->x + ((size_t)ch * j->h + (size_t)r * P + ky) * j->w_px + (size_t)cc * P,
                       sizeof *col * P);
    }
}

int vit_forward(const struct model *m, struct vit_work *w, const float *x, int h, int w_px,
                const struct vit_opts *opts, struct vit_out *out, struct err *e)
{
    const struct model_config *c = &m->cfg;
    int P = c->patch, D = c->dim, R = c->n_reg;
    memset(out, 0, sizeof *out);
    if (h < P || w_px < P || h % P || w_px % P)
        return err_set(e, ERR_INPUT, "input is %dx%d, sides must be positive multiples of "
                       "the patch size %d", h, w_px, P);
    int gh = h / P, gw = w_px / P;
    if ((long)gh * gw > w->max_patch)
        return err_set(e, ERR_TOOBIG, "input %dx%d has %ld patches, this workspace holds "
                       "%d", h, w_px, (long)gh * gw, w->max_patch);
    unsigned want = opts && opts->want ? opts->want : VIT_WANT_QKV;
    int layer = opts ? opts->layer : -1;
    if (layer < 0)
        layer += c->depth;
    if (layer < 0 || layer >= c->depth)
        return err_set(e, ERR_INPUT, "layer %d out of range: the model has %d blocks "
                       "(use 0..%d or -1..-%d)", opts ? opts->layer : -1, c->depth,
                       c->depth - 1, c->depth);
    int N = gh * gw, T = 1 + R + N;
    if (w->timing)
        w->t_mark = clock_now_ms();
    /* 2.1 patch embedding as im2col . Wpe^T, 2.2 CLS + positions, then
     * registers (no position) */
    position_table(m, w, gh, gw);
    int K = 3 * P * P;
    float *hp = w->h + (size_t)(1 + R) * D;
    struct im2col_job ij = {.x = x, .cols = w->cols, .h = h, .w_px = w_px, .gw = gw, .P = P};
    team_run(w->team, gh, im2col_task, &ij);
    /* the positions added in the product's epilogue while its rows are in
     * cache, unless the patch embeddings alone are wanted too; the same
     * sums either way: (cols . Wpe^T + b) + pos */
    int fused = w->fast && !(want & VIT_WANT_PATCH_EMBED);
    if (w->fast) {
        struct gemm_job j = {.w = w, .m = N, .n = D, .k = K, .lda = K,
                             .ldc = D, .A = w->cols, .Bp = m->patch_p, .bias = m->patch_b,
                             .C = hp, .epi = fused ? EPI_ADD : EPI_NONE, .add = w->pos + D};
        gemm_run(&j);
    } else {
        linear(w->cols, N, K, m->patch_w, m->patch_b, D, hp);
    }
    if (want & VIT_WANT_PATCH_EMBED)
        memcpy(w->pe, hp, sizeof *hp * (size_t)N * D);
    if (!fused)
        for (size_t i = 0; i < (size_t)N * D; i++)
            hp[i] += w->pos[D + i];
    for (int i = 0; i < D; i++)
        w->h[i] = m->cls[i] + w->pos[i];
    if (R)
        memcpy(w->h + D, m->reg, sizeof *w->h * (size_t)R * D);
    if (c->ln_pre)
        layer_norm(w->h, w->h, T, D, m->ln_pre_w, m->ln_pre_b, c->ln_eps);
    stage_end(w, VIT_STAGE_EMBED);
    /* 2.4 blocks; stop after the tapped qkv when nothing later is wanted */
    /* The last block to run: the tapped ones, or all of them for tokens or
     * attention maps. A block whose q/k/v is the last thing needed stops
     * right after its qkv projection. */
    int full = (want & (VIT_WANT_TOKENS | VIT_WANT_ATTN)) != 0;
    int last = full ? c->depth - 1 : (want & VIT_WANT_QKV) ? layer : -1;
    for (int t = 0; opts && t < opts->n_taps; t++) {
        int lt = opts->tap_layers[t] < 0 ? opts->tap_layers[t] + c->depth : opts->tap_layers[t];
        if (lt < 0 || lt >= c->depth)
            return err_set(e, ERR_INPUT, "tap layer %d out of range: the model has %d blocks",
                           opts->tap_layers[t], c->depth);
        last = lt > last ? lt : last;
    }
    /* The last block run is the tapped one alone: only its wanted thirds of
     * q/k/v, patch rows only (qkv_parts). */
    int parts = !full && (!opts || !opts->n_taps) && qkv_parts_ok(m, want);
    for (int l = 0; l <= last; l++) {
        if (opts && opts->cancel && atomic_load_explicit(opts->cancel, memory_order_relaxed))
            return err_set(e, ERR_CANCELLED, "forward cancelled before block %d: nobody waits "
                           "for it", l);
        w->keep_attn = (want & VIT_WANT_ATTN) && l == c->depth - 1;
        const struct model_block *b = &m->blocks[l];
        int stop = l == last && !full;
        if (stop && parts) {
            qkv_parts(c, b, w, T, l > 0, want);
            break;
        }
        if (w->fast) {
            /* the previous block left this block's LN1 output in w->z */
            block_fast(c, b, l < last ? &m->blocks[l + 1] : NULL, w, T, stop, l > 0);
        } else {
            layer_norm(w->h, w->z, T, D, b->ln1_w, b->ln1_b, c->ln_eps);
            stage_end(w, VIT_STAGE_NORM);
            linear(w->z, T, D, b->qkv_w, b->qkv_b, 3 * D, w->qkv);
            stage_end(w, VIT_STAGE_QKV);
        }
        const float *pq = w->qkv + (size_t)(1 + R) * 3 * D;
        if (l == layer) {
            if (want & VIT_WANT_Q)
                copy_cols(pq, 3 * D, 0, N, D, w->q);
            if (want & VIT_WANT_K)
                copy_cols(pq, 3 * D, D, N, D, w->k);
            if (want & VIT_WANT_V)
                copy_cols(pq, 3 * D, 2 * D, N, D, w->v);
        }
        for (int t = 0; opts && t < opts->n_taps; t++) {
            int lt = opts->tap_layers[t] < 0 ? opts->tap_layers[t] + c->depth
                                             : opts->tap_layers[t];
            if (lt != l)
                continue;
            float *dst = opts->taps + (size_t)t * 3 * N * D;
            for (int k = 0; k < 3; k++)
                copy_cols(pq, 3 * D, k * D, N, D, dst + (size_t)k * N * D);
        }
        stage_end(w, VIT_STAGE_OTHER);
        if (stop)
            break;
        if (w->fast)
            continue; /* block_fast ran the whole block */
        attention(c, w, T);
        stage_end(w, VIT_STAGE_ATTN);
        linear(w->att, T, D, b->proj_w, b->proj_b, D, w->tmp);
        residual(w->h, w->tmp, b->ls1, T, D);
        stage_end(w, VIT_STAGE_PROJ);
        layer_norm(w->h, w->z, T, D, b->ln2_w, b->ln2_b, c->ln_eps);
        stage_end(w, VIT_STAGE_NORM);
        ffn(c, b, w, T); /* both MLP projections: counted as fc1 */
        residual(w->h, w->tmp, b->ls2, T, D);
        stage_end(w, VIT_STAGE_FC1);
    }
    if (want & VIT_WANT_TOKENS) {
        if (w->fast)
            ln_par(w, w->h, w->tokens, T, D, m->norm_w, m->norm_b, c->ln_eps);
        else
            layer_norm(w->h, w->tokens, T, D, m->norm_w, m->norm_b, c->ln_eps);
        out->tokens = w->tokens;
        if (m->proj) {
            /* x @ proj with proj stored [D, E] (a plain matrix, not a Linear) */
            cblas_sgemv(CblasRowMajor, CblasTrans, D, c->embed_dim, 1.0f, m->proj,
                        c->embed_dim, w->tokens, 1, 0.0f, w->embed, 1);
            out->embed = w->embed;
            out->embed_dim = c->embed_dim;
        }
    }
    stage_end(w, VIT_STAGE_OTHER);
    out->grid_h = gh;
    out->grid_w = gw;
    out->n_patch = N;
    out->n_reg = R;
    out->n_tok = T;
    out->dim = D;
    out->layer = layer;
    out->q = want & VIT_WANT_Q ? w->q : NULL;
    out->k = want & VIT_WANT_K ? w->k : NULL;
    out->v = want & VIT_WANT_V ? w->v : NULL;
    out->pos_embed = w->pos;
    out->n_head = c->n_head;
    if (want & VIT_WANT_ATTN)
        out->attn = w->attn;
    if (want & VIT_WANT_PATCH_EMBED)
        out->patch_embed = w->pe;
    return 0;
}
