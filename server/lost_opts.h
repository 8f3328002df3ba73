/* lost_opts.h - private to server/: the LOST options every command takes
 * (--k-patches, --gram-bias, --features, --l2norm, --layer, --max-side,
 * --heads, --act, --lost-config), parsed in one place so the commands agree;
 * and the LOST settings file that `lostd calibrate` writes. */
#ifndef LOSTD_LOST_OPTS_H
#define LOSTD_LOST_OPTS_H

#include "pipeline.h"

#include <jansson.h>

/* Bits of pipeline_opts.given: set by lost_opts_parse for each option given
 * explicitly, so a --lost-config file (wherever it appears on the command
 * line) only fills in the others. */
enum {
    LOST_OPTS_GIVEN_K = 1u << 0,
    LOST_OPTS_GIVEN_BIAS = 1u << 1,
    LOST_OPTS_GIVEN_FEATURE = 1u << 2,
    LOST_OPTS_GIVEN_L2NORM = 1u << 3,
    LOST_OPTS_GIVEN_LAYER = 1u << 4,
    LOST_OPTS_GIVEN_MAX_SIDE = 1u << 5,
    LOST_OPTS_GIVEN_METHOD = 1u << 6,
    LOST_OPTS_GIVEN_TAU = 1u << 7,
    LOST_OPTS_GIVEN_EPS = 1u << 8,
    LOST_OPTS_GIVEN_BINARY = 1u << 9
};

/* If argv[*i] is one of the shared options, consumes it (and its value),
 * stores it in o / mo (--heads, --act) and returns 1; returns 0 if it is not
 * one of them, -1 after printing an error for a bad value. */
int lost_opts_parse(const char *cmd, int argc, char **argv, int *i, struct pipeline_opts *o,
                    struct model_opts *mo);

/* The value of --exif (the parameter table's row, its message) for the
 * commands that take no other discovery option (analyze, features): stores
 * enum image_exif in *exif and returns 0, or prints the error and returns
 * -1. */
int lost_opts_parse_exif(const char *cmd, const char *v, int *exif);

/* The settings file (JSON object):
 *   {"k_patches": 100, "gram_bias": -0.2, "features": "k", "l2norm": true,
 *    "layer": -1, "max_side": 0, ...}
 * Every key is optional; other keys (calibrate's "corloc", "model", ...) are
 * ignored. lost_opts_read_config sets in o each key present whose
 * LOST_OPTS_GIVEN_* bit is not in o->given. Returns 0, or ERR_NOTFOUND /
 * ERR_IO (cannot read) / ERR_INPUT (not JSON, a wrong type or value; the
 * message names the key). */
int lost_opts_read_config(const char *path, struct pipeline_opts *o, struct err *e);

/* The settings of o as a new JSON object with the keys above ("features"
 * only when o->feature >= 0, "max_side" only when > 0). Caller decrefs. */
json_t *lost_opts_config_json(const struct pipeline_opts *o);

/* Writes j (pretty, key order kept) to path through path.tmp + rename, so a
 * reader never sees half a file. Returns 0 or ERR_IO. */
int lost_opts_write_json(const char *path, json_t *j, struct err *e);

/* Help text for the shared options (generated from the parameter table).
 * Static storage. */
const char *lost_opts_help(void);

#endif
