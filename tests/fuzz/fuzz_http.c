/* fuzz_http.c - the request path of `lostd serve`, in process: a daemon on
 * 127.0.0.1 (port 0) with the tiny fixture model, one worker and small
 * limits, started once; each input becomes one HTTP request on a fresh
 * loopback connection and the reply is read to the end.
 *
 * Input layout: everything up to the first blank line ("\n\n" or
 * "\r\n\r\n") is the request line and headers, one per line; the rest is the
 * body. The harness fixes the framing so every input is a complete request
 * the daemon must answer: it drops Content-Length, Transfer-Encoding and
 * Connection headers, then adds "Content-Length: <body size>" and
 * "Connection: close". That reaches query parsing, Content-Type dispatch,
 * the multipart post processor with our field callbacks, the JSON/base64
 * body, parameter validation, image sniffing, decoding and the pipeline;
 * libmicrohttpd's own HTTP/1.1 framing is its business, not ours.
 *
 * A reply must come within a few seconds and start with "HTTP/1."; a hang
 * or a dead daemon traps. LOSTD_FUZZ_MODEL names another model file. */
#include "fuzz.h"

#include "../../server/config.h"
#include "err.h"
#include "../../server/http.h"
#include "../../server/log.h"
#include "model.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FUZZ_HTTP_REQ_MAX (1u << 20)

static struct {
    struct config cfg;
    struct log log;
    struct model *model;
    struct http_server *http;
    int port;
    int failed;
} fh;

static void http_fuzz_stop(void)
{
    http_free(fh.http);
    model_free(fh.model);
    fh.http = NULL;
    fh.model = NULL;
}

static int http_fuzz_start(void)
{
    struct err e;
    err_clear(&e);
    signal(SIGPIPE, SIG_IGN);
    config_defaults(&fh.cfg);
    fh.cfg.port = 0;
    fh.cfg.workers = 1;
    fh.cfg.threads = 1;
    fh.cfg.queue = 4;
    fh.cfg.max_upload = 256 << 10;
    fh.cfg.max_pixels = 1 << 20;
    fh.cfg.max_side = 224;
    fh.cfg.timeout = 10;
    fh.cfg.max_connections = 16;
    snprintf(fh.cfg.static_dir, sizeof fh.cfg.static_dir, "static");
    const char *mp = getenv("LOSTD_FUZZ_MODEL");
    if (!mp || !*mp)
        mp = "tests/fixtures/models/tiny.safetensors";
    /* The access log is noise here; LOSTD_FUZZ_LOG=1 keeps it. */
    const char *lg = getenv("LOSTD_FUZZ_LOG");
    FILE *lf = lg && *lg == '1' ? stderr : fopen("/dev/null", "w");
    log_init(&fh.log, lf, 0);
    if (model_load(mp, NULL, &fh.model, &e)) {
        fprintf(stderr, "fuzz_http: %s: %s (run from the repository root)\n", mp, e.msg);
        return -1;
    }
    struct http_model_info info;
    memset(&info, 0, sizeof info);
    snprintf(info.id, sizeof info.id, "tiny");
    snprintf(info.path, sizeof info.path, "%s", mp);
    memset(info.sha256, '0', 64);
    if (http_start(&fh.cfg, &fh.log, &fh.http, &e) ||
        http_attach(fh.http, fh.model, &info, &e) ||
        http_wait_ready(fh.http, 60e3, &e)) {
        fprintf(stderr, "fuzz_http: cannot start the daemon: %s\n", e.msg);
        http_fuzz_stop();
        return -1;
    }
    fh.port = http_port(fh.http);
    atexit(http_fuzz_stop);
    return 0;
}

/* Header names the harness owns. */
static int http_fuzz_owned(const uint8_t *line, size_t n)
{
    static const char *const own[] = {"content-length:", "transfer-encoding:", "connection:"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        size_t k = strlen(own[i]);
        if (n >= k && !strncasecmp((const char *)line, own[i], k))
            return 1;
    }
    return 0;
}

/* Builds the request into out (cap bytes). Returns its length, 0 if it does
 * not fit. */
static size_t http_fuzz_build(const uint8_t *data, size_t size, char *out, size_t cap)
{
    size_t head = size, body = size;
    for (size_t i = 0; i + 1 < size; i++) {
        if (data[i] == '\n' && data[i + 1] == '\n') {
            head = i;
            body = i + 2;
            break;
        }
        if (i + 3 < size && !memcmp(data + i, "\r\n\r\n", 4)) {
            head = i;
            body = i + 4;
            break;
        }
    }
    size_t o = 0, line = 0, n_body = size - body;
    int first = 1;
    while (line < head) {
        const uint8_t *nl = memchr(data + line, '\n', head - line);
        size_t end = nl ? (size_t)(nl - data) : head;
        size_t len = end - line;
        if (len && data[line + len - 1] == '\r')
            len--;
        if (first || !http_fuzz_owned(data + line, len)) {
            if (o + len + 2 > cap)
                return 0;
            memcpy(out + o, data + line, len);
            o += len;
            out[o++] = '\r';
            out[o++] = '\n';
        }
        first = 0;
        line = end + 1;
    }
    if (first) /* no request line at all: give it one */
        o = (size_t)snprintf(out, cap, "POST /discover HTTP/1.1\r\nHost: x\r\n");
    int k = snprintf(out + o, cap - o, "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     n_body);
    if (k < 0 || (size_t)k >= cap - o || o + (size_t)k + n_body > cap)
        return 0;
    o += (size_t)k;
    memcpy(out + o, data + body, n_body);
    return o + n_body;
}

static double http_fuzz_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int FUZZ_ONE(const uint8_t *data, size_t size)
{
    if (!fh.http && !fh.failed && http_fuzz_start())
        fh.failed = 1;
    if (fh.failed)
        __builtin_trap(); /* no daemon: every input would pass silently */
    static char req[FUZZ_HTTP_REQ_MAX + 256];
    size_t n = http_fuzz_build(data, size, req, sizeof req);
    if (!n)
        return 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fh.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        __builtin_trap(); /* the daemon stopped accepting */
    }
    /* Send what the daemon takes; it may answer (413) and close early. */
    size_t sent = 0;
    double t0 = http_fuzz_now();
    char reply[16];
    size_t got = 0;
    int closed = 0;
    while (!closed) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0)};
        if (http_fuzz_now() - t0 > 20)
            __builtin_trap(); /* no complete answer in 20 s: a hang */
        if (poll(&p, 1, 100) <= 0)
            continue;
        if (p.revents & POLLOUT) {
            ssize_t k = send(fd, req + sent, n - sent, MSG_NOSIGNAL);
            if (k > 0)
                sent += (size_t)k;
            else
                sent = n; /* peer closed its read side */
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[4096];
            ssize_t k = recv(fd, buf, sizeof buf, 0);
            if (k <= 0) {
                closed = 1;
                break;
            }
            for (ssize_t i = 0; i < k && got < sizeof reply; i++)
                reply[got++] = buf[i];
        }
    }
    close(fd);
    /* libmicrohttpd may hang up without a reply on a request line it cannot
     * parse at all; anything it does send must be HTTP. */
    if (got > 0 && (got < 7 || memcmp(reply, "HTTP/1.", 7)))
        __builtin_trap();
    return 0;
}
