/* tokencut.c - TokenCut's Normalized Cut on the patch graph (see
 * include/tokencut.h, docs/specs/tokencut.md).
 *
 * The eigenproblem (D - W) x = lambda D x is solved as the symmetric one of
 * M = D^-1/2 W D^-1/2: x = D^-1/2 y for the eigenvector y of M's second
 * largest eigenvalue (M's largest is 1, eigenvector D^1/2 1, deflated).
 * Lanczos with full reorthogonalisation runs on M (kept in double, upper
 * triangle, products by cblas_dsymv); once the top Ritz pair has converged,
 * its error is bounded from the true residual r and the gap g to the next
 * Ritz value (sin of the angle <= r / g, Davis-Kahan), turned into a bound on
 * every x_i. If an entry lies within that bound of the mean, or the largest
 * |x_i| is not clear of the second by it, the answer could differ from an
 * exact solve: then LAPACK's dsygvx decides, on (D - W, D) as the authors'
 * code (scipy's eigh) does, so that even a nearly degenerate graph gets
 * their eigenvector. */
#include "tokencut.h"
#include "lost_impl.h"

#include "arena.h"
#include "err.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* LAPACK (in OpenBLAS): symmetric eigenproblems, Fortran calling convention. */
void dsygvx_(const int *itype, const char *jobz, const char *range, const char *uplo,
             const int *n, double *a, const int *lda, double *b, const int *ldb,
             const double *vl, const double *vu, const int *il, const int *iu,
             const double *abstol, int *m, double *w, double *z, const int *ldz, double *work,
             const int *lwork, int *iwork, int *ifail, int *info);
void dstev_(const char *jobz, const int *n, double *d, double *e, double *z, const int *ldz,
            double *work, int *info);

#define LANCZOS_MAX 240     /* steps before giving up on the iterative solve */
#define LANCZOS_FIRST 12    /* first convergence check */
#define LANCZOS_EVERY 6     /* then every so many steps */
#define LANCZOS_TOL 1e-11   /* Ritz residual (relative to ||M|| = 1) that counts as converged */

void tokencut_params_default(struct tokencut_params *p)
{
    memset(p, 0, sizeof *p);
    p->tau = TOKENCUT_TAU;
    p->eps = TOKENCUT_EPS;
    p->binary = 1;
}

int tokencut_check_params(const struct tokencut_params *p, struct err *e)
{
    if (!p)
        return err_set(e, ERR_INPUT, "tokencut: no parameters given");
    if (!isfinite(p->tau) || p->tau < -1.0f || p->tau > 1.0f)
        return err_set(e, ERR_INPUT, "tau must be a number in [-1, 1], got %g", (double)p->tau);
    if (!isfinite(p->eps) || !(p->eps > 0.0f))
        return err_set(e, ERR_INPUT, "eps must be a number > 0, got %g", (double)p->eps);
    return 0;
}

/* ---- the graph --------------------------------------------------------------- */

/* M = D^-1/2 W D^-1/2 into the upper triangle of Md [n, n] (double), from the
 * upper triangle of S; d [n] the degrees, dis [n] = d^-1/2; rowbuf [n].
 *
 * S may be the upper half of Md's own storage (the floats [n^2, 2 n^2) of
 * it): Md's row i (its entries j >= i, bytes [8(in + i), 8(in + n))) then
 * overwrites only S's rows before i and its own row, never a later row
 * (that would need (i + 1)(n - 1) > n^2). Row i of S is copied to rowbuf
 * before row i of Md is written, so every S entry is read before it is
 * overwritten: the graph costs 8 n^2 bytes, not 12. */
static void build_graph(const float *S, size_t n, const struct tokencut_params *p, double *Md,
                        double *d, double *dis, float *rowbuf)
{
    const float tau = p->tau, eps = p->eps;
    for (size_t i = 0; i < n; i++)
        d[i] = 0;
    /* W into Md's upper triangle, degrees from both halves. */
    for (size_t i = 0; i < n; i++) {
        memcpy(rowbuf + i, S + i * n + i, sizeof *rowbuf * (n - i));
        const float *s = rowbuf;
        double *m = Md + i * n;
        double row = 0;
        for (size_t j = i; j < n; j++) {
            float w = p->binary ? (s[j] > tau ? 1.0f : eps) : (s[j] < tau ? eps : s[j]);
            m[j] = w;
            row += w;
            if (j > i)
                d[j] += w;
        }
        d[i] += row;
    }
    for (size_t i = 0; i < n; i++)
        dis[i] = d[i] > 0 ? 1.0 / sqrt(d[i]) : 0.0;
    for (size_t i = 0; i < n; i++) {
        double *m = Md + i * n;
        for (size_t j = i; j < n; j++)
            m[j] *= dis[i] * dis[j];
    }
}

long long tokencut_graph_bytes(long n, int dim)
{
    /* Md (S inside it); fn; d, dis, y, eigvec, mask, on, queue, a row of S;
     * the Lanczos basis of at most 241 vectors and its tridiagonal problem;
     * alignment slack */
    return n * n * 8 + n * (long long)dim * 4 + n * 38 + n * 243LL * 8 + (4LL << 20);
}

long long tokencut_dense_bytes(long n)
{
    /* A, B; z, w; iwork, ifail; dsygvx's work ((NB + 3) n, NB at most 64
     * in OpenBLAS's LAPACK: 128 n is ample); slack */
    return n * n * 16 + n * 24 + n * 24 + n * 128LL * 8 + (1LL << 20);
}

/* ---- solvers ----------------------------------------------------------------- */

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void axpy(double a, const double *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

/* y = M v (M symmetric, upper triangle stored). */
static void matvec(const double *Md, int n, const double *v, double *y)
{
    cblas_dsymv(CblasRowMajor, CblasUpper, n, 1.0, Md, n, v, 1, 0.0, y, 1);
}

/* The exact solve, as the authors' code does it (scipy's eigh with a subset:
 * LAPACK dsygvx on (D - W, D), the 2nd and 3rd smallest pairs), so that
 * even nearly degenerate graphs get the same eigenvector: x [n] with
 * x^T D x = 1 and its eigenvalue. Md (M's upper triangle) is read, a [n, n]
 * double scratch is taken from the arena. 0 or ERR_INTERNAL / ERR_TOOBIG. */
static int solve_dense(const double *Md, int n, const double *d, const double *dis, double *x,
                       double *lambda, struct arena *a, struct err *e)
{
    size_t mark = arena_mark(a), nn = (size_t)n * n;
    double *A = arena_alloc(a, sizeof(double) * nn), *B = arena_calloc(a, nn, sizeof(double));
    double *z = arena_alloc(a, sizeof(double) * (size_t)n * 2);
    int *iwork = arena_alloc(a, sizeof(int) * (size_t)n * 5), *ifail = arena_alloc(a, sizeof(int) * (size_t)n);
    if (!A || !B || !z || !iwork || !ifail) {
        arena_rewind(a, mark);
        return err_set(e, ERR_TOOBIG, "tokencut: no scratch for the dense solve");
    }
    /* W back from M = D^-1/2 W D^-1/2; A = D - W, full (symmetric). */
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
            double w = Md[(size_t)i * n + j] / (dis[i] * dis[j]);
            A[(size_t)i * n + j] = A[(size_t)j * n + i] = (i == j ? d[i] : 0) - w;
        }
    for (int i = 0; i < n; i++)
        B[(size_t)i * n + i] = d[i];
    int itype = 1, il = 2, iu = n >= 3 ? 3 : 2, m = 0, info = 0, lwork = -1;
    double vl = 0, vu = 0, abstol = 0, wq = 0;
    double *w = arena_alloc(a, sizeof(double) * (size_t)n);
    if (!w) {
        arena_rewind(a, mark);
        return err_set(e, ERR_TOOBIG, "tokencut: no scratch for the dense solve");
    }
    dsygvx_(&itype, "V", "I", "L", &n, A, &n, B, &n, &vl, &vu, &il, &iu, &abstol, &m, w, z, &n,
            &wq, &lwork, iwork, ifail, &info);
    lwork = info ? 8 * n : (int)wq + 1;
    double *work = arena_alloc(a, sizeof(double) * (size_t)lwork);
    if (!work) {
        arena_rewind(a, mark);
        return err_set(e, ERR_TOOBIG, "tokencut: no scratch for the dense solve");
    }
    dsygvx_(&itype, "V", "I", "L", &n, A, &n, B, &n, &vl, &vu, &il, &iu, &abstol, &m, w, z, &n,
            work, &lwork, iwork, ifail, &info);
    if (info || m < 1) {
        arena_rewind(a, mark);
        return err_set(e, ERR_INTERNAL, "tokencut: dsygvx failed (info %d, %d values)", info,
                       m);
    }
    memcpy(x, z, sizeof(double) * (size_t)n); /* the first column: the 2nd smallest */
    *lambda = w[0];
    arena_rewind(a, mark);
    return 0;
}

/* How far x = dis * y may be from the exact answer, given that y's angle to
 * the exact eigenvector is at most sin_t: |dx_i| <= sqrt(2) sin_t dis_i.
 * Returns 1 when the bipartition and the seed cannot change within it. */
static int decided(const double *y, const double *dis, int n, double sin_t, const char **why)
{
    double emax = 0, mean = 0;
    for (int i = 0; i < n; i++) {
        double ei = 1.4142135623730951 * sin_t * dis[i];
        emax = ei > emax ? ei : emax;
        mean += dis[i] * y[i];
    }
    mean /= n;
    double first = -1, second = -1;
    for (int i = 0; i < n; i++) {
        double x = dis[i] * y[i];
        /* The mean moves by at most emax too; float64 rounding on top. */
        double margin = 1.4142135623730951 * sin_t * dis[i] + emax + 1e-12 * fabs(x);
        if (fabs(x - mean) <= margin) {
            *why = "an entry lies within the solver's error of the mean";
            return 0;
        }
        double ax = fabs(x);
        if (ax > first) {
            second = first;
            first = ax;
        } else if (ax > second) {
            second = ax;
        }
    }
    if (n > 1 && first - second <= 2 * emax + 1e-12 * first) {
        *why = "the largest |x| is not unique within the solver's error";
        return 0;
    }
    return 1;
}

/* Lanczos on M with the trivial eigenvector v0 = D^1/2 1 deflated. On
 * success (1) y [n] is the second eigenvector, certified by decided(). 0:
 * not decided (*why says why); ERR_*: failure. */
static int solve_lanczos(const double *Md, int n, const double *d, const double *dis,
                         double *y, double *lambda, int *steps, const char **why,
                         struct arena *a, struct err *e)
{
    size_t mark = arena_mark(a);
    int kmax = n - 1 < LANCZOS_MAX ? n - 1 : LANCZOS_MAX;
    double *Q = arena_alloc(a, sizeof(double) * (size_t)(kmax + 1) * n);
    double *v0 = arena_alloc(a, sizeof(double) * n);
    double *w = arena_alloc(a, sizeof(double) * n);
    double *al = arena_alloc(a, sizeof(double) * (kmax + 1));
    double *be = arena_alloc(a, sizeof(double) * (kmax + 2));
    double *td = arena_alloc(a, sizeof(double) * (kmax + 1));
    double *te = arena_alloc(a, sizeof(double) * (kmax + 1));
    double *tz = arena_alloc(a, sizeof(double) * (size_t)(kmax + 1) * (kmax + 1));
    double *twork = arena_alloc(a, sizeof(double) * (2 * kmax + 2));
    if (!Q || !v0 || !w || !al || !be || !td || !te || !tz || !twork) {
        arena_rewind(a, mark);
        return err_set(e, ERR_TOOBIG, "tokencut: no scratch for the Lanczos vectors");
    }
    double nv0 = 0;
    for (int i = 0; i < n; i++)
        nv0 += d[i];
    nv0 = sqrt(nv0);
    for (int i = 0; i < n; i++)
        v0[i] = sqrt(d[i]) / nv0;
    /* A fixed start (the answer must not depend on a random draw): a
     * deterministic pseudo-random vector, v0 projected out. */
    uint32_t s = 0x9e3779b9u;
    for (int i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        Q[i] = (double)(s >> 8) / (double)(1u << 24) - 0.5;
    }
    axpy(-dot(Q, v0, n), v0, Q, n);
    double nq = sqrt(dot(Q, Q, n));
    for (int i = 0; i < n; i++)
        Q[i] /= nq;
    be[0] = 0;
    int rc = 0, k;
    *why = "Lanczos did not converge";
    for (k = 0; k < kmax; k++) {
        double *q = Q + (size_t)k * n;
        matvec(Md, n, q, w);
        al[k] = dot(w, q, n);
        axpy(-al[k], q, w, n);
        if (k > 0)
            axpy(-be[k], q - n, w, n);
        /* Full reorthogonalisation, twice, against v0 and every q so far. */
        for (int pass = 0; pass < 2; pass++) {
            axpy(-dot(w, v0, n), v0, w, n);
            for (int j = 0; j <= k; j++) {
                const double *qj = Q + (size_t)j * n;
                axpy(-dot(w, qj, n), qj, w, n);
            }
        }
        be[k + 1] = sqrt(dot(w, w, n));
        int m = k + 1;
        int last = m == kmax || be[k + 1] < 1e-14;
        if (!last && (m < LANCZOS_FIRST || (m - LANCZOS_FIRST) % LANCZOS_EVERY))
            goto next;
        /* The Ritz values of T_m (dstev: ascending). */
        memcpy(td, al, sizeof(double) * m);
        memcpy(te, be + 1, sizeof(double) * (m - 1 > 0 ? m - 1 : 1));
        int info = 0;
        dstev_("V", &m, td, te, tz, &m, twork, &info);
        if (info) {
            rc = err_set(e, ERR_INTERNAL, "tokencut: dstev failed (%d)", info);
            break;
        }
        const double *s1 = tz + (size_t)(m - 1) * m; /* column of the largest */
        double rho1 = fabs(be[k + 1] * s1[m - 1]);
        if (rho1 > LANCZOS_TOL && !last)
            goto next;
        /* Ritz vector, then its true residual and the gap to the next. */
        memset(y, 0, sizeof(double) * n);
        for (int j = 0; j < m; j++)
            axpy(s1[j], Q + (size_t)j * n, y, n);
        double ny = sqrt(dot(y, y, n));
        for (int i = 0; i < n; i++)
            y[i] /= ny;
        double theta = td[m - 1];
        matvec(Md, n, y, w);
        axpy(-theta, y, w, n);
        double r = sqrt(dot(w, w, n));
        double rho2 = m > 1 ? fabs(be[k + 1] * tz[(size_t)(m - 2) * m + m - 1]) : 1;
        double gap = m > 1 ? (theta - r) - (td[m - 2] + rho2) : 0;
        *lambda = theta;
        *steps = m;
        if (gap > 0 && decided(y, dis, n, r / gap, why)) {
            rc = 1;
            break;
        }
        if (gap <= 0)
            *why = "the top two eigenvalues are not yet apart";
        if (last)
            break;
    next:
        if (be[k + 1] < 1e-14) { /* an invariant subspace: nothing more to find */
            *why = "the Krylov space closed before the eigenvector was decided";
            *steps = k + 1;
            break;
        }
        double *qn = Q + (size_t)(k + 1) * n;
        for (int i = 0; i < n; i++)
            qn[i] = w[i] / be[k + 1];
        *steps = k + 1;
    }
    arena_rewind(a, mark);
    return rc;
}

/* ---- the cut ------------------------------------------------------------------- */

int tokencut_find_box(const float *feats, int dim, const struct lost_grid *g,
                      const struct tokencut_params *p, struct arena *a,
                      struct tokencut_result *r, struct err *e)
{
    memset(r, 0, sizeof *r);
    size_t n;
    int rc = lost_check_grid(g, &n, e);
    if (!rc)
        rc = tokencut_check_params(p, e);
    if (rc)
        return rc;
    if (!feats || dim < 1)
        return err_set(e, ERR_INPUT, "tokencut: no features (dim %d)", dim);
    if (n > 46340)
        return err_set(e, ERR_TOOBIG, "tokencut: %zu patches, at most 46340", n);
    for (size_t i = 0; i < n * (size_t)dim; i++)
        if (!isfinite(feats[i]))
            return err_set(e, ERR_INPUT, "tokencut: feature %zu is not a finite number", i);
    int N = (int)n;
    const float *fn;
    if ((rc = lost_l2normalize(feats, N, dim, a, &fn, e)))
        return rc;
    /* S [n, n] float in the upper half of Md's storage (see build_graph) */
    double *Md = arena_alloc(a, sizeof(double) * n * n);
    float *S = Md ? (float *)Md + n * n : NULL;
    float *rowbuf = arena_alloc(a, sizeof(float) * n);
    double *d = arena_alloc(a, sizeof(double) * n);
    double *dis = arena_alloc(a, sizeof(double) * n);
    double *y = arena_alloc(a, sizeof(double) * n);
    r->mask = arena_alloc(a, n);
    r->eigvec = arena_alloc(a, sizeof(float) * n);
    unsigned char *on = arena_alloc(a, n);
    int *queue = arena_alloc(a, sizeof(int) * n);
    if (!S || !Md || !rowbuf || !d || !dis || !y || !r->mask || !r->eigvec || !on || !queue)
        return err_set(e, ERR_TOOBIG, "tokencut: no scratch for the graph of %d patches", N);
    /* S = F F^T, upper triangle, float32 as the authors' torch product. */
    if (p->gram) {
        if ((rc = p->gram(p->gram_ctx, fn, N, dim, S, e)))
            return rc;
    } else {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, N, dim, 1.0f, fn, dim, 0.0f, S, N);
    }
    build_graph(S, n, p, Md, d, dis, rowbuf);

    r->solver = TOKENCUT_LANCZOS;
    if (N < 3) {
        r->fallback = "fewer than 3 patches";
    } else if (p->dense) {
        r->fallback = "the dense solve was asked for";
    } else {
        const char *why = NULL;
        rc = solve_lanczos(Md, N, d, dis, y, &r->lambda, &r->iterations, &why, a, e);
        if (rc < 0)
            return rc;
        if (rc == 0)
            r->fallback = why;
    }
    if (r->fallback) {
        /* x straight from the generalised problem; y = D^1/2 x. */
        r->solver = TOKENCUT_DENSE;
        if (N == 1) {
            y[0] = 1;
            r->lambda = 0;
        } else if ((p->reserve && (rc = p->reserve(p->reserve_ctx, tokencut_dense_bytes(N), e))) ||
                   (rc = solve_dense(Md, N, d, dis, y, &r->lambda, a, e))) {
            return rc;
        }
        for (int i = 0; i < N; i++)
            y[i] /= dis[i];
    } else {
        /* The eigenvalue of (D - W, D) is 1 - that of M. */
        r->lambda = 1.0 - r->lambda;
    }

    /* x = D^-1/2 y (x^T D x = y^T y = 1); bipartition at the mean; the seed
     * is the largest |x| (first on ties) and is made foreground. */
    double mean = 0;
    for (int i = 0; i < N; i++)
        mean += dis[i] * y[i];
    mean /= N;
    /* The first index on ties (the spec's rule). Patches with identical
     * features have mathematically equal x; a solver's last bits must not
     * choose among them, so values within 1e-9 of the largest tie. (The
     * Lanczos answer is certified apart by far more than that, or the dense
     * solve ran.) */
    double best = 0;
    for (int i = 0; i < N; i++)
        best = fmax(best, fabs(dis[i] * y[i]));
    int seed = 0;
    for (int i = 0; i < N; i++)
        if (fabs(dis[i] * y[i]) >= best * (1 - 1e-9)) {
            seed = i;
            break;
        }
    int flip = !(dis[seed] * y[seed] > mean);
    for (int i = 0; i < N; i++) {
        double x = dis[i] * y[i];
        int b = x > mean;
        on[i] = (unsigned char)(flip ? !b : b);
        r->eigvec[i] = (float)(flip ? -x : x);
    }
    r->seed = seed;
    lost_seed_component(on, g->rows, g->cols, seed, queue, r->mask, r->box_feat);
    lost_feat_to_px(r->box_feat, g, 1, r->box);
    for (int i = 0; i < N; i++)
        r->n_cc += r->mask[i];
    return 0;
}

/* ---- several objects --------------------------------------------------------------- */

static double iou(const int a[4], const int b[4])
{
    double iw = fmin(a[2], b[2]) - fmax(a[0], b[0]), ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    if (iw <= 0 || ih <= 0)
        return 0;
    double inter = iw * ih;
    double ua = (double)(a[2] - a[0]) * (a[3] - a[1]) + (double)(b[2] - b[0]) * (b[3] - b[1]);
    return inter / (ua - inter);
}

int tokencut_find_boxes(const float *feats, int dim, const struct lost_grid *g,
                        const struct tokencut_params *p, int max_objects, struct arena *a,
                        int (*boxes)[4], int *n_out, const char **stop, struct err *e)
{
    *n_out = 0;
    *stop = "max_objects";
    size_t n;
    int rc = lost_check_grid(g, &n, e);
    if (rc)
        return rc;
    if (max_objects < 1)
        return err_set(e, ERR_INPUT, "tokencut: max_objects %d, at least 1", max_objects);
    int N = (int)n;
    unsigned char *taken = arena_calloc(a, n, 1);
    if (!taken)
        return err_set(e, ERR_TOOBIG, "tokencut: no scratch for %d patches", N);
    for (int k = 0; k < max_objects; k++) {
        size_t mark = arena_mark(a);
        /* The patches left: the cut runs on them alone (their features,
         * their own grid positions), the others are out of the graph. */
        int left = 0;
        for (int i = 0; i < N; i++)
            left += !taken[i];
        if (left < 2) {
            *stop = "empty";
            break;
        }
        float *f = arena_alloc(a, sizeof(float) * (size_t)left * dim);
        int *idx = arena_alloc(a, sizeof(int) * (size_t)left);
        if (!f || !idx)
            return err_set(e, ERR_TOOBIG, "tokencut: no scratch for object %d", k + 1);
        for (int i = 0, j = 0; i < N; i++)
            if (!taken[i]) {
                memcpy(f + (size_t)j * dim, feats + (size_t)i * dim, sizeof(float) * dim);
                idx[j++] = i;
            }
        /* The cut on the reduced graph, then its component on the full grid
         * among the patches left. */
        struct lost_grid line = {.rows = 1, .cols = left, .patch_y = 1, .patch_x = 1,
                                 .img_h = 1, .img_w = left};
        struct tokencut_result r;
        if ((rc = tokencut_find_box(f, dim, &line, p, a, &r, e)))
            return rc;
        unsigned char *on = arena_calloc(a, n, 1), *comp = arena_alloc(a, n);
        int *queue = arena_alloc(a, sizeof(int) * n);
        if (!on || !comp || !queue)
            return err_set(e, ERR_TOOBIG, "tokencut: no scratch for object %d", k + 1);
        double mean = 0;
        for (int j = 0; j < left; j++)
            mean += r.eigvec[j];
        mean /= left;
        for (int j = 0; j < left; j++)
            on[idx[j]] = r.eigvec[j] > mean;
        int bf[4], box[4];
        lost_seed_component(on, g->rows, g->cols, idx[r.seed], queue, comp, bf);
        lost_feat_to_px(bf, g, 1, box);
        int dup = 0;
        for (int j = 0; j < *n_out; j++) {
            const int *b = boxes[j];
            int inside = box[0] >= b[0] && box[1] >= b[1] && box[2] <= b[2] && box[3] <= b[3];
            dup |= inside || iou(box, b) > 0.5;
        }
        for (int i = 0; i < N; i++)
            taken[i] |= comp[i];
        arena_rewind(a, mark);
        if (dup) {
            *stop = "overlap";
            break;
        }
        memcpy(boxes[*n_out], box, sizeof box);
        (*n_out)++;
    }
    return 0;
}
