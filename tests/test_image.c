/* test_image.c - decoding (JPEG, PNG), EXIF orientation, downscale and the
 * LOST preprocessing tensor. The VOC image must reproduce the fixture tensor
 * of tests/fixtures/vit/tiny/voc_pad; every other input is made here with
 * libjpeg's and libspng's encoders, so the cases need no tools. Hostile
 * inputs (truncated, random, mutated, huge declared sizes) must fail with
 * the right code and, in the sanitizer build, without a memory error. Run
 * from the repository root. */
#include "arena.h"
#include "clock.h"
#include "check.h"
#include "err.h"
#include "image.h"
#include "tensor.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <spng.h>

#define VOC_JPEG "tests/fixtures/images/VOC07_000236.jpg"
#define VOC_INPUT "tests/fixtures/vit/tiny/voc_pad/input.npy"

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* xorshift: fixed seed, so failures reproduce. */
static uint32_t rng_state = 0x12345678u;
static uint32_t rnd(void)
{
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

/* ---- JPEG encoding for the cases ---------------------------------------- */

struct jpeg_opts {
    J_COLOR_SPACE in_space;   /* JCS_RGB, JCS_GRAYSCALE, JCS_CMYK */
    J_COLOR_SPACE jpeg_space; /* 0 = libjpeg's default for in_space */
    int no_adobe;             /* suppress the APP14 marker */
    int progressive;
    const unsigned char *app1;
    size_t app1_len;
};

/* pixels [h, w, comps]; returns malloc'd JPEG bytes. */
static unsigned char *encode_jpeg(const unsigned char *px, int w, int h,
                                  const struct jpeg_opts *o, size_t *n)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *out = NULL;
    unsigned long len = 0;
    int comps = o->in_space == JCS_GRAYSCALE ? 1 : o->in_space == JCS_CMYK ? 4 : 3;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = o->in_space;
    jpeg_set_defaults(&c);
    if (o->jpeg_space)
        jpeg_set_colorspace(&c, o->jpeg_space);
    if (o->no_adobe)
        c.write_Adobe_marker = FALSE;
    if (o->progressive)
        jpeg_simple_progression(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    if (o->app1)
        jpeg_write_marker(&c, JPEG_APP0 + 1, o->app1, (unsigned)o->app1_len);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *n = len;
    return out;
}

/* Quadrants of a w x h RGB image: TL red, TR green, BL blue, BR white. */
static const unsigned char quad_rgb[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255},
                                             {255, 255, 255}};

static unsigned char *quad_image(int w, int h)
{
    unsigned char *px = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            memcpy(px + ((size_t)y * w + x) * 3, quad_rgb[(y >= h / 2) * 2 + (x >= w / 2)], 3);
    return px;
}

/* Which quadrant colour the pixel at (x, y) is closest to. */
static int quad_at(const struct image *im, int x, int y)
{
    const unsigned char *p = im->px + ((size_t)y * im->w + x) * 3;
    int best = -1, bd = 1 << 30;
    for (int q = 0; q < 4; q++) {
        int d = 0;
        for (int c = 0; c < 3; c++)
            d += (p[c] - quad_rgb[q][c]) * (p[c] - quad_rgb[q][c]);
        if (d < bd) {
            bd = d;
            best = q;
        }
    }
    return best;
}

/* APP1 payload "Exif\0\0" + TIFF with IFD0 = { Orientation = o }. */
static size_t make_exif(unsigned char *b, int little, int o)
{
    memcpy(b, "Exif\0\0", 6);
    unsigned char *t = b + 6;
    memset(t, 0, 26);
#define PUT16(p, v) (little ? ((p)[0] = (v) & 0xff, (p)[1] = (v) >> 8) \
                            : ((p)[0] = (v) >> 8, (p)[1] = (v) & 0xff))
#define PUT32(p, v) (little ? ((p)[0] = (v) & 0xff, (p)[1] = ((v) >> 8) & 0xff, \
                               (p)[2] = ((v) >> 16) & 0xff, (p)[3] = (v) >> 24) \
                            : ((p)[0] = (v) >> 24, (p)[1] = ((v) >> 16) & 0xff, \
                               (p)[2] = ((v) >> 8) & 0xff, (p)[3] = (v) & 0xff))
    t[0] = t[1] = little ? 'I' : 'M';
    PUT16(t + 2, 42);
    PUT32(t + 4, 8u);
    PUT16(t + 8, 1);          /* one entry */
    PUT16(t + 10, 0x0112);    /* Orientation */
    PUT16(t + 12, 3);         /* SHORT */
    PUT32(t + 14, 1u);        /* count */
    PUT16(t + 18, o);         /* value, left-justified */
    PUT32(t + 22, 0u);        /* no next IFD */
#undef PUT16
#undef PUT32
    return 6 + 26;
}

/* ---- PNG encoding and patching ----------------------------------------- */

static unsigned char *encode_png(int w, int h, int depth, int ctype, const void *px,
                                 size_t px_len, const struct spng_plte *plte, size_t *n)
{
    spng_ctx *c = spng_ctx_new(SPNG_CTX_ENCODER);
    spng_set_option(c, SPNG_ENCODE_TO_BUFFER, 1);
    struct spng_ihdr ihdr = {(uint32_t)w, (uint32_t)h, (uint8_t)depth, (uint8_t)ctype, 0, 0, 0};
    spng_set_ihdr(c, &ihdr);
    if (plte)
        spng_set_plte(c, (struct spng_plte *)plte);
    int rc = spng_encode_image(c, px, px_len, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    int err = 0;
    unsigned char *out = rc ? NULL : spng_get_png_buffer(c, n, &err);
    if (rc || err)
        printf("     png encoder: %s\n", spng_strerror(rc ? rc : err));
    spng_ctx_free(c);
    return out;
}

static uint32_t crc32_png(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ 0xedb88320u : crc >> 1;
    }
    return crc ^ 0xffffffffu;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Sets IHDR width/height (signature 8, length 4, "IHDR" 4, data 13, CRC). */
static void patch_ihdr(unsigned char *png, uint32_t w, uint32_t h)
{
    put_be32(png + 16, w);
    put_be32(png + 20, h);
    put_be32(png + 29, crc32_png(png + 12, 17));
}

/* Sets a baseline JPEG's SOF0 height and width. Returns 0 if found. */
static int patch_sof(unsigned char *j, size_t n, unsigned w, unsigned h)
{
    for (size_t i = 2; i + 9 < n; i++) {
        if (j[i] == 0xff && (j[i + 1] == 0xc0 || j[i + 1] == 0xc2)) {
            j[i + 5] = (unsigned char)(h >> 8);
            j[i + 6] = (unsigned char)h;
            j[i + 7] = (unsigned char)(w >> 8);
            j[i + 8] = (unsigned char)w;
            return 0;
        }
    }
    return -1;
}

static int max_abs_diff(const unsigned char *a, const unsigned char *b, size_t n)
{
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m)
            m = d;
    }
    return m;
}

int main(void)
{
    struct arena *a = arena_init((size_t)256 << 20);
    if (!a) {
        printf("FAIL setup: arena_init\n");
        return 1;
    }
    size_t voc_n = 0;
    unsigned char *voc = read_all(VOC_JPEG, &voc_n);

    CHECK_CASE("sniff", {
        static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        static const unsigned char jpg[3] = {0xff, 0xd8, 0xff};
        CHECK(image_sniff(jpg, 3) == IMAGE_FORMAT_JPEG, "jpeg");
        CHECK(image_sniff(jpg, 2) == IMAGE_FORMAT_UNKNOWN, "short jpeg");
        CHECK(image_sniff(png, 8) == IMAGE_FORMAT_PNG, "png");
        CHECK(image_sniff(png, 7) == IMAGE_FORMAT_UNKNOWN, "short png");
        CHECK(image_sniff((const unsigned char *)"GIF89a", 6) == IMAGE_FORMAT_UNKNOWN, "gif");
        CHECK(image_sniff(NULL, 0) == IMAGE_FORMAT_UNKNOWN, "null");
    });

    CHECK_CASE("voc_jpeg_matches_fixture_tensor", {
        struct image im;
        struct err e = {0};
        arena_reset(a);
        int rc = image_load_file(VOC_JPEG, 0, IMAGE_EXIF_IGNORE, a, &im, &e);
        CHECK(rc == 0, "%s", e.msg);
        CHECK(im.w == 500 && im.h == 381, "size %dx%d", im.w, im.h);
        struct tensor ref;
        int rr = tensor_load_npy(VOC_INPUT, 0, &ref, &e);
        CHECK(rr == 0, "%s", e.msg);
        float *x = NULL;
        int ph = 0, pw = 0;
        if (rc == 0) {
            rc = image_to_tensor(&im, 14, &IMAGE_NORM_IMAGENET, a, &x, &ph, &pw, &e);
            CHECK(rc == 0, "%s", e.msg);
            CHECK(ph == 392 && pw == 504, "padded to %dx%d", ph, pw);
        }
        if (rc == 0 && rr == 0 && ph == 392 && pw == 504 && ref.ndim == 3 &&
            ref.shape[0] == 3 && ref.shape[1] == 392 && ref.shape[2] == 504) {
            double m = 0;
            size_t worst = 0, nz = 0;
            for (size_t i = 0; i < tensor_numel(&ref); i++) {
                double d = fabs((double)x[i] - ref.data[i]);
                if (d > m) {
                    m = d;
                    worst = i;
                }
                nz += x[i] != ref.data[i];
            }
            CHECK(m <= 1e-6, "max abs diff %g at %zu (%zu values differ)", m, worst, nz);
            /* With apply_exif the same file decodes the same: it has no EXIF. */
            struct image im2;
            rc = image_decode(voc, voc_n, 0, 1, a, &im2, &e);
            CHECK(rc == 0 && im2.w == 500 && im2.h == 381 &&
                  memcmp(im2.px, im.px, (size_t)500 * 381 * 3) == 0, "apply_exif changed it");
        }
        if (rr == 0)
            tensor_free(&ref);
    });

    CHECK_CASE("jpeg_truncated", {
        struct image im;
        struct err e = {0};
        int wrong = 0;
        CHECK(voc != NULL, "cannot read %s", VOC_JPEG);
        for (int k = 0; voc && k <= 40; k++) {
            size_t cut = k < 40 ? voc_n * (size_t)k / 40 : voc_n - 1;
            arena_reset(a);
            e.msg[0] = '\0';
            int rc = image_decode_jpeg(voc, cut, 0, 1, a, &im, &e);
            if (rc != ERR_INPUT || !e.msg[0] || im.px) {
                if (!wrong)
                    printf("     cut at %zu: rc %d (%s)\n", cut, rc, e.msg);
                wrong++;
            }
        }
        CHECK(wrong == 0, "%d truncations not refused with ERR_INPUT", wrong);
        /* Through image_decode too: a prefix long enough to sniff. */
        CHECK(voc && image_decode(voc, voc_n / 2, 0, 0, a, &im, &e) == ERR_INPUT, "half");
    });

    CHECK_CASE("random_bytes", {
        unsigned char junk[4096];
        struct image im;
        struct err e = {0};
        int wrong = 0;
        for (int k = 0; k < 50; k++) {
            for (size_t i = 0; i < sizeof junk; i++)
                junk[i] = (unsigned char)rnd();
            size_t n = 1 + rnd() % sizeof junk;
            arena_reset(a);
            if (image_decode_jpeg(junk, n, 0, 1, a, &im, &e) != ERR_INPUT)
                wrong++;
            if (image_decode_png(junk, n, 0, a, &im, &e) != ERR_INPUT)
                wrong++;
            if (image_sniff(junk, n) == IMAGE_FORMAT_UNKNOWN &&
                image_decode(junk, n, 0, 1, a, &im, &e) != ERR_UNSUPPORTED)
                wrong++;
            /* Valid magic, garbage after it. */
            junk[0] = 0xff, junk[1] = 0xd8, junk[2] = 0xff;
            if (image_decode(junk, n < 3 ? 3 : n, 0, 1, a, &im, &e) != ERR_INPUT)
                wrong++;
            memcpy(junk, "\x89PNG\r\n\x1a\n", 8);
            if (image_decode(junk, n < 8 ? 8 : n, 0, 1, a, &im, &e) != ERR_INPUT)
                wrong++;
        }
        CHECK(wrong == 0, "%d random inputs not refused as expected", wrong);
        CHECK(image_decode(junk, 0, 0, 1, a, &im, &e) == ERR_INPUT, "empty input");
        CHECK(image_decode_jpeg(NULL, 0, 0, 1, a, &im, &e) == ERR_INPUT, "NULL jpeg");
        CHECK(image_decode_png(NULL, 0, 0, a, &im, &e) == ERR_INPUT, "NULL png");
    });

    CHECK_CASE("jpeg_huge_dimensions_before_allocation", {
        unsigned char *px = quad_image(16, 16);
        struct jpeg_opts o = {JCS_RGB, 0, 0, 0, NULL, 0};
        size_t n = 0;
        unsigned char *j = encode_jpeg(px, 16, 16, &o, &n);
        struct image im;
        struct err e = {0};
        CHECK(patch_sof(j, n, 60000, 60000) == 0, "no SOF0 found");
        arena_reset(a);
        int rc = image_decode_jpeg(j, n, 0, 0, a, &im, &e);
        CHECK(rc == ERR_TOOBIG, "60000x60000: rc %d (%s)", rc, e.msg);
        CHECK(arena_used(a) == 0, "arena used %zu bytes before refusing", arena_used(a));
        patch_sof(j, n, 16385, 8);
        CHECK(image_decode_jpeg(j, n, 0, 0, a, &im, &e) == ERR_TOOBIG, "side 16385");
        patch_sof(j, n, 16, 16);
        CHECK(image_decode_jpeg(j, n, 255, 0, a, &im, &e) == ERR_TOOBIG, "max_pixels 255");
        rc = image_decode_jpeg(j, n, 256, 0, a, &im, &e);
        CHECK(rc == 0 && im.w == 16 && im.h == 16, "max_pixels 256: %s", e.msg);
        free(j);
        free(px);
    });

    CHECK_CASE("png_huge_dimensions_before_allocation", {
        unsigned char px[8 * 8 * 3] = {0};
        size_t n = 0;
        unsigned char *p = encode_png(8, 8, 8, SPNG_COLOR_TYPE_TRUECOLOR, px, sizeof px,
                                      NULL, &n);
        CHECK(p != NULL, "encode");
        struct image im;
        struct err e = {0};
        if (p) {
            patch_ihdr(p, 60000, 60000);
            arena_reset(a);
            int rc = image_decode_png(p, n, 0, a, &im, &e);
            CHECK(rc == ERR_TOOBIG, "60000x60000: rc %d (%s)", rc, e.msg);
            CHECK(arena_used(a) == 0, "arena used %zu bytes", arena_used(a));
            patch_ihdr(p, 10000, 10000);  /* sides fine, 1e8 pixels not */
            rc = image_decode_png(p, n, 0, a, &im, &e);
            CHECK(rc == ERR_TOOBIG, "10000x10000: rc %d (%s)", rc, e.msg);
            CHECK(arena_used(a) == 0, "arena used %zu bytes", arena_used(a));
            patch_ihdr(p, 8, 8);
            rc = image_decode(p, n, 0, 0, a, &im, &e);
            CHECK(rc == 0 && im.w == 8 && im.h == 8, "8x8 back: %s", e.msg);
            CHECK(image_decode_png(p, n, 63, a, &im, &e) == ERR_TOOBIG, "max_pixels 63");
            free(p);
        }
    });

    CHECK_CASE("jpeg_grey_becomes_rgb", {
        unsigned char g[24 * 16];
        for (int i = 0; i < 24 * 16; i++)
            g[i] = (unsigned char)((i % 24) * 10 + (i / 24));
        struct jpeg_opts o = {JCS_GRAYSCALE, 0, 0, 0, NULL, 0};
        size_t n = 0;
        unsigned char *j = encode_jpeg(g, 24, 16, &o, &n);
        struct image im;
        struct err e = {0};
        arena_reset(a);
        int rc = image_decode(j, n, 0, 1, a, &im, &e);
        CHECK(rc == 0 && im.w == 24 && im.h == 16, "rc %d %s", rc, e.msg);
        int grey = 1, far = 0;
        for (int i = 0; rc == 0 && i < 24 * 16; i++) {
            const unsigned char *p = im.px + i * 3;
            grey &= p[0] == p[1] && p[1] == p[2];
            if (abs(p[0] - g[i]) > far)
                far = abs(p[0] - g[i]);
        }
        CHECK(grey, "channels differ");
        CHECK(far <= 2, "grey values off by %d", far);
        free(j);
    });

    CHECK_CASE("jpeg_cmyk_becomes_rgb", {
        /* Left half cyan ink, right half 50% black ink: RGB (0,255,255) and
         * (127,127,127) by Pillow's cmyk2rgb. */
        enum { W = 32, H = 16 };
        static const unsigned char ink[2][4] = {{255, 0, 0, 0}, {0, 0, 0, 128}};
        static const unsigned char want[2][3] = {{0, 255, 255}, {127, 127, 127}};
        static const struct {
            J_COLOR_SPACE space;
            int no_adobe, inverted;
            const char *name;
        } kinds[] = {
            {JCS_CMYK, 0, 1, "Adobe CMYK"},
            {JCS_YCCK, 0, 1, "Adobe YCCK"},
            {JCS_CMYK, 1, 0, "plain CMYK"},
        };
        unsigned char px[W * H * 4];
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    for (int c = 0; c < 4; c++) {
                        int v = ink[x >= W / 2][c];
                        px[(y * W + x) * 4 + c] =
                            (unsigned char)(kinds[k].inverted ? 255 - v : v);
                    }
            struct jpeg_opts o = {JCS_CMYK, kinds[k].space, kinds[k].no_adobe, 0, NULL, 0};
            size_t n = 0;
            unsigned char *j = encode_jpeg(px, W, H, &o, &n);
            struct image im;
            struct err e = {0};
            arena_reset(a);
            int rc = image_decode_jpeg(j, n, 0, 0, a, &im, &e);
            CHECK(rc == 0 && im.w == W && im.h == H, "%s: rc %d %s", kinds[k].name, rc, e.msg);
            for (int half = 0; rc == 0 && half < 2; half++) {
                const unsigned char *p = im.px + ((size_t)(H / 2) * W + 4 + half * W / 2) * 3;
                int d = max_abs_diff(p, want[half], 3);
                CHECK(d <= 3, "%s half %d: got %d %d %d", kinds[k].name, half, p[0], p[1],
                      p[2]);
            }
            free(j);
        }
    });

    CHECK_CASE("jpeg_progressive", {
        unsigned char *px = quad_image(40, 24);
        struct jpeg_opts o = {JCS_RGB, 0, 0, 1, NULL, 0};
        size_t n = 0;
        unsigned char *j = encode_jpeg(px, 40, 24, &o, &n);
        struct image im;
        struct err e = {0};
        arena_reset(a);
        int rc = image_decode_jpeg(j, n, 0, 0, a, &im, &e);
        CHECK(rc == 0 && im.w == 40 && im.h == 24, "rc %d %s", rc, e.msg);
        CHECK(rc == 0 && quad_at(&im, 2, 2) == 0 && quad_at(&im, 37, 21) == 3, "colours");
        CHECK(image_decode_jpeg(j, n / 2, 0, 0, a, &im, &e) == ERR_INPUT, "truncated");
        free(j);
        free(px);
    });

    CHECK_CASE("jpeg_exif_orientation", {
        enum { W = 48, H = 32 };
        /* Source corners: 0 TL, 1 TR, 2 BL, 3 BR (= quadrant colours). For
         * each orientation, which source corner lands in the output's TL,
         * TR, BL, BR (PIL's exif_transpose). */
        static const int want[9][4] = {
            {0, 1, 2, 3}, {0, 1, 2, 3}, {1, 0, 3, 2}, {3, 2, 1, 0}, {2, 3, 0, 1},
            {0, 2, 1, 3}, {2, 0, 3, 1}, {3, 1, 2, 0}, {1, 3, 0, 2},
        };
        unsigned char *px = quad_image(W, H);
        unsigned char app1[64];
        int wrong = 0;
        for (int little = 0; little <= 1; little++) {
            for (int o = 1; o <= 8; o++) {
                struct jpeg_opts jo = {JCS_RGB, 0, 0, 0, app1, make_exif(app1, little, o)};
                size_t n = 0;
                unsigned char *j = encode_jpeg(px, W, H, &jo, &n);
                struct image im;
                struct err e = {0};
                arena_reset(a);
                int rc = image_decode_jpeg(j, n, 0, 1, a, &im, &e);
                int sw = o >= 5, ow = sw ? H : W, oh = sw ? W : H;
                if (rc || im.w != ow || im.h != oh) {
                    printf("     %s o=%d: rc %d, %dx%d\n", little ? "II" : "MM", o, rc,
                           im.w, im.h);
                    wrong++;
                } else {
                    int got[4] = {quad_at(&im, 2, 2), quad_at(&im, ow - 3, 2),
                                  quad_at(&im, 2, oh - 3), quad_at(&im, ow - 3, oh - 3)};
                    if (memcmp(got, want[o], sizeof got) != 0) {
                        printf("     %s o=%d: corners %d %d %d %d\n", little ? "II" : "MM",
                               o, got[0], got[1], got[2], got[3]);
                        wrong++;
                    }
                }
                /* apply_exif = 0 leaves the stored orientation. */
                rc = image_decode_jpeg(j, n, 0, 0, a, &im, &e);
                if (rc || im.w != W || im.h != H || quad_at(&im, W - 3, 2) != 1)
                    wrong++;
                free(j);
            }
        }
        CHECK(wrong == 0, "%d orientation decodes wrong", wrong);
        /* Malformed EXIF is ignored, never fatal: cut the payload short,
         * point IFD0 past the end, claim 65535 entries running off the end,
         * use type LONG, say orientation 9. */
        size_t len = make_exif(app1, 1, 6);
        unsigned char bad[5][64];
        size_t bad_len[5] = {12, len, len, len, len};
        for (int k = 0; k < 5; k++)
            memcpy(bad[k], app1, len);
        bad[1][10] = 0xf0;               /* IFD0 offset 0xf0 */
        bad[2][14] = bad[2][15] = 0xff;  /* 65535 entries, none of them ours */
        bad[2][16] = 0x13;
        bad[3][18] = 4;                  /* type LONG */
        bad[4][24] = 9;                  /* orientation 9 */
        for (int k = 0; k < 5; k++) {
            struct jpeg_opts jo = {JCS_RGB, 0, 0, 0, bad[k], bad_len[k]};
            size_t n = 0;
            unsigned char *j = encode_jpeg(px, W, H, &jo, &n);
            struct image im;
            struct err e = {0};
            arena_reset(a);
            int rc = image_decode_jpeg(j, n, 0, 1, a, &im, &e);
            CHECK(rc == 0 && im.w == W && im.h == H, "bad exif %d: rc %d %dx%d", k, rc,
                  im.w, im.h);
            free(j);
        }
        free(px);
    });

    CHECK_CASE("png_formats_become_rgb8", {
        enum { W = 5, H = 3, N = W * H };
        unsigned char rgb[N * 3], grey[N], ga[N * 2], rgba[N * 4], idx[N];
        uint16_t rgb16[N * 3], grey16[N];
        unsigned char want[N * 3], want_grey[N * 3], want_pal[N * 3], want16[N * 3],
            want_grey16[N * 3];
        struct spng_plte plte = {0};
        plte.n_entries = 4;
        for (int i = 0; i < 4; i++) {
            plte.entries[i].red = (uint8_t)(10 + 60 * i);
            plte.entries[i].green = (uint8_t)(200 - 50 * i);
            plte.entries[i].blue = (uint8_t)(i * i * 20);
        }
        for (int i = 0; i < N; i++) {
            for (int c = 0; c < 3; c++) {
                rgb[i * 3 + c] = (unsigned char)(i * 17 + c * 80);
                rgba[i * 4 + c] = rgb[i * 3 + c];
                want[i * 3 + c] = rgb[i * 3 + c];
                rgb16[i * 3 + c] = (uint16_t)(i * 4000 + c * 9000 + 0x55);
                want16[i * 3 + c] = (unsigned char)(rgb16[i * 3 + c] >> 8);
            }
            rgba[i * 4 + 3] = (unsigned char)(i * 15);  /* alpha, dropped */
            grey[i] = (unsigned char)(i * 16 + 3);
            ga[i * 2] = grey[i];
            ga[i * 2 + 1] = (unsigned char)(255 - i);
            grey16[i] = (uint16_t)(i * 4321 + 0x80);
            idx[i] = (unsigned char)(i % 4);
            for (int c = 0; c < 3; c++) {
                want_grey[i * 3 + c] = grey[i];
                want_grey16[i * 3 + c] = (unsigned char)(grey16[i] >> 8);
            }
            want_pal[i * 3] = plte.entries[idx[i]].red;
            want_pal[i * 3 + 1] = plte.entries[idx[i]].green;
            want_pal[i * 3 + 2] = plte.entries[idx[i]].blue;
        }
        static const char *names[] = {"rgb8", "grey8", "grey+alpha8", "rgba8", "palette8",
                                      "rgb16", "grey16"};
        const struct {
            int depth, ctype;
            const void *px;
            size_t len;
            const unsigned char *want;
        } cases[] = {
            {8, SPNG_COLOR_TYPE_TRUECOLOR, rgb, sizeof rgb, want},
            {8, SPNG_COLOR_TYPE_GRAYSCALE, grey, sizeof grey, want_grey},
            {8, SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, ga, sizeof ga, want_grey},
            {8, SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, rgba, sizeof rgba, want},
            {8, SPNG_COLOR_TYPE_INDEXED, idx, sizeof idx, want_pal},
            {16, SPNG_COLOR_TYPE_TRUECOLOR, rgb16, sizeof rgb16, want16},
            {16, SPNG_COLOR_TYPE_GRAYSCALE, grey16, sizeof grey16, want_grey16},
        };
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            size_t n = 0;
            unsigned char *p = encode_png(W, H, cases[k].depth, cases[k].ctype, cases[k].px,
                                          cases[k].len,
                                          cases[k].ctype == SPNG_COLOR_TYPE_INDEXED ? &plte : NULL,
                                          &n);
            CHECK(p != NULL, "%s: encode", names[k]);
            if (!p)
                continue;
            struct image im;
            struct err e = {0};
            arena_reset(a);
            int rc = image_decode(p, n, 0, 1, a, &im, &e);
            CHECK(rc == 0 && im.w == W && im.h == H, "%s: rc %d %s", names[k], rc, e.msg);
            if (rc == 0) {
                int d = max_abs_diff(im.px, cases[k].want, sizeof want);
                CHECK(d == 0, "%s: pixels off by up to %d (first %d %d %d)", names[k], d,
                      im.px[0], im.px[1], im.px[2]);
            }
            free(p);
        }
    });

    CHECK_CASE("png_corrupt", {
        unsigned char px[16 * 16 * 3];
        for (size_t i = 0; i < sizeof px; i++)
            px[i] = (unsigned char)rnd();
        size_t n = 0;
        unsigned char *p = encode_png(16, 16, 8, SPNG_COLOR_TYPE_TRUECOLOR, px, sizeof px,
                                      NULL, &n);
        CHECK(p != NULL, "encode");
        struct image im;
        struct err e = {0};
        int wrong = 0;
        for (size_t cut = 0; p && cut < n; cut += 1 + cut / 8) {
            arena_reset(a);
            if (image_decode_png(p, cut, 0, a, &im, &e) != ERR_INPUT) {
                if (!wrong)
                    printf("     cut at %zu of %zu accepted\n", cut, n);
                wrong++;
            }
        }
        CHECK(wrong == 0, "%d truncated PNGs accepted", wrong);
        if (p) {
            /* A flipped bit inside IDAT breaks its CRC: an error, not pixels. */
            unsigned char *q = malloc(n);
            memcpy(q, p, n);
            q[n / 2] ^= 0x10;
            CHECK(image_decode_png(q, n, 0, a, &im, &e) == ERR_INPUT, "bad CRC accepted");
            free(q);
        }
        free(p);
    });

    CHECK_CASE("mutated_inputs_never_crash", {
        /* Random byte edits of valid files: any outcome but a crash or an
         * unexpected code; meant for the sanitizer build. */
        unsigned char *qi = quad_image(40, 24);
        struct jpeg_opts o0 = {JCS_RGB, 0, 0, 0, NULL, 0}, o1 = {JCS_RGB, 0, 0, 1, NULL, 0};
        size_t nj = 0, np = 0, npj = 0;
        unsigned char *j = encode_jpeg(qi, 40, 24, &o0, &nj);
        unsigned char *pj = encode_jpeg(qi, 40, 24, &o1, &npj);
        unsigned char *p = encode_png(40, 24, 8, SPNG_COLOR_TYPE_TRUECOLOR, qi, 40 * 24 * 3,
                                      NULL, &np);
        const unsigned char *src[3] = {j, pj, p};
        size_t len[3] = {nj, npj, np};
        int wrong = 0, ok = 0;
        for (int k = 0; k < 900; k++) {
            int s = k % 3;
            if (!src[s])
                continue;
            unsigned char *m = malloc(len[s]);
            memcpy(m, src[s], len[s]);
            int edits = 1 + (int)(rnd() % 4);
            for (int i = 0; i < edits; i++)
                m[2 + rnd() % (len[s] - 2)] = (unsigned char)rnd();
            struct image im;
            struct err e = {0};
            arena_reset(a);
            int rc = image_decode(m, len[s], 0, 1, a, &im, &e);
            if (rc == 0)
                ok++;
            if (rc != 0 && rc != ERR_INPUT && rc != ERR_TOOBIG && rc != ERR_UNSUPPORTED)
                wrong++;
            if (rc == 0 && (im.w < 1 || im.h < 1 || !im.px))
                wrong++;
            free(m);
        }
        CHECK(wrong == 0, "%d unexpected outcomes", wrong);
        CHECK(ok < 900, "every mutation decoded");
        free(j);
        free(pj);
        free(p);
        free(qi);
    });

    CHECK_CASE("to_tensor_normalises_and_pads", {
        enum { W = 5, H = 3 };
        unsigned char px[W * H * 3];
        for (int i = 0; i < W * H * 3; i++)
            px[i] = (unsigned char)(i * 5 + 1);
        struct image im = {W, H, px};
        struct err e = {0};
        float *x;
        int ph, pw;
        arena_reset(a);
        int rc = image_to_tensor(&im, 4, &IMAGE_NORM_IMAGENET, a, &x, &ph, &pw, &e);
        CHECK(rc == 0 && ph == 4 && pw == 8, "rc %d, %dx%d", rc, ph, pw);
        int bad = 0;
        for (int c = 0; rc == 0 && c < 3; c++)
            for (int y = 0; y < ph; y++)
                for (int xx = 0; xx < pw; xx++) {
                    float got = x[((size_t)c * ph + y) * pw + xx], want = 0.0f;
                    if (y < H && xx < W) {
                        float v = (float)px[(y * W + xx) * 3 + c] / 255.0f;
                        want = (v - IMAGE_NORM_IMAGENET.mean[c]) / IMAGE_NORM_IMAGENET.std[c];
                    }
                    bad += got != want;
                }
        CHECK(bad == 0, "%d values differ", bad);
        rc = image_to_tensor(&im, 1, &IMAGE_NORM_CLIP, a, &x, &ph, &pw, &e);
        CHECK(rc == 0 && ph == H && pw == W, "patch 1: %dx%d", ph, pw);
        float v0 = (float)px[0] / 255.0f;
        CHECK(rc == 0 && x[0] == (v0 - 0.48145466f) / 0.26862954f, "CLIP norm %g", x[0]);
        rc = image_to_tensor(&im, 3, NULL, a, &x, &ph, &pw, &e);
        CHECK(rc == 0 && ph == 3 && pw == 6, "NULL norm / exact multiple: %dx%d", ph, pw);
        CHECK(image_to_tensor(&im, 0, NULL, a, &x, &ph, &pw, &e) == ERR_INPUT, "patch 0");
        CHECK(image_to_tensor(&im, -14, NULL, a, &x, &ph, &pw, &e) == ERR_INPUT, "patch <0");
        CHECK(image_to_tensor(&im, 0x7fffffff, NULL, a, &x, &ph, &pw, &e) == ERR_INPUT,
              "huge patch");
        CHECK(image_to_tensor(&im, IMAGE_MAX_SIDE + 1, NULL, a, &x, &ph, &pw, &e) ==
              ERR_INPUT, "patch over the cap");
        rc = image_to_tensor(&im, 1000, NULL, a, &x, &ph, &pw, &e);
        CHECK(rc == 0 && ph == 1000 && pw == 1000 && x[0] != 0.0f &&
              x[(size_t)3 * 1000 * 1000 - 1] == 0.0f, "patch 1000: rc %d %dx%d", rc, ph, pw);
        struct arena *tiny = arena_init(64);
        CHECK(image_to_tensor(&im, 14, NULL, tiny, &x, &ph, &pw, &e) == ERR_TOOBIG,
              "full arena");
        arena_free(tiny);
    });

    CHECK_CASE("downscale_sizes_and_values", {
        static const int sizes[][5] = {
            /* w, h, max_side, want w, want h */
            {500, 381, 224, 224, 171}, {381, 500, 224, 171, 224}, {100, 50, 100, 100, 50},
            {1000, 1, 10, 10, 1},      {1, 1000, 10, 1, 10},      {7, 7, 3, 3, 3},
            {640, 480, 1, 1, 1},
        };
        struct err e = {0};
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            int w = sizes[k][0], h = sizes[k][1];
            arena_reset(a);
            unsigned char *px = arena_alloc(a, (size_t)w * h * 3);
            memset(px, 77, (size_t)w * h * 3);
            struct image in = {w, h, px}, out;
            int rc = image_downscale(&in, sizes[k][2], a, &out, &e);
            CHECK(rc == 0 && out.w == sizes[k][3] && out.h == sizes[k][4],
                  "%dx%d max %d: rc %d got %dx%d", w, h, sizes[k][2], rc, out.w, out.h);
            if (rc == 0) {
                int d = 0;
                for (size_t i = 0; i < (size_t)out.w * out.h * 3; i++)
                    d |= out.px[i] != 77;
                CHECK(!d, "%dx%d: flat colour changed", w, h);
                if (w <= sizes[k][2] && h <= sizes[k][2])
                    CHECK(out.px == px, "fitting image was copied");
            }
        }
        /* 4x2 -> 2x1: each output averages a 2x2 block. */
        unsigned char px[4 * 2 * 3] = {0};
        const unsigned char v[8] = {0, 255, 10, 20, 255, 0, 30, 40};
        for (int i = 0; i < 8; i++)
            px[i * 3] = px[i * 3 + 1] = px[i * 3 + 2] = v[i];
        struct image in = {4, 2, px}, out;
        arena_reset(a);
        int rc = image_downscale(&in, 2, a, &out, &e);
        CHECK(rc == 0 && out.w == 2 && out.h == 1, "4x2 -> %dx%d", out.w, out.h);
        CHECK(rc == 0 && out.px[0] == 128 && out.px[3] == 25, "averages %d %d", out.px[0],
              out.px[3]);
        /* 3x1 -> 2x1: pixel 1 is split half and half (weights 2/3, 1/3). */
        unsigned char p3[9] = {0, 0, 0, 90, 90, 90, 180, 180, 180};
        struct image in3 = {3, 1, p3};
        rc = image_downscale(&in3, 2, a, &out, &e);
        CHECK(rc == 0 && out.w == 2 && out.px[0] == 30 && out.px[3] == 150, "3->2: %d %d",
              out.px[0], out.px[3]);
        CHECK(image_downscale(&in, 0, a, &out, &e) == ERR_INPUT, "max_side 0");
        struct image wide = {IMAGE_MAX_SIDE + 1, 1, px};
        CHECK(image_downscale(&wide, 10, a, &out, &e) == ERR_INPUT, "side over the cap");
        struct arena *tiny = arena_init(64);
        CHECK(image_downscale(&in3, 1, tiny, &out, &e) == ERR_TOOBIG, "full arena");
        arena_free(tiny);
    });

    CHECK_CASE("load_file_errors", {
        struct image im;
        struct err e = {0};
        CHECK(image_load_file("tests/fixtures/images/missing.jpg", 0, IMAGE_EXIF_APPLY, a,
                              &im, &e) ==
                  ERR_NOTFOUND, "missing: %s", e.msg);
        CHECK(image_load_file("tests/fixtures/images", 0, IMAGE_EXIF_APPLY, a, &im, &e) ==
                  ERR_IO,
              "directory");
        CHECK(image_load_file(VOC_INPUT, 0, IMAGE_EXIF_APPLY, a, &im, &e) == ERR_UNSUPPORTED,
              "npy file");
        CHECK(strstr(e.msg, "input.npy") != NULL, "message lacks the path: %s", e.msg);
    });


    CHECK_CASE("jpeg_scan_cap", {
        /* Spectral selection only (Ah = Al = 0), one coefficient per scan: a
         * valid progressive script. Grey: 1 + 63 scans decode; RGB: 1 + 3 x
         * 63 = 190 scans are over the cap of 100. */
        enum { W = 32, H = 16 };
        unsigned char *px = quad_image(W, H);
        static jpeg_scan_info scans[1 + 3 * 63];
        int ns = 0;
        scans[ns++] = (jpeg_scan_info){3, {0, 1, 2, 0}, 0, 0, 0, 0};
        for (int c = 0; c < 3; c++)
            for (int k = 1; k <= 63; k++)
                scans[ns++] = (jpeg_scan_info){1, {c, 0, 0, 0}, k, k, 0, 0};
        struct jpeg_compress_struct cc;
        struct jpeg_error_mgr jerr;
        unsigned char *out = NULL;
        unsigned long len = 0;
        cc.err = jpeg_std_error(&jerr);
        jpeg_create_compress(&cc);
        jpeg_mem_dest(&cc, &out, &len);
        cc.image_width = W;
        cc.image_height = H;
        cc.input_components = 3;
        cc.in_color_space = JCS_RGB;
        jpeg_set_defaults(&cc);
        cc.scan_info = scans;
        cc.num_scans = ns;
        jpeg_start_compress(&cc, TRUE);
        while (cc.next_scanline < cc.image_height) {
            JSAMPROW row = (JSAMPROW)(px + (size_t)cc.next_scanline * W * 3);
            jpeg_write_scanlines(&cc, &row, 1);
        }
        jpeg_finish_compress(&cc);
        jpeg_destroy_compress(&cc);
        struct image im;
        struct err e = {0};
        arena_reset(a);
        int rc = image_decode_jpeg(out, len, 0, 0, a, &im, &e);
        CHECK(rc == ERR_INPUT && strstr(e.msg, "more than 100 scans"), "%d scans: rc %d %s",
              ns, rc, e.msg);
        free(out);
        free(px);
    });

    CHECK_CASE("decode_fit_dct_scaled", {
        enum { W = 1600, H = 1200 };
        unsigned char *px = quad_image(W, H);
        struct jpeg_opts jo = {JCS_RGB, 0, 0, 0, NULL, 0};
        size_t n = 0;
        unsigned char *j = encode_jpeg(px, W, H, &jo, &n);
        struct err e = {0};
        struct image full, ref, fit;
        struct image_info info;
        arena_reset(a);
        int rc = image_decode_jpeg(j, n, 0, 1, a, &full, &e);
        rc = rc ? rc : image_downscale(&full, 100, a, &ref, &e);
        struct image_decode_opts o = {.fit_side = 100};
        rc = rc ? rc : image_decode_fit(j, n, &o, a, &fit, &info, &e);
        CHECK(rc == 0 && fit.w == 100 && fit.h == 75 && info.up_w == W && info.up_h == H,
              "rc %d %s, %dx%d of %dx%d", rc, e.msg, fit.w, fit.h, info.up_w, info.up_h);
        /* Scale 1/8 (200x150) covers 100x75: the decode holds a 64th of the
         * full pixels (plus the decoder's rows). */
        struct image_info whole;
        struct image_decode_opts onone = {0};
        image_probe(j, n, &onone, &whole, &e);
        CHECK(info.decoder_bytes + (size_t)W * H * 3 * 63 / 64 == whole.decoder_bytes,
              "decoder bytes %zu scaled, %zu whole", info.decoder_bytes, whole.decoder_bytes);
        int worst = 0, bad = 0;
        for (int y = 0; rc == 0 && y < 75; y++)
            for (int x = 0; x < 100; x++) {
                int edge = (x >= 48 && x <= 51) || (y >= 36 && y <= 38);
                int d = max_abs_diff(fit.px + ((size_t)y * 100 + x) * 3,
                                     ref.px + ((size_t)y * 100 + x) * 3, 3);
                if (!edge && d > worst)
                    worst = d;
                bad += quad_at(&fit, x, y) != quad_at(&ref, x, y) && !edge;
            }
        CHECK(rc == 0 && worst <= 4 && bad == 0, "away from the edges: max diff %d, %d "
              "pixels of another colour", worst, bad);
        /* fit_side 0, or one the image already fits: exactly a full decode. */
        struct image_decode_opts o0 = {.fit_side = 0}, obig = {.fit_side = 4000};
        struct image f0, fb;
        rc = image_decode_fit(j, n, &o0, a, &f0, &info, &e);
        rc = rc ? rc : image_decode_fit(j, n, &obig, a, &fb, &info, &e);
        CHECK(rc == 0 && !memcmp(f0.px, full.px, (size_t)W * H * 3) &&
                  !memcmp(fb.px, full.px, (size_t)W * H * 3), "not bit-identical: rc %d", rc);
        free(j);
        free(px);
    });

    CHECK_CASE("decode_fit_exif_after_the_fit", {
        enum { W = 480, H = 320 };
        unsigned char *px = quad_image(W, H);
        unsigned char app1[64];
        static const int want6[4] = {2, 0, 3, 1}; /* orientation 6: TL TR BL BR */
        struct jpeg_opts jo = {JCS_RGB, 0, 0, 0, app1, make_exif(app1, 1, 6)};
        size_t n = 0;
        unsigned char *j = encode_jpeg(px, W, H, &jo, &n);
        struct err e = {0};
        struct image fit;
        struct image_info info;
        arena_reset(a);
        struct image_decode_opts o = {.fit_side = 60};
        int rc = image_decode_fit(j, n, &o, a, &fit, &info, &e);
        CHECK(rc == 0 && fit.w == 40 && fit.h == 60 && info.up_w == H && info.up_h == W &&
                  info.orientation == 6, "rc %d: %dx%d, upright %dx%d, o %d", rc, fit.w,
              fit.h, info.up_w, info.up_h, info.orientation);
        int got[4] = {quad_at(&fit, 2, 2), quad_at(&fit, 37, 2), quad_at(&fit, 2, 57),
                      quad_at(&fit, 37, 57)};
        CHECK(rc == 0 && !memcmp(got, want6, sizeof got), "corners %d %d %d %d", got[0],
              got[1], got[2], got[3]);
        struct image_decode_opts oi = {.fit_side = 60, .exif = IMAGE_EXIF_IGNORE};
        rc = image_decode_fit(j, n, &oi, a, &fit, &info, &e);
        CHECK(rc == 0 && fit.w == 60 && fit.h == 40 && info.orientation == 1,
              "ignored: %dx%d", fit.w, fit.h);
        free(j);
        free(px);
    });

    CHECK_CASE("probe_and_memory_cap_of_a_progressive_jpeg", {
        enum { W = 64, H = 48 };
        unsigned char *px = quad_image(W, H);
        struct jpeg_opts jp = {JCS_RGB, 0, 0, 1, NULL, 0}, jb = {JCS_RGB, 0, 0, 0, NULL, 0};
        size_t np = 0, nb = 0;
        unsigned char *p = encode_jpeg(px, W, H, &jp, &np), *b = encode_jpeg(px, W, H, &jb, &nb);
        struct image_decode_opts o = {0};
        struct image_info ip, ib;
        struct err e = {0};
        int rc = image_probe(p, np, &o, &ip, &e) || image_probe(b, nb, &o, &ib, &e);
        /* 4:2:0: luma 8 x 6 blocks, each chroma 4 x 3; 128 bytes a block. */
        size_t want = (8 * 6 + 2 * 4 * 3) * 128;
        CHECK(rc == 0 && ip.multi_scan && ip.coef_bytes == want && !ib.multi_scan &&
                  ib.coef_bytes == 0 && ip.w == W && ip.h == H,
              "rc %d: progressive %d %zu (want %zu), baseline %d %zu", rc, ip.multi_scan,
              ip.coef_bytes, want, ib.multi_scan, ib.coef_bytes);
        struct image im;
        /* libjpeg keeps a small image's coefficients in memory anyway: the
         * cap bites on a large one. */
        unsigned char *bpx = quad_image(1024, 1024);
        size_t nbig = 0;
        unsigned char *big = encode_jpeg(bpx, 1024, 1024, &jp, &nbig);
        struct image_info ibig;
        image_probe(big, nbig, &o, &ibig, &e);
        struct image_decode_opts capped = {.max_memory = ibig.coef_bytes / 2};
        arena_reset(a);
        rc = image_decode_fit(big, nbig, &capped, a, &im, &ip, &e);
        CHECK(rc == ERR_TOOBIG, "over max_memory: rc %d %s", rc, e.msg);
        capped.max_memory = ibig.coef_bytes + (4u << 20);
        rc = image_decode_fit(big, nbig, &capped, a, &im, &ip, &e);
        CHECK(rc == 0, "within max_memory: rc %d %s", rc, e.msg);
        free(big);
        free(bpx);
        struct image_decode_opts late = {.deadline_ms = clock_now_ms() - 1};
        rc = image_decode_fit(p, np, &late, a, &im, &ip, &e);
        CHECK(rc == ERR_BUSY, "past the deadline: rc %d %s", rc, e.msg);
        _Atomic int stop = 1;
        struct image_decode_opts gone = {.cancel = &stop};
        rc = image_decode_fit(p, np, &gone, a, &im, &ip, &e);
        CHECK(rc == ERR_CANCELLED, "cancel flag set: rc %d %s", rc, e.msg);
        stop = 0;
        rc = image_decode_fit(p, np, &gone, a, &im, &ip, &e);
        CHECK(rc == 0, "cancel flag clear: rc %d %s", rc, e.msg);
        free(p);
        free(b);
        free(px);
    });

    free(voc);
    arena_free(a);
    return check_status();
}
