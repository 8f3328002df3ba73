/* cmd_eval.c - `lostd eval`: not built yet. */
#include "cli.h"

int cli_eval(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail(2, "eval", "not implemented yet");
}
