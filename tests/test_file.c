/* test_file.c - file_replace and friends (core/file.c): content and mode of
 * the result, and that every failure (a full disk, a file size limit, a
 * missing folder) leaves the old file intact and no temporary file behind. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "err.h"
#include "file.h"

static char dir[256];

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 20);
    *n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

/* Files in d whose name holds ".tmp." */
static int count_tmp(const char *d)
{
    DIR *dp = opendir(d);
    if (!dp)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dp)))
        n += strstr(de->d_name, ".tmp.") != NULL;
    closedir(dp);
    return n;
}

static int same_file(const char *path, const char *want)
{
    size_t n = 0;
    char *got = slurp(path, &n);
    int ok = got && n == strlen(want) && memcmp(got, want, n) == 0;
    free(got);
    return ok;
}

/* Writes `big` bytes over path with file_replace; must fail and keep "old". */
static void check_failure_keeps_old(const char *d, size_t big, const char *why)
{
    char path[512];
    snprintf(path, sizeof path, "%s/out.json", d);
    struct err e;
    err_clear(&e);
    CHECK(file_replace(path, "old", 3, &e) == 0, "%s: first write: %s", why, e.msg);
    char *buf = malloc(big);
    memset(buf, 'x', big);
    err_clear(&e);
    int rc = file_replace(path, buf, big, &e);
    free(buf);
    CHECK(rc == ERR_IO, "%s: rc %d, want ERR_IO", why, rc);
    CHECK(strstr(e.msg, "out.json") != NULL, "%s: message names the file: %s", why, e.msg);
    CHECK(same_file(path, "old"), "%s: the old content is gone", why);
    CHECK(count_tmp(d) == 0, "%s: %d temporary files left", why, count_tmp(d));
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/lostd-test-file-XXXXXX");
    if (!mkdtemp(dir)) {
        printf("FAIL setup: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/a.txt", dir);

    CHECK_CASE("file_replace writes the content with mode 0644 and no temporary", {
        struct err e;
        err_clear(&e);
        mode_t old = umask(022);
        CHECK(file_replace(path, "hello\n", 6, &e) == 0, "%s", e.msg);
        umask(old);
        CHECK(same_file(path, "hello\n"), "content differs");
        struct stat st;
        CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644, "mode %o",
              (unsigned)(st.st_mode & 0777));
        CHECK(count_tmp(dir) == 0, "temporary left");
    });

    CHECK_CASE("file_replace over an existing file, and an empty file", {
        struct err e;
        err_clear(&e);
        CHECK(file_replace(path, "second", 6, &e) == 0, "%s", e.msg);
        CHECK(same_file(path, "second"), "not replaced");
        CHECK(file_replace(path, "", 0, &e) == 0, "%s", e.msg);
        CHECK(same_file(path, ""), "not emptied");
    });

    CHECK_CASE("file_out_printf longer than its stack buffer, then commit", {
        struct err e;
        err_clear(&e);
        struct file_out f;
        char *want = malloc(5001);
        memset(want, 'y', 5000);
        want[5000] = '\0';
        CHECK(file_out_open(&f, path, &e) == 0, "%s", e.msg);
        CHECK(file_out_printf(&f, &e, "%s", want) == 0, "%s", e.msg);
        CHECK(f.bytes == 5000, "bytes %lld", f.bytes);
        CHECK(file_out_commit(&f, &e) == 0, "%s", e.msg);
        CHECK(same_file(path, want), "content differs");
        free(want);
    });

    CHECK_CASE("file_out_abort removes the temporary and keeps the old file", {
        struct err e;
        err_clear(&e);
        CHECK(file_replace(path, "keep", 4, &e) == 0, "%s", e.msg);
        struct file_out f;
        CHECK(file_out_open(&f, path, &e) == 0, "%s", e.msg);
        CHECK(file_out_write(&f, "partial", 7, &e) == 0, "%s", e.msg);
        CHECK(count_tmp(dir) == 1, "no temporary while writing");
        file_out_abort(&f);
        file_out_abort(&f);  /* twice: a no-op */
        CHECK(count_tmp(dir) == 0, "temporary left");
        CHECK(same_file(path, "keep"), "old content gone");
    });

    CHECK_CASE("missing folder, empty path: a clear error, nothing written", {
        struct err e;
        err_clear(&e);
        CHECK(file_replace("/nonexistent-lostd/x/y.json", "a", 1, &e) == ERR_IO, "rc");
        CHECK(strstr(e.msg, "/nonexistent-lostd/x/y.json") && strstr(e.msg, "No such file"),
              "message: %s", e.msg);
        err_clear(&e);
        CHECK(file_replace("", "a", 1, &e) == ERR_INPUT, "empty path accepted");
    });

    CHECK_CASE("a file size limit hit mid-write (EFBIG) keeps the old file", {
        /* An injected write error that needs no privilege: RLIMIT_FSIZE. */
        struct rlimit old, lim;
        getrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, SIG_IGN);
        lim = old;
        lim.rlim_cur = 64 * 1024;
        char path2[512];
        snprintf(path2, sizeof path2, "%s/out.json", dir);
        struct err e;
        err_clear(&e);
        CHECK(file_replace(path2, "old", 3, &e) == 0, "%s", e.msg);
        CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit: %s", strerror(errno));
        check_failure_keeps_old(dir, 256 * 1024, "RLIMIT_FSIZE");
        setrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, SIG_DFL);
    });

    /* A real full disk: a 64 KiB tmpfs, where we may mount one (root with
     * CAP_SYS_ADMIN); elsewhere the RLIMIT_FSIZE case above stands in. */
    char mnt[300];
    snprintf(mnt, sizeof mnt, "%s/tmpfs", dir);
    mkdir(mnt, 0755);
    if (mount("lostd-test", mnt, "tmpfs", 0, "size=64k") == 0) {
        CHECK_CASE("a full disk (64 KiB tmpfs) keeps the old file, no temporary", {
            check_failure_keeps_old(mnt, 1024 * 1024, "ENOSPC");
        });
        umount(mnt);
    } else {
        printf("SKIP full-disk case: cannot mount a tmpfs here (%s); "
               "the RLIMIT_FSIZE case covers the write failure\n", strerror(errno));
    }
    rmdir(mnt);

    CHECK_CASE("file_rename_durable moves a journal into place", {
        char from[512];
        snprintf(from, sizeof from, "%s/j.part", dir);
        FILE *f = fopen(from, "w");
        fputs("line\n", f);
        fclose(f);
        struct err e;
        err_clear(&e);
        CHECK(file_rename_durable(from, path, &e) == 0, "%s", e.msg);
        CHECK(same_file(path, "line\n"), "content");
        CHECK(access(from, F_OK) != 0, "source still there");
        err_clear(&e);
        CHECK(file_rename_durable(from, path, &e) == ERR_IO, "missing source accepted");
        CHECK(same_file(path, "line\n"), "target changed by a failed rename");
    });

    unlink(path);
    char p2[512];
    snprintf(p2, sizeof p2, "%s/out.json", dir);
    unlink(p2);
    rmdir(dir);
    return check_status();
}
