/* dataset.h - the evaluation datasets of LOST: PASCAL VOC 2007 / 2012 and
 * COCO 20k. A dataset yields items in dataset order (VOC: the order of the
 * set file; COCO: ascending image id); an item is one image path plus its
 * ground-truth boxes, read as LOST's datasets.py does (docs/specs/lost.md 5).
 * A missing or corrupt annotation is reported on its item (item->error),
 * never as a failure of the whole dataset. Reads files only; never prints.
 * After dataset_load returns, the dataset is read-only: dataset_get may be
 * called from several threads, each with its own item. */
#ifndef LOSTD_DATASET_H
#define LOSTD_DATASET_H

#include "err.h"

#include <stddef.h>

enum dataset_kind {
    DATASET_VOC07,
    DATASET_VOC12,
    DATASET_COCO20K
};

#define DATASET_ID_MAX 64
#define DATASET_PATH_MAX 1024
#define DATASET_NAME_MAX 32
#define DATASET_XML_MAX (4u << 20)  /* one VOC annotation file, bytes */
#define DATASET_COCO_CHUNK (64u << 10) /* the COCO JSON is read this much at a time */

struct dataset_object {
    float box[4];           /* x1, y1, x2, y2 pixels, x2/y2 exclusive, integer-valued:
                             * VOC (xmin-1, ymin-1, xmax, ymax); COCO rint(x), rint(y),
                             * rint(x+w), rint(y+h) */
    char name[DATASET_NAME_MAX]; /* VOC class name, COCO category id as text */
    int difficult, truncated;   /* VOC flags: 1 iff the tag text is "1" (missing = 0) */
};

struct dataset_item {
    long index;                  /* position in dataset order */
    char id[DATASET_ID_MAX];     /* VOC: the set-file line ("000005"); COCO: str(image id) */
    char file[DATASET_ID_MAX];   /* image file name: VOC <filename> ("000005.jpg", upstream's
                                  * key; id + ".jpg" if absent), COCO "COCO_train2014_...jpg" */
    char path[DATASET_PATH_MAX]; /* image path under the dataset root */
    int width, height;           /* from the annotation, 0 when unknown */
    int n_obj;                   /* objects kept (after no_hard) */
    int n_dropped;               /* objects dropped by no_hard (VOC), crowd boxes (COCO) */
    struct dataset_object *obj;  /* [n_obj], malloc'd: dataset_item_free */
    struct err error;            /* code 0, or why this item cannot be evaluated: annotation
                                  * missing/corrupt, no ground truth without no_hard */
};

struct dataset;

/* "voc07", "voc12", "coco20k" (case-insensitive) -> kind. Returns 0 or ERR_INPUT. */
int dataset_kind_parse(const char *name, enum dataset_kind *kind, struct err *e);

/* The short name above for kind. Cannot fail. */
const char *dataset_kind_name(enum dataset_kind kind);

/* Opens a dataset under root.
 * VOC: root is the folder holding VOCdevkit/ (VOCdevkit/VOC2007), the
 * upstream datasets/ folder (VOC2007/VOCdevkit/VOC2007), or the VOC2007 /
 * VOC2012 folder itself; reads ImageSets/Main/<set>.txt (set NULL =
 * "trainval"); annotations are parsed lazily by dataset_get.
 * COCO20k: root holds annotations/instances_train2014.json (or upstream's
 * filtered instances_train2014_sel20k.json, preferred when present),
 * images/train2014/ and coco_20k_filenames.txt (or it sits in root/..).
 * The JSON is streamed through once here, DATASET_COCO_CHUNK bytes at a
 * time, keeping only the listed images' sizes and boxes: memory follows the
 * list, not the file (the official 340 MB file: under 150 MB peak for the
 * 20k list). A malformed or truncated JSON is ERR_INPUT naming the file and
 * the byte offset. set is ignored.
 * no_hard (VOC): drop truncated/difficult objects; an image left empty is
 * then an item with n_obj 0 and no error (the protocol skips it).
 * Returns 0 and *out (free with dataset_free), or ERR_NOTFOUND (layout not
 * found), ERR_IO, ERR_INPUT (bad set file / JSON), ERR_NOMEM. */
int dataset_load(enum dataset_kind kind, const char *root, const char *set, int no_hard,
                 struct dataset **out, struct err *e);

/* dataset_load(DATASET_COCO20K, root, NULL, 0, out, e) with the JSON fed to
 * the parser chunk bytes at a time (0: DATASET_COCO_CHUNK). The result does
 * not depend on chunk; tests and the fuzzer pass tiny ones, which split
 * every token across reads. Same returns as dataset_load. */
int dataset_coco_load(const char *root, size_t chunk, struct dataset **out, struct err *e);

/* Frees d. dataset_free(NULL) is a no-op. */
void dataset_free(struct dataset *d);

/* Number of items. Cannot fail. */
long dataset_size(const struct dataset *d);

/* Fills item (caller memory; item->obj malloc'd, release with
 * dataset_item_free) with item i. A missing or corrupt annotation still
 * returns 0, with item->error set. Returns ERR_INPUT for i out of range,
 * ERR_NOMEM. */
int dataset_get(const struct dataset *d, long i, struct dataset_item *item, struct err *e);

/* Frees item->obj and zeroes the item. NULL is a no-op. */
void dataset_item_free(struct dataset_item *item);

/* Parses one VOC annotation held in memory into item (objects, filename,
 * size), as torchvision's VOCDetection + LOST's extract_gt_VOC read it:
 * root element <annotation>; coordinates must be integer text (else the
 * item is corrupt); difficult/truncated count when their text is "1".
 * Returns 0, or ERR_INPUT (malformed XML, missing bndbox coordinate,
 * non-integer coordinate) / ERR_NOMEM with e->msg set; item->obj is then
 * NULL. Used by dataset_get; public for tests. */
int dataset_voc_parse(const char *xml, size_t len, int no_hard, struct dataset_item *item,
                      struct err *e);

#endif
