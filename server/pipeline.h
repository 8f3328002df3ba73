/* pipeline.h - private to server/: the whole path from image bytes to one
 * box, shared by `discover`, `eval`, `serve` and `bench` so they cannot
 * drift apart. Wiring only: decode (core/image), preprocess, forward
 * (core/vit), LOST (lost/). Per-call memory comes from the caller's arena and
 * workspace; the model is only read. Thread-safe with one workspace and one
 * arena per thread. Never prints. */
#ifndef LOSTD_PIPELINE_H
#define LOSTD_PIPELINE_H

#include <stddef.h>

#include "image.h"
#include "lost.h"
#include "tokencut.h"
#include "model.h"

struct arena;
struct budget;
struct err;
struct vit_work;

/* The discovery method run on the features. */
enum pipeline_method { PIPELINE_LOST = 0, PIPELINE_TOKENCUT };

struct pipeline_opts {
    int method;             /* enum pipeline_method */
    struct lost_params lost;
    struct tokencut_params tc; /* method TOKENCUT: tau, eps, binary graph */
    int feature;            /* enum model_feature; -1 = the family's default */
    int layer;              /* block to tap, < 0 from the end (-1 = last) */
    int max_side;           /* downscale so max(w, h) <= max_side before the forward;
                               0 = never. Boxes are still in original pixels. */
    long max_pixels;        /* decode limit on w * h (<= 0: IMAGE_DEFAULT_MAX_PIXELS) */
    int debug;              /* also run every block for the output-token norms */
    int max_objects;        /* > 1: multi-object discovery too (lost_find_boxes, default
                               stopping rule), boxes in r->multi; 0 or 1: LOST only */
    unsigned given;         /* LOST_OPTS_GIVEN_* bits: options set explicitly on the
                               command line, which a --lost-config file must not override */
    int dinoseg;            /* nonzero: also the DINO-seg baseline (lost_dinoseg) on head
                               dinoseg_head of the last block's CLS attention */
    int dinoseg_head;
    int exif;               /* enum image_exif for pipeline_run_bytes (default: apply) */
    double deadline_ms;     /* > 0: clock_now_ms() time by which decoding must be done */
    const _Atomic int *cancel; /* non-NULL: the decode and the forward stop with
                                  ERR_CANCELLED once it reads nonzero */
    struct budget *scratch;  /* non-NULL: the large buffers of a run (the decoder's memory,
                                image_probe's decoder_bytes; the Gram matrix) are taken from
                                this budget shared by all workers first, waiting up to the
                                deadline; one larger than its whole cap is ERR_TOOBIG */
};

/* Defaults: LOST defaults, family feature, last layer, no downscale. */
void pipeline_opts_default(struct pipeline_opts *o);

struct pipeline_result {
    int method;                 /* enum pipeline_method that ran */
    struct lost_result lost;    /* box in pixels of the ORIGINAL image (both methods:
                                   TokenCut fills box, box_feat, seed and mask) */
    struct tokencut_result tc;  /* method TOKENCUT: eigenvector, component size,
                                   eigenvalue, solver */
    struct lost_multi_result multi; /* max_objects > 1: every box, ORIGINAL pixels;
                                       multi.n == 0 otherwise */
    int img_w, img_h;           /* original (after EXIF orientation) */
    int run_w, run_h;           /* size the model saw, before padding */
    int grid_h, grid_w, patch;
    int feature;                /* enum model_feature used */
    int layer;                  /* 0-based block tapped */
    float scale_x, scale_y;     /* original pixels per model pixel (1 without downscale) */
    float *token_norms;         /* debug: [grid_h * grid_w] L2 norm of each output patch
                                   token; from the arena */
    float *register_norms;      /* debug: [n_reg] */
    int dinoseg;                /* 1 when dinoseg_box holds the DINO-seg baseline's box */
    int dinoseg_box[4];         /* ORIGINAL pixels, not clipped (as upstream) */
    int n_reg;
    double ms_decode, ms_preprocess, ms_forward, ms_lost;
};

/* The same for TokenCut: its similarity matrix and graph. */
long long pipeline_tokencut_bytes(long n_patch);

/* The larger of LOST's (one object) and TokenCut's graph-phase scratch at
 * n_patch patches: what a request of either method may take of the budget
 * before TokenCut's dense fallback. */
long long pipeline_discovery_bytes(long n_patch);

/* Worst-case bytes one request holds outside the budgets and the worker's
 * workspace, for images fitted to max_side (README "Security and limits"). */
long long pipeline_request_bound(const struct model *m, int max_side);

/* Bytes of LOST's Gram matrix (and what goes with it) for n_patch patches:
 * what a run takes from pipeline_opts.scratch around LOST. */
long long pipeline_gram_bytes(long n_patch, int max_objects);

/* The online CPUs (at least 1): the default thread count of a forward. */
int pipeline_threads_default(void);

/* Makes *w (NULL or a workspace) big enough for an img_w x img_h image
 * fitted to max_side (0: not fitted), replacing it when smaller, with a team
 * of `threads` threads (<= 0: pipeline_threads_default) — the one place the
 * CLI commands size a workspace and set the thread policy. Returns 0 or
 * vit_work_init's error (then *w is NULL). */
int pipeline_workspace_ensure(const struct model *m, struct vit_work **w, int img_w, int img_h,
                              int max_side, int threads, struct err *e);

/* Workspace size that covers images whose longest side the forward sees is
 * at most max_side pixels (after any downscale). */
int pipeline_max_patches(const struct model *m, int max_side);
/* The VIT_WANT_* bit of the feature the graph is built from (o->feature, or
 * the family's default): the one third of the tapped q/k/v the forward
 * computes. */
unsigned pipeline_feature_want(const struct model *m, const struct pipeline_opts *o);

/* Bytes (JPEG or PNG) to box. ERR_INPUT / ERR_TOOBIG / ERR_UNSUPPORTED from
 * decoding, ERR_TOOBIG when the image needs more patches than the workspace
 * holds (use max_side), ERR_INPUT for bad options, ERR_BUSY when the decode
 * budget or the deadline ran out. Decodes straight to max_side (JPEG DCT
 * scaling, see image_decode_opts.fit_side): with max_side 0 the pixels are a
 * full decode's, exactly. r is zeroed first, so its timings are defined
 * whatever fails. */
int pipeline_run_bytes(const struct model *m, struct vit_work *w, struct arena *a,
                       const unsigned char *buf, size_t n, const struct pipeline_opts *o,
                       struct pipeline_result *r, struct err *e);

/* The decode step of pipeline_run_bytes, for callers that run something
 * else on the pixels (POST /analyze): o->max_pixels, exif, max_side (the
 * fit), deadline_ms and scratch apply. out: the fitted, upright pixels from
 * a; info->up_w x up_h: the full image's size. */
int pipeline_decode(const unsigned char *buf, size_t n, const struct pipeline_opts *o,
                    struct arena *a, struct image *out, struct image_info *info,
                    struct err *e);

/* Same from decoded pixels (img->px need not come from a). */
int pipeline_run_image(const struct model *m, struct vit_work *w, struct arena *a,
                       const struct image *img, const struct pipeline_opts *o,
                       struct pipeline_result *r, struct err *e);

#endif
