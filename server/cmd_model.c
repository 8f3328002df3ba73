/* cmd_model.c - `lostd model init|info`: make random full-size checkpoints
 * and describe what a checkpoint file holds. */
#include "cli.h"
#include "err.h"
#include "model.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: lostd model init --arch ARCH [--seed N] --out FILE\n"
    "       lostd model info FILE [--heads N]\n"
    "\n"
    "init writes a full-size model with random weights in the official naming\n"
    "(ARCH: vits14, vitb14, vitl14, vitg14, each also _reg; e.g. vits14_reg).\n"
    "info prints the configuration lostd infers from a checkpoint, as JSON.\n";

static int init(int argc, char **argv)
{
    const char *arch = NULL, *out = NULL;
    long seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return cli_fail(2, "model init", "%s needs a value", a);
        i++;
        if (!strcmp(a, "--arch"))
            arch = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--seed")) {
            if (cli_parse_int("model init", a, v, 0, 1L << 62, &seed))
                return 2;
        } else
            return cli_fail(2, "model init", "unknown option '%s'", a);
    }
    if (!arch || !out)
        return cli_fail(2, "model init", "needs --arch and --out");
    struct err e = {0};
    if (model_init_random(arch, (unsigned long long)seed, out, &e))
        return cli_fail(e.code == ERR_INPUT ? 2 : 1, "model init", "%s", e.msg);
    fprintf(stderr, "lostd model init: wrote %s (%s, seed %ld)\n", out, arch, seed);
    return 0;
}

static int info(int argc, char **argv)
{
    const char *path = NULL;
    long heads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--heads") && i + 1 < argc) {
            if (cli_parse_int("model info", "--heads", argv[++i], 1, 4096, &heads))
                return 2;
        } else if (!path && argv[i][0] != '-')
            path = argv[i];
        else
            return cli_fail(2, "model info", "unknown option '%s'", argv[i]);
    }
    if (!path)
        return cli_fail(2, "model info", "needs a checkpoint file");
    struct err e = {0};
    struct model *m = NULL;
    struct model_opts mo = {.n_head = (int)heads, .act = -1};
    if (model_load(path, &mo, &m, &e))
        return cli_fail(1, "model info", "%s", e.msg);
    const struct model_config *c = model_config(m);
    json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:i, s:I, s:s}",
                          "arch", c->arch, "family", model_family_name(c->family), "naming",
                          model_naming_name(c->naming), "dim", c->dim, "depth", c->depth,
                          "heads", c->n_head, "registers", c->n_reg, "patch", c->patch,
                          "pos_grid", c->pos_grid, "ffn", model_ffn_name(c->ffn),
                          "ffn_hidden", c->ffn_hidden, "params", (json_int_t)model_n_params(m),
                          "lost_feature", model_feature_name(c->lost_feature));
    json_dumpf(j, stdout, JSON_PRESERVE_ORDER);
    putchar('\n');
    json_decref(j);
    model_free(m);
    return 0;
}

int cli_model(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "init"))
        return init(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info"))
        return info(argc - 1, argv + 1);
    return cli_fail(2, "model", "unknown subcommand '%s' (init, info)", argv[1]);
}
