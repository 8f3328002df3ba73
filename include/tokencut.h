/* tokencut.h - TokenCut (Wang et al., CVPR 2022): the Normalized Cut of the
 * patch graph, a sibling of LOST (lost.h) on the same features. From patch
 * features F [N, D] (CLS and registers removed): cosine similarities S of
 * the L2-normalised rows, a graph W (1 where S > tau, eps elsewhere; or the
 * weighted variant), the second smallest generalised eigenvector x of
 * (D - W) x = lambda D x, the bipartition x > mean(x) oriented so that the
 * seed argmax |x| is foreground, and the box of the seed's 4-connected
 * component (docs/specs/tokencut.md). Equal to the authors' code, which
 * solves the dense eigenproblem; lostd runs Lanczos on the normalised
 * matrix instead and falls back to a dense LAPACK solve whenever the
 * iterative answer could decide the bipartition or the seed differently.
 * Memory from the caller's arena; never prints. */
#ifndef LOSTD_TOKENCUT_H
#define LOSTD_TOKENCUT_H

#include "lost.h"

struct arena;
struct err;

#define TOKENCUT_TAU 0.2f
#define TOKENCUT_EPS 1e-5f

struct tokencut_params {
    float tau;          /* edge threshold on the cosine similarity, in [-1, 1] */
    float eps;          /* weight of the pairs below it, > 0 */
    int binary;         /* 1 (default): edges weigh 1; 0: the weighted variant
                           W_ij = S_ij where S_ij >= tau (the authors' --no_binary_graph) */
    int dense;          /* 1: always the dense solve (a reference for tests) */
    /* Optional Gram provider, as lost_params.gram: the upper triangle of
     * F F^T into U [n, n]. NULL = cblas_ssyrk. */
    int (*gram)(void *ctx, const float *f, int n, int dim, float *U, struct err *e);
    void *gram_ctx;
    /* Optional: asked for tokencut_dense_bytes(N) before the dense fallback
     * runs (a memory budget's caller); non-zero stops the cut with the
     * callback's error. NULL = no check. */
    int (*reserve)(void *ctx, long long bytes, struct err *e);
    void *reserve_ctx;
};

/* Bytes of the graph phase at n patches (the normalised graph as double
 * [n, n], the float similarity S held inside it until read, the normalised
 * features of up to `dim` values, per-patch vectors and the Lanczos basis),
 * and what the dense fallback adds on top (two [n, n] doubles and LAPACK's
 * workspace). */
long long tokencut_graph_bytes(long n, int dim);
long long tokencut_dense_bytes(long n);

/* tau 0.2, eps 1e-5, binary graph, iterative solver, no Gram provider. */
void tokencut_params_default(struct tokencut_params *p);

/* ERR_INPUT with a clear message for tau outside [-1, 1] or not finite, eps
 * not a finite number > 0. */
int tokencut_check_params(const struct tokencut_params *p, struct err *e);

enum tokencut_solver { TOKENCUT_LANCZOS = 0, TOKENCUT_DENSE };

struct tokencut_result {
    int box[4];             /* x1, y1, x2, y2: pixels, exclusive ends, clipped */
    int box_feat[4];        /* r0, c0, r1, c1: patches, exclusive ends */
    int seed;               /* patch index of argmax |x| */
    int n_cc;               /* patches in the seed's component */
    unsigned char *mask;    /* [N] 1 inside the seed's component (arena) */
    float *eigvec;          /* [N] x, x^T D x = 1, oriented: the seed's side > mean (arena) */
    double lambda;          /* its eigenvalue */
    int solver;             /* enum tokencut_solver that gave x */
    int iterations;         /* Lanczos steps taken (also before a fallback) */
    const char *fallback;   /* why the dense solve ran (static text), or NULL */
};

/* TokenCut on features [N, dim] over grid g (N = rows * cols, row-major).
 * ERR_INPUT for bad parameters, sizes or NaN features; ERR_TOOBIG when the
 * arena cannot hold the graph (N^2 floats) and the solver's vectors; an
 * error of the Gram provider; ERR_INTERNAL when LAPACK fails. */
int tokencut_find_box(const float *feats, int dim, const struct lost_grid *g,
                      const struct tokencut_params *p, struct arena *a,
                      struct tokencut_result *r, struct err *e);

/* Multi-object: repeat the cut on the patches outside the components found
 * so far (their rows and columns removed from the graph), up to
 * max_objects boxes. Stops early, and says why in *stop, when fewer than 2
 * patches are left ("empty"), or the new component overlaps an earlier box
 * with IoU > 0.5 or lies inside it ("overlap"). boxes [max_objects][4] in
 * pixels; returns the count through *n. No parity claim: the authors' code
 * finds one object. */
int tokencut_find_boxes(const float *feats, int dim, const struct lost_grid *g,
                        const struct tokencut_params *p, int max_objects, struct arena *a,
                        int (*boxes)[4], int *n, const char **stop, struct err *e);

#endif
