/* image.c - untrusted image bytes -> u8 RGB pixels -> the LOST input tensor.
 * Owns the first two stages of the pipeline: JPEG (libjpeg) and PNG (libspng)
 * decoding into struct image [h, w, 3], an area-average downscale, and the
 * normalise + pad step of docs/specs/lost.md section 1. Every byte it reads may be
 * hostile: declared sizes are checked against the limits before anything is
 * allocated, decoder warnings count as errors, and no failure prints, exits
 * or leaks. All pixel memory comes from the caller's arena; the decoders' own
 * internal buffers are freed before returning. Holds no global state. */
#include "image.h"

#include "arena.h"
#include "clock.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <spng.h>

/* Torch's Normalize constants, as float32 like the reference tensors. */
const struct image_norm IMAGE_NORM_IMAGENET = {
    {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
const struct image_norm IMAGE_NORM_CLIP = {
    {0.48145466f, 0.4578275f, 0.40821073f}, {0.26862954f, 0.26130258f, 0.27577711f}};

/* A progressive JPEG may carry thousands of tiny scans, each a full pass over
 * the coefficients: cheap to send, slow to decode. Real encoders emit about
 * ten (jpegtran -progressive: 10; mozjpeg's scan optimisation: a few dozen);
 * libjpeg-turbo's own tools offer the same kind of cap (-maxscans). */
#define JPEG_MAX_SCANS 100

enum image_format image_sniff(const unsigned char *buf, size_t n)
{
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (buf && n >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        return IMAGE_FORMAT_JPEG;
    if (buf && n >= 8 && memcmp(buf, png_sig, 8) == 0)
        return IMAGE_FORMAT_PNG;
    return IMAGE_FORMAT_UNKNOWN;
}

/* w x h against IMAGE_MAX_SIDE and max_pixels (<= 0: the default). */
static int check_dims(const char *what, long w, long h, long max_pixels, struct err *e)
{
    if (max_pixels <= 0)
        max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    if (w < 1 || h < 1)
        return err_set(e, ERR_INPUT, "%s: empty image (%ldx%ld)", what, w, h);
    if (w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE)
        return err_set(e, ERR_TOOBIG, "%s: image is %ldx%ld, sides allowed up to %d",
                       what, w, h, IMAGE_MAX_SIDE);
    if (w * h > max_pixels)  /* both <= 16384: no overflow in a long */
        return err_set(e, ERR_TOOBIG, "%s: image is %ldx%ld, over %ld pixels",
                       what, w, h, max_pixels);
    return 0;
}

/* ---- EXIF orientation ----------------------------------------------------
 * The APP1 payload is "Exif\0\0" + a TIFF file: byte-order mark, 42, offset
 * of IFD0, then 12-byte entries. We only want tag 0x0112 (Orientation,
 * SHORT, count 1) in IFD0; anything malformed means "no orientation". */

static unsigned rd16(const unsigned char *p, int le)
{
    return le ? (unsigned)p[0] | (unsigned)p[1] << 8 : (unsigned)p[0] << 8 | (unsigned)p[1];
}

static uint32_t rd32(const unsigned char *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
                (uint32_t)p[3];
}

/* Orientation 1..8 from one APP1 payload, or 0. */
static int exif_orientation(const unsigned char *d, size_t n)
{
    if (n < 6 || memcmp(d, "Exif\0\0", 6) != 0)
        return 0;
    const unsigned char *t = d + 6;
    size_t tn = n - 6;
    if (tn < 8)
        return 0;
    int le;
    if (t[0] == 'I' && t[1] == 'I')
        le = 1;
    else if (t[0] == 'M' && t[1] == 'M')
        le = 0;
    else
        return 0;
    if (rd16(t + 2, le) != 42)
        return 0;
    uint32_t ifd = rd32(t + 4, le);
    if (ifd < 8 || ifd > tn - 2)
        return 0;
    unsigned count = rd16(t + ifd, le);
    size_t pos = (size_t)ifd + 2;
    for (unsigned i = 0; i < count; i++, pos += 12) {
        if (pos > tn || tn - pos < 12)
            return 0;
        const unsigned char *en = t + pos;
        if (rd16(en, le) != 0x0112)
            continue;
        /* SHORT (3), count 1: the value sits in the first two value bytes. */
        if (rd16(en + 2, le) != 3 || rd32(en + 4, le) != 1)
            return 0;
        unsigned v = rd16(en + 8, le);
        return v >= 1 && v <= 8 ? (int)v : 0;
    }
    return 0;
}

/* Returns the pixels upright as EXIF orientation o says (PIL's
 * ImageOps.exif_transpose). Output pixels from a. */
static int apply_orientation(const struct image *in, int o, struct arena *a,
                             struct image *out, struct err *e)
{
    if (o <= 1 || o > 8) {
        *out = *in;
        return 0;
    }
    int w = in->w, h = in->h;
    int swap = o >= 5;
    int ow = swap ? h : w, oh = swap ? w : h;
    unsigned char *px = arena_alloc(a, (size_t)ow * (size_t)oh * 3);
    if (!px)
        return err_set(e, ERR_TOOBIG, "no scratch left to rotate %dx%d", w, h);
    for (int oy = 0; oy < oh; oy++) {
        unsigned char *dst = px + (size_t)oy * ow * 3;
        for (int ox = 0; ox < ow; ox++, dst += 3) {
            int sx, sy;
            switch (o) {
            case 2: sx = w - 1 - ox; sy = oy; break;              /* mirror */
            case 3: sx = w - 1 - ox; sy = h - 1 - oy; break;      /* 180 */
            case 4: sx = ox; sy = h - 1 - oy; break;              /* flip */
            case 5: sx = oy; sy = ox; break;                      /* transpose */
            case 6: sx = oy; sy = h - 1 - ox; break;              /* 90 cw */
            case 7: sx = w - 1 - oy; sy = h - 1 - ox; break;      /* transverse */
            default: sx = w - 1 - oy; sy = ox; break;             /* 8: 90 ccw */
            }
            memcpy(dst, in->px + ((size_t)sy * w + sx) * 3, 3);
        }
    }
    out->w = ow;
    out->h = oh;
    out->px = px;
    return 0;
}

/* ---- JPEG ---------------------------------------------------------------- */

struct jpeg_guard {
    struct jpeg_error_mgr pub;    /* first: libjpeg casts cinfo->err to it */
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    int code;                     /* ERR_* the jump reports (ERR_INPUT unless set) */
    double deadline_ms;           /* > 0: stop once clock_now_ms() passes it */
    const _Atomic int *cancel;    /* non-NULL: stop once it reads nonzero */
    char msg[JMSG_LENGTH_MAX];
};

static void jpeg_on_error(j_common_ptr c)
{
    struct jpeg_guard *g = (struct jpeg_guard *)c->err;
    (*c->err->format_message)(c, g->msg);
    /* Our max_memory_to_use was reached: libjpeg would need to spill its
     * whole-image buffers to disk, which we do not allow. */
    if (c->err->msg_code == JERR_NO_BACKING_STORE) {
        g->code = ERR_TOOBIG;
        snprintf(g->msg, sizeof g->msg, "needs more decoder memory than allowed");
    }
    longjmp(g->jump, 1);
}

/* Level -1 is a warning ("Corrupt JPEG data", "Premature end of JPEG
 * file"): libjpeg would carry on with grey or garbage blocks, and a box
 * found on made-up pixels is worse than a 400. Levels >= 0 are trace
 * messages, ignored. */
static void jpeg_on_message(j_common_ptr c, int level)
{
    if (level < 0)
        jpeg_on_error(c);
}

static void jpeg_silent(j_common_ptr c)
{
    (void)c;
}

/* Called by libjpeg between passes and MCU rows: the scan cap and the
 * caller's deadline, so a crafted file cannot keep a worker for long. */
static void jpeg_on_progress(j_common_ptr c)
{
    struct jpeg_guard *g = (struct jpeg_guard *)c->err;
    if (c->is_decompressor) {
        j_decompress_ptr d = (j_decompress_ptr)c;
        if (d->input_scan_number > JPEG_MAX_SCANS) {
            snprintf(g->msg, sizeof g->msg, "more than %d scans", JPEG_MAX_SCANS);
            longjmp(g->jump, 1);
        }
    }
    if (g->cancel && atomic_load_explicit(g->cancel, memory_order_relaxed)) {
        g->code = ERR_CANCELLED;
        snprintf(g->msg, sizeof g->msg, "decoding cancelled: nobody waits for it");
        longjmp(g->jump, 1);
    }
    if (g->deadline_ms > 0 && clock_now_ms() > g->deadline_ms) {
        g->code = ERR_BUSY;
        snprintf(g->msg, sizeof g->msg, "decoding ran past the request's deadline");
        longjmp(g->jump, 1);
    }
}

static unsigned char clip8(int v)
{
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Pillow's cmyk2rgb (libImaging/Convert.c), so CMYK files match PIL's
 * convert("RGB"): R = (255 - K) - (C * (255 - K)) / 255, rounded its way. */
static void cmyk_row_to_rgb(const unsigned char *in, unsigned char *out, int w, int inverted)
{
    for (int x = 0; x < w; x++, in += 4, out += 3) {
        int c = in[0], m = in[1], y = in[2], k = in[3];
        if (inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        int nk = 255 - k, t;
        t = c * nk + 128;
        out[0] = clip8(nk - (((t >> 8) + t) >> 8));
        t = m * nk + 128;
        out[1] = clip8(nk - (((t >> 8) + t) >> 8));
        t = y * nk + 128;
        out[2] = clip8(nk - (((t >> 8) + t) >> 8));
    }
}

/* What a decode of this header with these options will do and cost: the
 * orientation, the upright size, the target of the fit, the DCT scale M/8,
 * and the decoder's memory. Fills info; returns 0 or ERR_UNSUPPORTED. */
struct jpeg_plan {
    int orient;             /* 1..8 */
    int scale;              /* M of M/8 */
    int tw, th;             /* stored-orientation size after the fit (= full if none) */
    int cmyk;
};

static int jpeg_plan(j_decompress_ptr cinfo, const struct image_decode_opts *o,
                     struct jpeg_plan *p, struct image_info *info, struct err *e)
{
    memset(p, 0, sizeof *p);
    int W = (int)cinfo->image_width, H = (int)cinfo->image_height;
    p->orient = 1;
    if (o->exif == IMAGE_EXIF_APPLY) {
        int or = 0;
        for (jpeg_saved_marker_ptr m = cinfo->marker_list; m && !or; m = m->next)
            if (m->marker == JPEG_APP0 + 1)
                or = exif_orientation(m->data, m->data_length);
        if (or >= 1)
            p->orient = or;
    }
    p->cmyk = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
    if (!p->cmyk && cinfo->num_components != 1 && cinfo->num_components != 3)
        return err_set(e, ERR_UNSUPPORTED, "jpeg: %d components, colour space %d",
                       cinfo->num_components, (int)cinfo->jpeg_color_space);
    int swap = p->orient >= 5;
    int uw = swap ? H : W, uh = swap ? W : H;
    int tw = uw, th = uh;
    if (o->fit_side > 0)
        image_fit_size(uw, uh, o->fit_side, &tw, &th);
    p->tw = swap ? th : tw;
    p->th = swap ? tw : th;
    /* The smallest DCT scale whose output still covers the target: the
     * area-average downscale then does the rest, as it would from full size. */
    p->scale = 8;
    if (p->tw < W || p->th < H)
        for (int m = 1; m < 8; m++)
            if ((W * (long)m + 7) / 8 >= p->tw && (H * (long)m + 7) / 8 >= p->th) {
                p->scale = m;
                break;
            }
    size_t coef = 0;
    if (jpeg_has_multiple_scans(cinfo)) {
        /* The coefficient controller keeps every block of the image, each
         * component rounded up to whole MCUs: 64 coefficients of 2 bytes. */
        for (int c = 0; c < cinfo->num_components; c++) {
            const jpeg_component_info *ci = &cinfo->comp_info[c];
            size_t bw = (ci->width_in_blocks + ci->h_samp_factor - 1) / ci->h_samp_factor *
                        ci->h_samp_factor;
            size_t bh = (ci->height_in_blocks + ci->v_samp_factor - 1) / ci->v_samp_factor *
                        ci->v_samp_factor;
            coef += bw * bh * 64 * sizeof(JCOEF);
        }
    }
    size_t ow = ((size_t)W * p->scale + 7) / 8, oh = ((size_t)H * p->scale + 7) / 8;
    info->format = IMAGE_FORMAT_JPEG;
    info->w = W;
    info->h = H;
    info->up_w = uw;
    info->up_h = uh;
    info->orientation = p->orient;
    info->multi_scan = jpeg_has_multiple_scans(cinfo) ? 1 : 0;
    info->coef_bytes = coef;
    info->decoder_bytes = coef + ow * oh * 3 + (size_t)W * 4 * 2 + ((size_t)1 << 20);
    return 0;
}

/* Everything after jpeg_read_header. Any libjpeg error or warning in here
 * longjmps straight to jpeg_run, so this frame keeps nothing that needs
 * cleaning up: its memory is arena memory. */
static int jpeg_decode_body(j_decompress_ptr cinfo, const struct image_decode_opts *o,
                            struct arena *a, struct image *out, struct image_info *info,
                            struct err *e)
{
    int rc = check_dims("jpeg", (long)cinfo->image_width, (long)cinfo->image_height,
                        o->max_pixels, e);
    if (rc)
        return rc;
    /* Saved markers live in libjpeg's image pool, which
     * jpeg_finish_decompress releases: plan (orientation) now. */
    struct jpeg_plan p;
    if ((rc = jpeg_plan(cinfo, o, &p, info, e)))
        return rc;

    /* Decode settings stay at libjpeg's defaults (JDCT_ISLOW, fancy
     * upsampling): they are what PIL uses, so the pixels, and the golden
     * tensors, match it exactly at full scale. */
    cinfo->out_color_space = p.cmyk ? JCS_CMYK : JCS_RGB; /* grey is replicated, as PIL */
    cinfo->scale_num = (unsigned)p.scale;
    cinfo->scale_denom = 8;
    jpeg_start_decompress(cinfo);

    int w = (int)cinfo->output_width, h = (int)cinfo->output_height;
    if (w != (int)(((long)cinfo->image_width * p.scale + 7) / 8) ||
        h != (int)(((long)cinfo->image_height * p.scale + 7) / 8) ||
        cinfo->output_components != (p.cmyk ? 4 : 3))
        return err_set(e, ERR_INTERNAL, "jpeg: unexpected output %dx%dx%d", w, h,
                       cinfo->output_components);
    struct image img = {w, h, arena_alloc(a, (size_t)w * (size_t)h * 3)};
    if (!img.px)
        return err_set(e, ERR_TOOBIG, "jpeg: no scratch left for %dx%d pixels", w, h);
    size_t mark = arena_mark(a);
    unsigned char *cmyk_row = NULL;
    if (p.cmyk && !(cmyk_row = arena_alloc(a, (size_t)w * 4)))
        return err_set(e, ERR_TOOBIG, "jpeg: no scratch left for a %d pixel row", w);
    /* Photoshop writes CMYK inverted (0 = full ink) and tags it with APP14;
     * libjpeg passes the values through. Without the marker we take them
     * as plain ink. PIL inverts unconditionally, but libjpeg itself always
     * writes APP14 for CMYK, so the two only differ on exotic files. */
    int inverted = p.cmyk && cinfo->saw_Adobe_marker;
    while (cinfo->output_scanline < cinfo->output_height) {
        unsigned char *dst = img.px + (size_t)cinfo->output_scanline * w * 3;
        JSAMPROW row = p.cmyk ? cmyk_row : dst;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1)
            return err_set(e, ERR_INPUT, "jpeg: decoder stalled");
        if (p.cmyk)
            cmyk_row_to_rgb(cmyk_row, dst, w, inverted);
    }
    arena_rewind(a, mark);
    jpeg_finish_decompress(cinfo);
    /* Fit first, then turn upright: the rotation copies the small image. */
    struct image fit = img;
    if (p.tw != w || p.th != h) {
        if ((rc = image_downscale_to(&img, p.tw, p.th, a, &fit, e)))
            return rc;
    }
    return apply_orientation(&fit, p.orient, a, out, e);
}

/* Sets up libjpeg on buf with our error, progress and memory handling, reads
 * the header, then either plans (out == NULL: image_probe) or decodes. */
static int jpeg_run(const unsigned char *buf, size_t n, const struct image_decode_opts *o,
                    struct arena *a, struct image *out, struct image_info *info,
                    struct err *e)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!buf || n == 0)
        return err_set(e, ERR_INPUT, "jpeg: empty input");
#if SIZE_MAX > ULONG_MAX
    if (n > ULONG_MAX)  /* jpeg_mem_src takes an unsigned long */
        return err_set(e, ERR_TOOBIG, "jpeg: %zu bytes", n);
#endif

    struct jpeg_decompress_struct cinfo;
    struct jpeg_guard g;
    memset(&g, 0, sizeof g);
    g.code = ERR_INPUT;
    g.deadline_ms = o->deadline_ms;
    g.cancel = o->cancel;
    cinfo.err = jpeg_std_error(&g.pub);
    g.pub.error_exit = jpeg_on_error;
    g.pub.emit_message = jpeg_on_message;
    g.pub.output_message = jpeg_silent;

    /* The only setjmp in the tree. libjpeg's own memory is released by
     * jpeg_destroy_decompress; ours is arena memory, so the jump leaks
     * nothing. No local of this frame changes after setjmp. */
    if (setjmp(g.jump)) {
        jpeg_destroy_decompress(&cinfo);
        if (out)
            memset(out, 0, sizeof *out);
        return err_set(e, g.code, "jpeg: %s", g.msg);
    }
    jpeg_create_decompress(&cinfo);
    /* Whole-image coefficient buffers (progressive and multi-scan files)
     * beyond this fail instead of growing: see image_decode_opts. */
    if (o->max_memory > 0)
        cinfo.mem->max_memory_to_use = (long)(o->max_memory > LONG_MAX ? LONG_MAX
                                                                        : o->max_memory);
    g.progress.progress_monitor = jpeg_on_progress;
    cinfo.progress = &g.progress;
    jpeg_mem_src(&cinfo, buf, (unsigned long)n);
    if (o->exif == IMAGE_EXIF_APPLY)
        jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
    /* Adobe's APP14 is parsed by libjpeg itself (saw_Adobe_marker). */
    jpeg_read_header(&cinfo, TRUE);
    int rc;
    if (out) {
        rc = jpeg_decode_body(&cinfo, o, a, out, info, e);
    } else {
        struct jpeg_plan p;
        rc = check_dims("jpeg", (long)cinfo.image_width, (long)cinfo.image_height,
                        o->max_pixels, e);
        if (!rc)
            rc = jpeg_plan(&cinfo, o, &p, info, e);
    }
    jpeg_destroy_decompress(&cinfo);
    if (rc && out)
        memset(out, 0, sizeof *out);
    return rc;
}

int image_decode_jpeg(const unsigned char *buf, size_t n, long max_pixels, int apply_exif,
                      struct arena *a, struct image *out, struct err *e)
{
    struct image_decode_opts o = {.max_pixels = max_pixels,
                                  .exif = apply_exif ? IMAGE_EXIF_APPLY : IMAGE_EXIF_IGNORE};
    struct image_info info;
    return jpeg_run(buf, n, &o, a, out, &info, e);
}

/* ---- PNG ----------------------------------------------------------------- */

static int png_code(int spng_rc)
{
    switch (spng_rc) {
    case SPNG_EUSER_WIDTH:
    case SPNG_EUSER_HEIGHT:
    case SPNG_ECHUNK_LIMITS:
    case SPNG_EMEM:  /* also what spng reports for an over-limit chunk */
        return ERR_TOOBIG;
    default:
        return ERR_INPUT;
    }
}

/* Reads the header; with out, also decodes into arena pixels. */
static int png_run(const unsigned char *buf, size_t n, long max_pixels, struct arena *a,
                   struct image *out, struct image_info *info, struct err *e)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!buf || n == 0)
        return err_set(e, ERR_INPUT, "png: empty input");
    /* Flags 0: the zlib Adler-32 and chunk CRCs are checked. */
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx)
        return err_set(e, ERR_NOMEM, "png: no memory for a decoder");
    int rc = 0, s;
    struct spng_ihdr ihdr;
    size_t size = 0;
    /* Ancillary chunks (text, ICC, EXIF) are not used; the limits bound
     * what one of them, or a zTXt bomb, can make spng hold (IDAT is
     * streamed and not subject to them). spng wants chunk <= cache. */
    if ((s = spng_set_image_limits(ctx, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE)) ||
        (s = spng_set_chunk_limits(ctx, (size_t)8 << 20, (size_t)16 << 20)) ||
        (s = spng_set_crc_action(ctx, SPNG_CRC_ERROR, SPNG_CRC_ERROR)) ||
        (s = spng_set_png_buffer(ctx, buf, n)) ||
        (s = spng_get_ihdr(ctx, &ihdr))) {
        rc = err_set(e, png_code(s), "png: %s", spng_strerror(s));
        goto done;
    }
    if ((rc = check_dims("png", (long)ihdr.width, (long)ihdr.height, max_pixels, e)))
        goto done;
    info->format = IMAGE_FORMAT_PNG;
    info->w = info->up_w = (int)ihdr.width;
    info->h = info->up_h = (int)ihdr.height;
    info->orientation = 1;
    info->multi_scan = ihdr.interlace_method != 0;
    /* Full-size pixels (arena) plus spng's rows and inflate state. */
    info->decoder_bytes = (size_t)ihdr.width * ihdr.height * 3 + (size_t)ihdr.width * 16 +
                          ((size_t)1 << 20);
    if (!out)
        goto done;
    /* RGB8 covers every colour type and depth: grey is replicated, palettes
     * are expanded, 16-bit keeps the high byte, alpha is dropped (not
     * composited), which is what PIL's convert("RGB") does. */
    if ((s = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &size))) {
        rc = err_set(e, png_code(s), "png: %s", spng_strerror(s));
        goto done;
    }
    if (size != (size_t)ihdr.width * ihdr.height * 3) {
        rc = err_set(e, ERR_INTERNAL, "png: decoded size %zu for %ux%u", size,
                     (unsigned)ihdr.width, (unsigned)ihdr.height);
        goto done;
    }
    unsigned char *px = arena_alloc(a, size);
    if (!px) {
        rc = err_set(e, ERR_TOOBIG, "png: no scratch left for %ux%u pixels",
                     (unsigned)ihdr.width, (unsigned)ihdr.height);
        goto done;
    }
    if ((s = spng_decode_image(ctx, px, size, SPNG_FMT_RGB8, 0))) {
        rc = err_set(e, png_code(s), "png: %s", spng_strerror(s));
        goto done;
    }
    out->w = (int)ihdr.width;
    out->h = (int)ihdr.height;
    out->px = px;
done:
    spng_ctx_free(ctx);
    if (rc && out)
        memset(out, 0, sizeof *out);
    return rc;
}

int image_decode_png(const unsigned char *buf, size_t n, long max_pixels,
                     struct arena *a, struct image *out, struct err *e)
{
    struct image_info info;
    return png_run(buf, n, max_pixels, a, out, &info, e);
}

int image_decode(const unsigned char *buf, size_t n, long max_pixels, int apply_exif,
                 struct arena *a, struct image *out, struct err *e)
{
    struct image_decode_opts o = {.max_pixels = max_pixels,
                                  .exif = apply_exif ? IMAGE_EXIF_APPLY : IMAGE_EXIF_IGNORE};
    struct image_info info;
    return image_decode_fit(buf, n, &o, a, out, &info, e);
}

int image_probe(const unsigned char *buf, size_t n, const struct image_decode_opts *o,
                struct image_info *info, struct err *e)
{
    memset(info, 0, sizeof *info);
    if (!buf || n == 0)
        return err_set(e, ERR_INPUT, "empty image");
    switch (image_sniff(buf, n)) {
    case IMAGE_FORMAT_JPEG:
        return jpeg_run(buf, n, o, NULL, NULL, info, e);
    case IMAGE_FORMAT_PNG:
        return png_run(buf, n, o->max_pixels, NULL, NULL, info, e);
    default:
        return err_set(e, ERR_UNSUPPORTED, "not a JPEG or PNG image");
    }
}

int image_decode_fit(const unsigned char *buf, size_t n, const struct image_decode_opts *o,
                     struct arena *a, struct image *out, struct image_info *info,
                     struct err *e)
{
    memset(out, 0, sizeof *out);
    memset(info, 0, sizeof *info);
    if (!buf || n == 0)
        return err_set(e, ERR_INPUT, "empty image");
    switch (image_sniff(buf, n)) {
    case IMAGE_FORMAT_JPEG:
        return jpeg_run(buf, n, o, a, out, info, e);
    case IMAGE_FORMAT_PNG: {
        struct image full;
        int rc = png_run(buf, n, o->max_pixels, a, &full, info, e);
        if (rc || o->fit_side <= 0)
            return rc ? rc : (*out = full, 0);
        int tw, th;
        image_fit_size(full.w, full.h, o->fit_side, &tw, &th);
        return image_downscale_to(&full, tw, th, a, out, e);
    }
    default:
        return err_set(e, ERR_UNSUPPORTED, "not a JPEG or PNG image");
    }
}


int image_read_file(const char *path, struct arena *a, unsigned char **out, size_t *n_out,
                    struct err *e)
{
    *out = NULL;
    *n_out = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: %s", path,
                       strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size > IMAGE_MAX_FILE_BYTES) {
        close(fd);
        return err_set(e, ERR_TOOBIG, "%s: %lld bytes, limit %lld", path,
                       (long long)st.st_size, (long long)IMAGE_MAX_FILE_BYTES);
    }
    size_t n = (size_t)st.st_size, got = 0;
    unsigned char *buf = arena_alloc(a, n ? n : 1);
    if (!buf) {
        close(fd);
        return err_set(e, ERR_TOOBIG, "%s: no scratch left for %zu bytes", path, n);
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int rc = err_set(e, ERR_IO, "%s: read failed: %s", path,
                             r < 0 ? strerror(errno) : "file shrank");
            close(fd);
            return rc;
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *n_out = n;
    return 0;
}

int image_load_file(const char *path, long max_pixels, enum image_exif exif,
                    struct arena *a, struct image *out, struct err *e)
{
    memset(out, 0, sizeof *out);
    unsigned char *buf;
    size_t n;
    int rc = image_read_file(path, a, &buf, &n, e);
    if (rc)
        return rc;
    rc = image_decode(buf, n, max_pixels, exif == IMAGE_EXIF_APPLY, a, out, e);
    return rc ? err_prefix(e, "%s", path) : 0;
}

/* ---- downscale ------------------------------------------------------------ */

/* One axis of an area average: output i covers the source interval
 * [i*s, (i+1)*s), s = n_in/n_out >= 1, and each source pixel weighs its
 * overlap with it. first[i] and cnt[i] index wt[i * stride ...]. */
struct axis {
    int *first, *cnt;
    float *wt;
    int stride;
};

static int axis_init(struct axis *ax, int n_in, int n_out, struct arena *a)
{
    ax->stride = n_in / n_out + 2;
    ax->first = arena_alloc(a, sizeof(int) * (size_t)n_out);
    ax->cnt = arena_alloc(a, sizeof(int) * (size_t)n_out);
    ax->wt = arena_alloc(a, sizeof(float) * (size_t)n_out * (size_t)ax->stride);
    if (!ax->first || !ax->cnt || !ax->wt)
        return -1;
    double s = (double)n_in / n_out;
    for (int i = 0; i < n_out; i++) {
        double lo = i * s, hi = (i + 1) * s;
        if (hi > n_in)
            hi = n_in;
        int j0 = (int)lo, j1 = (int)hi;
        if (j1 < hi)
            j1++;
        if (j1 > n_in)
            j1 = n_in;
        if (j1 - j0 > ax->stride)  /* cannot happen: (hi - lo) + 2 bounds it */
            j1 = j0 + ax->stride;
        ax->first[i] = j0;
        ax->cnt[i] = j1 - j0;
        for (int j = j0; j < j1; j++) {
            double a0 = j > lo ? j : lo, a1 = j + 1 < hi ? j + 1 : hi;
            ax->wt[(size_t)i * ax->stride + (j - j0)] = (float)((a1 - a0) / s);
        }
    }
    return 0;
}

void image_fit_size(int w, int h, int max_side, int *ow, int *oh)
{
    int big = w > h ? w : h;
    if (max_side < 1 || big <= max_side) {
        *ow = w;
        *oh = h;
        return;
    }
    *ow = w >= h ? max_side : (int)((double)w * max_side / big + 0.5);
    *oh = h >= w ? max_side : (int)((double)h * max_side / big + 0.5);
    if (*ow < 1)
        *ow = 1;
    if (*oh < 1)
        *oh = 1;
}

/* One source row averaged horizontally into hrow [ow * 3]. */
static void hpass(const unsigned char *src, const struct axis *ax, int ow, float *hrow)
{
    for (int i = 0; i < ow; i++) {
        const float *wt = ax->wt + (size_t)i * ax->stride;
        const unsigned char *s = src + (size_t)ax->first[i] * 3;
        float r = 0, g = 0, b = 0;
        for (int k = 0; k < ax->cnt[i]; k++, s += 3) {
            r += wt[k] * s[0];
            g += wt[k] * s[1];
            b += wt[k] * s[2];
        }
        hrow[3 * i] = r;
        hrow[3 * i + 1] = g;
        hrow[3 * i + 2] = b;
    }
}

int image_downscale_to(const struct image *in, int ow, int oh, struct arena *a,
                       struct image *out, struct err *e)
{
    if (!in || !in->px || in->w < 1 || in->h < 1 || in->w > IMAGE_MAX_SIDE ||
        in->h > IMAGE_MAX_SIDE)
        return err_set(e, ERR_INPUT, "downscale: image is %dx%d, allowed 1..%d",
                       in ? in->w : 0, in ? in->h : 0, IMAGE_MAX_SIDE);
    int w = in->w, h = in->h;
    if (ow < 1 || oh < 1 || ow > w || oh > h)
        return err_set(e, ERR_INPUT, "downscale: %dx%d to %dx%d", w, h, ow, oh);
    if (ow == w && oh == h) {
        *out = *in;
        return 0;
    }
    unsigned char *px = arena_alloc(a, (size_t)ow * (size_t)oh * 3);
    if (!px)
        return err_set(e, ERR_TOOBIG, "downscale: no scratch left for %dx%d", ow, oh);
    size_t mark = arena_mark(a);
    /* Row by row: an output row sums its source rows, each averaged
     * horizontally once (a row shared by two output rows is kept), so the
     * scratch is two rows, not a [h, ow] plane. The sums run in the same
     * order as over a whole plane: the pixels do not depend on it. */
    struct axis ax, ay;
    float *hrow, *acc;
    if (axis_init(&ax, w, ow, a) || axis_init(&ay, h, oh, a) ||
        !(hrow = arena_alloc(a, sizeof(float) * (size_t)ow * 3)) ||
        !(acc = arena_alloc(a, sizeof(float) * (size_t)ow * 3))) {
        arena_rewind(a, mark);
        return err_set(e, ERR_TOOBIG, "downscale: no scratch left for %dx%d -> %dx%d",
                       w, h, ow, oh);
    }
    int have = -1; /* source row now in hrow */
    for (int j = 0; j < oh; j++) {
        const float *wt = ay.wt + (size_t)j * ay.stride;
        for (int k = 0; k < ay.cnt[j]; k++) {
            int y = ay.first[j] + k;
            if (y != have) {
                hpass(in->px + (size_t)y * w * 3, &ax, ow, hrow);
                have = y;
            }
            for (int i = 0; i < ow * 3; i++)
                acc[i] = (k ? acc[i] : 0.0f) + wt[k] * hrow[i];
        }
        unsigned char *dst = px + (size_t)j * ow * 3;
        for (int i = 0; i < ow * 3; i++)
            dst[i] = clip8((int)(acc[i] + 0.5f));
    }
    arena_rewind(a, mark);
    out->w = ow;
    out->h = oh;
    out->px = px;
    return 0;
}

int image_downscale(const struct image *in, int max_side, struct arena *a,
                    struct image *out, struct err *e)
{
    if (!in || !in->px || in->w < 1 || in->h < 1 || in->w > IMAGE_MAX_SIDE ||
        in->h > IMAGE_MAX_SIDE)
        return err_set(e, ERR_INPUT, "downscale: image is %dx%d, allowed 1..%d",
                       in ? in->w : 0, in ? in->h : 0, IMAGE_MAX_SIDE);
    if (max_side < 1)
        return err_set(e, ERR_INPUT, "downscale: max side %d", max_side);
    int ow, oh;
    image_fit_size(in->w, in->h, max_side, &ow, &oh);
    return image_downscale_to(in, ow, oh, a, out, e);
}

/* ---- normalise and pad ---------------------------------------------------- */

int image_to_tensor(const struct image *img, int patch, const struct image_norm *norm,
                    struct arena *a, float **out, int *ph, int *pw, struct err *e)
{
    *out = NULL;
    *ph = *pw = 0;
    if (patch < 1 || patch > IMAGE_MAX_SIDE)
        return err_set(e, ERR_INPUT, "patch size %d, allowed 1..%d", patch, IMAGE_MAX_SIDE);
    if (!img || !img->px || img->w < 1 || img->h < 1 || img->w > IMAGE_MAX_SIDE ||
        img->h > IMAGE_MAX_SIDE)
        return err_set(e, ERR_INPUT, "image is %dx%d, allowed 1..%d", img ? img->w : 0,
                       img ? img->h : 0, IMAGE_MAX_SIDE);
    if (!norm)
        norm = &IMAGE_NORM_IMAGENET;
    int w = img->w, h = img->h;
    /* Sides and patch are <= IMAGE_MAX_SIDE, so H and W stay under twice
     * that and the sizes below cannot overflow. */
    long H = ((long)h + patch - 1) / patch * patch;
    long W = ((long)w + patch - 1) / patch * patch;
    size_t plane = (size_t)H * (size_t)W;
    float *x = arena_alloc(a, plane * 3 * sizeof(float));  /* [3, H, W] */
    if (!x)
        return err_set(e, ERR_TOOBIG, "no scratch left for a 3x%ldx%ld tensor", H, W);
    for (int c = 0; c < 3; c++) {
        float mean = norm->mean[c], std = norm->std[c];
        float lut[256];
        /* torchvision: ToTensor divides by 255, Normalize subtracts then
         * divides, each rounded to float32; kept as two separate float
         * operations so the result is bit-identical to the reference. */
        for (int u = 0; u < 256; u++) {
            float v = (float)u / 255.0f;
            lut[u] = (v - mean) / std;
        }
        float *dst = x + (size_t)c * plane;
        for (int y = 0; y < h; y++) {
            const unsigned char *src = img->px + (size_t)y * w * 3 + c;
            float *row = dst + (size_t)y * W;
            for (int i = 0; i < w; i++)
                row[i] = lut[src[(size_t)i * 3]];
            memset(row + w, 0, sizeof(float) * (size_t)(W - w));
        }
        memset(dst + (size_t)h * W, 0, sizeof(float) * (size_t)(H - h) * (size_t)W);
    }
    *out = x;
    *ph = (int)H;
    *pw = (int)W;
    return 0;
}
