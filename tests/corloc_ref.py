"""CorLoc as LOST scores it, written independently of lostd for the tests'
references (tests/e2e_eval.sh, tests/coco_scale.py): an image counts when it
has at least one ground-truth box; it is a hit when the predicted box has
IoU >= 0.5 with any of them (integer boxes: 2 x intersection >= union)."""


def score(items, preds):
    """items: (key, list of [x1, y1, x2, y2] or None when the image cannot be
    evaluated); preds: key -> [x1, y1, x2, y2]. Returns (images, hits,
    skipped, missing)."""
    images = hits = skipped = missing = 0
    for key, gt in items:
        if not gt:
            skipped += 1
            continue
        images += 1
        p = preds.get(key)
        if p is None:
            missing += 1
            continue
        for g in gt:
            iw = max(0, min(p[2], g[2]) - max(p[0], g[0]))
            ih = max(0, min(p[3], g[3]) - max(p[1], g[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
            if 2 * inter >= union:
                hits += 1
                break
    return images, hits, skipped, missing
