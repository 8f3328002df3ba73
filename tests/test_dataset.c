/* test_dataset.c - the VOC and COCO readers: XML with and without the
 * optional tags, parts inside objects, corrupt XML and coordinates, no_hard,
 * the VOC root layouts (in a temporary directory), the VOC12 fixture, and a
 * small COCO-format file made for the purpose (crowd boxes, .5 roundings,
 * ascending id order). Run from the repo root. */
#include "check.h"
#include "dataset.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *xml_full =
    "<annotation><folder>VOC2007</folder><filename>000005.jpg</filename>"
    "<size><width>500</width><height>375</height><depth>3</depth></size>"
    "<object><name>chair</name><pose>Rear</pose><truncated>0</truncated>"
    "<difficult>0</difficult><bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax>"
    "<ymax>339</ymax></bndbox></object>"
    "<object><name>person</name><truncated>1</truncated><difficult>0</difficult>"
    "<bndbox><xmin> 1 </xmin><ymin>1</ymin><xmax>500</xmax><ymax>375</ymax></bndbox>"
    "<part><name>head</name><bndbox><xmin>7</xmin><ymin>8</ymin><xmax>9</xmax>"
    "<ymax>10</ymax></bndbox></part></object>"
    "<object><name>chair</name><difficult>1</difficult><bndbox><xmin>5</xmin>"
    "<ymin>244</ymin><xmax>67</xmax><ymax>374</ymax></bndbox></object>"
    "</annotation>";

/* Reconstructed-style file: no size, no truncated/pose, no difficult. */
static const char *xml_min =
    "<annotation>\n\t<filename>2008_000008.jpg</filename>\n\t<object>\n\t\t<name>horse</name>"
    "\n\t\t<bndbox>\n\t\t\t<xmin>53</xmin>\n\t\t\t<ymin>87</ymin>\n\t\t\t<xmax>471</xmax>"
    "\n\t\t\t<ymax>420</ymax>\n\t\t</bndbox>\n\t</object>\n</annotation>\n";

static int box_is(const float *b, float x1, float y1, float x2, float y2)
{
    return b[0] == x1 && b[1] == y1 && b[2] == x2 && b[3] == y2;
}

static void case_voc_full(void)
{
    struct dataset_item it;
    struct err e;
    memset(&it, 0, sizeof it);
    int rc = dataset_voc_parse(xml_full, strlen(xml_full), 0, &it, &e);
    CHECK(rc == 0, "%s", e.msg);
    CHECK(!strcmp(it.file, "000005.jpg") && it.width == 500 && it.height == 375, "meta %s %dx%d",
          it.file, it.width, it.height);
    CHECK(it.n_obj == 3, "n_obj %d", it.n_obj);
    if (it.n_obj == 3) {
        CHECK(box_is(it.obj[0].box, 262, 210, 324, 339), "box 0");
        CHECK(box_is(it.obj[1].box, 0, 0, 500, 375), "box 1 (part bndbox leaked?) %g,%g,%g,%g",
              it.obj[1].box[0], it.obj[1].box[1], it.obj[1].box[2], it.obj[1].box[3]);
        CHECK(it.obj[1].truncated == 1 && it.obj[1].difficult == 0, "flags 1");
        CHECK(it.obj[2].difficult == 1 && it.obj[2].truncated == 0, "flags 2");
        CHECK(!strcmp(it.obj[1].name, "person"), "name '%s' (part name leaked?)",
              it.obj[1].name);
    }
    dataset_item_free(&it);
    rc = dataset_voc_parse(xml_full, strlen(xml_full), 1, &it, &e);
    CHECK(rc == 0 && it.n_obj == 1 && it.n_dropped == 2, "no_hard kept %d dropped %d",
          it.n_obj, it.n_dropped);
    dataset_item_free(&it);
}

static void case_voc_min(void)
{
    struct dataset_item it;
    struct err e;
    memset(&it, 0, sizeof it);
    int rc = dataset_voc_parse(xml_min, strlen(xml_min), 1, &it, &e);
    CHECK(rc == 0, "%s", e.msg);
    CHECK(it.width == 0 && it.height == 0, "size %dx%d", it.width, it.height);
    CHECK(it.n_obj == 1 && box_is(it.obj[0].box, 52, 86, 471, 420), "box");
    CHECK(it.obj[0].difficult == 0 && it.obj[0].truncated == 0, "missing tags must mean 0");
    dataset_item_free(&it);
}

static void expect_corrupt(const char *xml, const char *why)
{
    struct dataset_item it;
    struct err e;
    memset(&it, 0, sizeof it);
    err_clear(&e);
    int rc = dataset_voc_parse(xml, strlen(xml), 0, &it, &e);
    CHECK(rc == ERR_INPUT && it.obj == NULL && e.msg[0], "%s: rc %d", why, rc);
    dataset_item_free(&it);
}

static void case_voc_corrupt(void)
{
    expect_corrupt("<annotation><object><bndbox><xmin>1</xmin>", "truncated XML");
    expect_corrupt("garbage", "not XML");
    expect_corrupt("", "empty");
    expect_corrupt("<annotation><object><bndbox><xmin>1.5</xmin><ymin>1</ymin><xmax>3</xmax>"
                   "<ymax>4</ymax></bndbox></object></annotation>",
                   "float coordinate");
    expect_corrupt("<annotation><object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax>"
                   "</bndbox></object></annotation>",
                   "missing ymax");
    expect_corrupt("<annotation><object><name>x</name></object></annotation>", "no bndbox");
    expect_corrupt("<root><object/></root>", "wrong root");
}

/* ---- layout on disk ---- */

static char tmpdir[256];

static void write_file(const char *rel, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", tmpdir, rel);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void mkdirs(const char *rel)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", tmpdir, rel);
    for (char *s = p + strlen(tmpdir) + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

static void case_voc_layout(void)
{
    const char *b = "VOCdevkit/VOC2007";
    char rel[256];
    snprintf(rel, sizeof rel, "%s/Annotations", b);
    mkdirs(rel);
    snprintf(rel, sizeof rel, "%s/ImageSets/Main", b);
    mkdirs(rel);
    write_file("VOCdevkit/VOC2007/ImageSets/Main/trainval.txt",
               "000009\n000005\n\n000007\n000001\n000012\n");
    write_file("VOCdevkit/VOC2007/Annotations/000005.xml", xml_full);
    write_file("VOCdevkit/VOC2007/Annotations/000009.xml", xml_min);
    write_file("VOCdevkit/VOC2007/Annotations/000007.xml", "<annotation><object>");
    /* 000001: missing. 000012: every object is hard. */
    write_file("VOCdevkit/VOC2007/Annotations/000012.xml",
               "<annotation><object><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1"
               "</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>");
    const char *roots[3] = {tmpdir, NULL, NULL};
    char r2[512];
    snprintf(r2, sizeof r2, "%s/VOCdevkit/VOC2007", tmpdir);
    roots[1] = r2;
    /* upstream's datasets/ folder: datasets/VOC2007/VOCdevkit/VOC2007 */
    char r3[512], link[600];
    snprintf(r3, sizeof r3, "%s/datasets", tmpdir);
    mkdir(r3, 0755);
    snprintf(link, sizeof link, "%s/VOC2007", r3);
    roots[2] = symlink(tmpdir, link) == 0 ? r3 : NULL;
    CHECK(roots[2], "symlink");
    for (int ri = 0; ri < 3 && roots[ri]; ri++) {
        struct dataset *d = NULL;
        struct err e;
        int rc = dataset_load(DATASET_VOC07, roots[ri], NULL, 0, &d, &e);
        CHECK(rc == 0, "root %s: %s", roots[ri], e.msg);
        if (rc)
            continue;
        CHECK(dataset_size(d) == 5, "size %ld", dataset_size(d));
        const char *order[5] = {"000009", "000005", "000007", "000001", "000012"};
        for (long i = 0; i < dataset_size(d) && i < 5; i++) {
            struct dataset_item it;
            rc = dataset_get(d, i, &it, &e);
            CHECK(rc == 0, "get %ld: %s", i, e.msg);
            CHECK(!strcmp(it.id, order[i]), "item %ld id %s", i, it.id);
            if (i == 0)
                CHECK(!it.error.code && it.n_obj == 1 && !strcmp(it.file, "2008_000008.jpg") &&
                          strstr(it.path, "VOC2007/JPEGImages/2008_000008.jpg"),
                      "item 0: %s %s", it.path, it.error.msg);
            if (i == 1)
                CHECK(!it.error.code && it.n_obj == 3, "item 1");
            if (i == 2)
                CHECK(it.error.code == ERR_INPUT && it.n_obj == 0, "corrupt: %d", it.error.code);
            if (i == 3)
                CHECK(it.error.code == ERR_NOTFOUND && !strcmp(it.file, "000001.jpg"),
                      "missing: %d %s", it.error.code, it.file);
            if (i == 4)
                CHECK(!it.error.code && it.n_obj == 1, "hard object kept without no_hard");
            dataset_item_free(&it);
        }
        struct dataset_item it;
        CHECK(dataset_get(d, 5, &it, &e) == ERR_INPUT, "out of range accepted");
        dataset_free(d);
    }
    struct dataset *d = NULL;
    struct err e;
    CHECK(dataset_load(DATASET_VOC07, tmpdir, "trainval", 1, &d, &e) == 0, "%s", e.msg);
    struct dataset_item it;
    CHECK(d && dataset_get(d, 4, &it, &e) == 0, "get");
    CHECK(!it.error.code && it.n_obj == 0 && it.n_dropped == 1,
          "no_hard empty image: err %d n %d", it.error.code, it.n_obj);
    dataset_item_free(&it);
    dataset_free(d);
    CHECK(dataset_load(DATASET_VOC12, tmpdir, NULL, 0, &d, &e) == ERR_NOTFOUND,
          "VOC2012 found in a VOC2007 tree");
    CHECK(dataset_load(DATASET_VOC07, tmpdir, "val", 0, &d, &e) == ERR_NOTFOUND,
          "missing set file: %d", e.code);
    CHECK(dataset_load(DATASET_VOC07, "/nonexistent/dir", NULL, 0, &d, &e) == ERR_NOTFOUND,
          "missing root");
    CHECK(dataset_load(DATASET_VOC07, tmpdir, "../x", 0, &d, &e) == ERR_INPUT, "set with /");
    dataset_free(NULL);
    dataset_item_free(NULL);
}

static void case_voc12_fixture(void)
{
    struct dataset *d = NULL;
    struct err e;
    int rc = dataset_load(DATASET_VOC12, "tests/fixtures/voc2012", NULL, 0, &d, &e);
    CHECK(rc == 0, "%s", e.msg);
    if (rc)
        return;
    CHECK(dataset_size(d) == 40, "size %ld", dataset_size(d));
    struct dataset_item it;
    rc = dataset_get(d, 3, &it, &e);
    CHECK(rc == 0 && !it.error.code, "%s", it.error.msg);
    CHECK(!strcmp(it.id, "2008_000008") && it.n_obj == 2 &&
              box_is(it.obj[0].box, 52, 86, 471, 420) && box_is(it.obj[1].box, 157, 43, 289, 167),
          "2008_000008: %s n %d", it.id, it.n_obj);
    dataset_item_free(&it);
    int errors = 0;
    for (long i = 0; i < dataset_size(d); i++) {
        dataset_get(d, i, &it, &e);
        errors += it.error.code != 0;
        dataset_item_free(&it);
    }
    CHECK(errors == 0, "%d items with errors", errors);
    dataset_free(d);
}

static void case_coco(void)
{
    struct dataset *d = NULL;
    struct err e;
    enum dataset_kind k;
    CHECK(dataset_kind_parse("COCO20k", &k, &e) == 0 && k == DATASET_COCO20K, "kind");
    CHECK(dataset_kind_parse("voc2007", &k, &e) == ERR_INPUT, "bad kind accepted");
    int rc = dataset_load(DATASET_COCO20K, "tests/fixtures/coco20k", NULL, 0, &d, &e);
    CHECK(rc == 0, "%s", e.msg);
    if (rc)
        return;
    CHECK(dataset_size(d) == 30, "size %ld (999 is not in the 20k list)", dataset_size(d));
    long prev = -1;
    for (long i = 0; i < dataset_size(d); i++) {
        struct dataset_item it;
        dataset_get(d, i, &it, &e);
        long id = atol(it.id);
        CHECK(id > prev, "order: %ld after %ld", id, prev);
        prev = id;
        if (id == 9) {
            /* [0.5, 1.5, 2, 1] -> rint: 0, 2, rint(2.5) = 2, rint(2.5) = 2
             * [0.1, 2.5, 0.4, 0.5] -> 0, 2, rint(0.5) = 0, rint(3.0) = 3 */
            int f1 = 0, f2 = 0;
            for (int o = 0; o < it.n_obj; o++) {
                f1 |= box_is(it.obj[o].box, 0, 2, 2, 2);
                f2 |= box_is(it.obj[o].box, 0, 2, 0, 3);
            }
            CHECK(f1 && f2, "half-to-even rounding (%d, %d)", f1, f2);
            CHECK(!strcmp(it.file, "COCO_train2014_000000000009.jpg") &&
                      strstr(it.path, "coco20k/images/train2014/COCO_train2014_000000000009.jpg") &&
                      it.width > 0 && it.height > 0,
                  "meta %s %s", it.file, it.path);
        }
        if (id == 25)
            CHECK(it.error.code == ERR_INPUT && it.n_obj == 0 && it.n_dropped > 0,
                  "all-crowd image: %d", it.error.code);
        if (id == 30 || id == 36)
            CHECK(it.n_dropped == 1 && it.n_obj >= 0 && !it.error.code, "crowd dropped on %ld",
                  id);
        dataset_item_free(&it);
    }
    dataset_free(d);
}

static void case_coco_bad(void)
{
    mkdirs("coco/annotations");
    write_file("coco/coco_20k_filenames.txt", "train2014/COCO_train2014_000000000001.jpg\n");
    write_file("coco/annotations/instances_train2014.json", "{\"images\": [");
    char root[512];
    snprintf(root, sizeof root, "%s/coco", tmpdir);
    struct dataset *d = NULL;
    struct err e;
    CHECK(dataset_load(DATASET_COCO20K, root, NULL, 0, &d, &e) == ERR_INPUT, "bad JSON");
    write_file("coco/annotations/instances_train2014.json",
               "{\"images\": [{\"id\": 1}], \"annotations\": [{\"image_id\": 1, \"bbox\": "
               "[1, 2, \"x\", 4], \"iscrowd\": 0}]}");
    CHECK(dataset_load(DATASET_COCO20K, root, NULL, 0, &d, &e) == 0, "%s", e.msg);
    struct dataset_item it;
    CHECK(d && dataset_get(d, 0, &it, &e) == 0 && it.error.code == ERR_INPUT,
          "malformed bbox must mark its item");
    dataset_item_free(&it);
    dataset_free(d);
}

/* ---- COCO: the streaming reader --------------------------------------- */

/* Read sizes every COCO case runs at: one byte (every token split across
 * reads), a few odd ones, and the default. */
static const size_t coco_chunks[] = {1, 2, 3, 7, 61, 0};
#define N_CHUNKS (sizeof coco_chunks / sizeof coco_chunks[0])

/* Appends to out [cap] at *k, never past the end. */
static void app(char *out, size_t cap, size_t *k, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void app(char *out, size_t cap, size_t *k, const char *fmt, ...)
{
    if (*k >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *k, cap - *k, fmt, ap);
    va_end(ap);
    *k = n < 0 ? cap : *k + (size_t)n >= cap ? cap - 1 : *k + (size_t)n;
}

/* What the evaluation sees of a dataset: one line per item, id, size,
 * crowd boxes dropped, error code, then each box with its category. */
static void coco_describe(const struct dataset *d, char *out, size_t cap)
{
    size_t k = 0;
    out[0] = 0;
    for (long i = 0; i < dataset_size(d); i++) {
        struct dataset_item it;
        struct err e;
        if (dataset_get(d, i, &it, &e)) {
            app(out, cap, &k, "get %ld: %s\n", i, e.msg);
            continue;
        }
        app(out, cap, &k, "%s %dx%d drop %d err %d:", it.id, it.width, it.height, it.n_dropped,
            it.error.code);
        for (int o = 0; o < it.n_obj; o++)
            app(out, cap, &k, " [%g %g %g %g %s]", it.obj[o].box[0], it.obj[o].box[1],
                it.obj[o].box[2], it.obj[o].box[3], it.obj[o].name);
        app(out, cap, &k, "\n");
        dataset_item_free(&it);
    }
}

#define COCO_DESC 16384

/* Writes the list (ids) and json under tmpdir/cs, loads it with each read
 * size, and checks every size gives the same description or the same error
 * (an offset must not depend on where reads split). Returns the load's code;
 * desc gets the description or the error message. */
static int coco_run(const char *why, const long *ids, int n_ids, const char *json, size_t len,
                    char *desc)
{
    char p[1024], rel[64];
    mkdirs("cs/annotations");
    snprintf(p, sizeof p, "%s/cs/coco_20k_filenames.txt", tmpdir);
    FILE *f = fopen(p, "w");
    for (int i = 0; f && i < n_ids; i++)
        fprintf(f, "train2014/COCO_train2014_%012ld.jpg\n", ids[i]);
    if (f)
        fclose(f);
    snprintf(p, sizeof p, "%s/cs/annotations/instances_train2014.json", tmpdir);
    f = fopen(p, "wb");
    if (f) {
        fwrite(json, 1, len, f);
        fclose(f);
    }
    snprintf(rel, sizeof rel, "cs");
    snprintf(p, sizeof p, "%s/%s", tmpdir, rel);
    static char first[COCO_DESC], cur[COCO_DESC];
    int rc0 = 0;
    for (size_t c = 0; c < N_CHUNKS; c++) {
        struct dataset *d = NULL;
        struct err e;
        err_clear(&e);
        int rc = dataset_coco_load(p, coco_chunks[c], &d, &e);
        if (rc)
            snprintf(cur, sizeof cur, "%s", e.msg);
        else
            coco_describe(d, cur, sizeof cur);
        dataset_free(d);
        if (c == 0) {
            rc0 = rc;
            memcpy(first, cur, sizeof first);
        } else {
            CHECK(rc == rc0 && !strcmp(cur, first), "%s: read size %zu gives rc %d\n%s\n"
                  "where read size %zu gives rc %d\n%s", why, coco_chunks[c], rc, cur,
                  coco_chunks[0], rc0, first);
        }
    }
    memcpy(desc, first, COCO_DESC);
    return rc0;
}

static void coco_expect(const char *why, const long *ids, int n_ids, const char *json,
                        const char *want)
{
    static char desc[COCO_DESC];
    int rc = coco_run(why, ids, n_ids, json, strlen(json), desc);
    CHECK(rc == 0 && !strcmp(desc, want), "%s: rc %d, got\n%s\nwant\n%s", why, rc, desc, want);
}

/* The load must fail with ERR_INPUT and a message holding each of the
 * fragments given (NULL-terminated). */
#define COCO_BAD(why, json, ...) \
    coco_expect_error(why, json, strlen(json), __VA_ARGS__, (const char *)NULL)
static void coco_expect_error(const char *why, const char *json, size_t len, ...)
{
    static const long ids[] = {1, 2};
    static char desc[COCO_DESC];
    int rc = coco_run(why, ids, 2, json, len, desc);
    CHECK(rc == ERR_INPUT, "%s: rc %d (%s)", why, rc, desc);
    CHECK(strstr(desc, "instances_train2014.json"), "%s: file not named: %s", why, desc);
    va_list ap;
    va_start(ap, len);
    for (const char *frag; (frag = va_arg(ap, const char *));)
        CHECK(strstr(desc, frag), "%s: '%s' not in: %s", why, frag, desc);
    va_end(ap);
}

static const char coco_doc_keys[] =
    "{\"info\": {\"images\": [{\"id\": 1, \"width\": 5}], \"annotations\": 7},\n"
    " \"images\": [\n"
    "  {\"id\": 1, \"width\": 640, \"height\": 480, \"file_name\": \"a.jpg\"},\n"
    "  {\"height\": 300, \"file_name\": \"b.jpg\", \"license\": {\"id\": 2}, \"width\": 200,"
    " \"id\": 2},\n"
    "  {\"id\": 3.0, \"width\": 10.5, \"height\": -4},\n"
    "  {\"id\": \"4\", \"width\": 1, \"height\": 1},\n"
    "  7, [1, {\"id\": 5}], null],\n"
    " \"licenses\": [{\"id\": 1, \"name\": \"x\"}],\n"
    " \"annotations\": [\n"
    "  {\"segmentation\": [[1.5, 2.5, 3, 4, 5, 6]], \"area\": 3.5, \"iscrowd\": 0,"
    " \"image_id\": 1, \"bbox\": [0.5, 1.5, 2, 1], \"category_id\": 18, \"id\": 1},\n"
    "  {\"bbox\": [0.1, 2.5, 0.4, 0.5], \"category_id\": 3, \"id\": 2, \"image_id\": 1},\n"
    "  {\"image_id\": 1, \"iscrowd\": 1, \"segmentation\": {\"counts\": [0, 5, 3],"
    " \"size\": [4, 4]}, \"bbox\": [0, 0, 4, 4]},\n"
    "  {\"iscrowd\": true, \"bbox\": \"none\", \"image_id\": 2},\n"
    "  {\"extra\": {\"image_id\": 2, \"bbox\": [9, 9, 9, 9], \"iscrowd\": 0}, \"image_id\": 2,"
    " \"iscrowd\": 1.0, \"bbox\": [1, 1, 1, 1]},\n"
    "  {\"segmentation\": [[1, 2, 3, 4], [5, 6, 7, 8, [9]]], \"image_id\": 2, \"iscrowd\": 2,"
    " \"bbox\": [10, 20, 30, 40], \"category_id\": 7.0},\n"
    "  {\"segmentation\": {\"counts\": \"ab\\\"]}{[\\u00e9\", \"size\": [2, 2]},"
    " \"iscrowd\": false, \"image_id\": 3, \"bbox\": [-1.5, 1e2, 2.5E0, 0],"
    " \"category_id\": \"x\"},\n"
    "  {\"image_id\": 4, \"bbox\": [1, 1, 1, 1], \"iscrowd\": \"1\"},\n"
    "  {\"image_id\": 5, \"bbox\": [1, 2, 3, 4], \"score\": 1e-400},\n"
    "  {\"image_id\": 9, \"bbox\": [1, 2, 3, 4]},\n"
    "  \"stray\", null, [{\"image_id\": 1, \"bbox\": [7, 7, 7, 7]}]\n"
    " ],\n"
    " \"categories\": [{\"id\": 1}]}";

/* Key orders, crowd flags in every spelling, unknown keys holding objects
 * that look like annotations, polygons, RLE objects (list and string
 * counts), ids and sizes as reals and strings. */
static void case_coco_keys(void)
{
    static const long ids[] = {6, 5, 4, 3, 2, 1};
    coco_expect("keys", ids, 6, coco_doc_keys,
                /* [0.5, 1.5, 2, 1] -> rint 0, 2, rint(2.5) = 2, rint(2.5) = 2 */
                "1 640x480 drop 1 err 0: [0 2 2 2 18] [0 2 0 3 3]\n"
                "2 200x300 drop 2 err 0: [10 20 40 60 7]\n"
                "3 0x0 drop 0 err 0: [-2 100 1 100 ]\n"
                "4 0x0 drop 0 err 0: [1 1 2 2 ]\n"
                "5 0x0 drop 0 err 0: [1 2 4 6 ]\n"
                "6 0x0 drop 0 err -1:\n");
}

/* A repeated key keeps its last value, also "images" / "annotations". */
static void case_coco_repeated(void)
{
    static const long ids[] = {1, 2, 3};
    coco_expect("repeated keys", ids, 3,
                "{\"annotations\": [{\"image_id\": 1, \"bbox\": [1, 1, 1, 1]}],\n"
                " \"images\": [{\"id\": 3, \"width\": 9}],\n"
                " \"images\": [{\"id\": 1, \"width\": 10, \"width\": \"x\", \"height\": 5,"
                " \"height\": 6}],\n"
                " \"annotations\": [{\"image_id\": 1, \"bbox\": [1, 2, 3, 4],"
                " \"bbox\": [5, 6, 7, 8], \"image_id\": 2},\n"
                "  {\"image_id\": 3, \"bbox\": [0, 0, 1, 1], \"bbox\": [1, 2, 3]},\n"
                "  {\"image_id\": 1, \"iscrowd\": 1, \"iscrowd\": 0, \"bbox\": [2, 2, 2, 2],"
                " \"category_id\": 4, \"category_id\": \"y\"}]}",
                "1 0x6 drop 0 err 0: [2 2 4 4 ]\n"
                "2 0x0 drop 0 err 0: [5 6 12 14 ]\n"
                "3 0x0 drop 0 err -1:\n");
    static char desc[COCO_DESC];
    const char *later = "{\"annotations\": [], \"annotations\": {\"a\": []}}";
    CHECK(coco_run("annotations replaced", ids, 3, later, strlen(later), desc) == ERR_INPUT &&
              strstr(desc, "no \"annotations\" array"), "%s", desc);
}

/* One unusable bbox marks its image (as before), a crowd one does not. */
static void case_coco_bbox(void)
{
    static const long ids[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    coco_expect("bbox types", ids, 12,
                "{\"images\": [], \"annotations\": [\n"
                " {\"image_id\": 1, \"bbox\": [1, 2, 3]},\n"
                " {\"image_id\": 2, \"bbox\": [1, 2, 3, 4, 5]},\n"
                " {\"image_id\": 3, \"bbox\": [1, 2, \"3\", 4]},\n"
                " {\"image_id\": 4, \"bbox\": [1, 2, [3], 4]},\n"
                " {\"image_id\": 5, \"bbox\": [1, 2, null, 4]},\n"
                " {\"image_id\": 6, \"bbox\": [1, 2, 3, 1e9]},\n"
                " {\"image_id\": 7, \"bbox\": \"1, 2, 3, 4\"},\n"
                " {\"image_id\": 8, \"bbox\": {\"x\": 1}},\n"
                " {\"image_id\": 9},\n"
                " {\"image_id\": 10, \"bbox\": [1, 2, 3, 4]}, {\"image_id\": 10, \"bbox\": []},"
                " {\"image_id\": 10, \"bbox\": [5, 6, 7, 8]},\n"
                " {\"image_id\": 11, \"bbox\": [1, 2, 3, true], \"iscrowd\": 1},"
                " {\"image_id\": 11, \"bbox\": [-999999999, 2, 999999999.5, 4]},\n"
                " {\"image_id\": 12, \"bbox\": [1, 2, 3, 4], \"bbox\": 5}]}",
                "1 0x0 drop 0 err -1:\n2 0x0 drop 0 err -1:\n3 0x0 drop 0 err -1:\n"
                "4 0x0 drop 0 err -1:\n5 0x0 drop 0 err -1:\n6 0x0 drop 0 err -1:\n"
                "7 0x0 drop 0 err -1:\n8 0x0 drop 0 err -1:\n9 0x0 drop 0 err -1:\n"
                "10 0x0 drop 0 err -1:\n"
                "11 0x0 drop 1 err 0: [-1e+09 2 0 6 ]\n"
                "12 0x0 drop 0 err -1:\n");
}

/* Empty arrays and objects: the load succeeds, items say why they are out. */
static void case_coco_empty(void)
{
    static const long ids[] = {1, 2};
    coco_expect("empty annotations", ids, 2,
                "{\"images\": [{\"id\": 1, \"width\": 4, \"height\": 3}], \"annotations\": []}",
                "1 4x3 drop 0 err -1:\n2 0x0 drop 0 err -1:\n");
    coco_expect("empty objects", ids, 2,
                " {\"images\": [{}], \"annotations\": [{}, {\"image_id\": 1}, [], {\"image_id\": 2,"
                " \"iscrowd\": 1}], \"segmentation\": [[]]} \n",
                "1 0x0 drop 0 err -1:\n2 0x0 drop 1 err -1:\n");
}

/* Malformed and truncated files: ERR_INPUT naming the file and the byte
 * offset, the same offset whatever the read size. */
static void case_coco_malformed(void)
{
    const char *cut = "{\"images\": [{\"id\": 1}], \"annotations\": [{\"image_id\": 1, "
                      "\"segmentation\": [[1.5, 2]], \"bbox\": [1, 2, 3, 4], \"iscrowd\": false}]}";
    size_t n = strlen(cut);
    char want[64];
    for (size_t len = 0; len < n; len++) {
        snprintf(want, sizeof want, ": byte %zu (end of file): ", len);
        coco_expect_error("truncated", cut, len, want, (const char *)NULL);
    }
    /* the offset is where the last good token ends */
    COCO_BAD("bad token", "{\"images\": [], \"annotations\": [}",
             ": malformed JSON after byte 31: parse error");
    COCO_BAD("bad char", "{\"annotations\": [], x}", "after byte 18: lexical error");
    COCO_BAD("trailing garbage", "{\"annotations\": []} x", "after byte 19", "garbage");
    COCO_BAD("two documents", "{\"annotations\": []}{}", "after byte 19");
    COCO_BAD("comment", "{\"annotations\": [] /* c */}", "after byte 18");
    /* yajl backs up over a bad token within the current read only */
    COCO_BAD("bad token split", "{\"images\": [{\"id\": 9, \"width\": 10\", x\": 1}], "
             "\"annotations\": []}", "after byte 33: parse error");
    COCO_BAD("empty file", "", "byte 0 (end of file)");
    COCO_BAD("bad UTF-8", "{\"annotations\": [], \"a\": \"\xff\"}", "byte");
    COCO_BAD("NUL in a string", "{\"annotations\": [], \"a\": \"x\\u0000\"}", "\\u0000");
    COCO_BAD("NUL in a key", "{\"annotations\": [], \"a\\u0000\": 1}", "\\u0000");
    COCO_BAD("integer beyond 64 bits", "{\"annotations\": [{\"area\": 99999999999999999999}]}",
             "byte 46: integer out of 64-bit range");
    COCO_BAD("real beyond double", "{\"annotations\": [{\"segmentation\": [[1e999]]}]}",
             "real number out of double range");
    COCO_BAD("no annotations", "{\"images\": []}", "no \"annotations\" array");
    COCO_BAD("root array", "[{\"annotations\": []}]", "no \"annotations\" array");
    COCO_BAD("root scalar", "17", "no \"annotations\" array");
    /* jansson's depth limit: 2048 levels, the root object included */
    static char deep[2 * 2100 + 64];
    for (int levels = 2047; levels <= 2048; levels++) {
        size_t k = 0;
        k += (size_t)sprintf(deep, "{\"annotations\": [], \"x\": ");
        for (int i = 0; i < levels; i++)
            deep[k++] = '[';
        for (int i = 0; i < levels; i++)
            deep[k++] = ']';
        deep[k++] = '}';
        deep[k] = 0;
        static const long ids[] = {1};
        static char desc[COCO_DESC];
        int rc = coco_run("depth", ids, 1, deep, k, desc);
        if (levels == 2047)
            CHECK(rc == 0, "2048 levels refused: %s", desc);
        else
            CHECK(rc == ERR_INPUT && strstr(desc, "2048"), "2049 levels: rc %d %s", rc, desc);
    }
}

/* ---- COCO: the streaming reader against a jansson tree walk ------------- */

/* The former reader, kept here as the reference: jansson's whole tree,
 * walked as LOST's extract_gt_COCO reads it. */
static int ref_int(const json_t *v, long *out)
{
    if (json_is_integer(v)) {
        *out = (long)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
        fabs(json_real_value(v)) < 1e15) {
        *out = (long)json_real_value(v);
        return 0;
    }
    return -1;
}

#define REF_MAX 16

struct ref_image {
    long id;
    int width, height, n_obj, n_crowd, in_json;
    float box[64][4];
    char name[64][DATASET_NAME_MAX];
};

/* Describes the selection ids [n] (ascending) of text as coco_describe
 * would; returns -1 when jansson refuses the text or finds no annotations. */
static int ref_describe(const char *text, const long *ids, int n, char *out, size_t cap)
{
    static struct ref_image img[REF_MAX];
    memset(img, 0, sizeof img);
    for (int i = 0; i < n; i++)
        img[i].id = ids[i];
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root)
        return -1;
    json_t *anns = json_object_get(root, "annotations");
    if (!json_is_array(anns)) {
        json_decref(root);
        return -1;
    }
    size_t k;
    json_t *v;
    json_array_foreach(json_object_get(root, "images"), k, v) {
        long id, w, h;
        if (ref_int(json_object_get(v, "id"), &id))
            continue;
        for (int i = 0; i < n; i++) {
            if (img[i].id != id)
                continue;
            img[i].in_json = 1;
            if (!ref_int(json_object_get(v, "width"), &w) && w > 0 && w < INT_MAX)
                img[i].width = (int)w;
            if (!ref_int(json_object_get(v, "height"), &h) && h > 0 && h < INT_MAX)
                img[i].height = (int)h;
        }
    }
    json_array_foreach(anns, k, v) {
        long id, crowd = 0;
        if (ref_int(json_object_get(v, "image_id"), &id))
            continue;
        struct ref_image *ri = NULL;
        for (int i = 0; i < n; i++)
            if (img[i].id == id)
                ri = &img[i];
        if (!ri)
            continue;
        json_t *cr = json_object_get(v, "iscrowd");
        if (json_is_true(cr))
            crowd = 1;
        else
            ref_int(cr, &crowd);
        if (crowd == 1) {
            ri->n_crowd++;
            continue;
        }
        json_t *bb = json_object_get(v, "bbox");
        double b[4];
        int ok = json_is_array(bb) && json_array_size(bb) == 4;
        for (int c = 0; ok && c < 4; c++) {
            json_t *x = json_array_get(bb, (size_t)c);
            ok = json_is_number(x) && isfinite(json_number_value(x)) &&
                 fabs(json_number_value(x)) < 1e9;
            b[c] = ok ? json_number_value(x) : 0;
        }
        if (!ok) {
            ri->n_obj = -1;
            continue;
        }
        if (ri->n_obj < 0 || ri->n_obj == 64)
            continue;
        float *o = ri->box[ri->n_obj];
        o[0] = (float)rint(b[0]);
        o[1] = (float)rint(b[1]);
        o[2] = (float)rint(b[0] + b[2]);
        o[3] = (float)rint(b[1] + b[3]);
        long cat;
        if (!ref_int(json_object_get(v, "category_id"), &cat))
            snprintf(ri->name[ri->n_obj], DATASET_NAME_MAX, "%ld", cat);
        ri->n_obj++;
    }
    json_decref(root);
    size_t at = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        const struct ref_image *ri = &img[i];
        app(out, cap, &at, "%ld %dx%d drop %d err %d:", ri->id, ri->width, ri->height,
            ri->n_crowd, ri->n_obj > 0 ? 0 : ERR_INPUT);
        for (int o = 0; o < ri->n_obj; o++)
            app(out, cap, &at, " [%g %g %g %g %s]", ri->box[o][0], ri->box[o][1],
                ri->box[o][2], ri->box[o][3], ri->name[o]);
        app(out, cap, &at, "\n");
    }
    return 0;
}

/* A small random number generator (xorshift64), so the documents are the
 * same on every run. */
static unsigned long long rng_state = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)((rng_state >> 11) % n);
}

/* A number, an id-like value or something else for a field of a document. */
static void rnd_value(char *out, size_t cap, size_t *k, int id_like)
{
    static const char *const odd[] = {
        "\"7\"", "null", "true", "false", "[]", "{}", "[1]", "{\"id\": 3}", "2.5", "-0",
        "1e2", "3.0", "1E0", "-4", "0", "1e15", "99999999999999", "\"x\"",
    };
    unsigned r = rnd(10);
    if (id_like && r < 7)
        app(out, cap, k, "%u", 1 + rnd(8));
    else if (!id_like && r < 5)
        app(out, cap, k, "%u.%u", rnd(700), rnd(100));
    else if (r < 8)
        app(out, cap, k, "%s", odd[rnd(sizeof odd / sizeof odd[0])]);
    else
        app(out, cap, k, "%d.5", (int)rnd(20) - 5);
}

static void rnd_bbox(char *out, size_t cap, size_t *k)
{
    unsigned r = rnd(20);
    if (r == 0) {
        rnd_value(out, cap, k, 0);
        return;
    }
    int n = r == 1 ? 3 : r == 2 ? 5 : 4;
    app(out, cap, k, "[");
    for (int i = 0; i < n; i++) {
        app(out, cap, k, "%s", i ? ", " : "");
        if (rnd(30) == 0)
            rnd_value(out, cap, k, 0);
        else if (rnd(4) == 0)
            app(out, cap, k, "%d.5", (int)rnd(40) - 3);
        else
            app(out, cap, k, "%u.%02u", rnd(600), rnd(100));
    }
    app(out, cap, k, "]");
}

static void rnd_segmentation(char *out, size_t cap, size_t *k)
{
    if (rnd(4) == 0) {
        app(out, cap, k, "{\"counts\": %s, \"size\": [%u, %u]}",
            rnd(2) ? "[0, 12, 3, 44]" : "\"a]}{[\\\"\"", rnd(500), rnd(500));
        return;
    }
    app(out, cap, k, "[");
    for (unsigned p = 0, np = 1 + rnd(2); p < np; p++) {
        app(out, cap, k, "%s[", p ? ", " : "");
        for (unsigned i = 0, n = 2 * (1 + rnd(6)); i < n; i++)
            app(out, cap, k, "%s%u.%u", i ? ", " : "", rnd(640), rnd(100));
        app(out, cap, k, "]");
    }
    app(out, cap, k, "]");
}

/* One element of "images" or "annotations": its keys in a random order,
 * sometimes one of them twice, sometimes an unknown key. */
static void rnd_element(char *out, size_t cap, size_t *k, int ann)
{
    static const char *const image_keys[] = {"id", "width", "height", "file_name"};
    static const char *const ann_keys[] = {"image_id", "bbox", "iscrowd", "category_id",
                                           "segmentation", "area", "id"};
    if (rnd(25) == 0) {
        rnd_value(out, cap, k, 1);
        return;
    }
    const char *const *keys = ann ? ann_keys : image_keys;
    int nk = ann ? 7 : 4;
    int order[10], n = 0;
    for (int i = 0; i < nk; i++)
        if (rnd(8))
            order[n++] = i;
    if (rnd(6) == 0 && n) {
        int again = order[rnd((unsigned)n)];
        order[n++] = again;
    }
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rnd((unsigned)i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    app(out, cap, k, "{");
    for (int i = 0; i < n; i++) {
        const char *key = keys[order[i]];
        app(out, cap, k, "%s\"%s\": ", i ? ", " : "", key);
        if (!strcmp(key, "bbox"))
            rnd_bbox(out, cap, k);
        else if (!strcmp(key, "segmentation"))
            rnd_segmentation(out, cap, k);
        else if (!strcmp(key, "file_name"))
            app(out, cap, k, "\"COCO_train2014_%012u.jpg\"", rnd(9));
        else if (!strcmp(key, "iscrowd"))
            app(out, cap, k, "%s", rnd(3) ? (rnd(4) ? "0" : "1") : rnd(2) ? "true" : "1.0");
        else
            rnd_value(out, cap, k, !strcmp(key, "image_id") || !strcmp(key, "id") ||
                                       !strcmp(key, "width") || !strcmp(key, "height"));
        if (rnd(20) == 0)
            app(out, cap, k, ", \"extra\": {\"image_id\": 1, \"bbox\": [1, 2, 3, 4]}");
    }
    app(out, cap, k, "}");
}

static void rnd_document(char *out, size_t cap)
{
    size_t k = 0;
    app(out, cap, &k, "{\"info\": {\"year\": 2014}");
    int sections = 2 + (rnd(8) == 0);
    /* images, annotations (either order), sometimes a third repeating one */
    int first_ann = (int)rnd(2);
    for (int s = 0; s < sections; s++) {
        int ann = s < 2 ? (s == 0) == first_ann : (int)rnd(2);
        app(out, cap, &k, ", \"%s\": [", ann ? "annotations" : "images");
        for (unsigned i = 0, n = rnd(ann ? 14 : 8); i < n; i++) {
            app(out, cap, &k, "%s", i ? ", " : "");
            rnd_element(out, cap, &k, ann);
        }
        app(out, cap, &k, "]");
    }
    app(out, cap, &k, ", \"categories\": [{\"id\": 1, \"name\": \"person\"}]}");
}

/* Random COCO-like documents (key orders, repeats, odd types, unknown
 * keys): the streaming reader, at every read size, must describe each
 * selection exactly as the tree walk does. */
static void case_coco_random(void)
{
    static const long ids[] = {1, 2, 3, 4, 5, 6, 7, 8};
    static char doc[COCO_DESC], want[COCO_DESC], got[COCO_DESC];
    int compared = 0, failed = 0;
    for (int t = 0; t < 300 && !failed; t++) {
        rnd_document(doc, sizeof doc);
        int n = 1 + (int)rnd(8);
        int rref = ref_describe(doc, ids, n, want, sizeof want);
        int rc = coco_run("random", ids, n, doc, strlen(doc), got);
        if (rref) {
            CHECK(rc == ERR_INPUT, "document %d: jansson refuses it, we give rc %d:\n%s", t, rc,
                  doc);
        } else {
            CHECK(rc == 0 && !strcmp(got, want), "document %d:\n%s\nwe give (rc %d)\n%s\n"
                  "jansson gives\n%s", t, doc, rc, got, want);
            compared++;
        }
        failed = check_case_failed_;
    }
    CHECK(compared > 250, "only %d documents compared", compared);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/lostd_test_dataset_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        printf("FAIL mkdtemp\n");
        return 1;
    }
    CHECK_CASE("VOC XML with every optional tag, parts, no_hard", case_voc_full());
    CHECK_CASE("VOC XML without size/truncated/difficult", case_voc_min());
    CHECK_CASE("VOC corrupt XML and coordinates are errors, not crashes", case_voc_corrupt());
    CHECK_CASE("VOC layouts, set order, per-item errors, no_hard skip", case_voc_layout());
    CHECK_CASE("VOC12 fixture (root holding VOCdevkit/)", case_voc12_fixture());
    CHECK_CASE("COCO 20k: subset, ascending ids, crowd, half-to-even", case_coco());
    CHECK_CASE("COCO bad JSON / bad bbox", case_coco_bad());
    CHECK_CASE("COCO stream: key orders, crowd flags, unknown keys, polygons, RLE",
               case_coco_keys());
    CHECK_CASE("COCO stream: a repeated key keeps its last value", case_coco_repeated());
    CHECK_CASE("COCO stream: unusable bboxes mark their image", case_coco_bbox());
    CHECK_CASE("COCO stream: empty arrays and objects", case_coco_empty());
    CHECK_CASE("COCO stream: malformed / truncated -> ERR_INPUT with the byte offset",
               case_coco_malformed());
    CHECK_CASE("COCO stream: random documents equal jansson's tree walk", case_coco_random());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        printf("note: could not remove %s\n", tmpdir);
    return check_status();
}
