/* image.h - decoding untrusted image bytes and LOST preprocessing.
 * Stage: bytes -> struct image (u8 RGB) -> normalised, padded tensor.
 * Decoders check the declared dimensions against the limits *before*
 * allocating pixels, treat corrupt data as an error (never a warning), and
 * take all pixel memory from the given arena. Grey, grey+alpha, RGBA, CMYK
 * and 16-bit inputs all become 8-bit RGB. Thread-safe with one arena per
 * thread. Never prints. */
#ifndef LOSTD_IMAGE_H
#define LOSTD_IMAGE_H

#include <stddef.h>

struct arena;
struct err;

#define IMAGE_MAX_SIDE 16384             /* hard cap on either side, pixels */
#define IMAGE_DEFAULT_MAX_PIXELS 40000000L /* default cap on width*height */
#define IMAGE_MAX_FILE_BYTES (256L << 20)  /* image_load_file's cap on a file */

/* Decoded pixels: [h, w, 3] row-major, RGB, 8 bits. */
struct image {
    int w, h;
    unsigned char *px;
};

enum image_format { IMAGE_FORMAT_UNKNOWN = 0, IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG };

/* Whether a JPEG's EXIF orientation is applied (a person's view: discover,
 * serve, analyze) or ignored (the stored pixels, as PIL's Image.open and the
 * dataset annotations see them: eval, calibrate). */
enum image_exif { IMAGE_EXIF_APPLY = 0, IMAGE_EXIF_IGNORE };

/* How to decode. Zero-initialised = full size, EXIF applied, default pixel
 * cap, no memory cap, no deadline. */
struct image_decode_opts {
    long max_pixels;        /* cap on stored width * height; <= 0: IMAGE_DEFAULT_MAX_PIXELS */
    int exif;               /* enum image_exif */
    int fit_side;           /* > 0: return the image downscaled so max(w, h) <= fit_side
                               (image_fit_size of the upright size). A JPEG is then decoded
                               at the smallest DCT scale M/8 whose output still covers that
                               size, area-averaged down to it, and turned upright last; so
                               the pixels differ slightly from a full decode followed by
                               image_downscale. 0: full size, exactly as PIL decodes. */
    size_t max_memory;      /* > 0: libjpeg's own memory (whole-image coefficient buffers
                               of progressive / multi-scan files) may not exceed it:
                               ERR_TOOBIG instead */
    double deadline_ms;     /* > 0: on clock_now_ms()'s clock (include/clock.h); a JPEG decode still running
                               then stops with ERR_BUSY */
    const _Atomic int *cancel; /* non-NULL: a JPEG decode stops with ERR_CANCELLED once it
                               reads nonzero (checked where the deadline is) */
};

/* What a decode with given options will meet and cost, from the header. */
struct image_info {
    enum image_format format;
    int w, h;               /* as stored */
    int up_w, up_h;         /* upright: after EXIF orientation (when applied) */
    int orientation;        /* EXIF 1..8 (1 = none or ignored) */
    int multi_scan;         /* progressive / multi-scan JPEG, interlaced PNG */
    size_t coef_bytes;      /* JPEG whole-image coefficient buffers (0 for one scan) */
    size_t decoder_bytes;   /* peak bytes a decode holds beyond its result: coefficient
                               buffers, pixels at the decoded scale, the decoder's rows */
};

/* Detects the format from the first bytes (magic numbers). */
enum image_format image_sniff(const unsigned char *buf, size_t n);

/* Decodes a JPEG / PNG / either (sniffed). Pixels come from a; nothing else
 * is allocated that outlives the call. max_pixels <= 0 means
 * IMAGE_DEFAULT_MAX_PIXELS. Errors: ERR_INPUT (corrupt, truncated, empty),
 * ERR_TOOBIG (declared w*h over max_pixels or a side over IMAGE_MAX_SIDE,
 * or the arena is exhausted), ERR_UNSUPPORTED (not JPEG or PNG).
 * apply_exif: when nonzero, a JPEG's EXIF orientation is applied so the
 * result is upright as a person sees it (PIL's ImageOps.exif_transpose; a
 * rotated image takes a second pixel buffer from a). Any libjpeg warning
 * (corrupt data, premature end) fails as ERR_INPUT. PNG alpha is dropped,
 * not composited, and 16-bit samples keep their high byte, as PIL's
 * convert("RGB") does. */
int image_decode_jpeg(const unsigned char *buf, size_t n, long max_pixels, int apply_exif,
                      struct arena *a, struct image *out, struct err *e);
int image_decode_png(const unsigned char *buf, size_t n, long max_pixels,
                     struct arena *a, struct image *out, struct err *e);
int image_decode(const unsigned char *buf, size_t n, long max_pixels, int apply_exif,
                 struct arena *a, struct image *out, struct err *e);

/* Reads only the header (dimensions checked against o->max_pixels and
 * IMAGE_MAX_SIDE) and says what image_decode_fit(buf, n, o) would cost.
 * Allocates nothing that outlives the call. Errors as image_decode. */
int image_probe(const unsigned char *buf, size_t n, const struct image_decode_opts *o,
                struct image_info *info, struct err *e);

/* Decodes with options (see struct image_decode_opts): out gets the pixels,
 * at most o->fit_side on the longer side when fit_side > 0, upright when
 * o->exif says so; info what image_probe says (up_w x up_h: the size of the
 * full upright image, the frame boxes are reported in). Pixels from a.
 * Errors as image_decode, plus ERR_TOOBIG over o->max_memory and ERR_BUSY
 * past o->deadline_ms. */
int image_decode_fit(const unsigned char *buf, size_t n, const struct image_decode_opts *o,
                     struct arena *a, struct image *out, struct image_info *info,
                     struct err *e);

/* Reads a whole file into arena memory (*out, *n; at most
 * IMAGE_MAX_FILE_BYTES, else ERR_TOOBIG). ERR_NOTFOUND when the file does
 * not exist, ERR_IO when it cannot be read or is not a regular file. */
int image_read_file(const char *path, struct arena *a, unsigned char **out, size_t *n,
                    struct err *e);

/* Reads a whole file into arena memory (at most IMAGE_MAX_FILE_BYTES, else
 * ERR_TOOBIG) and decodes it with image_decode; the file bytes stay in a
 * until the caller resets it. ERR_NOTFOUND when the file does not exist,
 * ERR_IO when it cannot be read or is not a regular file. exif: apply a
 * JPEG's EXIF orientation (upright, as a person sees it) or ignore it (the
 * stored pixels: the frame of VOC and COCO boxes). */
int image_load_file(const char *path, long max_pixels, enum image_exif exif,
                    struct arena *a, struct image *out, struct err *e);

/* Nearest-free area-averaging downscale so that max(w, h) <= max_side
 * (aspect kept, sides rounded, at least 1). Returns the input unchanged
 * (out = *in) when it already fits. Pixels from a (scratch rewound). Errors:
 * ERR_INPUT (a side outside 1..IMAGE_MAX_SIDE, max_side < 1), ERR_TOOBIG
 * (arena exhausted). */
int image_downscale(const struct image *in, int max_side, struct arena *a,
                    struct image *out, struct err *e);

/* The size image_downscale gives a w x h image for max_side (w x h itself
 * when it fits). Cannot fail. */
void image_fit_size(int w, int h, int max_side, int *ow, int *oh);

/* The same area average to an explicit size (ow <= w, oh <= h); scratch is
 * two rows, not a plane. */
int image_downscale_to(const struct image *in, int ow, int oh, struct arena *a,
                       struct image *out, struct err *e);

/* Normalisation constants of a backbone family. */
struct image_norm {
    float mean[3], std[3];
};
extern const struct image_norm IMAGE_NORM_IMAGENET;
extern const struct image_norm IMAGE_NORM_CLIP;

/* LOST preprocessing (docs/specs/lost.md section 1): x = (u8 / 255 - mean) / std in
 * float32, then zero padding at the bottom and right up to multiples of
 * patch. Output: *out = [3, *ph, *pw] channel-first, from a. norm NULL means
 * IMAGE_NORM_IMAGENET. Errors: ERR_INPUT (patch or a side outside
 * 1..IMAGE_MAX_SIDE), ERR_TOOBIG (arena exhausted). */
int image_to_tensor(const struct image *img, int patch, const struct image_norm *norm,
                    struct arena *a, float **out, int *ph, int *pw, struct err *e);

#endif
