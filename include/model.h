/* model.h - a ViT backbone loaded from a safetensors checkpoint.
 * model_load maps the file, recognises the family and the tensor naming
 * from the names and shapes, infers the configuration, validates every
 * tensor it will use against that configuration, and converts F16/BF16 to
 * float32. After it returns the model is read-only: any number of threads
 * may run forwards on it (each with its own struct vit_work). */
#ifndef LOSTD_MODEL_H
#define LOSTD_MODEL_H

#include <stddef.h>

struct err;

enum model_family {
    MODEL_FAMILY_DINOV2 = 0,
    MODEL_FAMILY_DINO,      /* DINO v1 */
    MODEL_FAMILY_DEIT3,
    MODEL_FAMILY_OPENCLIP
};

enum model_naming {
    MODEL_NAMING_OFFICIAL = 0,  /* facebookresearch/dinov2 (and dino) state dicts */
    MODEL_NAMING_HF,            /* transformers Dinov2Model / Dinov2WithRegistersModel */
    MODEL_NAMING_TIMM,          /* timm vit_*_dinov2, deit3_* */
    MODEL_NAMING_OPENCLIP       /* open_clip visual.* */
};

enum model_ffn { MODEL_FFN_MLP = 0, MODEL_FFN_SWIGLU };
enum model_act { MODEL_ACT_GELU = 0, MODEL_ACT_QUICKGELU };

/* How the stored position grid is resampled to the input's patch grid. */
enum model_interp {
    MODEL_INTERP_OFFSET = 0,    /* plain bicubic, scale factor (g + offset) / M */
    MODEL_INTERP_AA_SIZE,       /* antialiased bicubic to size (gh, gw) */
    MODEL_INTERP_AA_IF_DIFFERS  /* antialiased, only when the token count differs */
};

enum model_feature { MODEL_FEATURE_Q = 0, MODEL_FEATURE_K, MODEL_FEATURE_V };

struct model_config {
    enum model_family family;
    enum model_naming naming;
    enum model_ffn ffn;
    enum model_act act;
    enum model_interp interp;
    int dim, depth, n_head, head_dim;
    int n_reg;                  /* register tokens (0 = none) */
    int patch;                  /* pixels per patch side */
    int ffn_hidden;             /* MLP hidden, or the SwiGLU gated width */
    int pos_grid;               /* side M of the stored position grid */
    int pos_cls;                /* 1 when the CLS token gets a position row */
    int ln_pre;                 /* LayerNorm before block 0 (OpenCLIP) */
    int layerscale;             /* blocks have ls1/ls2 */
    double interp_offset;       /* 0.1 for plain DINOv2 / DINO */
    float ln_eps;
    float mean[3], std[3];      /* input normalisation of the family */
    enum model_feature lost_feature; /* the feature the papers use for LOST */
    int embed_dim;              /* width of the image embedding (OpenCLIP proj), else 0 */
    int precision;              /* enum model_precision in use */
    char arch[48];              /* e.g. "dinov2_vits14_reg" or "dinov2_custom" */
};

struct model;

/* Options that no checkpoint records. n_head 0 = from config.json beside the
 * file, the file's __metadata__, else dim / 64. act -1 = from configuration,
 * else the family default. */
struct model_opts {
    int n_head;
    int act;
    int precision;  /* enum model_precision; 0 = fp32 */
};

enum model_precision {
    MODEL_PRECISION_FP32 = 0,   /* the default: results match the reference code */
    MODEL_PRECISION_BF16        /* projections in bfloat16 with float32 accumulation
                                   (AVX-512 BF16 only); faster, results differ slightly */
};

/* Loads path (safetensors). Returns 0, ERR_NOTFOUND / ERR_IO, ERR_INPUT (not
 * a valid safetensors file), ERR_MODEL (a valid file that is not a
 * supported backbone; the message names the tensor and what was expected)
 * or ERR_UNSUPPORTED (bf16 asked on a CPU without AVX-512 BF16).
 * opts may be NULL. Free with model_free. */
int model_load(const char *path, const struct model_opts *opts, struct model **out,
               struct err *e);
void model_free(struct model *m);

const struct model_config *model_config(const struct model *m);

/* Names for JSON and logs: "dinov2", "official", "mlp", "k", ... */
const char *model_family_name(enum model_family f);
const char *model_naming_name(enum model_naming n);
const char *model_ffn_name(enum model_ffn f);
const char *model_feature_name(enum model_feature f);
const char *model_precision_name(int precision);
/* Parses "fp32" / "bf16"; -1 if unknown. */
int model_precision_parse(const char *s);
/* Parses "k"/"q"/"v" (also "keys"...); -1 if unknown. */
int model_feature_parse(const char *s);

/* Parameter count and bytes of float32 weights held. */
size_t model_n_params(const struct model *m);

/* Writes a model with random weights in the official naming of its family.
 * arch: dinov2_vit{s,b,l,g}14[_reg] (also without the "dinov2_" prefix).
 * Deterministic for a given seed. Returns 0, ERR_INPUT (unknown arch) or
 * ERR_IO. */
int model_init_random(const char *arch, unsigned long long seed, const char *path,
                       struct err *e);

#endif
