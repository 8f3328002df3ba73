/* params.h - private to server/: the one table of discovery parameters.
 * Each row is one parameter with its every spelling (command-line flag,
 * environment twin, settings-file / HTTP key), its type, its bounds, its
 * default and its help line. The command-line parser (lost_opts.c, and
 * `lostd serve` through config.c), the --lost-config settings files and the
 * HTTP parameters (query string, form fields, JSON body) all parse through
 * it, so a value is accepted or refused the same way, with the same message,
 * whichever way it came in; --help and the OpenAPI document are generated
 * from it. A new parameter is one row. Never prints. */
#ifndef LOSTD_PARAMS_H
#define LOSTD_PARAMS_H

#include <jansson.h>
#include <stddef.h>

#include "pipeline.h"

struct err;

enum param_type { PARAM_INT, PARAM_REAL, PARAM_BOOL, PARAM_ENUM };

/* Where a row may be given. */
enum {
    PARAM_CLI = 1u << 0,    /* a flag of discover, eval, bench, calibrate, serve, lost */
    PARAM_FILE = 1u << 1,   /* a key of a --lost-config settings file */
    PARAM_HTTP = 1u << 2,   /* a parameter of POST /discover (and /analyze) */
    PARAM_MAP = 1u << 3     /* applies to a feature map alone (`lostd lost`) */
};

/* Request-level settings of the HTTP API (not part of a pipeline run). */
enum param_format { PARAM_FORMAT_JSON = 0, PARAM_FORMAT_HF, PARAM_FORMAT_COCO };
struct param_request {
    int format;             /* enum param_format */
    long long image_id;     /* format=coco */
    int debug;              /* add the per-patch maps */
    float threshold;        /* POST /analyze: fixed outlier threshold, 0 = automatic */
};

struct param_def {
    const char *name;       /* settings-file and HTTP key, e.g. "k_patches" */
    const char *flag;       /* "--k-patches" (NULL: not on the command line); for a
                               bool, the flag alone sets it true */
    const char *neg_flag;   /* bool only: the flag that sets it false, or NULL */
    enum param_type type;
    double lo, hi;          /* INT / REAL bounds */
    int lo_open, hi_open;   /* REAL: the bound itself is excluded */
    const char *const *values; /* ENUM: the accepted words, NULL-terminated; the value
                                  stored is the word's index */
    unsigned where;         /* PARAM_CLI | PARAM_FILE | PARAM_HTTP */
    int request;            /* 1: a field of struct param_request, else of pipeline_opts */
    size_t off;             /* offset of the field */
    size_t size;            /* its size: int or long long (INT), float or double (REAL),
                               int (BOOL, ENUM) */
    unsigned given;         /* LOST_OPTS_GIVEN_* bit set when the value is given, or 0 */
    const char *def;        /* the default, as shown by --help and OpenAPI */
    const char *help;
};

extern const struct param_def params_table[];
extern const int params_count;

/* The row with this key, or NULL. */
const struct param_def *params_find(const char *name);

/* The row with this command-line flag (or its negative flag: *value then
 * "0"; the positive flag of a bool: "1"; else NULL, a value must follow), or
 * NULL. */
const struct param_def *params_find_flag(const char *flag, const char **value);

/* Parses the text v for row d and stores it in o (or rq for request rows;
 * either may be NULL when the row does not go there), setting the row's
 * given bit in o->given. Text is what a flag, query string or form field
 * carries; JSON values come through params_json_text. ERR_INPUT with the
 * row's one message: "k_patches must be an integer in 1..1000000, got 'x'". */
int params_set(const struct param_def *d, const char *v, struct pipeline_opts *o,
               struct param_request *rq, struct err *e);

/* A JSON scalar as the text params_set reads (integers as such, reals with
 * 17 digits, true/false as 1/0, strings as they are). Returns 0, or -1 for a
 * non-scalar or a string of n bytes or more. */
int params_json_text(const json_t *v, char *buf, size_t n);

/* The request defaults: format json, image_id 0, no debug, threshold 0. */
void params_request_default(struct param_request *rq);

/* Help lines of the rows given `where`, one a flag. Cannot fail. */
void params_help(unsigned where, char *buf, size_t n);

/* The OpenAPI "parameters" array of the HTTP rows (in: query). New
 * reference; NULL when out of memory. */
json_t *params_openapi(void);

/* The value of row d in o / rq as JSON (for replies and settings files). */
json_t *params_value_json(const struct param_def *d, const struct pipeline_opts *o,
                          const struct param_request *rq);

#endif
