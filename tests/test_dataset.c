/* test_dataset.c - the VOC and COCO readers: XML with and without the
 * optional tags, parts inside objects, corrupt XML and coordinates, no_hard,
 * the VOC root layouts (in a temporary directory), the VOC12 fixture, and a
 * small COCO-format file made for the purpose (crowd boxes, .5 roundings,
 * ascending id order). Run from the repo root. */
#include "check.h"
#include "dataset.h"

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
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        printf("note: could not remove %s\n", tmpdir);
    return check_status();
}
