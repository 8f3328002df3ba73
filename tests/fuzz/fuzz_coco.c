/* fuzz_coco.c - the COCO 20k reader: the image list (coco_20k_filenames.txt)
 * and the annotation JSON, written to a private temporary folder and read
 * with dataset_load + dataset_get on every item. The input is the list, a
 * NUL byte, then the JSON; without a NUL it is all JSON and the list names
 * three fixed images. */
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
    struct dataset *d = NULL;
    struct err e;
    err_clear(&e);
    if (dataset_load(DATASET_COCO20K, fuzz_coco_root, NULL, 0, &d, &e) == 0) {
        for (long i = 0; i < dataset_size(d); i++) {
            struct dataset_item item;
            if (dataset_get(d, i, &item, &e) == 0) {
                for (int k = 0; k < item.n_obj; k++)
                    if (!memchr(item.obj[k].name, 0, sizeof item.obj[k].name))
                        __builtin_trap();
                dataset_item_free(&item);
            }
        }
        dataset_free(d);
    }
    return 0;
}
