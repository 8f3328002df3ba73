/* cmd_lost.c - `lostd lost`: not built yet. */
#include "cli.h"

int cli_lost(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail(2, "lost", "not implemented yet");
}
