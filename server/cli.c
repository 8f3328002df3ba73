/* cli.c - argument helpers shared by the subcommands: strict number parsing
 * (the whole string, finite, in range) and uniform error lines. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_fail(int status, const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lostd %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return status;
}

int cli_parse_int(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        cli_fail(2, cmd, "%s expects an integer in %ld..%ld, got '%s'", flag, lo, hi,
                 s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_float(const char *cmd, const char *flag, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !isfinite(v)) {
        cli_fail(2, cmd, "%s expects a finite number, got '%s'", flag, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_pair(const char *cmd, const char *flag, const char *s, int *a, int *b)
{
    char *end;
    long x, y;
    if (!s)
        goto bad;
    errno = 0;
    x = strtol(s, &end, 10);
    if (end == s || (*end != 'x' && *end != 'X') || errno)
        goto bad;
    const char *s2 = end + 1;
    y = strtol(s2, &end, 10);
    if (end == s2 || *end || errno || x < 1 || y < 1 || x > 1000000 || y > 1000000)
        goto bad;
    *a = (int)x;
    *b = (int)y;
    return 0;
bad:
    cli_fail(2, cmd, "%s expects AxB with positive integers (e.g. 392x504), got '%s'", flag,
             s ? s : "");
    return -1;
}

int cli_isatty_stderr(void) { return isatty(2); }

int cli_take_str(const char *flag, const char *v, const struct cli_str_opt *opts)
{
    for (; opts->flag; opts++)
        if (!strcmp(flag, opts->flag)) {
            *opts->slot = v;
            return 1;
        }
    return 0;
}

void cli_print_line(json_t *j)
{
    json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    putchar('\n');
    fflush(stdout);
    json_decref(j);
}

