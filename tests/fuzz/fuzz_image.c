/* fuzz_image.c - JPEG and PNG decoding with the daemon's limits, then the
 * stages that follow on the decoded pixels (downscale, LOST preprocessing).
 * The first byte picks the decoder and EXIF handling; the rest is the file.
 * Limits are small so decompression bombs are refused before allocation and
 * the arena (64 MiB) catches anything that slips past them as ERR_TOOBIG. */
#include "fuzz.h"

#include "arena.h"
#include "err.h"
#include "image.h"

static struct arena *fuzz_image_arena;

int FUZZ_ONE(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!fuzz_image_arena && !(fuzz_image_arena = arena_init(64u << 20)))
        return 0;
    struct arena *a = fuzz_image_arena;
    unsigned mode = data[0];
    data++, size--;
    struct image img;
    struct err e;
    err_clear(&e);
    int rc;
    long max_pixels = 4000000;
    switch (mode & 3) {
    case 0: rc = image_decode_jpeg(data, size, max_pixels, (mode >> 2) & 1, a, &img, &e); break;
    case 1: rc = image_decode_png(data, size, max_pixels, a, &img, &e); break;
    default: rc = image_decode(data, size, max_pixels, (mode >> 2) & 1, a, &img, &e); break;
    }
    if (rc == 0) {
        if (img.w < 1 || img.h < 1 || (long)img.w * img.h > max_pixels)
            __builtin_trap(); /* the decoder broke its own contract */
        /* Touch the first and last pixel: the buffer is as large as it says. */
        volatile unsigned char sink = img.px[0];
        sink = img.px[(size_t)img.w * (size_t)img.h * 3 - 1];
        (void)sink;
        struct image small;
        if (!image_downscale(&img, 64, a, &small, &e)) {
            float *t;
            int ph, pw;
            image_to_tensor(&small, 14, NULL, a, &t, &ph, &pw, &e);
        }
    }
    arena_reset(a);
    return 0;
}
