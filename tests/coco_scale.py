#!/usr/bin/env python3
"""coco_scale.py - a COCO instances file the size of train2014 (82,783
images, ~605k annotations with polygon segmentations, some crowd ones with
RLE counts; ~340 MB), a 20k selection of it and LOST-style predictions, for
tests/e2e_coco_scale.sh and `make bench`. Standard library only, fixed seed:
the same arguments give the same bytes. Not COCO data.

  coco_scale.py gen DIR [--images N] [--annotations N] [--select N] [--seed S]
      writes DIR/annotations/instances_train2014.json, DIR/coco_20k_filenames.txt
      and DIR/predictions.csv (image_id,x1,y1,x2,y2); prints one JSON line
      (bytes, counts).
  coco_scale.py ref DIR
      LOST's CorLoc over those files, computed here: the JSON read back with
      json.loads one element at a time (the generator writes one element per
      line, so no 2 GB tree is needed), crowd annotations dropped, boxes
      [round(x), round(y), round(x + w), round(y + h)], a hit when IoU >= 0.5
      with any box (2 I >= U on integer boxes), an image without a box
      skipped, one without a prediction counted as a miss. Prints one JSON
      line: images, hits, skipped, missing, corloc.

What the file holds besides the plain case: the train2014 key order in most
annotations and other orders in the rest (bbox or image_id first or last),
unknown keys with nested objects, integer and half-integer boxes (round half
to even), images without annotations, selected images whose annotations are
all crowd, selected ids absent from "images" (some with annotations all the
same, which LOST counts), and "categories" / "licenses" after the arrays.
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corloc_ref  # noqa: E402

TRAIN2014 = dict(images=82783, annotations=604907, select=19817)


def polygon(rng, w, h):
    """One polygon ring as COCO writes them: x, y pairs with two decimals."""
    n = rng.randint(5, 40)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    pts = []
    for _ in range(n):
        pts.append("%.2f" % min(w, max(0.0, cx + rng.uniform(-90, 90))))
        pts.append("%.2f" % min(h, max(0.0, cy + rng.uniform(-90, 90))))
    return "[" + ",".join(pts) + "]"


def gen(out, n_images, n_anns, n_select, seed):
    rng = random.Random(seed)
    os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
    ids = rng.sample(range(1, 600000), n_images)
    size = {i: (rng.randint(240, 640), rng.randint(240, 640)) for i in ids}
    # the selection: listed images, ids absent from "images" (some of them
    # with annotations), listed images left with crowd boxes only
    n_absent, n_orphan, n_allcrowd = 15, 5, 12
    chosen = rng.sample(ids, n_select - n_absent - n_orphan)
    absent = [600000 + k for k in range(n_absent)]
    orphans = [700000 + k for k in range(n_orphan)]
    for i in orphans:
        size[i] = (500, 400)
    allcrowd = set(chosen[:n_allcrowd])
    selected = set(chosen) | set(orphans)
    # pools: segmentations are skipped by the reader, so a few thousand
    # distinct ones reused keep the generator fast and the bytes realistic
    polys = []
    for _ in range(3000):
        w, h = rng.randint(240, 640), rng.randint(240, 640)
        rings = [polygon(rng, w, h) for _ in range(1 if rng.random() < 0.9 else 3)]
        polys.append("[" + ",".join(rings) + "]")
    rles = []
    for _ in range(64):
        counts = [rng.randint(0, 400) for _ in range(rng.randint(60, 600))]
        rles.append('{"counts": [%s], "size": [%d, %d]}' % (
            ",".join(map(str, counts)), rng.randint(240, 640), rng.randint(240, 640)))
    orders = [
        ("segmentation", "area", "iscrowd", "image_id", "bbox", "category_id", "id"),
        ("bbox", "category_id", "id", "segmentation", "iscrowd", "area", "image_id"),
        ("image_id", "id", "segmentation", "bbox", "area", "category_id", "iscrowd"),
        ("iscrowd", "bbox", "segmentation", "image_id", "category_id", "id", "area"),
    ]
    boxes = {}      # selected image -> boxes as written, for the predictions
    path = os.path.join(out, "annotations", "instances_train2014.json")
    with open(path, "w") as f:
        f.write('{"info": {"description": "lostd scale test, not COCO data", '
                '"version": "1.0", "year": 2014},\n"images": [\n')
        lines = []
        for k, i in enumerate(ids):
            w, h = size[i]
            lines.append(
                '{"license": %d, "file_name": "COCO_train2014_%012d.jpg", "coco_url": '
                '"http://images.cocodataset.org/train2014/COCO_train2014_%012d.jpg", '
                '"height": %d, "width": %d, "date_captured": "2013-11-%02d 12:%02d:%02d", '
                '"flickr_url": "http://farm%d.staticflickr.com/%d/%d_%08x_z.jpg", "id": %d}'
                % (rng.randint(1, 8), i, i, h, w, rng.randint(1, 28), rng.randint(0, 59),
                   rng.randint(0, 59), rng.randint(1, 9), rng.randint(1000, 9999),
                   rng.randint(10 ** 9, 10 ** 10), rng.getrandbits(32), i))
            if len(lines) == 5000 or k == len(ids) - 1:
                f.write(",\n".join(lines) + (",\n" if k < len(ids) - 1 else "\n"))
                lines = []
        f.write('],\n"licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", '
                '"id": 1, "name": "Attribution-NonCommercial-ShareAlike License"}],\n'
                '"annotations": [\n')
        n_crowd = 0
        for a in range(n_anns):
            i = ids[rng.randrange(n_images)] if rng.random() > 0.0005 else rng.choice(orphans)
            w, h = size[i]
            crowd = 1 if (i in allcrowd or rng.random() < 0.01) else 0
            r = rng.random()
            if r < 0.05:        # halves: round half to even matters
                x, y = rng.randint(0, w - 2) + 0.5, rng.randint(0, h - 2) + 0.5
                bw, bh = rng.randint(1, w - int(x)) + 0.5, rng.randint(1, h - int(y))
                bb = ["%.1f" % x, "%.1f" % y, "%.1f" % bw, "%d" % bh]
            elif r < 0.08:      # integers
                x, y = rng.randint(0, w - 2), rng.randint(0, h - 2)
                bb = ["%d" % v for v in (x, y, rng.randint(1, w - x), rng.randint(1, h - y))]
            else:
                x, y = rng.uniform(0, w - 2), rng.uniform(0, h - 2)
                bb = ["%.2f" % v for v in (x, y, rng.uniform(1, w - x), rng.uniform(1, h - y))]
            if i in selected and not crowd:
                boxes.setdefault(i, []).append([float(v) for v in bb])
            n_crowd += crowd
            fields = {
                "segmentation": rng.choice(rles) if crowd else rng.choice(polys),
                "area": "%.1f" % (float(bb[2]) * float(bb[3]) * rng.uniform(0.4, 0.9)),
                "iscrowd": str(crowd),
                "image_id": str(i),
                "bbox": "[" + ",".join(bb) + "]",
                "category_id": str(rng.randint(1, 90)),
                "id": str(a + 1),
            }
            order = orders[0] if rng.random() < 0.9 else rng.choice(orders[1:])
            items = ['"%s": %s' % (k, fields[k]) for k in order]
            if rng.random() < 0.01:
                items.insert(rng.randint(0, len(items)),
                             '"attributes": {"occluded": false, "tags": ["a", {"b": [1, [2]]}], '
                             '"score": null}')
            f.write("{" + ", ".join(items) + "}" + (",\n" if a < n_anns - 1 else "\n"))
        f.write('],\n"categories": [%s]}\n' % ", ".join(
            '{"supercategory": "thing", "id": %d, "name": "category %d"}' % (c, c)
            for c in range(1, 91)))
    # the list, in no particular order
    listed = list(selected) + absent
    rng.shuffle(listed)
    with open(os.path.join(out, "coco_20k_filenames.txt"), "w") as f:
        f.writelines("train2014/COCO_train2014_%012d.jpg\n" % i for i in listed)
    # predictions: near a box (hits and near-misses), anywhere, or none
    with open(os.path.join(out, "predictions.csv"), "w") as f:
        f.write("image_id,x1,y1,x2,y2\n")
        for i in sorted(listed):
            r = rng.random()
            if r < 0.01:
                continue
            w, h = size.get(i, (500, 400))
            if i in boxes and r < 0.6:
                x, y, bw, bh = rng.choice(boxes[i])
                j = rng.uniform(0, 0.5)
                x1 = int(x + rng.uniform(-j, j) * bw)
                y1 = int(y + rng.uniform(-j, j) * bh)
                x2 = int(x + bw + rng.uniform(-j, j) * bw)
                y2 = int(y + bh + rng.uniform(-j, j) * bh)
                box = [x1, y1, max(x1 + 1, x2), max(y1 + 1, y2)]
            else:
                x1, y1 = rng.randint(0, w - 2), rng.randint(0, h - 2)
                box = [x1, y1, rng.randint(x1 + 1, w), rng.randint(y1 + 1, h)]
            f.write("%d,%d,%d,%d,%d\n" % (i, *box))
    print(json.dumps({"bytes": os.path.getsize(path), "images": n_images, "annotations": n_anns,
                      "crowd": n_crowd, "selected": len(listed)}))


def ref(out):
    listed = [int(line.strip().rsplit("_", 1)[1].split(".")[0])
              for line in open(os.path.join(out, "coco_20k_filenames.txt")) if line.strip()]
    want = set(listed)
    gts = {}
    section = None
    with open(os.path.join(out, "annotations", "instances_train2014.json")) as f:
        for line in f:
            if line.startswith('"annotations": ['):
                section = "annotations"
                continue
            if line.startswith("]"):
                section = None
                continue
            if section != "annotations":
                continue
            a = json.loads(line.rstrip().rstrip(","))
            if a["image_id"] not in want or a["iscrowd"] == 1:
                continue
            x, y, w, h = a["bbox"]
            gts.setdefault(a["image_id"], []).append(
                [int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h))])
    preds = {}
    for line in open(os.path.join(out, "predictions.csv")).read().split("\n")[1:]:
        if line:
            v = line.split(",")
            preds[int(v[0])] = [int(t) for t in v[1:]]
    images, hits, skipped, missing = corloc_ref.score([(i, gts.get(i)) for i in listed], preds)
    print(json.dumps({"images": images, "hits": hits, "skipped": skipped, "missing": missing,
                      "corloc": round(100.0 * hits / images, 2) if images else 0.0}))


def main(argv):
    if len(argv) >= 3 and argv[1] == "gen":
        opts = dict(TRAIN2014, seed=17)
        rest = argv[3:]
        for k in range(0, len(rest) - 1, 2):
            opts[rest[k].lstrip("-")] = int(rest[k + 1])
        gen(argv[2], opts["images"], opts["annotations"], opts["select"], opts["seed"])
    elif len(argv) == 3 and argv[1] == "ref":
        ref(argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
