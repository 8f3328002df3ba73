/* hub.h - private to server/: model files from the Hugging Face hub (or a
 * mirror named by HF_ENDPOINT), downloaded once with libcurl into a cache:
 * <cache>/<owner>/<repo>/<file>. A download goes to a temporary file in the
 * same folder, is checked against the SHA-256 the hub announces (the LFS
 * X-Linked-ETag, else ETag; for small non-LFS files the git blob SHA-1),
 * then renamed into place, so the cache never holds a partial or wrong
 * file. Logs through the given log (progress bar on a terminal only). */
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
};

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
