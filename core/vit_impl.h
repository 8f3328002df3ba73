/* vit_impl.h - private to core/ (and its tests): knobs of the AVX-512
 * forward that callers of vit.h have no use for. */
#ifndef LOSTD_VIT_IMPL_H
#define LOSTD_VIT_IMPL_H

#include "vit.h"

/* Sets the threads' GEMM rates (FLOPs per ms, one per thread of the
 * workspace, all > 0) as if measured: the next products split their rows
 * in proportion to them, within the limits of plan_shares in vit.c.
 * Forwards go on measuring and smoothing from there. Tests use it to
 * exercise uneven shares on a machine whose cores happen to be equal. */
void vit_work_seed_rates(struct vit_work *w, const double *rates);

#endif
