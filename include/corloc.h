/* corloc.h - the CorLoc metric: one predicted box per image, a hit when its
 * IoU with any ground-truth box is >= 0.5 (docs/specs/lost.md section 5).
 * Pure arithmetic on caller memory: no allocation, no I/O, thread-safe. */
#ifndef LOSTD_CORLOC_H
#define LOSTD_CORLOC_H

#define CORLOC_IOU_THRESHOLD 0.5f

/* IoU of two x1, y1, x2, y2 boxes (no +1), exactly as LOST's YOLOv5-style
 * `bbox_iou` in float32: inter = max(0, min x2 - max x1) * max(0, min y2 - max y1),
 * w = x2 - x1, h = y2 - y1 + 1e-7, union = w1 h1 + w2 h2 - inter + 1e-7.
 * For integer boxes below 2^24 area, iou >= 0.5 iff 2 inter >= a1 + a2 - inter.
 * Cannot fail (degenerate boxes give 0 or a small value, never NaN for finite
 * input). */
float corloc_iou(const float a[4], const float b[4]);

/* gt: [n_gt][4] x1, y1, x2, y2. Returns 1 if iou(box, gt[i]) >= 0.5 for some i,
 * else 0 (also for n_gt == 0). best_iou (may be NULL) gets the largest IoU,
 * 0 when n_gt == 0. Cannot fail. */
int corloc_hit(const float box[4], const float (*gt)[4], int n_gt, float *best_iou);

/* Running totals of one evaluation. images = counted images (the CorLoc
 * denominator; a missing prediction is counted, as a miss); skipped = images
 * not counted because of a per-image error; missing = images without a
 * prediction; excluded = images left without ground truth by --no-hard (the
 * protocol skips them, not an error). */
struct corloc_acc {
    long images, hits, skipped, missing, excluded;
};

/* Zeroes acc. Cannot fail. */
void corloc_init(struct corloc_acc *acc);

/* Counts one evaluated image (hit 0/1). Cannot fail. */
void corloc_add(struct corloc_acc *acc, int hit);

/* Adds b's counters to acc (merging shards). Cannot fail. */
void corloc_merge(struct corloc_acc *acc, const struct corloc_acc *b);

/* 100 * hits / images, 0 when no image was counted. Cannot fail. */
double corloc_percent(const struct corloc_acc *acc);

#endif
