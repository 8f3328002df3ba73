/* lost_opts.c - the command-line options shared by discover, eval, bench,
 * calibrate and analyze (the discovery parameters through the table of
 * params.c, plus the backbone's --heads, --act, --precision, --dinoseg and
 * --lost-config), and the settings file of `lostd calibrate`. */
#include "lost_opts.h"
#include "cli.h"
#include "err.h"
#include "file.h"
#include "params.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Options of the run that are not discovery parameters (the table's rows
 * come first in --help). */
static const char other_help[] =
    "  --heads N              attention heads when the checkpoint cannot tell (default\n"
    "                         dim/64)\n"
    "  --act A                OpenCLIP MLP activation, gelu or quickgelu (default: from an\n"
    "                         open_clip_config.json beside the weights, else gelu)\n"
    "  --dinoseg H            also the DINO-seg baseline (LOST paper) on attention head H\n"
    "                         of the last block; discover reports its box as\n"
    "                         \"dinoseg_box\", eval scores it instead of LOST's\n"
    "  --precision P          fp32 (default) or bf16: projections in bfloat16 on CPUs with\n"
    "                         AVX-512 BF16; faster, boxes may differ slightly\n"
    "  --lost-config F        settings from a JSON file (e.g. from `lostd calibrate`);\n"
    "                         options given explicitly override it, wherever they appear\n";

const char *lost_opts_help(void)
{
    static char buf[8192];
    static int done;
    if (!done) { /* filled on first use; the commands are single-threaded then */
        char rows[6144];
        params_help(PARAM_CLI, rows, sizeof rows);
        snprintf(buf, sizeof buf, "Discovery options:\n%s%s", rows, other_help);
        done = 1;
    }
    return buf;
}

int lost_opts_parse_exif(const char *cmd, const char *v, int *exif)
{
    struct pipeline_opts o;
    pipeline_opts_default(&o);
    struct err e = {0};
    if (params_set(params_find("exif"), v, &o, NULL, &e)) {
        cli_fail(2, cmd, "--exif: %s", e.msg);
        return -1;
    }
    *exif = o.exif;
    return 0;
}

int lost_opts_parse(const char *cmd, int argc, char **argv, int *i, struct pipeline_opts *o,
                    struct model_opts *mo)
{
    const char *a = argv[*i];
    const char *v;
    const struct param_def *d = params_find_flag(a, &v);
    if (d) {
        if (!v) {
            if (*i + 1 >= argc) {
                cli_fail(2, cmd, "%s needs a value", a);
                return -1;
            }
            v = argv[++*i];
        }
        struct err e = {0};
        if (params_set(d, v, o, NULL, &e)) {
            cli_fail(2, cmd, "%s: %s", a, e.msg);
            return -1;
        }
        return 1;
    }
    static const char *with_value[] = {"--heads", "--act", "--lost-config", "--precision",
                                       "--dinoseg"};
    int known = 0;
    for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
        known |= !strcmp(a, with_value[k]);
    if (!known)
        return 0;
    if (*i + 1 >= argc) {
        cli_fail(2, cmd, "%s needs a value", a);
        return -1;
    }
    v = argv[++*i];
    long n;
    if (!strcmp(a, "--heads")) {
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
    /* Validate everything first, then apply: a bad file changes nothing.
     * Every key goes through the parameter table, as a flag or an HTTP
     * parameter would; keys the table does not know (calibrate's "corloc",
     * "model", ...) are ignored. */
    struct pipeline_opts t = *o;
    int rc = 0;
    if (!json_is_object(j))
        rc = err_set(e, ERR_INPUT, "%s: expected a JSON object", path);
    for (int i = 0; !rc && i < params_count; i++) {
        const struct param_def *d = &params_table[i];
        json_t *v = json_object_get(j, d->name);
        char text[64];
        if (!(d->where & PARAM_FILE) || !v || json_is_null(v))
            continue;
        if (params_json_text(v, text, sizeof text)) {
            rc = err_set(e, ERR_INPUT, "%s: %s must be a number, a boolean or a short string",
                         path, d->name);
            break;
        }
        /* Options given on the command line win: the file's value is only
         * checked then. */
        int keep = (o->given & d->given) != 0;
        unsigned given = t.given;
        if ((rc = params_set(d, text, keep ? NULL : &t, NULL, e)))
            err_prefix(e, "%s", path);
        t.given = given;
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
    for (int i = 0; i < params_count; i++) {
        const struct param_def *d = &params_table[i];
        if (!(d->where & PARAM_FILE))
            continue;
        /* The family's feature and "never downscale" are left out. */
        if ((!strcmp(d->name, "features") && o->feature < 0) ||
            (!strcmp(d->name, "max_side") && o->max_side <= 0))
            continue;
        json_t *v = params_value_json(d, o, NULL);
        if (json_is_real(v)) { /* -0.2, not -0.200000003 */
            json_t *s = json_real(short_real((float)json_real_value(v)));
            json_decref(v);
            v = s;
        }
        json_object_set_new(j, d->name, v);
    }
    return j;
}

int lost_opts_write_json(const char *path, json_t *j, struct err *e)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    if (!text)
        return err_set(e, ERR_NOMEM, "%s: out of memory", path);
    struct file_out f;
    int rc = file_out_open(&f, path, e);
    if (!rc)
        rc = file_out_printf(&f, e, "%s\n", text);
    if (!rc)
        rc = file_out_commit(&f, e);
    free(text);
    return rc;
}
