/* cmd_features.c - `lostd features`: not built yet. */
#include "cli.h"

int cli_features(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail(2, "features", "not implemented yet");
}
