/* hub.c - one file from <endpoint>/<repo>/resolve/<rev>/<file> into the
 * cache: under a lock on the destination, libcurl writes into a unique
 * temporary file beside it; the header callback keeps the checksum the hub
 * announces in its first response; the file is hashed from disk and only a
 * verified file is renamed into place (include/file.h). */
#include "hub.h"
#include "clock.h"
#include "cli.h"
#include "err.h"
#include "file.h"
#include "log.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "version.h"

int hub_cache_dir(char *buf, size_t n, struct err *e)
{
    const char *v = getenv("LOSTD_CACHE");
    int w;
    if (v && *v)
        w = snprintf(buf, n, "%s", v);
    else if ((v = getenv("XDG_CACHE_HOME")) && *v)
        w = snprintf(buf, n, "%s/lostd", v);
    else if ((v = getenv("HOME")) && *v)
        w = snprintf(buf, n, "%s/.cache/lostd", v);
    else
        return err_set(e, ERR_INPUT, "no cache folder: set LOSTD_CACHE (or HOME)");
    if (w < 0 || (size_t)w >= n)
        return err_set(e, ERR_INPUT, "cache folder path too long");
    return 0;
}

/* One name component: [A-Za-z0-9._-]+, not "." or "..". */
static int good_part(const char *s, size_t n)
{
    if (n == 0 || n > 200 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
            return 0;
    return 1;
}

static int good_path(const char *s)
{
    while (*s) {
        const char *q = strchr(s, '/');
        size_t n = q ? (size_t)(q - s) : strlen(s);
        if (!good_part(s, n))
            return 0;
        s += n;
        if (*s == '/')
            s++;
        if (q && !*s)
            return 0; /* trailing slash */
    }
    return 1;
}

int hub_parse(const char *spec, char *repo, size_t rn, char *file, size_t fn, struct err *e)
{
    if (!spec || strncmp(spec, "hf://", 5))
        return 0;
    const char *p = spec + 5;
    const char *s1 = strchr(p, '/');
    if (!s1)
        return err_set(e, ERR_INPUT, "'%s': expected hf://OWNER/REPO[/FILE]", spec);
    const char *s2 = strchr(s1 + 1, '/');
    size_t repo_len = s2 ? (size_t)(s2 - p) : strlen(p);
    const char *f = s2 ? s2 + 1 : HUB_DEFAULT_FILE;
    if (!good_part(p, (size_t)(s1 - p)) || !good_part(s1 + 1, repo_len - (size_t)(s1 - p) - 1) ||
        !*f || !good_path(f))
        return err_set(e, ERR_INPUT, "'%s': names may use letters, digits, '.', '_' and '-'",
                       spec);
    if (repo_len >= rn || strlen(f) >= fn)
        return err_set(e, ERR_INPUT, "'%s': too long", spec);
    memcpy(repo, p, repo_len);
    repo[repo_len] = 0;
    snprintf(file, fn, "%s", f);
    return 1;
}

static void hexify(const unsigned char *d, unsigned n, char *out)
{
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Digest of a whole file; prefix (may be NULL) is hashed first. */
static int digest_file(const char *path, const EVP_MD *md, const char *prefix, char *hex,
                       struct err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "cannot open %s: %s",
                       path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, md, NULL)) {
        fclose(f);
        EVP_MD_CTX_free(ctx);
        return err_set(e, ERR_NOMEM, "cannot start a digest");
    }
    if (prefix)
        EVP_DigestUpdate(ctx, prefix, strlen(prefix) + 1); /* git hashes the NUL too */
    enum { BUF = 1 << 16 };
    unsigned char *buf = malloc(BUF);
    size_t k;
    while (buf && (k = fread(buf, 1, BUF, f)) > 0)
        EVP_DigestUpdate(ctx, buf, k);
    int bad = !buf || ferror(f);
    free(buf);
    fclose(f);
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dn = 0;
    EVP_DigestFinal_ex(ctx, d, &dn);
    EVP_MD_CTX_free(ctx);
    if (bad)
        return err_set(e, ERR_IO, "cannot read %s", path);
    hexify(d, dn, hex);
    return 0;
}

int hub_sha256_file(const char *path, char hex[65], struct err *e)
{
    return digest_file(path, EVP_sha256(), NULL, hex, e);
}

struct dl {
    const struct hub_opts *o;
    const char *name;
    struct file_out out;    /* the temporary file beside the destination */
    int write_failed;       /* errno of a failed write (the temporary is gone then) */
    int n_resp;             /* responses seen so far in the redirect chain */
    char etag[128];         /* ETag of the FIRST response */
    char linked[128];       /* X-Linked-ETag of the first response: the LFS SHA-256 */
    double t_last;
    int drew;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
    struct dl *d = ud;
    size_t n = size * nmemb;
    struct err e;
    if (d->write_failed)
        return 0;
    if (file_out_write(&d->out, p, n, &e)) {
        d->write_failed = errno ? errno : EIO;
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    return n;
}

/* Copies a header value without quotes and a W/ prefix, lowercased. */
static void header_value(const char *v, size_t n, char *out, size_t on)
{
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    if (n >= 2 && v[0] == 'W' && v[1] == '/')
        v += 2, n -= 2;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
        v++, n -= 2;
    if (n >= on)
        n = on - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)v[i]);
    out[n] = 0;
}

/* The digest is taken from the hub's own (first) answer only: later hops of
 * a redirect chain are a CDN or a mirror, which must not vouch for what
 * they serve. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct dl *d = ud;
    size_t n = size * nmemb;
    if (n >= 5 && !strncmp(p, "HTTP/", 5)) {
        d->n_resp++;
        return n;
    }
    if (d->n_resp != 1)
        return n;
    const char *colon = memchr(p, ':', n);
    if (!colon)
        return n;
    size_t kn = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vn = n - kn - 1;
    if (kn == 13 && !strncasecmp(p, "x-linked-etag", 13))
        header_value(v, vn, d->linked, sizeof d->linked);
    else if (kn == 4 && !strncasecmp(p, "etag", 4))
        header_value(v, vn, d->etag, sizeof d->etag);
    return n;
}

static int on_progress(void *ud, curl_off_t total, curl_off_t now, curl_off_t ut,
                       curl_off_t un)
{
    (void)ut;
    (void)un;
    struct dl *d = ud;
    if (d->o->cancel && *d->o->cancel)
        return 1; /* aborts the transfer */
    if (!d->o->progress)
        return 0;
    double t = clock_now_ms();
    if (t - d->t_last < 100 && !(total > 0 && now == total))
        return 0;
    d->t_last = t;
    d->drew = 1;
    double mb = (double)now / (1 << 20), tot = (double)total / (1 << 20);
    if (total > 0) {
        int pct = (int)(100.0 * (double)now / (double)total), w = 30, fill = pct * w / 100;
        char bar[32];
        for (int i = 0; i < w; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        fprintf(stderr, "\rlostd: %s [%s] %3d%% %.1f/%.1f MiB", d->name, bar, pct, mb, tot);
    } else {
        fprintf(stderr, "\rlostd: %s %.1f MiB", d->name, mb);
    }
    fflush(stderr);
    return 0;
}

static int is_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

static int mkdirs(const char *path, struct err *e)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return err_set(e, ERR_INPUT, "path too long");
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST)
            return err_set(e, ERR_IO, "cannot create %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST)
        return err_set(e, ERR_IO, "cannot create %s: %s", buf, strerror(errno));
    return 0;
}

/* Checks the file now at tmp against what the hub announced (first
 * response) and the pin. 0, or ERR_IO with the reason. */
static int verify(const struct hub_opts *o, const struct dl *d, const char *url,
                  const char *tmp, long long size, char got[65], struct err *e)
{
    /* Hashed from disk after fsync: what will be renamed is what is checked. */
    int rc = hub_sha256_file(tmp, got, e);
    if (rc)
        return rc;
    const char *pin = o->sha256 && *o->sha256 ? o->sha256 : NULL;
    if (pin && strcmp(got, pin))
        return err_set(e, ERR_IO, "%s: SHA-256 %s, but --model-sha256 expects %s", url, got,
                       pin);
    const char *want = d->linked[0] ? d->linked : d->etag;
    if (is_hex(want, 64)) {
        if (strcmp(got, want))
            return err_set(e, ERR_IO, "%s: SHA-256 mismatch: got %s, the hub says %s", url,
                           got, want);
        return 0;
    }
    if (is_hex(want, 40)) {
        /* A small file kept in git: the ETag is its git blob SHA-1. */
        char prefix[64], sha1[2 * EVP_MAX_MD_SIZE + 1];
        snprintf(prefix, sizeof prefix, "blob %lld", size);
        if ((rc = digest_file(tmp, EVP_sha1(), prefix, sha1, e)))
            return rc;
        if (strcmp(sha1, want))
            return err_set(e, ERR_IO, "%s: git SHA-1 mismatch: got %s, the hub says %s", url,
                           sha1, want);
        return 0;
    }
    if (pin)
        return 0;
    return err_set(e, ERR_IO, "%s: the hub announced no checksum (no X-Linked-ETag or "
                   "SHA ETag in its first response), so the file cannot be verified; pass "
                   "--model-sha256 HEX to accept it with a digest you trust", url);
}

/* Downloads url into dest atomically: a unique temporary file beside it
 * (two processes sharing the cache never write the same one), verified on
 * disk, then renamed. optional: a 404 is ERR_NOTFOUND without a hint. */
static int download(const struct hub_opts *o, const char *url, const char *dest,
                    const char *name, struct err *e)
{
    struct dl d = {.o = o, .name = name};
    int rc = file_out_open(&d.out, dest, e);
    if (rc)
        return rc;
    CURL *c = curl_easy_init();
    struct curl_slist *hdr = NULL;
    char auth[1100], ua[64];
    if (!c) {
        rc = err_set(e, ERR_NOMEM, "cannot start the download");
        goto out;
    }
    if (o->token && *o->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->token);
        hdr = curl_slist_append(hdr, auth);
    }
    snprintf(ua, sizeof ua, "lostd/%s", LOSTD_VERSION);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, ua);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    /* Never from https down to http: a redirect may only keep TLS. */
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR,
                     strncasecmp(url, "https:", 6) ? "http,https" : "https");
    curl_easy_setopt(c, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    /* A mirror with a private CA: the bundle the curl tool also reads. */
    const char *ca = getenv("CURL_CA_BUNDLE");
    if (ca && *ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    /* The token is for the hub only: libcurl drops Authorization on a
     * redirect to another host unless told otherwise, which we never do. */
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &d);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &d);
    CURLcode cr = curl_easy_perform(c);
    if (d.drew)
        fputc('\n', stderr);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (cr == CURLE_HTTP_RETURNED_ERROR && code == 404) {
        rc = err_set(e, ERR_NOTFOUND, "%s: not found (HTTP 404)", url);
        goto out;
    }
    if (cr == CURLE_HTTP_RETURNED_ERROR) {
        rc = err_set(e, ERR_IO, "%s: HTTP %ld%s", url, code,
                     code == 401 || code == 403 ? " (a gated or private repository: set "
                                                  "HF_TOKEN)" : "");
        goto out;
    }
    if (cr == CURLE_UNSUPPORTED_PROTOCOL || cr == CURLE_TOO_MANY_REDIRECTS) {
        rc = err_set(e, ERR_IO, "%s: refused redirect (%s): a download that starts on https "
                     "stays on https", url, curl_easy_strerror(cr));
        goto out;
    }
    if (cr != CURLE_OK) {
        rc = err_set(e, ERR_IO, "%s: %s", url,
                     d.write_failed ? strerror(d.write_failed) : curl_easy_strerror(cr));
        goto out;
    }
    if (fsync(d.out.fd)) {
        rc = err_set(e, ERR_IO, "cannot write %s: %s", d.out.tmp, strerror(errno));
        goto out;
    }
    char got[65];
    if ((rc = verify(o, &d, url, d.out.tmp, d.out.bytes, got, e)))
        goto out;
    if ((rc = file_out_commit(&d.out, e)))
        goto out;
    if (o->log)
        log_msg(o->log, "info", "downloaded %s (sha256 %s)", dest, got);
out:
    if (rc)
        file_out_abort(&d.out); /* no-op when a failed write already removed it */
    curl_slist_free_all(hdr);
    if (c)
        curl_easy_cleanup(c);
    return rc;
}

/* An exclusive lock on <dest>.lock while one process downloads dest; others
 * wait (the kernel drops the lock of a process that dies). Returns the
 * lock's fd, or -1 with e set (ERR_IO; ERR_BUSY after HUB_LOCK_WAIT_S). */
static int lock_dest(const struct hub_opts *o, const char *dest, struct err *e)
{
    char lock[4200];
    snprintf(lock, sizeof lock, "%s.lock", dest);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_set(e, ERR_IO, "cannot create %s: %s", lock, strerror(errno));
        return -1;
    }
    double t0 = clock_now_ms();
    int told = 0;
    while (flock(fd, LOCK_EX | LOCK_NB)) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            err_set(e, ERR_IO, "cannot lock %s: %s", lock, strerror(errno));
            close(fd);
            return -1;
        }
        if (!told && o->log)
            log_msg(o->log, "info", "another process is downloading %s; waiting for it", dest);
        told = 1;
        if ((o->cancel && *o->cancel) || clock_now_ms() - t0 > HUB_LOCK_WAIT_S * 1000.0) {
            err_set(e, ERR_BUSY, "gave up after %ds waiting for another process to download "
                    "%s (lock %s)", HUB_LOCK_WAIT_S, dest, lock);
            close(fd);
            return -1;
        }
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return fd;
}

int hub_fetch(const struct hub_opts *o, const char *repo, const char *file, char *path,
              size_t n, struct err *e)
{
    const char *ep = o->endpoint && *o->endpoint ? o->endpoint : HUB_DEFAULT_ENDPOINT;
    const char *rev = o->revision && *o->revision ? o->revision : "main";
    size_t epn = strlen(ep);
    while (epn && ep[epn - 1] == '/')
        epn--;
    char dir[4096], url[4096], cpath[4200], curl_cfg[4096];
    const char *slash = strrchr(file, '/');
    int w = snprintf(path, n, "%s/%s/%s", o->cache_dir, repo, file);
    if (w < 0 || (size_t)w >= n)
        return err_set(e, ERR_INPUT, "cache path too long");
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    if (access(path, R_OK) == 0)
        return 0; /* cached (verified when it was downloaded): no network */
    snprintf(url, sizeof url, "%.*s/%s/resolve/%s/%s", (int)epn, ep, repo, rev, file);
    int rc = mkdirs(dir, e);
    int lock = rc ? -1 : lock_dest(o, path, e);
    if (!rc && lock < 0)
        rc = e->code;
    /* Another process may have finished it while we waited for the lock. */
    int done = !rc && access(path, R_OK) == 0;
    if (!rc && !done && o->log)
        log_msg(o->log, "info", "downloading %s into %s", url, path);
    if (!rc && !done)
        rc = download(o, url, path, slash ? slash + 1 : file, e);
    if (lock >= 0)
        close(lock); /* releases the flock */
    if (rc) {
        char why[ERR_MSG_MAX];
        memcpy(why, e->msg, sizeof why);
        return err_set(e, rc, "cannot fetch %s/%s (%.200s). Offline? Download %.300s and put it "
                       "at %.300s, or pass --model FILE", repo, file, why, url, path);
    }
    /* config.json beside the weights: head count and naming hints. */
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    if (access(cpath, R_OK) != 0) {
        struct err e2;
        err_clear(&e2);
        snprintf(curl_cfg, sizeof curl_cfg, "%.*s/%s/resolve/%s/%s%.*sconfig.json", (int)epn,
                 ep, repo, rev, "", slash ? (int)(slash - file + 1) : 0, file);
        rc = download(o, curl_cfg, cpath, "config.json", &e2);
        if (rc && rc != ERR_NOTFOUND && o->log)
            log_msg(o->log, "warn", "config.json: %s", e2.msg);
    }
    return 0;
}
