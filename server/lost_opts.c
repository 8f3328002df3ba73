/* lost_opts.c - parsing of the LOST options shared by discover, eval,
 * bench and serve, and the settings file of `lostd calibrate`. */
#include "lost_opts.h"
#include "cli.h"
#include "err.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char lost_opts_help[] =
    "LOST options:\n"
    "  --k-patches K    candidate patches for seed expansion (default 100)\n"
    "  --gram-bias B    added to every Gram-matrix entry (default 0)\n"
    "  --features F     k, q or v of the tapped block (default: the family's, k for DINOv2)\n"
    "  --l2norm         L2-normalise each patch feature before the Gram matrix\n"
    "  --layer L        block to tap, negative counts from the end (default -1, the last)\n"
    "  --max-side N     downscale images whose longer side exceeds N (default 0: never)\n"
    "  --heads N        attention heads when the checkpoint cannot tell (default dim/64)\n"
    "  --act A          OpenCLIP MLP activation, gelu or quickgelu (default: from an\n"
    "                   open_clip_config.json beside the weights, else gelu)\n"
    "  --dinoseg H      also the DINO-seg baseline (LOST paper) on attention head H of\n"
    "                   the last block; discover reports its box as \"dinoseg_box\",\n"
    "                   eval scores it instead of LOST's\n"
    "  --precision P    fp32 (default) or bf16: projections in bfloat16 on CPUs with\n"
    "                   AVX-512 BF16; faster, boxes may differ slightly\n"
    "  --lost-config F  LOST settings from a JSON file (e.g. from `lostd calibrate`);\n"
    "                   options given explicitly override it, wherever they appear\n";

int lost_opts_parse(const char *cmd, int argc, char **argv, int *i, struct pipeline_opts *o,
                    struct model_opts *mo)
{
    const char *a = argv[*i];
    if (!strcmp(a, "--l2norm")) {
        o->lost.l2norm = 1;
        o->given |= LOST_OPTS_GIVEN_L2NORM;
        return 1;
    }
    static const char *with_value[] = {"--k-patches", "--gram-bias", "--features", "--layer",
                                       "--max-side", "--heads", "--act", "--lost-config",
                                       "--precision", "--dinoseg"};
    int known = 0;
    for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
        known |= !strcmp(a, with_value[k]);
    if (!known)
        return 0;
    if (*i + 1 >= argc) {
        cli_fail(2, cmd, "%s needs a value", a);
        return -1;
    }
    const char *v = argv[++*i];
    long n;
    double d;
    if (!strcmp(a, "--k-patches")) {
        if (cli_parse_int(cmd, a, v, 1, 1 << 24, &n))
            return -1;
        o->lost.k_patches = (int)n;
        o->given |= LOST_OPTS_GIVEN_K;
    } else if (!strcmp(a, "--gram-bias")) {
        if (cli_parse_float(cmd, a, v, &d))
            return -1;
        o->lost.gram_bias = (float)d;
        o->given |= LOST_OPTS_GIVEN_BIAS;
    } else if (!strcmp(a, "--features")) {
        o->feature = model_feature_parse(v);
        if (o->feature < 0) {
            cli_fail(2, cmd, "--features expects k, q or v, got '%s'", v);
            return -1;
        }
        o->given |= LOST_OPTS_GIVEN_FEATURE;
    } else if (!strcmp(a, "--layer")) {
        if (cli_parse_int(cmd, a, v, -1000, 999, &n))
            return -1;
        o->layer = (int)n;
        o->given |= LOST_OPTS_GIVEN_LAYER;
    } else if (!strcmp(a, "--max-side")) {
        if (cli_parse_int(cmd, a, v, 0, 16384, &n))
            return -1;
        o->max_side = (int)n;
        o->given |= LOST_OPTS_GIVEN_MAX_SIDE;
    } else if (!strcmp(a, "--heads")) {
        if (cli_parse_int(cmd, a, v, 1, 4096, &n))
            return -1;
        mo->n_head = (int)n;
    } else if (!strcmp(a, "--act")) {
        if (!strcmp(v, "gelu"))
            mo->act = MODEL_ACT_GELU;
        else if (!strcmp(v, "quickgelu") || !strcmp(v, "quick_gelu"))
            mo->act = MODEL_ACT_QUICKGELU;
        else {
            cli_fail(2, cmd, "--act expects gelu or quickgelu, got '%s'", v);
            return -1;
        }
    } else if (!strcmp(a, "--dinoseg")) {
        if (cli_parse_int(cmd, a, v, 0, 4095, &n))
            return -1;
        o->dinoseg = 1;
        o->dinoseg_head = (int)n;
    } else if (!strcmp(a, "--precision")) {
        if ((mo->precision = model_precision_parse(v)) < 0) {
            cli_fail(2, cmd, "--precision expects fp32 or bf16, got '%s'", v);
            return -1;
        }
    } else if (!strcmp(a, "--lost-config")) {
        struct err e = {0};
        if (lost_opts_read_config(v, o, &e)) {
            cli_fail(2, cmd, "--lost-config: %s", e.msg);
            return -1;
        }
    }
    return 1;
}

int lost_opts_read_config(const char *path, struct pipeline_opts *o, struct err *e)
{
    json_error_t je;
    FILE *f = fopen(path, "r");
    if (!f)
        return err_set(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: %s", path,
                       strerror(errno));
    json_t *j = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    int io = ferror(f);
    fclose(f);
    if (io) {
        json_decref(j);
        return err_set(e, ERR_IO, "%s: read error", path);
    }
    if (!j)
        return err_set(e, ERR_INPUT, "%s:%d: %s", path, je.line, je.text);
    /* Validate everything first, then apply: a bad file changes nothing. */
    struct pipeline_opts t = *o;
    int rc = 0;
    json_t *v;
    if (!json_is_object(j))
        rc = err_set(e, ERR_INPUT, "%s: expected a JSON object", path);
    if (!rc && (v = json_object_get(j, "k_patches"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > (1 << 24))
            rc = err_set(e, ERR_INPUT, "%s: k_patches must be an integer 1..%d", path, 1 << 24);
        else if (!(o->given & LOST_OPTS_GIVEN_K))
            t.lost.k_patches = (int)json_integer_value(v);
    }
    if (!rc && (v = json_object_get(j, "gram_bias"))) {
        if (!json_is_number(v) || !isfinite(json_number_value(v)))
            rc = err_set(e, ERR_INPUT, "%s: gram_bias must be a finite number", path);
        else if (!(o->given & LOST_OPTS_GIVEN_BIAS))
            t.lost.gram_bias = (float)json_number_value(v);
    }
    if (!rc && (v = json_object_get(j, "features"))) {
        int feat = json_is_string(v) ? model_feature_parse(json_string_value(v)) : -1;
        if (feat < 0)
            rc = err_set(e, ERR_INPUT, "%s: features must be \"k\", \"q\" or \"v\"", path);
        else if (!(o->given & LOST_OPTS_GIVEN_FEATURE))
            t.feature = feat;
    }
    if (!rc && (v = json_object_get(j, "l2norm"))) {
        if (!json_is_boolean(v))
            rc = err_set(e, ERR_INPUT, "%s: l2norm must be true or false", path);
        else if (!(o->given & LOST_OPTS_GIVEN_L2NORM))
            t.lost.l2norm = json_is_true(v);
    }
    if (!rc && (v = json_object_get(j, "layer"))) {
        if (!json_is_integer(v) || json_integer_value(v) < -1000 || json_integer_value(v) > 999)
            rc = err_set(e, ERR_INPUT, "%s: layer must be an integer -1000..999", path);
        else if (!(o->given & LOST_OPTS_GIVEN_LAYER))
            t.layer = (int)json_integer_value(v);
    }
    if (!rc && (v = json_object_get(j, "max_side"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 16384)
            rc = err_set(e, ERR_INPUT, "%s: max_side must be an integer 0..16384", path);
        else if (!(o->given & LOST_OPTS_GIVEN_MAX_SIDE))
            t.max_side = (int)json_integer_value(v);
    }
    json_decref(j);
    if (!rc)
        *o = t;
    return rc;
}

/* The shortest decimal that reads back as the same float, so a bias of
 * -0.2 is written as -0.2, not -0.200000003. */
static double short_real(float x)
{
    char buf[64];
    for (int prec = 6; prec < 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        if ((float)strtod(buf, NULL) == x)
            return strtod(buf, NULL);
    }
    return x;
}

json_t *lost_opts_config_json(const struct pipeline_opts *o)
{
    json_t *j = json_object();
    json_object_set_new(j, "k_patches", json_integer(o->lost.k_patches));
    json_object_set_new(j, "gram_bias", json_real(short_real(o->lost.gram_bias)));
    if (o->feature >= 0)
        json_object_set_new(j, "features", json_string(model_feature_name(o->feature)));
    json_object_set_new(j, "l2norm", json_boolean(o->lost.l2norm));
    json_object_set_new(j, "layer", json_integer(o->layer));
    if (o->max_side > 0)
        json_object_set_new(j, "max_side", json_integer(o->max_side));
    return j;
}

int lost_opts_write_json(const char *path, json_t *j, struct err *e)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return err_set(e, ERR_IO, "%s: path too long", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return err_set(e, ERR_IO, "%s: %s", tmp, strerror(errno));
    int bad = json_dumpf(j, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    bad |= fputc('\n', f) == EOF;
    bad |= fflush(f) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        int err = errno;
        remove(tmp);
        return err_set(e, ERR_IO, "%s: cannot write: %s", path, strerror(err));
    }
    return 0;
}
