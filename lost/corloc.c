/* corloc.c - IoU and CorLoc as LOST's main_lost.py / main_corloc_evaluation.py
 * count them (YOLOv5 `bbox_iou`, float32, 1e-7 terms). Takes boxes, hands out
 * hits and percentages; no I/O. The expressions keep upstream's evaluation
 * order so float32 rounding matches torch. */
#include "corloc.h"

float corloc_iou(const float a[4], const float b[4])
{
    const float eps = 1e-7f;
    float iw = (a[2] < b[2] ? a[2] : b[2]) - (a[0] > b[0] ? a[0] : b[0]);
    float ih = (a[3] < b[3] ? a[3] : b[3]) - (a[1] > b[1] ? a[1] : b[1]);
    if (!(iw > 0.0f))   /* clamp(0); also maps NaN to 0 */
        iw = 0.0f;
    if (!(ih > 0.0f))
        ih = 0.0f;
    float inter = iw * ih;
    float w1 = a[2] - a[0], h1 = a[3] - a[1] + eps;
    float w2 = b[2] - b[0], h2 = b[3] - b[1] + eps;
    float uni = w1 * h1 + w2 * h2 - inter + eps;
    return inter / uni;
}

int corloc_hit(const float box[4], const float (*gt)[4], int n_gt, float *best_iou)
{
    float best = 0.0f;
    int hit = 0;
    for (int i = 0; i < n_gt; i++) {
        float iou = corloc_iou(box, gt[i]);
        if (iou > best)
            best = iou;
        if (iou >= CORLOC_IOU_THRESHOLD)
            hit = 1;
    }
    if (best_iou)
        *best_iou = best;
    return hit;
}

void corloc_init(struct corloc_acc *acc)
{
    acc->images = acc->hits = acc->skipped = acc->missing = acc->excluded = 0;
}

void corloc_add(struct corloc_acc *acc, int hit)
{
    acc->images++;
    acc->hits += hit != 0;
}

void corloc_merge(struct corloc_acc *acc, const struct corloc_acc *b)
{
    acc->images += b->images;
    acc->hits += b->hits;
    acc->skipped += b->skipped;
    acc->missing += b->missing;
    acc->excluded += b->excluded;
}

double corloc_percent(const struct corloc_acc *acc)
{
    return acc->images > 0 ? 100.0 * (double)acc->hits / (double)acc->images : 0.0;
}
