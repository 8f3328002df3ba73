/* main.c - the lostd entry point: process-wide setup, then one subcommand.
 * Owns nothing else; every command lives in its own server/cmd_*.c. */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "version.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    {"features", cli_features, "run the backbone on one image, write q/k/v and tokens as .npy"},
    {"model", cli_model, "model tools: `model init` (random weights), `model info`"},
    {"lost", cli_lost, "run LOST on a feature array (.npy)"},
    {"discover", cli_discover, "find the main object in images, one JSON line each"},
    {"eval", cli_eval, "CorLoc over VOC07 / VOC12 / COCO20k"},
    {"serve", cli_serve, "the HTTP daemon"},
    {"bench", cli_bench, "time the pipeline stages"},
    {"analyze", cli_analyze, "high-norm artifact tokens, register and CLS attention maps"},
    {"calibrate", cli_calibrate, "sweep LOST settings on a dataset subset, write the best"},
};

static void usage(FILE *f)
{
    fprintf(f, "lostd %s - unsupervised object discovery with register ViTs\n\n"
               "usage: lostd <command> [options]   (lostd <command> --help)\n\n",
            LOSTD_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    json_object_seed(0);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("lostd %s\n", LOSTD_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "lostd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
