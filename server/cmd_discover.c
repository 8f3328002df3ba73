/* cmd_discover.c - `lostd discover`: not built yet. */
#include "cli.h"

int cli_discover(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail(2, "discover", "not implemented yet");
}
