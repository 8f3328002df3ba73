/* fuzz_safetensors.c - the checkpoint container parser on untrusted bytes:
 * safetensors_parse validates the header, then every tensor it accepts is
 * walked (name lookup, metadata, a few F32 conversions at both ends), so an
 * accepted range that lies outside the buffer shows up as an ASan report. */
#include "fuzz.h"

#include "err.h"
#include "safetensors.h"

#include <string.h>

int FUZZ_ONE(const uint8_t *data, size_t size)
{
    struct safetensors *st = NULL;
    struct err e;
    err_clear(&e);
    if (safetensors_parse(data, size, &st, &e))
        return 0;
    float buf[8];
    for (int i = 0; i < safetensors_count(st); i++) {
        const struct safetensors_tensor *t = safetensors_at(st, i);
        if (safetensors_find(st, t->name) != t)
            __builtin_trap(); /* accepted duplicate names, or a broken lookup */
        if (t->numel > 0) {
            int64_t n = t->numel < 8 ? t->numel : 8;
            safetensors_read_f32(t, buf, 0, n, &e);
            safetensors_read_f32(t, buf, t->numel - n, n, &e);
        }
        safetensors_read_f32(t, buf, t->numel, 1, &e); /* must be refused */
    }
    safetensors_meta(st, "format");
    safetensors_free(st);
    return 0;
}
