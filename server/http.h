/* http.h - private to server/: the HTTP front of `lostd serve` on
 * libmicrohttpd. Owns the routes, request bodies (raw image, multipart
 * form, JSON with base64), parameter validation, limits, CORS, the API key,
 * the JSON replies and the access log. Inference never runs on a connection
 * thread: POST /discover hands a job to the worker pool and waits for it with
 * the configured timeout. The daemon listens (and /health/live answers)
 * before the model is attached; /health/ready says 503 until the model is
 * loaded and every worker finished its warm-up forward. */
#ifndef LOSTD_HTTP_H
#define LOSTD_HTTP_H

#include <stddef.h>

struct config;
struct err;
struct log;
struct model;

/* What /v1/models and the "model" field of replies say about the weights. */
struct http_model_info {
    char id[256];       /* e.g. "facebook/dinov2-with-registers-small" or a file name */
    char path[1024];    /* the file loaded */
    char sha256[65];    /* hex digest of that file */
};

struct http_server;

/* Binds c->host:c->port and starts answering (not ready yet). c and l must
 * outlive the server. Returns 0, ERR_INPUT (bad host) or ERR_IO (bind
 * failed, message says why). Free with http_free. */
int http_start(const struct config *c, const struct log *l, struct http_server **out,
               struct err *e);

/* The port actually bound (useful with port 0). */
int http_port(const struct http_server *s);

/* The health listener's port (--health-port), or -1 when there is none. */
int http_health_port(const struct http_server *s);

/* Sets the reason /health/ready gives while not ready ("loading model").
 * Thread-safe; cannot fail. */
void http_set_status(struct http_server *s, const char *reason);

/* Hands the loaded model to the server: starts the workers, each warming up
 * in the background. m must stay valid until http_free. Returns 0 or the
 * pool's error (workspace allocation). */
int http_attach(struct http_server *s, const struct model *m,
                const struct http_model_info *info, struct err *e);

/* Waits up to timeout_ms for the warm-up. Returns 0 when ready, ERR_BUSY on
 * timeout, or the warm-up's error. */
int http_wait_ready(struct http_server *s, double timeout_ms, struct err *e);

/* Graceful stop: stops accepting connections, answers new requests on open
 * connections with 503, lets in-flight requests finish for up to grace_ms,
 * then cancels what is left and stops the daemon. Cannot fail. */
void http_stop(struct http_server *s, double grace_ms);

/* Stops (with no grace) if needed and frees. http_free(NULL) is a no-op. */
void http_free(struct http_server *s);

/* Strict base64 (RFC 4648, standard or URL-safe alphabet, padding optional,
 * ASCII whitespace skipped). Writes at most cap bytes to out. Returns the
 * decoded length, -1 on a malformed input, -2 when the result exceeds cap. */
long http_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap);

#endif
