/* model_impl.h - private to core/: the loaded weights as model.c lays them
 * out and vit.c reads them. All pointers are float32, row-major, PyTorch
 * layout (Linear weights [out, in]); they point into the mapped file when
 * the stored tensor is aligned F32, else into buffers the model owns. Once
 * packed (the AVX-512 path), everything a forward reads is owned: the
 * packed weights and copies of the small tensors (copy_small in model.c). */
#ifndef LOSTD_MODEL_IMPL_H
#define LOSTD_MODEL_IMPL_H

#include "model.h"

struct safetensors;

struct model_block {
    const float *ln1_w, *ln1_b;     /* [D] */
    const float *qkv_w, *qkv_b;     /* [3D, D], [3D]: q | k | v rows */
    const float *proj_w, *proj_b;   /* [D, D], [D] */
    const float *ls1, *ls2;         /* [D], NULL without LayerScale */
    const float *ln2_w, *ln2_b;     /* [D] */
    const float *fc1_w, *fc1_b;     /* [F1, D], F1 = F (MLP) or 2F (SwiGLU: x1 | x2) */
    const float *fc2_w, *fc2_b;     /* [D, F] */
    /* The same Linear weights packed for the AVX-512 GEMM (kern_pack_nt),
     * or NULL when those kernels are not in use. */
    const float *qkv_p, *proj_p, *fc1_p, *fc2_p;
    /* bf16-packed (kern_pack_nt_bf16) in bf16 mode, else NULL */
    const unsigned short *qkv_h, *proj_h, *fc1_h, *fc2_h;
};

struct model {
    struct model_config cfg;
    struct safetensors *st;
    const float *patch_w, *patch_b; /* [D, 3*P*P], [D] or NULL (no bias) */
    const float *cls;               /* [D] */
    const float *reg;               /* [R, D] or NULL */
    const float *pos_cls;           /* [D] position of CLS, NULL = none */
    const float *pos_grid;          /* [M*M, D], row i*M + j */
    const float *ln_pre_w, *ln_pre_b; /* [D] or NULL */
    const float *norm_w, *norm_b;   /* [D] final norm */
    const float *proj;              /* [D, E] image projection (OpenCLIP), or NULL */
    struct model_block *blocks;     /* [depth] */
    const float *patch_p;           /* packed patch_w, or NULL */
    const unsigned short *patch_h;  /* bf16-packed patch_w in bf16 mode, or NULL */
    int packed;                     /* 1 when the AVX-512 path is used */
    void *pack_map;                 /* the packed weights' mapping (munmap), or NULL */
    size_t pack_map_len;
    void **owned;                   /* buffers to free */
    int n_owned, cap_owned;
    size_t n_params;
};

#endif
