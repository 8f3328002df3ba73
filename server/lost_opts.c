/* lost_opts.c - parsing of the LOST options shared by discover, eval,
 * bench and serve. */
#include "lost_opts.h"
#include "cli.h"

#include <math.h>
#include <stdio.h>
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
    "                   open_clip_config.json beside the weights, else gelu)\n";

int lost_opts_parse(const char *cmd, int argc, char **argv, int *i, struct pipeline_opts *o,
                    struct model_opts *mo)
{
    const char *a = argv[*i];
    if (!strcmp(a, "--l2norm")) {
        o->lost.l2norm = 1;
        return 1;
    }
    static const char *with_value[] = {"--k-patches", "--gram-bias", "--features", "--layer",
                                       "--max-side", "--heads", "--act"};
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
    } else if (!strcmp(a, "--gram-bias")) {
        if (cli_parse_float(cmd, a, v, &d))
            return -1;
        o->lost.gram_bias = (float)d;
    } else if (!strcmp(a, "--features")) {
        o->feature = model_feature_parse(v);
        if (o->feature < 0) {
            cli_fail(2, cmd, "--features expects k, q or v, got '%s'", v);
            return -1;
        }
    } else if (!strcmp(a, "--layer")) {
        if (cli_parse_int(cmd, a, v, -1000, 999, &n))
            return -1;
        o->layer = (int)n;
    } else if (!strcmp(a, "--max-side")) {
        if (cli_parse_int(cmd, a, v, 0, 16384, &n))
            return -1;
        o->max_side = (int)n;
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
    }
    return 1;
}
