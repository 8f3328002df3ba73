/* test_tensor.c - .npy reading and writing: round trips, the fixture input
 * tensor, and the malformed headers and sizes the reader must refuse. Run
 * from the repository root; scratch files go to a mkdtemp directory. */
#include "check.h"
#include "err.h"
#include "tensor.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

static char dir[64];

static const char *tmp_path(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Writes magic + version + header (padded to 64 with '\n' at the end, unless
 * pad is 0, in which case it ends right after the dict) + nbytes of data. */
static void write_npy(const char *path, int major, const char *dict, size_t nbytes,
                      int pad)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t total = pre + dl + 1;
    if (pad)
        total = (total + 63) / 64 * 64;
    size_t hlen = total - pre;
    fwrite("\x93NUMPY", 1, 6, f);
    fputc(major, f);
    fputc(0, f);
    fputc((int)(hlen & 0xff), f);
    fputc((int)((hlen >> 8) & 0xff), f);
    if (major != 1) {
        fputc(0, f);
        fputc(0, f);
    }
    fwrite(dict, 1, dl, f);
    for (size_t i = pre + dl; i + 1 < total; i++)
        fputc(' ', f);
    fputc('\n', f);
    for (size_t i = 0; i < nbytes; i++)
        fputc((int)(i & 0xff), f);
    fclose(f);
}

static int load_code(const char *path, size_t max_bytes)
{
    struct tensor t;
    struct err e = {0};
    int rc = tensor_load_npy(path, max_bytes, &t, &e);
    if (rc == 0)
        tensor_free(&t);
    else if (e.msg[0] == '\0')
        return 1000;  /* an error without a message is a bug */
    return rc;
}

static int count_dir_entries(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *de; (de = readdir(d));)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/lostd_test_tensor.XXXXXX");
    if (!mkdtemp(dir)) {
        printf("FAIL setup: mkdtemp\n");
        return 1;
    }

    CHECK_CASE("npy_round_trip", {
        float x[2 * 3 * 4];
        for (int i = 0; i < 24; i++)
            x[i] = (float)i * 0.37f - 3.5f;
        x[5] = -0.0f;
        x[7] = 1e-38f;
        long shape[3] = {2, 3, 4};
        struct err e = {0};
        const char *p = tmp_path("a.npy");
        int rc = tensor_save_npy(p, x, 3, shape, &e);
        CHECK(rc == 0, "save: %s", e.msg);
        CHECK((file_size(p) - 24 * 4) % 64 == 0, "data not 64-aligned: size %ld",
              file_size(p));
        struct tensor t;
        rc = tensor_load_npy(p, 0, &t, &e);
        CHECK(rc == 0, "load: %s", e.msg);
        if (rc == 0) {
            CHECK(t.ndim == 3 && t.shape[0] == 2 && t.shape[1] == 3 && t.shape[2] == 4,
                  "shape %d [%ld %ld %ld]", t.ndim, t.shape[0], t.shape[1], t.shape[2]);
            CHECK(tensor_numel(&t) == 24, "numel %zu", tensor_numel(&t));
            CHECK(memcmp(t.data, x, sizeof x) == 0, "data differs");
            tensor_free(&t);
            CHECK(t.data == NULL && t.ndim == 0, "tensor_free does not zero");
        }
        tensor_free(NULL);
        CHECK(count_dir_entries() == 1, "temporary file left behind");
    });

    CHECK_CASE("npy_round_trip_shapes", {
        struct err e = {0};
        float v[5] = {1, 2, 3, 4, 5};
        long s1[1] = {5}, s0[2] = {0, 7};
        struct tensor t;
        /* 1-D needs the "(5,)" tuple spelling; 0-D is "()"; empty dims too. */
        CHECK(tensor_save_npy(tmp_path("v.npy"), v, 1, s1, &e) == 0, "%s", e.msg);
        CHECK(tensor_load_npy(tmp_path("v.npy"), 0, &t, &e) == 0, "%s", e.msg);
        CHECK(t.ndim == 1 && t.shape[0] == 5 && t.data[4] == 5.0f, "1-D read back wrong");
        tensor_free(&t);
        CHECK(tensor_save_npy(tmp_path("s.npy"), v + 2, 0, NULL, &e) == 0, "%s", e.msg);
        CHECK(tensor_load_npy(tmp_path("s.npy"), 0, &t, &e) == 0, "%s", e.msg);
        CHECK(t.ndim == 0 && tensor_numel(&t) == 1 && t.data[0] == 3.0f, "0-D wrong");
        tensor_free(&t);
        CHECK(tensor_save_npy(tmp_path("z.npy"), NULL, 2, s0, &e) == 0, "%s", e.msg);
        CHECK(tensor_load_npy(tmp_path("z.npy"), 0, &t, &e) == 0, "%s", e.msg);
        CHECK(t.ndim == 2 && tensor_numel(&t) == 0 && t.shape[1] == 7, "empty wrong");
        tensor_free(&t);
        /* Overwrite in place goes through rename as well. */
        CHECK(tensor_save_npy(tmp_path("v.npy"), v, 1, s1, &e) == 0, "%s", e.msg);
        long s5[5] = {1, 1, 1, 1, 1}, neg[1] = {-1};
        CHECK(tensor_save_npy(tmp_path("x.npy"), v, 5, s5, &e) == ERR_INPUT, "5 dims saved");
        CHECK(tensor_save_npy(tmp_path("x.npy"), v, 1, neg, &e) == ERR_INPUT, "-1 saved");
        CHECK(tensor_save_npy("/nonexistent-dir/x.npy", v, 1, s1, &e) == ERR_IO,
              "save into a missing directory");
        CHECK(count_dir_entries() == 4, "stray files: %d", count_dir_entries());
    });

    CHECK_CASE("npy_versions_and_spellings", {
        struct tensor t;
        struct err e = {0};
        const char *ok[] = {
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            "{\"shape\": (2,3), \"descr\": \"<f4\", \"fortran_order\": False}",
            "{'descr':'<f4','fortran_order':False,'shape':(2L, 3L)}",
        };
        for (int i = 0; i < 3; i++) {
            write_npy(tmp_path("h.npy"), 1, ok[i], 24, 1);
            int rc = tensor_load_npy(tmp_path("h.npy"), 0, &t, &e);
            CHECK(rc == 0, "header %d: %s", i, e.msg);
            if (!rc) {
                CHECK(t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 3, "shape %d", i);
                tensor_free(&t);
            }
        }
        for (int major = 2; major <= 3; major++) {
            write_npy(tmp_path("h.npy"), major, ok[0], 24, 1);
            CHECK(load_code(tmp_path("h.npy"), 0) == 0, "version %d.0 refused", major);
        }
        /* Header not padded to 64: still valid .npy. */
        write_npy(tmp_path("h.npy"), 1, ok[0], 24, 0);
        CHECK(load_code(tmp_path("h.npy"), 0) == 0, "unpadded header refused");
    });

    CHECK_CASE("npy_rejects_bad_files", {
        const char *p = tmp_path("bad.npy");
        static const struct {
            const char *dict;
            size_t nbytes;
            const char *why;
        } bad[] = {
            {"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 48, "f8"},
            {"{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24, "big-end"},
            {"{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }", 24, "int32"},
            {"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }", 6, "uint8"},
            {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24, "fortran"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20, "short"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0, "no data"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28, "extra"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", 24, "neg"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1), }", 4, "5-D"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (6), }", 24, "(6)"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }", 24, "list"},
            {"{'descr': '<f4', 'fortran_order': False}", 4, "no shape"},
            {"{'descr': '<f4', 'shape': (1,)}", 4, "no order"},
            {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4,
             "dup key"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4, "key"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk", 4, "junk"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", 4, "no brace"},
            {"{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", 4, "order 0"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': "
             "(99999999999999999999,)}", 4, "huge dim"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': "
             "(4611686018427387904, 4)}", 4, "overflow"},
            {"", 4, "empty header"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            write_npy(p, 1, bad[i].dict, bad[i].nbytes, 1);
            int rc = load_code(p, 0);
            CHECK(rc == ERR_INPUT, "%s: got %d", bad[i].why, rc);
        }
        /* Preamble damage: magic, version, header length past the end. */
        write_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4, 1);
        FILE *f = fopen(p, "r+b");
        if (f) {
            fseek(f, 6, SEEK_SET);
            fputc(4, f);  /* version 4.0 */
            fclose(f);
        }
        CHECK(load_code(p, 0) == ERR_INPUT, "version 4.0 accepted");
        f = fopen(p, "r+b");
        if (f) {
            fseek(f, 6, SEEK_SET);
            fputc(1, f);
            fputc(0, f);
            fputc(0xff, f);  /* header length 0xff.. beyond the file */
            fputc(0x7f, f);
            fclose(f);
        }
        CHECK(load_code(p, 0) == ERR_INPUT, "header past end accepted");
        f = fopen(p, "wb");
        if (f) {
            fwrite("\x93NUMPX\x01\x00", 1, 8, f);
            fclose(f);
        }
        CHECK(load_code(p, 0) == ERR_INPUT, "bad magic accepted");
        f = fopen(p, "wb");
        if (f)
            fclose(f);
        CHECK(load_code(p, 0) == ERR_INPUT, "empty file accepted");
        /* Truncate a valid file at every length: always ERR_INPUT, never a crash. */
        float x[6] = {0};
        long s[2] = {2, 3};
        struct err e = {0};
        tensor_save_npy(tmp_path("full.npy"), x, 2, s, &e);
        long full = file_size(tmp_path("full.npy"));
        int wrong = 0;
        for (long cut = 0; cut < full; cut++) {
            if (truncate(tmp_path("full.npy"), cut) != 0)
                break;
            if (load_code(tmp_path("full.npy"), 0) != ERR_INPUT)
                wrong++;
            tensor_save_npy(tmp_path("full.npy"), x, 2, s, &e);
        }
        CHECK(wrong == 0, "%d truncations not refused", wrong);
        CHECK(load_code(tmp_path("full.npy"), 0) == 0, "untruncated refused");
        CHECK(load_code(tmp_path("full.npy"), 23) == ERR_TOOBIG, "max_bytes ignored");
        CHECK(load_code(tmp_path("full.npy"), 24) == 0, "max_bytes off by one");
        CHECK(load_code(tmp_path("missing.npy"), 0) == ERR_IO, "missing file");
        CHECK(load_code(dir, 0) == ERR_IO, "directory");
    });

    CHECK_CASE("npy_fixture_input", {
        struct tensor t;
        struct err e = {0};
        int rc = tensor_load_npy("tests/fixtures/vit/tiny/voc_pad/input.npy", 0, &t, &e);
        CHECK(rc == 0, "%s", e.msg);
        if (!rc) {
            CHECK(t.ndim == 3 && t.shape[0] == 3 && t.shape[1] == 392 && t.shape[2] == 504,
                  "shape %d [%ld %ld %ld]", t.ndim, t.shape[0], t.shape[1], t.shape[2]);
            /* Bottom-right corner is padding: exactly zero. */
            CHECK(t.data[tensor_numel(&t) - 1] == 0.0f, "padding not zero");
            tensor_free(&t);
        }
    });

    /* Clean up the scratch directory. */
    DIR *d = opendir(dir);
    if (d) {
        for (struct dirent *de; (de = readdir(d));) {
            if (de->d_name[0] != '.')
                unlink(tmp_path(de->d_name));
        }
        closedir(d);
    }
    rmdir(dir);
    return check_status();
}
