/* test_vit.c - golden parity of the backbone with the official PyTorch
 * DINOv2 on the fixture models (tests/fixtures/vit/<model>/<case>), in all
 * three checkpoint namings; the resampling weights against torch's; and the
 * checkpoint validation errors. Tolerance per array, as the fixtures state:
 * max |c - ref| <= 1e-4 * (1 + max |ref|). */
#include "check.h"
#include "err.h"
#include "model.h"
#include "safetensors.h"
#include "tensor.h"
#include "vit.h"
#include "../core/model_impl.h"
#include "../core/vit_impl.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX "tests/fixtures"

#include "golden_util.h"

static void run_case(const char *model_name, const char *case_name, const char *naming)
{
    char dir[1024], mpath[1024], name[1024];
    snprintf(dir, sizeof dir, FIX "/vit/%s/%s", model_name, case_name);
    snprintf(mpath, sizeof mpath, FIX "/models/%s%s.safetensors", model_name, naming);
    snprintf(name, sizeof name, "vit %s%s %s", model_name, naming, case_name);
    CHECK_CASE(name, {
        struct err e = {0};
        struct model *m = NULL;
        struct vit_work *w = NULL;
        struct tensor x = {0};
        int rc = model_load(mpath, NULL, &m, &e);
        CHECK(rc == 0, "model_load: %s", e.msg);
        if (rc == 0) {
            rc = load_input(dir, &x);
            CHECK(rc == 0, "cannot read the input of %s", dir);
        }
        if (rc == 0) {
            const struct model_config *c = model_config(m);
            int H = (int)x.shape[1], W = (int)x.shape[2];
            int N = (H / c->patch) * (W / c->patch);
            rc = vit_work_init(m, N, &w, &e);
            CHECK(rc == 0, "vit_work_init: %s", e.msg);
            struct vit_opts o = {.layer = -1, .want = VIT_WANT_QKV | VIT_WANT_TOKENS};
            struct vit_out out;
            if (rc == 0)
                rc = vit_forward(m, w, x.data, H, W, &o, &out, &e);
            CHECK(rc == 0, "vit_forward: %s", e.msg);
            if (rc == 0) {
                size_t D = c->dim, Np = out.n_patch;
                struct { const char *file; const float *p; size_t n; } arr[] = {
                    {"pos_embed.npy", out.pos_embed, (1 + Np) * D},
                    {"x_norm_clstoken.npy", out.tokens, D},
                    {"x_norm_regtokens.npy", out.tokens + D, c->n_reg * D},
                    {"x_norm_patchtokens.npy", out.tokens + (1 + c->n_reg) * D, Np * D},
                    {"last_q.npy", out.q, Np * D},
                    {"last_k.npy", out.k, Np * D},
                    {"last_v.npy", out.v, Np * D},
                };
                for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) {
                    if (!arr[i].n)
                        continue;
                    /* timm register models fold the CLS position into the CLS
                     * token: their CLS position row is zero by design. */
                    if (!strcmp(naming, "_timm") && c->n_reg && i == 0) {
                        struct tensor ref;
                        char rp[1200];
                        snprintf(rp, sizeof rp, "%s/%s", dir, arr[i].file);
                        CHECK(tensor_load_npy(rp, 0, &ref, &e) == 0, "%s", e.msg);
                        double dmax = 0;
                        for (size_t j = D; j < (1 + Np) * D && ref.data; j++) {
                            double dd = fabs((double)arr[i].p[j] - ref.data[j]);
                            dmax = dd > dmax ? dd : dmax;
                        }
                        CHECK(dmax <= 1e-4 * (1 + max_abs(ref.data + D, Np * D)),
                              "patch positions differ by %g", dmax);
                        tensor_free(&ref);
                        continue;
                    }
                    double r = compare(dir, arr[i].file, arr[i].p, arr[i].n);
                    CHECK(r >= 0 && r <= 1.0, "%s: error %.3g x tolerance", arr[i].file, r);
                }
            }
        }
        tensor_free(&x);
        vit_work_free(w);
        model_free(m);
    });
}

/* Reference weights from docs/specs/vit.md (torch 1.13 output). */
static void resample_weights(void)
{
    CHECK_CASE("resample weights match torch", {
        double w[64 * 37];
        struct { int out, aa; double s; int o, first, n; double ref[9]; } rows[] = {
            {16, 1, 37.0 / 16, 0, 0, 6, {0.38718635, 0.4414507, 0.20925619, -0.0030565,
                                        -0.03181696, -0.00301974}},
            {16, 1, 37.0 / 16, 1, 0, 8, {-0.03114317, 0.04860236, 0.28733626, 0.4276807,
                                        0.27206695, 0.03752285, -0.03158345, -0.01048234}},
            {16, 1, 37.0 / 16, 8, 15, 9, {-0.00709342, -0.03186974, 0.01838402, 0.24359417,
                                         0.428314, 0.3204806, 0.0740678, -0.02951323,
                                         -0.01636432}},
            {26, 1, 37.0 / 26, 0, 0, 4, {0.6954033, 0.35710302, -0.05192902, -0.00057726}},
            {26, 1, 37.0 / 26, 13, 16, 6, {-0.00285062, -0.04533867, 0.39584205, 0.64022386,
                                          0.0449844, -0.03286108}},
            {16, 0, 37.0 / 16.1, 0, 0, 3, {0.3339548, 0.77692854, -0.110883}},
            {16, 0, 37.0 / 16.1, 1, 1, 4, {-0.00198054, 0.04359323, 0.9939125, -0.03552556}},
            {37, 0, 37.0 / 37.1, 0, 0, 2, {1.0010083, -0.00100827}},
            {37, 0, 37.0 / 37.1, 36, 34, 3, {-0.00654554, 0.08711636, 0.9194288}},
        };
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            vit_resample_weights(37, rows[r].out, rows[r].s, rows[r].aa, w);
            const double *row = w + (size_t)rows[r].o * 37;
            for (int j = 0; j < 37; j++) {
                int k = j - rows[r].first;
                double ref = k >= 0 && k < rows[r].n ? rows[r].ref[k] : 0.0;
                CHECK(fabs(row[j] - ref) < 2e-6, "row %zu (out %d, o %d) tap %d: %.8f vs %.8f",
                      r, rows[r].out, rows[r].o, j, row[j], ref);
            }
        }
    });
}

/* Writes a corrupted copy of a fixture model and expects model_load to fail
 * with the given code and a message containing needle. */
static void bad_checkpoint(const char *name, const unsigned char *bytes, size_t n, int code,
                           const char *needle)
{
    CHECK_CASE(name, {
        char path[] = "/tmp/lostd_test_vit_XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0, "mkstemp");
        if (fd >= 0) {
            CHECK(write(fd, bytes, n) == (ssize_t)n, "write");
            close(fd);
            struct model *m = NULL;
            struct err e = {0};
            int rc = model_load(path, NULL, &m, &e);
            CHECK(rc == code, "expected code %d, got %d (%s)", code, rc, e.msg);
            CHECK(!m, "model must be NULL on failure");
            CHECK(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg, needle);
            model_free(m);
            unlink(path);
        }
    });
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 64);
    if (fread(b, 1, *n, f) != *n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static void checkpoint_errors(void)
{
    size_t n;
    unsigned char *b = slurp(FIX "/models/tiny.safetensors", &n);
    if (!b) {
        CHECK_CASE("fixture model readable", CHECK(0, "cannot read tiny.safetensors"));
        return;
    }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | b[i];
    bad_checkpoint("checkpoint truncated mid-tensor", b, n - 1000, ERR_INPUT, "outside");
    bad_checkpoint("checkpoint truncated in header", b, 8 + hl / 2, ERR_INPUT, "header");
    bad_checkpoint("checkpoint of 3 bytes", b, 3, ERR_INPUT, "at least 8");
    unsigned char *c = malloc(n);
    memcpy(c, b, n);
    c[0] = 0xff, c[1] = 0xff, c[5] = 0x7f; /* header length beyond the file */
    bad_checkpoint("checkpoint header length lies", c, n, ERR_INPUT, "does not fit");
    memcpy(c, b, n);
    char *h = (char *)c + 8;
    char *p = strstr(h, "\"F32\"");
    memcpy(p, "\"F99\"", 5);
    bad_checkpoint("checkpoint unknown dtype", c, n, ERR_INPUT, "unknown dtype");
    memcpy(c, b, n);
    /* shift one tensor's offsets onto its neighbour: size mismatch or overlap */
    p = strstr(h, "\"data_offsets\":[0,");
    if (p) {
        p[16] = '4';
        bad_checkpoint("checkpoint offsets disagree with shape", c, n, ERR_INPUT, "bytes");
    }
    memcpy(c, b, n);
    p = strstr(h, "\"blocks.0.attn.qkv.weight\":{\"dtype\":\"F32\",\"shape\":[192,64]");
    if (p) {
        memcpy(strstr(p, "[192,64]"), "[64,192]", 8);
        bad_checkpoint("checkpoint wrong shape names the tensor", c, n, ERR_MODEL,
                       "blocks.0.attn.qkv.weight");
    }
    memcpy(c, b, n);
    c[8] = '[';
    bad_checkpoint("checkpoint header not an object", c, n, ERR_INPUT, "header");
    free(c);
    free(b);
    CHECK_CASE("missing checkpoint", {
        struct model *m = NULL;
        struct err e = {0};
        CHECK(model_load("/nonexistent/x.safetensors", NULL, &m, &e) == ERR_NOTFOUND,
              "code %d", e.code);
    });
}

static void config_inference(void)
{
    const char *files[] = {"tiny", "tiny_hf", "tiny_timm", "tiny_noreg", "tiny_noreg_hf",
                           "tiny_noreg_timm", "tiny_swiglu", "tiny_swiglu_hf",
                           "tiny_swiglu_timm"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[256], name[128];
        snprintf(path, sizeof path, FIX "/models/%s.safetensors", files[i]);
        snprintf(name, sizeof name, "config inferred from %s", files[i]);
        CHECK_CASE(name, {
            struct model *m = NULL;
            struct err e = {0};
            int rc = model_load(path, NULL, &m, &e);
            CHECK(rc == 0, "%s", e.msg);
            if (!rc) {
                const struct model_config *c = model_config(m);
                CHECK(c->dim == 64 && c->depth == 2 && c->n_head == 2 && c->patch == 14,
                      "dim %d depth %d heads %d patch %d", c->dim, c->depth, c->n_head,
                      c->patch);
                CHECK(c->n_reg == (strstr(files[i], "noreg") ? 0 : 4), "registers %d",
                      c->n_reg);
                CHECK(c->ffn == (strstr(files[i], "swiglu") ? MODEL_FFN_SWIGLU : MODEL_FFN_MLP),
                      "ffn %s", model_ffn_name(c->ffn));
                CHECK(c->ffn_hidden == (strstr(files[i], "swiglu") ? 176 : 256), "hidden %d",
                      c->ffn_hidden);
                enum model_naming want = strstr(files[i], "_hf") ? MODEL_NAMING_HF
                                       : strstr(files[i], "_timm") ? MODEL_NAMING_TIMM
                                                                   : MODEL_NAMING_OFFICIAL;
                CHECK(c->naming == want, "naming %s", model_naming_name(c->naming));
            }
            model_free(m);
        });
    }
    CHECK_CASE("heads override", {
        struct model *m = NULL;
        struct err e = {0};
        struct model_opts o = {.n_head = 4, .act = -1};
        int rc = model_load(FIX "/models/tiny.safetensors", &o, &m, &e);
        CHECK(rc == 0 && model_config(m)->n_head == 4 && model_config(m)->head_dim == 16,
              "heads override ignored");
        model_free(m);
        o.n_head = 3;
        rc = model_load(FIX "/models/tiny.safetensors", &o, &m, &e);
        CHECK(rc == ERR_MODEL, "3 heads of a 64-wide model must fail");
    });
}

/* A fixed 3 x 56 x 70 input (20 patches of the tiny model), heap-allocated. */
static float *input_56x70(void)
{
    float *x = calloc(3 * 56 * 70, sizeof *x);
    for (int i = 0; x && i < 3 * 56 * 70; i++)
        x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    return x;
}

static void layer_tap(void)
{
    CHECK_CASE("layer tap: -1 equals depth-1, out of range rejected", {
        struct model *m = NULL;
        struct vit_work *w = NULL;
        struct err e = {0};
        int rc = model_load(FIX "/models/tiny.safetensors", NULL, &m, &e);
        CHECK(rc == 0, "%s", e.msg);
        if (!rc) {
            rc = vit_work_init(m, 20, &w, &e);
            float *x = input_56x70();
            struct vit_out o1, o2;
            struct vit_opts a = {.layer = -1}, b = {.layer = 1}, z = {.layer = 0},
                            bad = {.layer = 2};
            rc = vit_forward(m, w, x, 56, 70, &a, &o1, &e);
            CHECK(rc == 0, "%s", e.msg);
            float *k1 = malloc(20 * 64 * sizeof *k1);
            memcpy(k1, o1.k, 20 * 64 * sizeof *k1);
            rc = vit_forward(m, w, x, 56, 70, &b, &o2, &e);
            CHECK(rc == 0 && !memcmp(k1, o2.k, 20 * 64 * sizeof *k1), "layer 1 != layer -1");
            rc = vit_forward(m, w, x, 56, 70, &z, &o2, &e);
            CHECK(rc == 0 && memcmp(k1, o2.k, 20 * 64 * sizeof *k1), "layer 0 == layer 1");
            CHECK(vit_forward(m, w, x, 56, 70, &bad, &o2, &e) == ERR_INPUT, "layer 2 accepted");
            /* several taps in one pass equal one forward per layer */
            float *taps = malloc(2 * 3 * 20 * 64 * sizeof *taps);
            int tl[2] = {-1, 0};
            struct vit_opts tp = {.layer = -1, .n_taps = 2, .tap_layers = tl, .taps = taps};
            rc = vit_forward(m, w, x, 56, 70, &tp, &o2, &e);
            CHECK(rc == 0 && !memcmp(taps + 20 * 64, k1, 20 * 64 * sizeof *k1),
                  "tap of the last block differs");
            rc = vit_forward(m, w, x, 56, 70, &z, &o2, &e);
            CHECK(rc == 0 && !memcmp(taps + 3 * 20 * 64 + 20 * 64, o2.k, 20 * 64 * sizeof *k1) &&
                      !memcmp(taps + 3 * 20 * 64, o2.q, 20 * 64 * sizeof *k1) &&
                      !memcmp(taps + 3 * 20 * 64 + 2 * 20 * 64, o2.v, 20 * 64 * sizeof *k1),
                  "tap of block 0 differs");
            tl[1] = 5;
            CHECK(vit_forward(m, w, x, 56, 70, &tp, &o2, &e) == ERR_INPUT, "tap 5 accepted");
            free(taps);
            CHECK(vit_forward(m, w, x, 56, 71, NULL, &o2, &e) == ERR_INPUT, "71 px accepted");
            CHECK(vit_forward(m, w, x, 70, 70, NULL, &o2, &e) == ERR_TOOBIG,
                  "25 patches in a 20-patch workspace");
            free(k1);
            free(x);
        }
        vit_work_free(w);
        model_free(m);
    });
}

/* vit_opts.cancel: a clear flag changes nothing, a set one stops the
 * forward before its first block with ERR_CANCELLED. */
static void cancel_flag(void)
{
    CHECK_CASE("cancel flag: clear runs the same forward, set stops it", {
        struct model *m = NULL;
        struct vit_work *w = NULL;
        struct err e = {0};
        int rc = model_load(FIX "/models/tiny.safetensors", NULL, &m, &e);
        CHECK(rc == 0, "%s", e.msg);
        if (!rc && !(rc = vit_work_init(m, 20, &w, &e))) {
            float *x = input_56x70(), *k = malloc(20 * 64 * sizeof *k);
            struct vit_out o;
            _Atomic int stop = 0;
            struct vit_opts plain = {.layer = -1}, watched = {.layer = -1, .cancel = &stop};
            rc = vit_forward(m, w, x, 56, 70, &plain, &o, &e);
            CHECK(rc == 0, "%s", e.msg);
            memcpy(k, o.k, 20 * 64 * sizeof *k);
            rc = vit_forward(m, w, x, 56, 70, &watched, &o, &e);
            CHECK(rc == 0 && !memcmp(k, o.k, 20 * 64 * sizeof *k), "a clear flag changed k");
            stop = 1;
            rc = vit_forward(m, w, x, 56, 70, &watched, &o, &e);
            CHECK(rc == ERR_CANCELLED && strstr(e.msg, "cancelled"), "rc %d: %s", rc, e.msg);
            free(k);
            free(x);
        }
        CHECK(rc == 0 || rc == ERR_CANCELLED, "workspace: %s", e.msg);
        vit_work_free(w);
        model_free(m);
    });
}

/* The attention maps and patch embeddings exposed for analysis: rows are
 * distributions, asking for them does not change q/k/v, and the patch
 * embedding plus the positions is what the first block sees. */
static void attention_maps(void)
{
    CHECK_CASE("attention rows of CLS and registers sum to 1", {
        struct model *m = NULL;
        struct vit_work *w = NULL;
        struct err e = {0};
        struct tensor x = {0};
        int rc = model_load(FIX "/models/tiny.safetensors", NULL, &m, &e);
        if (!rc)
            rc = load_input(FIX "/vit/tiny/raw_140x98", &x);
        if (!rc)
            rc = vit_work_init(m, 70, &w, &e);
        CHECK(rc == 0, "setup: %s", e.msg);
        if (!rc) {
            struct vit_opts a = {.layer = -1, .want = VIT_WANT_QKV};
            struct vit_opts b = {.layer = -1,
                                 .want = VIT_WANT_QKV | VIT_WANT_ATTN | VIT_WANT_PATCH_EMBED};
            struct vit_out o;
            rc = vit_forward(m, w, x.data, 140, 98, &a, &o, &e);
            float *k = malloc(70 * 64 * sizeof *k);
            memcpy(k, o.k, 70 * 64 * sizeof *k);
            rc |= vit_forward(m, w, x.data, 140, 98, &b, &o, &e);
            CHECK(rc == 0 && o.attn && o.patch_embed, "no maps: %s", e.msg);
            CHECK(!memcmp(k, o.k, 70 * 64 * sizeof *k), "keys changed when maps are asked");
            for (int h = 0; rc == 0 && h < o.n_head; h++)
                for (int r = 0; r < 1 + o.n_reg; r++) {
                    const float *row = o.attn + ((size_t)h * (1 + o.n_reg) + r) * o.n_tok;
                    double sum = 0;
                    int neg = 0;
                    for (int j = 0; j < o.n_tok; j++) {
                        sum += row[j];
                        neg |= row[j] < 0;
                    }
                    CHECK(fabs(sum - 1) < 1e-5 && !neg, "head %d row %d sums to %g", h, r, sum);
                }
            free(k);
        }
        tensor_free(&x);
        vit_work_free(w);
        model_free(m);
    });
}

/* bf16 mode (when the CPU has it): the same forward with the projections
 * in bfloat16 stays close to float32; the size of the gap is printed. */
static void bf16_mode(void)
{
    {
        struct model *probe = NULL;
        struct err pe = {0};
        struct model_opts po = {.act = -1, .precision = MODEL_PRECISION_BF16};
        if (model_load(FIX "/models/tiny.safetensors", &po, &probe, &pe) == ERR_UNSUPPORTED) {
            printf("SKIP bf16 forward close to fp32: %s\n", pe.msg);
            return;
        }
        model_free(probe);
    }
    CHECK_CASE("bf16 forward close to fp32", {
        struct model *m32 = NULL, *m16 = NULL;
        struct vit_work *w32 = NULL, *w16 = NULL;
        struct err e = {0};
        struct tensor x = {0};
        struct model_opts o16 = {.act = -1, .precision = MODEL_PRECISION_BF16};
        int rc = model_load(FIX "/models/tiny.safetensors", NULL, &m32, &e);
        int rc16 = rc ? rc : model_load(FIX "/models/tiny.safetensors", &o16, &m16, &e);
        if (rc16 == ERR_UNSUPPORTED) {
            printf("SKIP bf16: %s\n", e.msg);
        } else {
            CHECK(rc == 0 && rc16 == 0, "load: %s", e.msg);
            if (!rc && !rc16)
                rc = load_input(FIX "/vit/tiny/voc_pad", &x);
            if (!rc && !rc16)
                rc = vit_work_init(m32, 1008, &w32, &e) || vit_work_init(m16, 1008, &w16, &e);
            CHECK(rc == 0, "setup: %s", e.msg);
            if (!rc && !rc16) {
                struct vit_out a, b;
                rc = vit_forward(m32, w32, x.data, 392, 504, NULL, &a, &e) ||
                     vit_forward(m16, w16, x.data, 392, 504, NULL, &b, &e);
                CHECK(rc == 0, "forward: %s", e.msg);
                double dmax = 0, ref = 0;
                for (int i = 0; !rc && i < 1008 * 64; i++) {
                    double d = fabs((double)a.k[i] - b.k[i]);
                    dmax = d > dmax ? d : dmax;
                    ref = fabs(a.k[i]) > ref ? fabs(a.k[i]) : ref;
                }
                printf("bf16 keys: max abs difference %.3g (max |key| %.3g)\n", dmax, ref);
                CHECK(!rc && dmax < 0.05 * ref, "bf16 keys differ by %.3g of %.3g", dmax, ref);
                CHECK(model_config(m16)->precision == MODEL_PRECISION_BF16, "precision not set");
            }
        }
        tensor_free(&x);
        vit_work_free(w32);
        vit_work_free(w16);
        model_free(m32);
        model_free(m16);
    });
}

/* Loads the fixtures' tiny model `model` in precision prec and names its
 * case "<what>: <model> <precision>" in name; ERR_UNSUPPORTED (printed as a
 * SKIP) when this CPU lacks the precision. */
static int load_tiny(const char *model, int prec, const char *what, char *name, size_t n,
                     struct model **m, struct err *e)
{
    char path[256];
    snprintf(path, sizeof path, FIX "/models/%s.safetensors", model);
    snprintf(name, n, "%s: %s %s", what, model, model_precision_name(prec));
    struct model_opts mo = {.act = -1, .precision = prec};
    int rc = model_load(path, &mo, m, e);
    if (rc == ERR_UNSUPPORTED)
        printf("SKIP %s: %s\n", name, e->msg);
    return rc;
}

/* The work split over threads (row blocks, and column blocks with the
 * row-wise epilogues after them for short inputs) changes which thread
 * computes a block, never the order of its sums: tokens and keys are
 * bit-identical for 1, 2 and 3 threads, short and long inputs, MLP and
 * SwiGLU blocks, float32 and (when the CPU has it) bfloat16; and again with
 * the threads' GEMM rates seeded far apart, so that their row shares are
 * as uneven as they go. */
static void thread_split(void)
{
    const char *models[] = {"tiny", "tiny_swiglu", "tiny_noreg"};
    int sizes[][2] = {{42, 56}, {392, 504}};
    for (int prec = MODEL_PRECISION_FP32; prec <= MODEL_PRECISION_BF16; prec++)
        for (size_t mi = 0; mi < sizeof models / sizeof *models; mi++) {
            char name[256];
            struct model *m = NULL;
            struct err e = {0};
            int rc = load_tiny(models[mi], prec, "same forward on 1, 2 and 3 threads", name, sizeof name,
                               &m, &e);
            if (rc == ERR_UNSUPPORTED)
                continue;
            CHECK_CASE(name, {
                CHECK(rc == 0, "load: %s", e.msg);
                const struct model_config *c = rc ? NULL : model_config(m);
                for (size_t si = 0; !rc && si < sizeof sizes / sizeof *sizes; si++) {
                    int H = sizes[si][0] / c->patch * c->patch, W = sizes[si][1] / c->patch * c->patch;
                    int N = (H / c->patch) * (W / c->patch), T = 1 + c->n_reg + N;
                    float *x = malloc(sizeof *x * 3 * H * W);
                    float *ref = malloc(sizeof *ref * ((size_t)T * c->dim + (size_t)N * c->dim));
                    for (int i = 0; i < 3 * H * W; i++)
                        x[i] = (float)((unsigned)i * 7919u % 2003u) / 1001.0f - 1.0f;
                    for (int run = 0; !rc && run < 5; run++) {
                        int th = run < 3 ? run + 1 : run - 1, skew = run >= 3;
                        const char *how = skew ? ", uneven shares" : "";
                        const double rates[] = {1e5, 4e5, 2e5};
                        struct vit_work *w = NULL;
                        struct vit_opts o = {.layer = -1, .want = VIT_WANT_QKV | VIT_WANT_TOKENS};
                        struct vit_out out;
                        rc = vit_work_init(m, N, &w, &e);
                        if (!rc)
                            rc = vit_work_set_threads(w, th, &e);
                        if (!rc && skew)
                            vit_work_seed_rates(w, rates);
                        if (!rc)
                            rc = vit_forward(m, w, x, H, W, &o, &out, &e);
                        CHECK(rc == 0, "%dx%d on %d threads%s: %s", H, W, th, how, e.msg);
                        size_t nt = (size_t)T * c->dim, nk = (size_t)N * c->dim;
                        if (!rc && th == 1) {
                            memcpy(ref, out.tokens, sizeof *ref * nt);
                            memcpy(ref + nt, out.k, sizeof *ref * nk);
                        } else if (!rc) {
                            CHECK(!memcmp(ref, out.tokens, sizeof *ref * nt),
                                  "%dx%d: tokens on %d threads%s differ from 1 thread", H, W,
                                  th, how);
                            CHECK(!memcmp(ref + nt, out.k, sizeof *ref * nk),
                                  "%dx%d: keys on %d threads%s differ from 1 thread", H, W, th,
                                  how);
                        }
                        vit_work_free(w);
                    }
                    free(x);
                    free(ref);
                }
                model_free(m);
            });
        }
}

/* A forward that wants one or two of the tapped block's q, k, v (LOST reads
 * k) computes only those, for the patch rows only: the same values bit for
 * bit as the whole q/k/v, the others NULL. fp32 and bf16, the last block and
 * earlier ones (block 0: its LayerNorm is not done yet), 1 and 3 threads, a
 * short and a long input. */
static void wanted_parts(void)
{
    const char *models[] = {"tiny", "tiny_swiglu", "tiny_noreg"};
    const unsigned sets[] = {VIT_WANT_K, VIT_WANT_Q, VIT_WANT_V, VIT_WANT_Q | VIT_WANT_V};
    const int layers[] = {-1, 0, 1};
    for (int prec = MODEL_PRECISION_FP32; prec <= MODEL_PRECISION_BF16; prec++)
        for (size_t mi = 0; mi < sizeof models / sizeof *models; mi++) {
            char name[256];
            struct model *m = NULL;
            struct err e = {0};
            int rc = load_tiny(models[mi], prec, "wanted q/k/v only, same values", name, sizeof name,
                               &m, &e);
            if (rc == ERR_UNSUPPORTED)
                continue;
            CHECK_CASE(name, {
                CHECK(rc == 0, "load: %s", e.msg);
                const struct model_config *c = rc ? NULL : model_config(m);
                int sizes[][2] = {{42, 56}, {196, 252}};
                for (size_t si = 0; !rc && si < 2; si++) {
                    int H = sizes[si][0] / c->patch * c->patch, W = sizes[si][1] / c->patch * c->patch;
                    size_t nk = (size_t)(H / c->patch) * (W / c->patch) * c->dim;
                    float *x = malloc(sizeof *x * 3 * H * W), *ref = malloc(sizeof *ref * 3 * nk);
                    for (int i = 0; i < 3 * H * W; i++)
                        x[i] = (float)((unsigned)i * 7919u % 2003u) / 1001.0f - 1.0f;
                    for (int th = 1; !rc && th <= 3; th += 2)
                        for (size_t li = 0; !rc && li < 3; li++) {
                            struct vit_work *w = NULL;
                            struct vit_out out;
                            struct vit_opts all = {.layer = layers[li], .want = VIT_WANT_QKV};
                            rc = vit_work_init(m, (int)(nk / c->dim), &w, &e);
                            if (!rc)
                                rc = vit_work_set_threads(w, th, &e);
                            if (!rc)
                                rc = vit_forward(m, w, x, H, W, &all, &out, &e);
                            CHECK(rc == 0, "whole q/k/v: %s", e.msg);
                            float *buf[3] = {NULL, NULL, NULL}; /* the workspace's */
                            if (!rc) {
                                memcpy(ref, out.q, sizeof *ref * nk);
                                memcpy(ref + nk, out.k, sizeof *ref * nk);
                                memcpy(ref + 2 * nk, out.v, sizeof *ref * nk);
                                buf[0] = (float *)out.q, buf[1] = (float *)out.k;
                                buf[2] = (float *)out.v;
                            }
                            for (size_t k = 0; !rc && k < sizeof sets / sizeof *sets; k++) {
                                struct vit_opts one = {.layer = layers[li], .want = sets[k]};
                                /* stale values must not pass for computed ones */
                                for (int p = 0; p < 3; p++)
                                    memset(buf[p], 0, sizeof *ref * nk);
                                rc = vit_forward(m, w, x, H, W, &one, &out, &e);
                                CHECK(rc == 0, "parts %u: %s", sets[k], e.msg);
                                const float *got[3] = {out.q, out.k, out.v};
                                const unsigned bit[3] = {VIT_WANT_Q, VIT_WANT_K, VIT_WANT_V};
                                for (int p = 0; !rc && p < 3; p++) {
                                    if (!(sets[k] & bit[p])) {
                                        CHECK(!got[p], "part %d given, not wanted", p);
                                        continue;
                                    }
                                    CHECK(got[p] && !memcmp(got[p], ref + p * nk, sizeof *ref * nk),
                                          "%dx%d layer %d, %d threads: part %d of set %u differs "
                                          "from the whole q/k/v", H, W, layers[li], th, p, sets[k]);
                                }
                            }
                            vit_work_free(w);
                        }
                    free(x);
                    free(ref);
                }
                model_free(m);
            });
        }
}

/* With the weights packed, nothing a forward reads lies in the file's
 * mapping: the small tensors are copies (a page cache holding the file in
 * large folios would map up to 2 MiB for each one read, see copy_small in
 * model.c). */
static void packed_model_off_the_file(void)
{
    const char *models[] = {"tiny", "tiny_swiglu", "tiny_noreg"};
    for (size_t mi = 0; mi < sizeof models / sizeof *models; mi++) {
        char path[256], name[256];
        snprintf(path, sizeof path, FIX "/models/%s.safetensors", models[mi]);
        snprintf(name, sizeof name, "packed %s reads nothing from the file's mapping",
                 models[mi]);
        struct model *m = NULL;
        struct err e = {0};
        int rc = model_load(path, NULL, &m, &e);
        if (!rc && !m->packed) {
            printf("SKIP %s: weights not packed (no AVX-512)\n", name);
            model_free(m);
            continue;
        }
        CHECK_CASE(name, {
            CHECK(rc == 0, "load: %s", e.msg);
            if (!rc) {
                const struct model_config *c = &m->cfg;
                size_t D = (size_t)c->dim * sizeof(float);
                const struct safetensors *st = m->st;
                /* each tensor's first row is enough to tell where it lies */
                const void *top[] = {m->patch_b, m->cls, m->reg, m->pos_cls, m->pos_grid,
                                     m->ln_pre_w, m->ln_pre_b, m->norm_w, m->norm_b,
                                     m->proj, m->patch_p};
                for (size_t i = 0; i < sizeof top / sizeof *top; i++)
                    CHECK(!top[i] || !safetensors_in_mapping(st, top[i], D),
                          "model tensor %zu is in the mapping", i);
                for (int bi = 0; bi < c->depth; bi++) {
                    const struct model_block *b = &m->blocks[bi];
                    const void *p[] = {b->ln1_w, b->ln1_b, b->qkv_b, b->proj_b, b->ls1, b->ls2,
                                       b->ln2_w, b->ln2_b, b->fc1_b, b->fc2_b, b->qkv_p,
                                       b->proj_p, b->fc1_p, b->fc2_p};
                    for (size_t i = 0; i < sizeof p / sizeof *p; i++)
                        CHECK(!p[i] || !safetensors_in_mapping(st, p[i], D),
                              "block %d tensor %zu is in the mapping", bi, i);
                }
                /* and the check itself sees the mapping: the unpacked weights are there */
                CHECK(safetensors_in_mapping(st, m->blocks[0].qkv_w, D),
                      "qkv weights not in the mapping: the check proves nothing");
            }
            model_free(m);
        });
    }
}

/* LOST's Gram matrix on the workspace: upper triangle equal to F F^T. */
static void gram(void)
{
    CHECK_CASE("workspace Gram matrix equals F F^T on the upper triangle", {
        struct model *m = NULL;
        struct vit_work *w = NULL;
        struct err e = {0};
        int rc = model_load(FIX "/models/tiny.safetensors", NULL, &m, &e);
        if (!rc)
            rc = vit_work_init(m, 300, &w, &e);
        if (!rc)
            rc = vit_work_set_threads(w, 2, &e);
        CHECK(rc == 0, "setup: %s", e.msg);
        int n = 229, dim = 64;
        float *f = malloc(sizeof *f * n * dim), *U = malloc(sizeof *U * n * n);
        for (int i = 0; i < n * dim; i++)
            f[i] = (float)((i * 7919) % 1013) / 500.0f - 1.0f;
        if (!rc)
            rc = vit_work_gram(w, f, n, dim, U, &e);
        CHECK(rc == 0, "gram: %s", e.msg);
        double worst = 0;
        for (int i = 0; !rc && i < n; i++)
            for (int j = i; j < n; j++) {
                double r = 0;
                for (int d = 0; d < dim; d++)
                    r += (double)f[i * dim + d] * f[j * dim + d];
                double dd = fabs(r - U[(size_t)i * n + j]);
                worst = dd > worst ? dd : worst;
            }
        CHECK(worst < 1e-4, "max error %g", worst);
        CHECK(vit_work_gram(w, f, 301, dim, U, &e) == ERR_TOOBIG, "oversized input accepted");
        free(f);
        free(U);
        vit_work_free(w);
        model_free(m);
    });
}

int main(void)
{
    thread_split();
    wanted_parts();
    packed_model_off_the_file();
    gram();
    bf16_mode();
    attention_maps();
    resample_weights();
    config_inference();
    checkpoint_errors();
    layer_tap();
    cancel_flag();
    const char *namings[] = {"", "_hf", "_timm"};
    DIR *d = opendir(FIX "/vit");
    struct dirent *me;
    int n = 0;
    while (d && (me = readdir(d))) {
        if (me->d_name[0] == '.')
            continue;
        char sub[512];
        snprintf(sub, sizeof sub, FIX "/vit/%s", me->d_name);
        DIR *d2 = opendir(sub);
        struct dirent *ce;
        while (d2 && (ce = readdir(d2))) {
            if (ce->d_name[0] == '.')
                continue;
            for (int k = 0; k < 3; k++)
                run_case(me->d_name, ce->d_name, namings[k]);
            n++;
        }
        if (d2)
            closedir(d2);
    }
    if (d)
        closedir(d);
    CHECK_CASE("fixture cases found", CHECK(n >= 9, "only %d vit cases", n));
    return check_status();
}
