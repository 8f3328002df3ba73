/* openapi.h - private to server/: the OpenAPI 3 description of the HTTP API. */
#ifndef LOSTD_OPENAPI_H
#define LOSTD_OPENAPI_H

/* The document as JSON text, static storage (built on first use,
 * thread-safe). Cannot fail. */
const char *openapi_json(void);

#endif
