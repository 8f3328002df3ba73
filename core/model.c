/* model.c - from a safetensors file to a validated, read-only backbone.
 * Recognises four families (DINOv2 with and without registers, DINO v1,
 * DeiT-III, OpenCLIP) in five namings (official DINOv2 / DINO, Hugging Face
 * transformers, timm, DeiT-III's original, open_clip), infers the
 * configuration from tensor names and shapes, checks every tensor it will use
 * against that configuration before the model is handed out, and packs the
 * Linear weights for the AVX-512 kernels. Never prints. */
#include "model.h"
#include "err.h"
#include "kern_impl.h"
#include "model_impl.h"
#include "safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};
static const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

const char *model_family_name(enum model_family f)
{
    switch (f) {
    case MODEL_FAMILY_DINOV2: return "dinov2";
    case MODEL_FAMILY_DINO: return "dino";
    case MODEL_FAMILY_DEIT3: return "deit3";
    case MODEL_FAMILY_OPENCLIP: return "openclip";
    }
    return "unknown";
}

const char *model_naming_name(enum model_naming n)
{
    switch (n) {
    case MODEL_NAMING_OFFICIAL: return "official";
    case MODEL_NAMING_HF: return "hf";
    case MODEL_NAMING_TIMM: return "timm";
    case MODEL_NAMING_OPENCLIP: return "open_clip";
    }
    return "unknown";
}

const char *model_precision_name(int precision)
{
    return precision == MODEL_PRECISION_BF16 ? "bf16" : "fp32";
}

int model_precision_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "fp32") || !strcmp(s, "float32"))
        return MODEL_PRECISION_FP32;
    if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16"))
        return MODEL_PRECISION_BF16;
    return -1;
}

const char *model_ffn_name(enum model_ffn f) { return f == MODEL_FFN_SWIGLU ? "swiglu" : "mlp"; }

const char *model_feature_name(enum model_feature f)
{
    return f == MODEL_FEATURE_Q ? "q" : f == MODEL_FEATURE_V ? "v" : "k";
}

int model_feature_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "k") || !strcmp(s, "key") || !strcmp(s, "keys"))
        return MODEL_FEATURE_K;
    if (!strcmp(s, "q") || !strcmp(s, "query") || !strcmp(s, "queries"))
        return MODEL_FEATURE_Q;
    if (!strcmp(s, "v") || !strcmp(s, "value") || !strcmp(s, "values"))
        return MODEL_FEATURE_V;
    return -1;
}

const struct model_config *model_config(const struct model *m) { return &m->cfg; }
size_t model_n_params(const struct model *m) { return m->n_params; }

void model_free(struct model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    if (m->pack_map)
        munmap(m->pack_map, m->pack_map_len);
    free(m->blocks);
    safetensors_free(m->st);
    free(m);
}

/* ---- loading context: one error latch, so a long list of look-ups reads
 * straight and stops at the first problem. */
struct loader {
    struct model *m;
    const struct safetensors *st;
    const char *prefix;     /* "" or e.g. "dinov2." for HF classification repos */
    struct err *e;
    int rc;
};

static float *own_buf(struct model *m, size_t n)
{
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **p = realloc(m->owned, cap * sizeof *p);
        if (!p)
            return NULL;
        m->owned = p;
        m->cap_owned = cap;
    }
    float *buf = malloc(n ? n * sizeof(float) : 1);
    if (buf)
        m->owned[m->n_owned++] = buf;
    return buf;
}

static float *own(struct loader *L, size_t n) { return own_buf(L->m, n); }

static const struct safetensors_tensor *find(struct loader *L, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const struct safetensors_tensor *find(struct loader *L, const char *fmt, ...)
{
    if (!fmt)
        return NULL;
    char name[256];
    int n = snprintf(name, sizeof name, "%s", L->prefix);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name + n, sizeof name - n, fmt, ap);
    va_end(ap);
    return safetensors_find(L->st, name);
}

/* Shape after dropping leading 1s, as text, for messages. */
static void shape_str(const struct safetensors_tensor *t, char *buf, size_t n)
{
    size_t k = 0;
    k += snprintf(buf + k, n - k, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

/* Checks t against the expected dims (leading size-1 dims of t ignored) and
 * returns float32 data: the mapped bytes when aligned F32, else a converted
 * copy. NULL (with L->rc set) on any mismatch. */
static const float *data_of(struct loader *L, const struct safetensors_tensor *t,
                            const char *what, int nd, const int64_t *dims)
{
    if (L->rc)
        return NULL;
    if (!t) {
        L->rc = err_set(L->e, ERR_MODEL, "checkpoint has no tensor for %s", what);
        return NULL;
    }
    int skip = 0;
    while (t->ndim - skip > nd && t->shape[skip] == 1)
        skip++;
    int ok = t->ndim - skip == nd;
    for (int i = 0; ok && i < nd; i++)
        ok = t->shape[skip + i] == dims[i];
    if (!ok) {
        char got[128], want[128];
        size_t k = 0;
        shape_str(t, got, sizeof got);
        k += snprintf(want + k, sizeof want - k, "[");
        for (int i = 0; i < nd; i++)
            k += snprintf(want + k, sizeof want - k, "%s%lld", i ? ", " : "",
                          (long long)dims[i]);
        snprintf(want + k, sizeof want - k, "]");
        L->rc = err_set(L->e, ERR_MODEL, "tensor '%s' has shape %s, expected %s", t->name,
                        got, want);
        return NULL;
    }
    if (t->dtype == SAFETENSORS_F32 && ((uintptr_t)t->data & 3) == 0) {
        L->m->n_params += (size_t)t->numel;
        return t->data;
    }
    float *buf = own(L, (size_t)t->numel);
    if (!buf) {
        L->rc = err_set(L->e, ERR_NOMEM, "out of memory converting '%s'", t->name);
        return NULL;
    }
    if ((L->rc = safetensors_read_f32(t, buf, 0, t->numel, L->e)))
        return NULL;
    L->m->n_params += (size_t)t->numel;
    return buf;
}

static const float *get1(struct loader *L, const struct safetensors_tensor *t,
                         const char *what, int64_t a)
{
    int64_t d[1] = {a};
    return data_of(L, t, what, 1, d);
}

static const float *get2(struct loader *L, const struct safetensors_tensor *t,
                         const char *what, int64_t a, int64_t b)
{
    int64_t d[2] = {a, b};
    return data_of(L, t, what, 2, d);
}

/* Concatenates rows of three [D, D] (or [D]) tensors into one buffer: the
 * Hugging Face split of the fused qkv projection, put back as q | k | v. */
static const float *concat3(struct loader *L, const struct safetensors_tensor *t[3],
                            const char *what, int64_t rows, int64_t cols)
{
    if (L->rc)
        return NULL;
    int64_t n = rows * (cols ? cols : 1);
    float *buf = own(L, (size_t)(3 * n));
    if (!buf) {
        L->rc = err_set(L->e, ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < 3; i++) {
        const float *p = cols ? get2(L, t[i], what, rows, cols) : get1(L, t[i], what, rows);
        if (!p)
            return NULL;
        memcpy(buf + i * n, p, (size_t)n * sizeof *buf);
    }
    return buf;
}

/* ---- configuration ------------------------------------------------------ */

static int isqrt_exact(int64_t v)
{
    if (v < 1)
        return -1;
    int64_t r = (int64_t)floor(sqrt((double)v) + 0.5);
    return r * r == v ? (int)r : -1;
}

/* Parses the JSON file `name` in the folder of the weights at `path` into
 * *root (NULL, and 0 returned, when there is no such file; the caller
 * decrefs). A file that is there but not JSON is ERR_MODEL, named in cfg. */
static int load_side_json(const char *path, const char *name, char *cfg, size_t cap,
                          json_t **root, struct err *e)
{
    *root = NULL;
    const char *slash = strrchr(path, '/');
    int dl = slash ? (int)(slash - path) : 0;
    if (snprintf(cfg, cap, "%.*s%s%s", dl, path, slash ? "/" : "", name) >= (int)cap)
        return 0;
    FILE *f = fopen(cfg, "rb");
    if (!f)
        return 0;
    json_error_t je;
    *root = json_loadf(f, 0, &je);
    fclose(f);
    if (!*root)
        return err_set(e, ERR_MODEL, "%s: %s (line %d)", cfg, je.text, je.line);
    return 0;
}

/* Reads config.json beside the weights, when it is a DINOv2 config.
 * Fills heads / eps when present. Missing file is not an error. */
static int read_side_config(const char *path, int dim, int *heads, float *eps, struct err *e)
{
    char cfg[4096];
    json_t *root;
    int rc = load_side_json(path, "config.json", cfg, sizeof cfg, &root, e);
    if (rc || !root)
        return rc;
    json_t *hs = json_object_get(root, "hidden_size");
    json_t *nh = json_object_get(root, "num_attention_heads");
    json_t *le = json_object_get(root, "layer_norm_eps");
    /* A config.json for another model may sit in the same folder: use it
     * only when its width matches the weights. */
    if (json_is_integer(hs) && json_integer_value(hs) == dim) {
        if (json_is_integer(nh)) {
            json_int_t v = json_integer_value(nh);
            if (v < 1 || v > dim || dim % v)
                rc = err_set(e, ERR_MODEL, "%s: num_attention_heads %lld does not divide "
                             "hidden_size %d", cfg, (long long)v, dim);
            else
                *heads = (int)v;
        }
        if (json_is_number(le) && json_number_value(le) > 0 && json_number_value(le) < 1)
            *eps = (float)json_number_value(le);
    }
    json_decref(root);
    return rc;
}

/* The tensor names of one naming, as printf formats taking the block index
 * where relevant; a field left out (NULL) does not exist in that naming.
 * Designated initialisers: a field added or moved here cannot shift the
 * tables below. */
struct names {
    const char *cls, *reg, *pos, *patch_w, *patch_b, *norm_w, *norm_b;
    const char *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ls1, *ls2;
    const char *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    const char *sw1_w, *sw1_b, *sw2_w, *sw2_b; /* SwiGLU in/out */
    const char *ln_pre_w, *ln_pre_b, *proj;     /* OpenCLIP only */
};

static const struct names names_official = {
    .cls = "cls_token",
    .reg = "register_tokens",
    .pos = "pos_embed",
    .patch_w = "patch_embed.proj.weight",
    .patch_b = "patch_embed.proj.bias",
    .norm_w = "norm.weight",
    .norm_b = "norm.bias",
    .ln1_w = "blocks.%d.norm1.weight",
    .ln1_b = "blocks.%d.norm1.bias",
    .qkv_w = "blocks.%d.attn.qkv.weight",
    .qkv_b = "blocks.%d.attn.qkv.bias",
    .proj_w = "blocks.%d.attn.proj.weight",
    .proj_b = "blocks.%d.attn.proj.bias",
    .ls1 = "blocks.%d.ls1.gamma",
    .ls2 = "blocks.%d.ls2.gamma",
    .ln2_w = "blocks.%d.norm2.weight",
    .ln2_b = "blocks.%d.norm2.bias",
    .fc1_w = "blocks.%d.mlp.fc1.weight",
    .fc1_b = "blocks.%d.mlp.fc1.bias",
    .fc2_w = "blocks.%d.mlp.fc2.weight",
    .fc2_b = "blocks.%d.mlp.fc2.bias",
    .sw1_w = "blocks.%d.mlp.w12.weight",
    .sw1_b = "blocks.%d.mlp.w12.bias",
    .sw2_w = "blocks.%d.mlp.w3.weight",
    .sw2_b = "blocks.%d.mlp.w3.bias",
};

static const struct names names_timm = {
    .cls = "cls_token",
    .reg = "reg_token",
    .pos = "pos_embed",
    .patch_w = "patch_embed.proj.weight",
    .patch_b = "patch_embed.proj.bias",
    .norm_w = "norm.weight",
    .norm_b = "norm.bias",
    .ln1_w = "blocks.%d.norm1.weight",
    .ln1_b = "blocks.%d.norm1.bias",
    .qkv_w = "blocks.%d.attn.qkv.weight",
    .qkv_b = "blocks.%d.attn.qkv.bias",
    .proj_w = "blocks.%d.attn.proj.weight",
    .proj_b = "blocks.%d.attn.proj.bias",
    .ls1 = "blocks.%d.ls1.gamma",
    .ls2 = "blocks.%d.ls2.gamma",
    .ln2_w = "blocks.%d.norm2.weight",
    .ln2_b = "blocks.%d.norm2.bias",
    .fc1_w = "blocks.%d.mlp.fc1.weight",
    .fc1_b = "blocks.%d.mlp.fc1.bias",
    .fc2_w = "blocks.%d.mlp.fc2.weight",
    .fc2_b = "blocks.%d.mlp.fc2.bias",
    .sw1_w = "blocks.%d.mlp.fc1.weight",
    .sw1_b = "blocks.%d.mlp.fc1.bias",
    .sw2_w = "blocks.%d.mlp.fc2.weight",
    .sw2_b = "blocks.%d.mlp.fc2.bias",
};

static const struct names names_hf = {
    /* no qkv_w / qkv_b: q, k and v are three Linears, see load_blocks */
    .cls = "embeddings.cls_token",
    .reg = "embeddings.register_tokens",
    .pos = "embeddings.position_embeddings",
    .patch_w = "embeddings.patch_embeddings.projection.weight",
    .patch_b = "embeddings.patch_embeddings.projection.bias",
    .norm_w = "layernorm.weight",
    .norm_b = "layernorm.bias",
    .ln1_w = "encoder.layer.%d.norm1.weight",
    .ln1_b = "encoder.layer.%d.norm1.bias",
    .proj_w = "encoder.layer.%d.attention.output.dense.weight",
    .proj_b = "encoder.layer.%d.attention.output.dense.bias",
    .ls1 = "encoder.layer.%d.layer_scale1.lambda1",
    .ls2 = "encoder.layer.%d.layer_scale2.lambda1",
    .ln2_w = "encoder.layer.%d.norm2.weight",
    .ln2_b = "encoder.layer.%d.norm2.bias",
    .fc1_w = "encoder.layer.%d.mlp.fc1.weight",
    .fc1_b = "encoder.layer.%d.mlp.fc1.bias",
    .fc2_w = "encoder.layer.%d.mlp.fc2.weight",
    .fc2_b = "encoder.layer.%d.mlp.fc2.bias",
    .sw1_w = "encoder.layer.%d.mlp.weights_in.weight",
    .sw1_b = "encoder.layer.%d.mlp.weights_in.bias",
    .sw2_w = "encoder.layer.%d.mlp.weights_out.weight",
    .sw2_b = "encoder.layer.%d.mlp.weights_out.bias",
};

/* DeiT-III as facebookresearch/deit saves it: timm's names but gamma_1/2. */
static const struct names names_deit = {
    .cls = "cls_token",
    .pos = "pos_embed",
    .patch_w = "patch_embed.proj.weight",
    .patch_b = "patch_embed.proj.bias",
    .norm_w = "norm.weight",
    .norm_b = "norm.bias",
    .ln1_w = "blocks.%d.norm1.weight",
    .ln1_b = "blocks.%d.norm1.bias",
    .qkv_w = "blocks.%d.attn.qkv.weight",
    .qkv_b = "blocks.%d.attn.qkv.bias",
    .proj_w = "blocks.%d.attn.proj.weight",
    .proj_b = "blocks.%d.attn.proj.bias",
    .ls1 = "blocks.%d.gamma_1",
    .ls2 = "blocks.%d.gamma_2",
    .ln2_w = "blocks.%d.norm2.weight",
    .ln2_b = "blocks.%d.norm2.bias",
    .fc1_w = "blocks.%d.mlp.fc1.weight",
    .fc1_b = "blocks.%d.mlp.fc1.bias",
    .fc2_w = "blocks.%d.mlp.fc2.weight",
    .fc2_b = "blocks.%d.mlp.fc2.bias",
};

/* open_clip's image tower; the text tower and logit_scale are never read. */
static const struct names names_openclip = {
    .cls = "visual.class_embedding",
    .pos = "visual.positional_embedding",
    .patch_w = "visual.conv1.weight",
    .norm_w = "visual.ln_post.weight",
    .norm_b = "visual.ln_post.bias",
    .ln1_w = "visual.transformer.resblocks.%d.ln_1.weight",
    .ln1_b = "visual.transformer.resblocks.%d.ln_1.bias",
    .qkv_w = "visual.transformer.resblocks.%d.attn.in_proj_weight",
    .qkv_b = "visual.transformer.resblocks.%d.attn.in_proj_bias",
    .proj_w = "visual.transformer.resblocks.%d.attn.out_proj.weight",
    .proj_b = "visual.transformer.resblocks.%d.attn.out_proj.bias",
    .ln2_w = "visual.transformer.resblocks.%d.ln_2.weight",
    .ln2_b = "visual.transformer.resblocks.%d.ln_2.bias",
    .fc1_w = "visual.transformer.resblocks.%d.mlp.c_fc.weight",
    .fc1_b = "visual.transformer.resblocks.%d.mlp.c_fc.bias",
    .fc2_w = "visual.transformer.resblocks.%d.mlp.c_proj.weight",
    .fc2_b = "visual.transformer.resblocks.%d.mlp.c_proj.bias",
    .ln_pre_w = "visual.ln_pre.weight",
    .ln_pre_b = "visual.ln_pre.bias",
    .proj = "visual.proj",
};

/* quick_gelu from an open_clip_config.json beside the weights
 * (model_cfg.quick_gelu); *act stays -1 when there is none. */
static int read_openclip_act(const char *path, int *act, struct err *e)
{
    char cfg[4096];
    json_t *root;
    int rc = load_side_json(path, "open_clip_config.json", cfg, sizeof cfg, &root, e);
    if (rc || !root)
        return rc;
    json_t *q = json_object_get(json_object_get(root, "model_cfg"), "quick_gelu");
    *act = json_is_true(q) ? MODEL_ACT_QUICKGELU : MODEL_ACT_GELU;
    json_decref(root);
    return 0;
}

/* Rows of a position table [1, rows, D] or [rows, D]; -1 if malformed. */
static int64_t pos_rows(const struct safetensors_tensor *t, int64_t dim)
{
    if (!t || t->ndim < 2 || dim < 1 || t->shape[t->ndim - 1] != dim)
        return -1;
    return t->numel / dim;
}

/* Recognises the family and the naming from the tensor names (and the
 * position table's length), and picks the HF key prefix. A file holding
 * two families, or none, is ERR_MODEL with what was found. */
static int detect(const struct safetensors *st, struct model_config *c,
                  const struct names **N, const char **prefix, struct err *e)
{
    static const char *hf_prefixes[] = {"", "dinov2.", "dinov2_with_registers."};
    const char *hf = NULL;
    for (size_t i = 0; i < sizeof hf_prefixes / sizeof hf_prefixes[0] && !hf; i++) {
        char name[128];
        snprintf(name, sizeof name, "%sembeddings.patch_embeddings.projection.weight",
                 hf_prefixes[i]);
        if (safetensors_find(st, name))
            hf = hf_prefixes[i];
    }
    const struct safetensors_tensor *pe = safetensors_find(st, "patch_embed.proj.weight");
    const struct safetensors_tensor *clip = safetensors_find(st, "visual.conv1.weight");
    int found = (hf != NULL) + (pe != NULL) + (clip != NULL);
    *prefix = "";
    if (found > 1)
        return err_set(e, ERR_MODEL, "mixed checkpoint: it holds %s%s%s; expected one "
                       "image backbone", hf ? "Hugging Face ViT weights, " : "",
                       pe ? "timm/official ViT weights (patch_embed.*), " : "",
                       clip ? "an OpenCLIP image tower (visual.*)" : "");
    if (hf) {
        char name[128];
        snprintf(name, sizeof name, "%sencoder.layer.0.layer_scale1.lambda1", hf);
        if (!safetensors_find(st, name)) {
            snprintf(name, sizeof name, "%sencoder.layer.0.layernorm_before.weight", hf);
            return err_set(e, ERR_MODEL, "a Hugging Face transformers ViTModel checkpoint%s: "
                           "only its DINOv2 classes are supported; use the official or "
                           "timm file of this model", safetensors_find(st, name)
                           ? " (DINO v1 style, encoder.layer.*.layernorm_before)" : "");
        }
        *prefix = hf;
        c->family = MODEL_FAMILY_DINOV2;
        c->naming = MODEL_NAMING_HF;
        *N = &names_hf;
        return 0;
    }
    if (clip) {
        c->family = MODEL_FAMILY_OPENCLIP;
        c->naming = MODEL_NAMING_OPENCLIP;
        *N = &names_openclip;
        return 0;
    }
    if (pe) {
        int64_t D = pe->ndim == 4 ? pe->shape[0] : -1;
        int ls = safetensors_find(st, "blocks.0.ls1.gamma") != NULL;
        int gamma = safetensors_find(st, "blocks.0.gamma_1") != NULL;
        int reg = safetensors_find(st, "reg_token") || safetensors_find(st, "register_tokens");
        int64_t rows = pos_rows(safetensors_find(st, "pos_embed"), D);
        int cls_row = rows > 1 && isqrt_exact(rows - 1) > 0;
        if (!ls && !gamma) {
            c->family = MODEL_FAMILY_DINO;
            c->naming = MODEL_NAMING_OFFICIAL;
            *N = &names_official;
        } else if (!cls_row && !reg) {
            /* LayerScale and a table without a CLS row: DeiT-III. */
            c->family = MODEL_FAMILY_DEIT3;
            c->naming = gamma ? MODEL_NAMING_OFFICIAL : MODEL_NAMING_TIMM;
            *N = gamma ? &names_deit : &names_timm;
        } else {
            c->family = MODEL_FAMILY_DINOV2;
            /* timm drops mask_token and calls the registers reg_token. */
            int timm = safetensors_find(st, "reg_token") || !safetensors_find(st, "mask_token");
            c->naming = timm ? MODEL_NAMING_TIMM : MODEL_NAMING_OFFICIAL;
            *N = timm ? &names_timm : &names_official;
        }
        return 0;
    }
    if (safetensors_find(st, "token_embedding.weight"))
        return err_set(e, ERR_MODEL, "a CLIP text tower (token_embedding.weight) without an "
                       "image tower (visual.conv1.weight)");
    const struct safetensors_tensor *t0 = safetensors_at(st, 0);
    return err_set(e, ERR_MODEL, "not a supported ViT checkpoint: no patch embedding "
                   "(looked for patch_embed.proj.weight, visual.conv1.weight and "
                   "embeddings.patch_embeddings.projection.weight; %d tensors, first '%s')",
                   safetensors_count(st), t0 ? t0->name : "-");
}

static int load_blocks(struct loader *L, const struct names *N)
{
    struct model *m = L->m;
    const struct model_config *c = &m->cfg;
    int64_t D = c->dim, F = c->ffn_hidden;
    int64_t F1 = c->ffn == MODEL_FFN_SWIGLU ? 2 * F : F;
    for (int i = 0; i < c->depth && !L->rc; i++) {
        struct model_block *b = &m->blocks[i];
        char what[64];
        snprintf(what, sizeof what, "block %d", i);
        b->ln1_w = get1(L, find(L, N->ln1_w, i), what, D);
        b->ln1_b = get1(L, find(L, N->ln1_b, i), what, D);
        if (c->naming == MODEL_NAMING_HF) {
            static const char *parts[3] = {"query", "key", "value"};
            const struct safetensors_tensor *w[3], *bb[3];
            for (int k = 0; k < 3; k++) {
                w[k] = find(L, "encoder.layer.%d.attention.attention.%s.weight", i, parts[k]);
                bb[k] = find(L, "encoder.layer.%d.attention.attention.%s.bias", i, parts[k]);
            }
            b->qkv_w = concat3(L, w, "attention query/key/value weight", D, D);
            b->qkv_b = concat3(L, bb, "attention query/key/value bias", D, 0);
        } else {
            b->qkv_w = get2(L, find(L, N->qkv_w, i), what, 3 * D, D);
            b->qkv_b = get1(L, find(L, N->qkv_b, i), what, 3 * D);
        }
        b->proj_w = get2(L, find(L, N->proj_w, i), what, D, D);
        b->proj_b = get1(L, find(L, N->proj_b, i), what, D);
        if (c->layerscale) {
            b->ls1 = get1(L, find(L, N->ls1, i), what, D);
            b->ls2 = get1(L, find(L, N->ls2, i), what, D);
        }
        b->ln2_w = get1(L, find(L, N->ln2_w, i), what, D);
        b->ln2_b = get1(L, find(L, N->ln2_b, i), what, D);
        int sw = c->ffn == MODEL_FFN_SWIGLU;
        b->fc1_w = get2(L, find(L, sw ? N->sw1_w : N->fc1_w, i), what, F1, D);
        b->fc1_b = get1(L, find(L, sw ? N->sw1_b : N->fc1_b, i), what, F1);
        b->fc2_w = get2(L, find(L, sw ? N->sw2_w : N->fc2_w, i), what, D, F);
        b->fc2_b = get1(L, find(L, sw ? N->sw2_b : N->fc2_b, i), what, D);
    }
    return L->rc;
}

static int infer_config(struct loader *L, const struct names *N, const char *path,
                        const struct model_opts *opts)
{
    struct model_config *c = &L->m->cfg;
    struct err *e = L->e;
    const struct safetensors_tensor *pw = find(L, "%s", N->patch_w);
    if (pw->ndim != 4 || pw->shape[1] != 3 || pw->shape[2] != pw->shape[3] ||
        pw->shape[0] < 1 || pw->shape[2] < 1 || pw->shape[0] > 65536 || pw->shape[2] > 64) {
        char s[128];
        shape_str(pw, s, sizeof s);
        return err_set(e, ERR_MODEL, "tensor '%s' has shape %s, expected [dim, 3, P, P]",
                       pw->name, s);
    }
    c->dim = (int)pw->shape[0];
    c->patch = (int)pw->shape[2];
    c->depth = 0;
    while (c->depth < 1000 && find(L, N->ln1_w, c->depth))
        c->depth++;
    if (c->depth == 0)
        return err_set(e, ERR_MODEL, "no transformer blocks found (expected '%s%s')",
                       L->prefix, "blocks.0.norm1.weight");
    /* Registers. */
    const struct safetensors_tensor *rt = find(L, "%s", N->reg);
    c->n_reg = 0;
    if (rt) {
        if (rt->ndim < 2 || rt->shape[rt->ndim - 1] != c->dim || rt->numel / c->dim > 256) {
            char s[128];
            shape_str(rt, s, sizeof s);
            return err_set(e, ERR_MODEL, "tensor '%s' has shape %s, expected [1, R, %d]",
                           rt->name, s, c->dim);
        }
        c->n_reg = (int)(rt->numel / c->dim);
    }
    /* Position table: 1 + M*M rows with a CLS slot, or M*M without. */
    const struct safetensors_tensor *pt = find(L, "%s", N->pos);
    if (!pt)
        return err_set(e, ERR_MODEL, "checkpoint has no position embedding '%s%s'",
                       L->prefix, N->pos);
    int64_t rows = pt->ndim >= 2 ? pt->numel / (pt->shape[pt->ndim - 1] ? pt->shape[pt->ndim - 1] : 1) : 0;
    if (pt->ndim < 2 || pt->shape[pt->ndim - 1] != c->dim)
        rows = -1;
    int M = rows > 1 ? isqrt_exact(rows - 1) : -1;
    if (M > 0) {
        c->pos_cls = 1;
    } else if ((M = isqrt_exact(rows)) > 0) {
        c->pos_cls = 0;
    } else {
        char s[128];
        shape_str(pt, s, sizeof s);
        return err_set(e, ERR_MODEL, "tensor '%s' has shape %s, expected [1, 1 + M*M, %d] "
                       "or [1, M*M, %d]", pt->name, s, c->dim, c->dim);
    }
    c->pos_grid = M;
    /* FFN kind and width. */
    const struct safetensors_tensor *f1 = NULL, *f2 = NULL;
    if (c->naming != MODEL_NAMING_TIMM && find(L, N->sw1_w, 0)) {
        c->ffn = MODEL_FFN_SWIGLU;
        f1 = find(L, N->sw1_w, 0);
        f2 = find(L, N->sw2_w, 0);
    } else {
        f1 = find(L, N->fc1_w, 0);
        f2 = find(L, N->fc2_w, 0);
        c->ffn = MODEL_FFN_MLP;
    }
    if (!f1 || !f2 || f1->ndim != 2 || f2->ndim != 2 || f2->shape[0] != c->dim ||
        f1->shape[1] != c->dim)
        return err_set(e, ERR_MODEL, "block 0: no MLP found (expected '%s' [F, %d] and "
                       "'%s' [%d, F])", "mlp.fc1.weight", c->dim, "mlp.fc2.weight", c->dim);
    c->ffn_hidden = (int)f2->shape[1];
    if (c->naming == MODEL_NAMING_TIMM && f1->shape[0] == 2 * f2->shape[1])
        c->ffn = MODEL_FFN_SWIGLU; /* timm's SwiGLUPacked keeps fc1/fc2 names */
    if (c->ffn == MODEL_FFN_SWIGLU && f1->shape[0] != 2 * f2->shape[1])
        return err_set(e, ERR_MODEL, "tensor '%s' has %lld rows, expected 2 x %lld for "
                       "SwiGLU", f1->name, (long long)f1->shape[0], (long long)f2->shape[1]);
    c->layerscale = find(L, N->ls1, 0) != NULL;
    if ((c->family == MODEL_FAMILY_DINOV2 || c->family == MODEL_FAMILY_DEIT3) &&
        !c->layerscale)
        return err_set(e, ERR_MODEL, "block 0 has no LayerScale (expected '%s%s')",
                       L->prefix, "blocks.0.ls1.gamma");
    /* Heads: flag, config.json, metadata, else head dim 64. */
    c->ln_eps = c->family == MODEL_FAMILY_OPENCLIP ? 1e-5f : 1e-6f;
    int heads = 0;
    int rc = 0;
    if (c->family == MODEL_FAMILY_DINOV2)
        rc = read_side_config(path, c->dim, &heads, &c->ln_eps, e);
    if (rc)
        return rc;
    const char *mh = safetensors_meta(L->st, "num_heads");
    if (!mh)
        mh = safetensors_meta(L->st, "heads");
    if (opts && opts->n_head > 0)
        heads = opts->n_head;
    else if (!heads && mh)
        heads = atoi(mh);
    if (!heads)
        heads = c->dim / 64 > 0 ? c->dim / 64 : 1;
    if (heads < 1 || c->dim % heads)
        return err_set(e, ERR_MODEL, "%d heads do not divide the width %d", heads, c->dim);
    c->n_head = heads;
    c->head_dim = c->dim / heads;
    c->act = MODEL_ACT_GELU;
    if (c->family == MODEL_FAMILY_OPENCLIP) {
        /* No checkpoint records the activation: the flag, an open_clip config
         * beside the weights, the file's metadata, else GELU. */
        int act = -1;
        if (opts && opts->act >= 0)
            act = opts->act;
        else if ((rc = read_openclip_act(path, &act, e)))
            return rc;
        const char *ma = safetensors_meta(L->st, "act");
        if (act < 0 && ma)
            act = !strcmp(ma, "quickgelu") || !strcmp(ma, "quick_gelu") ? MODEL_ACT_QUICKGELU
                                                                         : MODEL_ACT_GELU;
        c->act = act == MODEL_ACT_QUICKGELU ? MODEL_ACT_QUICKGELU : MODEL_ACT_GELU;
    }
    c->ln_pre = c->family == MODEL_FAMILY_OPENCLIP;
    memcpy(c->mean, imagenet_mean, sizeof c->mean);
    memcpy(c->std, imagenet_std, sizeof c->std);
    c->interp_offset = 0.0;
    c->lost_feature = MODEL_FEATURE_K;
    switch (c->family) {
    case MODEL_FAMILY_DINOV2:
        /* Official rule: register models resample with antialiasing to the
         * exact size; the plain ones keep the 0.1 offset (vit.md 2.3). */
        c->interp = c->n_reg > 0 ? MODEL_INTERP_AA_SIZE : MODEL_INTERP_OFFSET;
        c->interp_offset = c->n_reg > 0 ? 0.0 : 0.1;
        break;
    case MODEL_FAMILY_DINO:
        c->interp = MODEL_INTERP_OFFSET;
        c->interp_offset = 0.1;
        break;
    case MODEL_FAMILY_DEIT3:
        c->interp = MODEL_INTERP_AA_SIZE;
        c->lost_feature = MODEL_FEATURE_V; /* the registers paper's choice */
        break;
    case MODEL_FAMILY_OPENCLIP:
        c->interp = MODEL_INTERP_AA_IF_DIFFERS;
        c->lost_feature = MODEL_FEATURE_V;
        memcpy(c->mean, clip_mean, sizeof c->mean);
        memcpy(c->std, clip_std, sizeof c->std);
        break;
    }
    const char *size = c->dim == 384 ? "s" : c->dim == 512 ? "m" : c->dim == 768 ? "b"
                     : c->dim == 1024 ? "l" : c->dim == 1280 ? "h" : c->dim == 1536 ? "g"
                     : NULL;
    const char *fam = model_family_name(c->family);
    int standard = size && c->depth == (c->dim >= 1024 ? (c->dim == 1536 ? 40 : c->dim == 1280
                                                          ? 32 : 24) : 12);
    if (standard)
        snprintf(c->arch, sizeof c->arch, "%s_vit%s%d%s", fam, size, c->patch,
                 c->n_reg ? "_reg" : "");
    else
        snprintf(c->arch, sizeof c->arch, "%s_d%d_l%d_p%d%s", fam, c->dim, c->depth,
                 c->patch, c->n_reg ? "_reg" : "");
    return 0;
}

/* One Linear weight [n, k] to pack for the AVX-512 GEMM (float32 or bf16
 * panels) into its place in the packed region. */
struct pack_job {
    const float *w;
    int n, k, bf16;
    void *dst;
};

struct pack_team {
    struct safetensors *st;
    const struct pack_job *jobs;
    int n_jobs;
    atomic_int next;
};

/* Takes jobs until none is left: faults the source in with one call, packs
 * it, then drops the source pages, so the resident size stays near one
 * copy of the weights. */
static void *pack_worker(void *v)
{
    struct pack_team *t = v;
    for (int i; (i = atomic_fetch_add(&t->next, 1)) < t->n_jobs;) {
        const struct pack_job *j = &t->jobs[i];
        size_t bytes = (size_t)j->n * j->k * sizeof(float);
        safetensors_will_need(t->st, j->w, bytes);
        if (j->bf16)
            kern_pack_nt_bf16(j->w, j->k, j->n, j->k, j->dst);
        else
            kern_pack_nt(j->w, j->k, j->n, j->k, j->dst);
        safetensors_drop_range(t->st, j->w, bytes);
    }
    return NULL;
}

#define PACK_HUGE (2u << 20)  /* the transparent huge page size */
#define PACK_MAX_THREADS 8    /* packing is memory-bound: more cores stop helping */

/* *p (n floats) replaced by a copy the model owns when it lies in the
 * file's mapping (a converted tensor is owned already). */
static int keep_copy(struct model *m, const float **p, size_t n)
{
    if (!*p || !safetensors_in_mapping(m->st, *p, n * sizeof **p))
        return 0;
    float *q = own_buf(m, n);
    if (!q)
        return -1;
    memcpy(q, *p, n * sizeof *q);
    *p = q;
    return 0;
}

/* Once the Linear weights are packed, a forward reads only the small
 * tensors (biases, norms, layer scales, tokens, position table): copies of
 * them, so that the file's mapping is not touched again after the load
 * drops it. A page cache that holds the file in large folios maps a whole
 * folio (up to 2 MiB) into the process for each small tensor read: 48 MB
 * of RSS for ViT-S's 84 MB file, for about 2.5 MB of copies. */
static int copy_small(struct model *m)
{
    const struct model_config *c = &m->cfg;
    size_t D = (size_t)c->dim, M = (size_t)c->pos_grid;
    size_t F1 = (size_t)c->ffn_hidden * (c->ffn == MODEL_FFN_SWIGLU ? 2 : 1);
    int bad = keep_copy(m, &m->patch_b, D) | keep_copy(m, &m->cls, D) |
              keep_copy(m, &m->reg, (size_t)c->n_reg * D) | keep_copy(m, &m->pos_cls, D) |
              keep_copy(m, &m->pos_grid, M * M * D) | keep_copy(m, &m->ln_pre_w, D) |
              keep_copy(m, &m->ln_pre_b, D) | keep_copy(m, &m->norm_w, D) |
              keep_copy(m, &m->norm_b, D) | keep_copy(m, &m->proj, D * (size_t)c->embed_dim);
    for (int i = 0; i < c->depth; i++) {
        struct model_block *b = &m->blocks[i];
        bad |= keep_copy(m, &b->ln1_w, D) | keep_copy(m, &b->ln1_b, D) |
               keep_copy(m, &b->qkv_b, 3 * D) | keep_copy(m, &b->proj_b, D) |
               keep_copy(m, &b->ls1, D) | keep_copy(m, &b->ls2, D) |
               keep_copy(m, &b->ln2_w, D) | keep_copy(m, &b->ln2_b, D) |
               keep_copy(m, &b->fc1_b, F1) | keep_copy(m, &b->fc2_b, D);
    }
    return bad;
}

/* Weights are packed once here, so no forward pays for it, into one mapping
 * aligned to and advised for 2 MiB pages (a 1.2 GB ViT-L takes ~600 page
 * faults instead of ~300,000), by up to PACK_MAX_THREADS threads (the online
 * CPUs); a job is a pure copy, so the result does not depend on the thread
 * count. The patch embedding stays float32 in bf16 mode: it sees raw
 * pixels once. */
static int pack_weights(struct model *m, struct err *e)
{
    const struct model_config *c = &m->cfg;
    int D = c->dim, F = c->ffn_hidden, F1 = c->ffn == MODEL_FFN_SWIGLU ? 2 * F : F;
    int K = 3 * c->patch * c->patch, bf = c->precision == MODEL_PRECISION_BF16;
    int n_jobs = 1 + 4 * c->depth;
    struct pack_job *jobs = calloc((size_t)n_jobs, sizeof *jobs);
    if (!jobs)
        return err_set(e, ERR_NOMEM, "out of memory packing weights");
    jobs[0] = (struct pack_job){m->patch_w, D, K, 0, NULL};
    for (int i = 0; i < c->depth; i++) {
        const struct model_block *b = &m->blocks[i];
        jobs[1 + 4 * i] = (struct pack_job){b->qkv_w, 3 * D, D, bf, NULL};
        jobs[2 + 4 * i] = (struct pack_job){b->proj_w, D, D, bf, NULL};
        jobs[3 + 4 * i] = (struct pack_job){b->fc1_w, F1, D, bf, NULL};
        jobs[4 + 4 * i] = (struct pack_job){b->fc2_w, D, F, bf, NULL};
    }
    size_t total = 0, *offs = malloc(n_jobs * sizeof *offs);
    if (!offs) {
        free(jobs);
        return err_set(e, ERR_NOMEM, "out of memory packing weights");
    }
    for (int i = 0; i < n_jobs; i++) {
        size_t bytes = jobs[i].bf16 ? kern_packed_bf16_elems(jobs[i].n, jobs[i].k) * 2
                                    : kern_packed_floats(jobs[i].n, jobs[i].k) * sizeof(float);
        offs[i] = total;
        total += (bytes + 63) / 64 * 64;
    }
    size_t len = total + PACK_HUGE;
    char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        free(offs);
        free(jobs);
        return err_set(e, ERR_NOMEM, "out of memory packing weights (%zu bytes)", total);
    }
    /* keep the 2 MiB-aligned part, return the rest */
    uintptr_t base = ((uintptr_t)map + PACK_HUGE - 1) / PACK_HUGE * PACK_HUGE;
    size_t head = base - (uintptr_t)map, keep = (total + 4095) / 4096 * 4096;
    if (head)
        munmap(map, head);
    if (len - head > keep)
        munmap((char *)base + keep, len - head - keep);
    m->pack_map = (void *)base;
    m->pack_map_len = keep;
#ifdef MADV_HUGEPAGE
    madvise(m->pack_map, keep, MADV_HUGEPAGE);
#endif
    for (int i = 0; i < n_jobs; i++)
        jobs[i].dst = (char *)base + offs[i];
    free(offs);
    struct pack_team t = {.st = m->st, .jobs = jobs, .n_jobs = n_jobs};
    atomic_init(&t.next, 0);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n_thr = cpus < 1 ? 1 : cpus > PACK_MAX_THREADS ? PACK_MAX_THREADS : (int)cpus;
    pthread_t th[PACK_MAX_THREADS];
    int started = 0;
    while (started < n_thr - 1 && !pthread_create(&th[started], NULL, pack_worker, &t))
        started++;
    pack_worker(&t); /* this thread too; if no thread could start, it does all */
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    m->patch_p = jobs[0].dst;
    for (int i = 0; i < c->depth; i++) {
        struct model_block *b = &m->blocks[i];
        if (bf) {
            b->qkv_h = jobs[1 + 4 * i].dst;
            b->proj_h = jobs[2 + 4 * i].dst;
            b->fc1_h = jobs[3 + 4 * i].dst;
            b->fc2_h = jobs[4 + 4 * i].dst;
        } else {
            b->qkv_p = jobs[1 + 4 * i].dst;
            b->proj_p = jobs[2 + 4 * i].dst;
            b->fc1_p = jobs[3 + 4 * i].dst;
            b->fc2_p = jobs[4 + 4 * i].dst;
        }
    }
    free(jobs);
    m->packed = 1;
    if (copy_small(m))
        return err_set(e, ERR_NOMEM, "out of memory copying the small tensors");
    safetensors_drop_pages(m->st);
    return 0;
}

int model_load(const char *path, const struct model_opts *opts, struct model **out,
               struct err *e)
{
    *out = NULL;
    struct model *m = calloc(1, sizeof *m);
    if (!m)
        return err_set(e, ERR_NOMEM, "out of memory");
    int rc = safetensors_load(path, &m->st, e);
    if (rc) {
        model_free(m);
        return rc;
    }
    struct loader L = {.m = m, .st = m->st, .e = e};
    const struct names *N = NULL;
    rc = detect(m->st, &m->cfg, &N, &L.prefix, e);
    if (!rc)
        rc = infer_config(&L, N, path, opts);
    if (!rc) {
        struct model_config *c = &m->cfg;
        int64_t D = c->dim, P = c->patch, M = c->pos_grid;
        m->blocks = calloc(c->depth, sizeof *m->blocks);
        if (!m->blocks)
            rc = L.rc = err_set(e, ERR_NOMEM, "out of memory");
        int64_t d4[4] = {D, 3, P, P}; /* read as [D, 3*P*P], row-major */
        m->patch_w = data_of(&L, find(&L, "%s", N->patch_w), "patch embedding", 4, d4);
        if (N->patch_b)
            m->patch_b = get1(&L, find(&L, "%s", N->patch_b), "patch embedding bias", D);
        m->cls = get1(&L, find(&L, "%s", N->cls), "CLS token", D);
        if (c->n_reg)
            m->reg = get2(&L, find(&L, "%s", N->reg), "register tokens", c->n_reg, D);
        const float *pos = get2(&L, find(&L, "%s", N->pos), "position embedding",
                                M * M + c->pos_cls, D);
        if (pos) {
            m->pos_cls = c->pos_cls ? pos : NULL;
            m->pos_grid = pos + (c->pos_cls ? D : 0);
        }
        m->norm_w = get1(&L, find(&L, "%s", N->norm_w), "final norm", D);
        m->norm_b = get1(&L, find(&L, "%s", N->norm_b), "final norm", D);
        if (c->ln_pre) {
            m->ln_pre_w = get1(&L, find(&L, "%s", N->ln_pre_w), "ln_pre", D);
            m->ln_pre_b = get1(&L, find(&L, "%s", N->ln_pre_b), "ln_pre", D);
        }
        const struct safetensors_tensor *pj = N->proj ? find(&L, "%s", N->proj) : NULL;
        if (pj && pj->ndim == 2 && pj->shape[0] == D && !L.rc) {
            c->embed_dim = (int)pj->shape[1];
            m->proj = get2(&L, pj, "image projection", D, c->embed_dim);
        }
        if (!L.rc)
            load_blocks(&L, N);
        rc = L.rc;
        c->precision = opts && opts->precision == MODEL_PRECISION_BF16 ? MODEL_PRECISION_BF16
                                                                       : MODEL_PRECISION_FP32;
        if (!rc && c->precision == MODEL_PRECISION_BF16 && !kern_bf16_available())
            rc = err_set(e, ERR_UNSUPPORTED, "bf16 precision needs a CPU with AVX-512 BF16 "
                         "(and LOSTD_KERNELS not set to blas); use fp32");
        if (!rc && kern_available())
            rc = pack_weights(m, e);
    }
    if (rc) {
        model_free(m);
        return err_prefix(e, "%s", path);
    }
    *out = m;
    return 0;
}
