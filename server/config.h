/* config.h - private to server/: the settings of `lostd serve`, from flags,
 * environment and defaults, decided in this one place. Every flag --x-y has an
 * environment twin LOSTD_X_Y; a flag beats the environment, which beats the
 * default. Also where parallelism is decided: workers x BLAS threads <= cores
 * unless both are given explicitly. No I/O except reading --api-key-file;
 * never prints. */
#ifndef LOSTD_CONFIG_H
#define LOSTD_CONFIG_H

#include <stddef.h>

#include "pipeline.h"

struct err;

#define CONFIG_STR_MAX 1024

enum config_log_format { CONFIG_LOG_TEXT = 0, CONFIG_LOG_JSON };

struct config {
    char host[256];             /* address to bind, default 127.0.0.1 */
    long port;                  /* 0 = any free port (printed at startup) */
    char model[CONFIG_STR_MAX]; /* path or hf://OWNER/REPO[/FILE]; "" = the default model */
    long workers;               /* inference threads; 0 = cores / threads */
    long threads;               /* OpenBLAS threads per worker; 0 = 1 */
    long queue;                 /* jobs waiting for a worker before 503 */
    long max_upload;            /* bytes of image per request (JSON bodies get 4/3 of it) */
    long max_pixels;            /* declared width * height, checked before decoding */
    long max_side;              /* longer side the backbone sees; larger images are
                                   downscaled; sizes every worker's workspace */
    long timeout;               /* seconds: idle connections, and the longest a request
                                   waits for its result (queue + inference) */
    long grace;                 /* seconds given to in-flight requests at SIGTERM */
    long max_connections;
    long max_upload_total;      /* bytes all requests' bodies (and decoded base64) may hold
                                   at once; 0 = auto: 2 x (JSON body cap + max_upload) */
    long scratch_budget;        /* bytes all workers' large per-request buffers (decoder
                                   memory, the Gram matrix) may hold at once; 0 = auto */
    long health_port;           /* -1 = none; else a second listener for /health* only */
    char allowed_hosts[CONFIG_STR_MAX]; /* comma-separated Host names; "" = any */
    char model_sha256[80];      /* "" = none; else the expected SHA-256 (hex) of the model */
    char cors_origins[CONFIG_STR_MAX]; /* comma-separated origins, or "*"; "" = no CORS */
    char api_key[256];          /* "" = no key; from --api-key or --api-key-file */
    char api_key_file[CONFIG_STR_MAX];
    char lost_config[CONFIG_STR_MAX]; /* "" = none; else LOST settings file (lostd calibrate)
                                   giving the defaults that request parameters override */
    int log_format;             /* enum config_log_format */
    char static_dir[CONFIG_STR_MAX]; /* "" = ../static beside the binary, else ./static */
    int help;                   /* --help was given */
    struct pipeline_opts lost;  /* discovery defaults from the parameter table's flags
                                   and LOSTD_* twins (given bits set); a --lost-config file
                                   fills what they leave, requests override both */
};

/* Largest JSON body: base64 of max_upload plus room for the parameters. */
long config_json_body_cap(const struct config *c);

/* Defaults for every field. Cannot fail. */
void config_defaults(struct config *c);

/* Applies env (a NULL-terminated "KEY=VALUE" array, e.g. environ; may be
 * NULL) then the flags argv[1..argc-1] over c, reads the API key file, and
 * resolves the automatic values (workers, threads) for n_cores. Returns 0 or
 * ERR_INPUT with e->msg naming the flag or variable (unknown flag, missing
 * value, malformed or out-of-range number); ERR_IO when the key file cannot
 * be read. */
int config_parse(struct config *c, int argc, char **argv, char *const *env, int n_cores,
                 struct err *e);

/* Writes the option summary for --help to buf (NUL-terminated, truncated
 * to n). Cannot fail. */
void config_usage(char *buf, size_t n);

/* Parses a byte count "123", "64k", "20M", "1G" (binary units). Returns 0 or
 * -1 on a malformed, negative or overflowing value. */
int config_parse_bytes(const char *s, long *out);

#endif
