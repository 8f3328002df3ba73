/* cli.h - private to server/: the lostd subcommands and the small argument
 * helpers they share. Each command is int cli_<name>(argc, argv) with argv[0]
 * the command name; it returns the process exit status (0 ok, 1 failure,
 * 2 usage error) and prints its own errors to stderr as "lostd <cmd>: msg". */
#ifndef LOSTD_CLI_H
#define LOSTD_CLI_H

#include <jansson.h>

int cli_features(int argc, char **argv);
int cli_model(int argc, char **argv);
int cli_lost(int argc, char **argv);
int cli_discover(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_analyze(int argc, char **argv);
int cli_calibrate(int argc, char **argv);

/* Parsing helpers: return 0 on success, -1 (after printing
 * "lostd <cmd>: ..." to stderr) on a malformed value. */
int cli_parse_int(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *cmd, const char *flag, const char *s, double *out);
/* "AxB" with both positive, e.g. --grid 28x36 or --size 392x504. */
int cli_parse_pair(const char *cmd, const char *flag, const char *s, int *a, int *b);

/* Prints "lostd <cmd>: <fmt...>\n" to stderr and returns status. */
int cli_fail(int status, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Nonzero when stderr is a terminal (progress bars only then). */
int cli_isatty_stderr(void);


/* A text option of a command: its flag and where its value goes. */
struct cli_str_opt {
    const char *flag;
    const char **slot;
};

/* If flag is one of opts (ended by {NULL, NULL}), stores v in its slot and
 * returns 1; else 0. */
int cli_take_str(const char *flag, const char *v, const struct cli_str_opt *opts);

/* j (consumed) as one compact line on stdout, flushed: the per-image lines of
 * discover and analyze. */
void cli_print_line(json_t *j);

#endif
