/* cmd_serve.c - `lostd serve`: not built yet. */
#include "cli.h"

int cli_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail(2, "serve", "not implemented yet");
}
