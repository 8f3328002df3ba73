/* test_backbones.c - golden parity of the other ViT families (DINO v1,
 * DeiT-III, OpenCLIP) with their official code, on the fixture models in
 * tests/fixtures/backbones/<arch>/<case> (case.json names the model, the
 * input and the activation); family detection; clear errors for files that
 * are not one supported image backbone. */
#include "check.h"
#include "err.h"
#include "model.h"
#include "safetensors.h"
#include "tensor.h"
#include "vit.h"

#include <dirent.h>
#include <jansson.h>
#include <libgen.h>

#define FIX "tests/fixtures"

#include "golden_util.h"

static void run_case(const char *arch, const char *case_name)
{
    char dir[512], name[256], cpath[1024];
    snprintf(dir, sizeof dir, FIX "/backbones/%s/%s", arch, case_name);
    snprintf(name, sizeof name, "backbone %s %s", arch, case_name);
    snprintf(cpath, sizeof cpath, "%s/case.json", dir);
    CHECK_CASE(name, {
        json_error_t je;
        json_t *cj = json_load_file(cpath, 0, &je);
        CHECK(cj, "%s: %s", cpath, je.text);
        struct model *m = NULL;
        struct vit_work *w = NULL;
        struct tensor x = {0};
        struct err e = {0};
        if (cj) {
            const char *model = json_string_value(json_object_get(cj, "model"));
            const char *input = json_string_value(json_object_get(cj, "input_file"));
            const char *act =
                json_string_value(json_object_get(json_object_get(cj, "config"), "act"));
            const char *fam = json_string_value(json_object_get(cj, "family"));
            const char *feat = json_string_value(json_object_get(cj, "lost_feature"));
            char mpath[600], ipath[1100], idir[1100];
            snprintf(mpath, sizeof mpath, FIX "/%s", model ? model : "?");
            snprintf(ipath, sizeof ipath, "%s/%s", dir, input ? input : "input.npy");
            snprintf(idir, sizeof idir, "%s", ipath);
            struct model_opts o = {.n_head = 0,
                                   .act = act && strstr(act, "quick") ? MODEL_ACT_QUICKGELU
                                                                           : MODEL_ACT_GELU};
            int rc = model_load(mpath, &o, &m, &e);
            CHECK(rc == 0, "model_load %s: %s", mpath, e.msg);
            if (!rc) {
                const struct model_config *c = model_config(m);
                CHECK(fam && !strcmp(model_family_name(c->family), fam), "family %s, case %s",
                      model_family_name(c->family), fam ? fam : "?");
                CHECK(feat && !strcmp(model_feature_name(c->lost_feature), feat),
                      "default LOST feature %s, papers use %s",
                      model_feature_name(c->lost_feature), feat ? feat : "?");
                rc = load_input(dirname(idir), &x);
                CHECK(rc == 0, "cannot read input %s", ipath);
            }
            if (!rc) {
                const struct model_config *c = model_config(m);
                int H = (int)x.shape[1], W = (int)x.shape[2];
                rc = vit_work_init(m, (H / c->patch) * (W / c->patch), &w, &e);
                struct vit_opts vo = {.layer = -1, .want = VIT_WANT_QKV | VIT_WANT_TOKENS};
                struct vit_out out;
                if (!rc)
                    rc = vit_forward(m, w, x.data, H, W, &vo, &out, &e);
                CHECK(rc == 0, "vit_forward: %s", e.msg);
                if (!rc) {
                    size_t D = c->dim, Np = out.n_patch;
                    struct { const char *file; const float *p; size_t n; } arr[] = {
                        {"pos_embed.npy", out.pos_embed, (1 + Np) * D},
                        {"x_norm_clstoken.npy", out.tokens, D},
                        {"x_norm_patchtokens.npy", out.tokens + D, Np * D},
                        {"last_q.npy", out.q, Np * D},
                        {"last_k.npy", out.k, Np * D},
                        {"last_v.npy", out.v, Np * D},
                        {"image_embed.npy", out.embed, (size_t)out.embed_dim},
                    };
                    for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) {
                        char fp[700];
                        snprintf(fp, sizeof fp, "%s/%s", dir, arr[i].file);
                        if (access(fp, R_OK) != 0)
                            continue;
                        CHECK(arr[i].p && arr[i].n, "%s: not computed", arr[i].file);
                        if (!arr[i].p)
                            continue;
                        double r = compare(dir, arr[i].file, arr[i].p, arr[i].n);
                        CHECK(r >= 0 && r <= 1.0, "%s: error %.3g x tolerance", arr[i].file, r);
                    }
                }
            }
        }
        json_decref(cj);
        tensor_free(&x);
        vit_work_free(w);
        model_free(m);
    });
}

/* Writes a safetensors file with the given tensor names (small F32 data)
 * and expects model_load to fail with ERR_MODEL naming `needle`. */
static void unsupported(const char *name, const char *const *names, int n, const char *needle)
{
    CHECK_CASE(name, {
        struct safetensors_entry ent[8];
        float data[16] = {0};
        for (int i = 0; i < n; i++) {
            memset(&ent[i], 0, sizeof ent[i]);
            ent[i].name = names[i];
            ent[i].ndim = 1;
            ent[i].shape[0] = 16;
            ent[i].data = data;
        }
        char path[] = "/tmp/lostd_test_bb_XXXXXX";
        int fd = mkstemp(path);
        close(fd);
        struct err e = {0};
        CHECK(safetensors_write(path, ent, n, NULL, 0, &e) == 0, "write: %s", e.msg);
        struct model *m = NULL;
        int rc = model_load(path, NULL, &m, &e);
        CHECK(rc == ERR_MODEL, "code %d (%s)", rc, e.msg);
        CHECK(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg, needle);
        model_free(m);
        unlink(path);
    });
}

int main(void)
{
    DIR *d = opendir(FIX "/backbones");
    struct dirent *ae;
    int n = 0;
    while (d && (ae = readdir(d))) {
        if (ae->d_name[0] == '.')
            continue;
        char sub[300];
        snprintf(sub, sizeof sub, FIX "/backbones/%s", ae->d_name);
        DIR *d2 = opendir(sub);
        struct dirent *ce;
        while (d2 && (ce = readdir(d2))) {
            if (ce->d_name[0] == '.')
                continue;
            run_case(ae->d_name, ce->d_name);
            n++;
        }
        if (d2)
            closedir(d2);
    }
    if (d)
        closedir(d);
    CHECK_CASE("backbone fixture cases found", CHECK(n >= 14, "only %d cases", n));
    const char *convnext[] = {"stem.0.weight", "stages.0.blocks.0.conv_dw.weight"};
    unsupported("ConvNeXt checkpoint rejected", convnext, 2, "no patch embedding");
    const char *text[] = {"token_embedding.weight", "ln_final.weight", "logit_scale"};
    unsupported("CLIP text tower rejected", text, 3, "text tower");
    const char *mixed[] = {"patch_embed.proj.weight", "visual.conv1.weight"};
    unsupported("mixed checkpoint rejected", mixed, 2, "mixed");
    const char *hfvit[] = {"embeddings.patch_embeddings.projection.weight",
                           "encoder.layer.0.layernorm_before.weight"};
    unsupported("transformers ViTModel rejected", hfvit, 2, "ViTModel");
    return check_status();
}
