/* model_init.c - full-size checkpoints with random weights, in the official
 * naming, for benchmarks and tests where pretrained weights cannot be
 * downloaded. The scales are chosen so every block matters (LayerScale 0.1,
 * not the training init 1e-5) and the position table varies enough that a
 * wrong interpolation shows. Deterministic for a given seed. */
#include "err.h"
#include "model.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DINOV2, DINO, DEIT3, OPENCLIP };

struct arch {
    const char *name;
    int family, dim, depth, heads, swiglu, patch;
};

static const struct arch archs[] = {
    {"vits14", DINOV2, 384, 12, 6, 0, 14},
    {"vitb14", DINOV2, 768, 12, 12, 0, 14},
    {"vitl14", DINOV2, 1024, 24, 16, 0, 14},
    {"vitg14", DINOV2, 1536, 40, 24, 1, 14},
    {"dino_vits16", DINO, 384, 12, 6, 0, 16},
    {"dino_vits8", DINO, 384, 12, 6, 0, 8},
    {"dino_vitb16", DINO, 768, 12, 12, 0, 16},
    {"dino_vitb8", DINO, 768, 12, 12, 0, 8},
    {"deit3_base16", DEIT3, 768, 12, 12, 0, 16},
    {"openclip_vitb16", OPENCLIP, 768, 12, 12, 0, 16},
};

struct rng {
    unsigned long long s;
    int have;
    double spare;
};

static unsigned long long next64(struct rng *r)
{
    unsigned long long z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double normal(struct rng *r)
{
    if (r->have) {
        r->have = 0;
        return r->spare;
    }
    double u1 = ((next64(r) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (next64(r) >> 11) / 9007199254740992.0;
    double rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
    r->spare = rad * sin(th);
    r->have = 1;
    return rad * cos(th);
}

struct builder {
    struct safetensors_entry *ent;
    int n, cap;
    struct rng rng;
    int failed;
};

static void add(struct builder *b, const char *name, int ndim, const int64_t *shape,
                double mean, double std)
{
    if (b->failed)
        return;
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 256;
        struct safetensors_entry *p = realloc(b->ent, cap * sizeof *p);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->ent = p;
        b->cap = cap;
    }
    struct safetensors_entry *en = &b->ent[b->n];
    memset(en, 0, sizeof *en);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        en->shape[i] = shape[i];
        numel *= (size_t)shape[i];
    }
    en->ndim = ndim;
    en->name = strdup(name);
    float *d = malloc(numel * sizeof *d);
    if (!d || !en->name) {
        free(d);
        b->failed = 1;
        return;
    }
    for (size_t i = 0; i < numel; i++)
        d[i] = (float)(mean + std * normal(&b->rng));
    en->data = d;
    b->n++;
}

#define SHAPE(...) (const int64_t[]){__VA_ARGS__}, sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)

static void add_s(struct builder *b, const char *name, const int64_t *shape, int ndim,
                  double mean, double std)
{
    add(b, name, ndim, shape, mean, std);
}

/* DINO v1 (official names, no LayerScale), DeiT-III (timm names, no CLS
 * position row, LayerScale, a classifier head) and the OpenCLIP image tower
 * (open_clip names, no conv bias, ln_pre, packed in_proj, proj, and a
 * logit_scale that the loader must ignore). */
static void build_other(struct builder *b, const struct arch *ar)
{
    int64_t D = ar->dim, F = 4 * D, P = ar->patch, M = 224 / P;
    char nm[160];
    int clip = ar->family == OPENCLIP;
    if (clip) {
        add_s(b, "visual.class_embedding", SHAPE(D), 0, 0.02);
        add_s(b, "visual.positional_embedding", SHAPE(1 + M * M, D), 0, 0.5);
        add_s(b, "visual.conv1.weight", SHAPE(D, 3, P, P), 0, 0.05);
        add_s(b, "visual.ln_pre.weight", SHAPE(D), 1, 0.1);
        add_s(b, "visual.ln_pre.bias", SHAPE(D), 0, 0.05);
    } else {
        add_s(b, "cls_token", SHAPE(1, 1, D), 0, 0.02);
        if (ar->family == DEIT3)
            add_s(b, "pos_embed", SHAPE(1, M * M, D), 0, 0.5);
        else
            add_s(b, "pos_embed", SHAPE(1, 1 + M * M, D), 0, 0.5);
        add_s(b, "patch_embed.proj.weight", SHAPE(D, 3, P, P), 0, 0.05);
        add_s(b, "patch_embed.proj.bias", SHAPE(D), 0, 0.02);
    }
    for (int i = 0; i < ar->depth; i++) {
#define T(fmt) (snprintf(nm, sizeof nm, clip ? "visual.transformer.resblocks.%d." fmt \
                                             : "blocks.%d." fmt, i), nm)
        add_s(b, clip ? T("ln_1.weight") : T("norm1.weight"), SHAPE(D), 1, 0.1);
        add_s(b, clip ? T("ln_1.bias") : T("norm1.bias"), SHAPE(D), 0, 0.05);
        add_s(b, clip ? T("attn.in_proj_weight") : T("attn.qkv.weight"), SHAPE(3 * D, D), 0,
              1.0 / sqrt((double)D));
        add_s(b, clip ? T("attn.in_proj_bias") : T("attn.qkv.bias"), SHAPE(3 * D), 0, 0.05);
        add_s(b, clip ? T("attn.out_proj.weight") : T("attn.proj.weight"), SHAPE(D, D), 0,
              1.0 / sqrt((double)D));
        add_s(b, clip ? T("attn.out_proj.bias") : T("attn.proj.bias"), SHAPE(D), 0, 0.02);
        add_s(b, clip ? T("ln_2.weight") : T("norm2.weight"), SHAPE(D), 1, 0.1);
        add_s(b, clip ? T("ln_2.bias") : T("norm2.bias"), SHAPE(D), 0, 0.05);
        /* Without LayerScale the residual branches need a smaller scale to
         * keep the stream from growing block by block. */
        double g = ar->family == DEIT3 ? 1.0 : 0.3;
        add_s(b, clip ? T("mlp.c_fc.weight") : T("mlp.fc1.weight"), SHAPE(F, D), 0,
              1.0 / sqrt((double)D));
        add_s(b, clip ? T("mlp.c_fc.bias") : T("mlp.fc1.bias"), SHAPE(F), 0, 0.02);
        add_s(b, clip ? T("mlp.c_proj.weight") : T("mlp.fc2.weight"), SHAPE(D, F), 0,
              g / sqrt((double)F));
        add_s(b, clip ? T("mlp.c_proj.bias") : T("mlp.fc2.bias"), SHAPE(D), 0, 0.02);
        if (ar->family == DEIT3) {
            add_s(b, T("ls1.gamma"), SHAPE(D), 0.1, 0.02);
            add_s(b, T("ls2.gamma"), SHAPE(D), 0.1, 0.02);
        }
#undef T
    }
    if (clip) {
        add_s(b, "visual.ln_post.weight", SHAPE(D), 1, 0.1);
        add_s(b, "visual.ln_post.bias", SHAPE(D), 0, 0.05);
        add_s(b, "visual.proj", SHAPE(D, 512), 0, 1.0 / sqrt((double)D));
        add_s(b, "logit_scale", SHAPE(1), 4.6, 0);
    } else {
        add_s(b, "norm.weight", SHAPE(D), 1, 0.1);
        add_s(b, "norm.bias", SHAPE(D), 0, 0.05);
        if (ar->family == DEIT3) {
            add_s(b, "head.weight", SHAPE(1000, D), 0, 0.02);
            add_s(b, "head.bias", SHAPE(1000), 0, 0.0);
        }
    }
}

int model_init_random(const char *arch_name, unsigned long long seed, const char *path,
                      struct err *e)
{
    const char *a = arch_name;
    if (!strncmp(a, "dinov2_", 7))
        a += 7; /* other families keep their prefix: it is part of the name */
    const struct arch *ar = NULL;
    int reg = 0;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        size_t l = strlen(archs[i].name);
        if (!strncmp(a, archs[i].name, l) &&
            (!a[l] || (archs[i].family == DINOV2 && !strcmp(a + l, "_reg")))) {
            ar = &archs[i];
            reg = a[l] != '\0';
        }
    }
    if (!ar)
        return err_set(e, ERR_INPUT, "unknown arch '%s' (known: vits14, vitb14, vitl14, "
                       "vitg14, each also with _reg, optionally prefixed dinov2_; dino_vits16, "
                       "dino_vits8, dino_vitb16, dino_vitb8, deit3_base16, openclip_vitb16)",
                       arch_name);
    int64_t D = ar->dim, F = ar->swiglu ? ((int64_t)(4 * D * 2 / 3) + 7) / 8 * 8 : 4 * D;
    struct builder b = {.rng = {.s = seed * 0x2545f4914f6cdd1dULL + 1}};
    char nm[128];
    if (ar->family != DINOV2) {
        build_other(&b, ar);
        goto write;
    }
    add_s(&b, "cls_token", SHAPE(1, 1, D), 0, 0.02);
    if (reg)
        add_s(&b, "register_tokens", SHAPE(1, 4, D), 0, 0.02);
    add_s(&b, "pos_embed", SHAPE(1, 1370, D), 0, 0.5);
    add_s(&b, "mask_token", SHAPE(1, D), 0, 0.02);
    add_s(&b, "patch_embed.proj.weight", SHAPE(D, 3, 14, 14), 0, 0.05);
    add_s(&b, "patch_embed.proj.bias", SHAPE(D), 0, 0.02);
    for (int i = 0; i < ar->depth; i++) {
#define T(fmt, ...) (snprintf(nm, sizeof nm, "blocks.%d." fmt, i), nm)
        add_s(&b, T("norm1.weight"), SHAPE(D), 1, 0.1);
        add_s(&b, T("norm1.bias"), SHAPE(D), 0, 0.05);
        add_s(&b, T("attn.qkv.weight"), SHAPE(3 * D, D), 0, 1.0 / sqrt((double)D));
        add_s(&b, T("attn.qkv.bias"), SHAPE(3 * D), 0, 0.05);
        add_s(&b, T("attn.proj.weight"), SHAPE(D, D), 0, 1.0 / sqrt((double)D));
        add_s(&b, T("attn.proj.bias"), SHAPE(D), 0, 0.02);
        add_s(&b, T("ls1.gamma"), SHAPE(D), 0.1, 0.02);
        add_s(&b, T("norm2.weight"), SHAPE(D), 1, 0.1);
        add_s(&b, T("norm2.bias"), SHAPE(D), 0, 0.05);
        if (ar->swiglu) {
            add_s(&b, T("mlp.w12.weight"), SHAPE(2 * F, D), 0, 1.0 / sqrt((double)D));
            add_s(&b, T("mlp.w12.bias"), SHAPE(2 * F), 0, 0.02);
            add_s(&b, T("mlp.w3.weight"), SHAPE(D, F), 0, 1.0 / sqrt((double)F));
            add_s(&b, T("mlp.w3.bias"), SHAPE(D), 0, 0.02);
        } else {
            add_s(&b, T("mlp.fc1.weight"), SHAPE(F, D), 0, 1.0 / sqrt((double)D));
            add_s(&b, T("mlp.fc1.bias"), SHAPE(F), 0, 0.02);
            add_s(&b, T("mlp.fc2.weight"), SHAPE(D, F), 0, 1.0 / sqrt((double)F));
            add_s(&b, T("mlp.fc2.bias"), SHAPE(D), 0, 0.02);
        }
        add_s(&b, T("ls2.gamma"), SHAPE(D), 0.1, 0.02);
#undef T
    }
    add_s(&b, "norm.weight", SHAPE(D), 1, 0.1);
    add_s(&b, "norm.bias", SHAPE(D), 0, 0.05);
write:;
    int rc;
    if (b.failed) {
        rc = err_set(e, ERR_NOMEM, "out of memory building %s", arch_name);
    } else {
        char seed_s[32], heads_s[16];
        snprintf(seed_s, sizeof seed_s, "%llu", seed);
        snprintf(heads_s, sizeof heads_s, "%d", ar->heads);
        char full[64];
        snprintf(full, sizeof full, "%s%s%s", ar->family == DINOV2 ? "dinov2_" : "", ar->name,
                 reg ? "_reg" : "");
        const char *meta[] = {"format", "pt", "arch", full, "seed", seed_s,
                              "num_heads", heads_s, "weights", "random (lostd model init)"};
        rc = safetensors_write(path, b.ent, b.n, meta, 5, e);
    }
    for (int i = 0; i < b.n; i++) {
        free((char *)b.ent[i].name);
        free((float *)b.ent[i].data);
    }
    free(b.ent);
    return rc;
}
