/* analyze_json.h - private to server/: one image through the backbone and
 * the artifact analysis (lost/analyze), as the JSON object `lostd analyze`
 * prints per line and `POST /analyze` answers with. Wiring only: decode,
 * preprocess (core/image), one forward with the output tokens, the last
 * block's CLS/register attention and the patch embeddings (core/vit),
 * analyze_tokens (lost/). Per-call memory from the caller's arena and
 * workspace; the model is only read. Thread-safe with one workspace and one
 * arena per thread. Never prints. */
#ifndef LOSTD_ANALYZE_JSON_H
#define LOSTD_ANALYZE_JSON_H

#include "analyze.h"

#include <jansson.h>
#include <stddef.h>

struct budget;

struct arena;
struct err;
struct image;
struct model;
struct vit_work;

struct analyze_json_opts {
    float threshold;    /* > 0: fixed outlier threshold on the norm; else automatic */
    int max_side;       /* downscale so max(w, h) <= max_side first; 0 = never */
    long max_pixels;    /* decode limit for analyze_json_bytes (<= 0: the default) */
    double deadline_ms; /* analyze_json_bytes: as pipeline_opts.deadline_ms */
    struct budget *scratch; /* analyze_json_bytes: as pipeline_opts.scratch */
    const _Atomic int *cancel; /* as pipeline_opts.cancel (decode and forward) */
};

/* Everything one analysis produced, for callers that draw heat maps. */
struct analyze_run {
    struct analyze_result res;  /* arrays from the arena */
    int img_w, img_h;           /* original image */
    int run_w, run_h;           /* what the model saw, before padding */
    int patch;
    double ms_forward, ms_analyze;
};

/* Decoded pixels to the JSON object (caller decrefs *out) and *run.
 * Keys: width, height, grid [h, w], patch, model_input [h, w] (only when
 * downscaled), n_reg, cls_norm, register_norms [R], patch_norms [N]
 * (row-major), norm_stats {min, median, max}, outliers {method "fixed" |
 * "otsu", threshold, bimodal, ratio, separation (otsu only), count,
 * fraction, positions [[row, col], ...], registers_above}, neighbor_similarity
 * [N], neighbor_similarity_mean {outliers, others} (null when empty),
 * attention {cls [N], registers [[N] x R], patch_mass {cls, registers [R]}},
 * timings_ms {forward, analyze}. Errors: ERR_TOOBIG (more patches than the
 * workspace holds, arena exhausted), ERR_INPUT. */
int analyze_json_image(const struct model *m, struct vit_work *w, struct arena *a,
                       const struct image *img, const struct analyze_json_opts *o,
                       struct analyze_run *run, json_t **out, struct err *e);

/* Same from JPEG / PNG bytes (as POST /analyze receives them); adds
 * timings_ms.decode. Decode errors as image_decode. */
int analyze_json_bytes(const struct model *m, struct vit_work *w, struct arena *a,
                       const unsigned char *buf, size_t n, const struct analyze_json_opts *o,
                       json_t **out, struct err *e);

#endif
