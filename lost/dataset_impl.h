/* dataset_impl.h - private to lost/: what the dataset readers share, the
 * COCO image list (lost/dataset.c) and the streaming reader of the COCO
 * instances JSON (lost/dataset_coco.c). Nobody outside lost/ includes it. */
#ifndef LOSTD_DATASET_IMPL_H
#define LOSTD_DATASET_IMPL_H

#include <stddef.h>

#include "dataset.h"

/* One image of the COCO 20k selection: dataset.c fills id, file and rel
 * from coco_20k_filenames.txt; dataset_coco_read fills the rest. */
struct coco_image {
    long id;
    char file[DATASET_ID_MAX];  /* basename, e.g. COCO_train2014_000000000009.jpg */
    char rel[DATASET_PATH_MAX]; /* the coco_20k_filenames.txt line */
    int width, height;          /* from "images", 0 when absent or not a positive integer */
    int n_obj, n_crowd, cap;    /* n_obj -1: an annotation had a malformed bbox */
    struct dataset_object *obj; /* [cap], malloc'd; dataset_free frees it */
    int in_json;                /* listed in the JSON "images" */
};

/* Reads the COCO instances JSON at path in one pass, chunk bytes at a time
 * (0: DATASET_COCO_CHUNK), and fills the images of img [n], sorted by
 * ascending id, with what LOST's `extract_gt_COCO` takes from them: size,
 * non-crowd boxes in file order, crowd count. Everything else in the file is
 * parsed and dropped. Returns 0, or ERR_NOTFOUND / ERR_IO (open, read),
 * ERR_INPUT (malformed or truncated JSON, with the byte offset; no
 * "annotations" array), ERR_NOMEM, with e->msg naming path. On failure the
 * images hold partial results: the caller frees them and drops the dataset. */
int dataset_coco_read(const char *path, size_t chunk, struct coco_image *img, long n,
                      struct err *e);

#endif
