/* version.h - private to server/: the version lostd reports (--version,
 * GET /version, the OpenAPI document, the download's User-Agent). The
 * Makefile passes -DLOSTD_VERSION from `git describe` (or a fixed fallback
 * outside a git checkout); nothing else defines it. */
#ifndef LOSTD_VERSION_H
#define LOSTD_VERSION_H

#ifndef LOSTD_VERSION
#error "LOSTD_VERSION is set by the Makefile (-DLOSTD_VERSION=...)"
#endif

#endif
