/* cmd_model.c - `lostd model`: not built yet. */
#include "cli.h"

int cli_model(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail(2, "model", "not implemented yet");
}
