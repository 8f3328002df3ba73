/* lost_impl.h - private to lost/: what LOST and TokenCut share (grid
 * checks, the seed's 4-connected component, patch boxes to pixels). Nobody
 * outside lost/ includes it. */
#ifndef LOSTD_LOST_IMPL_H
#define LOSTD_LOST_IMPL_H

#include <stddef.h>

#include "lost.h"

struct err;

/* Checks the grid's sizes; *n_out = rows * cols. ERR_INPUT / ERR_TOOBIG. */
int lost_check_grid(const struct lost_grid *g, size_t *n_out, struct err *e);

/* Patch-unit box [r0, c0, r1, c1) -> pixels [x1, y1, x2, y2); clip: cut the
 * ends to the image (LOST, TokenCut; DINO-seg does not). Cannot fail. */
void lost_feat_to_px(const int bf[4], const struct lost_grid *g, int clip, int box[4]);

/* The 4-connected component of `on` holding seed (explicit queue, no
 * recursion). comp [N] is overwritten: 1 inside. When on[seed] is 0 the
 * component is the seed alone and 1 is returned; else 0. box_feat gets
 * r0, c0, r1, c1 with exclusive ends. queue: [N] scratch. */
int lost_seed_component(const unsigned char *on, int rows, int cols, int seed, int *queue,
                        unsigned char *comp, int box_feat[4]);

#endif
