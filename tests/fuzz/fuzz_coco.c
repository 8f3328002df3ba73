/* fuzz_coco.c - the COCO 20k reader: the image list (coco_20k_filenames.txt)
 * and the annotation JSON, written to a private temporary folder and read
 * with dataset_coco_load + dataset_get on every item. The input is the list,
 * a NUL byte, then the JSON; without a NUL it is all JSON and the list names
 * three fixed images. The JSON is streamed twice, in the default 64 KiB reads
 * and in reads of 1 to 7 bytes (tokens split across reads): both loads must
 * give the same error or the same items, else the target traps. */
#include "fuzz.h"

#include "dataset.h"
#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_coco_root[256];

static int coco_write(const char *rel, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_coco_root, rel);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static void coco_cleanup(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/annotations/instances_train2014.json", fuzz_coco_root);
    unlink(path);
    snprintf(path, sizeof path, "%s/coco_20k_filenames.txt", fuzz_coco_root);
    unlink(path);
    snprintf(path, sizeof path, "%s/annotations", fuzz_coco_root);
    rmdir(path);
    rmdir(fuzz_coco_root);
}

/* Whether two loads of the same files hand out the same items. */
static int coco_same(const struct dataset *a, const struct dataset *b)
{
    if (dataset_size(a) != dataset_size(b))
        return 0;
    for (long i = 0; i < dataset_size(a); i++) {
        struct dataset_item x, y;
        struct err e;
        int rx = dataset_get(a, i, &x, &e), ry = dataset_get(b, i, &y, &e);
        int same = rx == ry;
        if (same && !rx)
            same = !strcmp(x.id, y.id) && !strcmp(x.file, y.file) && !strcmp(x.path, y.path) &&
                   x.width == y.width && x.height == y.height && x.n_obj == y.n_obj &&
                   x.n_dropped == y.n_dropped && x.error.code == y.error.code &&
                   !strcmp(x.error.msg, y.error.msg) &&
                   (!x.n_obj || !memcmp(x.obj, y.obj, (size_t)x.n_obj * sizeof *x.obj));
        dataset_item_free(&x);
        dataset_item_free(&y);
        if (!same)
            return 0;
    }
    return 1;
}

int FUZZ_ONE(const uint8_t *data, size_t size)
{
    if (!fuzz_coco_root[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(fuzz_coco_root, sizeof fuzz_coco_root, "%s/lostd-fuzz-coco-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(fuzz_coco_root))
            return 0;
        char ann[300];
        snprintf(ann, sizeof ann, "%s/annotations", fuzz_coco_root);
        mkdir(ann, 0700);
        atexit(coco_cleanup);
    }
    static const char list_default[] =
        "train2014/COCO_train2014_000000000009.jpg\n"
        "train2014/COCO_train2014_000000000025.jpg\n"
        "train2014/COCO_train2014_000000000030.jpg\n";
    const uint8_t *nul = memchr(data, 0, size);
    const void *list = list_default, *json = data;
    size_t n_list = sizeof list_default - 1, n_json = size;
    if (nul) {
        list = data;
        n_list = (size_t)(nul - data);
        json = nul + 1;
        n_json = size - n_list - 1;
    }
    if (coco_write("coco_20k_filenames.txt", list, n_list) ||
        coco_write("annotations/instances_train2014.json", json, n_json))
        return 0;
    struct dataset *d = NULL, *d2 = NULL;
    struct err e, e2;
    err_clear(&e);
    err_clear(&e2);
    int rc = dataset_coco_load(fuzz_coco_root, 0, &d, &e);
    int rc2 = dataset_coco_load(fuzz_coco_root, 1 + size % 7, &d2, &e2);
    if (rc != rc2 || (rc && strcmp(e.msg, e2.msg)) || (!rc && !coco_same(d, d2)))
        __builtin_trap();
    if (rc == 0) {
        for (long i = 0; i < dataset_size(d); i++) {
            struct dataset_item item;
            if (dataset_get(d, i, &item, &e) == 0) {
                for (int k = 0; k < item.n_obj; k++)
                    if (!memchr(item.obj[k].name, 0, sizeof item.obj[k].name))
                        __builtin_trap();
                dataset_item_free(&item);
            }
        }
    }
    dataset_free(d);
    dataset_free(d2);
    return 0;
}
