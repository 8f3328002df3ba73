/* cmd_bench.c - `lostd bench`: not built yet. */
#include "cli.h"

int cli_bench(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail(2, "bench", "not implemented yet");
}
