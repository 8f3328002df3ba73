/* lost_opts.h - private to server/: the LOST options every command takes
 * (--k-patches, --gram-bias, --features, --l2norm, --layer, --max-side,
 * --heads, --act), parsed in one place so the commands agree. */
#ifndef LOSTD_LOST_OPTS_H
#define LOSTD_LOST_OPTS_H

#include "pipeline.h"

/* If argv[*i] is one of the shared options, consumes it (and its value),
 * stores it in o / mo (--heads, --act) and returns 1; returns 0 if it is not
 * one of them, -1 after printing an error for a bad value. */
int lost_opts_parse(const char *cmd, int argc, char **argv, int *i, struct pipeline_opts *o,
                    struct model_opts *mo);

/* Help text for the shared options. */
extern const char lost_opts_help[];

#endif
