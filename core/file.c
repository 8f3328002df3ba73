/* file.c - atomic file replacement (see include/file.h). */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"

static void close_and_unlink(struct file_out *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
    if (f->tmp[0]) {
        unlink(f->tmp);
        f->tmp[0] = '\0';
    }
}

/* Sets the error from errno, drops the temporary file, returns ERR_IO. */
static int fail(struct file_out *f, const char *what, struct err *e)
{
    int er = errno;
    close_and_unlink(f);
    return err_set(e, ERR_IO, "%s: %s: %s", f->path, what, strerror(er));
}

int file_out_open(struct file_out *f, const char *path, struct err *e)
{
    f->fd = -1;
    f->tmp[0] = '\0';
    f->path[0] = '\0';
    f->bytes = 0;
    size_t n = path ? strlen(path) : 0;
    if (n == 0)
        return err_set(e, ERR_INPUT, "empty output path");
    if (n >= sizeof f->path)
        return err_set(e, ERR_INPUT, "output path too long (%zu bytes)", n);
    memcpy(f->path, path, n + 1);
    memcpy(f->tmp, path, n);
    memcpy(f->tmp + n, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    f->fd = mkstemp(f->tmp);
    if (f->fd < 0) {
        int er = errno;
        f->tmp[0] = '\0';
        return err_set(e, ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                       strerror(er));
    }
    /* mkstemp makes 0600; ours are plain data files, readable as any other. */
    mode_t um = umask(0);
    umask(um);
    if (fchmod(f->fd, 0644 & ~um))
        return fail(f, "chmod", e);
    return 0;
}

int file_out_write(struct file_out *f, const void *buf, size_t n, struct err *e)
{
    if (f->fd < 0)
        return err_set(e, ERR_INTERNAL, "file_out_write on a closed file");
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return fail(f, "write failed", e);
        }
        if (w == 0) {
            errno = ENOSPC;
            return fail(f, "write failed", e);
        }
        p += w;
        n -= (size_t)w;
        f->bytes += w;
    }
    return 0;
}

int file_out_printf(struct file_out *f, struct err *e, const char *fmt, ...)
{
    char small[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        close_and_unlink(f);
        return err_set(e, ERR_INTERNAL, "%s: formatting failed", f->path);
    }
    if ((size_t)n < sizeof small)
        return file_out_write(f, small, (size_t)n, e);
    char *big = malloc((size_t)n + 1);
    if (!big) {
        close_and_unlink(f);
        return err_set(e, ERR_NOMEM, "%s: out of memory", f->path);
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = file_out_write(f, big, (size_t)n, e);
    free(big);
    return rc;
}

int file_sync_dir(const char *path, struct err *e)
{
    char dir[FILE_PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof dir)
        return err_set(e, ERR_INPUT, "path too long");
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    /* Some file systems refuse fsync on a folder (EINVAL): nothing to wait for. */
    int rc = 0;
    if (fsync(fd) && errno != EINVAL && errno != EROFS)
        rc = err_set(e, ERR_IO, "%s: fsync of folder failed: %s", dir, strerror(errno));
    close(fd);
    return rc;
}

int file_out_commit(struct file_out *f, struct err *e)
{
    if (f->fd < 0)
        return err_set(e, ERR_INTERNAL, "file_out_commit on a closed file");
    if (fsync(f->fd))
        return fail(f, "fsync failed", e);
    int fd = f->fd;
    f->fd = -1;
    if (close(fd)) {
        errno = errno ? errno : EIO;
        return fail(f, "close failed", e);
    }
    if (rename(f->tmp, f->path))
        return fail(f, "rename failed", e);
    f->tmp[0] = '\0';
    return file_sync_dir(f->path, e);
}

void file_out_abort(struct file_out *f)
{
    close_and_unlink(f);
}

int file_replace(const char *path, const void *buf, size_t n, struct err *e)
{
    struct file_out f;
    int rc = file_out_open(&f, path, e);
    if (!rc)
        rc = file_out_write(&f, buf, n, e);
    if (!rc)
        rc = file_out_commit(&f, e);
    return rc;
}

int file_rename_durable(const char *from, const char *to, struct err *e)
{
    int fd = open(from, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, ERR_IO, "%s: %s", from, strerror(errno));
    int bad = fsync(fd);
    int er = errno;
    close(fd);
    if (bad)
        return err_set(e, ERR_IO, "%s: fsync failed: %s", from, strerror(er));
    if (rename(from, to))
        return err_set(e, ERR_IO, "cannot rename %s to %s: %s", from, to, strerror(errno));
    return file_sync_dir(to, e);
}
