/* discover_json.h - private to server/: the one serialiser of a discovery
 * result, beside analyze_json.h. Two schemas, kept as they are (other tools
 * read them): the daemon's reply to POST /discover (objects, image, seed,
 * grid, parameters, timings_ms, and with format=hf / coco the Hugging Face
 * list or COCO result entries) and the line `lostd discover` prints per
 * image (box, box_feat, seed, ...). Never prints. */
#ifndef LOSTD_DISCOVER_JSON_H
#define LOSTD_DISCOVER_JSON_H

#include <jansson.h>

#include "params.h"
#include "pipeline.h"

enum discover_json_schema { DISCOVER_JSON_API = 0, DISCOVER_JSON_CLI };

struct discover_json_opts {
    enum discover_json_schema schema;
    const char *image;                  /* CLI: the image path */
    const struct pipeline_opts *opts;   /* API: the settings the run used */
    const struct param_request *rq;     /* API: format, image_id, debug */
    const char *model_id;               /* API */
    double ms_queue;                    /* API: time the job waited for a worker */
};

/* A new JSON value for r (an object; an array for the hf and coco formats).
 * Reads r's debug maps, so call it while they live. NULL when out of
 * memory. */
json_t *discover_json(const struct pipeline_result *r, const struct discover_json_opts *o);

#endif
