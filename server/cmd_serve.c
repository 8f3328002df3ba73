/* cmd_serve.c - `lostd serve`: process setup for the daemon. Reads the
 * configuration, sets BLAS threads and signal handling before any thread
 * starts, listens at once (so /health/live answers during a long model
 * download), then a loader thread fetches, loads and hashes the model and
 * attaches it; the main thread only waits for SIGTERM / SIGINT and then
 * stops gracefully. Exit 0 after a clean stop, 1 when the model cannot be
 * loaded or the port cannot be bound, 2 on a usage error. */
#include "cli.h"
#include "config.h"
#include "err.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "model.h"
#include "vit.h"

#include <cblas.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct loader {
    const struct config *cfg;
    const struct log *log;
    struct http_server *http;
    _Atomic int cancel;
    pthread_mutex_t mu;
    int done, failed;       /* under mu */
    struct model *model;    /* freed by cli_serve after the server */
    struct err e;
};

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ../static beside the binary (build/lostd -> static/), else ./static. */
static void default_static_dir(char *out, size_t n)
{
    char exe[PATH_MAX], cand[PATH_MAX + 16];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(cand, sizeof cand, "%s/../static", exe);
            char real[PATH_MAX];
            if (is_dir(cand) && realpath(cand, real) && strlen(real) < n) {
                memcpy(out, real, strlen(real) + 1);
                return;
            }
        }
    }
    snprintf(out, n, "static");
}

static void set_state(struct loader *L, int failed)
{
    pthread_mutex_lock(&L->mu);
    L->done = 1;
    L->failed = failed;
    pthread_mutex_unlock(&L->mu);
}

static void *loader_main(void *arg)
{
    struct loader *L = arg;
    const struct config *c = L->cfg;
    struct err *e = &L->e;
    struct http_model_info info;
    memset(&info, 0, sizeof info);
    char repo[512], file[512];
    const char *spec = c->model[0] ? c->model : "hf://" HUB_DEFAULT_REPO;
    int hub = hub_parse(spec, repo, sizeof repo, file, sizeof file, e);
    if (hub < 0)
        goto fail;
    if (hub) {
        char cache[2048];
        if (hub_cache_dir(cache, sizeof cache, e))
            goto fail;
        const char *tok = getenv("HF_TOKEN");
        struct hub_opts ho = {.endpoint = getenv("HF_ENDPOINT"), .token = tok,
                              .cache_dir = cache, .progress = cli_isatty_stderr(),
                              .log = L->log, .cancel = &L->cancel,
                              .sha256 = c->model_sha256};
        http_set_status(L->http, "downloading the model");
        if (hub_fetch(&ho, repo, file, info.path, sizeof info.path, e))
            goto fail;
        if (!strcmp(file, HUB_DEFAULT_FILE))
            snprintf(info.id, sizeof info.id, "%.200s", repo);
        else
            snprintf(info.id, sizeof info.id, "%.120s/%.120s", repo, file);
    } else {
        snprintf(info.path, sizeof info.path, "%s", spec);
        const char *base = strrchr(spec, '/');
        snprintf(info.id, sizeof info.id, "%.200s", base ? base + 1 : spec);
        char *dot = strrchr(info.id, '.');
        if (dot && !strcmp(dot, ".safetensors"))
            *dot = 0;
    }
    http_set_status(L->http, "loading the model");
    if (hub_sha256_file(info.path, info.sha256, e))
        goto fail;
    if (c->model_sha256[0] && strcmp(c->model_sha256, info.sha256)) {
        err_set(e, ERR_MODEL, "%s: SHA-256 %s, but --model-sha256 expects %s; not serving it",
                info.path, info.sha256, c->model_sha256);
        goto fail;
    }
    if (model_load(info.path, NULL, &L->model, e)) {
        err_prefix(e, "%s", info.path);
        goto fail;
    }
    const struct model_config *mc = model_config(L->model);
    log_msg(L->log, "info", "model %s: %s, %d registers, patch %d, dim %d, sha256 %s",
            info.id, mc->arch, mc->n_reg, mc->patch, mc->dim, info.sha256);
    http_set_status(L->http, "warming up");
    if (http_attach(L->http, L->model, &info, e))
        goto fail;
    int rc = http_wait_ready(L->http, 3600e3, e);
    if (rc == ERR_BUSY) { /* stopping before the warm-up ended */
        set_state(L, 0);
        return NULL;
    }
    if (rc)
        goto fail;
    log_msg(L->log, "info", "ready: %ld workers x %ld BLAS threads, queue %ld, max side %ld",
            c->workers, c->threads, c->queue, c->max_side);
    set_state(L, 0);
    return NULL;
fail:
    set_state(L, 1); /* cli_serve reports e->msg once */
    return NULL;
}

/* Set by a stop signal that reached a thread without the mask (see cli_serve). */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

int cli_serve(int argc, char **argv)
{
    struct config cfg;
    struct err e;
    err_clear(&e);
    config_defaults(&cfg);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (config_parse(&cfg, argc, argv, environ, (int)(cores > 0 ? cores : 1), &e))
        return cli_fail(e.code == ERR_INPUT ? 2 : 1, "serve", "%s", e.msg);
    if (cfg.help) {
        char buf[16384];
        config_usage(buf, sizeof buf);
        printf("usage: lostd serve [options]\n\n%s\n"
               "Without --model, the default model (hf://%s) is downloaded once into\n"
               "$LOSTD_CACHE, else $XDG_CACHE_HOME/lostd, else ~/.cache/lostd.\n"
               "HF_ENDPOINT names a hub mirror; HF_TOKEN is sent when set.\n",
               buf, HUB_DEFAULT_REPO);
        return 0;
    }
    if (!cfg.static_dir[0])
        default_static_dir(cfg.static_dir, sizeof cfg.static_dir);

    /* Process-wide setup, before the first thread of ours: SIGTERM / SIGINT
     * blocked so only sigtimedwait below sees them, BLAS threads, libcurl.
     * OpenBLAS may already have started threads when it was loaded, with the
     * signals unblocked: a handler that only raises a flag makes a signal
     * delivered there harmless instead of fatal, and the loop reads it. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
#ifdef __GLIBC__
    /* Memory returns after a burst: fixed thresholds (glibc otherwise raises
     * them after the first large free) so blocks of 256 KiB and more are
     * mapped and unmapped on their own, and a thread heap's free top is
     * handed back beyond 1 MiB, instead of large decodes and uploads leaving
     * their pages in the heaps for good. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
#endif
    /* One team of threads per worker: lostd's own on the AVX-512 path (then
     * OpenBLAS, used only by LOST, stays single-threaded), OpenBLAS's on the
     * fallback. */
    openblas_set_num_threads(vit_kernels_available() ? 1 : (int)cfg.threads);
    if (curl_global_init(CURL_GLOBAL_DEFAULT))
        return cli_fail(1, "serve", "cannot initialise libcurl");

    struct log lg;
    log_init(&lg, stderr, cfg.log_format == CONFIG_LOG_JSON);
    struct http_server *http;
    if (http_start(&cfg, &lg, &http, &e)) {
        curl_global_cleanup();
        return cli_fail(1, "serve", "%s", e.msg);
    }
    int v6 = strchr(cfg.host, ':') != NULL;
    printf("lostd: listening on http://%s%s%s:%d\n", v6 ? "[" : "", cfg.host, v6 ? "]" : "",
           http_port(http));
    if (http_health_port(http) >= 0)
        printf("lostd: health checks on http://%s%s%s:%d\n", v6 ? "[" : "", cfg.host,
               v6 ? "]" : "", http_health_port(http));
    fflush(stdout);
    log_msg(&lg, "info", "listening on %s port %d; static files from %s", cfg.host,
            http_port(http), cfg.static_dir);

    struct loader L = {.cfg = &cfg, .log = &lg, .http = http};
    pthread_mutex_init(&L.mu, NULL);
    err_clear(&L.e);
    pthread_t tid;
    int status = 0;
    if (pthread_create(&tid, NULL, loader_main, &L)) {
        http_free(http);
        curl_global_cleanup();
        return cli_fail(1, "serve", "cannot start the loader thread");
    }
    for (;;) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig < 0 && stop_signal)
            sig = stop_signal;
        if (sig == SIGTERM || sig == SIGINT) {
            log_msg(&lg, "info", "%s: stopping (grace %lds)",
                    sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg.grace);
            break;
        }
        pthread_mutex_lock(&L.mu);
        int failed = L.done && L.failed;
        pthread_mutex_unlock(&L.mu);
        if (failed) {
            status = 1;
            break;
        }
    }
    atomic_store(&L.cancel, 1);
    http_stop(http, (double)cfg.grace * 1000);
    pthread_join(tid, NULL);
    http_free(http);
    model_free(L.model);
    pthread_mutex_destroy(&L.mu);
    curl_global_cleanup();
    if (status && lg.json)
        log_msg(&lg, "error", "%s", L.e.msg);
    else if (status)
        fprintf(stderr, "lostd serve: %s\n", L.e.msg);
    else
        log_msg(&lg, "info", "stopped");
    return status;
}
