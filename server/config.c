/* config.c - `lostd serve` settings: one table of options, each with its
 * flag, its LOSTD_* environment twin, its bounds and its help line. The
 * environment is applied first, then the flags, so a flag always wins. */
#include "config.h"
#include "err.h"
#include "image.h"
#include "params.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_STR, K_LONG, K_BYTES, K_LOGFMT };

struct opt {
    const char *flag;   /* "--max-upload"; the env name is derived from it */
    enum kind kind;
    size_t off;         /* field offset in struct config */
    size_t size;        /* K_STR: capacity of the char array */
    long lo, hi;        /* K_LONG / K_BYTES bounds */
    const char *help;
};

#define STR(f) K_STR, offsetof(struct config, f), sizeof(((struct config *)0)->f), 0, 0
#define NUM(f, lo, hi) K_LONG, offsetof(struct config, f), 0, lo, hi
#define BYTES(f, lo, hi) K_BYTES, offsetof(struct config, f), 0, lo, hi

static const struct opt opts[] = {
    {"--host", STR(host), "address to bind (default 127.0.0.1)"},
    {"--port", NUM(port, 0, 65535), "TCP port, 0 = any free port (default 8080)"},
    {"--model", STR(model), "safetensors file or hf://OWNER/REPO[/FILE] "
                            "(default hf://facebook/dinov2-with-registers-small)"},
    {"--workers", NUM(workers, 0, 256), "inference threads, 0 = cores / threads (default 0)"},
    {"--threads", NUM(threads, 0, 256), "threads per worker's forward, 0 = 1 (default 0)"},
    {"--queue", NUM(queue, 1, 100000), "requests waiting for a worker before 503 (default 64)"},
    {"--max-upload", BYTES(max_upload, 1024, 1L << 30), "largest image body, bytes, "
                                                        "k/M/G allowed (default 20M)"},
    {"--max-pixels", NUM(max_pixels, 1, (long)IMAGE_MAX_SIDE * IMAGE_MAX_SIDE),
     "largest declared width*height (default 40000000)"},
    {"--max-side", NUM(max_side, 14, 4096), "longer side the model sees; larger images are "
                                            "downscaled (default 1024)"},
    {"--timeout", NUM(timeout, 1, 3600), "seconds: idle connection, and wait for a result "
                                         "(default 30)"},
    {"--grace", NUM(grace, 0, 3600), "seconds in-flight requests get at SIGTERM (default 10)"},
    {"--max-connections", NUM(max_connections, 1, 100000), "open connections (default 128)"},
    {"--max-upload-total", BYTES(max_upload_total, 0, 1L << 40), "bytes all uploads in "
     "flight may hold together; then 503 (default 0 = 2 x (JSON body cap + max-upload))"},
    {"--scratch-budget", BYTES(scratch_budget, 0, 1L << 40), "bytes the workers' large "
     "buffers (decoders, Gram matrices) may hold together; a request waits for its share "
     "(default 0 = auto: enough for the largest image the limits allow)"},
    {"--health-port", NUM(health_port, -1, 65535), "second listener answering only /health,"
     " /health/live, /health/ready; 0 = any free port, -1 = none (default -1)"},
    {"--allowed-hosts", STR(allowed_hosts), "comma-separated Host header values accepted "
     "(name or name:port); others get 421 (default: any)"},
    {"--model-sha256", STR(model_sha256), "expected SHA-256 (64 hex digits) of the model "
     "file, checked at load (default: none)"},
    {"--cors-origins", STR(cors_origins), "comma-separated allowed origins, or * (default none)"},
    {"--api-key", STR(api_key), "require this key on POST /discover (Bearer or X-API-Key)"},
    {"--api-key-file", STR(api_key_file), "read the API key from this file"},
    {"--lost-config", STR(lost_config), "LOST settings file (from lostd calibrate) for "
                                         "requests that do not set them"},
    {"--log-format", K_LOGFMT, offsetof(struct config, log_format), 0, 0, 0,
     "text or json (default text)"},
    {"--static-dir", STR(static_dir), "demo page folder (default ../static beside the "
                                      "binary, else ./static)"},
};

#define N_OPTS (sizeof opts / sizeof opts[0])

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->host, sizeof c->host, "127.0.0.1");
    c->port = 8080;
    c->workers = 0;
    c->threads = 0;
    c->queue = 64;
    c->max_upload = 20L << 20;
    c->max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    c->max_side = 1024;
    c->timeout = 30;
    c->grace = 10;
    c->max_connections = 128;
    c->health_port = -1;
    pipeline_opts_default(&c->lost);
    c->log_format = CONFIG_LOG_TEXT;
}

int config_parse_bytes(const char *s, long *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s)
        return -1;
    long long mul = 1;
    if (*end) {
        switch (tolower((unsigned char)*end)) {
        case 'k': mul = 1LL << 10; break;
        case 'm': mul = 1LL << 20; break;
        case 'g': mul = 1LL << 30; break;
        default: return -1;
        }
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
        if (*end)
            return -1;
    }
    if (v > LONG_MAX / mul)
        return -1;
    *out = (long)(v * mul);
    return 0;
}

/* "--max-upload" -> "LOSTD_MAX_UPLOAD" */
static void env_name(const char *flag, char *buf, size_t n)
{
    size_t j = (size_t)snprintf(buf, n, "LOSTD_");
    for (const char *p = flag + 2; *p && j + 1 < n; p++)
        buf[j++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[j] = 0;
}

static int set_opt(struct config *c, const struct opt *o, const char *src, const char *v,
                   struct err *e)
{
    char *field = (char *)c + o->off;
    switch (o->kind) {
    case K_STR:
        if (strlen(v) >= o->size)
            return err_set(e, ERR_INPUT, "%s: value longer than %zu bytes", src, o->size - 1);
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case K_LONG: {
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < o->lo || x > o->hi)
            return err_set(e, ERR_INPUT, "%s expects an integer in %ld..%ld, got '%s'", src,
                           o->lo, o->hi, v);
        memcpy(field, &x, sizeof x);
        return 0;
    }
    case K_BYTES: {
        long x;
        if (config_parse_bytes(v, &x) || x < o->lo || x > o->hi)
            return err_set(e, ERR_INPUT, "%s expects a byte count in %ld..%ld (k/M/G "
                           "allowed), got '%s'", src, o->lo, o->hi, v);
        memcpy(field, &x, sizeof x);
        return 0;
    }
    case K_LOGFMT: {
        int f;
        if (!strcmp(v, "text"))
            f = CONFIG_LOG_TEXT;
        else if (!strcmp(v, "json"))
            f = CONFIG_LOG_JSON;
        else
            return err_set(e, ERR_INPUT, "%s expects text or json, got '%s'", src, v);
        memcpy(field, &f, sizeof f);
        return 0;
    }
    }
    return err_set(e, ERR_INTERNAL, "bad option kind");
}

static int hex64(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isxdigit((unsigned char)s[n]))
            return 0;
    return n == 64;
}

static int read_key_file(struct config *c, struct err *e)
{
    FILE *f = fopen(c->api_key_file, "rb");
    if (!f)
        return err_set(e, ERR_IO, "--api-key-file: cannot open %s", c->api_key_file);
    char buf[sizeof c->api_key + 2];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return err_set(e, ERR_IO, "--api-key-file: cannot read %s", c->api_key_file);
    buf[n] = 0;
    while (n && isspace((unsigned char)buf[n - 1]))
        buf[--n] = 0;
    if (n == 0 || n >= sizeof c->api_key)
        return err_set(e, ERR_INPUT, "--api-key-file: %s must hold one key of 1..%zu "
                       "bytes", c->api_key_file, sizeof c->api_key - 1);
    memcpy(c->api_key, buf, n + 1);
    return 0;
}

/* The daemon's own option with this flag, or NULL. */
static const struct opt *own_opt(const char *flag, size_t flen)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strlen(opts[i].flag) == flen && !strncmp(opts[i].flag, flag, flen))
            return &opts[i];
    return NULL;
}

/* A row of the parameter table the daemon takes as a flag: every command-line
 * row, except where the daemon has an option of the same name (--max-side:
 * the daemon's cap, which requests may only lower). */
static int serve_row(const struct param_def *d)
{
    return (d->where & PARAM_CLI) && d->flag && !own_opt(d->flag, strlen(d->flag));
}

static int set_param(struct config *c, const struct param_def *d, const char *src,
                     const char *v, struct err *e)
{
    int rc = params_set(d, v, &c->lost, NULL, e);
    return rc ? err_prefix(e, "%s", src) : 0;
}

int config_parse(struct config *c, int argc, char **argv, char *const *env, int n_cores,
                 struct err *e)
{
    char name[64];
    int rc;
    for (int i = 0; i < params_count; i++) {
        const struct param_def *d = &params_table[i];
        if (!serve_row(d))
            continue;
        env_name(d->flag, name, sizeof name);
        size_t len = strlen(name);
        for (char *const *p = env; p && *p; p++)
            if (!strncmp(*p, name, len) && (*p)[len] == '=' &&
                (rc = set_param(c, d, name, *p + len + 1, e)))
                return rc;
    }
    for (size_t i = 0; i < N_OPTS; i++) {
        env_name(opts[i].flag, name, sizeof name);
        size_t len = strlen(name);
        for (char *const *p = env; p && *p; p++) {
            if (strncmp(*p, name, len) || (*p)[len] != '=')
                continue;
            if ((rc = set_opt(c, &opts[i], name, *p + len + 1, e)))
                return rc;
        }
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            c->help = 1;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t flen = eq ? (size_t)(eq - arg) : strlen(arg);
        const struct opt *o = own_opt(arg, flen);
        if (!o) {
            char flag[64];
            const char *pv;
            const struct param_def *d = NULL;
            if (flen < sizeof flag) {
                memcpy(flag, arg, flen);
                flag[flen] = 0;
                d = params_find_flag(flag, &pv);
            }
            if (!d || !serve_row(d))
                return err_set(e, ERR_INPUT, "unknown option '%s' (see --help)", arg);
            if (!pv)
                pv = eq ? eq + 1 : a + 1 < argc ? argv[++a] : NULL;
            if (!pv)
                return err_set(e, ERR_INPUT, "%s needs a value", flag);
            if ((rc = set_param(c, d, flag, pv, e)))
                return rc;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (a + 1 >= argc)
                return err_set(e, ERR_INPUT, "%s needs a value", o->flag);
            v = argv[++a];
        }
        if ((rc = set_opt(c, o, o->flag, v, e)))
            return rc;
    }
    if (c->api_key_file[0] && (rc = read_key_file(c, e)))
        return rc;
    long one = config_json_body_cap(c) + c->max_upload; /* body + decoded image */
    if (c->max_upload_total == 0)
        c->max_upload_total = 2 * one;
    else if (c->max_upload_total < one)
        return err_set(e, ERR_INPUT, "--max-upload-total must hold one JSON upload at "
                       "--max-upload %ld: at least %ld bytes", c->max_upload, one);
    if (c->model_sha256[0] && !hex64(c->model_sha256))
        return err_set(e, ERR_INPUT, "--model-sha256 expects 64 hex digits, got '%.80s'",
                       c->model_sha256);
    for (char *p = c->model_sha256; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (n_cores < 1)
        n_cores = 1;
    if (c->threads == 0)
        c->threads = 1;
    if (c->workers == 0) {
        c->workers = n_cores / c->threads;
        if (c->workers < 1)
            c->workers = 1;
    }
    return 0;
}

long config_json_body_cap(const struct config *c)
{
    return c->max_upload / 3 * 4 + 8 + 65536;
}

void config_usage(char *buf, size_t n)
{
    size_t j = 0;
    char name[64];
    if (n == 0)
        return;
    buf[0] = 0;
    for (size_t i = 0; i < N_OPTS && j < n; i++) {
        env_name(opts[i].flag, name, sizeof name);
        int w = snprintf(buf + j, n - j, "  %-18s %s\n  %-18s   env %s\n", opts[i].flag,
                         opts[i].help, "", name);
        if (w < 0)
            break;
        j += (size_t)w;
    }
    /* The discovery defaults: the parameter table's rows (each also LOSTD_*). */
    for (int i = 0; i < params_count && j < n; i++) {
        const struct param_def *d = &params_table[i];
        if (!serve_row(d))
            continue;
        env_name(d->flag, name, sizeof name);
        int w = snprintf(buf + j, n - j, "  %-18s %s (default %s)\n  %-18s   env %s\n",
                         d->flag, d->help, d->def, "", name);
        if (w < 0)
            break;
        j += (size_t)w;
    }
}
