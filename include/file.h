/* file.h - the one way lostd replaces a file: write a temporary file in the
 * same folder, check every write, fsync it, rename it over the target, fsync
 * the folder. A reader (or a crash, or SIGKILL) sees the old file or the new
 * one, never half of one; a failure leaves the old file and no temporary.
 *
 *     struct file_out f;
 *     if (file_out_open(&f, path, e)) return e->code;
 *     if (file_out_write(&f, buf, n, e) || file_out_commit(&f, e)) return e->code;
 *
 * Every failing call has already removed the temporary file: there is no
 * abort to call after an error. file_out_abort is for a caller that gives up
 * for reasons of its own. Not thread-safe per struct; distinct structs may
 * be used from distinct threads. */
#ifndef LOSTD_FILE_H
#define LOSTD_FILE_H

#include <stddef.h>

struct err;

#define FILE_PATH_MAX 4096

/* One file being written. Plain fields for reading; set only by file_out_*. */
struct file_out {
    int fd;                       /* -1 when not open */
    char path[FILE_PATH_MAX];     /* the target */
    char tmp[FILE_PATH_MAX + 16]; /* "<path>.tmp.XXXXXX", unique (mkstemp) */
    long long bytes;              /* written so far */
};

/* Creates the temporary file beside path (mode 0644 less the umask).
 * ERR_INPUT when path is empty or too long, ERR_IO when the folder is not
 * writable (the message names the path and the reason). */
int file_out_open(struct file_out *f, const char *path, struct err *e);

/* Writes all n bytes (retrying short writes and EINTR). On failure (disk
 * full, file size limit, I/O error) removes the temporary file and returns
 * ERR_IO with the reason. */
int file_out_write(struct file_out *f, const void *buf, size_t n, struct err *e);

/* printf into the file; the formatted text may be of any length. */
int file_out_printf(struct file_out *f, struct err *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* fsync, close, rename over path, fsync the folder. ERR_IO on any failure,
 * and then the temporary file is gone and path is untouched. */
int file_out_commit(struct file_out *f, struct err *e);

/* Closes and removes the temporary file. No-op when nothing is open. */
void file_out_abort(struct file_out *f);

/* The whole dance for a buffer already in memory. */
int file_replace(const char *path, const void *buf, size_t n, struct err *e);

/* For a file written in place over time (an append-only journal such as
 * eval's FILE.part): fsync `from`, rename it to `to`, fsync the folder.
 * ERR_IO on failure; `from` is left in place then. */
int file_rename_durable(const char *from, const char *to, struct err *e);

/* fsync of the folder holding path (after a rename or unlink there). */
int file_sync_dir(const char *path, struct err *e);

#endif
