/* hub.h - private to server/: model files from the Hugging Face hub (or a
 * mirror named by HF_ENDPOINT), downloaded once with libcurl into a cache:
 * <cache>/<owner>/<repo>/<file>. One process downloads a file at a time
 * (flock on <file>.lock; others wait, then use its result); the bytes go to
 * a unique temporary file beside it, are hashed from disk and checked
 * against the digest of the hub's FIRST response (the LFS X-Linked-ETag,
 * else its ETag; for small non-LFS files the git blob SHA-1) and against
 * hub_opts.sha256, then renamed into place, so the cache never holds a
 * partial or unverified file. No digest and no pin: refused. A redirect
 * from https to http is refused. Logs through the given log (progress bar on
 * a terminal only). */
#ifndef LOSTD_HUB_H
#define LOSTD_HUB_H

#include <stdatomic.h>
#include <stddef.h>

struct err;
struct log;

#define HUB_DEFAULT_ENDPOINT "https://huggingface.co"
#define HUB_DEFAULT_REPO "facebook/dinov2-with-registers-small"
#define HUB_DEFAULT_FILE "model.safetensors"

struct hub_opts {
    const char *endpoint;   /* base URL without a trailing slash; NULL = HF_ENDPOINT's
                               default */
    const char *token;      /* sent as "Authorization: Bearer"; NULL or "" = none */
    const char *cache_dir;  /* from hub_cache_dir */
    const char *revision;   /* NULL = "main" */
    int progress;           /* draw a progress bar on stderr */
    const struct log *log;  /* may be NULL: then nothing is logged */
    _Atomic int *cancel;    /* set nonzero from another thread to abort a download;
                               may be NULL */
    const char *sha256;     /* NULL or "": none; else the expected SHA-256 (64 lowercase
                               hex) of the model file: a download must match it, and a
                               hub without a checksum is then accepted */
};

/* How long a process waits for another one downloading the same file. */
#define HUB_LOCK_WAIT_S 1800

/* $LOSTD_CACHE, else $XDG_CACHE_HOME/lostd, else $HOME/.cache/lostd (env is
 * read with getenv). Returns 0 or ERR_INPUT when none can be formed. */
int hub_cache_dir(char *buf, size_t n, struct err *e);

/* "hf://OWNER/REPO[/FILE]" into repo ("OWNER/REPO") and file (default
 * HUB_DEFAULT_FILE). Returns 1 for a hub URL, 0 for anything else (a local
 * path; outputs untouched), ERR_INPUT for a malformed hub URL (names may use
 * letters, digits, '.', '_', '-'; FILE may have '/'-separated folders; no
 * "." or ".." components). */
int hub_parse(const char *spec, char *repo, size_t rn, char *file, size_t fn, struct err *e);

/* Makes sure repo/file is in the cache, downloading it when missing, and
 * writes its local path to path. Also fetches config.json beside it when the
 * hub has one (a 404 for it is not an error). Errors: ERR_NOTFOUND (404),
 * ERR_IO (network, HTTP error, checksum mismatch, disk, cancelled); the
 * message says what to download by hand and where to put it. */
int hub_fetch(const struct hub_opts *o, const char *repo, const char *file, char *path,
              size_t n, struct err *e);

/* SHA-256 of a file as 64 lowercase hex digits. ERR_NOTFOUND / ERR_IO. */
int hub_sha256_file(const char *path, char hex[65], struct err *e);

#endif
